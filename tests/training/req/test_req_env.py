"""REQ's task environment executes actions through the one policy path (policies.runtime.ComposedPolicy)."""

import numpy as np

from controllers.experts import make_expert
from sim_bridge import make_task
from training.req.env import TaskEnv


def test_residual_env_composes_like_the_runtime_and_falls_back_on_nan():
    env = TaskEnv(make_task("ur5_pick"), make_expert("ur5_pick"), residual=True, residual_scale=0.5)
    try:
        obs = env.reset(1_000_000)
        u = env.denormalize(obs[-4:])
        # u + c * half_range * a on the velocities, the gripper the base's, clipped to the limits
        a = np.array([0.2, -0.2, 1.0, -1.0])
        expected = env.spec.clip_action(u + np.array([0.5 * 0.15 * 0.2, -0.5 * 0.15 * 0.2, 0.5 * 0.15, 0.0]))
        np.testing.assert_allclose(env.executed_action(a), expected, atol=1e-9)
        np.testing.assert_allclose(env.executed_action(np.full(4, np.nan)), env.spec.clip_action(u), atol=1e-9)
        assert env.counters.nonfinite_fallbacks == 1
        for _ in range(5):
            obs = env.step(np.full(4, np.nan)).obs
        assert env.counters.nonfinite_fallbacks == 6
    finally:
        env.close()


def test_full_policy_env_maps_the_unit_box_onto_the_limits():
    env = TaskEnv(make_task("ur5_pick"), make_expert("ur5_pick"), residual=False)
    try:
        env.reset(1_000_001)
        np.testing.assert_allclose(env.executed_action(np.array([1.0, -1.0, 0.0, 0.2])), [0.15, -0.15, 0.0, 1.0])
        np.testing.assert_allclose(env.executed_action(np.array([2.0, 0.0, 0.0, -0.2])), [0.15, 0.0, 0.0, 0.0])
    finally:
        env.close()
