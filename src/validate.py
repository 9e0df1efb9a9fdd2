"""Checks of a composed config before any work: every problem at once, each
naming the key, the value and what would work. Imports nothing heavy itself; the
gate (src/gate.py) imports the modules the config's targets name.
"""

import difflib
import math
import tempfile
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.gate import target_problems

# What each data option gives: (input kind, task). None: known only from the
# config or the file (the user's data); judged from data.task and data.text_column
# when set, and checked again against the loaded DataSpec before any run.
DATA = {
    "digits": ("image", "multiclass"),
    "digits_images": ("image", "reconstruction"),
    "sentiment": ("tokens", "multiclass"),
    "sentiment_binary": ("tokens", "binary"),
    "iris": ("features", "multiclass"),
    "breast_cancer": ("features", "binary"),
    "diabetes": ("features", "regression"),
    "listops": ("tokens", "multiclass"),
    "adding": ("features", "regression"),
    "pydoc_lm": ("tokens", "language_model"),
    "csv": (None, None),
    "hf": (None, None),
}
# What each model option reads and which tasks its output can serve.
CLASSIFY_OR_REGRESS = {"multiclass", "binary", "regression"}
ANY_INPUT = {"features", "image", "tokens"}
MODELS = {
    "linear": ({"features", "image"}, CLASSIFY_OR_REGRESS),
    "mlp": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "transformer": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "bow": ({"tokens"}, CLASSIFY_OR_REGRESS),
    "cnn": (ANY_INPUT, CLASSIFY_OR_REGRESS),
    "rnn": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "lstm": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "gru": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "gpt": ({"tokens"}, {"language_model"}),
    "vae": ({"features", "image"}, {"reconstruction"}),
}
# Which tasks each loss option fits.
LOSSES = {
    "cross_entropy": {"multiclass", "language_model"},
    "bce": {"binary", "multiclass"},
    "mse": {"regression", "multiclass", "binary"},
    "mae": {"regression", "multiclass", "binary"},
    "huber": {"regression"},
    "focal": {"multiclass", "binary", "language_model"},
    "elbo": {"reconstruction"},
}
# The loss each task trains with when the config picks none (conf/train.yaml: loss: null).
TASK_LOSS = {
    "multiclass": "cross_entropy",
    "binary": "bce",
    "regression": "mse",
    "language_model": "cross_entropy",
    "reconstruction": "elbo",
}
# The model for the tasks the default model (mlp) cannot serve, used when the
# user picks no model (no model=, model.*=, experiment= or sweep=).
TASK_MODEL = {"language_model": "gpt", "reconstruction": "vae"}
# Optimizers that re-evaluate the loss several times per step (a closure) and so
# need the same objective every time: the whole training split in one batch.
FULL_BATCH_OPTIMIZERS = {"torch.optim.LBFGS"}


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


def compatibility_problems(choices: dict[str, str], data_cfg=None, changed: set[str] = frozenset()) -> list[str]:
    """Whether the chosen data, model and loss can work together (options unknown
    to the table, e.g. a user's own, are not judged; nor is what only the file knows).
    `changed`: the groups the user picked on the command line, so that a refusal
    lists alternatives for what they changed."""
    data = choices.get("data")
    if data not in DATA:
        return []
    kind, task = data_facts(data, data_cfg)
    return [] if task is None else _judge(choices, kind, task, changed)


def check_loaded_data(choices: dict[str, str], input_kind: str, task: str, changed: set[str] = frozenset()) -> None:
    """After loading, before any run: the data's real kind and task against the model and loss
    (for the user's data, where the file decides them)."""
    problems = _judge(choices, input_kind, task, changed)
    if problems:
        raise ConfigError(problems)


def _data_reading(model: str) -> str:
    inputs, tasks = MODELS[model]
    return _options_for(DATA, lambda facts: facts[0] in inputs and facts[1] in tasks)


def _judge(choices: dict[str, str], kind: str, task: str, changed: set[str]) -> list[str]:
    data, model, loss = choices.get("data"), choices.get("model"), choices.get("loss")
    problems = []
    if model in MODELS:
        inputs, tasks = MODELS[model]
        if kind not in inputs or task not in tasks:
            models = f"Models that read data={data}: {_options_for(MODELS, lambda m: kind in m[0] and task in m[1])}."
            readable = f"Data that model={model} reads: {_data_reading(model)} (or your own: data=csv, data=hf)."
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


# Names the models accept for `activation` (src/models/inputs.py ACTIVATIONS; a test keeps them equal).
ACTIVATIONS = ("gelu", "relu", "sigmoid", "tanh")
POOLINGS = ("first", "mean")
# The numeric precisions triad supports (Lightning names; 32 is 32-true).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "32")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _is_number(value) -> bool:
    """A finite int or float: inf passes every `> 0` test and nan fails them all silently."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def one_of(value, options) -> str:
    """'use one of a, b. Did you mean a?' for a value that is none of the options."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"use one of {', '.join(str(o) for o in options)}.{hint}"


