"""The shared part of every data module: fixed splits, held as tensors, batched by seed."""

import math

import pytorch_lightning as pl
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Sampler, TensorDataset

from src.data.spec import DataSpec

SPLITS = ("train", "val", "test")


class SeededShuffle(Sampler):
    """A fresh permutation each epoch, from (seed, epoch) alone.

    Lightning calls set_epoch before every epoch, so a resumed run sees the same
    batches as an uninterrupted one, and the in-memory and DataLoader paths agree.
    """

    def __init__(self, num_items: int, seed: int, shuffle: bool):
        self.num_items, self.seed, self.shuffle, self.epoch = num_items, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        # modulo: without seed_everything, torch.initial_seed() is a random 64-bit number
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return self.num_items


class InMemoryBatches:
    """Batches cut from tensors that already sit on the training device.

    For data that fits in memory this replaces a DataLoader: no worker processes,
    no per-example collate, one index operation per batch. Lightning takes any
    iterable as a loader, and this one imitates the parts of a DataLoader that
    Lightning reads (src/internals.py, checked in tests/test_robust.py): a
    `sampler` to call set_epoch on before each epoch, a `batch_sampler` (None),
    and state_dict/load_state_dict, kept in checkpoints, to resume mid-epoch.
    """

    batch_sampler = None  # Lightning looks for it beside `sampler`

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, sampler: SeededShuffle):
        self.tensors, self.batch_size, self.sampler = tensors, batch_size, sampler
        self.served = 0  # batches given out in the current pass
        self.resume_at: dict | None = None

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    # Lightning stores this state in its checkpoints (a "stateful" loader) and
    # restores it on resume: a run stopped mid-epoch goes on with the batch after
    # the last one trained, so it sees the same batches as an uninterrupted one.
    def state_dict(self) -> dict:
        return {"epoch": self.sampler.epoch, "served": self.served}

    def load_state_dict(self, state: dict) -> None:
        self.resume_at = state

    def __iter__(self):
        # The body runs at the first batch, after Lightning's set_epoch.
        skip, self.resume_at = self.resume_at, None
        first = 0
        if skip and skip["epoch"] == self.sampler.epoch and 0 < skip["served"] < len(self):
            first = skip["served"]
        order = self.sampler.order().to(self.tensors[0].device)
        self.served = first
        for start in range(first * self.batch_size, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            self.served += 1
            yield tuple(t[index] for t in self.tensors)


class SideBySide:
    """One batch of each member's own loader per step, stacked: (K, B, ...) tensors for
    K seeds trained side by side (src/members.py). Each loader keeps its seed's order."""

    batch_sampler = None  # as InMemoryBatches

    def __init__(self, loaders: list):
        self.loaders = loaders
        self.sampler = self  # Lightning calls sampler.set_epoch before each epoch

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        for batches in zip(*self.loaders, strict=True):
            yield tuple(torch.stack(parts) for parts in zip(*batches, strict=True))


def split_indices(labels, val_fraction: float, test_fraction: float, seed: int, stratify: bool):
    """Index arrays for train/val/test, fixed by the seed and the fractions."""
    indices = torch.arange(len(labels)).numpy()
    by_label = labels if stratify else None
    rest, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=by_label)
    rest_labels = labels[rest] if stratify else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=rest_labels
    )
    return {"train": train, "val": val, "test": test}


class TensorDataModule(pl.LightningDataModule):
    """A data module whose splits fit in memory as (inputs, targets) tensors.

    Subclasses implement load(), returning the three splits and the DataSpec.
    batch_size "full" puts the whole training split in one batch (batch gradient
    descent); 1 is stochastic gradient descent; anything between is mini-batch.
    """

    # Above this many bytes of tensors a split goes through a DataLoader, batch by
    # batch, rather than to the training device whole (use_dataloader=null).
    in_memory_max_bytes = 2**30

    def __init__(self, batch_size: int | str, use_dataloader: bool | None = None):
        super().__init__()
        self.batch_size = batch_size
        self.use_dataloader = use_dataloader
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.spec: DataSpec | None = None
        # What the logged model takes instead of tensors, where the data has raw examples
        # (text.RawText, table.RawTable; src/logged_model.py); None: the tensors.
        self.raw_input = None
        # Seeds trained side by side (src/members.py): each gets its own batch order.
        self.member_seeds: list[int] | None = None

    def load(self) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], DataSpec]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.spec is None:  # Lightning calls setup again inside fit: load once
            self.splits, self.spec = self.load()

    def recorded_params(self) -> dict[str, str]:
        """What was decided from the data itself (src/data/user.py), as run params."""
        return {}

    def inferred_summary(self) -> str | None:
        """The same, as one line printed before training."""
        return None

    def split_size(self, split: str) -> int:
        return len(self.splits[split][0])

    def resolved_batch_size(self) -> int:
        if self.batch_size == "full":
            return self.split_size("train")
        return int(self.batch_size)

    def _batches(self, split: str, shuffle: bool, seed: int | None = None):
        tensors = self.splits[split]
        # torch.initial_seed() is the run's seed after seed_everything: batch
        # order follows the run's seed without a second setting.
        sampler = SeededShuffle(len(tensors[0]), torch.initial_seed() if seed is None else seed, shuffle)
        batch_size = self.resolved_batch_size()
        distributed = self.trainer is not None and self.trainer.world_size > 1
        large = sum(t.nelement() * t.element_size() for t in tensors) > self.in_memory_max_bytes
        if self.use_dataloader or distributed or (self.use_dataloader is None and large):
            # Lightning shards a DataLoader's sampler across processes itself.
            return DataLoader(TensorDataset(*tensors), batch_size=batch_size, sampler=sampler)
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            tensors = tuple(t.to(device) for t in tensors)
        return InMemoryBatches(tensors, batch_size, sampler)

    def train_dataloader(self):
        # overfit_batches (debug=overfit) trains the same first batches every epoch; Lightning
        # turns shuffling off only where a DataLoader's sampler is its RandomSampler.
        shuffle = not (self.trainer is not None and self.trainer.overfit_batches)
        if self.member_seeds:
            return SideBySide([self._batches("train", shuffle, seed=seed) for seed in self.member_seeds])
        return self._batches("train", shuffle)

    def val_dataloader(self):
        return self._batches("val", shuffle=False)

    def test_dataloader(self):
        return self._batches("test", shuffle=False)
