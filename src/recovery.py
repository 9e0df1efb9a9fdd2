"""How a run survives being stopped: checkpoints to resume from (random state
included), each saved whole or not at all, a logger that writes the record up to each
checkpoint and never a step twice, and a stop with a message when the loss stops
being a number or the disk has no room. (Ctrl-C and SIGTERM: src/signals.py.)
"""

import errno
import math
import os
import random
import re
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
from pytorch_lightning.plugins import TorchCheckpointIO
from pytorch_lightning.utilities import rank_zero_only

from src import internals
from src.internals import logs_this_step


class Diverged(RuntimeError):
    """The training loss became inf or NaN; the message says where and what to try."""


class OutOfSpace(RuntimeError):
    """A checkpoint or the run's metrics could not be written for lack of room; the
    message names the file and how to go on (the checkpoints saved before are whole)."""


# A file that cannot grow: a full disk, a file-size limit (ulimit -f), a quota.
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
RESUME = "free space, then run the same command with ckpt_path=last"


def out_of_space(error: BaseException) -> str | None:
    """Why the error, or one that led to it, is a lack of room ("No space left on
    device"); None if it is not."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return os.strerror(error.errno)
        if internals.sqlite_full(error):
            return "database or disk is full"
        error = error.__cause__ or error.__context__
    return None


def save_whole(checkpoint: dict, path: str | os.PathLike) -> None:
    """torch.save to `path` through `<path>.tmp` beside it, flushed to the disk and
    renamed into place: a save that fails half-way (a full disk, a kill) leaves the
    previous file whole. A lack of room raises OutOfSpace."""
    path = Path(path)
    temporary = path.with_name(f"{path.name}.tmp")  # one name: a killed save's leftover is overwritten, not piled up
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            torch.save(checkpoint, file)  # a file, not a path: into a path, a full disk loses its errno
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if (reason := out_of_space(error)) is None:
            raise
        kept = ", ".join(sorted(p.name for p in path.parent.glob("*.ckpt")))
        kept = f"the checkpoints saved before ({kept}) are whole" if kept else "no checkpoint was saved before"
        raise OutOfSpace(f"{reason} while saving {path}; {kept}: {RESUME}") from error
    if os.name == "posix":  # the rename itself, through a power cut
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        except OSError:
            pass  # a file system that cannot sync a folder (some network ones): the file is whole anyway
        finally:
            os.close(folder)


class WholeCheckpoints(TorchCheckpointIO):
    """Lightning's checkpoint writer, each file saved whole or not at all (save_whole):
    Lightning's own can leave a checkpoint truncated (src/internals.py)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):  # a remote file system: Lightning's fsspec
            return super().save_checkpoint(checkpoint, path, storage_options)
        save_whole(checkpoint, path)


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLflow logger for a run that triad created and ends itself
    (src/record.py).

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
        self.written_ahead: dict[str, int] = {}  # name -> the step before_checkpoint wrote
        self.last_logged: list[Metric] = []

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = step or 0
        # Only Lightning's next call can repeat what before_checkpoint wrote ahead.
        ahead, self.written_ahead = self.written_ahead, {}
        timestamp_ms = int(time.time() * 1000)
        named = {re.sub(r"[^a-zA-Z0-9_/. -]+", "", k): v for k, v in metrics.items()}  # MLflow's characters
        self.last_logged = [
            Metric(name, float(value), timestamp_ms, step) for name, value in named.items()
            if not isinstance(value, str) and ahead.get(name) != step and step not in self.recorded_steps.get(name, ())
        ]
        self.pending += self.last_logged
        if time.monotonic() - self.last_flush >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def before_checkpoint(self, trainer: pl.Trainer) -> None:
        """Write the record up to the step being checkpointed, before its checkpoint is
        saved: a checkpoint ahead of the record would lose the steps between on a kill -9.
        Lightning logs a step only after its checkpoint hooks: that step is written now,
        and Lightning's repeat of it dropped."""
        if internals.step_metrics_pending(trainer):
            internals.log_step_metrics_now(trainer)  # through log_metrics
            self.written_ahead = {m.key: m.step for m in self.last_logged}
        self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the buffered metrics to the store now; a store without room raises OutOfSpace."""
        self.last_flush = time.monotonic()
        while self.pending:
            batch, self.pending = self.pending[:1000], self.pending[1000:]  # MLflow's limit per call
            try:
                self.experiment.log_batch(self.run_id, metrics=batch)
            except Exception as error:
                if (reason := out_of_space(error)) is None:
                    raise
                where = self.experiment.tracking_uri
                raise OutOfSpace(f"{reason} while recording run {self.run_id}'s metrics in {where}; "
                                 f"the checkpoints saved before are whole: {RESUME}") from error

    def finalize(self, status: str = "success") -> None:
        # Lightning calls this at the end of each stage (fit, test) and on errors.
        # It would also mark the run FINISHED before the test and the artifacts:
        # the record (src/record.py) sets the status once everything is done.
        if status == "success":
            self.flush()
            return
        try:
            self.flush()
        except OutOfSpace:  # the error that stopped the stage is the one to report; a resume
            self.pending = []  # trains these steps again from the last checkpoint, and records them


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
    """Has the logger write the record up to each checkpoint before it is saved
    (MLFlowLogger.before_checkpoint)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module, checkpoint: dict) -> None:
        for logger in trainer.loggers:  # MLflow's is the first, beside a CSV or TensorBoard logger
            if isinstance(logger, MLFlowLogger):
                logger.before_checkpoint(trainer)


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


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for one best checkpoint whose ties in the objective go to the
    lower val/loss, and where that is equal too (or not logged), to the later
    validation: ModelCheckpoint keeps the first, and a saturated objective (val/acc
    1.0 on a small validation split) would keep a barely trained model. A tie leaves
    the best score as it is, only the weights change."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.best_val_loss = math.inf  # the val/loss of the weights in the best checkpoint

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        # Lightning saves the best checkpoint whenever this says True (src/internals.py).
        better = super().check_monitor_top_k(trainer, current)
        if not better and current is not None:
            tied = float(current) == float(self.best_model_score)
            # every process decides alike, as in ModelCheckpoint's own decision
            better = trainer.strategy.reduce_boolean_decision(tied and val_loss(trainer) <= self.best_val_loss)
        if better:
            self.best_val_loss = val_loss(trainer)
        return better

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's: a last.ckpt saved before this class resumes with its best
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best_val_loss": self.best_val_loss}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.best_val_loss = state_dict.get("best_val_loss", math.inf)


