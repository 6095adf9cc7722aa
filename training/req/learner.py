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

Device: networks, targets, multipliers, optimiser state, the sampling generator and every tensor
of `update` live on `device` (a CUDA generator on CUDA); `update` takes a CPU or device batch and
moves it once, and its stats cost one device sync. `state_dict()` holds CPU tensors only (a run
resumes on either kind of machine); `load_state_dict` maps them onto this learner's device.
Acting runs in a `REQActor` (prior, Q and a generator): the learner's own acts on its device;
`actor_state_dict()` hands out CPU copies of the prior's and Q's weights and `cpu_actor()` (or
`REQActor.from_state_dict` in a rollout worker) builds a CPU actor from them.

The learner pulls no data; the training script owns replay, logging and checkpoints.
Actions live in [-1, 1]^D (see `training.req.env`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from training.device import adam, cpu_state_dict, floats, generator_state, load_generator_state, to_device
from training.req import losses
from training.req.config import ACTING, REQConfig  # noqa: F401 (re-exported)
from training.req.networks import GaussianPrior, QNetwork



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


def _sample_prior(prior: GaussianPrior, obs: torch.Tensor, num_samples: int, generator: torch.Generator) -> torch.Tensor:
    """N clipped samples per state (B, N, D) from `prior` at obs (B, S), noise from `generator`."""
    mean, std = prior(obs)
    noise = torch.randn((num_samples, *mean.shape), generator=generator, device=mean.device)
    return (mean + std * noise).clamp(-1.0, 1.0).transpose(0, 1)


def _q_of_samples(q: QNetwork, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q(s, a_j) (B, N) for obs (B, S) and actions (B, N, D)."""
    n = actions.shape[1]
    return q(obs[:, None, :].expand(-1, n, -1), actions)


class REQActor:
    """Acts with a prior and a Q network (`act`), on the device they live on.

    The learner's own actor shares its networks and generator; a rollout worker's is built on the
    CPU from `REQLearner.actor_state_dict()` (`from_state_dict`) and refreshed with `load_state_dict`.
    """

    def __init__(self, prior: GaussianPrior, q: QNetwork, config: REQConfig, generator: torch.Generator):
        self.prior, self.q, self.config, self.generator = prior, q, config, generator

    @classmethod
    def from_state_dict(cls, obs_dim: int, action_dim: int, config: REQConfig, state: dict, seed: int = 0) -> REQActor:
        """A CPU actor from `REQLearner.actor_state_dict()` (the global torch RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):  # building the networks draws initial weights: not from the caller's stream
            prior = GaussianPrior(obs_dim, action_dim, config.hidden, config.init_std, config.min_var)
            q = QNetwork(obs_dim, action_dim, config.hidden)
        actor = cls(prior.requires_grad_(False), q.requires_grad_(False), config, torch.Generator().manual_seed(seed))
        actor.load_state_dict(state)
        return actor

    def load_state_dict(self, state: dict) -> None:
        """New weights from `REQLearner.actor_state_dict()` (mapped onto this actor's device)."""
        self.prior.load_state_dict(state["prior"])
        self.q.load_state_dict(state["q"])

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool, acting: str | None = None) -> np.ndarray:
        """Action (D,) in [-1, 1] for one observation (S,); `acting` overrides the config's mode."""
        acting = acting or self.config.acting
        device = self.prior.normalizer.mean.device
        x = torch.as_tensor(np.asarray(obs, np.float32), device=device)[None]
        mean, std = self.prior(x)
        if acting == "prior":
            a = mean + std * torch.randn(mean.shape, generator=self.generator, device=device) if explore else mean
            return a.clamp(-1, 1)[0].cpu().numpy()
        if acting != "importance":
            raise ValueError(f"acting must be one of {ACTING}, got {acting!r}")
        samples = _sample_prior(self.prior, x, self.config.num_samples, self.generator)  # (1, N, D)
        q_samples = _q_of_samples(self.q, x, samples)
        eta, _ = losses.solve_temperature(q_samples, self.config.epsilon, self.config.temperature_steps)
        weights = losses.importance_weights(q_samples, eta)[0]
        j = int(torch.multinomial(weights, 1, generator=self.generator)) if explore else int(weights.argmax())
        return samples[0, j].cpu().numpy()


@dataclass
class REQLearner:
    obs_dim: int
    action_dim: int
    config: REQConfig = field(default_factory=REQConfig)
    seed: int = 0
    device: torch.device | str = "cpu"
    """Where networks, optimiser state and updates live (`training.device.resolve_device`)."""

    def __post_init__(self) -> None:
        cfg = self.config
        self.device = torch.device(self.device)
        torch.manual_seed(self.seed)  # initial weights drawn on the CPU: the same on every kind of machine
        self.prior = GaussianPrior(self.obs_dim, self.action_dim, cfg.hidden, cfg.init_std, cfg.min_var).to(self.device)
        self.q = QNetwork(self.obs_dim, self.action_dim, cfg.hidden).to(self.device)
        self.target_prior = copy.deepcopy(self.prior).requires_grad_(False)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.log_alpha_mean = torch.nn.Parameter(torch.tensor(1.0, device=self.device))
        self.log_alpha_cov = torch.nn.Parameter(torch.tensor(1.0, device=self.device))
        self.prior_optim = adam([
            {"params": list(self.prior.parameters()), "lr": cfg.learning_rate},
            {"params": [self.log_alpha_mean, self.log_alpha_cov], "lr": cfg.dual_learning_rate}], lr=cfg.learning_rate)
        self.q_optim = adam(self.q.parameters(), lr=cfg.learning_rate)
        self.num_updates = 0
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.actor = REQActor(self.prior, self.q, cfg, self.generator)  # the learner's own networks, on its device

    def _value(self, obs: torch.Tensor) -> tuple[torch.Tensor, losses.TemperatureStats | None]:
        """V(s) (B,) of the evaluated policy from target prior and target Q."""
        samples = _sample_prior(self.target_prior, obs, self.config.num_samples, self.generator)
        q_samples = _q_of_samples(self.target_q, obs, samples)
        eta, stats = None, None
        if self.config.operator == "req":
            eta, stats = losses.solve_temperature(q_samples, self.config.epsilon, self.config.temperature_steps)
        return losses.state_value(q_samples, eta, self.config.operator), stats

    # -- update ---------------------------------------------------------------------------------

    def fit_normalizers(self, obs: np.ndarray) -> None:
        """Fix the observation statistics of all networks (call once, on the first data)."""
        x = torch.as_tensor(obs, dtype=torch.float32).to(self.device)
        for net in (self.prior, self.q, self.target_prior, self.target_q):
            net.normalizer.fit(x)

    def update(self, batch: Batch) -> dict[str, float]:
        """One update on `batch` (CPU or on the learner's device); stats as floats."""
        cfg = self.config
        batch = to_device(batch, self.device)
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

        temperature = {} if temp_stats is None else {
            f"temperature_{f.name}": getattr(temp_stats, f.name) for f in fields(temp_stats)}
        return floats(q_stats, p_stats, {"prior_std": std.detach().mean()}, temperature)

    # -- acting ---------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, explore: bool, acting: str | None = None) -> np.ndarray:
        """Action (D,) in [-1, 1] for one observation (S,) with the learner's networks (`REQActor.act`)."""
        return self.actor.act(obs, explore, acting)

    def actor_state_dict(self) -> dict:
        """CPU copies of what acting needs: the online prior's and Q's states."""
        return {"prior": cpu_state_dict(self.prior), "q": cpu_state_dict(self.q)}

    def cpu_actor(self, seed: int = 0) -> REQActor:
        """A CPU actor with the current weights and its own generator (refresh with `load_state_dict`)."""
        return REQActor.from_state_dict(self.obs_dim, self.action_dim, self.config, self.actor_state_dict(), seed)

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything `load_state_dict` restores, as CPU tensors (for checkpoints on any machine)."""
        return cpu_state_dict({
            "prior": self.prior.state_dict(), "q": self.q.state_dict(),
            "target_prior": self.target_prior.state_dict(), "target_q": self.target_q.state_dict(),
            "log_alpha_mean": self.log_alpha_mean, "log_alpha_cov": self.log_alpha_cov,
            "prior_optim": self.prior_optim.state_dict(), "q_optim": self.q_optim.state_dict(),
            "num_updates": self.num_updates, "generator": generator_state(self.generator),
        })

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()` (CPU or device tensors) onto this learner's device."""
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
        load_generator_state(self.generator, state["generator"])
