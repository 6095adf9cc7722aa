"""`rrl train req`: REQ (or CRR) from a task's waypoint expert, with intertwined exploration.

    rrl train req --task ur5_bowl --mode rlfse --expert-variant no_retry --expert-noise-std 0.15 \
        --frames 60000 --out runs/req_bowl

Resumes from the newest complete checkpoint in RUN/checkpoints/ when there is one (same options).
`rrl export RUN --out DIR` then writes the req_prior (or residual) artifact.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name, e.g. ur5_bowl")
    p.add_argument("--mode", choices=["rlfse", "rlfd"], default="rlfse",
                   help="exploration: rlfse (intertwining 0.5, expert 0.75) or rlfd (expert episodes 0.25)")
    p.add_argument("--algo", choices=["req", "crr"], default="req", help="req (REQ operator) or crr (TD(0) operator)")
    # options below default to None: unset, they keep the --config file's value (or the TrainConfig default)
    p.add_argument("--residual", action="store_true", default=None,
                   help="learn a residual on top of the expert instead of a full policy")
    p.add_argument("--residual-scale", type=float, default=None, help="residual range as a fraction of the action half-range")
    p.add_argument("--expert-variant", default=None, help="expert variant, e.g. no_retry")
    p.add_argument("--expert-noise-std", type=float, default=None, help="Gaussian noise on the expert's linear velocity, m/s")
    p.add_argument("--acting", choices=["prior", "importance"], default=None,
                   help="act with the prior (mean at evaluation) or the importance-sampled policy softmax(Q/eta)")
    p.add_argument("--frames", type=int, required=True, help="environment steps to collect")
    p.add_argument("--out", required=True, help="run directory (checkpoints/, TensorBoard, eval.jsonl, summary.json)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--config", default=None, help="YAML file with TrainConfig fields (learner: {...}); flags override task/mode/algo/frames")
    p.add_argument("--eval-every", type=int, default=None, help="frames between evaluations")
    p.add_argument("--eval-episodes", type=int, default=None, help="held-out episodes per evaluation")
    from rrl.config_args import add_config_arguments
    from training.harness import RunOptions

    add_config_arguments(p, RunOptions)  # --device, --workers, --ray-address, --broadcast-every-updates, --max-wall-s, --progress
    p.add_argument("--json", action="store_true", help="print one JSON object (the run summary) as the last line")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from training.output import writing
    from training.req.train import TrainConfig, train

    base = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    learner = dict(base.get("learner", {}))
    learner["operator"] = "req" if args.algo == "req" else "td0"
    if args.acting is not None:
        learner["acting"] = args.acting
    if args.mode == "rlfd":
        learner["expert_action_improvement"] = False
    cfg = {**base, "task": args.task, "mode": args.mode, "frames": args.frames, "learner": learner}
    for key in ("residual", "residual_scale", "expert_variant", "expert_noise_std", "seed"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.eval_every is not None:
        cfg["eval_every_frames"] = args.eval_every
    if args.eval_episodes is not None:
        cfg["eval_episodes"] = args.eval_episodes
    from rrl.config_args import ConfigError, config_from_args
    from training.harness import RunOptions

    try:
        config = TrainConfig.from_dict(cfg)
        options = config_from_args(RunOptions, args)
    except (TypeError, ValueError, ConfigError) as e:
        raise SystemExit(f"rrl train req: bad configuration: {e}")
    try:
        with writing(args.out):
            summary = train(config, args.out, options=options)
    except ValueError as e:
        raise SystemExit(f"rrl train req: {e}") from None
    short = {k: v for k, v in summary.items() if k != "history"}
    print(json.dumps(short) if args.json else f"{args.out}: {short}")
    return 0
