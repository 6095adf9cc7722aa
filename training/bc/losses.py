"""The multi-horizon BC loss of RRLfD (Alakuijala et al. 2021, eq. 1), as a pure function.

    L = lambda * sum_k sum_{d continuous} (v_hat - v)^2  +  (1 - lambda) * sum_k sum_{d binary} CE(g_hat, g)

summed over the K horizons (t, t+10, t+20, t+30) and action dims, averaged over the batch;
lambda = 0.9, or 1 when the action has no binary field (paper: "lambda = 1 for continuous-only
actions"). CE is the binary cross-entropy of the logit g_hat against the target g in {0, 1}.
Continuous targets are in normalised action units.

The Adroit hand tasks' action (joint position targets: arm, wrist, fingers) has no binary field, so
there the loss is the L2 term alone, lambda forced to 1 whatever is configured (the "velocity" of the
stats' names is then a joint position target; the cross-entropy stat is 0 and the accuracy nan).

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

from training.bc.config import LAMBDA
from training.device import floats


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
    loss_t: float = float("nan")
    """The loss of the t horizon alone (the action a policy executes), same weights."""


def bc_loss(pred: torch.Tensor, target: torch.Tensor, binary: torch.Tensor, lam: float = LAMBDA,
            valid: torch.Tensor | None = None) -> tuple[torch.Tensor, BCStats]:
    """RRLfD eq. 1; returns (loss, stats). The stats reach the host in one transfer (one sync per step on a GPU)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, K, A)")
    # Index vectors from the mask on the host: boolean-mask indexing of a GPU tensor waits for the GPU.
    mask = binary.detach().to("cpu", torch.bool)
    has_binary = bool(mask.any())
    cont_idx = torch.nonzero(~mask).flatten().to(pred.device)
    bin_idx = torch.nonzero(mask).flatten().to(pred.device)
    weight = torch.ones(pred.shape[:2], dtype=pred.dtype, device=pred.device) if valid is None else valid.to(pred.dtype)
    if not has_binary:
        lam = 1.0
    sq = (pred.index_select(-1, cont_idx) - target.index_select(-1, cont_idx)).pow(2).sum(-1)  # (B, K)
    velocity_l2 = (sq * weight).sum(-1).mean()
    if has_binary:
        ce = F.binary_cross_entropy_with_logits(pred.index_select(-1, bin_idx), target.index_select(-1, bin_idx),
                                                reduction="none").sum(-1)
        gripper_ce = (ce * weight).sum(-1).mean()
        with torch.no_grad():
            acc = ((pred[:, 0].index_select(-1, bin_idx) > 0) == (target[:, 0].index_select(-1, bin_idx) > 0.5)).float().mean()
    else:
        gripper_ce = torch.zeros((), dtype=pred.dtype, device=pred.device)
        acc = float("nan")
    loss = lam * velocity_l2 + (1.0 - lam) * gripper_ce
    with torch.no_grad():
        loss_t = lam * (sq[:, 0] * weight[:, 0]).mean()
        if has_binary:
            loss_t = loss_t + (1.0 - lam) * (ce[:, 0] * weight[:, 0]).mean()
    stats = floats({"loss": loss.detach(), "velocity_l2": velocity_l2.detach(), "gripper_ce": gripper_ce.detach(),
                    "gripper_accuracy": acc, "loss_t": loss_t})
    return loss, BCStats(**stats)
