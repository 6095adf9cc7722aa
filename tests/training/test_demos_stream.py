"""The stream recorder core: messages of a running stack, delivered with cross-topic reordering and late
subscriptions, become the episodes a direct recording gives (without the terminal observation).
Real PyBullet task, no ROS: the messages are generated the way sim_bridge + control node publish them."""

import numpy as np
import pytest

from controllers.experts import make_expert
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from training.demos.bag import DemoBagWriter
from training.demos.dataset import DatasetConfig, DemoDataset
from training.demos.recording import SimClock, record_episode
from training.demos.schema import BagSpec
from training.demos.stream import StreamError, StreamRecorder
from training.evaluation import ExpertPolicy

CAMERA = CameraConfig(32, 32)
CONFIG = DatasetConfig(val_fraction=0.0, frame_dtype="float32", include_failures=True)


@pytest.fixture(scope="module")
def pick():
    task = make_task("ur5_pick", camera=CAMERA)
    yield task, ExpertPolicy(make_expert("ur5_pick"), task.spec)
    task.close()


def stack_messages(task, policy, seeds, drop_command_at=None, realtime=False):
    """(topic, value, source_ns) in publishing order, as the stack produces them.

    `drop_command_at=(episode, step)`: that command never comes; the (realtime) sim steps with the previous one.
    """
    out, tick, previous = [], 0, None

    def pub(topic, value):
        out.append((topic, value, 1_000_000 + 1000 * len(out)))  # one machine clock, advancing per message

    for episode, seed in enumerate(seeds):
        obs, step = task.reset(seed), 0
        policy.reset(seed)
        while True:
            sim_time = tick * 100_000_000
            stamp = 1_700_000_000_000_000_000 + sim_time + 7 if realtime else sim_time
            pub("joints", (obs["joint_pos_rad"], stamp))
            pub("proprio", obs["proprio"])
            pub("state", obs["state"])
            pub("frame", (obs["depth"][-1], stamp))
            pub("status", {"event": "tick", "tick": tick, "episode": episode, "step": step, "seed": seed,
                           "sim_time_ns": sim_time, "stamp_ns": stamp if realtime else 123})
            action = task.spec.clip_action(policy.act(obs))
            if drop_command_at == (episode, step):
                action = previous
            else:
                pub("command", action)
            previous = action
            result = task.step(action)
            obs, step, tick = result.obs, step + 1, tick + 1
            if result.terminated or result.truncated:
                pub("status", {"event": "episode_end", "episode": episode, "seed": seed,
                               "success": bool(result.success), "steps": step})
                break
    pub("status", {"event": "finished"})
    return out


def deliver(messages, rng, lag=6):
    """Per-topic order kept, order between topics shuffled within `lag` messages (as DDS readers may)."""
    last: dict[str, float] = {}
    timed = []
    for i, (topic, value, src) in enumerate(messages):
        t = max(i + rng.uniform(0, lag), last.get(topic, -1) + 1e-6)
        last[topic] = t
        timed.append((t, (topic, value, src)))
    return [m for _, m in sorted(timed, key=lambda x: x[0])]


def late_subscriptions(messages, rng, until):
    """Each topic's subscription goes live at its own moment among the first `until` messages."""
    live = {topic: rng.integers(0, until) for topic in ("joints", "proprio", "state", "frame", "status", "command")}
    return [m for i, m in enumerate(messages) if i >= live[m[0]]]


def feed(recorder, messages):
    for topic, value, src in messages:
        if topic == "joints":
            recorder.on_joints(*value, src)
        elif topic == "frame":
            recorder.on_frame(*value, src)
        else:
            {"proprio": recorder.on_proprio, "state": recorder.on_state, "status": recorder.on_status,
             "command": recorder.on_command}[topic](value, src)
    recorder.close()


def reference(task, policy, seeds, path):
    writer = DemoBagWriter(path, BagSpec.from_task(task.spec, CAMERA), source="expert")
    clock = SimClock(0)
    for seed in seeds:
        record_episode(task, policy, writer, seed, clock, keep_failures=True)
    return {e.record.seed: e for e in DemoDataset(path, CONFIG).episodes}


def recorder_for(task, path, episodes=5):
    writer = DemoBagWriter(path, BagSpec.from_task(task.spec, CAMERA), source="ros")
    return StreamRecorder(writer, task.spec, camera=True, episodes=episodes, keep_failures=True, image_hw=(32, 32))


