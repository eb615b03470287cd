"""One pure detector per finding: each takes the run's :class:`Context` and returns a Finding or None.

The :class:`Context` is computed once per run (monitored metric, its noise, the plateau, chance
level, the validation set's size); detectors never call each other, and they never decide
precedence: :func:`pipelines.curves.arbitrate.arbitrate` does, in one place.

Thresholds come from :class:`pipelines.curves.settings.DiagnoseConfig` and are multiples of a noise
SD: the curve's own epoch-to-epoch scatter (:func:`pipelines.curves.noise.estimate_noise`), or the
binomial SD of an accuracy on the validation set's n examples, with n given by the caller or read
off the accuracy grid (:func:`pipelines.curves.noise.infer_num_examples`).

Chance level is the majority class's share when the class prior is known (an imbalanced task sits
there while predicting one class), else 1 / num_classes, else, from the curve alone, a validation
accuracy frozen at one value while the loss stays flat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtri, xlogy
from scipy.stats import entropy as shannon_entropy

from pipelines.curves.findings import (
    CAPACITY,
    CONSTANT_OUTPUT,
    CONVERGED,
    DEAD,
    DOUBLE_SOFTMAX,
    EXPLODING,
    INPUTS,
    INTERRUPTED,
    LABELS_OUT_OF_RANGE,
    LR_HIGH,
    LR_LOW,
    MAJORITY,
    MEMORISING,
    NOT_PROBABILITIES,
    OVERCONFIDENT,
    REGULARISED,
    SATURATED,
    SKEW,
    SPLITS,
    UNDEFINED_LOSS,
    UNSEEN_LABELS,
    UNSHUFFLED,
    VALIDATION_SWINGS,
    WEIGHTS_STILL,
    ZERO_LOSS,
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
    find_plateau,
    finite_series,
    plateau_message,
    projected_gain,
    slope_z,
)
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Curve, Finding, Severity

if TYPE_CHECKING:
    from pipelines.curves.extrapolate import Extrapolation

# Fewer epochs than this and a curve has no trend to speak of: two values are one difference.
MIN_JUDGE_EPOCHS = 3
# Swings need this many epochs: the noise estimate is a MAD of second differences, and from fewer
# than 6 of them one bump (one lucky epoch, as in a sound 6-epoch run) reads as an oscillation.
MIN_SWING_EPOCHS = 8


@dataclass(frozen=True)
class Context:
    """Everything the detectors share about one run, computed once.

    Attributes:
        curve: the run.
        cfg: thresholds.
        monitor: ``val_accuracy`` (preferred) or ``val_loss``.
        higher: True when larger values of ``monitor`` are better.
        x: (M,) int64 epochs of the finite ``monitor`` values.
        values: (M,) float64 finite ``monitor`` values.
        g: (M,) ``values`` oriented so that larger is better.
        sigma: epoch-to-epoch noise SD of ``monitor``.
        plateau: the flat tail of ``monitor`` (stall or convergence), or None.
        best_epoch: epoch of the best ``monitor`` value.
        chance: accuracy of a constant guess (majority share, else 1 / K), or None when unknown.
        chance_source: where ``chance`` came from: ``class_prior``, ``num_classes``,
            ``uniform_loss`` (a loss sitting at ln K, :func:`uniform_output_classes`),
            ``chance_accuracy`` (accuracy at 1 / K, loss at or above ln K,
            :func:`chance_accuracy_classes`) or None.
        prior_entropy: cross-entropy of predicting the class prior (nats): H(prior), or ln K.
        n_val: validation examples (given, else read off the val_accuracy grid), or None.
        baseline: a simple baseline's validation accuracy on the same split, or None.
        live: the run is still training.
        extrapolation: learning-curve forecast of ``monitor`` (when requested), or None.
    """

    curve: Curve
    cfg: DiagnoseConfig
    monitor: str
    higher: bool
    x: np.ndarray
    values: np.ndarray
    g: np.ndarray
    sigma: float
    plateau: Plateau | None
    best_epoch: int
    chance: float | None
    chance_source: str | None
    prior_entropy: float | None
    n_val: int | None
    baseline: float | None
    live: bool
    extrapolation: Extrapolation | None = None

    @property
    def horizon(self) -> int:
        """Epochs the run is judged against: its budget, or the epochs run when that is unknown."""
        return max(self.curve.epoch_budget or 0, int(self.curve.epochs[-1]) if self.curve.epochs.size else 0)

    @property
    def plateau_epochs(self) -> int:
        """Epochs from the plateau's onset to the run's last measured epoch (0 without a plateau).

        Counted in epochs, not values: a metric validated every k-th epoch
        (:func:`validation_frequency`) spans k epochs per value; for one value per epoch it equals
        ``plateau.flat_epochs``. What the messages and the evidence's ``flat_epochs`` say.
        """
        if self.plateau is None or not self.x.size:
            return 0
        return int(self.x[-1]) - self.plateau.onset_epoch

    @property
    def until(self) -> str:
        """How a message dates the last epoch: "so far" while the run still trains, else "before
        the end"."""
        return "so far" if self.live else "before the end"

    def accuracy_sd(self, level: float) -> float:
        """Binomial SD of a validation accuracy at ``level`` (0.0 when n is unknown)."""
        return binomial_sd(level, self.n_val) if self.n_val else 0.0

    def val_loss_scatter(self, level: float) -> float:
        """How far a mean validation loss at ``level`` moves as the model's answers on a few of
        the n validation examples change: ``overfit_sd_ratio`` x level / sqrt(n) (0.0 when n is
        unknown). Overfitting's rise and oscillation's steps must exceed it."""
        return self.cfg.overfit_sd_ratio * abs(level) / math.sqrt(self.n_val) if self.n_val else 0.0

    def n_val_at_least(self) -> int | None:
        """``n_val``, else a lower bound on it: the smallest grid val_accuracy's values lie on
        (:func:`infer_num_examples` with ``min_distinct=1``; 28/32 and 30/32 give 16), so that a
        binomial SD from it is an upper bound. None without a val_accuracy on any grid."""
        if self.n_val:
            return self.n_val
        val_acc = finite_series(self.curve, "val_accuracy")
        return infer_num_examples(val_acc[1], min_distinct=1) if val_acc is not None else None

    @cached_property
    def still_improving(self) -> bool:
        """The flat tail of val_accuracy is a pause in a run still improving
        (:func:`_still_improving`), worked out once: the stall (:func:`stall_reasons`), the
        underfitting (:func:`detect_underfitting`) and the healthy reading (:func:`healthy_finding`)
        all ask."""
        return _still_improving(self)

    @property
    def prior_known(self) -> bool:
        """``chance`` and ``prior_entropy`` come from the known class prior (not 1 / K or ln K)."""
        return self.chance_source == "class_prior"

    def level_fraction(self, level: float) -> float:
        """Share of the way from chance to 1.0 that an accuracy ``level`` has come.

        With chance unknown (a file alone), the level itself: (level - c) / (1 - c) falls as the
        chance level c rises, so c = 0 gives its largest value for any class count, and a level
        below ``low_level_fraction`` is low whatever the task's classes.
        """
        chance = self.chance or 0.0
        return (level - chance) / (1 - chance)

    def limit_at_chance(self) -> float:
        """The highest validation accuracy still at chance for this run (:func:`chance_limit`).

        Raises:
            ValueError: the run has no chance level.
        """
        if self.chance is None:
            raise ValueError(f"{self.curve.run}: no chance level to bound")
        return chance_limit(self.chance, self.n_val, self.sigma, prior_known=self.prior_known)


