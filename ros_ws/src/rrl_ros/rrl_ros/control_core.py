"""The control node's core, without ROS: base controller + residual + safety layer, one `tick` per observation.

Slots (what the node's parameters name):

- base `waypoint` (or `waypoint:VARIANT`, e.g. the bowl's `waypoint:no_retry`): the task's scripted
  expert (`policies.runtime.WaypointBase`);
- base `bc` with `base_artifact` = a policy artifact directory (model.onnx + policy.yaml,
  loaded and validated by `policies.runtime.load_base`: a `bc` or REQ/CRR prior artifact),
  or a bare ONNX file under the plain contract below;
- residual (optional): an artifact directory (`policies.runtime.load_residual`, which checks
  the base it was trained on), or a bare ONNX file under the plain contract.

Plain ONNX contract (for models that come without a policy.yaml):
    input  "obs"    float32 [1, D]   D = S for a base, S + A for a residual:
                                     the task state (spec.state layout) followed, for a
                                     residual, by the base action u (spec.action layout)
    output "action" float32 [1, A]   a base: the action u in task units;
                                     a residual: mu, added as u + c * mu with c the
                                     `residual_scale` parameter (binary fields untouched)
Both are checked against the task when loaded, and a mismatch is refused with a reason.

Every tick: u = base(obs); mu = residual(obs, u); command = safety(u + c mu). Composition
is `controllers.residual.ResidualComposer`, the limits, NaN/Inf fallback and stale hold are
`controllers.safety.SafetyLayer`: the same code `rrl eval` runs through policies.runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controllers.residual import ResidualComposer
from controllers.safety import SafetyConfig, SafetyLayer
from policies.artifact import SPEC_FILE, ArtifactError
from policies.onnx_runtime import OnnxSession
from policies.runtime import BaseOutput, load_base, load_residual
from sim_bridge.spec import TaskSpec
from sim_bridge.task import Observation

BASE_KINDS = ("waypoint", "bc")


class SlotError(ValueError):
    """A model cannot go into a slot; the message says why (missing file, wrong sizes, wrong base...)."""


class PlainOnnxModel:
    """A bare ONNX file under the plain contract: "obs" [1, D] -> "action" [1, A]."""

    def __init__(self, path: Path, spec: TaskSpec, in_size: int, role: str):
        try:
            self.session = OnnxSession(path)
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            raise SlotError(f"{role} {path}: ONNX Runtime cannot load it: {e}") from None
        if self.session.input_names != ("obs",) or "action" not in self.session.output_names:
            raise SlotError(f"{role} {path}: the plain ONNX contract needs one input 'obs' and an output 'action', "
                            f"got inputs {list(self.session.input_names)}, outputs {list(self.session.output_names)}")
        got_in = self.session.input_shapes["obs"]
        if got_in[-1] != in_size:
            raise SlotError(f"{role} {path}: input 'obs' has {got_in[-1]} values, task {spec.name} needs {in_size}")
        out = self.session.run({"obs": np.zeros((1, in_size), np.float32)})["action"]
        if out.shape[-1] != spec.action.size:
            raise SlotError(f"{role} {path}: output 'action' has {out.shape[-1]} values, task {spec.name} "
                            f"has {spec.action.size} ({spec.action.labels()})")
        self.path = path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run({"obs": x[None].astype(np.float32)})["action"].reshape(-1).astype(np.float64)


class PlainOnnxBase:
    """A base from a bare ONNX file: u = model(state)."""

    def __init__(self, path: Path, spec: TaskSpec):
        self.model = PlainOnnxModel(path, spec, spec.state.size, "bc base")
        self.name = f"bc:{path.name}"
        self.needs_images = False

    def reset(self, seed: int) -> None:
        pass

    def step(self, obs: Observation) -> BaseOutput:
        return BaseOutput(action=self.model(np.asarray(obs["state"], np.float32)).astype(np.float32), features=None)


class PlainOnnxResidual:
    """A residual from a bare ONNX file: mu = model([state, u]); scale c from the node parameter."""

    def __init__(self, path: Path, spec: TaskSpec, scale: float):
        self.model = PlainOnnxModel(path, spec, spec.state.size + spec.action.size, "residual")
        self.scale = np.full(spec.action.size, float(scale))
        self.artifact = None
        self.needs_images = False

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        x = np.concatenate([np.asarray(obs["state"], np.float32), np.asarray(base.action, np.float32)])
        return self.model(x)


def needs_images(slot) -> bool:
    """Whether a base or residual slot reads camera frames."""
    if hasattr(slot, "needs_images"):
        return bool(slot.needs_images)
    model = getattr(slot, "model", None)
    artifact = getattr(model, "artifact", None)
    return artifact is not None and any(i.is_image for i in artifact.inputs)


def is_waypoint(kind: str) -> bool:
    """`waypoint` or `waypoint:VARIANT` (a variant of the task's scripted expert)."""
    return kind == "waypoint" or kind.startswith("waypoint:")


def make_base(kind: str, artifact: str, spec: TaskSpec):
    """The base for `base_controller` = kind (`waypoint` | `waypoint:VARIANT` | `bc`) and `base_artifact`."""
    if kind not in BASE_KINDS and not is_waypoint(kind):
        raise SlotError(f"base_controller must be one of {BASE_KINDS} (or waypoint:VARIANT), got {kind!r}")
    if is_waypoint(kind):
        try:
            return load_base(kind, spec)
        except (KeyError, ValueError) as e:  # no scripted expert for this task, or no such variant
            raise SlotError(f"base_controller {kind!r}: {e.args[0] if e.args else e}") from None
    if not artifact:
        raise SlotError("base_controller 'bc' needs base_artifact (an artifact directory or an ONNX file)")
    path = Path(artifact).expanduser()
    if not path.exists():
        raise SlotError(f"base_artifact {path} does not exist")
    if path.is_dir():
        if not (path / SPEC_FILE).is_file():
            raise SlotError(f"base_artifact {path} is a directory without {SPEC_FILE}")
        try:
            return load_base(str(path), spec)
        except (ArtifactError, KeyError, ValueError) as e:
            raise SlotError(f"base_artifact {path}: {e}") from None
    return PlainOnnxBase(path, spec)


def make_residual(path_text: str, spec: TaskSpec, base_label: str, scale: float):
    """The residual slot: '' for none, an artifact directory, or a bare ONNX file."""
    if not path_text:
        return None
    path = Path(path_text).expanduser()
    if not path.exists():
        raise SlotError(f"residual {path} does not exist")
    if path.is_dir():
        try:
            return load_residual(str(path), spec, base_label)
        except (ArtifactError, KeyError, ValueError) as e:
            raise SlotError(f"residual {path}: {e}") from None
    return PlainOnnxResidual(path, spec, scale)


def base_label(kind: str, artifact: str) -> str:
    """The base string residual artifacts record (`waypoint[:VARIANT]`, or the base artifact directory)."""
    return kind if is_waypoint(kind) else str(artifact)


def base_name(kind: str, artifact: str) -> str:
    """The base's name in the status messages and reports (`waypoint[:VARIANT]`, or `bc:ARTIFACT`)."""
    return kind if is_waypoint(kind) else f"bc:{artifact}"


def check_residual_fits(residual, label: str) -> None:
    """A residual artifact was trained on one base; refuse to put it on another."""
    artifact = getattr(residual, "artifact", None)
    if artifact is None:
        return
    names = {label, Path(label).name} if not label.startswith("waypoint") else {label}
    if artifact.base not in names:
        raise SlotError(f"residual {artifact.describe()} was trained on base {artifact.base!r}, not {label!r}")


@dataclass
class TickOutput:
    command: np.ndarray
    """(A,) the command to publish."""
    base_action: np.ndarray | None
    residual_mean: np.ndarray | None
    reason: str
    """The safety layer's verdict: ok, clipped, nonfinite_fallback, nonfinite_hold, stale_hold."""


class ControlCore:
    """Base + residual + safety for one task; `tick(obs, age)` per observation."""

    def __init__(self, spec: TaskSpec, base, base_name: str, residual=None, safety: SafetyConfig = SafetyConfig()):
        self.spec = spec
        self.limits = spec.action_limits
        self.safety = SafetyLayer(self.limits, safety)
        self.base, self.base_name = base, base_name
        self.residual = residual
        self.composer = ResidualComposer(self.limits, scale=tuple(residual.scale) if residual is not None else 1.0)
        self.seed = 0
        self.base_errors = 0

    @property
    def needs_images(self) -> bool:
        return needs_images(self.base) or (self.residual is not None and needs_images(self.residual))

    def reset(self, seed: int) -> None:
        self.seed = seed
        self.base.reset(seed)
        if self.residual is not None:
            self.residual.reset(seed)

    def set_base(self, base, base_name: str) -> None:
        """Swap the base controller (between two ticks); it starts from the current episode's seed."""
        base.reset(self.seed)
        self.base, self.base_name = base, base_name

    def tick(self, obs: Observation, observation_age_s: float) -> TickOutput:
        if not observation_age_s <= self.safety.config.stale_after_s:
            d = self.safety.filter(None, None, observation_age_s)
            return TickOutput(d.action, None, None, d.reason)
        try:
            out = self.base.step(obs)
            u = np.asarray(out.action, np.float64)
        except (ValueError, KeyError, FloatingPointError) as e:  # a base that cannot act on this observation
            self.base_errors += 1
            d = self.safety.filter(None, None, observation_age_s)
            return TickOutput(d.action, None, None, f"{d.reason} (base error: {e})")
        mu = None if self.residual is None else self.residual.mean(obs, out)
        d = self.safety.filter(self.composer.compose(u, mu), u, observation_age_s)
        return TickOutput(d.action, u, mu, d.reason)

    def stale_hold(self) -> TickOutput:
        d = self.safety.filter(None, None, float("inf"))
        return TickOutput(d.action, None, None, d.reason)
