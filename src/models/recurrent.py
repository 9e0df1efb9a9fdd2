"""Recurrent networks: vanilla (Elman) RNN, LSTM and GRU, one class picked by `cell`.

rnn:  h_t = tanh(W_hh h_{t-1} + W_hx x_t + b)                (Elman 1990)
lstm: input, forget and output gates over a cell state        (Hochreiter & Schmidhuber 1997)
gru:  update and reset gates, no separate cell state          (Cho et al. 2014)

Each layer is torch's nn.RNN / nn.LSTM / nn.GRU (fast kernels on every
accelerator); the layers are stacked here one by one so that each can have its
own size, as in the documents' stacked BiLSTM 64 -> 32.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from src.catalog import check_fit
from src.models.inputs import SequenceInput

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Recurrent(nn.Module):
    """input -> SequenceInput (B, T, embed_dim) -> recurrent layers -> head.

    Classification and regression read the last layer's final state (both
    directions' when bidirectional); token sequences are packed, so the final
    state is that of the last real token, not of the padding after it (tokens
    are padded at the end). For task=language_model the head is applied at every
    step, giving next-token logits (B, T, V) from a left-to-right reading.

    Layer sizes: hidden_size x num_layers, or hidden_sizes (a list, e.g.
    [64, 32]) which, when set, replaces both and gives each layer its own size.
    A bidirectional layer of size H passes 2H values to the next one.
    The head is one linear layer, or with head_hidden_size > 0 a dense ReLU layer
    of that size before it (the documents' BiLSTM -> Dense(64, relu) -> output).
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        hidden_sizes: list[int] | None = None,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embed_dim: int = 32,
        head_hidden_size: int = 0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell {cell!r} is not one of {sorted(CELLS)}")
        check_fit(cell, input_kind, task)  # the option's name is the cell's
        self.language_model = task == "language_model"
        if self.language_model and bidirectional:
            raise ValueError(
                "bidirectional=True would let a language model read the token it must predict; "
                "set model.bidirectional=false for task=language_model"
            )
        sizes = list(hidden_sizes) if hidden_sizes is not None else [hidden_size] * num_layers
        if not sizes or min(sizes) < 1:
            raise ValueError(f"hidden_sizes={sizes} (from hidden_size x num_layers): give at least one layer of size >= 1")
        self.sizes = sizes
        self.input_kind = input_kind
        self.inputs = SequenceInput(input_kind, input_shape, vocab_size, embed_dim)
        directions = 2 if bidirectional else 1
        self.layers = nn.ModuleList()
        width = embed_dim
        for size in sizes:
            self.layers.append(CELLS[cell](width, size, batch_first=True, bidirectional=bidirectional))
            width = size * directions
        self.dropout = nn.Dropout(dropout)
        if head_hidden_size > 0:
            self.head = nn.Sequential(nn.Linear(width, head_hidden_size), nn.ReLU(), nn.Linear(head_hidden_size, output_size))
        else:
            self.head = nn.Linear(width, output_size)

    def forward(self, x):
        h = self.inputs(x)  # (B, T, E)
        if self.input_kind == "tokens" and not self.language_model:
            lengths = (x != 0).sum(1).clamp(min=1).cpu()  # (B,) real tokens; padding comes after them
            h = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        for i, layer in enumerate(self.layers):
            if i:  # dropout between layers, on the packed values too
                h = h._replace(data=self.dropout(h.data)) if not isinstance(h, torch.Tensor) else self.dropout(h)
            h, state = layer(h)  # h: (B, T, directions*H) or packed
        if self.language_model:
            return self.head(self.dropout(h))  # (B, T, V)
        final = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h_n, c_n)
        # (directions, B, H): the forward direction after the last real step, the backward after the first
        final = final.transpose(0, 1).flatten(1)  # (B, directions*H)
        return self.head(self.dropout(final))  # (B, output_size)
