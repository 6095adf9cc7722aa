"""`rrl launch FILE [key:=value ...] [--report out.json]`: run a ROS 2 YAML launch file.

Runs the same YAML launch files `ros2 launch` would (see `rrl.launch_file` for the
supported subset), each node as its own process (`rrl.supervisor`). The launch
ends when a node ends: normally the sim_bridge after its episodes (exit 0), or a
node that died (reported by name with its exit code; exit 1), or Ctrl-C (130).
At the end it prints the episode results and the control loop statistics and,
with --report, writes them as JSON (keys `episodes`, `success_rate`,
`jitter_p99_ms`, `latency_p99_ms`, `missed_deadlines`, per-node details).

Before any node starts, the launch file, the node parameters (`rrl.param_check`: names, types and
ranges against `rrl_ros.params`, with the file and line of each) and the --report location (its
directory can be created and written) are checked; a problem ends the launch with one line on
standard error and exit status 2. The report is written atomically (a temporary file in the same
directory, then a rename); if that fails (disk full), the message names the path and the reason
and no temporary file is left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="YAML launch file, e.g. launch/ur5.launch.yaml")
    p.add_argument("arguments", nargs="*", metavar="key:=value", help="launch arguments")
    p.add_argument("--report", default=None, help="write the episode results and loop metrics to this JSON file")
    p.add_argument("--show-args", action="store_true", help="print the launch arguments and nodes, start nothing")
    p.add_argument("--sigint-timeout", type=float, default=5.0, help="seconds a node gets to stop after SIGINT")


def summarize(result, plan) -> dict:
    """The launch report: per-episode success (from the sim nodes) and loop metrics (from the control nodes)."""
    episodes, controls = [], {}
    for name, rep in result.reports.items():
        if rep.get("kind") == "sim_bridge":
            episodes.extend(rep.get("results", []))
        elif rep.get("kind") == "control":
            controls[name] = rep
    n = len(episodes)
    wins = [e["steps"] for e in episodes if e["success"]]
    out = {
        "launch_file": plan.file, "args": plan.args, "exit_code": result.exit_code, "reason": result.reason,
        "episodes": n, "success_rate": len(wins) / n if n else 0.0,
        "mean_steps_success": sum(wins) / len(wins) if wins else None,
        "results": episodes,
    }
    metrics = [c["metrics"] for c in controls.values()]
    worst = lambda key: max((m[key] for m in metrics if m.get(key) is not None), default=None)  # noqa: E731
    out.update({
        "jitter_p50_ms": worst("jitter_p50_ms"), "jitter_p99_ms": worst("jitter_p99_ms"),
        "jitter_max_ms": worst("jitter_max_ms"), "latency_p50_ms": worst("latency_p50_ms"),
        "latency_p99_ms": worst("latency_p99_ms"), "latency_max_ms": worst("latency_max_ms"),
        "missed_deadlines": sum(m.get("missed_deadlines", 0) for m in metrics) if metrics else None,
        "control": controls, "nodes": result.nodes,
        "sim": {k: v for k, v in result.reports.items() if v.get("kind") == "sim_bridge"},
    })
    return out


def _unwritable(path: Path, error: OSError) -> str:
    """'cannot write the report PATH: no space left on device' (the OS's words: read-only file system, ...)."""
    reason = error.strerror or str(error)
    return f"cannot write the report {path}: {reason[:1].lower()}{reason[1:]}"


def check_report_path(path: Path) -> str | None:
    """Why the report cannot be written at `path` (its directory is created if missing), or None.

    Probes with a temporary file in the directory (removed again): a read-only file system, a missing
    permission or a full disk show before the stack runs rather than after it.
    """
    if path.is_dir():
        return f"cannot write the report {path}: it is a directory"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as e:
        return _unwritable(path, e)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b" " * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return _unwritable(path, e)
    finally:
        os.unlink(probe)
    return None


def write_report(path: Path, report: dict) -> str | None:
    """Write `report` to `path` atomically; returns why it failed (no temporary file is left), or None."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(report, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        return _unwritable(path, e)
    finally:
        if tmp is not None:
            os.unlink(tmp)
    return None


def run(args: argparse.Namespace) -> int:
    from rrl.launch_file import LaunchFileError, load_launch, parse_cli_arguments
    from rrl.param_check import check_plan
    from rrl.supervisor import Supervisor

    try:
        plan = load_launch(args.file, parse_cli_arguments(args.arguments))
        check_plan(plan)
    except LaunchFileError as e:
        print(f"rrl launch: {e}", file=sys.stderr)
        return 2
    if args.show_args:
        print(json.dumps({"file": plan.file, "args": plan.args,
                          "nodes": [{"name": n.label, "pkg": n.pkg, "exec": n.executable, "namespace": n.namespace,
                                     "params": list(n.params), "remaps": list(n.remaps)} for n in plan.nodes]}, indent=1))
        return 0
    report_path = Path(args.report) if args.report else None
    problem = report_path and check_report_path(report_path)
    if problem:
        print(f"rrl launch: {problem}; nothing started", file=sys.stderr)
        return 2
    try:
        result = Supervisor(plan, sigint_timeout_s=args.sigint_timeout).run()
    except LaunchFileError as e:
        print(f"rrl launch: {e}", file=sys.stderr)
        return 2
    report = summarize(result, plan)
    if result.exit_code != 0:
        print(f"rrl launch: {result.reason}", file=sys.stderr)
    print(f"episodes: {report['episodes']}, success rate {report['success_rate']:.2f} "
          f"({', '.join('ok' if e['success'] else 'fail' for e in report['results']) or 'none finished'})")
    if report["jitter_p99_ms"] is not None or report["latency_p99_ms"] is not None:
        print(f"control loop: jitter p50/p99/max {report['jitter_p50_ms']}/{report['jitter_p99_ms']}/"
              f"{report['jitter_max_ms']} ms, latency p50/p99 {report['latency_p50_ms']}/{report['latency_p99_ms']} ms, "
              f"missed deadlines {report['missed_deadlines']}")
    if report_path is not None:
        problem = write_report(report_path, report)
        if problem:
            print(f"rrl launch: {problem}", file=sys.stderr)
            return 2
        print(f"report written to {report_path}")
    return result.exit_code
