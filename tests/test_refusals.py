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
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

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


# ---------------------------------------------------------------- every bad input, as typed


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


def runs_for_eval_and_compare(mlruns: Path) -> dict[str, str]:
    """A real store (recorded directly: no training needed) holding a sweep (its parent and
    two FINISHED runs that log val/acc), an evaluation, a FAILED run and a FINISHED run
    whose artifacts are gone; their ids by name."""
    from src import record

    client = store.client_for(store_uri(mlruns))
    experiment = store.experiment_id(client, "triad", str(mlruns / "artifacts"))

    def run(status: str, **tags) -> str:
        run_id = client.create_run(experiment, tags=tags).info.run_id
        client.set_terminated(run_id, status)
        return run_id

    parent = run("FINISHED", **{record.SWEEP: "parent"})
    for seed, (model, acc) in enumerate([("mlp", 0.9), ("cnn", 0.8)]):
        child = client.create_run(experiment, tags={record.PARENT_RUN_ID: parent, record.SWEEP_ID: parent,
                                                    record.OBJECTIVE: "val/acc"}).info.run_id
        client.log_batch(child, metrics=[Metric("val/acc_best", acc, 0, 0)],
                         params=[Param("model", model), Param("seed", str(seed))])
        client.set_terminated(child, "FINISHED")
    return {"parent_run": parent, "bare_run": run("FINISHED"), "failed_run": run("FAILED"),
            "eval_run": run("FINISHED", **{"mlflow.source.name": "src.eval", record.EVALUATED_RUN_ID: parent})}


@pytest.fixture
def read_only(tmp_path) -> Path:
    with tmpfs(tmp_path / "read_only", "size=1m,ro") as folder:
        yield folder


