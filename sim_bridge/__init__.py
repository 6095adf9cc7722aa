"""Simulations behind one interface (`sim_bridge.task.Task`): PyBullet UR5 tasks and MuJoCo Adroit tasks.

`make_task(name, ...)` is the one way to build a task. The table is explicit: each
task names the module and class that implement it; a simulator is imported only
when one of its tasks is asked for.
"""

from __future__ import annotations

import importlib

from sim_bridge.task import CameraConfig, Task

# task name -> (module, factory). A factory takes (camera: CameraConfig | None, **options) -> Task.
TASKS: dict[str, tuple[str, str]] = {
    "ur5_pick": ("sim_bridge.ur5.tasks", "PickTask"),
    "ur5_bowl": ("sim_bridge.ur5.tasks", "BowlTask"),
    "ur5_push": ("sim_bridge.ur5.tasks", "PushTask"),
    "adroit_door": ("sim_bridge.adroit.tasks", "DoorTask"),
    "adroit_hammer": ("sim_bridge.adroit.tasks", "HammerTask"),
    "adroit_pen": ("sim_bridge.adroit.tasks", "PenTask"),
    "adroit_relocate": ("sim_bridge.adroit.tasks", "RelocateTask"),
}


def make_task(name: str, camera: CameraConfig | None = None, **options) -> Task:
    """Build task `name`; `camera=None` skips rendering (state-only, fastest)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    module, factory = TASKS[name]
    return getattr(importlib.import_module(module), factory)(camera=camera, **options)


def task_names() -> list[str]:
    return sorted(TASKS)
