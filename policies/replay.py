"""A recorded demonstration as a base controller: `replay:BAG_DIR` replays a bag's actions open loop.

A demonstration bag (`rrl record`, training.demos.bag) holds, per episode, the seed it was reset
with (the `/demo/episode` start event) and the action executed at each step (`/demo/action`,
std_msgs/Float32MultiArray, already clipped to the task limits). `ReplayBase` turns that into a base
of the one policy path (policies.runtime), so a recorded demo runs wherever a policy runs: `rrl eval
--base replay:DIR`, the ROS control node (`base_controller: replay:DIR`, `rrl switch --base
replay:DIR`) in every loop, through the residual composition and the safety layer, and out on the
node's command interface (`/command` Float64MultiArray in our stacks). This is how a recorded bag is
replayed into the stack: the bag is not played onto `/command` (`/demo/action` has another type and
the sim steps on commands that answer its ticks), the control node replays it as its base.

- `reset(seed)` selects the recorded episode with that seed (the first one, should two share it);
  `step(obs)` returns its action for the current step and advances; the observation is not read
  (open loop). Past the recorded end it holds: zero on every continuous field, binary fields (the
  gripper) kept from the last recorded action (controllers.safety.hold_action), counted in
  `held_steps`. A swap to a replay base mid-episode starts the episode's recording from its first step.
- A seed the bag did not record: `reset` does not raise (the control node resets at each episode
  start, outside any guard); `step` raises `ReplayError` naming the seed and the bag's seeds, which
  the composed policy turns into a hold of the robot, counted as a base error. `rrl eval` checks
  every seed first (`require_seeds`) and refuses with exit 2.
- Loading reads every episode with the bag's own reader, so a damaged or truncated episode file
  refuses the whole bag up front with the reader's `BagError` (naming the file and the episode), as
  `ReplayBagError`, which is also a `BaseSpecError` so every loader's LOAD_ERRORS catch it.

In our simulations (deterministic for a seed: `rrl eval`, the lockstep stack) replaying an episode
from its seed reproduces it: the same actions, states and outcome. On a robot (or the realtime and
driver loops) it is a replay of the demo's commands through the node's safety layer, not of its
trajectory: nothing corrects a drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from controllers.safety import hold_action
from policies.base_spec import BaseSpec, BaseSpecError, parse_replay
from policies.runtime import BaseOutput
from sim_bridge.spec import TaskSpec
from training.demos import schema
from training.demos.bag import BagError, iter_messages, read_info


class ReplayError(BaseSpecError):
    """A bag that cannot be replayed here: recorded on another task, or without an episode of the requested seed."""


class ReplayBagError(BagError, BaseSpecError):
    """The bag reader's BagError (the message names the file and the episode), catchable as a BaseSpecError."""


@dataclass(frozen=True)
class RecordedEpisode:
    """One episode of a demonstration bag, as much of it as a replay needs."""

    index: int
    """Episode number in the bag (0, 1, ...)."""
    file: str
    """Its MCAP file in the bag directory."""
    seed: int
    """The seed of its `/demo/episode` start event (the task's reset seed)."""
    success: bool
    """The outcome recorded with it."""
    actions: np.ndarray
    """float32 (T, A): the action executed at each step, in the task's action units."""

    @property
    def steps(self) -> int:
        return int(self.actions.shape[0])


