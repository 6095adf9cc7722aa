"""REQ / CRR training from a waypoint expert: intertwined data collection, replay, learner updates,
periodic held-out evaluation, TensorBoard, resumable checkpoints.

Reads top to bottom: build env + replay + learner, (resume), then loop over episodes until
`frames` environment steps were taken; every step may trigger learner updates, every
`eval_every_frames` an evaluation over held-out seeds (from `training.evaluation.EVAL_SEED_BASE`),
every `checkpoint_every_frames` a checkpoint (at an episode boundary, so resuming is exact up to
the RNG draws of the interrupted episode).

Run directory:
    config.yaml        the TrainConfig
    run.yaml           kind: req (what `rrl export` dispatches on)
    checkpoint.pt      learner (networks, targets, optimisers), counters, RNG state, eval history
    replay.npz         the replay buffer
    tb/                TensorBoard logs
    eval.jsonl         one line per evaluation: frames, success_rate, wall_s (rewritten from the checkpoint's
                       history on resume: evaluations a killed process made after its last checkpoint go)
    final.pt           the learner state at the end (what `rrl export` reads; a later checkpoint.pt wins)
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

from training.evaluation import EVAL_SEED_BASE
from training.replay import ReplayBuffer
from training.req.env import ExpertEnv, TaskEnv
from training.req.intertwine import IntertwineSchedule, collect_episode, intertwine_config, replay_fields
from training.req.learner import Batch, REQConfig, REQLearner

TRAIN_SEED_BASE = 100_000
"""Training episodes use seeds from here up (away from demo seeds and from EVAL_SEED_BASE)."""


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
    """Seed of networks, sampling and the training episodes' seeds."""
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
    """Held-out episodes per periodic evaluation (seeds EVAL_SEED_BASE, +1, ...)."""
    checkpoint_every_frames: int = 5000
    """Frames between checkpoints (written at the next episode boundary)."""

    def __post_init__(self) -> None:
        intertwine_config(self.mode)
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
    """Deterministic episodes of the learned policy on seeds `seed, seed + 1, ...`."""
    wins, steps = 0, []
    for i in range(episodes):
        obs = env.reset(seed + i)
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
        env.reset(seed + i)
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

    ckpt_path, replay_path = out / "checkpoint.pt", out / "replay.npz"
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state["config"] != config.to_dict():
            raise ValueError(f"{ckpt_path}: checkpoint was written by a different config; use a new --out or the same options")
        learner.load_state_dict(state["learner"])
        with np.load(replay_path) as z:
            replay.load_state_dict(dict(z))
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
        np.savez(out / "replay.tmp.npz", **replay.state_dict())
        torch.save({"config": config.to_dict(), "learner": learner.state_dict(), "rng": rng.bit_generator.state,
                    "counters": counters, "history": history}, out / "checkpoint.tmp.pt")
        (out / "replay.tmp.npz").replace(replay_path)
        (out / "checkpoint.tmp.pt").replace(ckpt_path)

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
        rec = collect_episode(env, explore, schedule, replay, TRAIN_SEED_BASE + 10_000 * config.seed + counters["episodes"],
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
    save_checkpoint()
    bar.close()
    writer.close()
    summary = {"task": config.task, "algo": config.algo, "mode": config.mode, "residual": config.residual,
               "frames": counters["frames"], "episodes": counters["episodes"], "updates": learner.num_updates,
               "wall_s": round(counters["wall_s"], 1), "finished": not stopped_early,
               "last_eval": history[-1] if history else None, "history": history}
    # written also after a wall-clock stop: the learner so far is a usable policy
    torch.save({"config": config.to_dict(), "learner": learner.state_dict(), "obs_dim": env.obs_dim,
                "action_dim": env.action_dim, "frames": counters["frames"]}, out / "final.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_learner(run_dir: str | Path) -> tuple[TrainConfig, REQLearner]:
    """The trained learner of a run: the later of `final.pt` and `checkpoint.pt`.

    A run resumed after it wrote `final.pt` (a wall-clock stop, then more frames) and killed again has a
    checkpoint newer than its `final.pt`; the frame counts decide, `final.pt` on a tie.
    """
    run_dir = Path(run_dir)
    final, ckpt = run_dir / "final.pt", run_dir / "checkpoint.pt"
    if not final.exists() and not ckpt.exists():
        raise FileNotFoundError(f"{run_dir}: neither final.pt nor checkpoint.pt (not a `rrl train req` run?)")
    candidates = []
    for path in (final, ckpt):
        if path.exists():
            state = torch.load(path, weights_only=False)
            frames = state["counters"]["frames"] if "counters" in state else state.get("frames", -1)
            candidates.append((frames, path is final, state))
    *_, state = max(candidates, key=lambda c: (c[0], c[1]))
    config = TrainConfig.from_dict(state["config"])
    prior = state["learner"]["prior"]
    obs_dim, action_dim = prior["normalizer.mean"].shape[0], prior["mean_head.weight"].shape[0]
    learner = REQLearner(obs_dim, action_dim, config.learner, seed=config.seed)
    learner.load_state_dict(state["learner"])
    return config, learner
