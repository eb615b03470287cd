"""Diagnose one run's training curves: what went wrong, since when, how sure, what to try.

Every threshold is a multiple of the curve's own noise (:func:`pipelines.curves.noise.estimate_noise`)
or a significance level, never a fixed ``min_delta``. The checks, in the order a verdict prefers
them (a CRITICAL finding always wins over a WARNING, a WARNING over INFO):

``divergence`` > ``not_learning`` > ``incomplete`` > ``overfitting`` > ``plateau`` >
``underfitting`` > ``oscillation`` > ``too_slow`` > ``split_mismatch`` > ``healthy`` >
``noisy_validation`` (a note on a healthy run, not a verdict of its own).

Plateau versus convergence: :func:`find_plateau` finds the earliest epoch after which the monitored
validation metric shows no improvement beyond noise (see its docstring). Whether that flat tail is
a *stall* (``plateau`` finding) or a healthy *convergence* (``healthy`` finding, "converged") is
decided by :func:`_stall_reasons`: a plateau is a stall when

1. its level is low: less than ``low_level_fraction`` of the way from chance (1 / num_classes) to
   perfect accuracy, or below ``baseline_accuracy`` by more than the margin of
   :func:`baseline_margin`: 2 SDs of the level's per-epoch noise, or, where the validation set's
   size n can be read off the accuracy grid (:func:`pipelines.curves.noise.infer_num_examples`),
   2 SDs of the difference of two accuracies on n examples, ``2 sqrt(2 p (1 - p) / n)``, if
   larger: seeds and the baseline's own fit move a level on a fixed validation set by about the
   binomial SD (Jordan, ICLR 2024), far more than its epoch-to-epoch noise;
2. it set in prematurely: the plateau began in the first ``stall_onset_fraction`` of the run's
   horizon (epoch budget, else epochs run), the curve was still climbing clearly (beyond noise)
   into the onset, and that climb, continued one more window of w <= 3 epochs at its own rate of
   deceleration (a saturating curve's increments shrink by a roughly constant ratio; the idea
   behind Aitken's delta-squared process), predicts more than ``stall_k`` noise SDs above what
   that window actually gained (see ``_projected_gain``): the curve was climbing and stopped dead,
   rather than easing into its asymptote. (The learning-curve ensemble of
   :mod:`pipelines.curves.extrapolate` fitted to the epochs before the onset was tried for this and
   missed stalls near the accuracy ceiling, where its forecast is bounded and its spread wide; it is
   used for ``too_slow`` and "train longer" only.); or
3. the run also shows ``overfitting`` (val_loss rising beyond noise from its minimum while the
   training loss keeps falling): the flat validation metric is memorisation, not convergence; or
4. the validation loss over the plateau is at or above ln(num_classes), a uniform guess's
   cross-entropy, although accuracy is well above chance: logits wildly overconfident, the mark of
   unnormalised inputs.

Everything else that is flat at the end is "converged".

One cause, one finding: when the run ``oscillates`` (a learning rate too high), a stall whose only
reason is "below the baseline", and ``underfitting``, are not reported: an optimiser that keeps
overshooting holds both training and validation accuracy below what the model can reach, and the
oscillation's remedy (lower the learning rate) is the one to try before more capacity. Likewise a
stall with a validation loss above ln(num_classes) (rule 4, unnormalised inputs) is not also
reported as ``underfitting``: the plateau finding names the inputs, not the capacity, as the cause.

A run with fewer than :data:`MIN_JUDGE_EPOCHS` finite values of the monitored metric is too short
to judge: its ``healthy`` finding says so (``evidence["too_short"]``) rather than "still
improving"; and a longer run with no plateau is only called "still improving" when its last third
rises beyond noise (OLS slope z >= 2), else "no clear trend yet".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtri, stdtrit

from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.types import Curve, Finding, Severity

if TYPE_CHECKING:
    from pipelines.curves.extrapolate import Extrapolation

ORDER = (
    "divergence",
    "not_learning",
    "incomplete",
    "overfitting",
    "plateau",
    "underfitting",
    "oscillation",
    "too_slow",
    "split_mismatch",
    "healthy",
    "noisy_validation",
)
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
# Fewer epochs than this and a curve has no trend to speak of: two values are one difference.
MIN_JUDGE_EPOCHS = 3
# OLS slope z over the last third above which a curve without a plateau is "still improving".
IMPROVING_Z = 2.0

# Causes and remedies the report shows; grouped so each finding picks the ones its evidence supports.
_MEMORISING = (
    ("training accuracy keeps rising far above validation: the model memorises the training set",),
    (
        "add data augmentation (random flips / translations)",
        "raise dropout",
        "add L2 weight decay",
        "collect more training data",
        "use EarlyStopping(restore_best_weights=True) to keep the best epoch",
    ),
)
_CAPACITY = (
    ("training accuracy is as low as validation: too little capacity or poor optimisation",),
    (
        "use a deeper or wider model (more filters / layers, a ResNet-style block)",
        "try a different learning rate or a schedule (ReduceLROnPlateau)",
        "train longer",
    ),
)
_INPUTS = (
    ("a plateau near chance or at a low level often means badly scaled inputs or wrong labels",),
    ("check input normalisation / feature scaling", "check that labels match their images"),
)
_SPLITS = (
    (
        "training and validation splits differ in distribution, or the validation set is too small",
        "time-ordered data split at random leaks the future into training",
    ),
    (
        "look at the validation stage's skew (label / intensity KL) and leakage results",
        "enlarge the validation set",
        "for time-ordered data, use a temporal split (train on the past, validate on the future)",
    ),
)
_LR_HIGH = (
    ("learning rate too high (or batch too small): updates overshoot",),
    ("lower the learning rate", "enlarge the batch size"),
)
_LR_LOW = (
    ("learning rate too low: steady but slow progress",),
    ("raise the learning rate", "use a learning-rate warm-up"),
)


@dataclass(frozen=True)
class Plateau:
    """A flat tail of a curve.

    Attributes:
        metric: the metric's name (e.g. ``val_accuracy``).
        onset_epoch: 1-based epoch where the flat tail begins.
        level: mean of the metric over the flat tail, in the metric's units.
        spread: standard deviation (ddof=1) of the metric over the flat tail.
        flat_epochs: epochs after the onset (the tail spans ``flat_epochs + 1`` values).
        noise: the curve's epoch-to-epoch noise SD used for the tests.
        trend_z: the tail's improvement slope divided by its standard error under that noise.
        onset_index: position of the onset in the finite values of the curve.
    """

    metric: str
    onset_epoch: int
    level: float
    spread: float
    flat_epochs: int
    noise: float
    trend_z: float
    onset_index: int


@dataclass(frozen=True)
class Diagnosis:
    """The engine's verdict on one run.

    Attributes:
        run: the run's name / id.
        verdict: ``code`` of the most important finding (see :data:`ORDER`).
        findings: every finding, most important first.
        monitor: the validation metric the plateau tests ran on (``val_accuracy``, else ``val_loss``).
        plateau_onset_epoch: 1-based epoch the flat tail began (stall or convergence), or None.
        plateau_level: mean of ``monitor`` over the flat tail, or None.
        plateau_spread: SD of ``monitor`` over the flat tail, or None.
        best_epoch: 1-based epoch of the best ``monitor`` value (max accuracy / min loss), or None.
        extrapolation: the learning-curve extrapolation of ``monitor`` when requested, else None.
        noise: epoch-to-epoch noise SD of ``monitor``.
        stalled: True when the flat tail is a stall (a ``plateau`` finding), False when converged.
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

    @property
    def codes(self) -> list[str]:
        """Codes of all findings, most important first."""
        return [finding.code for finding in self.findings]

    def has(self, code: str) -> bool:
        """Whether a finding with ``code`` was reported."""
        return any(finding.code == code for finding in self.findings)


