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
    trained = rollout(env, task, 1_000_003, act=mean, max_steps=30)
    runtime = rollout(load_policy(task.spec, "waypoint", tmp_path / "residual"), task, 1_000_003, max_steps=30)
    assert not np.allclose(trained, rollout(ComposedPolicy(task.spec, base), task, 1_000_003, max_steps=30))
    np.testing.assert_allclose(runtime, trained, atol=1e-4)  # float32 ONNX vs torch, through 30 sim steps


def test_rrl_train_residual_end_to_end_and_refuses_another_config(tmp_path):
    from rrl.cli import main

    args = ["train", "residual", "--algo", "dmpo", "--task", "ur5_pick", "--base", "waypoint", "--frames", "300",
            "--out", str(tmp_path / "run"), "--eval-every", "200", "--eval-episodes", "2", "--final-eval-episodes", "3",
            "--stats-episodes", "2", "--min-replay", "100", "--json"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["residual"]["episodes"] == 3 and summary["learner_steps"] > 0
    assert (tmp_path / "run" / "tb").is_dir() and len((tmp_path / "run" / "eval.csv").read_text().splitlines()) >= 3
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported"), "--json"]) == 0
    assert (tmp_path / "exported" / "policy.yaml").exists()
    with pytest.raises(SystemExit, match="another configuration"):
        main(args[:-1] + ["--residual-scale", "0.5"])
