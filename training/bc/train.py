"""Behavioural cloning of a base policy from demonstration bags (RRLfD Sec. 4.1), resumable.

Reads top to bottom: `BCConfig` (what to train), `Batches` (demo batches -> normalised
tensors, with the paper's image augmentation), `train(config, run_dir)` (the loop, with
TensorBoard logs, a progress bar, checkpoints and best-epoch selection) and `export_run`
(best checkpoint -> policy artifact).

Run directory layout:

    RUN/run.yaml              kind/algo (for `rrl export`), the config, the demos, the dataset split
                              (and any demo episodes skipped as unreadable)
    RUN/checkpoints/ckpt-<step>/state.pt
                              a `training.checkpoint` unit (hashed, written whole; the previous one
                              kept) every `checkpoint_every_s` and at each epoch end: model,
                              optimiser, RNG states, epoch and batch position, best so far
    RUN/checkpoints/best.pt   weights of the epoch with the lowest validation loss (RRLfD: "the
                              training epoch with the lowest validation loss"), replaced atomically
    RUN/tb/                   TensorBoard scalars

A killed run started again with the same command continues from its newest complete checkpoint
at the batch it stopped at (the batch order of an epoch is a function of seed and epoch,
`training.seeds.batch_order_seed`, so skipping the done batches replays it exactly); a different
config for an existing run directory is refused.

Observation variants (`obs`):
- `depth`, `depth+proprio`: the ResNet-18-half on the 3 stacked depth frames (+ proprio at the
  bottleneck). Augmentation as in RRLfD (after Laskin et al.): a random crop of 224/240 of the
  rendered size (60 px from 64) and a random rotation of +-`rotation_deg`; validation and runtime
  use the centre crop.
- `state`, `proprio`: an MLP on the normalised full state (or proprio only), for fast experiments.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from training.bc.losses import LAMBDA, bc_loss
from training.bc.network import HORIZONS, BCNet, ExportWrapper, fuse_batchnorm, parameter_count
from training.checkpoint import (Checkpoint, CheckpointError, CheckpointStore, refuse_old_layout, torch_file,
                                 write_file_atomic)
from training.seeds import batch_order_seed

RUN_FILE = "run.yaml"
CHECKPOINTS = "checkpoints"
"""The run's checkpoint directory (`training.checkpoint` layout; also holds `best.pt`)."""
OLD_LAYOUT = ("checkpoints/last.pt",)
"""The previous layout's checkpoint file (refused: written in place, it cannot be verified)."""
OBS_VARIANTS = ("depth", "depth+proprio", "state", "proprio")
CROP_FRACTION = 224 / 240
"""RRLfD crops 224 px out of 240 px renders; other resolutions keep the proportion."""


@dataclass(frozen=True)
class BCConfig:
    """What `rrl train bc` trains."""

    task: str
    """Task name the demos were recorded on, e.g. ur5_pick."""
    demos: tuple[str, ...]
    """Demonstration bag directories (rosbag2/MCAP, `rrl record`)."""
    obs: str = "depth+proprio"
    """Inputs: depth | depth+proprio (ResNet-18-half) | state | proprio (MLP)."""
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
    rotation_deg: float = 5.0
    """Maximum random rotation of the image augmentation, degrees (the paper says "small rotations")."""
    val_fraction: float = 0.05
    """Episodes held out for validation (RRLfD: 95/5 split)."""
    split_seed: int = 0
    """Seed of the episode split."""
    seed: int = 0
    """Seed of initialisation, batch order and augmentation."""
    threads: int = 1
    """torch intra-op threads (the machine is shared; keep 1-2)."""
    checkpoint_every_s: float = 30.0
    """Write a checkpoint at least this often within an epoch (and always at its end)."""

    def __post_init__(self) -> None:
        if self.obs not in OBS_VARIANTS:
            raise ValueError(f"obs must be one of {OBS_VARIANTS}, got {self.obs!r}")
        if not self.demos:
            raise ValueError("no demonstration bags given (--demos DIR ...)")
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0 or self.split_seed < 0:
            raise ValueError(f"seed and split_seed must be >= 0, got {self.seed} and {self.split_seed}")
        if not self.lr > 0 or not 0 <= self.lam <= 1 or self.rotation_deg < 0:
            raise ValueError(f"invalid lr {self.lr}, lam {self.lam} or rotation_deg {self.rotation_deg}")

    @property
    def uses_images(self) -> bool:
        return self.obs.startswith("depth")

    @property
    def scalar_field(self) -> str | None:
        """Vector observation field fed to the network: proprio, state or none."""
        return {"depth": None, "depth+proprio": "proprio", "state": "state", "proprio": "proprio"}[self.obs]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["demos"] = list(self.demos)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BCConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown BC config keys {sorted(unknown)}")
        return cls(**{**d, "demos": tuple(d["demos"])})


