"""A retrain with nothing changed skips training; a user adding images gives a new data version that
is validated, trained on, diagnosed and gated. Each run is recorded by DVC (``dvc status`` clean)."""

from __future__ import annotations

import csv
import subprocess
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from flows.retrain import run_retrain
from pipelines import schedule, steps, tracking, versioning
from tests.conftest import dvc
from tests.flows.conftest import DVC_CLEAN, dvc_status

pytestmark = pytest.mark.flow


def _add_images(folder, n: int = 12) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label, name in enumerate(["zero", "one", "two"]):
        for i, img in enumerate(digits.images[digits.target == label][90 : 90 + n]):
            Image.fromarray((img * 15.9375).astype(np.uint8), mode="L").save(
                folder / name / f"new{i:03d}.png"
            )


def test_unchanged_run_skips_and_added_images_retrain(dvc_folder_project, digits_folder):
    project = dvc_folder_project()
    start = time.perf_counter()
    first = run_retrain()
    full_s = time.perf_counter() - start
    assert first.skipped is None and first.promoted
    assert dvc_status(project.root) == DVC_CLEAN
    mc = tracking.client()
    run = mc.get_run(first.run_id)
    assert run.data.tags[tracking.LOCK_TAG] == versioning.lock_md5(project) == first.dvc_lock_md5
    assert run.data.tags[schedule.PARAMS_TAG] and run.data.tags[schedule.DATA_TAG].endswith(".dir")
    assert "dvc/dvc.lock" in {a.path for a in mc.list_artifacts(first.run_id, "dvc")}
    assert (project.root / ".dvc-storage").is_dir(), "dvc push did not fill the default local remote"
    lock = (project.root / "dvc.lock").read_text()
    assert run.data.tags[schedule.DATA_TAG] in lock  # dvc.lock records the data the run used
    # `dvc exp show` sees the run's numbers (metrics are tracked, cache: false, not git-ignored)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-C", str(project.root)]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "the run"], check=True)  # as in a clone: a commit to show
    shown = dvc(project.root, "exp", "show", "--csv", "--no-pager")
    rows = {r["rev"]: r for r in csv.DictReader(shown.splitlines())}
    assert "workspace" in rows, shown
    assert float(rows["workspace"]["evaluate.test_accuracy"]) == pytest.approx(first.test_accuracy)

    def mlflow_runs() -> int:
        experiments = [e.experiment_id for e in mc.search_experiments()]
        return len(mc.search_runs(experiments, max_results=1000))

    runs_before = mlflow_runs()
    start = time.perf_counter()
    second = run_retrain()
    skip_s = time.perf_counter() - start
    assert second.skipped and second.skipped.startswith("skipped training") and first.run_id in second.skipped
    assert second.run_id is None and "\n" not in second.skipped
    assert (project.root / "dvc.lock").read_text() == lock
    # Skipped means no training, evaluation or comparison: no run is written at all. (Its time is
    # printed, not asserted: these machines are shared.)
    assert mlflow_runs() == runs_before
    print(f"full run {full_s:.1f} s, skipped run {skip_s:.1f} s")

    assert dvc_status(project.root) == DVC_CLEAN

    _add_images(digits_folder)
    pending = dvc_status(project.root)  # DVC itself sees the new images: the folder is fetch's dep
    assert pending.startswith("fetch:") and str(digits_folder) in pending, pending
    third = run_retrain()
    assert third.skipped is None and third.run_id not in (None, first.run_id)
    new = mc.get_run(third.run_id)
    assert new.data.tags[schedule.DATA_TAG] != run.data.tags[schedule.DATA_TAG]
    assert int(new.data.params["data.train_examples"]) > int(run.data.params["data.train_examples"])
    assert new.data.tags["curvewatch.gate"] and new.data.tags["curvewatch.verdict"]
    assert new.data.metrics["validation.rows"] > run.data.metrics["validation.rows"]  # validated anew
    assert dvc_status(project.root) == DVC_CLEAN
    assert new.data.tags[schedule.DATA_TAG] in (project.root / "dvc.lock").read_text()


