"""Training end to end: every model on every data set it can read (one batch, in
process; tests/test_as_typed.py runs each as a user types it), and the MLflow record."""

import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from src import PROJECT_ROOT, recovery
from src.catalog import DATA, LOSSES, MODELS
from src.train import train
from tests.conftest import compose_config, config_options, run_train, store_uri

COMPATIBLE = [
    pytest.param(model, data, id=f"{model}-{data}")
    for model in config_options("model")
    for data in config_options("data")
    if model in MODELS and data in DATA and MODELS[model].takes(*DATA[data])
]


def loss_for(data: str) -> str:
    """A loss that fits the data's task: cross-entropy where it can, else the first that fits."""
    task = DATA[data][1]
    fitting = sorted(name for name, tasks in LOSSES.items() if task in tasks)
    return "cross_entropy" if "cross_entropy" in fitting else fitting[0]


@pytest.mark.parametrize("model,data", COMPATIBLE)
def test_every_model_trains_one_batch_on_every_data_it_reads(model, data, mlruns):
    overrides = [f"model={model}", f"data={data}", f"loss={loss_for(data)}", "debug=fast", "callbacks=none"]
    cfg = compose_config(overrides, mlruns)
    train(cfg)


def finished_runs(mlruns: Path):
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def check_record(client: MlflowClient, run, choices: dict[str, str], metrics: list[str]) -> None:
    assert run.info.status == "FINISHED"
    for group, option in choices.items():
        assert run.data.params[group] == option
    assert "optimizer.lr" in run.data.params and "model.num_params" in run.data.params
    for name in metrics:
        assert name in run.data.metrics, f"{name} missing from {sorted(run.data.metrics)}"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2
    assert "triad.overrides" in run.data.tags
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == head and run.data.tags["triad.git_dirty"] in ("true", "false")
    artifacts = artifact_paths(client, run.info.run_id)
    expected = {"config.yaml", "checkpoints/best.ckpt", "plots/learning_curves.png", "plots/confusion_matrix.png"}
    assert expected <= artifacts, f"missing {expected - artifacts}"


def test_a_run_writes_its_mlflow_record(mlruns):
    result = run_train(["trainer.max_epoch=2"], mlruns, check=False)
    # A misspelled key is refused by Hydra itself, before any run is created.
    assert result.returncode != 0 and "max_epoch" in result.stderr
    assert not (mlruns / "mlflow.db").exists()
    run_train(["trainer.max_epochs=2"], mlruns)
    client, runs = finished_runs(mlruns)
    assert len(runs) == 1
    check_record(
        client, runs[0],
        {"model": "mlp", "data": "digits", "loss": "cross_entropy", "optimizer": "adam", "scheduler": "none"},
        ["train/loss", "val/loss", "val/acc", "test/acc", "test/f1"],
    )
    assert runs[0].info.run_name == "mlp-cross_entropy-adam-s0"


@pytest.mark.slow
def test_default_run_reaches_95_percent_on_digits(mlruns):
    result = run_train([], mlruns)
    assert "mlflow ui --backend-store-uri" in result.stdout
    _, runs = finished_runs(mlruns)
    assert runs[0].data.metrics["test/acc"] >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,choices",
    [
        (["model=transformer"], {"model": "transformer", "data": "digits"}),
        (
            ["data=sentiment", "model=transformer", "optimizer=sgd", "loss=mse"],
            {"model": "transformer", "data": "sentiment", "optimizer": "sgd", "loss": "mse"},
        ),
    ],
)
def test_issue_commands_leave_a_finished_run(args, choices, mlruns):
    run_train([*args, "trainer.max_epochs=3"], mlruns)
    client, runs = finished_runs(mlruns)
    assert len(runs) == 1
    check_record(client, runs[0], choices, ["train/loss", "val/loss", "val/acc", "test/acc"])


@pytest.mark.slow
def test_multirun_records_one_run_per_job(mlruns):
    run_train(["-m", "model=mlp,transformer", "seed=0,1", "trainer.max_epochs=1"], mlruns)
    _, runs = finished_runs(mlruns)
    runs = [r for r in runs if r.data.tags.get("triad.sweep") != "parent"]  # the sweep's own run (src/sweep.py)
    assert sorted(r.info.run_name for r in runs) == [
        "mlp-cross_entropy-adam-s0", "mlp-cross_entropy-adam-s1",
        "transformer-cross_entropy-adam-s0", "transformer-cross_entropy-adam-s1",
    ]
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow
@pytest.mark.parametrize("data,task,loss", [("breast_cancer", "binary", "bce"), ("diabetes", "regression", "mse"),
                                            ("digits", "multiclass", "cross_entropy")])
def test_with_no_loss_the_task_picks_it_and_records_it_like_a_chosen_one(data, task, loss, mlruns):
    result = run_train([f"data={data}", "trainer.max_epochs=1"], mlruns)
    assert f"loss={loss}" in result.stdout  # in the title of the printed config
    client, [run] = finished_runs(mlruns)
    assert run.data.tags["triad.task"] == task and run.data.params["loss"] == loss
    assert run.info.run_name == f"mlp-{loss}-adam-s0" and "loss._target_" not in run.data.params


@pytest.mark.slow
def test_a_language_model_or_reconstruction_data_set_alone_gets_the_model_its_task_needs(mlruns):
    run_train(["data=digits_images", "trainer.max_epochs=1"], mlruns)
    _, [run] = finished_runs(mlruns)
    assert (run.data.params["model"], run.data.params["loss"]) == ("vae", "elbo")
    # a model the user picked (or configured) is checked as it is
    result = run_train(["data=digits_images", "model.hidden_size=64"], mlruns, check=False)
    assert result.returncode == 2 and "model=mlp cannot read data=digits_images" in result.stderr


