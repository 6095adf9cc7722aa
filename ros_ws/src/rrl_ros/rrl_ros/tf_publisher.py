"""robot_state_publisher's job for our simulated UR5: `robot_description`, `tf_static` and `tf`.

A real UR5 stack gets these from ur_robot_driver's launch (robot_state_publisher over ur_description); our
sims play that part, so RViz or Foxglove pointed at a simulated stack shows the arm, the gripper and the
camera. The transforms come from the URDF the sim loads (`rrl_ros.robot_state`, tested without ROS):

  robot_description   std_msgs/String, the URDF (transient local)
  tf_static           tf2_msgs/TFMessage: the URDF's fixed joints (tool0, tcp) and the depth camera's optical
                      frame `camera_depth_optical_frame` in `base_link` (transient local; all of them in one
                      message, as tf2's static broadcaster sends them; sent again when the camera moves)
  tf                  tf2_msgs/TFMessage: every moving joint (arm and fingers) with each joint state, stamped as
                      the joint state

The names are relative: in the root namespace they are /tf and /tf_static; a namespaced stack keeps its own
(NS/tf), as its clock, instead of mixing two robots' `base_link` in one tree (point RViz at NS/tf, or remap).
The hand tasks (MJCF models, no URDF) publish none of these.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage

from rrl_ros import conversions as conv
from rrl_ros.robot_state import RobotModel, camera_optical_transform

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
"""tf2_ros' TransformBroadcaster QoS (DynamicBroadcasterQoS)."""
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""tf2_ros' StaticBroadcasterQoS, and robot_state_publisher's robot_description."""


class RobotStatePublisher:
    """Publishes the URDF and its transforms on `node` (composition: it creates its topics on the node)."""

    def __init__(self, node, urdf_xml: str):
        self.model = RobotModel.parse(urdf_xml)
        self.pub_description = node.create_publisher(String, "robot_description", LATCHED_QOS)
        self.pub_static = node.create_publisher(TFMessage, "tf_static", LATCHED_QOS)
        self.pub_tf = node.create_publisher(TFMessage, "tf", TF_QOS)
        self.pub_description.publish(String(data=urdf_xml))

    def publish_static(self, stamp, task) -> None:
        """The fixed joints, and the optical frame of the UR5 `task`'s depth camera this episode when it has one
        (a randomised viewpoint moves it each episode), as one latched message."""
        camera = [camera_optical_transform(task.camera_eye_m, task.camera_target_m)] if task.camera else []
        self.pub_static.publish(conv.to_tf_message(self.model.static_transforms() + camera, stamp))

    def publish(self, joint_names, positions, stamp) -> None:
        """The moving joints at `positions` (in the order of `joint_names`), stamped `stamp`."""
        transforms = self.model.moving_transforms(dict(zip(joint_names, (float(q) for q in positions))))
        self.pub_tf.publish(conv.to_tf_message(transforms, stamp))
