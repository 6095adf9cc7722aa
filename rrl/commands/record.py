"""`rrl record`: record demonstrations of a task to a rosbag2/MCAP bag (scripted expert or keyboard teleoperation).

The bag is a directory (`--out`) with `metadata.yaml` and one MCAP file per kept
episode; see `training/demos/bag.py` for the format and `training/demos/schema.py`
for the topics. Seeds come from the demonstration range (`training.seeds`, below the held-out
evaluation seeds). A full disk or a read-only --out ends the recording with one line naming the
path (exit 2); the episodes finished before it stay listed and readable.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="task name, e.g. ur5_pick")
    p.add_argument("--source", required=True, choices=["expert", "keyboard", "ros"],
                   help="who acts: the task's scripted expert (headless, fast), a person at this terminal, or a "
                        "running ROS 2 stack (`rrl launch ...`; start the recorder first)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to keep")
    p.add_argument("--out", required=True, help="bag directory to create (must not exist or be empty)")
    p.add_argument("--keep", choices=["successes", "failures"], default="successes",
                   help="'successes' keeps only successful episodes (default); 'failures' keeps failed ones too")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the first episode (default: training.seeds.DEMO_SEED_BASE = 0); then seed + 1, ... "
                        "(all below 1000000, where held-out evaluation seeds start)")
    p.add_argument("--camera-px", type=int, default=240,
                   help="square camera resolution in pixels; 0 records state only (no camera)")
    p.add_argument("--max-attempts", type=int, default=None,
                   help="expert source: stop after this many episodes were tried, keeping what was recorded, and "
                        "exit 0 (the report's 'requested' and 'stopped_at_max_attempts' say it fell short). "
                        "Default 3 x --episodes + 10, where running out is an error (exit 1; the bag is still "
                        "complete and usable)")
    p.add_argument("--variant", default=None, help="expert variant (expert source)")
    p.add_argument("--noise-std", type=float, default=0.0,
                   help="Gaussian noise on the expert's linear velocity, m/s (expert source)")
    p.add_argument("--compression", choices=["zstd", "lz4", "none"], default="zstd",
                   help="MCAP chunk compression")
    p.add_argument("--speed", type=float, default=0.05,
                   help="initial teleoperation tool speed, m/s (keyboard source; +/- change it)")
    p.add_argument("--namespace", default="", help="ros source: namespace of the stack's topics")
    p.add_argument("--timeout-s", type=float, default=None, help="ros source: stop recording after this many seconds")
    p.add_argument("--json", action="store_true", help="print one JSON summary object as the last line")


def run(args: argparse.Namespace) -> int:
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig
    from training.demos.bag import DemoBagWriter
    from training.demos.recording import AttemptCapReached
    from training.demos.schema import BagSpec
    from training.output import writing
    from training.seeds import DEMO_SEED_BASE, SeedRangeError, demo_episode_seed

    if args.episodes < 1:
        raise SystemExit("--episodes must be >= 1")
    if args.max_attempts is not None and (args.max_attempts < 1 or args.source != "expert"):
        raise SystemExit(f"--max-attempts applies to --source expert and must be >= 1, got {args.max_attempts} "
                         f"with --source {args.source}")
    if args.camera_px < 0 or 0 < args.camera_px < 8:
        raise SystemExit(f"--camera-px must be 0 (no camera) or >= 8, got {args.camera_px}")
    seed = DEMO_SEED_BASE if args.seed is None else args.seed
    try:
        demo_episode_seed(seed, 0)
    except SeedRangeError as e:
        raise SystemExit(f"--seed: {e}") from None
    camera = CameraConfig(width_px=args.camera_px, height_px=args.camera_px) if args.camera_px else None
    try:
        task = make_task(args.task, camera=camera if args.source != "ros" else None)
    except KeyError as e:
        raise SystemExit(str(e)) from None
    try:
        if args.source == "expert":
            act = _expert_policy(task, args)
        elif args.source == "keyboard":
            act = _keyboard_check(task, args)
        else:
            act = _ros_stack(task.spec, camera, args)
        try:
            with writing(args.out):
                writer = DemoBagWriter(args.out, BagSpec.from_task(task.spec, camera), source=args.source,
                                       compression=args.compression,
                                       custom_data={"rrl.seed": str(seed), "rrl.variant": str(args.variant),
                                                    "rrl.noise_std": str(args.noise_std)})
        except FileExistsError as e:
            raise SystemExit(str(e)) from None
        with writing(args.out), writer:
            summary = act(writer, seed)
    except AttemptCapReached as e:  # the default cap: fewer than asked is an error, the bag is kept
        raise SystemExit(f"rrl record: {e}. {args.out} holds the {len(e.summary.kept)} kept episodes, complete and "
                         f"usable; give --max-attempts to make such a stop intended") from None
    finally:
        task.close()
    report = {"task": args.task, "source": args.source, "out": args.out, **summary}
    if args.json:
        print(json.dumps(report))
    else:
        short = (f" of {report['requested']} asked (stopped at --max-attempts)"
                 if report.get("stopped_at_max_attempts") else "")
        print(f"{args.task}: kept {report['episodes']} episodes{short} ({report['kept_steps']} steps) in {args.out}; "
              f"{report['attempts']} attempted, success rate {report['success_rate']:.2f}", file=sys.stderr)
    return 0


def _expert_policy(task, args):
    """The expert recording loop, bound to its policy (built first so a task without an expert fails early)."""
    from policies.experts import make_expert
    from training.demos.recording import AttemptCapReached, record_policy
    from training.evaluation import ExpertPolicy

    try:
        policy = ExpertPolicy(make_expert(args.task, variant=args.variant, noise_std=args.noise_std), task.spec)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"--source expert: {e.args[0] if e.args else e}") from None

    def act(writer, seed) -> dict:
        try:
            summary = record_policy(task, policy, writer, episodes=args.episodes, seed=seed,
                                    keep_failures=args.keep == "failures", max_attempts=args.max_attempts,
                                    progress=not args.json, variant=args.variant, noise_std=args.noise_std)
        except AttemptCapReached as e:
            if args.max_attempts is None:
                raise
            return {**e.summary.to_dict(), "requested": args.episodes, "stopped_at_max_attempts": True}
        return {**summary.to_dict(), "requested": args.episodes, "stopped_at_max_attempts": False}

    return act


def _keyboard_check(task, args):
    """The keyboard session, after checking the task's actions can be driven from keys."""
    from training.demos.teleop import KeyboardTeleop, TeleopConfig, run_terminal_teleop

    config = TeleopConfig(speed_m_s=args.speed)
    try:
        KeyboardTeleop(task.spec, config)
    except ValueError as e:
        raise SystemExit(f"--source keyboard: {e}") from None

    def act(writer, seed) -> dict:
        return run_terminal_teleop(task, writer, episodes=args.episodes, seed=seed, config=config,
                                   keep_failures=args.keep == "failures").to_dict()

    return act


def _ros_stack(spec, camera, args):
    """Recording from the topics of a running stack (the task is only built for its spec)."""

    def act(writer, seed) -> dict:
        from rrl.ros_record import record_from_stack
        from training.demos.stream import StreamError

        try:
            return record_from_stack(writer, spec, camera=camera is not None, episodes=args.episodes,
                                     keep_failures=args.keep == "failures", namespace=args.namespace,
                                     timeout_s=args.timeout_s, progress=not args.json,
                                     image_hw=(camera.height_px, camera.width_px) if camera else None)
        except StreamError as e:
            raise SystemExit(f"--source ros: {e}") from None

    return act
