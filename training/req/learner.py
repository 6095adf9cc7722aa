"""The REQ learner: `update(batch) -> stats` (Alg. 1 of papers/004_*), and the two ways to act.

One update on a batch of transitions (s, a, r, discount, s', psi(s)):

1. policy evaluation (eq. 2): N prior samples at s' from the target prior, their target-Q values,
   per-state temperature eta_s' from the dual (App. A.3), y = r + discount * V'(s'); squared TD
   error on Q(s, a). With `operator="td0"` V' is the plain mean over prior samples (CRR).
2. prior improvement (eq. 3 / eq. 4): V(s) from N target-prior samples at s (importance-weighted
   for REQ, mean for CRR), binary advantage filter on the dataset action and on the expert's
   action psi(s), filtered maximum likelihood under KL trust regions on mean and covariance.
3. every `target_update_period` updates the target prior and target Q become copies (Alg. 1).

Acting (`act`): `prior` uses the prior (a sample while exploring, the mean when evaluating);
`importance` samples N actions from the prior and picks one with probability softmax(Q/eta)
(the KL-constrained policy pi_i that REQ evaluates; argmax of the weights when evaluating).

The learner pulls no data; the training script owns replay, logging and checkpoints.
Actions live in [-1, 1]^D (see `training.req.env`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from training.req import losses
from training.req.networks import GaussianPrior, QNetwork

ACTING = ("prior", "importance")


@dataclass(frozen=True)
class REQConfig:
    """Hyperparameters of REQ / CRR (defaults: App. A.9 Table 5 unless a field says otherwise)."""

    operator: str = "req"
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
    acting: str = "prior"
    """How the policy acts: `prior` (sample / mean) or `importance` (softmax(Q/eta) over N prior samples)."""

    def __post_init__(self) -> None:
        if self.operator not in losses.OPERATORS:
            raise ValueError(f"operator must be one of {losses.OPERATORS}, got {self.operator!r}")
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


@dataclass
class Batch:
    """Tensors of one update (B transitions). `expert_action` may be None (no labels)."""

    obs: torch.Tensor
    """(B, S)"""
    action: torch.Tensor
    """(B, D) in [-1, 1]"""
    reward: torch.Tensor
    """(B,) n-step discounted reward"""
    discount: torch.Tensor
    """(B,) bootstrap discount gamma^m * (not terminal)"""
    next_obs: torch.Tensor
    """(B, S)"""
    expert_action: torch.Tensor | None = None
    """(B, D) psi(s) in [-1, 1]"""


@dataclass
class REQLearner:
    obs_dim: int
    action_dim: int
    config: REQConfig = field(default_factory=REQConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        cfg = self.config
        torch.manual_seed(self.seed)
        self.prior = GaussianPrior(self.obs_dim, self.action_dim, cfg.hidden, cfg.init_std, cfg.min_var)
        self.q = QNetwork(self.obs_dim, self.action_dim, cfg.hidden)
        self.target_prior = copy.deepcopy(self.prior).requires_grad_(False)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.log_alpha_mean = torch.nn.Parameter(torch.tensor(1.0))
        self.log_alpha_cov = torch.nn.Parameter(torch.tensor(1.0))
        self.prior_optim = torch.optim.Adam([
            {"params": list(self.prior.parameters()), "lr": cfg.learning_rate},
            {"params": [self.log_alpha_mean, self.log_alpha_cov], "lr": cfg.dual_learning_rate}])
        self.q_optim = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)
        self.num_updates = 0
        self.generator = torch.Generator().manual_seed(self.seed)

    # -- sampling helpers -----------------------------------------------------------------------

    def _sample_prior(self, prior: GaussianPrior, obs: torch.Tensor) -> torch.Tensor:
        """N clipped samples per state (B, N, D)."""
        mean, std = prior(obs)
        noise = torch.randn((self.config.num_samples, *mean.shape), generator=self.generator)
        return (mean + std * noise).clamp(-1.0, 1.0).transpose(0, 1)

    def _q_of_samples(self, q: QNetwork, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a_j) (B, N) for actions (B, N, D)."""
        n = actions.shape[1]
        return q(obs[:, None, :].expand(-1, n, -1), actions)

    def _value(self, obs: torch.Tensor) -> tuple[torch.Tensor, losses.TemperatureStats | None]:
        """V(s) (B,) of the evaluated policy from target prior and target Q."""
        q_samples = self._q_of_samples(self.target_q, obs, self._sample_prior(self.target_prior, obs))
        eta, stats = None, None
        if self.config.operator == "req":
            eta, stats = losses.solve_temperature(q_samples, self.config.epsilon, self.config.temperature_steps)
        return losses.state_value(q_samples, eta, self.config.operator), stats

    # -- update ---------------------------------------------------------------------------------

    def fit_normalizers(self, obs: np.ndarray) -> None:
        """Fix the observation statistics of all networks (call once, on the first data)."""
        x = torch.as_tensor(obs, dtype=torch.float32)
        for net in (self.prior, self.q, self.target_prior, self.target_q):
            net.normalizer.fit(x)

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.config
        # 1. policy evaluation (eq. 2 / TD(0))
        with torch.no_grad():
            next_value, temp_stats = self._value(batch.next_obs)
            target = losses.policy_evaluation_target(batch.reward, batch.discount, next_value)
        q_loss, q_stats = losses.critic_loss(self.q(batch.obs, batch.action), target)
        self.q_optim.zero_grad()
        q_loss.backward()
        self.q_optim.step()

        # 2. prior improvement (eq. 3 / eq. 4)
        with torch.no_grad():
            value, _ = self._value(batch.obs)
            data_weight = losses.advantage_filter(self.target_q(batch.obs, batch.action), value)
            expert_action, expert_weight = None, None
            if cfg.expert_action_improvement and batch.expert_action is not None:
                expert_action = batch.expert_action
                expert_weight = losses.advantage_filter(self.target_q(batch.obs, expert_action), value)
            target_mean, target_std = self.target_prior(batch.obs)
        mean, std = self.prior(batch.obs)
        p_loss, p_stats = losses.prior_improvement_loss(
            mean, std, target_mean, target_std, batch.action, data_weight, expert_action, expert_weight,
            self.log_alpha_mean, self.log_alpha_cov, cfg.epsilon_mean, cfg.epsilon_cov)
        self.prior_optim.zero_grad()
        p_loss.backward()
        self.prior_optim.step()

        # 3. target networks (Alg. 1: copy every U steps)
        self.num_updates += 1
        if self.num_updates % cfg.target_update_period == 0:
            self.target_prior.load_state_dict(self.prior.state_dict())
            self.target_q.load_state_dict(self.q.state_dict())

        stats = {**asdict(q_stats), **asdict(p_stats), "prior_std": float(std.detach().mean())}
        if temp_stats is not None:
            stats.update({f"temperature_{k}": v for k, v in asdict(temp_stats).items()})
        return stats

    # -- acting ---------------------------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool, acting: str | None = None) -> np.ndarray:
        """Action (D,) in [-1, 1] for one observation (S,); `acting` overrides the config's mode."""
        acting = acting or self.config.acting
        x = torch.as_tensor(np.asarray(obs, np.float32))[None]
        mean, std = self.prior(x)
        if acting == "prior":
            a = mean + std * torch.randn(mean.shape, generator=self.generator) if explore else mean
            return a.clamp(-1, 1)[0].numpy()
        if acting != "importance":
            raise ValueError(f"acting must be one of {ACTING}, got {acting!r}")
        samples = self._sample_prior(self.prior, x)  # (1, N, D)
        q_samples = self._q_of_samples(self.q, x, samples)
        eta, _ = losses.solve_temperature(q_samples, self.config.epsilon, self.config.temperature_steps)
        weights = losses.importance_weights(q_samples, eta)[0]
        j = int(torch.multinomial(weights, 1, generator=self.generator)) if explore else int(weights.argmax())
        return samples[0, j].numpy()

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "prior": self.prior.state_dict(), "q": self.q.state_dict(),
            "target_prior": self.target_prior.state_dict(), "target_q": self.target_q.state_dict(),
            "log_alpha_mean": self.log_alpha_mean.detach().clone(), "log_alpha_cov": self.log_alpha_cov.detach().clone(),
            "prior_optim": self.prior_optim.state_dict(), "q_optim": self.q_optim.state_dict(),
            "num_updates": self.num_updates, "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.prior.load_state_dict(state["prior"])
        self.q.load_state_dict(state["q"])
        self.target_prior.load_state_dict(state["target_prior"])
        self.target_q.load_state_dict(state["target_q"])
        with torch.no_grad():
            self.log_alpha_mean.copy_(state["log_alpha_mean"])
            self.log_alpha_cov.copy_(state["log_alpha_cov"])
        self.prior_optim.load_state_dict(state["prior_optim"])
        self.q_optim.load_state_dict(state["q_optim"])
        self.num_updates = int(state["num_updates"])
        self.generator.set_state(state["generator"])
