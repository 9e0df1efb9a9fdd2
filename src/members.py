"""Several seeds of one config trained as one network (src/seeds.py decides when):
their parameters stacked (torch.func.stack_module_state) and one vmapped
functional_call running every member's forward and backward per step, each on its own
batch (its seed's order); one optimizer updates the stacked parameters, which for an
elementwise optimizer (SGD, momentum, Adam, AdamW, ...) is each member's own update.
Each member starts from its seed's initialisation and draws its own random numbers
(dropout masks). Member k's metrics are logged as member<k>/<name>, and MemberLoggers
sends them to member k's run as <name>.
"""

import copy
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torchmetrics import MetricCollection

from src.internals import logs_this_step
from src.module import optimizer_and_schedule, predictions, task_metrics
from src.recovery import save_whole, val_loss

# Where a member's metrics go on their way to its run: member<k>/val/acc is val/acc of member k.
PREFIX = "member"


class Members(pl.LightningModule):
    """K ExperimentModules of one config trained as one: their networks' parameters
    stacked along a first dimension of size K, run with one vmapped functional_call."""

    def __init__(self, modules: list, spec):
        super().__init__()
        first = modules[0]
        self.solo = modules  # a plain list (not submodules): each member's own module, for its record
        self.loss, self.task, self.count = first.loss, first.task, len(modules)
        self.optimizer_factory, self.scheduler_factory = first.optimizer_factory, first.scheduler_factory
        self.objective, self.objective_mode = first.objective, first.objective_mode
        params, buffers = stack_module_state([m.net for m in modules])
        self.param_names, self.buffer_names = list(params), list(buffers)
        self.stacked = nn.ParameterList([nn.Parameter(params[name].detach()) for name in self.param_names])
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[name], persistent=False)
        # The network's structure alone (no storage): functional_call fills in each member's tensors.
        self.template = [copy.deepcopy(first.net).to("meta")]
        # vmap's embedding backward keeps padding_idx's row out of the gradient for the first
        # member only (torch 2.13): the others' are zeroed after each backward, as alone.
        self.padding_rows = [(self.param_names.index(f"{name}.weight"), module.padding_idx)
                             for name, module in first.net.named_modules()
                             if isinstance(module, nn.Embedding) and module.padding_idx is not None]
        self.val_metrics = nn.ModuleList(MetricCollection(task_metrics(spec), prefix=f"{PREFIX}{k}/val/")
                                         for k in range(self.count))
        self.test_metrics = nn.ModuleList(MetricCollection(task_metrics(spec), prefix=f"{PREFIX}{k}/test/")
                                          for k in range(self.count))
        self.test_confusions = nn.ModuleList(m.test_confusion for m in modules if m.test_confusion is not None)

    def member_tensors(self) -> tuple[dict, dict]:
        buffers = {name: getattr(self, f"stacked_buffer_{i}") for i, name in enumerate(self.buffer_names)}
        return dict(zip(self.param_names, self.stacked, strict=True)), buffers

    def run_members(self, x, y, shared: bool):
        """(outputs, losses, loss parts) of every member, each with a leading K: on its
        own batch (x, y of shape (K, B, ...)), or all on one batch (shared)."""
        net, loss = self.template[0], self.loss
        net.train(self.training)

        def one_member(params, buffers, x, y):
            output = functional_call(net, (params, buffers), (x,))
            return output, *loss(output, y)

        batch_dim = None if shared else 0
        return vmap(one_member, in_dims=(0, 0, batch_dim, batch_dim), randomness="different")(
            *self.member_tensors(), x, y)

    def training_step(self, batch, batch_idx):
        _, losses, parts = self.run_members(*batch, shared=False)
        if logs_this_step(self.trainer):
            self.log("loss", losses.mean(), prog_bar=True, logger=False)
            for k in range(self.count):
                self.log(f"{PREFIX}{k}/train/loss", losses[k])
                for name, value in parts.items():
                    self.log(f"{PREFIX}{k}/train/{name}", value[k])
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])  # one lr: every member's
        # The members share no parameter: the sum's gradient is, for each, its own loss's.
        return losses.sum()

    def on_after_backward(self):
        for index, row in self.padding_rows:
            if self.stacked[index].grad is not None:
                self.stacked[index].grad[:, row] = 0

    def member_grad_norms(self) -> torch.Tensor:
        """Each member's gradient norm over all its parameters: (K,)."""
        grads = [p.grad for p in self.stacked if p.grad is not None]
        return torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()

    def on_before_optimizer_step(self, optimizer):
        if logs_this_step(self.trainer):
            for k, norm in enumerate(self.member_grad_norms()):
                self.log(f"{PREFIX}{k}/train/grad_norm", norm)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Clipping by value is elementwise already; by norm, each member by its own norm,
        # as torch.nn.utils.clip_grad_norm_ would clip it alone.
        if gradient_clip_val is None or gradient_clip_algorithm == "value":
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        scale = (gradient_clip_val / (self.member_grad_norms() + 1e-6)).clamp(max=1.0)
        for p in self.stacked:
            if p.grad is not None:
                p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))

    def _evaluate(self, batch, stage: str, metrics: nn.ModuleList) -> None:
        x, y = batch
        outputs, losses, parts = self.run_members(x, y, shared=True)
        for k in range(self.count):
            self.log(f"{PREFIX}{k}/{stage}/loss", losses[k], batch_size=len(x))
            for name, value in parts.items():
                self.log(f"{PREFIX}{k}/{stage}/{name}", value[k], batch_size=len(x))
            output = tuple(o[k] for o in outputs) if isinstance(outputs, tuple) else outputs[k]
            if len(metrics[k]):
                metrics[k].update(predictions(output, self.task), y)
                self.log_dict(metrics[k])
            if stage == "test" and len(self.test_confusions):
                self.test_confusions[k].update(predictions(output, self.task), y)
        self.log(f"{stage}/loss", losses.mean(), prog_bar=stage == "val", logger=False, batch_size=len(x))

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test", self.test_metrics)

    def on_test_epoch_start(self):
        for confusion in self.test_confusions:
            confusion.reset()

    def on_test_epoch_end(self):
        for k, confusion in enumerate(self.test_confusions):
            self.trainer.callback_metrics[f"{PREFIX}{k}/test/confusion_matrix"] = confusion.compute()

    def configure_optimizers(self):
        return optimizer_and_schedule(self)

    @torch.no_grad()
    def member_state(self, k: int) -> dict:
        """Member k's state dict, as its ExperimentModule trained alone would have it."""
        params, buffers = self.member_tensors()
        net = self.solo[k].net
        for name, tensor in params.items():
            net.get_parameter(name).copy_(tensor[k])
        for name, tensor in buffers.items():
            net.get_buffer(name).copy_(tensor[k])
        return self.solo[k].state_dict()

    def member_net(self, k: int) -> nn.Module:
        """Member k's network as it is now, as a plain module on this module's device."""
        self.member_state(k)
        return self.solo[k].net.to(self.device)

    @torch.no_grad()
    def load_member(self, k: int, state_dict: dict) -> None:
        for name, tensor in zip(self.param_names, self.stacked, strict=True):
            tensor[k].copy_(state_dict[f"net.{name}"])


