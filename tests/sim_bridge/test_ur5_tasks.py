"""UR5 tasks in real PyBullet: velocity tracking, workspace clipping, determinism, success detectors, camera."""

import numpy as np
import pytest

from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from sim_bridge.ur5.tasks import BOWL_FLOOR_THICKNESS_M, BOWL_RIM_HEIGHT_M


@pytest.fixture
def pick():
    task = make_task("ur5_pick")
    yield task
    task.close()


def test_spec_layouts(pick):
    spec = pick.spec
    assert spec.action.names == ("tool_vel", "gripper") and spec.binary_action_fields == ("gripper",)
    assert spec.proprio.names == ("tool_pos", "tool_vel", "gripper_state", "gripper_vel") and spec.proprio.size == 8
    assert spec.state.names[:4] == spec.proprio.names and "cube_pos" in spec.state.names
    obs = pick.reset(0)
    assert set(obs) == {"proprio", "state", "joint_pos_rad"}  # no camera: nothing rendered
    assert obs["proprio"].dtype == np.float32 and obs["state"].shape == (spec.state.size,)
    assert obs["joint_pos_rad"].shape == (len(spec.joint_names),)


def test_ik_tracks_a_velocity_command_pointing_down(pick):
    obs = pick.reset(3)
    start = obs["proprio"][:3].astype(float)
    vel = np.array([0.05, -0.04, -0.03])
    for _ in range(20):  # 2 s
        step = pick.step(np.array([*vel, 0.0]))
    tool = step.obs["proprio"][:3]
    assert np.linalg.norm(tool - (start + 2.0 * vel)) < 0.01
    np.testing.assert_allclose(step.obs["proprio"][3:6], vel, atol=0.01)  # measured tool velocity
    _, quat = pick.robot.tool_pose()
    assert abs(abs(quat[1]) - 1.0) < 1e-3  # still pointing down: (0, +-1, 0, 0)


def test_workspace_clips_are_counted_not_dropped(pick):
    pick.reset(4)
    clips = 0
    for _ in range(60):
        step = pick.step(np.array([0.15, 0.0, 0.0, 0.0]))
        clips += step.info["workspace_clipped"]
    assert clips > 0 and step.info["workspace_clips"] == clips
    assert step.obs["proprio"][0] <= 0.8 + 0.005


def test_same_seed_same_episode_and_tasks_are_independent():
    a, b = make_task("ur5_bowl"), make_task("ur5_bowl")
    try:
        rng = np.random.default_rng(0)
        actions = rng.uniform(a.spec.action_low, a.spec.action_high, size=(15, 4))
        b.reset(11)  # interleaved use of another client in the same process must not matter
        obs_a = a.reset(7)
        obs_b = b.reset(7)
        np.testing.assert_array_equal(obs_a["state"], obs_b["state"])
        for action in actions:
            sa, sb = a.step(action), b.step(action)
        np.testing.assert_array_equal(sa.obs["state"], sb.obs["state"])
        assert not np.array_equal(a.reset(8)["state"], obs_a["state"])
    finally:
        a.close()
        b.close()


def test_pick_success_detector(pick):
    pick.reset(0)
    size = pick.cube_size_m
    pick.place_cube([0.5, 0.0, size / 2 + 0.085])
    assert pick.is_success()
    pick.place_cube([0.5, 0.0, size / 2 + 0.075])  # near miss: lifted 7.5 cm
    assert not pick.is_success()
    pick.place_cube([0.5, 0.0, size / 2])
    assert not pick.is_success()


def test_bowl_success_detector():
    task = make_task("ur5_bowl")
    try:
        task.reset(0)
        bowl, size = task.bowl_pos, task.cube_size_m
        resting_z = BOWL_FLOOR_THICKNESS_M + size / 2
        task.place_cube([bowl[0] + 0.02, bowl[1] + 0.02, resting_z])
        assert task.is_success()
        task.place_cube([bowl[0] + 0.045, bowl[1], resting_z])  # near miss: 4.5 cm off centre
        assert not task.is_success()
        task.place_cube([bowl[0], bowl[1], resting_z], lin_vel_m_s=(0.0, 0.0, -0.3))  # still falling
        assert not task.is_success()
        task.place_cube([bowl[0], bowl[1], BOWL_RIM_HEIGHT_M + 0.01])  # held above the bowl
        assert not task.is_success()
        # A real drop: released into the bowl, it comes to rest and succeeds within a second.
        task.place_cube([bowl[0], bowl[1], BOWL_RIM_HEIGHT_M + size / 2 + 0.01])
        assert any(task.step(np.array([0.0, 0.0, 0.0, 0.0])).success for _ in range(10))
    finally:
        task.close()


def test_push_success_detector():
    task = make_task("ur5_push")
    try:
        task.reset(0)
        target, size = task.target_pos, task.cube_size_m
        task.place_cube([target[0] + 0.02, target[1] - 0.018, size / 2])  # 2.7 cm
        assert task.is_success()
        task.place_cube([target[0] + 0.025, target[1] - 0.02, size / 2])  # near miss: 3.2 cm
        assert not task.is_success()
    finally:
        task.close()


def test_success_terminates_with_reward_one(pick):
    pick.reset(0)
    pick.place_cube([0.5, 0.0, 0.2])
    step = pick.step(np.zeros(4))  # the cube is falling but still > 8 cm up after 0.1 s
    assert step.success and step.terminated and step.reward == 1.0 and step.info["success"]


def test_depth_camera_history():
    task = make_task("ur5_pick", camera=CameraConfig(width_px=48, height_px=40))
    try:
        obs = task.reset(0)
        depth = obs["depth"]
        assert depth.shape == (3, 40, 48) and depth.dtype == np.float32
        assert 0.0 <= depth.min() and depth.max() <= 1.0 and depth.std() > 0.01
        np.testing.assert_array_equal(depth[0], depth[2])  # history filled with the first frame
        nxt = task.step(np.array([0.0, 0.0, -0.15, 0.0])).obs["depth"]
        np.testing.assert_array_equal(nxt[:2], depth[1:])  # oldest first, shifted by one
        assert not np.array_equal(nxt[2], depth[2])  # the arm moved
    finally:
        task.close()


def test_camera_viewpoint_randomisation_does_not_change_the_episode():
    plain = make_task("ur5_push", camera=CameraConfig(32, 32))
    jitter = make_task("ur5_push", camera=CameraConfig(32, 32, randomize_viewpoint=True))
    try:
        a, b = plain.reset(5), jitter.reset(5)
        np.testing.assert_array_equal(a["state"], b["state"])
        assert not np.array_equal(a["depth"], b["depth"])
    finally:
        plain.close()
        jitter.close()
