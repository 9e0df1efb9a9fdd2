"""What a user typed or a run recorded never runs in report.html: values holding markup
(a script, an event handler, a javascript: link, a table's pipe) are shown as text, in
headless Chromium as a user opens the file, and the page forbids scripts besides."""

import shlex

import pytest
from mlflow import MlflowClient

from src import champion, compare
from src.markup import literal
from tests.conftest import store_uri
from tests.test_compare import record_sweep
from tests.test_ui import NEEDS_CHROMIUM, browser_page

SCRIPT = "<script>window.pwned = 'script'</script>"
HANDLER = '<img src=x onerror="window.pwned = \'handler\'">'
LINK = "[open me](javascript:window.pwned='link')"
PIPE = "a|b c $\\oops{ d$"  # a table's pipe, and TeX that matplotlib would fail to parse


def payload_sweep(client: MlflowClient) -> str:
    """A sweep whose choices, tuned settings, fixed overrides and run name all hold markup."""
    runs = [({"model": model, "optimizer": optimizer, "seed": s}, base + s / 100, "FINISHED")
            for model, base in ((SCRIPT, 0.9), (HANDLER, 0.5)) for optimizer in (LINK, PIPE) for s in range(4)]
    typed = ["trainer.max_epochs=1", f"+trainer.default_root_dir=/tmp/{SCRIPT}", f"+data.note={PIPE}",
             f"+data.link={LINK}", f"+data.image={HANDLER}"]
    parent = record_sweep(client, runs, nuisance="optimizer", tags={"triad.overrides": shlex.join(typed)})
    client.set_tag(parent, "mlflow.runName", f"sweep-{HANDLER}")
    return parent


def test_markup_in_a_value_is_text_in_markdown():
    assert literal(SCRIPT) == "&lt;script>window.pwned = 'script'&lt;/script>"
    assert literal("a|b") == "a\\|b" and literal(LINK).startswith("\\[open me\\]")
    assert literal("val/acc_best") == "val/acc_best" and literal("one\nline") == "one line"


@NEEDS_CHROMIUM
def test_a_report_of_payloads_runs_no_script_and_shows_them_as_text(mlruns):
    client = MlflowClient(store_uri(mlruns))
    parent = payload_sweep(client)
    result = compare.report(client, compare.sweep_runs(client, parent), mlruns / "report", parent=client.get_run(parent))
    assert result["fixed"] == ["trainer.max_epochs=1", f"+trainer.default_root_dir=/tmp/{SCRIPT}", f"+data.note={PIPE}", f"+data.link={LINK}",
                               f"+data.image={HANDLER}"]  # a value with spaces is one override, not junk rows
    page_file = mlruns / "report" / "report.html"
    html = page_file.read_text()
    for raw in ("<script", "<img", 'href="javascript'):
        assert raw not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    with browser_page() as page:
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("window.pwned") is None
        assert page.evaluate("document.scripts.length") == 0 and page.evaluate("document.links.length") == 0
        shown = page.inner_text("body")
        for value in (SCRIPT, HANDLER, LINK, PIPE):
            assert value in shown  # as text, whole
        fixed = page.locator("h2:has-text('Fixed for the sweep') ~ div.wide").first.inner_text()
        assert f"+trainer.default_root_dir\t/tmp/{SCRIPT}" in fixed and f"+data.note\t{PIPE}" in fixed  # one row each


def test_the_champions_description_holds_recorded_values_as_text():
    text = champion.describe(SCRIPT, f"sweep-{HANDLER}", "0123", "val/acc", "4567", 0.91,
                                f"{SCRIPT} vs {HANDLER}: {SCRIPT} better", "http://127.0.0.1:5000/#/x")
    assert "<" not in text.replace("&lt;", "") and "\\[" not in text  # no tag; no link markup in these values
    assert text.startswith("&lt;script>") and "val/acc_best (best run 4567: 0.9100)" in text
    with pytest.raises(TypeError):
        champion.describe()  # every part named
