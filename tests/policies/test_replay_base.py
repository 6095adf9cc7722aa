"""The replay base (policies.replay, `replay:BAG_DIR`): a recorded demo replayed through the one policy path.

The bag is recorded once per module with the real `rrl record` (noisy expert, so its actions are not
what the plain waypoint expert would do: a replay that ran the expert instead would fail the
action-by-action comparison). Real PyBullet, real MCAP files read by the project's bag reader.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies.base_spec import BaseSpecError, parse_base, parse_node_base
from policies.replay import ReplayBagError, ReplayBase, ReplayError
from policies.runtime import load_base, load_policy
from sim_bridge import make_task
from training.demos.bag import BagError
from training.demos.dataset import DatasetConfig, DemoDataset

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (40, 41)
"""The recorded episodes' seeds (demonstration range)."""


def rrl(command: str, *args: str) -> subprocess.CompletedProcess:
    """One `rrl` subcommand, its module alone (an unrelated command's imports cannot slow or break these tests)."""
    code = (f"import argparse, sys; from rrl.commands import {command} as c; "
            f"p = argparse.ArgumentParser(prog='rrl {command}'); c.add_arguments(p); sys.exit(c.run(p.parse_args()))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "pick"
    rec = rrl("record", "--task", "ur5_pick", "--source", "expert", "--episodes", "2", "--out", str(out),
              "--seed", str(SEEDS[0]), "--camera-px", "0", "--noise-std", "0.005", "--json")
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout.strip().splitlines()[-1])["episodes"] == 2
    return out


@pytest.fixture(scope="module")
def recorded(bag) -> dict:
    """seed -> the training reader's episode (actions, states, outcome): the reference the replay must match."""
    episodes = DemoDataset(bag, DatasetConfig(val_fraction=0.0)).episodes
    assert [e.record.seed for e in episodes] == list(SEEDS)
    return {e.record.seed: e for e in episodes}


@pytest.fixture(scope="module")
def task():
    t = make_task("ur5_pick")
    yield t
    t.close()


def test_rrl_eval_replays_the_recorded_episode(bag, recorded):
    seed = SEEDS[1]
    out = rrl("eval", "--task", "ur5_pick", "--base", f"replay:{bag}", "--seed", str(seed), "--episodes", "1", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert recorded[seed].record.success
    assert report["success_rate"] == 1.0 and report["mean_steps_success"] == recorded[seed].steps, report
    assert report["safety"]["base_errors"] == 0
    assert "overlap demonstration seeds" not in out.stdout  # replaying demo seeds is the point


def test_each_command_is_the_recorded_action_and_the_episode_repeats(bag, recorded, task):
    policy = load_policy(task.spec, f"replay:{bag}")
    for seed, episode in recorded.items():
        obs = task.reset(seed)
        policy.reset(seed)
        commands, states = [], [obs["state"]]
        while True:
            command = policy.act(obs)
            step = task.step(command)
            commands.append(command)
            obs = step.obs
            states.append(obs["state"])
            if step.terminated or step.truncated:
                break
        assert (bool(step.success), len(commands)) == (episode.record.success, episode.steps)
        # the commands are the recorded actions, to the bag's float32 (clipping again changes nothing)
        np.testing.assert_array_equal(np.array(commands).astype(np.float32), episode.action)
        assert policy.base.held_steps == 0 and policy.counters.base_errors == 0
        # the trajectory: /demo/action is Float32, so the commands differ from the float64 ones the expert sent
        # by float32 rounding (<= 6e-9 m/s); the tool follows to 0.04 mm, the grasp contact grows it to ~1 cm
        # on the cube (measured on these two seeds: tool 0.037 mm, cube 9.8 mm)
        replayed, slices = np.array(states, np.float32), task.spec.state.slices()
        np.testing.assert_allclose(replayed[:, slices["tool_pos"]], episode.state[:, slices["tool_pos"]], atol=1e-3)
        np.testing.assert_allclose(replayed[:, slices["cube_pos"]], episode.state[:, slices["cube_pos"]], atol=2e-2)
    # what the plain expert would have done differs (the recording had noise): the replay is not the expert
    expert = load_policy(task.spec, "waypoint")
    obs = task.reset(SEEDS[0])
    expert.reset(SEEDS[0])
    assert not np.allclose(expert.act(obs), recorded[SEEDS[0]].action[0], atol=1e-4)


def test_past_the_recorded_end_the_base_holds_with_the_gripper_kept(bag, recorded, task):
    base = load_base(f"replay:{bag}", task.spec)
    seed = SEEDS[0]
    actions = recorded[seed].action
    base.reset(seed)
    obs = task.reset(seed)
    for t in range(len(actions)):
        np.testing.assert_array_equal(base.step(obs).action, actions[t])
    held = base.step(obs).action
    gripper = task.spec.action.slices()["gripper"]
    np.testing.assert_array_equal(held[:3], 0.0)
    np.testing.assert_array_equal(held[gripper], actions[-1][gripper])
    assert base.held_steps == 1 and base.step(obs).features is None
    base.reset(seed)  # a new episode starts from the first recorded step again
    np.testing.assert_array_equal(base.step(obs).action, actions[0])


def test_an_unknown_seed_is_refused_by_rrl_eval_and_held_in_the_policy_path(bag, task):
    out = rrl("eval", "--task", "ur5_pick", "--base", f"replay:{bag}", "--seed", str(SEEDS[1]), "--episodes", "2",
              "--json")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"no recorded episode with seed {SEEDS[1] + 1}; the bag's seeds are 40, 41" in out.stderr, out.stderr
    # the control node resets at an episode start outside any guard: reset accepts the seed, each step
    # raises, and the composed policy holds the robot, counted as a base error with the reason
    policy = load_policy(task.spec, f"replay:{bag}")
    obs = task.reset(7)
    policy.reset(7)
    tick = policy.step(obs)
    assert tick.reason.startswith("base_error") and "no recorded episode with seed 7" in tick.reason
    np.testing.assert_array_equal(tick.command, 0.0)
    assert policy.counters.base_errors == 1
    with pytest.raises(ReplayError, match="seeds 5, 6; the bag's seeds are 40, 41"):
        policy.base.require_seeds([40, 5, 6])


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing", "does not exist (expected a demonstration bag directory"),
    (lambda tmp: ROOT / "README.md", "is a file, not a bag directory"),
    (lambda tmp: ROOT / "policies" / "pretrained" / "bc_ur5_pick", "has no metadata.yaml, so it is not a rosbag2 bag; "
     "it is a policy artifact"),
    (lambda tmp: "", "no bag directory after 'replay:'"),
])
def test_a_path_that_is_no_bag_is_refused_with_the_reason(tmp_path, make, message):
    with pytest.raises(BaseSpecError, match=message.replace("(", r"\(")):
        parse_base(f"replay:{make(tmp_path)}")