def test_a_run_whose_dvc_commit_failed_is_not_skipped_after(dvc_folder_project, monkeypatch):
    """The gate passed but DVC could not record the run (commit or push failed): the flow run fails,
    the MLflow run's lock tag stays pending, and the next run with the same data and params
    retrains and records, where it used to skip after a run that dvc.lock does not describe. A run
    whose gate fails (``compare.fail_on_regression``) is recorded in dvc.lock: the next one skips."""
    project = dvc_folder_project()
    commit_and_push = versioning.commit_and_push

    def remote_down(project, stages, **kwargs):
        if "train" in stages:
            raise versioning.VersioningError("dvc push: remote unreachable (test)")
        return commit_and_push(project, stages, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(versioning, "commit_and_push", remote_down)
        state = run_retrain(return_state=True)
    assert state.is_failed() and "remote unreachable" in state.message
    mc = tracking.client()
    (failed,) = [
        r
        for e in mc.search_experiments()
        for r in mc.search_runs([e.experiment_id])
        if tracking.GATE_TAG in r.data.tags
    ]
    assert failed.info.status == "FINISHED" and failed.data.tags[tracking.LOCK_TAG] == tracking.LOCK_PENDING

    second = run_retrain()
    assert second.skipped is None and second.run_id != failed.info.run_id
    assert mc.get_run(second.run_id).data.tags[tracking.LOCK_TAG] == versioning.lock_md5(project)
    assert dvc_status(project.root) == DVC_CLEAN
    assert run_retrain().skipped  # recorded now: the third run skips

    # A gate that fails under compare.fail_on_regression is final: the same data and params give the
    # same verdict. The failed run is recorded in dvc.lock as any gated run (`dvc status` clean), so
    # the next run with the same params skips after it instead of retraining the same regression
    # every night.
    params_file = project.root / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    raw["train"]["learning_rate"] = 1e-7
    raw["compare"]["fail_on_regression"] = True
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(steps.GateFailed) as info:
        run_retrain()
    regressed = mc.get_run(info.value.outcome.run_id)
    assert regressed.data.tags[tracking.GATE_TAG] != "promote"
    assert regressed.data.tags[tracking.LOCK_TAG] == versioning.lock_md5(project)
    assert dvc_status(project.root) == DVC_CLEAN
    again = run_retrain()
    assert again.skipped and regressed.info.run_id in again.skipped, again.skipped


def test_a_changed_code_file_retrains_although_data_and_params_are_unchanged(dvc_folder_project):
    """An edited dep of a stage (here the project's pipelines/train.py, a dep of train) shows in
    ``dvc status``: the next run retrains and records, where it used to skip after the last run
    and leave ``dvc status`` reporting train changed."""
    project = dvc_folder_project()
    first = run_retrain()
    assert first.skipped is None and dvc_status(project.root) == DVC_CLEAN
    with (project.root / "pipelines" / "train.py").open("a") as f:
        f.write("\n# a code fix\n")
    assert "\ntrain:\n" in f"\n{dvc_status(project.root)}\n"
    second = run_retrain()
    assert second.skipped is None and second.run_id not in (None, first.run_id)
    assert dvc_status(project.root) == DVC_CLEAN
    third = run_retrain()
    assert third.skipped and second.run_id in third.skipped, third.skipped


def test_a_run_outside_the_dvc_project_is_not_skipped_after(dvc_folder_project):
    """A flow run with ``-S`` overrides trains but is not recorded in dvc.lock: writing the same
    params into params.yaml then runs, records and leaves ``dvc status`` clean, where it skipped
    after the override run and left dvc.lock describing the older model."""
    project = dvc_folder_project()
    outside = run_retrain(overrides=["train.epochs=3"])
    assert outside.skipped is None and outside.dvc_lock_md5 is None
    params_file = project.root / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    raw["train"]["epochs"] = 3
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    inside = run_retrain()
    assert inside.skipped is None and inside.run_id != outside.run_id
    mc = tracking.client()
    assert mc.get_run(outside.run_id).data.tags[tracking.LOCK_TAG] == tracking.LOCK_OUTSIDE
    assert mc.get_run(inside.run_id).data.tags[tracking.LOCK_TAG] == versioning.lock_md5(project)
    assert dvc_status(project.root) == DVC_CLEAN
