"""Helpers for tests over real DDS on loopback.

Each test gets its own random ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
(the Kilted-generation rmw_fastrtps honours both). The id is claimed with a lock file
(/tmp/rrl_ros_domain_<id>.lock), so tests and benches running side by side on this machine
never share a domain.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rrl.ros_domain import claim_domain  # noqa: F401 (one lock-file scheme for tests, benches and rrl demo)

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "ur5.launch.yaml"


@pytest.fixture
def ros_env(monkeypatch):
    domain, lock = claim_domain()
    request_cleanup = lock  # held (open and locked) until the test ends
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    yield domain
    request_cleanup.close()


class Launch:
    """`rrl launch` in a subprocess; its output is collected line by line."""

    def __init__(self, *args: str, report: Path | None = None, file: Path = LAUNCH_FILE):
        cmd = [sys.executable, "-m", "rrl.cli", "launch", str(file), *args]
        if report is not None:
            cmd += ["--report", str(report)]
        self.report_path = report
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pid_of(self, node: str, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(rf"started {node} \(pid (\d+)\)", line)
                if m:
                    return int(m.group(1))
            time.sleep(0.05)
        raise AssertionError(f"node {node} did not start:\n{self.output}")

    def wait(self, timeout_s: float = 120.0) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"launch did not end within {timeout_s} s:\n{self.output}")
        self._reader.join(timeout=5)
        return code

    def report(self) -> dict:
        return json.loads(self.report_path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # SIGINT, as Ctrl-C
            self.wait(30)


@pytest.fixture
def launch(ros_env):
    started: list[Launch] = []

    def start(*args: str, **kwargs) -> Launch:
        started.append(Launch(*args, **kwargs))
        return started[-1]

    yield start
    for item in started:
        if item.proc.poll() is None:
            item.proc.kill()
            item.wait(30)


class Listener:
    """An rclpy node in its own context and domain, collecting JSON status messages of some topics."""

    def __init__(self, domain: int, topics: dict[str, type]):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("test_listener", context=self.context)
        self.messages: dict[str, list] = {t: [] for t in topics}
        for topic, kind in topics.items():  # a message type, or (type, QoSProfile) for e.g. a latched topic
            msg_type, qos = kind if isinstance(kind, tuple) else (kind, 100)
            self.node.create_subscription(msg_type, topic, lambda m, t=topic: self.messages[t].append(m), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def json(self, topic: str) -> list[dict]:
        return [json.loads(m.data) for m in list(self.messages[topic])]

    def wait_for(self, predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
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
def listener(ros_env):
    made: list[Listener] = []

    def make(topics: dict[str, type]) -> Listener:
        made.append(Listener(ros_env, topics))
        return made[-1]

    yield make
    for item in made:
        item.close()


class Commander:
    """An rclpy node in its own context and domain that plays the controller (or a second publisher) on /command.

    It subscribes to every observation topic of the sim (which waits for those subscribers before it
    starts) and calls `answer(status) -> Float64MultiArray | list | None` for each tick status; the
    returned message(s) are published on /command. With `spam_hz`, `spam() -> Float64MultiArray` is also published
    at that rate from a thread of its own, whatever the sim does.
    """

    def __init__(self, domain: int, answer=None, spam=None, spam_hz: float = 0.0, observe: bool = True):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray, Float64MultiArray, String

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("test_commander", context=self.context)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Float64MultiArray, "/command", qos)
        self.answer, self.spam, self.sent, self.spammed = answer, spam, 0, 0
        self.statuses: list[dict] = []
        self.states: list = []
        """/task/state messages, in order."""
        if observe:
            self.node.create_subscription(Float32MultiArray, "/robot/proprio", lambda m: None, qos)
            self.node.create_subscription(Float32MultiArray, "/task/state", self.states.append, qos)
            self.node.create_subscription(JointState, "/joint_states", lambda m: None, qos)
            self.node.create_subscription(String, "/task/status", self.on_status, qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self._threads = [threading.Thread(target=self._spin, daemon=True)]
        if spam is not None and spam_hz > 0:
            self._threads.append(threading.Thread(target=self._spam, args=(1.0 / spam_hz,), daemon=True))
        for t in self._threads:
            t.start()

    def on_status(self, msg) -> None:
        status = json.loads(msg.data)
        if status.get("event") != "tick":
            return
        self.statuses.append(status)
        if self.answer is not None:
            out = self.answer(status)
            for msg in out if isinstance(out, list) else [] if out is None else [out]:
                self.pub.publish(msg)
                self.sent += 1

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _spam(self, period_s: float) -> None:
        while not self._stop and self.context.ok():
            self.pub.publish(self.spam())
            self.spammed += 1
            time.sleep(period_s)

    def close(self) -> None:
        self._stop = True
        for t in self._threads:
            t.join(timeout=5)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


@pytest.fixture
def commander(ros_env):
    made: list[Commander] = []

    def make(**kwargs) -> Commander:
        made.append(Commander(ros_env, **kwargs))
        return made[-1]

    yield make
    for item in made:
        item.close()


SIM_ONLY_LAUNCH = """
launch:
- arg: {name: clock_mode, default: lockstep}
- arg: {name: max_ticks, default: "12"}
- arg: {name: rate_hz, default: "10.0"}
- node:
    pkg: rrl_ros
    exec: sim_bridge
    name: sim_bridge
    output: screen
    on_exit: shutdown
    param:
    - {name: task, value: ur5_pick}
    - {name: clock_mode, value: "$(var clock_mode)"}
    - {name: episodes, value: 1}
    - {name: seed, value: 3}
    - {name: max_ticks, value: "$(var max_ticks)"}
    - {name: rate_hz, value: "$(var rate_hz)"}
"""
"""A launch file with the sim_bridge node alone (UR5 pick, seed 3): the test plays the controller."""


@pytest.fixture
def sim_only_launch(tmp_path) -> Path:
    path = tmp_path / "sim_only.launch.yaml"
    path.write_text(SIM_ONLY_LAUNCH.lstrip())
    return path
