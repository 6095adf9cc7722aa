"""Scripted experts of the UR5 tasks, built only from `controllers.waypoint` motion sequences.

Each expert reads the named full state of its task (`tool_pos`, `cube_pos`, `cube_size`,
`bowl_pos` / `target_pos`, ...) and returns an action in the task's action layout
`(tool_vel (3), gripper (1))`, gripper 0 open / 1 closed. Targets are relative to the
objects and are re-evaluated every step. Jump functions implement retries: when the cube
did not come up with the gripper (missed or slipped grasp) the sequence goes back to
"above" and grasps again; when a push drifts off its line the pusher backs off and
re-approaches.

Variants (`VARIANTS[task]`): `None` is the default expert. `ur5_bowl` also has
`"no_retry"`, a deliberately suboptimal expert for REQ (`BOWL_STYLES`): no retry jump
functions, a grasp high on the cube, and a hurried release at carry height while still
moving toward the bowl (the cube often bounces out or lands off-centre).

Optional action noise: Gaussian, `noise_std` m/s per axis on the linear velocity, drawn
from a generator seeded by the episode seed (reproducible demonstrations).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from controllers.waypoint import (
    Motion, MotionContext, MotionSequencer, NamedObs, Target, WaypointController, WaypointGains,
)

OPEN, CLOSED = 0.0, 1.0
MIN_TOOL_Z_M = 0.02
"""Lowest tool height the tasks accept (bottom of the workspace box)."""
SLIP_GAP_M = 0.04
"""A held cube follows the tool; if the tool is this much above the cube centre, the grasp failed."""
MAX_RETRIES = 6
"""Bound on the number of jumps (retries) per episode."""


def _tool_pose(obs: NamedObs) -> tuple[np.ndarray, None]:
    return np.asarray(obs["tool_pos"], float), None  # orientation is held by the task (pointing down)


def _at(x: float, y: float, z: float) -> Target:
    return Target(np.array([x, y, z], float))


def _cube(obs: NamedObs) -> tuple[np.ndarray, float]:
    return np.asarray(obs["cube_pos"], float), float(np.asarray(obs["cube_size"]).reshape(-1)[0])


class SequenceExpert:
    """An `Expert` (see `controllers.experts`) running one motion sequence per episode."""

    def __init__(self, motions: Sequence[Motion], gains: WaypointGains, noise_std: float = 0.0):
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.sequencer = MotionSequencer(motions, WaypointController(gains), _tool_pose)
        self.noise_std = noise_std
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.sequencer.reset()
        self._rng = np.random.default_rng([int(seed), 0x5EED])

    @property
    def motion(self) -> str:
        """Name of the current motion (or "done")."""
        seq = self.sequencer
        return "done" if seq.done else seq.motions[seq.ctx.index].name

    def act(self, obs: NamedObs) -> np.ndarray:
        cmd = self.sequencer.act(obs)
        lin = cmd.lin_vel_m_s
        if self.noise_std > 0:
            lin = lin + self._rng.normal(0.0, self.noise_std, 3)
        return np.array([*lin, float(cmd.gripper)])


# --- grasping ---------------------------------------------------------------------------------
def _grasp_motions(grasp_fraction: float, retry: bool, lift_z_m: float) -> list[Motion]:
    """above -> descend -> close -> lift, with a retry (back to "above") when the cube is not coming along.

    `grasp_fraction`: grasp height as a fraction of the cube edge above its centre (0 = centre).
    """

    def above(obs):
        cube, size = _cube(obs)
        return _at(cube[0], cube[1], cube[2] + size / 2 + 0.08)

    def grasp(obs):
        cube, size = _cube(obs)
        return _at(cube[0], cube[1], max(cube[2] + grasp_fraction * size, MIN_TOOL_Z_M))

    def lift(obs):  # straight up from where the tool is (chasing the hanging cube's xy would drift)
        tool = np.asarray(obs["tool_pos"], float)
        return _at(tool[0], tool[1], lift_z_m)

    def slipped(obs, ctx: MotionContext):
        if not retry or ctx.jumps >= MAX_RETRIES or ctx.steps_in_motion < 3:
            return None
        cube, _ = _cube(obs)
        return "above" if obs["tool_pos"][2] - cube[2] > SLIP_GAP_M else None

    return [
        Motion("above", above, OPEN, timeout_steps=60, tolerance_m=0.015),
        Motion("descend", grasp, OPEN, timeout_steps=40, tolerance_m=0.006),
        Motion("close", None, CLOSED, timeout_steps=7, min_steps=7),
        Motion("lift", lift, CLOSED, timeout_steps=60, tolerance_m=0.01, jump=slipped),
    ]


def _pick(variant: str | None, noise_std: float) -> SequenceExpert:
    motions = _grasp_motions(grasp_fraction=0.0, retry=True, lift_z_m=0.25)
    motions.append(Motion("hold", None, CLOSED, timeout_steps=1000))
    return SequenceExpert(motions, WaypointGains(kp_pos=5.0, max_lin_vel_m_s=0.15), noise_std)


@dataclass(frozen=True)
class BowlStyle:
    """How carefully the bowl expert works; the default is careful, `no_retry` is the suboptimal one."""

    retry: bool = True
    """Re-grasp when the cube slips or misses the bowl (jump functions back to "above")."""
    grasp_fraction: float = 0.0
    """Grasp height above the cube centre, as a fraction of the cube edge."""
    aim_cube: bool = True
    """Aim the held cube (tool position + its offset in the hand) at the bowl centre, not the tool."""
    arrive_tolerance_m: float = 0.01
    """Distance to the carry point over the bowl at which the expert moves on to lowering/releasing."""
    lower_before_release: bool = True
    """Lower until the cube bottom is 2 cm above the rim before opening; else open at carry height."""
    release_on_the_move: bool = False
    """Keep driving toward the bowl centre while the gripper opens (the cube leaves with the tool's speed)."""


# no_retry measured (`rrl expert --task ur5_bowl --variant no_retry --episodes N --seed S --json`):
# 0.29 over seeds 1_000_000..1_000_099, 0.405 over seeds 0..199. Its success is steep in
# arrive_tolerance_m (0.08 -> 0.70, 0.10 -> 0.56, 0.11 -> 0.22 over 100-200 seeds).
BOWL_STYLES: dict[str | None, BowlStyle] = {
    None: BowlStyle(),
    "no_retry": BowlStyle(retry=False, grasp_fraction=0.3, aim_cube=False, arrive_tolerance_m=0.105,
                          lower_before_release=False, release_on_the_move=True),
}


def _bowl(variant: str | None, noise_std: float) -> SequenceExpert:
    style = BOWL_STYLES[variant]
    carry_z = 0.22
    motions = _grasp_motions(grasp_fraction=style.grasp_fraction, retry=style.retry, lift_z_m=carry_z)

    def slipped(obs, ctx):
        if not style.retry or ctx.jumps >= MAX_RETRIES:
            return None
        cube, _ = _cube(obs)
        return "above" if obs["tool_pos"][2] - cube[2] > SLIP_GAP_M else None

    def over_bowl_xy(obs) -> np.ndarray:
        bowl = np.asarray(obs["bowl_pos"], float)[:2]
        if not style.aim_cube:
            return bowl
        cube, _ = _cube(obs)
        return bowl + np.clip(np.asarray(obs["tool_pos"], float)[:2] - cube[:2], -0.03, 0.03)

    def over_bowl(obs):
        return _at(*over_bowl_xy(obs), carry_z)

    def lower(obs):  # cube bottom 2 cm above the 6 cm rim
        _, size = _cube(obs)
        return _at(*over_bowl_xy(obs), 0.06 + size / 2 + 0.02)

    def retreat(obs):
        bowl = np.asarray(obs["bowl_pos"], float)
        return _at(bowl[0], bowl[1], carry_z)

    def missed_bowl(obs, ctx):
        if not style.retry or ctx.jumps >= MAX_RETRIES or ctx.steps_in_motion < 10:
            return None
        cube, _ = _cube(obs)
        bowl = np.asarray(obs["bowl_pos"], float)
        return "above" if np.linalg.norm(cube[:2] - bowl[:2]) > 0.035 else None

    motions.append(Motion("over_bowl", over_bowl, CLOSED, timeout_steps=80,
                          tolerance_m=style.arrive_tolerance_m, jump=slipped))
    if style.lower_before_release:
        motions.append(Motion("lower", lower, CLOSED, timeout_steps=40, tolerance_m=0.008, jump=slipped))
    motions += [
        Motion("release", over_bowl if style.release_on_the_move else None, OPEN, timeout_steps=6, min_steps=6),
        Motion("retreat", retreat, OPEN, timeout_steps=1000, tolerance_m=0.0, jump=missed_bowl),
    ]
    return SequenceExpert(motions, WaypointGains(kp_pos=5.0, max_lin_vel_m_s=0.15), noise_std)


def _push(variant: str | None, noise_std: float) -> SequenceExpert:
    """Approach behind the cube on the line to the target, push along it, back off and re-approach on drift."""
    push_z = 0.025
    standoff_m = 0.05
    """Approach point: this far behind the cube's back face."""

    def direction(obs) -> np.ndarray:
        d = np.asarray(obs["target_pos"], float)[:2] - np.asarray(obs["cube_pos"], float)[:2]
        n = np.linalg.norm(d)
        return d / n if n > 1e-6 else np.array([1.0, 0.0])

    def behind(obs, z):
        cube, size = _cube(obs)
        xy = cube[:2] - direction(obs) * (size / 2 + standoff_m)
        return _at(xy[0], xy[1], z)

    def push_target(obs):
        # Where the pusher is when the cube centre sits on the target (contact face 1.2 cm from the TCP),
        # with the line re-aimed through the current cube position.
        target = np.asarray(obs["target_pos"], float)
        _, size = _cube(obs)
        xy = target[:2] - direction(obs) * (size / 2 + 0.010)
        return _at(xy[0], xy[1], push_z)

    def off_line(obs, ctx):
        if ctx.jumps >= 40 or ctx.steps_in_motion < 2:
            return None
        cube, size = _cube(obs)
        d = direction(obs)
        rel = np.asarray(obs["tool_pos"], float)[:2] - cube[:2]
        along = float(rel @ d)  # negative: the tool is behind the cube
        lateral = abs(rel[0] * d[1] - rel[1] * d[0])
        if lateral > 0.012 + 0.1 * max(0.0, -along - size / 2) or along > -size / 4:
            return "back_off"
        return None

    def back_off(obs):
        tool = np.asarray(obs["tool_pos"], float)
        return _at(tool[0], tool[1], 0.08)

    motions = [
        Motion("back_off", back_off, CLOSED, timeout_steps=15, tolerance_m=0.01),
        Motion("above_behind", lambda o: behind(o, 0.08), CLOSED, timeout_steps=60, tolerance_m=0.01),
        Motion("down_behind", lambda o: behind(o, push_z), CLOSED, timeout_steps=40, tolerance_m=0.008),
        Motion("push", push_target, CLOSED, timeout_steps=1000, tolerance_m=0.0, jump=off_line),
    ]
    return SequenceExpert(motions, WaypointGains(kp_pos=3.0, max_lin_vel_m_s=0.06), noise_std)


VARIANTS: dict[str, dict[str | None, str]] = {
    "ur5_pick": {None: "above, descend to the cube centre, close, lift; re-grasp when the cube stays behind"},
    "ur5_bowl": {
        None: "pick with re-grasp, carry over the bowl, lower to 2 cm above the rim, release; retry if it missed",
        "no_retry": "suboptimal (for REQ): grasp high on the cube, no re-grasp or retry, let go at carry height "
                    "while still moving toward the bowl",
    },
    "ur5_push": {None: "approach behind the cube on its line to the target, push; back off and re-approach on drift"},
}
"""Known variants per task, with what each does."""

_BUILDERS: dict[str, Callable[[str | None, float], SequenceExpert]] = {
    "ur5_pick": _pick, "ur5_bowl": _bowl, "ur5_push": _push,
}


def _build(task: str, variant: str | None, noise_std: float) -> SequenceExpert:
    if variant == "default":
        variant = None
    if variant not in VARIANTS[task]:
        known = sorted("default" if v is None else v for v in VARIANTS[task])
        raise ValueError(f"unknown expert variant {variant!r} for {task}; known: {known}")
    return _BUILDERS[task](variant, noise_std)


def pick_expert(variant: str | None = None, noise_std: float = 0.0) -> SequenceExpert:
    return _build("ur5_pick", variant, noise_std)


def bowl_expert(variant: str | None = None, noise_std: float = 0.0) -> SequenceExpert:
    return _build("ur5_bowl", variant, noise_std)


def push_expert(variant: str | None = None, noise_std: float = 0.0) -> SequenceExpert:
    return _build("ur5_push", variant, noise_std)
