"""Every option of every group composes, mirrors its target's signature, and builds."""

import inspect

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from src.gate import instantiate  # every shipped option builds through the gate
from tests.conftest import CONF_DIR, compose_config, config_options

# Groups whose options are instantiated from a _target_ (one object per option).
TARGET_GROUPS = ["data", "model", "loss", "optimizer", "scheduler", "trainer", "logger"]


def option_files():
    for group in TARGET_GROUPS:
        for option in config_options(group):
            yield pytest.param(group, option, id=f"{group}={option}")


@pytest.mark.parametrize("group,option", option_files())
def test_yaml_keys_are_parameters_of_the_target(group, option, mlruns):
    cfg = compose_config([f"{group}={option}"], mlruns)
    node = cfg[group]
    if not node:  # e.g. scheduler=none, logger=none
        return
    target = get_class(node._target_)
    parameters = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = [k for k in node if not k.startswith("_") and k not in parameters]
    assert takes_any or not unknown, f"conf/{group}/{option}.yaml: {unknown} are not parameters of {node._target_}"


@pytest.mark.parametrize("option", config_options("model"))
def test_models_take_no_dimension_the_data_knows(option):
    node = OmegaConf.load(CONF_DIR / "model" / f"{option}.yaml")
    typed = {"input_kind", "input_shape", "output_size", "vocab_size", "task"} & set(node)
    assert not typed, f"conf/model/{option}.yaml types {typed}: these come from the DataSpec"


@pytest.mark.parametrize("option", config_options("data"))
def test_data_options_build_and_give_a_spec(option, mlruns, user_data):
    if option == "hf" and "hf" not in user_data:
        pytest.skip("data=hf needs the datasets package (the hf extra)")
    cfg = compose_config([f"data={option}", *user_data.get(option, [])], mlruns)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert datamodule.spec is not None
    assert datamodule.split_size("train") > 0


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "loss"])
def test_element_options_instantiate(group, mlruns):
    import torch

    for option in config_options(group):
        cfg = compose_config([f"{group}={option}"], mlruns)
        if not cfg[group]:
            continue
        built = instantiate(cfg[group])
        if group == "optimizer":
            built([torch.nn.Parameter(torch.zeros(2))])


@pytest.mark.parametrize("group", ["experiment", "sweep", "debug", "callbacks", "trainer"])
def test_every_option_composes(group, mlruns):
    for option in config_options(group):
        compose_config([f"{group}={option}"], mlruns)


def test_help_lists_every_group_with_its_options_and_defaults():
    import subprocess
    import sys

    from src import PROJECT_ROOT

    done = subprocess.run([sys.executable, "-m", "src.train", "--help"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=True)
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ") and len(line.split()) > 1}
    for group in ("data", "model", "loss", "optimizer", "scheduler", "trainer", "experiment", "sweep"):
        for option in config_options(group):
            assert option in lines[group], (group, option)
    assert "mlp*" in lines["model"] and "digits*" in lines["data"] and "adam*" in lines["optimizer"]


def test_trainer_callbacks_and_logger_options_build(mlruns):
    import pytorch_lightning as pl
    import torch
    from mlflow import MlflowClient

    present = {"gpu": torch.cuda.is_available(), "cuda": torch.cuda.is_available(),
               "mps": torch.backends.mps.is_available()}
    built = []
    for option in config_options("trainer"):
        cfg = compose_config([f"trainer={option}"], mlruns)
        if not present.get(cfg.trainer.accelerator, True):
            continue  # needs a device this machine lacks; tests/test_scale.py trains on one where there is
        assert isinstance(instantiate(cfg.trainer, logger=False, enable_checkpointing=False), pl.Trainer)
        built.append(option)
    assert {"default", "cpu", "ddp_cpu", "debug"} <= set(built)

    for option in config_options("callbacks"):
        for node in (compose_config([f"callbacks={option}"], mlruns).callbacks or {}).values():
            assert isinstance(instantiate(node), pl.Callback)

    cfg = compose_config(["logger=mlflow"], mlruns)
    client = MlflowClient(cfg.logger.tracking_uri)
    run_id = client.create_run(client.create_experiment("triad")).info.run_id
    logger = instantiate(cfg.logger, run_id=run_id)
    logger.log_metrics({"train/loss": 0.5}, step=3)
    logger.flush()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [(3, 0.5)]
    assert not compose_config(["logger=none"], mlruns).logger
