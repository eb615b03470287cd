"""The MLflow and Prefect UIs, served by the project's servers, render in a real browser."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.browser


def test_mlflow_ui_opens_an_experiment_on_its_runs(mlflow_server, page, screenshot_dir):
    from mlflow.entities import Metric

    from pipelines import tracking

    mc = tracking.client(mlflow_server.url)
    name = f"browser-{uuid.uuid4().hex[:8]}"
    # the model-training view (MLflow 3.17 opens an experiment without this tag on GenAI traces)
    exp = mc.create_experiment(name, tags={"mlflow.experimentKind": "custom_model_development"})
    run_names = ["small_cnn lr=1e-3", "small_cnn lr=3e-2"]
    for run_name in run_names:
        rid = mc.create_run(exp, run_name=run_name, tags={tracking.RUN_KIND_TAG: "train"}).info.run_id
        mc.log_batch(rid, metrics=[Metric("val_accuracy", 0.5 + e / 20, 1000 + e, e) for e in range(1, 6)])
        mc.set_terminated(rid)

    # MLflow 3.17.2's UI picks GenAI or model training from the URL's workflowType, else from the
    # browser's local storage (GenAI in a fresh profile), whatever the experiment's kind tag says.
    page.goto(
        f"{mlflow_server.url}/#/experiments/{exp}?workflowType=machine_learning",
        wait_until="domcontentloaded",
    )
    for run_name in run_names:  # the run table is rendered client-side: wait for each row's name
        page.get_by_text(run_name, exact=True).first.wait_for(state="visible", timeout=90_000)
    page.get_by_text(name).first.wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(screenshot_dir / "mlflow-ui.png"))


def test_prefect_ui_loads_its_dashboard(prefect_server, page, screenshot_dir):
    base = prefect_server.url.removesuffix("/api")
    page.goto(f"{base}/dashboard", wait_until="domcontentloaded")
    page.get_by_text("Dashboard").first.wait_for(state="visible", timeout=90_000)
    page.get_by_text("Work Pools").first.wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(screenshot_dir / "prefect-ui.png"))
    # the UI reads from its own server's API (PREFECT_UI_API_URL on a non-4200 port): the
    # ownership variable infra/prefect-server.sh wrote is listed with this server's own token (any
    # server the project starts has the variable; only this one has the value)
    token = (prefect_server.services.dir / "prefect" / "token").read_text().strip()
    page.goto(f"{base}/variables", wait_until="domcontentloaded")
    page.get_by_text("curvewatch_server_token").first.wait_for(state="visible", timeout=60_000)
    page.get_by_text(token[:16]).first.wait_for(state="visible", timeout=30_000)
