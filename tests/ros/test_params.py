"""Node parameters (rrl_ros.params): one declaration per node, used by the nodes and by `rrl launch`.

Integers for float parameters are accepted everywhere; a wrong type or an unknown name ends a node
run directly with exit code 2 and one line (no rcl traceback).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rrl_ros.params import CONTROL, SIM_BRIDGE, ParamError

ROOT = Path(__file__).resolve().parents[2]


def test_float_parameters_take_integers_and_nothing_else_is_converted():
    assert CONTROL.check("rate_hz", 20) == 20.0 and isinstance(CONTROL.check("residual_scale", 1), float)
    assert SIM_BRIDGE.check("episodes", 3) == 3
    for name, value, message in [("rate_hz", "ten", "rate_hz must be a float, got 'ten' (str)"),
                                 ("episodes", 2.5, "episodes must be an integer, got 2.5"),
                                 ("episodes", True, "episodes must be an integer, got True (bool)"),
                                 ("task", 3, "task must be a string"),
                                 ("rate_hz", 0, "rate_hz=0.0 must be > 0"),
                                 ("clock_mode", "lockstp", "expected one of realtime, lockstep")]:
        with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(")", r"\)")):
            SIM_BRIDGE.check(name, value)
    with pytest.raises(ParamError, match="unknown parameter 'stale_period' of control_node; did you mean 'stale_periods'"):
        CONTROL.resolve({"stale_period": 3.0})
    assert CONTROL.resolve({"use_sim_time": True, "rate_hz": 5})["rate_hz"] == 5.0  # rclpy's own parameters pass


def run_node(module: str, *ros_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--ros-args", *ros_args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.parametrize("module, args, message", [
    ("rrl_ros.control_node", ["-p", "stale_period:=3.0"],
     "control_node: unknown parameter 'stale_period' of control_node; did you mean 'stale_periods'?"),
    ("rrl_ros.sim_bridge_node", ["-p", "rate_hz:=ten"], "sim_bridge: parameter rate_hz must be a float, got 'ten' (str)"),
    ("rrl_ros.sim_bridge_node", ["-p", "task:=adroit_door", "-p", "shift:=heavy,distractor"],
     "sim_bridge: parameter shift='heavy,distractor': shift 'distractor' is not available on the adroit tasks"),
])
def test_a_node_run_directly_refuses_a_bad_parameter_in_one_line(ros_env, module, args, message):
    out = run_node(module, *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr + out.stdout, out.stderr


def test_a_node_run_directly_refuses_a_malformed_parameter_file(ros_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**:\n  ros__parameters:\n    rate_hz: [1,\n")
    out = run_node("rrl_ros.sim_bridge_node", "--params-file", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"sim_bridge: cannot start: failed to initialize rcl: Couldn't parse params file: '--params-file {bad}'" \
        in out.stderr, out.stderr


def test_integer_values_for_float_parameters_run_the_stack(launch, tmp_path):
    run = launch("clock_mode:=lockstep", "episodes:=1", "seed:=3", "rate_hz:=20", "residual_scale:=1",
                 report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    report = run.report()
    assert report["success_rate"] == 1.0 and report["episodes"] == 1, report
    (sim,) = report["sim"].values()
    assert sim["ticks"] == report["control"]["control"]["metrics"]["ticks"]
