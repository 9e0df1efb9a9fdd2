"""What triad's Optuna sweeper (hydra/sweeper=optuna; the Hydra plugin class is
hydra_plugins/triad_optuna) does: read the search space in Hydra's sweep syntax, create
or load the study in its storage, and ask for trials, launch each as a job through
Hydra's launcher (n_jobs at once), and tell the study how each ended.

Resuming: the study lives in `hydra.sweeper.storage` (a SQLite file beside the MLflow
store by default), so the same command run again continues it: its finished and pruned
trials count towards n_trials, and a trial left RUNNING by a process that was stopped is
marked FAIL first. One search per study at a time.
"""

import math
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from src.internals import job_error
from src.locks import uninterruptible
from src.study import open_study
from src.validate import ConfigError

SYNTAX = ("choice(a, b, ...), a,b,c, range(start, stop[, step]) or interval(low, high), "
          "optionally inside tag(log, ...) or tag(int, interval(...))")
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def search_space(params, arguments: list[str], parser: OverridesParser) -> tuple[dict, dict, list[str]]:
    """(name -> Optuna distribution, name -> (key as typed, value -> override value), the
    fixed overrides) from the sweeper's params and the command line, which replaces a
    param of the same key; ConfigError naming every entry Optuna cannot sample."""
    entries = [(f"hydra.sweeper.params.{k}={v}", f"{k}={v}") for k, v in (params or {}).items()]
    entries += [(line, line) for line in arguments]
    parsed, problems = {}, []
    for where, line in entries:
        try:
            override = parser.parse_override(line)
        except Exception as error:
            problems.append(f"{where}: not Hydra override syntax ({str(error).splitlines()[0]}); use {SYNTAX}.")
            continue
        parsed[override.key_or_group] = (where, line, override)
    space, writers, fixed = {}, {}, []
    for where, line, override in parsed.values():
        if not override.is_sweep_override():
            fixed.append(line)
            continue
        try:
            distribution, write = _distribution(override)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        space[override.key_or_group] = distribution
        writers[override.key_or_group] = (override.get_key_element(), write)
    if problems:
        raise ConfigError(problems)
    return space, writers, fixed


def _distribution(override):
    """The Optuna distribution of one sweep override, and how a sampled value is written back."""
    sweep = override.value()
    tags = getattr(sweep, "tags", set())
    log = "log" in tags
    if isinstance(sweep, ChoiceSweep):
        strings = list(override.sweep_string_iterator())
        if any(v is not None and not isinstance(v, bool | int | float | str) for v in sweep.list):
            raise ValueError("Optuna chooses among plain values (numbers, strings), not lists or dicts.")
        return CategoricalDistribution(sweep.list), lambda value: strings[sweep.list.index(value)]
    try:
        if isinstance(sweep, RangeSweep):
            count = max(math.ceil((sweep.stop - sweep.start) / sweep.step), 1)
            last = sweep.start + sweep.step * (count - 1)
            if all(isinstance(v, int) for v in (sweep.start, sweep.stop, sweep.step)):
                return IntDistribution(sweep.start, last, log=log, step=sweep.step), str
            return FloatDistribution(sweep.start, last, log=log, step=None if log else sweep.step), repr
        if isinstance(sweep, IntervalSweep):
            if "int" in tags:
                return IntDistribution(int(sweep.start), int(sweep.end), log=log), str
            return FloatDistribution(sweep.start, sweep.end, log=log), repr
    except ValueError as error:  # Optuna's own check: a log range from 0, low above high
        raise ValueError(f"not a range Optuna samples: {error}") from None
    raise ValueError(f"Optuna samples {SYNTAX}.")


def finished_study(config) -> str | None:
    """Before a sweep's parent run exists: why its Optuna search would run no trial (its
    stored study has hydra.sweeper.n_trials done already) and how to go on; else None."""
    sweeper = config.hydra.sweeper
    storage = sweeper.get("storage")
    if config.hydra.runtime.choices.get("hydra/sweeper") != "optuna" or not storage:
        return None
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).exists():
        return None  # a new storage: the search creates it
    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=storage)
    except Exception:  # no such study yet, or a storage the search itself will report on
        return None
    done = len(study.get_trials(deepcopy=False, states=DONE))
    if done < sweeper.n_trials:
        return None
    return (f"hydra.sweeper.n_trials={sweeper.n_trials}: study '{sweeper.study_name}' in {storage} has {done} trials "
            f"done, so this search would run none. Continue it with a larger n_trials (e.g. "
            f"hydra.sweeper.n_trials={done + sweeper.n_trials}), or start another study "
            "(hydra.sweeper.study_name=<a new name>).")


