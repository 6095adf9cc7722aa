"""Runtime policies: artifacts -> actions, over the task observation dict (sim_bridge.task).

The one policy path: `rrl eval`, the training rollouts (DMPO and REQ), the exporters' parity checks
and the ROS control node all run a `ComposedPolicy`, so a policy's numbers are the robot's numbers.

- `ArtifactModel`: an artifact plus its ONNX session; builds the graph inputs from an
  observation (`input_vector`: normalised vector fields; centre-cropped image stacks) and caller
  extras (`base_action`, `features`), runs the graph, returns outputs by role.
- Bases (`reset(seed)`, `step(obs) -> BaseOutput`): `BCPolicy` (a BC artifact: the denormalised
  action at t, binary fields thresholded, and the 256-d bottleneck features the residual reads),
  `WaypointBase` (the scripted waypoint expert, optionally a variant), `PriorPolicy` (a REQ/CRR
  prior acting on its own: the Gaussian mean), `policies.plain_onnx.PlainOnnxBase`, and
  `policies.replay.ReplayBase` (a recorded demonstration bag replayed open loop from the reset seed).
- Residuals (`mean(obs, base) -> mu`, `scale`): `ResidualPolicy` (RRLfD eq. 6 at evaluation:
  the deterministic mean mu in normalised units, scale c * sigma_action) and
  `policies.plain_onnx.PlainOnnxResidual`.
- `ComposedPolicy`: base + residual + safety layer. Every tick: u = base(obs) (a base that raises
  holds the robot, counted), mu = residual(obs, u) (a residual that raises is dropped for the tick,
  counted), then `controllers.residual.ResidualComposer` (u + c * sigma * mu, binary fields the
  base's) and `controllers.safety.SafetyLayer` (stale observation -> hold; NaN/Inf -> u, or hold
  when u is not finite; clip to the limits), all counted in `counters`.
- `load_base`, `load_residual`, `load_policy`: from the strings the command line and the node
  parameters take (`policies.base_spec` parses them).

Never imports torch; ONNX Runtime only (policies.onnx_runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from controllers.residual import ResidualComposer
from controllers.safety import SafetyConfig, SafetyCounters, SafetyLayer
from policies.artifact import ArtifactError, FieldStats, PolicyArtifact, load_artifact
from policies.base_spec import BaseSpec, BaseSpecError, check_variant, parse_base, parse_base_path
from policies.onnx_runtime import OnnxSession
from policies.plain_onnx import PlainOnnxBase, PlainOnnxResidual
from sim_bridge.spec import TaskSpec
from sim_bridge.task import CameraConfig, Observation


@dataclass
class BaseOutput:
    """What a base controller produced this tick."""

    action: np.ndarray
    """u: float32 (A,) in the task's action units (binary fields in {0, 1})."""
    features: np.ndarray | None
    """float32 (F,) bottleneck features of a learned base; None for the waypoint base."""


class Base(Protocol):
    name: str
    needs_images: bool

    def reset(self, seed: int) -> None: ...

    def step(self, obs: Observation) -> BaseOutput: ...


def image_input(obs: Observation, source: str, shape: tuple[int, ...]) -> np.ndarray:
    """(1, C, h, w) float32 image input from the observation's frame stack, centre-cropped to (h, w).

    depth: (T, H, W) float32 in [0, 1] -> C = T. rgb: (T, H, W, 3) uint8 -> C = 3T, scaled to [0, 1].
    """
    if source not in obs:
        raise KeyError(f"observation has no {source!r} frames (keys {sorted(obs)}); make the task with a camera")
    frames = np.asarray(obs[source])
    if source == "rgb":
        frames = np.moveaxis(frames.astype(np.float32) / 255.0, -1, 1).reshape(-1, *frames.shape[1:3])
    frames = frames.astype(np.float32, copy=False)
    h, w = shape[2], shape[3]
    H, W = frames.shape[-2:]
    if H < h or W < w:
        raise ValueError(f"{source} frames are {H}x{W}, the model needs at least {h}x{w}")
    top, left = (H - h) // 2, (W - w) // 2
    out = frames[:, top:top + h, left:left + w]
    if out.shape[0] != shape[1]:
        raise ValueError(f"{source} stack has {out.shape[0]} channels, the model needs {shape[1]}")
    return out[None]


