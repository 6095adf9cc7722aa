"""DMPO must learn: a short run on a 2-D point-mass reach with a sparse reward, and resuming a run."""

import csv

import numpy as np
import pytest
import torch

from training.dmpo.learner import Batch, DMPOConfig
from training.dmpo.train import TrainConfig, make_agent, train

from .point_mass import PointMassReach, evaluate_point_mass

# Small networks and looser trust regions than Acme's defaults, so that a 4k-frame run learns.
TINY = DMPOConfig(
    policy_hidden=(64, 64), critic_hidden=(64, 64), init_std=0.5, init_log_temperature=1.0, init_log_alpha_mean=1.0,
    init_log_alpha_std=10.0, target_update_period=50, epsilon_mean=0.01, epsilon_std=1e-4, policy_lr=1e-3, critic_lr=1e-3,
)


def config(frames, **kw):
    return TrainConfig(
        frames=frames, batch_size=64, min_replay=300, frames_per_update=1, eval_every_frames=1000, gamma=0.95, learner=TINY, **kw
    )


def read_eval(run):
    with open(run / "eval.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.timeout(600)
def test_short_dmpo_run_learns_point_mass_reach(tmp_path):
    train(PointMassReach(), evaluate_point_mass, config(4000), tmp_path, np.zeros(4), np.full(4, 0.6), progress=False)
    rows = read_eval(tmp_path)
    first, last = float(rows[0]["success_rate"]), float(rows[-1]["success_rate"])
    assert first <= 0.2, rows
    assert last >= 0.7, rows  # typically 0.9-1.0 after 3k frames
    assert (tmp_path / "tb").is_dir() and (tmp_path / "checkpoint" / "replay.npz").exists()


def test_run_resumes_from_its_checkpoint(tmp_path):
    train(PointMassReach(), evaluate_point_mass, config(700, checkpoint_every_frames=400), tmp_path, np.zeros(4), np.ones(4), progress=False)
    state = torch.load(tmp_path / "checkpoint" / "learner.pt", weights_only=False)
    assert state["frames"] >= 700 and state["learner"]["steps"] > 0
    learner = train(PointMassReach(), evaluate_point_mass, config(1200), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)
    # the resumed run starts from the saved counters: it only adds the missing frames' updates
    assert learner.steps == pytest.approx(state["learner"]["steps"] + (1200 - state["frames"]), abs=30)
    frames = [int(r["frames"]) for r in read_eval(tmp_path)]
    assert frames[-1] >= 1200 and frames == sorted(set(frames))  # no evaluation repeated after resuming


def test_critic_update_reduces_td_loss_on_a_fixed_batch():
    learner = make_agent(3, 2, TrainConfig(learner=TINY))
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(128, 3, generator=g), torch.randn(128, 2, generator=g), (torch.rand(128, generator=g) > 0.5).float(),
                  torch.zeros(128), torch.randn(128, 3, generator=g))
    first = learner.update(batch)["critic_loss"]
    for _ in range(200):
        last = learner.update(batch)["critic_loss"]
    assert last < 0.5 * first
