"""Losses of distributional MPO (DMPO) as pure functions returning `(loss, stats)`.

- Critic: categorical (C51) distributional TD learning (Bellemare et al. 2017,
  https://arxiv.org/abs/1707.06887): the n-step target distribution
  r + d·z under the target critic is projected back onto the fixed support z
  (51 atoms on [0, 1] for sparse 0/1 returns, RRLfD Sec. 4) and the online
  critic minimises the cross-entropy to it. The bootstrap distribution at
  o_{t+n} is the mixture over N actions sampled from the target policy (Acme's
  DMPO learner, `acme/agents/tf/dmpo/learning.py`).
- Policy: MPO with decoupled KL constraints (Abdolmaleki et al. 2018a,
  https://arxiv.org/abs/1806.06920, and 2018b, https://arxiv.org/abs/1812.02256),
  following Acme's `acme/tf/losses/mpo.py`:
  E-step   q(a|s) ∝ π_target(a|s) exp(Q(s,a)/η): with N samples per state the
           weights are softmax_N(Q/η); η minimises the dual
           g(η) = η·(ε + mean_B logsumexp_N(Q/η) − log N).
  M-step   maximise Σ_N w·log π(a|s) with the online policy decomposed into
           (online mean, target std) and (target mean, online std), under
           KL(π_target ‖ π) ≤ ε_μ for the mean part and ≤ ε_Σ for the std part,
           each constraint per action dimension (`per_dim_constraining`) with
           its own Lagrange multiplier α.
  Dual variables live in log space through a softplus, as Acme does:
  η = softplus(log_eta) + 1e-8, projected to log_eta ≥ −18.
  Acme's optional MO-MPO action penalty is not used: the residual is
  unbounded in normalised units and clipped to the task limits at execution.

Shape key: B batch, N action samples per state, D action dims, A atoms.

Stats are detached 0-dim tensors on the inputs' device, not floats: reading a CUDA value is a
device sync, so the learner turns all of an update's stats into floats at once
(`training.device.floats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MPO_FLOAT_EPSILON = 1e-8
"""Added to every softplus-transformed dual variable (Acme)."""
MIN_LOG_DUAL = -18.0
"""Lower bound of the dual variables' log-space parameters (Acme)."""


# -- critic ---------------------------------------------------------------------------------------


