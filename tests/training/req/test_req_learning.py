"""REQ learns: a short REQfSE run on a tiny task beats its too-timid expert; checkpoints resume.

The task (`point_task.PointReach`) is built in-test: 2-D reaching with sparse reward, an expert
P-controller with too low a gain (about half of the goals are reached in time).
"""

import json

import numpy as np
import pytest

from point_task import PointReach
from training.req.learner import REQConfig
from training.req.train import TrainConfig, evaluate_expert, evaluate_learner, load_learner, train

FAST = REQConfig(hidden=(64, 64), batch_size=64, num_samples=20, temperature_steps=20, n_step=3,
                 learning_rate=1e-3, target_update_period=50, epsilon_mean=0.05)


def _config(frames: int, **kw) -> TrainConfig:
    return TrainConfig(task="point_reach", mode="rlfse", frames=frames, min_replay_steps=300, updates_per_step=1.0,
                       eval_every_frames=1000, eval_episodes=20, checkpoint_every_frames=500, learner=FAST, **kw)


@pytest.mark.timeout(900)  # ~40 s on an idle 2-core machine; generous for a loaded one
def test_short_reqfse_run_beats_the_expert(tmp_path):
    expert = evaluate_expert(PointReach(), 200)["success_rate"]
    assert 0.3 < expert < 0.7
    train(_config(5000), tmp_path, env_factory=lambda c: PointReach(), progress=False)
    _, learner = load_learner(tmp_path)
    learned = evaluate_learner(PointReach(), learner, 200, acting="prior")["success_rate"]
    assert learned >= expert + 0.15, f"REQ prior {learned:.2f} vs expert {expert:.2f}"
    # the importance-sampled policy acts too (it is stochastic in Q's errors; only ask it to be sane)
    assert evaluate_learner(PointReach(), learner, 50, acting="importance")["success_rate"] > 0.2


def test_resume_continues_from_the_checkpoint(tmp_path):
    first = train(_config(600), tmp_path, env_factory=lambda c: PointReach(), progress=False, max_wall_s=0.0)
    assert not first["finished"] and (tmp_path / "checkpoint.pt").exists()
    # an evaluation a killed process wrote after its last checkpoint belongs to a lost branch of the run
    with open(tmp_path / "eval.jsonl", "a") as f:
        f.write(json.dumps({"frames": 550, "success_rate": 1.0, "wall_s": 9.9, "updates": 250}) + "\n")
    done = train(_config(600), tmp_path, env_factory=lambda c: PointReach(), progress=False)
    assert done["finished"] and done["frames"] >= 600 and done["episodes"] > first["episodes"]
    evals = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert [e["frames"] for e in evals] == sorted(e["frames"] for e in evals)
    assert evals == done["history"] and all(e["wall_s"] != 9.9 for e in evals)
    with pytest.raises(ValueError, match="different config"):
        train(_config(900), tmp_path, env_factory=lambda c: PointReach(), progress=False)


def test_a_checkpoint_newer_than_final_wins(tmp_path):
    # stopped by the wall clock (final.pt written), resumed, then killed: the checkpoint is the later learner
    train(_config(600), tmp_path, env_factory=lambda c: PointReach(), progress=False, max_wall_s=0.0)
    stale = (tmp_path / "final.pt").read_bytes()
    done = train(_config(600), tmp_path, env_factory=lambda c: PointReach(), progress=False)
    (tmp_path / "final.pt").write_bytes(stale)  # as if the resumed process died before writing its own
    _, learner = load_learner(tmp_path)
    assert learner.num_updates == done["updates"] > 0
    (tmp_path / "checkpoint.pt").unlink()
    _, learner = load_learner(tmp_path)
    assert learner.num_updates < done["updates"]
