"""Training throughput on the harness: frames/s and updates/s of DMPO and REQ by device and rollout workers,
rollout-only throughput of the Ray workers, and the DMPO learner's update next to a bare matmul chain.

    nice .venv/bin/python bench/train_throughput.py [--algos dmpo req] [--device cpu [cuda ...]]
        [--workers 0 1 2] [--frames 2000] [--max-wall-s 40] [--min-replay 300] [--rollout-episodes 6]
        [--rollout-repeats 1] [--updates 30] [--skip rollout|learner|training ...]

Three measurements, each short (the defaults take 6-8 minutes on this shared 2-core machine):

- `rollout_only` (learner paused): exploring episodes of the DMPO residual on `bc_ur5_pick_state6`
  (`ur5_pick`, the BC base through ONNX Runtime, c = 0.33 as the shipped residual) with fixed
  weights (a fresh policy), in this process (`in_process`, what `--workers 0` collects with) and
  on a `training.workers.WorkerPool` of K Ray workers for every K > 0 in `--workers` (and K = 1,
  the reference of the ratio). Every worker plays the same episodes as the in-process run (equal
  work per worker) and always has one episode in flight; a worker's rate is
  its frames over the time from the first submit to its last finished episode, the pool's rate the
  sum. The workers' start-up (a process each, torch, PyBullet, the ONNX session) is timed apart
  (`start_s`). `ratio_to_1_worker` of K = 2 is the issue's target (>= 1.6 on 2 cores). The control
  `plain_processes` plays the same episodes in K plain OS processes without Ray: what the machine
  gives K processes at that moment (on a shared machine the ratio's ceiling; Ray's cost is the gap).
- `learner_update` (per device): `DMPOLearner.update` on batches of the real shapes (batch 256, the
  residual's input size, 4 action dims, N = 20 target samples, critic 3x512, policy 3x256), in
  blocks alternating with a bare matmul chain of the same shapes: every Linear of the update's
  forward passes (target critic on N x B rows, online critic, target and online policy on B rows)
  and the backward matmuls of the online networks (dW for every layer, dX beyond the first), as
  plain `torch.mm` calls on preallocated tensors, same process, same threads. `matmul_fraction` =
  chain time / update time: the share of the update that is bare matrix work at this machine's
  own matmul speed (the rest: layer norm, activations, softmax, losses, Adam, clipping, transfers).
- `training` (per device, algorithm and worker count): a short run through the trainer itself
  (`training.dmpo.train.train` / `training.req.train.train` with `RunOptions(device, workers,
  max_wall_s)`) in a temporary run directory. `frames_per_s`/`updates_per_s` are the harness's own
  summary over the whole call (the workers' start-up, the evaluations and the learning-free first
  `--min-replay` frames included); `steady_frames_per_s` is measured from the first finished
  episode to the last, `learning_frames_per_s`/`learning_updates_per_s` from the first episode
  end after learning started, both from the loop's own TensorBoard speed scalars. DMPO runs the residual above with the library's defaults
  except `min_replay` (so that most of a short run learns) and no periodic evaluation (the loop's
  evaluations at frame 0 and the end are a no-op: evaluation is not training throughput). REQ runs
  the bowl residual config (`training/req/configs/ur5_bowl_no_retry_residual.yaml`, `--mode
  rlfse`) with `min_replay_steps` likewise shortened and one held-out episode per evaluation (its
  minimum; at frame 0 and at the end).

Ray is started once for the whole bench (as `WorkerPool` starts a local one, or joined at
RAY_ADDRESS), its start time reported under `ray`: every pool and run pays for its own workers,
not for Ray. Every measurement records the load average before and after it (the machine may be
shared; run the bench under `nice`). `--device cuda` where torch sees no CUDA device records
`{"available": false, "reason": ...}` for it and measures the other devices. Prints ONE JSON
object, with a machine record.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import machine

ROOT = Path(__file__).resolve().parents[1]
TASK = "ur5_pick"
BASE = ROOT / "policies" / "pretrained" / "bc_ur5_pick_state6"
RESIDUAL_SCALE = 0.33
"""c of the shipped residual (`rrl train residual ... --residual-scale 0.33 --init-std 0.33`)."""
INIT_STD = 0.33
REQ_CONFIG = ROOT / "training" / "req" / "configs" / "ur5_bowl_no_retry_residual.yaml"
REQ_TASK = "ur5_bowl"
TARGET_RATIO_2_WORKERS = 1.6
"""The issue's target: 2 rollout workers on 2 cores give >= 1.6x one worker (learner paused)."""


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- the DMPO residual task, built the way `training.dmpo.run_residual` builds it ---------------------------


