"""The multi-horizon BC loss of RRLfD (Alakuijala et al. 2021, eq. 1), as a pure function.

    L = lambda * sum_k sum_{d continuous} (v_hat - v)^2  +  (1 - lambda) * sum_k sum_{d binary} CE(g_hat, g)

summed over the K horizons (t, t+10, t+20, t+30) and action dims, averaged over the batch;
lambda = 0.9, or 1 when the action has no binary field (paper: "lambda = 1 for continuous-only
actions"). CE is the binary cross-entropy of the logit g_hat against the target g in {0, 1}.
Continuous targets are in normalised action units.

Shapes: B batch, K horizons, A action dims.
    pred    (B, K, A)  network output (normalised velocities; logits in binary dims)
    target  (B, K, A)  normalised velocities; 0/1 in binary dims
    binary  (A,)       bool mask of the binary dims
    valid   (B, K)     optional weights: 0 where t + offset lies beyond the episode end
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LAMBDA = 0.9


@dataclass
class BCStats:
    """Scalars for logging (floats, detached)."""

    loss: float
    velocity_l2: float
    """Batch mean of the summed squared velocity error (before the lambda weight)."""
    gripper_ce: float
    """Batch mean of the summed gripper cross-entropy (before the 1 - lambda weight)."""
    gripper_accuracy: float
    """Fraction of binary predictions (at t only) on the right side of 0.5; nan without binary dims."""


def bc_loss(pred: torch.Tensor, target: torch.Tensor, binary: torch.Tensor, lam: float = LAMBDA,
            valid: torch.Tensor | None = None) -> tuple[torch.Tensor, BCStats]:
    """RRLfD eq. 1; returns (loss, stats)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, K, A)")
    binary = binary.to(torch.bool).to(pred.device)
    cont = ~binary
    weight = torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device) if valid is None else valid.to(pred.dtype)
    if not bool(binary.any()):
        lam = 1.0
    sq = (pred[..., cont] - target[..., cont]).pow(2).sum(-1)  # (B, K)
    velocity_l2 = (sq * weight).sum(-1).mean()
    if bool(binary.any()):
        ce = F.binary_cross_entropy_with_logits(pred[..., binary], target[..., binary], reduction="none").sum(-1)
        gripper_ce = (ce * weight).sum(-1).mean()
        with torch.no_grad():
            acc = float(((pred[:, 0, binary] > 0) == (target[:, 0, binary] > 0.5)).float().mean())
    else:
        gripper_ce = torch.zeros((), dtype=pred.dtype, device=pred.device)
        acc = float("nan")
    loss = lam * velocity_l2 + (1.0 - lam) * gripper_ce
    return loss, BCStats(loss=float(loss.detach()), velocity_l2=float(velocity_l2.detach()),
                         gripper_ce=float(gripper_ce.detach()), gripper_accuracy=acc)
