"""Networks of the DMPO agent: a Gaussian policy and a categorical (C51) critic.

Both take one flat observation vector; an `InputNormalizer` with fixed buffers
maps raw inputs to roughly unit scale, so an exported policy is a plain
function of the raw observation. Torsos are Acme's layer-norm MLP
(`training.req.networks.layer_norm_mlp`: Linear → LayerNorm → tanh, then
Linear → elu): 3×256 for the policy and 3×512 for the critic (RRLfD Sec. 4).

The policy head follows RRLfD's residual: its mean layer starts near zero
(tiny weights, zero bias), so a fresh residual adds almost nothing to the base
action, and its standard deviation starts at `init_std` for every input
(std = softplus(raw + shift) + min_std with near-zero raw at initialisation).

Shapes: B batch, S observation dims, D action dims, A atoms.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from training.req.networks import layer_norm_mlp


class InputNormalizer(nn.Module):
    """(x - mean) / std with fixed buffers (set once with `set`, saved in the state_dict)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, mean, std, min_std: float = 1e-3) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise ValueError(f"normalizer statistics have {mean.numel()}/{std.numel()} dims, expected {self.mean.numel()}")
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class GaussianPolicy(nn.Module):
    """π(a|s) = N(μ(s), diag σ(s)²). forward(obs (B, S)) -> (mean (B, D), std (B, D))."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: tuple[int, ...] = (256, 256, 256),
        init_std: float = 0.1,
        min_std: float = 1e-6,
        init_mean_weight: float = 1e-4,
    ):
        super().__init__()
        if init_std <= min_std:
            raise ValueError(f"init_std ({init_std}) must exceed min_std ({min_std})")
        self.normalizer = InputNormalizer(obs_dim)
        self.torso = layer_norm_mlp(obs_dim, hidden)
        self.mean_head = nn.Linear(hidden[-1], action_dim)
        self.std_head = nn.Linear(hidden[-1], action_dim)
        for head in (self.mean_head, self.std_head):
            nn.init.uniform_(head.weight, -init_mean_weight, init_mean_weight)
            nn.init.zeros_(head.bias)
        self.min_std = min_std
        self.std_shift = _inverse_softplus(init_std - min_std)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.torso(self.normalizer(obs))
        std = F.softplus(self.std_head(h) + self.std_shift) + self.min_std
        return self.mean_head(h), std


class CategoricalCritic(nn.Module):
    """Z(s, a) as a categorical distribution on fixed atoms. forward(obs (..., S), action (..., D)) -> logits (..., A)."""

    def __init__(
        self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (512, 512, 512), num_atoms: int = 51,
        v_min: float = 0.0, v_max: float = 1.0,
    ):
        super().__init__()
        if num_atoms < 2 or v_max <= v_min:
            raise ValueError(f"critic support needs >= 2 atoms and v_max > v_min, got {num_atoms} on [{v_min}, {v_max}]")
        self.normalizer = InputNormalizer(obs_dim)
        self.torso = layer_norm_mlp(obs_dim + action_dim, hidden)
        self.head = nn.Linear(hidden[-1], num_atoms)
        self.register_buffer("atoms", torch.linspace(v_min, v_max, num_atoms))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(torch.cat([self.normalizer(obs), action], dim=-1)))

    def expected_value(self, logits: torch.Tensor) -> torch.Tensor:
        """E[Z] (...) from logits (..., A)."""
        return (F.softmax(logits, dim=-1) * self.atoms).sum(-1)