def monitor_of(curve: Curve) -> tuple[str, bool] | None:
    """The validation metric to judge: ``val_accuracy`` when it has a finite value, else ``val_loss``.

    Returns:
        (name, higher_is_better), or None when neither has a finite value.
    """
    for name, higher in (("val_accuracy", True), ("val_loss", False)):
        values = curve.get(name)
        if values is not None and np.isfinite(np.asarray(values, dtype=np.float64)).sum() >= 1:
            return name, higher
    return None


def class_shares(curve: Curve) -> np.ndarray | None:
    """The curve's class prior as shares of the classes present, summing to 1 ((K,) float64, every
    share > 0), or None when no prior is given.

    Raises:
        ValueError: a class prior with a negative or non-finite share, or fewer than two classes.
    """
    prior = curve.class_prior
    if not prior:
        return None
    p = np.asarray(prior, dtype=np.float64)
    if not np.all(np.isfinite(p)) or np.any(p < 0) or np.count_nonzero(p) < 2:
        raise ValueError(
            f"{curve.run}: class_prior {list(prior)} must hold finite, non-negative shares of at "
            "least two classes (one class alone leaves nothing to classify)"
        )
    return p[p > 0] / p.sum()


def chance_of(curve: Curve) -> tuple[float | None, str | None, float | None]:
    """(chance accuracy, its source, the prior's entropy in nats) from what the curve carries.

    A known class prior gives the majority share and H(prior); a class count K gives 1 / K and ln K;
    neither, a loss sitting at ln K (:func:`uniform_output_classes`), else an accuracy sitting at
    1 / K with the loss no lower than ln K (:func:`chance_accuracy_classes`), gives 1 / K and ln K.

    Raises:
        ValueError: a class prior with a negative or non-finite share, or fewer than two classes.
    """
    p = class_shares(curve)
    if p is not None:
        return float(p.max()), "class_prior", float(shannon_entropy(p))
    if curve.num_classes and curve.num_classes > 1:
        return 1.0 / curve.num_classes, "num_classes", math.log(curve.num_classes)
    k = uniform_output_classes(curve)
    if k is not None:
        return 1.0 / k, "uniform_loss", math.log(k)
    k = chance_accuracy_classes(curve)
    if k is not None:
        return 1.0 / k, "chance_accuracy", math.log(k)
    return None, None, None


#: Largest class count read off a loss at ln K, and the relative tolerance around ln K.
MAX_INFERRED_CLASSES = 1000
UNIFORM_LOSS_TOLERANCE = 0.06


def uniform_output_classes(curve: Curve) -> int | None:
    """K when the loss sits at ln K over the run's second half (else, on
    :data:`SLOW_START_MIN_EPOCHS` epochs or more, over its first half: a slow start that leaves
    ln K only late): outputs uniform over K classes.

    A softmax whose outputs are uniform over K classes has cross-entropy exactly ln K on any labels
    (and a dead network predicting the prior sits close to it on a balanced task): a validation
    loss (else training loss) whose median over the second half is within ``UNIFORM_LOSS_TOLERANCE``
    (6%) of ln K and within a quarter of the gap to ln(K + 1) (and 90% of those epochs within twice
    that), for an integer
    2 <= K <= ``MAX_INFERRED_CLASSES``, with the training loss's median over the same half no
    lower than ln K less the tolerance (when K is read off the validation loss), and the matching
    accuracy no higher than
    1 / K + 0.15 (1 - 1 / K) + 0.05 over those epochs, gives the class count when the caller did
    not. A learning run crosses ln K once; it does not stay there: the loss's least-squares trend
    over the half must move it by less than the tolerance.

    Returns:
        K, or None (no loss, a level matching no integer K, or a loss that moves off it).
    """
    for name in ("val_loss", "loss"):
        series = finite_series(curve, name)
        if series is None:
            continue
        k = _sits_at_ln_k(curve, name, series, late=True)
        if k is None and series[1].size >= SLOW_START_MIN_EPOCHS:
            # A slow start sits at ln K for its first half and only then leaves it.
            k = _sits_at_ln_k(curve, name, series, late=False)
        return k
    return None


