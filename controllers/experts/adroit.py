"""Suboptimal experts for the Adroit hand tasks, composed of waypoint motions (REQ recipe).

Following REQ (Jeong et al. 2020, Sec. 4 and App. A): an expert is a sequence of
motions, each a (hand command, target frame, optional primitive, optional jump
function) tuple run by `MotionSequencer`. Here the hand command is a named
posture of the 22 finger joints (open, pre-grasp, power grasp, pinch, hook),
ramped in joint space with `interpolate_posture` when a motion starts, plus
fixed targets for the wrist and the arm joints that the Cartesian law does not
drive. The arm tracks the palm target with the waypoint P-law
`psi_p = K_p (p_d - p_t)`; the Cartesian velocity is mapped to arm joint
velocities with damped least squares on the palm Jacobian the task reports
(`palm_jac`), integrated into the joint position target the task's position
servos track (with the lead over the measured joint position capped, so a
blocked arm does not wind up). Jump functions send the sequence back to an
earlier motion when the object slipped or the door did not move (retries).

Action layout (see `sim_bridge.adroit.tasks`): position targets in joint units,
`[arm (n_arm), wrist (2), fingers (22)]`. The experts read only named full state
(`spec.state.unpack(obs["state"])`); no simulator is imported here.

These experts are deliberately simple ("suboptimal"): fixed postures, no force
control, no in-hand manipulation. Pen has no arm; its default expert tilts the wrist
toward the goal axis and holds the pen; its `primitive` variant runs the learned
in-hand reorientation primitive as a motion (`pen_expert`; `policies.experts` loads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from controllers.waypoint import (
    JointTargets, Motion, MotionContext, MotionSequencer, NamedObs, Target, WaypointController, WaypointGains,
    interpolate_posture,
)

FINGER_JOINTS = (
    "FFJ3", "FFJ2", "FFJ1", "FFJ0", "MFJ3", "MFJ2", "MFJ1", "MFJ0", "RFJ3", "RFJ2", "RFJ1", "RFJ0",
    "LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0", "THJ4", "THJ3", "THJ2", "THJ1", "THJ0",
)
"""The 22 finger joints in action order (MCP abduction J3, flexion J2/J1/J0; little-finger CMC J4; thumb J4..J0)."""


def posture(flex_rad: float = 0.0, **joints: float) -> np.ndarray:
    """A finger posture (22,) in radians: every finger flexion joint (J2, J1, J0) at `flex_rad`, then overrides."""
    values = {name: (flex_rad if name[:2] in ("FF", "MF", "RF", "LF") and name[-1] in "210" else 0.0)
              for name in FINGER_JOINTS}
    for name, value in joints.items():
        if name not in values:
            raise KeyError(f"unknown finger joint {name!r}; known: {FINGER_JOINTS}")
        values[name] = value
    return np.array([values[name] for name in FINGER_JOINTS])


POSTURES: dict[str, np.ndarray] = {
    "open": posture(0.0),
    "pregrasp": posture(0.3, THJ4=0.9, THJ3=0.6, THJ1=0.2, THJ0=-0.3),
    "power": posture(1.2, LFJ4=0.3, THJ4=0.3, THJ3=1.3, THJ2=0.2, THJ1=0.5, THJ0=-0.3),
    "pinch": posture(0.0, FFJ2=1.0, FFJ1=0.9, FFJ0=0.6, MFJ2=0.9, MFJ1=0.8, MFJ0=0.5,
                     THJ4=1.0, THJ3=1.1, THJ2=0.2, THJ1=0.4, THJ0=-0.5),
    "hook": posture(1.4, THJ4=0.5, THJ3=0.3),
}
"""Named hand postures used by the experts (finger joint targets, rad)."""


@dataclass(frozen=True)
class HandCommand:
    """What a motion holds besides the palm target: a posture and fixed joint targets."""

    posture: str
    """Key of `POSTURES`."""
    joints: dict[int, float] = field(default_factory=dict)
    """Fixed targets for action dimensions the Cartesian law does not drive (index in the action -> value)."""
    joints_fn: "Callable[[NamedObs], dict[int, float]] | None" = None
    """Targets computed from the observation each step (index in the action -> value); override `joints`."""
    speed: float = 1.0
    """Factor on the P-law's Cartesian palm velocity (gain and cap) during this motion: > 1 for free-space moves."""


