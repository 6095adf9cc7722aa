"""`rrl train req`: REQ (or CRR) from a task's waypoint expert, with intertwined exploration.

    rrl train req --task ur5_bowl --mode rlfse --expert-variant no_retry --expert-noise-std 0.15 \
        --frames 60000 --out runs/req_bowl

Every flag but --algo, --out, --config and --json is a field of `training.req.config.TrainConfig`
(its docstring is the help; the learner's `learner.*` fields have flat flags: `--acting`,
`--n-step`) or of the shared `RunOptions` (--device, --workers, ...). `--config YAML` holds
TrainConfig fields (`learner: {...}` nested); the flags given override it (`rrl.config_args`).
Two presets on top: `--algo crr` sets `learner.operator: td0` (CRR is REQ with the TD(0)
operator), and `--mode rlfd` or `--mode scratch` turns off the expert-action improvement (eq. 4) unless
the file or `--expert-action-improvement` sets it: REQfD fits the prior to dataset actions only, and a
primitive learned from scratch never sees the expert.

Resumes from the newest complete checkpoint in RUN/checkpoints/ when there is one (same
configuration; another is refused, naming the fields). `rrl export RUN --out DIR` then writes the
req_prior (or residual) artifact.

Exit status 2, one line on standard error: a bad flag or config file, an unusable --device, a run
directory that cannot be resumed with this config, an output that cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys

FLAT = ("learner",)
"""Nested configs whose fields have flat flags (`--acting`, not `--learner.acting`)."""
OPERATOR_OF_ALGO = {"req": "req", "crr": "td0"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rrl.config_args import add_config_arguments
    from training.harness import RunOptions
    from training.req.config import TrainConfig

    p.add_argument("--algo", default=None, choices=sorted(OPERATOR_OF_ALGO),
                   help="preset: req (the REQ operator) or crr (learner.operator td0); default: the config's operator")
    p.add_argument("--out", required=True, help="run directory (config.yaml, run.yaml, checkpoints/, tb/, eval.jsonl, "
                                                "summary.json)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="YAML file of TrainConfig fields (learner: {...} nested); flags given override it")
    add_config_arguments(p, TrainConfig, flatten=FLAT)
    add_config_arguments(p.add_argument_group("run options"), RunOptions)
    p.add_argument("--json", action="store_true", help="print one JSON object (the run summary) as the last line")


def _refuse(message: str) -> int:
    print(f"rrl train req: {message}", file=sys.stderr)
    return 2


def config_values(args: argparse.Namespace) -> dict:
    """The TrainConfig fields of a command line: the file, the flags given, then the two presets (module docstring)."""
    from rrl.config_args import load_yaml_config, merge, overrides_from_args
    from training.req.config import TrainConfig

    values = merge(load_yaml_config(args.config) if args.config else {}, overrides_from_args(args, TrainConfig))
    learner = dict(values.get("learner") or {})
    if args.algo is not None:
        learner["operator"] = OPERATOR_OF_ALGO[args.algo]
    if values.get("mode") in ("rlfd", "scratch"):
        learner.setdefault("expert_action_improvement", False)
    return {**values, "learner": learner}


def run(args: argparse.Namespace) -> int:
    from rrl.commands.train import run_options
    from rrl.config_args import ConfigError, build_config
    from training.req.config import TrainConfig

    try:
        config = build_config(TrainConfig, config_values(args), f"--config {args.config}" if args.config else "TrainConfig")
        options = run_options(args)
    except ConfigError as e:
        return _refuse(str(e))

    from training.device import DeviceError
    from training.harness import RunDirError
    from training.output import writing
    from training.req.train import train

    try:
        with writing(args.out):
            summary = train(config, args.out, options=options)
    except (DeviceError, RunDirError) as e:
        return _refuse(str(e))
    except ValueError as e:
        raise SystemExit(f"rrl train req: {e}") from None
    short = {k: v for k, v in summary.items() if k != "history"}
    print(json.dumps(short) if args.json else f"{args.out}: {short}")
    return 0
