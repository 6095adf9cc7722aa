"""The whole UR5 stack through the robot-facing path: `launch/ur5.launch.yaml clock_mode:=driver`.

The sim plays a robot driver (own wall clock, /joint_states at 125 Hz, object poses at 30 Hz, the latest
joint-velocity or twist command applied continuously); the control node runs its timer loop from
launch/ur5_robot.launch.yaml on standard inputs only.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("interface", ["joint_velocity", "twist"])
def test_pick_episodes_succeed_through_the_robot_facing_path(launch, tmp_path, interface):
    run = launch("clock_mode:=driver", "episodes:=2", "seed:=1000000", f"command_interface:={interface}",
                 report=tmp_path / "r.json")
    assert run.wait(120) == 0, run.output
    report = run.report()
    assert report["episodes"] == 2 and report["success_rate"] == 1.0, report["results"]
    (sim,) = report["sim"].values()
    control = report["control"]["control"]
    assert sim["clock_mode"] == "driver" and sim["commands"][interface] > 40 and sim["bad_commands"] == 0, sim
    assert sim["commands"]["gripper"] > 40 and "command_timeouts" in sim, sim
    assert control["loop"] == "timer" and control["command_interface"] == interface
    assert control["episodes_started"] == 2 and control["input_errors"] == 0, control
    assert control["metrics"]["missed_deadlines"] == 0, control["metrics"]


def test_the_sim_publishes_the_urdf_and_its_tf_tree_as_robot_state_publisher_would(launch, listener, tmp_path):
    """tf_static (latched: a late subscriber gets it) holds the fixed frames and the camera's optical frame, tf
    every moving joint at each joint state's stamp; chained, they put the TCP where our kinematics does."""
    import numpy as np
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from scipy.spatial.transform import Rotation
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    from sim_bridge.ur5 import kinematics, model

    ear = listener({"/tf": TFMessage, "/joint_states": JointState, "/camera/depth/image_raw": Image})
    # max_ticks counts over all episodes and stops the sim (three episodes, so that none ends it first): 120 ticks
    # (12 s of driver clock) so that the late latched subscriber below finds the sim still running; with 30 (3 s)
    # its discovery under load sometimes came after the sim had exited, and a latched message dies with its publisher
    run = launch("clock_mode:=driver", "episodes:=3", "seed:=1000000", "camera_px:=32", "max_ticks:=120",
                 "observers:=2",  # the sim starts once this test's listener, too, is on joint_states
                 report=tmp_path / "r.json")
    got = lambda: (len(ear.messages["/tf"]), len(ear.messages["/camera/depth/image_raw"]))  # noqa: E731
    try:
        ear.wait_for(lambda: got()[0] > 20 and got()[1] > 0, 60, "tf and an image")
    except AssertionError:
        raise AssertionError(f"tf messages and images seen: {got()}; launch output:\n{run.output}") from None
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    late = listener({"/tf_static": (TFMessage, latched), "/robot_description": (String, latched)})
    try:
        late.wait_for(lambda: late.messages["/tf_static"] and late.messages["/robot_description"], 30, "latched topics")
    except AssertionError:
        raise AssertionError(f"no latched tf_static/robot_description; the stack had "
                             f"{'not ' if run.proc.poll() is None else ''}exited; output:\n{run.output}") from None
    assert run.wait(120) == 0, run.output

    assert late.messages["/robot_description"][-1].data == model.ASSET_PATH.read_text()
    static = {t.child_frame_id: t for t in late.messages["/tf_static"][-1].transforms}
    assert set(static) == {"tool0", "tcp", "camera_depth_optical_frame"}
    assert static["camera_depth_optical_frame"].header.frame_id == "base_link"
    assert ear.messages["/camera/depth/image_raw"][-1].header.frame_id == "camera_depth_optical_frame"

    def matrix(t):
        out = np.eye(4)
        r, p = t.transform.rotation, t.transform.translation
        out[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
        out[:3, 3] = [p.x, p.y, p.z]
        return out

    stamp = lambda h: (h.stamp.sec, h.stamp.nanosec)  # noqa: E731
    states = {stamp(m.header): m for m in list(ear.messages["/joint_states"])}
    checked = 0
    for tf in list(ear.messages["/tf"])[-10:]:
        frames = {t.child_frame_id: t for t in tf.transforms}
        assert set(frames) == set(model.ARM_LINKS) | {"finger_left", "finger_right"}
        js = states[stamp(tf.transforms[0].header)]  # each tf carries its joint state's stamp
        pose = np.eye(4)
        for link in model.ARM_LINKS:
            pose = pose @ matrix(frames[link])
        pose = pose @ matrix(static["tool0"]) @ matrix(static["tcp"])
        tcp_m, _ = kinematics.tcp_pose(np.array(js.position[:6]))
        np.testing.assert_allclose(pose[:3, 3], tcp_m, atol=1e-4)
        checked += 1
    assert checked == 10
