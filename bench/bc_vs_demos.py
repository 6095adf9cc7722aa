"""BC success rate against the number of demonstrations, per task (like RRLfD Fig. 3).

For each task and each demo count N: record N expert demos (`rrl record`, seeds from
DEMO_SEED_BASE), train BC (`rrl train bc`, the epoch with the lowest validation loss), export the
artifact and evaluate it on held-out seeds (`rrl eval`, from EVAL_SEED_BASE). Everything goes
through the same command-line entry points a user runs. Writes a PNG plot and prints ONE JSON
object with every point and a "machine" record.

Defaults fit the 2-core CI machine: the `state` variant (an MLP on the full state; seconds per
model). `--obs depth+proprio --camera-px 64` runs the image network, which takes minutes per point
here.

    nice .venv/bin/python bench/bc_vs_demos.py --out bench/results/bc_vs_demos.png \\
        [--tasks ur5_pick ur5_bowl ur5_push] [--demos 2 5 10 20 40] [--episodes 100] [--obs state]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import machine


ROOT = Path(__file__).resolve().parents[1]




def rrl_json(argv: list[str]) -> dict:
    """Run one `rrl ... --json` command in-process and return its JSON line."""
    from rrl.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv + ["--json"])
    if code != 0:
        raise RuntimeError(f"rrl {' '.join(argv)} exited {code}")
    return json.loads([line for line in out.getvalue().splitlines() if line.startswith("{")][-1])


def plot(points: list[dict], tasks: list[str], episodes: int, obs: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(5, 3.5))
    all_x = sorted({p["demos"] for p in points})
    for task in tasks:
        xs = sorted({p["demos"] for p in points if p["task"] == task})
        ys = [float(np.mean([p["success_rate"] for p in points if p["task"] == task and p["demos"] == x])) for x in xs]
        ax.plot(xs, ys, marker="o", label=task)
    ax.set_xscale("log")
    ax.set_xticks(all_x)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("demonstrations")
    ax.set_ylabel(f"BC success ({episodes} held-out seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"BC ({obs}) vs number of demos")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["ur5_pick", "ur5_bowl", "ur5_push"])
    ap.add_argument("--demos", nargs="+", type=int, default=[2, 5, 10, 20, 40], help="demo counts N")
    ap.add_argument("--episodes", type=int, default=100, help="held-out evaluation episodes per point")
    ap.add_argument("--obs", default="state", choices=["state", "proprio", "depth", "depth+proprio"])
    ap.add_argument("--camera-px", type=int, default=64, help="camera resolution for the image variants")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per point (mean reported)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "bc_vs_demos.png"), help="PNG to write")
    ap.add_argument("--work", default=None, help="directory for bags/runs (default: a temporary one)")
    ap.add_argument("--replot", default=None, metavar="JSON", help="only redraw the PNG from a previous run's JSON output")
    args = ap.parse_args()
    if args.replot:
        previous = json.loads(Path(args.replot).read_text())
        plot(previous["points"], sorted({p["task"] for p in previous["points"]}), previous["episodes"], previous["obs"], Path(args.out))
        return 0

    images = args.obs.startswith("depth")
    points = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        for task in args.tasks:
            for n in args.demos:
                bag = work / f"{task}_{n}"
                if not bag.exists():
                    rrl_json(["record", "--task", task, "--source", "expert", "--episodes", str(n), "--out", str(bag),
                              "--camera-px", str(args.camera_px if images else 0)])
                rates = []
                for seed in range(args.seeds):
                    run, art = work / f"run_{task}_{n}_{args.obs}_{seed}", work / f"art_{task}_{n}_{args.obs}_{seed}"
                    t0 = time.monotonic()
                    rrl_json(["train", "bc", "--task", task, "--demos", str(bag), "--obs", args.obs, "--out", str(run),
                              "--epochs", str(args.epochs), "--seed", str(seed), "--export", str(art)])
                    train_s = time.monotonic() - t0
                    res = rrl_json(["eval", "--task", task, "--base", str(art), "--episodes", str(args.episodes)])
                    rates.append(res["success_rate"])
                    points.append({"task": task, "demos": n, "seed": seed, "success_rate": res["success_rate"],
                                   "mean_steps_success": res["mean_steps_success"], "train_s": round(train_s, 1)})
                print(f"{task} N={n}: success {sum(rates) / len(rates):.2f}", flush=True)

    out = Path(args.out)
    plot(points, args.tasks, args.episodes, args.obs, out)
    print(json.dumps({"bench": "bc_vs_demos", "obs": args.obs, "episodes": args.episodes, "epochs": args.epochs,
                      "points": points, "plot": str(out), "wall_s": round(time.monotonic() - start, 1),
                      "machine": machine("numpy", "torch", "onnxruntime", "pybullet")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
