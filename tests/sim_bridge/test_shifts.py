"""Environment shifts (`sim_bridge.shifts`) on real PyBullet and MuJoCo tasks: each changes what it names
(mass, friction, camera, a distractor the camera sees), leaves the seed's layout as it is, and reaches
`rrl eval`."""

import json

import numpy as np
import pybullet as p
import pytest

from sim_bridge import make_task
from sim_bridge.shifts import SHIFTS, SceneVariation, variation_for
from sim_bridge.task import CameraConfig
from sim_bridge.ur5.tasks import DISTRACTOR_CLEARANCE_M

CAM = CameraConfig(width_px=64, height_px=64)
SEED = 1_000_003


def _reset(name, shifts=(), camera=CAM):
    task = make_task(name, camera=camera, shifts=shifts)
    return task, task.reset(SEED)


@pytest.mark.parametrize("name", ["ur5_pick", "ur5_bowl", "ur5_push"])
def test_every_ur5_shift_keeps_the_seeds_layout_and_changes_only_what_it_names(name):
    nominal, obs0 = _reset(name)
    mass0, friction0 = p.getDynamicsInfo(nominal.cube, -1, physicsClientId=nominal.client)[:2]
    try:
        for shift in SHIFTS:
            task, obs = _reset(name, (shift,))
            try:
                np.testing.assert_array_equal(obs["state"], obs0["state"])  # same objects, sizes, start pose
                mass, friction = p.getDynamicsInfo(task.cube, -1, physicsClientId=task.client)[:2]
                assert mass == pytest.approx(mass0 * (3.0 if shift == "heavy" else 1.0))
                assert friction == pytest.approx(friction0 * (0.5 if shift == "slippery" else 1.0))
                changed = np.abs(obs["depth"] - obs0["depth"]) > 1e-4
                if shift in ("camera_moved", "distractor"):
                    assert changed.mean() > 0.005, f"{shift} left the depth image as it was"
                else:
                    assert not changed.any(), f"{shift} changed the depth image"
                assert (task.distractor is not None) == (shift == "distractor")
            finally:
                task.close()
    finally:
        nominal.close()


def test_the_distractor_is_seen_not_touched_and_keeps_clear_of_the_objects():
    """Visual only (no collision shape), placed from the seed's own stream: the same seed puts it in the
    same place, another seed elsewhere; it keeps DISTRACTOR_CLEARANCE_M from the cube and the bowl."""
    task = make_task("ur5_bowl", camera=CAM, shifts=("distractor",))
    try:
        places = []
        for seed in (SEED, SEED, SEED + 1):
            task.reset(seed)
            centre, half = task.distractor
            places.append(centre)
            for xy in task.object_xy():
                assert np.linalg.norm(centre[:2] - xy) >= DISTRACTOR_CLEARANCE_M
            bodies = [p.getBodyUniqueId(i, physicsClientId=task.client) for i in range(p.getNumBodies(physicsClientId=task.client))]
            box = bodies[-1]
            assert p.getCollisionShapeData(box, -1, physicsClientId=task.client) == ()
        np.testing.assert_array_equal(places[0], places[1])
        assert np.linalg.norm(places[0] - places[2]) > 1e-3
    finally:
        task.close()


def test_a_heavier_and_a_slipperier_cube_change_the_same_pushes():
    """The same closed-loop pushes (towards the cube's start, then through it along +x) end with the cube
    elsewhere when it is heavy or slippery: the physics changes, not only a number (seed 1000003: the nominal
    cube moves 14 cm, the heavy one ends 9 mm from it, the slippery one stays behind)."""
    def final_cube(shifts):
        task = make_task("ur5_push", shifts=shifts)
        try:
            task.reset(SEED)
            cube = task.cube_pose()[0]
            for i in range(40):
                tool = task.robot.tool_pose()[0]
                goal = cube + np.array([-0.05, 0.0, 0.0]) if i < 25 else cube + np.array([0.1, 0.0, 0.0])
                goal[2] = 0.02
                task.step(np.array([*np.clip(2.0 * (goal - tool), -0.1, 0.1), 1.0]))
            return task.cube_pose()[0]
        finally:
            task.close()

    nominal, heavy, slippery = final_cube(()), final_cube(("heavy",)), final_cube(("slippery",))
    assert np.linalg.norm(nominal - heavy) > 3e-3 and np.linalg.norm(nominal - slippery) > 3e-3


