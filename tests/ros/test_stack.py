"""The UR5 stack end to end over real DDS on loopback: `rrl launch`, the sim_bridge and control nodes.

Lockstep keeps these fast (a pick episode is ~40 ticks). Each test runs in its own ROS domain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from std_msgs.msg import String

from sim_bridge import make_task

ROOT = Path(__file__).resolve().parents[2]

SPEC = make_task("ur5_pick").spec
S, A = SPEC.state.size, SPEC.action.size


def test_two_lockstep_pick_episodes_succeed_and_repeat_exactly(launch, tmp_path):
    runs = []
    for i in range(2):
        run = launch("clock_mode:=lockstep", "episodes:=2", "seed:=3", report=tmp_path / f"r{i}.json")
        assert run.wait() == 0, run.output
        runs.append(run.report())
    first, second = runs
    assert first["episodes"] == 2 and first["success_rate"] == 1.0, first
    assert [e["seed"] for e in first["results"]] == [3, 4]
    assert "success rate 1.00" in "\n".join(run.lines)
    assert first["results"] == second["results"]
    (sim1,), (sim2,) = first["sim"].values(), second["sim"].values()
    assert sim1["trajectory_sha256"] == sim2["trajectory_sha256"]
    assert sim1["ticks_without_command"] == 0 and sim1["commands_received"] == sim1["ticks"]
    for key in ("jitter_p99_ms", "latency_p99_ms", "missed_deadlines"):
        assert key in first
    assert first["control"]["control"]["metrics"]["ticks"] == sim1["ticks"]


def test_nan_residual_falls_back_to_the_base_and_is_counted(launch, plain_onnx, tmp_path):
    nan_model = plain_onnx(tmp_path / "nan.onnx", S + A, np.full(A, np.nan))
    run = launch("clock_mode:=lockstep", "episodes:=1", "seed:=5", f"residual:={nan_model}", report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    report = run.report()
    control = report["control"]["control"]
    assert control["residual"] == nan_model
    assert control["safety"]["nonfinite_fallbacks"] == control["metrics"]["ticks"] > 0
    assert report["success_rate"] == 1.0  # the fallback is the waypoint base, which solves the task


def test_base_swap_mid_episode_takes_effect_at_the_next_answered_tick(launch, listener, plain_onnx, tmp_path):
    """Realtime stack: waypoint -> bc (a constant 'up' policy, whose episodes run to the 200-step horizon)
    -> waypoint again, mid-episode; each change is applied at the first tick the node answers after it was
    accepted."""
    up = np.array([0.0, 0.0, 0.02, 0.0])
    bc_model = plain_onnx(tmp_path / "bc_up.onnx", S, up)
    run = launch("clock_mode:=realtime", "episodes:=100", "seed:=0", report=tmp_path / "r.json")
    ear = listener({"/control/status": String})
    ear.wait_for(lambda: len(ear.messages["/control/status"]) > 3, what="control status")
    switch = [sys.executable, "-m", "rrl.cli", "switch", "--node", "/control", "--timeout", "20"]
    sh = lambda *args: subprocess.run([*switch, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)  # noqa: E731
    bad = sh("--base", "bc", "--artifact", str(tmp_path / "missing"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr, bad.stderr  # refused before the service call
    needs_frames = sh("--base", "bc", "--artifact", depth_bc_artifact(SPEC, tmp_path / "bc_depth"))
    assert needs_frames.returncode == 1 and "needs camera frames" in needs_frames.stderr, needs_frames.stderr
    assert sh("--base", "bc", "--artifact", bc_model).returncode == 0
    ear.wait_for(lambda: any(s["base"].startswith("bc") and s["step"] >= 3 for s in ear.json("/control/status")),
                 what="bc ticks")
    back = sh("--base", "waypoint")
    assert back.returncode == 0, back.stderr
    ear.wait_for(lambda: ear.json("/control/status")[-1]["base"] == "waypoint", what="waypoint again")
    run.stop()  # Ctrl-C: every node stops cleanly and still writes its report
    assert run.proc.returncode == 130, run.output
    report = run.report()
    assert all(n["exit_code"] == 0 for n in report["nodes"].values()), report["nodes"]
    to_bc, to_waypoint = report["control"]["control"]["swaps"]
    statuses = {s["tick"]: s for s in ear.json("/control/status")}
    answered = sorted(statuses)
    for swap, name in ((to_bc, f"bc:{bc_model}"), (to_waypoint, "waypoint")):
        # the first tick the node answered after the change was accepted: in realtime the sim does not wait, so
        # under load the node can miss sim ticks (then the swap's tick is more than one after its acceptance)
        before = max(t for t in answered if t < swap["tick"])
        assert swap["base"] == name and before == swap["accepted_after_tick"], (swap, answered)
        assert statuses[before]["base"] != name and statuses[swap["tick"]]["base"] == name
    np.testing.assert_allclose(statuses[to_bc["tick"]]["command"], up, atol=1e-6)
    assert statuses[to_waypoint["tick"]]["step"] > 0  # mid-episode: the bc episode runs to its horizon
    before_waypoint = max(t for t in answered if t < to_waypoint["tick"])
    assert statuses[to_waypoint["tick"]]["episode"] == statuses[before_waypoint]["episode"]


def test_a_residual_is_kept_across_a_swap_suspended_until_its_own_base_runs(launch, listener, tmp_path):
    """Realtime stack on the waypoint base with the shipped residual trained on the state BC base: the residual
    is suspended (the waypoint base runs alone), `rrl switch` to that BC base engages it from the applied tick."""
    residual, bc = ROOT / "policies/pretrained/residual_dmpo_ur5_pick", ROOT / "policies/pretrained/bc_ur5_pick_state6"
    run = launch("clock_mode:=realtime", "episodes:=3", "seed:=1000000", f"residual:={residual}",
                 report=tmp_path / "r.json")
    ear = listener({"/control/status": String})
    ear.wait_for(lambda: len(ear.messages["/control/status"]) > 3, what="control status")
    switched = subprocess.run([sys.executable, "-m", "rrl.cli", "switch", "--node", "/control", "--timeout", "20",
                               "--base", "bc", "--artifact", str(bc)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert switched.returncode == 0, switched.stderr
    assert run.wait() == 0, run.output
    assert "it is kept but suspended (the base runs alone) until base 'bc_ur5_pick_state6' is active" in run.output
    control = run.report()["control"]["control"]
    (swap,) = control["swaps"]
    assert swap["base"] == f"bc:{bc}" and swap["residual"] == "engaged" and control["residual_engaged"] is True
    assert 3 < control["residual_suspended_ticks"] < control["metrics"]["ticks"]
    statuses = ear.json("/control/status")
    before = [s for s in statuses if s["tick"] < swap["tick"]]
    after = [s for s in statuses if s["tick"] >= swap["tick"]]
    assert before and all(s["base"] == "waypoint" and not s["residual_engaged"] and s["residual"] is None
                          for s in before)
    assert after and all(s["base"].startswith("bc:") and s["residual_engaged"] and len(s["residual"]) == A
                         for s in after)


def test_killed_control_node_holds_the_robot_and_fails_the_launch(launch, listener, tmp_path):
    from sensor_msgs.msg import JointState

    run = launch("clock_mode:=realtime", "episodes:=100", "seed:=0", report=tmp_path / "r.json")
    control_pid = run.pid_of("control")
    ear = listener({"/task/status": String, "/joint_states": JointState})
    ear.wait_for(lambda: len(ear.json("/task/status")) > 8, what="a few realtime ticks")
    os.kill(control_pid, signal.SIGSTOP)  # the controller hangs: no more commands
    seen = len(ear.messages["/task/status"])
    ear.wait_for(lambda: any(s.get("holding") for s in ear.json("/task/status")[seen:]), timeout_s=5, what="holding")
    n = len(ear.messages["/joint_states"])
    ear.wait_for(lambda: len(ear.messages["/joint_states"]) >= n + 4, timeout_s=5, what="held joint states")
    held = np.array([m.position for m in ear.messages["/joint_states"][n:n + 4]])
    arm = [i for i, name in enumerate(SPEC.joint_names) if "finger" not in name]
    assert len(arm) == 6
    # the arm stands still (the gripper keeps its last command and may still be finishing that motion)
    assert np.abs(held[:, arm] - held[0, arm]).max() < 1e-3, held
    os.kill(control_pid, signal.SIGKILL)
    code = run.wait(60)
    assert code != 0
    assert f"node 'control' (pid {control_pid}, rrl_ros/control_node) died with exit code -9 (SIGKILL)" in run.output
    sim = next(iter(run.report()["sim"].values()))
    assert sim["hold_ticks"] >= 4


def test_malformed_launch_file_and_unknown_argument_are_named(tmp_path):
    bad = tmp_path / "bad.launch.yaml"
    bad.write_text("launch:\n- arg: {name: task, default: ur5_pick}\n- node:\n    pkg: rrl_ros\n    exec: sim_bridge\n"
                   "    nmae: sim\n")
    cli = [sys.executable, "-m", "rrl.cli", "launch"]
    out = subprocess.run([*cli, str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and f"{bad}:6: unknown attribute 'nmae' of 'node'" in out.stderr, out.stderr
    out = subprocess.run([*cli, str(ROOT / "launch" / "ur5.launch.yaml"), "epsiodes:=2"], capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2 and "unknown launch argument(s) epsiodes" in out.stderr, out.stderr


def depth_bc_artifact(spec, out_dir) -> str:
    """A real bc artifact reading 3 stacked 32x32 depth frames and proprio (onnx.helper, no torch): the x
    velocity follows the change between the oldest and newest frame, z a constant descent. Any mistake
    in how the node stacks frames changes the trajectory."""
    import onnx  # noqa: F401
    from onnx import TensorProto, helper

    from policies.artifact import (
        PENDING_SHA256, ActionSpec, CameraSpec, FieldStats, InputSpec, OutputSpec, PolicyArtifact, write_artifact,
    )

    P, A = spec.proprio.size, spec.action.size
    w = np.zeros((3, A), np.float32)
    w[0, 0], w[2, 0], w[1, 1] = -400.0, 400.0, 5.0
    bias = np.zeros((1, A), np.float32)
    bias[0, 2] = -0.5
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["depth"], ["m"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["m", "w"], ["a0"]),
         helper.make_node("ReduceSum", ["proprio"], ["ps"], axes=[1], keepdims=1),
         helper.make_node("Mul", ["ps", "zero"], ["pz"]),
         helper.make_node("Add", ["a0", "bias"], ["a1"]),
         helper.make_node("Add", ["a1", "pz"], ["action"])],
        "depth_bc",
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 3, 32, 32]),
         helper.make_tensor_value_info("proprio", TensorProto.FLOAT, ["batch", P])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", A])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [3, A], w.reshape(-1).tolist()),
                     helper.make_tensor("bias", TensorProto.FLOAT, [1, A], bias.reshape(-1).tolist()),
                     helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=9)
    desc = PolicyArtifact(
        kind="bc", algo="bc", task=spec.name, camera=CameraSpec("depth", 32, 32, 3),
        inputs=(InputSpec("depth", ("depth",), (-1, 3, 32, 32)), InputSpec("proprio", ("proprio",), (-1, P))),
        outputs=(OutputSpec("action", "action", (-1, A)),), action=ActionSpec.from_task(spec),
        normalisation={"action": FieldStats.from_arrays(np.zeros(A), np.full(A, 0.05)),
                       "proprio": FieldStats.from_arrays(np.zeros(P), np.ones(P))},
        model_sha256=PENDING_SHA256)
    write_artifact(desc, model.SerializeToString(), out_dir)
    return str(out_dir)


def test_image_bc_base_through_the_stack_matches_the_in_process_run(launch, tmp_path):
    """Depth frames go through sensor_msgs/Image (32FC1) and the node's frame stack: the lockstep trajectory
    is bit-identical to running the same artifact on the task directly (policies.runtime)."""
    from policies.runtime import load_policy
    from rrl_ros.sim_core import EpisodeRunner
    from sim_bridge.task import CameraConfig

    art = depth_bc_artifact(SPEC, tmp_path / "bc_depth")
    ticks, seed = 25, 4
    run = launch("clock_mode:=lockstep", "episodes:=1", f"seed:={seed}", f"max_ticks:={ticks}", "base:=bc",
                 f"base_artifact:={art}", "camera_px:=32", report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    report = run.report()
    control = report["control"]["control"]
    assert control["base"] == f"bc:{art}" and control["base_errors"] == 0 and control["metrics"]["ticks"] == ticks

    task = make_task("ur5_pick", camera=CameraConfig(32, 32, 3))
    try:
        policy = load_policy(task.spec, art)
        runner = EpisodeRunner(task, episodes=1, seed=seed)
        obs = runner.start()
        policy.reset(seed)
        commands = []
        for _ in range(ticks):
            commands.append(policy.act(obs))
            runner.apply(commands[-1])
            obs = runner.obs
    finally:
        task.close()
    assert np.ptp(np.array(commands)[:, 0]) > 1e-4  # the frames really steer the policy
    (sim,) = report["sim"].values()
    assert sim["trajectory_sha256"] == runner.summary()["trajectory_sha256"]


def test_stale_observations_make_the_control_node_hold(launch, tmp_path):
    """The sim hangs (SIGSTOP) for 0.6 s: the control node's watchdog publishes the hold command."""
    run = launch("clock_mode:=realtime", "episodes:=100", "seed:=0", report=tmp_path / "r.json")
    sim_pid = run.pid_of("sim_bridge")
    deadline = time.monotonic() + 30
    while not any("realtime clock" in line for line in run.lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(sim_pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(sim_pid, signal.SIGCONT)
    time.sleep(0.5)
    run.stop()
    control = run.report()["control"]["control"]
    assert control["watchdog_holds"] >= 2 and control["safety"]["stale_holds"] >= 2, control
    assert "holding the robot (zero velocity)" in run.output


def test_a_shifted_lockstep_stack_runs_the_episodes_rrl_eval_runs_under_the_same_shift(launch, tmp_path):
    """`shift:=heavy,slippery` reaches the sim node: the shipped pick residual on its state base gives, episode
    for episode, what the in-process evaluation under the same shifts gives, which is not the nominal run
    (on seed 1000002 the heavier, slipperier cube takes one step more)."""
    from policies.base_spec import parse_base
    from policies.runtime import load_policy
    from training.evaluation import run_episode

    pretrained = ROOT / "policies" / "pretrained"
    bc, residual = pretrained / "bc_ur5_pick_state6", pretrained / "residual_dmpo_ur5_pick"
    seed, episodes, shifts = 1_000_000, 3, ("heavy", "slippery")

    def in_process(shifts):
        with make_task("ur5_pick", shifts=shifts) as task:
            policy = load_policy(task.spec, parse_base(str(bc)), str(residual))
            return [{"episode": i, "seed": seed + i, "success": r.success, "steps": r.steps}
                    for i, r in enumerate(run_episode(task, policy, seed + i) for i in range(episodes))]

    expected = in_process(shifts)
    assert expected != in_process(())
    run = launch("clock_mode:=lockstep", f"episodes:={episodes}", f"seed:={seed}", "base:=bc", f"base_artifact:={bc}",
                 f"residual:={residual}", f"shift:={','.join(shifts)}", report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    assert run.report()["results"] == expected
