"""Hyperparameter tuning with Optuna, calling the same :func:`pipelines.train.train` as training.

Each trial trains ``params.train`` with the sampled values replaced (learning rate, dropout, L2,
batch size). A trial is pruned when the curve-diagnosis engine confirms a stall
(:func:`pipelines.curves.callback.should_stop`, the same decision as the Keras
``DiagnosisCallback``), and the reason is kept in the trial's user attribute ``pruned_because``.
After the search the best trial's model is scored on the held-out test split, and the engine's
``tuning_optimism`` check says whether the search overfit its validation split.

Optuna: Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019;
TPE sampler (Bergstra et al., NeurIPS 2011).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import Params, TrainConfig, TuneConfig
from pipelines.curves.types import Finding


@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes:
        best_params: the sampled values of the best trial.
        best_val_accuracy: its best validation accuracy (fraction in [0, 1]).
        test_accuracy: the best trial's model on the test split (None when no test data given).
        optimism: the engine's ``tuning_optimism`` finding, or None when validation and test agree.
        trials: one dict per trial: number, state, value, params, pruned_because.
    """

    best_params: dict[str, Any]
    best_val_accuracy: float
    test_accuracy: float | None
    optimism: Finding | None
    trials: list[dict[str, Any]] = field(default_factory=list)


def pruning_callback(trial, *, epoch_budget: int, num_classes: int | None):
    """A Keras callback reporting ``val_accuracy`` to ``trial`` each epoch and raising
    ``optuna.TrialPruned`` when :func:`should_stop` confirms a stall on the history so far."""
    import keras
    import optuna

    from pipelines.curves.callback import should_stop

    class StallPruning(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            if "val_accuracy" in (logs or {}):
                trial.report(float(logs["val_accuracy"]), step=epoch + 1)
            decision = should_stop(self.history, epoch_budget=epoch_budget, num_classes=num_classes)
            if decision.stop:
                reason = decision.reason or f"stopped at epoch {epoch + 1}"
                trial.set_user_attr("pruned_because", reason)
                raise optuna.TrialPruned(reason)

    return StallPruning()


def _sample(trial, base: TrainConfig, space: TuneConfig) -> TrainConfig:
    update = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "l2": trial.suggest_float("l2", *space.l2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
    }
    return base.model_copy(update=update)


def _trial_run(mlflow_client, params: Params, number: int):
    """Open the MLflow run of trial ``number``; returns its id and its per-epoch logging callback."""
    from datetime import UTC, datetime

    from pipelines import tracking

    exp = tracking.ensure_experiment(mlflow_client, params.tracking.experiment)
    name = tracking.run_name(
        params.train.model, params.train.learning_rate, None, datetime.now(UTC), trial=number
    )
    run = mlflow_client.create_run(exp, run_name=name, tags={tracking.RUN_KIND_TAG: "trial"})
    tracking.log_params(mlflow_client, run.info.run_id, params)
    return run.info.run_id, tracking.epoch_logger(mlflow_client, run.info.run_id)


def tune(
    params: Params,
    data,
    *,
    n_trials: int | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    storage: str | None = None,
    study_name: str = "curvewatch-tune",
    mlflow_client=None,
) -> TuneResult:
    """Search hyperparameters for ``params.train`` on ``data`` (a :class:`pipelines.train.TrainData`).

    Args:
        params: the resolved params; ``train`` is the base config the search perturbs and ``tune``
            holds the ranges sampled (log-uniform for the learning rate and L2).
        data: training and validation splits (uint8 images, int64 labels).
        n_trials: trials to run (>= 1); default ``params.tune.n_trials``.
        test: ``(x_test, y_test)`` to score the best trial's model on, for the optimism check.
        storage: an Optuna storage URL (e.g. ``sqlite:///optuna.db``) to keep the study; in memory
            when None.
        study_name: the study's name in ``storage``.
        mlflow_client: when given, each trial is an MLflow run of ``tracking.experiment`` named
            ``trial <number> <model> lr=<learning rate> <time>`` (``curvewatch.run_kind=trial``),
            with its params and per-epoch curves; ended FINISHED, KILLED (pruned) or FAILED.

    Returns:
        TuneResult.

    Raises:
        ValueError: ``n_trials`` < 1, or every trial was pruned or failed.
    """
    import optuna

    from pipelines.curves.compare import tuning_optimism
    from pipelines.train import train

    space = params.tune
    n_trials = space.n_trials if n_trials is None else n_trials
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    sampler = optuna.samplers.TPESampler(seed=params.base.seed)
    study = optuna.create_study(
        direction="maximize", sampler=sampler, storage=storage, study_name=study_name, load_if_exists=True
    )
    models: dict[int, Any] = {}

    def objective(trial) -> float:
        cfg = _sample(trial, params.train, space)
        callbacks = [pruning_callback(trial, epoch_budget=cfg.epochs, num_classes=data.num_classes)]
        run_id = logger = None
        if mlflow_client is not None:
            run_id, logger = _trial_run(mlflow_client, params.model_copy(update={"train": cfg}), trial.number)
            callbacks.append(logger)
        status = "FAILED"
        try:
            with tempfile.TemporaryDirectory(prefix="curvewatch-trial-") as backup:
                result = train(
                    cfg,
                    data,
                    seed=params.base.seed,
                    backup_dir=Path(backup),
                    callbacks=tuple(callbacks),
                    verbose=0,
                )
            status = "FINISHED"
        except optuna.TrialPruned:
            status = "KILLED"
            raise
        finally:
            if run_id is not None:
                if logger.buffer is not None:
                    logger.buffer.close()  # a pruned fit never reaches on_train_end
                mlflow_client.set_terminated(run_id, status=status)
        values = [v for v in result.history.get("val_accuracy", []) if np.isfinite(v)]
        if not values:
            raise optuna.TrialPruned("no finite val_accuracy")
        models[trial.number] = result.model
        return float(max(values))

    study.optimize(objective, n_trials=n_trials, catch=())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"tune: all {n_trials} trials were pruned or failed; widen the search space")
    best = study.best_trial
    test_accuracy = optimism = None
    if test is not None and best.number in models:
        x_test, y_test = test
        probs = models[best.number].predict(x_test, verbose=0)
        test_accuracy = float(np.mean(np.argmax(probs, axis=1) == y_test))
        optimism = tuning_optimism(best.value, test_accuracy, n_val=len(data.y_val), n_test=len(y_test))
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "pruned_because": t.user_attrs.get("pruned_because"),
        }
        for t in study.trials
    ]
    return TuneResult(
        best_params=best.params,
        best_val_accuracy=float(best.value),
        test_accuracy=test_accuracy,
        optimism=optimism,
        trials=trials,
    )