def _half(values: np.ndarray, *, late: bool) -> np.ndarray:
    """The second half of ``values`` when ``late`` (the middle value with it), else the first."""
    half = values.size // 2
    return values[half:] if late else values[:half]


def _sits_at_ln_k(
    curve: Curve, name: str, series: tuple[np.ndarray, np.ndarray], *, late: bool
) -> int | None:
    """:func:`uniform_output_classes`' test on one half of the run (the second when ``late``)."""
    y = _half(series[1], late=late)
    if y.size == 0:
        return None
    level = float(np.median(y))
    if not 0.0 < level < math.log(MAX_INFERRED_CLASSES + 0.5):
        return None
    k = int(round(math.exp(level)))
    if k < 2:
        return None
    ln_k = math.log(k)
    # A quarter of the gap to ln(K + 1) at most: for large K the levels crowd together, and a
    # loss between two of them names neither.
    tolerance = min(UNIFORM_LOSS_TOLERANCE * ln_k, 0.25 * (math.log(k + 1) - ln_k))
    # Its median within the tolerance, and 90% of the epochs within twice it (a loss measured
    # on few examples scatters around its level).
    if abs(level - ln_k) > tolerance or float(np.mean(np.abs(y - ln_k) <= 2 * tolerance)) < 0.9:
        return None
    # Sitting there, not passing through: its least-squares trend over the half moves it by
    # less than the tolerance (a learning run's loss falling steadily past ln K does not).
    if y.size >= 3 and abs(float(np.polyfit(np.arange(y.size), y, 1)[0])) * (y.size - 1) > tolerance:
        return None
    # Uniform outputs score ln K on any labels, the training set's too (a penalty only adds to
    # it): a training loss below ln K means outputs that are not uniform, whose validation loss
    # only happens to sit near ln K (a dead 10-class network at 2.48 is no guess over 12).
    if name == "val_loss":
        train = finite_series(curve, "loss")
        if train is not None:
            part = _half(train[1], late=late)
            if part.size and float(np.median(part)) < ln_k - tolerance:
                return None
    # Uniform outputs score the share of whichever class the argmax picks: an accuracy far
    # above 1 / K over the same epochs is a learning run whose loss happens to pass ln K.
    acc = finite_series(curve, "val_accuracy" if name == "val_loss" else "accuracy")
    if acc is not None:
        tail = _half(acc[1], late=late)
        if tail.size and float(np.max(tail)) > 1.0 / k + 0.15 * (1.0 - 1.0 / k) + 0.05:
            return None
    return k


#: Rule 4 of :func:`detect_divergence` without a class count: a classifier's val_loss never below
#: this many times ln(MAX_INFERRED_CLASSES) (fitted on the corpus' tune split among 2, 3, 5, 10).
BLIND_LOSS_FACTOR = 2.0

#: A loss below this share of the prior's entropy has learned something beyond the class prior (a
#: slow start, not a dead network learning the prior through its output bias).
BELOW_PRIOR_SHARE = 0.95

#: Share of ln K the validation loss must stay at or above for :func:`chance_accuracy_classes`.
CHANCE_LOSS_SHARE = 0.95


def chance_accuracy_classes(curve: Curve) -> int | None:
    """K when val_accuracy sits at 1 / K while val_loss stays at or above ln K: a network no better
    than a uniform guess over K classes, though its outputs are not uniform.

    A network trained on shuffled labels memorises its training set and its validation loss climbs
    above ln K, so :func:`uniform_output_classes` does not see it; a slow start sits at chance with
    a loss still above ln K. Over the whole run (at least ``MIN_JUDGE_EPOCHS`` epochs): K = the
    integer nearest 1 / (mean val_accuracy), 2 <= K <= ``MAX_INFERRED_CLASSES``, every
    val_accuracy within max(2 binomial SDs on the validation set (:func:`val_examples`), 0.01) of
    1 / K, and every val_loss at least ``CHANCE_LOSS_SHARE`` x ln K. The whole run, not its end: a
    6-class model that climbed from 1 / 6 to 1 / 3 and then overfitted (its val_loss above ln 3)
    learned something. An imbalanced binary task's dead network sits at its majority share, not
    at 1 / 2, and is left to the frozen-accuracy rule of :func:`detect_not_learning`.

    Fitted on the corpus' tune split; the cost is on small validation sets, where 2 binomial SDs
    span neighbouring 1 / K levels and a slow learner may be read as a guess over fewer classes.

    Returns:
        K, or None (no val_accuracy or val_loss, too few epochs, or an accuracy that is not 1 / K).
    """
    k, fits = _chance_accuracy_candidates(curve)
    return k if k in fits else None


def _class_count_range(curve: Curve) -> str:
    """The clause ', which bounds it only: 1 / 10 to 1 / 11 fit as well' when more than one K fits
    the accuracy (:func:`_chance_accuracy_candidates`), else an empty string."""
    fits = _chance_accuracy_candidates(curve)[1]
    if len(fits) < 2:
        return ""
    return f", which bounds it only: 1 / {fits[0]} to 1 / {fits[-1]} fit as well"


