"""Issue 14 (Trust): only the classes triad needs are ever built, from the command
line and from recorded configs alike, and no secret reaches the store. Payloads
are real pickles that would create a file; runs, evals and stores are real.
"""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src import PROJECT_ROOT, redact
from src.gate import target_problems
from src.identity import NOT_PARAMS, flat_params
from tests.conftest import compose_config, config_options, run_train, store_uri

TINY = ["data=iris", "trainer.max_epochs=1"]


class Payload:
    """Unpickling it creates `marker`: proof that code from a file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def payload(tmp_path) -> tuple[Path, Path]:
    """(a pickle whose loading runs code, the file that code would create)."""
    evil, marker = tmp_path / "evil.pt", tmp_path / "PAYLOAD_RAN"
    torch.save(Payload(marker), evil)
    return evil, marker


def run_eval(args: list[str], mlruns: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "src.eval", f"paths.mlruns_dir={mlruns}", *args],
        cwd=PROJECT_ROOT, env=full_env, capture_output=True, text=True, timeout=600,
    )


def run_ids(mlruns: Path) -> list[str]:
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    return [r.info.run_id for r in client.search_runs([experiment.experiment_id])] if experiment else []


def refused(result: subprocess.CompletedProcess, *names: str) -> None:
    """Exit 2, the message naming each of names and what triad builds, no traceback."""
    assert result.returncode == 2, result.stderr[-3000:]
    for name in (*names, "triad builds only these classes"):
        assert name in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the gate, in process

REFUSED = [
    ("torch.serialization.load", "the function torch.serialization.load, not a class"),
    ("torch.load", "the function torch.serialization.load, not a class"),
    ("torch.os.system", "function posix.system, not a class"),
    ("src.identity.subprocess.run", "the function subprocess.run, not a class"),
    ("src.identity.subprocess.Popen", "the class subprocess.Popen, not one triad builds"),
    ("src.record.MlflowClient", "MlflowClient, not one triad builds"),
    ("src.module.ExperimentModule", "not one triad builds"),
    ("torch.hub.load", "not a class"),
    ("torch.nn", "the module torch.nn, not a class"),
    ("builtins.eval", "outside the packages"),
    ("os.system", "outside the packages"),
    ("torch.optim.Adamm", "did you mean torch.optim.Adam?"),
]


@pytest.mark.parametrize("target,why", REFUSED, ids=[r[0] for r in REFUSED])
def test_the_gate_judges_what_a_target_resolves_to_not_its_spelling(target, why):
    cfg = OmegaConf.create({"callbacks": {"x": {"_target_": target}}, "lists": [{"deep": [{"_target_": target}]}]})
    problems = target_problems(cfg)
    assert [p.split("=")[0] for p in problems] == ["callbacks.x._target_", "lists[0].deep[0]._target_"]
    assert all(why in p and "triad builds only these classes" in p for p in problems), problems


def test_a_target_outside_the_allowed_packages_is_refused_before_anything_is_imported():
    # the standard library's `this` (it prints the Zen of Python on import): no library imports it
    assert "this" not in sys.modules
    [problem] = target_problems(OmegaConf.create({"data": {"_target_": "this.s"}}))
    assert "nothing was imported" in problem and "this" not in sys.modules


def shipped_options():
    for group in sorted(p.name for p in (PROJECT_ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        for option in config_options(group):
            yield pytest.param([f"{group}={option}"], id=f"{group}={option}")


@pytest.mark.parametrize("overrides", shipped_options())
def test_every_shipped_option_passes_the_gate(overrides, mlruns):
    assert target_problems(compose_config(overrides, mlruns)) == []


def test_every_shipped_target_resolves_to_a_class_the_gate_allows():
    # what lets the gate pass these exact names without importing them (gate.shipped_targets)
    from src.gate import is_allowed, resolve, shipped_targets

    assert len(shipped_targets()) > 30 and "pytorch_lightning.Trainer" in shipped_targets()
    assert [t for t in shipped_targets() if not is_allowed(resolve(t))] == []


# ---------------------------------------------------------------- the gate, end to end


COMMANDS = {
    "torch.serialization.load": lambda evil, marker: [
        "+callbacks.x._target_=torch.serialization.load", f"+callbacks.x.f={evil}", "+callbacks.x.weights_only=false"],
    "src.identity.subprocess.run": lambda evil, marker: [
        "+callbacks.x._target_=src.identity.subprocess.run", f"+callbacks.x.args=[touch,{marker}]"],
    "torch.os.system": lambda evil, marker: [
        "+callbacks.x._target_=torch.os.system", f"+callbacks.x.command='touch {marker}'"],
    "hydra.callbacks": lambda evil, marker: [  # Hydra builds these itself, before train() runs
        "+hydra.callbacks.x._target_=torch.serialization.load", f"+hydra.callbacks.x.f={evil}",
        "+hydra.callbacks.x.weights_only=false"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_naming_a_function_as_target_exits_2_and_runs_nothing(command, payload, mlruns):
    evil, marker = payload
    result = run_train([*TINY, *COMMANDS[command](evil, marker)], mlruns, check=False)
    key = "hydra.callbacks.x._target_" if command == "hydra.callbacks" else "callbacks.x._target_"
    target = "torch.serialization.load" if command == "hydra.callbacks" else command
    refused(result, f"{key}='{target}'", "not a class")
    assert not marker.exists(), "the payload ran"
    assert not (mlruns / "mlflow.db").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One tiny recorded run (its store, its id) for the eval tests to tamper with."""
    mlruns = tmp_path_factory.mktemp("trained") / "mlruns"
    run_train([*TINY, "callbacks=none"], mlruns)
    [run_id] = run_ids(mlruns)
    return mlruns, run_id


