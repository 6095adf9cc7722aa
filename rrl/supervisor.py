"""Run the nodes of a `LaunchPlan`, one process each, and stop them all together.

Rules (what `rrl launch` promises):
- each node runs as its own process (its package's console script, resolved like
  `ros2 run`: `<prefix>/lib/<pkg>/<exec>` for every prefix in AMENT_PREFIX_PATH and
  the running Python's prefix, else the package's installed console script in
  `<python prefix>/bin`, else its entry point through `python -c`);
  its output is prefixed with `[name]`;
- the first node to end ends the launch: the others get SIGINT, then SIGTERM after
  `sigint_timeout_s`, then SIGKILL; a node that ends with a non-zero code (or by a
  signal) is reported by name with its code and makes the launch fail;
- Ctrl-C (SIGINT) or SIGTERM to the launcher stops every node the same way; if the launcher
  itself is killed, the kernel sends every node SIGTERM (PR_SET_PDEATHSIG), so none is orphaned;
- every node gets `RRL_REPORT_DIR`: nodes write `<node name>.json` there (episode
  results, loop metrics), which `collect_reports` reads after shutdown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from rrl.launch_file import LaunchFileError, LaunchPlan, NodeLaunch, inline_params_yaml


def resolve_executable(pkg: str, executable: str, where: str = "") -> list[str]:
    """Command prefix that runs `executable` of ROS package `pkg`."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        candidate = Path(prefix) / "lib" / pkg / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    try:
        eps = metadata.distribution(pkg).entry_points
    except metadata.PackageNotFoundError:
        eps = ()
    for ep in eps:
        if ep.group == "console_scripts" and ep.name == executable:
            module, _, func = ep.value.partition(":")
            script = Path(sys.prefix) / "bin" / executable  # the installed console script (pip install -e)
            if script.is_file() and os.access(script, os.X_OK) and f"from {module} import {func}" in script.read_text():
                return [str(script)]  # `ps` and the ROS log files then name the node's executable, not python
            return [sys.executable, "-c", f"import sys; from {module} import {func} as f; sys.exit(f())"]
    raise LaunchFileError(f"{where}: executable {executable!r} of package {pkg!r} not found "
                          f"(looked in <prefix>/lib/{pkg}/ of {prefixes} and the {pkg!r} console scripts)")


try:  # resolved once in the parent: the child between fork and exec must not import anything
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the launcher dies (even by SIGKILL), so no node outlives it."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"exit code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


@dataclass
class NodeProcess:
    spec: NodeLaunch
    command: list[str]
    process: subprocess.Popen
    reader: threading.Thread | None = None

    @property
    def label(self) -> str:
        return self.spec.label


@dataclass
class LaunchResult:
    exit_code: int
    """0: the launch ended normally (a node with on_exit: shutdown, or every node, ended with 0)."""
    reason: str
    """One line saying why the launch ended."""
    nodes: dict[str, dict] = field(default_factory=dict)
    """Per node: pid, exit code (and its signal name), command."""
    reports: dict[str, dict] = field(default_factory=dict)
    """Per node: the JSON report it wrote to RRL_REPORT_DIR."""


