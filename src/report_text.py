"""The report's words: report.md (src/report_html.py makes the page of it) and the
console's tables, both from what compare.analyse returns."""

import numpy as np
from rich.console import Console
from rich.table import Table

from src import champion, sequential, stats


def markdown(result: dict, title: str) -> str:
    """The report as markdown: the tables, the verdicts, the tuning, the plots."""
    best_word = "highest" if result["mode"] == "max" else "lowest"
    test = f"{result['test_metric']} | " if result["test_metric"] else ""
    lines = [f"# {title}", "",
             f"{result['runs']} runs: {result['finished']} FINISHED, "
             + (f"{result['pruned']} pruned (stopped early by the Optuna pruner, not scored), " if result["pruned"] else "")
             + f"{result['failed']} not finished (FAILED, KILLED or RUNNING). "
             f"Metric: `{result['metric']}` ({best_word} is better); grouped by "
             f"{', '.join(result['by']) or 'nothing (one group)'}"
             + (f"; tuned per choice: {', '.join(result['nuisance'])}" if result["nuisance"] else "") + ".", "",
             f"| choice | runs | failed | mean | {test}std | 95% CI | median | IQM | best | fit s |",
             f"|---|---:|---:|---:|{'---:|' if test else ''}---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['choice']} | {r['runs']} | {r['failed']} | {r['mean']:.4f} | "
                     f"{_number(r['test']) + ' | ' if test else ''}{_number(r['std'])} | "
                     f"{_interval(r['ci'], r['runs'])} | {r['median']:.4f} | {r['iqm']:.4f} | "
                     f"{r['best']:.4f} | {r['fit_s']:.1f} |")
    lines += [f"- WARNING {name}: its runs differ in {', '.join(keys)}; they are pooled as one choice "
              "(group by them with --by, or compare runs that share them)" for name, keys in result["pooled"].items()]
    lines += ["", "![intervals](intervals.png)", "", "![learning curves](learning_curves.png)"]
    if result["fixed"]:
        lines += ["", "## Fixed for the sweep", "", "The sweep's command-line overrides that it did not sweep.", "",
                  "| setting | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, _, value in (f.partition("=") for f in result["fixed"])]
    lines += ["", "## Runs", "", "The runs each choice's scores come from (MLflow run ids).", "",
              "| choice | runs |", "|---|---|"]
    lines += [f"| {r['choice']} | {' '.join(f'`{i}`' for i in r['run_ids'])} |" for r in result["rows"]]
    lines += ["", "## Pairwise: P(A beats B)", "",
              "Over all pairs (one run of A, one of B; unpaired, ties count 1/2), with a 95% bootstrap "
              "interval. A verdict needs the interval above 0.5 and reaching 0.75 (Bouthillier et al. 2021), "
              f"and an interval needs at least {stats.MIN_RUNS} runs per choice.", "",
              "| A | B | P(A > B) | 95% CI | verdict |", "|---|---|---:|---|---|"]
    for p in result["pairs"]:
        lines.append(f"| {p['a']} | {p['b']} | {p['p']:.3f} | {_interval(p['ci'], digits=3)} | **{p['verdict']}** |")
    if not result["pairs"]:
        lines.append("| (one choice only: nothing to compare) | | | | |")
    else:
        lines += ["", "![P(A beats B)](pairwise.png)"]
    if result["tuning"]:
        lines += ["", "## Tuning: the best setting per choice", "",
                  "| choice | best setting | mean | runs | settings tried |", "|---|---|---:|---:|---:|"]
        for t in result["tuning"]:
            lines.append(f"| {t['choice']} | {t['setting']} | {t['mean']:.4f} | {t['runs']} | {t['settings']} |")
        lines += [f"- WARNING {t['choice']}: {w}" for t in result["tuning"] for w in t["warnings"]]
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
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![expected best](expected_max.png)", ""]
    return "\n".join(lines)


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
    pairs = Table(title="P(A beats B), all pairs of runs, 95% bootstrap CI")
    for column in ("A", "B", "P(A>B)", "95% CI", "verdict"):
        pairs.add_column(column)
    for p in result["pairs"]:
        style = "bold green" if p["verdict"].endswith(" better") else "yellow"
        pairs.add_row(p["a"], p["b"], f"{p['p']:.3f}", _interval(p["ci"], digits=3), f"[{style}]{p['verdict']}[/]")
    console.print(pairs)
    if result["sequential"]:
        console.print(sequential.table(result["sequential"]))
    for t in result["tuning"]:
        console.print(f"tuned {t['choice']}: best {t['setting']} (mean {t['mean']:.4f} over {t['runs']} runs)")
        for warning in t["warnings"]:
            console.print(f"[bold red]WARNING[/] {t['choice']}: {warning}")
