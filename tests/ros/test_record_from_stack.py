"""`rrl record --source ros` over real DDS on loopback: recording the running UR5 stack (lockstep) writes the
demo bag format with every action paired with the observation it answered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from training.demos.dataset import DatasetConfig, DemoDataset

ROOT = Path(__file__).resolve().parents[2]
RECORD = [sys.executable, "-c", "import argparse, sys; from rrl.commands import record as r; "
          "p = argparse.ArgumentParser(prog='rrl record'); r.add_arguments(p); sys.exit(r.run(p.parse_args()))"]
"""`rrl record` (the command module alone, so an unrelated command's import error cannot break this test)."""


def test_recording_a_lockstep_stack_pairs_each_action_with_its_observation(launch, tmp_path):
    out = tmp_path / "from_stack"
    recorder = subprocess.Popen(
        [*RECORD, "--task", "ur5_pick", "--source", "ros", "--episodes", "2",
         "--out", str(out), "--camera-px", "64", "--timeout-s", "120", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the recorder subscribes before the stack starts
            line = recorder.stderr.readline()
            if "ready" in line or not line:
                break
        assert "ready" in line, line
        # more episodes than recorded: the recorder starts at the first episode start after DDS discovery
        run = launch("clock_mode:=lockstep", "episodes:=40", "seed:=3", "camera_px:=64", report=tmp_path / "r.json")
        stdout, stderr = recorder.communicate(timeout=120)
        run.stop()
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == 0, stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["episodes"] == 2 and report["filled_actions"] == 0, report

    # the stack's own account of its episodes
    got = DemoDataset(out, DatasetConfig(val_fraction=0.0, frame_dtype="float32"))
    seeds = [e.record.seed for e in got.episodes]
    assert seeds[1] == seeds[0] + 1 and seeds[0] >= 3
    results = {r["seed"]: r for r in run.report()["results"]}
    for ep in got.episodes:
        assert (ep.steps, ep.record.success) == (results[ep.record.seed]["steps"], results[ep.record.seed]["success"])
    # replaying the recorded actions from the recorded seeds reproduces every recorded observation exactly:
    # each action is paired with the observation it answered
    task = make_task("ur5_pick", camera=CameraConfig(64, 64))
    try:
        for ep in got.episodes:
            assert not ep.record.terminal_observation and ep.record.info["filled_actions"] == 0
            obs = task.reset(ep.record.seed)
            for t in range(ep.steps):
                np.testing.assert_array_equal(ep.state[t], obs["state"])
                np.testing.assert_array_equal(ep.frames[t], obs["depth"][-1])
                np.testing.assert_array_equal(ep.joint_pos_rad[t], obs["joint_pos_rad"])
                result = task.step(ep.action[t].astype(np.float64))
                obs = result.obs
            assert result.success == ep.record.success
    finally:
        task.close()
