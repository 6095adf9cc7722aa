"""What `rrl train req` trains: one REQ/CRR run (`TrainConfig`) and its learner (`REQConfig`),
importable without torch.

`rrl --help` builds the flags of `rrl train req` from these fields (`rrl.config_args`), so this
module imports nothing heavy; `training.req.learner` and `training.req.train` re-export the classes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from training.req.intertwine import intertwine_config
from training.seeds import check_run_seed

OPERATORS = ("req", "td0")
"""Policy evaluation operators: `req` (eq. 2 of the REQ paper) and `td0` (CRR)."""
REWARDS = ("sparse", "shaped")
"""Training rewards: the task's success, or its shaped reward plus the success."""
ACTING = ("prior", "importance")
"""How a policy acts: its prior (sample, or the mean at evaluation) or importance sampling softmax(Q/eta)."""


@dataclass(frozen=True)
class REQConfig:
    """Hyperparameters of REQ / CRR (defaults: App. A.9 Table 5 unless a field says otherwise)."""

    operator: Literal["req", "td0"] = "req"
    """Policy evaluation: `req` (eq. 2, REQ) or `td0` (CRR, the same algorithm with the TD(0) operator)."""
    hidden: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the prior and of the Q network."""
    discount: float = 0.99
    """gamma."""
    n_step: int = 1
    """Steps of reward before bootstrapping (paper: 1 in eq. 2; >1 speeds sparse rewards on short budgets)."""
    learning_rate: float = 1e-4
    """Adam learning rate of prior, Q and Lagrange multipliers."""
    dual_learning_rate: float = 1e-2
    """Adam learning rate of the trust-region Lagrange multipliers (not in the paper; MPO's usual value)."""
    batch_size: int = 128
    """Transitions per update."""
    target_update_period: int = 500
    """Updates between copies of the online networks into the target networks (U in Alg. 1)."""
    num_samples: int = 50
    """N: prior samples per state for the REQ operator, V(s) and importance-sampled acting."""
    epsilon: float = 0.75
    """KL bound eps of the KL-constrained policy (sets the temperature eta_s)."""
    temperature_steps: int = 50
    """K: gradient steps on the temperature dual per batch."""
    epsilon_mean: float = 0.005
    """KL trust region on the prior's mean (eps_mu)."""
    epsilon_cov: float = 1e-5
    """KL trust region on the prior's covariance (eps_Sigma)."""
    min_var: float = 1e-5
    """Minimum variance of the Gaussian prior."""
    init_std: float = 0.3
    """Initial standard deviation of the prior (normalised action units); not in the paper."""
    expert_action_improvement: bool = True
    """Eq. 4: also fit the prior to psi(s) where its advantage is >= 0 (REQfSE); off = eq. 3 only."""
    acting: Literal["prior", "importance"] = "prior"
    """How the policy acts: `prior` (sample / mean) or `importance` (softmax(Q/eta) over N prior samples)."""

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"operator must be one of {OPERATORS}, got {self.operator!r}")
        if self.acting not in ACTING:
            raise ValueError(f"acting must be one of {ACTING}, got {self.acting!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        for name in ("n_step", "batch_size", "target_update_period", "num_samples", "temperature_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "dual_learning_rate", "epsilon", "epsilon_mean", "epsilon_cov", "min_var", "init_std"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """One REQ/CRR training run."""

    task: str
    """Task name (`sim_bridge.make_task`), e.g. `ur5_bowl`."""
    mode: Literal["rlfse", "rlfd", "scratch"] = "rlfse"
    """Exploration: `rlfse` (intertwining, lambda_intertwine 0.5, lambda_psi 0.75), `rlfd` (0, 0.25), or
    `scratch` (the expert never acts; needs `learner.expert_action_improvement: false`)."""
    reward: Literal["sparse", "shaped"] = "sparse"
    """Training reward: the task's sparse success, or `shaped`: the task's dense reward
    (`sim_bridge.task.Task.shaped_reward`, e.g. adroit_pen's orientation error) plus the success.
    Evaluation always counts success."""
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
        if self.reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {self.reward!r}")
        if self.mode == "scratch" and self.learner.expert_action_improvement:
            raise ValueError("mode scratch learns without the expert: set learner.expert_action_improvement to false "
                             "(eq. 4 would fit the prior to the expert's actions)")

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
