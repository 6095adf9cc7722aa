"""`rrl eval`: success of a base (+ residual) on held-out seeds, headless.

`--base` is `waypoint`, `waypoint:VARIANT`, `replay:BAG_DIR` (a recorded demo, replayed from each episode's
seed; a seed the bag did not record exits 2) or a policy artifact directory (bc, or a REQ/CRR prior);
`--residual` an optional residual artifact trained on that base. Seeds start at
`training.evaluation.EVAL_SEED_BASE` by default, away from the seeds demos are recorded with.

The episodes run `policies.runtime.ComposedPolicy`, the same base + residual + safety layer the
ROS control node runs; `--json` reports its counters (`safety`: NaN/Inf fallbacks, holds, clips,
base and residual errors). Bad input (an unknown task or variant, a path that is no artifact, a
negative seed, a video file that is not .mp4) exits 2 with one line that says what is wrong.

`--shift NAME` (repeatable) evaluates under an environment shift that training never saw
(`sim_bridge.shifts`: camera_moved, heavy, slippery, distractor) on the same seeds, whose layouts it
leaves as they are; the report names the shifts, and `--record-metrics` stores the result under
`metrics.shifts.<names>` (joined with `+`) without touching the nominal figures.

`--video FILE.mp4 [--video-episodes N]` records the first N episodes (default 1) from a fixed
third-person camera with an overlay (`sim_bridge.video.RecordingTask`, H.264): the episodes are
the ones that run without it (rendering reads the simulation, never steps it or draws from its
random numbers); `--json` adds `video` (path, episodes, frames) to the report.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sim_bridge.shifts import SHIFTS
    from training.evaluation import EVAL_SEED_BASE

    p.add_argument("--task", required=True, help="task name, e.g. ur5_pick")
    p.add_argument("--base", required=True, help="waypoint | waypoint:VARIANT | replay:BAG_DIR | ARTIFACT_DIR")
    p.add_argument("--residual", default=None, metavar="ARTIFACT_DIR", help="residual artifact to add to the base")
    p.add_argument("--episodes", type=int, default=100, help="number of episodes (>= 1)")
    p.add_argument("--seed", type=int, default=EVAL_SEED_BASE,
                   help=f"seed of the first episode (default EVAL_SEED_BASE = {EVAL_SEED_BASE}); episode i uses seed + i")
    p.add_argument("--shift", action="append", default=[], metavar="NAME",
                   help="evaluate under this environment shift (repeatable; sim_bridge.shifts): "
                        + "; ".join(f"{name}: {shift.description}" for name, shift in SHIFTS.items()))
    p.add_argument("--record-metrics", action="store_true",
                   help="store the measured success in the evaluated artifact's policy.yaml (metrics): "
                        "the residual's when there is one, else the learned base's")
    p.add_argument("--video", default=None, metavar="FILE.mp4",
                   help="record the first --video-episodes episodes to this H.264 file (third-person camera, overlay)")
    p.add_argument("--video-episodes", type=int, default=1, metavar="N", help="episodes to record with --video (>= 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _fail(message: str) -> SystemExit:
    import sys

    print(f"rrl eval: {message}", file=sys.stderr)
    return SystemExit(2)


def run(args: argparse.Namespace) -> int:
    import time

    from policies.artifact import load_artifact, update_metrics
    from policies.base_spec import check_variant, parse_base
    from policies.runtime import LOAD_ERRORS, camera_for_artifacts, load_policy
    from sim_bridge import make_task, task_names, task_robot
    from sim_bridge.shifts import variation_for
    from sim_bridge.video import RecordingTask, VideoConfig, check_video_path
    from training.evaluation import DEMO_SEED_BASE, EVAL_SEED_BASE, evaluate

    if args.episodes < 1:
        raise _fail(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed < 0:
        raise _fail(f"--seed must be >= 0, got {args.seed} (held-out seeds start at {EVAL_SEED_BASE})")
    if args.task not in task_names():
        raise _fail(f"unknown task {args.task!r}; known: {task_names()}")
    try:
        variation_for(args.shift, task_robot(args.task))
    except ValueError as e:
        raise _fail(f"--shift: {e}") from None
    if args.video is None and args.video_episodes != 1:
        raise _fail("--video-episodes needs --video FILE.mp4")
    if args.video is not None:
        try:
            check_video_path(args.video)
            video_config = VideoConfig(episodes=args.video_episodes)
        except ValueError as e:
            raise _fail(f"--video: {e}") from None
    try:  # everything that can be checked without building the task
        base = parse_base(args.base)
        check_variant(base, args.task)
        camera = camera_for_artifacts(args.base, args.residual)
    except LOAD_ERRORS as e:
        raise _fail(str(e)) from None
    if args.seed < EVAL_SEED_BASE and not base.is_replay:  # a replay runs the demos' own seeds
        print(f"warning: seeds from {args.seed} may overlap demonstration seeds (from {DEMO_SEED_BASE}); "
              f"held-out seeds start at {EVAL_SEED_BASE}", flush=True)
    task = make_task(args.task, camera=camera, shifts=tuple(args.shift))
    if args.video is not None:
        try:
            task = RecordingTask(task, args.video, video_config)
        except ValueError as e:
            task.close()
            raise _fail(f"--video: {e}") from None
    try:
        try:
            policy = load_policy(task.spec, base, args.residual)
            if base.is_replay:  # it has the episodes of the seeds the bag recorded, no others
                policy.base.require_seeds(range(args.seed, args.seed + args.episodes))
        except LOAD_ERRORS as e:
            raise _fail(str(e)) from None
        start = time.monotonic()
        result = evaluate(task, policy, episodes=args.episodes, seed=args.seed, progress=not args.json)
        wall_s = time.monotonic() - start
    finally:
        task.close()
    report = {"task": args.task, "base": args.base, "residual": args.residual, **result.summary(),
              "safety": policy.counters.as_dict(), "seed": args.seed, "shifts": list(args.shift),
              "wall_s": round(wall_s, 2)}
    if args.video is not None:
        report["video"] = {"path": args.video, "episodes": task.episodes_recorded, "frames": task.frames_written}
    # the evaluated artifact is the residual when there is one (on its base), else a learned base
    learned_base = not (base.is_waypoint or base.is_replay)
    evaluated = args.residual if args.residual is not None else args.base if learned_base else None
    if args.record_metrics and evaluated is not None:
        residual_flag = f" --residual {args.residual}" if args.residual is not None else ""
        shift_flags = "".join(f" --shift {name}" for name in args.shift)
        measured = {"success_rate": report["success_rate"], "episodes": report["episodes"],
                    "mean_steps_success": report["mean_steps_success"], "eval_seed": args.seed,
                    "command": f"rrl eval --task {args.task} --base {args.base}{residual_flag}{shift_flags} "
                               f"--episodes {args.episodes} --seed {args.seed} --json"}
        if args.shift:  # beside the nominal figures, which stay what the artifact is known by
            shifted = dict(load_artifact(evaluated, check_graph=False).metrics.get("shifts", {}))
            shifted["+".join(args.shift)] = measured
            measured = {"shifts": shifted}
        update_metrics(evaluated, measured)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.task} base {args.base}" + (f" + residual {args.residual}" if args.residual else "")
              + (f" under shift {'+'.join(args.shift)}" if args.shift else "")
              + f": success {report['success_rate']:.2f} over {report['episodes']} episodes, "
                f"mean steps on success {report['mean_steps_success']}; safety {report['safety']}")
        if args.video is not None:
            print(f"video: {task.frames_written} frames of {task.episodes_recorded} episode(s) written to {args.video}")
    return 0
