"""Copy an MLflow store (the local SQLite ``mlflow.db``) to another one (the tracking server).

MLflow ships no store-to-store copy; the separate ``mlflow-export-import`` project does it through an
intermediate folder, but its last release (2023) predates MLflow 3's logged models. This module
does the same with MLflow's public client API only (``MlflowClient``; MLflow docs, "MLflow Tracking
APIs" and "Model Registry"), straight from one store to the other:

- experiments by name, with their tags (created on the destination when missing);
- runs with their name, start/end time, status, params, tags, full per-step metric histories,
  dataset inputs and artifacts; each copy is tagged ``curvewatch.migrated_from = <source run id>``,
  so running the migration again copies only what is new, and a copy cut short (still RUNNING
  where its source is not: ending it is the copy's last step) is deleted and copied again;
- logged models (MLflow 3's ``models:/m-...``) with their artifacts, params and tags (a copy not
  finalized like its source is deleted and copied again);
- registered models, their versions (pointing at the copied logged model or run), descriptions,
  tags and aliases (``champion``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIGRATED_FROM = "curvewatch.migrated_from"


@dataclass
class MigrationResult:
    """What one migration copied (counts) and the source -> destination run id map."""

    experiments: int = 0
    runs: int = 0
    runs_skipped: int = 0
    logged_models: int = 0
    model_versions: int = 0
    run_ids: dict[str, str] = field(default_factory=dict)


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _copy_artifacts(download: Callable[[str], str], upload: Callable[[str], None]) -> bool:
    with tempfile.TemporaryDirectory(prefix="curvewatch-migrate-") as tmp:
        local = Path(download(tmp))
        if not local.exists() or not any(local.iterdir()):
            return False
        upload(str(local))
    return True


def migrate_store(
    src_uri: str,
    dst_uri: str,
    *,
    experiments: Sequence[str] | None = None,
    echo: Callable[[str], None] = print,
) -> MigrationResult:
    """Copy every active experiment (or those named in ``experiments``) of ``src_uri`` into ``dst_uri``.

    Args:
        src_uri: source tracking URI, e.g. ``sqlite:///path/to/mlflow.db``.
        dst_uri: destination tracking URI, e.g. ``http://127.0.0.1:5000``.
        experiments: experiment names to copy; None copies all active ones that hold runs.
        echo: where progress lines go (one per experiment and registered model).

    Returns:
        The counts copied and the run id map.

    Raises:
        ValueError: ``src_uri`` equals ``dst_uri``, or a named experiment is not in the source.
        pipelines.tracking.TrackingUnavailable: the destination does not answer.
    """
    import mlflow.artifacts
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus, Metric, Param, ViewType

    from pipelines import tracking

    if src_uri == dst_uri:
        raise ValueError(f"migrate-store: source and destination are the same store ({src_uri})")
    src = MlflowClient(tracking_uri=src_uri, registry_uri=src_uri)
    dst = tracking.client(dst_uri)
    result = MigrationResult()

    chosen = src.search_experiments(view_type=ViewType.ACTIVE_ONLY)
    if experiments is not None:
        by_name = {e.name: e for e in chosen}
        missing = [n for n in experiments if n not in by_name]
        if missing:
            raise ValueError(f"migrate-store: no active experiment named {', '.join(missing)} in {src_uri}")
        chosen = [by_name[n] for n in experiments]

    model_ids: dict[str, str] = {}
    gated = []  # runs tagged with the champion they were gated against
    for exp in chosen:
        runs = tracking.search_training_runs(src, [exp.experiment_id])
        if not runs and experiments is None:
            continue
        target = dst.get_experiment_by_name(exp.name)
        dst_exp = target.experiment_id if target else dst.create_experiment(exp.name, tags=dict(exp.tags))
        result.experiments += 1
        earlier = {
            r.data.tags[MIGRATED_FROM]: r
            for r in tracking.search_training_runs(
                dst, [dst_exp], filter_string=f"tags.`{MIGRATED_FROM}` != ''"
            )
        }
        copied = 0
        for run in sorted(runs, key=lambda r: r.info.start_time or 0):
            old = run.info.run_id
            copy = earlier.get(old)
            if copy is not None and (copy.info.status != "RUNNING" or run.info.status == "RUNNING"):
                result.run_ids[old] = copy.info.run_id
                result.runs_skipped += 1
                continue
            if copy is not None:
                # A copy cut short (ending it is the last step): its params, metrics or artifacts
                # may be missing. Deleted (MLflow keeps it in the trash) and copied again.
                echo(f"run {old}: its earlier copy {copy.info.run_id} was cut short; copying it again")
                dst.delete_run(copy.info.run_id)
            tags = {k: v for k, v in run.data.tags.items() if k != "mlflow.runName"}
            tags[MIGRATED_FROM] = old
            new = dst.create_run(
                dst_exp, start_time=run.info.start_time, tags=tags, run_name=run.info.run_name
            ).info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            for batch in _chunks(params, 100):
                dst.log_batch(new, params=batch)
            history = [
                Metric(m.key, m.value, m.timestamp, m.step)
                for key in run.data.metrics
                for m in src.get_metric_history(old, key)
            ]
            for batch in _chunks(history, 1000):
                dst.log_batch(new, metrics=batch)
            if run.inputs and run.inputs.dataset_inputs:
                dst.log_inputs(new, datasets=list(run.inputs.dataset_inputs))
            _copy_artifacts(
                lambda tmp, old=old: src.download_artifacts(old, "", tmp),
                lambda local, new=new: dst.log_artifacts(new, local),
            )
            dst.set_terminated(new, status=run.info.status, end_time=run.info.end_time)
            result.run_ids[old] = new
            copied += 1
        result.runs += copied
        gated += [r for r in runs if r.data.tags.get(tracking.CHAMPION_RUN_TAG)]

        for lm in src.search_logged_models([exp.experiment_id]):
            if lm.source_run_id not in result.run_ids:
                continue
            exists = dst.search_logged_models(
                [dst_exp], filter_string=f"tags.`{MIGRATED_FROM}` = '{lm.model_id}'"
            )
            if exists and (exists[0].status == lm.status or lm.status == LoggedModelStatus.PENDING):
                model_ids[lm.model_id] = exists[0].model_id
                continue
            if exists:  # cut short before it was finalized (the last step): artifacts may be missing
                dst.delete_logged_model(exists[0].model_id)
            new_model = dst.create_logged_model(
                dst_exp,
                name=lm.name,
                source_run_id=result.run_ids[lm.source_run_id],
                tags={**lm.tags, MIGRATED_FROM: lm.model_id},
                params=dict(lm.params),
                model_type=lm.model_type,
            )
            _copy_artifacts(
                lambda tmp, lm=lm: mlflow.artifacts.download_artifacts(
                    artifact_uri=lm.artifact_location, dst_path=tmp, tracking_uri=src_uri
                ),
                lambda local, m=new_model: dst.log_model_artifacts(m.model_id, local),
            )
            if lm.status in (LoggedModelStatus.READY, LoggedModelStatus.FAILED):
                dst.finalize_logged_model(new_model.model_id, lm.status)
            model_ids[lm.model_id] = new_model.model_id
            result.logged_models += 1
        echo(f"experiment {exp.name!r}: {copied} runs copied, {len(runs) - copied} already there")

    # The champion each run was gated against, by its id in the destination. After every experiment
    # is copied: a registered model spans experiments, so the champion of a run may have been
    # trained in another experiment (tracking.experiment renamed), copied after the run naming it.
    for run in gated:
        champion = result.run_ids.get(run.data.tags[tracking.CHAMPION_RUN_TAG])
        if champion is not None and run.info.run_id in result.run_ids:
            dst.set_tag(result.run_ids[run.info.run_id], tracking.CHAMPION_RUN_TAG, champion)

    for rm in src.search_registered_models():
        versions = sorted(src.search_model_versions(f"name='{rm.name}'"), key=lambda v: int(v.version))
        versions = [v for v in versions if v.run_id in result.run_ids]
        if not versions:
            continue
        if not dst.search_registered_models(filter_string=f"name='{rm.name}'"):
            dst.create_registered_model(rm.name, tags=dict(rm.tags), description=rm.description)
        present = {
            v.tags.get(MIGRATED_FROM): v.version for v in dst.search_model_versions(f"name='{rm.name}'")
        }
        version_map: dict[str, str] = {}
        for v in versions:
            key = f"{rm.name}/{v.version}"
            if key in present:
                version_map[str(v.version)] = str(present[key])
                continue
            new_run = result.run_ids[v.run_id]
            # a version made from a logged model names it in its source (models:/m-...) even
            # where the store left its model_id field empty
            old_model = v.model_id or (
                v.source.removeprefix("models:/").split("/")[0] if v.source.startswith("models:/m-") else None
            )
            model_id = model_ids.get(old_model) if old_model else None
            source = f"models:/{model_id}" if model_id else v.source.replace(v.run_id, new_run)
            mv = dst.create_model_version(
                rm.name,
                source=source,
                run_id=new_run,
                tags={**v.tags, MIGRATED_FROM: key},
                description=v.description,
                model_id=model_id,
            )
            version_map[str(v.version)] = str(mv.version)
            result.model_versions += 1
        for alias, version in (src.get_registered_model(rm.name).aliases or {}).items():
            if str(version) in version_map:
                dst.set_registered_model_alias(rm.name, alias, version_map[str(version)])
        aliases = sorted(dst.get_registered_model(rm.name).aliases or {})
        echo(f"registered model {rm.name!r}: {len(version_map)} versions, aliases {aliases}")
    return result
