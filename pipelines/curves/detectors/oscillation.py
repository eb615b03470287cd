"""Oscillation and noisy validation: :func:`detect_oscillation` (losses swinging from epoch to epoch, a
learning rate too high) and :func:`detect_noisy_validation`; and, in the same section of the engine,
the output-activation findings :func:`detect_from_logits_mismatch` (an activation applied twice) and
:func:`detect_saturated_outputs` (outputs pinned at 0 or 1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import xlogy

from pipelines.curves.detectors.context import (
    MIN_JUDGE_EPOCHS,
    MIN_SWING_EPOCHS,
    Context,
    class_shares,
    validation_frequency,
)
from pipelines.curves.detectors.not_learning import KERAS_CLIP_LOSS, clip_charge
from pipelines.curves.findings import (
    DOUBLE_SOFTMAX,
    LR_HIGH,
    SATURATED,
    SPLITS,
    VALIDATION_SWINGS,
    Code,
    fmt,
    make_finding,
)
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.plateau import binomial_sd, finite_series
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Curve, Finding, Severity


def swing(y: np.ndarray) -> tuple[float, float, float]:
    """(noise / trend extent, share of sign changes of first differences, noise SD) of a series.

    The trend is a 5-epoch moving average (it averages swings out); the noise is
    :func:`estimate_noise` with no leading epochs skipped. (0, 0, 0) for fewer than
    :data:`MIN_SWING_EPOCHS` values.
    """
    if y.size < MIN_SWING_EPOCHS:
        return 0.0, 0.0, 0.0
    sigma = estimate_noise(y, skip_fraction=0.0)
    padded = np.concatenate((y[:1], y[:1], y, y[-1:], y[-1:]))
    trend = np.convolve(padded, np.full(5, 0.2), mode="valid")
    extent = float(np.ptp(trend))
    d = np.diff(y)
    signs = np.sign(d[np.abs(d) > 1e-12])
    changes = float(np.mean(signs[1:] != signs[:-1])) if signs.size > 1 else 0.0
    return (sigma / extent if extent > 0 else math.inf), changes, sigma


def _loss_sampling_sd(curve: Curve, cfg: DiagnoseConfig) -> float:
    """The scatter of an epoch's mean training loss that its training-set size alone explains:
    ``loss_sd_ratio`` x level / sqrt(n_train), n_train read off the training accuracy's grid
    (:func:`infer_num_examples`); 0 when it cannot be read."""
    loss, accuracy = finite_series(curve, "loss"), finite_series(curve, "accuracy")
    n_train = infer_num_examples(accuracy[1]) if accuracy is not None else None
    if loss is None or not n_train:
        return 0.0
    return cfg.loss_sd_ratio * abs(float(np.median(loss[1]))) / math.sqrt(n_train)


#: A training loss whose median level after the first fifth is below this share of its highest
#: value is at about 0 (:func:`_late_loss_swings`): its relative steps mean nothing.
ZERO_LOSS_SHARE = 1e-3


def _late_loss_swings(curve: Curve, cfg: DiagnoseConfig) -> bool:
    """The training loss swinging after its first fall: over the run after its first fifth (at
    least ``MIN_SWING_EPOCHS`` values), its steps change direction on at least
    ``cfg.late_swing_changes`` of them and their median size is at least ``cfg.late_swing_step`` of
    the loss's median level and beyond what the training set's size explains
    (:func:`_loss_sampling_sd`). A loss at about 0 (its level below :data:`ZERO_LOSS_SHARE` of
    its highest value) does not swing.

    Against the trend's extent (:func:`swing`), the first fall dwarfs any later swing; against its
    own level, a mean over the whole training set does not move by a tenth from epoch to epoch
    once it has converged, but an optimiser overshooting does (Adam at 0.05 on a tabular task:
    0.04 to 0.12 and back, again and again).
    """
    series = finite_series(curve, "loss")
    if series is None:
        return False
    y = series[1][series[1].size // 5 :]
    # swing() gives the share of direction changes (0 under MIN_SWING_EPOCHS values).
    if y.size < MIN_SWING_EPOCHS or swing(y)[1] < cfg.late_swing_changes:
        return False
    step, level = _late_step(series[1])
    if level < ZERO_LOSS_SHARE * float(np.max(np.abs(series[1]))):
        # A loss driven to about 0 (a memorised training set: 1e-6 after 0.5) moves by its own
        # size from epoch to epoch in float round-off; against its level that is no swing.
        return False
    return step >= cfg.late_swing_step * level and step > _loss_sampling_sd(curve, cfg)


def _late_step(values: np.ndarray) -> tuple[float, float]:
    """(median absolute epoch-to-epoch step, absolute median level) of a loss after its first fifth
    (the first fall dwarfs any later step); (0, 0) under two values there."""
    y = values[values.size // 5 :]
    if y.size < 2:
        return 0.0, 0.0
    return float(np.median(np.abs(np.diff(y)))), abs(float(np.median(y)))


def _late_step_share(values: np.ndarray) -> float:
    """:func:`_late_step`'s step as a share of its level (inf at a level of 0)."""
    step, level = _late_step(values)
    return step / level if level > 0 else math.inf


