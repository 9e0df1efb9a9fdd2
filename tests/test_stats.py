"""The report's statistics: against values computed by hand on small fixed inputs, and
by simulation through the same function the report calls (stats.pairwise): under equal
choices the false-verdict rate stays at or under alpha, the intervals cover, a clear
difference is found, and swapping A and B swaps the verdict."""

import itertools
from math import sqrt

import numpy as np
import pytest
from scipy.stats import norm

from src import stats

ALPHA = 0.05


def slack(rate: float, draws: int) -> float:
    """Three Monte-Carlo standard errors of a rate estimated from `draws` draws."""
    return 3 * sqrt(rate * (1 - rate) / draws)


def test_mean_interval_is_students_t():
    values = [0.2, 0.5, 0.9]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = 4.302653 * sd / sqrt(3)  # t(0.975, 2 degrees of freedom), from a table
    assert stats.mean_interval(values) == pytest.approx((mean - half, mean + half), rel=1e-6)
    assert stats.mean_interval([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))


def test_prob_better_counts_every_pair_and_halves_ties():
    # Pairs (a, b): (1,1) tie, (1,2) loss, (3,1) win, (3,2) win -> (0.5 + 0 + 1 + 1) / 4
    assert stats.prob_better([1, 3], [1, 2]) == pytest.approx(0.625)
    assert stats.prob_better([5, 6], [1, 2]) == 1.0
    assert stats.prob_better([1, 2], [1, 2]) == 0.5


def test_a_meaningful_effect_is_counted_in_whole_pairs_both_ways():
    # 3 of 4 pairs won: exactly 0.75, meaningful; its mirror image is exactly 0.25.
    assert stats.meaningful([2, 4], [1, 3]) and not stats.meaningful([1, 3], [2, 4])
    assert stats.meaningful([1.0, 1.0], [1.0, 0.5])  # (1/2 + 1 + 1/2 + 1) / 4 = 0.75 with ties
    assert not stats.meaningful([1, 3], [1, 3])


def test_the_interval_of_prob_better_solves_newcombes_equation_and_stays_in_0_1():
    a, b = [0.91, 0.93, 0.95, 0.97], [0.90, 0.92, 0.80, 0.85]
    estimate, (low, high) = stats.prob_better(a, b), stats.prob_better_interval(a, b)
    m = n = 4

    def variance(theta):  # Hanley & McNeil with N* = (m + n)/2 - 1 (Newcombe 2006, method 5)
        return theta * (1 - theta) / (m * n) * (1 + ((m + n) / 2 - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))

    for end in (low, high):
        assert (end - estimate) ** 2 == pytest.approx(1.959964**2 * variance(end), rel=1e-6)
    assert 0 < low < estimate < high < 1
    # every run of A beats every run of B: not a point, unlike the percentile bootstrap
    low, high = stats.prob_better_interval([5, 6, 7], [1, 2, 3])
    assert 0.5 < low < 0.75 and high == 1.0
    flipped = stats.prob_better_interval([1, 2, 3], [5, 6, 7])
    assert flipped == pytest.approx((1 - high, 1 - low))


def test_holm_adjusts_step_down():
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    assert stats.holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert stats.holm([0.5]) == [0.5] and stats.holm([0.9, 0.8]) == [1.0, 1.0]  # 2 x 0.8 caps at 1


def test_permutation_p_counts_every_split_by_hand():
    a, b = [3.0, 4.0], [1.0, 2.0]
    splits = list(itertools.combinations(range(4), 2))  # 6 ways to give 2 of the 4 runs to A
    pooled = a + b
    gaps = [abs(np.mean([pooled[i] for i in s]) - np.mean([pooled[i] for i in range(4) if i not in s])) for s in splits]
    assert stats.permutation_p(a, b) == pytest.approx(sum(g >= 2.0 for g in gaps) / 6)  # 2/6
    assert stats.smallest_p(3, 3) == pytest.approx(0.1) and stats.runs_needed(0.05) == 4
    assert stats.runs_needed(0.005) == 6 and stats.runs_needed(1e-12) is None


def test_three_runs_cannot_decide_even_when_a_wins_8_of_9_pairs():
    [pair] = stats.pairwise({"a": [0.90, 0.92, 0.85], "b": [0.86, 0.80, 0.81]})
    assert pair["verdict"] == pair["family"] == "cannot decide"
    assert "4 runs each can" in pair["why"] and pair["p"] == pytest.approx(0.2)


