"""triad's speed, side by side: each comparison runs both sides in this one run,
alternating, and reports the ratio of medians over repeats.

    python -m benchmarks.run              # everything (nox -s bench), about 13 minutes on 2 cores
    python -m benchmarks.run --only step startup --repeats 5

Writes benchmarks/RESULTS.md (machine, date, table). Every command is a real
`python -m src.train` (or the plain loop / Keras script beside this file) in its
own process, recording into a temporary MLflow store, never the project's.
"""

import argparse
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from statistics import median

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
console = Console()

# Short runs: the step time is a median over steady steps, so a few dozen suffice.
SHORT = ["+trainer.limit_val_batches=5", "+trainer.limit_test_batches=5", "log_model=false"]
MODELS = {  # name -> (overrides for both sides, training steps per epoch (None: all), epochs)
    "MLP on digits": (["model=mlp", "data=digits"], None, 10),
    "LSTM on sentiment": (["model=lstm", "data=sentiment"], 60, 2),
    "GPT on pydoc_lm": (["model=gpt", "data=pydoc_lm", "loss=cross_entropy"], 20, 2),
}


@dataclass
class Result:
    goal: str
    measured: str
    target: str
    met: bool | None  # None: not measured here
    detail: str = ""


def run(args: list[str], env: dict | None = None) -> tuple[dict[str, float], float, str]:
    """(the `timing:` values it printed, its wall seconds, its output) for one command."""
    started = time.perf_counter()
    done = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | (env or {}),
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("timing:")]
    timing = {k: float(v) for k, v in re.findall(r"(\w+)=(\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?=\s|$)", lines[-1])} if lines else {}
    return timing, wall, done.stdout


def train(store: Path, *overrides: str) -> list[str]:
    flags = [o for o in overrides if o.startswith("-")]  # Hydra reads its flags (-m) before the overrides
    return [sys.executable, "-m", "src.train", *flags, f"paths.mlruns_dir={store}", *(o for o in overrides if o not in flags)]


def side_by_side(name: str, commands: dict[str, list[str]], repeats: int) -> dict[str, list[dict[str, float]]]:
    """Each command `repeats` times, in turns (A B A B ...), so both sides see the
    same machine load: per side, the `timing:` values of each run, with its wall seconds."""
    values: dict[str, list[dict[str, float]]] = {side: [] for side in commands}
    for repeat in range(repeats):
        for side, command in commands.items():
            timing, wall, _ = run(command)
            values[side].append(timing | {"wall": wall})
        console.log(f"{name} {repeat + 1}/{repeats}: " + ", ".join(
            f"{side} " + " ".join(f"{k} {v:.4g}" for k, v in runs[-1].items()) for side, runs in values.items()))
    return values


def medians(values: dict[str, list[dict[str, float]]], key: str) -> dict[str, float]:
    """Per side, the median of one timing value over the repeats."""
    return {side: median([timing[key] for timing in runs]) for side, runs in values.items()}


def step_time(store: Path, repeats: int) -> list[Result]:
    """Goal 1: a step of `python -m src.train` (defaults: MLflow, progress bar,
    checkpoints) vs the same step in a plain loop."""
    results = []
    for name, (overrides, steps, epochs) in MODELS.items():
        limit = [f"+trainer.limit_train_batches={steps}"] if steps else []
        plain = [sys.executable, "-m", "benchmarks.plain_loop", "--epochs", str(epochs),
                 *(["--steps", str(steps)] if steps else []), *overrides]
        step = medians(side_by_side(name, {
            "triad": train(store, *overrides, *SHORT, *limit, f"trainer.max_epochs={epochs}"),
            "plain": plain,
        }, repeats), "step_ms")
        ratio = step["triad"] / step["plain"]
        results.append(Result(
            f"1. step time, {name}: triad / plain loop", f"{ratio:.3f}x", "<= 1.10x", ratio <= 1.10,
            f"{step['triad']:.3g} ms vs {step['plain']:.3g} ms per step",
        ))
    return results


def keras(store: Path, repeats: int) -> list[Result]:
    """Goal 2: the documents' bag-of-embeddings model, Keras 3 model.fit vs triad."""
    if importlib.util.find_spec("keras") is None:  # installed by the bench session only
        return [Result("2. BoW sentiment: triad / Keras 3 fit", "not run", "<= 1.00x", None,
                       "Keras is not installed: pip install keras==3.15.1 (nox -s bench does)")]
    step = medians(side_by_side("BoW", {
        "triad": train(store, "experiment=sentiment_bow", *SHORT, "trainer.max_epochs=2"),
        "keras": [sys.executable, "-m", "benchmarks.keras_bow", "--epochs", "2"],
    }, repeats), "step_ms")
    ratio = step["triad"] / step["keras"]
    return [Result("2. BoW sentiment step: triad / Keras 3 fit", f"{ratio:.3f}x", "<= 1.00x", ratio <= 1.0,
                   f"{step['triad']:.3g} ms vs {step['keras']:.3g} ms per step")]


