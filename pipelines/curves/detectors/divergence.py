"""``divergence``: :func:`detect_divergence`, a NaN/inf loss, a loss that blew up and stayed up, or a
blow-up then death, with the helpers only it uses.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipelines.curves.detectors.context import (
    BLIND_LOSS_FACTOR,
    MAX_INFERRED_CLASSES,
    MIN_JUDGE_EPOCHS,
    MIN_SWING_EPOCHS,
    _frozen_span,
    chance_limit,
    chance_of,
    loss_unmoved,
    val_examples,
    weights_still,
)
from pipelines.curves.findings import EXPLODING, INPUTS, LR_HIGH, UNDEFINED_LOSS, Code, fmt, make_finding
from pipelines.curves.noise import estimate_noise
from pipelines.curves.plateau import finite_series
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Curve, Finding, Severity


def _weights_survived_nan(curve: Curve, first_bad: int) -> tuple[int, str] | None:
    """Whether a training loss first NaN/inf at epoch ``first_bad`` left the weights finite, and the
    evidence: (epochs with a non-finite loss, what shows the weights finite), else None.

    NaN weights give NaN outputs, so every later loss and val_loss is NaN. A val_loss that is
    finite on that same epoch (scored with the epoch's final weights), or a training loss finite
    again on a later one, shows the weights came through: the NaN is in the loss of some examples
    (0 / 0 from an all-zero relu output read as probabilities, log(0), a float16 overflow whose
    step the loss-scale optimizer skipped). A real MLP with a Dense(10, relu) output logged a NaN
    loss on 22 of 30 epochs while val_accuracy reached 0.79.
    """
    epochs = np.asarray(curve.epochs)
    loss = np.asarray(curve.get("loss"), dtype=np.float64)
    bad = int((~np.isfinite(loss)).sum())
    val_loss = curve.get("val_loss")
    at_first = np.flatnonzero(epochs == first_bad)
    if val_loss is not None and at_first.size:
        value = float(np.asarray(val_loss, dtype=np.float64)[at_first[0]])
        if math.isfinite(value):
            return bad, f"val_loss was {fmt(value)} on that epoch"
    later = np.flatnonzero((epochs > first_bad) & np.isfinite(loss))
    if later.size:
        epoch, value = int(epochs[later[0]]), float(loss[later[0]])
        return bad, f"the loss was finite again at epoch {epoch} ({fmt(value)})"
    return None


def detect_divergence(curve: Curve, cfg: DiagnoseConfig) -> Finding | None:
    """Training diverged: a NaN/inf loss, a loss that blew up and stayed up, or a blow-up then death.

    1. NaN/inf training loss (or inf val_loss): the first such epoch is the onset, unless the finite
       loss before it had already risen past ``blowup_factor`` x its minimum: then the epoch it did.
       When the weights evidently stayed finite (:func:`_weights_survived_nan`: val_loss finite on
       the first NaN epoch of the training loss, or the training loss finite again later), the
       finding says so, and that the loss is undefined on some examples (an output layer that is
       not a probability, log(0), a float16 overflow), not that training diverged.
    2. Blow-up: the last training loss exceeds max(``blowup_factor`` x its minimum, minimum + 10
       noise SDs, minimum + :data:`BLOWUP_UNDONE_SHARE` of the fall to it from the highest loss
       before it), or the prior's entropy after having been below half of it (unless that is within
       10 noise SDs of the minimum: a loss that swings so far by itself); onset: the first epoch after the
       minimum from which the loss stays above that. The noise is the whole loss curve's, or, for a
       loss that rose past ``blowup_factor`` x its minimum after it and stayed above, the loss's
       before that rise: not the explosion's own jumps. Not while the training accuracy has climbed
       beyond noise since the loss's minimum (:func:`_training_accuracy_rose`): the model still
       learns, ever more confident on what it gets wrong.
    3. Blow-up then death: a training loss above 10 x the prior's entropy at some epoch (a first
       epoch above 100 x the final loss, or a peak above 10 x ln(``MAX_INFERRED_CLASSES``), when
       the classes are unknown), and the run ending at chance (with no chance level: the loss
       fixed within 10% over at least 2 epochs after the peak, or weights that no longer change
       at the end, :func:`weights_still`, with the accuracy more than max(0.1, a quarter of its
       best) below its best): the weights were thrown so far
       that every unit died, and the network now predicts the prior. Whatever the accuracy, a
       peak above 10 x rule 4's bound (the prior's entropy; ln(``MAX_INFERRED_CLASSES``) with no
       class count) whose loss still ends above rule 4's threshold (10 x the prior's entropy;
       ``BLIND_LOSS_FACTOR`` x ln(``MAX_INFERRED_CLASSES``)) has not recovered, from epoch 2 on.

    3b. Without a chance level, a collapse: the training loss rose to 10 x its minimum after it, and
       val_accuracy ends frozen (within 2.5 grid steps) for max(3, a fifth of the run) epochs more
       than max(0.1, a quarter of it) below its best.
    4. A validation loss that never comes below 10 x the prior's entropy (at least 2 epochs: one
       epoch above it may be a spike; two in a row, from the first, are a run that never recovered);
       with no class count, ``BLIND_LOSS_FACTOR`` (2) x ln(``MAX_INFERRED_CLASSES``): twice the
       entropy of any prior over up to a thousand classes, all run (the informed bound for four
       classes, 10 x ln 4, is as high).

    A single val_loss spike that recovers is none of these: every rule reads the training loss,
    the run's end, or the validation loss's minimum. Nor is a finite training loss that has repeated
    itself since the first epoch (:func:`weights_still` over every epoch): it never moved, so nothing
    blew up (the weights got no gradient from the first step).

    Does not need the Context (a run whose validation metrics are all NaN still diverged).
    """
    epochs = np.asarray(curve.epochs)
    loss = curve.get("loss")
    val_loss = curve.get("val_loss")
    # Training loss is logged every epoch, so a NaN there is the optimiser's; a NaN val_loss next to
    # a finite loss is more likely a skipped validation (validation_freq) and counts as missing.
    bad_epochs: list[tuple[int, str]] = []
    if loss is not None:
        idx = np.flatnonzero(~np.isfinite(np.asarray(loss, dtype=np.float64)))
        if idx.size:
            bad_epochs.append((int(epochs[idx[0]]), "loss"))
    if val_loss is not None:
        idx = np.flatnonzero(np.isinf(np.asarray(val_loss, dtype=np.float64)))
        if idx.size:
            bad_epochs.append((int(epochs[idx[0]]), "val_loss"))
    if bad_epochs:
        first_bad, name = min(bad_epochs)
        evidence: dict[str, Any] = {"metric": name, "first_non_finite_epoch": first_bad}
        message = f"{name} became NaN/inf at epoch {first_bad}: training diverged"
        onset = first_bad
        survived = _weights_survived_nan(curve, first_bad) if name == "loss" else None
        if survived is not None:
            evidence.update(non_finite_epochs=survived[0], finite_after=survived[1])
            message = (
                f"loss NaN/inf on {survived[0]} of {epochs.size} epochs from epoch {first_bad}, yet "
                f"{survived[1]}: the weights stayed finite; the loss is undefined on some examples"
            )
            return make_finding(
                Code.DIVERGENCE, Severity.CRITICAL, onset, evidence, message, (UNDEFINED_LOSS, LR_HIGH)
            )
        before = finite_series(curve, "loss")
        if before is not None:
            keep = before[0] < first_bad
            bx, by = before[0][keep], before[1][keep]
            # Past blowup_factor x its lowest value so far: the finite loss had blown up already,
            # and that is where the divergence began.
            jumped = by > cfg.blowup_factor * np.maximum(np.minimum.accumulate(by), 1e-12)
            if jumped.any():
                first = int(np.argmax(jumped))
                low, peak = int(np.argmin(by[: first + 1])), first + int(np.argmax(by[first:]))
                onset = int(bx[first])
                evidence.update(loss_min=float(by[low]), loss_peak=float(by[peak]), blow_up_epoch=onset)
                message = (
                    f"loss blew up from {fmt(float(by[low]))} (epoch {int(bx[low])}) to "
                    f"{fmt(float(by[peak]))} (epoch {int(bx[peak])}), past {cfg.blowup_factor:g} x its "
                    f"minimum from epoch {onset}, and {name} became NaN/inf at epoch {first_bad}: "
                    "training diverged"
                )
        return make_finding(
            Code.DIVERGENCE, Severity.CRITICAL, onset, evidence, message, (LR_HIGH, EXPLODING)
        )
    series = finite_series(curve, "loss")
    if series is None or series[1].size < 2:
        return None
    x, y = series
    if loss_unmoved(curve):
        # A training loss that has repeated itself since the first epoch never blew up: it started
        # where it ends, with no gradient from the first step (a softmax over one unit outputs 1.0
        # whatever its weights). A blow-up within epoch 1 shows: that epoch's mean holds the steps
        # before it (real dead networks after a rate too high: 1.8e-3 to 8e-3 below the rest).
        return None
    chance, chance_source, entropy = chance_of(curve)
    n_val = val_examples(curve)
    val_acc = finite_series(curve, "val_accuracy")
    # Rule 3: blow-up then death.
    if y.size >= 2:
        peak = int(np.argmax(y))
        acc = val_acc or finite_series(curve, "accuracy")
        if entropy is not None:
            exploded = float(y[peak]) > 10 * entropy
        else:  # the first loss 100 x the last, or a peak above 10 x any prior's entropy (rule 4)
            exploded = float(y[0]) > 100 * max(float(y[-1]), 1e-6) or (
                acc is not None and float(y[peak]) > 10 * math.log(MAX_INFERRED_CLASSES)
            )
        if chance is not None and acc is not None:
            ends_at_chance = float(acc[1][-1]) <= chance_limit(
                chance, n_val, prior_known=chance_source == "class_prior"
            )
        else:
            # Without a chance level: a loss fixed at one value over the epochs after the blow-up (at
            # least two: one value alone is fixed at nothing), a dead network.
            rest = y[peak + 1 :]
            ends_at_chance = rest.size >= 2 and bool(np.all(np.abs(rest - y[-1]) <= 0.1 * abs(y[-1]) + 1e-9))
            # Or dead later on: the weights no longer change (:func:`weights_still`) while the
            # accuracy sits far below its best (a 100-class network at Adam 3.0: loss 809, then
            # 5-6.5 for 15 epochs, then fixed at 5.048 with val_accuracy 0.021 from 0.421).
            if not ends_at_chance and acc is not None and weights_still(curve) is not None:
                best_acc, last_acc = float(np.max(acc[1])), float(acc[1][-1])
                ends_at_chance = best_acc - last_acc > max(0.1, 0.25 * best_acc)
        if exploded and ends_at_chance and peak < y.size - 1:
            # Onset: the first epoch of the blow-up (above 10 x the prior's entropy), not its peak.
            first = int(np.flatnonzero(y > 10 * entropy)[0]) if entropy is not None else peak
            return make_finding(
                Code.DIVERGENCE,
                Severity.CRITICAL,
                int(x[first]),
                {
                    "loss_peak": float(y[peak]),
                    "loss_last": float(y[-1]),
                    "prior_entropy": entropy,
                    "died": True,
                },
                f"loss exploded to {fmt(float(y[peak]))} at epoch {int(x[peak])} and the network died: it "
                f"ends at chance with loss {fmt(float(y[-1]))}"
                + (f" (the prior's entropy {fmt(entropy)})" if entropy is not None else ""),
                (LR_HIGH, EXPLODING),
            )
    # Rule 3b, without a chance level: a collapse. The run learned, its training loss then blew up
    # to 10x its minimum, and its validation accuracy now sits frozen on one value far below its
    # best (a network predicting one class): dead, whatever the task's chance level is.
    if chance is None and val_acc is not None and val_acc[1].size >= MIN_SWING_EPOCHS:
        low = int(np.argmin(y))
        # Frozen up to an example or two flickering (2.5 grid steps; 0.005 when n is unknown).
        span = _frozen_span(val_acc[1], 2.5 / n_val if n_val else 0.005)
        best_acc, last_acc = float(np.max(val_acc[1])), float(val_acc[1][-1])
        if (
            float(np.max(y[low:])) > 10 * max(float(y[low]), 1e-12)
            and span >= max(MIN_JUDGE_EPOCHS, val_acc[1].size // 5)
            and best_acc - last_acc > max(0.1, 0.25 * best_acc)
        ):
            onset = int(val_acc[0][-span])
            return make_finding(
                Code.DIVERGENCE,
                Severity.CRITICAL,
                onset,
                {
                    "loss_min": float(y[low]),
                    "loss_max_after": float(np.max(y[low:])),
                    "val_accuracy_best": best_acc,
                    "val_accuracy_last": last_acc,
                    "frozen_epochs": span,
                },
                f"the run collapsed: loss rose from its minimum {fmt(float(y[low]))} to "
                f"{fmt(float(np.max(y[low:])))} and val_accuracy fell from {fmt(best_acc)} to "
                f"{fmt(last_acc)}, frozen there since epoch {onset} (the network predicts one class)",
                (LR_HIGH, EXPLODING),
            )
    # Rule 4: a validation loss that never came below 10 x the prior's entropy: predictions so
    # overconfident and wrong that the run never recovered from its blow-up. With no class count,
    # twice the largest entropy any prior over up to MAX_INFERRED_CLASSES classes has (ln 1000).
    vl = finite_series(curve, "val_loss")
    # (The bound assumes a cross-entropy: a log with an accuracy metric is a classifier's; a
    # regression's squared error in the thousands is no blow-up.)
    bound = entropy if entropy is not None else math.log(MAX_INFERRED_CLASSES)
    factor = 10.0 if entropy is not None else BLIND_LOSS_FACTOR
    classifier = entropy is not None or val_acc is not None
    if classifier and vl is not None and vl[1].size >= 2 and float(np.min(vl[1])) > factor * bound:
        against = (
            f"the prior's entropy ({fmt(entropy)})"
            if entropy is not None
            else f"ln {MAX_INFERRED_CLASSES} ({fmt(bound)}), the entropy of any prior over up to "
            f"{MAX_INFERRED_CLASSES:,} classes"
        )
        return make_finding(
            Code.DIVERGENCE,
            Severity.CRITICAL,
            int(vl[0][0]),
            {"val_loss_min": float(np.min(vl[1])), "prior_entropy": entropy, "entropy_bound": bound},
            f"val_loss never came below {fmt(float(np.min(vl[1])))}, over {factor:g} x {against}: the "
            "predictions are wildly overconfident and wrong (blown-up weights or unscaled inputs)",
            (LR_HIGH, EXPLODING, INPUTS),
        )
    # Also, however short the run and wherever its accuracy is: a training loss that exploded past
    # ten times rule 4's bound and still ends above rule 4's threshold (factor x bound: 10 x the
    # prior's entropy, or twice ln of the most classes inferred) has not recovered; no classifier's
    # cross-entropy sits there once it has. (The series holds at least 2 values.)
    peak = int(np.argmax(y))
    if classifier and peak < y.size - 1 and float(y[peak]) > 10 * bound and float(y[-1]) > factor * bound:
        return make_finding(
            Code.DIVERGENCE,
            Severity.CRITICAL,
            int(x[peak]),
            {"loss_peak": float(y[peak]), "loss_last": float(y[-1]), "prior_entropy": entropy, "died": False},
            f"loss exploded to {fmt(float(y[peak]))} at epoch {int(x[peak])} and is still "
            f"{fmt(float(y[-1]))} at epoch {int(x[-1])}, over {factor:g} x "
            + (f"the prior's entropy {fmt(entropy)}" if entropy is not None else f"ln {MAX_INFERRED_CLASSES}")
            + f" ({fmt(factor * bound)}): it has not recovered",
            (LR_HIGH, EXPLODING),
        )
    if y.size < 3:
        return None
    best = int(np.argmin(y))
    floor = float(y[best])
    if _lr_raised_after(curve, int(x[best])):
        # A warm restart (SGDR) or a cyclical rate raised the learning rate after the loss's
        # minimum: the loss rises with it by design, and falls again as the rate decays.
        return None
    # A loss that rose past blowup_factor x its minimum and stayed there: the noise is the loss's
    # before that, since an explosion's own jumps, measured as noise, would raise the threshold as
    # fast as the loss (a real run at SGD 0.3, momentum 0.9 went 1.26 -> 10.8 -> 85.9 -> 920 and
    # was called healthy at epoch 4). A loss that swings back below it is judged on all its swings.
    up = y[best:] > cfg.blowup_factor * floor
    rose = best + int(np.argmax(up)) if up.any() else None
    sustained = rose is not None and bool(np.all(y[rose:] > cfg.blowup_factor * floor))
    sigma = estimate_noise(y[:rose] if sustained else y)
    factor = cfg.blowup_factor
    unlearned = _training_accuracy_fell(curve)
    if unlearned is not None:
        factor = UNLEARN_LOSS_FACTOR
    # A blow-up undoes some of what the model learned: from a floor near zero, three times the
    # floor is still no visible rise (a real CNN at Adam, memorising 1,000 images: 0.017 -> 0.053,
    # after a fall from 0.526, training accuracy 0.998 -> 0.976).
    fallen = float(np.max(y[: best + 1])) - floor
    threshold = max(factor * floor, floor + 10 * sigma, floor + BLOWUP_UNDONE_SHARE * fallen)
    if entropy is not None and floor < 0.5 * entropy:
        # Above the loss of predicting the prior after having been well below it: worse than
        # knowing nothing. Unless the loss swings that far by itself: a rise within 10 of its own
        # noise SDs is a swing, whatever level it crosses.
        threshold = min(threshold, max(entropy, floor + 10 * sigma))
    above = y > threshold
    if best == y.size - 1 or not above[-1]:
        return None
    if _training_accuracy_rose(curve, int(x[best])) is not None:
        # The model still gets more of its training set right: the loss rising meanwhile is
        # confidence on the examples it gets wrong (a rate too high swings it), not an optimiser
        # undoing what the model learned.
        return None
    below_after = np.flatnonzero(~above[best:]) + best
    start = int(below_after[-1]) + 1
    onset = int(x[start])
    return make_finding(
        Code.DIVERGENCE,
        Severity.CRITICAL,
        onset,
        {
            "loss_min": floor,
            "loss_min_epoch": int(x[best]),
            "loss_last": float(y[-1]),
            "threshold": threshold,
            "noise": sigma,
        },
        f"loss blew up from its minimum {fmt(floor)} (epoch {int(x[best])}) to {fmt(float(y[-1]))}; "
        f"above {fmt(threshold)} since epoch {onset}"
        + (
            f", and training accuracy fell from its best {fmt(unlearned[0])} to {fmt(unlearned[1])}: "
            "the optimiser is undoing what the model had learned"
            if unlearned is not None and float(y[-1]) <= cfg.blowup_factor * floor
            else ""
        ),
        (LR_HIGH,),
    )


#: A blown-up training loss has risen back by at least this share of its fall from the highest loss
#: before its minimum to that minimum (:func:`detect_divergence`, rule 2).
BLOWUP_UNDONE_SHARE = 0.1
#: A training loss ending above this multiple of its minimum is divergence when the training accuracy
#: fell far from its best too (:func:`_training_accuracy_fell`); ``blowup_factor`` otherwise.
UNLEARN_LOSS_FACTOR = 2.0
#: ... by at least this much (accuracy points), and 5 of its noise SDs.
UNLEARN_ACCURACY_DROP = 0.05


def _training_accuracy_margin(curve: Curve) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(epochs, values, margin) of the training accuracy: a change beyond ``margin``,
    max(:data:`UNLEARN_ACCURACY_DROP`, 5 noise SDs of the curve), is the model's, not dropout's or
    augmentation's jitter (:func:`_training_accuracy_fell`, :func:`_training_accuracy_rose`). None
    without at least :data:`MIN_JUDGE_EPOCHS` finite values."""
    train = finite_series(curve, "accuracy")
    if train is None or train[1].size < MIN_JUDGE_EPOCHS:
        return None
    return train[0], train[1], max(UNLEARN_ACCURACY_DROP, 5 * estimate_noise(train[1]))


