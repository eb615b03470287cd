"""One pure detector per finding: each takes the run's :class:`Context` and returns a Finding or None.

The :class:`Context` is computed once per run (monitored metric, its noise, the plateau, chance
level, the validation set's size); detectors never call each other, and they never decide
precedence: :func:`pipelines.curves.arbitrate.arbitrate` does, in one place.

One module per finding, each with its detector and the helpers and thresholds only it uses:

- :mod:`~pipelines.curves.detectors.context`: :class:`Context` and :func:`build_context`, the chance
  level and class count read off a curve, and the helpers several detectors share;
- :mod:`~pipelines.curves.detectors.divergence`: :func:`detect_divergence`;
- :mod:`~pipelines.curves.detectors.not_learning`: :func:`detect_not_learning` and
  :func:`fits_training_set`;
- :mod:`~pipelines.curves.detectors.overfitting`: :func:`detect_overfitting`;
- :mod:`~pipelines.curves.detectors.plateau`: the stall reasons, the learning-rate helpers and
  :func:`detect_plateau`;
- :mod:`~pipelines.curves.detectors.underfitting`: :func:`detect_underfitting`;
- :mod:`~pipelines.curves.detectors.oscillation`: :func:`detect_oscillation`,
  :func:`detect_noisy_validation`, :func:`detect_from_logits_mismatch` and
  :func:`detect_saturated_outputs`;
- :mod:`~pipelines.curves.detectors.too_slow`: :func:`detect_too_slow`;
- :mod:`~pipelines.curves.detectors.split_mismatch`: :func:`detect_split_mismatch`;
- :mod:`~pipelines.curves.detectors.incomplete`: :func:`detect_incomplete`;
- :mod:`~pipelines.curves.detectors.healthy`: :func:`healthy_finding`.

The modules import what they share from each other's module, never from this package; it only
re-exports what the rest of the engine (and the tests) import.

Thresholds come from :class:`pipelines.curves.settings.DiagnoseConfig` and are multiples of a noise
SD: the curve's own epoch-to-epoch scatter (:func:`pipelines.curves.noise.estimate_noise`), or the
binomial SD of an accuracy on the validation set's n examples, with n given by the caller or read
off the accuracy grid (:func:`pipelines.curves.noise.infer_num_examples`).
"""

from __future__ import annotations

from pipelines.curves.detectors.context import (
    BELOW_PRIOR_SHARE,
    MIN_JUDGE_EPOCHS,
    Context,
    build_context,
    chance_accuracy_classes,
    uniform_output_classes,
    validation_frequency,
)
from pipelines.curves.detectors.divergence import detect_divergence
from pipelines.curves.detectors.healthy import healthy_finding
from pipelines.curves.detectors.incomplete import detect_incomplete
from pipelines.curves.detectors.not_learning import detect_not_learning, fits_training_set
from pipelines.curves.detectors.oscillation import (
    calibrated_cross_entropy,
    detect_from_logits_mismatch,
    detect_noisy_validation,
    detect_oscillation,
    detect_saturated_outputs,
    double_sigmoid_floor,
    double_softmax_floor,
)
from pipelines.curves.detectors.overfitting import detect_overfitting
from pipelines.curves.detectors.plateau import detect_plateau, last_lr_cut_epoch, lr_new_high_within
from pipelines.curves.detectors.split_mismatch import _fresh_start, _unweighted_loss, detect_split_mismatch
from pipelines.curves.detectors.too_slow import detect_too_slow, steady_improvement
from pipelines.curves.detectors.underfitting import detect_underfitting

__all__ = [
    "BELOW_PRIOR_SHARE",
    "MIN_JUDGE_EPOCHS",
    "Context",
    # Private helpers the tests (tests/unit/curves/test_failure_classes.py) import from here.
    "_fresh_start",
    "_unweighted_loss",
    "build_context",
    "calibrated_cross_entropy",
    "chance_accuracy_classes",
    "detect_divergence",
    "detect_from_logits_mismatch",
    "detect_incomplete",
    "detect_noisy_validation",
    "detect_not_learning",
    "detect_oscillation",
    "detect_overfitting",
    "detect_plateau",
    "detect_saturated_outputs",
    "detect_split_mismatch",
    "detect_too_slow",
    "detect_underfitting",
    "double_sigmoid_floor",
    "double_softmax_floor",
    "fits_training_set",
    "healthy_finding",
    "last_lr_cut_epoch",
    "lr_new_high_within",
    "steady_improvement",
    "uniform_output_classes",
    "validation_frequency",
]
