"""Diagnose one run's training curves: what went wrong, since when, how sure, what to try.

The engine in four parts, so that adding a finding touches one place in each:

- :mod:`pipelines.curves.plateau`: plateau statistics (:func:`find_plateau`) and shared helpers;
- :mod:`pipelines.curves.detectors`: one module per finding, each with its pure detector, on a shared
  :class:`Context` (:mod:`pipelines.curves.detectors.context`);
- :mod:`pipelines.curves.findings`: the finding codes (:class:`Code`) and the cause/remedy catalogue;
- :mod:`pipelines.curves.arbitrate`: every precedence rule, in :func:`arbitrate`.

Thresholds live in :class:`pipelines.curves.settings.DiagnoseConfig` (``params.yaml`` section
``diagnose``); most are a significance level or a multiple of a noise SD measured on the curve or
derived from the validation set's size, the others shares of the curve's own level, epoch counts
or one error level (see that module); none is a fixed ``min_delta`` on the monitored metric.

Plateau versus convergence: :func:`find_plateau` finds the earliest epoch after which the monitored
validation metric shows no improvement beyond noise; the flat tail is a *stall* (``plateau``
finding) when :func:`pipelines.curves.detectors.plateau.stall_reasons` gives a reason (a low level,
below the baseline, premature after a clear climb, memorising, a widening train-validation gap, an
overconfident loss), and a healthy *convergence* otherwise.

Epochs are 1-based throughout (Keras' ``CSVLogger`` writes 0-based epochs: epoch N here is the row
``epoch = N - 1`` of such a file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.curves.arbitrate import ORDER, arbitrate
from pipelines.curves.detectors import (
    MIN_JUDGE_EPOCHS,
    build_context,
    detect_divergence,
    detect_from_logits_mismatch,
    detect_incomplete,
    detect_noisy_validation,
    detect_not_learning,
    detect_oscillation,
    detect_overfitting,
    detect_plateau,
    detect_saturated_outputs,
    detect_split_mismatch,
    detect_too_slow,
    detect_underfitting,
    fits_training_set,
    healthy_finding,
)
from pipelines.curves.findings import Code
from pipelines.curves.plateau import Plateau, baseline_margin, find_plateau, plateau_message
from pipelines.curves.settings import DEFAULT, DiagnoseConfig
from pipelines.curves.types import Curve, Finding

if TYPE_CHECKING:
    from pipelines.curves.extrapolate import Extrapolation

__all__ = [
    "MIN_JUDGE_EPOCHS",
    "ORDER",
    "Code",
    "Diagnosis",
    "DiagnoseConfig",
    "NoValidationValue",
    "Plateau",
    "baseline_margin",
    "diagnose",
    "find_plateau",
    "plateau_message",
]


class NoValidationValue(ValueError):
    """A run with nothing to diagnose: neither ``val_accuracy`` nor ``val_loss`` has a finite value
    and its training loss did not diverge (e.g. ``fit(validation_freq=5)`` stopped before epoch 5).

    Attributes:
        run: the run's name / id; ``str()`` is ``"<run>: <reason>"``.
        reason: the message without the run's name, for a caller that names the run otherwise (a
            file's path).
    """

    reason = "no finite val_accuracy / val_loss value to diagnose"

    def __init__(self, run: str) -> None:
        super().__init__(f"{run}: {self.reason}")
        self.run = run


@dataclass(frozen=True)
class Diagnosis:
    """The engine's verdict on one run.

    Attributes:
        run: the run's name / id.
        verdict: ``code`` of the most important finding (see :data:`ORDER`).
        findings: every finding, most important first.
        monitor: the validation metric the plateau tests ran on (``val_accuracy``, else ``val_loss``).
        plateau_onset_epoch: 1-based epoch the flat tail began (stall or convergence), or None
            (always for a run found diverged or not learning).
        plateau_level: mean of ``monitor`` over the flat tail, or None.
        plateau_spread: SD of ``monitor`` over the flat tail, or None.
        best_epoch: 1-based epoch of the best ``monitor`` value (max accuracy / min loss), or None.
        extrapolation: the learning-curve extrapolation of ``monitor`` when requested, else None
            (and None for a run found diverged or not learning: it has no future to forecast; and
            for a slow start, whose flat beginning is no limit).
        noise: epoch-to-epoch noise SD of ``monitor``.
        stalled: True when the flat tail is a stall (a ``plateau`` finding), False when converged.
        n_val: validation examples (given or read off the accuracy grid), or None.
    """

    run: str
    verdict: str
    findings: list[Finding]
    monitor: str | None = None
    plateau_onset_epoch: int | None = None
    plateau_level: float | None = None
    plateau_spread: float | None = None
    best_epoch: int | None = None
    extrapolation: Extrapolation | None = None
    noise: float | None = None
    stalled: bool = False
    n_val: int | None = None

    @property
    def codes(self) -> list[str]:
        """Codes of all findings, most important first."""
        return [finding.code for finding in self.findings]

    def has(self, code: str) -> bool:
        """Whether a finding with ``code`` was reported."""
        return any(finding.code == code for finding in self.findings)


def diagnose(
    curve: Curve,
    *,
    config: DiagnoseConfig | None = None,
    baseline_accuracy: float | None = None,
    extrapolate: bool = False,
    live: bool = False,
    **overrides: Any,
) -> Diagnosis:
    """Diagnose a run's curves; see the module docstring and :mod:`pipelines.curves.arbitrate`.

    Args:
        curve: the run; ``val_accuracy`` (preferred) or ``val_loss`` is monitored.
        config: thresholds (default: :data:`pipelines.curves.settings.DEFAULT`, the defaults of
            ``params.yaml``'s ``diagnose`` section).
        baseline_accuracy: validation accuracy of a simple baseline on the same split (e.g. the
            logistic regression of :mod:`pipelines.baseline`), fraction in [0, 1].
        extrapolate: fit the learning-curve families of :mod:`pipelines.curves.extrapolate` (about
            0.1-0.3 s a run) for ``too_slow`` / "train longer", and attach the forecast.
        live: the run is still training (a callback): no ``incomplete`` finding, judge as of now.
        **overrides: single thresholds replacing ``config``'s (e.g. ``min_plateau_epochs=5``).

    Returns:
        The :class:`Diagnosis`; its findings are sorted by severity, then by :data:`ORDER`.

    Raises:
        NoValidationValue: (a ``ValueError``) the curve has neither ``val_accuracy`` nor
            ``val_loss`` with a finite value and its training loss did not diverge (nothing to
            diagnose).
        ValueError: the curve's ``class_prior`` has a negative or non-finite share or fewer than
            two classes; or an override names no threshold of :class:`DiagnoseConfig` or has an
            invalid value.
    """
    cfg = config or DEFAULT
    if overrides:
        unknown = sorted(set(overrides) - set(DiagnoseConfig.model_fields))
        if unknown:
            raise ValueError(
                f"diagnose: unknown threshold(s) {unknown}; known: {sorted(DiagnoseConfig.model_fields)}"
            )
        cfg = DiagnoseConfig(**(cfg.model_dump() | overrides))
    divergence = detect_divergence(curve, cfg)
    ctx = build_context(curve, cfg, baseline_accuracy=baseline_accuracy, live=live, extrapolate=extrapolate)
    if ctx is None:
        if divergence is None:
            raise NoValidationValue(curve.run)
        return Diagnosis(run=curve.run, verdict=divergence.code, findings=[divergence])
    overfitting = detect_overfitting(ctx)
    underfitting = detect_underfitting(ctx)
    candidates: dict[Code, Finding | None] = {
        Code.DIVERGENCE: divergence,
        Code.NOT_LEARNING: detect_not_learning(ctx),
        Code.INCOMPLETE: detect_incomplete(ctx),
        Code.OVERFITTING: overfitting,
        Code.PLATEAU: detect_plateau(ctx, overfitting, underfitting),
        Code.UNDERFITTING: underfitting,
        Code.OSCILLATION: detect_oscillation(ctx),
        Code.TOO_SLOW: detect_too_slow(ctx),
        Code.SPLIT_MISMATCH: detect_split_mismatch(ctx),
        Code.NOISY_VALIDATION: detect_noisy_validation(ctx),
        Code.FROM_LOGITS_MISMATCH: detect_from_logits_mismatch(ctx),
        Code.SATURATED_OUTPUTS: detect_saturated_outputs(ctx),
    }
    findings = arbitrate(candidates, fits_training_set=fits_training_set(ctx), healthy=healthy_finding(ctx))
    codes = {f.code for f in findings}
    # A diverged or dead network's tail is no stall and no convergence (its accuracy crashed, or
    # sits at chance; the finding dates that), and its accuracy has no future that more epochs
    # would reach: no flat tail and no forecast for the report to draw or the tags to carry.
    broken = bool(codes & {Code.DIVERGENCE, Code.NOT_LEARNING})
    plateau = None if broken else ctx.plateau
    # A slow start has not shown its curve's shape yet: a family fitted to its flat beginning calls
    # the start its limit (0.509 for a run about to learn), against its own finding.
    unshaped = any(f.code == Code.TOO_SLOW.value and f.evidence.get("slow_start") for f in findings)
    return Diagnosis(
        run=curve.run,
        verdict=findings[0].code if findings else Code.HEALTHY.value,
        findings=findings,
        monitor=ctx.monitor,
        plateau_onset_epoch=plateau.onset_epoch if plateau else None,
        plateau_level=plateau.level if plateau else None,
        plateau_spread=plateau.spread if plateau else None,
        best_epoch=ctx.best_epoch,
        extrapolation=None if broken or unshaped else ctx.extrapolation,
        noise=ctx.sigma,
        stalled=any(f.code == Code.PLATEAU.value for f in findings),
        n_val=ctx.n_val,
    )
