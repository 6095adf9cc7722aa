"""The DMPO training loop: act, store, learn, evaluate, log, checkpoint.

One loop for every DMPO agent here (the residual of RRLfD, DMPO from scratch,
the tiny test tasks): it drives an `Environment` whose actions are the
policy's normalised actions z (the environment maps them to robot commands,
e.g. `u + c·σ(A)∘z`). Acting samples z from the online policy (Acme's DMPO
actor); evaluation uses the mean. Transitions go to `training.replay` and the
n-step target is formed at sample time; the learner does one update every
`frames_per_update` frames once `min_replay` steps are stored (Acme: 32
samples per insert with batch 256, i.e. one update per 8 frames).

Outputs under the run directory:
- `tb/`: TensorBoard scalars (learner stats, episode returns, evaluations);
- `eval.csv`: frames, wall_s, success_rate, mean_steps_success, episodes per evaluation;
- `checkpoints/`: one `training.checkpoint` unit per checkpoint, written at episode
  boundaries: `learner.pt` (networks, targets, optimisers, duals, loop counters, rng
  states) and `replay.npz` (the whole replay buffer) in one directory with their hashes,
  the previous checkpoint kept; `resume=True` continues from the newest one that
  verifies (its replay holds exactly the learner's frame count of steps).

Training episode i of run seed s is reset with `training.seeds.training_episode_seed(s, i)`,
a range no other seed, no demonstration and no held-out evaluation uses.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm import tqdm

from training.checkpoint import Checkpoint, CheckpointError, CheckpointStore, npz_file, refuse_old_layout, torch_file
from training.dmpo.learner import Batch, DMPOConfig, DMPOLearner
from training.dmpo.networks import CategoricalCritic, GaussianPolicy
from training.replay import FieldSpec, ReplayBuffer, Sample, state_counters
from training.seeds import check_run_seed, training_episode_seed

CHECKPOINTS = "checkpoints"
"""The run's checkpoint directory (`training.checkpoint` layout)."""
OLD_LAYOUT = ("checkpoint/learner.pt", "checkpoint/replay.npz")
"""The previous layout's separately written files (refused: the pair cannot be verified)."""


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


