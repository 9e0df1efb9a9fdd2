"""The catalogue of option facts (src/catalog.py) matches the config tree, and the
models refuse exactly what it says they cannot take."""

import pytest
from omegaconf import OmegaConf

from src import PROJECT_ROOT
from src.catalog import DATA, INPUT_KINDS, LOSSES, MODELS, RANGES, TASK_LOSS, TASK_MODEL, TASKS
from src.data.spec import DataSpec
from tests.conftest import config_options


@pytest.mark.parametrize("group,table", [("model", MODELS), ("data", DATA), ("loss", LOSSES)])
def test_every_option_of_the_config_tree_has_its_entry_and_no_other(group, table):
    assert set(config_options(group)) == set(table)


def test_every_task_has_a_default_loss_that_fits_it_and_the_task_models_serve_it():
    assert set(TASK_LOSS) == set(TASKS)
    assert all(task in LOSSES[loss] for task, loss in TASK_LOSS.items())
    assert all(MODELS[model].takes("tokens" if task == "language_model" else "image", task)
               for task, model in TASK_MODEL.items())


def test_every_range_names_a_key_a_shipped_option_takes():
    import inspect

    from src.gate import resolve

    conf = PROJECT_ROOT / "conf"
    root = OmegaConf.load(conf / "train.yaml")
    keys = set(root) | {f"compare.{key}" for key in root.compare}
    for group in ("model", "data", "optimizer", "scheduler", "trainer", "loss"):
        for path in (conf / group).glob("*.yaml"):
            option = OmegaConf.load(path)
            keys |= {f"{group}.{key}" for key in option}
            if "_target_" in option:  # arguments left out of the YAML, e.g. a schedule's T_max
                keys |= {f"{group}.{p}" for p in inspect.signature(resolve(option._target_)).parameters}
    assert set(RANGES) - keys == set(), "RANGES names keys that no option takes"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_model_builds_exactly_where_the_catalogue_says_it_takes_the_input_and_task(model):
    from hydra.utils import instantiate

    make = instantiate(OmegaConf.load(PROJECT_ROOT / "conf" / "model" / f"{model}.yaml"))
    shapes = {"features": (4,), "image": (1, 8, 8), "tokens": (8,)}
    for kind in INPUT_KINDS:
        for task in TASKS:
            if task == "language_model" and kind != "tokens":
                continue  # no data is that (DataSpec refuses it)
            spec = DataSpec(kind, shapes[kind], task, output_size=3, vocab_size=20 if kind == "tokens" else 0)
            if MODELS[model].takes(kind, task):
                make(**spec.model_dims())
            else:
                with pytest.raises(ValueError, match=f"model={model}"):
                    make(**spec.model_dims())
