"""Policy artifacts: a directory with `model.onnx` and `policy.yaml` (DESIGN.md, "Policy artifacts").

`policy.yaml` is the YAML form of `PolicyArtifact`. It says what the model is (kind, algo,
task, the base a residual was trained on, the expert a REQ prior learned from), how to build
its ONNX inputs from a task observation (`inputs`: which observation fields feed which input,
with shapes and dtypes), what its outputs mean (`outputs`: role per output), the action layout
and limits, the per-dimension normalisation statistics, the residual scale `c`, the sha256 of
`model.onnx`, measured results (`metrics`), provenance (training config, dataset, git commit),
and its seal `artifact_sha256`.

Integrity: `artifact_sha256` is the sha256 of the canonical form of every other field of
policy.yaml (`content_sha256`), and those fields include `model_sha256`, so one seal covers the
whole artifact. `metrics` is inside the seal: people rely on those numbers. A policy.yaml edited
by hand (`residual_scale: 1000`) no longer matches its seal and is refused; which fields changed
cannot be known from the file, so the message names the file and the ways to get a valid one
again. The legitimate writers re-seal: `write_artifact` (export) and `update_metrics`
(`rrl eval --record-metrics`). An artifact written before the seal existed (or a deliberate
edit) is sealed with

    python -m policies.artifact reseal DIR [DIR ...]

which refuses unless the content is a valid artifact and `model.onnx` still has the sha256 that
policy.yaml names. The seal is a checksum, not a signature: it makes every edit deliberate and
visible, it does not stop someone who runs the reseal command.

`load_artifact(dir, task_spec=None)` validates all of it before anything runs: files present,
the seal, every key at every level known and of the right type (an unknown or mistyped key is
refused with its path, `inputs[0]: unknown key 'scale'; known: ...`; `provenance` is free-form,
`metrics` a mapping with free-form values), the model's sha256 (a changed model is refused as
tampered), the ONNX graph's input and output names, shapes and dtypes against the spec, the
statistics' sizes against the inputs, and, when a `TaskSpec` is given, compatibility with that
task (name, action layout and limits, proprio/state sizes, camera modality). Every failure
raises `ArtifactError` naming the artifact and the mismatch.

ONNX models map *normalised* inputs to *normalised* outputs; normalisation lives here, in the
statistics, so that the runtime (`policies.runtime`) and the trainer agree on one definition:

    x_norm = (x - mean) / std        for every vector source (proprio, state, base_action, ...)
    action = action_norm * std + mean

Every trainer measures them with `FieldStats.of(samples, binary_mask)` (one std floor,
`STD_FLOOR`). Binary action fields (the gripper) are not normalised: their statistics are
mean 0, std 1 and the model outputs a probability in [0, 1].

Writing: `write_artifact(artifact, onnx_bytes, out_dir)` computes both hashes itself and writes
both files; `training.export.export_artifact` is the one caller that makes new models.
This module is pure numpy + onnx + yaml: it never imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from sim_bridge.spec import Layout, TaskSpec

FORMAT_VERSION = 1
PENDING_SHA256 = "0" * 64
"""Placeholder `model_sha256` for an artifact description not yet written; `write_artifact` fills in the real one."""
MODEL_FILE = "model.onnx"
SPEC_FILE = "policy.yaml"
SEAL_KEY = "artifact_sha256"
"""Key of policy.yaml holding its seal: `content_sha256` of everything else in the file."""
SEAL_DOMAIN = b"rrl policy.yaml v1\n"
"""Prefix of the hashed text, so the seal is never the sha256 of some other JSON document."""
RESEAL_COMMAND = "python -m policies.artifact reseal"
"""The command that seals an artifact whose model still matches (older artifacts, deliberate edits)."""

KINDS = ("bc", "residual", "req_prior", "req_q", "crr_prior", "crr_q")
"""Known artifact kinds. `bc`: a base policy; `residual`: pi_r(s, u) trained on a frozen base;
`req_prior`/`crr_prior`: the prior of REQ/CRR (acts on its own); `*_q`: a Q-function."""
ALGOS = ("bc", "dmpo", "req", "crr")
"""Algorithms that produce artifacts."""

OBSERVATION_SOURCES = ("proprio", "state", "depth", "rgb")
"""Fields of the task observation dict (sim_bridge.task) an input may read."""
EXTRA_SOURCES = ("base_action", "features", "action")
"""Inputs supplied by the caller: the base action u (normalised with the action statistics),
the base policy's bottleneck features, or an action to score (Q-functions)."""
IMAGE_SOURCES = ("depth", "rgb")
OUTPUT_ROLES = ("action", "features", "residual_mean", "residual_std", "action_mean", "action_std", "q")
"""Meaning of each output. `action`: normalised action at t (binary fields as probabilities);
`features`: bottleneck features (for a residual); `residual_mean`: the residual's mu, in
normalised action units (the runtime scales it by c * sigma_action, RRLfD eq. 6);
`action_mean`/`action_std`: a Gaussian prior's parameters in normalised action units; `q`: Q-values."""
DTYPES = ("float32",)
NORMALISED_FIELDS = ("action", "proprio", "state")
"""Vector fields that carry statistics in `normalisation`."""