def value_problems(cfg: DictConfig) -> list[str]:
    """Values of the wrong type or out of their range, each with what would work."""
    problems = []

    def check(key: str, ok, need: str) -> None:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and not ok(value):
            problems.append(f"{key}={value!r}: {need}")

    check("seed", lambda v: _is_int(v) and 0 <= v <= MAX_SEED, f"the seed must be an integer >= 0 and <= {MAX_SEED} "
          "(what numpy's seeding takes).")
    name = cfg.get("experiment_name")
    if cfg.get("logger") and not (isinstance(name, str) and name.strip()):
        problems.append(f"experiment_name={name!r}: MLflow needs a name for the experiment, e.g. experiment_name=triad.")
    check("optimizer.lr", lambda v: _is_number(v) and v > 0, "the learning rate must be a number > 0 and finite, e.g. 0.001.")
    check("optimizer.weight_decay", lambda v: _is_number(v) and v >= 0, "must be a number >= 0.")
    check("optimizer.momentum", lambda v: _is_number(v) and 0 <= v < 1, "must be a number in [0, 1).")
    check("optimizer.betas", lambda v: isinstance(v, ListConfig | list | tuple) and len(v) == 2
          and all(_is_number(b) and 0 <= b < 1 for b in v), "must be two numbers in [0, 1), e.g. [0.9, 0.999].")
    check("data.batch_size", lambda v: v == "full" or (_is_int(v) and v >= 1),
          "use an integer >= 1, or 'full' for batch gradient descent.")
    for key in ("data.val_fraction", "data.test_fraction"):
        check(key, lambda v: _is_number(v) and 0 < v < 1, "must be a fraction in (0, 1), e.g. 0.2.")
    check("model.dropout", lambda v: _is_number(v) and 0 <= v < 1, "must be in [0, 1).")
    for key in ("model.hidden_size", "model.embed_dim", "model.d_model", "model.num_heads", "model.ff_size"):
        check(key, lambda v: _is_int(v) and v >= 1, "must be an integer >= 1.")
    for key in ("model.num_layers", "model.head_hidden_size"):
        check(key, lambda v: _is_int(v) and v >= 0, "must be an integer >= 0.")
    check("model.activation", lambda v: v in ACTIVATIONS, one_of(cfg.model.get("activation"), ACTIVATIONS))
    check("model.pooling", lambda v: v in POOLINGS, f"use one of {', '.join(POOLINGS)}.")
    d_model, heads = cfg.model.get("d_model"), cfg.model.get("num_heads")
    if _is_int(d_model) and _is_int(heads) and heads >= 1 and d_model % heads:
        problems.append(f"model.d_model={d_model} is not divisible by model.num_heads={heads}: "
                        f"use a num_heads that divides it, e.g. {max(h for h in range(1, heads + 1) if d_model % h == 0)}.")
    check("trainer.max_epochs", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1.")
    check("trainer.precision", lambda v: str(v) in PRECISIONS, one_of(cfg.trainer.get("precision"), PRECISIONS))
    check("trainer.accelerator", lambda v: v in ACCELERATORS, f"use one of {', '.join(ACCELERATORS)}.")
    check("trainer.devices", _is_devices, "use a number of devices >= 1, -1 or 'auto' (all there are), "
          "or a list of device indices, e.g. [0, 1].")
    check("trainer.num_nodes", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1.")
    check("trainer.gradient_clip_val", lambda v: _is_number(v) and v >= 0, "must be a number >= 0, or null.")
    check("trainer.log_every_n_steps", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1.")
    check("checkpoint_every_n_steps", lambda v: _is_int(v) and v >= 1, "must be an integer >= 1.")
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" and not cfg.get("logger"):
        problems.append("ckpt_path='last' looks up the unfinished run in MLflow: it needs logger=mlflow "
                        "(or give the checkpoint's path).")
    elif ckpt_path not in (None, "last") and not Path(str(ckpt_path)).is_file():
        problems.append(f"ckpt_path={ckpt_path!r}: no such file; use a checkpoint's path, 'last' or null.")
    problems += scheduler_problems(cfg)
    for key in cfg.data or {}:
        if OmegaConf.is_missing(cfg.data, key):
            problems.append(f"data.{key} is required: set it on the command line, e.g. data.{key}=...")
    batch_size, target = cfg.data.get("batch_size"), cfg.optimizer.get("_target_")
    if target in FULL_BATCH_OPTIMIZERS and batch_size is not None and batch_size != "full":
        problems.append(
            f"data.batch_size={batch_size!r} with {target}: its line search and curvature history "
            "assume one fixed objective, which mini-batches change every step. Set data.batch_size=full."
        )
    return problems


# numpy's seeding (and so Lightning's seed_everything) takes 32-bit seeds.
MAX_SEED = 2**32 - 1


def _is_devices(value) -> bool:
    """What Lightning's `devices` takes: a count, -1 or 'auto' for all, or device indices."""
    if isinstance(value, str):
        value = value.strip()
        if value == "auto":
            return True
        try:
            value = [int(i) for i in value.split(",") if i.strip()] if "," in value else int(value)
        except ValueError:
            return False
    if isinstance(value, ListConfig | list | tuple):
        return len(value) > 0 and all(_is_int(i) and i >= 0 for i in value)
    return _is_int(value) and (value >= 1 or value == -1)


# The ranges of the schedules' arguments (conf/scheduler/, src/schedulers.py); torch
# accepts most values outside them and trains on with a rate that is zero, negative
# or growing without bound (StepLR with step_size=-1 multiplies it by 1/gamma every step).
SCHEDULER_RANGES = {
    "step_size": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1 (optimizer steps between decays)."),
    "gamma": (lambda v: _is_number(v) and 0 < v <= 1, "must be a number in (0, 1], e.g. 0.5."),
    "T_max": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1, or left out (the run's steps)."),
    "total_steps": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1, or left out (the run's steps)."),
    "eta_min": (lambda v: _is_number(v) and v >= 0, "must be a number >= 0, below optimizer.lr."),
    "min_lr": (lambda v: _is_number(v) and v >= 0, "must be a number >= 0."),
    "warmup_fraction": (lambda v: _is_number(v) and 0 <= v < 1, "must be a fraction in [0, 1), e.g. 0.05."),
    "pct_start": (lambda v: _is_number(v) and 0 < v < 1, "must be a fraction in (0, 1), e.g. 0.3."),
    "max_lr": (lambda v: _is_number(v) and v > 0, "must be a number > 0, e.g. 0.01."),
    "div_factor": (lambda v: _is_number(v) and v >= 1, "must be a number >= 1 (the start is max_lr / div_factor)."),
    "final_div_factor": (lambda v: _is_number(v) and v >= 1, "must be a number >= 1."),
    "anneal_strategy": (lambda v: v in ("cos", "linear"), "use one of cos, linear."),
    "cycle_momentum": (lambda v: isinstance(v, bool), "must be true or false."),
    "factor": (lambda v: _is_number(v) and 0 < v < 1, "must be a number in (0, 1), e.g. 0.5."),
    "patience": (lambda v: _is_int(v) and v >= 0, "must be an integer >= 0 (validations without improvement)."),
    "threshold": (lambda v: _is_number(v) and v >= 0, "must be a number >= 0."),
}


def scheduler_problems(cfg: DictConfig) -> list[str]:
    """The schedule's arguments out of their range, and an eta_min the rate would climb to."""
    scheduler = cfg.get("scheduler")
    if not isinstance(scheduler, DictConfig):
        return []  # scheduler=none
    problems = []
    for key, (ok, need) in SCHEDULER_RANGES.items():
        value = scheduler.get(key)
        if value is not None and not ok(value):
            problems.append(f"scheduler.{key}={value!r}: {need}")
    eta_min, lr = scheduler.get("eta_min"), cfg.optimizer.get("lr")
    if _is_number(eta_min) and _is_number(lr) and eta_min >= lr > 0:
        problems.append(f"scheduler.eta_min={eta_min!r} is not below optimizer.lr={lr!r}: the schedule would "
                        f"raise the rate instead of decaying it; use e.g. scheduler.eta_min=0.")
    return problems


def scale_problems(cfg: DictConfig) -> list[str]:
    """Precision and the compile switch (where and how a run computes)."""
    problems = []
    if not isinstance(cfg.get("compile", False), bool):
        problems.append(f"compile={cfg.compile!r}: must be true or false.")
    return problems


def changed_groups(overrides: list[str]) -> set[str]:
    """The config groups picked on the command line (`model=cnn`, `+loss=mse`)."""
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


def validate(cfg: DictConfig, choices: dict[str, str], overrides: list[str] = ()) -> None:
    """Raise ConfigError listing every problem of the config, or return None."""
    problems = target_problems(cfg)  # the gate: what each _target_ resolves to
    problems += value_problems(cfg) + scale_problems(cfg)
    problems += compatibility_problems(choices, cfg.data, changed_groups(overrides))
    if problems:
        raise ConfigError(problems)


# Flags after which Hydra reads another config than conf/train.yaml.
OTHER_CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def override_problems(args: list[str], conf_dir: Path, config_name: str = "train") -> list[str]:
    """Options and keys of command-line overrides that do not exist, all of them
    (Hydra itself stops at the first), each with the close matches. A `+key` must
    be new, and under a built object (trainer, model, ...) an argument it takes.
    And what Hydra does before any job starts, where it fails with a traceback:
    building its callbacks (through the gate) and creating the output folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.split("=")[0] in OTHER_CONFIG_FLAGS for a in args):
        return []
    try:
        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if "=" in a and not a.startswith("-")]
        )
    except Exception:
        return []  # a syntax error: Hydra's own message says where
    problems, composable, keys, added = [], [], [], []
    for override in overrides:
        key = override.key_or_group
        if key.startswith("hydra") or override.is_delete() or override.is_force_add():
            composable.append(override.input_line)
            continue
        group = conf_dir / key
        if group.is_dir():
            options = sorted(f.stem for f in group.glob("*.yaml"))
            try:
                values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
            except Exception:
                continue
            wrong = [v for v in values if v is not None and str(v) not in options]
            for value in wrong:
                problems.append(f"{key}={value}: no such option in conf/{key}/; {one_of(value, options)}")
            if not wrong and values:
                composable.append(f"{'+' if override.is_add() else ''}{key}={values[0]}")
        elif override.is_add():
            added.append(key)
        else:
            keys.append(key)
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=composable, return_hydra_config=True)
    except Exception:
        return problems  # Hydra reports what else is wrong
    for key in keys:
        problems += _key_problems(cfg, conf_dir, key, adding=False)
    for key in added:
        problems += _key_problems(cfg, conf_dir, key, adding=True)
    problems += target_problems(cfg.hydra.get("callbacks") or {}, "hydra.callbacks")
    if problems:
        return problems
    multirun = any(a in ("-m", "--multirun") for a in args)
    single = [o.input_line for o in overrides if not o.is_sweep_override()]  # sweeps vary no folder
    return output_problems(conf_dir, config_name, single, multirun)


def output_problems(conf_dir: Path, config_name: str, overrides: list[str], multirun: bool) -> list[str]:
    """Whether Hydra can create the output folder: the nearest folder on its way that
    exists must take a new file (tried, so that a read-only mount counts, for root too)."""
    from hydra import compose, initialize_config_dir

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        folder = Path(OmegaConf.select(cfg, key))
    except Exception:
        return []  # Hydra's own message says what does not compose or resolve
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return [f"{key}={folder}: cannot write into {existing} ({error.strerror}); Hydra puts the run's "
                "outputs there. Make it writable, or set paths.mlruns_dir (outputs and the store) to a "
                "writable folder."]
    return []


def _key_problems(cfg: DictConfig, conf_dir: Path, key: str, adding: bool) -> list[str]:
    """Why `key=` (or `+key=`) cannot be set in the composed config, if it cannot."""
    parent_key, _, name = key.rpartition(".")
    top = key.split(".")[0]
    if "." in key and (conf_dir / top).is_dir() and cfg.get(top) is None:
        having = [f.stem for f in sorted((conf_dir / top).glob("*.yaml")) if name in OmegaConf.load(f)]
        example = f"{top}={having[0]} {key}=..." if having else f"{top}=<option> {key}=..."
        return [f"{key}: no {top} is chosen (with {top}: null the data's task picks one); "
                f"choose one to set its keys, e.g. {example}"]
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    # keys(), not select() or `in`: both treat a present key whose value is
    # still missing (`???`, like data=csv's path) as absent.
    exists = isinstance(parent, DictConfig) and name in parent.keys()
    if adding and exists:
        return [f"+{key}: {key} is already in the config; set it without the +: {key}=..."]
    if adding:
        accepted = _arguments_of(parent.get("_target_")) if isinstance(parent, DictConfig) else None
        if accepted is None or name in accepted:
            return []  # a key of the user's own, or an argument the built object takes
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f" Did you mean {parent_key}.{close[0]}?" if close else ""
        return [f"+{key}: {parent.get('_target_')} takes no argument {name!r}.{hint}"]
    if not exists:
        siblings = [f"{parent_key}.{k}" if parent_key else str(k) for k in parent] if isinstance(parent, DictConfig) else []
        close = difflib.get_close_matches(key, siblings, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        return [f"{key}: no such key in the config.{hint} (To add a new key, write +{key}=...)"]
    return []


def _arguments_of(target) -> list[str] | None:
    """The keyword arguments a `_target_` takes, or None when it takes any (**kwargs)
    or is not a class the gate lets through (refused elsewhere, with its message).
    Imports the target's module (Lightning: seconds), so only for a `+key` under it."""
    import inspect

    from src.gate import Unresolved, is_allowed, resolve

    try:
        built = resolve(target) if isinstance(target, str) else None
    except Unresolved:
        return None
    if not is_allowed(built):
        return None
    parameters = inspect.signature(built).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters]
