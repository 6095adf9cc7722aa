"""The control node: base controller + optional residual + safety layer, publishing /command.

A thin shell over `policies.runtime.ComposedPolicy`, the one policy path (base + residual +
safety layer) that `rrl eval` and the training rollouts run too: the node assembles the task
observation from the sim's topics, calls `step`, publishes the command. Only ROS concerns live here.

When does it compute? On the observation: the sim publishes one set per tick
(joint states, proprio, state, camera frame, then /task/status); once every topic
the models need has a message of the new tick, the command goes out. In realtime
the sim's wall-clock timer is therefore the one clock of the loop (a second,
unsynchronised timer here would add up to a period of latency, DESIGN.md); the
node's own 10 Hz timer is the watchdog: if the newest observation is older than
`stale_periods` periods it publishes the hold command (zero velocity, gripper
kept). In lockstep the node answers each observation; there is no deadline.

Parameters (read-only unless said; names, types, defaults and ranges: rrl_ros.params.CONTROL, where an
unknown name or a wrong type ends the node with exit code 2; a float parameter takes an integer):
  task                 task name (its spec names every vector)
  clock_mode           realtime | lockstep
  rate_hz              nominal control rate, Hz
  base_controller      waypoint | waypoint:VARIANT | bc  -- settable at run time (`rrl switch`)
  base_artifact        artifact dir or ONNX file for bc  -- settable at run time
  residual             '' | artifact dir | ONNX file (policies.plain_onnx: the plain contract)
  residual_scale       c for a plain-ONNX residual (artifacts carry their own)
  stale_periods        observation older than this many periods: hold
  camera_history       frames stacked for image models without their own camera spec
A change of base_controller/base_artifact is validated in the set-parameters
callback (the model is loaded and checked against the task and the residual);
a bad one is rejected with the reason, a good one is applied before the next tick.

Publishes `command` (Float64MultiArray, action layout followed by a `tick` field: the tick of the
observation it answers, so a lockstep sim steps on this answer only; the watchdog's hold command
answers no tick and carries none; see rrl_ros.conversions) and `~/status`
(std_msgs/String JSON per tick: tick, episode, step, base, reason, command,
base_action, residual, counters, latency_ms). Writes its loop metrics and
safety counters to $RRL_REPORT_DIR/<name>.json on shutdown.
"""

from __future__ import annotations

import sys
import time
from collections import deque

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

from controllers.safety import SafetyConfig
from rrl_ros import conversions as conv
from policies.base_spec import parse_node_base
from policies.runtime import LOAD_ERRORS, ComposedPolicy, check_residual_fits, load_base, load_residual
from rrl_ros.metrics import LoopMetrics
from rrl_ros.params import CONTROL, ParamError, declare_node_parameters, init_rclpy
from rrl_ros.realtime import apply_rt_priority, set_fifo_priority
from rrl_ros.reports import write_node_report
from sim_bridge import task_names
from sim_bridge.task_specs import task_spec

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


class ParameterError(ValueError):
    """A node parameter is invalid; the message names it."""


