"""The Prefect flow ``tune``: the retrain flow's validated data -> Optuna study -> the same gate.

Orchestration only: fetch / prepare / validate are the retrain flow's own tasks; ``tune`` wraps
:func:`pipelines.steps.run_tune` (MLflow parent run, a nested child run per trial, trials pruned by
:class:`pipelines.curves.pruner.CurvePruner`); the best trial's model then goes through the retrain
flow's ``evaluate`` and ``compare`` tasks (the regression gate against the champion), and the
tuning optimism (best validation accuracy against its test accuracy) lands on the parent run.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.retrain import compare_task, evaluate_task, fetch_task, prepare_task, validate_task
from pipelines import steps
from pipelines.config import Params, load_params


@task(name="tune", cache_policy=NO_CACHE)
def tune_task(params: Params) -> steps.TuneOutcome:
    return steps.run_tune(params)


@task(name="tuning-optimism", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def optimism_task(params: Params, outcome: steps.TuneOutcome):
    return steps.run_tune_optimism(params, outcome)


@dataclass
class TuneSummary:
    """What ``make tune`` prints at the end of the flow."""

    outcome: steps.TuneOutcome
    test_accuracy: float
    optimism: str
    promoted: bool
    gate: str
    ui_command: str = "make ui"

    def render(self) -> str:
        o = self.outcome
        saved = 1 - o.epochs_spent / o.epochs_without_pruning if o.epochs_without_pruning else 0.0
        trials = ", ".join(f"{n} {s.lower()}" for s, n in sorted(o.states.items()))
        return "\n".join(
            [
                "",
                "curvewatch tune summary",
                "-" * 23,
                f"study           : {o.study_name} ({trials})",
                f"best trial      : #{o.best_number} {o.best_params}",
                f"val accuracy    : {o.best_val_accuracy:.4f}",
                f"test accuracy   : {self.test_accuracy:.4f}",
                f"optimism        : {o.best_val_accuracy - self.test_accuracy:+.4f} (val - test):"
                f" {self.optimism}",
                f"epochs          : {o.epochs_spent} with pruning, {o.epochs_without_pruning} without"
                f" ({100 * saved:.0f}% saved)",
                f"champion        : {'promoted to champion' if self.promoted else 'kept the old champion'}"
                f" ({self.gate})",
                f"MLflow          : parent run {o.parent_run_id}, trials nested under it; {self.ui_command}",
            ]
        )


@flow(name="tune", log_prints=True)
def tune(params_path: str = "params.yaml", profile: str | None = None, overrides: list[str] | None = None):
    """Tune ``train`` on the validated data, log the study to MLflow, gate the best trial.

    Args:
        params_path: the params file (``params.yaml``).
        profile: ``quick`` or ``full`` (default: ``base.profile`` in the file).
        overrides: ``section.key=value`` strings, e.g. ``["tune.n_trials=4"]``.

    Returns:
        TuneSummary. Raises ``ValidationFailed`` when the data fails its suites (no trial runs).
    """
    logger = get_run_logger()
    params = load_params(params_path, profile=profile, overrides=overrides)
    fetch_task(params)
    prepare_task(params)
    validate_task(params)
    outcome = tune_task(params)
    evaluate_task(params)
    compared = compare_task(params)
    test_accuracy, finding = optimism_task(params, outcome)
    summary = TuneSummary(
        outcome=outcome,
        test_accuracy=test_accuracy,
        optimism=finding.message if finding else "validation and test agree",
        promoted=compared.promoted,
        gate=compared.gate_message,
    )
    create_markdown_artifact(
        f"```\n{summary.render()}\n```\n", key="curvewatch-tune", description="curvewatch tune summary"
    )
    logger.info("best trial #%d: val_accuracy %.4f", outcome.best_number, outcome.best_val_accuracy)
    return summary
