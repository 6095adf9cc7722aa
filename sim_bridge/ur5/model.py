"""The UR5 model: a URDF generated from the published DH parameters, plus a parallel-jaw gripper.

Run `python -m sim_bridge.ur5.model` to regenerate `assets/ur5.urdf` (committed).

DH convention (standard, Universal Robots' published table): the transform from
frame i-1 to frame i is

    T_i(theta_i) = Rz(theta_i) Tz(d_i) Tx(a_i) Rx(alpha_i)

The URDF follows it literally, so URDF joint angles *are* DH angles (no offsets):
joint i rotates about z of frame i-1 (joint origin = identity for joint 1), and
the fixed part Tz(d_i) Tx(a_i) Rx(alpha_i) becomes the origin of joint i+1
(`xyz = (a_i, 0, d_i)`, `rpy = (alpha_i, 0, 0)`). The flange frame `tool0` is DH
frame 6. `dh_forward(q)` is the reference the tests compare PyBullet's forward
kinematics against.

Geometry is primitive (cylinders along the DH segments, boxes for the gripper).
Masses are the UR5 datasheet values per link; inertias are those of solid
cylinders of that mass. Joint limits: +-2 pi, 3.15 rad/s, torques 150/150/150/28/28/28 N m.

The gripper is a parallel-jaw gripper of our own (two prismatic fingers, box
pads 6 cm wide, 6 cm long, stroke 0..5.5 cm each, so 0..11 cm opening), driven
by position control with a force limit. `tcp` (the tool centre point, between
the pads, 1.5 cm above the finger tips) is the frame the tasks control.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# Published UR5 DH parameters (metres, radians), joints 1..6.
DH_D_M = (0.089159, 0.0, 0.0, 0.10915, 0.09465, 0.0823)
DH_A_M = (0.0, -0.425, -0.39225, 0.0, 0.0, 0.0)
DH_ALPHA_RAD = (math.pi / 2, 0.0, 0.0, math.pi / 2, -math.pi / 2, 0.0)

ARM_JOINTS = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint",
              "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
ARM_LINKS = ("shoulder_link", "upper_arm_link", "forearm_link", "wrist_1_link", "wrist_2_link", "wrist_3_link")
FINGER_JOINTS = ("finger_left_joint", "finger_right_joint")

LINK_MASS_KG = (3.7, 8.393, 2.275, 1.219, 1.219, 0.1879)
"""UR5 datasheet link masses (shoulder .. wrist 3); the base weighs 4.0 kg but is fixed."""
LINK_RADIUS_M = (0.06, 0.055, 0.045, 0.04, 0.04, 0.035)
JOINT_LIMIT_RAD = 2 * math.pi
JOINT_VEL_LIMIT_RAD_S = 3.15
JOINT_EFFORT_NM = (150.0, 150.0, 150.0, 28.0, 28.0, 28.0)

# Gripper geometry (metres), in the flange frame (z out of the flange).
PALM_SIZE_M = (0.05, 0.15, 0.04)
"""Palm box (x, y, z); the fingers slide along y."""
PALM_MASS_KG = 0.4
FINGER_SIZE_M = (0.06, 0.012, 0.06)
"""Finger box (x width of the pad, y thickness, z length)."""
FINGER_MASS_KG = 0.05
FINGER_STROKE_M = 0.055
"""Travel of each finger from closed (pads touching) to fully open."""
FINGER_FORCE_N = 60.0
FINGER_VEL_M_S = 0.12
TCP_OFFSET_M = PALM_SIZE_M[2] + FINGER_SIZE_M[2] - 0.015
"""Flange to tool centre point: 1.5 cm above the finger tips."""

ASSET_PATH = Path(__file__).resolve().parent / "assets" / "ur5.urdf"


def dh_transform(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    """Rz(theta) Tz(d) Tx(a) Rx(alpha) as a 4x4 homogeneous matrix."""
    ct, st, ca, sa = math.cos(theta), math.sin(theta), math.cos(alpha), math.sin(alpha)
    return np.array([
        [ct, -st * ca, st * sa, a * ct],
        [st, ct * ca, -ct * sa, a * st],
        [0.0, sa, ca, d],
        [0.0, 0.0, 0.0, 1.0],
    ])


def dh_forward(q_rad: np.ndarray) -> np.ndarray:
    """Pose (4x4) of DH frame 6 (the flange, `tool0`) in the base frame for joint angles q (6,)."""
    q = np.asarray(q_rad, dtype=np.float64).reshape(6)
    pose = np.eye(4)
    for i in range(6):
        pose = pose @ dh_transform(q[i], DH_D_M[i], DH_A_M[i], DH_ALPHA_RAD[i])
    return pose


def _cylinder_inertia(mass: float, radius: float, length: float) -> tuple[float, float, float]:
    """(ixx, iyy, izz) of a solid cylinder along z about its centre."""
    side = mass * (3 * radius**2 + length**2) / 12.0
    return side, side, 0.5 * mass * radius**2


def _box_inertia(mass: float, size: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z = size
    return mass * (y * y + z * z) / 12, mass * (x * x + z * z) / 12, mass * (x * x + y * y) / 12


def _fmt(values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def _inertial(mass: float, xyz, rpy, diag) -> str:
    return (f'    <inertial><origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/><mass value="{mass:.6g}"/>'
            f'<inertia ixx="{diag[0]:.6g}" ixy="0" ixz="0" iyy="{diag[1]:.6g}" iyz="0" izz="{diag[2]:.6g}"/></inertial>\n')


def _shape(xyz, rpy, geometry: str, material: str = "grey") -> str:
    origin = f'<origin xyz="{_fmt(xyz)}" rpy="{_fmt(rpy)}"/>'
    return (f"    <visual>{origin}<geometry>{geometry}</geometry><material name=\"{material}\"/></visual>\n"
            f"    <collision>{origin}<geometry>{geometry}</geometry></collision>\n")


def _arm_link(i: int) -> str:
    """Link i+1 (0-based i): a cylinder from its origin to the next joint, (a_i, 0, d_i), plus a joint housing."""
    name, mass, r = ARM_LINKS[i], LINK_MASS_KG[i], LINK_RADIUS_M[i]
    a, d = DH_A_M[i], DH_D_M[i]
    if abs(a) > 0:  # segment along x
        length, centre, rpy = abs(a), (a / 2, 0.0, 0.0), (0.0, math.pi / 2, 0.0)
    else:  # segment along z
        length, centre, rpy = abs(d), (0.0, 0.0, d / 2), (0.0, 0.0, 0.0)
    body = _shape(centre, rpy, f'<cylinder radius="{r:.4g}" length="{length:.6g}"/>')
    housing = _shape((0, 0, 0), (0, 0, 0), f'<cylinder radius="{r:.4g}" length="{2 * r:.4g}"/>', "blue")
    return (f'  <link name="{name}">\n' + _inertial(mass, centre, rpy, _cylinder_inertia(mass, r, length))
            + body + housing + "  </link>\n")


def urdf_text() -> str:
    """The complete URDF (arm + gripper) as a string."""
    out = ['<?xml version="1.0"?>\n<!-- Generated by sim_bridge/ur5/model.py from the UR5 DH parameters; do not edit. -->\n'
           '<robot name="ur5">\n',
           '  <material name="grey"><color rgba="0.7 0.7 0.7 1"/></material>\n',
           '  <material name="blue"><color rgba="0.3 0.4 0.8 1"/></material>\n',
           '  <material name="dark"><color rgba="0.2 0.2 0.2 1"/></material>\n']
    base_h = 0.05
    out.append('  <link name="base_link">\n' + _inertial(4.0, (0, 0, base_h / 2), (0, 0, 0), _cylinder_inertia(4.0, 0.075, base_h))
               + _shape((0, 0, base_h / 2), (0, 0, 0), f'<cylinder radius="0.075" length="{base_h}"/>', "dark")
               + "  </link>\n")
    parent = "base_link"
    origin_xyz, origin_rpy = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
    for i in range(6):
        out.append(_arm_link(i))
        out.append(
            f'  <joint name="{ARM_JOINTS[i]}" type="revolute"><parent link="{parent}"/><child link="{ARM_LINKS[i]}"/>'
            f'<origin xyz="{_fmt(origin_xyz)}" rpy="{_fmt(origin_rpy)}"/><axis xyz="0 0 1"/>'
            f'<limit lower="{-JOINT_LIMIT_RAD:.6g}" upper="{JOINT_LIMIT_RAD:.6g}" effort="{JOINT_EFFORT_NM[i]}" '
            f'velocity="{JOINT_VEL_LIMIT_RAD_S}"/><dynamics damping="0.5" friction="0.0"/></joint>\n')
        parent = ARM_LINKS[i]
        origin_xyz, origin_rpy = (DH_A_M[i], 0.0, DH_D_M[i]), (DH_ALPHA_RAD[i], 0.0, 0.0)
    # tool0 = DH frame 6 (the flange), carrying the palm.
    px, py, pz = PALM_SIZE_M
    out.append('  <link name="tool0">\n' + _inertial(PALM_MASS_KG, (0, 0, pz / 2), (0, 0, 0), _box_inertia(PALM_MASS_KG, PALM_SIZE_M))
               + _shape((0, 0, pz / 2), (0, 0, 0), f'<box size="{_fmt(PALM_SIZE_M)}"/>', "dark") + "  </link>\n")
    out.append(f'  <joint name="flange" type="fixed"><parent link="wrist_3_link"/><child link="tool0"/>'
               f'<origin xyz="{_fmt(origin_xyz)}" rpy="{_fmt(origin_rpy)}"/></joint>\n')
    fx, fy, fz = FINGER_SIZE_M
    for side, sign in (("left", 1.0), ("right", -1.0)):
        link = f"finger_{side}"
        out.append(f'  <link name="{link}">\n'
                   + _inertial(FINGER_MASS_KG, (0, sign * fy / 2, fz / 2), (0, 0, 0), _box_inertia(FINGER_MASS_KG, FINGER_SIZE_M))
                   + _shape((0, sign * fy / 2, fz / 2), (0, 0, 0), f'<box size="{_fmt(FINGER_SIZE_M)}"/>', "grey")
                   + "  </link>\n")
        out.append(f'  <joint name="finger_{side}_joint" type="prismatic"><parent link="tool0"/><child link="{link}"/>'
                   f'<origin xyz="0 0 {pz:.6g}" rpy="0 0 0"/><axis xyz="0 {sign:g} 0"/>'
                   f'<limit lower="0" upper="{FINGER_STROKE_M}" effort="{FINGER_FORCE_N}" velocity="{FINGER_VEL_M_S}"/>'
                   f'<dynamics damping="1.0" friction="0.0"/></joint>\n')
    out.append('  <link name="tcp"><inertial><mass value="0.001"/><inertia ixx="1e-7" ixy="0" ixz="0" iyy="1e-7" iyz="0" izz="1e-7"/></inertial></link>\n')
    out.append(f'  <joint name="tcp_joint" type="fixed"><parent link="tool0"/><child link="tcp"/>'
               f'<origin xyz="0 0 {TCP_OFFSET_M:.6g}" rpy="0 0 0"/></joint>\n')
    out.append("</robot>\n")
    return "".join(out)


def write_urdf(path: Path = ASSET_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(urdf_text())
    return path


if __name__ == "__main__":
    print(write_urdf())
