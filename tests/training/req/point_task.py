"""A tiny 2-D reaching task with a too-timid waypoint expert, for REQ tests (implements `ExpertEnv`).

State: (position (2,), goal (2,), time left as a fraction of the horizon), so it is Markov.
Action: velocity in [-1, 1]^2 moving at most `speed_m` per step and axis. Sparse reward 1 on
reaching the goal (within `tolerance_m`), which ends the episode; horizon 6 steps. The goal is
0.3-1.4 m away. The expert is a P-controller with gain 1 (action = goal - pos, clipped): it
shrinks the distance by a quarter per step and only reaches goals closer than ~0.8 m in time
(about 45 % success). Full speed toward the goal reaches every goal in time.
Steps are coarse on purpose: one action moves the point a good part of the tolerance, so the
action gap of Q is large enough to learn in seconds.
"""

from __future__ import annotations

import numpy as np

from training.rollout import EnvStep


class PointReach:
    observation_dim = 5
    action_dim = 2
    max_steps = 6
    speed_m = 0.25
    tolerance_m = 0.15

    def reset(self, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.4)
        self.pos = np.zeros(2)
        self.goal = dist * np.array([np.cos(angle), np.sin(angle)])
        self.t = 0
        return self._obs()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goal, [1.0 - self.t / self.max_steps]]).astype(np.float32)

    @property
    def expert_action(self) -> np.ndarray:
        return np.clip(self.goal - self.pos, -1, 1).astype(np.float32)

    def step(self, action):
        self.pos = self.pos + self.speed_m * np.clip(np.asarray(action, float), -1, 1)
        self.t += 1
        success = bool(np.linalg.norm(self.goal - self.pos) < self.tolerance_m)
        return EnvStep(self._obs(), float(success), success, (self.t >= self.max_steps) and not success, success)
