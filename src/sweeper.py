"""What the triad sweeper (hydra/sweeper=triad, the default; the Hydra plugin class is
hydra_plugins/triad_sweeper) adds to Hydra's basic grid sweeper:

- seeds_together=true: a swept `seed=a,b,c` becomes one job per other combination
  with `seeds=[a,b,c]`, which trains those seeds in one process, each its own run.
- compare.until_decided=true: rounds. Round 1 runs every combination with the seeds
  given; after each round the sweep's runs are read back from MLflow, each pair of
  choices judged (src/sequential.py), and the next seeds (as many as given at first)
  go only to the choices in a pair still open, until none is or compare.max_seeds is
  reached.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from src import store
from src.sequential import Design, design_problems, in_words
from src.validate import ConfigError


@dataclass(frozen=True)
class Plan:
    """An until_decided sweep: its combinations and the seeds each choice may get."""

    grid: list[list[str]]  # each combination's overrides, without the seed
    seeds: list[int]  # the seeds given (the first look's), then the next whole numbers
    design: Design
    scientific: list[str] | None  # compare.scientific (None: what varies)
    fold: bool  # seeds_together


def folded(overrides: list[Override], config: DictConfig) -> list[Override]:
    """With seeds_together, a swept `seed=a,b,c` as one `seeds=[a,b,c]` override."""
    if not OmegaConf.select(config, "seeds_together", default=False):
        return overrides
    return [_seeds_override(list(o.sweep_string_iterator())) if _is_seed_sweep(o) else o for o in overrides]


def _is_seed_sweep(override: Override) -> bool:
    return override.key_or_group == "seed" and override.is_sweep_override() and override.is_discrete_sweep()


def _seeds_override(seeds: list) -> Override:
    return OverridesParser.create().parse_override(f"seeds=[{','.join(str(s) for s in seeds)}]")


def plan_of(config: DictConfig, overrides: list[Override]) -> Plan:
    """The until_decided sweep these overrides ask for; ConfigError with every problem."""
    problems = []
    compare = config.compare
    if not store.tracked(config):
        problems.append(f"logger={config.hydra.runtime.choices.get('logger')}: compare.until_decided reads each round's runs from MLflow; use logger=mlflow.")
    if compare.nuisance:
        problems.append(f"compare.nuisance={compare.nuisance}: compare.until_decided compares "
                        "choices at fixed settings and cannot tune params per choice; tune them first (a plain sweep), "
                        "then compare at the best settings without compare.nuisance.")
    seed = next((o for o in overrides if o.key_or_group == "seed"), None)
    scientific = list(compare.scientific) if compare.scientific else None
    pooled = [o.key_or_group for o in overrides if o.is_sweep_override() and o is not seed
              and scientific and o.key_or_group not in scientific]
    if pooled:
        problems.append(f"{', '.join(pooled)}: swept but not in compare.scientific={scientific}, so a choice would pool "
                        "several configs and its seeds would not be one run each; add them to compare.scientific, "
                        "or give them one value.")
    if any(o.key_or_group == "seeds" for o in overrides):
        problems.append("seeds: compare.until_decided picks the seeds itself; sweep seed=0,1,2,3,4 instead "
                        "(with seeds_together=true, one job trains a choice's seeds of a round).")
    seeds: list[int] = []
    if seed is None or not seed.is_sweep_override():
        problems.append("seed: compare.until_decided adds seeds to those swept; sweep it, e.g. seed=0,1,2,3,4 "
                        "(or seed=range(0,5)).")
    elif not seed.is_discrete_sweep():
        problems.append(f"{seed.input_line}: compare.until_decided needs listed seeds, "
                        "e.g. seed=0,1,2,3,4 or seed=range(0,5).")
    else:
        given = list(seed.sweep_string_iterator())
        try:
            seeds = sorted(int(s) for s in given)
        except ValueError:
            problems.append(f"seed={','.join(given)}: seeds are whole numbers, e.g. seed=0,1,2,3,4.")
        if len(set(seeds)) < len(seeds):
            problems.append(f"seed={','.join(given)}: a seed is listed twice; list each once, e.g. seed=0,1,2,3,4.")
            seeds = []
    whole = isinstance(compare.max_seeds, int) and not isinstance(compare.max_seeds, bool)
    number = isinstance(compare.alpha, int | float) and not isinstance(compare.alpha, bool)
    if not whole:
        problems.append(f"compare.max_seeds={compare.max_seeds}: the most seeds per choice, a whole number (e.g. 20).")
    if not number:
        problems.append(f"compare.alpha={compare.alpha}: the false-verdict rate per pair, a number (e.g. 0.05).")
    grid = BasicSweeper.split_arguments([o for o in overrides if o is not seed], None)[0]
    # With Holm's correction on, alpha holds for the sweep's whole family of pairs.
    pairs = max(1, len(grid) * (len(grid) - 1) // 2) if compare.get("correction", "holm") == "holm" else 1
    design = Design(len(seeds), compare.max_seeds, float(compare.alpha), pairs) if whole and number else None
    if seeds and design:
        problems += design_problems(design)
    if problems:
        raise ConfigError(problems)
    later = range(seeds[-1] + 1, seeds[-1] + 1 + design.most - design.first)
    return Plan(grid, [*seeds, *later], design, scientific, bool(config.get("seeds_together")))


def check(config: DictConfig) -> None:
    """Raise ConfigError, before the sweep's parent run exists, for an until_decided
    sweep that the triad sweeper would refuse, or that another sweeper would run as a
    plain grid (src/sweep.py calls it)."""
    chosen = config.hydra.runtime.choices.get("hydra/sweeper")
    asked = [key for key in ("compare.until_decided", "seeds_together") if OmegaConf.select(config, key)]
    if chosen != "triad" and asked:
        raise ConfigError([f"{key}=true: hydra/sweeper={chosen} would ignore it (the triad sweeper, the "
                           f"default, does it); drop hydra/sweeper={chosen} (sweep=optuna sets it), or set {key}=false."
                           for key in asked])
    if chosen != "triad" or not config.compare.get("until_decided"):
        return
    try:
        overrides = OverridesParser.create().parse_overrides(_arguments(config.hydra.sweeper.params, config.hydra.overrides.task))
    except Exception:
        return  # the sweeper parses them again, and Hydra says what is wrong
    plan_of(config, overrides)


def _arguments(params, task_overrides) -> list[str]:
    """The sweep's overrides as BasicSweeper reads them: the sweep file's params, then the command line."""
    return [f"{k}={v}" for k, v in (params or {}).items()] + list(task_overrides)


def jobs(plan: Plan, combinations: list[int], seeds: list[int]) -> list[list[str]]:
    """Each combination with these seeds: one job per seed, or one `seeds=[...]` job."""
    if plan.fold:
        return [[*plan.grid[c], f"seeds=[{','.join(map(str, seeds))}]"] for c in combinations]
    return [[*plan.grid[c], f"seed={s}"] for c in combinations for s in seeds]


def launch(sweeper: BasicSweeper, batch: list[list[str]], owners: list[int], job_combination: dict) -> list:
    """Launch a round's jobs (in batches of max_batch_size, if set) numbered on from the
    last, note each job's combination, and raise a failed job's error as BasicSweeper does."""
    returns, size = [], sweeper.max_batch_size or len(batch)
    for start in range(0, len(batch), size):
        chunk, first_job = batch[start : start + size], len(job_combination)
        sweeper.validate_batch_is_legal(chunk)
        job_combination.update(enumerate(owners[start : start + size], start=first_job))
        results = sweeper.launcher.launch(chunk, initial_job_idx=first_job)
        for job in results:
            _ = job.return_value  # raises the job's error, if it failed
        returns.append(results)
    return returns


def until_decided(sweeper: BasicSweeper, arguments: list[str]) -> list:
    """Run the sweep in rounds (see the module's docstring); Hydra's per-batch results."""
    from src import compare, record, store

    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    plan = plan_of(sweeper.config, parser.parse_overrides(_arguments(sweeper.params, arguments)))
    sweep_dir = Path(sweeper.config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
    client, parent_id = store.client_for(sweeper.config.logger.tracking_uri), os.environ[record.SWEEP_PARENT_ENV]
    record.log_params(client, parent_id, plan.design.as_params())  # the report replays the looks from these
    design, returns, job_combination = plan.design, [], {}
    todo, done, upto = list(range(len(plan.grid))), 0, design.first
    print(f"round 1: {len(plan.grid)} choices x {design.first} seeds; seeds are added to a pair's choices while it is "
          f"undecided, up to compare.max_seeds={design.most} (a verdict needs p <= {design.level:.3g}, "
          f"alpha {design.alpha} {design.control})")
    for round_number in range(2, len(design.looks) + 2):
        batch = jobs(plan, todo, plan.seeds[done:upto])
        owners = [c for c in todo for _ in range(len(batch) // len(todo))]  # each job's combination
        returns += launch(sweeper, batch, owners, job_combination)
        result = compare.analyse(compare.sweep_runs(client, parent_id), by=plan.scientific, parent=client.get_run(parent_id))
        pairs = result["sequential"]["pairs"]
        undecided = [p for p in pairs if p["verdict"] == "open"]
        if not undecided or upto == design.most:
            break
        choices = sorted({p["a"] for p in undecided} | {p["b"] for p in undecided})
        todo = sorted({job_combination[int(r.data.tags[record.JOB_NUM])] for c in choices for r in result["chosen"][c]})
        done, upto = upto, min(upto + design.first, design.most)
        print(f"round {round_number}: {len(undecided)} undecided pair{'s' if len(undecided) > 1 else ''}; adding seeds "
              f"{plan.seeds[done]}-{plan.seeds[upto - 1]} to {', '.join(choices)}")
    trained = sum(len(members) for members in result["chosen"].values())
    print(f"until_decided: {trained} runs (a fixed {design.most} seeds would take {design.most * len(plan.grid)}); "
          + in_words(result["sequential"]))
    return returns
