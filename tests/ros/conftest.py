"""Helpers for tests over real DDS on loopback.

Each test gets its own random ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
(the Kilted-generation rmw_fastrtps honours both), so tests running side by side, or other
engineers' stacks on this machine, never see each other's topics.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "ur5.launch.yaml"


@pytest.fixture
def ros_env(monkeypatch):
    domain = random.randint(1, 100)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    return domain


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
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, lambda m, t=topic: self.messages[t].append(m), 100)
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
