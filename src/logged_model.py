"""The MLflow model a run logs: its best network, answering in the task's terms.

Every model option is logged the same way, as a pyfunc model that holds the
network's constructor arguments (`network.json`), its weights (`weights.pt`, a
state dict, loaded with weights_only=True) and triad's `src/` package, from which
the network is rebuilt when the model is loaded. torch.export (MLflow's default
`pt2` format) cannot trace packed sequences (rnn, lstm, gru on text) and a pickled
module would run whatever code its file names; this format serves every model.

    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    model.predict(inputs)   # inputs shaped like the input example (test inputs)

What predict returns, by task: a DataFrame with the predicted class name and one
probability column per class (multiclass, binary); the predicted value in the
target's units (regression); the most likely next token id after each sequence
and its probability (language model); the reconstruction, flattened (VAE).
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


@torch.no_grad()
def predict(net: torch.nn.Module, description: dict, inputs) -> pd.DataFrame | np.ndarray:
    """The network's answers for a batch of inputs, in the task's terms (see the module docstring)."""
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
        probabilities = torch.softmax(output[:, -1].double(), dim=-1)  # (B, V): after the last position
        probability, token = probabilities.max(dim=-1)
        return pd.DataFrame({"next_token": token.numpy(), "probability": probability.numpy()})
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

    def predict(self, context, model_input, params=None):
        return predict(self.net, self.description, model_input)


# What the logged model needs to be loaded elsewhere (src/ travels inside it). Given
# explicitly because MLflow's inference of requirements starts a slow subprocess.
REQUIREMENTS = ("torch", "mlflow", "omegaconf")


def log(client, run_id: str, net: torch.nn.Module, cfg, datamodule) -> None:
    """Log the network as the run's model (`name="model"`), in the run's own
    experiment, with five test inputs as its input example and its signature."""
    import tempfile
    from importlib.metadata import version

    from omegaconf import OmegaConf

    from src import PROJECT_ROOT

    mlflow.set_tracking_uri(client.tracking_uri)  # MLflow writes models through the global client
    # A model is created in the active experiment (else MLflow's Default), not its run's.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    description = describe(OmegaConf.to_container(cfg.model, resolve=True), datamodule.spec, datamodule,
                           OmegaConf.to_container(cfg.loss, resolve=True))
    inputs = datamodule.splits["test"][0][:5].cpu().numpy()
    net = net.cpu().eval()
    with warnings.catch_warnings():  # next-token ids are integers; they are never missing
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(inputs, predict(net, description, inputs))
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "network.json").write_text(json.dumps(description, indent=2))
        torch.save(net.state_dict(), Path(folder) / "weights.pt")
        Model.log(
            artifact_path=None, flavor=mlflow.pyfunc, run_id=run_id, name="model",
            python_model=__file__,  # "models from code": this file, run again when loading; nothing pickled
            artifacts={"network": f"{folder}/network.json", "weights": f"{folder}/weights.pt"},
            code_paths=[str(PROJECT_ROOT / "src")],
            signature=signature,
            input_example=inputs,
            pip_requirements=[f"{package}=={version(package)}" for package in REQUIREMENTS],
        )


# What MLflow takes from this file when it loads the model ("models from code").
set_model(NetworkModel())
