"""scikit-learn's bundled tabular data sets (no download): iris, breast_cancer, diabetes."""

import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.preprocessing import StandardScaler

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec

# name -> (loader, task)
BUNDLED = {
    "iris": (load_iris, "multiclass"),  # 150 flowers, 4 features, 3 species
    "breast_cancer": (load_breast_cancer, "binary"),  # 569 tumours, 30 features, malignant/benign
    "diabetes": (load_diabetes, "regression"),  # 442 patients, 10 features, disease progression
}


class BundledDataModule(TensorDataModule):
    """A bundled table as feature vectors, standardised with the training split's
    mean and deviation only. Regression targets are standardised the same way, so
    losses and learning rates mean the same across data sets."""

    def __init__(
        self,
        name: str,
        batch_size: int | str = 32,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(batch_size, use_dataloader)
        if name not in BUNDLED:
            raise ValueError(f"data.name={name!r} is not a bundled data set; choose one of {sorted(BUNDLED)}")
        self.name, self.val_fraction, self.test_fraction, self.split_seed = name, val_fraction, test_fraction, split_seed

    def load(self):
        loader, task = BUNDLED[self.name]
        bunch = loader()
        features, targets = bunch.data, bunch.target
        index = split_indices(targets, self.val_fraction, self.test_fraction, self.split_seed,
                              stratify=task != "regression")
        scaler = StandardScaler().fit(features[index["train"]])
        inputs = torch.tensor(scaler.transform(features), dtype=torch.float32)
        if task == "regression":
            train_y = targets[index["train"]]
            self.target_mean, self.target_std = float(train_y.mean()), float(train_y.std())
            labels = torch.tensor((targets - self.target_mean) / self.target_std, dtype=torch.float32)
        else:
            labels = torch.tensor(targets, dtype=torch.long)
        splits = {name: (inputs[index[name]], labels[index[name]]) for name in SPLITS}
        names = tuple(str(n) for n in getattr(bunch, "target_names", ())) if task != "regression" else ()
        spec = DataSpec(
            input_kind="features",
            input_shape=(features.shape[1],),
            task=task,
            output_size=len(names) if task == "multiclass" else 1,
            class_names=names,
        )
        return splits, spec
