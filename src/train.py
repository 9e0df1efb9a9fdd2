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

from src import PROJECT_ROOT
from src.validate import ConfigError, check_loaded_data, override_problems, validate


def train(cfg: DictConfig) -> float | None:
    """Train, test on the best checkpoint, record; return the best objective value."""
    hydra_cfg = HydraConfig.get()
    choices, overrides = dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)
    validate(cfg, choices)

    # Heavy imports after validation: `--help` and a bad config answer at once.
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from src import console, recovery, sweep, tracking
    from src.module import ExperimentModule, objective_of

    # Sweeps (src/sweep.py): a job whose config already has a FINISHED run is not
    # trained again, so an interrupted sweep, run again, does only the rest.
    if cfg.logger and cfg.skip_finished and hydra_cfg.mode == RunMode.MULTIRUN:
        recorded = sweep.reuse_finished(cfg)
        if recorded is not None:
            return recorded

    console.print_config(cfg, choices)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    recovery.stop_on_sigterm()

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec  # the data decides every dimension of the model
    check_loaded_data(choices, spec.input_kind, spec.task)  # the user's file may decide the task
    net = instantiate(cfg.model)(**spec.model_dims())
    num_params = sum(p.numel() for p in net.parameters())
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    module = ExperimentModule(net, instantiate(cfg.loss), optimizer, scheduler, spec, cfg.objective)
    objective, mode = objective_of(cfg.objective, spec.task)

    # A new MLflow run, or the unfinished one that ckpt_path=last resumes.
    run = tracking.start_run(
        cfg, choices, overrides,
        extra_params={"model.num_params": num_params, "data.train_size": datamodule.split_size("train")},
        extra_tags={"triad.objective": objective, "triad.objective_mode": mode, "triad.task": spec.task,
                    **sweep.job_tags(cfg)},
    )
    with tracking.run_status(run.client, run.id):
        if run.client is not None:
            tracking.log_data(run.client, run.id, choices.get("data") or "data", datamodule)
        logger = instantiate(cfg.logger, run_id=run.id, recorded_steps=run.recorded_steps) if cfg.logger else False
        console.print_start(choices, num_params, run.id)
        checkpoint, callbacks = recovery.checkpoints(run.checkpoint_dir, objective, mode, cfg.checkpoint_every_n_steps)
        callbacks += [instantiate(c) for c in (cfg.callbacks or {}).values()]
        trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)

        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - started
        best_path = checkpoint.best_model_path or None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)[0]
        best = checkpoint.best_model_score
        best = float(best) if best is not None else float(trainer.callback_metrics.get(objective, float("nan")))
        if run.client is not None:
            summary = {"time/fit_s": fit_seconds, f"{objective}_best": best}
            tracking.log_metrics(run.client, run.id, summary, step=trainer.global_step)
            confusion = module.test_confusion.compute() if module.test_confusion is not None else None
            tracking.log_results(
                run.client, run.id, cfg, overrides, best_path, objective, confusion, spec.class_names
            )
    console.print_summary(results, objective, best, run.id, cfg)
    return best


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
    # Misspelled options and keys, all at once (Hydra would stop at the first).
    if problems := override_problems(sys.argv[1:], PROJECT_ROOT / "conf"):
        print(ConfigError(problems), file=sys.stderr)
        sys.exit(2)
    main()
