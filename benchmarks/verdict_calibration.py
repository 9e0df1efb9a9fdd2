"""How often the report's verdict is wrong, asked as a user asks it: runs of two choices
are written into a real MLflow store the way triad records them (params, the
objective's tags, `val/acc_best`, `test/acc`, a validation curve), and each comparison is
`python -m src.compare --filter "params.batch = '<i>'" --by model` (its main(), in this
process, so that hundreds of comparisons take minutes, not an hour of start-ups).

    python -m benchmarks.verdict_calibration                   # 200 comparisons a case, ~15 min on 2 cores
    python -m benchmarks.verdict_calibration --comparisons 50  # quicker, rougher

Cases: two equal choices (normal scores; tied accuracies of 30 validation examples) at
3 and 5 seeds, where every "better" is false and the rate must stay at or under alpha
(0.05); and a clear difference (0.95 against 0.90 accuracy, spread 0.01, 5 seeds), where
the right choice should be called nearly every time. Prints the rates with their
Monte-Carlo standard errors.
"""

import argparse
import contextlib
import io
import re
import tempfile
from math import sqrt
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from rich.console import Console
from rich.table import Table

from src import compare

CASES = {  # name: (seeds, draw(rng, choice) -> scores)
    "equal, normal, 3 seeds": (3, lambda rng, choice, n: rng.normal(0.9, 0.02, n)),
    "equal, normal, 5 seeds": (5, lambda rng, choice, n: rng.normal(0.9, 0.02, n)),
    "equal, tied accuracies, 3 seeds": (3, lambda rng, choice, n: rng.binomial(30, 0.9, n) / 30),
    "equal, tied accuracies, 5 seeds": (5, lambda rng, choice, n: rng.binomial(30, 0.9, n) / 30),
    "0.95 vs 0.90, spread 0.01, 5 seeds": (5, lambda rng, choice, n: rng.normal(0.95 if choice == "mlp" else 0.90, 0.01, n)),
}


def record(client: MlflowClient, experiment_id: str, batch: int, scores: dict[str, np.ndarray]) -> None:
    """One comparison's runs, as a trained run records them (src/train.py, src/record.py)."""
    for model, values in scores.items():
        for seed, value in enumerate(values):
            tags = {"triad.objective": "val/acc", "triad.objective_mode": "max", "triad.task": "multiclass"}
            run_id = client.create_run(experiment_id, tags=tags).info.run_id
            curve = [value * k / 5 for k in range(1, 5)] + [value] * 4  # climbs, then levels off
            client.log_batch(run_id, params=[Param("model", model), Param("seed", str(seed)), Param("batch", str(batch))],
                             metrics=[Metric("val/acc_best", float(value), 0, 0), Metric("test/acc", float(value), 0, 0),
                                      *(Metric("val/acc", float(v), 0, 10 * e) for e, v in enumerate(curve)),
                                      *(Metric("epoch", e, 0, 10 * e) for e in range(len(curve)))])
            client.set_terminated(run_id, "FINISHED")


def verdict(report_md: str) -> str:
    """The verdict that counts (bold) of the report's one pair."""
    [row] = [line for line in report_md.splitlines() if line.startswith("| linear | mlp |")]
    return re.search(r"\*\*(.+?)\*\*", row)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--comparisons", type=int, default=200, help="comparisons per case (default 200)")
    args = parser.parse_args()
    console, rng = Console(width=120), np.random.default_rng(0)
    table = Table(title=f"Verdicts of python -m src.compare --filter ... --by model, {args.comparisons} comparisons a case")
    for column in ("case", "seeds", "mlp better", "linear better", "no evidence / cannot decide", "false-verdict rate"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        client = MlflowClient(uri)
        experiment_id = client.create_experiment("triad", artifact_location=str(Path(folder) / "artifacts"))
        batch = 0
        for name, (seeds, draw) in CASES.items():
            counts = {"mlp better": 0, "linear better": 0, "other": 0}
            for _ in range(args.comparisons):
                batch += 1
                record(client, experiment_id, batch, {m: draw(rng, m, seeds) for m in ("linear", "mlp")})
                out = Path(folder) / "reports" / str(batch)
                with contextlib.redirect_stdout(io.StringIO()):  # each report's tables: hundreds of them
                    compare.main(["--tracking-uri", uri, "--filter", f"params.batch = '{batch}'", "--by", "model",
                                  "--out", str(out)])
                said = verdict((out / "report.md").read_text())
                counts[said if said in counts else "other"] += 1
            equal = name.startswith("equal")
            wrong = (counts["mlp better"] + counts["linear better"]) if equal else counts["linear better"]
            rate = wrong / args.comparisons
            table.add_row(name, str(seeds), str(counts["mlp better"]), str(counts["linear better"]), str(counts["other"]),
                          f"{rate:.3f} ± {sqrt(max(rate, 1e-9) * (1 - rate) / args.comparisons):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
