"""The UR5 arm in PyBullet: model (URDF from DH), kinematics, robot wrapper, and the pick/bowl/push tasks."""
