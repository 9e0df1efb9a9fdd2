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
from omegaconf import DictConfig, OmegaConf, open_dict

from src import PROJECT_ROOT, STARTED
from src.validate import (
    DATA,
    TASK_LOSS,
    TASK_MODEL,
    ConfigError,
    changed_groups,
    check_loaded_data,
    data_facts,
    override_problems,
    validate,
)


def build(cfg: DictConfig, choices: dict[str, str], changed: set[str] = frozenset()):
    """The data module (set up) and the LightningModule sized by its DataSpec.
    With no loss chosen (loss: null), the data's task picks it, into cfg and choices."""
    from src import preflight
    from src.gate import instantiate
    from src.module import ExperimentModule

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec  # the data decides every dimension of the model
    if cfg.get("loss") is None:
        use_task_loss(cfg, choices, spec.task)
    check_loaded_data(choices, spec.input_kind, spec.task, changed)  # the user's file may decide the task
    make_net = instantiate(cfg.model)
    preflight.check_model_fits(make_net, spec, cfg.model, choices.get("model"))  # before it allocates
    net = make_net(**spec.model_dims())
    optimizer = instantiate(cfg.optimizer)
    scheduler = instantiate(cfg.scheduler) if cfg.scheduler else None
    return datamodule, ExperimentModule(net, instantiate(cfg.loss), optimizer, scheduler, spec, cfg.objective)


