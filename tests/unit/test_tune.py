"""Optuna tuning calls the same train(), writes trial models to disk, and prunes with a reason."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest

from pipelines.config import ConfigError, load_params
from pipelines.curves.pruner import CurvePruner
from pipelines.train import TrainData
from pipelines.tune import TrialRecord, make_pruner, make_storage, reporting_callback, tune


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


class Recorder:
    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[TrialRecord] = []

    def start(self, number, params, cfg):
        self.started.append(number)
        assert cfg.learning_rate == params["learning_rate"]
        return ()

    def finish(self, record):
        self.finished.append(record)


def test_tune_runs_trials_writes_models_and_scores_best_on_test(params_file, digits_data, tmp_path):
    data, test = digits_data
    params = load_params(
        params_file(
            {
                "train": {"model": "mlp", "epochs": 3},
                "tune": {
                    "n_trials": 2,
                    "models": ["mlp"],
                    "augment": [False, True],
                    "reduce_lr_factor": [0.2, 0.5],
                },
            }
        )
    )
    hooks = Recorder()
    result = tune(params, data, test=test, trial_dir=tmp_path / "trials", hooks=hooks)
    assert [r.number for r in result.trials] == hooks.started == [r.number for r in hooks.finished] == [0, 1]
    assert 0.5 < result.best_val_accuracy <= 1.0
    assert result.test_accuracy is not None and 0.5 < result.test_accuracy <= 1.0
    assert set(result.best_params) == {
        "learning_rate",
        "dropout",
        "l2",
        "batch_size",
        "augment",
        "model",
        "reduce_lr_factor",
    }
    lo, hi = params.tune.learning_rate
    assert lo <= result.best_params["learning_rate"] <= hi
    assert result.best_model_path == tmp_path / "trials" / f"trial-{result.best_number:04d}.keras"
    assert result.best_model_path.is_file()
    complete = [r for r in result.trials if r.state == "COMPLETE"]
    assert all(r.model_path is not None and r.model_path.is_file() for r in complete)
    assert (
        result.epochs_spent == sum(r.epochs_run for r in result.trials) <= result.epochs_without_pruning == 6
    )


def test_tune_on_sqlite_storage_resumes_the_same_study(params_file, digits_data, tmp_path):
    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 2}, "tune": {"models": ["mlp"]}}))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    tune(params, data, n_trials=1, storage=url, study_name="s")
    tune(params, data, n_trials=1, storage=url, study_name="s")
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_n_trials_must_be_positive_naming_where_it_came_from(params_file, digits_data):
    from typer.testing import CliRunner

    from pipelines.cli import app

    data, _ = digits_data
    with pytest.raises(ValueError, match=r"got 0 \(the n_trials argument\)"):
        tune(load_params(params_file()), data, n_trials=0)
    # params.yaml's tune.n_trials is refused at load (test_bad_search_space_names_the_params_key);
    # the command line's --trials by Typer, naming it, before any data is read.
    result = CliRunner().invoke(app, ["tune", "--params", str(params_file()), "--trials", "0"])
    assert result.exit_code == 2 and "--trials" in result.output


@pytest.mark.parametrize(
    ("tune_section", "key", "message"),
    [
        ({"learning_rate": [0.01, 0.0001]}, "tune.learning_rate", "inverted range"),
        ({"dropout": [0.3, 0.3]}, "tune.dropout", "empty range"),
        ({"l2": [0.0, 0.001]}, "tune.l2", "log-uniform"),
        ({"batch_sizes": []}, "tune.batch_sizes", "empty list"),
        ({"models": ["resnet"]}, "tune.models", "small_cnn"),
        ({"n_trials": 0}, "tune.n_trials", "greater than or equal to 1"),
        ({"momentum": [0.8, 0.99]}, "tune.momentum", "Extra inputs"),
        ({"reduce_lr_factor": [0.5, 0.2]}, "tune.reduce_lr_factor", "inverted range"),
    ],
)
def test_bad_search_space_names_the_params_key(params_file, tune_section, key, message):
    with pytest.raises(ConfigError, match=rf"params.yaml: {key}[.0-9]*: .*{message}"):
        load_params(params_file({"tune": tune_section}))


def test_reporting_callback_stops_a_hopeless_trial_with_the_pruners_reason():
    import keras

    study = optuna.create_study(direction="maximize", pruner=CurvePruner(30, num_classes=10))
    for top in (0.86, 0.88, 0.9):
        t = study.ask()
        study.tell(t, top)
    # Completed trials need no curves for the target; the running one does.
    trial = study.ask()
    cb = reporting_callback(trial)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # as fit() sets it
    cb.set_model(model)
    for epoch in range(30):
        v = 0.7 - 0.4 * np.exp(-epoch / 3)
        cb.on_epoch_end(epoch, {"val_accuracy": v, "loss": 1 - v})
        if model.stop_training:
            break
    # It asks Keras to stop (fit returns, every callback saw the epoch); the caller raises.
    assert model.stop_training and cb.epochs < 15
    assert cb.pruned_because.startswith(f"stopped at epoch {cb.epochs}: val_accuracy forecast")
    assert study.trials[trial.number].user_attrs["pruned_rule"] == "forecast"


class _PruneTrialOneAtEpoch2(optuna.pruners.BasePruner):
    """Prunes trial 1 at its second epoch, with a reason; never trial 0."""

    def prune(self, study, trial) -> bool:
        if trial.number != 1 or trial.last_step is None or trial.last_step < 2:
            return False
        study._storage.set_trial_user_attr(trial._trial_id, "pruned_because", "stopped at epoch 2: test")
        return True


class _EpochSpy:
    """Hooks whose extra Keras callback records the epochs and the on_train_end it was given."""

    def __init__(self) -> None:
        self.seen: dict[int, dict] = {}
        self.finished: dict[int, TrialRecord] = {}

    def start(self, number, params, cfg):
        import keras

        seen = self.seen.setdefault(number, {"epochs": [], "train_end": False})

        class Spy(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                seen["epochs"].append(epoch + 1)

            def on_train_end(self, logs=None):
                seen["train_end"] = True

        return (Spy(),)

    def finish(self, record):
        self.finished[record.number] = record


def test_a_pruned_trial_ends_its_fit_so_every_callback_sees_its_last_epoch(
    params_file, digits_data, monkeypatch
):
    # The epoch a trial is pruned at reaches the hooks' callbacks (the MLflow epoch logger), and
    # so does on_train_end (which drains the logger's buffer); raising inside on_epoch_end, as
    # Optuna's TFKerasPruningCallback does, lost both.
    import pipelines.tune as tune_module

    monkeypatch.setattr(tune_module, "make_pruner", lambda params, num_classes: _PruneTrialOneAtEpoch2())
    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 4}, "tune": {"models": ["mlp"]}}))
    hooks = _EpochSpy()
    result = tune(params, data, n_trials=2, hooks=hooks)
    assert [r.state for r in result.trials] == ["COMPLETE", "PRUNED"]
    pruned = hooks.finished[1]
    assert pruned.pruned_because == "stopped at epoch 2: test" and pruned.epochs_run == 2
    assert hooks.seen[1] == {"epochs": [1, 2], "train_end": True}
    assert len(pruned.history["val_accuracy"]) == 2 and pruned.model_path is None
    assert hooks.seen[0] == {"epochs": [1, 2, 3, 4], "train_end": True}
    assert result.epochs_spent == 6


def test_make_pruner_follows_params(params_file):
    assert isinstance(make_pruner(load_params(params_file({"train": {"epochs": 5}})), 10), CurvePruner)
    p = load_params(params_file({"tune": {"pruner": "median"}}))
    assert isinstance(make_pruner(p, 10), optuna.pruners.MedianPruner)
    p = load_params(params_file({"tune": {"pruner": "none"}}))
    assert isinstance(make_pruner(p, 10), optuna.pruners.NopPruner)
    assert make_storage(None) is None


def test_killed_trial_is_failed_by_heartbeat_and_retried(tmp_path):
    import time

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    with warnings.catch_warnings():
        # Optuna's current retry callback, not its deprecated alias RetryFailedTrialCallback
        # (FutureWarning since 4.9), and no ExperimentalWarning repeated at every worker start.
        warnings.simplefilter("error")
        storage = make_storage(url, heartbeat_interval=1, grace_period=2)
    assert (
        type(storage.get_heartbeat_stale_trial_callback()) is optuna.storages.RetryHeartbeatStaleTrialCallback
    )
    study = optuna.create_study(storage=storage, study_name="hb", direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    # A running trial that stops beating (its worker was SIGKILLed): record one beat, then nothing.
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert states[1] == optuna.trial.TrialState.WAITING  # the retry, same parameters
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_make_pruner_warns_when_the_budget_leaves_the_forecast_rule_no_epoch(params_file):
    for epochs in (2, 3):
        with pytest.warns(
            RuntimeWarning, match=f"train.epochs = {epochs} is within CurvePruner's 3-epoch warm-up"
        ):
            make_pruner(load_params(params_file({"train": {"epochs": epochs}})), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epochs in (4, 6, 12):  # the quick profile's 6: the forecast rule may act from epoch 3
            pruner = make_pruner(load_params(params_file({"train": {"epochs": epochs}})), 10)
            assert isinstance(pruner, CurvePruner) and pruner.n_warmup_steps == 3


def test_a_model_trained_under_mixed_precision_is_loaded_for_prediction_without_warnings(tmp_path):
    import keras

    from pipelines import steps
    from pipelines.tune import score

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(64, 4, 4, 1), dtype=np.uint8)
    y = rng.integers(0, 3, size=64)
    keras.mixed_precision.set_global_policy("mixed_float16")  # as train() sets it on a GPU
    try:
        model = keras.Sequential(
            [
                keras.Input((4, 4, 1)),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(3, activation="softmax", dtype="float32"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy")  # a loss-scale optimizer
        model.fit(x, y, epochs=1, verbose=0)
        path = tmp_path / "mixed.keras"
        model.save(path)
        expected = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    with warnings.catch_warnings():
        # Restoring the loss-scale optimizer into a plain one warns "Skipping variable loading
        # for optimizer"; prediction needs no optimizer.
        warnings.simplefilter("error", UserWarning)
        loaded = steps.load_model_safely(path)
        accuracy = score(path, x, y)
    assert getattr(loaded, "optimizer", None) is None  # not compiled: no training state restored
    assert accuracy == pytest.approx(expected)


def test_hooks_that_fail_to_start_a_trial_still_get_to_finish_it(params_file, digits_data):
    # hooks.start had run outside the trial's try: an MLflow error after it opened the trial's run
    # left that run RUNNING (finish, which ends it, was never called).
    class FailingStart(Recorder):
        def start(self, number, params, cfg):
            self.started.append(number)
            raise ConnectionError("tracking server went away")

    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 1}, "tune": {"models": ["mlp"]}}))
    hooks = FailingStart()
    with pytest.raises(ConnectionError):
        tune(params, data, n_trials=1, hooks=hooks)
    assert hooks.started == [0] and [(r.number, r.state) for r in hooks.finished] == [(0, "FAIL")]


class _ScriptedTrain:
    """Stands in for pipelines.train.train: reports a scripted history through the trial's
    callbacks (as fit would) and returns a tiny model, so a trial's bookkeeping is tested alone."""

    def __init__(self, val_accuracy, val_loss, *, error: Exception | None = None) -> None:
        self.val_accuracy, self.val_loss, self.error = val_accuracy, val_loss, error

    def __call__(self, cfg, data, *, seed, backup_dir, callbacks=(), verbose=0, **_):
        import keras

        from pipelines.train import TrainResult, _best_epoch

        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        history: dict[str, list[float]] = {"val_accuracy": [], "val_loss": []}
        for epoch, (acc, loss) in enumerate(zip(self.val_accuracy, self.val_loss, strict=True)):
            history["val_accuracy"].append(acc)
            history["val_loss"].append(loss)
            for cb in callbacks:
                cb.set_model(model)
                cb.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": loss})
        if self.error is not None:
            raise self.error
        return TrainResult(
            model=model,
            history=history,
            epochs_run=len(self.val_loss),
            stopped_early=False,
            best_epoch=_best_epoch(history["val_loss"]),
            train_seconds=0.0,
            device="cpu",
            mixed_precision=False,
        )


