"""A 2-D point mass that must reach a goal disc, with a sparse reward: the smallest continuous task."""

import numpy as np

from training.dmpo.train import EnvStep


class PointMassReach:
    """obs = (position, goal) in [-1, 1]^4; action z (2,) -> velocity 0.2·clip(z, -1, 1) per step.

    Reward 1 and termination when within `radius` of the goal; `horizon` steps otherwise.
    """

    observation_dim = 4
    action_dim = 2

    def __init__(self, radius: float = 0.15, horizon: int = 25):
        self.radius, self.horizon = radius, horizon

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        self.pos = rng.uniform(-1, 1, 2)
        self.goal = rng.uniform(-0.7, 0.7, 2)
        self.t = 0
        return self._obs()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal]).astype(np.float32)

    def step(self, action: np.ndarray) -> EnvStep:
        self.pos = np.clip(self.pos + 0.2 * np.clip(action, -1, 1), -1, 1)
        self.t += 1
        success = bool(np.linalg.norm(self.pos - self.goal) < self.radius)
        return EnvStep(self._obs(), float(success), success, self.t >= self.horizon and not success, success)


def evaluate_point_mass(act, episodes: int = 50, seed: int = 10_000) -> dict:
    env, wins = PointMassReach(), []
    for i in range(episodes):
        obs, done = env.reset(seed + i), False
        while not done:
            step = env.step(act(obs))
            obs, done = step.obs, step.terminated or step.truncated
        if step.success:
            wins.append(env.t)
    return {"episodes": episodes, "success_rate": len(wins) / episodes, "mean_steps_success": float(np.mean(wins)) if wins else None}


class PixelGoalReach(PointMassReach):
    """The same reach, but the goal is shown only in a camera frame: obs = position (2,); the frame (2, px, px)
    float16 shows the goal's x and y as the brightness of its two channels. A policy that does not read the frame
    cannot know where to go. (Brightness, not a spot: the ResNet's global average pool keeps little of where a
    spot lies in so small a frame.)

    Provides what an image agent's environment provides (`training.dmpo.train.ImageField`): `frame()` (the
    newest frame) and `frames()` (the stack, here one frame)."""

    observation_dim = 2

    def __init__(self, px: int = 8, **kw):
        super().__init__(**kw)
        self.px = px

    def _obs(self) -> np.ndarray:
        return self.pos.astype(np.float32)

    def frame(self) -> np.ndarray:
        brightness = (self.goal + 1) / 2
        return np.broadcast_to(brightness[:, None, None], (2, self.px, self.px)).astype(np.float16)

    def frames(self) -> np.ndarray:
        return self.frame().astype(np.float32)


def evaluate_pixel_goal(act, episodes: int = 50, seed: int = 10_000) -> dict:
    """act(flat input [position, frame]) -> z, on held-out goals."""
    env, wins = PixelGoalReach(), []
    for i in range(episodes):
        obs, done = env.reset(seed + i), False
        while not done:
            step = env.step(act(np.concatenate([obs, env.frames().reshape(-1)])))
            obs, done = step.obs, step.terminated or step.truncated
        if step.success:
            wins.append(env.t)
    return {"episodes": episodes, "success_rate": len(wins) / episodes, "mean_steps_success": float(np.mean(wins)) if wins else None}


class PixelBandit:
    """Two-step episodes whose right action only a camera frame shows: the frame (1, px, px) is dark or bright
    (drawn per episode, over a random texture); the first action does nothing, the second succeeds (reward 1) if z[0] > 0 on a bright
    frame or z[0] < 0 on a dark one. A policy blind to the frame succeeds half the time at best. The vector
    observation is the step index. (Two steps, because MPO improves the policy at the batch's next
    observations: a one-step episode never shows it a state where the choice is made.)"""

    observation_dim = 1
    action_dim = 1

    def __init__(self, px: int = 8):
        self.px = px

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        self.bright = bool(rng.integers(2))
        self.texture = rng.normal(0.0, 0.03, (1, self.px, self.px))  # every frame differs, as camera frames do
        self.t = 0
        return np.zeros(1, np.float32)

    def step(self, action: np.ndarray) -> EnvStep:
        self.t += 1
        if self.t == 1:
            return EnvStep(np.ones(1, np.float32), 0.0, False, False, False)
        success = bool((action[0] > 0) == self.bright)
        return EnvStep(np.full(1, 2.0, np.float32), float(success), True, False, success)

    def frame(self) -> np.ndarray:
        return np.clip((0.75 if self.bright else 0.25) + self.texture, 0, 1).astype(np.float16)

    def frames(self) -> np.ndarray:
        return self.frame().astype(np.float32)


def evaluate_pixel_bandit(act, episodes: int = 50, seed: int = 10_000) -> dict:
    """act(flat input [step index, frame]) -> z, on held-out episodes."""
    env, wins = PixelBandit(), 0
    for i in range(episodes):
        obs, done = env.reset(seed + i), False
        while not done:
            step = env.step(act(np.concatenate([obs, env.frames().reshape(-1)])))
            obs, done = step.obs, step.terminated
        wins += step.success
    return {"episodes": episodes, "success_rate": wins / episodes, "mean_steps_success": 2.0 if wins else None}
