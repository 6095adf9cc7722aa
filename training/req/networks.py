"""Networks of REQ (App. A.9, Table 5): MLPs with layer norm on the first layer and elu after.

Actions are in the normalised box [-1, 1]^D (the environment adapter maps them to task units),
observations are standardised by `ObservationNormalizer` with statistics fixed once from the first
data (so the exported network is a plain function of the raw observation).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class ObservationNormalizer(nn.Module):
    """(obs - mean) / std with buffers fitted once by `fit` (then part of the state_dict)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def fit(self, obs: torch.Tensor, min_std: float = 1e-2) -> None:
        self.mean.copy_(obs.mean(0))
        self.std.copy_(obs.std(0).clamp_min(min_std))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


def layer_norm_mlp(in_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """Linear -> LayerNorm -> tanh on the first layer, Linear -> elu after (Acme's LayerNormMLP)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden[0]), nn.LayerNorm(hidden[0]), nn.Tanh()]
    for a, b in zip(hidden[:-1], hidden[1:]):
        layers += [nn.Linear(a, b), nn.ELU()]
    return nn.Sequential(*layers)


class GaussianPrior(nn.Module):
    """pi_prior(a|s) = N(tanh(mu(s)), diag(sigma(s)^2)), sigma >= sqrt(min variance).

    forward(obs (B, S)) -> (mean (B, D) in [-1, 1], std (B, D)).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], init_std: float, min_var: float):
        super().__init__()
        self.normalizer = ObservationNormalizer(obs_dim)
        self.torso = layer_norm_mlp(obs_dim, hidden)
        self.mean_head = nn.Linear(hidden[-1], action_dim)
        self.std_head = nn.Linear(hidden[-1], action_dim)
        self.min_std = math.sqrt(min_var)
        nn.init.uniform_(self.mean_head.weight, -1e-3, 1e-3)
        nn.init.zeros_(self.mean_head.bias)
        nn.init.uniform_(self.std_head.weight, -1e-3, 1e-3)
        # softplus(b) + min_std == init_std
        nn.init.constant_(self.std_head.bias, math.log(math.expm1(max(init_std - self.min_std, 1e-6))))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.torso(self.normalizer(obs))
        mean = torch.tanh(self.mean_head(h))
        std = nn.functional.softplus(self.std_head(h)) + self.min_std
        return mean, std


class QNetwork(nn.Module):
    """Q(s, a): forward(obs (..., S), action (..., D)) -> (...,)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.normalizer = ObservationNormalizer(obs_dim)
        self.torso = layer_norm_mlp(obs_dim + action_dim, hidden)
        self.head = nn.Linear(hidden[-1], 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.normalizer(obs), action], dim=-1)
        return self.head(self.torso(x)).squeeze(-1)
