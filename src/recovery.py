"""How a run survives being stopped: checkpoints to resume from (random state
included), a logger that does not record a step twice, Ctrl-C and SIGTERM that
stop training at the end of a step, and a stop with a message when the loss
stops being a number.
"""

import os
import random
import re
import signal
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from mlflow.entities import Metric
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger as LightningMLFlowLogger
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only

from src.module import logs_this_step
from src.tracking import uninterruptible


class Diverged(RuntimeError):
    """The training loss became inf or NaN; the message says where and what to try."""


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLflow logger for a run that triad created and ends itself.

    Metrics are buffered and written in one batch every `flush_every_s` seconds,
    before each checkpoint and at the end of each stage: one synchronous write
    per step would cost more than a small model's whole step, and MLflow's own
    asynchronous queue takes up to a second to flush, which a checkpoint must wait for.
    In a resumed run, steps already recorded (before the stop, after the last
    checkpoint) are not logged again, so each metric keeps one value per step.
    """

    def __init__(self, *args, flush_every_s: float = 5.0,
                 recorded_steps: Mapping[str, set[int]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        self.pending: list[Metric] = []
        self.last_flush = time.monotonic()
        self.recorded_steps = dict(recorded_steps or {})
        self.logging_ahead = False
        self.logged_ahead: dict[str, int] = {}  # key -> the step logged before its checkpoint

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = step or 0
        if self.recorded_steps:
            metrics = {k: v for k, v in metrics.items() if step not in self.recorded_steps.get(k, ())}
        # Lightning's own call for a step logged ahead: already recorded.
        metrics = {k: v for k, v in metrics.items() if self.logged_ahead.get(k) != step}
        if self.logging_ahead:
            self.logged_ahead = {k: step for k in metrics} | self.logged_ahead
        else:
            self.logged_ahead = {}
        timestamp_ms = int(time.time() * 1000)
        # MLflow names allow letters, digits and _ / . - and spaces.
        self.pending += [
            Metric(re.sub(r"[^a-zA-Z0-9_/. -]+", "", key), float(value), timestamp_ms, step)
            for key, value in metrics.items() if not isinstance(value, str)
        ]
        if time.monotonic() - self.last_flush >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the buffered metrics to the store now."""
        self.last_flush = time.monotonic()
        while self.pending:
            batch, self.pending = self.pending[:1000], self.pending[1000:]  # MLflow's limit per call
            self.experiment.log_batch(self.run_id, metrics=batch)

    def finalize(self, status: str = "success") -> None:
        # Lightning calls this at the end of each stage (fit, test) and on errors.
        # It would also mark the run FINISHED before the test and the artifacts:
        # tracking.run_status sets the status once everything is done.
        self.flush()


