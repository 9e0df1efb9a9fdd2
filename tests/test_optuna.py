"""triad's Optuna sweeper (hydra/sweeper=optuna): the search space read with Hydra's own
parser, a stored study that a stopped search resumes, trials pruned from their validation
metric and recorded as such in MLflow, and in the comparison report."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from src import PROJECT_ROOT
from src.search import search_space
from src.study import open_study
from src.validate import ConfigError
from tests.conftest import run_train, store_uri

SMALL = ["data=iris", "callbacks=none"]


def study_of(mlruns: Path) -> optuna.Study:
    return optuna.load_study(study_name="triad", storage=f"sqlite:///{mlruns}/optuna.db")


def by_trial(mlruns: Path) -> dict[int, list]:
    """The sweep's runs by their trial's number: sweep=optuna trains 3 seeds a trial."""
    runs: dict[int, list] = {}
    for run in children(mlruns):
        runs.setdefault(int(run.data.tags["triad.trial"]), []).append(run)
    return runs


def children(mlruns: Path) -> list:
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    return [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" in r.data.tags]


def test_the_search_space_is_hydras_sweep_syntax_as_optuna_distributions():
    params = {"optimizer.lr": "tag(log, interval(0.0003, 0.3))", "model.hidden_size": "choice(16, 32, 64)",
              "model.num_layers": "range(1, 6, 2)", "trainer.max_epochs": "5"}
    space, writers, fixed = search_space(params, ["optimizer=sgd,adam", "model.dropout=interval(0, 0.5)",
                                                  "+x=tag(int, interval(1, 8))", "model.hidden_size=8,16"],
                                         OverridesParser.create())
    assert space == {"optimizer.lr": FloatDistribution(0.0003, 0.3, log=True),
                     "model.hidden_size": CategoricalDistribution([8, 16]),  # the command line's replaces the param
                     "model.num_layers": IntDistribution(1, 5, step=2),
                     "optimizer": CategoricalDistribution(["sgd", "adam"]),
                     "model.dropout": FloatDistribution(0.0, 0.5), "x": IntDistribution(1, 8)}
    assert fixed == ["trainer.max_epochs=5"]
    assert writers["x"][0] == "+x" and writers["optimizer"][1]("adam") == "adam" and writers["x"][1](3) == "3"


def test_an_entry_optuna_cannot_sample_is_refused_by_its_key():
    with pytest.raises(ConfigError) as refused:
        search_space({"optimizer.lr": "tag(log, interval(0, 0.3))", "model.hidden_size": "interval(16"},
                     ["data=glob(*)"], OverridesParser.create())
    unparsable, zero, glob = refused.value.problems  # every one at once, each naming its key and value
    assert unparsable.startswith("hydra.sweeper.params.model.hidden_size=interval(16: not Hydra override syntax")
    assert zero.startswith("hydra.sweeper.params.optimizer.lr=tag(log, interval(0, 0.3)): not a range Optuna "
                           "samples: `low > 0` must hold for `log=True`")
    assert glob.startswith("data=glob(*): Optuna samples choice(a, b, ...), a,b,c, range(")


def test_an_unknown_pruner_names_the_ones_there_are(tmp_path):
    with pytest.raises(ConfigError) as refused:
        open_study(None, "s", "maximize", {"name": "tpe"}, {"name": "patient"})
    assert refused.value.problems == ["hydra.sweeper.pruner.name=patient: not an Optuna pruner triad builds; "
                                      "use one of median, successive_halving, hyperband, none."]


@pytest.mark.slow
def test_each_trial_is_an_mlflow_child_and_a_complete_trial_of_the_stored_study(mlruns):
    result = run_train(["sweep=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2", *SMALL], mlruns)
    trials = study_of(mlruns).trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.COMPLETE), (1, TrialState.COMPLETE)]
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)  # the seeds' mean val/loss after each epoch
    runs = by_trial(mlruns)
    assert sorted(runs) == [0, 1] and all(len(members) == 3 for members in runs.values())  # 3 seeds a trial
    for trial in trials:
        assert all(r.info.status == "FINISHED" for r in runs[trial.number])
        assert sum(r.data.metrics["val/loss_best"] for r in runs[trial.number]) / 3 == pytest.approx(trial.value)
        assert all(float(r.data.params["optimizer.lr"]) == pytest.approx(trial.params["optimizer.lr"])
                   for r in runs[trial.number])
    assert "0 trials done, 2 to run" in result.stdout
    # The same command again: the study is done; it says how to go on and records no empty parent.
    again = run_train(["sweep=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=2", *SMALL], mlruns, check=False)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "has 2 trials done, so this search would run none" in again.stderr
    assert "hydra.sweeper.n_trials=4" in again.stderr and "hydra.sweeper.study_name=" in again.stderr
    client = MlflowClient(store_uri(mlruns))
    assert len(client.search_runs([client.get_experiment_by_name("triad").experiment_id],
                                  "tags.`triad.sweep` = 'parent'")) == 1


@pytest.mark.slow
def test_a_stopped_search_resumes_its_study(tmp_path):
    mlruns, log = tmp_path / "mlruns", tmp_path / "search.log"
    args = ["sweep=optuna", "hydra.sweeper.n_trials=6", "trainer.max_epochs=3", *SMALL]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    # In a process group of its own, as a shell starts a command: Ctrl-C reaches all of it.
    process = subprocess.Popen([sys.executable, "-m", "src.train", f"paths.mlruns_dir={mlruns}", *args],
                               cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        while "trial 1:" not in log.read_text():  # the second trial was told
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    first = study_of(mlruns).trials
    assert len(first) >= 2 and not [t for t in first if t.state == TrialState.RUNNING]
    result = run_train(args, mlruns)
    assert f"{sum(t.state != TrialState.FAIL for t in first)} trials done" in result.stdout
    trials = study_of(mlruns).trials
    done = [t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 6 and set(range(6)) <= {t.number for t in trials}
    assert [t.number for t in trials] == list(range(len(trials)))  # numbers go on, none twice
    assert min(t.number for t in trials[len(first):]) == len(first)
    assert not [r for r in children(mlruns) if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_a_bad_trial_is_pruned_and_recorded_as_pruned(mlruns):
    # lr 1e-8 hardly moves from chance; after one finished trial (lr 0.05) its val/loss lags from epoch 2.
    result = run_train(["sweep=optuna", "hydra.sweeper.n_trials=3", "trainer.max_epochs=8",
                        "optimizer.lr=choice(0.00000001, 0.05)", "model.hidden_size=64",
                        "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=2", *SMALL],
                       mlruns)
    pruned = [t for t in study_of(mlruns).trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["optimizer.lr"] == 1e-8 for t in pruned)
    runs = by_trial(mlruns)
    for trial in pruned:  # the trial's seeds, side by side, are pruned as one
        assert {r.info.status for r in runs[trial.number]} == {"KILLED"}
        assert {r.data.tags["triad.pruned"] for r in runs[trial.number]} == {str(max(trial.intermediate_values))} == {"2"}
        assert f"trial {trial.number}: pruned after epoch 2" in result.stdout
    report = next(mlruns.glob("multiruns/*/*/report/report.md")).read_text()
    assert f"{3 * len(pruned)} pruned (stopped early by the Optuna pruner, not scored), 0 not finished" in report
    assert "| all | 3 | 0 |" in report  # the finished trial's 3 seeds are scored; the pruned are not failures


@pytest.mark.slow
def test_a_trial_of_several_seeds_is_their_mean_and_reports_it_each_epoch(mlruns):
    run_train(["sweep=optuna", "hydra.sweeper.n_trials=1", "trainer.max_epochs=2", "seeds=[0,1]", *SMALL], mlruns)
    [trial] = study_of(mlruns).trials
    runs = children(mlruns)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]  # each seed its own run of the trial
    assert {r.data.tags["triad.trial"] for r in runs} == {"0"}
    assert trial.value == pytest.approx(sum(r.data.metrics["val/loss_best"] for r in runs) / 2)
    assert sorted(trial.intermediate_values) == [1, 2]  # the members' mean after each epoch
