"""A sweep in MLflow: one parent run per Hydra multirun, each job its child (the
job's record, src/record.py, tags it), ended with the comparison report.

The parent process creates the store, the experiment and the parent run before any
job starts (SQLite creation races otherwise, see STACK-FACTS). Its id reaches each
job through `on_job_start`, which Hydra calls in the process that runs the job: the
callback object travels with the job to joblib and submitit workers, so this works
whatever the launcher, and whatever environment a reused worker was started with.

Ctrl-C or SIGTERM stops a sweep whatever the launcher: the parent process exits 128 +
the signal, the processes its launcher started stop, and the parent and every child end
KILLED (after an error: FAILED), never RUNNING; the report covers the jobs that finished.
"""

import atexit
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Sweepers that run every seed the command names (triad: the basic grid, plus seeds_together and until_decided).
GRID_SWEEPERS = ("basic", "triad")


class SweepCallback(Callback):
    """Parent run for a multirun: created before the jobs, ended with the report."""

    def __init__(self) -> None:
        self.parent_id: str | None = None
        self.tracking_uri: str | None = None
        self.sweep_dir: str | None = None
        self.sweep_pid: int | None = None  # the process that runs the sweep (not a worker)
        self.stopped = False  # Ctrl-C or SIGTERM reached stop()
        self.job_running = False  # on_job_start came, on_job_end not yet

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from src import sweeper
        from src.validate import ConfigError

        try:  # an until_decided sweep the sweeper would refuse: refused before anything is recorded
            sweeper.check(config)
            if config.hydra.runtime.choices.get("hydra/sweeper") == "optuna":
                from src.search import finished_study  # Optuna's import, for its sweeps only

                if why := finished_study(config):  # a search that would run nothing: no empty parent run
                    raise ConfigError([why])
        except ConfigError as error:
            print(error, file=sys.stderr)
            raise SystemExit(2) from None  # Hydra turns a callback's exceptions into warnings, not an exit
        from src import store

        if not store.tracked(config):
            return  # logger=none (or csv, tensorboard alone): nothing is recorded, so no parent either
        from src import record, redact, store
        from src.identity import git_tags

        self.tracking_uri = config.logger.tracking_uri
        client = store.client_for(self.tracking_uri)
        exp_id = store.experiment_id(client, config.experiment_name, store.artifact_location(config.logger))
        choices = config.hydra.runtime.choices
        name = choices.get("sweep") or "multirun"
        self.sweep_dir = str(Path(config.hydra.sweep.dir).resolve())
        # quoted as a shell would: a value with spaces stays one override when read back
        overrides = shlex.join(redact.overrides(config.hydra.overrides.task))
        tags = {record.SWEEP: "parent", record.SWEEP_DIR: self.sweep_dir, record.OVERRIDES: overrides,
                "mlflow.source.name": "src.train", **git_tags()}
        # Before the parent exists: SIGTERM's default action would end this process at
        # once, without atexit, and leave the parent RUNNING.
        self.sweep_pid = os.getpid()
        self.catch_stops()
        atexit.register(self._end_early)  # a job raised, Ctrl-C, SIGTERM: the report still gets written
        run = client.create_run(exp_id, run_name=f"sweep-{name}", tags=redact.entries(tags))
        self.parent_id = run.info.run_id
        client.set_tag(self.parent_id, record.SWEEP_ID, self.parent_id)
        # What varies, what is tuned, and how: the report reads these back.
        params = {"sweep": name, "sweeper": choices.get("hydra/sweeper"), "launcher": choices.get("hydra/launcher"),
                  "compare.scientific": _listed(config.compare.scientific),
                  "compare.nuisance": _listed(config.compare.nuisance),
                  # the verdicts' rule, for the report to read back
                  "compare.alpha": _number(config.compare.alpha), "compare.correction": str(config.compare.correction),
                  "compare.min_difference": str(config.compare.min_difference)}
        # The search space: the sweep file's, with what the command line swept instead.
        space = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        for override in config.hydra.overrides.task:
            key, _, value = override.lstrip("+~").partition("=")
            if key in space or "," in value or "(" in value:
                space[key] = value
        params.update({f"search.{key}": value for key, value in space.items()})
        record.log_params(client, self.parent_id, params)
        os.environ[record.SWEEP_PARENT_ENV] = self.parent_id
        print(f"Sweep parent run {self.parent_id} (experiment '{config.experiment_name}')")
        given = config.get("seeds")  # seeds=[...]: each job trains all of them
        seeds = len(given) if given else seed_count(space.get("seed"))
        if choices.get("hydra/sweeper") in GRID_SWEEPERS and seeds is not None and not config.compare.until_decided:
            if note := seeds_note(seeds, choice_count(space, config.compare), config.compare):
                print(note)

    def catch_stops(self) -> None:
        if threading.current_thread() is threading.main_thread():  # the only one that may
            for number in STOP_SIGNALS:
                signal.signal(number, self.stop)

    def stop(self, signum: int, frame) -> None:
        """Ctrl-C or SIGTERM in the sweep's process: unwind it (joblib kills its loky workers
        when this passes through it) and exit 128 + the signal, as a shell reports a process
        that a signal ended; _end_early does the rest."""
        for number in STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)  # a second one must not cut the stop short
        self.stopped = True
        raise SystemExit(128 + signum)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        if self.parent_id:  # in the process that runs the job, a worker's included
            from src.record import SWEEP_PARENT_ENV

            os.environ[SWEEP_PARENT_ENV] = self.parent_id
        self.job_running = True
        from src import redact

        redact.mask_output(config)  # in the process that runs the job: a launcher's worker too
        redact.rewrite_hydra_files(config)  # Hydra has just written them, secrets as typed

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        self.job_running = False
        if os.getpid() == self.sweep_pid:  # the basic launcher's job: train() set its own SIGTERM handler
            self.catch_stops()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.parent_id:
            self._end("FINISHED")

    def _end_early(self) -> None:
        """At exit, when on_multirun_end never came: KILLED after Ctrl-C or SIGTERM, else
        FAILED (Hydra raised a job's error at the end of its batch, or the launcher failed)."""
        if self.parent_id:
            # Hydra's run_job catches a job's errors (the job FAILED, on_job_end follows) and
            # lets only SystemExit and KeyboardInterrupt through: a job still running in this
            # process (basic launcher) was stopped by a signal that train() handled.
            self._end("KILLED" if self.stopped or self.job_running else "FAILED")

    def _end(self, status: str) -> None:
        """End the parent (once), with the comparison report of the jobs that finished.
        Ending early, the processes the launcher started are stopped first, and the runs
        they left RUNNING end as the sweep does. A tracking server that does not answer is
        waited for (store.SERVER_WAIT_S); a store that cannot take it is said in one line."""
        from src import store

        # A tracking server that went away: the runs can be ended there only, once it is back.
        if not self.stopped and (reason := store.server_unreachable(self.tracking_uri)):
            print(f"The tracking server {self.tracking_uri} does not answer ({reason}): waiting up to "
                  f"{store.SERVER_WAIT_S // 60} min for it, to end sweep parent run {self.parent_id} and the runs "
                  "its jobs could not end.", file=sys.stderr)
            store.wait_for_server(self.tracking_uri, store.SERVER_WAIT_S)
        try:
            ended = self._end_runs(status)
        except Exception as error:  # the store still cannot take it: one line, not a traceback at exit
            print(f"Sweep parent run {self.parent_id} could not be ended in {self.tracking_uri} "
                  f"({type(error).__name__}: {str(error).splitlines()[0][:300]}); it and its unfinished "
                  "runs stay RUNNING there.", file=sys.stderr)
            return
        if ended:  # the status the store now holds; nothing when an earlier end already said it
            print(f"Sweep parent run {self.parent_id} {ended}.")

    def _end_runs(self, status: str) -> str | None:
        """End the parent with this status (and its report); the status the store then
        holds, or None where the parent was ended already (at exit after the sweep's end)."""
        from src import store
        from src.locks import uninterruptible
        from src.record import SWEEP_PARENT_ENV

        with uninterruptible():  # a second Ctrl-C must not leave the parent RUNNING
            from src import compare

            client = store.client_for(self.tracking_uri)
            if client.get_run(self.parent_id).info.status != "RUNNING":
                return None
            try:
                if status != "FINISHED":
                    stop_launched(self.sweep_dir)
                    for run in compare.sweep_runs(client, self.parent_id):
                        if run.info.status == "RUNNING":  # its process is gone: it cannot end it
                            client.set_terminated(run.info.run_id, status)
                try:
                    compare.report(client, compare.sweep_runs(client, self.parent_id),
                                   Path(self.sweep_dir) / "report", parent=client.get_run(self.parent_id),
                                   ended=status)
                except ValueError as error:  # nothing finished: nothing to compare
                    print(f"No report: {error}")
            finally:
                client.set_terminated(self.parent_id, status)
                os.environ.pop(SWEEP_PARENT_ENV, None)
        return client.get_run(self.parent_id).info.status


