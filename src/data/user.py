"""The user's own data: a CSV or Parquet file (`data=csv`) or a Hugging Face data set (`data=hf`).

Either holds one example per row: a target column, and either a text column
(word-level tokens, vocabulary from the training split only) or feature columns
of numbers, labels and missing cells, made into features by scikit-learn
(src/data/table.py says how each kind of column is read). The task is `task`
when set, else inferred from the target column: text labels or integers with
few distinct values are classes (two: binary), other numbers are regression
values (standardised for training). Rows without a target are dropped.

Splits are fixed by split_seed and the fractions, or taken from a split column
(values train/val/test; "validation" counts as val). Every problem is raised
while loading, before any training, naming the file, the line or the column.
What was decided from the data (column kinds, cells imputed, rows dropped) is
kept in `inferred`, which the run records as params.
"""

import numpy as np
import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec
from src.data.table import (
    MISSING_POLICIES,
    SCALINGS,
    WHY_UNUSABLE,
    RawTable,
    is_integer,
    is_missing,
    is_number,
    kind_of,
    preprocessor,
)
from src.data.text import RawText, Vocabulary
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


def infer_task(values: list[str]) -> str:
    """binary, multiclass or regression, from the raw target values."""
    distinct = set(values)
    if all(is_integer(v) for v in distinct) and len(distinct) <= MAX_CLASSES:
        return "binary" if len(distinct) == 2 else "multiclass"
    try:
        [float(v) for v in distinct]
    except ValueError:
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


