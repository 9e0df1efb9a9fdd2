"""Bag-of-words baselines from scikit-learn on data=sentiment, on triad's own split:
what a model that ignores word order reaches there (README, "Results measured here").

    python -m benchmarks.sentiment_baselines
"""

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline

from src.data.sentiment import SentimentDataModule


def main() -> None:
    data = SentimentDataModule()  # conf/data/sentiment.yaml's defaults
    data.setup()
    texts = data.texts
    labels = {split: data.splits[split][1].numpy() for split in texts}
    baselines = {
        "logistic regression on word counts": make_pipeline(CountVectorizer(), LogisticRegression(max_iter=5000)),
        "MLP on 1-3-word n-grams": make_pipeline(
            CountVectorizer(ngram_range=(1, 3)), MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0)
        ),
    }
    for name, pipeline in baselines.items():
        pipeline.fit(texts["train"], labels["train"])
        accuracy = (pipeline.predict(texts["test"]) == labels["test"]).mean()
        print(f"{name}: test accuracy {accuracy:.1%} ({len(labels['test'])} test sentences)")


if __name__ == "__main__":
    main()
