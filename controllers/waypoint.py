"""Waypoint-tracking controllers and the motion sequencer of the REQ paper.

A waypoint-tracking controller drives the tool frame toward a target frame with
P-control (REQ, Jeong et al. 2020, Sec. 4 / App. A):

    psi_p = K_p (p_d - p_t)                         linear velocity, m/s
    psi_o = K_o delta_eps                           angular velocity, rad/s
    delta_eps = eta_t eps_d - eta_d eps_t - S(eps_d) eps_t

with quaternions q = (eps, eta) (vector part eps, scalar part eta; stored in
x, y, z, w order like PyBullet and scipy) and S(.) the cross-product matrix.
Both outputs are capped in norm.

An expert is a sequence of `Motion`s: each holds a gripper (or hand) command,
a target frame computed from the observation (e.g. "5 cm above the cube"), a
timeout, and an optional jump function that may send the sequence to another
motion (e.g. back to the grasp when the cube slipped). `MotionSequencer` runs
such a sequence step by step. Everything here is pure numpy: the same code runs
in the simulator, in tests and in the ROS control node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

NamedObs = Mapping[str, np.ndarray]


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrix S(v), so that S(v) @ w == np.cross(v, w)."""
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def quaternion_error(q_desired: np.ndarray, q_current: np.ndarray) -> np.ndarray:
    """Orientation error delta_eps (3,) between two unit quaternions in x, y, z, w order.

    delta_eps = eta_t eps_d - eta_d eps_t - S(eps_d) eps_t, the vector part of
    q_d * q_t^-1: the rotation still to go, expressed in the world frame, of
    magnitude sin(angle / 2). The sign of q_t is chosen so the error takes the
    short way round (q and -q are the same rotation).
    """
    q_d = np.asarray(q_desired, dtype=np.float64)
    q_t = np.asarray(q_current, dtype=np.float64)
    if np.dot(q_d, q_t) < 0.0:
        q_t = -q_t
    eps_d, eta_d = q_d[:3], q_d[3]
    eps_t, eta_t = q_t[:3], q_t[3]
    return eta_t * eps_d - eta_d * eps_t - skew(eps_d) @ eps_t


def cap_norm(v: np.ndarray, max_norm: float) -> np.ndarray:
    """Scale `v` down so that its Euclidean norm is at most `max_norm`."""
    norm = float(np.linalg.norm(v))
    return v if norm <= max_norm or norm == 0.0 else v * (max_norm / norm)


def interpolate_posture(start: np.ndarray, goal: np.ndarray, step: int, ramp_steps: int) -> np.ndarray:
    """Joint-space posture `step` steps into a linear ramp of `ramp_steps` steps from `start` to `goal`.

    A hand posture (open, pre-grasp, power grasp, ...) is a vector of joint targets; a
    motion that changes posture moves to it gradually so the fingers do not slap the
    object. `step <= 0` gives `start`, `step >= ramp_steps` gives `goal` (so
    `ramp_steps <= 0` jumps straight to `goal`).
    """
    start, goal = np.asarray(start, dtype=np.float64), np.asarray(goal, dtype=np.float64)
    if start.shape != goal.shape:
        raise ValueError(f"posture shapes differ: start {start.shape}, goal {goal.shape}")
    fraction = 1.0 if ramp_steps <= 0 else float(np.clip(step / ramp_steps, 0.0, 1.0))
    return start + fraction * (goal - start)


