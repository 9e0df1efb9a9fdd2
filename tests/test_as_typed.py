"""What users type, run as they type it: every model on every bundled data set it
reads, every named experiment, and every command the README prints.

Each command runs as a real `python -m src...` process with every default on
(callbacks, logger, plots, the logged model), shrunk only to one epoch (the
catalogue's runs also to 20 training batches). The runs share one store, each in an
experiment of its own, and two run at a time.
"""

import csv
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src import PROJECT_ROOT
from src.catalog import DATA, LOSSES, MODELS
from src.data.table import RawTable
from tests.conftest import config_options

pytestmark = pytest.mark.slow

MATRIX = [
    (model, data)
    for model in config_options("model")
    for data in config_options("data")
    if MODELS[model].takes(*DATA[data])  # csv, hf: (None, None), known from the file only
]
EXPERIMENTS = config_options("experiment")


def shrunk(args: list[str], batches: int | None = None) -> list[str]:
    """The command with one epoch (its own max_epochs replaced, or one added), and at most
    this many training batches (validation and test see their whole splits)."""
    kept = [a for a in args if not a.startswith("trainer.max_epochs=")]
    return [*kept, "trainer.max_epochs=1", *([f"++trainer.limit_train_batches={batches}"] if batches else [])]


# The catalogue's runs (every model x data set, option, experiment) train this many batches:
# what they check is the chain around training (record, plots, logged model), not learning.
CATALOGUE_BATCHES = 20


# ------------------------------------------------------------------ the runner


class Runner:
    """Runs commands two at a time (the machines have 2 cores) into one shared store."""

    def __init__(self, root: Path):
        self.root = root  # the commands' working directory; the store is root/mlruns
        self.mlruns = root / "mlruns"
        self.uri = f"sqlite:///{self.mlruns}/mlflow.db"
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.futures: dict[str, Future] = {}

    @staticmethod
    def experiment(name: str) -> str:
        """The command's own experiment: its name, in characters a Hydra override takes."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")

    def submit(self, name: str, module: str, args: list[str], trains: bool = True) -> None:
        if name not in self.futures:
            self.futures[name] = self.pool.submit(self._run, name, module, args, trains)

    def result(self, name: str) -> subprocess.CompletedProcess:
        return self.futures[name].result()

    def _run(self, name: str, module: str, args: list[str], trains: bool) -> subprocess.CompletedProcess:
        if trains:  # each command in its own experiment of the shared store (Hydra's flags first)
            flags, overrides = [a for a in args if a.startswith("-")], [a for a in args if not a.startswith("-")]
            place = [f"paths.mlruns_dir={self.mlruns}", f"experiment_name={self.experiment(name)}"]
            args = [*flags, *place, *overrides]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update({"PYTHONUNBUFFERED": "1", "COLUMNS": "120"})
        if module == "src.compare":
            env["MLFLOW_TRACKING_URI"] = self.uri
        return subprocess.run([sys.executable, "-m", module, *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=1800)

    def runs(self, name: str) -> list:
        client = MlflowClient(self.uri)
        experiment = client.get_experiment_by_name(name if name == "triad" else self.experiment(name))
        return client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.fixture(scope="module")
def runner(tmp_path_factory, request) -> Runner:
    """Starts the commands of every selected test of this module at once, in test order."""
    root = tmp_path_factory.mktemp("as_typed")
    (root / "mlruns").mkdir()
    runner = Runner(root)
    files = write_user_files(root)
    for item in request.session.items:
        spec = getattr(item, "callspec", None)
        skipped = item.get_closest_marker("skip") is not None
        if item.module.__name__ == __name__ and spec is not None and "command" in spec.params and not skipped:
            name, module, args, trains = spec.params["command"]
            runner.submit(name, module, [files.get(a, a) for a in args], trains)
    yield runner
    runner.pool.shutdown(cancel_futures=True)


def write_user_files(root: Path) -> dict[str, str]:
    """The README's example files, made here: a two-class review CSV, a house-price CSV
    and the reviews as a saved Hugging Face data set; penguins.csv is palmerpenguins'.
    Returns README text -> real path."""
    from src.data.sentiment import generate

    texts, labels = generate(400, seed=5)
    reviews = [(text, ("negative", "neutral", "positive")[label]) for text, label in zip(texts, labels, strict=True)
               if label != 1]  # two classes: the task is binary, and the default loss must follow it
    with (root / "reviews.csv").open("w", newline="") as file:
        csv.writer(file).writerows([("review", "label"), *reviews])
    rng = np.random.default_rng(0)
    area, rooms = rng.uniform(40, 200, 300), rng.integers(1, 7, 300)
    price = 3000 * area + 10000 * rooms + rng.normal(0, 20000, 300)
    with (root / "houses.csv").open("w", newline="") as file:
        csv.writer(file).writerows([("area", "rooms", "price"), *zip(area, rooms, price, strict=True)])
    import datasets

    datasets.Dataset.from_dict({"text": [r[0] for r in reviews], "label": [r[1] for r in reviews]}).save_to_disk(
        str(root / "saved_dataset"))
    import palmerpenguins  # the public table the README trains on as it comes

    penguins = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
    return {"data.path=penguins.csv": f"data.path={penguins}",
            "data.path=reviews.csv": f"data.path={root / 'reviews.csv'}",
            "data.path=houses.csv": f"data.path={root / 'houses.csv'}",
            "data.name=path/to/saved_dataset": f"data.name={root / 'saved_dataset'}"}


# ------------------------------------------------------------------ what a finished run must hold


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def check_output(result: subprocess.CompletedProcess) -> None:
    """Exit 0, and a console with the config, the results and the UI command only."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert "Traceback" not in result.stderr
    noise = [line for line in result.stderr.splitlines() if re.search(r"Warning|WARNING|INFO|Tip|deprecated", line)]
    assert not noise, f"the console shows library noise: {noise}"
    assert "v_num" not in result.stdout
    if "MLflow run" in result.stdout and "-m" not in result.args[3:]:  # a recorded single run (not a sweep)
        # the command to open the UI, whole on one line, to copy as it is
        assert re.search(r"^  mlflow ui --backend-store-uri sqlite:///\S+/mlflow\.db$", result.stdout, re.M)


