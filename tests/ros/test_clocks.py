"""Clocks of the stack: one lockstep clock per stack (`clock` under its namespace), use_sim_time honoured.

Two lockstep pick stacks in two namespaces of one domain run at once: each completes the same episodes
as a stack alone at the root (same results, ticks and trajectory digest), each on its own clock, and
the control node (use_sim_time true in lockstep) stamps each tick with that tick's sim time. A clock
message lost on the way delays its tick (the sim republishes it), never deadlocks it; use_sim_time where
no clock runs, or not a bool, is refused.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, String
from tf2_msgs.msg import TFMessage

ROOT = Path(__file__).resolve().parents[2]
PERIOD_NS = 100_000_000  # 10 Hz
ARGS = ("clock_mode:=lockstep", "episodes:=2", "seed:=3", "observers:=2", "status_observers:=1")
"""observers:=2: each sim starts when the test's listener, too, is on its observation topics (so it sees the clock);
status_observers:=1: each control node answers the first tick once the listener is on its ~/status (so it sees them)."""
OBSERVED = {"joint_states": JointState, "robot/proprio": Float32MultiArray, "task/state": Float32MultiArray,
            "task/status": String, "tf": TFMessage}


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def clock_ns(msg: Clock) -> int:
    return stamp_ns(msg.clock)


def last_tick_heard(ear, topic: str, ticks: int) -> None:
    """Wait until the listener's own executor has taken in the stack's last clock message: the stack has exited, but
    on a loaded machine the listener may still be draining what it was sent (the check that follows is unchanged)."""
    last = (ticks - 1) * PERIOD_NS
    ear.wait_for(lambda: any(clock_ns(m) == last for m in list(ear.messages[topic])), timeout_s=10.0,
                 what=f"{topic} at its last tick ({last} ns)")


def check_clock(times: list[int], ticks: int) -> None:
    """A stack's clock: tick x period, never backwards (a repeat is the sim's watchdog), up to its last tick."""
    assert times, "no clock message"
    assert all(b >= a for a, b in zip(times, times[1:])), times
    assert all(t % PERIOD_NS == 0 for t in times) and max(times) == (ticks - 1) * PERIOD_NS, (times, ticks)


def test_two_namespaced_lockstep_stacks_run_their_own_clocks_and_the_same_episodes(launch, listener, tmp_path):
    ear = listener({"/clock": Clock, "/a/clock": Clock, "/b/clock": Clock, "/diagnostics": DiagnosticArray,
                    **{f"{ns}/{topic}": kind for ns in ("", "/a", "/b") for topic, kind in OBSERVED.items()},
                    **{f"/{ns}/control/status": String for ns in "ab"}})
    alone = launch(*ARGS, report=tmp_path / "root.json")
    assert alone.wait() == 0, alone.output
    root = alone.report()
    (root_sim,) = root["sim"].values()
    last_tick_heard(ear, "/clock", root_sim["ticks"])
    check_clock([clock_ns(m) for m in ear.messages["/clock"]], root_sim["ticks"])  # the root stack keeps /clock
    seen_root = len(ear.messages["/clock"])
    seen_tf = len(ear.messages["/tf"])
    assert seen_tf > 0

    stacks = {ns: launch(*ARGS, f"namespace:={ns}", report=tmp_path / f"{ns}.json") for ns in "ab"}
    for ns, run in stacks.items():
        assert run.wait() == 0, run.output
    assert len(ear.messages["/clock"]) == seen_root  # neither namespaced stack publishes on /clock
    assert len(ear.messages["/tf"]) == seen_tf  # nor on /tf: each keeps its own tree (NS/tf)
    for ns, run in stacks.items():
        report = run.report()
        (sim,), (control,) = report["sim"].values(), report["control"].values()
        assert sim["node"] == f"/{ns}/sim_bridge" and control["node"] == f"/{ns}/control"
        assert report["results"] == root["results"] and report["success_rate"] == 1.0
        assert sim["ticks"] == root_sim["ticks"] and sim["trajectory_sha256"] == root_sim["trajectory_sha256"]
        # every tick answered exactly once, nothing foreign (the other stack's commands are on its own topics)
        assert sim["commands_received"] == sim["ticks"] == control["metrics"]["ticks"]
        assert sim["foreign_commands"] == 0 and sim["ticks_without_command"] == 0
        assert control["use_sim_time"] is True and control["loop"] == "lockstep"
        last_tick_heard(ear, f"/{ns}/clock", sim["ticks"])
        check_clock([clock_ns(m) for m in ear.messages[f"/{ns}/clock"]], sim["ticks"])
        tf_stamps = [stamp_ns(m.transforms[0].header.stamp) for m in ear.messages[f"/{ns}/tf"]]
        assert tf_stamps and all(t % PERIOD_NS == 0 for t in tf_stamps)  # stamped with the sim time of the tick
        # the control node's stamps (node clock, use_sim_time) are the sim time of the tick they answer
        sim_time = {s["tick"]: s["sim_time_ns"] for s in ear.json(f"/{ns}/task/status") if s["event"] == "tick"}
        statuses = ear.json(f"/{ns}/control/status")
        assert statuses and statuses[0]["tick"] == 0, [s["tick"] for s in statuses[:3]]  # matched before tick 0
        assert all(s["stamp_ns"] == sim_time.get(s["tick"], s["tick"] * PERIOD_NS) == s["tick"] * PERIOD_NS
                   for s in statuses), [(s["tick"], s["stamp_ns"]) for s in statuses]
        diagnostics = [m for m in ear.messages["/diagnostics"] if m.status[0].name == f"rrl control: /{ns}/control"]
        stamps = [stamp_ns(m.header.stamp) for m in diagnostics]
        assert stamps and all(t % PERIOD_NS == 0 and t < sim["ticks"] * PERIOD_NS for t in stamps), stamps


def run_node(module: str, *ros_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, "--ros-args", *ros_args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_use_sim_time_where_no_clock_runs_or_not_a_bool_is_refused(ros_env, tmp_path):
    out = run_node("rrl_ros.control_node", "-p", "use_sim_time:=true", "-p", "loop:=observation",
                   "-p", "command_interface:=native")
    assert out.returncode == 2 and "use_sim_time=true with loop observation" in out.stderr, out.stderr
    out = run_node("rrl_ros.sim_bridge_node", "-p", "use_sim_time:=true", "-p", "clock_mode:=realtime")
    assert out.returncode == 2 and "use_sim_time=true: in clock_mode realtime" in out.stderr, out.stderr
    out = run_node("rrl_ros.control_node", "-p", "use_sim_time:=1")
    assert out.returncode == 2 and "'use_sim_time' to '1' of type 'INTEGER', expecting type 'BOOL'" in out.stderr, \
        out.stderr
    bad = tmp_path / "bad.launch.yaml"  # the launcher refuses it before any node starts, naming file and line
    bad.write_text("launch:\n- node:\n    pkg: rrl_ros\n    exec: control_node\n    param:\n"
                   "    - {name: use_sim_time, value: \"1\"}\n")
    launched = subprocess.run([sys.executable, "-m", "rrl.cli", "launch", str(bad)], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)
    assert launched.returncode == 2 and "use_sim_time must be a bool, got 1" in launched.stderr, launched.stderr


RELAY_LAUNCH = """
launch:
- node:
    pkg: rrl_ros
    exec: sim_bridge
    name: sim_bridge
    output: screen
    on_exit: shutdown
    param:
    - {name: task, value: ur5_pick}
    - {name: clock_mode, value: lockstep}
    - {name: episodes, value: 1}
    - {name: seed, value: 3}
    - {name: max_ticks, value: 12}
