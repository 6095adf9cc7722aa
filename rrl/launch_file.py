"""Parse ROS 2 YAML launch files into a plan of node processes (no ROS import, no processes).

The ROS 2 launch system (`launch`, `launch_ros`) is not installable from PyPI,
so `rrl launch` reads the same YAML launch files that `ros2 launch` would and
turns them into a flat list of `NodeLaunch` entries; `rrl.supervisor` runs them.

Supported (the subset of the YAML front end our launch files use):

    launch:
    - arg: {name: task, default: ur5_pick, description: ...}
    - let: {name: x, value: "$(var task)_suffix"}
    - include: {file: "$(dirname)/other.launch.yaml", arg: [{name: k, value: v}]}
    - group: [...actions...]            # or {scoped: true, if: ..., children: [...]}
    - push_ros_namespace: {namespace: ns}     # inside a group: applies to its later nodes
    - node:
        pkg: rrl_ros
        exec: sim_bridge
        name: sim
        namespace: ""
        output: screen
        on_exit: shutdown
        param: [{name: p, value: 1}, {from: "$(dirname)/params/sim.yaml"}]
        remap: [{from: /a, to: /b}]
        env: [{name: K, value: V}]
        args: "..."        # extra command-line arguments
        ros_args: "..."    # extra --ros-args arguments

Substitutions: `$(var NAME)`, `$(env NAME [DEFAULT])`, `$(optenv NAME [DEFAULT])`,
`$(dirname)`, `$(filename)`, `$(find-pkg-share PKG)`, `$(equals A B)` / `$(not-equals A B)`
(`true` or `false`, as ros2 launch's EqualsSubstitution) (nested substitutions
allowed); conditions `if:` / `unless:` on any action. Every error names the file
and line.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml


class LaunchFileError(ValueError):
    """A launch file (or its arguments) is malformed; the message names the file and line."""


@dataclass(frozen=True)
class NodeLaunch:
    """One node process to start."""

    pkg: str
    """ROS package of the executable."""
    executable: str
    """Executable (console script) name inside the package."""
    name: str | None
    """Node name override (`-r __node:=NAME`), None keeps the node's default."""
    namespace: str
    """Absolute namespace ('' or '/' for the root)."""
    params: tuple[dict[str, Any] | str, ...]
    """In order: inline parameter dicts (name -> typed value) or parameter-file paths."""
    remaps: tuple[tuple[str, str], ...]
    """Topic/service remappings `from -> to`."""
    extra_args: tuple[str, ...]
    """Arguments before `--ros-args` (`args:`)."""
    ros_args: tuple[str, ...]
    """Extra arguments after `--ros-args` (`ros_args:`)."""
    env: tuple[tuple[str, str], ...]
    """Extra environment variables."""
    on_exit_shutdown: bool
    """`on_exit: shutdown`: this node ending is the normal end of the launch."""
    source: str
    """`file:line` of the node entry, for messages."""
    param_sources: tuple[tuple[str, str, str], ...] = ()
    """Per inline parameter: (name, `file:line` of its entry, its value as written, e.g. `$(var rate_hz)`)."""

    @property
    def label(self) -> str:
        return self.name or self.executable

    def ros_arguments(self, write_params: Callable[[dict[str, Any]], str]) -> list[str]:
        """The `--ros-args ...` part of the command line, as `ros2 launch` builds it.

        `write_params(dict) -> path` writes inline parameters to a parameter file (under the
        `/**` wildcard, as `ros2 launch` does), which keeps their YAML types exact.
        """
        out = ["--ros-args"]
        if self.name:
            out += ["-r", f"__node:={self.name}"]
        if self.namespace and self.namespace != "/":
            out += ["-r", f"__ns:={self.namespace}"]
        for p in self.params:
            out += ["--params-file", p if isinstance(p, str) else write_params(p)]
        for a, b in self.remaps:
            out += ["-r", f"{a}:={b}"]
        out += list(self.ros_args)
        return out


@dataclass(frozen=True)
class LaunchPlan:
    """A resolved launch file: the argument values and the nodes to start, in order."""

    file: str
    args: dict[str, str]
    nodes: tuple[NodeLaunch, ...]


