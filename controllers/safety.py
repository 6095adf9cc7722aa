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
   thresholded at 0.5 (`TaskSpec.clip_action` delegates here);
4. workspace (when the config has a `WorkspaceLimits` box): the tool's linear
   velocity is limited so that the measured tool position (`observe_tool`, once
   per tick) moved for one period stays inside the box, per axis:
   v in [min(0, (low - p) / dt), max(0, (high - p) / dt)]: a tool outside the box
   may only move back towards it, never further out; counted in `workspace_clips`.
   Without a measured position for the tick the robot is held (`workspace_holds`):
   the box cannot be guaranteed blind;
5. joint velocities (the joint-velocity command interface): `limit_joint_velocity`
   scales a joint-velocity vector down uniformly (the direction of the tool
   motion is kept) until every joint is within its limit, counted in
   `joint_velocity_scaled`; a non-finite one becomes zero (`nonfinite_holds`).

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
class WorkspaceLimits:
    """The box the tool must stay in, and which action dimensions move the tool (its linear velocity).

    Built from a task's spec with `WorkspaceLimits.from_spec(spec)` (None when the spec has no box
    or no `tool_vel` action field, e.g. the Adroit hand)."""

    low_m: tuple[float, float, float]
    """Lower corner (x, y, z) in the robot base frame, m."""
    high_m: tuple[float, float, float]
    """Upper corner, m."""
    velocity_dims: tuple[int, int, int]
    """Indices of the tool's linear velocity (x, y, z; m/s) in the action vector."""

    def __post_init__(self) -> None:
        if not (len(self.low_m) == len(self.high_m) == len(self.velocity_dims) == 3):
            raise ValueError(f"WorkspaceLimits: need 3 values each, got {self.low_m} / {self.high_m} / {self.velocity_dims}")
        if np.any(np.asarray(self.low_m) > np.asarray(self.high_m)):
            raise ValueError(f"WorkspaceLimits: low {self.low_m} exceeds high {self.high_m}")

    @classmethod
    def from_spec(cls, spec, velocity_field: str = "tool_vel") -> "WorkspaceLimits | None":
        """From a `sim_bridge.spec.TaskSpec` (workspace_low_m, workspace_high_m, the `tool_vel` action field)."""
        if not getattr(spec, "workspace_low_m", ()) or velocity_field not in spec.action.names:
            return None
        dims = spec.action.slices()[velocity_field]
        return cls(tuple(map(float, spec.workspace_low_m)), tuple(map(float, spec.workspace_high_m)),
                   tuple(range(dims.start, dims.stop)))

    def velocity_bounds(self, tool_pos_m: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per axis of the linear velocity that keeps `tool_pos_m` + v dt in the box (or moves it back)."""
        p = np.asarray(tool_pos_m, np.float64).reshape(3)
        low = np.minimum(0.0, (np.asarray(self.low_m) - p) / dt_s)
        high = np.maximum(0.0, (np.asarray(self.high_m) - p) / dt_s)
        return low, high


def scale_joint_velocity(qdot: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, bool]:
    """`qdot` (J,) scaled down uniformly so that |qdot_j| <= limit_j for every joint; (result, whether it was scaled).

    Uniform scaling keeps the direction of the joint (and so of the tool) motion, where clipping joint by
    joint would bend the tool's path."""
    q = np.asarray(qdot, np.float64).reshape(-1)
    lim = np.broadcast_to(np.asarray(limit, np.float64), q.shape)
    ratio = float(np.max(np.abs(q) / lim)) if q.size else 0.0
    if ratio <= 1.0:
        return q.copy(), False
    return q / ratio, True


@dataclass(frozen=True)
class SafetyConfig:
    """Parameters of the safety layer."""

    period_s: float = 0.1
    """Control period, s (the tasks run at 10 Hz)."""
    stale_periods: float = 2.0
    """An observation older than this many periods is stale: the robot is held."""
    workspace: WorkspaceLimits | None = None
    """The tool's box (`WorkspaceLimits.from_spec`); None: no workspace rule. The robot-facing control loop
    sets it (on a robot nothing else keeps the tool in the box); `rrl eval`, training and the simulated
    stacks leave it unset: the simulation clips its tool reference to the same box itself."""

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
    workspace_clips: int = 0
    """Ticks where the tool velocity was limited to keep the tool in the workspace box."""
    workspace_holds: int = 0
    """Ticks held because a workspace is configured but no tool position was observed for the tick."""
    joint_velocity_scaled: int = 0
    """Joint-velocity commands scaled down to the joint velocity limits."""

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class SafetyDecision:
    """What the safety layer did on one tick."""

    action: np.ndarray
    """The command to send, (A,) float64, within the task limits."""
    reason: str
    """`ok`, `clipped`, `workspace_clipped`, `nonfinite_fallback`, `nonfinite_hold`, `stale_hold` or `workspace_hold`."""


@dataclass
class SafetyLayer:
    """Stateful filter over actions: keeps the last command (for holds) and the counters."""

    limits: ActionLimits
    config: SafetyConfig = field(default_factory=SafetyConfig)
    counters: SafetyCounters = field(default_factory=SafetyCounters)
    last_action: np.ndarray | None = None
    tool_pos_m: np.ndarray | None = None
    """The measured tool position (3,) for the next `filter` call only (`observe_tool`); used with a workspace."""

    def hold(self) -> np.ndarray:
        return hold_action(self.limits, self.last_action)

    def observe_tool(self, tool_pos_m: np.ndarray | None) -> None:
        """The tool position measured for this tick (m, base frame): the next `filter` keeps it in the workspace."""
        self.tool_pos_m = None if tool_pos_m is None else np.asarray(tool_pos_m, np.float64).reshape(3).copy()

    def limit_joint_velocity(self, qdot: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """A joint-velocity command within the joint limits (`scale_joint_velocity`), counted; non-finite -> zero."""
        q = np.asarray(qdot, np.float64).reshape(-1)
        if not np.all(np.isfinite(q)):
            self.counters.nonfinite_holds += 1
            return np.zeros_like(q)
        out, scaled = scale_joint_velocity(q, limit)
        self.counters.joint_velocity_scaled += scaled
        return out

    def filter(self, action: np.ndarray | None, base_action: np.ndarray | None,
               observation_age_s: float) -> SafetyDecision:
        """Filter one tick: `action` = u + a (or u alone), `base_action` = u, both (A,) or None."""
        tool_pos, self.tool_pos_m = self.tool_pos_m, None  # one observed position per tick
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
        box = self.config.workspace
        if box is not None:
            if tool_pos is None or not np.all(np.isfinite(tool_pos)):
                self.counters.workspace_holds += 1
                return self._emit(self.hold(), "workspace_hold")
            dims = list(box.velocity_dims)
            low, high = box.velocity_bounds(tool_pos, self.config.period_s)
            v = clipped[dims]
            inside = np.clip(v, low, high)
            if np.any(inside != v):
                clipped[dims] = inside
                self.counters.workspace_clips += 1
                if reason == "ok":
                    reason = "workspace_clipped"
        return self._emit(clipped, reason)

    def _emit(self, action: np.ndarray, reason: str) -> SafetyDecision:
        self.last_action = action.copy()
        return SafetyDecision(action=action, reason=reason)
