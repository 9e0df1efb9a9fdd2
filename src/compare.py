"""`python -m src.compare`: which choice wins, and how sure we are, from MLflow runs.

    python -m src.compare                          # the latest sweep's parent run
    python -m src.compare --sweep <parent run id> --by model --metric test/acc
    python -m src.compare --filter "params.data = 'iris'" --out reports/iris

Runs are grouped by the choices that vary (or --by); each group's scores are the
objective's best value per run (`<metric>_best`, else the metric's last value).
Nuisance params (tuned per choice) are settled first: per choice, the setting with
the best mean score is kept (ties: the lower validation loss) and only its runs are
compared. Each trained run counts once (a sweep's re-used run stands for the run it
points to).

A pair's verdict: "A better" when an exact two-sided permutation test of the difference
in means rejects "A and B score alike" at --alpha (0.05) AND the effect is meaningful:
P(A beats B) >= 0.75 (Bouthillier et al. 2021), or a difference of at least
--min-difference where given. Each pair is judged alone (its false-verdict rate <= alpha)
and within the sweep's family of pairs (Holm's correction: the chance of any false
verdict in the report <= alpha); the champion needs the family's verdicts
(--correction none: the pair's). Too few runs to ever reach alpha: "cannot decide",
with the runs that could. Choices still improving at their last epoch, or saturated at
the metric's ceiling, are flagged (WARNING), and the first blocks the champion.
"""

import argparse
import os
import re
import shlex
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from rich.console import Console

from src import PROJECT_ROOT, champion, record, sequential, stats, store
from src.identity import NOT_TRAINING
from src.validate import ConfigError, folder_problem, one_of

# Params recorded on every run that follow from others (sizes), never compared on their own.
DERIVED = ("seed", "seeds", "seeds_together", "model.num_params", "data.train_size", "compare.scientific",
           "compare.nuisance", "compare.until_decided", "compare.max_seeds", "compare.alpha", "compare.correction",
           "compare.min_difference")
CORRECTIONS = ("holm", "none")  # compare.correction: which verdicts the champion needs
# Metrics with a ceiling a score can reach (1 for accuracy-like, 0 for an error): runs
# at it cannot be told apart, whatever the choice.
CEILINGS = {"max": (("acc", "accuracy", "f1", "auroc", "auc", "precision", "recall", "r2"), 1.0),
            "min": (("mse", "mae", "rmse"), 0.0)}
IMPROVING_WINDOW = 0.25  # the last quarter of a run's validations
IMPROVING_SHARE = 0.05  # still improving: its best there beats the best before by > 5% of the run's climb


def sweep_runs(client: MlflowClient, parent_id: str) -> list:
    """Every child run of a sweep's parent, whatever its status."""
    parent = client.get_run(parent_id)
    query = f"tags.`{record.PARENT_RUN_ID}` = '{parent_id}'"
    return client.search_runs([parent.info.experiment_id], query, order_by=["attributes.start_time ASC"])


def sweep_parent(client: MlflowClient, run_id: str):
    """The sweep's parent run of that id, or None where no run (or no sweep's parent) has it."""
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    return run if run.data.tags.get(record.SWEEP) == "parent" else None


