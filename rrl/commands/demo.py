"""`rrl demo` (the main job, `make demo`): what the learned residual does, shown through the ROS 2 stack.

Four runs of `rrl launch launch/ur5.launch.yaml`, in a private ROS domain (`rrl.ros_domain`):
1. the BC base alone, lockstep (deterministic: the same episodes as `rrl eval`), `--episodes` held-out seeds
   from `--seed`, the first one recorded (`video:=`, third-person camera);
2. the base + its residual, lockstep, the same seeds, the first one recorded;
3. the base + residual for one episode in realtime at 10 Hz (SCHED_FIFO at `--rt-priority` where allowed):
   the loop's jitter, latency and missed deadlines;
4. one realtime episode that starts on the waypoint base and is swapped to the BC base at run time once the
   episode reaches `--swap-step` (`rrl switch`'s own call, `rrl.commands.switch.switch_base`), with the
   residual kept: a residual artifact names the one base it was trained on, so the control node holds it
   suspended on the waypoint base (the base runs alone) and engages it from the tick the BC base is applied.
Then it prints the table (`rrl.demo_report`) and writes OUT/demo_report.json, OUT/demo.png (success and
episode length side by side, every episode), OUT/demo.mp4 (H.264: base left, base + residual right, the first
seed, `--video-speed` x real time) and OUT/demo_frame.png (that video's frame at the residual's last step);
each launch's report, log and half video stay in OUT/demo/.

Seeds come from the held-out evaluation range (`training.seeds.EVALUATION`); anything outside it is refused.
The default pair is the best shipped one: no residual on the depth-image base `bc_ur5_pick` is shipped yet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "ur5.launch.yaml"
DEFAULT_BASE = "policies/pretrained/bc_ur5_pick_state6"
DEFAULT_RESIDUAL = "policies/pretrained/residual_dmpo_ur5_pick"


class DemoError(RuntimeError):
    """A run of the demo failed; the message names the run and its log."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from training.seeds import EVAL_SEED_BASE

    p.add_argument("--base", default=DEFAULT_BASE, help="BC base artifact directory")
    p.add_argument("--residual", default=DEFAULT_RESIDUAL, help="residual artifact trained on that base")
    p.add_argument("--episodes", type=int, default=20, help="lockstep episodes per configuration (>= 10)")
    p.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="first held-out seed (episode i: seed + i)")
    p.add_argument("--swap-step", type=int, default=5, help="swap waypoint -> bc once the swap episode reaches this step")
    p.add_argument("--rt-priority", type=int, default=20, help="SCHED_FIFO priority of the realtime runs (0: none)")
    p.add_argument("--video-speed", type=float, default=2.0, help="playback speed of demo.mp4 (x real time)")
    p.add_argument("--out", default="out", help="output directory")


def _fail(message: str) -> SystemExit:
    print(f"rrl demo: {message}", file=sys.stderr)
    return SystemExit(2)


def _artifact_dir(text: str) -> Path:
    """An artifact directory given relative to the working directory, else to the repository (the shipped ones)."""
    path = Path(text)
    return (path if path.is_absolute() or path.exists() else ROOT / path).resolve()


def _short(path: str) -> str:
    return Path(path).name


@dataclass
class Run:
    """One `rrl launch` process of the demo."""

    slug: str
    proc: subprocess.Popen
    report: Path
    log: Path
    started: float
    ended: float | None = None
    """When the process was seen to end (`Runner.wait_all`); None: at `finish`."""