def input_vector(sources: tuple[str, ...], stats: dict[str, FieldStats], obs: Observation,
                 extras: dict[str, np.ndarray | None], who: str = "policy") -> np.ndarray:
    """One vector input (S,) float32: the named sources in order, vector fields normalised.

    `proprio`/`state` come from the observation, normalised with their statistics; `base_action`
    (or `action`) from `extras`, normalised with the action statistics; anything else (`features`)
    from `extras` as it is. Training builds its network inputs with this same function.
    """
    parts = []
    for s in sources:
        if s in ("proprio", "state"):
            parts.append(stats[s].normalise(obs[s]))
        elif s in ("base_action", "action"):
            if extras.get(s) is None:
                raise KeyError(f"{who} needs {s!r}")
            parts.append(stats["action"].normalise(extras[s]))
        else:
            if extras.get(s) is None:
                raise KeyError(f"{who} needs {s!r} (a residual on a learned base reads its features)")
            parts.append(np.asarray(extras[s], np.float32).reshape(-1))
    return np.concatenate(parts).astype(np.float32, copy=False)


class ArtifactModel:
    """A loaded artifact and its warmed-up ONNX session."""

    def __init__(self, artifact: PolicyArtifact, threads: int = 1):
        self.artifact = artifact
        self.session = OnnxSession(artifact.model_path, threads=threads)
        self._roles = {o.role: o.name for o in artifact.outputs}

    @classmethod
    def load(cls, directory: str | Path, task_spec: TaskSpec | None = None, threads: int = 1) -> "ArtifactModel":
        return cls(load_artifact(directory, task_spec), threads=threads)

    def feeds(self, obs: Observation, **extras: np.ndarray) -> dict[str, np.ndarray]:
        """Graph inputs for one observation (batch of 1). Vector sources are normalised with the
        artifact's statistics (`base_action` with the action statistics); features pass as they are."""
        out = {}
        for inp in self.artifact.inputs:
            if inp.is_image:
                out[inp.name] = image_input(obs, inp.sources[0], inp.shape)
            else:
                vector = input_vector(inp.sources, self.artifact.normalisation, obs, extras, self.artifact.describe())
                out[inp.name] = vector[None]
        return out

    @property
    def needs_images(self) -> bool:
        return any(i.is_image for i in self.artifact.inputs)

    def run(self, obs: Observation, **extras: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by role, batch dimension removed."""
        values = self.session.run(self.feeds(obs, **extras))
        return {role: values[name][0] for role, name in self._roles.items()}


def threshold_binary(action: np.ndarray, artifact: PolicyArtifact) -> np.ndarray:
    action = np.asarray(action, np.float32).copy()
    mask = artifact.action.binary_mask()
    action[mask] = (action[mask] > 0.5).astype(np.float32)
    return action


class BCPolicy:
    """A behavioural-cloning base policy from a `bc` artifact."""

    def __init__(self, model: ArtifactModel):
        if model.artifact.kind != "bc":
            raise ArtifactError(f"{model.artifact.describe()} is not a bc artifact")
        self.model = model
        self.artifact = model.artifact
        self.name = model.artifact.path.name if model.artifact.path else "bc"
        self.needs_images = model.needs_images

    def reset(self, seed: int) -> None:
        pass

    def step(self, obs: Observation) -> BaseOutput:
        out = self.model.run(obs)
        action = threshold_binary(self.artifact.normalisation["action"].denormalise(out["action"]), self.artifact)
        features = out.get("features")
        return BaseOutput(action=action, features=None if features is None else features.astype(np.float32))

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).action


class PriorPolicy:
    """A REQ/CRR prior acting on its own: the deterministic action is the Gaussian mean."""

    def __init__(self, model: ArtifactModel):
        if not model.artifact.has_output("action_mean"):
            raise ArtifactError(f"{model.artifact.describe()} has no action_mean output")
        self.model = model
        self.artifact = model.artifact
        self.name = model.artifact.path.name if model.artifact.path else model.artifact.kind
        self.needs_images = model.needs_images

    def reset(self, seed: int) -> None:
        pass

    def step(self, obs: Observation) -> BaseOutput:
        out = self.model.run(obs)
        action = threshold_binary(self.artifact.normalisation["action"].denormalise(out["action_mean"]), self.artifact)
        return BaseOutput(action=action, features=out.get("features"))

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).action


class WaypointBase:
    """The task's scripted waypoint expert as a base controller (`waypoint` or `waypoint:VARIANT`); `expert`
    wraps one already made (REQ's training env, whose expert may carry velocity noise)."""

    needs_images = False
    artifact = None

    def __init__(self, task_spec: TaskSpec, variant: str | None = None, expert=None):
        from policies.experts import make_expert

        self.spec = task_spec
        self.variant = variant
        self.expert = expert if expert is not None else make_expert(task_spec.name, variant=variant)
        self.name = "waypoint" if variant is None else f"waypoint:{variant}"

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)

    def step(self, obs: Observation) -> BaseOutput:
        u = np.asarray(self.expert.act(self.spec.state.unpack(obs["state"])), np.float32)
        return BaseOutput(action=u, features=None)

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).action


