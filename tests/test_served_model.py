"""The logged model of a run on a user's table or text answers raw examples, in
process and served over HTTP by `mlflow models serve`, as a user starts it."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src import PROJECT_ROOT
from tests.conftest import run_train, store_uri, write_user_data

pytestmark = pytest.mark.slow

palmerpenguins = pytest.importorskip("palmerpenguins")
# A public table of 344 penguins (CC0): 2 categorical columns, NA cells in 5 columns.
PENGUINS = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"


def readme_serving() -> tuple[str, str]:
    """The README's `mlflow models serve` command and its `curl` command, as printed there."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    serve = next(line for line in readme.splitlines() if line.startswith("mlflow models serve "))
    start = readme.index("curl -X POST")
    return serve, readme[start : readme.index("}}'", start) + 3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(model_uri: str, tracking_uri: str, log_path: Path):
    """The README's `mlflow models serve` (--env-manager local, on 127.0.0.1), stopped after."""
    port = free_port()
    bin_dir = Path(sys.executable).parent  # the environment's mlflow and uvicorn, as in an activated venv
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    serve, _ = readme_serving()
    command = shlex.split(serve.replace("<model id>", model_uri.removeprefix("models:/")).replace("5001", str(port)))
    command[0] = str(bin_dir / "mlflow")
    assert command[command.index("-h") + 1] == "127.0.0.1" and "--env-manager" in command
    with log_path.open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"the server exited {server.returncode}:\n{log_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"no answer from {url}:\n{log_path.read_text()[-3000:]}"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def post(url: str, payload: dict) -> list:
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["predictions"]


def the_run(mlruns: Path):
    (run,) = MlflowClient(store_uri(mlruns)).search_runs(["1"])
    assert run.info.status == "FINISHED" and "triad.log_model_error" not in run.data.tags
    return run


def data_of(run, mlruns: Path):
    """The run's data module, rebuilt from its recorded config: its splits and raw test examples."""
    folder = mlruns.parent / "download"
    folder.mkdir(exist_ok=True)
    config = OmegaConf.load(MlflowClient(store_uri(mlruns)).download_artifacts(run.info.run_id, "config.yaml", str(folder)))
    module = instantiate(config.data)
    module.setup()
    return module


def accuracy(predicted: list[str], module) -> float:
    names = module.spec.class_names
    truth = [names[i] for i in module.splits["test"][1].tolist()]
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def test_a_public_mixed_table_trains_as_typed_and_its_served_model_answers_raw_rows(mlruns, tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    result = run_train(["data=csv", f"data.path={PENGUINS}", "data.target_column=species"], mlruns)
    assert "data: 5 numeric columns, categorical: island, sex; 19 missing cells imputed" in result.stdout
    run = the_run(mlruns)
    assert run.data.params["data.inferred.categorical_columns"] == "island,sex"
    assert run.data.params["data.inferred.missing_values"] == "19"
    assert run.data.params["data.missing"] == "impute" and run.data.params["data.scale"] == "standard"
    module = data_of(run, mlruns)

    # As good as scikit-learn's pipelines on the same split and the same preprocessing.
    (x_train, y_train), (x_test, y_test) = module.splits["train"], module.splits["test"]
    baselines = [LogisticRegression(max_iter=5000), HistGradientBoostingClassifier(random_state=0)]
    best_baseline = max(m.fit(x_train.numpy(), y_train.numpy()).score(x_test.numpy(), y_test.numpy()) for m in baselines)
    assert run.data.metrics["test/acc"] >= best_baseline - 0.02

    # The logged model takes rows as the file holds them: its signature, its example, its answers.
    model_id = run.outputs.model_outputs[0].model_id
    mlflow.set_tracking_uri(store_uri(mlruns))
    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    columns = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]
    assert [spec.name for spec in model.metadata.signature.inputs.inputs] == columns
    assert list(model.input_example.columns) == columns
    rows = module.raw_input.examples  # the test split's raw rows, NA cells as NaN
    local = model.predict(rows)
    assert accuracy(list(local["prediction"]), module) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)

    # Served over HTTP: the same answers for the raw rows, missing cells as JSON nulls.
    payload = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    assert any(value is None for row in payload["dataframe_split"]["data"] for value in row) or rows.notna().all().all()
    with served(f"models:/{model_id}", store_uri(mlruns), tmp_path / "serve.log") as url:
        answers = post(url, payload)
        # a row with unknown and absent values, as a user might send one
        odd = post(url, {"dataframe_records": [{"island": "Atlantis", "bill_length_mm": 50.1, "sex": "NA"}]})
        # the README's curl command, as printed there
        _, curl = readme_serving()
        typed = subprocess.run(["bash", "-c", curl.replace("127.0.0.1:5001", url.removeprefix("http://"))],
                               capture_output=True, text=True, timeout=60)
    assert typed.returncode == 0, typed.stderr
    readme_answers = json.loads(typed.stdout)["predictions"]
    assert len(readme_answers) == 2 and {a["prediction"] for a in readme_answers} <= set(module.spec.class_names)
    assert [a["prediction"] for a in answers] == list(local["prediction"])
    served_probabilities = np.array([[a[f"probability_{n}"] for n in module.spec.class_names] for a in answers])
    expected = local[[f"probability_{n}" for n in module.spec.class_names]].to_numpy()
    assert np.allclose(served_probabilities, expected, atol=1e-9)
    assert odd[0]["prediction"] in module.spec.class_names


def test_a_text_models_served_model_answers_raw_strings(mlruns, tmp_path):
    overrides = write_user_data(tmp_path)["csv"]  # reviews.csv: a review column, three labels
    run_train(["data=csv", *overrides, "model=bow", "trainer.max_epochs=3"], mlruns)
    run = the_run(mlruns)
    module = data_of(run, mlruns)
    texts = module.raw_input.examples["review"].tolist()
    model_id = run.outputs.model_outputs[0].model_id
    with served(f"models:/{model_id}", store_uri(mlruns), tmp_path / "serve.log") as url:
        answers = post(url, {"inputs": texts})
    predicted = [a["prediction"] for a in answers]
    assert accuracy(predicted, module) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    mlflow.set_tracking_uri(store_uri(mlruns))
    local = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(texts)
    assert predicted == list(local["prediction"])
