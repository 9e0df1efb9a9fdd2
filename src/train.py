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
from omegaconf import DictConfig, OmegaConf

from src import PROJECT_ROOT, STARTED, redact
from src.overrides import override_problems
from src.validate import ConfigError, validate


def train(cfg: DictConfig) -> float | None:
    """Check the config, then train its seed (or each of its seeds); return the best objective value."""
    hydra_cfg = HydraConfig.get()
    choices, overrides = dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)
    validate(cfg, choices, overrides)  # every problem at once, the store's too, before any work
    # time/first_step_s: from the command's start for one run, from the job's in a sweep
    # (a sweep's jobs follow one another in one process; the first one pays the imports).
    job_started = STARTED if hydra_cfg.mode == RunMode.RUN else time.time()

    # Heavy imports after validation: `--help` and a bad config answer at once.
    from src import console, signals

    console.quiet_libraries()
    signals.stop_on_sigterm()
    if not cfg.seeds:
        return train_one(cfg, choices, overrides, job_started)
    # Several seeds in this process, each its own run: vectorized where the network allows.
    from src import seeds

    best, not_vectorized = seeds.train(cfg, choices, overrides, job_started)
    if not_vectorized:  # why they cannot be (printed): one after another, each run saying so
        from src.trial import job_trial

        how = {seeds.SIDE_BY_SIDE: f"one after another: {not_vectorized}"}
        if job_trial() is not None:  # the trial would hear each epoch once per seed
            print("Not pruned: this trial's seeds train one after another, and the pruner compares trials "
                  "by the members' mean at each epoch, which only seeds trained side by side have.")
        best = seeds.mean_best([
            train_one(seeds.member_config(cfg, seed), dict(choices), seeds.member_overrides(overrides, seed),
                      job_started, how, prune=False) for seed in cfg.seeds])
    return best


def train_one(cfg: DictConfig, choices: dict[str, str], overrides: list[str], job_started: float,
              tags: dict | None = None, prune: bool = True) -> float | None:
    """Train one seed, test it on its best checkpoint, record it (with these extra tags);
    return its best objective. In an Optuna trial it reports to the trial (prune=False: not)."""
    import torch

    from src import build, console, preflight, record, recovery, store
    from src.module import objective_of

    datamodule, module = build.experiment(cfg, choices, overrides)
    spec, num_params = datamodule.spec, sum(p.numel() for p in module.net.parameters())
    # A sweep's job whose config already has a FINISHED run is not trained again: an
    # interrupted sweep, run again, does only the rest.
    if store.tracked(cfg) and cfg.skip_finished and HydraConfig.get().mode == RunMode.MULTIRUN:
        if (reused := record.reused_result(cfg)) is not None:
            return reused
    preflight.check_before_run(cfg, spec, module, choices)  # refused now, not a FAILED run later
    console.print_config(cfg, choices)
    if summary := datamodule.inferred_summary():
        console.console.print(summary, highlight=False)
    objective, mode = objective_of(cfg.objective, spec.task)

    # A new MLflow run, or the unfinished one that ckpt_path=last resumes.
    run = record.open_run(
        cfg, choices, overrides,
        params={"model.num_params": num_params, "data.train_size": datamodule.split_size("train"),
                **datamodule.recorded_params()},
        tags={record.OBJECTIVE: objective, record.OBJECTIVE_MODE: mode, record.TASK: spec.task, **(tags or {})},
    )
    with run:  # ends it FINISHED, FAILED or KILLED; no other process resumes it meanwhile
        run.log_data(choices.get("data") or "data", datamodule)
        console.print_start(choices, num_params, run.id)
        trainer, checkpoint, timer = build.trainer(cfg, run, objective, mode, job_started, prune)
        started = time.perf_counter()
        # Lightning unwraps a compiled module for checkpoints and strategies.
        trainer.fit(torch.compile(module) if cfg.compile else module, datamodule=datamodule,
                    ckpt_path=run.ckpt_path, weights_only=True)
        fit_seconds = time.perf_counter() - started
        best_path = checkpoint.best_model_path or None
        results = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, verbose=False, weights_only=True)[0]
        best = recovery.best_score(checkpoint, best_path, trainer.callback_metrics.get(objective, float("nan")))
        timings = {"time/fit_s": fit_seconds, **timer.summary()}
        run.log_metrics({**timings, f"{objective}_best": best}, step=trainer.global_step)
        run.log_config(cfg, overrides)
        confusion = trainer.callback_metrics.get("test/confusion_matrix")  # from module.on_test_epoch_end
        run.log_results(best_path, objective, confusion, spec.class_names)
        run.log_folder(getattr(trainer.profiler, "dirpath", None), "profiler")  # debug=profiler
        for beside in trainer.loggers[1:]:  # logger=mlflow_tensorboard, mlflow_csv
            run.log_folder(beside.log_dir, beside.name)
        if cfg.log_model and best_path:
            run.log_model(module, best_path, datamodule, cfg)
    console.print_summary(results, objective, best, timings, run.id, cfg)
    console.print_other_logs(trainer)
    return best


