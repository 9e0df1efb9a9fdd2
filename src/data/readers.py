"""Where the user's rows come from: a CSV or Parquet file (`data=csv`) or a Hugging
Face data set (`data=hf`); what is done with the columns is src/data/user.py's.
"""

import csv
import io
from pathlib import Path

from src.data.user import DataError, UserDataModule


class CsvDataModule(UserDataModule):
    """A CSV file with a header line, or a Parquet file (*.parquet, *.pq); see
    src/data/user.py for what is done with the columns."""

    def __init__(
        self,
        path: str,
        target_column: str = "label",
        text_column: str | None = None,
        feature_columns: list[str] | None = None,
        categorical_columns: list[str] | None = None,
        missing: str = "impute",
        scale: str = "standard",
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
        super().__init__(path, target_column, text_column, feature_columns, categorical_columns, missing, scale,
                         split_column, task, seq_len,
                         vocab_size, min_freq, batch_size, val_fraction, test_fraction, split_seed, use_dataloader)
        self.path = Path(path).expanduser()

    def read(self):
        if not self.path.is_file():
            raise DataError(f"data.path={self.source}: no such file")
        if self.path.suffix.lower() in (".parquet", ".pq"):
            return self._parquet()
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

    def _parquet(self) -> tuple[dict[str, list[str]], list[str]]:
        import pandas as pd

        try:
            frame = pd.read_parquet(self.path)
        except Exception as error:  # pyarrow's errors name no common base class
            raise DataError(f"data.path={self.source}: not a Parquet file pandas can read ({error})") from None
        self._check_names([str(name) for name in frame.columns], "")
        # Cells as the text a CSV would hold; a missing one (None, NaN) is empty.
        table = {str(name): ["" if pd.isna(v) else str(v) for v in frame[name].tolist()] for name in frame.columns}
        return table, [f"row {i}" for i in range(len(frame))]

    def _check_names(self, names: list[str], where: str) -> None:
        """Two columns of one name would be read as one, its cells from both interleaved:
        features no longer in line with their labels."""
        positions: dict[str, list[int]] = {}
        for number, name in enumerate(names, start=1):
            positions.setdefault(name, []).append(number)
        repeated = {name: numbers for name, numbers in positions.items() if len(numbers) > 1}
        if repeated:
            which = "; ".join(f"{name!r} names columns {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"
                              for name, numbers in repeated.items())
            raise DataError(f"{self.source}{where}: a column name repeats ({which}); each column needs a name of "
                            "its own. Rename the copies, or remove the columns repeated by mistake.")

    def _rows(self, reader) -> tuple[dict[str, list[str]], list[str]]:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{self.source} is empty; it needs a header line and rows")
        self._check_names(header, f", line {reader.line_num}")
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
        categorical_columns: list[str] | None = None,
        missing: str = "impute",
        scale: str = "standard",
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
        super().__init__(name, target_column, text_column, feature_columns, categorical_columns, missing, scale,
                         split_column, task, seq_len,
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
