"""Checks of a composed config before any work: every problem at once, each
naming the key, the value and what would work. Imports nothing heavy itself; the
gate (src/gate.py) imports the modules the config's targets name.
"""

import difflib
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src import store
from src.catalog import (
    ACTIVATIONS,
    DATA,
    FULL_BATCH_OPTIMIZERS,
    LOSSES,
    MAX_EXPERIMENT_NAME,
    MODELS,
    NULLABLE,
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
    return [problem for _, problem in keyed_problems(cfg, overrides)]


_ABSENT = object()


def shown(value, longest: int = 60) -> str:
    """A value as the messages show it: null as the user types it, a long one cut short."""
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= longest else f"{text[:longest - 5]}...{text[-1]} ({len(str(value)):,} characters)"


def range_problem(key: str, value) -> str | None:
    """What is wrong with one value of a key of catalog.RANGES, or None (null passes where
    it means something: catalog.NULLABLE)."""
    accepts, need = RANGES[key]
    if value is None:
        return None if key in NULLABLE else f"{key}=null: {need}"
    return None if accepts(value) else f"{key}={shown(value)}: {need}"


def keyed_problems(cfg: DictConfig, overrides: list[str] = ()) -> list[tuple[tuple[str, ...], str]]:
    """value_problems, each with the config keys it judges (a sweep that varies one of
    them judges it job by job: sweep_problems)."""
    problems = []
    for key in RANGES:
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and (problem := range_problem(key, value)):
            problems.append(((key,), problem))
    for key, names in (("model.activation", ACTIVATIONS), ("trainer.precision", PRECISIONS)):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and str(value) not in names:
            problems.append(((key,), f"{key}={value!r}: {one_of(value, names)}"))
    name = cfg.get("experiment_name")
    if store.tracked(cfg) and not (isinstance(name, str) and name.strip()):
        problems.append((("experiment_name", "logger"),
                         f"experiment_name={name!r}: MLflow needs a name for the experiment, e.g. experiment_name=triad."))
    elif store.tracked(cfg) and len(name) > MAX_EXPERIMENT_NAME:
        problems.append((("experiment_name", "logger"),
                         f"experiment_name={shown(name)}: MLflow takes names of at most {MAX_EXPERIMENT_NAME} "
                         "characters; use a shorter one, e.g. experiment_name=triad."))
    d_model, heads = cfg.model.get("d_model"), cfg.model.get("num_heads")
    if is_int(d_model) and is_int(heads) and (problem := heads_problem(d_model, heads)):
        problems.append((("model.d_model", "model.num_heads"), problem))
    problems += [(("seeds", "seed"), p) for p in seeds_problems(cfg.get("seeds"), overrides)]
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and not store.tracked(cfg):
        problems.append((("ckpt_path", "logger"), "ckpt_path='last' looks up the unfinished run in MLflow: it needs "
                         "logger=mlflow (or give the checkpoint's path)."))
    elif ckpt_path not in (None, "last") and not Path(str(ckpt_path)).is_file():
        problems.append((("ckpt_path",), f"ckpt_path={ckpt_path!r}: no such file; use a checkpoint's path, 'last' or null."))
    for key in cfg.data or {}:
        if OmegaConf.is_missing(cfg.data, key):
            problems.append(((f"data.{key}",), f"data.{key} is required: set it on the command line, e.g. data.{key}=..."))
    batch_size, target = cfg.data.get("batch_size"), cfg.optimizer.get("_target_")
    if target in FULL_BATCH_OPTIMIZERS and batch_size is not None and batch_size != "full":
        problems.append((("data.batch_size", "optimizer"),
            f"data.batch_size={batch_size!r} with {target}: its line search and curvature history "
            "assume one fixed objective, which mini-batches change every step. Set data.batch_size=full."
        ))
    val, test = cfg.data.get("val_fraction"), cfg.data.get("test_fraction")
    accepts = RANGES["data.val_fraction"][0]
    if accepts(val) and accepts(test) and val + test >= 1 and not cfg.data.get("split_column"):
        problems.append((("data.val_fraction", "data.test_fraction"),
                         f"data.val_fraction={val!r} and data.test_fraction={test!r} leave no rows to train on: "
                         f"the two together ({val + test:g}) must be below 1, e.g. data.val_fraction=0.1 "
                         "data.test_fraction=0.2."))
    eta_min, lr = (cfg.get("scheduler") or {}).get("eta_min"), cfg.optimizer.get("lr")
    if is_number(eta_min) and is_number(lr) and eta_min >= lr > 0:
        problems.append((("scheduler.eta_min", "optimizer.lr"),
                         f"scheduler.eta_min={eta_min!r} is not below optimizer.lr={lr!r}: the schedule would "
                         f"raise the rate instead of decaying it; use e.g. scheduler.eta_min=0."))
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


# Config groups whose options set keys anywhere in the config (`# @package _global_`).
GLOBAL_GROUPS = ("experiment", "sweep", "debug")


def _varies(key: str, varied: set[str]) -> bool:
    """Whether a sweep that varies these keys (and groups) changes key."""
    return any(key == v or key.startswith(v + ".") or v.startswith(key + ".") for v in varied)


def sweep_problems(cfg: DictConfig, swept: dict[str, list | None], fixed: dict | None = None) -> list[str]:
    """Before a sweep starts (src/overrides.py), while nothing is recorded: what every one
    of its jobs would be refused for, and each listed value of a swept key that its job
    would be. cfg: composed with the command's fixed overrides and Hydra's config (the
    swept keys at their defaults); swept: each swept key or group with its listed values
    (None: drawn by the sweeper); fixed: the command's other keys and values, which every
    job takes as they are, whatever option of a swept group it builds. What depends on a
    swept key is judged job by job."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    varied = {str(key).lstrip("+~") for key in (*swept, *params)}
    problems = storage_problems(OmegaConf.select(cfg, "hydra.sweeper.storage", default=None))
    listed = {**{key: [value] for key, value in (fixed or {}).items()}, **swept}
    for key, values in listed.items():
        for value in values or ():
            interpolated = isinstance(value, str) and "${" in value  # resolved in the job
            if key.lstrip("+~") in RANGES and not interpolated and (problem := range_problem(key.lstrip("+~"), value)):
                problems.append(problem)
    if not varied & set(GLOBAL_GROUPS):  # else an experiment (or sweep, debug option) per job: any key may differ
        problems += [p for keys, p in keyed_problems(cfg) if not any(_varies(k, varied) for k in keys)]
    return list(dict.fromkeys(problems))  # a fixed key's problem once


def storage_problems(storage) -> list[str]:
    """hydra.sweeper.storage, where an Optuna search keeps its study: a database whose
    driver is not installed fails as the search opens it, after the sweep's parent run."""
    if not isinstance(storage, str) or storage.split(":", 1)[0].split("+")[0] not in store.DATABASES:
        return []
    shown_url, module, package = store.missing_driver(storage)
    if module is None:
        return []  # installed, or not a URL SQLAlchemy reads: Optuna's own message says why
    return [f"hydra.sweeper.storage={shown_url}: the Optuna study's database driver is not installed (no module "
            f"{module!r}). Install it (pip install {package}), or keep the study in SQLite "
            "(hydra.sweeper.storage=sqlite:///<file>; the default is beside the MLflow store) or in memory (null)."]


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into folder (created where it does not exist yet): a
    file on its way, or a nearest existing folder that takes no new file (tried, so that
    a read-only mount counts, for root too)."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"cannot write into {existing} ({error.strerror})"
    return None
