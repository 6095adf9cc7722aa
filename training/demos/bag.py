"""Demonstration bags: rosbag2 directories with MCAP storage, one MCAP file per episode.

A bag is a directory `DIR/` holding `metadata.yaml` (rosbag2 format, version 9,
`storage_identifier: mcap`) and one MCAP file per kept episode,
`DIR/<name>_<i>.mcap`, the way `ros2 bag record` names split files. An episode's
file is finished (chunk indexes, summary, footer) and fsynced before
`metadata.yaml` is atomically replaced with a version that lists it, so a
recording killed at any moment leaves a bag whose listed episodes are all
complete; the half-written file of the interrupted episode is simply not listed
(`reindex` rebuilds `metadata.yaml` from the complete files, like
`ros2 bag reindex`).

Each MCAP file follows the rosbag2 MCAP conventions: profile `ros2`, schemas
named `pkg/msg/Type` with encoding `ros2msg`, channels with message encoding
`cdr` and an `offered_qos_profiles` metadata entry. Each file also carries an
MCAP metadata record `rrl_episode` (seed, outcome, step count, bag spec) so it
describes itself, and `metadata.yaml` repeats the episode table in its
`custom_data` (`rrl.format`, `rrl.spec`, `rrl.episodes`, `rrl.source`).

Serialisation uses the `rosbags` type store; the container is written by the
`mcap` library (zstd-compressed chunks by default).

Reading an episode that cannot be read (missing, truncated, a corrupt chunk: a flipped byte in
compressed data fails zstd or the chunk CRC) raises `BagError` naming the file and the episode;
readers of whole bags (`training.demos.dataset`) skip that episode with a warning and keep the
others. Writing onto a full disk or a read-only directory raises `training.output.OutputError`
naming the path; the interrupted episode's file is removed and `metadata.yaml` still lists every
episode finished before it.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer as McapWriter
from zstandard import ZstdError

from training.demos import schema
from training.demos.schema import BagSpec
from training.output import as_output_error, fsync_dir

ROSBAG2_VERSION = 9
EPISODE_METADATA = "rrl_episode"
"""Name of the MCAP metadata record that describes the episode in a file."""
COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
CORRUPT_DATA = (McapError, ValueError, OSError, EOFError, AssertionError, struct.error, ZstdError, RuntimeError)
"""What reading a damaged MCAP file raises: the mcap library's own errors (CRC, record layout), zstandard's
ZstdError and lz4.frame's RuntimeError on a corrupt compressed chunk, struct/EOF errors on truncation."""


class BagError(ValueError):
    """A bag that cannot be read as a demonstration bag; the message names the file and the problem."""


@dataclass
class EpisodeRecord:
    """One kept episode of a bag, as listed in `metadata.yaml` and in its MCAP file."""

    file: str
    """MCAP file name inside the bag directory."""
    index: int
    """Episode number within the bag (0, 1, ...), in recording order."""
    seed: int
    """Task seed the episode was reset with."""
    success: bool
    """Outcome recorded with the episode: the task succeeded, or the operator marked it a success."""
    steps: int
    """Number of actions."""
    start_ns: int
    """Log time of the first message."""
    end_ns: int
    """Log time of the last message."""
    message_counts: dict[str, int] = field(default_factory=dict)
    """Messages per topic in the file."""
    info: dict[str, Any] = field(default_factory=dict)
    """Other facts about the episode (source, task_success, marked_success, ...)."""
    observations: int = -1
    """Number of observations: steps + 1 with the terminal observation (after the last action), else steps
    (recordings from a running stack, whose sim resets at once after the last step). -1 reads as steps + 1."""

    def __post_init__(self) -> None:
        if self.observations < 0:
            self.observations = self.steps + 1
        if self.observations not in (self.steps, self.steps + 1):
            raise ValueError(f"{self.file}: {self.observations} observations for {self.steps} steps")

    @property
    def terminal_observation(self) -> bool:
        return self.observations == self.steps + 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpisodeRecord":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# --- writing ----------------------------------------------------------------------------------------


