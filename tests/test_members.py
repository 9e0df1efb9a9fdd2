"""Seeds trained side by side (`seeds=[...]`, src/members.py): each member is the run
its seed would have been alone, and what cannot be vectorized says why and runs
one after another."""

import functools
import math

import pytest
import torch
from mlflow import MlflowClient
from omegaconf import OmegaConf

from src.data.base import SideBySide
from src.data.spec import DataSpec
from src.losses import CrossEntropy
from src.members import MemberLoggers, Members
from src.models.mlp import MLP
from src.module import ExperimentModule
from src.seeds import why_not_vectorized
from src.train import train
from src.validate import seeds_problems
from tests.conftest import compose_config, run_train, store_uri
from tests.test_train import tie_broken_best_epoch

# The networks the vectorized path serves, each on data it reads, for 51 steps (3 epochs
# of 17 batches). Dropout off: a member draws its own masks, not its solo run's. (Beyond
# some 50 steps float rounding, summed in another order by vmap's batched kernels,
# grows past 1e-4 in chaotic quantities such as the gradient norm.)
STEPS = ["trainer.max_epochs=3", "+trainer.limit_train_batches=17"]
VECTORIZED = {
    "dense": (["data=digits", "model=mlp,cnn,transformer", "model.dropout=0", *STEPS], 3),
    "linear": (["data=digits", "model=linear", *STEPS], 1),
    "bow": (["data=sentiment", "model=bow", *STEPS], 1),
    # The VAE draws its reparameterisation noise per member (as dropout masks): compared below.
    "vae": (["data=digits_images", "model=vae", *STEPS], 1),
    "gpt": (["data=pydoc_lm", "model=gpt", "model.dropout=0", *STEPS, "+trainer.limit_val_batches=4",
             "+trainer.limit_test_batches=4",
             "callbacks.text_samples.num_tokens=20"], 1),
}
SEEDS = [0, 1, 2]


def member_runs(client: MlflowClient, experiment: str) -> dict:
    """(model, seed) -> the run, for every run that is not a sweep's parent."""
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {(r.data.params["model"], int(r.data.params["seed"])): r for r in found
            if r.data.tags.get("triad.sweep") != "parent"}


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


@pytest.mark.slow
@pytest.mark.parametrize("networks", VECTORIZED)
def test_members_trained_side_by_side_have_the_histories_of_separate_runs(networks, tmp_path):
    mlruns = tmp_path / "mlruns"
    args, models = VECTORIZED[networks]
    together = run_train(["-m", *args, f"seeds=[{','.join(map(str, SEEDS))}]",
                          "experiment_name=together"], mlruns)
    assert "trained side by side (vectorized" in together.stdout
    run_train(["-m", *args, f"seed={','.join(map(str, SEEDS))}", "experiment_name=alone"], mlruns)
    client = MlflowClient(store_uri(mlruns))
    vectorized, alone = member_runs(client, "together"), member_runs(client, "alone")
    assert len(vectorized) == len(alone) == models * len(SEEDS)
    for key, solo in alone.items():
        member = vectorized[key]
        assert member.info.status == "FINISHED"
        assert member.data.tags["triad.side_by_side"] == "vectorized with seeds 0,1,2"
        assert member.data.tags["triad.config_hash"] == solo.data.tags["triad.config_hash"]  # re-runs skip it
        differing = {k for k in solo.data.params.keys() | member.data.params.keys()
                     if solo.data.params.get(k) != member.data.params.get(k)}
        assert differing == {"experiment_name"}
        metrics = {k for k in solo.data.metrics if not k.startswith("time/")}
        assert metrics == {k for k in member.data.metrics if not k.startswith("time/")}
        steps = 0
        for name in metrics:
            expected, got = history(client, solo.info.run_id, name), history(client, member.info.run_id, name)
            assert [s for s, _ in got] == [s for s, _ in expected], (key, name)
            tolerance = 1e-4
            if networks == "vae":  # its own noise: its losses alike, their parts (recon, kl) anywhere
                if not name.endswith("/loss"):
                    continue
                tolerance = 0.05
            for (step, want), (_, value) in zip(expected, got, strict=True):
                assert math.isclose(value, want, rel_tol=tolerance, abs_tol=1e-6), (key, name, step, value, want)
            steps = max([steps, *(s for s, _ in expected)])
        assert steps >= 50, steps  # histories compared over at least 50 steps
        artifacts = {a.path for a in client.list_artifacts(member.info.run_id)}
        assert artifacts == {a.path for a in client.list_artifacts(solo.info.run_id)}
        for folder in ("checkpoints", "plots"):
            assert ({a.path for a in client.list_artifacts(member.info.run_id, folder)}
                    == {a.path for a in client.list_artifacts(solo.info.run_id, folder)})
        logged = client.search_logged_models([member.info.experiment_id],
                                             filter_string=f"source_run_id = '{member.info.run_id}'")
        assert len(logged) == 1  # log_model is on: each member has its own logged model


