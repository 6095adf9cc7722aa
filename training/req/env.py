"""A task with its expert, as REQ trains on it: flat observations, actions in [-1, 1]^D, psi(s).

`ExpertEnv` is the shared rollout contract (`training.rollout.RolloutEnv`, which DMPO's
`ResidualEnv` implements too) plus the expert's action:

    obs = env.reset(seed)          (S,) float32
    psi = env.expert_action        (D,) the expert's action psi(s) at the current state, [-1, 1]^D
    step = env.step(action)        training.rollout.EnvStep(obs, reward, terminated, truncated, success)

The expert is queried exactly once per visited state (its motion sequencer counts steps), whether
or not its action is executed, so psi(s) is recorded for every state (eq. 4 of the REQ paper).

Two uses of one task (`TaskEnv`):
- full policy (`residual=False`, the paper's setting): obs = full state, the action is the task's
  action, normalised per dimension to [-1, 1] by its limits; psi = the expert's action.
- residual (`residual=True`): obs = [full state, u] with u the expert's (waypoint controller's)
  normalised action, the executed action is u + residual_scale * half_range * a (then clipped), and
  the expert's action in residual coordinates is psi = 0 ("add nothing to the base"). This is the
  runtime's residual slot: base controller u plus a learned correction; binary fields (the
  gripper) stay with the base.

Executed actions go through the one policy path, `policies.runtime.ComposedPolicy.compose`: the
runtime's composition rule and safety layer (clip to the limits, NaN/Inf -> the base action,
counted in `counters`), so a REQ residual acts in training exactly as `rrl eval` and the ROS node
run its exported artifact (whose action statistics are the centre and half-range, c = residual_scale).
The full policy is the same rule with u = the centre of the limits and the policy's action scaled by
the half-range on every dimension (gripper included, thresholded at 0.5 like the runtime's clip).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from controllers.experts import Expert
from controllers.residual import ResidualComposer
from policies.runtime import BaseOutput, ComposedPolicy, ConstantBase, WaypointBase
from sim_bridge.spec import TaskSpec
from sim_bridge.task import Task
from training.req.config import REWARDS
from training.rollout import EnvStep, RolloutEnv


class ExpertEnv(RolloutEnv, Protocol):
    max_steps: int

    @property
    def expert_action(self) -> np.ndarray: ...


def action_center_scale(spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension center and half-range of the task's action box (action = center + scale * a_norm)."""
    low, high = np.asarray(spec.action_low, np.float64), np.asarray(spec.action_high, np.float64)
    return (high + low) / 2.0, np.maximum((high - low) / 2.0, 1e-6)


