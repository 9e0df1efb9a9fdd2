"""The hand-written PyTorch loop that `python -m src.train` is measured against.

    python -m benchmarks.plain_loop --steps 60 model=lstm data=sentiment

It composes the same config as `src.train` with the same overrides and builds
the same data tensors, network, loss and optimizer from it, then trains the way
one would by hand: a random permutation per epoch, slices of in-memory tensors,
forward, backward, step. No logging, no checkpoints, no hooks. It prints the same
`timing:` line as src.train (step_ms: the median time between the starts of
consecutive steps of an epoch).
"""

import argparse
import statistics
import time

import torch
from hydra import compose, initialize_config_dir

from src import PROJECT_ROOT
from src.gate import instantiate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps per epoch (default: all)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="the config overrides src.train gets")
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    net = instantiate(cfg.model)(**datamodule.spec.model_dims())
    loss_function = instantiate(cfg.loss)
    optimizer = instantiate(cfg.optimizer)(net.parameters())
    x, y = datamodule.splits["train"]
    batch_size = datamodule.resolved_batch_size()

    net.train()
    intervals = []
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        last_start = None
        for step, start in enumerate(range(0, len(x), batch_size)):
            if args.steps is not None and step >= args.steps:
                break
            now = time.perf_counter()
            if last_start is not None:
                intervals.append(now - last_start)
            last_start = now
            index = order[start : start + batch_size]
            loss, _ = loss_function(net(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    print(f"timing: step_ms={1000 * statistics.median(intervals):.4g}  threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