class ArtifactError(ValueError):
    """An artifact directory is missing, malformed, tampered with, or does not fit the task."""


@dataclass(frozen=True)
class InputSpec:
    """One ONNX graph input and the observation fields that feed it."""

    name: str
    """ONNX input name."""
    sources: tuple[str, ...]
    """Fields concatenated (in order) into this input: observation fields (`proprio`, `state`,
    `depth`, `rgb`) or caller-supplied extras (`base_action`, `features`, `action`). An image
    input has exactly one image source."""
    shape: tuple[int, ...]
    """Input shape; -1 marks a dynamic (batch) dimension. Images are (B, C, H, W) with C = 3
    stacked depth frames or 9 (3 RGB frames x 3 channels)."""
    dtype: str = "float32"
    """Element type."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ArtifactError(f"input {self.name!r} has no sources")
        for s in self.sources:
            if s not in OBSERVATION_SOURCES + EXTRA_SOURCES:
                raise ArtifactError(f"input {self.name!r}: unknown source {s!r}; known: {OBSERVATION_SOURCES + EXTRA_SOURCES}")
        if any(s in IMAGE_SOURCES for s in self.sources):
            if len(self.sources) != 1:
                raise ArtifactError(f"input {self.name!r}: an image source must be the only source, got {self.sources}")
            if len(self.shape) != 4:
                raise ArtifactError(f"input {self.name!r}: image inputs are (B, C, H, W), got shape {self.shape}")
        elif len(self.shape) != 2:
            raise ArtifactError(f"input {self.name!r}: vector inputs are (B, D), got shape {self.shape}")
        if self.dtype not in DTYPES:
            raise ArtifactError(f"input {self.name!r}: dtype {self.dtype!r} not supported; use one of {DTYPES}")

    @property
    def is_image(self) -> bool:
        return self.sources[0] in IMAGE_SOURCES


@dataclass(frozen=True)
class OutputSpec:
    """One ONNX graph output and what it means."""

    name: str
    """ONNX output name."""
    role: str
    """Meaning of the output, one of OUTPUT_ROLES."""
    shape: tuple[int, ...]
    """Output shape; -1 marks a dynamic (batch) dimension."""
    dtype: str = "float32"
    """Element type."""

    def __post_init__(self) -> None:
        if self.role not in OUTPUT_ROLES:
            raise ArtifactError(f"output {self.name!r}: unknown role {self.role!r}; known: {OUTPUT_ROLES}")
        if self.dtype not in DTYPES:
            raise ArtifactError(f"output {self.name!r}: dtype {self.dtype!r} not supported; use one of {DTYPES}")


@dataclass(frozen=True)
class ActionSpec:
    """The action the policy produces: layout and limits (copied from the task at training time)."""

    fields: tuple[tuple[str, int], ...]
    """Layout of the action vector, e.g. ((tool_vel, 3), (gripper, 1))."""
    low: tuple[float, ...]
    """Per-dimension lower limit."""
    high: tuple[float, ...]
    """Per-dimension upper limit."""
    binary_fields: tuple[str, ...] = ()
    """Fields that are binary commands (0/1), predicted as probabilities."""

    def __post_init__(self) -> None:
        n = self.layout.size
        if len(self.low) != n or len(self.high) != n:
            raise ArtifactError(f"action limits have {len(self.low)}/{len(self.high)} dims, layout has {n}")
        for b in self.binary_fields:
            if b not in self.layout.names:
                raise ArtifactError(f"binary action field {b!r} not in action layout {self.layout.names}")

    @property
    def layout(self) -> Layout:
        return Layout(tuple((str(n), int(s)) for n, s in self.fields))

    @property
    def size(self) -> int:
        return self.layout.size

    def binary_mask(self) -> np.ndarray:
        """Boolean (A,) mask of the binary dimensions."""
        mask = np.zeros(self.size, dtype=bool)
        slices = self.layout.slices()
        for b in self.binary_fields:
            mask[slices[b]] = True
        return mask

    @classmethod
    def from_task(cls, spec: TaskSpec) -> "ActionSpec":
        return cls(fields=tuple(spec.action.fields), low=tuple(map(float, spec.action_low)),
                   high=tuple(map(float, spec.action_high)), binary_fields=tuple(spec.binary_action_fields))


STD_FLOOR = 1e-3
"""Measured standard deviations below this are treated as constant dimensions and get std 1 (the
one floor of every trainer: `FieldStats.of`). Normalising a constant dimension is then a shift:
dividing by a tiny std would turn any run-time deviation of a dimension that never moved in the
data (a fixed goal, an object at rest) into a huge input. Units are those of the field (m, rad,
m/s): 1e-3 is a millimetre or a milliradian of spread, noise rather than signal for these tasks."""


@dataclass(frozen=True)
class FieldStats:
    """Per-dimension normalisation statistics of one vector field: the one class every trainer and
    the runtime use (`x_norm = (x - mean) / std`, module docstring).

    Measure them with `FieldStats.of(samples, binary_mask)`; `from_arrays` wraps numbers that
    are already final (read back from a file or a checkpoint)."""

    mean: tuple[float, ...]
    """Per-dimension mean."""
    std: tuple[float, ...]
    """Per-dimension standard deviation (> 0; `of` sets constant dimensions to 1, see STD_FLOOR)."""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ArtifactError(f"stats mean has {len(self.mean)} dims, std has {len(self.std)}")
        if not all(np.isfinite(self.mean)) or not all(np.isfinite(self.std)) or min(self.std, default=1.0) <= 0:
            raise ArtifactError("stats must be finite with std > 0")

    @property
    def size(self) -> int:
        return len(self.mean)

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    def denormalise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float32) * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)).astype(np.float32)

    @classmethod
    def from_arrays(cls, mean: np.ndarray, std: np.ndarray) -> "FieldStats":
        return cls(mean=tuple(float(v) for v in np.ravel(mean)), std=tuple(float(v) for v in np.ravel(std)))

    @classmethod
    def of(cls, samples: np.ndarray, binary_mask: np.ndarray | None = None) -> "FieldStats":
        """Statistics measured from `samples` (N, D), N >= 1: per-dimension mean and (population) std,
        computed in float64 and stored rounded to float32, the precision `normalise` runs at.

        A dimension whose std is below STD_FLOOR is constant: std 1 (normalising it is a shift).
        Dimensions where `binary_mask` (D,) is True (binary action fields such as the gripper) get
        mean 0, std 1: they are not normalised (the model predicts a probability)."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"statistics need samples of shape (N >= 1, D), got {x.shape}")
        bad = np.flatnonzero(~np.isfinite(x).all(axis=0))
        if bad.size:
            raise ValueError(f"samples have non-finite values in dimensions {bad.tolist()}")
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std < STD_FLOOR, 1.0, std)
        if binary_mask is not None:
            mask = np.asarray(binary_mask, dtype=bool)
            if mask.shape != (x.shape[1],):
                raise ValueError(f"binary_mask has shape {mask.shape}, samples have {x.shape[1]} dimensions")
            mean, std = np.where(mask, 0.0, mean), np.where(mask, 1.0, std)
        return cls.from_arrays(mean.astype(np.float32), std.astype(np.float32))