@dataclass(frozen=True)
class ArmMapping:
    """How Cartesian palm velocities become arm joint position targets."""

    translation_joints: tuple[int, ...]
    """Arm joints (indices into the arm block) that the palm P-law drives; the others hold their HandCommand value or 0."""
    damping: float = 0.02
    """Damped-least-squares damping lambda (m) on the palm Jacobian."""
    max_lead: float = 0.3
    """Cap on |target - measured| per arm joint (m or rad): anti-windup when the arm is blocked."""
    ramp_steps: int = 5
    """Control steps over which a posture change is ramped."""


class HandMotionExpert:
    """Runs a motion sequence on an Adroit hand: palm waypoints for the arm, ramped postures for the fingers."""

    def __init__(self, motions: list[Motion], mapping: ArmMapping, n_arm: int, gains: WaypointGains,
                 noise_std: float = 0.0, wrist_rad: tuple[float, float] = (0.0, 0.0)):
        for m in motions:
            if not isinstance(m.gripper, HandCommand) or m.gripper.posture not in POSTURES:
                raise ValueError(f"motion {m.name!r}: gripper must be a HandCommand with a posture in {sorted(POSTURES)}")
        self.sequencer = MotionSequencer(motions, WaypointController(gains), pose=lambda o: (o["palm_pos_m"], None))
        self.mapping = mapping
        self.n_arm = n_arm
        self.noise_std = noise_std
        self.wrist_rad = np.asarray(wrist_rad, dtype=np.float64)
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.sequencer.reset()
        self.rng = np.random.default_rng([int(seed), 8])
        self._arm_target: np.ndarray | None = None
        self._fingers: np.ndarray | None = None
        self._ramp_start: np.ndarray | None = None
        self._motion = ""

    @property
    def ctx(self) -> MotionContext:
        return self.sequencer.ctx

    def act(self, obs: NamedObs) -> np.ndarray:
        n_arm = self.n_arm
        q = np.asarray(obs["joint_pos_rad"], dtype=np.float64)
        if self._fingers is None:
            self._fingers = q[n_arm + 2:n_arm + 24].copy()
            self._arm_target = q[:n_arm].copy()
        cmd = self.sequencer.act(obs)
        hand: HandCommand = cmd.gripper
        joints = dict(hand.joints)
        if hand.joints_fn is not None:
            joints.update(hand.joints_fn(obs))
        if cmd.motion != self._motion:
            self._motion, self._ramp_start = cmd.motion, self._fingers.copy()
        self._fingers = interpolate_posture(self._ramp_start, POSTURES[hand.posture],
                                            self.ctx.steps_in_motion, self.mapping.ramp_steps)
        action = np.concatenate([np.zeros(n_arm), self.wrist_rad, self._fingers])
        if n_arm:
            lin = hand.speed * np.asarray(cmd.lin_vel_m_s, dtype=np.float64)
            if self.noise_std > 0:
                lin = lin + self.rng.normal(0.0, self.noise_std, size=3)
            idx = np.asarray(self.mapping.translation_joints)
            jac = np.asarray(obs["palm_jac"], dtype=np.float64).reshape(3, n_arm)[:, idx]
            dq = jac.T @ np.linalg.solve(jac @ jac.T + self.mapping.damping ** 2 * np.eye(3), lin)
            target = self._arm_target.copy()
            target[idx] += dq * 0.1  # one control period, 0.1 s
            lead = self.mapping.max_lead
            target[idx] = np.clip(target[idx], q[idx] - lead, q[idx] + lead)
            for j in range(n_arm):
                if j not in idx:
                    target[j] = joints.get(j, 0.0)
            self._arm_target = target
            action[:n_arm] = target
        for j, value in joints.items():
            if j >= n_arm:
                action[j] = value
        return action


# --- task experts ------------------------------------------------------------------------------

def _offset(field_name: str, offset_m) -> callable:
    offset = np.asarray(offset_m, dtype=np.float64)
    return lambda o: Target(np.asarray(o[field_name], dtype=np.float64) + offset)


