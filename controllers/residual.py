"""Residual composition: the executed action is the base action plus a scaled residual.

RRLfD (Alakuijala et al. 2021, Sec. 3) executes `u + a`, with `u` from the base
policy and `a` from the residual policy. At evaluation the residual is its
deterministic mean; its scale `c` (eq. 6) lives in the residual's artifact:

    action = u + c * a          u, a: (A,), c: scalar or (A,)

Binary action fields (the gripper) are left to the base by default: a residual
on a 0/1 command only flips it, which the paper does not do either (its
residual acts on the continuous velocities).

Pure numpy: the control node, the bench and the tests call the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.safety import ActionLimits


@dataclass(frozen=True)
class ResidualComposer:
    """`u + c * a` over the continuous action fields of a task."""

    limits: ActionLimits
    """Action limits of the task (only its size and binary mask are used here)."""
    scale: float | tuple[float, ...] = 1.0
    """c: the residual scale (scalar or one per action dimension)."""
    residual_on_binary: bool = False
    """Also add the residual to binary fields (off: binary fields are the base's)."""

    def __post_init__(self) -> None:
        c = np.asarray(self.scale, dtype=np.float64)
        if c.ndim not in (0, 1) or (c.ndim == 1 and c.size != self.limits.size):
            raise ValueError(f"residual scale must be a scalar or have {self.limits.size} values, got shape {c.shape}")
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError(f"residual scale must be finite and >= 0, got {self.scale}")

    def mask(self) -> np.ndarray:
        """(A,) 1.0 where the residual applies, 0.0 on binary fields (unless `residual_on_binary`)."""
        m = np.ones(self.limits.size, dtype=np.float64)
        if not self.residual_on_binary:
            m[self.limits.binary_mask] = 0.0
        return m

    def compose(self, base_action: np.ndarray, residual: np.ndarray | None) -> np.ndarray:
        """u + c * a (A,); `residual=None` returns u. NaN/Inf pass through (the safety layer catches them)."""
        u = np.asarray(base_action, dtype=np.float64).reshape(-1)
        if u.size != self.limits.size:
            raise ValueError(f"base action has {u.size} dims, expected {self.limits.size}")
        if residual is None:
            return u.copy()
        a = np.asarray(residual, dtype=np.float64).reshape(-1)
        if a.size != u.size:
            raise ValueError(f"residual has {a.size} dims, expected {u.size}")
        # where the mask is 0 the residual must not leak in, not even a NaN: select, don't multiply.
        return np.where(self.mask() > 0, u + np.asarray(self.scale, dtype=np.float64) * a, u)
