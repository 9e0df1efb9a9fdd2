"""Bag of words: the documents' "Embedding, GlobalAveragePooling1D, Dense" text classifier."""

from torch import nn

from src.catalog import check_fit
from src.models.inputs import activation_layer


class BagOfWords(nn.Module):
    """token embedding -> average over the real tokens -> Dense + activation -> output.

    The average ignores padding (id 0), so a short text is not diluted by the
    padding after it. Word order is lost: "good but dull" and "dull but good"
    give the same vector.
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
        embed_dim: int = 32,
        hidden_size: int = 32,
        activation: str = "relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        check_fit("bow", input_kind, task)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.head = nn.Sequential(
            nn.Linear(embed_dim, hidden_size), activation_layer(activation), nn.Dropout(dropout),
            nn.Linear(hidden_size, output_size),
        )

    def forward(self, x):
        # padding_idx=0 embeds padding as zeros, so the sum holds real tokens only
        total = self.embedding(x).sum(1)  # (B, E)
        count = (x != 0).sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        return self.head(total / count)  # (B, output_size)
