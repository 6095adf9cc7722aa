"""Gymnasium environments over the tasks: `rrl/UR5Pick-v0`, `rrl/UR5Bowl-v0`, `rrl/UR5Push-v0`
(PyBullet arm) and `rrl/AdroitDoor-v0`, `rrl/AdroitHammer-v0`, `rrl/AdroitPen-v0`,
`rrl/AdroitRelocate-v0` (MuJoCo hand).

    import gymnasium as gym
    env = gym.make("sim_bridge.envs:rrl/UR5Pick-v0", obs_mode="depth+proprio")
    env = gym.make("sim_bridge.envs:rrl/AdroitDoor-v0", obs_mode="rgb")

(the `module:` prefix makes gymnasium import this module, which registers the ids;
`import sim_bridge.envs` does the same). `obs_mode`, where IMAGE is the task's camera
(`depth` on the UR5 tasks, `rgb` on the hand tasks; `task.spec.camera`):

- `state`: float32 (S,) full state (`task.spec.state` names it); no rendering, fastest.
- `IMAGE`: the last 3 frames: depth float32 (3, H, W) in [0, 1], or rgb uint8 (3, H, W, 3).
- `IMAGE+proprio`: dict {IMAGE: frames, "proprio": (P,)}.

Other keyword arguments go to the task (`sim_bridge.make_task`), e.g. the hand
tasks' `render_quality="fast"|"quality"` (`sim_bridge.adroit.tasks.RENDER_QUALITY`;
"fast", the default, renders without shadows and anti-aliasing):

    env = gym.make("sim_bridge.envs:rrl/AdroitDoor-v0", obs_mode="rgb", render_quality="quality")

`reset(seed=s)` runs the task's episode `s` (the same seed always gives the same
episode); `reset()` without a seed draws the next episode seed from the env's
generator. Episodes end by success (terminated) or the task horizon (truncated).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim_bridge import make_task
from sim_bridge.task import CameraConfig

OBS_BOUND = 10.0
"""Bound of the state and proprio boxes (positions in metres, velocities in m/s all stay far inside it)."""

ENV_IDS: dict[str, str] = {
    "rrl/UR5Pick-v0": "ur5_pick",
    "rrl/UR5Bowl-v0": "ur5_bowl",
    "rrl/UR5Push-v0": "ur5_push",
    "rrl/AdroitDoor-v0": "adroit_door",
    "rrl/AdroitHammer-v0": "adroit_hammer",
    "rrl/AdroitPen-v0": "adroit_pen",
    "rrl/AdroitRelocate-v0": "adroit_relocate",
}
"""Gymnasium id -> task name."""


def obs_modes(image: str) -> tuple[str, ...]:
    """The observation modes of a task whose camera gives `image` frames (`depth` or `rgb`)."""
    return ("state", image, f"{image}+proprio")


def image_space(image: str, camera: CameraConfig) -> spaces.Box:
    """The stacked camera frames, oldest first: depth (history, H, W) in [0, 1], rgb (history, H, W, 3) uint8."""
    if image == "depth":
        return spaces.Box(0.0, 1.0, (camera.history, camera.height_px, camera.width_px), np.float32)
    if image == "rgb":
        return spaces.Box(0, 255, (camera.history, camera.height_px, camera.width_px, 3), np.uint8)
    raise ValueError(f"no observation space for camera images {image!r}")


class TaskEnv(gym.Env):
    """A `sim_bridge` Task as a gymnasium environment."""

    metadata = {"render_modes": []}

    def __init__(self, task: str, obs_mode: str = "state", camera: CameraConfig | None = None, **task_options):
        if obs_mode != "state" and camera is None:
            camera = CameraConfig()
        self.task = make_task(task, camera=camera if obs_mode != "state" else None, **task_options)
        spec = self.task.spec
        image = spec.camera
        if obs_mode not in obs_modes(image):
            self.task.close()
            raise ValueError(f"obs_mode must be one of {obs_modes(image)} for {task}, got {obs_mode!r}")
        self.obs_mode, self.image = obs_mode, image
        self.spec_task = spec
        self.action_space = spaces.Box(np.asarray(spec.action_low, np.float32),
                                       np.asarray(spec.action_high, np.float32), dtype=np.float32)
        state = spaces.Box(-OBS_BOUND, OBS_BOUND, (spec.state.size,), np.float32)
        if obs_mode == "state":
            self.observation_space = state
        else:
            frames = image_space(image, camera)
            if obs_mode == image:
                self.observation_space = frames
            else:
                proprio = spaces.Box(-OBS_BOUND, OBS_BOUND, (spec.proprio.size,), np.float32)
                self.observation_space = spaces.Dict({image: frames, "proprio": proprio})

    def _convert(self, obs: dict[str, np.ndarray]) -> Any:
        if self.obs_mode == "state":
            return obs["state"]
        if self.obs_mode == self.image:
            return obs[self.image]
        return {self.image: obs[self.image], "proprio": obs["proprio"]}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        obs = self.task.reset(episode_seed)
        return self._convert(obs), {"seed": episode_seed, "success": False}

    def step(self, action):
        step = self.task.step(np.asarray(action, np.float64))
        return self._convert(step.obs), step.reward, step.terminated, step.truncated, step.info

    def close(self) -> None:
        self.task.close()


def _register() -> None:
    for env_id, task in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="sim_bridge.envs:TaskEnv", kwargs={"task": task},
                         disable_env_checker=True)


_register()
