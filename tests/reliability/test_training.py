"""Reliability rows of the training stage: one MLflow run per training whatever happens to the process.

The slow tests run the real ``curvewatch train`` in a child process and stop it with real signals
(``kill -9``, SIGTERM, SIGINT); the others call the stage in this process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import steps, tracking
from tests.reliability._support import curvewatch, make_image_folder, prepared

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _history(mc, run_id: str) -> dict[str, dict[int, float]]:
    """metric -> {step: value} as MLflow holds it (the latest value where a step was logged twice)."""
    out: dict[str, dict[int, float]] = {}
    for key in METRICS:
        for m in sorted(mc.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            out.setdefault(key, {})[m.step] = m.value
    return out


def _state(params) -> dict | None:
    path = params.paths.backup_dir / "curvewatch_state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _wait_for_epochs(proc: subprocess.Popen, params, n: int, timeout: float = 240.0) -> dict:
    """Poll the backup state until ``n`` epochs are finished; fail with the child's output if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(params)
        if state and len(state["epochs"]) >= n:
            return state
        if proc.poll() is not None:
            pytest.fail(f"training exited early ({proc.returncode}):\n{proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail(f"no {n} finished epoch(s) within {timeout} s")


@pytest.fixture
def slow_project(folder_project, tmp_path):
    """A folder of 900 16x16 images trained with batch size 2: about a second per epoch here, so a
    signal can land inside an epoch."""
    folder = make_image_folder(tmp_path / "big-images", per_class=300, size=16, seed=1)
    params = folder_project(
        {
            "fetch": {"image_folder": str(folder), "image_size": [16, 16]},
            "train": {"epochs": 3, "batch_size": 2, "early_stopping_patience": 10},
        }
    )
    return prepared(params)


def _train_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--params", str(tmp_path / "params.yaml"), *extra]


def _rerun(tmp_path: Path, *extra: str) -> None:
    """Run ``curvewatch train`` again, in a new process, to the end."""
    rerun = subprocess.run(
        [sys.executable, "-c", "from pipelines.cli import app; app()", *_train_cmd(tmp_path, *extra)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "delay_s",
    [0.0, 0.5],
    ids=["right-after-the-backup", "mid-epoch"],
)
def test_kill_9_loses_at_most_one_epoch_and_no_metric(slow_project, tmp_path, capsys, delay_s):
    """kill -9 as soon as epoch 1's backup is on disk or half a second into epoch 2.

    Whether MLflow already holds epoch 1 when the kill lands is a race (the printed line says which
    happened): the run must resume from the backup either way, with no finished epoch trained again
    and no metric lost or logged twice."""
    params = slow_project
    mc = tracking.client()
    proc = curvewatch(*_train_cmd(tmp_path), cwd=tmp_path)
    state = _wait_for_epochs(proc, params, 1)
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    run_id = state["run_id"]
    before = _history(mc, run_id)
    kept = len(_state(params)["epochs"])  # finished epochs in the backup after the kill
    logged = max(before.get("val_loss", {0: 0}))  # finished epochs MLflow holds after the kill
    assert mc.get_run(run_id).info.status == "RUNNING"  # what kill -9 leaves behind

    _rerun(tmp_path)
    info = json.loads(params.paths.run_file.read_text())
    after = _history(mc, info["run_id"])
    run = mc.get_run(info["run_id"])

    assert info["run_id"] == run_id  # the same MLflow run, resumed
    assert run.info.status == "FINISHED"
    assert run.data.tags["curvewatch.resumed_from_epoch"] == str(kept)
    assert all(sorted(after[k]) == [1, 2, 3] for k in METRICS)  # every epoch, every metric
    for key, values in before.items():  # what was logged before the kill is still there
        for step, value in values.items():
            if step <= kept:
                assert after[key][step] == pytest.approx(value)
    redone = max(0, logged - kept)  # finished epochs trained again after the kill
    assert redone == 0
    running = tracking.search_training_runs(mc, [run.info.experiment_id], filter_string="status = 'RUNNING'")
    assert not running
    with capsys.disabled():
        print(
            f"\nkill -9 {delay_s:.1f} s after epoch 1's backup: MLflow held {logged} epoch(s), the backup "
            f"{kept}; resumed at epoch {kept + 1} in the same run ({kept - logged} epoch(s) logged from "
            f"the backup), finished epochs lost {redone}, epoch in progress lost 1; metrics lost 0 of "
            f"{3 * len(METRICS)}; run {run_id} FINISHED"
        )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_keeps_the_backup_marks_killed_and_resumes(slow_project, tmp_path, capsys, signum):
    params = slow_project
    mc = tracking.client()
    proc = curvewatch(*_train_cmd(tmp_path), cwd=tmp_path)
    state = _wait_for_epochs(proc, params, 1)
    sent = time.monotonic()
    os.kill(proc.pid, signum)
    out, _ = proc.communicate(timeout=120)
    exit_s = time.monotonic() - sent
    run = mc.get_run(state["run_id"])
    kept = len(_state(params)["epochs"])

    assert proc.returncode == 128 + signum, out
    # The epoch in progress is abandoned at the next batch, not finished: the backup holds the
    # epochs finished when the signal came (its exit time is printed, not asserted).
    assert kept == len(state["epochs"]), (kept, len(state["epochs"]))
    assert signal.Signals(signum).name in out
    assert run.info.status == "KILLED"
    assert "rerun the same command to resume" in run.data.tags["curvewatch.failure_reason"]
    assert kept >= 1 and (params.paths.backup_dir / "latest.weights.h5").is_file()

    _rerun(tmp_path)
    info = json.loads(params.paths.run_file.read_text())
    run = mc.get_run(info["run_id"])
    assert info["run_id"] == state["run_id"] and run.info.status == "FINISHED"
    assert "curvewatch.failure_reason" not in run.data.tags
    assert all(sorted(_history(mc, info["run_id"])[k]) == [1, 2, 3] for k in METRICS)
    with capsys.disabled():
        print(
            f"\n{signal.Signals(signum).name} after {kept} finished epoch(s): exit {proc.returncode} "
            f"in {exit_s:.2f} s, run KILLED, backup kept; rerun resumed run {info['run_id']} to FINISHED"
        )


@pytest.mark.slow
def test_run_left_running_by_kill_9_is_failed_with_a_reason_next_start(slow_project, tmp_path):
    params = slow_project
    mc = tracking.client()
    proc = curvewatch(*_train_cmd(tmp_path), cwd=tmp_path)
    state = _wait_for_epochs(proc, params, 1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    # A changed config cannot resume: the abandoned run must be closed, not left RUNNING.
    _rerun(tmp_path, "-S", "train.epochs=1")
    old = mc.get_run(state["run_id"])
    assert old.info.status == "FAILED"
    assert f"process {proc.pid}" in old.data.tags["curvewatch.failure_reason"]
    assert "ended without closing this run" in old.data.tags["curvewatch.failure_reason"]
    new = mc.get_run(json.loads(params.paths.run_file.read_text())["run_id"])
    assert new.info.run_id != old.info.run_id and new.info.status == "FINISHED"
    assert "training config changed" in new.data.tags["curvewatch.fresh_start_reason"]


# -------------------------------------------------------------------------------- in-process rows
class _StopAfter:
    """A Keras callback raising KeyboardInterrupt after ``epoch`` epochs (built lazily: keras import)."""

    def __new__(cls, epoch: int):
        import keras

        class StopAfter(keras.callbacks.Callback):
            def on_epoch_end(self, e: int, logs: dict | None = None) -> None:
                if e + 1 == epoch:
                    raise KeyboardInterrupt(f"stopped after epoch {epoch}")

        return StopAfter()


@pytest.fixture
def tiny_project(folder_project):
    return prepared(folder_project())


def test_fewer_epochs_than_the_backup_starts_a_fresh_run_with_every_epoch_logged(
    tiny_project, folder_project
):
    params = tiny_project
    mc = tracking.client()
    with pytest.raises(KeyboardInterrupt):
        steps.run_train(params, extra_callbacks=(_StopAfter(2),))
    killed = _state(params)["run_id"]
    assert mc.get_run(killed).info.status == "KILLED"

    fewer = folder_project({"train": {"epochs": 1}})
    outcome = steps.run_train(fewer)
    run = mc.get_run(outcome.run_id)
    assert outcome.run_id != killed
    assert run.info.status == "FINISHED" and outcome.epochs_run == 1
    assert "training config changed" in run.data.tags["curvewatch.fresh_start_reason"]
    assert all(sorted(_history(mc, outcome.run_id)[k]) == [1] for k in METRICS)


def test_backup_from_another_data_split_is_not_resumed(tiny_project, folder_project):
    params = tiny_project
    mc = tracking.client()
    with pytest.raises(KeyboardInterrupt):
        steps.run_train(params, extra_callbacks=(_StopAfter(1),))
    killed = _state(params)["run_id"]

    resplit = folder_project({"prepare": {"val_size": 0.3}})
    steps.run_prepare(resplit)
    steps.run_validate(resplit, log_failure_to_mlflow=False)
    outcome = steps.run_train(resplit)
    run = mc.get_run(outcome.run_id)
    assert outcome.run_id != killed and outcome.epochs_run == 3
    assert "the data changed" in run.data.tags["curvewatch.fresh_start_reason"]
    assert run.info.status == "FINISHED"


def test_second_training_in_a_checkout_names_the_pid_holding_the_lock(tiny_project):
    params = tiny_project
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipelines.train import training_lock\n"
            "with training_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)",
            str(params.paths.backup_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(steps.StageError, match=rf"another training \(pid {holder.pid}\) is running"):
            steps.run_train(params)
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its holder: the next training runs.
    assert steps.run_train(params).epochs_run == 3


def test_compare_never_promotes_an_incomplete_run(tiny_project):
    params = tiny_project
    mc = tracking.client()
    with pytest.raises(KeyboardInterrupt):
        steps.run_train(params, extra_callbacks=(_StopAfter(1),))
    killed_id = _state(params)["run_id"]
    killed = tracking.run_curve(mc, killed_id)
    assert steps.incomplete_reason(killed) == "the run is incomplete (not FINISHED, or stopped by a NaN loss)"

    shutil.rmtree(params.paths.backup_dir)  # not resumed: the next training is a new run
    done = steps.run_train(params)
    assert done.run_id != killed_id
    curve = tracking.run_curve(mc, done.run_id)
    assert steps.incomplete_reason(curve) is None
    gap = type(curve)(run=curve.run, metrics=curve.metrics, epochs=curve.epochs + 1, complete=True)
    assert "per-epoch metrics are missing" in steps.incomplete_reason(gap)
    # The compare stage on the killed run (the finished run's model scored the test set): with no
    # champion yet, a complete run would be registered and promoted; the incomplete one is neither.
    steps.run_evaluate(params)
    info = json.loads(params.paths.run_file.read_text())
    params.paths.run_file.write_text(json.dumps({**info, "run_id": killed_id}))
    # ... and the evaluation marked as the killed run's (compare refuses another run's evaluation).
    (params.paths.evaluation_dir / steps.EVALUATED_RUN).write_text(json.dumps({"run_id": killed_id}))
    outcome = steps.run_compare(params)
    assert not outcome.promoted
    assert tracking.get_champion(mc, params.tracking.registered_model) is None
    assert not mc.search_model_versions(f"name='{params.tracking.registered_model}'")


def test_a_training_that_fails_after_saving_its_model_leaves_no_run_json_naming_another_run(
    tiny_project, monkeypatch
):
    # The new model.keras was written before the MLflow logging and run.json after it: a failure
    # in between left the new model under the previous run's run.json, and a hand-run evaluate
    # or compare scored it into that run.
    params = tiny_project
    steps.run_train(params)
    assert params.paths.run_file.is_file()

    def upload_failed(*args, **kwargs):
        raise OSError("artifact store full")

    monkeypatch.setattr(steps, "_log_model", upload_failed)
    with pytest.raises(OSError, match="artifact store full"):
        steps.run_train(params)
    assert params.paths.model_file.is_file() and not params.paths.run_file.exists()
    with pytest.raises(steps.StageError, match="run.json"):
        steps.run_evaluate(params)


def test_a_resumed_run_logs_the_inputs_its_killed_process_had_not(tiny_project, monkeypatch):
    # Inputs are logged beside training; a process killed before they were all written left a run
    # that its resume never completed (no dataset, no validation results), because a resumed run
    # skipped them.
    params = tiny_project
    mc = tracking.client()
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):

        def died(*args, **kwargs):
            raise ConnectionError("the process died here")

        patch.setattr(tracking, "log_dataset", died)
        steps.run_train(params, extra_callbacks=(_StopAfter(1),))
    run_id = _state(params)["run_id"]
    run = mc.get_run(run_id)
    assert steps.INPUTS_LOGGED_TAG not in run.data.tags and not run.inputs.dataset_inputs
    outcome = steps.run_train(params)  # resumes the same run
    assert outcome.run_id == run_id
    run = mc.get_run(run_id)
    assert run.data.tags[steps.INPUTS_LOGGED_TAG] == "true" and run.inputs.dataset_inputs
    assert any(key.startswith("validation.") for key in run.data.metrics)


@pytest.mark.parametrize("failure", ["model upload", "last epochs unsent", "killed before the end"])
def test_a_training_that_fails_after_its_fit_is_completed_by_a_rerun_without_training_again(
    tiny_project, monkeypatch, failure
):
    # Keras' BackupAndRestore deletes its checkpoint when fit ends: a failure after it (the model
    # upload; the epoch logger's wait for an unreachable server at the end of fit; a kill before
    # the run is ended) made the rerun, e.g. the retrain flow's task retry, train again in a new
    # run. (The model upload's `with mlflow.start_run` had also ended the run FINISHED: a kill
    # after it left a run that no rerun resumes.)
    import numpy as np

    import pipelines.train

    params = tiny_project
    mc = tracking.client()

    def upload_failed(*args, **kwargs):
        raise OSError("artifact store full")

    def unsent(self, timeout_s=600.0):
        raise tracking.TrackingUnavailable("http://127.0.0.1:5000 run r: 4 values unsent (test)")

    write_json, status_then = steps.atomic_write_json, []

    def killed_at_the_last_write(path, payload):
        if path == params.paths.run_file:
            status_then.append(mc.get_run(payload["run_id"]).info.status)
            raise KeyboardInterrupt  # as a kill here: the run must not be FINISHED yet
        return write_json(path, payload)

    real_train, returned = pipelines.train.train, []

    def recorded_train(*args, **kwargs):
        result = real_train(*args, **kwargs)
        returned.append([np.array(w) for w in result.model.get_weights()])
        return result

    failures = (OSError, tracking.TrackingUnavailable, KeyboardInterrupt)
    with monkeypatch.context() as patch, pytest.raises(failures):
        patch.setattr(pipelines.train, "train", recorded_train)
        if failure == "killed before the end":
            patch.setattr(steps, "atomic_write_json", killed_at_the_last_write)
        elif failure == "model upload":
            patch.setattr(steps, "_log_model", upload_failed)
        else:
            patch.setattr(tracking.MetricBuffer, "close", unsent)
        steps.run_train(params)
    failed = _state(params)["run_id"]
    assert mc.get_run(failed).info.status == ("KILLED" if failure == "killed before the end" else "FAILED")
    assert status_then in ([], ["RUNNING"])
    kept = params.paths.backup_dir / "finished.keras"  # the trained model, best weights restored
    assert kept.is_file() and len(returned) == 1

    def trained_again(*args, **kwargs):
        raise AssertionError("trained again")

    with monkeypatch.context() as patch:
        patch.setattr(pipelines.train, "train", trained_again)
        outcome = steps.run_train(params)
    assert outcome.run_id == failed
    run = mc.get_run(failed)
    assert run.info.status == "FINISHED" and steps.FAILURE_REASON_TAG not in run.data.tags
    assert run.data.tags["curvewatch.completed_from_backup"] == "true"
    # The model train() returned (the weights EarlyStopping restored, not the last epoch's), not a
    # reload of finished.keras compared with itself.
    for got, want in zip(outcome.model.get_weights(), returned[0], strict=True):
        np.testing.assert_array_equal(got, want)
    assert outcome.model.optimizer is not None and outcome.model.compiled  # as train() returns it
    assert outcome.epochs_run == len(_history(mc, failed)["val_loss"]) and outcome.train_seconds > 0
    assert json.loads(params.paths.run_file.read_text())["run_id"] == failed
    assert _state(params) is None and not kept.exists()


@pytest.mark.parametrize("kept", ["config changed", "model unreadable"])
def test_a_finished_training_that_cannot_be_completed_starts_a_fresh_run(
    tiny_project, folder_project, monkeypatch, kept
):
    # A finished training is loaded only when its run will be completed: after a config change the
    # rerun starts a fresh run without loading the kept model (it used to load it first, then drop
    # it); a kept model that cannot be read is discarded and the run starts afresh.
    import pipelines.train

    params = tiny_project
    mc = tracking.client()

    def upload_failed(*args, **kwargs):
        raise OSError("artifact store full")

    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr(steps, "_log_model", upload_failed)
        steps.run_train(params)
    failed = _state(params)["run_id"]
    loaded = []
    finished_result = pipelines.train.finished_result

    def counted(*args, **kwargs):
        loaded.append(args)
        return finished_result(*args, **kwargs)

    if kept == "config changed":
        params = folder_project({"train": {"epochs": 2}})
    else:
        (params.paths.backup_dir / "finished.keras").write_bytes(b"not a model")
    with monkeypatch.context() as patch:
        patch.setattr(pipelines.train, "finished_result", counted)
        outcome = steps.run_train(params)
    assert outcome.run_id != failed and mc.get_run(outcome.run_id).info.status == "FINISHED"
    assert len(loaded) == (0 if kept == "config changed" else 1)
    assert mc.get_run(failed).info.status == "FAILED"
    assert _state(params) is None and not (params.paths.backup_dir / "finished.keras").exists()
