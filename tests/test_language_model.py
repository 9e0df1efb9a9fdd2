"""The pydoc_lm corpus and the TextSamples callback, with a tiny language model
defined here (the real LM architectures live in src/models/)."""

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from mlflow import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger
from torch import nn

from src.callbacks import TextSamples
from src.data.pydoc_lm import PydocLMDataModule, split_topics
from src.data.sentiment import SentimentDataModule
from src.losses import CrossEntropy
from src.module import ExperimentModule
from tests.conftest import store_uri


class TinyLM(nn.Module):
    """Embedding + Linear: each position predicts the next token from itself (a bigram model)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed, self.head = nn.Embedding(vocab_size, 16), nn.Linear(16, vocab_size)

    def forward(self, x):
        return self.head(self.embed(x))  # (B, T, V)


@pytest.fixture(scope="module")
def corpus():
    module = PydocLMDataModule(seq_len=64, batch_size=32)
    module.setup()
    return module


def test_documents_go_to_exactly_one_split_fixed_by_the_seed():
    a, b, c = split_topics(0.1, 0.1, 0), split_topics(0.1, 0.1, 0), split_topics(0.1, 0.1, 1)
    assert a == b and a != c
    names = [t for split in a.values() for t in split]
    assert len(names) == len(set(names)) and all(a[split] for split in a)


def test_windows_are_next_token_pairs_and_decode_back_to_the_text(corpus):
    x, y = corpus.splits["train"]
    assert x.shape[1] == 64 and x.dtype == y.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:-1, -1], x[1:, 0])
    assert corpus.spec.task == "language_model" and corpus.spec.output_size == corpus.spec.vocab_size
    text = corpus.decode(x[0])
    assert len(text) == 64 and corpus.decode(corpus.codec.encode(text)) == text
    assert 1 not in x.tolist()[0]  # training text has no unknown characters
    assert torch.equal(PydocLMDataModule(seq_len=64).load()[0]["val"][0], corpus.splits["val"][0])


def test_bpe_pieces_are_learnt_on_train_and_decode_back():
    pytest.importorskip("tokenizers")
    module = PydocLMDataModule(seq_len=32, tokenizer="bpe", vocab_size=300)
    module.setup()
    assert module.spec.vocab_size == 300
    x, _ = module.splits["test"]
    text = module.decode(x[0])
    assert module.decode(module.codec.encode(text)) == text


def fit(datamodule, net, mlruns, callback) -> tuple[MlflowClient, str]:
    logger = MLFlowLogger(experiment_name="lm", tracking_uri=store_uri(mlruns))
    module = ExperimentModule(net, CrossEntropy(), partial(torch.optim.Adam, lr=0.01), None, datamodule.spec)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=1, limit_train_batches=5, limit_val_batches=1, logger=logger,
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return MlflowClient(store_uri(mlruns)), logger.run_id


def test_text_samples_are_logged_for_a_language_model(corpus, mlruns):
    callback = TextSamples(num_samples=2, prompt_len=10, num_tokens=30)
    client, run_id = fit(corpus, TinyLM(corpus.spec.vocab_size), mlruns, callback)
    assert callback.text.count("--- prompt ---") == 2
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == ["samples/samples.txt"]
    logged = client.download_artifacts(run_id, "samples/samples.txt", str(mlruns))
    assert open(logged).read() == callback.text
    prompt = corpus.decode(corpus.splits["val"][0][0, :10])
    assert callback.text.startswith(f"--- prompt ---\n{prompt}\n")


def test_text_samples_do_nothing_for_a_classifier(mlruns):
    datamodule = SentimentDataModule(num_examples=200, batch_size=32)
    datamodule.setup()

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.head = nn.Embedding(datamodule.spec.vocab_size, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.embed(x).mean(1))  # (B, 3)

    callback = TextSamples()
    client, run_id = fit(datamodule, Classifier(), mlruns, callback)
    assert callback.text is None and client.list_artifacts(run_id, "samples") == []
