"""Losses: values by hand on tiny tensors, the ELBO against closed forms, the
task table and its refusals, every fitting loss x task training for real, and
two references outside the project (scikit-learn's linear and logistic regression)."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.utils.data import DataLoader, TensorDataset

from src.catalog import DATA, LOSSES, MODELS, TASK_LOSS
from src.data.spec import TASKS, DataSpec
from src.losses import BCE, ELBO, MAE, MSE, CrossEntropy, Focal, Huber
from src.module import DEFAULT_OBJECTIVE, ExperimentModule, metric_names, objective_of
from src.train import train
from src.validate import ConfigError, validate
from tests.conftest import compose_config, config_options, run_train, store_uri

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)
# One example, two classes, p = softmax = (0.25, 0.75).
LOGITS = torch.tensor([[0.0, LN3]])


def value(loss_fn, output, target) -> float:
    loss, parts = loss_fn(output, target)
    assert loss.dim() == 0 and isinstance(parts, dict)
    return loss.item()


# ---- each loss against values computed by hand ----


def test_cross_entropy_by_hand():
    assert value(CrossEntropy(), LOGITS, torch.tensor([1])) == pytest.approx(-math.log(0.75))
    # smoothing 0.2 over 2 classes: the target distribution is (0.1, 0.9)
    smoothed = -(0.1 * math.log(0.25) + 0.9 * math.log(0.75))
    assert value(CrossEntropy(label_smoothing=0.2), LOGITS, torch.tensor([1])) == pytest.approx(smoothed)
    # next-token form: (B, T, V) logits, (B, T) ids; mean over every token
    logits = torch.stack([LOGITS[0], torch.zeros(2)]).unsqueeze(0)  # (1, 2, 2)
    expected = (-math.log(0.75) + LN2) / 2
    assert value(CrossEntropy(), logits, torch.tensor([[1, 0]])) == pytest.approx(expected)


def test_bce_by_hand():
    # binary: logit 0 (p=0.5) for class 1, logit ln 3 (p=0.75) for class 0
    output, target = torch.tensor([[0.0], [LN3]]), torch.tensor([1, 0])
    assert value(BCE(), output, target) == pytest.approx((LN2 + LN4) / 2)
    # one-vs-rest on two classes: sigmoid(0)=0.5 vs 0 and sigmoid(ln 3)=0.75 vs 1
    assert value(BCE(), LOGITS, torch.tensor([1])) == pytest.approx((LN2 - math.log(0.75)) / 2)


def test_mse_and_mae_by_hand():
    output, target = torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])
    assert value(MSE(), output, target) == pytest.approx((1 + 4) / 2)
    assert value(MAE(), output, target) == pytest.approx((1 + 2) / 2)
    # on a classifier: probabilities (0.25, 0.75) against one-hot (0, 1)
    assert value(MSE(), LOGITS, torch.tensor([1])) == pytest.approx(0.0625)
    assert value(MAE(), LOGITS, torch.tensor([1])) == pytest.approx(0.25)
    # one binary logit 0: p = 0.5 against 1
    assert value(MSE(), torch.tensor([[0.0]]), torch.tensor([1])) == pytest.approx(0.25)
    assert value(MAE(), torch.tensor([[0.0]]), torch.tensor([1])) == pytest.approx(0.5)


def test_huber_by_hand():
    # errors 0.5 (squared part: 0.5 * 0.5^2) and 3 (linear part: delta * (3 - delta / 2))
    output, target = torch.tensor([[0.5], [3.0]]), torch.tensor([0.0, 0.0])
    assert value(Huber(delta=1.0), output, target) == pytest.approx((0.125 + 2.5) / 2)
    assert value(Huber(delta=5.0), output, target) == pytest.approx(value(MSE(), output, target) / 2)


def test_focal_by_hand():
    target = torch.tensor([1])
    # p_t = 0.75: (1 - 0.75)^2 * -ln 0.75
    assert value(Focal(gamma=2.0), LOGITS, target) == pytest.approx(0.0625 * -math.log(0.75))
    assert value(Focal(gamma=0.0), LOGITS, target) == pytest.approx(value(CrossEntropy(), LOGITS, target))
    # binary: sigmoid(ln 3) = 0.75; as class 0, p_t = 0.25
    output = torch.tensor([[LN3], [LN3]])
    expected = (0.0625 * -math.log(0.75) + 0.5625 * LN4) / 2
    assert value(Focal(gamma=2.0), output, torch.tensor([1, 0])) == pytest.approx(expected)


def test_elbo_by_hand_and_against_torch_distributions():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, LN2]])
    loss, parts = ELBO(beta=2.0)((torch.zeros(1, 4), mu, logvar), x)
    # logits 0 give p = 0.5 for each of 4 values; KL by hand: 0.5 + (1 - ln 2) / 2
    assert parts["recon"].item() == pytest.approx(4 * LN2)
    assert parts["kl"].item() == pytest.approx(0.5 + (1 - LN2) / 2)
    assert loss.item() == pytest.approx(4 * LN2 + 2 * parts["kl"].item())
    # the closed form against torch.distributions, on random posteriors
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    _, parts = ELBO()((torch.zeros(5, 4), mu, logvar), torch.rand(5, 4))
    reference = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert parts["kl"].item() == pytest.approx(reference.item(), rel=1e-5)
    # mse: squared errors summed per example, averaged over the batch
    _, parts = ELBO(reconstruction="mse")((torch.ones(2, 3), mu[:2], logvar[:2]), torch.zeros(2, 3))
    assert parts["recon"].item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="reconstruction"):
        ELBO(reconstruction="l1")


# ---- the task table and its refusals ----


def test_every_loss_option_is_in_the_table_and_every_task_has_a_loss():
    assert set(config_options("loss")) == set(LOSSES)
    for task in TASKS:
        assert any(task in tasks for tasks in LOSSES.values()), task


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_validate_refuses_a_loss_exactly_where_it_does_not_fit(loss, mlruns):
    for data, (kind, task) in DATA.items():
        if task is None:  # the user's files: judged once loaded (tests/test_user_data.py)
            continue
        model = next(m for m, fit in sorted(MODELS.items()) if fit.takes(kind, task))
        cfg = compose_config([f"data={data}", f"model={model}", f"loss={loss}"], mlruns)
        choices = {"data": data, "model": model, "loss": loss}
        if task in LOSSES[loss]:
            validate(cfg, choices)
            continue
        with pytest.raises(ConfigError) as caught:
            validate(cfg, choices)
        fitting = ", ".join(sorted(name for name, tasks in LOSSES.items() if task in tasks))
        expected = f"loss={loss} does not fit the {task} task of data={data}. Losses that do: {fitting} "
        assert f"{expected}(with no loss= the task picks {TASK_LOSS[task]})." in str(caught.value)


def test_an_ill_fitting_loss_is_refused_on_the_command_line(mlruns):
    result = run_train(["data=diabetes", "loss=bce"], mlruns, check=False)
    assert result.returncode == 2
    assert ("loss=bce does not fit the regression task of data=diabetes. Losses that do: huber, mae, mse "
            "(with no loss= the task picks mse).") in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_the_default_objective_is_a_metric_every_task_logs():
    for task in TASKS:
        kind = "tokens" if task == "language_model" else "features"
        spec = DataSpec(kind, (4,), task, 3, vocab_size=5)
        metric, _ = objective_of(None, task)
        assert metric == DEFAULT_OBJECTIVE[task] and metric in metric_names(spec, "val"), task
    assert objective_of(None, "language_model") == ("val/perplexity", "min")
    assert objective_of("val/bpc", "language_model")[1] == "min"


# ---- every fitting loss x task trains on that task's default data set ----

DEFAULT_DATA = {"multiclass": "iris", "binary": "breast_cancer", "regression": "diabetes"}
# Better than predicting one class, or the mean of the standardised targets.
BEATS_TRIVIAL = {"multiclass": ("val/acc", 0.5), "binary": ("val/acc", 0.75), "regression": ("val/mse", 0.9)}
PAIRS = [
    pytest.param(loss, task, id=f"{loss}-{task}")
    for loss, tasks in sorted(LOSSES.items())
    for task in sorted(tasks)
    if task in DEFAULT_DATA
]


@pytest.mark.parametrize("loss,task", PAIRS)
def test_every_fitting_loss_trains_on_its_task(loss, task, mlruns):
    overrides = [f"data={DEFAULT_DATA[task]}", f"loss={loss}", "model=mlp", "trainer.max_epochs=5",
                 "logger=none", "callbacks=none"]
    best = train(compose_config(overrides, mlruns))
    metric, threshold = BEATS_TRIVIAL[task]
    assert (best > threshold) if metric.endswith("acc") else (best < threshold), f"{metric}={best}"


# ---- language models and VAEs, with tiny networks defined here ----


class TinyLM(nn.Module):
    """Next token from the current one alone: embedding -> logits."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab_size, 16), nn.Linear(16, vocab_size)

    def forward(self, x):
        return self.head(self.embed(x))  # (B, T, V)


