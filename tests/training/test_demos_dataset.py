"""Dataset reader on small hand-made bags: multi-horizon targets, frame history, split, statistics, spec checks."""

import numpy as np
import pytest

from policies.artifact import FieldStats
from training.demos.bag import DemoBagWriter
from training.demos.dataset import DatasetConfig, DemoDataset
from training.demos.schema import BagSpec

SPEC = BagSpec(task="toy", action_labels=("v[0]", "v[1]", "gripper"), proprio_labels=("p",),
               state_labels=("p", "s"), joint_names=("j0",), camera="depth", image_hw=(8, 8), history=3,
               control_rate_hz=10.0, action_low=(-1.0, -1.0, 0.0), action_high=(1.0, 1.0, 1.0),
               binary_action_labels=("gripper",))


def write_bag(path, lengths, spec=SPEC, success=True, terminal=True):
    """Episode e, step t: action (t, 100 e + t, t % 2), proprio t, depth frame filled with e + t / 1000."""
    writer = DemoBagWriter(path, spec, source="test")
    now = 1_000_000_000
    for e, n in enumerate(lengths):
        writer.begin_episode(seed=e, time_ns=now)
        for t in range(n + int(terminal)):
            frame = np.full((3,) + spec.image_hw, e + t / 1000, np.float32)
            writer.write_observation(now, {"depth": frame, "proprio": [t], "state": [t, e], "joint_pos_rad": [0.1 * t]})
            if t < n:
                writer.write_action(now, [t, 100 * e + t, t % 2])
            now += 100_000_000
        writer.end_episode(now, success=success, terminal_observation=terminal)
        now += 1_000_000_000
    return path


def test_multi_horizon_targets_and_frame_history_match_a_hand_computation(tmp_path):
    ds = DemoDataset(write_bag(tmp_path / "b", [25]), DatasetConfig(val_fraction=0.0, frame_dtype="float32"))
    b = ds.samples(np.zeros(4, int), np.array([0, 1, 15, 24]))
    # horizons 0, 10, 20, 30 past the end repeat the last action (t = 24)
    np.testing.assert_array_equal(b["targets"][:, :, 0], [[0, 10, 20, 24], [1, 11, 21, 24],
                                                          [15, 24, 24, 24], [24, 24, 24, 24]])
    np.testing.assert_array_equal(b["targets"][:, 0], b["action"])
    # history of 3 frames, oldest first, the first frame repeated at the start
    np.testing.assert_allclose(b["frames"][:, :, 0, 0], [[0, 0, 0], [0, 0, 0.001], [0.013, 0.014, 0.015],
                                                         [0.022, 0.023, 0.024]], atol=1e-7)
    assert b["frames"].shape == (4, 3, 8, 8) and b["frames"].dtype == np.float32
    np.testing.assert_array_equal(b["proprio"][:, 0], [0, 1, 15, 24])
    assert b["targets"].shape == (4, 4, 3) and b["targets"].dtype == np.float32


def test_split_by_episode_is_deterministic_and_statistics_use_training_episodes(tmp_path):
    lengths = [5 + (i % 7) for i in range(40)]
    bag = write_bag(tmp_path / "b", lengths)
    ds = DemoDataset(bag)
    val, train = ds.split_episodes["val"], ds.split_episodes["train"]
    assert len(val) == 2 and len(train) == 38 and not set(val) & set(train)
    np.testing.assert_array_equal(DemoDataset(bag).split_episodes["val"], val)
    assert not np.array_equal(DemoDataset(bag, DatasetConfig(split_seed=1)).split_episodes["val"], val)
    assert ds.size("train") == sum(lengths[i] for i in train) and ds.size("val") == sum(lengths[i] for i in val)
    assert set(np.concatenate([b["episode"] for b in ds.batches("val", 4)])) == set(val)
    # statistics: per dimension over every training step, in the artifact's class and convention
    # (the binary gripper is not normalised: mean 0, std 1)
    actions = np.concatenate([[[t, 100 * e + t, t % 2] for t in range(lengths[e])] for e in train])
    stats = ds.stats["action"]
    assert isinstance(stats, FieldStats)
    np.testing.assert_allclose(stats.mean, list(actions.mean(0)[:2]) + [0.0], rtol=1e-6)
    np.testing.assert_allclose(stats.std, list(actions.std(0)[:2]) + [1.0], rtol=1e-6)
    np.testing.assert_allclose(stats.denormalise(stats.normalise(actions)), actions, rtol=1e-5, atol=1e-4)
    assert ds.stats["state"].std[1] > 0
    # every training step exactly once per pass
    seen = np.concatenate([b["episode"] * 1000 + b["t"] for b in ds.batches("train", 16, seed=3)])
    assert len(seen) == ds.size("train") == len(set(seen))


