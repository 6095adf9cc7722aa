"""The control node: base controller + optional residual + safety layer, commanding the robot.

A thin shell over `policies.runtime.ComposedPolicy`, the one policy path (base + residual +
safety layer) that `rrl eval` and the training rollouts run too: the node assembles the task
observation, calls `step`, publishes the command. Only ROS concerns live here.

When does it compute? Parameter `loop`:
- `timer` (the default; a robot, or our sim in `clock_mode:=driver`): the node's own timer at
  `rate_hz` (on the node's clock: ROS time, so `use_sim_time` is honoured) runs the policy on the
  *latest* message of each standard input, each with its own staleness limit
  (`*_stale_periods`): sensor_msgs/JointState on `joint_states`, geometry_msgs/PoseStamped on
  `objects/<object>/pose` for each object the task's state names (cube, bowl), sensor_msgs/Image
  on `camera/depth/image_raw` (32FC1 m or 16UC1 mm) when a model reads images, and the cube's
  edge from `cube_size_m` or `objects/cube/size` (std_msgs/Float64, transient local). The
  observation is assembled by `policies.observations.ur5_observation` (FK, Jacobian). A stale or
  missing required input, or inputs that do not make an observation (wrong joint names), hold the
  robot: zero velocity on the command interface, gripper kept; counted per input in the report
  and logged once. The safety layer also keeps the tool in the task's workspace box. Sensor
  inputs are subscribed best-effort, so both RELIABLE and best-effort (SensorDataQoS) drivers match.
  Commands (`command_interface`): `joint_velocity` -> std_msgs/Float64MultiArray (6 rad/s) on
  `forward_velocity_controller/commands`; `twist` -> geometry_msgs/TwistStamped (frame base_link)
  on `servo_node/delta_twist_cmds`; `native` -> `command` (the task action, no tick field); the
  gripper (not native) -> Float64MultiArray [opening m] on `gripper_controller/commands`.
  Episodes: `task/status` (optional; our sim publishes it) or the `~/reset` service
  (std_srvs/Trigger) start a new episode (the base's state, the frame history).
  One executor thread runs every callback (as the sim does); a base swap validates the files in the
  parameter callback and loads the model on a thread of its own, applied at the next tick after.
- `observation` (our realtime sim): the sim publishes one set per tick (joint states, proprio,
  state, camera frame, then /task/status); once every topic the models need has a message of
  the new tick, the command goes out. The sim's wall-clock timer is the one clock of the loop;
  the node's own timer is the watchdog: if the newest observation is older than
  `stale_periods` periods it publishes the hold command (zero velocity, gripper kept). A base
  swap loads off the loop thread, as in `timer`.
- `lockstep` (our lockstep sim): the node answers each observation; there is no deadline, so a
  base swap loads inside the parameter call and applies at exactly the next tick (deterministic).

Clocks and stamps: every stamp the node sets (`~/status` `stamp_ns`, /diagnostics and TwistStamped
headers) and every timer is on the node clock, ROS time, so `use_sim_time` (rclpy's own parameter; the
launch files remap `/clock` to the stack's own `clock`) is honoured. Defaults (the launch files):
lockstep true (the stamps of tick k are its sim time k x period, the time the sim publishes on its
clock; when the clock message arrives after the observation, the tick waits for it, so each tick is
still answered exactly once and deterministically); observation false, and true is refused (our
realtime sim publishes no clock: the watchdog would never fire); timer false (a robot), true under a
simulator that publishes the clock. Loop metrics (period, jitter, latency against the sim's
wall-clock `stamp_ns`) stay on the wall clock whatever the node clock; observation ages are 0 in
lockstep by design (the sim waits for the answer), wall-clock in observation, node-clock (against the
inputs' header stamps) in timer.

Parameters (read-only unless said; names, types, defaults and ranges: rrl_ros.params.CONTROL, where an
unknown name or a wrong type ends the node with exit code 2; a float parameter takes an integer):
  task, loop, command_interface, rate_hz, base_controller / base_artifact (settable at run time:
  `rrl switch`), residual, residual_scale, stale_periods, joint_states_stale_periods,
  object_pose_stale_periods, image_stale_periods, cube_size_m, camera_history, rt_priority.
A change of base_controller/base_artifact is validated in the set-parameters callback (the model
is loaded and checked against the task); a bad one is rejected with the reason, a good one is applied
before the next tick. The residual is kept across swaps: it runs on the base it was trained on (its
artifact's `base`) and is suspended, the base running alone, on any other (also from start-up: a
residual trained on the bc base may start on the waypoint base and engage when bc is swapped in);
`~/status` and the report say `residual_engaged`, the report counts `residual_suspended_ticks`. The
pair may come in either order or in one atomic call: `base_controller: bc` without an artifact is
accepted and waits for `base_artifact`; an artifact set under a waypoint base is kept for a later
`base_controller: bc`.

Publishes, in observation and lockstep, `command` (Float64MultiArray, action layout followed by a
`tick` field: the tick of the observation it answers, so a lockstep sim steps on this answer only;
the watchdog's hold command answers no tick and carries none; see rrl_ros.conversions; it has no
header), and in every loop `~/status` (std_msgs/String JSON per tick: tick, stamp_ns (the node clock
when the tick's command went out), base, reason, command, base_action, residual, counters,
latency_ms; plus episode and step from the sim, or the stale inputs). Writes
its loop metrics and safety counters to $RRL_REPORT_DIR/<name>.json on shutdown.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import deque

import numpy as np
import rclpy
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock as SteadyClock
from rclpy.clock import JumpThreshold
from rclpy.clock_type import ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray, String
from std_srvs.srv import Trigger

from controllers.safety import SafetyConfig, WorkspaceLimits
from policies.base_spec import BaseSpecError, is_replay, is_waypoint, parse_node_base
from policies.observations import FrameStack, ObservationError, joint_reading, required_objects, ur5_observation
from policies.robot_commands import robot_command
from policies.artifact import ArtifactError, load_artifact
from policies.runtime import LOAD_ERRORS, ComposedPolicy, Tick, load_base, load_residual, residual_fits
from rrl_ros import conversions as conv
from rrl_ros.inputs import LatestInputs
from rrl_ros.metrics import LoopMetrics, percentiles_ms
from rrl_ros.params import CONTROL, ParamError, declare_node_parameters, init_rclpy
from rrl_ros.realtime import apply_rt_priority, set_fifo_priority
from rrl_ros.reports import write_node_report
from sim_bridge import task_names
from sim_bridge.task_specs import task_spec

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SENSOR_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
"""Sensor inputs of the timer loop: a best-effort subscription matches RELIABLE and best-effort (SensorDataQoS) drivers."""
GIL_SWITCH_INTERVAL_S = 1e-4
"""The timer loop's thread: how soon CPython makes another thread hand over the GIL (default 5 ms)."""
STATUS_MATCH_SETTLE_S = 2.0
"""How long the first tick waits after ~/status has its subscribers, for them to match this writer too (0.5 s
missed ticks 0-1 on one run in four with two namespaced stacks starting together on 2 cores)."""
STATUS_OBSERVERS_TIMEOUT_S = 30.0
"""How long the first tick waits for `status_observers` subscribers on ~/status."""
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
HOLD_REASONS = ("stale_hold", "nonfinite_hold", "workspace_hold", "input_hold")
"""Tick verdicts that hold the robot: every velocity goes out as exactly zero."""


