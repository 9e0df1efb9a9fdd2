"""The adding problem (Hochreiter & Schmidhuber 1997): remember two marked values
across a long sequence and add them.

Each example is a sequence of seq_len (value, marker) pairs, features of shape
(seq_len, 2): values drawn uniformly from [0, 1), markers 0 except at two
positions, one in the first half and one in the second (as in Le et al. 2015).
The target is the sum of the two marked values (regression, in [0, 2)).
Predicting the mean, 1.0, gives a mean squared error of about 0.167; a model
that solves the task goes far below it. Everything comes from a torch.Generator
seeded with the seed; values are continuous, so no sequence is in two splits.
"""

import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec


def generate(num_examples: int, seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (num_examples, seq_len, 2) and targets (num_examples,), float32."""
    if seq_len < 2:
        raise ValueError(f"seq_len={seq_len}: the adding problem needs at least 2 steps")
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(num_examples, seq_len, generator=generator)  # (N, T)
    half = seq_len // 2
    first = torch.randint(0, half, (num_examples,), generator=generator)
    second = torch.randint(half, seq_len, (num_examples,), generator=generator)
    markers = torch.zeros(num_examples, seq_len)
    rows = torch.arange(num_examples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]  # (N,)
    return torch.stack([values, markers], dim=-1), targets  # (N, T, 2), (N,)


class AddingDataModule(TensorDataModule):
    """Sequences of (value, marker) pairs; the target is the sum of the marked values.

    Targets are kept as they are (not standardised) so the known baselines hold:
    MSE 0.167 for always answering 1.0.
    """

    def __init__(
        self,
        num_examples: int = 6000,
        seq_len: int = 50,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(batch_size, use_dataloader)
        self.num_examples, self.seq_len = num_examples, seq_len
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load(self):
        inputs, targets = generate(self.num_examples, self.seq_len, self.split_seed)
        index = split_indices(targets.numpy(), self.val_fraction, self.test_fraction, self.split_seed, stratify=False)
        splits = {name: (inputs[index[name]], targets[index[name]]) for name in SPLITS}
        spec = DataSpec(input_kind="features", input_shape=(self.seq_len, 2), task="regression", output_size=1)
        return splits, spec