@dataclass(frozen=True)
class CameraSpec:
    """The camera the policy was trained with; the runtime renders at this size and centre-crops
    to the image input's H x W (RRLfD: render 240, random crop 224 in training, centre crop at test)."""

    modality: str
    """`depth` or `rgb`."""
    width_px: int
    """Rendered image width."""
    height_px: int
    """Rendered image height."""
    history: int = 3
    """Frames stacked in the observation."""

    def __post_init__(self) -> None:
        if self.modality not in IMAGE_SOURCES:
            raise ArtifactError(f"camera modality must be one of {IMAGE_SOURCES}, got {self.modality!r}")
        if self.width_px < 8 or self.height_px < 8 or self.history < 1:
            raise ArtifactError(f"camera {self.width_px}x{self.height_px}px history {self.history} is invalid")


@dataclass(frozen=True)
class PolicyArtifact:
    """The content of `policy.yaml` (plus the directory it was loaded from, not stored)."""

    kind: str
    """One of KINDS."""
    algo: str
    """One of ALGOS."""
    task: str
    """Task name, e.g. ur5_pick."""
    inputs: tuple[InputSpec, ...]
    """ONNX inputs in graph order, with the observation fields feeding them."""
    outputs: tuple[OutputSpec, ...]
    """ONNX outputs in graph order, with their roles."""
    action: ActionSpec
    """Action layout and limits."""
    normalisation: Mapping[str, FieldStats]
    """Statistics per vector field: `action` always; `proprio`/`state` when an input reads them."""
    model_sha256: str
    """sha256 of model.onnx (hex). A mismatch at load time means the model was changed."""
    camera: CameraSpec | None = None
    """Camera the policy needs (image inputs only)."""
    base: str | None = None
    """For a residual: the base it was trained on: `waypoint`, `waypoint:VARIANT` or a base artifact dir name."""
    expert: str | None = None
    """For REQ/CRR: the expert it learned from, e.g. `waypoint` or `waypoint:VARIANT`."""
    residual_scale: float | None = None
    """Residual scale c of RRLfD eq. 6 (residual kinds only)."""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    """Measured results, e.g. {success_rate, episodes, seed, command}."""
    provenance: Mapping[str, Any] = field(default_factory=dict)
    """Training config, dataset, git commit, creation time."""
    format_version: int = FORMAT_VERSION
    """Version of this file format."""
    path: Path | None = field(default=None, compare=False)
    """Directory the artifact was loaded from (not stored in the YAML)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ArtifactError(f"unknown kind {self.kind!r}; known: {KINDS}")
        if self.algo not in ALGOS:
            raise ArtifactError(f"unknown algo {self.algo!r}; known: {ALGOS}")
        if self.format_version != FORMAT_VERSION:
            raise ArtifactError(f"format_version {self.format_version} not supported (this code reads {FORMAT_VERSION})")
        if len(self.model_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.model_sha256):
            raise ArtifactError(f"model_sha256 must be 64 lowercase hex digits, got {self.model_sha256!r}")
        in_names = [i.name for i in self.inputs]
        out_names = [o.name for o in self.outputs]
        if len(set(in_names)) != len(in_names) or len(set(out_names)) != len(out_names):
            raise ArtifactError(f"duplicate input/output names: inputs {in_names}, outputs {out_names}")
        unknown = sorted(set(self.normalisation) - set(NORMALISED_FIELDS))
        if unknown:
            raise ArtifactError(f"normalisation has statistics for {unknown}; known fields: {', '.join(NORMALISED_FIELDS)}")
        if "action" not in self.normalisation:
            raise ArtifactError("normalisation has no 'action' statistics")
        if self.normalisation["action"].size != self.action.size:
            raise ArtifactError(f"action stats have {self.normalisation['action'].size} dims, action layout has {self.action.size}")
        for inp in self.inputs:
            if inp.is_image:
                if self.camera is None:
                    raise ArtifactError(f"input {inp.name!r} reads {inp.sources[0]} but the artifact has no camera")
                if inp.sources[0] != self.camera.modality:
                    raise ArtifactError(f"input {inp.name!r} reads {inp.sources[0]}, camera modality is {self.camera.modality}")
                channels = 3 * self.camera.history if self.camera.modality == "rgb" else self.camera.history
                if inp.shape[1] != channels:
                    raise ArtifactError(f"input {inp.name!r} has {inp.shape[1]} channels; camera {self.camera.modality} x {self.camera.history} frames gives {channels}")
                if inp.shape[2] > self.camera.height_px or inp.shape[3] > self.camera.width_px:
                    raise ArtifactError(f"input {inp.name!r} is {inp.shape[2]}x{inp.shape[3]}, larger than the camera {self.camera.height_px}x{self.camera.width_px}")
                continue
            dims = 0
            for s in inp.sources:
                if s in ("proprio", "state"):
                    if s not in self.normalisation:
                        raise ArtifactError(f"input {inp.name!r} reads {s!r} but normalisation has no {s!r} statistics")
                    dims += self.normalisation[s].size
                elif s in ("base_action", "action"):
                    dims += self.action.size
                else:  # features: size known only from the graph; check against the whole input
                    dims = -1
                    break
            if dims >= 0 and inp.shape[1] != dims:
                raise ArtifactError(f"input {inp.name!r} has width {inp.shape[1]}, its sources {inp.sources} give {dims}")
        roles = {o.role for o in self.outputs}
        need = {"bc": {"action"}, "residual": {"residual_mean"}, "req_prior": {"action_mean"},
                "crr_prior": {"action_mean"}, "req_q": {"q"}, "crr_q": {"q"}}[self.kind]
        if not need <= roles:
            raise ArtifactError(f"kind {self.kind!r} needs outputs with roles {sorted(need)}, has {sorted(roles)}")
        if self.kind == "residual":
            if not self.base:
                raise ArtifactError("a residual artifact must name its base (waypoint, waypoint:VARIANT or a base artifact dir)")
            if self.residual_scale is None or not self.residual_scale > 0:
                raise ArtifactError(f"a residual artifact needs residual_scale c > 0, got {self.residual_scale}")
        if self.kind in ("req_prior", "req_q") and not self.expert:
            raise ArtifactError(f"a {self.kind} artifact must name its expert")

    # ----- lookups -----
    def output(self, role: str) -> OutputSpec:
        for o in self.outputs:
            if o.role == role:
                return o
        raise ArtifactError(f"{self.describe()}: no output with role {role!r}")

    def has_output(self, role: str) -> bool:
        return any(o.role == role for o in self.outputs)

    @property
    def model_path(self) -> Path:
        if self.path is None:
            raise ArtifactError("artifact was not loaded from a directory")
        return self.path / MODEL_FILE

    def describe(self) -> str:
        return f"artifact {str(self.path) if self.path else '<unsaved>'} ({self.kind}/{self.algo}, task {self.task})"

    def check_task(self, spec: TaskSpec) -> None:
        """Raise ArtifactError unless this artifact fits task `spec`."""
        where = self.describe()
        if self.task != spec.name:
            raise ArtifactError(f"{where} was trained for task {self.task!r}, not {spec.name!r}")
        if tuple(self.action.layout.fields) != tuple(spec.action.fields):
            raise ArtifactError(f"{where}: action layout {self.action.layout.fields} != task {spec.action.fields}")
        if not (np.allclose(self.action.low, spec.action_low) and np.allclose(self.action.high, spec.action_high)):
            raise ArtifactError(f"{where}: action limits {self.action.low}..{self.action.high} != task {spec.action_low}..{spec.action_high}")
        if tuple(self.action.binary_fields) != tuple(spec.binary_action_fields):
            raise ArtifactError(f"{where}: binary action fields {self.action.binary_fields} != task {spec.binary_action_fields}")
        for name, layout in (("proprio", spec.proprio), ("state", spec.state)):
            if name in self.normalisation and self.normalisation[name].size != layout.size:
                raise ArtifactError(f"{where}: {name} stats have {self.normalisation[name].size} dims, task {name} has {layout.size}")
        if self.camera is not None and self.camera.modality != spec.camera:
            raise ArtifactError(f"{where}: needs a {self.camera.modality} camera, task has {spec.camera}")

    # ----- YAML -----
    def to_dict(self) -> dict:
        d = {
            "format_version": self.format_version,
            "kind": self.kind,
            "algo": self.algo,
            "task": self.task,
            "base": self.base,
            "expert": self.expert,
            "residual_scale": self.residual_scale,
            "camera": None if self.camera is None else dataclasses.asdict(self.camera),
            "inputs": [{"name": i.name, "sources": list(i.sources), "shape": list(i.shape), "dtype": i.dtype} for i in self.inputs],
            "outputs": [{"name": o.name, "role": o.role, "shape": list(o.shape), "dtype": o.dtype} for o in self.outputs],
            "action": {"fields": [[n, s] for n, s in self.action.fields], "low": list(self.action.low),
                       "high": list(self.action.high), "binary_fields": list(self.action.binary_fields)},
            "normalisation": {k: {"mean": list(v.mean), "std": list(v.std)} for k, v in self.normalisation.items()},
            "model_sha256": self.model_sha256,
            "metrics": _plain(dict(self.metrics)),
            "provenance": _plain(dict(self.provenance)),
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], path: Path | None = None) -> "PolicyArtifact":
        """Parse the content of policy.yaml. Every key at every level must be known and of the right
        type (refused with the key's path, e.g. `inputs[0]: unknown key 'scale'`), except inside
        `provenance` (free-form) and the values of `metrics` (free-form; `metrics` itself is a
        mapping with string keys). The seal (`artifact_sha256`) is accepted here and verified by
        `load_artifact`, which reads the file."""
        where = f"{path / SPEC_FILE if path else SPEC_FILE}"
        try:
            _keys(d, "", TOP_KEYS, ("kind", "algo", "task", "inputs", "outputs", "action", "normalisation", "model_sha256"))
            return cls(
                kind=_str(d["kind"], "kind"), algo=_str(d["algo"], "algo"), task=_str(d["task"], "task"),
                inputs=tuple(_input(v, f"inputs[{i}]") for i, v in enumerate(_list(d["inputs"], "inputs"))),
                outputs=tuple(_output(v, f"outputs[{i}]") for i, v in enumerate(_list(d["outputs"], "outputs"))),
                action=_action(d["action"], "action"),
                normalisation=_normalisation(d["normalisation"], "normalisation"),
                model_sha256=_str(d["model_sha256"], "model_sha256"),
                camera=_optional(_camera, d.get("camera"), "camera"),
                base=_optional(_str, d.get("base"), "base"), expert=_optional(_str, d.get("expert"), "expert"),
                residual_scale=_optional(_number, d.get("residual_scale"), "residual_scale"),
                metrics=_metrics(d.get("metrics"), "metrics"),
                provenance=dict(_optional(_mapping, d.get("provenance"), "provenance") or {}),
                format_version=_int(d.get("format_version", FORMAT_VERSION), "format_version"),
                path=path,
            )
        except ArtifactError as e:
            raise ArtifactError(f"{where}: {e}") from None


TOP_KEYS = tuple(f.name for f in dataclasses.fields(PolicyArtifact) if f.name != "path") + (SEAL_KEY,)
"""Keys of policy.yaml: the fields of PolicyArtifact and the seal."""


# ----- typed reading of policy.yaml: each helper names the key's path (`inputs[0].shape[1]`) -----
def _at(at: str, message: str) -> ArtifactError:
    return ArtifactError(f"{at}: {message}" if at else message)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _mapping(value: Any, at: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _at(at, f"expected a mapping, got {_show(value)}")
    return value


def _keys(value: Any, at: str, known: tuple[str, ...], required: tuple[str, ...] = ()) -> Mapping:
    d = _mapping(value, at)
    for key in d:
        if key not in known:
            raise _at(at, f"unknown key {key!r}; known: {', '.join(sorted(known))}")
    missing = [k for k in required if k not in d]
    if missing:
        raise _at(at, f"missing keys {sorted(missing)}")
    return d


def _list(value: Any, at: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise _at(at, f"expected a list, got {_show(value)}")
    return list(value)


def _str(value: Any, at: str) -> str:
    if not isinstance(value, str):
        raise _at(at, f"expected a string, got {_show(value)}")
    return value


def _int(value: Any, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _at(at, f"expected an integer, got {_show(value)}")
    return int(value)


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _at(at, f"expected a number, got {_show(value)}")
    return float(value)


def _optional(read, value: Any, at: str):
    return None if value is None else read(value, at)


def _strs(value: Any, at: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{at}[{i}]") for i, v in enumerate(_list(value, at)))


def _ints(value: Any, at: str) -> tuple[int, ...]:
    return tuple(_int(v, f"{at}[{i}]") for i, v in enumerate(_list(value, at)))


def _numbers(value: Any, at: str) -> tuple[float, ...]:
    return tuple(_number(v, f"{at}[{i}]") for i, v in enumerate(_list(value, at)))


def _build(cls, at: str, **fields):
    """`cls(**fields)`, its own checks (`__post_init__`) reported at `at`."""
    try:
        return cls(**fields)
    except ValueError as e:  # ArtifactError, or sim_bridge.spec.Layout's ValueError for the action layout
        raise _at(at, str(e)) from None


def _input(value: Any, at: str) -> InputSpec:
    d = _keys(value, at, ("name", "sources", "shape", "dtype"), ("name", "sources", "shape"))
    return _build(InputSpec, at, name=_str(d["name"], f"{at}.name"), sources=_strs(d["sources"], f"{at}.sources"),
                  shape=_ints(d["shape"], f"{at}.shape"), dtype=_str(d.get("dtype", "float32"), f"{at}.dtype"))


def _output(value: Any, at: str) -> OutputSpec:
    d = _keys(value, at, ("name", "role", "shape", "dtype"), ("name", "role", "shape"))
    return _build(OutputSpec, at, name=_str(d["name"], f"{at}.name"), role=_str(d["role"], f"{at}.role"),
                  shape=_ints(d["shape"], f"{at}.shape"), dtype=_str(d.get("dtype", "float32"), f"{at}.dtype"))


def _action(value: Any, at: str) -> ActionSpec:
    d = _keys(value, at, ("fields", "low", "high", "binary_fields"), ("fields", "low", "high"))
    fields = []
    for i, f in enumerate(_list(d["fields"], f"{at}.fields")):
        pair = _list(f, f"{at}.fields[{i}]")
        if len(pair) != 2:
            raise _at(f"{at}.fields[{i}]", f"expected [name, size], got {_show(f)}")
        fields.append((_str(pair[0], f"{at}.fields[{i}][0]"), _int(pair[1], f"{at}.fields[{i}][1]")))
    return _build(ActionSpec, at, fields=tuple(fields), low=_numbers(d["low"], f"{at}.low"),
                  high=_numbers(d["high"], f"{at}.high"), binary_fields=_strs(d.get("binary_fields", ()), f"{at}.binary_fields"))


def _normalisation(value: Any, at: str) -> dict[str, FieldStats]:
    out = {}
    for name, stats in _keys(value, at, NORMALISED_FIELDS).items():
        d = _keys(stats, f"{at}.{name}", ("mean", "std"), ("mean", "std"))
        out[name] = _build(FieldStats, f"{at}.{name}", mean=_numbers(d["mean"], f"{at}.{name}.mean"),
                           std=_numbers(d["std"], f"{at}.{name}.std"))
    return out


def _camera(value: Any, at: str) -> CameraSpec:
    d = _keys(value, at, ("modality", "width_px", "height_px", "history"), ("modality", "width_px", "height_px"))
    return _build(CameraSpec, at, modality=_str(d["modality"], f"{at}.modality"), width_px=_int(d["width_px"], f"{at}.width_px"),
                  height_px=_int(d["height_px"], f"{at}.height_px"), history=_int(d.get("history", 3), f"{at}.history"))


def _metrics(value: Any, at: str) -> dict[str, Any]:
    d = dict(_optional(_mapping, value, at) or {})
    for key in d:
        _str(key, f"{at} key")
    return d


def _plain(x: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths to plain YAML types."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (Path, str)):
        return str(x)  # also str subclasses such as torch's TorchVersion
    return x


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _onnx_shape(value_info) -> tuple[int, ...]:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else -1)
    return tuple(dims)


def check_onnx_graph(artifact: PolicyArtifact, model_path: Path) -> None:
    """Compare the ONNX graph's inputs/outputs (names, order, shapes, dtypes) with the spec."""
    import onnx

    where = artifact.describe()
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - onnx raises several types for corrupt files
        raise ArtifactError(f"{where}: {model_path.name} is not a readable ONNX model ({type(e).__name__}: {e})") from None
    initialisers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initialisers]
    float_type = onnx.TensorProto.FLOAT
    for kind, specs, graph in (("input", artifact.inputs, graph_inputs), ("output", artifact.outputs, list(model.graph.output))):
        names = [g.name for g in graph]
        if names != [s.name for s in specs]:
            raise ArtifactError(f"{where}: ONNX graph {kind}s {names} != spec {[s.name for s in specs]}")
        for s, g in zip(specs, graph):
            if g.type.tensor_type.elem_type != float_type:
                raise ArtifactError(f"{where}: ONNX {kind} {s.name!r} has element type "
                                    f"{onnx.TensorProto.DataType.Name(g.type.tensor_type.elem_type)}, spec says {s.dtype}")
            shape = _onnx_shape(g)
            if len(shape) != len(s.shape) or any(a != b and -1 not in (a, b) for a, b in zip(shape, s.shape)):
                raise ArtifactError(f"{where}: ONNX {kind} {s.name!r} has shape {list(shape)}, spec says {list(s.shape)}")


