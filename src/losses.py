"""Loss adapters: each takes the model's output and the targets, knows the task,
and returns the scalar loss plus named parts to log (empty for simple losses).

Integer targets are class labels; floating-point targets are values to regress.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _class_probabilities(output: torch.Tensor) -> torch.Tensor:
    """Softmax over classes, or a sigmoid for a single binary logit."""
    return torch.sigmoid(output.squeeze(-1)) if output.size(-1) == 1 else torch.softmax(output, dim=-1)


def _as_probability_targets(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return target.float() if output.size(-1) == 1 else F.one_hot(target, output.size(-1)).float()


class CrossEntropy(nn.Module):
    """Softmax cross-entropy: -log p(correct class). Also next-token prediction,
    where output is (B, T, V) and target (B, T)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, output, target):
        logits = output.reshape(-1, output.size(-1))  # (N, C)
        loss = F.cross_entropy(logits, target.reshape(-1), label_smoothing=self.label_smoothing)
        return loss, {}


class MSE(nn.Module):
    """Mean squared error. On a classifier (integer targets) it compares the
    predicted class probabilities with one-hot targets, as the documents discuss."""

    def forward(self, output, target):
        if target.dtype.is_floating_point:
            return F.mse_loss(output.squeeze(-1), target), {}
        probabilities = _class_probabilities(output)
        return F.mse_loss(probabilities, _as_probability_targets(output, target)), {}
