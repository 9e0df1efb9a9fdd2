"""How a training stops on Ctrl-C (SIGINT) or SIGTERM: at the end of the step in
progress, with a checkpoint to resume from, and exit status 128 + the signal.
"""

import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.trainer.states import TrainerFn

from src.locks import uninterruptible


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


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) ends a run like Ctrl-C: the run KILLED,
    exit status 143. During training StopAtStepEnd defers it to the step's end."""
    def stop(signum: int, frame) -> None:
        raise Stopped(signum, at_step_end=False)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
