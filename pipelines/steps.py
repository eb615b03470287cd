"""Stage entry points: read params and paths, call the pure stage functions, write outputs, track.

Each ``run_*`` function is one stage of ``dvc.yaml`` (called through ``curvewatch <stage>``) and one
task of the Prefect flow ``retrain`` (``flows/retrain.py``); nothing is implemented twice. Stage
logic lives in the stage modules (``fetch``, ``prepare``, ``validate``, ``train``, ``evaluate``,
``curves``); this module only wires files and MLflow around them.

Runs are linked across stages through ``<model_dir>/run.json``, written by the train stage: the
evaluate and compare stages log into the same MLflow run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import Params
from pipelines.io_utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class StageError(RuntimeError):
    """A stage cannot run: an input from an earlier stage is missing or the gate failed."""


class ValidationFailed(StageError):
    """Data validation failed; training must not start. ``str()`` lists the failed expectations."""

    def __init__(self, message: str, result: Any, run_id: str | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.run_id = run_id


class GateFailed(StageError):
    """The challenger failed the regression gate and ``compare.fail_on_regression`` is set."""


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

    Writes ``<metrics_dir>/validation.json`` (DVC metrics). On failure, records the failed
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
    atomic_write_json(params.paths.metrics_dir / "validation.json", _nested(result.metrics))
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
BASELINE_FILE = "baseline.json"


def run_baseline(params: Params) -> float:
    """Validation accuracy of a scikit-learn logistic regression on the same split.

    The curve diagnosis judges a plateau "low" against it (:func:`pipelines.baseline.baseline_accuracy`).
    It depends only on the prepared data and the seed, so it is computed once per data version
    (DVC content hash of ``paths.prepared_dir``) and kept in ``<metrics_dir>/baseline.json``; a
    scheduled retrain on unchanged data reuses it.
    """
    from pipelines import tracking
    from pipelines.baseline import baseline_accuracy

    path = params.paths.metrics_dir / BASELINE_FILE
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
    path = params.paths.metrics_dir / BASELINE_FILE
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
    validation results, per-epoch curves (step = epoch), the model (Keras flavour, registered as a
    new version of ``tracking.registered_model``). Writes ``<model_dir>/model.keras``,
    ``<model_dir>/run.json``, ``<plots_dir>/history.csv`` and ``<metrics_dir>/train.json``.

    Raises:
        StageError: the prepared data or validation results are missing.
    """
    import numpy as np

    from pipelines import tracking
    from pipelines.curves.callback import DiagnosisCallback
    from pipelines.prepare import load_manifest
    from pipelines.train import save_history_csv, save_model, train

    paths = params.paths
    validation_metrics = _read_json(paths.metrics_dir / "validation.json", "validate")
    data, classes = load_train_data(params)

    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    data_version = tracking.dvc_content_hash(paths.raw_dir)
    run = mc.create_run(
        exp_id,
        run_name=f"{params.train.model}-{params.base.profile}",
        tags={
            tracking.RUN_KIND_TAG: "train",
            "mlflow.source.git.commit": tracking.git_commit() or "unknown",
            "curvewatch.data_version": data_version,
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
        baseline = _read_baseline(params)
        if baseline is not None:
            tracking.log_metrics(mc, run_id, {"baseline.val_accuracy": baseline})

        diag_cb = DiagnosisCallback(
            epoch_budget=params.train.epochs,
            num_classes=data.num_classes,
            class_prior=(np.bincount(data.y_train, minlength=data.num_classes) / data.y_train.size).tolist(),
            baseline_accuracy=baseline,
            config=params.diagnose,
        )
        callbacks = (tracking.epoch_logger(mc, run_id), diag_cb, *extra_callbacks)
        result = train(
            params.train, data, seed=params.base.seed, backup_dir=paths.backup_dir, callbacks=callbacks
        )
        save_model(result.model, paths.model_dir / "model.keras")
        save_history_csv(result.history, paths.plots_dir / "history.csv")
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
        version = _log_model(mc, run_id, params, result.model, data.x_val[:2], classes)
    except BaseException:
        mc.set_terminated(run_id, status="FAILED")
        raise
    mc.set_terminated(run_id, status="FINISHED" if result.completed else "FAILED")
    atomic_write_json(
        paths.model_dir / RUN_FILE,
        {"run_id": run_id, "model_version": version, "experiment_id": exp_id, "data_version": data_version},
    )
    atomic_write_json(paths.metrics_dir / "train.json", {"train": summary})
    return TrainOutcome(
        run_id=run_id,
        model_version=version,
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


def _log_model(mc, run_id: str, params: Params, model, example, classes) -> str | None:
    """Log the Keras model to the run and register it; returns the new registered version."""
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
            registered_model_name=params.tracking.registered_model,
            metadata={"class_names": classes.get("class_names")},
        )
    return str(info.registered_model_version) if info.registered_model_version is not None else None


# ------------------------------------------------------------------------------------------ evaluate
def run_evaluate(params: Params):
    """Evaluate the trained model on the official test split; log into the training run.

    Writes ``paths.evaluation_dir`` (metrics.json, per_class.csv, confusion_matrix.png,
    predictions.parquet), ``<metrics_dir>/evaluate.json`` and ``<plots_dir>/confusion.csv``.
    """
    import keras

    from pipelines import tracking
    from pipelines.evaluate import evaluate, save_evaluation
    from pipelines.prepare import load_classes, load_split

    paths = params.paths
    run_info = _read_json(paths.model_dir / RUN_FILE, "train")
    model_path = paths.model_dir / "model.keras"
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
    atomic_write_json(paths.metrics_dir / "evaluate.json", {"evaluate": summary})
    preds = result.predictions
    paths.plots_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        paths.plots_dir / "confusion.csv",
        preds[["label", "predicted"]].rename(columns={"label": "actual"}).to_csv(index=False),
    )
    mc = tracking.client()
    tracking.log_metrics(mc, run_info["run_id"], summary)
    per_class = {}
    for row in result.per_class.itertuples(index=False):
        name = str(getattr(row, "class_name", getattr(row, "label", ""))).replace("/", "_").replace(" ", "_")
        per_class[f"test_precision.{name}"] = float(row.precision)
        per_class[f"test_recall.{name}"] = float(row.recall)
    tracking.log_metrics(mc, run_info["run_id"], per_class)
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
    ``curvewatch.plateau_onset_epoch``, ``curvewatch.gate`` ...) and metrics on the run, the report
    (markdown, HTML, PNG, JSON) into ``paths.compare_dir`` and as run artifacts,
    ``<metrics_dir>/compare.json``, and moves the ``champion`` alias when the gate passes.

    Raises:
        GateFailed: the gate failed and ``compare.fail_on_regression`` is true (everything above is
            still written first).
    """
    from pipelines import tracking
    from pipelines.curves.batch import mlflow_metrics, mlflow_tags
    from pipelines.curves.compare import compare_curves, series_stall
    from pipelines.curves.diagnose import diagnose
    from pipelines.curves.gate import gate
    from pipelines.curves.report import render_report

    paths, cfg = params.paths, params.compare
    run_info = _read_json(paths.model_dir / RUN_FILE, "train")
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

    baseline = mc.get_run(run_id).data.metrics.get("baseline.val_accuracy")
    diagnosis = diagnose(
        challenger_curve, config=params.diagnose, baseline_accuracy=baseline
    )
    import pandas as pd

    challenger_preds = pd.read_parquet(paths.evaluation_dir / "predictions.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        champion_preds = tracking.download_predictions(mc, champion.run_id, Path(tmp)) if champion else None
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

    report = render_report(
        paths.compare_dir,
        challenger=challenger_curve,
        diagnosis=diagnosis,
        champion=champion_curve,
        recent=recent,
        gate_result=gate_result,
        findings=findings,
        title=f"curvewatch report for run {run_id}",
    )
    promoted = bool(gate_result.passed) and run_info.get("model_version") is not None
    if promoted:
        tracking.promote(mc, params.tracking.registered_model, run_info["model_version"])
    tags = mlflow_tags(diagnosis) | {
        "curvewatch.findings": ",".join(sorted({f.code for f in diagnosis.findings + findings})) or "none",
        "curvewatch.gate": gate_result.decision,
        "curvewatch.champion_run_id": champion.run_id if champion else None,
        "curvewatch.promoted": str(promoted).lower(),
    }
    tracking.set_tags(mc, run_id, tags)
    numbers = mlflow_metrics(diagnosis) | {
        "gate.p_value": gate_result.p_value,
        "gate.delta": gate_result.delta,
        "gate.passed": gate_result.passed,
    }
    tracking.log_metrics(mc, run_id, numbers)
    for p in (report.markdown, report.html, report.png, report.json):
        mc.log_artifact(run_id, str(p), "curvewatch")
    atomic_write_json(
        paths.metrics_dir / "compare.json", {"compare": _finite(numbers) | {"promoted": promoted}}
    )

    diag_msg = "; ".join(f.message for f in diagnosis.findings) or diagnosis.verdict
    gate_msg = gate_result.finding.message if gate_result.finding else _gate_sentence(gate_result)
    outcome = CompareOutcome(
        run_id=run_id,
        verdict=diagnosis.verdict,
        diagnosis_message=diag_msg,
        promoted=promoted,
        gate_decision=gate_result.decision,
        gate_message=gate_msg,
        report_markdown=report.markdown,
        report_html=report.html,
        test_accuracy=float(gate_result.challenger_accuracy),
        champion_run_id=champion.run_id if champion else None,
        findings=[{"code": f.code, "message": f.message} for f in diagnosis.findings + findings],
    )
    if not gate_result.passed and cfg.fail_on_regression:
        raise GateFailed(f"regression gate failed: {gate_msg}")
    return outcome


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    import math

    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or v is None:
            out[k] = v
        elif isinstance(v, int | float) and math.isfinite(v):
            out[k] = v
    return out


def _gate_sentence(g) -> str:
    if g.champion_accuracy is None:
        return f"no champion yet: this run ({g.challenger_accuracy:.4f} test accuracy) becomes the first"
    return (
        f"{g.decision}: challenger {g.challenger_accuracy:.4f} vs champion {g.champion_accuracy:.4f} "
        f"on {g.n_examples} paired test images ({g.test}, p = {g.p_value:.3g})"
    )


# ---------------------------------------------------------------------------------------------- tune
@dataclass
class TuneOutcome:
    """What :func:`run_tune` returns (no models: they are on disk and in MLflow)."""

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
    ``curvewatch.pruned_because``; ended FINISHED (complete or pruned) or FAILED, never left RUNNING."""

    def __init__(self, mc, experiment_id: str, parent_run_id: str, params: Params, num_classes: int) -> None:
        self.mc, self.experiment_id, self.parent_run_id = mc, experiment_id, parent_run_id
        self.params, self.num_classes = params, num_classes
        self.run_ids: dict[int, str] = {}

    def start(self, number: int, sampled: dict[str, Any], cfg) -> tuple:
        from mlflow.entities import Param

        from pipelines import tracking

        run = self.mc.create_run(
            self.experiment_id,
            run_name=f"trial-{number:03d}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                tracking.RUN_KIND_TAG: "tune_trial",
                "curvewatch.trial": str(number),
                "mlflow.source.git.commit": tracking.git_commit() or "unknown",
            },
        )
        run_id = run.info.run_id
        self.run_ids[number] = run_id
        flat = {f"train.{k}": v for k, v in cfg.model_dump(mode="json").items()}
        self.mc.log_batch(run_id, params=[Param(k, str(v)) for k, v in flat.items()])
        return (tracking.epoch_logger(self.mc, run_id),)

    def finish(self, record) -> None:
        from pipelines import tracking
        from pipelines.curves.batch import mlflow_metrics, mlflow_tags
        from pipelines.curves.callback import diagnose_history

        run_id = self.run_ids.get(record.number)
        if run_id is None:
            return
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
                    tracking.log_metrics(self.mc, run_id, mlflow_metrics(diagnosis))
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


