"""Issue 8: every way a run can end leaves an honest MLflow record, a stopped run
resumes, parallel jobs share one store, and nothing secret or foreign gets in (bad
configs: tests/test_validate.py). Real subprocesses, signals and SQLite stores.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from src import PROJECT_ROOT, store
from src.data.base import InMemoryBatches, SeededShuffle
from tests.conftest import compose_config, run_train, store_uri

# Small and quick: iris has 97 training rows, 13 batches of 8 per epoch.
TINY = ["data=iris", "data.batch_size=8", "callbacks=none", "trainer.log_every_n_steps=1"]


def runs_of(mlruns: Path):
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]) if experiment else []
    return client, runs


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id)}


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def start(args: list[str], mlruns: Path, log: Path) -> subprocess.Popen:
    """`python -m src.train` in the background, its output in a file."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "src.train", f"paths.mlruns_dir={mlruns}", *args],
        cwd=PROJECT_ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def wait_for_checkpoint(process: subprocess.Popen, mlruns: Path) -> Path:
    """The first last.ckpt the run writes: training is under way (polls; no fixed sleep)."""
    while True:
        found = list((mlruns / "outputs").glob("*/*/checkpoints/last.ckpt"))
        if found:
            assert process.poll() is None, "the run ended before it could be stopped"
            return found[0]
        try:
            process.wait(timeout=0.05)
            raise AssertionError(f"the run ended (exit {process.returncode}) before its first checkpoint")
        except subprocess.TimeoutExpired:
            pass


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run: its (step, value) pairs in step order."""
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def assert_same_histories(resumed: dict, plain: dict) -> None:
    """Every key, every step and every value equal; wall-clock times (time/*) at the same steps."""
    assert set(resumed) == set(plain)
    for key, pairs in plain.items():
        if key.startswith("time/"):
            assert [s for s, _ in resumed[key]] == [s for s, _ in pairs], key
        else:
            assert resumed[key] == pairs, key


# ---------------------------------------------------------------- resume


def test_a_resumable_loader_goes_on_with_the_next_batch():
    data = (torch.arange(10),)
    loader = InMemoryBatches(data, batch_size=3, sampler=SeededShuffle(10, seed=1, shuffle=True))
    loader.sampler.set_epoch(2)
    whole = [b[0].tolist() for b in loader]
    seen = iter(loader)
    next(seen), next(seen)
    state = loader.state_dict()
    fresh = InMemoryBatches(data, batch_size=3, sampler=SeededShuffle(10, seed=1, shuffle=True))
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)  # Lightning's order: state first, set_epoch before the first batch
    assert [b[0].tolist() for b in fresh] == whole[2:]
    fresh.sampler.set_epoch(3)
    assert len(list(fresh)) == len(whole)  # the next epoch is whole again


@pytest.mark.slow
def test_kill_9_mid_epoch_then_ckpt_path_last_resumes_the_same_run(tmp_path):
    # One example per batch: 97 steps an epoch, so the kill lands mid-epoch.
    args = [*TINY, "data.batch_size=1", "trainer.max_epochs=2", "checkpoint_every_n_steps=5"]
    plain = tmp_path / "plain"
    run_train(args, plain)
    plain_client, [reference] = runs_of(plain)
    per_epoch = int(reference.data.params["data.train_size"])
    expected = steps(plain_client, reference.info.run_id, "train/loss")
    assert len(expected) == 2 * per_epoch

    mlruns = tmp_path / "stopped"
    process = start(args, mlruns, tmp_path / "stopped.log")
    checkpoint = wait_for_checkpoint(process, mlruns)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(checkpoint, weights_only=True)["global_step"]
    assert saved % per_epoch, f"the checkpoint is at an epoch boundary (step {saved}), not mid-epoch"
    client, [killed] = runs_of(mlruns)
    assert killed.info.status == "RUNNING"  # kill -9: nothing could mark it

    result = run_train([*args, "ckpt_path=last"], mlruns)
    assert f"resuming run {killed.info.run_id}" in result.stdout
    client, runs = runs_of(mlruns)
    assert [r.info.run_id for r in runs] == [killed.info.run_id]
    assert runs[0].info.status == "FINISHED"
    assert set(runs[0].data.metrics) == set(reference.data.metrics)
    for key in reference.data.metrics:
        resumed, plain_steps = steps(client, killed.info.run_id, key), steps(plain_client, reference.info.run_id, key)
        if key == "epoch":  # Lightning logs it with train and val metrics alike: twice at an epoch's end
            assert set(resumed) == set(plain_steps)
        else:  # every step once: none lost between the checkpoint and the kill, none twice
            assert resumed == plain_steps, key
    assert steps(client, killed.info.run_id, "train/loss") == expected
    # and the same values: the checkpoint holds the random state that dropout draws from
    resumed, plain_values = histories(client, killed.info.run_id), histories(plain_client, reference.info.run_id)
    assert_same_histories(*({k: v for k, v in h.items() if k != "epoch"} for h in (resumed, plain_values)))


# One example per batch, so a stop lands mid-epoch, and dropout, so the resumed
# steps draw the same masks only if the checkpoint holds the random state.
EXACT = ["data=iris", "data.batch_size=1", "model.dropout=0.2", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, int]:
    """The metric histories of an uninterrupted run of EXACT and its steps per epoch."""
    mlruns = tmp_path_factory.mktemp("uninterrupted")
    run_train(EXACT, mlruns)
    client, [run] = runs_of(mlruns)
    return histories(client, run.info.run_id), int(run.data.params["data.train_size"])


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_mid_epoch_then_ckpt_path_last_resumes_exactly(stop, uninterrupted, tmp_path):
    plain, per_epoch = uninterrupted
    mlruns, log = tmp_path / "mlruns", tmp_path / "stopped.log"
    process = start(EXACT, mlruns, log)
    checkpoint = wait_for_checkpoint(process, mlruns)
    process.send_signal(stop)
    returncode = process.wait(timeout=300)
    output = log.read_text()
    assert returncode == 128 + stop, output[-3000:]  # 130 for Ctrl-C, as a shell reports it
    assert "ckpt_path=last" in output and "was not set" not in output, output[-3000:]
    saved = torch.load(checkpoint, weights_only=True)["global_step"]
    assert saved % per_epoch, f"the stop is at an epoch boundary (step {saved}), not mid-epoch"
    client, [stopped] = runs_of(mlruns)
    assert stopped.info.status == "KILLED"

    result = run_train([*EXACT, "ckpt_path=last"], mlruns)
    assert f"resuming run {stopped.info.run_id}" in result.stdout
    for noise in ("could not find the monitored key", "exists and is not empty"):
        assert noise not in result.stdout + result.stderr
    client, [resumed] = runs_of(mlruns)
    assert resumed.info.status == "FINISHED"
    # the same steps, validations, losses (dropout included) and test metrics
    assert_same_histories(histories(client, resumed.info.run_id), plain)


def test_ckpt_path_last_without_an_unfinished_run_starts_a_new_one(mlruns):
    cfg = compose_config([*TINY, "trainer.max_epochs=1", "ckpt_path=last"], mlruns)
    from src.train import train

    train(cfg)
    _, [run] = runs_of(mlruns)
    assert run.info.status == "FINISHED" and run.data.params["ckpt_path"] == "last"


# ---------------------------------------------------------------- statuses


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_ends_killed_with_a_checkpoint(stop, tmp_path):
    mlruns = tmp_path / "mlruns"
    process = start([*TINY, "trainer.max_epochs=500", "checkpoint_every_n_steps=2"], mlruns, tmp_path / "log")
    checkpoint = wait_for_checkpoint(process, mlruns)
    process.send_signal(stop)
    assert process.wait(timeout=300) != 0
    output = (tmp_path / "log").read_text()
    assert "checkpoint saved" in output, output[-3000:]
    client, [run] = runs_of(mlruns)
    assert run.info.status == "KILLED"
    assert "error.txt" in artifacts(client, run.info.run_id)
    assert torch.load(checkpoint, weights_only=True)["global_step"] > 0


def test_an_error_ends_the_run_failed_with_its_traceback(mlruns):
    from src.record import Record

    client = store.client_for(store_uri(mlruns))
    experiment = store.experiment_id(client, "triad", None)
    for error, status in [(ValueError("broken artifact"), "FAILED"), (KeyboardInterrupt(), "KILLED")]:
        run_id = client.create_run(experiment).info.run_id
        with pytest.raises(type(error)), Record(client, run_id, str(mlruns / "checkpoints")):
            raise error
        assert client.get_run(run_id).info.status == status
        assert "error.txt" in artifacts(client, run_id)
    run_id = client.create_run(experiment).info.run_id
    with pytest.raises(ValueError), Record(client, run_id, str(mlruns / "checkpoints")):
        raise ValueError("broken artifact")
    assert "broken artifact" in Path(client.download_artifacts(run_id, "error.txt")).read_text()


def test_a_diverging_run_stops_failed_naming_the_step_and_the_fix(mlruns):
    from src.recovery import Diverged
    from src.train import train

    cfg = compose_config([*TINY, "trainer.max_epochs=3", "optimizer.lr=1e30"], mlruns)
    with pytest.raises(Diverged) as caught:
        train(cfg)
    message = str(caught.value)
    assert "at step" in message and "optimizer.lr=" in message
    client, [run] = runs_of(mlruns)
    assert run.info.status == "FAILED"
    assert "diverged" in Path(client.download_artifacts(run.info.run_id, "error.txt")).read_text()


def test_divergence_between_logged_steps_stops_before_any_checkpoint_keeps_broken_weights(mlruns):
    # Losses are read in batches (no host wait per step): here only at checkpoints
    # (every 3 steps) and epoch ends, never at a logged step. Every checkpoint
    # written must still hold finite weights, and the message names the first bad step.
    import torch

    from src.recovery import Diverged
    from src.train import train

    overrides = [*TINY, "trainer.max_epochs=3", "optimizer.lr=1e30", "trainer.log_every_n_steps=1000",
                 "checkpoint_every_n_steps=3"]
    with pytest.raises(Diverged, match=r"at step \d+ \(epoch 0, batch \d+\)"):
        train(compose_config(overrides, mlruns))
    for path in mlruns.rglob("*.ckpt"):
        weights = torch.load(path, map_location="cpu", weights_only=True)["state_dict"].values()
        assert all(torch.isfinite(w).all() for w in weights), path
    _, [run] = runs_of(mlruns)
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_diverging_job_does_not_stop_the_sweep(mlruns):
    result = run_train(["-m", *TINY, "trainer.max_epochs=2", "optimizer.lr=1e30,0.003"], mlruns, check=False)
    # Hydra's basic launcher runs every job, then re-raises the first failure.
    assert result.returncode != 0 and "Training diverged" in result.stderr
    _, runs = runs_of(mlruns)
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]  # not the sweep's parent run
    assert [(r.data.params["optimizer.lr"], r.info.status) for r in jobs] == [("1e+30", "FAILED"), ("0.003", "FINISHED")]


# ---------------------------------------------------------------- parallel writers


@pytest.mark.slow
def test_four_parallel_jobs_share_one_new_sqlite_store(mlruns):
    result = run_train(
        ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "seed=0,1,2,3", *TINY, "trainer.max_epochs=2"],
        mlruns,
    )
    assert "database is locked" not in result.stdout + result.stderr
    client, runs = runs_of(mlruns)
    runs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]  # the jobs, not the sweep's parent
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        recorded = steps(client, run.info.run_id, "train/loss")
        assert len(recorded) == len(set(recorded)) == 2 * 13
        assert len(steps(client, run.info.run_id, "val/loss")) == 2


@pytest.mark.slow
def test_a_run_has_one_writer_and_a_killed_writer_does_not_block_its_resume(tmp_path):
    args = [*TINY, "data.batch_size=1", "trainer.max_epochs=2", "checkpoint_every_n_steps=5"]
    mlruns = tmp_path / "mlruns"
    first = start(args, mlruns, tmp_path / "first.log")
    wait_for_checkpoint(first, mlruns)
    # Paused, the first process is alive and holds its run for as long as the second needs to start.
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_train([*args, "ckpt_path=last"], mlruns, check=False)
    finally:
        first.send_signal(signal.SIGCONT)
    client, [run] = runs_of(mlruns)
    run_id = run.info.run_id
    assert second.returncode == 2, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"run {run_id}" in second.stderr and "Traceback" not in second.stderr
    assert "triad.resumed_from" not in run.data.tags  # refused before it recorded anything

    first.send_signal(signal.SIGKILL)  # its claim dies with it
    first.wait()
    result = run_train([*args, "ckpt_path=last"], mlruns)
    assert f"resuming run {run_id}" in result.stdout
    client, [run] = runs_of(mlruns)
    assert run.info.status == "FINISHED"
    per_epoch = int(run.data.params["data.train_size"])
    losses = steps(client, run_id, "train/loss")
    assert len(losses) == len(set(losses)) == 2 * per_epoch  # every step, each once
    for key in set(run.data.metrics) - {"epoch"}:  # epoch: logged with train and val metrics alike
        recorded = steps(client, run_id, key)
        assert len(recorded) == len(set(recorded)), key


# ---------------------------------------------------------------- security


def test_secret_looking_values_are_never_recorded(mlruns, monkeypatch):
    from src.train import train

    monkeypatch.setenv("TRIAD_TEST_API_TOKEN", "tok-7f3a9c")
    cfg = compose_config([*TINY, "trainer.max_epochs=1", "+db_password=pw-51e2b8", "+api=${oc.env:TRIAD_TEST_API_TOKEN}"], mlruns)
    train(cfg)
    client, [run] = runs_of(mlruns)
    recorded = {**run.data.params, **run.data.tags}
    for secret in ("tok-7f3a9c", "pw-51e2b8"):
        assert not [k for k, v in recorded.items() if secret in v or secret in k]
        for name in ("config.yaml", "overrides.txt"):
            assert secret not in Path(client.download_artifacts(run.info.run_id, name)).read_text()
    assert "db_password" not in run.data.params


def test_servers_in_the_docs_and_sessions_bind_to_localhost():
    for path in ("noxfile.py", "README.md"):
        text = (PROJECT_ROOT / path).read_text()
        assert "0.0.0.0" not in text
        for line in text.splitlines():
            if "mlflow server" in line or "session.run(\"mlflow\"" in line:
                assert "127.0.0.1" in line or "--host" not in line, f"{path}: {line}"
