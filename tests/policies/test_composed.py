"""The one policy path (policies.runtime.ComposedPolicy): loading, composition, the safety layer, counters.

Real PyBullet, real ONNX Runtime; models are real ONNX graphs written by tests/conftest.py.
"""

from pathlib import Path

import numpy as np
import pytest

from controllers.safety import SafetyConfig
from policies.artifact import ArtifactError
from policies.base_spec import BaseSpec, BaseSpecError, parse_base, parse_node_base
from policies.runtime import (ComposedPolicy, check_residual_fits, load_base, load_policy, load_residual,
                             residual_fits)
from sim_bridge import make_task
from training.evaluation import evaluate


@pytest.fixture(scope="module")
def task():
    t = make_task("ur5_pick")
    yield t
    t.close()


def test_nan_residual_falls_back_to_the_base_and_stale_observation_holds(task, plain_onnx, tmp_path):
    spec = task.spec
    S, A = spec.state.size, spec.action.size
    policy = load_policy(spec, "waypoint", plain_onnx(tmp_path / "nan.onnx", S + A, np.full(A, np.nan)),
                         safety=SafetyConfig(period_s=0.1), plain_residual_scale=1.0)
    obs = task.reset(3)
    policy.reset(3)
    out = policy.step(obs, 0.01)
    assert out.reason == "nonfinite_fallback" and np.all(np.isfinite(out.command))
    np.testing.assert_allclose(out.command, spec.clip_action(out.base_action))
    assert policy.counters.nonfinite_fallbacks == 1
    held = policy.step(obs, 0.25)
    assert held.reason == "stale_hold" and policy.counters.stale_holds == 1
    np.testing.assert_array_equal(held.command[:3], 0.0)
    assert held.command[3] == out.command[3]  # gripper kept


def test_nan_residual_in_evaluation_scores_the_base_and_counts_every_fallback(task, make_residual_artifact, tmp_path):
    """What `rrl eval` runs: a residual that is NaN whenever the tool is above 5 cm falls back to the
    base on exactly those ticks, so the episodes succeed as the base does (the NaN never reaches the sim)."""
    spec = task.spec
    tool_z = spec.state.slices()["tool_pos"].start + 2
    art = make_residual_artifact(spec, tmp_path / "nan_res", "waypoint", mu=0.0, nan_above=(tool_z, 0.05))
    base_only = evaluate(task, load_policy(spec, "waypoint"), episodes=2, seed=1_000_000, progress=False).summary()
    policy = load_policy(spec, "waypoint", art)
    result = evaluate(task, policy, episodes=2, seed=1_000_000, progress=False)
    summary = result.summary()
    assert summary["success_rate"] == base_only["success_rate"] == 1.0
    assert summary["mean_steps_success"] == base_only["mean_steps_success"]
    fallbacks = summary["safety"]["nonfinite_fallbacks"]
    assert 0 < fallbacks < sum(e.steps for e in result.episodes)  # some ticks, not all
    assert fallbacks == sum(e.safety["nonfinite_fallbacks"] for e in result.episodes)


def test_plain_residual_adds_c_times_a_on_velocities(task, plain_onnx, tmp_path):
    spec = task.spec
    S, A = spec.state.size, spec.action.size
    policy = load_policy(spec, "waypoint", plain_onnx(tmp_path / "r.onnx", S + A, [0.01, -0.01, 0.0, 1.0]),
                         plain_residual_scale=0.5)
    obs = task.reset(1)
    policy.reset(1)
    out = policy.step(obs)
    expected = out.base_action + np.array([0.005, -0.005, 0.0, 0.0])
    np.testing.assert_allclose(out.command, spec.clip_action(expected), atol=1e-7)


def test_a_base_that_raises_holds_the_robot_and_is_counted(task):
    class Broken:
        name, needs_images, artifact = "broken", False, None

        def reset(self, seed):
            pass

        def step(self, obs):
            raise KeyError("observation has no 'depth' frames")

    policy = ComposedPolicy(task.spec, Broken())
    out = policy.step(task.reset(0))
    assert out.reason.startswith("base_error") and policy.counters.base_errors == 1
    np.testing.assert_array_equal(out.command[:3], 0.0)


def test_base_strings_are_parsed_once_and_refused_with_a_reason(task, plain_onnx, tmp_path):
    spec = task.spec
    assert parse_base("waypoint").is_waypoint and parse_base("waypoint:no_retry").variant == "no_retry"
    with pytest.raises(BaseSpecError, match="no variant after"):
        parse_base("waypoint:")
    with pytest.raises(BaseSpecError, match="must be waypoint, waypoint:VARIANT, replay:BAG_DIR or bc"):
        parse_node_base("teleport", "")
    with pytest.raises(BaseSpecError, match="needs base_artifact"):
        parse_node_base("bc", "")
    with pytest.raises(BaseSpecError, match="does not exist"):
        load_base(str(tmp_path / "nope"), spec)
    readme = tmp_path / "README.md"
    readme.write_text("hello")
    with pytest.raises(BaseSpecError, match="is a file, not a policy artifact"):
        load_base(str(readme), spec)
    with pytest.raises(BaseSpecError, match="unknown expert variant 'nope'"):
        load_base("waypoint:nope", spec)
    with pytest.raises(ArtifactError, match=f"input 'obs' has 5 values, task ur5_pick needs {spec.state.size}"):
        load_base(plain_onnx(tmp_path / "small.onnx", 5, np.zeros(spec.action.size)), spec)
    with pytest.raises(ArtifactError, match="output 'action' has 2 values"):
        load_residual(plain_onnx(tmp_path / "narrow.onnx", spec.state.size + spec.action.size, np.zeros(2)),
                      spec, "waypoint", plain_scale=1.0)
    (tmp_path / "dir").mkdir()
    with pytest.raises(BaseSpecError, match="without policy.yaml"):
        load_base(str(tmp_path / "dir"), spec)


