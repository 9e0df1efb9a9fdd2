"""Sweeps on a real single-node Slurm cluster started for the tests: munged, slurmctld and
slurmd in a temporary folder, jobs submitted by Hydra's submitit_slurm launcher with sbatch.

Without slurmdbd (and its database) `sacct` has no records: the tests watch the jobs with
`squeue` while they run and read Slurm's job-completion file after.
"""

import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src import PROJECT_ROOT
from tests.test_as_typed import readme_commands
from tests.test_scale import free_port
from tests.test_sweeps import check_sweep, sweep_record

PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # the daemons live in sbin
BINARIES = ("munged", "slurmctld", "slurmd", "slurmstepd", "sbatch", "squeue", "sinfo", "scancel", "srun")
MISSING = [b for b in BINARIES if shutil.which(b, path=PATH) is None]
PARTITION = "cpu"

# The README's commands (tests/test_as_typed.py skips them: they need this cluster).
SWEEP = ["-m", "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
         "hydra.launcher.timeout_min=10", "data=iris", "trainer.max_epochs=2", "seed=0,1,2"]
DDP = ["-m", "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={PARTITION}",
       "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=10", "data=iris",
       "trainer.max_epochs=2", "trainer=ddp_cpu", "trainer.devices=2"]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"Slurm or munge is not installed (no {', '.join(MISSING)}): "
                                                       "apt-get install slurm-wlm munge")]


def slurm_conf(folder: Path, munge_socket: Path) -> str:
    """A one-node cluster: this machine as controller and compute node, everything it
    writes under `folder`, no cgroups (proctrack/linuxproc, task/none) and no database."""
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": PATH}).stdout.splitlines()[0]  # NodeName=<host> CPUs=...
    host = node.split()[0].removeprefix("NodeName=")
    return "\n".join([
        "ClusterName=triadtest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        # munge's socket is compiled in (/run/munge); the auth and cred plugins take another
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={munge_socket}",
        f"SlurmUser={getpass.getuser()}",
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        # no slurmdbd: sacct finds nothing; each ended job is one line of this file
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt", f"JobCompLoc={folder / 'jobcomp.txt'}",
        "MpiDefault=none", "MailProg=/bin/true", "ReturnToService=2",
        f"{node} NodeAddr=127.0.0.1 State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tails(folder: Path) -> str:
    return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                     for log in sorted(folder.glob("*.log")))


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node Slurm cluster; yields the environment its commands need
    (SLURM_CONF) and the folder with its logs and job-completion file."""
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)  # munged refuses a key others can read
    munge_socket = folder / "munge.sock"
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, munge_socket))
    env = {**os.environ, "PATH": PATH, "SLURM_CONF": str(conf)}
    daemons = [start(["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={munge_socket}",
                      f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
                      f"--seed-file={folder / 'munged.seed'}"], folder / "munged.out", env)]
    try:
        deadline = time.monotonic() + 30
        while not munge_socket.exists():
            assert daemons[0].poll() is None and time.monotonic() < deadline, "munged did not start:\n" + tails(folder)
            time.sleep(0.1)
        daemons.append(start(["slurmctld", "-D", "-f", str(conf)], folder / "slurmctld.out", env))
        daemons.append(start(["slurmd", "-D", "-f", str(conf)], folder / "slurmd.out", env))
        deadline = time.monotonic() + 60
        while (state := subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                       env=env).stdout.strip()) != "idle":
            dead = [d.args[0] for d in daemons if d.poll() is not None]
            assert not dead and time.monotonic() < deadline, \
                f"the node is not idle (sinfo: {state!r}; exited: {dead}):\n" + tails(folder)
            time.sleep(0.5)
        yield env, folder
    finally:
        if len(daemons) == 3:  # cancel what is left, and let slurmd end its job steps
            subprocess.run(["scancel", f"--partition={PARTITION}"], env=env, capture_output=True)
            deadline = time.monotonic() + 30
            while subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip() \
                    and time.monotonic() < deadline:
                time.sleep(0.5)
        for daemon in reversed(daemons):
            stop(daemon)


def run_watched(args: list[str], mlruns: Path, env: dict) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -m src.train <args>` as a user on the cluster runs it; returns its result and
    every line `squeue` showed while it ran (job id, name, state)."""
    def queue() -> set[str]:
        return set(subprocess.run(["squeue", "-h", "-o", "%i %j %T"], env=env, capture_output=True,
                                  text=True).stdout.splitlines())

    full_env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "src.train", *args, f"paths.mlruns_dir={mlruns}"]
    log = mlruns / "command.log"
    seen = set()
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                seen |= queue()
                time.sleep(0.5)
        finally:
            stop(process)
    # The sweep ends on the jobs' results; their processes may still be exiting then.
    deadline = time.monotonic() + 60
    while (left := queue()) and time.monotonic() < deadline:
        seen |= left
        time.sleep(0.5)
    (mlruns / "squeue.txt").write_text("\n".join(sorted(seen)) + "\n")  # kept for a look after a failure
    result = subprocess.CompletedProcess(command, process.returncode, log.read_text(), "")
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-6000:]}"
    return result, seen


