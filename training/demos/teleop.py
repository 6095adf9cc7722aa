"""Keyboard teleoperation at a plain terminal (no display needed): a pure key -> action core and a tty shell.

Keys (single key presses; no Enter needed):

| key        | effect                                                  |
|------------|---------------------------------------------------------|
| w / s      | tool velocity +x / -x (away from / towards the base)    |
| a / d      | tool velocity +y / -y                                   |
| r / f      | tool velocity +z / -z (up / down)                       |
| space      | stop all motion                                         |
| c / o      | close / open the gripper                                |
| + (=) / -  | faster / slower (x1.5 per press, capped at the task limit) |
| n or Enter | start an episode (resets the task with the next seed)   |
| k          | mark / unmark the episode as a success                  |
| x          | stop the episode and save it                            |
| u          | discard the episode                                     |
| q          | quit (an unfinished episode is discarded)               |

A terminal sends no key-release events, only repeated presses while a key is
held (after the auto-repeat delay). So a direction key commands its velocity on
its axis for `hold_s` seconds after the last press: tapping moves the tool a
little, holding moves it continuously, releasing stops it within `hold_s`.

`KeyboardTeleop` (the core) is time-driven through explicit `now_s` arguments,
with no I/O, and is unit-tested; `run_terminal_teleop` (the shell) puts the
terminal in cbreak mode, runs the task in real time at its control rate, reads
keys with `select`, records into a `DemoBagWriter` and draws a status line.

An episode ends when the task succeeds (saved), when the operator presses `x`
(saved if the task succeeded or it was marked a success, or with
`keep_failures`), at the horizon (saved only if marked or with
`keep_failures`), or with `u` (discarded).
"""

from __future__ import annotations

import enum
import os
import select
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from sim_bridge.spec import TaskSpec
from sim_bridge.task import Task
from training.demos.bag import DemoBagWriter
from training.demos.recording import RecordSummary

AXIS_KEYS: dict[str, tuple[int, float]] = {
    "w": (0, +1.0), "s": (0, -1.0),
    "a": (1, +1.0), "d": (1, -1.0),
    "r": (2, +1.0), "f": (2, -1.0),
}
"""Direction keys -> (axis, sign)."""


class Event(enum.Enum):
    """Episode-level commands a key can produce."""

    START = "start"
    STOP = "stop"
    DISCARD = "discard"
    MARK = "mark"
    QUIT = "quit"


EVENT_KEYS: dict[str, Event] = {"n": Event.START, "\n": Event.START, "\r": Event.START, "x": Event.STOP,
                                "u": Event.DISCARD, "k": Event.MARK, "q": Event.QUIT}


@dataclass(frozen=True)
class TeleopConfig:
    """Keyboard teleoperation settings."""

    speed_m_s: float = 0.05
    """Initial tool speed along a commanded axis."""
    speed_factor: float = 1.5
    """Speed multiplier of one `+` press (one `-` press divides by it)."""
    min_speed_m_s: float = 0.005
    """Lowest speed `-` goes down to."""
    hold_s: float = 0.35
    """How long a direction key press keeps commanding its axis; terminal auto-repeat keeps a held key alive."""

    def __post_init__(self) -> None:
        if self.speed_m_s <= 0 or self.min_speed_m_s <= 0:
            raise ValueError(f"speeds must be positive, got {self.speed_m_s} and {self.min_speed_m_s}")
        if self.speed_factor <= 1.0:
            raise ValueError(f"speed_factor must be > 1, got {self.speed_factor}")
        if self.hold_s <= 0:
            raise ValueError(f"hold_s must be positive, got {self.hold_s}")


