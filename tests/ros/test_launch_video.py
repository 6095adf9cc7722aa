"""`rrl launch ... video:=FILE.mp4`: the sim_bridge node records the episode without changing it (real DDS)."""

from __future__ import annotations

from sim_bridge.video import VideoConfig, read_video


def test_lockstep_video_records_the_same_episode(launch, tmp_path):
    reports = []
    for name, extra in (("plain", ()), ("video", (f"video:={tmp_path / 'ep.mp4'}",))):
        run = launch("clock_mode:=lockstep", "episodes:=1", "seed:=1000003", *extra, report=tmp_path / f"{name}.json")
        assert run.wait() == 0, run.output
        reports.append(run.report())
    plain, video = reports
    (sim_plain,), (sim_video,) = plain["sim"].values(), video["sim"].values()
    # every applied action and resulting state hashed by the sim: the same trajectory with and without video
    assert sim_video["trajectory_sha256"] == sim_plain["trajectory_sha256"]
    assert video["results"] == plain["results"] and plain["results"][0]["success"]
    frames = read_video(tmp_path / "ep.mp4")
    assert len(frames) == plain["results"][0]["steps"] + 1
    assert frames[0].shape == VideoConfig().frame_shape


def test_video_in_driver_mode_is_refused(launch, tmp_path):
    run = launch("clock_mode:=driver", "max_ticks:=5", f"video:={tmp_path / 'x.mp4'}")
    assert run.wait(60) != 0
    assert "video is recorded in clock_mode realtime or lockstep" in run.output


def test_a_video_path_that_is_not_mp4_stops_the_sim_with_its_reason(launch, tmp_path):
    run = launch("clock_mode:=lockstep", "episodes:=1", f"video:={tmp_path / 'x.avi'}")
    assert run.wait(60) != 0
    assert "must end in .mp4" in run.output
