"""Demonstration dataset: bags -> episodes -> batches of (frame history, proprio, state, action targets).

Shapes (B batch, F frame history = 3, H x W image, P proprio, S state, A action,
K horizons):

- `frames`: float32 (B, F, H, W) depth in [0, 1], or uint8 (B, F, H, W, 3) RGB,
  oldest first, exactly the `depth` / `rgb` observation the task served
  (the first frame of an episode is repeated until F frames exist)
- `proprio` (B, P), `state` (B, S), `action` (B, A): float32 at step t
- `targets`: float32 (B, K, A), the actions at t + h for h in `horizons`
  (0, 10, 20, 30 as in RRLfD), repeating the episode's last action past its end
- `episode`, `t`: int64 (B,), where the sample comes from

Memory stays bounded however many bags are loaded: camera frames go once into a
per-bag cache file (`<bag>/.rrl_cache/frames-<key>-<dtype>.npy`, float16 depth
or uint8 RGB by default) that is memory-mapped read-only; only the small vectors
live in RAM (200 episodes x 150 steps of a 240 x 240 depth camera: 3.5 GB of
float16 on disk, a few MB in memory). The cache key hashes `metadata.yaml` and each episode
file's size and modification time, so a re-recorded, reindexed or repaired bag gets a fresh cache.

An episode that cannot be read (`BagError`: missing, truncated, a corrupt chunk) is skipped with a
`BagWarning` naming it and why; the others are kept (`DemoDataset.skipped` lists what went).

Train/validation split is by episode (never by step, so no validation step has
its neighbours in training), deterministic in `split_seed`. Normalisation
statistics (`stats`, `policies.artifact.FieldStats`, the class every trainer and
the runtime share) come from the training episodes only.

Pure numpy; BC training wraps `DemoDataset.batch(split, indices)` in a torch
Dataset.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from policies.artifact import FieldStats
from training.demos import schema
from training.demos.bag import BagError, BagInfo, EpisodeRecord, iter_messages, read_info
from training.demos.schema import BagSpec


class BagWarning(UserWarning):
    """An episode of a bag was skipped because it cannot be read; the message names it and why."""


@dataclass(frozen=True)
class DatasetConfig:
    """How bags are turned into training samples."""

    history: int = 3
    """Frames stacked per observation (RRLfD uses 3); must not exceed the bag's camera history."""
    horizons: tuple[int, ...] = (0, 10, 20, 30)
    """Action targets at t + h, in control steps (RRLfD: t, t+10, t+20, t+30)."""
    val_fraction: float = 0.05
    """Fraction of episodes held out for validation (at least one when there are two or more)."""
    split_seed: int = 0
    """Seed of the episode permutation that picks the validation episodes."""
    frame_dtype: str = "float16"
    """Storage dtype of cached depth frames: `float16` (half the disk) or `float32` (bit-exact). RGB is uint8."""
    include_failures: bool = False
    """Also load episodes recorded as failures (`rrl record --keep failures`)."""
    cache_dir: str | None = None
    """Where frame caches go; None: `<bag>/.rrl_cache`, or a user cache dir if the bag is read-only."""

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ValueError(f"history must be >= 1, got {self.history}")
        if not self.horizons or any(h < 0 for h in self.horizons):
            raise ValueError(f"horizons must be non-negative steps, got {self.horizons}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.frame_dtype not in ("float16", "float32"):
            raise ValueError(f"frame_dtype must be float16 or float32, got {self.frame_dtype!r}")


@dataclass
class Episode:
    """One demonstration episode of T actions and T + 1 observations (T without the terminal one)."""

    bag: Path
    record: EpisodeRecord
    proprio: np.ndarray
    """float32 (O, P), O = T + 1 observations (T when `record.terminal_observation` is False)."""
    state: np.ndarray
    """float32 (O, S)."""
    joint_pos_rad: np.ndarray
    """float64 (O, J)."""
    action: np.ndarray
    """float32 (T, A)."""
    stamps_ns: np.ndarray
    """int64 (O,) log times of the observations."""
    frames: np.ndarray | None
    """(O, H, W) depth or (O, H, W, 3) RGB: a read-only memory map into the bag's frame cache; None without a camera."""

    @property
    def steps(self) -> int:
        return int(self.action.shape[0])

    @property
    def name(self) -> str:
        return f"{self.bag}/{self.record.file}"


class DemoDataset:
    """Episodes of one or many demonstration bags with the same spec, split by episode into train / val."""

    def __init__(self, paths: str | Path | Sequence[str | Path], config: DatasetConfig = DatasetConfig(),
                 progress: bool = False):
        self.config = config
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        if not paths:
            raise ValueError("no bags given")
        infos = [read_info(p) for p in paths]
        self.spec = _common_spec(infos)
        if self.spec.camera is not None and config.history > self.spec.history:
            raise ValueError(f"history {config.history} exceeds the bags' camera history {self.spec.history}")
        self.bags = [info.path for info in infos]
        self.episodes: list[Episode] = []
        self.skipped: list[tuple[Path, str]] = []
        """(episode file, why) of every episode skipped as unreadable."""
        for info in infos:
            self.episodes.extend(_load_bag(info, config, progress, self.skipped))
        if not self.episodes:
            unreadable = f"; skipped as unreadable: {[reason for _, reason in self.skipped]}" if self.skipped else ""
            raise ValueError(f"no {'' if config.include_failures else 'successful '}episodes with steps in {self.bags}"
                             + unreadable)
        n = len(self.episodes)
        n_val = 0 if config.val_fraction == 0 or n < 2 else max(1, int(round(config.val_fraction * n)))
        order = np.random.default_rng(config.split_seed).permutation(n)
        self.split_episodes: dict[str, np.ndarray] = {"val": np.sort(order[:n_val]), "train": np.sort(order[n_val:])}
        self._index = {split: self._step_index(eps) for split, eps in self.split_episodes.items()}
        train = [self.episodes[i] for i in self.split_episodes["train"]]
        # the artifact's convention (FieldStats.of): constant dimensions std 1, binary action fields mean 0 std 1
        binary = np.array([label in self.spec.binary_action_labels for label in self.spec.action_labels], dtype=bool)
        self.stats: dict[str, FieldStats] = {
            "action": FieldStats.of(np.concatenate([e.action for e in train]), binary_mask=binary),
            "proprio": FieldStats.of(np.concatenate([e.proprio[:e.steps] for e in train])),
            "state": FieldStats.of(np.concatenate([e.state[:e.steps] for e in train])),
        }

    def _step_index(self, episode_ids: np.ndarray) -> np.ndarray:
        """(N, 2) int64 rows (episode, t) over every action step of the given episodes."""
        parts = [np.stack([np.full(self.episodes[i].steps, i), np.arange(self.episodes[i].steps)], axis=1)
                 for i in episode_ids]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)

    def __len__(self) -> int:
        return len(self._index["train"])

    def size(self, split: str) -> int:
        """Number of samples (action steps) in `train` or `val`."""
        return len(self._split(split))

    def _split(self, split: str) -> np.ndarray:
        if split not in self._index:
            raise KeyError(f"split must be 'train' or 'val', got {split!r}")
        return self._index[split]

    def batch(self, split: str, indices: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """Samples `indices` (positions in the split's step index) as one batch of numpy arrays."""
        rows = self._split(split)[np.asarray(indices, dtype=np.int64)]
        return self.samples(rows[:, 0], rows[:, 1])

    def samples(self, episode: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Batch for explicit (episode, step) pairs; see the module docstring for the shapes."""
        episode = np.asarray(episode, dtype=np.int64)
        t = np.asarray(t, dtype=np.int64)
        horizons = np.asarray(self.config.horizons, dtype=np.int64)
        out: dict[str, list[np.ndarray]] = {"proprio": [], "state": [], "action": [], "targets": []}
        if self.spec.camera is not None:
            out["frames"] = []
        back = np.arange(self.config.history - 1, -1, -1)
        for e, k in zip(episode, t):
            ep = self.episodes[e]
            if not 0 <= k < ep.steps:
                raise IndexError(f"step {k} outside episode {e} ({ep.steps} steps)")
            out["proprio"].append(ep.proprio[k])
            out["state"].append(ep.state[k])
            out["action"].append(ep.action[k])
            out["targets"].append(ep.action[np.minimum(k + horizons, ep.steps - 1)])
            if ep.frames is not None:
                out["frames"].append(ep.frames[np.maximum(k - back, 0)])
        batch = {key: np.stack(values) if values else np.zeros((0,)) for key, values in out.items()}
        for key in ("proprio", "state", "action", "targets"):
            batch[key] = batch[key].astype(np.float32, copy=False)
        if "frames" in batch and self.spec.camera == "depth":
            batch["frames"] = batch["frames"].astype(np.float32)
        batch["episode"], batch["t"] = episode, t
        return batch

    def batches(self, split: str, batch_size: int, seed: int | None = 0, drop_last: bool = False
                ) -> Iterator[dict[str, np.ndarray]]:
        """One pass over a split in batches; shuffled with `seed`, in order when `seed` is None."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = self.size(split)
        order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.batch(split, order[start:start + batch_size])


def _common_spec(infos: list[BagInfo]) -> BagSpec:
    first = infos[0]
    for info in infos[1:]:
        diff = first.spec.differences(info.spec)
        if diff:
            raise ValueError(f"bags {first.path} and {info.path} have different specs and cannot be mixed: "
                             + "; ".join(diff))
    return first.spec


def _cache_path(info: BagInfo, config: DatasetConfig) -> Path:
    h = hashlib.sha256((info.path / "metadata.yaml").read_bytes())
    for e in info.episodes:  # a file replaced under the same metadata (repaired, re-copied) gets a fresh cache
        try:
            st = (info.path / e.file).stat()
            h.update(f"{e.file}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{e.file}:missing;".encode())
    key = h.hexdigest()[:16]
    dtype = "uint8" if info.spec.camera == "rgb" else config.frame_dtype
    name = f"frames-{key}-{dtype}.npy"
    if config.cache_dir is not None:
        return Path(config.cache_dir) / hashlib.sha256(str(info.path.resolve()).encode()).hexdigest()[:16] / name
    local = info.path / ".rrl_cache"
    if os.access(info.path, os.W_OK):
        return local / name
    user = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rrl" / "demos"
    return user / hashlib.sha256(str(info.path.resolve()).encode()).hexdigest()[:16] / name


def _load_bag(info: BagInfo, config: DatasetConfig, progress: bool,
              skipped: list[tuple[Path, str]] | None = None) -> list[Episode]:
    """Read the vectors of every selected episode; build (or reuse) the frame cache and map it.

    An unreadable episode is skipped (warned, appended to `skipped`); the cache keeps its slot
    (zeros when it is built now) so every episode's frames stay at the same offset."""
    selected = [e for e in info.episodes if (e.success or config.include_failures) and e.steps > 0]
    spec = info.spec
    image_topic = {"depth": schema.DEPTH_TOPIC, "rgb": schema.RGB_TOPIC}.get(spec.camera or "")
    frames_map = None
    cache = None
    if image_topic is not None:
        h, w = spec.image_hw
        shape = (sum(e.observations for e in selected), h, w) + ((3,) if spec.camera == "rgb" else ())
        dtype = np.dtype(np.uint8) if spec.camera == "rgb" else np.dtype(config.frame_dtype)
        cache = _cache_path(info, config)
        if cache.exists():
            try:
                frames_map = np.load(cache, mmap_mode="r")
                if frames_map.shape != shape or frames_map.dtype != dtype:
                    frames_map = None
            except (ValueError, OSError):
                frames_map = None
    need_frames = image_topic is not None and frames_map is None
    writer = None
    if need_frames:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=cache.parent, suffix=".npy.tmp")
        # plain appending writes (not a writable memmap) so the cache being built never sits in our RSS
        writer = os.fdopen(fd, "wb")
        np.lib.format.write_array_header_1_0(writer, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                      "fortran_order": False, "shape": shape})
    episodes, offsets = [], []
    offset = 0
    iterator = selected
    if progress:
        from tqdm import tqdm
        iterator = tqdm(selected, desc=f"reading {info.path.name}", unit="ep", leave=False)
    try:
        for record in iterator:
            n_obs = record.observations
            try:
                vectors, frames = _read_episode(info, record, image_topic if need_frames else None)
            except BagError as e:
                warnings.warn(f"skipping episode {record.index} ({record.file}) of {info.path}, keeping the others: {e}",
                              BagWarning, stacklevel=3)
                if skipped is not None:
                    skipped.append((info.path / record.file, str(e)))
                if writer is not None:
                    writer.write(np.zeros((n_obs, *shape[1:]), dtype).tobytes())
                offset += n_obs
                continue
            if writer is not None:
                writer.write(np.ascontiguousarray(np.stack(frames), dtype=dtype).tobytes())
            episodes.append(Episode(bag=info.path, record=record, frames=None, **vectors))
            offsets.append(offset)
            offset += n_obs
        if writer is not None:
            writer.close()
            os.replace(tmp_name, cache)
            frames_map = np.load(cache, mmap_mode="r")
    finally:
        if writer is not None and not writer.closed:
            writer.close()
        if need_frames and os.path.exists(tmp_name):
            os.unlink(tmp_name)
    if frames_map is not None:
        _advise_random(frames_map)
        for ep, offset in zip(episodes, offsets):
            ep.frames = frames_map[offset:offset + ep.record.observations]
    return episodes


