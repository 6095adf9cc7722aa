"""The residual agent of RRLfD on a task: what the DMPO policy sees and what the robot executes.

Inputs (RRLfD Sec. 3.2), concatenated in this order into one vector:
- on a learned base (a `bc` artifact): its frozen bottleneck features, the
  normalised proprioception and the normalised base action u;
- on the waypoint base (no features): the normalised full state and the normalised u;
- from scratch (`base=None`): the normalised full state only.
Input vectors are built by `policies.runtime.input_vector`, the exact function
the runtime (`policies.runtime.ArtifactModel.feeds`) applies to an exported
residual, so training and the ROS control node feed the network identical
vectors. Statistics: a BC base brings its demonstration statistics; for the
waypoint base they are measured on base-only episodes (`base_statistics`),
which play the role of demonstrations.

Actions (RRLfD eq. 6): the policy outputs z ~ N(μ, Σ) in normalised units; the
residual is a = c·σ(A)∘z, denormalised around zero, and the executed action is
the one policy path's command, `policies.runtime.ComposedPolicy.compose`: u + a
through `controllers.residual.ResidualComposer` and the safety layer (clip to the
limits; NaN/Inf -> u, counted) — the control node's own code. At evaluation
z = μ, and the periodic evaluations run `training.evaluation.evaluate` over a
`ComposedPolicy` whose residual is the learner's mean (`LearnerResidual`).

Binary gripper: the residual does not act on binary fields; the base's 0/1
command passes through (`ResidualComposer(residual_on_binary=False)`, the
runtime's rule). With c·σ ≤ 0.33·0.5 a thresholded sum u + a could flip the
gripper only for |z| > 3 anyway, i.e. almost never, and a flip costs a grasp;
RRLfD's residual acts on the continuous velocities too. The policy still has
one output per action dimension (the runtime expects (A,)); the binary one is
ignored.

Baselines (RRLfD Sec. 5): from scratch, u = the middle of the limits and
a = half-range·z on the full state; fine-tuning, the BC network's output layer
(initialised from the BC checkpoint, on the frozen encoder's features) is the
policy mean and z is the normalised action itself (u = μ(A), a = σ(A)∘z).
Both threshold the binary fields at 0.5 of u + a, since no base commands them.

Image inputs (`ResidualSpace.camera`): DMPO from scratch on depth/RGB + proprio and end-to-end
fine-tuning read the camera stack themselves (through `networks.ImageEncoder`), cropped by the
runtime's own `policies.runtime.image_input` and rounded to float16, the precision the replay
stores. The policy's input is then [vector fields, stack] (`ResidualSpace.input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from controllers.residual import ResidualComposer
from controllers.safety import ActionLimits
from policies.artifact import ActionSpec, FieldStats, InputSpec, OutputSpec, PENDING_SHA256, PolicyArtifact
from policies.runtime import Base, BaseOutput, BCPolicy, ComposedPolicy, ConstantBase, image_input, input_vector  # noqa: F401
from policies.runtime import midpoint_base  # noqa: F401 (re-exported)
from sim_bridge.spec import TaskSpec
from sim_bridge.task import Observation, Task
from training.bc.network import ResNet18Half
from training.dmpo.networks import GaussianPolicy
from training.dmpo.train import EnvStep, flat_input
from training.seeds import STATS_SEED_BASE, statistics_episode_seed



MODES = ("residual", "scratch", "finetune")
"""residual: u + c·σ(A)∘z on a frozen base (RRLfD); scratch: DMPO without a base; finetune: the BC
network's head trained by DMPO, acting on its own (no base action)."""


def input_sources(base: Base | None, mode: str = "residual", images: bool = False) -> tuple[str, ...]:
    """The policy's vector input fields for a base and mode (see the module docstring). With `images` (scratch on
    images, end-to-end fine-tuning) the features come from the policy's own encoder, so they are not a source."""
    if mode == "scratch" or base is None:
        return ("proprio",) if images else ("state",)
    if mode == "finetune":
        sources = bc_head(base.artifact)[2]
        return tuple(s for s in sources if s != "features") if images else sources
    if isinstance(base, BCPolicy) and base.artifact.has_output("features"):
        return ("features", "proprio", "base_action")
    return ("state", "base_action")


