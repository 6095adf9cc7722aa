"""DMPO must learn: a short run on a 2-D point-mass reach with a sparse reward; resuming a run from its
checkpoint unit (also after a kill inside a checkpoint, a full disk, or with the newest one damaged);
training episodes drawn from the run seed's own range, never the held-out one."""


import numpy as np
import pytest
import torch
import yaml

from training import seeds
from training.checkpoint import CheckpointError
from training.dmpo.learner import Batch, DMPOConfig
from training.harness import read_eval_log
from training.dmpo.train import TrainConfig, checkpoint_store, make_agent, read_checkpoint, train
from training.output import OutputError
from training.replay import state_counters

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
    return read_eval_log(run)


@pytest.mark.timeout(600)
def test_short_dmpo_run_learns_point_mass_reach(tmp_path):
    train(PointMassReach(), evaluate_point_mass, config(4000), tmp_path, np.zeros(4), np.full(4, 0.6), progress=False)
    rows = read_eval(tmp_path)
    first, last = float(rows[0]["success_rate"]), float(rows[-1]["success_rate"])
    assert first <= 0.2, rows
    assert last >= 0.7, rows  # typically 0.9-1.0 after 3k frames
    assert (tmp_path / "tb").is_dir() and read_checkpoint(checkpoint_store(tmp_path)) is not None


def test_run_resumes_from_its_checkpoint(tmp_path):
    train(PointMassReach(), evaluate_point_mass, config(700, checkpoint_every_frames=400), tmp_path, np.zeros(4), np.ones(4), progress=False)
    _, state, _ = read_checkpoint(checkpoint_store(tmp_path))
    assert state["frames"] >= 700 and state["learner"]["steps"] > 0
    # as a run of an earlier version, without fields added since (here at their defaults): still resumable
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["config"]["learner"]["grad_clip_norm"], saved["config"]["torch_threads"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    learner = train(PointMassReach(), evaluate_point_mass, config(1200), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)
    # the resumed run starts from the saved counters: it only adds the missing frames' updates
    assert learner.steps == pytest.approx(state["learner"]["steps"] + (1200 - state["frames"]), abs=30)
    frames = [int(r["frames"]) for r in read_eval(tmp_path)]
    assert frames[-1] >= 1200 and frames == sorted(set(frames))  # no evaluation repeated after resuming


def test_a_finished_run_extended_on_resume_does_not_repeat_its_last_evaluation(tmp_path):
    """The run ends past an evaluation point (its final evaluation is the loop's last); extended with a larger
    --frames it goes on to the next point without evaluating the same frame count again."""
    train(PointMassReach(), evaluate_point_mass, config(1000), tmp_path, np.zeros(4), np.ones(4), progress=False)
    first = [int(r["frames"]) for r in read_eval(tmp_path)]
    assert first[-1] >= 1000
    train(PointMassReach(), evaluate_point_mass, config(2100), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)
    frames = [int(r["frames"]) for r in read_eval(tmp_path)]
    assert frames[:len(first)] == first and frames == sorted(set(frames)) and frames[-1] >= 2100, frames


def test_critic_update_reduces_td_loss_on_a_fixed_batch():
    learner = make_agent(3, 2, TrainConfig(learner=TINY))
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(128, 3, generator=g), torch.randn(128, 2, generator=g), (torch.rand(128, generator=g) > 0.5).float(),
                  torch.zeros(128), torch.randn(128, 3, generator=g))
    first = learner.update(batch)["critic_loss"]
    for _ in range(200):
        last = learner.update(batch)["critic_loss"]
    assert last < 0.5 * first


def quick(frames, **kw):
    return TrainConfig(frames=frames, batch_size=32, min_replay=100, frames_per_update=4, eval_every_frames=10_000,
                       checkpoint_every_frames=200, learner=TINY, **kw)


def no_eval(act):
    return {"episodes": 0, "success_rate": 0.0, "mean_steps_success": None}


