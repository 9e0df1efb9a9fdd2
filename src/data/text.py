"""Word-level vocabulary built on the training split only, and fixed-length encoding."""

import re
from collections import Counter

import torch

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and single punctuation marks."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Maps words to ids; id 0 is padding and id 1 stands for unknown words."""

    def __init__(self, words: list[str]):
        self.words = [PAD, UNK, *words]
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, texts: list[str], max_size: int, min_freq: int = 1) -> "Vocabulary":
        """The most frequent words (ties broken alphabetically), at most max_size ids in all."""
        counts = Counter(word for text in texts for word in tokenize(text))
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(ranked[: max(max_size - 2, 0)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, texts: list[str], seq_len: int) -> torch.Tensor:
        """Token ids (len(texts), seq_len): truncated at the end, padded with 0 after."""
        ids = torch.zeros(len(texts), seq_len, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [self.index.get(w, 1) for w in tokenize(text)][:seq_len]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids
