"""Final success of base + residual against the success of its base, one point per base (RRLfD Fig. 4).

Reads the `summary.json` of `rrl train residual` runs: `base_only` and `residual` are the base alone and base +
residual through the runtime on the same held-out seeds (`--final-eval-episodes`, 100 by default). A point is
one base with the training seeds of its residual (`--base LABEL=DIR[,DIR...]`): x is the base's success with
its Wilson interval (the seeds share the base and the evaluation seeds, so the base is measured once per run
and must agree), y the mean over seeds of base + residual with its Student-t interval (one seed: Wilson).
The diagonal (no gain) and the diagonal + 0.2 (issue 16's bar) are drawn. Writes a PNG and prints one JSON
object. `--keep LABEL=JSON` redraws a point from an earlier output of this script (its runs need not be here
any more; its `runs` and figures are carried over unchanged).

    .venv/bin/python bench/residual_vs_base.py \\
        --base "BC 20 demos=runs/res_weak_s0,runs/res_weak_s1,runs/res_weak_s2" \\
        --base "BC 60 demos=runs/res_strong_s0,runs/res_strong_s1" \\
        --out bench/results/residual_vs_base_ur5_pick.png
    # a point measured earlier, whose runs are gone, from that figure's JSON (write the new JSON elsewhere:
    # the shell empties a redirect's target before the script reads it)
    .venv/bin/python bench/residual_vs_base.py --base "BC 60 demos=runs/res_strong_s0,runs/res_strong_s1" \
        --keep "BC 20 demos=bench/results/residual_vs_base_ur5_pick_v1.json" --out bench/results/residual_vs_base_ur5_pick.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from machine_info import machine


def read_final(run: Path) -> dict:
    """base_only and residual of one finished run (its summary.json)."""
    path = run / "summary.json"
    if not path.is_file():
        raise SystemExit(f"residual_vs_base: {path} does not exist (run not finished, or not an `rrl train residual` run)")
    summary = json.loads(path.read_text())
    if "base_only" not in summary or "residual" not in summary:
        raise SystemExit(f"residual_vs_base: {path} has no final base vs base + residual evaluation "
                         "(a run without a base, or one stopped by --max-wall-s: run the same command again to finish it)")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", action="append", default=[], metavar="LABEL=DIR[,DIR...]",
                    help="one base: the residual runs on it, one per training seed (repeatable)")
    ap.add_argument("--keep", action="append", default=[], metavar="LABEL=JSON",
                    help="a point of an earlier output of this script (its `points` entry LABEL), drawn again (repeatable)")
    ap.add_argument("--title", default=None, help="plot title (default: the task)")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import mean_interval, success_interval

    if not args.base and not args.keep:
        raise SystemExit("residual_vs_base: give at least one --base or --keep")
    points, task = {}, None
    for item in args.keep:
        label, sep, path = item.partition("=")
        earlier = json.loads(Path(path).read_text()) if sep and Path(path).is_file() else None
        if earlier is None or label not in earlier.get("points", {}):
            raise SystemExit(f"residual_vs_base: --keep expects LABEL=JSON of an earlier output holding point LABEL, got {item!r}")
        if task is not None and earlier["task"] != task:
            raise SystemExit(f"residual_vs_base: {path} is a {earlier['task']} figure, not {task}")
        task = earlier["task"]
        points[label] = {**earlier["points"][label], "kept_from": path}
    for item in args.base:
        label, sep, dirs = item.partition("=")
        if not sep or not label or not dirs:
            raise SystemExit(f"residual_vs_base: --base expects LABEL=DIR[,DIR...], got {item!r}")
        runs = [Path(d) for d in dirs.split(",") if d]
        summaries = [read_final(r) for r in runs]
        tasks = {s["task"] for s in summaries}
        bases = {(s["base"], s["base_only"]["success_rate"], s["base_only"]["episodes"]) for s in summaries}
        if len(tasks) != 1 or (task is not None and tasks != {task}):
            raise SystemExit(f"residual_vs_base: runs of more than one task: {sorted(tasks | ({task} if task else set()))}")
        if len({b[0] for b in bases}) != 1:
            raise SystemExit(f"residual_vs_base: the runs of {label!r} are on different bases: {sorted(b[0] for b in bases)}")
        task = tasks.pop()
        base_rates = [s["base_only"]["success_rate"] for s in summaries]
        episodes = summaries[0]["base_only"]["episodes"]
        base_rate = float(sum(base_rates) / len(base_rates))
        rates = [s["residual"]["success_rate"] for s in summaries]
        mean, low, high = mean_interval(rates)
        if len(rates) == 1:
            n = summaries[0]["residual"]["episodes"]
            low, high = success_interval(round(rates[0] * n), n)
        points[label] = {"base": summaries[0]["base"], "runs": [str(r) for r in runs], "episodes": episodes,
                         "base_success": base_rate, "base_interval": success_interval(round(base_rate * episodes), episodes),
                         "base_success_per_run": base_rates, "residual_success": mean, "residual_interval": [low, high],
                         "residual_success_per_seed": rates, "gain": mean - base_rate,
                         "frames": [s["frames"] for s in summaries]}

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    grid = [0.0, 1.0]
    ax.plot(grid, grid, color="k", lw=1, ls="--", label="no gain")
    ax.plot([0.0, 0.8], [0.2, 1.0], color="grey", lw=1, ls=":", label="+20 points")
    for label, p in points.items():
        bx, (blo, bhi) = p["base_success"], p["base_interval"]
        ry, (rlo, rhi) = p["residual_success"], p["residual_interval"]
        seeds = len(p["runs"])
        ax.errorbar([bx], [ry], xerr=[[bx - blo], [bhi - bx]], yerr=[[ry - rlo], [rhi - ry]], fmt="o", capsize=3,
                    label=f"{label} ({seeds} seed{'s' if seeds > 1 else ''})")
    ax.set_xlabel("base success (held-out seeds)")
    ax.set_ylabel("base + residual success (held-out seeds)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(args.title or task or "")
    fig.tight_layout()
    fig.savefig(args.out)
    print(json.dumps({"png": args.out, "task": task, "machine": machine("numpy", "matplotlib"), "points": points}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
