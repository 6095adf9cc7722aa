"""The RRLfD behavioural-cloning network f_theta (Alakuijala et al. 2021, Sec. 4.1 / 5).

Image variant (`BCNet` with `image_channels > 0`): ResNet-18 with every width halved —
a 7x7/2 stem of 32 channels + 3x3/2 max pool, four stages of two BasicBlocks with
32/64/128/256 channels (strides 1, 2, 2, 2), global average pooling to a 256-d
bottleneck. Scalar inputs (proprioception) are concatenated to the bottleneck, and one linear
head predicts the actions at t, t+10, t+20, t+30:

    images (B, C, H, W) -> resnet -> z (B, 256) ; [z, proprio] (B, 256 + P) -> head -> (B, K, A)

with C = 3 stacked depth frames (or 9 for 3 RGB frames), K = 4 horizons, A action dims.
The features the residual reads are z (the bottleneck, RRLfD: "the final hidden layer before
the fully connected output layer" — here before the proprio concatenation, so that the
residual receives proprio once, as its own input).

State variant (`image_channels == 0`): an MLP on the normalised state or proprio vector,
2 hidden layers of 256 (ReLU), the last of which is the 256-d feature output.

Outputs are in normalised action units; binary fields (gripper) are logits (the loss applies a
cross-entropy; `ExportWrapper` turns them into probabilities for the artifact).
No torchvision here: the ResNet is written out (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HORIZONS = (0, 10, 20, 30)
"""Prediction offsets in control steps (RRLfD: a_t, a_{t+10}, a_{t+20}, a_{t+30})."""
FEATURE_DIM = 256
"""Bottleneck width d."""
STEM_WIDTH = 32
STAGE_WIDTHS = (32, 64, 128, 256)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN) shortcut (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNet18Half(nn.Module):
    """ResNet-18 with halved widths: (B, C, H, W) -> (B, 256) after global average pooling."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, STEM_WIDTH, 7, 2, 3, bias=False), nn.BatchNorm2d(STEM_WIDTH),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], STEM_WIDTH
        for i, c_out in enumerate(STAGE_WIDTHS):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean(dim=(2, 3))


class BCNet(nn.Module):
    """f_theta: (images?, scalars?) -> (actions (B, K, A) normalised/logits, features (B, 256))."""

    def __init__(self, action_dim: int, image_channels: int = 0, scalar_dim: int = 0, horizons: int = len(HORIZONS),
                 aux_dim: int = 0):
        super().__init__()
        if image_channels <= 0 and scalar_dim <= 0:
            raise ValueError("BCNet needs images or scalar inputs")
        self.action_dim, self.horizons = action_dim, horizons
        self.image_channels, self.scalar_dim = image_channels, scalar_dim
        if image_channels > 0:
            self.encoder: nn.Module = ResNet18Half(image_channels)
            head_in = FEATURE_DIM + scalar_dim
        else:
            self.encoder = nn.Sequential(nn.Linear(scalar_dim, 256), nn.ReLU(), nn.Linear(256, FEATURE_DIM), nn.ReLU())
            head_in = FEATURE_DIM
        self.head = nn.Linear(head_in, horizons * action_dim)
        self.aux_head = nn.Linear(FEATURE_DIM, aux_dim) if aux_dim > 0 else None
        """Training only (`BCConfig.aux_fields`): object positions read linearly off the features z."""

    def forward(self, images: torch.Tensor | None = None, scalars: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.image_channels > 0:
            z = self.encoder(images)
            h = torch.cat([z, scalars], dim=1) if self.scalar_dim > 0 else z
        else:
            z = self.encoder(scalars)
            h = z
        return self.head(h).view(-1, self.horizons, self.action_dim), z


@dataclass(frozen=True)
class JointDelta:
    """How a `joint_delta` network's output becomes the artifact's absolute action: the joints `index` of the
    normalised scalar input (its `input_mean`/`input_std` there) plus the offset (`delta_mean + delta_std * out`),
    normalised by the action statistics (`action_mean`, `action_std`) the artifact records."""

    index: np.ndarray
    input_mean: np.ndarray
    input_std: np.ndarray
    delta_mean: np.ndarray
    delta_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray


class ExportWrapper(nn.Module):
    """The artifact's graph: inputs in artifact order -> (action at t, features).

    The action is normalised, with sigmoid probabilities in the binary dims (`binary_mask`). A `joint_delta`
    network (`joints` given) has its offsets turned into that absolute action in the graph, so the runtime runs
    it as any BC artifact."""

    def __init__(self, net: BCNet, binary_mask: torch.Tensor, joints: JointDelta | None = None):
        super().__init__()
        self.net = net
        self.register_buffer("binary_mask", binary_mask.to(torch.bool))
        self.joints = joints is not None
        if joints is not None:
            as_t = lambda v: torch.as_tensor(np.asarray(v), dtype=torch.float32)  # noqa: E731
            self.register_buffer("joint_index", torch.as_tensor(joints.index, dtype=torch.long))
            for name in ("input_mean", "input_std", "delta_mean", "delta_std", "action_mean", "action_std"):
                self.register_buffer(name, as_t(getattr(joints, name)))

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.net.image_channels > 0:
            images, scalars = inputs[0], (inputs[1] if self.net.scalar_dim > 0 else None)
        else:
            images, scalars = None, inputs[0]
        actions, z = self.net(images, scalars)
        a0 = actions[:, 0]
        if self.joints:
            q = scalars[:, self.joint_index] * self.input_std + self.input_mean
            a0 = (q + self.delta_mean + self.delta_std * a0 - self.action_mean) / self.action_std
        return torch.where(self.binary_mask, torch.sigmoid(a0), a0), z


def fuse_batchnorm(net: BCNet) -> BCNet:
    """An evaluation-only copy of `net` with every BatchNorm folded into the conv before it.

    Same function (up to float rounding); used for export so that what is stored (and possibly
    rounded to float16) is exactly the weights torch runs in the parity check.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    for m in net.modules():
        if isinstance(m, BasicBlock):
            m.conv1, m.bn1 = fuse_conv_bn_eval(m.conv1, m.bn1), nn.Identity()
            m.conv2, m.bn2 = fuse_conv_bn_eval(m.conv2, m.bn2), nn.Identity()
            if isinstance(m.shortcut, nn.Sequential):
                m.shortcut = nn.Sequential(fuse_conv_bn_eval(m.shortcut[0], m.shortcut[1]))
        if isinstance(m, ResNet18Half):
            m.stem = nn.Sequential(fuse_conv_bn_eval(m.stem[0], m.stem[1]), *m.stem[2:])
    return net


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