def test_many_bags_and_failure_filter(tmp_path):
    write_bag(tmp_path / "a", [4, 6])
    write_bag(tmp_path / "f", [3], success=False)
    ds = DemoDataset([tmp_path / "a", tmp_path / "f"], DatasetConfig(val_fraction=0.0))
    assert [e.steps for e in ds.episodes] == [4, 6]
    ds = DemoDataset([tmp_path / "a", tmp_path / "f"], DatasetConfig(val_fraction=0.0, include_failures=True))
    assert [e.steps for e in ds.episodes] == [4, 6, 3]
    # the frame cache is reused on the second load and stays a read-only memory map
    assert len(list((tmp_path / "a" / ".rrl_cache").glob("frames-*.npy"))) == 1
    with pytest.raises(ValueError):
        ds.episodes[0].frames[0, 0, 0] = 1.0


def test_refuses_bags_with_different_specs(tmp_path):
    import dataclasses

    write_bag(tmp_path / "a", [3])
    other = dataclasses.replace(SPEC, action_labels=("v[0]", "v[1]", "grip"))
    write_bag(tmp_path / "b", [3], spec=other)
    with pytest.raises(ValueError, match=r"bags .*/a and .*/b have different specs.*action_labels"):
        DemoDataset([tmp_path / "a", tmp_path / "b"])
    write_bag(tmp_path / "c", [3], spec=dataclasses.replace(SPEC, image_hw=(16, 16)))
    with pytest.raises(ValueError, match="image_hw"):
        DemoDataset([tmp_path / "a", tmp_path / "c"])


def test_episodes_without_terminal_observation(tmp_path):
    """Recordings from a running stack have no observation after the last action; samples are the same."""
    a = DemoDataset(write_bag(tmp_path / "a", [12, 7]), DatasetConfig(val_fraction=0.0, frame_dtype="float32"))
    b = DemoDataset(write_bag(tmp_path / "b", [12, 7], terminal=False),
                    DatasetConfig(val_fraction=0.0, frame_dtype="float32"))
    assert [e.proprio.shape[0] for e in b.episodes] == [12, 7] and not b.episodes[0].record.terminal_observation
    assert [e.frames.shape[0] for e in b.episodes] == [12, 7]
    for key, value in a.batch("train", np.arange(19)).items():
        np.testing.assert_array_equal(b.batch("train", np.arange(19))[key], value)
    np.testing.assert_array_equal(a.stats["proprio"].mean, b.stats["proprio"].mean)


def test_a_constant_dimension_is_only_shifted(tmp_path):
    """Every episode starts at t = 0 and has one step: proprio is constant, std 1 (FieldStats.of, STD_FLOOR)."""
    ds = DemoDataset(write_bag(tmp_path / "c", [1, 1, 1]), DatasetConfig(val_fraction=0.0))
    assert ds.stats["proprio"].std == (1.0,) and ds.stats["proprio"].mean == (0.0,)
    assert ds.stats["state"].std[0] == 1.0 and ds.stats["state"].std[1] > 0.5  # e = 0, 1, 2
