"""Demonstration bags end to end: `rrl record` -> rosbag2/MCAP -> rosbags AnyReader and our dataset reader.

Real PyBullet UR5 pick task and its scripted expert at a 64 px depth camera. Damaged episodes (a flipped
byte in a zstd chunk, truncated, missing) are named and skipped; a recording onto a full disk or a
read-only directory stops with one line and keeps what it finished.
"""

import argparse
import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from rrl.commands import record as record_command
from training.demos import schema
from training.demos.bag import BagError, iter_messages, read_info, reindex
from training.demos.dataset import BagWarning, DatasetConfig, DemoDataset

ROOT = Path(__file__).resolve().parents[2]
OBS_TOPICS = {schema.DEPTH_TOPIC: schema.IMAGE, schema.PROPRIO_TOPIC: schema.FLOAT_ARRAY,
              schema.STATE_TOPIC: schema.FLOAT_ARRAY, schema.JOINTS_TOPIC: schema.JOINT_STATE}


def rrl_main(argv: list[str]) -> int:
    """`rrl record ...` in process (the command module alone, so other commands' imports do not matter)."""
    assert argv[0] == "record"
    parser = argparse.ArgumentParser(prog="rrl record")
    record_command.add_arguments(parser)
    return record_command.run(parser.parse_args(argv[1:]))


@pytest.fixture(scope="module")
def pick_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos") / "pick"
    assert rrl_main(["record", "--task", "ur5_pick", "--source", "expert", "--episodes", "3", "--out", str(out),
                     "--camera-px", "64", "--seed", "11", "--json"]) == 0
    return out


def anyreader_episodes(bag: Path) -> list[dict[str, list]]:
    """Per episode, topic -> [(time, message)], split at the /demo/episode start events (rosbags only)."""
    episodes: list[dict[str, list]] = []
    with AnyReader([bag], default_typestore=schema.TYPESTORE) as reader:
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == schema.EPISODE_TOPIC and json.loads(msg.data)["event"] == "start":
                episodes.append({})
            episodes[-1].setdefault(conn.topic, []).append((t, msg))
    return episodes


