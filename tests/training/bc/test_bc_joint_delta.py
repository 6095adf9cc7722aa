"""BC with joint-offset targets (`action_targets: joint_delta`, the Adroit hand): the exported artifact's action is
absolute (the graph adds the measured joints back) and equals torch's q + offset; on held-out states it places the
joints the expert holds far closer than a run on absolute targets does; it is refused where the actions are not
joint targets or the input has no joints. Real adroit_relocate expert demos, state only."""

import json

import numpy as np
import pytest
import torch

from policies.runtime import ArtifactModel, BCPolicy
from rrl.cli import main as rrl
from sim_bridge import make_task
from training.bc.train import (BCConfig, Batches, build_net, export_run, joint_index, load_dataset, target_stats,
                               train)
from training.harness import RunOptions

CPU = RunOptions(device="cpu", progress=False)


@pytest.fixture(scope="module")
def relocate_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("relocate") / "demos"
    assert rrl(["record", "--task", "adroit_relocate", "--source", "expert", "--episodes", "16", "--camera-px", "0",
                "--out", str(out), "--json"]) == 0
    return out


def config(demos, **kw) -> BCConfig:
    return BCConfig(**{"task": "adroit_relocate", "demos": (str(demos),), "obs": "state", "val_fraction": 0.25,
                       "epochs": 8, **kw})


def val_states_and_actions(demos):
    dataset = load_dataset(config(demos), progress=False)
    batch = dataset.batch("val", np.arange(dataset.size("val")))
    return batch["state"], batch["action"]


def artifact_actions(art, states) -> np.ndarray:
    with make_task("adroit_relocate") as task:
        policy = BCPolicy(ArtifactModel.load(art, task.spec))
        return np.stack([policy.step({"state": s}).action for s in states])


@pytest.mark.timeout(600)
def test_joint_delta_artifact_is_absolute_and_places_held_joints_better(relocate_demos, tmp_path):
    runs = {}
    for targets in ("absolute", "joint_delta"):
        cfg = config(relocate_demos, action_targets=targets, select_on="loss_t")
        train(cfg, tmp_path / targets, options=CPU)
        export_run(tmp_path / targets, tmp_path / f"{targets}_art")
        runs[targets] = cfg
    states, actions = val_states_and_actions(relocate_demos)

    # the joint_delta graph: normalised input -> q + offset, as torch computes it from the run's best epoch
    cfg = runs["joint_delta"]
    dataset = load_dataset(cfg, progress=False)
    net = build_net(cfg, dataset)
    net.load_state_dict(torch.load(tmp_path / "joint_delta" / "best.pt", weights_only=False)["model"])
    net.eval()
    batch = dataset.batch("val", np.arange(dataset.size("val")))
    _, scalars, _ = Batches(dataset, cfg).tensors(batch, augment=False)
    with torch.no_grad():
        offset = net(None, scalars)[0][:, 0].numpy()
    d_mean, d_std = target_stats(cfg, dataset)
    expected = batch["state"][:, joint_index(cfg, dataset)] + d_mean[0] + d_std[0] * offset
    got = {t: artifact_actions(tmp_path / f"{t}_art", states) for t in runs}
    np.testing.assert_allclose(got["joint_delta"], expected, atol=1e-4)

    # the arm's slides and rotations (the first 6 dims): the expert moves them by millimetres per step and
    # holds some still; an absolute regression misses them by far more than the step
    err = {t: np.abs(got[t] - actions)[:, :6].mean() for t in runs}
    assert err["joint_delta"] < 0.5 * err["absolute"], err


def test_joint_delta_is_refused_without_joint_targets_or_joints(relocate_demos, tmp_path):
    with pytest.raises(ValueError, match="needs the measured joint positions"):
        config(relocate_demos, obs="rgb", action_targets="joint_delta")
    ur5 = tmp_path / "ur5"
    assert rrl(["record", "--task", "ur5_pick", "--source", "expert", "--episodes", "2", "--camera-px", "0",
                "--out", str(ur5), "--json"]) == 0
    with pytest.raises(ValueError, match="not joint-position targets"):
        load_dataset(BCConfig(task="ur5_pick", demos=(str(ur5),), obs="state", action_targets="joint_delta"),
                     progress=False)


def test_joint_delta_flags_reach_the_run(relocate_demos, tmp_path, capsys):
    out = tmp_path / "run"
    assert rrl(["train", "bc", "--task", "adroit_relocate", "--demos", str(relocate_demos), "--obs", "state",
                "--action-targets", "joint_delta", "--select-on", "loss_t", "--input-std-min", "0.001",
                "--epochs", "1", "--device", "cpu", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["finished"]
    recorded = (out / "config.yaml").read_text()
    assert "action_targets: joint_delta" in recorded and "select_on: loss_t" in recorded and "input_std_min: 0.001" in recorded
