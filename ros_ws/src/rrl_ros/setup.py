"""ament_python package of the rrl ROS 2 nodes.

`colcon build` installs it into an ament prefix (executables in lib/rrl_ros, as
`ros2 run rrl_ros sim_bridge` expects); `pip install --no-deps -e ros_ws/src/rrl_ros`
installs it into the project's virtual environment, where `rrl launch` finds the
console scripts. The nodes import the repository's pure packages (sim_bridge,
controllers, policies), which `pip install -e .` at the repository root provides.
"""

from glob import glob

from setuptools import setup

PACKAGE = "rrl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("../../../launch/*.launch.yaml")),
        (f"share/{PACKAGE}/launch/params", glob("../../../launch/params/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="rrl",
    maintainer_email="rrl@example.com",
    description="rrl ROS 2 nodes: sim_bridge and control node",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "sim_bridge = rrl_ros.sim_bridge_node:main",
            "control_node = rrl_ros.control_node:main",
        ],
    },
)
