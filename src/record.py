"""The run record: the MLflow run of one training, opened (or reopened by
ckpt_path=last, or reused from an earlier sweep), given its data set, metrics,
results and model, and ended with the status the training had.

triad creates the run itself, rather than letting Lightning's logger do it, so
that its id, name, tags and params exist before training starts, and so that it
ends with the right status whatever happens. With logger=none, or in a DDP process
other than rank 0, the record is a NullRecord, which records nothing.
"""

import os
import sys
import time
import traceback
import urllib.parse
import urllib.request
from pathlib import Path
from typing import IO

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, OmegaConf

from src import redact, store
from src.identity import (
    config_hash,
    flat_params,
    git_tags,
    is_global_rank_zero,
    params_of,
    run_name,
)
from src.locks import claim, store_lock, uninterruptible

# The tags triad writes (MLflow's own, mlflow.*, are named where they are set).
CONFIG_HASH = "triad.config_hash"  # what the run trains: equal for a resume and a re-run
CHECKPOINT_DIR = "triad.checkpoint_dir"
OVERRIDES = "triad.overrides"
OBJECTIVE, OBJECTIVE_MODE, TASK = "triad.objective", "triad.objective_mode", "triad.task"
RESUMED_FROM, REUSED_FROM = "triad.resumed_from", "triad.reused_from"
LOG_MODEL_ERROR = "triad.log_model_error"
SWEEP, SWEEP_ID, SWEEP_DIR, JOB_NUM = "triad.sweep", "triad.sweep_id", "triad.sweep_dir", "triad.job_num"
# An Optuna search's job: its trial's number; and, on a run the pruner stopped (KILLED), the epochs it trained.
TRIAL, PRUNED = "triad.trial", "triad.pruned"
VERDICTS = "triad.verdicts"  # each pair judged alone, at compare.alpha
VERDICTS_FAMILY = "triad.verdicts_holm"  # the same pairs under Holm's correction across the sweep's pairs
VERDICT_RULE = "triad.verdict_rule"  # what a verdict means: the test, the level, the effect, the control
# On each run of a sweep, by its report: the choice it stands for ("model=mlp"), to group by in the UI.
CHOICE = "triad.choice"
SEQUENTIAL_VERDICTS = "triad.sequential_verdicts"  # a compare.until_decided sweep's (src/sequential.py)
EVALUATED_RUN_ID, EVALUATED_CHECKPOINT = "triad.evaluated_run_id", "triad.evaluated_checkpoint"
PARENT_RUN_ID = "mlflow.parentRunId"
# Carries a sweep's parent run id to its jobs, whatever process runs them (src/sweep.py).
SWEEP_PARENT_ENV = "TRIAD_SWEEP_PARENT"
# The attribute an error that ended a run gets once the run has kept its traceback.
RECORDED_IN = "triad_recorded_in"


def log_params(client: MlflowClient, run_id: str, params: dict) -> None:
    """Params without secrets, in batches of 100 (MLflow's limit per call)."""
    entries = [Param(k, v) for k, v in redact.entries(params).items()]
    for start in range(0, len(entries), 100):
        client.log_batch(run_id, params=entries[start : start + 100])


def sweep_tags() -> dict[str, str]:
    """In a sweep's job: its parent (the sweep), the sweep's id and the job's number."""
    from hydra.core.hydra_config import HydraConfig

    parent = os.environ.get(SWEEP_PARENT_ENV)
    if not parent or not HydraConfig.initialized() or HydraConfig.get().mode.name != "MULTIRUN":
        return {}
    trial = OmegaConf.select(HydraConfig.get().sweeper, "trial", default=None)  # src/trial.py
    return {PARENT_RUN_ID: parent, SWEEP_ID: parent, JOB_NUM: str(HydraConfig.get().job.num),
            **({TRIAL: str(trial)} if trial is not None else {})}


class NullRecord:
    """The record of a run that is not recorded (logger=none, a DDP rank other than 0):
    it keeps where the checkpoints go, and every call records nothing."""

    id = None

    def __init__(self, checkpoint_dir: str, ckpt_path: str | None):
        self.checkpoint_dir, self.ckpt_path, self.recorded_steps = checkpoint_dir, ckpt_path, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> bool:
        return False

    def logger(self, logger_cfg):
        """The Lightning loggers of a run that MLflow does not record (logger=csv,
        tensorboard), else False (Lightning's Trainer(logger=False))."""
        from src.gate import instantiate

        return [instantiate(c) for c in store.loggers_beside(logger_cfg)[1]] or False

    def log_data(self, name: str, datamodule) -> None: ...
    def log_metrics(self, metrics: dict, step: int) -> None: ...
    def log_config(self, cfg: DictConfig, overrides: list[str]) -> None: ...
    def log_results(self, best_path, objective, confusion, class_names) -> None: ...
    def log_model(self, module, best_path: str, datamodule, cfg: DictConfig) -> None: ...
    def log_folder(self, folder: str | None, artifact_path: str) -> None: ...


