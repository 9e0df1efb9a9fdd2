"""One linear layer: linear regression, or logistic regression with a sigmoid/softmax loss."""

import math

from torch import nn

from src.catalog import check_fit


class Linear(nn.Module):
    """y = w·x + b on the flattened input.

    With loss=mse on a regression task this is linear regression; with loss=bce
    on a binary task, p = sigmoid(w·x + b) is logistic regression; with
    cross_entropy on a multi-class task it is softmax (multinomial) regression.
    """

    def __init__(
        self,
        input_kind: str,
        input_shape: tuple[int, ...],
        output_size: int,
        vocab_size: int = 0,
        task: str = "multiclass",
    ):
        super().__init__()
        check_fit("linear", input_kind, task)
        self.layer = nn.Linear(math.prod(input_shape), output_size)

    def forward(self, x):
        return self.layer(x.flatten(1))  # (B, output_size)
