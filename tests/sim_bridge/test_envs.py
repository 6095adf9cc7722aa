"""Gymnasium environments over the UR5 and Adroit tasks: ids, spaces per obs_mode, seeding."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim_bridge.task import CameraConfig


@pytest.mark.parametrize("env_id", ["rrl/UR5Pick-v0", "rrl/UR5Bowl-v0", "rrl/UR5Push-v0"])
def test_state_mode_spaces_and_seeding(env_id):
    env = gym.make(f"sim_bridge.envs:{env_id}")
    try:
        assert env.action_space.shape == (4,)
        obs, info = env.reset(seed=123)
        assert env.observation_space.contains(obs)
        again, _ = env.reset(seed=123)
        np.testing.assert_array_equal(obs, again)
        obs2, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs2) and reward in (0.0, 1.0) and "success" in info
    finally:
        env.close()


def test_env_checker_passes_in_state_mode():
    env = gym.make("sim_bridge.envs:rrl/UR5Push-v0")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("mode", ["depth", "depth+proprio"])
def test_image_modes(mode):
    env = gym.make("sim_bridge.envs:rrl/UR5Pick-v0", obs_mode=mode, camera=CameraConfig(32, 24))
    try:
        obs, _ = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        depth = obs if mode == "depth" else obs["depth"]
        assert depth.shape == (3, 24, 32)
        if mode == "depth+proprio":
            assert obs["proprio"].shape == (8,)
    finally:
        env.close()


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="obs_mode"):
        gym.make("sim_bridge.envs:rrl/UR5Pick-v0", obs_mode="rgb")


@pytest.mark.parametrize("env_id,task", [("rrl/AdroitDoor-v0", "adroit_door"), ("rrl/AdroitHammer-v0", "adroit_hammer"),
                                         ("rrl/AdroitPen-v0", "adroit_pen"), ("rrl/AdroitRelocate-v0", "adroit_relocate")])
def test_adroit_state_mode_is_the_task(env_id, task):
    """The hand tasks as gymnasium envs: the task's actions and full state, the task's episode for a seed."""
    from sim_bridge import make_task

    env = gym.make(f"sim_bridge.envs:{env_id}")
    try:
        obs, _ = env.reset(seed=5)
        assert env.observation_space.contains(obs)
        with make_task(task) as reference:
            assert env.action_space.shape == (reference.spec.action.size,)
            np.testing.assert_array_equal(obs, reference.reset(5)["state"])
            action = env.action_space.sample()
            obs2, reward, terminated, truncated, info = env.step(action)
            np.testing.assert_array_equal(obs2, reference.step(action.astype(np.float64)).obs["state"])
            assert reward in (0.0, 1.0) and "success" in info
    finally:
        env.close()


def test_adroit_rgb_mode_and_check_env():
    env = gym.make("sim_bridge.envs:rrl/AdroitDoor-v0", obs_mode="rgb+proprio", camera=CameraConfig(32, 24))
    try:
        obs, _ = env.reset(seed=1)
        assert env.observation_space.contains(obs)
        assert obs["rgb"].shape == (3, 24, 32, 3) and obs["rgb"].dtype == np.uint8 and obs["rgb"].max() > 0
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    with pytest.raises(ValueError, match="obs_mode must be one of .*'rgb'"):
        gym.make("sim_bridge.envs:rrl/AdroitDoor-v0", obs_mode="depth")
