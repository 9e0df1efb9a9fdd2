"""`python -m src.train`: train one experiment from composed configs and record it in MLflow.

    python -m src.train                                  # MLP on digits
    python -m src.train model=transformer data=sentiment
    python -m src.train -m model=mlp,transformer seed=0,1
"""

import sys
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src.validate import ConfigError, validate


def build(cfg: DictConfig):
    """The data module (set up) and the LightningModule sized by its DataSpec."""
    from hydra.utils import instantiate

    from src.module import ExperimentModule

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec  # the data decides every dimension of the model
    net = instantiate(cfg.model)(**spec.model_dims())
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    return datamodule, ExperimentModule(net, instantiate(cfg.loss), optimizer, scheduler, spec)


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


def train(cfg: DictConfig) -> float | None:
    """Train, test on the best checkpoint, record; return the best objective value."""
    hydra_cfg = HydraConfig.get()
    choices, overrides = dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)
    validate(cfg, choices)

    # Heavy imports after validation: `--help` and a bad config answer at once.
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint

    from src import console, tracking
    from src.module import objective_of

    if cfg.logger:
        tracking.check_reachable(cfg.logger.tracking_uri)  # before any work
    sweep_safe_strategy(cfg)
    console.print_config(cfg, choices)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule, module = build(cfg)
    spec, num_params = datamodule.spec, sum(p.numel() for p in module.net.parameters())
    objective, mode = objective_of(cfg.objective, spec.task)

    client = run_id = None
    logger = False
    if cfg.logger:
        client, run_id = tracking.start_run(
            cfg, choices, overrides,
            extra_params={"model.num_params": num_params, "data.train_size": datamodule.split_size("train")},
            extra_tags={"triad.objective": objective, "triad.task": spec.task},
        )
        logger = instantiate(cfg.logger, run_id=run_id)
    console.print_start(choices, num_params, run_id)

    checkpoint = ModelCheckpoint(
        dirpath=f"{cfg.paths.output_dir}/checkpoints", filename="best", monitor=objective, mode=mode, save_last=True
    )
    callbacks = [checkpoint, *(instantiate(c) for c in (cfg.callbacks or {}).values())]
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)

    with tracking.run_status(client, run_id):
        started = time.perf_counter()
        # Lightning unwraps a compiled module for checkpoints and strategies.
        trainer.fit(torch.compile(module) if cfg.compile else module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        fit_seconds = time.perf_counter() - started
        best_path = checkpoint.best_model_path or None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False)[0]
        best = best_score(checkpoint, best_path, trainer.callback_metrics.get(objective, float("nan")))
        if client is not None:
            summary = {"time/fit_s": fit_seconds, f"{objective}_best": best}
            tracking.log_metrics(client, run_id, summary, step=trainer.global_step)
            confusion = trainer.callback_metrics.get("test/confusion_matrix")  # from module.on_test_epoch_end
            tracking.log_results(
                client, run_id, cfg, overrides, best_path, objective, confusion, spec.class_names
            )
            if cfg.log_model and best_path:
                log_best_model(cfg.logger.tracking_uri, client, run_id, module, best_path, datamodule)
    console.print_summary(results, objective, best, run_id, cfg)
    return best


def best_score(checkpoint, best_path: str | None, fallback) -> float:
    """The objective's best value. ddp_spawn workers send back the best checkpoint's
    path but not its score (Lightning's TODO), so it is read from that file."""
    import torch

    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    if best_path:
        saved = torch.load(best_path, map_location="cpu", weights_only=False)["callbacks"]
        for key, state in saved.items():
            if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
                return float(state["best_model_score"])
    return float(fallback)


def log_best_model(tracking_uri: str, client, run_id: str, module, best_path: str, datamodule) -> None:
    """Log the best checkpoint's network as an MLflow model, with a few test inputs
    as its input example. The weights are loaded here because after ddp_spawn this
    process holds the last epoch's, not the best. Its cost is logged as time/log_model_s."""
    import torch

    from src import tracking

    module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"])
    inputs = datamodule.splits["test"][0][:5].cpu().numpy()
    started = time.perf_counter()
    tracking.log_model(tracking_uri, run_id, module.net, inputs)
    tracking.log_metrics(client, run_id, {"time/log_model_s": time.perf_counter() - started}, step=0)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        print(error, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
