"""REQ and CRR losses as pure functions (Jeong et al. 2020, "Learning Dexterous Manipulation from
Suboptimal Experts", papers/004_*).

Every function takes tensors and returns tensors (losses return `(loss, stats)`); nothing here
owns a network, an optimiser or data. Stats are detached 0-dim tensors on the inputs' device, not
floats: reading a CUDA value is a device sync, so the learner turns all of an update's stats into
floats at once (`training.device.floats`). Shape key:

    B   batch size
    N   action samples per state drawn from the prior (paper: M in Alg. 1, N in eq. 2; 20-50)
    D   action dimensions

The per-state temperature eta_s (App. A.3, eqs. 12-13) minimises the dual

    g(eta) = eta * eps + eta * log( (1/N) sum_j exp(Q_j / eta) )

whose derivative g'(eta) = eps - KL(w || uniform), w = softmax(Q / eta), so the minimiser is the
temperature at which the importance weights sit exactly eps nats away from the prior samples.

Policy evaluation (eq. 2):  y = r + gamma * sum_j softmax_j(Q'(s', a_j) / eta_s') Q'(s', a_j),
a_j ~ prior'(.|s').  CRR (the TD(0) operator, Sec. 6.1) is the same with uniform weights.

Prior improvement (eq. 3 and 4): maximise log prior(a|s) on dataset actions whose advantage
A = Q'(s, a) - V(s) >= 0, plus on the expert's action psi(s) when its advantage is >= 0, under
KL trust regions on the mean (eps_mu) and on the covariance (eps_sigma) enforced by Lagrange
multipliers (the decoupled MPO update, Abdolmaleki et al. 2018b).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.req.config import OPERATORS  # noqa: F401 (the one list lives in the torch-free config)


@dataclass(frozen=True)
class TemperatureStats:
    eta_mean: torch.Tensor
    """Mean temperature over the batch after the last step."""
    kl_mean: torch.Tensor
    """Mean KL(w || uniform) over the batch at the final temperature (target: eps)."""
    dual_grad_abs_mean: torch.Tensor
    """Mean |g'(eta)| at the final temperature (0 at the optimum)."""


def temperature_dual(eta: torch.Tensor, q_samples: torch.Tensor, epsilon: float) -> torch.Tensor:
    """g(eta) per state (B,), eq. 12 with the integral estimated by the N prior samples.

    eta: (B,) > 0; q_samples: (B, N).
    """
    n = q_samples.shape[-1]
    log_mean_exp = torch.logsumexp(q_samples / eta[:, None], dim=-1) - torch.log(
        torch.tensor(float(n), dtype=q_samples.dtype))
    return eta * epsilon + eta * log_mean_exp