def make_residual_env(task_name: str, base_dir: str, stats: dict, residual_scale: float):
    """A `ResidualEnv` on `task_name` with the frozen base `base_dir` (module-level: picklable for workers)."""
    from policies.runtime import camera_for_artifacts, load_base
    from sim_bridge import make_task
    from training.dmpo.residual import ResidualEnv, ResidualSpace, input_sources
    from training.seeds import STATS_SEED_BASE

    task = make_task(task_name, camera=camera_for_artifacts(base_dir))
    base = load_base(base_dir, task.spec)
    space = ResidualSpace(task.spec, input_sources(base, "residual"), stats, residual_scale=residual_scale)
    env = ResidualEnv(task, base, space)
    env.reset(STATS_SEED_BASE)  # the input size is known after a reset
    return env


def residual_env_factory() -> functools.partial:
    """The factory of the bench's residual env, with normalisation statistics from one base-only episode
    (a BC base brings its own action/proprio statistics; one episode is enough for the rest)."""
    from policies.runtime import load_base
    from sim_bridge import make_task
    from training.dmpo.residual import base_statistics

    task = make_task(TASK)
    try:
        stats, _ = base_statistics(task, load_base(str(BASE), task.spec), episodes=1)
    finally:
        task.close()
    return functools.partial(make_residual_env, TASK, str(BASE), stats, RESIDUAL_SCALE)


def dmpo_config(frames: int, min_replay: int, seed: int = 0):
    from training.dmpo.learner import DMPOConfig
    from training.dmpo.train import TrainConfig

    return TrainConfig(frames=frames, min_replay=min_replay, replay_capacity=frames + 1000, eval_every_frames=10 * frames,
                       checkpoint_every_frames=10 * frames, seed=seed, learner=DMPOConfig(init_std=INIT_STD))


def no_evaluation(act) -> dict:
    """The training runs' evaluation: none (the loop still calls it at frame 0 and at the end)."""
    return {"success_rate": float("nan"), "episodes": 0, "mean_steps_success": None}


# --- rollout only --------------------------------------------------------------------------------------------


def rollout_in_process(env_factory, policy, episodes: int, seed: int) -> dict:
    """`episodes` exploring episodes in this process, transitions into `EpisodeBuffer`s (as a worker does)."""
    import copy

    from training.dmpo.train import make_remote_actor
    from training.rollout import EpisodeBuffer, run_episode
    from training.seeds import training_episode_seed

    env = env_factory()
    actor = make_remote_actor(copy.deepcopy(policy), seed)
    before = load()
    frames, t0 = 0, time.perf_counter()
    for i in range(episodes):
        buffer = EpisodeBuffer(seed=training_episode_seed(seed, i), index=i)
        frames += run_episode(env, actor, buffer.seed, buffer, index=i).steps
    elapsed = time.perf_counter() - t0
    env.task.close()
    return {"frames": frames, "episodes": episodes, "wall_s": round(elapsed, 2), "frames_per_s": round(frames / elapsed, 1),
            "load_avg_before": before, "load_avg_after": load()}


