"""The task observation from standard robot inputs: what a ROS 2 robot driver and a perception node publish.

On a robot there is no privileged `/task/state`: the control node receives joint states
(sensor_msgs/JointState), object poses (geometry_msgs/PoseStamped, one topic per object), depth
images (sensor_msgs/Image, metres or millimetres) and knows the object sizes from a parameter or
a topic. `ur5_observation` turns these into exactly the observation dict the policies were trained
on (`sim_bridge.task`): `proprio`, `state` and `joint_pos_rad`; `depth_to_policy` and `FrameStack`
do the same for the camera. Pure numpy, no ROS: tests/policies/test_observations.py checks it
against the simulated task's own observations.

UR5 proprio (8), as `sim_bridge.ur5.tasks` defines it:
- `tool_pos` (3, m): the tool centre point from our UR5 forward kinematics (DH table + TCP offset,
  `sim_bridge.ur5.kinematics.tcp_pose`) of the six arm joint angles;
- `tool_vel` (3, m/s): J_lin(q) qdot, the linear rows of the TCP's geometric Jacobian times the
  measured joint velocities (the instantaneous velocity). The simulation reports the finite
  difference over the last control period instead; the two agree for the smooth motions of the
  tasks (checked in the test within 1 cm/s). A driver that publishes no velocities gets the finite
  difference against the previous reading (`previous`), as the simulation does;
- `gripper_state` (1): opening fraction, 0 closed .. 1 open: the mean finger position / stroke;
- `gripper_vel` (1): its rate, 1/s, from the finger velocities (or the finite difference).

State = proprio followed by the task's object fields, each filled from the inputs by its name:
`<object>_pos` (3) from the object's pose (its position; base frame), `<object>_size` (1) from the
object's size (the cube's edge, m). The UR5 tasks have `cube_pos`, `cube_size` and `bowl_pos`
(ur5_bowl) or `target_pos` (ur5_push).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from sim_bridge.spec import TaskSpec, depth_to_unit
from sim_bridge.task import Observation
from sim_bridge.ur5 import kinematics, model

ARM_JOINTS = model.ARM_JOINTS
FINGER_JOINTS = model.FINGER_JOINTS


class ObservationError(ValueError):
    """The inputs cannot make the task's observation; the message names what is missing or wrong."""


@dataclass(frozen=True)
class JointReading:
    """One joint-state message, reordered to the task's joint names."""

    position: np.ndarray
    """(J,) float64 in the order of `spec.joint_names`: rad (arm), m (fingers)."""
    velocity: np.ndarray | None
    """(J,) float64 in the same order (rad/s, m/s), or None when the driver sends no velocities."""
    stamp_s: float
    """Time of the reading, s (the message's header stamp)."""


def joint_reading(names, position, velocity, stamp_s: float, spec: TaskSpec) -> JointReading:
    """A JointState's fields (any joint order, extra joints ignored) in the order of `spec.joint_names`.

    A joint the task needs that the message lacks raises ObservationError naming it (and the names the
    message has: a driver with a `prefix` or other joint names shows at once)."""
    names = list(names)
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in spec.joint_names if n not in index]
    if missing:
        raise ObservationError(f"joint state lacks joint(s) {missing} (it has {names})")
    if len(position) != len(names):
        raise ObservationError(f"joint state has {len(names)} names but {len(position)} positions")
    order = [index[n] for n in spec.joint_names]
    pos = np.asarray(position, np.float64)[order]
    vel = None
    if len(velocity):
        if len(velocity) != len(names):
            raise ObservationError(f"joint state has {len(names)} names but {len(velocity)} velocities")
        vel = np.asarray(velocity, np.float64)[order]
    if not np.all(np.isfinite(pos)) or (vel is not None and not np.all(np.isfinite(vel))):
        raise ObservationError("joint state holds non-finite values")
    return JointReading(pos, vel, float(stamp_s))


def ur5_proprio(reading: JointReading, previous: JointReading | None = None) -> np.ndarray:
    """(8,) float32 proprio from a joint reading (see the module docstring); `previous` for differencing."""
    q, fingers = reading.position[:6], reading.position[6:8]
    jac, tcp, _ = kinematics.tcp_jacobian(q)
    stroke = 2 * model.FINGER_STROKE_M
    if reading.velocity is not None:
        tool_vel = jac[:3] @ reading.velocity[:6]
        gripper_vel = float(reading.velocity[6:8].sum() / stroke)
    elif previous is not None and reading.stamp_s > previous.stamp_s:
        dt = reading.stamp_s - previous.stamp_s
        tool_vel = (tcp - kinematics.tcp_pose(previous.position[:6])[0]) / dt
        gripper_vel = float((fingers.sum() - previous.position[6:8].sum()) / stroke / dt)
    else:
        tool_vel, gripper_vel = np.zeros(3), 0.0
    out = np.empty(8, np.float32)
    out[0:3], out[3:6] = tcp, tool_vel
    out[6], out[7] = fingers.sum() / stroke, gripper_vel
    return out


