"""Policy artifacts: a directory with `model.onnx` and `policy.yaml` (DESIGN.md, "Policy artifacts").

`policy.yaml` is the YAML form of `PolicyArtifact`. It says what the model is (kind, algo,
task, the base a residual was trained on, the expert a REQ prior learned from), how to build
its ONNX inputs from a task observation (`inputs`: which observation fields feed which input,
with shapes and dtypes), what its outputs mean (`outputs`: role per output), the action layout
and limits, the per-dimension normalisation statistics, the residual scale `c`, the sha256 of
`model.onnx` and provenance (training config, dataset, git commit).

`load_artifact(dir, task_spec=None)` validates all of it before anything runs: files present,
the model's sha256 (a changed model is refused as tampered), the ONNX graph's input and output
names, shapes and dtypes against the spec, the statistics' sizes against the inputs, and, when a
`TaskSpec` is given, compatibility with that task (name, action layout and limits, proprio/state
sizes, camera modality). Every failure raises `ArtifactError` naming the artifact and the mismatch.

ONNX models map *normalised* inputs to *normalised* outputs; normalisation lives here, in the
statistics, so that the runtime (`policies.runtime`) and the trainer agree on one definition:

    x_norm = (x - mean) / std        for every vector source (proprio, state, base_action, ...)
    action = action_norm * std + mean

Binary action fields (the gripper) are not normalised: their statistics are mean 0, std 1 and
the model outputs a probability in [0, 1].

Writing: `write_artifact(artifact, onnx_bytes, out_dir)` computes the sha256 itself and writes
both files; `training.export.export_artifact` is the one caller that makes new models.
This module is pure numpy + onnx + yaml: it never imports torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
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


@dataclass(frozen=True)
class FieldStats:
    """Per-dimension normalisation statistics of one vector field."""

    mean: tuple[float, ...]
    """Per-dimension mean."""
    std: tuple[float, ...]
    """Per-dimension standard deviation (> 0; trainers floor it)."""

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
        where = f"{path / SPEC_FILE if path else SPEC_FILE}"
        if not isinstance(d, Mapping):
            raise ArtifactError(f"{where}: expected a mapping at top level, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"path"}
        unknown = set(d) - known
        if unknown:
            raise ArtifactError(f"{where}: unknown keys {sorted(unknown)}")
        required = {"kind", "algo", "task", "inputs", "outputs", "action", "normalisation", "model_sha256"}
        missing = required - set(d)
        if missing:
            raise ArtifactError(f"{where}: missing keys {sorted(missing)}")
        try:
            cam = d.get("camera")
            return cls(
                kind=str(d["kind"]), algo=str(d["algo"]), task=str(d["task"]),
                inputs=tuple(InputSpec(name=str(i["name"]), sources=tuple(i["sources"]), shape=tuple(int(v) for v in i["shape"]),
                                       dtype=str(i.get("dtype", "float32"))) for i in d["inputs"]),
                outputs=tuple(OutputSpec(name=str(o["name"]), role=str(o["role"]), shape=tuple(int(v) for v in o["shape"]),
                                         dtype=str(o.get("dtype", "float32"))) for o in d["outputs"]),
                action=ActionSpec(fields=tuple((str(n), int(s)) for n, s in d["action"]["fields"]),
                                  low=tuple(float(v) for v in d["action"]["low"]), high=tuple(float(v) for v in d["action"]["high"]),
                                  binary_fields=tuple(d["action"].get("binary_fields", ()))),
                normalisation={str(k): FieldStats(mean=tuple(float(x) for x in v["mean"]), std=tuple(float(x) for x in v["std"]))
                               for k, v in d["normalisation"].items()},
                model_sha256=str(d["model_sha256"]),
                camera=None if cam is None else CameraSpec(**cam),
                base=d.get("base"), expert=d.get("expert"),
                residual_scale=None if d.get("residual_scale") is None else float(d["residual_scale"]),
                metrics=dict(d.get("metrics") or {}), provenance=dict(d.get("provenance") or {}),
                format_version=int(d.get("format_version", FORMAT_VERSION)),
                path=path,
            )
        except ArtifactError as e:
            raise ArtifactError(f"{where}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"{where}: malformed field ({type(e).__name__}: {e})") from None


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


def load_artifact(directory: str | os.PathLike, task_spec: TaskSpec | None = None, check_graph: bool = True) -> PolicyArtifact:
    """Read and validate an artifact directory; with `task_spec`, also check it fits that task."""
    path = Path(directory)
    if not path.is_dir():
        raise ArtifactError(f"artifact directory {path} does not exist")
    spec_path, model_path = path / SPEC_FILE, path / MODEL_FILE
    for p in (spec_path, model_path):
        if not p.is_file():
            raise ArtifactError(f"artifact {path}: missing {p.name}")
    try:
        raw = yaml.safe_load(spec_path.read_text())
    except yaml.YAMLError as e:
        raise ArtifactError(f"{spec_path}: not valid YAML ({e})") from None
    artifact = PolicyArtifact.from_dict(raw, path=path)
    actual = sha256_file(model_path)
    if actual != artifact.model_sha256:
        raise ArtifactError(f"{artifact.describe()}: sha256 of {MODEL_FILE} is {actual}, policy.yaml says "
                            f"{artifact.model_sha256}: the model was changed after export (tampered or corrupt)")
    if check_graph:
        check_onnx_graph(artifact, model_path)
    if task_spec is not None:
        artifact.check_task(task_spec)
    return artifact


def write_artifact(artifact: PolicyArtifact, onnx_bytes: bytes, out_dir: str | os.PathLike, overwrite: bool = False) -> PolicyArtifact:
    """Write `model.onnx` and `policy.yaml` to `out_dir` (sha256 computed here), then reload and validate.

    Files are written to temporaries and renamed, so a crash never leaves a half-written artifact
    that passes validation.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        if not (out / SPEC_FILE).exists():
            raise ArtifactError(f"{out} exists, is not empty and is not an artifact; refusing to write into it")
    out.mkdir(parents=True, exist_ok=True)
    artifact = dataclasses.replace(artifact, model_sha256=hashlib.sha256(onnx_bytes).hexdigest(), path=out)
    check_onnx_graph_bytes(artifact, onnx_bytes)
    for name, data in ((MODEL_FILE, onnx_bytes), (SPEC_FILE, yaml.safe_dump(artifact.to_dict(), sort_keys=False, default_flow_style=None, width=120).encode())):
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are shipped and shared
        os.replace(tmp, out / name)
    return load_artifact(out)


def check_onnx_graph_bytes(artifact: PolicyArtifact, onnx_bytes: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / MODEL_FILE
        p.write_bytes(onnx_bytes)
        check_onnx_graph(artifact, p)


def update_metrics(directory: str | os.PathLike, metrics: Mapping[str, Any]) -> PolicyArtifact:
    """Merge measured results (e.g. success over held-out seeds) into an artifact's policy.yaml.

    The model is untouched, so its sha256 stays valid."""
    artifact = load_artifact(directory, check_graph=False)
    merged = {**artifact.metrics, **_plain(dict(metrics))}
    artifact = dataclasses.replace(artifact, metrics=merged)
    (Path(directory) / SPEC_FILE).write_text(yaml.safe_dump(artifact.to_dict(), sort_keys=False, default_flow_style=None, width=120))
    return artifact
