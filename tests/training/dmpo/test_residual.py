"""The residual agent on a real PyBullet UR5 task with the waypoint base."""

import json

import numpy as np
import pytest
import torch

from policies.runtime import ComposedPolicy, load_base, load_policy
from sim_bridge import make_task
from training.dmpo.networks import GaussianPolicy
from training.dmpo.residual import ResidualEnv, ResidualSpace, base_statistics, export_residual, input_sources


@pytest.fixture(scope="module")
def pick():
    task = make_task("ur5_pick")
    base = load_base("waypoint", task.spec)
    stats, summary = base_statistics(task, base, episodes=2, seed=9_000_000)
    yield task, base, stats
    task.close()


def rollout(env_or_policy, task, seed, act=None, max_steps=60):
    """Executed actions of one episode (cut at max_steps to keep the test short)."""
    actions = []
    if isinstance(env_or_policy, ResidualEnv):
        obs = env_or_policy.reset(seed)
        for _ in range(max_steps):
            step = env_or_policy.step(act(obs))
            actions.append(env_or_policy.last_action.copy())
            obs = step.obs
            if step.terminated or step.truncated:
                break
    else:
        obs = task.reset(seed)
        env_or_policy.reset(seed)
        for _ in range(max_steps):
            actions.append(env_or_policy.act(obs))
            step = task.step(actions[-1])
            obs = step.obs
            if step.terminated or step.truncated:
                break
    return np.array(actions)


def test_zero_residual_reproduces_the_base_exactly(pick):
    task, base, stats = pick
    space = ResidualSpace(task.spec, input_sources(base), stats, residual_scale=0.33)
    assert space.sources == ("state", "base_action")
    env = ResidualEnv(task, base, space)
    for seed in (1_000_000, 1_000_001):
        base_actions = rollout(ComposedPolicy(task.spec, base), task, seed)
        residual_actions = rollout(env, task, seed, act=lambda obs: np.zeros(4))
        assert np.array_equal(base_actions, residual_actions)


def test_fresh_policy_starts_at_the_base_and_never_touches_the_gripper(pick):
    task, base, stats = pick
    env = ResidualEnv(task, base, ResidualSpace(task.spec, input_sources(base), stats, residual_scale=0.33))
    obs = env.reset(1_000_002)
    policy = GaussianPolicy(obs.size, 4)
    mean = lambda o: policy(torch.as_tensor(o)[None])[0][0].detach().numpy()
    base_actions = rollout(ComposedPolicy(task.spec, base), task, 1_000_002)
    fresh = rollout(env, task, 1_000_002, act=mean)
    assert np.abs(fresh - base_actions).max() < 1e-3  # the mean layer starts near zero
    pushed = rollout(env, task, 1_000_002, act=lambda o: np.full(4, 10.0))
    n = min(len(pushed), len(base_actions))
    assert not np.allclose(pushed[:n, :3], base_actions[:n, :3])
    assert set(np.unique(pushed[:, 3])) <= {0.0, 1.0}
    np.testing.assert_array_equal(pushed[:5, 3], base_actions[:5, 3])  # the gripper command is the base's


def test_nan_residual_action_in_training_falls_back_to_the_base_and_is_counted(pick):
    """The training rollout runs the runtime's safety layer: a NaN z executes u (it never reaches the sim)."""
    task, base, stats = pick
    env = ResidualEnv(task, base, ResidualSpace(task.spec, input_sources(base), stats, residual_scale=0.33))
    base_actions = rollout(ComposedPolicy(task.spec, base), task, 1_000_005)
    nan_actions = rollout(env, task, 1_000_005, act=lambda o: np.full(4, np.nan))
    assert np.array_equal(nan_actions, base_actions)
    assert env.counters.nonfinite_fallbacks == len(nan_actions) > 0


