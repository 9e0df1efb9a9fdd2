"""What a run prints: the composed config at the start, a progress bar, the results
and how to open them at the end; and nothing else by default (quiet_libraries)."""

import logging
import warnings

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from src import redact

console = Console()
SHOWN_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer")


def quiet_libraries() -> None:
    """Silence what the libraries print that is no news to a user; warnings about
    the user's own config, data or run still print."""
    import pytorch_lightning  # noqa: F401  sets its loggers to INFO when first imported: import it first

    # Lightning's INFO lines: "GPU available: False", tips, "`Trainer.fit` stopped", checkpoint restores.
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow logs a database error with its traceback, then raises it (a full disk: one per write):
    # whoever catches it reports it once.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    # Lightning 2.6.6 uses torch 2.13's deprecated LeafSpec; nothing a user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    # Small data sets have fewer batches per epoch than log_every_n_steps; the steps
    # count on across epochs, so train/loss is still logged every n steps.
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging interval")
    # overfit_batches: triad's loaders stop shuffling themselves (src/data/base.py); Lightning
    # warns of any sampler that is not its SequentialSampler, the validation one's too.
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled \w+ dataloader shuffling")
    # Where Slurm is installed but this is no Slurm job (a login node, a workstation with sbatch).
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")


def print_config(cfg: DictConfig, choices: dict[str, str]) -> None:
    """The composed config, resolved, its secrets masked (src/redact.py)."""
    picked = "  ".join(f"[bold]{g}[/]={choices.get(g)}" for g in SHOWN_GROUPS)
    resolved = redact.config(cfg)
    yaml = OmegaConf.to_yaml({k: v for k, v in resolved.items() if k not in ("paths", "callbacks")})
    console.print(Panel(Syntax(yaml, "yaml", background_color="default"), title=picked, expand=False))


def print_start(choices: dict[str, str], num_params: int, run_id: str | None) -> None:
    where = f"MLflow run {run_id}" if run_id else "not recorded in MLflow"
    console.print(f"[bold]{choices.get('model')}[/]: {num_params:,} parameters; {where}")


def print_summary(
    results: dict, objective: str, best: float, timings: dict, run_id: str | None, cfg: DictConfig
) -> None:
    table = Table(title="Test results (best checkpoint)", min_width=40)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(results.items()):
        table.add_row(name, f"{value:.4f}")
    table.add_row(f"{objective} (best)", f"{best:.4f}")
    console.print(table)
    # One plain line (no markup, never wrapped): benchmarks/ reads it.
    print("timing: " + "  ".join(f"{name.removeprefix('time/')}={value:.4g}" for name, value in timings.items()))
    if run_id:
        # Plain prints: rich would wrap a long path, and the command must copy whole.
        uri = cfg.logger.tracking_uri
        print(f"MLflow run {run_id} in experiment '{cfg.experiment_name}' at {uri}")
        from mlflow import MlflowClient

        from src import store

        runs = store.ui_url(uri, store.RUNS_VIEW.format(MlflowClient(uri).get_run(run_id).info.experiment_id))
        if uri.startswith("sqlite:"):
            print(f"Open the UI:\n  mlflow ui --backend-store-uri {uri}\nthen {runs}")
        else:
            print(f"In the UI: {runs}")


def print_other_logs(trainer) -> None:
    """Where the Lightning loggers other than MLflow's (logger=csv, tensorboard, mlflow_*) wrote."""
    for logger in trainer.loggers:
        if not hasattr(logger, "run_id") and getattr(logger, "log_dir", None):
            print(f"{type(logger).__name__}: {logger.log_dir}")
