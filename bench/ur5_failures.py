"""Why a ur5_pick, ur5_bowl or ur5_push policy fails: each failed episode sorted by how far it got.

Runs a base (+ residual) through the runtime (`policies.runtime.load_policy`, the policy `rrl eval` runs, safety
included) on held-out seeds and records, per episode, the closest the tool came to the cube's centre, how the
cube moved and how often the gripper was commanded shut. A failure is then

- ur5_pick: `not_reached`, the tool never came within `--reach-m` (3 cm) of the cube's centre (the policy went
  to the wrong place: localisation); `not_lifted`, it reached the cube but the cube never rose 1 cm (the grasp
  missed or never closed); `dropped`, the cube rose 1 cm or more but never reached the success height.
- ur5_bowl: `not_reached` and `not_lifted` as pick; then, for a cube that was lifted, `held` (still in the
  closed gripper at the end: carried but never let go), `outside` (it ended outside the bowl's wall: let go or
  dropped off target) and `in_bowl` (inside the wall but not a success: on the rim, tilted against the wall,
  or more than 4 cm from the centre). `release_to_bowl_m` is the cube's xy distance from the bowl centre when
  the gripper first opened after the lift (the wall is 8.5 cm out), `release_height_m` the cube's centre then.
- ur5_push: `not_moved`, the cube never moved 1 cm; `stopped_short`, it ended within twice the success radius
  of the target (6 cm: pushed most of the way, then left); `stopped_far`, farther. `last_move_step` is the last
  step at which the cube moved more than 1 mm (a policy that stalls leaves it there for the rest of the episode),
  and `final_tool_z_m` where the tool then is (the push expert pushes at 2.5 cm and backs off to 8 cm). What the
  policy does once the cube has stopped (the steps after `last_move_step`): `after_stop_speed_m_s`, its mean
  commanded speed (0: idle); `after_stop_vz_reversals_per_10s`, how often its commanded vertical velocity
  changes direction (|vz| > `FIRM_VZ_M_S`; a policy bobbing up and down in place); `after_stop_lateral_m`,
  the tool's median distance from the line through the cube to the target (the expert pushes on that line);
  `after_stop_expert_motions`, the share of those steps in each motion of the scripted expert run beside the
  policy on the same observations (it never acts: what it would be doing where the policy went).

Prints one JSON object (the counts, every episode, the machine).

    .venv/bin/python bench/ur5_failures.py --task ur5_pick --base policies/pretrained/bc_ur5_pick --episodes 100
    .venv/bin/python bench/ur5_failures.py --task ur5_bowl --base policies/pretrained/bc_ur5_bowl_depth --episodes 100
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from machine_info import machine

LIFTED_M = 0.01
"""Rise of the cube's centre (m) that counts as lifted."""
MOVED_M = 0.01
"""Travel of the cube's centre (m) that counts as moved (push)."""
STEP_MOVE_M = 0.001
"""Travel in one step (m) that counts as the cube moving (push's `last_move_step`)."""
FIRM_VZ_M_S = 0.01
"""Commanded vertical speed (m/s) above which its direction counts (push's vertical reversals)."""


def _off_line(tool_xy: np.ndarray, cube_xy: np.ndarray, target_xy: np.ndarray) -> float:
    """Distance (m) of the tool from the line through the cube and the target (the push expert's line)."""
    d = target_xy - cube_xy
    n = float(np.linalg.norm(d))
    rel = tool_xy - cube_xy
    return float(np.linalg.norm(rel)) if n < 1e-6 else abs(float(rel[0] * d[1] - rel[1] * d[0])) / n


def _after_stop(commands: np.ndarray, laterals: np.ndarray, motions: list[str], rate_hz: float) -> dict:
    """What the policy commands once the cube has stopped (one row a control step at `rate_hz`): mean speed,
    vertical reversals per 10 s, the median distance from the push line, the expert's motions beside it (None
    when the cube moved up to the last step)."""
    if len(commands) < 2:
        return {"after_stop_speed_m_s": None, "after_stop_vz_reversals_per_10s": None, "after_stop_lateral_m": None,
                "after_stop_expert_motions": None}
    vz = commands[:, 2]
    signs = np.sign(vz[np.abs(vz) > FIRM_VZ_M_S])
    reversals = int(np.count_nonzero(signs[1:] != signs[:-1]))
    return {"after_stop_speed_m_s": round(float(np.linalg.norm(commands, axis=1).mean()), 4),
            "after_stop_vz_reversals_per_10s": round(reversals * 10.0 * rate_hz / len(vz), 2),
            "after_stop_lateral_m": round(float(np.nanmedian(laterals)), 4),
            "after_stop_expert_motions": {m: round(motions.count(m) / len(motions), 3) for m in sorted(set(motions))}}