# A shell's exit status for a process that Ctrl-C (SIGINT) ended: 128 + 2.
CTRL_C_EXIT = 130


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        return train(cfg)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            print_job_failed(str(error))
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
        # src.recovery: imported by train() if it raised one of these
        from src.record import where_recorded
        from src.recovery import Diverged, OutOfSpace, out_of_space

        # A run that failed keeps the traceback in its error.txt: one line here says what
        # happened and where that file is. Without a run that recorded it (an error before
        # the run, or a store that could not take it) the traceback is printed, its only record;
        # not for a lack of room, whose line names the file.
        recorded = where_recorded(error)
        said = isinstance(error, Diverged | OutOfSpace)  # messages that say what to do
        message = str(error) if said else f"{type(error).__name__}: {first_line(error)}"
        in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
        gone = server_gone(cfg, error, ask_server=in_sweep)
        if in_sweep:
            print_job_failed(f"{gone}; the sweep ends this job's run once it is back. Run the same command again "
                             "to train the jobs that failed." if gone else message, recorded)
            raise  # the sweep records this job as failed and goes on
        if gone:  # the run said whether it could be ended there
            message = f"{gone[:1].upper()}{gone[1:]}"
        elif recorded is None and not out_of_space(error):
            raise
        print(message + (f" ({recorded})" if recorded else ""), file=sys.stderr)
        sys.exit(1)


def print_job_failed(why: str, recorded: str | None = None) -> None:
    """One line per failed job of a sweep: Hydra shows the first failed job's error alone,
    at the sweep's end."""
    from src import redact

    job = HydraConfig.get()
    where = f" ({recorded})" if recorded else ""
    print(f"Job #{job.job.num} ({' '.join(redact.overrides(job.overrides.task))}) failed: {why}{where}",
          file=sys.stderr)


def server_gone(cfg: DictConfig, error: Exception, ask_server: bool) -> str | None:
    """Why the run could not record, if it lost its tracking server: the error says so, or
    (ask_server: a sweep's job, which may have failed on it in another way) the server no
    longer answers. It may be back by now: a restart takes seconds."""
    from src import store

    uri = OmegaConf.select(cfg, "logger.tracking_uri", default=None) or ""
    if not uri.startswith(("http://", "https://")):
        return None
    if reason := (ask_server and store.server_unreachable(uri)) or store.lost_connection(error, uri):
        return f"the tracking server {uri} did not answer ({reason})"
    return None


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


# Groups whose options --help describes one by one (each file's first comment line).
DESCRIBED = ("debug", "logger")


def described(option) -> str:
    """An option file's first comment line (after `# @package ...`)."""
    comments = [line.lstrip("# ").strip() for line in option.read_text().splitlines() if line.startswith("#")]
    return next((c for c in comments if not c.startswith("@package")), "")


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
        if group.name in DESCRIBED:  # switches whose names alone do not say what they do
            for option in sorted(group.glob("*.yaml")):
                print(f"{'':15}{option.stem + ':':<20}{described(option)}")
    print("\nThe composed config: python -m src.train --cfg job [overrides]. Hydra's flags: --hydra-help.")


if __name__ == "__main__":
    if any(flag in sys.argv[1:] for flag in ("--help", "-h")):
        print_help(PROJECT_ROOT / "conf")
        sys.exit(0)
    redact.mask_output(sys.argv[1:])  # every line printed or logged from here on, Hydra's too
    # Misspelled options and keys, all at once (Hydra would stop at the first).
    if problems := override_problems(sys.argv[1:], PROJECT_ROOT / "conf"):
        print(ConfigError(problems), file=sys.stderr)
        sys.exit(2)
    main()
