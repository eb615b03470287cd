"""``underfitting``: :func:`detect_underfitting`, training and validation accuracy both flat, together,
at a low level.
"""

from __future__ import annotations

import numpy as np

from pipelines.curves.detectors.context import Context, _practical_allowance, weights_still
from pipelines.curves.detectors.plateau import _fit_tolerance
from pipelines.curves.findings import (
    CAPACITY,
    INPUTS,
    REGULARISED,
    UNSHUFFLED,
    WEIGHTS_STILL,
    Code,
    fmt,
    make_finding,
)
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.plateau import Plateau, baseline_margin, find_plateau, finite_series, slope_z
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Finding, Severity


def _is_low(ctx: Context, level: float, noise: float, values: np.ndarray | None, tail_epochs: int) -> bool:
    if ctx.level_fraction(level) < ctx.cfg.low_level_fraction:
        return True
    if ctx.baseline is not None:
        return level < ctx.baseline - baseline_margin(ctx.baseline, noise, tail_epochs, values, ctx.n_val)
    return False


def _practically_flat(
    series: tuple[np.ndarray, np.ndarray],
    onset_epoch: int,
    cfg: DiagnoseConfig,
    *,
    metric: str = "accuracy",
    n_examples: int | None = None,
) -> Plateau | None:
    """An accuracy curve from ``onset_epoch`` on, when flat for practical purposes.

    :func:`find_plateau` rejects a tail with a statistically significant creep, however small; on a
    large training set a rise of a few thousandths over twenty epochs is significant and still
    nothing. Flat here: the range over those epochs at most max(3 noise SDs, 2 binomial SDs on
    ``n_examples`` (default: the set's size read off its grid, :func:`infer_num_examples`), 0.01).

    Args:
        series: (epochs (E,) int, accuracy (E,) float) of one accuracy metric.
        onset_epoch: 1-based first epoch of the tail.
        cfg: thresholds (``min_plateau_epochs``: the tail needs one more value than this).
        metric: the name the returned plateau carries.
        n_examples: examples the accuracy is measured on, when known.

    Returns:
        A :class:`Plateau` of the metric from ``onset_epoch``, or None.
    """
    x, y = series
    mask = x >= onset_epoch
    tail = y[mask]
    if tail.size < cfg.min_plateau_epochs + 1:
        return None
    noise = estimate_noise(y)
    level = float(np.mean(tail))
    n = n_examples or infer_num_examples(y)
    if float(np.ptp(tail)) > _practical_allowance(level, noise, n):
        return None
    first = int(np.flatnonzero(mask)[0])
    return Plateau(
        metric=metric,
        onset_epoch=int(x[first]),
        level=level,
        spread=float(np.std(tail)),
        flat_epochs=int(tail.size - 1),
        noise=noise,
        trend_z=slope_z(x[mask].astype(float), tail, noise),
        onset_index=first,
    )