# ----- the seal: one sha256 over the whole of policy.yaml (which names the model's sha256) -----
def content_sha256(content: Mapping[str, Any]) -> str:
    """sha256 of the canonical form of a policy.yaml content (the parsed mapping), without the seal itself.

    Canonical form: JSON with sorted keys, no whitespace, ASCII only, Python's shortest round-trip
    float repr; YAML formatting, key order and comments do not count, every value does. The content
    holds `model_sha256`, and `load_artifact` checks that against the model file, so the seal
    covers the model as well."""
    body = {str(k): v for k, v in content.items() if k != SEAL_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True, default=str)
    return hashlib.sha256(SEAL_DOMAIN + text.encode("ascii")).hexdigest()


def _dump_yaml(content: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(content), sort_keys=False, default_flow_style=None, width=120)


def sealed_yaml(content: Mapping[str, Any]) -> str:
    """The text of policy.yaml for `content` (a `PolicyArtifact.to_dict()`), with `artifact_sha256`
    set (after `model_sha256`) to the seal of what a reader will parse back."""
    body = {k: v for k, v in content.items() if k != SEAL_KEY}
    seal = content_sha256(yaml.safe_load(_dump_yaml(body)))
    sealed: dict[str, Any] = {}
    for key, value in body.items():
        sealed[key] = value
        if key == "model_sha256":
            sealed[SEAL_KEY] = seal
    sealed.setdefault(SEAL_KEY, seal)
    text = _dump_yaml(sealed)
    if content_sha256(yaml.safe_load(text)) != seal:  # a value YAML does not read back as written
        raise ArtifactError("policy.yaml content does not survive a YAML round trip; cannot seal it")
    return text


