"""The safety layer's workspace box and joint-velocity limits (controllers/safety.py), from the task spec."""

import numpy as np
import pytest

from controllers.safety import ActionLimits, SafetyConfig, SafetyLayer, WorkspaceLimits, scale_joint_velocity
from sim_bridge.task_specs import task_spec

SPEC = task_spec("ur5_pick")
BOX = WorkspaceLimits.from_spec(SPEC)
DT = 0.1


def layer() -> SafetyLayer:
    return SafetyLayer(ActionLimits.from_spec(SPEC), SafetyConfig(period_s=DT, workspace=BOX))


def test_the_box_comes_from_the_spec():
    assert BOX.low_m == (0.25, -0.3, 0.02) and BOX.high_m == (0.8, 0.3, 0.3) and BOX.velocity_dims == (0, 1, 2)
    assert WorkspaceLimits.from_spec(task_spec("adroit_door")) is None  # no box, no tool velocity


def test_random_commands_never_take_the_tool_out_of_the_box():
    """Integrate p += v dt for commands that push everywhere: the tool ends every period inside the box."""
    rng = np.random.default_rng(0)
    s = layer()
    p = np.array([0.5, 0.0, 0.1])
    low, high = np.array(BOX.low_m), np.array(BOX.high_m)
    for _ in range(2000):
        s.observe_tool(p)
        v = s.filter(np.append(rng.uniform(-0.15, 0.15, 3) + rng.choice([-0.1, 0.1], 3), 1.0), None, 0.0).action
        p = p + v[:3] * DT
        assert np.all(p >= low - 1e-12) and np.all(p <= high + 1e-12), p
    assert s.counters.workspace_clips > 20 and s.counters.workspace_holds == 0


def test_a_tool_outside_the_box_may_only_come_back():
    s = layer()
    s.observe_tool([0.5, 0.0, 0.0])  # 2 cm below the floor of the box
    d = s.filter(np.array([0.1, 0.0, -0.1, 0.0]), None, 0.0)
    np.testing.assert_allclose(d.action, [0.1, 0.0, 0.0, 0.0])
    assert d.reason == "workspace_clipped" and s.counters.workspace_clips == 1
    s.observe_tool([0.5, 0.0, 0.0])
    assert s.filter(np.array([0.0, 0.0, 0.05, 0.0]), None, 0.0).reason == "ok"  # upwards, back in: untouched


def test_without_a_measured_tool_position_the_robot_is_held():
    s = layer()
    s.observe_tool([0.5, 0.0, 0.1])
    s.filter(np.array([0.01, 0.0, 0.0, 1.0]), None, 0.0)
    d = s.filter(np.array([0.01, 0.0, 0.0, 1.0]), None, 0.0)  # the position of the last tick is not reused
    assert d.reason == "workspace_hold" and s.counters.workspace_holds == 1
    np.testing.assert_array_equal(d.action, [0, 0, 0, 1.0])  # zero velocity, gripper kept


def test_joint_velocities_scale_down_uniformly():
    limit = np.array(SPEC.joint_vel_limit[:6])
    q, scaled = scale_joint_velocity([0.0, 6.3, -1.0, 0.5, 0.0, 0.0], limit)
    assert scaled and np.max(np.abs(q) / limit) == pytest.approx(1.0)
    np.testing.assert_allclose(q / np.linalg.norm(q), np.array([0.0, 6.3, -1.0, 0.5, 0, 0]) / np.linalg.norm([6.3, 1, .5]))
    s = layer()
    np.testing.assert_array_equal(s.limit_joint_velocity([0.1] * 6, limit), [0.1] * 6)
    s.limit_joint_velocity([10.0] * 6, limit)
    np.testing.assert_array_equal(s.limit_joint_velocity([np.nan] + [0.1] * 5, limit), np.zeros(6))
    assert s.counters.joint_velocity_scaled == 1 and s.counters.nonfinite_holds == 1
