"""Task specifications: what a task observes and what it accepts.

A `TaskSpec` is the contract every simulation, controller, dataset and ROS node
agrees on. Vectors are flat float32 arrays whose dimensions are named by a
`Layout` (groups of named fields), so a ROS `Float32MultiArray` carries the same
labels and a controller can ask for `obs["cube_pos"]` instead of an index.

This module is pure numpy: the ROS nodes and the controllers may import it
without pulling in a simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping

import numpy as np

from controllers.safety import ActionLimits


@dataclass(frozen=True)
class Layout:
    """Named groups of a flat vector, in order: `(("tool_pos", 3), ("gripper", 1), ...)`."""

    fields: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        names = [name for name, _ in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"layout has duplicate field names: {names}")
        for name, size in self.fields:
            if size <= 0:
                raise ValueError(f"layout field {name!r} has size {size}; sizes must be positive")

    @property
    def size(self) -> int:
        return sum(size for _, size in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    def labels(self) -> list[str]:
        """One label per scalar dimension, `name[i]` (or `name` for size-1 fields)."""
        out: list[str] = []
        for name, size in self.fields:
            out.extend([name] if size == 1 else [f"{name}[{i}]" for i in range(size)])
        return out

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in self.fields:
            out[name] = slice(start, start + size)
            start += size
        return out

    def unpack(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Split a flat vector into its named fields (views, no copy)."""
        vector = np.asarray(vector)
        if vector.shape[-1] != self.size:
            raise ValueError(f"vector has {vector.shape[-1]} dims, layout {self.names} expects {self.size}")
        return {name: vector[..., s] for name, s in self.slices().items()}

    def pack(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate named fields into one float32 vector; every field must be present with its size."""
        parts = []
        for name, size in self.fields:
            if name not in values:
                raise KeyError(f"missing field {name!r} for layout {self.names}")
            part = np.asarray(values[name], dtype=np.float32).reshape(-1)
            if part.size != size:
                raise ValueError(f"field {name!r} has {part.size} values, layout expects {size}")
            parts.append(part)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@dataclass(frozen=True)
class TaskSpec:
    """Everything a consumer needs to know about a task without running it."""

    name: str
    """Task name as used on the command line, e.g. `ur5_pick`."""
    robot: str
    """`ur5` or `adroit`."""
    control_rate_hz: float
    """Rate at which actions are applied (10 Hz for every task)."""
    max_steps: int
    """Episode horizon in control steps."""
    action: Layout
    """Action fields, e.g. `(("tool_vel", 3), ("gripper", 1))`."""
    action_low: tuple[float, ...]
    """Per-dimension lower limit of the action."""
    action_high: tuple[float, ...]
    """Per-dimension upper limit of the action."""
    proprio: Layout
    """Proprioception fields (what a real robot measures about itself)."""
    state: Layout
    """Full state fields (proprio plus object positions): what the experts and `state` policies see."""
    camera: str = "depth"
    """Image modality of the task's camera: `depth` (1 channel) or `rgb` (3 channels)."""
    binary_action_fields: tuple[str, ...] = field(default=())
    """Action fields that are binary commands (e.g. the gripper: 0 open, 1 closed)."""
    joint_names: tuple[str, ...] = field(default=())
    """Robot joint names, for `sensor_msgs/JointState`."""

    def __post_init__(self) -> None:
        if len(self.action_low) != self.action.size or len(self.action_high) != self.action.size:
            raise ValueError(
                f"{self.name}: action limits have {len(self.action_low)}/{len(self.action_high)} dims, "
                f"action layout has {self.action.size}"
            )
        if np.any(np.asarray(self.action_low) > np.asarray(self.action_high)):
            raise ValueError(f"{self.name}: action_low exceeds action_high")
        if self.camera not in ("depth", "rgb"):
            raise ValueError(f"{self.name}: camera must be 'depth' or 'rgb', got {self.camera!r}")
        for name in self.binary_action_fields:
            if name not in self.action.names:
                raise ValueError(f"{self.name}: binary action field {name!r} not in action layout")

    @property
    def control_dt_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def camera_channels(self) -> int:
        return 1 if self.camera == "depth" else 3

    @cached_property
    def action_limits(self) -> ActionLimits:
        """The task's action limits in the form the safety layer uses (one clipping rule everywhere)."""
        return ActionLimits.from_spec(self)

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Clip an action to the task limits; binary fields are thresholded at 0.5 to {0, 1}."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.size != self.action.size:
            raise ValueError(f"{self.name}: action has {action.size} dims, expected {self.action.size} {self.action.labels()}")
        return self.action_limits.clip(action)
