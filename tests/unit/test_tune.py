"""Optuna tuning calls the same train() and prunes stalled trials with the engine's reason."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from pipelines.config import load_params
from pipelines.train import TrainData
from pipelines.tune import pruning_callback, tune


@pytest.fixture
def digits_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images * 16).clip(0, 255).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_tr, x_va, y_tr, y_va = train_test_split(x_tr, y_tr, test_size=0.25, stratify=y_tr, random_state=0)
    return TrainData(x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va, num_classes=10), (x_te, y_te)


def test_tune_runs_trials_and_scores_best_on_test(params_file, digits_data, mlflow_uri):
    from pipelines import tracking

    data, test = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 3}, "tune": {"n_trials": 2}}))
    mc = tracking.client()
    result = tune(params, data, test=test, mlflow_client=mc)
    assert len(result.trials) == 2
    # Each trial is an MLflow run named by its trial number, with its curves.
    runs = mc.search_runs([mc.get_experiment_by_name(params.tracking.experiment).experiment_id])
    by_name = {r.info.run_name.split(" mlp ")[0]: r for r in runs}
    assert set(by_name) == {"trial 0", "trial 1"}
    for number, r in enumerate(sorted(by_name.values(), key=lambda r: r.info.run_name)):
        lr = result.trials[number]["params"]["learning_rate"]
        assert f"lr={tracking._short_number(lr)}" in r.info.run_name
        assert r.data.tags[tracking.RUN_KIND_TAG] == "trial" and r.info.status in ("FINISHED", "KILLED")
        assert len(mc.get_metric_history(r.info.run_id, "val_accuracy")) >= 1
    assert 0.5 < result.best_val_accuracy <= 1.0
    assert result.test_accuracy is not None and 0.5 < result.test_accuracy <= 1.0
    assert set(result.best_params) == {"learning_rate", "dropout", "l2", "batch_size"}
    lo, hi = params.tune.learning_rate
    assert lo <= result.best_params["learning_rate"] <= hi


def test_n_trials_must_be_positive(params_file, digits_data):
    data, _ = digits_data
    with pytest.raises(ValueError, match="n_trials"):
        tune(load_params(params_file()), data, n_trials=0)


def test_pruning_callback_prunes_a_stall_with_its_reason():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    cb = pruning_callback(trial, epoch_budget=30, num_classes=10)
    rng = np.random.default_rng(0)
    with pytest.raises(optuna.TrialPruned):
        for epoch in range(30):
            v = (0.3 + 0.03 * epoch if epoch < 6 else 0.472) + rng.normal(0, 0.004)
            cb.on_epoch_end(
                epoch, {"val_accuracy": v, "accuracy": v + 0.01, "loss": 2 - v, "val_loss": 2 - v}
            )
    assert "flat" in trial.user_attrs["pruned_because"]
    assert epoch < 29  # stopped well before the budget


def test_pruning_callback_lets_a_healthy_run_finish():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    cb = pruning_callback(trial, epoch_budget=15, num_classes=10)
    for epoch in range(15):
        v = 0.9 - 0.6 * np.exp(-epoch / 6)
        cb.on_epoch_end(epoch, {"val_accuracy": v, "accuracy": v + 0.01, "loss": 1 - v, "val_loss": 1 - v})
    assert "pruned_because" not in trial.user_attrs
