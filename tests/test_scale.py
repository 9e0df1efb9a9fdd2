"""Scaling up: DDP processes, launchers, a real tracking server, the logged model, src.eval.

Everything runs for real (gloo processes, Hydra launchers, an `mlflow server` on
127.0.0.1); GPU paths are marked `gpu` and skip without CUDA.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from src import PROJECT_ROOT
from tests.conftest import run_train, store_uri
from tests.test_train import artifact_paths

TINY = ["data=iris", "trainer.max_epochs=2", "callbacks=none", "model.hidden_size=16"]


def gpu(test):
    """Marked `gpu` (`pytest -m gpu` selects these) and skipped without a CUDA device."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))


def runs_in(uri: str):
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("triad")
    return client, client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_eval(args: list[str], mlruns: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-m", "src.eval", f"paths.mlruns_dir={mlruns}", *args],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    return result


# --- configuration checks (fast) -------------------------------------------------

def test_a_bad_precision_lists_the_supported_ones(mlruns):
    result = run_train(["trainer.precision=64", "compile=maybe"], mlruns, check=False)
    assert result.returncode == 2
    assert "trainer.precision=64" in result.stderr and "32-true, bf16-mixed, 16-mixed" in result.stderr
    assert "compile='maybe'" in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_an_unreachable_server_fails_fast_naming_it(mlruns):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = run_train(TINY, mlruns, env={"MLFLOW_TRACKING_URI": uri}, check=False)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    assert uri in result.stderr and "no MLflow server answers" in result.stderr
    assert "Epoch" not in result.stdout  # failed before training
    print(f"failed after {seconds:.1f} s")  # informative; no timed assertion


def test_a_job_that_lost_its_server_is_told_from_the_error_even_once_the_server_is_back(monkeypatch):
    """A restarted server answers again within seconds: the job's message must not hang on
    whether it answers by the time the job reports."""
    from src.store import lost_connection

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Exception) as raised:  # MLflow wraps requests' ConnectionError
        MlflowClient(uri).get_run("0" * 32)
    assert lost_connection(raised.value, uri) == "[Errno 111] Connection refused"
    assert lost_connection(raised.value, "http://127.0.0.1:1") is None  # another server's
    assert lost_connection(ValueError("a job's own error"), uri) is None
    # A server killed mid-request: it read the request and closed the connection without an answer.
    def read_and_close(listening: socket.socket) -> None:
        connection = listening.accept()[0]
        connection.recv(65536)
        connection.close()

    with socket.create_server(("127.0.0.1", 0)) as listening:
        closing = f"http://127.0.0.1:{listening.getsockname()[1]}"
        threading.Thread(target=read_and_close, args=(listening,), daemon=True).start()
        with pytest.raises(Exception) as raised:
            MlflowClient(closing).get_run("0" * 32)
    assert lost_connection(raised.value, closing) == "Remote end closed connection without response"


def test_only_global_rank_zero_creates_a_run(monkeypatch):
    from src.identity import is_global_rank_zero

    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_global_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's ddp gives the re-run command
    assert not is_global_rank_zero()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("NODE_RANK", "1")  # first process of the second machine
    assert not is_global_rank_zero()
    monkeypatch.setenv("RANK", "0")  # torchrun's global rank decides
    assert is_global_rank_zero()


# --- DDP on CPU processes (gloo) -------------------------------------------------

@pytest.mark.slow
def test_ddp_cpu_records_one_run_with_test_metrics(mlruns):
    run_train([*TINY, "trainer=ddp_cpu", "trainer.devices=2"], mlruns)
    client, runs = runs_in(store_uri(mlruns))
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp"
    assert {"test/acc", "test/loss", "val/acc_best"} <= set(run.data.metrics)
    artifacts = artifact_paths(client, run.info.run_id)
    assert {"checkpoints/best.ckpt", "plots/confusion_matrix.png"} <= artifacts
    checkpoints = list(mlruns.glob("outputs/**/checkpoints/*.ckpt"))
    assert sorted(p.name for p in checkpoints) == ["best.ckpt", "last.ckpt"]  # one writer


def jobs_of_one_sweep(runs):
    """The job runs of a multirun, checked to be the children of its one parent run."""
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    jobs = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in jobs)
    return jobs


