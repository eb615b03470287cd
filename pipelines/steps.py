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
import sys
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.config import Params
from pipelines.io_utils import atomic_write_json, atomic_write_text

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
    """The challenger failed the regression gate and ``compare.fail_on_regression`` is set.
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

    Writes ``paths.validation_metrics`` (DVC metrics). On failure, records the failed
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
    atomic_write_json(params.paths.validation_metrics, _nested(result.metrics))
    if not result.success:
        run_id = _log_failed_validation(params, result) if log_failure_to_mlflow else None
        raise ValidationFailed(
            f"data validation failed:\n{format_failures(result)}\nData Docs: {result.data_docs_index}",
            result,
            run_id,
        )
    return result


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
    tracking.log_params(mc, run.info.run_id, params)
    _log_validation(mc, run.info.run_id, params, result)
    mc.set_terminated(run.info.run_id, status="FAILED")
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
    """Train the configured model, tracking everything in a new MLflow run.

    Logs the full resolved config, the git commit, the dataset with its DVC content hash, the
    validation results, per-epoch curves (step = epoch) and the model (Keras flavour; the compare
    stage registers it once the curves are diagnosed, see ``pipelines/registry.py``). The run is
    named by :func:`pipelines.tracking.run_name`. Writes ``paths.model_file``, ``paths.run_file``,
    ``paths.history_plot`` and ``paths.train_metrics``.

    Raises:
        StageError: the prepared data or validation results are missing.
    """
    import numpy as np

    from pipelines import schedule, tracking
    from pipelines.curves.callback import DiagnosisCallback
    from pipelines.prepare import load_manifest
    from pipelines.train import save_history_csv, save_model, train

    paths = params.paths
    validation_metrics = _read_json(paths.validation_metrics, "validate")
    data, classes = load_train_data(params)

    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    data_version = tracking.dvc_content_hash(paths.raw_dir)
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
        },
    )
    run_id = run.info.run_id
    try:
        tracking.log_params(mc, run_id, params)
        mc.log_param(run_id, "data.num_classes", data.num_classes)
        mc.log_param(run_id, "data.train_examples", len(data.y_train))
        mc.log_param(run_id, "data.val_examples", len(data.y_val))
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
        # No baseline here: it runs beside training; the compare stage logs it and diagnoses with it.
        diag_cb = DiagnosisCallback(
            epoch_budget=params.train.epochs,
            num_classes=data.num_classes,
            class_prior=(np.bincount(data.y_train, minlength=data.num_classes) / data.y_train.size).tolist(),
            config=params.diagnose,
        )
        callbacks = (tracking.epoch_logger(mc, run_id), diag_cb, *extra_callbacks)
        result = train(
            params.train,
            data,
            seed=params.base.seed,
            backup_dir=paths.backup_dir,
            callbacks=callbacks,
            # Keras' progress bar on a terminal; one line per epoch in a log (its bar would print a
            # new line every 0.05 s when stdout is not a terminal).
            verbose=1 if sys.stdout.isatty() else 2,
        )
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
        tracking.log_metrics(mc, run_id, {f"train.{k}": v for k, v in summary.items()})
        model_info = _log_model(mc, run_id, params, result.model, data.x_val[:2], classes)
    except BaseException:
        mc.set_terminated(run_id, status="FAILED")
        raise
    mc.set_terminated(run_id, status="FINISHED" if result.completed else "FAILED")
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
    atomic_write_json(paths.train_metrics, {"train": summary})
    return TrainOutcome(
        run_id=run_id,
        model_version=None,
        epochs_run=result.epochs_run,
        best_epoch=result.best_epoch,
        completed=result.completed,
        train_seconds=result.train_seconds,
        history=result.history,
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
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    # Explicit requirements: MLflow's inference would re-load the model in a subprocess (slow).
    import keras

    requirements = [f"keras=={keras.__version__}", f"mlflow=={mlflow.__version__}"]
    mlflow.set_tracking_uri(mc.tracking_uri)
    mlflow.set_registry_uri(mc.tracking_uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.keras.log_model(
            model,
            name="model",
            signature=signature,
            pip_requirements=requirements,
            metadata={"class_names": classes.get("class_names")},
        )
    return info


# --------------------------------------------------------------------------------------------- tune
def run_tune(params: Params, *, trials: int | None = None, storage: str | None = None):
    """Optuna search around ``train`` on the prepared data (see :func:`pipelines.tune.tune`); the
    best trial is scored on the test split. Used by ``curvewatch tune`` and the Prefect flow ``tune``.

    Raises:
        ValueError: as :func:`pipelines.tune.tune` (bad trial count, every trial pruned or failed).
    """
    from pipelines import tracking
    from pipelines.prepare import load_split
    from pipelines.tune import tune

    data, _ = load_train_data(params)
    test = load_split(params.paths.prepared_dir, "test")
    return tune(
        params, data, n_trials=trials, test=(test.x, test.y), storage=storage, mlflow_client=tracking.client()
    )


# ------------------------------------------------------------------------------------------ evaluate
def run_evaluate(params: Params):
    """Evaluate the trained model on the official test split; log into the training run.

    Writes ``paths.evaluation_dir`` (metrics.json, per_class.csv, confusion_matrix.png,
    predictions.parquet), ``paths.evaluate_metrics`` and ``paths.confusion_plot``; logs
    ``test_accuracy``/``test_loss`` and the per-class table (``mlflow.log_table``) to the run.
    """
    import keras

    from pipelines import tracking
    from pipelines.evaluate import PER_CLASS_TABLE, evaluate, per_class_table, save_evaluation
    from pipelines.prepare import load_classes, load_split

    paths = params.paths
    run_info = _read_json(paths.run_file, "train")
    model_path = paths.model_file
    if not model_path.is_file():
        raise StageError(f"{model_path}: missing; run the train stage first")
    model = keras.saving.load_model(model_path)
    test = load_split(paths.prepared_dir, "test")
    classes = load_classes(paths.prepared_dir)
    result = evaluate(
        model, test.x, test.y, test.ids, classes["class_names"], batch_size=params.evaluate.batch_size
    )
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
    mc.log_table(run_info["run_id"], per_class_table(result), PER_CLASS_TABLE)
    mc.log_artifacts(run_info["run_id"], str(paths.evaluation_dir), "evaluation")
    return result


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


def run_compare(params: Params) -> CompareOutcome:
    """Diagnose this run's curves, compare with the champion and recent runs, gate, report.

    Reads this run, the champion (alias ``champion`` of ``tracking.registered_model``) and the last
    ``compare.recent_runs`` training runs from MLflow. Writes MLflow tags (``curvewatch.verdict``,
    ``curvewatch.plateau_onset_epoch``, ``curvewatch.gate``, ``curvewatch.decision`` ...), the run
    description (``mlflow.note.content``: the diagnosis paragraph and a link to the report) and
    metrics on the run, the report (markdown, HTML, PNG, JSON) into ``paths.compare_dir`` and as
    run artifacts, ``paths.compare_metrics``. Registers the model version and moves the
    ``champion`` alias as ``pipelines/registry.py`` decides (``compare.promotion``).

    Raises:
        GateFailed: the gate failed and ``compare.fail_on_regression`` is true (everything above is
            still written first).
    """
    from pipelines import registry, tracking
    from pipelines.curves.batch import mlflow_metrics, mlflow_tags
    from pipelines.curves.compare import compare_curves, series_stall
    from pipelines.curves.diagnose import diagnose
    from pipelines.curves.gate import gate
    from pipelines.curves.report import render_report

    paths, cfg = params.paths, params.compare
    run_info = _read_json(paths.run_file, "train")
    run_id = run_info["run_id"]
    mc = tracking.client()
    challenger_curve = tracking.run_curve(mc, run_id)
    champion = tracking.get_champion(mc, params.tracking.registered_model)
    if champion is not None and champion.run_id == run_id:
        champion = None  # re-running compare on the champion itself: nothing to compare against
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
        tracking.log_metrics(mc, run_id, {"baseline.val_accuracy": baseline})
    diagnosis = diagnose(challenger_curve, config=params.diagnose, baseline_accuracy=baseline)
    import pandas as pd

    challenger_preds = pd.read_parquet(paths.evaluation_dir / "predictions.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        champion_preds = tracking.download_predictions(mc, champion.run_id, Path(tmp)) if champion else None
    if champion_preds is not None and set(champion_preds["id"]) != set(challenger_preds["id"]):
        # A new data version (e.g. images added to the folder) moved the test split: a paired gate
        # needs both models scored on the same examples, so score the champion on this one.
        log.info(
            "the test split changed since the champion's run: scoring champion v%s on it", champion.version
        )
        champion_preds = _rescore_champion(params, mc, champion)
    seed_accuracies = (
        tracking.same_config_test_accuracies(mc, run_info["experiment_id"], champion.run_id, exclude=[run_id])
        if champion
        else {}
    )
    gate_result = gate(
        challenger_preds, champion_preds, alpha=cfg.alpha, champion_seed_accuracies=seed_accuracies
    )
    cross = compare_curves(challenger_curve, champion_curve, recent)
    findings = list(cross) + ([gate_result.finding] if gate_result.finding else [])
    if champion is not None and gate_result.champion_accuracy is not None:
        # The scheduled series, oldest first: the recent retrains, then this one, against the champion.
        series = [r.data.metrics.get("test_accuracy") for r in recent_runs][::-1]
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
        completed=challenger_curve.complete,
        gate_result=gate_result,
        p_better=p_better,
        rule=cfg.promotion,
        alpha=cfg.alpha,
        margin=cfg.margin,
        best_val_accuracy=_best(challenger_curve.metrics.get("val_accuracy")),
        best_epoch=diagnosis.best_epoch,
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
            "curvewatch.champion_run_id": champion.run_id if champion else None,
        }
    )
    tracking.set_tags(mc, run_id, tags)
    numbers = mlflow_metrics(diagnosis) | {
        "gate.p_value": gate_result.p_value,
        "gate.delta": gate_result.delta,
        "gate.passed": gate_result.passed,
    }
    tracking.log_metrics(mc, run_id, numbers)
    for p in (report.markdown, report.html, report.png, report.json):
        mc.log_artifact(run_id, str(p), "curvewatch")
    atomic_write_json(paths.compare_metrics, {"compare": _finite(numbers) | {"promoted": promoted}})

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
    if not gate_result.passed and cfg.fail_on_regression:
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


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    import math

    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or v is None:
            out[k] = v
        elif isinstance(v, int | float) and math.isfinite(v):
            out[k] = v
    return out
