"""REQ on a real UR5 task: the residual slot reproduces the expert at zero, and exported artifacts
(ONNX, loaded through `policies.runtime`) act exactly like the trained learner."""

import numpy as np
import pytest

from controllers.experts import make_expert
from policies.runtime import ArtifactModel, ComposedPolicy, PriorPolicy, WaypointBase, load_residual
from sim_bridge import make_task
from training.req.env import TaskEnv
from training.req.export import export_run
from training.req.learner import REQConfig
from training.req.train import TrainConfig, load_learner, make_task_env, train

TINY = REQConfig(hidden=(32, 32), batch_size=16, num_samples=8, temperature_steps=10, n_step=2)


def _tiny_run(tmp_path, residual: bool):
    cfg = TrainConfig(task="ur5_pick", mode="rlfse", residual=residual, frames=150, train_horizon=40,
                      min_replay_steps=60, updates_per_step=0.5, eval_every_frames=10_000, eval_episodes=1,
                      checkpoint_every_frames=10_000, learner=TINY)
    train(cfg, tmp_path / "run", progress=False)
    return cfg


def test_zero_residual_is_the_expert():
    """At residual 0 the executed action is the expert's action at every visited state (and psi = 0)."""
    env = TaskEnv(make_task("ur5_pick"), make_expert("ur5_pick"), residual=True)
    reference = make_expert("ur5_pick")  # fed the same states, independently
    try:
        obs = env.reset(7)
        reference.reset(7)
        for _ in range(40):
            u = reference.act(env.spec.state.unpack(obs[:env.spec.state.size]))
            np.testing.assert_allclose(env.executed_action(np.zeros(4)), u, atol=1e-6)
            # the residual never touches the gripper (the runtime's composer leaves it to the base)
            assert env.executed_action(np.ones(4))[3] == pytest.approx(u[3])
            assert np.all(env.expert_action == 0)
            step = env.step(np.zeros(4))
            obs = step.obs
            if step.terminated or step.truncated:
                break
    finally:
        env.close()


@pytest.mark.timeout(240)
def test_exported_prior_acts_like_the_learner(tmp_path):
    _tiny_run(tmp_path, residual=False)
    art = export_run(tmp_path / "run", tmp_path / "art")
    assert art.kind == "req_prior" and art.expert == "waypoint" and (tmp_path / "art" / "q" / "model.onnx").exists()
    config, learner = load_learner(tmp_path / "run")
    task = make_task("ur5_pick")
    try:
        policy = PriorPolicy(ArtifactModel.load(tmp_path / "art", task.spec))
        env = make_task_env(config)
        q_model = ArtifactModel.load(tmp_path / "art" / "q", task.spec)
        obs = task.reset(3)
        for _ in range(10):
            a_runtime = policy.act(obs)
            a_learner = env.denormalize(learner.act(obs["state"], explore=False, acting="prior"))
            a_learner[3] = float(a_learner[3] > 0.5)
            np.testing.assert_allclose(a_runtime, a_learner, atol=1e-4)
            q_onnx = q_model.run(obs, action=a_runtime)["q"]
            import torch
            with torch.no_grad():
                q_torch = learner.q(torch.tensor(obs["state"])[None], torch.tensor(env.normalize(a_runtime))[None])
            assert float(q_onnx) == pytest.approx(float(q_torch), abs=1e-4)
            obs = task.step(a_runtime).obs
        env.close()
    finally:
        task.close()


@pytest.mark.timeout(240)
def test_exported_residual_composes_like_training(tmp_path):
    _tiny_run(tmp_path, residual=True)
    art = export_run(tmp_path / "run", tmp_path / "art")
    assert art.kind == "residual" and art.base == "waypoint"
    config, learner = load_learner(tmp_path / "run")
    env = make_task_env(config)
    task = make_task("ur5_pick")
    try:
        composed = ComposedPolicy(task.spec, WaypointBase(task.spec), load_residual(tmp_path / "art", task.spec, "waypoint"))
        obs_env = env.reset(5)
        obs = task.reset(5)
        composed.reset(5)
        for _ in range(10):
            a_runtime = composed.act(obs)
            a_train = task.spec.clip_action(env.executed_action(learner.act(obs_env, explore=False, acting="prior")))
            np.testing.assert_allclose(a_runtime, a_train, atol=1e-4)
            obs = task.step(a_runtime).obs
            obs_env = env.step(learner.act(obs_env, explore=False, acting="prior")).obs
    finally:
        env.close()
        task.close()


def test_eval_records_the_residuals_success_in_the_residual_artifact(tmp_path, capsys):
    """`rrl eval --record-metrics` with a residual writes the measured success into the residual's policy.yaml
    (what the shipped REQ residual carries), with the command that measured it; the sha256 stays valid."""
    import json

    from policies.artifact import load_artifact
    from rrl.cli import main as rrl

    _tiny_run(tmp_path, residual=True)
    export_run(tmp_path / "run", tmp_path / "art")
    assert rrl(["eval", "--task", "ur5_pick", "--base", "waypoint", "--residual", str(tmp_path / "art"),
                "--episodes", "2", "--record-metrics", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = load_artifact(tmp_path / "art").metrics  # checks the graph's sha256 too
    assert metrics["success_rate"] == report["success_rate"] and metrics["episodes"] == 2
    assert f"--residual {tmp_path / 'art'}" in metrics["command"]
