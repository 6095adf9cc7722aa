"""Episode videos (`sim_bridge.video`, `rrl eval --video`): real PyBullet and MuJoCo, real ffmpeg.

A recorded episode must decode back to one frame per observation (T steps -> T + 1 frames) and must be
the episode that runs without a video: the same actions step by step, the same states, the same outcome.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from policies.runtime import load_policy
from rrl.cli import main as rrl_main
from sim_bridge import make_task
from sim_bridge.task import CameraConfig
from sim_bridge.video import RecordingTask, VideoConfig, read_video, side_by_side
from training.evaluation import EVAL_SEED_BASE

SMALL = VideoConfig(width_px=64, height_px=48)


def play(task, policy, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], bool, int]:
    """One episode: the actions, the observations after each step (state and camera frames), success and steps."""
    obs = task.reset(seed)
    policy.reset(seed)
    actions, states = [], []
    while True:
        actions.append(np.asarray(policy.act(obs)).copy())
        out = task.step(actions[-1])
        obs = out.obs
        states.append(np.concatenate([obs["state"].ravel()] + [obs[k].ravel() for k in ("depth", "rgb") if k in obs]))
        if out.terminated or out.truncated:
            return actions, states, bool(out.success), task.step_count


def eval_json(capsys, *args: str) -> dict:
    assert rrl_main(["eval", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_video_decodes_to_one_frame_per_observation(tmp_path, capsys):
    path = tmp_path / "pick.mp4"
    report = eval_json(capsys, "--task", "ur5_pick", "--base", "waypoint", "--episodes", "2", "--video", str(path))
    assert report["success_rate"] == 1.0
    task = make_task("ur5_pick")
    try:  # the steps of episode 0 alone (only the first episode is recorded by default)
        _, _, success, steps = play(task, load_policy(task.spec, "waypoint"), EVAL_SEED_BASE)
    finally:
        task.close()
    assert success
    frames = read_video(path)
    assert len(frames) == steps + 1 == report["video"]["frames"]
    assert report["video"]["episodes"] == 1
    assert frames[0].shape == VideoConfig().frame_shape == (240 + 32, 320, 3) and frames[0].dtype == np.uint8
    assert frames[0].std() > 10  # a rendered scene, not a blank frame

    import imageio.v2 as iio

    reader = iio.get_reader(str(path), format="FFMPEG")
    try:
        assert reader.get_meta_data()["codec"] == "h264"
    finally:
        reader.close()


def test_eval_outcome_is_the_same_with_and_without_video(tmp_path, capsys):
    args = ("--task", "ur5_pick", "--base", "waypoint", "--episodes", "2", "--seed", str(EVAL_SEED_BASE + 4))
    plain = eval_json(capsys, *args)
    recorded = eval_json(capsys, *args, "--video", str(tmp_path / "v.mp4"), "--video-episodes", "2")
    for key in ("episodes", "success_rate", "mean_steps_success", "safety"):
        assert plain[key] == recorded[key], key
    assert recorded["video"]["episodes"] == 2


@pytest.mark.parametrize("task_name, camera_px", [("ur5_pick", 0), ("ur5_pick", 16), ("adroit_door", 16)])
def test_recording_does_not_change_the_episode(tmp_path, task_name, camera_px):
    """Actions and observations (state and the policy's camera frames) step by step, with and without the video
    (the Adroit episode cut to 1 s)."""
    options = {"horizon_s": 1.0} if task_name.startswith("adroit") else {}
    if camera_px:
        options["camera"] = CameraConfig(camera_px, camera_px)
    seed = EVAL_SEED_BASE + 2
    plain = make_task(task_name, **options)
    try:
        expected = play(plain, load_policy(plain.spec, "waypoint"), seed)
    finally:
        plain.close()
    try:
        recorded_task = RecordingTask(make_task(task_name, **options), tmp_path / "e.mp4", SMALL)
    except Exception as e:  # no offscreen OpenGL here (MuJoCo needs EGL)
        if type(e).__name__ == "RenderingUnavailable":
            pytest.skip(str(e))
        raise
    try:
        got = play(recorded_task, load_policy(recorded_task.spec, "waypoint"), seed)
    finally:
        recorded_task.close()
    actions, states, success, steps = got
    assert (success, steps) == expected[2:]
    assert len(actions) == len(expected[0])
    for k, (a, b) in enumerate(zip(actions, expected[0])):
        np.testing.assert_array_equal(a, b, err_msg=f"action {k}")
    for k, (a, b) in enumerate(zip(states, expected[1])):
        np.testing.assert_array_equal(a, b, err_msg=f"observation {k}")
    assert len(read_video(tmp_path / "e.mp4")) == steps + 1


def test_only_the_first_episodes_are_recorded_and_the_file_is_finished_at_once(tmp_path):
    task = RecordingTask(make_task("ur5_pick"), tmp_path / "one.mp4", SMALL)
    try:
        policy = load_policy(task.spec, "waypoint")
        _, _, _, steps = play(task, policy, EVAL_SEED_BASE)
        assert len(read_video(tmp_path / "one.mp4")) == steps + 1  # readable before close()
        play(task, policy, EVAL_SEED_BASE + 1)
        assert task.episodes_recorded == 1 and task.frames_written == steps + 1
    finally:
        task.close()


def test_bad_video_settings_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="must end in .mp4"):
        RecordingTask(make_task("ur5_pick"), tmp_path / "x.avi")
    with pytest.raises(ValueError, match="multiple of 16"):
        VideoConfig(width_px=100)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        VideoConfig(episodes=0)
    with pytest.raises(SystemExit) as e:
        rrl_main(["eval", "--task", "ur5_pick", "--base", "waypoint", "--video", str(tmp_path / "x.gif")])
    assert e.value.code == 2 and "must end in .mp4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        rrl_main(["eval", "--task", "ur5_pick", "--base", "waypoint", "--video-episodes", "3"])
    assert e.value.code == 2 and "--video-episodes needs --video" in capsys.readouterr().err


def test_side_by_side_holds_the_shorter_clip_and_keeps_macroblock_sizes():
    left = [np.full((48, 64, 3), i, np.uint8) for i in range(5)]
    right = [np.full((48, 64, 3), 100 + i, np.uint8) for i in range(2)]
    frames = side_by_side(left, right, ("base", "base + residual"), title_px=16, tail_frames=3)
    assert len(frames) == 5 + 3
    assert frames[0].shape == (64, 128, 3) and all(s % 16 == 0 for s in frames[0].shape[:2])
    assert frames[4][40, 30, 0] == 4 and frames[4][40, 100, 0] == 101  # right side holds its last frame
    assert frames[7][40, 30, 0] == 4
    with pytest.raises(ValueError, match="different heights"):
        side_by_side(left, [np.zeros((32, 64, 3), np.uint8)], ("a", "b"))
