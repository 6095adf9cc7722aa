import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from controllers.waypoint import (
    Motion, MotionSequencer, Target, WaypointController, WaypointGains, quaternion_error, skew,
)


def test_skew_is_cross_product():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(skew(a) @ b, np.cross(a, b))


@pytest.mark.parametrize("seed", range(20))
def test_quaternion_error_matches_scipy(seed):
    """delta_eps is the vector part of q_d * q_t^-1 (short way round), i.e. sin(angle/2) * axis."""
    rng = np.random.default_rng(seed)
    r_d, r_t = Rotation.random(random_state=rng), Rotation.random(random_state=rng)
    err = quaternion_error(r_d.as_quat(), r_t.as_quat())
    rel = r_d * r_t.inv()
    rotvec = rel.as_rotvec()  # shortest rotation, angle in [0, pi]
    angle = np.linalg.norm(rotvec)
    expected = np.sin(angle / 2) * rotvec / angle
    np.testing.assert_allclose(err, expected, atol=1e-9)


def test_quaternion_error_zero_at_target_and_sign_invariant():
    q = Rotation.from_euler("xyz", [0.3, -0.2, 1.0]).as_quat()
    np.testing.assert_allclose(quaternion_error(q, q), 0.0, atol=1e-12)
    np.testing.assert_allclose(quaternion_error(q, -q), 0.0, atol=1e-12)


def test_orientation_p_law_converges():
    """Integrating omega = K_o * delta_eps drives the orientation to the target."""
    ctrl = WaypointController(WaypointGains(kp_ori=3.0, max_ang_vel_rad_s=2.0))
    r = Rotation.from_euler("xyz", [1.0, -0.5, 2.0])
    target = Target(np.zeros(3), Rotation.from_euler("xyz", [-0.3, 0.4, -1.0]).as_quat())
    for _ in range(400):
        _, omega = ctrl.act(np.zeros(3), target, r.as_quat())
        r = Rotation.from_rotvec(omega * 0.02) * r  # world-frame angular velocity
    assert (r * Rotation.from_quat(target.quat_xyzw).inv()).magnitude() < 1e-3


def test_position_law_is_capped_proportional():
    ctrl = WaypointController(WaypointGains(kp_pos=2.0, max_lin_vel_m_s=0.1))
    lin, ang = ctrl.act(np.zeros(3), Target(np.array([0.01, 0.0, 0.0])))
    np.testing.assert_allclose(lin, [0.02, 0, 0])
    np.testing.assert_allclose(ang, 0.0)
    lin, _ = ctrl.act(np.zeros(3), Target(np.array([1.0, 1.0, 0.0])))
    assert np.linalg.norm(lin) == pytest.approx(0.1)


def _integrate(seq, pos, steps, dt=0.1, extra=None):
    names = []
    for _ in range(steps):
        obs = {"tool_pos": pos.copy(), **(extra or {})}
        cmd = seq.act(obs)
        names.append(cmd.motion)
        pos = pos + cmd.lin_vel_m_s * dt
    return pos, names, cmd


def test_sequencer_advances_on_reach_and_on_timeout():
    a = Motion("a", lambda o: Target(np.array([0.1, 0, 0])), gripper=0.0, timeout_steps=100, tolerance_m=0.005)
    b = Motion("b", lambda o: Target(np.array([5.0, 0, 0])), gripper=1.0, timeout_steps=3)
    c = Motion("c", None, gripper=1.0, timeout_steps=2)
    seq = MotionSequencer([a, b, c], WaypointController(WaypointGains(kp_pos=5.0, max_lin_vel_m_s=1.0)),
                          pose=lambda o: (o["tool_pos"], None))
    _, names, cmd = _integrate(seq, np.zeros(3), 40)
    assert names[0] == "a" and "b" in names
    assert names.count("b") == 3  # timed out after 3 steps
    assert names.count("c") == 2
    assert cmd.done and cmd.gripper == 1.0
    np.testing.assert_allclose(cmd.lin_vel_m_s, 0.0)


def test_jump_function_goes_back_and_is_bounded():
    def retry(obs, ctx):
        return "a" if obs["slipped"] and ctx.jumps < 2 else None

    a = Motion("a", None, gripper=0.0, timeout_steps=1)
    b = Motion("b", None, gripper=1.0, timeout_steps=5, jump=retry)
    seq = MotionSequencer([a, b], WaypointController(), pose=lambda o: (o["tool_pos"], None))
    _, names, _ = _integrate(seq, np.zeros(3), 12, extra={"slipped": True})
    assert seq.ctx.jumps == 2
    assert names[:8] == ["a", "b", "a", "b", "a", "b", "b", "b"]


def test_unknown_jump_target_is_named():
    a = Motion("a", None, gripper=0.0, timeout_steps=5, jump=lambda o, c: "nowhere")
    seq = MotionSequencer([a], WaypointController(), pose=lambda o: (o["tool_pos"], None))
    with pytest.raises(KeyError, match="nowhere"):
        seq.act({"tool_pos": np.zeros(3)})


def test_interpolate_posture_ramps_linearly_and_saturates():
    from controllers.waypoint import interpolate_posture

    start, goal = np.zeros(3), np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(interpolate_posture(start, goal, 0, 4), start)
    np.testing.assert_allclose(interpolate_posture(start, goal, 1, 4), 0.25 * goal)
    np.testing.assert_allclose(interpolate_posture(start, goal, 4, 4), goal)
    np.testing.assert_allclose(interpolate_posture(start, goal, 9, 4), goal)
    np.testing.assert_allclose(interpolate_posture(start, goal, 0, 0), goal)
    with pytest.raises(ValueError, match="shapes differ"):
        interpolate_posture(np.zeros(2), goal, 1, 4)
