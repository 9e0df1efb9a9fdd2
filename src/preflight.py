"""Checks that need torch, the loaded data or the network's shapes: after the data
is loaded, before any run is created. What they refuse would otherwise end as a
FAILED run (or a traceback) after the store, the run and sometimes an epoch.
Each raises one ConfigError with every problem it found.
"""

import difflib
import os
from pathlib import Path

from omegaconf import DictConfig

from src.data.spec import DataSpec
from src.validate import ConfigError, one_of

# The model keys that decide its size, named when it is too large.
SIZE_KEYS = ("hidden_size", "num_layers", "d_model", "num_heads", "ff_size", "embed_dim", "head_hidden_size")


def check_model_fits(make_net, spec: DataSpec, model_cfg: DictConfig, name: str | None) -> None:
    """Refuse a network whose weights and gradients alone exceed this machine's
    available memory, before building it allocates them: it is built once on the
    meta device, which gives every shape and allocates nothing.

    The network is built in this machine's memory first whatever it trains on, so
    this holds on a GPU too; the GPU's own memory is not read (that would start
    CUDA in this process, which ddp_fork forbids)."""
    import torch

    with torch.device("meta"):
        net = make_net(**spec.model_dims())
    num_params = sum(p.numel() for p in net.parameters())
    # weights and their gradients, before the optimizer's state (Adam: twice more)
    needed = sum(2 * p.numel() * p.element_size() for p in net.parameters())
    needed += sum(b.numel() * b.element_size() for b in net.buffers())
    available = available_memory()
    if needed <= available:
        return
    sizes = ", ".join(f"model.{k}={model_cfg[k]}" for k in SIZE_KEYS if model_cfg.get(k) is not None)
    raise ConfigError([
        f"model={name or model_cfg.get('_target_')} is too large for this machine: {num_params:,} parameters "
        f"need {_size(needed)} for the weights and their gradients alone (more with the optimizer's "
        f"state), and {_size(available)} of memory is available. Make it smaller ({sizes or 'its sizes'})."
    ])


def available_memory() -> int:
    """Bytes of memory a new allocation can get: Linux's MemAvailable, within the
    container's limit (cgroup v2) if it has one; elsewhere the physical memory."""
    limits = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        limits.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            limits.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, IndexError, ValueError):
        pass  # not Linux, or no cgroup limit
    if not limits:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(limits)


def _size(num_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if num_bytes < 1000 or unit == "TB":
            return f"{num_bytes:,.0f} {unit}" if unit == "bytes" else f"{num_bytes:,.1f} {unit}"
        num_bytes /= 1000


def check_before_run(cfg: DictConfig, spec: DataSpec, module, choices: dict[str, str]) -> None:
    """The objective, the checkpoint to start from and the trainer's devices, against
    the data, the built module and this machine."""
    problems = objective_problems(cfg.objective, spec)
    problems += checkpoint_problems(cfg.ckpt_path, module, choices)
    problems += trainer_problems(cfg.trainer)
    if problems:
        raise ConfigError(problems)


def objective_problems(objective: str | None, spec: DataSpec) -> list[str]:
    """An objective the run never logs: Lightning would stop at the end of the first
    epoch, unable to rank the checkpoint."""
    from src.module import DEFAULT_OBJECTIVE, monitorable_metrics

    names = monitorable_metrics(spec)
    if objective is None or objective in names:
        return []
    return [f"objective={objective!r}: a run on {spec.task} data logs no such metric; {one_of(objective, names)} "
            f"Or null for the task's default ({DEFAULT_OBJECTIVE[spec.task]})."]


def checkpoint_problems(ckpt_path: str | None, module, choices: dict[str, str]) -> list[str]:
    """A ckpt_path file that is no checkpoint of this model: unreadable (text, cut
    short), without weights, or with another network's weights or shapes."""
    if ckpt_path in (None, "last"):
        return []
    import torch

    start = f"ckpt_path={ckpt_path!r}"
    fix = "Give a .ckpt a run of the same model and data saved (its checkpoints/best.ckpt or last.ckpt), or null."
    try:
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else ""
        return [f"{start}: not a checkpoint torch can read ({type(error).__name__}: {reason}). {fix}"]
    weights = saved.get("state_dict") if isinstance(saved, dict) else None
    if not isinstance(weights, dict):
        return [f"{start}: holds no state_dict (the weights a Lightning checkpoint keeps). {fix}"]
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [f"{k} is {tuple(weights[k].shape)}, not {tuple(v.shape)}" for k, v in expected.items()
                if k in weights and getattr(weights[k], "shape", None) != v.shape]
    if not (missing or unexpected or reshaped):
        return []
    found = [f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
             f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
             f"{len(reshaped)} of another shape (e.g. {reshaped[0]})" if reshaped else ""]
    model = " ".join(f"{group}={choices[group]}" for group in ("model", "data") if choices.get(group))
    return [f"{start}: its weights do not fit {model or 'the model its config builds'}: "
            f"{'; '.join(f for f in found if f)}. {fix}"]


# What each accelerator name needs, as messages say it.
ACCELERATOR_NEEDS = {"gpu": "GPU (CUDA or Apple MPS)", "cuda": "CUDA GPU", "mps": "Apple MPS GPU", "tpu": "TPU"}


def trainer_problems(trainer_cfg: DictConfig) -> list[str]:
    """The accelerator and strategy against this machine and Lightning, then a
    Trainer built with these settings (and nothing else), whose refusal Lightning words."""
    from pytorch_lightning.accelerators import CUDAAccelerator, MPSAccelerator, XLAAccelerator
    from pytorch_lightning.strategies import StrategyRegistry

    from src.gate import instantiate

    problems = []
    accelerator, strategy = trainer_cfg.get("accelerator"), trainer_cfg.get("strategy")
    present = {"cuda": CUDAAccelerator.is_available(), "mps": MPSAccelerator.is_available(),
               "tpu": XLAAccelerator.is_available()}
    present["gpu"] = present["cuda"] or present["mps"]
    if accelerator in present and not present[accelerator]:
        problems.append(f"trainer.accelerator={accelerator!r}: this machine has no {ACCELERATOR_NEEDS[accelerator]} "
                        "that torch can use. Use trainer.accelerator=cpu, or auto (the best device there is).")
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if isinstance(strategy, str) and strategy.lower() not in strategies:
        close = difflib.get_close_matches(strategy.lower(), strategies, n=1)
        named = ", ".join(s for s in strategies if "find_unused" not in s)  # not each variant of ddp's flag
        problems.append(f"trainer.strategy={strategy!r}: no such Lightning strategy. Use auto (one process), "
                        f"ddp, ddp_spawn or fsdp (all: {named}, ...)." + (f" Did you mean {close[0]}?" if close else ""))
    if problems:
        return problems
    try:
        instantiate(trainer_cfg, logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False)
    except Exception as error:
        cause = error.__cause__ or error  # Hydra wraps what the constructor raised
        settings = ", ".join(f"trainer.{k}={trainer_cfg.get(k)!r}" for k in ("accelerator", "devices", "strategy",
                                                                              "num_nodes", "precision"))
        problems.append(f"Lightning refuses the trainer ({settings}): {str(cause).splitlines()[0]}")
    return problems
