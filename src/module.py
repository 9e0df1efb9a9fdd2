"""The one LightningModule: a network, a loss, an optimizer and a schedule,
measured with the task's metrics."""

import inspect

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from src.data.spec import DataSpec

# The metric a run is judged by when the config's `objective` is null.
DEFAULT_OBJECTIVE = {
    "multiclass": "val/acc",
    "binary": "val/acc",
    "regression": "val/mse",
    "language_model": "val/loss",
    "reconstruction": "val/loss",
}
LOWER_IS_BETTER = ("loss", "mse", "mae", "perplexity", "bpc")


def objective_of(objective: str | None, task: str) -> tuple[str, str]:
    """(metric name, "min" or "max") for the configured objective or the task's default."""
    metric = objective or DEFAULT_OBJECTIVE[task]
    return metric, "min" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else "max"


def task_metrics(spec: DataSpec) -> dict:
    """Name -> torchmetrics Metric, for what the task's predictions should be judged by."""
    if spec.task == "multiclass":
        return {
            "acc": MulticlassAccuracy(spec.output_size),
            "f1": MulticlassF1Score(spec.output_size, average="macro"),
        }
    if spec.task == "binary":
        return {"acc": BinaryAccuracy(), "auroc": BinaryAUROC()}
    if spec.task == "regression":
        return {"mse": MeanSquaredError(), "mae": MeanAbsoluteError(), "r2": R2Score()}
    return {}


def metric_names(spec: DataSpec, stage: str) -> list[str]:
    """Every metric a stage logs, e.g. ["val/loss", "val/acc", "val/f1"]."""
    return [f"{stage}/loss", *(f"{stage}/{name}" for name in task_metrics(spec))]


def predictions(output: torch.Tensor, task: str) -> torch.Tensor:
    """The model's output in the form the task's metrics read."""
    if task == "binary":
        return torch.sigmoid(output.squeeze(-1))  # probability of class 1
    if task == "regression":
        return output.squeeze(-1)
    return output  # class logits


class ExperimentModule(pl.LightningModule):
    """net + loss + optimizer/scheduler factories (functools.partial) + metrics."""

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer, scheduler, spec: DataSpec):
        super().__init__()
        self.net, self.loss = net, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.task = spec.task
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
        # sync_dist: under DDP the logged value is the mean over processes (a no-op on one).
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        for name, value in parts.items():
            self.log(f"train/{name}", value, sync_dist=True)
        return loss

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
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        # Step-wise schedules that need the run's length get it from the trainer.
        scheduler_class = self.scheduler_factory.func
        needs = inspect.signature(scheduler_class).parameters
        filled = {}
        for name in ("T_max", "total_steps"):
            if name in needs and name not in self.scheduler_factory.keywords:
                filled[name] = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, **filled)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
