"""Learning-rate schedules torch lacks as a single class."""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warm-up to the optimizer's lr, then cosine decay to eta_min.

    The first round(warmup_fraction * total_steps) steps (at least one) climb
    linearly, step s using lr * (s + 1) / warmup; the rest follow half a cosine
    down to eta_min at total_steps. The same as torch's LinearLR followed by
    CosineAnnealingLR in a SequentialLR, but one class, so one YAML file.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_fraction: float = 0.05,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ):
        if not 0 <= warmup_fraction < 1:
            raise ValueError(f"scheduler.warmup_fraction={warmup_fraction}: must be in [0, 1)")
        self.total_steps, self.eta_min = total_steps, eta_min
        self.warmup_steps = max(1, round(warmup_fraction * total_steps))
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        """The learning rate of the given (0-based) optimizer step."""
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1 + math.cos(math.pi * progress))

    def get_lr(self) -> list[float]:
        # last_epoch counts the scheduler's steps so far, i.e. the next optimizer step
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]
