"""Environment shifts for evaluation: changes to a task's scene that training never sees.

RRLfD's headline claim is that a residual on a BC base generalises to unseen environment
conditions better than the BC alone or an RL fine-tuning of it. Measuring that needs conditions
that no demonstration and no training episode had, produced the same way every time. A shift is
one named change of the scene (`SHIFTS`), applied through the task's `variation` option
(`SceneVariation`); `make_task(name, shifts=("heavy",))` builds a shifted task and `rrl eval
--shift NAME` evaluates under it.

A shift never changes what a seed draws: the object layout, sizes and start pose of episode
`seed` are those of the nominal task (the distractor's own placement comes from a separate
stream of the seed), so a nominal and a shifted evaluation on the same seeds are paired.

| shift | UR5 (PyBullet) | Adroit (MuJoCo) |
|---|---|---|
| `camera_moved` | depth camera eye +10 cm sideways (y), +5 cm up; the target point stays | RGB camera moved (+4, +4, +3) cm |
| `heavy` | cube mass x3 (cap 0.3 kg raised to 0.9 kg) | object bodies x3 mass and inertia (door and latch, hammer and nail, ball, pen) |
| `slippery` | cube friction x0.5 (0.8 -> 0.4; PyBullet multiplies the two frictions of a contact) | object geoms' sliding friction x0.5, with the higher contact priority (else MuJoCo takes the hand's larger friction) |
| `distractor` | a grey visual-only box (4-7 cm, 4-10 cm high) on the table >= 12 cm from the objects: seen by the depth camera, no collision | not available |

The camera shifts go beyond the training viewpoint jitter (`CameraConfig.randomize_viewpoint`:
+-5 cm eye on the UR5, +-3 cm on Adroit; demonstrations are recorded without it). A state policy
does not see the camera, so `camera_moved` and `distractor` cannot change its episodes (a check of
the pairing, not a result).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SceneVariation:
    """What a task changes in its scene for the shifts it was made with; neutral by default."""

    object_mass_scale: float = 1.0
    """Factor on the mass (and, on Adroit, the inertia) of the task's objects."""
    object_friction_scale: float = 1.0
    """Factor on the sliding friction of the task's objects."""
    camera_offset_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Fixed offset of the task camera's position (robot base frame on the UR5, model frame on Adroit), m."""
    distractor: bool = False
    """Put a visual-only box on the table (UR5 only), placed from the seed's own stream."""

    def __post_init__(self) -> None:
        if not (self.object_mass_scale > 0 and self.object_friction_scale > 0):
            raise ValueError(f"scales must be > 0, got mass {self.object_mass_scale}, "
                             f"friction {self.object_friction_scale}")
        if len(self.camera_offset_m) != 3:
            raise ValueError(f"camera_offset_m must have 3 values, got {self.camera_offset_m}")

    def combine(self, other: SceneVariation) -> SceneVariation:
        """Both variations at once: scales multiply, offsets add."""
        return SceneVariation(
            object_mass_scale=self.object_mass_scale * other.object_mass_scale,
            object_friction_scale=self.object_friction_scale * other.object_friction_scale,
            camera_offset_m=tuple(a + b for a, b in zip(self.camera_offset_m, other.camera_offset_m)),
            distractor=self.distractor or other.distractor)


@dataclass(frozen=True)
class Shift:
    """One named environment shift: the variation it applies on each robot that supports it."""

    name: str
    description: str
    variations: dict[str, SceneVariation] = field(default_factory=dict)
    """Robot ("ur5", "adroit") -> its variation; a robot not listed does not support the shift."""


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("camera_moved", "the task camera moved beyond the training viewpoint jitter",
          {"ur5": SceneVariation(camera_offset_m=(0.0, 0.10, 0.05)),
           "adroit": SceneVariation(camera_offset_m=(0.04, 0.04, 0.03))}),
    Shift("heavy", "objects three times as heavy",
          {"ur5": SceneVariation(object_mass_scale=3.0), "adroit": SceneVariation(object_mass_scale=3.0)}),
    Shift("slippery", "object friction halved",
          {"ur5": SceneVariation(object_friction_scale=0.5), "adroit": SceneVariation(object_friction_scale=0.5)}),
    Shift("distractor", "a visual-only box on the table, away from the objects",
          {"ur5": SceneVariation(distractor=True)}),
)}


def shift_names() -> list[str]:
    return sorted(SHIFTS)


def parse_shifts(text: str, robot: str) -> tuple[str, ...]:
    """Shift names from a comma-separated parameter ("heavy,slippery"; "" for none), checked for `robot`."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    variation_for(names, robot)
    return names


def variation_for(shifts: tuple[str, ...] | list[str], robot: str) -> SceneVariation:
    """The combined variation of `shifts` on `robot`; a clear error for an unknown or unsupported shift."""
    variation = SceneVariation()
    for name in shifts:
        if name not in SHIFTS:
            raise ValueError(f"unknown shift {name!r}; known: {shift_names()}")
        shift = SHIFTS[name]
        if robot not in shift.variations:
            raise ValueError(f"shift {name!r} is not available on the {robot} tasks "
                             f"(it is on: {sorted(shift.variations)})")
        variation = variation.combine(shift.variations[robot])
    if len(set(shifts)) != len(shifts):
        raise ValueError(f"a shift is named twice in {list(shifts)}")
    return variation