class ConstantBase:
    """A constant "base action" u (scratch, finetune), optionally with a frozen BC base's features."""

    needs_images, artifact = False, None

    def __init__(self, u: np.ndarray, features_from: Base | None = None, name: str = "none"):
        self.u = np.asarray(u, np.float32)
        self.features_from = features_from
        self.name = name

    def reset(self, seed: int) -> None:
        if self.features_from is not None:
            self.features_from.reset(seed)

    def step(self, obs: Observation) -> BaseOutput:
        features = None if self.features_from is None else self.features_from.step(obs).features
        return BaseOutput(action=self.u.copy(), features=features)


def midpoint_base(spec: TaskSpec) -> ConstantBase:
    """No base (DMPO from scratch): u is the middle of the action limits, every step."""
    return ConstantBase((np.asarray(spec.action_low) + np.asarray(spec.action_high)) / 2)


class ResidualPolicy:
    """pi_r(s, u): the residual's mean mu (normalised action units) and its scale c * sigma_action.

    RRLfD eq. 6 at evaluation: a = c * sigma_action * mu, denormalised around zero. The
    composition (controllers.residual.ResidualComposer, with scale = c * sigma_action) leaves the
    binary fields (gripper) to the base.
    """

    def __init__(self, model: ArtifactModel):
        if model.artifact.kind != "residual":
            raise ArtifactError(f"{model.artifact.describe()} is not a residual artifact")
        self.model = model
        self.artifact = model.artifact
        self.name = model.artifact.path.name if model.artifact.path else "residual"
        self.needs_images = model.needs_images
        self.scale = float(model.artifact.residual_scale) * np.asarray(model.artifact.normalisation["action"].std, np.float64)
        """(A,) c * sigma_action: multiplies mu to give the residual in action units."""

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        """mu (A,) in normalised action units, from the observation, u and (for a learned base) its features."""
        out = self.model.run(obs, base_action=base.action, features=base.features)
        return out["residual_mean"].astype(np.float64)


class Residual(Protocol):
    name: str
    needs_images: bool
    scale: np.ndarray
    """(A,) multiplies mu to give the residual in action units."""

    def reset(self, seed: int) -> None: ...

    def mean(self, obs: Observation, base: BaseOutput) -> np.ndarray: ...


