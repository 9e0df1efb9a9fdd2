"""What each option of the config tree reads, serves and accepts, stated once.

validate.py reads these facts before anything heavy is imported (a bad command
answers in a second); the models read them to refuse what they cannot build, with
the same words. No torch here. Adding a model: its file in src/models/, its YAML
in conf/model/, and its line in MODELS.
"""

import math
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


def is_number(value) -> bool:
    """A finite int or float: inf passes every `> 0` test and nan fails them all silently."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_devices(value) -> bool:
    """What Lightning's `devices` takes: a count, -1 or 'auto' for all, or device indices."""
    if isinstance(value, str):
        value = value.strip()
        if value == "auto":
            return True
        try:
            value = [int(i) for i in value.split(",") if i.strip()] if "," in value else int(value)
        except ValueError:
            return False
    if isinstance(value, list | tuple) or type(value).__name__ == "ListConfig":
        return len(value) > 0 and all(is_int(i) and i >= 0 for i in value)
    return is_int(value) and (value >= 1 or value == -1)


def _in(low, high, integer=False, low_open=False, high_open=False):
    """A range check: a finite number (an int if asked) between low and high."""
    def ok(value) -> bool:
        if not (is_int(value) if integer else is_number(value)):
            return False
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        return above and below
    return ok


def _list_of(accepts):
    """A check of a non-empty list whose every item accepts passes."""
    def ok(value) -> bool:
        is_list = isinstance(value, list | tuple) or type(value).__name__ == "ListConfig"
        return is_list and len(value) > 0 and all(accepts(item) for item in value)
    return ok


def _batches_limit(value) -> bool:
    """Lightning's limit_*_batches: a whole number of batches, or a fraction of them (a float)."""
    return _in(1, None, integer=True)(value) or (isinstance(value, float) and _in(0, 1, low_open=True)(value))


# numpy's seeding (and so Lightning's seed_everything) takes 32-bit seeds.
MAX_SEED = 2**32 - 1
# A batch of more rows than any data set here has; a DataLoader's batch sampler refuses
# batch sizes above sys.maxsize (islice), and a batch is indexed with 64-bit integers.
MAX_BATCH_SIZE = 2**31 - 1
# MLflow's longest experiment name (mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH,
# mlflow 3.17; tests/test_validate.py checks it): a longer one fails once the store exists.
MAX_EXPERIMENT_NAME = 500
AT_LEAST_1, AT_LEAST_0 = "must be an integer >= 1.", "must be an integer >= 0."
SEED_RANGE = (_in(0, MAX_SEED, integer=True), f"the seed must be an integer >= 0 and <= {MAX_SEED} "
              "(what numpy's seeding takes).")
