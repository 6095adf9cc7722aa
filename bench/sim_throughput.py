"""Control steps per second of each simulated task, per observation mode, next to the raw physics ceiling.

    .venv/bin/python bench/sim_throughput.py [--tasks ur5_pick ur5_bowl] [--state-steps 600] [--image-steps 100]
                                             [--policy random|expert] [--render-qualities fast quality]

For every task in `BENCH` it times `task.step` (one 10 Hz control step with its
substeps, observation included) in each mode, with a fixed seeded sequence of
random actions or the task's expert (`--policy expert`, its own time not counted) (episodes restart when they end; reset time is reported apart), and
measures the raw ceiling in the same process: the bare physics work of one control
step (for the UR5: `p.stepSimulation` x 24 on the same scene right after reset, no
control, no observation), in blocks alternating with the state-mode steps. For state mode it
also reports the share of the step spent inside the physics engine
(`physics_fraction_of_step`) and the remaining per-step overhead: a moving arm in
contact costs the engine more than the resting scene of the ceiling. Prints one JSON object: per task and mode `steps_per_s`, and for
state mode `fraction_of_raw` (target >= 0.7 for the UR5 tasks), plus a machine record. Each mode also
reports `cpu_ms_per_step`, the CPU time of the whole process per step (all its threads, e.g. Mesa's
rasteriser threads): on a machine shared with other work it stays near the step's cost while the wall-clock
`ms_per_step` grows with the contention.

The hand tasks' RGB modes run at each of `--render-qualities` (`sim_bridge.adroit.tasks.RENDER_QUALITY`:
`rgb84` is the default "fast", `rgb84_quality` the models' own settings), and per task and image size the
report gives `fast_vs_quality`: the mean absolute pixel difference (of 255) between the two qualities' first
frames of episodes 0-2, and the share of pixels whose channels all differ by <= 16. The machine record
carries the GL_RENDERER string MuJoCo rendered with (`gl_renderer`) and GALLIUM_DRIVER.

To add tasks (e.g. Adroit), add `BenchEntry`s to `BENCH`: a mode table
(name -> CameraConfig or None) and a `raw_step` factory that returns a function
doing one control step's worth of bare simulation.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator

import numpy as np

from sim_bridge import make_task
from sim_bridge.task import CameraConfig, Task
from machine_info import machine



def _ur5_raw_step(task: Task) -> Callable[[], None]:
    import pybullet as p

    from sim_bridge.ur5.robot import SUBSTEPS

    client = task.client

    def step() -> None:
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=client)

    return step


@contextlib.contextmanager
def _ur5_physics_timer() -> Iterator[list[float]]:
    """Accumulate the seconds spent inside `p.stepSimulation` by the UR5 robot (patched module attribute)."""
    import pybullet

    from sim_bridge.ur5 import robot

    spent = [0.0]

    class TimedPyBullet:
        def __getattr__(self, name):
            return getattr(pybullet, name)

        @staticmethod
        def stepSimulation(*args, **kwargs):
            t0 = time.perf_counter()
            pybullet.stepSimulation(*args, **kwargs)
            spent[0] += time.perf_counter() - t0

    robot.p = TimedPyBullet()
    try:
        yield spent
    finally:
        robot.p = pybullet


UR5_MODES: dict[str, CameraConfig | None] = {
    "state": None,
    "depth240": CameraConfig(240, 240),
    "depth64": CameraConfig(64, 64),
}


def _adroit_raw_step(task: Task) -> Callable[[], None]:
    """Bare MuJoCo stepping of one Adroit control step: 10 env steps x 5 substeps of 0.002 s, no env code."""
    import mujoco

    from sim_bridge.adroit.tasks import ENV_STEPS_PER_CONTROL

    model, data, substeps = task.model, task.data, ENV_STEPS_PER_CONTROL * task.env.frame_skip

    def step() -> None:
        mujoco.mj_step(model, data, nstep=substeps)

    return step


ADROIT_MODES: dict[str, CameraConfig | None] = {
    "state": None,
    "rgb240": CameraConfig(240, 240),
    "rgb84": CameraConfig(84, 84),
    "rgb240_quality": CameraConfig(240, 240),
    "rgb84_quality": CameraConfig(84, 84),
}
ADROIT_MODE_OPTIONS: dict[str, dict] = {
    "rgb240": {"render_quality": "fast"}, "rgb84": {"render_quality": "fast"},  # fast: the default
    "rgb240_quality": {"render_quality": "quality"}, "rgb84_quality": {"render_quality": "quality"},
}
"""Task options per mode: the hand tasks' render quality (`sim_bridge.adroit.tasks.RENDER_QUALITY`)."""
IMAGE_DIFF_SEEDS = (0, 1, 2)