def read_episodes(bag: str | Path, task_spec: TaskSpec) -> list[RecordedEpisode]:
    """Every episode of a demonstration bag recorded on `task_spec`'s task: its seed and its actions (T, A).

    Raises `ReplayBagError` for a bag the reader refuses (not an rrl bag, a missing, truncated or corrupt
    episode file, a start event that contradicts metadata.yaml) and `ReplayError` for a bag of another task or
    action layout."""
    try:
        info = read_info(bag)
    except BagError as e:
        raise ReplayBagError(str(e)) from None
    labels = tuple(task_spec.action.labels())
    if info.spec.task != task_spec.name:
        raise ReplayError(f"bag {info.path} was recorded on task {info.spec.task}, not {task_spec.name}")
    if tuple(info.spec.action_labels) != labels:
        raise ReplayError(f"bag {info.path}: actions {list(info.spec.action_labels)} differ from the task's "
                          f"{list(labels)}")
    if not info.episodes:
        raise ReplayError(f"bag {info.path} lists no episode (metadata.yaml has an empty episode table)")
    episodes = []
    for record in info.episodes:
        where = f"{info.path / record.file} (episode {record.index} of the bag)"
        start_seed, actions = None, []
        try:
            for topic, _, msg in iter_messages(info.path, record):
                if topic == schema.ACTION_TOPIC:
                    actions.append(np.asarray(msg.data, np.float32))
                elif topic == schema.EPISODE_TOPIC and start_seed is None:
                    event = json.loads(msg.data)
                    if event.get("event") == "start":
                        start_seed = int(event["seed"])
        except BagError as e:
            raise ReplayBagError(str(e)) from None
        except (ValueError, KeyError, TypeError) as e:  # an unreadable start event
            raise ReplayBagError(f"{where}: unreadable /demo/episode event ({e})") from None
        if start_seed is None:
            raise ReplayBagError(f"{where}: no /demo/episode start event, so no seed to replay it from")
        if start_seed != record.seed:
            raise ReplayBagError(f"{where}: start event seed {start_seed}, metadata.yaml says {record.seed}")
        if len(actions) != record.steps or any(a.shape != (len(labels),) for a in actions):
            raise ReplayBagError(f"{where}: {len(actions)} actions on {schema.ACTION_TOPIC} for {record.steps} steps "
                                 f"of {len(labels)} values")
        stacked = np.stack(actions) if actions else np.zeros((0, len(labels)), np.float32)
        episodes.append(RecordedEpisode(index=record.index, file=record.file, seed=start_seed,
                                        success=bool(record.success), actions=stacked))
    return episodes


class ReplayBase:
    """A demonstration bag as an open-loop base controller: the recorded episode of the reset seed, step by step."""

    needs_images = False
    artifact = None

    def __init__(self, bag: str | Path | BaseSpec, task_spec: TaskSpec):
        spec = bag if isinstance(bag, BaseSpec) else parse_replay(bag)
        self.spec = task_spec
        self.path = spec.path
        self.name = spec.name
        self.episodes = read_episodes(spec.path, task_spec)
        self.by_seed: dict[int, RecordedEpisode] = {}
        for episode in self.episodes:
            self.by_seed.setdefault(episode.seed, episode)
        self.limits = task_spec.action_limits
        self.episode: RecordedEpisode | None = None
        self.missing_seed: int | None = None
        self.t = 0
        """Steps taken in the current episode."""
        self.held_steps = 0
        """Steps past the recorded end in the current episode (the base held the robot)."""
        self.last_action: np.ndarray | None = None

    @property
    def seeds(self) -> list[int]:
        """The seeds the bag recorded, in episode order."""
        return list(self.by_seed)

    def missing(self, seed: int) -> ReplayError:
        return ReplayError(f"base {self.name}: no recorded episode with seed {seed}; the bag's seeds are "
                           f"{_seed_list(self.seeds)}")

    def require_seeds(self, seeds: Iterable[int]) -> None:
        """Refuse (ReplayError) if any of `seeds` has no recorded episode: what `rrl eval` checks before it runs."""
        absent = [int(s) for s in seeds if int(s) not in self.by_seed]
        if absent:
            raise ReplayError(f"base {self.name}: no recorded episode with seed{'s' if len(absent) > 1 else ''} "
                              f"{_seed_list(absent)}; the bag's seeds are {_seed_list(self.seeds)}")

    def reset(self, seed: int) -> None:
        self.episode = self.by_seed.get(int(seed))
        self.missing_seed = None if self.episode is not None else int(seed)
        self.t = self.held_steps = 0
        self.last_action = None

    def step(self, obs) -> BaseOutput:
        if self.episode is None:
            raise self.missing(self.missing_seed) if self.missing_seed is not None else \
                ReplayError(f"base {self.name}: step before reset(seed) selected an episode")
        if self.t < self.episode.steps:
            action = self.episode.actions[self.t].copy()
            self.last_action = action
        else:  # past the recorded end: zero velocity, binary fields (gripper) kept
            action = hold_action(self.limits, self.last_action).astype(np.float32)
            self.held_steps += 1
        self.t += 1
        return BaseOutput(action=action, features=None)

    def act(self, obs) -> np.ndarray:
        return self.step(obs).action


def _seed_list(seeds: list[int], shown: int = 20) -> str:
    head = ", ".join(map(str, seeds[:shown]))
    return head + (f", ... ({len(seeds)} in all)" if len(seeds) > shown else "")