class UserDataModule(TensorDataModule):
    """Shared part of csv and hf: columns -> tensors, task, splits and their checks."""

    def __init__(self, source, target_column, text_column, feature_columns, categorical_columns, missing, scale,
                 split_column, task, seq_len, vocab_size, min_freq, batch_size, val_fraction, test_fraction,
                 split_seed, use_dataloader):
        super().__init__(batch_size, use_dataloader)
        self.source, self.target_column, self.text_column = str(source), target_column, text_column
        self.feature_columns = list(feature_columns) if feature_columns else None
        self.categorical_columns = list(categorical_columns) if categorical_columns else []
        self.missing, self.scale = missing, scale
        self.split_column, self.task = split_column, task
        self.seq_len, self.vocab_size, self.min_freq = seq_len, vocab_size, min_freq
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.inferred: dict = {}  # what was decided from the data: recorded as params, printed once

    def read(self) -> tuple[dict[str, list[str]], list[str]]:
        """Columns as lists of strings, and where each row is ("line 7", "row 6")."""
        raise NotImplementedError

    def _column(self, table: dict[str, list[str]], name: str, role: str) -> list[str]:
        if name not in table:
            raise DataError(f"{self.source}: no {role} column {name!r}; the columns are {list(table)}")
        return table[name]

    def _check_settings(self) -> None:
        # Checked here, not in __init__: Hydra's instantiate would wrap the error.
        if self.task is not None and self.task not in TASKS:
            raise DataError(f"data.task={self.task!r} is not one of {list(TASKS)} (or null to infer it)")
        if self.missing not in MISSING_POLICIES:
            raise DataError(f"data.missing={self.missing!r} is not one of {list(MISSING_POLICIES)}")
        if self.scale not in SCALINGS:
            raise DataError(f"data.scale={self.scale!r} is not one of {list(SCALINGS)}")
        if self.text_column is not None and self.feature_columns:
            raise DataError("set data.text_column or data.feature_columns, not both")

    def load(self):
        self._check_settings()
        table, where = self.read()
        if not where:
            raise DataError(f"{self.source} has a header but no rows")
        named = [(self.target_column, "target"), (self.text_column, "text"), (self.split_column, "split")]
        named += [(name, "feature") for name in (self.feature_columns or []) + self.categorical_columns]
        for name, role in named:
            if name is not None:
                self._column(table, name, role)  # every missing column is named before any work
        table, where = self._drop_rows_without_target(table, where)
        features = None if self.text_column is not None else self._feature_kinds(table, where)
        if features is not None:
            table, where = self._apply_missing_policy(table, where, features)
        if self.split_column is None and len(where) < 10:
            raise DataError(f"{self.source} has {len(where)} rows; splitting needs at least 10 (or a split_column)")
        raw_targets = table[self.target_column]
        task = self.task or infer_task(raw_targets)
        targets, class_names = self._targets(raw_targets, task, where)
        index = self._split(table, targets, task, where)
        if task != "regression":
            self._check_labels(targets, class_names, index, where)
        if features is None:
            inputs, spec_inputs = self._text_inputs(table, index)
        else:
            inputs, spec_inputs = self._table_inputs(table, index, features)
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

    def recorded_params(self) -> dict[str, str]:
        def shown(value) -> str:
            text = ",".join(value) if isinstance(value, list) else str(value)
            return text if len(text) <= 500 else f"{text[:480]}... ({len(value)} in all)"

        return {f"data.inferred.{key}": shown(value) for key, value in self.inferred.items()}

    def inferred_summary(self) -> str | None:
        facts = self.inferred
        parts = []
        if "numeric_columns" in facts:
            categorical = ", ".join(facts["categorical_columns"]) or "none"
            parts.append(f"{len(facts['numeric_columns'])} numeric columns, categorical: {categorical}")
            if self.missing == "drop":
                parts.append(f"{facts['rows_dropped']} rows with missing cells dropped")
            else:  # impute, or error (which stopped at the first one)
                parts.append(f"{facts['missing_values']} missing cells imputed")
        if facts.get("rows_without_target"):
            parts.append(f"{facts['rows_without_target']} rows without a {self.target_column!r} dropped")
        return f"data: {'; '.join(parts)}" if parts else None

    def _keep_rows(self, table, where, keep: list[int]):
        return {name: [values[i] for i in keep] for name, values in table.items()}, [where[i] for i in keep]

    def _drop_rows_without_target(self, table, where):
        """Rows whose target is missing teach nothing: dropped, and counted."""
        keep = [row for row, value in enumerate(table[self.target_column]) if not is_missing(value)]
        self.inferred["rows_without_target"] = len(where) - len(keep)
        if not keep:
            raise DataError(f"{self.source}: the target column {self.target_column!r} is empty on every row")
        return self._keep_rows(table, where, keep)

    def _feature_kinds(self, table, where) -> dict[str, str]:
        """numeric or categorical for each feature column; the ones no model can use
        are named, all in one message, with what to set instead."""
        skip = {self.target_column, self.split_column}
        names = self.feature_columns or [c for c in table if c not in skip]
        if not names:
            raise DataError(f"{self.source}: no feature columns; set data.feature_columns or data.text_column")
        kinds = {name: kind_of(table[name], name in self.categorical_columns) for name in names}
        for name in names:
            if kinds[name] == "categorical" and name not in self.categorical_columns:
                self._check_not_mixed(name, table[name], where)
        unusable = {name: kind for name, kind in kinds.items() if kind in WHY_UNUSABLE}
        if unusable:
            usable = [name for name in names if name not in unusable]
            reasons = "; ".join(f"{name!r} is {WHY_UNUSABLE[kind]}" for name, kind in unusable.items())
            actions = [f"leave them out with data.feature_columns=[{','.join(usable)}]"] if usable else []
            texts = [name for name, kind in unusable.items() if kind == "text"]
            actions += [f"read the text alone with data.text_column={texts[0]}"] if texts else []
            actions = actions or ["name the feature columns to use with data.feature_columns=[...]"]
            raise DataError(f"{self.source}: no model here can use these columns as they are: {reasons}. "
                            f"To train, {' or '.join(actions)}.")
        self.inferred["numeric_columns"] = [n for n in names if kinds[n] == "numeric"]
        self.inferred["categorical_columns"] = [n for n in names if kinds[n] == "categorical"]
        return kinds

    def _check_not_mixed(self, name: str, values: list[str], where) -> None:
        """A column of numbers with a few words in it is a typo, not a category."""
        present = [(row, v) for row, v in enumerate(values) if not is_missing(v)]
        words = [(row, v) for row, v in present if not is_number(v)]
        if len(words) <= 0.1 * len(present):
            row, value = words[0]
            raise DataError(
                f"{self.source}, {where[row]}: {value!r} in feature column {name!r} is not a number, though "
                f"{len(present) - len(words)} of its {len(present)} values are. Fix the cell, mark it missing (NA), "
                f"or read the column as labels with data.categorical_columns=[{name}]."
            )

    def _apply_missing_policy(self, table, where, kinds: dict[str, str]):
        """data.missing: impute (counted; the imputer runs with the encoders), drop
        the rows with an empty feature cell (counted), or error at the first one."""
        holes = [(row, name) for name in kinds for row, v in enumerate(table[name]) if is_missing(v)]
        self.inferred["missing_values"] = len(holes)
        self.inferred["rows_dropped"] = 0
        if not holes:
            return table, where
        if self.missing == "error":
            row, name = min(holes)
            raise DataError(
                f"{self.source}, {where[row]}: feature column {name!r} is empty ({table[name][row]!r}); "
                f"{len(holes)} cells in all are. Set data.missing=impute or data.missing=drop, or fill them."
            )
        if self.missing == "drop":
            empty = {row for row, _ in holes}
            keep = [row for row in range(len(where)) if row not in empty]
            self.inferred["rows_dropped"] = len(empty)
            if not keep:
                raise DataError(f"{self.source}: every row has an empty feature cell; data.missing=drop leaves none")
            return self._keep_rows(table, where, keep)
        return table, where
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
        numeric = all(is_integer(v) for v in set(raw))
        names = sorted(set(raw), key=int if numeric else str)
        if task == "binary" and len(names) != 2:
            raise DataError(
                f"{self.source}: task=binary needs 2 distinct values in {self.target_column!r}, found {len(names)}"
            )
        if len(names) < 2:
            raise DataError(
                f"{self.source}: the target column {self.target_column!r} holds one class ({names[0]!r}); "
                "a classifier needs at least two. Pick another data.target_column, or data.task=regression "
                "for numbers."
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
                    trained = sorted(class_names[i] for i in seen)
                    raise DataError(
                        f"{self.source}, {where[row]}: label {class_names[int(targets[row])]!r} of the target column "
                        f"{self.target_column!r} is in the {split} split but never in train (which has {trained}), "
                        "so no model can learn it; add training examples of it or remove it"
                    )

    def _text_inputs(self, table, index) -> tuple[torch.Tensor, dict]:
        texts = self._column(table, self.text_column, "text")
        self.vocab = Vocabulary.build([texts[i] for i in index["train"]], self.vocab_size, self.min_freq)
        self.raw_input = RawText(self.text_column, self.vocab.words, self.seq_len,
                                 examples=[texts[i] for i in index["test"]])
        inputs = self.vocab.encode(texts, self.seq_len)
        return inputs, {"input_kind": "tokens", "input_shape": (self.seq_len,), "vocab_size": len(self.vocab)}

    def _table_inputs(self, table, index, kinds) -> tuple[torch.Tensor, dict]:
        """Features from scikit-learn's ColumnTransformer, fitted on the training rows only."""
        numeric, categorical = self.inferred["numeric_columns"], self.inferred["categorical_columns"]
        integers = [name for name in numeric if all(is_integer(v) for v in table[name])]
        raw = RawTable(list(kinds), categorical, integers, preprocessor(numeric, categorical, self.scale))
        rows = raw.frame({name: table[name] for name in kinds})
        raw.fitted.fit(rows.iloc[index["train"]])
        raw.examples = rows.iloc[index["test"]].reset_index(drop=True)
        self.raw_input = raw
        inputs = torch.tensor(raw.fitted.transform(rows), dtype=torch.float32)
        return inputs, {"input_kind": "features", "input_shape": (inputs.shape[1],)}
