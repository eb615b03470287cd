"""Learning-curve extrapolation with saturating parametric families.

Source: T. Domhan, J. T. Springenberg and F. Hutter, "Speeding up Automatic Hyperparameter
Optimization of Deep Neural Networks by Extrapolation of Learning Curves", IJCAI 2015 (the family
list of their Table 1 / appendix). They combine eleven families in an MCMC ensemble; here six of
them that fit robustly with bounded least squares (``scipy.optimize.curve_fit`` with ``method=
"trf"``, https://docs.scipy.org/doc/scipy/reference/generated/scipy.optimize.curve_fit.html) are
combined by Akaike weights (AICc; Burnham & Anderson, "Model Selection and Multimodel Inference",
2nd ed., 2002, sec. 2.4 and 4.2), which is far cheaper than MCMC and adequate for a point forecast
with an uncertainty.

Every curve is fitted in a normalised, increasing orientation: ``z = (g - min g) / (max g - min g)``
with ``g = values`` for accuracies and ``-values`` for losses, so one set of bounds and initial
guesses serves both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from pipelines.curves.noise import estimate_noise

Family = Callable[..., np.ndarray]


def _pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * x ** (-alpha)


def _exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    return c - np.exp(-a * x + b)


def _log_power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    # a / (1 + (x / e^b)^c) with c < 0 rises to a.
    return a / (1.0 + np.exp(c * (np.log(x) - b)))


def _janoschek(x: np.ndarray, alpha: float, beta: float, kappa: float, delta: float) -> np.ndarray:
    return alpha - (alpha - beta) * np.exp(-kappa * x**delta)


def _mmf(x: np.ndarray, alpha: float, beta: float, kappa: float, delta: float) -> np.ndarray:
    return alpha - (alpha - beta) / (1.0 + (kappa * x) ** delta)


def _weibull(x: np.ndarray, alpha: float, beta: float, kappa: float, delta: float) -> np.ndarray:
    return alpha - (alpha - beta) * np.exp(-((kappa * x) ** delta))


# Index of the asymptote among each family's parameters.
FAMILIES: dict[str, tuple[Family, int]] = {
    "pow3": (_pow3, 0),
    "exp3": (_exp3, 0),
    "log_power": (_log_power, 0),
    "janoschek": (_janoschek, 0),
    "mmf": (_mmf, 0),
    "weibull": (_weibull, 0),
}


@dataclass(frozen=True)
class FamilyFit:
    """One family's least-squares fit.

    Attributes:
        params: fitted parameters in normalised units (see module docstring).
        aicc: small-sample corrected Akaike information criterion of the fit.
        weight: Akaike weight in the ensemble, in [0, 1].
        value_at_budget: this family's forecast at the budget, in the metric's units.
        asymptote: this family's limit as epochs -> infinity, in the metric's units.
    """

    params: tuple[float, ...]
    aicc: float
    weight: float
    value_at_budget: float
    asymptote: float


@dataclass(frozen=True)
class Extrapolation:
    """Forecast of a learning curve.

    Attributes:
        budget: the epoch (1-based) the forecast is for.
        value_at_budget: Akaike-weighted forecast at ``budget``, metric units.
        value_std: its standard deviation: spread across families plus each family's parameter
            uncertainty (delta method on ``curve_fit``'s covariance), metric units.
        asymptote: weighted limit as epochs -> infinity (the curve's ceiling / floor).
        asymptote_std: spread of the asymptote across families.
        plateau_epoch: first epoch at which the forecast comes within the curve's noise SD of the
            asymptote (improvement no longer measurable); None when beyond 100 x ``budget``.
        noise: the curve's epoch-to-epoch noise SD used for ``plateau_epoch``.
        higher_is_better: orientation the curve was fitted in.
        families: family name -> its fit (failed fits are left out).
        offset: ``min g`` of the normalisation (see module docstring), oriented units.
        scale: ``max g - min g`` of the normalisation; 0.0 when nothing was fitted.
    """

    budget: int
    value_at_budget: float
    value_std: float
    asymptote: float
    asymptote_std: float
    plateau_epoch: int | None
    noise: float
    higher_is_better: bool
    families: dict[str, FamilyFit] = field(default_factory=dict)
    offset: float = 0.0
    scale: float = 0.0

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        """Akaike-weighted ensemble forecast at ``epochs``.

        Args:
            epochs: (N,) 1-based epochs (float or int), > 0.

        Returns:
            (N,) float64 forecasts in the metric's units; the constant ``value_at_budget`` when
            nothing was fitted.
        """
        x = np.asarray(epochs, dtype=np.float64)
        if not self.families or self.scale <= 0:
            return np.full(x.shape, self.value_at_budget)
        with np.errstate(all="ignore"):
            z = sum(fit.weight * FAMILIES[name][0](x, *fit.params) for name, fit in self.families.items())
        g = self.offset + self.scale * np.asarray(z, dtype=np.float64)
        return g if self.higher_is_better else -g

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (families reduced to their weights)."""
        return {
            "budget": self.budget,
            "value_at_budget": self.value_at_budget,
            "value_std": self.value_std,
            "asymptote": self.asymptote,
            "asymptote_std": self.asymptote_std,
            "plateau_epoch": self.plateau_epoch,
            "weights": {name: round(fit.weight, 4) for name, fit in self.families.items()},
        }


def _setup(
    name: str, x: np.ndarray, z: np.ndarray, cap: float
) -> tuple[list[float], tuple[list[float], list[float]]]:
    """Initial guess and bounds for one family, in normalised units (z in about [0, 1])."""
    top = min(max(float(np.max(z[-3:])) + 0.1, 0.05), cap - 1e-6)
    first = float(z[0])
    mid = float(np.log(np.median(x)))
    lo_asym = 0.0  # the asymptote is at least the lowest value seen (increasing orientation)
    if name == "pow3":
        return [top, max(top - first, 1e-3), 0.5], ([lo_asym, 0.0, 0.01], [cap, 50.0, 5.0])
    if name == "exp3":
        return [top, 0.3, math.log(max(top - first, 1e-3)) + 0.3], ([lo_asym, 1e-4, -20.0], [cap, 5.0, 20.0])
    if name == "log_power":
        return [top, mid, -1.0], ([lo_asym, -5.0, -10.0], [cap, 15.0, -0.01])
    # janoschek / mmf / weibull: alpha (asymptote), beta (value near x -> 0), kappa, delta.
    beta0 = min(first, top - 1e-3)
    return [top, beta0, 0.3, 1.0], ([lo_asym, -5.0, 1e-4, 0.1], [cap, top, 10.0, 5.0])


def _gradient(fn: Family, x: float, params: np.ndarray) -> np.ndarray:
    grad = np.empty(params.size)
    for i in range(params.size):
        step = 1e-6 * max(1.0, abs(params[i]))
        up, down = params.copy(), params.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (fn(np.array([x]), *up)[0] - fn(np.array([x]), *down)[0]) / (2 * step)
    return grad


def extrapolate(
    epochs: np.ndarray,
    values: np.ndarray,
    budget: int,
    *,
    higher_is_better: bool | None = None,
    ceiling: float | None = None,
    families: tuple[str, ...] = tuple(FAMILIES),
    maxfev: int = 400,
) -> Extrapolation:
    """Forecast a curve's value at ``budget`` and where it plateaus, with an uncertainty.

    Each family in ``families`` is fitted by bounded least squares (``curve_fit``, ``trf``, at most
    ``maxfev`` evaluations; failures and non-finite fits are dropped) and the survivors are averaged
    with Akaike weights ``w_i ~ exp(-AICc_i / 2)``. The forecast's variance is the weighted
    between-family variance plus each family's delta-method variance from the covariance
    ``curve_fit`` returns (Burnham & Anderson 2002, eq. 4.9, "unconditional variance").

    Args:
        epochs: (E,) 1-based epoch numbers, increasing.
        values: (E,) float metric values; non-finite entries are dropped.
        budget: epoch to forecast, >= 1 (typically the run's epoch budget).
        higher_is_better: orientation; None infers it (accuracy-like when the mean of the last
            third exceeds the mean of the first third).
        ceiling: best value the metric can take (1.0 for accuracy, 0.0 for a loss); None uses 1.0
            for an increasing curve whose values lie in [0, 1], else no bound beyond ten times the
            observed range.
        families: names from :data:`FAMILIES` to fit.
        maxfev: cap on function evaluations per family (keeps a 1,000-run benchmark fast).

    Returns:
        The :class:`Extrapolation`; a curve too short or too flat to fit (fewer than 5 finite
        values, or no movement) returns a forecast equal to its last value with ``value_std`` equal
        to its noise and the ``families`` dict empty.

    Raises:
        ValueError: ``epochs`` and ``values`` differ in shape, ``budget < 1``, or an unknown family.
    """
    x_all = np.asarray(epochs, dtype=np.float64)
    y_all = np.asarray(values, dtype=np.float64)
    if x_all.shape != y_all.shape:
        raise ValueError(f"epochs {x_all.shape} and values {y_all.shape} differ in shape")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; choose from {sorted(FAMILIES)}")
    mask = np.isfinite(y_all) & np.isfinite(x_all)
    x, y = x_all[mask], y_all[mask]
    if higher_is_better is None:
        third = max(1, y.size // 3)
        higher_is_better = bool(y.size == 0 or np.mean(y[-third:]) >= np.mean(y[:third]))
    g = y if higher_is_better else -y
    noise = estimate_noise(g) if g.size else 0.0
    lo, span = (float(np.min(g)), float(np.ptp(g))) if g.size else (0.0, 0.0)
    if g.size < 5 or span <= 0:
        last = float(y[-1]) if y.size else math.nan
        return Extrapolation(budget, last, noise, last, noise, None, noise, higher_is_better)
    if ceiling is None and higher_is_better and 0.0 <= np.min(y) and np.max(y) <= 1.0:
        ceiling = 1.0
    if ceiling is not None:
        cap = ((ceiling if higher_is_better else -ceiling) - lo) / span
        cap = max(cap, 1.0 + 1e-6)
    else:
        cap = 10.0
    z = (g - lo) / span

    fits: dict[str, tuple[np.ndarray, np.ndarray | None, float]] = {}
    n = z.size
    for name in families:
        fn, _ = FAMILIES[name]
        p0, bounds = _setup(name, x, z, cap)
        k = len(p0)
        if n <= k + 1:
            continue
        p0 = np.clip(p0, np.array(bounds[0]) + 1e-9, np.array(bounds[1]) - 1e-9)
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", OptimizeWarning)
                params, cov = curve_fit(fn, x, z, p0=p0, bounds=bounds, method="trf", max_nfev=maxfev)
        except (RuntimeError, ValueError):
            continue
        with np.errstate(all="ignore"):
            resid = z - fn(x, *params)
        ssr = float(resid @ resid)
        if not np.isfinite(ssr):
            continue
        ssr = max(ssr, 1e-12 * n)
        aicc = n * math.log(ssr / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
        fits[name] = (params, cov if cov is not None and np.all(np.isfinite(cov)) else None, aicc)
    if not fits:
        last = float(y[-1])
        return Extrapolation(budget, last, noise, last, noise, None, noise, higher_is_better)

    best = min(aicc for _, _, aicc in fits.values())
    raw_weights = {name: math.exp(-(aicc - best) / 2) for name, (_, _, aicc) in fits.items()}
    total = sum(raw_weights.values())

    def to_metric(zv: np.ndarray | float) -> np.ndarray | float:
        gv = lo + span * np.asarray(zv)
        return gv if higher_is_better else -gv

    results: dict[str, FamilyFit] = {}
    at_budget, asymptotes, variances, weights = [], [], [], []
    for name, (params, cov, aicc) in fits.items():
        fn, asym_index = FAMILIES[name]
        weight = raw_weights[name] / total
        with np.errstate(all="ignore"):
            zb = float(fn(np.array([float(budget)]), *params)[0])
        var = 0.0
        if cov is not None:
            grad = _gradient(fn, float(budget), params)
            var = float(max(grad @ cov @ grad, 0.0))
        at_budget.append(zb)
        asymptotes.append(float(params[asym_index]))
        variances.append(var)
        weights.append(weight)
        results[name] = FamilyFit(
            params=tuple(float(p) for p in params),
            aicc=aicc,
            weight=weight,
            value_at_budget=float(to_metric(zb)),
            asymptote=float(to_metric(params[asym_index])),
        )
    w = np.asarray(weights)
    zb_all, za_all = np.asarray(at_budget), np.asarray(asymptotes)
    zb_mean, za_mean = float(w @ zb_all), float(w @ za_all)
    zb_var = float(w @ ((zb_all - zb_mean) ** 2 + np.asarray(variances)))
    za_var = float(w @ (za_all - za_mean) ** 2)

    # Plateau epoch: first epoch where the ensemble forecast is within one noise SD of its limit.
    grid = np.unique(np.geomspace(1, 100 * budget, 400).astype(np.int64)).astype(np.float64)
    with np.errstate(all="ignore"):
        curve = sum(
            weight * FAMILIES[name][0](grid, *fits[name][0])
            for name, weight in zip(fits, weights, strict=True)
        )
    close = np.flatnonzero(za_mean - curve <= noise / span)
    plateau_epoch = int(grid[close[0]]) if close.size else None

    return Extrapolation(
        budget=int(budget),
        value_at_budget=float(to_metric(zb_mean)),
        value_std=span * math.sqrt(zb_var),
        asymptote=float(to_metric(za_mean)),
        asymptote_std=span * math.sqrt(za_var),
        plateau_epoch=plateau_epoch,
        noise=noise,
        higher_is_better=higher_is_better,
        families=results,
        offset=lo,
        scale=span,
    )
