"""Every use of a private Lightning or MLflow API, and every reliance on their
undocumented behaviour, in one place, each with the version it was checked against.

tests/test_internals.py checks each of them against the installed libraries, and
fails on any other version than CHECKED_AGAINST until someone has looked again.
"""

from typing import TYPE_CHECKING

import mlflow.pyfunc

if TYPE_CHECKING:  # Lightning is not needed where a logged model is served
    import pytorch_lightning as pl

CHECKED_AGAINST = {"pytorch-lightning": "2.6.6", "mlflow": "3.17.2", "hydra-core": "1.3.8", "optuna": "5.0.0"}


# ---------------------------------------------------------------- Lightning 2.6.6


def logs_this_step(trainer: "pl.Trainer") -> bool:
    """Whether Lightning writes this training step's metrics to the logger (every
    log_every_n_steps steps, and the last). Step metrics are computed and read on
    those steps only: a self.log call costs about a millisecond, more than a small
    model's whole step, and reading a device value makes the host wait for it."""
    return trainer._logger_connector.should_update_logs


def step_metrics_pending(trainer: "pl.Trainer") -> bool:
    """Whether the current training step's metrics have not reached the logger yet:
    Lightning saves a step's checkpoint (ModelCheckpoint.on_train_batch_end) before
    it logs that step, so during that save the step is ready but not completed."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return trainer.training and progress.ready > progress.completed


def log_step_metrics_now(trainer: "pl.Trainer") -> None:
    """Hand the current training step's metrics to the logger now, as Lightning
    would right after the checkpoint hooks."""
    trainer._logger_connector.update_train_step_metrics()


# Lightning runs ModelCheckpoint's hooks after every other callback's
# (CallbackConnector._reorder_callbacks), so a callback's on_train_batch_end runs
# before the step's checkpoint is saved: src/recovery.py relies on that.

# src/recovery.py's BestCheckpoint gives ties in the objective to the lower val/loss
# by overriding ModelCheckpoint.check_monitor_top_k, a public method whose part in
# saving is undocumented: ModelCheckpoint._save_monitor_checkpoint saves whenever it
# says True, through _update_best_and_save, which with save_top_k=1 overwrites the
# one best file and takes the (tied, equal) value as best_model_score. Its state_key
# is ModelCheckpoint's (Callback._generate_state_key puts the class name in it), so
# checkpoints saved before it resume with their best score.

# A data module's loader may be any iterable: Lightning calls `set_epoch` on its
# `sampler` (or on `batch_sampler.sampler`) before each epoch, and keeps its
# `state_dict()` in checkpoints, restoring it with `load_state_dict` before the
# first batch of a resume (src/data/base.py: InMemoryBatches offers all three).

# A checkpoint saved after an epoch's last training batch resumes in the next epoch
# without that epoch's validation (_TrainingEpochLoop.reset): src/recovery.py's stop
# on a signal waits past it.

# Lightning ends a run it stopped on KeyboardInterrupt with SystemExit(1)
# (trainer/call.py): src/train.py reports it as Ctrl-C (exit status 130).

# Lightning's TorchCheckpointIO saves through lightning_fabric's _atomic_save: an fsspec
# transaction whose temporary file is in the system's temp folder (tempfile.mkstemp),
# moved onto the checkpoint at the end; on another file system shutil.move copies it into
# the checkpoint in place, so a full disk leaves a truncated last.ckpt, and nothing is
# fsynced. src/recovery.py's WholeCheckpoints (a CheckpointIO plugin, the public way)
# writes beside the checkpoint instead; ModelCheckpoint and Trainer.save_checkpoint both
# save through the strategy's checkpoint_io.


# ---------------------------------------------------------------- MLflow 3.17.2


def dataset_entity(dataset):
    """An mlflow.data dataset as the entity that MlflowClient.log_inputs takes
    (the client has no public way to log a dataset object to a given run)."""
    return dataset._to_mlflow_entity()


def sqlite_full(error: BaseException) -> bool:
    """Whether the error is SQLite's "database or disk is full". A SQLite store raises it
    as an MlflowException caused by SQLAlchemy's OperationalError, caused by sqlite3's,
    whose code tells (src/recovery.py's out_of_space follows the causes)."""
    import sqlite3

    return isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class PythonModelWithoutTypeHints(mlflow.pyfunc.PythonModel):
    """A pyfunc model whose predict MLflow does not wrap in its type-hint validation,
    which warns when predict has no type hints, under a warnings filter of its own
    that no caller can silence (PythonModel.__init_subclass__). The model's
    signature, from its input example, checks the inputs instead."""

    _skip_type_hint_validation = True


# ---------------------------------------------------------------- Hydra 1.3.8

# The triad sweeper (hydra_plugins/triad_sweeper, src/sweeper.py) subclasses Hydra's
# private BasicSweeper (hydra._internal.core_plugins.basic_sweeper), for want of a public
# grid sweeper, and imports it itself (Hydra imports plugins at every start; this module
# imports MLflow). It relies on BasicSweeper.sweep calling self.split_arguments on the
# parsed overrides (overridden there to fold the seeds), and on its attributes config,
# params, launcher, hydra_context and max_batch_size and its validate_batch_is_legal.
# Hydra's plugin scan runs the modules of its core plugins again, so BasicSweeper is
# another class object after it: only the class Hydra instantiates is sure to work.


def job_error(job) -> BaseException | None:
    """The error a failed Hydra job raised, without `JobReturn.return_value`, which
    writes "Error executing job" to stderr before raising it: a pruned trial is no error."""
    from hydra.core.utils import JobStatus

    return job._return_value if job.status == JobStatus.FAILED else None


# ---------------------------------------------------------------- Optuna 5.0.0


def optuna_trial(study, trial_id: int):
    """The trial of that id, to report to and ask should_prune, in a process other than the
    one that asked for it (a sweep's job). Optuna builds it so in Study.ask; its docs do not
    offer the constructor to users (optuna.trial.Trial(study, trial_id))."""
    from optuna.trial import Trial

    return Trial(study, trial_id)