def rollout_pool(env_factory, policy, workers: int, episodes_per_worker: int, seed: int) -> dict:
    """K Ray workers, each kept busy with one episode in flight, until each has finished `episodes_per_worker`:
    the episodes `rollout_in_process` plays (same seeds, same noise streams), on every worker."""
    from training.dmpo.train import make_remote_actor
    from training.seeds import training_episode_seed
    from training.workers import WorkerPool

    before = load()
    t_start = time.perf_counter()
    pool = WorkerPool(env_factory, functools.partial(make_remote_actor, policy, seed), workers)
    try:
        pool.worker_pids()  # every worker has built its simulator, base and actor
        start_s = time.perf_counter() - t_start
        pool.broadcast(policy.state_dict())
        frames, done = [0] * workers, [0] * workers
        last = [0.0] * workers
        t0 = time.perf_counter()
        for w in range(workers):  # every worker plays the same episodes (equal work: rates compare)
            pool.submit(w, training_episode_seed(seed, 0), 0)
        while pool.in_flight:
            buffer, w, _ = pool.next_episode()
            now = time.perf_counter()
            frames[w] += len(buffer)
            done[w] += 1
            last[w] = now - t0
            if done[w] < episodes_per_worker:
                pool.submit(w, training_episode_seed(seed, done[w]), done[w])
        per_worker = [f / t for f, t in zip(frames, last)]
        restarts = pool.restarts
    finally:
        pool.close()
    return {"workers": workers, "frames": sum(frames), "episodes": sum(done), "start_s": round(start_s, 2),
            "wall_s": round(max(last), 2), "frames_per_s": round(sum(per_worker), 1),
            "frames_per_s_per_worker": [round(r, 1) for r in per_worker],
            "frames_per_s_wall": round(sum(frames) / max(last), 1), "restarts": restarts,
            "load_avg_before": before, "load_avg_after": load()}


def _plain_process_rollout(args: tuple) -> float:
    env_factory, policy, episodes, seed = args
    import torch

    torch.set_num_threads(1)
    return rollout_in_process(env_factory, policy, episodes, seed)["frames_per_s"]


def rollout_plain_processes(env_factory, policy, processes: int, episodes: int, seed: int) -> dict:
    """The control: the in-process episodes in `processes` plain OS processes at once, no Ray (what the machine
    gives that many processes at this moment; rates measured inside each, start-up not counted)."""
    import multiprocessing

    before = load()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        rates = pool.map(_plain_process_rollout, [(env_factory, policy, episodes, seed)] * processes)
    return {"processes": processes, "frames_per_s": round(sum(rates), 1), "frames_per_s_per_process": rates,
            "load_avg_before": before, "load_avg_after": load()}


def rollout_only(env_factory, obs_dim: int, action_dim: int, worker_counts: list[int], episodes: int, repeats: int) -> dict:
    from training.dmpo.train import make_agent

    policy = make_agent(obs_dim, action_dim, dmpo_config(1000, 1000)).cpu_policy()
    counts = sorted({1, *[k for k in worker_counts if k > 0]})
    out: dict = {"episodes_per_worker": episodes, "in_process": [], "pools": [], "plain_processes": []}
    for r in range(repeats):
        out["in_process"].append(rollout_in_process(env_factory, policy, episodes, seed=r))
        print(f"rollout in process: {out['in_process'][-1]['frames_per_s']} frames/s", file=sys.stderr)
        rows = {}
        for k in counts:
            rows[k] = rollout_pool(env_factory, policy, k, episodes, seed=r)
            rows[k]["ratio_to_1_worker"] = round(rows[k]["frames_per_s"] / max(rows.get(1, rows[k])["frames_per_s"], 1e-9), 2)
            print(f"rollout {k} workers: {rows[k]['frames_per_s']} frames/s (x{rows[k]['ratio_to_1_worker']}), "
                  f"load {rows[k]['load_avg_after']}", file=sys.stderr)
        out["pools"].append(list(rows.values()))
        controls = {k: rollout_plain_processes(env_factory, policy, k, episodes, seed=r) for k in counts}
        for k, row in controls.items():
            row["ratio_to_1_process"] = round(row["frames_per_s"] / max(controls[1]["frames_per_s"], 1e-9), 2)
            print(f"control, {k} plain processes: {row['frames_per_s']} frames/s (x{row['ratio_to_1_process']})", file=sys.stderr)
        out["plain_processes"].append(list(controls.values()))
    if 2 in counts:
        ratios = [next(row["ratio_to_1_worker"] for row in rows if row["workers"] == 2) for rows in out["pools"]]
        out["ratio_2_to_1_worker"] = round(float(np.median(ratios)), 2)
        out["target_ratio_2_to_1_worker"] = TARGET_RATIO_2_WORKERS
        out["meets_target"] = bool(out["ratio_2_to_1_worker"] >= TARGET_RATIO_2_WORKERS)
        out["control_ratio_2_to_1_process"] = round(float(np.median(
            [next(row["ratio_to_1_process"] for row in rows if row["processes"] == 2) for rows in out["plain_processes"]])), 2)
    return out


