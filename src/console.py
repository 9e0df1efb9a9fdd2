"""What a run prints: the composed config at the start, the results at the end."""

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

console = Console()
SHOWN_GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "trainer")


def print_config(cfg: DictConfig, choices: dict[str, str]) -> None:
    picked = "  ".join(f"[bold]{g}[/]={choices.get(g)}" for g in SHOWN_GROUPS)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    yaml = OmegaConf.to_yaml({k: v for k, v in resolved.items() if k not in ("paths", "callbacks")})
    console.print(Panel(Syntax(yaml, "yaml", background_color="default"), title=picked, expand=False))


def print_start(choices: dict[str, str], num_params: int, run_id: str | None) -> None:
    where = f"MLflow run {run_id}" if run_id else "not recorded (logger=none)"
    console.print(f"[bold]{choices.get('model')}[/]: {num_params:,} parameters; {where}")


def print_summary(
    results: dict, objective: str, best: float, timings: dict, run_id: str | None, cfg: DictConfig
) -> None:
    table = Table(title="Test results (best checkpoint)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in sorted(results.items()):
        table.add_row(name, f"{value:.4f}")
    table.add_row(f"{objective} (best)", f"{best:.4f}")
    console.print(table)
    # One plain line (no markup, never wrapped): benchmarks/ reads it.
    print("timing: " + "  ".join(f"{name.removeprefix('time/')}={value:.4g}" for name, value in timings.items()))
    if run_id:
        uri = cfg.logger.tracking_uri
        console.print(f"MLflow run [bold]{run_id}[/] in experiment '{cfg.experiment_name}' at {uri}")
        if uri.startswith("sqlite:"):
            console.print(f"Open the UI:  [bold]mlflow ui --backend-store-uri {uri}[/]  (then http://127.0.0.1:5000)")
