"""REQ / CRR training from a waypoint expert: intertwined data collection, replay, learner updates,
periodic held-out evaluation, TensorBoard, resumable checkpoints.

Reads top to bottom: build env + replay + learner, (resume), then loop over episodes until
`frames` environment steps were taken; every step may trigger learner updates, every
`eval_every_frames` an evaluation over held-out seeds (`training.seeds.evaluation_episode_seed`),
every `checkpoint_every_frames` a checkpoint (at an episode boundary, so resuming is exact up to
the RNG draws of the interrupted episode). Training episode i of run seed s is reset with
`training.seeds.training_episode_seed(s, i)`.

Run directory:
    config.yaml        the TrainConfig
    run.yaml           kind: req (what `rrl export` dispatches on)
    checkpoints/       `training.checkpoint` units, the newest and the previous one: `learner.pt`
                       (config, learner: networks, targets, optimisers; counters, RNG state, eval history)
                       and `replay.npz` (the replay buffer), written together and verified together;
                       the last one, written when training stops, is what `rrl export` reads
    tb/                TensorBoard logs
    eval.jsonl         one line per evaluation: frames, success_rate, wall_s (rewritten from the checkpoint's
                       history on resume: evaluations a killed process made after its last checkpoint go)
    summary.json       the summary `train` returns
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from training.checkpoint import Checkpoint, CheckpointError, CheckpointStore, npz_file, refuse_old_layout, torch_file
from training.replay import ReplayBuffer, state_counters
from training.req.env import ExpertEnv, TaskEnv
from training.req.intertwine import IntertwineSchedule, collect_episode, intertwine_config, replay_fields
from training.req.learner import Batch, REQConfig, REQLearner
from training.seeds import EVAL_SEED_BASE, check_run_seed, evaluation_episode_seed, training_episode_seed

CHECKPOINTS = "checkpoints"
"""The run's checkpoint directory (`training.checkpoint` layout)."""
OLD_LAYOUT = ("checkpoint.pt", "replay.npz", "final.pt")
"""The previous layout's separately written files (refused: the pair cannot be verified)."""


