"""Why a ur5_pick policy fails: each failed episode sorted by how far it got.

Runs a base (+ residual) through the runtime (`policies.runtime.load_policy`, the policy `rrl eval` runs, safety
included) on held-out seeds and, per episode, records the closest the tool came to the cube's centre, the
highest the cube rose and how often the gripper was commanded shut. A failure is then

- `not_reached`: the tool never came within `--reach-m` (3 cm) of the cube's centre (the policy went to the
  wrong place: localisation);
- `not_lifted`: it reached the cube but the cube never rose 1 cm (the grasp missed or never closed);
- `dropped`: the cube rose 1 cm or more but never reached the success height.

Prints one JSON object (the counts, every episode, the machine).

    .venv/bin/python bench/pick_failures.py --base policies/pretrained/bc_ur5_pick --episodes 100
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from machine_info import machine

LIFTED_M = 0.01
"""Rise of the cube's centre (m) that counts as lifted."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="base artifact (or waypoint spec) to run")
    ap.add_argument("--residual", default=None, help="residual artifact on top of the base")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1_000_000, help="first seed (held-out seeds start at 1 000 000)")
    ap.add_argument("--reach-m", type=float, default=0.03, help="tool-to-cube-centre distance that counts as reached")
    args = ap.parse_args()

    from policies.runtime import camera_for_artifacts, load_policy, tool_position
    from sim_bridge import make_task

    task = make_task("ur5_pick", camera=camera_for_artifacts(args.base, args.residual))
    policy = load_policy(task.spec, args.base, args.residual)
    grip = task.spec.action.slices()["gripper"].start
    episodes = []
    for seed in range(args.seed, args.seed + args.episodes):
        obs = task.reset(seed)
        policy.reset(seed)
        z0 = float(task.cube_pose()[0][2])
        rise, closest, closes, shut = 0.0, np.inf, 0, False
        while True:
            action = policy.act(obs)
            now_shut = bool(action[grip] > 0.5)
            closes += int(now_shut and not shut)
            shut = now_shut
            step = task.step(action)
            obs = step.obs
            cube = task.cube_pose()[0]
            rise = max(rise, float(cube[2]) - z0)
            tool = tool_position(task.spec, obs)
            if tool is not None:
                closest = min(closest, float(np.linalg.norm(tool - cube)))
            if step.terminated or step.truncated:
                break
        if step.success:
            outcome = "success"
        elif closest > args.reach_m:
            outcome = "not_reached"
        elif rise < LIFTED_M:
            outcome = "not_lifted"
        else:
            outcome = "dropped"
        episodes.append({"seed": seed, "outcome": outcome, "steps": task.step_count, "closest_m": round(closest, 4),
                         "cube_rise_m": round(rise, 4), "gripper_closes": closes,
                         "cube_size_m": round(float(task.cube_size_m), 4)})
    task.close()
    counts = {k: sum(e["outcome"] == k for e in episodes) for k in ("success", "not_reached", "not_lifted", "dropped")}
    failed = [e["closest_m"] for e in episodes if e["outcome"] != "success"]
    print(json.dumps({"base": args.base, "residual": args.residual, "episodes": args.episodes, "seed": args.seed,
                      "reach_m": args.reach_m, "counts": counts,
                      "median_closest_m_of_failures": float(np.median(failed)) if failed else None,
                      "per_episode": episodes, "machine": machine("pybullet", "onnxruntime")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
