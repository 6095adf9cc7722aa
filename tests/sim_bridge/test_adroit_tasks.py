"""Adroit tasks on gymnasium-robotics' MuJoCo models: spec, success detectors, 10 Hz control, seeds, camera."""

import numpy as np
import pytest

import sim_bridge.adroit  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is first imported)
import mujoco  # noqa: E402
from sim_bridge import make_task
from sim_bridge.adroit.tasks import (
    RenderingUnavailable, door_success, hammer_success, pen_success, relocate_success,
)
from sim_bridge.task import CameraConfig

ACTION_DIMS = {"adroit_door": 28, "adroit_hammer": 26, "adroit_pen": 24, "adroit_relocate": 30}


@pytest.fixture(scope="module", params=sorted(ACTION_DIMS))
def task(request):
    t = make_task(request.param)
    yield t
    t.close()


def test_spec_and_observation_layout(task):
    spec = task.spec
    assert spec.robot == "adroit" and spec.control_rate_hz == 10.0 and spec.camera == "rgb"
    assert spec.action.size == ACTION_DIMS[spec.name]
    obs = task.reset(3)
    assert obs["state"].shape == (spec.state.size,) and obs["proprio"].shape == (spec.proprio.size,)
    state = spec.state.unpack(obs["state"])
    # the environment's original observation is kept whole
    np.testing.assert_allclose(state["env_obs"], task.env._get_obs(), atol=1e-5)
    assert state["tactile"].shape == (21,)
    np.testing.assert_allclose(state["palm_pos_m"], task.data.site("S_grasp").xpos, atol=1e-6)


def test_seed_determines_episode(task):
    a = task.reset(11)["state"].copy()
    b = task.reset(12)["state"].copy()
    c = task.reset(11)["state"].copy()
    np.testing.assert_array_equal(a, c)
    if task.spec.name != "adroit_pen":  # pen randomises only the goal orientation, not in the state's first fields
        assert not np.array_equal(a, b)
    else:
        assert not np.array_equal(task.spec.state.unpack(a)["target_dir"], task.spec.state.unpack(b)["target_dir"])


def test_control_step_is_100ms_and_detector_agrees_with_env(task):
    task.reset(5)
    rng = np.random.default_rng(0)
    t0 = task.data.time
    for _ in range(5):
        step = task.step(rng.uniform(task.spec.action_low, task.spec.action_high))
        assert step.info["success"] == step.info["env_success"]
    assert task.data.time - t0 == pytest.approx(0.5)
    assert task.step_count == 5


def test_a_control_step_is_ten_environment_steps_bit_for_bit(task):
    """The wrapper runs 9 environment steps' physics in one call and the 10th through env.step: the same state as
    ten env.step calls with the held action, exactly."""
    reference = make_task(task.spec.name)
    try:
        task.reset(8)
        reference.reset(8)
        rng = np.random.default_rng(1)
        for _ in range(4):
            action = rng.uniform(task.spec.action_low, task.spec.action_high)
            task.step(action)
            native = (reference.spec.clip_action(action) * reference._ctrl_per_unit
                      - reference._act_mean) / reference._act_half_range
            for _ in range(10):
                env_obs = reference.env.step(native)[0]
        np.testing.assert_array_equal(task.data.qpos, reference.data.qpos)
        np.testing.assert_array_equal(task.data.qvel, reference.data.qvel)
        np.testing.assert_array_equal(task.spec.state.unpack(task._observe()["state"])["env_obs"],
                                      env_obs.astype(np.float32))
    finally:
        reference.close()


def test_holds_a_posture_at_10hz():
    """A constant joint target is reached and held: the 10 Hz wrapper applies it for 10 env steps each tick."""
    with make_task("adroit_door") as t:
        t.reset(0)
        q_target = np.zeros(t.spec.action.size)
        q_target[t.spec.action.slices()["fingers"]] = 0.8 * np.asarray(t.spec.action_high)[6:]
        q_target[4:6] = [-0.2, 0.3]  # wrist
        history = []
        for _ in range(20):
            obs = t.step(q_target).obs
            history.append(t.spec.state.unpack(obs["state"])["joint_pos_rad"][4:28].copy())
        history = np.array(history)
        np.testing.assert_allclose(history[-1], q_target[4:28], atol=0.1)
        assert np.abs(history[10:] - history[-1]).max() < 0.02  # held, not drifting