def detect_oscillation(ctx: Context) -> Finding | None:
    """Losses swinging up and down from epoch to epoch, large against their trend: a learning rate too
    high.

    The training loss swings when its noise-to-trend ratio is at least ``oscillation_ratio`` / 2
    with sign changes in at least 20% of its steps, and its noise SD exceeds what the training set's
    size explains (:func:`_loss_sampling_sd`: a mean over 400 examples scatters by a tenth of its
    level); or when, after its first fall, its steps are large against its own level
    (:func:`_late_loss_swings`). The validation loss swings at ``oscillation_ratio`` with 30% sign
    changes and steps of at least ``val_swing_step`` of its level (:func:`_late_step_share`) and,
    with the validation set's size n known or read off the accuracy grid, of at least
    ``overfit_sd_ratio`` / sqrt(n) of it (the scale by which the mean cross-entropy of n examples
    moves as the model's answers on a few of them change, as for overfitting), and only counts when
    the validation accuracy's own epoch-to-epoch scatter exceeds ``swing_z`` binomial SDs of an
    accuracy on the validation set: on a small validation set a jittery val_loss is the set's size,
    not the optimiser (binomial sampling SD of an accuracy, sqrt(p (1 - p) / n)). When n is unknown
    because fewer than three accuracy values give it, the smallest grid the values lie on bounds n
    from below (:func:`infer_num_examples` with ``min_distinct=1``), so the SD from above; a
    val_accuracy that never changes vetoes the swing; else (no val_accuracy, or values on no grid)
    val_loss alone decides. A val_loss measured every k-th epoch (:func:`validation_frequency`) is
    not judged: its values are k epochs apart. When a schedule's high rates bring the largest steps
    (:func:`_swings_at_peak_rate`), the message says so: the schedule's peak is what to lower.
    """
    curve, cfg = ctx.curve, ctx.cfg
    stats: dict[str, tuple[float, float, float]] = {}
    for name in ("loss", "val_loss", "val_accuracy", "accuracy"):
        series = finite_series(curve, name)
        if series is not None:
            stats[name] = swing(series[1])
    swinging: list[str] = []
    if (
        "loss" in stats
        and stats["loss"][0] >= cfg.oscillation_ratio / 2
        and stats["loss"][1] >= 0.2
        and stats["loss"][2] > _loss_sampling_sd(curve, cfg)
    ) or _late_loss_swings(curve, cfg):
        swinging.append("loss")
    # Swings are changes from one epoch to the next: with validation every k-th epoch
    # (fit(validation_freq=k)) consecutive values are k epochs apart, and their second
    # differences carry the curve's own bend (8 values of a saturating run look like scatter),
    # so only the training loss, logged every epoch, can show them.
    sparse = validation_frequency(curve, "val_loss") is not None
    if (
        "val_loss" in stats
        and not sparse
        and stats["val_loss"][0] >= cfg.oscillation_ratio
        and stats["val_loss"][1] >= 0.3
        and _late_step_share(finite_series(curve, "val_loss")[1])  # type: ignore[index]
        >= max(cfg.val_swing_step, ctx.val_loss_scatter(1.0))  # as a share of its level
    ):
        beyond_sampling = True
        if "val_accuracy" in stats:
            val_acc = finite_series(curve, "val_accuracy")[1]  # type: ignore[index]
            # n unknown: the smallest grid the values lie on bounds it from below (so the SD from
            # above), e.g. a run at 14/16 with an epoch or two at 15/16; an accuracy that never
            # moves does not swing at all.
            n = ctx.n_val_at_least()
            if n:
                level = float(np.median(val_acc))
                beyond_sampling = stats["val_accuracy"][2] > cfg.swing_z * binomial_sd(level, n)
            elif np.unique(val_acc).size <= 1:
                beyond_sampling = False
        if beyond_sampling:
            swinging.append("val_loss")
    if not swinging:
        return None
    evidence: dict[str, Any] = {
        f"{k}_noise_to_trend": round(v[0], 4) for k, v in stats.items() if math.isfinite(v[0])
    }
    evidence.update({f"{k}_sign_changes": round(v[1], 3) for k, v in stats.items()})
    evidence["n_val"] = ctx.n_val
    verb = "swings" if len(swinging) == 1 else "swing"
    pronoun = "its" if len(swinging) == 1 else "their"
    message = f"{', '.join(swinging)} {verb} up and down from epoch to epoch, large against {pronoun} trend"
    peak = _swings_at_peak_rate(curve, swinging[-1])
    if peak is not None:
        evidence.update(swing_learning_rate=peak[0], calm_learning_rate=peak[1])
        message += (
            f"; the largest steps of {swinging[-1]} come at the schedule's highest learning rates "
            f"(median {fmt(peak[0])}, "
            f"against {fmt(peak[1])} on the other epochs): lower the schedule's peak"
        )
    groups = (LR_HIGH, VALIDATION_SWINGS) if swinging == ["val_loss"] else (LR_HIGH,)
    return make_finding(Code.OSCILLATION, Severity.WARNING, None, evidence, message, groups)


