"""UR5 tool-point kinematics from the DH table: forward kinematics, geometric Jacobian, damped least squares IK.

The tool centre point (TCP) sits `model.TCP_OFFSET_M` along z of DH frame 6. IK solves
for the TCP position *and* a fixed orientation (the tool pointing down), 6 equations
for 6 joints, by damped least squares (Levenberg-Marquardt):

    dq = J^T (J J^T + lambda^2 I)^-1 e,    e = [p_d - p ; 0.5 sum_k x_k x x_dk]

where x_k are the columns of the current tool rotation and x_dk of the desired one.
Started from the previous command (at most a few centimetres away), one or two
iterations reach sub-millimetre accuracy; see tests/sim_bridge/test_ur5_model.py.
Pure numpy (no simulator), ~30 us per iteration.
"""

from __future__ import annotations

import numpy as np

from sim_bridge.ur5.model import DH_A_M, DH_ALPHA_RAD, DH_D_M, JOINT_LIMIT_RAD, TCP_OFFSET_M

TOOL_DOWN_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
"""Tool frame pointing straight down (z_tool = -z_world), fingers sliding along world y; quaternion (0, 1, 0, 0)."""

_CA = np.cos(DH_ALPHA_RAD)
_SA = np.sin(DH_ALPHA_RAD)
_A = np.asarray(DH_A_M)
_D = np.asarray(DH_D_M)


def joint_frames(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origins (7, 3), z axes (7, 3), last frame rotation (3, 3)) of DH frames 0..6 for angles q (6,)."""
    ct, st = np.cos(q_rad), np.sin(q_rad)
    # Local rotations (6, 3, 3) and translations (6, 3) of Rz(theta) Tz(d) Tx(a) Rx(alpha), all joints at once.
    local = np.empty((6, 3, 3))
    local[:, 0, 0], local[:, 0, 1], local[:, 0, 2] = ct, -st * _CA, st * _SA
    local[:, 1, 0], local[:, 1, 1], local[:, 1, 2] = st, ct * _CA, -ct * _SA
    local[:, 2, 0], local[:, 2, 1], local[:, 2, 2] = 0.0, _SA, _CA
    shift = np.empty((6, 3))
    shift[:, 0], shift[:, 1], shift[:, 2] = _A * ct, _A * st, _D
    origins = np.zeros((7, 3))
    axes = np.zeros((7, 3))
    axes[0, 2] = 1.0
    rot = np.eye(3)
    for i in range(6):
        origins[i + 1] = origins[i] + rot @ shift[i]
        rot = rot @ local[i]
        axes[i + 1] = rot[:, 2]
    return origins, axes, rot


def _cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (N, 3) arrays (np.cross is ~10x slower at this size)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def tcp_pose(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TCP position (3,) and rotation (3, 3) in the base frame."""
    origins, _, rot = joint_frames(q_rad)
    return origins[6] + TCP_OFFSET_M * rot[:, 2], rot


def tcp_jacobian(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric Jacobian (6, 6) of the TCP (rows: linear, angular), with the TCP position and rotation."""
    origins, axes, rot = joint_frames(q_rad)
    tcp = origins[6] + TCP_OFFSET_M * rot[:, 2]
    z = axes[:6]
    jac = np.empty((6, 6))
    jac[:3] = _cross_rows(z, tcp - origins[:6]).T
    jac[3:] = z.T
    return jac, tcp, rot


def orientation_error(rot: np.ndarray, rot_desired: np.ndarray) -> np.ndarray:
    """0.5 sum_k x_k x x_dk: the small rotation (3,) taking `rot` to `rot_desired` (world frame)."""
    return 0.5 * _cross_rows(rot.T, rot_desired.T).sum(axis=0)


def solve_ik(tcp_target_m: np.ndarray, q_start_rad: np.ndarray, rot_desired: np.ndarray = TOOL_DOWN_ROTATION,
             iterations: int = 2, damping: float = 0.01, tolerance_m: float = 1e-5) -> np.ndarray:
    """Joint angles (6,) putting the TCP at `tcp_target_m` with rotation `rot_desired`, from `q_start_rad`."""
    q = np.array(q_start_rad, dtype=np.float64)
    eye = (damping**2) * np.eye(6)
    for _ in range(iterations):
        jac, tcp, rot = tcp_jacobian(q)
        err = np.concatenate([tcp_target_m - tcp, orientation_error(rot, rot_desired)])
        if np.abs(err).max() < tolerance_m:
            break
        q += jac.T @ np.linalg.solve(jac @ jac.T + eye, err)
    return np.minimum(np.maximum(q, -JOINT_LIMIT_RAD), JOINT_LIMIT_RAD)
