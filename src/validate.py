"""Checks of a composed config before any work: every problem at once, each
naming the key, the value and what would work. Imports nothing heavy itself; the
gate (src/gate.py) imports the modules the config's targets name.
"""

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src import store
from src.catalog import (
    ACTIVATIONS,
    DATA,
    FULL_BATCH_OPTIMIZERS,
    LOSSES,
    MODELS,
    PRECISIONS,
    RANGES,
    TASK_LOSS,
    TASK_MODEL,
    heads_problem,
    is_int,
    is_number,
)
from src.gate import target_problems


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The config has {len(problems)} problem(s); nothing was run:\n{lines}")


def _options_for(table: dict, fits) -> str:
    names = sorted(name for name, value in table.items() if fits(value))
    return ", ".join(names) if names else "none"


def data_facts(data: str | None, data_cfg=None) -> tuple[str | None, str | None]:
    """(input kind, task) of a data option; for the user's data, from its config (None if unknown)."""
    kind, task = DATA[data]
    if data_cfg is not None and kind is None:
        if not OmegaConf.is_missing(data_cfg, "task") and data_cfg.get("task"):
            task = data_cfg.task
        has_text = not OmegaConf.is_missing(data_cfg, "text_column") and data_cfg.get("text_column")
        kind = "tokens" if has_text else "features"
    return kind, task


def model_picked(choices: dict[str, str], overrides: list[str]) -> bool:
    """Whether the user picked anything about the model: model= or model.*= on the
    command line, or an experiment or sweep (which pick theirs)."""
    on_command_line = any(o.lstrip("+~").startswith("model") for o in overrides)
    return on_command_line or bool(choices.get("experiment") or choices.get("sweep"))


def compatibility_problems(choices: dict[str, str], data_cfg=None, overrides: list[str] = ()) -> list[str]:
    """Whether the chosen data, model and loss can work together (options unknown
    to the catalogue, e.g. a user's own, are not judged; nor is what only the file
    knows). A model the user did not pick, on a task it cannot serve, is not judged:
    src/build.py puts the task's in its place (catalog.TASK_MODEL)."""
    data = choices.get("data")
    if data not in DATA:
        return []
    kind, task = data_facts(data, data_cfg)
    if task in TASK_MODEL and choices.get("model") == "mlp" and not model_picked(choices, overrides):
        choices = {**choices, "model": TASK_MODEL[task]}
    return [] if task is None else _judge(choices, kind, task, changed_groups(overrides))


def check_loaded_data(choices: dict[str, str], input_kind: str, task: str, changed: set[str] = frozenset()) -> None:
    """After loading, before any run: the data's real kind and task against the model and loss
    (for the user's data, where the file decides them)."""
    problems = _judge(choices, input_kind, task, changed)
    if problems:
        raise ConfigError(problems)


def _judge(choices: dict[str, str], kind: str, task: str, changed: set[str]) -> list[str]:
    """What cannot work, with what would: alternatives for what the user changed."""
    data, model, loss = choices.get("data"), choices.get("model"), choices.get("loss")
    problems = []
    if model in MODELS and not MODELS[model].takes(kind, task):
        models = f"Models that read data={data}: {_options_for(MODELS, lambda fit: fit.takes(kind, task))}."
        reading = _options_for(DATA, lambda facts: MODELS[model].takes(*facts))
        readable = f"Data that model={model} reads: {reading} (or your own: data=csv, data=hf)."
        if "model" in changed and "data" not in changed:
            advice = readable  # the user picked the model: which data would work with it
        elif "data" in changed and "model" not in changed:
            advice = models
        else:
            advice = f"{models} {readable}"
        problems.append(f"model={model} cannot read data={data} ({kind} inputs, {task} task). {advice}")
    if loss in LOSSES and task not in LOSSES[loss]:
        problems.append(
            f"loss={loss} does not fit the {task} task of data={data}. "
            f"Losses that do: {_options_for(LOSSES, lambda tasks: task in tasks)} "
            f"(with no loss= the task picks {TASK_LOSS[task]})."
        )
    return problems


