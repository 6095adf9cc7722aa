"""The pure safety layer and residual composition (controllers/safety.py, controllers/residual.py)."""

import numpy as np
import pytest

from controllers.residual import ResidualComposer
from controllers.safety import ActionLimits, SafetyConfig, SafetyLayer, hold_action
from sim_bridge.spec import Layout, TaskSpec

SPEC = TaskSpec(
    name="toy", robot="ur5", control_rate_hz=10.0, max_steps=10,
    action=Layout((("tool_vel", 3), ("gripper", 1))),
    action_low=(-0.1, -0.1, -0.1, 0.0), action_high=(0.1, 0.1, 0.1, 1.0),
    proprio=Layout((("tool_pos", 3),)), state=Layout((("tool_pos", 3),)),
    binary_action_fields=("gripper",),
)
LIMITS = ActionLimits.from_spec(SPEC)


def test_limits_from_spec_clip_like_the_task():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.normal(scale=0.3, size=4)
        np.testing.assert_array_equal(LIMITS.clip(a), SPEC.clip_action(a))
    assert LIMITS.binary == (False, False, False, True)


def test_hold_is_zero_velocity_and_keeps_the_gripper():
    np.testing.assert_array_equal(hold_action(LIMITS, np.array([0.05, -0.02, 0.01, 1.0])), [0, 0, 0, 1.0])
    np.testing.assert_array_equal(hold_action(LIMITS, None), [0, 0, 0, 0])
    np.testing.assert_array_equal(hold_action(LIMITS, np.array([0.05, 0, 0, np.nan])), [0, 0, 0, 0])


def test_residual_is_u_plus_c_a_on_continuous_fields_only():
    comp = ResidualComposer(LIMITS, scale=0.5)
    u = np.array([0.01, 0.02, 0.03, 1.0])
    a = np.array([0.1, -0.2, 0.4, -1.0])
    np.testing.assert_allclose(comp.compose(u, a), [0.06, -0.08, 0.23, 1.0])
    np.testing.assert_allclose(comp.compose(u, None), u)
    per_dim = ResidualComposer(LIMITS, scale=(1.0, 0.0, 2.0, 1.0), residual_on_binary=True)
    np.testing.assert_allclose(per_dim.compose(u, a), [0.11, 0.02, 0.83, 0.0])
    # a NaN on a masked (binary) field does not leak into the command
    assert np.all(np.isfinite(comp.compose(u, np.array([0, 0, 0, np.nan]))))


@pytest.mark.parametrize("bad", [(1.0, 2.0), -1.0, float("nan")])
def test_residual_scale_is_validated(bad):
    with pytest.raises(ValueError, match="residual scale"):
        ResidualComposer(LIMITS, scale=bad)


def test_residual_size_mismatch_is_named():
    with pytest.raises(ValueError, match="residual has 3 dims"):
        ResidualComposer(LIMITS).compose(np.zeros(4), np.zeros(3))


def test_safety_passes_clips_and_counts():
    layer = SafetyLayer(LIMITS, SafetyConfig(period_s=0.1, stale_periods=2.0))
    d = layer.filter(np.array([0.05, 0, 0, 1.0]), None, observation_age_s=0.01)
    assert d.reason == "ok"
    np.testing.assert_array_equal(d.action, [0.05, 0, 0, 1.0])
    d = layer.filter(np.array([0.5, -0.5, 0, 0.7]), None, observation_age_s=0.01)
    assert d.reason == "clipped"
    np.testing.assert_array_equal(d.action, [0.1, -0.1, 0, 1.0])
    assert layer.counters.clipped == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_action_falls_back_to_base_and_is_counted(bad):
    layer = SafetyLayer(LIMITS)
    u = np.array([0.02, 0.0, -0.01, 1.0])
    d = layer.filter(np.array([0.02, bad, 0.0, 1.0]), u, observation_age_s=0.0)
    assert d.reason == "nonfinite_fallback"
    np.testing.assert_array_equal(d.action, u)
    assert layer.counters.nonfinite_fallbacks == 1
    # base non-finite too: hold, keeping the last gripper command
    d = layer.filter(np.array([bad] * 4), np.array([bad] * 4), observation_age_s=0.0)
    assert d.reason == "nonfinite_hold"
    np.testing.assert_array_equal(d.action, [0, 0, 0, 1.0])
    assert layer.counters.nonfinite_holds == 1


def test_stale_observation_holds_the_robot():
    layer = SafetyLayer(LIMITS, SafetyConfig(period_s=0.1, stale_periods=2.0))
    layer.filter(np.array([0.05, 0.05, 0.05, 1.0]), None, observation_age_s=0.05)
    d = layer.filter(np.array([0.05, 0.05, 0.05, 1.0]), None, observation_age_s=0.1999)
    assert d.reason == "ok"
    d = layer.filter(np.array([0.05, 0.05, 0.05, 1.0]), None, observation_age_s=0.2001)
    assert d.reason == "stale_hold"
    np.testing.assert_array_equal(d.action, [0, 0, 0, 1.0])
    assert layer.filter(None, None, observation_age_s=float("nan")).reason == "stale_hold"
    assert layer.counters.stale_holds == 2


@pytest.mark.parametrize("kwargs", [dict(period_s=0.0), dict(stale_periods=-1.0)])
def test_safety_config_is_validated(kwargs):
    with pytest.raises(ValueError, match="SafetyConfig"):
        SafetyConfig(**kwargs)
