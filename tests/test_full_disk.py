"""A disk without room while a run saves: the run stops with one line naming the file,
its checkpoints stay whole, and after freeing space ckpt_path=last resumes it."""

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from src import PROJECT_ROOT, store
from tests.conftest import run_train, store_uri

# iris: 97 training rows, 13 batches of 8 per epoch; last.ckpt every 2 steps.
ARGS = ["data=iris", "data.batch_size=8", "callbacks=none", "trainer.log_every_n_steps=1", "trainer.max_epochs=8",
        "checkpoint_every_n_steps=2", "log_model=false"]
STEPS = 8 * 13


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """An 8 MB tmpfs, unmounted after the test."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # once this process lets go of the store there


def fill(disk: Path) -> Path:
    """Fill the disk to its last byte."""
    filler = disk / "filler"
    with filler.open("wb") as file:
        try:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
        except OSError:
            pass
    return filler


def fail_on_a_full_disk(args: list[str], mlruns: Path, disk: Path, log: Path) -> tuple[int, str]:
    """`python -m src.train <args>` stopped at its first last.ckpt while the disk is
    filled, then left to go on: (its exit status, its output)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "src.train", f"paths.mlruns_dir={mlruns}", *args],
                                   cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            while not list(disk.rglob("last.ckpt")):
                assert process.poll() is None, log.read_text()[-3000:]
                time.sleep(0.01)
            process.send_signal(signal.SIGSTOP)  # the next save comes after the disk is full
            fill(disk)
            process.send_signal(signal.SIGCONT)
            return process.wait(timeout=300), log.read_text()
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("on_disk", ["checkpoints", "everything"])
def test_a_full_disk_stops_the_run_with_one_line_and_ckpt_path_last_resumes_it(on_disk, small_disk, tmp_path):
    # checkpoints: the run's folder on the small disk, the MLflow store elsewhere;
    # everything: the store too, which may then be unable to record the run's end.
    if on_disk == "checkpoints":
        mlruns, args = tmp_path / "mlruns", [*ARGS, f"hydra.run.dir={small_disk}/run"]
    else:
        mlruns, args = small_disk / "mlruns", ARGS
    status, output = fail_on_a_full_disk(args, mlruns, small_disk, tmp_path / "full.log")

    assert status == 1, output[-3000:]
    assert "Traceback" not in output and "Error executing job" not in output, output[-5000:]
    [line] = [line for line in output.splitlines() if "free space, then run the same command with ckpt_path=last" in line]
    assert str(small_disk) in line and ("No space left on device" in line or "disk is full" in line), line
    client = store.client_for(store_uri(mlruns))
    [run] = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    if on_disk == "checkpoints":
        assert run.info.status == "FAILED" and f"run {run.info.run_id} FAILED" in line
    else:  # FAILED where deleting the half-written file left room for the store to say so
        said = f"Run {run.info.run_id} stays RUNNING: its store could not record it FAILED"
        assert run.info.status == "FAILED" or (run.info.status == "RUNNING" and said in output), output[-3000:]
    checkpoints = Path(run.data.tags["triad.checkpoint_dir"])
    assert not list(checkpoints.glob("*.tmp")), "a half-written checkpoint was left behind"
    saved = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert 0 < saved["global_step"] < STEPS
    for path in checkpoints.glob("*.ckpt"):
        torch.load(path, map_location="cpu", weights_only=True)  # every one of them whole

    (small_disk / "filler").unlink()
    result = run_train([*args, "ckpt_path=last"], mlruns)
    assert f"resuming run {run.info.run_id} from {checkpoints / 'last.ckpt'}" in result.stdout
    [resumed] = client.search_runs([run.info.experiment_id])
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    # every step once, from the first epoch to the last: the record before the stop, the rest after
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert len(steps) == STEPS and steps == list(range(steps[0], steps[0] + STEPS))
    epochs = {m.value for m in client.get_metric_history(run.info.run_id, "epoch")}
    assert set(range(8)) <= epochs and saved["epoch"] < 7  # (the test logs at epoch 8)


def test_a_save_beyond_a_file_size_limit_keeps_the_previous_checkpoint_whole(tmp_path):
    from src.recovery import OutOfSpace, save_whole

    path = tmp_path / "last.ckpt"
    save_whole({"step": 1}, path)
    previous = path.read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(previous) + 10_000, limits[1]))
    try:
        with pytest.raises(OutOfSpace) as caught:
            save_whole({"step": 2, "weights": torch.zeros(100_000)}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert str(caught.value) == (f"File too large while saving {path}; the checkpoints saved before (last.ckpt) "
                                 "are whole: free space, then run the same command with ckpt_path=last")
    assert path.read_bytes() == previous and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_a_run_whose_store_cannot_record_its_end_says_so_in_one_line(mlruns, capsys, monkeypatch):
    from src.record import Record

    client = store.client_for(store_uri(mlruns))
    run_id = client.create_run(store.experiment_id(client, "triad", None)).info.run_id

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(client, "set_terminated", full)
    with pytest.raises(ValueError, match="the training's error"), Record(client, run_id, str(mlruns / "checkpoints")):
        raise ValueError("the training's error")
    assert capsys.readouterr().err == (f"Run {run_id} stays RUNNING: its store could not record it FAILED "
                                       "(OSError: [Errno 28] No space left on device).\n")
    assert store.client_for(store_uri(mlruns)).get_run(run_id).info.status == "RUNNING"


def test_metrics_that_find_no_room_in_the_store_stop_the_run_naming_it(mlruns, monkeypatch):
    from mlflow.exceptions import MlflowException

    from src.recovery import MLFlowLogger, OutOfSpace

    client = store.client_for(store_uri(mlruns))
    run_id = client.create_run(store.experiment_id(client, "triad", None)).info.run_id
    logger = MLFlowLogger(experiment_name="triad", tracking_uri=store_uri(mlruns), run_id=run_id)

    def full(*args, **kwargs):
        raise MlflowException("could not write") from OSError(28, "No space left on device")

    monkeypatch.setattr(logger.experiment, "log_batch", full)
    logger.log_metrics({"train/loss": 1.0}, step=1)
    with pytest.raises(OutOfSpace) as caught:
        logger.flush()
    assert str(caught.value) == (f"No space left on device while recording run {run_id}'s metrics in "
                                 f"{store_uri(mlruns)}; the checkpoints saved before are whole: free space, "
                                 "then run the same command with ckpt_path=last")
    logger.log_metrics({"train/loss": 1.0}, step=2)
    logger.finalize("failed")  # on the way out of a failed fit: the first error is the one to report
