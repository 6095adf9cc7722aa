"""A recorded demo replayed into the lockstep UR5 stack over real DDS: `base:=replay:BAG_DIR` (policies.replay).

The control node runs the bag's episodes as its base, through the safety layer, out on `/command`; the
lockstep sim reproduces each recorded episode: the same outcome after the same number of ticks.
"""

from __future__ import annotations

from controllers.experts import make_expert
from policies.runtime import load_policy
from sim_bridge import make_task
from training.demos.bag import DemoBagWriter
from training.demos.recording import record_policy
from training.demos.schema import BagSpec
from training.evaluation import ExpertPolicy, evaluate

SEED = 40


def test_a_recorded_bag_replays_into_the_lockstep_stack_with_the_same_ticks(launch, tmp_path):
    bag = tmp_path / "pick"
    task = make_task("ur5_pick")
    try:
        # noise 0.02 m/s makes the seed-40 demo take 29 steps, the plain expert 27: the count tells them apart
        with DemoBagWriter(bag, BagSpec.from_task(task.spec, None), source="expert") as writer:
            recorded = record_policy(task, ExpertPolicy(make_expert("ur5_pick", noise_std=0.02), task.spec), writer,
                                     episodes=2, seed=SEED, progress=False).kept
        expert = evaluate(task, load_policy(task.spec, "waypoint"), episodes=2, seed=SEED, progress=False)
    finally:
        task.close()
    assert [r.seed for r in recorded] == [SEED, SEED + 1] and all(r.success for r in recorded)
    assert [e.steps for e in expert.episodes] != [r.steps for r in recorded]

    run = launch("clock_mode:=lockstep", f"base:=replay:{bag}", "episodes:=2", f"seed:={SEED}",
                 report=tmp_path / "r.json")
    assert run.wait() == 0, run.output
    report = run.report()
    assert [(e["seed"], e["success"], e["steps"]) for e in report["results"]] == \
        [(r.seed, r.success, r.steps) for r in recorded], report["results"]
    control = report["control"]["control"]
    assert control["base"] == f"replay:{bag}"
    assert control["safety"]["base_errors"] == 0 and control["safety"]["stale_holds"] == 0
    assert control["metrics"]["ticks"] == sum(r.steps for r in recorded)