def _kl_to_uniform(q_samples: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """KL(softmax(Q / eta) || uniform) per state (B,) = -g'(eta) + eps."""
    log_w = torch.log_softmax(q_samples / eta[:, None], dim=-1)
    n = q_samples.shape[-1]
    return (log_w.exp() * log_w).sum(-1) + torch.log(torch.tensor(float(n), dtype=q_samples.dtype))


def solve_temperature(
    q_samples: torch.Tensor,
    epsilon: float,
    num_steps: int = 50,
    step_size: float = 0.5,
    eta_min: float = 1e-6,
) -> tuple[torch.Tensor, TemperatureStats]:
    """Per-state temperature eta_s (B,) by `num_steps` gradient steps on the dual g (App. A.3).

    q_samples: (B, N) target-network Q-values of N prior samples per state (treated as constants).
    Start: eta_0 = mean over the batch of the per-state std of the Q samples (eq. 13).
    Step: the gradient is scaled by the current temperature (App. A.3, "to ensure reliable
    convergence for arbitrary Q values"), applied multiplicatively so eta stays positive:
        eta <- eta * exp(-step_size * g'(eta)),   g'(eta) = eps - KL(softmax(Q/eta) || uniform),
    which to first order is eta <- eta - step_size * eta * g'(eta). The analytic derivative is used
    instead of autograd (same value, no graph). Where every sample has the same Q (no information)
    KL is 0 for every eta; eta then grows, the weights stay uniform, and nothing breaks.
    """
    if q_samples.dim() != 2:
        raise ValueError(f"q_samples must be (B, N), got shape {tuple(q_samples.shape)}")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    q = q_samples.detach().double()
    eta0 = q.std(dim=-1).mean().clamp_min(1e-3)
    eta = eta0.expand(q.shape[:1]).clone()  # no float(eta0): that would wait for the device
    for _ in range(num_steps):
        grad = epsilon - _kl_to_uniform(q, eta)
        eta = (eta * torch.exp(-step_size * grad.clamp(-4.0, 4.0))).clamp(eta_min, 1e6)
    kl = _kl_to_uniform(q, eta)
    stats = TemperatureStats(eta_mean=eta.mean(), kl_mean=kl.mean(), dual_grad_abs_mean=(epsilon - kl).abs().mean())
    return eta.to(q_samples.dtype), stats


def importance_weights(q_samples: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """Self-normalised weights softmax_j(Q_j / eta_s) (B, N) of the prior samples (eq. 2)."""
    return torch.softmax(q_samples / eta[:, None], dim=-1)


def state_value(q_samples: torch.Tensor, eta: torch.Tensor | None, operator: str) -> torch.Tensor:
    """V(s) (B,) of the policy being evaluated.

    `req`: the importance-weighted value sum_j softmax_j(Q_j/eta) Q_j of the KL-constrained policy
    (Alg. 1, line 'Compute V'); `td0`: the mean of Q over prior samples (CRR's value of the prior).
    """
    if operator == "req":
        if eta is None:
            raise ValueError("the req operator needs a temperature eta")
        return (importance_weights(q_samples, eta) * q_samples).sum(-1)
    if operator == "td0":
        return q_samples.mean(-1)
    raise ValueError(f"unknown operator {operator!r}; known: {OPERATORS}")


def policy_evaluation_target(
    reward: torch.Tensor, discount: torch.Tensor, next_value: torch.Tensor
) -> torch.Tensor:
    """y = r + discount * V'(s') (B,); `discount` folds gamma^n and the termination mask."""
    return reward + discount * next_value


@dataclass(frozen=True)
class CriticStats:
    critic_loss: torch.Tensor
    q_mean: torch.Tensor
    target_mean: torch.Tensor


def critic_loss(q: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, CriticStats]:
    """Squared TD error of eq. 2: mean_B (Q(s, a) - y)^2 / 2, with y constant."""
    target = target.detach()
    loss = 0.5 * (q - target).pow(2).mean()
    return loss, CriticStats(loss.detach(), q.detach().mean(), target.mean())


def advantage_filter(q_action: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Binary filter 1[Q(s, a) - V(s) >= 0] (B,) as float (eq. 3, CRR-bin)."""
    return (q_action - value >= 0).to(q_action.dtype)


def gaussian_log_prob(action: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(action; mean, diag(std^2)) summed over D: (B, D) -> (B,)."""
    var = std.pow(2)
    return (-0.5 * ((action - mean).pow(2) / var + torch.log(2 * torch.pi * var))).sum(-1)


def gaussian_kl(mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)) for diagonal Gaussians, summed over D: (B,)."""
    var_p, var_q = std_p.pow(2), std_q.pow(2)
    return 0.5 * (var_p / var_q + (mean_q - mean_p).pow(2) / var_q - 1.0 + torch.log(var_q / var_p)).sum(-1)


@dataclass(frozen=True)
class PriorStats:
    prior_loss: torch.Tensor
    """Filtered negative log-likelihood (mean part + covariance part)."""
    frac_data_kept: torch.Tensor
    """Fraction of dataset actions with advantage >= 0."""
    frac_expert_kept: torch.Tensor
    """Fraction of expert actions psi(s) with advantage >= 0 (0 when eq. 4 is off)."""
    kl_mean: torch.Tensor
    """Mean KL of the mean-only update (target: <= eps_mu)."""
    kl_cov: torch.Tensor
    """Mean KL of the covariance-only update (target: <= eps_sigma)."""
    alpha_mean: torch.Tensor
    alpha_cov: torch.Tensor


def prior_improvement_loss(
    mean: torch.Tensor,
    std: torch.Tensor,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
    data_action: torch.Tensor,
    data_weight: torch.Tensor,
    expert_action: torch.Tensor | None,
    expert_weight: torch.Tensor | None,
    log_alpha_mean: torch.Tensor,
    log_alpha_cov: torch.Tensor,
    epsilon_mean: float,
    epsilon_cov: float,
) -> tuple[torch.Tensor, PriorStats]:
    """Filtered maximum likelihood with decoupled KL trust regions (eq. 3, eq. 4, Sec. 3).

    mean, std: (B, D) online prior; target_mean, target_std: (B, D) target prior (pi_i).
    data_action: (B, D) dataset actions; data_weight: (B,) their binary advantage filter.
    expert_action, expert_weight: (B, D), (B,) psi(s) and its filter, or None (eq. 3 only).
    log_alpha_mean, log_alpha_cov: scalar Lagrange-multiplier parameters (alpha = softplus).

    The log-likelihood is split as in MPO: the mean part uses the online mean with the target
    covariance, the covariance part the target mean with the online covariance, each constrained
    by KL(pi_new || pi_i) <= eps. Eq. 4 as printed multiplies the expert's indicator with
    log pi(a|s) of the dataset action; we use log pi(psi(s)|s), as the text describes ("actions
    from the expert psi for inclusion into the prior"). Normalised by B (Alg. 1: 1/|B|).
    The multipliers are trained by the same loss: alpha * (eps - KL) with KL held constant,
    the policy terms with alpha held constant.
    """
    target_mean, target_std = target_mean.detach(), target_std.detach()
    batch = mean.shape[0]

    def nll(action: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        lp_mean = gaussian_log_prob(action, mean, target_std)
        lp_cov = gaussian_log_prob(action, target_mean, std)
        return -(weight.detach() * (lp_mean + lp_cov)).sum() / batch

    loss_nll = nll(data_action, data_weight)
    frac_expert = data_weight.new_zeros(())
    if expert_action is not None:
        if expert_weight is None:
            raise ValueError("expert_action given without expert_weight")
        loss_nll = loss_nll + nll(expert_action, expert_weight)
        frac_expert = expert_weight.detach().mean()

    kl_mean = gaussian_kl(mean, target_std, target_mean, target_std).mean()
    kl_cov = gaussian_kl(target_mean, std, target_mean, target_std).mean()
    alpha_mean = torch.nn.functional.softplus(log_alpha_mean)
    alpha_cov = torch.nn.functional.softplus(log_alpha_cov)
    loss_kl = alpha_mean.detach() * kl_mean + alpha_cov.detach() * kl_cov
    loss_alpha = alpha_mean * (epsilon_mean - kl_mean.detach()) + alpha_cov * (epsilon_cov - kl_cov.detach())
    loss = loss_nll + loss_kl + loss_alpha
    return loss, PriorStats(
        prior_loss=loss_nll.detach(), frac_data_kept=data_weight.detach().mean(), frac_expert_kept=frac_expert,
        kl_mean=kl_mean.detach(), kl_cov=kl_cov.detach(), alpha_mean=alpha_mean.detach(), alpha_cov=alpha_cov.detach())
