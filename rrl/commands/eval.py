"""`rrl eval`: success of a base (+ residual) on held-out seeds, headless.

`--base` is `waypoint`, `waypoint:VARIANT` or a policy artifact directory (bc, or a REQ/CRR prior);
`--residual` an optional residual artifact trained on that base. Seeds start at
`training.evaluation.EVAL_SEED_BASE` by default, away from the seeds demos are recorded with.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from training.evaluation import EVAL_SEED_BASE

    p.add_argument("--task", required=True, help="task name, e.g. ur5_pick")
    p.add_argument("--base", required=True, help="waypoint | waypoint:VARIANT | ARTIFACT_DIR")
    p.add_argument("--residual", default=None, metavar="ARTIFACT_DIR", help="residual artifact to add to the base")
    p.add_argument("--episodes", type=int, default=100, help="number of episodes")
    p.add_argument("--seed", type=int, default=EVAL_SEED_BASE,
                   help=f"seed of the first episode (default EVAL_SEED_BASE = {EVAL_SEED_BASE}); episode i uses seed + i")
    p.add_argument("--record-metrics", action="store_true",
                   help="store the measured success in the evaluated artifact's policy.yaml (metrics): "
                        "the residual's when there is one, else the learned base's")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    import time

    from policies.artifact import ArtifactError, update_metrics
    from policies.runtime import camera_for_artifacts, load_policy
    from sim_bridge import make_task
    from training.evaluation import DEMO_SEED_BASE, EVAL_SEED_BASE, evaluate

    if args.episodes < 1:
        raise SystemExit("rrl eval: --episodes must be >= 1")
    if args.seed < EVAL_SEED_BASE:
        print(f"warning: seeds from {args.seed} may overlap demonstration seeds (from {DEMO_SEED_BASE}); "
              f"held-out seeds start at {EVAL_SEED_BASE}", flush=True)
    try:
        camera = camera_for_artifacts(args.base, args.residual)
        task = make_task(args.task, camera=camera)
    except (ArtifactError, KeyError) as e:
        raise SystemExit(f"rrl eval: {e}") from None
    try:
        try:
            policy = load_policy(task.spec, args.base, args.residual)
        except (ArtifactError, KeyError) as e:
            raise SystemExit(f"rrl eval: {e}") from None
        start = time.monotonic()
        result = evaluate(task, policy, episodes=args.episodes, seed=args.seed, progress=not args.json)
        wall_s = time.monotonic() - start
    finally:
        task.close()
    report = {"task": args.task, "base": args.base, "residual": args.residual, **result.summary(),
              "seed": args.seed, "wall_s": round(wall_s, 2)}
    # the evaluated artifact is the residual when there is one (on its base), else a learned base
    evaluated = args.residual if args.residual is not None else None if args.base.startswith("waypoint") else args.base
    if args.record_metrics and evaluated is not None:
        residual_flag = f" --residual {args.residual}" if args.residual is not None else ""
        update_metrics(evaluated, {"success_rate": report["success_rate"], "episodes": report["episodes"],
                                   "mean_steps_success": report["mean_steps_success"], "eval_seed": args.seed,
                                   "command": f"rrl eval --task {args.task} --base {args.base}{residual_flag} "
                                              f"--episodes {args.episodes} --seed {args.seed} --json"})
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.task} base {args.base}" + (f" + residual {args.residual}" if args.residual else "")
              + f": success {report['success_rate']:.2f} over {report['episodes']} episodes, "
                f"mean steps on success {report['mean_steps_success']}")
    return 0
