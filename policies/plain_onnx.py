"""The plain ONNX contract: a base or residual from a bare `.onnx` file, without a policy.yaml.

For models made outside this project (or before an artifact was written):

    input  "obs"    float32 [1, D]   D = S for a base, S + A for a residual:
                                     the task state (spec.state layout) followed, for a
                                     residual, by the base action u (spec.action layout)
    output "action" float32 [1, A]   a base: the action u in task units;
                                     a residual: mu, added as u + c * mu with c given by the
                                     caller (the control node's `residual_scale` parameter)

Both are checked against the task when loaded; a mismatch is refused with a reason
(`ArtifactError`). Such a residual carries no record of the base it was trained on, so it
fits any base: the caller is responsible for pairing it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from policies.artifact import ArtifactError
from policies.onnx_runtime import OnnxSession
from sim_bridge.spec import TaskSpec
from sim_bridge.task import Observation


class PlainOnnxModel:
    """A bare ONNX file under the plain contract: "obs" [1, D] -> "action" [1, A]."""

    def __init__(self, path: Path, spec: TaskSpec, in_size: int, role: str):
        try:
            self.session = OnnxSession(path)
        except Exception as e:  # onnxruntime raises its own types for unreadable models
            raise ArtifactError(f"{role} {path}: ONNX Runtime cannot load it: {e}") from None
        if self.session.input_names != ("obs",) or "action" not in self.session.output_names:
            raise ArtifactError(f"{role} {path}: the plain ONNX contract needs one input 'obs' and an output 'action', "
                                f"got inputs {list(self.session.input_names)}, outputs {list(self.session.output_names)}")
        got_in = self.session.input_shapes["obs"]
        if got_in[-1] != in_size:
            raise ArtifactError(f"{role} {path}: input 'obs' has {got_in[-1]} values, task {spec.name} needs {in_size}")
        out = self.session.run({"obs": np.zeros((1, in_size), np.float32)})["action"]
        if out.shape[-1] != spec.action.size:
            raise ArtifactError(f"{role} {path}: output 'action' has {out.shape[-1]} values, task {spec.name} "
                                f"has {spec.action.size} ({spec.action.labels()})")
        self.path = path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run({"obs": x[None].astype(np.float32)})["action"].reshape(-1).astype(np.float64)


class PlainOnnxBase:
    """A base from a bare ONNX file: u = model(state)."""

    needs_images = False
    artifact = None

    def __init__(self, path: Path, spec: TaskSpec):
        self.model = PlainOnnxModel(Path(path), spec, spec.state.size, "base")
        self.name = f"bc:{Path(path).name}"

    def reset(self, seed: int) -> None:
        pass

    def step(self, obs: Observation):
        from policies.runtime import BaseOutput

        return BaseOutput(action=self.model(np.asarray(obs["state"], np.float32)).astype(np.float32), features=None)


class PlainOnnxResidual:
    """A residual from a bare ONNX file: mu = model([state, u]); the scale c is the caller's."""

    needs_images = False
    artifact = None

    def __init__(self, path: Path, spec: TaskSpec, scale: float):
        if not np.isfinite(scale) or scale < 0:
            raise ArtifactError(f"residual {path}: residual scale must be finite and >= 0, got {scale}")
        self.model = PlainOnnxModel(Path(path), spec, spec.state.size + spec.action.size, "residual")
        self.scale = np.full(spec.action.size, float(scale))
        self.name = Path(path).name

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs: Observation, base) -> np.ndarray:
        x = np.concatenate([np.asarray(obs["state"], np.float32), np.asarray(base.action, np.float32)])
        return self.model(x)
