"""Assembling a running stack's topics into demonstration episodes (the pure core of `rrl record --source ros`).

The sim_bridge node (ros_ws/src/rrl_ros/rrl_ros/sim_bridge_node.py) publishes per
tick, in this order, `/joint_states`, `/robot/proprio`, `/task/state`, the newest
camera frame, then `/task/status` {"event": "tick", "tick", "episode", "step",
"seed", "sim_time_ns", "stamp_ns", ...}; the control node answers with one
`/command`; at the end of an episode the sim publishes
{"event": "episode_end", "episode", "seed", "success", "steps"} and resets at once,
so an episode recorded from the stack has no terminal observation.

A subscriber sees each topic in order, but not the order *between* topics. So:

- observation parts queue per topic and a tick is assembled when its status and
  one part of each topic are there (the k-th message of every topic belongs to
  the k-th tick); the joint-state stamp must equal the tick's stamp, otherwise
  the streams are out of step (the recorder joined mid-tick) and everything
  pending is dropped until the next episode start;
- lockstep (the tick stamp is the sim time): the sim waits for every command,
  so commands answer the unanswered observations in order, exactly, whatever
  the delivery order between topics;
- realtime (wall-clock stamps): a command answers the newest observation
  published before the command was received (`received_ns`, same machine
  clock), also when that observation is still being assembled. The sim steps at its next tick with the last command
  when none came in time; the recorder does the same: an observation still
  unanswered when the next one is assembled gets the last command (counted in
  `filled_actions`). A command later than a whole period is thus attributed to
  the following step, as the sim applies it. A command later than a whole period is then attributed to
  the following step, as the sim applies it;
- steps are written to the bag in order once their action is known; an episode
  starts at a tick with step 0 (a recorder that joins mid-episode skips to the
  next one) and is kept per the same rules as expert recording.

Pure: callers convert ROS messages to numpy first (`rrl_ros.conversions`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim_bridge.spec import TaskSpec
from training.demos.bag import DemoBagWriter
from training.demos.recording import RecordSummary


class StreamError(ValueError):
    """The stack's messages do not fit the recording (camera size or presence); the message says how."""


@dataclass
class _Tick:
    episode: int
    step: int
    seed: int
    tick: int
    stamp_ns: int
    obs: dict[str, np.ndarray]
    lockstep: bool
    action: np.ndarray | None = None
    filled: bool = False


