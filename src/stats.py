"""The statistics behind a comparison: small, numpy only, each checked by hand in tests.

Every function takes scores where higher is better; the caller negates a metric that
is minimised (a loss) before asking, so "better" means one thing everywhere.
"""

import itertools
from functools import lru_cache
from math import comb, sqrt

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95  # the confidence level of every interval in the report
# The fewest runs per choice for an interval: a t-interval needs a spread, so 2.
MIN_RUNS = 2
# A meaningful effect (Bouthillier et al. 2021): a run of the winner beats a run of the
# loser at least 3 times in 4. Under normal scores of equal spread s, that is a
# difference in means of at least 0.95 s.
MIN_PROB_BETTER = 0.75
SEED = 0  # a fixed RNG seed for the permutations beyond EXACT_SPLITS: a report is the same each time
POWER = 0.8  # "would detect most of the time": the power the smallest detectable difference is given for


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle half (a quarter, rounded down, cut
    from each end), robust to one bad seed (Agarwal et al. 2021)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    cut = len(ordered) // 4
    return float(ordered[cut : len(ordered) - cut].mean())


def mean_interval(values, level: float = LEVEL) -> tuple[float, float]:
    """Student's t-interval of the mean (Student 1908): mean -/+ t(n-1) s / sqrt(n). Exact
    for normal scores at any n >= 2, where the percentile bootstrap is too narrow (it
    covered the mean 76% of the time at 3 runs, 83% at 5 for a nominal 95%)."""
    values = np.asarray(values, dtype=float)
    half = scipy_stats.t.ppf((1 + level) / 2, len(values) - 1) * values.std(ddof=1) / sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def _wins(a, b) -> tuple[int, int]:
    """(pairs A wins, pairs tied) over all pairs (one run of A, one run of B)."""
    a, b = np.asarray(a, dtype=float)[:, None], np.asarray(b, dtype=float)[None, :]
    return int((a > b).sum()), int((a == b).sum())


def prob_better(a, b) -> float:
    """P(X_A > X_B) over all pairs (one run of A, one run of B), ties counting 1/2:
    the Mann-Whitney U statistic divided by the number of pairs. Unpaired, so runs
    need not share seeds."""
    wins, ties = _wins(a, b)
    return (wins + 0.5 * ties) / (len(a) * len(b))


def meaningful(a, b, min_prob: float = MIN_PROB_BETTER) -> bool:
    """Whether A beats B in at least `min_prob` of the pairs (ties 1/2), counted in whole
    pairs so that "A over B" and "B under A" can never disagree by a rounding."""
    wins, ties = _wins(a, b)
    return 2 * wins + ties >= 2 * min_prob * len(a) * len(b) - 1e-9