# --- learner update vs bare matmul ---------------------------------------------------------------------------


def linear_shapes(module) -> list[tuple[int, int]]:
    import torch

    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)]


def update_matmuls(learner, batch_size: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of every matmul an update does in its Linear layers (see the module docstring)."""
    n = learner.config.num_samples
    critic, policy = linear_shapes(learner.critic), linear_shapes(learner.policy)
    mms = [(n * batch_size, i, o) for i, o in critic]  # target critic on the N sampled actions
    mms += [(batch_size, i, o) for i, o in policy]  # target policy at o_{t+m}
    for rows, layers in ((batch_size, critic), (batch_size, policy)):  # online critic, online policy
        for j, (i, o) in enumerate(layers):
            mms.append((rows, i, o))  # forward
            mms.append((o, rows, i))  # dW = dY^T X
            if j > 0:  # the input needs no gradient; the policy's two heads both read the torso's output
                mms.append((rows, o, i))  # dX = dY W
    return mms


def learner_update(obs_dim: int, action_dim: int, device: str, updates: int, block: int = 5) -> dict:
    import torch

    from training.dmpo.learner import Batch
    from training.dmpo.train import make_agent

    config = dmpo_config(1000, 1000)
    learner = make_agent(obs_dim, action_dim, config, device=device)
    dev = learner.device
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    b = config.batch_size
    g = torch.Generator().manual_seed(0)
    batches = [Batch(obs=torch.randn(b, obs_dim, generator=g), action=torch.randn(b, action_dim, generator=g),
                     reward=(torch.rand(b, generator=g) < 0.1).float(), discount=torch.full((b,), config.gamma ** config.n_step),
                     next_obs=torch.randn(b, obs_dim, generator=g)) for _ in range(4)]  # CPU, as the loop hands them over
    mms = update_matmuls(learner, b)
    operands = [(torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)) for m, k, n in mms]
    flops = sum(2 * m * k * n for m, k, n in mms)

    def chain() -> None:
        for x, w in operands:
            torch.mm(x, w)

    for i in range(3):  # warm-up (allocator, kernels)
        learner.update(batches[i % len(batches)])
        chain()
    sync()
    update_s = chain_s = 0.0
    done = 0
    before = load()
    while done < updates:
        t0 = time.perf_counter()
        for i in range(block):
            learner.update(batches[(done + i) % len(batches)])
        sync()
        t1 = time.perf_counter()
        for _ in range(block):
            chain()
        sync()
        update_s += t1 - t0
        chain_s += time.perf_counter() - t1
        done += block
    return {"device": str(dev), "updates": done, "batch_size": b, "obs_dim": obs_dim, "action_dim": action_dim,
            "num_samples": learner.config.num_samples, "critic_hidden": list(learner.config.critic_hidden),
            "policy_hidden": list(learner.config.policy_hidden), "torch_threads": torch.get_num_threads(),
            "update_ms": round(1e3 * update_s / done, 2), "updates_per_s": round(done / update_s, 2),
            "matmul_chain_ms": round(1e3 * chain_s / done, 2), "matmuls_per_update": len(mms),
            "matmul_gflop_per_update": round(flops / 1e9, 3),
            "matmul_gflop_per_s": round(flops * done / chain_s / 1e9, 2),
            "update_gflop_per_s": round(flops * done / update_s / 1e9, 2),
            "matmul_fraction": round(chain_s / update_s, 3),
            "load_avg_before": before, "load_avg_after": load()}


# --- training runs -------------------------------------------------------------------------------------------


SUMMARY_KEYS = ("frames", "episodes", "updates", "wall_s", "finished", "workers", "worker_restarts", "frames_per_s",
                "updates_per_s", "device")


def steady_rates(tb_dir: Path) -> dict:
    """frames/s from the run's first finished training episode to its last (`steady_*`: with workers this
    leaves out the workers' start-up), and frames/s and updates/s from the first episode end after learning
    started (`learning_*`), from the loop's own TensorBoard scalars (`speed/frames_per_s` and
    `speed/updates_per_s`, logged per episode as averages since the call started)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if "speed/frames_per_s" not in tags or "speed/updates_per_s" not in tags:
        return {"steady_episodes": 0}
    fps, ups = acc.Scalars("speed/frames_per_s"), acc.Scalars("speed/updates_per_s")
    points = []  # (elapsed s, frames, updates) at each episode end: elapsed = frames / fps, updates = ups * elapsed
    for f, u in zip(fps, ups):
        if f.value > 0:
            elapsed = f.step / f.value
            points.append((elapsed, f.step, u.value * elapsed))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return {"steady_episodes": len(points)}
    (t0, f0, _), (t1, f1, _) = points[0], points[-1]
    out = {"steady_episodes": len(points) - 1, "steady_from_s": round(t0, 1),
           "steady_frames_per_s": round((f1 - f0) / (t1 - t0), 2)}
    learning = [p for p in points if p[2] > 0]  # from the first episode end after learning started
    if len(learning) >= 2 and learning[-1][0] > learning[0][0]:
        (t0, f0, u0), (t1, f1, u1) = learning[0], learning[-1]
        out.update(learning_episodes=len(learning) - 1, learning_from_s=round(t0, 1),
                   learning_frames_per_s=round((f1 - f0) / (t1 - t0), 2),
                   learning_updates_per_s=round((u1 - u0) / (t1 - t0), 2))
    return out