def latest_parent(client: MlflowClient, experiment_ids: list[str]):
    found = client.search_runs(experiment_ids, f"tags.`{record.SWEEP}` = 'parent'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0] if found else None


def varied_params(runs: list, exclude: tuple = ()) -> list[str]:
    """Params whose value differs across the runs, without the seed and derived sizes;
    a dotted param (model.hidden_size) is dropped when its group (model) varies."""
    keys = sorted(set().union(*(r.data.params for r in runs)))
    varied = [k for k in keys if k not in DERIVED and k not in exclude
              and len({r.data.params.get(k) for r in runs}) > 1]
    return [k for k in varied if k.split(".")[0] == k or k.split(".")[0] not in varied]


def direction(metric: str, runs: list) -> str:
    """"max" or "min": the objective's recorded mode, else the metric's name decides."""
    for run in runs:
        if run.data.tags.get(record.OBJECTIVE) == metric and record.OBJECTIVE_MODE in run.data.tags:
            return run.data.tags[record.OBJECTIVE_MODE]
    from src.module import objective_of  # heavy (Lightning); only for runs without the tag

    return objective_of(metric, "multiclass")[1]


def score(run, metric: str) -> float | None:
    metrics = run.data.metrics
    value = metrics.get(f"{metric}_best", metrics.get(metric))
    return None if value is None or np.isnan(value) else value


def trained_once(runs: list) -> list:
    """One run per trained run: a re-used run (skip_finished) and the run it points to
    are one; the one that trained is kept where both are there."""
    kept: dict[str, object] = {}
    for run in runs:
        trained = run.data.tags.get(record.REUSED_FROM, run.info.run_id)
        if trained not in kept or trained == run.info.run_id:
            kept[trained] = run
    return list(kept.values())


def pooled_differences(members: list, exclude: list[str]) -> list[str]:
    """The settings that differ among the runs pooled into one choice ("trainer.max_epochs
    (3, 5)"), other than the seed, the tuned params and what does not change training."""
    def counts(key: str) -> bool:
        return (key not in DERIVED and key not in exclude and not key.startswith("data.inferred.")
                and key.split(".")[0] not in NOT_TRAINING)

    # Every differing key, its group's own keys included: runs pooled as one model can
    # still differ in model.hidden_size or optimizer.lr.
    keys = sorted(set().union(*(r.data.params for r in members)))
    differing = [k for k in keys if counts(k) and len({r.data.params.get(k) for r in members}) > 1]
    return [f"{k} ({', '.join(sorted({str(r.data.params.get(k)) for r in members}))})" for k in differing]


def _label(run, keys: list[str]) -> str:
    return "-".join(str(run.data.params.get(k)) for k in keys) if keys else "all"


def _named(run, keys: list[str]) -> str:
    """The choice with its params named ("data.batch_size=1"), for legends."""
    return ", ".join(f"{k}={run.data.params.get(k)}" for k in keys) if keys else "all"


def fixed_settings(parent) -> list[str]:
    """The sweep's command-line overrides that it did not sweep (`trainer.max_epochs=3`),
    without where things are written (paths, logger, Hydra's own) or the comparison's settings."""
    if parent is None:
        return []
    swept = {k.removeprefix("search.") for k in parent.data.params if k.startswith("search.")}
    fixed = []
    try:  # shlex-quoted since 2026-12 (a value with spaces is one override); older tags split alike
        typed = shlex.split(parent.data.tags.get(record.OVERRIDES, ""))
    except ValueError:  # an unbalanced quote of an older tag
        typed = parent.data.tags.get(record.OVERRIDES, "").split()
    for override in typed:
        key = override.lstrip("+~").partition("=")[0]
        if key not in swept and re.split(r"[./]", key)[0] not in ("paths", "hydra", "logger", *NOT_TRAINING):
            fixed.append(override)
    return fixed


def trial_counts(longest: int) -> list[int]:
    """The numbers of trials the expected-best table and figure show: every one up to 12,
    beyond, 1, the multiples of a round step (at most ~10 of them) and the last."""
    if longest <= 12:
        return list(range(1, longest + 1))
    step = next(s for s in (2, 5, 10, 20, 50, 100, 200, 500, 1000) if longest / s <= 10)
    return sorted({1, *range(step, longest + 1, step), longest})


def by_seed(run) -> int:
    """Sort key: the order a sequential sweep added the run in."""
    return int(run.data.params.get("seed", 0))


def search_range(key: str, runs: list, parent) -> tuple[float, float, bool, bool] | None:
    """(low, high, continuous, log scale) of a tuned param: the sweep's search space when
    the parent recorded one with numbers in it, else the values the runs tried."""
    text = parent.data.params.get(f"search.{key}", "") if parent else ""
    numbers = [float(x) for x in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text.split("tag(")[-1])]
    if len(numbers) < 2:
        try:
            numbers = [float(r.data.params[key]) for r in runs if key in r.data.params]
        except ValueError:
            return None  # a categorical nuisance param has no edge
    if len(numbers) < 2:
        return None
    return min(numbers), max(numbers), "interval" in text, "log" in text


def at_edge(value: float, low: float, high: float, continuous: bool, log: bool) -> bool:
    """A grid's lowest or highest value; in a continuous range, its outer tenth."""
    if not continuous:
        return value in (low, high)
    if log and low > 0:
        value, low, high = np.log(value), np.log(low), np.log(high)
    return value <= low + 0.1 * (high - low) or value >= high - 0.1 * (high - low)


