"""Message conversions (rrl_ros.conversions), the sim's command rule (rrl_ros.sim_core) and loop metrics
(rrl_ros.metrics): no DDS needed."""

import numpy as np
import pytest
from std_msgs.msg import Float64MultiArray

from rrl_ros import conversions as conv
from rrl_ros.metrics import LoopMetrics
from rrl_ros.sim_core import APPLY, FOREIGN, NONFINITE, judge_command
from sim_bridge.spec import Layout

ACTION = Layout((("tool_vel", 3), ("gripper", 1)))
STATE = Layout((("tool_pos", 3), ("cube_pos", 3)))


def test_labelled_arrays_round_trip_and_name_mismatches():
    v = np.arange(6, dtype=np.float32) / 7
    msg = conv.to_float32_array(STATE, v)
    assert [(d.label, d.size, d.stride) for d in msg.layout.dim] == [("tool_pos", 3, 3), ("cube_pos", 3, 3)]
    np.testing.assert_array_equal(conv.from_float32_array(msg, STATE), v)
    assert conv.layout_of(msg) == STATE
    with pytest.raises(conv.ConversionError, match="does not match the expected"):
        conv.from_float32_array(msg, Layout((("tool_pos", 3), ("bowl_pos", 3))))
    cmd = conv.to_command(ACTION, [0.01, -0.02, 0.03, 1.0])
    np.testing.assert_array_equal(conv.from_command(cmd, ACTION), [0.01, -0.02, 0.03, 1.0])
    cmd.data = [0.0, 0.0, 0.0]
    with pytest.raises(conv.ConversionError, match="has 3 values"):
        conv.from_command(cmd, ACTION)


def test_images_state_their_encoding():
    depth = np.random.default_rng(0).random((5, 7), dtype=np.float32)
    msg = conv.to_image(depth, 1_500_000_000)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 5, 7, 28)
    assert conv.time_ns(msg.header.stamp) == 1_500_000_000
    np.testing.assert_array_equal(conv.from_image(msg), depth)
    rgb = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    msg = conv.to_image(rgb, 0)
    assert (msg.encoding, msg.step) == ("rgb8", 18)
    np.testing.assert_array_equal(conv.from_image(msg), rgb)
    msg.encoding = "mono16"
    with pytest.raises(conv.ConversionError, match="mono16"):
        conv.from_image(msg)


def test_joint_states_are_read_by_name():
    msg = conv.to_joint_state(("a", "b", "c"), [1.0, 2.0, 3.0], 0)
    np.testing.assert_array_equal(conv.from_joint_state(msg, ("c", "a")), [3.0, 1.0])
    with pytest.raises(conv.ConversionError, match=r"lacks joints \['d'\]"):
        conv.from_joint_state(msg, ("d",))


def test_metrics_period_jitter_latency_missed():
    m = LoopMetrics(period_s=0.1)
    t = 0.0
    for tick, (dt, lat) in enumerate([(0.1, 0.001), (0.101, 0.002), (0.099, 0.003), (0.1, 0.15)]):
        t += dt
        m.record(tick, t, lat)
    m.record(5, t + 0.2, 0.001)  # tick 4 never answered
    s = m.summary()
    assert s["ticks"] == 5 and s["missed_deadlines"] == 2  # one late command, one skipped tick
    assert s["jitter_max_ms"] == pytest.approx(1.0, abs=1e-6)
    assert s["latency_max_ms"] == pytest.approx(150.0)
    assert s["period_p50_ms"] == pytest.approx(100.0, abs=1e-6)
    lock = LoopMetrics(period_s=0.1, deadlines=False)
    lock.record(0, 0.0, 0.5)
    lock.record(1, 0.001, 0.5)
    assert lock.summary()["missed_deadlines"] == 0 and lock.summary()["jitter_p99_ms"] is None


def test_commands_carry_the_tick_they_answer_and_plain_arrays_are_read():
    cmd = conv.to_command(ACTION, [0.01, -0.02, 0.03, 1.0], tick=41)
    assert [(d.label, d.size) for d in cmd.layout.dim] == [("tool_vel", 3), ("gripper", 1), ("tick", 1)]
    assert list(cmd.data) == [0.01, -0.02, 0.03, 1.0, 41.0]
    got = conv.read_command(cmd, ACTION)
    assert got.tick == 41 and got.labelled
    np.testing.assert_array_equal(got.action, [0.01, -0.02, 0.03, 1.0])
    np.testing.assert_array_equal(conv.from_command(cmd, ACTION), [0.01, -0.02, 0.03, 1.0])  # readers of the action
    untagged = conv.read_command(conv.to_command(ACTION, [0.0, 0.0, 0.0, 0.0]), ACTION)
    assert untagged.tick is None and untagged.labelled
    plain = conv.read_command(Float64MultiArray(data=[0.0, 0.0, 0.1, 1.0]), ACTION)  # as `ros2 topic pub` sends it
    assert plain.tick is None and not plain.labelled and plain.action[2] == 0.1
    with pytest.raises(conv.ConversionError, match="unlabelled command has 5 values"):
        conv.read_command(Float64MultiArray(data=[0.0] * 5), ACTION)
    cmd.data = [0.0, 0.0, 0.0, 1.0, 2.5]
    with pytest.raises(conv.ConversionError, match="whole number"):
        conv.read_command(cmd, ACTION)


def test_the_sim_steps_on_finite_answers_to_the_awaited_tick_only():
    a = np.array([0.01, 0.0, 0.0, 1.0])
    assert judge_command(a, 7, 7, True, ACTION) == (APPLY, "")
    assert judge_command(a, 6, 7, True, ACTION)[0] == FOREIGN
    assert judge_command(a, None, 7, True, ACTION)[0] == FOREIGN
    assert judge_command(a, 7, None, True, ACTION)[0] == FOREIGN  # nothing awaits a command
    assert judge_command(a, None, 7, False, ACTION) == (APPLY, "")  # realtime: any command of the right layout
    verdict, reason = judge_command(np.array([0.0, np.nan, 0.0, np.inf]), 7, 7, True, ACTION)
    assert verdict == NONFINITE and reason == "non-finite value(s) in tool_vel[1], gripper"
    assert judge_command(np.array([np.nan, 0, 0, 0]), 3, 7, True, ACTION)[0] == FOREIGN  # foreign before finite
