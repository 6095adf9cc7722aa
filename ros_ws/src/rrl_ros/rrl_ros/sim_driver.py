"""`sim_bridge clock_mode:=driver`: our UR5 sim on standard ROS 2 robot-driver topics, on its own clock.

The sim then looks to the control node exactly as a real UR5 behind ur_robot_driver would (the
physics: `sim_bridge.ur5.driver.DriverSim`). Names relative to the node's namespace:

Publishes (wall clock stamps, frame_id `base_link` unless said):
  joint_states                    sensor_msgs/JointState, positions and velocities, `joint_states_hz` (125 Hz)
  objects/<object>/pose           geometry_msgs/PoseStamped per object (cube; bowl or target), `object_pose_hz` (30 Hz)
  objects/cube/size               std_msgs/Float64, the cube's edge (m), transient local, at each episode start
  camera/depth/image_raw          sensor_msgs/Image 32FC1 in metres (REP 118), frame `camera_depth_optical_frame`,
                                  `camera_hz` (15 Hz), only with camera_px > 0
  camera/depth/camera_info        sensor_msgs/CameraInfo (pinhole from the render's field of view) with each image
  robot_description, tf_static, tf  the URDF and its transforms, as robot_state_publisher (`rrl_ros.tf_publisher`):
                                  tf with each joint state, tf_static with the camera's optical frame each episode
  task/status                     std_msgs/String JSON: {"event": "tick", "episode", "seed", "step", "success"} every
                                  control period, "episode_end" and "finished" as the other clock modes
Subscribes (the newest command is applied continuously; older than `command_timeout_s` (0.1 s): the arm stops):
  forward_velocity_controller/commands  std_msgs/Float64MultiArray, 6 joint velocities, rad/s
  servo_node/delta_twist_cmds           geometry_msgs/TwistStamped, linear m/s in base_link (tool kept pointing down)
  command                               the native action (tool_vel, gripper): applied as a twist plus the gripper
  gripper_controller/commands           std_msgs/Float64MultiArray, [opening m] (0 closed .. 0.11 open)
A command of the wrong length or with NaN/Inf is refused (counted, the first of each kind logged).
Episodes run back to back (seed + i) until `episodes` are done (or `max_ticks` control periods of 0.1 s have
passed); the node then exits 0 with its report.
"""

from __future__ import annotations

import math
import time

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, Float64MultiArray, String

from rrl_ros import conversions as conv
from rrl_ros.metrics import LoopMetrics
from rrl_ros.robot_state import CAMERA_OPTICAL_FRAME
from rrl_ros.tf_publisher import RobotStatePublisher
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from sim_bridge.ur5 import model
from sim_bridge.ur5.driver import DriverSim

QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
BASE_FRAME = "base_link"
CAMERA_FRAME = CAMERA_OPTICAL_FRAME
COMMAND_TOPICS = ("forward_velocity_controller/commands", "servo_node/delta_twist_cmds", "command")