def relocate_expert(variant: str | None = None, noise_std: float = 0.0) -> HandMotionExpert:
    """Relocate: above the ball, down (open hand, palm low on the ball), power grasp, lift, carry the ball to the target, hold.

    Jump: while lifting or carrying, if the ball is more than 8 cm from the palm (dropped),
    go back to "above" (at most 3 retries).
    """
    def dropped(o: NamedObs, ctx: MotionContext) -> str | None:
        far = np.linalg.norm(np.asarray(o["ball_pos_m"]) - np.asarray(o["palm_pos_m"])) > 0.08
        return "above" if far and ctx.jumps < 3 and ctx.steps_in_motion > 2 else None

    grasp_offset = np.array([0.0, -0.01, 0.015])  # palm low on the ball: the fingers close below its equator
    motions = [
        Motion("above", _offset("ball_pos_m", grasp_offset + [0, 0, 0.06]), HandCommand("open"), timeout_steps=25,
               tolerance_m=0.02),
        Motion("down", _offset("ball_pos_m", grasp_offset), HandCommand("open"), timeout_steps=20,
               tolerance_m=0.01),
        Motion("grasp", None, HandCommand("power"), timeout_steps=8, min_steps=8),
        Motion("lift", _offset("ball_pos_m", grasp_offset + [0, 0, 0.12]), HandCommand("power"), timeout_steps=10,
               tolerance_m=0.02, jump=dropped),
        Motion("carry", lambda o: Target(np.asarray(o["target_pos_m"], float) + (np.asarray(o["palm_pos_m"], float)
                                                                                  - np.asarray(o["ball_pos_m"], float))),
               HandCommand("power"), timeout_steps=40, tolerance_m=0.01, jump=dropped),
        Motion("hold", None, HandCommand("power"), timeout_steps=200),
    ]
    return HandMotionExpert(motions, ArmMapping(translation_joints=(0, 2, 3)), n_arm=6,
                            gains=WaypointGains(kp_pos=2.5, max_lin_vel_m_s=0.25), noise_std=noise_std)


# Door model geometry (gymnasium-robotics adroit_door.xml), in the door's hinge frame: x along the closed
# door away from the hinge, y toward the hand (the door swings toward -y, about +z).
DOOR_HANDLE_TO_HINGE_X_M = -0.46
"""x of the latch axis relative to the hinge axis, less the handle lever (m)."""
DOOR_HANDLE_ARM_M = 0.15
"""The handle site's distance from the latch axis along the lever (m)."""
DOOR_HANDLE_Y_M = -0.15
"""y of the handle site relative to the hinge axis (m)."""
DOOR_UNLATCHED_RAD = 1.3
"""Latch angle (rad) past which the bolt clears the frame post and the door swings free."""

# Door expert parameters (tuned on seeds 1000000..1000039, state mode).
DOOR_FRONT_SPEED = 1.5
"""Speed factor of the free-space approach to the front of the handle."""
DOOR_ONTO_OFFSET_M = (0.0, -0.01, 0.0)
"""Palm target relative to the handle site before hooking (m, world)."""
DOOR_PRESS_OFFSET_M = (0.0, -0.02, -0.08)
"""Palm target relative to the (moving) handle site while pressing the lever down (m, world)."""
DOOR_ROLL_PER_LATCH = 1.0
"""Forearm roll target (ARRz, rad) per radian of latch angle while pressing: the hooked fingers turn with the lever."""
DOOR_SLIP_M = 0.10
"""Palm-to-handle distance (m) past which the press has lost the lever (retry from the front)."""
DOOR_GRIP_ARM_M = 0.09
"""Where the pull grips the lever: distance from the latch axis (m), inside the handle site."""
DOOR_PALM_BEHIND_M = 0.03
"""While pulling, the palm sits this far behind the lever (toward the door face, +y) (m)."""
DOOR_PULL_LEAD_RAD = 0.1
"""How far ahead along the door's swing (hinge angle, rad) the pull target leads the lever."""
DOOR_PULL_PATIENCE = 10
"""Control steps the pull may take to swing the door ajar before the expert hooks the lever again."""
DOOR_AJAR_RAD = 0.10
"""Hinge angle (rad) past which the expert lets go of the lever and sweeps the door open from behind."""
DOOR_FREE_SPEED = 2.0
"""Speed factor of the free-space moves around the door's free edge."""
DOOR_BACK_STEPS = 6
"""Timeout (control steps) of the move straight back from the lever."""
DOOR_AROUND_STEPS = 10
"""Timeout (control steps) of the move beyond the door's free edge."""
DOOR_PAST_STEPS = 10
"""Timeout (control steps) of the move level with the door's back."""
DOOR_BACK_XY_M = (-0.35, -0.30)
"""Waypoint straight back from the lever, clear of the door (hinge frame, m)."""
DOOR_AROUND_XY_M = (-0.72, -0.20)
"""Waypoint beyond the door's free edge, in front of it (hinge frame, m)."""
DOOR_PAST_XY_M = (-0.72, 0.10)
"""Waypoint beyond the door's free edge, level with its back (hinge frame, m)."""
DOOR_BEHIND_XY_M = (-0.52, 0.12)
"""Waypoint behind the door near its free edge (hinge frame, m)."""
DOOR_PUSH_XY_M = (-0.48, 0.10)
"""Where the palm pushes the door's back while sweeping (hinge frame, m)."""
DOOR_PUSH_LEAD_RAD = 0.8
"""How far ahead along the swing (rad) the sweeping palm's target leads the door."""
DOOR_SWEEP_SPEED = 3.0
"""Speed factor of the sweep (the palm pushes the door along its swing)."""