@dataclass(frozen=True)
class TrainConfig:
    """One REQ/CRR training run."""

    task: str
    """Task name (`sim_bridge.make_task`), e.g. `ur5_bowl`."""
    mode: str = "rlfse"
    """Exploration: `rlfse` (intertwining, lambda_intertwine 0.5, lambda_psi 0.75) or `rlfd` (0, 0.25)."""
    expert_variant: str | None = None
    """Expert variant (`controllers.experts.make_expert`), e.g. the suboptimal `no_retry`."""
    expert_noise_std: float = 0.0
    """Gaussian noise on the expert's linear velocity, m/s (another knob to make an expert suboptimal)."""
    residual: bool = False
    """Learn a residual on top of the expert (obs gets u, action = u + c * a) instead of a full policy."""
    residual_scale: float = 0.5
    """c: the residual's range as a fraction of the action half-range (residual only)."""
    train_horizon: int | None = None
    """Cap on training episodes' length in steps (a time-limit truncation, bootstrapped); None = the task's
    horizon. Evaluation always runs the full task horizon."""
    frames: int = 20_000
    """Environment steps to collect (expert and policy steps together)."""
    seed: int = 0
    """Seed of networks and sampling; picks the run's training episodes
    (`training.seeds.training_episode_seed(seed, i)`). In [0, 1000)."""
    learner: REQConfig = field(default_factory=REQConfig)
    """REQ / CRR hyperparameters."""
    replay_capacity: int = 1_000_000
    """Replay slots (paper: 1e6)."""
    min_replay_steps: int = 1000
    """Steps collected before the first update (they also fix the observation statistics)."""
    updates_per_step: float = 0.5
    """Learner updates per environment step (fractions accumulate)."""
    eval_every_frames: int = 2000
    """Frames between evaluations."""
    eval_episodes: int = 20
    """Held-out episodes per periodic evaluation (`training.seeds.evaluation_episode_seed(0, 1, ...)`)."""
    checkpoint_every_frames: int = 5000
    """Frames between checkpoints (written at the next episode boundary)."""

    def __post_init__(self) -> None:
        intertwine_config(self.mode)
        check_run_seed(self.seed)
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.updates_per_step < 0:
            raise ValueError(f"updates_per_step must be >= 0, got {self.updates_per_step}")
        for name in ("replay_capacity", "min_replay_steps", "eval_every_frames", "eval_episodes", "checkpoint_every_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.learner, dict):
            object.__setattr__(self, "learner", REQConfig(**self.learner))

    @property
    def algo(self) -> str:
        return "req" if self.learner.operator == "req" else "crr"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["learner"]["hidden"] = list(d["learner"]["hidden"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}")
        d = dict(d)
        if "learner" in d:
            d["learner"] = REQConfig(**{**d["learner"], "hidden": tuple(d["learner"].get("hidden", (256, 256, 256)))})
        return cls(**d)


def make_task_env(config: TrainConfig) -> TaskEnv:
    """The default env: `sim_bridge` task (state observations, no camera) plus its expert."""
    from controllers.experts import make_expert
    from sim_bridge import make_task

    return TaskEnv(make_task(config.task), make_expert(config.task, variant=config.expert_variant, noise_std=config.expert_noise_std),
                   residual=config.residual, residual_scale=config.residual_scale)


def evaluate_learner(env: ExpertEnv, learner: REQLearner, episodes: int, seed: int = EVAL_SEED_BASE,
                     acting: str | None = None) -> dict:
    """Deterministic episodes of the learned policy on held-out seeds from `seed` (`evaluation_episode_seed`)."""
    wins, steps = 0, []
    for i in range(episodes):
        obs = env.reset(evaluation_episode_seed(i, first=seed))
        t = 0
        while True:
            obs, _, terminated, truncated, success = env.step(learner.act(obs, explore=False, acting=acting))
            t += 1
            if terminated or truncated:
                break
        wins += int(success)
        if success:
            steps.append(t)
    return {"success_rate": wins / episodes, "episodes": episodes,
            "mean_steps_success": float(np.mean(steps)) if steps else None}


def evaluate_expert(env: ExpertEnv, episodes: int, seed: int = EVAL_SEED_BASE) -> dict:
    """The expert alone on the same held-out seeds."""
    wins = 0
    for i in range(episodes):
        env.reset(evaluation_episode_seed(i, first=seed))
        while True:
            _, _, terminated, truncated, success = env.step(env.expert_action)
            if terminated or truncated:
                break
        wins += int(success)
    return {"success_rate": wins / episodes, "episodes": episodes}


def to_batch(sample) -> Batch:
    t = lambda x: torch.as_tensor(np.asarray(x, np.float32))  # noqa: E731
    return Batch(obs=t(sample.obs["obs"]), action=t(sample.step["action"]), reward=t(sample.reward),
                 discount=t(sample.discount), next_obs=t(sample.next_obs["obs"]),
                 expert_action=t(sample.obs["expert_action"]))


def train(config: TrainConfig, out_dir: str | Path, env_factory: Callable[[TrainConfig], ExpertEnv] = make_task_env,
          progress: bool = True, resume: bool = True, max_wall_s: float | None = None) -> dict:
    """Train; returns a summary dict (frames, episodes, wall_s, last evaluation, eval history).

    `max_wall_s` stops early (with a checkpoint) after that much wall time in this call.
    """
    out = Path(out_dir)
    store = checkpoint_store(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    env, eval_env = env_factory(config), env_factory(config)
    if config.train_horizon is not None:
        env.horizon = config.train_horizon
    learner = REQLearner(env.obs_dim, env.action_dim, config.learner, seed=config.seed)
    replay = ReplayBuffer(min(config.replay_capacity, config.frames + config.frames // 2 + 10),
                          replay_fields(env.obs_dim, env.action_dim))
    rng = np.random.default_rng(config.seed)
    schedule = IntertwineSchedule(intertwine_config(config.mode), rng)
    counters = {"frames": 0, "episodes": 0, "updates_credit": 0.0, "fitted": False, "wall_s": 0.0,
                "next_eval": 0, "next_checkpoint": config.checkpoint_every_frames}
    history: list[dict] = []

    found = read_checkpoint(store) if resume else None
    if found is not None:
        ckpt, state, replay_state = found
        if state["config"] != config.to_dict():
            raise ValueError(f"{ckpt.path}: checkpoint was written by a different config; use a new --out or the same options")
        learner.load_state_dict(state["learner"])
        replay.load_state_dict(replay_state)
        rng.bit_generator.state = state["rng"]
        counters, history = state["counters"], state["history"]
    # the evaluations of this run as resumed: a killed process may have evaluated past its last checkpoint
    (out / "eval.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in history))
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (out / "run.yaml").write_text(yaml.safe_dump({"kind": "req", "algo": config.algo, "task": config.task}))

    writer = SummaryWriter(str(out / "tb"))
    bar = tqdm(total=config.frames, initial=counters["frames"], desc=f"{config.algo}/{config.mode} {config.task}",
               unit="frame", disable=not progress, dynamic_ncols=True)
    start = time.monotonic()
    wall0 = counters["wall_s"]
    last_stats: dict[str, float] = {}

    def save_checkpoint() -> None:
        counters["wall_s"] = wall0 + time.monotonic() - start
        state = {"config": config.to_dict(), "learner": learner.state_dict(), "rng": rng.bit_generator.state,
                 "counters": counters, "history": history, "obs_dim": env.obs_dim, "action_dim": env.action_dim}
        store.save(counters["frames"], {"learner.pt": torch_file(state), "replay.npz": npz_file(replay.state_dict())},
                   meta={"frames": counters["frames"], "episodes": counters["episodes"], "replay_steps": replay.steps_added})

    def run_eval() -> None:
        result = evaluate_learner(eval_env, learner, config.eval_episodes)
        wall = wall0 + time.monotonic() - start
        entry = {"frames": counters["frames"], "success_rate": result["success_rate"], "wall_s": round(wall, 1),
                 "updates": learner.num_updates}
        history.append(entry)
        with open(out / "eval.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
        writer.add_scalar("eval/success_rate", result["success_rate"], counters["frames"])
        bar.set_postfix(eval=f"{result['success_rate']:.2f}", upd=learner.num_updates)

    def on_step() -> None:
        nonlocal last_stats
        counters["frames"] += 1
        bar.update(1)
        if len(replay) < config.min_replay_steps:
            return
        if not counters["fitted"]:
            warmup = replay.sample(min(len(replay), 10_000), 1, config.learner.discount, rng)
            learner.fit_normalizers(warmup.obs["obs"])
            counters["fitted"] = True
        counters["updates_credit"] += config.updates_per_step
        while counters["updates_credit"] >= 1.0:
            counters["updates_credit"] -= 1.0
            sample = replay.sample(config.learner.batch_size, config.learner.n_step, config.learner.discount, rng)
            last_stats = learner.update(to_batch(sample))
        if learner.num_updates and learner.num_updates % 100 == 0 and last_stats:
            for k, v in last_stats.items():
                writer.add_scalar(f"learner/{k}", v, counters["frames"])

    def explore(obs: np.ndarray) -> np.ndarray:
        return learner.act(obs, explore=True)

    stopped_early = False
    while counters["frames"] < config.frames:
        if counters["frames"] >= counters["next_eval"]:
            run_eval()
            counters["next_eval"] += config.eval_every_frames
        rec = collect_episode(env, explore, schedule, replay, training_episode_seed(config.seed, counters["episodes"]),
                              on_step=on_step)
        counters["episodes"] += 1
        writer.add_scalar("collect/success", float(rec.success), counters["frames"])
        writer.add_scalar("collect/expert_step_fraction", rec.expert_steps / rec.steps, counters["frames"])
        if counters["frames"] >= counters["next_checkpoint"]:
            save_checkpoint()
            counters["next_checkpoint"] += config.checkpoint_every_frames
        if max_wall_s is not None and time.monotonic() - start > max_wall_s:
            stopped_early = True
            break
    if not history or history[-1]["frames"] != counters["frames"]:
        run_eval()
    save_checkpoint()  # also after a wall-clock stop: the learner so far is a usable policy
    bar.close()
    writer.close()
    summary = {"task": config.task, "algo": config.algo, "mode": config.mode, "residual": config.residual,
               "frames": counters["frames"], "episodes": counters["episodes"], "updates": learner.num_updates,
               "wall_s": round(counters["wall_s"], 1), "finished": not stopped_early,
               "last_eval": history[-1] if history else None, "history": history}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def checkpoint_store(out_dir: str | Path) -> CheckpointStore:
    """The REQ checkpoints of run `out_dir`; a run of the previous layout is refused (`CheckpointError`)."""
    refuse_old_layout(out_dir, OLD_LAYOUT, "checkpoint.pt, replay.npz and final.pt")
    return CheckpointStore(Path(out_dir) / CHECKPOINTS, "req")


def read_checkpoint(store: CheckpointStore) -> tuple[Checkpoint, dict, dict[str, np.ndarray]] | None:
    """The newest verified checkpoint with its learner state and replay arrays (None if the run has none).

    Beyond the manifest's hashes, the pair must agree: every frame counted stored one replay step
    (and the manifest's step is that frame count).
    """

    def check(ckpt: Checkpoint) -> tuple[dict, dict[str, np.ndarray]]:
        state = torch.load(ckpt.file("learner.pt"), weights_only=False)
        with np.load(ckpt.file("replay.npz")) as z:
            replay_state = dict(z)
        frames, steps = state["counters"]["frames"], state_counters(replay_state)["steps"]
        if not frames == steps == ckpt.step:
            raise CheckpointError(f"{ckpt.path}: learner.pt counts {frames} frames, replay.npz holds {steps} steps, "
                                  f"the manifest says step {ckpt.step}: not one checkpoint")
        return state, replay_state

    found = store.load(check)
    if found is None:
        return None
    ckpt, (state, replay_state) = found
    return ckpt, state, replay_state


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