#: ``oscillation``: the epochs of the largest third of a loss's steps trained at a median logged
#: learning rate at least this many times the other epochs' (:func:`_swings_at_peak_rate`).
PEAK_RATE_RATIO = 1.5


def _swings_at_peak_rate(curve: Curve, name: str) -> tuple[float, float] | None:
    """(median learning rate on the epochs of ``name``'s largest third of epoch-to-epoch steps after
    its first fifth, median on the others) when a schedule varied the logged ``learning_rate`` and
    the large steps came at its high rates (:data:`PEAK_RATE_RATIO`): a one-cycle or cyclical
    schedule whose peak is too high. None otherwise (no rate logged, a rate that never rises to
    :data:`PEAK_RATE_RATIO` x its lowest, or swings spread over the schedule)."""
    lr, series = finite_series(curve, "learning_rate"), finite_series(curve, name)
    if lr is None or series is None or series[1].size < MIN_SWING_EPOCHS:
        return None
    rate = dict(zip(lr[0].tolist(), lr[1].tolist(), strict=True))
    if max(rate.values()) < PEAK_RATE_RATIO * min(rate.values()):
        return None
    # After the first fifth, as :func:`_late_step`: the first fall dwarfs any later step. A step is
    # the epoch it ends on (that epoch's rate moved the weights).
    start = series[1].size // 5
    steps = np.abs(np.diff(series[1][start:]))
    at = series[0][start + 1 :]
    known = np.asarray([int(e) in rate for e in at])
    steps, at = steps[known], at[known]
    if steps.size < MIN_SWING_EPOCHS:
        return None
    large = steps >= np.quantile(steps, 2 / 3)
    high = float(np.median([rate[int(e)] for e in at[large]]))
    low = float(np.median([rate[int(e)] for e in at[~large]])) if (~large).any() else high
    return (high, low) if high >= PEAK_RATE_RATIO * low else None


def double_softmax_floor(k: int) -> float:
    """ln(e + K - 1) - 1, in nats: the least cross-entropy a K-class softmax reaches on outputs that
    are already probabilities (in [0, 1], summing to 1). softmax(p) puts at most e / (e + K - 1) on
    any class, at a one-hot p (the largest exponent e^1 against K - 1 of e^0); K = 10: 1.461."""
    return math.log(math.e + k - 1) - 1.0


def calibrated_cross_entropy(accuracy: float, k: int) -> float:
    """-a ln a - (1 - a) ln((1 - a) / (K - 1)), in nats: the cross-entropy of a model calibrated at
    accuracy ``a`` (probability ``a`` on its predicted class, the rest spread evenly), a typical
    loss at that accuracy. Its terms at ``a`` = 0 or 1 are 0 (``scipy.special.xlogy``)."""
    a = min(max(float(accuracy), 0.0), 1.0)
    return float(-xlogy(a, a) - xlogy(1.0 - a, (1.0 - a) / (k - 1)))


