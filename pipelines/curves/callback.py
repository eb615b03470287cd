"""Early stopping that explains itself: diagnose the curves while a Keras model trains.

``should_stop`` is the pure decision (usable to prune an Optuna trial from its intermediate
history); ``DiagnosisCallback`` is the Keras callback around it. Keras is imported only when
``DiagnosisCallback`` is first accessed (module ``__getattr__``, PEP 562), so importing
``should_stop`` does not start TensorFlow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.curves.diagnose import Diagnosis, diagnose, plateau_message
from pipelines.curves.io import VALIDATION_METRICS
from pipelines.curves.types import Curve, Finding, Severity

if TYPE_CHECKING:
    import keras

LOGGER = logging.getLogger(__name__)

__all__ = ["DiagnosisCallback", "diagnose_history", "should_stop"]


def _history_curve(
    history: Mapping[str, Sequence[float]], epoch_budget: int | None, num_classes: int | None, run: str
) -> Curve:
    metrics = {
        name: np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        for name, values in history.items()
        if name != "epoch"
    }
    size = max((array.size for array in metrics.values()), default=0)
    # A metric logged for fewer epochs than the others (e.g. validation every other epoch) is
    # padded with NaN at the front so epochs stay aligned with the latest one.
    for name, array in metrics.items():
        if array.size < size:
            metrics[name] = np.concatenate([np.full(size - array.size, math.nan), array])
    return Curve(
        run=run,
        metrics=metrics,
        epochs=np.arange(1, size + 1, dtype=np.int64),
        epoch_budget=epoch_budget,
        complete=True,
        num_classes=num_classes,
    )


def diagnose_history(
    history: Mapping[str, Sequence[float]],
    epoch_budget: int | None = None,
    *,
    num_classes: int | None = None,
    run: str = "live",
    **kwargs: Any,
) -> Diagnosis:
    """:func:`pipelines.curves.diagnose.diagnose` of a run still training (``live=True``).

    Args:
        history: Keras-style ``{metric: [value per epoch so far]}``.
        epoch_budget: epochs the run is configured for.
        num_classes: classes of the task, if known.
        run: display name.
        **kwargs: passed on to ``diagnose`` (``min_plateau_epochs``, ``baseline_accuracy``, ...).

    Raises:
        ValueError: the history has no ``val_accuracy`` / ``val_loss`` values yet and no finite
            training loss.
    """
    curve = _history_curve(history, epoch_budget, num_classes, run)
    return diagnose(curve, live=True, **kwargs)


def should_stop(
    history: Mapping[str, Sequence[float]],
    epoch_budget: int | None = None,
    *,
    min_plateau_epochs: int = 3,
    num_classes: int | None = None,
    stop_on_divergence: bool = True,
    **kwargs: Any,
) -> tuple[bool, Finding | None]:
    """Whether a run still training should stop now, and the finding that says why.

    Stops when the monitored validation metric (``val_accuracy``, else ``val_loss``) has been flat
    beyond its own noise for ``min_plateau_epochs`` epochs (:func:`pipelines.curves.diagnose.
    find_plateau`): a stall *or* a convergence, since more epochs will not help either way; and,
    with ``stop_on_divergence``, when the loss became NaN/inf or blew up. The finding returned is,
    in this order: the ``divergence`` finding; the ``not_learning`` one (flat at chance); the
    diagnosis's ``plateau`` finding for a stall (WARNING, with causes and remedies); or, for a
    convergence, a ``plateau`` finding of severity INFO with ``evidence["converged"] = True``.

    Args:
        history: Keras-style ``{metric: [value per epoch so far]}`` (e.g. ``History.history``, or
            an Optuna trial's intermediate values as ``{"val_accuracy": [...]}``).
        epoch_budget: epochs the run is configured for (None when unknown).
        min_plateau_epochs: epochs without improvement that confirm a plateau.
        num_classes: classes of the task, if known.
        stop_on_divergence: also stop on NaN/inf or exploding loss.
        **kwargs: passed on to ``diagnose``.

    Returns:
        (stop, finding): finding is None when ``stop`` is False.

    Raises:
        ValueError: no validation metric in ``history`` (nothing to decide on).
    """
    if not any(name in history and len(history[name]) > 0 for name in VALIDATION_METRICS):
        raise ValueError(f"history has no {' / '.join(VALIDATION_METRICS)}: found {sorted(history)}")
    size = max(len(values) for values in history.values())
    if size < max(min_plateau_epochs + 2, 8):
        nan_loss = [v for v in history.get("loss", []) if v is None or not math.isfinite(float(v))]
        if not (stop_on_divergence and nan_loss):
            return False, None
    try:
        diagnosis = diagnose_history(
            history, epoch_budget, num_classes=num_classes, min_plateau_epochs=min_plateau_epochs, **kwargs
        )
    except ValueError:
        return False, None
    if stop_on_divergence:
        for finding in diagnosis.findings:
            if finding.code == "divergence":
                return True, finding
    if diagnosis.plateau_onset_epoch is None:
        return False, None
    # A flat curve at chance is reported as not learning, not as a converged plateau.
    for code in ("not_learning", "plateau"):
        for finding in diagnosis.findings:
            if finding.code == code:
                return True, finding
    return True, _converged_finding(diagnosis)


def _converged_finding(diagnosis: Diagnosis) -> Finding:
    from pipelines.curves.diagnose import Plateau

    assert diagnosis.plateau_onset_epoch is not None and diagnosis.plateau_level is not None
    plateau = Plateau(
        metric=diagnosis.monitor or "",
        onset_epoch=diagnosis.plateau_onset_epoch,
        level=diagnosis.plateau_level,
        spread=diagnosis.plateau_spread or 0.0,
        flat_epochs=0,
        noise=diagnosis.noise or 0.0,
        trend_z=0.0,
        onset_index=0,
    )
    return Finding(
        code="plateau",
        severity=Severity.INFO,
        onset_epoch=diagnosis.plateau_onset_epoch,
        evidence={
            "metric": diagnosis.monitor,
            "level": diagnosis.plateau_level,
            "spread": diagnosis.plateau_spread,
            "noise": diagnosis.noise,
            "converged": True,
        },
        message=plateau_message(plateau),
        causes=("the model has converged at this configuration",),
        remedies=("stop here; to go higher change the model, data or schedule, not the epoch count",),
    )


def _build_callback_class() -> type:
    import keras

    class DiagnosisCallback(keras.callbacks.Callback):
        """Diagnose the history after every epoch, log findings, optionally stop on a plateau.

        After each epoch it runs :func:`diagnose_history` on the history so far and logs each new
        finding once (WARNING / CRITICAL findings at WARNING level, others at INFO). With
        ``stop_on_plateau=True`` it stops training when :func:`should_stop` says so and sets
        ``stop_reason``, e.g. "stopped at epoch 9: val_accuracy flat at 0.883 ± 0.002 since epoch 6".

        Attributes:
            diagnosis: the latest :class:`Diagnosis` (None before the first epoch / without
                validation data).
            stop_reason: why training was stopped, or None.
            stop_finding: the finding behind ``stop_reason``, or None.
            stopped_epoch: 1-based epoch training stopped after (0 when it did not stop).
            history: ``{metric: [values]}`` seen so far.
        """

        def __init__(
            self,
            epoch_budget: int | None = None,
            *,
            stop_on_plateau: bool = False,
            stop_on_divergence: bool = True,
            min_plateau_epochs: int = 3,
            num_classes: int | None = None,
            baseline_accuracy: float | None = None,
            restore_best_weights: bool = False,
            run: str = "live",
            logger: logging.Logger | None = None,
        ) -> None:
            """See the class docstring.

            Args:
                epoch_budget: the run's epochs (default: ``epochs`` passed to ``fit``).
                stop_on_plateau: stop once a plateau (stall or convergence) is confirmed.
                stop_on_divergence: with ``stop_on_plateau``, also stop on NaN / exploding loss.
                min_plateau_epochs: epochs without improvement that confirm a plateau.
                num_classes: classes of the task, if known (enables not-learning / low-level checks).
                baseline_accuracy: a simple baseline's validation accuracy, if known.
                restore_best_weights: on stopping, restore the weights of the best monitored epoch.
                run: name used in log messages.
                logger: where findings go (default: this module's logger).
            """
            super().__init__()
            self.epoch_budget = epoch_budget
            self.stop_on_plateau = stop_on_plateau
            self.stop_on_divergence = stop_on_divergence
            self.min_plateau_epochs = min_plateau_epochs
            self.num_classes = num_classes
            self.baseline_accuracy = baseline_accuracy
            self.restore_best_weights = restore_best_weights
            self.run = run
            self.logger = logger or LOGGER
            self._reset()

        def _reset(self) -> None:
            self.history: dict[str, list[float]] = {}
            self.diagnosis: Diagnosis | None = None
            self.stop_reason: str | None = None
            self.stop_finding: Finding | None = None
            self.stopped_epoch = 0
            self._logged: set[tuple[str, int | None]] = set()
            self._best: float | None = None
            self._best_weights: list[Any] | None = None

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self._reset()
            if self.epoch_budget is None and self.params:
                self.epoch_budget = self.params.get("epochs")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            for name, value in (logs or {}).items():
                try:
                    self.history.setdefault(name, []).append(float(value))
                except (TypeError, ValueError):
                    continue
            if not any(name in self.history for name in VALIDATION_METRICS):
                return
            self._track_best()
            try:
                self.diagnosis = diagnose_history(
                    self.history,
                    self.epoch_budget,
                    num_classes=self.num_classes,
                    run=self.run,
                    min_plateau_epochs=self.min_plateau_epochs,
                    baseline_accuracy=self.baseline_accuracy,
                )
            except ValueError as error:
                self.logger.debug("%s: no diagnosis at epoch %d: %s", self.run, epoch + 1, error)
                return
            for finding in self.diagnosis.findings:
                key = (finding.code, finding.onset_epoch)
                if key in self._logged:
                    continue
                self._logged.add(key)
                level = logging.INFO if finding.severity == Severity.INFO else logging.WARNING
                self.logger.log(
                    level, "%s epoch %d: %s: %s", self.run, epoch + 1, finding.code, finding.message
                )
            if not self.stop_on_plateau:
                return
            stop, finding = should_stop(
                self.history,
                self.epoch_budget,
                min_plateau_epochs=self.min_plateau_epochs,
                num_classes=self.num_classes,
                stop_on_divergence=self.stop_on_divergence,
                baseline_accuracy=self.baseline_accuracy,
            )
            if stop and finding is not None:
                self.model.stop_training = True
                self.stopped_epoch = epoch + 1
                self.stop_finding = finding
                self.stop_reason = f"stopped at epoch {epoch + 1}: {finding.message}"
                self.logger.warning("%s: %s", self.run, self.stop_reason)
                if self.restore_best_weights and self._best_weights is not None:
                    self.model.set_weights(self._best_weights)

        def _track_best(self) -> None:
            if not self.restore_best_weights:
                return
            if "val_accuracy" in self.history:
                value = self.history["val_accuracy"][-1]
            else:
                value = -self.history["val_loss"][-1]
            if math.isfinite(value) and (self._best is None or value > self._best):
                self._best = value
                self._best_weights = self.model.get_weights()

    return DiagnosisCallback


_CALLBACK_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CALLBACK_CLASS
    if name == "DiagnosisCallback":
        if _CALLBACK_CLASS is None:
            _CALLBACK_CLASS = _build_callback_class()
        return _CALLBACK_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    DiagnosisCallback: type[keras.callbacks.Callback]