class Supervisor:
    """Starts the nodes of a plan and supervises them until the launch ends."""

    def __init__(self, plan: LaunchPlan, sigint_timeout_s: float = 5.0, sigterm_timeout_s: float = 3.0,
                 poll_s: float = 0.02, out=None):
        self.plan = plan
        self.sigint_timeout_s = sigint_timeout_s
        self.sigterm_timeout_s = sigterm_timeout_s
        self.poll_s = poll_s
        self.out = out or sys.stdout
        self.workdir = Path(tempfile.mkdtemp(prefix="rrl_launch_"))
        self.report_dir = self.workdir / "reports"
        self.report_dir.mkdir()
        self.procs: list[NodeProcess] = []
        self._stop_request: str | None = None
        self._print_lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._print_lock:
            print(f"[launch] {line}", file=self.out, flush=True)

    def _write_params(self, params: dict) -> str:
        fd, path = tempfile.mkstemp(prefix="params_", suffix=".yaml", dir=self.workdir)
        with os.fdopen(fd, "w") as f:
            f.write(inline_params_yaml(params))
        return path

    def command_of(self, node: NodeLaunch) -> list[str]:
        return [*resolve_executable(node.pkg, node.executable, node.source), *node.extra_args,
                *node.ros_arguments(self._write_params)]

    def start(self) -> None:
        labels = [n.label for n in self.plan.nodes]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise LaunchFileError(f"{self.plan.file}: several nodes are named {', '.join(dupes)}")
        commands = [self.command_of(n) for n in self.plan.nodes]  # resolve all before starting any
        for node, command in zip(self.plan.nodes, commands):
            env = dict(os.environ, PYTHONUNBUFFERED="1", RRL_REPORT_DIR=str(self.report_dir), **dict(node.env))
            proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, text=True, bufsize=1,
                                    preexec_fn=_die_with_parent)
            np_ = NodeProcess(node, command, proc)
            np_.reader = threading.Thread(target=self._pump, args=(np_,), daemon=True)
            np_.reader.start()
            self.procs.append(np_)
            self.say(f"started {node.label} (pid {proc.pid}): {node.pkg}/{node.executable}")

    def _pump(self, np_: NodeProcess) -> None:
        for line in np_.process.stdout:
            with self._print_lock:
                self.out.write(f"[{np_.label}] {line}" if line.endswith("\n") else f"[{np_.label}] {line}\n")
                self.out.flush()

    def request_stop(self, reason: str) -> None:
        if self._stop_request is None:
            self._stop_request = reason

    def run(self) -> LaunchResult:
        """Start every node, wait for the first to end (or a stop request), stop the rest."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        handler = lambda signum, _frame: self.request_stop(f"received {signal.Signals(signum).name}")  # noqa: E731
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for s in previous:
                signal.signal(s, handler)
        try:
            if not self.plan.nodes:
                return LaunchResult(0, "the launch file starts no node")
            self.start()
            first: NodeProcess | None = None
            while self._stop_request is None and first is None:
                for np_ in self.procs:
                    if np_.process.poll() is not None:
                        first = np_
                        break
                else:
                    time.sleep(self.poll_s)
            if first is not None:
                code = first.process.returncode
                if code == 0:
                    reason = f"{first.label} finished ({describe_exit(code)})"
                    exit_code = 0
                else:
                    reason = (f"node '{first.label}' (pid {first.process.pid}, {first.spec.pkg}/{first.spec.executable}) "
                              f"died with {describe_exit(code)}")
                    exit_code = 1
            else:
                reason, exit_code = str(self._stop_request), 130
            self.say(f"{reason}; shutting down the launch")
            self.shutdown()
            nodes = {}
            for np_ in self.procs:
                code = np_.process.returncode
                nodes[np_.label] = {"pid": np_.process.pid, "exit_code": code, "exit": describe_exit(code),
                                    "command": np_.command}
                if np_ is not first and code not in (0, -signal.SIGINT, 130) and exit_code == 0:
                    exit_code = 1
                    reason += f"; node '{np_.label}' ended with {describe_exit(code)} on shutdown"
            return LaunchResult(exit_code, reason, nodes, collect_reports(self.report_dir))
        finally:
            if all(np_.process.poll() is not None for np_ in self.procs):
                shutil.rmtree(self.workdir, ignore_errors=True)  # parameter files and reports, read by now
            if in_main:
                for s, h in previous.items():
                    signal.signal(s, h)

    def shutdown(self) -> None:
        """SIGINT every live node, then SIGTERM, then SIGKILL, each after its timeout."""
        for sig, timeout in ((signal.SIGINT, self.sigint_timeout_s), (signal.SIGTERM, self.sigterm_timeout_s),
                             (signal.SIGKILL, 5.0)):
            alive = [np_ for np_ in self.procs if np_.process.poll() is None]
            if not alive:
                break
            if sig != signal.SIGINT:
                self.say(f"{', '.join(n.label for n in alive)} still running: sending {sig.name}")
            for np_ in alive:
                try:
                    np_.process.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(n.process.poll() is None for n in alive):
                time.sleep(self.poll_s)
        for np_ in self.procs:
            np_.process.wait()
            if np_.reader is not None:
                np_.reader.join(timeout=2.0)


def collect_reports(report_dir: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(Path(report_dir).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            out[path.stem] = {"error": f"unreadable report {path.name}: {e}"}
    return out
