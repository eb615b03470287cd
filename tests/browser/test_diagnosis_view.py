"""The MLflow UI as a curvewatch user sees it, in a real browser (Debian chromium via Playwright).

A real ``mlflow server`` (SQLite store and artifact proxy under tmp_path, a free port of 127.0.0.1)
gets three training runs made without training: their curves and test predictions are logged, then
the real compare stage (``steps.run_compare``: diagnosis, regression gate, registry policy, report)
runs on each. The runs table opened by ``tracking.run_table_url`` must show each run's verdict,
plateau onset and gate decision as loaded, and the report linked from the run's description must
render. A screenshot of each page is kept under tmp_path.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import steps, tracking
from pipelines.config import Params
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS
from tests.mlflow_process import MlflowServer

pytestmark = pytest.mark.browser

EXPERIMENT = "curvewatch-ui-test"


@pytest.fixture(scope="module")
def mlflow_ui(tmp_path_factory):
    """A ``mlflow server`` of this module's own (tests/mlflow_process.py), provably ours."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-ui"))
    try:
        yield server.start(), server.root
    finally:
        server.stop()


CURVES = Path(__file__).resolve().parents[1] / "fixtures" / "curves"  # real Keras CSVLogger curves


def _seed_run(url: str, root: Path, name: str, lr: float, curve_csv: str, correct: np.ndarray) -> str:
    """Log one finished training run's curves (a real CSVLogger file) and test predictions, then
    run the compare stage on it."""
    history = pd.read_csv(CURVES / curve_csv)
    work = root / name
    params = Params.model_validate(
        {
            "paths": {
                key: str(work / key)
                for key in ("raw_dir", "prepared_dir", "validation_dir", "evaluation_dir")
                + ("compare_dir", "backup_dir", "tune_dir")
            }
            | {
                key: str(work / sub / name)
                for key, sub, name in (
                    ("model_file", "models", "model.keras"),
                    ("run_file", "models", "run.json"),
                    ("validation_metrics", "metrics", "validation.json"),
                    ("baseline_metrics", "metrics", "baseline.json"),
                    ("train_metrics", "metrics", "train.json"),
                    ("evaluate_metrics", "metrics", "evaluate.json"),
                    ("compare_metrics", "metrics", "compare.json"),
                    ("history_plot", "plots", "history.csv"),
                    ("confusion_plot", "plots", "confusion.csv"),
                )
            },
            "train": {"epochs": len(history), "learning_rate": lr},
            "tracking": {"experiment": EXPERIMENT, "registered_model": "ui-test-classifier"},
        }
    )
    from mlflow.entities import Metric

    mc = tracking.client(url)
    exp = tracking.ensure_experiment(mc, EXPERIMENT)
    run_name = tracking.run_name("small_cnn", lr, "ab12cd34ef.dir", datetime.now(UTC))
    rid = mc.create_run(exp, run_name=run_name, tags={tracking.RUN_KIND_TAG: "train"}).info.run_id
    tracking.log_params(mc, rid, params)
    mc.log_param(rid, "data.num_classes", 10)
    metrics = [
        Metric(key, float(row[key]), 0, int(row["epoch"]) + 1)  # CSVLogger epochs are 0-based
        for _, row in history.iterrows()
        for key in tracking.EPOCH_METRICS
    ]
    mc.log_batch(rid, metrics=metrics)
    # The rest of what the validate, train and evaluate stages record on a run (steps.run_train,
    # steps.run_evaluate): data-validation statistics, the training summary, the test scores.
    tracking.log_metrics(mc, rid, {"validation.label_kl": 0.001, "validation.rows": 7000.0})
    tracking.log_metrics(mc, rid, {"validation.success": 1.0, "validation.leakage_count": 0.0})
    tracking.log_summary(
        mc, rid, {"train.epochs_run": len(history), "train.best_val_accuracy": history["val_accuracy"].max()}
    )
    tracking.log_metrics(mc, rid, {"test_accuracy": float(correct.mean()), "test_loss": 0.3})
    mc.log_text(rid, "artifact_path: model\nflavors: {}\n", "model/MLmodel")
    tracking.set_tags(mc, rid, {"curvewatch.completed": "true"})
    mc.set_terminated(rid)
    params.paths.run_file.parent.mkdir(parents=True)
    params.paths.run_file.write_text(
        json.dumps(
            {
                "run_id": rid,
                "experiment_id": exp,
                "model_version": None,
                "model_uri": f"runs:/{rid}/model",
                "data_version": "ab12cd34ef.dir",
            }
        )
    )
    params.paths.evaluation_dir.mkdir(parents=True)
    preds = pd.DataFrame({"id": np.arange(correct.size), "correct": correct})
    preds.to_parquet(params.paths.evaluation_dir / "predictions.parquet")
    mc.log_artifact(rid, str(params.paths.evaluation_dir / "predictions.parquet"), "evaluation")
    (params.paths.evaluation_dir / steps.EVALUATED_RUN).write_text(json.dumps({"run_id": rid}))
    steps.run_compare(params)
    return rid


