"""The DMPO training loop: act, store, learn, evaluate, log, checkpoint.

One loop for every DMPO agent here (the residual of RRLfD, DMPO from scratch,
the tiny test tasks): it drives an `Environment` whose actions are the
policy's normalised actions z (the environment maps them to robot commands,
e.g. `u + c·σ(A)∘z`). Acting samples z from the online policy (Acme's DMPO
actor); evaluation uses the mean. Transitions go to `training.replay` and the
n-step target is formed at sample time; the learner does one update every
`frames_per_update` frames once `min_replay` steps are stored (Acme: 32
samples per insert with batch 256, i.e. one update per 8 frames).

The loop itself is the shared harness (`training.harness.OffPolicyLoop`): DMPO plugs in
`DMPOAgent` (the learner, its replay, the per-frame update rule, its actors). The run directory
is a `training.harness.RunDir`: `config.yaml`, `checkpoints/` (one verified unit: `learner.pt`
with the networks, targets, optimisers, duals, loop counters and rng states, and `replay.npz`),
`eval.jsonl` (frames, wall_s, success_rate, mean_steps_success, episodes, updates per
evaluation), `tb/`. `--workers K` collects episodes on K Ray rollout workers (each acting with
a CPU copy of the policy and its own noise stream per episode); `--device` puts the learner on
an accelerator.

Image agents (`image` given, with an `encoder`): the environment's vector observation stays the
`obs` field and the replay stores each step's newest camera frame once, as float16, in an `image`
field with `history` (stacked at sampling, as the task stacks them); the actor reads the current
stack from the environment (`env.frames()`), and the learner's flat input is [vector, stack].

Training episode i of run seed s is reset with `training.seeds.training_episode_seed(s, i)`,
a range no other seed, no demonstration and no held-out evaluation uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from training.checkpoint import CheckpointStore
from training.dmpo.config import DMPOConfig, TrainConfig  # noqa: F401 (re-exported)
from training.dmpo.learner import Batch, DMPOLearner
from training.dmpo.networks import CategoricalCritic, GaussianPolicy
from training.harness import LoopSchedule, OffPolicyLoop, RunDir, RunOptions, read_checkpoint  # noqa: F401 (re-exported)
from training.harness import checkpoint_store as _checkpoint_store
from training.replay import FieldSpec, ReplayBuffer, Sample
from training.rollout import EnvStep  # noqa: F401 (re-exported: the rollout contract's step)
from training.workers import episode_rng


class Environment(Protocol):
    observation_dim: int
    action_dim: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: np.ndarray) -> EnvStep:
        """Apply normalised action z (D,)."""
        ...


@dataclass(frozen=True)
class ImageField:
    """The camera part of an image agent's input: what the replay stores per step and how it stacks.

    The environment of an image agent also provides `frame()` (the newest frame, `frame_shape`, float16 in
    [0, 1]) and `frames()` (the current stack, `stack_shape`, float32), cropped as the encoder reads them."""

    frame_shape: tuple[int, int, int]
    """One frame as stored: (channels per frame, h, w) (depth 1, RGB 3)."""
    history: int
    """Frames per stack, oldest first (the task's camera history)."""

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        c, h, w = self.frame_shape
        return (c * self.history, h, w)

    @property
    def size(self) -> int:
        return int(np.prod(self.stack_shape))


def make_agent(obs_dim: int, action_dim: int, config: TrainConfig, policy: torch.nn.Module | None = None,
               device: str = "cpu", encoder: torch.nn.Module | None = None) -> DMPOLearner:
    """A learner with a fresh `GaussianPolicy` (or the given policy: obs -> (mean, std), with a `normalizer`),
    on `device` (`training.device.resolve_device`: auto, cpu, cuda, cuda:N). With an `encoder`
    (`networks.ImageEncoder`, built before this call so that the seed's draws stay the heads'), the heads
    read its `out_dim` embedding instead of the `obs_dim` input."""
    from training.device import resolve_device

    torch.manual_seed(config.seed)
    lc = config.learner
    head_dim = obs_dim if encoder is None else encoder.out_dim
    policy = policy if policy is not None else GaussianPolicy(head_dim, action_dim, lc.policy_hidden, init_std=lc.init_std)
    critic = CategoricalCritic(head_dim, action_dim, lc.critic_hidden, lc.num_atoms, lc.v_min, lc.v_max)
    return DMPOLearner(policy, critic, action_dim, lc, seed=config.seed, device=resolve_device(device), encoder=encoder)


def set_input_statistics(learner: DMPOLearner, mean: np.ndarray, std: np.ndarray) -> None:
    """Fix the observation normalisation of every network (online and target)."""
    for net in (learner.policy, learner.critic, learner.target_policy, learner.target_critic):
        net.normalizer.set(mean, std)


def flat_input(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The learner's input (B, S) from sampled observation fields: `obs`, then the `image` stack (if any) flattened."""
    vector = np.asarray(obs["obs"], np.float32)
    if "image" not in obs:
        return vector
    return np.concatenate([vector, np.asarray(obs["image"], np.float32).reshape(len(vector), -1)], axis=1)


def to_batch(sample: Sample) -> Batch:
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)
    return Batch(t(flat_input(sample.obs)), t(sample.step["action"]), t(sample.reward), t(sample.discount),
                 t(flat_input(sample.next_obs)))


Evaluate = Callable[[Callable[[np.ndarray], np.ndarray]], dict]
"""Runs the deterministic policy (obs -> z) on held-out episodes; returns at least
`success_rate`, `episodes` and `mean_steps_success`."""


def checkpoint_store(out_dir: str | Path) -> CheckpointStore:
    """The DMPO checkpoints of run `out_dir`; a run of a previous layout is refused (`RunDirError`)."""
    return _checkpoint_store(out_dir, "dmpo")


class DMPOActor:
    """The exploring actor: z ~ N(mean, std) of the policy (Acme's DMPO actor).

    In the single-process loop it is the learner's own policy and generator (so a fixed seed gives
    the same run as always); on a rollout worker it is a CPU copy whose weights come by broadcast and
    whose noise stream is drawn per episode from (run seed, episode index). An image actor (`images`) acts on
    [obs, env.frames()] and hands each observation's newest frame to the replay (`observe`)."""

    def __init__(self, policy: torch.nn.Module, generator: torch.Generator, run_seed: int | None = None,
                 images: bool = False):
        self.policy, self.generator, self.run_seed, self.images = policy, generator, run_seed, images

    def start_episode(self, seed: int, index: int) -> None:
        if self.run_seed is not None:  # a worker: the episode's own stream, whichever worker runs it
            self.generator.manual_seed(int(episode_rng(self.run_seed, index).integers(2**62)))

    @torch.no_grad()
    def mean(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action: the policy's mean (evaluation, export parity)."""
        device = next(self.policy.parameters()).device
        return self.policy(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])[0][0].cpu().numpy()

    @torch.no_grad()
    def act(self, obs: np.ndarray, env) -> tuple[np.ndarray, dict]:
        device = next(self.policy.parameters()).device
        if self.images:
            obs = flat_input({"obs": obs[None], "image": env.frames()[None]})[0]
        mean, std = self.policy(torch.as_tensor(obs, dtype=torch.float32, device=device)[None])
        noise = torch.randn(mean.shape, generator=self.generator, device=self.generator.device)
        return (mean + std * noise.to(device))[0].cpu().numpy(), {}

    def observe(self, env, done: bool) -> dict:
        return {"image": env.frame()} if self.images else {}

    def load_weights(self, weights: dict) -> None:
        self.policy.load_state_dict(weights)


def make_remote_actor(policy: torch.nn.Module, run_seed: int, images: bool = False) -> DMPOActor:
    """A rollout worker's actor: a CPU policy copy (weights by broadcast) and a CPU generator."""
    torch.set_num_threads(1)
    return DMPOActor(policy, torch.Generator(), run_seed, images=images)


class DMPOAgent:
    """DMPO as an `training.harness.OffPolicyAgent`: learner, replay, update rule, actors, evaluation."""

    def __init__(self, learner: DMPOLearner, replay: ReplayBuffer, config: TrainConfig, evaluate: Evaluate):
        self.learner, self.replay, self.config, self._evaluate = learner, replay, config, evaluate
        self.rng = np.random.default_rng(config.seed)
        self.images = "image" in replay.fields
        self._local = DMPOActor(learner.acting_policy, learner.generator, images=self.images)

    @property
    def updates(self) -> int:
        return self.learner.steps

    def local_actor(self) -> DMPOActor:
        return self._local

    def remote_actor_factory(self):
        import functools

        return functools.partial(make_remote_actor, self.learner.cpu_policy(), self.config.seed, self.images)

    def actor_weights(self) -> dict:
        return self.learner.actor_state_dict()

    def after_step(self, frames: int) -> dict | None:
        """One update every `frames_per_update` frames once `min_replay` steps are stored."""
        c = self.config
        if len(self.replay) >= c.min_replay and frames % c.frames_per_update == 0:
            return self.learner.update(to_batch(self.replay.sample(c.batch_size, c.n_step, c.gamma, self.rng)))
        return None

    def evaluate(self, episodes: int, seed: int) -> dict:
        return self._evaluate(self._local.mean)

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])


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
    options: RunOptions = RunOptions(device="cpu"),
    env_factory: Callable[[], Environment] | None = None,
    evaluate_episodes: Callable | None = None,
    eval_episodes: int = 0,
    run_dir: RunDir | None = None,
    encoder: torch.nn.Module | None = None,
    image: ImageField | None = None,
) -> DMPOLearner:
    """Train for `config.frames` frames (continuing a checkpoint when `resume`); returns the learner.

    `input_mean`/`input_std` fix the observation normalisation of the networks;
    `frames_offset` frames already spent elsewhere (e.g. statistics episodes) are
    added to the logged frame counts so curves show the full interaction budget;
    `policy` replaces the fresh `GaussianPolicy` (fine-tuning a BC head). `options` selects the
    device and the rollout workers (`env_factory` builds a worker's environment, `evaluate_episodes`
    evaluates on the workers; without it evaluations run here through `evaluate`). The learner's
    `result` is the loop's `training.harness.LoopResult` (frames/s, updates/s, workers, restarts).
    An image agent gives both `image` (what the replay stores) and `encoder` (`networks.ImageEncoder` over
    [obs, stack]); `input_mean`/`input_std` then normalise the encoder's embedding, which the heads read.
    """
    import dataclasses

    options = dataclasses.replace(options, progress=progress and options.progress)
    torch.set_num_threads(config.torch_threads)
    run = (RunDir(out_dir, "dmpo", asdict(config), resume=resume, upgrade=lambda d: asdict(TrainConfig.from_dict(d)))
           if run_dir is None else run_dir)
    if not resume and run.has_checkpoint():
        from training.harness import RunDirError

        raise RunDirError(f"{run.root} already holds checkpoints; resume it or use a new --out")
    if (encoder is None) != (image is None):
        raise ValueError("an image agent needs both `encoder` and `image`")
    if encoder is not None and encoder.input_dim != env.observation_dim + image.size:
        raise ValueError(f"the encoder reads {encoder.input_dim} values; the environment gives {env.observation_dim} "
                         f"+ an image stack of {image.stack_shape}")
    learner = make_agent(env.observation_dim, env.action_dim, config, policy, device=options.device, encoder=encoder)
    set_input_statistics(learner, input_mean, input_std)
    fields = {"obs": FieldSpec((env.observation_dim,)), "action": FieldSpec((env.action_dim,), kind="step")}
    if image is not None:
        fields["image"] = FieldSpec(image.frame_shape, dtype="float16", history=image.history)
    replay = ReplayBuffer(config.replay_capacity, fields)
    agent = DMPOAgent(learner, replay, config, evaluate)
    schedule = LoopSchedule(frames=config.frames, seed=config.seed, eval_every_frames=config.eval_every_frames,
                            eval_episodes=eval_episodes, checkpoint_every_frames=config.checkpoint_every_frames,
                            frames_offset=frames_offset)
    loop = OffPolicyLoop(agent, env, schedule, run, options, env_factory=env_factory, evaluate_episodes=evaluate_episodes,
                         device=str(learner.device), desc="dmpo")
    try:
        learner.result = loop.train()
    finally:
        run.close()
    return learner
