"""hydra/sweeper=optuna (conf/hydra/sweeper/optuna.yaml; sweep=optuna sets it): an Optuna
study driven by ask and tell, its trials launched as Hydra jobs (src/search.py), stored
so that it resumes, with trials pruned from their validation metric (src/trial.py).

Hydra imports this module at every start while it looks for plugins: it imports nothing
of triad or Optuna until a sweep starts.
"""

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    """Hydra's sweeper interface around src/search.py; the keyword arguments are
    conf/hydra/sweeper/optuna.yaml's keys."""

    def __init__(self, direction: str, study_name: str, storage: str | None, n_trials: int, n_jobs: int,
                 sampler, pruner, params=None, trial: int | None = None):
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs, self.sampler, self.pruner, self.params = n_trials, n_jobs, sampler, pruner, params
        self.config = self.hydra_context = self.launcher = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> list:
        from src.search import run

        return run(self, arguments)
