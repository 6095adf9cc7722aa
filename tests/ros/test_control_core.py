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


def residual_artifact(spec, out_dir, base: str, mu: float):
    """A real residual artifact (policy.yaml + model.onnx via policies.artifact.write_artifact), built with
    onnx.helper: "x" = [state, base_action] -> "mu" = mu everywhere."""
    import onnx
    from onnx import TensorProto, helper

    from policies.artifact import PENDING_SHA256, ActionSpec, FieldStats, InputSpec, OutputSpec, PolicyArtifact, write_artifact

    S, A = spec.state.size, spec.action.size
    const = helper.make_tensor("c", TensorProto.FLOAT, [1, A], [mu] * A)
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], axes=[1], keepdims=1),
         helper.make_node("Mul", ["s", "zero"], ["z"]), helper.make_node("Add", ["c", "z"], ["mu"])],
        "residual", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", S + A])],
        [helper.make_tensor_value_info("mu", TensorProto.FLOAT, ["batch", A])], initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=9)
    desc = PolicyArtifact(
        kind="residual", algo="dmpo", task=spec.name, base=base, residual_scale=0.5,
        inputs=(InputSpec("x", ("state", "base_action"), (-1, S + A)),),
        outputs=(OutputSpec("mu", "residual_mean", (-1, A)),), action=ActionSpec.from_task(spec),
        normalisation={"action": FieldStats.from_arrays(np.zeros(A), np.full(A, 0.04)),
                       "state": FieldStats.from_arrays(np.zeros(S), np.ones(S))},
        model_sha256=PENDING_SHA256)
    write_artifact(desc, model.SerializeToString(), out_dir)
    return str(out_dir)


def test_residual_artifact_loads_composes_and_refuses_another_base(task, tmp_path):
    from rrl_ros.control_core import check_residual_fits

    spec = task.spec
    art = residual_artifact(spec, tmp_path / "res_waypoint", "waypoint", mu=1.0)
    residual = make_residual(art, spec, "waypoint", scale=123.0)  # the artifact's own scale wins
    core = ControlCore(spec, make_base("waypoint", "", spec), "waypoint", residual)
    reference = load_policy(spec, "waypoint", art)
    obs = task.reset(2)
    core.reset(2)
    reference.reset(2)
    out = core.tick(obs, 0.0)
    np.testing.assert_allclose(out.command, reference.act(obs), atol=1e-6)
    # a = c * sigma_action * mu on the velocities (0.5 * 0.04 * 1), the gripper stays the base's
    np.testing.assert_allclose(out.command, spec.clip_action(out.base_action + [0.02, 0.02, 0.02, 0.0]), atol=1e-6)
    with pytest.raises(SlotError, match="trained on base 'waypoint'"):
        make_residual(art, spec, "/some/bc_artifact", 1.0)
    with pytest.raises(SlotError, match="trained on base 'waypoint', not '/x/bc_pick'"):
        check_residual_fits(residual, "/x/bc_pick")  # what a base swap to a bc artifact would be refused with


def test_waypoint_variant_base_takes_the_residual_trained_on_it(tmp_path):
    """`waypoint:VARIANT` is a base of its own: it runs that expert variant, and a residual trained on it
    (the REQ residual on `waypoint:no_retry`) fits it and nothing else."""
    from controllers.experts import make_expert
    from rrl_ros.control_core import base_label, check_residual_fits

    with make_task("ur5_bowl") as bowl:
        spec = bowl.spec
        base = make_base("waypoint:no_retry", "", spec)
        assert base_label("waypoint:no_retry", "") == "waypoint:no_retry"
        expert = make_expert("ur5_bowl", variant="no_retry")
        obs = bowl.reset(3)
        base.reset(3)
        expert.reset(3)
        for _ in range(40):  # the carry's early release is where no_retry differs from the default expert
            u = base.act(obs)
            np.testing.assert_allclose(u, expert.act(spec.state.unpack(obs["state"])), atol=1e-6)
            obs = bowl.step(u).obs
        art = residual_artifact(spec, tmp_path / "res_no_retry", "waypoint:no_retry", mu=0.0)
        residual = make_residual(art, spec, "waypoint:no_retry", 1.0)
        check_residual_fits(residual, "waypoint:no_retry")
        with pytest.raises(SlotError, match="trained on base 'waypoint:no_retry', not 'waypoint'"):
            check_residual_fits(residual, "waypoint")
        with pytest.raises(SlotError, match="unknown expert variant 'sloppy'"):
            make_base("waypoint:sloppy", "", spec)
