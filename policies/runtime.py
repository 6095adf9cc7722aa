"""Runtime policies: artifacts -> actions, over the task observation dict (sim_bridge.task).

- `ArtifactModel`: an artifact plus its ONNX session; builds the graph inputs from an
  observation (normalised vector fields, centre-cropped image stacks) and caller extras
  (`base_action`, `features`), runs the graph, returns outputs by role.
- `BCPolicy`: a BC base policy. `step(obs)` -> `BaseOutput(action, features)`: the
  denormalised action at t (binary fields thresholded to {0, 1}) and the 256-d bottleneck
  features the residual reads.
- `WaypointBase`: the scripted waypoint expert (optionally a variant) as a base.
- `PriorPolicy`: a REQ/CRR prior acting on its own (the Gaussian mean, denormalised).
- `ResidualPolicy`: pi_r(s, u) -> mu, with scale c * sigma_action (RRLfD eq. 6 at evaluation:
  the deterministic mean, denormalised around zero).
- `ComposedPolicy`: u + c * sigma_action * mu through `controllers.residual.ResidualComposer`,
  clipped by `controllers.safety.ActionLimits`; what `rrl eval` runs. `load_policy(task_spec, base, residual)` builds one from strings.

Never imports torch; ONNX Runtime only (policies.onnx_runtime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from controllers.residual import ResidualComposer
from policies.artifact import ArtifactError, PolicyArtifact, load_artifact
from policies.onnx_runtime import OnnxSession
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
        stats = self.artifact.normalisation
        out = {}
        for inp in self.artifact.inputs:
            if inp.is_image:
                out[inp.name] = image_input(obs, inp.sources[0], inp.shape)
                continue
            parts = []
            for s in inp.sources:
                if s in ("proprio", "state"):
                    parts.append(stats[s].normalise(obs[s]))
                elif s in ("base_action", "action"):
                    if s not in extras:
                        raise KeyError(f"{self.artifact.describe()} needs {s!r}")
                    parts.append(stats["action"].normalise(extras[s]))
                else:
                    if extras.get(s) is None:
                        raise KeyError(f"{self.artifact.describe()} needs {s!r} (a residual on a learned base reads its features)")
                    parts.append(np.asarray(extras[s], np.float32).reshape(-1))
            out[inp.name] = np.concatenate(parts)[None].astype(np.float32)
        return out

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

    def reset(self, seed: int) -> None:
        pass

    def step(self, obs: Observation) -> BaseOutput:
        out = self.model.run(obs)
        action = threshold_binary(self.artifact.normalisation["action"].denormalise(out["action_mean"]), self.artifact)
        return BaseOutput(action=action, features=out.get("features"))

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).action


class WaypointBase:
    """The task's scripted waypoint expert as a base controller (`waypoint` or `waypoint:VARIANT`)."""

    def __init__(self, task_spec: TaskSpec, variant: str | None = None):
        from controllers.experts import make_expert

        self.spec = task_spec
        self.variant = variant
        self.expert = make_expert(task_spec.name, variant=variant)
        self.name = "waypoint" if variant is None else f"waypoint:{variant}"

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)

    def step(self, obs: Observation) -> BaseOutput:
        u = np.asarray(self.expert.act(self.spec.state.unpack(obs["state"])), np.float32)
        return BaseOutput(action=u, features=None)

    def act(self, obs: Observation) -> np.ndarray:
        return self.step(obs).action


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
        self.scale = float(model.artifact.residual_scale) * np.asarray(model.artifact.normalisation["action"].std, np.float64)
        """(A,) c * sigma_action: multiplies mu to give the residual in action units."""

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        """mu (A,) in normalised action units, from the observation, u and (for a learned base) its features."""
        out = self.model.run(obs, base_action=base.action, features=base.features)
        return out["residual_mean"].astype(np.float64)


class ComposedPolicy:
    """A base controller plus an optional residual: act(obs) = clip(u + c * sigma * mu).

    Composition and clipping are the control node's own (controllers.residual, controllers.safety),
    so evaluation runs exactly what the robot runs. Implements training.evaluation.Policy.
    """

    def __init__(self, spec: TaskSpec, base: Base, residual: ResidualPolicy | None = None):
        self.spec = spec
        self.base = base
        self.residual = residual
        self.limits = spec.action_limits
        self.composer = ResidualComposer(self.limits, scale=tuple(residual.scale) if residual is not None else 1.0)
        self.last_base: BaseOutput | None = None
        self.last_residual_mean: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        self.base.reset(seed)
        if self.residual is not None:
            self.residual.reset(seed)

    def act(self, obs: Observation) -> np.ndarray:
        self.last_base = self.base.step(obs)
        self.last_residual_mean = None if self.residual is None else self.residual.mean(obs, self.last_base)
        return self.limits.clip(self.composer.compose(self.last_base.action, self.last_residual_mean))


def load_base(base: str, task_spec: TaskSpec, threads: int = 1) -> Base:
    """`waypoint`, `waypoint:VARIANT`, or the directory of a `bc` (or REQ/CRR prior) artifact."""
    if base == "waypoint" or base.startswith("waypoint:"):
        variant = base.split(":", 1)[1] if ":" in base else None
        return WaypointBase(task_spec, variant=variant or None)
    model = ArtifactModel.load(base, task_spec, threads=threads)
    if model.artifact.kind == "bc":
        return BCPolicy(model)
    if model.artifact.kind in ("req_prior", "crr_prior"):
        return PriorPolicy(model)
    raise ArtifactError(f"{model.artifact.describe()} cannot be a base (kind {model.artifact.kind!r}); "
                        "use waypoint, waypoint:VARIANT, or a bc/req_prior/crr_prior artifact")


def load_residual(directory: str | Path, task_spec: TaskSpec, base: str, threads: int = 1) -> ResidualPolicy:
    """Load a residual and check it was trained on `base` (the same string, or the base artifact's dir name)."""
    model = ArtifactModel.load(directory, task_spec, threads=threads)
    trained_on = model.artifact.base
    names = {base, Path(base).name} if not base.startswith("waypoint") else {base}
    if trained_on not in names:
        raise ArtifactError(f"{model.artifact.describe()} was trained on base {trained_on!r}, not {base!r}")
    return ResidualPolicy(model)


def load_policy(task_spec: TaskSpec, base: str, residual: str | Path | None = None, threads: int = 1) -> ComposedPolicy:
    """The policy `rrl eval` and the control node run: base (+ residual)."""
    b = load_base(base, task_spec, threads=threads)
    r = None if residual is None else load_residual(residual, task_spec, base, threads=threads)
    return ComposedPolicy(task_spec, b, r)


def camera_for_artifacts(*directories: str | Path | None) -> CameraConfig | None:
    """The camera needed by artifact directories (strings starting with `waypoint` are skipped)."""
    cams = set()
    for d in directories:
        if d is None or str(d).startswith("waypoint"):
            continue
        a = load_artifact(d, check_graph=False)
        if a.camera is not None:
            cams.add((a.camera.width_px, a.camera.height_px, a.camera.history))
    if len(cams) > 1:
        raise ArtifactError(f"artifacts need different cameras {sorted(cams)}")
    if not cams:
        return None
    w, h, n = cams.pop()
    return CameraConfig(width_px=w, height_px=h, history=n)
