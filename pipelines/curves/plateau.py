"""Plateau statistics: where a curve stops improving beyond its own noise, and the small
statistical helpers the detectors share (finite series, OLS slope z, baseline margin, chance).

Sources are cited at each function: ordinary least squares slope tests (Montgomery, Peck & Vining),
the maximum of n normal draws (David & Nagaraja), Aitken's geometric-ratio extrapolation, and the
binomial spread of an accuracy on a fixed validation set (Jordan, ICLR 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri, stdtrit

from pipelines.curves.findings import fmt
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.types import Curve


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


def finite_series(curve: Curve, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) of a metric's finite values, or None when it is absent or all NaN.

    Returns:
        ((M,) int64 epochs, (M,) float64 values), M >= 1.
    """
    values = curve.get(name)
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    mask = np.isfinite(values)
    if not mask.any():
        return None
    return np.asarray(curve.epochs)[mask], values[mask]


def slope_z(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """OLS slope of y on x over its standard error under i.i.d. noise SD ``sigma``.

    Args:
        x: (M,) float epochs.
        y: (M,) float values.
        sigma: the noise SD of y (> 0; clipped at 1e-12).

    Returns:
        The z statistic (0.0 for fewer than 2 points or constant x). Source: Montgomery, Peck &
        Vining, "Introduction to Linear Regression Analysis", 5th ed., sec. 2.3.
    """
    if x.size < 2:
        return 0.0
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        return 0.0
    slope = float(xc @ (y - y.mean())) / sxx
    return slope * math.sqrt(sxx) / max(sigma, 1e-12)


#: A plateau whose values trend the wrong way by at least this many standard errors (``trend_z``),
#: and spread over more than twice the curve's noise, is said to fall (rise, for a loss), not to
#: be flat (:func:`plateau_message`).
DRIFT_Z = 3.0


def plateau_message(plateau: Plateau, *, drift: bool = False) -> str:
    """One sentence for a plateau, e.g. "val_accuracy flat at 0.472 ± 0.006 since epoch 6".

    With ``drift`` (a stall's message), a tail that is no better than its onset but keeps getting
    worse beyond noise (``trend_z`` <= -:data:`DRIFT_Z` and a spread above twice the noise;
    memorising noisy labels drags val_accuracy down for tens of epochs) is not called flat:
    "val_accuracy falling since epoch 1 (0.322 ± 0.036 on average)". Without it (a convergence,
    the live stop's line) the sentence is always the flat one.
    """
    level = f"{fmt(plateau.level)} ± {fmt(plateau.spread)}"
    if drift and plateau.trend_z <= -DRIFT_Z and plateau.spread > 2 * plateau.noise:
        way = "rising" if "loss" in plateau.metric else "falling"
        return f"{plateau.metric} {way} since epoch {plateau.onset_epoch} ({level} on average)"
    return f"{plateau.metric} flat at {level} since epoch {plateau.onset_epoch}"


def binomial_sd(p: float, n: int) -> float:
    """Standard deviation of an accuracy measured on ``n`` examples at true accuracy ``p``.

    Args:
        p: accuracy, fraction in [0, 1].
        n: examples (>= 1).

    Returns:
        sqrt(p (1 - p) / n), in accuracy units.
    """
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / max(n, 1))


def projected_gain(g: np.ndarray, onset: int, flat_epochs: int) -> tuple[float, float, int] | None:
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


#: Accuracies that differ by less than this are the same value logged in float32 (Keras' dtype).
FLOAT32_RESOLUTION = 1e-6


def baseline_margin(
    baseline: float,
    noise: float,
    tail_epochs: int,
    values: np.ndarray | None = None,
    n_examples: int | None = None,
) -> float:
    """How far (accuracy units) a plateau must sit below a baseline to be called below it.

    ``max(2 (sigma + sigma / sqrt(m)), 2 sqrt(2 p (1 - p) / n))``: the first term covers the
    curve's epoch-to-epoch noise ``sigma`` and the standard error of a level averaged over ``m``
    epochs; the second, when the validation set's size n is known (``n_examples``) or the accuracy
    grid gives it (:func:`pipelines.curves.noise.infer_num_examples`; a curve flat on one value
    gives no grid), the spread of two accuracies on n
    examples at the baseline's level p (one run's seed and the baseline's fit each move a level
    by about the binomial SD: K. Jordan, "On the Variance of Neural Network Training with respect
    to Test Sets and Distributions", ICLR 2024).

    Args:
        baseline: the baseline's accuracy, fraction in [0, 1].
        noise: the curve's per-epoch noise SD (accuracy units).
        tail_epochs: epochs the plateau level averages (>= 1).
        values: (E,) the curve's accuracies, for the grid when ``n_examples`` is None.
        n_examples: validation examples, when known; None with no ``values`` skips the binomial term.

    Returns:
        The margin, in accuracy units (>= 0).
    """
    # At least float32's resolution: Keras logs float32, so a flat 38/40 reads 0.94999999 and would
    # otherwise sit "below" a baseline of 0.95 on a curve with no noise.
    margin = max(2.0 * (noise + noise / math.sqrt(max(tail_epochs, 1))), FLOAT32_RESOLUTION)
    n = n_examples or (infer_num_examples(values) if values is not None else None)
    if n is not None:
        p = min(max(baseline, 0.0), 1.0)
        margin = max(margin, 2.0 * math.sqrt(2.0 * p * (1.0 - p) / n))
    return margin
