"""The one instantiation gate: what a config may build.

Every `_target_` of a config (nested, and in lists too) is resolved to the object it
names, without calling anything, and judged by what that object is: a class defined
in one of the places below and a subclass of what triad builds from there. The
spelling proves nothing (`torch.os.system`, `src.identity.subprocess.run` and
`torch.serialization.load` all start like allowed names). Train, eval, the sweep's
Hydra callbacks and the benchmarks build through `instantiate` here.
"""

import difflib
import functools
import importlib
import inspect
import re
from types import ModuleType

from omegaconf import DictConfig, ListConfig, OmegaConf

# The packages a target may be spelled in. Resolving a target imports the modules
# it names, so a target outside them is refused before anything is imported.
PACKAGES = ("src", "torch", "pytorch_lightning", "lightning", "torchmetrics")

# What may be built: (the module or package that defines the class, the class it
# must be or subclass, how messages say it). Judged from the resolved class's
# __module__ and bases.
ALLOWED = (
    ("src.models", "torch.nn.Module", "architectures in src.models.*"),
    ("src.losses", "torch.nn.Module", "losses in src.losses"),
    ("src.data", "pytorch_lightning.LightningDataModule", "data modules in src.data.*"),
    ("src.schedulers", "torch.optim.lr_scheduler.LRScheduler", "schedulers in src.schedulers"),
    ("src.callbacks", "pytorch_lightning.Callback", "callbacks in src.callbacks"),
    ("src.recovery", "src.recovery.MLFlowLogger", "src.recovery.MLFlowLogger"),
    ("src.sweep", "src.sweep.SweepCallback", "src.sweep.SweepCallback"),
    ("torch.optim", "torch.optim.Optimizer", "torch.optim optimizers"),
    ("torch.optim.lr_scheduler", "torch.optim.lr_scheduler.LRScheduler", "torch.optim.lr_scheduler schedulers"),
    ("pytorch_lightning", "pytorch_lightning.Trainer", "pytorch_lightning.Trainer"),
    ("pytorch_lightning.callbacks", "pytorch_lightning.Callback", "Lightning callbacks"),
    ("pytorch_lightning.profilers", "pytorch_lightning.profilers.Profiler", "Lightning profilers"),
    ("pytorch_lightning.loggers", "pytorch_lightning.loggers.Logger", "Lightning loggers"),
    ("lightning.pytorch", "lightning.pytorch.Trainer", None),  # the same, where `lightning` is installed
    ("lightning.pytorch.callbacks", "lightning.pytorch.Callback", None),
    ("lightning.pytorch.profilers", "lightning.pytorch.profilers.Profiler", None),
    ("lightning.pytorch.loggers", "lightning.pytorch.loggers.Logger", None),
    ("torchmetrics", "torchmetrics.Metric", "torchmetrics metrics"),
)
WHAT_IS_ALLOWED = (f"triad builds only these classes: {', '.join(said for _, _, said in ALLOWED if said)} "
                   "(the Lightning ones from lightning.pytorch too)")


_MISSING = object()


class Unresolved(Exception):
    """A target that names nothing, or names it in a way the gate does not follow."""


def _within(module_name: str, package: str) -> bool:
    return module_name == package or module_name.startswith(package + ".")


def resolve(target: str):
    """The object a dotted target names, found as Hydra finds it (import the first
    part, then attributes or submodules) but reading attributes statically, so no
    property, module __getattr__ or other code of the target runs. Only modules of
    PACKAGES are imported; refuses anything else before importing it."""
    parts = target.split(".")
    if parts[0] not in PACKAGES or not all(parts):
        raise Unresolved(f"outside the packages triad builds from ({', '.join(p + '.*' for p in PACKAGES)}); "
                         "nothing was imported to check it")
    try:
        obj = importlib.import_module(parts[0])
    except Exception as error:
        raise Unresolved(f"cannot be imported ({error})") from None
    for depth, part in enumerate(parts[1:], start=1):
        path = ".".join(parts[:depth])
        if isinstance(obj, ModuleType):
            found = vars(obj).get(part, _MISSING)
            # A submodule not imported yet: only a real package of PACKAGES is
            # followed (obj may be an alias such as torch.os, which is not).
            if found is _MISSING and obj.__name__ == path:
                try:
                    found = importlib.import_module(f"{path}.{part}")
                except ModuleNotFoundError:
                    found = _MISSING
                except Exception as error:
                    raise Unresolved(f"cannot import {path}.{part} ({error})") from None
        else:
            try:
                found = inspect.getattr_static(obj, part)
            except AttributeError:
                found = _MISSING
        if found is _MISSING:
            names = [n for n in vars(obj) if not n.startswith("_")] if isinstance(obj, ModuleType) else []
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {path}.{close[0]}?" if close else ""
            raise Unresolved(f"{path} has no {part!r}{hint}")
        obj = found
    return obj


