"""Everything MLflow: the store, the run, its params, tags, status and artifacts.

triad creates the run itself (rather than letting Lightning's logger do it) so that
the run id, its name, tags and params exist before training starts, and so that
the run ends with the right status whatever happens.
"""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param
from omegaconf import DictConfig, OmegaConf

from src import PROJECT_ROOT, redact

try:
    import fcntl
except ImportError:  # Windows: no file locks; create the store before parallel jobs
    fcntl = None

# Groups whose choice names the run's design; each becomes a short param (model=mlp).
CHOICE_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "experiment", "sweep")
# Config sections that say where things go, not what was trained.
NOT_PARAMS = ("paths", "logger", "callbacks", "hydra")


# Keys that say how a run is saved or restarted, not what it trains: a resumed
# run may change them and still be the same experiment.
# Top-level keys that change how a run is kept, resumed or compared, not what it
# trains: runs differing only in these share a config hash.
NOT_TRAINING = ("ckpt_path", "checkpoint_every_n_steps", "compare", "skip_finished", "experiment_name", "log_model")
CONFIG_HASH_TAG, CHECKPOINT_DIR_TAG = "triad.config_hash", "triad.checkpoint_dir"


@contextmanager
def _store_lock(uri: str):
    """An exclusive lock next to a SQLite store (no-op for servers), so that
    parallel jobs create its tables and experiments one at a time."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file but not its folder
    if fcntl is None:
        yield
        return
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_store(uri: str) -> None:
    """Create the store's tables if missing; idempotent and safe to call from many
    processes at once (MLflow's own creation races: alembic migration errors)."""
    if not uri.startswith("sqlite:///"):
        return
    with _store_lock(uri):
        MlflowClient(uri).search_experiments(max_results=1)  # migrates a new file
        # Write-ahead logging: readers never wait for a writer, writers wait less.
        with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
            connection.execute("PRAGMA journal_mode=WAL")


def client_for(tracking_uri: str) -> MlflowClient:
    ensure_store(tracking_uri)
    return MlflowClient(tracking_uri)


def experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the named experiment, created (with its artifact root) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).resolve().as_uri()
    with _store_lock(client.tracking_uri):  # two jobs creating it at once: UNIQUE constraint
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
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
    return redact.entries(params)


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a run trains: equal for a resumed run and its original."""
    params = {k: v for k, v in flat_params(cfg).items() if k.split(".")[0] not in NOT_TRAINING}
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


def check_store(tracking_uri: str, key: str = "logger.tracking_uri", existing: bool = False) -> None:
    """Refuse, naming the store and the fix, a store that cannot take a run, before
    any work: a server that does not answer (MLflow's client retries for minutes), an
    SQLite file that is no database or a folder that is read-only, a database whose
    driver is not installed. existing=True: the store must be there already (reading
    runs from a new, empty one would only create it)."""
    from src.validate import ConfigError

    shown, problem = tracking_uri, None
    if tracking_uri.startswith(("http://", "https://")):
        problem = _server_problem(tracking_uri)
    elif tracking_uri.startswith("sqlite:///"):
        elsewhere = "or pass another --tracking-uri." if key.startswith("--") else ELSEWHERE
        problem = _sqlite_problem(Path(tracking_uri.removeprefix("sqlite:///")), existing, elsewhere)
    elif tracking_uri.split(":", 1)[0].split("+")[0] in DATABASES:
        shown, problem = _driver_problem(tracking_uri)
    if problem:
        raise ConfigError([f"{key}={shown}: {problem}"])


def _server_problem(tracking_uri: str, timeout: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as answer:
            answer.read()
    except (urllib.error.URLError, OSError) as error:
        return (f"no MLflow server answers there ({getattr(error, 'reason', error)}). Start it (README, "
                "'Team tracking server'), or point MLFLOW_TRACKING_URI / logger.tracking_uri at a reachable "
                "store; unset it for the local SQLite store.")
    return None


ELSEWHERE = "or set paths.mlruns_dir (or MLFLOW_TRACKING_URI) to another place for the store."


def _sqlite_problem(path: Path, existing: bool, elsewhere: str) -> str | None:
    """SQLite writes the file and, beside it, its journal: both need a writable folder."""
    if existing and not path.exists():
        return f"no store at {path} (nothing was recorded there). Point it at the store that holds the runs."
    folder = next(p for p in (path.parent, *path.parents) if p.exists())  # the store's, or where it will be
    try:
        with tempfile.TemporaryFile(dir=folder):  # tried, so that a read-only mount counts, for root too
            pass
    except OSError as error:
        return f"{folder} is not writable ({error.strerror}). Make it writable, {elsewhere}"
    if not path.exists():
        return None
    # Never open() the file itself: closing any descriptor of it drops the SQLite locks this
    # process holds on it (a sweep's parent run is open here), so SQLite's own reader is used.
    if not os.access(path, os.W_OK):
        return f"{path} is read-only. Make it writable, {elsewhere}"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("PRAGMA schema_version")  # reads the header: fails on any other file
    except sqlite3.DatabaseError as error:
        return f"{path} is not an SQLite database ({error}). Move that file away, {elsewhere}"
    return None


# The databases MLflow keeps runs in through SQLAlchemy (besides SQLite), and the
# pip names of drivers whose module is named otherwise.
DATABASES = ("postgresql", "mysql", "mssql")
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient"}


def _driver_problem(tracking_uri: str) -> tuple[str, str | None]:
    """(the URI without its password, whether SQLAlchemy's driver for it is missing):
    the same import SQLAlchemy makes when MLflow opens the store."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(tracking_uri)
        shown = url.render_as_string(hide_password=True)
        url.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError):
        return tracking_uri, None  # not a URI SQLAlchemy reads: MLflow's own message says why
    except ImportError as error:
        package = DRIVER_PACKAGES.get(error.name, error.name)
        return shown, (f"its database driver is not installed (no module {error.name!r}). Install it "
                       f"(pip install {package}), or use a sqlite:/// store or an http:// tracking server.")
    return shown, None


@dataclass
class Run:
    """Where a training records and checkpoints. id is None with logger=none;
    ckpt_path and recorded_steps are set when it resumes an unfinished run.
    `with run:` holds its writer lock (see claim) until the block ends."""

    client: MlflowClient | None
    id: str | None
    checkpoint_dir: str
    ckpt_path: str | None = None
    recorded_steps: dict[str, set[int]] = field(default_factory=dict)
    writer_lock: IO | None = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer_lock is not None:
            self.writer_lock.close()  # releases the lock


def claim(checkpoint_dir: str, run_id: str | None) -> IO | None:
    """Make this process the one writer of the run whose checkpoints go to
    checkpoint_dir: an exclusive lock on `<checkpoint_dir>.lock`, or a ConfigError
    naming the process that holds it. Two processes training one run would record
    every step twice and overwrite each other's last.ckpt.

    The kernel releases the lock when its process ends, kill -9 included, so a dead
    writer never blocks a resume. None on Windows (no fcntl): no check there.
    """
    if fcntl is None:
        return None
    path = Path(f"{checkpoint_dir}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # "a+", not "w": a refused claim must not erase the holder's pid
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        from src.validate import ConfigError

        if run_id is None:  # two new runs given one output folder (a fixed hydra.run.dir)
            problem = f"{checkpoint_dir} is in use by {holder}, training another run. Give each run its own hydra.run.dir."
        else:
            problem = (f"ckpt_path=last: run {run_id} is being trained by {holder} (it holds {path}). "
                       "Wait for it to end or stop it (Ctrl-C), then run this command again.")
        raise ConfigError([problem]) from None
    lock.truncate(0)
    lock.write(f"process {os.getpid()}")
    lock.flush()
    return lock


def resumable_run(client: MlflowClient, exp_id: str, cfg: DictConfig):
    """The most recent run of this experiment with the same config that did not finish."""
    runs = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{CONFIG_HASH_TAG}` = '{config_hash(cfg)}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def recorded_steps(client: MlflowClient, run) -> dict[str, set[int]]:
    """The steps recorded for each metric of the run (asynchronous logging may
    have written some steps and not others before a kill)."""
    return {key: {m.step for m in client.get_metric_history(run.info.run_id, key)} for key in run.data.metrics}


def start_run(
    cfg: DictConfig, choices: dict[str, str], overrides: list[str], extra_params: dict, extra_tags: dict,
    name: str | None = None,
) -> Run:
    """Create the run with its name, tags and params, or, with ckpt_path=last,
    reopen the latest unfinished run of the same config and find its last.ckpt."""
    checkpoint_dir = f"{cfg.paths.output_dir}/checkpoints"
    if not cfg.logger or not is_global_rank_zero():  # under DDP, rank 0 alone records
        return Run(None, None, checkpoint_dir, None if cfg.ckpt_path == "last" else cfg.ckpt_path)
    uri = cfg.logger.tracking_uri
    client = client_for(uri)
    artifact_location = cfg.logger.get("artifact_location") if uri.startswith("sqlite") else None
    exp_id = experiment_id(client, cfg.experiment_name, artifact_location)
    if cfg.ckpt_path == "last":
        previous = resumable_run(client, exp_id, cfg)
        if previous is not None:
            return _reopen(client, previous)
        print("ckpt_path=last: no unfinished run with this config; starting a new one.")
    writer_lock = claim(checkpoint_dir, None)  # before the run exists: a resume finds it claimed
    tags = {
        "mlflow.source.name": "src.train",
        "mlflow.source.type": "LOCAL",
        "triad.overrides": " ".join(redact.overrides(overrides)),
        CONFIG_HASH_TAG: config_hash(cfg),
        CHECKPOINT_DIR_TAG: str(Path(checkpoint_dir).resolve()),
        **git_tags(),
        **extra_tags,
    }
    run = client.create_run(exp_id, tags=redact.entries(tags), run_name=name or run_name(choices, cfg.seed))
    params = {g: str(choices[g]) for g in CHOICE_GROUPS if choices.get(g) is not None}
    params.update(flat_params(cfg))
    params.update(extra_params)
    entries = [Param(k, v) for k, v in redact.entries(params).items()]
    with run_status(client, run.info.run_id, finish=False):  # a failure here ends the run too
        for start in range(0, len(entries), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run.info.run_id, params=entries[start : start + 100])
    ckpt_path = None if cfg.ckpt_path == "last" else cfg.ckpt_path
    return Run(client, run.info.run_id, checkpoint_dir, ckpt_path, writer_lock=writer_lock)


def _reopen(client: MlflowClient, previous) -> Run:
    """The unfinished run, RUNNING again; its params stay as they are (MLflow
    refuses changed values) and its recorded steps are not logged twice."""
    run_id = previous.info.run_id
    checkpoint_dir = previous.data.tags[CHECKPOINT_DIR_TAG]
    writer_lock = claim(checkpoint_dir, run_id)  # refused before anything is recorded
    previous = client.get_run(run_id)  # as its last writer left it, if it wrote on after the search
    if previous.info.status == "FINISHED":
        if writer_lock is not None:
            writer_lock.close()
        from src.validate import ConfigError

        raise ConfigError([f"ckpt_path=last: run {run_id} finished while this command started; nothing to resume."])
    last = Path(checkpoint_dir) / "last.ckpt"
    ckpt_path = str(last) if last.exists() else None  # stopped before its first checkpoint
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, "triad.resumed_from", ckpt_path or "start")
    print(f"ckpt_path=last: resuming run {run_id} from {ckpt_path or 'the start'}")
    return Run(client, run_id, checkpoint_dir, ckpt_path, recorded_steps(client, previous), writer_lock)


def log_data(client: MlflowClient, run_id: str, name: str, datamodule) -> None:
    """Record the run's data set as MLflow dataset inputs, one per split (context
    train/val/test): name, digest of the tensors, shapes and a local source path
    (the user's file, else the module that made the data)."""
    import inspect

    import mlflow.data

    source = getattr(datamodule, "path", None) or inspect.getfile(type(datamodule))
    inputs = []
    for split, (x, y) in datamodule.splits.items():
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local file either way
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = mlflow.data.from_numpy(x.cpu().numpy(), source=str(Path(source).resolve()),
                                             targets=y.cpu().numpy(), name=name)
        tags = [InputTag("mlflow.data.context", split)]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    # Parallel jobs logging the same data set race in MLflow's check-then-insert
    # (UNIQUE constraint): one at a time, like creating the experiment.
    with _store_lock(client.tracking_uri):
        client.log_inputs(run_id, datasets=inputs)


@contextmanager
def uninterruptible():
    """Ctrl-C and SIGTERM wait until the block is done (a second Ctrl-C while a
    run records how it ended would otherwise leave it RUNNING)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def run_status(client: MlflowClient | None, run_id: str | None, finish: bool = True):
    """End the run FINISHED, FAILED (traceback logged as error.txt) or KILLED
    (Ctrl-C, SIGTERM, or Lightning's SystemExit after its graceful shutdown).
    finish=False leaves a run that succeeded RUNNING (for the part before training)."""
    if client is None:
        yield
        return
    status, error = "FINISHED", None
    try:
        yield
    except BaseException as caught:
        status = "KILLED" if isinstance(caught, (KeyboardInterrupt, SystemExit)) else "FAILED"
        error = caught
        raise
    finally:
        if error is not None or finish:
            with uninterruptible():
                _end(client, run_id, status, error)
            if status == "KILLED":
                print(f"Run {run_id} KILLED. To resume it, run the same command with ckpt_path=last.")


def _end(client: MlflowClient, run_id: str, status: str, error: BaseException | None) -> None:
    saved_to = None
    if error is not None:
        try:
            client.log_text(run_id, "".join(traceback.format_exception(error)), "error.txt")
            saved_to = _error_file(client, run_id)
        except Exception:
            pass  # the status matters more than the traceback
    client.set_terminated(run_id, status)
    if saved_to:
        setattr(error, RECORDED_IN, f"run {run_id} {status}; its traceback is in {saved_to}")


# The attribute that an error which ended a run gets once the run has recorded it.
RECORDED_IN = "triad_recorded_in"


def where_recorded(error: BaseException) -> str | None:
    """'run <id> FAILED; its traceback is in <error.txt>' for an error that a run
    recorded with its traceback; None otherwise (then the console is its only record)."""
    return getattr(error, RECORDED_IN, None)


def _error_file(client: MlflowClient, run_id: str) -> str:
    """Where the run's error.txt is: a local path when the artifacts are local files."""
    uri = f"{client.get_run(run_id).info.artifact_uri}/error.txt"
    return urllib.request.url2pathname(urllib.parse.urlparse(uri).path) if uri.startswith("file:") else uri


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    entries = [Metric(k, float(v), 0, step) for k, v in metrics.items()]
    client.log_batch(run_id, metrics=entries)


def log_results(client, run_id, cfg, overrides, checkpoint_path, objective, confusion, class_names) -> None:
    """The artifacts a finished run keeps: config, overrides, best checkpoint, plots."""
    from src import plots  # matplotlib only when there is something to draw

    client.log_text(run_id, redact.config_yaml(cfg), "config.yaml")
    client.log_text(run_id, "\n".join(redact.overrides(overrides)) + "\n", "overrides.txt")
    if checkpoint_path:
        client.log_artifact(run_id, checkpoint_path, "checkpoints")
    history = {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in dict.fromkeys(["train/loss", "val/loss", objective])
    }
    client.log_figure(run_id, plots.learning_curves(history, objective), "plots/learning_curves.png")
    if confusion is not None:
        client.log_figure(run_id, plots.confusion_matrix(confusion, class_names), "plots/confusion_matrix.png")


# What the logged model needs to be loaded elsewhere (src/ travels inside it). Given
# explicitly because MLflow's inference of requirements starts a slow subprocess.
MODEL_REQUIREMENTS = ("torch", "mlflow", "omegaconf")


def log_model(client: MlflowClient, run_id: str, net, description: dict, input_example) -> None:
    """Log the network as an MLflow model of the run, in the run's own experiment
    (src/logged_model.py), for mlflow.pyfunc.load_model."""
    import tempfile
    from importlib.metadata import version

    import mlflow

    from src import logged_model

    mlflow.set_tracking_uri(client.tracking_uri)  # MLflow writes models through the global client
    # A model is created in the active experiment (else MLflow's Default), not its run's.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    requirements = [f"{package}=={version(package)}" for package in MODEL_REQUIREMENTS]
    with tempfile.TemporaryDirectory() as folder:
        logged_model.log(run_id, net, description, input_example, Path(folder), requirements)
