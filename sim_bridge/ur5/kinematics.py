"""UR5 tool-point kinematics from the DH table: forward kinematics, geometric Jacobian, damped least squares IK.

The tool centre point (TCP) sits `model.TCP_OFFSET_M` along z of DH frame 6. IK solves
for the TCP position *and* a fixed orientation (the tool pointing down), 6 equations
for 6 joints, by damped least squares (Levenberg-Marquardt):

    dq = J^T (J J^T + lambda^2 I)^-1 e,    e = [p_d - p ; 0.5 sum_k x_k x x_dk]

where x_k are the columns of the current tool rotation and x_dk of the desired one.
Started from the previous command (at most a few centimetres away), one or two
iterations reach sub-millimetre accuracy; see tests/sim_bridge/test_ur5_model.py.
Plain floats and numpy (no simulator), ~25 us per iteration.
"""

from __future__ import annotations

import math

import numpy as np

from sim_bridge.ur5.model import DH_A_M, DH_ALPHA_RAD, DH_D_M, JOINT_LIMIT_RAD, TCP_OFFSET_M

TOOL_DOWN_ROTATION = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
"""Tool frame pointing straight down (z_tool = -z_world), fingers sliding along world y; quaternion (0, 1, 0, 0)."""

_CA = [math.cos(a) for a in DH_ALPHA_RAD]
_SA = [math.sin(a) for a in DH_ALPHA_RAD]


def _chain(q_rad) -> tuple[list, list, tuple]:
    """DH chain in plain floats (3-4x faster than numpy on 3x3 blocks): origins and z axes of frames 0..6
    and the rotation of frame 6 as a row-major 9-tuple. Frame i = frame i-1 Rz(q_i) Tz(d_i) Tx(a_i) Rx(alpha_i)."""
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    px = py = pz = 0.0
    origins = [(0.0, 0.0, 0.0)]
    axes = [(0.0, 0.0, 1.0)]
    for i in range(6):
        ct, st = math.cos(q_rad[i]), math.sin(q_rad[i])
        ca, sa, a, d = _CA[i], _SA[i], DH_A_M[i], DH_D_M[i]
        sx, sy = a * ct, a * st
        px += r00 * sx + r01 * sy + r02 * d
        py += r10 * sx + r11 * sy + r12 * d
        pz += r20 * sx + r21 * sy + r22 * d
        l01, l02, l11, l12 = -st * ca, st * sa, ct * ca, -ct * sa  # local rotation; row 2 is (0, sa, ca)
        r00, r01, r02 = r00 * ct + r01 * st, r00 * l01 + r01 * l11 + r02 * sa, r00 * l02 + r01 * l12 + r02 * ca
        r10, r11, r12 = r10 * ct + r11 * st, r10 * l01 + r11 * l11 + r12 * sa, r10 * l02 + r11 * l12 + r12 * ca
        r20, r21, r22 = r20 * ct + r21 * st, r20 * l01 + r21 * l11 + r22 * sa, r20 * l02 + r21 * l12 + r22 * ca
        origins.append((px, py, pz))
        axes.append((r02, r12, r22))
    return origins, axes, (r00, r01, r02, r10, r11, r12, r20, r21, r22)


def joint_frames(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origins (7, 3), z axes (7, 3), last frame rotation (3, 3)) of DH frames 0..6 for angles q (6,)."""
    origins, axes, rot = _chain(q_rad)
    return np.array(origins), np.array(axes), np.array(rot).reshape(3, 3)


def _cross_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (N, 3) arrays (np.cross is ~10x slower at this size)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def tcp_pose(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TCP position (3,) and rotation (3, 3) in the base frame."""
    origins, _, rot = _chain(q_rad)
    o = origins[6]
    return (np.array([o[0] + TCP_OFFSET_M * rot[2], o[1] + TCP_OFFSET_M * rot[5], o[2] + TCP_OFFSET_M * rot[8]]),
            np.array(rot).reshape(3, 3))


def tcp_jacobian(q_rad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric Jacobian (6, 6) of the TCP (rows: linear, angular), with the TCP position and rotation.

    Column i: (z_{i-1} x (p_tcp - o_{i-1}), z_{i-1}) for revolute joint i about z of DH frame i-1.
    """
    origins, axes, rot = _chain(q_rad)
    o = origins[6]
    tx, ty, tz = o[0] + TCP_OFFSET_M * rot[2], o[1] + TCP_OFFSET_M * rot[5], o[2] + TCP_OFFSET_M * rot[8]
    rows = [[0.0] * 6 for _ in range(6)]
    for i in range(6):
        zx, zy, zz = axes[i]
        ox, oy, oz = origins[i]
        dx, dy, dz = tx - ox, ty - oy, tz - oz
        rows[0][i], rows[1][i], rows[2][i] = zy * dz - zz * dy, zz * dx - zx * dz, zx * dy - zy * dx
        rows[3][i], rows[4][i], rows[5][i] = zx, zy, zz
    return np.array(rows), np.array([tx, ty, tz]), np.array(rot).reshape(3, 3)


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


ORIENTATION_GAIN_PER_S = 2.0
"""Velocity-level IK: a tool orientation error of e rad is corrected at ORIENTATION_GAIN_PER_S * e rad/s."""


def tool_velocity_to_joint_velocity(q_rad: np.ndarray, tool_vel_m_s: np.ndarray,
                                    rot_desired: np.ndarray = TOOL_DOWN_ROTATION,
                                    orientation_gain_per_s: float = ORIENTATION_GAIN_PER_S,
                                    damping: float = 0.01) -> np.ndarray:
    """Joint velocities (6,) moving the TCP at `tool_vel_m_s` (3,) while holding the tool orientation.

    Velocity-level damped least squares on the geometric Jacobian,
        qdot = J^T (J J^T + lambda^2 I)^-1 [v ; K_o e_rot],
    where e_rot (`orientation_error`) turns the tool back to `rot_desired` (pointing down): the
    tasks' tool velocity commands become a ros2_control joint-velocity command."""
    jac, _, rot = tcp_jacobian(np.asarray(q_rad, np.float64))
    twist = np.concatenate([np.asarray(tool_vel_m_s, np.float64).reshape(3),
                            orientation_gain_per_s * orientation_error(rot, rot_desired)])
    return jac.T @ np.linalg.solve(jac @ jac.T + (damping**2) * np.eye(6), twist)
