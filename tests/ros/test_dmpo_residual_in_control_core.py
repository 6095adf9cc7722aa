"""A residual exported by the DMPO trainer runs in the control node's core exactly as it acted in training."""

import numpy as np
import torch

from policies.runtime import BaseOutput, load_base
from rrl_ros.control_core import ControlCore, make_base, make_residual
from sim_bridge import make_task
from training.dmpo.networks import GaussianPolicy
from training.dmpo.residual import ResidualSpace, base_statistics, export_residual, input_sources


def test_dmpo_residual_artifact_in_the_control_core(tmp_path):
    task = make_task("ur5_pick")
    try:
        spec = task.spec
        base = load_base("waypoint", spec)
        stats, _ = base_statistics(task, base, episodes=1)
        space = ResidualSpace(spec, input_sources(base), stats, residual_scale=0.33)
        obs_dim = spec.state.size + spec.action.size
        torch.manual_seed(0)
        policy = GaussianPolicy(obs_dim, spec.action.size, init_mean_weight=0.3)
        samples = np.random.default_rng(0).normal(size=(32, obs_dim)).astype(np.float32)
        export_residual(policy, space, samples, "waypoint", tmp_path / "residual", provenance={}, metrics={})

        core = ControlCore(spec, make_base("waypoint", "", spec), "waypoint",
                           make_residual(str(tmp_path / "residual"), spec, "waypoint", 1.0))
        composer, limits = space.composer(), space.limits
        obs = task.reset(1_000_010)
        core.reset(1_000_010)
        moved = False
        for _ in range(30):
            out = core.tick(obs, observation_age_s=0.0)
            u = np.asarray(out.base_action, np.float64)
            vector = space.vector(obs, BaseOutput(action=u.astype(np.float32), features=None))
            mu = policy(torch.as_tensor(vector)[None])[0][0].detach().numpy()
            np.testing.assert_allclose(out.command, limits.clip(composer.compose(u, mu)), atol=1e-5)
            moved |= not np.allclose(out.command, limits.clip(u))
            step = task.step(out.command)
            obs = step.obs
            if step.terminated or step.truncated:
                break
        assert moved
    finally:
        task.close()