def dmpo_training(env_factory, device: str, workers: int, frames: int, min_replay: int, max_wall_s: float) -> dict:
    from training.dmpo.train import train
    from training.harness import RunOptions

    env = env_factory()
    obs_dim = env.observation_dim
    before = load()
    with tempfile.TemporaryDirectory(prefix="train_throughput_dmpo_") as out:
        learner = train(env, no_evaluation, dmpo_config(frames, min_replay), out, np.zeros(obs_dim), np.ones(obs_dim),
                        progress=False, env_factory=env_factory,
                        options=RunOptions(device=device, workers=workers, progress=False, max_wall_s=max_wall_s))
        steady = steady_rates(Path(out) / "tb")
    env.task.close()
    summary = learner.result.summary()
    return {**{k: summary[k] for k in SUMMARY_KEYS}, **steady, "load_avg_before": before, "load_avg_after": load()}


def req_config(frames: int, min_replay: int):
    import yaml

    from training.req.train import TrainConfig

    d = yaml.safe_load(REQ_CONFIG.read_text())
    d.update(task=REQ_TASK, mode="rlfse", frames=frames, min_replay_steps=min_replay, eval_every_frames=10 * frames,
             eval_episodes=1, checkpoint_every_frames=10 * frames, replay_capacity=frames + 1000)
    return TrainConfig.from_dict(d)


def req_training(device: str, workers: int, frames: int, min_replay: int, max_wall_s: float) -> dict:
    from training.harness import RunOptions
    from training.req.train import train

    before = load()
    with tempfile.TemporaryDirectory(prefix="train_throughput_req_") as out:
        summary = train(req_config(frames, min_replay), out,
                        options=RunOptions(device=device, workers=workers, progress=False, max_wall_s=max_wall_s))
        steady = steady_rates(Path(out) / "tb")
    return {**{k: summary.get(k) for k in SUMMARY_KEYS}, **steady, "load_avg_before": before, "load_avg_after": load()}


# --- main ----------------------------------------------------------------------------------------------------