class DemoBagWriter:
    """Writes episodes into a new bag directory, finishing each episode's MCAP file on `end_episode`.

    Usage: `begin_episode(seed)`; per step `write_observation(t, obs)` then
    `write_action(t, action)`; a final `write_observation` after the last action;
    `end_episode(success, keep)`. Times are nanoseconds (log time = header stamp).
    Without the final observation, `end_episode(..., terminal_observation=False)`.
    """

    def __init__(self, path: str | Path, spec: BagSpec, source: str, compression: str = "zstd",
                 custom_data: dict[str, str] | None = None):
        self.path = Path(path)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise FileExistsError(f"{self.path} exists and is not an empty directory; choose a new --out")
        if compression not in COMPRESSION:
            raise ValueError(f"compression must be one of {sorted(COMPRESSION)}, got {compression!r}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise as_output_error(e, self.path) or e from None
        self.spec = spec
        self.source = source
        self.compression = compression
        self.custom_data = dict(custom_data or {})
        self.topics = schema.topics_for(spec.camera)
        self.episodes: list[EpisodeRecord] = []
        self._file_index = 0
        self._current: _EpisodeFile | None = None
        try:
            write_metadata(self.path, self.spec, self.source, self.episodes, self.custom_data)
        except OSError as e:
            raise as_output_error(e, self.path / "metadata.yaml") or e from None

    @property
    def recording(self) -> bool:
        return self._current is not None

    def begin_episode(self, seed: int, time_ns: int) -> None:
        if self._current is not None:
            raise RuntimeError("begin_episode called while an episode is being recorded")
        name = f"{self.path.name}_{self._file_index}.mcap"
        self._file_index += 1
        try:
            self._current = _EpisodeFile(self.path / name, self.topics, self.compression, len(self.episodes), seed)
        except OSError as e:
            raise self._write_failed(e, self.path / name) or e from None
        self._write(schema.EPISODE_TOPIC, time_ns, schema.event_msg(
            {"event": "start", "episode": len(self.episodes), "seed": int(seed), "task": self.spec.task}))

    def write_observation(self, time_ns: int, obs: dict[str, np.ndarray]) -> None:
        """Write the newest camera frame, proprio, state and joint positions of an observation."""
        ep = self._require()
        if self.spec.camera == "depth":
            self._write(schema.DEPTH_TOPIC, time_ns, schema.image_msg(obs["depth"][-1], time_ns))
        elif self.spec.camera == "rgb":
            self._write(schema.RGB_TOPIC, time_ns, schema.image_msg(obs["rgb"][-1], time_ns))
        self._write(schema.PROPRIO_TOPIC, time_ns, schema.float_array_msg(obs["proprio"], list(self.spec.proprio_labels)))
        self._write(schema.STATE_TOPIC, time_ns, schema.float_array_msg(obs["state"], list(self.spec.state_labels)))
        self._write(schema.JOINTS_TOPIC, time_ns,
                    schema.joint_state_msg(list(self.spec.joint_names), obs["joint_pos_rad"], time_ns))
        ep.observations += 1

    def write_action(self, time_ns: int, action: np.ndarray) -> None:
        ep = self._require()
        if ep.actions >= ep.observations:
            raise RuntimeError("write_action needs the observation of its step first")
        self._write(schema.ACTION_TOPIC, time_ns, schema.float_array_msg(action, list(self.spec.action_labels)))
        ep.actions += 1

    def end_episode(self, time_ns: int, success: bool, keep: bool = True, terminal_observation: bool = True,
                    **info: Any) -> EpisodeRecord | None:
        """Finish the episode's file; keep it (listed in metadata.yaml) or delete it. Returns the record if kept."""
        ep = self._require()
        self._current = None
        if not keep:
            ep.abandon()
            return None
        if ep.observations != ep.actions + int(terminal_observation):
            ep.abandon()
            raise RuntimeError(f"episode has {ep.observations} observations for {ep.actions} actions; "
                               + ("write the final observation before end_episode" if terminal_observation
                                  else "without a terminal observation every observation needs its action"))
        try:
            record = ep.finish(time_ns, success=bool(success), source=self.source, spec=self.spec, info=info)
            write_metadata(self.path, self.spec, self.source, self.episodes + [record], self.custom_data)
        except OSError as e:
            ep.abandon()  # finished or not, an episode metadata.yaml does not list goes
            raise self._write_failed(e, ep.path) or e from None
        self.episodes.append(record)
        return record

    def discard_episode(self) -> None:
        """Drop the episode being recorded (its file is deleted)."""
        ep = self._require()
        self._current = None
        ep.abandon()

    def close(self) -> None:
        """Discard an unfinished episode; metadata.yaml already lists every kept one."""
        if self._current is not None:
            self.discard_episode()

    def __enter__(self) -> "DemoBagWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, topic: str, time_ns: int, msg: Any) -> None:
        ep = self._require()
        try:
            ep.write(topic, time_ns, msg)
        except OSError as e:
            self._current = None
            ep.abandon()
            raise self._write_failed(e, ep.path) or e from None

    def _write_failed(self, error: OSError, path: Path):
        """The `OutputError` for a failed episode write (None for other OS errors), saying what is kept."""
        return as_output_error(error, path, kept=f"{path.name} removed; metadata.yaml lists the {len(self.episodes)} "
                                                 "episodes finished before it, all readable")

    def _require(self) -> "_EpisodeFile":
        if self._current is None:
            raise RuntimeError("no episode is being recorded; call begin_episode first")
        return self._current


class _EpisodeFile:
    """One MCAP file being written: schemas and channels registered up front, messages appended."""

    def __init__(self, path: Path, topics: dict[str, str], compression: str, index: int, seed: int):
        self.path = path
        self.index = index
        self.seed = int(seed)
        self.stream = open(path, "xb")
        self.writer = McapWriter(self.stream, compression=COMPRESSION[compression], chunk_size=4 * 2**20)
        self.writer.start(profile="ros2", library="rrl training.demos")
        self.channels: dict[str, int] = {}
        schema_ids: dict[str, int] = {}
        for topic, msgtype in topics.items():
            if msgtype not in schema_ids:
                text, _ = schema.message_definition(msgtype)
                schema_ids[msgtype] = self.writer.register_schema(name=msgtype, encoding="ros2msg",
                                                                  data=text.encode())
            qos = yaml.safe_dump(schema.offered_qos(topic), sort_keys=False)
            self.channels[topic] = self.writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=schema_ids[msgtype],
                metadata={"offered_qos_profiles": qos})
        self.counts = {topic: 0 for topic in topics}
        self.start_ns: int | None = None
        self.end_ns = 0
        self.observations = 0
        self.actions = 0

    def write(self, topic: str, time_ns: int, msg: Any) -> None:
        time_ns = int(time_ns)
        if self.start_ns is None:
            self.start_ns = time_ns
        if time_ns < self.end_ns:
            raise ValueError(f"{topic}: time {time_ns} ns goes back before {self.end_ns} ns")
        self.end_ns = time_ns
        self.writer.add_message(self.channels[topic], log_time=time_ns, publish_time=time_ns,
                                data=schema.serialize(msg), sequence=self.counts[topic])
        self.counts[topic] += 1

    def finish(self, time_ns: int, success: bool, source: str, spec: BagSpec, info: dict[str, Any]) -> EpisodeRecord:
        self.write(schema.EPISODE_TOPIC, time_ns, schema.event_msg(
            {"event": "end", "episode": self.index, "seed": self.seed, "success": success, "steps": self.actions,
             **_jsonable(info)}))
        record = EpisodeRecord(file=self.path.name, index=self.index, seed=self.seed, success=success,
                               steps=self.actions, start_ns=int(self.start_ns or 0), end_ns=self.end_ns,
                               message_counts=dict(self.counts), info={"source": source, **_jsonable(info)},
                               observations=self.observations)
        self.writer.add_metadata(EPISODE_METADATA, {"format": schema.FORMAT, "spec": spec.to_json(),
                                                    "episode": json.dumps(record.to_dict(), sort_keys=True)})
        self.writer.finish()
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        return record

    def abandon(self) -> None:
        """Close and delete the file (closing may fail again on a full disk; the file goes regardless)."""
        try:
            self.stream.close()
        except OSError:
            pass
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(info, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def write_metadata(path: Path, spec: BagSpec, source: str, episodes: list[EpisodeRecord],
                   custom_data: dict[str, str] | None = None) -> None:
    """Atomically (re)write `path/metadata.yaml` in rosbag2 version-9 form for the given episodes."""
    topics = schema.topics_for(spec.camera)
    counts = {topic: sum(e.message_counts.get(topic, 0) for e in episodes) for topic in topics}
    start = min((e.start_ns for e in episodes), default=0)
    end = max((e.end_ns for e in episodes), default=0)
    info = {
        "version": ROSBAG2_VERSION,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": max(0, end - start)},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(counts.values()),
        "topics_with_message_count": [
            {"topic_metadata": {"name": topic, "type": msgtype, "serialization_format": "cdr",
                                "offered_qos_profiles": schema.offered_qos(topic),
                                "type_description_hash": schema.message_definition(msgtype)[1]},
             "message_count": counts[topic]}
            for topic, msgtype in topics.items()
        ],
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [e.file for e in episodes],
        "files": [{"path": e.file, "starting_time": {"nanoseconds_since_epoch": e.start_ns},
                   "duration": {"nanoseconds": e.end_ns - e.start_ns},
                   "message_count": sum(e.message_counts.values())} for e in episodes],
        "custom_data": {
            **(custom_data or {}),
            "rrl.format": schema.FORMAT,
            "rrl.source": source,
            "rrl.spec": spec.to_json(),
            "rrl.episodes": json.dumps([e.to_dict() for e in episodes], sort_keys=True),
        },
        "ros_distro": "kilted",
    }
    text = yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    tmp = path / "metadata.yaml.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path / "metadata.yaml")
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    fsync_dir(path)


# --- reading ----------------------------------------------------------------------------------------


@dataclass
class BagInfo:
    """What `metadata.yaml` says about a demonstration bag."""

    path: Path
    spec: BagSpec
    source: str
    episodes: list[EpisodeRecord]
    custom_data: dict[str, str]


def read_info(path: str | Path) -> BagInfo:
    """Parse and check `metadata.yaml` of a demonstration bag; BagError names the file and the problem."""
    path = Path(path)
    if path.is_file() and path.name == "metadata.yaml":
        path = path.parent
    meta_path = path / "metadata.yaml"
    if not path.exists():
        raise BagError(f"{path}: no such bag directory")
    if not path.is_dir():
        raise BagError(f"{path}: not a bag directory (a rosbag2 bag is a directory with metadata.yaml)")
    if not meta_path.exists():
        hint = " (an interrupted recording? run `reindex` to rebuild it)" if any(path.glob("*.mcap")) else ""
        raise BagError(f"{meta_path}: missing; {path} is not a rosbag2 bag{hint}")
    try:
        raw = yaml.safe_load(meta_path.read_text())
    except yaml.YAMLError as e:
        raise BagError(f"{meta_path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rosbag2_bagfile_information"), dict):
        raise BagError(f"{meta_path}: not rosbag2 metadata (no rosbag2_bagfile_information mapping)")
    info = raw["rosbag2_bagfile_information"]
    if info.get("storage_identifier") != "mcap":
        raise BagError(f"{meta_path}: storage_identifier is {info.get('storage_identifier')!r}; "
                       "demonstration bags use mcap")
    custom = info.get("custom_data") or {}
    if custom.get("rrl.format") != schema.FORMAT:
        raise BagError(f"{meta_path}: not an rrl demonstration bag (custom_data rrl.format is "
                       f"{custom.get('rrl.format')!r}, expected {schema.FORMAT!r})")
    try:
        spec = BagSpec.from_json(custom["rrl.spec"])
        episodes = [EpisodeRecord.from_dict(d) for d in json.loads(custom["rrl.episodes"])]
    except (KeyError, ValueError, TypeError) as e:
        raise BagError(f"{meta_path}: custom_data rrl.spec / rrl.episodes unreadable ({e})") from None
    listed = list(info.get("relative_file_paths") or [])
    if listed != [e.file for e in episodes]:
        raise BagError(f"{meta_path}: relative_file_paths {listed} do not match the episode table "
                       f"{[e.file for e in episodes]}")
    return BagInfo(path=path, spec=spec, source=str(custom.get("rrl.source", "")), episodes=episodes,
                   custom_data={k: v for k, v in custom.items() if not k.startswith("rrl.")})