def _base(dotted: str) -> type:
    """A class of ALLOWED (its module is already imported when it is asked for)."""
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def is_allowed(obj) -> bool:
    """Whether obj is a class triad builds: defined where ALLOWED says, and a
    subclass of what that place provides."""
    if not inspect.isclass(obj):
        return False
    return any(_within(obj.__module__, where) and issubclass(obj, _base(base)) for where, base, _ in ALLOWED)


def _describe(obj) -> str:
    if inspect.isclass(obj):
        return f"the class {obj.__module__}.{obj.__qualname__}, not one triad builds"
    if isinstance(obj, ModuleType):
        return f"the module {obj.__name__}, not a class"
    if callable(obj):
        module = getattr(obj, "__module__", None) or "?"
        return f"the function {module}.{getattr(obj, '__qualname__', obj)}, not a class"
    return f"a {type(obj).__name__} value, not a class"


@functools.cache
def shipped_targets() -> frozenset[str]:
    """The _target_ of every option in conf/. A test resolves each of them through
    the gate (tests/test_trust.py), so these exact names need no import here: the
    trainer's would import Lightning (seconds) before a bad config could answer."""
    from src import PROJECT_ROOT

    # Not the sweeper's (conf/hydra/sweeper/): Hydra builds its plugins itself, only from hydra_plugins.
    plugins = PROJECT_ROOT / "conf" / "hydra" / "sweeper"
    return frozenset(
        name for path in (PROJECT_ROOT / "conf").rglob("*.yaml") if plugins not in path.parents
        for name in re.findall(r"^\s*_target_:\s*([\w.]+)\s*$", path.read_text(), re.M)
    )


def target_problem(key: str, target) -> str | None:
    """What is wrong with one _target_ value, or None when the gate lets it through."""
    if not isinstance(target, str):
        return f"{key}={target!r}: not a dotted class name. {WHAT_IS_ALLOWED}."
    if target in shipped_targets():
        return None
    try:
        obj = resolve(target)
    except Unresolved as why:
        return f"{key}={target!r}: {why}. {WHAT_IS_ALLOWED}."
    if not is_allowed(obj):
        return f"{key}={target!r}: resolves to {_describe(obj)}. {WHAT_IS_ALLOWED}."
    return None


def _targets(node, path: str):
    """(key, value) of every _target_ under node, interpolations resolved; a target
    that cannot be resolved comes back as the error."""
    if isinstance(node, DictConfig):
        items = node.keys()
    elif isinstance(node, ListConfig):
        items = range(len(node))
    else:
        return
    for key in items:
        child_path = f"{path}[{key}]" if isinstance(node, ListConfig) else (f"{path}.{key}" if path else str(key))
        if OmegaConf.is_missing(node, key):
            continue
        try:
            value = node[key]
        except Exception as error:  # an interpolation that does not resolve
            if key == "_target_":
                yield child_path, error
            continue  # Hydra fails on it too, before building anything
        if key == "_target_":
            yield child_path, value
        else:
            yield from _targets(value, child_path)


def target_problems(cfg, prefix: str = "") -> list[str]:
    """Every _target_ of cfg that the gate refuses, each naming its key, the target
    and what triad builds."""
    if not isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.create(cfg)
    problems = []
    for key, target in _targets(cfg, prefix):
        if isinstance(target, Exception):
            problems.append(f"{key}: cannot be resolved ({str(target).splitlines()[0]}). {WHAT_IS_ALLOWED}.")
        elif (problem := target_problem(key, target)) is not None:
            problems.append(problem)
    return problems


def check(cfg, prefix: str = "") -> None:
    """Raise ConfigError listing every refused _target_ of cfg."""
    from src.validate import ConfigError  # validate imports this module

    if problems := target_problems(cfg, prefix):
        raise ConfigError(problems)


def check_recorded(cfg, source: str) -> None:
    """A config read back from a run (eval): refused whole when any target is, the
    message naming the file it came from."""
    from src.validate import ConfigError

    if problems := target_problems(cfg):
        raise ConfigError([f"the recorded config {source} was refused: {p}" for p in problems])


def instantiate(config, *args, **kwargs):
    """hydra.utils.instantiate, after the gate let every target of config through."""
    from hydra.utils import instantiate as hydra_instantiate

    check(config)
    return hydra_instantiate(config, *args, **kwargs)
