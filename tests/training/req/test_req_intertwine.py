"""Intertwining exploration (Algorithm 3): statistics of who acts, and what lands in the replay."""

import numpy as np
import pytest

from point_task import PointReach
from training.replay import ReplayBuffer
from training.rollout import run_episode
from training.req.intertwine import (
    MODES, IntertwineConfig, IntertwinedActor, IntertwineSchedule, intertwine_config, replay_fields,
)


def _simulate(config: IntertwineConfig, episodes: int, steps: int, seed: int = 0):
    schedule = IntertwineSchedule(config, np.random.default_rng(seed))
    acts = np.zeros((episodes, steps), bool)
    intertwined = np.zeros(episodes, bool)
    for e in range(episodes):
        schedule.start_episode()
        intertwined[e] = schedule.intertwined
        acts[e] = [schedule.expert_acts() for _ in range(steps)]
    return acts, intertwined


@pytest.mark.parametrize("mode", ["rlfse", "rlfd"])
def test_expert_step_fraction_and_intertwine_statistics(mode):
    config = MODES[mode]
    acts, intertwined = _simulate(config, episodes=4000, steps=50)
    # fraction of intertwined episodes ~ lambda_intertwine (binomial std < 0.008 at 4000 episodes)
    assert intertwined.mean() == pytest.approx(config.lambda_intertwine, abs=0.03)
    # overall fraction of expert steps ~ lambda_psi
    assert acts.mean() == pytest.approx(config.lambda_psi, abs=0.03)
    # non-intertwined episodes are all-expert or all-policy, expert with probability lambda_psi
    whole = acts[~intertwined]
    assert np.all(whole.all(1) | (~whole).all(1))
    assert whole[:, 0].mean() == pytest.approx(config.lambda_psi, abs=0.03)
    if intertwined.any():  # intertwined episodes mix per step with probability lambda_psi
        mixed = acts[intertwined]
        assert mixed.mean() == pytest.approx(config.lambda_psi, abs=0.02)
        assert np.mean(mixed.any(1) & (~mixed).any(1)) > 0.99


def test_modes_are_table_6_and_bad_input_is_refused():
    assert (MODES["rlfd"].lambda_intertwine, MODES["rlfd"].lambda_psi) == (0.0, 0.25)
    assert (MODES["rlfse"].lambda_intertwine, MODES["rlfse"].lambda_psi) == (0.5, 0.75)
    with pytest.raises(ValueError, match="unknown exploration mode"):
        intertwine_config("dagger")
    with pytest.raises(ValueError, match="lambda_psi"):
        IntertwineConfig(0.5, 1.5)


def test_collect_records_psi_for_every_state_and_one_replay():
    env = PointReach()
    replay = ReplayBuffer(1000, replay_fields(env.observation_dim, env.action_dim))
    schedule = IntertwineSchedule(IntertwineConfig(1.0, 0.5), np.random.default_rng(3))

    class Fixed:  # never the expert's action
        def act(self, obs, explore):
            return np.array([0.3, -0.3], np.float32)

    actor = IntertwinedActor(Fixed(), schedule)
    records = [run_episode(env, actor, s, replay) for s in range(20)]
    total = sum(r.steps for r in records)
    assert len(replay) == total
    sample = replay.gather(np.flatnonzero(replay._data["_has_step"]), 1, 0.99)
    obs, psi = sample.obs["obs"], sample.obs["expert_action"]
    expected_psi = np.clip(obs[:, 2:4] - obs[:, 0:2], -1, 1)  # the expert's action at each stored state
    np.testing.assert_allclose(psi, expected_psi, atol=1e-6)
    by_expert = sample.step["expert_acted"]
    assert 0 < by_expert.sum() < total  # both acted, into the same buffer
    np.testing.assert_allclose(sample.step["action"][by_expert], psi[by_expert], atol=1e-6)
    np.testing.assert_allclose(sample.step["action"][~by_expert], [[0.3, -0.3]] * int((~by_expert).sum()), atol=1e-6)
    assert sum(r.info["expert_acted"] for r in records) == by_expert.sum()
