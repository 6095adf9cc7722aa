"""Scripted task experts built from `WaypointController` motion sequences.

`make_expert(task, variant)` is the one way to get an expert. The table below is
explicit: every task names the module and factory that builds its expert, and
modules are imported only when their task is asked for.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from controllers.waypoint import NamedObs


class Expert(Protocol):
    """A scripted controller for one task: `reset(seed)` per episode, then `act(obs)` each control step."""

    def reset(self, seed: int) -> None: ...

    def act(self, obs: NamedObs) -> np.ndarray:
        """Action vector in the task's action layout, from the named full-state observation."""
        ...


# task name -> (module, factory). A factory takes (variant: str | None, noise_std: float) -> Expert.
EXPERTS: dict[str, tuple[str, str]] = {
    "ur5_pick": ("controllers.experts.ur5", "pick_expert"),
    "ur5_bowl": ("controllers.experts.ur5", "bowl_expert"),
    "ur5_push": ("controllers.experts.ur5", "push_expert"),
    "adroit_door": ("controllers.experts.adroit", "door_expert"),
    "adroit_hammer": ("controllers.experts.adroit", "hammer_expert"),
    "adroit_pen": ("controllers.experts.adroit", "pen_expert"),
    "adroit_relocate": ("controllers.experts.adroit", "relocate_expert"),
}


def make_expert(task: str, variant: str | None = None, noise_std: float = 0.0, primitive=None) -> Expert:
    """Build the expert of `task`; `variant` selects a documented alternative (e.g. a suboptimal one).
    `primitive`: the learned primitive a variant runs (adroit_pen's `primitive`); `policies.experts.make_expert`
    loads the shipped one, since this package does not run networks."""
    if task not in EXPERTS:
        raise KeyError(f"no expert for task {task!r}; known: {sorted(EXPERTS)}")
    module, factory = EXPERTS[task]
    parts = {} if primitive is None else {"primitive": primitive}
    return getattr(importlib.import_module(module), factory)(variant=variant, noise_std=noise_std, **parts)
