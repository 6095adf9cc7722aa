"""The task experts as the runtime builds them: `controllers.experts` plus the learned primitives some variants run.

`controllers` is numpy only, so an expert variant whose motion is a learned primitive (adroit_pen's
`primitive`: the in-hand reorientation learned with REQ from scratch) gets the network here:
`LearnedPrimitive` runs a `req_prior`/`crr_prior` artifact through ONNX Runtime as a motion's primitive.
Everything that builds an expert by name (`waypoint:VARIANT` bases, `rrl expert`, `rrl record`, REQ
training) goes through `make_expert`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controllers import experts
from controllers.waypoint import JointTargets, MotionContext, NamedObs
from policies.artifact import ArtifactError

PRETRAINED = Path(__file__).resolve().parent / "pretrained"

LEARNED_PRIMITIVES: dict[tuple[str, str], Path] = {
    ("adroit_pen", "primitive"): PRETRAINED / "req_adroit_pen_primitive",
}
"""(task, expert variant) -> the shipped primitive artifact it runs (`training/req/configs/adroit_pen_primitive.yaml`)."""


def make_expert(task: str, variant: str | None = None, noise_std: float = 0.0, primitive: str | Path | None = None):
    """`controllers.experts.make_expert`, with the learned primitive of a variant that runs one loaded:
    `primitive` (an artifact directory) or the shipped one (`LEARNED_PRIMITIVES`)."""
    path = primitive if primitive is not None else LEARNED_PRIMITIVES.get((task, variant))
    if path is None:
        return experts.make_expert(task, variant=variant, noise_std=noise_std)
    return experts.make_expert(task, variant=variant, noise_std=noise_std, primitive=LearnedPrimitive(path, task))


class LearnedPrimitive:
    """A learned full policy (a `req_prior`/`crr_prior` artifact, `rrl export` of a REQ run) as a motion's
    primitive: named full state -> `JointTargets` (the prior's mean action, in joint units), exactly as the
    same artifact acts as a base (`policies.runtime.PriorPolicy`).

    The policy reads the flat state vector; an expert sees it unpacked (`TaskSpec.state.unpack`, fields in
    layout order), so the fields are concatenated back in that order and their total size is checked against
    the artifact's input."""

    def __init__(self, path: str | Path, task: str):
        from policies.runtime import ArtifactModel, PriorPolicy

        path = Path(path)
        if not (path / "policy.yaml").is_file():
            raise ValueError(f"learned primitive {path}: no policy artifact there (train one with `rrl train req "
                             f"--config training/req/configs/adroit_pen_primitive.yaml --out RUN`, then "
                             f"`rrl export RUN --out {path}`)")
        model = ArtifactModel.load(path)
        art = model.artifact
        if art.kind not in ("req_prior", "crr_prior") or art.task != task:
            raise ArtifactError(f"learned primitive {art.describe()}: needs a req_prior or crr_prior artifact of {task}, "
                                f"got kind {art.kind!r} of task {art.task!r}")
        (inp,) = art.inputs
        if list(inp.sources) != ["state"]:
            raise ArtifactError(f"learned primitive {art.describe()}: reads {inp.sources}; a primitive reads the state alone")
        self.path, self.state_size = path, int(inp.shape[-1])
        self.policy = PriorPolicy(model)

    def __call__(self, obs: NamedObs, ctx: MotionContext) -> JointTargets:
        state = np.concatenate([np.ravel(np.asarray(v, np.float32)) for v in obs.values()])
        if state.size != self.state_size:
            raise ValueError(f"learned primitive {self.path}: the observation has {state.size} state values, "
                             f"the policy reads {self.state_size}")
        return JointTargets(self.policy.act({"state": state}))