def _training_accuracy_fell(curve: Curve) -> tuple[float, float] | None:
    """(best, last) training accuracy when the last is below the best by more than
    max(:data:`UNLEARN_ACCURACY_DROP`, 5 noise SDs of the curve): the model got worse on the very
    data it is trained on. A sound optimiser at a fixed rate does not do that for long (dropout and
    augmentation jitter it by a point or two); a rate too high for the current basin does: a real GRU
    with Adam at 1e-2 went from 0.902 to 0.737 while its training loss rose 2.7 x. None without a
    training accuracy."""
    train = _training_accuracy_margin(curve)
    if train is None:
        return None
    _, values, margin = train
    best, last = float(np.max(values)), float(values[-1])
    return (best, last) if best - last > margin else None


def _training_accuracy_rose(curve: Curve, epoch: int) -> tuple[float, float] | None:
    """(at ``epoch``, last) training accuracy when the last is above its value at ``epoch``
    (1-based; the training loss's minimum) by more than max(:data:`UNLEARN_ACCURACY_DROP`, 5 noise
    SDs of the curve), the mirror of :func:`_training_accuracy_fell`: the model still learns its
    training set. A real 5-class MLP at Adam 0.2 climbed from 0.778 to 0.874 while its training
    loss rose from 1.72 to 6.87 (wrong answers ever more confident) and read as a blow-up. None
    without a training accuracy logged at ``epoch``."""
    train = _training_accuracy_margin(curve)
    if train is None:
        return None
    epochs, values, margin = train
    at = values[epochs == epoch]
    if at.size == 0:
        return None
    start, last = float(at[0]), float(values[-1])
    return (start, last) if last - start > margin else None


def _lr_raised_after(curve: Curve, epoch: int) -> bool:
    """The logged learning rate rose above 1.5 x its value at ``epoch`` (1-based) at some later
    epoch, and fell at some epoch of the log: a warm restart (SGDR, Loshchilov & Hutter, ICLR 2017)
    or a cyclical schedule (Smith, WACV 2017), under which the training loss rises by design. False
    without a ``learning_rate`` column (CSVLogger writes it when a schedule or ReduceLROnPlateau puts
    it in the logs), and for a rate that only rises."""
    lr = finite_series(curve, "learning_rate")
    if lr is None:
        return False
    at = lr[1][lr[0] == epoch]
    later = lr[1][lr[0] > epoch]
    if not (at.size and later.size and float(np.max(later)) > 1.5 * float(at[0])):
        return False
    # A cycle, not a ramp: the rate also fell somewhere in the log. A rate that only ever rises (a
    # learning-rate range test, or 1.5 x an epoch) raises the loss because it is too high.
    return bool(np.any(np.diff(lr[1]) < 0))