def at_ceiling(metric: str, mode: str) -> float | None:
    """The best value the metric can take (1.0 for val/acc, 0.0 for val/mse), if it has one."""
    names, value = CEILINGS[mode]
    return value if metric.rsplit("/", 1)[-1] in names else None


def within(interval: tuple[float, float], ceiling: float | None, mode: str) -> tuple[float, float]:
    """The interval cut at the metric's ceiling (a mean accuracy is never above 1): its
    coverage stays, since the true mean lies below the ceiling too."""
    if ceiling is None:
        return interval
    low, high = interval
    return (low, min(high, ceiling)) if mode == "max" else (max(low, ceiling), high)


def settings_of(runs: list, nuisance: list[str], metric: str, sign: float):
    """Per nuisance setting: (mean score, mean validation loss) of its runs, and the best
    setting: the highest mean score, ties broken by the lower validation loss (a tie of
    saturated accuracies says nothing), then by the setting's name."""
    settings: dict[str, list] = {}
    for run in runs:
        settings.setdefault(_label(run, nuisance), []).append(run)
    means = {s: float(np.mean([score(r, metric) for r in rs])) for s, rs in settings.items()}
    losses = {s: float(np.mean([r.data.metrics.get("val/loss", np.inf) for r in rs])) for s, rs in settings.items()}
    best = min(settings, key=lambda s: (-sign * means[s], losses[s], s))
    return settings, means, losses, best


def analyse(runs: list, metric: str | None = None, by: list[str] | None = None,
            nuisance: list[str] | None = None, parent=None, alpha: float | None = None,
            min_difference: float | None = None, correction: str | None = None) -> dict:
    """Everything the report shows, as plain numbers (tested without any drawing).
    alpha, min_difference and correction default to what the sweep's parent recorded."""
    runs = trained_once(runs)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished:
        raise ValueError(f"No FINISHED runs to compare (of {len(runs)}).")
    metric = metric or finished[0].data.tags.get(record.OBJECTIVE)
    mode = direction(metric, finished)
    sign = 1.0 if mode == "max" else -1.0  # stats want higher = better
    nuisance = list(nuisance or [])
    by = list(by) if by else varied_params(finished, exclude=tuple(nuisance))
    alpha, min_difference, correction = rule(parent, alpha, min_difference, correction)

    groups: dict[str, list] = {}
    for run in finished:
        if score(run, metric) is not None:
            groups.setdefault(_label(run, by), []).append(run)
    failed = {}
    pruned = [r for r in runs if record.PRUNED in r.data.tags]  # an Optuna pruner's stop: no score, no failure
    for run in runs:
        if run.info.status != "FINISHED" and record.PRUNED not in run.data.tags:
            failed[_label(run, by)] = failed.get(_label(run, by), 0) + 1

    rows, tuning, chosen, all_scores, pooled = [], [], {}, {}, {}
    # The objective's test counterpart (val/acc -> test/acc), beside it in the table.
    test_metric = "test/" + metric.removeprefix("val/") if metric.startswith("val/") else None
    ceiling = at_ceiling(metric, mode)
    for name, members in sorted(groups.items()):
        all_scores[name] = [score(r, metric) for r in members]
        if differences := pooled_differences(members, by + nuisance):
            pooled[name] = differences
        kept = members
        if nuisance:  # the nuisance setting with the best mean score, per choice
            settings, means, losses, best = settings_of(members, nuisance, metric, sign)
            kept = settings[best]
            # An edge is worth widening only when it is better than every other setting, not tied with one.
            strictly = all(sign * means[best] > sign * means[s] for s in settings if s != best)
            warnings = []
            for key in nuisance:
                space = search_range(key, members, parent)
                try:
                    value = float(kept[0].data.params[key])
                except (KeyError, ValueError):
                    continue
                if space and strictly and at_edge(value, *space):
                    warnings.append(f"{key}={kept[0].data.params[key]} is at the edge of its search range "
                                    f"[{space[0]:g}, {space[1]:g}]: widen it")
            tied = [s for s in settings if s != best and means[s] == means[best]]
            tuning.append({"choice": name, "setting": best, "mean": means[best], "runs": len(kept),
                           "settings": len(settings), "warnings": warnings, "means": means,
                           "tied": tied, "loss": losses[best]})
        chosen[name] = kept
        values = np.array([score(r, metric) for r in kept])
        fit = [r.data.metrics["time/fit_s"] for r in kept if "time/fit_s" in r.data.metrics]
        tests = [r.data.metrics[test_metric] for r in kept if test_metric in r.data.metrics]
        at_top = int(np.sum(np.isclose(values, ceiling, rtol=0, atol=1e-9))) if ceiling is not None else 0
        rows.append({
            "choice": name, "runs": len(values), "failed": failed.get(name, 0),
            "mean": float(values.mean()), "test": float(np.mean(tests)) if tests else float("nan"),
            "scores": values.tolist(), "run_ids": [r.info.run_id for r in kept], "named": _named(kept[0], by),
            "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "ci": within(stats.mean_interval(values), ceiling, mode) if len(values) >= stats.MIN_RUNS else None,
            "median": float(np.median(values)),
            "iqm": stats.iqm(values), "best": float(values.max() if mode == "max" else values.min()),
            "fit_s": float(np.mean(fit)) if fit else float("nan"),
            "saturated": at_top if 2 * at_top >= len(values) else 0, "improving": None,
        })

    ordered = {name: sign * np.array([score(r, metric) for r in chosen[name]]) for name in chosen}
    pairs = stats.pairwise(ordered, alpha, min_difference)
    expected = {name: [sign * stats.expected_max(sign * np.array(v), n) for n in range(1, len(v) + 1)]
                for name, v in all_scores.items()}
    # A sweep that added seeds until decided on its objective (src/sweeper.py): its looks
    # replayed, seeds in the order they were added.
    decided, design = None, sequential.design_of(parent.data.params) if parent is not None else None
    if design and metric == finished[0].data.tags.get(record.OBJECTIVE):
        ordered = {name: [sign * score(r, metric) for r in sorted(members, key=by_seed)]
                   for name, members in chosen.items()}
        decided = {"design": design, "pairs": sequential.replay(ordered, design)}
    return {"metric": metric, "mode": mode, "by": by, "nuisance": nuisance, "rows": rows, "pairs": pairs,
            "alpha": alpha, "min_difference": min_difference, "correction": correction, "ceiling": ceiling,
            "tuning": tuning, "expected": expected, "chosen": chosen, "pooled": pooled, "sequential": decided,
            "test_metric": test_metric, "fixed": fixed_settings(parent),
            "trials": trial_counts(max(len(v) for v in expected.values())),
            "runs": len(runs), "finished": len(finished), "pruned": len(pruned),
            "failed": len(runs) - len(finished) - len(pruned)}