def _verify_seal(raw: Mapping[str, Any], spec_path: Path) -> None:
    directory = spec_path.parent
    seal = raw.get(SEAL_KEY)
    if seal is None:
        raise ArtifactError(
            f"{spec_path}: no {SEAL_KEY}: this policy.yaml is not sealed (written before artifacts were sealed, "
            f"or the field was removed), so edits to it cannot be detected. If you trust it, seal it with "
            f"`{RESEAL_COMMAND} {directory}` (which checks the model's sha256 first), or re-export the artifact")
    if not isinstance(seal, str) or len(seal) != 64 or any(c not in "0123456789abcdef" for c in seal):
        raise ArtifactError(f"{spec_path}: {SEAL_KEY} must be 64 lowercase hex digits, got {_show(seal)}")
    if content_sha256(raw) != seal:
        raise ArtifactError(
            f"{spec_path}: content does not match its {SEAL_KEY}: policy.yaml was edited after it was written "
            f"(which fields changed cannot be known from the file). Re-export the artifact (`rrl export RUN --out DIR`); "
            f"if the edit is intended, re-seal it with `{RESEAL_COMMAND} {directory}`. Measured results are recorded "
            f"with `rrl eval --record-metrics`, which re-seals")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file in the same directory and a rename: never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are shipped and shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ----- reading and writing directories -----