class Record(NullRecord):
    """An MLflow run that this process writes, and alone (see claim). `with record:`
    ends it FINISHED, FAILED (the traceback kept as error.txt) or KILLED (Ctrl-C,
    SIGTERM), and lets the next writer in."""

    def __init__(self, client: MlflowClient, run_id: str, checkpoint_dir: str, ckpt_path: str | None = None,
                 recorded_steps: dict | None = None, writer_lock: IO | None = None):
        super().__init__(checkpoint_dir, ckpt_path)
        self.client, self.id, self.writer_lock = client, run_id, writer_lock
        self.recorded_steps = recorded_steps or {}

    def __exit__(self, kind, error, trace) -> bool:
        """The pruner's stop (src/trial.py: Pruned) ends the run KILLED with the tag triad.pruned."""
        pruned = getattr(error, "pruned_epoch", None)
        stopped = pruned is not None or isinstance(error, KeyboardInterrupt | SystemExit)
        status = "FINISHED" if error is None else "KILLED" if stopped else "FAILED"
        try:
            if not self._server_back(error, status):
                return False
            with uninterruptible():
                if pruned is not None:
                    self.client.set_tag(self.id, PRUNED, str(pruned))
                    error = None  # no traceback to keep: the search decided it
                try:
                    self._end(status, error)
                except Exception as failure:  # a full store: the error that ended the training is the news
                    if store.lost_connection(failure, self.client.tracking_uri):
                        raise  # src/train.py says the server did not answer
                    why = f"{type(failure).__name__}: {(str(failure).strip() or '-').splitlines()[0]}"
                    print(f"Run {self.id} stays RUNNING: its store could not record it {status} ({why}).",
                          file=sys.stderr)
                    if error is None:
                        raise
                    return False
        finally:
            if self.writer_lock is not None:
                self.writer_lock.close()  # releases the lock
        if pruned is not None:
            print(f"Run {self.id} KILLED: pruned after epoch {pruned}.")
        elif status == "KILLED":
            print(f"Run {self.id} KILLED. To resume it, run the same command with ckpt_path=last.")
        return False

    def _server_back(self, error: BaseException | None, status: str) -> bool:
        """Whether the run can be ended. One that lost its tracking server waits for it (up to
        store.SERVER_WAIT_S; Ctrl-C stops waiting) to be ended there, not left RUNNING. A
        sweep's job does not wait: its sweep ends the runs its jobs could not."""
        uri = self.client.tracking_uri
        if error is None or os.environ.get(SWEEP_PARENT_ENV) or not (reason := store.lost_connection(error, uri)):
            return True
        if store.server_unreachable(uri) is None:  # back already
            return True
        print(f"The tracking server {uri} did not answer ({reason}): waiting up to {store.SERVER_WAIT_S // 60} min "
              f"for it, to end run {self.id} {status} there (Ctrl-C stops waiting).", file=sys.stderr)
        try:
            still = store.wait_for_server(uri, store.SERVER_WAIT_S)
        except KeyboardInterrupt:
            still = "Ctrl-C"
        if still:
            print(f"Run {self.id} stays RUNNING in {uri} ({still}). Its checkpoints are in {self.checkpoint_dir}: "
                  "once the server is back, the same command with ckpt_path=last resumes it.", file=sys.stderr)
        return still is None

    def _end(self, status: str, error: BaseException | None) -> None:
        saved_to = None
        if error is not None:
            try:
                self.client.log_text(self.id, redact.text("".join(traceback.format_exception(error))), "error.txt")
                uri = f"{self.client.get_run(self.id).info.artifact_uri}/error.txt"
                saved_to = urllib.request.url2pathname(urllib.parse.urlparse(uri).path) if uri.startswith("file:") else uri
            except Exception:
                pass  # the status matters more than the traceback
        self.client.set_terminated(self.id, status)
        if saved_to:
            setattr(error, RECORDED_IN, f"run {self.id} {status}; its traceback is in {saved_to}")

    def logger(self, logger_cfg):
        """Lightning's logger for this run (src/recovery.py: MLFlowLogger), which skips
        the steps a resumed run already recorded; first, before any logger beside it
        (logger=mlflow_tensorboard): Lightning's `trainer.logger` is the first."""
        from src.gate import instantiate

        mlflow_cfg, beside = store.loggers_beside(logger_cfg)
        mlflow_logger = instantiate(mlflow_cfg, run_id=self.id, recorded_steps=self.recorded_steps)
        return [mlflow_logger, *(instantiate(c) for c in beside)] if beside else mlflow_logger

    def log_data(self, name: str, datamodule) -> None:
        """The run's data set as MLflow dataset inputs, one per split (context
        train/val/test): name, digest, shapes and a local source path (the user's
        file, else the module that made the data)."""
        import inspect
        import warnings

        import mlflow.data
        from mlflow.entities import DatasetInput, InputTag

        from src.internals import dataset_entity

        source = str(Path(getattr(datamodule, "path", None) or inspect.getfile(type(datamodule))).resolve())
        inputs = []
        for split, (x, y) in datamodule.splits.items():
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": a local file either way
                warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
                dataset = mlflow.data.from_numpy(x.cpu().numpy(), source=source, targets=y.cpu().numpy(), name=name)
            inputs.append(DatasetInput(dataset_entity(dataset), tags=[InputTag("mlflow.data.context", split)]))
        # Parallel jobs logging one data set race in MLflow's check-then-insert (UNIQUE constraint):
        # a lock for a SQLite store; on a server, the job that lost logs again and finds the data set.
        with store_lock(self.client.tracking_uri):
            try:
                self.client.log_inputs(self.id, datasets=inputs)
            except MlflowException as error:
                if not store.lost_a_race(error):
                    raise
                self.client.log_inputs(self.id, datasets=inputs)

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.client.log_batch(self.id, metrics=[Metric(k, float(v), 0, step) for k, v in metrics.items()])

    def log_config(self, cfg: DictConfig, overrides: list[str]) -> None:
        """config.yaml (resolved) and overrides.txt, secrets masked."""
        self.client.log_text(self.id, redact.config_yaml(cfg), "config.yaml")
        self.client.log_text(self.id, "\n".join(redact.overrides(overrides)) + "\n", "overrides.txt")

    def log_folder(self, folder: str | None, artifact_path: str) -> None:
        """What the run wrote beside MLflow (the profiler's reports, TensorBoard's events,
        metrics.csv) as its artifacts: the run keeps them wherever it is opened."""
        if folder and Path(folder).is_dir():
            self.client.log_artifacts(self.id, str(folder), artifact_path)

    def log_results(self, best_path: str | None, objective: str, confusion, class_names) -> None:
        """The best checkpoint, the learning curves and, for classifiers, the confusion matrix."""
        from src import plots  # matplotlib only when there is something to draw

        if best_path:
            self.client.log_artifact(self.id, best_path, "checkpoints")
        history = {key: [(m.step, m.value) for m in self.client.get_metric_history(self.id, key)]
                   for key in dict.fromkeys(["train/loss", "val/loss", objective])}
        self.client.log_figure(self.id, plots.learning_curves(history, objective), "plots/learning_curves.png")
        if confusion is not None:
            self.client.log_figure(self.id, plots.confusion_matrix(confusion, class_names), "plots/confusion_matrix.png")

    def log_model(self, module, best_path: str, datamodule, cfg: DictConfig) -> None:
        """The best checkpoint's network as the run's MLflow model (src/logged_model.py),
        five test inputs as its example; its cost as time/log_model_s. The weights are
        loaded here: after ddp_spawn this process holds the last epoch's. A model that
        cannot be logged leaves the run as it is, with a warning and the reason in a tag."""
        import sys

        import torch

        from src import logged_model

        module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
        started = time.perf_counter()
        try:
            logged_model.log(self.client, self.id, module.net, cfg, datamodule)
        except Exception as error:  # the run trained and tested: keep it FINISHED
            reason = redact.text(f"{type(error).__name__}: {error}".splitlines()[0][:500])
            self.client.set_tag(self.id, LOG_MODEL_ERROR, reason)
            print(f"WARNING: the MLflow model was not logged ({reason}); the checkpoint is in the run.", file=sys.stderr)
            return
        self.log_metrics({"time/log_model_s": time.perf_counter() - started}, step=0)