BASE_ERRORS = (ValueError, KeyError, FloatingPointError, IndexError)
"""What a base or residual may raise on an observation it cannot act on (missing frames, wrong sizes)."""


@dataclass
class Tick:
    """What the composed policy did on one control tick."""

    command: np.ndarray
    """(A,) float64: the command for the robot, within the task limits (or the hold action)."""
    base_action: np.ndarray | None
    """u (A,) as the base produced it; None when the base was not run (stale) or failed."""
    residual_mean: np.ndarray | None
    """mu (A,) in the residual's units before scaling; None without a residual (or when it failed)."""
    reason: str
    """The verdict: ok, clipped, nonfinite_fallback, nonfinite_hold, stale_hold, base_error, residual_error."""


def tool_position(spec: TaskSpec, obs: Observation) -> np.ndarray | None:
    """The measured tool position (m, base frame) of an observation: proprio's `tool_pos` field; None when the
    task has no such field or the observation lacks proprio (the workspace rule then holds the robot)."""
    if "tool_pos" not in spec.proprio.names or "proprio" not in obs:
        return None
    try:
        return np.asarray(spec.proprio.unpack(np.asarray(obs["proprio"]))["tool_pos"], np.float64)
    except ValueError:  # proprio of the wrong size: no measured position
        return None


