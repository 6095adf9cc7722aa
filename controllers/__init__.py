"""Pure-numpy control laws: waypoint tracking, task experts, residual composition, safety limits.

Nothing here imports a simulator, ROS or torch (enforced by tests/test_import_rules.py).
"""
