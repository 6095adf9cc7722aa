"""How far adroit_pen's goals are from the pen, and how far the wrist alone can turn it.

Two measurements, one JSON object:

- `initial_dot`: over `--episodes` seeds from `--seed`, the initial pen axis . goal axis (the task asks > 0.95)
  and the goal axis's vertical part;
- `wrist_grid`: with the fingers at the centre of their limits (the posture that holds the pen), each of a
  `--grid` x `--grid` set of wrist targets over both wrist joints' full ranges, held `--hold-steps` steps on
  the first seed: the pen axis reached and whether the pen fell (centre below `PEN_DROPPED_Z_M`);
- `goals_within_reach`: the fraction of the `--episodes` goals that one of those settings solves, its pen axis
  within the task's axis tolerance of the goal axis and its pen centre within the position tolerance (the pen
  starts the same on every seed; only the goal is seeded).

    .venv/bin/python bench/pen_reach.py
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from machine_info import machine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=200, help="seeds for the initial-angle statistics")
    ap.add_argument("--seed", type=int, default=900000, help="first seed (tuning seeds by default)")
    ap.add_argument("--grid", type=int, default=5, help="wrist targets per wrist joint")
    ap.add_argument("--hold-steps", type=int, default=20, help="control steps each wrist target is held")
    args = ap.parse_args()

    from sim_bridge import make_task
    from sim_bridge.adroit.tasks import PEN_DROPPED_Z_M, PEN_MIN_AXIS_DOT, PEN_POSITION_TOLERANCE_M

    task = make_task("adroit_pen")
    spec = task.spec

    def named(obs):
        return spec.state.unpack(obs["state"])

    dots, goal_z, goal_dirs, goal_pos = [], [], [], []
    for seed in range(args.seed, args.seed + args.episodes):
        o = named(task.reset(seed))
        dots.append(float(np.dot(o["pen_dir"], o["target_dir"])))
        goal_z.append(float(o["target_dir"][2]))
        goal_dirs.append(o["target_dir"])
        goal_pos.append(o["target_pos_m"])
    q = [0.0, 0.25, 0.5, 0.75, 1.0]

    low, high = np.array(spec.action_low), np.array(spec.action_high)
    centre = (low + high) / 2
    grid, reached = [], []
    for wrj1 in np.linspace(low[0], high[0], args.grid):
        for wrj0 in np.linspace(low[1], high[1], args.grid):
            task.reset(args.seed)
            action = centre.copy()
            action[0], action[1] = wrj1, wrj0
            for _ in range(args.hold_steps):
                step = task.step(action)
                if step.terminated or step.truncated:
                    break
            o = named(step.obs)
            reached.append((o["pen_dir"], o["pen_pos_m"]))
            grid.append({"wrj1_rad": round(float(wrj1), 3), "wrj0_rad": round(float(wrj0), 3),
                         "pen_dir": [round(float(v), 3) for v in o["pen_dir"]],
                         "dropped": bool(o["pen_pos_m"][2] < PEN_DROPPED_Z_M)})
    task.close()
    held = [g for g in grid if not g["dropped"]]
    axis_ok = np.array(goal_dirs) @ np.array([d for d, _ in reached]).T > PEN_MIN_AXIS_DOT  # (goals, settings)
    place_ok = np.linalg.norm(np.array(goal_pos)[:, None] - np.array([q for _, q in reached])[None], axis=2) \
        < PEN_POSITION_TOLERANCE_M
    within_reach = (axis_ok & place_ok).any(axis=1)
    best = max(held, key=lambda g: g["pen_dir"][2]) if held else None
    print(json.dumps({
        "episodes": args.episodes, "seed": args.seed, "min_axis_dot": PEN_MIN_AXIS_DOT,
        "initial_dot": {"quantiles": dict(zip(map(str, q), np.quantile(dots, q).round(3).tolist())),
                        "fraction_within_goal": float(np.mean(np.array(dots) > PEN_MIN_AXIS_DOT))},
        "goals_within_reach": {"fraction": float(within_reach.mean()), "goals": int(within_reach.size),
                               "settings_in_place": int(place_ok[0].sum())},
        "goal_axis_z": {"quantiles": dict(zip(map(str, q), np.quantile(goal_z, q).round(3).tolist()))},
        "wrist_grid": {"hold_steps": args.hold_steps, "dropped": sum(g["dropped"] for g in grid), "settings": len(grid),
                       "highest_held": best,
                       "highest_held_elevation_deg": None if best is None
                       else round(float(np.degrees(np.arcsin(np.clip(best["pen_dir"][2], -1, 1)))), 1),
                       "points": grid},
        "machine": machine("mujoco", "gymnasium_robotics"),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
