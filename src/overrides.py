"""The command line checked before Hydra composes it: every misspelled option and
key at once (Hydra stops at the first), each with its close matches; a `+key` that
exists already or that the object it is added to does not take; an output folder
that cannot be written; Hydra's own callbacks through the gate; and what every job
of a sweep would be refused for (before Hydra creates the sweep's parent run).
"""

import difflib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.gate import target_problems
from src.validate import folder_problem, one_of, sweep_problems

# Flags after which Hydra reads another config than conf/train.yaml.
OTHER_CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")


def override_problems(args: list[str], conf_dir: Path, config_name: str = "train") -> list[str]:
    """Options and keys of command-line overrides that do not exist, all of them
    (Hydra itself stops at the first), each with the close matches. A `+key` must
    be new, and under a built object (trainer, model, ...) an argument it takes.
    And what Hydra does before any job starts, where it fails with a traceback:
    building its callbacks (through the gate) and creating the output folder; and
    for a sweep, what every job would be refused for, before its parent run exists."""
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
        cfg = _composed(conf_dir, config_name, composable)
    except Exception:
        return problems  # Hydra reports what else is wrong
    for key in keys:
        problems += _key_problems(cfg, conf_dir, key, adding=False)
    for key in added:
        problems += _key_problems(cfg, conf_dir, key, adding=True)
    problems += target_problems(cfg.hydra.get("callbacks") or {}, "hydra.callbacks")
    if problems:
        return problems
    single = [o.input_line for o in overrides if not o.is_sweep_override()]  # sweeps vary no folder
    try:
        cfg = _composed(conf_dir, config_name, single)
    except Exception:
        return []  # Hydra's own message says what does not compose
    # -m on the command line, or a sweep file's `hydra.mode: MULTIRUN`
    multirun = any(a in ("-m", "--multirun") for a in args) or str(cfg.hydra.mode).endswith("MULTIRUN")
    if problems := output_problems(cfg, multirun):
        return problems
    if not multirun:
        return []  # a single run is judged by validate() before its run, all at once
    swept = {o.key_or_group: list(o.sweep_iterator()) if o.is_discrete_sweep() else None
             for o in overrides if o.is_sweep_override()}
    fixed = {o.key_or_group: o.value() for o in overrides if not o.is_sweep_override() and not o.is_delete()}
    try:
        return sweep_problems(cfg, swept, fixed)
    except Exception:
        return []  # what does not resolve: Hydra says it; each job judges the rest


def _composed(conf_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=True)


def output_problems(cfg: DictConfig, multirun: bool) -> list[str]:
    """Whether Hydra can create the output folder: the nearest folder on its way that
    exists must take a new file."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        folder = Path(OmegaConf.select(cfg, key))
    except Exception:
        return []  # Hydra's own message says what does not resolve
    if problem := folder_problem(folder):
        return [f"{key}={folder}: {problem}; Hydra puts the run's outputs there. Make it writable, or set "
                "paths.mlruns_dir (outputs and the store) to a writable folder."]
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
