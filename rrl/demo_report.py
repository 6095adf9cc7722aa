"""The `make demo` report, table and plot, built from `rrl launch --report` files (pure, no ROS, no simulator).

`configuration(name, launch_report, ...)` reduces one launch report (keys of `rrl.commands.launch.summarize`:
`results`, `success_rate`, `jitter_p99_ms`, `control`, `sim`, ...) to one row; `build_report` gathers the
rows, the swap and the context; `format_table` prints them; `plot_report` draws success and episode length
side by side with every episode shown. `rrl demo` (rrl/commands/demo.py) runs the stacks and calls these.

Safety columns: `clipped` = commands clipped to the action limits (the normal case for a policy pushing
against the speed cap); `other` = every other safety event of the control node (stale/NaN holds, NaN
fallbacks, base/residual errors, workspace clips and holds) plus the sim's own refusals and holds
(ticks without a command, held ticks, bad/non-finite/foreign commands). A healthy run has `other` 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SIM_COUNTERS = ("ticks_without_command", "hold_ticks", "bad_commands", "nonfinite_commands", "foreign_commands")
"""Counters of the sim_bridge report that mean the loop did not run as commanded."""


def _only(mapping: dict, what: str) -> dict:
    if len(mapping) != 1:
        raise ValueError(f"expected one {what} node in the launch report, got {len(mapping)}")
    return next(iter(mapping.values()))


def configuration(name: str, launch_report: dict, base: str, residual: str | None, wall_s: float | None = None,
                  **extra: Any) -> dict:
    """One row of the demo: what ran, success, steps, loop statistics and safety counters of one launch."""
    control = _only(launch_report.get("control", {}), "control")
    sim = _only(launch_report.get("sim", {}), "sim_bridge")
    lockstep = sim.get("clock_mode") == "lockstep"
    safety = dict(control.get("safety", {}))
    sim_counters = {key: int(sim.get(key, 0) or 0) for key in SIM_COUNTERS}
    other = sum(v for k, v in safety.items() if k != "clipped") + sum(sim_counters.values())
    results = [{"seed": r["seed"], "success": bool(r["success"]), "steps": int(r["steps"])}
               for r in launch_report.get("results", [])]
    wins = [r["steps"] for r in results if r["success"]]
    return {
        "name": name, "clock_mode": sim.get("clock_mode"), "base": base, "residual": residual,
        "episodes": len(results), "successes": len(wins),
        "success_rate": len(wins) / len(results) if results else 0.0,
        "mean_steps_success": sum(wins) / len(wins) if wins else None,
        "results": results,
        # lockstep has no deadline (the sim waits for each command, runs may share the CPU): no loop timing there
        "jitter_p99_ms": None if lockstep else launch_report.get("jitter_p99_ms"),
        "latency_p99_ms": None if lockstep else launch_report.get("latency_p99_ms"),
        "missed_deadlines": None if lockstep else launch_report.get("missed_deadlines"),
        "safety": safety, "sim_counters": sim_counters,
        "clipped": int(safety.get("clipped", 0)), "other_safety": int(other),
        "worst_latency_tick": control.get("metrics", {}).get("worst_latency_tick"),
        "swaps": control.get("swaps", []), "exit_code": launch_report.get("exit_code"),
        "residual_suspended_ticks": int(control.get("residual_suspended_ticks", 0) or 0),
        "trajectory_sha256": sim.get("trajectory_sha256"),
        **({"wall_s": round(wall_s, 1)} if wall_s is not None else {}), **extra,
    }


def build_report(configurations: list[dict], **context: Any) -> dict:
    """The demo report: the rows, the comparison of the lockstep pair (residual minus base), and `context`."""
    lockstep = [c for c in configurations if c["clock_mode"] == "lockstep"]
    comparison = None
    base = next((c for c in lockstep if c["residual"] is None), None)
    with_residual = next((c for c in lockstep if c["residual"] is not None), None)
    if base is not None and with_residual is not None:
        same_seeds = [r["seed"] for r in base["results"]] == [r["seed"] for r in with_residual["results"]]
        comparison = {"same_seeds": same_seeds,
                      "success_gain": with_residual["success_rate"] - base["success_rate"],
                      "residual_not_below_base": with_residual["success_rate"] >= base["success_rate"],
                      "fixed_by_residual": [b["seed"] for b, r in zip(base["results"], with_residual["results"])
                                            if r["success"] and not b["success"]],
                      "broken_by_residual": [b["seed"] for b, r in zip(base["results"], with_residual["results"])
                                             if b["success"] and not r["success"]]}
    return {**context, "configurations": configurations, "comparison": comparison}


def format_cell(value: Any, fmt: str = "{}") -> str:
    """`fmt` applied to `value`, or "-" for None (a figure that does not apply)."""
    return "-" if value is None else fmt.format(value)


def format_table(report: dict) -> str:
    """The demo's table as aligned text (one line per configuration)."""
    header = ("configuration", "clock", "success", "mean steps (succ.)", "jitter p99", "latency p99", "missed",
              "clipped", "other safety")
    rows = [header]
    for c in report["configurations"]:
        rows.append((c["name"], c["clock_mode"] or "-", f"{c['success_rate']:.2f} ({c['successes']}/{c['episodes']})",
                     format_cell(c["mean_steps_success"], "{:.1f}"), format_cell(c["jitter_p99_ms"], "{:.2f} ms"),
                     format_cell(c["latency_p99_ms"], "{:.2f} ms"), format_cell(c["missed_deadlines"]), str(c["clipped"]),
                     str(c["other_safety"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown_table(report: dict) -> str:
    """The same table in Markdown (for the README)."""
    lines = ["| configuration | clock | success | mean steps of successes | jitter p99 | latency p99 | missed "
             "deadlines | clipped | other safety |", "|---|---|---|---|---|---|---|---|---|"]
    for c in report["configurations"]:
        lines.append(f"| {c['name']} | {c['clock_mode']} | {c['success_rate']:.2f} ({c['successes']}/{c['episodes']}) "
                     f"| {format_cell(c['mean_steps_success'], '{:.1f}')} | {format_cell(c['jitter_p99_ms'], '{:.2f} ms')} "
                     f"| {format_cell(c['latency_p99_ms'], '{:.2f} ms')} | {format_cell(c['missed_deadlines'])} | {c['clipped']} "
                     f"| {c['other_safety']} |")
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path, horizon_steps: int | None = None) -> Path:
    """`path` (PNG): success rate (left) and episode length per seed (right) of the lockstep configurations.

    Left: one bar per configuration with each episode as a dot (1 success, 0 failure) and, where the report
    has them, the success the artifacts recorded over 100 held-out seeds as a hollow diamond. Right: steps of
    every episode by seed; filled dots are successes, crosses failures (at the horizon)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    configs = [c for c in report["configurations"] if c["clock_mode"] == "lockstep"]
    if not configs:
        raise ValueError("the report has no lockstep configuration to plot")
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 2]})
    rng = np.random.default_rng(0)  # dot spread only
    for i, (c, colour) in enumerate(zip(configs, colours)):
        ax_s.bar(i, c["success_rate"], color=colour, alpha=0.35, width=0.6)
        outcomes = np.array([1.0 if r["success"] else 0.0 for r in c["results"]])
        ax_s.scatter(i + rng.uniform(-0.2, 0.2, outcomes.size), outcomes, s=14, color=colour, zorder=3)
        ax_s.text(i, 1.07, f"{c['success_rate']:.2f} ({c['successes']}/{c['episodes']})", ha="center", va="bottom",
                  fontsize=9)
        recorded = c.get("recorded_success_rate")
        if recorded is not None:
            ax_s.scatter([i + 0.36], [recorded], marker="D", facecolor="none", edgecolor="k", s=36, zorder=4)
        seeds = np.array([r["seed"] for r in c["results"]]) - configs[0]["results"][0]["seed"]
        steps = np.array([r["steps"] for r in c["results"]])
        won = outcomes > 0
        short = "base" if c["residual"] is None else "base + residual"
        ax_l.scatter(seeds[won] + 0.15 * (i - 0.5), steps[won], color=colour, s=28, label=f"{short}: success")
        ax_l.scatter(seeds[~won] + 0.15 * (i - 0.5), steps[~won], color=colour, marker="x", s=34,
                     label=f"{short}: failure")
        if c["mean_steps_success"] is not None:
            ax_l.axhline(c["mean_steps_success"], color=colour, lw=0.8, ls="--")
    ax_s.set_xticks(range(len(configs)), [c["name"].replace(" + ", "\n+ ") for c in configs], fontsize=8)
    ax_s.set_xlim(-0.6, len(configs) - 0.4)
    ax_s.set_ylim(-0.08, 1.2)
    ax_s.set_ylabel("success (each dot one episode)")
    recorded = any(c.get("recorded_success_rate") is not None for c in configs)
    ax_s.set_title("success, same held-out seeds" + ("\n(diamond: recorded over 100 held-out seeds)" if recorded else ""),
                   fontsize=9)
    first = configs[0]["results"][0]["seed"]
    ax_l.set_xlabel(f"episode seed - {first}")
    ax_l.set_ylabel("steps (10 Hz)")
    if horizon_steps:
        ax_l.axhline(horizon_steps, color="0.5", lw=0.8)
        ax_l.set_ylim(0, horizon_steps * 1.08)
    ax_l.set_title("episode length (dashed: mean of successes)", fontsize=10)
    ax_l.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, frameon=False)
    fig.suptitle(report.get("title", "rrl demo"), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
