"""A comparison that adds seeds only where a verdict is still open (compare.until_decided).

The sweep starts each choice with the seeds given (n0) and adds n0 more at a time, up
to compare.max_seeds, to the choices in a pair still undecided. Each pair is judged by
stats.sequential_verdict: a permutation test of the difference in means at every
planned look (n0, 2 n0, ..., max_seeds), each at level alpha / looks, so that the
chance of any false verdict for a pair stays <= alpha however the looks went.

A permutation test of n runs against n can give no p below 2 / C(2n, n): 3 vs 3 gives
0.1 at best, 4 vs 4 0.029, 5 vs 5 0.0079, 6 vs 6 0.0022. With alpha 0.05 and the
default max_seeds 20 (4 looks from 5 seeds: p <= 0.0125 decides), 5 seeds is the
least to start with; a design whose first look can never decide is refused.

The sweeper (src/sweeper.py) and the report (src/compare.py) both call replay() on
the stored runs ordered by seed, so `python -m src.compare` later says what the sweep
decided.
"""

import itertools
from dataclasses import dataclass

from rich.table import Table

from src import stats
from src.markup import literal

TEST_NAME = "group-sequential permutation test of the difference in means, Bonferroni alpha spending"


@dataclass(frozen=True)
class Design:
    """Seeds per choice at the first look, at most, the false-verdict rate, and the number
    of pairs that share it: with Holm's correction on (compare.correction=holm, the
    default) alpha holds for the sweep's whole family of pairs, each pair testing at
    alpha / pairs (Bonferroni: sequential p-values have no simple step-down)."""

    first: int
    most: int
    alpha: float
    pairs: int = 1

    @property
    def looks(self) -> list[int]:
        return stats.looks(self.first, self.most)

    @property
    def level(self) -> float:
        """The p a pair's test must reach at one look."""
        return self.alpha / self.pairs / len(self.looks)

    @property
    def control(self) -> str:
        return "per pair" if self.pairs == 1 else f"for the sweep's {self.pairs} pairs together (Bonferroni)"

    def as_params(self) -> dict[str, str]:
        """What the sweep's parent run records, for the report to replay."""
        return {"compare.until_decided": "true", "compare.first_seeds": str(self.first),
                "compare.max_seeds": str(self.most), "compare.alpha": str(self.alpha),
                "compare.sequential_pairs": str(self.pairs)}


def design_of(params: dict) -> Design | None:
    """The design a sweep's parent run recorded (as_params), or None for another sweep."""
    if params.get("compare.until_decided") != "true":
        return None
    return Design(int(params["compare.first_seeds"]), int(params["compare.max_seeds"]), float(params["compare.alpha"]),
                  int(params.get("compare.sequential_pairs", 1)))


def design_problems(design: Design) -> list[str]:
    """Why this design cannot work, if it cannot: its keys, and what would."""
    problems = []
    if not 0 < design.alpha < 1:
        problems.append(f"compare.alpha={design.alpha}: the false-verdict rate must lie between 0 and 1 (e.g. 0.05).")
    if design.most < design.first:
        problems.append(f"compare.max_seeds={design.most} is below the {design.first} seeds the sweep starts with: "
                        f"set compare.max_seeds to at least {design.first} (e.g. {4 * design.first}).")
    if problems:
        return problems
    best, level = stats.smallest_p(design.first, design.first), design.level
    if best > level:
        enough = next((n for n in range(design.first, design.most + 1)
                       if stats.smallest_p(n, n) <= design.alpha / design.pairs / len(stats.looks(n, design.most))), None)
        fix = (f"start with at least {enough} seeds (seed=range(0,{enough}))" if enough
               else f"set compare.max_seeds to at least {4 * design.first}")
        problems.append(
            f"seed: {design.first} seeds per choice can never decide a pair: a permutation test of {design.first} runs "
            f"against {design.first} gives p >= {best:.3g}, and with {len(design.looks)} looks up to "
            f"compare.max_seeds={design.most}"
            + (f" and {design.pairs} pairs sharing compare.alpha (compare.correction=holm)" if design.pairs > 1 else "")
            + f" a verdict needs p <= {level:.3g}. {fix[0].upper() + fix[1:]}, or raise compare.alpha"
            + (" (or set compare.correction=none: alpha per pair)." if design.pairs > 1 else "."))
    return problems


def replay(scores: dict[str, list[float]], design: Design) -> list[dict]:
    """Each pair's sequential verdict from its choices' scores (higher is better) in the
    order the seeds were added: {"a", "b", "verdict", "seeds"}, where "seeds" is the
    number per choice it was decided at (or looked at last, for "no evidence" and "open")."""
    pairs = []
    for a, b in itertools.combinations(sorted(scores), 2):
        verdict, seeds = stats.sequential_verdict(scores[a], scores[b], design.looks, design.alpha / design.pairs, a, b)
        pairs.append({"a": a, "b": b, "verdict": verdict, "seeds": seeds})
    return pairs


def summary(pair: dict, design: Design) -> str:
    """One pair's outcome in words: "adam better after 5 seeds", "no evidence at max_seeds (20)"."""
    if pair["verdict"] == "no evidence":
        return f"no evidence at max_seeds ({design.most})"
    if pair["verdict"] == "open":
        return f"open after {pair['seeds']} seeds (the sweep ended before deciding)"
    return f"{pair['verdict']} after {pair['seeds']} seeds"


def in_words(decided: dict) -> str:
    """Every pair's outcome on one line (the parent run's tag): "adam vs sgd: adam better after 5 seeds; ..."."""
    return "; ".join(f"{p['a']} vs {p['b']}: {summary(p, decided['design'])}" for p in decided["pairs"])


def markdown(decided: dict) -> list[str]:
    """The report's "Sequential verdicts" section: the test, its error rate, each pair's outcome."""
    design = decided["design"]
    return ["", "## Sequential verdicts", "", f"Seeds were added only to the choices in an undecided pair: a "
            f"{TEST_NAME}, at {', '.join(map(str, design.looks))} seeds per choice, each look at "
            f"p <= {design.level:.3g}. The chance of a false verdict is at most {design.alpha} {design.control}, "
            "over all the looks.", "", "| A | B | verdict |", "|---|---|---|",
            *(f"| {literal(p['a'])} | {literal(p['b'])} | **{literal(summary(p, design))}** |" for p in decided["pairs"])]


def table(decided: dict) -> Table:
    """The same section as a console table."""
    design = decided["design"]
    shown = Table(title=f"Sequential verdicts: permutation test at {', '.join(map(str, design.looks))} seeds, "
                        f"false-verdict rate <= {design.alpha} {design.control}")
    for column in ("A", "B", "verdict"):
        shown.add_column(column)
    for p in decided["pairs"]:
        shown.add_row(p["a"], p["b"], summary(p, design))
    return shown
