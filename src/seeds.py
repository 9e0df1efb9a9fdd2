"""Several seeds of one config in one process (`seeds=[0,1,2,3,4]`), each recorded as
its own MLflow run exactly as if it had trained alone: its seed as a param, its own
metric history, best checkpoint, plots and logged model, and the config hash of a run
of that seed alone.

Vectorized (src/members.py) where the network and the optimizer allow it; otherwise
`why_not_vectorized` says why and src/train.py trains the seeds one after another.
"""

import contextlib
import copy
import math
import signal
import threading
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, open_dict
from torch import nn

from src import build, console, preflight, record, store
from src.members import PREFIX, BestMembers, MemberLoggers, Members
from src.module import objective_of

# Optimizers whose update of each parameter element reads that element's gradient and
# state alone: over stacked parameters they give each member exactly its own update.
ELEMENTWISE = {"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta"}
SIDE_BY_SIDE = "triad.side_by_side"  # the tag that says how a member run was trained


def member_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The config of one member: the config of a run with `seed=<seed>` (so its
    config hash, params and re-run skipping are those of a run trained alone), with
    its own output folder for its checkpoints."""
    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed, member.seeds = seed, None
        member.paths.output_dir = f"{cfg.paths.output_dir}/seed{seed}"
    return member


def member_overrides(overrides: list[str], seed: int) -> list[str]:
    """The command-line overrides a run of this seed alone would have had."""
    kept = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ("seed", "seeds")]
    return [*kept, f"seed={seed}"]


def mean_best(values: list[float | None]) -> float | None:
    """What a job of several seeds returns to its sweeper: the mean of their best objectives."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    return sum(known) / len(known) if known else None


def why_not_vectorized(cfg: DictConfig, modules: list, datamodule) -> str | None:
    """Why these members cannot train vectorized (then they train one after another), or None."""
    optimizer = modules[0].optimizer_factory.func.__name__
    if optimizer not in ELEMENTWISE:
        return f"the optimizer {optimizer} does not update each parameter on its own (one per member)"
    if modules[0].scheduler_factory is not None and "Plateau" in modules[0].scheduler_factory.func.__name__:
        return "the scheduler watches one run's objective"
    trainer = cfg.trainer
    if str(trainer.get("strategy", "auto")) != "auto" or str(trainer.get("devices", 1)) != "1" or trainer.get("num_nodes", 1) != 1:
        return "several devices or a strategy other than auto"
    if cfg.compile:
        return "compile=true compiles one network"
    if cfg.ckpt_path:
        return "a resume (ckpt_path) continues each run from its own checkpoint"
    if any(isinstance(m, nn.modules.batchnorm._NormBase) for m in modules[0].net.modules()):
        return "the network keeps running statistics (BatchNorm)"
    return probe(modules, datamodule)


def probe(modules: list, datamodule) -> str | None:
    """Run one vmapped forward and backward on two training examples: None if it
    works, else the error's first line (recurrent kernels have no vmap rule)."""
    x, y = (t[:2].unsqueeze(0).expand(len(modules), *t[:2].shape) for t in datamodule.splits["train"])
    members = Members(modules, datamodule.spec)
    try:
        members.run_members(x, y, shared=False)[1].sum().backward()
    except Exception as error:  # vmap's refusals are RuntimeErrors of many wordings
        return f"vmap cannot run this network ({type(error).__name__}: {str(error).splitlines()[0][:160]})"
    return None