class TinyVAE(nn.Module):
    def __init__(self, size: int, latent: int = 2):
        super().__init__()
        self.encoder, self.decoder = nn.Linear(size, 2 * latent), nn.Linear(latent, size)

    def forward(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, Z) each
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decoder(z), mu, logvar  # logits (B, D)


def fit_tiny(module, inputs, targets, epochs=3):
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=16)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", log_every_n_steps=1)
    trainer.fit(module, loader, loader)
    return trainer


@pytest.mark.parametrize("loss", [CrossEntropy(), Focal(gamma=2.0)], ids=["cross_entropy", "focal"])
def test_language_model_metrics_come_from_the_next_token_cross_entropy(loss):
    torch.manual_seed(0)
    vocab, steps = 7, 6
    tokens = torch.randint(0, vocab, (64, 1)) + torch.arange(steps + 1)  # each next token is the current + 1
    inputs, targets = tokens[:, :-1] % vocab, tokens[:, 1:] % vocab  # (B, T) each
    spec = DataSpec("tokens", (steps,), "language_model", vocab, vocab_size=vocab)
    module = ExperimentModule(TinyLM(vocab), loss, partial(torch.optim.Adam, lr=0.05), None, spec)
    trainer = fit_tiny(module, inputs, targets)
    metrics = trainer.callback_metrics
    with torch.no_grad():
        cross_entropy = nn.functional.cross_entropy(module(inputs).reshape(-1, vocab), targets.reshape(-1)).item()
    assert metrics["val/perplexity"].item() == pytest.approx(math.exp(cross_entropy), rel=1e-4)
    assert metrics["val/bpc"].item() == pytest.approx(cross_entropy / LN2, rel=1e-4)
    assert metrics["val/perplexity"].item() < vocab / 2  # learnt something: uniform guessing scores vocab


