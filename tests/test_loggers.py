"""Loggers beside MLflow (logger=csv, tensorboard, mlflow_csv, mlflow_tensorboard) and the
debug switches (debug=overfit, limit, profiler), each run as a user types it; the tests
read what each logger wrote and what each switch promises."""

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from src import PROJECT_ROOT
from tests.conftest import run_train, store_uri

pytestmark = pytest.mark.slow
IRIS = ["data=iris", "trainer.max_epochs=3"]


def written_to(stdout: str, logger: str) -> Path:
    """The folder a logger wrote to, as the run printed it ("CSVLogger: <folder>")."""
    match = re.search(rf"^{logger}: (\S+)$", stdout, re.M)
    assert match, f"the run does not say where {logger} wrote:\n{stdout[-2000:]}"
    return Path(match[1])


def csv_rows(folder: Path, key: str) -> list[float]:
    with open(folder / "metrics.csv") as file:
        return [float(row[key]) for row in csv.DictReader(file) if row.get(key)]


def tensorboard_scalars(folder: Path, key: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted(folder.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if key in accumulator.Tags()["scalars"]:
            values += [event.value for event in accumulator.Scalars(key)]
    return values


def only_run(mlruns: Path):
    client = MlflowClient(store_uri(mlruns))
    (run,) = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    return client, run


def history(client: MlflowClient, run, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


@pytest.mark.parametrize("logger", ["csv", "tensorboard"])
def test_another_logger_alone_writes_every_epochs_metrics_and_nothing_reaches_mlflow(logger, mlruns):
    out = run_train([f"logger={logger}", *IRIS], mlruns).stdout
    if logger == "csv":
        folder = written_to(out, "CSVLogger")
        assert len(csv_rows(folder, "val/acc")) == 3 and len(csv_rows(folder, "test/acc")) == 1
    else:
        folder = written_to(out, "TensorBoardLogger")
        assert len(tensorboard_scalars(folder, "val/acc")) == 3 and len(tensorboard_scalars(folder, "val/loss")) == 3
    assert folder.is_relative_to(mlruns / "outputs")  # the run's own output folder
    assert "MLflow run" not in out and not (mlruns / "mlflow.db").exists()


@pytest.mark.parametrize("logger", ["mlflow_tensorboard", "mlflow_csv"])
def test_mlflow_with_a_logger_beside_it_both_get_the_same_metrics(logger, mlruns):
    out = run_train([f"logger={logger}", *IRIS], mlruns).stdout
    client, run = only_run(mlruns)
    assert run.info.status == "FINISHED" and run.outputs.model_outputs  # the logged model too
    recorded = history(client, run, "val/acc")
    assert len(recorded) == 3
    if logger == "mlflow_csv":
        beside = csv_rows(written_to(out, "CSVLogger"), "val/acc")
    else:
        beside = tensorboard_scalars(written_to(out, "TensorBoardLogger"), "val/acc")
    assert beside == pytest.approx(recorded, rel=1e-6)
    kept = {a.path for a in client.list_artifacts(run.info.run_id, logger.removeprefix("mlflow_"))}
    assert kept, f"the {logger} files are not among the run's artifacts"
    assert not [k for k in run.data.params if k.startswith("logger")]  # plumbing, not params


def test_debug_overfit_drives_the_training_loss_near_zero(mlruns):
    run_train(["debug=overfit"], mlruns)  # digits, the default data
    client, run = only_run(mlruns)
    losses = history(client, run, "train/loss")
    assert run.info.status == "FINISHED" and len(losses) >= 50
    assert losses[0] > 1.0 and min(losses[-10:]) < 0.05, (losses[:3], losses[-10:])


def test_debug_limit_trains_a_tenth_of_the_batches(mlruns):
    run_train(["debug=limit"], mlruns)
    client, run = only_run(mlruns)
    full = math.ceil(int(run.data.params["data.train_size"]) / int(run.data.params["data.batch_size"]))
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/acc"))
    assert run.info.status == "FINISHED" and len(steps) == 2  # 2 epochs
    # a tenth of the batches, recorded as the whole number of batches it trained per epoch
    assert steps[1] - steps[0] == int(full * 0.1) == int(run.data.params["trainer.limit_train_batches"])


def test_debug_profiler_keeps_its_reports_as_artifacts(mlruns):
    run_train(["debug=profiler", *IRIS], mlruns)
    client, run = only_run(mlruns)
    assert run.info.status == "FINISHED"
    reports = {a.path for a in client.list_artifacts(run.info.run_id, "profiler")}
    assert reports == {"profiler/fit-profile.txt", "profiler/test-profile.txt"}
    folder = client.download_artifacts(run.info.run_id, "profiler", str(mlruns / "downloaded"))
    assert "run_training_epoch" in (Path(folder) / "fit-profile.txt").read_text()


def test_help_describes_each_debug_switch_and_logger():
    shown = subprocess.run([sys.executable, "-m", "src.train", "--help"], cwd=PROJECT_ROOT,
                           capture_output=True, text=True, check=True).stdout
    for option in ("fast", "overfit", "limit", "profiler", "csv", "tensorboard", "mlflow_tensorboard", "mlflow_csv"):
        assert re.search(rf"^\s+{option}:\s+\S", shown, re.M), f"--help does not describe {option}"