def train(cfg: DictConfig, choices: dict, overrides: list[str], job_started: float) -> tuple[float | None, str | None]:
    """Train cfg.seeds vectorized, each recorded as its own run: (the mean best
    objective, None); or (None, why not) when they cannot be vectorized (printed):
    then the caller trains them one after another."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    cfg, choices, seeds = copy.deepcopy(cfg), dict(choices), [int(s) for s in cfg.seeds]
    datamodule, _ = build.experiment(cfg, choices, overrides)  # cfg and choices get the task's defaults
    spec = datamodule.spec
    modules = [build.module(cfg, spec, seed) for seed in seeds]
    if reason := why_not_vectorized(cfg, modules, datamodule):
        print(f"seeds={seeds}: trained one after another in this process, not vectorized: {reason}.")
        return None, reason
    configs = {seed: member_config(cfg, seed) for seed in seeds}
    kept = {}
    for seed in seeds:  # as in a sweep of single seeds, a seed already trained is not trained again
        reused = None
        if store.tracked(cfg) and cfg.skip_finished and HydraConfig.get().mode == RunMode.MULTIRUN:
            reused = record.reused_result(configs[seed])
        kept[seed] = reused
    todo = [k for k, seed in enumerate(seeds) if kept[seed] is None]
    if not todo:
        return mean_best(list(kept.values())), None
    modules, seeds = [modules[k] for k in todo], [seeds[k] for k in todo]
    preflight.check_before_run(cfg, spec, modules[0], choices)
    console.print_config(cfg, choices)
    if summary := datamodule.inferred_summary():
        console.console.print(summary, highlight=False)
    objective, mode = objective_of(cfg.objective, spec.task)
    num_params = sum(p.numel() for p in modules[0].net.parameters())
    how = f"vectorized with seeds {','.join(map(str, seeds))}"
    params = {"model.num_params": num_params, "data.train_size": datamodule.split_size("train"),
              **datamodule.recorded_params()}
    tags = {record.OBJECTIVE: objective, record.OBJECTIVE_MODE: mode, record.TASK: spec.task, SIDE_BY_SIDE: how}
    with contextlib.ExitStack() as ending:  # every run ends FINISHED, FAILED or KILLED with the training
        runs = [ending.enter_context(record.open_run(configs[seed], choices, member_overrides(overrides, seed),
                                                     params=params, tags=tags)) for seed in seeds]
        for run in runs:
            run.log_data(choices.get("data") or "data", datamodule)
        console.console.print(f"[bold]{choices.get('model')}[/]: {num_params:,} parameters; {len(seeds)} seeds "
                              f"trained side by side ({how}); MLflow runs {', '.join(str(r.id) for r in runs)}")
        datamodule.member_seeds = seeds
        members = Members(modules, spec)
        trainer, best, timer = members_trainer(cfg, runs, objective, mode, job_started)
        started = time.perf_counter()
        with ctrl_c_stops():
            trainer.fit(members, datamodule=datamodule)
        timings = {"time/fit_s": time.perf_counter() - started, **timer.summary()}
        for k, path in enumerate(best.paths):
            if path.exists():
                members.load_member(k, torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
        results = trainer.test(members, datamodule=datamodule, verbose=False)[0]
        for k, (seed, run) in enumerate(zip(seeds, runs, strict=True)):
            kept[seed] = float("nan") if best.best[k] is None else best.best[k]
            best_path = str(best.paths[k]) if best.paths[k].exists() else None
            run.log_metrics({**timings, f"{objective}_best": kept[seed]}, step=trainer.global_step)
            run.log_config(configs[seed], member_overrides(overrides, seed))
            confusion = trainer.callback_metrics.get(f"{PREFIX}{k}/test/confusion_matrix")
            run.log_results(best_path, objective, confusion, spec.class_names)
            if cfg.log_model and best_path:
                run.log_model(modules[k], best_path, datamodule, configs[seed])
    for k, (seed, run) in enumerate(zip(seeds, runs, strict=True)):
        own = {name.split("/", 1)[1]: value for name, value in results.items() if name.startswith(f"{PREFIX}{k}/")}
        console.console.print(f"[bold]seed {seed}[/]", highlight=False)
        console.print_summary(own, objective, kept[seed], timings, run.id, configs[seed])
    return mean_best(list(kept.values())), None


@contextlib.contextmanager
def ctrl_c_stops():
    """Ctrl-C stops the training (its runs end KILLED) also in a process that was started
    with SIGINT ignored (a shell's background job), as src/signals.py has it for one seed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def members_trainer(cfg: DictConfig, runs: list, objective: str, mode: str, started: float):
    """(the Trainer, the members' best checkpoints, the step timer): the config's
    trainer and callbacks, each member's metrics to its own run; in an Optuna trial, the
    members' mean objective reported to it after each validation."""
    from src import trial
    from src.callbacks import ProgressBar, StepTimer
    from src.gate import instantiate
    from src.recovery import StopOnDivergence

    best = BestMembers([Path(run.checkpoint_dir) / "best.ckpt" for run in runs], objective, mode)
    timer = StepTimer(started=started)
    callbacks = [best, timer, StopOnDivergence(), *(instantiate(c) for c in (cfg.callbacks or {}).values()),
                 *trial.reporters([f"{PREFIX}{k}/{objective}" for k in range(len(runs))])]  # the members' mean
    mlflow_cfg, beside = store.loggers_beside(cfg.logger)
    if beside:  # MemberLoggers splits the metrics among the members' MLflow runs only
        print(f"seeds={list(cfg.seeds)}: trained side by side, the seeds are recorded in MLflow only, "
              f"not by {', '.join(c._target_.rsplit('.', 1)[-1] for c in beside)}.")
    loggers = [logger for run in runs if (logger := run.logger(mlflow_cfg))]
    shown = {} if "enable_progress_bar" in cfg.trainer else {"enable_progress_bar": any(
        isinstance(c, ProgressBar) for c in callbacks)}
    trainer = instantiate(cfg.trainer, logger=MemberLoggers(loggers) if loggers else False, callbacks=callbacks,
                          enable_checkpointing=False, **shown)
    return trainer, best, timer
