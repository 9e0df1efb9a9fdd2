"""Multi-layer perceptron: stacked dense layers with a chosen activation."""

from torch import nn

from src.catalog import check_fit
from src.models.inputs import FlatInput, activation_layer


class MLP(nn.Module):
    """input -> [Linear -> activation -> dropout] x num_layers -> Linear -> output.

    num_layers=0 is a single linear layer. Token inputs are embedded (embed_dim)
    and concatenated; images are flattened.
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
        hidden_size: int = 128,
        num_layers: int = 2,
        activation: str = "relu",
        dropout: float = 0.0,
        embed_dim: int = 32,
    ):
        super().__init__()
        check_fit("mlp", input_kind, task)
        self.inputs = FlatInput(input_kind, input_shape, vocab_size, embed_dim)
        layers, width = [], self.inputs.size
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), activation_layer(activation), nn.Dropout(dropout)]
            width = hidden_size
        layers.append(nn.Linear(width, output_size))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(self.inputs(x))  # (B, output_size)
