"""``overfitting``: :func:`detect_overfitting`, val_loss rising from its minimum beyond noise while the
training loss keeps improving.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.curves.detectors.context import Context
from pipelines.curves.findings import MEMORISING, OVERCONFIDENT, Code, Group, fmt, make_finding
from pipelines.curves.noise import estimate_noise
from pipelines.curves.plateau import finite_series, slope_z
from pipelines.curves.types import Finding, Severity


def detect_overfitting(ctx: Context) -> Finding | None:
    """val_loss rising from its minimum beyond noise while the training loss keeps improving.

    Requires at least ``min_plateau_epochs`` epochs after the val_loss minimum; at least two
    thirds of the last ``min_plateau_epochs`` epochs above the level at the minimum (the mean of
    the 3 epochs around it, capped at the minimum + 2 noise SDs) by more than
    a noise SD, and their mean by more than max(3 standard errors of the difference of the two
    means, ``overfit_rise`` x that level, ``overfit_sd_ratio`` x that level / sqrt(n) with n
    validation examples); and a
    non-increasing training-loss trend since the minimum, ending no more than 2 of its noise SDs
    above its value there (a val_loss that rose with the training loss is the optimisation
    getting worse, not memorising). A level test, not a trend test: a
    val_loss that spiked and came part of the way back is still above its minimum. Falls back to
    (negated) val_accuracy / accuracy when there are no losses. The onset is the best epoch.
    """
    curve, cfg = ctx.curve, ctx.cfg
    m = cfg.min_plateau_epochs
    series = finite_series(curve, "val_loss")
    train = finite_series(curve, "loss")
    sign = 1.0
    name, train_name = "val_loss", "loss"
    if series is None:
        series, train, sign = finite_series(curve, "val_accuracy"), finite_series(curve, "accuracy"), -1.0
        name, train_name = "val_accuracy", "accuracy"
    if series is None or train is None:
        return None
    x, v = series[0], sign * series[1]  # oriented: lower is better
    if v.size < m + 3:
        return None
    best = int(np.argmin(v))
    if v.size - 1 - best < m:
        return None
    sigma = estimate_noise(v)
    z_up = slope_z(x[best:].astype(float), v[best:], sigma)
    width = min(m, v.size - 1 - best)
    # The minimum itself is a low noise draw: compare against the mean around it (3 epochs), not
    # the minimum; but never more than 2 noise SDs above it, about as far as the lowest of a run's
    # draws lies below their level (1.97 SDs for 25 normal draws; the mean around a minimum on a
    # flat noisy stretch is some 1.3 SDs above it). A minimum right after a steep fall has steep
    # neighbours (val_loss 0.48, 0.35, 0.42 at epochs 1-3 on 10,000 examples): their mean is the
    # fall, not the minimum's level.
    around = min(float(np.mean(v[max(0, best - 1) : best + 2])), float(v[best]) + 2 * sigma)
    tail = v[-width:]
    rise = float(np.mean(tail)) - around
    # Significant: the difference of two means (the tail's ``width`` epochs, the 3 around the
    # minimum) beyond 3 of its standard errors under the curve's noise; practically significant:
    # by a tenth of the loss's own level (``overfit_rise``).
    significant = 3 * sigma * math.sqrt(1 / width + 1 / 3)
    floor = max(significant, cfg.overfit_rise * abs(around)) if sign > 0 else significant
    if sign > 0:
        # On n validation examples a few confident predictions flipping move the mean loss by
        # about its level / sqrt(n): a rise within overfit_sd_ratio of that is the set's size,
        # however steady the curve.
        floor = max(floor, ctx.val_loss_scatter(around))
    # Sustained: at least two thirds of the tail's epochs above the minimum by a noise SD (a
    # swinging val_loss dips back now and then while its level keeps rising).
    if rise < floor or float(np.mean(tail > around + sigma)) < 2 / 3:
        return None
    tx, tv = train[0], sign * train[1]
    mask = tx >= x[best]
    if mask.sum() < 2:
        return None
    train_noise = estimate_noise(tv)
    if slope_z(tx[mask].astype(float), tv[mask], train_noise) > 0:
        return None
    # ... and it must end no worse than at the val_loss minimum: a val_loss that rose because the
    # training loss rose with it (a jump that the optimiser never undid) is the optimisation
    # getting worse, not the model memorising its training set.
    train_at_best = float(tv[mask][0])
    if float(np.mean(tv[-width:])) > train_at_best + 2 * train_noise:
        return None
    common, iv, it = np.intersect1d(x, tx, return_indices=True)
    gap = v[iv] - tv[it]
    at_best = np.searchsorted(common, x[best])
    gap_growth = float(gap[-1] - gap[min(at_best, gap.size - 1)])
    best_epoch = int(x[best])
    raw, raw_train = series[1], train[1]
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
        "epochs_since_best": int(x[-1]) - best_epoch,
    }
    verb = "rose" if sign > 0 else "fell"
    message = (
        f"{name} {verb} from {fmt(float(raw[best]))} at epoch {best_epoch} to {fmt(float(raw[-1]))} "
        f"while {train_name} kept improving ({fmt(float(raw_train[0]))} -> {fmt(float(raw_train[-1]))}); "
        f"best epoch {best_epoch}, {int(x[-1]) - best_epoch} epochs ago"
    )
    groups: tuple[Group, ...] = (MEMORISING,)
    later = _accuracy_gain_after(ctx, best_epoch) if name == "val_loss" else None
    if later is not None:
        at_best, peak, peak_epoch = later
        evidence.update(
            val_accuracy_at_best=at_best, val_accuracy_peak=peak, val_accuracy_peak_epoch=peak_epoch
        )
        message += (
            f"; but val_accuracy still rose after it, from {fmt(at_best)} to {fmt(peak)} at epoch "
            f"{peak_epoch}: the model grows overconfident on what it gets wrong while it gets more right"
        )
        # Not MEMORISING's early stopping on the default monitor (val_loss): the earlier epoch.
        memorising = (MEMORISING[0], tuple(r for r in MEMORISING[1] if "EarlyStopping" not in r))
        groups = (OVERCONFIDENT, memorising)
    return make_finding(Code.OVERFITTING, Severity.WARNING, best_epoch, evidence, message, groups)


def _accuracy_gain_after(ctx: Context, epoch: int) -> tuple[float, float, int] | None:
    """(best val_accuracy up to ``epoch``, its best after, that epoch) when val_accuracy went on to
    improve beyond noise after ``epoch`` (the val_loss minimum): by more than max(2 binomial SDs on
    the validation set, 3 noise SDs of the accuracy curve); else None.

    val_loss is a mean of -log p(true class): a few validation examples predicted wrong with ever
    more confidence raise it while the share predicted right still grows (Guo, Pleiss, Sun and
    Weinberger, ICML 2017, "On Calibration of Modern Neural Networks": NLL overfits before
    accuracy does). Early stopping on val_loss then keeps the less accurate epoch.
    """
    acc = finite_series(ctx.curve, "val_accuracy")
    if acc is None:
        return None
    before, after = acc[0] <= epoch, acc[0] > epoch
    if not before.any() or not after.any():
        return None
    at_best = float(np.max(acc[1][before]))
    j = int(np.argmax(acc[1][after]))
    peak, peak_epoch = float(acc[1][after][j]), int(acc[0][after][j])
    margin = max(2 * ctx.accuracy_sd(peak), 3 * estimate_noise(acc[1]))
    return (at_best, peak, peak_epoch) if peak - at_best > margin else None