def test_rosbags_reads_the_recording_with_the_right_counts_and_types(pick_bag):
    info = read_info(pick_bag)
    assert len(info.episodes) == 3 and all(e.success for e in info.episodes)
    assert [e.seed for e in info.episodes] == [11, 12, 13]
    steps = sum(e.steps for e in info.episodes)
    expected = {**{t: (ty, steps + 3) for t, ty in OBS_TOPICS.items()},
                schema.ACTION_TOPIC: (schema.FLOAT_ARRAY, steps), schema.EPISODE_TOPIC: (schema.STRING, 6)}
    with AnyReader([pick_bag], default_typestore=schema.TYPESTORE) as reader:
        got = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert got == expected
        assert reader.message_count == sum(n for _, n in expected.values())
        assert sum(1 for _ in reader.messages()) == reader.message_count

    meta = yaml.safe_load((pick_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["pick_0.mcap", "pick_1.mcap", "pick_2.mcap"]
    assert {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]} == \
        {t: n for t, (_, n) in expected.items()}
    for t in meta["topics_with_message_count"]:
        assert t["topic_metadata"]["serialization_format"] == "cdr"
        assert t["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
        assert t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert meta["custom_data"]["rrl.format"] == schema.FORMAT
    # each MCAP file has what the rosbag2 MCAP storage plugin expects
    with open(pick_bag / "pick_0.mcap", "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        summary = reader.get_summary()
        for channel in summary.channels.values():
            assert channel.message_encoding == "cdr"
            assert yaml.safe_load(channel.metadata["offered_qos_profiles"])[0]["history"] == "keep_last"
            sch = summary.schemas[channel.schema_id]
            assert sch.encoding == "ros2msg" and sch.name.count("/msg/") == 1


def test_our_reader_gives_the_arrays_rosbags_decodes(pick_bag):
    ds = DemoDataset(pick_bag, DatasetConfig(frame_dtype="float32", val_fraction=0.0))
    ref = anyreader_episodes(pick_bag)
    assert len(ds.episodes) == len(ref) == 3
    for ep, msgs in zip(ds.episodes, ref):
        assert ep.steps == len(msgs[schema.ACTION_TOPIC])
        np.testing.assert_array_equal(ep.proprio, [m.data for _, m in msgs[schema.PROPRIO_TOPIC]])
        np.testing.assert_array_equal(ep.state, [m.data for _, m in msgs[schema.STATE_TOPIC]])
        np.testing.assert_array_equal(ep.action, [m.data for _, m in msgs[schema.ACTION_TOPIC]])
        np.testing.assert_array_equal(ep.joint_pos_rad, [m.position for _, m in msgs[schema.JOINTS_TOPIC]])
        frames = [np.frombuffer(m.data, "<f4").reshape(m.height, m.width) for _, m in msgs[schema.DEPTH_TOPIC]]
        np.testing.assert_array_equal(ep.frames, frames)
        assert all(m.encoding == "32FC1" and m.header.frame_id == "camera" for _, m in msgs[schema.DEPTH_TOPIC])
        np.testing.assert_array_equal(ep.stamps_ns, [t for t, _ in msgs[schema.PROPRIO_TOPIC]])
        assert schema.labels_of(msgs[schema.ACTION_TOPIC][0][1]) == ["tool_vel[0]", "tool_vel[1]", "tool_vel[2]",
                                                                   "gripper"]
        # the runtime's labelled-vector convention (rrl_ros.conversions): one dimension per layout field
        assert [(d.label, d.size) for d in msgs[schema.ACTION_TOPIC][0][1].layout.dim] == [("tool_vel", 3),
                                                                                          ("gripper", 1)]
    # the float16 cache is the float32 frames rounded
    ds16 = DemoDataset(pick_bag, DatasetConfig(val_fraction=0.0))
    assert ds16.episodes[0].frames.dtype == np.float16
    np.testing.assert_array_equal(ds16.episodes[0].frames, ds.episodes[0].frames.astype(np.float16))
    assert isinstance(ds16.episodes[0].frames.base, np.memmap) or isinstance(ds16.episodes[0].frames, np.memmap)


def test_samples_reproduce_the_observations_the_task_served(pick_bag):
    """Replaying the recorded seeds with the expert gives the frame histories and vectors the reader serves."""
    from controllers.experts import make_expert
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig
    from training.evaluation import ExpertPolicy

    ds = DemoDataset(pick_bag, DatasetConfig(frame_dtype="float32", val_fraction=0.0))
    ep = ds.episodes[1]
    task = make_task("ur5_pick", camera=CameraConfig(64, 64))
    try:
        policy = ExpertPolicy(make_expert("ur5_pick"), task.spec)
        obs = task.reset(ep.record.seed)
        policy.reset(ep.record.seed)
        for t in range(ep.steps):
            batch = ds.samples(np.array([1]), np.array([t]))
            np.testing.assert_array_equal(batch["frames"][0], obs["depth"])
            np.testing.assert_array_equal(batch["proprio"][0], obs["proprio"])
            np.testing.assert_array_equal(batch["state"][0], obs["state"])
            action = task.spec.clip_action(policy.act(obs))
            np.testing.assert_array_equal(batch["action"][0], action.astype(np.float32))
            obs = task.step(action).obs
    finally:
        task.close()


def test_sigkill_mid_episode_leaves_finished_episodes_readable(tmp_path):
    """A recorder killed with SIGKILL while writing episode 3 leaves episodes 1-2 readable by both readers."""
    out = tmp_path / "killed"
    script = f"""
import sys, numpy as np
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from controllers.experts import make_expert
from training.evaluation import ExpertPolicy
from training.demos.bag import DemoBagWriter
from training.demos.schema import BagSpec
from training.demos.recording import SimClock, record_episode
camera = CameraConfig(64, 64)
task = make_task("ur5_pick", camera=camera)
policy = ExpertPolicy(make_expert("ur5_pick"), task.spec)
writer = DemoBagWriter({str(out)!r}, BagSpec.from_task(task.spec, camera), source="expert")
clock = SimClock()
for seed in (0, 1):
    record_episode(task, policy, writer, seed, clock, keep_failures=True)
obs = task.reset(2)
writer.begin_episode(2, clock.now_ns)
for k in range(40):  # part of an episode, then hang until killed
    writer.write_observation(clock.now_ns, obs)
    writer.write_action(clock.now_ns, np.zeros(4))
    obs = task.step(np.zeros(4)).obs
    clock.now_ns += 100_000_000
writer._current.stream.flush()
print("MIDWAY", flush=True)
import time; time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "MIDWAY"
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -9
    partial = out / "killed_2.mcap"
    assert partial.exists() and partial.stat().st_size > 0

    info = read_info(out)
    assert [e.file for e in info.episodes] == ["killed_0.mcap", "killed_1.mcap"]
    ds = DemoDataset(out, DatasetConfig(include_failures=True, val_fraction=0.0))
    assert [e.steps for e in ds.episodes] == [e.steps for e in info.episodes]
    with AnyReader([out], default_typestore=schema.TYPESTORE) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts[schema.ACTION_TOPIC] == sum(e.steps for e in info.episodes)
        assert sum(1 for _ in reader.messages()) == reader.message_count
    # metadata.yaml is recoverable from the finished files alone; the partial one stays unlisted
    (out / "metadata.yaml").unlink()
    with pytest.raises(BagError, match="reindex"):
        read_info(out)
    rebuilt = reindex(out)
    assert [(e.file, e.steps, e.seed) for e in rebuilt.episodes] == [(e.file, e.steps, e.seed) for e in info.episodes]


def chunk_data_offset(path: Path) -> tuple[int, int]:
    """(file offset, length) of the compressed records of the file's first MCAP chunk."""
    with open(path, "rb") as f:
        index = make_reader(f).get_summary().chunk_indexes[0]
    data = path.read_bytes()
    p = index.chunk_start_offset
    assert data[p] == 0x06  # Chunk opcode
    p += 1 + 8 + 8 + 8 + 8 + 4  # record length, message start/end time, uncompressed size, uncompressed CRC
    (n,) = struct.unpack_from("<I", data, p)
    assert data[p + 4:p + 4 + n] == b"zstd"
    p += 4 + n
    (length,) = struct.unpack_from("<Q", data, p)
    return p + 8, length


@pytest.mark.parametrize("where", ["block_header", "middle"])
def test_a_flipped_byte_in_a_zstd_chunk_names_the_episode_and_the_others_stay_usable(pick_bag, tmp_path, where):
    bad = tmp_path / "bad"
    shutil.copytree(pick_bag, bad, ignore=shutil.ignore_patterns(".rrl_cache"))
    victim = bad / "pick_1.mcap"
    start, length = chunk_data_offset(victim)
    data = bytearray(victim.read_bytes())
    # byte 10 of the zstd frame: zstd itself fails (ZstdError); the middle: the chunk CRC catches it
    data[start + (10 if where == "block_header" else length // 2)] ^= 0x01
    victim.write_bytes(bytes(data))
    info = read_info(bad)
    with pytest.raises(BagError, match=r"pick_1\.mcap: corrupt MCAP data .*\(episode 1 of the bag, seed 12\)"):
        list(iter_messages(bad, info.episodes[1]))
    with pytest.warns(BagWarning, match=r"skipping episode 1 \(pick_1\.mcap\).*keeping the others: .*corrupt MCAP data"):
        ds = DemoDataset(bad, DatasetConfig(frame_dtype="float32", val_fraction=0.0))
    good = DemoDataset(pick_bag, DatasetConfig(frame_dtype="float32", val_fraction=0.0))
    assert [e.record.seed for e in ds.episodes] == [11, 13] and [p.name for p, _ in ds.skipped] == ["pick_1.mcap"]
    for ep, ref in zip(ds.episodes, [good.episodes[0], good.episodes[2]]):
        np.testing.assert_array_equal(ep.action, ref.action)
        np.testing.assert_array_equal(ep.frames, ref.frames)  # the frame cache skips the episode's slot
    with pytest.warns(BagWarning):  # the cache built above serves the same episodes
        again = DemoDataset(bad, DatasetConfig(frame_dtype="float32", val_fraction=0.0))
    np.testing.assert_array_equal(again.episodes[1].frames, good.episodes[2].frames)


def test_truncated_and_foreign_bags_give_clear_errors(pick_bag, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(pick_bag, bad, ignore=shutil.ignore_patterns(".rrl_cache"))
    victim = bad / "pick_1.mcap"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.warns(BagWarning, match=r"skipping episode 1 .*pick_1\.mcap.*(truncated|not a complete MCAP)"):
        assert len(DemoDataset(bad).episodes) == 2

    victim.write_bytes(b"this is not an mcap file at all" * 10)
    with pytest.raises(BagError, match=r"pick_1\.mcap.*not a complete MCAP.*episode 1"):
        list(iter_messages(bad, read_info(bad).episodes[1]))

    victim.unlink()
    with pytest.warns(BagWarning, match=r"pick_1\.mcap: listed in metadata.yaml but missing"):
        assert len(DemoDataset(bad).episodes) == 2
    for name in ("pick_0.mcap", "pick_2.mcap"):
        (bad / name).unlink()
    with pytest.raises(ValueError, match="no successful episodes .* skipped as unreadable"), pytest.warns(BagWarning):
        DemoDataset(bad)

    with pytest.raises(BagError, match="missing; .* is not a rosbag2 bag"):
        read_info(tmp_path)
    with pytest.raises(BagError, match="no such bag"):
        read_info(tmp_path / "nope")

    # a genuine rosbag2/MCAP bag that is not a demonstration bag
    from rosbags.rosbag2 import StoragePlugin, Writer

    foreign = tmp_path / "foreign"
    with Writer(foreign, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/chatter", schema.STRING, typestore=schema.TYPESTORE)
        w.write(conn, 1, schema.serialize(schema.String(data="hi")))
    with pytest.raises(BagError, match=r"foreign/metadata.yaml: not an rrl demonstration bag"):
        DemoDataset(foreign)
    (foreign / "metadata.yaml").write_text("just: [a, list")
    with pytest.raises(BagError, match="not valid YAML"):
        read_info(foreign)


def test_recording_onto_a_full_disk_or_read_only_directory_stops_with_one_line(tmp_path, mounts, capsys):
    from rrl.cli import main

    read_only = mounts.read_only()
    assert main(["record", "--task", "ur5_pick", "--source", "expert", "--episodes", "1", "--camera-px", "0",
                 "--out", str(read_only / "bag")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {read_only / 'bag'}: read-only file system" in err and "Traceback" not in err

    disk = mounts.disk(160)  # room for an episode or two of 64 px depth, not for five
    out = disk / "bag"
    assert main(["record", "--task", "ur5_pick", "--source", "expert", "--episodes", "5", "--camera-px", "64",
                 "--out", str(out), "--json"]) == 2
    err = capsys.readouterr().err
    assert "no space left on device" in err and str(out) in err and "Traceback" not in err
    info = read_info(out)
    assert 1 <= len(info.episodes) < 5, err
    # every file left is a listed, complete episode: no partial MCAP file, no metadata.yaml.tmp
    assert sorted(p.name for p in out.iterdir()) == sorted([e.file for e in info.episodes] + ["metadata.yaml"])
    shutil.copytree(out, tmp_path / "copy")  # read it where the dataset's frame cache has room
    ds = DemoDataset(tmp_path / "copy", DatasetConfig(val_fraction=0.0))
    assert [e.record.seed for e in ds.episodes] == [e.seed for e in info.episodes] and not ds.skipped


def test_writer_refuses_existing_output(pick_bag):
    with pytest.raises(SystemExit, match="exists"):
        rrl_main(["record", "--task", "ur5_pick", "--source", "expert", "--episodes", "1", "--out", str(pick_bag)])


def test_rgb_camera_task_round_trip(tmp_path):
    """An RGB task (MuJoCo Adroit door, 32 px) writes rgb8 images that both readers give back unchanged."""
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig
    from training.demos.bag import DemoBagWriter
    from training.demos.schema import BagSpec

    camera = CameraConfig(32, 32)
    task = make_task("adroit_door", camera=camera)
    served = []
    try:
        with DemoBagWriter(tmp_path / "door", BagSpec.from_task(task.spec, camera), source="test") as writer:
            obs = task.reset(5)
            writer.begin_episode(5, 0)
            for t in range(4):
                served.append(obs["rgb"])
                writer.write_observation(t * 100_000_000, obs)
                writer.write_action(t * 100_000_000, np.zeros(task.spec.action.size))
                obs = task.step(np.zeros(task.spec.action.size)).obs
            writer.write_observation(400_000_000, obs)
            writer.end_episode(400_000_000, success=True)
    finally:
        task.close()
    ds = DemoDataset(tmp_path / "door", DatasetConfig(val_fraction=0.0))
    batch = ds.samples(np.zeros(4, int), np.arange(4))
    assert batch["frames"].dtype == np.uint8 and batch["frames"].shape == (4, 3, 32, 32, 3)
    np.testing.assert_array_equal(batch["frames"], np.stack(served))
    (ref,) = anyreader_episodes(tmp_path / "door")
    images = ref[schema.RGB_TOPIC]
    assert all(m.encoding == "rgb8" and m.step == 32 * 3 for _, m in images)
    np.testing.assert_array_equal(ds.episodes[0].frames, [m.data.reshape(32, 32, 3) for _, m in images])


def test_running_out_of_attempts_keeps_the_bag(tmp_path, capsys):
    """The pen's scripted expert solves ~1 % of episodes, so it runs out of attempts. With --max-attempts that is
    the intended stop (exit 0, the report says it fell short); at the default cap it is an error in one line. Both
    times the bag is complete and readable."""
    base = ["record", "--task", "adroit_pen", "--source", "expert", "--camera-px", "0", "--json"]
    capped = tmp_path / "capped"
    assert rrl_main(base + ["--episodes", "5", "--max-attempts", "3", "--keep", "failures", "--out", str(capped)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["attempts"] == 3 and report["episodes"] == 3 and report["requested"] == 5
    assert report["stopped_at_max_attempts"] is True
    assert len(read_info(capped).episodes) == 3

    default = tmp_path / "default"
    with pytest.raises(SystemExit, match=r"only 0 of 1 episodes kept after 13 attempts .* holds the 0 kept episodes"):
        rrl_main(base + ["--episodes", "1", "--out", str(default)])
    assert read_info(default).episodes == []
    with pytest.raises(SystemExit, match="--max-attempts applies to --source expert"):
        rrl_main(base + ["--episodes", "1", "--max-attempts", "0", "--out", str(tmp_path / "zero")])