def adroit_image_difference(task: str, camera: CameraConfig, seeds=IMAGE_DIFF_SEEDS) -> dict:
    """Fast against quality frames of the same scenes: the first frame of episodes `seeds`."""
    frames = {}
    for quality in ("fast", "quality"):
        with make_task(task, camera=CameraConfig(camera.width_px, camera.height_px, history=1),
                       render_quality=quality) as t:
            frames[quality] = np.stack([t.reset(s)["rgb"][-1] for s in seeds]).astype(np.int16)
    diff = np.abs(frames["fast"] - frames["quality"])
    return {"seeds": list(seeds), "mean_abs": float(diff.mean()),
            "fraction_within_16": float((diff.max(axis=-1) <= 16).mean())}


def adroit_gl_renderer() -> str:
    """The GL_RENDERER string of an Adroit task's renderer (the backend, driver and process settings in use)."""
    from sim_bridge.adroit.tasks import gl_renderer

    with make_task("adroit_pen", camera=CameraConfig(16, 16, history=1)) as t:
        return gl_renderer(t._renderer)


@dataclass(frozen=True)
class BenchEntry:
    task: str
    """Task name for `sim_bridge.make_task`."""
    modes: dict[str, CameraConfig | None] = field(default_factory=dict)
    """Observation modes: name -> camera (None = state only, no rendering)."""
    raw_step: Callable[[Task], Callable[[], None]] | None = None
    """Given a reset task, a function that does one control step of bare simulation (the ceiling)."""
    physics_timer: Callable[[], ContextManager[list[float]]] | None = None
    """Context manager accumulating the seconds spent in the physics engine during state-mode steps."""
    mode_options: dict[str, dict] = field(default_factory=dict)
    """Extra `make_task` options per mode (e.g. the hand tasks' render quality)."""

    @property
    def has_render_quality(self) -> bool:
        return any("render_quality" in options for options in self.mode_options.values())


BENCH: dict[str, BenchEntry] = {
    "ur5_pick": BenchEntry("ur5_pick", UR5_MODES, _ur5_raw_step, _ur5_physics_timer),
    "ur5_bowl": BenchEntry("ur5_bowl", UR5_MODES, _ur5_raw_step, _ur5_physics_timer),
    "ur5_push": BenchEntry("ur5_push", UR5_MODES, _ur5_raw_step, _ur5_physics_timer),
    "adroit_door": BenchEntry("adroit_door", ADROIT_MODES, _adroit_raw_step, mode_options=ADROIT_MODE_OPTIONS),
    "adroit_hammer": BenchEntry("adroit_hammer", ADROIT_MODES, _adroit_raw_step, mode_options=ADROIT_MODE_OPTIONS),
    "adroit_pen": BenchEntry("adroit_pen", ADROIT_MODES, _adroit_raw_step, mode_options=ADROIT_MODE_OPTIONS),
    "adroit_relocate": BenchEntry("adroit_relocate", ADROIT_MODES, _adroit_raw_step, mode_options=ADROIT_MODE_OPTIONS),
}




class _ModeTimer:
    """Times `task.step` on one task instance with seeded random actions, block by block."""

    def __init__(self, name: str, camera: CameraConfig | None, seed: int, policy: str = "random",
                 options: dict | None = None):
        self.task = make_task(name, camera=camera, **(options or {}))
        self.expert = None
        if policy == "expert":
            from controllers.experts import make_expert

            self.expert = make_expert(name)
        rng = np.random.default_rng(seed)
        self.low, self.high = np.asarray(self.task.spec.action_low), np.asarray(self.task.spec.action_high)
        self.rng, self.seed = rng, seed
        self.steps, self.step_s, self.step_cpu_s, self.resets, self.reset_s = 0, 0.0, 0.0, 0, 0.0
        self._reset()

    def _reset(self) -> None:
        t0 = time.perf_counter()
        self.obs = self.task.reset(self.seed + self.resets)
        self.reset_s += time.perf_counter() - t0
        if self.expert is not None:
            self.expert.reset(self.seed + self.resets)
        self.resets += 1

    def run(self, steps: int) -> None:
        actions = self.rng.uniform(self.low, self.high, size=(steps, self.low.size))
        for action in actions:
            if self.expert is not None:  # not timed: only the simulation step is
                action = self.expert.act(self.task.spec.state.unpack(self.obs["state"]))
            t0, c0 = time.perf_counter(), time.process_time()
            result = self.task.step(action)
            self.step_s += time.perf_counter() - t0
            self.step_cpu_s += time.process_time() - c0
            self.obs = result.obs
            self.steps += 1
            if result.terminated or result.truncated:
                self._reset()

    def report(self) -> dict:
        self.task.close()
        return {"steps": self.steps, "steps_per_s": self.steps / self.step_s,
                "ms_per_step": 1e3 * self.step_s / self.steps, "cpu_ms_per_step": 1e3 * self.step_cpu_s / self.steps,
                "ms_per_reset": 1e3 * self.reset_s / self.resets}