@pytest.mark.slow
def test_a_divergence_ends_with_its_one_line_message_and_the_traceback_in_the_run(mlruns):
    result = run_train(["data=iris", "optimizer=sgd", "optimizer.lr=1e6", "trainer.max_epochs=2"], mlruns, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Training diverged: the training loss became")
    assert "Traceback" not in result.stderr
    client, [run] = finished_runs(mlruns)
    assert run.info.status == "FAILED"
    assert "Traceback" in (Path(client.download_artifacts(run.info.run_id, "error.txt", str(mlruns)))).read_text()


@pytest.mark.slow
def test_time_to_first_step_counts_from_each_sweep_jobs_own_start(mlruns):
    run_train(["-m", "data=iris", "seed=0,1,2", "trainer.max_epochs=1"], mlruns)
    _, runs = finished_runs(mlruns)
    jobs = sorted((r for r in runs if "triad.job_num" in r.data.tags), key=lambda r: int(r.data.tags["triad.job_num"]))
    first, *later = [r.data.metrics["time/first_step_s"] for r in jobs]
    # The first job pays the imports (seconds); later ones in the same process do not,
    # and none counts the jobs before it.
    assert all(seconds < first for seconds in later), (first, later)


# ---------------------------------------------------------------- the best checkpoint's ties


def by_epoch(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    """Epoch -> the metric's value at that epoch's validation, from the run's MLflow history."""
    epoch_at = {m.step: int(m.value) for m in client.get_metric_history(run_id, "epoch")}
    return {epoch_at[m.step]: m.value for m in client.get_metric_history(run_id, key)}


def tie_broken_best_epoch(client: MlflowClient, run_id: str) -> tuple[int, list[int]]:
    """(the epoch best.ckpt should hold, the epochs tied at the top val/acc), from the run's
    record: the tied epoch of lowest val/loss, the later of equal ones."""
    accuracy, loss = by_epoch(client, run_id, "val/acc"), by_epoch(client, run_id, "val/loss")
    tied = sorted(epoch for epoch, value in accuracy.items() if value == max(accuracy.values()))
    return min(tied, key=lambda epoch: (loss[epoch], -epoch)), tied


def test_a_saturated_objective_keeps_the_tied_epoch_of_lowest_val_loss(mlruns):
    train(compose_config(["data=iris", "trainer.max_epochs=8", "log_model=false", "callbacks=none"], mlruns))
    client, [run] = finished_runs(mlruns)
    expected, tied = tie_broken_best_epoch(client, run.info.run_id)
    assert len(tied) >= 2 and expected != tied[0], f"val/acc did not saturate early enough to test ties: {tied}"
    saved = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(mlruns)),
                       weights_only=True)
    assert saved["epoch"] == expected, (saved["epoch"], tied)
    assert run.data.metrics["val/acc_best"] == 1.0  # a tie leaves the best score as it was


class Scripted(pl.LightningModule):
    """A module whose validations score the given val/acc and val/loss, epoch by epoch
    (val/loss unlogged where None), whatever it learns."""

    def __init__(self, accuracy: list[float], loss: list[float | None]):
        super().__init__()
        self.layer, self.accuracy, self.val_loss = nn.Linear(2, 1), accuracy, loss

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", self.accuracy[self.current_epoch])
        if self.val_loss[self.current_epoch] is not None:
            self.log("val/loss", self.val_loss[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit_scripted(folder: Path, module: Scripted, epochs: int, ckpt_path: str | None = None):
    best, callbacks = recovery.checkpoints(str(folder), "val/acc", "max", every_n_steps=50)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, num_sanity_val_steps=0,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder)
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer.fit(module, data, data, ckpt_path=ckpt_path, weights_only=True)
    return best, torch.load(folder / "best.ckpt", weights_only=True)["epoch"]


ACCURACY = [0.5, 1.0, 1.0, 1.0, 0.9, 1.0]


@pytest.mark.parametrize(("loss", "expected"), [
    ([0.9, 0.5, 0.3, 0.4, 0.1, 0.3], 5),  # 2 beats 1 and 3 (lower), 5 ties 2 (later); 4 scores less
    ([None] * 6, 5),  # no val/loss: the later tie
])
def test_ties_in_the_objective_go_to_the_lower_val_loss_then_the_later_epoch(loss, expected, tmp_path):
    best, epoch = fit_scripted(tmp_path, Scripted(ACCURACY, loss), epochs=6)
    assert epoch == expected
    assert float(best.best_model_score) == 1.0 and best.best_model_path == str(tmp_path / "best.ckpt")


def test_a_resumed_run_breaks_ties_against_the_best_checkpoints_val_loss(tmp_path):
    loss = [0.9, 0.5, 0.3, 0.4, 0.1, 0.3]
    best, epoch = fit_scripted(tmp_path, Scripted(ACCURACY, loss), epochs=3)
    assert epoch == 2 and best.best_val_loss == pytest.approx(0.3)
    restored = recovery.BestCheckpoint(dirpath=tmp_path, monitor="val/acc", mode="max")
    restored.load_state_dict(best.state_dict())
    assert restored.best_val_loss == best.best_val_loss
    # Epoch 3 ties with a higher val/loss than epoch 2's, which only the restored state knows.
    resumed, epoch = fit_scripted(tmp_path, Scripted(ACCURACY, loss), epochs=5, ckpt_path=str(tmp_path / "last.ckpt"))
    assert epoch == 2 and resumed.best_val_loss == pytest.approx(0.3) and float(resumed.best_model_score) == 1.0
