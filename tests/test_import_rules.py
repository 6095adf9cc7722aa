"""The import rules of DESIGN.md, checked on every source file (including imports inside functions).

- controllers/: pure numpy. No simulator, no ROS, no torch, nothing above it.
- policies/, sim_bridge/: never rclpy; runtime code never imports torch. One exception, named in EXCEPTIONS:
  policies/replay.py (the replay base) reads demonstration bags with the one bag reader, training.demos.
- training/: never ROS (rclpy, ros_ws, the ROS nodes).
- ros_ws/: nodes are thin shells: no torch, no training code.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ROS = {"rclpy", "rosidl_runtime_py", "std_msgs", "sensor_msgs", "geometry_msgs", "rosgraph_msgs",
       "rcl_interfaces", "builtin_interfaces", "std_srvs", "rrl_ros"}
SIMULATORS = {"pybullet", "pybullet_data", "mujoco", "gymnasium", "gymnasium_robotics"}
TORCH = {"torch"}

FORBIDDEN: dict[str, set[str]] = {
    "controllers": ROS | SIMULATORS | TORCH | {"onnxruntime", "sim_bridge", "policies", "training", "rrl"},
    "sim_bridge": ROS | TORCH | {"policies", "training", "rrl"},
    "policies": ROS | TORCH | SIMULATORS | {"training", "rrl"},
    "training": ROS | {"rrl"},
    "ros_ws": TORCH | {"training", "rrl"},
}

EXCEPTIONS: dict[str, dict[str, str]] = {
    "policies/replay.py": {"training": "training.demos"},
}
"""file -> {forbidden root it may import: the only subpackage it may import from it}."""


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def imported_roots(path: Path) -> set[str]:
    return {m.split(".")[0] for m in imported_modules(path)}


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "build" not in p.parts and "install" not in p.parts)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_import_rules(package):
    files = sources(package)
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_roots(path) & FORBIDDEN[package])
        if not _excepted(path, name)
    ]
    assert not violations, "import rules of DESIGN.md broken:\n" + "\n".join(violations)


def _excepted(path: Path, root: str) -> bool:
    """Whether every import of `root` in `path` stays inside the subpackage EXCEPTIONS allows it."""
    allowed = EXCEPTIONS.get(path.relative_to(ROOT).as_posix(), {}).get(root)
    return allowed is not None and all(m == allowed or m.startswith(allowed + ".")
                                       for m in imported_modules(path) if m.split(".")[0] == root)


def test_rule_checker_sees_function_local_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    import torch.nn\n    from rclpy.node import Node\n")
    assert {"torch", "rclpy"} <= imported_roots(source)
