"""Behavioural cloning of a base policy from demonstration bags (RRLfD Sec. 4.1), resumable.

Reads top to bottom: `BCConfig` (what to train; `training.bc.config`, torch-free, re-exported),
`Batches` (demo batches -> normalised tensors on the training device, with the paper's image
augmentation), `train(config, run_dir, options)` (the loop, on the shared harness's run
directory) and `export_run` (best weights -> policy artifact, on the CPU).

Run directory layout (a `training.harness.RunDir` of kind "bc"):

    RUN/config.yaml           kind + the config; a resumed run with another config is refused,
                              naming the fields that differ
    RUN/run.yaml              kind/algo (for `rrl export`), the config, the demos, the dataset split
                              (and any demo episodes skipped as unreadable)
    RUN/checkpoints/ckpt-<step>/state.pt
                              a `training.checkpoint` unit (hashed, written whole; the previous one
                              kept) every `checkpoint_every_s`, at each epoch end and when a call
                              stops early: model, optimiser, generator state, epoch and batch
                              position, best so far, the epoch history; CPU tensors only
    RUN/best.pt               weights of the epoch with the lowest validation loss (RRLfD: "the
                              training epoch with the lowest validation loss"), replaced atomically
    RUN/eval.jsonl            one line per finished epoch: train and validation losses, the best so far
    RUN/summary.json          the last call's summary (what `rrl train bc --json` prints)
    RUN/tb/                   TensorBoard scalars (losses, steps/s)

Run directories of the previous layouts (`checkpoints/last.pt`, `checkpoints/best.pt`, or
checkpoints without `config.yaml`) are refused; they stay exportable (`export_run`).

A killed run started again with the same command continues from its newest complete checkpoint
at the batch it stopped at (the batch order of an epoch is a function of seed and epoch,
`training.seeds.batch_order_seed`, so skipping the done batches replays it exactly).

Device (`RunOptions.device`): the network, optimiser state, batches, augmentation and losses live
on it; checkpoints and `best.pt` hold CPU tensors, so a run resumes on either kind of machine (a
CUDA generator's state cannot continue a CPU one: `training.device.load_generator_state`).
BC trains from a dataset: there are no rollouts, so `workers` must be 0.

Observation variants (`obs`):
- `depth`, `depth+proprio`: the ResNet-18-half on the 3 stacked depth frames (+ proprio at the
  bottleneck). Augmentation as in RRLfD (after Laskin et al.): a random crop of 224/240 of the
  rendered size (60 px from 64) and a random rotation of +-`rotation_deg`; validation and runtime
  use the centre crop.
- `rgb`, `rgb+proprio` (the Adroit hand tasks, `spec.camera == "rgb"`): the same network on the 3
  stacked RGB frames, 9 channels in the runtime's order (`rgb_channels`: frame-major, R, G, B within a
  frame, uint8 / 255 -> [0, 1], channels first), the same crop and rotation augmentation.
- `state`, `proprio`: an MLP on the normalised full state (or proprio only), for fast experiments.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from training.bc.config import CROP_FRACTION, LAMBDA, OBS_VARIANTS, BCConfig, crop_px
from training.bc.losses import bc_loss
from training.bc.network import JointDelta, HORIZONS, BCNet, ExportWrapper, fuse_batchnorm, parameter_count
from training.checkpoint import Checkpoint, CheckpointError, CheckpointStore, torch_file, write_file_atomic
from training.device import adam, cpu_state_dict, describe, generator_state, load_generator_state, resolve_device
from training.harness import CONFIG_FILE, RunDir, RunOptions
from training.seeds import batch_order_seed

__all__ = ["BCConfig", "Batches", "rgb_channels", "LAMBDA", "OBS_VARIANTS", "CROP_FRACTION", "crop_px", "train",
           "export_run"]

RUN_FILE = "run.yaml"
BEST_FILE = "best.pt"
"""Weights of the best epoch, `RUN/best.pt` (`best_weights_path` also finds the previous layout's)."""
OLD_BEST_FILE = "checkpoints/best.pt"
"""Where runs of the previous layouts kept the best epoch's weights."""
KIND = "bc"
WORKERS_REFUSED = "BC trains from a dataset and has no rollouts to run on workers; use --workers 0"


def best_weights_path(run_dir: str | Path) -> Path:
    """The best epoch's weights of a BC run (`{"model", "epoch", "val"}`, CPU tensors): `RUN/best.pt`, or
    `RUN/checkpoints/best.pt` in runs of the previous layout. The path may not exist (no epoch finished)."""
    run = Path(run_dir)
    if not (run / BEST_FILE).exists() and (run / OLD_BEST_FILE).exists():
        return run / OLD_BEST_FILE
    return run / BEST_FILE


def load_dataset(config: BCConfig, progress: bool = True):
    from training.demos.dataset import DatasetConfig, DemoDataset

    dataset = DemoDataset(list(config.demos), DatasetConfig(horizons=HORIZONS, val_fraction=config.val_fraction,
                                                            split_seed=config.split_seed), progress=progress)
    if dataset.spec.task != config.task:
        raise ValueError(f"demos were recorded on task {dataset.spec.task!r}, not {config.task!r}")
    if config.uses_images and dataset.spec.camera != config.camera:
        raise ValueError(f"--obs {config.obs} needs {config.camera} demos; the bags have camera "
                         f"{dataset.spec.camera!r} (record with --camera-px N on a task with that camera)")
    if config.image_px is not None and config.uses_images and dataset.spec.image_hw != (config.image_px, config.image_px):
        raise ValueError(f"the demos have {tuple(dataset.spec.image_hw)} px frames, --image-px says {config.image_px}")
    if config.action_targets == "joint_delta":
        from sim_bridge.task_specs import task_spec

        if not task_spec(config.task).joint_target_actions:
            raise ValueError(f"action_targets joint_delta: {config.task}'s actions are not joint-position targets "
                             "(TaskSpec.joint_target_actions); use absolute")
        joint_index(config, dataset)  # the input has the joints
    return dataset


def scalar_labels(config: BCConfig, dataset) -> tuple[str, ...]:
    return dataset.spec.state_labels if config.scalar_field == "state" else dataset.spec.proprio_labels


def aux_index(config: BCConfig, dataset) -> np.ndarray:
    """Positions of the `config.aux_fields` dims in the demos' state (the fields of its labels, in order)."""
    from training.demos.schema import fields_from_labels

    fields = fields_from_labels(dataset.spec.state_labels)
    present = [name for name, _ in fields]
    missing = [f for f in config.aux_fields if f not in present]
    if missing:
        raise ValueError(f"aux_fields {missing} are not state fields of the demos; they have {present}")
    starts = np.cumsum([0] + [size for _, size in fields])
    return np.concatenate([np.arange(starts[i], starts[i + 1]) for i, (name, _) in enumerate(fields)
                           if name in config.aux_fields]).astype(np.int64)


def joint_index(config: BCConfig, dataset) -> np.ndarray:
    """Positions of `joint_pos_rad[0 .. A-1]` (the joints the action dims target) in the network's scalar input."""
    labels = scalar_labels(config, dataset)
    wanted = [f"joint_pos_rad[{i}]" for i in range(len(dataset.spec.action_labels))]
    missing = [w for w in wanted if w not in labels]
    if missing:
        raise ValueError(f"action_targets joint_delta: the {config.scalar_field} input has no {missing[0]}")
    return np.array([labels.index(w) for w in wanted], dtype=np.int64)


def rgb_channels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB stacks (B, F, H, W, 3) -> float32 (B, 3F, H, W) in [0, 1], channel 3f + c = colour c of frame f.

    The layout and arithmetic of `policies.runtime.image_input` (float32 / 255, frames oldest first), so
    the network sees at run time exactly what it was trained on."""
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"RGB frames must be (B, F, H, W, 3), got {tuple(frames.shape)}")
    B, F_, H, W, _ = frames.shape
    return (frames.to(torch.float32) / 255.0).permute(0, 1, 4, 2, 3).reshape(B, 3 * F_, H, W)


def image_channels(config: BCConfig, dataset) -> int:
    """Network input channels: one per stacked frame (depth) or three (RGB)."""
    return dataset.config.history * (3 if config.camera == "rgb" else 1)


def binary_mask(dataset) -> np.ndarray:
    return np.array([label in dataset.spec.binary_action_labels for label in dataset.spec.action_labels], dtype=bool)


def action_stats(dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension action mean/std; binary dims are not normalised (mean 0, std 1)."""
    mask = binary_mask(dataset)
    mean = np.where(mask, 0.0, dataset.stats["action"].mean).astype(np.float32)
    std = np.where(mask, 1.0, dataset.stats["action"].std).astype(np.float32)
    return mean, std


def input_stats(config: BCConfig, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std that normalise the scalar input (the artifact records them): the training episodes' statistics,
    with `config.input_std_min` added to every std."""
    stats = dataset.stats[config.scalar_field]
    return (np.asarray(stats.mean, np.float32),
            (np.asarray(stats.std, np.float64) + config.input_std_min).astype(np.float32))


DELTA_STD_FLOOR = 1e-6
"""Smallest scale of a joint offset target (rad or m)."""


def target_stats(config: BCConfig, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std of what the network regresses: the actions (`action_stats`, (A,)) or, for joint_delta, the
    offsets a_{t+h} - q_t of the training episodes per horizon h ((K, A): an offset 30 steps ahead is ~10x
    one at t, and one scale for all would leave the t horizon, the one that acts, a small part of the loss)."""
    if config.action_targets == "absolute":
        return action_stats(dataset)
    idx = joint_index(config, dataset)
    field_ = config.scalar_field
    horizons = np.asarray(dataset.config.horizons, dtype=np.int64)
    train = [dataset.episodes[i] for i in dataset.split_episodes["train"]]
    means, stds = [], []
    for h in horizons:
        deltas = np.concatenate([e.action[np.minimum(np.arange(e.steps) + h, e.steps - 1)]
                                 - getattr(e, field_)[:e.steps][:, idx] for e in train])
        # not FieldStats' rule (std 1 for a near-constant dimension, right for an input): an arm joint the expert
        # holds has offsets of std ~1e-4, and scale 1 there would turn a small output error into 1 m or 1 rad
        means.append(deltas.mean(axis=0))
        stds.append(np.maximum(deltas.std(axis=0), DELTA_STD_FLOOR))
    return np.asarray(means, np.float32), np.asarray(stds, np.float32)


class Batches:
    """Demo batches -> (images, scalars, normalised targets) tensors on `device`; image augmentation in training.

    `binary` (the mask of binary action dims, what `bc_loss` takes) stays on the CPU: the loss indexes
    with it on the host."""

    def __init__(self, dataset, config: BCConfig, device: torch.device | str = "cpu"):
        self.dataset, self.config, self.device = dataset, config, torch.device(device)
        self.a_mean, self.a_std = (torch.from_numpy(v).to(self.device) for v in target_stats(config, dataset))
        self.joints = (torch.from_numpy(joint_index(config, dataset)).to(self.device)
                       if config.action_targets == "joint_delta" else None)
        self.binary = torch.from_numpy(binary_mask(dataset))
        self._binary_on_device = self.binary.to(self.device)
        field_ = config.scalar_field
        s_mean, s_std = input_stats(config, dataset) if field_ is not None else (None, None)
        self.s_mean = None if field_ is None else torch.tensor(s_mean, dtype=torch.float32, device=self.device)
        self.s_std = None if field_ is None else torch.tensor(s_std, dtype=torch.float32, device=self.device)
        if config.uses_images:
            h, w = dataset.spec.image_hw
            self.image_hw = (h, w)
            self.crop = (crop_px(h), crop_px(w))
        self.aux_index = aux_index(config, dataset) if config.aux_fields else None
        if self.aux_index is not None:  # the training episodes' statistics (constant dims std 1, FieldStats.of)
            stats = dataset.stats["state"]
            self.aux_mean, self.aux_std = (torch.tensor(np.asarray(v)[self.aux_index], dtype=torch.float32,
                                                        device=self.device) for v in (stats.mean, stats.std))

    def aux_targets(self, batch: dict[str, np.ndarray]) -> torch.Tensor | None:
        """The auxiliary head's targets: the `aux_fields` of the state, normalised; None without aux_fields."""
        if self.aux_index is None:
            return None
        state = torch.from_numpy(batch["state"][:, self.aux_index]).to(self.device, torch.float32)
        return (state - self.aux_mean) / self.aux_std

    def tensors(self, batch: dict[str, np.ndarray], augment: bool, generator: torch.Generator | None = None):
        targets = torch.from_numpy(batch["targets"]).to(self.device)
        if self.joints is not None:  # offsets from the joints measured at t, for every horizon
            q = torch.from_numpy(batch[self.config.scalar_field]).to(self.device)[:, self.joints]
            targets = targets - q[:, None, :]
        targets = torch.where(self._binary_on_device, targets, (targets - self.a_mean) / self.a_std)
        scalars = None
        if self.config.scalar_field is not None:
            scalars = (torch.from_numpy(batch[self.config.scalar_field]).to(self.device) - self.s_mean) / self.s_std
        images = None
        if self.config.uses_images:
            frames = self.frames(batch["frames"])
            images = self.augment(frames, generator) if augment else self.centre_crop(frames)
        return images, scalars, targets

    def frames(self, frames: np.ndarray) -> torch.Tensor:
        """A batch's frame stacks -> (B, C, H, W) float32 on the device: depth as it is, RGB by `rgb_channels`
        (moved as uint8, a quarter of the bytes, and scaled there)."""
        if self.config.camera == "rgb":
            return rgb_channels(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.uint8)).to(self.device))
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(self.device)

    def centre_crop(self, frames: torch.Tensor) -> torch.Tensor:
        """The runtime's crop (policies.runtime.image_input): integer centre offsets."""
        (H, W), (h, w) = self.image_hw, self.crop
        top, left = (H - h) // 2, (W - w) // 2
        return frames[:, :, top:top + h, left:left + w]

    def augment(self, frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random crop (integer offset) + rotation about the crop centre, one bilinear resample."""
        B = frames.shape[0]
        (H, W), (h, w) = self.image_hw, self.crop
        device = frames.device
        top = torch.randint(0, H - h + 1, (B,), generator=generator, device=device).float()
        left = torch.randint(0, W - w + 1, (B,), generator=generator, device=device).float()
        angle = (torch.rand(B, generator=generator, device=device) * 2 - 1) * math.radians(self.config.rotation_deg)
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
    aux_dim = len(aux_index(config, dataset)) if config.aux_fields else 0
    if config.uses_images:
        scalar_dim = len(dataset.spec.proprio_labels) if config.scalar_field else 0
        return BCNet(action_dim, image_channels=image_channels(config, dataset), scalar_dim=scalar_dim, aux_dim=aux_dim)
    return BCNet(action_dim, image_channels=0, scalar_dim=len(scalar_labels(config, dataset)), aux_dim=aux_dim)


def checkpoint_store(run_dir: str | Path) -> CheckpointStore:
    """The BC checkpoints of run `run_dir` (`RUN/checkpoints`); a run of a previous layout is refused
    (`CheckpointError`): the harness's old layouts, and checkpoints without `config.yaml` (whose config
    cannot be checked against this call's)."""
    from training.harness import checkpoint_store as harness_store

    store = harness_store(run_dir, KIND)
    if store.candidates() and not (Path(run_dir) / CONFIG_FILE).exists():
        raise CheckpointError(f"{run_dir}: holds BC checkpoints of the previous layout (no {CONFIG_FILE}: the run's "
                              "config cannot be checked); start a new run (a new --out); `rrl export` still reads it")
    return store


def read_checkpoint(store: CheckpointStore) -> tuple[Checkpoint, dict] | None:
    """The newest verified checkpoint and its contents (model, optimizer, generator, state), or None."""

    def check(ckpt: Checkpoint) -> dict:
        contents = torch.load(ckpt.file("state.pt"), weights_only=False, map_location="cpu")
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
            pred, z = net(images, scalars)
            _, stats = bc_loss(pred, targets, batches.binary, lam=config.lam)
            b = targets.shape[0]
            values = dataclasses.asdict(stats)
            aux = batches.aux_targets(batch)
            if aux is not None:
                values["aux_mse"] = F.mse_loss(net.aux_head(z), aux).item()
            for k, v in values.items():
                totals[k] = totals.get(k, 0.0) + v * b
            n += b
    net.train()
    return {k: v / max(n, 1) for k, v in totals.items()}


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _run_record(config: BCConfig, dataset, net: BCNet) -> dict[str, Any]:
    """`run.yaml`: what `rrl export` dispatches on, and the dataset the run was trained on."""
    return {"kind": KIND, "algo": "bc", "task": config.task, "config": config.to_dict(),
            "dataset": {"bags": [str(b) for b in dataset.bags], "episodes": len(dataset.episodes),
                        "train_episodes": int(len(dataset.split_episodes["train"])),
                        "val_episodes": int(len(dataset.split_episodes["val"])),
                        "train_samples": dataset.size("train"), "val_samples": dataset.size("val"),
                        "skipped_episodes": [{"file": str(path), "reason": reason} for path, reason in dataset.skipped]},
            "parameters": parameter_count(net)}


def train(config: BCConfig, run_dir: str | Path, options: RunOptions = RunOptions(device="cpu"),
          max_batches: int | None = None) -> dict[str, Any]:
    """Train (or resume) a BC run in `run_dir`; returns the summary (also `RUN/summary.json`).

    `options`: the device, the progress bar and `max_wall_s` (stop with a checkpoint after that much
    wall time in this call; the same call resumes); `workers` must be 0 (`WORKERS_REFUSED`).
    `max_batches` stops after that many gradient steps in this call (tests use it to simulate a kill
    at a known point)."""
    from tqdm import tqdm

    if options.workers:
        raise ValueError(WORKERS_REFUSED)
    device = resolve_device(options.device)
    root = Path(run_dir)
    checkpoint_store(root)  # refuses the previous layouts before anything is written
    run = RunDir(root, KIND, config.to_dict(), upgrade=lambda d: BCConfig.from_dict(d).to_dict())
    try:
        torch.set_num_threads(config.threads)
        dataset = load_dataset(config, progress=options.progress)
        if dataset.size("val") == 0:
            raise ValueError("no validation episodes: record at least 2 episodes")
        batches = Batches(dataset, config, device)
        torch.manual_seed(config.seed)
        net = build_net(config, dataset).to(device)  # initialised on the CPU: the same weights on every device
        opt = adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        gen = torch.Generator(device=device).manual_seed(config.seed)
        state: dict[str, Any] = {"epoch": 0, "batch": 0, "best_val": float("inf"), "best_epoch": -1, "step": 0,
                                 "train_sum": 0.0, "train_n": 0, "wall_s": 0.0, "history": []}
        found = read_checkpoint(run.checkpoints)
        if found is not None:
            _, ckpt = found
            net.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])  # onto the parameters' device
            load_generator_state(gen, ckpt["generator"])
            state.update(ckpt["state"])
        else:
            (root / BEST_FILE).unlink(missing_ok=True)  # of a start killed before its first checkpoint
            record = yaml.safe_dump(_run_record(config, dataset, net), sort_keys=False).encode()
            write_file_atomic(root / RUN_FILE, lambda f: f.write(record))
        run.write_eval_log(state["history"])
        writer = run.writer

        def checkpoint() -> None:
            state["wall_s"] = wall()
            contents = {"model": cpu_state_dict(net), "optimizer": cpu_state_dict(opt.state_dict()),
                        "generator": generator_state(gen), "state": dict(state)}
            run.checkpoints.save(state["step"], {"state.pt": torch_file(contents)},
                                 meta={"epoch": state["epoch"], "batch": state["batch"]})

        start, wall0, steps0, samples = time.monotonic(), state["wall_s"], state["step"], 0
        wall = lambda: wall0 + time.monotonic() - start  # noqa: E731

        def rates() -> tuple[float, float]:
            elapsed = max(time.monotonic() - start, 1e-9)
            return (state["step"] - steps0) / elapsed, samples / elapsed

        n_batches = math.ceil(dataset.size("train") / config.batch_size)
        last_save = time.monotonic()
        net.train()
        stopped = False
        epochs = tqdm(range(state["epoch"], config.epochs), initial=state["epoch"], total=config.epochs,
                      desc=f"bc epochs ({device})", unit="ep", disable=not options.progress)
        for epoch in epochs:
            # drop_last: a tail batch of a few samples would give BatchNorm degenerate statistics
            order = dataset.batches("train", config.batch_size, seed=batch_order_seed(config.seed, epoch),
                                    drop_last=dataset.size("train") > config.batch_size)
            for i, batch in enumerate(order):
                if i < state["batch"]:
                    continue  # done before the restart
                images, scalars, targets = batches.tensors(batch, augment=True, generator=gen)
                pred, z = net(images, scalars)
                loss, stats = bc_loss(pred, targets, batches.binary, lam=config.lam)
                aux = batches.aux_targets(batch)
                if aux is not None:  # the bottleneck must also say where the objects are (aux_fields)
                    aux_mse = F.mse_loss(net.aux_head(z), aux)
                    loss = loss + config.aux_weight * aux_mse
                    writer.add_scalar("train/aux_mse", aux_mse.item(), state["step"] + 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                state["batch"] = i + 1
                state["step"] += 1
                state["train_sum"] += stats.loss * targets.shape[0]
                state["train_n"] += targets.shape[0]
                samples += targets.shape[0]
                writer.add_scalar("train/loss", stats.loss, state["step"])
                if time.monotonic() - last_save > config.checkpoint_every_s:
                    checkpoint()
                    last_save = time.monotonic()
                if (max_batches is not None and state["step"] - steps0 >= max_batches) or \
                        (options.max_wall_s is not None and time.monotonic() - start > options.max_wall_s):
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
            steps_per_s, samples_per_s = rates()
            writer.add_scalar("speed/steps_per_s", steps_per_s, epoch)
            writer.add_scalar("speed/samples_per_s", samples_per_s, epoch)
            if val[config.select_on] < state["best_val"]:
                state["best_val"], state["best_epoch"] = val[config.select_on], epoch
                write_file_atomic(root / BEST_FILE, torch_file({"model": cpu_state_dict(net), "epoch": epoch, "val": val}))
            entry = {"epoch": epoch, "step": state["step"], "train_loss": train_loss, "val_loss": val["loss"],
                     "val": {k: _finite(v) for k, v in val.items()}, "best_epoch": state["best_epoch"],
                     "wall_s": round(wall(), 1)}
            state.update(epoch=epoch + 1, batch=0, train_sum=0.0, train_n=0, history=state["history"] + [entry])
            checkpoint()
            run.append_eval(entry)  # after the checkpoint: a resume rewrites the log from the checkpoint's history
            last_save = time.monotonic()
            epochs.set_postfix(train=f"{train_loss:.3f}", val=f"{val['loss']:.3f}", best=state["best_epoch"],
                               steps_s=f"{steps_per_s:.1f}")
        steps_per_s, samples_per_s = rates()
        summary = {"run": str(root), "epochs_done": state["epoch"], "finished": state["epoch"] >= config.epochs,
                   "best_epoch": state["best_epoch"], "best_val_loss": _finite(state["best_val"]),
                   "batches_per_epoch": n_batches, "updates": state["step"], "updates_this_call": state["step"] - steps0,
                   "updates_per_s": round(steps_per_s, 2), "samples_per_s": round(samples_per_s, 1),
                   "frames": 0, "workers": 0, "device": describe(device), "wall_s": round(wall(), 1),
                   "history": state["history"]}
        run.write_summary(summary)
        return summary
    finally:
        run.close()


def export_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False, weights_fp16: bool | None = None):
    """Best epoch of a BC run -> policy artifact (model.onnx + policy.yaml), parity-checked on
    validation samples. `weights_fp16` (default: for the image network, 11 MB -> 5.6 MB) stores the
    weights as float16, rounded in torch before the parity check."""
    from policies.artifact import (PENDING_SHA256, ActionSpec, CameraSpec, FieldStats, InputSpec, OutputSpec,
                                   PolicyArtifact)
    from training.export import export_artifact

    run = Path(run_dir)
    meta = yaml.safe_load((run / RUN_FILE).read_text())
    config = BCConfig.from_dict(meta["config"])
    best = best_weights_path(run)
    if not best.exists():
        raise FileNotFoundError(f"{run} has no {BEST_FILE} yet (no epoch finished); train longer")
    dataset = load_dataset(config, progress=False)
    net = build_net(config, dataset)
    ckpt = torch.load(best, weights_only=False, map_location="cpu")
    net.load_state_dict(ckpt["model"])
    net.eval()
    batches = Batches(dataset, config)
    spec = dataset.spec
    mask = binary_mask(dataset)
    a_mean, a_std = action_stats(dataset)
    joints = None
    if config.action_targets == "joint_delta":
        idx = joint_index(config, dataset)
        s_mean, s_std = input_stats(config, dataset)
        d_mean, d_std = target_stats(config, dataset)
        joints = JointDelta(idx, s_mean[idx], s_std[idx], d_mean[0], d_std[0],
                            a_mean, a_std)  # the t horizon's offset statistics: the one that acts
    wrapper = ExportWrapper(fuse_batchnorm(net) if config.uses_images else net, torch.from_numpy(mask), joints).eval()

    sample_batch = dataset.batch("val", np.arange(min(64, dataset.size("val"))))
    images, scalars, _ = batches.tensors(sample_batch, augment=False)
    inputs, samples, normalisation, camera = [], {}, {}, None
    if config.uses_images:
        h, w = batches.crop
        inputs.append(InputSpec(config.camera, (config.camera,), (-1, images.shape[1], h, w)))
        samples[config.camera] = images.numpy()
        camera = CameraSpec(config.camera, width_px=spec.image_hw[1], height_px=spec.image_hw[0],
                            history=dataset.config.history)
    if config.scalar_field is not None:
        f = config.scalar_field
        inputs.append(InputSpec(f, (f,), (-1, scalars.shape[1])))
        samples[f] = scalars.numpy()
        normalisation[f] = FieldStats.from_arrays(*input_stats(config, dataset))
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
