"""Checks of a composed config before any work: every problem at once, each
naming the key, the value and what would work. Imports nothing heavy, so a bad
command fails in a second.
"""

from omegaconf import DictConfig

# What each data option gives: (input kind, task).
DATA = {
    "digits": ("image", "multiclass"),
    "sentiment": ("tokens", "multiclass"),
    "iris": ("features", "multiclass"),
    "breast_cancer": ("features", "binary"),
    "diabetes": ("features", "regression"),
}
# What each model option reads and which tasks its output can serve.
CLASSIFY_OR_REGRESS = {"multiclass", "binary", "regression"}
MODELS = {
    "linear": ({"features", "image"}, CLASSIFY_OR_REGRESS),
    "mlp": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "transformer": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
}
# Which tasks each loss option fits.
LOSSES = {
    "cross_entropy": {"multiclass", "language_model"},
    "mse": {"regression", "multiclass", "binary"},
}
# Numeric precisions triad supports (Lightning's names).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The config has {len(problems)} problem(s); nothing was run:\n{lines}")


def _options_for(table: dict, fits) -> str:
    names = sorted(name for name, value in table.items() if fits(value))
    return ", ".join(names) if names else "none"


def compatibility_problems(data: str | None, model: str | None, loss: str | None) -> list[str]:
    """Whether the chosen data, model and loss can work together (options unknown
    to the table, e.g. a user's own, are not judged)."""
    problems = []
    if data not in DATA:
        return problems
    kind, task = DATA[data]
    if model in MODELS:
        inputs, tasks = MODELS[model]
        if kind not in inputs or task not in tasks:
            problems.append(
                f"model={model} cannot read data={data} ({kind} inputs, {task} task). "
                f"Models that can: {_options_for(MODELS, lambda m: kind in m[0] and task in m[1])}."
            )
    if loss in LOSSES and task not in LOSSES[loss]:
        problems.append(
            f"loss={loss} does not fit the {task} task of data={data}. "
            f"Losses that do: {_options_for(LOSSES, lambda tasks: task in tasks)}."
        )
    return problems


def value_problems(cfg: DictConfig) -> list[str]:
    """Values out of their range, each with the range."""
    problems = []
    lr = cfg.optimizer.get("lr")
    if lr is not None and (not isinstance(lr, int | float) or lr <= 0):
        problems.append(f"optimizer.lr={lr!r}: the learning rate must be a number > 0, e.g. 0.001.")
    batch_size = cfg.data.get("batch_size")
    if batch_size is not None and batch_size != "full" and (not isinstance(batch_size, int) or batch_size < 1):
        problems.append(f"data.batch_size={batch_size!r}: use an integer >= 1, or 'full' for batch gradient descent.")
    dropout = cfg.model.get("dropout")
    if dropout is not None and (not isinstance(dropout, int | float) or not 0 <= dropout < 1):
        problems.append(f"model.dropout={dropout!r}: must be in [0, 1).")
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        problems.append(f"trainer.max_epochs={max_epochs!r}: must be an integer >= 1.")
    return problems


def scale_problems(cfg: DictConfig) -> list[str]:
    """Precision and the compile switch (where and how a run computes)."""
    problems = []
    precision = cfg.trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        problems.append(f"trainer.precision={precision!r}: use one of {', '.join(PRECISIONS)}.")
    if not isinstance(cfg.get("compile", False), bool):
        problems.append(f"compile={cfg.compile!r}: must be true or false.")
    return problems


def validate(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Raise ConfigError listing every problem of the config, or return None."""
    problems = value_problems(cfg) + scale_problems(cfg)
    problems += compatibility_problems(choices.get("data"), choices.get("model"), choices.get("loss"))
    if problems:
        raise ConfigError(problems)
