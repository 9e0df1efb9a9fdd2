"""What a data set tells the rest of the system about itself."""

from dataclasses import dataclass

from src.catalog import INPUT_KINDS, TASKS


@dataclass(frozen=True)
class DataSpec:
    """The facts a model and a loss need, so that no user types a dimension.

    input_shape is (num_features,) for features, or (steps, num_features) for a
    sequence of feature vectors; (channels, height, width) for images and
    (seq_len,) for tokens. output_size is the number of classes for
    multiclass, 1 for binary and regression, the vocabulary for language models
    and the number of input values for reconstruction. Token id 0 is padding.
    """

    input_kind: str
    input_shape: tuple[int, ...]
    task: str
    output_size: int
    vocab_size: int = 0
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind {self.input_kind!r} is not one of {INPUT_KINDS}")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        if self.task == "language_model" and self.input_kind != "tokens":
            raise ValueError(f"a language model reads tokens, not input_kind={self.input_kind!r}")
        if self.input_kind == "tokens" and self.vocab_size < 2:
            raise ValueError("token inputs need a vocab_size of at least 2")

    def model_dims(self) -> dict:
        """The keyword arguments every model constructor takes from the data."""
        return {
            "input_kind": self.input_kind,
            "input_shape": tuple(self.input_shape),
            "output_size": self.output_size,
            "vocab_size": self.vocab_size,
            "task": self.task,
        }
