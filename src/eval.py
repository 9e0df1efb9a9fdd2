"""`python -m src.eval run_id=<id>`: rebuild a recorded model from its run's config
and best checkpoint, test it (on its own test split or another data option), and
record the result as a new MLflow run linked to the original.

    python -m src.eval run_id=<MLflow run id>
    python -m src.eval run_id=<id> data=iris          # another data option
    python -m src.eval ckpt_path=<path/to/best.ckpt>  # a checkpoint on disk
"""

import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from src import PROJECT_ROOT, gate, redact, store
from src.overrides import override_problems
from src.validate import ConfigError


def recorded(cfg: DictConfig, folder: str):
    """(the run's config, its checkpoint path, the original MLflow run or None).
    The config is read back from a store or a folder someone else may have
    written: it passes the gate before anything is built from it."""
    if cfg.run_id:
        from mlflow import MlflowClient

        if not store.tracked(cfg):
            raise ConfigError(["run_id needs logger=mlflow: the run is read from the tracking store."])
        client = MlflowClient(cfg.logger.tracking_uri)
        run_id = str(cfg.run_id)  # Hydra reads an id of digits alone as a number
        original = trained_run(client, run_id, cfg.logger.tracking_uri, ckpt_given=bool(cfg.ckpt_path))
        run_cfg = OmegaConf.load(client.download_artifacts(run_id, CONFIG, folder))
        gate.check_recorded(run_cfg, f"runs:/{run_id}/{CONFIG}")
        ckpt_path = cfg.ckpt_path or client.download_artifacts(run_id, BEST_CHECKPOINT, folder)
        return run_cfg, ckpt_path, original
    if not cfg.ckpt_path:
        raise ConfigError(["Say what to evaluate: run_id=<MLflow run id> or ckpt_path=<checkpoint file>."])
    config_file = Path(cfg.ckpt_path).resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_file.exists():
        raise ConfigError([f"ckpt_path={cfg.ckpt_path}: no {config_file} with the run's config; use run_id=."])
    run_cfg = OmegaConf.load(config_file)
    gate.check_recorded(run_cfg, str(config_file))
    return run_cfg, cfg.ckpt_path, None


# The artifacts of a training run that eval rebuilds its model from (src/record.py logs them).
CONFIG, BEST_CHECKPOINT = "config.yaml", "checkpoints/best.ckpt"
COPY_THE_ID = "Copy the id from the line 'MLflow run <id> ...' a training prints, or from the MLflow UI."