@pytest.fixture(scope="module")
def seeded(mlflow_ui, tmp_path_factory):
    """healthy (first champion), stalled (a tie with the champion: kept) and regressed runs, their
    curves taken from the labelled fixtures in tests/fixtures/curves."""
    url, _ = mlflow_ui
    root = tmp_path_factory.mktemp("runs")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        n = 4000
        champion = np.arange(n) < int(0.91 * n)
        rng = np.random.default_rng(0)
        ids = {
            "healthy": _seed_run(url, root, "healthy", 1e-3, "healthy-digits-cnn-s0.csv", champion),
            # Stalls on a plateau; as accurate on the test set as the champion: a tie, kept.
            "stalled": _seed_run(
                url, root, "stalled", 1e-1, "underfit-tiny-mlp-digits-s2.csv", rng.permutation(champion)
            ),
            # Learns fine but is 6 points worse on the same test images: a regression.
            "regressed": _seed_run(
                url, root, "regressed", 3e-3, "healthy-digits-mlp-s0.csv", np.arange(n) < int(0.85 * n)
            ),
        }
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    mc = tracking.client(url)
    return (
        url,
        mc.get_experiment_by_name(EXPERIMENT).experiment_id,
        {k: mc.get_run(v) for k, v in ids.items()},
    )


@pytest.fixture(scope="module")
def page():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make test installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright gives the browser a fresh temporary profile and never downloads one here.
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
        )
        context = browser.new_context(viewport={"width": 1920, "height": 1000})
        context.set_default_timeout(90_000)  # the UI's first load compiles ~27 MB of JS on 2 cores
        yield context.new_page()
        context.close()
        browser.close()


def _cells(page, run_id: str) -> list[str]:
    """Texts of a run's cells; ag-grid splits a row between the pinned run-name column and the rest."""
    rows = page.locator(f'[role=row][row-id="{run_id}"]')
    return [c.strip() for c in rows.locator("[role=gridcell]").all_inner_texts()]


