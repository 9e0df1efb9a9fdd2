"""Each private Lightning or MLflow API that src/internals.py uses still behaves as
it did when checked; an upgrade that changes one fails here, not in a user's run."""

import warnings
from importlib.metadata import version
from pathlib import Path

import mlflow.data
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from src import internals


def test_the_installed_libraries_are_the_versions_internals_was_checked_against():
    installed = {name: version(name) for name in internals.CHECKED_AGAINST}
    assert installed == internals.CHECKED_AGAINST, (
        "Another Lightning, MLflow or Hydra: re-check every use in src/internals.py against it, "
        "then update CHECKED_AGAINST."
    )


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Watch(Callback):
    """What internals reports at each step's end and in each checkpoint save."""

    def __init__(self):
        self.logged_steps, self.pending_at_save, self.calls = [], [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls.append("watch")
        if internals.logs_this_step(trainer):
            self.logged_steps.append(trainer.global_step)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.calls.append("checkpoint")
        self.pending_at_save.append(internals.step_metrics_pending(trainer))
        if internals.step_metrics_pending(trainer):
            internals.log_step_metrics_now(trainer)  # callable where triad calls it


def test_lightning_private_step_logging_and_callback_order(tmp_path):
    watch = Watch()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True, every_n_train_steps=4)
    trainer = pl.Trainer(max_epochs=1, log_every_n_steps=3, callbacks=[checkpoint, watch], logger=CSVLogger(tmp_path),
                         default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False)
    data = DataLoader(TensorDataset(torch.randn(24, 2)), batch_size=2)  # 12 steps
    trainer.fit(Tiny(), data)
    assert watch.logged_steps == [3, 6, 9, 12]  # global_step after the step: every 3rd step is written
    # ModelCheckpoint runs after every other callback, though it was given first
    assert trainer.callbacks.index(checkpoint) > trainer.callbacks.index(watch)
    assert watch.calls[:5] == ["watch"] * 4 + ["checkpoint"]
    # a step's checkpoint is saved before Lightning logs that step's metrics
    assert watch.pending_at_save and all(watch.pending_at_save[:-1])


def test_an_mlflow_dataset_becomes_the_entity_log_inputs_takes():
    dataset = mlflow.data.from_numpy(np.zeros((3, 2), dtype=np.float32), source="/tmp/x.csv", name="x")
    entity = internals.dataset_entity(dataset)
    assert entity.name == "x" and entity.digest == dataset.digest and entity.source_type == "local"


def test_a_python_model_without_type_hints_is_not_wrapped_and_does_not_warn():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Model(internals.PythonModelWithoutTypeHints):
            def predict(self, context, model_input, params=None):
                return model_input

    assert not caught, [str(w.message) for w in caught]
    assert Model.__dict__["predict"].__name__ == "predict" and not hasattr(Model.predict, "__wrapped__")


def test_the_basic_sweeper_builds_its_grid_through_self_split_arguments():
    # The triad sweeper folds the seeds there; its rounds use the rest.
    import inspect

    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    source = inspect.getsource(BasicSweeper.sweep)
    assert "self.split_arguments(overrides, self.max_batch_size)" in source
    assert "self.validate_batch_is_legal(batch)" in source
    assert "self.launcher.launch(batch, initial_job_idx=initial_job_idx)" in source
    assert {"config", "params", "launcher", "hydra_context", "max_batch_size"} <= set(vars(BasicSweeper(None)))


def test_a_failed_jobs_error_is_read_without_hydras_message(capsys):
    from hydra.core.utils import JobReturn, JobStatus

    error = ValueError("x")
    assert internals.job_error(JobReturn(status=JobStatus.FAILED, _return_value=error)) is error
    assert internals.job_error(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) is None
    assert capsys.readouterr().err == ""


def test_a_trial_is_reached_by_its_id_from_another_study_object(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path}/optuna.db"
    asked = optuna.create_study(storage=storage, study_name="s").ask()
    storage_object = optuna.storages.RDBStorage(storage)
    trial_id = storage_object.get_trial_id_from_study_id_trial_number(
        storage_object.get_study_id_from_name("s"), asked.number)
    trial = internals.optuna_trial(optuna.load_study(study_name="s", storage=storage_object), trial_id)
    trial.report(0.5, 1)
    assert not trial.should_prune() and trial.number == asked.number
    assert optuna.load_study(study_name="s", storage=storage).trials[0].intermediate_values == {1: 0.5}


class AlwaysBetter(ModelCheckpoint):
    def check_monitor_top_k(self, trainer, current=None):
        return True


class ConstantScore(Tiny):
    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 1.0)


def test_model_checkpoint_saves_its_one_best_file_whenever_check_monitor_top_k_says_so(tmp_path):
    # src/recovery.py's BestCheckpoint saves a tie in the objective so.
    checkpoint = AlwaysBetter(dirpath=tmp_path, filename="best", monitor="val/acc", mode="max",
                              enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=3, callbacks=[checkpoint], logger=False, num_sanity_val_steps=0,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    data = DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)
    trainer.fit(ConstantScore(), data, data)
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["epoch"] == 2  # each tie saved, in place
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["best.ckpt"]
    assert float(checkpoint.best_model_score) == 1.0 and list(checkpoint.best_k_models) == [str(tmp_path / "best.ckpt")]


def test_a_subclass_of_model_checkpoint_can_keep_its_state_key():
    from src.recovery import BestCheckpoint

    arguments = {"dirpath": "x", "filename": "best", "monitor": "val/acc", "mode": "max"}
    assert BestCheckpoint(**arguments).state_key == ModelCheckpoint(**arguments).state_key
    assert ModelCheckpoint(**arguments).state_key.startswith("ModelCheckpoint{")


def test_every_checkpoint_lightning_saves_goes_through_the_checkpoint_io_plugin(tmp_path):
    # src/recovery.py's WholeCheckpoints keeps each file whole only if Lightning writes them all through it.
    from src.recovery import WholeCheckpoints

    saved = []

    class Counted(WholeCheckpoints):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            saved.append(Path(path).name)
            super().save_checkpoint(checkpoint, path, storage_options)

    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="train/loss", save_last=True,
                                 every_n_train_steps=1, enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=2, callbacks=[checkpoint], plugins=[Counted()], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2))
    trainer.save_checkpoint(tmp_path / "stopped.ckpt")  # src/signals.py's save on a stop
    assert {"best.ckpt", "last.ckpt", "stopped.ckpt"} == set(saved) and len(saved) > 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt", "stopped.ckpt"]


def test_a_full_sqlite_store_is_told_by_the_cause_of_mlflows_error(tmp_path):
    # src/recovery.py's out_of_space follows MlflowException's causes to sqlite3's error code.
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from src.recovery import out_of_space

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = client.create_run(client.create_experiment("full")).info.run_id

    def no_new_pages(connection, record, proxy):  # the database cannot grow: as on a full disk
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Pool, "checkout", no_new_pages)
    try:
        with pytest.raises(MlflowException) as caught:
            client.log_batch(run_id, metrics=[Metric(f"m{i}", 1.0, 0, 0) for i in range(1000)])
    finally:
        event.remove(Pool, "checkout", no_new_pages)
    assert out_of_space(caught.value) == "database or disk is full"
    assert out_of_space(MlflowException("database is locked")) is None
