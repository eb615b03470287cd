"""``too_slow``: :func:`detect_too_slow`, still improving steadily at the end, the budget ending far
from the asymptote; and :func:`steady_improvement`, which the live callback reads too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipelines.curves.detectors.context import (
    BELOW_PRIOR_SHARE,
    STILL_EPOCHS,
    Context,
    _frozen_span,
    _loss_falls_over,
    _z_crit,
)
from pipelines.curves.detectors.not_learning import _slow_start
from pipelines.curves.findings import LR_LOW, MAJORITY, Code, fmt, make_finding
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.plateau import finite_series, slope_z
from pipelines.curves.types import Finding, Severity


def steady_improvement(x: np.ndarray, g: np.ndarray, sigma: float, z_min: float) -> dict[str, float] | None:
    """Whether an oriented curve (larger is better) still improves steadily at its end.

    Args:
        x: (M,) epochs.
        g: (M,) oriented values.
        sigma: noise SD of ``g``.
        z_min: OLS slope z the last third must reach.

    Returns:
        ``{"slope_last_third", "steadiness" (last third's slope / first third's), "trend_z",
        "late_share" (share of the run's total improvement made in its last third)}`` when
        the last third improves with z >= ``z_min``, else None (also for fewer than 9 values).
    """
    size = g.size
    if size < 9:
        return None
    third = size // 3
    z_last = slope_z(x[-third:].astype(float), g[-third:], sigma)
    if z_last < z_min:
        return None
    slope_first = float(np.polyfit(x[:third].astype(float), g[:third], 1)[0])
    slope_last = float(np.polyfit(x[-third:].astype(float), g[-third:], 1)[0])
    steadiness = slope_last / slope_first if slope_first > 0 else math.inf
    # Share of the whole run's improvement made in its last third (3-epoch means at the ends).
    k = min(3, third)
    total = float(np.mean(g[-k:]) - np.mean(g[:k]))
    late = float(np.mean(g[-k:]) - np.mean(g[-third - k // 2 : -third + k - k // 2]))
    late_share = late / total if total > 0 else 0.0
    return {
        "slope_last_third": slope_last,
        "steadiness": steadiness,
        "trend_z": z_last,
        "late_share": late_share,
    }


#: Runs of this many validated epochs (inclusive) are too short for the thirds of
#: :func:`steady_improvement` (9 values or more): :func:`detect_too_slow` judges them by halves.
SHORT_RUN_EPOCHS = (5, 8)


def _learning_the_task(ctx: Context, last_loss: float) -> bool:
    """A val_loss ending at ``last_loss`` is learning the task, not the class prior: it sits below
    95% of the prior's entropy (or the prior is unknown), or the accuracy is already clearly beyond
    chance (a bad start climbing out)."""
    if ctx.prior_entropy is None or last_loss < BELOW_PRIOR_SHARE * ctx.prior_entropy:
        return True
    acc = finite_series(ctx.curve, "val_accuracy")
    if acc is None or ctx.chance is None:
        return False
    return float(np.mean(acc[1][-3:])) > ctx.limit_at_chance()


def _too_slow_short(ctx: Context, val_loss: tuple[np.ndarray, np.ndarray]) -> Finding | None:
    """``too_slow`` for a finished run of 5 to 8 epochs: its val_loss still falls steadily at the end.

    The same test as for longer runs at a coarser resolution: halves instead of thirds. The run
    ran its budget (when known; never while live); val_loss's last half falls at no less than half
    the first half's pace (OLS slopes: no deceleration), on at least ``slow_down_share`` of its
    steps, by at least ``slow_short_fall`` of its level, and not towards the prior's entropy;
    val_accuracy does not fall over the last half. A sound short run makes
    most of its gain in its first epochs and then slows (digits at 0.82, 0.88, 0.91, 0.92, 0.93);
    one whose loss still falls as fast as at its start ended far from its ceiling.
    """
    x, y = val_loss[0].astype(float), val_loss[1]
    budget = ctx.curve.epoch_budget
    if ctx.live or not ctx.curve.complete or (budget is not None and int(ctx.curve.epochs[-1]) < budget):
        return None
    half = (y.size + 1) // 2
    fall_first = -float(np.polyfit(x[:half], y[:half], 1)[0])
    fall_last = -float(np.polyfit(x[-half:], y[-half:], 1)[0])
    steps = np.diff(y[-half:])
    level = abs(float(y[-1]))
    fallen = float(y[-half] - y[-1])
    if (
        fall_first <= 0
        or fall_last < 0.5 * fall_first
        or float(np.mean(steps < 0)) < ctx.cfg.slow_down_share
        or fallen < ctx.cfg.slow_short_fall * level
        or not _learning_the_task(ctx, float(y[-1]))
    ):
        return None
    acc = finite_series(ctx.curve, "val_accuracy")
    if acc is not None and acc[1].size >= half:
        if float(np.polyfit(acc[0][-half:].astype(float), acc[1][-half:], 1)[0]) < -1e-6:  # float round-off
            return None
    evidence: dict[str, Any] = {
        "metric": "val_loss",
        "slope_last_half": -fall_last,
        "slope_first_half": -fall_first,
        "steadiness": fall_last / fall_first,
        "fall_last_half": fallen,
        "epochs": int(ctx.curve.epochs[-1]),
    }
    message = (
        f"val_loss still falling steadily when the run ended at epoch {int(ctx.curve.epochs[-1])} "
        f"({fmt(-fall_last)} per epoch over its last {half} epochs, "
        f"{fall_last / fall_first:.2f} x its pace over the first {half}: no deceleration): at this pace "
        "the run ends far from its ceiling"
    )
    return make_finding(Code.TOO_SLOW, Severity.WARNING, None, evidence, message, (LR_LOW,))


PERFECT_ERROR_BOUND = 0.01
"""Largest error a perfect validation score may still hide (95% upper bound) for the run to count as
at its ceiling: 1 point, the smallest drop the regression gate is asked to detect."""


def _perfect_at_end(ctx: Context) -> bool:
    """Every validation example right on each of the last 3 epochs, on a validation set large enough
    that this bounds the true error below :data:`PERFECT_ERROR_BOUND`: by the rule of three, no
    error in n examples puts the 95% upper bound of the error rate at 3 / n (Hanley and
    Lippman-Hand, JAMA 1983), so n >= 300 (given, or read off the val_accuracy grid).

    Such a run has no accuracy left to gain; a val_loss still falling only sharpens its confidence
    (found on a real LSTM run at 1.000 on 1,000 examples whose val_loss fell from 0.004 to 0.0003,
    reported as too slow and "far from its ceiling"). A perfect score on 18 examples proves far
    less: its error may still be 17%.
    """
    val_acc = finite_series(ctx.curve, "val_accuracy")
    if val_acc is None or val_acc[1].size < 3 or not ctx.n_val:
        return False
    return float(np.min(val_acc[1][-3:])) >= 1.0 - 1e-9 and 3.0 / ctx.n_val <= PERFECT_ERROR_BOUND


#: Share of its level val_loss must lose over a frozen-prediction span for
#: :func:`_frozen_while_loss_falls` (a tenth: a loss that only settles is a converged output).
FROZEN_SLOW_FALL = 0.1


def _too_slow_start(ctx: Context) -> Finding | None:
    """``too_slow`` for a run that :func:`_slow_start` finds leaving its starting point slowly."""
    start = _slow_start(ctx)
    if start is None:
        return None
    name = start["metric"]
    level = fmt(float(ctx.values[-1]))
    return make_finding(
        Code.TOO_SLOW,
        Severity.WARNING,
        None,
        {**start, "slow_start": True},
        f"still leaving its starting point: {name} lower on {start['down_share']:.0%} of the last "
        f"half's epochs ({fmt(start['loss_first'])} -> {fmt(start['loss_last'])}), faster and faster, "
        f"and training accuracy up from {fmt(start['train_first'])} to {fmt(start['train_last'])}, "
        f"while {ctx.monitor} is still {level}: the model learns, too slowly to show yet",
        (LR_LOW,),
    )


def _frozen_while_loss_falls(ctx: Context) -> Finding | None:
    """Predictions frozen while the loss still learns: too slow to change any prediction.

    Over the trailing span where the training accuracy repeats one value exactly (within half a step
    of its grid: on n_train >= 1,000 examples, read off it) and val_accuracy stays within half a
    step of one value, at least max(``STILL_EPOCHS``, a third of the run) epochs, both below 0.99
    (a training set fitted to 1.000 has no wrong prediction left to change; small sets freeze on
    their grid while a sound model converges: fitted on the tune split, where n_train >= 100 and
    no training bound called 7 healthy runs too slow): val_loss
    lower on at least 90% of the span's epochs and by at least :data:`FROZEN_SLOW_FALL` of its
    level. Not one prediction changes class while the loss keeps falling: the network is still
    learning, too slowly to move any prediction across the decision boundary. Found on two real
    imbalanced runs with SGD (majority shares 0.90 and 0.98): both accuracies frozen at the
    majority share for 24-47 epochs while val_loss fell by a fifth to a half, reported as a
    healthy convergence; with Adam the same tasks went on to 0.91 and 0.983.
    """
    train, val = finite_series(ctx.curve, "accuracy"), finite_series(ctx.curve, "val_accuracy")
    if train is None or val is None:
        return None
    n_train = infer_num_examples(train[1])
    if not n_train or n_train < 1000 or not ctx.n_val:
        return None
    span = min(_frozen_span(train[1], 0.5 / n_train), _frozen_span(val[1], 0.5 / ctx.n_val))
    level = float(val[1][-1])
    if span < max(STILL_EPOCHS, val[1].size // 3) or max(level, float(train[1][-1])) >= 0.99:
        return None
    since = int(val[0][-span])
    falls = _loss_falls_over(ctx, since, min_share=0.9, min_fall=FROZEN_SLOW_FALL, min_values=STILL_EPOCHS)
    if falls is None:
        return None
    start, end, share = falls
    evidence = {
        "metric": "val_loss",
        "frozen_val_accuracy": level,
        "frozen_accuracy": float(train[1][-1]),
        "frozen_epochs": span,
        "since_epoch": since,
        "val_loss_down_share": share,
        "val_loss_start": start,
        "val_loss_end": end,
    }
    return make_finding(
        Code.TOO_SLOW,
        Severity.WARNING,
        since,
        evidence,
        f"val_accuracy frozen at {fmt(level)} and training accuracy at {fmt(float(train[1][-1]))} for "
        f"{span} epochs since epoch {since}, while val_loss fell from {fmt(start)} to "
        f"{fmt(end)} (lower on {share:.0%} of the epochs): the network still learns, too "
        "slowly to change any prediction (on an imbalanced task the frozen level is the majority share)",
        (LR_LOW, MAJORITY),
    )


def detect_too_slow(ctx: Context) -> Finding | None:
    """Still improving steadily at the end: the budget ends far from the asymptote.

    The monitored metric's last third must improve with OLS z >= max(3, z_(1-alpha)) and its
    slope be at least half the first third's or its last third make at least ``slow_late_share``
    of the run's gain; val_loss must confirm it (falling in ``slow_down_share`` of the second
    half's epochs, by ``live_loss_fall`` of its level, below :data:`BELOW_PRIOR_SHARE` (95%) of
    the prior's entropy unless val_accuracy is already beyond :func:`chance_limit`), an accuracy's
    last-third gain must exceed two binomial SDs, and, with an extrapolation, the fitted curve
    must also plateau only after twice the horizon. When validation accuracy is coarse (a small
    validation set moves it in steps of 1/n) the validation loss is judged the same way: a
    val_loss that falls steadily all run is a learning rate too low even while accuracy barely
    moves. A finished run of 5 to 8 epochs (:data:`SHORT_RUN_EPOCHS`), too short for thirds, is
    judged by halves instead (:func:`_too_slow_short`). A run that :func:`_perfect_at_end` finds at
    its ceiling is never too slow.
    """
    z_min = max(3.0, _z_crit(ctx.cfg))
    val_loss = finite_series(ctx.curve, "val_loss")
    if _perfect_at_end(ctx):
        return None

    def steady(f: dict[str, float] | None) -> bool:
        return f is not None and (f["steadiness"] >= 0.5 or f["late_share"] >= ctx.cfg.slow_late_share)

    def loss_confirms() -> tuple[bool, float | None]:
        if val_loss is None or val_loss[1].size < 9:
            return True, None
        # The loss must still be falling too, most of the time: the share of the second half's
        # epochs that lower val_loss is at least ``slow_down_share`` (a sign test; under no trend
        # 70% of 15 steps down has p ~ 0.06). An accuracy creeping up while the loss wanders is a
        # convergence on a noisy curve, not a learning rate too low. And by an amount that
        # matters: at least ``live_loss_fall`` of its level over the run, ending below the prior's
        # entropy (a loss falling towards the prior's entropy is a network learning the class
        # prior, not the task) unless val_accuracy is already beyond :func:`chance_limit`.
        half = val_loss[1][val_loss[1].size // 2 :]
        share = float(np.mean(np.diff(half) < 0))
        first, last = float(np.mean(val_loss[1][:3])), float(np.mean(val_loss[1][-3:]))
        ok = share >= ctx.cfg.slow_down_share and first - last >= ctx.cfg.live_loss_fall * abs(first)
        return ok and _learning_the_task(ctx, last), share

    if val_loss is not None and SHORT_RUN_EPOCHS[0] <= val_loss[1].size <= SHORT_RUN_EPOCHS[1]:
        return _too_slow_short(ctx, val_loss)
    confirmed, down_share = loss_confirms()
    found: dict[str, float] | None = None
    metric, sign = ctx.monitor, 1.0 if ctx.higher else -1.0
    monitor_found = steady_improvement(ctx.x, ctx.g, ctx.sigma, z_min)
    if steady(monitor_found) and confirmed:
        found = monitor_found
        if ctx.monitor == "val_accuracy" and ctx.n_val:
            # The accuracy's own gain over the last third must exceed two binomial SDs of the set.
            # Under 12 epochs the third's first 3 epochs are its last 3: no gain to measure.
            third = max(3, ctx.g.size // 3)
            gain = float(np.mean(ctx.g[-3:]) - np.mean(ctx.g[-third : -third + 3])) if third > 3 else None
            if gain is not None and gain < 2 * ctx.accuracy_sd(float(ctx.values[-1])):
                found = None
    if found is None and ctx.monitor == "val_accuracy" and val_loss is not None and confirmed:
        gl = -val_loss[1]
        alt = steady_improvement(val_loss[0], gl, estimate_noise(gl), z_min)
        if steady(alt):
            found, metric, sign = alt, "val_loss", -1.0
    if found is None:
        return _frozen_while_loss_falls(ctx) or _too_slow_start(ctx)
    slow = True
    evidence: dict[str, Any] = {
        "val_loss_down_share": down_share,
        "metric": metric,
        "slope_last_third": found["slope_last_third"] * sign,
        "steadiness": found["steadiness"],
        "trend_z": found["trend_z"],
    }
    forecast = ctx.extrapolation
    if forecast is not None and metric == ctx.monitor and math.isfinite(forecast.asymptote):
        evidence.update(
            asymptote=forecast.asymptote,
            value_at_budget=forecast.value_at_budget,
            plateau_epoch=forecast.plateau_epoch,
        )
        # The forecast can only confirm a steady climb, not make one: its plateau epoch is measured
        # against the curve's noise, and a calm curve's asymptote is approached for ever.
        slow = slow and (forecast.plateau_epoch is None or forecast.plateau_epoch > 2 * ctx.horizon)
    if not slow:
        return None
    if math.isinf(found["steadiness"]):  # the first third gained nothing: an accelerating start
        pace = "after a first third without gain: no deceleration"
    elif found["steadiness"] >= 0.5:
        pace = f"{found['steadiness']:.2f} x its pace over the first third: no deceleration"
    else:  # kept by the gain its last third still made (slow_late_share)
        pace = f"its last third still made {found['late_share']:.0%} of the run's gain"
    evidence["late_share"] = found["late_share"]
    message = (
        f"{metric} still improving steadily at the end ({fmt(found['slope_last_third'] * sign)} per epoch, "
        f"{pace}): at this pace the run ends far from its ceiling"
    )
    if forecast is not None and metric == ctx.monitor and math.isfinite(forecast.asymptote):
        when = forecast.plateau_epoch
        message += f" (extrapolated {fmt(forecast.asymptote)}" + (
            f", reached around epoch {when})" if when is not None else ")"
        )
    return make_finding(Code.TOO_SLOW, Severity.WARNING, None, evidence, message, (LR_LOW,))
