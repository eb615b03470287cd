"""The Prefect flow ``tune``: the retrain flow's validated data -> Optuna study -> the same gate.

Orchestration only: fetch / prepare / validate are the retrain flow's own tasks; ``tune-start``
opens the MLflow parent run, ``tune.workers`` workers run the trials (one in process, or N
concurrent tasks each running ``curvewatch tune-worker`` in its own process against the shared
Optuna storage: ``CURVEWATCH_OPTUNA_STORAGE``, e.g. ``infra/postgres.sh url optuna``), each trial a
nested MLflow run pruned by :class:`pipelines.curves.pruner.CurvePruner`; ``tune-finish`` closes
the study. The best trial's model then goes through the retrain
flow's ``evaluate`` and ``compare`` tasks (the regression gate against the champion), and the
tuning optimism (best validation accuracy against its test accuracy) lands on the parent run.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.retrain import compare_task, evaluate_task, fetch_task, prepare_task, validate_task
from pipelines import heap, steps
from pipelines.config import Params, load_params


@task(name="tune-start", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def start_task(params: Params) -> steps.TuneStudy:
    return steps.start_tune(params)


@task(name="tune-worker", cache_policy=NO_CACHE)
def worker_task(params: Params, study: steps.TuneStudy) -> None:
    heap.freeze_imported(preload=("mlflow", "keras"))  # imported with collection off, then frozen
    steps.run_tune_worker(params, study)


def worker_command(
    study: steps.TuneStudy, params_path: str, profile: str | None, overrides: list[str], worker: int = 0
) -> list[str]:
    """The ``curvewatch tune-worker`` command line of worker ``worker`` (its index) of ``study``."""
    import sys
    from pathlib import Path

    command = [
        str(Path(sys.executable).with_name("curvewatch")),
        "tune-worker",
        "--study-name",
        study.study_name,
        "--parent-run-id",
        study.parent_run_id,
        "--experiment-id",
        study.experiment_id,
        "--data-version",
        study.data_version,
        "--worker",
        str(worker),
        "--params",
        params_path,
    ]
    command += ["--profile", profile] if profile else []
    for override in overrides:
        command += ["--set", override]
    return command


@task(name="tune-worker-process", cache_policy=NO_CACHE)
def worker_process_task(
    study: steps.TuneStudy, params_path: str, profile: str | None, overrides: list[str], worker: int
) -> int:
    """One worker in its own process (``curvewatch tune-worker``); returns its exit code. A worker
    that dies (e.g. SIGKILL) does not fail the flow: its trial is retried by the others, and
    ``finish_task`` judges the study."""
    import subprocess

    command = worker_command(study, params_path, profile, overrides, worker)
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        get_run_logger().warning("tuning worker exited with %d; its trial is retried by the others", code)
    return code


@task(name="tune-finish", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def finish_task(params: Params, study: steps.TuneStudy) -> steps.TuneOutcome:
    return steps.finish_tune(params, study)


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
    files: str = ""  # the folder of the best model, its evaluation and gate report

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
                *(
                    [f"files           : {self.files} (best model, evaluation, gate report)"]
                    if self.files
                    else []
                ),
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
    study = start_task(params)
    try:
        if params.tune.workers == 1:
            worker_task(params, study)
        else:
            workers = [
                worker_process_task.submit(study, params_path, profile, list(overrides or []), index)
                for index in range(params.tune.workers)
            ]
            codes = [w.result() for w in workers]
            logger.info("%d tuning workers finished with exit codes %s", len(codes), codes)
    except BaseException as exc:  # finish_task closes the parent run; nothing else would
        steps.fail_tune(study, exc)
        raise
    # The best trial's model, evaluation and gate report go under paths.tune_dir/<study>/, never on
    # the train / evaluate / compare stages' DVC-tracked outputs.
    staged = steps.tune_outputs(params, study)
    outcome = finish_task(staged, study)
    evaluate_task(staged)
    compared = compare_task(staged)
    test_accuracy, finding = optimism_task(staged, outcome)
    summary = TuneSummary(
        outcome=outcome,
        test_accuracy=test_accuracy,
        optimism=finding.message if finding else "validation and test agree",
        promoted=compared.promoted,
        gate=compared.gate_message,
        files=str(staged.paths.model_file.parent),
    )
    create_markdown_artifact(
        f"```\n{summary.render()}\n```\n", key="curvewatch-tune", description="curvewatch tune summary"
    )
    logger.info("best trial #%d: val_accuracy %.4f", outcome.best_number, outcome.best_val_accuracy)
    return summary
