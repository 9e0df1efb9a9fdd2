"""compare.until_decided against a fixed number of seeds, on a comparison whose answers
are known: SGD, SGD with momentum and Adam differ clearly after 2 epochs of the MLP on
digits, and AdamW without weight decay is Adam exactly.

    python -m benchmarks.until_decided                     # about 5 minutes on 2 cores
    python -m benchmarks.until_decided --first 5 --max-seeds 20

Both sweeps are real `python -m src.train -m` commands recording into one temporary
SQLite store (each in its own experiment, so the second re-uses none of the first's
runs). The fixed sweep's verdicts are the same permutation test at one look, all
max_seeds runs per choice, at level alpha: what a fixed design would conclude.
"""

import argparse
import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console
from rich.table import Table

from benchmarks.run import run, train
from src import compare, sequential

COMPARISON = ["-m", "data=digits", "trainer.max_epochs=2", "optimizer=sgd,momentum,adam,adamw",
              "optimizer.weight_decay=0", "compare.scientific=[optimizer]",
              # alpha per pair, as the fixed design below judges its pairs (Holm would need 7 seeds to start)
              "compare.correction=none"]
console = Console(width=120)


def sweep(store: Path, experiment: str, *overrides: str) -> tuple[dict, int, float]:
    """(the analysed sweep, its runs, its wall seconds) for one `python -m src.train -m` command."""
    _, wall, _ = run(train(store, *COMPARISON, f"experiment_name={experiment}", *overrides))
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    parent = compare.latest_parent(client, [client.get_experiment_by_name(experiment).experiment_id])
    runs = compare.sweep_runs(client, parent.info.run_id)
    return compare.analyse(runs, parent=parent), len(runs), wall


def fixed_verdicts(result: dict, seeds: int, alpha: float) -> dict[tuple[str, str], str]:
    """The permutation test at one look of all `seeds` runs per choice, at level alpha."""
    sign = 1.0 if result["mode"] == "max" else -1.0
    ordered = {name: [sign * compare.score(r, result["metric"]) for r in sorted(runs, key=compare.by_seed)]
               for name, runs in result["chosen"].items()}
    return {(p["a"], p["b"]): p["verdict"] for p in sequential.replay(ordered, sequential.Design(seeds, seeds, alpha))}


def compare_designs(store: Path, first: int, most: int, alpha: float) -> dict:
    """Both sweeps, and what each concluded: the until_decided sweep's pairs, the fixed
    sweep's verdicts (permutation test at one look, and the report's bootstrap rule)."""
    decided, decided_runs, decided_wall = sweep(
        store, "until_decided", f"seed=range(0,{first})", "compare.until_decided=true",
        f"compare.max_seeds={most}", f"compare.alpha={alpha}")
    console.log(f"until_decided: {decided_runs} runs, {decided_wall:.0f} s")
    fixed, fixed_runs, fixed_wall = sweep(store, "fixed_seeds", f"seed=range(0,{most})")
    console.log(f"fixed: {fixed_runs} runs, {fixed_wall:.0f} s")
    at_max = fixed_verdicts(fixed, most, alpha)
    pairs = decided["sequential"]["pairs"]
    return {"design": decided["sequential"]["design"], "pairs": pairs, "at_max": at_max,
            "bootstrap": {(p["a"], p["b"]): p["verdict"] for p in fixed["pairs"]},
            "agree": all(p["verdict"] == at_max[(p["a"], p["b"])] for p in pairs),
            "runs": (decided_runs, fixed_runs), "wall": (decided_wall, fixed_wall)}


def results(store: Path, repeats: int) -> list:
    """benchmarks/run.py's row (the defaults, once: the run counts do not vary between repeats)."""
    from benchmarks.run import Result

    found = compare_designs(store, 5, 20, 0.05)
    (decided_runs, fixed_runs), (decided_wall, fixed_wall) = found["runs"], found["wall"]
    fewer = 1 - decided_runs / fixed_runs
    verdicts = sequential.in_words(found)
    return [Result("17.3 until_decided / fixed 20 seeds: runs for the same verdicts (sgd, momentum, adam, adamw)",
                   f"{fewer:.0%} fewer", ">= 30% fewer, same verdicts", found["agree"] and fewer >= 0.3,
                   f"{decided_runs} vs {fixed_runs} runs, {decided_wall:.0f} s vs {fixed_wall:.0f} s; same verdicts: "
                   f"{'yes' if found['agree'] else 'NO'}; {verdicts}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=5, help="seeds per choice at the first look")
    parser.add_argument("--max-seeds", type=int, default=20)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="triad-until-decided-"))
    try:
        found = compare_designs(store, args.first, args.max_seeds, args.alpha)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    design, at_max, bootstrap = found["design"], found["at_max"], found["bootstrap"]
    (decided_runs, fixed_runs), (decided_wall, fixed_wall) = found["runs"], found["wall"]
    table = Table(title=f"Verdicts: until_decided (looks at {', '.join(map(str, design.looks))} seeds) vs "
                        f"{args.max_seeds} fixed seeds")
    for column in ("A", "B", "until_decided", "fixed, permutation test", "fixed, report's bootstrap", "agree"):
        table.add_column(column)
    for p in found["pairs"]:
        fixed_verdict = at_max[(p["a"], p["b"])]
        table.add_row(p["a"], p["b"], sequential.summary(p, design), fixed_verdict, bootstrap[(p["a"], p["b"])],
                      "yes" if p["verdict"] == fixed_verdict else "NO")
    console.print(table)
    console.print(f"runs: until_decided {decided_runs}, fixed {fixed_runs}: ratio {decided_runs / fixed_runs:.2f} "
                  f"({100 * (1 - decided_runs / fixed_runs):.0f}% fewer runs)")
    console.print(f"wall time: until_decided {decided_wall:.0f} s, fixed {fixed_wall:.0f} s "
                  f"(ratio {decided_wall / fixed_wall:.2f}); per run {decided_wall / decided_runs:.1f} s vs "
                  f"{fixed_wall / fixed_runs:.1f} s (unequal when the machine's load changed between the two)")
    console.print(f"same verdicts: {'yes' if found['agree'] else 'NO'}; goal (same verdicts, >= 30% fewer runs): "
                  f"{'met' if found['agree'] and decided_runs <= 0.7 * fixed_runs else 'NOT MET'}")


if __name__ == "__main__":
    main()
