"""Expert-recording throughput: episodes per minute and bag bytes per step (depth camera, default 240 px).

Records `--episodes` successful `ur5_pick` expert episodes (the `rrl record --source
expert` path: task + expert + bag writer, headless, no real-time wait) once per
compression setting, then loads the bag with the dataset reader twice (building,
then reusing the frame cache). Prints one JSON object:

    nice .venv/bin/python bench/record_throughput.py [--episodes 5] [--camera-px 240]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": {p: version(p) for p in ("numpy", "pybullet", "mcap", "rosbags")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ur5_pick")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--camera-px", type=int, default=240)
    parser.add_argument("--compression", nargs="+", default=["zstd", "none"])
    args = parser.parse_args()

    from controllers.experts import make_expert
    from sim_bridge import make_task
    from sim_bridge.task import CameraConfig
    from training.demos.bag import DemoBagWriter
    from training.demos.dataset import DatasetConfig, DemoDataset
    from training.demos.recording import record_policy
    from training.demos.schema import BagSpec
    from training.evaluation import DEMO_SEED_BASE, ExpertPolicy

    camera = CameraConfig(args.camera_px, args.camera_px)
    report: dict = {"bench": "record_throughput", "task": args.task, "camera_px": args.camera_px,
                    "episodes": args.episodes, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for compression in args.compression:
            task = make_task(args.task, camera=camera)
            policy = ExpertPolicy(make_expert(args.task), task.spec)
            out = Path(tmp) / f"bag_{compression}"
            t0 = time.perf_counter()
            with DemoBagWriter(out, BagSpec.from_task(task.spec, camera), source="expert",
                               compression=compression) as writer:
                summary = record_policy(task, policy, writer, args.episodes, DEMO_SEED_BASE, progress=False)
            wall_s = time.perf_counter() - t0
            task.close()
            bag_bytes = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
            steps = summary.to_dict()["kept_steps"]
            t1 = time.perf_counter()
            DemoDataset(out, DatasetConfig(val_fraction=0.0))
            first_load_s = time.perf_counter() - t1
            t2 = time.perf_counter()
            DemoDataset(out, DatasetConfig(val_fraction=0.0))
            cached_load_s = time.perf_counter() - t2
            report["results"][compression] = {
                "episodes_per_min": round(len(summary.kept) / wall_s * 60, 2),
                "steps_per_s": round(summary.steps / wall_s, 1),
                "attempts": summary.attempts,
                "kept_steps": steps,
                "bag_bytes": bag_bytes,
                "bag_bytes_per_step": round(bag_bytes / steps),
                "raw_frame_bytes_per_step": args.camera_px * args.camera_px * 4,
                "read_first_load_s": round(first_load_s, 2),
                "read_cached_load_s": round(cached_load_s, 2),
            }
    report["machine"] = machine()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
