"""Lightning callbacks that triad adds to a run (ProgressBar and TextSamples are
listed in conf/callbacks/; StepTimer is always added by src/train.py)."""

import statistics
import time

import torch
from pytorch_lightning import Callback
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.trainer.states import RunningStage

from src import STARTED
from src.internals import logs_this_step


@torch.no_grad()
def sample(net: torch.nn.Module, prompt: torch.Tensor, num_tokens: int, seq_len: int,
           temperature: float, generator: torch.Generator) -> torch.Tensor:
    """prompt (B, P) followed by num_tokens drawn one at a time: (B, P + num_tokens).

    The network sees at most the last seq_len tokens (its context) and returns
    logits (B, T, V); the last position's logits give the next token.
    """
    if hasattr(net, "generate"):
        return net.generate(prompt, num_tokens, temperature=temperature)
    tokens = prompt
    for _ in range(num_tokens):
        context = tokens[:, -seq_len:]
        if context.size(1) < seq_len:  # networks sized by the spec read exactly seq_len tokens
            pad = context.new_zeros(context.size(0), seq_len - context.size(1))
            logits = net(torch.cat([context, pad], dim=1))[:, context.size(1) - 1]  # (B, V)
        else:
            logits = net(context)[:, -1]  # (B, V)
        probabilities = torch.softmax(logits.float() / temperature, dim=-1)
        probabilities[:, 0] = 0.0  # padding is never text
        next_token = torch.multinomial(probabilities.cpu(), 1, generator=generator).to(tokens.device)
        tokens = torch.cat([tokens, next_token], dim=1)
    return tokens


class TextSamples(Callback):
    """At the end of fit, text written by a language model, logged to the MLflow
    run as samples/samples.txt. Does nothing unless the data module can decode
    ids to text and the task is language_model.

    Prompts are the first prompt_len tokens of the first num_samples validation
    windows, so they need no tokenizer and are the same for every model.
    """

    def __init__(self, num_samples: int = 3, prompt_len: int = 32, num_tokens: int = 200,
                 temperature: float = 0.8, seed: int = 0):
        self.num_samples, self.prompt_len, self.num_tokens = num_samples, prompt_len, num_tokens
        self.temperature, self.seed = temperature, seed
        self.text: str | None = None

    def on_fit_end(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        spec = getattr(datamodule, "spec", None)
        if not hasattr(datamodule, "decode") or spec is None or spec.task != "language_model":
            return
        windows = datamodule.splits["val"][0][: self.num_samples]  # (S, seq_len)
        prompt_len = min(self.prompt_len, windows.size(1))
        prompt = windows[:, :prompt_len].to(pl_module.device)
        # Seeds trained side by side (src/members.py): each member writes to its own run.
        members = getattr(pl_module, "count", None)
        nets = [pl_module.member_net(k) for k in range(members)] if members else [pl_module.net]
        loggers = getattr(trainer.logger, "loggers", [trainer.logger])
        was_training = pl_module.training
        pl_module.eval()
        try:
            for net, logger in zip(nets, loggers, strict=False):
                was_net_training = net.training
                net.eval()
                generator = torch.Generator().manual_seed(self.seed)
                tokens = sample(net, prompt, self.num_tokens, spec.input_shape[0], self.temperature, generator)
                net.train(was_net_training)
                parts = []
                for row in tokens.cpu():
                    parts.append(f"--- prompt ---\n{datamodule.decode(row[:prompt_len])}\n"
                                 f"--- continuation ---\n{datamodule.decode(row[prompt_len:])}\n")
                self.text = "\n".join(parts)
                if logger is not None and hasattr(logger, "run_id") and hasattr(logger.experiment, "log_text"):
                    logger.experiment.log_text(logger.run_id, self.text, "samples/samples.txt")
        finally:
            pl_module.train(was_training)


class StepTimer(Callback):
    """How long training takes to start and how long a step takes once it runs.

    first_step_s: seconds from `started` (the command's start, or a sweep job's)
    to the end of the first optimizer step (imports, data, model, store and
    Lightning's set-up included).
    step_ms: median time between the starts of consecutive training batches of an
    epoch: a whole step (fetch, forward, backward, update, hooks, logging, progress
    bar), without the validation between epochs. Train's summary logs both.
    """

    def __init__(self, started: float = STARTED):
        self.started = started
        self.first_step_s: float | None = None
        self.intervals: list[float] = []
        self.last_start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if batch_idx > 0 and self.last_start is not None:
            self.intervals.append(now - self.last_start)
        self.last_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.first_step_s is None:
            self.first_step_s = time.time() - self.started

    def summary(self) -> dict[str, float]:
        """time/first_step_s and time/step_ms, for what was measured."""
        measured = {}
        if self.first_step_s is not None:
            measured["time/first_step_s"] = self.first_step_s
        if self.intervals:
            measured["time/step_ms"] = 1000 * statistics.median(self.intervals)
        return measured


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, whose metrics are read again during training
    only on the steps the logger writes (log_every_n_steps). Reading them makes the
    host wait for the device: every step, that would be a wait per step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shown: dict = {}

    def get_metrics(self, trainer, pl_module) -> dict:
        training = trainer.state.stage == RunningStage.TRAINING
        if not training or logs_this_step(trainer) or not self.shown:
            self.shown = super().get_metrics(trainer, pl_module)
            self.shown.pop("v_num", None)  # the logger's version: the end of the run id, printed already
        return self.shown
