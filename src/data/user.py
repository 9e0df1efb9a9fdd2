"""The user's own data: a CSV file (`data=csv`) or a Hugging Face data set (`data=hf`).

Either holds one example per row: a target column, and either a text column
(word-level tokens, vocabulary from the training split only) or numeric feature
columns (standardised with the training split's mean and deviation). The task
is `task` when set, else inferred from the target column: text labels or
integers with few distinct values are classes (two: binary), other numbers are
regression values (standardised like the features).

Splits are fixed by split_seed and the fractions, or taken from a split column
(values train/val/test; "validation" counts as val). Every problem is raised
while loading, before any training, naming the file, the line or the column.
"""

import numpy as np
import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec
from src.data.text import Vocabulary
from src.validate import ConfigError

TASKS = ("multiclass", "binary", "regression")
# Integer targets with at most this many distinct values are class labels.
MAX_CLASSES = 50
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "dev": "val", "test": "test"}


class DataError(ConfigError):
    """The user's data cannot be used as configured; the message says where and why.
    A ConfigError, so `python -m src.train` prints it and exits 2 without a traceback."""

    def __init__(self, message: str):
        super().__init__([message])


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def infer_task(values: list[str]) -> str:
    """binary, multiclass or regression, from the raw target values."""
    distinct = set(values)
    if all(_is_int(v) for v in distinct) and len(distinct) <= MAX_CLASSES:
        return "binary" if len(distinct) == 2 else "multiclass"
    try:
        [float(v) for v in distinct]
    except ValueError:
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