def where_recorded(error: BaseException) -> str | None:
    """'run <id> FAILED; its traceback is in <error.txt>' for an error that a run
    recorded with its traceback; None otherwise (then the console is its only record)."""
    return getattr(error, RECORDED_IN, None)


def open_run(cfg: DictConfig, choices: dict[str, str], overrides: list[str], params: dict, tags: dict,
             name: str | None = None) -> NullRecord:
    """A new run with its name, tags and params; with ckpt_path=last, the latest
    unfinished run of the same config, reopened to go on from its last.ckpt."""
    checkpoint_dir = f"{cfg.paths.output_dir}/checkpoints"
    ckpt_path = None if cfg.ckpt_path == "last" else cfg.ckpt_path
    if not store.tracked(cfg) or not is_global_rank_zero():  # under DDP, rank 0 alone records
        return NullRecord(checkpoint_dir, ckpt_path)
    client = store.client_for(cfg.logger.tracking_uri)
    experiment_id = store.experiment_id(client, cfg.experiment_name, store.artifact_location(cfg.logger))
    if cfg.ckpt_path == "last":
        query = f"tags.`{CONFIG_HASH}` = '{config_hash(cfg)}' and attributes.status != 'FINISHED'"
        unfinished = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
        if unfinished:
            return _reopen(client, unfinished[0].info.run_id)
        print("ckpt_path=last: no unfinished run with this config; starting a new one.")
    writer_lock = claim(checkpoint_dir, None)  # before the run exists: a resume finds it claimed
    tags = {"mlflow.source.name": "src.train", "mlflow.source.type": "LOCAL", OVERRIDES: " ".join(redact.overrides(overrides)),
            CONFIG_HASH: config_hash(cfg), CHECKPOINT_DIR: str(Path(checkpoint_dir).resolve()),
            **git_tags(), **sweep_tags(), **tags}
    run = client.create_run(experiment_id, tags=redact.entries(tags), run_name=name or run_name(choices, cfg.seed))
    record = Record(client, run.info.run_id, checkpoint_dir, ckpt_path, writer_lock=writer_lock)
    try:
        log_params(client, record.id, {**params_of(choices), **flat_params(cfg), **params})
    except BaseException as error:
        record.__exit__(type(error), error, None)  # the run ends FAILED (or KILLED), not RUNNING
        raise
    return record