def start_tune(params: Params) -> TuneStudy:
    """Open the MLflow parent run (kind ``tune``: resolved config, search space) and name the study.

    Raises:
        StageError: the validation results are missing (run the validate stage first).
    """
    from pipelines import tracking

    paths = params.paths
    _read_json(paths.metrics_dir / "validation.json", "validate")
    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, params.tracking.experiment)
    data_version = tracking.dvc_content_hash(paths.raw_dir)
    parent = mc.create_run(
        exp_id,
        run_name=f"tune-{params.tune.study_name}",
        tags={
            tracking.RUN_KIND_TAG: "tune",
            "mlflow.source.git.commit": tracking.git_commit() or "unknown",
            "curvewatch.data_version": data_version,
            "curvewatch.profile": params.base.profile,
        },
    )
    parent_id = parent.info.run_id
    storage = optuna_storage_url(params)
    study_name = f"{params.tune.study_name}-{parent_id[:8]}"
    try:
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


def run_tune_worker(params: Params, study: TuneStudy, *, until_finished: int | None = None) -> None:
    """One worker of ``study``: trials (each a nested MLflow run) until ``until_finished`` trials
    of the study are complete or pruned (default ``tune.n_trials``). Several may run at once, in
    separate processes, on one RDB storage."""
    from pipelines import tracking
    from pipelines.tune import tune

    data, _ = load_train_data(params)
    mc = tracking.client()
    hooks = MlflowTrialHooks(mc, study.experiment_id, study.parent_run_id, params, data.num_classes)
    try:
        tune(
            params,
            data,
            storage=study.storage,
            study_name=study.study_name,
            trial_dir=params.paths.tune_dir / study.study_name,
            hooks=hooks,
            until_finished=until_finished or params.tune.n_trials,
        )
    except ValueError as exc:
        if "completed" not in str(exc):  # "no trial completed" is for finish_tune to judge
            raise


