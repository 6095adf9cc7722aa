"""A residual DMPO run on a task (`rrl train residual --algo dmpo`), and its export.

`train_residual(config)`:
1. builds the task and the frozen base (`policies.runtime.load_base`: `waypoint`,
   `waypoint:VARIANT`, a `bc` artifact; or `none` for DMPO from scratch, whose
   statistics come from uniformly random actions); with `finetune` the BC
   artifact's own output layer becomes the policy (the fine-tuning baseline);
2. measures normalisation statistics and the base's success on base-only
   episodes (`residual.base_statistics`; seeds from `STATS_SEED_BASE`), saved to
   `stats.json` so a resumed run uses the same ones;
3. trains DMPO (`training.dmpo.train.train`) on `ResidualEnv`, evaluating the
   deterministic residual every `eval_every_frames` frames on held-out seeds
   from `EVAL_SEED_BASE` (the same seeds every time);
4. once training has reached its frames, exports the `residual` artifact to
   `RUN/artifact` (not for `none`) and evaluates base alone and base + residual
   through the runtime (`policies.runtime.load_policy`, what `rrl eval` and the
   ROS node run) on `final_eval_episodes` held-out seeds; `RUN/summary.json`
   holds the numbers. A run stopped by `max_wall_s` does neither (its summary
   says so, `finished: false`); the same command continues it.

Baselines (`dmpo_scratch`, `dmpo_finetune` runs) stop after training: they have no
base action, so there is no residual artifact; their `eval.jsonl` feeds the plot. Two of them
train an image encoder (`ResidualRunConfig.trains_encoder`): DMPO from scratch on depth/RGB +
proprio (`--base none --obs depth+proprio`, a fresh ResNet-18-half) and end-to-end fine-tuning
(`--finetune --finetune-encoder`, the BC's own ResNet); the replay then holds every frame once.

Run directory: `run.yaml` (kind `residual`, `dmpo_scratch` or `dmpo_finetune`, the config, the
input size), `stats.json`, `config.yaml`, `eval.jsonl`, `tb/`, `checkpoints/`, `artifact/`,
`summary.json`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from policies.artifact import FieldStats, update_metrics
from policies.base_spec import is_waypoint
from training.dmpo.config import DMPOConfig, ResidualRunConfig  # noqa: F401 (re-exported)
from training.dmpo.residual import (
    STATS_SEED_BASE, CameraInput, ConstantBase, FineTunePolicy, ResidualEnv, bc_encoder, bc_head, midpoint_base, ResidualSpace,
    base_statistics, evaluate_residual, export_residual, input_sources,
)
from training.dmpo.train import ImageField, checkpoint_store, make_agent, read_checkpoint, train
from training.evaluation import EVAL_SEED_BASE


def _make(config: ResidualRunConfig):
    from policies.runtime import camera_for_artifacts, load_base
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig

    scratch = config.mode == "scratch"
    if scratch:
        camera = None if config.obs == "state" else CameraConfig(width_px=config.camera_px, height_px=config.camera_px)
    else:
        camera = camera_for_artifacts(config.base)
    task = make_task(config.task, camera=camera)
    if camera is not None and scratch and task.spec.camera != config.obs.split("+")[0]:
        task.close()
        raise ValueError(f"{config.task} has a {task.spec.camera} camera; --obs {config.obs} cannot be read there")
    base = RandomBase(task.spec) if scratch else load_base(config.base, task.spec)
    return task, base


def _camera_input(config: ResidualRunConfig, base) -> CameraInput | None:
    """The camera stack the policy reads itself: scratch on images (the task's camera at `camera_px`, the BC
    crop), end-to-end fine-tuning (the BC artifact's own image input); None otherwise."""
    from sim_bridge.task import CameraConfig
    from training.bc.config import crop_px

    if not config.trains_encoder:
        return None
    if config.mode == "scratch":
        source, history, crop = config.obs.split("+")[0], CameraConfig().history, crop_px(config.camera_px)
        return CameraInput(source, (history * (3 if source == "rgb" else 1), crop, crop), history)
    image = next((i for i in base.artifact.inputs if i.is_image), None)
    if image is None:
        raise ValueError(f"{base.artifact.describe()} reads no images: --finetune-encoder needs an image BC base")
    return CameraInput(image.sources[0], tuple(int(v) for v in image.shape[1:]), base.artifact.camera.history)


CALIBRATION_EPISODES, CALIBRATION_STEPS = 4, 32
"""A fresh encoder's BatchNorm statistics come from the first steps of a few statistics episodes."""


def _encoder(config: ResidualRunConfig, base, env: ResidualEnv):
    """The image encoder DMPO trains (None when it reads vectors only): the BC's ResNet (end-to-end fine-tuning), or a
    fresh one from the run seed whose BatchNorm statistics are those of frames from statistics episodes (the
    environment's mean action, seeds from `STATS_SEED_BASE`)."""
    from training.dmpo.networks import ImageEncoder
    from training.seeds import statistics_episode_seed

    space = env.space
    if space.camera is None:
        return None
    vector_dim = env.observation_dim
    if config.mode == "finetune":
        return ImageEncoder(vector_dim, space.camera.shape, resnet=bc_encoder(base.artifact))
    torch.manual_seed(config.train.seed)
    encoder = ImageEncoder(vector_dim, space.camera.shape)
    frames = []
    for i in range(CALIBRATION_EPISODES):
        env.reset(statistics_episode_seed(i))
        for _ in range(CALIBRATION_STEPS):
            frames.append(env.frames())
            step = env.step(np.zeros(env.action_dim))
            if step.terminated or step.truncated:
                break
    encoder.calibrate(torch.as_tensor(np.stack(frames)))
    return encoder


class RandomBase:
    """Uniform random actions within the limits: the statistics episodes of a run from scratch
    (RRLfD assumes no demonstration statistics there)."""

    name, needs_images, artifact = "random", False, None

    def __init__(self, spec):
        self.low, self.high = np.asarray(spec.action_low), np.asarray(spec.action_high)
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def step(self, obs):
        from policies.runtime import BaseOutput

        return BaseOutput(action=self.rng.uniform(self.low, self.high).astype(np.float32), features=None)


def _stats_to_json(stats: dict[str, FieldStats]) -> dict:
    return {k: {"mean": list(v.mean), "std": list(v.std)} for k, v in stats.items()}


def _stats_from_json(d: dict) -> dict[str, FieldStats]:
    return {k: FieldStats(tuple(v["mean"]), tuple(v["std"])) for k, v in d.items()}


def _space(config: ResidualRunConfig, task, base, stats) -> ResidualSpace:
    return ResidualSpace(task.spec, input_sources(base, config.mode, images=config.trains_encoder), stats,
                         residual_scale=config.residual_scale, mode=config.mode, camera=_camera_input(config, base))


def _env_and_policy(config: ResidualRunConfig, task, base, space: ResidualSpace):
    """The environment DMPO drives, and the policy it starts from (None: a fresh GaussianPolicy)."""
    if config.mode == "residual":
        return ResidualEnv(task, base, space), None
    if config.mode == "scratch":
        return ResidualEnv(task, midpoint_base(task.spec), space), None
    weight, bias, _ = bc_head(base.artifact)
    features_from = None if config.finetune_encoder else base  # end to end: the policy's own encoder computes them
    env = ResidualEnv(task, ConstantBase(space.constant_u(), features_from=features_from, name="finetune"), space)
    return env, FineTunePolicy(weight, bias, init_std=config.train.learner.init_std)


def worker_env(config: ResidualRunConfig, stats: dict[str, FieldStats]):
    """A rollout worker's environment: its own task, its own frozen base (and feature extractor), the run's statistics."""
    task, base = _make(config)
    env, _ = _env_and_policy(config, task, base, _space(config, task, base, stats))
    return env


def evaluate_residual_episodes(env: ResidualEnv, actor, seeds: list[int]) -> list:
    """Deterministic episodes (the policy's mean) through the composed policy, one per seed, on any process."""
    from training.evaluation import run_episode
    from training.dmpo.residual import LearnerResidual

    policy = env.space.policy(env.base, LearnerResidual(actor.mean, env.space))
    return [run_episode(env.task, policy, seed) for seed in seeds]


def train_residual(config: ResidualRunConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
                   options=None) -> dict:
    """Train, export and compare; returns the summary (also written to RUN/summary.json).

    `options` (`training.harness.RunOptions`): device, rollout workers (each builds its own task and
    base: `worker_env`), wall clock."""
    import functools

    from training.harness import RunOptions

    options = options if options is not None else RunOptions(device="cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    task, base = _make(config)
    try:
        stats_file = out / "stats.json"
        if resume and stats_file.exists():
            saved = json.loads(stats_file.read_text())
            stats, base_stats_summary = _stats_from_json(saved["stats"]), saved["base"]
        else:
            stats, base_stats_summary = base_statistics(task, base, config.stats_episodes, STATS_SEED_BASE)
            stats_file.write_text(json.dumps({"stats": _stats_to_json(stats), "base": base_stats_summary}, indent=1))
        space = _space(config, task, base, stats)
        env, policy = _env_and_policy(config, task, base, space)
        env.reset(STATS_SEED_BASE)
        obs_dim = env.observation_dim
        run = {"kind": {"residual": "residual", "scratch": "dmpo_scratch", "finetune": "dmpo_finetune"}[config.mode], "algo": "dmpo", "obs_dim": obs_dim,
               "sources": list(space.sources),
               **({} if space.camera is None else {"camera": {"source": space.camera.source, "stack": list(space.camera.shape)}}),
               "config": config.to_dict()}
        (out / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False))
        evaluate = lambda act: evaluate_residual(env, act, config.eval_episodes, EVAL_SEED_BASE)  # noqa: E731
        encoder = _encoder(config, base, env)
        image = None if space.camera is None else ImageField(space.camera.frame_shape, space.camera.history)
        head_dim = obs_dim if encoder is None else encoder.out_dim
        learner = train(env, evaluate, config.train, out, np.zeros(head_dim), np.ones(head_dim), resume=resume, progress=progress,
                        policy=policy, options=options, env_factory=functools.partial(worker_env, config, stats),
                        evaluate_episodes=evaluate_residual_episodes, eval_episodes=config.eval_episodes,
                        encoder=encoder, image=image)
    finally:
        task.close()
    process_wall_s = time.monotonic() - start
    result = learner.result
    # wall_s (from the loop's result): its wall time over every process of the run (a resumed run adds to it);
    # process_wall_s: this process alone, base statistics included
    summary = {"task": config.task, "base": config.base, "target_frames": config.train.frames,
               "process_wall_s": round(process_wall_s, 1), "base_stats_episodes": base_stats_summary,
               "learner_steps": learner.steps, "mode": config.mode, **result.summary()}
    if not result.finished:
        # stopped by --max-wall-s: no export and no held-out comparison of a half-trained policy (`rrl export RUN`
        # still exports the last checkpoint); the same command continues and then does both
        summary["resume"] = (f"stopped by the wall clock at {result.frames} of {config.train.frames} frames; "
                             "the same command continues from the last checkpoint")
    elif config.mode == "residual":
        artifact = export_run(out, out / "artifact", overwrite=True)
        summary["artifact"] = str(artifact.path)
        summary.update(compare_on_held_out(config.task, config.base, str(artifact.path), config.final_eval_episodes, progress))
        update_metrics(artifact.path, {"success_rate": summary["residual"]["success_rate"], "episodes": summary["residual"]["episodes"],
                                       "mean_steps_success": summary["residual"]["mean_steps_success"], "eval_seed": EVAL_SEED_BASE,
                                       "base_success_rate": summary["base_only"]["success_rate"], "frames": result.frames,
                                       "train_wall_s": summary["wall_s"]})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def compare_on_held_out(task_name: str, base: str, residual_dir: str, episodes: int, progress: bool = True) -> dict:
    """Base alone vs base + residual through the runtime on held-out seeds (what `rrl eval` runs)."""
    from policies.runtime import camera_for_artifacts, load_policy
    from sim_bridge import make_task
    from training.evaluation import evaluate

    task = make_task(task_name, camera=camera_for_artifacts(base, residual_dir))
    try:
        out = {}
        for key, residual in (("base_only", None), ("residual", residual_dir)):
            t = time.monotonic()
            result = evaluate(task, load_policy(task.spec, base, residual), episodes, EVAL_SEED_BASE, progress=progress)
            out[key] = {**result.summary(), "seed": EVAL_SEED_BASE, "wall_s": round(time.monotonic() - t, 1)}
        return out
    finally:
        task.close()


def export_run(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False, base_name: str | None = None):
    """The `rrl export` hook for `residual` runs: the latest checkpoint's policy -> a `residual` artifact.

    The artifact names its base as trained (`waypoint[:VARIANT]`, or the base artifact's directory
    name); `base_name` overrides that when the base artifact is shipped under another name.
    """
    from sim_bridge import make_task
    from training.export import git_commit

    run_dir = Path(run_dir)
    run = yaml.safe_load((run_dir / "run.yaml").read_text())
    if run.get("kind") != "residual":
        raise ValueError(f"{run_dir} is a {run.get('kind')!r} run; only residual runs export a residual artifact")
    config = ResidualRunConfig.from_dict(run["config"])
    stats = _stats_from_json(json.loads((run_dir / "stats.json").read_text())["stats"])
    task = make_task(config.task)
    try:
        spec = task.spec
    finally:
        task.close()
    space = ResidualSpace(spec, tuple(run["sources"]), stats, residual_scale=config.residual_scale)
    learner = make_agent(run["obs_dim"], spec.action.size, config.train)
    found = read_checkpoint(checkpoint_store(run_dir))
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet; train longer")
    _, state, replay = found
    learner.load_state_dict(state["learner"])
    observations = replay["data/obs"]
    rng = np.random.default_rng(0)
    samples = observations[rng.choice(len(observations), size=min(512, len(observations)), replace=False)]
    provenance = {"training_config": config.to_dict(), "run": str(run_dir), "frames": state["frames"],
                  "learner_steps": state["learner"]["steps"], "git_commit_at_export": git_commit()}
    if base_name is None:
        base_name = config.base if is_waypoint(config.base) else Path(config.base).name
    artifact = export_residual(learner.policy, space, samples, base_name, out_dir, provenance, metrics={}, overwrite=overwrite)
    check_composed_parity(config, space, learner.policy, artifact.path)
    return artifact


def export_finetune(run_dir: str | Path, out_dir: str | Path, overwrite: bool = False):
    """The `rrl export` hook for `dmpo_finetune` runs: the fine-tuned policy as a `bc` artifact (algo `dmpo`).

    A fine-tuning policy is the BC network with another output layer (and, end to end, another ResNet): the
    BC run's best weights (or, once that run is gone, the base artifact's own graph: `residual.bc_weights`) with
    the head's rows for the action at t replaced by the learner's mean layer (the target encoder's ResNet when
    the encoder was trained, as the actors ran it), exported with the base
    artifact's inputs, camera and statistics. So `rrl eval`, the ROS node and the generalisation bench run it as
    any BC base: the runtime's u = μ(A) + σ(A)∘out with the gripper at out > 0 is the fine-tuning action map
    (`ResidualSpace(mode="finetune")`). Parity-checked against the learner through the composed policy.
    """
    from policies.artifact import load_artifact
    from training.bc.network import BCNet, ExportWrapper, fuse_batchnorm
    from training.dmpo.residual import bc_weights
    from training.export import export_artifact, git_commit

    run_dir = Path(run_dir)
    run = yaml.safe_load((run_dir / "run.yaml").read_text())
    if run.get("kind") != "dmpo_finetune":
        raise ValueError(f"{run_dir} is a {run.get('kind')!r} run, not a fine-tuning run")
    config = ResidualRunConfig.from_dict(run["config"])
    base = load_artifact(config.base)
    found = read_checkpoint(checkpoint_store(run_dir))
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet; train longer")
    _, state, _ = found
    learner = state["learner"]
    image = next((i for i in base.inputs if i.is_image), None)
    scalar = next((i for i in base.inputs if not i.is_image), None)
    a = base.action.size
    net = BCNet(a, image_channels=int(image.shape[1]) if image else 0, scalar_dim=int(scalar.shape[1]) if scalar else 0)
    weights, folded = bc_weights(base)  # folded: read from the base artifact's graph (its run is gone)
    if folded:
        net = fuse_batchnorm(net)
    net.load_state_dict(weights)
    if config.finetune_encoder:
        resnet = {k[len("resnet."):]: v for k, v in learner["target_encoder"].items() if k.startswith("resnet.")}
        net.encoder.load_state_dict(resnet)
    policy = learner["policy"]
    std = policy["normalizer.std"]
    weight = policy["mean_head.weight"] / std  # fold the policy's input normalisation into the layer
    bias = policy["mean_head.bias"] - weight @ policy["normalizer.mean"]
    with torch.no_grad():
        net.head.weight[:a] = weight
        net.head.bias[:a] = bias
    net.eval()
    wrapper = ExportWrapper(fuse_batchnorm(net) if image and not folded else net,
                            torch.as_tensor(base.action.binary_mask())).eval()
    rng = np.random.default_rng(0)
    samples = {i.name: (rng.random((16, *i.shape[1:])) if i.is_image else rng.normal(size=(16, *i.shape[1:]))).astype(np.float32)
               for i in base.inputs}
    provenance = {"fine_tuned_from": str(config.base), "training_config": config.to_dict(), "run": str(run_dir),
                  "frames": state["frames"], "learner_steps": learner["steps"], "git_commit_at_export": git_commit()}
    import dataclasses

    description = dataclasses.replace(base, algo="dmpo", metrics={}, provenance=provenance, path=None)
    artifact = export_artifact(wrapper, samples, description, out_dir, overwrite=overwrite)
    _check_finetune_parity(config, run_dir, learner, artifact.path)
    return artifact


def largest_command_difference(task, runtime, reference, seed: int, steps: int) -> float:
    """max |runtime command - reference command| over the first `steps` steps of episode `seed`, both acting on the
    runtime's own trajectory (two separate rollouts would amplify float differences through contacts)."""
    obs = task.reset(seed)
    runtime.reset(seed)
    reference.reset(seed)
    worst = 0.0
    for _ in range(steps):
        command = runtime.act(obs)
        worst = max(worst, float(np.max(np.abs(command - reference.act(obs)))))
        step = task.step(command)
        obs = step.obs
        if step.terminated or step.truncated:
            break
    return worst


def _check_finetune_parity(config: ResidualRunConfig, run_dir: Path, learner_state: dict, artifact_dir: Path,
                           seed: int = EVAL_SEED_BASE, steps: int = 20, atol: float = 2e-3) -> float:
    """The exported fine-tuned policy through the runtime commands what the learner's policy commands through the
    fine-tuning composition, step by step on the runtime's trajectory (the learner reads frames at the replay's
    float16 precision, hence the tolerance); returns the largest difference, or raises `ArtifactError`."""
    from policies.artifact import ArtifactError
    from policies.runtime import load_policy
    from training.dmpo.networks import EncodedPolicy
    from training.dmpo.residual import LearnerResidual
    from training.dmpo.train import DMPOActor

    stats = _stats_from_json(json.loads((run_dir / "stats.json").read_text())["stats"])
    task, base = _make(config)
    try:  # the run's own environment and networks, with the checkpoint's weights
        space = _space(config, task, base, stats)
        env, policy = _env_and_policy(config, task, base, space)
        policy.load_state_dict(learner_state["policy"])
        env.reset(seed)
        encoder = _encoder(config, base, env)
        if encoder is not None:
            encoder.load_state_dict(learner_state["target_encoder"])
            policy = EncodedPolicy(encoder.eval(), policy)
        reference = space.policy(env.base, LearnerResidual(DMPOActor(policy, generator=None).mean, space))
        runtime = load_policy(task.spec, str(artifact_dir))
        worst = largest_command_difference(task, runtime, reference, seed, steps)
    finally:
        task.close()
    if worst > atol:
        raise ArtifactError(f"{artifact_dir}: the exported fine-tuned policy commands differ from the learner's by "
                            f"{worst:.2e} (> {atol:g}) through the composed policy")
    return worst


def check_composed_parity(config: ResidualRunConfig, space: ResidualSpace, policy: torch.nn.Module, artifact_dir: Path,
                          seed: int = EVAL_SEED_BASE, steps: int = 20, atol: float = 1e-4) -> float:
    """The exported residual through the runtime's composed policy (what `rrl eval` and the ROS node run)
    commands what the trained policy commands through the same path, step by step on the runtime's own
    trajectory; a mismatch beyond `atol` is an `ArtifactError`. Returns the largest difference."""
    from policies.artifact import ArtifactError
    from policies.runtime import camera_for_artifacts, load_policy
    from sim_bridge import make_task
    from training.dmpo.residual import LearnerResidual
    from training.dmpo.train import DMPOActor

    mean = DMPOActor(policy, generator=None).mean
    task = make_task(config.task, camera=camera_for_artifacts(config.base, artifact_dir))
    try:
        runtime = load_policy(task.spec, config.base, artifact_dir)
        reference = space.policy(load_policy(task.spec, config.base).base, LearnerResidual(mean, space))
        worst = largest_command_difference(task, runtime, reference, seed, steps)
    finally:
        task.close()
    if worst > atol:
        raise ArtifactError(f"{artifact_dir}: the exported residual commands differ from the trained policy's by "
                            f"{worst:.2e} (> {atol:g}) through the composed policy")
    return worst