def json_dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class ParameterError(ValueError):
    """A node parameter is invalid; the message names it."""


class ControlNode(LifecycleNode):
    def __init__(self) -> None:
        try:
            super().__init__("control")
        except InvalidParameterTypeException as e:  # rclpy's own use_sim_time (its time source declares it), not a bool
            raise ParameterError(str(e).split(": use_sim_time")[0]) from None
        try:  # every parameter's name, type, default and range: rrl_ros.params.CONTROL
            declare_node_parameters(self, CONTROL)
        except ParamError as e:
            raise ParameterError(str(e)) from None
        g = lambda name: self.get_parameter(name).value  # noqa: E731
        self.rt_priority = apply_rt_priority(self, g("rt_priority"))
        if g("task") not in task_names():
            raise ParameterError(f"parameter task={g('task')!r} is not a known task; known: {task_names()}")
        self.spec = task_spec(g("task"))
        self.loop = g("loop")
        self.lockstep = self.loop == "lockstep"
        self.interface = g("command_interface")
        if self.loop != "timer" and self.interface != "native":
            raise ParameterError(f"parameter command_interface={self.interface!r}: loop {self.loop!r} drives our sim, "
                                 f"which takes the native /command only (use loop:=timer for a robot driver)")
        self.sim_time = bool(g("use_sim_time"))
        if self.sim_time and self.loop == "observation":
            raise ParameterError("parameter use_sim_time=true with loop observation: our realtime sim runs on the wall "
                                 "clock and publishes no clock, so the watchdog would never fire (use_sim_time is for "
                                 "loop lockstep, or loop timer under a simulator that publishes /clock)")
        self.period_s = 1.0 / float(g("rate_hz"))
        self.autostart = bool(g("autostart"))
        self.active = False
        self.stopping = False
        self.policy = None
        self.loop_error: str | None = None
        """Timer loop: what ended the loop thread, if anything did (the node then shuts down and exits 1)."""
        self.configure_error = ""

    # --- lifecycle: configure loads and validates the models, activate starts the loop, deactivate holds ------

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.configure()
        except ParameterError as e:
            self.configure_error = str(e)
            self.get_logger().error(f"configure failed: {e}")
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        self.active = True
        self.get_logger().info("active: the loop runs")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self.active = False
        self.publish_hold()
        self.get_logger().info("inactive: holding the robot (zero velocity) until activated again")
        return super().on_deactivate(state)

    def publish_hold(self) -> None:
        """The hold command (zero velocity, gripper kept) on the node's command interface, not counted as a tick."""
        if self.policy is None:
            return
        hold = self.policy.safety.hold()
        if self.loop == "timer":
            self.publish_robot_command(robot_command(self.interface, self.spec, hold, None, self.policy.safety, hold=True),
                                       self.get_clock().now())
        else:
            self.pub_command.publish(conv.to_command(self.spec.action, hold))

    def configure(self) -> None:
        """Load and check the models, build the composed policy, create the loop's topics and timers."""
        g = lambda name: self.get_parameter(name).value  # noqa: E731
        kind, artifact = g("base_controller"), g("base_artifact")
        try:
            self.base_spec = parse_node_base(kind, artifact)
            base = load_base(self.base_spec, self.spec)
            residual = load_residual(g("residual"), self.spec, self.base_spec, plain_scale=float(g("residual_scale")),
                                     check_fit=False) if g("residual") else None
        except LOAD_ERRORS as e:
            raise ParameterError(str(e)) from None
        if self.loop == "timer":
            if self.spec.robot != "ur5":
                raise ParameterError(f"task {self.spec.name}: loop 'timer' reads standard robot inputs, which exist for "
                                     f"the UR5 tasks only; run {self.spec.robot} tasks with loop:=observation or lockstep")
            limits = {"joint_states": g("joint_states_stale_periods"), "objects": g("object_pose_stale_periods"),
                      "image": g("image_stale_periods")}
            safety = SafetyConfig(period_s=self.period_s, stale_periods=float(max(limits.values())),
                                  workspace=WorkspaceLimits.from_spec(self.spec))
        else:
            safety = SafetyConfig(period_s=self.period_s, stale_periods=float(g("stale_periods")))
        self.policy = ComposedPolicy(self.spec, base, residual, safety)
        self.residual_name = g("residual")
        self.policy.residual_engaged = self.residual_engages(self.base_spec)
        self.history = int(g("camera_history"))
        self.metrics = LoopMetrics(self.period_s, deadlines=not self.lockstep)
        self.pending_base = None
        self.started_tick = -1
        """The last tick that started (the loop thread and the parameter services share it under swap_lock)."""
        self.swap_lock = threading.Lock()
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
        self.status_observers = int(g("status_observers"))
        self.status_matched_at: float | None = None
        """Monotonic s when ~/status first had `status_observers` subscribers."""
        self.status_wait_until: float | None = None
        """Monotonic s until which the first tick waits for `status_observers` subscribers on ~/status."""
        self.clock_wait: tuple[int, float] | None = None
        """Lockstep with use_sim_time: (tick, monotonic s) of a tick waiting for its clock message."""
        self.clock_wait_logged = False
        self.clock_waits = 0
        """Lockstep with use_sim_time: ticks whose observation arrived before their clock message (then answered)."""

        self.pub_status = self.create_publisher(String, "~/status", QOS)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", QOS)
        self.diag_last = (time.monotonic(), 0, 0)
        """(monotonic s, ticks, missed deadlines) at the last /diagnostics message."""
        self.last_reason = ""
        if self.loop == "timer":
            self.setup_timer_loop(limits, float(g("cube_size_m")))
        else:
            self.pub_command = self.create_publisher(Float64MultiArray, "command", QOS)
            self.create_subscription(Float32MultiArray, "task/state", lambda m: self.on_message("state", m), QOS)
            self.create_subscription(Float32MultiArray, "robot/proprio", lambda m: self.on_message("proprio", m), QOS)
            self.create_subscription(JointState, "joint_states", lambda m: self.on_message("joints", m), QOS)
            self.create_subscription(Image, f"camera/{self.spec.camera}", lambda m: self.on_message("image", m), QOS)
            self.create_subscription(String, "task/status", self.on_status, QOS)
            if not self.lockstep:
                self.create_timer(self.period_s, self.watchdog)
            elif self.sim_time:  # a tick that arrived before its clock message is answered when the clock gets there
                retry = self.create_guard_condition(self.try_tick)
                self.clock_jumps = self.get_clock().create_jump_callback(
                    JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None, on_clock_change=False),
                    post_callback=lambda jump: retry.trigger())
                self.create_timer(1.0, self.check_clock, clock=SteadyClock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self.on_set_parameters)
        self.create_timer(1.0, self.publish_diagnostics)  # default callback group: never waits for the loop
        self.get_logger().info(f"{self.spec.name}: base {self.base_spec.name}, residual {self.residual_name or 'none'}, "
                               f"loop {self.loop} at {1 / self.period_s:g} Hz"
                               + (f", commands on {self.interface}" if self.loop == "timer" else ""))

    # --- parameters ------------------------------------------------------------------------------

    def on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        if not {"base_controller", "base_artifact"} & set(changes):
            return SetParametersResult(successful=True)
        kind = changes.get("base_controller", self.get_parameter("base_controller").value)
        artifact = changes.get("base_artifact", self.get_parameter("base_artifact").value)
        if kind == "bc" and not artifact:  # the pair in two calls, controller first: wait for the artifact
            self.get_logger().info("base_controller bc: waiting for base_artifact (the base is unchanged until then)")
            return SetParametersResult(successful=True)
        if (is_waypoint(kind) or is_replay(kind)) and "base_controller" not in changes:  # kept for a later bc
            try:
                parse_node_base("bc", artifact) if artifact else None
            except BaseSpecError as e:
                return SetParametersResult(successful=False, reason=str(e))
            self.get_logger().info(f"base_artifact {artifact!r} kept for base_controller bc (the base stays {kind})")
            return SetParametersResult(successful=True)
        if self.loop != "lockstep":  # a loop with deadlines never waits for a model to load
            return self.accept_base_async(kind, artifact)
        try:
            spec = parse_node_base(kind, artifact)
            base = load_base(spec, self.spec)
            if base.needs_images and not self.has_image():
                raise ValueError(f"base {artifact} needs camera frames but none arrived on "
                                 f"{self.resolve_topic_name(self.image_topic())} (start the sim with camera_px > 0)")
        except (*LOAD_ERRORS, ValueError) as e:
            self.get_logger().warning(f"rejected base change to {kind} {artifact!r}: {e}")
            return SetParametersResult(successful=False, reason=str(e))
        name = spec.name
        with self.swap_lock:  # applied at the start of the first tick after the last one that started
            self.pending_base = (base, spec, self.started_tick)
        self.get_logger().info(f"base controller -> {name} (applied before the next tick)")
        return SetParametersResult(successful=True)

    def accept_base_async(self, kind: str, artifact: str) -> SetParametersResult:
        """Timer and observation loops: the checks that read only files here (form, artifact, task, residual, camera), the model
        itself (ONNX session, graph check, warm-up: up to ~0.5 s) loaded on a thread of its own, applied at the
        first tick after it is ready: the loop, on the executor's one thread, never waits for a swap."""
        try:
            spec = parse_node_base(kind, artifact)
            if spec.kind == "artifact":
                art = load_artifact(spec.path, self.spec, check_graph=False)
                if art.kind not in ("bc", "req_prior", "crr_prior"):
                    raise ArtifactError(f"{art.describe()} cannot be a base (kind {art.kind!r})")
                if any(i.is_image for i in art.inputs) and not self.has_image():
                    raise ValueError(f"base {artifact} needs camera frames but none arrived on "
                                     f"{self.resolve_topic_name(self.image_topic())}")
        except (*LOAD_ERRORS, ValueError) as e:
            self.get_logger().warning(f"rejected base change to {kind} {artifact!r}: {e}")
            return SetParametersResult(successful=False, reason=str(e))

        def load() -> None:
            try:
                base = load_base(spec, self.spec)
            except (*LOAD_ERRORS, ValueError) as e:
                self.swaps.append({"tick": None, "base": spec.name, "failed": str(e)})
                self.get_logger().error(f"base change to {spec.name} failed while loading: {e}; the base stays")
                return
            with self.swap_lock:
                self.pending_base = (base, spec, self.started_tick)
            self.get_logger().info(f"base controller -> {spec.name} (loaded; applied at the next tick)")

        threading.Thread(target=load, name="base_loader", daemon=True).start()
        return SetParametersResult(successful=True)

    def image_topic(self) -> str:
        return "camera/depth/image_raw" if self.loop == "timer" else f"camera/{self.spec.camera}"

    def has_image(self) -> bool:
        """A camera frame has arrived (the timer loop's input table, else the per-tick set)."""
        return "image" in (self.inputs.latest if self.loop == "timer" else self.latest)

    def apply_pending_base(self, tick: int) -> None:
        """At the start of tick `tick`: the base change accepted since the last tick started, if any."""
        with self.swap_lock:
            pending, self.pending_base = self.pending_base, None
            self.started_tick = tick
        if pending is not None:
            base, spec, accepted_after_tick = pending
            self.policy.set_base(base, residual_engaged=self.residual_engages(spec))
            self.base_spec = spec
            swap = {"tick": tick, "accepted_after_tick": accepted_after_tick, "base": spec.name}
            if self.policy.residual is not None:
                swap["residual"] = "engaged" if self.policy.residual_engaged else "suspended"
            self.swaps.append(swap)

    def residual_engages(self, spec) -> bool:
        """Whether the residual runs on base `spec` (it fits it); says so once per base it is suspended on."""
        if self.policy.residual is None:
            return False
        if residual_fits(self.policy.residual, spec):
            return True
        trained_on = getattr(getattr(self.policy.residual, "artifact", None), "base", None)
        self.get_logger().warning(f"residual {self.residual_name} was trained on base {trained_on!r}, not "
                                  f"{spec.text!r}: it is kept but suspended (the base runs alone) until base "
                                  f"{trained_on!r} is active again")
        return False

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
        if not self.active or not self.required() <= self.fresh:
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
        if self.lockstep and self.sim_time and self.now_ns() < stamp:
            if self.clock_wait is None:
                self.clock_wait, self.clock_waits = (int(status["tick"]), time.monotonic()), self.clock_waits + 1
            return  # the stack's clock is not at this tick yet (clock_jumps calls again when it is)
        if self.last_answered_tick < 0 and not self.status_observed():
            return  # the sim resends its first observation until answered (lockstep) or ticks on (realtime)
        self.clock_wait = None
        self.fresh.clear()
        self.apply_pending_base(int(status["tick"]))
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
        stamp_ns = self.now_ns()  # lockstep with use_sim_time: the tick's sim time (the clock waits for this answer)
        self.pub_command.publish(conv.to_command(self.spec.action, out.command, tick=int(status["tick"])))
        self.last_reason = out.reason
        now_ns = time.time_ns()
        latency_s = (now_ns - status["stamp_ns"]) * 1e-9
        self.metrics.record(int(status["tick"]), time.monotonic(), latency_s)
        with self.swap_lock:
            self.last_answered_tick = int(status["tick"])
        self.last_obs_stamp_ns = int(status["stamp_ns"])
        self.publish_status(status, out, latency_s, stamp_ns)

    def status_observed(self) -> bool:
        """Before the first tick: whether ~/status has had `status_observers` subscribers for STATUS_MATCH_SETTLE_S
        (or 30 s have passed). The settle time is for DDS: this writer counts a subscriber as soon as it has matched
        it, but the subscriber drops what it receives until it has matched this writer in turn, a moment later."""
        if self.status_observers == 0:
            return True
        now = time.monotonic()
        if self.pub_status.get_subscription_count() >= self.status_observers:
            self.status_matched_at = self.status_matched_at or now
            return now - self.status_matched_at >= STATUS_MATCH_SETTLE_S
        if self.status_wait_until is None:
            self.status_wait_until = time.monotonic() + STATUS_OBSERVERS_TIMEOUT_S
        if time.monotonic() < self.status_wait_until:
            return False
        self.get_logger().warning(f"~/status has {self.pub_status.get_subscription_count()} of "
                                  f"{self.status_observers} subscribers after {STATUS_OBSERVERS_TIMEOUT_S:g} s; "
                                  "answering anyway")
        self.status_observers = 0
        return True

    def check_clock(self) -> None:
        """Lockstep with use_sim_time (steady clock, 1 Hz): say once if a tick has waited > 2 s for its clock."""
        if self.clock_wait is not None and time.monotonic() - self.clock_wait[1] > 2.0 and not self.clock_wait_logged:
            self.clock_wait_logged = True
            waited_s = time.monotonic() - self.clock_wait[1]
            self.get_logger().error(
                f"tick {self.clock_wait[0]} has waited {waited_s:.1f} s for the sim time on "
                f"{self.resolve_topic_name('/clock')} (use_sim_time=true): is the sim publishing its clock there?")

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
        if self.last_obs_stamp_ns is None or self.sim_finished or not self.active:
            return
        age_s = (time.time_ns() - self.last_obs_stamp_ns) * 1e-9
        if age_s > self.policy.safety.config.stale_after_s:
            out = self.policy.hold()
            self.pub_command.publish(conv.to_command(self.spec.action, out.command))
            if self.watchdog_holds == 0:
                self.get_logger().warning(f"observation {age_s:.2f} s old: holding the robot (zero velocity)")
            self.watchdog_holds += 1

    def publish_status(self, status: dict, out, latency_s: float, stamp_ns: int, **extra) -> None:
        tolist = lambda a: None if a is None else [round(float(x), 6) for x in np.asarray(a).reshape(-1)]  # noqa: E731
        self.pub_status.publish(conv.to_json_string({
            "tick": status["tick"], "stamp_ns": stamp_ns, "episode": status["episode"], "step": status["step"],
            "base": self.base_spec.name,
            "reason": out.reason, "command": tolist(out.command), "base_action": tolist(out.base_action),
            "residual": tolist(out.residual_mean), "residual_engaged": self.policy.residual_engaged,
            "counters": self.policy.counters.as_dict(),
            "latency_ms": round(latency_s * 1e3, 3), **extra,
        }))

    def publish_diagnostics(self) -> None:
        """/diagnostics at 1 Hz: loop rate, jitter and latency (last 100 ticks), missed deadlines, stale inputs,
        fallbacks, base and residual (rate: over the last second's periods). Level WARN while the robot is held or deadlines were missed this second,
        ERROR when the loop made no tick for a second (after it had started)."""
        now, m = time.monotonic(), self.metrics
        last_time, last_ticks, last_missed = self.diag_last
        self.diag_last = (now, m.ticks, m.missed_deadlines)
        recent = m.periods_s[-int(round(1 / self.period_s)):]  # the last second's periods
        rate = 1.0 / float(np.mean(recent)) if recent and m.ticks > last_ticks else 0.0
        window = lambda values: [round(float(np.percentile(values[-100:], 99)) * 1e3, 3)] if values else [None]  # noqa: E731
        jitter = window([abs(p - self.period_s) for p in m.periods_s[-100:]]) if not self.lockstep else [None]
        stale = sorted(self.inputs.stale(self.required_inputs(), self.now_ns(), count=False)) \
            if self.loop == "timer" and self.tick else []
        counters = self.policy.counters
        values = {"loop": self.loop, "rate_hz": round(rate, 2), "nominal_rate_hz": round(1 / self.period_s, 3),
                  "jitter_p99_ms": jitter[0], "latency_p99_ms": window(m.latencies_s)[0],
                  "missed_deadlines": m.missed_deadlines, "ticks": m.ticks, "stale_inputs": ",".join(stale),
                  "stale_holds": counters.stale_holds, "nonfinite_fallbacks": counters.nonfinite_fallbacks,
                  "nonfinite_holds": counters.nonfinite_holds, "base_errors": counters.base_errors,
                  "workspace_clips": counters.workspace_clips, "base": self.base_spec.name,
                  "residual": self.residual_name or "none", "residual_engaged": self.policy.residual_engaged,
                  "last_reason": self.last_reason}
        if self.loop == "timer":
            values["stale_ticks"] = json_dumps(self.inputs.stale_ticks)
        if m.ticks == last_ticks and m.ticks > 0 and not self.sim_finished:
            level, message = "error", "no control tick for a second"
        elif stale or self.last_reason in HOLD_REASONS:
            level, message = "warn", "holding the robot: " + (", ".join(stale) or self.last_reason)
        elif m.missed_deadlines > last_missed:
            level, message = "warn", f"{m.missed_deadlines - last_missed} missed deadline(s) in the last second"
        elif m.ticks == 0:
            level, message = "warn", "waiting for inputs"
        else:
            level, message = "ok", f"{rate:.1f} Hz"
        self.pub_diagnostics.publish(conv.to_diagnostic_array(
            f"rrl control: {self.get_fully_qualified_name()}", self.spec.name, level, message, values,
            self.get_clock().now().to_msg()))

    def report(self) -> dict:
        out = {"kind": "control", "node": self.get_fully_qualified_name(), "task": self.spec.name, "loop": self.loop,
               "clock_mode": "lockstep" if self.lockstep else "realtime", "use_sim_time": self.sim_time,
               "clock_waits": self.clock_waits,
               "base": self.base_spec.name,
               "residual": self.residual_name or None, "residual_engaged": self.policy.residual_engaged,
               "residual_suspended_ticks": self.policy.suspended_ticks, "metrics": self.metrics.summary(),
               "safety": self.policy.counters.as_dict(), "watchdog_holds": self.watchdog_holds,
               "base_errors": self.policy.counters.base_errors, "swaps": self.swaps}
        if self.loop == "timer":
            out["metrics"].update(percentiles_ms(self.compute_s, "compute"))
            out.update({"schedule": "rclpy timer (ROS time)" if self.sim_time else "loop thread (wall clock)",
                        "skipped_deadlines": self.skipped_deadlines, "loop_error": self.loop_error,
                        "command_interface": self.interface, "stale_inputs": dict(self.inputs.stale_ticks),
                        "input_errors": self.input_errors, "held_ticks": self.held_ticks,
                        "episodes_started": self.episodes_started})
        return out

    # --- the timer loop (robot-facing) -------------------------------------------------------------

    def setup_timer_loop(self, stale_periods: dict[str, float], cube_size_m: float) -> None:
        loop_group = ReentrantCallbackGroup()  # input callbacks only store the newest message
        self.pose_objects, self.size_objects = required_objects(self.spec)
        self.object_size_m = {name: cube_size_m for name in self.size_objects}
        limits = {"joint_states": stale_periods["joint_states"] * self.period_s}
        topics = {"joint_states": self.resolve_topic_name("joint_states")}
        for name in self.pose_objects:
            limits[f"objects/{name}/pose"] = stale_periods["objects"] * self.period_s
            topics[f"objects/{name}/pose"] = self.resolve_topic_name(f"objects/{name}/pose")
        limits["image"] = stale_periods["image"] * self.period_s
        topics["image"] = self.resolve_topic_name(self.image_topic())
        # all the state the callbacks touch exists before the first subscription (the executor may already spin)
        self.inputs = LatestInputs(limits, topics)
        self.frame_stack = FrameStack(self.history)
        self.previous_reading = None
        self.tick = 0
        self.compute_s: list[float] = []
        """Per tick: the timer firing -> the command published, s."""
        self.held_ticks = 0
        self.input_errors = 0
        self.episodes_started = 0
        self.logged: set[str] = set()
        self.hold_logged = False
        self.tick_lock = threading.Lock()
        """Held by a tick and by an episode reset (the ~/reset service, task/status) so they never interleave."""
        if self.interface == "joint_velocity":
            self.pub_joint_velocity = self.create_publisher(Float64MultiArray, "forward_velocity_controller/commands", QOS)
        elif self.interface == "twist":
            self.pub_twist = self.create_publisher(TwistStamped, "servo_node/delta_twist_cmds", QOS)
        else:
            self.pub_command = self.create_publisher(Float64MultiArray, "command", QOS)
        if self.interface != "native":
            self.pub_gripper = self.create_publisher(Float64MultiArray, "gripper_controller/commands", QOS)
        sub = lambda msg_type, topic, callback, qos=SENSOR_QOS: self.create_subscription(  # noqa: E731
            msg_type, topic, callback, qos, callback_group=loop_group)
        sub(JointState, "joint_states", lambda m: self.on_input("joint_states", m))
        for name in self.pose_objects:
            sub(PoseStamped, f"objects/{name}/pose", lambda m, k=f"objects/{name}/pose": self.on_input(k, m))
        for name in self.size_objects:
            sub(Float64, f"objects/{name}/size", lambda m, n=name: self.on_size(n, m), LATCHED_QOS)
        sub(Image, self.image_topic(), lambda m: self.on_input("image", m))
        sub(String, "task/status", self.on_task_status, QOS)
        self.create_service(Trigger, "~/reset", self.on_reset_service, callback_group=loop_group)
        self.scheduled_ns = 0
        self.loop_stop = threading.Event()
        self.skipped_deadlines = 0
        if self.sim_time:  # ROS time from a simulator's clock: rclpy's timer follows that clock
            self.timer = self.create_timer(self.period_s, self.on_timer_tick)
        else:  # the wall clock (a robot): the loop's own thread on an absolute schedule (run_loop)
            self.loop_thread = threading.Thread(target=self.run_loop, name="rrl_control_loop", daemon=True)
            self.loop_thread.start()

    def on_timer_tick(self) -> None:
        """The rclpy timer's callback (use_sim_time): notes when this call was due (for the deadline), then ticks."""
        woke_s = time.monotonic()
        self.scheduled_ns = self.now_ns() + self.timer.time_until_next_call() - self.timer.timer_period_ns
        with self.tick_lock:
            self.on_timer(woke_s)

    def run_loop(self) -> None:
        """The timer loop's own thread, on the wall clock: tick k starts at t0 + k period of CLOCK_MONOTONIC (an
        absolute schedule: no drift, however long a tick takes), as a ros2_control controller manager runs its
        update loop. Under SCHED_FIFO (rt_priority) it wakes within tens of microseconds, where rclpy's timer waits
        for the executor to finish the input callbacks already in hand (jitter p99 ~2.6 ms at 125 Hz joint states).
        A tick that overruns its period skips the deadlines that passed meanwhile (counted as missed): the next
        tick is the next one still ahead, never a burst of late ones."""
        # a thread that wakes must take the GIL from the executor's thread (its wait set is built in Python): ask
        # for it back after 0.1 ms rather than CPython's 5 ms, or a wake-up that finds the executor busy waits
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        period_ns = int(round(self.period_s * 1e9))
        due_ns = time.monotonic_ns() + period_ns
        while not self.loop_stop.is_set():
            remaining_ns = due_ns - time.monotonic_ns()
            if remaining_ns > 0 and self.loop_stop.wait(remaining_ns * 1e-9):
                return
            woke_ns = time.monotonic_ns()
            self.scheduled_ns = self.now_ns() - (woke_ns - due_ns)  # the due time on the node clock
            try:
                with self.tick_lock:
                    self.on_timer(woke_ns * 1e-9)
            except Exception as e:  # noqa: BLE001  (the loop must not die silently: the node stops with the reason)
                if self.stopping or not rclpy.ok():
                    return  # the context shut down under a tick (Ctrl-C): nothing to report
                self.loop_error = f"{type(e).__name__}: {e}"
                self.get_logger().error(f"the control loop stopped: {self.loop_error}")
                rclpy.try_shutdown()
                return
            due_ns += period_ns
            late_ns = time.monotonic_ns() - due_ns
            if late_ns >= 0:  # this tick ran past one or more deadlines: skip to the next one ahead
                skipped = late_ns // period_ns + 1
                self.skipped_deadlines += skipped
                self.metrics.missed_deadlines += skipped
                due_ns += skipped * period_ns

    def stop_loop(self) -> None:
        """End the loop thread (if any) before the report and shutdown."""
        if getattr(self, "loop_stop", None) is not None:
            self.loop_stop.set()
            thread = getattr(self, "loop_thread", None)
            if thread is not None:
                thread.join(timeout=2.0)

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def on_input(self, key: str, msg) -> None:
        self.inputs.put(key, msg, conv.time_ns(msg.header.stamp), self.now_ns())

    def on_size(self, name: str, msg: Float64) -> None:
        if np.isfinite(msg.data) and msg.data > 0:
            self.object_size_m[name] = float(msg.data)
        else:
            self.log_once(f"size:{name}", f"ignoring objects/{name}/size = {msg.data!r}: must be > 0 m")

    def on_task_status(self, msg: String) -> None:
        try:
            status = conv.from_json_string(msg)
        except conv.ConversionError:
            return
        if status.get("event") in ("tick", "episode_start") and status.get("episode", self.episode) != self.episode:
            with self.tick_lock:
                self.start_episode(int(status["episode"]), int(status.get("seed", 0)))

    def on_reset_service(self, request, response):
        with self.tick_lock:
            self.start_episode(self.episode + 1, 0)
        response.success, response.message = True, f"episode {self.episode} started"
        return response

    def start_episode(self, episode: int, seed: int) -> None:
        self.episode = episode
        self.policy.reset(seed)
        self.frame_stack.reset()
        self.previous_reading = None
        self.episodes_started += 1

    def log_once(self, kind: str, text: str) -> None:
        if kind not in self.logged:
            self.logged.add(kind)
            self.get_logger().error(text)

    def required_inputs(self) -> list[str]:
        keys = ["joint_states"] + [f"objects/{n}/pose" for n in self.pose_objects]
        return keys + (["image"] if self.policy.needs_images else [])

    def on_timer(self, woke_s: float) -> None:
        """One tick of the robot-facing loop: latest inputs -> observation -> policy -> command interface. `woke_s`:
        when the tick started (monotonic s): the loop's period and jitter are its wake-ups'."""
        if not self.active:  # configured, not (or no longer) active: the robot is held
            self.publish_hold()
            return
        started_ns = self.now_ns()
        # the newest messages as they are now (the executor thread stores new ones while the loop thread ticks)
        inputs = self.inputs.snapshot()
        if self.episode < 0:
            self.start_episode(0, 0)
        self.apply_pending_base(self.tick)
        required = self.required_inputs()
        stale = inputs.stale(required, started_ns)
        reading, obs, out = None, None, None
        if stale:
            out = self.policy.hold()
            if not self.hold_logged:
                self.get_logger().warning("holding the robot (zero velocity): " + "; ".join(
                    inputs.describe(k, a) for k, a in stale.items()))
                self.hold_logged = True
        else:
            try:
                js = inputs.latest["joint_states"].msg
                reading = joint_reading(js.name, js.position, js.velocity,
                                        inputs.latest["joint_states"].stamp_ns * 1e-9, self.spec)
                positions = {n: conv.from_pose_position(inputs.latest[f"objects/{n}/pose"].msg)
                             for n in self.pose_objects}
                obs = ur5_observation(self.spec, reading, positions, self.object_size_m, self.previous_reading)
                if self.policy.needs_images:
                    img = inputs.latest["image"].msg
                    obs[self.spec.camera] = self.frame_stack.push(conv.depth_image_for_policy(img, self.spec))
            except (ObservationError, conv.ConversionError) as e:
                self.input_errors += 1
                self.log_once(f"obs:{e}", f"cannot make the observation, holding the robot: {e}")
                obs = None
                out = Tick(self.policy.safety.hold(), None, None, "input_hold")
        if obs is not None:
            self.hold_logged = False
            ages = [inputs.age_s(k, started_ns) for k in required]
            out = self.policy.step(obs, max(ages))
            self.previous_reading = reading
        hold = out.reason in HOLD_REASONS or out.reason.startswith("base_error")
        self.held_ticks += hold
        arm_q = None if reading is None else reading.position[:6]
        cmd = robot_command(self.interface, self.spec, out.command, arm_q, self.policy.safety, hold=hold)
        stamp = self.get_clock().now()
        self.publish_robot_command(cmd, stamp)
        now_ns = stamp.nanoseconds
        compute_s = (now_ns - started_ns) * 1e-9
        self.compute_s.append(compute_s)
        newest = inputs.newest_stamp_ns(required)
        # latency: the newest input's stamp -> this command; a held tick answers no input: its compute time
        latency_s = (now_ns - newest) * 1e-9 if newest is not None and obs is not None else compute_s
        lateness_s = (now_ns - self.scheduled_ns) * 1e-9  # publish time - the time this tick was due
        self.metrics.record(self.tick, woke_s, latency_s, lateness_s=lateness_s)
        self.last_reason = out.reason
        self.publish_status({"tick": self.tick, "episode": self.episode, "step": None}, out, latency_s, now_ns,
                            stale=sorted(stale))
        with self.swap_lock:
            self.last_answered_tick = self.tick
        self.tick += 1
        if self.tick == 1 and self.rt_priority:
            set_fifo_priority(self.rt_priority)

    def publish_robot_command(self, cmd, stamp) -> None:
        if self.interface == "joint_velocity":
            self.pub_joint_velocity.publish(Float64MultiArray(data=cmd.joint_velocity_rad_s.tolist()))
        elif self.interface == "twist":
            self.pub_twist.publish(conv.to_twist_stamped(cmd.tool_velocity_m_s, stamp.to_msg(), "base_link"))
        else:
            self.pub_command.publish(conv.to_command(self.spec.action, cmd.action))
        if self.interface != "native":
            self.pub_gripper.publish(Float64MultiArray(data=[cmd.gripper_opening_m]))


