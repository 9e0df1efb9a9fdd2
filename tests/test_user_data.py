"""The user's own data (data=csv, data=hf): columns, task inference, and every
problem named before any training."""

import pytest
import torch

from src.data.readers import CsvDataModule, HFDataModule
from src.data.user import DataError
from tests.conftest import run_train, store_uri, write_user_data


def write(path, text: str):
    path.write_text(text)
    return path


GOOD_ROWS = "x,y\n" + "".join(f"{i}.5,{i % 3}\n" for i in range(12))  # lines 2-13


def load_error(module) -> str:
    with pytest.raises(DataError) as caught:
        module.setup()
    return str(caught.value)


def test_text_csv_is_classified_with_a_vocabulary_from_train_only(tmp_path):
    write_user_data(tmp_path)
    module = CsvDataModule(tmp_path / "reviews.csv", text_column="review", target_column="label", seq_len=32)
    module.setup()
    assert module.spec.task == "multiclass" and module.spec.class_names == ("negative", "neutral", "positive")
    assert module.spec.input_kind == "tokens" and module.spec.input_shape == (32,)
    # every word of the vocabulary occurs in a training row (nothing is truncated at 32)
    assert set(module.splits["train"][0].unique().tolist()) | {0, 1} == set(range(len(module.vocab)))
    held_out = torch.cat([module.splits["val"][0], module.splits["test"][0]])
    assert held_out.max() < len(module.vocab)


def test_vocabulary_ignores_words_seen_only_outside_train(tmp_path):
    lines = ["text,label,split"] + [f"good film {i},1,train" for i in range(4)] + [f"bad film {i},0,train" for i in range(4)]
    lines += ["zebra good,1,val", "zebra bad,0,test"]
    module = CsvDataModule(write(tmp_path / "d.csv", "\n".join(lines)), text_column="text", split_column="split", seq_len=4)
    module.setup()
    assert "zebra" not in module.vocab.index
    assert module.splits["val"][0][0, 0].item() == 1  # <unk>
    assert module.spec.task == "binary" and module.splits["train"][1].dtype == torch.long


def test_numeric_csv_infers_regression_and_uses_every_other_column(tmp_path):
    lines = ["a,b,y"] + [f"{i},{i % 7},{i * 0.5 + 0.25}" for i in range(60)]
    module = CsvDataModule(write(tmp_path / "n.csv", "\n".join(lines)), target_column="y")
    module.setup()
    assert module.spec.task == "regression" and module.spec.input_shape == (2,)
    assert module.splits["train"][1].dtype == torch.float32
    # integer labels with few values are classes unless the config says otherwise
    module = CsvDataModule(tmp_path / "n.csv", target_column="b")
    module.setup()
    assert module.spec.task == "multiclass" and module.spec.output_size == 7
    module = CsvDataModule(tmp_path / "n.csv", target_column="b", task="regression")
    module.setup()
    assert module.spec.task == "regression"


def test_missing_file_is_named(tmp_path):
    assert "nothere.csv: no such file" in load_error(CsvDataModule(tmp_path / "nothere.csv"))


def test_empty_file_is_named(tmp_path):
    assert "empty.csv is empty" in load_error(CsvDataModule(write(tmp_path / "empty.csv", "")))
    assert "no rows" in load_error(CsvDataModule(write(tmp_path / "header.csv", "text,label\n")))


def test_missing_column_lists_the_columns(tmp_path):
    path = write(tmp_path / "d.csv", "review,stars\ngood,5\nbad,1\n")
    message = load_error(CsvDataModule(path, text_column="review", target_column="label"))
    assert "no target column 'label'" in message and "['review', 'stars']" in message
    message = load_error(CsvDataModule(path, text_column="text", target_column="stars"))
    assert "no text column 'text'" in message


def test_a_row_that_does_not_parse_names_its_line(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS + "3.0,4,extra\n")
    message = load_error(CsvDataModule(path, target_column="y"))
    assert "d.csv, line 14: 3 fields, but the header has 2" in message
    path = write(tmp_path / "e.csv", GOOD_ROWS + "abc,1\n")
    message = load_error(CsvDataModule(path, target_column="y"))
    assert "e.csv, line 14: 'abc' in feature column 'x' is not a number, though 12 of its 13 values are" in message
    assert "data.categorical_columns=[x]" in message


def test_a_text_column_read_as_features_says_to_set_text_column(tmp_path):
    write_user_data(tmp_path)  # columns review (sentences) and label
    error = load_error(CsvDataModule(tmp_path / "reviews.csv", target_column="label"))
    assert "'review' is free text" in error and "read the text alone with data.text_column=review" in error


def test_a_column_of_words_is_read_as_labels(tmp_path):
    rows = "size,region,y\n" + "".join(f"{i},{'north' if i % 2 else 'south'},{i % 3}\n" for i in range(12))
    module = CsvDataModule(write(tmp_path / "t.csv", rows), target_column="y")
    module.setup()
    assert module.inferred["categorical_columns"] == ["region"] and module.spec.input_shape == (3,)


