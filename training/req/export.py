"""Export a REQ/CRR run as policy artifacts (`rrl export RUN --out DIR`).

Full policy (the paper's setting): a `req_prior` (or `crr_prior`) artifact whose ONNX graph maps
the normalised state to the prior's mean `action_mean` (and `action_std`), plus, in `DIR/q/`, a
`req_q` (`crr_q`) artifact with Q(s, a), so a runtime can act with the importance-sampled policy
(sample N from the prior, pick by softmax(Q/eta)). The ROS runtime acts with the mean.

Residual (`--residual` runs): a `residual` artifact on base `waypoint[:VARIANT]`, inputs
(state, base_action), output `residual_mean` in normalised action units; the runtime applies
u + c * sigma_action * mu with c = the run's residual_scale, leaving the gripper to the base,
exactly what `training.req.env.TaskEnv` did in training.

Normalisation convention of `policies.artifact`: vectors are normalised with the artifact's
statistics outside the graph; binary action fields (the gripper) are not normalised and the
graph outputs a probability. Training used a_norm = (a - center) / half_range on every
dimension, gripper included, so the wrappers below convert the gripper dimension
(p = (1 + a_norm) / 2 out, a_norm = 2 u - 1 in).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.artifact import (
    PENDING_SHA256, ActionSpec, FieldStats, InputSpec, OutputSpec, PolicyArtifact,
)
from training.req.env import action_center_scale
from training.req.networks import GaussianPrior, QNetwork
from training.req.train import load_run


def _binary_mask(spec) -> torch.Tensor:
    return torch.as_tensor(ActionSpec.from_task(spec).binary_mask())


def _action_stats(spec) -> FieldStats:
    center, scale = action_center_scale(spec)
    mask = ActionSpec.from_task(spec).binary_mask()
    return FieldStats.from_arrays(np.where(mask, 0.0, center), np.where(mask, 1.0, scale))


class PriorExport(nn.Module):
    """normalised state (B, S) -> (action_mean (B, D), action_std (B, D)) in artifact units."""

    def __init__(self, prior: GaussianPrior, binary: torch.Tensor):
        super().__init__()
        self.prior = prior
        self.register_buffer("binary", binary)

    def forward(self, state_norm: torch.Tensor):
        h = self.prior.torso(state_norm)
        mean = torch.tanh(self.prior.mean_head(h))
        std = nn.functional.softplus(self.prior.std_head(h)) + self.prior.min_std
        return torch.where(self.binary, (mean + 1.0) / 2.0, mean), torch.where(self.binary, std / 2.0, std)


class QExport(nn.Module):
    """[normalised state, action in artifact units] (B, S + D) -> Q (B,)."""

    def __init__(self, q: QNetwork, state_dim: int, binary: torch.Tensor):
        super().__init__()
        self.q, self.state_dim = q, state_dim
        self.register_buffer("binary", binary)

    def forward(self, x: torch.Tensor):
        s, a = x[:, :self.state_dim], x[:, self.state_dim:]
        a = torch.where(self.binary, 2.0 * a - 1.0, a)
        return self.q.head(self.q.torso(torch.cat([s, a], dim=-1))).squeeze(-1)


class ResidualExport(nn.Module):
    """[normalised state, base action in artifact units] (B, S + D) -> residual_mean (B, D), normalised units."""

    def __init__(self, prior: GaussianPrior, state_dim: int, binary: torch.Tensor):
        super().__init__()
        self.prior, self.state_dim = prior, state_dim
        self.register_buffer("binary", binary)
        # the prior's normaliser covers [state, u_norm]; the state part is applied outside the graph
        self.register_buffer("u_mean", prior.normalizer.mean[state_dim:].clone())
        self.register_buffer("u_std", prior.normalizer.std[state_dim:].clone())

    def forward(self, x: torch.Tensor):
        s, u = x[:, :self.state_dim], x[:, self.state_dim:]
        u = torch.where(self.binary, 2.0 * u - 1.0, u)
        h = self.prior.torso(torch.cat([s, (u - self.u_mean) / self.u_std], dim=-1))
        return torch.where(self.binary, torch.zeros_like(u), torch.tanh(self.prior.mean_head(h)))


def export_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False) -> PolicyArtifact:
    """The `rrl export` hook for `req` runs (see module docstring)."""
    from sim_bridge import make_task
    from training.export import export_artifact

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config, learner, replay = load_run(run_dir)  # one checkpoint: the learner and the replay it trained on
    task = make_task(config.task)
    try:
        spec = task.spec
    finally:
        task.close()
    s_dim, a_dim = spec.state.size, spec.action.size
    binary = _binary_mask(spec)
    norm = learner.prior.normalizer
    state_stats = FieldStats.from_arrays(norm.mean[:s_dim].numpy(), norm.std[:s_dim].numpy())
    stats = {"action": _action_stats(spec), "state": state_stats}
    obs = replay["data/obs"][replay["data/_time"] >= 0]
    rng = np.random.default_rng(0)
    obs = obs[rng.choice(len(obs), size=min(512, len(obs)), replace=False)]
    state_norm = state_stats.normalise(obs[:, :s_dim])
    expert = "waypoint" + (f":{config.expert_variant}" if config.expert_variant else "")
    provenance = {"training_config": config.to_dict(), "run": str(run_dir), "updates": learner.num_updates,
                  "expert_noise_std": config.expert_noise_std}
    summary_path = run_dir / "summary.json"
    metrics = {}
    if summary_path.exists():
        import json
        summary = json.loads(summary_path.read_text())
        metrics = {"training_frames": summary.get("frames"), "last_eval": summary.get("last_eval")}

    if config.residual:
        center, scale = action_center_scale(spec)
        base_norm = stats["action"].normalise(center + scale * obs[:, s_dim:])  # u in task units, then as the runtime does
        art = PolicyArtifact(
            kind="residual", algo=config.algo, task=config.task,
            inputs=(InputSpec("obs", ("state", "base_action"), (-1, s_dim + a_dim)),),
            outputs=(OutputSpec("residual_mean", "residual_mean", (-1, a_dim)),),
            action=ActionSpec.from_task(spec), normalisation=stats, model_sha256=PENDING_SHA256,
            base=expert, expert=expert, residual_scale=config.residual_scale, metrics=metrics, provenance=provenance)
        module = ResidualExport(learner.prior, s_dim, binary)
        return export_artifact(module, {"obs": np.concatenate([state_norm, base_norm], 1)}, art, out_dir,
                               overwrite=overwrite)

    prior_kind, q_kind = ("req_prior", "req_q") if config.algo == "req" else ("crr_prior", "crr_q")
    art = PolicyArtifact(
        kind=prior_kind, algo=config.algo, task=config.task,
        inputs=(InputSpec("state", ("state",), (-1, s_dim)),),
        outputs=(OutputSpec("action_mean", "action_mean", (-1, a_dim)), OutputSpec("action_std", "action_std", (-1, a_dim))),
        action=ActionSpec.from_task(spec), normalisation=stats, model_sha256=PENDING_SHA256, expert=expert,
        metrics=metrics, provenance={**provenance, "q_artifact": "q", "acting": config.learner.acting})
    prior_art = export_artifact(PriorExport(learner.prior, binary), {"state": state_norm}, art, out_dir,
                                overwrite=overwrite)
    # Q-network for importance-sampled acting; its state statistics must equal the prior's (one normaliser)
    q_norm = learner.q.normalizer
    if not (torch.allclose(q_norm.mean, norm.mean) and torch.allclose(q_norm.std, norm.std)):
        raise ValueError("prior and Q were trained with different observation statistics")
    center, scale = action_center_scale(spec)
    actions = center + scale * rng.uniform(-1, 1, size=(len(obs), a_dim))
    actions = np.where(binary.numpy(), actions > center, actions)  # gripper commands are 0 / 1
    q_art = PolicyArtifact(
        kind=q_kind, algo=config.algo, task=config.task,
        inputs=(InputSpec("state_action", ("state", "action"), (-1, s_dim + a_dim)),),
        outputs=(OutputSpec("q", "q", (-1,)),),
        action=ActionSpec.from_task(spec), normalisation=stats, model_sha256=PENDING_SHA256, expert=expert,
        provenance={**provenance, "prior_artifact": ".."})
    export_artifact(QExport(learner.q, s_dim, binary),
                    {"state_action": np.concatenate([state_norm, stats["action"].normalise(actions)], 1).astype(np.float32)},
                    q_art, out_dir / "q", overwrite=overwrite)
    return prior_art
