"""The simulated UR5 with its parallel-jaw gripper, driven by tool velocity commands.

One control step (10 Hz) = 24 physics substeps (240 Hz). A tool reference
point integrates the commanded linear velocity and is clipped to the workspace
box (clips are counted, never silently dropped). Inverse kinematics
(PyBullet's damped least squares with null-space rest poses, tool pointing
straight down) maps the end-of-step reference to joint angles once per control
step; the joint position targets sent to the motors are then interpolated
linearly every substep. Within one control step the commanded velocity is
constant, so the tool path is a straight segment of at most a few centimetres
and joint-space interpolation stays on it to well under a millimetre; this
keeps the per-substep Python cost to one motor call, so state-mode stepping
runs close to the raw `stepSimulation` rate (see bench/sim_throughput.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim_bridge.ur5 import kinematics, model

PHYSICS_RATE_HZ = 240.0
CONTROL_RATE_HZ = 10.0
SUBSTEPS = int(PHYSICS_RATE_HZ / CONTROL_RATE_HZ)

TOOL_DOWN_QUAT_XYZW = (0.0, 1.0, 0.0, 0.0)
"""Tool frame pointing down (z_tool = -z_world), fingers sliding along world y."""
REST_POSE_RAD = (2.922, -1.448, 1.964, -2.087, -1.571, 1.351)
"""Arm posture with the tool pointing down at (0.5, 0, 0.15): where IK starts at reset (elbow up, wrist down)."""

FINGER_LATERAL_FRICTION = 0.6
FINGER_SPINNING_FRICTION = 0.02
POSITION_GAIN = 0.6
"""PyBullet position-motor gain of the arm joints (0.1 default sags ~4 mm under gravity; 0.6 holds within ~2 mm)."""
IK_ITERATIONS_PER_STEP = 1
"""Damped least squares iterations per control step, started from the previous command (0.3 mm mean error
after one, corrected on the next step since every step solves for the absolute reference)."""
MAX_REFERENCE_LEAD_M = 0.02
"""The tool reference may run ahead of the measured tool by at most this much (no wind-up when blocked)."""
_SUBSTEP_FRACTIONS = (np.arange(1, SUBSTEPS + 1) / SUBSTEPS)[:, None]


@dataclass(frozen=True)
class Workspace:
    """Box (robot base frame) the tool reference is clipped to."""

    low_m: tuple[float, float, float] = (0.25, -0.3, 0.02)
    high_m: tuple[float, float, float] = (0.8, 0.3, 0.3)

    def clip(self, pos: np.ndarray) -> np.ndarray:
        return np.clip(pos, self.low_m, self.high_m)


class UR5Robot:
    """The arm + gripper in one PyBullet client. Physics stepping happens in `control_step`."""

    def __init__(self, client: int, workspace: Workspace = Workspace()):
        self.client = client
        self.workspace = workspace
        self.body = p.loadURDF(str(model.ASSET_PATH), useFixedBase=True,
                               flags=p.URDF_USE_INERTIA_FROM_FILE, physicsClientId=client)
        index = {p.getJointInfo(self.body, j, physicsClientId=client)[12].decode(): j
                 for j in range(p.getNumJoints(self.body, physicsClientId=client))}
        self.arm_joints = [index[name] for name in model.ARM_LINKS]  # joint j moves link j
        self.finger_joints = [index["finger_left"], index["finger_right"]]
        self.tcp_link = index["tcp"]
        self.joints = self.arm_joints + self.finger_joints
        for link in self.finger_joints:
            p.changeDynamics(self.body, link, lateralFriction=FINGER_LATERAL_FRICTION,
                             spinningFriction=FINGER_SPINNING_FRICTION, frictionAnchor=1, physicsClientId=client)
        self._forces = list(model.JOINT_EFFORT_NM)
        self._gains = [POSITION_GAIN] * 6
        self.q_cmd = np.array(REST_POSE_RAD)
        self.reference_m = np.zeros(3)
        self.gripper_closed = False

    # --- state -------------------------------------------------------------------------------
    def tool_pose(self) -> tuple[np.ndarray, np.ndarray]:
        state = p.getLinkState(self.body, self.tcp_link, computeForwardKinematics=1, physicsClientId=self.client)
        return np.array(state[4]), np.array(state[5])

    def joint_positions(self) -> np.ndarray:
        """Arm joint angles (rad, 6) then finger positions (m, 2)."""
        return np.array([s[0] for s in p.getJointStates(self.body, self.joints, physicsClientId=self.client)])

    def opening_fraction(self) -> float:
        """Gripper opening: 0 fully closed (pads touching), 1 fully open."""
        states = p.getJointStates(self.body, self.finger_joints, physicsClientId=self.client)
        return float((states[0][0] + states[1][0]) / (2 * model.FINGER_STROKE_M))

    # --- commands ----------------------------------------------------------------------------
    def reset(self, tool_pos: np.ndarray, gripper_closed: bool = False) -> None:
        """Teleport the arm so the tool is at `tool_pos` pointing down (iterated IK), motors holding it."""
        tool_pos = self.workspace.clip(np.asarray(tool_pos, float))
        q = kinematics.solve_ik(tool_pos, np.array(REST_POSE_RAD), iterations=50)
        finger = 0.0 if gripper_closed else model.FINGER_STROKE_M
        for j, angle in zip(self.arm_joints, q):
            p.resetJointState(self.body, j, angle, physicsClientId=self.client)
        for j in self.finger_joints:
            p.resetJointState(self.body, j, finger, physicsClientId=self.client)
        self.q_cmd = q
        self.reference_m = tool_pos.copy()
        self.gripper_closed = gripper_closed
        self._command_arm(q)
        self._command_gripper(gripper_closed)

    def _command_arm(self, q: np.ndarray) -> None:
        p.setJointMotorControlArray(self.body, self.arm_joints, p.POSITION_CONTROL, targetPositions=q,
                                    forces=self._forces, positionGains=self._gains, physicsClientId=self.client)

    def _command_gripper(self, closed: bool) -> None:
        target = 0.0 if closed else model.FINGER_STROKE_M
        for j in self.finger_joints:
            p.setJointMotorControl2(self.body, j, p.POSITION_CONTROL, targetPosition=target,
                                    force=model.FINGER_FORCE_N, maxVelocity=model.FINGER_VEL_M_S,
                                    physicsClientId=self.client)

    def control_step(self, tool_vel_m_s: np.ndarray, gripper_closed: bool) -> bool:
        """Apply one control-rate command for SUBSTEPS physics steps. Returns True if the workspace clipped it."""
        tool_pos, _ = self.tool_pose()
        lead = self.reference_m - tool_pos
        lead_norm = float(np.linalg.norm(lead))
        if lead_norm > MAX_REFERENCE_LEAD_M:
            self.reference_m = tool_pos + lead * (MAX_REFERENCE_LEAD_M / lead_norm)
        wanted = self.reference_m + np.asarray(tool_vel_m_s, float) / CONTROL_RATE_HZ
        self.reference_m = self.workspace.clip(wanted)
        clipped = bool(np.any(np.abs(self.reference_m - wanted) > 1e-9))
        q_start = self.q_cmd
        q_end = kinematics.solve_ik(self.reference_m, q_start, iterations=IK_ITERATIONS_PER_STEP)
        if gripper_closed != self.gripper_closed:
            self._command_gripper(gripper_closed)
            self.gripper_closed = gripper_closed
        targets = (q_start + _SUBSTEP_FRACTIONS * (q_end - q_start)).tolist()  # (SUBSTEPS, 6), lists are fastest
        body, joints, forces, gains, client = self.body, self.arm_joints, self._forces, self._gains, self.client
        for target in targets:
            p.setJointMotorControlArray(body, joints, p.POSITION_CONTROL, targetPositions=target,
                                        forces=forces, positionGains=gains, physicsClientId=client)
            p.stepSimulation(physicsClientId=client)
        self.q_cmd = q_end
        return clipped
