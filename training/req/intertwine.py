"""Intertwining exploration (Algorithm 3 of the REQ paper, App. A.5) and episode collection.

Per episode: with probability lambda_intertwine the episode is intertwined, and every step acts
with the expert with probability lambda_psi (else with the policy); otherwise the whole episode
acts with the expert with probability lambda_psi (else with the policy throughout).
(Alg. 3 as printed assigns `a ~ pi` when act_with_psi is true; the text of Sec. 4 says the
opposite, which is what the name means and what we do.)

Modes (Table 6): RLfD = (lambda_intertwine 0, lambda_psi 0.25): a quarter of the episodes are
expert demonstrations; RLfSE = (0.5, 0.75). Expected fraction of expert steps is lambda_psi in
both cases. `scratch` = (0, 0): the expert never acts, the way the paper learns its primitives
(with eq. 3 alone: `REQConfig.expert_action_improvement` off, which `TrainConfig` requires).

Expert and policy steps go to one replay; every stored state carries psi(s) (`expert_action`),
so eq. 4 can use the expert's label on states the policy visited. Episodes are collected by the
shared `training.rollout.run_episode` with `IntertwinedActor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from training.replay import FieldSpec, ReplayBuffer


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
    "scratch": IntertwineConfig(lambda_intertwine=0.0, lambda_psi=0.0),
}
"""Table 6 of the paper, plus `scratch` (no expert steps: a primitive learned from scratch)."""


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


class IntertwinedActor:
    """The exploring actor of REQ (a `training.rollout.Actor`): per step the expert's psi(s) or the policy.

    `actor.act(obs, explore=True)` (a `training.req.learner.REQActor`: the learner's own, or a rollout
    worker's CPU copy) is the exploring policy, in [-1, 1]^D; the schedule decides who acts. Every
    stored state carries psi(s) as `expert_action` (zeros on a terminal state), every step
    `expert_acted`, into one replay.

    In the single-process loop the schedule draws from the run's numpy stream and the policy from the
    learner's generator (as always); on a rollout worker (`run_seed` given) each episode draws both
    from its own streams, seeded by (run seed, episode index) whichever worker runs it."""

    def __init__(self, actor, schedule: IntertwineSchedule, run_seed: int | None = None):
        self.actor, self.schedule, self.run_seed = actor, schedule, run_seed
        self.psi: np.ndarray | None = None

    def start_episode(self, seed: int, index: int) -> None:
        if self.run_seed is not None:
            from training.workers import episode_rng

            self.schedule.rng = episode_rng(self.run_seed, index)
            self.actor.generator.manual_seed(int(self.schedule.rng.integers(2**62)))
        self.schedule.start_episode()

    def observe(self, env, done: bool) -> dict:
        self.psi = np.zeros(env.action_dim, np.float32) if done else np.asarray(env.expert_action, np.float32)
        return {"expert_action": self.psi}

    def act(self, obs: np.ndarray, env) -> tuple[np.ndarray, dict]:
        by_expert = self.schedule.expert_acts()
        action = self.psi if by_expert else np.clip(self.actor.act(obs, explore=True), -1.0, 1.0).astype(np.float32)
        return action, {"expert_acted": np.bool_(by_expert)}

    def episode_info(self) -> dict:
        return {"intertwined": int(self.schedule.intertwined), "whole_episode_expert": int(self.schedule.whole_episode_expert)}

    def load_weights(self, weights: dict) -> None:
        self.actor.load_state_dict(weights)
