"""`rrl train bc`: behavioural cloning of a base policy (training/bc/train.py), resumable.

    rrl train bc --task ur5_pick --demos demos/pick64 --obs depth+proprio --epochs 15 --out runs/bc_pick

Every flag but --out, --config, --export and --json is a field of `BCConfig` (its docstring is the
help) or of the shared `RunOptions` (--device, --workers, ...); `--config YAML` holds BCConfig
fields, the flags given override it (`rrl.config_args`). Running the same command again on an
existing --out continues a killed run where it stopped; another config is refused, naming the
fields. BC trains from a dataset, so `--workers` above 0 is refused.

Exit status 2, one line on standard error: a bad flag or config file, an unusable --device,
--workers > 0, a run directory that cannot be resumed with this config, an output that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rrl.config_args import add_config_arguments
    from training.bc.config import BCConfig
    from training.harness import RunOptions

    p.add_argument("--out", required=True, help="run directory (config.yaml, checkpoints/, best.pt, eval.jsonl, "
                                                "summary.json, tb/, run.yaml)")
    p.add_argument("--config", default=None, metavar="YAML", help="YAML file of BCConfig fields; flags given override it")
    add_config_arguments(p, BCConfig)
    add_config_arguments(p.add_argument_group("run options"), RunOptions)
    p.add_argument("--export", default=None, metavar="DIR", help="also export the best epoch as an artifact to DIR")
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary object as the last line (no progress bar unless --progress)")


def _refuse(message: str) -> int:
    print(f"rrl train bc: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from rrl.commands.train import run_options
    from rrl.config_args import ConfigError, config_from_args
    from training.bc.config import BCConfig
    from training.harness import RunDirError

    try:
        config = config_from_args(BCConfig, args, args.config)
        options = run_options(args)
    except ConfigError as e:
        return _refuse(str(e))
    if options.workers:
        return _refuse(f"--workers {options.workers}: BC trains from a dataset and has no rollouts to run on "
                       "workers; use --workers 0")

    from training.bc.train import export_run, train
    from training.device import DeviceError
    from training.output import writing

    try:
        with writing(args.out):
            summary = train(config, args.out, options)
    except (DeviceError, RunDirError) as e:
        return _refuse(str(e))
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"rrl train bc: {e}") from None
    if args.export:
        if summary["best_epoch"] < 0:
            return _refuse(f"--export {args.export}: no epoch finished yet in {args.out}; run the command again")
        with writing(args.export):
            artifact = export_run(args.out, args.export, overwrite=True)
        summary["artifact"] = str(artifact.path)
    summary.pop("history", None)
    if args.json:
        print(json.dumps(summary))
    else:
        best = summary["best_val_loss"]
        state = "" if summary["finished"] else f", stopped after {summary['epochs_done']} epochs (same command resumes)"
        print(f"best epoch {summary['best_epoch']} (val loss {best:.4f}){state}; {summary['updates_per_s']} steps/s "
              f"on {summary['device']}; run in {args.out}" if best is not None
              else f"no epoch finished yet{state}; run in {args.out}")
    return 0