def check_finished_run(runner: Runner, run, task: str) -> None:
    """The README's artifacts, and a logged model in the run's own experiment that
    predicts on the test split what the run measured there."""
    client = MlflowClient(runner.uri)
    assert run.info.status == "FINISHED"
    artifacts = artifact_paths(client, run.info.run_id)
    expected = {"config.yaml", "overrides.txt", "checkpoints/best.ckpt", "plots/learning_curves.png"}
    expected |= {"plots/confusion_matrix.png"} if task in ("multiclass", "binary") else set()
    expected |= {"samples/samples.txt"} if task == "language_model" else set()
    assert expected <= artifacts, f"missing {expected - artifacts}"
    assert "triad.log_model_error" not in run.data.tags
    (output,) = run.outputs.model_outputs
    assert client.get_logged_model(output.model_id).experiment_id == run.info.experiment_id
    mlflow.set_tracking_uri(runner.uri)
    model = mlflow.pyfunc.load_model(f"models:/{output.model_id}")
    folder = runner.root / "downloads" / run.info.run_id
    folder.mkdir(parents=True)
    config = OmegaConf.load(client.download_artifacts(run.info.run_id, "config.yaml", str(folder)))
    datamodule = instantiate(config.data)
    datamodule.setup("test")
    inputs, targets = datamodule.splits["test"]
    # Raw examples (rows, strings) where the data has them: what a user's file holds.
    raw = datamodule.raw_input
    examples = raw.examples if raw is not None else inputs.numpy()
    limit = config.trainer.get("limit_test_batches")
    if isinstance(limit, int):  # a number of batches (debug=limit): the test's first ones; 1.0 would be all
        tested = limit * datamodule.resolved_batch_size()
        examples, inputs, targets = examples[:tested], inputs[:tested], targets[:tested]
    answers = model.predict(examples)
    assert signature_columns(model) == (raw.columns if isinstance(raw, RawTable) else [None] if raw else [])
    metrics = run.data.metrics
    if task in ("multiclass", "binary"):
        names = list(datamodule.spec.class_names) or [str(i) for i in range(datamodule.spec.output_size)]
        predicted = torch.tensor([names.index(name) for name in answers["prediction"]])
        assert (predicted == targets).float().mean().item() == pytest.approx(metrics["test/acc"], abs=1e-6)
    elif task == "regression":
        # training targets may be standardised (bundled tables, CSVs); the answers are in the target's units
        mean, std = getattr(datamodule, "target_mean", 0.0), getattr(datamodule, "target_std", 1.0)
        standardised = (answers["prediction"].to_numpy() - mean) / std
        mse = float(np.mean((standardised - targets.numpy()) ** 2))
        assert mse == pytest.approx(metrics["test/mse"], rel=1e-4)
    elif task == "language_model":
        assert len(answers) == len(inputs) and answers["probability"].between(0, 1).all()
        assert answers["next_token"].map(type).eq(str).all()  # the next token as text, after a prompt as text
    else:  # reconstruction: values in [0, 1] for every input value
        assert answers.shape == (len(inputs), inputs[0].numel()) and ((answers >= 0) & (answers <= 1)).all()


