"""Convolutional network: convolution + pooling layers, then dense layers (LeCun et al. 1998)."""

import math

from torch import nn

from src.catalog import check_fit
from src.models.inputs import activation_layer


class CNN(nn.Module):
    """[Conv -> activation -> max-pool 2] x num_layers -> flatten -> Dense + activation -> output.

    2-D convolutions over images; 1-D over everything else: token embeddings
    (embed_dim channels along the sequence), a feature vector (F,) as a
    one-channel signal, a sequence of feature vectors (T, F) with F channels.
    Convolutions keep the size ("same" padding); each pooling halves it while
    it is at least 2, so small inputs (iris' 4 features) still fit.
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
        channels: int = 32,
        kernel_size: int = 3,
        num_layers: int = 2,
        hidden_size: int = 64,
        activation: str = "relu",
        dropout: float = 0.0,
        embed_dim: int = 32,
    ):
        super().__init__()
        check_fit("cnn", input_kind, task)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: use an odd size >= 1, so the padding keeps the size")
        self.input_kind = input_kind
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0) if input_kind == "tokens" else None
        conv, pool = nn.Conv1d, nn.MaxPool1d
        if input_kind == "image":
            conv, pool = nn.Conv2d, nn.MaxPool2d
            width, size = input_shape[0], list(input_shape[1:])
        elif input_kind == "tokens":
            width, size = embed_dim, [input_shape[0]]
        elif len(input_shape) == 2:
            width, size = input_shape[1], [input_shape[0]]
        else:
            width, size = 1, [input_shape[0]]
        layers = []
        for _ in range(num_layers):
            layers += [conv(width, channels, kernel_size, padding=kernel_size // 2), activation_layer(activation)]
            if min(size) >= 2:
                layers.append(pool(2))
                size = [s // 2 for s in size]
            width = channels
        layers += [
            nn.Flatten(), nn.Linear(width * math.prod(size), hidden_size), activation_layer(activation),
            nn.Dropout(dropout), nn.Linear(hidden_size, output_size),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        if self.embedding is not None:
            x = self.embedding(x).transpose(1, 2)  # (B, T, E) -> (B, E, T): channels first
        elif self.input_kind == "features":
            x = x.unsqueeze(1) if x.dim() == 2 else x.transpose(1, 2)  # (B, 1, F) or (B, F, T)
        return self.layers(x)  # (B, output_size)
