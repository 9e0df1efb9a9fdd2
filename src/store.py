"""The MLflow store: created once (its tables and experiments under a file lock),
and checked before any work, naming the store and the fix when it cannot take a run;
a tracking server's credentials in MLflow's own variables, never in a shown URI.
"""

import os
import re
import sqlite3
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from src import redact
from src.locks import store_lock

if TYPE_CHECKING:  # MLflow is imported where a store is opened: checking one needs none of it
    from mlflow import MlflowClient


def tracked(cfg) -> bool:
    """Whether MLflow records this run: its logger is triad's MLflow logger (logger=mlflow,
    mlflow_tensorboard, mlflow_csv), not none nor another Lightning logger alone (csv, tensorboard)."""
    return bool(cfg.get("logger")) and "tracking_uri" in cfg.logger


def loggers_beside(logger_cfg) -> tuple:
    """(the MLflow logger's config or None, the configs of the Lightning loggers beside it):
    logger=mlflow_tensorboard nests the tensorboard option in the MLflow one; logger=csv
    is another logger alone."""
    if not logger_cfg:
        return None, []
    if "tracking_uri" not in logger_cfg:
        return None, [logger_cfg]
    beside = [key for key, value in logger_cfg.items() if hasattr(value, "get") and value.get("_target_")]
    mlflow_cfg = {key: value for key, value in logger_cfg.items() if key not in beside}
    return type(logger_cfg)(mlflow_cfg), [logger_cfg[key] for key in beside]


def ensure_store(uri: str) -> None:
    """Create the store's tables if missing; idempotent and safe to call from many
    processes at once (MLflow's own creation races: alembic migration errors)."""
    if not uri.startswith("sqlite:///"):
        return
    from mlflow import MlflowClient

    with store_lock(uri):
        MlflowClient(uri).search_experiments(max_results=1)  # migrates a new file
        # Write-ahead logging: readers never wait for a writer, writers wait less.
        with sqlite3.connect(uri.removeprefix("sqlite:///")) as connection:
            connection.execute("PRAGMA journal_mode=WAL")


def client_for(tracking_uri: str) -> "MlflowClient":
    """A client of the store, created first if it is a new SQLite file."""
    from mlflow import MlflowClient

    ensure_store(tracking_uri)
    return MlflowClient(tracking_uri)


# The experiment's kind as MLflow's UI names it ("Machine learning"): triad trains models
# and writes no GenAI traces. The 3.17.2 UI reads it only with its workflow switcher off,
# a build flag that is on there: its view follows the switcher (URL ?workflowType=
# machine_learning, else the browser's last choice, GenAI at first), see README.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"


