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