def _rot2(angle_rad: float) -> np.ndarray:
    """2-D rotation matrix about z."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def door_expert(variant: str | None = None, noise_std: float = 0.0) -> HandMotionExpert:
    """Door: hook the lever, press it down past the bolt, pull the door ajar, then sweep it open from behind.

    Motions: "front" of the handle (open hand), "onto" it (pre-grasp), "hook" the fingers,
    "press" the lever down while rolling the forearm with the latch (the fingers stay across
    the lever), "pull" along the door's arc about the hinge (the hinge axis is recovered from
    the handle position and the hinge and latch angles), then let go: "back" off the lever,
    "around" the door's free edge, "past" it level with the door's back, "behind" the door,
    and "sweep": push the door's back along its swing until it is open. Door-fixed waypoints
    are in the hinge frame (`DOOR_*_XY_M`) and turn with the door.

    Jumps: "press" goes to "pull" once the latch is past `DOOR_UNLATCHED_RAD`, and back to
    "front" if the palm lost the lever; "pull" goes "back" once the door is ajar
    (`DOOR_AJAR_RAD`), or to "front" after `DOOR_PULL_PATIENCE` steps or a slip (> 12 cm);
    "sweep" goes "around" again if the palm ended up in front of the door face.
    """
    def latch_stuck(o: NamedObs, ctx: MotionContext) -> str | None:
        stuck = ctx.steps_in_motion > DOOR_PULL_PATIENCE  # the door did not swing ajar: hook the lever again
        slipped = np.linalg.norm(np.asarray(o["handle_pos_m"]) - np.asarray(o["palm_pos_m"])) > 0.12
        return "front" if (stuck or slipped) and ctx.jumps < 8 else None

    def roll_with_latch(o: NamedObs) -> dict[int, float]:
        """Roll the forearm (ARRz) with the lever so the hooked fingers stay across it."""
        return {3: DOOR_ROLL_PER_LATCH * float(np.asarray(o["latch_rad"])[0])}

    def unlatched(o: NamedObs, ctx: MotionContext) -> str | None:
        if float(np.asarray(o["latch_rad"])[0]) > DOOR_UNLATCHED_RAD:
            return "pull"
        slipped = np.linalg.norm(np.asarray(o["handle_pos_m"]) - np.asarray(o["palm_pos_m"])) > DOOR_SLIP_M
        return "front" if slipped and ctx.jumps < 8 else None

    def pull_target(o: NamedObs) -> Target:
        """The handle turned further about the door hinge by `DOOR_PULL_LEAD_RAD`: the target follows the door's arc."""
        theta = float(np.asarray(o["door_hinge_rad"])[0])
        phi = float(np.asarray(o["latch_rad"])[0])
        handle = np.asarray(o["handle_pos_m"], float)
        # handle relative to the hinge axis in the door frame (latch turned by phi about the door's y axis)
        rel = np.array([DOOR_HANDLE_TO_HINGE_X_M + DOOR_HANDLE_ARM_M * np.cos(phi), DOOR_HANDLE_Y_M])
        hinge = handle[:2] - _rot2(theta) @ rel
        # grip the lever nearer its axis than the handle site, so the fingers do not slide off its end
        grip = rel + (DOOR_GRIP_ARM_M - DOOR_HANDLE_ARM_M) * np.array([np.cos(phi), 0.0]) + [0.0, DOOR_PALM_BEHIND_M]
        ahead = hinge + _rot2(theta + DOOR_PULL_LEAD_RAD) @ grip
        z = handle[2] + (DOOR_HANDLE_ARM_M - DOOR_GRIP_ARM_M) * np.sin(phi)
        return Target(np.array([ahead[0], ahead[1], z]))

    def hinge_xy(o: NamedObs) -> tuple[np.ndarray, float, float]:
        """The hinge axis (world x, y) from the handle, the hinge angle and the latch angle."""
        theta = float(np.asarray(o["door_hinge_rad"])[0])
        phi = float(np.asarray(o["latch_rad"])[0])
        rel = np.array([DOOR_HANDLE_TO_HINGE_X_M + DOOR_HANDLE_ARM_M * np.cos(phi), DOOR_HANDLE_Y_M])
        return np.asarray(o["handle_pos_m"], float)[:2] - _rot2(theta) @ rel, theta, phi

    def door_point(xy_m, lead_rad: float = 0.0):
        """A point fixed to the door (hinge frame: x along the door away from the hinge, y toward its back), at latch-axis height."""
        def target(o: NamedObs) -> Target:
            hinge, theta, phi = hinge_xy(o)
            xy = hinge + _rot2(theta + lead_rad) @ np.asarray(xy_m, float)
            z = float(np.asarray(o["handle_pos_m"])[2]) + DOOR_HANDLE_ARM_M * np.sin(phi)
            return Target(np.array([xy[0], xy[1], z]))
        return target

    def ajar(o: NamedObs, ctx: MotionContext) -> str | None:
        if float(np.asarray(o["door_hinge_rad"])[0]) > DOOR_AJAR_RAD:
            return "back"
        return latch_stuck(o, ctx)

    def fell_in_front(o: NamedObs, ctx: MotionContext) -> str | None:
        """The palm ended up in front of the door face again: go around its edge again."""
        hinge, theta, _ = hinge_xy(o)
        palm = _rot2(-theta) @ (np.asarray(o["palm_pos_m"], float)[:2] - hinge)
        in_front = palm[1] < 0.0 and palm[0] > DOOR_BEHIND_XY_M[0]
        return "around" if in_front and ctx.steps_in_motion > 3 and ctx.jumps < 12 else None

    motions = [
        Motion("front", _offset("handle_pos_m", [0.0, -0.10, 0.0]), HandCommand("open", speed=DOOR_FRONT_SPEED), timeout_steps=25,
               tolerance_m=0.02),
        Motion("onto", _offset("handle_pos_m", DOOR_ONTO_OFFSET_M), HandCommand("pregrasp"), timeout_steps=15,
               tolerance_m=0.01),
        Motion("hook", None, HandCommand("hook"), timeout_steps=6, min_steps=6),
        Motion("press", _offset("handle_pos_m", DOOR_PRESS_OFFSET_M), HandCommand("hook", joints_fn=roll_with_latch), timeout_steps=25,
               tolerance_m=0.0, jump=unlatched),
        Motion("pull", pull_target, HandCommand("hook"), timeout_steps=60,
               tolerance_m=0.0, jump=ajar),
        Motion("back", door_point(DOOR_BACK_XY_M), HandCommand("hook", speed=DOOR_FREE_SPEED), timeout_steps=DOOR_BACK_STEPS, tolerance_m=0.05),
        Motion("around", door_point(DOOR_AROUND_XY_M), HandCommand("hook", speed=DOOR_FREE_SPEED), timeout_steps=DOOR_AROUND_STEPS, tolerance_m=0.05),
        Motion("past", door_point(DOOR_PAST_XY_M), HandCommand("hook", speed=DOOR_FREE_SPEED), timeout_steps=DOOR_PAST_STEPS, tolerance_m=0.05),
        Motion("behind", door_point(DOOR_BEHIND_XY_M), HandCommand("hook", speed=DOOR_FREE_SPEED), timeout_steps=5, tolerance_m=0.05),
        Motion("sweep", door_point(DOOR_PUSH_XY_M, DOOR_PUSH_LEAD_RAD), HandCommand("hook", speed=DOOR_SWEEP_SPEED), timeout_steps=200,
               tolerance_m=0.0, jump=fell_in_front),
    ]
    return HandMotionExpert(motions, ArmMapping(translation_joints=(0, 1, 2), max_lead=0.2), n_arm=4,
                            gains=WaypointGains(kp_pos=2.5, max_lin_vel_m_s=0.25), noise_std=noise_std)


