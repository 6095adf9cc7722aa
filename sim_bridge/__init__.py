"""Simulations behind one interface (`sim_bridge.task.Task`): PyBullet UR5 tasks and MuJoCo Adroit tasks.

`make_task(name, ...)` is the one way to build a task. The table is explicit: each
task names its robot and the module and class that implement it; a simulator is
imported only when one of its tasks is asked for. `shifts` builds the task under
named environment shifts (`sim_bridge.shifts`) for evaluation.
"""

from __future__ import annotations

import importlib

from sim_bridge.task import CameraConfig, Task

# task name -> (robot, module, factory). A factory takes (camera: CameraConfig | None, **options) -> Task.
TASKS: dict[str, tuple[str, str, str]] = {
    "ur5_pick": ("ur5", "sim_bridge.ur5.tasks", "PickTask"),
    "ur5_bowl": ("ur5", "sim_bridge.ur5.tasks", "BowlTask"),
    "ur5_push": ("ur5", "sim_bridge.ur5.tasks", "PushTask"),
    "adroit_door": ("adroit", "sim_bridge.adroit.tasks", "DoorTask"),
    "adroit_hammer": ("adroit", "sim_bridge.adroit.tasks", "HammerTask"),
    "adroit_pen": ("adroit", "sim_bridge.adroit.tasks", "PenTask"),
    "adroit_relocate": ("adroit", "sim_bridge.adroit.tasks", "RelocateTask"),
}


def make_task(name: str, camera: CameraConfig | None = None, shifts: tuple[str, ...] = (), **options) -> Task:
    """Build task `name`; `camera=None` skips rendering (state-only, fastest). `shifts` names
    environment shifts (`sim_bridge.shifts.SHIFTS`) to evaluate under; an unknown one, or one
    the task's robot does not support, raises ValueError before anything is built."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    robot, module, factory = TASKS[name]
    if shifts:
        from sim_bridge.shifts import variation_for

        if "variation" in options:
            raise ValueError("give either shifts or a variation, not both")
        options["variation"] = variation_for(tuple(shifts), robot)
    return getattr(importlib.import_module(module), factory)(camera=camera, **options)


def task_robot(name: str) -> str:
    """The robot ("ur5" or "adroit") of task `name`."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name][0]


def task_names() -> list[str]:
    return sorted(TASKS)
