"""`python -m src.compare` on sweeps written straight into a real MLflow store: the
grouping, the nuisance tuning, the verdicts and where the report goes."""

import re

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from src import compare, report_plots
from tests.conftest import store_uri


def record_sweep(client: MlflowClient, runs: list[tuple[dict, float, str]], nuisance: str = "none",
                 tags: dict | None = None, test: bool = False, curves: bool = True) -> str:
    """A parent and one child per (params, val/acc_best, status), as a sweep records them
    (with test/acc = val/acc_best - 0.1 where `test`)."""
    exp_id = client.create_experiment("triad")
    parent = client.create_run(exp_id, run_name="sweep-test", tags={"triad.sweep": "parent", **(tags or {})}).info.run_id
    client.log_batch(parent, params=[Param("compare.scientific", "none"), Param("compare.nuisance", nuisance),
                                     Param("search.optimizer.lr", "0.001,0.01,0.1")])
    for params, score, status in runs:
        tags = {"mlflow.parentRunId": parent, "triad.objective": "val/acc", "triad.objective_mode": "max"}
        run_id = client.create_run(exp_id, tags=tags).info.run_id
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()],
                         metrics=[Metric("val/acc_best", score, 0, 0), Metric("time/fit_s", 2.0, 0, 0),
                                  *([Metric("test/acc", score - 0.1, 0, 0)] if test else [])])
        for epoch in range(3 if curves else 0):
            client.log_metric(run_id, "val/acc", score * (epoch + 1) / 3, step=10 * epoch)
        client.set_terminated(run_id, status)
    return parent


def test_report_names_a_winner_counts_failures_and_lands_on_the_parent(mlruns, capsys):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": "mlp", "seed": s, "model.num_params": 100}, 0.9 + s / 100, "FINISHED") for s in range(4)]
    runs += [({"model": "linear", "seed": s, "model.num_params": 30}, 0.5 + s / 100, "FINISHED") for s in range(4)]
    runs += [({"model": "mlp", "seed": 4, "model.num_params": 100}, 0.0, "FAILED")]
    parent = record_sweep(client, runs)

    compare.main(["--tracking-uri", store_uri(mlruns), "--out", str(mlruns / "report")])

    text = (mlruns / "report" / "report.md").read_text()
    assert "9 runs: 8 FINISHED, 1 not finished" in text
    assert "grouped by model." in text  # seed and the derived size are not choices
    assert "| mlp | 4 | 1 | 0.9150 | – | 0.0129 |" in text  # runs, failed, mean, test/acc (none logged), std
    # every split of 4 against 4 but the observed one and its mirror is less extreme: p = 2/70
    assert "| linear | mlp | -0.4000 | 0.000 | [0.000, 0.418] |" in text
    assert "| 0.0286 | 0.0286 | mlp better | **mlp better** |" in text
    assert "mlp better" in capsys.readouterr().out
    for name in ("report.md", "learning_curves.png", "intervals.png", "expected_max.png"):
        assert (mlruns / "report" / name).stat().st_size > 0
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert "report/report.md" in logged and "report/learning_curves.png" in logged
    assert client.get_run(parent).data.tags["triad.verdicts"] == "linear vs mlp: mlp better"


def test_nuisance_is_tuned_per_choice_before_comparing(mlruns):
    client = MlflowClient(store_uri(mlruns))
    # sgd is best at lr=0.1 (the grid's edge), adam at 0.01; the two bests overlap.
    scores = {("sgd", 0.001): 0.3, ("sgd", 0.01): 0.6, ("sgd", 0.1): 0.9,
              ("adam", 0.001): 0.8, ("adam", 0.01): 0.9, ("adam", 0.1): 0.4}
    runs = [({"optimizer": opt, "optimizer.lr": lr, "seed": s}, score + (s - 1) / 100, "FINISHED")
            for (opt, lr), score in scores.items() for s in range(3)]
    parent = record_sweep(client, runs, nuisance="optimizer.lr")

    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report",
                            parent=client.get_run(parent))

    assert result["by"] == ["optimizer"] and result["nuisance"] == ["optimizer.lr"]
    tuned = {t["choice"]: t for t in result["tuning"]}
    assert tuned["sgd"]["setting"] == "0.1" and tuned["adam"]["setting"] == "0.01"
    assert any("edge of its search range" in w for w in tuned["sgd"]["warnings"])
    assert not tuned["adam"]["warnings"]
    rows = {r["choice"]: r for r in result["rows"]}
    assert rows["sgd"]["runs"] == 3 and abs(rows["sgd"]["mean"] - 0.9) < 1e-9
    assert [p["verdict"] for p in result["pairs"]] == ["cannot decide"]  # 3 runs each: p >= 0.1
    # The expected-best curve uses every trial of a choice (3 lrs x 3 seeds).
    assert len(result["expected"]["sgd"]) == 9
    assert "WARNING sgd: optimizer.lr=0.1" in (mlruns / "report" / "report.md").read_text()