def iter_messages(bag: Path, episode: EpisodeRecord) -> Iterator[tuple[str, int, Any]]:
    """(topic, log time ns, deserialised message) of one episode file, in log-time order.

    Checks the file is a complete MCAP file with the message counts the metadata promises; any
    failure is a `BagError` naming the file and the episode (a corrupt chunk may be found only
    after some messages were yielded).
    """
    path = Path(bag) / episode.file
    which = f"(episode {episode.index} of the bag, seed {episode.seed})"
    if not path.exists():
        raise BagError(f"{path}: listed in metadata.yaml but missing {which}")
    with open(path, "rb") as stream:
        try:
            reader = make_reader(stream, validate_crcs=True)
            summary = reader.get_summary()
        except (StopIteration, *CORRUPT_DATA) as e:
            raise BagError(f"{path}: not a complete MCAP file ({type(e).__name__}: {e}); truncated or foreign "
                           f"{which}") from None
        if summary is None or summary.statistics is None:
            raise BagError(f"{path}: MCAP file has no summary section (truncated or written by an unfinished recording) "
                           f"{which}")
        counts = {ch.topic: summary.statistics.channel_message_counts.get(cid, 0) for cid, ch in summary.channels.items()}
        for topic, expected in episode.message_counts.items():
            if counts.get(topic, 0) != expected:
                raise BagError(f"{path}: {counts.get(topic, 0)} messages on {topic}, metadata.yaml says {expected} {which}")
        for ch in summary.channels.values():
            sch = summary.schemas.get(ch.schema_id)
            if ch.message_encoding != "cdr" or sch is None or sch.encoding != "ros2msg":
                raise BagError(f"{path}: channel {ch.topic} is not a ROS 2 CDR channel {which}")
        try:
            for sch, ch, msg in reader.iter_messages(log_time_order=True):
                yield ch.topic, msg.log_time, schema.deserialize(msg.data, sch.name)
        except CORRUPT_DATA as e:
            raise BagError(f"{path}: corrupt MCAP data ({type(e).__name__}: {e}) {which}") from None


