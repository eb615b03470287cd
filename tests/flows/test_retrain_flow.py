"""The Prefect flow ``retrain`` end to end on a tiny image folder, against a test Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.retrain import RetrainSummary, run_retrain
from pipelines import schedule, steps, tracking
from pipelines.config import load_params

pytestmark = pytest.mark.flow


def _events(name: str, mlflow_run_id: str, timeout: float = 30.0) -> list:
    """Events named ``name`` about MLflow run ``mlflow_run_id`` (their payload's ``mlflow_run_id``) on
    the Prefect server, which the other flow tests share (events are persisted asynchronously)."""
    import time

    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            # limit: the client defaults to 100, over the server's maximum of 50.
            events = client.read_events(EventFilter(event=EventNameFilter(name=[name])), limit=50).events
            events = [e for e in events if e.payload.get("mlflow_run_id") == mlflow_run_id]
            if events or time.monotonic() > deadline:
                return events
            time.sleep(1)


def _artifacts(flow_run_id, key: str) -> list:
    """The Prefect artifacts ``key`` of one flow run."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, FlowRunFilter

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": [key]}),
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}),
        )


def test_retrain_promotes_first_champion_then_gates_a_worse_challenger(folder_params, monkeypatch, tmp_path):
    import traceback

    from prefect.client.orchestration import SyncPrefectClient

    by_task_runs = []
    real_init = SyncPrefectClient.__init__

    def counting_init(self, *args, **kwargs):
        if any(frame.filename.endswith("prefect/task_engine.py") for frame in traceback.extract_stack()):
            by_task_runs.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(SyncPrefectClient, "__init__", counting_init)
    good = folder_params()
    state = run_retrain(params_path=str(good), return_state=True)
    assert state.is_completed()
    # Every task run of the flow run (those run beside training too) uses the flow's API client;
    # a client per task run loaded the CA bundle each time (about 20 ms a task run).
    assert not by_task_runs, f"{len(by_task_runs)} task run(s) opened their own SyncPrefectClient"
    summary = state.result()
    assert isinstance(summary, RetrainSummary)
    # The flow is async: the report artifact is awaited in its body, not left as a coroutine.
    report = _artifacts(state.state_details.flow_run_id, "curvewatch-report")
    assert report and "curvewatch report" in report[0].data
    assert summary.validation_passed and summary.promoted
    assert summary.test_accuracy > 0.8
    assert summary.report.is_file()
    text = summary.render()
    assert "data validation : passed" in text and "promoted to champion" in text

    params = load_params(good)
    mc = tracking.client()
    champion = tracking.get_champion(mc, "flow-test-model")
    assert champion is not None and champion.run_id == summary.run_id
    run = mc.get_run(summary.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.RUN_KIND_TAG] == "train"
    assert run.data.tags["curvewatch.verdict"] and run.data.tags["curvewatch.gate"]
    assert run.data.tags["curvewatch.data_version"].endswith(".dir")
    assert "test_accuracy" in run.data.metrics and "validation.label_kl" in run.data.metrics
    history = mc.get_metric_history(summary.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2
    assert mc.get_metric_history(summary.run_id, "learning_rate")
    assert run.inputs.dataset_inputs, "dataset not logged with mlflow.log_input"
    artifacts = {a.path for a in mc.list_artifacts(summary.run_id, "curvewatch")}
    assert "curvewatch/report.md" in artifacts and "curvewatch/val_curves.png" in artifacts
    assert json.loads(params.paths.compare_metrics.read_text())["compare"]["promoted"] is True
    # The logged model's conda.yaml pins the environment's pip (MLflow warned and left it unpinned
    # when the environment had none).
    import mlflow

    model_uri = json.loads(params.paths.run_file.read_text())["model_uri"]
    model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp_path)))
    assert "pip<=" in (model_dir / "conda.yaml").read_text()

    # A challenger that learns nothing (learning rate 1e-7, 1 epoch) must not replace the champion,
    # and with fail_on_regression the flow fails.
    bad = folder_params(
        {"train": {"learning_rate": 1e-7, "epochs": 2}, "compare": {"fail_on_regression": True}},
        name="bad.yaml",
    )
    with pytest.raises(steps.GateFailed, match="regression gate failed"):
        run_retrain(params_path=str(bad))
    assert tracking.get_champion(mc, "flow-test-model").run_id == summary.run_id
    latest = tracking.recent_training_runs(mc, run.info.experiment_id, limit=1)[0]
    assert latest.info.run_id != summary.run_id
    assert _events(schedule.REGRESSION_EVENT, latest.info.run_id), (
        "no curvewatch.regression event about the challenger reached the Prefect server"
    )
    assert mc.get_run(latest.info.run_id).data.tags["curvewatch.promoted"] == "false"
    assert mc.get_run(latest.info.run_id).data.tags["curvewatch.gate"] != "promote"


def test_failed_validation_stops_before_training(folder_params):
    broken = folder_params({"validate": {"class_share_min_ratio": 0.1, "class_share_max_ratio": 0.3}})
    with pytest.raises(steps.ValidationFailed) as info:
        run_retrain(params_path=str(broken))
    assert "class" in str(info.value).lower()
    state = run_retrain(params_path=str(broken), return_state=True)
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), steps.ValidationFailed)
    failure = _artifacts(state.state_details.flow_run_id, "data-validation")
    assert failure and "Data validation failed" in failure[0].data
    params = load_params(broken)
    assert not params.paths.model_file.exists()
    assert (params.paths.validation_dir / "results.json").is_file()
    mc = tracking.client()
    run = mc.get_run(info.value.run_id)
    assert run.info.status == "FAILED" and run.data.tags[tracking.RUN_KIND_TAG] == "validation"
    assert run.data.metrics["validation.success"] == 0.0


def test_cli_runs_the_async_flow_and_prints_its_summary(folder_params):
    """``curvewatch flow retrain`` (``make run``) drives the async flow through ``run_retrain``."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    broken = folder_params({"validate": {"class_share_min_ratio": 0.1, "class_share_max_ratio": 0.3}})
    out = CliRunner().invoke(app, ["flow", "retrain", "--params", str(broken)])
    assert out.exit_code == 1, out.output
    assert "data validation : FAILED" in out.output


@pytest.mark.parametrize(
    ("error", "calls_expected"),
    [
        (None, 1),  # a SIGTERM (TrainingInterrupted): stopped on purpose, not retried
        (OSError("disk full"), 2),  # anything else: retried once, and the retry finishes
    ],
    ids=["signal-not-retried", "other-error-retried"],
)
def test_train_task_retries_a_failure_but_not_a_signal(params_file, monkeypatch, error, calls_expected):
    import signal

    from prefect import flow

    from flows.retrain import train_task
    from pipelines.train import TrainingInterrupted

    calls: list[int] = []

    def run_train(params):
        calls.append(1)
        if len(calls) == 1:
            raise error or TrainingInterrupted(signal.SIGTERM, 2)
        return "trained"

    monkeypatch.setattr(steps, "run_train", run_train)

    @flow(name="train-retry-check")
    def only_train(path: str):
        return train_task(load_params(Path(path)))

    if error is None:
        with pytest.raises(TrainingInterrupted, match="SIGTERM after 2 finished epoch"):
            only_train(str(params_file()))
    else:
        assert only_train(str(params_file())) == "trained"
    assert len(calls) == calls_expected