class ControlNode(Node):
    def __init__(self) -> None:
        super().__init__("control")
        try:  # every parameter's name, type, default and range: rrl_ros.params.CONTROL
            declare_node_parameters(self, CONTROL)
        except ParamError as e:
            raise ParameterError(str(e)) from None
        g = lambda name: self.get_parameter(name).value  # noqa: E731
        self.rt_priority = apply_rt_priority(self, g("rt_priority"))
        if g("task") not in task_names():
            raise ParameterError(f"parameter task={g('task')!r} is not a known task; known: {task_names()}")
        self.spec = task_spec(g("task"))
        self.lockstep = g("clock_mode") == "lockstep"
        self.period_s = 1.0 / float(g("rate_hz"))
        kind, artifact = g("base_controller"), g("base_artifact")
        try:
            self.base_spec = parse_node_base(kind, artifact)
            base = load_base(self.base_spec, self.spec)
            residual = load_residual(g("residual"), self.spec, self.base_spec, plain_scale=float(g("residual_scale"))) \
                if g("residual") else None
        except LOAD_ERRORS as e:
            raise ParameterError(str(e)) from None
        self.policy = ComposedPolicy(self.spec, base, residual,
                                     SafetyConfig(period_s=self.period_s, stale_periods=float(g("stale_periods"))))
        self.residual_name = g("residual")
        self.history = int(g("camera_history"))
        self.metrics = LoopMetrics(self.period_s, deadlines=not self.lockstep)
        self.pending_base = None
        self.swaps: list[dict] = []

        self.latest: dict[str, object] = {}
        self.fresh: set[str] = set()
        self.frames: deque = deque(maxlen=self.history)
        self.frames_episode = -1
        self.episode = -1
        self.last_answered_tick = -1
        self.last_obs_stamp_ns: int | None = None
        self.watchdog_holds = 0
        self.sim_finished = False

        self.pub_command = self.create_publisher(Float64MultiArray, "command", QOS)
        self.pub_status = self.create_publisher(String, "~/status", QOS)
        self.create_subscription(Float32MultiArray, "task/state", lambda m: self.on_message("state", m), QOS)
        self.create_subscription(Float32MultiArray, "robot/proprio", lambda m: self.on_message("proprio", m), QOS)
        self.create_subscription(JointState, "joint_states", lambda m: self.on_message("joints", m), QOS)
        self.create_subscription(Image, f"camera/{self.spec.camera}", lambda m: self.on_message("image", m), QOS)
        self.create_subscription(String, "task/status", self.on_status, QOS)
        self.add_on_set_parameters_callback(self.on_set_parameters)
        if not self.lockstep:
            self.create_timer(self.period_s, self.watchdog)
        self.get_logger().info(f"{self.spec.name}: base {self.base_spec.name}, residual {self.residual_name or 'none'}, "
                               f"{g('clock_mode')} at {1 / self.period_s:g} Hz")

    # --- parameters ------------------------------------------------------------------------------

    def on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        if not {"base_controller", "base_artifact"} & set(changes):
            return SetParametersResult(successful=True)
        kind = changes.get("base_controller", self.get_parameter("base_controller").value)
        artifact = changes.get("base_artifact", self.get_parameter("base_artifact").value)
        try:
            spec = parse_node_base(kind, artifact)
            base = load_base(spec, self.spec)
            check_residual_fits(getattr(self.policy.residual, "artifact", None), spec)
            if base.needs_images and "image" not in self.latest:
                raise ValueError(f"base {artifact} needs camera frames but none arrived on "
                                f"{self.resolve_topic_name('camera/' + self.spec.camera)} (start the sim with camera_px > 0)")
        except (*LOAD_ERRORS, ValueError) as e:
            self.get_logger().warning(f"rejected base change to {kind} {artifact!r}: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        name = spec.name
        self.pending_base = (base, spec, self.last_answered_tick)
        self.get_logger().info(f"base controller -> {name} (applied before the next tick)")
        return SetParametersResult(successful=True)

    # --- the loop --------------------------------------------------------------------------------

    def on_message(self, key: str, msg) -> None:
        self.latest[key] = msg
        self.fresh.add(key)
        self.try_tick()

    def on_status(self, msg: String) -> None:
        try:
            status = conv.from_json_string(msg)
        except conv.ConversionError as e:
            self.get_logger().error(str(e))
            return
        if status.get("event") == "tick":
            self.on_message("status", status)
        elif status.get("event") == "finished":
            self.sim_finished = True  # no more observations will come: the watchdog stands down

    def required(self) -> set[str]:
        need = {"state", "proprio", "joints", "status"}
        return need | {"image"} if self.policy.needs_images else need

    def try_tick(self) -> None:
        if not self.required() <= self.fresh:
            return
        status = self.latest["status"]
        if status["tick"] <= self.last_answered_tick:
            self.fresh.discard("status")  # a repeated observation (the sim resends until the first command)
            return
        # stamped messages must be of this tick (the sim stamps joints and images with the status' time)
        stamp = status["sim_time_ns"] if self.lockstep else status["stamp_ns"]
        stamped = ["joints"] + (["image"] if "image" in self.required() else [])
        if any(conv.time_ns(self.latest[key].header.stamp) != stamp for key in stamped):
            return
        self.fresh.clear()
        if self.pending_base is not None:
            base, spec, accepted_after_tick = self.pending_base
            self.pending_base = None
            self.policy.set_base(base)
            self.base_spec = spec
            self.swaps.append({"tick": status["tick"], "accepted_after_tick": accepted_after_tick, "base": spec.name})
        if self.last_answered_tick < 0 and self.rt_priority:
            set_fifo_priority(self.rt_priority)  # DDS made threads while matching the sim: they get the priority too
        if status["episode"] != self.episode:
            self.episode = status["episode"]
            self.policy.reset(int(status["seed"]))
        try:
            obs = self.observation(status)
        except conv.ConversionError as e:
            self.get_logger().error(f"cannot read the observation: {e}")
            return
        age_s = 0.0 if self.lockstep else max(0.0, (time.time_ns() - status["stamp_ns"]) * 1e-9)
        out = self.policy.step(obs, age_s)
        self.pub_command.publish(conv.to_command(self.spec.action, out.command, tick=int(status["tick"])))
        now_ns = time.time_ns()
        latency_s = (now_ns - status["stamp_ns"]) * 1e-9
        self.metrics.record(int(status["tick"]), time.monotonic(), latency_s)
        self.last_answered_tick = int(status["tick"])
        self.last_obs_stamp_ns = int(status["stamp_ns"])
        self.publish_status(status, out, latency_s)

    def observation(self, status: dict) -> dict:
        obs = {
            "state": conv.from_float32_array(self.latest["state"], self.spec.state, "task/state"),
            "proprio": conv.from_float32_array(self.latest["proprio"], self.spec.proprio, "robot/proprio"),
            "joint_pos_rad": conv.from_joint_state(self.latest["joints"], self.spec.joint_names),
        }
        if "image" in self.latest and self.policy.needs_images:
            frame = conv.from_image(self.latest["image"])
            if self.frames_episode != status["episode"] or status["step"] == 0 or not self.frames:
                self.frames.clear()
                self.frames.extend([frame] * self.history)
                self.frames_episode = status["episode"]
            else:
                self.frames.append(frame)
            obs[self.spec.camera] = np.stack(self.frames)
        return obs

    def watchdog(self) -> None:
        """Realtime only: no fresh observation for `stale_periods` periods -> publish the hold command."""
        if self.last_obs_stamp_ns is None or self.sim_finished:
            return
        age_s = (time.time_ns() - self.last_obs_stamp_ns) * 1e-9
        if age_s > self.policy.safety.config.stale_after_s:
            out = self.policy.hold()
            self.pub_command.publish(conv.to_command(self.spec.action, out.command))
            if self.watchdog_holds == 0:
                self.get_logger().warning(f"observation {age_s:.2f} s old: holding the robot (zero velocity)")
            self.watchdog_holds += 1

    def publish_status(self, status: dict, out, latency_s: float) -> None:
        tolist = lambda a: None if a is None else [round(float(x), 6) for x in np.asarray(a).reshape(-1)]  # noqa: E731
        self.pub_status.publish(conv.to_json_string({
            "tick": status["tick"], "episode": status["episode"], "step": status["step"], "base": self.base_spec.name,
            "reason": out.reason, "command": tolist(out.command), "base_action": tolist(out.base_action),
            "residual": tolist(out.residual_mean), "counters": self.policy.counters.as_dict(),
            "latency_ms": round(latency_s * 1e3, 3),
        }))

    def report(self) -> dict:
        return {"kind": "control", "node": self.get_fully_qualified_name(), "task": self.spec.name,
                "clock_mode": "lockstep" if self.lockstep else "realtime", "base": self.base_spec.name,
                "residual": self.residual_name or None, "metrics": self.metrics.summary(),
                "safety": self.policy.counters.as_dict(), "watchdog_holds": self.watchdog_holds,
                "base_errors": self.policy.counters.base_errors, "swaps": self.swaps}


def main(args: list[str] | None = None) -> int:
    try:
        init_rclpy(args)
    except ParamError as e:
        print(f"control_node: {e}", file=sys.stderr)
        return 2
    node = None
    try:
        node = ControlNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
        return 0
    except ParameterError as e:
        print(f"control_node: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        if node is not None:
            write_node_report(node.get_name(), node.report())
            m = node.metrics.summary()
            print(f"control: {m['ticks']} ticks, jitter p99 {m['jitter_p99_ms']} ms, latency p99 {m['latency_p99_ms']} ms, "
                  f"missed deadlines {m['missed_deadlines']}, safety {node.policy.counters.as_dict()}", flush=True)
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
