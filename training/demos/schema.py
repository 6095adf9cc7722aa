"""What a demonstration bag contains: topics, ROS message types, and numpy <-> message conversions.

Every step of an episode is written as one message per topic, all with the same
log time (the step's time stamp), so a step is the set of messages sharing a
time stamp:

| topic            | type                             | content                                        |
|------------------|----------------------------------|------------------------------------------------|
| /camera/depth    | sensor_msgs/msg/Image (32FC1)    | newest depth frame, [0, 1] near..far           |
| /camera/rgb      | sensor_msgs/msg/Image (rgb8)     | newest RGB frame (tasks with an RGB camera)    |
| /robot/proprio   | std_msgs/msg/Float32MultiArray   | proprioception, labelled by `spec.proprio`     |
| /task/state      | std_msgs/msg/Float32MultiArray   | full state, labelled by `spec.state`           |
| /joint_states    | sensor_msgs/msg/JointState       | joint positions, rad                           |
| /demo/action     | std_msgs/msg/Float32MultiArray   | action taken at this step, `spec.action`       |
| /demo/episode    | std_msgs/msg/String              | JSON episode events: `start` and `end`         |

An episode of T actions has T + 1 observations: the last observation (after the
last action) carries no action. Only the newest camera frame is stored per step;
the reader rebuilds the 3-frame history the task served (`Task` repeats the
first frame of an episode until enough frames exist).

`Float32MultiArray` layouts follow the runtime's convention
(`ros_ws/src/rrl_ros/rrl_ros/conversions.py`): one `MultiArrayDimension` per
`Layout` field, `label` = field name, `size` = `stride` = its number of values,
so a bag recorded from the running stack and one written here read the same.
The per-dimension labels (`Layout.labels()`: `tool_vel[0]`, ..., `gripper`)
follow from the fields and back (`fields_from_labels`, `labels_of`).

Messages are built and (de)serialised with the `rosbags` type store of ROS 2
Kilted (the wheel set the runtime uses); no ROS installation is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
"""Message definitions of ROS 2 Kilted, used to serialise, deserialise and describe every message."""

FORMAT = "rrl-demos/1"
"""Value of `custom_data["rrl.format"]` in metadata.yaml; a bag without it is not a demonstration bag."""

DEPTH_TOPIC = "/camera/depth"
RGB_TOPIC = "/camera/rgb"
PROPRIO_TOPIC = "/robot/proprio"
STATE_TOPIC = "/task/state"
JOINTS_TOPIC = "/joint_states"
ACTION_TOPIC = "/demo/action"
EPISODE_TOPIC = "/demo/episode"

IMAGE = "sensor_msgs/msg/Image"
FLOAT_ARRAY = "std_msgs/msg/Float32MultiArray"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"

CAMERA_FRAME_ID = "camera"

_T = TYPESTORE.types
Header = _T["std_msgs/msg/Header"]
Time = _T["builtin_interfaces/msg/Time"]
Image = _T[IMAGE]
Float32MultiArray = _T[FLOAT_ARRAY]
MultiArrayLayout = _T["std_msgs/msg/MultiArrayLayout"]
MultiArrayDimension = _T["std_msgs/msg/MultiArrayDimension"]
JointState = _T[JOINT_STATE]
String = _T[STRING]


def topics_for(camera: str | None) -> dict[str, str]:
    """Topic -> message type of a bag; `camera` is `depth`, `rgb` or None (state only)."""
    topics = {}
    if camera == "depth":
        topics[DEPTH_TOPIC] = IMAGE
    elif camera == "rgb":
        topics[RGB_TOPIC] = IMAGE
    elif camera is not None:
        raise ValueError(f"camera must be 'depth', 'rgb' or None, got {camera!r}")
    topics.update({PROPRIO_TOPIC: FLOAT_ARRAY, STATE_TOPIC: FLOAT_ARRAY, JOINTS_TOPIC: JOINT_STATE,
                   ACTION_TOPIC: FLOAT_ARRAY, EPISODE_TOPIC: STRING})
    return topics


def offered_qos(topic: str) -> list[dict[str, Any]]:
    """The QoS a recorder would have seen offered: reliable, volatile, keep-last 10 (transient local for events)."""
    durability = QosDurability.TRANSIENT_LOCAL if topic == EPISODE_TOPIC else QosDurability.VOLATILE
    infinite = QosTime(sec=2147483647, nsec=4294967295)
    qos = Qos(history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
              durability=durability, deadline=infinite, lifespan=infinite,
              liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=infinite,
              avoid_ros_namespace_conventions=False)
    return [dict(d) for d in dump_qos_v9([qos])]


def message_definition(msgtype: str) -> tuple[str, str]:
    """(`ros2msg` definition text, RIHS01 type hash) of a message type, as rosbag2 stores them."""
    text, _ = TYPESTORE.generate_msgdef(msgtype, ros_version=2)
    return text, TYPESTORE.hash_rihs01(msgtype)


def serialize(msg: Any) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return TYPESTORE.deserialize_cdr(data, msgtype)


def stamp(time_ns: int) -> Any:
    return Time(sec=int(time_ns // 1_000_000_000), nanosec=int(time_ns % 1_000_000_000))


def stamp_ns(t: Any) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


# --- numpy -> messages -------------------------------------------------------------------------------


def fields_from_labels(labels: list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """Invert `Layout.labels()`: `["v[0]", "v[1]", "g"]` -> `[("v", 2), ("g", 1)]`."""
    fields: list[tuple[str, int]] = []
    for label in labels:
        name, bracket, index = label.partition("[")
        if bracket and fields and fields[-1][0] == name and index == f"{fields[-1][1]}]":
            fields[-1] = (name, fields[-1][1] + 1)
        elif bracket and index == "0]":
            fields.append((name, 1))
        elif not bracket:
            fields.append((name, 1))
        else:
            raise ValueError(f"labels {list(labels)} are not the labels of a Layout (at {label!r})")
    return fields


def labels_from_fields(fields: list[tuple[str, int]]) -> list[str]:
    """`Layout.labels()` of fields, without needing a Layout: size-1 fields keep their name."""
    out: list[str] = []
    for name, size in fields:
        out.extend([name] if size == 1 else [f"{name}[{i}]" for i in range(size)])
    return out


def float_array_msg(values: np.ndarray, labels: list[str] | tuple[str, ...]) -> Any:
    """Labelled Float32MultiArray: one dimension per layout field (label = field name, size = its values)."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size != len(labels):
        raise ValueError(f"{values.size} values but {len(labels)} labels {list(labels)}")
    dims = [MultiArrayDimension(label=name, size=size, stride=size) for name, size in fields_from_labels(labels)]
    return Float32MultiArray(layout=MultiArrayLayout(dim=dims, data_offset=0), data=values)


