"""Success rate and length of successful episodes over training frames, over training seeds (RRLfD Figs. 5 and 6).

Reads the `eval.jsonl` of `rrl train residual` runs (frames, success_rate and mean_steps_success on held-out
seeds, written at every periodic evaluation). A label takes one run or several training seeds of one
configuration (`--run residual=runs/s0,runs/s1,runs/s2`, or the same label repeated): the curve is then the
mean over seeds with its 95 % Student-t interval (`training.evaluation.seed_curve`), shaded. The base's
success (through the runtime on held-out seeds, from a residual run's `summary.json`, or --base-success) and
its mean length of successful episodes are dashed lines. Writes a PNG with two panels and prints one JSON
object (the points of every curve, the machine). `--keep LABEL=JSON` redraws a curve from an earlier output of
this script, whose runs need not be here any more (it keeps its `runs` and is marked `kept_from`).

    .venv/bin/python bench/residual_curves.py \
        --run residual=runs/res_s0,runs/res_s1,runs/res_s2 --run scratch=runs/scratch_pick \
        --run fine-tuning=runs/ft_pick --base-from runs/res_s0 --base-label BC \
        --out bench/results/residual_curves_ur5_pick.png
    .venv/bin/python bench/residual_curves.py --keep "residual=bench/results/residual_curves_ur5_pick.json" \
        --run fine-tuning=runs/ft_pick_s1 --base-success 0.52 --out bench/results/residual_curves_ur5_pick_v2.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from machine_info import machine


def read_eval(run: Path) -> list[dict]:
    """The periodic evaluations of one run (RUN/eval.jsonl, training.harness)."""
    from training.harness import read_eval_log

    rows = read_eval_log(run)
    if not rows:
        raise SystemExit(f"residual_curves: {run} holds no evaluation (not an `rrl train residual` run, or none yet)")
    return rows


def parse_runs(items: list[str]) -> dict[str, list[Path]]:
    """LABEL=DIR[,DIR...] items (a repeated label adds seeds) -> label: run directories, in order given."""
    runs: dict[str, list[Path]] = {}
    for item in items:
        label, sep, dirs = item.partition("=")
        if not sep or not label or not dirs:
            raise SystemExit(f"residual_curves: --run expects LABEL=DIR[,DIR...], got {item!r}")
        runs.setdefault(label, []).extend(Path(d) for d in dirs.split(",") if d)
    return runs


def kept_curves(items: list[str]) -> dict[str, dict]:
    """LABEL=JSON items -> label: the curve LABEL of an earlier output of this script, marked `kept_from`."""
    kept = {}
    for item in items:
        label, sep, path = item.partition("=")
        earlier = json.loads(Path(path).read_text()) if sep and Path(path).is_file() else None
        if earlier is None or label not in earlier.get("curves", {}):
            raise SystemExit(f"residual_curves: --keep expects LABEL=JSON of an earlier output holding curve LABEL, got {item!r}")
        kept[label] = {**earlier["curves"][label], "kept_from": path}
    return kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=DIR[,DIR...]",
                    help="a configuration to plot: one run, or its training seeds comma-separated (repeatable)")
    ap.add_argument("--keep", action="append", default=[], metavar="LABEL=JSON",
                    help="a curve LABEL from an earlier output of this script, its runs gone (repeatable)")
    ap.add_argument("--base-from", default=None, metavar="DIR", help="residual run whose summary.json has the base's held-out success")
    ap.add_argument("--base-success", type=float, default=None, help="base success rate to draw (overrides --base-from)")
    ap.add_argument("--base-label", default="base", help="legend label of the base line (e.g. BC, waypoint)")
    ap.add_argument("--title", default=None, help="plot title (default: the task)")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluation import seed_curve

    if not args.run and not args.keep:
        raise SystemExit("residual_curves: give at least one --run or --keep")
    curves = kept_curves(args.keep)
    for label, dirs in parse_runs(args.run).items():
        if label in curves:
            raise SystemExit(f"residual_curves: {label!r} is both kept and run; give it one source")
        rows = [read_eval(d) for d in dirs]
        curves[label] = {"runs": [str(d) for d in dirs], "success_rate": seed_curve(rows, "success_rate"),
                         "mean_steps_success": seed_curve(rows, "mean_steps_success"),
                         "wall_s": [r[-1]["wall_s"] for r in rows]}
    base, base_steps, task = args.base_success, None, None
    if args.base_from:
        summary = json.loads((Path(args.base_from) / "summary.json").read_text())
        task = summary["task"]
        if base is None:
            base = summary["base_only"]["success_rate"]
        base_steps = summary["base_only"].get("mean_steps_success")

    fig, (ax, ax_len) = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
    for label, c in curves.items():
        seeds = len(c["runs"])
        name = f"{label} ({seeds} seeds)" if seeds > 1 else label
        for axis, key in ((ax, "success_rate"), (ax_len, "mean_steps_success")):
            pts = c[key]
            x = [p["frames"] for p in pts]
            (line,) = axis.plot(x, [p["mean"] for p in pts], marker="o", ms=3, label=name)
            if seeds > 1:
                axis.fill_between(x, [p["low"] for p in pts], [p["high"] for p in pts], color=line.get_color(), alpha=0.2, lw=0)
    if base is not None:
        ax.axhline(base, color="k", ls="--", lw=1, label=args.base_label)
    if base_steps is not None:
        ax_len.axhline(base_steps, color="k", ls="--", lw=1, label=args.base_label)
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax_len.set_ylabel("mean steps of successful episodes")
    for axis in (ax, ax_len):
        axis.set_xlabel("training frames (environment steps)")
        axis.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax_len.legend(loc="upper right", fontsize=8)
    fig.suptitle(args.title or task or "")
    fig.tight_layout()
    fig.savefig(args.out)
    report = {"png": args.out, "base_success": base, "base_mean_steps_success": base_steps,
              "machine": machine("numpy", "torch", "matplotlib"), "curves": curves}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