def experiment_id(client: "MlflowClient", name: str, artifact_location: str | None) -> str:
    """The id of the named experiment, created (with its artifact root and its kind) if
    missing; an existing one without a kind is given it."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        return experiment.experiment_id
    if artifact_location and "://" not in artifact_location:
        artifact_location = Path(artifact_location).resolve().as_uri()
    with store_lock(client.tracking_uri):  # two jobs creating it at once: UNIQUE constraint
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location,
                                            tags={EXPERIMENT_KIND: MODEL_TRAINING})
        except MlflowException as error:  # on a server (no lock): another job created it first
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default
# The experiment page's runs table: the switcher's model-training side, whatever the browser chose last.
RUNS_VIEW = "/experiments/{}?workflowType=machine_learning"


def ui_url(tracking_uri: str, route: str) -> str:
    """A page of the MLflow UI (a hash route) for this store: on its server, or where
    `mlflow ui` serves a local store by default."""
    base = without_credentials(tracking_uri).rstrip("/") if tracking_uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#{route}"


def artifact_location(logger_cfg) -> str | None:
    """Where a new experiment keeps its artifacts: the logger's folder for a local
    SQLite store; a server decides for itself (it may serve them)."""
    uri = logger_cfg.tracking_uri
    return logger_cfg.get("artifact_location") if uri.startswith("sqlite") else None


def problems(tracking_uri: str, key: str = "logger.tracking_uri", existing: bool = False) -> list[str]:
    """Why a store cannot take a run, naming it and the fix, before any work: a server
    that does not answer (MLflow's client retries for minutes), an SQLite file that is
    no database or a folder that is read-only, a database whose driver is not
    installed. existing=True: the store must be there already (reading runs from a
    new, empty one would only create it)."""
    shown, problem = tracking_uri, None
    if tracking_uri.startswith(("http://", "https://")):
        problem = _credentials_problem(tracking_uri) or _server_problem(tracking_uri)
    elif tracking_uri.startswith("sqlite:///"):
        elsewhere = "or pass another --tracking-uri." if key.startswith("--") else ELSEWHERE
        problem = _sqlite_problem(Path(tracking_uri.removeprefix("sqlite:///")), existing, elsewhere)
    elif tracking_uri.split(":", 1)[0].split("+")[0] in DATABASES:
        shown, problem = _driver_problem(tracking_uri)
    return [f"{key}={redact.text(shown)}: {problem}"] if problem else []


def check(tracking_uri: str, key: str = "logger.tracking_uri", existing: bool = False) -> None:
    """Raise ConfigError with the store's problems, if it has any."""
    from src.validate import ConfigError  # validate reads this module

    if found := problems(tracking_uri, key, existing):
        raise ConfigError(found)


# MLflow's own way to a server that asks for credentials: its client sends these, read from
# the environment at each request, as basic auth (or the token as a bearer).
USERNAME, PASSWORD, TOKEN = "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"
REFUSED = (401, 403)  # a server (or the proxy before it) that answers, and refuses the credentials


def without_credentials(uri: str) -> str:
    """The URI without its user and password (http://alice:pw@host:5000 -> http://host:5000)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return redact.text(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def split_credentials(environ=os.environ) -> None:
    """MLFLOW_TRACKING_URI=http://user:password@host: the user and the password move to
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, and the URI keeps the rest, so
    that no message or record holds the password (src/__init__.py calls this in every
    process, before anything reads the URI). Left as it is where those variables hold
    other credentials: problems() then says so."""
    uri = environ.get("MLFLOW_TRACKING_URI", "")
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return
    if parts.scheme not in ("http", "https") or parts.password is None:
        return
    user, password = urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password)
    if environ.get(USERNAME, user) != user or environ.get(PASSWORD, password) != password:
        return
    environ.update({USERNAME: user, PASSWORD: password, "MLFLOW_TRACKING_URI": without_credentials(uri)})


def _credentials_problem(tracking_uri: str) -> str | None:
    try:
        if urllib.parse.urlsplit(tracking_uri).password is None:
            return None
    except ValueError:
        return None
    others = (f" ({USERNAME} / {PASSWORD} hold other credentials now: keep one of the two)"
              if os.environ.get(USERNAME) or os.environ.get(PASSWORD) else "")
    return (f"a password in the tracking URI would show wherever the URI is printed or recorded. Give the URI "
            f"without it, and the user and password in {USERNAME} and {PASSWORD}{others}: MLflow's client sends "
            "them to the server (an MLFLOW_TRACKING_URI with user:password@ in it is split so by itself).")


def _server_problem(tracking_uri: str) -> str | None:
    status, reason = _health(tracking_uri)
    if status in REFUSED:
        return (f"the server refused the credentials ({reason}). Set {USERNAME} and {PASSWORD} (or {TOKEN}) "
                "to ones it takes: MLflow's client sends them.")
    if status is not None and status < 400:
        return None
    return (f"no MLflow server answers there ({reason}). Start it (README, 'Team tracking server'), or point "
            "MLFLOW_TRACKING_URI / logger.tracking_uri at a reachable store; unset it for the local SQLite store.")


def server_unreachable(tracking_uri: str, timeout: float = 5.0) -> str | None:
    """Why a tracking server does not answer (`GET /health`); None when it does (refusing
    the credentials is an answer), and for a store that is no server."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    status, reason = _health(tracking_uri, timeout)
    return None if status is not None and (status < 400 or status in REFUSED) else reason


def _health(tracking_uri: str, timeout: float = 5.0) -> tuple[int | None, str | None]:
    """(the HTTP status of the server's `GET /health`, None where nothing answers; why it
    is not 200), asked with the credentials MLflow's client would send: the URI's own
    user and password, else those of the environment (USERNAME/PASSWORD, TOKEN)."""
    import base64

    try:
        parts = urllib.parse.urlsplit(tracking_uri)
        user, password = ((urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password))
                          if parts.password is not None else (os.environ.get(USERNAME), os.environ.get(PASSWORD)))
    except ValueError as error:
        return None, redact.text(error)
    headers = {}
    if user and password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    elif token := os.environ.get(TOKEN):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{without_credentials(tracking_uri).rstrip('/')}/health", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
            return answer.status, None
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError, ValueError) as error:  # ValueError: http.client's InvalidURL
        return None, redact.text(getattr(error, "reason", error))


