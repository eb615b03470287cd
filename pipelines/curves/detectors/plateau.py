"""``plateau``, a stall versus a convergence: :func:`stall_reasons` (why a flat tail is a stall), the
learning-rate helpers (:func:`last_lr_cut_epoch`, :func:`lr_new_high_within`) and
:func:`detect_plateau`, with the tolerances it shares with underfitting (:func:`_fit_tolerance`,
:func:`practically_flat_since`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipelines.curves.detectors.context import Context, _practical_allowance, _tail, weights_still
from pipelines.curves.findings import (
    CAPACITY,
    INPUTS,
    MEMORISING,
    REGULARISED,
    UNSHUFFLED,
    WEIGHTS_STILL,
    Code,
    Group,
    fmt,
    make_finding,
)
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.plateau import (
    Plateau,
    baseline_margin,
    binomial_sd,
    finite_series,
    plateau_message,
    projected_gain,
    slope_z,
)
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Finding, Severity


def _train_gap(ctx: Context, plateau: Plateau) -> dict[str, float]:
    """Train-minus-validation accuracy over the plateau: its mean, its growth and training's trend z."""
    val_acc = finite_series(ctx.curve, "val_accuracy")
    train_acc = finite_series(ctx.curve, "accuracy")
    if val_acc is None or train_acc is None:
        return {}
    common, iv, it = np.intersect1d(val_acc[0], train_acc[0], return_indices=True)
    mask = common >= plateau.onset_epoch
    if mask.sum() < 2:
        return {}
    gap = train_acc[1][it][mask] - val_acc[1][iv][mask]
    t_sigma = estimate_noise(train_acc[1])
    t_mask = train_acc[0] >= plateau.onset_epoch
    train_z = slope_z(train_acc[0][t_mask].astype(float), train_acc[1][t_mask], t_sigma)
    # Growth from the first third of the plateau to the last third: averages, not single epochs.
    third = max(1, gap.size // 3)
    growth = float(np.mean(gap[-third:]) - np.mean(gap[:third]))
    # Training still climbing over the last third of the plateau, or still far from fitting its
    # training set there: a model at 100% training accuracy has nothing left to memorise, and its
    # flat validation curve is a convergence.
    t_tail = train_acc[0][t_mask].astype(float)
    last = max(3, t_tail.size // 3)
    end_z = slope_z(t_tail[-last:], train_acc[1][t_mask][-last:], t_sigma) if t_tail.size >= 3 else 0.0
    return {
        "train_val_gap": float(np.mean(gap)),
        "train_val_gap_end": float(np.mean(gap[-third:])),
        "gap_growth": growth,
        "train_trend_z": train_z,
        "train_end_trend_z": end_z,
        "train_end_level": float(np.mean(train_acc[1][t_mask][-last:])),
    }


def at_the_top(ctx: Context, level: float, noise: float) -> bool:
    """An accuracy ``level`` within one validation example of 1.0 (``ctx.n_val``: given, or read off
    the accuracy grid), or, with n unknown, within its noise SD (at least 0.001) of 1.0: nothing is
    left to gain on the validation set, so a flat accuracy there is a convergence, never a stall.
    """
    gap = 1.0 - float(level)
    if ctx.n_val:
        return gap <= 1.0 / ctx.n_val + 1e-9  # (n - 1) / n itself, whatever the float rounding
    return gap <= max(float(noise), 1e-3)


def widening_threshold(ctx: Context, plateau: Plateau) -> float:
    """How much the train-validation accuracy gap must grow over ``plateau`` to count as widening:
    max(3 noise SDs, ``gap_widening_sd`` binomial SDs of the plateau's level on the validation set).

    With the set's size unread (fewer than three distinct accuracies), the smallest grid its values
    lie on bounds it from below (:meth:`Context.n_val_at_least`), so the SD from above: an accuracy
    frozen on two values (203 and 204 of 500) has a noise SD near 0, and its gap
    growing by 0.004, under a fifth of one binomial SD, was read as widening."""
    n = ctx.n_val_at_least() if plateau.metric == "val_accuracy" else ctx.n_val
    sd = binomial_sd(plateau.level, n) if n else 0.0
    return max(3 * plateau.noise, ctx.cfg.gap_widening_sd * sd)


def stall_reasons(
    ctx: Context, overfitting: Finding | None, underfitting: Finding | None = None
) -> dict[str, Any]:
    """Why the flat tail of ``ctx.monitor`` is a stall rather than a convergence ({} = converged).

    {} (no reasons) for an accuracy plateau at the top of the scale (:func:`at_the_top`): within one
    validation example of 1.0 there is nothing to stall short of; an overfitting run there is
    reported as overfitting alone.

    1. ``low_level``: less than ``low_level_fraction`` of the way from chance to 1.0 (chance
       unknown: the level itself, :meth:`Context.level_fraction`).
    2. ``below_baseline``: below the baseline by more than :func:`baseline_margin`.
    3. ``premature``: began in the first ``stall_onset_fraction`` of the horizon right after a
       clear climb whose continuation (:func:`projected_gain`) predicts more than ``stall_k`` noise
       SDs above what the plateau gained.
    4. ``memorising``: the run overfits (val_loss rising while training improves); ``underfit``:
       it underfits (:func:`detect_underfitting`): a model that cannot fit its training set stops
       short of what the data allows.
    5. ``gap_widening``: training accuracy keeps rising beyond noise (OLS z >= 3, over the plateau
       and over its last third, or over the plateau while its last third stays at a training error
       of ``underfit_error`` or more) through a plateau of at least a third of the run and 2 x
       ``min_plateau_epochs`` epochs, and the
       train-validation gap grows by more than 3 noise SDs and ``gap_widening_sd`` binomial SDs,
       ending with training above validation by as much:
       the model learns its training set and validation no longer follows.
    6. ``loss_above_uniform``: val_loss over the plateau at or above the prior's entropy while
       accuracy is well above chance: wildly overconfident logits, the mark of unnormalised inputs.
    7. ``weights_still``: the training loss has repeated itself (:func:`weights_still`) over at
       least a third of the run (and :data:`STILL_EPOCHS`): the weights stopped changing, so the
       plateau is where the optimiser was left (a learning rate decayed to about zero), not what
       the model can reach. A schedule that only settles its last epochs stays a convergence,
       and so does a run whose logged rate was cut in steps (:func:`last_lr_cut_epoch`):
       ``ReduceLROnPlateau`` cuts after progress stalls, so the weights stand still because the
       run converged (a real MLP, cut 0.2 x every 2 flat epochs, stood still for 21 of 60).
    """
    plateau = ctx.plateau
    if plateau is None:
        return {}
    cfg = ctx.cfg
    is_accuracy = ctx.higher and "acc" in plateau.metric
    if is_accuracy and at_the_top(ctx, plateau.level, plateau.noise):
        return {}
    if overfitting is None and ctx.still_improving:
        return {}
    reasons: dict[str, Any] = {}
    if overfitting is not None:
        reasons["memorising"] = overfitting.onset_epoch
    if underfitting is not None:
        reasons["underfit"] = underfitting.evidence.get("basis")
    if is_accuracy:
        fraction = ctx.level_fraction(plateau.level)
        if fraction < cfg.low_level_fraction:
            reasons["low_level"] = round(fraction, 4)
        if ctx.prior_entropy is not None:
            tail = _tail(finite_series(ctx.curve, "val_loss"), plateau.onset_epoch)
            if tail.size and float(np.mean(tail)) >= ctx.prior_entropy and fraction >= cfg.low_level_fraction:
                reasons["loss_above_uniform"] = round(float(np.mean(tail)), 4)
    still = weights_still(ctx.curve)
    if (
        still is not None
        and still >= ctx.curve.epochs.size / 3
        and last_lr_cut_epoch(ctx.curve.metrics) is None
    ):
        reasons["weights_still"] = still
    if is_accuracy and ctx.baseline is not None:
        margin = baseline_margin(ctx.baseline, plateau.noise, plateau.flat_epochs + 1, ctx.values, ctx.n_val)
        if plateau.level < ctx.baseline - margin:
            reasons["below_baseline"] = ctx.baseline
    if plateau.onset_epoch <= cfg.stall_onset_fraction * ctx.horizon:
        projected = projected_gain(ctx.g, plateau.onset_index, plateau.flat_epochs)
        # The climb into the plateau must itself be clear of noise (the SD of M3 - M2 is
        # sigma * sqrt(2 / w)), or there is no trajectory to project.
        if projected is not None and projected[1] > 3 * plateau.noise * math.sqrt(2 / projected[2]):
            if projected[0] > cfg.stall_k * plateau.noise:
                reasons["premature"] = round(projected[0], 6)
    if is_accuracy:
        gap = _train_gap(ctx, plateau)
        long_enough = plateau.flat_epochs + 1 >= max(2 * cfg.min_plateau_epochs, ctx.values.size / 3)
        widening = widening_threshold(ctx, plateau)
        # Still learning its training set at the end: climbing over the plateau's last third, or
        # (an early stop or a swinging optimiser can flatten the end) still short of fitting it.
        unsaturated = gap and gap["train_end_level"] <= 1 - cfg.underfit_error
        climbing = gap and gap["train_trend_z"] >= 3 and (gap["train_end_trend_z"] >= 3 or unsaturated)
        # Widening means training ends above validation: a training accuracy climbing up to a
        # validation accuracy it started below (dropout, augmentation) closes a gap instead.
        above = gap and gap["train_val_gap_end"] > widening
        if climbing and long_enough and above and gap["gap_growth"] > widening:
            reasons["gap_widening"] = round(gap["gap_growth"], 4)
    return reasons


#: A logged learning rate at most this share of the epoch before's is a step cut
#: (``ReduceLROnPlateau``'s ``factor`` is 0.1 by default; a step schedule), not a smooth decay.
LR_CUT_RATIO = 0.5


def _logged_rates(history: Mapping[str, Sequence[float]]) -> np.ndarray | None:
    """The logged ``learning_rate`` per epoch as (E,) float64 (None -> NaN); None when not logged."""
    values = history.get("learning_rate")
    if values is None or len(values) == 0:
        return None
    return np.asarray([math.nan if v is None else float(v) for v in values])


def last_lr_cut_epoch(history: Mapping[str, Sequence[float]]) -> int | None:
    """1-based epoch of the last step cut of the logged ``learning_rate``: the first epoch trained
    at a rate at most :data:`LR_CUT_RATIO` x the epoch before's. None without one.

    Keras logs each epoch's rate as used during that epoch (``ReduceLROnPlateau`` writes it into
    the logs before it cuts: https://keras.io/api/callbacks/reduce_lr_on_plateau/), so a cut made
    at the end of epoch e shows on epoch e + 1's row.
    """
    lr = _logged_rates(history)
    if lr is None or lr.size < 2:
        return None
    with np.errstate(invalid="ignore"):
        cut = np.flatnonzero(lr[1:] <= LR_CUT_RATIO * lr[:-1])
    return int(cut[-1]) + 2 if cut.size else None


#: Relative rise of the logged learning rate above its highest earlier value that counts as a new
#: high (:func:`lr_new_high_within`): above float32 round-off of a constant rate.
LR_RISE = 1e-3


def lr_new_high_within(history: Mapping[str, Sequence[float]], epochs: int) -> bool:
    """The logged ``learning_rate`` reached a new high (above every earlier epoch's rate by more
    than :data:`LR_RISE` of it) on any of the last ``epochs`` epochs: a warm-up, or the rising half
    of a one-cycle schedule (Smith & Topin, "Super-Convergence", 2019). A cyclical rate (Smith,
    WACV 2017) or a warm restart (SGDR) that returns to an earlier peak is no new high. False
    without a logged rate, and on a run's first epoch.

    Args:
        history: ``{metric: [value per epoch]}``; reads ``learning_rate`` (per epoch, as Keras
            logs it: the rate used during that epoch; None/NaN skipped).
        epochs: how many of the last epochs to look at (>= 1).
    """
    lr = _logged_rates(history)
    if lr is None or epochs < 1:
        return False
    finite = np.isfinite(lr)
    if finite.sum() < 2:
        return False
    # The highest rate before each epoch (NaN-skipping), against that epoch's rate.
    before = np.maximum.accumulate(np.where(finite, lr, -np.inf))[:-1]
    rose = finite[1:] & (lr[1:] > (1.0 + LR_RISE) * before) & np.isfinite(before)
    return bool(rose[-epochs:].any())


def _stall_groups(ctx: Context, reasons: dict[str, Any], gap: dict[str, float]) -> tuple[Group, ...]:
    """Causes for a stall: memorising or capacity (never both), then inputs where the level says so.

    Memorising: the run overfits or its gap widens (``reasons``), or, short of those, training sits
    clearly above validation (a gap over 5 noise SDs and 0.05, or over 3 noise SDs while training
    still climbs), except when the run underfits (``underfit``: the underfitting finding says
    training accuracy is as low as validation's, and the gap is within what it allows).

    Weights that no longer change (:func:`weights_still`) replace both, unless the run overfits or
    its gap widens: training accuracy that repeats itself memorises nothing, and its trend over a
    frozen curve (noise about 0) means nothing either.
    """
    plateau = ctx.plateau
    assert plateau is not None
    memorising = "memorising" in reasons or "gap_widening" in reasons
    still = not memorising and weights_still(ctx.curve) is not None
    # A stall called underfit (training accuracy no better than validation's) is not read as
    # memorising from a small gap that its own tolerance allowed.
    if not memorising and not still and gap and "underfit" not in reasons:
        memorising = gap["train_val_gap"] > max(5 * plateau.noise, 0.05) or (
            gap["train_trend_z"] > 3 and gap["train_val_gap"] > 3 * plateau.noise
        )
    # Training accuracy clearly below validation's is scored under regularisation or over
    # unshuffled batches (as the underfitting finding says): no reading of capacity from it.
    below = bool(gap) and -gap["train_val_gap"] > _fit_tolerance(ctx, plateau)
    groups: list[Group] = []
    if "loss_above_uniform" in reasons:
        groups.append(INPUTS)
    if below and not memorising and not still:
        groups += [REGULARISED, UNSHUFFLED]
    groups.append(MEMORISING if memorising else WEIGHTS_STILL if still else CAPACITY)
    if (
        "low_level" in reasons or "below_baseline" in reasons or "underfit" in reasons
    ) and INPUTS not in groups:
        groups.append(INPUTS)
    return tuple(groups)


def detect_plateau(
    ctx: Context, overfitting: Finding | None, underfitting: Finding | None = None
) -> Finding | None:
    """A stall: the monitored metric's flat tail, when :func:`stall_reasons` gives a reason other
    than ``premature`` (which only supports another).

    The message says the level, since when, how many epochs the plateau lasted before the end, and
    the train-validation gap when training keeps pulling away.
    """
    plateau = ctx.plateau
    reasons = stall_reasons(ctx, overfitting, underfitting)
    # Prematurity alone is no stall: a sound run on an easy task reaches its ceiling quickly and
    # looks exactly like it (measured on the corpus' tune split). It supports a stall of substance.
    if plateau is None or not set(reasons) - {"premature"}:
        return None
    gap = _train_gap(ctx, plateau) if "acc" in plateau.metric else {}
    evidence: dict[str, Any] = {
        "metric": ctx.monitor,
        "level": plateau.level,
        "spread": plateau.spread,
        "noise": plateau.noise,
        "flat_epochs": ctx.plateau_epochs,
        "trend_z": plateau.trend_z,
        "best_epoch": ctx.best_epoch,
        "stall_reasons": sorted(reasons),
        **{f"stall_{k}": v for k, v in reasons.items()},
        **gap,
    }
    message = (
        plateau_message(plateau, drift=True) + f", {ctx.plateau_epochs} epochs on the plateau {ctx.until}"
    )
    val = finite_series(ctx.curve, "val_accuracy") if plateau.metric == "val_accuracy" else None
    if val is not None and ctx.plateau_epochs <= 2 * ctx.cfg.min_plateau_epochs:
        # A short plateau at the end of a long creep within the noise: say how long it has been stuck.
        since = practically_flat_since(val, plateau.onset_epoch, ctx.cfg, ctx.n_val)
        if since is not None and plateau.onset_epoch - since >= ctx.cfg.min_plateau_epochs + 2:
            evidence["practically_flat_since"] = since
            message += (
                f"; within its noise since epoch {since} ({int(val[0][-1]) - since} epochs: no gain "
                "beyond what the validation set's size can measure)"
            )
    if "gap_widening" in reasons and gap:
        message += f"; the train-validation gap widened by {fmt(gap['gap_growth'])} meanwhile"
    if "below_baseline" in reasons:
        message += f"; below the baseline's {fmt(float(reasons['below_baseline']))}"
    if "weights_still" in reasons:
        message += (
            f"; the training loss has repeated itself for {reasons['weights_still']} epochs: the weights "
            "no longer change"
        )
    return make_finding(
        Code.PLATEAU,
        Severity.WARNING,
        plateau.onset_epoch,
        evidence,
        message,
        _stall_groups(ctx, reasons, gap),
    )


def practically_flat_since(
    series: tuple[np.ndarray, np.ndarray], onset_epoch: int, cfg: DiagnoseConfig, n_examples: int | None
) -> int | None:
    """The earliest epoch from which an accuracy curve has stayed flat for practical purposes
    (:func:`_practically_flat` of every tail from there to ``onset_epoch``), or None when not even
    the tail from ``onset_epoch`` is.

    :func:`find_plateau` dates a plateau from where no significant creep is left; a curve that
    crept by less than its binomial noise for thirty epochs before that has been stuck for longer
    than its plateau says. Every tail at once with suffix extremes and means: O(E).

    Args:
        series: (epochs (E,) int, accuracy (E,) float fractions), finite values only
            (:func:`pipelines.curves.plateau.finite_series`).
        onset_epoch: 1-based epoch the plateau found by :func:`find_plateau` begins.
        cfg: thresholds (``min_plateau_epochs``: the tail from ``onset_epoch`` needs one more value).
        n_examples: validation examples, when known (else read off the accuracy's grid).

    Returns:
        A 1-based epoch <= ``onset_epoch``, or None.
    """
    x, y = series
    tail = np.flatnonzero(x >= onset_epoch)
    if tail.size < cfg.min_plateau_epochs + 1:  # as _practically_flat asks of its tail
        return None
    start = int(tail[0])
    noise, n = estimate_noise(y), n_examples or infer_num_examples(y)
    high = np.maximum.accumulate(y[::-1])[::-1]
    low = np.minimum.accumulate(y[::-1])[::-1]
    mean = np.cumsum(y[::-1])[::-1] / np.arange(y.size, 0, -1)
    since = None
    for i in range(start, -1, -1):  # the tail from index i is y[i:]: its range, its mean
        if high[i] - low[i] > _practical_allowance(float(mean[i]), noise, n):
            break
        since = i
    return None if since is None else int(x[since])


def _fit_tolerance(ctx: Context, plateau: Plateau) -> float:
    """How far training accuracy may sit from validation's plateau and still be "no better" (or
    "no worse"): max(3 noise SDs, 2 binomial SDs on the validation set, 0.05), in accuracy units."""
    return max(3 * plateau.noise, 2 * ctx.accuracy_sd(plateau.level), 0.05)
