"""Task specs as data (sim_bridge.task_specs): equal to what each task builds, readable without a simulator."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim_bridge import task_names
from sim_bridge.spec import TaskSpec
from sim_bridge.task_specs import live_spec, task_spec


@pytest.mark.parametrize("name", task_names())
def test_the_data_file_equals_the_live_spec(name):
    assert task_spec(name) == live_spec(name), f"regenerate with `python -m sim_bridge.task_specs {name}`"


def test_a_spec_round_trips_and_unknown_keys_are_named():
    spec = task_spec("ur5_bowl")
    assert TaskSpec.from_dict(spec.to_dict()) == spec
    assert spec.workspace_low_m == (0.25, -0.3, 0.02) and spec.depth_range_m == (0.1, 2.0)
    data = dict(spec.to_dict(), colour="red")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        TaskSpec.from_dict(data)
    with pytest.raises(KeyError, match="unknown task 'ur5_pik'"):
        task_spec("ur5_pik")


def test_specs_load_with_no_simulator_installed():
    """pybullet and mujoco made unimportable: every spec still loads."""
    code = ("import sys; sys.modules['pybullet'] = None; sys.modules['mujoco'] = None\n"
            "from sim_bridge import task_names\nfrom sim_bridge.task_specs import task_spec\n"
            "print(sum(task_spec(n).action.size > 0 for n in task_names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == str(len(task_names())), out.stderr