@pytest.mark.slow
def test_ddp_in_a_multirun_spawns_and_records_one_run_per_job(mlruns):
    result = run_train(["-m", "seed=0,1", *TINY, "trainer=ddp_cpu", "trainer.devices=2"], mlruns)
    assert "runs as ddp_spawn inside a multirun" in result.stdout
    client, runs = runs_in(store_uri(mlruns))
    runs = jobs_of_one_sweep(runs)
    assert sorted(r.info.run_name for r in runs) == ["mlp-cross_entropy-adam-s0", "mlp-cross_entropy-adam-s1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.params["trainer.strategy"] == "ddp_spawn" for r in runs)
    for run in runs:  # the best checkpoint and the results came back from the workers
        assert "test/acc" in run.data.metrics and "val/acc_best" in run.data.metrics
        assert "checkpoints/best.ckpt" in artifact_paths(client, run.info.run_id)
    assert len(list(mlruns.glob("multiruns/*/*"))) == 1  # no replayed sweep


DDP_SHARDS = """
import sys, torch, pytorch_lightning as pl
from src.data.base import SPLITS, TensorDataModule
from src.data.spec import DataSpec

class Numbered(TensorDataModule):
    # 101 examples whose single feature is their number
    def load(self):
        x, y = torch.arange(101.0).unsqueeze(1), torch.zeros(101, dtype=torch.long)
        return {s: (x, y) for s in SPLITS}, DataSpec("features", (1,), "multiclass", 2, ("a", "b"))

class Record(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 2)
        self.seen = []
    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0])
        return self.layer(batch[0]).sum()
    def on_train_epoch_end(self):
        mine = torch.cat(self.seen)
        everyone = self.all_gather(mine)  # (world, n, 1)
        if self.global_rank == 0:
            torch.save(everyone, sys.argv[1])
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

if __name__ == "__main__":
    pl.seed_everything(0)
    data = Numbered(batch_size=8)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
    trainer.fit(Record(), datamodule=data)
"""


@pytest.mark.slow
def test_each_ddp_process_sees_its_own_shard(tmp_path):
    out, script = tmp_path / "seen.pt", tmp_path / "shards.py"
    script.write_text(DDP_SHARDS)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, str(script), str(out)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = torch.load(out)  # (process, example, feature): the example numbers each process trained on
    assert seen.shape[:2] == (2, 51)  # 101 examples: 51 each, the last one padded by the sampler
    first, second = (set(part.flatten().int().tolist()) for part in seen)
    assert first | second == set(range(101))  # together: the whole split
    assert len(first & second) <= 1  # apart: only the sampler's padding example


# --- Hydra launchers -------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_launcher_sweep_records_each_job(launcher, mlruns):
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    run_train(["-m", "seed=0,1", f"hydra/launcher={launcher}", *extra, *TINY], mlruns)
    client, runs = runs_in(store_uri(mlruns))
    runs = jobs_of_one_sweep(runs)
    assert sorted(r.info.run_name for r in runs) == ["mlp-cross_entropy-adam-s0", "mlp-cross_entropy-adam-s1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    # ${triad_root:} resolved in the worker processes too
    config = client.download_artifacts(runs[0].info.run_id, "config.yaml", str(mlruns))
    assert f"root_dir: {PROJECT_ROOT}" in Path(config).read_text()


# --- a team's tracking server ----------------------------------------------------

@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with its own store and artifact folder."""
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--serve-artifacts", "--artifacts-destination", str(artifacts),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start in 2 minutes")
        yield uri, artifacts
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_tracking_server_receives_params_metrics_and_artifacts(mlflow_server, mlruns):
    uri, artifacts = mlflow_server
    run_train([*TINY, "trainer.log_every_n_steps=1"], mlruns, env={"MLFLOW_TRACKING_URI": uri})
    assert not (mlruns / "mlflow.db").exists()  # nothing went to the local store
    client, runs = runs_in(uri)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["model"] == "mlp" and "test/acc" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 2
    assert {"config.yaml", "checkpoints/best.ckpt"} <= artifact_paths(client, run.info.run_id)
    assert list(artifacts.rglob("best.ckpt"))  # the server stored the files itself


# --- the logged model and src.eval -----------------------------------------------

@pytest.mark.slow
def test_logged_model_predicts_and_eval_reproduces_the_test_metric(mlruns):
    import mlflow

    run_train([*TINY, "trainer=cpu"], mlruns)
    uri = store_uri(mlruns)
    client, (run,) = runs_in(uri)
    assert "time/log_model_s" in run.data.metrics
    mlflow.set_tracking_uri(uri)
    (output,) = run.outputs.model_outputs
    model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    new_inputs = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    answers = model.predict(new_inputs)  # iris: the species and a probability for each
    assert list(answers.columns) == ["prediction", "probability_setosa", "probability_versicolor",
                                     "probability_virginica"] and len(answers) == 7
    assert answers["prediction"].isin(["setosa", "versicolor", "virginica"]).all()
    assert np.allclose(answers.drop(columns="prediction").sum(axis=1), 1.0)

    stray_store = (PROJECT_ROOT / "mlflow.db").exists()
    run_eval([f"run_id={run.info.run_id}"], mlruns)
    assert (PROJECT_ROOT / "mlflow.db").exists() == stray_store  # nothing written to MLflow's default store
    _, runs = runs_in(uri)
    (evaluation,) = [r for r in runs if r.info.run_id != run.info.run_id]
    assert evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["triad.evaluated_run_id"] == run.info.run_id
    assert evaluation.data.metrics["test/acc"] == run.data.metrics["test/acc"]
    assert evaluation.data.metrics["test/loss"] == run.data.metrics["test/loss"]
    assert "mlflow.parentRunId" not in client.get_run(run.info.run_id).data.tags  # original untouched


# --- GPU paths (skip without CUDA) -----------------------------------------------

@gpu
@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["trainer=gpu"],
        ["trainer=gpu", "trainer.precision=bf16-mixed"],
        ["trainer=gpu", "compile=true"],
        ["trainer=ddp", "trainer.devices=1"],
    ],
    ids=["gpu", "bf16", "compile", "ddp-1"],
)
def test_gpu_paths_record_a_finished_run(args, mlruns):
    run_train([*TINY, *args], mlruns)
    client, runs = runs_in(store_uri(mlruns))
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert "test/acc" in runs[0].data.metrics
    assert "checkpoints/best.ckpt" in artifact_paths(client, runs[0].info.run_id)