def stop_launched(folder: str) -> None:
    """Stop the processes that this one started for the sweep in `folder`, and return once
    they are gone (SIGKILL for any left after 10 s). A signal sent to the sweep's process
    alone (`kill`, a scheduler) reaches none of them, and submitit_local's job controllers
    and jobs would go on without a sweep. They name the folder on their command line.
    (joblib's loky workers name nothing; joblib kills them itself as the stop passes.)

    The jobs get SIGINT, as from Ctrl-C: one training stops at the end of its step, its
    run KILLED; the processes that started them (submitit's controllers) then end too."""
    if os.name != "posix":
        return  # no `ps`: what the launcher started is left as it is
    launched = _processes_naming(folder, os.getpid())
    for pid in launched.keys() - set(launched.values()):  # not a parent of another: a job
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 10
    while (left := launched.keys() & _processes_naming(folder).keys()) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _processes_naming(folder: str, ancestor: int | None = None) -> dict[int, int]:
    """Live processes other than this one whose command line names `folder` (and, given an
    ancestor, that descend from it): pid -> parent pid. A process that ended is no longer
    named: `ps` shows the leftover entry of one not yet reaped as `<defunct>`."""
    listing = subprocess.run(["ps", "-A", "-ww", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    parents, named = {}, []
    for line in listing.splitlines():
        pid, ppid, args = (line.split(None, 2) + [""])[:3]
        parents[int(pid)] = int(ppid)
        if folder in args and int(pid) != os.getpid():
            named.append(int(pid))

    def descends(pid: int) -> bool:
        while pid in parents and pid != ancestor:
            pid = parents[pid]
        return pid == ancestor

    return {pid: parents[pid] for pid in named if ancestor is None or descends(pid)}


def choice_count(space: dict[str, str], compare) -> int | None:
    """How many choices a grid sweep compares: the product of the counts of its swept
    scientific keys (every swept key but the seed and the nuisance ones, when not named);
    None where one cannot be counted."""
    nuisance = set(compare.nuisance or [])
    keys = list(compare.scientific) if compare.scientific else [k for k in space if k != "seed" and k not in nuisance]
    total = 1
    for key in keys:
        count = seed_count(space.get(key))
        if count is None:
            return None
        total *= count
    return total


def seeds_note(seeds: int, choices: int | None, compare) -> str | None:
    """Before a grid sweep starts: whether its seeds can decide a pair at all, and the
    sweep's pairs under Holm's correction (which the champion needs); None when they can."""
    from src import stats

    alpha = float(compare.alpha)
    pairs = choices * (choices - 1) // 2 if choices else 1
    alone, family = stats.runs_needed(alpha), stats.runs_needed(alpha / max(pairs, 1))
    holm = compare.correction == "holm" and pairs > 1
    if seeds >= (family if holm else alone):
        return None
    plural = "s" if seeds != 1 else ""
    if seeds < alone:
        said = (f"Note: {seeds} seed{plural} per choice cannot decide any pair: {seeds} vs {seeds} runs give a "
                f"permutation p >= {stats.smallest_p(seeds, seeds):.3g}, above compare.alpha={alpha:g}; the report "
                f"will say \"cannot decide\". {alone} seeds can decide a pair alone")
        said += f", {family} the {pairs} pairs of {choices} choices under Holm's correction" if holm else ""
    else:
        said = (f"Note: {seeds} seeds per choice can decide a pair alone at compare.alpha={alpha:g}, but not the "
                f"{pairs} pairs of {choices} choices under Holm's correction; {family} seeds can")
    if holm:
        said += " (the champion needs Holm's verdicts; compare.correction=none: each pair's)"
    return said + f". E.g. seed=range(0,{family if holm else alone})."


def seed_count(swept: str | None) -> int | None:
    """How many seeds a sweep's `seed` value names: "0,1,2" 3, "range(0,5)" 5, not swept 1;
    None for what cannot be counted (an Optuna distribution)."""
    if swept is None:
        return 1
    if match := re.fullmatch(r"range\((-?\d+),\s*(-?\d+)(?:,\s*(\d+))?\)", swept.strip()):
        start, stop, step = int(match[1]), int(match[2]), int(match[3] or 1)
        return len(range(start, stop, step))
    if "(" in swept:
        return None
    return len([value for value in swept.split(",") if value.strip()])


def _number(value) -> str:
    """A number as the until_decided design records it too (0.05, 1.0), so both write one value."""
    return str(float(value)) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _listed(value) -> str:
    """A list-valued config key as a short param: "optimizer,optimizer.lr" ("none" if unset)."""
    if not value:
        return "none"
    return ",".join(value) if OmegaConf.is_list(value) or isinstance(value, list) else str(value)
