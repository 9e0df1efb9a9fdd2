"""Sessions: `nox -s tests` (what CI runs), `lint`, `train`, `ui`, `bench`."""

from pathlib import Path

import nox

ROOT = Path(__file__).parent
# The CPU build of torch 2.13.0 for Python 3.11 lies on the project's machines'
# disk, so this installs in seconds; on a machine with a GPU, install the CUDA
# build you want into the session first, or change this pin.
TORCH = "torch==2.13.0"

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def install_project(session: nox.Session) -> None:
    # torch first, pinned: an open range lets pip pull a several-GB CUDA build.
    session.install(TORCH)
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, slow tests included (plain `pytest` runs the fast ones)."""
    install_project(session)
    # --durations: CI's output names the slowest tests, to keep the run well inside its hour
    session.run("pytest", "-m", "slow or not slow", "--durations=40", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff==0.17.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed side by side (benchmarks/run.py); writes benchmarks/RESULTS.md.
    `nox -s bench -- --only step --repeats 5` runs a part."""
    install_project(session)
    session.install("keras==3.15.1")  # only for the Keras comparison; triad never imports it
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session
def train(session: nox.Session) -> None:
    """`nox -s train -- model=transformer`: python -m src.train with these overrides."""
    install_project(session)
    session.run("python", "-m", "src.train", *session.posargs)


@nox.session
def ui(session: nox.Session) -> None:
    """The MLflow UI on this project's store, on http://127.0.0.1:5000 only."""
    install_project(session)
    store = f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
    session.run("mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", "5000")
