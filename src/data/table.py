"""A table's feature columns as numbers, the way scikit-learn does it.

Each feature column gets a kind from its values: numeric (every present value
is a number), categorical (text labels and booleans, one-hot encoded; a label
first seen after training encodes as all zeros) or one that no model here can
use as it is: a date, an id (a distinct value on every row), free text (read it
with data.text_column) or an empty column. Missing cells (empty, NA, N/A, NaN,
null, None, ?) are imputed (the training median of a numeric column, a
"<missing>" category of its own), dropped with their rows, or refused
(data.missing). scikit-learn's ColumnTransformer does the work, fitted on the
training split only; it travels inside the logged model (RawTable), saved with
skops, which loads only the types named here and never unpickles.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# Cells that mean "no value", compared stripped and lower-cased (pandas' defaults and "?").
MISSING = {"", "na", "n/a", "nan", "null", "none", "?", "#n/a", "<na>", "-nan", "nat"}
BOOLEANS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
MISSING_POLICIES = ("impute", "drop", "error")
SCALINGS = ("standard", "none")
# A column of labels that are not numbers with at least this many rows, distinct on
# (nearly) every one of them, names rows rather than describing them: an id.
ID_MIN_ROWS = 20
_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?|^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}$")
# What skops may build when a logged model is loaded, beyond the types it trusts itself.
SKOPS_TRUSTED = ["numpy.dtype"]


def is_missing(value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return str(value).strip().lower() in MISSING


def is_integer(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def looks_like_text(values: list[str]) -> bool:
    """Free text rather than labels: most values have several words, and most are distinct."""
    sample = values[:1000]
    wordy = sum(len(v.split()) >= 3 for v in sample)
    return bool(sample) and wordy >= len(sample) / 2 and len(set(sample)) >= len(sample) / 2


def kind_of(values: list[str], categorical: bool = False) -> str:
    """numeric, categorical, or what makes the column unusable: date, id, text, empty."""
    present = [v.strip() for v in values if not is_missing(v)]
    if not present:
        return "empty"
    if categorical:
        return "categorical"
    if all(is_number(v) for v in present):
        return "numeric"
    if {v.lower() for v in present} <= BOOLEANS:
        return "categorical"
    if sum(bool(_DATE.match(v)) for v in present) >= 0.9 * len(present):
        return "date"
    if looks_like_text(present):
        return "text"
    if len(present) >= ID_MIN_ROWS and len(set(present)) >= 0.9 * len(present):
        return "id"
    return "categorical"


WHY_UNUSABLE = {
    "date": "a date",
    "id": "an id (a distinct value on nearly every row)",
    "text": "free text",
    "empty": "empty (no value on any row)",
}


def preprocessor(numeric: list[str], categorical: list[str], scale: str):
    """The ColumnTransformer for these columns: median and standard scaling for
    numbers, a "<missing>" category and one-hot codes for labels."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [SimpleImputer(strategy="median", keep_empty_features=True)]
    numbers += [StandardScaler()] if scale == "standard" else []
    labels = make_pipeline(
        SimpleImputer(strategy="constant", fill_value="<missing>"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    return ColumnTransformer(
        [("numeric", make_pipeline(*numbers), numeric), ("categorical", labels, categorical)], sparse_threshold=0
    )


class RawTable:
    """What the logged model takes from a table: rows with the file's feature columns
    (a pandas DataFrame), turned into the network's features by the fitted
    preprocessor. `examples` are the raw test rows, in the test split's order."""

    def __init__(self, columns: list[str], categorical: list[str], integers: list[str], fitted,
                 examples: pd.DataFrame | None = None):
        self.columns, self.fitted, self.examples = list(columns), fitted, examples  # columns: the file's order
        self.categorical = [name for name in self.columns if name in categorical]
        self.numeric = [name for name in self.columns if name not in categorical]
        # Whole numbers on every row of the file: integers, as pandas reads them (the signature says long).
        self.integers = [name for name in self.numeric if name in integers]

    def frame(self, rows: pd.DataFrame | dict) -> pd.DataFrame:
        """The feature columns typed as when fitted: numbers as floats (whole
        numbers as integers where none is missing), labels as stripped strings,
        every missing cell as NaN. A column the rows lack is missing on every row
        (the signature marks every column optional), but rows must share one."""
        rows = pd.DataFrame(rows)
        if not set(self.columns) & set(rows.columns):
            raise ValueError(f"the rows have none of the model's columns {self.columns}; they have {list(rows.columns)}")
        rows = rows.reindex(columns=self.columns)  # absent columns: NaN
        typed = {}  # built whole at the end: a frame grown column by column is quadratic in its width
        categorical, integers = set(self.categorical), set(self.integers)
        for name in self.columns:
            values = [np.nan if is_missing(v) else v for v in rows[name].tolist()]
            if name in categorical:
                typed[name] = pd.Series([v if v is np.nan else str(v).strip() for v in values], index=rows.index,
                                        dtype=object)
                continue
            try:
                numbers = np.asarray(values, dtype=np.float64)
            except ValueError:
                raise ValueError(f"column {name!r} holds a value that is not a number: {values}") from None
            whole = name in integers and not np.isnan(numbers).any()
            typed[name] = pd.Series(numbers.astype(np.int64) if whole else numbers, index=rows.index)
        return pd.DataFrame(typed, index=rows.index)

    def encode(self, rows) -> torch.Tensor:
        return torch.tensor(self.fitted.transform(self.frame(rows)), dtype=torch.float32)

    def state(self) -> dict:
        return {"kind": "table", "columns": self.columns, "categorical": self.categorical, "integers": self.integers}

    def save(self, folder: Path) -> dict[str, str]:
        """Files the logged model holds (name -> path)."""
        import skops.io

        path = Path(folder) / "preprocessor.skops"
        skops.io.dump(self.fitted, path)
        return {"preprocessor": str(path)}

    @classmethod
    def load(cls, state: dict, artifacts: dict) -> "RawTable":
        import skops.io

        path = artifacts["preprocessor"]
        unexpected = set(skops.io.get_untrusted_types(file=path)) - set(SKOPS_TRUSTED)
        if unexpected:
            raise ValueError(f"{path} holds types a table's preprocessing never has: {sorted(unexpected)}")
        fitted = skops.io.load(path, trusted=SKOPS_TRUSTED)
        return cls(state["columns"], state["categorical"], state["integers"], fitted)
