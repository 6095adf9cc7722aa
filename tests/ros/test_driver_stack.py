"""The whole UR5 stack through the robot-facing path: `launch/ur5.launch.yaml clock_mode:=driver`.

The sim plays a robot driver (own wall clock, /joint_states at 125 Hz, object poses at 30 Hz, the latest
joint-velocity or twist command applied continuously); the control node runs its timer loop from
launch/ur5_robot.launch.yaml on standard inputs only.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("interface", ["joint_velocity", "twist"])
def test_pick_episodes_succeed_through_the_robot_facing_path(launch, tmp_path, interface):
    run = launch("clock_mode:=driver", "episodes:=2", "seed:=1000000", f"command_interface:={interface}",
                 report=tmp_path / "r.json")
    assert run.wait(120) == 0, run.output
    report = run.report()
    assert report["episodes"] == 2 and report["success_rate"] == 1.0, report["results"]
    (sim,) = report["sim"].values()
    control = report["control"]["control"]
    assert sim["clock_mode"] == "driver" and sim["commands"][interface] > 40 and sim["bad_commands"] == 0, sim
    assert sim["commands"]["gripper"] > 40 and "command_timeouts" in sim, sim
    assert control["loop"] == "timer" and control["command_interface"] == interface
    assert control["episodes_started"] == 2 and control["input_errors"] == 0, control
    assert control["metrics"]["missed_deadlines"] == 0, control["metrics"]
