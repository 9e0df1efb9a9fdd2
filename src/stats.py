"""The statistics behind a comparison: small, numpy only, each checked by hand in tests.

Every function takes scores where higher is better; the caller negates a metric that
is minimised (a loss) before asking, so "better" means one thing everywhere.
"""

import itertools
from functools import lru_cache
from math import comb

import numpy as np

RESAMPLES = 10_000  # bootstrap resamples: the interval ends move < 0.01 between seeds
SEED = 0  # a fixed RNG seed, so that a report is the same each time it is written
# The fewest runs per choice for an interval and a verdict. A bootstrap of one run is
# that run ([x, x]); of two, three resample means. With 3 runs against 3, a verdict
# needs A to beat B in (nearly) every pair; below, the report says "too few runs".
MIN_RUNS = 3


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle half (a quarter, rounded down, cut
    from each end), robust to one bad seed (Agarwal et al. 2021)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())


def bootstrap_ci(values, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED):
    """Percentile bootstrap interval of the mean: resample the runs with replacement,
    take the mean of each resample, return the (1-level)/2 and (1+level)/2 quantiles."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def prob_better(a, b) -> float:
    """P(X_A > X_B) over all pairs (one run of A, one run of B), ties counting 1/2:
    the Mann-Whitney U statistic divided by the number of pairs. Unpaired, so runs
    need not share seeds."""
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return float(((a > b) + 0.5 * (a == b)).mean())


def prob_better_ci(a, b, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED):
    """Percentile bootstrap interval of prob_better, resampling A's and B's runs apart."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    picks_a = a[rng.integers(0, len(a), size=(resamples, len(a)))]  # (R, nA)
    picks_b = b[rng.integers(0, len(b), size=(resamples, len(b)))]  # (R, nB)
    wins = picks_a[:, :, None] > picks_b[:, None, :]  # (R, nA, nB)
    ties = picks_a[:, :, None] == picks_b[:, None, :]
    probs = (wins + 0.5 * ties).mean(axis=(1, 2))
    low, high = np.percentile(probs, [50 * (1 - level), 50 * (1 + level)])
    return float(low), float(high)


def verdict(low: float, high: float, name_a: str, name_b: str) -> str:
    """Bouthillier et al. (2021): A is better only when the interval of P(A > B) lies
    above 0.5 and reaches 0.75 (a meaningful effect); B symmetric; else no evidence."""
    if low > 0.5 and high >= 0.75:
        return f"{name_a} better"
    if high < 0.5 and low <= 0.25:
        return f"{name_b} better"
    return "no evidence"


def in_words(pairs: list[dict]) -> str:
    """Pairs' verdicts on one line (the parent run's tag): "adam vs sgd: adam better; ..."."""
    return "; ".join(f"{p['a']} vs {p['b']}: {p['verdict']}" for p in pairs)


def expected_max(values, n: int) -> float:
    """Expected best score of n trials drawn with replacement from these (Dodge et al.
    2019): sum_i v_(i) [(i/N)^n - ((i-1)/N)^n] over the sorted values v_(1..N)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    ranks = np.arange(1, len(ordered) + 1) / len(ordered)
    weights = ranks**n - (ranks - 1 / len(ordered)) ** n
    return float((ordered * weights).sum())


# Permutation tests try every way to split the pooled runs when there are at most this
# many (8 vs 8: 12,870), else the observed split and PERMUTATIONS random ones.
EXACT_SPLITS = 20_000
PERMUTATIONS = 20_000


@lru_cache(maxsize=16)
def _splits(total: int, size: int, seed: int) -> np.ndarray:
    """(splits, total) 0/1 rows: which of the pooled runs each split gives to A. Row 0 is
    the observed split (A's runs come first in the pool)."""
    if comb(total, size) <= EXACT_SPLITS:
        picked = np.array(list(itertools.combinations(range(total), size)))  # (C(total, size), size)
    else:
        rng = np.random.default_rng(seed)
        shuffled = np.argsort(rng.random((PERMUTATIONS, total)), axis=1)[:, :size]
        picked = np.vstack([np.arange(size), shuffled])  # (1 + PERMUTATIONS, size)
    rows = np.zeros((len(picked), total))
    np.put_along_axis(rows, picked, 1.0, axis=1)
    rows.setflags(write=False)
    return rows


def permutation_p(a, b, seed: int = SEED) -> float:
    """Two-sided permutation p-value of mean(A) - mean(B) under H0 "A and B score alike"
    (the runs are exchangeable between the choices; Pitman 1937): the share of the splits
    of the pooled runs into groups of len(a) and len(b) whose |difference in means| is at
    least the observed one. Exact (every split) up to EXACT_SPLITS splits; beyond, the
    observed split and PERMUTATIONS random ones, i.e. p = (1 + hits) / (1 + PERMUTATIONS),
    valid over the draw of the splits (Phipson & Smyth 2010); the fixed seed makes it
    reproducible. Ties need no correction: a tied split counts as at least as extreme.
    The smallest p is smallest_p(len(a), len(b)): 5 runs vs 5 give 2/252 at best."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    rows = _splits(len(pooled), len(a), seed)
    sums_a = rows @ pooled  # (splits,)
    gaps = np.abs(sums_a / len(a) - (pooled.sum() - sums_a) / len(b))
    slack = 1e-9 * max(1.0, np.abs(pooled).max())  # a tied split, summed in another order
    return float((gaps >= gaps[0] - slack).mean())


def smallest_p(n_a: int, n_b: int) -> float:
    """The smallest p-value permutation_p can give: one extreme split (and, for equal
    sizes, its mirror) of all C(n_a + n_b, n_a), or 1 / (1 + PERMUTATIONS) beyond."""
    splits = comb(n_a + n_b, n_a)
    if splits > EXACT_SPLITS:
        return 1 / (1 + PERMUTATIONS)
    return (2 if n_a == n_b else 1) / splits


def looks(first: int, most: int) -> list[int]:
    """Runs per choice at each planned look of a sequential comparison that starts with
    `first` and adds `first` at a time: first, 2 first, ..., and `most` as the last."""
    return [*range(first, most, first), most]


def sequential_verdict(a, b, planned: list[int], alpha: float, name_a: str, name_b: str):
    """A group-sequential permutation test with Bonferroni alpha spending: at each planned
    look n, while both have n runs, permutation_p of the first n runs of each (in the order
    they were added) against alpha / len(planned); the first look that rejects decides,
    by the means. The union bound over the looks keeps P(any false verdict) <= alpha
    whatever the rule that stops or goes on (the simplest alpha spending function; Lan &
    DeMets 1983). Returns (verdict, n): "<A> better" or "<B> better" with the deciding n,
    "no evidence" after the last look, "open" with the last n looked at (0: none) when
    the runs end before the last look."""
    level, looked = alpha / len(planned), 0
    for n in planned:
        if min(len(a), len(b)) < n:
            return "open", looked
        first_a, first_b = np.asarray(a[:n], dtype=float), np.asarray(b[:n], dtype=float)
        if permutation_p(first_a, first_b) <= level:
            return f"{name_a if first_a.mean() > first_b.mean() else name_b} better", n
        looked = n
    return "no evidence", looked