def bc_encoder(artifact: PolicyArtifact) -> ResNet18Half:
    """The image BC's ResNet-18-half with the BC run's best weights (`encoder.*` of the checkpoint's `model`).

    Needs the run's checkpoint: end-to-end fine-tuning trains the ResNet on batch statistics, and the artifact's
    graph has its BatchNorm layers folded into the convolutions (`training.bc.network.fuse_batchnorm`)."""
    image = next((i for i in artifact.inputs if i.is_image), None)
    if image is None:
        raise ValueError(f"{artifact.describe()} reads no images: there is no ResNet to fine-tune end to end")
    model, folded = bc_weights(artifact)
    if folded:
        raise FileNotFoundError(
            f"{artifact.describe()}: end-to-end fine-tuning needs the BC run's checkpoint (its BatchNorm statistics), "
            f"not found at {_bc_checkpoint(artifact)}; the artifact's graph has them folded into the convolutions. "
            "Fine-tuning with the features frozen (without --finetune-encoder) runs from the artifact alone")
    encoder = ResNet18Half(int(image.shape[1]))
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in model.items() if k.startswith("encoder.")})
    return encoder


def _bc_checkpoint(artifact: PolicyArtifact):
    """The BC run's best weights file (`training.bc.train.best_weights_path(provenance.run)`), or None."""
    from pathlib import Path

    from training.bc.train import best_weights_path

    run = artifact.provenance.get("run")
    return best_weights_path(Path(str(run))) if run else None


def bc_weights(artifact: PolicyArtifact) -> tuple[dict[str, torch.Tensor], bool]:
    """The BC network's weights (`training.bc.network.BCNet` state dict keys) and whether BatchNorm is folded.

    From the BC run's best weights (key `model`) while the run directory is there: (weights, False). Otherwise from
    the artifact's own graph, which holds the network the runtime runs (`training.bc.train.export_run`: an
    `ExportWrapper` around the net, BatchNorm folded into the convolutions for images, float16-stored weights
    cast back): (weights of `fuse_batchnorm(BCNet(...))`, True). So a shipped artifact can be fine-tuned without
    the run that made it.
    """
    ckpt = _bc_checkpoint(artifact)
    if ckpt is not None and ckpt.is_file():
        return torch.load(ckpt, weights_only=False, map_location="cpu")["model"], False
    import onnx
    from onnx import numpy_helper

    from training.export import FP16_SUFFIX

    prefix = "net."  # ExportWrapper.net
    weights = {}
    for init in onnx.load(str(artifact.model_path)).graph.initializer:
        name = init.name.removesuffix(FP16_SUFFIX)
        if name.startswith(prefix):
            weights[name[len(prefix):]] = torch.from_numpy(numpy_helper.to_array(init).astype(np.float32))
    if "head.weight" not in weights:
        raise ValueError(f"{artifact.describe()}: no BC network in its graph (no net.head.weight) and no BC run "
                         f"checkpoint at {ckpt}; fine-tuning needs one of them")
    return weights, any(i.is_image for i in artifact.inputs)


def bc_head(artifact: PolicyArtifact) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """The BC network's output layer for the action at t: (weight (A, H), bias (A,), its input sources).

    From `bc_weights` (the run's best weights, or the artifact's graph): `head.weight` (K·A, H) with the K
    horizons major. The head reads the 256-d bottleneck features, plus the normalised proprioception when the
    encoder is the image ResNet.
    """
    if (artifact.provenance.get("training") or {}).get("action_targets") == "joint_delta":
        raise ValueError(f"{artifact.describe()} regresses joint offsets (action_targets joint_delta); fine-tuning reads "
                         "the BC head as absolute actions, so it cannot start from this base")
    model, _ = bc_weights(artifact)
    a = artifact.action.size
    weight, bias = model["head.weight"][:a].clone(), model["head.bias"][:a].clone()
    features = artifact.output("features").shape[-1]
    sources = ("features",) if weight.shape[1] == features else ("features", "proprio")
    return weight, bias, sources


