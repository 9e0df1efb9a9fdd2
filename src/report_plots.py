"""Figures of a comparison report, drawn from `compare.analyse`'s numbers: the same
figure goes into a PNG beside report.md and, as SVG, into report.html."""

import matplotlib

matplotlib.use("Agg")  # files only, no window: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from src import stats  # noqa: E402


def figures(result: dict, curves: dict[str, list[list[tuple[float, float]]]]) -> dict:
    """Every figure of the report by its PNG name (the pairwise matrix from two choices
    on, the isolation plot for tuned sweeps only)."""
    with matplotlib.rc_context({"text.parse_math": False}):  # a recorded "$" is a dollar, not TeX to parse
        return _figures(result, curves)


def _figures(result: dict, curves: dict) -> dict:
    best_word = "highest" if result["mode"] == "max" else "lowest"
    names = {row["choice"]: row["named"] for row in result["rows"]}
    drawn = {"intervals.png": intervals(result["rows"], result["metric"], result["by"]),
             "learning_curves.png": learning_curves(curves, "val/" + result["metric"].rsplit("/", 1)[-1], names)}
    if result["pairs"]:
        drawn["pairwise.png"] = pairwise(result["pairs"], [row["choice"] for row in result["rows"]])
    if result["tuning"]:
        drawn["isolation.png"] = isolation(result["tuning"], result["nuisance"], result["metric"], best_word)
    drawn["expected_max.png"] = expected_max(result["expected"], result["metric"], best_word, result["trials"], names)
    return drawn


def _done(figure, axis, names_below: bool = False):
    if names_below:  # choice names, often long
        plt.setp(axis.get_xticklabels(), rotation=30, ha="right")
    figure.tight_layout()
    plt.close(figure)  # pyplot forgets it; the caller still saves it
    return figure


def learning_curves(curves: dict[str, list[list[tuple[float, float]]]], metric: str, names: dict[str, str]):
    """Per choice: the mean of `metric` across its runs after each epoch, with the 95%
    bootstrap interval of that mean as a band. Runs are aligned by evaluation (one per
    epoch) and cut to the shortest."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        length = min(len(r) for r in runs)
        epochs = [epoch for epoch, _ in runs[0][:length]]
        values = np.array([[value for _, value in r[:length]] for r in runs])  # (runs, evaluations)
        mean = values.mean(axis=0)
        # (evaluations, 2): the t-interval of the mean at each evaluation; one run has none
        bands = np.array([stats.mean_interval(column) if len(runs) >= stats.MIN_RUNS else (column[0], column[0])
                          for column in values.T])
        axis.plot(epochs, mean, marker=".", label=f"{names.get(name, name)} ({len(runs)} runs)")
        axis.fill_between(epochs, bands[:, 0], bands[:, 1], alpha=0.2)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.set(xlabel="epochs trained", ylabel=metric, title=f"Learning curves: mean and 95% interval of {metric}")
    axis.legend(fontsize="small")
    return _done(figure, axis)


def intervals(rows: list[dict], metric: str, by: list[str]):
    """Per choice: every run's score as a dot, the mean as a bar-free marker and its 95%
    t-interval as an error bar (none below stats.MIN_RUNS runs). The y axis
    spans every dot."""
    figure, axis = plt.subplots(figsize=(max(4.5, 1.2 * len(rows) + 2), 4.5))
    spread = np.random.default_rng(0)  # a fixed jitter: the same report every time
    for x, row in enumerate(rows):
        scores = np.array(row["scores"])
        axis.scatter(x + spread.uniform(-0.12, 0.12, len(scores)), scores, s=18, color="tab:gray", alpha=0.8,
                     label="one run" if x == 0 else None, zorder=2)
        low, high = row["ci"] or (row["mean"], row["mean"])
        axis.errorbar(x + 0.3, row["mean"], yerr=[[row["mean"] - low], [high - row["mean"]]], fmt="o",
                      color="tab:blue", capsize=6, label="mean, 95% interval" if x == 0 else None, zorder=3)
    axis.margins(y=0.1)  # autoscaled to every dot and interval, with room to spare
    axis.set_xticks([x + 0.15 for x in range(len(rows))], [row["choice"] for row in rows])
    axis.set(xlabel=", ".join(by) or "choice", ylabel=metric, title=f"{metric}: every run, mean and 95% interval")
    axis.legend(fontsize="small")
    return _done(figure, axis, names_below=True)


def pairwise(pairs: list[dict], names: list[str]):
    """P(row beats column) as a matrix, each cell with its number, interval and verdict."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.full((len(names), len(names)), np.nan)
    cells = {}
    for p in pairs:
        a, b = index[p["a"]], index[p["b"]]
        flipped = p["ci"] and (1 - p["ci"][1], 1 - p["ci"][0])  # P(B beats A) = 1 - P(A beats B)
        for i, j, value, span in ((a, b, p["prob"], p["ci"]), (b, a, 1 - p["prob"], flipped)):
            matrix[i, j] = value
            cells[i, j] = f"{value:.2f}" + (f"\n[{span[0]:.2f}, {span[1]:.2f}]" if span else "") + f"\n{p['verdict']}"
    size = max(4.5, 1.6 * len(names) + 1.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
    for (i, j), text in cells.items():
        dark = abs(matrix[i, j] - 0.5) > 0.3  # the colour map's ends: white text reads there
        axis.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black")
    axis.set_xticks(range(len(names)), names)
    axis.set_yticks(range(len(names)), names)
    figure.colorbar(image, ax=axis, label="P(row beats column)")
    axis.set(xlabel="B", ylabel="A", title="P(A beats B), 95% interval and verdict")
    return _done(figure, axis, names_below=True)


def isolation(tuning: list[dict], nuisance: list[str], metric: str, best_word: str):
    """The isolation plot (Deep Learning Tuning Playbook): per choice, the mean score over
    seeds of each nuisance setting tried, the best setting per choice circled."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    try:  # one numeric nuisance param: on its own axis, log scale across decades
        position = {s: float(s) for t in tuning for s in t["means"]}
    except ValueError:
        position = {s: i for i, s in enumerate(sorted({s for t in tuning for s in t["means"]}))}
        axis.set_xticks(list(position.values()), list(position))
    for t in tuning:
        settings = sorted(t["means"], key=position.get)
        line, = axis.plot([position[s] for s in settings], [t["means"][s] for s in settings], marker=".",
                          label=t["choice"])
        axis.scatter([position[t["setting"]]], [t["mean"]], s=160, facecolors="none", edgecolors=line.get_color(),
                     linewidths=2, zorder=3)
    values = [v for v in position.values() if isinstance(v, float)]
    if values and min(values) > 0 and max(values) / min(values) >= 10:
        axis.set_xscale("log")
    axis.set(xlabel=", ".join(nuisance), ylabel=f"mean {metric} over seeds",
             title=f"Isolation plot: each setting tried, the {best_word}-scoring one circled")
    axis.legend(fontsize="small")
    return _done(figure, axis)


def expected_max(curves: dict[str, list[float]], metric: str, best_word: str, trials: list[int],
                 names: dict[str, str]):
    """Expected best validation score against the number of trials, per choice, at the
    whole numbers of trials the report's table shows."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, values in curves.items():
        axis.plot(range(1, len(values) + 1), values, marker=".", label=names.get(name, name))
    axis.set_xticks(trials)
    axis.set(xlabel="number of trials", ylabel=f"expected {best_word} {metric}",
             title="Expected best score vs trials (Dodge et al. 2019)")
    axis.legend(fontsize="small")
    return _done(figure, axis)