def _reopen(client: MlflowClient, run_id: str) -> Record:
    """The unfinished run, RUNNING again; its params stay as they are (MLflow refuses
    changed values) and the steps it recorded are not logged twice."""
    from src.validate import ConfigError

    checkpoint_dir = client.get_run(run_id).data.tags[CHECKPOINT_DIR]
    writer_lock = claim(checkpoint_dir, run_id)  # refused before anything is recorded
    previous = client.get_run(run_id)  # as its last writer left it, if it wrote on after the search
    if previous.info.status == "FINISHED":
        if writer_lock is not None:
            writer_lock.close()
        raise ConfigError([f"ckpt_path=last: run {run_id} finished while this command started; nothing to resume."])
    last = Path(checkpoint_dir) / "last.ckpt"
    ckpt_path = str(last) if last.exists() else None  # stopped before its first checkpoint
    client.update_run(run_id, status="RUNNING")
    client.set_tag(run_id, RESUMED_FROM, ckpt_path or "start")
    print(f"ckpt_path=last: resuming run {run_id} from {ckpt_path or 'the start'}")
    recorded = {key: {m.step for m in client.get_metric_history(run_id, key)} for key in previous.data.metrics}
    return Record(client, run_id, checkpoint_dir, ckpt_path, recorded, writer_lock)


def reused_result(cfg: DictConfig) -> float | None:
    """In a sweep: if the experiment holds a FINISHED run of this config (trained by an
    earlier, perhaps interrupted, sweep), record a child of this sweep that points to it
    (tag triad.reused_from, the same params and final metrics) and return its best
    objective; else None. The earlier sweep keeps its own record untouched."""
    client = store.client_for(cfg.logger.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.experiment_name)
    if experiment is None:
        return None
    query = f"tags.`{CONFIG_HASH}` = '{config_hash(cfg)}' and attributes.status = 'FINISHED'"
    found = client.search_runs([experiment.experiment_id], query, order_by=["attributes.start_time DESC"])
    originals = [r for r in found if REUSED_FROM not in r.data.tags]
    if not originals:
        return None
    twin = originals[0]
    kept = {k: v for k, v in twin.data.tags.items() if not k.startswith(("mlflow.", SWEEP_ID, JOB_NUM))}
    tags = {**kept, **sweep_tags(), REUSED_FROM: twin.info.run_id, "mlflow.source.name": "src.train"}
    run = client.create_run(experiment.experiment_id, run_name=twin.info.run_name, tags=redact.entries(tags))
    log_params(client, run.info.run_id, twin.data.params)  # redacted again: the twin may predate a secret key
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, run.info.start_time, 0) for k, v in twin.data.metrics.items()])
    client.set_terminated(run.info.run_id, "FINISHED")
    print(f"Skipped: run {twin.info.run_id} already trained this config; recorded as {run.info.run_id}")
    return twin.data.metrics.get(f"{twin.data.tags.get(OBJECTIVE)}_best")
