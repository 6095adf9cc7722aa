"""`rrl train residual --algo dmpo`: residual RL (RRLfD) on a frozen base, or DMPO from scratch.

Running the same command again on an existing --out continues the run from its last checkpoint
(networks, optimisers, duals, counters and the whole replay buffer); the budget (--frames) and
the evaluation/checkpoint cadence may change, any other difference in configuration is refused.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from training.dmpo.learner import DMPOConfig
    from training.dmpo.train import TrainConfig

    d, t = DMPOConfig(), TrainConfig()
    p.add_argument("--algo", default="dmpo", choices=["dmpo"], help="RL algorithm of the residual")
    p.add_argument("--task", required=True, help="task name, e.g. ur5_pick")
    p.add_argument("--base", required=True,
                   help="waypoint | waypoint:VARIANT | BC_ARTIFACT_DIR | none (DMPO from scratch, same inputs without u)")
    p.add_argument("--frames", type=int, required=True, help="environment steps to train for")
    p.add_argument("--out", required=True, help="run directory (run.yaml, eval.csv, tb/, checkpoint/, artifact/)")
    p.add_argument("--finetune", action="store_true",
                   help="baseline: train the BC base's own output layer with DMPO, no base action (--base must be a bc artifact)")
    p.add_argument("--residual-scale", type=float, default=0.1, help="c of RRLfD eq. 6: residual = c * sigma(A) * z")
    p.add_argument("--init-std", type=float, default=d.init_std, help="initial policy std in normalised units (Sigma diagonal)")
    p.add_argument("--init-log-temperature", type=float, default=d.init_log_temperature,
                   help="initial softplus parameter of the E-step temperature eta (Acme: 10; lower starts learning sooner)")
    p.add_argument("--init-log-alpha-mean", type=float, default=d.init_log_alpha_mean,
                   help="initial softplus parameter of the mean-KL multiplier (Acme: 10)")
    p.add_argument("--eval-every", type=int, default=t.eval_every_frames, help="frames between evaluations on held-out seeds")
    p.add_argument("--eval-episodes", type=int, default=50, help="held-out episodes per periodic evaluation")
    p.add_argument("--final-eval-episodes", type=int, default=100, help="held-out episodes of the final base vs residual comparison")
    p.add_argument("--stats-episodes", type=int, default=20, help="base-only episodes measuring normalisation statistics")
    p.add_argument("--batch-size", type=int, default=t.batch_size, help="transitions per learner update")
    p.add_argument("--frames-per-update", type=int, default=t.frames_per_update, help="environment steps per learner update")
    p.add_argument("--min-replay", type=int, default=t.min_replay, help="stored steps before learning starts")
    p.add_argument("--n-step", type=int, default=t.n_step, help="n of the n-step return")
    p.add_argument("--lr", type=float, default=d.policy_lr, help="policy and critic Adam learning rate")
    p.add_argument("--checkpoint-every", type=int, default=t.checkpoint_every_frames, help="frames between checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed of networks, exploration and training episodes")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")
    from rrl.config_args import add_config_arguments
    from training.harness import RunOptions

    add_config_arguments(p, RunOptions)  # --device, --workers, --ray-address, --broadcast-every-updates, --max-wall-s, --progress


BUDGET_KEYS = {"frames", "eval_every_frames", "checkpoint_every_frames", "eval_episodes", "final_eval_episodes", "torch_threads"}
"""Settings a resumed run may change: the budget and how often it is measured, not what it learns."""


def _learning_config(d: dict) -> dict:
    top = {k: v for k, v in d.items() if k not in BUDGET_KEYS and k != "train"}
    return {**top, "train": {k: v for k, v in d["train"].items() if k not in BUDGET_KEYS}}


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from training.dmpo.learner import DMPOConfig
    from training.dmpo.run_residual import ResidualRunConfig, train_residual
    from training.dmpo.train import TrainConfig, checkpoint_store
    from training.output import writing

    try:
        learner = DMPOConfig(init_std=args.init_std, policy_lr=args.lr, critic_lr=args.lr,
                             init_log_temperature=args.init_log_temperature, init_log_alpha_mean=args.init_log_alpha_mean)
        train = TrainConfig(frames=args.frames, batch_size=args.batch_size, n_step=args.n_step, min_replay=args.min_replay,
                            frames_per_update=args.frames_per_update, eval_every_frames=args.eval_every,
                            checkpoint_every_frames=args.checkpoint_every, seed=args.seed, torch_threads=args.threads,
                            learner=learner)
        config = ResidualRunConfig(task=args.task, base=args.base, residual_scale=args.residual_scale, finetune=args.finetune,
                                   stats_episodes=args.stats_episodes, eval_episodes=args.eval_episodes,
                                   final_eval_episodes=args.final_eval_episodes, train=train)
        from rrl.config_args import config_from_args
        from training.harness import RunOptions

        options = config_from_args(RunOptions, args)
    except ValueError as e:
        raise SystemExit(f"rrl train residual: {e}") from None
    out = Path(args.out)
    resume = bool(checkpoint_store(out).candidates())  # a run of the previous layout: CheckpointError (exit 2)
    if resume:
        saved = yaml.safe_load((out / "run.yaml").read_text())["config"]
        if _learning_config(yaml.safe_load(yaml.safe_dump(config.to_dict()))) != _learning_config(saved):
            raise SystemExit(f"rrl train residual: {out} holds a run with another configuration; use a new --out")
        print(f"resuming {out} from its checkpoint", flush=True)
    try:
        with writing(out):
            summary = train_residual(config, out, resume=resume, progress=not args.json, options=options)
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"rrl train residual: {e}") from None
    if args.json:
        print(json.dumps(summary))
    else:
        print(json.dumps(summary, indent=1))
    return 0
