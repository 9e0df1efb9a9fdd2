"""Splits, batching and the first generated data set."""

import pytest
import torch

from src.data.base import InMemoryBatches, SeededShuffle
from src.data.digits import DigitsDataModule
from src.data.sentiment import SentimentDataModule, generate
from src.data.text import Vocabulary


@pytest.mark.parametrize("module", [DigitsDataModule(), SentimentDataModule(num_examples=600)])
def test_no_example_is_in_two_splits(module):
    module.setup()
    rows = {name: {tuple(x.flatten().tolist()) for x in module.splits[name][0]} for name in ("train", "val", "test")}
    # digits has a few identical images; compare sizes of unions to catch index leaks instead
    total = sum(module.split_size(n) for n in ("train", "val", "test"))
    assert total == (1797 if isinstance(module, DigitsDataModule) else 600)
    assert len(rows["train"] & rows["test"]) <= 0.02 * len(rows["test"])


def test_splits_are_fixed_by_split_seed():
    a, b, c = DigitsDataModule(split_seed=0), DigitsDataModule(split_seed=0), DigitsDataModule(split_seed=1)
    for m in (a, b, c):
        m.setup()
    assert torch.equal(a.splits["test"][1], b.splits["test"][1])
    assert not torch.equal(a.splits["test"][0], c.splits["test"][0])


def test_in_memory_batches_equal_the_dataloader_path():
    data = DigitsDataModule(batch_size=32)
    loader = DigitsDataModule(batch_size=32, use_dataloader=True)
    for m in (data, loader):
        m.setup()
    torch.manual_seed(7)
    fast, slow = data.train_dataloader(), loader.train_dataloader()
    for epoch in (0, 3):
        fast.sampler.set_epoch(epoch)
        slow.sampler.set_epoch(epoch)
        for (xa, ya), (xb, yb) in zip(fast, slow, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_batches_change_with_the_epoch_and_the_seed():
    tensors = (torch.arange(10),)
    first = [b[0].tolist() for b in InMemoryBatches(tensors, 10, SeededShuffle(10, seed=0, shuffle=True))]
    sampler = SeededShuffle(10, seed=0, shuffle=True)
    sampler.set_epoch(1)
    second = [b[0].tolist() for b in InMemoryBatches(tensors, 10, sampler)]
    other_seed = [b[0].tolist() for b in InMemoryBatches(tensors, 10, SeededShuffle(10, seed=1, shuffle=True))]
    assert first != second and first != other_seed
    assert sorted(first[0]) == list(range(10))


def test_full_batch_puts_the_training_split_in_one_batch():
    module = DigitsDataModule(batch_size="full")
    module.setup()
    batches = list(module.train_dataloader())
    assert len(batches) == 1 and len(batches[0][0]) == module.split_size("train")


def test_sentiment_is_deterministic_and_balanced():
    assert generate(50, seed=3) == generate(50, seed=3)
    assert generate(50, seed=3) != generate(50, seed=4)
    labels = generate(3000, seed=0)[1]
    assert min(labels.count(c) for c in (0, 1, 2)) > 500


def test_vocabulary_comes_from_the_training_split_only():
    vocab = Vocabulary.build(["good film", "bad film"], max_size=100)
    ids = vocab.encode(["good unseenword"], seq_len=4)
    assert ids[0, 1].item() == 1  # unknown
    assert ids[0, 2:].tolist() == [0, 0]  # padding
    module = SentimentDataModule(num_examples=300)
    module.setup()
    assert module.spec.vocab_size == len(module.vocab) <= 1000
