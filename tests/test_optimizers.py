"""Optimizers and schedules: each optimizer descends a convex problem and trains the
default experiment, each schedule gives the intended lr after N steps, and a real
run records train/lr, train/grad_norm and the optimizer's settings in MLflow."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from src.data.spec import DataSpec
from src.identity import flat_params
from src.losses import MSE
from src.module import ExperimentModule
from src.schedulers import WarmupCosineLR
from src.train import train
from src.validate import ConfigError, validate
from tests.conftest import CONF_DIR, compose_config, config_options, run_train, store_uri

OPTIMIZERS = config_options("optimizer")


def optimizer_factory(option: str):
    return instantiate(OmegaConf.load(CONF_DIR / "optimizer" / f"{option}.yaml"))


@pytest.mark.parametrize("option", OPTIMIZERS)
def test_each_optimizer_lowers_a_convex_loss(option):
    # least squares: 0.5 * mean (A w - b)^2, convex with a unique minimum
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(64, 5, generator=generator)
    b = a @ torch.randn(5, generator=generator) + 0.1 * torch.randn(64, generator=generator)
    w = torch.nn.Parameter(torch.zeros(5))
    optimizer = optimizer_factory(option)([w])

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * (a @ w - b).pow(2).mean()
        loss.backward()
        return loss

    start = closure().item()
    for _ in range(1000):  # at each option's own lr; rmsprop's 0.001 is the slowest
        optimizer.step(closure)  # every torch optimizer takes a closure; L-BFGS needs it
    assert closure().item() < 0.2 * start, option


def test_lbfgs_is_refused_unless_full_batch(mlruns):
    cfg = compose_config(["optimizer=lbfgs"], mlruns)
    with pytest.raises(ConfigError, match=r"data.batch_size=64 with torch.optim.LBFGS.*Set data.batch_size=full"):
        validate(cfg, {"data": "digits", "model": "mlp", "loss": "cross_entropy"})
    validate(compose_config(["optimizer=lbfgs", "data.batch_size=full"], mlruns), {})


@pytest.mark.parametrize("option", OPTIMIZERS)
def test_each_optimizer_trains_the_default_experiment(option, mlruns):
    overrides = [f"optimizer={option}", "trainer.max_epochs=2", "logger=none", "callbacks=none"]
    if option == "lbfgs":
        overrides.append("data.batch_size=full")
    best_val_acc = train(compose_config(overrides, mlruns))  # MLP on digits: chance is 0.1
    assert best_val_acc > 0.6, f"optimizer={option}: val/acc {best_val_acc}"


def test_optimizer_settings_are_params(mlruns):
    params = flat_params(compose_config(["optimizer=nesterov", "optimizer.weight_decay=0.001",
                                         "trainer.gradient_clip_val=1.0"], mlruns))
    assert params["optimizer.lr"] == "0.05" and params["optimizer.momentum"] == "0.9"
    assert params["optimizer.nesterov"] == "True" and params["optimizer.weight_decay"] == "0.001"
    assert params["trainer.gradient_clip_val"] == "1.0"
    assert flat_params(compose_config(["optimizer=adamw"], mlruns))["optimizer.betas"] == "[0.9, 0.999]"


# ---- schedules ----


def lrs_over(option: str, steps: int, mlruns, **filled) -> list[float]:
    """The lr of steps 0..steps of a scheduler option on an optimizer with lr 0.1."""
    cfg = compose_config([f"scheduler={option}", "optimizer=sgd"], mlruns)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = instantiate(cfg.scheduler)(optimizer, **filled)
    lrs = []
    for _ in range(steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_halves_every_step_size_steps(mlruns):
    lrs = lrs_over("step", 200, mlruns)
    assert lrs[99] == pytest.approx(0.1) and lrs[100] == pytest.approx(0.05) and lrs[200] == pytest.approx(0.025)


def test_cosine_schedule_reaches_half_at_mid_run_and_eta_min_at_the_end(mlruns):
    lrs = lrs_over("cosine", 100, mlruns, T_max=100)
    assert lrs[0] == pytest.approx(0.1) and lrs[50] == pytest.approx(0.05) and lrs[100] == pytest.approx(0.0)


def test_onecycle_schedule_peaks_at_optimizer_lr(mlruns):
    # max_lr follows optimizer.lr (0.1 for sgd); starts at max_lr / 25, peaks after 30%
    lrs = lrs_over("onecycle", 99, mlruns, total_steps=100)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 29
    assert lrs[99] == pytest.approx(0.1 / 25 / 1e4)


def test_warmup_cosine_schedule_climbs_then_decays(mlruns):
    lrs = lrs_over("warmup_cosine", 100, mlruns, total_steps=100)  # warm-up: 5 steps
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert lrs[5] == pytest.approx(0.1)
    assert lrs[5 + 95 // 2] == pytest.approx(0.05, abs=0.002)  # halfway down the cosine
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(later <= earlier for earlier, later in zip(lrs[5:], lrs[6:], strict=False))


def test_warmup_cosine_matches_torch_linear_then_cosine():
    # the same schedule composed from torch's own pieces
    make = partial(torch.optim.SGD, [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ours, theirs = make(), make()
    mine = WarmupCosineLR(ours, total_steps=50, warmup_fraction=0.2)
    reference = torch.optim.lr_scheduler.SequentialLR(theirs, [
        torch.optim.lr_scheduler.LinearLR(theirs, start_factor=0.1, end_factor=1.0, total_iters=9),
        torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=40),
    ], milestones=[10])
    for _ in range(50):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"])
        for optimizer, scheduler in ((ours, mine), (theirs, reference)):
            optimizer.step()
            scheduler.step()


def test_plateau_watches_the_objective_each_epoch():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x.sum(1)
    spec = DataSpec("features", (3,), "regression", 1)
    # r2 <= 1 can never beat its first value by 10: after epoch 1 sets the best, every
    # epoch is a bad one and, with patience 0, halves the lr (3 epochs: 0.1 -> 0.025)
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=0, threshold=10.0,
                      threshold_mode="abs")
    net = torch.nn.Linear(3, 1)
    module = ExperimentModule(net, MSE(), partial(torch.optim.SGD, lr=0.1), plateau, spec, objective="val/r2")
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, loader, loader)
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "epoch" and scheduler.monitor == "val/r2"
    assert scheduler.scheduler.mode == "max"  # r2: higher is better, taken from the objective
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)


# ---- what a real run records ----


@pytest.mark.slow
def test_a_run_records_loss_lr_and_unclipped_grad_norm_per_logged_step(mlruns):
    # digits: 1258 training images / 64 = 20 steps an epoch, 40 in all; logged every 10
    args = ["optimizer=adamw", "scheduler=warmup_cosine", "trainer.max_epochs=2", "trainer.gradient_clip_val=0.01",
            "callbacks=none"]
    run_train(args, mlruns)
    client = MlflowClient(store_uri(mlruns))
    (run,) = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    params = run.data.params
    assert params["optimizer.lr"] == "0.003" and params["optimizer.betas"] == "[0.9, 0.999]"
    assert params["optimizer.weight_decay"] == "0.01" and params["trainer.gradient_clip_val"] == "0.01"
    assert params["scheduler"] == "warmup_cosine"

    lr = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/lr")}
    grad_norm = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/grad_norm")}
    loss_steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    # the logger's cadence, not every step (nothing else is logged: self.log costs ~1 ms)
    assert sorted(lr) == sorted(grad_norm) == sorted(loss_steps) == [9, 19, 29, 39]
    schedule = WarmupCosineLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.003), total_steps=40)
    for step, value in lr.items():
        assert value == pytest.approx(schedule.lr_at(step, 0.003), rel=1e-6)
    # the norm before clipping: clipping to 0.01 would cap a clipped norm there
    assert all(value > 0.01 and math.isfinite(value) for value in grad_norm.values())
