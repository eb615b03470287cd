"""Hyperparameter tuning with Optuna, calling the same :func:`pipelines.train.train` as training.

Each trial trains ``params.train`` with the sampled values replaced (:func:`sample_config`: learning
rate, batch size, dropout, L2, augmentation, model, the learning-rate schedule's ReduceLROnPlateau
factor), reports ``val_accuracy`` every epoch and is pruned by
:class:`pipelines.curves.pruner.CurvePruner` (``tune.pruner: curve``, the default): a trial whose
forecast will not beat the best, or that the diagnosis engine finds diverging, not learning or
stalled, stops, and the reason stays in the trial's user attribute ``pruned_because``. A finished
trial's model is written to disk at once (never held in memory); its value is the ``val_accuracy``
of that model: the epoch whose weights :func:`pipelines.train.train` keeps (the lowest ``val_loss``,
as Keras' ``EarlyStopping(restore_best_weights=True)`` restores), not the highest ``val_accuracy``
of any epoch, so that the trial ranked best, the model gated and the optimism check's validation
score are one and the same.

Each worker's TPE sampler has its own seed (:func:`sampler_seed`): workers seeded alike draw the
same start-up configurations, so N workers would try each one N times.

Storage: in memory, or any Optuna RDB URL (SQLite for one machine, PostgreSQL for parallel
workers). With an RDB storage a heartbeat marks the trial of a killed worker failed and
``RetryHeartbeatStaleTrialCallback`` (``RetryFailedTrialCallback`` before Optuna 4.9, which deprecated
that name) enqueues it again
(https://optuna.readthedocs.io/en/stable/reference/generated/optuna.storages.RetryHeartbeatStaleTrialCallback.html).

Optuna: Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019;
TPE sampler (Bergstra et al., NeurIPS 2011).
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipelines.config import Params, TrainConfig, TuneConfig
from pipelines.curves.types import Finding

#: Defaults of :func:`make_storage`: seconds between a running trial's heartbeats, and without one
#: before it counts as failed (``tune.heartbeat_grace_s`` in params.yaml).
HEARTBEAT_INTERVAL_S = 5
HEARTBEAT_GRACE_S = 20


@dataclass
class TrialRecord:
    """One finished trial (complete, pruned or failed).

    Attributes:
        number: Optuna's trial number.
        state: ``COMPLETE``, ``PRUNED`` or ``FAIL``.
        value: for a complete trial, the ``val_accuracy`` (fraction) of the kept weights (the
            epoch of lowest ``val_loss``); the best seen before the prune for a pruned one; None
            when failed.
        params: the sampled values.
        epochs_run: epochs trained.
        pruned_because: the pruner's one-line reason, or None.
        model_path: the saved ``.keras`` model of a complete trial, or None.
        history: Keras metric name -> per-epoch values.
    """

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs_run: int
    pruned_because: str | None = None
    model_path: Path | None = None
    history: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes:
        study_name: the Optuna study.
        best_number: the best trial's number.
        best_params: its sampled values.
        best_val_accuracy: its value: the validation accuracy (fraction in [0, 1]) of its saved
            model (the epoch of lowest ``val_loss``).
        best_model_path: its saved model.
        test_accuracy: the best model on the test split (None when no test data given).
        optimism: the engine's ``tuning_optimism`` finding, or None when validation and test agree.
        trials: the trials this call ran, in order.
        epochs_spent: epochs trained over those trials (:func:`epoch_accounting`).
        epochs_without_pruning: what the same trials would have cost unpruned: a pruned trial at
            the full ``train.epochs`` (an upper bound, as ``train``'s own EarlyStopping may have
            ended it sooner), the others at what they ran (:func:`epoch_accounting`).
    """

    study_name: str
    best_number: int
    best_params: dict[str, Any]
    best_val_accuracy: float
    best_model_path: Path | None
    test_accuracy: float | None
    optimism: Finding | None
    trials: list[TrialRecord] = field(default_factory=list)
    epochs_spent: int = 0
    epochs_without_pruning: int = 0


class TrialHooks(Protocol):
    """What a caller (e.g. MLflow logging in :func:`pipelines.steps.run_tune_worker`) sees of each trial."""

    def start(self, number: int, params: dict[str, Any], cfg: TrainConfig) -> tuple[Any, ...]:
        """Called before training; returns extra Keras callbacks for this trial."""

    def finish(self, record: TrialRecord) -> None:
        """Called once per trial with its outcome (also for pruned and failed trials); called a
        second time, with state ``FAIL``, when Optuna then refuses that outcome because another
        worker failed the trial meanwhile (its heartbeat looked stale)."""


