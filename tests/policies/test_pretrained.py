"""Every shipped artifact under policies/pretrained/ loads against its task (sha256, ONNX graph, task spec),
records its measured success, and acts on a real observation of its task with a finite action within the limits.
A residual artifact acts on top of the base it was trained on (shipped beside it, or the waypoint expert)."""

from pathlib import Path

import numpy as np
import pytest

from policies.artifact import load_artifact
from policies.runtime import camera_for_artifacts, load_policy
from sim_bridge import make_task

PRETRAINED = Path(__file__).resolve().parents[2] / "policies" / "pretrained"
ARTIFACTS = sorted(p.parent for p in PRETRAINED.glob("*/policy.yaml"))


@pytest.mark.parametrize("directory", ARTIFACTS, ids=[p.name for p in ARTIFACTS])
def test_shipped_artifact_is_valid_and_acts(directory):
    header = load_artifact(directory, check_graph=False)
    if header.kind == "residual":
        base = header.base if header.base.startswith("waypoint") else str(PRETRAINED / header.base)
        residual = str(directory)
    else:
        base, residual = str(directory), None
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
        assert policy.last_base.features is not None and policy.last_base.features.shape == (256,)


def test_pretrained_artifacts_are_shipped():
    assert {p.name for p in ARTIFACTS} >= {"bc_ur5_pick", "bc_ur5_bowl", "bc_ur5_push"}
