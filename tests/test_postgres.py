"""A team's tracking server for real: PostgreSQL behind `mlflow server`, a parallel
sweep recording through it, and the server killed mid-sweep and started again.

The commands are the README's ('A team's tracking server'), on free ports. Skipped
only where PostgreSQL's programs are not installed (Debian: `apt-get install postgresql`).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from src import PROJECT_ROOT
from tests.conftest import run_train, store_uri
from tests.test_scale import free_port, jobs_of_one_sweep, runs_in
from tests.test_train import artifact_paths

pytestmark = pytest.mark.slow


def postgres_program(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else Debian's (/usr/lib/postgresql/<version>/bin), the newest."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[4]))
    return shutil.which(name) or (found[-1] if found else None)


PROGRAMS = {name: postgres_program(name) for name in ("initdb", "pg_ctl", "createdb")}
MISSING = [name for name, path in PROGRAMS.items() if path is None]


class Postgres:
    """A PostgreSQL server of its own on 127.0.0.1 (data, socket and log in one folder)."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.data = folder, port, folder / "data"
        # PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, program: str, *args: str) -> None:
        result = subprocess.run([*self.as_user, PROGRAMS[program], *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{program} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"

    def start(self) -> None:
        """The README's commands: initdb, pg_ctl start, createdb."""
        self.run("initdb", "-D", str(self.data), "--username=mlflow", "--auth=trust")
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w", "start",
                 "-o", f"-h 127.0.0.1 -p {self.port} -k {self.folder}")
        self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", "mlflow")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_user, PROGRAMS["pg_ctl"], "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)


@pytest.fixture
def postgres():
    """A fresh PostgreSQL with a database `mlflow`, stopped at the end whatever happens:
    its backend-store URI. Its folder is in the system's temp folder, owned by the
    user that runs it (pytest's own is readable by root alone)."""
    if MISSING:
        pytest.skip(f"PostgreSQL's programs are not installed ({', '.join(MISSING)}): apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="triad-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = Postgres(folder, free_port())
    try:
        server.start()
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg (3); the dev extra pins psycopg2
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{server.port}/mlflow"
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


class MlflowServer:
    """`mlflow server` over a backend store, serving artifacts from a folder, on a fixed
    port: a test can kill it (SIGKILL) and start it again there."""

    def __init__(self, backend_uri: str, artifacts: Path, log: Path):
        self.backend_uri, self.artifacts, self.log = backend_uri, artifacts, log
        self.port, self.process = free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """The README's command; returns once it answers (~15-20 s; the first start creates the tables)."""
        mlflow = Path(sys.executable).with_name("mlflow")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [str(mlflow), "server", "--backend-store-uri", self.backend_uri, "--serve-artifacts",
                 "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    answer.read()
                return
            except OSError:
                assert self.process.poll() is None, f"mlflow server exited:\n{self.log.read_text()[-3000:]}"
                time.sleep(0.5)
        pytest.fail(f"mlflow server did not answer in 3 minutes:\n{self.log.read_text()[-3000:]}")

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """The server and its workers (its process group), at once with SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)
            self.process.wait(timeout=30)


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    server = MlflowServer(postgres, tmp_path / "artifacts", tmp_path / "mlflow-server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)


# The README's sweep, on the test's server: 8 jobs, 4 at a time.
SWEEP = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "data=iris", "model=mlp,linear",
         "seed=0,1,2,3", "trainer.max_epochs=2"]
CONFIGS = {(model, seed) for model in ("mlp", "linear") for seed in ("0", "1", "2", "3")}


def steps_of(client, run) -> dict[str, list[int]]:
    """Each metric of a run and the steps it was recorded at."""
    return {key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics}


def test_a_parallel_sweep_records_everything_through_postgres(mlflow_server, mlruns):
    run_train([*SWEEP, f"logger.tracking_uri={mlflow_server.uri}"], mlruns)
    assert not (mlruns / "mlflow.db").exists()  # nothing went to the local store
    client, runs = runs_in(mlflow_server.uri)
    jobs = jobs_of_one_sweep(runs)
    (parent,) = [r for r in runs if r not in jobs]
    assert len(runs) == 9 and parent.info.status == "FINISHED"
    assert "triad.verdicts" in parent.data.tags
    assert {"report/report.md", "report/report.html"} <= artifact_paths(client, parent.info.run_id)
    assert {(r.data.params["model"], r.data.params["seed"]) for r in jobs} == CONFIGS  # each once
    assert len({r.data.tags["triad.config_hash"] for r in jobs}) == 8
    # What one run of the same config records locally: every metric at the same steps.
    run_train(["data=iris", "model=mlp", "seed=0", "trainer.max_epochs=2"], mlruns)
    local_client, (local,) = runs_in(store_uri(mlruns))
    expected = steps_of(local_client, local)
    assert len(expected["val/acc"]) == 2  # once per epoch
    for run in jobs:
        assert run.info.status == "FINISHED"
        assert steps_of(client, run) == expected, run.info.run_name
        assert {"config.yaml", "overrides.txt", "checkpoints/best.ckpt", "plots/learning_curves.png",
                "plots/confusion_matrix.png"} <= artifact_paths(client, run.info.run_id)
        (model,) = run.outputs.model_outputs  # the logged model, once
        assert client.get_logged_model(model.model_id).experiment_id == run.info.experiment_id
    assert len(list(mlflow_server.artifacts.rglob("best.ckpt"))) == 8  # stored by the server itself


# MLflow's client retries a request 7 times with a growing backoff (minutes) before it
# gives up: a server back within that time loses nothing. Here it gives up at once, so
# that the jobs writing while the server is down fail.
GIVE_UP_AT_ONCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def start_train(args: list[str], mlruns: Path, output: Path) -> subprocess.Popen:
    """`python -m src.train <args>` in the background, as run_train does, its output into a
    file; MLflow's client gives up on a request at once."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update({"PYTHONUNBUFFERED": "1", **GIVE_UP_AT_ONCE})
    with output.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "src.train", *[a for a in args if a.startswith("-")],
             f"paths.mlruns_dir={mlruns}", *[a for a in args if not a.startswith("-")]],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, process: subprocess.Popen, output: Path, deadline: float) -> None:
    """Until condition() holds; failing with the command's output if it ends or the deadline passes first."""
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline, output.read_text()[-5000:]
        time.sleep(0.5)


