"""Real Hydra multiruns through the real launchers and sweepers: one MLflow parent per
sweep, each job its child, the report on the parent, and re-runs that skip done jobs."""

from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import run_train, store_uri

SMALL = ["data=iris", "trainer.max_epochs=1", "callbacks=none"]


def sweep_record(mlruns: Path):
    """(client, parents newest first, children of the newest parent by job number)."""
    client = MlflowClient(store_uri(mlruns))
    exp_id = client.get_experiment_by_name("triad").experiment_id
    parents = client.search_runs([exp_id], "tags.`triad.sweep` = 'parent'", order_by=["attributes.start_time DESC"])
    children = client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return client, parents, sorted(children, key=lambda r: int(r.data.tags["triad.job_num"]))


def check_sweep(client, parent, children, jobs: int, status: str = "FINISHED") -> str:
    """The parent ended with the report logged on it; each job is a tagged child."""
    assert parent.info.status == status
    assert [r.data.tags["triad.job_num"] for r in children] == [str(i) for i in range(jobs)]
    for run in children:
        assert run.data.tags["triad.sweep_id"] == parent.info.run_id
        assert len(run.data.tags["triad.config_hash"]) == 16
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "report")} >= {
        "report/report.md", "report/learning_curves.png", "report/intervals.png", "report/expected_max.png"}
    return Path(client.download_artifacts(parent.info.run_id, "report/report.md")).read_text()


@pytest.mark.slow
def test_named_sweep_with_the_basic_launcher_ends_with_a_report(mlruns):
    # sweep=architectures, shrunk: 2 models x 2 optimizers x 2 seeds, one epoch each.
    result = run_train(["sweep=architectures", "model=linear,mlp", "optimizer=sgd,adam", "seed=0,1",
                        "compare.scientific=[model,optimizer]", *SMALL], mlruns)
    client, parents, children = sweep_record(mlruns)
    assert len(parents) == 1 and len(children) == 8
    assert all(r.info.status == "FINISHED" for r in children)
    assert {r.info.run_name for r in children} >= {"linear-cross_entropy-sgd-s0", "mlp-cross_entropy-adam-s1"}
    parent = parents[0]
    assert parent.data.params["sweep"] == "architectures"
    assert parent.data.params["search.model"] == "linear,mlp"  # what the command line swept
    report = check_sweep(client, parent, children, 8)
    assert "grouped by model, optimizer" in report
    assert "| linear-adam | 2 | 0 |" in report and "| mlp-sgd | 2 | 0 |" in report
    # Every one of the 6 pairs has a verdict, in the terminal too.
    verdicts = [line for line in report.splitlines() if line.endswith("** |")]
    assert len(verdicts) == 6
    assert all(("better" in v) or ("no evidence" in v) for v in verdicts)
    assert "P(A beats B)" in result.stdout and "Report:" in result.stdout


@pytest.mark.slow
def test_sweep_architectures_at_its_own_size_names_a_verdict_for_every_pair(mlruns):
    # The named sweep as a user runs it: 5 models x 3 seeds, 5 epochs, on digits.
    result = run_train(["sweep=architectures"], mlruns, timeout=900)
    client, parents, children = sweep_record(mlruns)
    assert len(children) == 15 and all(r.info.status == "FINISHED" for r in children)
    report = check_sweep(client, parents[0], children, 15)
    verdicts = [line for line in report.splitlines() if line.endswith("** |")]
    assert len(verdicts) == 10  # 5 models: 10 pairs
    assert all(("better" in v) or ("no evidence" in v) for v in verdicts)
    assert parents[0].data.tags["triad.verdicts"] and "P(A beats B)" in result.stdout


@pytest.mark.slow
def test_the_gradient_descent_variants_command_runs_every_pair(mlruns):
    # The README's comparison of batch, mini-batch and stochastic gradient descent,
    # one epoch each (batch size 1 is 97 steps an epoch on iris).
    run_train(["-m", "optimizer=sgd,adam", "data.batch_size=full,32,1", *SMALL], mlruns)
    client, parents, children = sweep_record(mlruns)
    ran = {(r.data.params["optimizer"], r.data.params["data.batch_size"]) for r in children}
    assert ran == {(o, b) for o in ("sgd", "adam") for b in ("full", "32", "1")}
    assert all(r.info.status == "FINISHED" for r in children)
    # the summary is recorded at the run's last step: the optimizer steps one epoch took
    steps = {r.data.params["data.batch_size"]: client.get_metric_history(r.info.run_id, "time/fit_s")[0].step
             for r in children}
    assert steps == {"full": 1, "32": 4, "1": 97}  # iris: 97 training rows


@pytest.mark.slow
def test_joblib_workers_record_children_of_the_parent(mlruns):
    run_train(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=linear", "seed=0,1,2", *SMALL],
              mlruns)
    client, parents, children = sweep_record(mlruns)
    assert len(parents) == 1 and parents[0].data.params["launcher"] == "joblib"
    assert all(r.info.status == "FINISHED" for r in children)
    check_sweep(client, parents[0], children, 3)


@pytest.mark.slow
def test_a_rerun_skips_finished_jobs_and_failures_are_counted(mlruns):
    # First sweep: one job fails after its run started (it diverges; 0.003 is the default lr).
    first = run_train(["-m", "model=linear", "seed=0", "optimizer.lr=0.003,1e300", *SMALL],
                      mlruns, check=False)
    assert first.returncode != 0  # Hydra reports the failed job once the sweep is over
    client, parents, children = sweep_record(mlruns)
    assert [r.info.status for r in children] == ["FINISHED", "FAILED"]
    report = check_sweep(client, parents[0], children, 2, status="FAILED")
    assert "2 runs: 1 FINISHED, 1 not finished" in report

    # Run again with one more seed: seed 0 is reused, only seed 1 trains.
    run_train(["-m", "model=linear", "seed=0,1", *SMALL], mlruns)
    client, parents, children = sweep_record(mlruns)
    assert len(parents) == 2
    check_sweep(client, parents[0], children, 2)
    reused, trained = children
    assert reused.data.tags["triad.reused_from"] != reused.info.run_id
    original = client.get_run(reused.data.tags["triad.reused_from"])
    assert original.data.tags["mlflow.parentRunId"] == parents[1].info.run_id  # the old sweep keeps it
    assert reused.data.metrics["val/acc_best"] == original.data.metrics["val/acc_best"]
    assert "triad.reused_from" not in trained.data.tags
    assert len(client.get_metric_history(trained.info.run_id, "val/acc")) == 1  # it trained (1 epoch)


@pytest.mark.slow
def test_optuna_sweep_gets_the_objective_of_each_trial(mlruns):
    run_train(["sweep=optuna", "hydra.sweeper.n_trials=2", *SMALL], mlruns)
    client, parents, children = sweep_record(mlruns)
    assert len(children) == 2 and parents[0].data.params["sweeper"] == "optuna"
    report = check_sweep(client, parents[0], children, 2)
    assert "## Tuning" in report
    sweep_dir = Path(parents[0].data.tags["triad.sweep_dir"])
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["best_value"]
    assert best == pytest.approx(max(r.data.metrics["val/acc_best"] for r in children))