class FineTunePolicy(nn.Module):
    """The BC head as a Gaussian policy: mean = BC head (normalised action, logits on binary dims), std learned."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, init_std: float, min_std: float = 1e-6):
        super().__init__()
        from training.dmpo.networks import InputNormalizer, _inverse_softplus

        a, h = weight.shape
        self.normalizer = InputNormalizer(h)
        self.mean_head = nn.Linear(h, a)
        with torch.no_grad():
            self.mean_head.weight.copy_(weight)
            self.mean_head.bias.copy_(bias)
        self.std_head = nn.Linear(h, a)
        nn.init.uniform_(self.std_head.weight, -1e-4, 1e-4)
        nn.init.zeros_(self.std_head.bias)
        self.min_std, self.std_shift = min_std, _inverse_softplus(init_std - min_std)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.normalizer(obs)
        std = torch.nn.functional.softplus(self.std_head(h) + self.std_shift) + self.min_std
        return self.mean_head(h), std


def base_statistics(task: Task, base: Base, episodes: int, seed: int = STATS_SEED_BASE) -> tuple[dict[str, FieldStats], dict]:
    """Normalisation statistics from base-only episodes, and the base's success on them.

    Episode i is reset with `training.seeds.statistics_episode_seed(i)` (`seed` must stay STATS_SEED_BASE:
    the statistics range is the only one these episodes may use).

    Returns ({"state", "proprio", "action"} -> FieldStats, {"episodes", "success_rate", "frames"}).
    Binary action fields get mean 0, std 1 (the artifact convention: not normalised). A BC base's
    own demonstration statistics replace the measured action/proprio ones (RRLfD normalises with
    demo statistics).
    """
    if seed != STATS_SEED_BASE:
        raise ValueError(f"statistics episodes use the statistics seed range from {STATS_SEED_BASE}, got seed {seed}")
    policy = ComposedPolicy(task.spec, base)
    states, proprios, actions, wins, frames = [], [], [], 0, 0
    for i in range(episodes):
        episode_seed = statistics_episode_seed(i)
        obs = task.reset(episode_seed)
        policy.reset(episode_seed)
        while True:
            states.append(obs["state"])
            proprios.append(obs["proprio"])
            action = policy.act(obs)
            actions.append(policy.last_base.action)
            step = task.step(action)
            frames += 1
            obs = step.obs
            if step.terminated or step.truncated:
                wins += int(step.success)
                break
    stats = {"state": FieldStats.of(np.array(states)), "proprio": FieldStats.of(np.array(proprios)),
             "action": FieldStats.of(np.array(actions), binary_mask=task.spec.action_limits.binary_mask)}
    if isinstance(base, BCPolicy):
        stats["action"] = base.artifact.normalisation["action"]
        if "proprio" in base.artifact.normalisation:
            stats["proprio"] = base.artifact.normalisation["proprio"]
    return stats, {"episodes": episodes, "success_rate": wins / max(episodes, 1), "frames": frames}


@dataclass(frozen=True)
class CameraInput:
    """The camera stack an image policy reads: `policies.runtime.image_input(obs, source, (1, *shape))`."""

    source: str
    """`depth` or `rgb` (the task's camera)."""
    shape: tuple[int, int, int]
    """(C, h, w): C = history frames (depth) or 3·history (RGB), h×w the centre crop."""
    history: int
    """Frames per stack."""

    def __post_init__(self) -> None:
        if self.source not in ("depth", "rgb"):
            raise ValueError(f"camera source must be depth or rgb, got {self.source!r}")
        if self.shape[0] != self.history * (3 if self.source == "rgb" else 1):
            raise ValueError(f"{self.source} stack of {self.history} frames cannot have {self.shape[0]} channels")

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.shape[0] // self.history, self.shape[1], self.shape[2])


@dataclass(frozen=True)
class ResidualSpace:
    """How normalised actions z map to robot commands, and how observations become input vectors."""

    spec: TaskSpec
    """The task."""
    sources: tuple[str, ...]
    """Input fields in order (`features`, `proprio`, `state`, `base_action`)."""
    stats: dict[str, FieldStats]
    """Normalisation statistics (`action` always; `proprio`/`state` when read)."""
    residual_scale: float
    """c of eq. 6 (mode residual only)."""
    mode: str = "residual"
    """`residual`: u + c·σ(A)∘z, binary fields are the base's; `scratch`: u = middle of the limits,
    a = half-range·z; `finetune`: u = μ(A), a = σ(A)∘z (z is the BC head's normalised action).
    In scratch and finetune binary fields are thresholded at 0.5 of u + a, with u = 0.5 and
    scale 0.5 for finetune, so z > 0 (a positive BC logit) closes the gripper."""
    camera: CameraInput | None = None
    """The camera stack the policy reads itself (scratch on images, end-to-end fine-tuning); None: vector only."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.residual_scale > 0:
            raise ValueError(f"residual scale c must be > 0, got {self.residual_scale}")
        for s in self.sources:
            if s in ("proprio", "state") and s not in self.stats:
                raise ValueError(f"input {s!r} has no normalisation statistics")

    @property
    def limits(self) -> ActionLimits:
        return self.spec.action_limits

    def constant_u(self) -> np.ndarray | None:
        """u of the scratch and finetune modes (None for residual: the base supplies it)."""
        binary = self.limits.binary_mask
        if self.mode == "scratch":
            return (np.asarray(self.spec.action_low) + np.asarray(self.spec.action_high)) / 2
        if self.mode == "finetune":
            return np.where(binary, 0.5, np.asarray(self.stats["action"].mean))
        return None

    def composer(self) -> ResidualComposer:
        binary = self.limits.binary_mask
        if self.mode == "scratch":
            half = (np.asarray(self.spec.action_high) - np.asarray(self.spec.action_low)) / 2
            return ResidualComposer(self.limits, scale=tuple(float(h) for h in half), residual_on_binary=True)
        if self.mode == "finetune":
            scale = np.where(binary, 0.5, np.asarray(self.stats["action"].std))
            return ResidualComposer(self.limits, scale=tuple(float(v) for v in scale), residual_on_binary=True)
        sigma = self.residual_scale * np.asarray(self.stats["action"].std, np.float64)
        return ResidualComposer(self.limits, scale=tuple(float(s) for s in sigma))

    def vector(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        """The policy's vector input: `policies.runtime.input_vector`, as `ArtifactModel.feeds` builds it at run time."""
        if not self.sources:
            return np.zeros(0, np.float32)
        return input_vector(self.sources, self.stats, obs, {"base_action": base.action, "features": base.features},
                            "the residual")

    def frames(self, obs: Observation) -> np.ndarray:
        """The camera stack (C, h, w) float32, at the replay's float16 precision."""
        if self.camera is None:
            raise ValueError("this residual space reads no camera")
        stack = image_input(obs, self.camera.source, (1, *self.camera.shape))[0]
        return stack.astype(np.float16).astype(np.float32)

    def frame(self, obs: Observation) -> np.ndarray:
        """The newest frame of the stack (channels per frame, h, w) float16: what the replay stores per step."""
        return self.frames(obs)[-self.camera.frame_shape[0]:].astype(np.float16)

    def input(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        """The policy's whole input: the vector, then (with a camera) the stack flattened."""
        vector = self.vector(obs, base)
        return vector if self.camera is None else flat_input({"obs": vector[None], "image": self.frames(obs)[None]})[0]

    def policy(self, base: Base, residual=None) -> ComposedPolicy:
        """The composed policy of this space: base + (optional) residual + safety, with this mode's composition."""
        return ComposedPolicy(self.spec, base, residual, composer=self.composer())


class LearnerResidual:
    """The learner's deterministic policy as a runtime residual: mu = mean(space.vector(obs, u)).

    What the exported artifact computes, in torch: periodic evaluations in training run it inside a
    `ComposedPolicy`, through the same evaluation loop as `rrl eval`."""

    name, artifact = "learner", None

    def __init__(self, act, space: ResidualSpace):
        self.act, self.space = act, space
        self.scale = np.asarray(space.composer().scale, np.float64)
        self.needs_images = space.camera is not None

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs: Observation, base: BaseOutput) -> np.ndarray:
        return np.asarray(self.act(self.space.input(obs, base)), np.float64)


class ResidualEnv:
    """A task plus a frozen base, seen by DMPO as an `Environment` over normalised residual actions z."""

    def __init__(self, task: Task, base: Base, space: ResidualSpace):
        self.task, self.base, self.space = task, base, space
        self.policy = space.policy(base)
        """The one policy path: each step's command is `policy.compose(u, z)` (composition + safety layer)."""
        self.limits = space.limits
        self.action_dim = task.spec.action.size
        self._base_out: BaseOutput | None = None
        self._obs: Observation | None = None
        self.last_action: np.ndarray | None = None
        """The executed action of the latest step (for tests and diagnostics)."""

    @property
    def observation_dim(self) -> int:
        if self._obs is None:
            raise RuntimeError("observation_dim is known after the first reset()")
        return int(self.space.vector(self._obs, self._base_out).size)

    def reset(self, seed: int) -> np.ndarray:
        self._obs = self.task.reset(seed)
        self.base.reset(seed)
        self._base_out = self.base.step(self._obs)
        return self.space.vector(self._obs, self._base_out)

    @property
    def counters(self):
        """The safety layer's counters over this env's steps (NaN/Inf fallbacks, clips)."""
        return self.policy.counters

    def frame(self) -> np.ndarray:
        """The current observation's newest camera frame (image agents: what the replay stores)."""
        return self.space.frame(self._obs)

    def frames(self) -> np.ndarray:
        """The current observation's camera stack (image agents: what the actor reads)."""
        return self.space.frames(self._obs)

    def step(self, z: np.ndarray) -> EnvStep:
        self.last_action = self.policy.compose(self._base_out, np.asarray(z, np.float64)).command
        step = self.task.step(self.last_action)
        self._obs = step.obs
        done = step.terminated or step.truncated
        if not done:  # the base acts on the new observation (its u is part of the next input)
            self._base_out = self.base.step(self._obs)
        vector = self.space.vector(self._obs, self._base_out)
        return EnvStep(vector, float(step.reward), bool(step.terminated), bool(step.truncated), bool(step.success))


def evaluate_residual(env: ResidualEnv, act, episodes: int, seed: int) -> dict:
    """Deterministic episodes on seeds `seed, seed + 1, ...` through `training.evaluation.evaluate`
    (the loop `rrl eval` runs) over base + the learner's mean as residual + safety: success rate,
    mean length of successes and the safety counters."""
    from training.evaluation import evaluate

    policy = env.space.policy(env.base, LearnerResidual(act, env.space))
    return evaluate(env.task, policy, episodes, seed, progress=False).summary()


class _ExportedResidual(nn.Module):
    """obs (B, S) normalised input -> (residual_mean (B, A), residual_std (B, A)), normalised action units."""

    def __init__(self, policy: GaussianPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor):
        return self.policy(obs)


def residual_artifact_description(space: ResidualSpace, obs_dim: int, base_name: str, provenance: dict, metrics: dict) -> PolicyArtifact:
    """The `residual` artifact for a trained policy on the waypoint or a BC base (not from scratch)."""
    if space.mode != "residual":
        raise ValueError(f"a {space.mode} policy has no base action; it cannot be exported as a residual")
    a = space.spec.action.size
    return PolicyArtifact(
        kind="residual", algo="dmpo", task=space.spec.name,
        inputs=(InputSpec("obs", space.sources, (-1, obs_dim)),),
        outputs=(OutputSpec("residual_mean", "residual_mean", (-1, a)), OutputSpec("residual_std", "residual_std", (-1, a))),
        action=ActionSpec.from_task(space.spec),
        normalisation={k: v for k, v in space.stats.items() if k == "action" or k in space.sources},
        model_sha256=PENDING_SHA256, base=base_name, residual_scale=float(space.residual_scale),
        metrics=metrics, provenance=provenance,
    )


def export_residual(policy: GaussianPolicy, space: ResidualSpace, samples: np.ndarray, base_name: str, out_dir,
                    provenance: dict, metrics: dict, overwrite: bool = True) -> PolicyArtifact:
    """Write a `residual` artifact (ONNX parity-checked on `samples` (N, S) of real inputs)."""
    from training.export import export_artifact

    artifact = residual_artifact_description(space, samples.shape[1], base_name, provenance, metrics)
    return export_artifact(_ExportedResidual(policy), {"obs": samples.astype(np.float32)}, artifact, out_dir, overwrite=overwrite)
