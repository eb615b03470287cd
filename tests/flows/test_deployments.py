"""The ``retrain`` deployment on its cron schedule, run by a worker on a ``process`` work pool.

The Prefect server and the worker are the project's own (``infra/prefect-server.sh``,
``infra/prefect-worker.sh``), with their state under this test's tmp_path and the scheduler's loop
shortened; the deployment is registered with ``flows.deployments.register`` and a cron schedule a
minute out, exactly as ``make serve`` registers it. Once the scheduled run has completed, chromium
(Playwright; marker ``browser``) opens it as a user would in the Prefect UI: the deployment, its
flow run, and the flow run's rendered ``curvewatch-report`` artifact.
"""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from pipelines import tracking
from tests.browser_support import chromium_page
from tests.conftest import REPO
from tests.flows.conftest import DVC_CLEAN, dvc_status

pytestmark = pytest.mark.flow

POOL = "curvewatch-test"


def _infra(script: str, *args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [str(REPO / "infra" / script), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"{script} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.strip()


@pytest.fixture
def prefect_services(tmp_path, mlflow_uri):
    """The project's Prefect server (any free port) and one worker on pool ``curvewatch-test``."""
    env = dict(
        os.environ,
        CURVEWATCH_SERVICES_DIR=str(tmp_path / "services"),
        CURVEWATCH_PREFECT_PORT="0",
        CURVEWATCH_WORK_POOL=POOL,
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        PREFECT_WORKER_QUERY_SECONDS="3",
        VENV=str(REPO / ".venv"),
    )
    env.pop("PREFECT_API_URL", None)
    _infra("prefect-server.sh", "start", env=env)
    try:
        env["PREFECT_API_URL"] = _infra("prefect-server.sh", "url", env=env)
        _infra("prefect-worker.sh", "start", env=env)
        yield env["PREFECT_API_URL"]
    finally:
        subprocess.run([str(REPO / "infra" / "prefect-worker.sh"), "stop"], env=env, timeout=60)
        subprocess.run([str(REPO / "infra" / "prefect-server.sh"), "stop"], env=env, timeout=60)


def _wait_final(client, flow_run_id, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state is not None and run.state.is_final():
            return run
        time.sleep(3)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout:.0f} s: {run.state}")


def _open_in_prefect_ui(profile_dir, api_url: str, run, screenshot_dir, worker_log) -> None:
    """As a user would, in chromium: the Deployments page lists ``retrain`` / ``scheduled``; its
    page lists the flow run; the flow run's Artifacts tab holds the curvewatch report; the flow
    run's "View at" link in the worker's log opens the run. In a thread of its own (see
    :func:`tests.browser_support.chromium_page`)."""
    import re

    from flows.deployments import RETRAIN_DEPLOYMENT

    links = re.findall(r"View at (http\S+/runs/flow-run/" + str(run.id) + ")", worker_log.read_text())
    assert links, f"no flow-run link for {run.id} in {worker_log}"
    link = links[-1]
    assert link.startswith(api_url.removesuffix("/api") + "/"), link

    def check() -> None:
        base = api_url.removesuffix("/api")
        with chromium_page(profile_dir) as page:
            page.goto(f"{base}/deployments", wait_until="domcontentloaded")
            page.get_by_text("retrain", exact=True).first.wait_for(state="visible", timeout=90_000)
            page.get_by_role("link", name=RETRAIN_DEPLOYMENT, exact=True).first.click()
            page.get_by_text(run.name, exact=True).first.wait_for(state="visible", timeout=60_000)
            page.screenshot(path=str(screenshot_dir / "prefect-deployment.png"))
            page.get_by_role("link", name=run.name, exact=True).first.click()
            page.wait_for_url(f"**/runs/flow-run/{run.id}**", timeout=60_000)
            page.get_by_text("Artifacts", exact=True).first.click()  # a tab of the flow run's page
            # the artifact's card (its key also labels the run's timeline above the tabs)
            card = page.get_by_text("curvewatch curve diagnosis", exact=True).first
            card.wait_for(state="visible", timeout=60_000)
            page.screenshot(path=str(screenshot_dir / "prefect-flow-run-artifacts.png"))
            card.click()  # the artifact's page renders the report's Markdown
            page.get_by_text("curvewatch report").first.wait_for(state="visible", timeout=60_000)
            page.screenshot(path=str(screenshot_dir / "prefect-report.png"))
            page.goto(link, wait_until="domcontentloaded")  # the link the flow run logged
            page.get_by_text(run.name, exact=True).first.wait_for(state="visible", timeout=60_000)
            page.get_by_text("Task Runs", exact=True).first.wait_for(state="visible", timeout=30_000)

    with ThreadPoolExecutor(1) as pool:
        pool.submit(check).result()


@pytest.mark.browser
def test_scheduled_retrain_runs_on_the_worker_and_a_failing_run_keeps_the_champion(
    prefect_services, dvc_folder_project, screenshot_dir, tmp_path
):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, DeploymentFilter, FlowRunFilter
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deployments import RETRAIN_DEPLOYMENT, register

    # The next whole minute at least 30 s away: time to register before it comes.
    due = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
    project = dvc_folder_project({"schedule": {"retrain_cron": f"{due.minute} {due.hour} * * *"}})
    with temporary_settings({PREFECT_API_URL: prefect_services}), get_client(sync_client=True) as client:
        ids = register(project.root / "params.yaml", work_pool=POOL)
        deployment_id = ids[f"retrain/{RETRAIN_DEPLOYMENT}"]
        deployment = client.read_deployment(deployment_id)
        assert deployment.work_pool_name == POOL and client.read_work_pool(POOL).type == "process"
        assert [s.schedule.cron for s in deployment.schedules] == [f"{due.minute} {due.hour} * * *"]

        deadline = time.monotonic() + (due - datetime.now(UTC)).total_seconds() + 60
        runs = []
        while not runs and time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id={"any_": [deployment_id]}))
            time.sleep(2)
        assert runs, "the scheduler created no run for the cron schedule"
        scheduled = min(runs, key=lambda r: r.expected_start_time)
        assert scheduled.expected_start_time == due
        run = _wait_final(client, scheduled.id, timeout=(due - datetime.now(UTC)).total_seconds() + 300)
        assert run.state.is_completed(), f"scheduled run ended {run.state.type}: {run.state.message}"

        mc = tracking.client()
        champion = tracking.get_champion(mc, "flow-test-model")
        assert champion is not None
        mlflow_run = mc.get_run(champion.run_id)
        assert mlflow_run.info.status == "FINISHED" and mlflow_run.data.tags["curvewatch.gate"]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key={"any_": ["curvewatch-report"]}),
            flow_run_filter=FlowRunFilter(id={"any_": [run.id]}),
        )
        assert artifacts and "curvewatch report" in artifacts[0].data
        assert dvc_status(project.root) == DVC_CLEAN
        worker_log = tmp_path / "services" / "prefect-worker" / "server.log"
        _open_in_prefect_ui(tmp_path / "chromium-profile", prefect_services, run, screenshot_dir, worker_log)

        # A run that fails (its data fails validation) is Failed with the reason; the champion stays.
        failed = run_deployment(
            f"retrain/{RETRAIN_DEPLOYMENT}",
            parameters={"overrides": ["validate.class_share_min_ratio=1.2"]},
            timeout=0,
            as_subflow=False,
        )
        failed = _wait_final(client, failed.id, timeout=300)
        assert failed.state.is_failed()
        assert "data validation failed" in failed.state.message
        assert tracking.get_champion(mc, "flow-test-model") == champion


def test_the_work_pool_type_is_configuration(monkeypatch):
    """``$CURVEWATCH_WORK_POOL_TYPE`` decides the type a missing pool is created with (docker here,
    for docker workers on other machines); a pool that exists with another type is refused."""
    import uuid

    from prefect import get_client

    from flows.deployments import ensure_work_pool, work_pool_type

    name = f"pool-{uuid.uuid4().hex[:8]}"
    monkeypatch.delenv("CURVEWATCH_WORK_POOL_TYPE", raising=False)
    assert work_pool_type() == "process"
    monkeypatch.setenv("CURVEWATCH_WORK_POOL_TYPE", "docker")
    ensure_work_pool(name, work_pool_type())
    with get_client(sync_client=True) as client:
        assert client.read_work_pool(name).type == "docker"
    ensure_work_pool(name, "docker")  # there already: nothing to do
    with pytest.raises(ValueError, match=f"work pool '{name}' exists with type 'docker', not 'process'"):
        ensure_work_pool(name, "process")