def one_of(value, options) -> str:
    """'use one of a, b. Did you mean a?' for a value that is none of the options."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"use one of {', '.join(str(o) for o in options)}.{hint}"


def value_problems(cfg: DictConfig, overrides: list[str] = ()) -> list[str]:
    """Values of the wrong type or out of their range (catalog.RANGES), and the rules
    between keys, each with what would work."""
    problems = []
    for key, (accepts, need) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not accepts(value):
            problems.append(f"{key}={value!r}: {need}")
    for key, names in (("model.activation", ACTIVATIONS), ("trainer.precision", PRECISIONS)):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and str(value) not in names:
            problems.append(f"{key}={value!r}: {one_of(value, names)}")
    name = cfg.get("experiment_name")
    if store.tracked(cfg) and not (isinstance(name, str) and name.strip()):
        problems.append(f"experiment_name={name!r}: MLflow needs a name for the experiment, e.g. experiment_name=triad.")
    d_model, heads = cfg.model.get("d_model"), cfg.model.get("num_heads")
    if is_int(d_model) and is_int(heads) and (problem := heads_problem(d_model, heads)):
        problems.append(problem)
    problems += seeds_problems(cfg.get("seeds"), overrides)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and not store.tracked(cfg):
        problems.append("ckpt_path='last' looks up the unfinished run in MLflow: it needs logger=mlflow "
                        "(or give the checkpoint's path).")
    elif ckpt_path not in (None, "last") and not Path(str(ckpt_path)).is_file():
        problems.append(f"ckpt_path={ckpt_path!r}: no such file; use a checkpoint's path, 'last' or null.")
    for key in cfg.data or {}:
        if OmegaConf.is_missing(cfg.data, key):
            problems.append(f"data.{key} is required: set it on the command line, e.g. data.{key}=...")
    batch_size, target = cfg.data.get("batch_size"), cfg.optimizer.get("_target_")
    if target in FULL_BATCH_OPTIMIZERS and batch_size is not None and batch_size != "full":
        problems.append(
            f"data.batch_size={batch_size!r} with {target}: its line search and curvature history "
            "assume one fixed objective, which mini-batches change every step. Set data.batch_size=full."
        )
    eta_min, lr = (cfg.get("scheduler") or {}).get("eta_min"), cfg.optimizer.get("lr")
    if is_number(eta_min) and is_number(lr) and eta_min >= lr > 0:
        problems.append(f"scheduler.eta_min={eta_min!r} is not below optimizer.lr={lr!r}: the schedule would "
                        f"raise the rate instead of decaying it; use e.g. scheduler.eta_min=0.")
    return problems


def seeds_problems(seeds, overrides: list[str]) -> list[str]:
    """`seeds`: null, or a list of distinct seeds (each as `seed` takes it); not beside `seed=`."""
    if seeds is None:
        return []
    accepts, need = RANGES["seed"]
    if not OmegaConf.is_list(seeds) or not seeds:
        return [f"seeds={seeds!r}: a list of seeds, e.g. seeds=[0,1,2,3,4] (or null: one run with seed=)."]
    problems = [f"seeds: {value!r}: {need}" for value in seeds if not accepts(value)]
    if not problems and len(set(seeds)) < len(seeds):
        problems.append(f"seeds={list(seeds)}: a seed is listed twice; each seed is one run.")
    if any(o.lstrip("+~").split("=", 1)[0] == "seed" for o in overrides):
        problems.append("seed= and seeds= both given: seeds trains each of its seeds; drop seed=.")
    return problems


def changed_groups(overrides: list[str]) -> set[str]:
    """The config groups picked on the command line (`model=cnn`, `+loss=mse`)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


def validate(cfg: DictConfig, choices: dict[str, str], overrides: list[str] = ()) -> None:
    """Raise ConfigError listing every problem of the config, or return None."""
    problems = target_problems(cfg)  # the gate: what each _target_ resolves to
    problems += value_problems(cfg, overrides)
    problems += compatibility_problems(choices, cfg.data, overrides)
    if store.tracked(cfg):
        problems += store.problems(cfg.logger.tracking_uri)
    if problems:
        raise ConfigError(problems)


