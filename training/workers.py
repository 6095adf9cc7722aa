"""Parallel rollouts on Ray: K rollout actors, each owning its task, acting with broadcast weights.

`WorkerPool(env_factory, actor_factory, workers)` starts `workers` Ray actors (`RolloutWorker`).
Each builds its own environment (its own simulator instance and, for a residual on an image base,
its own frozen BC feature extractor) and its own CPU actor, once. The learner then

- `broadcast(weights)`: puts the acting weights (CPU tensors) in the object store once and hands
  them to every worker; a worker acts with the latest weights it has received;
- `submit(seed, index)` / `next_episode()`: keeps episodes in flight and returns finished ones
  (`training.rollout.EpisodeBuffer`, transitions ready to be written to the learner's replay)
  in the order they finish;
- `evaluate(evaluate_episodes, seeds)`: runs deterministic held-out episodes on the workers, split
  by seed and returned in seed order: the same results as a sequential evaluation, because every
  episode depends only on its seed and the weights.

A worker that dies (killed, out of memory, a crashed simulator) is replaced by a new actor with the
latest weights, its episode is run again (same seed, same index) and `restarts` counts it.

Ray is the engine: `ray.init()` starts a local Ray when no cluster is given; `address` (or the
RAY_ADDRESS environment variable) joins a running cluster (`ray start --head` on one machine,
`ray start --address HEAD:6379` on the others). Workers reserve one CPU each.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from training.rollout import EpisodeBuffer, run_episode


class RolloutWorker:
    """One rollout process: an environment, a CPU actor, the latest weights (a Ray actor class)."""

    def __init__(self, env_factory: Callable[[], Any], actor_factory: Callable[[], Any], worker_index: int):
        import torch

        torch.set_num_threads(1)
        self.env = env_factory()
        self.actor = actor_factory()
        self.worker_index = worker_index
        self.version = -1

    def pid(self) -> int:
        return os.getpid()

    def set_weights(self, weights: dict, version: int) -> int:
        self.actor.load_weights(weights)
        self.version = version
        return version

    def run(self, seed: int, index: int) -> tuple[EpisodeBuffer, int]:
        """One exploring episode; returns its transitions and the weights version it acted with."""
        buffer = EpisodeBuffer(seed=seed, index=index)
        run_episode(self.env, self.actor, seed, buffer, index=index)
        return buffer, self.version

    def evaluate(self, evaluate_episodes: Callable, seeds: list[int]) -> list:
        return evaluate_episodes(self.env, self.actor, seeds)

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if close is not None:
            close()


@dataclass
class _InFlight:
    worker: int
    seed: int
    index: int


class WorkerPool:
    """K Ray rollout actors behind submit / next_episode / broadcast / evaluate (see the module docstring)."""

    def __init__(self, env_factory: Callable[[], Any], actor_factory: Callable[[], Any], workers: int,
                 address: str | None = None):
        import ray

        if workers < 1:
            raise ValueError(f"a worker pool needs >= 1 worker, got {workers}")
        self.ray = ray
        self.env_factory, self.actor_factory = env_factory, actor_factory
        self.workers = workers
        self.restarts = 0
        self.started_ray = False
        if not ray.is_initialized():
            init_ray(address, workers)
            self.started_ray = True
        self._remote_cls = ray.remote(num_cpus=1, max_restarts=0)(RolloutWorker)
        self.actors = [self._spawn(i) for i in range(workers)]
        self.weights_ref = None
        self.version = -1
        self.in_flight: dict[Any, _InFlight] = {}

    def _spawn(self, i: int):
        return self._remote_cls.remote(self.env_factory, self.actor_factory, i)

    # --- weights --------------------------------------------------------------------------------

    def broadcast(self, weights: dict) -> int:
        """Hand `weights` (CPU tensors) to every worker; returns the new version number."""
        self.version += 1
        self.weights_ref = self.ray.put(weights)
        for actor in self.actors:
            actor.set_weights.remote(self.weights_ref, self.version)  # ordered before the actor's next call
        return self.version

    # --- episodes -------------------------------------------------------------------------------

    def idle_workers(self) -> list[int]:
        busy = {f.worker for f in self.in_flight.values()}
        return [i for i in range(self.workers) if i not in busy]

    def submit(self, worker: int, seed: int, index: int) -> None:
        ref = self.actors[worker].run.remote(seed, index)
        self.in_flight[ref] = _InFlight(worker, seed, index)

    def next_episode(self, timeout_s: float | None = None) -> tuple[EpisodeBuffer, int, int] | None:
        """The next finished episode: (transitions, worker, weights version); None on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.in_flight:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=left)
            if not ready:
                return None
            ref = ready[0]
            job = self.in_flight.pop(ref)
            try:
                buffer, version = self.ray.get(ref)
            except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError):
                self._replace(job.worker)
                self.submit(job.worker, job.seed, job.index)  # the same episode, on the new worker
                continue
            return buffer, job.worker, version
        return None

    def _replace(self, worker: int) -> None:
        """A dead worker: a new actor in its slot, with the latest weights; counted in `restarts`."""
        self.restarts += 1
        try:
            self.ray.kill(self.actors[worker], no_restart=True)
        except Exception:  # already gone
            pass
        self.actors[worker] = self._spawn(worker)
        if self.weights_ref is not None:
            self.actors[worker].set_weights.remote(self.weights_ref, self.version)

    def drain(self) -> None:
        """Forget the episodes in flight (a checkpoint or the end of the run does not wait for them)."""
        for ref in list(self.in_flight):
            self.ray.cancel(ref, force=False)
        self.in_flight.clear()

    def worker_pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    # --- evaluation -----------------------------------------------------------------------------

    def evaluate(self, evaluate_episodes: Callable, seeds: list[int]) -> list:
        """Deterministic episodes on `seeds`, split over the workers; results in seed order."""
        shards = [seeds[i::self.workers] for i in range(self.workers)]
        while True:
            refs = [(i, self.actors[i].evaluate.remote(evaluate_episodes, shard)) for i, shard in enumerate(shards) if shard]
            results: dict[int, list] = {}
            failed = []
            for i, ref in refs:
                try:
                    results[i] = self.ray.get(ref)
                except (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError):
                    failed.append(i)
            if not failed:
                break
            for i in failed:  # evaluation is deterministic: run the whole evaluation again on the new workers
                self._replace(i)
        out: list = [None] * len(seeds)
        for i, shard_results in results.items():
            for k, r in enumerate(shard_results):
                out[i + k * self.workers] = r
        return out

    def close(self) -> None:
        self.in_flight.clear()
        for actor in self.actors:
            try:
                self.ray.get(actor.close.remote(), timeout=10)
            except Exception:  # a dead worker has nothing to close
                pass
            self.ray.kill(actor, no_restart=True)
        self.actors = []
        if self.started_ray:
            self.ray.shutdown()


def init_ray(address: str | None = None, workers: int = 1) -> None:
    """Connect to Ray: `address` or `RAY_ADDRESS` (a cluster), else a local Ray with `workers` CPUs whose
    workers import the project the way this process does (tests, scripts) and run one thread each. A pool
    started while Ray is already up (a long-lived driver, the tests' shared session) leaves it up on close."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    env_vars = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=True,
             runtime_env={"env_vars": env_vars}, **({} if address else {"num_cpus": max(workers, 1)}))


def episode_rng(run_seed: int, index: int) -> np.random.Generator:
    """The exploration noise stream of training episode `index` of run seed `run_seed` (any worker)."""
    return np.random.default_rng([run_seed, index])