def test_exported_residual_runs_in_the_runtime_exactly_as_trained(pick, tmp_path):
    task, base, stats = pick
    space = ResidualSpace(task.spec, input_sources(base), stats, residual_scale=0.33)
    env = ResidualEnv(task, base, space)
    obs = env.reset(1_000_003)
    torch.manual_seed(0)
    policy = GaussianPolicy(obs.size, 4, init_mean_weight=0.3)  # a residual that visibly acts
    samples = np.stack([obs + np.random.default_rng(i).normal(0, 1, obs.size).astype(np.float32) for i in range(32)])
    artifact = export_residual(policy, space, samples, "waypoint", tmp_path / "residual", provenance={}, metrics={})
    assert artifact.kind == "residual" and artifact.base == "waypoint"
    mean = lambda o: policy(torch.as_tensor(o)[None])[0][0].detach().numpy()
    runtime = load_policy(task.spec, "waypoint", tmp_path / "residual")
    assert assert_runtime_matches(task, runtime, lambda obs, base_out: env.policy.compose(
        base_out, mean(space.vector(obs, base_out))).command, seed=1_000_003)


def assert_runtime_matches(task, runtime, torch_action, seed, steps=30):
    """Per step, on the runtime's own trajectory: the runtime's action == the training-side action.

    (Comparing two separate rollouts would amplify float32 differences through contacts.)"""
    obs = task.reset(seed)
    runtime.reset(seed)
    moved = False
    for _ in range(steps):
        action = runtime.act(obs)
        np.testing.assert_allclose(action, torch_action(obs, runtime.last_base), atol=1e-5)
        moved |= not np.allclose(action, runtime.last_base.action)
        step = task.step(action)
        obs = step.obs
        if step.terminated or step.truncated:
            break
    return moved


def test_rrl_train_residual_end_to_end_and_refuses_another_config(tmp_path, capsys):
    from rrl.cli import main

    args = ["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", "waypoint", "--frames", "300",
            "--out", str(tmp_path / "run"), "--eval-every-frames", "200", "--eval-episodes", "2",
            "--final-eval-episodes", "3", "--stats-episodes", "2", "--json"]
    (tmp_path / "run.yaml").write_text("train: {min_replay: 100, learner: {policy_lr: 0.001}}\n")
    # stopped by the wall clock after its first episode: no export, no held-out comparison, resumable
    assert main(args + ["--config", str(tmp_path / "run.yaml"), "--max-wall-s", "0"]) == 0
    stopped = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stopped["finished"] is False and 0 < stopped["frames"] < 300 and stopped["target_frames"] == 300
    assert "residual" not in stopped and "stopped by the wall clock" in stopped["resume"]
    assert not (tmp_path / "run" / "artifact").exists()
    assert main(args + ["--config", str(tmp_path / "run.yaml")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] is True and summary["frames"] >= 300
    assert summary["residual"]["episodes"] == 3 and summary["learner_steps"] > 0
    import yaml

    metrics = yaml.safe_load((tmp_path / "run" / "artifact" / "policy.yaml").read_text())["metrics"]
    assert metrics["frames"] == summary["frames"]
    # the training time over both processes (the loop's, carried in the checkpoint), not the last process's
    assert metrics["train_wall_s"] == summary["wall_s"] >= stopped["wall_s"] > 0 and "train_wall_s" not in summary
    assert (tmp_path / "run" / "tb").is_dir() and len((tmp_path / "run" / "eval.jsonl").read_text().splitlines()) >= 2
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported"), "--json"]) == 0
    assert (tmp_path / "exported" / "policy.yaml").exists()
    saved = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())["config"]
    assert saved["train"]["min_replay"] == 100 and saved["train"]["learner"]["policy_lr"] == 0.001  # file, nested
    assert saved["train"]["frames"] == 300 and saved["train"]["learner"]["critic_lr"] == 3.3e-4  # flag, default
    # a run started by an earlier version lacks the fields added since: they compare as their defaults
    run_yaml = yaml.safe_load((tmp_path / "run" / "run.yaml").read_text())
    del run_yaml["config"]["finetune"], run_yaml["config"]["train"]["learner"]["init_log_alpha_std"]
    (tmp_path / "run" / "run.yaml").write_text(yaml.safe_dump(run_yaml))
    capsys.readouterr()
    assert main(args + ["--config", str(tmp_path / "run.yaml"), "--residual-scale", "0.5"]) == 2  # another config
    assert "these fields differ: residual_scale: 0.1 -> 0.5 (use" in capsys.readouterr().err
    run_yaml["config"]["train"]["learner"]["init_stdd"] = 0.5  # a field this version does not know
    (tmp_path / "run" / "run.yaml").write_text(yaml.safe_dump(run_yaml))
    assert main(args + ["--config", str(tmp_path / "run.yaml")]) == 2
    assert "cannot be read by this version" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("train: {learner: {init_stdd: 0.5}}\n")
    assert main(args + ["--config", str(tmp_path / "bad.yaml")]) == 2
    assert "unknown field 'init_stdd'" in capsys.readouterr().err