def l2_project(z_p: torch.Tensor, p: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """Project the distribution (z_p, p) onto the support z_q (C51 projection, L2 metric over CDFs).

    z_p (B, K) atoms of the source distribution, p (B, K) their probabilities,
    z_q (A,) increasing target support. Returns (B, A) probabilities: every source
    atom, clipped to [z_q[0], z_q[-1]], splits its mass between its two
    neighbouring target atoms in proportion to closeness. Works for any
    increasing support (not only evenly spaced ones).
    """
    v_min, v_max = z_q[0], z_q[-1]
    z = z_p.clamp(v_min, v_max)[:, None, :]  # (B, 1, K)
    gap_up = torch.cat([z_q[1:] - z_q[:-1], z_q.new_ones(1)])[None, :, None]  # z_q[i+1] - z_q[i], (1, A, 1)
    gap_down = torch.cat([z_q.new_ones(1), z_q[1:] - z_q[:-1]])[None, :, None]  # z_q[i] - z_q[i-1]
    delta = z - z_q[None, :, None]  # (B, A, K): z_p[j] - z_q[i]
    distance = torch.where(delta >= 0, delta / gap_up, -delta / gap_down)
    return ((1.0 - distance).clamp(0.0, 1.0) * p[:, None, :]).sum(-1)


@dataclass(frozen=True)
class CriticStats:
    critic_loss: torch.Tensor
    """Mean cross-entropy between the projected target and the online distribution."""
    q_mean: torch.Tensor
    """Mean of the online critic's expected value E[Z(s, a)] over the batch."""
    target_q_mean: torch.Tensor
    """Mean of the expected value of the projected target."""


def categorical_td_loss(
    logits: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor, target_probs: torch.Tensor, atoms: torch.Tensor
) -> tuple[torch.Tensor, CriticStats]:
    """Categorical distributional TD loss (Acme `losses.categorical`).

    logits (B, A): online critic at (o_t, a_t); reward (B,) n-step return;
    discount (B,) bootstrap discount γ^m·Π d; target_probs (B, A): bootstrap
    distribution at o_{t+m} (no gradient); atoms (A,). The target r + d·z is
    projected onto `atoms`; loss = mean_B CE(target, softmax(logits)).
    """
    z_target = reward[:, None] + discount[:, None] * atoms[None, :]
    target = l2_project(z_target, target_probs, atoms).detach()
    loss = -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    with torch.no_grad():
        stats = CriticStats(
            critic_loss=loss.detach(),
            q_mean=(F.softmax(logits, -1) * atoms).sum(-1).mean(),
            target_q_mean=(target * atoms).sum(-1).mean(),
        )
    return loss, stats


def mixture_over_samples(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities (B, A) of the equal-weight mixture of N categorical distributions, logits (N, B, A)."""
    return F.softmax(logits, dim=-1).mean(0)


# -- policy ---------------------------------------------------------------------------------------


def softplus_dual(log_param: torch.Tensor) -> torch.Tensor:
    """A positive dual variable from its log-space parameter: softplus(x) + 1e-8 (Acme)."""
    return F.softplus(log_param) + MPO_FLOAT_EPSILON


def temperature_dual_loss(q_values: torch.Tensor, eta: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """E-step: normalised weights (N, B) = softmax_N(Q/η) and the temperature dual loss.

    q_values (N, B) of actions sampled from the target policy (no gradient);
    eta scalar (1,). Loss = η·(ε + mean_B logsumexp_N(Q/η) − log N), the dual of
    max_q E_q[Q] s.t. KL(q ‖ π_target) ≤ ε with the expectation over N samples.
    """
    q = q_values.detach()
    tempered = q / eta
    weights = F.softmax(tempered, dim=0).detach()
    log_n = math.log(q.shape[0])
    loss = eta * (epsilon + torch.logsumexp(tempered, dim=0).mean() - log_n)
    return weights, loss.squeeze()


def nonparametric_kl(weights: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ π_target) (B,) estimated from normalised weights (N, B): Σ_N w·log(N·w) (a diagnostic)."""
    n = weights.shape[0]
    return (weights * torch.log(n * weights + 1e-8)).sum(0)


def gaussian_kl_per_dim(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_p, std_p²) ‖ N(mean_q, std_q²)) per dimension, (B, D)."""
    var_ratio = (std_p / std_q).pow(2)
    return 0.5 * (var_ratio + ((mean_q - mean_p) / std_q).pow(2) - 1.0 - torch.log(var_ratio))


def gaussian_log_prob_per_dim(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) per dimension; broadcasts x (N, B, D) against mean, std (B, D)."""
    return -0.5 * ((x - mean) / std).pow(2) - torch.log(std) - 0.5 * math.log(2 * math.pi)


def kl_penalty_and_dual_loss(kl: torch.Tensor, alpha: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Lagrangian terms of one KL constraint, kl (B, D) and alpha (D,).

    Penalty Σ_D sg(α)·mean_B KL (trains the policy); dual loss Σ_D α·(ε − sg(mean_B KL))
    (trains α: it grows while the KL exceeds ε and shrinks otherwise).
    """
    mean_kl = kl.mean(0)
    penalty = (alpha.detach() * mean_kl).sum()
    dual = (alpha * (epsilon - mean_kl.detach())).sum()
    return penalty, dual


@dataclass(frozen=True)
class MPOStats:
    policy_loss: torch.Tensor
    """Total MPO loss: weighted NLL of both decomposed policies + KL penalties + dual losses."""
    temperature: torch.Tensor
    """η, the E-step temperature."""
    alpha_mean: torch.Tensor
    """Mean over D of the Lagrange multipliers of the mean KL constraint."""
    alpha_std: torch.Tensor
    """Mean over D of the Lagrange multipliers of the std KL constraint."""
    kl_q_rel: torch.Tensor
    """KL(q ‖ π_target) / ε: how much of the E-step budget the weights use."""
    kl_mean_rel: torch.Tensor
    """Mean KL of the mean part / ε_μ."""
    kl_std_rel: torch.Tensor
    """Mean KL of the std part / ε_Σ."""
    q_min: torch.Tensor
    """Mean over states of the smallest sampled Q."""
    q_max: torch.Tensor
    """Mean over states of the largest sampled Q."""
    pi_std: torch.Tensor
    """Mean standard deviation of the online policy."""


def mpo_policy_loss(
    online_mean: torch.Tensor,
    online_std: torch.Tensor,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
    actions: torch.Tensor,
    q_values: torch.Tensor,
    log_temperature: torch.Tensor,
    log_alpha_mean: torch.Tensor,
    log_alpha_std: torch.Tensor,
    epsilon: float,
    epsilon_mean: float,
    epsilon_std: float,
) -> tuple[torch.Tensor, MPOStats]:
    """Decoupled MPO loss (Acme `losses.MPO` with per-dimension constraints, no action penalty).

    online_* / target_* (B, D) Gaussian parameters of the online and target
    policy at the same states; actions (N, B, D) sampled from the target policy;
    q_values (N, B) their expected returns under the target critic;
    log_temperature (1,), log_alpha_mean (D,), log_alpha_std (D,) the dual
    parameters. Returns the sum of the policy, KL-penalty and dual losses: its
    gradient trains the online policy and the duals at once.
    """
    eta = softplus_dual(log_temperature)
    alpha_mean = softplus_dual(log_alpha_mean)
    alpha_std = softplus_dual(log_alpha_std)

    weights, loss_temperature = temperature_dual_loss(q_values, eta, epsilon)

    # decomposition: (online mean, target std) and (target mean, online std)
    logp_mean = gaussian_log_prob_per_dim(actions, online_mean, target_std).sum(-1)  # (N, B)
    logp_std = gaussian_log_prob_per_dim(actions, target_mean, online_std).sum(-1)
    loss_policy_mean = -(weights * logp_mean).sum(0).mean()
    loss_policy_std = -(weights * logp_std).sum(0).mean()

    kl_mean = gaussian_kl_per_dim(target_mean, target_std, online_mean, target_std)  # (B, D)
    kl_std = gaussian_kl_per_dim(target_mean, target_std, target_mean, online_std)
    penalty_mean, loss_alpha_mean = kl_penalty_and_dual_loss(kl_mean, alpha_mean, epsilon_mean)
    penalty_std, loss_alpha_std = kl_penalty_and_dual_loss(kl_std, alpha_std, epsilon_std)

    loss = loss_policy_mean + loss_policy_std + penalty_mean + penalty_std + loss_alpha_mean + loss_alpha_std + loss_temperature
    with torch.no_grad():
        stats = MPOStats(
            policy_loss=loss.detach(),
            temperature=eta.mean(),
            alpha_mean=alpha_mean.mean(),
            alpha_std=alpha_std.mean(),
            kl_q_rel=nonparametric_kl(weights).mean() / epsilon,
            kl_mean_rel=kl_mean.mean() / epsilon_mean,
            kl_std_rel=kl_std.mean() / epsilon_std,
            q_min=q_values.min(0).values.mean(),
            q_max=q_values.max(0).values.mean(),
            pi_std=online_std.mean(),
        )
    return loss, stats
