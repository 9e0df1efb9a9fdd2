"""`python -m src.compare`: which choice wins, and how sure we are, from MLflow runs.

    python -m src.compare                          # the latest sweep's parent run
    python -m src.compare --sweep <parent run id> --by model --metric test/acc
    python -m src.compare --filter "params.data = 'iris'" --out reports/iris

Runs are grouped by the choices that vary (or --by); each group's scores are the
objective's best value per run (`<metric>_best`, else the metric's last value).
Nuisance params (tuned per choice) are settled first: per choice, the setting with
the best mean score is kept and only its runs are compared. Each trained run counts
once (a sweep's re-used run stands for the run it points to). Below stats.MIN_RUNS
runs a choice gets no interval and its pairs no verdict ("too few runs").
"""

import argparse
import itertools
import os
import re
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from rich.console import Console

from src import PROJECT_ROOT, champion, record, sequential, stats, store
from src.identity import NOT_TRAINING
from src.validate import ConfigError

# Params recorded on every run that follow from others (sizes), never compared on their own.
DERIVED = ("seed", "seeds", "seeds_together", "model.num_params", "data.train_size", "compare.scientific",
           "compare.nuisance", "compare.until_decided", "compare.max_seeds", "compare.alpha")


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

    differing = [k for k in varied_params(members) if counts(k) and k.split(".")[0] not in exclude]
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
    for override in parent.data.tags.get(record.OVERRIDES, "").split():
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


