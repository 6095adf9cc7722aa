"""The robot-facing control loop (`loop: timer`) against an outside-style fake driver, over real DDS.

The fake driver is written here as a third-party ROS 2 driver would be: only sensor_msgs/JointState on
/joint_states at 125 Hz from its own timer (stamped by its own clock), integrating the joint velocities it
receives on /forward_velocity_controller/commands (stopping the arm when they are older than 0.1 s, as
ur_robot_driver does), and geometry_msgs/PoseStamped object poses. No /task/status, no /task/state. The
control node runs from launch/ur5_robot.launch.yaml with PyBullet and MuJoCo made unimportable: the
runtime needs no simulator.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from sim_bridge.task_specs import task_spec
from sim_bridge.ur5 import kinematics
from sim_bridge.ur5.robot import REST_POSE_RAD

ROOT = Path(__file__).resolve().parents[2]
ROBOT_LAUNCH = ROOT / "launch" / "ur5_robot.launch.yaml"
SPEC = task_spec("ur5_pick")
CUBE = np.array([0.56, 0.06, 0.025])


class FakeDriver:
    """A minimal outside robot driver: joint states at 125 Hz, joint-velocity commands integrated, object poses."""

    def __init__(self, domain: int, joint_names=SPEC.joint_names, publish_pose: bool = True):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray, String

        self.rclpy, self.JointState, self.PoseStamped = rclpy, JointState, PoseStamped
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("fake_ur_driver", context=self.context)
        self.joint_names = list(joint_names)
        self.publish_pose = publish_pose
        self.q = np.array(list(REST_POSE_RAD) + [0.055, 0.055])
        self.qdot = np.zeros(8)
        self.command_time = -1.0
        self.commands: list[tuple[float, np.ndarray]] = []
        self.statuses: list[dict] = []
        self.running = True
        self.lock = threading.Lock()
        self.pub_joints = self.node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.pub_cube = self.node.create_publisher(PoseStamped, "/objects/cube/pose", 10)
        self.node.create_subscription(Float64MultiArray, "/forward_velocity_controller/commands", self.on_command, 10)
        self.node.create_subscription(Float64MultiArray, "/gripper_controller/commands", self.on_gripper, 10)
        self.node.create_subscription(String, "/control/status", lambda m: self.statuses.append(json.loads(m.data)), 10)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: list = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.last_step = time.monotonic()
        self.node.create_timer(1 / 125, self.on_joint_timer)
        self.node.create_timer(1 / 30, self.on_pose_timer)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def on_command(self, msg) -> None:
        with self.lock:
            self.qdot[:6] = msg.data
            self.command_time = time.monotonic()
            self.commands.append((self.command_time, np.array(msg.data)))

    def on_gripper(self, msg) -> None:
        with self.lock:
            self.q[6:8] = np.clip(msg.data[0] / 2, 0.0, 0.055)

    def stamp(self):
        return self.node.get_clock().now().to_msg()

    def on_joint_timer(self) -> None:
        now = time.monotonic()
        with self.lock:
            dt, self.last_step = now - self.last_step, now
            if now - self.command_time <= 0.1:  # ur_robot_driver stops the arm on commands older than 0.1 s
                self.q[:6] += self.qdot[:6] * dt
            velocity = self.qdot if now - self.command_time <= 0.1 else np.zeros(8)
            if not self.running:
                return
            msg = self.JointState(name=self.joint_names, position=self.q.tolist(), velocity=velocity.tolist())
        msg.header.stamp, msg.header.frame_id = self.stamp(), "base_link"
        self.pub_joints.publish(msg)

    def on_pose_timer(self) -> None:
        if not (self.running and self.publish_pose):
            return
        msg = self.PoseStamped()
        msg.header.stamp, msg.header.frame_id = self.stamp(), "base_link"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = CUBE.tolist()
        msg.pose.orientation.w = 1.0
        self.pub_cube.publish(msg)

    def tool(self) -> np.ndarray:
        with self.lock:
            return kinematics.tcp_pose(self.q[:6])[0]

    def wait_for(self, predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


@pytest.fixture
def fake_driver(ros_env):
    made: list[FakeDriver] = []

    def make(**kwargs) -> FakeDriver:
        made.append(FakeDriver(ros_env, **kwargs))
        return made[-1]

    yield make
    for d in made:
        d.close()


@pytest.fixture
def no_simulator(tmp_path, monkeypatch):
    """PYTHONPATH for the nodes on which `import pybullet` and `import mujoco` fail."""
    shadow = tmp_path / "no_simulator"
    shadow.mkdir()
    for name in ("pybullet", "mujoco"):
        (shadow / f"{name}.py").write_text(f"raise ImportError('{name} is not installed on this robot computer')\n")
    monkeypatch.setenv("PYTHONPATH", f"{shadow}:{ROOT}")


def test_the_timer_loop_drives_an_outside_driver_and_holds_when_it_stops(launch, fake_driver, no_simulator, tmp_path):
    driver = fake_driver()
    run = launch("task:=ur5_pick", report=tmp_path / "r.json", file=ROBOT_LAUNCH)
    cmdline = Path(f"/proc/{run.pid_of('control')}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"/bin/control_node") for arg in cmdline), cmdline  # the installed executable
    start_tool = driver.tool()
    driver.wait_for(lambda: len(driver.commands) > 40, 60, "40 commands")
    t0 = driver.commands[5][0]
    window = [t for t, _ in driver.commands if t0 <= t < t0 + 3.0]
    rate = (len(window) - 1) / (window[-1] - window[0])
    assert 9.5 <= rate <= 10.5, rate
    above_cube = lambda p: np.linalg.norm(p[:2] - CUBE[:2])  # noqa: E731
    assert above_cube(driver.tool()) < above_cube(start_tool) - 0.02, (start_tool, driver.tool())
    assert any(np.abs(c).max() > 1e-3 for _, c in driver.commands)
    from diagnostic_msgs.msg import DiagnosticStatus

    driver.wait_for(lambda: any(d.status[0].level == DiagnosticStatus.OK for d in driver.diagnostics), 5, "OK diagnostics")
    ok = next(d.status[0] for d in driver.diagnostics if d.status[0].level == DiagnosticStatus.OK)
    values = {kv.key: kv.value for kv in ok.values}
    assert ok.name == "rrl control: /control" and ok.hardware_id == "ur5_pick" and values["loop"] == "timer"
    assert 9.0 <= float(values["rate_hz"]) <= 11.0 and values["base"] == "waypoint", values
    assert {"jitter_p99_ms", "latency_p99_ms", "missed_deadlines", "stale_inputs", "nonfinite_fallbacks"} <= set(values)

    driver.running = False  # the driver stops publishing
    stopped = time.monotonic()
    time.sleep(0.8)
    after = [(t - stopped, c) for t, c in driver.commands if t > stopped]
    # stale after 2 periods without joint states: every command from the next tick on is zero
    assert after and all(not np.any(c) for t, c in after if t > 0.32), [(round(t, 3), c) for t, c in after]
    held = lambda: [d.status[0] for d in driver.diagnostics  # noqa: E731
                    if d.status[0].level == DiagnosticStatus.WARN and "joint_states" in d.status[0].message]
    driver.wait_for(lambda: held(), 3, "a WARN diagnostic naming the stale joint states")
    assert held()[-1].message == "holding the robot: joint_states, objects/cube/pose", held()[-1]
    stale = [s for s in driver.statuses if s["stale"]]
    assert stale and stale[-1]["stale"] == ["joint_states", "objects/cube/pose"] and stale[-1]["reason"] == "stale_hold"
    run.stop()
    control = run.report()["control"]["control"]
    assert control["loop"] == "timer" and control["stale_inputs"]["joint_states"] >= 5, control
    assert control["safety"]["stale_holds"] >= 4 and control["metrics"]["missed_deadlines"] == 0, json.dumps(control["metrics"])
    assert "ms old (limit 200 ms)" in run.output.split("holding the robot (zero velocity): ")[-1], run.output



def test_wrong_joint_names_and_a_missing_object_pose_hold_the_robot_with_a_clear_message(launch, fake_driver,
                                                                                         no_simulator, tmp_path):
    driver = fake_driver(publish_pose=False)
    run = launch("task:=ur5_pick", report=tmp_path / "r.json", file=ROBOT_LAUNCH)
    driver.wait_for(lambda: len(driver.commands) > 10, 60, "10 commands")
    assert all(not np.any(c) for _, c in driver.commands)
    driver.publish_pose = True
    driver.joint_names = ["ur_" + n for n in SPEC.joint_names]  # a driver with a tf_prefix
    n = len(driver.commands)
    driver.wait_for(lambda: len(driver.commands) > n + 10, 10, "10 more commands")
    assert all(not np.any(c) for _, c in driver.commands)
    driver.joint_names = list(SPEC.joint_names)
    driver.wait_for(lambda: any(np.any(c) for _, c in driver.commands), 10, "moving commands")
    run.stop()
    assert "holding the robot (zero velocity): " in run.output and "no message on /objects/cube/pose yet" in run.output
    assert "cannot make the observation, holding the robot: joint state lacks joint(s) ['shoulder_pan_joint'" \
        in run.output, run.output
    control = run.report()["control"]["control"]
    assert control["input_errors"] >= 10 and control["stale_inputs"]["objects/cube/pose"] >= 10, control
    assert all(code["exit_code"] == 0 for code in run.report()["nodes"].values()), (run.report()["nodes"], run.output[-3000:])


def set_parameters(domain: int, node: str, pairs: list[tuple[str, str]]) -> list[tuple[bool, str]]:
    """`ros2 param set` one parameter per call (rcl_interfaces SetParameters), in order; (successful, reason) each."""
    import rclpy
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    client_node = rclpy.create_node("param_setter", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(SetParameters, f"{node}/set_parameters")
        assert client.wait_for_service(timeout_sec=20)
        out = []
        for name, value in pairs:
            request = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
                type=ParameterType.PARAMETER_STRING, string_value=value))])
            future = client.call_async(request)
            executor.spin_until_future_complete(future, timeout_sec=20)
            result = future.result().results[0]
            out.append((result.successful, result.reason))
        return out
    finally:
        client_node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_a_base_swap_in_either_order_applies_between_ticks_without_a_missed_deadline(launch, fake_driver, ros_env,
                                                                                    plain_onnx, tmp_path):
    """`ros2 param set base_controller bc` then `base_artifact X` (and back, artifact first) on the timer loop."""
    up = np.array([0.0, 0.0, 0.05, 0.0])
    model = plain_onnx(tmp_path / "bc_up.onnx", SPEC.state.size, up)
    driver = fake_driver()
    run = launch("task:=ur5_pick", report=tmp_path / "r.json", file=ROBOT_LAUNCH)
    driver.wait_for(lambda: len(driver.statuses) > 5 and driver.statuses[-1]["reason"] != "stale_hold", 60, "ticks")
    first = set_parameters(ros_env, "/control", [("base_controller", "bc"), ("base_artifact", model)])
    assert first == [(True, ""), (True, "")], first
    driver.wait_for(lambda: driver.statuses[-1]["base"] == f"bc:{model}", 10, "the bc base")
    np.testing.assert_allclose(driver.statuses[-1]["command"], up, atol=1e-6)
    back = set_parameters(ros_env, "/control", [("base_controller", "waypoint")])
    assert back == [(True, "")]
    driver.wait_for(lambda: driver.statuses[-1]["base"] == "waypoint", 10, "the waypoint base again")
    artifact_first = set_parameters(ros_env, "/control", [("base_artifact", model), ("base_controller", "bc")])
    assert artifact_first == [(True, ""), (True, "")], artifact_first
    driver.wait_for(lambda: driver.statuses[-1]["base"] == f"bc:{model}", 10, "the bc base again")
    run.stop()
    control = run.report()["control"]["control"]
    assert [s["base"] for s in control["swaps"]] == [f"bc:{model}", "waypoint", f"bc:{model}"], control["swaps"]
    assert all(s["tick"] == s["accepted_after_tick"] + 1 for s in control["swaps"]), control["swaps"]
    assert control["metrics"]["missed_deadlines"] == 0, json.dumps(control["metrics"])


def change_state(domain: int, node: str, transition: int) -> bool:
    """`ros2 lifecycle set NODE TRANSITION` (lifecycle_msgs ChangeState); whether it succeeded."""
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    client_node = rclpy.create_node("lifecycle_manager", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(ChangeState, f"{node}/change_state")
        assert client.wait_for_service(timeout_sec=20)
        future = client.call_async(ChangeState.Request(transition=Transition(id=transition)))
        executor.spin_until_future_complete(future, timeout_sec=20)
        assert future.done(), f"no answer from {node}/change_state to transition {transition} within 20 s"
        return bool(future.result().success)
    finally:
        client_node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_the_lifecycle_configure_activate_deactivate(launch, fake_driver, ros_env, tmp_path):
    """autostart:=false: nothing is commanded until configured; inactive holds (zero); active moves; deactivate holds."""
    from lifecycle_msgs.msg import Transition

    driver = fake_driver()
    run = launch("task:=ur5_pick", "autostart:=false", report=tmp_path / "r.json", file=ROBOT_LAUNCH)
    time.sleep(2.0)
    assert not driver.commands  # unconfigured: no command topic yet
    assert change_state(ros_env, "/control", Transition.TRANSITION_CONFIGURE), run.output
    driver.wait_for(lambda: len(driver.commands) >= 5, 10, "hold commands while inactive: " + run.output)
    assert all(not np.any(c) for _, c in driver.commands)
    assert change_state(ros_env, "/control", Transition.TRANSITION_ACTIVATE)
    driver.wait_for(lambda: any(np.any(c) for _, c in driver.commands), 10, "moving commands once active")
    assert change_state(ros_env, "/control", Transition.TRANSITION_DEACTIVATE)
    n = len(driver.commands)
    driver.wait_for(lambda: len(driver.commands) >= n + 5, 10, "commands after deactivate")
    assert all(not np.any(c) for _, c in driver.commands[n:]), driver.commands[n:]
    run.stop()
    assert run.report()["control"]["control"]["loop"] == "timer"
