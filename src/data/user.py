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

import csv
import io
from pathlib import Path

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


class CsvDataModule(UserDataModule):
    """A CSV file with a header line; see the module docstring for the columns."""

    def __init__(
        self,
        path: str,
        target_column: str = "label",
        text_column: str | None = None,
        feature_columns: list[str] | None = None,
        split_column: str | None = None,
        task: str | None = None,
        seq_len: int = 64,
        vocab_size: int = 10000,
        min_freq: int = 1,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(path, target_column, text_column, feature_columns, split_column, task, seq_len,
                         vocab_size, min_freq, batch_size, val_fraction, test_fraction, split_seed, use_dataloader)
        self.path = Path(path).expanduser()

    def read(self):
        if not self.path.is_file():
            raise DataError(f"data.path={self.source}: no such file")
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            raise DataError(f"data.path={self.source}: cannot be read ({error.strerror})") from None
        try:
            text = raw.decode("utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not part of the header
        except UnicodeDecodeError as error:
            line = raw.count(b"\n", 0, error.start) + 1
            raise DataError(
                f"{self.source}, line {line}: not UTF-8 text (byte {raw[error.start]:#04x}); "
                "save the file as UTF-8 (CSV UTF-8 in a spreadsheet)"
            ) from None
        if "\x00" in text:  # a binary file, or UTF-16 read as UTF-8
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise DataError(f"{self.source}, line {line}: a NUL byte; this is not a UTF-8 CSV file")
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            return self._rows(reader)
        except csv.Error as error:  # e.g. a quote that is never closed, or text after a closing quote
            raise DataError(f"{self.source}, line {reader.line_num}: not valid CSV ({error})") from None

    def _rows(self, reader) -> tuple[dict[str, list[str]], list[str]]:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{self.source} is empty; it needs a header line and rows")
        table: dict[str, list[str]] = {name: [] for name in header}
        where = []
        for fields in reader:
            if not fields:  # blank line
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{self.source}, line {reader.line_num}: {len(fields)} fields, but the header has "
                    f"{len(header)} ({', '.join(header)})"
                )
            for name, value in zip(header, fields, strict=True):
                table[name].append(value)
            where.append(f"line {reader.line_num}")
        return table, where


class HFDataModule(UserDataModule):
    """A Hugging Face data set: a folder written by `save_to_disk` (read with
    `datasets.load_from_disk`, no network) or a name for `datasets.load_dataset`.
    A DatasetDict's own splits (train/validation/test) are kept."""

    def __init__(
        self,
        name: str,
        target_column: str = "label",
        text_column: str | None = None,
        feature_columns: list[str] | None = None,
        split_column: str | None = None,
        task: str | None = None,
        seq_len: int = 64,
        vocab_size: int = 10000,
        min_freq: int = 1,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(name, target_column, text_column, feature_columns, split_column, task, seq_len,
                         vocab_size, min_freq, batch_size, val_fraction, test_fraction, split_seed, use_dataloader)
        self.name = name
        local = Path(name).expanduser()
        self.path = local if local.exists() else None  # a local source for the MLflow record

    def read(self):
        try:
            import datasets
        except ImportError as error:
            raise ImportError("data=hf needs the datasets package: pip install -e '.[hf]'") from error
        loaded = datasets.load_from_disk(str(self.path)) if self.path else datasets.load_dataset(self.name)
        parts = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
        table: dict[str, list[str]] = {}
        where = []
        for split, part in parts:
            names = {}  # ClassLabel columns hold ids; read them back as their names
            for column, feature in part.features.items():
                if isinstance(feature, datasets.ClassLabel):
                    names[column] = feature.names
            for column in part.column_names:
                values = part[column]
                if column in names:
                    values = [names[column][v] for v in values]
                table.setdefault(column, []).extend("" if v is None else str(v) for v in values)
            if split is not None and len(parts) > 1:
                table.setdefault("__split__", []).extend([split] * len(part))
            where += [f"row {i}" + (f" of split {split!r}" if split else "") for i in range(len(part))]
        if "__split__" in table and self.split_column is None:
            self.split_column = "__split__"
        if not where:
            raise DataError(f"{self.source} is empty")
        return table, where
