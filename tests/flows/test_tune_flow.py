"""The Prefect flow ``tune`` end to end on a tiny image folder, against a real MLflow store."""

from __future__ import annotations

import json
import re

import pytest

from flows.tune import TuneSummary, tune
from pipelines import tracking
from pipelines.config import ConfigError, load_params
from pipelines.steps import load_train_data

pytestmark = pytest.mark.flow


def test_tune_flow_logs_a_parent_run_with_nested_trials_and_gates_the_best(folder_params):
    path = folder_params(
        {
            "train": {"model": "mlp", "epochs": 6, "batch_size": 32, "learning_rate": 0.01},
            "tune": {
                "n_trials": 4,
                "models": ["mlp"],
                "augment": [False],
                "batch_sizes": [32],
                "learning_rate": [0.00001, 0.03],
            },
        }
    )
    summary = tune(params_path=str(path))
    assert isinstance(summary, TuneSummary)
    o = summary.outcome
    params = load_params(path)
    text = summary.render()
    assert f"best trial      : #{o.best_number}" in text and "with pruning" in text and "optimism" in text
    assert 0 < o.epochs_spent < o.epochs_without_pruning <= 4 * 6
    # The range reaches 1e-5, where 6 epochs learn next to nothing: with the study's seed, one of
    # the 4 trials is pruned (trial 1, at epoch 4, on the forecast from trial 0's curve).
    assert sum(o.states.values()) == 4 and o.states.get("COMPLETE", 0) >= 1 and o.states.get("PRUNED", 0) >= 1

    mc = tracking.client()
    parent = mc.get_run(o.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tracking.RUN_KIND_TAG] == "tune"
    assert parent.data.metrics["tune.best_val_accuracy"] == pytest.approx(o.best_val_accuracy)
    assert "tune.optimism" in parent.data.metrics and "tune.best_test_accuracy" in parent.data.metrics
    assert parent.data.tags["curvewatch.tuning_optimism"]
    assert {f"best.{k}" for k in o.best_params} <= set(parent.data.tags)
    plots = {a.path for a in mc.list_artifacts(o.parent_run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/intermediate_values.png"} <= plots
    assert {a.path for a in mc.list_artifacts(o.parent_run_id, "tune")} >= {"tune/search_space.json"}

    children = mc.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{o.parent_run_id}'"
    )
    assert len(children) == 4
    assert all(c.info.status == "FINISHED" for c in children)  # none left RUNNING
    pruned = 0
    ran = {"spent": 0, "without": 0}
    data, version_tag = load_train_data(params)[0], parent.data.tags["curvewatch.data_version"]
    for child in children:
        tags = child.data.tags
        assert tags["curvewatch.trial_state"] in ("COMPLETE", "PRUNED")
        # Named by what differs, as training runs are: trial number, model, learning rate, data version.
        lr = tracking._short_number(float(child.data.params["train.learning_rate"]))
        version = parent.data.tags["curvewatch.data_version"][:6]
        name = rf"trial {tags['curvewatch.trial']} mlp lr={lr} d={version} \S+"
        assert re.fullmatch(name, child.info.run_name), child.info.run_name
        assert tags["curvewatch.verdict"]
        assert "params.train.learning_rate" not in tags and "train.learning_rate" in child.data.params
        history = mc.get_metric_history(child.info.run_id, "val_accuracy")
        epochs_run = int(child.data.metrics["trial.epochs_run"])
        ran["spent"] += epochs_run
        # Pruning saved a pruned trial's remaining epochs; a complete trial's EarlyStopping is its own.
        ran["without"] += 6 if tags["curvewatch.trial_state"] == "PRUNED" else epochs_run
        # The inputs a retrain's run logs: the engine and the gate read them off the best trial's run.
        assert child.data.params["data.val_examples"] == str(len(data.y_val))
        assert child.data.params["data.num_classes"] == str(data.num_classes)
        assert child.data.tags["curvewatch.data_version"] == version_tag
        if tags["curvewatch.trial_state"] == "PRUNED":
            # Why, in words, with the epoch it stopped at; its curve ends there.
            pruned += 1
            reason = tags["curvewatch.pruned_because"]
            epoch, why = reason.removeprefix("stopped at epoch ").split(": ", 1)
            assert why and max(m.step for m in history) == int(epoch) < 6, reason
        else:
            assert "curvewatch.pruned_because" not in tags
    assert pruned == o.states["PRUNED"]
    assert (ran["spent"], ran["without"]) == (o.epochs_spent, o.epochs_without_pruning)
    # The best trial went through the retrain's gate: first champion of this registry.
    assert summary.promoted
    champion = tracking.get_champion(mc, params.tracking.registered_model)
    assert champion is not None and champion.run_id == o.best_run_id
    study_dir = params.paths.tune_dir / o.study_name
    assert (study_dir / f"trial-{o.best_number:04d}.keras").is_file()
    # The best model, its evaluation and its gate report sit beside the trials, named in the summary;
    # the DVC-tracked outputs of train / evaluate / compare are not touched (they were overwritten,
    # leaving dvc.lock stale and `dvc repro` to retrain over the tuned model).
    assert f"files           : {study_dir}" in text
    for name in ("model.keras", "run.json", "evaluate.json", "compare.json", "evaluation/run.json"):
        assert (study_dir / name).is_file(), name
    assert json.loads((study_dir / "run.json").read_text())["run_id"] == o.best_run_id
    for untouched in ("model_file", "run_file", "evaluate_metrics", "compare_metrics", "evaluation_dir"):
        assert not getattr(params.paths, untouched).exists(), untouched


def test_bad_search_space_fails_before_any_trial(folder_params):
    path = folder_params({"tune": {"learning_rate": [0.01, 0.001]}})
    with pytest.raises(ConfigError, match="tune.learning_rate: .*inverted range"):
        tune(params_path=str(path))


def test_a_failed_worker_leaves_the_parent_run_failed_with_the_reason(folder_params, monkeypatch):
    # Only finish_task closed the parent run: a worker that raised left it RUNNING for good.
    from pipelines import steps

    path = folder_params({"train": {"model": "mlp", "epochs": 2}, "tune": {"n_trials": 1, "models": ["mlp"]}})

    def crashed(params, study, **kwargs):
        raise RuntimeError("worker crashed")

    monkeypatch.setattr(steps, "run_tune_worker", crashed)
    with pytest.raises(RuntimeError, match="worker crashed"):
        tune(params_path=str(path))
    mc = tracking.client()
    experiment = mc.get_experiment_by_name(load_params(path).tracking.experiment)
    (parent,) = mc.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tracking.RUN_KIND_TAG}` = 'tune'"
    )
    assert parent.info.status == "FAILED"
    assert parent.data.tags[steps.FAILURE_REASON_TAG] == "RuntimeError: worker crashed"