class DriverLoop:
    """The driver-mode behaviour of one sim_bridge node (composition: it creates its topics on `node`)."""

    def __init__(self, node, p: dict):
        self.node, self.p = node, p
        camera = CameraConfig(p["camera_px"], p["camera_px"], p["camera_history"]) if p["camera_px"] else None
        self.task = make_task(p["task"], camera=camera, shifts=p.get("shifts", ()))
        if self.task.spec.robot != "ur5":
            raise ValueError(f"clock_mode driver runs the UR5 tasks only, not {p['task']}")
        self.spec = self.task.spec
        self.sim = DriverSim(self.task, command_timeout_s=float(p["command_timeout_s"]))
        self.camera = camera
        n = node
        self.pub_joints = n.create_publisher(JointState, "joint_states", QOS)
        self.objects = list(self.sim_objects())
        self.pub_poses = {o: n.create_publisher(PoseStamped, f"objects/{o}/pose", QOS) for o in self.objects}
        self.pub_size = n.create_publisher(Float64, "objects/cube/size", LATCHED_QOS)
        self.pub_image = n.create_publisher(Image, "camera/depth/image_raw", QOS) if camera else None
        self.pub_info = n.create_publisher(CameraInfo, "camera/depth/camera_info", QOS) if camera else None
        self.pub_status = n.create_publisher(String, "task/status", QOS)
        self.robot_state = RobotStatePublisher(n, model.ASSET_PATH.read_text())
        n.create_subscription(Float64MultiArray, COMMAND_TOPICS[0], self.on_joint_velocity, QOS)
        n.create_subscription(TwistStamped, COMMAND_TOPICS[1], self.on_twist, QOS)
        n.create_subscription(Float64MultiArray, COMMAND_TOPICS[2], self.on_native, QOS)
        n.create_subscription(Float64MultiArray, "gripper_controller/commands", self.on_gripper, QOS)
        self.episode = 0
        self.results: list[dict] = []
        self.commands = {"joint_velocity": 0, "twist": 0, "native": 0, "gripper": 0}
        self.bad_commands = 0
        self.logged: set[str] = set()
        self.episode_start_s = 0.0
        self.next_pose_s = self.next_image_s = 0.0
        self.last_step = -1
        self.control_periods = 0
        """Control periods (0.1 s simulated) over all episodes: what `max_ticks` counts."""
        self.timer_metrics = LoopMetrics(1.0 / float(p["joint_states_hz"]))
        self.timer = None

    def sim_objects(self):
        self.task.reset(int(self.p["seed"]))
        return self.sim.object_poses().keys()

    # --- commands ----------------------------------------------------------------------------------

    def refuse(self, kind: str, text: str) -> None:
        self.bad_commands += 1
        if kind not in self.logged:
            self.logged.add(kind)
            self.node.get_logger().error(f"refusing a {kind} command: {text} (further ones are counted in bad_commands)")

    def values(self, msg, n: int, kind: str) -> np.ndarray | None:
        v = np.asarray(msg.data, np.float64)
        if v.size != n:
            self.refuse(kind, f"{v.size} values, expected {n}")
            return None
        if not np.all(np.isfinite(v)):
            self.refuse(kind, "non-finite values")
            return None
        return v

    def on_joint_velocity(self, msg: Float64MultiArray) -> None:
        v = self.values(msg, 6, "joint_velocity")
        if v is not None:
            self.commands["joint_velocity"] += 1
            self.sim.set_joint_velocity(v, time.monotonic())

    def on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        v = np.array([t.linear.x, t.linear.y, t.linear.z])
        if not np.all(np.isfinite(v)) or not all(math.isfinite(x) for x in (t.angular.x, t.angular.y, t.angular.z)):
            self.refuse("twist", "non-finite values")
            return
        if msg.header.frame_id not in ("", BASE_FRAME):
            self.refuse("twist", f"frame {msg.header.frame_id!r}, expected {BASE_FRAME}")
            return
        self.commands["twist"] += 1
        self.sim.set_tool_velocity(v, time.monotonic())

    def on_native(self, msg: Float64MultiArray) -> None:
        try:
            command = conv.read_command(msg, self.spec.action)
        except conv.ConversionError as e:
            self.refuse("native", str(e))
            return
        a = command.action
        if not np.all(np.isfinite(a)):
            self.refuse("native", "non-finite values")
            return
        self.commands["native"] += 1
        fields = self.spec.action.unpack(self.spec.clip_action(a))
        self.sim.set_tool_velocity(fields["tool_vel"], time.monotonic())
        self.sim.set_gripper_opening(0.0 if fields["gripper"][0] > 0.5 else 0.11)

    def on_gripper(self, msg: Float64MultiArray) -> None:
        v = self.values(msg, 1, "gripper")
        if v is not None:
            self.commands["gripper"] += 1
            self.sim.set_gripper_opening(float(v[0]))

    # --- the loop ----------------------------------------------------------------------------------

    def controller_connected(self) -> bool:
        n = self.node
        commanding = any(n.count_publishers(n.resolve_topic_name(t)) > 0 for t in COMMAND_TOPICS)
        return commanding and self.pub_joints.get_subscription_count() >= int(self.p["observers"])

    def start(self, executor) -> None:
        deadline = time.monotonic() + float(self.p["startup_timeout_s"])
        while time.monotonic() < deadline and not self.controller_connected():
            executor.spin_once(timeout_sec=0.05)
        if not self.controller_connected():
            self.node.get_logger().warning("no controller connected within startup_timeout_s; starting anyway")
        self.start_episode()
        self.node.get_logger().info(
            f"{self.spec.name}: {self.p['episodes']} episode(s) from seed {self.p['seed']}, driver clock: joint states "
            f"{self.p['joint_states_hz']:g} Hz, object poses {self.p['object_pose_hz']:g} Hz"
            + (f", depth camera {self.p['camera_hz']:g} Hz" if self.camera else ""))
        self.timer = self.node.create_timer(1.0 / float(self.p["joint_states_hz"]), self.on_timer)

    def start_episode(self) -> None:
        seed = int(self.p["seed"]) + self.episode
        self.sim.reset(seed)
        self.episode_start_s = time.monotonic()
        self.next_pose_s = self.next_image_s = 0.0
        self.last_step = -1
        self.pub_size.publish(Float64(data=self.sim.cube_size_m))
        self.robot_state.publish_static(self.node.get_clock().now().to_msg(), self.task)
        self.publish_status({"event": "tick", "episode": self.episode, "seed": seed, "step": 0, "success": False})
        self.publish_measurements(0.0, force=True)

    def on_timer(self) -> None:
        if self.node.finished:
            return
        started = time.monotonic()
        end = self.sim.advance_to(started - self.episode_start_s, started)
        if end is not None:
            end.episode = self.episode
            self.control_periods += end.steps - max(self.last_step, 0)
            self.end_episode(end)
            return
        if self.sim.steps != self.last_step:
            self.control_periods += self.sim.steps - max(self.last_step, 0)
            self.last_step = self.sim.steps
            if self.p["max_ticks"] and self.control_periods >= self.p["max_ticks"]:
                self.node.get_logger().info(f"max_ticks={self.p['max_ticks']} control periods reached: stopping")
                self.finish()
                return
            self.publish_status({"event": "tick", "episode": self.episode, "seed": self.sim.seed,
                                 "step": self.sim.steps, "success": self.sim.success})
        self.publish_measurements(self.sim.time_s)
        self.timer_metrics.record(self.timer_metrics.ticks, started, time.monotonic() - started)

    def end_episode(self, end) -> None:
        self.results.append(end.as_dict())
        self.node.get_logger().info(f"episode {end.episode} (seed {end.seed}): "
                                    f"{'success' if end.success else 'failure'} after {end.steps} steps")
        self.publish_status({"event": "episode_end", **end.as_dict()})
        self.episode += 1
        if self.episode >= int(self.p["episodes"]):
            self.node.get_logger().info(f"all {len(self.results)} episodes done: success rate "
                                        f"{self.summary()['success_rate']:.2f}")
            self.finish()
            return
        self.start_episode()
        self.node.write_report()
        self.timer_metrics.break_chain()

    def finish(self) -> None:
        summary = self.summary()
        self.publish_status({"event": "finished", "success_rate": summary["success_rate"], "results": summary["results"]})
        self.node.finished = True
        self.node.write_report()

    def publish_measurements(self, t_s: float, force: bool = False) -> None:
        stamp = self.node.get_clock().now().to_msg()
        q, qdot = self.sim.joint_state()
        js = JointState(name=list(self.spec.joint_names), position=q.tolist(), velocity=qdot.tolist())
        js.header.stamp, js.header.frame_id = stamp, BASE_FRAME
        self.pub_joints.publish(js)
        self.robot_state.publish(js.name, q, stamp)
        if force or t_s >= self.next_pose_s:
            self.next_pose_s = t_s + 1.0 / float(self.p["object_pose_hz"])
            for name, (pos, quat) in self.sim.object_poses().items():
                self.pub_poses[name].publish(conv.to_pose_stamped(pos, quat, stamp, BASE_FRAME))
        if self.pub_image is not None and (force or t_s >= self.next_image_s):
            self.next_image_s = t_s + 1.0 / float(self.p["camera_hz"])
            self.pub_image.publish(conv.to_depth_image_m(self.task.render_depth_m(), stamp, CAMERA_FRAME))
            self.pub_info.publish(self.camera_info(stamp))

    def camera_info(self, stamp) -> CameraInfo:
        """Pinhole intrinsics of the rendered camera (vertical field of view `CameraPose.fov_deg`)."""
        w, h = self.camera.width_px, self.camera.height_px
        f = 0.5 * h / math.tan(math.radians(self.task.camera_pose.fov_deg) / 2)
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob", d=[0.0] * 5,
                          k=[f, 0.0, w / 2, 0.0, f, h / 2, 0.0, 0.0, 1.0],
                          r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                          p=[f, 0.0, w / 2, 0.0, 0.0, f, h / 2, 0.0, 0.0, 0.0, 1.0, 0.0])
        info.header.stamp, info.header.frame_id = stamp, CAMERA_FRAME
        return info

    def publish_status(self, payload: dict) -> None:
        self.pub_status.publish(conv.to_json_string(payload))

    # --- report ------------------------------------------------------------------------------------

    def summary(self) -> dict:
        n = len(self.results)
        wins = [r["steps"] for r in self.results if r["success"]]
        return {"episodes": n, "success_rate": len(wins) / n if n else 0.0,
                "mean_steps_success": float(np.mean(wins)) if wins else None, "results": list(self.results)}

    def report(self) -> dict:
        return {"kind": "sim_bridge", "node": self.node.get_fully_qualified_name(), "task": self.spec.name,
                "clock_mode": "driver", "seed": self.p["seed"], **self.summary(), "ticks": self.control_periods,
                "commands": dict(self.commands),
                "bad_commands": self.bad_commands, "command_timeouts": self.sim.command_timeouts,
                "lagged_physics_steps": self.sim.lagged_steps, "finished": self.node.finished,
                "timer": self.timer_metrics.summary()}
