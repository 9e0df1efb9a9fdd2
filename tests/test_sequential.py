"""compare.until_decided: the sequential test's error rate under optional stopping, its
p-values by hand, the triad sweeper's job lists and refusals, and a sweep as typed."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

import hydra_plugins.triad_sweeper as plugin
from src import compare, record, sequential, stats, store, sweeper
from src.validate import ConfigError
from tests.conftest import CONF_DIR, run_train, store_uri

# ---------------------------------------------------------------- the statistics


def test_permutation_p_values_checked_by_hand():
    # Splits of {1,2,3,4} into two pairs: |mean difference| 2, 1, 0, 0, 1, 2; observed 2.
    assert stats.permutation_p([1, 2], [3, 4]) == pytest.approx(2 / 6)
    # Ties: A holds both 1s; of the 20 splits, 4 give A both 1s and 4 give A none.
    assert stats.permutation_p([1, 1, 0], [0, 0, 0]) == pytest.approx(8 / 20)
    # Unequal sizes: A={3}: 1.5, A={1}: -1.5, A={2}: 0.
    assert stats.permutation_p([3], [1, 2]) == pytest.approx(2 / 3)
    assert stats.permutation_p([0.9] * 4, [0.9] * 4) == 1.0
    # 5 vs 5, every A above every B: the split and its mirror of the 252.
    assert stats.permutation_p([6, 7, 8, 9, 10], [1, 2, 3, 4, 5]) == pytest.approx(2 / 252)
    assert stats.smallest_p(5, 5) == pytest.approx(2 / 252) and stats.smallest_p(3, 3) == pytest.approx(0.1)


def test_monte_carlo_p_is_close_to_the_exact_one():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 1, 10), rng.normal(0, 1, 10)  # C(20, 10) = 184,756 splits: Monte Carlo
    exact = permutation_test((a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), vectorized=True,
                             n_resamples=np.inf, alternative="two-sided").pvalue
    # 20,000 random splits: the standard error of p near 0.5 is 0.0035
    assert stats.permutation_p(a, b) == pytest.approx(exact, abs=0.015)
    assert stats.permutation_p(a, b) == stats.permutation_p(a, b)  # a fixed seed: the same p each time


def test_the_looks_and_the_first_look_that_can_decide():
    assert stats.looks(5, 20) == [5, 10, 15, 20] and stats.looks(5, 12) == [5, 10, 12] and stats.looks(5, 5) == [5]
    assert not sequential.design_problems(sequential.Design(5, 20, 0.05))  # 2/252 <= 0.05/4
    [problem] = sequential.design_problems(sequential.Design(3, 20, 0.05))
    assert "p >= 0.1" in problem and "at least 5 seeds" in problem
    [problem] = sequential.design_problems(sequential.Design(5, 4, 0.05))
    assert problem.startswith("compare.max_seeds=4")
    # Holm's correction on (the default): 3 choices' 3 pairs share alpha, each look at 0.05/3/4
    family = sequential.Design(5, 20, 0.05, pairs=3)
    assert family.level == pytest.approx(0.05 / 12) and "3 pairs together" in family.control
    [problem] = sequential.design_problems(family)
    assert "3 pairs sharing compare.alpha" in problem and "at least 6 seeds" in problem
    assert not sequential.design_problems(sequential.Design(6, 24, 0.05, pairs=3))  # 2/924 <= 0.05/12


def test_an_until_decided_sweep_of_three_choices_needs_six_seeds_under_holm():
    config = sweep_config("compare.until_decided=true", "compare.scientific=[optimizer]")
    parse = OverridesParser.create().parse_overrides
    with pytest.raises(ConfigError, match="3 pairs sharing compare.alpha"):
        sweeper.plan_of(config, parse(["optimizer=sgd,adam,adamw", "seed=0,1,2,3,4"]))
    plan = sweeper.plan_of(config, parse(["optimizer=sgd,adam,adamw", "seed=0,1,2,3,4,5"]))
    assert plan.design == sequential.Design(6, 20, 0.05, pairs=3)


def simulate(draw, alpha: float, planned: list[int], trials: int, seed: int) -> float:
    """The share of comparisons of two equal choices that ended with a verdict, each run
    as the sweep runs it: look at 5 seeds, add 5 while undecided, stop at the last look."""
    rng = np.random.default_rng(seed)
    false = 0
    for _ in range(trials):
        a, b = draw(rng), draw(rng)
        verdict, _ = stats.sequential_verdict(a, b, planned, alpha, "a", "b")
        false += verdict.endswith(" better")
    return false / trials


EQUAL_CHOICES = {
    "normal scores": lambda rng: rng.normal(0.8, 0.05, 20),
    "accuracies on 100 examples (many ties)": lambda rng: rng.binomial(100, 0.9, 20) / 100,
}


@pytest.mark.parametrize("draw", EQUAL_CHOICES.values(), ids=EQUAL_CHOICES.keys())
def test_equal_choices_get_a_false_verdict_at_most_alpha_of_the_time(draw):
    trials, alpha, planned = 2000, 0.05, stats.looks(5, 20)
    # Were the true rate alpha, the share over 2000 trials would exceed alpha + 3 standard
    # errors (3 * sqrt(0.05 * 0.95 / 2000) = 0.0146) with probability 0.0013: a pass is
    # no luck. (Bonferroni spends alpha conservatively: 0.02-0.035 is seen.)
    margin = 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert simulate(draw, alpha, planned, trials, seed=1) <= alpha + margin
    # The same looks, each at the full alpha (no spending): the simulation sees the excess.
    assert simulate(draw, alpha * len(planned), planned, trials, seed=1) > alpha + margin


def test_clearly_different_choices_are_decided_at_the_first_look():
    rng = np.random.default_rng(0)
    better, worse = rng.normal(0.9, 0.01, 20), rng.normal(0.6, 0.01, 20)
    assert stats.sequential_verdict(better, worse, [5, 10, 15, 20], 0.05, "adam", "sgd") == ("adam better", 5)
    assert stats.sequential_verdict(worse, better, [5, 10, 15, 20], 0.05, "sgd", "adam") == ("adam better", 5)
    # Equal ones go on to the last look; runs that end before it leave the pair open.
    assert stats.sequential_verdict(better, better, [5, 10], 0.05, "a", "b") == ("no evidence", 10)
    assert stats.sequential_verdict(better[:7], better[:7], [5, 10], 0.05, "a", "b") == ("open", 5)


# ---------------------------------------------------------------- the sweeper


def sweep_config(*overrides: str):
    """The composed config (with Hydra's part) a multirun with these fixed overrides sees."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def triad_sweeper():
    """The sweeper as Hydra builds it: after Hydra's plugin scan, which runs Hydra's and the
    plugins' modules again, so a TriadSweeper class imported before it would be stale."""
    from hydra.core.plugins import Plugins

    Plugins.instance()
    return plugin.TriadSweeper(max_batch_size=None)


def parsed(*arguments: str):
    return OverridesParser.create().parse_overrides(list(arguments))


def test_the_triad_sweeper_is_the_default_and_optuna_still_replaces_it():
    assert sweep_config().hydra.sweeper._target_ == "hydra_plugins.triad_sweeper.TriadSweeper"
    assert sweep_config("sweep=optuna").hydra.runtime.choices["hydra/sweeper"] == "optuna"


def test_seeds_together_folds_the_swept_seed_into_one_job_per_combination():
    grid = triad_sweeper()
    grid.config = sweep_config("seeds_together=true")
    [jobs] = grid.split_arguments(parsed("optimizer=sgd,adam", "seed=0,1,2", "data=iris"), None)
    assert jobs == [["optimizer=sgd", "seeds=[0,1,2]", "data=iris"], ["optimizer=adam", "seeds=[0,1,2]", "data=iris"]]
    # Without it, the basic sweeper's grid, job for job.
    grid.config = sweep_config()
    arguments = parsed("optimizer=sgd,adam", "seed=range(0,3)")
    assert grid.split_arguments(arguments, 2) == type(grid).__mro__[1].split_arguments(arguments, 2)
    assert len(grid.split_arguments(arguments, None)[0]) == 6


def test_a_sweep_with_seeds_together_launches_the_folded_jobs(tmp_path):
    # Through BasicSweeper.sweep, as Hydra runs it (without until_decided).
    grid = triad_sweeper()
    grid.config = sweep_config("seeds_together=true", f"hydra.sweep.dir={tmp_path}")
    grid.hydra_context = SimpleNamespace(config_loader=None)
    grid.validate_batch_is_legal = lambda batch: None  # composing each job needs Hydra's config loader
    launched = []
    grid.launcher = SimpleNamespace(launch=lambda batch, initial_job_idx: launched.append((initial_job_idx, batch)) or [])
    grid.sweep(["model=mlp,cnn", "seed=0,1,2,3,4"])
    assert launched == [(0, [["model=mlp", "seeds=[0,1,2,3,4]"], ["model=cnn", "seeds=[0,1,2,3,4]"]])]


@pytest.mark.parametrize("fold", [False, True], ids=["one job per seed", "seeds_together"])
def test_until_decided_jobs_of_the_first_round_and_the_next(fold):
    config = sweep_config("compare.until_decided=true", f"seeds_together={fold}")
    plan = sweeper.plan_of(config, parsed("optimizer=sgd,adam", "seed=0,1,2,3,4"))
    assert plan.seeds == list(range(20)) and plan.design == sequential.Design(5, 20, 0.05)
    first = sweeper.jobs(plan, [0, 1], plan.seeds[:5])
    later = sweeper.jobs(plan, [1], plan.seeds[5:10])
    if fold:
        assert first == [["optimizer=sgd", "seeds=[0,1,2,3,4]"], ["optimizer=adam", "seeds=[0,1,2,3,4]"]]
        assert later == [["optimizer=adam", "seeds=[5,6,7,8,9]"]]
    else:
        assert first[:2] == [["optimizer=sgd", "seed=0"], ["optimizer=sgd", "seed=1"]] and len(first) == 10
        assert later == [["optimizer=adam", f"seed={s}"] for s in range(5, 10)]


REFUSALS = {
    "no swept seed": (["compare.until_decided=true"], ["optimizer=sgd,adam", "seed=1"], "seed: compare.until_decided adds"),
    "a seed range that is no list": (["compare.until_decided=true"], ["seed=interval(0,5)"], "needs listed seeds"),
    "too few seeds": (["compare.until_decided=true"], ["seed=0,1,2"], "can never decide a pair"),
    "nuisance": (["compare.until_decided=true", "compare.nuisance=[optimizer.lr]"], ["seed=range(0,5)"], "compare.nuisance="),
    "a swept key pooled": (["compare.until_decided=true", "compare.scientific=[optimizer]"],
                           ["optimizer=sgd,adam", "optimizer.lr=0.1,0.01", "seed=range(0,5)"], "optimizer.lr: swept but"),
    "max_seeds below the seeds given": (["compare.until_decided=true", "compare.max_seeds=3"], ["seed=range(0,5)"],
                                        "compare.max_seeds=3 is below"),
    "logger=none": (["compare.until_decided=true", "logger=none"], ["seed=range(0,5)"], "logger=none"),
    "max_seeds not a number": (["compare.until_decided=true", "compare.max_seeds=many"], ["seed=range(0,5)"],
                               "compare.max_seeds=many: the most seeds"),
}


@pytest.mark.parametrize("config, arguments, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_until_decided_refuses_what_it_cannot_do(config, arguments, message):
    with pytest.raises(ConfigError, match="nothing was run") as refused:
        sweeper.plan_of(sweep_config(*config), parsed(*arguments))
    assert message in str(refused.value)


def test_a_refused_sweep_exits_before_anything_is_recorded(mlruns):
    result = run_train(["-m", "data=iris", "optimizer=sgd,adam", "seed=0,1,2", "compare.until_decided=true",
                        "compare.nuisance=[optimizer.lr]"], mlruns, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "The config has 2 problem(s); nothing was run" in result.stderr  # every problem at once
    assert "3 seeds per choice can never decide a pair" in result.stderr and "at least 5 seeds" in result.stderr
    assert "compare.nuisance=['optimizer.lr']" in result.stderr
    assert not (mlruns / "mlflow.db").exists()


def test_another_sweeper_refuses_what_only_the_triad_sweeper_does():
    config = sweep_config("hydra/sweeper=basic", "compare.until_decided=true", "seeds_together=true")
    with pytest.raises(ConfigError) as refused:
        sweeper.check(config)
    assert refused.value.problems == [
        f"{key}=true: hydra/sweeper=basic would ignore it (the triad sweeper, the default, does it); drop "
        f"hydra/sweeper=basic (sweep=optuna sets it), or set {key}=false." for key in ("compare.until_decided", "seeds_together")]
    sweeper.check(sweep_config("hydra/sweeper=basic"))  # a plain grid: nothing to refuse


class RecordingLauncher:
    """Stands in for Hydra's launcher: each job records, as a real one would, one child run per
    seed (seeds=[...] too) with a score from `scores`, and the batches are kept."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_id: str, scores):
        self.client, self.experiment_id, self.parent_id, self.scores = client, experiment_id, parent_id, scores
        self.batches: list[tuple[int, list[list[str]]]] = []

    def launch(self, batch, initial_job_idx):
        self.batches.append((initial_job_idx, batch))
        for number, job in enumerate(batch, start=initial_job_idx):
            values = dict(override.split("=", 1) for override in job)
            seeds = values["seeds"].strip("[]").split(",") if "seeds" in values else [values["seed"]]
            for seed in seeds:
                tags = {record.PARENT_RUN_ID: self.parent_id, record.JOB_NUM: str(number),
                        record.OBJECTIVE: "val/acc", record.OBJECTIVE_MODE: "max"}
                run_id = self.client.create_run(self.experiment_id, tags=tags).info.run_id
                score = self.scores[values["optimizer"]](int(seed))
                self.client.log_batch(run_id, params=[Param("optimizer", values["optimizer"]), Param("seed", seed)],
                                      metrics=[Metric("val/acc_best", score, 0, 0), Metric("val/acc", score, 0, 0)])
                self.client.set_terminated(run_id, "FINISHED")
        return [SimpleNamespace(return_value=0.0) for _ in batch]


@pytest.mark.parametrize("fold, max_batch_size", [(False, None), (True, None), (False, 4)],
                         ids=["one job per seed", "seeds_together", "max_batch_size=4"])
def test_until_decided_adds_seeds_only_to_the_undecided_choices(fold, max_batch_size, mlruns, monkeypatch, capsys):
    client = store.client_for(store_uri(mlruns))
    experiment_id = client.create_experiment("triad")
    parent_id = client.create_run(experiment_id, tags={record.SWEEP: "parent"}).info.run_id
    monkeypatch.setenv(record.SWEEP_PARENT_ENV, parent_id)
    noise = lambda seed: (seed * 7 % 11) / 1000  # noqa: E731
    scores = {"sgd": lambda s: 0.5 + noise(s), "adam": lambda s: 0.9 + noise(s), "adamw": lambda s: 0.9 + noise(s)}
    grid = triad_sweeper()
    grid.max_batch_size = max_batch_size
    grid.config = sweep_config(f"paths.mlruns_dir={mlruns}", f"hydra.sweep.dir={mlruns / 'sweep'}", f"seeds_together={fold}",
                               "compare.until_decided=true", "compare.max_seeds=15", "compare.scientific=[optimizer]",
                               "compare.correction=none")  # alpha per pair: 5 seeds can decide (Holm's: below)
    grid.hydra_context = SimpleNamespace(config_loader=None)
    grid.launcher = RecordingLauncher(client, experiment_id, parent_id, scores)
    grid.validate_batch_is_legal = lambda batch: None  # composing each job needs Hydra's config loader

    grid.sweep(["optimizer=sgd,adam,adamw", "seed=0,1,2,3,4"])

    numbered = {first + i: job for first, batch in grid.launcher.batches for i, job in enumerate(batch)}
    per_round = 1 if fold else 5  # jobs per choice and round
    assert sorted(numbered) == list(range(7 * per_round))  # numbered on from round to round
    assert all(len(batch) <= (max_batch_size or 15) for _, batch in grid.launcher.batches)
    first_round = [numbered[n] for n in range(3 * per_round)]
    later_rounds = [numbered[n] for n in range(3 * per_round, 7 * per_round)]
    assert {job[0] for job in first_round} == {"optimizer=sgd", "optimizer=adam", "optimizer=adamw"}
    assert {job[0] for job in later_rounds} == {"optimizer=adam", "optimizer=adamw"}  # sgd is decided
    if fold:
        assert [job[1] for job in later_rounds] == ["seeds=[5,6,7,8,9]"] * 2 + ["seeds=[10,11,12,13,14]"] * 2
    else:
        assert [job[1] for job in later_rounds] == [f"seed={s}" for s in range(5, 10)] * 2 + [
            f"seed={s}" for s in range(10, 15)] * 2
    out = capsys.readouterr().out
    assert "round 2: 1 undecided pair; adding seeds 5-9 to adam, adamw" in out
    assert "round 3: 1 undecided pair; adding seeds 10-14 to adam, adamw" in out
    assert "until_decided: 35 runs (a fixed 15 seeds would take 45)" in out
    parent = client.get_run(parent_id)
    assert sequential.design_of(parent.data.params) == sequential.Design(5, 15, 0.05)
    # The report replays the same looks from the store.
    result = compare.analyse(compare.sweep_runs(client, parent_id), parent=parent)
    decided = {(p["a"], p["b"]): (p["verdict"], p["seeds"]) for p in result["sequential"]["pairs"]}
    assert decided == {("adam", "adamw"): ("no evidence", 15), ("adam", "sgd"): ("adam better", 5),
                       ("adamw", "sgd"): ("adamw better", 5)}


def test_the_report_renders_the_sequential_verdicts(mlruns):
    client = MlflowClient(store_uri(mlruns))
    experiment_id = client.create_experiment("triad")
    parent_id = client.create_run(experiment_id, run_name="sweep-test", tags={record.SWEEP: "parent"}).info.run_id
    record.log_params(client, parent_id, {"compare.scientific": "optimizer", "compare.nuisance": "none",
                                          **sequential.Design(5, 10, 0.05).as_params()})
    launcher = RecordingLauncher(client, experiment_id, parent_id,
                                 {"sgd": lambda s: 0.5 + s / 1000, "adam": lambda s: 0.9 + s / 1000})
    launcher.launch([[f"optimizer={o}", f"seed={s}"] for o in ("sgd", "adam") for s in range(5)], 0)
    compare.report(client, compare.sweep_runs(client, parent_id), mlruns / "report", parent=client.get_run(parent_id))
    text = (mlruns / "report" / "report.md").read_text()
    assert "## Sequential verdicts" in text and sequential.TEST_NAME in text
    assert "at most 0.05 per pair, over all the looks" in text
    assert "| adam | sgd | **adam better after 5 seeds** |" in text
    assert client.get_run(parent_id).data.tags[record.SEQUENTIAL_VERDICTS] == "adam vs sgd: adam better after 5 seeds"


# ---------------------------------------------------------------- as a user types it


@pytest.mark.slow
def test_until_decided_sweep_as_typed(mlruns):
    # SGD (2 epochs) is clearly behind Adam; AdamW without weight decay is Adam exactly.
    result = run_train(["-m", "data=digits", "trainer.max_epochs=2", "optimizer=sgd,adam,adamw", "optimizer.weight_decay=0",
                        "seed=0,1,2,3,4", "compare.scientific=[optimizer]", "compare.until_decided=true",
                        "compare.max_seeds=10"], mlruns, timeout=600)
    assert "round 2: 1 undecided pair; adding seeds 5-9 to adam, adamw" in result.stdout
    client = MlflowClient(store_uri(mlruns))
    parent = compare.latest_parent(client, [client.get_experiment_by_name("triad").experiment_id])
    runs = compare.sweep_runs(client, parent.info.run_id)
    assert len(runs) == 25 < 3 * 10 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(int(r.data.tags[record.JOB_NUM]) for r in runs) == list(range(25))
    pairs = {(p["a"], p["b"]): (p["verdict"], p["seeds"])
             for p in compare.analyse(runs, parent=parent)["sequential"]["pairs"]}
    assert pairs == {("adam", "adamw"): ("no evidence", 10), ("adam", "sgd"): ("adam better", 5),
                     ("adamw", "sgd"): ("adamw better", 5)}
    report = Path(client.download_artifacts(parent.info.run_id, "report/report.md")).read_text()
    assert "## Sequential verdicts" in report and "| adam | adamw | **no evidence at max_seeds (10)** |" in report
    # python -m src.compare, later, replays the same looks from the store.
    later = compare.main(["--tracking-uri", store_uri(mlruns), "--sweep", parent.info.run_id, "--out", str(mlruns / "again")])
    assert later is None and (mlruns / "again" / "report.md").read_text().count("after 5 seeds") == 2
