"""The MLflow UI shows a finished sweep: its runs, their choice params and the objective.

Starts the real `mlflow ui` on a free 127.0.0.1 port and looks with headless
Chromium (Debian's `chromium` package, driven by Playwright; no browser download).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from mlflow import MlflowClient

from tests.conftest import run_train, store_uri

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s  # start-up takes ~15-20 s here, more on a busy machine
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow ui exited with {server.returncode}:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"mlflow ui did not answer on {url} within {limit_s} s")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install -y chromium; CI installs it)")
def test_mlflow_ui_shows_a_sweeps_runs_params_and_objective(mlruns, tmp_path):
    from playwright.sync_api import sync_playwright

    out = run_train(["-m", "model=linear,mlp", "seed=0", "data=iris", "trainer.max_epochs=1", "callbacks=none"], mlruns).stdout
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    exp_id = experiment.experiment_id
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs([exp_id], "tags.`triad.job_num` != ''")
    assert len(children) == 2
    runs_view = f"/#/experiments/{exp_id}?workflowType=machine_learning"  # the link each run prints
    assert f"then http://127.0.0.1:5000{runs_view}" in out

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri(mlruns),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until_up(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)

            page.goto(url + runs_view)  # the runs table, not the GenAI view's Traces page
            # The runs table nests the jobs under the sweep's parent row: unfold it.
            parent_row = page.locator("[role=row]", has_text="sweep-multirun").first
            parent_row.locator("button").first.click()
            for run in children:  # each job by its short name
                page.get_by_text(run.info.run_name).first.wait_for()
            assert "Token Usage" not in page.inner_text("body") and "Evaluation runs" not in page.inner_text("body")
            page.screenshot(path=str(tmp_path / "mlflow-runs-view.png"), full_page=True)

            # A run's params: the choices and settings, no plumbing (`_target_` stays in config.yaml).
            page.goto(f"{url}/#/experiments/{exp_id}/runs/{children[0].info.run_id}?workflowType=machine_learning")
            page.get_by_text("optimizer.lr").first.wait_for()
            assert "_target_" not in page.inner_text("body")
            assert not [k for k in children[0].data.params if k.endswith("_target_")]
            page.screenshot(path=str(tmp_path / "mlflow-run-params.png"), full_page=True)

            ids = urllib.parse.quote(json.dumps([r.info.run_id for r in children]))
            page.goto(f"{url}/#/compare-runs?runs={ids}&experiments={urllib.parse.quote(json.dumps([exp_id]))}")
            page.get_by_text("val/acc_best").first.wait_for()
            text = page.inner_text("body")
            for expected in ("model", "linear", "mlp", "optimizer", "adam", "val/acc_best",
                             *(r.info.run_name for r in children)):
                assert expected in text, f"{expected!r} not shown in the compare-runs view"
            # The parallel-coordinates plot starts on the first 3 differing params in sorted order:
            # the choice (`model`) comes first now that `model._target_` is no param.
            assert "_target_" not in text
            print("compare view:", text[:3000].replace("\n", " | "))
            screenshot = tmp_path / "mlflow-compare-runs.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
