"""A generated 3-class sentiment data set in which word order matters
(or 2-class, negative and positive, with neutral=False).

Each sentence is about a thing (a film, a meal, ...) and is labelled negative (0),
neutral (1) or positive (2) from a small lexicon of positive, negative and neutral
adjectives. Four kinds of sentence are drawn:

- plain: "the film was very good" (the adjective's polarity; an intensifier such
  as "very" changes nothing; a neutral adjective such as "long" gives neutral);
- negated: "the film was not good" flips positive and negative; a negated
  neutral adjective stays neutral;
- contrast: two clauses of opposite polarity joined so that one of them decides:
  "good at first but dull in the end" and "although it was good , it was dull"
  take the second clause, "dull , although it was good" takes the first. Either
  clause may be negated;
- factual: "the film was released in may" is neutral.

Contrast sentences make a bag-of-words model guess: the same words, in another
order, carry the other label. A model that reads the order (RNN, LSTM,
Transformer) can solve every kind. Knobs: the share of contrast and negated
sentences, how many filler phrases lengthen a sentence, and a share of labels
replaced at random (noise). Sentences are distinct, so no sentence is in two
splits; everything is drawn from random.Random(seed), the same on every machine.
"""

import random

import torch

from src.data.base import SPLITS, TensorDataModule, split_indices
from src.data.spec import DataSpec
from src.data.text import RawText, Vocabulary

NEGATIVE, NEUTRAL, POSITIVE = 0, 1, 2
CLASS_NAMES = ("negative", "neutral", "positive")
BINARY_CLASS_NAMES = ("negative", "positive")
FLIP = {NEGATIVE: POSITIVE, POSITIVE: NEGATIVE, NEUTRAL: NEUTRAL}

THINGS = ["film", "movie", "book", "meal", "hotel", "album", "show", "game", "phone", "concert",
          "service", "story", "trip", "course", "lecture", "restaurant", "camera", "song"]
LEXICON = {
    POSITIVE: ["good", "great", "excellent", "wonderful", "delightful", "enjoyable", "brilliant",
               "superb", "pleasant", "charming", "fantastic", "lovely", "impressive", "fun"],
    NEGATIVE: ["bad", "terrible", "awful", "boring", "dull", "disappointing", "poor", "horrible",
               "weak", "tedious", "dreadful", "bland", "annoying", "mediocre"],
    NEUTRAL: ["long", "short", "new", "old", "typical", "small", "large", "recent", "french",
              "modern", "quiet", "busy"],
}
INTENSIFIERS = ["very", "really", "quite", "extremely", "rather", "so", "truly"]
NEGATIONS = ["not", "never", "hardly"]
VERBS = ["was", "is", "seemed", "felt"]
FACTS = ["released in may", "made in canada", "about two hours", "on the second floor",
         "finished last week", "shown on tuesday", "bought by my brother", "reviewed yesterday"]
OPENERS = ["", "", "honestly ,", "i think", "overall ,", "to be fair ,", "my friend said"]
FILLERS = ["to be honest", "as expected", "for the price", "in my view", "all things considered",
           "on the whole", "as usual", "if you ask me"]


def _adjective(rng: random.Random, polarity: int, negation: float) -> tuple[str, int]:
    """An adjective phrase and its polarity, negated (and so flipped) with probability negation."""
    word = rng.choice(LEXICON[polarity])
    if rng.random() < 0.4:
        word = f"{rng.choice(INTENSIFIERS)} {word}"
    if rng.random() < negation:
        return f"{rng.choice(NEGATIONS)} {word}", FLIP[polarity]
    return word, polarity


def _fill(rng: random.Random, words: str, fillers: int) -> str:
    """The sentence with up to `fillers` filler phrases at its start or end (label unchanged)."""
    for _ in range(rng.randint(0, fillers)):
        filler = rng.choice(FILLERS)
        words = f"{filler} , {words}" if rng.random() < 0.5 else f"{words} , {filler}"
    return words


