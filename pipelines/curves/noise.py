"""A training curve's own epoch-to-epoch noise, estimated robustly.

Thresholds elsewhere in the curve engine are multiples of this estimate instead of a hard-coded
``min_delta``: a validation accuracy measured on 500 images jitters by ~0.01, one measured on 10,000
by ~0.002, and "no improvement" means "no improvement beyond that jitter".
"""

from __future__ import annotations

import functools
import math

import numpy as np

# Consistency constant of the MAD for normal data, 1 / Phi^-1(3/4): the value scipy.stats.
# median_abs_deviation(..., scale="normal") uses. Computed with numpy directly because the scipy
# wrapper's argument handling costs ~50 us a call, and diagnose() calls this a few times per run.
_MAD_NORMAL = 1.482602218505602
# Var(e[t] - 2 e[t-1] + e[t-2]) = 6 sigma^2 for i.i.d. noise e; Var(e[t] - e[t-1]) = 2 sigma^2.
_DIFF2_SCALE = math.sqrt(6.0)
_DIFF1_SCALE = math.sqrt(2.0)


def mad(values: np.ndarray) -> float:
    """Median absolute deviation scaled to a normal SD; equals
    ``scipy.stats.median_abs_deviation(values, scale="normal")`` for a finite 1-D array.

    Args:
        values: (N,) float array, N >= 1, all finite.

    Returns:
        1.4826 * median(|values - median(values)|).
    """
    centre = np.median(values)
    return float(_MAD_NORMAL * np.median(np.abs(values - centre)))


def estimate_noise(
    values: np.ndarray,
    *,
    skip_fraction: float = 0.2,
    max_skip: int = 5,
    floor: float = 1e-9,
) -> float:
    """Standard deviation of a curve's epoch-to-epoch noise around its smooth trend.

    Uses the second differences ``y[t] - 2 y[t-1] + y[t-2]``, which cancel any locally linear
    trend, and their median absolute deviation scaled to a normal standard deviation
    (``scipy.stats.median_abs_deviation(..., scale="normal")``), divided by sqrt(6); with at least
    4 of them, one reweighting step then takes the SD of those within 3 MADs of their median
    (and the plain SD when that is at the ``floor``: a quantised curve). The MAD makes
    the estimate insensitive to the few epochs where the trend itself bends sharply (the steep start
    of training, a learning-rate drop). The steep first ``skip_fraction`` of the curve (at most
    ``max_skip`` epochs) is left out because its curvature is trend, not noise.

    Sources: von Neumann, Kent, Bellinson & Hart, "The mean square successive difference", Ann. Math.
    Statist. 12 (1941) (difference-based variance estimation); Rousseeuw & Croux, "Alternatives to
    the median absolute deviation", JASA 88 (1993) (MAD, scale 1.4826 for normal data);
    https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.median_abs_deviation.html.

    Args:
        values: (E,) float array, one value per epoch; NaN / inf entries are dropped.
        skip_fraction: share of leading epochs left out when the curve is long enough.
        max_skip: at most this many leading epochs are left out.
        floor: smallest value returned (a perfectly constant curve has zero noise, and thresholds
            that are multiples of zero would call any change significant).

    Returns:
        Noise standard deviation in the curve's own units (>= ``floor``); for two finite values
        their difference / sqrt(2), for fewer ``floor``.
    """
    y = np.asarray(values, dtype=np.float64)
    y = y[np.isfinite(y)]
    skip = min(max_skip, int(skip_fraction * y.size))
    if y.size - skip >= 6:
        y = y[skip:]
    if y.size < 3:
        if y.size == 2:
            return max(float(abs(y[1] - y[0])) / _DIFF1_SCALE, floor)
        return floor
    d2 = np.diff(y, n=2)
    spread = mad(d2)
    if spread > 0 and d2.size >= 4:
        # One reweighting step: the SD of the second differences within 3 MADs of their median.
        # The MAD alone is only 37% efficient at the normal, so on a 25-epoch tail it misses the
        # true SD by ~25%; the clipped SD keeps the MAD's robustness to trend bends and is close to
        # fully efficient (Rousseeuw & Leroy, "Robust Regression and Outlier Detection", 1987,
        # reweighted estimators). 0.9866 is the SD of a standard normal truncated at +-3.
        centre = np.median(d2)
        kept = d2[np.abs(d2 - centre) <= 3 * spread]
        if kept.size >= 3:
            spread = float(np.sqrt(np.mean((kept - centre) ** 2))) / 0.9866
    sigma = spread / _DIFF2_SCALE
    if sigma <= floor:
        # Quantised metrics (accuracy on a small set) can have a zero MAD while still moving: fall
        # back to the (non-robust) standard deviation rather than declare the curve noiseless.
        sigma = float(np.std(d2)) / _DIFF2_SCALE
    return max(sigma, floor)