class Runner:
    """Starts `rrl launch` runs, each in a private ROS domain of its own, keeps their reports and logs in `work`."""

    def __init__(self, work: Path, domains: list[int]):
        self.work, self.domains = work, domains

    def env(self, domain: int) -> dict[str, str]:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        env.pop("ROS_LOCALHOST_ONLY", None)
        return env

    def start(self, slug: str, launch_args: dict[str, object], domain: int) -> Run:
        report, log = self.work / f"{slug}.json", self.work / f"{slug}.log"
        cmd = [sys.executable, "-m", "rrl.cli", "launch", str(LAUNCH_FILE),
               *[f"{k}:={v}" for k, v in launch_args.items()], "--report", str(report)]
        report.unlink(missing_ok=True)
        with open(log, "w") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(domain), cwd=ROOT)
        return Run(slug, proc, report, log, time.monotonic())

    @staticmethod
    def wait_all(runs: list[Run], poll_s: float = 0.1) -> None:
        """Wait until every run has ended, noting when each did (runs side by side end at different times)."""
        while any(run.ended is None for run in runs):
            for run in runs:
                if run.ended is None and run.proc.poll() is not None:
                    run.ended = time.monotonic()
            time.sleep(poll_s)

    def finish(self, run: Run) -> tuple[dict, float]:
        code = run.proc.wait()
        wall_s = (run.ended or time.monotonic()) - run.started
        if code != 0 or not run.report.exists():
            tail = "\n".join(run.log.read_text(errors="replace").splitlines()[-15:]) if run.log.exists() else ""
            raise DemoError(f"run {run.slug!r} failed (exit code {code}); log {run.log}:\n{tail}")
        return json.loads(run.report.read_text()), wall_s

    def run_with_swap(self, slug: str, launch_args: dict[str, object], swap_step: int, base_artifact: str,
                      node: str = "/control") -> tuple[dict, float, dict]:
        """A run (in the first domain) whose base is switched to bc `base_artifact` once an episode reaches `swap_step`.

        The sim starts once this watcher subscribes to every observation topic too (`observers:=2`), so it sees
        every tick; the switch itself (a new node, its service discovery, the call) takes a few ticks more."""
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray, String

        from rrl.commands.switch import switch_base

        domain = self.domains[0]
        swap: dict = {"node": node, "to": f"bc {base_artifact}", "requested_at_step": None}
        status: dict = {}
        os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")  # switch_base's node
        rclpy.init(domain_id=domain)
        watcher = rclpy.create_node("rrl_demo_swap")
        watcher.create_subscription(String, "/task/status", lambda m: status.update(json.loads(m.data)), 50)
        for msg_type, topic in ((JointState, "/joint_states"), (Float32MultiArray, "/robot/proprio"),
                                (Float32MultiArray, "/task/state")):  # the sim waits for a second observer of each
            watcher.create_subscription(msg_type, topic, lambda m: None, 10)
        try:
            run = self.start(slug, {**launch_args, "observers": 2}, domain)
            try:
                while run.proc.poll() is None:
                    rclpy.spin_once(watcher, timeout_sec=0.02)
                    if swap["requested_at_step"] is None and status.get("event") == "tick" \
                            and status.get("step", -1) >= swap_step:
                        swap["requested_at_step"] = status["step"]
                        t0 = time.monotonic()
                        swap["accepted"], swap["reason"] = switch_base(node, "bc", base_artifact, timeout_s=10.0)
                        swap["call_s"] = round(time.monotonic() - t0, 3)
            finally:
                if run.proc.poll() is None:  # only after an error here: stop the stack
                    run.proc.terminate()
            result, wall_s = self.finish(run)
        finally:
            watcher.destroy_node()
            rclpy.try_shutdown()
        return result, wall_s, swap


def compose_video(base_clip: Path, residual_clip: Path, titles: tuple[str, str], fps: float, out: Path,
                  still: Path) -> dict:
    """OUT/demo.mp4 (the two clips side by side) and the still frame pair at the residual clip's last frame."""
    import imageio.v2 as iio

    from sim_bridge.video import read_video, side_by_side, write_video

    left, right = read_video(base_clip), read_video(residual_clip)
    frames = side_by_side(left, right, titles, tail_frames=int(round(fps)))
    n = write_video(out, frames, fps)
    still.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(still, frames[len(right) - 1])
    return {"path": str(out), "frames": n, "fps": fps, "seconds": round(n / fps, 1), "left_frames": len(left),
            "right_frames": len(right), "still": str(still), "size_px": list(frames[0].shape[1::-1])}


def machine() -> dict:
    import platform

    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version()}


