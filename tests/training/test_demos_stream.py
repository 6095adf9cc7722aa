"""The stream recorder core: messages of a running stack, delivered with cross-topic reordering, become the
same episodes a direct expert recording gives (without the terminal observation). Real PyBullet task, no ROS."""

import numpy as np
import pytest

from controllers.experts import make_expert
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from training.demos.bag import DemoBagWriter
from training.demos.dataset import DatasetConfig, DemoDataset
from training.demos.recording import SimClock, record_episode
from training.demos.schema import BagSpec
from training.demos.stream import StreamRecorder
from training.evaluation import ExpertPolicy

CAMERA = CameraConfig(32, 32)
CONFIG = DatasetConfig(val_fraction=0.0, frame_dtype="float32", include_failures=True)


@pytest.fixture(scope="module")
def pick():
    task = make_task("ur5_pick", camera=CAMERA)
    yield task, ExpertPolicy(make_expert("ur5_pick"), task.spec)
    task.close()


def stack_messages(task, policy, seeds, drop_command_at=None, realtime=False):
    """What sim_bridge + control node publish, in publishing order: (topic, value).

    `drop_command_at=(episode, step)`: that command never comes; the (realtime) sim steps with the previous one.
    """
    out, tick, previous = [], 0, None
    for episode, seed in enumerate(seeds):
        obs, step = task.reset(seed), 0
        policy.reset(seed)
        while True:
            sim_time = tick * 100_000_000
            stamp = 1_700_000_000_000_000_000 + sim_time + 7 if realtime else sim_time
            out += [("joints", (obs["joint_pos_rad"], stamp)), ("proprio", obs["proprio"]), ("state", obs["state"]),
                    ("frame", (obs["depth"][-1], stamp)),
                    ("status", {"event": "tick", "tick": tick, "episode": episode, "step": step, "seed": seed,
                                "sim_time_ns": sim_time, "stamp_ns": stamp if realtime else 123})]
            action = task.spec.clip_action(policy.act(obs))
            if drop_command_at == (episode, step):
                action = previous
            else:
                out.append(("command", (action, stamp + 5_000_000 if realtime else None)))
            previous = action
            result = task.step(action)
            obs, step, tick = result.obs, step + 1, tick + 1
            if result.terminated or result.truncated:
                out.append(("status", {"event": "episode_end", "episode": episode, "seed": seed,
                                       "success": bool(result.success), "steps": step}))
                break
    out.append(("status", {"event": "finished"}))
    return out


def deliver(messages, rng, lag=6):
    """Per-topic order kept, order between topics shuffled within `lag` messages (as DDS readers may)."""
    last: dict[str, float] = {}
    timed = []
    for i, (topic, value) in enumerate(messages):
        t = max(i + rng.uniform(0, lag), last.get(topic, -1) + 1e-6)
        last[topic] = t
        timed.append((t, topic, value))
    return [(topic, value) for _, topic, value in sorted(timed, key=lambda x: x[0])]


def feed(recorder, messages):
    for topic, value in messages:
        {"joints": lambda v: recorder.on_joints(*v), "proprio": recorder.on_proprio, "state": recorder.on_state,
         "frame": lambda v: recorder.on_frame(*v), "status": recorder.on_status,
         "command": lambda v: recorder.on_command(*v)}[topic](value)


def test_reordered_stack_messages_give_the_expert_recording(pick, tmp_path):
    task, policy = pick
    seeds = [21, 22]
    ref_writer = DemoBagWriter(tmp_path / "ref", BagSpec.from_task(task.spec, CAMERA), source="expert")
    clock = SimClock(0)
    for seed in seeds:
        record_episode(task, policy, ref_writer, seed, clock, keep_failures=True)
    ref = DemoDataset(tmp_path / "ref", CONFIG)

    writer = DemoBagWriter(tmp_path / "stream", BagSpec.from_task(task.spec, CAMERA), source="ros")
    rec = StreamRecorder(writer, task.spec, camera=True, episodes=2, keep_failures=True)
    feed(rec, deliver(stack_messages(task, policy, seeds), np.random.default_rng(0)))
    assert rec.finished and rec.resyncs == 0 and rec.filled_actions == 0
    got = DemoDataset(tmp_path / "stream", CONFIG)
    assert [e.record.seed for e in got.episodes] == seeds
    for a, b in zip(ref.episodes, got.episodes):
        assert not b.record.terminal_observation and a.steps == b.steps
        np.testing.assert_array_equal(b.action, a.action)
        np.testing.assert_array_equal(b.proprio, a.proprio[:-1])
        np.testing.assert_array_equal(b.state, a.state[:-1])
        np.testing.assert_array_equal(b.frames, a.frames[:-1])
        assert b.record.success == a.record.success
    # the 3-frame histories the reader serves are the same too
    idx = np.arange(ref.size("train"))
    np.testing.assert_array_equal(got.batch("train", idx)["frames"], ref.batch("train", idx)["frames"])


def test_missing_command_is_filled_and_a_late_start_skips_to_the_next_episode(pick, tmp_path):
    task, policy = pick
    messages = stack_messages(task, policy, [5, 6], drop_command_at=(1, 3), realtime=True)
    writer = DemoBagWriter(tmp_path / "late", BagSpec.from_task(task.spec, CAMERA), source="ros")
    rec = StreamRecorder(writer, task.spec, camera=True, episodes=5, keep_failures=True)
    start = next(i for i, (t, v) in enumerate(messages) if t == "status" and v.get("step") == 4)
    feed(rec, messages[start + 1:])  # joins mid-episode 0, after a tick's status: its parts are out of step
    (ep,) = DemoDataset(tmp_path / "late", CONFIG).episodes
    assert ep.record.seed == 6 and ep.record.info["filled_actions"] == 1 and rec.filled_actions == 1
    np.testing.assert_array_equal(ep.action[3], ep.action[2])  # the sim kept applying the previous command
    assert rec.skipped_ticks + rec.resyncs > 0


def test_realtime_stream_with_reordering_keeps_actions_in_step(pick, tmp_path):
    """Realtime stamps and cross-topic reordering: every recorded action is the one the sim applied."""
    task, policy = pick
    messages = stack_messages(task, policy, [8], realtime=True)
    applied = [v[0] for t, v in messages if t == "command"]
    writer = DemoBagWriter(tmp_path / "rt", BagSpec.from_task(task.spec, CAMERA), source="ros")
    rec = StreamRecorder(writer, task.spec, camera=True, episodes=1)
    # realtime ticks are a period apart: reordering happens within a tick (its parts, status and command)
    rng, ticks = np.random.default_rng(1), []
    for topic, value in messages:
        if topic == "joints" or not ticks:
            ticks.append([])
        ticks[-1].append((topic, value))
    feed(rec, [m for group in ticks for m in (group[i] for i in rng.permutation(len(group)))])
    (ep,) = DemoDataset(tmp_path / "rt", CONFIG).episodes
    np.testing.assert_array_equal(ep.action, np.asarray(applied, np.float32))
