import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines import tracking
from pipelines.config import Params


def _train_run(
    mc, exp_id, curve: dict[str, list[float]], *, epochs_param=10, status="FINISHED", completed=True
):
    run = mc.create_run(exp_id, tags={tracking.RUN_KIND_TAG: "train"})
    rid = run.info.run_id
    mc.log_param(rid, "train.epochs", epochs_param)
    mc.log_param(rid, "data.num_classes", 10)
    mc.log_param(rid, "data.val_examples", 10000)
    for name, values in curve.items():
        for epoch, value in enumerate(values, start=1):
            mc.log_metric(rid, name, value, step=epoch)
    tracking.set_tags(mc, rid, {"curvewatch.completed": str(completed).lower()})
    mc.set_terminated(rid, status=status)
    return rid


def test_tracking_uri_defaults_to_sqlite_in_working_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_run_curve_reads_epochs_budget_and_completeness(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    rid = _train_run(mc, exp, {"val_accuracy": [0.5, 0.6, 0.65], "loss": [1.0, 0.8, 0.7]})
    curve = tracking.run_curve(mc, rid)
    assert curve.run == rid
    np.testing.assert_array_equal(curve.epochs, [1, 2, 3])
    np.testing.assert_allclose(curve.metrics["val_accuracy"], [0.5, 0.6, 0.65])
    assert curve.epoch_budget == 10 and curve.num_classes == 10 and curve.complete
    assert curve.num_val_examples == 10000  # the size the binomial noise terms use
    killed = _train_run(mc, exp, {"val_accuracy": [0.5]}, status="KILLED")
    assert not tracking.run_curve(mc, killed).complete
    nan_run = _train_run(mc, exp, {"val_accuracy": [0.5]}, completed=False)
    assert not tracking.run_curve(mc, nan_run).complete


def test_run_curve_reads_an_autologged_run_with_0_based_steps(mlflow_uri):
    # mlflow.keras.autolog() logs fit()'s epochs as a param and each epoch's logs with step=epoch.
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    rid = mc.create_run(exp).info.run_id
    mc.log_param(rid, "epochs", 20)
    for epoch, value in enumerate([0.5, 0.6, 0.65]):
        mc.log_metric(rid, "val_accuracy", value, step=epoch)
        mc.log_metric(rid, "val_loss", 1.0 - value, step=epoch)
    mc.set_terminated(rid)
    curve = tracking.run_curve(mc, rid)
    np.testing.assert_array_equal(curve.epochs, [1, 2, 3])
    np.testing.assert_allclose(curve.metrics["val_accuracy"], [0.5, 0.6, 0.65])
    assert curve.epoch_budget == 20


@pytest.mark.parametrize("bulk", [True, False])
def test_curves_read_accuracy_kinds_and_the_penalty_free_crossentropy(mlflow_uri, bulk):
    # An autologged binary model with L2: val_binary_accuracy stands for val_accuracy, and the
    # logged binary_crossentropy pair (the loss without its penalty) is read as loss / val_loss,
    # as for a CSVLogger file (io.engine_metrics). Other metrics (auc) are not fetched.
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    rid = mc.create_run(exp).info.run_id
    ce = [0.60, 0.45, 0.40, 0.42, 0.47]
    val_ce = [0.62, 0.50, 0.48, 0.52, 0.58]
    penalty = [0.50, 0.40, 0.30, 0.20, 0.10]  # a shrinking L2 term hides the rising val_ce
    logged = {
        "binary_accuracy": [0.6, 0.7, 0.75, 0.8, 0.85],
        "val_binary_accuracy": [0.6, 0.68, 0.7, 0.7, 0.69],
        "binary_crossentropy": ce,
        "val_binary_crossentropy": val_ce,
        "loss": [c + p for c, p in zip(ce, penalty, strict=True)],
        "val_loss": [c + p for c, p in zip(val_ce, penalty, strict=True)],
        "auc": [0.7, 0.8, 0.85, 0.9, 0.92],
    }
    for name, values in logged.items():
        for epoch, value in enumerate(values):
            mc.log_metric(rid, name, value, step=epoch)
    mc.set_terminated(rid)
    (curve,) = tracking.fetch_curves(mc, [mc.get_run(rid)], bulk=bulk)
    np.testing.assert_allclose(curve.metrics["val_accuracy"], logged["val_binary_accuracy"])
    np.testing.assert_allclose(curve.metrics["accuracy"], logged["binary_accuracy"])
    np.testing.assert_allclose(curve.metrics["val_loss"], val_ce)
    np.testing.assert_allclose(curve.metrics["val_loss_regularised"], logged["val_loss"])
    assert "auc" not in curve.metrics
    # Named explicitly, only those metrics are read.
    (curve,) = tracking.fetch_curves(mc, [mc.get_run(rid)], metrics=["val_binary_accuracy"], bulk=bulk)
    assert set(curve.metrics) == {"val_accuracy"}


def test_recent_runs_newest_first_excluding_and_only_training(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    ids = [_train_run(mc, exp, {"val_accuracy": [0.1 * i]}) for i in range(4)]
    other = mc.create_run(exp, tags={tracking.RUN_KIND_TAG: "validation"})
    mc.set_terminated(other.info.run_id)
    recent = tracking.recent_training_runs(mc, exp, exclude=[ids[-1]], limit=2)
    assert [r.info.run_id for r in recent] == [ids[2], ids[1]]
    assert tracking.recent_training_runs(mc, exp, limit=0) == []


def test_champion_alias_round_trip(mlflow_uri):
    mc = tracking.client()
    assert tracking.get_champion(mc, "model-x") is None
    exp = tracking.ensure_experiment(mc, "t")
    rid = _train_run(mc, exp, {"val_accuracy": [0.5]})
    mc.create_registered_model("model-x")
    mv = mc.create_model_version("model-x", source=f"runs:/{rid}/model", run_id=rid)
    tracking.promote(mc, "model-x", mv.version)
    champ = tracking.get_champion(mc, "model-x")
    assert champ == tracking.Champion(version=str(mv.version), run_id=rid)


def test_log_params_and_metrics(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    run = mc.create_run(exp)
    tracking.log_params(mc, run.info.run_id, Params())
    tracking.log_metrics(mc, run.info.run_id, {"a": 1, "b": True, "c": float("nan"), "d": "text"})
    data = mc.get_run(run.info.run_id).data
    assert data.params["train.epochs"] == "6"
    assert data.metrics == {"a": 1.0, "b": 1.0}


def test_summary_tags_format_numbers_and_skip_the_rest():
    values = {"train.epochs_run": 6, "gate.p_value": 3.1e-05, "gate.delta": 0.0123456789}
    values |= {"gate.passed": np.True_, "x.nan": float("nan"), "x.none": None, "x.text": "a"}
    assert tracking.summary_tags(values) == {
        "curvewatch.train.epochs_run": "6",
        "curvewatch.gate.p_value": "3.1e-05",
        "curvewatch.gate.delta": "0.0123457",
        "curvewatch.gate.passed": "true",
    }


def test_log_summary_writes_tags_not_metrics(mlflow_uri):
    mc = tracking.client()
    run = mc.create_run(tracking.ensure_experiment(mc, "t"))
    tracking.log_summary(mc, run.info.run_id, {"train.best_epoch": 4.0, "diagnosis.stalled": False})
    data = mc.get_run(run.info.run_id).data
    assert data.metrics == {}
    assert data.tags["curvewatch.train.best_epoch"] == "4"
    assert data.tags["curvewatch.diagnosis.stalled"] == "false"


def test_dvc_content_hash_matches_dvc_add(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.bin").write_bytes(b"\x00\x01" * 100)
    (data / "sub" / "b.txt").write_text("hello")
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "add", "-q", "data"], cwd=tmp_path, check=True)
    recorded = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert tracking.dvc_content_hash(data) == recorded
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tracking.dvc_content_hash(tmp_path / "missing")


def test_bulk_fetch_agrees_with_per_run_api(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    ids = [
        _train_run(mc, exp, {"val_accuracy": [0.1, 0.2, 0.3 + i], "loss": [2.0, float("nan"), 1.0]})
        for i in range(3)
    ]
    mc.log_metric(ids[0], "val_accuracy", 0.25, step=2, timestamp=10**13)  # re-logged step: latest wins
    runs = tracking.search_training_runs(mc, [exp])
    bulk = tracking.fetch_curves(mc, runs, chunk=2)
    slow = tracking.fetch_curves(mc, runs, bulk=False)
    assert [c.run for c in bulk] == [r.info.run_id for r in runs] == ids[::-1]
    for a, b in zip(bulk, slow, strict=True):
        np.testing.assert_array_equal(a.epochs, b.epochs)
        for key in ("val_accuracy", "loss"):
            np.testing.assert_array_equal(a.metrics[key], b.metrics[key])
    assert bulk[-1].metrics["val_accuracy"][1] == 0.25
    assert np.isnan(bulk[0].metrics["loss"][1])


def _seed_run(mc, exp, seed, lr, acc, *, data_version="v1", train_examples=None):
    rid = _train_run(mc, exp, {"val_accuracy": [0.5]})
    params = {
        "base.seed": seed,
        "train.learning_rate": lr,
        "data.train_examples": train_examples or 100 + seed,
    }
    for k, v in params.items():
        mc.log_param(rid, k, v)
    mc.set_tag(rid, "curvewatch.data_version", data_version)
    mc.log_metric(rid, "test_accuracy", acc)
    return rid


def test_same_config_accuracies_ignore_seed_but_not_config(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    ref = _seed_run(mc, exp, 1, 0.001, 0.90)
    _seed_run(mc, exp, 2, 0.001, 0.91)
    _seed_run(mc, exp, 3, 0.01, 0.50)  # another config
    _seed_run(mc, exp, 4, 0.001, 0.70, data_version="v2")  # same config, other data
    assert tracking.same_config_test_accuracies(mc, exp, ref) == {"1": 0.90, "2": 0.91}


def test_run_names_tell_runs_apart():
    from datetime import UTC, datetime, timedelta, timezone

    t = datetime(2026, 11, 25, 21, 6, 59, tzinfo=UTC)
    assert (
        tracking.run_name("small_cnn", 1e-3, "ab12cd34ef.dir", t)
        == "small_cnn lr=1e-3 d=ab12cd 2026-11-25T21:06"
    )
    assert tracking.run_name("mlp", 3.2e-4, None, t, trial=7) == "trial 7 mlp lr=3.2e-4 2026-11-25T21:06"
    assert tracking.run_name("mlp", 0.1, "ff", t) == "mlp lr=1e-1 d=ff 2026-11-25T21:06"
    # Times are shown in UTC whatever the zone they come in.
    paris = t.astimezone(timezone(timedelta(hours=1)))
    assert tracking.run_name("mlp", 0.01, None, paris).endswith("2026-11-25T21:06")
    names = {tracking.run_name("small_cnn", lr, "ab12cd", t) for lr in (1e-2, 1e-3, 1e-4)}
    assert len(names) == 3


def test_diagnosis_view_is_mlflow_saved_view_envelope():
    key, value = tracking.diagnosis_view_tag()
    assert key == "mlflow.sharedViewState." + tracking.DIAGNOSIS_VIEW_ID
    envelope = json.loads(value)
    # The envelope MLflow 3.17's UI validates: string name, number createdAt, string state.
    assert envelope["name"] == tracking.DIAGNOSIS_VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state == tracking.diagnosis_view_state()
    for col in ("curvewatch.verdict", "curvewatch.plateau_onset_epoch", "curvewatch.gate"):
        assert f"tags.`{col}`" in state["selectedColumns"]
    assert tracking.run_table_url("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
        "&viewStateShareKey=curvewatch-diagnosis"
    )


def test_ensure_experiment_sets_kind_and_view_once(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    tags = mc.get_experiment(exp).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    key, value = tracking.diagnosis_view_tag()
    assert tags[key] == value
    # An experiment made elsewhere (no tags) gets them too.
    other = mc.create_experiment("made-by-hand")
    assert tracking.ensure_experiment(mc, "made-by-hand") == other
    assert mc.get_experiment(other).tags["mlflow.experimentKind"] == "custom_model_development"
    calls = []
    real = mc.set_experiment_tag
    mc.set_experiment_tag = lambda *a: calls.append(a) or real(*a)
    assert tracking.ensure_experiment(mc, "t") == exp
    assert calls == []  # nothing rewritten when the tags are already right
    mc.set_experiment_tag(exp, key, "not a view")
    calls.clear()
    tracking.ensure_experiment(mc, "t")
    assert [c[1] for c in calls] == [key] and mc.get_experiment(exp).tags[key] == value


def test_same_config_accuracies_count_distinct_seeds_only(mlflow_uri):
    # A seed run twice is one draw of the spread: two runs of seed 1 are not a 2-seed range (sd 0).
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    ref = _seed_run(mc, exp, 1, 0.001, 0.90)
    _seed_run(mc, exp, 1, 0.001, 0.905)  # newer rerun of the reference's seed: the reference wins
    _seed_run(mc, exp, 2, 0.001, 0.91)
    _seed_run(mc, exp, 2, 0.001, 0.92)  # newest run of seed 2 wins
    assert tracking.same_config_test_accuracies(mc, exp, ref) == {"1": 0.90, "2": 0.92}
    only_reruns = tracking.ensure_experiment(mc, "reruns")
    ref = _seed_run(mc, only_reruns, 5, 0.001, 0.90)
    _seed_run(mc, only_reruns, 5, 0.001, 0.90)
    assert len(tracking.same_config_test_accuracies(mc, only_reruns, ref)) == 1


def test_same_config_accuracies_exclude_the_challenger(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    ref = _seed_run(mc, exp, 1, 0.001, 0.90)
    _seed_run(mc, exp, 2, 0.001, 0.91)
    challenger = _seed_run(mc, exp, 3, 0.001, 0.85)
    assert tracking.same_config_test_accuracies(mc, exp, ref, exclude=[challenger]) == {"1": 0.90, "2": 0.91}


def test_dvc_content_hash_reads_the_projects_state(tmp_path):
    """Inside a DVC project the hash goes through DVC's state database, as ``dvc status`` does."""
    from dvc.repo import Repo

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"\x00\x01" * 100)
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    with Repo(str(tmp_path)) as repo:
        assert repo.state.get(str(data / "a.bin"), repo.fs) == (None, None)
    first = tracking.dvc_content_hash(data)
    with Repo(str(tmp_path)) as repo:
        _, saved = repo.state.get(str(data / "a.bin"), repo.fs)
    assert saved is not None and saved.value == hashlib.md5(b"\x00\x01" * 100).hexdigest()
    assert tracking.dvc_content_hash(data) == first
    (data / "a.bin").write_bytes(b"\x00\x02" * 101)  # new size: the state entry no longer matches
    assert tracking.dvc_content_hash(data) != first
