"""The control node's core (rrl_ros.control_core) without spinning a node: slots, composition, safety."""

import numpy as np
import pytest

from controllers.safety import SafetyConfig
from policies.runtime import load_policy
from rrl_ros.control_core import ControlCore, SlotError, make_base, make_residual
from sim_bridge import make_task


@pytest.fixture(scope="module")
def task():
    t = make_task("ur5_pick")
    yield t
    t.close()


def test_waypoint_core_commands_what_rrl_eval_runs(task):
    """The node's core and policies.runtime's ComposedPolicy (what `rrl eval` runs) agree tick by tick."""
    spec = task.spec
    core = ControlCore(spec, make_base("waypoint", "", spec), "waypoint")
    reference = load_policy(spec, "waypoint")
    obs = task.reset(7)
    core.reset(7)
    reference.reset(7)
    for _ in range(30):
        out = core.tick(obs, observation_age_s=0.0)
        np.testing.assert_allclose(out.command, reference.act(obs), atol=1e-6)
        obs = task.step(out.command).obs


def test_nan_residual_falls_back_and_stale_observation_holds(task, plain_onnx, tmp_path):
    spec = task.spec
    S, A = spec.state.size, spec.action.size
    residual = make_residual(plain_onnx(tmp_path / "nan.onnx", S + A, np.full(A, np.nan)), spec, "waypoint", 1.0)
    core = ControlCore(spec, make_base("waypoint", "", spec), "waypoint", residual, SafetyConfig(period_s=0.1))
    obs = task.reset(3)
    core.reset(3)
    out = core.tick(obs, 0.01)
    assert out.reason == "nonfinite_fallback" and np.all(np.isfinite(out.command))
    np.testing.assert_allclose(out.command, spec.clip_action(out.base_action))
    assert core.safety.counters.nonfinite_fallbacks == 1
    held = core.tick(obs, 0.25)
    assert held.reason == "stale_hold"
    np.testing.assert_array_equal(held.command[:3], 0.0)
    assert held.command[3] == out.command[3]  # gripper kept


def test_plain_residual_adds_c_times_a_on_velocities(task, plain_onnx, tmp_path):
    spec = task.spec
    S, A = spec.state.size, spec.action.size
    residual = make_residual(plain_onnx(tmp_path / "r.onnx", S + A, [0.01, -0.01, 0.0, 1.0]), spec, "waypoint", 0.5)
    core = ControlCore(spec, make_base("waypoint", "", spec), "waypoint", residual)
    obs = task.reset(1)
    core.reset(1)
    out = core.tick(obs, 0.0)
    expected = out.base_action + np.array([0.005, -0.005, 0.0, 0.0])
    np.testing.assert_allclose(out.command, spec.clip_action(expected), atol=1e-7)


def test_slots_refuse_what_does_not_fit(task, plain_onnx, tmp_path):
    spec = task.spec
    with pytest.raises(SlotError, match="one of"):
        make_base("teleport", "", spec)
    with pytest.raises(SlotError, match="needs base_artifact"):
        make_base("bc", "", spec)
    with pytest.raises(SlotError, match="does not exist"):
        make_base("bc", str(tmp_path / "nope"), spec)
    with pytest.raises(SlotError, match=f"input 'obs' has 5 values, task ur5_pick needs {spec.state.size}"):
        make_base("bc", plain_onnx(tmp_path / "small.onnx", 5, np.zeros(spec.action.size)), spec)
    with pytest.raises(SlotError, match="output 'action' has 2 values"):
        make_residual(plain_onnx(tmp_path / "narrow.onnx", spec.state.size + spec.action.size, np.zeros(2)),
                      spec, "waypoint", 1.0)
    (tmp_path / "dir").mkdir()
    with pytest.raises(SlotError, match="without policy.yaml"):
        make_base("bc", str(tmp_path / "dir"), spec)
    assert make_residual("", spec, "waypoint", 1.0) is None
