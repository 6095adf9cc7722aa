"""Assembling a running stack's topics into demonstration episodes (the pure core of `rrl record --source ros`).

The sim_bridge node (ros_ws/src/rrl_ros/rrl_ros/sim_bridge_node.py) publishes per
tick, from one thread, `/joint_states`, `/robot/proprio`, `/task/state`, the
newest camera frame, then `/task/status` {"event": "tick", "tick", "episode",
"step", "seed", "sim_time_ns", "stamp_ns", ...}; the control node answers with
one `/command`; at the end of an episode the sim publishes {"event":
"episode_end", "episode", "seed", "success", "steps"} and resets at once, so an
episode recorded from the stack has no terminal observation.

A subscriber sees each topic in order, but neither the order between topics nor
(right after discovery) the same first tick on every topic, and `proprio`/`state`
carry no header. Every message is therefore placed by its DDS source timestamp
(`MessageInfo.source_timestamp`, the publisher's clock; the nodes share one
machine clock):

- the parts of tick k are the messages published after the status of tick k - 1
  and not after the status of tick k; a tick with a part missing (that topic's
  subscription was not live yet) is dropped, and so is its episode;
- the command of tick k is the first one published after the status of tick k
  and before the first part of tick k + 1. In lockstep (tick stamps are sim
  time) the sim waits for it, so this is exact; a tick without one means the
  recorder missed it and the episode is dropped. In realtime the sim steps at its
  next tick with the previous command when none came; the recorder does the
  same (counted in `filled_actions`);
- steps are written in order once their action is known; an episode starts at a
  tick with step 0 (a recorder that joins mid-episode skips to the next one) and
  is kept per the rules of expert recording.

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
    """Tick stamps are sim time: the sim waited for this tick's command."""
    status_src_ns: int
    """Source timestamp of the tick's status (the last message the sim published for it)."""
    action: np.ndarray | None = None
    filled: bool = False
    """Realtime: no command came in time; the action is the previous command, as the sim applied it."""
    broken: bool = False
    """Its command was missed: the episode cannot be recorded."""


