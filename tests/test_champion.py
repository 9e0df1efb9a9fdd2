"""The sweep's winner in the Model Registry (src/champion.py): decided on the verdicts,
registered with its alias, loadable; nothing registered without a winner."""

import sys

import numpy as np
import pytest
from mlflow import MlflowClient

from src import champion
from tests.conftest import run_train, store_uri


def result(pairs: list[tuple[str, str, str]], choices=("a", "b", "c")) -> dict:
    """What compare.analyse returns, with each pair's verdict alone and under Holm alike."""
    return {"rows": [{"choice": c} for c in choices], "correction": "holm",
            "pairs": [{"a": a, "b": b, "verdict": v, "family": v} for a, b, v in pairs]}


def test_the_winner_is_the_choice_better_than_every_other():
    assert champion.winner(result([("a", "b", "b better"), ("a", "c", "no evidence"), ("b", "c", "no evidence")])) == (
        None, "no choice beats every other: a vs c: no evidence; b vs c: no evidence")
    choice, verdicts = champion.winner(result([("a", "b", "b better"), ("a", "c", "a better"), ("b", "c", "b better")]))
    assert (choice, verdicts) == ("b", "a vs b: b better; b vs c: b better")
    # a cycle: every pair decided, none beats all
    assert champion.winner(result([("a", "b", "a better"), ("a", "c", "c better"), ("b", "c", "b better")]))[0] is None


def test_too_few_runs_or_one_choice_has_no_winner():
    assert champion.winner(result([("a", "b", "cannot decide")], ("a", "b"))) == (
        None, "no choice beats every other: a vs b: cannot decide")
    assert champion.winner(result([], ("a",))) == (None, "one choice only: it beats nothing")


def test_the_champion_needs_holms_verdicts_unless_the_correction_is_off():
    decided = result([("a", "b", "a better")], ("a", "b"))
    decided["pairs"][0]["family"] = "no evidence"  # better alone, not once the sweep's pairs share alpha
    assert champion.winner(decided) == (None, "no choice beats every other: a vs b: no evidence")
    decided["correction"] = "none"
    assert champion.winner(decided) == ("a", "a vs b: a better")


def test_a_choice_still_improving_blocks_the_champion():
    rising = result([("a", "b", "a better")], ("a", "b"))
    rising["rows"][1]["improving"] = (3, 4)
    choice, why = champion.winner(rising)
    assert choice is None and why.startswith("b still improving at the last epoch")


def test_a_sweep_that_added_seeds_until_decided_is_judged_by_its_sequential_verdicts():
    until_decided = result([("a", "b", "no evidence")], ("a", "b"))
    until_decided["sequential"] = {"pairs": [{"a": "a", "b": "b", "verdict": "b better", "seeds": 5}]}
    assert champion.winner(until_decided) == ("b", "a vs b: b better")


def champion_section(report_md: str) -> str:
    return report_md.split("## Champion\n\n", 1)[1].split("\n", 1)[0]


@pytest.mark.slow
def test_a_decided_sweep_registers_its_best_run_and_a_later_win_moves_the_alias(mlruns):
    # lr 1e-7 does not learn in 3 epochs; 0.01 reaches 1.0 on iris: every pair of runs goes to 0.01 (4 seeds: p = 2/70)
    sweep = ["-m", "data=iris", "model=mlp", "optimizer.lr=0.01,0.0000001", "seed=0,1,2,3", "trainer.max_epochs=3"]
    out = run_train(sweep, mlruns).stdout
    assert 'registered as triad-champion version 1; load it with mlflow.pyfunc.load_model("models:/triad-champion@champion")' in out
    client = MlflowClient(store_uri(mlruns))
    version = client.get_model_version_by_alias("triad-champion", "champion")
    parent = client.search_runs([client.get_experiment_by_name("triad").experiment_id], "tags.`triad.sweep` = 'parent'")[0]
    assert str(version.version) == "1" and parent.info.status == "FINISHED"
    assert version.tags == {"triad.sweep_id": parent.info.run_id, "triad.choice": "optimizer.lr=0.01",
                            "triad.metric": "val/acc", "triad.score": version.tags["triad.score"]}
    best = client.get_run(version.run_id)
    assert best.data.params["optimizer.lr"] == "0.01"
    assert float(version.tags["triad.score"]) == pytest.approx(best.data.metrics["val/acc_best"])
    assert "Verdicts: 0.01 vs 1e-07: 0.01 better." in version.description
    assert (f"http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
            f"/artifacts/report/report.html (after: mlflow ui --backend-store-uri {store_uri(mlruns)})") in version.description
    assert "report/report.md" in [f.path for f in client.list_artifacts(parent.info.run_id, "report")]
    assert parent.data.tags["triad.champion"].startswith("Champion: optimizer.lr=0.01")

    import mlflow.pyfunc

    mlflow.set_tracking_uri(store_uri(mlruns))
    model = mlflow.pyfunc.load_model("models:/triad-champion@champion")
    answers = model.predict(np.zeros((3, 4), dtype=np.float32))  # three standardised iris flowers
    assert len(answers) == 3 and set(answers["prediction"]) <= {"setosa", "versicolor", "virginica"}

    # Another metric's report registers nothing; a later report on the objective says what the end decided.
    compare = [sys.executable, "-m", "src.compare", "--tracking-uri", store_uri(mlruns)]
    import subprocess

    subprocess.run([*compare, "--metric", "test/acc"], check=True, capture_output=True, timeout=300)
    again = subprocess.run(compare, check=True, capture_output=True, text=True, timeout=300).stdout
    assert "Champion: optimizer.lr=0.01" in again
    assert len(client.search_model_versions("name = 'triad-champion'")) == 1

    # The same sweep again re-uses every run, wins again: version 2 has the alias now.
    run_train(sweep, mlruns)
    assert str(client.get_model_version_by_alias("triad-champion", "champion").version) == "2"
    assert client.get_model_version("triad-champion", "2").run_id == version.run_id  # the run that trained


@pytest.mark.slow
def test_without_a_winner_nothing_is_registered_and_the_report_says_why(mlruns):
    out = run_train(["-m", "data=iris", "model=mlp,linear", "seed=0,1", "trainer.max_epochs=1"], mlruns).stdout
    why = "No champion registered: no choice beats every other: linear vs mlp: cannot decide."
    assert why in out
    client = MlflowClient(store_uri(mlruns))
    assert client.search_registered_models() == []
    [report] = list(mlruns.glob("multiruns/*/*/report/report.md"))
    assert champion_section(report.read_text()) == why