def _chance_accuracy_candidates(curve: Curve) -> tuple[int | None, list[int]]:
    """(the integer nearest 1 / mean val_accuracy, every K that fits) for
    :func:`chance_accuracy_classes`.

    A K fits (2 <= K <= ``MAX_INFERRED_CLASSES``, within 3 of the nearest) when every val_accuracy
    lies within its band of 1 / K and every val_loss is at least ``CHANCE_LOSS_SHARE`` x ln K; the
    list is ascending, empty when the curve does not qualify. More than one K means the class count
    is not read off the accuracy, only bounded: a frozen 0.095 on 2,000 examples is 1 / 10 or 1 / 11
    within 2 binomial SDs (a dead Fashion-MNIST network scoring one class's share of its validation
    set).
    """
    acc, loss = finite_series(curve, "val_accuracy"), finite_series(curve, "val_loss")
    if acc is None or loss is None:
        return None, []
    common, ia, il = np.intersect1d(acc[0], loss[0], return_indices=True)
    if common.size < MIN_JUDGE_EPOCHS:
        return None, []
    a, lv = acc[1][ia], loss[1][il]
    level = float(np.mean(a))
    if not 0.0 < level < 2.0 / 3.0:
        return None, []
    n = val_examples(curve)
    nearest = int(round(1.0 / level))
    fits = []
    for k in range(max(2, nearest - 3), min(MAX_INFERRED_CLASSES, nearest + 3) + 1):
        band = max(2 * binomial_sd(1.0 / k, n) if n else 0.0, 0.01)
        near = float(np.max(np.abs(a - 1.0 / k))) <= band
        if near and float(np.min(lv)) >= CHANCE_LOSS_SHARE * math.log(k):
            fits.append(k)
    return nearest, fits


def val_examples(curve: Curve) -> int | None:
    """Validation examples behind val_accuracy: given, else read off its grid
    (:func:`infer_num_examples`), else None."""
    if curve.num_val_examples is not None:
        return curve.num_val_examples
    val_acc = finite_series(curve, "val_accuracy")
    return infer_num_examples(val_acc[1]) if val_acc is not None else None


def chance_limit(chance: float, n_val: int | None, noise: float = 0.0, *, prior_known: bool = False) -> float:
    """The highest accuracy still "at chance".

    With the class prior known (``chance`` is its majority share) and ``n_val`` known: chance +
    max(3 noise SDs, 2 binomial SDs of an accuracy at chance on ``n_val`` examples, one example).
    Otherwise chance + max(15% of the way to 1.0, 3 noise SDs, 2 binomial SDs): with only a class
    count, chance is 1 / K, yet a network predicting one class scores that class's share of the
    validation set, which may be well above 1 / K.

    On 40 validation examples a network predicting the majority class of a balanced binary task
    scores anywhere from 0.35 to 0.65 (binomial SD 0.079): a fixed band would call such a run
    learning. On 1,000 examples of a 6-class task with a known prior, 0.34 against a chance of
    0.24 is 7 SDs above it: a network that learned a little (an overfitting one, a slow one), not
    a dead one.

    Args:
        chance: the chance level (majority share or 1/K), in [0, 1].
        n_val: examples the accuracy is measured on (None: unknown, no binomial term).
        noise: the accuracy curve's epoch-to-epoch noise SD.
        prior_known: ``chance`` is the known class prior's majority share (``chance_source``
            ``class_prior``), not 1 / K.
    """
    sd = binomial_sd(chance, n_val) if n_val else 0.0
    if n_val and prior_known:
        return chance + max(3 * noise, 2 * sd, 1.0 / n_val)
    return chance + max(0.15 * (1 - chance), 3 * noise, 2 * sd)


def build_context(
    curve: Curve,
    cfg: DiagnoseConfig,
    *,
    baseline_accuracy: float | None = None,
    live: bool = False,
    extrapolate: bool = False,
) -> Context | None:
    """Compute the shared statistics of a run; None when it has no validation metric to judge.

    Args:
        curve: the run.
        cfg: thresholds.
        baseline_accuracy: a simple baseline's validation accuracy, fraction in [0, 1].
        live: the run is still training.
        extrapolate: fit the learning-curve families (:mod:`pipelines.curves.extrapolate`, about
            0.1-0.3 s a run) to ``monitor``.
    """
    chosen = monitor_of(curve)
    if chosen is None:
        return None
    monitor, higher = chosen
    x, values = finite_series(curve, monitor)  # type: ignore[misc]
    g = values if higher else -values
    chance, source, entropy = chance_of(curve)
    n_val = val_examples(curve)
    sigma = estimate_noise(g)
    if monitor == "val_accuracy" and n_val:
        # An accuracy on n examples moves in steps of 1 / n: a change of less than one step cannot
        # be seen, so the noise is at least half a step, however calm the curve (a small set can
        # sit on one value for epochs, and its MAD of second differences is then zero).
        sigma = max(sigma, 0.5 / n_val)
    plateau = find_plateau(
        values,
        x,
        higher_is_better=higher,
        min_plateau_epochs=cfg.min_plateau_epochs,
        alpha=cfg.alpha,
        noise=sigma,
        metric=monitor,
    )
    if plateau is not None and not live and _climb_continues(x, g, plateau, sigma, cfg):
        plateau = None  # too short to tell from the climb: still improving, not flat
    forecast = None
    if extrapolate and values.size >= 5:
        from pipelines.curves.extrapolate import extrapolate as fit_curves

        horizon = max(curve.epoch_budget or 0, int(x[-1]))
        forecast = fit_curves(x, values, horizon, higher_is_better=higher)
    return Context(
        curve=curve,
        cfg=cfg,
        monitor=monitor,
        higher=higher,
        x=x,
        values=values,
        g=g,
        sigma=sigma,
        plateau=plateau,
        best_epoch=int(x[int(np.argmax(g))]),
        chance=chance,
        chance_source=source,
        prior_entropy=entropy,
        n_val=n_val,
        baseline=baseline_accuracy,
        live=live,
        extrapolation=forecast,
    )


#: Slope z the climb into a flat tail must reach for :func:`_climb_continues` to project it.
CLIMB_Z = 3.0