- node:
    pkg: rrl_ros
    exec: control_node
    name: control
    output: screen
    remap: [{from: /clock, to: /clock_relay}]
    param:
    - {name: task, value: ur5_pick}
    - {name: loop, value: lockstep}
    - {name: command_interface, value: native}
    - {name: use_sim_time, value: true}
"""
"""The lockstep sim and a control node (use_sim_time) whose clock comes through the test's relay."""


def test_a_lost_clock_message_delays_its_tick_and_never_deadlocks(launch, ros_env, tmp_path):
    """The relay drops the clock of tick 5 once: the control node waits for it (its observation is there), the
    sim's watchdog republishes it after 0.5 s, and the run ends with every tick answered once."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_env)
    node = rclpy.create_node("clock_relay", context=context)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    relay = node.create_publisher(Clock, "/clock_relay", qos)
    passed: list[int] = []
    dropped: list[int] = []

    def forward(msg: Clock) -> None:
        if clock_ns(msg) == 5 * PERIOD_NS and not dropped:
            dropped.append(clock_ns(msg))
            return
        passed.append(clock_ns(msg))
        relay.publish(msg)

    node.create_subscription(Clock, "/clock", forward, qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    path = tmp_path / "relay.launch.yaml"
    path.write_text(RELAY_LAUNCH.lstrip())
    run = launch(report=tmp_path / "r.json", file=path)
    deadline = time.monotonic() + 60
    try:
        while run.proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert run.proc.poll() == 0, f"the lockstep run did not end (a tick waits for a clock that never comes?):\n{run.output}"
    (sim,), (control,) = run.report()["sim"].values(), run.report()["control"].values()
    assert dropped and 5 * PERIOD_NS in passed  # the republished clock of tick 5 got through
    assert sim["ticks"] == sim["commands_received"] == control["metrics"]["ticks"] == 12
    assert sim["foreign_commands"] == 0 and control["clock_waits"] >= 1