def main(args: list[str] | None = None) -> int:
    try:
        init_rclpy(args)
    except ParamError as e:
        print(f"control_node: {e}", file=sys.stderr)
        return 2
    node = None
    try:
        node = ControlNode()
        if node.autostart:  # else a lifecycle manager drives it: `ros2 lifecycle set /control configure`, `activate`
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise ParameterError(node.configure_error or "configure failed")
            node.trigger_activate()
        # one thread for every callback, as the sim: rclpy's multi-threaded executor, tried for the timer loop,
        # fired its timer up to 580 ms late under load (bench/control_loop.py --loop timer); a base swap loads
        # its model on a thread of its own instead (accept_base_async)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
        return 1 if node.loop_error else 0
    except ParameterError as e:
        print(f"control_node: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 1 if node is not None and node.loop_error else 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping already: a second Ctrl-C must not cut the report short
        if node is not None:
            node.stopping = True
            node.stop_loop()
        if node is not None and node.policy is not None:
            write_node_report(node.get_name(), node.report())
            m = node.metrics.summary()
            print(f"control: {m['ticks']} ticks, jitter p99 {m['jitter_p99_ms']} ms, latency p99 {m['latency_p99_ms']} ms, "
                  f"missed deadlines {m['missed_deadlines']}, safety {node.policy.counters.as_dict()}", flush=True)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
