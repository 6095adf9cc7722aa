"""`rrl expert`: run a task's scripted expert headless over seeded episodes."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name, e.g. ur5_pick")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed + i")
    p.add_argument("--variant", default=None, help="expert variant (e.g. a deliberately suboptimal one)")
    p.add_argument("--noise-std", type=float, default=0.0, help="Gaussian noise on the expert's linear velocity, m/s")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def run(args: argparse.Namespace) -> int:
    from policies.experts import make_expert
    from sim_bridge import make_task
    from training.evaluation import evaluate, ExpertPolicy

    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    try:  # an unknown task or variant, or a variant's learned primitive that is missing: one line
        expert = make_expert(args.task, variant=args.variant, noise_std=args.noise_std)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"rrl expert: {e.args[0] if e.args else e}") from None
    task = make_task(args.task)
    try:
        policy = ExpertPolicy(expert, task.spec)
        result = evaluate(task, policy, episodes=args.episodes, seed=args.seed, progress=not args.json)
    finally:
        task.close()
    report = {"task": args.task, "variant": args.variant, **result.summary()}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.task}: success {report['success_rate']:.2f} over {report['episodes']} episodes, "
              f"mean steps on success {report['mean_steps_success']}")
    return 0