#: ``from_logits_mismatch``: the training loss's lowest value lies at most (1 - accuracy + this
#: share) of the span from the double-softmax floor up to ln K above the floor: a softmax applied
#: twice costs about the floor on each example it gets right and up to ln K on the others.
DOUBLE_SOFTMAX_BAND = 0.1
#: ... and never more than this share below it (float32 round-off of an epoch's mean).
DOUBLE_SOFTMAX_BELOW = 0.01
#: ... while a calibrated model at the best training accuracy scores at most this share of it.
DOUBLE_SOFTMAX_SOUND_SHARE = 0.6


def double_sigmoid_floor(positive_share: float) -> tuple[float, float]:
    """(floor, uniform loss), in nats, of a binary cross-entropy taken on a sigmoid output as though
    it were a logit, with a share ``positive_share`` of label-1 examples. An output p in [0, 1] read
    as a logit gives sigmoid(p) in [0.5, 0.731]: at best -ln sigmoid(1) = 0.313 on a positive
    example and ln 2 on a negative one (p = 0); 0.503 on a balanced task. The uniform loss is the
    same mixture at p = 0.5 (an untrained model's output): 0.724 balanced."""
    pi = min(max(float(positive_share), 0.0), 1.0)
    floor = pi * math.log1p(math.exp(-1.0)) + (1.0 - pi) * math.log(2.0)
    uniform = pi * math.log1p(math.exp(-0.5)) + (1.0 - pi) * math.log1p(math.exp(0.5))
    return floor, uniform


def _squashed_twice_floor(curve: Curve) -> tuple[int, float, float, float, str] | None:
    """(K, floor, uniform loss, least floor over any label mix, the floor as a formula) of the loss when the
    output's activation is applied again by a loss with ``from_logits=True``: K >= 3 classes known
    (``num_classes`` or the prior), a softmax (:func:`double_softmax_floor`, uniform ln K, the floor
    whatever the labels); K = 2 with the class prior known, a sigmoid unit
    (:func:`double_sigmoid_floor`; with Dense(2, softmax) the floor, 0.313, is where sound binary
    runs sit). None otherwise."""
    prior = class_shares(curve)
    k = prior.size if prior is not None else curve.num_classes
    if k and k >= 3:
        floor = double_softmax_floor(k)
        return k, floor, math.log(k), floor, f"ln(e + {k - 1}) - 1"
    if k == 2 and prior is not None:
        floor, uniform = double_sigmoid_floor(float(prior[1]))
        least = double_sigmoid_floor(1.0)[0]  # every example positive: -ln sigmoid(1)
        return 2, floor, uniform, least, f"{fmt(float(prior[1]))} x 0.313 + {fmt(float(prior[0]))} x ln 2"
    return None


def detect_from_logits_mismatch(ctx: Context) -> Finding | None:
    """An output activation applied twice: a loss that cannot fall below its floor.

    ``SparseCategoricalCrossentropy(from_logits=True)`` (or ``CategoricalCrossentropy``) on a
    ``Dense(K, activation="softmax")`` output takes the probabilities for logits, and no epoch's
    mean loss can go below ln(e + K - 1) - 1 (:func:`double_softmax_floor`);
    ``BinaryCrossentropy(from_logits=True)`` on a ``Dense(1, activation="sigmoid")`` output cannot go
    below :func:`double_sigmoid_floor` (Keras warns of the mismatch once, at the first call:
    https://keras.io/api/losses/probabilistic_losses/). Found when :func:`_squashed_twice_floor`
    has a floor (K >= 3 classes known, or two with their prior), the training loss's lowest value
    lies between :data:`DOUBLE_SOFTMAX_BELOW` below the floor and (1 - a +
    :data:`DOUBLE_SOFTMAX_BAND`) of the way from it up to the uniform output's loss, ``a`` the best
    training accuracy (val_loss no lower than the floor of any label mix either), and a calibrated
    model at ``a`` (:func:`calibrated_cross_entropy`) scores at most
    :data:`DOUBLE_SOFTMAX_SOUND_SHARE` of that lowest loss: a sound run sits far below it (a real
    CNN at 0.948 training accuracy logged 1.514, against a floor of 1.461 and a calibrated 0.32; a
    sigmoid MLP at 0.937 on a balanced binary task logged 0.528 against 0.503 and 0.24; with 3
    classes at 0.85 a calibrated model scores 0.53, the floor's level, and nothing is said). A loss
    with a floor of its own (label smoothing near 0.5 with 10 classes, a large weight penalty) can
    look the same; the causes say so.
    """
    curve = ctx.curve
    squashed = _squashed_twice_floor(curve)
    if squashed is None:
        return None
    k, floor, uniform, least, formula = squashed
    loss, accuracy = finite_series(curve, "loss"), finite_series(curve, "accuracy")
    if loss is None or accuracy is None or loss[1].size < MIN_JUDGE_EPOCHS:
        return None
    lowest, best = float(np.min(loss[1])), float(np.max(accuracy[1]))
    top = floor + (1.0 - best + DOUBLE_SOFTMAX_BAND) * (uniform - floor)
    if not (1.0 - DOUBLE_SOFTMAX_BELOW) * floor <= lowest <= top:
        return None
    calibrated = calibrated_cross_entropy(best, k)
    if calibrated > DOUBLE_SOFTMAX_SOUND_SHARE * lowest:
        return None
    val_loss = finite_series(curve, "val_loss")
    if val_loss is not None and float(np.min(val_loss[1])) < (1.0 - DOUBLE_SOFTMAX_BELOW) * least:
        return None
    evidence = {
        "num_classes": int(k),
        "loss_floor": floor,
        "loss_min": lowest,
        "accuracy_max": best,
        "calibrated_loss": calibrated,
    }
    what = (
        f"a {k}-class cross-entropy taken on outputs that already went through a softmax"
        if k >= 3
        else "a binary cross-entropy taken on a sigmoid output as though it were a logit"
    )
    return make_finding(
        Code.FROM_LOGITS_MISMATCH,
        Severity.WARNING,
        int(loss[0][0]),  # the loss is squashed twice from the first epoch on
        evidence,
        f"the training loss never fell below {fmt(lowest)} while training accuracy reached {fmt(best)}: "
        f"{what} cannot go below {formula} = {fmt(floor)}, and a model calibrated at that accuracy "
        f"scores about {fmt(calibrated)}",
        (DOUBLE_SOFTMAX,),
    )