HAMMER_ONTO_OFFSET_M = (0.0, 0.0, 0.0)
HAMMER_RAISE_M = (-0.08, 0.0, 0.02)
"""Head target relative to the nail head before a blow (m): back along the nail axis (the nail points to -x)."""
HAMMER_STRIKE_M = (0.12, 0.0, 0.02)
"""Head target relative to the nail head for a blow (m): through the nail along +x, its drive direction."""
HAMMER_DEVIATION_RAD = -0.5
"""Wrist deviation (WRJ1) while raising and striking: turns the head over the nail's y (the palm cannot move in y)."""
"""Palm target relative to the hammer body before the grasp (m): down on the handle."""
HAMMER_WRIST_RAD = (0.0, 0.6)
"""Wrist targets (WRJ1, WRJ0) held by the hammer expert: the flexed wrist lets the fingers close under the handle."""


def hammer_expert(variant: str | None = None, noise_std: float = 0.0) -> HandMotionExpert:
    """Hammer: onto the handle (pre-grasp), power grasp, lift, head behind the nail, strike along the nail, repeat.

    The hammer arm has only two joints (ARRx, ARRy): the palm moves in a sphere patch, so
    targets are reached approximately. The wrist is held flexed (`HAMMER_WRIST_RAD`) so the
    fingers close under the handle; while raising and striking, the wrist deviation
    (`HAMMER_DEVIATION_RAD`) turns the head over the nail, which points to -x and is driven
    along +x: "raise" puts the head 8 cm behind the nail head, "strike" drives it 12 cm through.
    Jump: if the hammer is more than 10 cm from the palm (dropped) go back to "onto" (at most
    2 retries); "strike" loops back to "raise" until the horizon (repeated blows).
    """
    def dropped(o: NamedObs, ctx: MotionContext) -> str | None:
        far = np.linalg.norm(np.asarray(o["hammer_pos_m"]) - np.asarray(o["palm_pos_m"])) > 0.10
        return "onto" if far and ctx.jumps < 2 and ctx.steps_in_motion > 2 else None

    def again(o: NamedObs, ctx: MotionContext) -> str | None:
        return "raise" if ctx.steps_in_motion >= 6 else None

    def head_to_nail(offset_m):
        def target(o: NamedObs) -> Target:
            palm, head = np.asarray(o["palm_pos_m"], float), np.asarray(o["hammer_head_pos_m"], float)
            nail = np.asarray(o["nail_pos_m"], float)
            return Target(nail + (palm - head) + np.asarray(offset_m, float))
        return target

    motions = [
        Motion("onto", _offset("hammer_pos_m", HAMMER_ONTO_OFFSET_M), HandCommand("pregrasp"), timeout_steps=15,
               tolerance_m=0.01),
        Motion("grasp", None, HandCommand("power"), timeout_steps=8, min_steps=8),
        Motion("lift", _offset("hammer_pos_m", [0.0, 0.0, 0.15]), HandCommand("power"), timeout_steps=10,
               tolerance_m=0.02, jump=dropped),
        Motion("raise", head_to_nail(HAMMER_RAISE_M), HandCommand("power", {2: HAMMER_DEVIATION_RAD}),
               timeout_steps=10, tolerance_m=0.02, jump=dropped),
        Motion("strike", head_to_nail(HAMMER_STRIKE_M), HandCommand("power", {2: HAMMER_DEVIATION_RAD}),
               timeout_steps=8, tolerance_m=0.0, jump=again),
    ]
    return HandMotionExpert(motions, ArmMapping(translation_joints=(0, 1)), n_arm=2,
                            gains=WaypointGains(kp_pos=3.0, max_lin_vel_m_s=0.4), noise_std=noise_std,
                            wrist_rad=HAMMER_WRIST_RAD)


