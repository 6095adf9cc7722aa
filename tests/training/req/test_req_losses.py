"""Numeric tests of training/req/losses.py against plain references."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize_scalar

from training.req import losses


def test_dual_minimiser_two_actions_known_answer():
    """Q = {0, 1}: the optimum puts weight p = sigmoid(1/eta) on the better action with KL(w || uniform) = eps.

    KL(p) = log 2 + p log p + (1 - p) log(1 - p); solve KL(p) = eps for p in (1/2, 1), then eta* = 1 / logit(p).
    """
    eps = 0.3
    p = brentq(lambda p: math.log(2) + p * math.log(p) + (1 - p) * math.log(1 - p) - eps, 0.5 + 1e-9, 1 - 1e-12)
    eta_star = 1.0 / math.log(p / (1 - p))
    q = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    eta, stats = losses.solve_temperature(q, epsilon=eps, num_steps=50)
    assert float(eta[0]) == pytest.approx(eta_star, rel=1e-4)
    assert stats.kl_mean == pytest.approx(eps, abs=1e-5)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_dual_minimiser_matches_scalar_minimisation(scale):
    """K = 20 and 50 scaled gradient steps reach the minimiser of g found by a 1-D optimiser, at any Q scale."""
    rng = np.random.default_rng(0)
    q = torch.tensor(rng.normal(size=(16, 20)) * scale * rng.uniform(0.2, 1.0, size=(16, 1)))
    eta20, _ = losses.solve_temperature(q, epsilon=0.75, num_steps=20)
    eta50, _ = losses.solve_temperature(q, epsilon=0.75, num_steps=50)
    for i in range(q.shape[0]):
        qi = q[i].numpy()
        def g(log_eta):
            eta = math.exp(log_eta)
            z = qi / eta
            return eta * 0.75 + eta * (np.log(np.mean(np.exp(z - z.max()))) + z.max())
        ref = math.exp(minimize_scalar(g, bounds=(math.log(scale) - 15, math.log(scale) + 15), method="bounded",
                                       options={"xatol": 1e-10}).x)
        assert float(eta50[i]) == pytest.approx(ref, rel=1e-3)
        assert float(eta20[i]) == pytest.approx(ref, rel=2e-2)
        # and the dual is not lower anywhere nearby
        d = losses.temperature_dual(eta50[i:i + 1], q[i:i + 1], 0.75)
        for f in (0.9, 1.1):
            assert float(losses.temperature_dual(eta50[i:i + 1] * f, q[i:i + 1], 0.75)) >= float(d) - 1e-9


def test_req_operator_against_brute_force():
    """y = r + discount * sum_j softmax_j(Q'/eta) Q', computed with loops in plain Python."""
    rng = np.random.default_rng(1)
    B, N = 5, 7
    q_next = rng.normal(size=(B, N))
    reward, discount = rng.uniform(size=B), rng.choice([0.0, 0.99 ** 3], size=B)
    eta, _ = losses.solve_temperature(torch.tensor(q_next), epsilon=0.75, num_steps=50)
    value = losses.state_value(torch.tensor(q_next), eta, "req")
    y = losses.policy_evaluation_target(torch.tensor(reward), torch.tensor(discount), value).numpy()
    for b in range(B):
        e = float(eta[b])
        weights = [math.exp(q_next[b, j] / e) for j in range(N)]
        total = sum(weights)
        brute = reward[b] + discount[b] * sum(w / total * q_next[b, j] for j, w in enumerate(weights))
        assert y[b] == pytest.approx(brute, rel=1e-9)
        # The KL-constrained policy is better than the prior but not better than the best sample.
        assert q_next[b].mean() < float(value[b]) < q_next[b].max()
    # TD(0) (CRR) is the uniform average
    td0 = losses.state_value(torch.tensor(q_next), None, "td0").numpy()
    np.testing.assert_allclose(td0, q_next.mean(1))


def test_temperature_limits_of_the_operator():
    q = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64)
    hot = losses.state_value(q, torch.tensor([1e6], dtype=torch.float64), "req")
    cold = losses.state_value(q, torch.tensor([1e-3], dtype=torch.float64), "req")
    assert float(hot) == pytest.approx(4.0 / 3.0, rel=1e-5)  # eta -> inf: mean (the prior)
    assert float(cold) == pytest.approx(3.0, rel=1e-9)  # eta -> 0: max


def test_binary_advantage_filter():
    q = torch.tensor([1.0, 2.0, 3.0, -1.0])
    v = torch.tensor([2.0, 2.0, 2.0, -2.0])
    np.testing.assert_array_equal(losses.advantage_filter(q, v).numpy(), [0.0, 1.0, 1.0, 1.0])


def _prior_inputs(b=6, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(b, d, generator=g, requires_grad=True)
    log_std = torch.full((b, d), -1.0, requires_grad=True)
    return mean, log_std, g


def test_filtered_actions_get_no_gradient_and_expert_term_pulls_toward_psi():
    mean, log_std, g = _prior_inputs()
    std = log_std.exp()
    data = torch.randn(6, 2, generator=g)
    psi = torch.randn(6, 2, generator=g)
    data_w = torch.tensor([1.0, 0, 1, 0, 1, 0])
    expert_w = torch.tensor([0.0, 1, 0, 1, 0, 0])
    zero = torch.tensor(-50.0)  # softplus(-50) ~ 0: no trust-region pull
    loss, stats = losses.prior_improvement_loss(mean, std, mean.detach(), std.detach(), data, data_w, psi, expert_w,
                                                zero.clone(), zero.clone(), 0.01, 1e-5)
    loss.backward()
    grad = mean.grad
    assert torch.all(grad[5] == 0)  # neither the data action nor psi kept on row 5
    # rows with only the data action kept: gradient descent moves the mean toward the data action
    for i in (0, 2, 4):
        assert torch.dot(-grad[i], data[i] - mean[i].detach()) > 0
    for i in (1, 3):
        assert torch.dot(-grad[i], psi[i] - mean[i].detach()) > 0
    assert stats.frac_data_kept == pytest.approx(0.5) and stats.frac_expert_kept == pytest.approx(1 / 3)


def test_trust_region_kls_and_multiplier_direction():
    b, d = 4, 3
    target_mean, target_std = torch.zeros(b, d), torch.full((b, d), 0.5)
    mean = (target_mean + 0.2).requires_grad_(True)
    std = (target_std * 1.5).requires_grad_(True)
    log_alpha_mean = torch.nn.Parameter(torch.tensor(0.0))
    log_alpha_cov = torch.nn.Parameter(torch.tensor(0.0))
    loss, stats = losses.prior_improvement_loss(mean, std, target_mean, target_std, torch.zeros(b, d), torch.zeros(b),
                                                None, None, log_alpha_mean, log_alpha_cov, 0.01, 1e-5)
    # closed forms: mean part 0.5 * d * 0.2^2 / 0.25; covariance part 0.5 * d * (r - 1 - log r), r = 1.5^2
    assert stats.kl_mean == pytest.approx(0.5 * d * 0.04 / 0.25, rel=1e-6)
    r = 2.25
    assert stats.kl_cov == pytest.approx(0.5 * d * (r - 1 - math.log(r)), rel=1e-6)
    loss.backward()
    # KL above its bound: gradient descent raises both multipliers, and pulls mean/std back to the target
    assert log_alpha_mean.grad < 0 and log_alpha_cov.grad < 0
    assert torch.all(mean.grad > 0) and torch.all(std.grad > 0)