def completed(folder: Path) -> list[str]:
    """The job-completion records Slurm wrote (one line per job, `JobState=...`)."""
    path = folder / "jobcomp.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_readme_shows_the_commands_run_here():
    for args in (SWEEP, DDP):
        assert "python -m src.train " + " ".join(args) in readme_commands()


def test_a_sweep_runs_each_job_as_a_slurm_job(slurm, mlruns):
    env, folder = slurm
    before = len(completed(folder))
    _, seen = run_watched(SWEEP, mlruns, env)
    # an array job of 3 tasks (id_0, id_1, id_2), named after Hydra's job
    running = {line.split()[0].split("_")[-1] for line in seen if line.endswith(" RUNNING")}
    assert running == {"0", "1", "2"} and all(" train " in line for line in seen), seen
    done = completed(folder)[before:]
    assert len(done) == 3 and all("JobState=COMPLETED" in line for line in done), done
    client, parents, children = sweep_record(mlruns)
    assert len(parents) == 1 and parents[0].data.params["launcher"] == "submitit_slurm"
    assert sorted(r.data.params["seed"] for r in children) == ["0", "1", "2"]
    assert all(r.info.status == "FINISHED" for r in children)
    check_sweep(client, parents[0], children, 3)
    assert parents[0].data.tags["triad.verdicts"]


def test_ddp_runs_on_the_two_tasks_of_one_slurm_job(slurm, mlruns):
    env, folder = slurm
    before = len(completed(folder))
    run_watched(DDP, mlruns, env)
    done = completed(folder)[before:]
    assert len(done) == 1 and "JobState=COMPLETED" in done[0] and "ProcCnt=2" in done[0], done
    client, parents, children = sweep_record(mlruns)
    experiment = client.get_experiment_by_name("triad").experiment_id
    assert len(client.search_runs([experiment])) == 2  # the parent and one run, not one per rank
    (run,) = children
    assert run.info.status == "FINISHED" and parents[0].info.status == "FINISHED"
    assert run.data.params["trainer.strategy"] == "ddp" and run.data.params["trainer.devices"] == "2"
    assert {"val/loss", "val/acc", "test/acc"} <= set(run.data.metrics)
    # Each rank trained on half of iris's 97 rows: 2 steps an epoch (4 alone), 2 epochs.
    assert client.get_metric_history(run.info.run_id, "time/fit_s")[0].step == 4
    # Slurm started both ranks (one submitit log each); Lightning joined them, spawned nothing.
    logs = sorted(Path(parents[0].data.tags["triad.sweep_dir"]).glob(".submitit/*/*_log.out"))
    assert [p.name.split("_")[1] for p in logs] == ["0", "1"], logs
    assert not any("ddp_spawn" in p.read_text() for p in logs)
