"""The MLflow model a run logs: its best network, answering in the task's terms.

Every model option is logged the same way, as a pyfunc model that holds the
network's constructor arguments (`network.json`), its weights (`weights.pt`, a
state dict, loaded with weights_only=True) and triad's `src/` package, from which
the network is rebuilt when the model is loaded. torch.export (MLflow's default
`pt2` format) cannot trace packed sequences (rnn, lstm, gru on text) and a pickled
module would run whatever code its file names; this format serves every model.

    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    model.predict(inputs)   # inputs like the input example (five test examples)

What it takes: on the user's tables (data=csv, data=hf) and the text data sets,
raw examples, as the data holds them: a DataFrame with the file's feature columns
(numbers, labels, missing cells), or one column of raw strings; the fitted
preprocessing (the data module's `raw_input`: scikit-learn's ColumnTransformer,
saved with skops, or the vocabulary) is saved inside the model. On the other
bundled data sets, the tensors the network reads (standardised features, pixels).

What predict returns, by task: a DataFrame with the predicted class name and one
probability column per class (multiclass, binary); the predicted value in the
target's units (regression); the most likely next token after each text (its id,
or its text when the model takes raw text) and its probability (language model);
the reconstruction, flattened (VAE).
"""

import json
import warnings
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.models import Model, infer_signature, set_model

from src.internals import PythonModelWithoutTypeHints

# Rows per forward pass when predicting: bounds the memory a large request takes.
PREDICT_BATCH = 1024


def describe(model_cfg: dict, spec, datamodule, loss_cfg: dict) -> dict:
    """What the logged model needs to rebuild the network and read its output."""
    arguments = {k: v for k, v in model_cfg.items() if k not in ("_target_", "_partial_")}
    return {
        "target": model_cfg["_target_"],
        "arguments": {**arguments, **spec.model_dims(), "input_shape": list(spec.input_shape)},
        "task": spec.task,
        "input_dtype": "int64" if spec.input_kind == "tokens" else "float32",
        "class_names": list(spec.class_names),
        # regression targets are standardised for training; answers are in the target's units
        "target_mean": getattr(datamodule, "target_mean", 0.0),
        "target_std": getattr(datamodule, "target_std", 1.0),
        # a VAE's reconstruction is logits under a BCE reconstruction loss, values under MSE
        "reconstruction": loss_cfg.get("reconstruction", "mse"),
        "raw_input": datamodule.raw_input.state() if getattr(datamodule, "raw_input", None) else None,
    }


def build_network(description: dict) -> torch.nn.Module:
    """The network class named in the description, built with its arguments.
    Only triad's own architectures (src.models.*) are built: the description may
    come from a store that others write to (src/gate.py judges what it names)."""
    from src import gate

    target = description["target"]
    network = gate.resolve(target) if target.startswith("src.models.") else None
    if not gate.is_allowed(network):
        raise ValueError(f"the logged model names {target!r}; only triad's architectures (src.models.*) are rebuilt")
    arguments = dict(description["arguments"], input_shape=tuple(description["arguments"]["input_shape"]))
    return network(**arguments)


def load_raw_input(state: dict, artifacts: dict):
    """The preprocessing a logged model saved (table.RawTable, text.RawText)."""
    from src.data.table import RawTable
    from src.data.text import RawText

    return {"table": RawTable, "text": RawText}[state["kind"]].load(state, artifacts)


