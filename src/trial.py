"""A job's side of an Optuna search: it reaches its trial through the study's storage,
reports the objective after every validation, and stops when the pruner says so.

The job learns its trial from its own Hydra config: the sweeper (src/search.py) launches
it with the override `hydra.sweeper.trial=<number>`, beside the storage, study name and
pruner that the job's Hydra config holds anyway. Hydra's config is not the run's config,
so the trial number changes neither the run's params nor its config hash.
"""

import math

import optuna
from omegaconf import OmegaConf
from pytorch_lightning import Callback


class Pruned(optuna.TrialPruned):
    """The pruner stopped this trial after `epoch` epochs at objective `value`. The run
    records it (src/record.py: KILLED, tag triad.pruned) and the sweeper tells the study."""

    def __init__(self, epoch: int, value: float):
        super().__init__(epoch, value)  # both in args: the job's return travels pickled
        self.pruned_epoch, self.value = epoch, value  # record.py reads pruned_epoch

    def __str__(self) -> str:
        return f"pruned after epoch {self.pruned_epoch} (objective {self.value:.4g})"


def job_trial() -> optuna.Trial | None:
    """This job's trial, if the Optuna sweeper launched it with a storage; else None."""
    from hydra.core.hydra_config import HydraConfig

    from src.internals import optuna_trial
    from src.study import open_study

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    number = OmegaConf.select(sweeper, "trial", default=None)
    if number is None or not sweeper.get("storage"):
        return None
    storage = optuna.storages.RDBStorage(sweeper.storage)
    study = open_study(storage, sweeper.study_name, pruner=sweeper.pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(sweeper.study_name), int(number))
    return optuna_trial(study, trial_id)


def reporters(keys: list[str], prune: bool = True) -> list[Callback]:
    """[the callback that reports the mean of these metrics to this job's trial], or []
    outside a trial (or with prune=False)."""
    trial = job_trial() if prune else None
    return [ReportToTrial(trial, keys)] if trial is not None else []


class ReportToTrial(Callback):
    """After each validation: the objective (the mean of `keys`: one run's, or the members'
    of seeds trained side by side) to the trial at step = epochs trained; a pruned trial
    stops there (Pruned)."""

    def __init__(self, trial: optuna.Trial, keys: list[str]):
        self.trial, self.keys = trial, keys

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        values = [float(v) for key in self.keys if (v := trainer.callback_metrics.get(key)) is not None]
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return
        epoch, value = trainer.current_epoch + 1, sum(values) / len(values)
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise Pruned(epoch, value)