@pytest.mark.slow
def test_a_network_vmap_cannot_run_trains_its_seeds_one_after_another(mlruns):
    result = run_train(["model=lstm", "seeds=[3,4]", "trainer.max_epochs=1"], mlruns)
    assert "trained one after another in this process, not vectorized: vmap cannot run this network" in result.stdout
    client = MlflowClient(store_uri(mlruns))
    runs = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    assert sorted(int(r.data.params["seed"]) for r in runs) == [3, 4]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["triad.side_by_side"].startswith("one after another: vmap cannot run this network")
        assert "test/acc" in run.data.metrics


def test_each_member_keeps_the_batch_order_of_its_seed():
    from src.data.base import InMemoryBatches, SeededShuffle

    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    loaders = [InMemoryBatches((x, y), 4, SeededShuffle(10, seed, True)) for seed in (0, 5)]
    side_by_side = SideBySide(loaders)
    side_by_side.set_epoch(2)
    stacked = list(side_by_side)
    assert len(stacked) == len(side_by_side) == 3
    for k, seed in enumerate((0, 5)):
        alone = SeededShuffle(10, seed, True)
        alone.set_epoch(2)
        assert torch.cat([xs[k, :, 0] for xs, _ in stacked]).long().tolist() == alone.order().tolist()


FEATURES = DataSpec("features", (4,), "multiclass", 3)


def tiny_modules(seeds: list[int], optimizer=torch.optim.Adam) -> list:
    """ExperimentModules of a small MLP, one per seed, as src/build.py makes them."""
    modules = []
    for seed in seeds:
        torch.manual_seed(seed)
        net = MLP(input_kind="features", input_shape=(4,), output_size=3, hidden_size=8)
        modules.append(ExperimentModule(net, CrossEntropy(), functools.partial(optimizer, lr=0.1), None, FEATURES))
    return modules


