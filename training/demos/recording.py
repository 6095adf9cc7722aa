"""Recording a policy (a scripted expert) into a demonstration bag, headless and as fast as the CPU allows.

Time stamps are simulated time: the recording starts at the wall-clock time it
was started, steps are `spec.control_dt_s` apart, and episodes are laid one
after the other with a 1 s gap, so `ros2 bag play` replays a recording at the
control rate even though it was written much faster.

The action written for a step is the one the task executed: the policy's output
clipped to the task limits (`TaskSpec.clip_action`, which also thresholds the
gripper), so a BC policy learns what the robot actually did.

Attempt i of a recording that starts at seed `first` uses `training.seeds.demo_episode_seed(first, i)`,
which refuses seeds outside the demonstration range (held-out evaluation starts at 1 000 000).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm import tqdm

from sim_bridge.task import Task
from training.demos.bag import DemoBagWriter, EpisodeRecord
from training.evaluation import Policy
from training.seeds import demo_episode_seed

EPISODE_GAP_NS = 1_000_000_000
"""Simulated time between the end of one episode and the start of the next."""


@dataclass
class RecordSummary:
    """What a recording run did."""

    kept: list[EpisodeRecord] = field(default_factory=list)
    attempts: int = 0
    """Episodes run (kept or not)."""
    successes: int = 0
    """Episodes the task counted as solved."""
    steps: int = 0
    """Control steps run over all attempts."""

    def to_dict(self) -> dict:
        return {"episodes": len(self.kept), "attempts": self.attempts, "successes": self.successes,
                "success_rate": self.successes / self.attempts if self.attempts else 0.0, "steps": self.steps,
                "kept_steps": sum(e.steps for e in self.kept)}


class AttemptCapReached(RuntimeError):
    """`record_policy` ran out of attempts with fewer episodes kept than asked. The episodes kept so far are in the
    bag, complete and readable; `summary` says what was recorded."""

    def __init__(self, summary: RecordSummary, episodes: int, max_attempts: int):
        self.summary, self.episodes, self.max_attempts = summary, episodes, max_attempts
        super().__init__(f"only {len(summary.kept)} of {episodes} episodes kept after {summary.attempts} attempts "
                         f"({summary.successes} successes, the cap is {max_attempts}); the policy fails too often")


class SimClock:
    """Simulated recording time in ns: `now_ns`, advanced per step and between episodes."""

    def __init__(self, start_ns: int | None = None):
        self.now_ns = time.time_ns() if start_ns is None else int(start_ns)


def record_episode(task: Task, policy: Policy, writer: DemoBagWriter, seed: int, clock: SimClock,
                   keep_failures: bool = False, **info) -> tuple[bool, int, EpisodeRecord | None]:
    """Run one episode of `policy` and write it; returns (success, steps, record if kept)."""
    dt_ns = int(round(task.spec.control_dt_s * 1e9))
    obs = task.reset(seed)
    policy.reset(seed)
    writer.begin_episode(seed, clock.now_ns)
    try:
        while True:
            action = task.spec.clip_action(policy.act(obs))
            writer.write_observation(clock.now_ns, obs)
            writer.write_action(clock.now_ns, action)
            step = task.step(action)
            clock.now_ns += dt_ns
            obs = step.obs
            if step.terminated or step.truncated:
                break
        writer.write_observation(clock.now_ns, obs)
    except BaseException:
        if writer.recording:  # a failed write (OutputError) has already removed the episode's file
            writer.discard_episode()
        raise
    success = bool(step.success)
    record = writer.end_episode(clock.now_ns, success=success, keep=success or keep_failures,
                                task_success=success, **info)
    clock.now_ns += EPISODE_GAP_NS
    return success, task.step_count, record


def record_policy(task: Task, policy: Policy, writer: DemoBagWriter, episodes: int, seed: int,
                  keep_failures: bool = False, max_attempts: int | None = None, progress: bool = True,
                  clock: SimClock | None = None, **info) -> RecordSummary:
    """Record until `episodes` episodes are kept, trying seeds `seed, seed + 1, ...` (`demo_episode_seed`).

    Without `keep_failures` only successful episodes are kept; `max_attempts`
    (default 3 x episodes + 10) stops a policy that rarely succeeds: `AttemptCapReached`, raised after the
    last attempt's episode is finished, so the bag holds every kept episode.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    demo_episode_seed(seed, 0)  # a first seed outside the demonstration range fails before anything is recorded
    max_attempts = 3 * episodes + 10 if max_attempts is None else max_attempts
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    clock = clock or SimClock()
    summary = RecordSummary()
    bar = tqdm(total=episodes, desc=f"record {task.spec.name}", unit="ep", disable=not progress)
    try:
        while len(summary.kept) < episodes:
            if summary.attempts >= max_attempts:
                raise AttemptCapReached(summary, episodes, max_attempts)
            success, steps, record = record_episode(task, policy, writer, demo_episode_seed(seed, summary.attempts), clock,
                                                    keep_failures=keep_failures, **info)
            summary.attempts += 1
            summary.successes += int(success)
            summary.steps += steps
            if record is not None:
                summary.kept.append(record)
                bar.update(1)
            bar.set_postfix(attempts=summary.attempts, success=f"{summary.successes / summary.attempts:.2f}")
    finally:
        bar.close()
    return summary
