"""The sweep's winner in the MLflow Model Registry.

A sweep that ends FINISHED with a decided best choice (its verdict is "<choice>
better" against every other choice on the sweep's objective, under Holm's correction
across the sweep's pairs unless compare.correction=none, and no choice still improving
at its last epoch) registers
the logged model of that choice's best run as a new version of the registered model
`<experiment name>-champion` and moves the alias `champion` to it:

    mlflow.pyfunc.load_model("models:/triad-champion@champion")

The version says why it won (description: the verdicts and the report's address;
tags: the sweep, the choice, the metric and its score). Without a winner nothing is
registered, and the report's Champion section says why. Either way the one line that
says so is printed and kept on the sweep's parent run (tag triad.champion), from which
a later `python -m src.compare` of the same sweep writes the section again.
"""

import traceback

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from src import record, stats, store
from src.locks import store_lock
from src.markup import literal

ALIAS = "champion"
TAG = "triad.champion"  # on the sweep's parent run: what was registered, or why nothing was
# The version's tags (MLflow keeps the source run's id itself).
SWEEP_ID, CHOICE, METRIC, SCORE = "triad.sweep_id", "triad.choice", "triad.metric", "triad.score"
REPORT = "report/report.html"  # the sweep's report on its parent run (src/compare.py)


def model_name(experiment_name: str) -> str:
    """The registered model that holds an experiment's champions."""
    return f"{experiment_name}-champion"


def winner(result: dict) -> tuple[str | None, str]:
    """(the choice whose verdict is "<choice> better" against every other, its verdicts),
    or (None, why there is none), from what compare.analyse returns."""
    choices = [row["choice"] for row in result["rows"]]
    if len(choices) < 2:
        return None, "one choice only: it beats nothing"
    if rising := [row["choice"] for row in result["rows"] if row.get("improving")]:
        return None, (f"{', '.join(rising)} still improving at the last epoch, so the verdicts compare undertrained "
                      "models (train longer, then compare again)")
    # A sweep that added seeds until decided is judged by its sequential test, whose
    # false-verdict rate holds under that stopping (src/sequential.py; its design holds
    # the family's correction); others by the permutation test, under Holm by default.
    if result.get("sequential"):
        pairs, key = result["sequential"]["pairs"], "verdict"
    else:
        pairs, key = result["pairs"], "family" if result.get("correction", "holm") == "holm" else "verdict"
    for choice in choices:
        against = [p for p in pairs if choice in (p["a"], p["b"])]
        if all(p[key] == f"{choice} better" for p in against):
            return choice, stats.in_words(against, key)
    undecided = [p for p in pairs if not p[key].endswith(" better")]
    return None, f"no choice beats every other: {stats.in_words(undecided or pairs, key)}"


def best_run(result: dict, choice: str) -> tuple:
    """(run, score): the choice's run with the best score, of the runs the comparison kept."""
    from src.compare import score  # compare imports this module

    sign = 1.0 if result["mode"] == "max" else -1.0
    scored = [(run, score(run, result["metric"])) for run in result["chosen"][choice]]
    return max(scored, key=lambda pair: sign * pair[1])


def outcome(client: MlflowClient, result: dict, parent, ended: str | None) -> dict | None:
    """The Champion section of the report on a sweep's objective (None for another
    metric or runs without a sweep): at the sweep's end (`ended`, its status) the
    champion is registered if there is one; later (None) what the end decided is read back."""
    from src.compare import objective  # compare imports this module

    runs = [run for members in result["chosen"].values() for run in members]
    if parent is None or not runs or result["metric"] != objective(runs):
        return None
    if ended is None:
        line = parent.data.tags.get(TAG)
        return {"line": line} if line else None
    try:
        found = crown(client, result, parent) if ended == "FINISHED" else {
            "line": f"No champion registered: the sweep ended {ended}."}
        client.set_tag(parent.info.run_id, TAG, found["line"][:5000])
    except Exception as error:  # the sweep's end goes on: the report, the parent's status
        reason = traceback.format_exception_only(error)[-1].strip()[:500]
        found = {"line": f"No champion registered: registering failed ({reason})."}
    return found


def crown(client: MlflowClient, result: dict, parent) -> dict:
    """Register the winner's best run's logged model and give it the alias; or say why not."""
    choice, verdicts = winner(result)
    if choice is None:
        return {"line": f"No champion registered: {verdicts}."}
    run, value = best_run(result, choice)
    named = f"{'-'.join(result['by'])}={choice}" if result["by"] else choice  # model=mlp
    trained = client.get_run(run.data.tags.get(record.REUSED_FROM, run.info.run_id))  # a re-used run's original
    models = [output.model_id for output in (trained.outputs.model_outputs if trained.outputs else [])]
    if not models:
        why = trained.data.tags.get(record.LOG_MODEL_ERROR) or (
            "log_model=false" if trained.data.params.get("log_model") == "False" else "none is linked to it")
        return {"line": f"No champion registered: {named} wins, but its best run {trained.info.run_id} "
                        f"has no logged model ({why})."}
    name = model_name(client.get_experiment(parent.info.experiment_id).name)
    link = report_link(client.tracking_uri, parent)
    description = describe(named, parent.info.run_name, parent.info.run_id, result["metric"], trained.info.run_id,
                           value, verdicts, link)
    tags = {SWEEP_ID: parent.info.run_id, CHOICE: named, METRIC: result["metric"], SCORE: f"{value:.6g}"}
    with store_lock(client.tracking_uri):  # two sweeps ending at once: one creates the model
        try:
            client.create_registered_model(name, description=f"The champions of experiment "
                                           f"'{name.removesuffix('-champion')}' (triad); alias @{ALIAS}: the latest.")
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        # The model's own folder, not models:/<id>: MLflow 3.17's SQL registry looks that up
        # through the global tracking URI (its TODO), i.e. ./mlflow.db unless a job set it.
        source = client.get_logged_model(models[-1]).artifact_location
        version = client.create_model_version(name, source=source, run_id=trained.info.run_id,
                                              tags=tags, description=description, model_id=models[-1])
        client.set_registered_model_alias(name, ALIAS, version.version)
    return {"line": f"Champion: {named} (run {trained.info.run_id}, {result['metric']}_best {value:.4f}) registered as "
                    f"{name} version {version.version}; load it with "
                    f"mlflow.pyfunc.load_model(\"models:/{name}@{ALIAS}\")",
            "name": name, "version": version.version, "choice": named, "run_id": trained.info.run_id,
            "metric": result["metric"], "score": value, "report": link}


def describe(named: str, sweep_name: str, sweep_id: str, metric: str, run_id: str, value: float, verdicts: str,
             link: str) -> str:
    """The version's description. The registry shows it as markdown: recorded values go in as text."""
    return (f"{literal(named)} won sweep {literal(sweep_name)} ({sweep_id}) on {literal(metric + '_best')} "
            f"(best run {run_id}: {value:.4f}).\n\nVerdicts: {literal(verdicts)}.\n\nReport: {literal(link)}")


def report_link(tracking_uri: str, parent) -> str:
    """Where the UI shows the sweep's HTML report: on the server, or on `mlflow ui` of the store."""
    route = f"/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/artifacts/{REPORT}"
    url = store.ui_url(tracking_uri, route)
    if tracking_uri.startswith(("http://", "https://")):
        return url
    return f"{url} (after: mlflow ui --backend-store-uri {tracking_uri})"


def markdown(found: dict) -> list[str]:
    """The report's Champion section."""
    return ["", "## Champion", "", literal(found["line"])]