def infer_num_examples(values: np.ndarray, *, max_n: int = 100_000, min_distinct: int = 3) -> int | None:
    """Number of examples behind an accuracy curve, read off the grid its values lie on.

    An accuracy on n examples is k / n; Keras computes it in float32 (an exact integer count
    divided by an exact integer n, so correctly rounded) and loggers write that float32 out.
    The smallest n <= ``max_n`` for which every value equals ``round(v n) / n`` exactly, in
    float32 when every value is a float32, else in float64, is returned. A value matches a
    wrong n only by rounding accident (probability about n * 6e-8 per value in float32), so
    several distinct values leave only the true n or a divisor of it shared by every k.
    Curves of continuous values (smoothed, averaged over runs, synthetic) lie on no such grid.

    Some backends are off by one unit in the last place (ulp): Keras 3 under JAX on an NVIDIA GPU
    logs 46 / 50 as 0.91999996 instead of float32(0.92) = 0.92000002, and every value of 28 runs
    on 50 to 10,000 examples was within one ulp of k / n (the GPU's division, not measured further;
    under JAX on a CPU the values were exact). When no n fits
    exactly, float32 values are read again with a tolerance of :data:`GRID_ULPS` ulp, from
    at least :data:`TOLERANT_MIN_DISTINCT` distinct values (a tolerance triples the chance that a
    continuous value falls on a wrong grid; with four values a wrong n below 100,000 fits a
    continuous curve with probability about 0.002). With fewer distinct values than that (down
    to ``min_distinct``), the tolerant reading tries n up to :data:`TOLERANT_FEW_MAX_N` only, where
    a chance fit is rare: a 13-example validation set read on a GPU logged three distinct values in
    40 epochs, one of them an ulp off.

    Args:
        values: (E,) float accuracies; non-finite entries and exact 0 / 1 (on every grid) are
            ignored.
        max_n: largest n considered (examples), at most 2**24 (exact in float32).
        min_distinct: fewest distinct informative values read (>= 1). With fewer than three, the
            n returned is a lower bound: the smallest grid the values lie on (28/32 and 30/32
            give 16; 0.875 alone gives 8), never above the true n, so an accuracy SD computed
            from it is an upper bound.

    Returns:
        n (examples), or None when fewer than ``min_distinct`` distinct values are informative or
        no n <= ``max_n`` fits them all.

    Raises:
        ValueError: ``min_distinct`` < 1.
    """
    if min_distinct < 1:
        raise ValueError(f"infer_num_examples: min_distinct must be >= 1, got {min_distinct}")
    raw = np.asarray(values, dtype=np.float64).tobytes()
    n = _infer_num_examples(raw, max_n, min_distinct, 0) or _infer_num_examples(
        raw, max_n, max(min_distinct, TOLERANT_MIN_DISTINCT), GRID_ULPS
    )
    if n is None and min_distinct < TOLERANT_MIN_DISTINCT:
        n = _infer_num_examples(raw, min(max_n, TOLERANT_FEW_MAX_N), min_distinct, GRID_ULPS)
    return n


#: Units in the last place (float32) by which a logged accuracy may miss k / n: see
#: :func:`infer_num_examples`.
GRID_ULPS = 1
#: Fewest distinct values the tolerant reading of :func:`infer_num_examples` needs over every n up
#: to its ``max_n``.
TOLERANT_MIN_DISTINCT = 4
#: Largest n the tolerant reading tries with fewer distinct values than that (down to the caller's
#: ``min_distinct``): a continuous value falls within one ulp (about 6e-8) of some k / n with
#: probability about 1.2e-7 n, so three such values fit one wrong n <= 1,000 with probability
#: about 4e-10 (two: 5e-6), while a validation set of 13 images read on a GPU (12 / 13 logged one
#: ulp off, beside 8 / 13 and 11 / 13) shows only three distinct values in 40 epochs.
TOLERANT_FEW_MAX_N = 1_000


@functools.lru_cache(maxsize=512)
def _infer_num_examples(raw: bytes, max_n: int, min_distinct: int, ulps: int) -> int | None:
    y = np.frombuffer(raw, dtype=np.float64)
    y = np.unique(y[np.isfinite(y) & (y > 0.0) & (y < 1.0)])
    if y.size < min_distinct:
        return None
    as32 = y.astype(np.float32)
    dtype = np.float32 if np.array_equal(as32.astype(np.float64), y) else np.float64
    if ulps and dtype is not np.float32:
        return None
    target = y.astype(dtype)
    # Tolerance per value: ``ulps`` float32 ulps (0: exact equality).
    slack = np.spacing(target) * ulps

    def near(grid_values: np.ndarray, i: np.ndarray | int) -> np.ndarray:
        return np.abs(grid_values - target[i]) <= slack[i]

    # One value at a time while many n remain (each pass over 1..max_n is the cost), then the
    # rest of the values against the few candidates left, all at once.
    order = np.argsort(np.abs(y - 0.5))
    # In float32 when the values are: k = round(v n) is still exact (the product's error is below
    # n * 6e-8 << 0.5 for n <= 1e5) and k / n of two exact integers is correctly rounded.
    n = np.arange(1, max_n + 1, dtype=dtype)
    used = 0
    while used < order.size and (used < 3 or n.size > 1000):
        i = order[used]
        n = n[near(np.round(target[i] * n) / n, i)]
        used += 1
    rest = order[used:]
    if rest.size and n.size:
        m = n.astype(np.float64)
        grid = (np.round(np.outer(m, y[rest])) / m[:, None]).astype(dtype)
        n = n[near(grid, rest).all(axis=1)]
    return int(n[0]) if n.size else None