def image_msg(frame: np.ndarray, time_ns: int) -> Any:
    """Image from a depth frame (H, W) float -> 32FC1, or an RGB frame (H, W, 3) uint8 -> rgb8."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        pixels, encoding, channels = np.ascontiguousarray(frame, dtype="<f4"), "32FC1", 4
    elif frame.ndim == 3 and frame.shape[2] == 3:
        pixels, encoding, channels = np.ascontiguousarray(frame, dtype=np.uint8), "rgb8", 3
    else:
        raise ValueError(f"frame must be (H, W) depth or (H, W, 3) RGB, got shape {frame.shape}")
    height, width = frame.shape[:2]
    return Image(header=Header(stamp=stamp(time_ns), frame_id=CAMERA_FRAME_ID), height=height, width=width,
                 encoding=encoding, is_bigendian=0, step=width * channels, data=pixels.reshape(-1).view(np.uint8))


def joint_state_msg(names: list[str], position_rad: np.ndarray, time_ns: int) -> Any:
    position = np.asarray(position_rad, dtype=np.float64).reshape(-1)
    if len(names) != position.size:
        raise ValueError(f"{position.size} joint positions but {len(names)} joint names")
    return JointState(header=Header(stamp=stamp(time_ns), frame_id=""), name=list(names), position=position,
                      velocity=np.zeros(0, np.float64), effort=np.zeros(0, np.float64))


def event_msg(event: dict[str, Any]) -> Any:
    return String(data=json.dumps(event, sort_keys=True))


# --- messages -> numpy -------------------------------------------------------------------------------


def labels_of(msg: Any) -> list[str]:
    """Per-dimension labels (`Layout.labels()` form) of a labelled Float32/Float64MultiArray."""
    return labels_from_fields([(d.label, int(d.size)) for d in msg.layout.dim])


def image_array(msg: Any) -> np.ndarray:
    """(H, W) float32 for 32FC1, (H, W, 3) uint8 for rgb8."""
    if msg.encoding == "32FC1":
        dtype = ">f4" if msg.is_bigendian else "<f4"
        return np.frombuffer(msg.data, dtype=dtype).reshape(msg.height, msg.width).astype(np.float32)
    if msg.encoding == "rgb8":
        return np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
    raise ValueError(f"unsupported image encoding {msg.encoding!r} (expected 32FC1 or rgb8)")


@dataclass(frozen=True)
class BagSpec:
    """What a demonstration bag promises about its contents; two bags can be mixed only if equal."""

    task: str
    """Task name, e.g. `ur5_pick`."""
    action_labels: tuple[str, ...]
    """Per-dimension labels of the action (`spec.action.labels()`)."""
    proprio_labels: tuple[str, ...]
    """Per-dimension labels of proprioception."""
    state_labels: tuple[str, ...]
    """Per-dimension labels of the full state."""
    joint_names: tuple[str, ...]
    """Joint names of `/joint_states`."""
    camera: str | None
    """`depth`, `rgb`, or None for a state-only bag."""
    image_hw: tuple[int, int] | None
    """Camera height and width in pixels, None without a camera."""
    history: int
    """Frames stacked in an observation (3)."""
    control_rate_hz: float
    """Rate of the steps."""
    action_low: tuple[float, ...]
    """Lower action limits of the task."""
    action_high: tuple[float, ...]
    """Upper action limits of the task."""
    binary_action_labels: tuple[str, ...]
    """Labels of the binary action dimensions (e.g. the gripper)."""

    @classmethod
    def from_task(cls, spec: Any, camera: Any | None) -> "BagSpec":
        """From a `TaskSpec` and the task's `CameraConfig` (None: state only)."""
        slices = spec.action.slices()
        labels = spec.action.labels()
        binary = tuple(label for name in spec.binary_action_fields for label in labels[slices[name]])
        return cls(task=spec.name, action_labels=tuple(labels), proprio_labels=tuple(spec.proprio.labels()),
                   state_labels=tuple(spec.state.labels()), joint_names=tuple(spec.joint_names),
                   camera=spec.camera if camera is not None else None,
                   image_hw=(camera.height_px, camera.width_px) if camera is not None else None,
                   history=camera.history if camera is not None else 3, control_rate_hz=float(spec.control_rate_hz),
                   action_low=tuple(float(x) for x in spec.action_low),
                   action_high=tuple(float(x) for x in spec.action_high), binary_action_labels=binary)

    def to_json(self) -> str:
        return json.dumps({k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BagSpec":
        raw = json.loads(text)
        fields = {}
        for name in cls.__dataclass_fields__:
            if name not in raw:
                raise ValueError(f"spec has no field {name!r}")
            value = raw[name]
            fields[name] = tuple(value) if isinstance(value, list) else value
        return cls(**fields)

    def differences(self, other: "BagSpec") -> list[str]:
        """Human-readable list of the fields that differ."""
        out = []
        for name in self.__dataclass_fields__:
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                out.append(f"{name}: {a!r} != {b!r}")
        return out
