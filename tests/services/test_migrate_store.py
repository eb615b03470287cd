"""curvewatch migrate-store: a SQLite store's runs, models and aliases land on the real server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner


def _source_store(uri: str, tmp_path: Path, exp_name: str, model_name: str):
    from mlflow.entities import Metric, Param

    from pipelines import tracking

    src = tracking.client(uri)
    exp = tracking.ensure_experiment(src, exp_name)
    ids = []
    for lr in ("1e-3", "3e-2"):
        rid = src.create_run(
            exp, run_name=f"small_cnn lr={lr}", tags={tracking.RUN_KIND_TAG: "train"}
        ).info.run_id
        src.log_batch(
            rid,
            metrics=[Metric("val_accuracy", 0.4 + e / 10, 1_000 + e, e) for e in (1, 2, 3)],
            params=[Param("train.learning_rate", lr)],
        )
        report = tmp_path / "report.md"
        report.write_text(f"# report for lr={lr}\n")
        src.log_artifact(rid, str(report), "curvewatch")
        src.set_terminated(rid)
        ids.append(rid)
    model = src.create_logged_model(exp, name="model", source_run_id=ids[0])
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    src.log_model_artifacts(model.model_id, str(model_dir))
    src.finalize_logged_model(model.model_id, "READY")
    src.create_registered_model(model_name, description="the classifier")
    src.create_model_version(
        model_name,
        source=f"models:/{model.model_id}",
        run_id=ids[0],
        model_id=model.model_id,
        description="verdict healthy",
        tags={"curvewatch.verdict": "healthy"},
    )
    src.set_registered_model_alias(model_name, "champion", "1")
    src.set_tag(ids[1], tracking.CHAMPION_RUN_TAG, ids[0])  # gated against the first run
    return ids


def test_migrate_store_copies_runs_models_and_aliases(mlflow_uri, mlflow_server, tmp_path, monkeypatch):
    from pipelines import tracking
    from pipelines.cli import app
    from pipelines.migrate_store import MIGRATED_FROM, migrate_store

    exp_name, model_name = f"migrate-{uuid.uuid4().hex[:8]}", f"migrate-model-{uuid.uuid4().hex[:8]}"
    src_ids = _source_store(mlflow_uri, tmp_path, exp_name, model_name)

    result = migrate_store(mlflow_uri, mlflow_server.url, experiments=[exp_name], echo=lambda _: None)
    assert (result.runs, result.runs_skipped, result.logged_models, result.model_versions) == (2, 0, 1, 1)

    dst = tracking.client(mlflow_server.url)
    exp = dst.get_experiment_by_name(exp_name)
    runs = {r.info.run_name: r for r in dst.search_runs([exp.experiment_id])}
    assert set(runs) == {"small_cnn lr=1e-3", "small_cnn lr=3e-2"}
    first = runs["small_cnn lr=1e-3"]
    assert first.data.tags[MIGRATED_FROM] == src_ids[0]
    assert first.data.params["train.learning_rate"] == "1e-3"
    assert first.info.status == "FINISHED"
    history = [(m.step, m.value) for m in dst.get_metric_history(first.info.run_id, "val_accuracy")]
    assert [step for step, _ in sorted(history)] == [1, 2, 3]
    assert [value for _, value in sorted(history)] == pytest.approx([0.5, 0.6, 0.7])
    report = Path(dst.download_artifacts(first.info.run_id, "curvewatch/report.md", str(tmp_path / "dl")))
    assert report.read_text() == "# report for lr=1e-3\n"  # through the server's artifact proxy

    champion = dst.get_model_version_by_alias(model_name, "champion")
    assert champion.run_id == first.info.run_id
    # The run gated against the champion names it by its id in this store (compare run again on it
    # would otherwise find no such run).
    assert runs["small_cnn lr=3e-2"].data.tags[tracking.CHAMPION_RUN_TAG] == first.info.run_id
    assert champion.description == "verdict healthy"
    assert champion.tags["curvewatch.verdict"] == "healthy"
    copy = dst.get_logged_model(champion.source.removeprefix("models:/"))  # the copied logged model
    assert copy.source_run_id == first.info.run_id
    assert copy.tags[MIGRATED_FROM].startswith("m-") and copy.tags[MIGRATED_FROM] != copy.model_id
    import mlflow.artifacts

    # A models:/ URI is resolved by the registry: point it at the server too (the store's own
    # registry, as a user with MLFLOW_TRACKING_URI set to the server has it).
    mlflow.set_registry_uri(mlflow_server.url)
    mlmodel = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{model_name}@champion",
        dst_path=str(tmp_path / "model-dl"),
        tracking_uri=mlflow_server.url,
    )
    assert (Path(mlmodel) / "MLmodel").read_text() == "flavors: {}\n"

    # the CLI, run again: nothing copied twice
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    out = CliRunner().invoke(app, ["migrate-store", "--from", mlflow_uri, "--experiment", exp_name])
    assert out.exit_code == 0, out.output
    assert "copied 0 runs (2 already there)" in out.output
    assert len(dst.search_runs([exp.experiment_id])) == 2
    assert len(dst.search_model_versions(f"name='{model_name}'")) == 1


def test_migrate_store_refuses_a_missing_source(tmp_path):
    from pipelines.cli import app

    out = CliRunner().invoke(
        app, ["migrate-store", "--from", f"sqlite:///{tmp_path}/none.db", "--to", "http://x"]
    )
    assert out.exit_code == 2
    assert "no SQLite store at" in out.output


def test_a_migration_cut_short_is_completed_by_running_it_again(
    mlflow_uri, mlflow_server, tmp_path, monkeypatch
):
    # The copy's tag was set when it was created: a run the process died in the middle of (here,
    # an artifact upload that failed) was "already there" for every later migration, RUNNING and
    # without its artifacts.
    from mlflow import MlflowClient

    from pipelines import tracking
    from pipelines.migrate_store import migrate_store

    exp_name, model_name = f"migrate-{uuid.uuid4().hex[:8]}", f"migrate-model-{uuid.uuid4().hex[:8]}"
    _source_store(mlflow_uri, tmp_path, exp_name, model_name)
    with monkeypatch.context() as patch:

        def cut(self, run_id, local_dir, artifact_path=None):
            raise ConnectionError("connection reset")

        patch.setattr(MlflowClient, "log_artifacts", cut)
        with pytest.raises(ConnectionError):
            migrate_store(mlflow_uri, mlflow_server.url, experiments=[exp_name], echo=lambda _: None)
    lines: list[str] = []
    result = migrate_store(mlflow_uri, mlflow_server.url, experiments=[exp_name], echo=lines.append)
    assert (result.runs, result.runs_skipped) == (2, 0) and any("cut short" in line for line in lines)

    dst = tracking.client(mlflow_server.url)
    exp = dst.get_experiment_by_name(exp_name)
    runs = dst.search_runs([exp.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        assert [a.path for a in dst.list_artifacts(run.info.run_id, "curvewatch")] == ["curvewatch/report.md"]
    assert dst.get_model_version_by_alias(model_name, "champion").run_id in {r.info.run_id for r in runs}


def test_a_champion_from_another_experiment_is_named_by_its_new_id(mlflow_uri, mlflow_server, tmp_path):
    """A registered model spans experiments: a run of a renamed experiment was gated against the
    champion trained in the earlier one. Its tag names the champion's copy even when its own
    experiment is copied first (the tag used to be rewritten per experiment, and kept the old id)."""
    from pipelines import tracking
    from pipelines.migrate_store import migrate_store

    exp_name, model_name = f"migrate-{uuid.uuid4().hex[:8]}", f"migrate-model-{uuid.uuid4().hex[:8]}"
    src_ids = _source_store(mlflow_uri, tmp_path, exp_name, model_name)
    src = tracking.client(mlflow_uri)
    later_name = f"{exp_name}-renamed"
    later = src.create_run(
        tracking.ensure_experiment(src, later_name),
        run_name="small_cnn lr=1e-3 again",
        tags={tracking.RUN_KIND_TAG: "train", tracking.CHAMPION_RUN_TAG: src_ids[0]},
    ).info.run_id
    src.set_terminated(later)

    result = migrate_store(
        mlflow_uri, mlflow_server.url, experiments=[later_name, exp_name], echo=lambda _: None
    )
    dst = tracking.client(mlflow_server.url)
    copy = dst.get_run(result.run_ids[later])
    assert copy.data.tags[tracking.CHAMPION_RUN_TAG] == result.run_ids[src_ids[0]] != src_ids[0]
    assert dst.get_run(result.run_ids[src_ids[0]]).info.experiment_id != copy.info.experiment_id