class _RawTimer:
    """Times the bare simulation of one control step (the ceiling) on the task's scene."""

    def __init__(self, entry: BenchEntry, seed: int):
        self.task = make_task(entry.task)
        self.task.reset(seed)
        self.step = entry.raw_step(self.task)
        self.steps, self.elapsed_s, self.cpu_s = 0, 0.0, 0.0

    def run(self, steps: int) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        self.elapsed_s += time.perf_counter() - t0
        self.cpu_s += time.process_time() - c0
        self.steps += steps

    def report(self) -> dict:
        self.task.close()
        return {"steps": self.steps, "steps_per_s": self.steps / self.elapsed_s,
                "ms_per_step": 1e3 * self.elapsed_s / self.steps, "cpu_ms_per_step": 1e3 * self.cpu_s / self.steps}


BLOCK_STEPS = 50
"""State mode and the raw ceiling run in alternating blocks of this many steps, so that a machine shared with
other work slows both alike."""


def bench_task(entry: BenchEntry, state_steps: int, image_steps: int, seed: int, policy: str,
               render_qualities: tuple[str, ...] = ("fast", "quality")) -> dict:
    row: dict = {}
    for mode, camera in entry.modes.items():
        options = entry.mode_options.get(mode, {})
        if "render_quality" in options and options["render_quality"] not in render_qualities:
            continue
        timer = _ModeTimer(entry.task, camera, seed, policy, options)
        if camera is None and entry.raw_step is not None:
            raw = _RawTimer(entry, seed)
            probe = entry.physics_timer() if entry.physics_timer is not None else contextlib.nullcontext([0.0])
            with probe as physics_s:
                for _ in range(max(1, state_steps // BLOCK_STEPS)):
                    raw.run(BLOCK_STEPS)
                    timer.run(BLOCK_STEPS)
            row["raw"] = raw.report()
            row[mode] = timer.report()
            row[mode]["fraction_of_raw"] = row[mode]["steps_per_s"] / row["raw"]["steps_per_s"]
            if entry.physics_timer is not None:
                # Physics share of the state steps themselves: the moving arm and its contacts cost more
                # engine time than the resting scene of the raw ceiling; the rest is our per-step overhead.
                row[mode]["physics_fraction_of_step"] = physics_s[0] / timer.step_s
                row[mode]["overhead_ms_per_step"] = 1e3 * (timer.step_s - physics_s[0]) / timer.steps
        else:
            timer.run(state_steps if camera is None else image_steps)
            row[mode] = dict(timer.report(), **options)
    if entry.has_render_quality and set(render_qualities) >= {"fast", "quality"}:
        sizes = {(c.width_px, c.height_px): c for c in entry.modes.values() if c is not None}
        row["fast_vs_quality"] = {f"{w}x{h}": adroit_image_difference(entry.task, c) for (w, h), c in sizes.items()}
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(BENCH), help=f"tasks to time; known: {list(BENCH)}")
    parser.add_argument("--state-steps", type=int, default=600, help="control steps timed in state mode and raw")
    parser.add_argument("--image-steps", type=int, default=100, help="control steps timed in each image mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", choices=("random", "expert"), default="random",
                        help="actions: seeded uniform random, or the task's scripted expert (not timed)")
    parser.add_argument("--render-qualities", nargs="+", choices=("fast", "quality"), default=["fast", "quality"],
                        help="hand tasks: RGB render qualities to time (both: also their image difference)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.tasks if t not in BENCH]
    if unknown:
        parser.error(f"unknown tasks {unknown}; known: {list(BENCH)}")
    report: dict = {"benchmark": "sim_throughput", "unit": "control steps per second", "policy": args.policy,
                    "tasks": {}}
    for name in args.tasks:
        row = bench_task(BENCH[name], args.state_steps, args.image_steps, args.seed, args.policy,
                         tuple(args.render_qualities))
        report["tasks"][name] = row
        print(f"{name}: " + ", ".join(f"{m} {r['steps_per_s']:.0f}/s" for m, r in row.items() if "steps_per_s" in r),
              file=sys.stderr)
    report["machine"] = machine("pybullet", "mujoco", "numpy", "gymnasium")
    if any(BENCH[name].has_render_quality for name in args.tasks):
        report["machine"]["gl_renderer"] = adroit_gl_renderer()
        report["machine"]["GALLIUM_DRIVER"] = os.environ.get("GALLIUM_DRIVER")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