def val_loss(trainer: pl.Trainer, name: str = "val/loss") -> float:
    """The validation loss as ties read it: inf where it is not logged or not a number."""
    value = trainer.callback_metrics.get(name)
    value = math.inf if value is None else float(value)
    return value if math.isfinite(value) else math.inf


def best_score(checkpoint, best_path: str | None, fallback) -> float:
    """The objective's best value. ddp_spawn workers send back the best checkpoint's
    path but not its score (Lightning's TODO), so it is read from that file."""
    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    if best_path:
        saved = torch.load(best_path, map_location="cpu", weights_only=True)["callbacks"]
        for key, state in saved.items():
            if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
                return float(state["best_model_score"])
    return float(fallback)


def checkpoints(dirpath: str, objective: str, mode: str, every_n_steps: int) -> tuple[BestCheckpoint, list]:
    """The best checkpoint (by the objective, at each validation) and last.ckpt,
    saved every `every_n_steps` training steps and after each validation, with
    what resuming needs besides: the random state and the step's metrics recorded first.

    Both write last.ckpt in place (no -v1 copies), also when a resumed run reuses the folder.
    """
    # A resumed run trains on in its own checkpoint folder; Lightning's warning is
    # for a new run landing in an old one (a new run's folder is always new here).
    resolved = os.path.realpath(dirpath)  # as ModelCheckpoint names it
    warnings.filterwarnings("ignore", message=re.escape(f"Checkpoint directory {resolved} exists and is not empty."))
    best = BestCheckpoint(
        dirpath=dirpath, filename="best", monitor=objective, mode=mode, save_last=True, enable_version_counter=False
    )
    latest = ModelCheckpoint(
        dirpath=dirpath, save_top_k=0, save_last=True, every_n_train_steps=every_n_steps, enable_version_counter=False
    )
    return best, [best, latest, RecordBeforeCheckpoint(), RandomState(), StopOnDivergence()]
