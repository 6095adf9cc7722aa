"""The sim_bridge node: owns one simulated task and plays the robot on ROS 2 topics.

Publishes (names relative to the node's namespace; the root namespace gives the
DESIGN.md names), in this order every tick:
  clock                    rosgraph_msgs/Clock        lockstep only: sim time = tick x period, on the stack's
                                                      own clock topic (/clock at the root, /a/clock in namespace a)
  /joint_states            sensor_msgs/JointState     task joint names, positions
  /robot/proprio           std_msgs/Float32MultiArray labelled by spec.proprio
  /task/state              std_msgs/Float32MultiArray labelled by spec.state
  /camera/depth|/camera/rgb sensor_msgs/Image         32FC1 | rgb8, newest frame; only with camera_px > 0
  robot_description, tf_static, tf                      UR5 only, as robot_state_publisher
                                                      (rrl_ros.tf_publisher): tf with each joint state,
                                                      tf_static at each episode start (with the camera's frame)
  /task/status             std_msgs/String (JSON), last of the tick:
      {"event": "tick", "tick", "episode", "episodes", "step", "seed", "success", "holding",
       "stamp_ns" (wall clock when the observation was published), "sim_time_ns" (tick x period)}
    plus {"event": "episode_end", "episode", "seed", "success", "steps"} when an episode ends
    and {"event": "finished", "results": [...], "success_rate"} after the last one.
Subscribes:
  /command                 std_msgs/Float64MultiArray labelled by spec.action, then a `tick` field:
                           the tick of the observation it answers (rrl_ros.conversions)

Which commands step the sim (`rrl_ros.sim_core.judge_command`):
- a command with a NaN/Inf anywhere is refused: the tick it answers holds (zero velocity, gripper
  kept) and it is counted in `nonfinite_commands` (logged once, with the fields);
- lockstep: only the command that answers the awaited tick steps the sim, once. Any other command
  (no tick field, another tick, a second publisher, a plain array) is not applied and is counted
  in `foreign_commands` (logged once, with the reason);
- realtime: a labelled command with or without the tick field, or a plain Float64MultiArray of
  exactly the action's length without a layout (`ros2 topic pub`), is applied;
- a command of the wrong layout or length is refused and counted in `bad_commands` (the first of
  each reason logged).

Clocks (parameter clock_mode; `driver`: the sim on a robot driver's standard topics and own clock, see
rrl_ros.sim_driver; the list of topics above is then that module's):
- realtime: a wall-clock timer at rate_hz is the one clock of the loop. Each tick
  publishes the current observation; the command that answers it is applied as
  soon as it arrives (the task steps one control period), and the result is
  published at the next tick. If no command answered the last observation, the
  tick steps anyway with the last command, or, once the last command is older
  than `command_timeout_periods` periods, with the hold action (zero velocity,
  gripper kept): a dead or hung controller leaves the robot standing still.
- lockstep: no timer; the task steps only when the command of the current tick
  arrives, then publishes `clock` and the next observation. Deterministic for a
  seed and as fast as the CPU allows. Without a command the robot is not stepped
  (it holds) and the node says so after `command_timeout_periods` periods.

Stamps and use_sim_time: in lockstep the node is its stack's clock: every header stamp is the sim time
of the tick (tick x period), the time it has just published on `clock`; `clock` is relative, so two
stacks in two namespaces run two clocks, and the launch files remap each node's `/clock` (what rclpy's
time source subscribes to) to its own stack's. Its watchdog (the first observation resent, `clock`
republished while a command is awaited, for a subscriber that lost it) runs on the steady clock.
In realtime and driver the header stamps come from the node clock, which is the wall clock there:
`use_sim_time:=true` is refused outside lockstep (nothing would publish the time this node's timer
runs on; in lockstep it is accepted and changes nothing).

Video (parameter `video`: an .mp4 path): the first `video_episodes` episodes are recorded from a fixed
third-person camera with an overlay (`sim_bridge.video.RecordingTask`; the episodes do not change). Each
recorded tick renders one frame inside the step, so in realtime it adds that time to the tick; lockstep
runs are unaffected but slower.

Parameters: `rrl_ros.params.SIM_BRIDGE` (name, type, default, description of each); an unknown
name or a wrong type ends the node at start-up with exit code 2 and one line naming it.

The node exits (code 0) when `episodes` episodes are done (or after `max_ticks` ticks); its report (episode
results, step times, ticks without a command, refused commands) goes to $RRL_REPORT_DIR/<name>.json.
"""

