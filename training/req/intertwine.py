"""Intertwining exploration (Algorithm 3 of the REQ paper, App. A.5) and episode collection.

Per episode: with probability lambda_intertwine the episode is intertwined, and every step acts
with the expert with probability lambda_psi (else with the policy); otherwise the whole episode
acts with the expert with probability lambda_psi (else with the policy throughout).
(Alg. 3 as printed assigns `a ~ pi` when act_with_psi is true; the text of Sec. 4 says the
opposite, which is what the name means and what we do.)

Modes (Table 6): RLfD = (lambda_intertwine 0, lambda_psi 0.25): a quarter of the episodes are
expert demonstrations; RLfSE = (0.5, 0.75). Expected fraction of expert steps is lambda_psi in
both cases.

Expert and policy steps go to one replay; every stored state carries psi(s) (`expert_action`),
so eq. 4 can use the expert's label on states the policy visited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from training.replay import FieldSpec, ReplayBuffer
from training.req.env import ExpertEnv


@dataclass(frozen=True)
class IntertwineConfig:
    """Probabilities of Algorithm 3."""

    lambda_intertwine: float
    """Probability that an episode switches between policy and expert per step."""
    lambda_psi: float
    """Probability of acting with the expert (per step when intertwined, else per episode)."""

    def __post_init__(self) -> None:
        for name in ("lambda_intertwine", "lambda_psi"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")


MODES: dict[str, IntertwineConfig] = {
    "rlfd": IntertwineConfig(lambda_intertwine=0.0, lambda_psi=0.25),
    "rlfse": IntertwineConfig(lambda_intertwine=0.5, lambda_psi=0.75),
}
"""Table 6 of the paper."""


def intertwine_config(mode: str) -> IntertwineConfig:
    if mode not in MODES:
        raise ValueError(f"unknown exploration mode {mode!r}; known: {sorted(MODES)}")
    return MODES[mode]


class IntertwineSchedule:
    """Who acts: `start_episode()` once per episode, then `expert_acts()` once per step."""

    def __init__(self, config: IntertwineConfig, rng: np.random.Generator):
        self.config = config
        self.rng = rng
        self.intertwined = False
        self.whole_episode_expert = False

    def start_episode(self) -> None:
        self.intertwined = bool(self.rng.uniform() < self.config.lambda_intertwine)
        self.whole_episode_expert = (not self.intertwined) and bool(self.rng.uniform() < self.config.lambda_psi)

    def expert_acts(self) -> bool:
        if self.intertwined:
            return bool(self.rng.uniform() < self.config.lambda_psi)
        return self.whole_episode_expert


def replay_fields(obs_dim: int, action_dim: int) -> dict[str, FieldSpec]:
    """The replay layout of REQ: state and psi(state) per slot; the executed action per step."""
    return {
        "obs": FieldSpec((obs_dim,)),
        "expert_action": FieldSpec((action_dim,)),
        "action": FieldSpec((action_dim,), kind="step"),
        "expert_acted": FieldSpec((), dtype="bool", kind="step"),
    }


@dataclass
class EpisodeRecord:
    seed: int
    success: bool
    steps: int
    expert_steps: int
    intertwined: bool
    whole_episode_expert: bool
    episode_return: float


def collect_episode(
    env: ExpertEnv,
    policy: Callable[[np.ndarray], np.ndarray],
    schedule: IntertwineSchedule,
    replay: ReplayBuffer | None,
    seed: int,
    on_step: Callable[[], None] | None = None,
) -> EpisodeRecord:
    """Run one episode with intertwining, writing every step to `replay` (if given).

    `policy(obs) -> action` in [-1, 1]^D is the exploring policy; `on_step()` runs after every
    environment step (the training loop's learner updates).
    """
    obs = env.reset(seed)
    schedule.start_episode()
    psi = env.expert_action
    if replay is not None:
        replay.add_first({"obs": obs, "expert_action": psi})
    steps = expert_steps = 0
    ret, success = 0.0, False
    while True:
        by_expert = schedule.expert_acts()
        action = psi if by_expert else np.clip(policy(obs), -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, success = env.step(action)
        steps += 1
        expert_steps += int(by_expert)
        ret += reward
        done = terminated or truncated
        psi = np.zeros_like(psi) if done else env.expert_action
        if replay is not None:
            replay.add({"action": action, "expert_acted": np.bool_(by_expert)}, reward=reward,
                       discount=0.0 if terminated else 1.0, next_obs={"obs": obs, "expert_action": psi})
        if on_step is not None:
            on_step()
        if done:
            return EpisodeRecord(seed, bool(success), steps, expert_steps, schedule.intertwined,
                                 schedule.whole_episode_expert, ret)
