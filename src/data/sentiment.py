"""A generated 3-class sentiment data set in which word order matters.

Each sentence is about a thing (a film, a meal, ...) and is labelled negative (0),
neutral (1) or positive (2). Four kinds of sentence are drawn:

- plain: "the film was very good" (the adjective's polarity; neutral adjectives
  such as "long" give neutral);
- negated: "the film was not good" flips positive and negative; a negated
  neutral adjective stays neutral;
- contrast: "the film was good at first but dull in the end" takes the polarity
  of the clause after "but", so the same bag of words can carry either label;
- factual: "the film was released in may" is neutral.

Contrast sentences make a bag-of-words model guess: their words are the same in
both orders. A model that reads the order (RNN, LSTM, Transformer) can solve all four.
Everything is drawn from a random.Random(seed), so the data set is the same on
every machine.
"""

import random

import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec
from src.data.text import Vocabulary

NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2
CLASS_NAMES = ("negative", "neutral", "positive")

THINGS = ["film", "movie", "book", "meal", "hotel", "album", "show", "game", "phone", "concert",
          "service", "story", "trip", "course", "lecture", "restaurant", "camera", "song"]
POSITIVE_WORDS = ["good", "great", "excellent", "wonderful", "delightful", "enjoyable", "brilliant",
                  "superb", "pleasant", "charming", "fantastic", "lovely", "impressive", "fun"]
NEGATIVE_WORDS = ["bad", "terrible", "awful", "boring", "dull", "disappointing", "poor", "horrible",
                  "weak", "tedious", "dreadful", "bland", "annoying", "mediocre"]
NEUTRAL_WORDS = ["long", "short", "new", "old", "typical", "small", "large", "recent", "french",
                 "modern", "quiet", "busy"]
INTENSIFIERS = ["very", "really", "quite", "extremely", "rather", "so", "truly"]
NEGATIONS = ["not", "never", "hardly"]
VERBS = ["was", "is", "seemed", "felt"]
FACTS = ["released in may", "made in canada", "about two hours", "on the second floor",
         "finished last week", "shown on tuesday", "bought by my brother", "reviewed yesterday"]
OPENERS = ["", "", "honestly ,", "i think", "overall ,", "to be fair ,", "my friend said"]


def _adjective(rng: random.Random, polarity: int) -> str:
    words = {POSITIVE: POSITIVE_WORDS, NEGATIVE: NEGATIVE_WORDS, NEUTRAL: NEUTRAL_WORDS}[polarity]
    word = rng.choice(words)
    return f"{rng.choice(INTENSIFIERS)} {word}" if rng.random() < 0.4 else word


def _sentence(rng: random.Random) -> tuple[str, int]:
    thing, verb = rng.choice(THINGS), rng.choice(VERBS)
    subject = f"{rng.choice(OPENERS)} the {thing} {verb}".strip()
    kind = rng.random()
    if kind < 0.30:  # plain
        polarity = rng.choice([NEGATIVE, NEUTRAL, POSITIVE])
        return f"{subject} {_adjective(rng, polarity)}", polarity
    if kind < 0.55:  # negated: flips positive and negative
        polarity = rng.choice([NEGATIVE, NEUTRAL, POSITIVE])
        label = {NEGATIVE: POSITIVE, POSITIVE: NEGATIVE, NEUTRAL: NEUTRAL}[polarity]
        return f"{subject} {rng.choice(NEGATIONS)} {_adjective(rng, polarity)}", label
    if kind < 0.90:  # contrast: the clause after "but" decides
        first, second = rng.sample([NEGATIVE, POSITIVE], 2)
        return f"{subject} {_adjective(rng, first)} at first but {_adjective(rng, second)} in the end", second
    return f"{subject} {rng.choice(FACTS)}", NEUTRAL


def generate(num_examples: int, seed: int) -> tuple[list[str], list[int]]:
    """num_examples sentences and their labels, the same for the same seed."""
    rng = random.Random(seed)
    pairs = [_sentence(rng) for _ in range(num_examples)]
    return [text for text, _ in pairs], [label for _, label in pairs]


class SentimentDataModule(TensorDataModule):
    """Generated sentences as token ids, vocabulary built on the training split."""

    def __init__(
        self,
        num_examples: int = 6000,
        seq_len: int = 24,
        vocab_size: int = 1000,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool = False,
    ):
        super().__init__(batch_size, use_dataloader)
        self.num_examples, self.seq_len, self.vocab_size = num_examples, seq_len, vocab_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load(self):
        texts, labels = generate(self.num_examples, self.split_seed)
        targets = torch.tensor(labels, dtype=torch.long)
        index = split_indices(targets.numpy(), self.val_fraction, self.test_fraction, self.split_seed, stratify=True)
        vocab = Vocabulary.build([texts[i] for i in index["train"]], self.vocab_size)
        self.vocab = vocab
        splits = {}
        for name in SPLITS:
            chosen = [texts[i] for i in index[name]]
            splits[name] = (vocab.encode(chosen, self.seq_len), targets[index[name]])
        spec = DataSpec(
            input_kind="tokens",
            input_shape=(self.seq_len,),
            task="multiclass",
            output_size=len(CLASS_NAMES),
            vocab_size=len(vocab),
            class_names=CLASS_NAMES,
        )
        return splits, spec