def test_runs_table_shows_verdict_onset_and_gate_as_loaded(seeded, page, tmp_path):
    url, exp_id, runs = seeded
    tags = {k: r.data.tags for k, r in runs.items()}
    assert tags["healthy"]["curvewatch.gate"] == "first_champion"
    assert tags["stalled"]["curvewatch.verdict"] == "plateau"
    assert tags["stalled"]["curvewatch.gate"] == "keep_champion"
    assert tags["regressed"]["curvewatch.gate"] == "regression"

    page.goto(tracking.run_table_url(url, exp_id))
    for run in runs.values():
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()
    page.screenshot(path=str(tmp_path / "runs_table.png"))
    # The shared "curvewatch diagnosis" view is applied and the page is in model-training mode.
    assert page.get_by_text(tracking.DIAGNOSIS_VIEW_NAME).first.is_visible()
    for header in ("curvewatch.verdict", "curvewatch.plateau_onset_epoch", "curvewatch.gate"):
        assert page.get_by_role("columnheader", name=header).first.is_visible(), header
    for key, run in runs.items():
        cells = _cells(page, run.info.run_id)
        t = run.data.tags
        assert t["curvewatch.verdict"] in cells, (key, cells)
        assert t["curvewatch.gate"] in cells, (key, cells)
        onset = t.get("curvewatch.plateau_onset_epoch")
        if key == "stalled":  # a plateau has its onset tagged, and the table shows it
            assert onset, t
        if onset:
            assert onset in cells, (key, cells)
    # Every run name is distinct and says model, learning rate, data version and time.
    names = [r.info.run_name for r in runs.values()]
    assert len(set(names)) == 3 and all(n.startswith("small_cnn lr=") and " d=ab12cd " in n for n in names)


def test_run_description_links_to_a_report_that_renders(seeded, page, tmp_path):
    url, exp_id, runs = seeded
    stalled = runs["stalled"]
    page.goto(f"{url}/#/experiments/{exp_id}/runs/{stalled.info.run_id}?workflowType=machine_learning")
    page.get_by_text("curvewatch: plateau").first.wait_for()
    page.screenshot(path=str(tmp_path / "run_overview.png"))
    assert page.get_by_text("Gate: keep_champion.").first.is_visible()
    more = page.get_by_text("Show more")
    if more.count():
        more.first.click()
    href = page.get_by_role("link", name="Full curvewatch report").first.get_attribute("href")
    assert f"/runs/{stalled.info.run_id}/artifactPath/curvewatch/report.html?" in href, href
    page.goto(f"{url}/{href.lstrip('/')}" if href.startswith("#") else href)
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Findings").first.wait_for()
    assert frame.get_by_text("plateau").first.is_visible()
    # The report states the decision taken under the promotion rule, like the run table.
    assert frame.get_by_text("gate: keep_champion (not promoted)").first.is_visible()
    assert page.get_by_role("link", name="Runs").first.is_visible()  # still in model-training mode
    page.screenshot(path=str(tmp_path / "report.png"))


def test_model_metrics_tab_opens_on_the_headline_metrics(seeded, page, tmp_path):
    """The run page's "Model metrics" tab, as a first visit shows it: the training curves and
    the test scores first, in MLflow's own order (by name); no section of other numbers above."""
    url, exp_id, runs = seeded
    run = runs["stalled"]  # run_compare wrote its diagnosis, gate and registry numbers
    keys = set(run.data.metrics)
    headline = sorted(keys & set(tracking.HEADLINE_METRICS))
    assert headline == sorted(tracking.HEADLINE_METRICS)
    assert all(k.startswith("validation.") for k in keys - set(headline)), sorted(keys)
    assert {"curvewatch.diagnosis.noise", "curvewatch.gate.p_value"} <= set(run.data.tags)

    page.goto(
        f"{url}/#/experiments/{exp_id}/runs/{run.info.run_id}/model-metrics?workflowType=machine_learning"
    )
    cards = page.locator('[data-testid="experiment-view-compare-runs-card"]')
    cards.locator("h4").first.wait_for()
    page.screenshot(path=str(tmp_path / "model_metrics.png"))
    sections = page.locator('[data-testid="experiment-view-compare-runs-section-header"]').all_inner_texts()
    assert sections[0].split("\n")[:2] == ["Model metrics", f"({len(keys)})"], sections
    shown = cards.locator("h4").evaluate_all("els => els.map(e => e.getAttribute('title'))")
    expected = sorted(keys)  # MLflow's order within a section: by name
    assert expected[: len(headline)] == headline, expected
    assert len(shown) >= 6, shown  # the charts a 1920x1000 window renders first
    assert shown == expected[: len(shown)], shown
