"""The UR5 model: URDF generated from the DH table, PyBullet FK vs DH FK, and the DLS inverse kinematics."""

import numpy as np
import pybullet as p
import pytest

from sim_bridge.ur5 import kinematics, model


@pytest.fixture
def ur5():
    client = p.connect(p.DIRECT)
    body = p.loadURDF(str(model.ASSET_PATH), useFixedBase=True, flags=p.URDF_USE_INERTIA_FROM_FILE,
                      physicsClientId=client)
    index = {p.getJointInfo(body, j, physicsClientId=client)[12].decode(): j
             for j in range(p.getNumJoints(body, physicsClientId=client))}
    yield client, body, index
    p.disconnect(client)


def test_committed_urdf_is_the_generators_output():
    """Regenerate with `python -m sim_bridge.ur5.model` after changing model.py."""
    assert model.ASSET_PATH.read_text() == model.urdf_text()


def test_pybullet_fk_matches_dh_fk_at_random_angles(ur5):
    client, body, index = ur5
    rng = np.random.default_rng(0)
    arm = [index[name] for name in model.ARM_LINKS]
    for _ in range(25):
        q = rng.uniform(-np.pi, np.pi, 6)
        for j, angle in zip(arm, q):
            p.resetJointState(body, j, angle, physicsClientId=client)
        state = p.getLinkState(body, index["tool0"], computeForwardKinematics=1, physicsClientId=client)
        pose = model.dh_forward(q)
        assert np.linalg.norm(np.array(state[4]) - pose[:3, 3]) < 1e-3  # <= 1 mm
        rot = np.array(p.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        np.testing.assert_allclose(rot, pose[:3, :3], atol=1e-4)
        tcp = p.getLinkState(body, index["tcp"], computeForwardKinematics=1, physicsClientId=client)[4]
        pos, _ = kinematics.tcp_pose(q)
        assert np.linalg.norm(np.array(tcp) - pos) < 1e-3


def test_dh_forward_at_zero_is_the_published_geometry():
    """At q = 0 the UR5 is stretched along -x: x = a2 + a3, y = -(d4 + d6), z = d1 - d5."""
    pose = model.dh_forward(np.zeros(6))
    np.testing.assert_allclose(pose[:3, 3], [-0.425 - 0.39225, -(0.10915 + 0.0823), 0.089159 - 0.09465], atol=1e-9)


def test_urdf_limits_and_masses():
    text = model.urdf_text()
    assert text.count('type="revolute"') == 6 and text.count('type="prismatic"') == 2
    assert abs(sum(model.LINK_MASS_KG) - 16.9939) < 1e-4  # datasheet arm mass without the 4 kg base


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    q = rng.uniform(-3, 3, 6)
    jac, _, _ = kinematics.tcp_jacobian(q)
    eps = 1e-6
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = eps
        numeric = (kinematics.tcp_pose(q + dq)[0] - kinematics.tcp_pose(q - dq)[0]) / (2 * eps)
        np.testing.assert_allclose(jac[:3, i], numeric, atol=1e-7)


@pytest.mark.parametrize("target", [(0.5, 0.0, 0.15), (0.8, 0.3, 0.02), (0.25, -0.3, 0.3), (0.7, -0.25, 0.25)])
def test_ik_reaches_workspace_corners_pointing_down(target):
    """Most of the workspace box is reachable with the tool pointing down; its far top corners
    (x 0.8, |y| 0.3, z 0.3) are beyond the arm's reach and the tool stops short there."""
    from sim_bridge.ur5.robot import REST_POSE_RAD

    q = kinematics.solve_ik(np.array(target), np.array(REST_POSE_RAD), iterations=50)
    pos, rot = kinematics.tcp_pose(q)
    assert np.linalg.norm(pos - target) < 1e-4
    np.testing.assert_allclose(rot, kinematics.TOOL_DOWN_ROTATION, atol=1e-4)