def _advise_random(array: np.ndarray) -> None:
    """Batches read frames at random: tell the kernel not to read ahead (fewer pages pulled in per sample)."""
    import mmap

    raw = getattr(array, "_mmap", None)
    if raw is not None and hasattr(mmap, "MADV_RANDOM"):
        try:
            raw.madvise(mmap.MADV_RANDOM)
        except (OSError, ValueError):
            pass


def _read_episode(info: BagInfo, record: EpisodeRecord, image_topic: str | None
                  ) -> tuple[dict[str, np.ndarray], list[np.ndarray] | None]:
    """Vectors of one episode (and its frames if `image_topic`), with step alignment checked."""
    spec = info.spec
    where = f"{info.path / record.file}"
    by_topic: dict[str, list[tuple[int, object]]] = {t: [] for t in
                                                     (schema.PROPRIO_TOPIC, schema.STATE_TOPIC, schema.JOINTS_TOPIC,
                                                      schema.ACTION_TOPIC)}
    if image_topic:
        by_topic[image_topic] = []
    for topic, time_ns, msg in iter_messages(info.path, record):
        if topic in by_topic:
            by_topic[topic].append((time_ns, msg))
    n_obs = record.observations
    for topic, msgs in by_topic.items():
        expected = record.steps if topic == schema.ACTION_TOPIC else n_obs
        if len(msgs) != expected:
            raise BagError(f"{where}: {len(msgs)} messages on {topic}, expected {expected} for {record.steps} steps")
    stamps = np.array([t for t, _ in by_topic[schema.PROPRIO_TOPIC]], dtype=np.int64)
    for topic, msgs in by_topic.items():
        got = np.array([t for t, _ in msgs], dtype=np.int64)
        if not np.array_equal(got, stamps[:len(got)]):
            raise BagError(f"{where}: {topic} time stamps are not aligned with {schema.PROPRIO_TOPIC}")

    def vectors(topic: str, labels: tuple[str, ...]) -> np.ndarray:
        msgs = by_topic[topic]
        found = schema.labels_of(msgs[0][1]) if msgs else list(labels)
        if tuple(found) != labels:
            raise BagError(f"{where}: {topic} labels {found} differ from the bag spec {list(labels)}")
        return np.stack([np.asarray(m.data, dtype=np.float32) for _, m in msgs]) if msgs else \
            np.zeros((0, len(labels)), np.float32)

    out = {
        "proprio": vectors(schema.PROPRIO_TOPIC, spec.proprio_labels),
        "state": vectors(schema.STATE_TOPIC, spec.state_labels),
        "action": vectors(schema.ACTION_TOPIC, spec.action_labels),
        "joint_pos_rad": np.stack([np.asarray(m.position, dtype=np.float64) for _, m in by_topic[schema.JOINTS_TOPIC]]),
        "stamps_ns": stamps,
    }
    frames = None
    if image_topic:
        frames = [schema.image_array(m) for _, m in by_topic[image_topic]]
        if frames and frames[0].shape[:2] != tuple(spec.image_hw):
            raise BagError(f"{where}: frames are {frames[0].shape[:2]}, the bag spec says {spec.image_hw}")
    return out, frames
