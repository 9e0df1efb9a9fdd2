"""ListOps (Nangia & Bowman 2018; the Long Range Arena version, Tay et al. 2021):
nested lists of operations over digits, labelled with their value (10 classes).

    [MAX 4 3 [MIN 2 3 ] 1 0 [MED 1 5 8 9 2 ] ]   ->   5

Operators: MAX, MIN, MED (median, rounded down as LRA's int(np.median) does) and
SM (sum modulo 10); each opens with `[OP` and closes with `]`. The generator
draws a tree: each argument is a nested list with probability `nest` (while the
depth allows), else a digit; a list has 2 to `max_args` arguments. Trees longer
than `max_length` tokens are drawn again, as are trees already drawn, so no
expression is in two splits. Everything comes from random.Random(seed).
"""

import random

import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec
from src.data.text import RawText

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
# Fixed vocabulary: 0 padding, 1 unknown (unused, kept so ids match text.Vocabulary's).
TOKENS = ("<pad>", "<unk>", *OPERATORS, "]", *(str(d) for d in range(10)))
TOKEN_ID = {token: i for i, token in enumerate(TOKENS)}


def evaluate(operator: str, values: list[int]) -> int:
    if operator == "[MAX":
        return max(values)
    if operator == "[MIN":
        return min(values)
    if operator == "[SM":
        return sum(values) % 10
    # int(np.median) in LRA: the mean of the middle two, rounded down
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2


def _tree(rng: random.Random, depth: int, max_depth: int, max_args: int, nest: float) -> tuple[list[str], int]:
    """Tokens and value of one list whose nesting is at most max_depth - depth deeper."""
    operator = rng.choice(OPERATORS)
    tokens, values = [operator], []
    for _ in range(rng.randint(2, max_args)):
        if depth < max_depth and rng.random() < nest:
            inner, value = _tree(rng, depth + 1, max_depth, max_args, nest)
            tokens += inner
        else:
            value = rng.randrange(10)
            tokens.append(str(value))
        values.append(value)
    return [*tokens, "]"], evaluate(operator, values)


def generate(
    num_examples: int, seed: int, max_depth: int = 4, max_args: int = 5, max_length: int = 128, nest: float = 0.25
) -> tuple[list[list[str]], list[int]]:
    """num_examples distinct expressions (token lists) and their values."""
    rng = random.Random(seed)
    drawn: dict[tuple[str, ...], int] = {}
    attempts = 0
    while len(drawn) < num_examples:
        attempts += 1
        if attempts > 50 * num_examples + 1000:
            raise ValueError(f"cannot draw {num_examples} distinct expressions of at most {max_length} tokens")
        tokens, value = _tree(rng, 1, max_depth, max_args, nest)
        if len(tokens) <= max_length:
            drawn.setdefault(tuple(tokens), value)
    return [list(t) for t in drawn], list(drawn.values())


class ListOpsDataModule(TensorDataModule):
    """ListOps expressions as token ids (max_length, padded with 0), 10 classes."""

    def __init__(
        self,
        num_examples: int = 6000,
        max_depth: int = 4,
        max_args: int = 5,
        max_length: int = 128,
        nest: float = 0.25,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
    ):
        super().__init__(batch_size, use_dataloader)
        self.num_examples, self.max_depth, self.max_args = num_examples, max_depth, max_args
        self.max_length, self.nest = max_length, nest
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load(self):
        expressions, values = generate(
            self.num_examples, self.split_seed, self.max_depth, self.max_args, self.max_length, self.nest
        )
        inputs = torch.zeros(len(expressions), self.max_length, dtype=torch.long)
        for row, tokens in enumerate(expressions):
            inputs[row, : len(tokens)] = torch.tensor([TOKEN_ID[t] for t in tokens])
        targets = torch.tensor(values, dtype=torch.long)
        # Stratify only when every value occurs often enough to be split three ways.
        stratify = min(torch.bincount(targets, minlength=10).tolist()) >= 3
        index = split_indices(targets.numpy(), self.val_fraction, self.test_fraction, self.split_seed, stratify)
        splits = {name: (inputs[index[name]], targets[index[name]]) for name in SPLITS}
        # The logged model takes an expression as typed: "[MAX 2 9 [MIN 4 7 ] 0 ]".
        self.raw_input = RawText("expression", TOKENS, self.max_length, tokenizer="spaces",
                                 examples=[" ".join(expressions[i]) for i in index["test"]])
        spec = DataSpec(
            input_kind="tokens",
            input_shape=(self.max_length,),
            task="multiclass",
            output_size=10,
            vocab_size=len(TOKENS),
            class_names=tuple(str(d) for d in range(10)),
        )
        return splits, spec
