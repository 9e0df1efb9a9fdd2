"""No secret shows anywhere a run writes or prints (src/redact.py says what is secret):
each kind is planted in the real command, as a user types it, and then looked for byte
by byte in the store, the artifacts, Hydra's own files and the console.

The tokens are made here at run time: nothing in the repository looks like a token, for
scanners to flag.
"""

import base64
import http.client
import http.server
import io
import logging
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src import PROJECT_ROOT, redact, store
from src.identity import flat_params
from tests.conftest import compose_config, run_train, store_uri
from tests.test_scale import mlflow_server  # noqa: F401  (a fixture, for the test against a server)

TINY = ["data=iris", "trainer.max_epochs=1", "callbacks=none"]

TOKENS = {  # one of each shape redact.TOKEN_SHAPES knows, and what it is masked to
    "hf_" + "Qx" * 17: "hf_***",
    "ghp_" + "A1" * 18: "ghp_***",
    "github_pat_" + "B2c" * 27 + "D": "github_pat_***",
    "AKIA" + "QWERTYUIOPASDF23": "AKIA***",
    "sk-proj-" + "Zy9" * 12: "sk-***",
    "eyJ" + "a" * 20 + ".eyJ" + "b" * 20 + "." + "c" * 20: "eyJ***",
}
HF_TOKEN = next(iter(TOKENS))