def finish_tune(params: Params, study: TuneStudy) -> TuneOutcome:
    """Close the study: Optuna's plots and the best parameters on the parent run, orphaned child
    runs (a killed worker's) ended FAILED, and the best trial's model staged for the gate.

    The best trial's model is logged to its child run and registered, and written to
    ``<model_dir>/model.keras`` with ``run.json`` naming the child run, so that
    :func:`run_evaluate` and :func:`run_compare` gate it exactly like a retrain.

    Raises:
        ValueError: no trial of the study completed.
    """
    import keras
    import optuna

    from pipelines import tracking
    from pipelines.train import save_model

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
        epochs_spent = sum(len(t.intermediate_values) for t in finished)
        trials_run = sum(1 for t in finished if t.state != optuna.trial.TrialState.FAIL)
        best = optuna_study.best_trial
        tracking.log_metrics(
            mc,
            parent_id,
            {
                "tune.best_val_accuracy": float(best.value),
                "tune.epochs_spent": epochs_spent,
                "tune.epochs_without_pruning": trials_run * params.train.epochs,
                **{f"tune.trials_{k.lower()}": v for k, v in states.items()},
            },
        )
        mc.log_dict(parent_id, best.params, "tune/best_params.json")
        tracking.set_tags(mc, parent_id, {f"best.{k}": v for k, v in best.params.items()})
        best_run_id = runs[str(best.number)]
        data, classes = load_train_data(params)
        model = keras.saving.load_model(Path(best.user_attrs["model_path"]))
        save_model(model, paths.model_dir / "model.keras")
        tracking.set_tags(mc, best_run_id, {tracking.RUN_KIND_TAG: "train", "curvewatch.tune_best": "true"})
        version = _log_model(mc, best_run_id, params, model, data.x_val[:2], classes)
        del model
    except BaseException:
        mc.set_terminated(parent_id, status="FAILED")
        raise
    mc.set_terminated(parent_id, status="FINISHED")
    atomic_write_json(
        paths.model_dir / RUN_FILE,
        {
            "run_id": best_run_id,
            "model_version": version,
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
        model_version=version,
        epochs_spent=epochs_spent,
        epochs_without_pruning=trials_run * params.train.epochs,
        states=states,
    )


def run_tune(params: Params) -> TuneOutcome:
    """:func:`start_tune`, one in-process :func:`run_tune_worker`, :func:`finish_tune`."""
    study = start_tune(params)
    try:
        run_tune_worker(params, study)
    except BaseException:
        from pipelines import tracking

        tracking.client().set_terminated(study.parent_run_id, status="FAILED")
        raise
    return finish_tune(params, study)


def run_tune_optimism(params: Params, outcome: TuneOutcome) -> tuple[float, Any]:
    """After :func:`run_evaluate` scored the best trial on the test split: the tuning optimism
    (best validation accuracy minus its test accuracy) and the engine's ``tuning_optimism`` finding
    (None when validation and test agree), logged on the parent run.

    Returns:
        ``(test_accuracy, finding_or_None)``.
    """
    from pipelines import tracking
    from pipelines.curves.compare import tuning_optimism

    test_accuracy = float(
        _read_json(params.paths.metrics_dir / "evaluate.json", "evaluate")["evaluate"]["test_accuracy"]
    )
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
