"""The rollout contract shared by DMPO and REQ: environments, actors, episodes.

An environment (`RolloutEnv`) is what a learner acts in, over flat vectors:

    obs = env.reset(seed)              (S,) float32
    step = env.step(action)            EnvStep(obs, reward, terminated, truncated, success)
    env.expert_action                  optional: psi(s) (D,) for REQ's expert, in action coordinates

DMPO's `ResidualEnv` (training.dmpo.residual) and REQ's `TaskEnv` (training.req.env) implement it;
both execute their actions through the one policy path (`policies.runtime.ComposedPolicy.compose`).

An actor (`Actor`) decides each step's action and what the replay stores with it:

    actor.start_episode(seed, index)   once per episode (REQ: draws the intertwining schedule)
    action, step_fields = actor.act(obs, env)
    obs_fields = actor.observe(env, done)   per-observation fields beyond "obs" (REQ: psi(s))
    actor.load_weights(weights)        the learner's broadcast acting weights (CPU tensors)

`run_episode(env, actor, seed, sink, on_step)` runs one episode and writes every transition to
`sink`: the learner's `ReplayBuffer` itself in the single-process loop (then `on_step` runs the
learner's updates between steps, exactly as before this module existed), or an `EpisodeBuffer`
on a rollout worker, which the learner later writes to its replay in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np


@dataclass
class EnvStep:
    obs: np.ndarray
    """(S,) float32 observation vector after the step."""
    reward: float
    terminated: bool
    """Episode ended by success (no bootstrap)."""
    truncated: bool
    """Episode ended by the horizon (bootstrap)."""
    success: bool


class RolloutEnv(Protocol):
    observation_dim: int
    action_dim: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> EnvStep: ...


class Actor(Protocol):
    def start_episode(self, seed: int, index: int) -> None: ...

    def act(self, obs: np.ndarray, env: RolloutEnv) -> tuple[np.ndarray, dict]: ...

    def observe(self, env: RolloutEnv, done: bool) -> dict: ...

    def load_weights(self, weights: dict) -> None: ...


class Sink(Protocol):
    """Where transitions go: `training.replay.ReplayBuffer` or `EpisodeBuffer`."""

    def add_first(self, obs: dict) -> None: ...

    def add(self, step: dict, reward: float, discount: float, next_obs: dict) -> None: ...


@dataclass
class EpisodeResult:
    """What one exploring episode was (for logs and curves)."""

    seed: int
    index: int
    steps: int
    success: bool
    episode_return: float
    info: dict = field(default_factory=dict)
    """Actor-specific counts (REQ: expert_steps, intertwined)."""


@dataclass
class EpisodeBuffer:
    """One episode's transitions, recorded as `ReplayBuffer` calls and replayed into a replay later."""

    seed: int
    index: int
    first: dict | None = None
    steps: list[tuple[dict, float, float, dict]] = field(default_factory=list)
    result: EpisodeResult | None = None

    def add_first(self, obs: dict) -> None:
        self.first = obs

    def add(self, step: dict, reward: float, discount: float, next_obs: dict) -> None:
        self.steps.append((step, reward, discount, next_obs))

    def __len__(self) -> int:
        return len(self.steps)

    def write_to(self, replay: Sink, on_step: Callable[[], None] | None = None) -> None:
        """The same calls `run_episode` would have made on `replay` directly; `on_step` after each step."""
        replay.add_first(self.first)
        for step, reward, discount, next_obs in self.steps:
            replay.add(step, reward, discount, next_obs)
            if on_step is not None:
                on_step()


def run_episode(env: RolloutEnv, actor: Actor, seed: int, sink: Sink | None,
                on_step: Callable[[], None] | None = None, index: int = -1) -> EpisodeResult:
    """One exploring episode; every transition goes to `sink`; `on_step()` after each env step."""
    obs = env.reset(seed)
    actor.start_episode(seed, index)
    if sink is not None:
        sink.add_first({"obs": obs, **actor.observe(env, False)})
    steps, ret = 0, 0.0
    info: dict = {}
    while True:
        action, step_fields = actor.act(obs, env)
        step = env.step(action)
        steps += 1
        ret += step.reward
        for key, value in step_fields.items():
            if isinstance(value, (bool, np.bool_)):
                info[key] = info.get(key, 0) + int(value)
        done = step.terminated or step.truncated
        if sink is not None:
            sink.add({"action": action, **step_fields}, step.reward, 0.0 if step.terminated else 1.0,
                     {"obs": step.obs, **actor.observe(env, done)})
        obs = step.obs
        if on_step is not None:
            on_step()
        if done:
            info.update(getattr(actor, "episode_info", lambda: {})())
            result = EpisodeResult(seed, index, steps, bool(step.success), float(ret), info)
            if isinstance(sink, EpisodeBuffer):
                sink.result = result
            return result