def test_filter_and_by_select_runs_without_a_sweep(mlruns):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": m, "data": d, "seed": s}, score + s / 100, "FINISHED")
            for m, d, score in [("mlp", "iris", 0.9), ("linear", "iris", 0.8), ("mlp", "digits", 0.1)]
            for s in range(2)]
    record_sweep(client, runs)
    compare.main(["--tracking-uri", store_uri(mlruns), "--filter", "params.data = 'iris'", "--by", "model",
                  "--out", str(mlruns / "iris")])
    text = (mlruns / "iris" / "report.md").read_text()
    assert "4 runs: 4 FINISHED" in text and "| linear | mlp |" in text


def test_too_few_runs_give_no_interval_and_cannot_decide(mlruns, capsys):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"optimizer": "adam", "seed": 0}, 0.9, "FINISHED"), ({"optimizer": "sgd", "seed": 0}, 0.5, "FINISHED")]
    parent = record_sweep(client, runs)
    compare.main(["--tracking-uri", store_uri(mlruns), "--out", str(mlruns / "one")])
    text = (mlruns / "one" / "report.md").read_text()
    assert "| adam | 1 | 0 | 0.9000 | – | – | too few runs (n=1) |" in text
    assert "| adam | sgd | +0.4000 | 1.000 |" in text and "| cannot decide | **cannot decide** |" in text
    assert "adam vs sgd: cannot decide (1 vs 1 runs give p >= 1, above 0.05; 4 runs each can)" in text
    assert "adam better" not in capsys.readouterr().out
    assert client.get_run(parent).data.tags["triad.verdicts"] == "adam vs sgd: cannot decide"
    assert client.get_run(parent).data.tags["triad.verdicts_holm"] == "adam vs sgd: cannot decide"
    assert "exact two-sided permutation test" in client.get_run(parent).data.tags["triad.verdict_rule"]
    # two seeds: a t-interval (wide), still no verdict
    rows = [({"model": m, "seed": s}, base + s / 100, "FINISHED") for m, base in (("mlp", 0.9), ("cnn", 0.5)) for s in (0, 1)]
    record_sweep(MlflowClient(store_uri(mlruns / "two")), rows)
    result = compare.analyse(compare.sweep_runs(MlflowClient(store_uri(mlruns / "two")),
                                                compare.latest_parent(MlflowClient(store_uri(mlruns / "two")), ["1"]).info.run_id))
    assert all(r["ci"][0] < r["mean"] < r["ci"][1] for r in result["rows"]) and result["rows"][0]["std"] > 0
    assert [p["verdict"] for p in result["pairs"]] == ["cannot decide"]


def test_a_reused_run_and_the_run_it_points_to_count_once(mlruns):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": m, "data": "iris", "seed": s}, base + s / 100, "FINISHED")
            for m, base in (("mlp", 0.9), ("linear", 0.5)) for s in range(3)]
    parent = record_sweep(client, runs)
    # A second sweep of the same configs re-used every run (skip_finished): 6 more records, no training.
    for original in compare.sweep_runs(client, parent):
        tags = {"triad.reused_from": original.info.run_id, "triad.objective": "val/acc", "triad.objective_mode": "max"}
        copy = client.create_run(original.info.experiment_id, tags=tags).info.run_id
        client.log_batch(copy, params=[Param(k, v) for k, v in original.data.params.items()],
                         metrics=[Metric("val/acc_best", original.data.metrics["val/acc_best"], 0, 0)])
        client.set_terminated(copy, "FINISHED")
    compare.main(["--tracking-uri", store_uri(mlruns), "--filter", "params.data = 'iris'", "--by", "model",
                  "--out", str(mlruns / "iris")])
    text = (mlruns / "iris" / "report.md").read_text()
    assert "6 runs: 6 FINISHED" in text and "| mlp | 3 | 0 |" in text