def unique(prefix: str) -> str:
    """A value that cannot occur anywhere by chance."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- what is masked


@pytest.mark.parametrize("written,masked", [
    ("postgresql://u:pw-1@h/db", "postgresql://u:***@h/db"),
    ("at http://alice:p@ss@127.0.0.1:5201/x.", "at http://alice:***@127.0.0.1:5201/x."),
    ("redis://:pw-1@h:6379/0", "redis://:***@h:6379/0"),
    ("+hub.api_key=abc123 seed=0", "+hub.api_key=*** seed=0"),
    *[(f"token {token} here", f"token {shown} here") for token, shown in TOKENS.items()],
    (f"https://{'ghp_' + 'A1' * 18}@github.com/o/r", "https://ghp_***@github.com/o/r"),
])
def test_text_masks_each_kind_of_secret_and_keeps_what_it_was(written, masked):
    assert redact.text(written) == masked


@pytest.mark.parametrize("line", [
    "http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning",
    "mlflow ui --backend-store-uri sqlite:////tmp/mlruns/mlflow.db",
    "MLflow run 84f7d75e194140ed8b9c8fa8bb157905 in experiment 'triad'",
    "sk-learn, hf_hub, AKIA, eyJ, ghp_short, tokenizer=bpe num_tokens=64 monitor=val/loss",
    "model=mlp optimizer.lr=0.003 seed=0,1 data=iris",
])
def test_text_leaves_what_is_no_secret_as_it_is(line):
    assert redact.text(line) == line


def test_a_value_read_from_the_environment_is_masked_whatever_the_variable_is_called(monkeypatch, mlruns):
    value = unique("plain-setting")
    monkeypatch.setenv("TRIAD_PLAIN_SETTING", value)
    cfg = compose_config(["+api=${oc.env:TRIAD_PLAIN_SETTING}", "+db.url=postgresql://u:pw-77@h/db",
                          f"+hub.ref={HF_TOKEN}"], mlruns)
    params = flat_params(cfg)
    assert (params["api"], params["db.url"], params["hub.ref"]) == ("***", "postgresql://u:***@h/db", "hf_***")
    recorded = redact.config_yaml(cfg)
    assert "postgresql://u:***@h/db" in recorded and not {value, "pw-77", HF_TOKEN} & set(recorded.split())
    # Hydra's list of overrides resolves the interpolation: learn() named the variable
    redact.learn(["+api=${oc.env:TRIAD_PLAIN_SETTING}"])
    assert redact.overrides([f"+api={value}", f"+hub.ref={HF_TOKEN}"]) == ["+api=***", "+hub.ref=hf_***"]


STORE = "${oc.env:MLFLOW_TRACKING_URI,'sqlite:///x/mlflow.db'}"  # as conf/logger/mlflow.yaml has it


def test_hydras_own_files_are_rewritten_masked_and_keep_what_eval_reads(tmp_path):
    job, sweep = tmp_path / "multiruns" / "0", tmp_path / "multiruns"
    (job / ".hydra").mkdir(parents=True)
    typed = ["+db.url=postgresql://u:pw-77@h/db", "+db.password=pw", f"+hub.ref={HF_TOKEN}", "+api=${oc.env:X}"]
    OmegaConf.save(OmegaConf.create(typed), job / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"db": {"url": "postgresql://u:pw-77@h/db", "password": "pw"},
                                     "api": "${oc.env:X}", "model": {"hidden_size": 8},
                                     "logger": {"tracking_uri": STORE}}), job / ".hydra" / "config.yaml")
    hydra = {"run": {"dir": "x"}, "sweep": {"dir": str(sweep)}, "output_subdir": ".hydra",
             "runtime": {"output_dir": str(job)}, "overrides": {"task": typed},
             "job": {"override_dirname": ",".join(typed)}}
    OmegaConf.save(OmegaConf.create({"hydra": hydra}), job / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra, "db": {"password": "pw"}}), sweep / "multirun.yaml")

    redact.rewrite_hydra_files(OmegaConf.create({"hydra": hydra}))
    files = {p.name: p.read_text() for p in [*(job / ".hydra").iterdir(), sweep / "multirun.yaml"]}
    assert sorted(files) == ["config.yaml", "hydra.yaml", "multirun.yaml", "overrides.yaml"]
    for name, written in files.items():
        assert "pw-77" not in written and HF_TOKEN not in written and "password: pw" not in written, name
        assert "password=pw" not in written, name
    assert OmegaConf.load(job / ".hydra" / "overrides.yaml") == [
        "+db.url=postgresql://u:***@h/db", "+db.password=***", "+hub.ref=hf_***", "+api=***"]
    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    assert config.model.hidden_size == 8 and config.db.password == "***"  # what eval builds from is intact
    assert config.api == "***"  # as in config.yaml: eval reads no secret again
    assert OmegaConf.to_container(config)["logger"]["tracking_uri"] == STORE  # where the store is: no secret


# ---------------------------------------------------------------- the console


def test_a_secret_printed_in_pieces_or_in_colour_is_masked():
    out = io.StringIO()
    stream = redact.MaskedStream(out)
    stream.write("the store: postgresql://u:pw")
    stream.write("-77@h/db\n")
    stream.write("\x1b[1mpostgresql://u:\x1b[0mpw-77@h/db\n")  # colour codes inside the URI
    stream.write(" 50%|#####     \r")  # a progress bar's line passes on at its carriage return
    assert out.getvalue().endswith(" 50%|#####     \r")
    stream.write(f"{HF_TOKEN[:10]}")
    stream.write(f"{HF_TOKEN[10:]} rest")
    assert "rest" not in out.getvalue()  # held until the line ends, or until a flush
    stream.flush()
    assert out.getvalue().splitlines() == ["the store: postgresql://u:***@h/db", "postgresql://u:***@h/db",
                                           " 50%|#####     ", "hf_*** rest"]


def restore_factory(factory):
    return lambda: logging.setLogRecordFactory(factory)


def test_everything_the_process_prints_or_logs_is_masked(monkeypatch, capsys, request):
    value = unique("plain-setting")
    monkeypatch.setenv("TRIAD_PLAIN_SETTING", value)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after the test, with what pytest captures
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    request.addfinalizer(restore_factory(logging.getLogRecordFactory()))
    redact.mask_output(["+db.password=hunter2-6a8", "+api=${oc.env:TRIAD_PLAIN_SETTING}"])
    redact.mask_output(["seed=0"])  # again (each job does): nothing wrapped twice
    assert not isinstance(sys.stdout.stream, redact.MaskedStream)

    log = io.StringIO()
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler := logging.StreamHandler(log))  # its stream is not sys.stderr
    request.addfinalizer(lambda: logger.removeHandler(handler))
    logger.warning("connecting to %s as %s", "postgresql://u:pw-77@h/db", value)
    try:
        raise RuntimeError(f"refused: hunter2-6a8 {HF_TOKEN}")
    except RuntimeError:
        logger.exception("failed")
    print(f"password hunter2-6a8, setting {value}")
    print(f"token {HF_TOKEN}", file=sys.stderr)
    sys.stdout.flush(), sys.stderr.flush()
    captured = capsys.readouterr()
    assert captured.out == "password ***, setting ***\n" and captured.err == "token hf_***\n"
    logged = log.getvalue()
    assert "connecting to postgresql://u:***@h/db as ***" in logged and "refused: *** hf_***" in logged
    assert not [s for s in ("pw-77", "hunter2-6a8", value, HF_TOKEN) if s in logged]


# ---------------------------------------------------------------- a tracking server's credentials


class AuthProxy(http.server.ThreadingHTTPServer):
    """A reverse proxy in front of an `mlflow server` that passes on only the requests with
    these basic-auth credentials, /health included, as a team's nginx does (MLflow's own
    auth app needs Flask-WTF, which triad does not install). Without an upstream it
    answers 200 itself. Counts the requests it passed and refused."""

    daemon_threads = True

    def __init__(self, upstream: str | None, user: str, password: str):
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = urllib.parse.urlsplit(upstream).netloc if upstream else None
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.passed = self.refused = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Relay(http.server.BaseHTTPRequestHandler):
    def relay(self) -> None:
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != proxy.expected:
            proxy.refused += 1
            return self.answer(401, [("WWW-Authenticate", 'Basic realm="mlflow"')], b"")
        proxy.passed += 1
        if proxy.upstream is None:
            return self.answer(200, [], b"OK")
        upstream = http.client.HTTPConnection(proxy.upstream, timeout=120)
        skip = {"authorization", "host", "connection", "content-length", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip} | {"Host": proxy.upstream}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
        skip = {"transfer-encoding", "connection", "content-length", "server", "date", "keep-alive"}
        self.answer(reply.status, [(k, v) for k, v in reply.getheaders() if k.lower() not in skip], data)
        upstream.close()

    def answer(self, status: int, headers: list, data: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def auth_stub():
    proxy = AuthProxy(None, "alice", "pw-right")
    yield proxy
    proxy.close()


def test_a_tracking_uri_with_credentials_is_split_into_mlflows_own_variables(monkeypatch):
    env = {"MLFLOW_TRACKING_URI": "http://alice:p%40ss-1@127.0.0.1:5201/"}
    store.split_credentials(env)
    assert env == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5201/", store.USERNAME: "alice", store.PASSWORD: "p@ss-1"}
    for kept in ({"MLFLOW_TRACKING_URI": "http://alice:pw@h:1", store.PASSWORD: "other"},  # two sets: refused below
                 {"MLFLOW_TRACKING_URI": "http://alice@h:1"}, {"MLFLOW_TRACKING_URI": "sqlite:////x/mlflow.db"}, {}):
        before = dict(kept)
        store.split_credentials(kept)
        assert kept == before
    # every process does it first (src/__init__.py), before anything reads the URI
    shown = subprocess.run(
        [sys.executable, "-c", "import os, src; print(os.environ['MLFLOW_TRACKING_URI'], "
         "os.environ['MLFLOW_TRACKING_USERNAME'], os.environ['MLFLOW_TRACKING_PASSWORD'])"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        | {"MLFLOW_TRACKING_URI": "http://alice:pw-9@127.0.0.1:5201"}).stdout.split()
    assert shown == ["http://127.0.0.1:5201", "alice", "pw-9"]


def test_a_typed_tracking_uri_with_a_password_is_refused_without_showing_it(monkeypatch, auth_stub):
    for name in (store.USERNAME, store.PASSWORD, store.TOKEN):
        monkeypatch.delenv(name, raising=False)
    typed = auth_stub.uri.replace("http://", "http://alice:pw-right@")
    [problem] = store.problems(typed)
    assert problem.startswith(f"logger.tracking_uri={auth_stub.uri.replace('http://', 'http://alice:***@')}: ")
    assert store.USERNAME in problem and store.PASSWORD in problem and "pw-right" not in problem
    monkeypatch.setenv(store.PASSWORD, "pw-other-3")
    [problem] = store.problems(typed, key="--tracking-uri")
    assert "hold other credentials" in problem and "pw-right" not in problem and "pw-other-3" not in problem
    assert store.server_unreachable(typed) is None  # the health check takes user:password@ too


def test_the_health_check_sends_mlflows_credentials_and_says_when_they_are_refused(monkeypatch, auth_stub):
    for name in (store.USERNAME, store.PASSWORD, store.TOKEN):
        monkeypatch.delenv(name, raising=False)
    [problem] = store.problems(auth_stub.uri)  # none given
    assert "refused the credentials (HTTP 401" in problem and store.USERNAME in problem
    assert store.server_unreachable(auth_stub.uri) is None  # refusing them is an answer
    monkeypatch.setenv(store.USERNAME, "alice")
    monkeypatch.setenv(store.PASSWORD, "pw-wrong")
    [problem] = store.problems(auth_stub.uri)
    assert "refused the credentials" in problem and "pw-wrong" not in problem
    monkeypatch.setenv(store.PASSWORD, "pw-right")
    assert store.problems(auth_stub.uri) == [] and auth_stub.passed == 1


# ---------------------------------------------------------------- the real commands


def found_in(places: list[Path], texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """Where any secret occurs: the bytes of every file in places (a store's database with its
    -wal and -shm, artifacts, Hydra's outputs), and the texts (a command's stdout, stderr)."""
    found = []
    for place in places:
        for path in [place] if place.is_file() else sorted(p for p in place.rglob("*") if p.is_file()):
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, value in secrets.items() if value.encode() in data]
    for where, written in texts.items():
        found += [f"{where}: {name}" for name, value in secrets.items() if value in written]
    return found


def training_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name("triad")
    return [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("triad.sweep") != "parent"]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_planted_secrets_show_nowhere(where, mlruns, tmp_path, request):
    secrets = {"database password": unique("dbpw"), "environment value": unique("plain-setting"),
               "Hugging Face token": HF_TOKEN, "GitHub token": "ghp_" + "A1" * 18}
    env = {"TRIAD_PLAIN_SETTING": secrets["environment value"]}
    planted = [f"+db.url=postgresql://u:{secrets['database password']}@h/db",  # a URI's password
               "+api=${oc.env:TRIAD_PLAIN_SETTING}",  # read from the environment, under a plain key
               f"+hub.ref={HF_TOKEN}",  # a token typed, under a plain key
               f"+hub.repo=https://{secrets['GitHub token']}@github.com/o/r"]
    places = [mlruns]  # the local store and its artifacts, outputs/ and multiruns/
    proxy, uri = None, store_uri(mlruns)
    if where == "server":
        server, server_artifacts = request.getfixturevalue("mlflow_server")
        secrets["tracking password"] = unique("tracking-pw")
        proxy = AuthProxy(server, "alice", secrets["tracking password"])
        request.addfinalizer(proxy.close)
        env["MLFLOW_TRACKING_URI"] = proxy.uri.replace("http://", f"http://alice:{secrets['tracking password']}@")
        places += [*tmp_path.glob("server.db*"), server_artifacts]  # its -wal and -shm too
        uri = server  # read back directly, not through the proxy

    single = run_train([*TINY, *planted], mlruns, env=env)
    sweep = run_train(["-m", "seed=0,1", *TINY, *planted], mlruns, env=env)
    consoles = {"single run's stdout": single.stdout, "single run's stderr": single.stderr,
                "sweep's stdout": sweep.stdout, "sweep's stderr": sweep.stderr}

    assert found_in(places, consoles, secrets) == []
    # planted, and masked where they show: the keys stay, with what the values were
    runs = training_runs(MlflowClient(uri))
    assert len(runs) == 3
    for run in runs:
        params = run.data.params
        assert (params["db.url"], params["api"], params["hub.ref"], params["hub.repo"]) == (
            "postgresql://u:***@h/db", "***", "hf_***", "https://ghp_***@github.com/o/r")
        # a sweep's job has its overrides as Hydra hands them to it, with \ before each ':'
        assert "+db.url=postgresql://u:***@h/db" in run.data.tags["triad.overrides"].replace("\\", "")
    assert "url: postgresql://u:***@h/db" in single.stdout  # the config panel
    [multirun] = (mlruns / "multiruns").glob("*/*/multirun.yaml")
    assert "postgresql://u:***@h/db" in multirun.read_text()
    if proxy:
        assert proxy.passed > 0 and proxy.refused == 0  # every request carried the credentials
        assert f"at {proxy.uri}" in single.stdout and not (mlruns / "mlflow.db").exists()
