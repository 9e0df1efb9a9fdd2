"""Issue 14, item 7: inputs that cannot work are refused before any run is created
(exit 2, one message naming the key or file, the bad value and what would work, no
traceback, nothing in the store); what can only fail later (a full disk) ends the
run FAILED with one line on the console and the traceback in the run's error.txt.
Real commands in subprocesses, real checkpoints, stores and (where the sandbox
allows mounting) real full and read-only file systems.
"""

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from src import PROJECT_ROOT, store
from tests.conftest import compose_config, run_train, store_uri

TINY = ["data=iris", "trainer.max_epochs=1", "callbacks=none"]


def refused(result: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 2, each of names in the message, no traceback."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    for name in names:
        assert name in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- stores and folders


@pytest.mark.slow
def test_a_store_file_that_is_no_database_is_refused_and_left_alone(mlruns):
    store = mlruns / "mlflow.db"
    store.write_text("notes, not a database\n")
    result = run_train(TINY, mlruns, check=False)
    refused(result, f"{store} is not an SQLite database", "Move that file away")
    assert store.read_text() == "notes, not a database\n"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg is installed")
def test_a_postgresql_store_without_its_driver_is_refused_without_its_password(mlruns):
    uri = "postgresql://triad:pw-4e1f9a@localhost:5432/mlflow"
    result = run_train(TINY, mlruns, env={"MLFLOW_TRACKING_URI": uri}, check=False)
    refused(result, "postgresql://triad:***@localhost:5432/mlflow", "driver is not installed", "pip install")
    assert "pw-4e1f9a" not in result.stdout + result.stderr


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A real tmpfs mounted at path (size-limited or read-only); skipped where the
    sandbox does not allow mounting (it needs root, CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    result = subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                            capture_output=True, text=True) if mount else None
    if result is None or result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() if result else 'no mount command'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.slow
def test_a_read_only_mlruns_is_refused_naming_it(tmp_path):
    with tmpfs(tmp_path / "mlruns", "size=1m,ro") as mlruns:
        result = run_train(TINY, mlruns, check=False)
    refused(result, f"cannot write into {mlruns} (Read-only file system)", "paths.mlruns_dir")


@pytest.mark.slow
def test_a_read_only_store_folder_is_refused_where_the_store_is_opened(tmp_path):
    # The outputs elsewhere: the store itself is what cannot be written.
    with tmpfs(tmp_path / "mlruns", "size=1m,ro") as mlruns:
        result = run_train([*TINY, f"hydra.run.dir={tmp_path / 'outputs'}"], mlruns, check=False)
    refused(result, f"logger.tracking_uri={store_uri(mlruns)}", "is not writable (Read-only file system)",
            "Make it writable")
    assert not list((tmp_path / "outputs").rglob("*.ckpt"))


# ---------------------------------------------------------------- after the data and the model


@pytest.fixture(scope="module")
def not_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Files given as ckpt_path to an mlp run: text, a checkpoint cut short, and a
    transformer's real checkpoint (trained here, one epoch)."""
    from src.train import train

    folder = tmp_path_factory.mktemp("checkpoints")
    train(compose_config([*TINY, "model=transformer", "logger=none"], folder))
    [transformer] = folder.glob("outputs/checkpoints/best.ckpt")
    (folder / "notes.ckpt").write_text("not a checkpoint\n")
    (folder / "cut.ckpt").write_bytes(transformer.read_bytes()[:2000])
    return {"text": folder / "notes.ckpt", "cut": folder / "cut.ckpt", "transformer": transformer}


# (overrides, what the message must name: the key or file and value, and the fix)
REFUSED = {
    "text as ckpt_path": (["ckpt_path={text}"], ["ckpt_path='{text}'", "not a checkpoint torch can read",
                                                  "checkpoints/best.ckpt"]),
    "cut checkpoint": (["ckpt_path={cut}"], ["ckpt_path='{cut}'", "not a checkpoint torch can read", "or null"]),
    "transformer's checkpoint to mlp": (["ckpt_path={transformer}"], [
        "ckpt_path='{transformer}'", "do not fit model=mlp data=iris", "net.layers.0.weight", "same model and data"]),
    "objective never logged": (["objective=val/nonexistent"], ["objective='val/nonexistent'", "val/acc, val/f1"]),
    "strategy unknown": (["trainer.strategy=bogus"], ["trainer.strategy='bogus'", "ddp_spawn"]),
    "model too large": (["model.hidden_size=2000000", "model.num_layers=4"], [
        "model=mlp is too large", "of memory is available", "model.hidden_size=2000000, model.num_layers=4"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", REFUSED)
def test_a_bad_input_is_refused_before_any_run(name, not_checkpoints, mlruns):
    overrides, names = REFUSED[name]
    result = run_train([*TINY, *(o.format(**not_checkpoints) for o in overrides)], mlruns, check=False)
    refused(result, *(n.format(**not_checkpoints) for n in names))
    assert not (mlruns / "mlflow.db").exists()  # no run, not even a FAILED one


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_a_gpu_run_without_a_gpu_is_refused(mlruns):
    result = run_train([*TINY, "trainer.accelerator=gpu"], mlruns, check=False)
    refused(result, "trainer.accelerator='gpu'", "no GPU", "trainer.accelerator=cpu")
    assert not (mlruns / "mlflow.db").exists()


# ---------------------------------------------------------------- eval and compare


def run_module(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m <module> <args>`, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def store_with_a_run(mlruns) -> MlflowClient:
    """A real store holding one finished run (recorded directly: no training needed)."""
    client = store.client_for(store_uri(mlruns))
    run = client.create_run(store.experiment_id(client, "triad", None))
    client.set_terminated(run.info.run_id, "FINISHED")
    return client


def all_runs(client: MlflowClient) -> list[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return [r.info.run_id for r in client.search_runs(experiments)]


@pytest.mark.slow
def test_eval_of_a_run_that_does_not_exist_is_refused(store_with_a_run, mlruns):
    before = all_runs(store_with_a_run)
    result = run_module("src.eval", ["run_id=doesnotexist", f"paths.mlruns_dir={mlruns}"])
    refused(result, "run_id='doesnotexist': no such run", "Copy the id")
    assert all_runs(store_with_a_run) == before


@pytest.mark.parametrize("args,names", [
    (["--sweep", "nonsense"], ["--sweep nonsense: no sweep with that id", "pass --filter"]),
    (["--filter", "params.data == iris"], ["--filter params.data == iris: MLflow cannot read it",
                                           "params.data = 'iris'"]),
], ids=["sweep", "filter"])
def test_compare_refuses_a_bad_sweep_or_filter(args, names, store_with_a_run, mlruns):
    result = run_module("src.compare", ["--tracking-uri", store_uri(mlruns), "--out", str(mlruns / "report"), *args])
    refused(result, *names)
    assert not (mlruns / "report").exists()


# ---------------------------------------------------------------- a failure mid-run


@pytest.mark.slow
def test_a_full_disk_mid_run_fails_the_run_with_one_line_and_the_traceback_in_error_txt(tmp_path):
    mlruns = tmp_path / "mlruns"
    # The checkpoints' disk (64 KB) fills at the first checkpoint; the store's has room.
    with tmpfs(tmp_path / "outputs", "size=64k") as outputs:
        result = run_train([*TINY, f"hydra.run.dir={outputs}"], mlruns, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert "No space left on device" in line and "FAILED; its traceback is in" in line
    assert "Traceback" not in result.stderr
    client = MlflowClient(store_uri(mlruns))
    [run] = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    assert run.info.status == "FAILED" and run.info.run_id in line
    error_txt = Path(line.rsplit("its traceback is in ", 1)[1].rstrip(")"))
    assert error_txt.is_file() and "Traceback" in error_txt.read_text()