def tracking(store: Path, repeats: int) -> list[Result]:
    """Goal 3: MLflow at default settings vs logger=none, the default run (MLP, digits,
    20 epochs); and how long that default run takes, whole command (issue 2: under a minute)."""
    values = side_by_side("tracking", {"mlflow": train(store), "none": train(store, "logger=none")}, repeats)
    fit, wall = medians(values, "fit_s"), medians(values, "wall")
    extra = fit["mlflow"] / fit["none"] - 1
    return [
        Result(
            "3. MLflow tracking vs logger=none: extra training (fit) time", f"{100 * extra:+.1f}%", "<= 3%",
            extra <= 0.03,
            f"fit {fit['mlflow']:.3g} s vs {fit['none']:.3g} s; the whole command {wall['mlflow'] - wall['none']:+.2g} s "
            "(creating the run, params, data set, test, artifacts and the model, once per run)",
        ),
        Result("the default run `python -m src.train`, whole command", f"{wall['mlflow']:.1f} s", "< 60 s",
               wall["mlflow"] < 60, "imports, data, 20 epochs, test, plots, checkpoints and the MLflow model"),
    ]


def startup(store: Path, repeats: int) -> list[Result]:
    """Goal 4: --help and --cfg job answer fast; command to first optimizer step."""
    results = []
    for flag in (["--help"], ["--cfg", "job"]):
        seconds = [run([sys.executable, "-m", "src.train", *flag])[1] for _ in range(repeats + 2)]
        best = median(seconds)
        results.append(Result(f"4. `python -m src.train {' '.join(flag)}`", f"{best:.2f} s", "< 1.5 s", best < 1.5))
    first = [run(train(store, "trainer.max_epochs=1", *SHORT))[0]["first_step_s"] for _ in range(repeats)]
    results.append(Result("4. command to first optimizer step (default run)", f"{median(first):.2f} s", "reported", None,
                          "imports, data, model, MLflow run and Lightning's set-up"))
    return results


def sweep(store: Path, repeats: int) -> list[Result]:
    """Goal 5: 12 jobs, joblib (2 workers) vs the basic launcher; same results."""
    # jobs of the default run's size (20 epochs of the MLP on digits), not recorded models
    jobs = ["-m", "seed=range(12)", "log_model=false", "callbacks=none"]
    wall, scores = {}, {}
    for launcher in ("basic", "joblib"):
        sweep_store = store / f"sweep-{launcher}"
        extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
        _, wall[launcher], _ = run(train(sweep_store, *jobs, *extra, f"experiment_name=sweep-{launcher}"))
        scores[launcher] = job_scores(sweep_store, f"sweep-{launcher}")
        console.log(f"sweep {launcher}: {wall[launcher]:.1f} s")
    speedup = wall["basic"] / wall["joblib"]
    same = scores["basic"] == scores["joblib"] and len(scores["basic"]) == 12
    return [Result("5. 12-job sweep: basic / joblib launcher wall time", f"{speedup:.2f}x", ">= 1.6x",
                   speedup >= 1.6 and same,
                   f"{wall['basic']:.0f} s vs {wall['joblib']:.0f} s; identical test/acc of every seed: {same}. "
                   "Each joblib worker imports torch, Lightning and MLflow before its first job (about 12 s "
                   "here, both at once on 2 cores); the basic launcher does that once, in the command")]


def job_scores(store: Path, experiment: str) -> dict[str, float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "tags.`mlflow.parentRunId` != ''") if found else []
    return {r.data.params["seed"]: r.data.metrics.get("test/acc") for r in runs}


def batching(store: Path, repeats: int) -> list[Result]:
    """Goal 6: the MLP on digits fed from tensors on the device vs a default DataLoader:
    training steps, and the batches alone (an epoch of digits' training split, in this process)."""
    step = medians(side_by_side("batching", {
        "in memory": train(store, *SHORT, "trainer.max_epochs=10", "data.use_dataloader=false"),
        "DataLoader": train(store, *SHORT, "trainer.max_epochs=10", "data.use_dataloader=true"),
    }, repeats), "step_ms")
    ratio = step["DataLoader"] / step["in memory"]
    feed = {name: epoch_of_batches(use_dataloader) for name, use_dataloader in (("in memory", False), ("DataLoader", True))}
    feed_ratio = feed["DataLoader"] / feed["in memory"]
    return [
        Result("6. MLP/digits training throughput: in-memory batches / DataLoader", f"{ratio:.2f}x", ">= 2x", ratio >= 2,
               f"{step['in memory']:.3g} ms vs {step['DataLoader']:.3g} ms per step"),
        Result("6. digits batches alone: in-memory / DataLoader throughput", f"{feed_ratio:.1f}x", ">= 2x",
               feed_ratio >= 2, f"{1e6 * feed['in memory']:.0f} us vs {1e6 * feed['DataLoader']:.0f} us per batch of 64"),
    ]