def _sentence(rng: random.Random, contrast: float, negation: float, fillers: int, neutral: bool) -> tuple[str, int]:
    thing, verb = rng.choice(THINGS), rng.choice(VERBS)
    subject = f"{rng.choice(OPENERS)} the {thing} {verb}".strip()
    kind = rng.random()
    if kind < contrast:
        # Two clauses of opposite (final) polarity; the connective says which one counts.
        first, p1 = _adjective(rng, rng.choice([NEGATIVE, POSITIVE]), negation / 2)
        second, p2 = _adjective(rng, rng.choice([NEGATIVE, POSITIVE]), negation / 2)
        while p2 == p1:
            second, p2 = _adjective(rng, rng.choice([NEGATIVE, POSITIVE]), negation / 2)
        form = rng.randrange(3)
        if form == 0:
            text, label = f"{subject} {first} at first but {second} in the end", p2
        elif form == 1:
            text, label = f"although the {thing} {verb} {first} , it {verb} {second}", p2
        else:
            text, label = f"{subject} {first} , although it {verb} {second}", p1
    elif neutral and kind < contrast + 0.1:
        text, label = f"{subject} {rng.choice(FACTS)}", NEUTRAL
    else:
        # plain, or negated with probability `negation`
        polarities = [NEGATIVE, NEUTRAL, POSITIVE] if neutral else [NEGATIVE, POSITIVE]
        phrase, label = _adjective(rng, rng.choice(polarities), negation)
        text = f"{subject} {phrase}"
    return _fill(rng, text, fillers), label


def generate(
    num_examples: int, seed: int, contrast: float = 0.35, negation: float = 0.35, fillers: int = 1, noise: float = 0.0,
    neutral: bool = True,
) -> tuple[list[str], list[int]]:
    """num_examples distinct sentences and their labels, the same for the same arguments:
    indices into CLASS_NAMES, or with neutral=False into BINARY_CLASS_NAMES."""
    if not 0 <= contrast <= 0.9:
        raise ValueError(f"contrast={contrast}: the share of contrast sentences must be in [0, 0.9]")
    rng = random.Random(seed)
    texts: dict[str, int] = {}  # insertion-ordered: the same order for the same seed
    attempts = 0
    while len(texts) < num_examples:
        attempts += 1
        if attempts > 50 * num_examples + 1000:
            raise ValueError(f"cannot draw {num_examples} distinct sentences; ask for fewer or allow more fillers")
        text, label = _sentence(rng, contrast, negation, fillers, neutral)
        texts.setdefault(text, label)
    classes = [NEGATIVE, NEUTRAL, POSITIVE] if neutral else [NEGATIVE, POSITIVE]
    labels = [rng.choice(classes) if rng.random() < noise else label for label in texts.values()]
    return list(texts), [classes.index(label) for label in labels]


class SentimentDataModule(TensorDataModule):
    """Generated sentences as token ids (seq_len, padded), vocabulary built on the training split.

    contrast and negation are the shares of contrast and negated sentences (more
    contrast: harder for bag-of-words); fillers lengthens sentences; noise is the
    share of labels drawn at random (a ceiling on every model's accuracy).
    neutral=False leaves out neutral sentences: a binary task (negative 0, positive 1).
    """

    def __init__(
        self,
        num_examples: int = 6000,
        seq_len: int = 32,
        vocab_size: int = 1000,
        contrast: float = 0.35,
        negation: float = 0.35,
        fillers: int = 1,
        noise: float = 0.0,
        batch_size: int | str = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        use_dataloader: bool | None = None,
        neutral: bool = True,
    ):
        super().__init__(batch_size, use_dataloader)
        self.neutral = neutral
        self.num_examples, self.seq_len, self.vocab_size = num_examples, seq_len, vocab_size
        self.contrast, self.negation, self.fillers, self.noise = contrast, negation, fillers, noise
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed

    def load(self):
        texts, labels = generate(
            self.num_examples, self.split_seed, self.contrast, self.negation, self.fillers, self.noise, self.neutral
        )
        targets = torch.tensor(labels, dtype=torch.long)
        index = split_indices(targets.numpy(), self.val_fraction, self.test_fraction, self.split_seed, stratify=True)
        self.texts = {name: [texts[i] for i in index[name]] for name in SPLITS}
        self.vocab = Vocabulary.build(self.texts["train"], self.vocab_size)
        splits = {name: (self.vocab.encode(self.texts[name], self.seq_len), targets[index[name]]) for name in SPLITS}
        self.raw_input = RawText("text", self.vocab.words, self.seq_len, examples=self.texts["test"])
        spec = DataSpec(
            input_kind="tokens",
            input_shape=(self.seq_len,),
            task="multiclass" if self.neutral else "binary",
            output_size=len(CLASS_NAMES) if self.neutral else 1,
            vocab_size=len(self.vocab),
            class_names=CLASS_NAMES if self.neutral else BINARY_CLASS_NAMES,
        )
        return splits, spec
