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


class RawText:
    """What the logged model takes from a text data set: strings (a DataFrame column
    named `column`, or a list), turned into the token ids the network was trained on.

    tokenizer is how the data set cut its text: "words" (tokenize above), "spaces"
    (whitespace-separated symbols), "chars", or "bpe" (a `tokenizers` JSON in `bpe`).
    `keep` is the end kept when a text is longer than seq_len: the first tokens for a
    classifier (as training encodes), the last ones for a language model's prompt.
    `examples` are the raw test texts, in the test split's order (as a DataFrame).
    """

    def __init__(self, column: str, tokens: list[str], seq_len: int, tokenizer: str = "words", keep: str = "first",
                 bpe: str | None = None, examples: list[str] | None = None):
        self.column, self.tokens, self.seq_len, self.tokenizer = column, list(tokens), seq_len, tokenizer
        self.keep, self.bpe = keep, bpe
        self.examples = None if examples is None else self.frame(examples)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if tokenizer == "bpe":
            from tokenizers import Tokenizer

            self.bpe_tokenizer = Tokenizer.from_str(bpe)

    def texts(self, rows) -> list[str]:
        import pandas as pd

        if isinstance(rows, pd.DataFrame):
            if self.column not in rows.columns and len(rows.columns) != 1:
                raise ValueError(f"the rows lack the text column {self.column!r}; they have {list(rows.columns)}")
            rows = rows[self.column] if self.column in rows.columns else rows.iloc[:, 0]
        return ["" if value is None else str(value) for value in list(rows)]

    def ids(self, text: str) -> list[int]:
        if self.tokenizer == "bpe":
            return self.bpe_tokenizer.encode(text).ids
        pieces = {"words": tokenize, "spaces": str.split, "chars": list}[self.tokenizer](text)
        return [self.index.get(piece, 1) for piece in pieces]

    def encode(self, rows) -> torch.Tensor:
        """Token ids (len(rows), seq_len), padded with 0 after the text."""
        texts = self.texts(rows)
        ids = torch.zeros(len(texts), self.seq_len, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = self.ids(text)
            tokens = tokens[-self.seq_len :] if self.keep == "last" else tokens[: self.seq_len]
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids

    def decode(self, token_id: int) -> str:
        if self.tokenizer == "bpe":
            return self.bpe_tokenizer.decode([token_id])
        return self.tokens[token_id]

    def frame(self, texts: list[str]):
        import pandas as pd

        return pd.DataFrame({self.column: texts})

    def state(self) -> dict:
        return {"kind": "text", "column": self.column, "tokens": self.tokens, "seq_len": self.seq_len,
                "tokenizer": self.tokenizer, "keep": self.keep, "bpe": self.bpe}

    def save(self, folder) -> dict[str, str]:
        return {}  # the state says it all

    @classmethod
    def load(cls, state: dict, artifacts: dict) -> "RawText":
        return cls(state["column"], state["tokens"], state["seq_len"], state["tokenizer"], state["keep"], state["bpe"])