def read_file_record(path: Path) -> tuple[BagSpec, EpisodeRecord] | None:
    """The `rrl_episode` record of a complete MCAP episode file, or None if the file is incomplete."""
    try:
        with open(path, "rb") as stream:
            reader = make_reader(stream)
            if reader.get_summary() is None:
                return None
            for rec in reader.iter_metadata():
                if rec.name == EPISODE_METADATA and rec.metadata.get("format") == schema.FORMAT:
                    return (BagSpec.from_json(rec.metadata["spec"]),
                            EpisodeRecord.from_dict(json.loads(rec.metadata["episode"])))
    except (StopIteration, KeyError, *CORRUPT_DATA):
        return None
    return None


def reindex(path: str | Path, source: str | None = None) -> BagInfo:
    """Rebuild `metadata.yaml` from the complete episode files in `path` (incomplete ones are left unlisted)."""
    path = Path(path)
    found = []
    for file in sorted(path.glob("*.mcap"), key=lambda p: _file_number(p)):
        rec = read_file_record(file)
        if rec is not None:
            found.append(rec)
    if not found:
        raise BagError(f"{path}: no complete demonstration MCAP file to index")
    spec = found[0][0]
    for other_spec, record in found[1:]:
        if other_spec != spec:
            raise BagError(f"{path / record.file}: spec differs from {found[0][1].file}: {spec.differences(other_spec)}")
    episodes = [record for _, record in found]
    for i, record in enumerate(episodes):
        record.index = i
    src = source if source is not None else str(episodes[0].info.get("source", ""))
    write_metadata(path, spec, src, episodes)
    return read_info(path)


def _file_number(p: Path) -> tuple[int, str]:
    tail = p.stem.rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else 1 << 30, p.name)
