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


def test_evaluation_runs_the_composed_policy_and_matches_the_training_step():
    """REQ's evaluation episode (training.evaluation over env.evaluation_policy, the loop rrl eval runs) executes
    the same actions as stepping the env with the same policy; NaN from the policy falls back and is counted."""
    from training.evaluation import run_episode

    env = TaskEnv(make_task("ur5_pick"), make_expert("ur5_pick"), residual=True, residual_scale=0.5)
    w = np.random.default_rng(0).normal(scale=0.3, size=(4, env.observation_dim))
    act = lambda v: np.tanh(w @ v)  # noqa: E731
    try:
        seed, stepped = 1_000_003, []
        obs = env.reset(seed)
        while True:
            a = act(obs)
            stepped.append(env.executed_action(a))
            step = env.step(a)
            obs = step.obs
            if step.terminated or step.truncated:
                break
        composed = env.evaluation_policy(act)
        commands = []
        real_act = composed.act
        composed.act = lambda o: commands.append(real_act(o)) or commands[-1]
        result = run_episode(env.task, composed, seed)
        assert result.steps == len(stepped) and result.success == step.success
        np.testing.assert_array_equal(np.array(commands), np.array(stepped))
        nan = run_episode(env.task, env.evaluation_policy(lambda v: np.full(4, np.nan)), seed)
        assert nan.safety["nonfinite_fallbacks"] == nan.steps
    finally:
        env.close()
