"""The Adroit stack (launch/adroit.launch.yaml) over real DDS: one lockstep episode equals the in-process one."""

from pathlib import Path

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
