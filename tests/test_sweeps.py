"""Real Hydra multiruns through the real launchers and sweepers: one MLflow parent per
sweep, each job its child, the report on the parent, re-runs that skip done jobs, and
Ctrl-C or SIGTERM that stop a sweep with nothing left RUNNING and no process left behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from src import PROJECT_ROOT, store
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
        "report/report.md", "report/report.html", "report/learning_curves.png", "report/intervals.png",
        "report/expected_max.png"}
    return Path(client.download_artifacts(parent.info.run_id, "report/report.md")).read_text()


@pytest.mark.slow
def test_named_sweep_with_the_basic_launcher_ends_with_a_report(mlruns):
    # sweep=architectures, shrunk: 2 models x 2 optimizers x 2 seeds, one epoch each.
    # seeds_together=false: one job per seed (the file trains a choice's seeds in one job)
    result = run_train(["sweep=architectures", "model=linear,mlp", "optimizer=sgd,adam", "seed=0,1",
                        "seeds_together=false", "compare.scientific=[model,optimizer]", *SMALL], mlruns)
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
    # 2 seeds per choice: no pair can be decided, said before the sweep starts and in each of the 6 pairs.
    assert result.stdout.index("Note: 2 seeds per choice") < result.stdout.index("parameters; MLflow run")
    verdicts = [line for line in report.splitlines() if line.endswith("** |")]
    assert len(verdicts) == 6
    assert all("cannot decide" in v for v in verdicts)
    assert "P(A beats B)" in result.stdout and "Report:" in result.stdout
    # the last line says the status the store holds (not FAILED when it FINISHED)
    assert result.stdout.rstrip().splitlines()[-1] == f"Sweep parent run {parent.info.run_id} FINISHED."


@pytest.mark.slow
def test_sweep_architectures_as_typed_has_the_seeds_to_decide_every_pair(mlruns):
    # The named sweep as a user runs it, shortened in epochs only: 5 models x 8 seeds, each
    # model's seeds in one job (side by side, or one after another for rnn and lstm).
    result = run_train(["sweep=architectures", "trainer.max_epochs=3"], mlruns, timeout=1500)
    client, parents, children = sweep_record(mlruns)
    assert len(children) == 40 and all(r.info.status == "FINISHED" for r in children)
    assert parents[0].info.status == "FINISHED" and parents[0].data.params["compare.correction"] == "holm"
    report = Path(client.download_artifacts(parents[0].info.run_id, "report/report.md")).read_text()
    assert "Metric: `val/loss` (lowest is better)" in report
    verdicts = [line for line in report.splitlines() if line.endswith("** |")]
    assert len(verdicts) == 10  # 5 models: 10 pairs
    # 8 seeds reach Holm's first step (p <= 0.05/10): no pair is "cannot decide"
    assert all(("better" in v) or ("no evidence" in v) for v in verdicts), verdicts
    assert "Note:" not in result.stdout  # enough seeds: nothing to warn about before it starts
    assert parents[0].data.tags["triad.verdicts_holm"] and "P(A beats B)" in result.stdout


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
    # sweep=optuna: each trial trains 3 seeds side by side and returns their mean best val/loss.
    run_train(["sweep=optuna", "hydra.sweeper.n_trials=2", *SMALL], mlruns)
    client, parents, children = sweep_record(mlruns)
    assert parents[0].data.params["sweeper"] == "optuna" and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["triad.job_num"] for r in children) == ["0"] * 3 + ["1"] * 3
    report = Path(client.download_artifacts(parents[0].info.run_id, "report/report.md")).read_text()
    assert "## Tuning" in report
    sweep_dir = Path(parents[0].data.tags["triad.sweep_dir"])
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())["best_value"]
    trials: dict[str, list[float]] = {}
    for run in children:
        trials.setdefault(run.data.tags["triad.job_num"], []).append(run.data.metrics["val/loss_best"])
    assert best == pytest.approx(min(sum(v) / len(v) for v in trials.values()))  # minimize val/loss


# ---------------------------------------------------------------- stopping a sweep

# Job 0 trains one epoch and finishes; job 1 trains on until the signal stops it.
ONE_DONE_ONE_TRAINING = ["data=iris", "callbacks=none", "seed=0", "trainer.max_epochs=1,500"]
LAUNCHERS = {
    "basic": [],  # the jobs run one after another in the sweep's own process
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],  # in loky worker processes
    "submitit_local": ["hydra/launcher=submitit_local"],  # each in a process of its own
}


def start_sweep(args: list[str], mlruns: Path, log: Path) -> subprocess.Popen:
    """`python -m src.train -m <args>` in the background, in a process group of its own as a
    shell starts a command: os.killpg then reaches it and every process it started, as Ctrl-C does."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "src.train", "-m", f"paths.mlruns_dir={mlruns}", *args],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_for_jobs(process: subprocess.Popen, mlruns: Path, statuses: set[str]) -> None:
    """Poll the store until the sweep's parent run exists and its children have these statuses
    (among others); fail if the sweep ends first."""
    client = store.client_for(store_uri(mlruns))  # under the store's lock: never races its creation
    while True:
        assert process.poll() is None, f"the sweep ended (exit {process.returncode}) before it could be stopped"
        experiment = client.get_experiment_by_name("triad")
        if experiment is not None:
            runs = client.search_runs([experiment.experiment_id])
            jobs = [r.info.status for r in runs if "mlflow.parentRunId" in r.data.tags]
            if len(jobs) < len(runs) and statuses <= set(jobs):  # the parent exists, and these jobs
                return
        time.sleep(0.2)