class KeyboardTeleop:
    """Key presses -> tool velocity + gripper action in a task's action layout (pure, no I/O)."""

    def __init__(self, spec: TaskSpec, config: TeleopConfig = TeleopConfig()):
        slices = spec.action.slices()
        fields = dict(spec.action.fields)
        if fields.get("tool_vel") != 3 or fields.get("gripper") != 1:
            raise ValueError(f"keyboard teleoperation needs action fields tool_vel (3) and gripper (1); "
                             f"task {spec.name} has {spec.action.fields}")
        self.spec = spec
        self.config = config
        self._vel = slices["tool_vel"]
        self._grip = slices["gripper"]
        high = np.asarray(spec.action_high, dtype=np.float64)[self._vel]
        self.max_speed_m_s = float(np.min(np.abs(high)))
        self.speed_m_s = min(config.speed_m_s, self.max_speed_m_s)
        self.reset()

    def reset(self) -> None:
        """Motion stopped, gripper open, no success mark (the start of an episode)."""
        self.direction = np.zeros(3)
        self.deadline_s = np.full(3, -np.inf)
        self.gripper = 0.0
        self.marked_success = False

    def press(self, key: str, now_s: float) -> Event | None:
        """Apply one key press at time `now_s`; returns an episode `Event` for episode keys, else None."""
        if key in AXIS_KEYS:
            axis, sign = AXIS_KEYS[key]
            self.direction[axis] = sign
            self.deadline_s[axis] = now_s + self.config.hold_s
        elif key == " ":
            self.direction[:] = 0.0
            self.deadline_s[:] = -np.inf
        elif key == "c":
            self.gripper = 1.0
        elif key == "o":
            self.gripper = 0.0
        elif key in ("+", "="):
            self.speed_m_s = min(self.speed_m_s * self.config.speed_factor, self.max_speed_m_s)
        elif key == "-":
            self.speed_m_s = max(self.speed_m_s / self.config.speed_factor, self.config.min_speed_m_s)
        elif key in EVENT_KEYS:
            event = EVENT_KEYS[key]
            if event is Event.MARK:
                self.marked_success = not self.marked_success
            return event
        return None

    def velocity(self, now_s: float) -> np.ndarray:
        """Commanded tool velocity (3,), m/s: the axes pressed within the last `hold_s`."""
        active = self.deadline_s > now_s
        return np.where(active, self.direction * self.speed_m_s, 0.0)

    def action(self, now_s: float) -> np.ndarray:
        """Full action vector (A,) in the task's layout; fields other than tool_vel/gripper are 0."""
        out = np.zeros(self.spec.action.size)
        out[self._vel] = self.velocity(now_s)
        out[self._grip] = self.gripper
        return out


def format_status(episode: int, episodes: int, step: int, speed_m_s: float, velocity: np.ndarray, gripper: float,
                  success: bool, marked: bool, recording: bool, width: int = 100) -> str:
    """One status line: episode, step, speed, commanded motion, gripper and success."""
    axes = "".join(f"{'+' if v > 0 else '-'}{'xyz'[i]}" for i, v in enumerate(velocity) if v != 0) or "stop"
    state = "REC" if recording else "idle (n: start, q: quit)"
    line = (f"ep {episode}/{episodes} | step {step:4d} | speed {speed_m_s:.3f} m/s | move {axes:8s} | "
            f"gripper {'closed' if gripper > 0.5 else 'open'} | success {'YES' if success else 'no'}"
            f"{' (marked)' if marked else ''} | {state}")
    return line[:width]


HELP = ("keys: w/s +-x  a/d +-y  r/f +-z  space stop  c/o close/open gripper  +/- speed  "
        "n start  k mark success  x stop+save  u discard  q quit")