EVIL_DATA = "data: {{_target_: torch.serialization.load, f: {evil}, weights_only: false}}\n"


@pytest.mark.slow
def test_eval_refuses_a_tampered_config_yaml_artifact(trained, payload):
    mlruns, run_id = trained
    evil, marker = payload
    client = MlflowClient(store_uri(mlruns))
    recorded = OmegaConf.load(client.download_artifacts(run_id, "config.yaml"))
    recorded.data = OmegaConf.create(EVIL_DATA.format(evil=evil)).data
    client.log_text(run_id, OmegaConf.to_yaml(recorded), "config.yaml")  # replaces the artifact

    result = run_eval([f"run_id={run_id}"], mlruns)
    refused(result, f"the recorded config runs:/{run_id}/config.yaml was refused",
            "data._target_='torch.serialization.load'")
    assert not marker.exists(), "the payload ran"
    assert run_ids(mlruns) == [run_id]  # no eval run recorded


@pytest.mark.slow
def test_eval_refuses_a_tampered_hydra_config_beside_the_checkpoint(trained, payload):
    mlruns, run_id = trained
    evil, marker = payload
    [checkpoint] = (mlruns / "outputs").glob("*/*/checkpoints/best.ckpt")
    config_file = checkpoint.parent.parent / ".hydra" / "config.yaml"
    recorded = OmegaConf.load(config_file)
    recorded.data = OmegaConf.create(EVIL_DATA.format(evil=evil)).data
    OmegaConf.save(recorded, config_file)

    result = run_eval([f"ckpt_path={checkpoint}"], mlruns)
    refused(result, f"the recorded config {config_file} was refused", "data._target_='torch.serialization.load'")
    assert not marker.exists(), "the payload ran"
    assert run_ids(mlruns) == [run_id]


# ---------------------------------------------------------------- secrets


def test_secret_keys_with_and_without_separators_and_none_of_triads_own():
    for name in ("dbpassword", "githubtoken", "sshkey", "api_key", "MY_API_TOKEN", "db.password", "+db.password",
                 "aws_secret_access_key", "dbPassword", "apiKeys", "GITHUB_TOKEN", "db/passwd", "creds"):
        assert redact.is_secret(name), name
    for name in ("data.tokenizer", "monitor", "keys", "skip_finished", "checkpoint_every_n_steps",
                 "callbacks.text_samples.num_tokens", "PWD", "OLDPWD", "TOKENIZERS_PARALLELISM"):
        assert not redact.is_secret(name), name