def survivors(mlruns: Path, group: int) -> list[str]:
    """Live processes of a sweep: in its process group, or naming its folder on their command
    line (loky's workers name nothing: the group finds them)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state, _, pgrp = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # it ended meanwhile
        if state != "Z" and (int(pgrp) == group or str(mlruns) in command):
            found.append(f"{proc.name}: {command}")
    return found


def check_nothing_left(mlruns: Path, group: int) -> None:
    """No process of the sweep is alive a few seconds after it exited."""
    deadline = time.monotonic() + 5
    while (left := survivors(mlruns, group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, "processes outlived the sweep:\n" + "\n".join(left)


def stop_sweep(process: subprocess.Popen, stop: int, log: Path) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group), SIGTERM as `kill`
    sends it (to the main process alone); the sweep exits 128 + the signal."""
    if stop == signal.SIGINT:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    returncode = process.wait(timeout=180)
    assert returncode == 128 + stop, log.read_text()[-3000:]


@pytest.fixture
def sweeps():
    """Kills, after the test, whatever a stopped sweep left behind (a failing test must not
    leave processes training)."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_stopped_sweep_leaves_nothing_running(launcher, stop, tmp_path, sweeps):
    mlruns, log = tmp_path / "mlruns", tmp_path / "sweep.log"
    process = start_sweep([*LAUNCHERS[launcher], *ONE_DONE_ONE_TRAINING], mlruns, log)
    sweeps.append(process)
    wait_for_jobs(process, mlruns, {"FINISHED", "RUNNING"})
    stop_sweep(process, stop, log)
    check_nothing_left(mlruns, process.pid)
    client, [parent], children = sweep_record(mlruns)
    assert parent.info.status == "KILLED"
    # the console's last word is the status the store holds, said once
    assert log.read_text().count(f"Sweep parent run {parent.info.run_id} KILLED.") == 1
    assert f"Sweep parent run {parent.info.run_id} FAILED" not in log.read_text()
    assert sorted(r.info.status for r in children) == ["FINISHED", "KILLED"]
    # the report of what finished, as when a job fails
    assert "report/report.md" in {a.path for a in client.list_artifacts(parent.info.run_id, "report")}


@pytest.mark.slow
def test_sigterm_before_the_first_job_ends_the_sweep_killed(tmp_path, sweeps):
    # The basic launcher runs the jobs in the sweep's process: here the first one is still
    # importing, before any handler of train() is set.
    mlruns, log = tmp_path / "mlruns", tmp_path / "sweep.log"
    process = start_sweep(ONE_DONE_ONE_TRAINING, mlruns, log)
    sweeps.append(process)
    wait_for_jobs(process, mlruns, set())
    stop_sweep(process, signal.SIGTERM, log)
    check_nothing_left(mlruns, process.pid)
    client, [parent], children = sweep_record(mlruns)
    assert parent.info.status == "KILLED"
    assert all(r.info.status == "KILLED" for r in children)


def test_the_seeds_a_sweep_names_are_counted_before_it_starts():
    from src.sweep import seed_count

    assert seed_count("0,1,2") == 3 and seed_count("range(0,5)") == 5 and seed_count("range(0, 10, 2)") == 5
    assert seed_count(None) == 1  # seed not swept: one run per choice
    assert seed_count("interval(0, 1)") is None  # a distribution: not counted


def test_a_grid_sweep_says_before_it_starts_when_its_seeds_cannot_decide():
    from omegaconf import OmegaConf

    from src.sweep import choice_count, seeds_note

    compare = OmegaConf.create({"alpha": 0.05, "correction": "holm", "scientific": None, "nuisance": ["optimizer.lr"]})
    space = {"model": "mlp,cnn,rnn,lstm,transformer", "optimizer.lr": "0.1,0.01", "seed": "0,1,2"}
    assert choice_count(space, compare) == 5  # the nuisance lr and the seed are not choices
    said = seeds_note(3, 5, compare)
    assert said.startswith("Note: 3 seeds per choice cannot decide any pair: 3 vs 3 runs give a permutation p >= 0.1")
    assert "4 seeds can decide a pair alone, 6 the 10 pairs of 5 choices under Holm's correction" in said
    assert "can decide a pair alone" in seeds_note(5, 5, compare) and seeds_note(6, 5, compare) is None
    assert seeds_note(4, 2, compare) is None  # one pair: 4 against 4 reach p = 0.029
    compare.correction = "none"
    assert seeds_note(4, 5, compare) is None and "Holm" not in seeds_note(3, 5, compare)
    assert choice_count({"model.hidden_size": "choice(16, 32)"}, compare) is None  # Optuna samples it
