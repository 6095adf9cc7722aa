"""The one module for message conversions (numpy / `Layout` <-> ROS 2 messages).

Conventions (what other tools reading our topics can rely on):

- Labelled vectors (`/robot/proprio`, `/task/state`: std_msgs/Float32MultiArray;
  `/command`: std_msgs/Float64MultiArray): a flat vector whose `layout.dim` has one
  entry per `Layout` field, in order: `label` = field name, `size` = number of
  values, `stride` = size; `data_offset` = 0. E.g. the UR5 command is
  `dim = [tool_vel (3), gripper (1)]`, data = 4 values. Reading checks the labels
  and sizes against the expected `Layout` and names any mismatch.
- `/command` carries the sim tick it answers as one more labelled field at the end:
  `dim = [tool_vel (3), gripper (1), tick (1)]`, data = the 4 action values then the
  tick number as a float64 (exact for integers below 2**53). The tick is the `tick`
  of the `/task/status` observation the command answers. A reader that knows only
  the action fields finds them first, in order, as before. In lockstep the sim steps
  only on the command of the tick it awaits (anything else is a foreign command);
  in realtime it also takes a command without the tick field, or a plain unlabelled
  array of exactly the action's length (what `ros2 topic pub` sends).
- Images (`/camera/depth`, `/camera/rgb`: sensor_msgs/Image): the newest frame
  only. Depth: encoding `32FC1`, float32 in [0, 1] (near..far normalised, as the
  task renders it), row-major, `step` = 4 W. RGB: encoding `rgb8`, `step` = 3 W.
  The control node stacks the frame history itself (first frame of an episode
  repeated, as `sim_bridge.task` does).
- `/joint_states`: sensor_msgs/JointState with the task's joint names and
  positions (rad for revolute joints, m for prismatic fingers); the driver-mode sim adds
  velocities and the frame_id `base_link`.
- Robot-facing inputs (the timer loop): object poses are geometry_msgs/PoseStamped in frame
  `base_link` (only the position is read); depth images follow REP 118 (32FC1 in metres,
  16UC1 in millimetres), converted to the policies' [0, 1] by `policies.observations`.
- Robot-facing commands: std_msgs/Float64MultiArray without a layout (ros2_control's
  forward_command_controller reads `data` only) and geometry_msgs/TwistStamped.
- `/tf`, `/tf_static`, `/robot_description` (UR5 sims, `rrl_ros.tf_publisher`): what robot_state_publisher
  publishes for the URDF the sim loads, plus the depth camera's optical frame.
- `/task/status` and `~/status`: std_msgs/String holding one JSON object
  (see `sim_bridge_node` and `control_node` for the keys).
- Time stamps: `header.stamp` is the sim time in lockstep (the `/clock` value)
  and the wall clock in realtime.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rosgraph_msgs.msg import Clock
from geometry_msgs.msg import PoseStamped, TransformStamped, TwistStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension, MultiArrayLayout, String
from tf2_msgs.msg import TFMessage

from sim_bridge.spec import Layout

DEPTH_ENCODING = "32FC1"
RGB_ENCODING = "rgb8"


class ConversionError(ValueError):
    """A message does not match what the receiver expects; the message says what differs."""


def time_msg(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def time_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def clock_msg(ns: int) -> Clock:
    return Clock(clock=time_msg(ns))


def _multiarray_layout(layout: Layout) -> MultiArrayLayout:
    return MultiArrayLayout(
        dim=[MultiArrayDimension(label=name, size=size, stride=size) for name, size in layout.fields], data_offset=0)


def layout_of(msg: Float32MultiArray | Float64MultiArray) -> Layout:
    """The `Layout` a labelled multi-array message declares."""
    return Layout(tuple((d.label, int(d.size)) for d in msg.layout.dim))


def _check(msg, layout: Layout, what: str) -> None:
    got = tuple((d.label, int(d.size)) for d in msg.layout.dim)
    if got != layout.fields:
        raise ConversionError(f"{what}: message layout {list(got)} does not match the expected {list(layout.fields)}")
    if len(msg.data) != layout.size:
        raise ConversionError(f"{what}: message has {len(msg.data)} values, layout {layout.names} has {layout.size}")


def to_float32_array(layout: Layout, vector: np.ndarray) -> Float32MultiArray:
    """A labelled Float32MultiArray from a flat vector named by `layout`."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.size != layout.size:
        raise ConversionError(f"vector has {v.size} values, layout {layout.names} has {layout.size}")
    msg = Float32MultiArray(layout=_multiarray_layout(layout))
    msg.data = v.tolist()
    return msg


def from_float32_array(msg: Float32MultiArray, layout: Layout, what: str = "Float32MultiArray") -> np.ndarray:
    """float32 (N,) from a labelled Float32MultiArray; the labels must match `layout`."""
    _check(msg, layout, what)
    return np.asarray(msg.data, dtype=np.float32)


