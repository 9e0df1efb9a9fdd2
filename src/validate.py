"""Checks of a composed config before any work: every problem at once, each
naming the key, the value and what would work. Imports nothing heavy, so a bad
command fails in a second.
"""

from omegaconf import DictConfig, OmegaConf

# What each data option gives: (input kind, task). None: known only from the
# config or the file (the user's data); judged from data.task and data.text_column
# when set, and checked again against the loaded DataSpec before any run.
DATA = {
    "digits": ("image", "multiclass"),
    "sentiment": ("tokens", "multiclass"),
    "iris": ("features", "multiclass"),
    "breast_cancer": ("features", "binary"),
    "diabetes": ("features", "regression"),
    "listops": ("tokens", "multiclass"),
    "adding": ("features", "regression"),
    "pydoc_lm": ("tokens", "language_model"),
    "csv": (None, None),
    "hf": (None, None),
}
# What each model option reads and which tasks its output can serve.
CLASSIFY_OR_REGRESS = {"multiclass", "binary", "regression"}
ANY_INPUT = {"features", "image", "tokens"}
MODELS = {
    "linear": ({"features", "image"}, CLASSIFY_OR_REGRESS),
    "mlp": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "transformer": ({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "bow": ({"tokens"}, CLASSIFY_OR_REGRESS),
    "cnn": (ANY_INPUT, CLASSIFY_OR_REGRESS),
    "rnn": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "lstm": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "gru": (ANY_INPUT, CLASSIFY_OR_REGRESS | {"language_model"}),
    "gpt": ({"tokens"}, {"language_model"}),
    "vae": ({"features", "image"}, {"reconstruction"}),
}
# Which tasks each loss option fits.
LOSSES = {
    "cross_entropy": {"multiclass", "language_model"},
    "bce": {"binary", "multiclass"},
    "mse": {"regression", "multiclass", "binary"},
    "mae": {"regression", "multiclass", "binary"},
    "huber": {"regression"},
    "focal": {"multiclass", "binary", "language_model"},
    "elbo": {"reconstruction"},
}
# Optimizers that re-evaluate the loss several times per step (a closure) and so
# need the same objective every time: the whole training split in one batch.
FULL_BATCH_OPTIMIZERS = {"torch.optim.LBFGS"}


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"The config has {len(problems)} problem(s); nothing was run:\n{lines}")


def _options_for(table: dict, fits) -> str:
    names = sorted(name for name, value in table.items() if fits(value))
    return ", ".join(names) if names else "none"


def data_facts(data: str | None, data_cfg=None) -> tuple[str | None, str | None]:
    """(input kind, task) of a data option; for the user's data, from its config (None if unknown)."""
    kind, task = DATA[data]
    if data_cfg is not None and kind is None:
        if not OmegaConf.is_missing(data_cfg, "task") and data_cfg.get("task"):
            task = data_cfg.task
        has_text = not OmegaConf.is_missing(data_cfg, "text_column") and data_cfg.get("text_column")
        kind = "tokens" if has_text else "features"
    return kind, task


def compatibility_problems(data: str | None, model: str | None, loss: str | None, data_cfg=None) -> list[str]:
    """Whether the chosen data, model and loss can work together (options unknown
    to the table, e.g. a user's own, are not judged; nor is what only the file knows)."""
    problems = []
    if data not in DATA:
        return problems
    kind, task = data_facts(data, data_cfg)
    return problems if task is None else _judge(data, kind, task, model, loss)


def check_loaded_data(choices: dict[str, str], input_kind: str, task: str) -> None:
    """After loading, before any run: the data's real kind and task against the model and loss
    (for the user's data, where the file decides them)."""
    problems = _judge(choices.get("data"), input_kind, task, choices.get("model"), choices.get("loss"))
    if problems:
        raise ConfigError(problems)


def _judge(data, kind: str, task: str, model: str | None, loss: str | None) -> list[str]:
    problems = []
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
    for key in cfg.data or {}:
        if OmegaConf.is_missing(cfg.data, key):
            problems.append(f"data.{key} is required: set it on the command line, e.g. data.{key}=...")
    target = cfg.optimizer.get("_target_")
    if target in FULL_BATCH_OPTIMIZERS and batch_size is not None and batch_size != "full":
        problems.append(
            f"data.batch_size={batch_size!r} with {target}: its line search and curvature history "
            "assume one fixed objective, which mini-batches change every step. Set data.batch_size=full."
        )
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
        problems.append(f"trainer.max_epochs={max_epochs!r}: must be an integer >= 1.")
    return problems


def validate(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Raise ConfigError listing every problem of the config, or return None."""
    problems = value_problems(cfg)
    problems += compatibility_problems(choices.get("data"), choices.get("model"), choices.get("loss"), cfg.data)
    if problems:
        raise ConfigError(problems)
