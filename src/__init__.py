"""triad: compare architectures, losses and optimizers with evidence."""

import os
import time
from pathlib import Path

from omegaconf import OmegaConf

# When the command started: `python -m src.train` imports this package first.
# (Not the process's creation time: `bash -c "pip install ... && python ..."`
# runs python in bash's own process, created before the installs.)
STARTED = time.time()

# The repository root (the folder holding conf/ and mlruns/). Found from this file
# so that runs land in the project's store wherever the command is started.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# MLflow's usage telemetry sends data to the internet (these machines are offline)
# and sets/unsets environment variables from a background thread, which races with
# triad's scan of the environment for secrets. Users may still turn it on.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow's INFO lines (creating the store's tables, validating the model's input
# example) and its download bars while logging a model are no news to a user.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# `${triad_root:}` in conf/paths/default.yaml. Registered on import so that every
# process running a job (joblib and submitit workers too) can resolve it.
if not OmegaConf.has_resolver("triad_root"):
    OmegaConf.register_new_resolver("triad_root", lambda: str(PROJECT_ROOT))

# MLFLOW_TRACKING_URI=http://user:password@host: the user and password move to MLflow's
# own variables before anything reads the URI, in every process (src/store.py).
from src.store import split_credentials  # noqa: E402

split_credentials()
