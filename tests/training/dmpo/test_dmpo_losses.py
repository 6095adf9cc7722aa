"""DMPO losses against plain reference implementations (loops, numpy, torch.distributions)."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from training.dmpo import losses


def reference_projection(z_p, p, z_q):
    """Each source atom (clipped) splits its mass linearly between the two target atoms around it."""
    out = np.zeros((len(z_p), len(z_q)))
    for b in range(len(z_p)):
        for z, mass in zip(np.clip(z_p[b], z_q[0], z_q[-1]), p[b]):
            i = np.searchsorted(z_q, z, side="right") - 1
            if i >= len(z_q) - 1:
                out[b, -1] += mass
                continue
            frac = (z - z_q[i]) / (z_q[i + 1] - z_q[i])
            out[b, i] += mass * (1 - frac)
            out[b, i + 1] += mass * frac
    return out


@pytest.mark.parametrize("support", ["uniform51", "uneven"])
def test_l2_project_matches_reference(support):
    rng = np.random.default_rng(0)
    z_q = np.linspace(0, 1, 51) if support == "uniform51" else np.sort(rng.uniform(-1, 2, 9))
    z_p = rng.uniform(-1.5, 2.5, size=(16, 30))
    p = rng.dirichlet(np.ones(30), size=16)
    got = losses.l2_project(torch.tensor(z_p), torch.tensor(p), torch.tensor(z_q)).numpy()
    np.testing.assert_allclose(got, reference_projection(z_p, p, z_q), atol=1e-10)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-10)


def test_categorical_td_target_is_shifted_and_discounted_distribution():
    atoms = torch.linspace(0, 1, 51)
    # all bootstrap mass on atom 0.5; r = 0.2, discount 0.8 -> target atom 0.6 exactly
    target_probs = torch.zeros(1, 51)
    target_probs[0, 25] = 1.0
    logits = torch.zeros(1, 51, requires_grad=True)
    loss, stats = losses.categorical_td_loss(logits, torch.tensor([0.2]), torch.tensor([0.8]), target_probs, atoms)
    assert stats.target_q_mean == pytest.approx(0.6, abs=1e-6)
    assert loss.item() == pytest.approx(math.log(51), rel=1e-6)  # CE of a point mass against uniform
    loss.backward()
    assert logits.grad[0, 30] < 0 and logits.grad[0, 0] > 0  # pushes mass toward atom 0.6


def reference_temperature_loss(q, eta, eps):
    n, b = q.shape
    lse = [np.log(np.sum(np.exp(q[:, j] / eta))) for j in range(b)]
    return eta * (eps + np.mean(lse) - np.log(n)), np.exp(q / eta) / np.exp(q / eta).sum(0)


def test_temperature_dual_matches_reference():
    rng = np.random.default_rng(1)
    q = rng.uniform(0, 1, size=(20, 8))
    weights, loss = losses.temperature_dual_loss(torch.tensor(q), torch.tensor([0.3], dtype=torch.float64), 0.1)
    ref_loss, ref_weights = reference_temperature_loss(q, 0.3, 0.1)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(weights.numpy(), ref_weights, rtol=1e-10)


def test_minimising_the_temperature_dual_meets_the_kl_budget():
    """At the optimum of g(η) the weights' KL to the sampling policy equals ε (the E-step constraint)."""
    torch.manual_seed(0)
    q = torch.rand(20, 64, dtype=torch.float64)
    log_eta = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([log_eta], lr=0.05)
    for _ in range(2000):
        _, loss = losses.temperature_dual_loss(q, losses.softplus_dual(log_eta), 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights, _ = losses.temperature_dual_loss(q, losses.softplus_dual(log_eta), 0.1)
    assert losses.nonparametric_kl(weights).mean().item() == pytest.approx(0.1, rel=0.1)


def test_gaussian_kl_and_log_prob_per_dim_match_torch_distributions():
    g = torch.Generator().manual_seed(2)
    m1, m2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    s1, s2 = torch.rand(5, 3, generator=g) + 0.1, torch.rand(5, 3, generator=g) + 0.1
    torch.testing.assert_close(losses.gaussian_kl_per_dim(m1, s1, m2, s2), kl_divergence(Normal(m1, s1), Normal(m2, s2)))
    x = torch.randn(7, 5, 3, generator=g)
    torch.testing.assert_close(losses.gaussian_log_prob_per_dim(x, m1, s1), Normal(m1, s1).log_prob(x))


def test_mpo_policy_loss_matches_reference_and_moves_duals_the_right_way():
    g = torch.Generator().manual_seed(3)
    B, N, D = 6, 20, 2
    target_mean, target_std = torch.randn(B, D, generator=g), torch.rand(B, D, generator=g) + 0.2
    online_mean = (target_mean + 0.3).requires_grad_()
    online_std = (target_std * 1.5).requires_grad_()
    actions = Normal(target_mean, target_std).sample((N,))
    q = torch.rand(N, B, generator=g)
    log_eta = torch.tensor([0.5], requires_grad=True)
    log_am = torch.full((D,), 1.0, requires_grad=True)
    log_as = torch.full((D,), 2.0, requires_grad=True)
    eps, eps_m, eps_s = 0.1, 2.5e-3, 1e-6
    loss, stats = losses.mpo_policy_loss(
        online_mean, online_std, target_mean, target_std, actions, q, log_eta, log_am, log_as, eps, eps_m, eps_s
    )
    # reference with torch.distributions, written the long way
    eta = torch.nn.functional.softplus(log_eta.detach()) + 1e-8
    am = torch.nn.functional.softplus(log_am.detach()) + 1e-8
    a_s = torch.nn.functional.softplus(log_as.detach()) + 1e-8
    w = torch.softmax(q / eta, 0)
    l_temp = eta * (eps + torch.logsumexp(q / eta, 0).mean() - math.log(N))
    fixed_std = Normal(online_mean.detach(), target_std)
    fixed_mean = Normal(target_mean, online_std.detach())
    l_pol = -(w * fixed_std.log_prob(actions).sum(-1)).sum(0).mean() - (w * fixed_mean.log_prob(actions).sum(-1)).sum(0).mean()
    kl_m = kl_divergence(Normal(target_mean, target_std), fixed_std).mean(0)
    kl_s = kl_divergence(Normal(target_mean, target_std), fixed_mean).mean(0)
    ref = l_temp + l_pol + (am * kl_m).sum() + (a_s * kl_s).sum() + (am * (eps_m - kl_m)).sum() + (a_s * (eps_s - kl_s)).sum()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert stats.kl_mean_rel == pytest.approx(kl_m.mean().item() / eps_m, rel=1e-5)
    loss.backward()
    # both KLs exceed their budgets here, so gradient descent must raise both alphas
    assert (log_am.grad < 0).all() and (log_as.grad < 0).all()
    # and the online mean is pulled back toward the target mean
    assert (online_mean.grad > 0).float().mean() > 0.5
