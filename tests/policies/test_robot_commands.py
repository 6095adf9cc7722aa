"""Command interfaces (policies.robot_commands): joint velocities by velocity IK, limits, holds."""

import numpy as np

from controllers.safety import SafetyConfig, SafetyLayer
from policies.robot_commands import GRIPPER_OPEN_M, robot_command
from sim_bridge.task_specs import task_spec
from sim_bridge.ur5 import kinematics
from sim_bridge.ur5.robot import REST_POSE_RAD

SPEC = task_spec("ur5_pick")


def test_joint_velocities_move_the_tool_at_the_commanded_velocity():
    safety = SafetyLayer(SPEC.action_limits, SafetyConfig())
    q = np.array(REST_POSE_RAD)
    v = np.array([0.1, -0.05, 0.08])
    cmd = robot_command("joint_velocity", SPEC, np.append(v, 1.0), q, safety)
    jac, _, _ = kinematics.tcp_jacobian(q)
    np.testing.assert_allclose(jac[:3] @ cmd.joint_velocity_rad_s, v, atol=2e-3)
    assert cmd.gripper_opening_m == 0.0 and np.all(np.abs(cmd.joint_velocity_rad_s) <= 3.15)
    # integrating the joint velocities for a second moves the tool 1 s * v, pointing down all along
    tcp0 = kinematics.tcp_pose(q)[0]
    for _ in range(100):
        q = q + 0.01 * robot_command("joint_velocity", SPEC, np.append(v, 0.0), q, safety).joint_velocity_rad_s
    tcp, rot = kinematics.tcp_pose(q)
    np.testing.assert_allclose(tcp - tcp0, v, atol=3e-3)
    assert np.abs(kinematics.orientation_error(rot, kinematics.TOOL_DOWN_ROTATION)).max() < 1e-3


def test_hold_is_zero_on_every_interface_and_the_gripper_is_kept():
    safety = SafetyLayer(SPEC.action_limits, SafetyConfig())
    for interface in ("joint_velocity", "twist", "native"):
        cmd = robot_command(interface, SPEC, np.array([0.0, 0.0, 0.0, 0.0]), np.array(REST_POSE_RAD), safety, hold=True)
        assert not cmd.tool_velocity_m_s.any() and cmd.gripper_opening_m == GRIPPER_OPEN_M
        assert cmd.joint_velocity_rad_s is None or not cmd.joint_velocity_rad_s.any()


def test_a_singular_pose_is_scaled_to_the_joint_limits():
    safety = SafetyLayer(SPEC.action_limits, SafetyConfig())
    q = np.zeros(6)  # arm stretched out: singular
    cmd = robot_command("joint_velocity", SPEC, np.array([0.15, 0.15, 0.15, 0.0]), q, safety)
    assert np.all(np.isfinite(cmd.joint_velocity_rad_s)) and np.abs(cmd.joint_velocity_rad_s).max() <= 3.15 + 1e-9
