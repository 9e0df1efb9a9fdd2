"""Seeds side by side (issue 17), two comparisons for benchmarks/run.py:

- `seeds`: K=5 seeds of the MLP and of the CNN on digits (the default run, 20 epochs):
  one command with seeds=[0,1,2,3,4] against five commands, one per seed, and against
  one command of one seed; whole wall time of the commands.
- `seeds_sweep`: `sweep=architectures` with one job per seed (seeds_together=false)
  against the same comparison with seeds_together=true (one job per model, its seeds
  side by side): the whole command's wall time, that is until the report is written;
  the verdicts of both (Holm's, the ones the champion needs).
"""

from pathlib import Path

from benchmarks.run import Result, console, run, side_by_side, train

SEEDS = [0, 1, 2, 3, 4]


def seeds(store: Path, repeats: int) -> list[Result]:
    results = []
    for model in ("mlp", "cnn"):
        walls: dict[str, list[float]] = {"one seed": [], "5 seeds side by side": [], "5 separate runs": []}
        for repeat in range(repeats):
            walls["one seed"].append(run(train(store, f"model={model}", "seed=0"))[1])
            walls["5 seeds side by side"].append(
                run(train(store, f"model={model}", f"seeds=[{','.join(map(str, SEEDS))}]"))[1])
            walls["5 separate runs"].append(sum(run(train(store, f"model={model}", f"seed={seed}"))[1] for seed in SEEDS))
            console.log(f"seeds {model} {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in walls.items()))
        one, together, separate = (sorted(v)[len(v) // 2] for v in walls.values())
        results.append(Result(
            f"17.1 five seeds, {model.upper()} on digits: side by side / one seed, whole command",
            f"{together / one:.2f}x", "<= 1.5x", together / one <= 1.5,
            f"{together:.1f} s vs {one:.1f} s for one seed; five separate commands {separate:.1f} s "
            f"({separate / one:.2f}x one seed, {separate / together:.2f}x side by side)"))
    return results


def seeds_sweep(store: Path, repeats: int) -> list[Result]:
    commands = {
        # skip_finished=false: a repeat trains again rather than re-using the runs of the last
        "as it stands": train(store, "sweep=architectures", "seeds_together=false", "skip_finished=false",
                              "experiment_name=arch-apart"),
        "seeds together": train(store, "sweep=architectures", "seeds_together=true", "skip_finished=false",
                                "experiment_name=arch-together"),
    }
    walls = side_by_side("sweep=architectures", commands, repeats)
    apart, together = (sorted(r["wall"] for r in runs)[len(runs) // 2] for runs in walls.values())
    verdicts = {side: verdicts_of(store, name) for side, name in
                (("as it stands", "arch-apart"), ("seeds together", "arch-together"))}
    return [Result(
        "17.2 `sweep=architectures` until its report: as it stands / seeds side by side",
        f"{apart / together:.2f}x", ">= 3x", apart / together >= 3,
        f"{apart:.0f} s vs {together:.0f} s; verdicts as it stands: {verdicts['as it stands']}; "
        f"side by side: {verdicts['seeds together']}")]


def verdicts_of(store: Path, experiment: str) -> str:
    """The latest sweep's `triad.verdicts_holm` tag in that experiment (Holm's verdicts)."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    found = client.get_experiment_by_name(experiment)
    parents = client.search_runs([found.experiment_id], "tags.`triad.sweep` = 'parent'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    return parents[0].data.tags.get("triad.verdicts_holm", "-") if parents else "-"
