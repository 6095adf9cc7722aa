"""Expert-recording throughput: episodes per minute and bag bytes per step (depth camera, default 240 px).

Records `--episodes` successful `ur5_pick` expert episodes (the `rrl record --source
expert` path: task + expert + bag writer, headless, no real-time wait) once per
compression setting, then loads the bag with the dataset reader twice (building,
then reusing the frame cache). With `--memory-episodes N` it also writes a
synthetic bag of N episodes x `--memory-steps` steps of the same camera size
(no simulation: shifted gradient frames) and loads it with the reader in a
child process, then draws 50 random batches of 64; it reports the child's peak
resident memory while loading, its anonymous memory afterwards, and the
file-backed (memory-mapped cache, reclaimable by the kernel) part, next to the
size the frames would take as float32 in RAM. Prints one JSON object:

    nice .venv/bin/python bench/record_throughput.py [--episodes 5] [--camera-px 240] [--memory-episodes 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))




READER_CHILD = """
import json, sys, time
import numpy as np
from training.demos.dataset import DemoDataset

def status():
    return {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status")
            if l.startswith(("VmHWM", "RssAnon", "RssFile"))}

t0 = time.perf_counter()
ds = DemoDataset(sys.argv[1])
load_s = time.perf_counter() - t0
after_load = status()
rng = np.random.default_rng(0)
t1 = time.perf_counter()
for _ in range(50):
    batch = ds.batch("train", rng.integers(0, ds.size("train"), 64))
batch_ms = (time.perf_counter() - t1) / 50 * 1000
print(json.dumps({"load_s": load_s, "batch64_ms": batch_ms, "samples": ds.size("train") + ds.size("val"),
                  "peak_rss_load_mb": after_load["VmHWM"], "anon_rss_mb": status()["RssAnon"],
                  "file_rss_mb": status()["RssFile"], "peak_rss_mb": status()["VmHWM"]}))
"""


def reader_memory(out: Path, episodes: int, steps: int, camera, BagSpec, DemoBagWriter) -> dict:
    """Write a synthetic bag of `episodes` x `steps` frames; measure the reader's peak RSS in a child process."""
    import subprocess

    import numpy as np

    from sim_bridge import make_task

    task = make_task("ur5_pick", camera=camera)
    spec = BagSpec.from_task(task.spec, camera)
    task.close()
    h, w = camera.height_px, camera.width_px
    base = np.add.outer(np.linspace(0, 0.5, h), np.linspace(0, 0.5, w)).astype(np.float32)
    t0 = time.perf_counter()
    now = 1_000_000_000
    with DemoBagWriter(out, spec, source="synthetic") as writer:
        for e in range(episodes):
            writer.begin_episode(e, now)
            for t in range(steps + 1):
                frame = np.roll(base, e + t, axis=1)[None]
                obs = {"depth": frame, "proprio": np.full(len(spec.proprio_labels), t, np.float32),
                       "state": np.full(len(spec.state_labels), e, np.float32),
                       "joint_pos_rad": np.zeros(len(spec.joint_names))}
                writer.write_observation(now, obs)
                if t < steps:
                    writer.write_action(now, np.zeros(len(spec.action_labels)))
                now += 100_000_000
            writer.end_episode(now, success=True)
    write_s = time.perf_counter() - t0
    child = subprocess.run([sys.executable, "-c", READER_CHILD, str(out)], capture_output=True, text=True,
                           cwd=ROOT, check=True)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    frames = episodes * (steps + 1)
    cache = sum(f.stat().st_size for f in (out / ".rrl_cache").glob("*.npy"))
    return {"episodes": episodes, "steps_per_episode": steps, "write_s": round(write_s, 1),
            "load_s": round(result["load_s"], 1), "batch64_ms": round(result["batch64_ms"], 2),
            "peak_rss_load_mb": round(result["peak_rss_load_mb"]), "anon_rss_after_batches_mb": round(result["anon_rss_mb"]),
            "file_backed_rss_after_batches_mb": round(result["file_rss_mb"]),
            "peak_rss_mb": round(result["peak_rss_mb"]), "frames_as_float32_mb": round(frames * h * w * 4 / 2**20),
            "frame_cache_mb": round(cache / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="ur5_pick")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--camera-px", type=int, default=240)
    parser.add_argument("--compression", nargs="+", default=["zstd", "none"])
    parser.add_argument("--memory-episodes", type=int, default=0, help="synthetic episodes for the reader memory check")
    parser.add_argument("--memory-steps", type=int, default=150, help="steps per synthetic episode")
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
        if args.memory_episodes:
            report["reader_memory"] = reader_memory(Path(tmp) / "synthetic", args.memory_episodes,
                                                    args.memory_steps, camera, BagSpec, DemoBagWriter)
    report["machine"] = machine("numpy", "pybullet", "mcap", "rosbags")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
