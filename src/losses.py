"""Loss adapters: each takes the model's output and the targets, knows the task,
and returns the scalar loss plus named parts to log (empty for simple losses).

Integer targets are class labels: a binary model outputs one logit (B, 1), a
multi-class model one logit per class (B, C), a language model (B, T, V) against
next-token ids (B, T). Floating-point targets are values to regress (B, 1).
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


class BCE(nn.Module):
    """Binary cross-entropy on logits. With one output it is logistic regression's
    loss; with C outputs it is one-vs-rest: a sigmoid per class against the one-hot
    target, averaged over examples and classes."""

    def forward(self, output, target):
        # squeeze(-1) only for the single binary logit; C outputs stay (B, C)
        logits = output.squeeze(-1) if output.size(-1) == 1 else output
        return F.binary_cross_entropy_with_logits(logits, _as_probability_targets(output, target)), {}


class MSE(nn.Module):
    """Mean squared error. On a classifier (integer targets) it compares the
    predicted class probabilities with one-hot targets, as the documents discuss."""

    def forward(self, output, target):
        if target.dtype.is_floating_point:
            return F.mse_loss(output.squeeze(-1), target), {}
        probabilities = _class_probabilities(output)
        return F.mse_loss(probabilities, _as_probability_targets(output, target)), {}


class MAE(nn.Module):
    """Mean absolute error (L1). On a classifier, probabilities against one-hot targets."""

    def forward(self, output, target):
        if target.dtype.is_floating_point:
            return F.l1_loss(output.squeeze(-1), target), {}
        probabilities = _class_probabilities(output)
        return F.l1_loss(probabilities, _as_probability_targets(output, target)), {}


class Huber(nn.Module):
    """Huber loss: squared below |error| = delta, linear above, so outliers pull
    less than with MSE. Regression only."""

    def __init__(self, delta: float = 1.0):
        super().__init__()
        self.delta = delta

    def forward(self, output, target):
        return F.huber_loss(output.squeeze(-1), target, delta=self.delta), {}


class Focal(nn.Module):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"):
    -(1 - p_t)^gamma * log p_t, which down-weights examples the model already gets
    right. gamma=0 is cross-entropy. p_t is the softmax probability of the correct
    class, or the sigmoid's for a single binary logit."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, output, target):
        if output.size(-1) == 1:  # binary: log p_t = -BCE, computed stably from the logit
            log_pt = -F.binary_cross_entropy_with_logits(output.squeeze(-1), target.float(), reduction="none")
        else:
            logits = output.reshape(-1, output.size(-1))  # (N, C), also (B, T, V) language models
            log_pt = -F.cross_entropy(logits, target.reshape(-1), reduction="none")  # (N,)
        return (-(1 - log_pt.exp()) ** self.gamma * log_pt).mean(), {}


class ELBO(nn.Module):
    """Negative evidence lower bound of a VAE, averaged over the batch:
    recon + beta * KL(q(z|x) || N(0, I)), each summed over an example's values.

    The model returns (reconstruction, mu, logvar); reconstruction has the input's
    shape and holds logits (reconstruction="bce", inputs in [0, 1]) or values
    ("mse"). beta=1 is the plain VAE; beta > 1 a beta-VAE (Higgins et al. 2017).
    """

    def __init__(self, reconstruction: str = "bce", beta: float = 1.0):
        super().__init__()
        if reconstruction not in ("bce", "mse"):
            raise ValueError(f"loss.reconstruction={reconstruction!r}: use 'bce' (logits) or 'mse' (values)")
        self.reconstruction, self.beta = reconstruction, beta

    def forward(self, output, target):
        reconstruction, mu, logvar = output
        if self.reconstruction == "bce":
            per_value = F.binary_cross_entropy_with_logits(reconstruction, target, reduction="none")
        else:
            per_value = F.mse_loss(reconstruction, target, reduction="none")
        recon = per_value.flatten(1).sum(1).mean()
        # closed form of KL(N(mu, sigma^2) || N(0, 1)), summed over latent dimensions
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        return recon + self.beta * kl, {"recon": recon, "kl": kl}