def object_fields(spec: TaskSpec) -> dict[str, tuple[str, str]]:
    """State field -> (object name, 'pos' | 'size') for every state field that is not proprio."""
    out = {}
    for name, size in spec.state.fields:
        if name in spec.proprio.names:
            continue
        obj, _, kind = name.rpartition("_")
        if kind == "pos" and size == 3 and obj:
            out[name] = (obj, "pos")
        elif kind == "size" and size == 1 and obj:
            out[name] = (obj, "size")
        else:
            raise ObservationError(f"{spec.name}: state field {name!r} ({size}) is neither <object>_pos (3) "
                                   f"nor <object>_size (1): no standard input fills it")
    return out


def required_objects(spec: TaskSpec) -> tuple[list[str], list[str]]:
    """(objects whose pose the task needs, objects whose size it needs), in state order."""
    fields = object_fields(spec).values()
    return [o for o, k in fields if k == "pos"], [o for o, k in fields if k == "size"]


def ur5_observation(spec: TaskSpec, reading: JointReading, object_pos_m: Mapping[str, np.ndarray],
                    object_size_m: Mapping[str, float], previous: JointReading | None = None) -> Observation:
    """The observation the policies were trained on, from standard inputs only.

    `object_pos_m`: object name -> position (3,) in the robot base frame (from its PoseStamped);
    `object_size_m`: object name -> size (the cube's edge). A missing or non-finite one raises
    ObservationError naming the object."""
    if spec.robot != "ur5":
        raise ObservationError(f"{spec.name}: observations from standard inputs exist for the UR5 tasks only "
                               f"(robot {spec.robot!r})")
    if tuple(spec.joint_names) != ARM_JOINTS + FINGER_JOINTS:
        raise ObservationError(f"{spec.name}: expected the joints {ARM_JOINTS + FINGER_JOINTS}, spec has {spec.joint_names}")
    proprio = ur5_proprio(reading, previous)
    values: dict[str, np.ndarray] = dict(spec.proprio.unpack(proprio))
    for field_name, (obj, kind) in object_fields(spec).items():
        source = object_pos_m if kind == "pos" else object_size_m
        if obj not in source:
            what = "pose" if kind == "pos" else "size"
            raise ObservationError(f"{spec.name} needs the {what} of object {obj!r} (state field {field_name}); "
                                   f"none given (have {sorted(source)})")
        value = np.asarray(source[obj], np.float64).reshape(-1)
        if value.size != (3 if kind == "pos" else 1) or not np.all(np.isfinite(value)):
            raise ObservationError(f"object {obj!r}: {kind} {value.tolist()} is not {3 if kind == 'pos' else 1} finite value(s)")
        if kind == "size" and not value[0] > 0:
            raise ObservationError(f"object {obj!r}: size must be > 0 m, got {value[0]}")
        values[field_name] = value
    return {"proprio": proprio, "state": spec.state.pack(values), "joint_pos_rad": reading.position.copy()}


DEPTH_ENCODINGS = ("32FC1", "16UC1")
"""REP 118: 32FC1 in metres, 16UC1 in millimetres."""


def depth_to_policy(image: np.ndarray, encoding: str, spec: TaskSpec) -> np.ndarray:
    """(H, W) depth in a camera driver's units -> the policies' [0, 1] depth (`sim_bridge.spec.depth_to_unit`).

    Invalid pixels (REP 118: 0 or NaN; also -Inf, too close) read as the far plane, +Inf (too far) too:
    the policies learnt on a scene whose background is at most `far`."""
    if not spec.depth_range_m:
        raise ObservationError(f"{spec.name} has no depth camera (no depth_range_m in its spec)")
    if encoding == "32FC1":
        metres = np.asarray(image, np.float32)
    elif encoding == "16UC1":
        metres = np.asarray(image, np.float32) * np.float32(1e-3)
    else:
        raise ObservationError(f"depth image encoding {encoding!r}; expected one of {', '.join(DEPTH_ENCODINGS)}")
    near, far = spec.depth_range_m
    metres = np.where(np.isfinite(metres) & (metres > 0), metres, np.float32(far))
    return depth_to_unit(metres, near, far)


class FrameStack:
    """The last `history` frames, oldest first; the first frame after a reset fills the stack (as the tasks do)."""

    def __init__(self, history: int):
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.history = history
        self.frames: deque[np.ndarray] = deque(maxlen=history)

    def reset(self) -> None:
        self.frames.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Add the newest frame; returns the stack (history, ...)."""
        if not self.frames:
            self.frames.extend([frame] * self.history)
        else:
            self.frames.append(frame)
        return np.stack(self.frames)
