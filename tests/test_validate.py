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


@pytest.mark.parametrize("args,message", [
    # a misspelled +key under a built object: refused like a misspelled key, before any run
    (["+trainer.max_epoch=2", "trainer.max_epochs=1"],
     "+trainer.max_epoch: pytorch_lightning.Trainer takes no argument 'max_epoch'. Did you mean trainer.max_epochs?"),
    (["+model.hiden_size=8"], "+model.hiden_size: src.models.mlp.MLP takes no argument 'hiden_size'"),
    # a +key that exists already
    (["+trainer.max_epochs=2"], "+trainer.max_epochs: trainer.max_epochs is already in the config; set it without the +"),
    # a loss key with no loss chosen (the task picks it): which losses have the key
    (["loss.beta=2"], "loss.beta: no loss is chosen (with loss: null the data's task picks one); "
                      "choose one to set its keys, e.g. loss=elbo loss.beta=..."),
])
def test_a_bad_plus_key_is_refused_like_any_unknown_key(args, message, mlruns):
    result = run_train(args, mlruns, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (mlruns / "mlflow.db").exists()  # no run, not even a FAILED one


def test_a_plus_key_a_built_object_takes_is_accepted(mlruns):
    from pathlib import Path

    from src import PROJECT_ROOT
    from src.overrides import override_problems

    conf = Path(PROJECT_ROOT) / "conf"
    assert override_problems(["+trainer.limit_train_batches=2", "+db.password=x", "++trainer.max_epochs=3"], conf) == []
