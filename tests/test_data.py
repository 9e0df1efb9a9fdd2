"""Splits, batching and the generated data sets (sentiment, listops, adding)."""

import pytest
import torch
from hydra.utils import instantiate

from src.data import adding, listops, sentiment
from src.data.base import InMemoryBatches, SeededShuffle
from src.data.digits import DigitsDataModule
from src.data.sentiment import SentimentDataModule, generate
from src.data.text import Vocabulary
from tests.conftest import compose_config, config_options


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


@pytest.mark.parametrize("make", [DigitsDataModule, lambda **kw: listops.ListOpsDataModule(num_examples=500, **kw)])
def test_in_memory_batches_equal_the_dataloader_path(make):
    data = make(batch_size=32)
    loader = make(batch_size=32, use_dataloader=True)
    for m in (data, loader):
        m.setup()
    torch.manual_seed(7)
    fast, slow = data.train_dataloader(), loader.train_dataloader()
    for epoch in (0, 3):
        fast.sampler.set_epoch(epoch)
        slow.sampler.set_epoch(epoch)
        for (xa, ya), (xb, yb) in zip(fast, slow, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_by_default_a_small_split_is_batched_in_memory_and_a_large_one_by_a_dataloader(monkeypatch):
    from torch.utils.data import DataLoader

    data = DigitsDataModule(batch_size=32)
    data.setup()
    assert isinstance(data.train_dataloader(), InMemoryBatches)
    x, y = data.splits["train"]
    monkeypatch.setattr(DigitsDataModule, "in_memory_max_bytes", x.nbytes + y.nbytes - 1)
    assert isinstance(data.train_dataloader(), DataLoader)
    assert isinstance(data.test_dataloader(), InMemoryBatches)  # smaller than the limit
    forced = DigitsDataModule(batch_size=32, use_dataloader=False)
    forced.setup()
    assert isinstance(forced.train_dataloader(), InMemoryBatches)  # false: in memory whatever the size


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


def rows(x: torch.Tensor) -> list[tuple]:
    return [tuple(r.flatten().tolist()) for r in x]


@pytest.mark.parametrize("option", config_options("data"))
def test_no_example_of_any_data_option_is_in_two_splits(option, mlruns, user_data):
    """Two splits share a row only where the source itself holds that row twice
    (a few digits images); generated sets are drawn distinct, so they share none."""
    if option == "hf" and "hf" not in user_data:
        pytest.skip("data=hf needs the datasets package (the hf extra)")
    module = instantiate(compose_config([f"data={option}", *user_data.get(option, [])], mlruns).data)
    module.setup()
    split_rows = {name: rows(module.splits[name][0]) for name in ("train", "val", "test")}
    everything = [r for name in split_rows for r in split_rows[name]]
    repeated = len(everything) - len(set(everything))
    shared = (set(split_rows["train"]) & set(split_rows["val"])) | (set(split_rows["train"]) & set(split_rows["test"]))
    shared |= set(split_rows["val"]) & set(split_rows["test"])
    assert len(shared) <= repeated, f"data={option}: {len(shared)} rows in two splits"
    if option in ("sentiment", "listops", "adding"):
        assert not shared


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: sentiment.SentimentDataModule(num_examples=300, split_seed=seed),
        lambda seed: listops.ListOpsDataModule(num_examples=300, split_seed=seed),
        lambda seed: adding.AddingDataModule(num_examples=300, seq_len=10, split_seed=seed),
    ],
    ids=["sentiment", "listops", "adding"],
)
def test_generated_sets_and_splits_are_fixed_by_the_seed(make):
    a, b, c = make(0), make(0), make(1)
    for m in (a, b, c):
        m.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(a.splits[split][0], b.splits[split][0]) and torch.equal(a.splits[split][1], b.splits[split][1])
    assert not torch.equal(a.splits["test"][0], c.splits["test"][0])


def test_sentiment_knobs_shape_the_sentences():
    texts, labels = generate(400, seed=0, contrast=0.0, negation=0.0, fillers=0)
    assert not any(" but " in t or "although" in t or " not " in t for t in texts)
    texts, labels = generate(400, seed=0, contrast=0.9, negation=0.0, fillers=2)
    assert sum(" but " in t or "although" in t for t in texts) > 300
    assert len(set(texts)) == 400 and set(labels) <= {0, 1, 2}