#: Where a training loss with its outputs pinned at 0 or 1 sits, as a share of what Keras charges
#: the examples it gets wrong at its clip ((1 - accuracy) x :data:`KERAS_CLIP_LOSS`): each wrong one
#: costs -ln(1e-7) and each right one about nothing; outputs strictly between 0 and 1 add a little,
#: and a sound sigmoid or softmax output sits far below (a first epoch at 0.1 to 0.35 of it).
SATURATED_CHARGE_BAND = (0.85, 1.15)
#: ... and its first epoch, whose mean holds the steps before the outputs reached the clip, at least
#: this share (a linear ``Dense(1)`` read by ``binary_crossentropy``: 0.848 under TensorFlow, 0.92-0.96
#: under JAX, on 10,000 images; the corpus' sound and underfit runs: 0.37 to 0.45 where later
#: epochs come nearest the band).
SATURATED_FIRST_EPOCH_MIN = 0.6


def detect_saturated_outputs(ctx: Context) -> Finding | None:
    """Outputs pinned at 0 or 1: a training loss that is Keras' clip charge for its errors, every epoch.

    Keras' cross-entropy with ``from_logits=False`` clips each probability to [1e-7, 1 - 1e-7]
    (``keras.config.epsilon()``, https://keras.io/api/utils/config_utils/#epsilon-function), so an
    example whose output sits on the wrong side of 0 or 1 costs -ln(1e-7) = 16.118
    (:data:`KERAS_CLIP_LOSS`) and passes no gradient. Found when, on every epoch with training
    accuracy below 1 (at least :data:`MIN_JUDGE_EPOCHS` of them, the first among them) but the
    first, the training loss lies within :data:`SATURATED_CHARGE_BAND` of (1 - accuracy) x 16.118
    (:func:`clip_charge`), the first epoch at least :data:`SATURATED_FIRST_EPOCH_MIN` of it (its
    mean holds the steps before the outputs got there): a sigmoid or softmax output starts near
    uniform and charges a tenth to a third of that, so outputs at the clip from the start are not
    probabilities (a linear or relu last layer) or are saturated by unscaled inputs. (Keras'
    TensorFlow backend computes a sigmoid or softmax output's cross-entropy from its logits,
    unclipped: there only the first cause shows.) Real runs (session 26): ``Dense(1)`` and
    ``Dense(1, relu)`` read by ``binary_crossentropy`` logged 1.72 at 0.892 (0.99 of the charge) and
    swung between 0.73 and 0.90 validation accuracy; a sigmoid output on inputs in 0-255 sat at
    0.98. The nearest corpus runs stay at or below 0.73 on some epoch after the first. A dead
    network at chance has the same loss; :func:`detect_not_learning` says so there, and the
    arbitration keeps that finding instead.
    """
    curve = ctx.curve
    loss, accuracy = curve.get("loss"), curve.get("accuracy")
    if loss is None or accuracy is None or len(loss) != len(accuracy):
        return None
    loss, accuracy = np.asarray(loss, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    keep = np.isfinite(loss) & np.isfinite(accuracy) & (accuracy < 1.0 - 1e-6)
    if keep.sum() < MIN_JUDGE_EPOCHS or not keep[0]:
        return None
    share = clip_charge(loss[keep], accuracy[keep])
    low, high = SATURATED_CHARGE_BAND
    later = share[1:]
    if not (
        share[0] >= SATURATED_FIRST_EPOCH_MIN and float(later.min()) >= low and float(share.max()) <= high
    ):
        return None
    epochs = np.asarray(curve.epochs)[keep]
    last = int(np.flatnonzero(keep)[-1])
    evidence: dict[str, Any] = {
        "clip_charge_first": float(share[0]),
        "clip_charge_min": float(later.min()),
        "clip_charge_max": float(share.max()),
        "loss_last": float(loss[last]),
        "accuracy_last": float(accuracy[last]),
    }
    message = (
        f"the training loss is what Keras' cross-entropy charges for the examples it gets wrong at its "
        f"probability clip (-ln(1e-7) = {fmt(KERAS_CLIP_LOSS)} each) and about nothing for the rest, on "
        f"every epoch after the first ({fmt(float(later.min()))} to {fmt(float(later.max()))} x that "
        f"charge; {fmt(float(loss[last]))} at training accuracy {fmt(float(accuracy[last]))}, epoch "
        f"{int(epochs[-1])}): the outputs sit at 0 or 1, not in between"
    )
    val_loss, val_acc = curve.get("val_loss"), curve.get("val_accuracy")
    if val_loss is not None and val_acc is not None and len(val_loss) == len(val_acc):
        vl, va = np.asarray(val_loss, dtype=np.float64), np.asarray(val_acc, dtype=np.float64)
        ok = np.flatnonzero(np.isfinite(vl) & np.isfinite(va) & (va < 1.0 - 1e-6))
        if ok.size:
            v = float(clip_charge(vl[ok[-1:]], va[ok[-1:]])[0])
            evidence["val_clip_charge_last"] = v
            if low <= v <= high:
                message += (
                    f"; so does val_loss ({fmt(float(vl[ok[-1]]))} at val_accuracy {fmt(float(va[ok[-1]]))})"
                )
    onset = int(epochs[0])
    return make_finding(Code.SATURATED_OUTPUTS, Severity.WARNING, onset, evidence, message, (SATURATED,))


def detect_noisy_validation(ctx: Context) -> Finding | None:
    """Validation accuracy much noisier than training accuracy (an INFO note, not a verdict).

    Noise-to-trend ratio of val_accuracy >= 0.075 with >= 40% sign changes and a noise SD at least
    5x the training accuracy's (real runs: about 3x). With the validation set's size known (or
    read off its grid), the message says what the set can resolve (its step 1 / n and 2 binomial
    SDs at the last level).
    """
    val = finite_series(ctx.curve, "val_accuracy")
    if val is None:
        return None
    ratio, changes, val_sigma = swing(val[1])
    if changes < 0.4 or ratio < 0.075:
        return None
    train = finite_series(ctx.curve, "accuracy")
    train_sigma = estimate_noise(train[1], skip_fraction=0.0) if train is not None else 0.0
    if val_sigma < 5 * max(train_sigma, 1e-12):
        return None
    message = "validation accuracy is much noisier than training accuracy"
    if ctx.n_val:
        # What the set can resolve: one example is a step of 1 / n, and two runs (or epochs) whose
        # accuracies differ by less than about 2 binomial SDs are not told apart by it.
        level = float(np.mean(val[1][-3:]))
        message += (
            f": {ctx.n_val} validation examples move it in steps of {fmt(1.0 / ctx.n_val)}, and differences"
            f" under {fmt(2 * ctx.accuracy_sd(level))} (2 binomial SDs at {fmt(level)}) are noise"
        )
    return make_finding(
        Code.NOISY_VALIDATION,
        Severity.INFO,
        None,
        {"val_accuracy_noise_to_trend": round(ratio, 4), "val_accuracy_noise": val_sigma, "n_val": ctx.n_val},
        message,
        (SPLITS,),
    )