class MemberLoggers(Logger):
    """Lightning's logger for K runs: member<k>/<name> is <name> in member k's run
    (src/recovery.py's MLFlowLogger); a name without that prefix goes to every run."""

    def __init__(self, loggers: list):
        super().__init__()
        self.loggers = loggers

    @property
    def name(self) -> str:
        return "members"

    @property
    def version(self) -> None:
        return None

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # triad records the params itself (src/record.py)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        routed = [{} for _ in self.loggers]
        for key, value in metrics.items():
            head, _, rest = key.partition("/")
            if head.startswith(PREFIX) and head[len(PREFIX):].isdigit():
                routed[int(head[len(PREFIX):])][rest] = value
            else:
                for own in routed:
                    own[key] = value
        for logger, own in zip(self.loggers, routed, strict=True):
            if own:
                logger.log_metrics(own, step)

    def finalize(self, status: str) -> None:
        for logger in self.loggers:
            logger.finalize(status)


class BestMembers(Callback):
    """Each member's best checkpoint by the objective, checked after each validation
    (after each epoch without one) and saved as its run alone would save it: a tie
    goes to its lower val/loss, then to the later epoch (src/recovery.py's BestCheckpoint)."""

    def __init__(self, paths: list[Path], objective: str, mode: str):
        self.paths, self.objective, self.mode = paths, objective, mode
        self.best: list[float | None] = [None] * len(paths)
        self.best_val_loss = [math.inf] * len(paths)  # of the weights in each member's best checkpoint

    def on_validation_end(self, trainer: pl.Trainer, members: Members) -> None:
        if not trainer.sanity_checking:
            self.keep_improved(trainer, members)

    def on_train_epoch_end(self, trainer: pl.Trainer, members: Members) -> None:
        if sum(trainer.num_val_batches) == 0:
            self.keep_improved(trainer, members)

    def keep_improved(self, trainer: pl.Trainer, members: Members) -> None:
        for k, path in enumerate(self.paths):
            value = trainer.callback_metrics.get(f"{PREFIX}{k}/{self.objective}")
            if value is None or not torch.isfinite(value):
                continue
            value, best = float(value), self.best[k]
            loss = val_loss(trainer, f"{PREFIX}{k}/val/loss")
            tied = value == best and loss <= self.best_val_loss[k]
            if best is None or tied or (value > best if self.mode == "max" else value < best):
                self.best[k], self.best_val_loss[k] = value, loss
                save_whole({"state_dict": members.member_state(k), "epoch": trainer.current_epoch,
                            "global_step": trainer.global_step, "pytorch-lightning_version": pl.__version__}, path)
