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
    joint_target_actions: bool = False
    """True when action dimension i is a position target for joint i (`joint_names[i]`, the state's
    `joint_pos_rad[i]`): the Adroit hand. BC may then learn targets as offsets from the measured joints."""
    joint_vel_limit: tuple[float, ...] = field(default=())
    """Velocity limit per joint of `joint_names` (rad/s revolute, m/s prismatic); () when not given.
    The safety layer scales a joint-velocity command down to these (`controllers.safety`)."""
    workspace_low_m: tuple[float, ...] = field(default=())
    """Lower corner (x, y, z, robot base frame) of the box the tool must stay in; () for no box."""
    workspace_high_m: tuple[float, ...] = field(default=())
    """Upper corner of the workspace box; () for no box."""
    depth_range_m: tuple[float, ...] = field(default=())
    """(near, far) of the depth camera: depth in metres maps linearly to [0, 1] over it for the
    policies (`depth_to_unit`); () for tasks without a depth camera."""

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
        if self.joint_vel_limit and len(self.joint_vel_limit) != len(self.joint_names):
            raise ValueError(f"{self.name}: {len(self.joint_vel_limit)} joint velocity limits for "
                             f"{len(self.joint_names)} joints")
        if len(self.workspace_low_m) != len(self.workspace_high_m) or len(self.workspace_low_m) not in (0, 3):
            raise ValueError(f"{self.name}: the workspace box needs 3 low and 3 high values, got "
                             f"{self.workspace_low_m} / {self.workspace_high_m}")
        if np.any(np.asarray(self.workspace_low_m) > np.asarray(self.workspace_high_m)):
            raise ValueError(f"{self.name}: workspace_low_m exceeds workspace_high_m")
        if self.depth_range_m and not (len(self.depth_range_m) == 2 and 0 < self.depth_range_m[0] < self.depth_range_m[1]):
            raise ValueError(f"{self.name}: depth_range_m must be (near, far) with 0 < near < far, got {self.depth_range_m}")

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

    def to_dict(self) -> dict:
        """Plain data (str, int, float, lists) for a JSON file; `TaskSpec.from_dict` reads it back equal."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Layout):
                value = [[field_name, size] for field_name, size in value.fields]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "TaskSpec":
        """The spec `to_dict` wrote; an unknown or missing key raises ValueError naming it."""
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"task spec: unknown key(s) {unknown}; known: {sorted(names)}")
        values = {}
        for name, value in data.items():
            if name in ("action", "proprio", "state"):
                value = Layout(tuple((str(n), int(k)) for n, k in value))
            elif isinstance(value, list):
                value = tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and
                              name not in ("binary_action_fields", "joint_names") else v for v in value)
            values[name] = value
        try:
            return cls(**values)
        except TypeError as e:
            raise ValueError(f"task spec: {e}") from None

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Clip an action to the task limits; binary fields are thresholded at 0.5 to {0, 1}."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.size != self.action.size:
            raise ValueError(f"{self.name}: action has {action.size} dims, expected {self.action.size} {self.action.labels()}")
        return self.action_limits.clip(action)


def depth_to_unit(depth_m: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Metric depth (m) -> the policies' [0, 1] depth: linear from near to far, clipped (float32).

    The one normalisation: the simulated camera (`sim_bridge.ur5.tasks`) renders through it and the
    control node applies it to a camera's metric depth (REP 118: 32FC1 in m, 16UC1 in mm)."""
    d = np.asarray(depth_m, np.float32)
    return np.clip((d - near_m) / (far_m - near_m), 0.0, 1.0).astype(np.float32)
