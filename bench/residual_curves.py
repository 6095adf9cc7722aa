"""Success rate over training frames: residual vs BC vs DMPO from scratch vs fine-tuning (RRLfD Fig. 5).

Reads the `eval.csv` of `rrl train residual` runs (frames, success_rate on held-out seeds,
written at every periodic evaluation) and draws one curve per run; the base's success
(measured through the runtime on held-out seeds, from the residual run's `summary.json`,
or given with --base-success) is a horizontal line. Writes a PNG and prints one JSON object.

    .venv/bin/python bench/residual_curves.py \
        --run residual=runs/dmpo_pick_bc --run scratch=runs/dmpo_pick_scratch \
        --run fine-tuning=runs/dmpo_pick_finetune --base-from runs/dmpo_pick_bc --base-label BC \
        --out bench/residual_curves_ur5_pick.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from machine_info import machine





def read_curve(run: Path) -> dict:
    """frames, success_rate, mean_steps_success, wall_s lists from RUN/eval.jsonl (training.harness)."""
    from training.harness import read_eval_log

    rows = read_eval_log(run)
    if not rows:
        raise SystemExit(f"residual_curves: {run} holds no evaluation (not an `rrl train residual` run, or none yet)")
    return {"frames": [int(r["frames"]) for r in rows], "success_rate": [float(r["success_rate"]) for r in rows],
            "mean_steps_success": [r.get("mean_steps_success") for r in rows], "wall_s": [float(r["wall_s"]) for r in rows]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", help="a run to plot (repeatable)")
    ap.add_argument("--base-from", default=None, metavar="DIR", help="residual run whose summary.json has the base's held-out success")
    ap.add_argument("--base-success", type=float, default=None, help="base success rate to draw (overrides --base-from)")
    ap.add_argument("--base-label", default="base", help="legend label of the base line (e.g. BC, waypoint)")
    ap.add_argument("--title", default=None, help="plot title (default: the task)")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for item in args.run:
        if "=" not in item:
            raise SystemExit(f"residual_curves: --run expects LABEL=DIR, got {item!r}")
        label, run = item.split("=", 1)
        curves[label] = read_curve(Path(run))
    base = args.base_success
    task = None
    if base is None and args.base_from:
        summary = json.loads((Path(args.base_from) / "summary.json").read_text())
        base, task = summary["base_only"]["success_rate"], summary["task"]

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, c in curves.items():
        ax.plot(c["frames"], c["success_rate"], marker="o", ms=3, label=label)
    if base is not None:
        ax.axhline(base, color="k", ls="--", lw=1, label=args.base_label)
    ax.set_xlabel("training frames (environment steps)")
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(args.title or task or "")
    fig.tight_layout()
    fig.savefig(args.out)
    report = {"png": args.out, "base_success": base, "machine": machine("numpy", "torch", "matplotlib"),
              "runs": {k: {"final_frames": v["frames"][-1], "final_success_rate": v["success_rate"][-1],
                           "best_success_rate": max(v["success_rate"]), "wall_s": v["wall_s"][-1]} for k, v in curves.items()}}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