COMMAND_TICK = "tick"
"""Label of the `/command` field holding the tick the command answers (one value, the last)."""


@dataclass(frozen=True)
class Command:
    """A `/command` message as read: the action and, where the message carries it, the tick it answers."""

    action: np.ndarray
    """(A,) float64 in the task's action layout; may hold NaN/Inf (the receiver decides)."""
    tick: int | None
    """The sim tick this command answers; None when the message has no tick field."""
    labelled: bool
    """False for a plain array without a layout (e.g. from `ros2 topic pub`)."""


def to_command(layout: Layout, action: np.ndarray, tick: int | None = None) -> Float64MultiArray:
    """The `/command` message: a labelled Float64MultiArray in the task's action layout, plus the tick it answers."""
    v = np.asarray(action, dtype=np.float64).reshape(-1)
    if v.size != layout.size:
        raise ConversionError(f"command has {v.size} values, action layout {layout.names} has {layout.size}")
    msg = Float64MultiArray(layout=_multiarray_layout(layout))
    if tick is not None:
        if int(tick) < 0:
            raise ConversionError(f"a command answers a tick >= 0, got {tick}")
        msg.layout.dim.append(MultiArrayDimension(label=COMMAND_TICK, size=1, stride=1))
        v = np.append(v, float(int(tick)))
    msg.data = v.tolist()
    return msg


def read_command(msg: Float64MultiArray, layout: Layout) -> Command:
    """A `/command` message: labelled in the action layout (with or without the tick field), or a plain array.

    A plain array (no `layout.dim`) must have exactly the action's length. Any other mismatch
    (labels, sizes, a tick that is not a whole number >= 0) raises ConversionError naming it.
    """
    n = len(msg.data)
    if not msg.layout.dim:
        if n != layout.size:
            raise ConversionError(f"/command: an unlabelled command has {n} values, the action {layout.names} "
                                  f"has {layout.size}")
        return Command(np.asarray(msg.data, dtype=np.float64), None, False)
    got = [(d.label, int(d.size)) for d in msg.layout.dim]
    has_tick = got[-1][0] == COMMAND_TICK
    if has_tick and got[-1][1] != 1:
        raise ConversionError(f"/command: field {COMMAND_TICK!r} must hold one value, has size {got[-1][1]}")
    fields = tuple(got[:-1] if has_tick else got)
    if fields != layout.fields:
        raise ConversionError(f"/command: message layout {list(fields)} does not match the expected {list(layout.fields)}")
    if n != layout.size + has_tick:
        raise ConversionError(f"/command: message has {n} values, layout {list(got)} has {layout.size + has_tick}")
    data = np.asarray(msg.data, dtype=np.float64)
    tick = None
    if has_tick:
        t = float(data[-1])
        if not (math.isfinite(t) and t >= 0 and t == int(t)):
            raise ConversionError(f"/command: field {COMMAND_TICK!r} must be a whole number >= 0, got {t!r}")
        tick, data = int(t), data[:-1]
    return Command(data, tick, True)


def from_command(msg: Float64MultiArray, layout: Layout) -> np.ndarray:
    """float64 (A,) from a `/command` message (see `read_command`; the tick, if any, is dropped)."""
    return read_command(msg, layout).action