def sample_config(trial: Any, base: TrainConfig, space: TuneConfig) -> TrainConfig:
    """Sample one configuration of ``space`` around ``base`` (``reduce_lr_factor`` fixed when its
    range is one value, ``[f, f]``; the other ranges are refused empty by the config).

    Args:
        trial: an ``optuna.Trial``.
        base: ``params.train``; what the space does not name stays as it is.
        space: ``params.tune``.

    Returns:
        The trial's ``TrainConfig``.
    """
    update: dict[str, Any] = {
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "l2": trial.suggest_float("l2", *space.l2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "augment": trial.suggest_categorical("augment", list(space.augment)),
        "model": trial.suggest_categorical("model", list(space.models)),
    }
    lo, hi = space.reduce_lr_factor
    update["reduce_lr_factor"] = trial.suggest_float("reduce_lr_factor", lo, hi) if lo < hi else lo
    return base.model_copy(update=update)


def epoch_accounting(trials: Any, budget: int) -> tuple[int, int]:
    """Epochs a study spent, and what the same trials would have spent without pruning.

    Args:
        trials: ``(state, epochs_run)`` pairs, state ``COMPLETE``, ``PRUNED`` or ``FAIL``.
        budget: ``train.epochs``.

    Returns:
        ``(spent, without_pruning)``: spent sums every trial's epochs; without pruning counts a
        pruned trial at ``budget`` and every other trial at what it ran (a complete trial's own
        EarlyStopping, and a failed trial's epochs, cost the same either way). Their difference is
        what pruning saved, at most (a pruned trial might have stopped early before the budget).
    """
    spent = without = 0
    for state, epochs_run in trials:
        spent += epochs_run
        without += max(budget, epochs_run) if state == "PRUNED" else epochs_run
    return spent, without


def sampler_seed(base_seed: int, worker: int, trials_before: int) -> int:
    """The TPE sampler's seed for one worker of a study: ``(base.seed, worker, trials_before)``
    mixed by NumPy's ``SeedSequence`` into one uint32.

    Workers (and later calls resuming a study on an RDB storage) seeded alike draw the same
    configurations during TPE's random start-up; this keeps each reproducible and all different.

    Args:
        base_seed: ``base.seed``.
        worker: the worker's index (0 for one worker).
        trials_before: trials the study held when this worker joined.
    """
    return int(np.random.SeedSequence([base_seed, worker, trials_before]).generate_state(1)[0])


def _kept_val_accuracy(history: dict[str, list[float]], best_epoch: int) -> float:
    """``val_accuracy`` at ``best_epoch`` (1-based; the weights train() keeps), else at the last
    epoch when no ``val_loss`` was finite (EarlyStopping then kept the last weights); NaN if none."""
    values = history.get("val_accuracy", [])
    if not values:
        return math.nan
    index = best_epoch - 1 if 0 < best_epoch <= len(values) else len(values) - 1
    return float(values[index])


def make_pruner(params: Params, num_classes: int | None) -> Any:
    """The Optuna pruner named by ``tune.pruner`` (``curve``, ``median`` or ``none``).

    Warns (``RuntimeWarning``) when ``train.epochs`` leaves CurvePruner's forecast rule no epoch to
    act on (a budget within its warm-up).
    """
    import optuna

    from pipelines.curves.pruner import CurvePruner

    space, epochs = params.tune, params.train.epochs
    if space.pruner == "none" or epochs < 2:
        return optuna.pruners.NopPruner()
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    pruner = CurvePruner(
        epochs, threshold=space.prune_threshold, num_classes=num_classes, config=params.diagnose
    )
    if epochs <= pruner.n_warmup_steps:
        # Only budgets of 2 or 3 epochs (the forecast rule's warm-up is 3 epochs). With the old
        # fixed 6-epoch warm-up, `make tune` (quick profile, 6 epochs) pruned none of 8 trials.
        warnings.warn(
            f"train.epochs = {epochs} is within CurvePruner's {pruner.n_warmup_steps}-epoch warm-up and "
            "the last epoch is never pruned: only the diagnosis rules (divergence, not learning, "
            "stall) can prune, the forecast rule cannot; give trials a longer budget (e.g. "
            "--profile full) for pruning by forecast",
            RuntimeWarning,
            stacklevel=2,
        )
    return pruner


def make_storage(
    url: str | None, *, heartbeat_interval: int = HEARTBEAT_INTERVAL_S, grace_period: int = HEARTBEAT_GRACE_S
) -> Any:
    """``None`` (in memory) or an ``RDBStorage`` for ``url`` with heartbeat and retry of failed trials.

    A worker killed mid-trial stops beating; after ``grace_period`` seconds the next worker to ask
    for a trial marks it ``FAIL`` and ``RetryHeartbeatStaleTrialCallback`` enqueues the same
    parameters again (at most twice). Optuna flags the heartbeat and that callback as experimental;
    their ``ExperimentalWarning`` is not repeated to the user on every worker start.
    """
    if url is None:
        return None
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    # SQLite serialises writers: wait for the lock instead of failing at once when workers overlap.
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
            engine_kwargs=engine,
        )