def lost_a_race(error: BaseException) -> bool:
    """Whether a write failed because another job inserted the same row first: MLflow's store
    checks for a data set, then inserts it, and a server runs jobs' requests side by side
    (PostgreSQL, MySQL, SQLite wordings). The same write again finds the row and reuses it."""
    return any(word in str(error) for word in ("UniqueViolation", "duplicate key value", "UNIQUE constraint failed",
                                                 "Duplicate entry"))


def lost_connection(error: BaseException, tracking_uri: str) -> str | None:
    """Why a request to this tracking server failed, if `error` (or what it was raised while
    handling: MLflow wraps requests' errors) is a lost or refused connection to it; else None."""
    import requests

    seen = error
    while seen is not None and not isinstance(seen, requests.exceptions.ConnectionError):
        seen = seen.__cause__ or seen.__context__
    url = getattr(getattr(seen, "request", None), "url", None) or ""
    if seen is None or not url.startswith(tracking_uri.rstrip("/")):  # another site (a data set's hub)
        return None
    # The socket's reason, as the message ends with it: "... [Errno 111] Connection refused'))", or
    # for a connection cut mid-request "('Connection aborted.', ConnectionResetError(104, 'Connection
    # reset by peer'))" or "('Connection aborted.', RemoteDisconnected('Remote end closed connection ...'))".
    text = redact.text(seen)
    if errno := re.search(r"\[Errno \d+\] [^'\")]+", text):
        return errno.group(0)
    if aborted := re.search(r"'Connection aborted\.', \w+\((?:(\d+), )?'([^']+)'\)", text):
        number, words = aborted.groups()
        return f"[Errno {number}] {words}" if number else words
    return text


# How long a run's or a sweep's end waits for a tracking server that stopped answering, to
# end its runs there (MLflow's client gives up on a request after a few minutes of retries).
SERVER_WAIT_S = 600


def wait_for_server(tracking_uri: str, limit_s: float) -> str | None:
    """Wait up to limit_s for a tracking server to answer again; None once it does (at
    once if it does), else why it still does not."""
    deadline = time.monotonic() + limit_s
    while (reason := server_unreachable(tracking_uri)) and time.monotonic() < deadline:
        time.sleep(2)
    return reason


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


def missing_driver(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without its password, the module of its missing SQLAlchemy driver, the
    package to install): the import SQLAlchemy makes when MLflow or Optuna opens it;
    (uri, None, None) where nothing is missing or SQLAlchemy cannot read the URI."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(uri)
        shown = url.render_as_string(hide_password=True)
        url.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError):
        return uri, None, None  # not a URI SQLAlchemy reads: MLflow's or Optuna's own message says why
    except ImportError as error:
        return shown, error.name, DRIVER_PACKAGES.get(error.name, error.name)
    return shown, None, None


def _driver_problem(tracking_uri: str) -> tuple[str, str | None]:
    """(the URI without its password, whether SQLAlchemy's driver for it is missing)."""
    shown, module, package = missing_driver(tracking_uri)
    if module is None:
        return shown, None
    return shown, (f"its database driver is not installed (no module {module!r}). Install it "
                   f"(pip install {package}), or use a sqlite:/// store or an http:// tracking server.")
