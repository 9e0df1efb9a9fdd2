"""The documents' bag-of-embeddings sentiment classifier in Keras 3 (torch backend),
trained with `model.fit` on the same data as `python -m src.train experiment=sentiment_bow`.

    pip install keras==3.15.1   # the bench session does this; triad itself never needs Keras
    python -m benchmarks.keras_bow --epochs 2

Embedding (padding masked) -> GlobalAveragePooling1D -> Dense relu -> Dense, Adam,
sparse cross-entropy: the sizes, learning rate and batch size come from triad's
config, so both train the same network. Prints the same `timing:` line as src.train.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="more config overrides, as src.train gets them")
    args = parser.parse_args()

    import keras
    import torch
    from hydra import compose, initialize_config_dir

    from src import PROJECT_ROOT
    from src.gate import instantiate

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=sentiment_bow", *args.overrides])
    keras.utils.set_random_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec
    x, y = (t.numpy() for t in datamodule.splits["train"])

    model = keras.Sequential([
        keras.Input(shape=(spec.input_shape[0],), dtype="int32"),
        keras.layers.Embedding(spec.vocab_size, cfg.model.embed_dim, mask_zero=True),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(cfg.model.hidden_size, activation=cfg.model.activation),
        keras.layers.Dense(spec.output_size),
    ])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.optimizer.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.intervals, self.last_start = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self.last_start = None  # like triad's timer: no interval across epochs

        def on_train_batch_begin(self, batch, logs=None):
            now = time.perf_counter()
            if self.last_start is not None:
                self.intervals.append(now - self.last_start)
            self.last_start = now

    timer = StepTimes()
    started = time.perf_counter()
    model.fit(x, y, batch_size=datamodule.resolved_batch_size(), epochs=args.epochs, shuffle=True,
              callbacks=[timer])
    fit_s = time.perf_counter() - started
    print(f"timing: fit_s={fit_s:.4g}  step_ms={1000 * statistics.median(timer.intervals):.4g}  "
          f"threads={torch.get_num_threads()}  keras={keras.__version__}")


if __name__ == "__main__":
    main()
