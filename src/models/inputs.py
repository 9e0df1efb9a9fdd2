"""Turning each input kind into what a network reads: a flat vector or a sequence."""

import math

import torch
from torch import nn

from src.catalog import ACTIVATIONS


def activation_layer(name: str) -> nn.Module:
    """The torch.nn layer of an activation name (src/catalog.py: ACTIVATIONS)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not one of {sorted(ACTIVATIONS)}")
    return getattr(nn, ACTIVATIONS[name])()


class FlatInput(nn.Module):
    """Any input as one vector per example: features as they are, images
    flattened, tokens embedded and concatenated position by position."""

    def __init__(self, input_kind: str, input_shape: tuple[int, ...], vocab_size: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0) if input_kind == "tokens" else None
        width = math.prod(input_shape)
        self.size = width * embed_dim if self.embedding is not None else width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)  # (B, T, E)
        return x.flatten(1)  # (B, size)


class SequenceInput(nn.Module):
    """Any input as a sequence of dim-sized vectors (B, T, dim): tokens embedded,
    an image read row by row, a feature vector (F,) read one feature per step,
    a sequence of feature vectors (T, F) read one vector per step."""

    def __init__(self, input_kind: str, input_shape: tuple[int, ...], vocab_size: int, dim: int):
        super().__init__()
        self.input_kind = input_kind
        if input_kind == "tokens":
            self.project = nn.Embedding(vocab_size, dim, padding_idx=0)
            self.seq_len = input_shape[0]
        elif input_kind == "image":
            channels, height, width = input_shape
            self.project = nn.Linear(channels * width, dim)
            self.seq_len = height
        elif len(input_shape) == 2:  # features (T, F): already a sequence
            self.project = nn.Linear(input_shape[1], dim)
            self.seq_len = input_shape[0]
        else:
            self.project = nn.Linear(1, dim)
            self.seq_len = input_shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_kind == "image":
            x = x.permute(0, 2, 1, 3).flatten(2)  # (B, C, H, W) -> (B, H, C*W): one row per step
        elif self.input_kind == "features" and x.dim() == 2:
            x = x.unsqueeze(-1)  # (B, F) -> (B, F, 1): one feature per step
        return self.project(x)  # (B, T, dim)

    def padding_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """True where a token is padding (id 0); None for inputs without padding.

        The first position is never masked, so that an all-padding example still
        has one key to attend to (else its softmax is 0/0).
        """
        if self.input_kind != "tokens":
            return None
        mask = x == 0
        mask[:, 0] = False
        return mask