class StreamRecorder:
    """Feeds a `DemoBagWriter` from the messages of a running stack; see the module docstring."""

    def __init__(self, writer: DemoBagWriter, spec: TaskSpec, camera: bool, episodes: int,
                 keep_failures: bool = False, image_hw: tuple[int, int] | None = None):
        self.writer = writer
        self.spec = spec
        self.camera = camera
        self.episodes = episodes
        self.keep_failures = keep_failures
        self.image_hw = image_hw
        """Expected camera frame size (height, width); frames of another size are refused."""
        self.parts: dict[str, deque] = {k: deque() for k in ("joints", "proprio", "state")}
        if camera:
            self.parts["frame"] = deque()
        self.ticks: deque[dict[str, Any]] = deque()
        self.commands: deque[np.ndarray] = deque()
        self.pending: list[_Tick] = []
        self.ends: dict[int, dict[str, Any]] = {}
        self.current: int | None = None
        """Episode number (the stack's) being written, None between episodes."""
        self.current_seed = 0
        self.written_steps = 0
        self.current_filled = 0
        self.timed_commands: deque[tuple[int, np.ndarray]] = deque()
        """Realtime: (received_ns, action) of the commands not yet behind every answered observation."""
        self.last_command = np.zeros(spec.action.size)
        """Realtime: what the sim applies when no command came at all (the hold action before any command)."""
        self._last_stamp = 0
        self.lockstep: bool | None = None
        """Clock of the newest tick: lockstep (stamp = sim time) or realtime; None before the first tick."""
        self.summary = RecordSummary()
        self.filled_actions = 0
        self.skipped_ticks = 0
        self.resyncs = 0
        self.finished = False
        """The stack said it is finished, or enough episodes were kept."""

    # --- inputs ------------------------------------------------------------------------------------

    def on_joints(self, position_rad: np.ndarray, stamp_ns: int) -> None:
        self.parts["joints"].append((np.asarray(position_rad, np.float64), int(stamp_ns)))
        self._drain()

    def on_proprio(self, proprio: np.ndarray) -> None:
        self.parts["proprio"].append(np.asarray(proprio, np.float32))
        self._drain()

    def on_state(self, state: np.ndarray) -> None:
        self.parts["state"].append(np.asarray(state, np.float32))
        self._drain()

    def on_frame(self, frame: np.ndarray, stamp_ns: int) -> None:
        if not self.camera:
            return
        frame = np.asarray(frame)
        if self.image_hw is not None and tuple(frame.shape[:2]) != tuple(self.image_hw):
            raise StreamError(f"camera frames are {frame.shape[1]}x{frame.shape[0]} px, the recording expects "
                              f"{self.image_hw[1]}x{self.image_hw[0]} (--camera-px must match the stack's camera_px)")
        self.parts["frame"].append((frame, int(stamp_ns)))
        self._drain()

    def on_command(self, action: np.ndarray, received_ns: int | None = None) -> None:
        """A `/command`; `received_ns` (wall clock at receipt) places it in time against realtime stamps."""
        action = self.spec.clip_action(action)
        if self.lockstep is True or received_ns is None:
            self.commands.append(action)
        else:
            self.timed_commands.append((int(received_ns), action))
        self._assign()
        self._flush()

    def on_status(self, payload: dict[str, Any]) -> None:
        event = payload.get("event")
        if event == "tick":
            self.ticks.append(payload)
            if self.camera and len(self.ticks) > 20 and not self.parts["frame"]:
                raise StreamError("the stack publishes no camera frames (20 ticks without one); record with "
                                  "--camera-px 0 or launch the stack with a camera (camera_px:=N)")
            self._drain()
        elif event == "episode_end":
            self.ends[int(payload["episode"])] = payload
            self._flush()
        elif event == "finished":
            self.finished = True

    def close(self) -> None:
        """At the end of the stream: finish what can be finished, discard an episode without its end."""
        for t in self.pending:
            if t.action is None and not t.lockstep:
                self._answer_realtime(t, t.stamp_ns + int(round(self.spec.control_dt_s * 1e9)))
        self._flush()
        if self.writer.recording:
            self.writer.discard_episode()
        self.current = None

    # --- assembly ----------------------------------------------------------------------------------

    def _drain(self) -> None:
        while self.ticks and all(self.parts[k] for k in self.parts):
            status = self.ticks.popleft()
            joints, joints_stamp = self.parts["joints"].popleft()
            proprio = self.parts["proprio"].popleft()
            state = self.parts["state"].popleft()
            obs = {"joint_pos_rad": joints, "proprio": proprio, "state": state}
            stamps = {int(status.get("sim_time_ns", -1)), int(status.get("stamp_ns", -1))}
            aligned = joints_stamp in stamps
            if self.camera:
                frame, frame_stamp = self.parts["frame"].popleft()
                obs[self.spec.camera] = frame[None]
                aligned = aligned and frame_stamp == joints_stamp
            if not aligned:
                self._resync()
                continue
            lockstep = joints_stamp == int(status.get("sim_time_ns", -1)) != int(status.get("stamp_ns", -1))
            tick = _Tick(episode=int(status["episode"]), step=int(status["step"]), seed=int(status["seed"]),
                         tick=int(status["tick"]), stamp_ns=joints_stamp, obs=obs, lockstep=lockstep)
            if lockstep and self.timed_commands:  # commands that came before the first tick was assembled
                self.commands.extend(a for _, a in self.timed_commands)
                self.timed_commands.clear()
            self.lockstep = lockstep
            if self.pending and self.pending[-1].tick == tick.tick and self.pending[-1].action is None:
                self.pending[-1] = tick  # the sim re-sent an unanswered observation
            else:
                self.pending.append(tick)
        self._assign()
        self._flush()

    def _assign(self) -> None:
        """Give the unanswered observations their commands (see the module docstring)."""
        waiting = [t for t in self.pending if t.action is None and t.lockstep]
        while self.commands and waiting:
            waiting.pop(0).action = self.commands.popleft()
        queued = [stamp for _, stamp in self.parts["joints"]]
        for i, t in enumerate(self.pending):
            if t.action is not None or t.lockstep:
                continue
            later = [p.stamp_ns for p in self.pending[i + 1:]] + queued
            self._answer_realtime(t, later[0] if later else None)
            if t.action is None:
                break

    def _answer_realtime(self, t: _Tick, next_stamp_ns: int | None) -> None:
        """The sim applies the first command received while the observation awaits an answer, from its
        publication to the next tick; without one, the newest command received before (the "last command")."""
        if next_stamp_ns is None:  # not seen yet: a command from half a period on may answer the next one
            next_stamp_ns, known = t.stamp_ns + int(round(self.spec.control_dt_s * 0.5e9)), False
        else:
            known = True
        in_window = [a for r, a in self.timed_commands if t.stamp_ns <= r < next_stamp_ns]
        if in_window:
            t.action = in_window[0]
        elif known:
            before = [a for r, a in self.timed_commands if r < t.stamp_ns]
            t.action, t.filled = (before[-1] if before else self.last_command).copy(), True
        if t.action is not None:
            # commands before this observation are no longer needed, except the newest one (the "last command")
            older = [c for c in self.timed_commands if c[0] < t.stamp_ns]
            if older:
                self.last_command = older[-1][1]
            self.timed_commands = deque(c for c in self.timed_commands if c[0] >= t.stamp_ns)
            self.timed_commands.extendleft([older[-1]] if older else [])

    def _resync(self) -> None:
        """Streams out of step: drop everything queued and the episode being written."""
        self.resyncs += 1
        for q in self.parts.values():
            q.clear()
        self.ticks.clear()
        self.commands.clear()
        self.timed_commands.clear()
        self.pending.clear()
        if self.writer.recording:
            self.writer.discard_episode()
        self.current = None

    def _flush(self) -> None:
        while True:
            if self.current is not None and self._episode_complete():
                self._end_episode()
                continue
            if not self.pending:
                return
            t = self.pending[0]
            if self.current is not None and t.episode != self.current:
                # a new episode began before the end of ours was seen: ours is incomplete
                self.writer.discard_episode()
                self.current = None
            if self.current is None:
                if t.step != 0 or self.finished:
                    self.pending.pop(0)
                    self.skipped_ticks += 1
                    continue
                self.writer.begin_episode(t.seed, t.stamp_ns)
                self.current, self.current_seed, self.written_steps, self.current_filled = t.episode, t.seed, 0, 0
            if t.action is None:
                return
            action = t.action
            self.filled_actions += int(t.filled)
            self.current_filled += int(t.filled)
            self.writer.write_observation(t.stamp_ns, t.obs)
            self.writer.write_action(t.stamp_ns, action)
            self.written_steps += 1
            self._last_stamp = t.stamp_ns
            self.pending.pop(0)

    def _episode_complete(self) -> bool:
        end = self.ends.get(self.current)
        return end is not None and self.written_steps >= int(end["steps"])

    def _end_episode(self) -> None:
        end = self.ends.pop(self.current)
        success = bool(end["success"])
        self.summary.attempts += 1
        self.summary.successes += int(success)
        self.summary.steps += self.written_steps
        dt_ns = int(round(self.spec.control_dt_s * 1e9))
        if self.written_steps != int(end["steps"]):
            self.writer.discard_episode()
            record = None
        else:
            record = self.writer.end_episode(self._last_stamp + dt_ns, success=success,
                                             keep=success or self.keep_failures, terminal_observation=False,
                                             task_success=success, filled_actions=self.current_filled,
                                             stack_episode=self.current)
        if record is not None:
            self.summary.kept.append(record)
            if len(self.summary.kept) >= self.episodes:
                self.finished = True
        self.current = None