def reporting_callback(trial: Any):
    """A Keras callback reporting ``val_accuracy`` to ``trial`` each epoch (step = 1-based epoch).

    When ``trial.should_prune()``, it sets ``model.stop_training`` and keeps the pruner's reason
    in its ``pruned_because``; the caller raises ``optuna.TrialPruned`` once ``fit`` has returned.
    Optuna's own ``TFKerasPruningCallback`` raises inside ``on_epoch_end`` instead: the callbacks
    after it then miss the epoch it was pruned at, and no callback gets ``on_train_end`` (Keras
    does not call it when ``fit`` raises), so an MLflow epoch logger's buffer was never drained.
    """
    import keras

    class ReportToOptuna(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs = 0
            self.history: dict[str, list[float]] = {}
            self.pruned_because: str | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs = epoch + 1
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            if "val_accuracy" not in (logs or {}) or self.pruned_because is not None:
                return
            trial.report(float(logs["val_accuracy"]), step=epoch + 1)
            if trial.should_prune():
                # The pruner wrote its reason through the storage; the Trial's own cache lags.
                reason = trial.storage.get_trial_user_attrs(trial._trial_id).get("pruned_because")
                self.pruned_because = reason or f"pruned at epoch {epoch + 1}"
                if self.model is not None:
                    self.model.stop_training = True

    return ReportToOptuna()


def tune(
    params: Params,
    data: Any,
    *,
    n_trials: int | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    trial_dir: Path | None = None,
    hooks: TrialHooks | None = None,
    until_finished: int | None = None,
    worker: int = 0,
) -> TuneResult:
    """Search hyperparameters for ``params.train`` on ``data`` (a :class:`pipelines.train.TrainData`).

    Args:
        params: the resolved params; ``train`` is the base config the search perturbs and ``tune``
            the search space, pruner and study name.
        data: training and validation splits (uint8 images, int64 labels).
        n_trials: trials this call runs (>= 1); default ``params.tune.n_trials``. Several calls on
            one RDB ``storage`` and ``study_name`` (workers) share one study.
        test: ``(x_test, y_test)`` to score the best trial's model on, for the optimism check.
        storage: an Optuna storage URL (``sqlite:///optuna.db``, ``postgresql://...``); in memory
            when None.
        study_name: the study's name in ``storage`` (default ``tune.study_name``).
        trial_dir: where finished trials' models are written (``trial-NNNN.keras``); a temporary
            folder, removed at the end, when None (then ``best_model_path`` is None).
        hooks: per-trial callbacks (e.g. MLflow logging), see :class:`TrialHooks`.
        until_finished: for one of several workers on a shared ``storage``: ignore ``n_trials``
            and run trials until the study holds this many complete or pruned trials
            (``optuna.study.MaxTrialsCallback``); a failed trial's retry counts once finished.
            The worker then stays until no trial is open: a trial a killed worker left RUNNING is
            failed by Optuna's heartbeat check (``fail_stale_trials``) and its retry is run. A
            trial of this worker that another worker failed meanwhile (a heartbeat that looked
            stale on a loaded machine) is given up with a ``RuntimeWarning``, and the worker
            carries on: its retry runs once.
        worker: this worker's index among the study's workers (>= 0); with the trials the study
            already holds, it seeds the sampler (:func:`sampler_seed`).

    Returns:
        TuneResult.

    Raises:
        ValueError: ``n_trials`` < 1, ``worker`` < 0, or no trial of the study completed.
    """
    import optuna

    from pipelines.curves.compare import tuning_optimism
    from pipelines.train import save_model, train

    space = params.tune
    source = "params.yaml: tune.n_trials" if n_trials is None else "the n_trials argument"
    n_trials = space.n_trials if n_trials is None else n_trials
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials} ({source})")
    if worker < 0:
        raise ValueError(f"worker must be >= 0, got {worker}")
    name = study_name or space.study_name
    with tempfile.TemporaryDirectory(prefix="curvewatch-tune-") as tmp:
        models_dir = Path(trial_dir) if trial_dir is not None else Path(tmp)
        models_dir.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            direction="maximize",
            pruner=make_pruner(params, data.num_classes),
            storage=make_storage(
                storage,
                heartbeat_interval=max(1, space.heartbeat_grace_s // 4),
                grace_period=space.heartbeat_grace_s,
            ),
            study_name=name,
            load_if_exists=True,
        )
        # Seeded once the study's trial count is known (a resumed study, other workers' trials).
        study.sampler = optuna.samplers.TPESampler(
            seed=sampler_seed(params.base.seed, worker, len(study.get_trials(deepcopy=False)))
        )
        records: list[TrialRecord] = []
        refused: set[int] = set()  # trials whose storage refused a write: failed by another worker

        def objective(trial: optuna.Trial) -> float:
            cfg = sample_config(trial, params.train, space)
            reporter = reporting_callback(trial)
            record = TrialRecord(trial.number, "FAIL", None, dict(trial.params), 0)
            try:
                # Inside the try: hooks that fail after opening the trial's run still close it.
                extra = hooks.start(trial.number, dict(trial.params), cfg) if hooks else ()
                with tempfile.TemporaryDirectory(prefix="curvewatch-trial-") as backup:
                    result = train(
                        cfg,
                        data,
                        seed=params.base.seed,
                        backup_dir=Path(backup),
                        callbacks=(reporter, *extra),
                        verbose=0,
                    )
                record.history, record.epochs_run = result.history, result.epochs_run
                if reporter.pruned_because is not None:
                    del result  # no model is kept for a pruned trial
                    raise optuna.TrialPruned(reporter.pruned_because)
                value = _kept_val_accuracy(result.history, result.best_epoch)
                if not math.isfinite(value):
                    del result
                    trial.set_user_attr("pruned_because", "no finite val_accuracy for the kept weights")
                    raise optuna.TrialPruned("no finite val_accuracy for the kept weights")
                path = models_dir / f"trial-{trial.number:04d}.keras"
                save_model(result.model, path)
                del result  # the model lives on disk from here on
                trial.set_user_attr("model_path", str(path))
                trial.set_user_attr("epochs_run", record.epochs_run)
                record.state, record.value, record.model_path = "COMPLETE", value, path
                return record.value
            except optuna.TrialPruned as pruned:
                record.state = "PRUNED"
                record.epochs_run = record.epochs_run or reporter.epochs
                record.history = record.history or reporter.history
                record.pruned_because = str(pruned) or None
                finite = [v for v in reporter.history.get("val_accuracy", []) if math.isfinite(v)]
                record.value = max(finite) if finite else None
                trial.set_user_attr("epochs_run", record.epochs_run)
                raise
            except optuna.exceptions.UpdateFinishedTrialError:
                refused.add(trial.number)
                raise
            finally:
                record.epochs_run = record.epochs_run or reporter.epochs  # a failed fit's epochs too
                records.append(record)
                if hooks:
                    hooks.finish(record)
                _clear_backend()

        def given_up(exc: Exception) -> bool:
            # Did another worker fail this worker's last trial? Optuna then refuses its outcome: the
            # objective's report raised UpdateFinishedTrialError, or Optuna's own tell raised
            # (ValueError "Cannot tell a FAIL trial." / AssertionError) after the objective ended.
            # The storage, not the message, says so.
            if not records or not isinstance(exc, ValueError | AssertionError):
                return False
            last = records[-1]
            trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, last.number)
            if study._storage.get_trial(trial_id).state != optuna.trial.TrialState.FAIL:
                return False
            if last.state != "FAIL":  # the trial ended here but was failed elsewhere first
                last.state, last.value, last.model_path = "FAIL", None, None
                if hooks:
                    hooks.finish(last)
            elif last.number not in refused:
                return False  # the objective's own error, which Optuna re-raises as it is
            warnings.warn(
                f"tuning worker: trial {last.number} was failed by another worker (its heartbeat "
                f"looked stale: {type(exc).__name__}: {exc}); its retry runs once; continuing",
                RuntimeWarning,
                stacklevel=3,
            )
            return True

        if until_finished is not None:
            done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            open_states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
            stop = optuna.study.MaxTrialsCallback(until_finished, states=done)
            while True:
                finished = len(study.get_trials(deepcopy=False, states=done))
                if finished >= until_finished:
                    # Enough trials finished, but a killed worker may have left one RUNNING: it is
                    # failed once its heartbeat is older than the grace period and its retry
                    # (RetryHeartbeatStaleTrialCallback) waits for a worker. Stay until no trial is open:
                    # fail the stale ones, run a waiting retry, else wait for the others' trials.
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(study)
                    open_trials = study.get_trials(deepcopy=False, states=open_states)
                    if not open_trials:
                        break
                    if any(t.state == optuna.trial.TrialState.WAITING for t in open_trials):
                        study.optimize(objective, n_trials=1, catch=())  # Optuna runs waiting trials first
                    else:
                        time.sleep(1.0)
                    continue
                try:
                    study.optimize(objective, n_trials=None, catch=(), callbacks=[stop])
                except Exception as exc:
                    # Another worker took this trial's heartbeat for stale (a starved heartbeat thread
                    # on a loaded machine) and failed it; its retry runs elsewhere. Carry on.
                    if not given_up(exc):
                        raise
        else:
            study.optimize(objective, n_trials=n_trials, catch=())
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not complete:
            raise ValueError(
                f"tune: none of the {len(study.trials)} trials of study {name!r} completed (all pruned or "
                "failed); widen the search space in params.yaml (tune.*)"
            )
        best = study.best_trial
        best_path = Path(best.user_attrs["model_path"]) if "model_path" in best.user_attrs else None
        test_accuracy = optimism = None
        if test is not None and best_path is not None and best_path.is_file():
            test_accuracy = score(best_path, *test)
            optimism = tuning_optimism(
                float(best.value), test_accuracy, n_val=len(data.y_val), n_test=len(test[1])
            )
        spent, without = epoch_accounting(((r.state, r.epochs_run) for r in records), params.train.epochs)
        result = TuneResult(
            study_name=name,
            best_number=best.number,
            best_params=dict(best.params),
            best_val_accuracy=float(best.value),
            best_model_path=best_path if trial_dir is not None else None,
            test_accuracy=test_accuracy,
            optimism=optimism,
            trials=records,
            epochs_spent=spent,
            epochs_without_pruning=without,
        )
    return result


