"""Stage entry points that need no Keras: fetch -> prepare -> baseline on a tiny image folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipelines import steps
from pipelines.config import load_params


@pytest.fixture
def tiny_params(params_file, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "images"
    for label in range(3):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for i, img in enumerate(digits.images[digits.target == label][:60]):
            Image.fromarray((img * 15.9375).astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
    path = params_file(
        {
            "base": {"dataset": "folder"},
            "fetch": {"image_folder": str(root), "image_size": [8, 8]},
            "prepare": {"val_size": 0.25, "test_size": 0.25},
        }
    )
    params = load_params(path)
    steps.run_fetch(params)
    steps.run_prepare(params)
    return params


def test_baseline_is_computed_once_per_data_version(tiny_params, monkeypatch):
    params = tiny_params
    first = steps.run_baseline(params)
    assert 0.8 < first <= 1.0  # digits 0/1/2 are easy for a logistic regression
    stored = json.loads(params.paths.baseline_metrics.read_text())["baseline"]
    assert stored["val_accuracy"] == first and stored["data_version"].endswith(".dir")

    calls = []
    import pipelines.baseline

    monkeypatch.setattr(pipelines.baseline, "baseline_accuracy", lambda *a, **k: calls.append(1) or 0.5)
    assert steps.run_baseline(params) == first and not calls  # unchanged data: reused

    # New data version (a changed prepared split): recomputed.
    manifest = params.paths.prepared_dir / "classes.json"
    manifest.write_text(manifest.read_text() + "\n")
    assert steps.run_baseline(params) == 0.5 and calls == [1]


def test_stages_name_the_missing_input(tiny_params):
    params = tiny_params
    with pytest.raises(steps.StageError, match="validation.json: missing; run the validate stage first"):
        steps.run_train(params)
    # A validation that failed (curvewatch validate exited 1) stops training and tuning as well.
    params.paths.validation_metrics.parent.mkdir(parents=True, exist_ok=True)
    params.paths.validation_metrics.write_text(json.dumps({"validation": {"success": 0.0}}))
    for stage in (steps.run_train, steps.start_tune):
        with pytest.raises(steps.StageError, match=r"validation.json: the last data validation did not pass"):
            stage(params)
    with pytest.raises(steps.StageError, match="run.json: missing; run the train stage first"):
        steps.run_evaluate(params)


def test_start_tune_closes_a_dead_tuning_run_and_creates_the_study(tiny_params, mlflow_uri, monkeypatch):
    # A `make tune` killed with its flow (SIGKILL, OOM, a reboot) left its parent run and the trial
    # in flight RUNNING for good: only training runs were ever closed.
    import os
    import socket
    import subprocess
    import sys

    import optuna

    from pipelines import tracking

    params = tiny_params
    steps.run_validate(params, log_failure_to_mlflow=False)
    monkeypatch.delenv("CURVEWATCH_OPTUNA_STORAGE", raising=False)
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, params.tracking.experiment)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()

    def tuning_run(pid: str) -> tuple[str, str]:
        tags = {tracking.RUN_KIND_TAG: "tune", steps.PID_TAG: pid, steps.HOST_TAG: host}
        parent = mc.create_run(exp, tags=tags).info.run_id
        child = mc.create_run(exp, tags={"mlflow.parentRunId": parent, tracking.RUN_KIND_TAG: "tune_trial"})
        return parent, child.info.run_id

    dead_parent, dead_child = tuning_run(dead.stdout.strip())
    live_parent, live_child = tuning_run(str(os.getpid()))  # a tuning still running here
    study = steps.start_tune(params)

    for run_id in (dead_parent, dead_child):
        run = mc.get_run(run_id)
        assert run.info.status == "FAILED"
        assert f"process {dead.stdout.strip()}" in run.data.tags[steps.FAILURE_REASON_TAG]
    assert [mc.get_run(r).info.status for r in (live_parent, live_child)] == ["RUNNING", "RUNNING"]
    new = mc.get_run(study.parent_run_id)
    assert new.info.status == "RUNNING" and new.data.tags[steps.PID_TAG] == str(os.getpid())
    # The study exists before any worker starts: workers creating Optuna's tables at once collide.
    assert optuna.load_study(study_name=study.study_name, storage=study.storage).trials == []


def test_the_series_counts_only_retrains_since_the_champion():
    # R1 0.880, R2 0.885, then R3 0.900 promoted, then R4 0.899: the series stall ("the last 3
    # retrains did not beat the champion") counted R1 and R2, which ran before R3 existed, and fired
    # one retrain after an improvement.
    from types import SimpleNamespace

    def run(start: int, accuracy: float | None) -> SimpleNamespace:
        metrics = {} if accuracy is None else {"test_accuracy": accuracy}
        return SimpleNamespace(info=SimpleNamespace(start_time=start), data=SimpleNamespace(metrics=metrics))

    newest_first = [run(4000, 0.899), run(3500, None), run(2000, 0.885), run(1000, 0.880)]
    assert steps.retrains_since(newest_first, champion_start_ms=3000) == [None, 0.899]
    assert steps.retrains_since(newest_first, champion_start_ms=0) == [0.880, 0.885, None, 0.899]


def test_training_refuses_data_prepared_again_after_its_validation(tiny_params, params_file):
    # The validation gate only read validation.success: after `curvewatch prepare -S
    # prepare.val_size=...` (or a new image folder), `curvewatch train` trained on data no
    # validation had judged, and logged the old data's validation metrics to its run.
    from pipelines.config import load_params

    params = tiny_params
    steps.run_validate(params, log_failure_to_mlflow=False)
    assert steps._passed_validation(params)[0]["validation"]["success"] == 1
    resplit = load_params(
        params_file(
            {
                "base": {"dataset": "folder"},
                "fetch": {"image_folder": str(params.fetch.image_folder), "image_size": [8, 8]},
                "prepare": {"val_size": 0.4, "test_size": 0.25},
            }
        )
    )
    steps.run_prepare(resplit)
    for stage in (steps.run_train, steps.start_tune):
        with pytest.raises(
            steps.StageError, match=r"validated_data.json: the last validation judged prepared data"
        ):
            stage(resplit)
    steps.run_validate(resplit, log_failure_to_mlflow=False)
    assert steps._passed_validation(resplit)[0]["validation"]["success"] == 1
