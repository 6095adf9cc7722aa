"""The YAML launch-file parser of `rrl launch` (rrl/launch_file.py): no processes, no ROS."""

import textwrap
from pathlib import Path

import pytest
import yaml

from rrl.launch_file import LaunchFileError, inline_params_yaml, load_launch, parse_cli_arguments

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
