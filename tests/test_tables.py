"""A user's table as it really comes: numbers, labels, booleans, empty and NA cells,
columns no model can use; the preprocessing fitted on training rows only, and
saved for the logged model without pickle."""

import csv

import numpy as np
import pandas as pd
import pytest
import torch

from src.data.readers import CsvDataModule, HFDataModule
from src.data.table import RawTable, kind_of
from src.data.user import DataError

# 40 rows: a number (with two NA cells), a word label (with one empty cell), a boolean, a target.
HEADER = ("height_cm", "region", "member", "label")


def mixed_rows(num_rows: int = 40) -> list[tuple]:
    rows = []
    for i in range(num_rows):
        height = "NA" if i in (3, 17) else f"{150 + (i * 7) % 40}.5"
        region = "" if i == 5 else ("north", "south", "east")[i % 3]
        rows.append((height, region, ("true", "false")[i % 2], ("yes", "no")[(i // 2) % 2]))
    return rows


def write_csv(path, rows, header=HEADER):
    with path.open("w", newline="") as file:
        csv.writer(file).writerows([header, *rows])
    return path


def loaded(path, **settings) -> CsvDataModule:
    module = CsvDataModule(path, target_column=settings.pop("target_column", "label"), **settings)
    module.setup()
    return module


def load_error(path, **settings) -> str:
    with pytest.raises(DataError) as caught:
        loaded(path, **settings)
    return str(caught.value)


def test_each_kind_of_column_is_recognised():
    assert kind_of(["1.5", "2", "NA", ""]) == "numeric"
    assert kind_of(["north", "south", "north", "?"]) == "categorical"
    assert kind_of(["True", "False", "true"]) == "categorical"
    assert kind_of(["1", "2", "3"], categorical=True) == "categorical"  # data.categorical_columns
    assert kind_of(["2024-01-03", "2024-02-11", "2023-12-31 10:00"]) == "date"
    assert kind_of([f"user-{i:04d}" for i in range(30)]) == "id"
    assert kind_of([f"this is review number {i}" for i in range(30)]) == "text"
    assert kind_of(["", "NA", "null"]) == "empty"


def test_a_mixed_table_trains_with_imputed_cells_and_one_hot_labels(tmp_path):
    module = loaded(write_csv(tmp_path / "mixed.csv", mixed_rows()))
    assert module.inferred["numeric_columns"] == ["height_cm"]
    assert module.inferred["categorical_columns"] == ["region", "member"]
    assert module.inferred["missing_values"] == 3 and module.inferred["rows_dropped"] == 0
    # 1 scaled number; region: east, north, south, <missing> (seen in train?) ; member: false, true
    width = module.spec.input_shape[0]
    assert 6 <= width <= 7 and not torch.isnan(module.splits["train"][0]).any()
    assert module.recorded_params()["data.inferred.categorical_columns"] == "region,member"
    assert module.inferred_summary() == "data: 1 numeric columns, categorical: region, member; 3 missing cells imputed"


def test_the_preprocessing_is_fitted_on_the_training_rows_only(tmp_path):
    module = loaded(write_csv(tmp_path / "mixed.csv", mixed_rows()))
    fitted = module.raw_input.fitted
    assert fitted.named_transformers_["numeric"][-1].n_samples_seen_ == module.split_size("train")
    # standardised with the training rows' own mean and deviation (NA cells take the training median)
    train_heights = module.splits["train"][0][:, 0]
    assert abs(float(train_heights.mean())) < 1e-5 and abs(float(train_heights.std(unbiased=False)) - 1) < 1e-4
    # a label the training rows never had encodes as no category at all
    regions = len(fitted.named_transformers_["categorical"][-1].categories_[0])
    unseen = module.raw_input.encode(pd.DataFrame({"height_cm": [160.5], "region": ["west"], "member": ["true"]}))
    assert float(unseen[0, 1 : 1 + regions].sum()) == 0.0
    assert float(unseen[0, 1 + regions :].sum()) == 1.0  # member=true is known


def test_missing_cells_can_drop_their_rows_or_stop_the_run(tmp_path):
    path = write_csv(tmp_path / "mixed.csv", mixed_rows())
    dropped = loaded(path, missing="drop")
    assert dropped.inferred["rows_dropped"] == 3
    assert sum(dropped.split_size(s) for s in ("train", "val", "test")) == 37
    assert dropped.inferred_summary().endswith("3 rows with missing cells dropped")
    message = load_error(path, missing="error")
    assert "mixed.csv, line 5: feature column 'height_cm' is empty ('NA'); 3 cells in all are" in message
    assert "data.missing=impute" in message
    assert "data.missing='fill' is not one of ['impute', 'drop', 'error']" in load_error(path, missing="fill")


def test_scale_none_and_categorical_columns_are_honoured(tmp_path):
    rows = [(f"{i % 4}", f"{i}.25", ("a", "b")[i % 2]) for i in range(30)]
    path = write_csv(tmp_path / "codes.csv", rows, header=("zone", "size", "label"))
    module = loaded(path, categorical_columns=["zone"], scale="none")
    assert module.inferred["categorical_columns"] == ["zone"] and module.inferred["numeric_columns"] == ["size"]
    assert module.spec.input_shape == (5,)  # size, then 4 zones
    train_sizes = module.splits["train"][0][:, 0]
    assert float(train_sizes.max()) > 20  # not scaled
    assert "data.scale='minmax' is not one of" in load_error(path, scale="minmax")


def test_a_target_with_gaps_drops_those_rows_and_says_so(tmp_path):
    rows = mixed_rows()
    rows[7] = (*rows[7][:3], "")
    rows[8] = (*rows[8][:3], "NA")
    module = loaded(write_csv(tmp_path / "gaps.csv", rows))
    assert module.inferred["rows_without_target"] == 2
    assert sum(module.split_size(s) for s in ("train", "val", "test")) == 38
    assert "2 rows without a 'label' dropped" in module.inferred_summary()
    assert module.recorded_params()["data.inferred.rows_without_target"] == "2"


def test_a_target_with_one_class_is_refused_with_its_name(tmp_path):
    rows = [(*row[:3], "yes") for row in mixed_rows()]
    message = load_error(write_csv(tmp_path / "one.csv", rows))
    assert "the target column 'label' holds one class ('yes'); a classifier needs at least two" in message


def test_columns_no_model_can_use_are_named_in_one_message(tmp_path):
    rows = [(f"id-{i:05d}", f"2024-01-{i % 28 + 1:02d}", f"a long free text about item {i}", f"{i}.5",
             ("yes", "no")[i % 2]) for i in range(40)]
    path = write_csv(tmp_path / "odd.csv", rows, header=("order_id", "day", "note", "price", "label"))
    message = load_error(path)
    assert "'order_id' is an id" in message and "'day' is a date" in message and "'note' is free text" in message
    assert "data.feature_columns=[price]" in message and "data.text_column=note" in message
    assert "Traceback" not in message
    # what it says to do works
    assert loaded(path, feature_columns=["price"]).spec.input_shape == (1,)
    empty = write_csv(tmp_path / "empty_col.csv", [(f"{i}", "", ("a", "b")[i % 2]) for i in range(20)],
                      header=("x", "nothing", "label"))
    assert "'nothing' is empty (no value on any row)" in load_error(empty)


def test_a_parquet_file_reads_like_its_csv(tmp_path):
    frame = pd.DataFrame({
        "height_cm": [np.nan if i in (3, 17) else 150.5 + (i * 7) % 40 for i in range(40)],
        "region": [None if i == 5 else ("north", "south", "east")[i % 3] for i in range(40)],
        "member": [bool(i % 2 == 0) for i in range(40)],
        "label": [("yes", "no")[(i // 2) % 2] for i in range(40)],
    })
    frame.to_parquet(tmp_path / "mixed.parquet")
    from_parquet = loaded(tmp_path / "mixed.parquet")
    from_csv = loaded(write_csv(tmp_path / "mixed.csv", mixed_rows()))
    assert from_parquet.inferred == from_csv.inferred
    assert torch.allclose(from_parquet.splits["train"][0], from_csv.splits["train"][0])
    (tmp_path / "broken.parquet").write_text("not parquet")
    assert "broken.parquet: not a Parquet file pandas can read" in load_error(tmp_path / "broken.parquet")


def test_a_hugging_face_table_with_missing_values_and_booleans(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = mixed_rows()
    data = {
        "height_cm": [None if r[0] == "NA" else float(r[0]) for r in rows],
        "region": [r[1] or None for r in rows],
        "member": [r[2] == "true" for r in rows],
        "label": [r[3] for r in rows],
    }
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "saved"))
    module = HFDataModule(str(tmp_path / "saved"))
    module.setup()
    assert module.inferred["missing_values"] == 3
    assert module.inferred["categorical_columns"] == ["region", "member"]


def test_the_saved_preprocessing_loads_without_pickle_and_refuses_other_types(tmp_path):
    import skops.io

    module = loaded(write_csv(tmp_path / "mixed.csv", mixed_rows()))
    raw = module.raw_input
    files = raw.save(tmp_path)
    again = RawTable.load(raw.state(), files)
    examples = raw.examples
    assert torch.equal(again.encode(examples), raw.encode(examples))
    assert torch.equal(raw.encode(examples), module.splits["test"][0])  # raw test rows give the test tensors
    from collections import Counter

    skops.io.dump({"counts": Counter("abc")}, tmp_path / "other.skops")  # a type a preprocessor never holds
    with pytest.raises(ValueError, match="holds types a table's preprocessing never has"):
        RawTable.load(raw.state(), {"preprocessor": str(tmp_path / "other.skops")})


def test_a_table_far_wider_than_long_is_prepared_in_seconds(tmp_path):
    import time

    # 10,000 numeric feature columns (some whole numbers, some missing) and a word label, 40 rows:
    # the frame the preprocessor reads used to grow column by column (quadratic: over 5 minutes).
    rng = np.random.default_rng(0)
    header = (*(f"gene_{j}" for j in range(10_000)), "label")
    rows = [(*(f"{v:.3f}" if j % 3 else ("NA" if j % 6 == 0 and i == j % 40 else str(int(v * 10)))
               for j, v in enumerate(rng.normal(size=10_000))), ("a", "b")[i % 2]) for i in range(40)]
    started = time.perf_counter()
    module = loaded(write_csv(tmp_path / "wide.csv", rows, header=header))
    assert time.perf_counter() - started < 60  # about 5 s on one core
    assert module.spec.input_shape == (10_000,) and not torch.isnan(module.splits["train"][0]).any()
    frame = module.raw_input.examples
    assert frame.shape == (len(module.splits["test"][0]), 10_000)
    assert frame["gene_1"].dtype == np.float64 and frame["gene_3"].dtype == np.int64  # a whole number on every row
    assert torch.equal(module.raw_input.encode(frame), module.splits["test"][0])
