"""Success over frames of REQfSE, REQfD and CRRfSE runs, with the expert's success as a line (REQ paper, Fig. 3).

Reads the runs' `eval.jsonl` (periodic evaluations on held-out seeds from EVAL_SEED_BASE, written by
`rrl train req`), measures the expert alone on the same seeds (or takes --expert-success), writes a
PNG and prints ONE JSON object: per run the curve, final success, frames, wall time; the expert's
success; the machine record.

    python bench/req_curves.py --task ur5_bowl --expert-variant no_retry --expert-noise-std 0.15 \
        --run REQfSE=runs/req_bowl_rlfse --run REQfD=runs/req_bowl_rlfd --run CRRfSE=runs/crr_bowl_rlfse \
        --expert-episodes 100 --out bench/req_curves_ur5_bowl.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from machine_info import machine





def read_curve(run_dir: Path) -> list[dict]:
    """The run's evaluations. `rrl train req` rewrites eval.jsonl from the checkpointed history when it
    resumes, so eval.jsonl is the run as it stands; summary.json's history (written when a process stops)
    replaces it only when it reaches as far (eval.jsonl files of older versions kept the evaluations of a
    process killed after its last checkpoint, a lost branch of the run)."""
    path = run_dir / "eval.jsonl"
    if not path.exists():
        raise SystemExit(f"{run_dir}: no eval.jsonl (not a `rrl train req` run?)")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    summary = run_dir / "summary.json"
    history = json.loads(summary.read_text()).get("history") if summary.exists() else None
    if history and (not lines or history[-1]["frames"] >= max(e["frames"] for e in lines)):
        return history
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True)
    p.add_argument("--expert-variant", default=None)
    p.add_argument("--expert-noise-std", type=float, default=0.0)
    p.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", help="a run to plot (repeatable)")
    p.add_argument("--expert-success", type=float, default=None, help="skip measuring the expert; use this rate")
    p.add_argument("--expert-episodes", type=int, default=100)
    p.add_argument("--out", default="bench/req_curves.png")
    args = p.parse_args()

    runs = {}
    for item in args.run:
        if "=" not in item:
            raise SystemExit(f"--run wants LABEL=DIR, got {item!r}")
        label, run_dir = item.split("=", 1)
        curve = read_curve(Path(run_dir))
        # a run evaluates at its last frame when it stops, so the curve's end is the run's end
        runs[label] = {"dir": run_dir, "curve": [(e["frames"], e["success_rate"]) for e in curve],
                       "final_success": curve[-1]["success_rate"] if curve else None,
                       "frames": curve[-1]["frames"] if curve else 0,
                       "wall_s": curve[-1]["wall_s"] if curve else None,
                       "eval_episodes_per_point": None}
        cfg = Path(run_dir) / "config.yaml"
        if cfg.exists():
            import yaml
            run_config = yaml.safe_load(cfg.read_text()) or {}
            run_config = run_config.get("config", run_config)  # the harness's layout: {kind, config}
            runs[label]["eval_episodes_per_point"] = run_config.get("eval_episodes")
            runs[label]["residual"] = bool(run_config.get("residual", False))

    expert = {"success_rate": args.expert_success, "episodes": None}
    if args.expert_success is None:
        from controllers.experts import make_expert
        from sim_bridge import make_task
        from training.evaluation import EVAL_SEED_BASE
        from training.req.env import TaskEnv
        from training.req.train import evaluate_expert

        env = TaskEnv(make_task(args.task), make_expert(args.task, variant=args.expert_variant,
                                                        noise_std=args.expert_noise_std))
        try:
            expert = evaluate_expert(env, args.expert_episodes, seed=EVAL_SEED_BASE)
        finally:
            env.close()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, r in runs.items():
        xs, ys = zip(*r["curve"]) if r["curve"] else ((), ())
        # each point is a small evaluation (eval_episodes_per_point); the line is a centred 3-point mean
        smooth = [sum(ys[max(0, i - 1):i + 2]) / len(ys[max(0, i - 1):i + 2]) for i in range(len(ys))]
        (line,) = ax.plot(xs, smooth, label=f"{label} ({r['eval_episodes_per_point'] or '?'} eps/point, 3-pt mean)")
        ax.plot(xs, ys, "o", ms=3, alpha=0.35, color=line.get_color())
    ax.axhline(expert["success_rate"], color="k", ls="--",
               label=f"expert {args.expert_variant or 'default'}" + (f" +noise {args.expert_noise_std}" if args.expert_noise_std else "")
               + f" ({expert['success_rate']:.2f}" + (f", {expert['episodes']} eps)" if expert.get("episodes") else ")"))
    ax.set_xlabel("frames (environment steps)")
    ax.set_ylabel("success rate (held-out seeds)")
    ax.set_ylim(-0.02, 1.02)
    residual = {r.get("residual") for r in runs.values()}
    what = "a residual on" if residual == {True} else "a full policy from" if residual == {False} else "from"
    ax.set_title(f"{args.task}: REQ / CRR, {what} a suboptimal waypoint expert", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(json.dumps({"bench": "req_curves", "task": args.task, "expert_variant": args.expert_variant,
                      "expert_noise_std": args.expert_noise_std, "expert": expert, "runs": runs, "plot": args.out,
                      "machine": machine("numpy", "torch", "pybullet")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