def prob_better_interval(a, b, level: float = LEVEL) -> tuple[float, float]:
    """Interval of P(A beats B): Newcombe's (2006) method 5, a score interval that solves
    |theta - theta_hat| = z sqrt(V(theta)) with Hanley and McNeil's (1982) variance of the
    Mann-Whitney estimate, V(theta) = theta (1 - theta) / (m n) [1 + (N - 1)((1 - theta) /
    (2 - theta) + theta / (1 + theta))], N = (m + n) / 2. Unlike a bootstrap it is not a
    point when every run of A beats every run of B, and it stays inside [0, 1]."""
    m, n = len(a), len(b)
    estimate, z, half = prob_better(a, b), scipy_stats.norm.ppf((1 + level) / 2), (m + n) / 2

    def gap(theta: float) -> float:  # > 0 while theta lies outside the interval
        spread = theta * (1 - theta) / (m * n) * (1 + (half - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
        return (theta - estimate) ** 2 - z * z * spread

    def root(outside: float, inside: float) -> float:  # bisection: gap(outside) >= 0 > gap(inside)
        for _ in range(60):
            middle = (outside + inside) / 2
            outside, inside = (middle, inside) if gap(middle) >= 0 else (outside, middle)
        return (outside + inside) / 2

    low = 0.0 if gap(0.0) < 0 or estimate == 0 else root(0.0, estimate)
    high = 1.0 if gap(1.0) < 0 or estimate == 1 else root(1.0, estimate)
    return float(low), float(high)


def expected_max(values, n: int) -> float:
    """Expected best score of n trials drawn with replacement from these (Dodge et al.
    2019): sum_i v_(i) [(i/N)^n - ((i-1)/N)^n] over the sorted values v_(1..N)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    ranks = np.arange(1, len(ordered) + 1) / len(ordered)
    weights = ranks**n - (ranks - 1 / len(ordered)) ** n
    return float((ordered * weights).sum())

def in_words(pairs: list[dict], key: str = "verdict") -> str:
    """Pairs' verdicts on one line (the parent run's tag): "adam vs sgd: adam better; ..."."""
    return "; ".join(f"{p['a']} vs {p['b']}: {p[key]}" for p in pairs)


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


def runs_needed(level: float) -> int | None:
    """The fewest runs per choice (each side alike) whose permutation test can reach
    p <= level at all; None beyond 30 (an exact test of 30 against 30 reaches 1e-5)."""
    return next((n for n in range(1, 31) if smallest_p(n, n) <= level), None)


def holm(p_values: list[float]) -> list[float]:
    """Holm's (1979) step-down adjusted p-values: with the m p-values sorted, the i-th
    smallest (from 0) becomes max over j <= i of min(1, (m - j) p_(j)). Rejecting where
    the adjusted p <= alpha keeps the chance of any false rejection in the family <= alpha."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _pooled_spread(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))


def _effect_floor(spread: float, min_difference: float | None) -> float:
    """The least difference in means that counts as meaningful: the user's, else the one
    that makes P(A beats B) = MIN_PROB_BETTER for normal scores (sqrt(2) z(0.75) s)."""
    return min_difference if min_difference is not None else sqrt(2) * scipy_stats.norm.ppf(MIN_PROB_BETTER) * spread


def detectable_difference(a, b, level: float, power: float = POWER, min_difference: float | None = None) -> float:
    """About the smallest difference in means that a test at `level` finds `power` of the
    time with these many runs and this spread (the two-sample t-test's power, Cohen 1988:
    (t(1 - level/2) + t(power)) s_pooled sqrt(1/m + 1/n)), raised to the difference a
    meaningful effect needs (P(A beats B) = MIN_PROB_BETTER: sqrt(2) z(0.75) s). The
    permutation test's power is close to the t-test's from 5 runs up (Lehmann 1975)."""
    freedom, spread = len(a) + len(b) - 2, _pooled_spread(a, b)
    tested = (scipy_stats.t.ppf(1 - level / 2, freedom) + scipy_stats.t.ppf(power, freedom)) * spread \
        * sqrt(1 / len(a) + 1 / len(b))
    return float(max(tested, _effect_floor(spread, min_difference)))


def runs_to_detect(a, b, difference: float, level: float, power: float = POWER, most: int = 100,
                   min_difference: float | None = None) -> int | None:
    """About how many runs per choice (both alike) would detect `difference` in means
    `power` of the time at `level`, with this pair's pooled spread; None when no number
    up to `most` would (a difference below the meaningful effect never counts)."""
    spread = _pooled_spread(a, b)
    if spread == 0 or abs(difference) < _effect_floor(spread, min_difference):
        return None
    for n in range(2, most + 1):
        needed = (scipy_stats.t.ppf(1 - level / 2, 2 * n - 2) + scipy_stats.t.ppf(power, 2 * n - 2)) * spread * sqrt(2 / n)
        if smallest_p(n, n) <= level and needed <= abs(difference):
            return n
    return None


def _canonical(a, b) -> tuple[np.ndarray, np.ndarray, bool]:
    """(first, second, swapped): the pair in an order that does not depend on which
    choice's name sorts first, so that swapping A and B swaps the verdict, nothing else
    (the random splits beyond EXACT_SPLITS depend on the order of the pooled runs)."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    swapped = (len(b), tuple(b)) < (len(a), tuple(a))
    return (b, a, True) if swapped else (a, b, False)


def pair_test(a, b) -> float:
    """permutation_p of the pair, the same whichever of the two comes first."""
    first, second, _ = _canonical(a, b)
    return permutation_p(first, second)


def decide(a, b, p: float, level: float, name_a: str, name_b: str, min_difference: float | None = None,
           reachable: float | None = None) -> dict:
    """One pair's verdict at `level`, given its test's p (pair_test, or Holm-adjusted):
    "<A> better" when p <= level and the effect is meaningful (P(A beats B) >= 0.75, or a
    difference in means of at least min_difference where the user set one); "<B> better"
    the mirror image; "cannot decide" where no p this many runs can give reaches
    `reachable` (the level, or the first step of a correction); else "no evidence".
    Returns {"verdict", "why"}."""
    n_a, n_b, reachable = len(a), len(b), level if reachable is None else reachable
    if smallest_p(n_a, n_b) > reachable:
        need = runs_needed(reachable)
        more = f"{need} runs each can" if need else "more than 30 each would be needed"
        return {"verdict": "cannot decide",
                "why": f"{n_a} vs {n_b} runs give p >= {smallest_p(n_a, n_b):.3g}, above {reachable:.3g}; {more}"}
    gap = float(np.mean(a) - np.mean(b))
    ahead, behind, leader = (a, b, name_a) if gap > 0 else (b, a, name_b)
    if p > level or gap == 0:
        return {"verdict": "no evidence", "why": f"p = {p:.3g} > {level:.3g}"}
    if min_difference is not None:
        big_enough, effect = abs(gap) >= min_difference, f"the difference {abs(gap):.4g} is below {min_difference:g}"
    else:
        big_enough = meaningful(ahead, behind)
        effect = f"P({leader} beats the other) = {prob_better(ahead, behind):.3f}, below {MIN_PROB_BETTER}"
    if not big_enough:
        return {"verdict": "no evidence", "why": f"p = {p:.3g} <= {level:.3g}, but {effect}: too small to count"}
    return {"verdict": f"{leader} better", "why": f"p = {p:.3g} <= {level:.3g}"}


def pairwise(scores: dict[str, list[float]], alpha: float = 0.05, min_difference: float | None = None) -> list[dict]:
    """Every pair of choices (scores higher = better), in name order: the exact
    permutation test's p, P(A beats B) with its interval, the difference in means, and
    two verdicts: `verdict` at alpha for this pair alone, `family` at alpha for the whole
    family of pairs (Holm-adjusted p), with the smallest difference each could detect."""
    names = sorted(scores)
    combos = list(itertools.combinations(names, 2))
    arrays = {name: np.asarray(scores[name], dtype=float) for name in names}
    p_values = [pair_test(arrays[a], arrays[b]) for a, b in combos]
    adjusted, first_step = holm(p_values), alpha / max(1, len(combos))
    pairs = []
    for (a, b), p, p_family in zip(combos, p_values, adjusted, strict=True):
        xa, xb = arrays[a], arrays[b]
        alone = decide(xa, xb, p, alpha, a, b, min_difference)
        family = decide(xa, xb, p_family, alpha, a, b, min_difference, reachable=first_step)
        spread = min(len(xa), len(xb)) >= MIN_RUNS
        pairs.append({
            "a": a, "b": b, "p": p, "p_family": p_family, "prob": prob_better(xa, xb),
            "ci": prob_better_interval(xa, xb), "difference": float(xa.mean() - xb.mean()),
            "verdict": alone["verdict"], "why": alone["why"], "family": family["verdict"], "why_family": family["why"],
            "detectable": detectable_difference(xa, xb, alpha, min_difference=min_difference) if spread else float("nan"),
            "detectable_family": (detectable_difference(xa, xb, first_step, min_difference=min_difference)
                                  if spread else float("nan")),
            "runs_needed": runs_to_detect(xa, xb, xa.mean() - xb.mean(), alpha, min_difference=min_difference)
            if spread else None,
            "runs_needed_family": runs_to_detect(xa, xb, xa.mean() - xb.mean(), first_step, min_difference=min_difference)
            if spread else None,
        })
    return pairs
