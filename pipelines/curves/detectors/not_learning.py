"""``not_learning``: :func:`detect_not_learning`, validation accuracy at chance (and loss at the prior's
entropy) from some epoch to the end, with its readings: a slow start, a constant output, a loss at
Keras' clip (:func:`clip_charge`, also read by
:func:`pipelines.curves.detectors.oscillation.detect_saturated_outputs`), a zero or negative loss, a
model that died uniform; and :func:`fits_training_set`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import entropy as shannon_entropy

from pipelines.curves.detectors.context import (
    BELOW_PRIOR_SHARE,
    MAX_INFERRED_CLASSES,
    MIN_JUDGE_EPOCHS,
    SLOW_START_MIN_EPOCHS,
    Context,
    _class_count_range,
    _frozen_span,
    _tail,
    _z_crit,
    chance_limit,
    loss_unmoved,
    weights_still,
)
from pipelines.curves.findings import (
    CONSTANT_OUTPUT,
    DEAD,
    INPUTS,
    LABELS_OUT_OF_RANGE,
    MAJORITY,
    NOT_PROBABILITIES,
    WEIGHTS_STILL,
    ZERO_LOSS,
    Code,
    Group,
    fmt,
    make_finding,
)
from pipelines.curves.noise import estimate_noise
from pipelines.curves.plateau import finite_series, slope_z
from pipelines.curves.types import Finding, Severity

#: A frozen accuracy's training loss must fall by at least this share of its level over the frozen
#: span to count as still learning: a loss creeping by hundredths of a percent (a learning rate
#: orders of magnitude too small) leaves every prediction where it is.
FROZEN_LOSS_FALL = 0.01


def binary_entropy(p: float) -> float:
    """H2(p) = -p ln p - (1 - p) ln(1 - p), in nats (0 at p = 0 or 1; ``scipy.stats.entropy``)."""
    p = min(max(float(p), 0.0), 1.0)
    return float(shannon_entropy([p, 1.0 - p]))


#: A slow start (:func:`_slow_start`) needs the training accuracy to gain at least this much
#: (accuracy points) over the run's second half.
SLOW_START_GAIN = 0.02


def _slow_start(ctx: Context) -> dict[str, Any] | None:
    """A run leaving its starting point slowly: still near chance, but learning, faster and faster.

    Over the second half of the run (at least 8 epochs): val_loss (else the training loss, when
    val_loss is absent or falls with OLS z <= -3 but jitters) lower on at least 90% of the steps
    with OLS z <= -3, its fall over the last quarter of the run larger
    than over the quarter before (accelerating), and ending below the prior's entropy (what
    predicting the class shares scores) by less than a tenth of it: still at the starting point,
    so the prior's entropy must be known; and the training accuracy rising with
    OLS z >= 3 by at least :data:`SLOW_START_GAIN`. A dead network's loss falls towards the prior's
    entropy and flattens; memorising shuffled labels raises the training accuracy while val_loss
    flattens or rises. A real embedding model with SGD at 0.05 sat at 0.498 for 28 of 40 epochs
    while its loss fell on every epoch, faster each time (0.6933 -> 0.6911), and its training
    accuracy climbed from 0.50 to 0.575: too slow, not dead.

    Returns:
        ``{"loss_first", "loss_last", "down_share", "train_first", "train_last"}`` over the second
        half and ``"metric"``, the loss read (``val_loss`` or ``loss``), or None.
    """
    train = finite_series(ctx.curve, "accuracy")
    val_loss = finite_series(ctx.curve, "val_loss")
    found = None
    for name in ("val_loss", "loss"):
        loss = finite_series(ctx.curve, name)
        if loss is None or train is None or min(loss[1].size, train[1].size) < SLOW_START_MIN_EPOCHS:
            continue
        if name == "loss" and val_loss is not None:
            # The training loss stands in for a val_loss whose upticks are noise (a
            # 10,000-example val_loss near ln 10 jitters by 1e-4), as long as val_loss falls too:
            # memorising shuffled labels speeds the training loss up with val_loss flat.
            vh = val_loss[1].size // 2
            if slope_z(val_loss[0][vh:].astype(float), val_loss[1][vh:], estimate_noise(val_loss[1])) > -3.0:
                continue
        half = loss[1].size // 2
        x, y = loss[0][half:].astype(float), loss[1][half:]
        share = float(np.mean(np.diff(y) < 0))
        quarter = max(2, loss[1].size // 4)
        last_fall = float(loss[1][-quarter - 1] - loss[1][-1])
        before_fall = float(loss[1][-2 * quarter - 1] - loss[1][-quarter - 1])
        if (
            share >= 0.9
            and slope_z(x, y, estimate_noise(loss[1])) <= -3.0
            and last_fall > max(before_fall, 0.0)
        ):
            found = name, y, share
            break
    if found is None or train is None:
        return None
    name, y, share = found
    # Still at its starting point: within a tenth below the prior's entropy (what predicting the
    # class shares scores), not above it.
    if ctx.prior_entropy is None or not 0.9 * ctx.prior_entropy <= float(y[-1]) < ctx.prior_entropy:
        return None
    t_half = train[1].size // 2
    tx, ty = train[0][t_half:].astype(float), train[1][t_half:]
    gain = float(np.mean(ty[-3:]) - np.mean(ty[:3]))
    if gain < SLOW_START_GAIN or slope_z(tx, ty, estimate_noise(train[1])) < 3.0:
        return None
    return {
        "loss_first": float(y[0]),
        "loss_last": float(y[-1]),
        "down_share": share,
        "train_first": float(ty[0]),
        "train_last": float(ty[-1]),
        "metric": name,
    }


def _learns_below_majority(ctx: Context, accuracy: tuple[np.ndarray, np.ndarray] | None, onset: int) -> bool:
    """A run learning the task while its accuracy stays below the majority share: class weights.

    With ``class_weight`` (or resampling) on an imbalanced task, a network trades accuracy on the
    majority class for the minority's, so its accuracy climbs from far below the majority share
    and may never reach it, and its validation loss, calibrated to balanced classes, stays above
    the prior's entropy: both of the known-chance rule's marks of a network that learned only the
    prior. Two things tell it apart. Its training loss ends below 0.85 x the prior's entropy, below
    anything a prediction of the prior reaches (a network learning only the prior, through its
    output bias, ends at that entropy); and its accuracy (validation, else training) gains over
    the span since ``onset`` more than 3 SDs (the larger of the binomial SD on the validation set's
    size and the curve's noise) from its first third to its last (a network memorising labels it
    cannot generalise from also fits its training set, but its validation accuracy does not move).
    A real run at Adam 1e-3 with class weights (5% positives) climbed from 0.66 to 0.89 while its
    training loss fell to 0.12 against the prior's entropy 0.20. Needs the prior (``prior_known``).
    """
    train = finite_series(ctx.curve, "loss")
    if not ctx.prior_known or ctx.prior_entropy is None or accuracy is None or train is None:
        return False
    if train[1].size < 2 or float(np.mean(train[1][-2:])) >= 0.85 * ctx.prior_entropy:
        return False
    values = _tail(accuracy, onset)
    third = values.size // 3
    if third < 2:
        return False
    late = float(np.mean(values[-third:]))
    gain = late - float(np.mean(values[:third]))
    return gain > 3 * max(ctx.accuracy_sd(late), estimate_noise(accuracy[1]))


def _not_learning_at_chance(
    ctx: Context,
    accuracy: tuple[np.ndarray, np.ndarray] | None,
    loss: tuple[np.ndarray, np.ndarray] | None,
    acc_name: str,
    loss_name: str,
) -> Finding | None:
    """The known-chance rule of :func:`detect_not_learning` (chance and prior entropy known)."""
    assert ctx.chance is not None and ctx.prior_entropy is not None
    cfg = ctx.cfg
    epochs = np.asarray(ctx.curve.epochs)
    chance = ctx.chance
    acc_limit = ctx.limit_at_chance()
    loss_limit = 0.85 * ctx.prior_entropy
    ok = np.ones(epochs.size, dtype=bool)
    if accuracy is not None:
        ok &= ~np.isin(epochs, accuracy[0][accuracy[1] > acc_limit])
    if loss is not None:
        ok &= ~np.isin(epochs, loss[0][loss[1] < loss_limit])
    bad = np.flatnonzero(~ok)
    start = int(bad[-1]) + 1 if bad.size else 0
    if epochs.size - start < max(1, (epochs.size + 1) // 2):
        return None
    onset = int(epochs[start])
    acc_tail, loss_tail = _tail(accuracy, onset), _tail(loss, onset)
    recent = loss_tail[loss_tail.size // 2 :]
    if loss is not None and recent.size >= 5:
        # A loss still falling steadily at chance, already below the prior's entropy, is a slow
        # start, not a dead network: over the span's second half, beyond noise (OLS z <= -3)
        # and by at least a tenth of its level. (Falling towards the prior's entropy from above
        # is a dead network learning the prior through its output bias.)
        lx = loss[0][loss[0] >= onset].astype(float)[loss_tail.size // 2 :]
        z = slope_z(lx, recent, estimate_noise(loss[1]))
        fall = float(np.mean(recent[:2]) - np.mean(recent[-2:]))
        below_prior = float(np.mean(recent[-2:])) < BELOW_PRIOR_SHARE * ctx.prior_entropy
        if below_prior and z <= -max(3.0, _z_crit(cfg)) and fall >= 0.1 * float(np.mean(recent[:2])):
            return None
    if _slow_start(ctx) is not None or _learns_below_majority(ctx, accuracy, onset):
        return None
    if acc_tail.size == 0 and loss_tail.size == 0:
        return None
    evidence: dict[str, Any] = {
        "chance": chance,
        "chance_source": ctx.chance_source,
        "prior_entropy": ctx.prior_entropy,
        "since_epoch": onset,
    }
    parts = []
    if acc_tail.size:
        evidence[f"{acc_name}_max"] = float(np.max(acc_tail))
        parts.append(f"{acc_name} at most {fmt(float(np.max(acc_tail)))} (chance {fmt(chance)})")
    if loss_tail.size:
        evidence[f"{loss_name}_min"] = float(np.min(loss_tail))
        k, level = round(math.exp(ctx.prior_entropy)), fmt(ctx.prior_entropy)
        reference = {
            "num_classes": f"ln {k} = {level}",
            "uniform_loss": (
                f"ln {k} = {level}: outputs uniform over {k} classes; the class count is read off the loss"
            ),
            "chance_accuracy": (
                f"ln {k} = {level}, with accuracy at 1 / {k}: no better than a guess over {k} classes,"
                f" or a network that predicts only 1 / {k} of the classes; the class count is read off"
                " the accuracy" + _class_count_range(ctx.curve)
            ),
        }.get(ctx.chance_source or "", f"the class prior's entropy {level}")
        parts.append(f"{loss_name} at least {fmt(float(np.min(loss_tail)))} ({reference})")
    groups: tuple[Group, ...] = (INPUTS, DEAD)
    k = len(ctx.curve.class_prior or ()) or 2
    if ctx.prior_known and chance > 1.05 / k:
        groups = (MAJORITY, INPUTS, DEAD)
    when = " throughout" if start == 0 else f" since epoch {onset}"
    message = "not learning: " + " and ".join(parts) + when
    lowest = float(np.min(loss_tail)) if loss_tail.size else 0.0
    if lowest >= CLIPPED_LOSS_SHARE * KERAS_CLIP_LOSS and lowest >= 2 * ctx.prior_entropy:
        # Far above any output spread over the classes: predictions pinned at Keras' probability
        # clip on a share of the examples (each costs -ln 1e-7 = 16.1).
        wrong = 1.0 - float(np.max(acc_tail)) if acc_tail.size else None
        note, groups = _at_the_clip(ctx, lowest, wrong, groups, evidence)
        message += note
    return make_finding(Code.NOT_LEARNING, Severity.CRITICAL, onset, evidence, message, groups)


def _at_the_clip(
    ctx: Context, lowest: float, wrong: float | None, groups: tuple[Group, ...], evidence: dict[str, Any]
) -> tuple[str, tuple[Group, ...]]:
    """What a not-learning loss at Keras' probability clip says: the note for the message and the
    causes, reordered (``evidence`` gains ``clipped_share``, and ``loss_unmoved`` when it applies).

    The loss ``lowest`` is ``share`` x -ln(1e-7): the outputs sit at the clip on that share of the
    examples. When the share is the error rate ``wrong`` (:func:`charges_every_error`), every example
    it gets wrong and only those: a softmax saturated on the classes it predicts, whose usual causes
    stay first; and when the training loss has not moved since the first epoch
    (:func:`loss_unmoved`), no gradient ever reached the weights, as with a softmax over one unit
    (1.0 whatever its input): outputs that are not probabilities come first. Otherwise too.
    """
    share = lowest / KERAS_CLIP_LOSS
    evidence["clipped_share"] = share
    note = (
        f"; {fmt(lowest)} is {fmt(share)} x -ln(1e-7) = {fmt(KERAS_CLIP_LOSS)}, what Keras' "
        f"cross-entropy charges a probability at its clip: the outputs sit at the clip on about "
        f"{share:.0%} of the examples"
    )
    if wrong is None or not charges_every_error(lowest, 1.0 - wrong):
        return note, (NOT_PROBABILITIES, *groups)
    # Every example the accuracy misses, and only those.
    note += ", every one it gets wrong"
    if loss_unmoved(ctx.curve):
        evidence["loss_unmoved"] = True
        note += (
            ", and the training loss has not moved since the first epoch: no gradient reached the "
            "weights (a softmax over one unit outputs 1.0 whatever its input; a sigmoid or softmax "
            "fed unscaled inputs saturates at its first step)"
        )
        return note, (NOT_PROBABILITIES, *groups)
    return note + ": a softmax saturated on the classes it predicts", (*groups, NOT_PROBABILITIES)


#: What Keras' cross-entropy charges an example whose probability is at its clip, in nats:
#: -ln(1e-7), ``keras.config.epsilon()`` (https://keras.io/api/utils/config_utils/#epsilon-function).
KERAS_CLIP_LOSS = -math.log(1e-7)
#: A not-learning loss at least this share of :data:`KERAS_CLIP_LOSS` (and 2 x the prior's entropy)
#: has outputs pinned at the clip on that share of the examples, or more.
CLIPPED_LOSS_SHARE = 0.25
#: A loss within this share of :func:`clip_charge`'s 1 charges exactly the examples the accuracy
#: misses (:func:`charges_every_error`).
CLIPPED_ERRORS_TOLERANCE = 0.05


def charges_every_error(loss: float, accuracy: float) -> bool:
    """The ``loss`` is Keras' clip charge for exactly the examples ``accuracy`` misses: its
    :func:`clip_charge` within :data:`CLIPPED_ERRORS_TOLERANCE` of 1 (False at ``accuracy`` 1)."""
    if accuracy >= 1.0:
        return False
    return abs(float(clip_charge(np.asarray(loss), np.asarray(accuracy))) - 1.0) <= CLIPPED_ERRORS_TOLERANCE


def _froze_where_it_learned_to(
    ctx: Context, accuracy: tuple[np.ndarray, np.ndarray], span: int, step: float
) -> bool:
    """The accuracy froze at the best level it had climbed to, after the training loss fell:
    a converged model (full-batch-like updates leave its predictions fixed), not a dead one.

    True when the frozen span began after the first epoch, the accuracy before it rose from at
    least two grid steps below the frozen level and never beyond it by more than max(``step``,
    2 binomial SDs on the validation set), and the
    training loss fell by at least a tenth between the first epoch and the span's start. A network
    that learned and then died ends below its best (divergence's collapse rule).
    """
    x, y = accuracy
    before = y[: y.size - span]
    if before.size < 2:
        return False
    level = float(y[-1])
    near_best = max(step, 2 * ctx.accuracy_sd(level))
    if float(np.max(before)) > level + near_best or float(np.min(before)) > level - 4 * step:
        return False
    loss = finite_series(ctx.curve, "loss")
    if loss is None:
        return False
    onset = int(x[y.size - span])
    first, at_onset = float(loss[1][0]), _tail(loss, onset)
    return bool(at_onset.size) and float(at_onset[0]) <= 0.9 * first


#: Epochs (at least) on which both accuracies must hold one value each for
#: :func:`_constant_output`: a model that learns moves its training accuracy within a few epochs.
CONSTANT_OUTPUT_EPOCHS = 5
#: ... while the loss falls by at least this share of its first value (:func:`_loss_learns`): a
#: loss that does not move is a frozen network, judged by the rest of :func:`detect_not_learning`.
CONSTANT_OUTPUT_LOSS_FALL = 0.05


def _loss_learns(ctx: Context, share: float = CONSTANT_OUTPUT_LOSS_FALL) -> bool:
    """The training loss (else val_loss) fell during the run, from its first epoch to its lowest,
    by at least ``share`` (default :data:`CONSTANT_OUTPUT_LOSS_FALL`) of its first value."""
    loss = finite_series(ctx.curve, "loss") or finite_series(ctx.curve, "val_loss")
    if loss is None or loss[1].size < 2:
        return False
    first = float(loss[1][0])
    return first - float(np.min(loss[1])) >= share * abs(first)


def _still_from_the_start(
    ctx: Context, accuracy: tuple[np.ndarray, np.ndarray]
) -> tuple[float, float, float] | None:
    """The band an accuracy flickers in when the network never left its initialisation, else None.

    The training loss (else val_loss) never fell by :data:`FROZEN_LOSS_FALL` of its first value,
    where the first epoch's training loss is the mean over that epoch's batches, so any learning
    in epoch 1 already shows as a fall; and every accuracy of the run lies within one binomial SD
    (on the validation set's size, given or read off the grid) of the last one. Such a network's
    predictions flip only on the few examples nearest a decision boundary as its weights jitter: a
    real run with SGD at 1e-5 and class weights moved val_accuracy between 0.254 and 0.256 on 4,000
    examples while its loss went from 0.768 to 0.764 in 30 epochs. Needs a loss and the validation
    set's size.

    Returns:
        ``(band, first, lowest)``: the band (accuracy fraction, one binomial SD at the last
        accuracy), and that loss's first and lowest values; or None.
    """
    loss = finite_series(ctx.curve, "loss") or finite_series(ctx.curve, "val_loss")
    if not ctx.n_val or loss is None or loss[1].size < 2 or _loss_learns(ctx, FROZEN_LOSS_FALL):
        return None
    band = ctx.accuracy_sd(float(accuracy[1][-1]))
    if _frozen_span(accuracy[1], band) < accuracy[1].size:
        return None
    return band, float(loss[1][0]), float(np.min(loss[1]))


def _constant_output(
    accuracy: tuple[np.ndarray, np.ndarray],
    train_acc: tuple[np.ndarray, np.ndarray],
    acc_name: str,
    loss: tuple[np.ndarray, np.ndarray] | None,
    loss_name: str,
) -> Finding:
    """``not_learning`` for a run whose predicted classes never change while its loss learns.

    Both accuracies hold one value each (to 1e-6) on every epoch, for at least
    :data:`CONSTANT_OUTPUT_EPOCHS` epochs, while the loss learns: it fell during the run
    (:func:`_loss_learns`) and sits below what a constant prediction reaches, or still falls.
    Keras scores training accuracy as the mean over the epoch's batches, so a training accuracy
    that repeats to float precision epoch after epoch is one class predicted for every example (it
    is then that class's share of the training set).
    The classic cause is ``Dense(1, activation="softmax")``: a softmax over one unit is 1.0 for
    every input (Keras 3 warns), while Keras' cross-entropy reads the logits beneath it and falls
    (https://keras.io/api/losses/probabilistic_losses/). Also a loss or metric that does not match
    the labels, or probabilities that never cross the 0.5 threshold on an imbalanced task.

    Args:
        accuracy: the validation (else training) accuracy, (epochs, values).
        train_acc: the training accuracy, (epochs, values).
        acc_name: the name of ``accuracy``.
        loss: the validation (else training) loss, (epochs, values), or None.
        loss_name: the name of ``loss``.
    """
    level, train_level = float(accuracy[1][-1]), float(train_acc[1][-1])
    evidence: dict[str, Any] = {
        "frozen_level": level,
        "train_frozen_level": train_level,
        "frozen_epochs": int(accuracy[1].size),
        "since_epoch": int(accuracy[0][0]),
        "chance_source": "frozen",
        "constant_output": True,
    }
    fell = ""
    if loss is not None:
        first, low = float(loss[1][0]), float(np.min(loss[1]))
        evidence.update({f"{loss_name}_first": first, f"{loss_name}_min": low})
        fell = f" while {loss_name} went from {fmt(first)} to as low as {fmt(low)}"
    return make_finding(
        Code.NOT_LEARNING,
        Severity.CRITICAL,
        int(accuracy[0][0]),
        evidence,
        f"not learning to classify: {acc_name} is {fmt(level)} and training accuracy {fmt(train_level)} "
        f"on every one of the {accuracy[1].size} epochs{fell}: the predicted class never changes",
        (CONSTANT_OUTPUT,),
    )


#: A loss at most this on every epoch, with accuracy below 0.99, is zero whatever the weights
#: (:func:`_zero_loss`): Keras clips a probability of 1 to 1 - 1e-7 before the log, so each positive
#: label costs -log(1 - 1e-7), 1.2e-07 in float32, and the logged mean is at most that (1.2e-08 on
#: a task with a tenth of positive labels), not exactly 0.
ZERO_LOSS_LEVEL = 1e-6


def _logged(ctx: Context, names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The metrics of ``names`` the run logged, each as :func:`finite_series` gives it."""
    return {n: s for n in names if (s := finite_series(ctx.curve, n)) is not None}


def _losses_to_judge(
    ctx: Context,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[np.ndarray, np.ndarray]], str] | None:
    """(losses, accuracies, the accuracy a message names) for :func:`_zero_loss` and
    :func:`_negative_loss`: both losses and both accuracies the run logged (:func:`_logged`), and
    ``val_accuracy`` when logged, else ``accuracy``; None without a loss or an accuracy, or when a
    loss has fewer than :data:`MIN_JUDGE_EPOCHS` finite epochs."""
    losses, accuracies = _logged(ctx, ("loss", "val_loss")), _logged(ctx, ("accuracy", "val_accuracy"))
    if not losses or not accuracies or min(s[1].size for s in losses.values()) < MIN_JUDGE_EPOCHS:
        return None
    return losses, accuracies, "val_accuracy" if "val_accuracy" in accuracies else "accuracy"


def _zero_loss(ctx: Context) -> Finding | None:
    """``not_learning`` for a run whose losses are zero on every epoch while its accuracy is not.

    A cross-entropy of zero means every example's probability of its label is 1; with accuracy
    below 0.99 that is impossible unless the loss does not measure the output. The classic case is
    ``Dense(1, activation="sigmoid")`` trained with ``categorical_crossentropy``: the loss
    normalises the single probability over one class, so it is ``-log(1) = 0`` for every input
    (https://keras.io/api/losses/probabilistic_losses/#categoricalcrossentropy-class) and the
    weights get no gradient; a real Fashion-MNIST run logged 1.2e-08 on all 20 epochs while its
    accuracy drifted from 0.62 to 0.42. Both logged losses (training and validation, where present)
    must be at most :data:`ZERO_LOSS_LEVEL` on every finite epoch (at least
    :data:`MIN_JUDGE_EPOCHS`) and the accuracies below 0.99 on every epoch.
    """
    judged = _losses_to_judge(ctx)
    if judged is None:
        return None
    losses, accuracies, acc_name = judged
    top = max(float(np.max(np.abs(s[1]))) for s in losses.values())
    if top > ZERO_LOSS_LEVEL or any(float(np.max(s[1])) >= 0.99 for s in accuracies.values()):
        return None
    accuracy = accuracies[acc_name]
    first, last = float(accuracy[1][0]), float(accuracy[1][-1])
    evidence: dict[str, Any] = {"max_abs_loss": top, f"{acc_name}_first": first, f"{acc_name}_last": last}
    names = " and ".join(losses)
    return make_finding(
        Code.NOT_LEARNING,
        Severity.CRITICAL,
        int(accuracy[0][0]),
        evidence,
        f"not learning: {names} at most {fmt(top)} on every epoch while {acc_name} "
        + (f"stayed at {fmt(first)}" if fmt(first) == fmt(last) else f"went from {fmt(first)} to {fmt(last)}")
        + ": a loss of zero with accuracy this low measures nothing, and gives the weights no gradient",
        (ZERO_LOSS,),
    )


#: An accuracy that gains no more than this over its first epoch has not learned (for
#: :func:`_negative_loss`: a loss below 0 there is labels out of range, not a custom loss at work).
NEGATIVE_LOSS_GAIN = 0.02
#: A negated score in [0, 1] (Dice, accuracy, IoU) never goes below -1: losses below this on every
#: epoch are labels out of range whatever the accuracy does (:func:`_negative_loss`).
NEGATED_SCORE_FLOOR = -1.0


def _negative_loss(ctx: Context) -> Finding | None:
    """``not_learning`` for a run whose losses are below 0 on every epoch while its accuracy stays put.

    A cross-entropy of labels in [0, 1] is never negative (every term is -y log p with p <= 1).
    ``binary_crossentropy`` given class indices 0 to K - 1 is: -(y log p + (1 - y) log(1 - p))
    with y = 9 falls without bound as p goes to 1, so the optimiser pushes the output to its clip
    and the accuracy, scored against labels it cannot match, stays where it is (a real Fashion-MNIST
    MLP, ``Dense(1, sigmoid)`` on labels 0-9: -52.4 to -56.0 over 20 epochs, accuracy 0.10 on every
    one; session 26). Found when both logged losses (training and validation, where present) are
    below -:data:`ZERO_LOSS_LEVEL` on every finite epoch (at least :data:`MIN_JUDGE_EPOCHS`) and
    the accuracy never rises more than :data:`NEGATIVE_LOSS_GAIN` above its first epoch's, below
    0.99; a custom negative loss (a negated Dice score) on a run that learns is left alone. Losses
    below :data:`NEGATED_SCORE_FLOOR` on every epoch are no negated score: then the accuracy may
    move, as long as it stays below 0.99 (a real sigmoid output given labels -1 / +1: losses -5.5
    to -7.2, accuracy 0.34 to 0.43 on a balanced binary task; session 27).
    """
    judged = _losses_to_judge(ctx)
    if judged is None:
        return None
    losses, accuracies, acc_name = judged
    accuracy = accuracies[acc_name]
    top = max(float(np.max(s[1])) for s in losses.values())
    first, best = float(accuracy[1][0]), float(np.max(accuracy[1]))
    moved = best - first > NEGATIVE_LOSS_GAIN
    if top >= -ZERO_LOSS_LEVEL or best >= 0.99 or (moved and top >= NEGATED_SCORE_FLOOR):
        return None
    names = " and ".join(losses)
    last = {n: float(s[1][-1]) for n, s in losses.items()}
    level = fmt(first) if fmt(first) == fmt(best) else f"{fmt(first)} to {fmt(best)}"
    stays = f"reaches only {fmt(best)}" if moved else f"stays at {level}"
    evidence: dict[str, Any] = {"max_loss": top, f"{acc_name}_first": first, f"{acc_name}_max": best}
    return make_finding(
        Code.NOT_LEARNING,
        Severity.CRITICAL,
        int(accuracy[0][0]),
        evidence,
        f"not learning: {names} below 0 on every epoch ("
        + ", ".join(f"{n} {fmt(v)}" for n, v in last.items())
        + f" at the end) while {acc_name} {stays}: no cross-entropy of labels in [0, 1] is "
        "negative, so the labels that reach the loss lie outside [0, 1]",
        (LABELS_OUT_OF_RANGE,),
    )


def detect_not_learning(ctx: Context) -> Finding | None:
    """Validation accuracy at chance (and loss at the prior's entropy) from some epoch to the end.

    With a known chance level: accuracy at most :func:`chance_limit` (chance plus the largest of 3
    noise SDs, 2 binomial SDs on the validation set and 1 / n when the prior and n are known; of
    15% of the way to 1.0, 3 noise SDs and 2 binomial SDs otherwise), and the loss at least 0.85 x the prior's
    entropy (ln K for balanced classes, H(prior) for imbalanced ones, where a model that predicts
    the prior scores exactly the majority share), over at least the last half of the run. Short
    runs need no trend: one epoch at chance with such a loss suffices, since chance level is a
    level, not a trend. Not a run whose loss still falls steadily below the prior's entropy, a
    slow start (:func:`_slow_start`), or a class-weighted run learning below the majority share
    (:func:`_learns_below_majority`).

    Otherwise (no chance level, or one the accuracy is above: the validation set's class shares
    may differ from the training prior), from the curve alone: validation accuracy frozen at one
    value (every value of the last half within half a grid step, or 1e-6 when the grid is unknown),
    not at the best level it had climbed to with a falling loss (:func:`_froze_where_it_learned_to`),
    while the training accuracy is frozen too (over the span's second half, below 0.99) or no
    better, the training loss does not fall both
    beyond noise and by at least ``FROZEN_LOSS_FALL`` (1%) of its level over the frozen span's
    second half, and the loss stays at least 0.85 x the prior's entropy when the class prior is
    known (else 0.85 x the binary entropy of the frozen level): a network predicting one class on
    any task. Also, on a validation set of known or
    read size, a network that never left its initialisation (:func:`_still_from_the_start`: the
    loss never 1% below its first value, the accuracy within one binomial SD all run) with its loss
    at least 0.85 x ln 2 (near-uniform outputs) when the prior is not known. Frozen at >= 0.99 is
    excluded (a solved task). Both accuracies frozen to float precision on every epoch (at least
    :data:`CONSTANT_OUTPUT_EPOCHS`) while the loss falls are not learning, however low the loss:
    the predicted class never changes while the loss learns (:func:`_constant_output`). First of
    all, losses at zero on every epoch while accuracy is below 0.99 are a loss that measures
    nothing (:func:`_zero_loss`), and losses below zero on every epoch while accuracy stays put are
    labels outside [0, 1] (:func:`_negative_loss`).
    """
    curve, cfg = ctx.curve, ctx.cfg
    acc_name = "val_accuracy" if finite_series(curve, "val_accuracy") is not None else "accuracy"
    loss_name = "val_loss" if finite_series(curve, "val_loss") is not None else "loss"
    accuracy, loss = finite_series(curve, acc_name), finite_series(curve, loss_name)
    if accuracy is None and loss is None:
        return None
    zero = _zero_loss(ctx) or _negative_loss(ctx)
    if zero is not None:
        return zero
    if ctx.chance is not None and ctx.prior_entropy is not None:
        found = _not_learning_at_chance(ctx, accuracy, loss, acc_name, loss_name)
        if found is not None:
            return found
    died = _died_uniform(ctx, accuracy, acc_name)
    if died is not None:
        return died
    # From the curve alone: frozen accuracy.
    if accuracy is None or accuracy[1].size < MIN_JUDGE_EPOCHS:
        return None
    n = ctx.n_val
    step = 0.5 / n if n else 1e-6
    span = _frozen_span(accuracy[1], step)
    level = float(accuracy[1][-1])
    needed = max(MIN_JUDGE_EPOCHS, (accuracy[1].size + 1) // 2)
    # Not frozen to the example, but never moved from its initialisation (:func:`_still_from_the_start`).
    still = _still_from_the_start(ctx, accuracy) if span < needed else None
    if still is not None:
        step, span = still[0], accuracy[1].size
    if span < needed or level >= 0.99:
        return None
    onset = int(accuracy[0][-span])
    if _froze_where_it_learned_to(ctx, accuracy, span, step):
        return None
    train_acc = finite_series(curve, "accuracy") if acc_name == "val_accuracy" else None
    # Both accuracies on one value each, to float precision, on every epoch of the run: the
    # predicted classes never change. Whatever the loss does meanwhile (:func:`_constant_output`).
    constant = (
        span == accuracy[1].size >= CONSTANT_OUTPUT_EPOCHS
        and train_acc is not None
        and train_acc[1].size == accuracy[1].size
        and float(np.ptp(train_acc[1])) <= 1e-6
        and _loss_learns(ctx)
    )
    if train_acc is not None:
        t_tail = _tail(train_acc, onset)
        t_noise = estimate_noise(train_acc[1])
        # Better and moving: the model learns something. Training accuracy frozen at one value
        # over the same span (to 1e-6: a training set's grid is not known) is the same fixed
        # prediction scored on other labels, however much higher it sits. Moving is judged over
        # the span's second half, as the loss is below: a first epoch that still held the steps
        # before the network died moves nothing after it. A training accuracy frozen at 0.99 or
        # more is a fitted training set, as a validation one there is a solved task (below).
        late = t_tail[t_tail.size // 2 :]
        moving = late.size >= 2 and (float(np.ptp(late)) > 1e-6 or float(np.max(late)) >= 0.99)
        if moving and float(np.max(t_tail)) > level + max(0.02, 3 * t_noise):
            return None
    # The loss floor of a constant prediction: the prior's entropy when the class prior is known;
    # else H2(level), the binary entropy of the frozen accuracy, a lower bound for any task (a
    # constant prediction scoring ``level`` has cross-entropy >= H(labels) by Gibbs' inequality,
    # and H(labels) >= H2(majority share) by the grouping property of entropy; Cover & Thomas,
    # "Elements of Information Theory", 2nd ed., Thms 2.6.3 and 2.5.1 / ex. 2.27). A class count
    # alone gives ln K, the entropy of a balanced prior: too high a floor for an imbalanced one.
    floor = ctx.prior_entropy if ctx.prior_entropy is not None and ctx.prior_known else binary_entropy(level)
    if still is not None and not ctx.prior_known:
        # A network still at its initialisation outputs near-uniform probabilities: about ln K,
        # at least ln 2, whatever its accuracy (a converged model at 0.78 scores 0.47).
        floor = max(floor, math.log(2))
    loss_tail = _tail(loss, onset)
    if loss_tail.size and float(np.min(loss_tail)) < 0.85 * floor:
        # Below anything a constant prediction reaches: it learned something, unless not one
        # prediction ever changed class.
        return _constant_output(accuracy, train_acc, acc_name, loss, loss_name) if constant else None
    # Predictions that never changed (frozen from the first epoch) with a loss above the floor: a
    # falling loss is a constant output being calibrated to the prior, not learning.
    above_floor = span == accuracy[1].size and bool(loss_tail.size) and float(np.min(loss_tail)) >= floor
    train_loss = finite_series(curve, "loss")
    if train_loss is not None and not above_floor:
        # Over the frozen span's second half: a loss that fell early and has since settled is a
        # converged (near-constant) output, not learning still to show in accuracy.
        frozen_epochs = train_loss[0][train_loss[0] >= onset]
        mask = train_loss[0] >= (frozen_epochs[frozen_epochs.size // 2] if frozen_epochs.size else onset)
        if mask.sum() >= 3:
            sigma_l = estimate_noise(train_loss[1])
            tail = train_loss[1][mask]
            falls = float(tail[0] - tail[-1]) >= FROZEN_LOSS_FALL * abs(float(tail[0]))
            if falls and slope_z(train_loss[0][mask].astype(float), tail, sigma_l) < -_z_crit(cfg):
                # The loss still falls below the floor: learning, just not visible in accuracy yet.
                # (Above the floor it is a dead network fitting the prior through its output bias.)
                return _constant_output(accuracy, train_acc, acc_name, loss, loss_name) if constant else None
    evidence = {"frozen_level": level, "frozen_epochs": span, "since_epoch": onset, "chance_source": "frozen"}
    if still is not None:
        band, first, low = still
        evidence.update(band=band, loss_first=first, loss_min=low, still_from_start=True)
        low_acc, high_acc = float(np.min(accuracy[1])), float(np.max(accuracy[1]))
        return make_finding(
            Code.NOT_LEARNING,
            Severity.CRITICAL,
            onset,
            evidence,
            f"not learning: {acc_name} between {fmt(low_acc)} and {fmt(high_acc)} on all {span} epochs "
            f"(within one sampling SD, {fmt(band)}) while the loss never fell {FROZEN_LOSS_FALL:.0%} below "
            f"its first value ({fmt(first)} -> at best {fmt(low)}): the network has not moved from its "
            "initialisation",
            (WEIGHTS_STILL,),
        )
    message = (
        f"not learning: {acc_name} frozen at {fmt(level)} for {span} epochs since epoch {onset} while the "
        "loss stays flat: the network predicts the same class(es) for every example (on an imbalanced "
        "task that is the majority share)"
    )
    groups: tuple[Group, ...] = (MAJORITY, INPUTS, DEAD)
    lowest = float(np.min(loss_tail)) if loss_tail.size else 0.0
    if lowest >= CLIPPED_LOSS_SHARE * KERAS_CLIP_LOSS and charges_every_error(lowest, level):
        # With no class count the prior's entropy is unknown: the clip is read only where it
        # charges exactly the examples the frozen accuracy misses.
        note, groups = _at_the_clip(ctx, lowest, 1.0 - level, groups, evidence)
        message += note
    return make_finding(Code.NOT_LEARNING, Severity.CRITICAL, onset, evidence, message, groups)


#: Relative distance to ln K within which a dead network's losses sit (uniform outputs score ln K
#: exactly; float32 sums stray by about 1e-6).
DEAD_LOSS_TOLERANCE = 1e-3


def _died_uniform(
    ctx: Context, accuracy: tuple[np.ndarray, np.ndarray] | None, acc_name: str
) -> Finding | None:
    """A network that died during the run: over its last :func:`weights_still` epochs (at least
    ``STILL_EPOCHS``) the weights no longer change, the accuracy is frozen, and the training and
    validation losses both sit at ln K (within :data:`DEAD_LOSS_TOLERANCE`) for one integer
    2 <= K <= ``MAX_INFERRED_CLASSES``: outputs uniform over K classes score exactly ln K on any
    labels, and only a network whose units have all died outputs that. However short the dead
    span against the run (a ReLU output layer died at epoch 14 of 20: the span rules ask for half
    the run), nothing will change it: no gradient flows.
    """
    still = weights_still(ctx.curve)
    if still is None or accuracy is None:
        return None
    losses = [finite_series(ctx.curve, name) for name in ("loss", "val_loss")]
    levels = []
    for series in losses:
        if series is not None and series[1].size > still:
            levels.append(series[1][-(still + 1) :])
    if not levels:
        return None
    loss_level = float(np.median(levels[0]))
    if not 0.0 < loss_level < math.log(MAX_INFERRED_CLASSES + 0.5):  # (no exp of a blown-up loss)
        return None
    k = int(round(math.exp(loss_level)))
    if not 2 <= k <= MAX_INFERRED_CLASSES:
        return None
    ln_k = math.log(k)
    if any(float(np.max(np.abs(y - ln_k))) > DEAD_LOSS_TOLERANCE * ln_k for y in levels):
        return None
    tail = accuracy[1][-(still + 1) :]
    step = 0.5 / ctx.n_val if ctx.n_val else 1e-6
    if float(np.ptp(tail)) > step:
        return None
    onset = int(accuracy[0][-(still + 1)])
    level = float(tail[-1])
    evidence = {
        "frozen_level": level,
        "frozen_epochs": still + 1,
        "since_epoch": onset,
        "dead_loss": ln_k,
        "chance_source": "uniform_loss",
    }
    return make_finding(
        Code.NOT_LEARNING,
        Severity.CRITICAL,
        onset,
        evidence,
        f"not learning: the network died at epoch {onset}: since then both losses sit at ln {k} = "
        f"{fmt(ln_k)} (outputs uniform over {k} classes), {acc_name} is frozen at {fmt(level)} and the "
        "weights no longer change",
        (DEAD, INPUTS),
    )


def fits_training_set(ctx: Context) -> bool:
    """Training accuracy over the last half above the not-learning limit (memorising random labels)."""
    train = finite_series(ctx.curve, "accuracy")
    if ctx.chance is None or train is None:
        return True
    tail = train[1][train[1].size // 2 :]
    return bool(np.max(tail) > chance_limit(ctx.chance, None, ctx.sigma))


def clip_charge(loss: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Per epoch, the loss as a share of Keras' charge for the misclassified examples at its clip.

    Args:
        loss: (E,) float cross-entropy per epoch (nats).
        accuracy: (E,) float accuracy per epoch on the same examples, in [0, 1).

    Returns:
        (E,) float64 ``loss / ((1 - accuracy) x KERAS_CLIP_LOSS)``; about 1 when every misclassified
        example's probability sits at ``keras.config.epsilon()`` (1e-7) and every other at 1 - 1e-7.
    """
    wrong = 1.0 - np.asarray(accuracy, dtype=np.float64)
    return np.asarray(loss, dtype=np.float64) / (wrong * KERAS_CLIP_LOSS)