def _artifact_files(directory: str | os.PathLike) -> tuple[Path, Path, Path]:
    path = Path(directory)
    if not path.is_dir():
        raise ArtifactError(f"artifact directory {path} does not exist")
    spec_path, model_path = path / SPEC_FILE, path / MODEL_FILE
    for p in (spec_path, model_path):
        if not p.is_file():
            raise ArtifactError(f"artifact {path}: missing {p.name}")
    return path, spec_path, model_path


def _read_spec(spec_path: Path) -> Mapping[str, Any]:
    try:
        raw = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as e:
        raise ArtifactError(f"{spec_path}: not valid YAML ({e})") from None
    if not isinstance(raw, Mapping):
        raise ArtifactError(f"{spec_path}: expected a mapping at top level, got {type(raw).__name__}")
    return raw


def _check_model_sha256(artifact: PolicyArtifact, model_path: Path, consequence: str) -> None:
    actual = sha256_file(model_path)
    if actual != artifact.model_sha256:
        raise ArtifactError(f"{artifact.describe()}: sha256 of {MODEL_FILE} is {actual}, policy.yaml says "
                            f"{artifact.model_sha256}: the model was changed after export (tampered or corrupt){consequence}")


def load_artifact(directory: str | os.PathLike, task_spec: TaskSpec | None = None, check_graph: bool = True) -> PolicyArtifact:
    """Read and validate an artifact directory; with `task_spec`, also check it fits that task.

    Order: files present, policy.yaml parses, its seal matches its content (an edited policy.yaml
    is refused), every key known and typed, the model's sha256, the ONNX graph, the task."""
    path, spec_path, model_path = _artifact_files(directory)
    raw = _read_spec(spec_path)
    _verify_seal(raw, spec_path)
    artifact = PolicyArtifact.from_dict(raw, path=path)
    _check_model_sha256(artifact, model_path, "")
    if check_graph:
        check_onnx_graph(artifact, model_path)
    if task_spec is not None:
        artifact.check_task(task_spec)
    return artifact