from __future__ import annotations

import signal
import sys
import time

import numpy as np
import rclpy
from rclpy.clock import Clock as SteadyClock
from rclpy.clock_type import ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

from controllers.safety import hold_action
from rrl_ros import conversions as conv
from rrl_ros.metrics import LoopMetrics
from rrl_ros.params import SIM_BRIDGE, ParamError, declare_node_parameters, init_rclpy
from rrl_ros.realtime import apply_rt_priority, set_fifo_priority
from rrl_ros.reports import write_node_report
from rrl_ros.sim_core import APPLY, FOREIGN, NONFINITE, EpisodeRunner, judge_command
from rrl_ros.sim_driver import CAMERA_FRAME, DriverLoop
from rrl_ros.tf_publisher import RobotStatePublisher
from sim_bridge import make_task, task_names, task_robot
from sim_bridge.shifts import parse_shifts
from sim_bridge.task import CameraConfig
from sim_bridge.ur5 import model as ur5_model
from sim_bridge.video import RecordingTask, VideoConfig

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
"""`command`: every command is judged, none dropped. With a 10-deep history a burst of foreign commands (a second
publisher) queued while the sim was busy could push the controller's one answer to a lockstep tick out unread,
and the tick then waited for it forever."""


class ParameterError(ValueError):
    """A node parameter is invalid; the message names it."""