def test_perplexity_of_uniform_guesses_is_the_vocabulary():
    from src.module import BitsPerCharacter, Perplexity

    logits, target = torch.zeros(2, 3, 8), torch.randint(0, 8, (2, 3))
    assert Perplexity()(logits, target).item() == pytest.approx(8.0)
    assert BitsPerCharacter()(logits, target).item() == pytest.approx(3.0)


def test_a_vae_trains_with_the_elbo_and_logs_its_parts():
    torch.manual_seed(0)
    x = (torch.rand(64, 6) > 0.5).float()
    spec = DataSpec("features", (6,), "reconstruction", 6)
    module = ExperimentModule(TinyVAE(6), ELBO(beta=1.0), partial(torch.optim.Adam, lr=0.01), None, spec)
    trainer = fit_tiny(module, x, x)
    metrics = trainer.callback_metrics
    for name in ("train/loss", "train/recon", "train/kl", "val/loss", "val/recon", "val/kl"):
        assert name in metrics and torch.isfinite(metrics[name]), name
    assert metrics["val/loss"].item() == pytest.approx((metrics["val/recon"] + metrics["val/kl"]).item(), rel=1e-5)
    assert metrics["val/kl"].item() >= 0


# ---- references outside the project ----


def recorded_metric(mlruns, name: str) -> float:
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    (run,) = client.search_runs([experiment.experiment_id])
    return run.data.metrics[name]


def split(name: str):
    from src.data.bundled import BundledDataModule

    datamodule = BundledDataModule(name)
    datamodule.setup()
    return datamodule.splits


@pytest.mark.slow
def test_linear_mse_matches_least_squares_on_diabetes(mlruns):
    from sklearn.linear_model import LinearRegression

    (x, y), (x_test, y_test) = split("diabetes")["train"], split("diabetes")["test"]
    reference = LinearRegression().fit(x.numpy(), y.numpy())
    reference_mse = float(((reference.predict(x_test.numpy()) - y_test.numpy()) ** 2).mean())
    # full-batch L-BFGS solves the least-squares problem within its first step
    overrides = ["data=diabetes", "model=linear", "loss=mse", "optimizer=lbfgs", "data.batch_size=full",
                 "trainer.max_epochs=5", "callbacks=none"]
    train(compose_config(overrides, mlruns))
    assert recorded_metric(mlruns, "test/mse") == pytest.approx(reference_mse, rel=0.02)


@pytest.mark.slow
def test_linear_bce_matches_logistic_regression_on_breast_cancer(mlruns):
    from sklearn.linear_model import LogisticRegression

    (x, y), (x_test, y_test) = split("breast_cancer")["train"], split("breast_cancer")["test"]
    reference = LogisticRegression(C=1.0, max_iter=10_000).fit(x.numpy(), y.numpy())
    reference_acc = reference.score(x_test.numpy(), y_test.numpy())
    # The same objective: sklearn minimises C * sum(log-loss) + |w|^2 / 2, i.e. the mean
    # log-loss + |w|^2 / (2 C N); torch's L2 weight_decay adds exactly weight_decay * w to
    # the gradient. The training loss ranks checkpoints so the converged weights are tested.
    weight_decay = 1.0 / len(x)
    overrides = ["data=breast_cancer", "model=linear", "loss=bce", "optimizer=adam", "optimizer.lr=0.1",
                 f"optimizer.weight_decay={weight_decay}", "data.batch_size=full", "trainer.max_epochs=200",
                 "+trainer.check_val_every_n_epoch=20", "objective=train/loss", "callbacks=none"]
    train(compose_config(overrides, mlruns))
    assert abs(recorded_metric(mlruns, "test/acc") - reference_acc) <= 0.01