def test_a_file_that_is_not_utf8_csv_names_its_line(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((GOOD_ROWS + "caf\xe9,1\n").encode("latin-1"))
    message = load_error(CsvDataModule(latin1, target_column="y"))
    assert "latin1.csv, line 14: not UTF-8 text (byte 0xe9)" in message and "UTF-8" in message
    nul = write(tmp_path / "nul.csv", GOOD_ROWS + "1.5,\x001\n")
    assert "nul.csv, line 14: a NUL byte" in load_error(CsvDataModule(nul, target_column="y"))
    quote = write(tmp_path / "quote.csv", GOOD_ROWS + '1.5,"1\n')
    assert "quote.csv, line 14: not valid CSV (unexpected end of data)" in load_error(CsvDataModule(quote, target_column="y"))
    # a spreadsheet's byte-order mark is not part of the first column's name
    bom = tmp_path / "bom.csv"
    bom.write_bytes(GOOD_ROWS.encode("utf-8-sig"))
    module = CsvDataModule(bom, target_column="y")
    module.setup()
    assert module.spec.input_shape == (1,)


def test_a_label_seen_only_in_the_test_split_is_named(tmp_path):
    lines = ["text,label,split"] + [f"film {i},{'good' if i % 2 else 'bad'},train" for i in range(10)]
    lines += ["film a,good,val", "film b,bad,test", "film c,awful,test"]
    message = load_error(CsvDataModule(write(tmp_path / "d.csv", "\n".join(lines)), text_column="text", split_column="split"))
    assert "line 14: label 'awful' of the target column 'label' is in the test split but never in train" in message
    assert "(which has ['bad', 'good'])" in message


@pytest.mark.slow  # three commands, each importing Lightning
def test_a_bad_csv_stops_the_command_before_any_run(tmp_path, mlruns):
    path = write(tmp_path / "d.csv", GOOD_ROWS + "abc,1\n")
    result = run_train(["data=csv", f"data.path={path}", "data.target_column=y", "debug=fast"], mlruns, check=False)
    assert result.returncode == 2 and "line 14: 'abc'" in result.stderr and "Traceback" not in result.stderr
    result = run_train(["data=csv", "debug=fast"], mlruns, check=False)
    assert result.returncode == 2 and "data.path is required" in result.stderr
    # the file decides the task (x: regression), checked against a chosen loss before any run
    path = write(tmp_path / "good.csv", GOOD_ROWS)
    result = run_train(["data=csv", f"data.path={path}", "data.target_column=x", "loss=cross_entropy"], mlruns,
                       check=False)
    assert result.returncode == 2 and "loss=cross_entropy does not fit the regression task" in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_hf_reads_a_saved_dataset_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"x": datasets.Value("float32"), "kind": datasets.ClassLabel(names=["cat", "dog"])})
    rows = {"x": [float(i) for i in range(40)], "kind": [i % 2 for i in range(40)]}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "pets"))
    module = HFDataModule(str(tmp_path / "pets"), target_column="kind")
    module.setup()
    assert module.spec.task == "binary" and module.spec.class_names == ("cat", "dog")
    assert module.spec.input_kind == "features" and sum(module.split_size(s) for s in ("train", "val", "test")) == 40
    split = datasets.DatasetDict({name: datasets.Dataset.from_dict(rows, features=features) for name in ("train", "test")})
    split["validation"] = datasets.Dataset.from_dict({"x": [1.0], "kind": [0]}, features=features)
    split.save_to_disk(str(tmp_path / "pets_split"))
    module = HFDataModule(str(tmp_path / "pets_split"), target_column="kind")
    module.setup()
    assert (module.split_size("train"), module.split_size("val"), module.split_size("test")) == (40, 1, 40)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["csv", "hf"])
def test_user_data_trains_and_records_its_data_set(option, mlruns, user_data):
    from mlflow import MlflowClient

    if option not in user_data:
        pytest.skip("data=hf needs the datasets package (the hf extra)")
    run_train([f"data={option}", *user_data[option], "model=transformer", "trainer.max_epochs=1"], mlruns)
    client = MlflowClient(store_uri(mlruns))
    run = client.search_runs([client.get_experiment_by_name("triad").experiment_id])[0]
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    inputs = run.inputs.dataset_inputs
    assert sorted(i.tags[0].value for i in inputs) == ["test", "train", "val"]
    assert all(i.dataset.name == option and i.dataset.digest for i in inputs)


@pytest.mark.slow
def test_the_bilstm_experiment_takes_a_users_binary_csv_as_a_drop_in(tmp_path, mlruns):
    # the document's example reads a CSV of text,label (0/1)
    import csv

    from mlflow import MlflowClient

    from src.data.sentiment import generate
    from src.train import train
    from tests.conftest import compose_config

    texts, labels = generate(300, seed=1, neutral=False)
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as file:
        csv.writer(file).writerows([("text", "label"), *zip(texts, labels, strict=True)])
    short = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]
    train(compose_config(["experiment=bilstm_binary", "data=csv", f"data.path={path}", "data.text_column=text", *short],
                         mlruns))
    client = MlflowClient(store_uri(mlruns))
    (run,) = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["data"] == "csv"
    assert run.data.tags["triad.task"] == "binary" and run.data.params["model.head_hidden_size"] == "64"
    assert run.outputs.model_outputs and "triad.log_model_error" not in run.data.tags
