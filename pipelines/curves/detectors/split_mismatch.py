"""``split_mismatch``: :func:`detect_split_mismatch`, validation far below training from the first epoch
on, in accuracy or in loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipelines.curves.detectors.context import MIN_JUDGE_EPOCHS, Context, class_shares
from pipelines.curves.detectors.not_learning import fits_training_set
from pipelines.curves.findings import SKEW, SPLITS, UNSEEN_LABELS, UNSHUFFLED, Code, fmt, make_finding
from pipelines.curves.noise import estimate_noise
from pipelines.curves.plateau import binomial_sd, finite_series
from pipelines.curves.types import Curve, Finding, Severity


def smallest_class_share(ctx: Context) -> float | None:
    """The smallest class share of the training labels: the known prior's (:func:`class_shares`),
    else 1 / K (``ctx.chance``, K given or inferred, :func:`chance_of`); None when neither is known."""
    p = class_shares(ctx.curve)
    if p is not None:
        return float(p.min())
    return ctx.chance  # 1 / K, or None


def _below_any_guess(ctx: Context, val_acc: tuple[np.ndarray, np.ndarray]) -> float | None:
    """The share every validation accuracy of the run stays below, when that is below what any
    guess scores; else None.

    Predictions that do not depend on the true labels score sum_k p_k q_k >= min_k p_k (p the class
    shares, q how often each class is predicted), so on a validation set drawn like the training set
    no model scores below the smallest class share but by chance. Every epoch's validation accuracy
    more than 3 binomial SDs below that share (on the validation set's size, given or read off the
    grid: the shares of a small validation set scatter by as much; else at least 1 / d examples, d
    the smallest step between two of its values, which is a multiple of 1 / n; 3 noise SDs and 0.02
    at least), while the model fits its training set (:func:`fits_training_set`), means the
    validation labels are not distributed as the training labels: classes the model never saw, or
    another label encoding. Not judged when the size has no bound (one value throughout).
    """
    share = smallest_class_share(ctx)
    if share is None or val_acc[1].size < MIN_JUDGE_EPOCHS or not fits_training_set(ctx):
        return None
    n = _grid_examples(ctx, val_acc[1])
    if n is None:
        return None
    margin = max(3 * binomial_sd(share, n), 3 * estimate_noise(val_acc[1]), 0.02)
    return share if float(np.max(val_acc[1])) < share - margin else None


def _grid_examples(ctx: Context, values: np.ndarray) -> int | None:
    """Validation examples: given or read off the grid (``ctx.n_val``), else the fewest the grid of
    ``values`` allows (1 / its smallest step); None when the values never move."""
    if ctx.n_val:
        return ctx.n_val
    steps = np.diff(np.unique(np.round(values, 9)))
    if steps.size == 0:
        return None
    return max(1, math.floor(1.0 / float(steps.min()) + 1e-6))


#: Training accuracy the run must gain after its first epoch, or the share of its first epoch's
#: training loss its second may keep at most, for that first epoch to be a fresh start
#: (:func:`_fresh_start`).
FRESH_START_GAIN = 0.05
FRESH_START_LOSS_RATIO = 0.7


def _fresh_start(curve: Curve) -> bool:
    """The log's first row is a fresh model's first epoch, scored on training examples not yet seen.

    It must be epoch 1 (a resumed fit's first row has seen its training set), and the model must
    learn visibly after it: training accuracy gains at least :data:`FRESH_START_GAIN` over the run,
    or the second epoch's training loss is at most :data:`FRESH_START_LOSS_RATIO` of the first's
    (a first epoch averages the loss from initialisation on; a fast learner is at 0.96 after it but
    its loss still drops 10 x). A second ``fit`` logged to a new file starts at epoch 1 too, with a
    model that already knows its training set: a real MLP continued at a tenth of its rate scored
    0.987 on its "first" epoch and 0.998 at its best (loss 0.046, then 0.035) while validation sat
    at 0.86, and read as a fresh start that was a critical split mismatch. Without training
    accuracy or a second epoch, epoch 1 alone decides.
    """
    loss = finite_series(curve, "loss")
    accuracy = finite_series(curve, "accuracy")
    first = accuracy if accuracy is not None else loss
    if first is None or int(first[0][0]) != 1:
        return False
    if accuracy is not None and float(np.max(accuracy[1])) - float(accuracy[1][0]) >= FRESH_START_GAIN:
        return True
    if loss is None or loss[1].size < 2 or int(loss[0][0]) != 1 or int(loss[0][1]) != 2:
        return accuracy is None
    return float(loss[1][1]) <= FRESH_START_LOSS_RATIO * float(loss[1][0])


def _below_first_epoch_training(ctx: Context, val_acc: tuple[np.ndarray, np.ndarray]) -> float | None:
    """The first epoch's training accuracy, when every validation accuracy of the run stays far
    below it; else None.

    In its first epoch a network scores each training batch before it steps on that batch, on
    examples it has never seen: Keras' epoch-1 ``accuracy`` is a progressive-validation estimate
    of how well the model predicts unseen data drawn like the training set (Blum, Kalai and
    Langford, COLT 1999, "Beating the hold-out"), and a low one, taken while the model still
    learns. A validation set drawn like the training set then scores at least as well at the end
    of every epoch, but for sampling. Every validation accuracy more than max(0.1, 3 binomial SDs
    on the validation set's size, 3 noise SDs) below it means the validation set is not drawn like
    the training set: inverted, rescaled or otherwise transformed inputs, another domain, classes
    the model never saw. Only for a fresh start (:func:`_fresh_start`), and not judged when the
    validation set's size has no bound (given, or read off the grid of a val_accuracy that moves
    at least once).
    """
    train = finite_series(ctx.curve, "accuracy")
    if train is None or not _fresh_start(ctx.curve) or val_acc[1].size < 2:
        return None
    first = float(train[1][0])
    n = _grid_examples(ctx, val_acc[1])
    if n is None:
        return None
    margin = max(0.1, 3 * binomial_sd(first, n), 3 * estimate_noise(val_acc[1]))
    return first if float(np.max(val_acc[1])) < first - margin else None


#: How many times the first epoch's training loss (scored on examples not yet seen) every
#: validation loss of the run must stay above to show a validation set drawn otherwise
#: (:func:`_above_first_epoch_training_loss`). Real mismatches: 2.5 (images shifted by 4 pixels) to
#: 24 (classes never trained on); sound runs, overfitting ones included: at most 1.7.
SPLIT_LOSS_RATIO = 2.0


def _unweighted_loss(curve: Curve) -> bool:
    """The training loss is an unweighted cross-entropy, comparable with the validation loss.

    A misclassified example puts at most 1/2 on its true class (the argmax holds at least as much),
    so it costs at least ln 2: an unweighted cross-entropy averaged over the same batches as an
    accuracy a is at least (1 - a) ln 2 (label smoothing and penalties only add). A training loss
    below that on some epoch (1% float slack) is weighted: ``class_weight`` or ``sample_weight``
    averaging under 1 (Keras weights the loss, not the accuracy), or a focal loss. A real binary
    run with the majority class weighted 1/9 logged 0.052 at a training accuracy of 0.887 (bound
    0.078): its validation loss, unweighted, sat 2 x above. True without a training accuracy.
    """
    loss, accuracy = finite_series(curve, "loss"), finite_series(curve, "accuracy")
    if loss is None or accuracy is None:
        return True
    common, il, ia = np.intersect1d(loss[0], accuracy[0], return_indices=True)
    if common.size == 0:
        return True
    bound = math.log(2) * (1.0 - np.clip(accuracy[1][ia], 0.0, 1.0))
    return bool(np.all(loss[1][il] >= 0.99 * bound))


def _above_first_epoch_training_loss(ctx: Context) -> tuple[float, float] | None:
    """(the first epoch's training loss, the lowest validation loss), when every validation loss
    of the run stays at least :data:`SPLIT_LOSS_RATIO` times above the first while the training
    loss is sound; else None.

    The loss counterpart of :func:`_below_first_epoch_training`: Keras' epoch-1 ``loss`` is a
    progressive-validation estimate (Blum, Kalai and Langford, COLT 1999) of the loss on unseen data
    drawn like the training set, and a high one, averaged over a model still learning; the
    validation loss of that model at the end of the epoch, and at its best epoch later, normally
    sits below it. A validation loss that never comes within :data:`SPLIT_LOSS_RATIO` of it, while
    the training loss never rises above its first value and falls to half of it or less, means
    the model is confidently wrong on validation examples where it was not on unseen training
    examples: inputs scaled otherwise (validation images left in 0-255), another domain, or
    classes never trained on. Validation accuracy may agree with training's meanwhile: rescaled
    inputs keep most argmaxes and inflate the logits. Only for a fresh start (:func:`_fresh_start`)
    with at least :data:`MIN_JUDGE_EPOCHS` validation losses, and a training loss that is not
    weighted (:func:`_unweighted_loss`).
    """
    train, val = finite_series(ctx.curve, "loss"), finite_series(ctx.curve, "val_loss")
    if train is None or val is None or not _fresh_start(ctx.curve) or val[1].size < MIN_JUDGE_EPOCHS:
        return None
    if not _unweighted_loss(ctx.curve):
        return None
    first = float(train[1][0])
    if not first > 0 or float(np.max(train[1][1:], initial=first)) > first or float(train[1][-1]) > first / 2:
        return None
    lowest = float(np.min(val[1]))
    return (first, lowest) if lowest >= SPLIT_LOSS_RATIO * first else None


def detect_split_mismatch(ctx: Context) -> Finding | None:
    """Validation far below training from the first epoch on: in accuracy, or in loss.

    Accuracy: on each of the first 3 epochs the gap must be at least max(0.1, 10 noise SDs), and
    so must the median gap of the run. (At epoch 1 training accuracy is averaged over a model still
    learning, so it normally sits below validation.) CRITICAL when, besides, every validation
    accuracy sits below what any guess scores (:func:`_below_any_guess`): the validation labels are
    not the training labels' (evidence ``below_any_guess``), which is what an unshuffled
    ``validation_split`` does to data ordered by class; or below the first epoch's training
    accuracy (:func:`_below_first_epoch_training`, evidence ``below_first_epoch_training``); or
    every validation loss far above the first epoch's training loss
    (:func:`_above_first_epoch_training_loss`, evidence ``above_first_epoch_training_loss``): the
    validation inputs are not drawn like the training inputs.

    Loss: that last evidence alone, with no accuracy gap, is CRITICAL too (validation images left
    unscaled score as well as training's and lose 4 x as much).
    """
    val_acc, train_acc = finite_series(ctx.curve, "val_accuracy"), finite_series(ctx.curve, "accuracy")
    gap = np.empty(0)
    common = np.empty(0, dtype=np.int64)
    if val_acc is not None and train_acc is not None:
        common, iv, it = np.intersect1d(val_acc[0], train_acc[0], return_indices=True)
        gap = train_acc[1][it] - val_acc[1][iv]
    threshold = max(0.1, 10 * ctx.sigma)
    # The start's gap is the smallest over the first 3 epochs: a gap that closes within them was
    # an artefact (BatchNormalization's moving averages lag after a first epoch of a hundred
    # steps: a real BN CNN scored 0.17 on validation at epoch 1, then 0.68 and 0.80, at 0.77, 0.86
    # and 0.89 in training). A validation set drawn otherwise keeps its gap.
    start_gap = float(np.min(gap[:3])) if common.size >= 2 else -math.inf
    accuracy_gap = start_gap >= threshold and float(np.median(gap)) >= threshold
    losses = _above_first_epoch_training_loss(ctx)
    if not accuracy_gap and losses is None:
        return None
    if not accuracy_gap:
        val_loss = finite_series(ctx.curve, "val_loss")
        assert losses is not None and val_loss is not None  # losses are read off val_loss
        first_loss, lowest = losses
        message = (
            f"val_loss never came below {fmt(lowest)}, {lowest / first_loss:.1f} x the {fmt(first_loss)} "
            "the model lost in its first epoch on training examples it had not yet seen, while its "
            "training loss kept falling"
        )
        if val_acc is not None:
            message += f" (val_accuracy up to {fmt(float(np.max(val_acc[1])))})"
        message += (
            ": it is confidently wrong on validation examples as it never was on training ones, so the "
            "validation set is not drawn like the training set (unless this log continues an earlier fit)"
        )
        evidence = {"above_first_epoch_training_loss": first_loss, "val_loss_min": lowest, "noise": ctx.sigma}
        return make_finding(
            Code.SPLIT_MISMATCH,
            Severity.CRITICAL,
            int(val_loss[0][0]),
            evidence,
            message,
            (SKEW, UNSEEN_LABELS),
        )
    assert val_acc is not None and train_acc is not None
    evidence: dict[str, Any] = {
        "gap_start": start_gap,
        "gap_first_epoch": float(gap[0]),
        "gap_median": float(np.median(gap)),
        "noise": ctx.sigma,
    }
    message = f"validation accuracy is {fmt(start_gap)} or more below training from epoch {int(common[0])} on"
    share = _below_any_guess(ctx, val_acc)
    if share is None:
        first = _below_first_epoch_training(ctx, val_acc)
        if first is None and losses is None:
            return make_finding(
                Code.SPLIT_MISMATCH, Severity.WARNING, int(common[0]), evidence, message, (SPLITS, UNSHUFFLED)
            )
        if first is not None:
            evidence["below_first_epoch_training"] = first
            message += (
                f", and never above {fmt(float(np.max(val_acc[1])))}: below the {fmt(first)} the model "
                "scored in its first epoch on training examples it had not yet seen"
            )
        else:
            assert losses is not None
            first_loss, lowest = losses
            evidence["above_first_epoch_training_loss"] = first_loss
            message += (
                f", and val_loss never below {fmt(lowest)}: over "
                f"{SPLIT_LOSS_RATIO:g} x the {fmt(first_loss)} the model lost in its first epoch on "
                "training examples it had not yet seen"
            )
        message += ": the validation set is not drawn like the training set"
        return make_finding(
            Code.SPLIT_MISMATCH, Severity.CRITICAL, int(common[0]), evidence, message, (SKEW, UNSEEN_LABELS)
        )
    evidence["below_any_guess"] = share
    message += (
        f", and never above {fmt(float(np.max(val_acc[1])))}: below the {fmt(share)} that any guess "
        f"scores (the smallest class share), while training reaches {fmt(float(np.max(train_acc[1])))}: "
        "the validation labels are not distributed as the training labels"
    )
    return make_finding(
        Code.SPLIT_MISMATCH, Severity.CRITICAL, int(common[0]), evidence, message, (UNSEEN_LABELS, SPLITS)
    )
