"""The UR5 waypoint experts solve their tasks in real PyBullet (a few seeds each; 100-seed figures in the README)."""

import numpy as np
import pytest

from controllers.experts import make_expert
from controllers.experts.ur5 import VARIANTS
from sim_bridge import make_task
from training.evaluation import ExpertPolicy, evaluate


@pytest.mark.parametrize("task_name", ["ur5_pick", "ur5_bowl", "ur5_push"])
def test_expert_solves_held_out_seeds(task_name):
    task = make_task(task_name)
    try:
        result = evaluate(task, ExpertPolicy(make_expert(task_name), task.spec), episodes=3, seed=1_000_000,
                          progress=False)
    finally:
        task.close()
    assert result.summary()["success_rate"] == 1.0


def test_noisy_expert_is_reproducible_and_still_succeeds():
    task = make_task("ur5_pick")
    try:
        runs = []
        for _ in range(2):
            expert = make_expert("ur5_pick", noise_std=0.007)
            obs = task.reset(5)
            expert.reset(5)
            actions = []
            while True:
                action = expert.act(task.spec.state.unpack(obs["state"]))
                actions.append(action)
                step = task.step(action)
                obs = step.obs
                if step.terminated or step.truncated:
                    break
            runs.append((np.array(actions), step.success))
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        assert runs[0][1]
    finally:
        task.close()


def test_variants_are_listed_and_unknown_ones_rejected():
    assert "no_retry" in VARIANTS["ur5_bowl"]
    make_expert("ur5_bowl", variant="no_retry")
    with pytest.raises(ValueError, match="no_retry"):
        make_expert("ur5_bowl", variant="sloppy")
    with pytest.raises(ValueError, match="default"):
        make_expert("ur5_pick", variant="no_retry")


def test_grasp_retry_recovers_a_missed_grasp():
    """Knock the cube away right after the first grasp closes: the default expert re-grasps, no_retry does not."""
    outcomes = {}
    for variant in (None, "no_retry"):
        task = make_task("ur5_bowl")
        expert = make_expert("ur5_bowl", variant=variant)
        try:
            obs = task.reset(1_000_003)
            expert.reset(1_000_003)
            knocked = False
            while True:
                if not knocked and expert.motion == "lift":
                    cube, _ = task.cube_pose()
                    task.place_cube([cube[0] + 0.12, cube[1], task.cube_size_m / 2])
                    knocked = True
                step = task.step(expert.act(task.spec.state.unpack(obs["state"])))
                obs = step.obs
                if step.terminated or step.truncated:
                    break
            outcomes[variant] = step.success
        finally:
            task.close()
    assert outcomes == {None: True, "no_retry": False}
