"""The Optuna study of a search (hydra/sweeper=optuna), built alike by the sweep's process,
which creates or loads it and asks and tells its trials (src/search.py), and by each job,
which reaches its own trial in it (src/trial.py)."""

import optuna
from omegaconf import DictConfig, OmegaConf

from src.locks import store_lock
from src.validate import ConfigError

PRUNERS = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}


def built(kind: str, table: dict, options: DictConfig | dict | None):
    """The sampler or pruner `options` name (`name:` plus its keyword arguments)."""
    options = dict(OmegaConf.to_container(options) if isinstance(options, DictConfig) else options or {})
    name = options.pop("name", None)
    if name not in table:
        raise ConfigError([f"hydra.sweeper.{kind}.name={name}: not an Optuna {kind} triad builds; "
                           f"use one of {', '.join(table)}."])
    try:
        return table[name](**options)
    except (TypeError, ValueError) as error:
        raise ConfigError([f"hydra.sweeper.{kind} ({name}): {error}; its options are the keyword arguments "
                           f"of optuna.{kind}s.{table[name].__name__}."]) from None


def open_study(storage: str | None, name: str, direction: str | None = None, sampler=None, pruner=None) -> optuna.Study:
    """The study of that name in that storage, created if new (direction given) else loaded."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # triad prints each trial itself
    pruner = built("pruner", PRUNERS, pruner) if pruner is not None else None
    if direction is None:
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    # Two searches creating one SQLite storage at once race in its migration (alembic's
    # UNIQUE constraint), as MLflow's store does: one at a time, under the store's lock.
    with store_lock(storage if isinstance(storage, str) else ""):
        study = optuna.create_study(storage=storage, pruner=pruner, study_name=name, direction=direction,
                                    load_if_exists=True)
    if sampler is not None:
        options = dict(OmegaConf.to_container(sampler) if isinstance(sampler, DictConfig) else sampler)
        if options.get("seed") is not None:  # a resumed study must not draw its first trials again
            options["seed"] += len(study.trials)
        study.sampler = built("sampler", SAMPLERS, options)
    return study
