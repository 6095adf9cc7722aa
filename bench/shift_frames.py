"""What the policies see under the camera shifts: the first frame of one held-out episode, nominal and shifted.

The UR5's depth camera (as its image policies get it: [0, 1] over near..far) nominal, `camera_moved` and
`distractor`; the Adroit door's RGB camera nominal and `camera_moved`. Writes one PNG and prints one JSON
object (the mean absolute change of each shifted frame from the nominal one).

    .venv/bin/python bench/shift_frames.py --out bench/results/shift_frames.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from machine_info import machine


def first_frame(task_name: str, shifts: tuple[str, ...], px: int, seed: int) -> np.ndarray:
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig

    with make_task(task_name, camera=CameraConfig(px, px), shifts=shifts) as task:
        obs = task.reset(seed)
        return obs["depth"][-1] if "depth" in obs else obs["rgb"][-1]


def main() -> int:
    from training.evaluation import EVAL_SEED_BASE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=120)
    ap.add_argument("--seed", type=int, default=EVAL_SEED_BASE)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("ur5_pick", ["nominal", "camera_moved", "distractor"]), ("adroit_door", ["nominal", "camera_moved"])]
    fig, axes = plt.subplots(len(rows), 3, figsize=(8, 5.4))
    change = {}
    for r, (task_name, columns) in enumerate(rows):
        nominal = first_frame(task_name, (), args.px, args.seed)
        for c in range(3):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(columns):
                continue
            shifts = () if columns[c] == "nominal" else (columns[c],)
            frame = nominal if not shifts else first_frame(task_name, shifts, args.px, args.seed)
            if shifts:
                scale = 1.0 if frame.dtype != np.uint8 else 255.0
                change[f"{task_name}/{columns[c]}"] = round(float(np.abs(frame / scale - nominal / scale).mean()), 4)
            ax.imshow(frame, cmap="viridis" if frame.ndim == 2 else None)
            ax.set_title(f"{task_name}: {columns[c]}", fontsize=9)
    fig.suptitle(f"first frame of held-out seed {args.seed}, {args.px} px", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"seed": args.seed, "px": args.px, "mean_abs_change": change, "out": args.out,
                      "machine": machine("pybullet", "mujoco")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