def assert_one_checkpoint(run):
    """The newest checkpoint's replay holds exactly the steps of the frames its learner counts."""
    ckpt, state, replay = read_checkpoint(checkpoint_store(run))
    assert state_counters(replay)["steps"] == state["frames"] == ckpt.step
    return state


class Killed(BaseException):
    """What a SIGKILL would do to the process at that point (nothing after it runs)."""


def test_a_kill_inside_a_checkpoint_resumes_from_a_matching_pair(tmp_path, monkeypatch):
    """Killed while writing the learner of the second checkpoint (its replay already written): the resumed run
    continues from the first checkpoint's learner *and* replay, so its final checkpoint is still one pair."""
    train(PointMassReach(), no_eval, quick(200), tmp_path, np.zeros(4), np.ones(4), progress=False)
    real_save = torch.save

    def killed_on_the_learner(obj, f, *a, **kw):
        if isinstance(obj, dict) and "learner" in obj:
            raise Killed
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", killed_on_the_learner)
    with pytest.raises(Killed):
        train(PointMassReach(), no_eval, quick(400), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert assert_one_checkpoint(tmp_path)["frames"] < 400
    train(PointMassReach(), no_eval, quick(400), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)
    assert assert_one_checkpoint(tmp_path)["frames"] >= 400


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    train(PointMassReach(), no_eval, quick(450), tmp_path, np.zeros(4), np.ones(4), progress=False)
    newest, state, _ = read_checkpoint(checkpoint_store(tmp_path))
    data = bytearray((newest.path / "replay.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (newest.path / "replay.npz").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=rf"{newest.path.name}/replay.npz: sha256 .* resuming from"):
        previous, older, _ = read_checkpoint(checkpoint_store(tmp_path))
    assert older["frames"] < state["frames"]
    (previous.path / "learner.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint can be resumed from"):
        train(PointMassReach(), no_eval, quick(600), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)


def test_a_run_in_the_previous_layout_is_refused(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    torch.save({"frames": 10}, tmp_path / "checkpoint" / "learner.pt")
    with pytest.raises(CheckpointError, match=r"previous layout.*start a new run"):
        train(PointMassReach(), no_eval, quick(100), tmp_path, np.zeros(4), np.ones(4), resume=True, progress=False)


def test_full_disk_stops_with_one_clear_error_and_the_run_resumes_afterwards(tmp_path, mounts):
    disk = mounts.disk(2048)
    run = disk / "run"
    train(PointMassReach(), no_eval, quick(200), run, np.zeros(4), np.ones(4), progress=False)
    first = assert_one_checkpoint(run)["frames"]
    ballast = mounts.fill(disk, 48 * 1024)  # room for logs, not for another checkpoint
    with pytest.raises(OutputError) as error:
        train(PointMassReach(), no_eval, quick(400), run, np.zeros(4), np.ones(4), resume=True, progress=False)
    assert "no space left on device" in str(error.value) and str(run / "checkpoints") in str(error.value)
    assert "unexpected pos" not in str(error.value)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")], "temporary files left behind"
    assert assert_one_checkpoint(run)["frames"] == first  # the earlier checkpoint is intact
    ballast.unlink()
    train(PointMassReach(), no_eval, quick(400), run, np.zeros(4), np.ones(4), resume=True, progress=False)
    assert assert_one_checkpoint(run)["frames"] >= 400


class SeedLog(PointMassReach):
    def __init__(self):
        super().__init__(horizon=10)
        self.seeds = []

    def reset(self, seed):
        self.seeds.append(seed)
        return super().reset(seed)


@pytest.mark.parametrize("run_seed", [0, 1])
def test_training_episodes_come_from_the_run_seeds_range_never_the_held_out_one(tmp_path, run_seed):
    env = SeedLog()
    train(env, no_eval, quick(60, seed=run_seed), tmp_path, np.zeros(4), np.ones(4), progress=False)
    assert env.seeds == [seeds.training_episode_seed(run_seed, i) for i in range(len(env.seeds))]
    assert not any(s in seeds.EVALUATION for s in env.seeds), env.seeds[:3]
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 1000\)"):
        TrainConfig(seed=-1)