def write_artifact(artifact: PolicyArtifact, onnx_bytes: bytes, out_dir: str | os.PathLike, overwrite: bool = False) -> PolicyArtifact:
    """Write `model.onnx` and a sealed `policy.yaml` to `out_dir` (both hashes computed here), then
    reload and validate.

    Files are written to temporaries and renamed, model first, so a crash never leaves a
    half-written artifact that passes validation (a new model beside an old policy.yaml fails
    its sha256).
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        if not (out / SPEC_FILE).exists():
            raise ArtifactError(f"{out} exists, is not empty and is not an artifact; refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    artifact = dataclasses.replace(artifact, model_sha256=hashlib.sha256(onnx_bytes).hexdigest(), path=out)
    check_onnx_graph_bytes(artifact, onnx_bytes)
    spec_text = sealed_yaml(artifact.to_dict())
    _write_atomic(out / MODEL_FILE, onnx_bytes)
    _write_atomic(out / SPEC_FILE, spec_text.encode())
    return load_artifact(out)


def check_onnx_graph_bytes(artifact: PolicyArtifact, onnx_bytes: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / MODEL_FILE
        p.write_bytes(onnx_bytes)
        check_onnx_graph(artifact, p)


def update_metrics(directory: str | os.PathLike, metrics: Mapping[str, Any]) -> PolicyArtifact:
    """Merge measured results (e.g. success over held-out seeds) into an artifact's policy.yaml and re-seal it.

    `metrics` is inside the seal (people rely on those numbers), so this is the way to record
    them: the artifact must load (seal and model sha256 valid) before, and is sealed again after.
    The model is untouched."""
    artifact = load_artifact(directory, check_graph=False)
    merged = {**artifact.metrics, **_plain(dict(metrics))}
    artifact = dataclasses.replace(artifact, metrics=merged)
    _write_atomic(Path(directory) / SPEC_FILE, sealed_yaml(artifact.to_dict()).encode())
    return load_artifact(directory, check_graph=False)


def reseal(directory: str | os.PathLike) -> str:
    """Seal an artifact's policy.yaml as it stands: the one deliberate way to accept an unsealed
    (older) or hand-edited policy.yaml. Refused unless the content is a valid artifact (every key
    known and typed) and `model.onnx` still has the sha256 policy.yaml names and fits its spec.

    Rewrites policy.yaml from its parsed content (`to_dict`: the same values, canonical layout)
    with `artifact_sha256`. Returns what it found: `unsealed`, `edited` (a seal that no longer
    matched) or `sealed` (already valid; rewritten unchanged)."""
    path, spec_path, model_path = _artifact_files(directory)
    raw = _read_spec(spec_path)
    artifact = PolicyArtifact.from_dict(raw, path=path)
    _check_model_sha256(artifact, model_path, "; refusing to seal it (re-export the artifact)")
    check_onnx_graph(artifact, model_path)
    seal = raw.get(SEAL_KEY)
    found = "unsealed" if seal is None else "sealed" if seal == content_sha256(raw) else "edited"
    _write_atomic(spec_path, sealed_yaml(artifact.to_dict()).encode())
    load_artifact(path)
    return found


def main(argv: list[str] | None = None) -> int:
    """`python -m policies.artifact reseal DIR [DIR ...]`: see `reseal`. Exit 2 when any directory is refused."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m policies.artifact", description="Policy artifact maintenance.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("reseal", help="seal policy.yaml of artifacts whose model.onnx still matches model_sha256 "
                                           "(unsealed artifacts of older versions, or a deliberate hand edit)")
    p.add_argument("directories", nargs="+", help="artifact directories (model.onnx + policy.yaml)")
    args = parser.parse_args(argv)
    rc = 0
    for directory in args.directories:
        try:
            found = reseal(directory)
        except ArtifactError as e:
            print(f"reseal: {e}", file=sys.stderr)
            rc = 2
            continue
        note = {"unsealed": "was unsealed", "edited": "had been edited since it was sealed; its current content is now sealed",
                "sealed": "seal was already valid"}[found]
        print(f"{directory}: sealed ({SPEC_FILE} {note})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