def _practical_val_plateau(ctx: Context) -> Plateau | None:
    """val_accuracy's last third (at least ``min_plateau_epochs`` + 1 epochs), when flat for
    practical purposes (:func:`_practically_flat`, binomial SDs on the validation set's size).

    On thousands of validation examples a creep of a point over a dozen epochs is significant, so
    :func:`find_plateau` finds no plateau, yet a model that creeps at a low level has converged.
    """
    val = finite_series(ctx.curve, "val_accuracy")
    if val is None:
        return None
    tail = max(ctx.cfg.min_plateau_epochs + 1, val[0].size // 3)
    if val[0].size < 2 * tail:
        return None
    return _practically_flat(val, int(val[0][-tail]), ctx.cfg, metric="val_accuracy", n_examples=ctx.n_val)


def detect_underfitting(ctx: Context) -> Finding | None:
    """Training and validation accuracy both flat, together, at a low level.

    Both must plateau (:func:`find_plateau`; the training accuracy may instead be flat for
    practical purposes over the validation plateau, :func:`_practically_flat`). "Low" is, in this
    order of evidence: less than ``low_level_fraction`` of the way from chance to 1.0 (chance
    unknown: the level itself, :meth:`Context.level_fraction`), or below the baseline by more
    than :func:`baseline_margin`; failing both, the model fits its training set little better
    than its validation set (mean gap over the plateau within max(3 noise SDs, 2 binomial SDs,
    0.05): a few points of generalisation gap at a training error of 0.2 are no fit) while its
    training error stays at or above ``underfit_error``: a model that cannot even fit the data it
    is trained on, and is not held back by memorising. A training accuracy below the validation
    accuracy is scored under dropout, input noise or augmentation, not the model's fit: then the
    validation error must be at least ``underfit_error`` too.
    """
    plateau, cfg = ctx.plateau, ctx.cfg
    if plateau is None and ctx.monitor == "val_accuracy":
        plateau = _practical_val_plateau(ctx)
    if plateau is None or plateau.metric != "val_accuracy" or ctx.still_improving:
        return None
    train = finite_series(ctx.curve, "accuracy")
    if train is None:
        return None
    train_plateau = find_plateau(
        train[1], train[0], min_plateau_epochs=cfg.min_plateau_epochs, alpha=cfg.alpha, metric="accuracy"
    ) or _practically_flat(train, plateau.onset_epoch, cfg)
    if train_plateau is None:
        return None
    val_low = _is_low(ctx, plateau.level, plateau.noise, ctx.values, plateau.flat_epochs + 1)
    train_low = _is_low(
        ctx, train_plateau.level, train_plateau.noise, train[1], train_plateau.flat_epochs + 1
    )
    basis, below = "chance / baseline", False
    if not (val_low and train_low):
        gap, tolerance = train_plateau.level - plateau.level, _fit_tolerance(ctx, plateau)
        close = gap <= tolerance
        # The better of the two measures the fit: training accuracy under dropout or noise can sit
        # far below what the model scores on clean validation data.
        if not (close and 1.0 - max(train_plateau.level, plateau.level) >= cfg.underfit_error):
            return None
        basis = "fit"
        # Training clearly below validation (by as much as "close" allows above it) is scored with
        # regularisation on, or over unshuffled batches: those come before capacity.
        below = -gap > tolerance
    onset = max(plateau.onset_epoch, train_plateau.onset_epoch)
    evidence = {
        "val_accuracy_level": plateau.level,
        "accuracy_level": train_plateau.level,
        "chance": ctx.chance,
        "baseline_accuracy": ctx.baseline,
        "basis": basis,
    }
    still = weights_still(ctx.curve)
    still_note = ""
    if still:
        evidence["weights_still_epochs"] = still
        still_note = (
            f"; the training loss has repeated itself for {still} epochs: the weights no longer change"
        )
    against = []
    if ctx.chance is not None:
        against.append(f"chance {fmt(ctx.chance)}")
    if ctx.baseline is not None:
        against.append(f"baseline {fmt(ctx.baseline)}")
    if basis != "fit" and ctx.chance is None and ctx.baseline is None:
        against.append(f"less than {ctx.cfg.low_level_fraction:.0%} of the way from any chance level to 1.0")
    if basis == "fit":
        # The fit tolerance lets training sit a few points above validation: say by how much.
        against.append(
            "training no better than validation" if gap <= 0 else f"training only {fmt(gap)} above validation"
        )
    return make_finding(
        Code.UNDERFITTING,
        Severity.WARNING,
        onset,
        evidence,
        f"training and validation accuracy both flat at a low level ({fmt(train_plateau.level)} / "
        f"{fmt(plateau.level)}; {', '.join(against)}) since epoch {onset}" + still_note,
        (REGULARISED, UNSHUFFLED, CAPACITY, INPUTS)
        if basis == "fit" and below and not still
        else (WEIGHTS_STILL if still else CAPACITY, INPUTS),
    )