def use_task_model(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> None:
    """The task's model (validate.TASK_MODEL: gpt for language models, vae for
    reconstruction) where the default mlp cannot serve the data and the user
    picked nothing about the model; a model the user picked is checked as it is."""
    kind, task = data_facts(choices.get("data"), cfg.data) if choices.get("data") in DATA else (None, None)
    picked = any(o.lstrip("+~").startswith("model") for o in overrides) or choices.get("experiment") or choices.get("sweep")
    if task not in TASK_MODEL or picked:
        return
    name = TASK_MODEL[task]
    with open_dict(cfg):
        cfg.model = OmegaConf.load(PROJECT_ROOT / "conf" / "model" / f"{name}.yaml")
    choices["model"] = name


def use_task_loss(cfg: DictConfig, choices: dict[str, str], task: str) -> None:
    """The task's loss (validate.TASK_LOSS), as if the user had typed loss=<name>:
    recorded as the `loss` param, so sweeps and the UI compare it like a chosen one."""
    name = TASK_LOSS[task]
    with open_dict(cfg):
        cfg.loss = OmegaConf.load(PROJECT_ROOT / "conf" / "loss" / f"{name}.yaml")
    choices["loss"] = name


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
    use_task_model(cfg, choices, overrides)
    validate(cfg, choices, overrides)
    # time/first_step_s: from the command's start for one run, from the job's in a sweep
    # (a sweep's jobs follow one another in one process; the first one pays the imports).
    job_started = STARTED if hydra_cfg.mode == RunMode.RUN else time.time()

    # Heavy imports after validation: `--help` and a bad config answer at once.
    import pytorch_lightning as pl
    import torch

    from src import console, preflight, recovery, sweep, tracking
    from src.callbacks import StepTimer
    from src.gate import instantiate
    from src.module import objective_of

    console.quiet_libraries()
    if cfg.logger:
        tracking.check_store(cfg.logger.tracking_uri)  # before any work
    sweep_safe_strategy(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    recovery.stop_on_sigterm()

    datamodule, module = build(cfg, choices, changed_groups(overrides))
    # Sweeps (src/sweep.py): a job whose config already has a FINISHED run is not
    # trained again, so an interrupted sweep, run again, does only the rest.
    if cfg.logger and cfg.skip_finished and hydra_cfg.mode == RunMode.MULTIRUN:
        recorded = sweep.reuse_finished(cfg)
        if recorded is not None:
            return recorded
    preflight.check_before_run(cfg, datamodule.spec, module, choices)  # refused now, not a FAILED run later
    console.print_config(cfg, choices)
    spec, num_params = datamodule.spec, sum(p.numel() for p in module.net.parameters())
    objective, mode = objective_of(cfg.objective, spec.task)

    # A new MLflow run, or the unfinished one that ckpt_path=last resumes.
    run = tracking.start_run(
        cfg, choices, overrides,
        extra_params={"model.num_params": num_params, "data.train_size": datamodule.split_size("train")},
        extra_tags={"triad.objective": objective, "triad.objective_mode": mode, "triad.task": spec.task,
                    **sweep.job_tags(cfg)},
    )
    # `with run`: no other process may resume this run while this one trains it
    with run, tracking.run_status(run.client, run.id):
        if run.client is not None:
            tracking.log_data(run.client, run.id, choices.get("data") or "data", datamodule)
        logger = instantiate(cfg.logger, run_id=run.id, recorded_steps=run.recorded_steps) if cfg.logger else False
        console.print_start(choices, num_params, run.id)
        checkpoint, callbacks = recovery.checkpoints(run.checkpoint_dir, objective, mode, cfg.checkpoint_every_n_steps)
        timer = StepTimer(started=job_started)
        callbacks += [timer, *(instantiate(c) for c in (cfg.callbacks or {}).values())]
        callbacks.append(recovery.StopAtStepEnd(run.checkpoint_dir))  # last: the step ends before it stops
        trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)

        started = time.perf_counter()
        # Lightning unwraps a compiled module for checkpoints and strategies.
        trainer.fit(torch.compile(module) if cfg.compile else module, datamodule=datamodule,
                    ckpt_path=run.ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - started
        best_path = checkpoint.best_model_path or None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)[0]
        best = best_score(checkpoint, best_path, trainer.callback_metrics.get(objective, float("nan")))
        timings = {"time/fit_s": fit_seconds, **timer.summary()}
        if run.client is not None:
            summary = {**timings, f"{objective}_best": best}
            tracking.log_metrics(run.client, run.id, summary, step=trainer.global_step)
            confusion = trainer.callback_metrics.get("test/confusion_matrix")  # from module.on_test_epoch_end
            tracking.log_results(
                run.client, run.id, cfg, overrides, best_path, objective, confusion, spec.class_names
            )
            if cfg.log_model and best_path:
                log_best_model(run.client, run.id, module, best_path, datamodule, cfg)
    console.print_summary(results, objective, best, timings, run.id, cfg)
    return best


def best_score(checkpoint, best_path: str | None, fallback) -> float:
    """The objective's best value. ddp_spawn workers send back the best checkpoint's
    path but not its score (Lightning's TODO), so it is read from that file."""
    import torch

    if checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    if best_path:
        saved = torch.load(best_path, map_location="cpu", weights_only=True)["callbacks"]
        for key, state in saved.items():
            if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None:
                return float(state["best_model_score"])
    return float(fallback)


def log_best_model(client, run_id: str, module, best_path: str, datamodule, cfg: DictConfig) -> None:
    """Log the best checkpoint's network as an MLflow model, with a few test inputs
    as its input example. The weights are loaded here because after ddp_spawn this
    process holds the last epoch's, not the best. Its cost is logged as time/log_model_s.
    A model that cannot be logged leaves the trained run as it is: a warning, and the
    reason in the tag triad.log_model_error."""
    import torch

    from src import logged_model, tracking

    module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    inputs = datamodule.splits["test"][0][:5].cpu().numpy()
    description = logged_model.describe(
        OmegaConf.to_container(cfg.model, resolve=True), datamodule.spec, datamodule,
        OmegaConf.to_container(cfg.loss, resolve=True),
    )
    started = time.perf_counter()
    try:
        tracking.log_model(client, run_id, module.net, description, inputs)
    except Exception as error:  # the run trained and tested: keep it FINISHED
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        client.set_tag(run_id, "triad.log_model_error", reason)
        print(f"WARNING: the MLflow model was not logged ({reason}); the checkpoint is in the run.", file=sys.stderr)
        return
    tracking.log_metrics(client, run_id, {"time/log_model_s": time.perf_counter() - started}, step=0)


# A shell's exit status for a process that Ctrl-C (SIGINT) ended: 128 + 2.
CTRL_C_EXIT = 130


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep records this job as failed and goes on
        print(error, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C outside training; the run (if any) says how to resume
        sys.exit(CTRL_C_EXIT)
    except SystemExit as stop:
        # Lightning ends a Ctrl-C it caught (outside the steps) with exit status 1
        # (trainer/call.py, pytorch-lightning 2.6.6).
        if stop.code == 1 and isinstance(stop.__context__, KeyboardInterrupt):
            sys.exit(CTRL_C_EXIT)
        raise
    except Exception as error:
        from src.recovery import Diverged  # imported by train() if it raised one
        from src.tracking import where_recorded

        # A run that failed keeps the traceback in its error.txt: one line here says what
        # happened and where that file is. Without a run that recorded it (an error before
        # the run, or a store that could not take it) the traceback is printed, its only record.
        recorded = where_recorded(error)
        if recorded is None or HydraConfig.get().mode == RunMode.MULTIRUN:
            raise
        message = str(error) if isinstance(error, Diverged) else f"{type(error).__name__}: {first_line(error)}"
        print(f"{message} ({recorded})", file=sys.stderr)
        sys.exit(1)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def print_help(conf_dir) -> None:
    """`--help`: each config group and its options, read from conf/. (Hydra's own
    help, still at --hydra-help, composes every option of every group: seconds.)"""
    print(__doc__.strip().splitlines()[0].replace("`", ""), "\n")
    print(f"Usage: python -m src.train [-m] [group=option ...] [key=value ...]\n{__doc__.split(chr(10), 1)[1]}")
    print("Config groups (conf/<group>/<option>.yaml; the default is marked *):")
    defaults = {}
    for entry in OmegaConf.load(conf_dir / "train.yaml").defaults:  # "_self_" or {group: option}
        defaults.update(entry if isinstance(entry, DictConfig) else {})
    for group in sorted(p for p in conf_dir.iterdir() if p.is_dir() and p.name != "hydra"):
        options = [f"{o}*" if o == defaults.get(group.name) else o for o in sorted(f.stem for f in group.glob("*.yaml"))]
        print(f"  {group.name:<11} {', '.join(options)}")
    print("\nThe composed config: python -m src.train --cfg job [overrides]. Hydra's flags: --hydra-help.")


if __name__ == "__main__":
    if any(flag in sys.argv[1:] for flag in ("--help", "-h")):
        print_help(PROJECT_ROOT / "conf")
        sys.exit(0)
    # Misspelled options and keys, all at once (Hydra would stop at the first).
    if problems := override_problems(sys.argv[1:], PROJECT_ROOT / "conf"):
        print(ConfigError(problems), file=sys.stderr)
        sys.exit(2)
    main()
