"""Bad configs fail before any work, with every problem named at once."""

import pytest

from src.validate import ConfigError, validate
from tests.conftest import compose_config, run_train


def test_every_problem_is_reported_at_once(mlruns):
    cfg = compose_config(["optimizer.lr=-1", "data.batch_size=0", "model.dropout=1.5"], mlruns)
    with pytest.raises(ConfigError) as caught:
        validate(cfg, {"data": "digits", "model": "mlp", "loss": "cross_entropy"})
    message = str(caught.value)
    assert "optimizer.lr=-1" in message and "data.batch_size=0" in message and "model.dropout=1.5" in message


def test_a_bad_command_exits_nonzero_and_records_nothing(mlruns):
    result = run_train(["optimizer.lr=0"], mlruns, check=False)
    assert result.returncode == 2
    assert "optimizer.lr=0" in result.stderr and "must be a number > 0" in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_a_misspelled_option_lists_the_valid_ones(mlruns):
    result = run_train(["model=mpl"], mlruns, check=False)
    assert result.returncode != 0
    assert "mlp" in result.stderr and "transformer" in result.stderr


def test_user_data_is_judged_by_its_configured_task(mlruns):
    cfg = compose_config(["data=csv", "data.path=x.csv", "data.task=regression", "loss=cross_entropy"], mlruns)
    with pytest.raises(ConfigError) as caught:
        validate(cfg, {"data": "csv", "model": "mlp", "loss": "cross_entropy"})
    assert "loss=cross_entropy does not fit the regression task of data=csv" in str(caught.value)
    cfg = compose_config(["data=csv", "data.path=x.csv"], mlruns)  # task from the file: checked after loading
    validate(cfg, {"data": "csv", "model": "mlp", "loss": "cross_entropy"})
    cfg = compose_config(["data=csv"], mlruns)
    with pytest.raises(ConfigError, match="data.path is required"):
        validate(cfg, {"data": "csv", "model": "mlp", "loss": "cross_entropy"})
