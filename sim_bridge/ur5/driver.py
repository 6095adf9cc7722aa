"""A UR5 task played as a robot driver would: physics on its own clock, the latest velocity command applied continuously.

`sim_bridge.ur5.tasks` steps the physics one control period per action (the lockstep and realtime
stacks). A real arm behind ur_robot_driver / ros2_control does not wait for anyone: it integrates
the newest joint-velocity command at its own rate and stops when commands stop coming. `DriverSim`
does the same with a `UR5Task`'s scene:

- `advance_to(t_s)` steps the physics (240 Hz) until the simulated time reaches `t_s`; the node calls
  it from a wall-clock timer, so simulated time follows the wall clock;
- every physics step the arm's position targets integrate the latest joint-velocity command
  (`set_joint_velocity`, rad/s, ros2_control's forward_command_controller) or, for a tool twist
  (`set_tool_velocity`, m/s, MoveIt Servo), the joint velocities our velocity-level IK gives for it
  (`kinematics.tool_velocity_to_joint_velocity`); a command older than `command_timeout_s` (0.1 s,
  the UR driver's own rule) stops the arm (the targets stay where they are). The targets may lead
  the measured joints by at most `MAX_TARGET_LEAD_RAD` (no wind-up against the table or the cube);
- the gripper takes an opening in metres (`set_gripper_opening`);
- episodes: every control period (0.1 s simulated) the task's success detector runs and the step
  counts; an episode ends on success or at the task's horizon, exactly as `Task.step` would.
No workspace clip here: on a robot the controller keeps the tool in its box (controllers.safety).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pybullet as p

from sim_bridge.ur5 import kinematics, model
from sim_bridge.ur5.robot import CONTROL_RATE_HZ, PHYSICS_RATE_HZ, POSITION_GAIN, SUBSTEPS
from sim_bridge.ur5.tasks import UR5Task

PHYSICS_DT_S = 1.0 / PHYSICS_RATE_HZ
MAX_TARGET_LEAD_RAD = 0.1
"""The joint position targets run ahead of the measured joints by at most this much."""
MAX_CATCH_UP_STEPS = 48
"""At most this many physics steps per `advance_to` call (0.2 s): a stalled process does not replay a burst."""


@dataclass
class EpisodeEnd:
    episode: int
    seed: int
    success: bool
    steps: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class DriverSim:
    """One UR5 task driven by velocity commands on its own clock (see the module docstring)."""

    def __init__(self, task: UR5Task, command_timeout_s: float = 0.1):
        self.task = task
        self.spec = task.spec
        self.command_timeout_s = command_timeout_s
        self.time_s = 0.0
        """Simulated time since the episode started, s."""
        self.physics_steps = 0
        self.steps = 0
        """Control periods elapsed in the episode (the task's step count)."""
        self.seed = 0
        self.success = False
        self.command_timeouts = 0
        """Times the arm was stopped because the newest command was older than command_timeout_s."""
        self.lagged_steps = 0
        """Physics steps dropped because the caller fell more than MAX_CATCH_UP_STEPS behind."""
        self._qdot = np.zeros(6)
        self._tool_vel: np.ndarray | None = None
        self._command_time = -np.inf
        self._stopped = True
        self._q_target = np.zeros(6)

    # --- episodes --------------------------------------------------------------------------------
    def reset(self, seed: int) -> None:
        self.task.reset(seed)
        self.seed, self.time_s, self.physics_steps, self.steps, self.success = int(seed), 0.0, 0, 0, False
        self._q_target = self.joint_state()[0][:6].copy()
        self._qdot, self._tool_vel, self._command_time, self._stopped = np.zeros(6), None, -np.inf, True
        self.set_gripper_opening(2 * model.FINGER_STROKE_M)

    @property
    def robot(self):
        return self.task.robot

    # --- commands --------------------------------------------------------------------------------
    def set_joint_velocity(self, qdot_rad_s: np.ndarray, now_s: float) -> None:
        """The newest joint-velocity command (6,), rad/s, received at wall-clock `now_s` (s, any monotonic base)."""
        self._qdot, self._tool_vel, self._command_time = np.asarray(qdot_rad_s, np.float64).reshape(6).copy(), None, now_s

    def set_tool_velocity(self, tool_vel_m_s: np.ndarray, now_s: float) -> None:
        """The newest tool twist's linear part (3,), m/s in the base frame; the tool keeps pointing down."""
        self._tool_vel, self._command_time = np.asarray(tool_vel_m_s, np.float64).reshape(3).copy(), now_s

    def set_gripper_opening(self, opening_m: float) -> None:
        target = float(np.clip(opening_m / 2, 0.0, model.FINGER_STROKE_M))
        for j in self.robot.finger_joints:
            p.setJointMotorControl2(self.robot.body, j, p.POSITION_CONTROL, targetPosition=target,
                                    force=model.FINGER_FORCE_N, maxVelocity=model.FINGER_VEL_M_S,
                                    physicsClientId=self.task.client)

    # --- physics ---------------------------------------------------------------------------------
    def advance_to(self, time_s: float, now_s: float) -> EpisodeEnd | None:
        """Step the physics until the episode's simulated time reaches `time_s`; `now_s`: wall clock for command ages.

        Returns the record of an episode that ended on the way (the caller resets the next one)."""
        due = int(time_s * PHYSICS_RATE_HZ) - self.physics_steps
        if due > MAX_CATCH_UP_STEPS:
            self.lagged_steps += due - MAX_CATCH_UP_STEPS
            self.physics_steps += due - MAX_CATCH_UP_STEPS
            due = MAX_CATCH_UP_STEPS
        fresh = now_s - self._command_time <= self.command_timeout_s
        if not fresh and not self._stopped and np.isfinite(self._command_time):
            self.command_timeouts += 1
        self._stopped = not fresh
        robot, client = self.robot, self.task.client
        for _ in range(max(0, due)):
            q = np.array([s[0] for s in p.getJointStates(robot.body, robot.arm_joints, physicsClientId=client)])
            if fresh:
                qdot = self._qdot if self._tool_vel is None else \
                    kinematics.tool_velocity_to_joint_velocity(q, self._tool_vel)
                self._q_target = np.clip(self._q_target + qdot * PHYSICS_DT_S,
                                         q - MAX_TARGET_LEAD_RAD, q + MAX_TARGET_LEAD_RAD)
            p.setJointMotorControlArray(robot.body, robot.arm_joints, p.POSITION_CONTROL,
                                        targetPositions=self._q_target.tolist(), forces=list(model.JOINT_EFFORT_NM),
                                        positionGains=[POSITION_GAIN] * 6, physicsClientId=client)
            p.stepSimulation(physicsClientId=client)
            self.physics_steps += 1
            if self.physics_steps % SUBSTEPS == 0:  # one control period of simulated time
                self.steps += 1
                self.success = self.task.is_success()
                if self.success or self.steps >= self.spec.max_steps:
                    self.time_s = self.physics_steps * PHYSICS_DT_S
                    return EpisodeEnd(-1, self.seed, self.success, self.steps)
        self.time_s = self.physics_steps * PHYSICS_DT_S
        return None

    # --- measurements ----------------------------------------------------------------------------
    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities (8,) in the order of `spec.joint_names` (rad, rad/s; fingers m, m/s)."""
        states = p.getJointStates(self.robot.body, self.robot.joints, physicsClientId=self.task.client)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def object_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Object name -> (position (3,), quaternion xyzw (4,)) in the base frame: the cube, and the bowl or target."""
        pos, quat = self.task.cube_pose()
        out = {"cube": (pos, quat)}
        for name in ("bowl", "target"):
            where = getattr(self.task, f"{name}_pos", None)
            if where is not None:
                out[name] = (np.asarray(where, np.float64), np.array([0.0, 0.0, 0.0, 1.0]))
        return out

    @property
    def cube_size_m(self) -> float:
        return float(self.task.cube_size_m)


CONTROL_PERIOD_S = 1.0 / CONTROL_RATE_HZ