def _climb_continues(
    x: np.ndarray, g: np.ndarray, plateau: Plateau, sigma: float, cfg: DiagnoseConfig
) -> bool:
    """A flat tail at the end of a run that the climb into it predicts: too short to be a plateau.

    :func:`find_plateau` accepts a tail of ``min_plateau_epochs`` with no significant trend of its
    own; over 3 or 4 epochs a slow climb has none either. The climb is the OLS line of the
    w = max(2 x the tail, 6) epochs before the onset, kept when its slope's z (:func:`slope_z`, under
    the noise SD) reaches :data:`CLIMB_Z`; the tail continues it when the tail's mean is not below that line's
    prediction at the tail's mean epoch by more than the one-sided ``1 - alpha`` quantile of the
    difference's SD, sigma * sqrt(1 / tail + 1 / w + (x_tail - x_w)^2 / Sxx) (the prediction
    interval of a mean; Montgomery, Peck and Vining, "Introduction to Linear Regression
    Analysis", 5th ed., sec. 2.4). A real CNN at Adam 1e-5 climbing 0.001 an epoch on 10,000
    examples, with val_loss falling on every epoch, read as stalled on its last 3 epochs.

    Args:
        x: (E,) epochs of the monitored metric; g: (E,) its values, oriented so that higher is better.
        plateau: the flat tail :func:`find_plateau` found.
        sigma: the metric's noise SD.
        cfg: thresholds (``alpha``).
    """
    tail = plateau.flat_epochs + 1
    w = max(2 * tail, 6)
    i = plateau.onset_index
    if i < w:
        return False
    xs, ys = x[i - w : i].astype(float), g[i - w : i]
    if slope_z(xs, ys, sigma) < CLIMB_Z:
        return False
    xm = float(np.mean(xs))
    sxx = float(np.sum((xs - xm) ** 2))
    slope = float(np.sum((xs - xm) * (ys - np.mean(ys)))) / sxx
    xt = float(np.mean(x[i:]))
    predicted = float(np.mean(ys)) + slope * (xt - xm)
    sd = sigma * math.sqrt(1 / tail + 1 / w + (xt - xm) ** 2 / sxx)
    return float(np.mean(g[i:])) >= predicted - _z_crit(cfg) * sd


def _z_crit(cfg: DiagnoseConfig) -> float:
    return float(ndtri(1 - cfg.alpha))


def _tail(series: tuple[np.ndarray, np.ndarray] | None, start_epoch: int) -> np.ndarray:
    if series is None:
        return np.empty(0)
    return series[1][series[0] >= start_epoch]


# ----------------------------------------------------------------------------------------------
# divergence
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# not learning
# ----------------------------------------------------------------------------------------------


#: A frozen accuracy's training loss must fall by at least this share of its level over the frozen
#: span to count as still learning: a loss creeping by hundredths of a percent (a learning rate
#: orders of magnitude too small) leaves every prediction where it is.
FROZEN_LOSS_FALL = 0.01


def binary_entropy(p: float) -> float:
    """H2(p) = -p ln p - (1 - p) ln(1 - p), in nats (0 at p = 0 or 1; ``scipy.stats.entropy``)."""
    p = min(max(float(p), 0.0), 1.0)
    return float(shannon_entropy([p, 1.0 - p]))


def _frozen_span(values: np.ndarray, step: float) -> int:
    """Length of the trailing run of values all within ``step`` of the last one."""
    last = values[-1]
    far = np.flatnonzero(np.abs(values - last) > step)
    return int(values.size - (far[-1] + 1 if far.size else 0))


#: A slow start (:func:`_slow_start`) needs the training accuracy to gain at least this much
#: (accuracy points) over the run's second half.
SLOW_START_GAIN = 0.02


#: Epochs a log needs for a slow start to be told apart: two halves of at least 8
#: (:func:`_slow_start`, and the first-half class count of :func:`uniform_output_classes`).
SLOW_START_MIN_EPOCHS = 16


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


# ----------------------------------------------------------------------------------------------
# overfitting
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# plateau (a stall) versus convergence
# ----------------------------------------------------------------------------------------------


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


#: Relative epoch-to-epoch change of the training loss below which it "repeats itself": Keras'
#: training loss is the mean over an epoch of minibatches on weights that move, so while they move
#: it changes by 1e-4 of its level or more (the corpus' converged runs); a rate decayed to about 0
#: gives changes that shrink geometrically to float round-off.
STILL_LOSS_CHANGE = 1e-5
#: ... on at least this many consecutive epochs at the end of the run (:func:`weights_still`).
STILL_EPOCHS = 5


def weights_still(curve: Curve) -> int | None:
    """Trailing epochs over which the weights no longer change, read off the training loss.

    Every epoch-to-epoch change of the training loss over the run's last epochs below
    :data:`STILL_LOSS_CHANGE` of its level, on at least :data:`STILL_EPOCHS` changes in a row (a
    loss at about 0, below 1e-3, does not count: its relative changes mean nothing).

    Args:
        curve: the run.

    Returns:
        The number of trailing epochs (changes) that repeat, or None when fewer than
        :data:`STILL_EPOCHS` do (or no training loss is logged).
    """
    loss = finite_series(curve, "loss")
    if loss is None or loss[1].size <= STILL_EPOCHS or abs(float(loss[1][-1])) < 1e-3:
        return None
    values = loss[1]
    rel = np.abs(np.diff(values)) / np.maximum(np.abs(values[1:]), 1e-12)
    moved = np.flatnonzero(rel >= STILL_LOSS_CHANGE)
    still = int(rel.size - (moved[-1] + 1 if moved.size else 0))
    return still if still >= STILL_EPOCHS else None


