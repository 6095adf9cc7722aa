"""`rrl train ALGO ...`: offline training. One module per algorithm, listed in the table below.

Each module has `add_arguments(parser)` and `run(args) -> int`, like the top-level commands;
imports of torch and the trainers happen inside `run`.
"""

from __future__ import annotations

import argparse
import importlib

# algorithm -> (module, one-line help)
TRAINERS: dict[str, tuple[str, str]] = {
    "bc": ("rrl.commands.train_bc", "behavioural cloning of a base policy from demonstration bags (RRLfD)"),
    "residual": ("rrl.commands.train_residual", "residual RL (DMPO) on a frozen base, or DMPO from scratch (--base none)"),
    "req": ("rrl.commands.train_req", "REQ / CRR from a task's waypoint expert with intertwined exploration (RLfSE, RLfD)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="algo", required=True, metavar="ALGO")
    for name, (module, help_text) in TRAINERS.items():
        q = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(q)
        q.set_defaults(_trainer=module)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._trainer).run(args) or 0)


def run_options(args: argparse.Namespace):
    """The shared `RunOptions` of a trainer's command line (`--device`, `--workers`, ...); `--json` without
    `--progress` turns the progress bar off, so the summary is all that is printed. ConfigError if invalid."""
    import dataclasses

    from rrl.config_args import config_from_args
    from training.harness import RunOptions

    options = config_from_args(RunOptions, args)
    if getattr(args, "json", False) and not hasattr(args, "progress"):
        options = dataclasses.replace(options, progress=False)
    return options