def test_residual_artifact_composes_and_refuses_another_base(task, make_residual_artifact, tmp_path):
    spec = task.spec
    art = make_residual_artifact(spec, tmp_path / "res_waypoint", "waypoint", mu=1.0)
    policy = load_policy(spec, "waypoint", art, plain_residual_scale=123.0)  # the artifact's own scale wins
    obs = task.reset(2)
    policy.reset(2)
    out = policy.step(obs)
    # a = c * sigma_action * mu on the velocities (0.5 * 0.04 * 1), the gripper stays the base's
    np.testing.assert_allclose(out.command, spec.clip_action(out.base_action + [0.02, 0.02, 0.02, 0.0]), atol=1e-6)
    with pytest.raises(ArtifactError, match="trained on base 'waypoint', not '/x/bc_pick'"):
        check_residual_fits(policy.residual.artifact, BaseSpec("artifact", path=Path("/x/bc_pick")))


def test_a_kept_residual_is_suspended_on_another_base_and_engages_on_its_own(task, make_residual_artifact, tmp_path):
    """The control node keeps a residual across base swaps: on a base it was not trained on the base runs
    alone (counted), on its own base it composes again, from the same tick."""
    spec = task.spec
    art = make_residual_artifact(spec, tmp_path / "res_no_retry", "waypoint:no_retry", mu=1.0)
    residual = load_residual(art, spec, "waypoint", check_fit=False)  # the node's load: fit decided per base
    assert not residual_fits(residual, parse_base("waypoint")) and residual_fits(residual, parse_base("waypoint:no_retry"))
    assert not residual_fits(None, parse_base("waypoint"))
    policy = ComposedPolicy(spec, load_base("waypoint", spec), residual)
    policy.set_base(load_base("waypoint", spec), residual_engaged=residual_fits(residual, parse_base("waypoint")))
    obs = task.reset(2)
    policy.reset(2)
    alone = policy.step(obs)
    assert alone.residual_mean is None and policy.suspended_ticks == 1 and not policy.residual_engaged
    np.testing.assert_allclose(alone.command, spec.clip_action(alone.base_action), atol=1e-9)
    policy.set_base(load_base("waypoint", spec), residual_engaged=True)
    composed = policy.step(obs)
    assert policy.suspended_ticks == 1 and composed.residual_mean is not None
    np.testing.assert_allclose(composed.command, spec.clip_action(composed.base_action + [0.02, 0.02, 0.02, 0.0]),
                               atol=1e-6)
    policy.residual = None  # without a residual set_base engages nothing
    policy.set_base(load_base("waypoint", spec), residual_engaged=True)
    assert not policy.residual_engaged


def test_waypoint_variant_base_takes_the_residual_trained_on_it(make_residual_artifact, tmp_path):
    """`waypoint:VARIANT` is a base of its own: it runs that expert variant, and a residual trained on it
    (the REQ residual on `waypoint:no_retry`) fits it and nothing else."""
    from controllers.experts import make_expert

    with make_task("ur5_bowl") as bowl:
        spec = bowl.spec
        base = load_base("waypoint:no_retry", spec)
        expert = make_expert("ur5_bowl", variant="no_retry")
        obs = bowl.reset(3)
        base.reset(3)
        expert.reset(3)
        for _ in range(40):  # the carry's early release is where no_retry differs from the default expert
            u = base.act(obs)
            np.testing.assert_allclose(u, expert.act(spec.state.unpack(obs["state"])), atol=1e-6)
            obs = bowl.step(u).obs
        art = make_residual_artifact(spec, tmp_path / "res_no_retry", "waypoint:no_retry", mu=0.0)
        residual = load_residual(art, spec, "waypoint:no_retry")
        check_residual_fits(residual.artifact, parse_base("waypoint:no_retry"))
        with pytest.raises(ArtifactError, match="trained on base 'waypoint:no_retry', not 'waypoint'"):
            load_residual(art, spec, "waypoint")


def test_a_workspace_box_keeps_the_tool_inside_wherever_the_policy_runs(task):
    """With the robot-facing loop's workspace box, ComposedPolicy.step reads the tool position itself: a base that
    drives the tool down and out stops at the box (counted); an observation without proprio holds."""
    from controllers.safety import WorkspaceLimits
    from policies.runtime import BaseOutput

    class Dive:
        name, needs_images, artifact = "dive", False, None

        def reset(self, seed):
            pass

        def step(self, obs):
            return BaseOutput(action=np.array([0.15, 0.0, -0.15, 0.0]), features=None)

    box = WorkspaceLimits.from_spec(task.spec)
    policy = ComposedPolicy(task.spec, Dive(), safety=SafetyConfig(period_s=0.1, workspace=box))
    obs = task.reset(5)
    policy.reset(5)
    for _ in range(40):
        obs = task.step(policy.act(obs)).obs
    tool = task.spec.proprio.unpack(obs["proprio"])["tool_pos"]
    assert tool[0] <= box.high_m[0] + 0.01 and tool[2] >= box.low_m[2] - 0.01, tool
    assert policy.counters.workspace_clips > 0 and policy.counters.workspace_holds == 0
    blind = policy.step({k: v for k, v in obs.items() if k != "proprio"})
    assert blind.reason == "workspace_hold" and policy.counters.workspace_holds == 1
    unboxed = ComposedPolicy(task.spec, Dive(), safety=SafetyConfig(period_s=0.1))
    assert unboxed.step({k: v for k, v in obs.items() if k != "proprio"}).reason == "ok"