def trained_run(client, run_id: str, tracking_uri: str, ckpt_given: bool):
    """The MLflow run of that id, if it is a finished training with the artifacts eval
    reads (its checkpoint only where ckpt_path does not name another); else ConfigError
    saying what the run is and what to evaluate instead."""
    from mlflow.exceptions import MlflowException

    from src import record

    start = f"run_id={run_id!r}"
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ConfigError([f"{start}: no such run in {tracking_uri}. {COPY_THE_ID}"]) from None
        if error.error_code == "INVALID_PARAMETER_VALUE":
            raise ConfigError([f"{start}: not an MLflow run id (letters, digits, _ and -, like the 32 characters "
                               f"of a training's run id). {COPY_THE_ID}"]) from None
        raise
    tags = run.data.tags
    if tags.get(record.SWEEP) == "parent":
        query = f"tags.`{record.PARENT_RUN_ID}` = '{run_id}' and attributes.status = 'FINISHED'"
        child = client.search_runs([run.info.experiment_id], query, max_results=1)
        example = f"run_id={child[0].info.run_id}" if child else "run_id=<one of its runs>"
        raise ConfigError([f"{start} is a sweep's parent run: it holds the sweep's report, not a model. Evaluate one "
                           f"of its runs, e.g. {example} (python -m src.compare --sweep {run_id} compares them)."])
    if tags.get("mlflow.source.name") == "src.eval" or record.EVALUATED_RUN_ID in tags:
        if evaluated := tags.get(record.EVALUATED_RUN_ID):
            instead = f"evaluate the run it evaluated again: run_id={evaluated}"
        else:
            instead = f"evaluate its checkpoint again: ckpt_path={tags.get(record.EVALUATED_CHECKPOINT, '<file>')}"
        raise ConfigError([f"{start} is an evaluation (python -m src.eval), not a training: it holds test metrics, "
                           f"not a model; {instead}."])
    if run.info.status != "FINISHED" and not ckpt_given:
        why = {"RUNNING": "is still RUNNING (training now, or stopped by kill -9)",
               "KILLED": "was stopped (KILLED) before its training ended",
               "FAILED": "ended FAILED (its error.txt artifact says why)"}.get(run.info.status, f"is {run.info.status}")
        raise ConfigError([f"{start} {why}: it has no finished training to evaluate. Resume it to the end (its "
                           "command again, with ckpt_path=last), evaluate a FINISHED run, or name the checkpoint "
                           "to test: run_id=... ckpt_path=<file>."])
    logged = {a.path for a in client.list_artifacts(run_id)}
    logged |= {a.path for a in client.list_artifacts(run_id, "checkpoints")} if "checkpoints" in logged else set()
    missing = [path for path in (CONFIG, *(() if ckpt_given else (BEST_CHECKPOINT,))) if path not in logged]
    if missing:
        checkpoints = tags.get(record.CHECKPOINT_DIR)  # the run's own folder, which may still hold it
        on_disk = Path(checkpoints) / "best.ckpt" if checkpoints else None
        instead = (f"its checkpoint is still on disk: python -m src.eval ckpt_path={on_disk}"
                   if on_disk and on_disk.is_file() else "evaluate another run")
        raise ConfigError([f"{start}: its artifacts hold no {' and no '.join(missing)} (in {run.info.artifact_uri}: "
                           f"deleted, or never logged), which eval rebuilds the model from; {instead}."])
    return run


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the recorded model; record and return its test metrics."""
    import warnings

    from src import build, console, preflight

    if store.tracked(cfg):
        store.check(cfg.logger.tracking_uri, existing=bool(cfg.run_id))
    console.quiet_libraries()
    # Testing a checkpoint needs none of the callbacks that wrote it; Lightning says so each time.
    warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create")

    with tempfile.TemporaryDirectory() as folder:
        run_cfg, ckpt_path, original = recorded(cfg, folder)
        if cfg.get("data"):
            run_cfg.data = cfg.data
        datamodule, module = build.experiment(run_cfg, {}, [])
        if problems := preflight.checkpoint_problems(str(ckpt_path), module, {}):
            raise ConfigError(problems)
        # One device, so that every test example counts once (DDP pads its shards).
        trainer = gate.instantiate(
            run_cfg.trainer, accelerator=cfg.accelerator, devices=1, num_nodes=1, strategy="auto",
            logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False,
        )
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True)[0]
    print("\n".join(f"{name}: {value:.6f}" for name, value in sorted(results.items())))
    if store.tracked(cfg):
        record(cfg, run_cfg, original, str(ckpt_path), results)
    return results


def record(cfg: DictConfig, run_cfg: DictConfig, original, ckpt_path: str, results: dict) -> None:
    """A new run in the original's experiment: the evaluated config as params, the
    test metrics, and tags naming what was evaluated."""
    from mlflow import MlflowClient

    from src import record
    from src.identity import CHOICE_GROUPS

    client = MlflowClient(cfg.logger.tracking_uri)
    run_cfg.logger, run_cfg.paths = cfg.logger, cfg.paths  # recorded where this evaluation runs
    choices = {g: original.data.params[g] for g in CHOICE_GROUPS if original and g in original.data.params}
    if cfg.get("data"):
        choices["data"] = HydraConfig.get().runtime.choices["data"]
    if cfg.experiment_name:
        run_cfg.experiment_name = cfg.experiment_name
    elif original is not None:
        run_cfg.experiment_name = client.get_experiment(original.info.experiment_id).name
    tags = {"mlflow.source.name": "src.eval", record.EVALUATED_CHECKPOINT: ckpt_path}
    if original is not None:
        tags[record.EVALUATED_RUN_ID] = original.info.run_id
    name = f"eval-{original.info.run_name}" if original is not None else f"eval-{Path(ckpt_path).stem}"
    overrides = list(HydraConfig.get().overrides.task)
    with record.open_run(run_cfg, choices, overrides, {}, tags, name=name) as run:
        run.log_metrics(results, step=0)
        run.log_config(run_cfg, overrides)
    print(f"Recorded as MLflow run {run.id} at {cfg.logger.tracking_uri}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ConfigError as error:
        print(error, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    redact.mask_output(sys.argv[1:])  # every line printed or logged from here on, Hydra's too
    # Misspelled options and keys, all at once, and Hydra's callbacks through the gate.
    if problems := override_problems(sys.argv[1:], PROJECT_ROOT / "conf", config_name="eval"):
        print(ConfigError(problems), file=sys.stderr)
        sys.exit(2)
    main()
