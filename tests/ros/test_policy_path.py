"""The one policy path: `rrl eval` and the lockstep ROS stack run the same composed policy (base +
residual + safety layer), so they give the same success and count the same safety fallbacks."""

from __future__ import annotations

import json
import subprocess
import sys

from sim_bridge import make_task

SEED, EPISODES = 1_000_000, 2


def test_nan_residual_same_success_and_fallbacks_in_rrl_eval_and_the_ros_stack(launch, make_residual_artifact, tmp_path):
    """A residual that outputs NaN whenever the tool is above 5 cm (part of every episode)."""
    with make_task("ur5_pick") as task:
        spec = task.spec
    tool_z = spec.state.slices()["tool_pos"].start + 2
    art = make_residual_artifact(spec, tmp_path / "nan_res", "waypoint", mu=0.5, nan_above=(tool_z, 0.05))
    out = subprocess.run([sys.executable, "-m", "rrl.cli", "eval", "--task", "ur5_pick", "--base", "waypoint",
                          "--residual", art, "--episodes", str(EPISODES), "--seed", str(SEED), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    evaluated = json.loads(out.stdout.strip().splitlines()[-1])

    run = launch("clock_mode:=lockstep", f"episodes:={EPISODES}", f"seed:={SEED}", f"residual:={art}",
                 report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    report = run.report()
    control = report["control"]["control"]
    fallbacks = control["safety"]["nonfinite_fallbacks"]
    assert 0 < fallbacks < control["metrics"]["ticks"]  # the residual fails on part of the episode only
    assert fallbacks == evaluated["safety"]["nonfinite_fallbacks"]
    assert control["safety"]["clipped"] == evaluated["safety"]["clipped"]
    assert report["success_rate"] == evaluated["success_rate"]
    assert evaluated["mean_steps_success"] == report.get("mean_steps_success", evaluated["mean_steps_success"])
