"""Observations from standard robot inputs (policies.observations) against the simulated task's own.

The PyBullet task runs its waypoint expert; at every step the joint states (positions and
velocities, as a driver publishes them), the object positions and the cube's edge go through
`ur5_observation`, which must give the task's proprio and state.
"""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from controllers.experts import make_expert
from policies.observations import (
    FrameStack, JointReading, ObservationError, depth_to_policy, joint_reading, required_objects, ur5_observation,
)
from sim_bridge import make_task
from sim_bridge.task import CameraConfig


def readings(task) -> tuple[np.ndarray, np.ndarray]:
    states = p.getJointStates(task.robot.body, task.robot.joints, physicsClientId=task.client)
    return np.array([s[0] for s in states]), np.array([s[1] for s in states])


def objects(task) -> tuple[dict, dict]:
    pos = {"cube": task.cube_pose()[0]}
    for name in ("bowl", "target"):
        if hasattr(task, f"{name}_pos"):
            pos[name] = getattr(task, f"{name}_pos")
    return pos, {"cube": task.cube_size_m}


@pytest.mark.parametrize("name", ["ur5_pick", "ur5_bowl", "ur5_push"])
def test_the_observation_from_joint_states_and_poses_is_the_tasks(name):
    with make_task(name) as task:
        spec = task.spec
        expert = make_expert(name)
        obs = task.reset(7)
        expert.reset(7)
        previous = None
        vel_err = []
        for step in range(60):
            q, qdot = readings(task)
            pos, size = objects(task)
            t = step * spec.control_dt_s
            got = ur5_observation(spec, JointReading(q, qdot, t), pos, size)
            differenced = ur5_observation(spec, JointReading(q, None, t), pos, size, previous=previous)
            previous = JointReading(q, None, t)
            sl = spec.state.slices()
            np.testing.assert_allclose(got["proprio"][0:3], obs["proprio"][0:3], atol=1e-5)  # FK = PyBullet's TCP
            np.testing.assert_allclose(got["proprio"][6], obs["proprio"][6], atol=1e-6)  # gripper opening
            tail = slice(sl["tool_vel"].stop + 2, None)
            np.testing.assert_allclose(got["state"][tail], obs["state"][tail], atol=1e-6)  # objects, size
            if step > 0:  # differencing over the period is the task's own tool velocity
                np.testing.assert_allclose(differenced["proprio"][3:6], obs["proprio"][3:6], atol=2e-4)
            vel_err.append(np.abs(got["proprio"][3:6] - obs["proprio"][3:6]).max())
            obs = task.step(expert.act(spec.state.unpack(obs["state"]))).obs
        assert np.median(vel_err) < 0.01, vel_err  # J(q) qdot: instantaneous, near the period's average


def test_joint_names_objects_and_sizes_are_checked_by_name():
    with make_task("ur5_bowl") as task:
        spec = task.spec
    assert required_objects(spec) == (["cube", "bowl"], ["cube"])
    names = list(spec.joint_names)
    q = np.zeros(len(names))
    shuffled = joint_reading(names[::-1] + ["extra_joint"], list(q[::-1] + np.arange(8)) + [9.0], [], 0.0, spec)
    np.testing.assert_array_equal(shuffled.position, np.arange(8)[::-1])
    with pytest.raises(ObservationError, match=r"lacks joint\(s\) \['shoulder_pan_joint'\]"):
        joint_reading(["ur_shoulder_pan_joint"] + names[1:], q, [], 0.0, spec)
    reading = joint_reading(names, q, [], 0.0, spec)
    with pytest.raises(ObservationError, match="needs the pose of object 'bowl'"):
        ur5_observation(spec, reading, {"cube": np.zeros(3)}, {"cube": 0.05})
    with pytest.raises(ObservationError, match="needs the size of object 'cube'"):
        ur5_observation(spec, reading, {"cube": np.zeros(3), "bowl": np.zeros(3)}, {})
    with pytest.raises(ObservationError, match="not 3 finite"):
        ur5_observation(spec, reading, {"cube": [np.nan, 0, 0], "bowl": np.zeros(3)}, {"cube": 0.05})


def test_metric_depth_becomes_the_training_normalisation():
    with make_task("ur5_pick", camera=CameraConfig(32, 32, 3)) as task:
        task.reset(3)
        unit, metres = task.render_depth(), task.render_depth_m()
        spec = task.spec
    np.testing.assert_array_equal(depth_to_policy(metres, "32FC1", spec), unit)  # bit-identical
    mm = np.round(metres * 1000).astype(np.uint16)
    np.testing.assert_allclose(depth_to_policy(mm, "16UC1", spec), unit, atol=0.5e-3 / 1.9 + 1e-6)
    invalid = depth_to_policy(np.array([[0.0, np.nan, np.inf, 0.5]], np.float32), "32FC1", spec)
    np.testing.assert_allclose(invalid, [[1.0, 1.0, 1.0, 0.4 / 1.9]], rtol=1e-6)
    with pytest.raises(ObservationError, match="encoding 'rgb8'"):
        depth_to_policy(metres, "rgb8", spec)
    stack = FrameStack(3)
    a, b = np.zeros((2, 2)), np.ones((2, 2))
    assert stack.push(a).shape == (3, 2, 2) and stack.push(b)[-1].sum() == 4 and stack.push(b)[0].sum() == 0
