"""Bad configs fail before any work, with every problem named at once."""

import pytest
import torch

from src.catalog import ACTIVATIONS
from src.overrides import override_problems
from src.validate import ConfigError, validate
from tests.conftest import CONF_DIR, compose_config, run_train


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


# ---------------------------------------------------------------- config checks

CHOICES = {"data": "digits", "model": "mlp", "loss": "cross_entropy"}
BAD_VALUES = [
    (["optimizer.lr=0"], "optimizer.lr=0", "> 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1", "> 0"),
    (["optimizer.lr=fast"], "optimizer.lr='fast'", "a number"),
    (["optimizer.weight_decay=-1"], "optimizer.weight_decay=-1", ">= 0"),
    (["optimizer.betas=[0.9,1.5]"], "optimizer.betas", "[0, 1)"),
    (["optimizer=sgd", "optimizer.momentum=1"], "optimizer.momentum=1", "[0, 1)"),
    (["data.batch_size=0"], "data.batch_size=0", ">= 1"),
    (["data.batch_size=2.5"], "data.batch_size=2.5", "'full'"),
    (["data.val_fraction=1.2"], "data.val_fraction=1.2", "(0, 1)"),
    (["model.dropout=1"], "model.dropout=1", "[0, 1)"),
    (["model.dropout=-0.1"], "model.dropout=-0.1", "[0, 1)"),
    (["model.activation=rleu"], "model.activation='rleu'", "Did you mean relu"),
    (["model.hidden_size=0"], "model.hidden_size=0", ">= 1"),
    (["model=transformer", "model.num_heads=3"], "model.num_heads=3", "divides"),
    (["model=transformer", "model.pooling=max"], "model.pooling='max'", "first, mean"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs=-1", ">= 1"),
    (["trainer.max_epochs=two"], "trainer.max_epochs='two'", "integer"),
    (["trainer.precision=15"], "trainer.precision=15", "32-true"),
    (["trainer.accelerator=tpv"], "trainer.accelerator='tpv'", "cpu"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1", ">= 0"),
    (["seed=-3"], "seed=-3", ">= 0"),
    (["seed=99999999999"], "seed=99999999999", "<= 4294967295"),  # beyond what numpy's seeding takes
    (["optimizer.lr=inf"], "optimizer.lr=inf", "finite"),
    (["optimizer.lr=nan"], "optimizer.lr=nan", "finite"),
    (["trainer.devices=0"], "trainer.devices=0", "'auto'"),
    (["experiment_name=''"], "experiment_name=''", "experiment_name=triad"),
    (["scheduler=step", "scheduler.step_size=-1"], "scheduler.step_size=-1", "integer >= 1"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma=0", "(0, 1]"),
    (["scheduler=cosine", "+scheduler.T_max=0"], "scheduler.T_max=0", "integer >= 1"),
    (["scheduler=cosine", "scheduler.eta_min=1"], "scheduler.eta_min=1", "below optimizer.lr"),
    (["scheduler=warmup_cosine", "scheduler.warmup_fraction=1.5"], "scheduler.warmup_fraction=1.5", "[0, 1)"),
    (["scheduler=onecycle", "scheduler.pct_start=0"], "scheduler.pct_start=0", "(0, 1)"),
    (["scheduler=onecycle", "scheduler.div_factor=0"], "scheduler.div_factor=0", ">= 1"),
    (["scheduler=plateau", "scheduler.factor=1.5"], "scheduler.factor=1.5", "(0, 1)"),
    (["scheduler=plateau", "scheduler.patience=-1"], "scheduler.patience=-1", ">= 0"),
    (["checkpoint_every_n_steps=0"], "checkpoint_every_n_steps=0", ">= 1"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path='/no/such.ckpt'", "no such file"),
    (["ckpt_path=last", "logger=none"], "ckpt_path='last'", "logger=mlflow"),
    (["data._target_=os.system"], "data._target_='os.system'", "src.*"),
    (["+callbacks.extra={_target_:subprocess.Popen}"], "callbacks.extra._target_='subprocess.Popen'", "torch.*"),
    (["optimizer._target_=torch.hub.load"], "optimizer._target_='torch.hub.load'", "not a class"),
]


@pytest.mark.parametrize("overrides,names,fix", BAD_VALUES, ids=[" ".join(b[0]) for b in BAD_VALUES])
def test_a_bad_value_is_named_with_what_would_work(overrides, names, fix, mlruns):
    cfg = compose_config(overrides, mlruns)
    choices = {**CHOICES, **{o.split("=")[0]: o.split("=")[1] for o in overrides if o.split("=")[0] in ("model", "optimizer")}}
    with pytest.raises(ConfigError) as caught:
        validate(cfg, choices)
    assert names in str(caught.value) and fix in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("overrides,names,fix", BAD_VALUES, ids=[" ".join(b[0]) for b in BAD_VALUES])
def test_a_bad_value_on_the_command_line_exits_2_naming_it_and_records_nothing(overrides, names, fix, mlruns):
    result = run_train(overrides, mlruns, check=False, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert names in result.stderr and fix in result.stderr
    assert "Traceback" not in result.stderr
    assert not (mlruns / "mlflow.db").exists() and not list(mlruns.rglob("*.ckpt"))


BAD_OVERRIDES = [
    (["trainer.max_epoch=2"], "trainer.max_epoch: no such key", "Did you mean trainer.max_epochs"),
    (["optimizer.learning_rate=0.1"], "optimizer.learning_rate: no such key", "+optimizer.learning_rate"),
    (["model=mpl"], "model=mpl: no such option", "Did you mean mlp"),
    (["model=mlp,cnnn"], "model=cnnn: no such option", "Did you mean cnn?"),
    (["optimizer=adamz"], "optimizer=adamz", "Did you mean adam"),
]


@pytest.mark.parametrize("overrides,names,fix", BAD_OVERRIDES, ids=[" ".join(b[0]) for b in BAD_OVERRIDES])
def test_a_misspelled_key_or_option_lists_close_matches(overrides, names, fix):
    problems = "\n".join(override_problems(overrides, CONF_DIR))
    assert names in problems and fix in problems


def test_good_overrides_raise_no_problem():
    good = ["model=mlp,transformer", "trainer.max_epochs=3", "+db_password=x", "hydra/launcher=joblib", "debug=fast"]
    assert override_problems(good, CONF_DIR) == []


@pytest.mark.parametrize("args", [
    ["sweep=optuna"], ["sweep=architectures"], ["experiment=attention,vae", "trainer.max_epochs=1"],
    # judged job by job: each value of the swept key decides (eta_min is below 0.1, not 0.01)
    ["optimizer.lr=0.1,0.01", "scheduler=cosine", "scheduler.eta_min=0.05"],
    ["model=mlp,lstm", "model.hidden_size=16", "seed=0,1,2", "data.batch_size=full,16"],
], ids=lambda args: " ".join(args))
def test_a_sweep_is_refused_only_for_what_every_job_would_be(args):
    assert override_problems(["-m", *args], CONF_DIR) == []


@pytest.mark.parametrize("args,problem", [
    (["compare.alpha=5", "seed=0,1"], "compare.alpha=5: the false-verdict rate"),
    (["data.batch_size=null,32"], "data.batch_size=null: use an integer >= 1"),
    (["model=mlp,lstm", "model.hidden_size=0"], "model.hidden_size=0: must be an integer >= 1."),  # whatever model
    (["seed=0,1", "data=iris", "data.val_fraction=0.6", "data.test_fraction=0.6"], "leave no rows to train on"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_a_sweep_every_job_of_which_would_be_refused_is_refused_before_it_starts(args, problem):
    [found] = override_problems(["-m", *args], CONF_DIR)
    assert problem in found


def test_the_longest_experiment_name_is_mlflows():
    from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH

    from src.catalog import MAX_EXPERIMENT_NAME

    assert MAX_EXPERIMENT_NAME == MAX_EXPERIMENT_NAME_LENGTH


def test_every_problem_of_a_command_is_reported_at_once_and_nothing_runs(mlruns):
    result = run_train(["trainer.max_epoch=2", "model=mpl", "optimizer=adamz"], mlruns, check=False)
    assert result.returncode == 2
    for name in ("trainer.max_epoch", "model=mpl", "optimizer=adamz"):
        assert name in result.stderr
    result = run_train(
        ["optimizer.lr=0", "model.dropout=1.5", "trainer.precision=15", "data._target_=os.system", "loss=mse",
         "data=diabetes", "model=transformer", "model.num_heads=5"], mlruns, check=False,
    )
    assert result.returncode == 2 and "5 problem(s)" in result.stderr
    for name in ("optimizer.lr=0", "model.dropout=1.5", "trainer.precision=15", "os.system", "model.num_heads=5"):
        assert name in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_every_activation_the_catalogue_names_is_a_layer_the_models_build():
    from src.models.inputs import activation_layer

    assert all(isinstance(activation_layer(name), torch.nn.Module) for name in ACTIVATIONS)
