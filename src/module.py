"""The one LightningModule: a network, a loss, an optimizer and a schedule,
measured with the task's metrics."""

import inspect
import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric, MetricCollection, R2Score
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from src.data.spec import DataSpec
from src.internals import logs_this_step

# The metric a run is judged by when the config's `objective` is null. Each is
# measured the same way whatever the loss, so runs with different losses compare
# (perplexity, not val/loss, for language models). A VAE is judged by its loss,
# the negative ELBO: an upper bound on -log p(x) when loss.beta=1.
DEFAULT_OBJECTIVE = {
    "multiclass": "val/acc",
    "binary": "val/acc",
    "regression": "val/mse",
    "language_model": "val/perplexity",
    "reconstruction": "val/loss",
}
LOWER_IS_BETTER = ("loss", "mse", "mae", "perplexity", "bpc", "recon", "kl")


def objective_of(objective: str | None, task: str) -> tuple[str, str]:
    """(metric name, "min" or "max") for the configured objective or the task's default."""
    metric = objective or DEFAULT_OBJECTIVE[task]
    return metric, "min" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


class Perplexity(Metric):
    """exp(mean next-token cross-entropy) over every token seen, from (B, T, V)
    logits and (B, T) next-token ids."""

    def __init__(self):
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="sum")
        self.total += nll.double()
        self.count += target.numel()

    def mean_cross_entropy(self) -> torch.Tensor:
        return (self.total / self.count).float()  # nats per token

    def compute(self) -> torch.Tensor:
        return self.mean_cross_entropy().exp()


class BitsPerCharacter(Perplexity):
    """Mean next-token cross-entropy in bits (nats / ln 2): bits per character on a
    character-level corpus, bits per token otherwise."""

    def compute(self) -> torch.Tensor:
        return self.mean_cross_entropy() / math.log(2)