def test_rrl_eval_refuses_a_path_that_is_no_bag_with_exit_2():
    out = rrl("eval", "--task", "ur5_pick", "--base", "replay:README.md", "--episodes", "1", "--json")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "rrl eval: base replay:README.md: README.md is a file, not a bag directory" in out.stderr


def test_a_bag_of_another_task_or_a_foreign_directory_is_refused_on_load(bag, tmp_path):
    with pytest.raises(ReplayError, match="recorded on task ur5_pick, not ur5_bowl"):
        load_base(f"replay:{bag}", make_task("ur5_bowl").spec)  # the spec only; the task is not stepped
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "metadata.yaml").write_text("rosbag2_bagfile_information: {storage_identifier: sqlite3}\n")
    with pytest.raises(ReplayBagError, match="storage_identifier is 'sqlite3'"):
        load_base(f"replay:{foreign}", make_task("ur5_pick").spec)


def test_a_truncated_episode_file_refuses_the_bag_with_the_readers_bag_error(bag, tmp_path, task):
    damaged = tmp_path / "damaged"
    shutil.copytree(bag, damaged)
    victim = sorted(damaged.glob("*.mcap"))[1]
    victim.write_bytes(victim.read_bytes()[:-200])
    with pytest.raises(BagError) as err:
        load_base(f"replay:{damaged}", task.spec)
    assert isinstance(err.value, BaseSpecError)  # what every loader's LOAD_ERRORS catch
    assert victim.name in str(err.value) and "episode 1 of the bag, seed 41" in str(err.value), err.value
    out = rrl("eval", "--task", "ur5_pick", "--base", f"replay:{damaged}", "--seed", "40", "--episodes", "1")
    assert out.returncode == 2 and victim.name in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_control_node_parameters_and_rrl_switch_carry_a_replay_base(bag):
    spec = parse_node_base(f"replay:{bag}", "")
    assert spec.is_replay and spec.path == bag and spec.node_kind == spec.name == f"replay:{bag}"
    assert parse_node_base(f"replay:{bag}", "some/bc_artifact").is_replay  # the node keeps, ignores, a bc artifact
    with pytest.raises(BaseSpecError, match="base_controller replay:BAG_DIR"):
        parse_node_base("replay", str(bag))
    # rrl switch refuses what the node would refuse or ignore before any ROS call (exit 2)
    for args, message in ((["--base", f"replay:{bag}", "--artifact", "X"], "a replay base loads no artifact"),
                          (["--base", "replay:missing_bag"], "missing_bag does not exist")):
        out = rrl("switch", *args, "--timeout", "0.1")
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_replay_base_is_a_base_of_the_one_path(bag, task):
    base = ReplayBase(f"{bag}", task.spec)
    assert base.seeds == list(SEEDS) and not base.needs_images and base.name == f"replay:{bag}"
    assert [e.steps for e in base.episodes] == [len(e.actions) for e in base.episodes]
