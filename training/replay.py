"""A uniform replay buffer over named fields with n-step returns computed at sample time.

Storage is one ring of preallocated numpy arrays with one *slot per time step*
(dm_env / Reverb style): slot t holds the observation fields of o_t and, once
the agent acted, the step fields of a_t (e.g. `action`), the reward r_t that
followed and the per-step discount d_t (0 on termination, 1 otherwise). An
episode of T steps therefore uses T + 1 slots; its last slot holds only o_T.
Nothing is stored twice: the next observation of slot t is slot t + 1, so a
transition never copies its successor's observation.

Sampling is uniform over slots that have a step. For each sampled t the n-step
target is assembled from the stored steps, stopping early at the end of an
episode (terminated or truncated), at a slot not yet written, or at data the
ring already overwrote:

    m        = number of steps taken, 1 <= m <= n
    R_t      = sum_{k<m} gamma^k (prod_{j<k} d_{t+j}) r_{t+k}
    discount = gamma^m prod_{j<m} d_{t+j}           (0 once a terminal step is inside)
    next_obs = o_{t+m}

which is Acme's n-step transition (`acme/adders/reverb/transition.py`) computed
lazily, so n and gamma can change without refilling the buffer.

Images without copying frames: give a field `history=k` and store only the
newest frame (or the frozen encoder's feature vector) per slot; `sample`
stacks the last k slots of the same episode (the episode's earliest stored
entry repeats before it), oldest first. A stack of 3 frames per transition would copy
every frame 3 times (6 with the next observation).

Slots carry the episode id and a global step counter; a run of slots belongs to
one episode only if both agree, which makes wrap-around safe without erasing
anything when the ring overwrites old data.

Shapes: B batch, n steps, k history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

_RESERVED = ("reward", "discount")


@dataclass(frozen=True)
class FieldSpec:
    """One named field of the buffer."""

    shape: tuple[int, ...]
    """Shape of one entry (without batch or history)."""
    dtype: str = "float32"
    """numpy dtype name of the stored array (e.g. `float32`, `uint8`, `int64`)."""
    kind: str = "obs"
    """`obs`: part of the observation, returned at t and at t + m (as `next_obs`);
    `step`: recorded with the action at t (the action itself, a base action actually executed, ...)."""
    history: int = 1
    """For `obs` fields: how many consecutive slots `sample` stacks (frames: store only the newest one)."""

    def __post_init__(self) -> None:
        if self.kind not in ("obs", "step"):
            raise ValueError(f"FieldSpec.kind must be 'obs' or 'step', got {self.kind!r}")
        if self.history < 1:
            raise ValueError(f"FieldSpec.history must be >= 1, got {self.history}")
        if self.kind == "step" and self.history != 1:
            raise ValueError("FieldSpec.history applies to obs fields only")
        np.dtype(self.dtype)  # raises TypeError on an unknown dtype name


@dataclass
class Sample:
    """A batch of n-step transitions; every array has the batch dimension B first."""

    obs: dict[str, np.ndarray]
    """Observation fields at t, (B, *shape) or (B, k, *shape) for history fields."""
    step: dict[str, np.ndarray]
    """Step fields at t (the action a_t, ...), (B, *shape)."""
    reward: np.ndarray
    """(B,) float32: discounted n-step return sum_{k<m} gamma^k (prod_{j<k} d_{t+j}) r_{t+k}."""
    discount: np.ndarray
    """(B,) float32: bootstrap discount gamma^m prod_{j<m} d_{t+j}."""
    next_obs: dict[str, np.ndarray]
    """Observation fields at t + m."""
    steps: np.ndarray
    """(B,) int64: m, the number of steps actually taken (< n at episode ends)."""
    index: np.ndarray
    """(B,) int64: the sampled slots t."""


@dataclass
class ReplayBuffer:
    """Ring buffer of time steps; see the module docstring for the layout.

    Writing follows the actor loop:

        buf.add_first({"state": o0})
        buf.add({"action": a0}, reward=r0, discount=d0, next_obs={"state": o1})
        ...                                  # an episode ends by the next add_first
    """

    capacity: int
    """Number of slots (time steps, including each episode's final observation)."""
    fields: Mapping[str, FieldSpec]
    """Named fields; `reward` and `discount` are built in."""
    _data: dict[str, np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.capacity < 2:
            raise ValueError(f"replay capacity must be >= 2, got {self.capacity}")
        for name in self.fields:
            if name in _RESERVED or name.startswith("_"):
                raise ValueError(f"replay field name {name!r} is reserved")
        self.fields = dict(self.fields)
        self._data = {name: np.zeros((self.capacity, *spec.shape), dtype=spec.dtype) for name, spec in self.fields.items()}
        self._data["reward"] = np.zeros(self.capacity, np.float32)
        self._data["discount"] = np.zeros(self.capacity, np.float32)
        self._data["_has_step"] = np.zeros(self.capacity, bool)
        self._data["_episode"] = np.full(self.capacity, -1, np.int64)
        self._data["_time"] = np.full(self.capacity, -1, np.int64)
        self._cursor = -1  # slot of the newest observation
        self._written = 0  # slots ever written (the global step counter)
        self._episodes = 0
        self._steps = 0  # steps (actions) ever added
        self._stored = 0  # slots now holding a step: len(self), kept as a count since it is asked every frame
        self._open = False  # an episode is being written

    # -- writing -------------------------------------------------------------------------------

    @property
    def obs_fields(self) -> list[str]:
        return [n for n, s in self.fields.items() if s.kind == "obs"]

    @property
    def step_fields(self) -> list[str]:
        return [n for n, s in self.fields.items() if s.kind == "step"]

    def __len__(self) -> int:
        """Number of slots that hold a step (and so can be sampled)."""
        return self._stored

    @property
    def steps_added(self) -> int:
        """Steps (actions) ever added, overwritten ones included."""
        return self._steps

    def _write_obs(self, obs: Mapping[str, np.ndarray]) -> None:
        missing = set(self.obs_fields) - set(obs)
        if missing:
            raise KeyError(f"observation is missing replay fields {sorted(missing)}")
        self._cursor = (self._cursor + 1) % self.capacity
        c = self._cursor
        for name in self.obs_fields:
            self._store(name, c, obs[name])
        self._stored -= int(self._data["_has_step"][c])
        self._data["_has_step"][c] = False
        self._data["_episode"][c] = self._episodes - 1
        self._data["_time"][c] = self._written
        self._written += 1

    def _store(self, name: str, slot: int, value: np.ndarray) -> None:
        value = np.asarray(value)
        want = self.fields[name].shape
        if value.shape != want:
            raise ValueError(f"replay field {name!r}: got shape {value.shape}, expected {want}")
        self._data[name][slot] = value

    def add_first(self, obs: Mapping[str, np.ndarray]) -> None:
        """Start an episode with its first observation (ends the previous one, if any, as truncated)."""
        self._episodes += 1
        self._open = True
        self._write_obs(obs)

    def add(self, step: Mapping[str, np.ndarray], reward: float, discount: float, next_obs: Mapping[str, np.ndarray]) -> None:
        """Record a_t (step fields), r_t, d_t for the newest observation, then store o_{t+1}.

        `discount` is d_t: 0.0 when the episode terminated at this step (no bootstrap), 1.0
        otherwise (a time-limit truncation keeps 1.0; starting the next episode ends it).
        """
        if not self._open:
            raise RuntimeError("replay: add() before add_first() of an episode")
        missing = set(self.step_fields) - set(step)
        if missing:
            raise KeyError(f"step is missing replay fields {sorted(missing)}")
        c = self._cursor
        for name in self.step_fields:
            self._store(name, c, step[name])
        self._data["reward"][c] = reward
        self._data["discount"][c] = discount
        self._write_obs(next_obs)
        self._data["_has_step"][c] = True
        self._stored += 1
        self._steps += 1

    # -- sampling -------------------------------------------------------------------------------

    def sample_indices(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform over slots holding a step (rejection sampling; the final observations are rare)."""
        has_step = self._data["_has_step"]
        if not self._stored:
            raise ValueError("replay buffer holds no steps yet")
        filled = min(self._written, self.capacity)
        out = np.empty(0, np.int64)
        for _ in range(64):
            cand = rng.integers(0, filled, size=2 * batch_size)
            out = np.concatenate([out, cand[has_step[cand]]])
            if out.size >= batch_size:
                return out[:batch_size]
        valid = np.flatnonzero(has_step)
        return rng.choice(valid, size=batch_size)

    def _same_episode(self, index: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Slots index + offsets (B, K) and whether each lies in the same contiguous episode as index."""
        slots = (index[:, None] + offsets[None, :]) % self.capacity
        same = (self._data["_episode"][slots] == self._data["_episode"][index][:, None]) & (
            self._data["_time"][slots] == self._data["_time"][index][:, None] + offsets[None, :]
        )
        return slots, same

    def _gather_obs(self, index: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for name in self.obs_fields:
            k = self.fields[name].history
            if k == 1:
                out[name] = self._data[name][index]
                continue
            offsets = np.arange(-(k - 1), 1)
            slots, same = self._same_episode(index, offsets)
            # before the episode's first slot, repeat the first one: the earliest valid slot per row
            first_valid = np.argmax(same, axis=1)
            cols = np.maximum(np.arange(k)[None, :], first_valid[:, None])
            slots = np.take_along_axis(slots, cols, axis=1)
            out[name] = self._data[name][slots]
        return out

    def gather(self, index: np.ndarray, n_step: int, gamma: float) -> Sample:
        """The n-step transitions starting at slots `index` (which must hold steps)."""
        index = np.asarray(index, np.int64)
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not self._data["_has_step"][index].all():
            raise ValueError("replay: gather() at a slot without a step")
        offsets = np.arange(n_step)
        slots, same = self._same_episode(index, offsets)
        alive = np.cumprod(same & self._data["_has_step"][slots], axis=1).astype(bool)  # (B, n)
        steps = alive.sum(axis=1)
        factor = np.where(alive, gamma * self._data["discount"][slots].astype(np.float64), 1.0)
        prefix = np.concatenate([np.ones((len(index), 1)), np.cumprod(factor, axis=1)], axis=1)  # (B, n+1)
        reward = (alive * prefix[:, :-1] * self._data["reward"][slots]).sum(axis=1)
        discount = prefix[:, -1]  # factor is 1 past m, so this is prefix[m]
        next_index = (index + steps) % self.capacity
        return Sample(
            obs=self._gather_obs(index),
            step={name: self._data[name][index] for name in self.step_fields},
            reward=reward.astype(np.float32),
            discount=discount.astype(np.float32),
            next_obs=self._gather_obs(next_index),
            steps=steps.astype(np.int64),
            index=index,
        )

    def sample(self, batch_size: int, n_step: int, gamma: float, rng: np.random.Generator) -> Sample:
        """A uniform batch of n-step transitions."""
        return self.gather(self.sample_indices(batch_size, rng), n_step, gamma)

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume, as numpy arrays (save with `np.savez`); only filled slots are saved."""
        filled = min(self._written, self.capacity)
        state = {f"data/{k}": v[:filled] for k, v in self._data.items()}
        state["counters"] = np.array(
            [self.capacity, self._cursor, self._written, self._episodes, self._steps, int(self._open)], np.int64
        )
        state["layout"] = np.array(self._layout())
        return state

    def _layout(self) -> str:
        return repr(sorted((n, s.shape, s.dtype, s.kind, s.history) for n, s in self.fields.items()))

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict()`; the capacity and fields must match."""
        theirs = str(np.asarray(state["layout"]))
        if self._layout() != theirs:
            raise ValueError(f"replay checkpoint fields differ: checkpoint {theirs}, buffer {self._layout()}")
        capacity, cursor, written, episodes, steps, is_open = (int(x) for x in state["counters"])
        if capacity != self.capacity:
            raise ValueError(f"replay checkpoint has capacity {capacity}, buffer {self.capacity}")
        filled = min(written, capacity)
        for key, array in self._data.items():
            array[:filled] = np.asarray(state[f"data/{key}"])
        self._cursor, self._written, self._episodes, self._steps, self._open = cursor, written, episodes, steps, bool(is_open)
        self._stored = int(self._data["_has_step"].sum())


def state_counters(state: Mapping[str, np.ndarray]) -> dict[str, int]:
    """The counters of a `ReplayBuffer.state_dict()` (capacity, slots written, episodes, steps added),
    read without building a buffer: what a checkpoint checks against the learner's frame count."""
    capacity, _, written, episodes, steps, _ = (int(x) for x in np.asarray(state["counters"]))
    return {"capacity": capacity, "written": written, "episodes": episodes, "steps": steps}
