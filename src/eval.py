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

from src import PROJECT_ROOT, gate, store
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
        from mlflow.exceptions import MlflowException

        client = MlflowClient(cfg.logger.tracking_uri)
        try:
            original = client.get_run(cfg.run_id)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise ConfigError([f"run_id={cfg.run_id!r}: no such run in {cfg.logger.tracking_uri}. Copy the id "
                               "from the line 'MLflow run <id> ...' a training prints, or from the MLflow UI."]) from None
        run_cfg = OmegaConf.load(client.download_artifacts(cfg.run_id, "config.yaml", folder))
        gate.check_recorded(run_cfg, f"runs:/{cfg.run_id}/config.yaml")
        ckpt_path = cfg.ckpt_path or client.download_artifacts(cfg.run_id, "checkpoints/best.ckpt", folder)
        return run_cfg, ckpt_path, original
    if not cfg.ckpt_path:
        raise ConfigError(["Say what to evaluate: run_id=<MLflow run id> or ckpt_path=<checkpoint file>."])
    config_file = Path(cfg.ckpt_path).resolve().parent.parent / ".hydra" / "config.yaml"
    if not config_file.exists():
        raise ConfigError([f"ckpt_path={cfg.ckpt_path}: no {config_file} with the run's config; use run_id=."])
    run_cfg = OmegaConf.load(config_file)
    gate.check_recorded(run_cfg, str(config_file))
    return run_cfg, cfg.ckpt_path, None


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
    # Misspelled options and keys, all at once, and Hydra's callbacks through the gate.
    if problems := override_problems(sys.argv[1:], PROJECT_ROOT / "conf", config_name="eval"):
        print(ConfigError(problems), file=sys.stderr)
        sys.exit(2)
    main()