def run(args: argparse.Namespace) -> int:
    from policies.artifact import load_artifact
    from policies.base_spec import parse_base
    from policies.runtime import LOAD_ERRORS, check_residual_fits
    from rrl import demo_report
    from rrl.ros_domain import claim_domain
    from sim_bridge.task_specs import task_spec
    from training.seeds import EVALUATION

    started = time.monotonic()
    if args.episodes < 10:
        raise _fail(f"--episodes must be >= 10 for a comparison, got {args.episodes}")
    last_seed = args.seed + args.episodes - 1
    if args.seed not in EVALUATION or last_seed not in EVALUATION:
        raise _fail(f"seeds {args.seed}..{last_seed} leave the held-out evaluation range "
                    f"[{EVALUATION.start}, {EVALUATION.stop})")
    if args.swap_step < 1 or args.video_speed <= 0:
        raise _fail("--swap-step must be >= 1 and --video-speed > 0")
    base_dir, residual_dir = _artifact_dir(args.base), _artifact_dir(args.residual)
    try:
        base_art = load_artifact(base_dir, check_graph=False)
        residual_art = load_artifact(residual_dir, check_graph=False)
        if base_art.kind != "bc":
            raise ValueError(f"--base {args.base} is a {base_art.kind!r} artifact, not a bc base")
        check_residual_fits(residual_art, parse_base(str(base_dir)))
    except (*LOAD_ERRORS, ValueError) as e:
        raise _fail(str(e)) from None
    task = base_art.task
    if not task.startswith("ur5_"):
        raise _fail(f"the demo runs the UR5 stack; {args.base} is for {task}")
    spec = task_spec(task)

    out = Path(args.out)
    work = out / "demo"
    work.mkdir(parents=True, exist_ok=True)
    claims = [claim_domain() for _ in range(2)]  # the two lockstep runs go side by side, one domain each
    runner = Runner(work, [domain for domain, _ in claims])
    base_name, residual_name = _short(args.base), _short(args.residual)
    base_label = f"{base_name} ({'depth' if base_art.camera is not None else 'state'} BC)"
    seeds_text = f"seeds {args.seed}..{last_seed} (held-out evaluation range [{EVALUATION.start}, {EVALUATION.stop}))"
    note = None
    if base_art.camera is None:
        note = (f"No residual on the depth-image base of {task} is shipped yet: this demo runs the best shipped "
                f"base/residual pair, {base_name} (state BC, recorded {base_art.metrics.get('success_rate')} over "
                f"{base_art.metrics.get('episodes')} held-out seeds) + {residual_name} (recorded "
                f"{residual_art.metrics.get('success_rate')}).")
    print(f"rrl demo: {task} through the ROS 2 stack (launch/ur5.launch.yaml, ROS domains {runner.domains}), "
          f"{seeds_text}")
    if note:
        print(f"note: {note}")

    common = {"task": task, "base": "bc", "base_artifact": base_dir, "seed": args.seed}
    plan = [
        ("base", f"{base_name}", None, {**common, "clock_mode": "lockstep", "episodes": args.episodes,
                                         "video": (work / "base.mp4").resolve(), "video_episodes": 1}),
        ("residual", f"{base_name} + {residual_name}", residual_dir,
         {**common, "residual": residual_dir, "clock_mode": "lockstep", "episodes": args.episodes,
          "video": (work / "residual.mp4").resolve(), "video_episodes": 1}),
        ("realtime", f"{base_name} + {residual_name}, realtime", residual_dir,
         {**common, "residual": residual_dir, "clock_mode": "realtime", "episodes": 1,
          "rt_priority": args.rt_priority}),
    ]
    configurations = []

    def add_row(i: int, slug: str, name: str, residual: Path | None, result: dict, wall_s: float) -> None:
        mode = result["args"]["clock_mode"]
        row = demo_report.configuration(name, result, base_name, residual_name if residual else None, wall_s,
                                        report=str(work / f"{slug}.json"))
        if mode == "lockstep":
            row["recorded_success_rate"] = (residual_art if residual else base_art).metrics.get("success_rate")
        configurations.append(row)
        print(f"[{i}/4] {name}: success {row['success_rate']:.2f} ({row['successes']}/{row['episodes']}), mean steps "
              f"of successes {demo_report.format_cell(row['mean_steps_success'], '{:.1f}')}, "
              + ("" if mode == "lockstep" else f"jitter p99 {row['jitter_p99_ms']} ms, latency p99 "
                 f"{row['latency_p99_ms']} ms, missed deadlines {row['missed_deadlines']}, ")
              + f"{wall_s:.0f} s", flush=True)

    try:
        lockstep = [item for item in plan if item[3]["clock_mode"] == "lockstep"]
        for i, (slug, name, _, launch_args) in enumerate(lockstep, 1):
            print(f"[{i}/4] {name}: lockstep, {launch_args['episodes']} episodes from seed {args.seed} "
                  f"(domain {runner.domains[i - 1]}) ...", flush=True)
        runs = [runner.start(slug, launch_args, domain)
                for (slug, _, _, launch_args), domain in zip(lockstep, runner.domains)]
        try:
            runner.wait_all(runs)
            finished = [runner.finish(run) for run in runs]
        finally:
            for run in runs:
                if run.proc.poll() is None:
                    run.proc.terminate()
        for i, ((slug, name, residual, _), (result, wall_s)) in enumerate(zip(lockstep, finished), 1):
            add_row(i, slug, name, residual, result, wall_s)
        for i, (slug, name, residual, launch_args) in enumerate(plan[len(lockstep):], len(lockstep) + 1):
            print(f"[{i}/4] {name}: {launch_args['episodes']} episode from seed {args.seed} ...", flush=True)
            result, wall_s = runner.finish(runner.start(slug, launch_args, runner.domains[0]))
            add_row(i, slug, name, residual, result, wall_s)

        swap_name = f"swap waypoint -> {base_name}, realtime"
        print(f"[4/4] {swap_name}: 1 episode from seed {args.seed}, `rrl switch --node /control --base bc "
              f"--artifact {args.base}` at step {args.swap_step} ...", flush=True)
        print(f"      (the residual {residual_name} is kept: suspended on the waypoint base it was not trained on, "
              f"engaged once {base_name} is applied)")
        swap_args = {**common, "base": "waypoint", "base_artifact": "", "residual": residual_dir,
                     "clock_mode": "realtime", "episodes": 1, "rt_priority": args.rt_priority}
        result, wall_s, swap = runner.run_with_swap("swap", swap_args, args.swap_step, str(base_dir))
        row = demo_report.configuration(swap_name, result, f"waypoint -> {base_name}", residual_name, wall_s,
                                        report=str(work / "swap.json"))
        applied = [s for s in row["swaps"] if s.get("tick") is not None]
        swap.update(applied_at_tick=applied[0]["tick"] if applied else None,
                    residual_after_swap=applied[0].get("residual") if applied else None,
                    residual_suspended_ticks=row["residual_suspended_ticks"])
        configurations.append(row)
        print(f"      swap requested at step {swap['requested_at_step']} ({'accepted' if swap.get('accepted') else 'REJECTED'}"
              f": {swap.get('reason')}), applied at tick {swap['applied_at_tick']} (residual "
              f"{swap['residual_after_swap'] or 'not engaged'} from then on, suspended for "
              f"{swap['residual_suspended_ticks']} tick(s) before); success {row['success_rate']:.2f} "
              f"in {row['results'][0]['steps'] if row['results'] else '-'} steps, {wall_s:.0f} s", flush=True)
        if row["missed_deadlines"] and row["worst_latency_tick"] == swap["applied_at_tick"]:
            swap["stalled_tick"] = swap["applied_at_tick"]
            print(f"      tick {swap['applied_at_tick']} is the slowest of this run ({row['missed_deadlines']} missed "
                  f"deadline(s)): the new base's first tick (the load itself runs beside the loop)")

        print("video: composing base | base + residual ...", flush=True)
        fps = spec.control_rate_hz * args.video_speed
        video = compose_video(work / "base.mp4", work / "residual.mp4",
                              (f"base: {base_label}", f"base + residual: {residual_name}"), fps, out / "demo.mp4",
                              out / "demo_frame.png")
        video.update(seed=args.seed, speed=args.video_speed)
    except DemoError as e:
        print(f"rrl demo: {e}", file=sys.stderr)
        return 1
    finally:
        for _, lock in claims:
            lock.close()

    report = demo_report.build_report(
        configurations, task=task,
        title=f"{task}, lockstep through the ROS 2 stack, held-out seeds {args.seed}..{last_seed}: "
              f"{base_label} alone and + {residual_name}",
        base=args.base, residual=args.residual, note=note, seeds={"first": args.seed, "last": last_seed,
                                                                   "range": [EVALUATION.start, EVALUATION.stop]},
        swap=swap, video=video, plot=str(out / "demo.png"), machine=machine(),
        wall_s=round(time.monotonic() - started, 1))
    demo_report.plot_report(report, out / "demo.png", horizon_steps=spec.max_steps)
    report["wall_s"] = round(time.monotonic() - started, 1)
    (out / "demo_report.json").write_text(json.dumps(report, indent=1))
    print()
    print(demo_report.format_table(report))
    print()
    cmp = report["comparison"]
    print(f"residual vs base on the same {args.episodes} seeds: {cmp['success_gain']:+.2f} success "
          f"(fixed {len(cmp['fixed_by_residual'])} episode(s), broke {len(cmp['broken_by_residual'])})")
    if not cmp["residual_not_below_base"]:
        print(f"warning: on these seeds the residual is below the base ({cmp['success_gain']:+.2f})")
    if note:
        print(f"note: {note}")
    print(f"wrote {out / 'demo_report.json'}, {out / 'demo.png'}, {out / 'demo.mp4'} ({video['seconds']} s, "
          f"seed {args.seed}, {args.video_speed:g}x), {out / 'demo_frame.png'}; logs in {work}/ "
          f"({report['wall_s']:.0f} s in all)")
    return 0