PEN_VARIANTS: dict[str | None, str] = {
    None: "wrist-only tilt toward the goal axis with the hand open (no in-hand reorientation)",
    "primitive": "the learned in-hand reorientation primitive (REQ from scratch on the shaped orientation reward, "
                 "policies/pretrained/req_adroit_pen_primitive) as a motion of the sequence",
}
"""Known pen expert variants, with what each does."""


def pen_expert(variant: str | None = None, noise_std: float = 0.0, primitive=None):
    """Pen: by default hold the pen on the flat hand and tilt the wrist toward the goal axis (no in-hand
    reorientation, 0.01 on held-out seeds); `primitive`: one "reorient" motion whose primitive is the learned
    policy `primitive(obs, ctx) -> JointTargets` (the REQ paper's motion tuple with a learned primitive).
    This module is numpy only: `policies.experts.make_expert` loads the shipped primitive and passes it here."""
    if variant == "default":
        variant = None
    if variant not in PEN_VARIANTS:
        known = sorted("default" if v is None else v for v in PEN_VARIANTS)
        raise ValueError(f"unknown expert variant {variant!r} for adroit_pen; known: {known}")
    if variant is None:
        return PenExpert(noise_std=noise_std)
    if primitive is None:
        raise ValueError("adroit_pen's primitive variant runs a learned primitive: build it with "
                         "policies.experts.make_expert (it loads the shipped one), or pass primitive=")
    return PrimitiveExpert([Motion("reorient", None, None, timeout_steps=PEN_HORIZON_STEPS, primitive=primitive)],
                           noise_std=noise_std)