def crop_px(image_px: int) -> int:
    return max(8, int(round(image_px * CROP_FRACTION)))


def load_dataset(config: BCConfig, progress: bool = True):
    from training.demos.dataset import DatasetConfig, DemoDataset

    dataset = DemoDataset(list(config.demos), DatasetConfig(horizons=HORIZONS, val_fraction=config.val_fraction,
                                                            split_seed=config.split_seed), progress=progress)
    if dataset.spec.task != config.task:
        raise ValueError(f"demos were recorded on task {dataset.spec.task!r}, not {config.task!r}")
    if config.uses_images and dataset.spec.camera != "depth":
        raise ValueError(f"--obs {config.obs} needs depth demos; the bags have camera {dataset.spec.camera!r} "
                         "(record with --camera-px N)")
    return dataset


def binary_mask(dataset) -> np.ndarray:
    return np.array([label in dataset.spec.binary_action_labels for label in dataset.spec.action_labels], dtype=bool)


def action_stats(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension action mean/std; binary dims are not normalised (mean 0, std 1)."""
    mask = binary_mask(dataset)
    mean = np.where(mask, 0.0, dataset.stats["action"].mean).astype(np.float32)
    std = np.where(mask, 1.0, dataset.stats["action"].std).astype(np.float32)
    return mean, std


class Batches:
    """Demo batches -> (images, scalars, normalised targets) tensors; image augmentation in training."""

    def __init__(self, dataset, config: BCConfig):
        self.dataset, self.config = dataset, config
        self.a_mean, self.a_std = (torch.from_numpy(v) for v in action_stats(dataset))
        self.binary = torch.from_numpy(binary_mask(dataset))
        field_ = config.scalar_field
        self.s_mean = None if field_ is None else torch.tensor(dataset.stats[field_].mean, dtype=torch.float32)
        self.s_std = None if field_ is None else torch.tensor(dataset.stats[field_].std, dtype=torch.float32)
        if config.uses_images:
            h, w = dataset.spec.image_hw
            self.image_hw = (h, w)
            self.crop = (crop_px(h), crop_px(w))

    def tensors(self, batch: dict[str, np.ndarray], augment: bool, generator: torch.Generator | None = None):
        targets = torch.from_numpy(batch["targets"])
        targets = torch.where(self.binary, targets, (targets - self.a_mean) / self.a_std)
        scalars = None
        if self.config.scalar_field is not None:
            scalars = (torch.from_numpy(batch[self.config.scalar_field]) - self.s_mean) / self.s_std
        images = None
        if self.config.uses_images:
            frames = torch.from_numpy(np.ascontiguousarray(batch["frames"], dtype=np.float32))
            images = self.augment(frames, generator) if augment else self.centre_crop(frames)
        return images, scalars, targets

    def centre_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """The runtime's crop (policies.runtime.image_input): integer centre offsets."""
        (H, W), (h, w) = self.image_hw, self.crop
        top, left = (H - h) // 2, (W - w) // 2
        return frames[:, :, top:top + h, left:left + w]

    def augment(self, frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random crop (integer offset) + rotation about the crop centre, one bilinear resample."""
        B = frames.shape[0]
        (H, W), (h, w) = self.image_hw, self.crop
        top = torch.randint(0, H - h + 1, (B,), generator=generator).float()
        left = torch.randint(0, W - w + 1, (B,), generator=generator).float()
        angle = (torch.rand(B, generator=generator) * 2 - 1) * math.radians(self.config.rotation_deg)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # affine_grid maps output coords (x_o, y_o) in [-1, 1] over the h x w crop to input coords:
        # rotate in pixel units about the crop centre (cx, cy), then rescale to the W x H input.
        cx = (left + w / 2) / W * 2 - 1
        cy = (top + h / 2) / H * 2 - 1
        theta = torch.stack([torch.stack([cos * (w / W), -sin * (h / W), cx], 1),
                             torch.stack([sin * (w / H), cos * (h / H), cy], 1)], 1)
        grid = F.affine_grid(theta, (B, frames.shape[1], h, w), align_corners=False)
        return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)


def build_net(config: BCConfig, dataset) -> BCNet:
    action_dim = len(dataset.spec.action_labels)
    if config.uses_images:
        scalar_dim = len(dataset.spec.proprio_labels) if config.scalar_field else 0
        return BCNet(action_dim, image_channels=dataset.spec.history if dataset.spec.history else 3, scalar_dim=scalar_dim)
    labels = dataset.spec.state_labels if config.scalar_field == "state" else dataset.spec.proprio_labels
    return BCNet(action_dim, image_channels=0, scalar_dim=len(labels))


def checkpoint_store(run_dir: str | Path) -> CheckpointStore:
    """The BC checkpoints of run `run_dir`; a run of the previous layout is refused (`CheckpointError`)."""
    refuse_old_layout(run_dir, OLD_LAYOUT, "one file rewritten in place")
    return CheckpointStore(Path(run_dir) / CHECKPOINTS, "bc")


def read_checkpoint(store: CheckpointStore) -> tuple[Checkpoint, dict] | None:
    """The newest verified checkpoint and its contents (model, optimizer, generator, state), or None."""

    def check(ckpt: Checkpoint) -> dict:
        contents = torch.load(ckpt.file("state.pt"), weights_only=False)
        if contents["state"]["step"] != ckpt.step:
            raise CheckpointError(f"{ckpt.path}: state.pt is at gradient step {contents['state']['step']}, "
                                  f"the manifest says {ckpt.step}")
        return contents

    return store.load(check)


def recalibrate_batchnorm(net: BCNet, batches: Batches, max_batches: int = 16, batch_size: int = 128) -> None:
    """Re-estimate every BatchNorm's running mean/var with the current weights ("precise BN").

    The running averages collected during an epoch lag behind the weights (Adam changes the early
    layers every step), which made evaluation-mode losses swing by 5x between epochs on 64 px
    depth. Recomputing them over a fixed set of training batches (centre crop, as at run time)
    before validation and checkpointing makes the validation loss — and the kept epoch — mean
    what the exported model does. No-op for the MLP variant.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    net.train()
    with torch.no_grad():
        for i, batch in enumerate(batches.dataset.batches("train", batch_size, seed=None)):
            if i >= max_batches:
                break
            images, scalars, _ = batches.tensors(batch, augment=False)
            net(images, scalars)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def evaluate_loss(net: BCNet, batches: Batches, config: BCConfig, split: str = "val") -> dict[str, float]:
    """Mean loss and stats over a split (centre crop, eval mode)."""
    net.eval()
    totals: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for batch in batches.dataset.batches(split, 256, seed=None):
            images, scalars, targets = batches.tensors(batch, augment=False)
            pred, _ = net(images, scalars)
            _, stats = bc_loss(pred, targets, batches.binary, lam=config.lam)
            b = targets.shape[0]
            for k, v in dataclasses.asdict(stats).items():
                totals[k] = totals.get(k, 0.0) + v * b
            n += b
    net.train()
    return {k: v / max(n, 1) for k, v in totals.items()}


def train(config: BCConfig, run_dir: str | Path, progress: bool = True, max_batches: int | None = None) -> dict[str, Any]:
    """Train (or resume) a BC run in `run_dir`; returns a summary with the best epoch and losses.

    `max_batches` stops after that many gradient steps in this call (tests use it to simulate a
    kill at a known point)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    run = Path(run_dir)
    store = checkpoint_store(run)
    ckpt_dir = run / CHECKPOINTS
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_file = run / RUN_FILE
    if run_file.exists():
        previous = BCConfig.from_dict(yaml.safe_load(run_file.read_text())["config"])
        if previous != config:
            diff = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(previous).items()
                    if v != dataclasses.asdict(config)[k] and k != "demos"}
            raise ValueError(f"{run} holds a run with a different config {diff or '(demos differ)'}; use a new --out")
    torch.set_num_threads(config.threads)
    dataset = load_dataset(config, progress=progress)
    if dataset.size("val") == 0:
        raise ValueError("no validation episodes: record at least 2 episodes")
    batches = Batches(dataset, config)
    torch.manual_seed(config.seed)
    net = build_net(config, dataset)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "batch": 0, "best_val": float("inf"), "best_epoch": -1, "step": 0, "train_sum": 0.0, "train_n": 0}
    found = read_checkpoint(store)
    if found is not None:
        _, ckpt = found
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        state = ckpt["state"]
    else:
        run_file.write_text(yaml.safe_dump({
            "kind": "bc", "algo": "bc", "task": config.task, "config": config.to_dict(),
            "dataset": {"bags": [str(b) for b in dataset.bags], "episodes": len(dataset.episodes),
                        "train_episodes": int(len(dataset.split_episodes["train"])),
                        "val_episodes": int(len(dataset.split_episodes["val"])),
                        "train_samples": dataset.size("train"), "val_samples": dataset.size("val"),
                        "skipped_episodes": [{"file": str(path), "reason": reason} for path, reason in dataset.skipped]},
            "parameters": parameter_count(net),
        }, sort_keys=False))
    writer = SummaryWriter(str(run / "tb"))

    def checkpoint() -> None:
        contents = {"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "state": dict(state)}
        store.save(state["step"], {"state.pt": torch_file(contents)}, meta={"epoch": state["epoch"], "batch": state["batch"]})

    n_batches = math.ceil(dataset.size("train") / config.batch_size)
    steps_this_call = 0
    last_save = time.monotonic()
    net.train()
    stopped = False
    epochs = tqdm(range(state["epoch"], config.epochs), initial=state["epoch"], total=config.epochs, desc="bc epochs",
                  unit="ep", disable=not progress)
    for epoch in epochs:
        # drop_last: a tail batch of a few samples would give BatchNorm degenerate statistics
        order = dataset.batches("train", config.batch_size, seed=batch_order_seed(config.seed, epoch),
                                drop_last=dataset.size("train") > config.batch_size)
        for i, batch in enumerate(order):
            if i < state["batch"]:
                continue  # done before the restart
            images, scalars, targets = batches.tensors(batch, augment=True, generator=gen)
            pred, _ = net(images, scalars)
            loss, stats = bc_loss(pred, targets, batches.binary, lam=config.lam)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["batch"] = i + 1
            state["step"] += 1
            state["train_sum"] += stats.loss * targets.shape[0]
            state["train_n"] += targets.shape[0]
            writer.add_scalar("train/loss", stats.loss, state["step"])
            steps_this_call += 1
            if time.monotonic() - last_save > config.checkpoint_every_s:
                checkpoint()
                last_save = time.monotonic()
            if max_batches is not None and steps_this_call >= max_batches:
                stopped = True
                break
        if stopped:
            checkpoint()
            break
        recalibrate_batchnorm(net, batches)
        val = evaluate_loss(net, batches, config)
        train_loss = state["train_sum"] / max(state["train_n"], 1)
        for k, v in val.items():
            if not math.isnan(v):
                writer.add_scalar(f"val/{k}", v, epoch)
        writer.add_scalar("train/epoch_loss", train_loss, epoch)
        if val["loss"] < state["best_val"]:
            state["best_val"], state["best_epoch"] = val["loss"], epoch
            write_file_atomic(ckpt_dir / "best.pt", torch_file({"model": net.state_dict(), "epoch": epoch, "val": val}))
        state.update(epoch=epoch + 1, batch=0, train_sum=0.0, train_n=0)
        state.setdefault("history", []).append({"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"]})
        checkpoint()
        last_save = time.monotonic()
        epochs.set_postfix(train=f"{train_loss:.3f}", val=f"{val['loss']:.3f}", best=state["best_epoch"])
    writer.close()
    return {"run": str(run), "epochs_done": state["epoch"], "finished": state["epoch"] >= config.epochs,
            "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"], "history": state.get("history", []),
            "batches_per_epoch": n_batches}


def export_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False, weights_fp16: bool | None = None):
    """Best checkpoint of a BC run -> policy artifact (model.onnx + policy.yaml), parity-checked on
    validation samples. `weights_fp16` (default: for the image network, 11 MB -> 5.6 MB) stores the
    weights as float16, rounded in torch before the parity check."""
    from policies.artifact import (PENDING_SHA256, ActionSpec, CameraSpec, FieldStats, InputSpec, OutputSpec,
                                   PolicyArtifact)
    from training.export import export_artifact

    run = Path(run_dir)
    meta = yaml.safe_load((run / RUN_FILE).read_text())
    config = BCConfig.from_dict(meta["config"])
    best = run / "checkpoints" / "best.pt"
    if not best.exists():
        raise FileNotFoundError(f"{run} has no best.pt yet (no epoch finished); train longer")
    dataset = load_dataset(config, progress=False)
    net = build_net(config, dataset)
    ckpt = torch.load(best, weights_only=False)
    net.load_state_dict(ckpt["model"])
    net.eval()
    batches = Batches(dataset, config)
    spec = dataset.spec
    mask = binary_mask(dataset)
    wrapper = ExportWrapper(fuse_batchnorm(net) if config.uses_images else net, torch.from_numpy(mask)).eval()

    sample_batch = dataset.batch("val", np.arange(min(64, dataset.size("val"))))
    images, scalars, _ = batches.tensors(sample_batch, augment=False)
    inputs, samples, normalisation, camera = [], {}, {}, None
    if config.uses_images:
        h, w = batches.crop
        inputs.append(InputSpec("depth", ("depth",), (-1, images.shape[1], h, w)))
        samples["depth"] = images.numpy()
        camera = CameraSpec("depth", width_px=spec.image_hw[1], height_px=spec.image_hw[0], history=images.shape[1])
    if config.scalar_field is not None:
        f = config.scalar_field
        inputs.append(InputSpec(f, (f,), (-1, scalars.shape[1])))
        samples[f] = scalars.numpy()
        normalisation[f] = FieldStats.from_arrays(dataset.stats[f].mean, dataset.stats[f].std)
    a_mean, a_std = action_stats(dataset)
    normalisation["action"] = FieldStats.from_arrays(a_mean, a_std)
    # rebuild the action layout from the labels "name[i]" / "name"
    fields: list[list] = []
    for label in spec.action_labels:
        name = label.split("[")[0]
        if fields and fields[-1][0] == name:
            fields[-1][1] += 1
        else:
            fields.append([name, 1])
    binary_fields = tuple(dict.fromkeys(label.split("[")[0] for label in spec.binary_action_labels))
    artifact = PolicyArtifact(
        kind="bc", algo="bc", task=config.task, inputs=tuple(inputs),
        outputs=(OutputSpec("action", "action", (-1, len(mask))), OutputSpec("features", "features", (-1, 256))),
        action=ActionSpec(fields=tuple((n, s) for n, s in fields), low=spec.action_low, high=spec.action_high,
                          binary_fields=binary_fields),
        normalisation=normalisation, model_sha256=PENDING_SHA256, camera=camera,
        provenance={"training": config.to_dict(), "dataset": meta.get("dataset", {}), "run": str(run),
                    "best_epoch": int(ckpt["epoch"]), "best_val": ckpt["val"], "parameters": parameter_count(net)},
    )
    if weights_fp16 is None:
        weights_fp16 = config.uses_images
    return export_artifact(wrapper, samples, artifact, out_dir, overwrite=overwrite, weights_fp16=weights_fp16)
