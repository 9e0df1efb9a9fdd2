"""A language-model corpus that ships with Python: the documentation topics of
`pydoc_data.topics` (about 80 documents, 0.46 M characters of English and code).

Documents (topics) are split into train/val/test by the seed, so no text is in
two splits. Each split's documents are joined (a blank line between them) and cut
into windows of seq_len + 1 tokens, one token apart: x is a window's first seq_len
tokens, y the same shifted by one (the next token at each position).

Tokens are characters (tokenizer="char": the training split's characters, most
frequent first) or byte-level BPE pieces learnt on the training split with the
`tokenizers` library (tokenizer="bpe", vocab_size pieces). Either way id 0 is
padding (never produced here) and id 1 stands for anything unseen in training.
"""

import random
from collections import Counter
from pydoc_data.topics import topics

import torch

from src.data.base import TensorDataModule
from src.data.spec import DataSpec
from src.data.text import RawText

PAD, UNK = "<pad>", "<unk>"
TOKENIZERS = ("char", "bpe")


def split_topics(val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """Topic names for train/val/test, a fixed shuffle of the sorted names; at least one each."""
    names = sorted(topics)
    random.Random(seed).shuffle(names)
    num_test = max(1, round(test_fraction * len(names)))
    num_val = max(1, round(val_fraction * len(names)))
    return {"test": names[:num_test], "val": names[num_test : num_test + num_val], "train": names[num_test + num_val :]}


def windows(ids: list[int], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping inputs (N, seq_len) and their next tokens (N, seq_len)."""
    tokens = torch.tensor(ids, dtype=torch.long)
    count = (len(tokens) - 1) // seq_len
    if count < 1:
        raise ValueError(f"a split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}; lower seq_len")
    x = tokens[: count * seq_len].view(count, seq_len)
    y = tokens[1 : count * seq_len + 1].view(count, seq_len)
    return x, y


class CharCodec:
    """Characters of the training text, most frequent first, after <pad> and <unk>."""

    def __init__(self, text: str):
        counts = Counter(text)
        self.chars = [PAD, UNK, *sorted(counts, key=lambda c: (-counts[c], c))]
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, 1) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] if i > 1 else ("?" if i == 1 else "") for i in map(int, ids))


class BpeCodec:
    """Byte-level BPE learnt on the training text (needs the `tokenizers` package)."""

    def __init__(self, text: str, vocab_size: int):
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError as error:
            raise ImportError("data.tokenizer=bpe needs the tokenizers package: pip install -e '.[hf]'") from error
        self.tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        self.tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self.tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[PAD, UNK], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        # Paragraphs as training units: BPE counts pieces within them, quickly.
        self.tokenizer.train_from_iterator(text.split("\n\n"), trainer)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != 0])


class PydocLMDataModule(TensorDataModule):
    """Next-token prediction on Python's own documentation; decode(ids) gives text back."""

    def __init__(
        self,
        seq_len: int = 128,
        tokenizer: str = "char",
        vocab_size: int = 512,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(batch_size, use_dataloader)
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"data.tokenizer={tokenizer!r} is not one of {list(TOKENIZERS)}")
        self.seq_len, self.tokenizer, self.vocab_size = seq_len, tokenizer, vocab_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load(self):
        self.topics = split_topics(self.val_fraction, self.test_fraction, self.split_seed)
        texts = {name: "\n\n".join(topics[t].strip() for t in chosen) for name, chosen in self.topics.items()}
        self.codec = CharCodec(texts["train"]) if self.tokenizer == "char" else BpeCodec(texts["train"], self.vocab_size)
        splits = {name: windows(self.codec.encode(text), self.seq_len) for name, text in texts.items()}
        # The logged model takes a prompt as text and answers its next token (the last seq_len count).
        char = self.tokenizer == "char"
        self.raw_input = RawText(
            "text", self.codec.chars if char else [], self.seq_len, tokenizer="chars" if char else "bpe",
            keep="last", bpe=None if char else self.codec.tokenizer.to_str(),
            examples=[self.codec.decode(window) for window in splits["test"][0]],
        )
        spec = DataSpec(
            input_kind="tokens",
            input_shape=(self.seq_len,),
            task="language_model",
            output_size=len(self.codec),
            vocab_size=len(self.codec),
        )
        return splits, spec

    def decode(self, ids) -> str:
        """Token ids (a list or 1-d tensor) back to text."""
        return self.codec.decode(ids)
