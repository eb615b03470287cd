"""The run's :class:`Context`, computed once by :func:`build_context`, and what several detectors share.

:class:`Context` holds the monitored metric, its noise, the plateau, chance level and the validation
set's size. Beside it: the chance level and class count read off a curve (:func:`chance_of`,
:func:`uniform_output_classes`, :func:`chance_accuracy_classes`, :func:`chance_limit`), the validation
set's size and cadence (:func:`val_examples`, :func:`validation_frequency`), weights that no longer
move (:func:`weights_still`, :func:`loss_unmoved`), a val_loss still falling
(:func:`_loss_falls_over`), a run still improving (:func:`_still_improving`, behind
``Context.still_improving``) and the small statistics the detectors share (:func:`_z_crit`,
:func:`_tail`, :func:`_frozen_span`, :func:`_practical_allowance`).

Chance level is the majority class's share when the class prior is known (an imbalanced task sits
there while predicting one class), else 1 / num_classes, else, from the curve alone, a validation
accuracy frozen at one value while the loss stays flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import ndtri
from scipy.stats import entropy as shannon_entropy

from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.plateau import Plateau, binomial_sd, find_plateau, finite_series, slope_z
from pipelines.curves.settings import DiagnoseConfig
from pipelines.curves.types import Curve

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


def _frozen_span(values: np.ndarray, step: float) -> int:
    """Length of the trailing run of values all within ``step`` of the last one."""
    last = values[-1]
    far = np.flatnonzero(np.abs(values - last) > step)
    return int(values.size - (far[-1] + 1 if far.size else 0))


#: Epochs a log needs for a slow start to be told apart: two halves of at least 8
#: (:func:`_slow_start`, and the first-half class count of :func:`uniform_output_classes`).
SLOW_START_MIN_EPOCHS = 16


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


def _practical_allowance(level: float, noise: float, n: int | None) -> float:
    """The range an accuracy tail at ``level`` may span and still be flat for practical purposes:
    max(3 noise SDs, 2 binomial SDs on ``n`` examples, 0.01)."""
    return max(3 * noise, 2 * binomial_sd(level, n) if n else 0.0, 0.01)


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