def test_runs_pooled_into_one_choice_that_differ_in_a_fixed_setting_are_named(mlruns, capsys):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": "mlp", "trainer.max_epochs": 3 + 2 * (s % 2), "seed": s}, 0.9, "FINISHED") for s in range(4)]
    runs += [({"model": "linear", "trainer.max_epochs": 3, "seed": s}, 0.5, "FINISHED") for s in range(3)]
    record_sweep(client, runs)
    compare.main(["--tracking-uri", store_uri(mlruns), "--by", "model", "--out", str(mlruns / "pooled")])
    text = (mlruns / "pooled" / "report.md").read_text()
    assert "WARNING mlp: its runs differ in trainer.max_epochs (3, 5)" in text
    assert "WARNING linear" not in text
    assert "mlp: its runs differ in trainer.max_epochs (3, 5)" in capsys.readouterr().out


def tuned_sweep(client: MlflowClient, **kwargs) -> str:
    """sgd best at lr=0.1, adam at 0.01: 2 optimizers x 3 lrs x 4 seeds (4 can decide a pair)."""
    scores = {("sgd", 0.001): 0.3, ("sgd", 0.01): 0.6, ("sgd", 0.1): 0.9,
              ("adam", 0.001): 0.8, ("adam", 0.01): 0.95, ("adam", 0.1): 0.4}
    runs = [({"optimizer": opt, "optimizer.lr": lr, "seed": s}, score + (s - 1.5) / 100, "FINISHED")
            for (opt, lr), score in scores.items() for s in range(4)]
    return record_sweep(client, runs, nuisance="optimizer.lr", **kwargs)


def test_the_html_report_is_one_self_contained_page_with_every_section(mlruns):
    client = MlflowClient(store_uri(mlruns))
    parent = tuned_sweep(client, tags={"triad.overrides": "optimizer=sgd,adam trainer.max_epochs=3"})
    compare.report(client, compare.sweep_runs(client, parent), mlruns / "report", parent=client.get_run(parent))

    page = (mlruns / "report" / "report.html").read_text()
    # Nothing to fetch: no script, no URL in a src or href (the SVGs' xmlns name, they fetch nothing).
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert page.count("<svg") == 5  # intervals, learning curves, P(A beats B), isolation, expected best
    for heading in ("Fixed for the sweep", "Runs", "Pairwise verdicts", "Tuning: the best setting per choice",
                    "Expected highest score vs number of trials"):
        assert f"<h2>{heading}" in page
    assert "<strong>adam better</strong>" in page  # the verdict in the table
    assert "adam better</text>" in page  # and in its cell of the matrix (SVG text stays text)
    assert "edge of its search range" in page
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/pairwise.png", "report/isolation.png"} <= logged
    # Each run carries its choice, for the UI's Group by.
    children = compare.sweep_runs(client, parent)
    assert {r.data.tags["triad.choice"] for r in children} == {"optimizer=adam", "optimizer=sgd"}


def test_fixed_settings_test_scores_and_run_ids_are_in_the_report(mlruns):
    client = MlflowClient(store_uri(mlruns))
    overrides = ("data=iris optimizer=sgd,adam optimizer.lr=0.001,0.01,0.1 seed=0,1,2 trainer.max_epochs=3 "
                 "paths.mlruns_dir=/somewhere hydra/launcher=joblib compare.nuisance=[optimizer.lr]")
    parent = tuned_sweep(client, tags={"triad.overrides": overrides}, test=True)
    client.log_batch(parent, params=[Param("search.optimizer", "sgd,adam"), Param("search.seed", "0,1,2")])
    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report", parent=client.get_run(parent))

    assert result["fixed"] == ["data=iris", "trainer.max_epochs=3"]  # not swept, and changes training
    rows = {r["choice"]: r for r in result["rows"]}
    assert result["test_metric"] == "test/acc" and abs(rows["adam"]["test"] - 0.85) < 1e-9  # the chosen lr's runs
    assert len(rows["adam"]["run_ids"]) == 4
    text = (mlruns / "report" / "report.md").read_text()
    assert "| choice | runs | failed | mean | test/acc | std |" in text
    assert "| adam | 4 | 0 | 0.9500 | 0.8500 | 0.0129 |" in text
    assert "| data | iris |\n| trainer.max_epochs | 3 |\n" in text
    assert f"| adam | {' '.join(f'`{i}`' for i in rows['adam']['run_ids'])} |" in text


def test_expected_best_table_shows_the_figures_numbers_of_trials(mlruns):
    client = MlflowClient(store_uri(mlruns))
    parent = tuned_sweep(client)
    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report", parent=client.get_run(parent))
    assert result["trials"] == list(range(1, 13))  # every n up to the 12 runs of a choice
    text = (mlruns / "report" / "report.md").read_text()
    assert "| choice | " + " | ".join(f"n={n}" for n in range(1, 13)) + " |" in text
    figure = report_plots.expected_max(result["expected"], "val/acc", "highest", result["trials"], {})
    assert list(figure.axes[0].get_xticks()) == result["trials"]
    assert compare.trial_counts(30) == [1, 5, 10, 15, 20, 25, 30] and compare.trial_counts(12) == list(range(1, 13))


