"""Helpers for tests over real DDS on loopback.

Each test gets its own random ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
(the Kilted-generation rmw_fastrtps honours both). The id is claimed with a lock file
(/tmp/rrl_ros_domain_<id>.lock), so tests and benches running side by side on this machine
never share a domain.
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

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "ur5.launch.yaml"


def claim_domain() -> tuple[int, object]:
    """A ROS domain id no other test (or bench) on this machine holds: an exclusive lock file per id."""
    import fcntl

    ids = list(range(1, 233))  # Fast DDS's default port mapping allows ids up to 232
    random.shuffle(ids)
    for domain in ids:
        handle = open(f"/tmp/rrl_ros_domain_{domain}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return domain, handle
    raise RuntimeError("no free ROS domain id")


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


def build_plain_onnx(path: Path, in_size: int, out_values) -> str:
    """A plain-contract model (rrl_ros.control_core): "obs" [1, in_size] -> "action" = out_values + 0 * sum(obs)."""
    import onnx
    from onnx import TensorProto, helper

    out = np.asarray(out_values, np.float32).reshape(1, -1)
    const = helper.make_tensor("c", TensorProto.FLOAT, list(out.shape), out.reshape(-1).tolist())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["obs"], ["s"], keepdims=1),
         helper.make_node("Mul", ["s", "zero"], ["z"]),
         helper.make_node("Add", ["c", "z"], ["action"])],
        "plain", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, in_size])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, list(out.shape))], initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def plain_onnx():
    return build_plain_onnx
