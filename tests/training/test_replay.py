"""Replay buffer against a brute-force reference that keeps every write in a Python list."""

import numpy as np
import pytest

from training.replay import FieldSpec, ReplayBuffer

FIELDS = {
    "state": FieldSpec((2,)),
    "frame": FieldSpec((3,), dtype="uint8", history=3),
    "action": FieldSpec((1,), kind="step"),
}


class Reference:
    """Every slot write ever made, as dicts; slot i lives at i % capacity while i >= written - capacity."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.records = []
        self.episode = -1

    def add_first(self, obs):
        self.episode += 1
        self.records.append(dict(obs=obs, episode=self.episode, step=None))

    def add(self, step, reward, discount, next_obs):
        self.records[-1]["step"] = (step, reward, discount)
        self.records.append(dict(obs=next_obs, episode=self.episode, step=None))

    def live(self, i):
        return len(self.records) - self.capacity <= i < len(self.records)

    def record_at_slot(self, slot):
        i = max(j for j in range(len(self.records)) if j % self.capacity == slot)
        return i

    def transition(self, i, n, gamma):
        ret, disc, m = 0.0, 1.0, 0
        while m < n:
            j = i + m
            rec = self.records[j]
            if not self.live(j) or rec["episode"] != self.records[i]["episode"] or rec["step"] is None:
                break
            _, r, d = rec["step"]
            ret += disc * r
            disc *= gamma * d
            m += 1
        return ret, disc, m, i + m

    def stacked(self, i, name, k):
        frames = []
        for off in range(-(k - 1), 1):
            j = i + off
            first = i
            while first - 1 >= 0 and self.live(first - 1) and self.records[first - 1]["episode"] == self.records[i]["episode"]:
                first -= 1
            frames.append(self.records[max(j, first)]["obs"][name])
        return np.stack(frames)


def fill(buf, ref, rng, episodes):
    for _ in range(episodes):
        length = int(rng.integers(1, 9))
        obs = {"state": rng.normal(size=2).astype(np.float32), "frame": rng.integers(0, 255, 3).astype(np.uint8)}
        buf.add_first(obs)
        ref.add_first(obs)
        terminates = rng.random() < 0.5
        for t in range(length):
            step = {"action": rng.normal(size=1).astype(np.float32)}
            reward = float(rng.integers(0, 2))
            discount = 0.0 if (terminates and t == length - 1) else 1.0
            nxt = {"state": rng.normal(size=2).astype(np.float32), "frame": rng.integers(0, 255, 3).astype(np.uint8)}
            buf.add(step, reward, discount, nxt)
            ref.add(step, reward, discount, nxt)


@pytest.mark.parametrize("capacity,episodes", [(200, 10), (37, 40)])
@pytest.mark.parametrize("n_step,gamma", [(1, 0.99), (5, 0.9), (12, 1.0)])
def test_nstep_transitions_match_reference(capacity, episodes, n_step, gamma):
    rng = np.random.default_rng(capacity + n_step)
    buf, ref = ReplayBuffer(capacity, FIELDS), Reference(capacity)
    fill(buf, ref, rng, episodes)
    index = np.flatnonzero(buf._data["_has_step"])
    assert len(index) == len(buf) > 0
    sample = buf.gather(index, n_step, gamma)
    for b, slot in enumerate(index):
        i = ref.record_at_slot(int(slot))
        ret, disc, m, nxt = ref.transition(i, n_step, gamma)
        assert sample.steps[b] == m >= 1
        np.testing.assert_allclose(sample.reward[b], ret, rtol=1e-6)
        np.testing.assert_allclose(sample.discount[b], disc, rtol=1e-6)
        np.testing.assert_array_equal(sample.obs["state"][b], ref.records[i]["obs"]["state"])
        np.testing.assert_array_equal(sample.step["action"][b], ref.records[i]["step"][0]["action"])
        np.testing.assert_array_equal(sample.next_obs["state"][b], ref.records[nxt]["obs"]["state"])
        np.testing.assert_array_equal(sample.obs["frame"][b], ref.stacked(i, "frame", 3))
        np.testing.assert_array_equal(sample.next_obs["frame"][b], ref.stacked(nxt, "frame", 3))


def test_length_counts_the_live_steps_while_the_buffer_wraps():
    rng = np.random.default_rng(5)
    buf, ref = ReplayBuffer(23, FIELDS), Reference(23)
    for _ in range(30):  # ~135 steps through 23 slots: every slot is overwritten several times
        fill(buf, ref, rng, 1)
        live = sum(1 for i, rec in enumerate(ref.records) if ref.live(i) and rec["step"] is not None)
        assert len(buf) == live
    assert len(buf) < 23 <= buf.steps_added


def test_terminal_step_gives_zero_bootstrap_and_truncation_keeps_it():
    buf = ReplayBuffer(16, {"state": FieldSpec((1,)), "action": FieldSpec((1,), kind="step")})
    s = lambda v: {"state": np.array([v], np.float32)}
    a = {"action": np.zeros(1, np.float32)}
    buf.add_first(s(0))
    buf.add(a, 0.0, 1.0, s(1))
    buf.add(a, 1.0, 0.0, s(2))  # terminated with reward 1
    buf.add_first(s(10))
    buf.add(a, 0.0, 1.0, s(11))  # truncated: next add_first starts a new episode
    buf.add_first(s(20))
    out = buf.gather(np.array([0, 1, 3]), n_step=5, gamma=0.5)
    np.testing.assert_allclose(out.reward, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(out.discount, [0.0, 0.0, 0.5])
    np.testing.assert_array_equal(out.steps, [2, 1, 1])
    np.testing.assert_array_equal(out.next_obs["state"][:, 0], [2, 2, 11])


def test_sampling_is_uniform_over_steps_only():
    rng = np.random.default_rng(0)
    buf, ref = ReplayBuffer(64, FIELDS), Reference(64)
    fill(buf, ref, rng, 30)
    idx = buf.sample_indices(40_000, rng)
    assert buf._data["_has_step"][idx].all()
    counts = np.bincount(idx, minlength=64)[buf._data["_has_step"]]
    expected = 40_000 / len(buf)
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


def test_state_dict_round_trip_resumes_identically(tmp_path):
    rng = np.random.default_rng(3)
    buf, ref = ReplayBuffer(50, FIELDS), Reference(50)
    fill(buf, ref, rng, 12)
    np.savez(tmp_path / "replay.npz", **buf.state_dict())
    other = ReplayBuffer(50, FIELDS)
    other.load_state_dict(dict(np.load(tmp_path / "replay.npz")))
    assert len(other) == len(buf) and other.steps_added == buf.steps_added
    # the same writes afterwards and the same sampling rng give the same batches
    fill(buf, Reference(50), np.random.default_rng(9), 3)
    fill(other, Reference(50), np.random.default_rng(9), 3)
    a = buf.sample(32, 5, 0.99, np.random.default_rng(1))
    b = other.sample(32, 5, 0.99, np.random.default_rng(1))
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_array_equal(a.reward, b.reward)
    np.testing.assert_array_equal(a.next_obs["frame"], b.next_obs["frame"])


def test_bad_input_is_named():
    buf = ReplayBuffer(8, FIELDS)
    with pytest.raises(RuntimeError, match="add_first"):
        buf.add({"action": np.zeros(1)}, 0.0, 1.0, {})
    with pytest.raises(ValueError, match="'state'.*shape"):
        buf.add_first({"state": np.zeros(3), "frame": np.zeros(3, np.uint8)})
    with pytest.raises(KeyError, match="frame"):
        buf.add_first({"state": np.zeros(2)})
    with pytest.raises(ValueError, match="no steps"):
        ReplayBuffer(8, FIELDS).sample(4, 1, 0.9, np.random.default_rng())
    with pytest.raises(ValueError, match="reserved"):
        ReplayBuffer(8, {"reward": FieldSpec(())})
    with pytest.raises(ValueError, match="fields differ"):
        ReplayBuffer(8, {"state": FieldSpec((2,))}).load_state_dict(buf.state_dict())


def test_episode_longer_than_capacity_never_stacks_across_the_write_head():
    rng = np.random.default_rng(5)
    buf, ref = ReplayBuffer(8, FIELDS), Reference(8)
    obs = lambda: {"state": rng.normal(size=2).astype(np.float32), "frame": rng.integers(0, 255, 3).astype(np.uint8)}
    first = obs()
    buf.add_first(first)
    ref.add_first(first)
    for _ in range(20):
        step, nxt = {"action": np.zeros(1, np.float32)}, obs()
        buf.add(step, 0.0, 1.0, nxt)
        ref.add(step, 0.0, 1.0, nxt)
    index = np.flatnonzero(buf._data["_has_step"])
    sample = buf.gather(index, 3, 0.9)
    for b, slot in enumerate(index):
        i = ref.record_at_slot(int(slot))
        np.testing.assert_array_equal(sample.obs["frame"][b], ref.stacked(i, "frame", 3))


def test_checkpoint_of_another_capacity_is_refused():
    buf = ReplayBuffer(8, FIELDS)
    with pytest.raises(ValueError, match="capacity 8, buffer 9"):
        ReplayBuffer(9, FIELDS).load_state_dict(buf.state_dict())
