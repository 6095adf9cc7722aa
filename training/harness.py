"""One training harness: run options, the run directory, and the off-policy loop DMPO and REQ plug into.

- `RunOptions`: how a run executes, shared by `rrl train bc|residual|req` (`--device`, `--workers`,
  `--ray-address`, `--broadcast-every-updates`, `--max-wall-s`, `--progress`). Fields that do not
  change what is learned are not part of the resume check; `workers` and `broadcast_every_updates`
  change the data's order but not its distribution, so a run may resume with other values.
- `RunDir`: a run's directory. `config.yaml` (kind + the trainer's config; a resume with another
  config is refused, naming the fields that differ; the trainer's `from_dict` reads a saved config of an
  earlier version, so fields added since compare as their defaults), `checkpoints/` (`training.checkpoint`: one
  verified unit per checkpoint), `eval.jsonl` (one line per evaluation, rewritten from the
  checkpoint's history on resume: evaluations after the last checkpoint of a killed run are a lost
  branch), `summary.json`, `tb/` (TensorBoard). Run directories of the previous layouts are refused
  with a message naming the layout.
- `OffPolicyLoop`: act, store, learn, evaluate, log, checkpoint, for any `OffPolicyAgent`. With
  `workers == 0` it is the single-process loop, bit-for-bit what DMPO and REQ ran before this
  module existed for a fixed seed: the local actor shares the learner, and the learner's updates
  run between environment steps (`agent.after_step()`). With `workers = K` the episodes come from
  K Ray rollout actors (`training.workers.WorkerPool`) acting with weights broadcast every
  `broadcast_every_updates` learner updates; each finished episode is written to the replay with
  the same per-step update rule, so frames per update stay the agent's. Evaluations run on the
  workers too when the agent can evaluate there (same results as sequential for the same seeds).

Training episode i of run seed s is reset with `training.seeds.training_episode_seed(s, i)` whatever
the worker; held-out evaluation uses `training.seeds.EVAL_SEED_BASE` onwards.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import yaml

from training.checkpoint import Checkpoint, CheckpointError, CheckpointStore, npz_file, refuse_old_layout, torch_file
from training.output import writing
from training.replay import ReplayBuffer, state_counters
from training.rollout import Actor, EpisodeResult, RolloutEnv, run_episode
from training.seeds import EVAL_SEED_BASE, evaluation_episode_seed, training_episode_seed

CONFIG_FILE = "config.yaml"
EVAL_LOG = "eval.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINTS = "checkpoints"

OLD_LAYOUTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("checkpoint/learner.pt", "checkpoint/replay.npz"), "DMPO's checkpoint/learner.pt + replay.npz"),
    (("checkpoint.pt", "replay.npz", "final.pt"), "REQ's checkpoint.pt + replay.npz + final.pt"),
    (("checkpoints/last.pt", "checkpoints/best.pt"), "BC's checkpoints/last.pt + best.pt"),
)
"""Run-directory layouts of earlier versions: their files were written one by one (not verifiable)."""


class RunDirError(ValueError):
    """A run directory that cannot be used for this run; the message says why and what to do."""


@dataclass(frozen=True)
class RunOptions:
    """How a training run executes: the flags every `rrl train` subcommand shares."""

    device: str = "auto"
    """Where the networks, replay sampling and losses run: auto (cuda when available), cpu, cuda or cuda:N.
    Rollouts and exported artifacts stay on the CPU."""
    workers: int = 0
    """Ray rollout workers; 0 runs the single-process loop (bit-for-bit reproducible for a fixed seed)."""
    ray_address: str | None = None
    """Ray cluster to join (`ray start --head` prints it); default: the RAY_ADDRESS variable, else a local Ray."""
    broadcast_every_updates: int = 50
    """With workers: hand the learner's acting weights to the workers every this many updates."""
    max_wall_s: float | None = None
    """Stop (with a checkpoint) after this much wall time in this call; the same command resumes."""
    progress: bool = True
    """Show a progress bar (frames/s, updates/s, workers, restarts, the last evaluation)."""

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.broadcast_every_updates < 1:
            raise ValueError(f"broadcast_every_updates must be >= 1, got {self.broadcast_every_updates}")
        if self.max_wall_s is not None and not self.max_wall_s >= 0:
            raise ValueError(f"max_wall_s must be >= 0 (0: stop after the first episode), got {self.max_wall_s}")