def test_horizon_truncates():
    with make_task("adroit_pen", horizon_s=0.3) as t:
        t.reset(0)
        steps = [t.step(np.zeros(t.spec.action.size)) for _ in range(3)]
        assert steps[-1].truncated and not steps[0].truncated
        with pytest.raises(RuntimeError, match="reset"):
            t.step(np.zeros(t.spec.action.size))


@pytest.mark.parametrize("value, expected", [(1.35, True), (1.6, True), (1.34, False), (0.0, False)])
def test_door_detector(value, expected):
    assert door_success(value) is expected


def test_point_detectors():
    goal = np.array([0.1, 0.2, 0.3])
    assert hammer_success(goal + [0.009, 0, 0], goal) and not hammer_success(goal + [0.011, 0, 0], goal)
    assert relocate_success(goal + [0, 0.099, 0], goal) and not relocate_success(goal + [0, 0.101, 0], goal)
    axis = np.array([0.0, 0.0, 1.0])
    tilted = lambda deg: np.array([np.sin(np.radians(deg)), 0.0, np.cos(np.radians(deg))])  # noqa: E731
    assert pen_success(goal + [0.07, 0, 0], goal, tilted(15), axis)
    assert not pen_success(goal + [0.08, 0, 0], goal, tilted(15), axis)  # too far
    assert not pen_success(goal, goal, tilted(20), axis)  # cos 20 deg = 0.940 < 0.95


def _forward(t):
    mujoco.mj_forward(t.model, t.data)


def test_door_success_on_constructed_state():
    with make_task("adroit_door") as t:
        t.reset(0)
        hinge = t.data.joint("door_hinge")
        hinge.qpos[0] = 1.30
        _forward(t)
        assert not t.is_success()
        hinge.qpos[0] = 1.40
        _forward(t)
        assert t.is_success()


def test_relocate_success_on_constructed_state():
    with make_task("adroit_relocate") as t:
        t.reset(0)
        for miss_m, expected in ((0.12, False), (0.05, True)):
            ball, target = t.data.body("Object").xpos.copy(), t.data.site("target").xpos.copy()
            goal = target + [miss_m, 0.0, 0.0]
            for axis, name in enumerate(("OBJTx", "OBJTy", "OBJTz")):
                t.data.joint(name).qpos[0] += goal[axis] - ball[axis]
            _forward(t)
            assert np.linalg.norm(t.data.body("Object").xpos - goal) < 1e-6
            assert t.is_success() is expected


def test_hammer_success_on_constructed_state():
    with make_task("adroit_hammer") as t:
        t.reset(0)
        joint = t.data.joint("nail_dir")
        nail, goal = t.data.site("S_target").xpos.copy(), t.data.site("nail_goal").xpos.copy()
        axis = t.data.xaxis[t.model.joint("nail_dir").id]
        depth = float(np.dot(goal - nail, axis))
        assert not t.is_success()
        joint.qpos[0] += depth - 0.015  # 1.5 cm short
        _forward(t)
        assert not t.is_success()
        joint.qpos[0] += 0.015
        _forward(t)
        assert t.is_success()


def test_rgb_camera_history():
    try:
        t = make_task("adroit_relocate", camera=CameraConfig(width_px=32, height_px=24))
    except RenderingUnavailable as exc:
        pytest.skip(f"no EGL renderer on this machine: {exc}")
    with t:
        obs = t.reset(0)
        assert obs["rgb"].shape == (3, 24, 32, 3) and obs["rgb"].dtype == np.uint8
        assert obs["rgb"].std() > 5  # a scene, not a blank frame
        first = obs["rgb"][-1].copy()
        target = t.spec.state.unpack(obs["state"])["joint_pos_rad"].copy()
        target[2] = 0.3  # move the arm forward
        obs = t.step(target).obs
        np.testing.assert_array_equal(obs["rgb"][1], first)  # history shifted, oldest first
        assert not np.array_equal(obs["rgb"][2], first)