class UserDataModule(TensorDataModule):
    """Shared part of csv and hf: columns -> tensors, task, splits and their checks."""

    def __init__(self, source, target_column, text_column, feature_columns, split_column, task,
                 seq_len, vocab_size, min_freq, batch_size, val_fraction, test_fraction, split_seed, use_dataloader):
        super().__init__(batch_size, use_dataloader)
        self.source, self.target_column, self.text_column = str(source), target_column, text_column
        self.feature_columns = list(feature_columns) if feature_columns else None
        self.split_column, self.task = split_column, task
        self.seq_len, self.vocab_size, self.min_freq = seq_len, vocab_size, min_freq
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def read(self) -> tuple[dict[str, list[str]], list[str]]:
        """Columns as lists of strings, and where each row is ("line 7", "row 6")."""
        raise NotImplementedError

    def _column(self, table: dict[str, list[str]], name: str, role: str) -> list[str]:
        if name not in table:
            raise DataError(f"{self.source}: no {role} column {name!r}; the columns are {list(table)}")
        return table[name]

    def load(self):
        # Checked here, not in __init__: Hydra's instantiate would wrap the error.
        if self.task is not None and self.task not in TASKS:
            raise DataError(f"data.task={self.task!r} is not one of {list(TASKS)} (or null to infer it)")
        if self.text_column is not None and self.feature_columns:
            raise DataError("set data.text_column or data.feature_columns, not both")
        table, where = self.read()
        if not where:
            raise DataError(f"{self.source} has a header but no rows")
        named = [(self.target_column, "target"), (self.text_column, "text"), (self.split_column, "split")]
        named += [(name, "feature") for name in self.feature_columns or []]
        for name, role in named:
            if name is not None:
                self._column(table, name, role)  # every missing column is named before any work
        if self.split_column is None and len(where) < 10:
            raise DataError(f"{self.source} has {len(where)} rows; splitting needs at least 10 (or a split_column)")
        raw_targets = self._column(table, self.target_column, "target")
        for row, value in enumerate(raw_targets):
            if value.strip() == "":
                raise DataError(f"{self.source}, {where[row]}: the target column {self.target_column!r} is empty")
        task = self.task or infer_task(raw_targets)
        targets, class_names = self._targets(raw_targets, task, where)
        index = self._split(table, targets, task, where)
        if task != "regression":
            self._check_labels(targets, class_names, index, where)
        inputs, spec_inputs = self._inputs(table, index, where)
        if task == "regression":
            train_y = targets[index["train"]]
            self.target_mean, self.target_std = float(train_y.mean()), float(train_y.std()) or 1.0
            targets = (targets - self.target_mean) / self.target_std
        splits = {name: (inputs[index[name]], targets[index[name]]) for name in SPLITS}
        spec = DataSpec(
            **spec_inputs,
            task=task,
            output_size=len(class_names) if task == "multiclass" else 1,
            class_names=class_names,
        )
        return splits, spec

    def _targets(self, raw: list[str], task: str, where: list[str]):
        if task == "regression":
            values = []
            for row, value in enumerate(raw):
                try:
                    values.append(float(value))
                except ValueError:
                    raise DataError(
                        f"{self.source}, {where[row]}: target {value!r} in column {self.target_column!r} "
                        "is not a number (task=regression)"
                    ) from None
            return torch.tensor(values, dtype=torch.float32), ()
        numeric = all(_is_int(v) for v in set(raw))
        names = sorted(set(raw), key=int if numeric else str)
        if task == "binary" and len(names) != 2:
            raise DataError(
                f"{self.source}: task=binary needs 2 distinct values in {self.target_column!r}, found {len(names)}"
            )
        ids = {name: i for i, name in enumerate(names)}
        return torch.tensor([ids[v] for v in raw], dtype=torch.long), tuple(names)

    def _split(self, table, targets: torch.Tensor, task: str, where: list[str]) -> dict[str, np.ndarray]:
        if self.split_column is None:
            labels = targets.numpy()
            # Stratify classes when each has enough examples to reach every split.
            counts = np.bincount(labels) if task != "regression" else np.array([0])
            smallest_split = len(labels) * min(self.val_fraction, self.test_fraction)
            stratify = counts.min() >= 5 and smallest_split >= len(counts)
            return split_indices(labels, self.val_fraction, self.test_fraction, self.split_seed, stratify)
        index = {name: [] for name in SPLITS}
        for row, value in enumerate(self._column(table, self.split_column, "split")):
            if value.strip().lower() not in SPLIT_NAMES:
                raise DataError(
                    f"{self.source}, {where[row]}: split {value!r} in column {self.split_column!r} "
                    f"is not one of {sorted(SPLIT_NAMES)}"
                )
            index[SPLIT_NAMES[value.strip().lower()]].append(row)
        empty = [name for name in SPLITS if not index[name]]
        if empty:
            raise DataError(f"{self.source}: column {self.split_column!r} gives no rows to {empty}")
        return {name: np.array(rows) for name, rows in index.items()}

    def _check_labels(self, targets, class_names, index, where) -> None:
        seen = set(targets[index["train"]].tolist())
        for split in ("val", "test"):
            for row in index[split]:
                if int(targets[row]) not in seen:
                    raise DataError(
                        f"{self.source}, {where[row]}: label {class_names[int(targets[row])]!r} is in the {split} "
                        "split but never in train, so no model can learn it; add training examples of it "
                        "or remove it"
                    )

    def _inputs(self, table, index, where) -> tuple[torch.Tensor, dict]:
        if self.text_column is not None:
            texts = self._column(table, self.text_column, "text")
            self.vocab = Vocabulary.build([texts[i] for i in index["train"]], self.vocab_size, self.min_freq)
            inputs = self.vocab.encode(texts, self.seq_len)
            return inputs, {"input_kind": "tokens", "input_shape": (self.seq_len,), "vocab_size": len(self.vocab)}
        skip = {self.target_column, self.split_column}
        names = self.feature_columns or [c for c in table if c not in skip]
        columns = []
        for name in names:
            values = []
            for row, value in enumerate(self._column(table, name, "feature")):
                try:
                    values.append(float(value))
                except ValueError:
                    raise DataError(self._not_a_number(table, name, value, where[row], skip)) from None
            columns.append(values)
        if not columns:
            raise DataError(f"{self.source}: no feature columns; set data.feature_columns or data.text_column")
        features = torch.tensor(columns, dtype=torch.float32).T  # (N, F)
        train = features[index["train"]]
        mean, std = train.mean(0), train.std(0).nan_to_num(1.0)
        inputs = (features - mean) / torch.where(std > 0, std, torch.ones_like(std))
        return inputs, {"input_kind": "features", "input_shape": (len(names),)}

    def _not_a_number(self, table, name: str, value: str, where: str, skip: set) -> str:
        """Why a feature column cannot be read, and what to set instead."""
        numeric = [c for c in table if c not in skip and c != name and all(_is_number(v) for v in table[c])]
        leave_out = f"data.feature_columns=[{','.join(numeric)}]" if numeric else "data.feature_columns=[...]"
        if looks_like_text(table[name]):
            return (f"{self.source}: column {name!r} holds text (e.g. {value!r}, {where}). Read it as text with "
                    f"data.text_column={name}, or leave it out with {leave_out}.")
        return (f"{self.source}, {where}: {value!r} in feature column {name!r} is not a number; feature columns "
                f"must be numeric. Leave it out with {leave_out}.")


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def looks_like_text(values: list[str]) -> bool:
    """Free text rather than labels: most values have several words, and most are distinct."""
    sample = values[:1000]
    wordy = sum(len(v.split()) >= 3 for v in sample)
    return wordy >= len(sample) / 2 and len(set(sample)) >= len(sample) / 2
