"""The safety layer between the policies and the robot: pure numpy, one call per control tick.

Every command the control node publishes goes through `SafetyLayer.filter`:

1. stale observation: if the newest observation is older than `stale_periods`
   control periods, the robot is held (`hold_action`: zero on every continuous
   field, binary fields such as the gripper keep their last command so a
   grasped object is not dropped) and the tick is counted in `stale_holds`;
2. non-finite policy output: if the composed action has a NaN/Inf anywhere, the
   base action `u` is used instead and `nonfinite_fallbacks` counts it; if `u`
   itself is non-finite the robot is held and `nonfinite_holds` counts it;
3. limits: the action is clipped to the task limits and binary fields are
   thresholded at 0.5 (`TaskSpec.clip_action` delegates here).

The same rules run in tests, in the bench and in the ROS node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ActionLimits:
    """Per-dimension limits of an action vector and which dimensions are binary commands.

    Built from a task's `TaskSpec` with `ActionLimits.from_spec(spec)` (duck-typed: this
    package does not import the simulations).
    """

    low: tuple[float, ...]
    """Lower limit per dimension."""
    high: tuple[float, ...]
    """Upper limit per dimension."""
    binary: tuple[bool, ...]
    """True for dimensions that are 0/1 commands (thresholded at 0.5, never integrated)."""

    def __post_init__(self) -> None:
        if not (len(self.low) == len(self.high) == len(self.binary)):
            raise ValueError(f"ActionLimits: low/high/binary have {len(self.low)}/{len(self.high)}/{len(self.binary)} dims")
        if np.any(np.asarray(self.low) > np.asarray(self.high)):
            raise ValueError("ActionLimits: low exceeds high")

    @classmethod
    def from_spec(cls, spec) -> "ActionLimits":
        """From a `sim_bridge.spec.TaskSpec` (action_low, action_high, binary_action_fields)."""
        binary = np.zeros(spec.action.size, dtype=bool)
        slices = spec.action.slices()
        for name in spec.binary_action_fields:
            binary[slices[name]] = True
        return cls(tuple(map(float, spec.action_low)), tuple(map(float, spec.action_high)), tuple(map(bool, binary)))

    @property
    def size(self) -> int:
        return len(self.low)

    @property
    def binary_mask(self) -> np.ndarray:
        return np.asarray(self.binary, dtype=bool)

    def clip(self, action: np.ndarray) -> np.ndarray:
        """Clip to [low, high]; binary dimensions become 1.0 if > 0.5 else 0.0 (`TaskSpec.clip_action` delegates here)."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.size != self.size:
            raise ValueError(f"action has {action.size} dims, limits have {self.size}")
        out = np.clip(action, self.low, self.high)
        b = self.binary_mask
        out[b] = (action[b] > 0.5).astype(np.float64)
        return out


def hold_action(limits: ActionLimits, last_action: np.ndarray | None = None) -> np.ndarray:
    """Action (A,) that holds the robot: zero velocity; binary fields keep `last_action` (else 0)."""
    out = np.zeros(limits.size, dtype=np.float64)
    if last_action is not None:
        last = np.asarray(last_action, dtype=np.float64).reshape(-1)
        b = limits.binary_mask & np.isfinite(last)
        out[b] = last[b]
    return out


@dataclass(frozen=True)
class SafetyConfig:
    """Parameters of the safety layer."""

    period_s: float = 0.1
    """Control period, s (the tasks run at 10 Hz)."""
    stale_periods: float = 2.0
    """An observation older than this many periods is stale: the robot is held."""

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError(f"SafetyConfig.period_s must be > 0, got {self.period_s}")
        if self.stale_periods <= 0:
            raise ValueError(f"SafetyConfig.stale_periods must be > 0, got {self.stale_periods}")

    @property
    def stale_after_s(self) -> float:
        return self.period_s * self.stale_periods


@dataclass
class SafetyCounters:
    """How often each rule fired since the counters were created."""

    stale_holds: int = 0
    """Ticks where the observation was stale and the robot was held."""
    nonfinite_fallbacks: int = 0
    """Ticks where the composed action was NaN/Inf and the base action was used instead."""
    nonfinite_holds: int = 0
    """Ticks where even the base action was NaN/Inf and the robot was held."""
    clipped: int = 0
    """Ticks where at least one continuous dimension was clipped to the limits."""
    base_errors: int = 0
    """Ticks where the base controller raised (e.g. an image base without frames) and the robot was held
    (counted by the composed policy, policies.runtime.ComposedPolicy)."""
    residual_errors: int = 0
    """Ticks where the residual raised and the base action went out alone (counted by the composed policy)."""

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class SafetyDecision:
    """What the safety layer did on one tick."""

    action: np.ndarray
    """The command to send, (A,) float64, within the task limits."""
    reason: str
    """`ok`, `clipped`, `nonfinite_fallback`, `nonfinite_hold` or `stale_hold`."""


@dataclass
class SafetyLayer:
    """Stateful filter over actions: keeps the last command (for holds) and the counters."""

    limits: ActionLimits
    config: SafetyConfig = field(default_factory=SafetyConfig)
    counters: SafetyCounters = field(default_factory=SafetyCounters)
    last_action: np.ndarray | None = None

    def hold(self) -> np.ndarray:
        return hold_action(self.limits, self.last_action)

    def filter(self, action: np.ndarray | None, base_action: np.ndarray | None,
               observation_age_s: float) -> SafetyDecision:
        """Filter one tick: `action` = u + a (or u alone), `base_action` = u, both (A,) or None."""
        if not observation_age_s <= self.config.stale_after_s:  # also catches NaN ages
            self.counters.stale_holds += 1
            return self._emit(self.hold(), "stale_hold")
        reason = "ok"
        candidate = None if action is None else np.asarray(action, dtype=np.float64).reshape(-1)
        size = self.limits.size
        if candidate is None or candidate.size != size or not np.all(np.isfinite(candidate)):
            base = None if base_action is None else np.asarray(base_action, dtype=np.float64).reshape(-1)
            if base is not None and base.size == size and np.all(np.isfinite(base)):
                self.counters.nonfinite_fallbacks += 1
                candidate, reason = base, "nonfinite_fallback"
            else:
                self.counters.nonfinite_holds += 1
                return self._emit(self.hold(), "nonfinite_hold")
        clipped = self.limits.clip(candidate)
        continuous = ~self.limits.binary_mask
        if np.any(clipped[continuous] != candidate[continuous]):
            self.counters.clipped += 1
            if reason == "ok":
                reason = "clipped"
        return self._emit(clipped, reason)

    def _emit(self, action: np.ndarray, reason: str) -> SafetyDecision:
        self.last_action = action.copy()
        return SafetyDecision(action=action, reason=reason)