def read_eval_log(root: str | Path) -> list[dict]:
    """The evaluations of run `root` (`eval.jsonl`), in order; [] before the first."""
    path = Path(root) / EVAL_LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _plain(x: Any) -> Any:
    """Config data as YAML reads it back (tuples -> lists), so saved and new configs compare equal."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def config_differences(saved: Any, config: dict, upgrade: Callable[[dict], dict] | None = None,
                       resumable: tuple[str, ...] | frozenset[str] = (), where: str = "the saved config") -> list[str]:
    """The fields in which `config` differs from a run's `saved` config, as `path: old -> new` lines, leaving out
    fields named in `resumable` (at any depth). `upgrade` first reads `saved` into this version's layout, so a
    field added since the run started compares as its default; a saved config it cannot read (a field this
    version does not know) is a `RunDirError` naming it."""
    if upgrade is not None and isinstance(saved, dict):
        try:
            saved = upgrade(saved)
        except (TypeError, ValueError, KeyError) as e:
            raise RunDirError(f"{where} cannot be read by this version of rrl ({e}); resume it with the version that "
                              "started it, or use a new --out") from None
    return [d for d in _diff(_plain(saved), _plain(config)) if d.split(":")[0].split(".")[-1] not in resumable]


RESUMABLE_CHANGES = ("frames", "eval_every_frames", "checkpoint_every_frames", "eval_episodes", "torch_threads")
"""Config fields a resumed run may change: the budget (extend a run) and the evaluation/checkpoint cadence."""


class RunDir:
    """A run's directory (see the module docstring). `resume` continues a run of the same kind and config
    (up to `RESUMABLE_CHANGES`)."""

    def __init__(self, root: str | Path, kind: str, config: dict, resume: bool = True,
                 upgrade: Callable[[dict], dict] | None = None):
        """`upgrade` reads a saved config into this version's layout (fields added since get their defaults,
        as the trainer's `from_dict` does); without it a field added since reads as a difference."""
        self.root = Path(root)
        self.kind = kind
        self.config = config = _plain(config)
        self.checkpoints = checkpoint_store(self.root, kind)
        path = self.root / CONFIG_FILE
        if path.exists():
            saved = yaml.safe_load(path.read_text()) or {}
            if saved.get("kind") != kind:
                raise RunDirError(f"{self.root} is a {saved.get('kind')!r} run, not {kind!r}: use another --out")
            if resume and self.has_checkpoint():
                differences = config_differences(saved.get("config"), config, upgrade, RESUMABLE_CHANGES,
                                                 where=str(path))
                if differences:
                    raise RunDirError(f"{self.root} was started with a different config; these fields differ: "
                                      + "; ".join(differences[:8]) + " (use the same options or a new --out)")
        with writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            self._write_text(CONFIG_FILE, yaml.safe_dump({"kind": kind, "config": config}, sort_keys=False))
        self._writer = None

    def has_checkpoint(self) -> bool:
        return bool(self.checkpoints.candidates())

    def _write_text(self, name: str, text: str) -> None:
        from training.checkpoint import write_file_atomic

        write_file_atomic(self.root / name, lambda f: f.write(text.encode()))

    @property
    def writer(self):
        """The run's TensorBoard writer (`tb/`), created on first use."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.root / "tb"))
        return self._writer

    def write_eval_log(self, history: list[dict]) -> None:
        self._write_text(EVAL_LOG, "".join(json.dumps(entry) + "\n" for entry in history))

    def append_eval(self, entry: dict) -> None:
        with writing(self.root / EVAL_LOG), open(self.root / EVAL_LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def read_eval_log(self) -> list[dict]:
        return read_eval_log(self.root)

    def write_summary(self, summary: dict) -> None:
        self._write_text(SUMMARY_FILE, json.dumps(summary, indent=1))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_checkpoint(store: CheckpointStore) -> tuple[Checkpoint, dict, dict[str, np.ndarray]] | None:
    """The newest verified checkpoint of an off-policy run: (checkpoint, state, replay arrays), None if none.

    Beyond the manifest's hashes the pair must agree: the replay holds one step per frame the state
    says was played, and the manifest's step is that frame count. `state` holds the agent's
    `state_dict()` entries (e.g. `learner`) plus `frames`, `episodes`, `wall_s`, `loop`, `numpy_rng`.
    """

    def check(ckpt: Checkpoint) -> tuple[dict, dict[str, np.ndarray]]:
        import torch

        state = torch.load(ckpt.file("learner.pt"), weights_only=False)
        with np.load(ckpt.file("replay.npz")) as z:
            replay_state = dict(z)
        steps = state_counters(replay_state)["steps"]
        if not state["frames"] == steps == ckpt.step:
            raise CheckpointError(f"{ckpt.path}: learner.pt counts {state['frames']} frames, replay.npz holds {steps} "
                                  f"steps, the manifest says step {ckpt.step}: not one checkpoint")
        return state, replay_state

    found = store.load(check)
    if found is None:
        return None
    ckpt, (state, replay_state) = found
    return ckpt, state, replay_state


def checkpoint_store(root: str | Path, kind: str) -> CheckpointStore:
    """The checkpoints of run `root` (`RUN/checkpoints`); a run of a previous layout is refused (`CheckpointError`)."""
    for files, layout in OLD_LAYOUTS:
        refuse_old_layout(root, files, layout)
    return CheckpointStore(Path(root) / CHECKPOINTS, kind)


def _fit_replay(replay: ReplayBuffer, replay_state: dict) -> ReplayBuffer:
    """A replay that can take `replay_state`: a run extended on resume sizes its replay by the new budget;
    a saved buffer that never wrapped moves into the new size, one that wrapped keeps its own."""
    saved = state_counters(replay_state)
    if saved["capacity"] == replay.capacity:
        return replay
    if saved["written"] <= min(saved["capacity"], replay.capacity):
        counters = np.asarray(replay_state["counters"]).copy()
        counters[0] = replay.capacity
        replay_state["counters"] = counters
        return replay
    return ReplayBuffer(saved["capacity"], replay.fields)


class OffPolicyAgent(Protocol):
    """What DMPO and REQ plug into `OffPolicyLoop`: a learner with its replay, and actors for it."""

    replay: ReplayBuffer
    rng: np.random.Generator
    """The loop's numpy stream (replay sampling; REQ's intertwining): part of the checkpoint."""

    @property
    def updates(self) -> int: ...

    def local_actor(self) -> Actor:
        """The in-process exploring actor (shares the learner's networks and random streams)."""
        ...

    def remote_actor_factory(self) -> Callable[[], Actor]:
        """A picklable factory of a CPU exploring actor for a rollout worker (weights come by broadcast)."""
        ...

    def actor_weights(self) -> dict:
        """The acting networks' weights as CPU tensors (what `Actor.load_weights` takes)."""
        ...

    def after_step(self, frames: int) -> dict | None:
        """Called after each stored frame (`frames` = frames so far): runs the learner updates owed by now;
        returns the last update's stats, or None when none ran."""
        ...

    def evaluate(self, episodes: int, seed: int) -> dict:
        """Deterministic held-out episodes in this process: at least success_rate, episodes, mean_steps_success."""
        ...

    def state_dict(self) -> dict:
        """The agent's part of a checkpoint (CPU tensors), e.g. {"learner": ..., counters}; keys other than
        frames, episodes, wall_s, loop and numpy_rng (the loop's)."""
        ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass(frozen=True)
class LoopSchedule:
    """The loop's budget and cadence (fields every off-policy trainer config has)."""

    frames: int
    """Environment steps to collect."""
    seed: int
    """Run seed: its training episodes are `training_episode_seed(seed, i)`."""
    eval_every_frames: int
    """Evaluate the deterministic policy every this many frames (and at frame 0 and the end)."""
    eval_episodes: int
    """Held-out episodes per evaluation (seeds EVAL_SEED_BASE, +1, ...)."""
    checkpoint_every_frames: int
    """Write a checkpoint at the first episode end after this many frames."""
    frames_offset: int = 0
    """Frames spent elsewhere (statistics episodes), added to the logged frame counts."""


@dataclass
class LoopState:
    frames: int = 0
    episodes: int = 0
    """Training episodes started (the next episode's index)."""
    next_eval: int = 0
    next_checkpoint: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    restarts: int = 0


@dataclass
class LoopResult:
    frames: int
    episodes: int
    updates: int
    wall_s: float
    finished: bool
    """False when stopped by `max_wall_s` (resumable)."""
    history: list[dict]
    workers: int
    restarts: int
    frames_per_s: float
    updates_per_s: float
    device: str

    def summary(self) -> dict:
        return {"frames": self.frames, "episodes": self.episodes, "updates": self.updates,
                "wall_s": round(self.wall_s, 1), "finished": self.finished, "workers": self.workers,
                "worker_restarts": self.restarts, "frames_per_s": round(self.frames_per_s, 2),
                "updates_per_s": round(self.updates_per_s, 2), "device": self.device,
                "last_eval": self.history[-1] if self.history else None}


class OffPolicyLoop:
    """The one act/store/learn/evaluate/checkpoint loop (see the module docstring)."""

    def __init__(self, agent: OffPolicyAgent, env: RolloutEnv, schedule: LoopSchedule, run: RunDir,
                 options: RunOptions = RunOptions(), env_factory: Callable[[], RolloutEnv] | None = None,
                 evaluate_episodes: Callable | None = None, device: str = "cpu", desc: str = "train"):
        self.agent, self.env, self.schedule, self.run, self.options = agent, env, schedule, run, options
        self.env_factory = env_factory
        """Picklable factory of the environment for rollout workers (needed when options.workers > 0)."""
        self.evaluate_episodes = evaluate_episodes
        """Picklable `(env, actor, seeds) -> [EpisodeResult-like with success, steps]` run on workers; None:
        evaluations run in this process through `agent.evaluate`."""
        self.device, self.desc = device, desc
        self.state = LoopState(next_checkpoint=schedule.checkpoint_every_frames)
        self.pool = None

    # --- checkpoints -----------------------------------------------------------------------------

    def _resume(self) -> None:
        found = read_checkpoint(self.run.checkpoints)
        if found is None:
            return
        _, state, replay_state = found
        self.agent.load_state_dict(state)
        self.agent.replay = _fit_replay(self.agent.replay, replay_state)
        self.agent.replay.load_state_dict(replay_state)
        self.agent.rng.bit_generator.state = state["numpy_rng"]
        self.state = LoopState(**state["loop"])

    def _checkpoint(self, wall_s: float) -> None:
        self.state.wall_s = wall_s
        payload = {**self.agent.state_dict(), "frames": self.state.frames, "episodes": self.state.episodes,
                   "wall_s": wall_s, "loop": dict(self.state.__dict__), "numpy_rng": self.agent.rng.bit_generator.state}
        self.run.checkpoints.save(self.state.frames, {"learner.pt": torch_file(payload),
                                                      "replay.npz": npz_file(self.agent.replay.state_dict())},
                                  meta={"frames": self.state.frames, "episodes": self.state.episodes,
                                        "replay_steps": self.agent.replay.steps_added})

    # --- evaluation ------------------------------------------------------------------------------

    def _evaluate(self, wall_s: float) -> dict:
        s = self.schedule
        if self.pool is not None and self.evaluate_episodes is not None:
            from training.evaluation import EvalResult

            self.pool.broadcast(self.agent.actor_weights())
            seeds = [evaluation_episode_seed(i) for i in range(s.eval_episodes)]
            result = EvalResult(self.pool.evaluate(self.evaluate_episodes, seeds)).summary()
        else:
            result = self.agent.evaluate(s.eval_episodes, EVAL_SEED_BASE)
        total = self.state.frames + s.frames_offset
        entry = {"frames": total, "wall_s": round(wall_s, 1), "success_rate": result["success_rate"],
                 "mean_steps_success": result.get("mean_steps_success"), "episodes": result["episodes"],
                 "updates": self.agent.updates}
        self.state.history.append(entry)
        self.run.append_eval(entry)
        w = self.run.writer
        w.add_scalar("eval/success_rate", result["success_rate"], total)
        if result.get("mean_steps_success") is not None:
            w.add_scalar("eval/mean_steps_success", result["mean_steps_success"], total)
        return entry

    def _evaluated_now(self) -> bool:
        """The last evaluation was at the current frame count."""
        return bool(self.state.history) and self.state.history[-1]["frames"] == self.state.frames + self.schedule.frames_offset

    # --- the loop --------------------------------------------------------------------------------

    def train(self) -> LoopResult:
        from tqdm import tqdm

        s, opts = self.schedule, self.options
        self._resume()
        self.run.write_eval_log(self.state.history)
        start = time.monotonic()
        wall0, frames0, updates0 = self.state.wall_s, self.state.frames, self.agent.updates
        wall = lambda: wall0 + time.monotonic() - start  # noqa: E731
        bar = tqdm(total=s.frames, initial=self.state.frames, desc=self.desc, unit="frame", disable=not opts.progress,
                   dynamic_ncols=True, smoothing=0.05)
        writer = self.run.writer
        stopped_early = False
        if opts.workers > 0:
            from training.workers import WorkerPool

            if self.env_factory is None:
                raise ValueError("workers > 0 needs an env_factory (the environment each rollout worker builds)")
            self.pool = WorkerPool(self.env_factory, self.agent.remote_actor_factory(), opts.workers, opts.ray_address)
            self.pool.restarts = self.state.restarts
        try:
            last_stats: dict = {}
            last_broadcast = -math.inf
            stats_logged_at = self.agent.updates

            def on_step() -> None:
                nonlocal last_stats, stats_logged_at
                self.state.frames += 1
                bar.update(1)
                stats = self.agent.after_step(self.state.frames)
                if stats:
                    last_stats = stats
                if self.agent.updates - stats_logged_at >= 100 and last_stats:
                    stats_logged_at = self.agent.updates
                    for key, value in last_stats.items():
                        writer.add_scalar(f"learner/{key}", value, self.state.frames + s.frames_offset)

            def log_episode(result: EpisodeResult) -> None:
                total = self.state.frames + s.frames_offset
                writer.add_scalar("train/episode_return", result.episode_return, total)
                writer.add_scalar("train/episode_success", float(result.success), total)
                for key, value in result.info.items():
                    writer.add_scalar(f"train/{key}", value / max(result.steps, 1) if key.endswith("steps") else value, total)
                elapsed = max(time.monotonic() - start, 1e-9)
                fps, ups = (self.state.frames - frames0) / elapsed, (self.agent.updates - updates0) / elapsed
                writer.add_scalar("speed/frames_per_s", fps, total)
                writer.add_scalar("speed/updates_per_s", ups, total)
                writer.add_scalar("speed/workers", opts.workers, total)
                writer.add_scalar("speed/worker_restarts", self.pool.restarts if self.pool else 0, total)
                post = {"fps": f"{fps:.0f}", "ups": f"{ups:.1f}"}
                if self.pool is not None:
                    post.update(workers=opts.workers, restarts=self.pool.restarts)
                if self.state.history:
                    post["eval"] = f"{self.state.history[-1]['success_rate']:.2f}"
                bar.set_postfix(post)

            while self.state.frames < s.frames:
                if self.state.frames >= self.state.next_eval:
                    if not self._evaluated_now():  # a finished run extended on resume ended with this evaluation
                        self._evaluate(wall())
                    self.state.next_eval += s.eval_every_frames
                if self.pool is None:
                    index = self.state.episodes
                    result = run_episode(self.env, self.agent.local_actor(), training_episode_seed(s.seed, index),
                                         self.agent.replay, on_step=on_step, index=index)
                    self.state.episodes += 1
                else:
                    if self.agent.updates - last_broadcast >= opts.broadcast_every_updates or last_broadcast < 0:
                        self.pool.broadcast(self.agent.actor_weights())
                        last_broadcast = self.agent.updates
                    for worker in self.pool.idle_workers():
                        index = self.state.episodes
                        self.pool.submit(worker, training_episode_seed(s.seed, index), index)
                        self.state.episodes += 1
                    buffer, _, _ = self.pool.next_episode()
                    buffer.write_to(self.agent.replay, on_step=on_step)
                    result = buffer.result
                    self.state.restarts = self.pool.restarts
                log_episode(result)
                if self.state.next_checkpoint <= self.state.frames < s.frames:  # the last one is written below
                    self.state.next_checkpoint = self.state.frames + s.checkpoint_every_frames
                    if self.pool is not None:
                        self.pool.drain()
                    self._checkpoint(wall())
                if opts.max_wall_s is not None and time.monotonic() - start > opts.max_wall_s:
                    stopped_early = self.state.frames < s.frames
                    break
            if self.pool is not None:
                self.pool.drain()
            if not self._evaluated_now():
                self._evaluate(wall())
            self._checkpoint(wall())
        finally:
            bar.close()
            if self.pool is not None:
                self.state.restarts = self.pool.restarts
                self.pool.close()
                self.pool = None
        elapsed = max(time.monotonic() - start, 1e-9)
        return LoopResult(frames=self.state.frames, episodes=self.state.episodes, updates=self.agent.updates,
                          wall_s=wall(), finished=not stopped_early, history=list(self.state.history),
                          workers=opts.workers, restarts=self.state.restarts,
                          frames_per_s=(self.state.frames - frames0) / elapsed,
                          updates_per_s=(self.agent.updates - updates0) / elapsed, device=self.device)
