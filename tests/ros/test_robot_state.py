"""The TF tree from the URDF (rrl_ros.robot_state), against our UR5 kinematics and PyBullet's camera; no ROS."""

import numpy as np
import pybullet as p
import pytest

from rrl_ros.robot_state import CAMERA_OPTICAL_FRAME, RobotModel, camera_optical_transform
from sim_bridge.ur5 import kinematics, model


@pytest.fixture(scope="module")
def ur5():
    return RobotModel.parse(model.ASSET_PATH.read_text())


def test_the_ur5_tree_has_its_joints_and_fixed_frames(ur5):
    assert ur5.root == "base_link"
    assert ur5.moving_joints == model.ARM_JOINTS + model.FINGER_JOINTS
    assert {t.child for t in ur5.static_transforms()} == {"tool0", "tcp"}


def test_the_tcp_from_the_urdf_chain_is_where_the_dh_kinematics_puts_it(ur5):
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(-np.pi, np.pi, 6)
        pose = ur5.link_pose("tcp", dict(zip(model.ARM_JOINTS, q)))
        tcp_m, rot = kinematics.tcp_pose(q)
        # the URDF writes pi/2 as 1.5708: 4e-6 rad of difference
        np.testing.assert_allclose(pose[:3, 3], tcp_m, atol=1e-5)
        np.testing.assert_allclose(pose[:3, :3], rot, atol=1e-5)


def test_a_prismatic_finger_moves_along_its_axis(ur5):
    arm = dict(zip(model.ARM_JOINTS, np.zeros(6)))
    closed = ur5.link_pose("finger_left", {**arm, "finger_left_joint": 0.0})
    opened = ur5.link_pose("finger_left", {**arm, "finger_left_joint": 0.05})
    tool = ur5.link_pose("tool0", arm)
    moved = np.linalg.inv(tool[:3, :3]) @ (opened[:3, 3] - closed[:3, 3])
    np.testing.assert_allclose(moved, [0.0, 0.05, 0.0], atol=1e-9)  # along the joint's y axis in tool0


def test_joints_without_a_position_are_left_out_not_guessed(ur5):
    transforms = ur5.moving_transforms({"shoulder_pan_joint": 0.3})
    assert [(t.parent, t.child) for t in transforms] == [("base_link", "shoulder_link")]
    with pytest.raises(KeyError, match="no position for joint .wrist_3_joint"):
        ur5.link_pose("tool0", {"shoulder_pan_joint": 0.0})


def test_the_camera_optical_frame_is_pybullets_view_in_rep103_axes():
    eye, target = (1.0, 0.0, 0.7), (0.45, 0.0, 0.0)
    tf = camera_optical_transform(eye, target)
    assert tf.child == CAMERA_OPTICAL_FRAME and tf.parent == "base_link"
    # PyBullet's view matrix (column-major) is world -> OpenGL camera (x right, y up, looking along -z)
    view = np.array(p.computeViewMatrix(eye, target, [0, 0, 1])).reshape(4, 4).T
    world_to_optical = np.linalg.inv(tf.matrix())
    np.testing.assert_allclose(world_to_optical[:3, :3], np.diag([1.0, -1.0, -1.0]) @ view[:3, :3], atol=1e-6)
    # the target lies on the optical axis, a point above it up in the image (negative y)
    for point, check in ((target, lambda c: abs(c[0]) < 1e-9 and abs(c[1]) < 1e-9 and c[2] > 0),
                         ((0.45, 0.0, 0.2), lambda c: c[1] < 0)):
        c = world_to_optical @ np.append(point, 1.0)
        assert check(c), c


@pytest.mark.parametrize("urdf, match", [
    ("<robot><link name='a'/><joint name='j' type='floating'><parent link='a'/><child link='a'/></joint></robot>",
     "not supported"),
    ("<robot><link name='a'/><joint name='j' type='fixed'><parent link='a'/><child link='b'/></joint></robot>",
     "does not define"),
    ("<robot><link name='a'/><link name='b'/></robot>", "exactly one root"),
    ("<robot><link", "not valid XML"),
    ("<model/>", "expected <robot>"),
])
def test_a_bad_urdf_is_refused_with_the_reason(urdf, match):
    with pytest.raises(ValueError, match=match):
        RobotModel.parse(urdf)
