"""Every task's `TaskSpec` as data: read without building the task (no PyBullet, no MuJoCo).

The control node, the launcher and anything that faces a real robot need the spec of a task
(vector layouts, action limits, the workspace box, joint names) but must not need a simulator
installed. The tasks build their spec in code; `sim_bridge/specs/<task>.json` holds the same
spec as written by

    python -m sim_bridge.task_specs            # regenerate every file (builds each task once)

and tests/sim_bridge/test_task_specs.py checks that each file still equals the live task's spec,
so the data cannot drift from the code.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

from sim_bridge.spec import TaskSpec

SPEC_DIR = Path(__file__).resolve().parent / "specs"
"""One `<task>.json` per task (TaskSpec.to_dict)."""


def spec_path(name: str) -> Path:
    return SPEC_DIR / f"{name}.json"


@lru_cache(maxsize=None)
def task_spec(name: str) -> TaskSpec:
    """The spec of task `name` from its data file; an unknown task raises KeyError naming the known ones."""
    from sim_bridge import task_names

    if name not in task_names():
        raise KeyError(f"unknown task {name!r}; known: {task_names()}")
    path = spec_path(name)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the spec of {name} from {path}: {e} "
                         f"(regenerate with `python -m sim_bridge.task_specs`)") from None
    try:
        return TaskSpec.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def live_spec(name: str) -> TaskSpec:
    """The spec as the task itself builds it (builds the simulation once)."""
    from sim_bridge import make_task

    with make_task(name) as task:
        return task.spec


def write_specs(names: list[str] | None = None) -> list[Path]:
    """Write the data file of each task (default: all) from the live task."""
    from sim_bridge import task_names

    SPEC_DIR.mkdir(exist_ok=True)
    out = []
    for name in names or task_names():
        path = spec_path(name)
        path.write_text(json.dumps(live_spec(name).to_dict(), indent=1) + "\n")
        out.append(path)
    return out


if __name__ == "__main__":
    for p in write_specs(sys.argv[1:] or None):
        print(p)
