"""What each option of the config tree reads, serves and accepts, stated once.

validate.py reads these facts before anything heavy is imported (a bad command
answers in a second); the models read them to refuse what they cannot build, with
the same words. No torch here. Adding a model: its file in src/models/, its YAML
in conf/model/, and its line in MODELS.
"""

from dataclasses import dataclass

INPUT_KINDS = ("features", "image", "tokens")
TASKS = ("multiclass", "binary", "regression", "language_model", "reconstruction")
CLASSIFY_OR_REGRESS = frozenset({"multiclass", "binary", "regression"})


@dataclass(frozen=True)
class Fit:
    """The input kinds an option reads and the tasks its output serves."""

    reads: frozenset[str]
    serves: frozenset[str]

    def takes(self, input_kind: str | None, task: str | None) -> bool:
        return input_kind in self.reads and task in self.serves


def _fit(reads: set[str], serves: set[str]) -> Fit:
    return Fit(frozenset(reads), frozenset(serves))


# conf/model/<option>.yaml -> what the network reads and serves.
MODELS = {
    "linear": _fit({"features", "image"}, CLASSIFY_OR_REGRESS),
    "mlp": _fit({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "transformer": _fit({"features", "image", "tokens"}, CLASSIFY_OR_REGRESS),
    "bow": _fit({"tokens"}, CLASSIFY_OR_REGRESS),
    "cnn": _fit(set(INPUT_KINDS), CLASSIFY_OR_REGRESS),
    "rnn": _fit(set(INPUT_KINDS), CLASSIFY_OR_REGRESS | {"language_model"}),
    "lstm": _fit(set(INPUT_KINDS), CLASSIFY_OR_REGRESS | {"language_model"}),
    "gru": _fit(set(INPUT_KINDS), CLASSIFY_OR_REGRESS | {"language_model"}),
    "gpt": _fit({"tokens"}, {"language_model"}),
    "vae": _fit({"features", "image"}, {"reconstruction"}),
}
# conf/data/<option>.yaml -> (input kind, task). None: known from the user's file
# only (or data.task and data.text_column when set), checked once it is loaded.
DATA = {
    "digits": ("image", "multiclass"),
    "digits_images": ("image", "reconstruction"),
    "sentiment": ("tokens", "multiclass"),
    "sentiment_binary": ("tokens", "binary"),
    "iris": ("features", "multiclass"),
    "breast_cancer": ("features", "binary"),
    "diabetes": ("features", "regression"),
    "listops": ("tokens", "multiclass"),
    "adding": ("features", "regression"),
    "pydoc_lm": ("tokens", "language_model"),
    "csv": (None, None),
    "hf": (None, None),
}
# conf/loss/<option>.yaml -> the tasks it fits.
LOSSES = {
    "cross_entropy": frozenset({"multiclass", "language_model"}),
    "bce": frozenset({"binary", "multiclass"}),
    "mse": frozenset({"regression", "multiclass", "binary"}),
    "mae": frozenset({"regression", "multiclass", "binary"}),
    "huber": frozenset({"regression"}),
    "focal": frozenset({"multiclass", "binary", "language_model"}),
    "elbo": frozenset({"reconstruction"}),
}
# The loss each task trains with when the config picks none (conf/train.yaml: loss: null).
TASK_LOSS = {
    "multiclass": "cross_entropy",
    "binary": "bce",
    "regression": "mse",
    "language_model": "cross_entropy",
    "reconstruction": "elbo",
}
# The model for the tasks the default model (mlp) cannot serve, used when the
# user picks nothing about the model (no model=, model.*=, experiment= or sweep=).
TASK_MODEL = {"language_model": "gpt", "reconstruction": "vae"}

# Values some model keys take: activation names (torch.nn class names), pooling.
ACTIVATIONS = {"gelu": "GELU", "relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}
POOLINGS = ("first", "mean")
# Optimizers that re-evaluate the loss several times per step (a closure) and so
# need the same objective every time: the whole training split in one batch.
FULL_BATCH_OPTIMIZERS = ("torch.optim.LBFGS",)
# The numeric precisions triad supports (Lightning names; 32 is 32-true) and accelerators.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "32")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def fit_problem(model: str, input_kind: str, task: str) -> str | None:
    """Why a model option cannot take this input kind or task, or None."""
    fit = MODELS[model]
    if fit.takes(input_kind, task):
        return None
    if input_kind not in fit.reads:
        return f"model={model} reads {', '.join(sorted(fit.reads))} inputs, not input_kind={input_kind!r}"
    return f"model={model} serves the tasks {', '.join(sorted(fit.serves))}, not task={task!r}"


def check_fit(model: str, input_kind: str, task: str) -> None:
    """For a model's constructor: refuse an input kind or task its option does not take."""
    if problem := fit_problem(model, input_kind, task):
        raise ValueError(problem)


def heads_problem(d_model: int, num_heads: int) -> str | None:
    """Attention splits d_model into num_heads equal parts."""
    if num_heads < 1 or d_model % num_heads == 0:
        return None
    divisor = max(h for h in range(1, num_heads + 1) if d_model % h == 0)
    return (f"model.d_model={d_model} is not divisible by model.num_heads={num_heads}: "
            f"use a num_heads that divides it, e.g. {divisor}.")
