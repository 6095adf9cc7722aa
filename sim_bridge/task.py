"""The one interface every simulated task implements.

A `Task` owns one simulation. `reset(seed)` starts a new episode, fully
determined by the seed; `step(action)` applies one control-rate action (the
simulation runs its own substeps) and returns a `Step`. Observations are plain
dicts of numpy arrays:

- `proprio`: float32 (P,), named by `spec.proprio`
- `state`: float32 (S,), named by `spec.state` (proprio plus object positions)
- `joint_pos_rad`: float64 (J,), named by `spec.joint_names`
- `depth`: float32 (3, H, W) in [0, 1] (near..far normalised), the last 3 frames, oldest first,
  when the task was made with a camera and `spec.camera == "depth"`
- `rgb`: uint8 (3, H, W, 3), the last 3 frames, oldest first, when `spec.camera == "rgb"`

The gymnasium environments in `sim_bridge.envs` wrap a Task; the ROS
`sim_bridge` node drives one directly.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim_bridge.spec import TaskSpec

Observation = dict[str, np.ndarray]


@dataclass(frozen=True)
class CameraConfig:
    """Camera rendering options of a task."""

    width_px: int = 240
    """Image width in pixels."""
    height_px: int = 240
    """Image height in pixels."""
    history: int = 3
    """Number of most recent frames stacked in the observation."""
    randomize_viewpoint: bool = False
    """Perturb the camera pose per episode (from the episode seed)."""

    def __post_init__(self) -> None:
        if self.width_px < 8 or self.height_px < 8:
            raise ValueError(f"camera must be at least 8x8 px, got {self.width_px}x{self.height_px}")
        if self.history < 1:
            raise ValueError(f"camera history must be >= 1, got {self.history}")


@dataclass
class Step:
    """Result of one control step."""

    obs: Observation
    reward: float
    """Sparse: 1.0 on the step the task is solved, else 0.0."""
    success: bool
    """True once the task's success condition holds."""
    terminated: bool
    """Episode ended by success."""
    truncated: bool
    """Episode ended by the horizon (`spec.max_steps`)."""
    info: dict[str, Any]


class Task(abc.ABC):
    """A simulated task behind one interface (PyBullet UR5 or MuJoCo Adroit)."""

    spec: TaskSpec

    @abc.abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start a new episode determined entirely by `seed`."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> Step:
        """Apply one control-rate action (clipped to the task limits) and advance the simulation."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the simulation."""

    @property
    @abc.abstractmethod
    def step_count(self) -> int:
        """Control steps taken in the current episode."""

    def shaped_reward(self) -> float:
        """A dense reward on the current state, for learning a primitive from scratch (`rrl train req --reward
        shaped`); the task's own reward stays the sparse success. Tasks without one refuse."""
        raise NotImplementedError(f"task {self.spec.name!r} has no shaped reward (tasks with one: adroit_pen)")

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