def test_another_metrics_report_goes_beside_the_sweeps_own(mlruns, tmp_path):
    client = MlflowClient(store_uri(mlruns))
    sweep_dir = tmp_path / "sweep"
    runs = [({"model": m, "seed": s}, base + s / 100, "FINISHED") for m, base in (("mlp", 0.9), ("linear", 0.5))
            for s in range(3)]
    parent = record_sweep(client, runs, tags={"triad.sweep_dir": str(sweep_dir)}, test=True)
    compare.main(["--tracking-uri", store_uri(mlruns), "--sweep", parent])
    compare.main(["--tracking-uri", store_uri(mlruns), "--sweep", parent, "--metric", "test/acc"])
    assert "`val/acc`" in (sweep_dir / "report" / "report.md").read_text()
    assert "`test/acc`" in (sweep_dir / "report-test_acc" / "report.md").read_text()
    assert (sweep_dir / "report-test_acc" / "report.html").exists()
    logged = {a.path for a in client.list_artifacts(parent, "report-test_acc")}
    assert "report-test_acc/report.html" in logged


def test_a_pruned_run_is_neither_scored_nor_failed(mlruns):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": "mlp", "seed": s}, 0.9 + s / 100, "FINISHED") for s in range(3)]
    runs += [({"model": "mlp", "seed": 3}, 0.1, "KILLED"), ({"model": "mlp", "seed": 4}, 0.2, "FAILED")]
    parent = record_sweep(client, runs)
    killed = [r for r in compare.sweep_runs(client, parent) if r.info.status == "KILLED"][0]
    client.set_tag(killed.info.run_id, "triad.pruned", "2")  # as an Optuna pruner's stop leaves it

    result = compare.analyse(compare.sweep_runs(client, parent))
    assert (result["runs"], result["finished"], result["pruned"], result["failed"]) == (5, 3, 1, 1)
    [row] = result["rows"]
    assert row["runs"] == 3 and row["failed"] == 1 and 0.1 not in row["scores"]


def test_tied_settings_keep_the_lowest_val_loss_and_an_edge_warns_only_when_better(mlruns):
    client = MlflowClient(store_uri(mlruns))
    # Every lr of adam saturates at 1.0 (a tie): the edge lr=0.1 has the lowest val/loss
    # and is kept, without "widen it"; sgd's edge 0.1 is strictly better: it warns.
    scores = {("adam", 0.001): 1.0, ("adam", 0.01): 1.0, ("adam", 0.1): 1.0,
              ("sgd", 0.001): 0.5, ("sgd", 0.01): 0.7, ("sgd", 0.1): 0.9}
    runs = [({"optimizer": opt, "optimizer.lr": lr, "seed": s}, score, "FINISHED")
            for (opt, lr), score in scores.items() for s in range(4)]
    parent = record_sweep(client, runs, nuisance="optimizer.lr")
    for run in compare.sweep_runs(client, parent):
        client.log_metric(run.info.run_id, "val/loss", 0.5 / float(run.data.params["optimizer.lr"]) ** 0.5)
    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report", parent=client.get_run(parent))
    tuned = {t["choice"]: t for t in result["tuning"]}
    assert tuned["adam"]["setting"] == "0.1" and sorted(tuned["adam"]["tied"]) == ["0.001", "0.01"]
    assert not tuned["adam"]["warnings"] and any("edge" in w for w in tuned["sgd"]["warnings"])
    text = (mlruns / "report" / "report.md").read_text()
    assert "adam: 3 settings tie at mean 1.0000 (0.1, 0.001, 0.01); kept 0.1, the lowest mean val/loss" in text
    # adam's runs all score the ceiling: flagged as saturated, with the remedy
    assert "WARNING adam: saturated: 4 of 4 runs score val/acc 1, the metric's ceiling" in text
    assert "objective=val/loss" in text and "WARNING sgd: saturated" not in text