class TaskEnv:
    """A `sim_bridge` task plus its scripted expert behind `ExpertEnv` (see module docstring)."""

    def __init__(self, task: Task, expert: Expert, residual: bool = False, residual_scale: float = 0.5,
                 reward: str = "sparse"):
        self.task = task
        self.reward = reward
        """`sparse`: the task's reward (1 on success); `shaped`: `task.shaped_reward()` after each step plus it."""
        if reward == "shaped":
            if type(task).shaped_reward is Task.shaped_reward:  # refused before any training
                raise ValueError(f"reward shaped: task {task.spec.name!r} has no shaped reward "
                                 "(`sim_bridge.task.Task.shaped_reward`; tasks with one: adroit_pen)")
        elif reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.expert = expert
        self.spec = task.spec
        self.residual = residual
        self.residual_scale = float(residual_scale)
        if residual and not 0.0 < residual_scale <= 2.0:
            raise ValueError(f"residual_scale must be in (0, 2], got {residual_scale}")
        self.center, self.scale = action_center_scale(self.spec)
        limits = self.spec.action_limits
        if residual:
            composer = ResidualComposer(limits, scale=tuple(self.residual_scale * self.scale))
        else:
            composer = ResidualComposer(limits, scale=tuple(self.scale), residual_on_binary=True)
        self.base = WaypointBase(self.spec, expert=expert) if residual else ConstantBase(self.center, name="centre")
        """The composed policy's base: the expert, as the runtime's `waypoint` base gives it, or the centre of the limits."""
        self.policy = ComposedPolicy(self.spec, self.base, composer=composer)
        """The runtime's composition and safety layer (the expert is queried by this env, once per state)."""
        self.action_dim = self.spec.action.size
        self.observation_dim = self.spec.state.size + (self.action_dim if residual else 0)
        self.max_steps = self.spec.max_steps
        self.horizon: int | None = None
        """Optional shorter episode cap (training only: long failed episodes teach little); None = task horizon."""
        self._state = np.zeros(self.spec.state.size, np.float32)
        self._u = np.zeros(self.action_dim, np.float32)
        self._u_action = np.zeros(self.action_dim, np.float64)

    def normalize(self, action: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(action, np.float64) - self.center) / self.scale, -1, 1).astype(np.float32)

    def denormalize(self, action_norm: np.ndarray) -> np.ndarray:
        return self.center + self.scale * np.asarray(action_norm, np.float64)

    def _observe(self, obs: dict) -> np.ndarray:
        self._state = np.asarray(obs["state"], np.float32)
        if self.residual:  # u from the base, so training composes on what the runtime's waypoint base gives
            self._u_action = self.base.step(obs).action
        else:  # psi(s): the expert's action, executed only on its own steps
            self._u_action = np.asarray(self.expert.act(self.spec.state.unpack(self._state)), np.float64)
        self._u = self.normalize(self._u_action)
        return np.concatenate([self._state, self._u]) if self.residual else self._state.copy()

    def reset(self, seed: int) -> np.ndarray:
        obs = self.task.reset(seed)
        self.expert.reset(seed)
        return self._observe(obs)

    @property
    def expert_action(self) -> np.ndarray:
        return np.zeros(self.action_dim, np.float32) if self.residual else self._u.copy()

    @property
    def counters(self):
        """The safety layer's counters over the env's lifetime (NaN/Inf fallbacks, clips)."""
        return self.policy.counters

    def executed_action(self, action: np.ndarray) -> np.ndarray:
        """The task-unit action that `step(action)` applies: the composed policy's command for u and a."""
        a = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        u = self._u_action if self.residual else self.base.u  # u as the composed policy's base gives it
        return self.policy.compose(BaseOutput(action=np.asarray(u, np.float64), features=None), a).command

    def evaluation_policy(self, act) -> ComposedPolicy:
        """The policy `act(vector) -> a in [-1, 1]^D` as the runtime runs it, for `training.evaluation`'s loop
        (the one `rrl eval` runs): base = the expert (residual) or the centre of the limits (full policy),
        residual = `act` on this env's input vector, composed and made safe exactly as `step` does."""
        return ComposedPolicy(self.spec, self.base, _ActorResidual(self, act), composer=self.policy.composer)

    def step(self, action: np.ndarray) -> EnvStep:
        step = self.task.step(self.executed_action(action))
        truncated = step.truncated or (self.horizon is not None and not step.terminated
                                        and self.task.step_count >= self.horizon)
        done = step.terminated or truncated
        obs = self._observe(step.obs) if not done else (
            np.concatenate([np.asarray(step.obs["state"], np.float32), self._u]) if self.residual
            else np.asarray(step.obs["state"], np.float32))
        reward = float(step.reward) + (self.task.shaped_reward() if self.reward == "shaped" else 0.0)
        return EnvStep(obs, reward, bool(step.terminated), bool(truncated), bool(step.success))

    def close(self) -> None:
        self.task.close()


class _ActorResidual:
    """A learned policy `act(vector)` in the composed policy's residual slot, on the env's input vector:
    [state, normalised u] (residual) or the state (full policy); its action clipped to [-1, 1]^D."""

    needs_images, artifact = False, None

    def __init__(self, env: TaskEnv, act, name: str = "req"):
        self.env, self.act, self.name = env, act, name

    def reset(self, seed: int) -> None:
        pass

    def mean(self, obs, base: BaseOutput) -> np.ndarray:
        state = np.asarray(obs["state"], np.float32)
        vector = np.concatenate([state, self.env.normalize(base.action)]) if self.env.residual else state
        return np.clip(np.asarray(self.act(vector), np.float64), -1.0, 1.0)
