"""Everything MLflow: the store, the run, its params, tags, status and artifacts.

triad creates the run itself (rather than letting Lightning's logger do it) so that
the run id, its name, tags and params exist before training starts, and so that
the run ends with the right status whatever happens.
"""

import os
import re
import subprocess
import traceback
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from omegaconf import DictConfig, OmegaConf

from src import PROJECT_ROOT

# Groups whose choice names the run's design; each becomes a short param (model=mlp).
CHOICE_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "experiment", "sweep")
# Config sections that say where things go, not what was trained.
NOT_PARAMS = ("paths", "logger", "callbacks", "hydra")
# A key or environment name that looks like a credential is never recorded.
SECRET = re.compile(r"(^|[._/-])(TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|KEY|CREDENTIALS?)($|[._/-])", re.I)


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name))


def client_for(tracking_uri: str) -> MlflowClient:
    if tracking_uri.startswith("sqlite:///"):
        # SQLite creates the file but not its folder.
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    with store_lock(tracking_uri):  # the client creates a new store's tables at once
        return MlflowClient(tracking_uri)


def store_lock(tracking_uri: str):
    """A lock beside a SQLite store. Parallel jobs (joblib, submitit) that create a
    new store or experiment at the same moment race in MLflow's table migration
    and its unique constraint; under the lock the first creates, the rest find."""
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock  # comes with torch

    return FileLock(tracking_uri.removeprefix("sqlite:///") + ".lock")


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the named experiment, created (with its artifact root) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as dotted keys (optimizer.lr -> "0.001"), without the
    sections that only say where things go, and without anything secret-looking."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    params: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key != "_partial_":
                    walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            params[prefix] = str(value)

    walk("", {k: v for k, v in resolved.items() if k not in NOT_PARAMS})
    return {k: v for k, v in params.items() if not is_secret(k)}


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


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail at once, naming the URI, when a tracking server does not answer: MLflow's
    own client retries for minutes, and only after the data is loaded."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    from src.validate import ConfigError

    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError([
            f"logger.tracking_uri={tracking_uri}: no MLflow server answers there ({reason}). "
            "Start it (README, 'Team tracking server'), or point MLFLOW_TRACKING_URI / "
            "logger.tracking_uri at a reachable store; unset it for the local SQLite store."
        ]) from None


def start_run(
    cfg: DictConfig, choices: dict[str, str], overrides: list[str], extra_params: dict, extra_tags: dict,
    name: str | None = None,
) -> tuple[MlflowClient | None, str | None]:
    """Create the run with its name, tags and params; return (client, run id).

    Only global rank 0 creates it: the other processes of a distributed run get
    (None, None) and record nothing (Lightning's logger writes from rank 0 only).
    """
    if not is_global_rank_zero():
        return None, None
    uri = cfg.logger.tracking_uri
    client = client_for(uri)
    artifact_location = cfg.logger.get("artifact_location") if uri.startswith("sqlite") else None
    with store_lock(uri):
        exp_id = experiment_id(client, cfg.experiment_name, artifact_location)
    tags = {
        "mlflow.source.name": "src.train",
        "mlflow.source.type": "LOCAL",
        "triad.overrides": " ".join(o for o in overrides if not is_secret(o.split("=")[0])),
        **git_tags(),
        **extra_tags,
    }
    run = client.create_run(exp_id, tags=tags, run_name=name or run_name(choices, cfg.seed))
    params = {g: str(choices[g]) for g in CHOICE_GROUPS if choices.get(g) is not None}
    params.update(flat_params(cfg))
    params.update({k: str(v) for k, v in extra_params.items()})
    entries = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(entries), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=entries[start : start + 100])
    return client, run.info.run_id


@contextmanager
def run_status(client: MlflowClient | None, run_id: str | None):
    """End the run FINISHED, FAILED (traceback logged as error.txt) or KILLED."""
    try:
        yield
    except BaseException as error:
        if client is not None:
            mlflow.flush_async_logging()
            # Lightning turns Ctrl-C into SystemExit after its graceful shutdown.
            status = "KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED"
            client.log_text(run_id, "".join(traceback.format_exception(error)), "error.txt")
            client.set_terminated(run_id, status)
        raise
    else:
        if client is not None:
            mlflow.flush_async_logging()
            client.set_terminated(run_id, "FINISHED")


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    entries = [Metric(k, float(v), 0, step) for k, v in metrics.items()]
    client.log_batch(run_id, metrics=entries)


def log_results(client, run_id, cfg, overrides, checkpoint_path, objective, confusion, class_names) -> None:
    """The artifacts a finished run keeps: config, overrides, best checkpoint, plots."""
    from src import plots  # matplotlib only when there is something to draw

    mlflow.flush_async_logging()  # the learning curves are read back from the store
    client.log_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    client.log_text(run_id, "\n".join(overrides) + "\n", "overrides.txt")
    if checkpoint_path:
        client.log_artifact(run_id, checkpoint_path, "checkpoints")
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in dict.fromkeys(["train/loss", "val/loss", objective])
    }
    client.log_figure(run_id, plots.learning_curves(history, objective), "plots/learning_curves.png")
    if confusion is not None:
        client.log_figure(run_id, plots.confusion_matrix(confusion, class_names), "plots/confusion_matrix.png")


# What the logged model needs to be loaded elsewhere. Given explicitly because
# MLflow's inference of requirements starts a slow subprocess.
MODEL_REQUIREMENTS = ("torch", "mlflow")


def log_model(tracking_uri: str, run_id: str, net, input_example) -> None:
    """Log the network as an MLflow model (PyTorch flavour, signature inferred from
    the input example), linked from the run, for mlflow.pyfunc.load_model."""
    from importlib.metadata import version

    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri)  # log_model writes through the global client
    requirements = [f"{package}=={version(package)}" for package in MODEL_REQUIREMENTS]
    mlflow.pytorch.log_model(
        net.cpu().eval(), name="model", run_id=run_id, input_example=input_example,
        pip_requirements=requirements,
    )
