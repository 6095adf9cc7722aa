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

Image inputs (DMPO from scratch on images, end-to-end fine-tuning of an image BC): an
`ImageEncoder` is Acme's DMPO observation network, shared by policy and critic. The flat input
then carries the image stack after the vector fields; the encoder turns it into
[ResNet-18-half features (256), vector fields] for both heads. `DMPOLearner` trains it with the
critic's loss only and feeds the policy the target encoder's embedding (Acme's `dmpo/learning.py`).

Shapes: B batch, S observation dims, D action dims, A atoms; with images S = V + C·h·w (V vector
fields, C stacked channels, h×w the crop) and the heads read E = 256 + V.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from training.bc.network import FEATURE_DIM, ResNet18Half
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


class ImageEncoder(nn.Module):
    """Acme's DMPO observation network on images: flat (..., V + C·h·w) -> (..., 256 + V) = [ResNet(image), vector].

    The ResNet is RRLfD's ResNet-18-half (`training.bc.network.ResNet18Half`): a fresh one (from scratch) or
    the BC base's own (end-to-end fine-tuning). Its BatchNorm layers work as in BC training: batch statistics
    in training mode (the learner's online encoder: they keep every layer's scale while RL gradients move the
    weights; with frozen statistics the features grew ~10⁶-fold within 200 updates on a test task), running
    statistics in evaluation mode (the target encoder, hence acting). A fresh encoder gets the running
    statistics of real frames once (`calibrate`): with BatchNorm's initial mean 0, variance 1 its evaluation-mode
    features come out ~100× smaller than a trained one's until the first target copy.
    """

    def __init__(self, vector_dim: int, image_shape: tuple[int, int, int], resnet: ResNet18Half | None = None):
        super().__init__()
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, h, w), got {image_shape}")
        self.vector_dim, self.image_shape = int(vector_dim), tuple(int(v) for v in image_shape)
        self.resnet = resnet if resnet is not None else ResNet18Half(self.image_shape[0])

    @property
    def input_dim(self) -> int:
        c, h, w = self.image_shape
        return self.vector_dim + c * h * w

    @property
    def out_dim(self) -> int:
        return FEATURE_DIM + self.vector_dim

    @torch.no_grad()
    def calibrate(self, images: torch.Tensor) -> None:
        """Set every BatchNorm's running mean and variance to the statistics of `images` (N, C, h, w): one pass in
        training mode with a cumulative average (a data-dependent initialisation of a fresh ResNet). A channel that
        barely varies over `images` keeps a variance of at least 1 % of its layer's median (and 1e-4): dividing by
        its own tiny spread would amplify the first weight updates through every later layer."""
        norms = [m for m in self.resnet.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        was_training = self.resnet.training
        self.resnet.train()
        self.resnet(images.reshape(-1, *self.image_shape))
        self.resnet.train(was_training)
        for m in norms:
            m.momentum = 0.1
            m.running_var.clamp_(min=max(1e-4, 1e-2 * float(m.running_var.median())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"image encoder input has {x.shape[-1]} values, expected {self.input_dim} "
                             f"({self.vector_dim} vector + image {self.image_shape})")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.input_dim)
        vector, image = flat[:, :self.vector_dim], flat[:, self.vector_dim:].reshape(-1, *self.image_shape)
        return torch.cat([self.resnet(image), vector], dim=-1).reshape(*lead, self.out_dim)


class EncodedPolicy(nn.Module):
    """The acting policy of an image agent: flat input -> encoder -> policy head -> (mean, std)."""

    def __init__(self, encoder: ImageEncoder, policy: nn.Module):
        super().__init__()
        self.encoder, self.policy = encoder, policy

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.policy(self.encoder(obs))