def test_sentiment_contrast_takes_the_deciding_clause():
    texts, labels = generate(2000, seed=1, contrast=0.9, negation=0.0, fillers=0)
    by_text = dict(zip(texts, labels, strict=True))
    positive, negative = set(sentiment.LEXICON[2]), set(sentiment.LEXICON[0])
    checked = 0
    for text, label in by_text.items():
        words = text.split()
        if " but " in text:
            decider = words[-4]  # "... but <adjective> in the end"
        elif text.startswith("although"):
            decider = words[-1]  # "although ..., it was <adjective>"
        elif "although" in text:
            decider = words[words.index("although") - 2]  # "... <adjective> , although ..."
        else:
            continue
        checked += 1
        assert label == (2 if decider in positive else 0 if decider in negative else -1), text
    assert checked > 1500


def test_sentiment_sentences_fit_the_default_length():
    module = SentimentDataModule(num_examples=600)
    module.setup()
    assert (module.splits["train"][0][:, -1] == 0).all()  # nothing truncated at seq_len=32


@pytest.mark.parametrize(
    "operator,values,expected",
    [("[MAX", [3, 9, 1], 9), ("[MIN", [3, 9, 1], 1), ("[SM", [7, 8, 9], 4), ("[MED", [5, 1, 9], 5), ("[MED", [1, 2, 6, 8], 4)],
)
def test_listops_operators(operator, values, expected):
    assert listops.evaluate(operator, values) == expected


def test_listops_values_match_a_reference_evaluation_and_lengths_hold():
    def reference(tokens):  # evaluate a token list with a stack, independently of the generator
        stack = []
        for token in tokens:
            if token.startswith("["):
                stack.append([token])
            elif token == "]":
                operator, *values = stack.pop()
                value = listops.evaluate(operator, values)
                if not stack:
                    return value
                stack[-1].append(value)
            else:
                stack[-1].append(int(token))

    expressions, values = listops.generate(300, seed=2, max_depth=3, max_length=40)
    assert all(len(e) <= 40 for e in expressions) and len({tuple(e) for e in expressions}) == 300
    assert [reference(e) for e in expressions] == values
    module = listops.ListOpsDataModule(num_examples=300, max_length=40)
    module.setup()
    x, y = module.splits["train"]
    assert x.shape[1] == 40 and x.max() < len(listops.TOKENS) and 0 <= y.min() and y.max() <= 9


def test_adding_target_is_the_sum_of_the_marked_values():
    inputs, targets = adding.generate(200, seq_len=20, seed=0)
    assert inputs.shape == (200, 20, 2) and (inputs[..., 1].sum(1) == 2).all()
    assert (inputs[:, :10, 1].sum(1) == 1).all()  # one marker in each half
    assert torch.allclose((inputs[..., 0] * inputs[..., 1]).sum(1), targets)
    module = adding.AddingDataModule(num_examples=200, seq_len=20)
    module.setup()
    assert module.spec.input_shape == (20, 2) and module.spec.task == "regression"
    assert module.splits["train"][1].dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("args", [["data=listops", "model=transformer"], ["data=adding", "model=mlp", "loss=mse"]],
                         ids=["listops", "adding"])
def test_generated_sets_train_and_record_their_data(args, mlruns):
    from mlflow import MlflowClient

    from tests.conftest import run_train, store_uri

    run_train([*args, "data.num_examples=600", "trainer.max_epochs=1", "callbacks=none"], mlruns)
    client = MlflowClient(store_uri(mlruns))
    run = client.search_runs([client.get_experiment_by_name("triad").experiment_id])[0]
    assert run.info.status == "FINISHED"
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "val"] and inputs["train"].name == args[0].split("=")[1]


def test_sentiment_without_neutral_sentences_is_a_binary_task():
    texts, labels = generate(800, seed=0, neutral=False)
    assert set(labels) == {0, 1} and len(set(texts)) == 800
    assert not any(fact in text for text in texts for fact in sentiment.FACTS)  # facts are neutral
    three_class = generate(800, seed=0)
    assert set(three_class[1]) == {0, 1, 2}
    module = SentimentDataModule(num_examples=800, neutral=False)
    module.setup()
    assert module.spec.task == "binary" and module.spec.output_size == 1
    assert module.spec.class_names == ("negative", "positive")
    assert set(module.splits["train"][1].tolist()) == {0, 1}