def task_metrics(spec: DataSpec) -> dict:
    """Name -> torchmetrics Metric, for what the task's predictions should be judged by."""
    if spec.task == "multiclass":
        return {
            # micro: the share of examples classified right (torchmetrics' default,
            # macro, is the mean of per-class recalls: another number on unbalanced data)
            "acc": MulticlassAccuracy(spec.output_size, average="micro"),
            "f1": MulticlassF1Score(spec.output_size, average="macro"),
        }
    if spec.task == "binary":
        return {"acc": BinaryAccuracy(), "auroc": BinaryAUROC()}
    if spec.task == "regression":
        return {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
    if spec.task == "language_model":
        return {"perplexity": Perplexity(), "bpc": BitsPerCharacter()}
    return {}  # reconstruction: the ELBO's parts (recon, kl) are logged by the loss


def loss_part_names(task: str) -> tuple[str, ...]:
    """Names of the loss parts a task's loss logs besides the loss itself."""
    return ("recon", "kl") if task == "reconstruction" else ()


def metric_names(spec: DataSpec, stage: str) -> list[str]:
    """Every metric a stage logs, e.g. ["val/loss", "val/acc", "val/f1"]."""
    names = [*task_metrics(spec), *loss_part_names(spec.task)]
    return [f"{stage}/loss", *(f"{stage}/{name}" for name in names)]


def monitorable_metrics(spec: DataSpec) -> list[str]:
    """What an objective can watch: every validation metric, and the training loss and
    its parts (training_step logs no other metric)."""
    return [*metric_names(spec, "val"), *(f"train/{name}" for name in ("loss", *loss_part_names(spec.task)))]


def predictions(output: torch.Tensor, task: str) -> torch.Tensor:
    """The model's output in the form the task's metrics read."""
    if task == "binary":
        return torch.sigmoid(output.squeeze(-1))  # probability of class 1
    if task == "regression":
        return output.squeeze(-1)
    return output  # class logits


class ExperimentModule(pl.LightningModule):
    """net + loss + optimizer/scheduler factories (functools.partial) + metrics."""

    def __init__(
        self, net: nn.Module, loss: nn.Module, optimizer, scheduler, spec: DataSpec, objective: str | None = None
    ):
        super().__init__()
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task = spec.task
        # what ReduceLROnPlateau watches: the run's objective metric and direction
        self.objective, self.objective_mode = objective_of(objective, spec.task)
        self.val_metrics = MetricCollection(task_metrics(spec), prefix="val/")
        self.test_metrics = MetricCollection(task_metrics(spec), prefix="test/")
        self.test_confusion = None
        if spec.task == "multiclass":
            self.test_confusion = MulticlassConfusionMatrix(spec.output_size)
        elif spec.task == "binary":
            self.test_confusion = BinaryConfusionMatrix()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, parts = self.loss(self.net(x), y)
        if logs_this_step(self.trainer):
            # sync_dist: under DDP the logged value is the mean over processes (a no-op on one).
            self.log("train/loss", loss, prog_bar=True, sync_dist=True)
            for name, value in parts.items():
                self.log(f"train/{name}", value, sync_dist=True)
            # the lr this step uses; a Python float, so logging it costs no device sync
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        return loss

    def on_before_optimizer_step(self, optimizer):
        # Lightning calls this before it clips, so this is the unclipped norm.
        # Logging keeps a device tensor, read back only when the step is written.
        if logs_this_step(self.trainer):
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            if grads:
                self.log("train/grad_norm", torch.nn.utils.get_total_norm(grads, norm_type=2.0))

    def _evaluate(self, batch, stage: str, metrics: MetricCollection):
        x, y = batch
        output = self.net(x)
        loss, parts = self.loss(output, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=len(x), sync_dist=True)
        for name, value in parts.items():
            self.log(f"{stage}/{name}", value, batch_size=len(x), sync_dist=True)
        if len(metrics):
            metrics.update(predictions(output, self.task), y)
            self.log_dict(metrics, prog_bar=stage == "val")
        return output

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        output = self._evaluate(batch, "test", self.test_metrics)
        if self.test_confusion is not None:
            self.test_confusion.update(predictions(output, self.task), batch[1])

    def on_test_epoch_start(self):
        if self.test_confusion is not None:
            self.test_confusion.reset()

    def on_test_epoch_end(self):
        if self.test_confusion is not None:
            # compute() gathers the counts of every process, so every process calls it,
            # here. The callback metrics are what ddp_spawn workers send back to the
            # main process, so the matrix travels with them (read it from there).
            self.trainer.callback_metrics["test/confusion_matrix"] = self.test_confusion.compute()

    def configure_optimizers(self):
        return optimizer_and_schedule(self)


def optimizer_and_schedule(module: pl.LightningModule):
    """What configure_optimizers returns for a module with optimizer and scheduler
    factories, its objective and mode: the optimizer over its parameters and the
    schedule, sized by its trainer where the schedule needs the run's length."""
    optimizer = module.optimizer_factory(module.parameters())
    if module.scheduler_factory is None:
        return optimizer
    scheduler_class = module.scheduler_factory.func
    given = module.scheduler_factory.keywords
    if issubclass(scheduler_class, ReduceLROnPlateau):
        # Watches the objective after each validation, in its direction.
        filled = {} if "mode" in given else {"mode": module.objective_mode}
        scheduler = module.scheduler_factory(optimizer, **filled)
        schedule = {"scheduler": scheduler, "interval": "epoch", "monitor": module.objective}
        return {"optimizer": optimizer, "lr_scheduler": schedule}
    # Every other schedule steps per batch; those that need the run's length
    # (T_max, total_steps) get it from the trainer.
    needs = inspect.signature(scheduler_class).parameters
    filled = {}
    for name in ("T_max", "total_steps"):
        if name in needs and name not in given:
            filled[name] = int(module.trainer.estimated_stepping_batches)
    scheduler = module.scheduler_factory(optimizer, **filled)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