def rule(parent, alpha: float | None, min_difference: float | None, correction: str | None):
    """(alpha, min_difference, correction): as given, else as the sweep's parent recorded
    them (compare.alpha, ...), else the defaults (0.05, none: P(A beats B) >= 0.75, holm)."""
    params = parent.data.params if parent is not None else {}
    if alpha is None:
        alpha = float(params.get("compare.alpha", 0.05))
    if min_difference is None and params.get("compare.min_difference", "None") not in ("None", "none", "null"):
        min_difference = float(params["compare.min_difference"])
    correction = correction or params.get("compare.correction", "holm")
    return alpha, min_difference, correction


def still_improving(curve: list[tuple[float, float]], sign: float) -> bool:
    """Whether a run's validation curve (epoch, value) still climbed at its end: its best
    in the last quarter of the validations beats its best before by more than 5% of
    what the whole run gained. Four validations at least; fewer say nothing."""
    values = [sign * value for _, value in curve if np.isfinite(value)]
    if len(values) < 4:
        return False
    window = max(2, int(np.ceil(IMPROVING_WINDOW * len(values))))
    before, last = max(values[:-window]), max(values[-window:])
    climb = max(values) - values[0]
    return climb > 0 and last - before > IMPROVING_SHARE * climb


def flag_improving(result: dict, curves: dict[str, list[list]]) -> None:
    """Each row's "improving": (runs still improving, runs with a curve) where at least
    half of a choice's runs were still improving at their last epoch; else None."""
    sign = 1.0 if result["mode"] == "max" else -1.0
    for row in result["rows"]:
        judged = [curve for curve in curves.get(row["choice"], []) if len(curve) >= 4]
        rising = sum(still_improving(curve, sign) for curve in judged)
        row["improving"] = (rising, len(judged)) if judged and 2 * rising >= len(judged) else None


