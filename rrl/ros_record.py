"""`rrl record --source ros`: record demonstrations from a running ROS 2 stack into the demo bag format.

A thin rclpy shell: it subscribes to the runtime's topics (`joint_states`,
`robot/proprio`, `task/state`, `camera/depth|rgb`, `task/status`, `command`,
relative to `namespace`), converts messages with `rrl_ros.conversions` (the
runtime's one conversions module) and hands numpy values to
`training.demos.stream.StreamRecorder`, which assembles steps and writes the
bag. Start it before (or with) the stack: it records from the next episode
start and stops once `episodes` episodes are kept or the stack says it is
finished. Subscriptions keep the last 1000 messages per topic (reliable), so a
lockstep stack running as fast as the CPU allows loses nothing.
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

from rrl_ros import conversions as conv
from sim_bridge.spec import TaskSpec
from training.demos.bag import DemoBagWriter
from training.demos.recording import RecordSummary
from training.demos.stream import StreamRecorder

QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)


class RecorderNode(Node):
    """Subscribes to one stack's topics and feeds a `StreamRecorder`."""

    def __init__(self, recorder: StreamRecorder, spec: TaskSpec, namespace: str = ""):
        if namespace:
            super().__init__("demo_recorder", namespace=namespace)
        else:
            super().__init__("demo_recorder")
        self.recorder = recorder
        self.spec = spec
        self.errors: list[str] = []
        self.create_subscription(JointState, "joint_states", self.on_joints, QOS)
        self.create_subscription(Float32MultiArray, "robot/proprio", self.on_proprio, QOS)
        self.create_subscription(Float32MultiArray, "task/state", self.on_state, QOS)
        if recorder.camera:
            self.create_subscription(Image, f"camera/{spec.camera}", self.on_image, QOS)
        self.create_subscription(String, "task/status", self.on_status, QOS)
        self.create_subscription(Float64MultiArray, "command", self.on_command, QOS)

    def _guard(self, what: str, fn) -> None:
        try:
            fn()
        except conv.ConversionError as e:
            self.errors.append(f"{what}: {e}")
            self.get_logger().error(f"{what}: {e}")

    # callbacks take (message, MessageInfo): the DDS source timestamp places each message in time

    def on_joints(self, msg: JointState, info) -> None:
        self._guard("joint_states", lambda: self.recorder.on_joints(
            conv.from_joint_state(msg, self.spec.joint_names), conv.time_ns(msg.header.stamp), info["source_timestamp"]))

    def on_proprio(self, msg: Float32MultiArray, info) -> None:
        self._guard("robot/proprio", lambda: self.recorder.on_proprio(
            conv.from_float32_array(msg, self.spec.proprio, "robot/proprio"), info["source_timestamp"]))

    def on_state(self, msg: Float32MultiArray, info) -> None:
        self._guard("task/state", lambda: self.recorder.on_state(
            conv.from_float32_array(msg, self.spec.state, "task/state"), info["source_timestamp"]))

    def on_image(self, msg: Image, info) -> None:
        self._guard("camera", lambda: self.recorder.on_frame(
            conv.from_image(msg), conv.time_ns(msg.header.stamp), info["source_timestamp"]))

    def on_status(self, msg: String, info) -> None:
        self._guard("task/status", lambda: self.recorder.on_status(conv.from_json_string(msg), info["source_timestamp"]))

    def on_command(self, msg: Float64MultiArray, info) -> None:
        self._guard("command", lambda: self.recorder.on_command(
            conv.from_command(msg, self.spec.action), info["source_timestamp"]))


def record_from_stack(writer: DemoBagWriter, spec: TaskSpec, camera: bool, episodes: int, keep_failures: bool,
                      namespace: str = "", timeout_s: float | None = None, progress: bool = True,
                      image_hw: tuple[int, int] | None = None) -> dict:
    """Record until `episodes` are kept, the stack finishes, `timeout_s` passes or Ctrl-C; returns a summary."""
    from tqdm import tqdm

    recorder = StreamRecorder(writer, spec, camera=camera, episodes=episodes, keep_failures=keep_failures,
                              image_hw=image_hw)
    rclpy.init()
    node = RecorderNode(recorder, spec, namespace)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print(f"recording {spec.name} from topics under '{node.get_namespace()}': ready", file=sys.stderr, flush=True)
    bar = tqdm(total=episodes, desc=f"record {spec.name} from ROS", unit="ep", disable=not progress)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    stopped_by = "episodes"
    try:
        while not recorder.finished:
            executor.spin_once(timeout_sec=0.1)
            bar.n = len(recorder.summary.kept)
            bar.set_postfix(step=recorder.written_steps if recorder.current is not None else "-",
                            attempts=recorder.summary.attempts)
            if deadline is not None and time.monotonic() > deadline:
                stopped_by = "timeout"
                break
        else:
            if len(recorder.summary.kept) < episodes:
                stopped_by = "stack finished"
        # drain what is already delivered (e.g. the last command after a "finished" status)
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        recorder.close()
        bar.close()
        node.destroy_node()
        rclpy.try_shutdown()
    summary: RecordSummary = recorder.summary
    if len(summary.kept) >= episodes:
        stopped_by = "episodes"
    return {**summary.to_dict(), "stopped_by": stopped_by, "filled_actions": recorder.filled_actions,
            "skipped_ticks": recorder.skipped_ticks, "dropped_ticks": recorder.dropped_ticks,
            "conversion_errors": len(node.errors)}