def repeated_columns_csv(folder: Path, header: str) -> Path:
    """40 rows of two numbers and a binary label under this header."""
    path = folder / f"{header.replace(',', '_')}.csv"
    path.write_text(header + "\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))
    return path


def made_for(command: str, names: list[str], request, tmp_path: Path, mlruns: Path) -> dict[str, str]:
    """What the command's placeholders name, made for this test alone: files, folders, runs."""
    wanted = {field for text in (command, *names) for _, field, _, _ in string.Formatter().parse(text) if field}
    made: dict[str, object] = {"out": tmp_path / "report"}
    if wanted & {"text", "cut", "transformer"}:
        made.update(request.getfixturevalue("not_checkpoints"))
    if shlex.split(command)[2] in ("src.eval", "src.compare"):  # they read runs from a store
        made.update(runs_for_eval_and_compare(mlruns))
    if "read_only" in wanted:
        made["read_only"] = request.getfixturevalue("read_only")
    if "a_file" in wanted:
        made["a_file"] = tmp_path / "report.md"
        made["a_file"].write_text("# an earlier report\n")
    for name, header in (("repeated_feature_csv", "a,a,label"), ("repeated_target_csv", "a,label,label")):
        if name in wanted:
            made[name] = repeated_columns_csv(tmp_path, header)
    return {name: str(value) for name, value in made.items()}


def run_typed(command: str, mlruns: Path) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as typed, on this test's store (paths.mlruns_dir, or
    compare's --tracking-uri)."""
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    module, args = words[2], words[3:]
    if module == "src.train":
        return run_train(args, mlruns, check=False)
    where = ["--tracking-uri", store_uri(mlruns)] if module == "src.compare" else [f"paths.mlruns_dir={mlruns}"]
    return run_module(module, [*where, *args])


def runs_in(mlruns: Path) -> list[str] | None:
    """The ids of every run in the test's store; None where there is no store at all."""
    if not (mlruns / "mlflow.db").exists():
        return None
    client = MlflowClient(store_uri(mlruns))
    experiments = [e.experiment_id for e in client.search_experiments()]
    return sorted(r.info.run_id for r in client.search_runs(experiments))


TRAIN = "python -m src.train data=iris trainer.max_epochs=1 callbacks=none"
SWEEP = "python -m src.train -m data=iris trainer.max_epochs=1 callbacks=none seed=0,1"
EVAL, COMPARE = "python -m src.eval", "python -m src.compare --out {out}"
CSV = "python -m src.train data=csv trainer.max_epochs=1 callbacks=none data.path="
slow = pytest.mark.slow  # imports Lightning (train, eval), or trains first (not_checkpoints)
no_psycopg = pytest.mark.skipif(importlib.util.find_spec("psycopg") is not None, reason="psycopg is installed")

# Every input that cannot work: (the command as a user types it, shortened only in epochs
# and data, with {placeholders} for what the test makes; what the message must name: the
# key or file and value, and the fix).
REFUSED = [
    # after the data and the model are built
    pytest.param(f"{TRAIN} ckpt_path={{text}}", ["ckpt_path='{text}'", "not a checkpoint torch can read",
                                                "checkpoints/best.ckpt"], id="text as ckpt_path", marks=slow),
    pytest.param(f"{TRAIN} ckpt_path={{cut}}", ["ckpt_path='{cut}'", "not a checkpoint torch can read", "or null"],
                 id="cut checkpoint", marks=slow),
    pytest.param(f"{TRAIN} ckpt_path={{transformer}}", [
        "ckpt_path='{transformer}'", "do not fit model=mlp data=iris", "net.layers.0.weight", "same model and data"],
        id="transformer's checkpoint to mlp", marks=slow),
    pytest.param(f"{TRAIN} objective=val/nonexistent", ["objective='val/nonexistent'", "val/acc, val/f1"],
                 id="objective never logged", marks=slow),
    pytest.param(f"{TRAIN} trainer.strategy=bogus", ["trainer.strategy='bogus'", "ddp_spawn"], id="strategy unknown",
                 marks=slow),
    pytest.param(f"{TRAIN} model.hidden_size=2000000 model.num_layers=4", [
        "model=mlp is too large", "of memory is available", "model.hidden_size=2000000, model.num_layers=4"],
        id="model too large", marks=slow),
    # values no run can train with
    pytest.param(f"{TRAIN} data.batch_size=null", ["data.batch_size=null", "an integer >= 1", "'full'"],
                 id="batch_size null", marks=slow),
    pytest.param(f"{TRAIN} data.batch_size=1e23", ["data.batch_size=1e+23", "an integer >= 1"],
                 id="batch_size 1e23", marks=slow),
    pytest.param(f"{TRAIN} data.val_fraction=0.6 data.test_fraction=0.6", [
        "data.val_fraction=0.6 and data.test_fraction=0.6 leave no rows to train on", "below 1",
        "data.val_fraction=0.1 data.test_fraction=0.2"], id="fractions leave no training rows", marks=slow),
    pytest.param(f"{TRAIN} data.split_seed=abc", ["data.split_seed='abc'", "an integer >= 0"], id="split_seed abc",
                 marks=slow),
    pytest.param(f"{TRAIN} objective=[1,2]", ["objective=[1, 2]", "the name of one metric", "objective=val/acc"],
                 id="objective a list", marks=slow),
    pytest.param(f"{TRAIN} model=lstm model.hidden_sizes=[0,-3]", [
        "model.hidden_sizes=[0, -3]", "each an integer >= 1", "[64, 32]"], id="hidden_sizes not sizes", marks=slow),
    pytest.param(f"{TRAIN} experiment_name={'x' * 5000}", [
        "experiment_name='xxxx", "(5,000 characters)", "at most 500 characters", "experiment_name=triad"],
        id="experiment_name of 5000 characters", marks=slow),
    pytest.param(f"{TRAIN} +trainer.limit_train_batches=0", [
        "trainer.limit_train_batches=0", "a fraction of them in (0, 1]", "0 trains on nothing"],
        id="limit_train_batches 0", marks=slow),
    pytest.param(f"{TRAIN} compare.alpha=5", ["compare.alpha=5", "in (0, 1), e.g. 0.05"], id="alpha 5", marks=slow),
    pytest.param(f"{TRAIN} compare.max_seeds=abc", ["compare.max_seeds='abc'", "an integer >= 1"], id="max_seeds abc",
                 marks=slow),
    # a sweep: refused before Hydra creates its parent run
    pytest.param(f"{SWEEP} compare.alpha=5", ["compare.alpha=5", "in (0, 1), e.g. 0.05"], id="sweep with alpha 5",
                 marks=slow),
    pytest.param(f"{SWEEP} compare.max_seeds=abc", ["compare.max_seeds='abc'", "an integer >= 1"],
                 id="sweep with max_seeds abc", marks=slow),
    pytest.param(f"{SWEEP} data.batch_size=null,32", ["data.batch_size=null", "an integer >= 1"],
                 id="sweep over a null batch_size", marks=slow),
    pytest.param("python -m src.train -m sweep=optuna trainer.max_epochs=1 hydra.sweeper.n_trials=1 "
                 "hydra.sweeper.storage=postgresql://triad:pw-4e1f9a@localhost:5432/optuna", [
                     "hydra.sweeper.storage=postgresql://triad:***@localhost:5432/optuna", "driver is not installed",
                     "pip install", "sqlite:///"], id="optuna storage without its driver", marks=[slow, no_psycopg]),
    # the user's data
    pytest.param(CSV + "{repeated_feature_csv}", [
        "{repeated_feature_csv}, line 1: a column name repeats ('a' names columns 1 and 2)", "Rename the copies"],
        id="csv repeating a feature's name", marks=slow),
    pytest.param(CSV + "{repeated_target_csv}", ["{repeated_target_csv}, line 1", "'label' names columns 2 and 3"],
                 id="csv repeating the target's name", marks=slow),
    # eval: a run that holds no trained model
    pytest.param(f"{EVAL} run_id=doesnotexist", ["run_id='doesnotexist': no such run", "Copy the id"],
                 id="eval of no run", marks=slow),
    pytest.param(f"{EVAL} run_id=abc/def", ["run_id='abc/def': not an MLflow run id", "Copy the id"],
                 id="eval of a malformed id", marks=slow),
    pytest.param(f"{EVAL} run_id={{eval_run}}", ["run_id='{eval_run}' is an evaluation", "run_id={parent_run}"],
                 id="eval of an evaluation", marks=slow),
    pytest.param(f"{EVAL} run_id={{failed_run}}", ["run_id='{failed_run}' ended FAILED", "ckpt_path=last",
                                                  "evaluate a FINISHED run"], id="eval of a FAILED run", marks=slow),
    pytest.param(f"{EVAL} run_id={{parent_run}}", ["run_id='{parent_run}' is a sweep's parent run", "e.g. run_id="],
                 id="eval of a sweep's parent", marks=slow),
    pytest.param(f"{EVAL} run_id={{bare_run}}", ["run_id='{bare_run}': its artifacts hold no config.yaml and no "
                                                "checkpoints/best.ckpt", "deleted", "evaluate another run"],
                 id="eval of a run whose artifacts are gone", marks=slow),
    # compare
    pytest.param(f"{COMPARE} --sweep nonsense", ["--sweep nonsense: no sweep with that id", "pass --filter"],
                 id="compare of no sweep"),
    pytest.param(f"{COMPARE} --filter 'params.data == iris'", ["--filter params.data == iris: MLflow cannot read it",
                                                              "params.data = 'iris'"], id="compare with a bad filter"),
    pytest.param(f"{COMPARE} --metric val/nonexistent", [
        "--metric val/nonexistent: none of the 2 FINISHED runs compared logs it", "use one of val/acc"],
        id="compare of a metric no run logs"),
    pytest.param("python -m src.compare --out {a_file}", ["--out {a_file}: {a_file} is a file, not a folder",
                                                          "--out <folder>"], id="compare out at a file"),
    pytest.param("python -m src.compare --out {read_only}/report", [
        "--out {read_only}/report: cannot write into {read_only} (Read-only file system)", "--out <folder>"],
        id="compare out in a read-only folder"),
]


@pytest.mark.parametrize("command,names", REFUSED)
def test_a_bad_input_is_refused_before_any_run(command, names, request, tmp_path, mlruns):
    made = made_for(command, names, request, tmp_path, mlruns)
    before = runs_in(mlruns)
    result = run_typed(command.format(**made), mlruns)
    refused(result, *(name.format(**made) for name in names))
    assert runs_in(mlruns) == before  # no run, not even a FAILED one (no store where there was none)
    assert not Path(made["out"]).exists() and "pw-4e1f9a" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_a_gpu_run_without_a_gpu_is_refused(mlruns):
    result = run_train([*TINY, "trainer.accelerator=gpu"], mlruns, check=False)
    refused(result, "trainer.accelerator='gpu'", "no GPU", "trainer.accelerator=cpu")
    assert not (mlruns / "mlflow.db").exists()


def run_module(module: str, args: list[str]) -> subprocess.CompletedProcess:
    """`python -m <module> <args>`, as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


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