def history(client: MlflowClient, run, metric: str) -> list[tuple[float, float]]:
    """The validation curve of the metric against epochs trained, so that choices with
    different steps per epoch (batch sizes) line up. Lightning records `epoch` (from 0)
    at every step it logs, the validation metrics included; a reused run points to the
    one that trained."""
    run_id = run.data.tags.get(record.REUSED_FROM, run.info.run_id)
    key = "val/" + metric.rsplit("/", 1)[-1]
    epochs = {m.step: m.value for m in client.get_metric_history(run_id, "epoch")}
    points = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [(epochs.get(m.step, i) + 1, m.value) for i, m in enumerate(points)]


def report(client: MlflowClient, runs: list, out_dir: Path, parent=None, metric=None, by=None,
           nuisance=None, console: Console | None = None, ended: str | None = None, alpha: float | None = None,
           min_difference: float | None = None, correction: str | None = None) -> dict:
    """Analyse the runs, print the tables, write report.md, report.html and the PNGs into
    out_dir, and log them under `report/` of the sweep's parent run when there is one. At
    a sweep's end (`ended`: its status) the winner is registered (src/champion.py)."""
    from src import report_html, report_plots, report_text

    if parent is not None and nuisance is None:
        nuisance = [k for k in parent.data.params.get("compare.nuisance", "none").split(",") if k != "none"]
    if parent is not None and by is None:
        by = [k for k in parent.data.params.get("compare.scientific", "none").split(",") if k != "none"] or None
    result = analyse(runs, metric, by, nuisance, parent, alpha, min_difference, correction)
    curves = {name: [history(client, r, result["metric"]) for r in members] for name, members in result["chosen"].items()}
    flag_improving(result, curves)  # before the champion: an undertrained choice blocks it
    console = console or Console(width=max(Console().width, 120))  # the table needs ~110 columns
    title = f"Comparison: {parent.info.run_name} ({parent.info.run_id})" if parent else "Comparison"
    report_text.print_tables(result, title, console)
    if found := champion.outcome(client, result, parent, ended):
        result["champion"] = found
        console.print(found["line"], soft_wrap=True, markup=False)  # one line, the load call whole

    out_dir.mkdir(parents=True, exist_ok=True)
    text = report_text.markdown(result, title)
    (out_dir / "report.md").write_text(text)
    figures = report_plots.figures(result, curves)
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=100)
    (out_dir / "report.html").write_text(report_html.page(text, figures))
    if parent is not None:
        folder = report_folder(result["metric"], runs)
        client.log_artifacts(parent.info.run_id, str(out_dir), folder)
        # The verdicts at a glance in the UI's run list, the numbers in the report.
        suffix = folder.removeprefix("report")
        client.set_tag(parent.info.run_id, f"{record.VERDICTS}{suffix}", (stats.in_words(result["pairs"]) or "one choice")[:5000])
        client.set_tag(parent.info.run_id, f"{record.VERDICTS_FAMILY}{suffix}",
                       (stats.in_words(result["pairs"], "family") or "one choice")[:5000])
        client.set_tag(parent.info.run_id, f"{record.VERDICT_RULE}{suffix}", report_text.rule_in_words(result)[:5000])
        if result["sequential"]:
            client.set_tag(parent.info.run_id, f"{record.SEQUENTIAL_VERDICTS}{folder.removeprefix('report')}",
                           sequential.in_words(result["sequential"])[:5000])
        if folder == "report":
            # Each run's choice as a tag: the UI's runs table can group by it (Group by >
            # triad.choice) and chart each choice's mean and range over its seeds.
            for run in runs:
                client.set_tag(run.info.run_id, record.CHOICE, _named(run, result["by"]))
    console.print(f"Report: {out_dir / 'report.md'} and {out_dir / 'report.html'}", soft_wrap=True, markup=False)
    return result


def objective(runs: list) -> str | None:
    """The metric the runs' sweep optimised (tag triad.objective), if they name one."""
    return next((r.data.tags[record.OBJECTIVE] for r in runs if record.OBJECTIVE in r.data.tags), None)


