"""The YAML launch-file parser of `rrl launch` (rrl/launch_file.py) and its node-parameter check
(rrl/param_check.py): no ROS, no node processes."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rrl.launch_file import LaunchFileError, inline_params_yaml, load_launch, parse_cli_arguments
from rrl.param_check import check_plan, node_key_matches

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_args_defaults_overrides_var_env_and_params(tmp_path):
    write(tmp_path, "p.yaml", "/**/a:\n  ros__parameters:\n    k: 1\n")
    f = write(tmp_path, "x.launch.yaml", """
        launch:
        - arg: {name: task, default: ur5_pick}
        - arg: {name: episodes, default: "3"}
        - let: {name: combo, value: "$(var task)-$(env RRL_TEST_VAR fallback)"}
        - node:
            pkg: rrl_ros
            exec: sim_bridge
            name: a
            namespace: ns
            param:
            - from: "$(dirname)/p.yaml"
            - {name: task, value: "$(var task)"}
            - {name: episodes, value: "$(var episodes)"}
            - {name: flag, value: "true"}
            - {name: label, value: "$(var combo)"}
            - {name: group, param: [{name: inner, value: 0.5}]}
            remap: [{from: /command, to: /cmd}]
        """)
    plan = load_launch(f, {"episodes": "2"}, environ={"RRL_TEST_VAR": "E"})
    assert plan.args == {"episodes": "2", "task": "ur5_pick"}
    (node,) = plan.nodes
    assert (node.pkg, node.executable, node.name, node.namespace) == ("rrl_ros", "sim_bridge", "a", "/ns")
    assert node.params[0] == str((tmp_path / "p.yaml").resolve())
    assert node.params[1] == {"task": "ur5_pick", "episodes": 2, "flag": True, "label": "ur5_pick-E", "group.inner": 0.5}
    assert node.remaps == (("/command", "/cmd"),)
    written = {}
    args = node.ros_arguments(lambda d: written.setdefault("f", inline_params_yaml(d)) and "INLINE")
    assert args[:5] == ["--ros-args", "-r", "__node:=a", "-r", "__ns:=/ns"]
    assert "INLINE" in args and ["-r", "/command:=/cmd"] == args[-2:]
    tree = yaml.safe_load(written["f"])["/**"]["ros__parameters"]
    assert tree["episodes"] == 2 and tree["group"] == {"inner": 0.5} and tree["label"] == "ur5_pick-E"


def test_include_group_namespace_and_conditions(tmp_path):
    write(tmp_path, "inner.launch.yaml", """
        launch:
        - arg: {name: who}
        - node: {pkg: p, exec: e, name: "$(var who)"}
        """)
    f = write(tmp_path, "outer.launch.yaml", """
        launch:
        - arg: {name: use_b, default: "false"}
        - group:
          - push_ros_namespace: {namespace: robot1}
          - include:
              file: "$(dirname)/inner.launch.yaml"
              arg: [{name: who, value: a}]
        - group:
            if: "$(var use_b)"
            children:
            - node: {pkg: p, exec: e, name: b}
        - node: {pkg: p, exec: e, name: c, unless: "$(var use_b)"}
        """)
    plan = load_launch(f, {})
    assert [(n.name, n.namespace) for n in plan.nodes] == [("a", "/robot1"), ("c", "")]
    plan = load_launch(f, {"use_b": "true"})
    assert [n.name for n in plan.nodes] == ["a", "b"]


def test_the_ur5_launch_file_resolves():
    plan = load_launch(ROOT / "launch" / "ur5.launch.yaml", {"clock_mode": "lockstep", "episodes": "2"})
    assert [n.label for n in plan.nodes] == ["sim_bridge", "control"]
    sim = plan.nodes[0]
    inline = [p for p in sim.params if isinstance(p, dict)][0]
    assert inline["clock_mode"] == "lockstep" and inline["episodes"] == 2 and sim.on_exit_shutdown
    assert inline["seed"] == 1000000


@pytest.mark.parametrize("text, line, message", [
    ("launch:\n- arg: {name: a, default: 1}\n- node: {pkg: p, exec: e\n", 4, "while parsing a flow mapping at line 3"),
    ("launch:\n- node:\n    pkg: p\n   exec: e\n", 4, "malformed YAML"),
    ("launch:\n- arg: {name: a}\n", 2, "has no default"),
    ("launch:\n- arg: {name: a, default: x}\n- nod: {pkg: p, exec: e}\n", 3, "unknown action 'nod'"),
    ("launch:\n- node:\n    pkg: p\n    exec: e\n    colour: red\n", 5, "unknown attribute 'colour'"),
    ("launch:\n- node:\n    pkg: p\n    exec: e\n    name: \"$(var nope)\"\n", 5, "$(var nope)"),
    ("launch:\n- node:\n    pkg: p\n    exec: e\n    name: \"$(shell ls)\"\n", 5, "unsupported substitution"),
    ("launch:\n- node:\n    exec: e\n", 2, "needs attribute 'pkg'"),
    ("nodes: []\n", 1, "mapping with one key 'launch'"),
])
def test_malformed_files_name_the_line(tmp_path, text, line, message):
    f = tmp_path / "bad.launch.yaml"
    f.write_text(text)
    with pytest.raises(LaunchFileError) as e:
        load_launch(f, {})
    assert f"{f}:{line}" in str(e.value) and message in str(e.value)


def test_unknown_and_malformed_arguments(tmp_path):
    f = write(tmp_path, "x.launch.yaml", "launch:\n- arg: {name: task, default: a}\n")
    with pytest.raises(LaunchFileError, match=r"unknown launch argument\(s\) tsak; declared: task"):
        load_launch(f, {"tsak": "b"})
    with pytest.raises(LaunchFileError, match="not of the form name:=value"):
        parse_cli_arguments(["task=b"])
    assert parse_cli_arguments(["task:=a:=b"]) == {"task": "a:=b"}


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path, "a.launch.yaml", "launch:\n- include: {file: b.launch.yaml}\n")
    write(tmp_path, "b.launch.yaml", "launch:\n- include: {file: a.launch.yaml}\n")
    with pytest.raises(LaunchFileError, match="include cycle"):
        load_launch(tmp_path / "a.launch.yaml", {})


# --- node parameters against their declarations (rrl.param_check, rrl_ros.params) ------------------

UR5 = ROOT / "launch" / "ur5.launch.yaml"
RRL_LAUNCH = [sys.executable, "-c", "import argparse, sys; from rrl.commands import launch as c; "
              "p = argparse.ArgumentParser(prog='rrl launch'); c.add_arguments(p); sys.exit(c.run(p.parse_args()))"]
"""`rrl launch` (the command module alone, so another command's imports cannot slow or break these tests)."""


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def stack_with_params(tmp_path: Path, params_text: str) -> Path:
    """A launch file whose control node reads one parameter file (written from `params_text`)."""
    write(tmp_path, "control.yaml", params_text)
    return write(tmp_path, "stack.launch.yaml", """
        launch:
        - node:
            pkg: rrl_ros
            exec: control_node
            name: control
            namespace: robot1
            param:
            - from: "$(dirname)/control.yaml"
        """)


def test_the_shipped_launch_files_pass_and_integers_are_floats():
    check_plan(load_launch(UR5, {"rate_hz": "20", "residual_scale": "1", "clock_mode": "lockstep"}))
    check_plan(load_launch(ROOT / "launch" / "adroit.launch.yaml", {}))


def test_a_bad_launch_argument_names_the_line_that_passes_it_on():
    with pytest.raises(LaunchFileError) as e:
        check_plan(load_launch(UR5, {"rate_hz": "ten"}))
    line = line_of(UR5, "{name: rate_hz, value:")  # the sim_bridge node's entry, the first to take it
    assert str(e.value).startswith(f"{UR5}:{line}: node /sim_bridge (rrl_ros/sim_bridge): parameter rate_hz must be a "
                                   f"float, got 'ten' (str) (from $(var rate_hz))"), e.value


@pytest.mark.parametrize("params_text, line, message", [
    ("/**/control:\n  ros__parameters:\n    stale_periods: 2.0\n    rate_hz: \"ten\"\n", 4,
     "parameter rate_hz must be a float, got 'ten' (str)"),
    ("/**/control:\n  ros__parameters:\n    stale_period: 2.0\n", 3,
     "unknown parameter 'stale_period' of control_node; did you mean 'stale_periods'?"),
    ("robot1:\n  control:\n    ros__parameters:\n      camera_history: 0\n", 4, "camera_history=0 must be >= 1"),
    ("/**:\n  ros__parameters:\n    rate_hz: [1,\n", 4, "malformed YAML in parameter file"),
    ("/**:\n  ros__parameters: 3\n", 2, "ros__parameters of /** must be a mapping"),
    ("/**:\n  rate_hz: 3\n", 2, "'rate_hz' is neither a node name holding ros__parameters"),
])
def test_a_bad_parameter_file_names_the_file_and_line(tmp_path, params_text, line, message):
    launch_file = stack_with_params(tmp_path, params_text)
    with pytest.raises(LaunchFileError) as e:
        check_plan(load_launch(launch_file, {}))
    assert f"{(tmp_path / 'control.yaml').resolve()}:{line}: " in str(e.value) and message in str(e.value), e.value


def test_parameter_file_entries_apply_by_node_name(tmp_path):
    """A misspelled name under another node's key is that node's business; `/**` and `robot1/*` reach this one."""
    check_plan(load_launch(stack_with_params(tmp_path, "/**/sim_bridge:\n  ros__parameters:\n    nonsense: 1\n"), {}))
    for key in ("/**", "/robot1/*", "robot1/control"):
        with pytest.raises(LaunchFileError, match="unknown parameter 'nonsense'"):
            check_plan(load_launch(stack_with_params(tmp_path, f"{key}:\n  ros__parameters:\n    nonsense: 1\n"), {}))
    assert node_key_matches("/**/control", "/a/b/control") and not node_key_matches("/*/control", "/control")


def test_rrl_launch_exits_2_before_any_node_starts(tmp_path):
    launch_file = stack_with_params(tmp_path, "/**/control:\n  ros__parameters:\n    stale_period: 2.0\n")
    out = subprocess.run([*RRL_LAUNCH, str(launch_file)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "did you mean 'stale_periods'" in out.stderr and "started" not in out.stdout, out.stdout + out.stderr


def test_each_clock_mode_of_the_ur5_launch_file_picks_its_control_loop():
    """realtime -> the observation loop, lockstep -> lockstep, driver -> the robot file's timer loop; ($(equals))."""
    loops = {}
    for mode in ("realtime", "lockstep", "driver"):
        plan = load_launch(ROOT / "launch" / "ur5.launch.yaml", {"clock_mode": mode, "command_interface": "twist"})
        assert [n.label for n in plan.nodes] == ["sim_bridge", "control"]
        control = plan.nodes[1]
        inline = {k: v for p in control.params if isinstance(p, dict) for k, v in p.items()}
        loops[mode] = (inline["loop"], inline["command_interface"])
        assert control.source.startswith(str(ROOT / "launch" / ("ur5_robot" if mode == "driver" else "ur5")))
        check_plan(plan)
    assert loops == {"realtime": ("observation", "native"), "lockstep": ("lockstep", "native"),
                     "driver": ("timer", "twist")}
    with pytest.raises(LaunchFileError, match="launch argument 'clock_mode' is 'drive'; allowed: realtime, lockstep, driver"):
        load_launch(ROOT / "launch" / "ur5.launch.yaml", {"clock_mode": "drive"})


def test_equals_substitutions(tmp_path):
    f = write(tmp_path, "eq.launch.yaml", """
        launch:
        - arg: {name: mode, default: a}
        - node: {pkg: p, exec: e, name: x, if: "$(equals $(var mode) a)"}
        - node: {pkg: p, exec: e, name: y, if: "$(not-equals $(var mode) a)"}
        """)
    assert [n.name for n in load_launch(f, {}).nodes] == ["x"]
    assert [n.name for n in load_launch(f, {"mode": "b"}).nodes] == ["y"]
    bad = write(tmp_path, "bad.launch.yaml", 'launch:\n- node: {pkg: p, exec: e, if: "$(equals a)"}\n')
    with pytest.raises(LaunchFileError, match=r"\$\(equals A B\) compares two values"):
        load_launch(bad, {})


def test_nodes_run_as_their_installed_executables():
    """`ps` and the ROS log files name the node (control_node_<pid>), not python_<pid>."""
    from rrl.supervisor import resolve_executable

    (command,) = resolve_executable("rrl_ros", "control_node")
    assert Path(command).name == "control_node" and Path(command).parent == Path(sys.prefix) / "bin"
