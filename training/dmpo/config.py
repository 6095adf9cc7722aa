"""What `rrl train residual` trains: the DMPO learner (`DMPOConfig`), the loop around it
(`TrainConfig`) and one residual run (`ResidualRunConfig`), importable without torch.

`rrl --help` builds the flags of `rrl train residual` from these fields (`rrl.config_args`), so this
module imports nothing heavy; `training.dmpo.learner`, `training.dmpo.train` and
`training.dmpo.run_residual` re-export the classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from policies.base_spec import is_waypoint
from training.seeds import check_run_seed


@dataclass(frozen=True)
class DMPOConfig:
    """Hyperparameters of the learner (defaults: Acme's DMPO, RRLfD's learning rate)."""

    num_samples: int = 20
    """N: actions sampled from the target policy per state (E-step and bootstrap)."""
    epsilon: float = 0.1
    """ε: KL bound of the E-step (temperature dual)."""
    epsilon_mean: float = 2.5e-3
    """ε_μ: KL bound on the change of the policy mean, per action dimension."""
    epsilon_std: float = 1e-6
    """ε_Σ: KL bound on the change of the policy std, per action dimension."""
    init_log_temperature: float = 10.0
    """Initial log-space (softplus) parameter of η (Acme: 10)."""
    init_log_alpha_mean: float = 10.0
    """Initial log-space parameter of α_μ (Acme: 10)."""
    init_log_alpha_std: float = 1000.0
    """Initial log-space parameter of α_Σ (Acme: 1000, i.e. the std barely moves at first)."""
    policy_lr: float = 3.3e-4
    """Adam learning rate of the policy (RRLfD; Acme default 1e-4)."""
    critic_lr: float = 3.3e-4
    """Adam learning rate of the critic (RRLfD; Acme default 1e-4)."""
    dual_lr: float = 1e-2
    """Adam learning rate of the dual variables (Acme)."""
    grad_clip_norm: float = 40.0
    """Global-norm clip of policy and critic gradients (Acme)."""
    target_update_period: int = 100
    """Learner steps between copies of the online networks into the targets (Acme)."""
    policy_hidden: tuple[int, ...] = (256, 256, 256)
    """Policy torso widths (RRLfD: 3×256 with layer norm)."""
    critic_hidden: tuple[int, ...] = (512, 512, 512)
    """Critic torso widths (RRLfD: 3×512)."""
    num_atoms: int = 51
    """Atoms of the categorical critic."""
    v_min: float = 0.0
    """Lowest atom (sparse 0/1 returns: 0)."""
    v_max: float = 1.0
    """Highest atom (sparse 0/1 returns: 1)."""
    init_std: float = 0.1
    """Initial policy std in normalised action units (RRLfD grid: 0.01, 0.033, 0.1, 0.33, 1)."""

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {self.num_samples}")
        for name in ("epsilon", "epsilon_mean", "epsilon_std", "policy_lr", "critic_lr", "dual_lr", "grad_clip_norm", "init_std"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DMPOConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.target_update_period < 1:
            raise ValueError(f"target_update_period must be >= 1, got {self.target_update_period}")


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

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """From `dataclasses.asdict` output (a run's config.yaml); runs older than a field get its default."""
        t = dict(d)
        t["learner"] = DMPOConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in t.get("learner", {}).items()})
        return cls(**t)

    def __post_init__(self) -> None:
        for name in ("frames", "batch_size", "n_step", "frames_per_update", "replay_capacity", "eval_every_frames", "checkpoint_every_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        check_run_seed(self.seed)


SCRATCH_OBS = ("state", "depth+proprio", "rgb+proprio")
"""Inputs DMPO from scratch can read."""


@dataclass(frozen=True)
class ResidualRunConfig:
    """One residual (or from-scratch) DMPO run."""

    task: str
    """Task name, e.g. ur5_pick."""
    base: str
    """`waypoint`, `waypoint:VARIANT`, a `bc` artifact directory, or `none` (DMPO from scratch)."""
    residual_scale: float = 0.1
    """c of RRLfD eq. 6 (grid {0.01, 0.033, 0.1, 0.33, 1}); residual mode only."""
    finetune: bool = False
    """Baseline: train the BC base's own output layer with DMPO (no base action); `base` must be a bc artifact."""
    finetune_encoder: bool = False
    """With --finetune on an image BC: fine-tune end to end, the BC's ResNet too (trained by the critic's loss,
    Acme's shared observation network; RRLfD Sec. V-H's second setting). Default: features frozen."""
    obs: str = "state"
    """Inputs of DMPO from scratch (--base none): `state` (the full state, MLP) or `depth+proprio` / `rgb+proprio`
    (the task's camera frames through a fresh ResNet-18-half, plus proprioception; RRLfD Table I's 'robot state')."""
    camera_px: int = 64
    """Camera resolution of DMPO from scratch on images, px (square; the network reads the 224/240 centre crop)."""
    stats_episodes: int = 20
    """Base-only episodes that measure normalisation statistics and the base's success."""
    eval_episodes: int = 50
    """Held-out episodes per periodic evaluation."""
    final_eval_episodes: int = 100
    """Held-out episodes of the final base vs base + residual comparison (through the runtime)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The DMPO loop and learner."""

    def __post_init__(self) -> None:
        if not self.residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {self.residual_scale}")
        if self.finetune and (self.base == "none" or is_waypoint(self.base)):
            raise ValueError("fine-tuning needs a bc artifact as --base (its head is what DMPO trains)")
        if self.finetune_encoder and not self.finetune:
            raise ValueError("finetune_encoder is a fine-tuning setting: give --finetune too")
        if self.obs not in SCRATCH_OBS:
            raise ValueError(f"obs must be one of {SCRATCH_OBS}, got {self.obs!r}")
        if self.obs != "state" and self.base != "none":
            raise ValueError(f"obs {self.obs!r} applies to DMPO from scratch (--base none); a base brings its own inputs")
        if self.camera_px < 16:
            raise ValueError(f"camera_px must be >= 16, got {self.camera_px}")
        for name in ("stats_episodes", "eval_episodes", "final_eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def mode(self) -> str:
        """`scratch` (base none), `finetune` or `residual`."""
        return "scratch" if self.base == "none" else "finetune" if self.finetune else "residual"

    @property
    def trains_encoder(self) -> bool:
        """Whether DMPO trains an image encoder (from scratch on images, or end-to-end fine-tuning)."""
        return self.obs != "state" or self.finetune_encoder

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ResidualRunConfig":
        """From `to_dict` output (run.yaml); runs older than a field get its default."""
        return cls(**{**d, "train": TrainConfig.from_dict(d.get("train", {}))})
