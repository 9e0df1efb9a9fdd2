"""The report's words: report.md (src/report_html.py makes the page of it) and the
console's tables, both from what compare.analyse returns."""

import numpy as np
from rich.console import Console
from rich.table import Table

from src import champion, sequential, stats
from src.markup import literal as lit


def markdown(result: dict, title: str) -> str:
    """The report as markdown: the tables, the verdicts, the tuning, the plots."""
    best_word = "highest" if result["mode"] == "max" else "lowest"
    # Every recorded value goes in through lit(): as text, never as markup (src/markup.py).
    test = f"{lit(result['test_metric'])} | " if result["test_metric"] else ""
    metric = result["metric"].replace("`", "'")  # inside a code span, markdown escapes the rest
    lines = [f"# {lit(title)}", "",
             f"{result['runs']} runs: {result['finished']} FINISHED, "
             + (f"{result['pruned']} pruned (stopped early by the Optuna pruner, not scored), " if result["pruned"] else "")
             + f"{result['failed']} not finished (FAILED, KILLED or RUNNING). "
             f"Metric: `{metric}` ({best_word} is better); grouped by "
             f"{lit(', '.join(result['by'])) or 'nothing (one group)'}"
             + (f"; tuned per choice: {lit(', '.join(result['nuisance']))}" if result["nuisance"] else "") + ".", "",
             f"| choice | runs | failed | mean | {test}std | 95% CI | median | IQM | best | fit s |",
             f"|---|---:|---:|---:|{'---:|' if test else ''}---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {lit(r['choice'])} | {r['runs']} | {r['failed']} | {r['mean']:.4f} | "
                     f"{_number(r['test']) + ' | ' if test else ''}{_number(r['std'])} | "
                     f"{_interval(r['ci'], r['runs'])} | {r['median']:.4f} | {r['iqm']:.4f} | "
                     f"{r['best']:.4f} | {r['fit_s']:.1f} |")
    lines += [f"- WARNING {lit(name)}: its runs differ in {lit(', '.join(keys))}; they are pooled as one choice "
              "(group by them with --by, or compare runs that share them)" for name, keys in result["pooled"].items()]
    lines += [f"- WARNING {lit(line)}" for line in flags(result)]
    lines += ["", "![intervals](intervals.png)", "", "![learning curves](learning_curves.png)"]
    if result["fixed"]:
        lines += ["", "## Fixed for the sweep", "", "The sweep's command-line overrides that it did not sweep.", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {lit(key)} | {lit(value)} |" for key, _, value in (f.partition("=") for f in result["fixed"])]
    lines += ["", "## Runs", "", "The runs each choice's scores come from (MLflow run ids).", "",
              "| choice | runs |", "|---|---|"]
    lines += [f"| {lit(r['choice'])} | {' '.join(f'`{i}`' for i in r['run_ids'])} |" for r in result["rows"]]
    lines += ["", "## Pairwise verdicts", "", lit(rule_in_words(result)), "",
              f"| A | B | mean A − B | P(A > B) | 95% CI | p | p (Holm) | alone | {_family_title(result)} |",
              "|---|---|---:|---:|---|---:|---:|---|---|"]
    sign = 1.0 if result["mode"] == "max" else -1.0
    for p in result["pairs"]:
        lines.append(f"| {lit(p['a'])} | {lit(p['b'])} | {sign * p['difference']:+.4f} | {p['prob']:.3f} | "
                     f"{_interval(p['ci'], digits=3)} | {p['p']:.3g} | {p['p_family']:.3g} | "
                     f"{_bold(p['verdict'], result, 'verdict')} | {_bold(p['family'], result, 'family')} |")
    if not result["pairs"]:
        lines.append("| (one choice only: nothing to compare) | | | | | | | | |")
    else:
        lines += ["", *(f"- {lit(line)}" for line in undecided(result)), "", "![P(A beats B)](pairwise.png)"]
    if result["tuning"]:
        lines += ["", "## Tuning: the best setting per choice", "",
                  "| choice | best setting | mean | runs | settings tried |", "|---|---|---:|---:|---:|"]
        for t in result["tuning"]:
            lines.append(f"| {lit(t['choice'])} | {lit(t['setting'])} | {t['mean']:.4f} | {t['runs']} | {t['settings']} |")
        lines += [f"- WARNING {lit(t['choice'])}: {lit(w)}" for t in result["tuning"] for w in t["warnings"]]
        lines += [f"- {lit(line)}" for line in ties(result)]
        lines += ["", "![isolation plot](isolation.png)"]
    if result["sequential"]:
        lines += sequential.markdown(result["sequential"])
    if result.get("champion"):
        lines += champion.markdown(result["champion"])
    lines += ["", f"## Expected {best_word} score vs number of trials (Dodge et al. 2019)", "",
              "| choice | " + " | ".join(f"n={n}" for n in result["trials"]) + " |",
              "|---|" + "---:|" * len(result["trials"])]
    for name, curve in result["expected"].items():
        cells = [f"{curve[n - 1]:.4f}" if n <= len(curve) else "" for n in result["trials"]]
        lines.append(f"| {lit(name)} | " + " | ".join(cells) + " |")
    lines += ["", "![expected best](expected_max.png)", ""]
    return "\n".join(lines)


def _family_title(result: dict) -> str:
    count = len(result["pairs"])
    return f"in the sweep (Holm, {count} pair{'s' if count != 1 else ''})"


def _bold(verdict: str, result: dict, key: str) -> str:
    """The verdict that counts for the champion in bold."""
    counts = (key == "family") == (result["correction"] == "holm")
    return f"**{lit(verdict)}**" if counts else lit(verdict)


def rule_in_words(result: dict) -> str:
    """What a verdict means, in one paragraph: the test, the level, the effect, the control."""
    effect = (f"the difference in means is at least {result['min_difference']:g} (compare.min_difference)"
              if result["min_difference"] is not None else
              f"P(A beats B) >= {stats.MIN_PROB_BETTER} (a run of A beats a run of B at least 3 times in 4, ties 1/2; "
              "Bouthillier et al. 2021)")
    counted = ("the sweep's column (Holm)" if result["correction"] == "holm" else "the alone column (compare.correction=none)")
    return (f"\"A better\" means: an exact two-sided permutation test of the difference in means (Pitman 1937; "
            f"every split of the pooled runs up to {stats.EXACT_SPLITS:,}, else {stats.PERMUTATIONS:,} random ones) "
            f"rejects \"A and B score alike\" at alpha = {result['alpha']:g}, and {effect}. \"Alone\": each pair at "
            f"alpha, so each pair's chance of a false verdict is at most {result['alpha']:g}. \"In the sweep\": the "
            f"p-values adjusted by Holm's (1979) step-down correction across all {len(result['pairs'])} pairs, so the "
            f"chance of any false verdict among them is at most {result['alpha']:g}. \"No evidence\" is not \"equal\": "
            "below, each undecided pair says the smallest difference its runs would detect 80% of the time. "
            f"\"Cannot decide\": too few runs for any p to reach the level. The champion needs {counted}. "
            "Interval of a mean: Student's t; of P(A beats B): Newcombe's (2006) score interval.")


def undecided(result: dict) -> list[str]:
    """Per pair without the verdict that counts: why, and what more runs would show."""
    holm = result["correction"] == "holm"
    lines = []
    for p in result["pairs"]:
        verdict, why = (p["family"], p["why_family"]) if holm else (p["verdict"], p["why"])
        if verdict.endswith(" better"):
            continue
        detectable, needed = (p["detectable_family"], p["runs_needed_family"]) if holm else (p["detectable"], p["runs_needed"])
        line = f"{p['a']} vs {p['b']}: {verdict} ({why})"
        if np.isfinite(detectable) and detectable > 0:
            line += (f"; with this spread these runs would detect a difference in means of about {detectable:.4g} "
                     f"80% of the time (observed: {abs(p['difference']):.4g})")
            line += (f"; about {needed} runs each would detect the observed one" if needed else
                     "; the observed difference is too small to count at any number of runs")
        elif np.isfinite(detectable):
            line += "; every run of both scores the same: more runs of this data cannot tell them apart"
        lines.append(line)
    return lines


def flags(result: dict) -> list[str]:
    """The WARNINGs about what the scores can say: choices still improving, or saturated."""
    lines = []
    for r in result["rows"]:
        if r["improving"]:
            epochs = result["chosen"][r["choice"]][0].data.params.get("trainer.max_epochs")
            longer = f"trainer.max_epochs={2 * int(epochs)}" if epochs and epochs.isdigit() else "more epochs"
            lines.append(f"{r['choice']}: still improving at its last epoch in {r['improving'][0]} of "
                         f"{r['improving'][1]} runs ({result['metric']} rose in the last quarter of its epochs): "
                         f"it is compared undertrained. Train longer ({longer}) or faster (optimizer=adam, a larger "
                         "optimizer.lr); no champion is registered while a choice is still improving.")
        if r["saturated"]:
            lines.append(f"{r['choice']}: saturated: {r['saturated']} of {r['runs']} runs score {result['metric']} "
                         f"{result['ceiling']:g}, the metric's ceiling, so runs at it cannot be told apart. Use a "
                         "larger validation split (e.g. data.val_fraction=0.3) or a finer objective "
                         "(objective=val/loss, where the choices share one loss).")
    return lines


def ties(result: dict) -> list[str]:
    """Per tuned choice whose best mean score several settings share: which one was kept."""
    return [f"{t['choice']}: {len(t['tied']) + 1} settings tie at mean {t['mean']:.4f} "
            f"({', '.join([t['setting'], *t['tied']])}); kept {t['setting']}, the lowest mean val/loss"
            + (f" ({t['loss']:.4g})" if np.isfinite(t["loss"]) else "")
            for t in result["tuning"] if t["tied"]]


def _number(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.4f}"


def _interval(ci: tuple | None, runs: int | None = None, digits: int = 4) -> str:
    if ci is None:
        return f"too few runs (n={runs})" if runs is not None else "–"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def print_tables(result: dict, title: str, console: Console) -> None:
    table = Table(title=f"{title}: {result['metric']} ({'higher' if result['mode'] == 'max' else 'lower'} is better)")
    for column in ("choice", "runs", "failed", "mean", "std", "95% CI", "median", "IQM", "best", "fit s"):
        table.add_column(column, justify="left" if column == "choice" else "right")
    for r in result["rows"]:
        table.add_row(r["choice"], str(r["runs"]), str(r["failed"]), f"{r['mean']:.4f}", _number(r["std"]),
                      _interval(r["ci"], r["runs"], digits=3), f"{r['median']:.4f}", f"{r['iqm']:.4f}",
                      f"{r['best']:.4f}", f"{r['fit_s']:.1f}")
    console.print(table)
    for name, keys in result["pooled"].items():
        console.print(f"[bold red]WARNING[/] {name}: its runs differ in {', '.join(keys)}; pooled as one choice")
    for line in flags(result):
        console.print(f"[bold red]WARNING[/] {line}", markup=True, highlight=False)
    if result["pairs"]:
        pairs = Table(title=f"Pairwise verdicts: permutation test at alpha {result['alpha']:g}, effect "
                            + (f"|difference| >= {result['min_difference']:g}" if result["min_difference"] is not None
                               else f"P(A beats B) >= {stats.MIN_PROB_BETTER}"))
        for column in ("A", "B", "P(A>B)", "95% CI", "p", "p (Holm)", "alone", _family_title(result)):
            pairs.add_column(column)
        for p in result["pairs"]:
            cells = [f"[{'bold green' if v.endswith(' better') else 'yellow'}]{v}[/]" for v in (p["verdict"], p["family"])]
            pairs.add_row(p["a"], p["b"], f"{p['prob']:.3f}", _interval(p["ci"], digits=3), f"{p['p']:.3g}",
                          f"{p['p_family']:.3g}", *cells)
        console.print(pairs)
        for line in undecided(result):
            console.print(line, markup=False, highlight=False)
    if result["sequential"]:
        console.print(sequential.table(result["sequential"]))
    for t in result["tuning"]:
        console.print(f"tuned {t['choice']}: best {t['setting']} (mean {t['mean']:.4f} over {t['runs']} runs)")
        for warning in t["warnings"]:
            console.print(f"[bold red]WARNING[/] {t['choice']}: {warning}")
    for line in ties(result):
        console.print(line, markup=False, highlight=False)
