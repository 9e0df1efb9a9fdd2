"""The MLflow UI shows a finished sweep: its runs, their choice params and the objective,
and its comparison report (report/report.html) with every figure drawn.

Starts the real `mlflow ui` on a free 127.0.0.1 port and looks with headless
Chromium (Debian's `chromium` package, driven by Playwright; no browser download).
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

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


@contextlib.contextmanager
def mlflow_ui(mlruns: Path):
    """A real `mlflow ui` on the test's store, on a free port: yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri(mlruns),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def browser_page():
    """A page of headless Chromium, 1600 x 1000."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            browser.close()


def screenshots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $TRIAD_TEST_ARTIFACTS (CI keeps it) or the test's tmp_path."""
    folder = Path(os.environ.get("TRIAD_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


NEEDS_CHROMIUM = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                    reason="needs Debian's chromium (apt-get install -y chromium; CI installs it)")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep as a user types it, every default on, shared by the tests below:
    (its store, what it printed)."""
    mlruns = tmp_path_factory.mktemp("ui") / "mlruns"
    mlruns.mkdir()
    out = run_train(["-m", "data=iris", "model=linear,mlp", "seed=0,1,2", "trainer.max_epochs=2"], mlruns).stdout
    return mlruns, out


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_mlflow_ui_shows_a_sweeps_runs_params_and_objective(sweep, tmp_path):
    mlruns, out = sweep
    client = MlflowClient(store_uri(mlruns))
    experiment = client.get_experiment_by_name("triad")
    exp_id = experiment.experiment_id
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs([exp_id], "tags.`triad.job_num` != ''")
    assert len(children) == 6
    runs_view = f"/#/experiments/{exp_id}?workflowType=machine_learning"  # the link each run prints
    assert f"then http://127.0.0.1:5000{runs_view}" in out
    folder = screenshots_dir(tmp_path)

    with mlflow_ui(mlruns) as url, browser_page() as page:
        page.goto(url + runs_view)  # the runs table, not the GenAI view's Traces page
        # The runs table nests the jobs under the sweep's parent row: unfold it.
        parent_row = page.locator("[role=row]", has_text="sweep-multirun").first
        parent_row.locator("button").first.click()
        for run in children:  # each job by its short name
            page.get_by_text(run.info.run_name).first.wait_for()
        assert "Token Usage" not in page.inner_text("body") and "Evaluation runs" not in page.inner_text("body")
        page.screenshot(path=str(folder / "mlflow-runs-view.png"), full_page=True)

        # A run's params: the choices and settings, no plumbing (`_target_` stays in config.yaml).
        page.goto(f"{url}/#/experiments/{exp_id}/runs/{children[0].info.run_id}?workflowType=machine_learning")
        page.get_by_text("optimizer.lr").first.wait_for()
        assert "_target_" not in page.inner_text("body")
        assert not [k for k in children[0].data.params if k.endswith("_target_")]
        page.screenshot(path=str(folder / "mlflow-run-params.png"), full_page=True)

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
        screenshot = folder / "mlflow-compare-runs.png"
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")


@pytest.mark.slow
@NEEDS_CHROMIUM
def test_mlflow_ui_shows_the_sweeps_html_report_with_its_figures(sweep, tmp_path):
    mlruns, _ = sweep
    client = MlflowClient(store_uri(mlruns))
    exp_id = client.get_experiment_by_name("triad").experiment_id
    parent = client.search_runs([exp_id], "tags.`triad.sweep` = 'parent'")[0]
    verdict = parent.data.tags["triad.verdicts"].split(": ")[-1]  # e.g. "mlp better"
    folder = screenshots_dir(tmp_path)

    with mlflow_ui(mlruns) as url, browser_page() as page:
        page.goto(f"{url}/#/experiments/{exp_id}/runs/{parent.info.run_id}/artifacts")
        # As a user does: unfold report/ in the artifact tree, click report.html.
        page.get_by_text("report", exact=True).first.click()
        page.get_by_text("report.html", exact=True).first.click()
        # MLflow 3.17 shows it in a sandboxed iframe (scripts only, an origin of its own)
        # loaded from a blob URL: the page must need nothing from outside itself.
        iframe = page.locator("iframe.mlflow-html-iframe")
        iframe.wait_for()
        assert iframe.get_attribute("sandbox") == "allow-scripts"
        assert iframe.get_attribute("src").startswith("blob:")
        report = page.frame_locator("iframe.mlflow-html-iframe")
        figures = report.locator("figure")
        figures.first.wait_for()
        assert figures.count() == 4  # intervals, learning curves, P(A beats B), expected best
        page.screenshot(path=str(folder / "mlflow-report-html.png"))
        for i in range(figures.count()):
            svg = figures.nth(i).locator("svg")
            svg.scroll_into_view_if_needed()
            box = svg.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100, f"figure {i} not drawn: {box}"
            assert svg.locator("path").count() > 10  # axes, ticks and data, not an empty frame
            figures.nth(i).screenshot(path=str(folder / f"mlflow-report-figure-{i}.png"))
        # The verdict in the pairwise table and in its cell of the matrix, shown.
        assert report.locator("td strong", has_text=verdict).first.is_visible()
        cell = report.locator("svg text", has_text=verdict).first
        cell.scroll_into_view_if_needed()
        assert cell.is_visible()
        for heading in ("Fixed for the sweep", "Runs", "Pairwise verdicts"):
            assert report.locator("h2", has_text=heading).count() == 1
        assert report.get_by_text("trainer.max_epochs").first.is_visible()
    print(f"screenshots: {folder}")