def synthetic_bc_artifact(spec, stats, root):
    """A state-input BC artifact (random BCNet) with its run checkpoint, as `rrl train bc` writes them."""
    from policies.artifact import PENDING_SHA256, ActionSpec, OutputSpec, InputSpec, PolicyArtifact
    from training.bc.network import BCNet, ExportWrapper
    from training.export import export_artifact

    torch.manual_seed(1)
    net = BCNet(4, image_channels=0, scalar_dim=spec.state.size)
    (root / "run").mkdir(parents=True)
    torch.save({"model": net.state_dict()}, root / "run" / "best.pt")
    artifact = PolicyArtifact(
        kind="bc", algo="bc", task=spec.name, inputs=(InputSpec("state", ("state",), (-1, spec.state.size)),),
        outputs=(OutputSpec("action", "action", (-1, 4)), OutputSpec("features", "features", (-1, 256))),
        action=ActionSpec.from_task(spec), normalisation={"state": stats["state"], "action": stats["action"]},
        model_sha256=PENDING_SHA256, provenance={"run": str(root / "run")},
    )
    samples = {"state": np.random.default_rng(0).normal(size=(16, spec.state.size)).astype(np.float32)}
    mask = torch.tensor([False, False, False, True])
    return export_artifact(ExportWrapper(net, mask), samples, artifact, root / "bc")


def test_finetune_policy_starts_as_the_bc_policy(pick, tmp_path):
    from training.dmpo.residual import FineTunePolicy, bc_head

    task, _, stats = pick
    artifact = synthetic_bc_artifact(task.spec, stats, tmp_path)
    bc = load_base(str(artifact.path), task.spec)
    weight, bias, sources = bc_head(bc.artifact)
    assert sources == ("features",) and weight.shape == (4, 256)
    space = ResidualSpace(task.spec, sources, dict(bc.artifact.normalisation), residual_scale=1.0, mode="finetune")
    policy = FineTunePolicy(weight, bias, init_std=0.1)
    mean = lambda o: policy(torch.as_tensor(o)[None])[0][0].detach().numpy()
    composer, limits = space.composer(), space.limits
    u = space.constant_u()
    # the BC policy (ONNX, through the runtime) and the fine-tuning policy at initialisation act alike
    assert_runtime_matches(task, ComposedPolicy(task.spec, bc), lambda obs, base_out: limits.clip(
        composer.compose(u, mean(space.vector(obs, base_out)))), seed=1_000_004)


def test_scratch_and_finetune_action_maps(pick):
    task, _, stats = pick
    spec = task.spec
    scratch = ResidualSpace(spec, ("state",), stats, residual_scale=1.0, mode="scratch")
    limits, composer, u = scratch.limits, scratch.composer(), scratch.constant_u()
    np.testing.assert_allclose(limits.clip(composer.compose(u, np.zeros(4))), [0, 0, 0, 0])  # gripper 0.5 is not > 0.5
    np.testing.assert_allclose(limits.clip(composer.compose(u, [1, -1, 0.5, 0.01])), [0.15, -0.15, 0.075, 1.0])
    finetune = ResidualSpace(spec, ("features",), stats, residual_scale=1.0, mode="finetune")
    u, composer = finetune.constant_u(), finetune.composer()
    mean, std = np.asarray(stats["action"].mean), np.asarray(stats["action"].std)
    z = np.array([0.5, -0.2, 0.1, -3.0])  # a normalised BC output with a negative gripper logit
    np.testing.assert_allclose(limits.clip(composer.compose(u, z))[:3], np.clip(mean + std * z, -0.15, 0.15)[:3])
    assert limits.clip(composer.compose(u, z))[3] == 0.0 and limits.clip(composer.compose(u, -z))[3] == 1.0
    with pytest.raises(ValueError, match="mode"):
        ResidualSpace(spec, ("state",), stats, residual_scale=1.0, mode="bogus")