def runs_so_far(uri: str) -> list:
    experiment = MlflowClient(uri).get_experiment_by_name("triad")
    return runs_in(uri)[1] if experiment else []


def test_a_server_killed_mid_sweep_leaves_no_run_running_and_a_rerun_completes(mlflow_server, mlruns, tmp_path):
    args = [*SWEEP, "trainer.max_epochs=30", f"logger.tracking_uri={mlflow_server.uri}"]
    output = tmp_path / "sweep.txt"
    sweep = start_train(args, mlruns, output)
    try:
        # killed once a job has finished: the others are mid-way or not started
        wait_for(lambda: any("mlflow.parentRunId" in r.data.tags and r.info.status == "FINISHED"
                             for r in runs_so_far(mlflow_server.uri)), sweep, output, time.monotonic() + 300)
        mlflow_server.kill()  # SIGKILL, server and workers
        time.sleep(3)
        mlflow_server.start()  # the same port and store, ~15-20 s later
        sweep.wait(timeout=600)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    text = output.read_text()
    print(text[-20000:])  # shown by pytest when an assertion below fails
    assert sweep.returncode == 1
    # Each failed job says so naming the server: one that lost it mid-way in one line, one
    # that started while it was down with the config check's message. One traceback (Hydra's,
    # of the first failed job).
    failed = re.findall(r"^Job #\d+ \(.*\) failed: (.*\n.*)", text, re.MULTILINE)
    assert failed and all(mlflow_server.uri in why for why in failed), failed
    lost = f"the tracking server {mlflow_server.uri} did not answer"
    assert all(why.startswith((lost, "The config has 1 problem(s)")) for why in failed), failed
    assert text.count("Traceback") <= 1
    client, runs = runs_in(mlflow_server.uri)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    (first,) = [r for r in runs if r.data.tags.get("triad.sweep") == "parent"]
    assert first.info.status == "FAILED"
    trained = {(r.data.params["model"], r.data.params["seed"]) for r in runs if r.info.status == "FINISHED"}
    assert trained and trained < CONFIGS  # some jobs could not record

    # The same command again: the configs that finished are reused, the others train.
    run_train(args, mlruns)
    client, runs = runs_in(mlflow_server.uri)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    (second,) = [r for r in runs if r.data.tags.get("triad.sweep") == "parent" and r.info.run_id != first.info.run_id]
    assert second.info.status == "FINISHED"
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == second.info.run_id]
    assert len(jobs) == 8 and all(r.info.status == "FINISHED" for r in jobs)
    assert {(r.data.params["model"], r.data.params["seed"]) for r in jobs} == CONFIGS
    reused = {(r.data.params["model"], r.data.params["seed"]) for r in jobs if "triad.reused_from" in r.data.tags}
    assert reused == trained




