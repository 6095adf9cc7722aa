"""What `rrl train bc` trains (`BCConfig`), importable without torch.

`rrl --help` builds every subcommand's flags from these fields (`rrl.config_args`), so this module
imports nothing heavy; `training.bc.train` re-exports `BCConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

LAMBDA = 0.9
"""lambda of the RRLfD loss (velocity L2 weight; 1 - lambda on the gripper cross-entropy)."""
OBS_VARIANTS = ("depth", "depth+proprio", "rgb", "rgb+proprio", "state", "proprio")
ACTION_TARGETS = ("absolute", "joint_delta")
CROP_FRACTION = 224 / 240
"""RRLfD crops 224 px out of 240 px renders; other resolutions keep the proportion."""


@dataclass(frozen=True)
class BCConfig:
    """What `rrl train bc` trains."""

    task: str
    """Task name the demos were recorded on, e.g. ur5_pick."""
    demos: tuple[str, ...]
    """Demonstration bag directories (rosbag2/MCAP, `rrl record`)."""
    obs: Literal["depth", "depth+proprio", "rgb", "rgb+proprio", "state", "proprio"] = "depth+proprio"
    """Inputs: depth | depth+proprio | rgb | rgb+proprio (ResNet-18-half on 3 stacked frames) | state | proprio (MLP)."""
    epochs: int = 30
    """Training epochs; the epoch with the lowest validation loss is kept."""
    batch_size: int = 64
    """Samples per gradient step."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam L2 weight decay."""
    lam: float = LAMBDA
    """lambda of the loss (velocity L2 weight); the paper's 0.9."""
    action_targets: Literal["absolute", "joint_delta"] = "absolute"
    """What the network regresses: `absolute`, the demos' actions; `joint_delta`, joint-position targets as
    offsets from the joint positions measured at step t (every horizon), for tasks whose actions are joint
    targets (the Adroit hand; needs a proprio or state input). The exported graph adds the joints back, so
    the artifact's action is absolute either way."""
    rotation_deg: float = 5.0
    """Maximum random rotation of the image augmentation, degrees (the paper says "small rotations")."""
    image_px: int | None = None
    """Expected camera resolution of the depth or RGB demos, px (checked against the bags; the crop is 224/240 of it);
    none: whatever the bags hold."""
    input_std_min: float = 0.0
    """Added to every std that normalises the state/proprio input: a dimension that barely moves in the demos (a
    joint the expert holds, std ~1e-3) otherwise reads a policy's small drift there as tens of sigmas."""
    select_on: Literal["loss", "loss_t"] = "loss"
    """Validation figure that picks the kept epoch: `loss` (all horizons, RRLfD) or `loss_t` (the t horizon
    alone, the action that runs; far-horizon joint offsets overfit first and would stop the t horizon early)."""
    val_fraction: float = 0.05
    """Episodes held out for validation (RRLfD: 95/5 split)."""
    split_seed: int = 0
    """Seed of the episode split."""
    seed: int = 0
    """Seed of initialisation, batch order and augmentation."""
    threads: int = 1
    """torch intra-op threads (the machine is shared; keep 1-2)."""
    checkpoint_every_s: float = 30.0
    """Write a checkpoint at least this often within an epoch (and always at its end), seconds."""
    aux_fields: tuple[str, ...] = ()
    """State fields (e.g. cube_pos bowl_pos) a linear head must read off the bottleneck features, in training
    only: an auxiliary regression (normalised MSE) that makes the features say where the objects are, for the
    residual that reads them. Not exported; RRLfD's BC has none (the default)."""
    aux_weight: float = 1.0
    """Weight of the auxiliary loss beside the BC loss (RRLfD eq. 1); the kept epoch is chosen on the BC loss."""

    def __post_init__(self) -> None:
        if self.obs not in OBS_VARIANTS:
            raise ValueError(f"obs must be one of {OBS_VARIANTS}, got {self.obs!r}")
        if self.action_targets not in ACTION_TARGETS:
            raise ValueError(f"action_targets must be one of {ACTION_TARGETS}, got {self.action_targets!r}")
        if self.action_targets == "joint_delta" and self.scalar_field is None:
            raise ValueError(f"action_targets joint_delta needs the measured joint positions as an input: --obs {self.obs} "
                             "has none (use state, proprio, or an image variant +proprio)")
        if not self.input_std_min >= 0:
            raise ValueError(f"input_std_min must be >= 0, got {self.input_std_min}")
        if self.select_on not in ("loss", "loss_t"):
            raise ValueError(f"select_on must be loss or loss_t, got {self.select_on!r}")
        if not self.demos:
            raise ValueError("no demonstration bags given (--demos DIR ...)")
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0 or self.split_seed < 0:
            raise ValueError(f"seed and split_seed must be >= 0, got {self.seed} and {self.split_seed}")
        if not self.lr > 0 or not 0 <= self.lam <= 1 or self.rotation_deg < 0:
            raise ValueError(f"invalid lr {self.lr}, lam {self.lam} or rotation_deg {self.rotation_deg}")
        if self.image_px is not None and self.image_px < 8:
            raise ValueError(f"image_px must be >= 8, got {self.image_px}")
        if self.aux_fields and not self.aux_weight > 0:
            raise ValueError(f"aux_weight must be > 0 with aux_fields, got {self.aux_weight}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")

    @property
    def uses_images(self) -> bool:
        return self.camera is not None

    @property
    def camera(self) -> str | None:
        """Camera modality the network reads (the bags' `spec.camera`): depth, rgb or none."""
        modality = self.obs.split("+")[0]
        return modality if modality in ("depth", "rgb") else None

    @property
    def scalar_field(self) -> str | None:
        """Vector observation field fed to the network: proprio, state or none."""
        return {"depth": None, "depth+proprio": "proprio", "rgb": None, "rgb+proprio": "proprio", "state": "state",
                "proprio": "proprio"}[self.obs]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["demos"], d["aux_fields"] = list(self.demos), list(self.aux_fields)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BCConfig":
        """From `to_dict` output (run.yaml, artifact provenance); runs older than a field get its default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown BC config keys {sorted(unknown)}")
        return cls(**{**d, "demos": tuple(d["demos"]), "aux_fields": tuple(d.get("aux_fields", ()))})


def crop_px(image_px: int) -> int:
    """The training/runtime crop of an `image_px` render (224/240 of it, at least 8 px)."""
    return max(8, int(round(image_px * CROP_FRACTION)))
