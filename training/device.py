"""Where training computes: the `--device` choice, moving batches there, and CPU copies for checkpoints.

The rule every trainer follows: networks, replay samples and losses live on one torch device
(`resolve_device`); rollouts, exported ONNX artifacts and checkpoints stay on the CPU. A checkpoint
holds CPU tensors only (`cpu_state_dict`), so a run started on a GPU machine resumes on a CPU one and
the other way round; `load_state_dict` of a learner maps them onto its own device.

`--device` accepts `auto` (cuda:0 where torch sees a CUDA device, else cpu), `cpu`, `cuda`
(= cuda:0) and `cuda:N`; anything else, CUDA on a machine or a torch build without it, and an index
beyond the devices present are a `DeviceError` that says which and what to use instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import OrderedDict
from typing import Any, TypeVar

import torch

CHOICES = ("auto", "cpu", "cuda", "cuda:N")
"""The forms `--device` accepts (N a device index, 0-based)."""

_CUDA = re.compile(r"cuda(?::(\d+))?")

T = TypeVar("T")


class DeviceError(ValueError):
    """A `--device` value this machine cannot honour; the message names the value and the way out."""


def resolve_device(text: str, cuda_count: int | None = None) -> torch.device:
    """The torch device a `--device` value names on this machine.

    `cuda_count` is the number of CUDA devices visible (None: ask torch); tests pass it to
    exercise the CUDA branches on a machine without one. `cuda` means cuda:0, and so does `auto`
    when at least one CUDA device is visible.
    """
    value = str(text).strip().lower()
    count = _cuda_device_count() if cuda_count is None else int(cuda_count)
    if value == "auto":
        return torch.device("cuda", 0) if count > 0 else torch.device("cpu")
    if value == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(value)
    if match is None:
        raise DeviceError(f"--device {text!r}: expected one of {', '.join(CHOICES)}")
    index = int(match.group(1) or 0)
    if count == 0:
        if torch.version.cuda is None:
            raise DeviceError(f"--device {text}: torch {torch.__version__} has no CUDA; use --device cpu or auto")
        raise DeviceError(f"--device {text}: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device "
                          "(no driver, or CUDA_VISIBLE_DEVICES hides them); use --device cpu or auto")
    if index >= count:
        visible = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
        raise DeviceError(f"--device {text}: this machine has {count} CUDA device{'s' if count > 1 else ''} "
                          f"({visible}); use one of them, cpu or auto")
    return torch.device("cuda", index)


def _cuda_device_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def describe(device: torch.device | str) -> str:
    """The device for logs and JSON reports: "cpu", or "cuda:0 (NVIDIA H200)" with the GPU's name."""
    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def to_device(batch: T, device: torch.device) -> T:
    """`batch` with every tensor on `device`: a tensor, a dataclass of tensors (None fields kept), or a dict.

    A tensor already there is returned as it is (no copy: the CPU path pays nothing); a pinned CPU
    tensor is copied with `non_blocking` so the transfer overlaps the work already queued.
    """
    if isinstance(batch, torch.Tensor):
        if batch.device == device:
            return batch
        return batch.to(device, non_blocking=batch.is_pinned())
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        moved = {f.name: to_device(getattr(batch, f.name), device) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **moved)
    if isinstance(batch, dict):
        return type(batch)((k, to_device(v, device)) for k, v in batch.items())
    return batch


def adam(params, lr: float, **kwargs) -> torch.optim.Adam:
    """Adam with torch's fused kernel: one pass over all of a network's tensors per step, on the CPU as on CUDA.
    torch's default on the CPU loops over the tensors in Python: 38.8 ms a step for the image encoder here, 6.4 ms
    fused (4.4 and 1.6 ms for a depth residual's critic; `bench/adam_step.py`); the two agree to 1.5e-8. An
    optimiser state saved by the loop version loads with its own setting, so a run resumed from an earlier
    checkpoint keeps its numbers."""
    return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)


def cpu_state_dict(state: Any) -> Any:
    """A copy of a state (a module, or nested dicts/lists of tensors: optimizer states, generator
    states) whose every tensor is a detached CPU copy; everything else is kept as it is.

    For checkpoints and for weights broadcast to CPU rollout workers: the copy shares no memory
    with the live tensors (later updates do not change it), and `torch.load` reads it on any machine.
    A module's state_dict keeps its `_metadata` (the module versions `load_state_dict` reads).
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        copied = type(state)((k, cpu_state_dict(v)) for k, v in state.items()) if isinstance(state, OrderedDict) \
            else {k: cpu_state_dict(v) for k, v in state.items()}
        metadata = getattr(state, "_metadata", None)
        if metadata is not None:
            copied._metadata = metadata.copy()
        return copied
    if isinstance(state, list):
        return [cpu_state_dict(v) for v in state]
    if isinstance(state, tuple):
        return tuple(cpu_state_dict(v) for v in state)
    return state


def floats(*stats: Any) -> dict[str, float]:
    """Stats as Python floats with one device-to-host transfer (one sync per update, not one per stat).

    Each argument is a stats dataclass or a dict whose values are 0-dim tensors or numbers; their
    fields are merged in order. The values are stacked in their widest dtype (float32 stats stay
    float32, a float64 one widens all exactly), so each float equals `float(value)`.
    """
    merged: dict[str, Any] = {}
    for part in stats:
        if dataclasses.is_dataclass(part):
            part = {f.name: getattr(part, f.name) for f in dataclasses.fields(part)}  # no asdict: it deep-copies tensors
        merged.update(part)
    if not merged:
        return {}
    values = [v.detach().reshape(()) if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)
              for v in merged.values()]
    devices = {v.device for v in values}
    if len(devices) > 1:  # a number among device stats: bring it along
        target = next(d for d in devices if d.type != "cpu")
        values = [v.to(target) for v in values]
    return dict(zip(merged, torch.stack(values).tolist()))


def generator_state(generator: torch.Generator) -> dict:
    """A generator's state for a checkpoint: its bytes and the device kind they belong to."""
    return {"state": generator.get_state(), "device": generator.device.type}


def load_generator_state(generator: torch.Generator, saved: dict | torch.Tensor) -> None:
    """Restore `generator` from `generator_state` (or a bare CPU state, as older checkpoints stored).

    A CUDA generator's state is not a CPU one (Philox seed and offset vs Mersenne Twister), so a
    state from the other kind of machine cannot be restored: the generator is then seeded from a
    hash of the saved bytes, deterministic for a given checkpoint (the noise stream of a run moved
    between CPU and GPU continues differently, as it would anyway: the two draw different numbers).
    """
    if isinstance(saved, torch.Tensor):
        saved = {"state": saved, "device": "cpu"}
    state, kind = saved["state"], saved["device"]
    if kind == generator.device.type:
        generator.set_state(state)
        return
    digest = hashlib.sha256(state.cpu().numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