def loss_unmoved(curve: Curve) -> bool:
    """The training loss has repeated itself over every epoch since the first
    (:func:`weights_still` over all of them, so at least :data:`STILL_EPOCHS`): the weights got no
    gradient from the first step. A first epoch alone has not shown that the loss does not move."""
    loss, still = finite_series(curve, "loss"), weights_still(curve)
    return loss is not None and still is not None and still >= loss[1].size - 1


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


# ----------------------------------------------------------------------------------------------
# underfitting
# ----------------------------------------------------------------------------------------------


def _is_low(ctx: Context, level: float, noise: float, values: np.ndarray | None, tail_epochs: int) -> bool:
    if ctx.level_fraction(level) < ctx.cfg.low_level_fraction:
        return True
    if ctx.baseline is not None:
        return level < ctx.baseline - baseline_margin(ctx.baseline, noise, tail_epochs, values, ctx.n_val)
    return False


def _practical_allowance(level: float, noise: float, n: int | None) -> float:
    """The range an accuracy tail at ``level`` may span and still be flat for practical purposes:
    max(3 noise SDs, 2 binomial SDs on ``n`` examples, 0.01)."""
    return max(3 * noise, 2 * binomial_sd(level, n) if n else 0.0, 0.01)


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


def _fit_tolerance(ctx: Context, plateau: Plateau) -> float:
    """How far training accuracy may sit from validation's plateau and still be "no better" (or
    "no worse"): max(3 noise SDs, 2 binomial SDs on the validation set, 0.05), in accuracy units."""
    return max(3 * plateau.noise, 2 * ctx.accuracy_sd(plateau.level), 0.05)


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


# ----------------------------------------------------------------------------------------------
# oscillation and noisy validation
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# too slow
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# split mismatch, incomplete, healthy
# ----------------------------------------------------------------------------------------------


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


def _early_stopped(ctx: Context) -> bool:
    curve = ctx.curve
    if curve.tags.get("stop_reason") or curve.tags.get("early_stopped") in {"1", "true", "True"}:
        return True
    # EarlyStopping stops `patience` (>= 1) epochs after its monitor's best: a run whose last epoch
    # is val_loss's lowest (Keras' default monitor) while val_accuracy is still at or near its best
    # was stopped by something else (killed, or a budget the file does not show).
    val_loss = finite_series(curve, "val_loss")
    if val_loss is not None and val_loss[1].size >= 2 and val_loss[1][-1] <= float(np.min(val_loss[1])):
        if (
            ctx.monitor != "val_accuracy"
            or int(curve.epochs[-1]) - ctx.best_epoch < ctx.cfg.min_plateau_epochs
        ):
            return False
    if ctx.plateau is not None:
        # Ended on a confirmed plateau: what EarlyStopping with a min_delta, or DiagnosisCallback,
        # stops on. A run killed there instead must say so with complete=False.
        return True
    patience = curve.params.get("train.early_stopping_patience")
    patience = (
        int(patience) if isinstance(patience, int | float) and patience > 0 else ctx.cfg.min_plateau_epochs
    )
    # EarlyStopping stops `patience` epochs after the best one.
    return int(curve.epochs[-1]) - ctx.best_epoch >= patience


def validation_frequency(curve: Curve, name: str) -> int | None:
    """k >= 2 when ``name`` was measured every k-th epoch, as ``fit(..., validation_freq=k)`` does.

    Keras validates after the 1-based epochs that are multiples of ``validation_freq``
    (https://keras.io/api/models/model_training_apis/#fit-method), and CSVLogger writes ``NA`` for
    the others (:data:`pipelines.curves.io.MISSING_CELLS`). So: the metric is finite exactly on the
    epochs ``e`` with ``e % k == 0`` (k its first finite epoch), and the training loss is finite on
    every other epoch (the epochs trained; a NaN there is divergence or a gap, not a schedule).

    Args:
        curve: the run.
        name: a validation metric (``val_accuracy``, ``val_loss``).

    Returns:
        k, or None when the metric is finite on every epoch, on fewer than two, or not on that
        schedule.
    """
    values, loss = curve.get(name), curve.get("loss")
    if values is None or loss is None:
        return None
    finite = np.isfinite(np.asarray(values, dtype=np.float64))
    if finite.all() or finite.sum() < 2:
        return None
    epochs = np.asarray(curve.epochs)
    k = int(epochs[finite][0])
    if k < 2 or not np.array_equal(finite, epochs % k == 0):
        return None
    if not np.all(np.isfinite(np.asarray(loss, dtype=np.float64)[~finite])):
        return None
    return k