def signature_columns(model) -> list:
    """The names of the columns the model's signature takes (None: one unnamed column), [] for a tensor."""
    inputs = model.metadata.signature.inputs
    return [] if inputs.is_tensor_spec() else [spec.name for spec in inputs.inputs]


def single_run(runner: Runner, name: str):
    runs = runner.runs(name)
    assert len(runs) == 1, f"{len(runs)} runs in experiment {name}"
    return runs[0]


def finished_single_run(runner: Runner, name: str):
    """The command's one run, its output and its record checked."""
    check_output(runner.result(name))
    run = single_run(runner, name)
    check_finished_run(runner, run, run.data.tags["triad.task"])
    return run


# ------------------------------------------------------------------ every model x data, every experiment


def matrix_command(model: str, data: str) -> tuple:
    return (f"{model}-{data}", "src.train", shrunk([f"model={model}", f"data={data}"], CATALOGUE_BATCHES), True)


@pytest.mark.parametrize("command", [matrix_command(m, d) for m, d in MATRIX], ids=[f"{m}-{d}" for m, d in MATRIX])
def test_every_model_trains_on_every_bundled_data_set_it_reads(command, runner):
    name, *_ = command
    run = finished_single_run(runner, name)
    model, data = name.split("-", 1)
    assert run.data.params["model"] == model and run.data.params["data"] == data
    assert run.data.params["loss"]  # picked by the task when the command names none


@pytest.mark.parametrize("command", [(f"experiment-{e}", "src.train", shrunk([f"experiment={e}"], CATALOGUE_BATCHES), True)
                                     for e in EXPERIMENTS], ids=EXPERIMENTS)
def test_every_experiment_runs_as_typed(command, runner):
    name, *_ = command
    finished_single_run(runner, name)


def option_command(group: str, option: str) -> tuple:
    """One loss, optimizer or scheduler option on the default model, every default on;
    a loss that takes no classes on the regression data set."""
    data = [] if group != "loss" or "multiclass" in LOSSES[option] else ["data=diabetes"]
    if option == "lbfgs":  # refused on mini-batches, saying to type this
        data = ["data.batch_size=full"]
    return (f"{group}-{option}", "src.train", shrunk([f"{group}={option}", *data], CATALOGUE_BATCHES), True)


OPTIONS = [(group, option) for group in ("loss", "optimizer", "scheduler") for option in config_options(group)
           if option != "elbo"]  # the VAE's loss: experiment=vae_digits runs it