@torch.no_grad()
def predict(net: torch.nn.Module, description: dict, inputs, raw_input=None) -> pd.DataFrame | np.ndarray:
    """The network's answers for a batch of inputs, in the task's terms (see the module docstring)."""
    if raw_input is not None:
        x = raw_input.encode(inputs)
    else:
        array = inputs.to_numpy() if isinstance(inputs, pd.DataFrame) else np.asarray(inputs)
        shape = description["arguments"]["input_shape"]
        x = torch.from_numpy(array.astype(description["input_dtype"]).reshape(-1, *shape))
    net.eval()
    outputs = [net(x[start : start + PREDICT_BATCH]) for start in range(0, len(x), PREDICT_BATCH)]
    task, names = description["task"], description["class_names"]
    if task == "reconstruction":
        reconstruction = torch.cat([out[0] for out in outputs])  # the VAE returns (reconstruction, mu, logvar)
        if description["reconstruction"] == "bce":
            reconstruction = torch.sigmoid(reconstruction)
        return reconstruction.flatten(1).numpy()
    output = torch.cat(outputs)
    if task == "regression":
        value = output.squeeze(-1).double() * description["target_std"] + description["target_mean"]
        return pd.DataFrame({"prediction": value.numpy()})
    if task == "language_model":
        # After each text's last token: raw prompts are padded after the text, windows are full.
        last = (x != 0).sum(-1).clamp(min=1) - 1 if raw_input is not None else torch.full((len(x),), x.size(1) - 1)
        probabilities = torch.softmax(output[torch.arange(len(x)), last].double(), dim=-1)  # (B, V)
        probability, token = probabilities.max(dim=-1)
        tokens = [raw_input.decode(t) for t in token.tolist()] if raw_input is not None else token.numpy()
        return pd.DataFrame({"next_token": tokens, "probability": probability.numpy()})
    if task == "binary":
        positive = torch.sigmoid(output.squeeze(-1).double())
        probabilities = torch.stack([1 - positive, positive], dim=-1)
    else:
        probabilities = torch.softmax(output.double(), dim=-1)
    names = names or [str(i) for i in range(probabilities.size(-1))]
    answers = pd.DataFrame({"prediction": [names[i] for i in probabilities.argmax(-1).tolist()]})
    for i, name in enumerate(names):
        answers[f"probability_{name}"] = probabilities[:, i].numpy()
    return answers


class NetworkModel(PythonModelWithoutTypeHints):
    """The pyfunc that MLflow loads: rebuilds the network, then predicts with it."""

    def load_context(self, context) -> None:
        self.description = json.loads(Path(context.artifacts["network"]).read_text())
        self.net = build_network(self.description)
        self.net.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        raw = self.description.get("raw_input")
        self.raw_input = load_raw_input(raw, context.artifacts) if raw else None

    def predict(self, context, model_input, params=None):
        return predict(self.net, self.description, model_input, self.raw_input)


# What the logged model needs to be loaded elsewhere (src/ travels inside it). Given
# explicitly because MLflow's inference of requirements starts a slow subprocess.
REQUIREMENTS = ("torch", "mlflow", "omegaconf", "scikit-learn", "skops", "pandas")


def log(client, run_id: str, net: torch.nn.Module, cfg, datamodule) -> None:
    """Log the network as the run's model (`name="model"`), in the run's own
    experiment, with five test examples (raw ones where the data keeps them) as
    its input example and its signature."""
    import tempfile
    from importlib.metadata import version

    from omegaconf import OmegaConf

    from src import PROJECT_ROOT

    mlflow.set_tracking_uri(client.tracking_uri)  # MLflow writes models through the global client
    # A model is created in the active experiment (else MLflow's Default), not its run's.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    description = describe(OmegaConf.to_container(cfg.model, resolve=True), datamodule.spec, datamodule,
                           OmegaConf.to_container(cfg.loss, resolve=True))
    raw_input = getattr(datamodule, "raw_input", None)
    inputs = raw_input.examples.head(5) if raw_input is not None else datamodule.splits["test"][0][:5].cpu().numpy()
    net = net.cpu().eval()
    with warnings.catch_warnings():  # next-token ids are integers; they are never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(inputs, predict(net, description, inputs, raw_input))
    if raw_input is not None:
        signature.inputs = raw_schema(raw_input)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "network.json").write_text(json.dumps(description, indent=2))
        torch.save(net.state_dict(), Path(folder) / "weights.pt")
        saved = raw_input.save(folder) if raw_input is not None else {}
        Model.log(
            artifact_path=None, flavor=mlflow.pyfunc, run_id=run_id, name="model",
            python_model=__file__,  # "models from code": this file, run again when loading; nothing pickled
            artifacts={"network": f"{folder}/network.json", "weights": f"{folder}/weights.pt", **saved},
            code_paths=[str(PROJECT_ROOT / "src")],
            signature=signature,
            input_example=inputs,
            pip_requirements=[f"{package}=={version(package)}" for package in REQUIREMENTS],
        )


def raw_schema(raw_input):
    """Texts: one column of strings, unnamed, so that a plain list of strings is an
    input too. Tables: the raw columns, typed as pandas reads the file (labels:
    string; whole numbers on every row: long; other numbers: double), each allowed
    to be absent."""
    from mlflow.types import ColSpec, Schema

    if raw_input.state()["kind"] == "text":
        return Schema([ColSpec("string")])

    def kind(name: str) -> str:
        return "string" if name in raw_input.categorical else "long" if name in raw_input.integers else "double"

    return Schema([ColSpec(kind(name), name, required=False) for name in raw_input.columns])


# What MLflow takes from this file when it loads the model ("models from code").
set_model(NetworkModel())
