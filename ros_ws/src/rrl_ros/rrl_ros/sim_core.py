"""Episode bookkeeping of the sim_bridge node, without ROS: one task, seeded episodes, results.

Episode i uses seed `seed + i` (as `training.evaluation.evaluate` does), so a
lockstep run of the stack and `rrl eval` see the same episodes. An episode ends
on success or at the horizon; the runner then resets the next one at once, so
the observation that follows an episode's last step is the next episode's first.

`judge_command` is the sim's rule for what a received `/command` does (step, hold or nothing).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np

from sim_bridge.spec import Layout
from sim_bridge.task import Observation, Task

APPLY, NONFINITE, FOREIGN = "apply", "nonfinite", "foreign"
"""Verdicts of `judge_command`."""


def judge_command(action: np.ndarray, tick: int | None, awaited_tick: int | None, lockstep: bool,
                  layout: Layout) -> tuple[str, str]:
    """What the sim does with one command: (verdict, reason), the reason empty for APPLY.

    - FOREIGN (lockstep only): the command does not answer the observation the sim awaits (no tick
      in the message, another tick, or no observation awaiting): it is not applied. One controller answers each
      tick once; a second publisher, a late duplicate or an unlabelled array would otherwise step the
      sim a tick further than its controller saw (DESIGN.md: lockstep waits for the command of tick k).
    - NONFINITE: a NaN/Inf anywhere in the action: the tick it answers holds (zero velocity,
      binary fields kept, `controllers.safety.hold_action`) instead of sending NaN into the physics.
    - APPLY: step with it (realtime: any finite command of the right layout, as teleoperation sends).
    """
    if lockstep:
        if awaited_tick is None:
            return FOREIGN, "no observation is awaiting a command"
        if tick is None:
            return FOREIGN, f"it carries no tick (lockstep steps only on the answer to tick {awaited_tick})"
        if tick != awaited_tick:
            return FOREIGN, f"it answers tick {tick}, the sim awaits tick {awaited_tick}"
    bad = [label for label, x in zip(layout.labels(), np.asarray(action, np.float64)) if not np.isfinite(x)]
    if bad:
        return NONFINITE, f"non-finite value(s) in {', '.join(bad)}"
    return APPLY, ""


@dataclass
class EpisodeRecord:
    episode: int
    seed: int
    success: bool
    steps: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class EpisodeRunner:
    """Drives one task through `episodes` seeded episodes, one `apply(action)` per control tick."""

    task: Task
    episodes: int
    """Episodes to run; the runner is `finished` after the last one."""
    seed: int
    """Seed of episode 0; episode i uses seed + i."""
    obs: Observation | None = None
    episode: int = 0
    tick: int = 0
    """Ticks since the start (over all episodes)."""
    success: bool = False
    """Success of the current episode so far."""
    results: list[EpisodeRecord] = field(default_factory=list)
    step_times_s: list[float] = field(default_factory=list)
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    """sha256 over every applied action and resulting state: equal digests = identical runs."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")

    @property
    def finished(self) -> bool:
        return len(self.results) >= self.episodes

    @property
    def episode_seed(self) -> int:
        return self.seed + self.episode

    @property
    def step(self) -> int:
        return self.task.step_count

    def start(self) -> Observation:
        self.obs = self.task.reset(self.episode_seed)
        self.success = False
        return self.obs

    def apply(self, action: np.ndarray) -> EpisodeRecord | None:
        """Step the task with `action`; returns the record of an episode that just ended (then resets the next)."""
        if self.finished:
            raise RuntimeError("all episodes are done")
        t0 = time.perf_counter()
        out = self.task.step(np.asarray(action, dtype=np.float64))
        self.step_times_s.append(time.perf_counter() - t0)
        self.digest.update(np.asarray(action, dtype=np.float64).tobytes())
        self.digest.update(np.asarray(out.obs["state"], dtype=np.float32).tobytes())
        self.tick += 1
        self.obs, self.success = out.obs, bool(out.success)
        if not (out.terminated or out.truncated):
            return None
        record = EpisodeRecord(self.episode, self.episode_seed, bool(out.success), self.task.step_count)
        self.results.append(record)
        if not self.finished:
            self.episode += 1
            self.start()
        return record

    def summary(self) -> dict:
        n = len(self.results)
        wins = [r.steps for r in self.results if r.success]
        return {
            "episodes": n,
            "success_rate": len(wins) / n if n else 0.0,
            "mean_steps_success": float(np.mean(wins)) if wins else None,
            "results": [r.as_dict() for r in self.results],
            "ticks": self.tick,
            "trajectory_sha256": self.digest.hexdigest(),
            "step_time_p50_ms": round(float(np.percentile(self.step_times_s, 50)) * 1e3, 3) if self.step_times_s else None,
            "step_time_p99_ms": round(float(np.percentile(self.step_times_s, 99)) * 1e3, 3) if self.step_times_s else None,
        }
