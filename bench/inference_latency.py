"""Inference latency of each shipped BC artifact: ONNX Runtime vs torch eager, one thread, batch 1.

For every artifact under policies/pretrained/ (or the directories given) it times, in one run:
- `onnxruntime`: the artifact's model through the runtime session (policies.onnx_runtime:
  one thread, no spinning, warmed up);
- `runtime_step`: the whole `BCPolicy.step` (normalise, crop, run, denormalise) on an observation;
- `torch_eager`: the same architecture (training.bc.network.BCNet rebuilt from the artifact's input
  shapes; latency does not depend on the weight values) in torch eager, `torch.set_num_threads(1)`,
  `no_grad`.
Each is timed `--calls` times after `--warmup` calls; prints ONE JSON object with p50/p99/mean in ms
and a "machine" record.

    .venv/bin/python bench/inference_latency.py [--calls 500] [ARTIFACT_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine_info import machine


ROOT = Path(__file__).resolve().parents[1]




def timings(fn, calls: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    t = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - start
    t *= 1e3
    return {"p50_ms": round(float(np.percentile(t, 50)), 4), "p99_ms": round(float(np.percentile(t, 99)), 4),
            "mean_ms": round(float(t.mean()), 4), "calls": calls}


def bench_artifact(path: Path, calls: int, warmup: int) -> dict:
    import torch

    from policies.artifact import load_artifact
    from policies.onnx_runtime import OnnxSession
    from policies.runtime import ArtifactModel, BCPolicy
    from training.bc.network import BCNet

    artifact = load_artifact(path)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.random([1 if d == -1 else d for d in i.shape]).astype(np.float32) for i in artifact.inputs}
    session = OnnxSession(artifact.model_path)
    onnx_t = timings(lambda: session.run(feeds), calls, warmup)

    obs = {}
    for i in artifact.inputs:
        if i.is_image:
            cam = artifact.camera
            obs[i.sources[0]] = rng.random((cam.history, cam.height_px, cam.width_px)).astype(np.float32)
        else:
            for s in i.sources:
                obs[s] = rng.random(artifact.normalisation[s].size).astype(np.float32)
    policy = BCPolicy(ArtifactModel(artifact))
    step_t = timings(lambda: policy.step(obs), calls, warmup)

    torch.set_num_threads(1)
    action_dim = artifact.action.size
    image = next((i for i in artifact.inputs if i.is_image), None)
    vector = next((i for i in artifact.inputs if not i.is_image), None)
    net = BCNet(action_dim, image_channels=image.shape[1] if image else 0,
                scalar_dim=vector.shape[1] if vector else 0).eval()
    args = [torch.from_numpy(feeds[image.name]) if image else None, torch.from_numpy(feeds[vector.name]) if vector else None]

    def eager():
        with torch.no_grad():
            net(*args)

    torch_t = timings(eager, calls, warmup)
    return {"artifact": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), "task": artifact.task,
            "inputs": {i.name: list(i.shape) for i in artifact.inputs}, "onnxruntime": onnx_t, "runtime_step": step_t,
            "torch_eager": torch_t, "onnx_speedup_p50": round(torch_t["p50_ms"] / onnx_t["p50_ms"], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifacts", nargs="*", help="BC artifact directories (default: every BC artifact in policies/pretrained/)")
    ap.add_argument("--calls", type=int, default=500, help="timed calls per measurement")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    args = ap.parse_args()
    from policies.artifact import load_artifact

    shipped = sorted(p.parent for p in (ROOT / "policies" / "pretrained").glob("*/policy.yaml"))
    dirs = [Path(a) for a in args.artifacts] or [d for d in shipped if load_artifact(d, check_graph=False).kind == "bc"]
    if not dirs:
        raise SystemExit("no BC artifacts found under policies/pretrained/ (pass directories)")
    for d in dirs:
        kind = load_artifact(d, check_graph=False).kind
        if kind != "bc":
            raise SystemExit(f"{d}: a {kind!r} artifact; this benchmark times BC artifacts (the BCNet architecture)")
    results = [bench_artifact(d.resolve(), args.calls, args.warmup) for d in dirs]
    print(json.dumps({"bench": "inference_latency", "threads": 1, "batch": 1, "results": results, "machine": machine("numpy", "torch", "onnxruntime", "onnx")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
