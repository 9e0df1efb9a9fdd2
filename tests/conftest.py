"""Shared test helpers: compose the real config, shrink it, run it for real.

Every run in the tests writes into a temporary folder (paths.mlruns_dir), never
into the project's own mlruns/.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from src import PROJECT_ROOT

CONF_DIR = PROJECT_ROOT / "conf"


def config_options(group: str) -> list[str]:
    """The option names of a config group: the file names in conf/<group>/."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def compose_config(overrides: list[str], mlruns_dir: Path):
    """The config `python -m src.train <overrides>` would see, ready for train(cfg)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.mlruns_dir={mlruns_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(mlruns_dir / "outputs")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_train(args: list[str], mlruns_dir: Path, env: dict | None = None, check: bool = True, timeout: int = 600):
    """`python -m src.train <args>` in a subprocess, as a user runs it."""
    # A developer's own MLFLOW_TRACKING_URI must not receive test runs.
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    result = subprocess.run(
        # flags (-m, --cfg) before the overrides, as Hydra's command line wants them
        [sys.executable, "-m", "src.train", *[a for a in args if a.startswith("-")],
         f"paths.mlruns_dir={mlruns_dir}", *[a for a in args if not a.startswith("-")]],
        cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nSTDOUT:\n{result.stdout[-5000:]}\nSTDERR:\n{result.stderr[-5000:]}")
    return result


def store_uri(mlruns_dir: Path) -> str:
    return f"sqlite:///{mlruns_dir}/mlflow.db"


@pytest.fixture
def mlruns(tmp_path) -> Path:
    """A fresh, empty place for a test's MLflow store, artifacts and outputs."""
    path = tmp_path / "mlruns"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _no_outside_tracking_uri(monkeypatch):
    # A developer's own MLFLOW_TRACKING_URI must not send test runs to their server.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(autouse=True, scope="session")
def _nothing_written_to_mlflows_default_store():
    # MLflow's default store is ./mlflow.db: a call that misses the configured
    # tracking URI would write there, into the project's root, and go unnoticed.
    stray = PROJECT_ROOT / "mlflow.db"
    existed = stray.exists()
    yield
    assert existed or not stray.exists(), f"a test wrote to MLflow's default store {stray}"


def write_user_data(folder: Path, num_rows: int = 300) -> dict[str, list[str]]:
    """A small text-classification CSV and the same rows saved as a Hugging Face
    data set (from the sentiment generator; no network). Returns, per user-data
    option, the overrides that point it at them."""
    import csv

    from src.data.sentiment import CLASS_NAMES, generate

    texts, labels = generate(num_rows, seed=5)
    rows = {"review": texts, "label": [CLASS_NAMES[label] for label in labels]}
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "reviews.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(rows)
        writer.writerows(zip(*rows.values(), strict=True))
    overrides = {"csv": [f"data.path={folder / 'reviews.csv'}", "data.text_column=review", "data.seq_len=32"]}
    try:
        import datasets
    except ImportError:  # the hf extra is not installed: data=hf is tested where it is
        return overrides
    datasets.Dataset.from_dict(rows).save_to_disk(str(folder / "reviews_hf"))
    overrides["hf"] = [f"data.name={folder / 'reviews_hf'}", "data.text_column=review", "data.seq_len=32"]
    return overrides


@pytest.fixture(scope="session")
def user_data(tmp_path_factory) -> dict[str, list[str]]:
    """Overrides for data=csv and data=hf pointing at small files made for the session."""
    return write_user_data(tmp_path_factory.mktemp("user_data"))
