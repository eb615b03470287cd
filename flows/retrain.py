"""The Prefect flow ``retrain``: fetch -> prepare -> validate -> baseline | train -> evaluate -> compare.

Orchestration only: each task wraps one ``pipelines.steps.run_*`` function, the same function that
the matching ``dvc.yaml`` stage calls through ``curvewatch <stage>``, and the decisions live in
``pipelines.schedule`` and ``pipelines.versioning``:

* inside the DVC project, one ``dvc status`` of every stage of ``dvc.yaml`` comes first; fetch,
  prepare, validate and baseline run only when it says they changed (as ``dvc repro`` would;
  fetch's deps include the image folder, so new images show); the baseline runs beside training;
* after fetching, the run is skipped when the data version and params equal those of the last
  successful run (:func:`pipelines.schedule.decide_retrain`), in one log line; inside the DVC project
  only when, besides, ``dvc.lock`` records that run (not a run outside the project, e.g. with ``-S``
  overrides, nor one whose commit or push failed) and ``dvc status`` showed no stage other than
  fetch changed (an edited code file or expectation suite is a dep of its stage): else the log
  line names what changed, and the run retrains and records;
* at the end the stages that ran are recorded with ``dvc commit`` and pushed (``dvc.lock`` is then
  clean), and ``dvc.lock`` is attached to the MLflow run, whose lock tag says pending from before
  the gate until then (a run that failed in between, e.g. its commit or push, is not skipped
  after: the next run retrains); a run whose gate failed (``compare.fail_on_regression``) is
  recorded too, so the next run with the same data, params and code skips after it;
* a gate failure and a series stall emit the Prefect events ``curvewatch.regression`` and
  ``curvewatch.series_stall``;
* MLflow at the start, and Keras with its backend once the run will train, are imported with
  automatic garbage collection off and then frozen out of Python's full collections
  (:func:`pipelines.heap.freeze_imported`; a process that ran the flow before does nothing).

I/O-bound tasks retry; the train task retries once too, resuming from Keras' ``BackupAndRestore``
state (or, when the fit had ended, from the finished training kept beside it) rather than
starting over, except after a SIGTERM or SIGINT (``TrainingInterrupted``: a worker cancelling the
flow run, or Ctrl-C), which fails the flow run with the backup kept. A failed data validation
stops the flow before training.

The flow function is ``async`` although its work is synchronous: every task runs in the calling
thread, as in a sync flow, and ``.submit`` uses the same thread pool; only the report artifact is
awaited (``acreate_markdown_artifact``: in an async flow the sync name returns a coroutine). The
reason is Prefect's flow-run heartbeat (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, default 180 s, what
zombie-run detection reads): its thread sleeps in 1 s ticks, and Prefect's sync engine joins it when
the flow returns, so every sync flow run ends up to 1 s after its work (measured: an empty sync flow
run 1.07 s, an empty async one 0.14-0.27 s; 0.5 s on average for a long run). The async engine tells
the thread to stop and does not wait for its tick; heartbeats, states, logs, task runs and artifacts
are the same. As in a sync flow, every task run uses one Prefect API client (the body runs inside
``SyncClientContext``). From synchronous code call :func:`run_retrain`; a deployment's worker runs the flow as
it runs any async flow.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import SyncClientContext

from pipelines import heap, schedule, steps, tracking, versioning
from pipelines.config import Params, load_params
from pipelines.train import TrainingInterrupted


def _retry_fetch(task, task_run, state) -> bool:
    """The fetch task's ``retry_condition_fn``: retry a download (:class:`pipelines.fetch.
    DownloadError`) or an unexpected error, not data that is wrong where it lies (a missing image
    folder, a bad file on disk: ``DataError``), which a second try reads again the same."""
    from pipelines.fetch import DataError, DownloadError

    error = state.result(raise_on_failure=False)
    return not isinstance(error, DataError) or isinstance(error, DownloadError)


@task(name="fetch", retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_fetch, cache_policy=NO_CACHE)
def fetch_task(params: Params):
    return steps.run_fetch(params)


@task(name="decide", cache_policy=NO_CACHE)
def decide_task(params: Params, force: bool, changed: list[str] | None) -> schedule.RetrainDecision:
    current = schedule.current_fingerprint(params)
    last = schedule.last_successful_fingerprint(params)
    return schedule.decide_retrain(current, last, force=force, changed_stages=changed)


@task(name="dvc-status", cache_policy=NO_CACHE)
def changed_task(project: versioning.DvcProject, stages: list[str]) -> set[str]:
    return versioning.changed_stages(project, stages)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare_task(params: Params):
    return steps.run_prepare(params)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(params: Params):
    return steps.run_validate(params)


@task(name="baseline", cache_policy=NO_CACHE)
def baseline_task(params: Params) -> float:
    return steps.run_baseline(params)


def _retry_unless(*errors: type[BaseException]):
    """A task's ``retry_condition_fn`` (Prefect 3, https://docs.prefect.io/v3/how-to-guides/workflows/retries,
    "Retry with a custom condition"): retry a failed run unless it raised one of ``errors``, the failures
    that a second try would repeat or that someone asked for."""

    def condition(task, task_run, state) -> bool:
        return not isinstance(state.result(raise_on_failure=False), errors)

    return condition


# A SIGTERM or SIGINT (a worker cancelling the flow run, Ctrl-C) stops training on purpose
# (TrainingInterrupted, backup kept): a retry would resume it against the operator's wish.
@task(
    name="train",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_unless(TrainingInterrupted),
    cache_policy=NO_CACHE,
)
def train_task(params: Params) -> steps.TrainOutcome:
    return steps.run_train(params)


@task(name="evaluate", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def evaluate_task(params: Params, model=None):
    return steps.run_evaluate(params, model=model)


@task(
    name="compare",
    retries=2,
    retry_delay_seconds=5,
    # Retried on I/O trouble, never on a failed gate (the same runs give the same verdict).
    retry_condition_fn=_retry_unless(steps.GateFailed),
    cache_policy=NO_CACHE,
)
def compare_task(params: Params) -> steps.CompareOutcome:
    return steps.run_compare(params)


@task(name="dvc-commit-data", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def commit_data_task(project: versioning.DvcProject, stages: list[str]) -> None:
    versioning.commit_and_push(project, stages, push=False)


@task(name="dvc-commit", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def version_task(project: versioning.DvcProject, stages: list[str], run_id: str) -> str:
    versioning.commit_and_push(project, stages)
    return versioning.record_in_run(project, run_id)


@task(name="series-watch", cache_policy=NO_CACHE)
def watch_task(params: Params, outcome: steps.CompareOutcome) -> list[str]:
    from prefect.events import emit_event

    model = params.tracking.registered_model
    events = schedule.watch_events(outcome.gate_decision, outcome.findings)
    for e in events:
        emit_event(
            event=e.event,
            resource={
                "prefect.resource.id": schedule.MODEL_RESOURCE_PREFIX + model,
                "prefect.resource.name": model,
            },
            payload={"message": e.message, "mlflow_run_id": outcome.run_id, "gate": outcome.gate_decision},
        )
    return [e.event for e in events]


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
    skipped: str | None = None  # the one-line reason when training was skipped
    dvc_lock_md5: str | None = None
    ui_command: str = "make ui"

    def render(self) -> str:
        lines = ["", "curvewatch retrain summary", "-" * 26]
        if self.skipped:
            lines.append(f"skipped         : {self.skipped}")
        else:
            verdict = "passed" if self.validation_passed else "FAILED"
            lines.append(f"data validation : {verdict}  {self.validation_message}")
        if self.run_id:
            lines += [
                f"MLflow run      : {self.run_id}",
                f"test accuracy   : {self.test_accuracy:.4f}",
                f"diagnosis       : {self.verdict}: {self.diagnosis}",
                f"champion        : {'promoted to champion' if self.promoted else 'kept the old champion'}"
                f" ({self.gate})",
                f"report          : {self.report}",
            ]
            if self.dvc_lock_md5:
                lines.append(
                    f"dvc.lock        : md5 {self.dvc_lock_md5} (committed; pushed if a DVC remote is set)"
                )
        lines.append(f"MLflow UI       : {self.ui_command}")
        return "\n".join(lines)


async def _report_artifact(outcome: steps.CompareOutcome) -> None:
    # Awaited: in an async flow Prefect's create_markdown_artifact returns a coroutine.
    await acreate_markdown_artifact(
        outcome.report_markdown.read_text(), key="curvewatch-report", description="curvewatch curve diagnosis"
    )


def _expectations_checked(params: Params) -> float:
    """Expectations counted by the last validation (``paths.validation_metrics``)."""
    import json

    metrics = json.loads(params.paths.validation_metrics.read_text())
    return float(metrics.get("validation", {}).get("expectations_evaluated", 0))


@flow(name="retrain", log_prints=True)
async def retrain(
    params_path: str = "params.yaml",
    profile: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
) -> RetrainSummary:
    """Retrain on the configured dataset, diagnose the curves and gate against the champion.

    Args:
        params_path: the params file (``params.yaml``).
        profile: ``quick`` or ``full`` (default: ``base.profile`` in the file).
        overrides: ``section.key=value`` strings, e.g. ``["train.epochs=2"]``.
        force: retrain even when the data version and params equal the last successful run's.

    Returns:
        RetrainSummary (``skipped`` set when nothing changed). Raises ``ValidationFailed`` (flow
        state Failed) when the data fails its suites, ``GateFailed`` when the gate fails and
        ``compare.fail_on_regression`` is set, and ``VersioningError`` when DVC cannot record the run.
    """
    # One Prefect API client for every task run of this flow run, as Prefect's sync engine keeps one.
    # Without it each sync task run called here opens its own SyncPrefectClient, which loads
    # certifi's CA bundle into a new SSL context (measured: about 20 ms a task run, 0.5 s against
    # 0.25 s for an async flow of 14 empty tasks), even for an http:// API.
    with SyncClientContext.get_or_create():
        return await _retrain(params_path, profile, overrides, force)


async def _retrain(
    params_path: str, profile: str | None, overrides: list[str] | None, force: bool
) -> RetrainSummary:
    """The body of :func:`retrain` (same arguments), inside its flow run and client context."""
    logger = get_run_logger()
    # Every run reads MLflow (the decision below): import it with automatic garbage collection off
    # and freeze the imported heap (pipelines/heap.py); Keras waits until the run will train.
    heap.freeze_imported(preload=("mlflow",))
    params = load_params(params_path, profile=profile, overrides=overrides)
    project, not_versioned = versioning.dvc_project(params_path, profile=profile, overrides=overrides)
    if project is None:
        logger.info("not recorded in dvc.lock: %s", not_versioned)
    skippable = list(schedule.SKIPPABLE_STAGES)
    # One `dvc status` for every stage: fetch's deps include the image folder, so an added, removed
    # or edited image shows here, and an unchanged folder (or Fashion-MNIST) is not re-read; a stage
    # whose code, expectation suite, params or outputs changed keeps an unchanged data version from
    # skipping (fetch, PIPELINE_STAGES[0], is left out of that: it is rerun and committed either way).
    changed = changed_task(project, list(schedule.PIPELINE_STAGES)) if project else None
    fetched = changed is None or "fetch" in changed
    if fetched:
        fetch_task(params)
    stale = None if changed is None else [s for s in schedule.PIPELINE_STAGES[1:] if s in changed]
    decision = decide_task(params, force, stale)
    logger.info(decision.reason)
    if not decision.retrain:
        if project is not None and fetched:  # e.g. fetch's code changed: dvc.lock records the rerun
            commit_data_task(project, ["fetch"])
        return RetrainSummary(validation_passed=True, validation_message="", skipped=decision.reason)

    if project is not None and fetched:  # the new raw data decides what runs after it
        changed = changed_task(project, skippable)
    run = schedule.stages_to_run(changed if changed is not None else set(skippable))
    not_rerun = ([] if fetched else ["fetch"]) + [s for s in skippable if s not in run]
    if not_rerun:
        logger.info("unchanged since dvc.lock, not rerun: %s", ", ".join(not_rerun))
    if "prepare" in run:
        prepare_task(params)
    if "validate" in run:
        try:
            validate_task(params)
        except steps.ValidationFailed as exc:
            await acreate_markdown_artifact(
                f"# Data validation failed\n\n```\n{exc}\n```\n",
                key="data-validation",
                description="curvewatch data validation",
            )
            logger.error(str(exc))
            raise
    # From here on, a full garbage collection would scan every imported module's objects (0.6-0.9 s,
    # after training in about half the runs): freeze them, TensorFlow's included (pipelines/heap.py).
    heap.freeze_imported(preload=("keras",))
    # The baseline does not feed training (compare reads it): run it beside the train task, and so
    # is the dvc commit of the data stages that ran (training reads but never writes them).
    baseline = baseline_task.submit(params) if "baseline" in run else None
    data_stages = [*(["fetch"] if fetched else []), *(s for s in ("prepare", "validate") if s in run)]
    committed = commit_data_task.submit(project, data_stages) if project and data_stages else None
    trained = train_task(params)
    if baseline is not None:
        baseline.result()
    if committed is not None:
        committed.result()
    evaluate_task(params, trained.model)
    # From before the gate tag (compare) until version_task has recorded the run in dvc.lock and
    # pushed it, its lock tag says pending: a failure or a kill in between (compare, the report,
    # the series watch, the commit or push) leaves a run the next scheduled run retrains after,
    # not one it skips after (pipelines.schedule.last_fingerprint). Outside the DVC project it says
    # outside-project for good: dvc.lock never records the run, and no run in the project skips after it.
    lock = tracking.LOCK_PENDING if project is not None else tracking.LOCK_OUTSIDE
    tracking.set_tags(tracking.client(), trained.run_id, {tracking.LOCK_TAG: lock})
    stages = [*(["baseline"] if "baseline" in run else []), *schedule.TRAINING_STAGES]
    try:
        outcome = compare_task(params)
    except steps.GateFailed as exc:
        if exc.outcome is not None:  # the report and the series watch still go out
            await _report_artifact(exc.outcome)
            watch_task(params, exc.outcome)
        if project is not None:
            # A failed gate is final (compare.fail_on_regression): the same data and params give the
            # same verdict. Compare wrote its outputs before failing, so the run is recorded as any
            # gated run (dvc.lock describes the workspace, `dvc status` is clean) and the next run
            # skips after it; if the commit or push fails, the tag stays pending and it retrains.
            try:
                version_task(project, stages, trained.run_id)
            except Exception as version_error:  # noqa: BLE001 - the gate's failure is the one to report
                logger.warning("run %s: not recorded in dvc.lock (%s)", trained.run_id, version_error)
        raise
    await _report_artifact(outcome)
    watch_task(params, outcome)
    lock_md5 = version_task(project, stages, trained.run_id) if project is not None else None
    return RetrainSummary(
        validation_passed=True,
        validation_message=f"({_expectations_checked(params):.0f} expectations)",
        run_id=trained.run_id,
        test_accuracy=outcome.test_accuracy,
        verdict=outcome.verdict,
        diagnosis=outcome.diagnosis_message,
        promoted=outcome.promoted,
        gate=outcome.gate_message,
        report=outcome.report_markdown,
        dvc_lock_md5=lock_md5,
    )


def run_retrain(**kwargs: Any) -> Any:
    """Run the flow :func:`retrain` from synchronous code, in this thread, and return its result.

    Args:
        **kwargs: :func:`retrain`'s parameters, and Prefect's ``return_state=True`` for the final
            ``State`` instead of the :class:`RetrainSummary`.

    Raises:
        Whatever the flow raises (``ValidationFailed``, ``GateFailed``, ``VersioningError``...).
        KeyboardInterrupt at once on Ctrl-C, as a sync flow would: unlike ``asyncio.run``, which
        only cancels the flow at its next ``await`` (after the tasks have run), this installs no
        SIGINT handler; training installs its own (``pipelines.train``) and resumes from its backup.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(retrain(**kwargs))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