def test_a_significant_but_small_effect_is_no_verdict():
    # 20 runs each, B shifted by 0.4 sd: the test may reject, P(A beats B) ~ 0.61 < 0.75
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.4, 1, 40), rng.normal(0, 1, 40)
    [pair] = stats.pairwise({"a": a, "b": b})
    assert pair["p"] <= ALPHA and pair["verdict"] == "no evidence" and "too small to count" in pair["why"]
    [pair] = stats.pairwise({"a": a, "b": b}, min_difference=0.2)  # the user's own meaningful difference
    assert pair["verdict"] == "a better"


@pytest.mark.parametrize("n", [3, 4, 5, 8, 10, 20])
def test_equal_choices_get_a_false_verdict_at_most_alpha_of_the_time(n):
    rng, draws = np.random.default_rng(n), 300
    normal = sum(stats.pairwise({"a": rng.normal(size=n), "b": rng.normal(size=n)})[0]["verdict"].endswith("better")
                 for _ in range(draws))
    # tied accuracies: 30 validation examples each, as a small split gives them
    tied = sum(stats.pairwise({"a": rng.binomial(30, 0.9, n) / 30, "b": rng.binomial(30, 0.9, n) / 30})[0]
               ["verdict"].endswith("better") for _ in range(draws))
    assert normal / draws <= ALPHA + slack(ALPHA, draws)
    assert tied / draws <= ALPHA + slack(ALPHA, draws)


@pytest.mark.parametrize("n", [3, 5, 6, 8])
def test_a_sweep_of_five_equal_choices_has_any_false_verdict_at_most_alpha_with_holm(n):
    rng, draws = np.random.default_rng(100 + n), 150
    any_false = sum(any(p["family"].endswith("better")
                        for p in stats.pairwise({c: rng.normal(size=n) for c in "abcde"})) for _ in range(draws))
    assert any_false / draws <= ALPHA + slack(ALPHA, draws)


@pytest.mark.parametrize("n", [5, 10, 20])
def test_the_intervals_cover_near_their_level(n):
    rng, draws = np.random.default_rng(200 + n), 600
    means = sum(low <= 0 <= high for low, high in (stats.mean_interval(rng.normal(size=n)) for _ in range(draws)))
    shift = 1.0  # normal scores 1 sd apart: P(A beats B) = Phi(1 / sqrt 2) = 0.760
    theta = norm.cdf(shift / sqrt(2))
    probs = sum(low <= theta <= high for low, high in
                (stats.prob_better_interval(rng.normal(shift, 1, n), rng.normal(0, 1, n)) for _ in range(draws)))
    assert abs(means / draws - 0.95) <= 0.02 + slack(0.95, draws)
    assert abs(probs / draws - 0.95) <= 0.02 + slack(0.95, draws)


def test_a_clear_difference_is_found_for_the_right_choice():
    rng = np.random.default_rng(5)
    for _ in range(100):  # 0.95 against 0.90 accuracy, spread 0.01, 5 seeds
        [pair] = stats.pairwise({"big": rng.normal(0.95, 0.01, 5), "small": rng.normal(0.90, 0.01, 5)})
        assert pair["verdict"] == pair["family"] == "big better"


def test_the_smallest_detectable_difference_is_found_about_80_percent_of_the_time():
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 10), rng.normal(0, 1, 10)
    detectable = stats.detectable_difference(a, b, ALPHA)
    spread = sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    found = sum(stats.pairwise({"a": rng.normal(detectable, spread, 10), "b": rng.normal(0, spread, 10)})[0]
                ["verdict"] == "a better" for _ in range(300))
    assert 0.7 <= found / 300 <= 0.92


def test_swapping_a_and_b_swaps_the_verdict():
    # The pair whose interval's end once landed on 0.5 exactly.
    a = [2.248, 0.503, -0.479, 1.258, 0.887, 0.676]
    b = [0.147, -1.434, 0.113, -0.167, 0.411, 0.02]
    assert stats.pairwise({"x": a, "y": b})[0]["verdict"] == "x better"
    assert stats.pairwise({"x": b, "y": a})[0]["verdict"] == "y better"
    rng = np.random.default_rng(7)
    for n in (4, 6, 10, 12):  # 10 and 12 use random splits: the order must not matter there either
        for _ in range(20):
            a, b = rng.normal(0.8, 1, n), rng.normal(0, 1, n)
            one, other = stats.pairwise({"x": a, "y": b})[0], stats.pairwise({"x": b, "y": a})[0]
            assert one["p"] == other["p"]
            assert one["verdict"].replace("x", "?").replace("y", "x").replace("?", "y") == other["verdict"]


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
