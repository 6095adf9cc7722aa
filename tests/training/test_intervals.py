"""The intervals results are reported with (`training.evaluation`): Wilson over held-out episodes, Student t over
training seeds, against values worked out by hand."""

import math

import pytest

from training.evaluation import mean_interval, success_interval


def _wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 100), (50, 100), (87, 100), (3, 10), (10, 10)])
def test_success_interval_is_the_wilson_score_interval(k, n):
    low, high = success_interval(k, n)
    ref_low, ref_high = _wilson(k, n)
    assert low == pytest.approx(max(ref_low, 0.0), abs=1e-9) and high == pytest.approx(min(ref_high, 1.0), abs=1e-9)
    assert low <= k / n <= high


def test_mean_interval_over_three_training_seeds():
    # mean 0.85, sample std 0.05, t(0.975, 2 dof) = 4.302653: half width 4.302653 * 0.05 / sqrt(3)
    mean, low, high = mean_interval([0.80, 0.85, 0.90])
    half = 4.302652729911275 * 0.05 / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((0.85, 0.85 - half, 0.85 + half))
    assert mean_interval([0.4]) == (0.4, 0.4, 0.4)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="successes <= episodes"):
        success_interval(11, 10)
    with pytest.raises(ValueError, match="finite values"):
        mean_interval([])


def test_seed_curve_aligns_seeds_by_evaluation_and_skips_missing_values():
    from training.evaluation import seed_curve

    runs = [
        [{"frames": 0, "success_rate": 0.5, "mean_steps_success": 60.0}, {"frames": 1000, "success_rate": 0.7, "mean_steps_success": 50.0},
         {"frames": 2000, "success_rate": 0.9, "mean_steps_success": 40.0}],
        [{"frames": 0, "success_rate": 0.5, "mean_steps_success": None}, {"frames": 1010, "success_rate": 0.9, "mean_steps_success": 44.0}],
    ]
    success = seed_curve(runs, "success_rate")
    assert [p["frames"] for p in success] == [0.0, 1005.0]  # the shortest run ends the curve
    assert success[0]["low"] == success[0]["high"] == 0.5  # identical seeds: no spread
    assert success[1]["mean"] == pytest.approx(0.8) and success[1]["low"] < 0.8 < success[1]["high"]
    steps = seed_curve(runs, "mean_steps_success")
    assert [p["seeds"] for p in steps] == [1, 2] and steps[0]["mean"] == 60.0 and steps[1]["mean"] == pytest.approx(47.0)
    with pytest.raises(ValueError, match="one or more runs"):
        seed_curve([runs[0], []], "success_rate")