def to_image(frame: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    """A sensor_msgs/Image from one frame: (H, W) float32 depth -> 32FC1, (H, W, 3) uint8 -> rgb8."""
    frame = np.asarray(frame)
    msg = Image()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    if frame.ndim == 2:
        data = np.ascontiguousarray(frame, dtype=np.float32)
        msg.encoding, msg.step = DEPTH_ENCODING, 4 * frame.shape[1]
    elif frame.ndim == 3 and frame.shape[2] == 3:
        data = np.ascontiguousarray(frame, dtype=np.uint8)
        msg.encoding, msg.step = RGB_ENCODING, 3 * frame.shape[1]
    else:
        raise ConversionError(f"an image frame is (H, W) depth or (H, W, 3) rgb, got shape {frame.shape}")
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.is_bigendian = 0
    msg.data = data.tobytes()
    return msg


def from_depth_image(msg: Image) -> tuple[np.ndarray, str]:
    """(H, W) depth as sent, with its encoding: float32 for 32FC1, uint16 for 16UC1 (row padding and
    byte order handled); other encodings are refused by name."""
    dtype = {"32FC1": np.float32, "16UC1": np.uint16}.get(msg.encoding)
    if dtype is None:
        raise ConversionError(f"depth image encoding {msg.encoding!r} is not supported; expected 32FC1 (m) or 16UC1 (mm)")
    item = np.dtype(dtype).itemsize
    data = np.frombuffer(bytes(msg.data), dtype=np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    step = int(msg.step) or item * int(msg.width)
    if step % item or step < item * msg.width or len(data) * item < step * msg.height:
        raise ConversionError(f"depth image {msg.width}x{msg.height} step {msg.step}: {len(msg.data)} bytes do not fit")
    rows = data[:step // item * msg.height].reshape(msg.height, step // item)
    return rows[:, :msg.width].astype(dtype), msg.encoding


def depth_image_for_policy(msg: Image, spec) -> np.ndarray:
    """A REP 118 depth image as the policies' [0, 1] frame (H, W) float32 (policies.observations.depth_to_policy)."""
    from policies.observations import ObservationError, depth_to_policy

    image, encoding = from_depth_image(msg)
    try:
        return depth_to_policy(image, encoding, spec)
    except ObservationError as e:
        raise ConversionError(str(e)) from None


def to_depth_image_m(depth_m: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """A 32FC1 image in metres (REP 118) from an (H, W) float32 frame."""
    data = np.ascontiguousarray(depth_m, dtype=np.float32)
    msg = Image(height=int(data.shape[0]), width=int(data.shape[1]), encoding=DEPTH_ENCODING, is_bigendian=0,
                step=4 * int(data.shape[1]))
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = data.tobytes()
    return msg


def from_pose_position(msg: PoseStamped) -> np.ndarray:
    """(3,) float64 position of a PoseStamped (the frame is the robot base frame by convention)."""
    p = msg.pose.position
    return np.array([p.x, p.y, p.z], dtype=np.float64)


def to_pose_stamped(position: np.ndarray, quat_xyzw, stamp: Time, frame_id: str = "base_link") -> PoseStamped:
    msg = PoseStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in np.asarray(position).reshape(3))
    q = [float(v) for v in quat_xyzw]
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = q
    return msg


def to_tf_message(transforms, stamp: Time) -> TFMessage:
    """A TFMessage of `rrl_ros.robot_state.Transform`s, each stamped `stamp`."""
    out = []
    for t in transforms:
        msg = TransformStamped()
        msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, t.parent, t.child
        tr, q = msg.transform.translation, msg.transform.rotation
        tr.x, tr.y, tr.z = (float(v) for v in t.translation_m)
        q.x, q.y, q.z, q.w = (float(v) for v in t.quat_xyzw)
        out.append(msg)
    return TFMessage(transforms=out)


def to_twist_stamped(linear_m_s: np.ndarray, stamp: Time, frame_id: str = "base_link") -> TwistStamped:
    """A TwistStamped with the tool's linear velocity (angular zero), MoveIt Servo's delta_twist_cmds."""
    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in np.asarray(linear_m_s).reshape(3))
    return msg


def from_image(msg: Image) -> np.ndarray:
    """(H, W) float32 for 32FC1, (H, W, 3) uint8 for rgb8; other encodings are refused by name."""
    if msg.encoding == DEPTH_ENCODING:
        return np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(msg.height, msg.width).copy()
    if msg.encoding == RGB_ENCODING:
        return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width, 3).copy()
    raise ConversionError(f"image encoding {msg.encoding!r} is not supported; expected {DEPTH_ENCODING} or {RGB_ENCODING}")


def to_joint_state(names: tuple[str, ...], positions: np.ndarray, stamp_ns: int) -> JointState:
    msg = JointState()
    msg.header.stamp = time_msg(stamp_ns)
    msg.name = list(names)
    msg.position = np.asarray(positions, dtype=np.float64).reshape(-1).tolist()
    if len(msg.name) != len(msg.position):
        raise ConversionError(f"{len(msg.position)} joint positions for {len(msg.name)} joint names")
    return msg


def from_joint_state(msg: JointState, names: tuple[str, ...]) -> np.ndarray:
    """float64 (J,) positions in the order of `names` (the message may order them differently)."""
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ConversionError(f"joint state lacks joints {missing}")
    return np.asarray([msg.position[index[n]] for n in names], dtype=np.float64)


DIAGNOSTIC_LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
                     "stale": DiagnosticStatus.STALE}


def to_diagnostic_array(name: str, hardware_id: str, level: str, message: str, values: Mapping[str, Any],
                        stamp: Time) -> DiagnosticArray:
    """One diagnostic_msgs/DiagnosticStatus in a DiagnosticArray (what rqt_robot_monitor / Foxglove show)."""
    status = DiagnosticStatus(level=DIAGNOSTIC_LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=str(k), value="" if v is None else str(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg


def to_json_string(payload: Mapping[str, Any]) -> String:
    return String(data=json.dumps(payload, separators=(",", ":")))


def from_json_string(msg: String) -> dict[str, Any]:
    try:
        out = json.loads(msg.data)
    except json.JSONDecodeError as e:
        raise ConversionError(f"status message is not JSON: {e}") from None
    if not isinstance(out, dict):
        raise ConversionError("status message must hold a JSON object")
    return out
