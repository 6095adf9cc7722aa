"""`rrl train residual --algo dmpo`: residual RL (RRLfD) on a frozen base, or DMPO from scratch.

    rrl train residual --algo dmpo --task ur5_pick --base policies/pretrained/bc_ur5_pick_state6 \
        --residual-scale 0.33 --init-std 0.33 --frames 60000 --out runs/res_pick_bc

Every flag but --algo, --out, --config and --json is a field of `ResidualRunConfig` (its docstring
is the help; the loop's `train.*` and the learner's `train.learner.*` fields have flat flags:
`--frames`, `--init-std`) or of the shared `RunOptions` (--device, --workers, ...). `--config YAML`
holds ResidualRunConfig fields nested as in the run's `run.yaml` (`train: {learner: {...}}`); the
flags given override it (`rrl.config_args`).

Running the same command again on an existing --out continues the run from its last checkpoint
(networks, optimisers, duals, counters and the whole replay buffer); the budget (--frames) and
the evaluation/checkpoint cadence may change, any other difference in configuration is refused.

Exit status 2, one line on standard error: a bad flag or config file, an unusable --device, a run
directory that cannot be resumed with this config, an output that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys

FLAT = ("train", "train.learner")
"""Nested configs whose fields have flat flags (`--frames`, not `--train.frames`)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rrl.config_args import add_config_arguments
    from training.dmpo.config import ResidualRunConfig
    from training.harness import RunOptions

    p.add_argument("--algo", default="dmpo", choices=["dmpo"], help="RL algorithm of the residual")
    p.add_argument("--out", required=True, help="run directory (run.yaml, config.yaml, stats.json, eval.jsonl, tb/, "
                                                "checkpoints/, artifact/, summary.json)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="YAML file of ResidualRunConfig fields (nested as in run.yaml); flags given override it")
    add_config_arguments(p, ResidualRunConfig, flatten=FLAT)
    add_config_arguments(p.add_argument_group("run options"), RunOptions)
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")


BUDGET_KEYS = {"frames", "eval_every_frames", "checkpoint_every_frames", "eval_episodes", "final_eval_episodes", "torch_threads"}
"""Settings a resumed run may change: the budget and how often it is measured, not what it learns."""


def _refuse(message: str) -> int:
    print(f"rrl train residual: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from rrl.commands.train import run_options
    from rrl.config_args import ConfigError, config_from_args
    from training.dmpo.config import ResidualRunConfig

    try:
        config = config_from_args(ResidualRunConfig, args, args.config)
        options = run_options(args)
    except ConfigError as e:
        return _refuse(str(e))

    from training.dmpo.run_residual import train_residual
    from training.dmpo.train import checkpoint_store
    from training.device import DeviceError
    from training.harness import RunDirError, config_differences
    from training.output import writing

    out = Path(args.out)
    resume = bool(checkpoint_store(out).candidates())  # a run of a previous layout: CheckpointError, exit 2
    if resume:
        saved = yaml.safe_load((out / "run.yaml").read_text())["config"]
        try:
            differences = config_differences(saved, config.to_dict(), lambda d: ResidualRunConfig.from_dict(d).to_dict(),
                                             frozenset(BUDGET_KEYS), where=str(out / "run.yaml"))
        except RunDirError as e:
            return _refuse(str(e))
        if differences:
            return _refuse(f"{out} holds a run with another configuration; these fields differ: "
                           + "; ".join(differences[:8]) + " (use the same options or a new --out)")
        print(f"resuming {out} from its checkpoint", flush=True)
    try:
        with writing(out):
            summary = train_residual(config, out, resume=resume, progress=options.progress, options=options)
    except (DeviceError, RunDirError) as e:
        return _refuse(str(e))
    except (ValueError, KeyError, FileNotFoundError) as e:
        raise SystemExit(f"rrl train residual: {e}") from None
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))
    return 0
