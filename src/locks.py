"""What keeps a write whole: file locks between processes, a store's (its tables,
experiments and data sets created one process at a time) and a run's (one writer
per run), which the kernel releases when their process ends, kill -9 included; and
a block that Ctrl-C and SIGTERM wait for.
"""

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: no file locks; create the store before parallel jobs
    fcntl = None


@contextmanager
def store_lock(uri: str):
    """An exclusive lock next to a SQLite store (no-op for servers), so that
    parallel jobs create its tables and experiments one at a time."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file but not its folder
    if fcntl is None:
        yield
        return
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def claim(checkpoint_dir: str, run_id: str | None) -> IO | None:
    """Make this process the one writer of the run whose checkpoints go to
    checkpoint_dir: an exclusive lock on `<checkpoint_dir>.lock`, or a ConfigError
    naming the process that holds it. Two processes training one run would record
    every step twice and overwrite each other's last.ckpt. The kernel releases the
    lock when its process ends, kill -9 included, so a dead writer never blocks a
    resume. None on Windows (no fcntl): no check there."""
    if fcntl is None:
        return None
    path = Path(f"{checkpoint_dir}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # "a+", not "w": a refused claim must not erase the holder's pid
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        from src.validate import ConfigError

        if run_id is None:  # two new runs given one output folder (a fixed hydra.run.dir)
            problem = f"{checkpoint_dir} is in use by {holder}, training another run. Give each run its own hydra.run.dir."
        else:
            problem = (f"ckpt_path=last: run {run_id} is being trained by {holder} (it holds {path}). "
                       "Wait for it to end or stop it (Ctrl-C), then run this command again.")
        raise ConfigError([problem]) from None
    lock.truncate(0)
    lock.write(f"process {os.getpid()}")
    lock.flush()
    return lock


@contextmanager
def uninterruptible():
    """Ctrl-C and SIGTERM wait until the block is done, then take effect (a second
    Ctrl-C while a run records how it ended would otherwise leave it RUNNING, and a
    SIGTERM dropped then would let a sweep go on)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda number, frame: held.append(number)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if held:
            signal.raise_signal(held[0])  # now, to the handler the block had replaced