def analyse(runs: list, metric: str | None = None, by: list[str] | None = None,
            nuisance: list[str] | None = None, parent=None) -> dict:
    """Everything the report shows, as plain numbers (tested without any drawing)."""
    runs = trained_once(runs)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished:
        raise ValueError(f"No FINISHED runs to compare (of {len(runs)}).")
    metric = metric or finished[0].data.tags.get(record.OBJECTIVE)
    mode = direction(metric, finished)
    sign = 1.0 if mode == "max" else -1.0  # stats want higher = better
    nuisance = list(nuisance or [])
    by = list(by) if by else varied_params(finished, exclude=tuple(nuisance))

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
    for name, members in sorted(groups.items()):
        all_scores[name] = [score(r, metric) for r in members]
        if differences := pooled_differences(members, by + nuisance):
            pooled[name] = differences
        kept = members
        if nuisance:  # the nuisance setting with the best mean score, per choice
            settings: dict[str, list] = {}
            for run in members:
                settings.setdefault(_label(run, nuisance), []).append(run)
            means = {s: float(np.mean([score(r, metric) for r in rs])) for s, rs in settings.items()}
            best = max(means, key=lambda s: sign * means[s])
            kept = settings[best]
            warnings = []
            for key in nuisance:
                space = search_range(key, members, parent)
                try:
                    value = float(kept[0].data.params[key])
                except (KeyError, ValueError):
                    continue
                if space and at_edge(value, *space):
                    warnings.append(f"{key}={kept[0].data.params[key]} is at the edge of its search range "
                                    f"[{space[0]:g}, {space[1]:g}]: widen it")
            tuning.append({"choice": name, "setting": best, "mean": means[best], "runs": len(kept),
                           "settings": len(settings), "warnings": warnings, "means": means})
        chosen[name] = kept
        values = np.array([score(r, metric) for r in kept])
        fit = [r.data.metrics["time/fit_s"] for r in kept if "time/fit_s" in r.data.metrics]
        tests = [r.data.metrics[test_metric] for r in kept if test_metric in r.data.metrics]
        rows.append({
            "choice": name, "runs": len(values), "failed": failed.get(name, 0),
            "mean": float(values.mean()), "test": float(np.mean(tests)) if tests else float("nan"),
            "scores": values.tolist(), "run_ids": [r.info.run_id for r in kept], "named": _named(kept[0], by),
            "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "ci": stats.bootstrap_ci(values) if len(values) >= stats.MIN_RUNS else None,
            "median": float(np.median(values)),
            "iqm": stats.iqm(values), "best": float(values.max() if mode == "max" else values.min()),
            "fit_s": float(np.mean(fit)) if fit else float("nan"),
        })

    pairs = []
    for a, b in itertools.combinations([row["choice"] for row in rows], 2):
        xa = sign * np.array([score(r, metric) for r in chosen[a]])
        xb = sign * np.array([score(r, metric) for r in chosen[b]])
        fewest = min(len(xa), len(xb))
        if fewest < stats.MIN_RUNS:
            pairs.append({"a": a, "b": b, "p": stats.prob_better(xa, xb), "ci": None,
                          "verdict": f"too few runs (n={fewest})"})
            continue
        low, high = stats.prob_better_ci(xa, xb)
        pairs.append({"a": a, "b": b, "p": stats.prob_better(xa, xb), "ci": (low, high),
                      "verdict": stats.verdict(low, high, a, b)})

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
            "tuning": tuning, "expected": expected, "chosen": chosen, "pooled": pooled, "sequential": decided,
            "test_metric": test_metric, "fixed": fixed_settings(parent),
            "trials": trial_counts(max(len(v) for v in expected.values())),
            "runs": len(runs), "finished": len(finished), "pruned": len(pruned),
            "failed": len(runs) - len(finished) - len(pruned)}


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
           nuisance=None, console: Console | None = None, ended: str | None = None) -> dict:
    """Analyse the runs, print the tables, write report.md, report.html and the PNGs into
    out_dir, and log them under `report/` of the sweep's parent run when there is one. At
    a sweep's end (`ended`: its status) the winner is registered (src/champion.py)."""
    from src import report_html, report_plots, report_text

    if parent is not None and nuisance is None:
        nuisance = [k for k in parent.data.params.get("compare.nuisance", "none").split(",") if k != "none"]
    if parent is not None and by is None:
        by = [k for k in parent.data.params.get("compare.scientific", "none").split(",") if k != "none"] or None
    result = analyse(runs, metric, by, nuisance, parent)
    console = console or Console(width=max(Console().width, 120))  # the table needs ~110 columns
    title = f"Comparison: {parent.info.run_name} ({parent.info.run_id})" if parent else "Comparison"
    report_text.print_tables(result, title, console)
    if found := champion.outcome(client, result, parent, ended):
        result["champion"] = found
        console.print(found["line"], soft_wrap=True, markup=False)  # one line, the load call whole

    out_dir.mkdir(parents=True, exist_ok=True)
    text = report_text.markdown(result, title)
    (out_dir / "report.md").write_text(text)
    curves = {name: [history(client, r, result["metric"]) for r in members] for name, members in result["chosen"].items()}
    figures = report_plots.figures(result, curves)
    for name, figure in figures.items():
        figure.savefig(out_dir / name, dpi=100)
    (out_dir / "report.html").write_text(report_html.page(text, figures))
    if parent is not None:
        folder = report_folder(result["metric"], runs)
        client.log_artifacts(parent.info.run_id, str(out_dir), folder)
        # The verdicts at a glance in the UI's run list, the numbers in the report.
        verdicts = stats.in_words(result["pairs"]) or "one choice"
        client.set_tag(parent.info.run_id, f"{record.VERDICTS}{folder.removeprefix('report')}", verdicts[:5000])
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
    parser = argparse.ArgumentParser(prog="python -m src.compare", description=__doc__.split("\n")[0])
    default_uri = os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlruns' / 'mlflow.db'}")
    parser.add_argument("--tracking-uri", default=default_uri, help=f"MLflow store (default: {default_uri})")
    parser.add_argument("--experiment", default="triad", help="experiment name (default: triad)")
    parser.add_argument("--sweep", help="a sweep id (its parent run's id); default: the latest sweep")
    parser.add_argument("--filter", help="an MLflow filter string; compares the matching runs instead of a sweep")
    parser.add_argument("--by", help="comma-separated params to group by (default: those that vary)")
    parser.add_argument("--nuisance", help="comma-separated params tuned per choice (default: the sweep's)")
    parser.add_argument("--metric", help="metric to compare (default: the runs' objective, its _best value)")
    parser.add_argument("--out", type=Path, help="folder for report.md, report.html and the PNGs")
    args = parser.parse_args(argv)

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
    out = args.out
    if out is None:
        sweep_dir = parent.data.tags.get(record.SWEEP_DIR) if parent else None
        out = Path(sweep_dir) / report_folder(args.metric, runs) if sweep_dir else PROJECT_ROOT / "mlruns" / "reports" / time.strftime("%Y-%m-%d_%H-%M-%S")
    split = lambda text: text.split(",") if text else None  # noqa: E731
    try:
        report(client, runs, out, parent, args.metric, split(args.by), split(args.nuisance))
    except ValueError as error:
        raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