def detect_incomplete(ctx: Context) -> Finding | None:
    """``complete=False``, missing epochs (gaps, or NaN in the monitored metric, unless it was
    validated every k-th epoch: :func:`validation_frequency`), or a run that ended before its budget
    without having early-stopped. Never for a live run.

    A log whose first epoch is not 1 is told apart from a log with holes: it starts at epoch k, as
    a ``fit(initial_epoch=k - 1)`` resumed into a new ``CSVLogger`` file (``append=False``
    overwrites) or a logger counting from 1 leave it. A log read from a file is "marked incomplete"
    exactly when its numbering has gaps (:func:`pipelines.curves.io.load_csv_logger`), so the killed /
    still-running reason is given only when the numbering has none (the caller said so).
    """
    if ctx.live:
        return None
    curve = ctx.curve
    epochs = np.asarray(curve.epochs)
    reasons: list[str] = []
    evidence: dict[str, Any] = {"epochs_run": int(epochs.size), "epoch_budget": curve.epoch_budget}
    missing = sorted(set(range(1, int(epochs[-1]) + 1)) - set(epochs.tolist())) if epochs.size else []
    if not curve.complete and not missing:  # gaps say it then (see the docstring)
        reasons.append("the run is marked incomplete (killed or still running)")
    leading = list(range(1, int(epochs[0]))) if epochs.size else []
    if leading:
        # The first epochs absent: a fit(initial_epoch=k) resumed into a new CSVLogger file
        # (append=False overwrites), or a logger that counts from 1 where CSVLogger counts from 0.
        evidence["first_epoch"] = int(epochs[0])
        reasons.append(
            f"the log starts at epoch {int(epochs[0])} (its first row has epoch = {int(epochs[0]) - 1}; "
            "CSVLogger counts from 0): a fit resumed with initial_epoch into a new log file, or a "
            "logger counting from 1"
        )
    values = np.asarray(curve.metrics[ctx.monitor], dtype=np.float64)
    every = validation_frequency(curve, ctx.monitor)
    if every is not None:
        evidence["validation_freq"] = every
    else:
        missing = sorted(set(missing) | set(epochs[~np.isfinite(values)].tolist()))
    if missing:
        evidence["missing_epochs"] = missing[:20]
        gaps = [e for e in missing if e not in leading]
        if gaps:
            reasons.append(f"{len(gaps)} epoch(s) missing ({', '.join(map(str, gaps[:5]))})")
    if curve.epoch_budget is not None and int(epochs[-1]) < curve.epoch_budget and not _early_stopped(ctx):
        reasons.append(f"stopped at epoch {int(epochs[-1])} of {curve.epoch_budget} without early stopping")
    if not reasons:
        return None
    return make_finding(
        Code.INCOMPLETE,
        Severity.WARNING,
        int(epochs[-1]) if epochs.size else None,
        evidence,
        "incomplete run: " + "; ".join(reasons),
        (INTERRUPTED,),
    )


#: Accuracy points the train-validation gap must grow by over a converged plateau for the healthy
#: message to mention it (below that, a gap moving by a point says nothing a user can act on).
GAP_NOTE_MIN = 0.02


def _loss_falls_over(
    ctx: Context,
    since: int,
    *,
    min_share: float | None = None,
    min_fall: float | None = None,
    min_values: int | None = None,
) -> tuple[float, float, float] | None:
    """(val_loss at epoch ``since``, at the end, share of the steps down) when val_loss fell over
    the epochs from ``since`` on: lower on at least ``min_share`` of the steps and by at least
    ``min_fall`` of its level, over at least ``min_values`` values; else None (also without a
    val_loss). The defaults are what :func:`detect_too_slow` asks of a loss still learning:
    ``slow_down_share``, ``live_loss_fall`` and ``min_plateau_epochs`` + 1 values."""
    cfg = ctx.cfg
    min_share = cfg.slow_down_share if min_share is None else min_share
    min_fall = cfg.live_loss_fall if min_fall is None else min_fall
    min_values = cfg.min_plateau_epochs + 1 if min_values is None else min_values
    val_loss = finite_series(ctx.curve, "val_loss")
    if val_loss is None:
        return None
    y = val_loss[1][val_loss[0] >= since]
    if y.size < min_values:
        return None
    share = float(np.mean(np.diff(y) < 0))
    start, end = float(y[0]), float(y[-1])
    if share >= min_share and start - end >= min_fall * abs(start):
        return start, end, share
    return None


#: OLS z of the monitored metric's slope over the run's last third (:func:`slope_z`, at least 3
#: epochs) above which a healthy run says "train longer"; a short flat stretch at the end of such a
#: run, while val_loss still falls, is not called converged, nor (with a gain beyond its binomial
#: noise, :func:`_still_improving`) a stall.
STILL_IMPROVING_Z = 3.0