class SimBridgeNode(Node):
    def __init__(self) -> None:
        try:
            super().__init__("sim_bridge")
        except InvalidParameterTypeException as e:  # rclpy's own use_sim_time (its time source declares it), not a bool
            raise ParameterError(str(e).split(": use_sim_time")[0]) from None
        try:
            p = declare_node_parameters(self, SIM_BRIDGE)
        except ParamError as e:
            raise ParameterError(str(e)) from None
        if p["task"] not in task_names():
            raise ParameterError(f"parameter task={p['task']!r} is not a known task; known: {task_names()}")
        if 0 < p["camera_px"] < 8:
            raise ParameterError(f"parameter camera_px={p['camera_px']!r} must be 0 (no camera) or >= 8")
        try:
            p["shifts"] = parse_shifts(p["shift"], task_robot(p["task"]))
        except ValueError as e:
            raise ParameterError(f"parameter shift={p['shift']!r}: {e}") from None
        self.rt_priority = apply_rt_priority(self, p["rt_priority"])
        self.p = p
        self.lockstep = p["clock_mode"] == "lockstep"
        if self.get_parameter("use_sim_time").value and not self.lockstep:
            raise ParameterError(f"parameter use_sim_time=true: in clock_mode {p['clock_mode']} the sim runs on the "
                                 f"wall clock and nothing publishes the sim time (only lockstep does, on `clock`)")
        self.period_s = 1.0 / float(p["rate_hz"])
        self.finished = False
        self.driver = None
        if p["clock_mode"] == "driver" and p["video"]:
            raise ParameterError("parameter video is recorded in clock_mode realtime or lockstep, not driver")
        if p["clock_mode"] == "driver":  # a robot driver's topics on its own clock: rrl_ros.sim_driver
            try:
                self.driver = DriverLoop(self, p)
            except ValueError as e:
                raise ParameterError(str(e)) from None
            self.task = self.driver.task
            return
        camera = CameraConfig(p["camera_px"], p["camera_px"], p["camera_history"]) if p["camera_px"] else None
        self.task = make_task(p["task"], camera=camera, shifts=p["shifts"])
        if p["video"]:  # the episodes are unchanged; each recorded tick costs one render (~60 ms at 320x240)
            try:
                self.task = RecordingTask(self.task, p["video"],
                                          VideoConfig(fps=float(p["rate_hz"]), episodes=p["video_episodes"]))
            except ValueError as e:
                self.task.close()
                raise ParameterError(f"parameter video={p['video']!r}: {e}") from None
        self.spec = self.task.spec
        self.limits = self.spec.action_limits
        self.runner = EpisodeRunner(self.task, p["episodes"], p["seed"])

        self.pub_clock = self.create_publisher(Clock, "clock", QOS) if self.lockstep else None
        self.pub_joints = self.create_publisher(JointState, "joint_states", QOS)
        self.pub_proprio = self.create_publisher(Float32MultiArray, "robot/proprio", QOS)
        self.pub_state = self.create_publisher(Float32MultiArray, "task/state", QOS)
        self.pub_image = self.create_publisher(Image, f"camera/{self.spec.camera}", QOS) if camera else None
        self.pub_status = self.create_publisher(String, "task/status", QOS)
        self.robot_state = RobotStatePublisher(self, ur5_model.ASSET_PATH.read_text()) \
            if self.spec.robot == "ur5" else None
        self.create_subscription(Float64MultiArray, "command", self.on_command, COMMAND_QOS)

        self.last_command: np.ndarray | None = None
        self.last_command_time = -float("inf")
        self.awaiting = False
        """True between publishing an observation and stepping on its command."""
        self.commands_received = 0
        self.ticks_without_command = 0
        self.hold_ticks = 0
        self.holding = False
        self.finished = False
        self.awaiting_since = 0.0
        self.bad_commands = 0
        """Commands refused for their layout or length."""
        self.nonfinite_commands = 0
        """Commands with NaN/Inf: the tick they answer holds."""
        self.foreign_commands = 0
        """Lockstep: commands that answer no awaited tick (not applied)."""
        self.logged: set[str] = set()
        """Kinds of refused command already logged (each kind is logged once, then counted)."""
        self.timer = None
        self.timer_metrics = LoopMetrics(self.period_s, deadlines=not self.lockstep)
        """Realtime: the sim timer's own period/jitter; 'latency' = time spent in the tick callback."""

    # --- the loop ------------------------------------------------------------------------------

    def start(self, executor: SingleThreadedExecutor) -> None:
        """Wait for the controller (its /command publisher, `observers` subscribers on every observation topic: the
        controller and whoever must see the first tick), then run."""
        if self.driver is not None:
            return self.driver.start(executor)
        deadline = time.monotonic() + float(self.p["startup_timeout_s"])
        while rclpy.ok() and time.monotonic() < deadline:
            observed = [self.pub_joints, self.pub_proprio, self.pub_state, self.pub_status]
            observed += [self.pub_image] if self.pub_image is not None else []
            if self.count_publishers(self.resolve_topic_name("command")) > 0 and \
                    all(pub.get_subscription_count() >= int(self.p["observers"]) for pub in observed):
                break
            executor.spin_once(timeout_sec=0.05)
        else:
            self.get_logger().warning("no controller connected within startup_timeout_s; starting anyway (holding)")
        if self.rt_priority:  # DDS made threads while matching the controller: they get the priority too
            set_fifo_priority(self.rt_priority)
        self.runner.start()
        self.get_logger().info(
            f"{self.spec.name}: {self.p['episodes']} episode(s) from seed {self.p['seed']}, {self.p['clock_mode']} "
            f"clock at {1 / self.period_s:g} Hz")
        self.publish_observation()
        if self.lockstep:
            # Before the first command, DDS may still be matching: resend the first observation until answered.
            # (steady clock: this node's ROS time, with use_sim_time, only moves when it steps)
            steady = SteadyClock(clock_type=ClockType.STEADY_TIME)
            self.timer = self.create_timer(0.5, self.lockstep_watchdog, clock=steady)
        else:
            self.timer = self.create_timer(self.period_s, self.realtime_tick)

    def on_command(self, msg: Float64MultiArray) -> None:
        try:
            command = conv.read_command(msg, self.spec.action)
        except conv.ConversionError as e:
            self.bad_commands += 1
            self.log_once(f"bad:{e}", f"ignoring command: {e}")
            return
        if self.finished:
            return
        awaited = self.runner.tick if self.awaiting else None
        verdict, reason = judge_command(command.action, command.tick, awaited, self.lockstep, self.spec.action)
        if verdict == FOREIGN:
            self.foreign_commands += 1
            self.log_once(FOREIGN, f"ignoring a foreign command: {reason} (further ones are counted in "
                                   f"foreign_commands, not logged)")
            return
        if verdict == NONFINITE:
            self.nonfinite_commands += 1
            self.log_once(NONFINITE, f"refusing a command with {reason}: holding the robot for that tick "
                                     f"(further ones are counted in nonfinite_commands, not logged)")
            action = hold_action(self.limits, self.last_command)
        else:
            assert verdict == APPLY
            self.commands_received += 1
            action = command.action
        self.last_command, self.last_command_time = action, time.monotonic()
        if self.awaiting:
            if verdict == NONFINITE:
                self.hold_ticks += 1
            self.holding = verdict == NONFINITE
            self.advance(action)
            if self.lockstep and not self.finished:
                self.publish_observation()

    def log_once(self, kind: str, text: str) -> None:
        if kind not in self.logged:
            self.logged.add(kind)
            self.get_logger().error(text)

    def realtime_tick(self) -> None:
        if self.finished:
            return
        started = time.monotonic()
        tick = self.runner.tick
        if self.awaiting:  # the last observation got no command in time
            self.ticks_without_command += 1
            age = time.monotonic() - self.last_command_time
            if self.last_command is not None and age <= self.p["command_timeout_periods"] * self.period_s:
                self.advance(self.last_command)
            else:
                if not self.holding:
                    self.get_logger().warning(f"no command for {age:.2f} s: holding the robot (zero velocity)")
                self.holding = True
                self.hold_ticks += 1
                self.advance(hold_action(self.limits, self.last_command))
        if not self.finished:
            self.publish_observation()
        self.timer_metrics.record(tick, started, time.monotonic() - started)

    def lockstep_watchdog(self) -> None:
        if self.finished or not self.awaiting:
            return
        waited = time.monotonic() - self.awaiting_since
        if self.runner.tick == 0:
            self.publish_observation()
            return
        self.pub_clock.publish(conv.clock_msg(self.sim_time_ns()))  # the same time again: for a subscriber that lost it
        if waited > self.p["command_timeout_periods"] * self.period_s and not self.holding:
            self.holding = True
            self.get_logger().warning(f"no command for tick {self.runner.tick} for {waited:.2f} s: holding the robot")
            self.publish_status({"event": "holding", "tick": self.runner.tick, "waited_s": round(waited, 3)})

    def advance(self, action: np.ndarray) -> None:
        self.awaiting = False
        record = self.runner.apply(action)
        if record is None:
            if self.p["max_ticks"] and self.runner.tick >= self.p["max_ticks"]:
                self.get_logger().info(f"max_ticks={self.p['max_ticks']} reached: stopping mid-episode")
                self.publish_status({"event": "finished", "success_rate": self.runner.summary()["success_rate"],
                                     "results": self.runner.summary()["results"]})
                self.write_report()
                self.finished = True
            return
        self.get_logger().info(f"episode {record.episode} (seed {record.seed}): "
                               f"{'success' if record.success else 'failure'} after {record.steps} steps")
        self.publish_status({"event": "episode_end", **record.as_dict()})
        self.write_report()
        if self.runner.finished:
            summary = self.runner.summary()
            self.publish_status({"event": "finished", "success_rate": summary["success_rate"],
                                 "results": summary["results"]})
            self.get_logger().info(f"all {summary['episodes']} episodes done: success rate {summary['success_rate']:.2f}")
            self.finished = True

    def sim_time_ns(self) -> int:
        return int(round(self.runner.tick * self.period_s * 1e9))

    def publish_observation(self) -> None:
        obs = self.runner.obs
        if self.lockstep:  # the headers: the time this stack's clock says; stamp_ns: the wall clock (latency)
            stamp_ns, now_ns = self.sim_time_ns(), time.time_ns()
        else:  # the node clock, which is the wall clock here (use_sim_time is refused outside lockstep)
            stamp_ns = now_ns = self.get_clock().now().nanoseconds
        if self.pub_clock is not None:
            self.pub_clock.publish(conv.clock_msg(stamp_ns))
        self.pub_joints.publish(conv.to_joint_state(self.spec.joint_names, obs["joint_pos_rad"], stamp_ns))
        if self.robot_state is not None:
            if self.runner.step == 0:  # an episode starts: the camera may have moved (randomize_viewpoint)
                self.robot_state.publish_static(conv.time_msg(stamp_ns), self.task)
            self.robot_state.publish(self.spec.joint_names, obs["joint_pos_rad"], conv.time_msg(stamp_ns))
        self.pub_proprio.publish(conv.to_float32_array(self.spec.proprio, obs["proprio"]))
        self.pub_state.publish(conv.to_float32_array(self.spec.state, obs["state"]))
        if self.pub_image is not None:
            frame = CAMERA_FRAME if self.robot_state is not None else "camera"  # the UR5's is in tf_static
            self.pub_image.publish(conv.to_image(obs[self.spec.camera][-1], stamp_ns, frame))
        self.awaiting, self.awaiting_since = True, time.monotonic()
        self.publish_status({
            "event": "tick", "tick": self.runner.tick, "episode": self.runner.episode, "episodes": self.p["episodes"],
            "step": self.runner.step, "seed": self.runner.episode_seed, "success": self.runner.success,
            "holding": self.holding, "stamp_ns": now_ns, "sim_time_ns": self.sim_time_ns(),
        })

    def publish_status(self, payload: dict) -> None:
        self.pub_status.publish(conv.to_json_string(payload))

    def report(self) -> dict:
        if self.driver is not None:
            return self.driver.report()
        return {"kind": "sim_bridge", "node": self.get_fully_qualified_name(), "task": self.spec.name,
                "clock_mode": self.p["clock_mode"], "seed": self.p["seed"], **self.runner.summary(),
                "commands_received": self.commands_received, "ticks_without_command": self.ticks_without_command,
                "hold_ticks": self.hold_ticks, "bad_commands": self.bad_commands,
                "nonfinite_commands": self.nonfinite_commands, "foreign_commands": self.foreign_commands,
                "finished": self.finished,
                "timer": self.timer_metrics.summary() if not self.lockstep else None}

    def write_report(self) -> None:
        write_node_report(self.get_name(), self.report())


def main(args: list[str] | None = None) -> int:
    try:
        init_rclpy(args)
    except ParamError as e:
        print(f"sim_bridge: {e}", file=sys.stderr)
        return 2
    node = None
    try:
        node = SimBridgeNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.start(executor)
        while rclpy.ok() and not node.finished:
            executor.spin_once(timeout_sec=0.1)
        return 0
    except ParameterError as e:
        print(f"sim_bridge: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already: a second Ctrl-C must not cut the report short
        if node is not None:
            node.write_report()
            node.task.close()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