def record_curves(client: MlflowClient, curves: dict[str, list[float]], seeds: int = 4) -> str:
    """A sweep whose runs of each choice follow one validation curve (val/acc per epoch)."""
    runs = [({"model": model, "seed": s, "trainer.max_epochs": len(curve)}, max(curve) + s / 1000, "FINISHED")
            for model, curve in curves.items() for s in range(seeds)]
    parent = record_sweep(client, runs, curves=False)
    for run in compare.sweep_runs(client, parent):
        curve = curves[run.data.params["model"]]
        for epoch, value in enumerate(curve):
            client.log_metric(run.info.run_id, "epoch", epoch, step=10 * epoch + 9)
            client.log_metric(run.info.run_id, "val/acc", value, step=10 * epoch + 9)
    return parent


def test_a_choice_still_improving_is_flagged_and_blocks_the_champion(mlruns):
    client = MlflowClient(store_uri(mlruns))
    # linear still climbs at its last epochs (the wine case); mlp levelled off long before
    parent = record_curves(client, {"linear": [0.28, 0.4, 0.5, 0.6, 0.68, 0.75, 0.8, 0.83],
                                    "mlp": [0.5, 0.8, 0.95, 0.97, 0.97, 0.97, 0.97, 0.97]})
    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report",
                            parent=client.get_run(parent), ended="FINISHED")
    rows = {r["choice"]: r for r in result["rows"]}
    assert rows["linear"]["improving"] == (4, 4) and rows["mlp"]["improving"] is None
    assert [p["family"] for p in result["pairs"]] == ["mlp better"]  # decided, but about an undertrained model
    text = (mlruns / "report" / "report.md").read_text()
    assert "WARNING linear: still improving at its last epoch in 4 of 4 runs" in text
    assert "trainer.max_epochs=16" in text
    assert result["champion"]["line"].startswith("No champion registered: linear still improving at the last epoch")
    assert client.search_registered_models() == []


def test_still_improving_reads_the_end_of_a_curve():
    curve = lambda values: list(enumerate(values))  # noqa: E731
    assert compare.still_improving(curve([0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9]), 1.0)
    assert not compare.still_improving(curve([0.3, 0.9, 0.95, 0.96, 0.96, 0.96, 0.96, 0.961]), 1.0)  # noise
    assert not compare.still_improving(curve([0.5, 0.9, 0.8]), 1.0)  # too few validations to say
    assert compare.still_improving(curve([2.0, 1.5, 1.2, 1.0, 0.9, 0.7]), -1.0)  # a loss still falling


def test_pooled_runs_name_every_setting_that_differs_their_groups_own_too(mlruns):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": "mlp", "data": "iris", "model.hidden_size": h, "optimizer.lr": lr, "seed": s}, 0.9, "FINISHED")
            for h, lr in ((32, 0.01), (64, 0.1)) for s in range(2)]
    runs += [({"model": "linear", "data": "iris", "model.hidden_size": None, "optimizer.lr": 0.01, "seed": s}, 0.8,
              "FINISHED") for s in range(4)]
    record_sweep(client, runs)
    compare.main(["--tracking-uri", store_uri(mlruns), "--filter", "params.data = 'iris'", "--by", "model",
                  "--out", str(mlruns / "pooled")])
    text = (mlruns / "pooled" / "report.md").read_text()
    assert "WARNING mlp: its runs differ in model.hidden_size (32, 64), optimizer.lr (0.01, 0.1)" in text
    assert "WARNING linear: its runs differ" not in text


def test_alpha_and_the_effect_can_be_set_and_bad_ones_are_refused(mlruns, capsys):
    client = MlflowClient(store_uri(mlruns))
    runs = [({"model": m, "seed": s}, base + s / 100, "FINISHED") for m, base in (("mlp", 0.9), ("linear", 0.85))
            for s in range(5)]
    record_sweep(client, runs)
    uri = ["--tracking-uri", store_uri(mlruns), "--out", str(mlruns / "r")]
    compare.main([*uri, "--min-difference", "0.1"])  # 0.05 apart: significant, not the 0.1 asked for
    assert "the difference 0.05 is below 0.1: too small to count" in (mlruns / "r" / "report.md").read_text()
    compare.main([*uri, "--alpha", "0.001"])  # 5 runs each reach 0.0079 at best
    assert "cannot decide" in (mlruns / "r" / "report.md").read_text()
    for bad, said in ((["--alpha", "5"], "--alpha 5.0: the false-verdict rate must lie between 0 and 1"),
                      (["--min-difference", "-1"], "--min-difference -1.0: a difference that counts must be above 0"),
                      (["--correction", "bonferroni"], "invalid choice: 'bonferroni'")):
        with pytest.raises(SystemExit) as exit:
            compare.main([*uri, *bad])
        assert exit.value.code == 2 and said in capsys.readouterr().err