def parse_cli_arguments(items: list[str]) -> dict[str, str]:
    """`["task:=ur5_pick", "episodes:=2"]` -> dict; anything else is an error naming the item."""
    out: dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise LaunchFileError(f"launch argument {item!r} is not of the form name:=value")
        key, value = item.split(":=", 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise LaunchFileError(f"launch argument name {key!r} (in {item!r}) is not a valid name")
        out[key] = value
    return out


def load_launch(path: str | os.PathLike, arguments: Mapping[str, str] | None = None,
                environ: Mapping[str, str] | None = None) -> LaunchPlan:
    """Resolve the launch file at `path` with command-line `arguments` into a `LaunchPlan`.

    Unknown arguments (not declared by an `arg` of the top-level file) are an error, as are
    declared arguments without a default that were not given.
    """
    path = Path(path).resolve()
    arguments = dict(arguments or {})
    ctx = _Context(vars={}, namespace="", environ=dict(os.environ if environ is None else environ))
    parser = _Parser()
    nodes: list[NodeLaunch] = []
    declared = parser.run_file(path, ctx, arguments, nodes, top_level=True)
    unknown = sorted(set(arguments) - declared)
    if unknown:
        raise LaunchFileError(
            f"{path}: unknown launch argument(s) {', '.join(unknown)}; declared: {', '.join(sorted(declared)) or 'none'}")
    return LaunchPlan(file=str(path), args={k: ctx.vars[k] for k in sorted(declared) if k in ctx.vars}, nodes=tuple(nodes))


# --- YAML with line numbers -------------------------------------------------------------------

class _Map(dict):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]


class _Seq(list):
    line: int = 0


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):  # noqa: D401 (yaml API)
        mapping = _Map(super().construct_mapping(node, deep=True))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return mapping

    def construct_sequence(self, node, deep=False):
        seq = _Seq(super().construct_sequence(node, deep=True))
        seq.line = node.start_mark.line + 1
        return seq


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence)


