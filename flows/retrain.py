"""The Prefect flow ``retrain``: fetch -> prepare -> validate -> baseline -> train -> evaluate -> compare.

Orchestration only: each task wraps one ``pipelines.steps.run_*`` function, the same function that
the matching ``dvc.yaml`` stage calls through ``curvewatch <stage>``. I/O-bound tasks retry; the
train task retries once too, resuming from Keras' ``BackupAndRestore`` state rather than starting
over. A failed data validation stops the flow before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import steps
from pipelines.config import Params, load_params


@task(name="fetch", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def fetch_task(params: Params):
    return steps.run_fetch(params)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(params: Params):
    return steps.run_prepare(params)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(params: Params):
    return steps.run_validate(params)


@task(name="baseline", cache_policy=NO_CACHE)
def baseline_task(params: Params) -> float:
    return steps.run_baseline(params)


@task(name="train", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def train_task(params: Params) -> steps.TrainOutcome:
    return steps.run_train(params)


@task(name="evaluate", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def evaluate_task(params: Params):
    return steps.run_evaluate(params)


@task(name="compare", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def compare_task(params: Params) -> steps.CompareOutcome:
    return steps.run_compare(params)


@dataclass
class RetrainSummary:
    """What ``make run`` prints at the end of the flow."""

    validation_passed: bool
    validation_message: str
    run_id: str | None = None
    test_accuracy: float | None = None
    verdict: str | None = None
    diagnosis: str | None = None
    promoted: bool | None = None
    gate: str | None = None
    report: Path | None = None
    ui_command: str = "make ui"

    def render(self) -> str:
        lines = ["", "curvewatch retrain summary", "-" * 26]
        lines.append(
            f"data validation : {'passed' if self.validation_passed else 'FAILED'}  {self.validation_message}"
        )
        if self.run_id:
            lines += [
                f"MLflow run      : {self.run_id}",
                f"test accuracy   : {self.test_accuracy:.4f}",
                f"diagnosis       : {self.verdict}: {self.diagnosis}",
                f"champion        : {'promoted to champion' if self.promoted else 'kept the old champion'}"
                f" ({self.gate})",
                f"report          : {self.report}",
            ]
        lines.append(f"MLflow UI       : {self.ui_command}")
        return "\n".join(lines)


@flow(name="retrain", log_prints=True)
def retrain(params_path: str = "params.yaml", profile: str | None = None, overrides: list[str] | None = None):
    """Retrain on the configured dataset, diagnose the curves and gate against the champion.

    Args:
        params_path: the params file (``params.yaml``).
        profile: ``quick`` or ``full`` (default: ``base.profile`` in the file).
        overrides: ``section.key=value`` strings, e.g. ``["train.epochs=2"]``.

    Returns:
        RetrainSummary. Raises ``ValidationFailed`` (flow state Failed) when the data fails its
        suites, and ``GateFailed`` when the gate fails and ``compare.fail_on_regression`` is set.
    """
    logger = get_run_logger()
    params = load_params(params_path, profile=profile, overrides=overrides)
    fetch_task(params)
    prepare_task(params)
    try:
        validation = validate_task(params)
    except steps.ValidationFailed as exc:
        create_markdown_artifact(
            f"# Data validation failed\n\n```\n{exc}\n```\n",
            key="data-validation",
            description="curvewatch data validation",
        )
        logger.error(str(exc))
        raise
    baseline_task(params)
    trained = train_task(params)
    evaluate_task(params)
    outcome = compare_task(params)
    create_markdown_artifact(
        outcome.report_markdown.read_text(), key="curvewatch-report", description="curvewatch curve diagnosis"
    )
    checked = validation.metrics.get("validation.expectations_evaluated", 0)
    summary = RetrainSummary(
        validation_passed=True,
        validation_message=f"({checked:.0f} expectations)",
        run_id=trained.run_id,
        test_accuracy=outcome.test_accuracy,
        verdict=outcome.verdict,
        diagnosis=outcome.diagnosis_message,
        promoted=outcome.promoted,
        gate=outcome.gate_message,
        report=outcome.report_markdown,
    )
    return summary
