"""Every shipped artifact under policies/pretrained/ loads against its task (sha256, ONNX graph, task spec),
records its measured success, and acts on a real observation of its task with a finite action within the limits.
A residual artifact acts on top of the base it was trained on (shipped beside it, or the waypoint expert)."""

import math
from pathlib import Path

import numpy as np
import pytest

from policies.artifact import load_artifact
from policies.runtime import camera_for_artifacts, load_policy
from sim_bridge import make_task

PRETRAINED = Path(__file__).resolve().parents[2] / "policies" / "pretrained"
ARTIFACTS = sorted(p.parent for p in PRETRAINED.glob("*/policy.yaml"))


def base_and_residual(directory: Path, header) -> tuple[str, str | None]:
    """A residual acts on the base it was trained on (shipped beside it, or the waypoint expert)."""
    if header.kind != "residual":
        return str(directory), None
    base = header.base if header.base.startswith("waypoint") else str(PRETRAINED / header.base)
    return base, str(directory)


@pytest.mark.parametrize("directory", ARTIFACTS, ids=[p.name for p in ARTIFACTS])
def test_shipped_artifact_is_valid_and_acts(directory):
    header = load_artifact(directory, check_graph=False)
    base, residual = base_and_residual(directory, header)
    with make_task(header.task, camera=camera_for_artifacts(base, residual)) as task:
        artifact = load_artifact(directory, task.spec)
        assert {"success_rate", "episodes"} <= set(artifact.metrics), "measured success missing from policy.yaml"
        assert artifact.metrics["episodes"] >= 100
        policy = load_policy(task.spec, base, residual)
        obs = task.reset(1_000_000)
        policy.reset(1_000_000)
        for _ in range(3):
            action = policy.act(obs)
            assert np.all(np.isfinite(action))
            assert np.all(action >= np.array(task.spec.action_low)) and np.all(action <= np.array(task.spec.action_high))
            obs = task.step(action).obs
        base_kind = load_artifact(base, check_graph=False).kind if not base.startswith("waypoint") else "waypoint"
        if base_kind == "bc":  # a BC base also hands the residual its 256-d bottleneck features
            assert policy.last_base.features is not None and policy.last_base.features.shape == (256,)


def test_every_shipped_policy_yaml_is_sealed_and_matches_its_model():
    """Also the nested ones (a REQ prior's `q/`), which no test acts with; sealed with `python -m policies.artifact reseal`."""
    nested = sorted(p.parent for p in PRETRAINED.glob("**/policy.yaml"))
    assert len(nested) > len(ARTIFACTS)
    for directory in nested:
        load_artifact(directory)


DEPTH_RESIDUALS = ("residual_dmpo_ur5_pick_depth", "residual_dmpo_ur5_pick_depth_early", "residual_dmpo_ur5_bowl_depth",
                   "residual_dmpo_ur5_push_depth")
"""Residuals on a shipped depth BC base (RRLfD's setting)."""


DEPTH_BASES = ("bc_ur5_pick", "bc_ur5_pick_depth_early", "bc_ur5_bowl_depth", "bc_ur5_push_depth")
"""The depth-image BC bases of the three UR5 tasks (RRLfD's bases: 3 depth frames + proprio, ResNet-18-half); pick
has two strengths (60 demos, 15 epochs: 72 %; 120 demos stopped after 6 epochs: 55 %)."""


def test_pretrained_artifacts_are_shipped():
    assert {p.name for p in ARTIFACTS} >= {"bc_ur5_pick", "bc_ur5_bowl", "bc_ur5_push", *DEPTH_BASES, *DEPTH_RESIDUALS}


@pytest.mark.parametrize("name", DEPTH_BASES)
def test_depth_base_is_an_image_bc_in_the_band(name):
    """Each UR5 task has a depth BC base whose recorded success (100 held-out seeds) leaves a residual room to
    improve and is not a failure: the 30-80 % band."""
    header = load_artifact(PRETRAINED / name, check_graph=False)
    assert header.kind == "bc" and header.has_output("features")
    assert header.camera is not None and header.camera.modality == "depth"
    assert header.metrics["episodes"] >= 100 and 0.30 <= header.metrics["success_rate"] <= 0.80


@pytest.mark.parametrize("name", DEPTH_RESIDUALS)
def test_depth_residual_sits_on_the_shipped_depth_base(name):
    """RRLfD's setting: the residual reads the depth BC's bottleneck features, so its base must be the image
    network shipped beside it, and the recorded comparison must be on the same seeds as its base's."""
    header = load_artifact(PRETRAINED / name, check_graph=False)
    base = load_artifact(PRETRAINED / header.base, check_graph=False)
    assert header.kind == "residual" and base.kind == "bc" and base.has_output("features")
    assert "features" in header.inputs[0].sources and base.camera is not None and base.camera.modality == "depth"
    assert header.metrics["success_rate"] >= header.metrics["base_success_rate"]


GUARD_EPISODES = 10


@pytest.mark.parametrize("directory", ARTIFACTS, ids=[p.name for p in ARTIFACTS])
def test_shipped_artifact_still_reaches_its_recorded_success(directory):
    """A simulator change can silently break a shipped policy (it happened once: a depth BC fell from 38% to 0%
    after a camera and IK change). The first held-out seeds are deterministic, so this catches a collapse:
    at least half the recorded success rate over the first 10 evaluation seeds. The episodes run in seed order
    and stop as soon as the verdict is settled (enough successes, or too few seeds left to reach them)."""
    from training.evaluation import EVAL_SEED_BASE, run_episode

    header = load_artifact(directory, check_graph=False)
    base, residual = base_and_residual(directory, header)
    recorded = header.metrics["success_rate"]
    needed = math.ceil(0.5 * recorded * GUARD_EPISODES - 1e-9)
    successes, seeds = 0, []
    with make_task(header.task, camera=camera_for_artifacts(base, residual)) as task:
        policy = load_policy(task.spec, base, residual)
        for i in range(GUARD_EPISODES):
            if successes >= needed or successes + GUARD_EPISODES - i < needed:
                break
            episode = run_episode(task, policy, EVAL_SEED_BASE + i)
            successes += episode.success
            seeds.append((episode.seed, episode.success))
    assert successes >= needed, (
        f"{directory.name}: {successes} successes over the first {GUARD_EPISODES} held-out seeds ({seeds}), "
        f"recorded {recorded:.2f} needs {needed}; retrain and re-measure it on the current simulator")