@dataclass(frozen=True)
class WaypointGains:
    """Gains and caps of the P-law."""

    kp_pos: float = 4.0
    """K_p, 1/s: linear velocity per metre of position error."""
    kp_ori: float = 2.0
    """K_o, 1/s: angular velocity per unit of quaternion error."""
    max_lin_vel_m_s: float = 0.1
    """Cap on the norm of the commanded linear velocity."""
    max_ang_vel_rad_s: float = 1.0
    """Cap on the norm of the commanded angular velocity."""

    def __post_init__(self) -> None:
        for name in ("kp_pos", "kp_ori", "max_lin_vel_m_s", "max_ang_vel_rad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"WaypointGains.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Target:
    """A target frame: position (3,) in metres, optional orientation quaternion (4,) x, y, z, w."""

    pos_m: np.ndarray
    quat_xyzw: np.ndarray | None = None


class WaypointController:
    """P-control of the tool frame toward a target frame (psi_p, psi_o above)."""

    def __init__(self, gains: WaypointGains = WaypointGains()):
        self.gains = gains

    def act(
        self, pos_m: np.ndarray, target: Target, quat_xyzw: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (linear velocity (3,) m/s, angular velocity (3,) rad/s) toward `target`."""
        lin = cap_norm(self.gains.kp_pos * (np.asarray(target.pos_m, float) - np.asarray(pos_m, float)),
                       self.gains.max_lin_vel_m_s)
        if target.quat_xyzw is None or quat_xyzw is None:
            ang = np.zeros(3)
        else:
            ang = cap_norm(self.gains.kp_ori * quaternion_error(target.quat_xyzw, quat_xyzw),
                           self.gains.max_ang_vel_rad_s)
        return lin, ang


@dataclass(frozen=True)
class Motion:
    """One segment of an expert: hold `gripper`, drive the tool to `target` until reached or timed out.

    `target(obs)` is evaluated every step, so targets relative to moving objects follow them.
    `jump(obs, ctx)` is evaluated every step and may return the name of a motion to go to
    (e.g. back to "grasp" when the object slipped), or None to stay.
    `primitive(obs, ctx)`, when given, replaces the P-law: it returns (lin_vel, ang_vel), or
    `JointTargets` for a primitive that commands the joints itself (a scripted or learned primitive,
    e.g. the pen's learned in-hand reorientation, `policies.experts.LearnedPrimitive`).
    """

    name: str
    target: Callable[[NamedObs], Target] | None
    """Target frame from the observation; None holds position (zero velocity)."""
    gripper: Any
    """Gripper or hand command held during the motion (0 open / 1 closed for the UR5, a posture for the hand)."""
    timeout_steps: int
    """Advance after this many steps even if the target is not reached."""
    tolerance_m: float = 0.01
    """Advance once the position error is below this..."""
    min_steps: int = 1
    """...and at least this many steps were spent in the motion (e.g. to let a gripper close)."""
    jump: Callable[[NamedObs, "MotionContext"], str | None] | None = None
    primitive: Callable[[NamedObs, "MotionContext"], tuple[np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if self.timeout_steps < 1:
            raise ValueError(f"motion {self.name!r}: timeout_steps must be >= 1")
        if self.min_steps < 0 or self.min_steps > self.timeout_steps:
            raise ValueError(f"motion {self.name!r}: min_steps must be in [0, timeout_steps]")


@dataclass(frozen=True)
class JointTargets:
    """What a joint-space primitive returns: position targets for the joints it drives, in the task's action layout."""

    q: np.ndarray


@dataclass
class MotionContext:
    """Where the sequencer is: readable by jump functions and primitives."""

    index: int = 0
    """Index of the current motion."""
    steps_in_motion: int = 0
    """Steps spent in the current motion so far."""
    total_steps: int = 0
    """Steps since reset."""
    jumps: int = 0
    """Number of jumps taken since reset (jump functions use it to bound retries)."""
    memory: dict[str, Any] = field(default_factory=dict)
    """Scratch space for jump functions (e.g. the object height at grasp time)."""


@dataclass(frozen=True)
class MotionCommand:
    """What the sequencer commands this step."""

    lin_vel_m_s: np.ndarray
    ang_vel_rad_s: np.ndarray
    gripper: Any
    motion: str
    done: bool
    """True once the last motion has completed: the expert holds still."""
    joint_targets: np.ndarray | None = None
    """A joint-space primitive's targets (`JointTargets.q`) this step; None for a Cartesian command."""


class MotionSequencer:
    """Runs a sequence of motions with a waypoint-tracking controller.

    `pose(obs)` extracts the current tool pose (position, quaternion or None) from the observation.
    """

    def __init__(
        self,
        motions: Sequence[Motion],
        controller: WaypointController,
        pose: Callable[[NamedObs], tuple[np.ndarray, np.ndarray | None]],
    ):
        if not motions:
            raise ValueError("a motion sequence needs at least one motion")
        names = [m.name for m in motions]
        if len(set(names)) != len(names):
            raise ValueError(f"motion names must be unique, got {names}")
        self.motions = list(motions)
        self.controller = controller
        self.pose = pose
        self._index_of = {m.name: i for i, m in enumerate(self.motions)}
        self.ctx = MotionContext()

    def reset(self) -> None:
        self.ctx = MotionContext()

    @property
    def done(self) -> bool:
        return self.ctx.index >= len(self.motions)

    def _go_to(self, index: int) -> None:
        self.ctx.index = index
        self.ctx.steps_in_motion = 0

    def act(self, obs: NamedObs) -> MotionCommand:
        ctx = self.ctx
        # At most one jump per step (so two motions that jump to each other cannot spin), then
        # completion on the current observation; completion may cascade over motions already reached.
        if not self.done:
            motion = self.motions[ctx.index]
            if motion.jump is not None:
                destination = motion.jump(obs, ctx)
                if destination is not None:
                    if destination not in self._index_of:
                        raise KeyError(f"motion {motion.name!r} jumps to unknown motion {destination!r}")
                    ctx.jumps += 1
                    self._go_to(self._index_of[destination])
        while not self.done and self._complete(self.motions[ctx.index], obs):
            self._go_to(ctx.index + 1)
        ctx.total_steps += 1
        if self.done:
            last = self.motions[-1]
            return MotionCommand(np.zeros(3), np.zeros(3), last.gripper, "done", True)
        motion = self.motions[ctx.index]
        ctx.steps_in_motion += 1
        if motion.primitive is not None:
            out = motion.primitive(obs, ctx)
            if isinstance(out, JointTargets):
                return MotionCommand(np.zeros(3), np.zeros(3), motion.gripper, motion.name, False,
                                     joint_targets=np.asarray(out.q, np.float64))
            lin, ang = out
        elif motion.target is None:
            lin, ang = np.zeros(3), np.zeros(3)
        else:
            pos, quat = self.pose(obs)
            lin, ang = self.controller.act(pos, motion.target(obs), quat)
        return MotionCommand(np.asarray(lin, float), np.asarray(ang, float), motion.gripper, motion.name, False)

    def _complete(self, motion: Motion, obs: NamedObs) -> bool:
        steps = self.ctx.steps_in_motion
        if steps >= motion.timeout_steps:
            return True
        if steps < motion.min_steps:
            return False
        if motion.target is None or motion.primitive is not None:
            return False
        pos, _ = self.pose(obs)
        return float(np.linalg.norm(motion.target(obs).pos_m - pos)) < motion.tolerance_m