def start_ray(max_workers: int) -> dict:
    """One Ray for the whole bench, started the way `training.workers.WorkerPool` starts a local one (the
    project on PYTHONPATH, one thread per worker) or joined at RAY_ADDRESS: every pool and training run then
    pays for its own workers' start-up, not for Ray's (a cluster's Ray is running already)."""
    import ray

    address = os.environ.get("RAY_ADDRESS") or None
    env_vars = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=True,
             runtime_env={"env_vars": env_vars}, **({} if address else {"num_cpus": max(max_workers, 1)}))
    return {"address": address or "local", "start_s": round(time.perf_counter() - t0, 2),
            "cpus": ray.cluster_resources().get("CPU")}



def device_availability(device: str) -> dict:
    from training.device import DeviceError, describe, resolve_device

    try:
        resolved = resolve_device(device)
    except DeviceError as e:
        return {"available": False, "reason": str(e)}
    return {"available": True, "resolved": describe(resolved)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", choices=("dmpo", "req"), default=["dmpo", "req"], help="trainers to run")
    parser.add_argument("--device", nargs="+", default=["cpu"], help="devices (auto, cpu, cuda, cuda:N)")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="rollout worker counts (0: single process)")
    parser.add_argument("--frames", type=int, default=2000, help="frame budget of each training run")
    parser.add_argument("--max-wall-s", type=float, default=40.0, help="wall-clock budget of each training run, s")
    parser.add_argument("--min-replay", type=int, default=300, help="stored steps before learning starts (both trainers)")
    parser.add_argument("--rollout-episodes", type=int, default=6, help="rollout-only episodes per worker (and in process)")
    parser.add_argument("--rollout-repeats", type=int, default=1, help="rollout-only measurements (ratio: the median)")
    parser.add_argument("--updates", type=int, default=30, help="timed learner updates (and as many matmul chains)")
    parser.add_argument("--skip", nargs="*", choices=("rollout", "learner", "training"), default=[], help="parts to leave out")
    args = parser.parse_args(argv)
    if any(k < 0 for k in args.workers):
        parser.error(f"--workers must be >= 0, got {args.workers}")

    import torch

    torch.set_num_threads(dmpo_config(1000, 1000).torch_threads)
    env_factory = residual_env_factory()
    env = env_factory()
    obs_dim, action_dim = env.observation_dim, env.action_dim
    env.task.close()
    report: dict = {"benchmark": "train_throughput", "dmpo_task": {"task": TASK, "base": str(BASE.relative_to(ROOT)),
                    "residual_scale": RESIDUAL_SCALE, "obs_dim": obs_dim, "action_dim": action_dim},
                    "req_task": {"task": REQ_TASK, "config": str(REQ_CONFIG.relative_to(ROOT)), "mode": "rlfse"},
                    "settings": {k: v for k, v in vars(args).items()}}
    if max(args.workers) > 0:
        report["ray"] = start_ray(max(args.workers))
    if "rollout" not in args.skip:
        report["rollout_only"] = rollout_only(env_factory, obs_dim, action_dim, args.workers, args.rollout_episodes,
                                              args.rollout_repeats)
    report["devices"] = {}
    for device in args.device:
        row = report["devices"][device] = device_availability(device)
        if not row["available"]:
            print(f"{device}: not available ({row['reason']})", file=sys.stderr)
            continue
        if "learner" not in args.skip:
            row["dmpo_learner_update"] = learner_update(obs_dim, action_dim, device, args.updates)
            u = row["dmpo_learner_update"]
            print(f"{device} DMPO update {u['update_ms']} ms, matmul chain {u['matmul_chain_ms']} ms "
                  f"({u['matmul_fraction']:.0%})", file=sys.stderr)
        if "training" not in args.skip:
            for algo in args.algos:
                runs = row[f"{algo}_training"] = []
                for k in args.workers:
                    if algo == "dmpo":
                        runs.append(dmpo_training(env_factory, device, k, args.frames, args.min_replay, args.max_wall_s))
                    else:
                        runs.append(req_training(device, k, args.frames, args.min_replay, args.max_wall_s))
                    print(f"{device} {algo} workers {k}: {runs[-1]}", file=sys.stderr)
    if "ray" in report:
        import ray

        ray.shutdown()
    report["machine"] = machine("torch", "ray", "pybullet", "onnxruntime", "numpy")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
