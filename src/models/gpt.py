"""Decoder-only Transformer language model (GPT: Radford et al. 2018).

The encoder blocks of transformer.py with a causal mask: position t attends to
positions <= t only, so its output is a prediction of token t+1 that has not
seen it. Positions are sinusoidal over the data's sequence length (the context).
"""

import torch
from torch import nn

from src.catalog import check_fit
from src.models.inputs import SequenceInput
from src.models.transformer import EncoderBlock, sinusoidal_positions


class GPT(nn.Module):
    """token embedding + positions -> causal blocks -> layer norm -> next-token logits (B, T, V)."""

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "language_model",
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_size: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        check_fit("gpt", input_kind, task)
        self.context = input_shape[0]
        self.inputs = SequenceInput(input_kind, input_shape, vocab_size, d_model)
        self.register_buffer("positions", sinusoidal_positions(self.context, d_model), persistent=False)
        causal = torch.ones(self.context, self.context, dtype=torch.bool).triu(1)  # True above the diagonal: the future
        self.register_buffer("causal", causal, persistent=False)
        self.blocks = nn.ModuleList(EncoderBlock(d_model, num_heads, ff_size, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, output_size)

    def forward(self, idx):
        T = idx.size(1)
        if T > self.context:
            raise ValueError(f"the input has {T} tokens; this model's context is {self.context}")
        h = self.inputs(idx) + self.positions[:T]  # (B, T, C)
        # No padding mask: padding comes after the real tokens, which never look ahead.
        for block in self.blocks:
            h = block(h, self.causal[:T, :T])
        return self.head(self.norm(h))  # (B, T, V)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None):
        """idx (B, T) extended by max_new_tokens sampled tokens -> (B, T + max_new_tokens).

        Each token is drawn from softmax(logits / temperature), among the top_k
        most likely if set, given the last `context` tokens. Padding (id 0) is
        never drawn. Runs in eval mode (no dropout) and restores the mode after.
        """
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: must be > 0 (lower is more greedy)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k}: must be >= 1, or None for the whole vocabulary")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.context:])[:, -1] / temperature  # (B, V): the next token's
            logits[:, 0] = float("-inf")
            if top_k is not None:
                kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_id = torch.multinomial(torch.softmax(logits, dim=-1), 1)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
        self.train(was_training)
        return idx
