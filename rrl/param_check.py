"""Check a launch plan's node parameters before any node starts (no ROS import, no processes).

For every node of package rrl_ros whose executable has a parameter table (`rrl_ros.params.NODES`),
each parameter it would receive -- inline `param:` entries (including values from `key:=value`
launch arguments) and the entries of its parameter files that apply to it -- must be a declared
name with a value of the declared type and range. Every parameter file, whichever node reads it,
must also be one that rcl can parse: a YAML mapping of node names to `ros__parameters` mappings.

A violation raises `LaunchFileError` naming the file and line, the node and the parameter, and for
an unknown name the closest declared one; `rrl launch` prints it and exits with status 2. Without
this check the same mistakes reach the nodes: rcl fails on a malformed file with a traceback,
rclpy raises InvalidParameterTypeException for `rate_hz: "ten"`, and a misspelled name
(`stale_period`) is silently ignored.

Which file entries apply to a node follows rcl: the top-level key is a node name, absolute
(`/ns/control`) or relative to the root (`control`), where `*` stands for one name token and `/**`
for any number of namespace levels (`/**` alone: every node); keys may also nest
(`ns: {control: {ros__parameters: ...}}`). Nested mappings inside `ros__parameters` are dotted
names (`a: {b: 1}` is `a.b`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rrl.launch_file import LaunchFileError, LaunchPlan, NodeLaunch
from rrl_ros.params import NODES, NodeParams, ParamError, is_ros_builtin

PACKAGE = "rrl_ros"
ROS_PARAMETERS = "ros__parameters"


@dataclass(frozen=True)
class FileParam:
    """One parameter entry of a parameter file."""

    node_key: str
    """The node name pattern it is under, e.g. `/**/control`."""
    name: str
    """Parameter name (nested mappings joined with dots)."""
    value: Any
    """The value as YAML reads it."""
    line: int
    """1-based line of the parameter's key."""


def read_param_file(path: str | Path) -> list[FileParam]:
    """Every parameter entry of an rcl parameter file, with its line; a file rcl would refuse raises LaunchFileError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LaunchFileError(f"{path}: cannot read parameter file: {e.strerror}") from None
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        out: list[FileParam] = []
        if root is None:
            return out  # an empty file sets nothing (rcl accepts it)
        if not isinstance(root, yaml.MappingNode):
            raise LaunchFileError(f"{path}:{root.start_mark.line + 1}: a parameter file is a mapping of node names "
                                  f"to {{{ROS_PARAMETERS}: {{name: value}}}}")
        _node_entries(path, loader, root, "", out)
        return out
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise LaunchFileError(f"{path}{line}: malformed YAML in parameter file: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise LaunchFileError(f"{path}: malformed YAML in parameter file: {e}") from None
    finally:
        loader.dispose()


def _node_entries(path: Path, loader: yaml.SafeLoader, node: yaml.MappingNode, prefix: str,
                  out: list[FileParam]) -> None:
    for key, value in node.value:
        name = str(loader.construct_object(key))
        line = key.start_mark.line + 1
        if name == ROS_PARAMETERS:
            if not prefix:
                raise LaunchFileError(f"{path}:{line}: {ROS_PARAMETERS} must sit under a node name (e.g. /**:)")
            if not isinstance(value, yaml.MappingNode):
                raise LaunchFileError(f"{path}:{line}: {ROS_PARAMETERS} of {prefix} must be a mapping of name: value")
            _params(path, loader, value, prefix, "", out)
        elif isinstance(value, yaml.MappingNode):
            _node_entries(path, loader, value, f"{prefix}/{name}" if prefix else name, out)
        else:
            raise LaunchFileError(f"{path}:{line}: {name!r} is neither a node name holding {ROS_PARAMETERS} "
                                  f"nor {ROS_PARAMETERS}")


def _params(path: Path, loader: yaml.SafeLoader, node: yaml.MappingNode, node_key: str, prefix: str,
            out: list[FileParam]) -> None:
    for key, value in node.value:
        name = prefix + str(loader.construct_object(key))
        if isinstance(value, yaml.MappingNode):
            _params(path, loader, value, node_key, name + ".", out)
        else:
            out.append(FileParam(node_key, name, loader.construct_object(value, deep=True), key.start_mark.line + 1))


def node_key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter file's node key (`/**`, `/**/control`, `control`, `/ns/*`) names the node `fqn`."""
    pattern = key if key.startswith("/") else "/" + key
    regex = ""
    for part in re.split(r"(/\*\*|\*)", pattern):
        regex += {"/**": r"(?:/[^/]+)*", "*": r"[^/]+"}.get(part, re.escape(part))
    return re.fullmatch(regex, fqn) is not None


def node_fqn(node: NodeLaunch, table: NodeParams) -> str:
    ns = node.namespace.rstrip("/")
    return f"{ns}/{node.name or table.node_name}"


def check_plan(plan: LaunchPlan) -> None:
    """Refuse (LaunchFileError) any parameter of the plan's rrl_ros nodes that the node would refuse or ignore."""
    files: dict[str, list[FileParam]] = {}
    for node in plan.nodes:
        for entry in node.params:
            if isinstance(entry, str) and entry not in files:
                files[entry] = read_param_file(entry)
    for node in plan.nodes:
        table = NODES.get(node.executable) if node.pkg == PACKAGE else None
        if table is None:
            continue
        fqn = node_fqn(node, table)
        who = f"node {fqn} ({PACKAGE}/{node.executable})"
        sources = {name: (where, raw) for name, where, raw in node.param_sources}
        for entry in node.params:
            if isinstance(entry, str):
                for p in files[entry]:
                    if node_key_matches(p.node_key, fqn):
                        _check(table, p.name, p.value, f"{entry}:{p.line}", who, "")
            else:
                for name, value in entry.items():
                    where, raw = sources.get(name, (node.source, ""))
                    given = f" (from {raw})" if raw and raw != str(value) else ""
                    _check(table, name, value, where, who, given)


def _check(table: NodeParams, name: str, value: Any, where: str, who: str, given: str) -> None:
    if is_ros_builtin(name):
        return
    try:
        table.check(name, value)
    except ParamError as e:
        raise LaunchFileError(f"{where}: {who}: {e}{given}") from None