def _recent_span(ctx: Context) -> int:
    """The run's last third, in logged epochs: at least 3."""
    return max(3, ctx.g.size // 3)


def _recent_trend_z(ctx: Context) -> float:
    """OLS z of the monitored metric's slope over the run's last third (:func:`_recent_span`; 0.0
    for a run of fewer than 3 epochs), against the curve's noise (:func:`slope_z`)."""
    if ctx.g.size < 3:
        return 0.0
    recent = _recent_span(ctx)
    return slope_z(ctx.x[-recent:].astype(float), ctx.g[-recent:], ctx.sigma)


def _still_improving(ctx: Context) -> bool:
    """The flat tail of val_accuracy is a pause in a run still improving, by a margin that matters:
    over the run's last third (:func:`_recent_span`) the accuracy rose beyond its noise (OLS z >
    :data:`STILL_IMPROVING_Z`, :func:`_recent_trend_z`) and by more than its binomial noise (the
    OLS line's rise above :func:`_practical_allowance`), and val_loss kept falling since the tail
    or the last third began, whichever is earlier (:func:`_loss_falls_over`). Such a tail is no
    stall (:func:`stall_reasons`) and no accuracy flat at a low level (:func:`detect_underfitting`):
    a real head trained on a frozen base, then fine-tuned at 1e-5, sat at 0.800 for its last 4 of
    60 epochs after rising 0.773 -> 0.800 (2 binomial SDs on its 974 validation examples) over its
    last 20, val_loss lower on every one of them, and read as a plateau and underfitting.

    :func:`healthy_finding` asks less of a run it already calls healthy (the z alone, val_loss
    falling over the tail) to say "still improving" rather than "converged"; overruling a warning
    takes the gain that matters too.
    """
    plateau = ctx.plateau
    if plateau is None or ctx.monitor != "val_accuracy" or ctx.g.size < 3:
        return False
    recent = _recent_span(ctx)
    x, y = ctx.x[-recent:].astype(float), ctx.g[-recent:]
    gain = float(np.polyfit(x, y, 1)[0]) * (x[-1] - x[0])  # the OLS line's rise over the last third
    return (
        _recent_trend_z(ctx) > STILL_IMPROVING_Z
        and gain > _practical_allowance(plateau.level, plateau.noise, ctx.n_val)
        and _loss_falls_over(ctx, min(plateau.onset_epoch, int(x[0]))) is not None
    )


def healthy_finding(ctx: Context) -> Finding:
    """The INFO finding for a run with no problem: converged, still improving, or too short/unclear.

    A converged run whose training accuracy kept climbing beyond noise (OLS z >= 3) while the
    train-validation gap grew by more than max(3 noise SDs, :data:`GAP_NOTE_MIN`), yet by less than
    :func:`stall_reasons` asks of a widening gap, says so, with the growth a stall would need: the
    evidence without the verdict (``gap_growth``, ``train_trend_z`` in the evidence). One whose
    val_loss kept falling over the plateau (:func:`_loss_falls_over`) says that too: "converged" on
    accuracy alone would hide a model still learning (a real imbalanced binary run sat at 0.902 for
    47 epochs while val_loss fell from 0.345 to 0.281). But when, besides that falling loss, the
    last third's accuracy still rose beyond noise (OLS z > :data:`STILL_IMPROVING_Z`), the short flat
    stretch at its end is no convergence: the run is "still improving ... train longer" (a real CNN
    with SGD at 1e-3 gained 1.6 points, 4 binomial SDs, over its last 12 of 35 epochs and read
    "converged" from its last 6).
    """
    plateau, values, x = ctx.plateau, ctx.values, ctx.x
    recent_z = _recent_trend_z(ctx)
    sharpening = (
        _loss_falls_over(ctx, plateau.onset_epoch)
        if plateau is not None and ctx.monitor == "val_accuracy"
        else None
    )
    if (
        plateau is not None
        and not (sharpening is not None and recent_z > STILL_IMPROVING_Z)
        and not ctx.still_improving
    ):
        evidence_c: dict[str, Any] = {
            "metric": ctx.monitor,
            "level": plateau.level,
            "spread": plateau.spread,
            "flat_epochs": ctx.plateau_epochs,
            "converged": True,
        }
        message = (
            "converged: "
            + plateau_message(plateau).replace(" flat at ", " at ")
            + f" ({ctx.plateau_epochs} epochs on the plateau {ctx.until})"
        )
        gap = _train_gap(ctx, plateau) if ctx.higher and "acc" in plateau.metric else {}
        if (
            gap
            and gap["train_trend_z"] >= 3
            and gap["gap_growth"] > max(3 * plateau.noise, GAP_NOTE_MIN)
            and gap["train_val_gap_end"] > 0
        ):
            # Training pulls away from a flat validation curve, by less than stall_reasons asks of a
            # widening gap: not a stall (yet), but the user sees it.
            widening = widening_threshold(ctx, plateau)
            evidence_c.update(gap_growth=gap["gap_growth"], train_trend_z=gap["train_trend_z"])
            grew, needed = fmt(gap["gap_growth"]), fmt(widening)
            if grew == needed:  # "grew by 0.031, short of the 0.031": one more decimal tells them apart
                grew, needed = f"{gap['gap_growth']:.4f}", f"{widening:.4f}"
            message += (
                f"; training accuracy kept climbing meanwhile, to {fmt(gap['train_end_level'])}: the "
                f"train-validation gap grew by {grew}"
                + (
                    f", short of the {needed} that would make it a stall"
                    if widening > gap["gap_growth"]
                    else ""
                )
            )
        if sharpening is not None:
            start, end, share = sharpening
            evidence_c.update(val_loss_plateau_start=start, val_loss_end=end, val_loss_down_share=share)
            message += (
                f"; val_loss still fell from {fmt(start)} to {fmt(end)} meanwhile (lower on {share:.0%} "
                "of the epochs): the model is still learning, though its accuracy has not moved beyond noise"
            )
        return make_finding(
            Code.HEALTHY, Severity.INFO, plateau.onset_epoch, evidence_c, message, (CONVERGED,)
        )
    evidence: dict[str, Any] = {"metric": ctx.monitor, "last": float(values[-1]), "converged": False}
    if ctx.g.size < MIN_JUDGE_EPOCHS:
        evidence["too_short"] = True
        return make_finding(
            Code.HEALTHY,
            Severity.INFO,
            None,
            evidence,
            f"too short to judge a trend: {ctx.g.size} epoch(s) of {ctx.monitor} "
            f"(last {fmt(float(values[-1]))} at epoch {int(x[-1])}); no chance-level, exploding or "
            "collapsing curve seen",
        )
    evidence["recent_trend_z"] = round(recent_z, 3)
    if recent_z < ctx.cfg.improving_z:
        return make_finding(
            Code.HEALTHY,
            Severity.INFO,
            None,
            evidence,
            f"{ctx.monitor} shows no clear trend yet at epoch {int(x[-1])} ({fmt(float(values[-1]))}; "
            f"last {_recent_span(ctx)} epochs neither improving beyond noise nor flat long enough to "
            "call converged)",
        )
    message = f"{ctx.monitor} still improving at epoch {int(x[-1])} ({fmt(float(values[-1]))})"
    remedies: tuple[Group, ...] = ()
    forecast = ctx.extrapolation
    if forecast is not None and math.isfinite(forecast.asymptote):
        gain = (forecast.asymptote - float(values[-1])) * (1 if ctx.higher else -1)
        evidence.update(asymptote=forecast.asymptote, plateau_epoch=forecast.plateau_epoch)
        if gain > 3 * ctx.sigma:
            message += f"; extrapolated ceiling {fmt(forecast.asymptote)}: train longer"
            remedies = (((), ("train longer",)),)
    elif recent_z > STILL_IMPROVING_Z:
        message += ": train longer"
        remedies = (((), ("train longer",)),)
    return make_finding(Code.HEALTHY, Severity.INFO, None, evidence, message, remedies)
