"""Keyboard teleoperation: the pure key -> action core, and the real terminal shell driven through a pseudo-terminal."""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sim_bridge.spec import Layout, TaskSpec
from training.demos.teleop import Event, KeyboardTeleop, TeleopConfig, format_status

ROOT = Path(__file__).resolve().parents[2]
RECORD = [sys.executable, "-c", "import argparse, sys; from rrl.commands import record as r; "
          "p = argparse.ArgumentParser(prog='rrl record'); r.add_arguments(p); sys.exit(r.run(p.parse_args()))"]
"""`rrl record` (the command module alone, so an unrelated command's import error cannot break this test)."""

SPEC = TaskSpec(name="toy", robot="ur5", control_rate_hz=10.0, max_steps=50,
                action=Layout((("tool_vel", 3), ("gripper", 1))), action_low=(-0.1, -0.1, -0.1, 0.0),
                action_high=(0.1, 0.1, 0.1, 1.0), proprio=Layout((("tool_pos", 3),)),
                state=Layout((("tool_pos", 3),)), binary_action_fields=("gripper",))


def test_direction_keys_command_velocity_for_hold_time():
    core = KeyboardTeleop(SPEC, TeleopConfig(speed_m_s=0.05, hold_s=0.3))
    assert core.press("w", 0.0) is None
    np.testing.assert_allclose(core.action(0.1), [0.05, 0.0, 0.0, 0.0])
    core.press("f", 0.2)
    np.testing.assert_allclose(core.action(0.25), [0.05, 0.0, -0.05, 0.0])
    np.testing.assert_allclose(core.action(0.35), [0.0, 0.0, -0.05, 0.0])  # x expired, z still held
    np.testing.assert_allclose(core.action(0.6), [0.0, 0.0, 0.0, 0.0])
    core.press("d", 1.0)
    core.press("a", 1.1)  # the last press on an axis wins
    np.testing.assert_allclose(core.velocity(1.2), [0.0, 0.05, 0.0])
    core.press(" ", 1.2)
    np.testing.assert_allclose(core.velocity(1.25), [0.0, 0.0, 0.0])


def test_gripper_speed_and_episode_keys():
    core = KeyboardTeleop(SPEC, TeleopConfig(speed_m_s=0.05))
    core.press("c", 0.0)
    assert core.action(0.0)[3] == 1.0
    core.press("o", 0.0)
    assert core.action(0.0)[3] == 0.0
    for _ in range(5):
        core.press("+", 0.0)
    assert core.speed_m_s == pytest.approx(0.1)  # capped at the task limit
    core.press("-", 0.0)
    assert core.speed_m_s == pytest.approx(0.1 / 1.5)
    assert core.press("n", 0.0) is Event.START and core.press("\r", 0.0) is Event.START
    assert core.press("k", 0.0) is Event.MARK and core.marked_success
    assert core.press("x", 0.0) is Event.STOP and core.press("u", 0.0) is Event.DISCARD
    assert core.press("q", 0.0) is Event.QUIT
    assert core.press("z", 0.0) is None
    core.reset()
    assert not core.marked_success and core.gripper == 0.0


def test_refuses_task_without_tool_velocity():
    spec = TaskSpec(name="hand", robot="adroit", control_rate_hz=10.0, max_steps=5,
                    action=Layout((("joints", 2),)), action_low=(-1, -1), action_high=(1, 1),
                    proprio=Layout((("q", 2),)), state=Layout((("q", 2),)))
    with pytest.raises(ValueError, match="tool_vel"):
        KeyboardTeleop(spec)


def test_status_line_shows_episode_step_speed_success():
    line = format_status(2, 5, 17, 0.05, np.array([0.05, 0.0, -0.05]), 1.0, True, False, True)
    for part in ("ep 2/5", "step   17", "0.050 m/s", "+x-z", "closed", "success YES", "REC"):
        assert part in line


def test_keyboard_session_in_a_pseudo_terminal_moves_the_tool_and_saves_an_episode(tmp_path):
    """A person's key presses, sent through a pty to `rrl record --source keyboard`, end up in the bag."""
    from training.demos.dataset import DatasetConfig, DemoDataset

    out = tmp_path / "teleop_bag"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [*RECORD, "--task", "ur5_pick", "--source", "keyboard", "--episodes", "1",
         "--out", str(out), "--camera-px", "0", "--seed", "7"],
        stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, close_fds=True, start_new_session=True)
    os.close(slave)
    screen = bytearray()

    def pump(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    screen.extend(os.read(master, 65536))
                except OSError:
                    return

    def hold(key, seconds):  # like terminal auto-repeat: a press every 50 ms
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            os.write(master, key.encode())
            pump(0.05)

    try:
        deadline = time.monotonic() + 60
        while b"keys:" not in screen and time.monotonic() < deadline:
            pump(0.1)
        assert b"keys:" in screen, screen.decode(errors="replace")
        os.write(master, b"n")
        pump(0.5)
        hold("f", 1.0)   # down
        pump(0.6)        # released: stops
        hold("w", 1.0)   # +x
        pump(0.5)
        os.write(master, b"k")  # mark success, then stop and save
        pump(0.3)
        os.write(master, b"x")
        proc.wait(timeout=30)
        pump(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "REC" in text and "episode saved" in text and "success" in text

    ds = DemoDataset(out, DatasetConfig(val_fraction=0.0))
    (ep,) = ds.episodes
    assert ep.record.success and ep.record.info["marked_success"] and ep.record.seed == 7
    vel, pos = ep.action[:, :3], ep.proprio[:, :3]
    down = np.flatnonzero(vel[:, 2] < 0)
    fwd = np.flatnonzero(vel[:, 0] > 0)
    assert len(down) >= 5 and len(fwd) >= 5
    assert np.all(vel[down][:, [0, 1]] == 0) and np.all(vel[fwd][:, [1, 2]] == 0)
    # the tool moved the commanded way while each key was held
    assert pos[down[-1] + 1, 2] < pos[down[0], 2] - 0.02
    assert pos[fwd[-1] + 1, 0] > pos[fwd[0], 0] + 0.02
    assert abs(pos[fwd[-1] + 1, 2] - pos[fwd[0], 2]) < 0.01
