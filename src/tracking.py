"""Everything MLflow: the store, the run, its params, tags, status and artifacts.

triad creates the run itself (rather than letting Lightning's logger do it) so that
the run id, its name, tags and params exist before training starts, and so that
the run ends with the right status whatever happens.
"""

import re
import subprocess
import traceback
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param
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
    return MlflowClient(tracking_uri)


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


def start_run(
    cfg: DictConfig, choices: dict[str, str], overrides: list[str], extra_params: dict, extra_tags: dict
) -> tuple[MlflowClient, str]:
    """Create the run with its name, tags and params; return (client, run id)."""
    uri = cfg.logger.tracking_uri
    client = client_for(uri)
    artifact_location = cfg.logger.get("artifact_location") if uri.startswith("sqlite") else None
    exp_id = experiment_id(client, cfg.experiment_name, artifact_location)
    tags = {
        "mlflow.source.name": "src.train",
        "mlflow.source.type": "LOCAL",
        "triad.overrides": " ".join(o for o in overrides if not is_secret(o.split("=")[0])),
        **git_tags(),
        **extra_tags,
    }
    run = client.create_run(exp_id, tags=tags, run_name=run_name(choices, cfg.seed))
    params = {g: str(choices[g]) for g in CHOICE_GROUPS if choices.get(g) is not None}
    params.update(flat_params(cfg))
    params.update({k: str(v) for k, v in extra_params.items()})
    entries = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(entries), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run.info.run_id, params=entries[start : start + 100])
    return client, run.info.run_id


def log_data(client: MlflowClient, run_id: str, name: str, datamodule) -> None:
    """Record the run's data set as MLflow dataset inputs, one per split (context
    train/val/test): name, digest of the tensors, shapes and a local source path
    (the user's file, else the module that made the data)."""
    import inspect

    import mlflow.data

    source = getattr(datamodule, "path", None) or inspect.getfile(type(datamodule))
    inputs = []
    for split, (x, y) in datamodule.splits.items():
        dataset = mlflow.data.from_numpy(x.cpu().numpy(), source=str(Path(source).resolve()),
                                         targets=y.cpu().numpy(), name=name)
        tags = [InputTag("mlflow.data.context", split)]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    client.log_inputs(run_id, datasets=inputs)


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