def run(sweeper, arguments: list[str]) -> list:
    """Run the search (see the module's docstring); Hydra's per-batch job returns."""
    config = sweeper.config
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    space, writers, fixed = search_space(sweeper.params, arguments, parser)
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    # Created here, before any job: jobs only load it (SQLite creation races otherwise).
    study = open_study(sweeper.storage, sweeper.study_name, sweeper.direction, sweeper.sampler, sweeper.pruner)
    for left in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(left.number, state=TrialState.FAIL)  # its process was stopped
        print(f"trial {left.number}: left RUNNING by a stopped search; marked FAIL")
    done = len(study.get_trials(deepcopy=False, states=DONE))
    todo = max(sweeper.n_trials - done, 0)
    where = sweeper.storage or "memory (not kept; trials are not pruned)"
    print(f"Optuna study '{sweeper.study_name}' in {where}: {done} trials done, {todo} to run "
          f"(hydra.sweeper.n_trials={sweeper.n_trials})")
    returns, errors, job_idx = [], [], 0
    while todo > 0:
        trials = []
        try:
            # A Ctrl-C inside ask, once the trial is stored, would leave it RUNNING out of reach of
            # the `finally`: it takes effect once every trial of the batch is asked for.
            with uninterruptible():
                trials = [study.ask(space) for _ in range(min(sweeper.n_jobs, todo))]
            batch = [[*fixed, *(f"{writers[k][0]}={writers[k][1](v)}" for k, v in t.params.items()),
                      *([f"hydra.sweeper.trial={t.number}"] if sweeper.storage else [])] for t in trials]
            sweeper.validate_batch_is_legal(batch)
            results = sweeper.launcher.launch(batch, initial_job_idx=job_idx)
            for trial, job in zip(trials, results, strict=True):
                if error := tell(study, trial, job):
                    errors.append(error)
        finally:  # Ctrl-C or an error: no trial of this process stays RUNNING
            with uninterruptible():
                for trial in trials:
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        returns.append(results)
        job_idx, todo = job_idx + len(trials), todo - len(trials)
    write_results(study, sweep_dir)
    if errors:  # the sweep's parent ends FAILED, as with a failed job of a grid
        raise errors[0]
    return returns


def tell(study: optuna.Study, trial: optuna.Trial, job) -> BaseException | None:
    """Tell the study how the trial's job ended (its best objective, pruned, failed); the
    job's error, if it failed."""
    error = job_error(job)
    value = None if error else job.return_value
    # skip_if_finished: another search of this study, started meanwhile, may have marked the
    # trial FAIL (as left RUNNING); its result is then dropped, and the search goes on.
    if isinstance(error, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        print(f"trial {trial.number}: {error}")
        return None
    if error is not None or value is None or not math.isfinite(value):
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        print(f"trial {trial.number}: FAIL ({f'{type(error).__name__}: {error}' if error else f'objective {value}'})")
        return error
    study.tell(trial, value, skip_if_finished=True)
    print(f"trial {trial.number}: {value:.4g} {trial.params}")
    return None


def write_results(study: optuna.Study, sweep_dir: Path) -> None:
    """optimization_results.yaml in the sweep's folder: the study's best trial so far."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return
    best = study.best_trial
    OmegaConf.save(OmegaConf.create({"name": study.study_name, "best_trial": best.number,
                                     "best_params": best.params, "best_value": best.value}),
                   sweep_dir / "optimization_results.yaml")
    print(f"Best of study '{study.study_name}': trial {best.number}, {best.value:.4g} {best.params}")
    tied = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value == best.value and t.number != best.number]
    if tied:  # Optuna keeps the first of equal values; the report breaks the tie by the validation loss
        print(f"  {len(tied)} more trial{'s' if len(tied) > 1 else ''} tie at {best.value:.4g} "
              f"({', '.join(map(str, tied[:10]))}{', ...' if len(tied) > 10 else ''}): the objective cannot tell them "
              "apart; the report's tuning keeps the one with the lowest val/loss (or use objective=val/loss)")
