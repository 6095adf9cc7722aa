"""The shared harness (training.harness) with Ray rollout workers (training.workers), on the point mass.

- `--workers 0` is bit-for-bit reproducible for a fixed seed, on the pre-harness loop's update schedule;
- a 2-worker run learns like the single-process one;
- a worker that dies is replaced, counted, and the run completes; evaluations on the workers give the
  same results as sequential ones for the same seeds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from training.dmpo.learner import DMPOConfig
from training.dmpo.train import TrainConfig, train
from training.harness import RunOptions, read_eval_log

from .point_mass import PointMassReach, evaluate_point_mass

TINY = DMPOConfig(
    policy_hidden=(64, 64), critic_hidden=(64, 64), init_std=0.5, init_log_temperature=1.0, init_log_alpha_mean=1.0,
    init_log_alpha_std=10.0, target_update_period=50, epsilon_mean=0.01, epsilon_std=1e-4, policy_lr=1e-3, critic_lr=1e-3,
)


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for this module's worker tests (pools leave a Ray they did not start running)."""
    import ray

    from training.workers import init_ray

    init_ray(workers=2)
    yield
    ray.shutdown()


def learner_checksum(learner) -> str:
    h = hashlib.sha256()
    for module in (learner.policy, learner.critic):
        for _, v in sorted(module.state_dict().items()):
            h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_single_process_loop_is_bit_for_bit_reproducible_for_a_fixed_seed(tmp_path):
    """`--device cpu --workers 0`: two runs of one config give the same networks bit for bit, on the update
    schedule of the pre-harness DMPO loop (207 learner steps for this config, as at commit 6fceb69).

    The weights themselves are not pinned across machines: float32 matmuls round differently on other CPUs
    (the pre-harness checksum e37683f7... of this config holds on the machine it was made on, not on an AMD EPYC)."""
    small = DMPOConfig(policy_hidden=(32, 32), critic_hidden=(32, 32), init_std=0.5, init_log_temperature=1.0,
                       init_log_alpha_mean=1.0, init_log_alpha_std=10.0, target_update_period=50, epsilon_mean=0.01,
                       epsilon_std=1e-4, policy_lr=1e-3, critic_lr=1e-3)
    cfg = TrainConfig(frames=600, batch_size=32, min_replay=200, frames_per_update=2, eval_every_frames=300, gamma=0.95,
                      learner=small, seed=3)

    def run(out):
        learner = train(PointMassReach(), lambda act: evaluate_point_mass(act, episodes=5), cfg, out, np.zeros(4),
                        np.full(4, 0.6), progress=False, options=RunOptions(device="cpu", workers=0))
        return learner.steps, learner_checksum(learner), [r["success_rate"] for r in read_eval_log(out)]

    first, second = run(tmp_path / "a"), run(tmp_path / "b")
    assert first[0] == 207 and first == second
    other_seed = train(PointMassReach(), lambda act: evaluate_point_mass(act, episodes=5),
                       TrainConfig(**{**cfg.__dict__, "seed": 4}), tmp_path / "c", np.zeros(4), np.full(4, 0.6),
                       progress=False, options=RunOptions(device="cpu", workers=0))
    assert learner_checksum(other_seed) != first[1]  # the checksum does see the seed


@pytest.mark.timeout(900)
def test_two_ray_workers_learn_the_point_mass_like_one_process(tmp_path, ray_session):
    cfg = TrainConfig(frames=4000, batch_size=64, min_replay=300, frames_per_update=1, eval_every_frames=2000, gamma=0.95,
                      learner=TINY)
    learner = train(PointMassReach(), evaluate_point_mass, cfg, tmp_path, np.zeros(4), np.full(4, 0.6), progress=False,
                    options=RunOptions(device="cpu", workers=2, broadcast_every_updates=20), env_factory=PointMassReach)
    rows = read_eval_log(tmp_path)
    assert float(rows[0]["success_rate"]) <= 0.2 and float(rows[-1]["success_rate"]) >= 0.7, rows
    assert learner.result.workers == 2 and learner.result.restarts == 0 and learner.result.frames >= 4000


class DiesOnce(PointMassReach):
    """A point mass whose process dies (os._exit: no cleanup, like a crashed simulator) at its 3rd episode,
    the first time only (a marker file remembers it across processes)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker, self.resets = Path(marker), 0

    def reset(self, seed: int) -> np.ndarray:
        self.resets += 1
        if self.resets == 3 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().reset(seed)


def evaluate_point_mass_episodes(env, actor, seeds):
    from training.evaluation import EpisodeResult

    out = []
    for seed in seeds:
        obs, done, t = env.reset(seed), False, 0
        while not done:
            with torch.no_grad():
                step = env.step(actor.policy(torch.as_tensor(obs)[None])[0][0].numpy())
            obs, done, t = step.obs, step.terminated or step.truncated, t + 1
        out.append(EpisodeResult(seed=seed, success=step.success, steps=t))
    return out


@pytest.mark.timeout(900)
def test_a_dead_worker_is_replaced_and_evaluations_match_sequential(tmp_path, ray_session):
    import functools

    from training.dmpo.train import make_agent, make_remote_actor
    from training.workers import WorkerPool

    marker = tmp_path / "died"
    cfg = TrainConfig(frames=500, batch_size=32, min_replay=200, frames_per_update=4, eval_every_frames=10_000,
                      learner=TINY)
    learner = train(PointMassReach(), lambda act: evaluate_point_mass(act, episodes=3), cfg, tmp_path / "run",
                    np.zeros(4), np.full(4, 0.6), progress=False, options=RunOptions(device="cpu", workers=2),
                    env_factory=functools.partial(DiesOnce, str(marker)))
    assert marker.exists() and learner.result.restarts == 1 and learner.result.frames >= 500 and learner.result.finished

    policy = learner.cpu_policy()
    pool = WorkerPool(PointMassReach, functools.partial(make_remote_actor, policy, 0), workers=2)
    try:
        pool.broadcast(learner.actor_state_dict())
        seeds = list(range(1_000_000, 1_000_007))
        on_workers = pool.evaluate(evaluate_point_mass_episodes, seeds)
    finally:
        pool.close()
    sequential = evaluate_point_mass_episodes(PointMassReach(), make_remote_actor(policy, 0), seeds)
    assert [(e.seed, e.success, e.steps) for e in on_workers] == [(e.seed, e.success, e.steps) for e in sequential]