class ComposedPolicy:
    """A base controller plus an optional residual behind the safety layer: the one policy path.

    `step(obs, observation_age_s)` returns a `Tick`: the command is
    `SafetyLayer.filter(ResidualComposer.compose(u, mu), u)`: u + c * sigma * mu clipped to the limits,
    u alone when the sum is NaN/Inf, the hold action when the observation is stale or u itself is not
    finite. A base that raises holds the robot (`base_errors`); a residual that raises is dropped
    for that tick, so u goes out alone (`residual_errors`). `act(obs)` is `step(obs).command` for
    evaluation loops (training.evaluation.Policy). `compose(base_output, mu)` runs the same rule on a
    residual mean the caller supplies (training rollouts: mu is the learner's sampled action).

    With a workspace box in `safety` (the robot-facing loop's), each `step` first hands the safety layer the
    observation's tool position (`tool_position`), so the box rule runs wherever the policy runs.

    `composer` overrides the composition rule for the training baselines that have no base (DMPO
    from scratch, fine-tuning: u is a constant and the residual also drives the binary fields).
    """

    def __init__(self, spec: TaskSpec, base: Base, residual: Residual | None = None,
                 safety: SafetyConfig = SafetyConfig(), composer: ResidualComposer | None = None,
                 residual_scale: np.ndarray | None = None):
        self.spec = spec
        self.base = base
        self.residual = residual
        self.limits = spec.action_limits
        self.safety = SafetyLayer(self.limits, safety)
        if composer is None:
            scale = residual_scale if residual_scale is not None else residual.scale if residual is not None else 1.0
            composer = ResidualComposer(self.limits, scale=tuple(np.broadcast_to(np.asarray(scale, np.float64), (self.limits.size,))))
        self.composer = composer
        self.seed = 0
        self.last_base: BaseOutput | None = None
        self.last_residual_mean: np.ndarray | None = None
        self.residual_engaged = residual is not None
        """Whether the residual runs: False while the base is not the one it was trained on (`set_base`)."""
        self.suspended_ticks = 0
        """Ticks the base ran alone because the residual was suspended (kept, not run, on another base)."""

    @property
    def counters(self) -> SafetyCounters:
        return self.safety.counters

    @property
    def name(self) -> str:
        return self.base.name + ("" if self.residual is None else f" + {self.residual.name}")

    @property
    def needs_images(self) -> bool:
        return bool(self.base.needs_images or (self.residual is not None and self.residual.needs_images))

    def reset(self, seed: int) -> None:
        self.seed = seed
        self.base.reset(seed)
        if self.residual is not None:
            self.residual.reset(seed)
        self.last_base = self.last_residual_mean = None

    def set_base(self, base: Base, residual_engaged: bool = True) -> None:
        """Swap the base controller between two ticks; it starts from the current episode's seed. The residual is
        kept: it runs on the new base when `residual_engaged` (it fits it, `residual_fits`), else it is suspended
        (u goes out alone, `suspended_ticks` counts the ticks) until a base it fits comes back."""
        base.reset(self.seed)
        self.base = base
        self.residual_engaged = self.residual is not None and residual_engaged

    def hold(self) -> Tick:
        """The stale-observation hold (zero velocity, binary fields kept), counted."""
        d = self.safety.filter(None, None, float("inf"))
        return Tick(d.action, None, None, d.reason)

    def step(self, obs: Observation, observation_age_s: float = 0.0) -> Tick:
        """One tick on observation `obs`, `observation_age_s` old (0 in evaluation and lockstep)."""
        if not observation_age_s <= self.safety.config.stale_after_s:  # also catches NaN ages
            return self.hold()
        if self.safety.config.workspace is not None:  # the box rule needs this tick's tool position
            self.safety.observe_tool(tool_position(self.spec, obs))
        try:
            base_out = self.base.step(obs)
        except BASE_ERRORS as e:
            self.counters.base_errors += 1
            self.last_base = self.last_residual_mean = None
            d = self.safety.filter(None, None, observation_age_s)
            return Tick(d.action, None, None, f"base_error: {e}")
        mu, residual_error = None, None
        if self.residual is not None and not self.residual_engaged:
            self.suspended_ticks += 1
        elif self.residual is not None:
            try:
                mu = self.residual.mean(obs, base_out)
            except BASE_ERRORS as e:
                self.counters.residual_errors += 1
                residual_error = e
        tick = self.compose(base_out, mu, observation_age_s)
        if residual_error is not None:
            tick.reason = f"residual_error: {residual_error}"
        return tick

    def compose(self, base_out: BaseOutput, residual_mean: np.ndarray | None, observation_age_s: float = 0.0) -> Tick:
        """u + c * sigma * mu through the safety layer, for a base output and residual mean in hand."""
        u = np.asarray(base_out.action, np.float64).reshape(-1)
        self.last_base, self.last_residual_mean = base_out, residual_mean
        try:
            candidate = self.composer.compose(u, residual_mean)
        except ValueError:  # wrong sizes: the safety layer falls back to u (or holds)
            candidate = None
        d = self.safety.filter(candidate, u, observation_age_s)
        return Tick(d.action, u, None if residual_mean is None else np.asarray(residual_mean, np.float64), d.reason)

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).command


def load_base(base: str | BaseSpec, task_spec: TaskSpec, threads: int = 1) -> Base:
    """`waypoint`, `waypoint:VARIANT`, `replay:BAG_DIR` (a recorded demonstration, policies.replay), a `bc` (or
    REQ/CRR prior) artifact directory, or a plain .onnx file.

    Raises `BaseSpecError` for a string that names no base, an unknown variant or a bag that cannot be replayed
    on the task (`policies.replay.ReplayBagError` for a damaged bag: also a BagError), `ArtifactError` for an
    artifact that does not fit the task or cannot be a base."""
    spec = parse_base(base) if isinstance(base, str) else base
    if spec.is_waypoint:
        check_variant(spec, task_spec.name)
        return WaypointBase(task_spec, variant=spec.variant)
    if spec.is_replay:
        from policies.replay import ReplayBase  # reads bags with training.demos.bag: only for a replay base

        return ReplayBase(spec, task_spec)
    if spec.kind == "onnx":
        return PlainOnnxBase(spec.path, task_spec)
    model = ArtifactModel.load(spec.path, task_spec, threads=threads)
    if model.artifact.kind == "bc":
        return BCPolicy(model)
    if model.artifact.kind in ("req_prior", "crr_prior"):
        return PriorPolicy(model)
    raise ArtifactError(f"{model.artifact.describe()} cannot be a base (kind {model.artifact.kind!r}); "
                        "use waypoint, waypoint:VARIANT, or a bc/req_prior/crr_prior artifact")


