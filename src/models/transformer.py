"""Transformer encoder (Vaswani et al. 2017) for classification and regression.

Sinusoidal positions, multi-head scaled dot-product attention, a position-wise
feed-forward network, residual connections and layer norm (pre-norm, which
trains stably without a warm-up).
"""

import math

import torch
from torch import nn

from src.catalog import POOLINGS, check_fit, heads_problem
from src.models.inputs import SequenceInput


def sinusoidal_positions(seq_len: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    position = torch.arange(seq_len, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    frequency = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    table = torch.zeros(seq_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table  # (T, d_model)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(Q K^T / sqrt(d_k)) V; mask is True where attention is not allowed."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, H, T, d_k)


class MultiHeadAttention(nn.Module):
    """num_heads attention heads over d_model / num_heads dimensions each."""

    def __init__(self, d_model: int, num_heads: int):
        super().__init__()
        if problem := heads_problem(d_model, num_heads):
            raise ValueError(problem)
        self.num_heads = num_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d)
        y = scaled_dot_product_attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class EncoderBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.feed_forward = nn.Sequential(nn.Linear(d_model, ff_size), nn.GELU(), nn.Linear(ff_size, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        x = x + self.dropout(self.attention(self.norm1(x), mask))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class Transformer(nn.Module):
    """Encoder over the input sequence, pooled (mean over real tokens, or the
    first token) into one vector, then a linear head."""

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_size: int = 128,
        dropout: float = 0.1,
        pooling: str = "mean",
    ):
        super().__init__()
        check_fit("transformer", input_kind, task)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {list(POOLINGS)}")
        self.pooling = pooling
        self.inputs = SequenceInput(input_kind, input_shape, vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(self.inputs.seq_len, d_model), persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(d_model, num_heads, ff_size, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, output_size)

    def forward(self, x):
        padding = self.inputs.padding_mask(x)  # (B, T) or None
        h = self.inputs(x) + self.positions  # (B, T, C)
        mask = padding[:, None, None, :] if padding is not None else None  # keys only: (B, 1, 1, T)
        for block in self.blocks:
            h = block(h, mask)
        h = self.norm(h)
        if self.pooling == "first":
            pooled = h[:, 0]
        elif padding is None:
            pooled = h.mean(dim=1)
        else:
            keep = (~padding).unsqueeze(-1).float()  # (B, T, 1)
            pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.head(pooled)  # (B, output_size)