class StreamRecorder:
    """Feeds a `DemoBagWriter` from the messages of a running stack; see the module docstring.

    Every `on_*` input takes `source_ns`, the message's DDS source timestamp.
    """

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
        self.ticks: deque[tuple[int, dict[str, Any]]] = deque()
        self.commands: deque[tuple[int, np.ndarray]] = deque()
        """(source_ns, action) of commands not yet behind every answered observation."""
        self.first_command_src: int | None = None
        self.last_command = np.zeros(spec.action.size)
        self.prev_status_src: int | None = None
        self.pending: list[_Tick] = []
        self.ends: dict[int, dict[str, Any]] = {}
        self.current: int | None = None
        """Episode number (the stack's) being written, None between episodes."""
        self.written_steps = 0
        self.current_filled = 0
        self._last_stamp = 0
        self.summary = RecordSummary()
        self.filled_actions = 0
        self.skipped_ticks = 0
        """Ticks not recorded: before the first episode start seen, or in an episode that could not be completed."""
        self.dropped_ticks = 0
        """Ticks with a part or a command the recorder did not receive."""
        self.finished = False
        """The stack said it is finished, or enough episodes were kept."""

    # --- inputs ------------------------------------------------------------------------------------

    def on_joints(self, position_rad: np.ndarray, stamp_ns: int, source_ns: int) -> None:
        self.parts["joints"].append((int(source_ns), np.asarray(position_rad, np.float64), int(stamp_ns)))
        self._update()

    def on_proprio(self, proprio: np.ndarray, source_ns: int) -> None:
        self.parts["proprio"].append((int(source_ns), np.asarray(proprio, np.float32), None))
        self._update()

    def on_state(self, state: np.ndarray, source_ns: int) -> None:
        self.parts["state"].append((int(source_ns), np.asarray(state, np.float32), None))
        self._update()

    def on_frame(self, frame: np.ndarray, stamp_ns: int, source_ns: int) -> None:
        if not self.camera:
            return
        frame = np.asarray(frame)
        if self.image_hw is not None and tuple(frame.shape[:2]) != tuple(self.image_hw):
            raise StreamError(f"camera frames are {frame.shape[1]}x{frame.shape[0]} px, the recording expects "
                              f"{self.image_hw[1]}x{self.image_hw[0]} (--camera-px must match the stack's camera_px)")
        self.parts["frame"].append((int(source_ns), frame, int(stamp_ns)))
        self._update()

    def on_command(self, action: np.ndarray, source_ns: int) -> None:
        if self.first_command_src is None:
            self.first_command_src = int(source_ns)
        self.commands.append((int(source_ns), self.spec.clip_action(action)))
        self._update()

    def on_status(self, payload: dict[str, Any], source_ns: int) -> None:
        event = payload.get("event")
        if event == "tick":
            self.ticks.append((int(source_ns), payload))
            if self.camera and len(self.ticks) > 20 and not self.parts["frame"]:
                raise StreamError("the stack publishes no camera frames (20 ticks without one); record with "
                                  "--camera-px 0 or launch the stack with a camera (camera_px:=N)")
        elif event == "episode_end":
            self.ends[int(payload["episode"])] = payload
        elif event == "finished":
            self.finished = True
        self._update()

    def close(self) -> None:
        """At the end of the stream: answer what can be answered, finish what can be finished, discard the rest."""
        self._assign(final=True)
        self._flush()
        if self.writer.recording:
            self.writer.discard_episode()
        self.current = None

    # --- assembly ----------------------------------------------------------------------------------

    def _update(self) -> None:
        self._assemble()
        self._assign()
        self._flush()

    def _assemble(self) -> None:
        """Turn statuses into ticks once each topic's part published before the status is there."""
        while self.ticks:
            src, status = self.ticks[0]
            picked = {}
            for name, queue in self.parts.items():
                while queue and self.prev_status_src is not None and queue[0][0] <= self.prev_status_src:
                    queue.popleft()  # belongs to an earlier, dropped tick
                if not queue:
                    return  # not arrived yet
                picked[name] = queue[0] if queue[0][0] <= src else None
            self.ticks.popleft()
            self.prev_status_src = src
            if any(part is None for part in picked.values()):
                self.dropped_ticks += 1  # a topic's part of this tick never came (subscription not live yet)
                self._mark_gap(int(status["episode"]))
                continue
            for name in picked:
                self.parts[name].popleft()
            _, joints, stamp = picked["joints"]
            obs = {"joint_pos_rad": joints, "proprio": picked["proprio"][1], "state": picked["state"][1]}
            if self.camera:
                obs[self.spec.camera] = picked["frame"][1][None]
            sim_time = int(status.get("sim_time_ns", -1))
            self.pending.append(_Tick(
                episode=int(status["episode"]), step=int(status["step"]), seed=int(status["seed"]),
                tick=int(status["tick"]), stamp_ns=stamp, obs=obs,
                lockstep=stamp == sim_time != int(status.get("stamp_ns", -1)), status_src_ns=src))

    def _mark_gap(self, episode: int) -> None:
        """A tick of `episode` is lost: the episode cannot be recorded whole."""
        self.pending.append(_Tick(episode=episode, step=-1, seed=-1, tick=-1, stamp_ns=0, obs={}, lockstep=True,
                                  status_src_ns=self.prev_status_src or 0, action=np.zeros(0), broken=True))

    def _next_start(self, i: int) -> int | None:
        """Source time of the first message of the tick after pending[i], if any arrived."""
        later = [t.status_src_ns for t in self.pending[i + 1:] if not t.broken]
        later += [q[0][0] for q in self.parts.values() if q] + [src for src, _ in self.ticks]
        after = [x for x in later if x > self.pending[i].status_src_ns]
        # the next tick's parts precede its status; the earliest later message bounds the window
        return min(after) if after else None

    def _assign(self, final: bool = False) -> None:
        for i, t in enumerate(self.pending):
            if t.action is not None:
                continue
            end = self._next_start(i)
            if end is None and not final:
                return  # the window of this tick is still open
            window = [a for src, a in self.commands if t.status_src_ns < src and (end is None or src < end)]
            if not window and not final and not any(src >= end for src, _ in self.commands):
                return  # commands arrive in order: one published after the window proves it had none; wait
            if window:
                t.action = window[0]
            elif t.lockstep or self.first_command_src is None or self.first_command_src > t.status_src_ns:
                t.broken, t.action = True, np.zeros(0)  # the recorder missed this tick's command
                self.dropped_ticks += 1
            else:
                before = [a for src, a in self.commands if src <= t.status_src_ns]
                t.action, t.filled = (before[-1] if before else self.last_command).copy(), True
            # older commands are no longer needed, except the newest one (a realtime sim's "last command")
            older = [c for c in self.commands if c[0] <= t.status_src_ns]
            if older:
                self.last_command = older[-1][1]
            self.commands = deque(older[-1:] + [c for c in self.commands if c[0] > t.status_src_ns])

    def _flush(self) -> None:
        while True:
            if self.current is not None and self._episode_complete():
                self._end_episode()
                continue
            if not self.pending:
                return
            t = self.pending[0]
            if t.broken:
                if self.current is not None and t.episode == self.current:
                    self.writer.discard_episode()
                    self.skipped_ticks += self.written_steps
                    self.current = None
                self.pending.pop(0)
                continue
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
                self.current, self.written_steps, self.current_filled = t.episode, 0, 0
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
