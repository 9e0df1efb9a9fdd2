"""scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes)."""

import torch
from sklearn.datasets import load_digits

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec


class DigitsDataModule(TensorDataModule):
    """Grey-scale 8x8 images with pixel values scaled from 0..16 to 0..1."""

    def __init__(
        self,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
        reconstruct: bool = False,
    ):
        super().__init__(batch_size, use_dataloader)
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.reconstruct = reconstruct  # targets are the images themselves (for a VAE)

    def load(self):
        images, labels = load_digits(return_X_y=True)
        inputs = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
        targets = torch.tensor(labels, dtype=torch.long)
        index = split_indices(labels, self.val_fraction, self.test_fraction, self.split_seed, stratify=True)
        if self.reconstruct:
            splits = {name: (inputs[index[name]], inputs[index[name]]) for name in SPLITS}
            return splits, DataSpec(input_kind="image", input_shape=(1, 8, 8), task="reconstruction", output_size=64)
        splits = {name: (inputs[index[name]], targets[index[name]]) for name in SPLITS}
        spec = DataSpec(
            input_kind="image",
            input_shape=(1, 8, 8),
            task="multiclass",
            output_size=10,
            class_names=tuple(str(d) for d in range(10)),
        )
        return splits, spec
