"""What identifies a run: the params it is recorded with, the hash of what it
trains, its name, the code it came from, and whether this process records it.
"""

import hashlib
import json
import os
import subprocess

from omegaconf import DictConfig

from src import PROJECT_ROOT, redact

# Groups whose choice names the run's design; each becomes a short param (model=mlp).
CHOICE_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "experiment", "sweep")
# Config sections that say where things go, not what was trained.
NOT_PARAMS = ("paths", "logger", "callbacks", "hydra")
# Keys that are plumbing, not settings: the class an option builds is named by its choice
# param (model=mlp); config.yaml keeps them. The MLflow UI's compare view picks the first
# params in sorted order that differ, and `model._target_` would come before the rest.
PLUMBING = "_target_"
# Top-level keys that change how a run is kept, resumed or compared, not what it
# trains: runs differing only in these share a config hash.
NOT_TRAINING = ("ckpt_path", "checkpoint_every_n_steps", "compare", "skip_finished", "seeds_together", "experiment_name",
                "log_model")


def params_of(choices: dict[str, str]) -> dict[str, str]:
    """The choice of each group that names the run's design, as params (model=mlp)."""
    return {group: str(choices[group]) for group in CHOICE_GROUPS if choices.get(group) is not None}


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys (optimizer.lr -> "0.001"), without the
    sections that only say where things go, the plumbing (`_target_`), and anything
    secret-looking."""
    return {k: v for k, v in _flat(cfg).items() if k.rsplit(".", 1)[-1] != PLUMBING}


def _flat(cfg: DictConfig) -> dict[str, str]:
    """flat_params with the `_target_` keys, which the config hash has always read."""
    resolved = redact.config(cfg)
    params: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key != "_partial_":
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            params[prefix] = str(value)

    walk("", {k: v for k, v in resolved.items() if k not in NOT_PARAMS})
    return redact.entries(params)


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a run trains: equal for a resumed run and its original (and the
    same as before `_target_` left the params: earlier runs are still found)."""
    params = {k: v for k, v in _flat(cfg).items() if k.split(".")[0] not in NOT_TRAINING}
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def run_name(choices: dict[str, str], seed: int) -> str:
    """Short and comparable across a sweep, e.g. mlp-cross_entropy-adam-s1."""
    return f"{choices.get('model')}-{choices.get('loss')}-{choices.get('optimizer')}-s{seed}"


def git_tags() -> dict[str, str]:
    """The commit the code came from and whether the working tree had changes."""
    def git(*args):
        result = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"mlflow.source.git.commit": commit, "triad.git_dirty": str(dirty).lower()}


def is_global_rank_zero() -> bool:
    """Whether this process is rank 0 of its run, from what launchers put in the
    environment before any process group exists: torchrun's RANK, SLURM's
    SLURM_PROCID, or Lightning's LOCAL_RANK/NODE_RANK for the processes its `ddp`
    starts by re-running the command. A process with none of them is rank 0."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return all(int(os.environ.get(name, 0)) == 0 for name in ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK"))
