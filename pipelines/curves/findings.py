"""Finding codes and the cause/remedy catalogue: what each finding means and what to try.

One place for every text a finding shows besides its own message, so that adding a finding is one
enum member here, one module in the :mod:`pipelines.curves.detectors` package (its detector,
re-exported by the package) and one precedence entry in :mod:`pipelines.curves.arbitrate`. Within
one finding, causes and remedies never contradict each other: each finding takes the groups its
evidence supports (e.g. a stall on a memorising model gets the regularisation remedies, a stall on a
model that cannot fit its training set the capacity ones, never both).
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from pipelines.curves.types import Finding, Severity


class Code(str, Enum):
    """Stable machine names of findings (str-valued, so they serialise as plain strings).

    Per-run findings come from :func:`pipelines.curves.diagnose.diagnose`; the cross-run ones
    (``curve_regression``, ``regression``, ``series_stall``, ``tuning_optimism``) from
    :mod:`pipelines.curves.compare` and :mod:`pipelines.curves.gate`.
    """

    DIVERGENCE = "divergence"
    NOT_LEARNING = "not_learning"
    INCOMPLETE = "incomplete"
    OVERFITTING = "overfitting"
    PLATEAU = "plateau"
    UNDERFITTING = "underfitting"
    OSCILLATION = "oscillation"
    TOO_SLOW = "too_slow"
    SPLIT_MISMATCH = "split_mismatch"
    HEALTHY = "healthy"
    NOISY_VALIDATION = "noisy_validation"
    FROM_LOGITS_MISMATCH = "from_logits_mismatch"
    SATURATED_OUTPUTS = "saturated_outputs"
    CURVE_REGRESSION = "curve_regression"
    REGRESSION = "regression"
    SERIES_STALL = "series_stall"
    TUNING_OPTIMISM = "tuning_optimism"

    def __str__(self) -> str:
        return self.value


# (causes, remedies): groups a finding picks from by its evidence.
Group = tuple[tuple[str, ...], tuple[str, ...]]

MEMORISING: Group = (
    ("training accuracy keeps rising far above validation: the model memorises the training set",),
    (
        "add data augmentation (random flips / translations)",
        "raise dropout",
        "add L2 weight decay",
        "collect more training data",
        "use EarlyStopping(restore_best_weights=True) to keep the best epoch",
    ),
)
OVERCONFIDENT: Group = (
    (
        "val_loss rises because the model grows overconfident on the validation examples it gets "
        "wrong, while it still gets more of them right",
    ),
    (
        "early-stop and checkpoint on val_accuracy: EarlyStopping(monitor='val_accuracy', "
        "restore_best_weights=True), ModelCheckpoint(monitor='val_accuracy'); on val_loss they "
        "would keep the earlier, less accurate epoch",
        "temper the confidence: label smoothing, or a lower learning rate late in training",
    ),
)
CAPACITY: Group = (
    ("training accuracy is as low as validation: too little capacity or poor optimisation",),
    (
        "use a deeper or wider model (more filters / layers, a ResNet-style block)",
        "try a different learning rate or a schedule (ReduceLROnPlateau)",
        "train longer",
    ),
)
INPUTS: Group = (
    ("a plateau near chance or at a low level often means badly scaled inputs or wrong labels",),
    ("check input normalisation / feature scaling", "check that labels match their images"),
)
SPLITS: Group = (
    (
        "training and validation splits differ in distribution, or the validation set is too small",
        "time-ordered data split at random leaks the future into training",
    ),
    (
        "look at the validation stage's skew (label / intensity KL) and leakage results",
        "enlarge the validation set",
        "for time-ordered data, use a temporal split (train on the past, validate on the future)",
    ),
)
REGULARISED: Group = (
    (
        "training accuracy sits below validation's: Keras scores it with dropout, input noise or "
        "augmentation on, so strong regularisation (dropout near 0.9, heavy augmentation, a large "
        "weight penalty) holds down the fit it measures",
    ),
    (
        "lower dropout, augmentation or weight decay, then judge the fit with "
        "model.evaluate(x_train, y_train), which runs with them off",
    ),
)
UNSHUFFLED: Group = (
    (
        "training batches not shuffled (data ordered by class with fit(shuffle=False), or a tf.data "
        "pipeline without .shuffle()): each step fits the class at hand and forgets the others, so "
        "the accuracy scored during the epoch says little about the model at its end",
    ),
    (
        "shuffle the training data every epoch (fit(shuffle=True), the default for arrays; "
        "dataset.shuffle(buffer_size) before .batch() for tf.data)",
    ),
)
UNSEEN_LABELS: Group = (
    (
        "the validation set holds classes (or label codes) the training set does not: Keras' "
        "fit(validation_split=...) takes the last examples before any shuffling, so data ordered by "
        "class leaves whole classes out of training",
    ),
    (
        "shuffle the data before fit(validation_split=...), or split with "
        "sklearn.model_selection.train_test_split(..., stratify=y)",
        "check that training and validation labels use the same encoding (class order, one-hot vs integer)",
    ),
)
SKEW: Group = (
    (
        "the validation inputs are not prepared as the training inputs (another scaling, inverted or "
        "otherwise transformed images) or come from another domain",
    ),
    (
        "run the validation data through exactly the training preprocessing (the same normalisation "
        "layer or function, fitted on the training set)",
        "compare the two splits' inputs: the validate stage's skew check (intensity KL)",
    ),
)
WEIGHTS_STILL: Group = (
    (
        "the weights no longer change (the training loss repeats itself epoch after epoch): a "
        "learning rate decayed to about zero, frozen layers, or a point the optimiser cannot leave "
        "at this rate; training longer changes nothing",
    ),
    (
        "check the learning-rate schedule (decay rate, steps) and ReduceLROnPlateau's min_lr",
        "check that the layers train (layer.trainable / base_model.trainable)",
        "raise the learning rate or restart the schedule (warm restarts), then a wider or deeper model",
    ),
)
LR_HIGH: Group = (
    ("learning rate too high (or batch too small): updates overshoot",),
    ("lower the learning rate", "enlarge the batch size"),
)
VALIDATION_SWINGS: Group = (
    (
        "only the validation loss swings, the training loss is smooth: the weights move more "
        "between epochs than training shows, as BatchNormalization's moving averages lagging "
        "behind them (small batches) or training inputs that strong augmentation or dropout keep "
        "unlike the validation ones",
    ),
    (
        "watch the trend over several epochs and keep the best epoch "
        "(EarlyStopping(restore_best_weights=True))",
        "with BatchNormalization, enlarge the batch or lower the layer's momentum (e.g. 0.9)",
        "weaken the augmentation if training accuracy stays far below validation's",
    ),
)
LR_LOW: Group = (
    ("learning rate too low: steady but slow progress",),
    ("raise the learning rate", "use a learning-rate warm-up"),
)
EXPLODING: Group = (
    ("exploding gradients or a numerically unstable loss",),
    ("clip gradients (clipnorm)", "check inputs for NaN/inf and normalise them"),
)
DEAD: Group = (
    ("a frozen or dead network (all ReLUs off, or every output pushed to one class)",),
    ("try a learning rate 10x lower and 10x higher", "check the last layer's activation and the loss"),
)
MAJORITY: Group = (
    (
        "the model predicts the majority class for every example: on an imbalanced task that alone "
        "scores the majority share",
    ),
    (
        "weight the classes (class_weight) or resample the training set",
        "watch a metric that sees the minority class (balanced accuracy, per-class recall)",
    ),
)
CONSTANT_OUTPUT: Group = (
    (
        "the predicted class never changes while the loss learns: accuracy is scored on an output "
        "that cannot move (a softmax over one unit is always 1.0), on a metric that does not match "
        "the loss, or no example ever crosses the decision threshold",
    ),
    (
        "for one output unit use a sigmoid (softmax needs one unit per class), or softmax over 2 units "
        "with sparse_categorical_crossentropy",
        "check that the loss and the accuracy metric match the labels' format (binary vs categorical, "
        "integer vs one-hot) and the output's activation (from_logits)",
        "on an imbalanced task, weight the classes (class_weight) or tune the decision threshold",
    ),
)
ZERO_LOSS: Group = (
    (
        "the loss is zero whatever the weights, so it gives the optimiser no gradient: it does not "
        "measure this output (categorical_crossentropy over a single sigmoid unit is always 0, since "
        "its one probability is normalised over one class), or the labels are all zero",
    ),
    (
        "for one output unit use binary_crossentropy; for K classes, Dense(K, softmax) with "
        "sparse_categorical_crossentropy (integer labels) or categorical_crossentropy (one-hot)",
        "check that the labels reach the loss (not all zeros, not the wrong column)",
    ),
)
LABELS_OUT_OF_RANGE: Group = (
    (
        "the labels that reach the loss lie outside [0, 1]: binary_crossentropy given class indices "
        "(0 to K - 1), or labels -1 and +1 (a hinge loss's convention), rewards pushing the output to "
        "its clip without bound, so the loss falls below "
        "0, which no cross-entropy on labels in [0, 1] can; or a loss that is not a cross-entropy",
    ),
    (
        "for K classes use Dense(K, activation='softmax') with sparse_categorical_crossentropy "
        "(integer labels) or categorical_crossentropy (one-hot); for two, labels 0 and 1",
        "check the labels' values before fit (numpy.unique(y))",
    ),
)
#: One cause and its remedy that two groups share (:data:`NOT_PROBABILITIES`, :data:`SATURATED`):
#: an output that unscaled inputs pin at 0 or 1 from the first step.
UNSCALED_INPUTS = (
    "a sigmoid or softmax output saturated from the first step by unscaled inputs (raw features "
    "in the hundreds or thousands, pixels in 0-255): it outputs 0 or 1 and passes no gradient"
)
SCALE_INPUTS = (
    "scale the inputs (StandardScaler or keras.layers.Normalization for features, "
    "keras.layers.Rescaling(1 / 255) for pixels)"
)
NOT_PROBABILITIES: Group = (
    (
        "the loss reads outputs that are not probabilities: a last Dense layer without softmax (or "
        "sigmoid) while the loss keeps its default from_logits=False; a softmax over a single unit, "
        "1.0 whatever its input; or a softmax saturated on wrong classes, as after a blow-up",
        UNSCALED_INPUTS,
    ),
    (
        "give the last layer activation='softmax' (sigmoid for one unit), or pass from_logits=True "
        "to the loss",
        "if the loss blew up first, lower the learning rate",
        SCALE_INPUTS,
    ),
)
UNDEFINED_LOSS: Group = (
    (
        "the loss is undefined on some examples while the weights stay finite: an output layer that "
        "is not a probability (relu or linear) read by a cross-entropy with from_logits=False "
        "divides 0 by 0 where every output of an example is 0, or takes log(0); labels outside the "
        "loss's range; NaN or inf in some inputs; or, under mixed precision, a float16 loss that "
        "overflows on some batches (their steps are skipped)",
    ),
    (
        "give the last layer activation='softmax' (sigmoid for one unit), or pass from_logits=True "
        "to the loss",
        "check the inputs and labels (numpy.isfinite(x).all(), numpy.unique(y))",
        "stop at the first NaN batch with keras.callbacks.TerminateOnNaN() while you look",
    ),
)
SATURATED: Group = (
    (
        "the outputs sit at 0 or 1, not in between: a last Dense layer without sigmoid or softmax "
        "(linear, or relu) read by a loss with from_logits=False, which clips it to [1e-7, 1 - 1e-7] "
        "and gives no gradient beyond: each example on the wrong side costs -ln(1e-7) = 16.1 and "
        "stays there",
        UNSCALED_INPUTS,
        "initial weights far too large (a kernel_initializer such as RandomNormal(stddev=3)) make "
        "the logits huge from the first step, with the same effect",
    ),
    (
        "give the last layer activation='sigmoid' (one unit) or 'softmax' (one per class), or keep it "
        "linear and pass from_logits=True to the loss",
        SCALE_INPUTS,
        "keep Keras' default initialisers (glorot_uniform; he_normal before relu)",
    ),
)
DOUBLE_SOFTMAX: Group = (
    (
        "the loss applies a softmax (or sigmoid) to outputs that already went through one "
        "(from_logits=True on a softmax or sigmoid output layer): its gradients shrink as the model "
        "grows confident, so it learns slowly and can never be sure of any class",
        "or a loss with a floor of its own: label smoothing near 0.5, or a large weight penalty "
        "added to the loss",
    ),
    (
        "keep the softmax (sigmoid) output layer and use the loss with from_logits=False (Keras' default)",
        "or drop the output activation (Dense(K), Dense(1)) and keep from_logits=True",
    ),
)
INTERRUPTED: Group = (
    ("the run was interrupted, is still running, or logged only some epochs",),
    ("resume or rerun it before comparing it (BackupAndRestore resumes interrupted training)",),
)
CONVERGED: Group = (
    ("the model has converged at this configuration",),
    ("stop here; to go higher change the model, data or schedule, not the epoch count",),
)


# Remedies that pull in opposite directions: one finding never carries both.
CONTRADICTORY: tuple[tuple[str, str], ...] = (
    ("lower the learning rate", "raise the learning rate"),
    ("lower the learning rate", "try a learning rate 10x lower and 10x higher"),
    ("raise the learning rate", "try a learning rate 10x lower and 10x higher"),
    ("raise dropout", "use a deeper or wider model (more filters / layers, a ResNet-style block)"),
    ("add L2 weight decay", "use a deeper or wider model (more filters / layers, a ResNet-style block)"),
)


def fmt(value: float) -> str:
    """A metric value for a message: 3 decimals, 4 significant digits from 100 up, and 2 significant
    digits below 0.0005 (a val_loss slope of 3e-05 per epoch read "-0.000")."""
    if value != 0 and abs(value) < 0.0005:
        return f"{value:.2g}"
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}"


def make_finding(
    code: Code,
    severity: Severity,
    onset: int | None,
    evidence: dict[str, Any],
    message: str,
    groups: tuple[Group, ...] = (),
) -> Finding:
    """Build a :class:`Finding`, merging the causes and remedies of ``groups`` in order (no repeats).

    Args:
        code: the finding's code.
        severity: how much the user should care.
        onset: epoch where it began, in the curve's epoch numbering (None when not tied to one).
        evidence: the numbers behind it; floats are rounded to 6 decimals for JSON.
        message: one plain sentence.
        groups: cause/remedy groups from this module.

    Returns:
        The finding; ``code`` is stored as its plain string value.

    Raises:
        ValueError: ``groups`` merge two remedies listed in :data:`CONTRADICTORY` (a programming
            error in a detector: its causes and remedies must not contradict each other).
    """
    causes: list[str] = []
    remedies: list[str] = []
    for group_causes, group_remedies in groups:
        causes += [c for c in group_causes if c not in causes]
        remedies += [r for r in group_remedies if r not in remedies]
    for a, b in CONTRADICTORY:
        if a in remedies and b in remedies:
            raise ValueError(f"{code}: contradictory remedies {a!r} and {b!r}")
    clean = {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in evidence.items()
    }
    return Finding(Code(code).value, severity, onset, clean, message, tuple(causes), tuple(remedies))
