"""The parameters of the rrl_ros nodes, declared once and without ROS: name, type, default, description.

Both nodes declare their ROS 2 parameters from these tables (`declare_node_parameters`), and
`rrl launch` checks `key:=value` arguments and parameter files against the same tables before it
starts any node (`rrl.param_check`), so a misspelled name, a wrong type or an out-of-range value
is refused with the file and line instead of an rcl traceback at start-up or a setting that is
silently ignored.

Types are bool, int, float and str. A float parameter accepts an integer (`rate_hz:=20`): YAML
and the ROS command line read `20` as an integer, and every ROS user writes it. Nothing else is
converted: an int parameter refuses `2.5` and `true`, a str parameter refuses `3`.

This module imports no ROS package at module level (the launcher imports it);
`declare_node_parameters` imports rcl_interfaces when a node calls it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

PARAM_TYPES = (bool, int, float, str)
TYPE_NAMES = {bool: "a bool", int: "an integer", float: "a float", str: "a string"}


class ParamError(ValueError):
    """A node parameter is unknown, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter."""

    name: str
    """Parameter name, as given with `-p name:=value` or in a parameter file."""
    type: type
    """One of bool, int, float, str (a float also accepts an integer)."""
    default: Any
    """Value when no override is given; of `type`."""
    description: str
    """One line for `ros2 param describe` and the launcher's messages."""
    read_only: bool = True
    """False only for the parameters `rrl switch` sets on the running node."""
    choices: tuple[str, ...] = ()
    """Allowed values of a str parameter (empty: any)."""
    minimum: float | None = None
    """Smallest allowed value of a number (None: no lower bound)."""
    positive: bool = False
    """The number must be > 0 (a period or a rate)."""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name}: type must be one of {PARAM_TYPES}, got {self.type}")
        self.check(self.default)  # a default that its own checks refuse is a bug here

    def check(self, value: Any) -> Any:
        """`value` in this parameter's type (an integer becomes a float for a float parameter), or ParamError."""
        got = type(value).__name__
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise ParamError(f"parameter {self.name} must be {TYPE_NAMES[self.type]}, got {value!r} ({got})")
        if self.type is float and not math.isfinite(value):
            raise ParamError(f"parameter {self.name} must be finite, got {value!r}")
        if self.choices and value not in self.choices:
            raise ParamError(f"parameter {self.name}={value!r}; expected one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(f"parameter {self.name}={value!r} must be >= {self.minimum:g}")
        if self.positive and not value > 0:
            raise ParamError(f"parameter {self.name}={value!r} must be > 0")
        return value


@dataclass(frozen=True)
class NodeParams:
    """The parameter table of one node executable."""

    executable: str
    """Console script in package rrl_ros (`ros2 run rrl_ros EXECUTABLE`)."""
    node_name: str
    """The node's default name (a launch file may rename it)."""
    params: tuple[ParamSpec, ...]
    """Every parameter the node declares, in declaration order."""

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.executable}: a parameter is declared twice in {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def spec(self, name: str) -> ParamSpec:
        """The spec of `name` (ours, or `use_sim_time`); an unknown name raises ParamError naming the closest one."""
        for p in (*self.params, USE_SIM_TIME):
            if p.name == name:
                return p
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParamError(f"unknown parameter {name!r} of {self.executable}{hint} "
                         f"(known: {', '.join(self.names)})")

    def check(self, name: str, value: Any) -> Any:
        """A known parameter's value in its type, or ParamError (unknown name, wrong type, out of range)."""
        return self.spec(name).check(value)

    def resolve(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value: the default or the checked override. Names rclpy itself declares pass
        (`use_sim_time` is type-checked: rclpy would log a non-bool and run on the wall clock)."""
        for name, value in overrides.items():
            if not is_ros_builtin(name):
                self.check(name, value)
        return {p.name: p.check(overrides[p.name]) if p.name in overrides else p.default for p in self.params}


def is_ros_builtin(name: str) -> bool:
    """Parameters every rclpy node declares itself (or reads as QoS overrides) and we do not check.

    `use_sim_time` is rclpy's too (declared by the node's time source: the node clock then follows the
    `/clock` topic, as remapped), but it is checked as a bool (USE_SIM_TIME): rclpy logs any other type
    and silently keeps the wall clock."""
    return name == "start_type_description_service" or name.startswith("qos_overrides.")


USE_SIM_TIME = ParamSpec("use_sim_time", bool, False, "ROS time from the /clock topic (rclpy's own parameter; "
                         "our launch files remap /clock to the stack's clock, `clock` under its namespace)")
"""rclpy's own parameter, declared by the node's time source, checked here so that `use_sim_time:=1` is refused.
Which node may set it in which clock mode: rrl_ros.sim_bridge_node and rrl_ros.control_node."""


RT_PRIORITY = ParamSpec("rt_priority", int, 0, "SCHED_FIFO priority 1..99 for every thread of the node (0: ordinary)",
                        minimum=0)
CLOCK_MODES = ("realtime", "lockstep", "driver")

SIM_BRIDGE = NodeParams("sim_bridge", "sim_bridge", (
    ParamSpec("task", str, "ur5_pick", "task name (sim_bridge.task_names())"),
    ParamSpec("episodes", int, 1, "episodes to run; the node exits after the last", minimum=1),
    ParamSpec("seed", int, 0, "seed of episode 0; episode i uses seed + i"),
    ParamSpec("max_ticks", int, 0, "stop after this many control ticks even mid-episode (0: no limit)", minimum=0),
    ParamSpec("clock_mode", str, "realtime", "realtime (wall clock) | lockstep (publishes `clock`, waits for commands) "
              "| driver (a robot driver: own clock, standard topics, rrl_ros.sim_driver)", choices=CLOCK_MODES),
    ParamSpec("rate_hz", float, 10.0, "control rate in realtime, Hz (the task's rate)", positive=True),
    ParamSpec("camera_px", int, 0, "square camera image size in px; 0 renders no camera (else >= 8)", minimum=0),
    ParamSpec("camera_history", int, 3, "frames the task stacks (the control node stacks its own)", minimum=1),
    ParamSpec("video", str, "", "record the first video_episodes episodes to this .mp4 file (H.264, a fixed "
              "third-person camera, sim_bridge.video); '' records none"),
    ParamSpec("video_episodes", int, 1, "episodes recorded with video", minimum=1),
    ParamSpec("shift", str, "", "environment shifts to run under, comma-separated (sim_bridge.shifts: camera_moved, "
              "heavy, slippery, distractor); '' runs the nominal task"),
    ParamSpec("command_timeout_periods", float, 2.0, "a command older than this many periods: hold", positive=True),
    ParamSpec("startup_timeout_s", float, 30.0, "wait at most this long for the controller to connect", minimum=0),
    ParamSpec("observers", int, 1, "start when every observation topic has this many subscribers: the controller, "
              "plus a recorder or monitor that must see the first tick (lockstep, realtime; driver: on joint_states)",
              minimum=1),
    ParamSpec("joint_states_hz", float, 125.0, "driver: joint state rate, Hz (the physics follows the wall clock)",
              positive=True),
    ParamSpec("object_pose_hz", float, 30.0, "driver: object pose rate, Hz", positive=True),
    ParamSpec("camera_hz", float, 15.0, "driver: depth camera rate, Hz (with camera_px > 0)", positive=True),
    ParamSpec("command_timeout_s", float, 0.1, "driver: a command older than this stops the arm (ur_robot_driver)",
              positive=True),
    RT_PRIORITY,
))

LOOPS = ("timer", "observation", "lockstep")
"""How the control node's loop is clocked (rrl_ros.control_node): its own timer on the latest inputs (a robot),
on each observation of our sim (realtime sim), or once per tick of the lockstep sim."""
COMMAND_INTERFACES = ("joint_velocity", "twist", "native")
"""policies.robot_commands.COMMAND_INTERFACES (not imported: this module stays import-light for the launcher)."""

CONTROL = NodeParams("control_node", "control", (
    ParamSpec("task", str, "ur5_pick", "task name (sim_bridge.task_names())"),
    ParamSpec("loop", str, "timer", "timer (own clock, latest standard inputs: a robot) | observation (our realtime "
              "sim's ticks) | lockstep (our lockstep sim)", choices=LOOPS),
    ParamSpec("command_interface", str, "joint_velocity", "joint_velocity (/forward_velocity_controller/commands) | "
              "twist (/servo_node/delta_twist_cmds) | native (/command; the only one in observation and lockstep)",
              choices=COMMAND_INTERFACES),
    ParamSpec("rate_hz", float, 10.0, "nominal control rate, Hz", positive=True),
    ParamSpec("base_controller", str, "waypoint", "base controller: waypoint, waypoint:VARIANT, replay:BAG_DIR (a "
              "recorded demo, replayed from each episode's seed) or bc; settable at run time",
              read_only=False),
    ParamSpec("base_artifact", str, "", "bc base: artifact directory or ONNX file; settable at run time",
              read_only=False),
    ParamSpec("residual", str, "", "residual: '' (none), artifact directory or ONNX file"),
    ParamSpec("residual_scale", float, 1.0, "residual scale c for a plain ONNX residual"),
    ParamSpec("stale_periods", float, 2.0, "observation loop: an observation older than this many periods holds "
              "the robot", positive=True),
    ParamSpec("joint_states_stale_periods", float, 2.0, "timer loop: joint states older than this many periods "
              "hold the robot", positive=True),
    ParamSpec("object_pose_stale_periods", float, 2.0, "timer loop: an object pose older than this many periods "
              "holds the robot", positive=True),
    ParamSpec("image_stale_periods", float, 3.0, "timer loop: a camera image older than this many periods holds "
              "the robot", positive=True),
    ParamSpec("cube_size_m", float, 0.05, "timer loop: the cube's edge, m, until a message on objects/cube/size "
              "(std_msgs/Float64, transient local) says otherwise", positive=True),
    ParamSpec("camera_history", int, 3, "frames stacked for image models", minimum=1),
    ParamSpec("status_observers", int, 0, "observation/lockstep: answer the first tick once ~/status has this many "
              "subscribers (a recorder or monitor that must see every status; at most 30 s, then anyway)", minimum=0),
    ParamSpec("autostart", bool, True, "configure and activate at start-up (false: wait for a lifecycle manager, "
              "`ros2 lifecycle set /control configure`, then `activate`)"),
    RT_PRIORITY,
))

NODES: dict[str, NodeParams] = {n.executable: n for n in (SIM_BRIDGE, CONTROL)}
"""Executable name in package rrl_ros -> its parameter table."""


def declare_node_parameters(node, table: NodeParams) -> dict[str, Any]:
    """Declare every parameter of `table` on an rclpy `node`; returns name -> value. Raises ParamError.

    The overrides (parameter files, `-p name:=value`) are checked against the table first, so an
    unknown name or a wrong type ends the node with one line naming the parameter, where rclpy would
    ignore the name or raise InvalidParameterTypeException; an integer for a float parameter is
    declared as the float. rclpy keeps the overrides in `Node._parameter_overrides` and offers no
    public accessor, hence the one private read.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    overrides = {name: p.value for name, p in node._parameter_overrides.items()}
    values = table.resolve(overrides)
    for spec in table.params:
        node.declare_parameter(spec.name, values[spec.name],
                               ParameterDescriptor(description=spec.description, read_only=spec.read_only),
                               ignore_override=True)
    return values


def init_rclpy(args: list[str] | None) -> None:
    """`rclpy.init(args=args)`, where rcl parses `--params-file` files; a file it cannot parse raises ParamError.

    rcl's message names the file and the line ("Couldn't parse params file: '--params-file F'. Error:
    Error parsing a event near line 3, at parse.c:776, ..."); the source locations are cut off.
    """
    import re

    import rclpy

    try:
        rclpy.init(args=args)
    except Exception as e:  # rclpy._rclpy_pybind11.RCLError, which rclpy does not export
        text = re.sub(r",? at /\S+:\d+", "", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise ParamError(f"cannot start: {text}") from None