# The values each key takes, whichever option holds it: key -> (accepts, what to use).
# torch accepts many values outside these and trains on with a rate that is zero,
# negative or growing without bound (StepLR with step_size=-1 multiplies it by
# 1/gamma every step), or an inf that passes every `> 0` test.
RANGES = {
    "seed": SEED_RANGE,
    "objective": (lambda v: isinstance(v, str) and bool(v.strip()),
                  "the name of one metric the run logs, e.g. objective=val/acc (or null: the task's default)."),
    "optimizer.lr": (_in(0, None, low_open=True), "the learning rate must be a number > 0 and finite, e.g. 0.001."),
    "optimizer.weight_decay": (_in(0, None), "must be a number >= 0."),
    "optimizer.momentum": (_in(0, 1, high_open=True), "must be a number in [0, 1)."),
    "optimizer.betas": (lambda v: len(v) == 2 and all(_in(0, 1, high_open=True)(b) for b in v)
                        if isinstance(v, list | tuple) or type(v).__name__ == "ListConfig" else False,
                        "must be two numbers in [0, 1), e.g. [0.9, 0.999]."),
    "data.batch_size": (lambda v: v == "full" or _in(1, MAX_BATCH_SIZE, integer=True)(v),
                        f"use an integer >= 1 (at most {MAX_BATCH_SIZE}), or 'full' for batch gradient descent."),
    "data.val_fraction": (_in(0, 1, low_open=True, high_open=True), "must be a fraction in (0, 1), e.g. 0.2."),
    "data.test_fraction": (_in(0, 1, low_open=True, high_open=True), "must be a fraction in (0, 1), e.g. 0.2."),
    "data.split_seed": SEED_RANGE,
    "model.dropout": (_in(0, 1, high_open=True), "must be in [0, 1)."),
    **{f"model.{k}": (_in(1, None, integer=True), AT_LEAST_1)
       for k in ("hidden_size", "embed_dim", "d_model", "num_heads", "ff_size", "latent_dim", "channels")},
    **{f"model.{k}": (_in(0, None, integer=True), AT_LEAST_0) for k in ("num_layers", "head_hidden_size")},
    "model.hidden_sizes": (_list_of(_in(1, None, integer=True)), "a list of layer sizes, each an integer >= 1, "
                           "e.g. [64, 32] (or null: hidden_size x num_layers)."),
    "model.pooling": (lambda v: v in POOLINGS, f"use one of {', '.join(POOLINGS)}."),
    "trainer.max_epochs": (_in(1, None, integer=True), AT_LEAST_1),
    "trainer.accelerator": (lambda v: v in ACCELERATORS, f"use one of {', '.join(ACCELERATORS)}."),
    "trainer.devices": (is_devices, "use a number of devices >= 1, -1 or 'auto' (all there are), "
                        "or a list of device indices, e.g. [0, 1]."),
    "trainer.num_nodes": (_in(1, None, integer=True), AT_LEAST_1),
    "trainer.gradient_clip_val": (_in(0, None), "must be a number >= 0, or null."),
    "trainer.log_every_n_steps": (_in(1, None, integer=True), AT_LEAST_1),
    "trainer.limit_train_batches": (_batches_limit, "use a number of batches >= 1 or a fraction of them in (0, 1], "
                                    "e.g. 0.1 (0 trains on nothing; null: every batch)."),
    "checkpoint_every_n_steps": (_in(1, None, integer=True), AT_LEAST_1),
    "compile": (lambda v: isinstance(v, bool), "must be true or false."),
    # how the report judges a sweep (src/stats.py, src/compare.py)
    "compare.alpha": (_in(0, 1, low_open=True, high_open=True),
                      "the false-verdict rate must be a number in (0, 1), e.g. 0.05."),
    "compare.correction": (lambda v: v in ("holm", "none"), "use one of holm, none."),
    "compare.min_difference": (_in(0, None, low_open=True),
                               "must be a number > 0 in the objective's units (e.g. 0.01), or null."),
    "compare.max_seeds": (_in(1, None, integer=True), AT_LEAST_1),
    # the schedules' arguments (conf/scheduler/, src/schedulers.py)
    "scheduler.step_size": (_in(1, None, integer=True), "must be an integer >= 1 (optimizer steps between decays)."),
    "scheduler.gamma": (_in(0, 1, low_open=True), "must be a number in (0, 1], e.g. 0.5."),
    "scheduler.T_max": (_in(1, None, integer=True), "must be an integer >= 1, or left out (the run's steps)."),
    "scheduler.total_steps": (_in(1, None, integer=True), "must be an integer >= 1, or left out (the run's steps)."),
    "scheduler.eta_min": (_in(0, None), "must be a number >= 0, below optimizer.lr."),
    "scheduler.min_lr": (_in(0, None), "must be a number >= 0."),
    "scheduler.warmup_fraction": (_in(0, 1, high_open=True), "must be a fraction in [0, 1), e.g. 0.05."),
    "scheduler.pct_start": (_in(0, 1, low_open=True, high_open=True), "must be a fraction in (0, 1), e.g. 0.3."),
    "scheduler.max_lr": (_in(0, None, low_open=True), "must be a number > 0, e.g. 0.01."),
    "scheduler.div_factor": (_in(1, None), "must be a number >= 1 (the start is max_lr / div_factor)."),
    "scheduler.final_div_factor": (_in(1, None), "must be a number >= 1."),
    "scheduler.anneal_strategy": (lambda v: v in ("cos", "linear"), "use one of cos, linear."),
    "scheduler.cycle_momentum": (lambda v: isinstance(v, bool), "must be true or false."),
    "scheduler.factor": (_in(0, 1, low_open=True, high_open=True), "must be a number in (0, 1), e.g. 0.5."),
    "scheduler.patience": (_in(0, None, integer=True), "must be an integer >= 0 (validations without improvement)."),
    "scheduler.threshold": (_in(0, None), "must be a number >= 0."),
}

# The keys of RANGES whose null means something (Lightning's or triad's default); null for
# any other fails in the constructor that takes it, after the store and the run exist.
NULLABLE = frozenset({"seed", "objective", "model.hidden_sizes", "trainer.max_epochs", "trainer.log_every_n_steps",
                      "trainer.gradient_clip_val", "trainer.limit_train_batches", "checkpoint_every_n_steps",
                      "compare.min_difference"})


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
