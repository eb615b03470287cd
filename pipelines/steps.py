"""Stage entry points: read params and paths, call the pure stage functions, write outputs, track.

Each ``run_*`` function is one stage of ``dvc.yaml`` (called through ``curvewatch <stage>``) and one
task of the Prefect flow ``retrain`` (``flows/retrain.py``); nothing is implemented twice. Stage
logic lives in the stage modules (``fetch``, ``prepare``, ``validate``, ``train``, ``evaluate``,
``curves``); this module only wires files and MLflow around them.

Runs are linked across stages through ``paths.run_file``, written by the train stage: the
evaluate and compare stages log into the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.config import Params
from pipelines.io_utils import atomic_write_json, atomic_write_text
from pipelines.processes import pid_alive

log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage cannot run: an input from an earlier stage is missing or the gate failed."""


class ValidationFailed(StageError):
    """Data validation failed; training must not start. ``str()`` lists the failed expectations."""

    def __init__(self, message: str, result: Any, run_id: str | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.run_id = run_id


class GateFailed(StageError):
    """The challenger is a regression (the gate's ``regression`` decision) and
    ``compare.fail_on_regression`` is set.
    ``outcome`` is the compare stage's :class:`CompareOutcome` (everything was written first)."""

    def __init__(self, message: str, outcome: CompareOutcome | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome


def _read_json(path: Path, stage: str) -> dict[str, Any]:
    if not path.is_file():
        raise StageError(f"{path}: missing; run the {stage} stage first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StageError(f"{path}: not valid JSON ({exc})") from exc


# --------------------------------------------------------------------------------------------- fetch
def run_fetch(params: Params):
    """Fetch the dataset into ``paths.raw_dir`` (see :func:`pipelines.fetch.fetch`)."""
    from pipelines.fetch import fetch

    return fetch(params.fetch, params.base, params.paths.raw_dir)


# ------------------------------------------------------------------------------------------- prepare
def run_prepare(params: Params):
    """Split and describe the raw data into ``paths.prepared_dir`` (see :func:`pipelines.prepare.prepare`)."""
    from pipelines.prepare import prepare

    return prepare(params.prepare, params.base, params.paths.raw_dir, params.paths.prepared_dir)


# ------------------------------------------------------------------------------------------ validate
def run_validate(params: Params, *, log_failure_to_mlflow: bool = True):
    """Validate the prepared data with the suites in ``expectations/``.

    Writes ``paths.validation_metrics`` (DVC metrics), and :data:`VALIDATED_DATA` in
    ``paths.validation_dir``: the DVC content hash of the prepared data it judged, which training
    and tuning check (:func:`_passed_validation`). On failure, records the failed
    validation as an MLflow run (status FAILED, ``curvewatch.run_kind=validation``) so that it is
    visible next to the training runs, then raises.

    Raises:
        ValidationFailed: any expectation or cross-split check failed; the message lists them.
    """
    from pipelines.validate import format_failures, validate

    result = validate(
        params.validate_,
        params.paths.prepared_dir,
        params.paths.validation_dir,
        suites_dir=params.paths.expectations_dir,
    )
    from pipelines import tracking

    atomic_write_json(params.paths.validation_metrics, _nested(result.metrics))
    atomic_write_json(
        params.paths.validation_dir / VALIDATED_DATA,
        {
            "data_version": tracking.dvc_content_hash(params.paths.prepared_dir),
            "success": bool(result.success),
        },
    )
    if not result.success:
        run_id = _log_failed_validation(params, result) if log_failure_to_mlflow else None
        raise ValidationFailed(
            f"data validation failed:\n{format_failures(result)}\nData Docs: {result.data_docs_index}",
            result,
            run_id,
        )
    return result


#: The file in ``paths.validation_dir`` naming the prepared data a validation judged.
VALIDATED_DATA = "validated_data.json"


def _passed_validation(params: Params) -> tuple[dict[str, Any], str]:
    """``paths.validation_metrics`` of a validation that passed, of the prepared data as it is now,
    and that data's DVC content hash (the split version a training records: hashed once here).

    Raises:
        StageError: the file is missing or unreadable (validate not run), or it records a failed
            validation (``validation.success`` 0: ``curvewatch validate`` exited 1, and nothing
            may train on that data), or the validation judged other prepared data
            (:data:`VALIDATED_DATA`'s content hash is not that of ``paths.prepared_dir``: prepared
            again since, e.g. ``curvewatch prepare -S prepare.val_size=...`` or a new image folder).
    """
    path = params.paths.validation_metrics
    metrics = _read_json(path, "validate")
    success = (
        metrics.get("validation", {}).get("success") if isinstance(metrics.get("validation"), dict) else None
    )
    if success != 1:
        raise StageError(
            f"{path}: the last data validation did not pass (validation.success = {success}); "
            "fix the data or the expectations, then run the validate stage again"
        )
    from pipelines import tracking

    marker = params.paths.validation_dir / VALIDATED_DATA
    validated = _read_json(marker, "validate").get("data_version")
    if not params.paths.prepared_dir.exists():
        raise StageError(f"{params.paths.prepared_dir}: missing; run the prepare stage first")
    current = tracking.dvc_content_hash(params.paths.prepared_dir)
    if validated != current:
        raise StageError(
            f"{marker}: the last validation judged prepared data {validated}, not the data in "
            f"{params.paths.prepared_dir} ({current}), prepared again since: run the validate stage again"
        )
    return metrics, current


def _nested(metrics: dict[str, Any]) -> dict[str, Any]:
    """``{"validation.label_kl": x}`` -> ``{"validation": {"label_kl": x}}`` for ``dvc metrics show``."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _log_validation(mlflow_client, run_id: str, params: Params, result) -> None:
    from pipelines import tracking

    tracking.log_metrics(mlflow_client, run_id, result.metrics)
    tracking.set_tags(
        mlflow_client, run_id, {"curvewatch.validation": "passed" if result.success else "failed"}
    )
    mlflow_client.log_artifacts(run_id, str(params.paths.validation_dir), "validation")


def _log_failed_validation(params: Params, result) -> str:
    from pipelines import tracking

    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    run = mc.create_run(exp_id, run_name="validation-failed", tags={tracking.RUN_KIND_TAG: "validation"})
    try:
        tracking.log_params(mc, run.info.run_id, params)
        _log_validation(mc, run.info.run_id, params, result)
    finally:  # never left RUNNING (nothing else closes validation runs), never raising over the failure
        tracking.end_run_on_failure(mc, run.info.run_id, "FAILED", {})
    return run.info.run_id


# ------------------------------------------------------------------------------------------ baseline
def run_baseline(params: Params) -> float:
    """Validation accuracy of a scikit-learn logistic regression on the same split.

    The curve diagnosis judges a plateau "low" against it (:func:`pipelines.baseline.baseline_accuracy`).
    It depends only on the prepared data and the seed, so it is computed once per data version
    (DVC content hash of ``paths.prepared_dir``) and kept in ``paths.baseline_metrics``; a
    scheduled retrain on unchanged data reuses it. It does not feed training, so the flow runs it
    beside the train task; the compare stage reads it.
    """
    from pipelines import tracking
    from pipelines.baseline import baseline_accuracy

    path = params.paths.baseline_metrics
    key = {"data_version": tracking.dvc_content_hash(params.paths.prepared_dir), "seed": params.base.seed}
    if path.is_file():
        try:
            cached = json.loads(path.read_text()).get("baseline", {})
        except json.JSONDecodeError:
            cached = {}
        if all(cached.get(k) == v for k, v in key.items()) and "val_accuracy" in cached:
            return float(cached["val_accuracy"])
    data, _ = load_train_data(params)
    accuracy = baseline_accuracy(data.x_train, data.y_train, data.x_val, data.y_val, seed=params.base.seed)
    atomic_write_json(path, {"baseline": {"val_accuracy": accuracy, "model": "logistic_regression", **key}})
    return accuracy


def _read_baseline(params: Params) -> float | None:
    path = params.paths.baseline_metrics
    if not path.is_file():
        return None
    return float(_read_json(path, "baseline")["baseline"]["val_accuracy"])


# --------------------------------------------------------------------------------------------- train
@dataclass
class TrainOutcome:
    run_id: str
    model_version: str | None
    epochs_run: int
    best_epoch: int
    completed: bool
    train_seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)
    # The trained keras.Model, also saved to ``paths.model_file``: the flow hands it to
    # run_evaluate instead of loading the file again (its predict function is already traced).
    model: Any = field(default=None, repr=False, compare=False)


def load_train_data(params: Params):
    """The train and validation splits as :class:`pipelines.train.TrainData` (uint8 images)."""
    from pipelines.prepare import load_classes, load_split
    from pipelines.train import TrainData

    prepared = params.paths.prepared_dir
    classes = load_classes(prepared)
    train, val = load_split(prepared, "train"), load_split(prepared, "val")
    return TrainData(
        x_train=train.x, y_train=train.y, x_val=val.x, y_val=val.y, num_classes=int(classes["num_classes"])
    ), classes


def run_train(params: Params, *, extra_callbacks: tuple = ()) -> TrainOutcome:
    """Train the configured model, tracking everything in one MLflow run per training.

    Holds this checkout's training lock (:func:`pipelines.train.training_lock`) throughout. Closes,
    as FAILED with a ``curvewatch.failure_reason`` tag, any training run of this checkout that a
    killed process left RUNNING (:func:`close_abandoned_runs`). When ``paths.backup_dir`` holds an
    interrupted training of the same MLflow run, data version (DVC content hash of
    ``paths.prepared_dir``) and config hash, resumes it into that same run (epochs the killed
    process finished but had not logged are logged first); otherwise starts a new run and says
    why in the log and the ``curvewatch.fresh_start_reason`` tag. A training that had ended but
    whose run was not completed (a failure after the fit, a killed process) is kept in the backup
    (:func:`pipelines.train.keep_finished`) and completed without training again.

    Logs the full resolved config, the git commit, the dataset with its DVC content hash, the
    validation results, per-epoch curves (step = epoch) and the model (Keras flavour; the compare
    stage registers it once the curves are diagnosed, see ``pipelines/registry.py``). The run is
    named by :func:`pipelines.tracking.run_name`. Writes ``paths.model_file``, ``paths.run_file``,
    ``paths.history_plot`` and ``paths.train_metrics``.

    Args:
        params: the resolved params.
        extra_callbacks: Keras callbacks added after curvewatch's own (e.g. a tuning trial's).

    Raises:
        StageError: the validation results are missing or record a failed validation, or another
            training holds the lock (the message names its pid).
        FileNotFoundError, pipelines.prepare.PreparedDataError: the prepared data is missing or
            unreadable (the message names the file).
        pipelines.train.TrainingInterrupted: SIGTERM/SIGINT; the run is marked KILLED and the
            backup kept, so the same command resumes it.
    """
    from pipelines.train import TrainingLocked, training_lock

    try:
        with training_lock(params.paths.backup_dir):
            return _run_train_locked(params, extra_callbacks)
    except TrainingLocked as exc:
        raise StageError(str(exc)) from exc


#: Tags that tie a training run to the process and checkout that ran it.
PID_TAG, HOST_TAG, CHECKOUT_TAG = "curvewatch.pid", "curvewatch.host", "curvewatch.checkout"
FAILURE_REASON_TAG = "curvewatch.failure_reason"
#: Set on a training run once its config, dataset and validation results are all logged.
INPUTS_LOGGED_TAG = "curvewatch.inputs_logged"
#: Seconds a failed or interrupted training waits for its buffered epochs to reach MLflow (Keras
#: skips ``on_train_end`` when ``fit`` raises); short enough to fit a scheduler's kill grace period.
DRAIN_ON_FAILURE_S = 10.0


def close_abandoned_runs(
    mc, experiment_id: str, checkout: str | None, *, keep: str | None = None, kind: str = "train"
) -> list[str]:
    """Mark FAILED, with a reason, the runs of kind ``kind`` left RUNNING by a dead process.

    For ``train``, called with the checkout's training lock held, so no live training of this
    checkout exists: every RUNNING training run tagged with this checkout is abandoned. A RUNNING
    run of another checkout (or, for ``tune``, any tuning parent run) on this host counts only when
    its recorded pid is no longer alive. A closed ``tune`` parent's RUNNING trial runs (its nested
    children, whose workers died with it) are marked FAILED too.

    Args:
        mc: an ``MlflowClient``.
        experiment_id: the experiment searched.
        checkout: the resolved backup folder identifying the checkout (tag ``curvewatch.checkout``);
            None when no lock is held (tuning): only dead pids count.
        keep: a run id left alone (the run about to be resumed).
        kind: the ``curvewatch.run_kind`` tag searched: ``train`` or ``tune``.

    Returns:
        The ids of the runs marked FAILED (children included).
    """
    import socket

    from pipelines import tracking

    host = socket.gethostname()
    closed = []
    running = tracking.search_training_runs(
        mc,
        [experiment_id],
        filter_string=f"tags.`{tracking.RUN_KIND_TAG}` = '{kind}' and attributes.status = 'RUNNING'",
    )
    for run in running:
        tags = run.data.tags
        if run.info.run_id == keep:
            continue
        pid = tags.get(PID_TAG, "")
        mine = checkout is not None and tags.get(CHECKOUT_TAG) == checkout
        dead_here = tags.get(HOST_TAG) == host and pid.isdigit() and not pid_alive(int(pid))
        if not (mine or dead_here):
            continue
        reason = (
            f"process {pid or '?'} on {tags.get(HOST_TAG, '?')} ended without closing this run "
            f"(killed?); closed by the {'training' if kind == 'train' else 'tuning'} started by "
            f"process {os.getpid()}"
        )
        children = (
            mc.search_runs(
                [experiment_id],
                filter_string=(
                    f"tags.mlflow.parentRunId = '{run.info.run_id}' and attributes.status = 'RUNNING'"
                ),
                max_results=10000,
            )
            if kind == "tune"
            else []
        )
        for ended in [*children, run]:
            tracking.set_tags(mc, ended.info.run_id, {FAILURE_REASON_TAG: reason})
            mc.set_terminated(ended.info.run_id, status="FAILED")
            log.warning("%s: MLflow run %s: %s", kind, ended.info.run_id, reason)
            closed.append(ended.info.run_id)
    return closed


def resume_plan(state, *, run_status: str | None, data_version: str, config_hash: str) -> tuple[bool, str]:
    """Decide whether an interrupted training is resumed into its own MLflow run.

    Args:
        state: the backup's :class:`pipelines.train.BackupState`, or None.
        run_status: the MLflow status of ``state.run_id`` (None: no such run in this store).
        data_version: the data version of this training.
        config_hash: :func:`pipelines.train.config_hash` of this training.

    Returns:
        ``(resume, reason)``: resume only when the run exists, is not FINISHED, and the data
        version and config hash match; ``reason`` says why not (empty when resuming or when there
        is no backup).
    """
    from pipelines.train import resume_mismatch

    if state is None:
        return False, ""
    if run_status is None:
        return False, f"the backup's MLflow run {state.run_id} is not in this tracking store"
    if run_status == "FINISHED":
        return False, f"the backup's MLflow run {state.run_id} is already FINISHED"
    reason = resume_mismatch(state, run_id=state.run_id, data_version=data_version, config_hash=config_hash)
    return reason is None, reason or ""


def _run_status(mc, run_id: str | None) -> str | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        run = mc.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run.info.status


def _backfill_epochs(mc, run_id: str, epochs: dict[int, dict[str, float]]) -> int:
    """Log the backed-up epochs MLflow lacks (a kill between the backup and the MLflow write)."""
    import time

    from mlflow.entities import Metric

    logged = {m.step for m in mc.get_metric_history(run_id, "val_loss")}
    now = int(time.time() * 1000)
    missing = [
        Metric(k, float(v), now, epoch + 1)
        for epoch, logs in sorted(epochs.items())
        if epoch + 1 not in logged
        for k, v in logs.items()
    ]
    if missing:
        mc.log_batch(run_id, metrics=missing)
    return len({m.step for m in missing})


def _run_train_locked(params: Params, extra_callbacks: tuple) -> TrainOutcome:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from pipelines import schedule, tracking
    from pipelines.curves.callback import DiagnosisCallback
    from pipelines.prepare import load_manifest
    from pipelines.train import (
        TrainingInterrupted,
        config_hash,
        discard_backup,
        finished_result,
        keep_finished,
        raise_on_signals,
        read_backup_state,
        save_history_csv,
        save_model,
        train,
    )

    paths = params.paths
    validation_metrics, split_version = _passed_validation(params)
    data, classes = load_train_data(params)

    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    data_version = tracking.dvc_content_hash(paths.raw_dir)
    checkout = str(paths.backup_dir.resolve())
    state = read_backup_state(paths.backup_dir)
    identity = {
        "run_id": state.run_id if state else None,
        "data_version": split_version,
        "config_hash": config_hash(params.train, params.base.seed, data.input_shape, data.num_classes),
    }
    resume, why = resume_plan(
        state,
        run_status=_run_status(mc, identity["run_id"]),
        data_version=split_version,
        config_hash=identity["config_hash"],
    )
    finished = None  # a training that had ended before its process failed (keep_finished)
    if resume and state is not None and state.finished is not None:  # loaded only when it is used
        try:
            finished = finished_result(paths.backup_dir, state)
        except ValueError as exc:
            log.warning("train: discarding the finished training's backup: %s", exc)
            discard_backup(paths.backup_dir)
            state, resume = None, False
    close_abandoned_runs(mc, exp_id, checkout, keep=state.run_id if resume and state else None)
    process_tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), CHECKOUT_TAG: checkout}
    if resume and state is not None:
        run_id = state.run_id
        mc.update_run(run_id, status="RUNNING")
        if FAILURE_REASON_TAG in mc.get_run(run_id).data.tags:
            mc.delete_tag(run_id, FAILURE_REASON_TAG)
        backfilled = _backfill_epochs(mc, run_id, state.epochs)
        resumed = (
            {"curvewatch.completed_from_backup": "true"}  # its training had ended: none this time
            if finished is not None
            else {"curvewatch.resumed_from_epoch": str(len(state.epochs))}
        )
        tracking.set_tags(mc, run_id, process_tags | resumed)
        if finished is not None:
            log.info(
                "train: MLflow run %s had finished training (%d epochs) before its process failed:"
                " completing the run without training again",
                run_id,
                finished.epochs_run,
            )
        else:
            log.info(
                "train: resuming MLflow run %s after epoch %d (%d epoch(s) logged from the backup)",
                run_id,
                len(state.epochs),
                backfilled,
            )
    else:
        if state is not None:
            log.warning("train: starting a new MLflow run, not resuming the backup: %s", why)
            discard_backup(paths.backup_dir)
        run = mc.create_run(
            exp_id,
            run_name=tracking.run_name(
                params.train.model, params.train.learning_rate, data_version, datetime.now(UTC)
            ),
            tags={
                tracking.RUN_KIND_TAG: "train",
                "mlflow.source.git.commit": tracking.git_commit() or "unknown",
                "curvewatch.data_version": data_version,
                schedule.PARAMS_TAG: schedule.params_md5(params),  # with data_version: the skip key
                "curvewatch.profile": params.base.profile,
                **process_tags,
                **({"curvewatch.fresh_start_reason": why} if why else {}),
            },
        )
        run_id = run.info.run_id

    def log_inputs() -> None:
        from mlflow.entities import Param

        tracking.log_params(mc, run_id, params)
        sizes = {
            "num_classes": data.num_classes,
            "train_examples": len(data.y_train),
            "val_examples": len(data.y_val),
        }
        mc.log_batch(run_id, params=[Param(f"data.{k}", str(v)) for k, v in sizes.items()])
        tracking.log_dataset(
            mc,
            run_id,
            load_manifest(paths.prepared_dir),
            name=params.base.dataset,
            source=paths.raw_dir,
            digest=data_version,
        )
        tracking.log_metrics(mc, run_id, _flat(validation_metrics))
        mc.log_artifacts(run_id, str(paths.validation_dir), "validation")
        tracking.set_tags(mc, run_id, {INPUTS_LOGGED_TAG: "true"})

    # The run's inputs (config, dataset, validation results) are logged beside training, as the
    # epochs are: none of it feeds training (measured: 0.2-1 s of MLflow writes, more under load).
    # A resumed run has them, unless its process was killed before they were all written.
    inputs_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-inputs")
    has_inputs = resume and INPUTS_LOGGED_TAG in mc.get_run(run_id).data.tags
    inputs_logged = None if has_inputs else inputs_pool.submit(log_inputs)
    epoch_logger = None
    try:
        if finished is not None:
            result = finished
        else:
            # No baseline here: it runs beside training; the compare stage logs it and diagnoses with it.
            diag_cb = DiagnosisCallback(
                epoch_budget=params.train.epochs,
                num_classes=data.num_classes,
                class_prior=(
                    np.bincount(data.y_train, minlength=data.num_classes) / data.y_train.size
                ).tolist(),
                config=params.diagnose,
            )
            # Closed below, once the finished training is kept: waiting at the end of fit for an
            # unreachable server, then failing, would lose it (BackupAndRestore deletes its own).
            epoch_logger = tracking.epoch_logger(mc, run_id, close_on_train_end=False)
            callbacks = (epoch_logger, diag_cb, *extra_callbacks)
            result = train(
                params.train,
                data,
                seed=params.base.seed,
                backup_dir=paths.backup_dir,
                callbacks=callbacks,
                # Keras' progress bar on a terminal; one line per epoch in a log (its bar would print
                # a new line every 0.05 s when stdout is not a terminal).
                verbose=1 if sys.stdout.isatty() else 2,
                run_id=run_id,
                data_version=split_version,
            )
            # Kept until the run is complete, below: a failure from here on, or a killed process,
            # is followed by a rerun that completes this run without training again.
            keep_finished(paths.backup_dir, result, identity | {"run_id": run_id})
            # Every epoch reached the run, or TrackingUnavailable; a signal meanwhile stops the
            # stage as one during training does (KILLED, the finished training kept).
            with raise_on_signals(result.epochs_run):
                epoch_logger.close()
        if inputs_logged is not None:
            inputs_logged.result()  # an MLflow error here fails the run like any other
        # run.json names the run that paths.model_file came from: gone until both are this run's,
        # so a failure below never leaves the new model under the previous run's run.json.
        paths.run_file.unlink(missing_ok=True)
        save_model(result.model, paths.model_file)
        save_history_csv(result.history, paths.history_plot)
        tracking.set_tags(
            mc,
            run_id,
            {
                "curvewatch.completed": str(result.completed).lower(),
                "curvewatch.device": result.device,
                "curvewatch.mixed_precision": str(result.mixed_precision).lower(),
                "curvewatch.stopped_early": str(result.stopped_early).lower(),
            },
        )
        summary = {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "train_seconds": round(result.train_seconds, 2),
            "best_val_accuracy": max(result.history.get("val_accuracy", [float("nan")])),
        }
        tracking.log_summary(mc, run_id, {f"train.{k}": v for k, v in summary.items()})
        model_info = _log_model(mc, run_id, params, result.model, data.x_val[:2], classes)
        atomic_write_json(paths.train_metrics, {"train": summary})
        atomic_write_json(
            paths.run_file,
            {
                "run_id": run_id,
                "model_version": None,  # registered by the compare stage, after the diagnosis (registry.py)
                "model_uri": model_info.model_uri,
                "model_id": model_info.model_id,
                "experiment_id": exp_id,
                "data_version": data_version,
            },
        )
    except BaseException as exc:
        inputs_pool.shutdown(wait=True)  # the inputs reach the run before it is closed
        if epoch_logger is not None:
            epoch_logger.drain(DRAIN_ON_FAILURE_S)  # and so do the finished epochs
        if isinstance(exc, TrainingInterrupted | KeyboardInterrupt):
            status, reason = "KILLED", str(exc) or type(exc).__name__  # KeyboardInterrupt() says nothing
            if getattr(exc, "backup_kept", True):
                reason += "; rerun the same command to resume"
        else:
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:5000]
        tracking.end_run_on_failure(mc, run_id, status, {FAILURE_REASON_TAG: reason})
        raise
    inputs_pool.shutdown(wait=True)
    # Ended last, then the kept training goes: a failure or a kill before the end leaves a run that
    # is not FINISHED, which a rerun completes from the kept training (a FINISHED run's is discarded).
    mc.set_terminated(run_id, status="FINISHED" if result.completed else "FAILED")
    discard_backup(paths.backup_dir)
    return TrainOutcome(
        run_id=run_id,
        model_version=None,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        completed=result.completed,
        train_seconds=result.train_seconds,
        history=result.history,
        model=result.model,
    )


def _flat(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in nested.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _log_model(mc, run_id: str, params: Params, model, example, classes):
    """Log the Keras model to the run (not registered: the compare stage decides, see
    ``pipelines/registry.py``); returns MLflow's ``ModelInfo`` (``model_uri``, ``model_id``)."""
    import mlflow
    import mlflow.keras
    import numpy as np
    from mlflow.models import Model, infer_signature

    # The signature is a schema (dtype and shape), not values: zeros of the output's shape instead
    # of a predict call, which would trace the predict function for one more input shape.
    outputs = np.zeros((len(example), *model.outputs[0].shape[1:]), dtype=np.float32)
    signature = infer_signature(example, outputs)
    # Explicit requirements: MLflow's inference would re-load the model in a subprocess (slow).
    import keras

    requirements = [f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"]
    mlflow.set_tracking_uri(mc.tracking_uri)
    mlflow.set_registry_uri(mc.tracking_uri)
    # Model.log with run_id, as mlflow.keras.log_model calls it, but without `with start_run`: its
    # exit ends the run FINISHED, before run_train has finished it (pipelines.train.keep_finished).
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=mlflow.keras,
        model=model,
        signature=signature,
        pip_requirements=requirements,
        metadata={"class_names": classes.get("class_names")},
        run_id=run_id,
    )


# ------------------------------------------------------------------------------------------ evaluate
def load_model_safely(path: Path):
    """Load a ``.keras`` model for prediction, with Keras' safe mode on (the default: no Python code
    deserialised) and without its training configuration (``compile=False``,
    https://keras.io/api/models/model_saving_apis/model_saving_and_loading/): evaluation only
    predicts, and restoring the optimizer of a model trained under mixed precision (a loss-scale
    optimizer, more variables) warns "Skipping variable loading for optimizer".

    Raises:
        StageError: one line naming the file and saying the load was refused and why (Keras'
            first sentence, e.g. a ``Lambda`` layer whose code safe mode will not run), instead
            of Keras' multi-screen traceback.
    """
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError... for a refused file
        first = " ".join(str(exc).split())
        first = first.split(". ")[0][:300] or type(exc).__name__
        raise StageError(f"{path}: model load refused: {first}") from None


def run_evaluate(params: Params, *, model: Any = None):
    """Evaluate the trained model on the official test split; log into the training run.

    Writes ``paths.evaluation_dir`` (metrics.json, per_class.csv, confusion_matrix.png,
    predictions.parquet, and last ``run.json``: the run they belong to, which the compare stage
    checks), ``paths.evaluate_metrics`` and ``paths.confusion_plot``; logs ``test_accuracy`` /
    ``test_loss`` and the per-class table (``mlflow.log_table``) to the run.

    Args:
        params: the resolved params.
        model: the ``keras.Model`` that :func:`run_train` just saved to ``paths.model_file``
            (``TrainOutcome.model``; the flow passes it: loading the file again and tracing a new
            predict function cost about 0.5 s); ``None`` loads ``paths.model_file`` (the stage).

    Raises:
        StageError: ``paths.run_file`` or ``paths.model_file`` is missing, or the model file is refused.
    """

    from pipelines import tracking
    from pipelines.evaluate import PER_CLASS_TABLE, evaluate, per_class_table, save_evaluation
    from pipelines.prepare import load_classes, load_split

    paths = params.paths
    run_info = _read_json(paths.run_file, "train")
    model_path = paths.model_file
    if not model_path.is_file():
        raise StageError(f"{model_path}: missing; run the train stage first")
    if model is None:
        model = load_model_safely(model_path)
    test = load_split(paths.prepared_dir, "test")
    classes = load_classes(paths.prepared_dir)
    result = evaluate(
        model, test.x, test.y, test.ids, classes["class_names"], batch_size=params.evaluate.batch_size
    )
    # The marker goes first (the files are about to change) and is written back last: a crash in
    # between leaves no marker, and compare refuses the folder instead of mixing two runs' files.
    (paths.evaluation_dir / EVALUATED_RUN).unlink(missing_ok=True)
    save_evaluation(result, paths.evaluation_dir)
    summary = {"test_loss": float(result.test_loss), "test_accuracy": float(result.test_accuracy)}
    atomic_write_json(paths.evaluate_metrics, {"evaluate": summary})
    preds = result.predictions
    atomic_write_text(
        paths.confusion_plot,
        preds[["label", "predicted"]].rename(columns={"label": "actual"}).to_csv(index=False),
    )
    mc = tracking.client()
    tracking.log_metrics(mc, run_info["run_id"], summary)
    # One browsable table instead of 2 x K scalar charts (MLflow UI: Artifacts / Evaluation tab).
    _log_table_once(mc, run_info["run_id"], per_class_table(result), PER_CLASS_TABLE)
    atomic_write_json(paths.evaluation_dir / EVALUATED_RUN, {"run_id": run_info["run_id"]})
    mc.log_artifacts(run_info["run_id"], str(paths.evaluation_dir), "evaluation")
    return result


#: In ``paths.evaluation_dir``: ``{"run_id": ...}`` of the run whose model the folder's files score.
EVALUATED_RUN = "run.json"


def _evaluated_for(paths: Any, run_id: str) -> Path:
    """``paths.evaluation_dir / "predictions.parquet"`` when the folder scores run ``run_id``.

    Raises:
        StageError: the folder has no ``run.json`` (never evaluated, an older layout, or an
            evaluation cut short), or it scores another run (``curvewatch train`` then
            ``curvewatch compare`` without ``evaluate``: the previous run's predictions).
    """
    marker = paths.evaluation_dir / EVALUATED_RUN
    evaluated = _read_json(marker, "evaluate").get("run_id")
    if evaluated != run_id:
        raise StageError(
            f"{marker}: the evaluation is of run {evaluated}, not of the trained run {run_id}; "
            "run the evaluate stage first"
        )
    return paths.evaluation_dir / "predictions.parquet"


def _log_table_once(mc, run_id: str, table, artifact_file: str) -> None:
    """``MlflowClient.log_table``, except that a table already in the run is replaced: log_table
    appends the new rows to it (MLflow 3.17), so a retried or re-run evaluate doubled the table.
    The replacement is written as log_table writes it (``to_json(orient="split")``); the run's
    ``mlflow.loggedArtifacts`` tag already names it as a table."""
    folder = posixpath.dirname(artifact_file) or None
    if artifact_file not in {f.path for f in mc.list_artifacts(run_id, folder)}:
        mc.log_table(run_id, table, artifact_file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / posixpath.basename(artifact_file)
        table.to_json(local, orient="split", index=False, date_format="iso")
        mc.log_artifact(run_id, str(local), folder)


# ------------------------------------------------------------------------------------------- compare
@dataclass
class CompareOutcome:
    run_id: str
    verdict: str
    diagnosis_message: str
    promoted: bool
    gate_decision: str
    gate_message: str
    report_markdown: Path
    report_html: Path
    test_accuracy: float
    champion_run_id: str | None
    findings: list[dict[str, Any]] = field(default_factory=list)


def _replaced_champion(mc, model_name: str, run_id: str):
    """The champion that run ``run_id``, now champion, was gated against the first time: the newest
    version registered from its ``tracking.CHAMPION_RUN_TAG`` run, or None (the first champion, or
    that version is gone: then there is nothing to gate against, and the log says why).

    Raises:
        mlflow.exceptions.MlflowException: the registry could not be searched (never read as "no
            champion", as in ``tracking.get_champion``).
    """
    from pipelines import tracking
    from pipelines.registry import newest_version

    previous = mc.get_run(run_id).data.tags.get(tracking.CHAMPION_RUN_TAG)
    if not previous:
        return None
    version = newest_version(mc, model_name, previous)
    if version is None:
        log.warning("compare: the champion run %s replaced has no version of %s left", previous, model_name)
        return None
    return tracking.Champion(version=version, run_id=previous)


SPLIT_CHANGED = "the test split changed since the champion's run"


def retrains_since(recent_runs: Sequence[Any], champion_start_ms: int) -> list[float | None]:
    """Test accuracies of the runs started after the champion's run, oldest first: the series of
    :func:`pipelines.curves.compare.series_stall`. Runs from before the champion could not beat
    it; counting them called a stall one retrain after an improvement was promoted.

    Args:
        recent_runs: MLflow runs, newest first (:func:`pipelines.tracking.recent_training_runs`).
        champion_start_ms: the champion's run's ``start_time`` (ms since the epoch).

    Returns:
        ``test_accuracy`` per run (None where not logged), oldest first.
    """
    since = [r for r in recent_runs if r.info.start_time > champion_start_ms]
    return [r.data.metrics.get("test_accuracy") for r in reversed(since)]


def run_compare(params: Params) -> CompareOutcome:
    """Diagnose this run's curves, compare with the champion and recent runs, gate, report.

    Reads this run, the champion (alias ``champion`` of ``tracking.registered_model``) and the last
    ``compare.recent_runs`` training runs from MLflow. Writes MLflow tags (``curvewatch.verdict``,
    ``curvewatch.plateau_onset_epoch``, ``curvewatch.gate``, ``curvewatch.decision`` ...), the run
    description (``mlflow.note.content``: the diagnosis paragraph and a link to the report), the
    diagnosis and gate numbers (``curvewatch.diagnosis.*``, ``curvewatch.gate.*``: summary tags,
    ``tracking.log_summary``), the report (markdown, HTML, PNG, JSON) into ``paths.compare_dir`` and as
    run artifacts, ``paths.compare_metrics``. Registers the model version and moves the
    ``champion`` alias as ``pipelines/registry.py`` decides (``compare.promotion``); a run that
    :func:`incomplete_reason` finds incomplete is never registered, so never promoted. The alias
    moves, and then the run's ``curvewatch.gate`` tag is written, after everything else: a failure
    on the way leaves the champion as it was and the run not counted as through the gate. A
    champion whose run has no predictions artifact, or whose test split differs, is scored on this
    run's test split; a champion that cannot be read fails the stage (never "no champion"). Run
    again on the champion itself, it gates against the champion that run replaced (its
    ``curvewatch.champion_run_id`` tag), and gives that one the alias back when the gate no longer
    promotes the run.

    Raises:
        StageError: ``paths.run_file`` is missing, or ``paths.evaluation_dir`` does not score the
            run it names (:func:`_evaluated_for`: evaluate not run since that training).
        GateFailed: the challenger is a regression (the gate's ``regression`` decision, which no
            promotion rule promotes) and ``compare.fail_on_regression`` is true (everything above
            is still written first; the champion alias has not moved).
        mlflow.exceptions.MlflowException, OSError: the registry or the champion's artifacts could
            not be read (``tracking.get_champion``, ``tracking.download_predictions``).
        ValueError: the champion cannot score this test split (``_rescore_champion``).
    """
    from pipelines import registry, tracking
    from pipelines.curves.batch import mlflow_tags, summary_values
    from pipelines.curves.compare import compare_curves, series_stall
    from pipelines.curves.diagnose import diagnose
    from pipelines.curves.gate import gate
    from pipelines.curves.report import render_report

    paths, cfg = params.paths, params.compare
    run_info = _read_json(paths.run_file, "train")
    run_id = run_info["run_id"]
    predictions_path = _evaluated_for(paths, run_id)  # before anything is written
    mc = tracking.client()
    challenger_curve = tracking.run_curve(mc, run_id)
    champion = tracking.get_champion(mc, params.tracking.registered_model)
    rerun_on_champion = champion is not None and champion.run_id == run_id
    if rerun_on_champion:
        # Compare re-run on the champion itself (a compare retried after the alias moved, `dvc
        # repro` after compare's code or params changed): gate against the champion it replaced,
        # as the first time; none when it was the first champion.
        champion = _replaced_champion(mc, params.tracking.registered_model, run_id)
    recent_runs = tracking.recent_training_runs(
        mc,
        run_info["experiment_id"],
        exclude=[run_id] + ([champion.run_id] if champion else []),
        limit=cfg.recent_runs,
    )
    recent = tracking.fetch_curves(mc, recent_runs)  # the Run objects are in hand: one bulk read
    champion_curve = tracking.run_curve(mc, champion.run_id) if champion else None

    baseline = _read_baseline(params)
    if baseline is not None:
        tracking.log_summary(mc, run_id, {"baseline.val_accuracy": baseline})
    diagnosis = diagnose(challenger_curve, config=params.diagnose, baseline_accuracy=baseline)
    import pandas as pd

    challenger_preds = pd.read_parquet(predictions_path)
    with tempfile.TemporaryDirectory() as tmp:
        champion_preds = tracking.download_predictions(mc, champion.run_id, Path(tmp)) if champion else None
    rescore_reason = None
    if champion is not None and champion_preds is None:
        # E.g. a champion copied by migrate-store without its artifacts. Never gate as if there
        # were no champion: that promotes any challenger.
        rescore_reason = "the champion's run has no evaluation/predictions.parquet"
    elif champion_preds is not None and set(champion_preds["id"]) != set(challenger_preds["id"]):
        # A new data version (e.g. images added to the folder) moved the test split: a paired gate
        # needs both models scored on the same examples, so score the champion on this one.
        rescore_reason = SPLIT_CHANGED
    if rescore_reason is not None:
        log.info("%s: scoring champion v%s on this test split", rescore_reason, champion.version)
        champion_preds = _rescore_champion(params, mc, champion)
    # The champion config's seed runs scored the old test split when it changed: their accuracies are
    # no yardstick on this one (a split 3 points easier put a regression inside their spread). The
    # gate then judges by the champion alone (its seed rule with k = 1).
    seed_accuracies = (
        tracking.same_config_test_accuracies(mc, run_info["experiment_id"], champion.run_id, exclude=[run_id])
        if champion and rescore_reason != SPLIT_CHANGED
        else {}
    )
    gate_result = gate(
        challenger_preds, champion_preds, alpha=cfg.alpha, champion_seed_accuracies=seed_accuracies
    )
    cross = compare_curves(challenger_curve, champion_curve, recent)
    findings = list(cross) + ([gate_result.finding] if gate_result.finding else [])
    if champion is not None and gate_result.champion_accuracy is not None:
        # The scheduled series, oldest first: the retrains since the champion's run, then this one.
        series = retrains_since(recent_runs, mc.get_run(champion.run_id).info.start_time)
        stall = series_stall([*series, gate_result.challenger_accuracy], gate_result.champion_accuracy)
        if stall is not None:
            findings.append(stall)

    diag_msg = "; ".join(f.message for f in diagnosis.findings) or diagnosis.verdict
    # One-sided p for "the challenger is better": the same paired test with the roles swapped.
    p_better = (
        gate(champion_preds, challenger_preds, alpha=cfg.alpha).p_value
        if champion_preds is not None
        else None
    )
    reg = registry.apply_policy(
        mc,
        params.tracking.registered_model,
        run_info=run_info,
        verdict=diagnosis.verdict,
        plateau_onset_epoch=diagnosis.plateau_onset_epoch,
        diagnosis=diag_msg,
        completed=incomplete_reason(challenger_curve) is None,
        gate_result=gate_result,
        p_better=p_better,
        rule=cfg.promotion,
        alpha=cfg.alpha,
        margin=cfg.margin,
        best_val_accuracy=_best(challenger_curve.metrics.get("val_accuracy")),
        best_epoch=diagnosis.best_epoch,
        move_alias=False,  # last, below: a failure before it leaves the champion as it was
    )
    promoted = reg.promoted
    report = render_report(
        paths.compare_dir,
        challenger=challenger_curve,
        diagnosis=diagnosis,
        champion=champion_curve,
        recent=recent,
        # The gate's numbers with the decision taken under compare.promotion, as on the run.
        gate_result=replace(gate_result, decision=reg.decision.code, passed=promoted),
        findings=findings,
        title=f"curvewatch report for run {run_id}",
    )
    tags = (
        mlflow_tags(diagnosis)
        | reg.run_tags
        | {
            "curvewatch.findings": ",".join(sorted({f.code for f in diagnosis.findings + findings}))
            or "none",
            tracking.CHAMPION_RUN_TAG: champion.run_id if champion else None,
        }
    )
    # The gate tag goes last: it marks the run as through the gate (schedule.last_fingerprint).
    gate_tag = {tracking.GATE_TAG: tags.pop(tracking.GATE_TAG)}
    tracking.set_tags(mc, run_id, tags)
    numbers = summary_values(diagnosis) | {
        "gate.p_value": gate_result.p_value,
        "gate.delta": gate_result.delta,
        # One pass flag, the decision's under compare.promotion (as in the report): the gate's own
        # flag said "passed" for a run significantly_better then kept out.
        "gate.passed": promoted,
    }
    tracking.log_summary(mc, run_id, numbers)
    for p in (report.markdown, report.html, report.png, report.json):
        mc.log_artifact(run_id, str(p), "curvewatch")
    atomic_write_json(paths.compare_metrics, {"compare": _finite(numbers) | {"promoted": promoted}})
    if promoted:
        tracking.promote(mc, params.tracking.registered_model, reg.version)
    elif rerun_on_champion and champion is not None:
        # The gate, run again, no longer promotes this run (e.g. a stricter compare.promotion):
        # the champion it replaced takes the alias back.
        log.warning("compare: run %s fails the gate now; champion back to v%s", run_id, champion.version)
        tracking.promote(mc, params.tracking.registered_model, champion.version)
    tracking.set_tags(mc, run_id, gate_tag)

    gate_msg = gate_result.finding.message if gate_result.finding else reg.decision.text
    outcome = CompareOutcome(
        run_id=run_id,
        verdict=diagnosis.verdict,
        diagnosis_message=diag_msg,
        promoted=promoted,
        gate_decision=reg.decision.code,
        gate_message=gate_msg,
        report_markdown=report.markdown,
        report_html=report.html,
        test_accuracy=float(gate_result.challenger_accuracy),
        champion_run_id=champion.run_id if champion else None,
        findings=[{"code": f.code, "message": f.message} for f in diagnosis.findings + findings],
    )
    # A regression (worse beyond test-set and seed noise) is never promoted; a champion merely kept
    # (not better, or not significantly so) is no failure, nor is a promotion under not_worse.
    if reg.decision.code == "regression" and cfg.fail_on_regression:
        raise GateFailed(f"regression gate failed: {gate_msg}", outcome)
    return outcome


def _rescore_champion(params: Params, mc, champion):
    """The champion's per-example predictions on the current test split (``evaluate`` format).

    Raises:
        ValueError: the champion cannot score this split (other image shape or class count).
    """
    import mlflow
    import mlflow.keras

    from pipelines.evaluate import evaluate
    from pipelines.prepare import load_classes, load_split

    mlflow.set_tracking_uri(mc.tracking_uri)
    mlflow.set_registry_uri(mc.tracking_uri)
    model = mlflow.keras.load_model(f"models:/{params.tracking.registered_model}/{champion.version}")
    test = load_split(params.paths.prepared_dir, "test")
    names = load_classes(params.paths.prepared_dir)["class_names"]
    return evaluate(model, test.x, test.y, test.ids, names, batch_size=params.evaluate.batch_size).predictions


def _best(values) -> float | None:
    """Largest finite value of a per-epoch series (None when there is none)."""
    import numpy as np

    finite = np.asarray(values if values is not None else [], dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size else None


def incomplete_reason(curve) -> str | None:
    """Why a challenger's run counts as incomplete (so it is neither registered nor promoted), or None.

    Args:
        curve: the challenger's :class:`pipelines.curves.types.Curve` read from MLflow.

    Returns:
        A sentence when the run is incomplete (not FINISHED, or stopped by a NaN loss) or lacks
        logged epochs (its epochs are not 1..E); None otherwise.
    """
    import numpy as np

    if not curve.complete:
        return "the run is incomplete (not FINISHED, or stopped by a NaN loss)"
    epochs = np.asarray(curve.epochs)
    if epochs.size == 0 or not np.array_equal(epochs, np.arange(1, epochs.size + 1)):
        return f"the run's logged epochs are not 1..{epochs.size}: per-epoch metrics are missing"
    return None


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    import math

    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or v is None:
            out[k] = v
        elif isinstance(v, int | float) and math.isfinite(v):
            out[k] = v
    return out


# ---------------------------------------------------------------------------------------------- tune
@dataclass
class TuneOutcome:
    """What :func:`finish_tune` returns (no models: they are on disk and in MLflow)."""

    parent_run_id: str
    experiment_id: str
    study_name: str
    storage: str
    best_run_id: str
    best_number: int
    best_params: dict[str, Any]
    best_val_accuracy: float
    model_version: str | None
    epochs_spent: int
    epochs_without_pruning: int
    states: dict[str, int] = field(default_factory=dict)


def optuna_storage_url(params: Params) -> str:
    """``CURVEWATCH_OPTUNA_STORAGE`` from the environment (e.g. PostgreSQL for parallel workers),
    else a SQLite file ``<paths.tune_dir>/optuna.db``."""
    import os

    url = os.environ.get("CURVEWATCH_OPTUNA_STORAGE")
    if url:
        return url
    params.paths.tune_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{params.paths.tune_dir.resolve() / 'optuna.db'}"


class MlflowTrialHooks:
    """One nested MLflow child run per trial: parameters, per-epoch curves, the engine's verdict,
    ``curvewatch.pruned_because``; ended FINISHED (complete or pruned) or FAILED, never left RUNNING.
    Named by :func:`pipelines.tracking.run_name` (``trial 7 mlp lr=3.2e-4 d=ab12cd ...``; the data
    version is the study's, ``data_version``).

    Each child run logs what a retrain's run logs of its inputs (:func:`pipelines.tracking.
    log_params`: the whole config with the trial's ``train`` section, and ``config/params.json``;
    ``data.num_classes`` / ``train_examples`` / ``val_examples``; the ``curvewatch.data_version``
    tag): the best trial's run is gated by :func:`run_compare` as a retrain's is, and the engine
    reads the class count and validation-set size from those params."""

    def __init__(
        self,
        mc,
        experiment_id: str,
        parent_run_id: str,
        params: Params,
        data: Any,
        data_version: str | None = None,
    ) -> None:
        self.mc, self.experiment_id, self.parent_run_id = mc, experiment_id, parent_run_id
        self.params, self.num_classes, self.data_version = params, data.num_classes, data_version
        self.sizes = {
            "num_classes": data.num_classes,
            "train_examples": len(data.y_train),
            "val_examples": len(data.y_val),
        }
        self.run_ids: dict[int, str] = {}
        self._loggers: dict[int, Any] = {}

    def start(self, number: int, sampled: dict[str, Any], cfg) -> tuple:
        from mlflow.entities import Param

        from pipelines import tracking

        run = self.mc.create_run(
            self.experiment_id,
            run_name=tracking.run_name(
                cfg.model, cfg.learning_rate, self.data_version, datetime.now(UTC), trial=number
            ),
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                tracking.RUN_KIND_TAG: "tune_trial",
                "curvewatch.trial": str(number),
                "mlflow.source.git.commit": tracking.git_commit() or "unknown",
                "curvewatch.data_version": self.data_version or "unknown",
                "curvewatch.profile": self.params.base.profile,
            },
        )
        run_id = run.info.run_id
        self.run_ids[number] = run_id
        tracking.log_params(self.mc, run_id, self.params.model_copy(update={"train": cfg}))
        self.mc.log_batch(run_id, params=[Param(f"data.{k}", str(v)) for k, v in self.sizes.items()])
        self._loggers[number] = tracking.epoch_logger(self.mc, run_id)
        return (self._loggers[number],)

    def finish(self, record) -> None:
        from pipelines import tracking
        from pipelines.curves.batch import mlflow_tags, summary_values
        from pipelines.curves.callback import diagnose_history

        run_id = self.run_ids.get(record.number)
        if run_id is None:
            return
        logger = self._loggers.pop(record.number, None)
        if logger is not None:  # a failed trial's fit raised: Keras skipped on_train_end
            logger.drain(DRAIN_ON_FAILURE_S)
        try:
            tags: dict[str, Any] = {"curvewatch.trial_state": record.state}
            if record.pruned_because:
                tags["curvewatch.pruned_because"] = record.pruned_because
            history = {k: v for k, v in record.history.items() if v}
            if any(history.get(k) for k in ("val_accuracy", "val_loss")):
                try:
                    diagnosis = diagnose_history(
                        history,
                        self.params.train.epochs,
                        num_classes=self.num_classes,
                        config=self.params.diagnose,
                    )
                    tags |= mlflow_tags(diagnosis)
                    tracking.log_summary(self.mc, run_id, summary_values(diagnosis))
                except ValueError:
                    pass
            tracking.set_tags(self.mc, run_id, tags)
            metrics = {"trial.epochs_run": record.epochs_run}
            if record.value is not None:
                metrics["trial.best_val_accuracy"] = record.value
            tracking.log_metrics(self.mc, run_id, metrics)
        finally:
            self.mc.set_terminated(run_id, status="FAILED" if record.state == "FAIL" else "FINISHED")


def _log_study_plots(mc, run_id: str, study) -> None:
    """Optuna's plots (matplotlib backend) as PNG artifacts under ``optuna/`` of the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov

    plots = {
        "optimization_history": ov.plot_optimization_history,
        "parallel_coordinate": ov.plot_parallel_coordinate,
        "param_importances": ov.plot_param_importances,
        "intermediate_values": ov.plot_intermediate_values,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, plot in plots.items():
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                # e.g. importances need two completed trials with varying parameters.
                log.info("optuna plot %s skipped: %s", name, exc)
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(10, 6)
            fig.tight_layout()
            fig.savefig(Path(tmp) / f"{name}.png", dpi=90)
            plt.close(fig)
        mc.log_artifacts(run_id, tmp, "optuna")


@dataclass(frozen=True)
class TuneStudy:
    """The study a tuning run's workers share: its MLflow parent run and Optuna storage."""

    parent_run_id: str
    experiment_id: str
    study_name: str
    storage: str
    data_version: str


def tune_outputs(params: Params, study: TuneStudy) -> Params:
    """``params`` with the files the tune flow writes for the gate moved under
    ``paths.tune_dir/<study name>/``, beside the trials' models.

    The best trial's model and ``run.json`` (``model.keras``, ``run.json``), its evaluation
    (``evaluation/``, ``evaluate.json``, ``confusion.csv``) and its gate report (``compare/``,
    ``compare.json``) are written there by :func:`finish_tune`, :func:`run_evaluate` and
    :func:`run_compare` given these params: a tuning never overwrites the DVC-tracked outputs of the
    train / evaluate / compare stages, which ``dvc.lock`` records for the params in
    ``params.yaml`` (``dvc status`` stays clean, and ``dvc repro`` does not retrain over it).
    """
    root = params.paths.tune_dir / study.study_name
    paths = params.paths.model_copy(
        update={
            "model_file": root / "model.keras",
            "run_file": root / "run.json",
            "evaluation_dir": root / "evaluation",
            "evaluate_metrics": root / "evaluate.json",
            "confusion_plot": root / "confusion.csv",
            "compare_dir": root / "compare",
            "compare_metrics": root / "compare.json",
        }
    )
    return params.model_copy(update={"paths": paths})


def _create_study(storage: str, study_name: str, params: Params) -> None:
    import optuna

    from pipelines.tune import make_storage

    optuna.create_study(
        storage=make_storage(storage, grace_period=params.tune.heartbeat_grace_s),
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
    )


def start_tune(params: Params) -> TuneStudy:
    """Open the MLflow parent run (kind ``tune``: resolved config, search space), name the study
    and create it in the Optuna storage (tables included), before any worker starts.

    Raises:
        StageError: the validation results are missing (run the validate stage first) or record a
            failed validation.
    """
    import socket

    from pipelines import tracking

    paths = params.paths
    _passed_validation(params)
    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    # A tuning run killed with its flow (SIGKILL, OOM, a reboot) left its parent and the trials in
    # flight RUNNING: close them, as a training closes a dead training's run.
    close_abandoned_runs(mc, exp_id, None, kind="tune")
    data_version = tracking.dvc_content_hash(paths.raw_dir)
    parent = mc.create_run(
        exp_id,
        run_name=f"tune-{params.tune.study_name}",
        tags={
            tracking.RUN_KIND_TAG: "tune",
            "mlflow.source.git.commit": tracking.git_commit() or "unknown",
            "curvewatch.data_version": data_version,
            "curvewatch.profile": params.base.profile,
            PID_TAG: str(os.getpid()),
            HOST_TAG: socket.gethostname(),
        },
    )
    parent_id = parent.info.run_id
    storage = optuna_storage_url(params)
    study_name = f"{params.tune.study_name}-{parent_id[:8]}"
    try:
        # The study (and, in a fresh store, Optuna's tables) exists before any worker starts:
        # workers creating them at once on an empty PostgreSQL collide on the schema.
        _create_study(storage, study_name, params)
        tracking.log_params(mc, parent_id, params)
        mc.log_dict(parent_id, params.tune.model_dump(mode="json"), "tune/search_space.json")
        tracking.set_tags(
            mc,
            parent_id,
            # Only the host part of the storage URL: it may carry a password.
            {"curvewatch.study": study_name, "curvewatch.optuna_storage": storage.split("@")[-1]},
        )
    except BaseException:
        mc.set_terminated(parent_id, status="FAILED")
        raise
    return TuneStudy(parent_id, exp_id, study_name, storage, data_version)


def run_tune_worker(
    params: Params, study: TuneStudy, *, until_finished: int | None = None, worker: int = 0
) -> None:
    """One worker of ``study``: trials (each a nested MLflow run) until ``until_finished`` trials
    of the study are complete or pruned (default ``tune.n_trials``). Several may run at once, in
    separate processes, on one RDB storage, each with its own index ``worker`` (it seeds that
    worker's sampler: :func:`pipelines.tune.sampler_seed`)."""
    from pipelines import tracking
    from pipelines.tune import tune

    data, _ = load_train_data(params)
    mc = tracking.client()
    hooks = MlflowTrialHooks(mc, study.experiment_id, study.parent_run_id, params, data, study.data_version)
    try:
        tune(
            params,
            data,
            storage=study.storage,
            study_name=study.study_name,
            trial_dir=params.paths.tune_dir / study.study_name,
            hooks=hooks,
            until_finished=until_finished or params.tune.n_trials,
            worker=worker,
        )
    except ValueError as exc:
        if "completed" not in str(exc):  # "no trial completed" is for finish_tune to judge
            raise


def finish_tune(params: Params, study: TuneStudy) -> TuneOutcome:
    """Close the study: Optuna's plots and the best parameters on the parent run, orphaned child
    runs (a killed worker's) ended FAILED, and the best trial's model staged for the gate.

    The best trial's model is logged to its child run (not registered: :func:`run_compare`
    registers it, as for a retrain), and written to ``paths.model_file`` with ``paths.run_file``
    naming the child run, so that :func:`run_evaluate` and :func:`run_compare` gate it exactly like
    a retrain. The tune flow passes :func:`tune_outputs` params, so these files (and the evaluation
    and gate report after them) land under ``paths.tune_dir/<study>/``, not on the train stage's
    DVC-tracked outputs.

    Raises:
        ValueError: no trial of the study completed.
    """
    import keras
    import optuna

    from pipelines import tracking
    from pipelines.train import save_model
    from pipelines.tune import epoch_accounting

    paths = params.paths
    mc = tracking.client()
    parent_id = study.parent_run_id
    try:
        children = mc.search_runs(
            [study.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000
        )
        for child in children:
            if child.info.status == "RUNNING":  # its worker died mid-trial; Optuna retried the trial
                tracking.set_tags(mc, child.info.run_id, {"curvewatch.trial_state": "FAIL"})
                mc.set_terminated(child.info.run_id, status="FAILED")
        runs = {c.data.tags.get("curvewatch.trial"): c.info.run_id for c in children}
        optuna_study = optuna.load_study(study_name=study.study_name, storage=study.storage)
        done = (optuna.trial.TrialState.COMPLETE,)
        if not optuna_study.get_trials(deepcopy=False, states=done):
            raise ValueError(
                f"tune: none of the {len(optuna_study.trials)} trials of study {study.study_name!r} "
                "completed (all pruned or failed); widen the search space in params.yaml (tune.*)"
            )
        _log_study_plots(mc, parent_id, optuna_study)
        states: dict[str, int] = {}
        for t in optuna_study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        finished = [t for t in optuna_study.trials if t.state.is_finished()]
        # A killed worker's trial has no epochs_run attribute: the epochs it reported count.
        epochs_spent, epochs_without = epoch_accounting(
            (
                (t.state.name, int(t.user_attrs.get("epochs_run", len(t.intermediate_values))))
                for t in finished
            ),
            params.train.epochs,
        )
        best = optuna_study.best_trial
        tracking.log_metrics(
            mc,
            parent_id,
            {
                "tune.best_val_accuracy": float(best.value),
                "tune.epochs_spent": epochs_spent,
                "tune.epochs_without_pruning": epochs_without,
                **{f"tune.trials_{k.lower()}": v for k, v in states.items()},
            },
        )
        mc.log_dict(parent_id, best.params, "tune/best_params.json")
        tracking.set_tags(mc, parent_id, {f"best.{k}": v for k, v in best.params.items()})
        best_run_id = runs[str(best.number)]
        data, classes = load_train_data(params)
        model = keras.saving.load_model(Path(best.user_attrs["model_path"]))
        paths.run_file.unlink(missing_ok=True)  # as in run_train: never a model under another run's run.json
        save_model(model, paths.model_file)
        tracking.set_tags(mc, best_run_id, {tracking.RUN_KIND_TAG: "train", "curvewatch.tune_best": "true"})
        model_info = _log_model(mc, best_run_id, params, model, data.x_val[:2], classes)
        del model
    except BaseException:
        mc.set_terminated(parent_id, status="FAILED")
        raise
    mc.set_terminated(parent_id, status="FINISHED")
    atomic_write_json(
        paths.run_file,
        {
            "run_id": best_run_id,
            "model_version": None,  # registered by the compare stage, after the diagnosis (registry.py)
            "model_uri": model_info.model_uri,
            "model_id": model_info.model_id,
            "experiment_id": study.experiment_id,
            "data_version": study.data_version,
            "tune_parent_run_id": parent_id,
        },
    )
    return TuneOutcome(
        parent_run_id=parent_id,
        experiment_id=study.experiment_id,
        study_name=study.study_name,
        storage=study.storage.split("@")[-1],
        best_run_id=best_run_id,
        best_number=best.number,
        best_params=dict(best.params),
        best_val_accuracy=float(best.value),
        model_version=None,
        epochs_spent=epochs_spent,
        epochs_without_pruning=epochs_without,
        states=states,
    )


def fail_tune(study: TuneStudy, exc: BaseException) -> None:
    """End the study's MLflow parent run after its workers failed: KILLED for a signal or Ctrl-C,
    else FAILED, with ``curvewatch.failure_reason`` (:func:`pipelines.tracking.end_run_on_failure`:
    never raises; the worker's exception is the one to report)."""
    from pipelines import tracking
    from pipelines.train import TrainingInterrupted

    killed = isinstance(exc, TrainingInterrupted | KeyboardInterrupt)
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")[:5000]
    status = "KILLED" if killed else "FAILED"
    tracking.end_run_on_failure(tracking.client(), study.parent_run_id, status, {FAILURE_REASON_TAG: reason})


def run_tune_optimism(params: Params, outcome: TuneOutcome) -> tuple[float, Any]:
    """After :func:`run_evaluate` scored the best trial on the test split: the tuning optimism
    (best validation accuracy minus its test accuracy) and the engine's ``tuning_optimism`` finding
    (None when validation and test agree), logged on the parent run.

    Returns:
        ``(test_accuracy, finding_or_None)``.
    """
    from pipelines import tracking
    from pipelines.curves.compare import tuning_optimism

    test_accuracy = float(_read_json(params.paths.evaluate_metrics, "evaluate")["evaluate"]["test_accuracy"])
    data_val = load_train_data(params)[0].y_val
    from pipelines.prepare import load_split

    n_test = len(load_split(params.paths.prepared_dir, "test").y)
    finding = tuning_optimism(outcome.best_val_accuracy, test_accuracy, n_val=len(data_val), n_test=n_test)
    mc = tracking.client()
    tracking.log_metrics(
        mc,
        outcome.parent_run_id,
        {
            "tune.best_test_accuracy": test_accuracy,
            "tune.optimism": outcome.best_val_accuracy - test_accuracy,
        },
    )
    tracking.set_tags(
        mc, outcome.parent_run_id, {"curvewatch.tuning_optimism": finding.message if finding else "none"}
    )
    return test_accuracy, finding
