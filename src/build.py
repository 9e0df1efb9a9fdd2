"""From a composed config to the objects of one training: the data module, set up;
the model and loss the data's task needs where the user picked none; the network,
sized by the data; the LightningModule; and the Trainer with triad's callbacks.
"""

import math

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from src import PROJECT_ROOT
from src.catalog import TASK_LOSS, TASK_MODEL
from src.validate import changed_groups, check_loaded_data, model_picked


def experiment(cfg: DictConfig, choices: dict[str, str], overrides: list[str]):
    """(the data module, set up; the LightningModule), seeded by cfg.seed. The data
    decides every dimension of the network; cfg and choices get the task's defaults."""
    import pytorch_lightning as pl

    from src import preflight
    from src.gate import instantiate

    sweep_safe_strategy(cfg)  # before the config is recorded: the run records what it runs
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec
    use_task_defaults(cfg, choices, overrides, spec.task)
    whole_batches(cfg, datamodule)
    check_loaded_data(choices, spec.input_kind, spec.task, changed_groups(overrides))  # the user's file decides its task
    preflight.check_model_fits(instantiate(cfg.model), spec, cfg.model, choices.get("model"))  # before it allocates
    return datamodule, module(cfg, spec, cfg.seed)


def whole_batches(cfg: DictConfig, datamodule) -> None:
    """A fraction in trainer.limit_<split>_batches (debug=limit) as a number of batches, at
    least one: Lightning refuses a fraction that rounds to no batch of a small split."""
    for split in ("train", "val", "test"):
        key = f"limit_{split}_batches"
        fraction = cfg.trainer.get(key)
        if isinstance(fraction, float) and 0 < fraction < 1 and split in datamodule.splits:
            batches = math.ceil(datamodule.split_size(split) / datamodule.resolved_batch_size())
            cfg.trainer[key] = max(1, int(fraction * batches))


def module(cfg: DictConfig, spec, seed: int):
    """The LightningModule of this config, its network initialised from `seed` alone
    (seeded again here: what the data's set-up drew does not shift it, so a seed trained
    side by side with others (src/members.py) starts where it would alone)."""
    import pytorch_lightning as pl

    from src.gate import instantiate
    from src.module import ExperimentModule

    pl.seed_everything(seed, workers=True, verbose=False)
    net = instantiate(cfg.model)(**spec.model_dims())
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    return ExperimentModule(net, instantiate(cfg.loss), optimizer, scheduler, spec, cfg.objective)


def use_task_defaults(cfg: DictConfig, choices: dict[str, str], overrides: list[str], task: str) -> None:
    """With no loss chosen (loss: null, the default), the task's (catalog.TASK_LOSS); where
    the default model (mlp) cannot serve the task and the user picked nothing about the
    model, the task's model (catalog.TASK_MODEL). Both as if the user had typed them:
    recorded as the `loss` and `model` params, so sweeps and the UI compare them alike."""
    defaults = {}
    if cfg.get("loss") is None:
        defaults["loss"] = TASK_LOSS[task]
    if task in TASK_MODEL and choices.get("model") == "mlp" and not model_picked(choices, overrides):
        defaults["model"] = TASK_MODEL[task]
    for group, option in defaults.items():
        with open_dict(cfg):
            cfg[group] = OmegaConf.load(PROJECT_ROOT / "conf" / group / f"{option}.yaml")
        choices[group] = option


def trainer(cfg: DictConfig, record, objective: str, mode: str, started: float, prune: bool = True):
    """(the Trainer, its best-checkpoint callback, its step timer) for this run: the
    run's logger, checkpoints for resuming (each saved whole), the config's callbacks,
    in an Optuna trial its report of the objective (prune=False: none), a stop at a step's end."""
    from src import recovery, signals, trial
    from src.callbacks import ProgressBar, StepTimer
    from src.gate import instantiate

    checkpoint, callbacks = recovery.checkpoints(record.checkpoint_dir, objective, mode, cfg.checkpoint_every_n_steps)
    timer = StepTimer(started=started)
    callbacks += [timer, *(instantiate(c) for c in (cfg.callbacks or {}).values()), *trial.reporters([objective], prune)]
    callbacks.append(signals.StopAtStepEnd(record.checkpoint_dir))  # last: the step ends before it stops
    # Without triad's progress bar (callbacks=none), none: Lightning's own would show its v_num.
    shown = {} if "enable_progress_bar" in cfg.trainer else {"enable_progress_bar": any(
        isinstance(c, ProgressBar) for c in callbacks)}
    trainer = instantiate(cfg.trainer, logger=record.logger(cfg.logger), callbacks=callbacks,
                          plugins=[recovery.WholeCheckpoints()], **shown)  # a failed save keeps the last whole
    return trainer, checkpoint, timer


def sweep_safe_strategy(cfg: DictConfig) -> None:
    """Inside a multirun, Lightning's `ddp` starts each extra process by re-running
    the command line, which replays the whole sweep there; `ddp_spawn` starts them
    from this job instead (Lightning issue 11300). Processes started by a cluster
    manager (SLURM tasks, torchrun) are not re-launched and keep `ddp`."""
    from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if HydraConfig.get().mode != RunMode.MULTIRUN or cfg.trainer.get("strategy") != "ddp":
        return
    if SLURMEnvironment.detect() or TorchElasticEnvironment.detect():
        return
    cfg.trainer.strategy = "ddp_spawn"
    print("Note: trainer.strategy=ddp runs as ddp_spawn inside a multirun (a re-run would replay the sweep).")
