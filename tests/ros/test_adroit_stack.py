"""The Adroit stack (launch/adroit.launch.yaml) over real DDS: one lockstep episode equals the in-process one."""

from pathlib import Path

import pytest

from controllers.experts import make_expert
from sim_bridge import make_task
from training.evaluation import ExpertPolicy, run_episode

ROOT = Path(__file__).resolve().parents[2]
SEED = 1_000_039
"""A held-out seed on which the pen expert succeeds (after 24 steps): a short episode with an outcome to compare."""


def test_one_lockstep_pen_episode_matches_the_in_process_run(launch, tmp_path):
    with make_task("adroit_pen") as task:
        expected = run_episode(task, ExpertPolicy(make_expert("adroit_pen"), task.spec), SEED)
    assert expected.success  # the seed was chosen for it; if this fails the expert changed

    run = launch("task:=adroit_pen", "clock_mode:=lockstep", "episodes:=1", f"seed:={SEED}",
                 report=tmp_path / "r.json", file=ROOT / "launch" / "adroit.launch.yaml")
    assert run.wait() == 0, run.output
    report = run.report()
    assert report["results"] == [{"episode": 0, "seed": SEED, "success": True, "steps": expected.steps}], report
    (sim,) = report["sim"].values()
    assert sim["commands_received"] == sim["ticks"] and sim["ticks_without_command"] == 0


@pytest.mark.parametrize("bc, residual, camera_px, episodes", [
    ("bc_adroit_door_state", "residual_dmpo_adroit_door", 0, 3),
    ("bc_adroit_door_rgbp", "residual_dmpo_adroit_door_rgbp", 84, 2),  # RRLfD's setting: the base sees RGB frames
], ids=["state", "rgb"])
def test_the_shipped_hand_residual_runs_on_its_bc_base_as_rrl_eval_does(launch, tmp_path, bc, residual, camera_px, episodes):
    """A DMPO residual on a door BC base (state, or RGB + proprio with the camera's frames over DDS), in the
    lockstep stack: the same episodes, step for step, as the in-process evaluation `rrl eval` runs (one policy
    path), with the residual engaged on every tick."""
    from policies.runtime import camera_for_artifacts, load_policy

    pretrained = ROOT / "policies" / "pretrained"
    bc, residual = pretrained / bc, pretrained / residual
    seed = 1_000_000
    with make_task("adroit_door", camera=camera_for_artifacts(str(bc), str(residual))) as task:
        policy = load_policy(task.spec, str(bc), str(residual))
        expected = [run_episode(task, policy, seed + i) for i in range(episodes)]

    run = launch("task:=adroit_door", "clock_mode:=lockstep", f"episodes:={episodes}", f"seed:={seed}", "base:=bc",
                 f"base_artifact:={bc}", f"residual:={residual}", f"camera_px:={camera_px}", report=tmp_path / "r.json",
                 file=ROOT / "launch" / "adroit.launch.yaml")
    assert run.wait() == 0, run.output
    report = run.report()
    assert report["results"] == [{"episode": i, "seed": seed + i, "success": e.success, "steps": e.steps}
                                 for i, e in enumerate(expected)], report
    control = report["control"]["control"]
    assert control["residual_engaged"] is True and control["residual_suspended_ticks"] == 0
    assert control["safety"]["base_errors"] == 0 and control["safety"]["residual_errors"] == 0
    assert control["safety"]["nonfinite_fallbacks"] == 0
    (sim,) = report["sim"].values()
    assert sim["commands_received"] == sim["ticks"] == sum(e.steps for e in expected)
