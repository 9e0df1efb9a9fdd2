"""The report's statistics against values computed by hand on small fixed inputs."""

import numpy as np
import pytest

from src import stats


def test_bootstrap_ci_matches_a_direct_computation():
    values = [0.2, 0.5, 0.9]
    # The same draws, done one resample at a time with a plain loop and sorted by hand.
    rng = np.random.default_rng(7)
    means = []
    for _ in range(200):
        picks = rng.integers(0, 3, size=3)
        means.append(sum(values[i] for i in picks) / 3)
    means.sort()
    # numpy's default percentile interpolates linearly between order statistics:
    # the 2.5% point of 200 values lies at rank 0.025 * 199 = 4.975.
    low = means[4] + 0.975 * (means[5] - means[4])
    high = means[194] + 0.025 * (means[195] - means[194])
    assert stats.bootstrap_ci(values, resamples=200, seed=7) == pytest.approx((low, high))


def test_bootstrap_ci_of_equal_values_is_that_value_and_is_reproducible():
    assert stats.bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    assert stats.bootstrap_ci([1, 2, 3, 10]) == stats.bootstrap_ci([1, 2, 3, 10])


def test_prob_better_counts_every_pair_and_halves_ties():
    # Pairs (a, b): (1,1) tie, (1,2) loss, (3,1) win, (3,2) win -> (0.5 + 0 + 1 + 1) / 4
    assert stats.prob_better([1, 3], [1, 2]) == pytest.approx(0.625)
    assert stats.prob_better([5, 6], [1, 2]) == 1.0
    assert stats.prob_better([1, 2], [1, 2]) == 0.5


def test_prob_better_interval_is_a_point_when_every_run_wins():
    assert stats.prob_better_ci([5, 6, 7], [1, 2, 3]) == (1.0, 1.0)
    low, high = stats.prob_better_ci([1, 3, 5], [2, 4, 6])
    assert 0 <= low < 0.5 < high <= 1


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (0.51, 0.75, "A better"),      # just above 0.5, just reaching 0.75
        (0.50, 0.90, "no evidence"),   # the lower end must be strictly above 0.5
        (0.60, 0.74, "no evidence"),   # sure, but the effect is too small
        (0.25, 0.49, "B better"),      # the mirror image of the first case
        (0.26, 0.40, "no evidence"),
        (0.10, 0.50, "no evidence"),
        (1.0, 1.0, "A better"),
    ],
)
def test_verdict_at_its_boundaries(low, high, expected):
    assert stats.verdict(low, high, "A", "B") == expected


def test_expected_max_of_one_and_two_trials():
    # n=1: the mean, (1 + 2 + 3) / 3 = 2.
    assert stats.expected_max([3, 1, 2], 1) == pytest.approx(2.0)
    # n=2: 1*(1/9) + 2*(4/9 - 1/9) + 3*(1 - 4/9) = (1 + 6 + 15) / 9 = 22/9.
    assert stats.expected_max([1, 2, 3], 2) == pytest.approx(22 / 9)
    # Many trials: almost surely the best one.
    assert stats.expected_max([1, 2, 3], 200) == pytest.approx(3.0)


def test_iqm_cuts_a_quarter_from_each_end():
    assert stats.iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)  # 5 // 4 = 1 cut: mean(2, 3, 4)
    assert stats.iqm([4, 1, 3, 2, 8, 6, 7, 5]) == pytest.approx(4.5)  # 2 cut each end: mean(3..6)
    assert stats.iqm([1, 2, 9]) == pytest.approx(4.0)  # 3 // 4 = 0: the plain mean
