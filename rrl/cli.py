"""`rrl`: one command line for the runtime, the simulations and training.

Each subcommand lives in `rrl/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`; the table below is the whole list. Command modules import
their heavy dependencies inside `run`, so `rrl --help` stays fast.

An output that cannot be written (`training.output.OutputError`: full disk, read-only
directory) or a run whose checkpoints cannot be resumed (`training.checkpoint.CheckpointError`)
ends the command with one line on standard error naming the path and why, and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "expert": ("rrl.commands.expert", "run a task's scripted expert headless and report its success"),
    "record": ("rrl.commands.record", "record demonstrations (expert, keyboard or a running ROS 2 stack) to a rosbag2/MCAP bag"),
    "train": ("rrl.commands.train", "train a policy offline (bc, ...) from demonstrations"),
    "export": ("rrl.commands.export", "export a training run's best checkpoint as a policy artifact (ONNX + policy.yaml)"),
    "eval": ("rrl.commands.eval", "evaluate a base (waypoint or artifact) plus optional residual on held-out seeds"),
    "launch": ("rrl.commands.launch", "run a ROS 2 YAML launch file (e.g. the UR5 stack) and report success and loop metrics"),
    "switch": ("rrl.commands.switch", "swap the base controller of a running control node (SetParametersAtomically service)"),
    "demo": ("rrl.commands.demo", "the main job: base vs base + residual through the ROS 2 stack, a live swap, a table, "
                                  "a plot and a video"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rrl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        cmd = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    from training.checkpoint import CheckpointError
    from training.output import OutputError

    args = build_parser().parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (OutputError, CheckpointError) as e:
        print(f"rrl {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