def test_a_trials_value_is_the_val_accuracy_of_the_model_it_keeps(params_file, digits_data, monkeypatch):
    # train() keeps the weights of the lowest val_loss (EarlyStopping's restore_best_weights); the
    # value ranked the trials by the highest val_accuracy of any epoch instead (0.80 here, at epoch
    # 3, while the saved model scores 0.70), and the optimism check compared that with the saved
    # model's test accuracy.
    import pipelines.train

    monkeypatch.setattr(pipelines.train, "train", _ScriptedTrain([0.5, 0.7, 0.8], [1.0, 0.6, 0.7]))
    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 3}, "tune": {"models": ["mlp"]}}))
    result = tune(params, data, n_trials=1)
    assert result.trials[0].value == result.best_val_accuracy == 0.7


def test_the_real_best_model_scores_its_value_on_the_validation_split(params_file, digits_data, tmp_path):
    from pipelines.tune import score

    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 4}, "tune": {"models": ["mlp"]}}))
    result = tune(params, data, n_trials=1, trial_dir=tmp_path / "trials")
    assert score(result.best_model_path, data.x_val, data.y_val) == pytest.approx(
        result.best_val_accuracy, abs=1e-6
    )


def test_workers_and_resumed_calls_draw_different_configurations(
    params_file, digits_data, monkeypatch, tmp_path
):
    # Every worker seeded its TPE sampler with base.seed: during the random start-up, worker k's
    # n-th trial was worker 0's n-th, so N workers tried each configuration N times (and a call
    # resuming a study repeated its first trials).
    import pipelines.train
    from pipelines.tune import sampler_seed

    monkeypatch.setattr(pipelines.train, "train", _ScriptedTrain([0.5, 0.6], [1.0, 0.9]))
    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 2}, "tune": {"models": ["mlp"]}}))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    for worker in (0, 1, 0):
        tune(params, data, storage=url, study_name="s", until_finished=None, n_trials=1, worker=worker)
    drawn = [t.params["learning_rate"] for t in optuna.load_study(study_name="s", storage=url).trials]
    assert len(set(drawn)) == 3
    assert sampler_seed(0, 1, 4) == sampler_seed(0, 1, 4) != sampler_seed(0, 2, 4) != sampler_seed(0, 1, 5)
    assert 0 <= sampler_seed(2**32 - 1, 7, 10**6) < 2**32
    with pytest.raises(ValueError, match="worker must be >= 0"):
        tune(params, data, n_trials=1, worker=-1)


