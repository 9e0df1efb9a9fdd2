"""Figures of a comparison report: learning curves, intervals, expected best vs trials."""

import matplotlib

matplotlib.use("Agg")  # files only, no window: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src import stats  # noqa: E402


def learning_curves(curves: dict[str, list[list[tuple[int, float]]]], metric: str):
    """Per choice: the mean of `metric` across its runs at each evaluation, with the
    95% bootstrap interval of that mean as a band. Runs are aligned by evaluation
    index (one per epoch) and cut to the shortest."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        length = min(len(r) for r in runs)
        steps = [step for step, _ in runs[0][:length]]
        values = np.array([[value for _, value in r[:length]] for r in runs])  # (runs, evaluations)
        mean = values.mean(axis=0)
        bands = np.array([stats.bootstrap_ci(column, resamples=1000) for column in values.T])  # (evaluations, 2)
        axis.plot(steps, mean, marker=".", label=f"{name} ({len(runs)} runs)")
        axis.fill_between(steps, bands[:, 0], bands[:, 1], alpha=0.2)
    axis.set(xlabel="step", ylabel=metric, title=f"Learning curves: mean and 95% interval of {metric}")
    axis.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure


def intervals(rows: list[dict], metric: str):
    """Per choice: the mean as a bar, the 95% bootstrap interval as an error bar
    (none for a choice with too few runs for one)."""
    figure, axis = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 4.5))
    names = [row["choice"] for row in rows]
    means = np.array([row["mean"] for row in rows])
    spans = [row["ci"] or (row["mean"], row["mean"]) for row in rows]
    errors = np.array([[mean - low, high - mean] for mean, (low, high) in zip(means, spans, strict=True)]).T
    axis.bar(names, means, yerr=errors, capsize=6, color="tab:blue", alpha=0.7)
    low = min(span[0] for span in spans)
    high = max(span[1] for span in spans)
    margin = max(high - low, 1e-3) * 0.5
    axis.set_ylim(low - margin, high + margin)  # the differences, not the distance from zero
    axis.set(ylabel=metric, title=f"{metric}: mean and 95% bootstrap interval")
    plt.setp(axis.get_xticklabels(), rotation=30, ha="right")
    figure.tight_layout()
    plt.close(figure)
    return figure


def expected_max(curves: dict[str, list[float]], metric: str, best_word: str):
    """Expected best validation score against the number of trials, per choice."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, marker=".", label=name)
    axis.set(xlabel="number of trials", ylabel=f"expected {best_word} {metric}",
             title="Expected best score vs trials (Dodge et al. 2019)")
    axis.legend()
    figure.tight_layout()
    plt.close(figure)
    return figure