class Environment(Protocol):
    observation_dim: int
    action_dim: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> EnvStep:
        """Apply normalised action z (D,)."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    """The loop around the learner (defaults: Acme's DMPO agent)."""

    frames: int = 100_000
    """Environment steps to train for (the run's budget)."""
    batch_size: int = 256
    """Transitions per learner update."""
    n_step: int = 5
    """n of the n-step return."""
    gamma: float = 0.99
    """Discount per step."""
    min_replay: int = 1000
    """Stored steps before learning starts."""
    frames_per_update: int = 8
    """Environment steps per learner update (Acme: samples_per_insert 32 at batch 256)."""
    replay_capacity: int = 1_000_000
    """Replay slots (steps)."""
    eval_every_frames: int = 10_000
    """Evaluate the deterministic policy every this many frames (and at frame 0 and the end)."""
    checkpoint_every_frames: int = 10_000
    """Write a resumable checkpoint at the first episode end after this many frames."""
    seed: int = 0
    """Seeds the networks and the action noise; picks the run's training episodes
    (`training.seeds.training_episode_seed(seed, i)`). In [0, 1000)."""
    torch_threads: int = 1
    """torch intra-op threads (the machine is shared; 1 is fastest for these small nets)."""
    learner: DMPOConfig = field(default_factory=DMPOConfig)
    """Learner hyperparameters."""

    def __post_init__(self) -> None:
        for name in ("frames", "batch_size", "n_step", "frames_per_update", "replay_capacity", "eval_every_frames", "checkpoint_every_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        check_run_seed(self.seed)


def make_agent(obs_dim: int, action_dim: int, config: TrainConfig, policy: torch.nn.Module | None = None) -> DMPOLearner:
    """A learner with a fresh `GaussianPolicy` (or the given policy: obs -> (mean, std), with a `normalizer`)."""
    torch.manual_seed(config.seed)
    lc = config.learner
    policy = policy if policy is not None else GaussianPolicy(obs_dim, action_dim, lc.policy_hidden, init_std=lc.init_std)
    critic = CategoricalCritic(obs_dim, action_dim, lc.critic_hidden, lc.num_atoms, lc.v_min, lc.v_max)
    return DMPOLearner(policy, critic, action_dim, lc, seed=config.seed)


def set_input_statistics(learner: DMPOLearner, mean: np.ndarray, std: np.ndarray) -> None:
    """Fix the observation normalisation of every network (online and target)."""
    for net in (learner.policy, learner.critic, learner.target_policy, learner.target_critic):
        net.normalizer.set(mean, std)


def to_batch(sample: Sample) -> Batch:
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)
    return Batch(t(sample.obs["obs"]), t(sample.step["action"]), t(sample.reward), t(sample.discount), t(sample.next_obs["obs"]))


class Actor:
    """Acts with the online policy: sampled z for training, the mean for evaluation."""

    def __init__(self, policy: GaussianPolicy, generator: torch.Generator):
        self.policy = policy
        self.generator = generator

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        mean, std = self.policy(torch.as_tensor(obs, dtype=torch.float32)[None])
        if deterministic:
            return mean[0].numpy()
        return (mean + std * torch.randn(mean.shape, generator=self.generator))[0].numpy()


Evaluate = Callable[[Callable[[np.ndarray], np.ndarray]], dict]
"""Runs the deterministic policy (obs -> z) on held-out episodes; returns at least
`success_rate`, `episodes` and `mean_steps_success`."""


def read_checkpoint(store: CheckpointStore) -> tuple[Checkpoint, dict, dict[str, np.ndarray]] | None:
    """The newest verified checkpoint of a run with its learner state and replay arrays (None if none).

    Beyond the manifest's hashes, the pair must agree: the replay holds one step per frame the
    learner's counters say were played (and the manifest's step is that frame count).
    """

    def check(ckpt: Checkpoint) -> tuple[dict, dict[str, np.ndarray]]:
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


def checkpoint_store(out_dir: str | Path) -> CheckpointStore:
    """The DMPO checkpoints of run `out_dir`; a run of the previous layout is refused (`CheckpointError`)."""
    refuse_old_layout(out_dir, OLD_LAYOUT, "checkpoint/learner.pt and replay.npz")
    return CheckpointStore(Path(out_dir) / CHECKPOINTS, "dmpo")


def train(
    env: Environment,
    evaluate: Evaluate,
    config: TrainConfig,
    out_dir: str | Path,
    input_mean: np.ndarray,
    input_std: np.ndarray,
    resume: bool = False,
    progress: bool = True,
    frames_offset: int = 0,
    policy: torch.nn.Module | None = None,
) -> DMPOLearner:
    """Train for `config.frames` frames (continuing a checkpoint when `resume`); returns the learner.

    `input_mean`/`input_std` fix the observation normalisation of the networks;
    `frames_offset` frames already spent elsewhere (e.g. statistics episodes) are
    added to the logged frame counts so curves show the full interaction budget;
    `policy` replaces the fresh `GaussianPolicy` (fine-tuning a BC head).
    """
    out = Path(out_dir)
    store = checkpoint_store(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.torch_threads)
    learner = make_agent(env.observation_dim, env.action_dim, config, policy)
    set_input_statistics(learner, input_mean, input_std)
    replay = ReplayBuffer(
        config.replay_capacity,
        {"obs": FieldSpec((env.observation_dim,)), "action": FieldSpec((env.action_dim,), kind="step")},
    )
    rng = np.random.default_rng(config.seed)
    frames, episodes, next_eval, next_ckpt = 0, 0, 0, config.checkpoint_every_frames
    wall_offset = 0.0
    found = read_checkpoint(store) if resume else None
    if found is not None:
        _, state, replay_state = found
        learner.load_state_dict(state["learner"])
        replay.load_state_dict(replay_state)
        frames, episodes, next_eval, next_ckpt = state["frames"], state["episodes"], state["next_eval"], state["next_ckpt"]
        wall_offset = state["wall_s"]
        rng.bit_generator.state = state["numpy_rng"]
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    actor = Actor(learner.policy, learner.generator)
    writer = _writer(out / "tb")
    eval_csv = out / "eval.csv"
    if not eval_csv.exists() or not resume:
        eval_csv.write_text("frames,wall_s,success_rate,mean_steps_success,episodes\n")
    else:  # evaluations made after the checkpoint are redone: drop them
        lines = eval_csv.read_text().splitlines()
        kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",")[0]) < frames]
        eval_csv.write_text("\n".join(kept) + "\n")
    start = time.monotonic() - wall_offset
    bar = tqdm(total=config.frames, initial=frames, desc="dmpo", unit="frame", disable=not progress, smoothing=0.05)

    def run_eval() -> None:
        summary = evaluate(lambda o: actor.act(o, deterministic=True))
        wall = time.monotonic() - start
        total = frames + frames_offset
        writer.add_scalar("eval/success_rate", summary["success_rate"], total)
        if summary.get("mean_steps_success") is not None:
            writer.add_scalar("eval/mean_steps_success", summary["mean_steps_success"], total)
        with eval_csv.open("a", newline="") as f:
            csv.writer(f).writerow([total, f"{wall:.1f}", summary["success_rate"], summary.get("mean_steps_success"), summary["episodes"]])
        bar.set_postfix(eval_success=f"{summary['success_rate']:.2f}")

    stats: dict[str, float] = {}
    while frames < config.frames:
        if frames >= next_eval:
            run_eval()
            next_eval += config.eval_every_frames
        obs = env.reset(training_episode_seed(config.seed, episodes))
        replay.add_first({"obs": obs})
        episode_return, done = 0.0, False
        while not done:
            z = actor.act(obs, deterministic=False)
            step = env.step(z)
            replay.add({"action": z}, step.reward, 0.0 if step.terminated else 1.0, {"obs": step.obs})
            obs, episode_return, done = step.obs, episode_return + step.reward, step.terminated or step.truncated
            frames += 1
            bar.update(1)
            if len(replay) >= config.min_replay and frames % config.frames_per_update == 0:
                stats = learner.update(to_batch(replay.sample(config.batch_size, config.n_step, config.gamma, rng)))
                if learner.steps % 100 == 0:
                    for key, value in stats.items():
                        writer.add_scalar(f"learner/{key}", value, frames + frames_offset)
        episodes += 1
        writer.add_scalar("train/episode_return", episode_return, frames + frames_offset)
        writer.add_scalar("train/episode_success", float(step.success), frames + frames_offset)
        if frames >= next_ckpt or frames >= config.frames:
            next_ckpt = frames + config.checkpoint_every_frames
            _checkpoint(store, learner, replay, rng, frames, episodes, next_eval, next_ckpt, time.monotonic() - start)
    run_eval()
    bar.close()
    writer.close()
    return learner


def _checkpoint(store: CheckpointStore, learner, replay, rng, frames, episodes, next_eval, next_ckpt, wall_s) -> None:
    """Learner and replay as one checkpoint unit (both or neither; the previous one kept)."""
    state = {
        "learner": learner.state_dict(), "frames": frames, "episodes": episodes, "next_eval": next_eval,
        "next_ckpt": next_ckpt, "wall_s": wall_s, "numpy_rng": rng.bit_generator.state,
    }
    store.save(frames, {"learner.pt": torch_file(state), "replay.npz": npz_file(replay.state_dict())},
               meta={"frames": frames, "episodes": episodes, "replay_steps": replay.steps_added})


def _writer(path: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(path))