def load_residual(path: str | Path, task_spec: TaskSpec, base: str | BaseSpec, threads: int = 1,
                  plain_scale: float | None = None, check_fit: bool = True) -> Residual:
    """A residual artifact directory (checked to be trained on `base` unless not `check_fit`: the control node keeps
    a residual suspended on another base), or a plain .onnx file (scale `plain_scale`)."""
    base_spec = parse_base(base) if isinstance(base, str) else base
    spec = residual_path(path)
    if spec.kind == "onnx":
        if plain_scale is None:
            raise ArtifactError(f"residual {spec.path} is a plain ONNX file: it needs a residual scale (the node's residual_scale)")
        return PlainOnnxResidual(spec.path, task_spec, plain_scale)
    model = ArtifactModel.load(spec.path, task_spec, threads=threads)
    if check_fit:
        check_residual_fits(model.artifact, base_spec)
    return ResidualPolicy(model)


def check_residual_fits(artifact: PolicyArtifact | None, base: BaseSpec) -> None:
    """A residual artifact was trained on one base; refuse to put it on another (plain residuals fit any)."""
    if artifact is None:
        return
    if artifact.kind != "residual":
        raise ArtifactError(f"{artifact.describe()} is not a residual artifact (kind {artifact.kind!r})")
    if not base.matches(str(artifact.base)):
        raise ArtifactError(f"{artifact.describe()} was trained on base {artifact.base!r}, not {base.text!r}")


def residual_fits(residual: Residual | None, base: BaseSpec) -> bool:
    """Whether a loaded residual may run on `base` (a plain ONNX residual fits any; no residual fits none)."""
    if residual is None:
        return False
    artifact = getattr(residual, "artifact", None)
    return artifact is None or base.matches(str(artifact.base))


def load_policy(task_spec: TaskSpec, base: str | BaseSpec, residual: str | Path | None = None, threads: int = 1,
                safety: SafetyConfig = SafetyConfig(), plain_residual_scale: float | None = None) -> ComposedPolicy:
    """The policy `rrl eval`, the control node and the tests run: base (+ residual) + safety."""
    b = load_base(base, task_spec, threads=threads)
    r = None if residual is None else load_residual(residual, task_spec, base, threads=threads, plain_scale=plain_residual_scale)
    return ComposedPolicy(task_spec, b, r, safety=safety)


LOAD_ERRORS = (ArtifactError, BaseSpecError)
"""What loading a base or residual raises for input that does not fit (the message says why)."""


def camera_for_artifacts(base: str | Path | None, residual: str | Path | None = None) -> CameraConfig | None:
    """The camera a base (+ residual) needs (waypoint bases and plain ONNX files need none)."""
    cams = set()
    for path, role in ((base, "base"), (residual, "residual")):
        if path is None:
            continue
        spec = parse_base(str(path)) if role == "base" else residual_path(path)
        if spec.kind != "artifact":
            continue
        a = load_artifact(spec.path, check_graph=False)
        if a.camera is not None:
            cams.add((a.camera.width_px, a.camera.height_px, a.camera.history))
    if len(cams) > 1:
        raise ArtifactError(f"artifacts need different cameras {sorted(cams)}")
    if not cams:
        return None
    w, h, n = cams.pop()
    return CameraConfig(width_px=w, height_px=h, history=n)


def residual_path(path: str | Path) -> BaseSpec:
    """A residual given by path: an artifact directory or a plain .onnx file (checked, not loaded)."""
    try:
        return parse_base_path(path, role="residual")
    except BaseSpecError as e:
        raise ArtifactError(str(e)) from None