@pytest.mark.parametrize("command", [option_command(g, o) for g, o in OPTIONS], ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_loss_optimizer_and_scheduler_option_runs_as_typed(command, runner):
    name, *_ = command
    run = finished_single_run(runner, name)
    group, option = name.split("-", 1)
    assert run.data.params[group] == option


# ------------------------------------------------------------------ every command the README prints


def readme_commands() -> list[str]:
    """Every `python -m src.<module>` command in the README, from code blocks (with
    their continuation lines) and inline code, without comments, once each."""
    found, in_block, lines = [], False, (PROJECT_ROOT / "README.md").read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            in_block = not in_block
        elif in_block:
            while line.rstrip().endswith("\\") and index + 1 < len(lines):
                index += 1
                line = line.rstrip()[:-1] + " " + lines[index].strip()
            found += re.findall(r"python -m src\.\w+[^#&`]*", line)
        else:
            found += re.findall(r"`(python -m src\.[^`]+)`", line)
        index += 1
    commands = dict.fromkeys(" ".join(c.split()) for c in found)  # as typed, in order, once each
    return list(commands)


# What these machines cannot run, and where each is tested instead.
NEEDS = {
    "submitit_slurm": "a Slurm cluster: tests/test_slurm.py runs these commands on a one-node Slurm it starts",
    "trainer=gpu": "a CUDA GPU: tests/test_scale.py::test_gpu_paths_record_a_finished_run runs it where there is one",
    "trainer=ddp": "several GPUs (trainer=ddp is accelerator=gpu): trainer=ddp_cpu runs the same code path here",
    "trainer=fsdp": "several GPUs",
    "mlflow-host": "a team's tracking server: tests/test_scale.py runs the same commands against a real mlflow server",
    "http://127.0.0.1:5000": "a tracking server there: tests/test_postgres.py runs this command against a real "
                             "mlflow server over PostgreSQL",
}
# Evaluations and reports read what training recorded: they run after it (below).
READS_RECORDS = ("python -m src.eval", "python -m src.compare")
TRAIN_COMMANDS = [c for c in readme_commands() if not c.startswith(READS_RECORDS)]


def needs(command: str) -> str | None:
    words = command.split()
    return next((why for key, why in NEEDS.items() if key in words or (key in command and "=" not in key)), None)


def readme_train(command: str) -> tuple:
    args = shlex.split(command)[3:]  # as a shell splits it: quotes removed
    if "--help" in args or "--cfg" in args:
        return (f"readme: {command}", "src.train", args, False)
    return (f"readme: {command}", "src.train", shrunk(args), True)


# Skipped at collection, so that the runner never starts them (sbatch alone waits minutes
# for a Slurm controller that is not there).
READMES_TRAIN = [pytest.param(readme_train(c), id=c, marks=[pytest.mark.skip(reason=f"needs {needs(c)}")] if needs(c) else [])
                 for c in TRAIN_COMMANDS]


@pytest.mark.parametrize("command", READMES_TRAIN)
def test_every_readme_command_runs_as_typed(command, runner):
    name, _, args, trains = command
    result = runner.result(name)
    check_output(result)
    if not trains or {"debug=fast", "logger=none", "logger=csv", "logger=tensorboard"} & set(args):
        return  # --help, --cfg job, debug=fast, no MLflow logger: they record nothing in MLflow
    runs = runner.runs(name)
    if "-m" in args or any(a.startswith("sweep=") for a in args):
        parents = [r for r in runs if r.data.tags.get("triad.sweep") == "parent"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
        # every job FINISHED, or stopped early by the Optuna pruner (KILLED, tag triad.pruned)
        assert jobs and all(r.info.status == "FINISHED" or "triad.pruned" in r.data.tags for r in jobs)
        assert len(jobs) == len(runs) - 1 and "triad.verdicts" in parents[0].data.tags
        finished = next(r for r in jobs if r.info.status == "FINISHED")
        check_finished_run(runner, finished, finished.data.tags["triad.task"])
        return
    seeds = next((a.removeprefix("seeds=") for a in args if a.startswith("seeds=")), None)
    assert len(runs) == (len(seeds.strip("[]").split(",")) if seeds else 1)  # seeds=[...]: a run each
    for run in runs:
        check_finished_run(runner, run, run.data.tags["triad.task"])


def test_the_readme_commands_that_cannot_run_here_are_only_those_that_need_other_machines():
    skipped = [c for c in TRAIN_COMMANDS if needs(c)]
    assert all(any(k in c for k in ("gpu", "ddp", "fsdp", "slurm", "mlflow-host", "http://127.0.0.1:5000")) for c in skipped), skipped
    assert "python -m src.train trainer=ddp_cpu trainer.devices=2" in TRAIN_COMMANDS  # the DDP path, on CPUs


def test_every_readme_evaluation_and_report_command_runs_as_typed(runner):
    """src.eval and src.compare as the README prints them, on a run and a sweep made first."""

    trained = ("readme-eval: trained", "src.train", shrunk([]), True)
    # The reports read the latest sweep of experiment "triad" (the default), on iris.
    sweep = ("readme-eval: sweep", "src.train",
             shrunk(["-m", "data=iris", "model=mlp,linear", "seed=0,1", f"paths.mlruns_dir={runner.mlruns}"]), False)
    runner.submit(*trained)
    runner.submit(*sweep)
    check_output(runner.result(trained[0]))
    check_output(runner.result(sweep[0]))
    (run,) = runner.runs(trained[0])
    parent = next(r for r in runner.runs("triad") if r.data.tags.get("triad.sweep") == "parent")
    best = Path(run.data.tags["triad.checkpoint_dir"]) / "best.ckpt"
    typed_best = str(best.relative_to(runner.root))  # mlruns/outputs/<day>/<time>/checkpoints/best.ckpt
    filled = {"<run id>": run.info.run_id, "<id>": run.info.run_id, "run_id=...": f"run_id={run.info.run_id}",
              "mlruns/outputs/<day>/<time>/checkpoints/best.ckpt": typed_best, "<best.ckpt>": typed_best,
              "<parent run id>": parent.info.run_id}
    commands = [c for c in readme_commands() if c.startswith(READS_RECORDS)]
    assert len(commands) >= 8
    for command in commands:
        for placeholder, value in filled.items():
            command = command.replace(placeholder, value)
        module, *args = shlex.split(command)[2:]
        if module == "src.eval":
            args = [f"paths.mlruns_dir={runner.mlruns}", *args]  # the tests' store, not the project's
        result = runner._run(command, module, args, trains=False)
        assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, command
        noise = [line for line in result.stderr.splitlines() if re.search(r"Warning|WARNING|INFO|Tip|deprecated", line)]
        assert not noise, f"{command}: the console shows library noise: {noise}"
    assert (runner.root / "reports" / "iris" / "report.md").exists()
    evaluations = [r for r in runner.runs(trained[0]) if r.data.tags.get("triad.evaluated_checkpoint")]
    assert len(evaluations) == 5  # four by run_id, one by ckpt_path; with logger=none nothing is recorded
    assert all(r.info.status == "FINISHED" for r in evaluations)