PEN_HORIZON_STEPS = 50
"""adroit_pen's horizon at 10 Hz (`sim_bridge.adroit.tasks.HORIZON_S`): the reorient motion never times out."""


class PrimitiveExpert:
    """A motion sequence whose motions command the joints through primitives (`JointTargets`); after the last
    motion it holds the last targets. `noise_std` (rad): Gaussian noise on every target (noisy demonstrations)."""

    def __init__(self, motions: list[Motion], noise_std: float = 0.0):
        for m in motions:
            if m.primitive is None:
                raise ValueError(f"motion {m.name!r}: a primitive expert's motions need a primitive")
        self.sequencer = MotionSequencer(motions, WaypointController(WaypointGains()), pose=lambda o: (np.zeros(3), None))
        self.noise_std = noise_std
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.sequencer.reset()
        self.rng = np.random.default_rng([int(seed), 10])
        self._last: np.ndarray | None = None

    @property
    def ctx(self) -> MotionContext:
        return self.sequencer.ctx

    def act(self, obs: NamedObs) -> np.ndarray:
        cmd = self.sequencer.act(obs)
        if cmd.joint_targets is not None:
            self._last = cmd.joint_targets
        elif self._last is None:  # done before any primitive ran: hold the measured joints (pen: all are actuated)
            self._last = np.asarray(obs["joint_pos_rad"], np.float64).copy()
        action = self._last.copy()
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return action


class PenExpert:
    """Wrist-only primitive: rotate the palm (WRJ1, WRJ0) by the pen-to-goal axis error, fingers open.

    The pen task has no arm; a waypoint law on the pen axis drives the two wrist joints
    (error components mapped to joint increments with fixed signs), the fingers hold the
    open posture so the pen lies on the palm. Succeeds only when the goal axis is within
    the wrist's reach of the initial one: the paper's answer (a learned reorientation
    primitive) is not part of this expert.
    """

    gain = 0.5
    """Wrist increment (rad) per unit of axis error per step."""

    def __init__(self, noise_std: float = 0.0):
        self.noise_std = noise_std
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([int(seed), 9])
        self._wrist = np.zeros(2)

    def act(self, obs: NamedObs) -> np.ndarray:
        err = np.asarray(obs["target_dir"], float) - np.asarray(obs["pen_dir"], float)
        step = self.gain * np.array([-err[2], err[1]])
        if self.noise_std > 0:
            step = step + self.rng.normal(0.0, self.noise_std, size=2)
        self._wrist = np.clip(self._wrist + 0.1 * step, [-0.52, -0.78], [0.17, 0.6])
        return np.concatenate([self._wrist, POSTURES["open"]])