def test_per_member_gradient_clipping_clips_each_member_as_alone():
    members = Members(tiny_modules([0, 1]), FEATURES)
    grads = [torch.randn_like(p) * 10 for p in members.stacked]
    for p, grad in zip(members.stacked, grads, strict=True):
        p.grad = grad.clone()
    members.configure_gradient_clipping(None, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    for k in range(2):
        alone = [torch.nn.Parameter(torch.zeros_like(grad[k])) for grad in grads]
        for p, grad in zip(alone, grads, strict=True):
            p.grad = grad[k].clone()
        torch.nn.utils.clip_grad_norm_(alone, 1.0)
        for p, clipped in zip(alone, members.stacked, strict=True):
            assert torch.allclose(clipped.grad[k], p.grad, atol=1e-6)


def test_a_members_metrics_reach_its_own_run_and_shared_ones_every_run():
    class Kept:
        def __init__(self):
            self.logged = []

        def log_metrics(self, metrics, step):
            self.logged.append((metrics, step))

    loggers = [Kept(), Kept()]
    MemberLoggers(loggers).log_metrics({"member1/val/acc": 0.5, "member0/train/loss": 2.0, "train/lr": 0.1}, step=7)
    assert loggers[0].logged == [({"train/loss": 2.0, "train/lr": 0.1}, 7)]
    assert loggers[1].logged == [({"val/acc": 0.5, "train/lr": 0.1}, 7)]


def test_the_padding_row_of_an_embedding_gets_no_gradient_in_any_member():
    from src.models.bow import BagOfWords

    spec = DataSpec("tokens", (6,), "multiclass", 3, vocab_size=12)
    modules = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        net = BagOfWords(input_kind="tokens", input_shape=(6,), output_size=3, vocab_size=12)
        modules.append(ExperimentModule(net, CrossEntropy(), functools.partial(torch.optim.Adam), None, spec))
    members = Members(modules, spec)
    x = torch.tensor([[0, 1, 2, 0, 0, 0], [3, 4, 0, 0, 0, 0]]).expand(3, 2, 6)
    members.run_members(x, torch.tensor([0, 1]).expand(3, 2), shared=False)[1].sum().backward()
    members.on_after_backward()
    embedding = members.stacked[members.param_names.index("embedding.weight")]
    assert torch.all(embedding.grad[:, 0] == 0) and torch.any(embedding.grad[:, 1] != 0)


def test_what_cannot_be_vectorized_is_named(tmp_path):
    class Data:  # what why_not_vectorized reads of a data module
        spec = FEATURES
        splits = {"train": (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))}

    cfg = OmegaConf.create({"trainer": {"devices": 1, "strategy": "auto", "num_nodes": 1}, "compile": False,
                            "ckpt_path": None, "callbacks": None})
    assert why_not_vectorized(cfg, tiny_modules([0, 1]), Data()) is None
    assert "LBFGS does not update each parameter on its own" in why_not_vectorized(
        cfg, tiny_modules([0, 1], torch.optim.LBFGS), Data())
    assert "several devices" in why_not_vectorized(OmegaConf.merge(cfg, {"trainer": {"devices": 2}}),
                                                   tiny_modules([0, 1]), Data())
    assert "compile" in why_not_vectorized(OmegaConf.merge(cfg, {"compile": True}), tiny_modules([0, 1]), Data())


@pytest.mark.parametrize(("seeds", "overrides", "expected"), [
    ([0, 1, 2], [], []),
    ([], [], ["seeds=[]: a list of seeds"]),
    ([0, 0], [], ["a seed is listed twice"]),
    ([0, -1], [], ["seeds: -1: the seed must be an integer >= 0"]),
    ([0, 1], ["seed=3"], ["seed= and seeds= both given"]),
])
def test_seeds_are_checked_before_any_work(seeds, overrides, expected):
    problems = seeds_problems(OmegaConf.create({"seeds": seeds}).seeds, overrides)
    assert len(problems) == len(expected)
    for problem, words in zip(problems, expected, strict=True):
        assert words in problem


@pytest.mark.slow
def test_ctrl_c_during_a_vectorized_job_ends_every_member_killed(mlruns):
    import signal
    import subprocess
    import sys

    from src import PROJECT_ROOT

    command = [sys.executable, "-m", "src.train", f"paths.mlruns_dir={mlruns}", "seeds=[0,1,2]", "trainer.max_epochs=500"]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "MLflow runs" in line:
            break
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad").experiment_id
    while not any("train/loss" in r.data.metrics for r in client.search_runs([experiment])):
        assert process.poll() is None
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-2000:]
    runs = client.search_runs([experiment])
    assert sorted((int(r.data.params["seed"]), r.info.status) for r in runs) == [(0, "KILLED"), (1, "KILLED"), (2, "KILLED")]


def test_each_member_breaks_ties_in_the_objective_by_its_own_val_loss(mlruns):
    train(compose_config(["data=iris", "seeds=[0,1]", "trainer.max_epochs=8", "log_model=false", "callbacks=none"],
                         mlruns))
    client = MlflowClient(store_uri(mlruns))
    runs = client.search_runs([client.get_experiment_by_name("triad").experiment_id])
    assert sorted(int(r.data.params["seed"]) for r in runs) == [0, 1]
    for run in runs:
        assert run.data.tags["triad.side_by_side"] == "vectorized with seeds 0,1"
        expected, tied = tie_broken_best_epoch(client, run.info.run_id)
        assert len(tied) >= 2 and expected != tied[0], f"val/acc did not saturate early enough to test ties: {tied}"
        saved = torch.load(client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(mlruns)),
                           weights_only=True)
        assert saved["epoch"] == expected, (run.data.params["seed"], saved["epoch"], tied)
        assert run.data.metrics["val/acc_best"] == 1.0
