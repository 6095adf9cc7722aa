"""Which /command messages step the sim_bridge node, over real DDS on loopback.

The sim runs alone (`sim_only_launch`) with the test as its controller, or in the full UR5 stack
with a second publisher on /command. Lockstep keeps the runs short and deterministic.
"""

from __future__ import annotations

import itertools

import numpy as np
from std_msgs.msg import Float64MultiArray

from controllers.safety import hold_action
from rrl_ros import conversions as conv
from rrl_ros.sim_core import EpisodeRunner
from sim_bridge import make_task

SPEC = make_task("ur5_pick").spec
A = SPEC.action.size


def test_nonfinite_commands_hold_their_tick_and_are_counted(launch, commander, sim_only_launch, tmp_path):
    """NaN in tool_vel at ticks 4 and 5, Inf in the gripper at tick 7: those ticks hold (zero velocity, gripper
    kept closed); the trajectory equals the in-process run with the hold action in their place."""
    ticks, bad = 12, {4: 0, 5: 0, 7: 3}  # tick -> the action index made non-finite

    def action(tick: int) -> np.ndarray:
        a = np.array([0.01 * (tick % 3), -0.01, 0.02, 1.0])
        if tick in bad:
            a[bad[tick]] = np.nan if bad[tick] == 0 else np.inf
        return a

    answered: set[int] = set()

    def answer(status):
        if status["tick"] in answered:  # the sim resends tick 0 until it is answered; answer each tick once
            return None
        answered.add(status["tick"])
        return conv.to_command(SPEC.action, action(status["tick"]), tick=status["tick"])

    commander(answer=answer)
    run = launch(f"max_ticks:={ticks}", report=tmp_path / "r.json", file=sim_only_launch)
    assert run.wait() == 0, run.output
    (sim,) = run.report()["sim"].values()
    assert sim["ticks"] == ticks and sim["nonfinite_commands"] == len(bad) and sim["hold_ticks"] == len(bad), sim
    assert sim["commands_received"] == ticks - len(bad) and sim["foreign_commands"] == 0
    assert run.output.count("refusing a command with non-finite value(s) in tool_vel[0]") == 1, run.output

    with make_task("ur5_pick") as task:
        runner = EpisodeRunner(task, episodes=1, seed=3)
        runner.start()
        last = None
        for tick in range(ticks):
            a = action(tick)
            if not np.all(np.isfinite(a)):
                a = hold_action(SPEC.action_limits, last)
                assert a[3] == 1.0 and not a[:3].any()  # zero velocity, gripper kept closed
            runner.apply(a)
            last = a
    assert sim["trajectory_sha256"] == runner.summary()["trajectory_sha256"]


def test_a_second_publisher_does_not_step_the_lockstep_sim(launch, commander, tmp_path):
    """A second node sends valid commands on every observation and in between (labelled without a tick, plain
    arrays, answers to a past and to a far tick): the lockstep run has the same ticks, results and trajectory
    as without it, and counts them. (A second publisher that answers the awaited tick itself races the
    controller; the tick cannot tell them apart.)"""
    clean = launch("clock_mode:=lockstep", "episodes:=3", "seed:=3", report=tmp_path / "clean.json")
    assert clean.wait() == 0, clean.output
    (clean_sim,) = clean.report()["sim"].values()
    assert clean_sim["foreign_commands"] == 0

    rng = np.random.default_rng(0)
    kinds = ("labelled", "plain", "past_tick", "far_tick")

    def foreign(kind: str, tick: int | None) -> Float64MultiArray:
        a = np.append(rng.uniform(-0.15, 0.15, 3), float(rng.integers(0, 2)))
        if kind == "plain":
            return Float64MultiArray(data=a.tolist())
        if kind == "labelled" or tick is None or tick < 2:
            return conv.to_command(SPEC.action, a)
        return conv.to_command(SPEC.action, a, tick=tick - 2 if kind == "past_tick" else tick + 1000)

    cycle = itertools.cycle(kinds)
    spammer = commander(answer=lambda status: [foreign(kind, status["tick"]) for kind in kinds],
                        spam=lambda: foreign(next(cycle), None), spam_hz=100)
    spammed = launch("clock_mode:=lockstep", "episodes:=3", "seed:=3", "observers:=2",  # it sees every tick
                     report=tmp_path / "spammed.json")
    assert spammed.wait() == 0, spammed.output
    report = spammed.report()
    (sim,) = report["sim"].values()
    seen = len({s["tick"] for s in spammer.statuses})
    assert seen >= 10 and sim["foreign_commands"] >= 2 * seen, (seen, spammer.sent, spammer.spammed, sim)
    for key in ("ticks", "results", "trajectory_sha256", "success_rate", "commands_received"):
        assert sim[key] == clean_sim[key], key
    assert report["control"]["control"]["metrics"]["ticks"] == sim["ticks"] == sim["commands_received"]
    assert spammed.output.count("ignoring a foreign command") == 1, spammed.output


def test_realtime_takes_plain_arrays_and_refuses_a_wrong_length(launch, commander, sim_only_launch, tmp_path):
    """Realtime (at rate_hz:=20, an integer): a plain Float64MultiArray of the action's length, as `ros2 topic pub`
    sends, moves the arm; one of the wrong length is refused with the reason, logged once."""
    up = [0.0, 0.0, 0.05, 0.0]

    def answer(status):
        if status["tick"] % 4 == 3:
            return Float64MultiArray(data=[0.0] * (A + 1))
        return Float64MultiArray(data=up)

    c = commander(answer=answer)
    run = launch("clock_mode:=realtime", "max_ticks:=16", "rate_hz:=20", report=tmp_path / "r.json",
                 file=sim_only_launch)
    assert run.wait() == 0, run.output
    (sim,) = run.report()["sim"].values()
    assert sim["ticks"] == 16 and sim["commands_received"] >= 8 and sim["bad_commands"] >= 2, sim
    assert sim["foreign_commands"] == 0 and sim["nonfinite_commands"] == 0
    assert run.output.count(f"an unlabelled command has {A + 1} values") == 1, run.output
    z = [conv.from_float32_array(m, SPEC.state)[2] for m in c.states]
    assert z[-1] - z[0] > 0.01, z  # the tool went up