def _read_yaml(path: Path, where: str) -> Any:
    try:
        text = path.read_text()
    except OSError as e:
        raise LaunchFileError(f"{where}: cannot read launch file {path}: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = ""
        if e.context and e.context_mark is not None and e.context_mark is not mark:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        raise LaunchFileError(f"{path}{line}: malformed YAML: {e.problem or e}{context}") from None
    except yaml.YAMLError as e:
        raise LaunchFileError(f"{path}: malformed YAML: {e}") from None


def inline_params_yaml(params: Mapping[str, Any]) -> str:
    """Inline node parameters as a `ros__parameters` file for any node (`/**`); dotted names nest."""
    tree: dict[str, Any] = {}
    for key, value in params.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return yaml.safe_dump({"/**": {"ros__parameters": tree}}, sort_keys=False)


def _typed(value: str) -> Any:
    """Type inference of launch parameter values, as `ros2 launch` does: YAML scalars."""
    try:
        out = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return value if out is None or isinstance(out, (dict,)) else out


# --- the parser ------------------------------------------------------------------------------

@dataclass
class _Context:
    vars: dict[str, str]
    namespace: str
    environ: dict[str, str]
    file: Path = Path(".")

    def child(self, **changes) -> "_Context":
        return _Context(vars=dict(self.vars), namespace=changes.get("namespace", self.namespace),
                        environ=self.environ, file=changes.get("file", self.file))


_ACTIONS = ("arg", "let", "include", "group", "node", "push_ros_namespace", "push-ros-namespace")
_NODE_KEYS = {"pkg", "exec", "name", "namespace", "ros_namespace", "param", "remap", "env", "args", "ros_args",
              "output", "on_exit", "if", "unless", "exec_name", "emulate_tty", "respawn", "respawn_delay"}


@dataclass
class _Parser:
    include_stack: list[Path] = field(default_factory=list)

    def run_file(self, path: Path, ctx: _Context, arguments: Mapping[str, str],
                 nodes: list[NodeLaunch], top_level: bool, where: str = "") -> set[str]:
        if path in self.include_stack:
            raise LaunchFileError(f"{where or path}: include cycle through {path}")
        doc = _read_yaml(path, where or str(path))
        if not isinstance(doc, dict) or "launch" not in doc:
            raise LaunchFileError(f"{path}:{getattr(doc, 'line', 1)}: a YAML launch file is a mapping with one key "
                                  f"'launch' holding a list of actions")
        extra = sorted(set(doc) - {"launch"})
        if extra:
            raise LaunchFileError(f"{path}:{doc.key_lines[extra[0]]}: unexpected top-level key {extra[0]!r}")
        actions = doc["launch"]
        if not isinstance(actions, list):
            raise LaunchFileError(f"{path}:{doc.key_lines['launch']}: 'launch' must hold a list of actions")
        ctx.file = path
        declared: set[str] = set()
        self.include_stack.append(path)
        try:
            self.run_actions(actions, ctx, arguments, nodes, declared)
        finally:
            self.include_stack.pop()
        return declared

    def run_actions(self, actions: list, ctx: _Context, arguments: Mapping[str, str],
                    nodes: list[NodeLaunch], declared: set[str]) -> None:
        for item in actions:
            line = getattr(item, "line", getattr(actions, "line", 0))
            where = f"{ctx.file}:{line}"
            if not isinstance(item, dict) or len(item) != 1:
                raise LaunchFileError(f"{where}: each action is a mapping with exactly one key, one of {', '.join(_ACTIONS)}")
            kind, body = next(iter(item.items()))
            if kind not in _ACTIONS:
                raise LaunchFileError(f"{where}: unknown action {kind!r}; supported: {', '.join(_ACTIONS)}")
            if kind == "group":
                self.group(body, ctx, arguments, nodes, declared, where)
                continue
            if not isinstance(body, dict):
                raise LaunchFileError(f"{where}: {kind!r} takes a mapping of attributes")
            if not self.condition(body, ctx, where):
                continue
            if kind == "arg":
                self.arg(body, ctx, arguments, declared, where)
            elif kind == "let":
                self.require(body, ("name", "value"), kind, where)
                ctx.vars[str(body["name"])] = self.subst(body["value"], ctx, self.at(body, "value", where))
            elif kind == "include":
                self.include(body, ctx, nodes, where)
            elif kind in ("push_ros_namespace", "push-ros-namespace"):
                self.require(body, ("namespace",), kind, where)
                ctx.namespace = _join_ns(ctx.namespace, self.subst(body["namespace"], ctx, where))
            else:
                nodes.append(self.node(body, ctx, where))

    def at(self, body: dict, key: str, where: str) -> str:
        lines = getattr(body, "key_lines", {})
        return f"{where.rsplit(':', 1)[0]}:{lines[key]}" if key in lines else where

    def require(self, body: dict, keys: tuple[str, ...], kind: str, where: str) -> None:
        for key in keys:
            if key not in body:
                raise LaunchFileError(f"{where}: {kind!r} needs attribute {key!r}")

    def condition(self, body: dict, ctx: _Context, where: str) -> bool:
        ok = True
        for key, want in (("if", True), ("unless", False)):
            if key in body:
                value = self.subst(body[key], ctx, self.at(body, key, where)).strip().lower()
                if value not in ("true", "false", "1", "0"):
                    raise LaunchFileError(f"{self.at(body, key, where)}: condition {key!r} must be true or false, got {value!r}")
                ok = ok and ((value in ("true", "1")) == want)
        return ok

    def arg(self, body: dict, ctx: _Context, arguments: Mapping[str, str], declared: set[str], where: str) -> None:
        self.require(body, ("name",), "arg", where)
        extra = sorted(set(body) - {"name", "default", "description", "choices", "if", "unless"})
        if extra:
            raise LaunchFileError(f"{self.at(body, extra[0], where)}: unknown attribute {extra[0]!r} of 'arg'")
        name = str(body["name"])
        declared.add(name)
        if name in arguments:
            value = arguments[name]
        elif name in ctx.vars:  # given by an including file
            value = ctx.vars[name]
        elif "default" in body:
            value = self.subst(body["default"], ctx, self.at(body, "default", where))
        else:
            raise LaunchFileError(f"{where}: launch argument {name!r} has no default and was not given ({name}:=VALUE)")
        choices = body.get("choices")
        if choices is not None:
            allowed = [str(c["value"]) if isinstance(c, dict) else str(c) for c in choices]
            if value not in allowed:
                raise LaunchFileError(f"{where}: launch argument {name!r} is {value!r}; allowed: {', '.join(allowed)}")
        ctx.vars[name] = value

    def include(self, body: dict, ctx: _Context, nodes: list[NodeLaunch], where: str) -> None:
        self.require(body, ("file",), "include", where)
        target = Path(self.subst(body["file"], ctx, self.at(body, "file", where)))
        if not target.is_absolute():
            target = ctx.file.parent / target
        if target.suffix not in (".yaml", ".yml"):
            raise LaunchFileError(f"{where}: only YAML launch files can be included, got {target}")
        inner = ctx.child(file=target)
        given: dict[str, str] = {}
        for entry in body.get("arg", None) or []:
            if not isinstance(entry, dict) or "name" not in entry or "value" not in entry:
                raise LaunchFileError(f"{self.at(body, 'arg', where)}: include arguments are {{name: ..., value: ...}}")
            given[str(entry["name"])] = self.subst(entry["value"], ctx, f"{ctx.file}:{getattr(entry, 'line', 0)}")
        inner.vars.update(given)
        declared = self.run_file(target.resolve(), inner, given, nodes, top_level=False, where=where)
        unknown = sorted(set(given) - declared)
        if unknown:
            raise LaunchFileError(f"{where}: include passes unknown argument(s) {', '.join(unknown)} to {target}")

    def group(self, body: Any, ctx: _Context, arguments: Mapping[str, str], nodes: list[NodeLaunch],
              declared: set[str], where: str) -> None:
        scoped = True
        if isinstance(body, dict):
            extra = sorted(set(body) - {"children", "scoped", "forwarding", "if", "unless"})
            if extra:
                raise LaunchFileError(f"{self.at(body, extra[0], where)}: unknown attribute {extra[0]!r} of 'group'")
            if not self.condition(body, ctx, where):
                return
            scoped = str(body.get("scoped", True)).lower() in ("true", "1")
            children = body.get("children", [])
        else:
            children = body
        if not isinstance(children, list):
            raise LaunchFileError(f"{where}: a group holds a list of actions")
        inner = ctx.child() if scoped else ctx
        self.run_actions(children, inner, arguments, nodes, declared)

    def node(self, body: dict, ctx: _Context, where: str) -> NodeLaunch:
        extra = sorted(set(body) - _NODE_KEYS)
        if extra:
            raise LaunchFileError(f"{self.at(body, extra[0], where)}: unknown attribute {extra[0]!r} of 'node'")
        self.require(body, ("pkg", "exec"), "node", where)
        s = lambda key: self.subst(body[key], ctx, self.at(body, key, where))  # noqa: E731
        if "respawn" in body and s("respawn").lower() in ("true", "1"):
            raise LaunchFileError(f"{self.at(body, 'respawn', where)}: respawn is not supported by rrl launch")
        on_exit = s("on_exit") if "on_exit" in body else None
        if on_exit not in (None, "shutdown"):
            raise LaunchFileError(f"{self.at(body, 'on_exit', where)}: on_exit supports only 'shutdown', got {on_exit!r}")
        ns = ctx.namespace
        for key in ("namespace", "ros_namespace"):
            if key in body:
                ns = _join_ns(ns, s(key))
        params: list[dict[str, Any] | str] = []
        inline: dict[str, Any] = {}
        sources: dict[str, tuple[str, str]] = {}
        for entry in self.entries(body, "param", where):
            ewhere = f"{ctx.file}:{getattr(entry, 'line', 0)}"
            if "from" in entry:
                if inline:
                    params.append(inline)
                    inline = {}
                file = Path(self.subst(entry["from"], ctx, ewhere))
                file = file if file.is_absolute() else ctx.file.parent / file
                if not file.is_file():
                    raise LaunchFileError(f"{ewhere}: parameter file {file} does not exist")
                params.append(str(file.resolve()))
            else:
                self.params_into(entry, "", ctx, ewhere, inline, sources)
        if inline:
            params.append(inline)
        remaps = []
        for entry in self.entries(body, "remap", where):
            ewhere = f"{ctx.file}:{getattr(entry, 'line', 0)}"
            self.require(entry, ("from", "to"), "remap", ewhere)
            remaps.append((self.subst(entry["from"], ctx, ewhere), self.subst(entry["to"], ctx, ewhere)))
        env = []
        for entry in self.entries(body, "env", where):
            ewhere = f"{ctx.file}:{getattr(entry, 'line', 0)}"
            self.require(entry, ("name", "value"), "env", ewhere)
            env.append((str(entry["name"]), self.subst(entry["value"], ctx, ewhere)))
        name = s("name") if "name" in body else None
        if name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise LaunchFileError(f"{self.at(body, 'name', where)}: node name {name!r} is not a valid ROS name")
        return NodeLaunch(
            pkg=s("pkg"), executable=s("exec"), name=name, namespace=ns, params=tuple(params), remaps=tuple(remaps),
            extra_args=tuple(shlex.split(s("args"))) if "args" in body else (),
            ros_args=tuple(shlex.split(s("ros_args"))) if "ros_args" in body else (),
            env=tuple(env), on_exit_shutdown=on_exit == "shutdown", source=where,
            param_sources=tuple((name, w, raw) for name, (w, raw) in sources.items()),
        )

    def entries(self, body: dict, key: str, where: str) -> list[dict]:
        value = body.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise LaunchFileError(f"{self.at(body, key, where)}: {key!r} takes a list of mappings")
        return value

    def params_into(self, entry: dict, prefix: str, ctx: _Context, where: str, out: dict[str, Any],
                    sources: dict[str, tuple[str, str]]) -> None:
        if "name" not in entry:
            raise LaunchFileError(f"{where}: a param needs 'name' (with 'value' or nested 'param') or 'from'")
        name = prefix + str(entry["name"])
        if "param" in entry:
            for sub in entry["param"]:
                self.params_into(sub, name + ".", ctx, f"{ctx.file}:{getattr(sub, 'line', 0)}", out, sources)
            return
        if "value" not in entry:
            raise LaunchFileError(f"{where}: param {name!r} needs a 'value'")
        value = entry["value"]
        if isinstance(value, str):
            value = _typed(self.subst(value, ctx, where))
        elif isinstance(value, list):
            value = [_typed(self.subst(v, ctx, where)) if isinstance(v, str) else v for v in value]
        out[name] = value
        sources[name] = (where, str(entry["value"]))

    # $(...) substitutions, nested allowed: resolve innermost first
    _SUB = re.compile(r"\$\(([^()$]*)\)")

    def subst(self, value: Any, ctx: _Context, where: str) -> str:
        text = str(value)
        for _ in range(100):
            m = self._SUB.search(text)
            if m is None:
                break
            text = text[:m.start()] + self.substitution(m.group(1), ctx, where) + text[m.end():]
        if "$(" in text:
            raise LaunchFileError(f"{where}: unbalanced substitution in {value!r}")
        return text

    def substitution(self, body: str, ctx: _Context, where: str) -> str:
        parts = body.split()
        if not parts:
            raise LaunchFileError(f"{where}: empty substitution $()")
        kind, rest = parts[0], parts[1:]
        if kind == "var":
            if len(rest) != 1:
                raise LaunchFileError(f"{where}: $(var NAME) takes one name, got $({body})")
            if rest[0] not in ctx.vars:
                raise LaunchFileError(f"{where}: $(var {rest[0]}) names an undeclared launch argument; "
                                      f"known: {', '.join(sorted(ctx.vars)) or 'none'}")
            return ctx.vars[rest[0]]
        if kind in ("env", "optenv"):
            if len(rest) not in (1, 2):
                raise LaunchFileError(f"{where}: $({kind} NAME [DEFAULT]) got $({body})")
            if rest[0] in ctx.environ:
                return ctx.environ[rest[0]]
            if len(rest) == 2:
                return rest[1]
            if kind == "optenv":
                return ""
            raise LaunchFileError(f"{where}: environment variable {rest[0]!r} is not set and $(env) gives no default")
        if kind in ("equals", "not-equals"):
            if len(rest) != 2:
                raise LaunchFileError(f"{where}: $({kind} A B) compares two values, got $({body})")
            return str((rest[0] == rest[1]) == (kind == "equals")).lower()
        if kind == "dirname":
            return str(ctx.file.parent)
        if kind == "filename":
            return ctx.file.name
        if kind == "find-pkg-share":
            if len(rest) != 1:
                raise LaunchFileError(f"{where}: $(find-pkg-share PKG) takes one package")
            return find_package_share(rest[0], where)
        raise LaunchFileError(f"{where}: unsupported substitution $({body}); supported: var, env, optenv, dirname, "
                              f"filename, find-pkg-share, equals, not-equals")


def _join_ns(base: str, ns: str) -> str:
    ns = ns.strip()
    if not ns:
        return base
    if ns.startswith("/"):
        return ns.rstrip("/") or "/"
    return (base.rstrip("/") + "/" + ns).rstrip("/") if base else "/" + ns.rstrip("/")


def find_package_share(pkg: str, where: str = "") -> str:
    """`<prefix>/share/<pkg>` from AMENT_PREFIX_PATH (or the running Python's prefix)."""
    import sys

    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        if (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / pkg).exists() \
                or (Path(prefix) / "share" / pkg / "package.xml").exists():
            return str(Path(prefix) / "share" / pkg)
    raise LaunchFileError(f"{where}: package {pkg!r} not found in AMENT_PREFIX_PATH or {sys.prefix}")
