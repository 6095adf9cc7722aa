"""A task action (tool velocity + gripper) as the commands a robot driver takes: the command interfaces.

- `joint_velocity`: six joint velocities (rad/s) for a ros2_control forward_command_controller
  (`/forward_velocity_controller/commands`), from the tool velocity by velocity-level IK
  (`sim_bridge.ur5.kinematics.tool_velocity_to_joint_velocity`, tool orientation held pointing
  down), then scaled to the joint velocity limits by the safety layer (counted there);
- `twist`: the tool's linear velocity (m/s, frame `base_link`, angular zero) for MoveIt Servo
  (`/servo_node/delta_twist_cmds`);
- `native`: the task action itself on `/command` (our sim_bridge).
The gripper goes out separately as an opening in metres (0 closed .. `GRIPPER_OPEN_M`). A held
robot (the safety layer's hold action) is zero velocity on every interface, gripper kept.
Pure numpy; the control node turns a `RobotCommand` into messages (rrl_ros.conversions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.safety import SafetyLayer
from sim_bridge.spec import TaskSpec
from sim_bridge.ur5 import kinematics, model

COMMAND_INTERFACES = ("joint_velocity", "twist", "native")
GRIPPER_OPEN_M = 2 * model.FINGER_STROKE_M
"""Opening of the open gripper (both fingers at full stroke), m."""


@dataclass
class RobotCommand:
    """One tick's command in every form the interfaces need."""

    action: np.ndarray
    """(A,) the task action after the safety layer (what `native` sends)."""
    joint_velocity_rad_s: np.ndarray | None
    """(6,) arm joint velocities (joint_velocity interface), within the joint limits; None otherwise."""
    tool_velocity_m_s: np.ndarray
    """(3,) the tool's linear velocity in the base frame (the twist interface)."""
    gripper_opening_m: float
    """Commanded gripper opening, m (0 closed)."""


def gripper_opening(closed: float) -> float:
    """The task's binary gripper command (1 closed, 0 open) as an opening in metres."""
    return 0.0 if closed > 0.5 else GRIPPER_OPEN_M


def robot_command(interface: str, spec: TaskSpec, action: np.ndarray, arm_q_rad: np.ndarray | None,
                  safety: SafetyLayer, hold: bool = False) -> RobotCommand:
    """The command for `interface` from the safety layer's action (A,) and the measured arm angles (6,).

    `hold`: the action is the hold action: every velocity is exactly zero (no IK on a stale reading)."""
    if interface not in COMMAND_INTERFACES:
        raise ValueError(f"command interface {interface!r}; expected one of {', '.join(COMMAND_INTERFACES)}")
    a = np.asarray(action, np.float64).reshape(-1)
    fields = spec.action.unpack(a)
    v = np.zeros(3) if hold else np.asarray(fields["tool_vel"], np.float64).copy()
    qdot = None
    if interface == "joint_velocity":
        if hold or arm_q_rad is None or not np.any(v):
            qdot = np.zeros(6)
        else:
            limit = np.asarray(spec.joint_vel_limit[:6] or (model.JOINT_VEL_LIMIT_RAD_S,) * 6)
            qdot = safety.limit_joint_velocity(kinematics.tool_velocity_to_joint_velocity(arm_q_rad, v), limit)
    return RobotCommand(a, qdot, v, gripper_opening(float(fields["gripper"][0])))