def assert_same_episode(got, want):
    assert not got.record.terminal_observation and got.steps == want.steps
    np.testing.assert_array_equal(got.action, want.action)
    np.testing.assert_array_equal(got.proprio, want.proprio[:-1])
    np.testing.assert_array_equal(got.state, want.state[:-1])
    np.testing.assert_array_equal(got.joint_pos_rad, want.joint_pos_rad[:-1])
    np.testing.assert_array_equal(got.frames, want.frames[:-1])
    assert got.record.success == want.record.success


def test_reordered_lockstep_stream_gives_the_direct_recording(pick, tmp_path):
    task, policy = pick
    seeds = [21, 22]
    want = reference(task, policy, seeds, tmp_path / "ref")
    rec = recorder_for(task, tmp_path / "stream", episodes=2)
    feed(rec, deliver(stack_messages(task, policy, seeds), np.random.default_rng(0)))
    assert rec.finished and rec.dropped_ticks == 0 and rec.filled_actions == 0
    got = DemoDataset(tmp_path / "stream", CONFIG)
    assert [e.record.seed for e in got.episodes] == seeds
    for ep in got.episodes:
        assert_same_episode(ep, want[ep.record.seed])
    # the 3-frame histories the reader serves are the same too
    ref_ds = DemoDataset(tmp_path / "ref", CONFIG)
    idx = np.arange(ref_ds.size("train"))
    np.testing.assert_array_equal(got.batch("train", idx)["frames"], ref_ds.batch("train", idx)["frames"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_late_subscriptions_skip_to_the_first_whole_episode(pick, tmp_path, seed):
    """Topics going live at different moments during episode 0: episodes 1 and 2 are recorded exactly."""
    task, policy = pick
    seeds = [31, 32, 33]
    messages = stack_messages(task, policy, seeds)
    rng = np.random.default_rng(seed)
    rec = recorder_for(task, tmp_path / "late")
    feed(rec, deliver(late_subscriptions(messages, rng, until=60), rng))
    got = DemoDataset(tmp_path / "late", CONFIG)
    assert [e.record.seed for e in got.episodes][-2:] == [32, 33]
    want = reference(task, policy, seeds, tmp_path / "ref")
    for ep in got.episodes:
        assert_same_episode(ep, want[ep.record.seed])


def test_realtime_missing_command_is_the_previous_one(pick, tmp_path):
    task, policy = pick
    messages = stack_messages(task, policy, [5, 6], drop_command_at=(1, 3), realtime=True)
    applied = [v for t, v, _ in messages if t == "command"]
    rec = recorder_for(task, tmp_path / "rt")
    rng, ticks = np.random.default_rng(1), []
    for m in messages:  # realtime ticks are a period apart: reordering happens within a tick
        if m[0] == "joints" or not ticks:
            ticks.append([])
        ticks[-1].append(m)
    feed(rec, [m for group in ticks for m in (group[i] for i in rng.permutation(len(group)))])
    eps = DemoDataset(tmp_path / "rt", CONFIG).episodes
    assert [e.record.seed for e in eps] == [5, 6] and rec.filled_actions == 1
    assert eps[1].record.info["filled_actions"] == 1
    actions = np.concatenate([e.action for e in eps])
    np.testing.assert_array_equal(actions[eps[0].steps + 3], actions[eps[0].steps + 2])
    np.testing.assert_array_equal(np.delete(actions, eps[0].steps + 3, axis=0), np.asarray(applied, np.float32))


def test_lockstep_missing_command_drops_the_episode(pick, tmp_path):
    task, policy = pick
    rec = recorder_for(task, tmp_path / "drop")
    feed(rec, stack_messages(task, policy, [5, 6], drop_command_at=(0, 3)))
    assert [e.record.seed for e in DemoDataset(tmp_path / "drop", CONFIG).episodes] == [6]
    assert rec.dropped_ticks == 1


def test_camera_mismatch_is_named(pick, tmp_path):
    task, policy = pick
    writer = DemoBagWriter(tmp_path / "cam", BagSpec.from_task(task.spec, CameraConfig(64, 64)), source="ros")
    rec = StreamRecorder(writer, task.spec, camera=True, episodes=1, image_hw=(64, 64))
    with pytest.raises(StreamError, match="32x32 px, the recording expects 64x64"):
        feed(rec, stack_messages(task, policy, [5]))
    rec = StreamRecorder(writer, task.spec, camera=True, episodes=1)
    no_camera = [m for m in stack_messages(task, policy, [5]) if m[0] != "frame"]
    with pytest.raises(StreamError, match="no camera frames"):
        feed(rec, no_camera)