def test_a_run_that_lost_its_server_waits_for_it_and_ends_there(mlflow_server, mlruns, tmp_path):
    """A single run (not a sweep) whose server went away waits for it, then ends its run
    there FAILED with the traceback, not left RUNNING; one line says what happened."""
    uri = mlflow_server.uri
    output = tmp_path / "train.txt"
    training = start_train(["model=mlp", "trainer.max_epochs=200", f"logger.tracking_uri={uri}"], mlruns, output)
    try:
        deadline = time.monotonic() + 300
        wait_for(lambda: (runs := runs_so_far(uri)) and "val/acc" in runs[0].data.metrics,  # mid-training
                 training, output, deadline)
        mlflow_server.kill()
        wait_for(lambda: "waiting up to 10 min for it, to end run" in output.read_text(), training, output, deadline)
        mlflow_server.start()
        training.wait(timeout=300)
    finally:
        if training.poll() is None:
            training.kill()
    text = output.read_text()
    print(text[-5000:])  # shown by pytest when an assertion below fails
    assert training.returncode == 1
    (run,) = runs_in(uri)[1]
    assert run.info.status == "FAILED"
    # refused, or reset or closed when it was killed mid-request
    reason = r"\[Errno \d+\] Connection \w+( by peer)?|Remote end closed connection without response"
    assert re.search(rf"^The tracking server {uri} did not answer \(({reason})\) "
                     rf"\(run {run.info.run_id} FAILED; its traceback is in mlflow-artifacts:/", text, re.MULTILINE)
    assert "Traceback" not in text
    assert "error.txt" in artifact_paths(MlflowClient(uri), run.info.run_id)


def test_jobs_that_log_one_data_set_at_once_all_record_it(mlflow_server):
    """Parallel jobs give their runs the same data set at the same moment: MLflow's server
    checks for it, then inserts it, so all but one insert hit PostgreSQL's UNIQUE constraint
    (a job failed this way in CI). Each run gets its inputs all the same."""
    from concurrent.futures import ThreadPoolExecutor

    from src.data.bundled import BundledDataModule
    from src.record import Record

    client = MlflowClient(mlflow_server.uri)
    experiment = client.create_experiment("race")
    datamodule = BundledDataModule(name="iris")
    datamodule.setup()
    jobs = 6

    def log_at_once(record: Record, name: str, start: threading.Barrier) -> None:
        start.wait()
        record.log_data(name, datamodule)

    for round_ in range(4):  # a fresh data set each round (its name is part of its key)
        records = [Record(client, client.create_run(experiment).info.run_id, "") for _ in range(jobs)]
        start = threading.Barrier(jobs)
        with ThreadPoolExecutor(jobs) as pool:
            for done in [pool.submit(log_at_once, r, f"iris-{round_}", start) for r in records]:
                done.result()  # raises a job's error
        for record in records:
            inputs = client.get_run(record.id).inputs.dataset_inputs
            assert sorted(i.dataset.name for i in inputs) == [f"iris-{round_}"] * 3
