"""Evaluation of a policy on a task over seeded episodes.

A `Policy` here is anything with `reset(seed)` and `act(obs) -> action` taking the
task's observation dict (see `sim_bridge.task`); `rrl eval` passes the one composed policy
(`policies.runtime.ComposedPolicy`: base + residual + safety layer), whose safety counters
(NaN/Inf fallbacks, holds, clips, base errors) are reported per episode and in the summary. Held-out evaluation seeds start at
`EVAL_SEED_BASE`, far from the seeds demonstrations are recorded with
(`DEMO_SEED_BASE`), so an evaluation never replays a training episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm

from controllers.experts import Expert
from sim_bridge.spec import TaskSpec
from sim_bridge.task import Observation, Task

from training.seeds import DEMO_SEED_BASE, EVAL_SEED_BASE  # noqa: F401  (re-exported: the one seed rule lives in training.seeds)


class Policy(Protocol):
    def reset(self, seed: int) -> None: ...

    def act(self, obs: Observation) -> np.ndarray: ...


class ExpertPolicy:
    """Adapts a scripted expert (which reads named full state) to the observation dict."""

    def __init__(self, expert: Expert, spec: TaskSpec):
        self.expert = expert
        self.spec = spec

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)

    def act(self, obs: Observation) -> np.ndarray:
        return self.expert.act(self.spec.state.unpack(obs["state"]))


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    """Control steps until success (or the horizon)."""
    safety: dict[str, int] = field(default_factory=dict)
    """The safety layer's counters over this episode (empty for a policy without one)."""


@dataclass
class EvalResult:
    episodes: list[EpisodeResult] = field(default_factory=list)

    def summary(self) -> dict:
        n = len(self.episodes)
        wins = [e.steps for e in self.episodes if e.success]
        safety: dict[str, int] = {}
        for e in self.episodes:
            for key, value in e.safety.items():
                safety[key] = safety.get(key, 0) + value
        return {
            "episodes": n,
            "success_rate": (len(wins) / n) if n else 0.0,
            "mean_steps_success": float(np.mean(wins)) if wins else None,
            **({"safety": safety} if safety else {}),
        }


def success_interval(successes: int, episodes: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate measured on `episodes` independent held-out seeds: the
    interval of one evaluation (one trained policy), honest at 0 % and 100 % where the normal one is not."""
    from scipy.stats import binomtest

    if episodes < 1 or not 0 <= successes <= episodes:
        raise ValueError(f"need 0 <= successes <= episodes >= 1, got {successes} of {episodes}")
    ci = binomtest(int(successes), int(episodes)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of one figure over training seeds (mean, low, high): the interval the
    issues ask for when a result is averaged over several trained policies. One value has no interval
    (low = high = the value)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"need one or more finite values, got {values!r}")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def seed_curve(runs: list[list[dict]], key: str, confidence: float = 0.95) -> list[dict]:
    """One learning curve over training seeds: `runs` holds each seed's periodic evaluations (the rows of its
    `eval.jsonl`, in order). Seeds stop at different frames (a run ends at an episode boundary), so the curves
    are aligned by evaluation index up to the shortest run; each point is the mean frames, the mean of `key`
    and its Student-t interval (`mean_interval`). A seed whose value is missing at a point (no successful
    episode, so no `mean_steps_success`) is left out of that point, which then reports how many seeds it has;
    a point no seed has a value for is dropped."""
    if not runs or any(not rows for rows in runs):
        raise ValueError("seed_curve needs one or more runs, each with one or more evaluations")
    points = []
    for i in range(min(len(rows) for rows in runs)):
        values = [rows[i].get(key) for rows in runs]
        values = [float(v) for v in values if v is not None]
        if not values:
            continue
        mean, low, high = mean_interval(values, confidence)
        points.append({"frames": float(np.mean([rows[i]["frames"] for rows in runs])), "mean": mean, "low": low,
                       "high": high, "seeds": len(values)})
    return points


def _counters(policy: Policy) -> dict[str, int]:
    counters = getattr(policy, "counters", None)
    return {} if counters is None else counters.as_dict()


def run_episode(task: Task, policy: Policy, seed: int) -> EpisodeResult:
    """One episode until success or the horizon."""
    before = _counters(policy)
    obs = task.reset(seed)
    policy.reset(seed)
    while True:
        step = task.step(policy.act(obs))
        obs = step.obs
        if step.terminated or step.truncated:
            after = _counters(policy)
            return EpisodeResult(seed=seed, success=step.success, steps=task.step_count,
                                 safety={k: v - before.get(k, 0) for k, v in after.items()})


def evaluate(task: Task, policy: Policy, episodes: int, seed: int, progress: bool = True) -> EvalResult:
    """Run `episodes` episodes with seeds `seed, seed + 1, ...`."""
    result = EvalResult()
    bar = tqdm(range(episodes), desc=f"{task.spec.name}", unit="ep", disable=not progress, leave=False)
    for i in bar:
        result.episodes.append(run_episode(task, policy, seed + i))
        bar.set_postfix(success=f"{result.summary()['success_rate']:.2f}")
    return result