def test_an_override_keeps_its_key_and_loses_a_secret_value(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", "tok-91c2e7")
    lines = ["+db.password=hunter2", "+creds=tok-91c2e7", "+db={password: hunter2}", "seed=0,1", "data=iris"]
    assert redact.overrides(lines) == ["+db.password=***", "+creds=***", "+db=***", "seed=0,1", "data=iris"]


def leaves(node, prefix: str = ""):
    """(dotted key, value) of every key of a config container, nested ones too."""
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path, value
        if isinstance(value, dict):
            yield from leaves(value, path)


# What the user's data options need before they compose into a whole config.
REQUIRED = {"data=csv": ["data.path=x.csv"], "data=hf": ["data.name=x"]}


@pytest.mark.parametrize("overrides", shipped_options())
def test_every_key_of_the_shipped_config_is_recorded(overrides, mlruns):
    cfg = compose_config([*overrides, *REQUIRED.get(overrides[0], [])], mlruns)
    keys = dict(leaves(OmegaConf.to_container(cfg)))
    assert not [k for k in keys if redact.is_secret(k)]
    recorded = {k for k, v in keys.items() if k.split(".")[0] not in NOT_PARAMS and not isinstance(v, dict)
                and not k.endswith(("_partial_", "_target_"))}  # plumbing: named by the choice, kept in config.yaml
    params = flat_params(cfg)
    assert recorded <= set(params), recorded - set(params)
    assert not [k for k in params if k.endswith("_target_")]
    assert redact.MASK not in redact.config_yaml(cfg)


SECRETS = {"+dbpassword": "pw-7d1f0a", "+githubtoken": "gh-3b9e55", "+sshkey": "ssh-c40d2e", "+db.password": "hunter2-6a8"}
ENV_SECRET = "supersecret-e5f21c"


def found_in_store(mlruns: Path, secrets: list[str]) -> list[str]:
    """Where any of secrets occurs: every text cell of every table of the SQLite
    store, and every file under artifacts/ (bytes)."""
    found = []
    with sqlite3.connect(mlruns / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    text = cell.decode(errors="replace") if isinstance(cell, bytes) else str(cell)
                    found += [f"table {table}: {s}" for s in secrets if s in text]
    for path in (mlruns / "artifacts").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(mlruns)}: {s}" for s in secrets if s.encode() in data]
    return found


@pytest.mark.slow
def test_planted_secrets_reach_neither_the_store_nor_the_artifacts(mlruns):
    env = {"MY_API_TOKEN": ENV_SECRET}
    planted = [f"{key}={value}" for key, value in SECRETS.items()] + ["+creds=${oc.env:MY_API_TOKEN}"]
    run_train([*TINY, "callbacks=none", *planted], mlruns, env=env)
    [single] = run_ids(mlruns)
    run_train(["-m", "seed=0,1", *TINY, "callbacks=none", *planted], mlruns, env=env)
    [checkpoint] = (mlruns / "outputs").glob("*/*/checkpoints/best.ckpt")
    hydra_config = (checkpoint.parent.parent / ".hydra" / "config.yaml").read_text()
    # Hydra's own copy is masked too (src/redact.py: rewrite_hydra_files), and eval reads it below
    assert redact.MASK in hydra_config and not [value for value in SECRETS.values() if value in hydra_config]
    for args in ([f"run_id={single}"], [f"ckpt_path={checkpoint}"]):
        result = run_eval(args, mlruns, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    assert len(run_ids(mlruns)) == 1 + 3 + 2  # the run, the sweep's parent and two jobs, two evals

    assert found_in_store(mlruns, [*SECRETS.values(), ENV_SECRET]) == []
    client = MlflowClient(store_uri(mlruns))
    for run_id in run_ids(mlruns):  # the keys are still there, without their values
        overrides = client.get_run(run_id).data.tags["triad.overrides"]
        if "dbpassword" in overrides:
            assert "+dbpassword=***" in overrides and "+creds=***" in overrides