class StopOnDivergence(Callback):
    """Stops training at the first non-finite training loss, before a checkpoint can
    store the broken weights.

    Reading a loss makes the host wait for the device, so each step's loss stays
    on the device until a check reads those since the last one together: on the
    steps the logger writes (it reads the loss then anyway), before every
    checkpoint is written, and at the end of each epoch.
    """

    def __init__(self):
        self.unchecked: list[tuple[int, int, int, torch.Tensor]] = []  # (step, epoch, batch, loss)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            self.unchecked.append((trainer.global_step, trainer.current_epoch, batch_idx, loss.detach()))
        if logs_this_step(trainer):
            self.check(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        self.check(trainer)  # raising here stops the save before the file is written

    def check(self, trainer: pl.Trainer) -> None:
        if not self.unchecked:
            return
        unchecked, self.unchecked = self.unchecked, []
        finite = torch.isfinite(torch.stack([loss for *_, loss in unchecked])).tolist()
        if all(finite):
            return
        step, epoch, batch_idx, loss = unchecked[finite.index(False)]
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        raise Diverged(
            f"Training diverged: the training loss became {float(loss)} at step {step} "
            f"(epoch {epoch}, batch {batch_idx}). Try a lower learning rate "
            f"(optimizer.lr={lr:g} now, e.g. optimizer.lr={lr / 10:g}), gradient clipping "
            f"(trainer.gradient_clip_val=1.0) or a smaller model."
        )


class RecordBeforeCheckpoint(Callback):
    """Writes a step's metrics to the store before its checkpoint is saved: a
    checkpoint must never be ahead of the record, or a kill -9 would lose the steps between.

    Lightning saves a step's checkpoint in on_train_batch_end and logs the step's
    metrics only after it; a resume starts after that step, so its metrics are
    logged here first (the logger drops Lightning's repeat) and then flushed.
    """

    def __init__(self):
        self.at_batch_end = False

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        self.at_batch_end = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.at_batch_end = True  # runs before ModelCheckpoint's hook: Lightning orders those last

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        logger = trainer.logger
        if not isinstance(logger, MLFlowLogger):
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if self.at_batch_end and trainer.training and progress.ready > progress.completed:  # step not logged yet
            logger.logging_ahead = True
            try:
                trainer._logger_connector.update_train_step_metrics()
            finally:
                logger.logging_ahead = False
        logger.flush()


class Stopped(SystemExit):
    """Training stopped by a signal; the exit status is 128 + its number (130 for
    Ctrl-C), as a shell reports a process a signal ended.

    A SystemExit, not a KeyboardInterrupt: Lightning turns a KeyboardInterrupt into
    exit status 1 (trainer/call.py, 2.6.6) but passes any other exception on.
    """

    def __init__(self, signum: int, at_step_end: bool):
        super().__init__(128 + signum)
        self.signum, self.at_step_end = signum, at_step_end


class StopAtStepEnd(Callback):
    """Ctrl-C or SIGTERM during training stops it at the end of the current step and
    saves last.ckpt there: weights, optimizer, batch position and random state all
    belong to that step, so ckpt_path=last resumes as if the run had never stopped.
    (At an epoch's last step: after its validation and the next step; during the
    last epoch's end: at the end of training.) A second signal stops at once, without
    that checkpoint: the last one written resumes as exactly, as after kill -9.

    Must come after every other callback: a stop raised in its on_train_batch_end
    skips the hooks after it for that step (Lightning runs ModelCheckpoint's last).
    Under DDP every process would have to agree on the step: there a signal stops at once.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / "last.ckpt"
        self.requested: int | None = None  # the signal received, until training stops for it
        self.replaced: dict[int, object] = {}  # signal -> the handler to put back

    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module) -> None:
        # after Lightning's own SIGTERM handler (set just before), which would
        # stop a validation mid-way with exit status 0
        self.defer_signals(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
        self.defer_signals(trainer)  # no sanity check (num_sanity_val_steps=0, a resume)

    def defer_signals(self, trainer: pl.Trainer) -> None:
        if self.replaced or trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        self.replaced = {number: signal.signal(number, self.request_stop) for number in self.SIGNALS}

    def request_stop(self, signum: int, frame) -> None:
        if self.requested is None:
            self.requested = signum
            return
        self.put_back_signals()
        signal.raise_signal(signum)  # the second one: handled at once, as outside training

    def put_back_signals(self) -> None:
        for number, handler in self.replaced.items():
            signal.signal(number, handler)
        self.replaced = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Not after an epoch's last batch: Lightning resumes a checkpoint saved there
        # in the next epoch, without this one's validation (2.6.6, _TrainingEpochLoop.reset).
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        if self.requested is not None and not last_of_epoch:
            raise Stopped(self.requested, at_step_end=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        self.put_back_signals()
        if self.requested is not None:  # asked for during the last epoch's end
            raise Stopped(self.requested, at_step_end=True)

    def on_exception(self, trainer: pl.Trainer, pl_module, exception: BaseException) -> None:
        self.put_back_signals()
        if not isinstance(exception, Stopped) or not exception.at_step_end or trainer.state.fn != TrainerFn.FITTING:
            return
        with uninterruptible():  # a second Ctrl-C must not leave half a file
            # weights_only given (everything, as ModelCheckpoint saves): unset, Lightning logs a note
            trainer.save_checkpoint(self.path, weights_only=False)
        print(f"Stopped after step {trainer.global_step}; checkpoint saved to {self.path}.")


class RandomState(Callback):
    """Keeps the global random states (torch CPU and CUDA, numpy, Python) in each
    checkpoint and restores them before the first step after a resume, so dropout
    draws the same masks as in an uninterrupted run (Lightning 2.6 saves none of them).

    Restored at that step, not when the checkpoint is loaded: nothing between a
    checkpoint and the next step draws from them in an uninterrupted run, but a
    resume does (its DataLoader iterator, for one).
    """

    def __init__(self):
        self.to_restore: dict | None = None

    def state_dict(self) -> dict:
        name, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            # CUDA's only if used: reading it would start CUDA in a CPU run
            "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            # lists and ints, not an ndarray: checkpoints are read with weights_only=True
            "numpy": [name, keys.tolist(), position, has_gauss, gauss],
            "python": random.getstate(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.to_restore = state

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module, batch, batch_idx: int) -> None:
        if self.to_restore is None:
            return
        state, self.to_restore = self.to_restore, None
        torch.set_rng_state(state["torch"])
        if state["torch.cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["torch.cuda"])
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


def checkpoints(dirpath: str, objective: str, mode: str, every_n_steps: int) -> tuple[ModelCheckpoint, list]:
    """The best checkpoint (by the objective, at each validation) and last.ckpt,
    saved every `every_n_steps` training steps and after each validation, with
    what resuming needs besides: the random state and the step's metrics recorded first.

    Both write last.ckpt in place (no -v1 copies), also when a resumed run reuses the folder.
    """
    # A resumed run trains on in its own checkpoint folder; Lightning's warning is
    # for a new run landing in an old one (a new run's folder is always new here).
    resolved = os.path.realpath(dirpath)  # as ModelCheckpoint names it
    warnings.filterwarnings("ignore", message=re.escape(f"Checkpoint directory {resolved} exists and is not empty."))
    best = ModelCheckpoint(
        dirpath=dirpath, filename="best", monitor=objective, mode=mode, save_last=True, enable_version_counter=False
    )
    latest = ModelCheckpoint(
        dirpath=dirpath, save_top_k=0, save_last=True, every_n_train_steps=every_n_steps, enable_version_counter=False
    )
    return best, [best, latest, RecordBeforeCheckpoint(), RandomState(), StopOnDivergence()]


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) ends a run like Ctrl-C: the run KILLED,
    exit status 143. During training StopAtStepEnd defers it to the step's end."""
    def stop(signum: int, frame) -> None:
        raise Stopped(signum, at_step_end=False)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