def main() -> int:
    from training.evaluation import EVAL_SEED_BASE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("ur5_pick", "ur5_bowl", "ur5_push"), default="ur5_pick")
    ap.add_argument("--base", required=True, help="base artifact (or waypoint spec) to run")
    ap.add_argument("--residual", default=None, help="residual artifact on top of the base")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="first seed (default: the held-out seeds' first)")
    ap.add_argument("--reach-m", type=float, default=0.03, help="tool-to-cube-centre distance that counts as reached")
    args = ap.parse_args()

    from controllers.experts import make_expert
    from policies.runtime import camera_for_artifacts, load_policy, tool_position
    from sim_bridge import make_task
    from sim_bridge.ur5.tasks import BOWL_WALL_RADIUS_M

    task = make_task(args.task, camera=camera_for_artifacts(args.base, args.residual))
    policy = load_policy(task.spec, args.base, args.residual)
    grip = task.spec.action.slices()["gripper"].start
    beside = make_expert(args.task) if args.task == "ur5_push" else None
    episodes = []
    for seed in range(args.seed, args.seed + args.episodes):
        obs = task.reset(seed)
        policy.reset(seed)
        start = task.cube_pose()[0].copy()
        last = start
        rise, closest, closes, shut, last_move = 0.0, np.inf, 0, False, 0
        commands, laterals, motions = [], [], []
        release = None  # bowl: (xy distance to the bowl centre, height) of the cube when the gripper first opened
        # after the lift
        if beside is not None:
            beside.reset(seed)
        while True:
            action = policy.act(obs)
            if beside is not None:
                beside.act(task.spec.state.unpack(obs["state"]))
                motions.append(beside.motion)
            now_shut = bool(action[grip] > 0.5)
            closes += int(now_shut and not shut)
            opened_after_lift = shut and not now_shut and rise >= LIFTED_M
            shut = now_shut
            if opened_after_lift and release is None and args.task == "ur5_bowl":
                cube = task.cube_pose()[0]
                release = (float(np.linalg.norm(cube[:2] - task.bowl_pos[:2])), float(cube[2]))
            step = task.step(action)
            obs = step.obs
            cube = task.cube_pose()[0]
            rise = max(rise, float(cube[2] - start[2]))
            if np.linalg.norm(cube[:2] - last[:2]) > STEP_MOVE_M:
                last_move = task.step_count
            last = cube.copy()
            tool = tool_position(task.spec, obs)
            if tool is not None:
                closest = min(closest, float(np.linalg.norm(tool - cube)))
            commands.append(np.asarray(action[:3], float))
            if args.task == "ur5_push":
                laterals.append(np.nan if tool is None else _off_line(tool[:2], cube[:2], task.target_pos[:2]))
            if step.terminated or step.truncated:
                break
        row = {"seed": seed, "steps": task.step_count, "closest_m": round(closest, 4), "gripper_closes": closes,
               "cube_size_m": round(float(task.cube_size_m), 4),
               "final_tool_z_m": None if tool is None else round(float(tool[2]), 4)}
        if args.task == "ur5_pick":
            row["cube_rise_m"] = round(rise, 4)
            outcome = ("success" if step.success else "not_reached" if closest > args.reach_m
                       else "not_lifted" if rise < LIFTED_M else "dropped")
        elif args.task == "ur5_bowl":
            to_bowl = float(np.linalg.norm(last[:2] - task.bowl_pos[:2]))
            row.update(cube_rise_m=round(rise, 4), final_to_bowl_m=round(to_bowl, 4),
                       release_to_bowl_m=None if release is None else round(release[0], 4),
                       release_height_m=None if release is None else round(release[1], 4))
            outcome = ("success" if step.success else "not_reached" if closest > args.reach_m
                       else "not_lifted" if rise < LIFTED_M else "held" if shut and last[2] - start[2] >= LIFTED_M
                       else "outside" if to_bowl > BOWL_WALL_RADIUS_M else "in_bowl")
        else:
            moved = float(np.linalg.norm(last[:2] - start[:2]))
            to_target = float(np.linalg.norm(last[:2] - task.target_pos[:2]))
            row.update(cube_moved_m=round(moved, 4), final_to_target_m=round(to_target, 4), last_move_step=last_move,
                       start_to_target_m=round(float(np.linalg.norm(start[:2] - task.target_pos[:2])), 4),
                       **_after_stop(np.array(commands[last_move:]), np.array(laterals[last_move:]), motions[last_move:],
                                     task.spec.control_rate_hz))
            outcome = ("success" if step.success else "not_moved" if moved < MOVED_M
                       else "stopped_short" if to_target < 2 * task.success_radius_m else "stopped_far")
        episodes.append({"outcome": outcome, **row})
    task.close()
    kinds = {"ur5_pick": ("success", "not_reached", "not_lifted", "dropped"),
             "ur5_bowl": ("success", "not_reached", "not_lifted", "held", "outside", "in_bowl"),
             "ur5_push": ("success", "not_moved", "stopped_short", "stopped_far")}[args.task]
    counts = {k: sum(e["outcome"] == k for e in episodes) for k in kinds}
    failed = [e["closest_m"] for e in episodes if e["outcome"] != "success"]
    print(json.dumps({"task": args.task, "base": args.base, "residual": args.residual, "episodes": args.episodes, "seed": args.seed,
                      "reach_m": args.reach_m, "counts": counts,
                      "median_closest_m_of_failures": float(np.median(failed)) if failed else None,
                      **(_push_summary(episodes) if args.task == "ur5_push" else {}),
                      "per_episode": episodes, "machine": machine("pybullet", "onnxruntime")}))
    return 0


def _push_summary(episodes: list[dict]) -> dict:
    """Medians over the failed push episodes where the cube stopped before the end."""
    stalled = [e for e in episodes if e["outcome"] != "success" and e["after_stop_speed_m_s"] is not None]
    summary = {f"median_{k}_of_stalls": (float(np.median([e[k] for e in stalled])) if stalled else None)
               for k in ("after_stop_speed_m_s", "after_stop_vz_reversals_per_10s", "after_stop_lateral_m")}
    steps: dict[str, float] = {}
    for e in stalled:  # the expert's motions over all stalled steps, each episode weighted by its steps
        n = e["steps"] - e["last_move_step"]
        for m, share in e["after_stop_expert_motions"].items():
            steps[m] = steps.get(m, 0.0) + share * n
    total = sum(steps.values())
    summary["expert_motions_of_stalls"] = {m: round(v / total, 3) for m, v in sorted(steps.items())} if total else None
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
