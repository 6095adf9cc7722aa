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