def epoch_of_batches(use_dataloader: bool, epochs: int = 21) -> float:
    """Median seconds per batch to draw one epoch of digits' training batches."""
    from src.data.digits import DigitsDataModule

    data = DigitsDataModule(batch_size=64, use_dataloader=use_dataloader)
    data.setup()
    batches = data.train_dataloader()
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _batch in batches:
            pass
        seconds.append((time.perf_counter() - started) / len(batches))
    return median(seconds)


def gpu(store: Path, repeats: int) -> list[Result]:
    """On a CUDA machine: the GPT on pydoc_lm in bf16 with torch.compile."""
    import torch

    if not torch.cuda.is_available():
        return [Result("GPU: GPT bf16 + compile tokens/s", "not run", "reported", None, "no CUDA device on this machine")]
    batch, seq_len = 64, 128
    overrides = ["model=gpt", "data=pydoc_lm", "trainer=gpu", "trainer.precision=bf16-mixed", "compile=true",
                 f"data.batch_size={batch}", "+trainer.limit_train_batches=300", "trainer.max_epochs=1", *SHORT]
    timing, _, output = run(train(store, *overrides))
    params = int(re.search(r"([\d,]+) parameters", output).group(1).replace(",", ""))
    tokens_per_s = batch * seq_len / (timing["step_ms"] / 1000)
    flops = 6 * params * tokens_per_s  # forward + backward, attention scores left out (Kaplan et al. 2020)
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    share = f"{100 * flops / (peak * 1e12):.2f}% of {peak} TFLOP/s bf16 peak" if peak else "peak unknown"
    return [Result(f"GPU ({name}): GPT bf16 + compile", f"{tokens_per_s:,.0f} tokens/s", "reported", None, share)]


# Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989, "H100": 989, "A100": 312, "L4": 121, "A10": 125}

def seeds(store: Path, repeats: int) -> list[Result]:
    from benchmarks import seeds  # issue 17's comparisons, in their own file

    return seeds.seeds(store, repeats)


def seeds_sweep(store: Path, repeats: int) -> list[Result]:
    from benchmarks import seeds

    return seeds.seeds_sweep(store, repeats)


def until_decided(store: Path, repeats: int) -> list[Result]:
    from benchmarks import until_decided

    return until_decided.results(store, repeats)


SECTIONS = {"step": step_time, "keras": keras, "tracking": tracking, "startup": startup, "sweep": sweep,
            "batching": batching, "gpu": gpu, "seeds": seeds, "seeds_sweep": seeds_sweep,
            "until_decided": until_decided}


def machine() -> str:
    import torch

    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0] if names else cpu
    memory = ""
    if Path("/proc/meminfo").exists():
        kib = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f", {kib / 2**20:.0f} GiB memory"
    return (f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; CUDA: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")


def write_results(results: list[Result], repeats: int, seconds: float, path: Path) -> None:
    marks = {True: "met", False: "**not met**", None: "-"}
    lines = [
        "# Benchmark results",
        "",
        f"Written by `nox -s bench` (`python -m benchmarks.run`) on {date.today().isoformat()}, in {seconds / 60:.1f} minutes.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Each ratio compares medians over {repeats} repeats, both sides run in turns in the same session.",
        "step time: the median time between the starts of consecutive training steps of an epoch (validation excluded).",
        "",
        "| goal | measured | target | | detail |",
        "|---|---|---|---|---|",
        *(f"| {r.goal} | {r.measured} | {r.target} | {marks[r.met]} | {r.detail} |" for r in results),
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="run these comparisons only")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    store = Path(tempfile.mkdtemp(prefix="triad-bench-"))
    results: list[Result] = []
    try:
        for name in args.only or SECTIONS:
            try:
                results += SECTIONS[name](store, args.repeats)
            except Exception as error:  # one broken comparison must not lose the others
                console.print_exception()
                results.append(Result(f"{name}: failed", "-", "-", False, str(error).splitlines()[0][:200]))
    finally:
        shutil.rmtree(store, ignore_errors=True)
    table = Table(title="triad benchmarks")
    for column in ("goal", "measured", "target", "", "detail"):
        table.add_column(column)
    for r in results:
        table.add_row(r.goal, r.measured, r.target, {True: "met", False: "NOT MET", None: "-"}[r.met], r.detail)
    console.print(table)
    write_results(results, args.repeats, time.perf_counter() - started, args.output)
    console.print(f"Written to {args.output}")


if __name__ == "__main__":
    main()
