"""Decisions of a scheduled retrain: retrain or skip, and which events the series watch emits.

Pure functions over plain values; the flow (``flows/retrain.py``) gathers the inputs (the data
version of the fetched data, the params, the last successful run from MLflow) and acts on the result.
Like ``dvc repro`` skipping a stage whose deps and params are unchanged
(https://dvc.org/doc/command-reference/repro), a retrain whose data version (DVC content hash of
``paths.raw_dir``) and resolved params equal those of the last successful run would only repeat it;
inside a DVC project only when, besides, ``dvc.lock`` records that run and ``dvc status`` shows no
stage changed (a code file or an expectation suite is a dep of its stage).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pipelines.config import Params

#: MLflow tag on each training run: MD5 of the params that define it (:func:`params_md5`).
PARAMS_TAG = "curvewatch.params_md5"
#: MLflow tag on each training run: DVC content hash of ``paths.raw_dir`` (set by the train stage).
DATA_TAG = "curvewatch.data_version"
#: Params sections that do not change what a retrain produces: when it runs, and the tuner's search.
NOT_RUN_DEFINING = ("schedule", "tune")
#: Single keys that do not either: where the dataset is fetched from (its files are checksummed,
#: and the data version says whether they changed) and the folders of scratch state.
NOT_RUN_DEFINING_KEYS = frozenset(
    {"fetch.source_dir", "fetch.system_dir", "fetch.url", "paths.backup_dir", "paths.tune_dir"}
)

#: Prefect resource id of the series-watch events: this prefix and the registered model's name.
MODEL_RESOURCE_PREFIX = "curvewatch.model."
REGRESSION_EVENT = "curvewatch.regression"
SERIES_STALL_EVENT = "curvewatch.series_stall"


def params_md5(params: Params) -> str:
    """MD5 of the resolved params (``Params.to_flat_dict``, profiles applied) as sorted JSON,
    leaving out the sections in :data:`NOT_RUN_DEFINING` and the keys in
    :data:`NOT_RUN_DEFINING_KEYS` (moving the dataset's folder retrained byte-identical data).
    32 hex characters."""
    flat = {
        k: v
        for k, v in params.to_flat_dict().items()
        if k.split(".")[0] not in NOT_RUN_DEFINING and k not in NOT_RUN_DEFINING_KEYS
    }
    return hashlib.md5(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What defines a retrain: its data version and its params (see :func:`params_md5`)."""

    data_version: str
    params_md5: str
    run_id: str | None = None  # the MLflow run it came from, when it is a past run's
    #: False for a past run of a flow in a DVC project whose outputs were never committed and pushed
    #: (its ``pipelines.tracking.LOCK_TAG`` still says pending): ``dvc.lock`` does not describe it.
    recorded: bool = True
    #: False for a past run of the flow outside the DVC project (its ``pipelines.tracking.LOCK_TAG``
    #: says ``LOCK_OUTSIDE``): ``dvc.lock`` never describes it.
    in_project: bool = True


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reason: str  # one line, for the flow log


def decide_retrain(
    current: Fingerprint,
    last: Fingerprint | None,
    *,
    force: bool = False,
    changed_stages: Sequence[str] | None = None,
) -> RetrainDecision:
    """Retrain unless the data version and params equal those of the last successful run, and
    ``dvc.lock`` records that run (``last.recorded``); inside a DVC project (``changed_stages`` not
    ``None``) also unless that run was made outside it (``last.in_project`` False) or a stage changed.

    Args:
        current: this run's data version and params.
        last: the last successful retrain's (``None``: there is none).
        force: retrain even when nothing changed.
        changed_stages: inside a DVC project, the stages of ``dvc.yaml`` other than fetch (which the
            flow has rerun by then) that ``dvc status`` reports changed since ``dvc.lock``, e.g. a
            stage whose code or expectation suite was edited; ``None`` outside a DVC project.

    Returns:
        The decision and a one-line reason naming what changed, or the run that already did it.
    """
    if force:
        return RetrainDecision(True, "retraining: forced")
    if last is None:
        return RetrainDecision(True, "retraining: no successful run to compare with yet")
    data_same = current.data_version == last.data_version
    params_same = current.params_md5 == last.params_md5
    if data_same and params_same and not last.recorded:
        return RetrainDecision(
            True,
            f"retraining: run {last.run_id or '?'}, with this data version and params, was never"
            " recorded in dvc.lock (its DVC commit or push did not finish)",
        )
    in_project = changed_stages is not None
    if data_same and params_same and in_project and not last.in_project:
        return RetrainDecision(
            True,
            f"retraining: run {last.run_id or '?'}, with this data version and params, ran outside"
            " the DVC project (dvc.lock does not record it)",
        )
    if data_same and params_same and changed_stages:
        return RetrainDecision(
            True,
            f"retraining: data version and params unchanged since run {last.run_id or '?'}, but dvc"
            f" status shows changed since dvc.lock: {', '.join(changed_stages)}",
        )
    if data_same and params_same:
        return RetrainDecision(
            False,
            f"skipped training: data version {current.data_version} and params unchanged since "
            f"run {last.run_id or '?'}" + (", and no stage changed in dvc status" if in_project else ""),
        )
    diffs = [
        (what, old, new)
        for what, same, old, new in (
            ("data version", data_same, last.data_version, current.data_version),
            ("params", params_same, last.params_md5[:8], current.params_md5[:8]),
        )
        if not same
    ]
    changed = [what for what, _, _ in diffs]
    details = ", ".join(f"{what} {old} -> {new}" for what, old, new in diffs)
    return RetrainDecision(True, f"retraining: {' and '.join(changed)} changed ({details})")


#: The stages before training that a retrain skips when DVC says they are unchanged, in dvc.yaml
#: order, each with the stage whose output it reads.
SKIPPABLE_STAGES: dict[str, str] = {"prepare": "fetch", "validate": "prepare", "baseline": "prepare"}
#: The stages every retrain runs, in dvc.yaml order.
TRAINING_STAGES = ("train", "evaluate", "compare")
#: Every stage of dvc.yaml, in its order: what the flow asks ``dvc status`` about.
PIPELINE_STAGES = ("fetch", *SKIPPABLE_STAGES, *TRAINING_STAGES)


def stages_to_run(changed: set[str], upstream: Mapping[str, str] = SKIPPABLE_STAGES) -> list[str]:
    """Which of the skippable stages a retrain runs, as ``dvc repro`` would choose them.

    Args:
        changed: stages ``dvc status`` reports as changed (their deps, params, outputs or command
            differ from ``dvc.lock``).
        upstream: stage -> the stage it reads, in pipeline order (default :data:`SKIPPABLE_STAGES`).

    Returns:
        The stages to run, in pipeline order: the changed ones and every stage reading the output
        of one that runs. ``fetch`` is among them only when ``changed`` holds it (the flow runs it
        when ``dvc status`` reports it changed, or always outside a DVC project).
    """
    run: list[str] = []
    for stage, reads in upstream.items():
        if stage in changed or reads in run:
            run.append(stage)
    return run


def last_fingerprint(runs: Sequence[Any]) -> Fingerprint | None:
    """The fingerprint of the newest *successful* run among ``runs`` (MLflow ``Run`` objects, newest
    first): finished, through the gate (tag ``curvewatch.gate`` set by the compare stage), and
    carrying both fingerprint tags. ``None`` when there is none. Its ``recorded`` is False when
    the run's ``curvewatch.dvc_lock_md5`` tag is still pending (a flow run whose DVC commit or push
    failed after the gate), its ``in_project`` False when the tag says ``outside-project`` (a flow
    run outside the DVC project); a run without the tag (``dvc repro``) counts as recorded."""
    from pipelines.tracking import GATE_TAG, LOCK_OUTSIDE, LOCK_PENDING, LOCK_TAG

    for run in runs:
        tags = run.data.tags
        if run.info.status == "FINISHED" and GATE_TAG in tags and DATA_TAG in tags and PARAMS_TAG in tags:
            lock = tags.get(LOCK_TAG)
            return Fingerprint(
                tags[DATA_TAG],
                tags[PARAMS_TAG],
                run.info.run_id,
                recorded=lock != LOCK_PENDING,
                in_project=lock != LOCK_OUTSIDE,
            )
    return None


@dataclass(frozen=True)
class WatchEvent:
    """A Prefect event to emit after a retrain (``prefect.events.emit_event``)."""

    event: str
    message: str


def watch_events(gate_decision: str, findings: Sequence[Mapping[str, str]]) -> list[WatchEvent]:
    """The series-watch events of one retrain.

    Args:
        gate_decision: the gate's decision (``first_champion``, ``promote``, ``keep_champion``,
            ``regression``; see ``pipelines.curves.gate``).
        findings: the compare stage's findings as ``{"code", "message"}`` mappings; the
            ``series_stall`` one comes from ``pipelines.curves.compare.series_stall``.

    Returns:
        :data:`REGRESSION_EVENT` when the gate failed, :data:`SERIES_STALL_EVENT` when the last
        retrains did not beat the champion; both, one, or none.
    """
    events = []
    if gate_decision == "regression":
        message = next(
            (f["message"] for f in findings if f["code"] == "regression"), "regression gate failed"
        )
        events.append(WatchEvent(REGRESSION_EVENT, message))
    stall = next((f for f in findings if f["code"] == "series_stall"), None)
    if stall is not None:
        events.append(WatchEvent(SERIES_STALL_EVENT, stall["message"]))
    return events


# ------------------------------------------------------------------------------------- glue (I/O)
def current_fingerprint(params: Params) -> Fingerprint:
    """This run's fingerprint: DVC content hash of the fetched ``paths.raw_dir`` and :func:`params_md5`.

    Raises:
        FileNotFoundError: ``paths.raw_dir`` does not exist (run the fetch stage first).
    """
    from pipelines import tracking

    return Fingerprint(tracking.dvc_content_hash(params.paths.raw_dir), params_md5(params))


def last_successful_fingerprint(params: Params, *, look_back: int = 20) -> Fingerprint | None:
    """The fingerprint of the newest successful training run of ``tracking.experiment`` in MLflow
    (see :func:`last_fingerprint`), searching the newest ``look_back`` training runs."""
    from pipelines import tracking

    mc = tracking.client()
    exp = mc.get_experiment_by_name(params.tracking.experiment)
    if exp is None:
        return None
    runs = tracking.search_training_runs(
        mc, [exp.experiment_id], filter_string=tracking.FINISHED_TRAINING, max_runs=look_back
    )
    return last_fingerprint(runs)