@pytest.mark.parametrize("name", ["adroit_door", "adroit_relocate"])
def test_adroit_shifts_scale_the_object_bodies_and_move_the_camera_from_the_first_frame(name):
    small = CameraConfig(width_px=32, height_px=32)
    nominal, obs0 = _reset(name, camera=small)
    try:
        for shift in ("heavy", "slippery", "camera_moved"):
            task, obs = _reset(name, (shift,), camera=small)
            try:
                np.testing.assert_array_equal(obs["state"], obs0["state"])
                for b in task.object_bodies():
                    k = 3.0 if shift == "heavy" else 1.0
                    assert task.model.body_mass[b] == pytest.approx(k * nominal.model.body_mass[b])
                    f = 0.5 if shift == "slippery" else 1.0
                    geoms = task.model.geom_bodyid == b
                    np.testing.assert_allclose(task.model.geom_friction[geoms, 0], f * nominal.model.geom_friction[geoms, 0])
                # the first frame of the episode already comes from the moved camera
                assert (not np.array_equal(obs["rgb"][0], obs0["rgb"][0])) == (shift == "camera_moved")
            finally:
                task.close()
    finally:
        nominal.close()


def test_bad_shifts_are_named():
    with pytest.raises(ValueError, match="unknown shift 'wind'"):
        make_task("ur5_pick", shifts=("wind",))
    with pytest.raises(ValueError, match="not available on the adroit tasks"):
        variation_for(["distractor"], "adroit")
    with pytest.raises(ValueError, match="named twice"):
        variation_for(["heavy", "heavy"], "ur5")
    with pytest.raises(ValueError, match="scales must be > 0"):
        SceneVariation(object_mass_scale=0.0)
    combined = variation_for(["heavy", "slippery", "camera_moved"], "ur5")
    assert (combined.object_mass_scale, combined.object_friction_scale) == (3.0, 0.5)
    assert combined.camera_offset_m == SHIFTS["camera_moved"].variations["ur5"].camera_offset_m


def test_rrl_eval_runs_under_a_shift_and_records_it_beside_the_nominal_metrics(tmp_path, capsys):
    """The report names the shifts; --record-metrics stores the shifted result under metrics.shifts and
    leaves the nominal success the artifact is known by untouched; a bad shift exits 2 before any episode."""
    import shutil

    from policies.artifact import load_artifact
    from rrl.cli import main as rrl

    art = tmp_path / "bc"
    shutil.copytree("policies/pretrained/bc_ur5_pick_state6", art)
    nominal = load_artifact(art).metrics["success_rate"]
    assert rrl(["eval", "--task", "ur5_pick", "--base", str(art), "--episodes", "2", "--shift", "heavy",
                "--shift", "slippery", "--record-metrics", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["shifts"] == ["heavy", "slippery"]
    metrics = load_artifact(art).metrics
    assert metrics["success_rate"] == nominal
    shifted = metrics["shifts"]["heavy+slippery"]
    assert shifted["success_rate"] == report["success_rate"] and "--shift heavy --shift slippery" in shifted["command"]
    with pytest.raises(SystemExit) as e:
        rrl(["eval", "--task", "adroit_door", "--base", "waypoint", "--shift", "distractor", "--episodes", "1"])
    assert e.value.code == 2 and "not available on the adroit tasks" in capsys.readouterr().err


def test_a_slippery_door_handle_changes_the_experts_episodes():
    """MuJoCo takes the larger friction of two touching geoms of equal priority: halving the object's friction
    alone would leave every contact with the hand's 1.0. With the shift's contact priority it counts (seed
    1000001: the door expert opens it in 90 steps instead of 95)."""
    from controllers.experts import make_expert
    from training.evaluation import ExpertPolicy, run_episode

    def episodes(shifts):
        with make_task("adroit_door", shifts=shifts) as task:
            policy = ExpertPolicy(make_expert("adroit_door"), task.spec)
            return [(r.success, r.steps) for r in (run_episode(task, policy, 1_000_000 + i) for i in range(3))]

    assert episodes(("slippery",)) != episodes(())
