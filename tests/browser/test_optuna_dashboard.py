"""`curvewatch tune-ui` (``make tune-ui``) serves optuna-dashboard on the tuning store; it renders.

The study is made the way the ``tune`` flow makes one: in the SQLite file under ``paths.tune_dir``
(``pipelines.steps.optuna_storage_url``), pruned by :class:`pipelines.curves.pruner.CurvePruner`,
which leaves its reason in the trial's ``pruned_because`` user attribute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import numpy as np
import pytest

from tests.mlflow_process import free_port
from tests.reliability._support import curvewatch

pytestmark = pytest.mark.browser

BUDGET = 20  # epochs


def _curve(top: float, seed: int) -> list[float]:
    """A saturating val_accuracy curve over BUDGET epochs, 0.3 -> ``top`` (time constant 3 epochs)."""
    rng = np.random.default_rng(seed)
    e = np.arange(1, BUDGET + 1)
    return [float(v) for v in top - (top - 0.3) * np.exp(-(e - 1) / 3.0) + rng.normal(0, 0.003, e.size)]


def _make_study(storage: str, name: str):
    """Three trials run to the budget, then a hopeless one that CurvePruner stops with a reason."""
    import optuna

    from pipelines.curves.pruner import CurvePruner

    study = optuna.create_study(
        direction="maximize", pruner=CurvePruner(BUDGET, num_classes=10), storage=storage, study_name=name
    )
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for i, top in enumerate((0.86, 0.88, 0.90, 0.75)):
        trial = study.ask({"learning_rate": lr})
        values = _curve(top, seed=100 + i)
        for epoch, value in enumerate(values, start=1):
            trial.report(value, step=epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, max(values))
    return study


def _wait_for_study(url: str, name: str, proc: subprocess.Popen, timeout_s: float = 120) -> int:
    """Wait until the dashboard we started lists the study ``name``; return its study id.

    The study name is this test's own (a uuid), so a different server on the port cannot pass.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"curvewatch tune-ui exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/api/studies", timeout=5) as resp:
                studies = json.load(resp)["study_summaries"]
            for s in studies:
                if s["study_name"] == name:
                    return int(s["study_id"])
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"optuna-dashboard at {url} did not list study {name!r} in {timeout_s} s")


def test_tune_ui_renders_the_study_and_its_pruned_trial_reason(
    params_file, tmp_path, monkeypatch, page, screenshot_dir
):
    from pipelines.config import load_params
    from pipelines.steps import optuna_storage_url

    monkeypatch.delenv("CURVEWATCH_OPTUNA_STORAGE", raising=False)
    params = params_file()
    storage = optuna_storage_url(load_params(params))
    assert storage == f"sqlite:///{(tmp_path / '.curvewatch' / 'tune' / 'optuna.db').resolve()}"
    name = f"dashboard-{uuid.uuid4().hex[:8]}"
    study = _make_study(storage, name)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]
    reason = study.trials[3].user_attrs["pruned_because"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = curvewatch("tune-ui", "--params", str(params), "--port", str(port), cwd=tmp_path)
    try:
        study_id = _wait_for_study(url, name, proc)

        page.goto(f"{url}/dashboard", wait_until="domcontentloaded")
        page.get_by_text(name).first.wait_for(state="visible", timeout=60_000)

        # The study page: history, intermediate values (one line per trial) and the best trial.
        page.goto(f"{url}/dashboard/studies/{study_id}", wait_until="domcontentloaded")
        page.get_by_text(f"{name} (id={study_id})").first.wait_for(state="visible", timeout=60_000)
        page.get_by_text("Intermediate values").first.wait_for(state="visible", timeout=30_000)
        for number in range(4):
            page.get_by_text(f"trial #{number}").first.wait_for(state="visible", timeout=30_000)
        page.get_by_text("Best Trial (number=2)").first.wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(screenshot_dir / "optuna-dashboard-study.png"))

        # The trial list, opened on the pruned trial: its state and CurvePruner's reason.
        page.goto(f"{url}/dashboard/studies/{study_id}/trials?numbers=3", wait_until="domcontentloaded")
        page.get_by_text("Trial 3 (trial_id=", exact=False).first.wait_for(state="visible", timeout=60_000)
        body = page.inner_text("body")
        assert body.count("Complete") >= 3 and "Pruned" in body
        assert reason.startswith("stopped at epoch")
        page.get_by_text("pruned_because").first.wait_for(state="visible", timeout=30_000)
        page.get_by_text(reason).first.wait_for(state="visible", timeout=30_000)
        page.screenshot(path=str(screenshot_dir / "optuna-dashboard-pruned-trial.png"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        proc.stdout.close()