# ----------------------------------------------------------------------------------------------
# Plateau detection
# ----------------------------------------------------------------------------------------------


def _suffix_sum(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1])[::-1]


def find_plateau(
    values: np.ndarray,
    epochs: np.ndarray | None = None,
    *,
    higher_is_better: bool = True,
    min_plateau_epochs: int = 3,
    alpha: float = 0.01,
    noise: float | None = None,
    metric: str = "",
    min_points: int = 8,
) -> Plateau | None:
    """Earliest epoch after which a curve stops improving beyond its own noise.

    For every candidate onset t (oriented so that larger is better) the tail ``y[t:]`` is flat when
    all of these hold, and the earliest such t with at least ``min_plateau_epochs`` epochs after it
    is the onset:

    1. no significant improving trend: the OLS slope of the tail is below the one-sided
       ``1 - alpha`` critical value both under the curve's noise SD sigma (z-test, se =
       sigma / sqrt(Sxx)) and under the tail's own residual SD (Student t-test with n - 2 degrees of
       freedom, as ``scipy.stats.linregress`` reports it); an improving tail fails either;
    2. the onset value is not significantly below the rest of the tail (one-sided z-test of
       ``mean(y[t+1:]) - y[t]`` with SD ``sigma * sqrt(1 + 1/(n-1))``): the curve has arrived;
    3. the best-so-far did not improve by more than noise: ``max(y[t+1:])`` exceeds
       ``max(best before t, tail mean)`` by at most the ``1 - alpha`` quantile of the maximum of
       n - 1 normal draws, ``sigma * Phi^-1((1 - alpha)^(1/(n-1)))``.

    All tails are tested at once with suffix sums: O(E) time. Sources: ordinary least squares slope
    test (e.g. Montgomery, Peck & Vining, "Introduction to Linear Regression Analysis", 5th ed.,
    sec. 2.3); the maximum of n i.i.d. normals (David & Nagaraja, "Order Statistics", 3rd ed.).

    Args:
        values: (E,) float metric values, one per epoch; non-finite entries are skipped.
        epochs: (E,) 1-based epoch numbers (default 1..E).
        higher_is_better: True for accuracies, False for losses.
        min_plateau_epochs: epochs the curve must stay flat after the onset.
        alpha: significance level of each test.
        noise: the noise SD to use (default: :func:`estimate_noise` of the curve).
        metric: the metric's name, copied into the result.
        min_points: fewer finite values than this (or than ``min_plateau_epochs + 2``) never make a
            plateau: the noise estimate needs about six second differences clear of the steep
            start, and on five epochs the start's curvature passes for noise (a climbing 0.66,
            0.85, 0.90, 0.91, 0.93 would look flat).

    Returns:
        The :class:`Plateau`, or None when the curve is still improving (or too short).

    Raises:
        ValueError: ``values`` and ``epochs`` differ in length, or ``min_plateau_epochs < 1``.
    """
    if min_plateau_epochs < 1:
        raise ValueError(f"min_plateau_epochs must be >= 1, got {min_plateau_epochs}")
    y_all = np.asarray(values, dtype=np.float64)
    x_all = (
        np.arange(1, y_all.size + 1, dtype=np.float64)
        if epochs is None
        else np.asarray(epochs, dtype=np.float64)
    )
    if x_all.shape != y_all.shape:
        raise ValueError(f"values {y_all.shape} and epochs {x_all.shape} differ in shape")
    finite = np.isfinite(y_all)
    y = y_all[finite] if higher_is_better else -y_all[finite]
    x = x_all[finite]
    size = y.size
    if size < max(min_plateau_epochs + 2, min_points):
        return None
    sigma = float(noise) if noise is not None else estimate_noise(y)
    sigma = max(sigma, 1e-12)

    n = np.arange(size, 0, -1, dtype=np.float64)  # tail length from each t
    sx, sy = _suffix_sum(x), _suffix_sum(y)
    sxx, sxy, syy = _suffix_sum(x * x), _suffix_sum(x * y), _suffix_sum(y * y)
    with np.errstate(divide="ignore", invalid="ignore"):
        sxx_c = sxx - sx * sx / n
        sxy_c = sxy - sx * sy / n
        syy_c = syy - sy * sy / n
        slope = np.where(sxx_c > 0, sxy_c / sxx_c, 0.0)
        trend_z = slope * np.sqrt(np.maximum(sxx_c, 0.0)) / sigma
        ssr = np.maximum(syy_c - slope * sxy_c, 0.0)
        dof = np.maximum(n - 2, 1)
        se_own = np.sqrt(ssr / dof / sxx_c)
        t_own = np.where(se_own > 0, slope / se_own, np.where(slope > 0, np.inf, 0.0))
        mean_after = (sy - y) / (n - 1)
        onset_z = (mean_after - y) / (sigma * np.sqrt(1 + 1 / (n - 1)))
        max_after = np.empty(size)
        max_after[:-1] = np.maximum.accumulate(y[::-1])[::-1][1:]
        max_after[-1] = -np.inf
        best_before = np.maximum.accumulate(y)
        q = ndtri((1 - alpha) ** (1 / np.maximum(n - 1, 1)))
        excess = max_after - np.maximum(best_before, sy / n)
    # scipy.special quantiles (the ufuncs behind scipy.stats.norm / t .ppf) skip the distribution
    # objects' per-call overhead, which would dominate a 100-epoch diagnosis.
    z_crit = float(ndtri(1 - alpha))
    t_crit = stdtrit(dof, 1 - alpha)
    ok = (
        (n - 1 >= min_plateau_epochs)
        & (trend_z < z_crit)
        & ((n < 3) | (t_own < t_crit))
        & (onset_z < z_crit)
        & (excess <= q * sigma)
    )
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return None
    t0 = int(hits[0])
    tail = y_all[finite][t0:]
    return Plateau(
        metric=metric,
        onset_epoch=int(x[t0]),
        level=float(np.mean(tail)),
        spread=float(np.std(tail, ddof=1)) if tail.size > 1 else 0.0,
        flat_epochs=int(size - 1 - t0),
        noise=sigma,
        trend_z=float(trend_z[t0]),
        onset_index=t0,
    )


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _finite(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    values = curve.get(name)
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    mask = np.isfinite(values)
    if not mask.any():
        return None
    return np.asarray(curve.epochs)[mask], values[mask]


def _monitor(curve: Curve) -> tuple[str, bool] | None:
    for name, higher in (("val_accuracy", True), ("val_loss", False)):
        values = curve.get(name)
        if values is not None and np.isfinite(np.asarray(values, dtype=np.float64)).sum() >= 2:
            return name, higher
    return None


def _slope_z(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """OLS slope of y on x over its standard error under i.i.d. noise SD ``sigma``."""
    if x.size < 2:
        return 0.0
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        return 0.0
    slope = float(xc @ (y - y.mean())) / sxx
    return slope * math.sqrt(sxx) / max(sigma, 1e-12)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}"


def _finding(
    code: str,
    severity: Severity,
    onset: int | None,
    evidence: dict[str, Any],
    message: str,
    groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (),
) -> Finding:
    causes: list[str] = []
    remedies: list[str] = []
    for group_causes, group_remedies in groups:
        causes += [c for c in group_causes if c not in causes]
        remedies += [r for r in group_remedies if r not in remedies]
    clean = {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in evidence.items()
    }
    return Finding(code, severity, onset, clean, message, tuple(causes), tuple(remedies))


def plateau_message(plateau: Plateau) -> str:
    """One sentence for a plateau, e.g. "val_accuracy flat at 0.472 ± 0.006 since epoch 6"."""
    return (
        f"{plateau.metric} flat at {_fmt(plateau.level)} ± {_fmt(plateau.spread)} "
        f"since epoch {plateau.onset_epoch}"
    )


def _chance(curve: Curve) -> float | None:
    return 1.0 / curve.num_classes if curve.num_classes and curve.num_classes > 1 else None


# ----------------------------------------------------------------------------------------------
# Individual checks
# ----------------------------------------------------------------------------------------------


def _check_divergence(curve: Curve, blowup_factor: float) -> Finding | None:
    """NaN/inf training loss (or inf val_loss), or a training loss that blew up and stayed up.

    Blow-up: the last training loss exceeds max(``blowup_factor`` x its minimum, minimum + 10 noise
    SDs), or ln(K) after having been below ln(K) / 2; the onset is the first epoch after the minimum
    from which the loss stays above that threshold.
    """
    epochs = np.asarray(curve.epochs)
    loss = curve.get("loss")
    val_loss = curve.get("val_loss")
    # Training loss is logged every epoch, so a NaN there is the optimiser's; a NaN val_loss next to
    # a finite loss is more likely a skipped validation (validation_freq) and counts as missing.
    bad_epochs: list[tuple[int, str]] = []
    if loss is not None:
        loss = np.asarray(loss, dtype=np.float64)
        idx = np.flatnonzero(~np.isfinite(loss))
        if idx.size:
            bad_epochs.append((int(epochs[idx[0]]), "loss"))
    if val_loss is not None:
        val_loss = np.asarray(val_loss, dtype=np.float64)
        idx = np.flatnonzero(np.isinf(val_loss))
        if idx.size:
            bad_epochs.append((int(epochs[idx[0]]), "val_loss"))
    if bad_epochs:
        onset, name = min(bad_epochs)
        return _finding(
            "divergence",
            Severity.CRITICAL,
            onset,
            {"metric": name, "first_non_finite_epoch": onset},
            f"{name} became NaN/inf at epoch {onset}: training diverged",
            (
                _LR_HIGH,
                (
                    ("exploding gradients or a numerically unstable loss",),
                    ("clip gradients (clipnorm)", "check inputs for NaN/inf and normalise them"),
                ),
            ),
        )
    series = _finite(curve, "loss")
    if series is None or series[1].size < 3:
        return None
    x, y = series
    sigma = estimate_noise(y)
    best = int(np.argmin(y))
    floor = float(y[best])
    threshold = max(blowup_factor * floor, floor + 10 * sigma)
    ln_k = math.log(curve.num_classes) if curve.num_classes and curve.num_classes > 1 else None
    if ln_k is not None and floor < 0.5 * ln_k:
        # Above the loss of a uniform guess after having been well below it: worse than knowing nothing.
        threshold = min(threshold, ln_k)
    above = y > threshold
    if best == y.size - 1 or not above[-1]:
        return None
    # Onset: first epoch after the minimum from which the loss stays above the threshold.
    below_after = np.flatnonzero(~above[best:]) + best
    start = int(below_after[-1]) + 1
    onset = int(x[start])
    return _finding(
        "divergence",
        Severity.CRITICAL,
        onset,
        {
            "loss_min": floor,
            "loss_min_epoch": int(x[best]),
            "loss_last": float(y[-1]),
            "threshold": threshold,
            "noise": sigma,
        },
        f"loss blew up from its minimum {_fmt(floor)} (epoch {int(x[best])}) to {_fmt(float(y[-1]))}; "
        f"above {_fmt(threshold)} since epoch {onset}",
        (_LR_HIGH,),
    )


def _check_not_learning(curve: Curve, noise: float) -> Finding | None:
    """Accuracy at chance and loss at ln(K) (a uniform guess) for at least the last half of the run.

    "At chance" allows 15% of the way from chance to 1.0 (or 3 noise SDs): a dead ReLU network
    that predicts one or two classes sits at 0.18-0.21 on 10 balanced classes. "At ln(K)" is at
    least 0.85 ln(K). The last half rather than every epoch, so that a network that learned a little
    and then died (a learning rate far too high) counts; the onset is the epoch from which both hold.
    """
    chance = _chance(curve)
    if chance is None or curve.num_classes is None:
        return None
    ln_k = math.log(curve.num_classes)
    acc_limit = chance + max(0.15 * (1 - chance), 3 * noise)
    loss_limit = 0.85 * ln_k
    # Validation metrics decide (a network can memorise random labels, so training accuracy may
    # climb while validation stays at chance); training metrics stand in when there are none.
    acc_name = "val_accuracy" if _finite(curve, "val_accuracy") is not None else "accuracy"
    loss_name = "val_loss" if _finite(curve, "val_loss") is not None else "loss"
    accuracy, loss = _finite(curve, acc_name), _finite(curve, loss_name)
    if accuracy is None and loss is None:
        return None
    epochs = np.asarray(curve.epochs)
    ok = np.ones(epochs.size, dtype=bool)  # epoch satisfies both (missing values do not break it)
    if accuracy is not None:
        ok &= ~np.isin(epochs, accuracy[0][accuracy[1] > acc_limit])
    if loss is not None:
        ok &= ~np.isin(epochs, loss[0][loss[1] < loss_limit])
    bad = np.flatnonzero(~ok)
    start = int(bad[-1]) + 1 if bad.size else 0
    if epochs.size - start < max(3, (epochs.size + 1) // 2):
        return None
    onset = int(epochs[start])
    evidence: dict[str, Any] = {"chance": chance, "ln_num_classes": ln_k, "since_epoch": onset}
    parts = []
    acc_tail = accuracy[1][accuracy[0] >= onset] if accuracy is not None else np.empty(0)
    loss_tail = loss[1][loss[0] >= onset] if loss is not None else np.empty(0)
    if acc_tail.size == 0 and loss_tail.size == 0:
        return None
    if acc_tail.size:
        evidence[f"{acc_name}_max"] = float(np.max(acc_tail))
        parts.append(f"{acc_name} at most {_fmt(float(np.max(acc_tail)))} (chance {_fmt(chance)})")
    if loss_tail.size:
        loss_min = float(np.min(loss_tail))
        evidence[f"{loss_name}_min"] = loss_min
        parts.append(f"{loss_name} at least {_fmt(loss_min)} (ln {curve.num_classes} = {_fmt(ln_k)})")
    return _finding(
        "not_learning",
        Severity.CRITICAL,
        onset,
        evidence,
        "not learning: " + " and ".join(parts) + (" throughout" if start == 0 else f" since epoch {onset}"),
        (
            _INPUTS,
            _LR_HIGH,
            (
                ("learning rate too low or a frozen / dead network",),
                ("try a learning rate 10x higher and 10x lower",),
            ),
        ),
    )


def _fits_training_set(curve: Curve, noise: float) -> bool:
    """Training accuracy over the last half above the not-learning limit (see _check_not_learning)."""
    chance = _chance(curve)
    train = _finite(curve, "accuracy")
    if chance is None or train is None:
        return True
    tail = train[1][train[1].size // 2 :]
    return bool(np.max(tail) > chance + max(0.15 * (1 - chance), 3 * noise))


def _check_overfitting(curve: Curve, min_plateau_epochs: int, alpha: float) -> Finding | None:
    """val_loss rising from its minimum beyond noise while the training loss keeps improving.

    Requires at least ``min_plateau_epochs`` epochs after the val_loss minimum, an upward OLS trend
    over them with z >= max(3, z_(1-alpha)) under the curve's noise, a rise of the last
    ``min_plateau_epochs`` epochs' mean over the mean around the minimum of >= 4 noise SDs, and a
    non-increasing training-loss trend over the same epochs. Falls back to (negated) val_accuracy
    / accuracy when there are no losses. The onset is the best epoch.
    """
    series = _finite(curve, "val_loss")
    train = _finite(curve, "loss")
    sign = 1.0
    name, train_name = "val_loss", "loss"
    if series is None:
        series, train, sign = _finite(curve, "val_accuracy"), _finite(curve, "accuracy"), -1.0
        name, train_name = "val_accuracy", "accuracy"
    if series is None or train is None:
        return None
    x, v = series[0], sign * series[1]  # oriented: lower is better
    if v.size < min_plateau_epochs + 3:
        return None
    best = int(np.argmin(v))
    if v.size - 1 - best < min_plateau_epochs:
        return None
    sigma = estimate_noise(v)
    tail_x, tail_v = x[best:], v[best:]
    z_up = _slope_z(tail_x.astype(float), tail_v, sigma)
    width = min(min_plateau_epochs, v.size - 1 - best)
    # The minimum itself is a low noise draw: compare against the mean around it, not the minimum.
    around = float(np.mean(v[max(0, best - 1) : best + 2]))
    rise = float(np.mean(v[-width:])) - around
    if z_up < max(3.0, float(ndtri(1 - alpha))) or rise < 4 * sigma:
        return None
    # Training must keep improving (or at least not get worse) after the validation minimum.
    tx, tv = train[0], sign * train[1]
    mask = tx >= x[best]
    if mask.sum() < 2:
        return None
    train_sigma = estimate_noise(tv)
    train_z = _slope_z(tx[mask].astype(float), tv[mask], train_sigma)
    if train_z > 0:
        return None
    common, iv, it = np.intersect1d(x, tx, return_indices=True)
    gap = v[iv] - tv[it]  # oriented generalisation gap: val worse than train
    at_best = np.searchsorted(common, x[best])
    gap_growth = float(gap[-1] - gap[min(at_best, gap.size - 1)])
    best_epoch = int(x[best])
    raw = series[1]
    raw_train = train[1]
    evidence = {
        "metric": name,
        "best_epoch": best_epoch,
        f"{name}_best": float(raw[best]),
        f"{name}_last": float(raw[-1]),
        "rise": rise if sign > 0 else -rise,
        "noise": sigma,
        "trend_z": z_up,
        f"{train_name}_at_best": float(raw_train[np.searchsorted(tx, x[best])]) if x[best] in tx else None,
        f"{train_name}_last": float(raw_train[-1]),
        "gap_growth": gap_growth if sign > 0 else -gap_growth,
    }
    verb = "rose" if sign > 0 else "fell"
    return _finding(
        "overfitting",
        Severity.WARNING,
        best_epoch,
        evidence,
        f"{name} {verb} from {_fmt(float(raw[best]))} at epoch {best_epoch} to {_fmt(float(raw[-1]))} "
        f"while {train_name} kept improving ({_fmt(float(raw_train[0]))} -> {_fmt(float(raw_train[-1]))}); "
        f"best epoch {best_epoch}",
        (_MEMORISING,),
    )


def _projected_gain(g: np.ndarray, onset: int, flat_epochs: int) -> tuple[float, float, int] | None:
    """How far the plateau fell short of what the climb into it predicted (oriented units).

    Four consecutive windows of w epochs with means M1, M2 (before the onset t), M3, M4 (from t
    on). A saturating curve's increments between equally spaced windows shrink by a roughly
    constant ratio (exactly so for an exponential approach), so with G1 = M2 - M1, G2 = M3 - M2
    and rho = min(G2 / G1, 1) the next increment should be G2 * rho; the shortfall is that minus
    the observed M4 - M3. Window means, not single epochs, because one epoch is a noisy draw (and
    the onset test tends to pick a high one); only one window ahead, because a ratio estimated from
    noisy increments cannot be trusted further. Source: the geometric-ratio extrapolation behind
    Aitken's delta-squared process (A. C. Aitken, Proc. R. Soc. Edinburgh 46, 1926).

    Returns:
        (shortfall, G2, w), or None when there are not two windows before the onset and two from it.
    """
    w = min(3, onset // 2, (flat_epochs + 1) // 2)
    if w < 1:
        return None
    m1 = float(np.mean(g[onset - 2 * w : onset - w]))
    m2 = float(np.mean(g[onset - w : onset]))
    m3 = float(np.mean(g[onset : onset + w]))
    m4 = float(np.mean(g[onset + w : onset + 2 * w]))
    g1, g2 = m2 - m1, m3 - m2
    rho = 1.0 if g1 <= 0 else min(g2 / g1, 1.0)
    predicted = max(g2, 0.0) * max(rho, 0.0)
    return predicted - (m4 - m3), g2, w


def _stall_reasons(
    curve: Curve,
    plateau: Plateau,
    higher_is_better: bool,
    g: np.ndarray,
    *,
    baseline_accuracy: float | None,
    low_level_fraction: float,
    stall_onset_fraction: float,
    stall_k: float,
    overfitting: Finding | None = None,
) -> dict[str, Any]:
    """Why a flat tail is a stall rather than a convergence (empty dict: converged). See module doc."""
    reasons: dict[str, Any] = {}
    if overfitting is not None:
        # val_loss rising while training improves: the flat validation metric is the model
        # memorising, not converging.
        reasons["memorising"] = overfitting.onset_epoch
    sigma = plateau.noise
    is_accuracy = higher_is_better and "acc" in plateau.metric
    chance = _chance(curve)
    if is_accuracy and chance is not None:
        fraction = (plateau.level - chance) / (1 - chance)
        if fraction < low_level_fraction:
            reasons["low_level"] = round(fraction, 4)
    if is_accuracy and chance is not None and curve.num_classes is not None:
        val_loss = _finite(curve, "val_loss")
        if val_loss is not None:
            tail = val_loss[1][val_loss[0] >= plateau.onset_epoch]
            # Cross-entropy at or above ln(K), a uniform guess's, while accuracy is well above
            # chance: wildly overconfident logits, the mark of unnormalised inputs (digits with
            # pixels scaled by 1e3-1e5 stall at 0.85 with val_loss ~130).
            if tail.size and float(np.mean(tail)) >= math.log(curve.num_classes):
                reasons["loss_above_uniform"] = round(float(np.mean(tail)), 4)
    if is_accuracy and baseline_accuracy is not None:
        values = _finite(curve, plateau.metric)
        margin = baseline_margin(
            baseline_accuracy, sigma, plateau.flat_epochs + 1, None if values is None else values[1]
        )
        if plateau.level < baseline_accuracy - margin:
            reasons["below_baseline"] = baseline_accuracy
    horizon = curve.epoch_budget or int(curve.epochs[-1])
    if plateau.onset_epoch <= stall_onset_fraction * horizon:
        projected = _projected_gain(g, plateau.onset_index, plateau.flat_epochs)
        expected = None
        # The climb into the plateau must itself be clear of noise (the SD of M3 - M2 is
        # sigma * sqrt(2 / w)), or there is no trajectory to project.
        if projected is not None and projected[1] > 3 * sigma * math.sqrt(2 / projected[2]):
            expected = projected[0]
        if expected is not None and expected > stall_k * sigma:
            reasons["premature"] = round(expected, 6)
    return reasons


def _flat_tail_trend(x: np.ndarray, y: np.ndarray, sigma: float, start_epoch: int) -> float:
    mask = x >= start_epoch
    return _slope_z(x[mask].astype(float), y[mask], sigma) if mask.sum() >= 3 else 0.0


def _plateau_groups(
    curve: Curve, plateau: Plateau, reasons: dict[str, Any]
) -> tuple[tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], dict[str, Any]]:
    """Causes for a stall from the training curve next to it."""
    evidence: dict[str, Any] = {}
    groups: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    val_acc = _finite(curve, "val_accuracy")
    train_acc = _finite(curve, "accuracy")
    if val_acc is not None and train_acc is not None:
        mask_v = val_acc[0] >= plateau.onset_epoch
        mask_t = train_acc[0] >= plateau.onset_epoch
        if mask_v.any() and mask_t.any():
            gap = float(np.mean(train_acc[1][mask_t]) - np.mean(val_acc[1][mask_v]))
            train_sigma = estimate_noise(train_acc[1])
            train_z = _flat_tail_trend(train_acc[0], train_acc[1], train_sigma, plateau.onset_epoch)
            evidence.update(train_val_gap=gap, train_trend_z=train_z)
            # Which causes to show, not whether to flag: a train-val gap of 5 points (or 5 noise SDs),
            # or a gap that training keeps widening, reads as memorising.
            if gap > max(5 * plateau.noise, 0.05) or (train_z > 3 and gap > 3 * plateau.noise):
                groups.append(_MEMORISING)
            else:
                groups.append(_CAPACITY)
    else:
        val_loss, train_loss = _finite(curve, "val_loss"), _finite(curve, "loss")
        if val_loss is not None and train_loss is not None:
            gap = float(
                np.mean(val_loss[1][val_loss[0] >= plateau.onset_epoch])
                - np.mean(train_loss[1][train_loss[0] >= plateau.onset_epoch])
            )
            evidence.update(val_train_loss_gap=gap)
            groups.append(_MEMORISING if gap > 5 * plateau.noise else _CAPACITY)
    if "memorising" in reasons and _MEMORISING not in groups:
        groups = [_MEMORISING] + [g for g in groups if g is not _CAPACITY]
    if "loss_above_uniform" in reasons:
        groups.insert(0, _INPUTS)
    if "low_level" in reasons or "below_baseline" in reasons:
        groups.append(_INPUTS)
        if _CAPACITY not in groups:
            groups.append(_CAPACITY)
    return tuple(groups), evidence


def baseline_margin(
    baseline: float, noise: float, tail_epochs: int, values: np.ndarray | None = None
) -> float:
    """How far (accuracy units) a plateau must sit below a baseline to be called below it.

    ``max(2 (sigma + sigma / sqrt(m)), 2 sqrt(2 p (1 - p) / n))``: the first term covers the
    curve's epoch-to-epoch noise ``sigma`` and the standard error of a level averaged over ``m``
    epochs; the second, when the accuracy grid gives the validation set's size n
    (:func:`pipelines.curves.noise.infer_num_examples`), the spread of two accuracies on n
    examples at the baseline's level p (one run's seed and the baseline's fit each move a level
    by about the binomial SD: K. Jordan, "On the Variance of Neural Network Training with respect
    to Test Sets and Distributions", ICLR 2024).

    Args:
        baseline: the baseline's accuracy, fraction in [0, 1].
        noise: the curve's per-epoch noise SD (accuracy units).
        tail_epochs: epochs the plateau level averages (>= 1).
        values: (E,) the curve's accuracies, for the grid; None skips the binomial term.

    Returns:
        The margin, in accuracy units (>= 0).
    """
    margin = 2.0 * (noise + noise / math.sqrt(max(tail_epochs, 1)))
    n = infer_num_examples(values) if values is not None else None
    if n is not None:
        p = min(max(baseline, 0.0), 1.0)
        margin = max(margin, 2.0 * math.sqrt(2.0 * p * (1.0 - p) / n))
    return margin


def _is_low(
    curve: Curve,
    level: float,
    noise: float,
    baseline: float | None,
    fraction: float,
    values: np.ndarray | None = None,
    tail_epochs: int = 1,
) -> bool:
    chance = _chance(curve)
    if chance is not None and (level - chance) / (1 - chance) < fraction:
        return True
    return baseline is not None and level < baseline - baseline_margin(baseline, noise, tail_epochs, values)


def _check_underfitting(
    curve: Curve,
    plateau: Plateau | None,
    *,
    baseline_accuracy: float | None,
    low_level_fraction: float,
    min_plateau_epochs: int,
    alpha: float,
) -> Finding | None:
    if plateau is None or plateau.metric != "val_accuracy":
        return None
    train = _finite(curve, "accuracy")
    if train is None:
        return None
    train_plateau = find_plateau(
        train[1], train[0], min_plateau_epochs=min_plateau_epochs, alpha=alpha, metric="accuracy"
    )
    if train_plateau is None:
        return None
    val = _finite(curve, "val_accuracy")
    val_low = _is_low(
        curve,
        plateau.level,
        plateau.noise,
        baseline_accuracy,
        low_level_fraction,
        None if val is None else val[1],
        plateau.flat_epochs + 1,
    )
    # Keras' epoch accuracy is a count over the training set too, so its grid gives that size.
    train_low = _is_low(
        curve,
        train_plateau.level,
        train_plateau.noise,
        baseline_accuracy,
        low_level_fraction,
        train[1],
        train_plateau.flat_epochs + 1,
    )
    if not (val_low and train_low):
        return None
    onset = max(plateau.onset_epoch, train_plateau.onset_epoch)
    evidence = {
        "val_accuracy_level": plateau.level,
        "accuracy_level": train_plateau.level,
        "chance": _chance(curve),
        "baseline_accuracy": baseline_accuracy,
    }
    against = []
    if _chance(curve) is not None:
        against.append(f"chance {_fmt(_chance(curve) or 0.0)}")
    if baseline_accuracy is not None:
        against.append(f"baseline {_fmt(baseline_accuracy)}")
    return _finding(
        "underfitting",
        Severity.WARNING,
        onset,
        evidence,
        f"training and validation accuracy both flat at a low level ({_fmt(train_plateau.level)} / "
        f"{_fmt(plateau.level)}; {', '.join(against)}) since epoch {onset}",
        (_CAPACITY, _INPUTS),
    )


MIN_SWING_EPOCHS = 8


def _swing(y: np.ndarray) -> tuple[float, float]:
    """(noise / trend extent, share of sign changes of first differences) of a series.

    Needs at least :data:`MIN_SWING_EPOCHS` values: the noise estimate is a MAD of second
    differences, and from fewer than 6 of them a single bump (one lucky epoch, as in a sound
    6-epoch run) reads as an oscillation.
    """
    if y.size < MIN_SWING_EPOCHS:
        return 0.0, 0.0
    sigma = estimate_noise(y, skip_fraction=0.0)
    # A 5-epoch moving average is the trend: it averages the swings out (and costs far less than a
    # running median, which matters for 1,000-run batches).
    padded = np.concatenate((y[:1], y[:1], y, y[-1:], y[-1:]))
    trend = np.convolve(padded, np.full(5, 0.2), mode="valid")
    extent = float(np.ptp(trend))
    d = np.diff(y)
    signs = np.sign(d[np.abs(d) > 1e-12])
    changes = float(np.mean(signs[1:] != signs[:-1])) if signs.size > 1 else 0.0
    return (sigma / extent if extent > 0 else math.inf), changes


def _check_oscillation(curve: Curve, ratio: float) -> tuple[Finding | None, Finding | None]:
    """(oscillation finding, noisy-validation finding)."""
    stats: dict[str, tuple[float, float]] = {}
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        series = _finite(curve, name)
        if series is not None:
            stats[name] = _swing(series[1])

    def swings(name: str, min_ratio: float, min_changes: float) -> bool:
        return name in stats and stats[name][0] >= min_ratio and stats[name][1] >= min_changes

    evidence = {f"{k}_noise_to_trend": round(v[0], 4) for k, v in stats.items() if math.isfinite(v[0])}
    evidence.update({f"{k}_sign_changes": round(v[1], 3) for k, v in stats.items()})
    # Too high a learning rate shows in the losses: the validation loss jumps from epoch to epoch
    # (overconfident wrong predictions make it spike far more than accuracy moves), and at worse
    # rates the training loss stops falling smoothly too, in bursts of several epochs rather than
    # strict alternation (hence the lower sign-change bar). Calibrated on real Keras runs on
    # digits / Fashion-MNIST (benchmarks/curve_fixtures): val_loss noise-to-trend 0.084-0.32 with
    # Adam 0.02-0.1 or SGD-momentum 0.05, <= 0.048 for sound runs; training loss <= 0.01 for sound
    # runs, 0.04-0.14 for the worse rates.
    swinging = [
        name
        for name, min_ratio, min_changes in (
            ("loss", ratio / 2, 0.2),
            ("val_loss", ratio, 0.3),
        )
        if swings(name, min_ratio, min_changes)
    ]
    if swinging:
        return (
            _finding(
                "oscillation",
                Severity.WARNING,
                None,
                evidence,
                f"{', '.join(swinging)} {'swings' if len(swinging) == 1 else 'swing'} up and down from "
                f"epoch to epoch, large against {'its' if len(swinging) == 1 else 'their'} trend",
                (_LR_HIGH,),
            ),
            None,
        )
    # Validation accuracy is normally somewhat noisier than training accuracy (fewer examples, no
    # averaging over the epoch: about 3x on real runs); "much noisier" is a noise-to-trend ratio of
    # at least 0.075 and a noise SD at least 5x the training accuracy's, with a calm val_loss.
    if "val_accuracy" in stats and stats["val_accuracy"][1] >= 0.4:
        val_ratio = stats["val_accuracy"][0]
        val_sigma = estimate_noise(_finite(curve, "val_accuracy")[1], skip_fraction=0.0)  # type: ignore[index]
        train = _finite(curve, "accuracy")
        train_sigma = estimate_noise(train[1], skip_fraction=0.0) if train is not None else 0.0
        if val_ratio >= 0.075 and val_sigma >= 5 * max(train_sigma, 1e-12):
            return None, _finding(
                "noisy_validation",
                Severity.INFO,
                None,
                evidence,
                "validation accuracy is much noisier than training accuracy",
                (_SPLITS,),
            )
    return None, None


def _check_split_mismatch(curve: Curve, noise: float) -> Finding | None:
    """Validation accuracy far below training accuracy from the first epoch on.

    At epoch 1 the gap must be at least max(0.1, 10 noise SDs), and so must the median gap.
    """
    val_acc, train_acc = _finite(curve, "val_accuracy"), _finite(curve, "accuracy")
    if val_acc is None or train_acc is None:
        return None
    common, iv, it = np.intersect1d(val_acc[0], train_acc[0], return_indices=True)
    if common.size < 2:
        return None
    gap = train_acc[1][it] - val_acc[1][iv]
    # At epoch 1 training accuracy is averaged over a model still learning, so it normally sits
    # *below* validation; a validation far below training already then is a split problem.
    threshold = max(0.1, 10 * noise)
    if gap[0] < threshold or float(np.median(gap)) < threshold:
        return None
    return _finding(
        "split_mismatch",
        Severity.WARNING,
        int(common[0]),
        {"gap_first_epoch": float(gap[0]), "gap_median": float(np.median(gap)), "noise": noise},
        f"validation accuracy is {_fmt(float(gap[0]))} below training from epoch {int(common[0])} on",
        (_SPLITS,),
    )


def _early_stopped(curve: Curve, best_epoch: int | None, min_plateau_epochs: int, on_plateau: bool) -> bool:
    if curve.tags.get("stop_reason") or curve.tags.get("early_stopped") in {"1", "true", "True"}:
        return True
    if on_plateau:
        # Ended on a confirmed plateau: what EarlyStopping with a min_delta, or DiagnosisCallback,
        # stops on. A run killed there instead must say so with complete=False.
        return True
    patience = curve.params.get("train.early_stopping_patience")
    patience = int(patience) if isinstance(patience, int | float) and patience > 0 else min_plateau_epochs
    # EarlyStopping stops `patience` epochs after the best one; a run whose best is that far back
    # is consistent with it, one still at its best when it ended is not.
    return best_epoch is not None and int(curve.epochs[-1]) - best_epoch >= patience


def _check_incomplete(
    curve: Curve, monitor: str | None, best_epoch: int | None, min_plateau_epochs: int, on_plateau: bool
) -> Finding | None:
    """``complete=False``, missing epochs (gaps, or NaN in the monitored metric), or a run that ended
    before its budget without having early-stopped (see ``_early_stopped``)."""
    epochs = np.asarray(curve.epochs)
    reasons: list[str] = []
    evidence: dict[str, Any] = {"epochs_run": int(epochs.size), "epoch_budget": curve.epoch_budget}
    if not curve.complete:
        reasons.append("the run is marked incomplete (killed or still running)")
    missing = sorted(set(range(1, int(epochs[-1]) + 1)) - set(epochs.tolist())) if epochs.size else []
    if monitor is not None:
        values = np.asarray(curve.metrics[monitor], dtype=np.float64)
        missing = sorted(set(missing) | set(epochs[~np.isfinite(values)].tolist()))
    if missing:
        evidence["missing_epochs"] = missing[:20]
        reasons.append(f"{len(missing)} epoch(s) missing ({', '.join(map(str, missing[:5]))})")
    if (
        curve.epoch_budget is not None
        and int(epochs[-1]) < curve.epoch_budget
        and not _early_stopped(curve, best_epoch, min_plateau_epochs, on_plateau)
    ):
        reasons.append(f"stopped at epoch {int(epochs[-1])} of {curve.epoch_budget} without early stopping")
    if not reasons:
        return None
    return _finding(
        "incomplete",
        Severity.WARNING,
        int(epochs[-1]) if epochs.size else None,
        evidence,
        "incomplete run: " + "; ".join(reasons),
        (
            (
                ("the run was interrupted, is still running, or logged only some epochs",),
                ("resume or rerun it before comparing it (BackupAndRestore resumes interrupted training)",),
            ),
        ),
    )


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def diagnose(
    curve: Curve,
    *,
    baseline_accuracy: float | None = None,
    min_plateau_epochs: int = 3,
    alpha: float = 0.01,
    extrapolate: bool = False,
    live: bool = False,
    low_level_fraction: float = 0.5,
    stall_onset_fraction: float = 0.5,
    stall_k: float = 5.0,
    oscillation_ratio: float = 0.065,
    blowup_factor: float = 3.0,
) -> Diagnosis:
    """Diagnose a run's curves; see the module docstring for the rules.

    Args:
        curve: the run; ``val_accuracy`` (preferred) or ``val_loss`` is monitored.
        baseline_accuracy: validation accuracy of a simple baseline on the same split (e.g. a
            scikit-learn logistic regression, :func:`pipelines.baseline.baseline_accuracy`),
            fraction in [0, 1]; a plateau below it by more than :func:`baseline_margin` is a stall,
            and training and validation both that low an underfit.
        min_plateau_epochs: epochs without improvement (beyond noise) that make a plateau.
        alpha: significance level of the plateau tests.
        extrapolate: fit the learning-curve families of :mod:`pipelines.curves.extrapolate` (about
            0.1-0.3 s a run) for ``too_slow`` / "train longer" and the premature-stall projection,
            and attach the forecast; False (default) uses closed-form rules only (a few ms a run).
        live: the run is still training (a callback): no ``incomplete`` finding, judge as of now.
        low_level_fraction: a plateau less than this share of the way from chance to 1.0 is low.
        stall_onset_fraction: a plateau that began in this first share of the horizon can be a
            premature stall.
        stall_k: noise SDs the projected level must exceed the plateau by to call it premature.
        oscillation_ratio: noise SD / trend extent (5-epoch moving average's range) of ``val_loss``
            above which it oscillates; the training loss oscillates at half of it.
        blowup_factor: training loss above this multiple of its minimum at the end is a divergence.

    Returns:
        The :class:`Diagnosis`; its findings are sorted by severity, then by :data:`ORDER`.

    Raises:
        ValueError: the curve has neither ``val_accuracy`` nor ``val_loss`` with two finite values
            and its training loss did not diverge (nothing to diagnose), or ``min_plateau_epochs < 1``.
    """
    if min_plateau_epochs < 1:
        raise ValueError(f"min_plateau_epochs must be >= 1, got {min_plateau_epochs}")
    findings: list[Finding] = []
    chosen = _monitor(curve)
    divergence = _check_divergence(curve, blowup_factor)
    if chosen is None:
        if divergence is None:
            raise ValueError(f"{curve.run}: no val_accuracy / val_loss with two finite values to diagnose")
        return Diagnosis(run=curve.run, verdict="divergence", findings=[divergence])
    monitor, higher = chosen
    x, values = _finite(curve, monitor)  # type: ignore[misc]
    g = values if higher else -values
    sigma = estimate_noise(g)
    best_index = int(np.argmax(g))
    best_epoch = int(x[best_index])
    plateau = find_plateau(
        values,
        x,
        higher_is_better=higher,
        min_plateau_epochs=min_plateau_epochs,
        alpha=alpha,
        noise=sigma,
        metric=monitor,
    )

    extrapolation = None
    if extrapolate and values.size >= 5:
        from pipelines.curves.extrapolate import extrapolate as fit_curves

        horizon = max(curve.epoch_budget or 0, int(x[-1]))
        extrapolation = fit_curves(x, values, horizon, higher_is_better=higher)

    if divergence is not None:
        findings.append(divergence)
    # A diverged run sits at chance as a consequence; the divergence is the finding.
    not_learning = None if divergence is not None else _check_not_learning(curve, sigma)
    if not_learning is not None:
        findings.append(not_learning)
    incomplete = (
        None
        if live
        else _check_incomplete(curve, monitor, best_epoch, min_plateau_epochs, plateau is not None)
    )

    stalled = False
    if incomplete is not None:
        findings.append(incomplete)
    elif not_learning is not None:
        # Memorising (e.g. random labels): validation at chance while val_loss climbs and training
        # accuracy rises well above chance; report both. A model at chance on training data too is
        # only not learning, whatever its val_loss does.
        overfitting = _check_overfitting(curve, min_plateau_epochs, alpha)
        if overfitting is not None and _fits_training_set(curve, sigma):
            findings.append(overfitting)
    elif not_learning is None and divergence is None:
        findings += _problem_findings(
            curve,
            plateau,
            monitor,
            higher,
            x,
            values,
            g,
            sigma,
            baseline_accuracy=baseline_accuracy,
            min_plateau_epochs=min_plateau_epochs,
            alpha=alpha,
            low_level_fraction=low_level_fraction,
            stall_onset_fraction=stall_onset_fraction,
            stall_k=stall_k,
            oscillation_ratio=oscillation_ratio,
            extrapolation=extrapolation,
        )
        stalled = any(f.code == "plateau" for f in findings)
        if not any(f.severity != Severity.INFO or f.code == "too_slow" for f in findings):
            findings.append(_healthy(curve, plateau, monitor, x, values, g, sigma, extrapolation))

    findings.sort(key=lambda f: (_SEVERITY_RANK[f.severity], ORDER.index(f.code) if f.code in ORDER else 99))
    return Diagnosis(
        run=curve.run,
        verdict=findings[0].code if findings else "healthy",
        findings=findings,
        monitor=monitor,
        plateau_onset_epoch=plateau.onset_epoch if plateau else None,
        plateau_level=plateau.level if plateau else None,
        plateau_spread=plateau.spread if plateau else None,
        best_epoch=best_epoch,
        extrapolation=extrapolation,
        noise=sigma,
        stalled=stalled,
    )


def _problem_findings(
    curve: Curve,
    plateau: Plateau | None,
    monitor: str,
    higher: bool,
    x: np.ndarray,
    values: np.ndarray,
    g: np.ndarray,
    sigma: float,
    *,
    baseline_accuracy: float | None,
    min_plateau_epochs: int,
    alpha: float,
    low_level_fraction: float,
    stall_onset_fraction: float,
    stall_k: float,
    oscillation_ratio: float,
    extrapolation: Extrapolation | None,
) -> list[Finding]:
    findings: list[Finding] = []
    overfitting = _check_overfitting(curve, min_plateau_epochs, alpha)
    if overfitting is not None:
        findings.append(overfitting)
    oscillation, noisy_val = _check_oscillation(curve, oscillation_ratio)
    reasons: dict[str, Any] = {}
    if plateau is not None:
        reasons = _stall_reasons(
            curve,
            plateau,
            higher,
            g,
            baseline_accuracy=baseline_accuracy,
            low_level_fraction=low_level_fraction,
            stall_onset_fraction=stall_onset_fraction,
            stall_k=stall_k,
            overfitting=overfitting,
        )
        if oscillation is not None and set(reasons) == {"below_baseline"}:
            # One cause, one finding (module doc): a learning rate that overshoots holds the level
            # below the baseline; the oscillation says so and carries the remedy.
            oscillation.evidence["below_baseline"] = baseline_accuracy
            reasons = {}
        if reasons:
            groups, extra = _plateau_groups(curve, plateau, reasons)
            evidence = {
                "metric": monitor,
                "level": plateau.level,
                "spread": plateau.spread,
                "noise": plateau.noise,
                "flat_epochs": plateau.flat_epochs,
                "trend_z": plateau.trend_z,
                "best_epoch": int(x[int(np.argmax(g))]),
                "stall_reasons": sorted(reasons),
                **{f"stall_{k}": v for k, v in reasons.items()},
                **extra,
            }
            findings.append(
                _finding(
                    "plateau",
                    Severity.WARNING,
                    plateau.onset_epoch,
                    evidence,
                    plateau_message(plateau),
                    groups,
                )
            )
    underfitting = _check_underfitting(
        curve,
        plateau,
        baseline_accuracy=baseline_accuracy,
        low_level_fraction=low_level_fraction,
        min_plateau_epochs=min_plateau_epochs,
        alpha=alpha,
    )
    # Overconfident logits (loss above a uniform guess's) name the inputs as the cause; an
    # oscillation names the learning rate: either way not the model's capacity (module doc).
    if underfitting is not None and oscillation is None and "loss_above_uniform" not in reasons:
        findings.append(underfitting)
    findings += [f for f in (oscillation, noisy_val) if f is not None]
    if plateau is None and oscillation is None:
        slow = _check_too_slow(curve, monitor, x, g, sigma, alpha, extrapolation, higher)
        if slow is not None:
            findings.append(slow)
    split = _check_split_mismatch(curve, sigma)
    if split is not None:
        findings.append(split)
    return findings


def _check_too_slow(
    curve: Curve,
    monitor: str,
    x: np.ndarray,
    g: np.ndarray,
    sigma: float,
    alpha: float,
    extrapolation: Extrapolation | None,
    higher: bool,
) -> Finding | None:
    """Still improving at the end, steadily enough that the budget ends far from the asymptote.

    The last third of the curve must improve with OLS z >= max(3, z_(1-alpha)); then it is too slow
    when the slope over the last third is at least half the slope over the first third (no
    deceleration), or, with an extrapolation, when the fitted curve plateaus only after twice the
    horizon (or never within 100x the budget).
    """
    size = g.size
    if size < 9:
        return None
    third = size // 3
    z_last = _slope_z(x[-third:].astype(float), g[-third:], sigma)
    if z_last < max(3.0, float(ndtri(1 - alpha))):
        return None
    slope_first = np.polyfit(x[:third].astype(float), g[:third], 1)[0]
    slope_last = np.polyfit(x[-third:].astype(float), g[-third:], 1)[0]
    steadiness = float(slope_last / slope_first) if slope_first > 0 else math.inf
    evidence: dict[str, Any] = {
        "metric": monitor,
        "slope_last_third": float(slope_last) * (1 if higher else -1),
        "steadiness": steadiness,
        "trend_z": z_last,
    }
    slow = steadiness >= 0.5
    if extrapolation is not None and math.isfinite(extrapolation.asymptote):
        evidence.update(
            asymptote=extrapolation.asymptote,
            value_at_budget=extrapolation.value_at_budget,
            plateau_epoch=extrapolation.plateau_epoch,
        )
        horizon = curve.epoch_budget or int(x[-1])
        slow = extrapolation.plateau_epoch is None or extrapolation.plateau_epoch > 2 * horizon
    if not slow:
        return None
    message = (
        f"{monitor} still improving steadily at the end ({_fmt(float(slope_last) * (1 if higher else -1))} "
        f"per epoch): at this pace the run ends far from its ceiling"
    )
    if extrapolation is not None and math.isfinite(extrapolation.asymptote):
        when = extrapolation.plateau_epoch
        message += f" (extrapolated {_fmt(extrapolation.asymptote)}" + (
            f", reached around epoch {when})" if when is not None else ")"
        )
    return _finding("too_slow", Severity.WARNING, None, evidence, message, (_LR_LOW,))


def _healthy(
    curve: Curve,
    plateau: Plateau | None,
    monitor: str,
    x: np.ndarray,
    values: np.ndarray,
    g: np.ndarray,
    sigma: float,
    extrapolation: Extrapolation | None,
) -> Finding:
    if plateau is not None:
        return _finding(
            "healthy",
            Severity.INFO,
            plateau.onset_epoch,
            {"metric": monitor, "level": plateau.level, "spread": plateau.spread, "converged": True},
            "converged: " + plateau_message(plateau).replace(" flat at ", " at "),
        )
    evidence: dict[str, Any] = {"metric": monitor, "last": float(values[-1]), "converged": False}
    if g.size < MIN_JUDGE_EPOCHS:
        evidence["too_short"] = True
        return Finding(
            "healthy",
            Severity.INFO,
            None,
            evidence,
            f"too short to judge: {g.size} epoch(s) of {monitor} (last {_fmt(float(values[-1]))} at "
            f"epoch {int(x[-1])}); at least {MIN_JUDGE_EPOCHS} are needed to see a trend",
            (),
            (),
        )
    recent = max(3, g.size // 3)
    recent_z = _slope_z(x[-recent:].astype(float), g[-recent:], sigma)
    evidence["recent_trend_z"] = round(recent_z, 3)
    if recent_z < IMPROVING_Z:
        # Not rising beyond noise at the end, yet not flat long enough to be a plateau (or too
        # short for the plateau test): say what is known, not "still improving".
        return Finding(
            "healthy",
            Severity.INFO,
            None,
            evidence,
            f"{monitor} shows no clear trend yet at epoch {int(x[-1])} ({_fmt(float(values[-1]))}; "
            f"last {recent} epochs neither improving beyond noise nor flat long enough to call converged)",
            (),
            (),
        )
    message = f"{monitor} still improving at epoch {int(x[-1])} ({_fmt(float(values[-1]))})"
    remedies: tuple[str, ...] = ()
    if extrapolation is not None and math.isfinite(extrapolation.asymptote):
        gain = (extrapolation.asymptote - float(values[-1])) * (1 if "acc" in monitor else -1)
        evidence.update(asymptote=extrapolation.asymptote, plateau_epoch=extrapolation.plateau_epoch)
        if gain > 3 * sigma:
            message += f"; extrapolated ceiling {_fmt(extrapolation.asymptote)}: train longer"
            remedies = ("train longer",)
    elif recent_z > 3:
        message += ": train longer"
        remedies = ("train longer",)
    return Finding("healthy", Severity.INFO, None, evidence, message, (), remedies)