def _fail_in_storage(url: str, number: int) -> None:
    """What another worker does to a trial whose heartbeat looked stale: mark it FAIL."""
    study = optuna.load_study(study_name="s", storage=url)
    trial = next(t for t in study.trials if t.number == number)
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


@pytest.mark.parametrize("when", ["while training", "after training"])
def test_a_worker_carries_on_when_another_worker_failed_its_trial(
    params_file, digits_data, monkeypatch, tmp_path, when
):
    # Optuna reports that case as ValueError("Cannot tell a FAIL trial.") (the objective's report
    # was refused) or AssertionError("Should not reach.") (it returned), never the
    # UpdateFinishedTrialError the worker caught: the worker died, leaving its share of the study
    # undone, and the trial's MLflow run said COMPLETE while Optuna said FAIL.
    import pipelines.train

    monkeypatch.setattr(pipelines.train, "train", _ScriptedTrain([0.5, 0.6], [1.0, 0.9]))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"

    class FailedElsewhere(Recorder):
        def start(self, number, params, cfg):
            if when == "while training" and number == 0:
                _fail_in_storage(url, 0)
            return super().start(number, params, cfg)

        def finish(self, record):
            if when == "after training" and record.number == 0 and record.state == "COMPLETE":
                _fail_in_storage(url, 0)
            super().finish(record)

    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 2}, "tune": {"models": ["mlp"]}}))
    hooks = FailedElsewhere()
    with pytest.warns(RuntimeWarning, match="trial 0 was failed by another worker"):
        result = tune(params, data, storage=url, study_name="s", until_finished=2, hooks=hooks)
    assert [(r.number, r.state) for r in result.trials] == [(0, "FAIL"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert hooks.finished[-3].number == 0 and hooks.finished[-3].state == "FAIL"  # the hooks are told
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]


def test_a_workers_own_error_is_not_taken_for_another_workers_doing(
    params_file, digits_data, monkeypatch, tmp_path
):
    import pipelines.train

    monkeypatch.setattr(
        pipelines.train, "train", _ScriptedTrain([0.5], [1.0], error=RuntimeError("out of memory"))
    )
    data, _ = digits_data
    params = load_params(params_file({"train": {"model": "mlp", "epochs": 1}, "tune": {"models": ["mlp"]}}))
    with pytest.raises(RuntimeError, match="out of memory"):
        tune(params, data, storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="s", until_finished=2)


def test_epoch_accounting_credits_pruning_only_with_what_pruning_saved():
    from pipelines.tune import epoch_accounting

    # A complete trial that EarlyStopping ended at 6 of 10 epochs, one pruned at 3, one failed at 4.
    trials = [("COMPLETE", 6), ("PRUNED", 3), ("FAIL", 4)]
    assert epoch_accounting(trials, 10) == (13, 20)  # saved 7: the pruned trial's remaining epochs
    assert epoch_accounting([("FAIL", 5), ("COMPLETE", 10)], 10) == (15, 15)  # never a negative saving
    assert epoch_accounting([], 10) == (0, 0)