def serve_dashboard(storage: str, *, port: int = 8080) -> None:
    """Serve Optuna's own dashboard (``optuna-dashboard``) on ``storage``, bound to 127.0.0.1; blocks.

    The storage URL stays in this process (never on a command line, where ``ps`` would show a
    PostgreSQL password). The server is the dashboard's own Python interface ``run_server``
    (Bottle's wsgiref server; https://pypi.org/project/optuna-dashboard/, "Python Interface"); it
    stops on SIGINT / SIGTERM.

    Args:
        storage: an Optuna RDB storage URL (``sqlite:///.../optuna.db``, ``postgresql+psycopg://...``).
        port: TCP port on 127.0.0.1 (1-65535).

    A store without tables yet (no tuning has run) gets Optuna's empty schema and an empty dashboard.

    Raises:
        ValueError: ``port`` outside 1-65535.
        OSError: the port is already in use (another server answers there: it is never reused).
    """
    import optuna_dashboard
    from optuna.storages import RDBStorage

    if not 1 <= port <= 65535:
        raise ValueError(f"port must be in 1-65535, got {port}")
    # Optuna's own storage class creates its tables in a store no tuning has written yet (a fresh
    # checkout before `make tune`); optuna-dashboard given the bare URL skips that and fails with
    # "no such table: version_info".
    optuna_dashboard.run_server(RDBStorage(storage), host="127.0.0.1", port=port)


def score(model_path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (fraction) of the saved model at ``model_path`` on ``x`` (uint8 images) / ``y``.

    The model is loaded for prediction only, as the evaluate stage loads it
    (:func:`pipelines.steps.load_model_safely`: no optimizer restored).

    Raises:
        pipelines.steps.StageError: Keras refused to load the file (the message names it).
    """
    from pipelines.evaluate import predict_batches
    from pipelines.steps import load_model_safely

    model = load_model_safely(model_path)
    probs = predict_batches(model, x, batch_size=512)
    return float(np.mean(np.argmax(probs, axis=1) == y))


def _clear_backend() -> None:
    # Each trial builds a new model; without this Keras' global graph state grows trial by trial.
    import keras

    keras.backend.clear_session()