def report_folder(metric: str | None, runs: list) -> str:
    """`report` for the runs' objective; another metric's report goes beside it, never
    over it (`report-test_acc`), in the sweep's folder and on its parent run alike."""
    return "report" if metric in (None, objective(runs)) else "report-" + metric.replace("/", "_")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.compare", description=__doc__.split("\n\n")[0].split("\n")[0],
                                     epilog=__doc__.split("\n\n", 3)[3], formatter_class=argparse.RawDescriptionHelpFormatter)
    default_uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}")
    parser.add_argument("--tracking-uri", default=default_uri, help=f"MLflow store (default: {default_uri})")
    parser.add_argument("--experiment", default="triad", help="experiment name (default: triad)")
    parser.add_argument("--sweep", help="a sweep id (its parent run's id); default: the latest sweep")
    parser.add_argument("--filter", help="an MLflow filter string; compares the matching runs instead of a sweep")
    parser.add_argument("--by", help="comma-separated params to group by (default: those that vary)")
    parser.add_argument("--nuisance", help="comma-separated params tuned per choice (default: the sweep's)")
    parser.add_argument("--metric", help="metric to compare (default: the runs' objective, its _best value)")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and the PNGs")
    parser.add_argument("--alpha", type=float, help="the false-verdict rate a verdict keeps, per pair and per "
                        "family of pairs (default: the sweep's compare.alpha, else 0.05)")
    parser.add_argument("--min-difference", type=float, help="the smallest difference in the metric's mean that "
                        "counts as meaningful (default: none; the effect must then be P(A beats B) >= 0.75)")
    parser.add_argument("--correction", choices=CORRECTIONS, help="the verdicts a champion needs: holm (every pair "
                        "under Holm's correction across the sweep's pairs; the default) or none (each pair alone)")
    args = parser.parse_args(argv)
    if args.alpha is not None and not 0 < args.alpha < 1:
        parser.error(f"--alpha {args.alpha}: the false-verdict rate must lie between 0 and 1 (e.g. 0.05).")
    if args.min_difference is not None and not args.min_difference > 0:
        parser.error(f"--min-difference {args.min_difference}: a difference that counts must be above 0 (e.g. 0.01).")

    # Bad arguments end as argparse's own do: the usage, the message, exit status 2.
    try:
        store.check(args.tracking_uri, key="--tracking-uri", existing=True)
    except ConfigError as error:
        parser.error(error.problems[0])
    client = MlflowClient(args.tracking_uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        parser.error(f"--experiment {args.experiment}: no such experiment in {args.tracking_uri}.")
    parent = None
    if args.filter:
        try:
            found = client.search_runs([experiment.experiment_id], args.filter)
        except MlflowException as error:
            parser.error(f"--filter {args.filter}: MLflow cannot read it ({error.message}). "
                         "E.g. --filter \"params.data = 'iris' and metrics.`val/acc_best` > 0.9\".")
        runs = [r for r in found if r.data.tags.get(record.SWEEP) != "parent"]
    else:
        parent = sweep_parent(client, args.sweep) if args.sweep else latest_parent(client, [experiment.experiment_id])
        if parent is None:
            parser.error(f"{f'--sweep {args.sweep}: no sweep with that id' if args.sweep else 'no sweep'} "
                         f"in experiment '{args.experiment}'. Give a sweep's id (the id of its parent run, "
                         "tagged triad.sweep=parent), run one (python -m src.train -m ...) or pass --filter.")
        runs = sweep_runs(client, parent.info.run_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if args.metric and finished and not any(args.metric in r.data.metrics or f"{args.metric}_best" in r.data.metrics
                                            for r in finished):
        logged = sorted({key.removesuffix("_best") for r in finished for key in r.data.metrics})
        parser.error(f"--metric {args.metric}: none of the {len(finished)} FINISHED runs compared logs it; "
                     f"{one_of(args.metric, logged)}")
    out = args.out
    if out is None:
        sweep_dir = parent.data.tags.get(record.SWEEP_DIR) if parent else None
        out = Path(sweep_dir) / report_folder(args.metric, runs) if sweep_dir else PROJECT_ROOT / "mlruns" / "reports" / time.strftime("%Y-%m-%d_%H-%M-%S")
    if problem := folder_problem(out):
        where = f"--out {out}" if args.out else f"the report's folder {out}"
        parser.error(f"{where}: {problem}; report.md, report.html and the plots go there. "
                     "Give a folder that can be written: --out <folder>.")
    split = lambda text: text.split(",") if text else None  # noqa: E731
    try:
        report(client, runs, out, parent, args.metric, split(args.by), split(args.nuisance),
               alpha=args.alpha, min_difference=args.min_difference, correction=args.correction)
    except ValueError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
