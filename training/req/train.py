"""REQ / CRR training from a waypoint expert: intertwined data collection, replay, learner updates,
periodic held-out evaluation, TensorBoard, resumable checkpoints.

The loop is the shared harness (`training.harness.OffPolicyLoop`); REQ plugs in `REQAgent`: the
learner, its replay, the per-step update rule (normalisers fitted once `min_replay_steps` are
stored, then `updates_per_step` updates per step, fractions accumulating) and the intertwining
actors (`training.req.intertwine.IntertwinedActor`: the learner's own in the single-process loop,
CPU copies on Ray rollout workers with `workers > 0`). Training episode i of run seed s is reset
with `training.seeds.training_episode_seed(s, i)`; evaluations use held-out seeds
(`training.seeds.evaluation_episode_seed`).

Run directory (`training.harness.RunDir`):
    config.yaml        kind req + the TrainConfig (a resume with another config is refused)
    run.yaml           kind: req (what `rrl export` dispatches on)
    checkpoints/       `training.checkpoint` units, the newest and the previous one: `learner.pt`
                       (config, learner: networks, targets, optimisers; counters, RNG state, eval history)
                       and `replay.npz` (the replay buffer), written together and verified together;
                       the last one, written when training stops, is what `rrl export` reads
    tb/                TensorBoard logs
    eval.jsonl         one line per evaluation: frames, success_rate, wall_s, updates (rewritten from the
                       checkpoint's history on resume: evaluations a killed process made after its last
                       checkpoint go)
    summary.json       the summary `train` returns
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from training.checkpoint import CheckpointStore
from training.harness import CHECKPOINTS, LoopSchedule, OffPolicyLoop, RunDir, RunOptions, read_checkpoint  # noqa: F401
from training.harness import checkpoint_store as _checkpoint_store
from training.replay import ReplayBuffer
from training.req.env import ExpertEnv, TaskEnv
from training.req.intertwine import IntertwinedActor, IntertwineSchedule, intertwine_config, replay_fields
from training.req.config import REQConfig, TrainConfig  # noqa: F401 (re-exported)
from training.req.learner import Batch, REQActor, REQLearner
from training.seeds import EVAL_SEED_BASE, evaluation_episode_seed


def make_task_env(config: TrainConfig) -> TaskEnv:
    """The default env: `sim_bridge` task (state observations, no camera) plus its expert."""
    from policies.experts import make_expert
    from sim_bridge import make_task

    return TaskEnv(make_task(config.task), make_expert(config.task, variant=config.expert_variant, noise_std=config.expert_noise_std),
                   residual=config.residual, residual_scale=config.residual_scale, reward=config.reward)


def evaluate_learner(env: ExpertEnv, learner: REQLearner | REQActor, episodes: int, seed: int = EVAL_SEED_BASE,
                     acting: str | None = None) -> dict:
    """Deterministic episodes of the learned policy on held-out seeds from `seed` (`evaluation_episode_seed`)."""
    from training.evaluation import EvalResult

    seeds = [evaluation_episode_seed(i, first=seed) for i in range(episodes)]
    return EvalResult(evaluate_episodes(env, learner, seeds, acting)).summary()


def evaluate_episodes(env: ExpertEnv, actor, seeds: list[int], acting: str | None = None) -> list:
    """One deterministic episode per seed of `actor.act(obs, explore=False)` (a learner, a `REQActor`, or an
    `IntertwinedActor`'s policy, never its expert); `training.evaluation.EpisodeResult`s in seed order.

    A task env (`TaskEnv`) runs the policy through `training.evaluation.run_episode` over
    `env.evaluation_policy`: the composed policy with its safety layer, the loop `rrl eval` runs, so
    the results carry the safety counters. Runs on rollout workers too (`WorkerPool.evaluate`)."""
    from training.evaluation import EpisodeResult, run_episode

    policy = getattr(actor, "actor", actor)
    act = lambda vector: policy.act(vector, explore=False, acting=acting)  # noqa: E731
    if hasattr(env, "evaluation_policy"):
        composed = env.evaluation_policy(act)
        return [run_episode(env.task, composed, seed) for seed in seeds]
    out = []  # a bare rollout env (the tests' point tasks): the same episode, through the env's own step
    for seed in seeds:
        obs, t = env.reset(seed), 0
        while True:
            step = env.step(act(obs))
            obs, t = step.obs, t + 1
            if step.terminated or step.truncated:
                break
        out.append(EpisodeResult(seed=seed, success=bool(step.success), steps=t))
    return out


def evaluate_expert(env: ExpertEnv, episodes: int, seed: int = EVAL_SEED_BASE) -> dict:
    """The expert alone on the same held-out seeds."""
    wins = 0
    for i in range(episodes):
        env.reset(evaluation_episode_seed(i, first=seed))
        while True:
            step = env.step(env.expert_action)
            if step.terminated or step.truncated:
                break
        wins += int(step.success)
    return {"success_rate": wins / episodes, "episodes": episodes}


def to_batch(sample) -> Batch:
    t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    return Batch(obs=t(sample.obs["obs"]), action=t(sample.step["action"]), reward=t(sample.reward),
                 discount=t(sample.discount), next_obs=t(sample.next_obs["obs"]),
                 expert_action=t(sample.obs["expert_action"]))


def make_remote_actor(obs_dim: int, action_dim: int, config: TrainConfig, weights: dict) -> IntertwinedActor:
    """A rollout worker's actor: a CPU `REQActor` (weights by broadcast) with its own intertwining schedule."""
    actor = REQActor.from_state_dict(obs_dim, action_dim, config.learner, weights)
    return IntertwinedActor(actor, IntertwineSchedule(intertwine_config(config.mode), np.random.default_rng()),
                            run_seed=config.seed)


class REQAgent:
    """REQ / CRR as a `training.harness.OffPolicyAgent` (see the module docstring)."""

    def __init__(self, learner: REQLearner, replay: ReplayBuffer, config: TrainConfig, eval_env: ExpertEnv):
        self.learner, self.replay, self.config, self.eval_env = learner, replay, config, eval_env
        self.rng = np.random.default_rng(config.seed)
        self._local = IntertwinedActor(learner.actor, IntertwineSchedule(intertwine_config(config.mode), self.rng))
        self.updates_credit, self.fitted = 0.0, False

    @property
    def updates(self) -> int:
        return self.learner.num_updates

    def local_actor(self) -> IntertwinedActor:
        return self._local

    def remote_actor_factory(self):
        import functools

        return functools.partial(make_remote_actor, self.learner.obs_dim, self.learner.action_dim, self.config,
                                 self.learner.actor_state_dict())

    def actor_weights(self) -> dict:
        return self.learner.actor_state_dict()

    def after_step(self, frames: int) -> dict | None:
        c = self.config
        if len(self.replay) < c.min_replay_steps:
            return None
        if not self.fitted:
            warmup = self.replay.sample(min(len(self.replay), 10_000), 1, c.learner.discount, self.rng)
            self.learner.fit_normalizers(warmup.obs["obs"])
            self.fitted = True
        self.updates_credit += c.updates_per_step
        stats = None
        while self.updates_credit >= 1.0:
            self.updates_credit -= 1.0
            sample = self.replay.sample(c.learner.batch_size, c.learner.n_step, c.learner.discount, self.rng)
            stats = self.learner.update(to_batch(sample))
        return stats

    def evaluate(self, episodes: int, seed: int) -> dict:
        return evaluate_learner(self.eval_env, self.learner, episodes, seed)

    def state_dict(self) -> dict:
        return {"config": self.config.to_dict(), "learner": self.learner.state_dict(),
                "counters": {"updates_credit": self.updates_credit, "fitted": self.fitted},
                "obs_dim": self.learner.obs_dim, "action_dim": self.learner.action_dim}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.updates_credit, self.fitted = state["counters"]["updates_credit"], state["counters"]["fitted"]


def train(config: TrainConfig, out_dir: str | Path, env_factory: Callable[[TrainConfig], ExpertEnv] = make_task_env,
          progress: bool = True, resume: bool = True, max_wall_s: float | None = None,
          options: RunOptions = RunOptions(device="cpu")) -> dict:
    """Train; returns a summary dict (frames, episodes, wall_s, last evaluation, eval history, frames/s,
    updates/s, workers, device).

    `max_wall_s` (or `options.max_wall_s`) stops early (with a checkpoint) after that much wall time in this
    call; the same call resumes. `env_factory(config)` builds an environment (picklable when
    `options.workers > 0`: each rollout worker builds its own).
    """
    import dataclasses
    import functools

    from training.device import resolve_device

    options = dataclasses.replace(options, progress=progress and options.progress,
                                  max_wall_s=max_wall_s if max_wall_s is not None else options.max_wall_s)
    out = Path(out_dir)
    torch.set_num_threads(1)
    run = RunDir(out, "req", config.to_dict(), resume=resume, upgrade=lambda d: TrainConfig.from_dict(d).to_dict())
    env, eval_env = env_factory(config), env_factory(config)
    if config.train_horizon is not None:
        env.horizon = config.train_horizon
    learner = REQLearner(env.observation_dim, env.action_dim, config.learner, seed=config.seed,
                         device=resolve_device(options.device))
    replay = ReplayBuffer(min(config.replay_capacity, config.frames + config.frames // 2 + 10),
                          replay_fields(env.observation_dim, env.action_dim))
    agent = REQAgent(learner, replay, config, eval_env)
    (out / "run.yaml").write_text(yaml.safe_dump({"kind": "req", "algo": config.algo, "task": config.task}))
    schedule = LoopSchedule(frames=config.frames, seed=config.seed, eval_every_frames=config.eval_every_frames,
                            eval_episodes=config.eval_episodes, checkpoint_every_frames=config.checkpoint_every_frames)
    worker_env = functools.partial(_worker_env, env_factory, config)
    loop = OffPolicyLoop(agent, env, schedule, run, options, env_factory=worker_env, evaluate_episodes=evaluate_episodes,
                         device=str(learner.device), desc=f"{config.algo}/{config.mode} {config.task}")
    try:
        result = loop.train()
    finally:
        run.close()
    summary = {"task": config.task, "algo": config.algo, "mode": config.mode, "residual": config.residual,
               **result.summary(), "history": result.history}
    run.write_summary(summary)
    return summary


def _worker_env(env_factory: Callable[[TrainConfig], ExpertEnv], config: TrainConfig) -> ExpertEnv:
    env = env_factory(config)
    if config.train_horizon is not None:
        env.horizon = config.train_horizon
    return env


def checkpoint_store(out_dir: str | Path) -> CheckpointStore:
    """The REQ checkpoints of run `out_dir`; a run of the previous layout is refused (`CheckpointError`)."""
    return _checkpoint_store(out_dir, "req")


def load_learner(run_dir: str | Path) -> tuple[TrainConfig, REQLearner]:
    """The trained learner of a run: its newest verified checkpoint (the last one is written when training stops)."""
    config, learner, _ = load_run(run_dir)
    return config, learner


def load_run(run_dir: str | Path) -> tuple[TrainConfig, REQLearner, dict[str, np.ndarray]]:
    """`load_learner` plus the replay arrays of the same checkpoint (export samples observations from it)."""
    run_dir = Path(run_dir)
    found = read_checkpoint(checkpoint_store(run_dir))
    if found is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint in {run_dir / CHECKPOINTS} (not a `rrl train req` run, "
                                "or stopped before its first checkpoint)")
    _, state, replay_state = found
    config = TrainConfig.from_dict(state["config"])
    prior = state["learner"]["prior"]
    obs_dim, action_dim = prior["normalizer.mean"].shape[0], prior["mean_head.weight"].shape[0]
    learner = REQLearner(obs_dim, action_dim, config.learner, seed=config.seed)
    learner.load_state_dict(state["learner"])
    return config, learner, replay_state