def run_terminal_teleop(task: Task, writer: DemoBagWriter, episodes: int, seed: int,
                        config: TeleopConfig = TeleopConfig(), keep_failures: bool = False,
                        input_fd: int | None = None, output: TextIO | None = None) -> RecordSummary:
    """Drive `task` from the keyboard in real time and record kept episodes until `episodes` are saved or `q`."""
    fd = sys.stdin.fileno() if input_fd is None else input_fd
    out = sys.stderr if output is None else output
    core = KeyboardTeleop(task.spec, config)
    summary = RecordSummary()
    dt_s = task.spec.control_dt_s
    saved_attrs = None
    if os.isatty(fd):
        import termios
        import tty

        saved_attrs = termios.tcgetattr(fd)
        tty.setcbreak(fd)
    last_ns = 0

    def stamp() -> int:
        nonlocal last_ns
        last_ns = max(time.time_ns(), last_ns + 1)
        return last_ns

    def say(text: str) -> None:
        out.write("\r\x1b[K" + text + "\n")
        out.flush()

    def read_keys(timeout_s: float) -> list[str] | None:
        """Keys typed within `timeout_s`; None at end of input."""
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout_s))
        if not ready:
            return []
        data = os.read(fd, 1024)
        if not data:
            return None
        return list(data.decode(errors="ignore"))

    say(f"{task.spec.name}: keyboard teleoperation, {episodes} episode(s) to save into {writer.path}")
    say(HELP)
    recording, success, obs, step_k = False, False, None, 0
    quit_requested = False
    try:
        while len(summary.kept) < episodes and not quit_requested:
            if not recording:
                out.write("\r\x1b[K" + format_status(len(summary.kept) + 1, episodes, 0, core.speed_m_s, np.zeros(3),
                                                      core.gripper, False, False, False))
                out.flush()
                keys = read_keys(0.2)
                if keys is None:
                    break
                for key in keys:
                    event = core.press(key, time.monotonic())
                    if event is Event.QUIT:
                        quit_requested = True
                        break
                    if event is Event.START:
                        episode_seed = seed + summary.attempts
                        obs = task.reset(episode_seed)
                        core.reset()
                        writer.begin_episode(episode_seed, stamp())
                        recording, success, step_k = True, False, 0
                        say(f"episode started (seed {episode_seed})")
                        next_tick = time.monotonic()
                        break
                continue

            # one control tick: keys first, then act, record and step
            end_reason = None
            while True:
                keys = read_keys(next_tick - time.monotonic())
                if keys is None:
                    end_reason = Event.QUIT
                    break
                for key in keys:
                    event = core.press(key, time.monotonic())
                    if event in (Event.STOP, Event.DISCARD, Event.QUIT):
                        end_reason = event
                        break
                if end_reason is not None or time.monotonic() >= next_tick:
                    break
            if end_reason is None:
                now = stamp()
                action = task.spec.clip_action(core.action(time.monotonic()))
                writer.write_observation(now, obs)
                writer.write_action(now, action)
                result = task.step(action)
                obs, step_k = result.obs, step_k + 1
                success = success or result.success
                next_tick += dt_s
                out.write("\r\x1b[K" + format_status(len(summary.kept) + 1, episodes, step_k, core.speed_m_s,
                                                      core.velocity(time.monotonic()), core.gripper, success,
                                                      core.marked_success, True))
                out.flush()
                if result.terminated:
                    end_reason = Event.STOP
                elif result.truncated:
                    end_reason = "horizon"
                else:
                    continue
            # the episode ends here
            recording = False
            summary.attempts += 1
            summary.steps += step_k
            summary.successes += int(success)
            if end_reason in (Event.DISCARD, Event.QUIT):
                writer.discard_episode()
                say(f"episode discarded after {step_k} steps")
                quit_requested = end_reason is Event.QUIT
                continue
            writer.write_observation(stamp(), obs)
            ok = success or core.marked_success
            record = writer.end_episode(stamp(), success=ok, keep=ok or keep_failures, task_success=success,
                                        marked_success=core.marked_success,
                                        ended_by="horizon" if end_reason == "horizon" else "operator")
            if record is None:
                say(f"episode not successful after {step_k} steps: discarded (k marks a success; "
                    "--keep failures keeps failures)")
            else:
                summary.kept.append(record)
                say(f"episode saved: {record.file}, {record.steps} steps, success {record.success} "
                    f"({len(summary.kept)}/{episodes})")
    finally:
        if writer.recording:
            writer.discard_episode()
        if saved_attrs is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, saved_attrs)
        out.write("\n")
        out.flush()
    return summary
