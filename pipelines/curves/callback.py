"""Early stopping that explains itself: diagnose the curves while a Keras model trains.

``should_stop`` is the pure decision (usable to prune an Optuna trial from its intermediate
history); ``DiagnosisCallback`` is the Keras callback around it. Keras is imported only when
``DiagnosisCallback`` is first accessed (module ``__getattr__``, PEP 562), so importing
``should_stop`` does not start TensorFlow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import ndtri

from pipelines.curves.detectors import (
    BELOW_PRIOR_SHARE,
    last_lr_cut_epoch,
    lr_new_high_within,
    steady_improvement,
)
from pipelines.curves.diagnose import Diagnosis, diagnose
from pipelines.curves.findings import CONVERGED, Code, fmt, make_finding
from pipelines.curves.io import VALIDATION_METRICS, canonical_names, engine_metrics
from pipelines.curves.noise import estimate_noise
from pipelines.curves.plateau import Plateau, binomial_sd, plateau_message, slope_z
from pipelines.curves.settings import DEFAULT, DiagnoseConfig
from pipelines.curves.types import Curve, Finding, Severity

if TYPE_CHECKING:
    import keras

LOGGER = logging.getLogger(__name__)

__all__ = ["DiagnosisCallback", "StopDecision", "diagnose_history", "should_stop"]


def _history_curve(
    history: Mapping[str, Sequence[float]],
    epoch_budget: int | None,
    num_classes: int | None,
    run: str,
    class_prior: Sequence[float] | None = None,
) -> Curve:
    metrics = {
        name: np.asarray([math.nan if v is None else float(v) for v in values], dtype=np.float64)
        for name, values in history.items()
        if name != "epoch"
    }
    size = max((array.size for array in metrics.values()), default=0)
    # A metric logged for fewer epochs than the others (e.g. validation every other epoch) is
    # padded with NaN at the front so epochs stay aligned with the latest one.
    for name, array in metrics.items():
        if array.size < size:
            metrics[name] = np.concatenate([np.full(size - array.size, math.nan), array])
    return Curve(
        run=run,
        metrics=engine_metrics(metrics, run, announce=False),
        epochs=np.arange(1, size + 1, dtype=np.int64),
        epoch_budget=epoch_budget,
        complete=True,
        num_classes=num_classes,
        class_prior=tuple(float(p) for p in class_prior) if class_prior is not None else None,
    )


def diagnose_history(
    history: Mapping[str, Sequence[float]],
    epoch_budget: int | None = None,
    *,
    num_classes: int | None = None,
    class_prior: Sequence[float] | None = None,
    run: str = "live",
    **kwargs: Any,
) -> Diagnosis:
    """:func:`pipelines.curves.diagnose.diagnose` of a run still training (``live=True``).

    Args:
        history: Keras-style ``{metric: [value per epoch so far]}``.
        epoch_budget: epochs the run is configured for.
        num_classes: classes of the task, if known.
        class_prior: the training labels' class shares, if known.
        run: display name.
        **kwargs: passed on to ``diagnose`` (``min_plateau_epochs``, ``baseline_accuracy``, ...).

    Raises:
        ValueError: the history has no finite ``val_accuracy`` / ``val_loss`` value yet and its
            training loss did not diverge (a NaN or blown-up training loss is diagnosed as
            divergence without them); an invalid ``class_prior``; an unknown or invalid threshold
            in ``kwargs``.
    """
    curve = _history_curve(history, epoch_budget, num_classes, run, class_prior)
    return diagnose(curve, live=True, **kwargs)


@dataclass(frozen=True)
class StopDecision:
    """What :func:`should_stop` decided.

    Unpacks as ``stop, finding = decision`` (the finding is None when ``stop`` is False).

    Attributes:
        stop: stop training now.
        finding: the finding behind the stop: ``divergence``, a CRITICAL ``split_mismatch``,
            ``not_learning``, ``plateau`` (a stall, WARNING) or a converged ``plateau`` (INFO,
            ``evidence["converged"] = True``).
        reason: one line: why it stopped, the best epoch kept, and what the run would likely have
            reached by its budget (the learning-curve extrapolation with a 95% interval) when
            ``forecast`` was asked for; None when ``stop`` is False.
    """

    stop: bool
    finding: Finding | None
    reason: str | None = None

    def __iter__(self) -> Iterator[Any]:
        # Two-value unpacking, as the decision was a (stop, finding) pair before `reason` existed.
        return iter((self.stop, self.finding))


_NO = StopDecision(False, None, None)


def _loss_still_falling(
    history: Mapping[str, Sequence[float]],
    since: int,
    cfg: DiagnoseConfig,
    budget: int | None = None,
    *,
    with_training_loss: bool = False,
    below: float | None = None,
) -> bool:
    """val_loss (else the training loss) still falling: steadily over the run, or beyond noise lately.

    True when either (a) the loss improves steadily over the whole run (the ``too_slow`` rule,
    :func:`pipelines.curves.detectors.steady_improvement`: last third falling with OLS z >= 3 and
    at least half the first third's slope), or (b) its OLS slope from epoch ``since`` on is
    negative with z <= -z_(1-alpha) under the loss's own noise (:func:`pipelines.curves.noise.
    estimate_noise`). Accuracy on a small validation set moves in coarse steps, and a slow start
    sits at chance for epochs, while the loss already improves: such a run is still learning.

    With ``with_training_loss`` (a run at chance: is it dead, or a slow start?), also True when, from
    ``since`` on, val_loss heads down (a negative OLS slope, however noisy) while
    the training loss falls as (b) asks: a mean over a few validation examples scatters too much to
    show a slow fall within a few epochs, the training set's mean does not, and a network that only
    memorises (shuffled labels) raises val_loss meanwhile. A real iris MLP with plain SGD at 0.01,
    validated on 15 examples, sat at 5-6 of 15 for 17 epochs while both losses fell on almost every
    one (the training loss from 1.88 to 0.97) and was stopped at epoch 11 as not learning; it
    reached 13 of 15.
    """
    val, loss = _values(history, "val_loss"), _values(history, "loss")
    has_val, has_loss = bool(np.isfinite(val).any()), bool(np.isfinite(loss).any())
    if _falling(val if has_val else loss, since, cfg, budget):
        return True
    if not (with_training_loss and has_val and has_loss):
        return False
    epochs = np.arange(1, val.size + 1)
    mask = np.isfinite(val) & (epochs >= since)
    if mask.sum() < 3 or float(np.polyfit(epochs[mask].astype(float), val[mask], 1)[0]) >= 0:
        return False
    # Falling towards the prior's entropy from above is a dead network learning the class prior
    # through its output bias (detect_not_learning asks the same of a slow start).
    if below is not None and float(np.mean(loss[np.isfinite(loss)][-2:])) >= below:
        return False
    return _falling(loss, since, cfg, budget, steady_run=False)


def _values(history: Mapping[str, Sequence[float]], name: str) -> np.ndarray:
    """(E,) float64 values of metric ``name`` in ``history`` (None -> NaN; empty when absent)."""
    return np.asarray([math.nan if v is None else float(v) for v in history.get(name, [])], dtype=np.float64)


def _falling(
    values: np.ndarray, since: int, cfg: DiagnoseConfig, budget: int | None, *, steady_run: bool = True
) -> bool:
    """:func:`_loss_still_falling`'s tests (a) and (b) on one loss's (E,) ``values`` (epochs 1..E);
    without ``steady_run``, (b) alone, and its fall must reach ``live_loss_fall`` of the level within
    the window itself."""
    epochs = np.arange(1, values.size + 1)
    ok = np.isfinite(values)
    if ok.sum() < 3:
        return False
    sigma = estimate_noise(values[ok])
    z_crit = float(ndtri(1 - cfg.alpha))
    steady = steady_improvement(epochs[ok], -values[ok], sigma, max(3.0, z_crit)) if steady_run else None
    if steady is not None and steady["steadiness"] >= 0.5:
        return True
    mask = ok & (epochs >= since)
    if mask.sum() < 3:
        return False
    x, y = epochs[mask].astype(float), values[mask]
    if slope_z(x, y, sigma) > -z_crit:
        return False
    # Practically significant: at its recent pace the loss would fall by at least ``live_loss_fall``
    # of its level over the epochs left (twice the window when the budget is unknown); a loss
    # creeping down by a fraction of a percent an epoch leaves accuracy where it is.
    slope = float(np.polyfit(x, y, 1)[0])
    left = (budget - int(epochs[-1])) if budget else 2 * int(mask.sum())
    if not steady_run:
        left = int(mask.sum())
    level = float(np.mean(y[-3:]))
    return -slope * max(left, 1) >= cfg.live_loss_fall * abs(level)


def _min_delta(values: Sequence[float | None], diagnosis: Diagnosis) -> float:
    """The smallest change of the monitored metric that counts as an improvement.

    The curve's epoch-to-epoch noise SD, capped for val_accuracy by the binomial SD of one
    measurement on the validation set (``diagnosis.n_val``: given, or read off the accuracy grid):
    an oscillating run's jitter is not the measurement's noise, and a real gain of a few examples
    must still restart the count. For val_accuracy it is never below 1.5 examples (1.5 / n_val): a
    gain of one example is one step of the accuracy's grid, not an improvement the measurement can
    resolve (a real run on 1,000 examples, flat at 0.925 under ReduceLROnPlateau with a noise SD of
    0.00095, gained one example at epoch 16 and had its patience restarted).
    """
    noise = diagnosis.noise or 0.0
    if diagnosis.monitor != "val_accuracy" or not diagnosis.n_val:
        return noise
    y = np.asarray([math.nan if v is None else float(v) for v in values])
    return max(min(noise, binomial_sd(float(np.nanmax(y)), diagnosis.n_val)), 1.5 / diagnosis.n_val)


def _val_loss_best_within(history: Mapping[str, Sequence[float]], epochs: int) -> bool:
    """val_loss set a new best (lowest so far, by any margin) in the last ``epochs`` epochs.

    Keras' ``EarlyStopping(monitor="val_loss", min_delta=0)`` counts its patience from such an
    epoch (https://keras.io/api/callbacks/early_stopping/). False without a finite val_loss.
    """
    values = history.get("val_loss")
    if not values:
        return False
    best = last_improvement_epoch(values, 0.0, higher_is_better=False)
    return best is not None and len(values) - best < epochs


def _lr_cut_working(
    history: Mapping[str, Sequence[float]],
    monitored: Sequence[float],
    higher_is_better: bool,
    min_delta: float,
    patience: int,
) -> bool:
    """A step cut of the learning rate less than ``patience`` epochs ago whose effect shows: the
    monitored metric now beats its value on the last epoch at the old rate by more than 2 x
    ``min_delta`` (:func:`_min_delta`: noise SDs). The plateau was reached at the old rate; the new one is
    visibly moving the run and has not had its patience. (A cut that changes nothing visible
    gets no wait: waiting on every cut cost the tune split 2.5 of its median 15.5 epochs saved on
    stalls, for no less regret.) A real SGD run, cut from 0.1 to 0.01 at epoch 16, rose from
    0.757 to 0.822 in two epochs and was stopped there, 2.3 points short of its best.
    """
    cut = last_lr_cut_epoch(history)
    size = len(monitored)
    if cut is None or cut < 2 or size - cut + 1 >= patience or cut > size:
        return False
    before, now = monitored[cut - 2], monitored[size - 1]
    if before is None or now is None or not (math.isfinite(before) and math.isfinite(now)):
        return False
    gain = now - before if higher_is_better else before - now
    return gain > 2 * min_delta


def last_improvement_epoch(
    values: Sequence[float | None], min_delta: float, *, higher_is_better: bool = True
) -> int | None:
    """1-based epoch of the last improvement by more than ``min_delta`` over the best so far.

    Keras' ``EarlyStopping`` counts its patience from the last epoch that beat the best by more
    than ``min_delta``, the best being that of the last counted improvement
    (https://keras.io/api/callbacks/early_stopping/: gains smaller than ``min_delta`` add up until
    they count); :func:`should_stop` passes
    the metric's own epoch-to-epoch noise SD (:func:`pipelines.curves.noise.estimate_noise`,
    capped by the binomial SD of one measurement and never below 1.5 examples: :func:`_min_delta`),
    so a new best within noise does not restart the count.

    Args:
        values: (E,) metric per epoch (None/NaN skipped).
        min_delta: the smallest change that counts as an improvement (units of the metric, >= 0).
        higher_is_better: True for accuracies, False for losses.

    Returns:
        The epoch, or None when no value is finite.
    """
    sign = 1.0 if higher_is_better else -1.0
    best = -math.inf
    epoch = None
    for index, value in enumerate(values, start=1):
        if value is None or not math.isfinite(float(value)):
            continue
        v = sign * float(value)
        # As Keras: the best moves only on an improvement that counts. Moving it on every smaller
        # gain too made a steady climb of less than min_delta an epoch never count, and the live
        # stop fired on runs still rising (0.800, 0.801, ... 0.809 with min_delta 0.0015 read as
        # "last improved at epoch 1").
        if epoch is None or v > best + min_delta:
            best, epoch = v, index
    return epoch


def should_stop(
    history: Mapping[str, Sequence[float]],
    epoch_budget: int | None = None,
    *,
    num_classes: int | None = None,
    class_prior: Sequence[float] | None = None,
    baseline_accuracy: float | None = None,
    config: DiagnoseConfig | None = None,
    stop_on_divergence: bool = True,
    forecast: bool = False,
    weights_kept: bool = True,
    **overrides: Any,
) -> StopDecision:
    """Whether a run still training should stop now, and why, in one line.

    The decision, on the history so far (:func:`diagnose_history`, ``live=True``):

    1. ``divergence``, with ``stop_on_divergence``: a NaN/inf loss stops at once, from epoch 1
       (also when the weights came through it and only the loss of some examples is undefined: as
       ``keras.callbacks.TerminateOnNaN`` does; the reason says which);
       a finite blow-up (an exploded or dead network, a val_loss far above the prior's entropy)
       once it has lasted ``live_patience`` epochs and the loss is not coming back down beyond
       noise (a spike that recovers is not divergence).
    2. A CRITICAL ``split_mismatch`` (the validation set is not drawn like the training set, from
       epoch 1 on) for at least 2 x ``live_patience`` epochs: stop, saying so; its accuracy's
       plateau would be the stated reason otherwise.
    3. ``not_learning`` (at chance with the loss at the prior's entropy) for at least
       2 x ``live_patience`` epochs, its loss not falling beyond noise over the last
       2 x ``live_patience`` epochs (a slow start sits at chance while its loss already falls):
       stop.
    4. A plateau of the monitored metric (:func:`pipelines.curves.plateau.find_plateau`: no
       improvement beyond the curve's own noise), confirmed by ``live_patience`` epochs since the
       last improvement beyond noise (:func:`last_improvement_epoch`, ``min_delta`` = the noise
       SD, capped by the binomial SD of one measurement, never below 1.5 examples:
       :func:`_min_delta`) when the diagnosis calls it a stall for a reason of substance (a low
       level, below the baseline, memorising, a widening gap, an overconfident loss), and by
       2 x ``live_patience`` when it is only premature or an underfit (training accuracy no
       better than validation's: under dropout or augmentation a run still climbing shows that; a
       real augmented CNN was stopped at epoch 12 of 60, 8 points short)
       or a convergence (a sound run's bump looks like those for a few epochs) or the diagnosis
       finds oscillation (its new bests come in swings), and the
       validation loss not falling beyond noise over the plateau's last 3 x ``live_patience``
       epochs (on a small validation set accuracy moves in coarse steps while the loss keeps
       improving; a slow learner's loss falls beyond its noise only over more epochs than its
       accuracy's patience: 3 x rather than 2 x lowered the stalls' mean regret on the tune
       split from 0.0036 to 0.0032 at the same 38% of epochs saved, after a real run with 20
       steps an epoch was stopped at epoch 52 of 150 with 4 points still to come), nor reaching
       a new best of any size within the same patience (``live_patience`` epochs for a stall of
       substance, 2 x for a convergence: a sound run whose accuracy drifts up under the noise of
       1,000 examples sets a new val_loss low every 4-5 epochs; as
       ``EarlyStopping(monitor="val_loss")`` counts its patience; never longer than
       ``live_val_loss_patience`` epochs, 5, the patience of the EarlyStopping it is measured
       against, except for a stall read only as premature or underfit, which waits its 2 x: a
       real augmented CNN that a 5-epoch wait stopped 3 points short), nor within that patience
       of a step cut of the logged learning rate whose effect shows (:func:`_lr_cut_working`), nor
       within that patience of a new high of the logged learning rate
       (:func:`pipelines.curves.detectors.lr_new_high_within`: a warm-up or the rising half of a
       one-cycle schedule holds accuracy down by design; a real one-cycle run was stopped at its
       peak rate, 4 points short; a cyclical rate back at an earlier peak is no new high): stop,
       whether the plateau is a stall or a convergence, since more epochs help neither. Never
       while the diagnosis of the same history finds ``too_slow`` (a loss still falling steadily
       to the end): a stop must not contradict the diagnosis.

    Never a run still improving beyond its noise. Compare ``keras.callbacks.EarlyStopping``
    (https://keras.io/api/callbacks/early_stopping/), which waits ``patience`` epochs after the
    last improvement of any size: the noise-aware plateau test confirms a stall from the curve's
    own scatter instead (``benchmarks/early_stop.py`` replays both).

    Args:
        history: Keras-style ``{metric: [value per epoch so far]}`` (e.g. ``History.history``, or
            an Optuna trial's intermediate values as ``{"val_accuracy": [...]}``; any sequence per
            metric: lists, tuples, (E,) NumPy arrays; None is a missing value); older or
            explicit names (``val_acc``, ``val_sparse_categorical_accuracy``, ...) are read as
            :func:`pipelines.curves.io.canonical_names` says.
        epoch_budget: epochs the run is configured for (None when unknown).
        num_classes: classes of the task, if known.
        class_prior: the training labels' class shares, if known (chance = the majority share).
        baseline_accuracy: a simple baseline's validation accuracy, if known.
        config: thresholds (default: ``params.yaml``'s ``diagnose`` defaults).
        stop_on_divergence: stop on NaN/inf or exploding loss.
        forecast: when stopping, extrapolate the monitored metric to ``epoch_budget``
            (:mod:`pipelines.curves.extrapolate`, about 0.2 s) and say what the run would likely
            have reached.
        weights_kept: whether the caller keeps the best epoch's weights (``restore_best_weights``);
            the stop line says "(weights kept)" only then.
        **overrides: single thresholds of :class:`DiagnoseConfig` (e.g. ``live_patience=5``).

    Returns:
        A :class:`StopDecision` (unpacks as ``stop, finding``).

    Raises:
        ValueError: no validation metric in ``history`` (nothing to decide on), metrics of unequal
            length (one value per epoch, NaN where none was logged), or an unknown or
            invalid threshold in ``overrides`` (pydantic's ``ValidationError`` is a ``ValueError``:
            e.g. ``live_patience`` below ``min_plateau_epochs``).
    """
    # Lists, whatever sequence type came in (NumPy arrays, tuples): the checks below test emptiness.
    history = {name: list(values) for name, values in canonical_names(dict(history)).items()}
    if not any(name in history and len(history[name]) > 0 for name in VALIDATION_METRICS):
        raise ValueError(f"history has no {' / '.join(VALIDATION_METRICS)}: found {sorted(history)}")
    lengths = {name: len(values) for name, values in history.items()}
    if len(set(lengths.values())) > 1:
        # A History of fit(validation_freq=k) holds val_* for every k-th epoch only: its epochs
        # cannot be told apart (the patience and the stop line indexed the short lists as if each
        # value were one epoch, then failed with IndexError).
        raise ValueError(
            f"history: metrics of unequal length {lengths}; give one value per epoch, NaN where an "
            "epoch was not validated (fit(validation_freq=k)), as DiagnosisCallback records them"
        )
    cfg = config or DEFAULT
    if overrides:
        cfg = DiagnoseConfig(**(cfg.model_dump() | overrides))
    try:
        diagnosis = diagnose_history(
            history,
            epoch_budget,
            num_classes=num_classes,
            class_prior=class_prior,
            config=cfg,
            baseline_accuracy=baseline_accuracy,
        )
    except ValueError:
        return _NO
    size = max(len(values) for values in history.values())
    chosen: Finding | None = None
    for finding in diagnosis.findings:
        if finding.code == Code.DIVERGENCE and stop_on_divergence:
            # NaN/inf: stop now (NaN weights: no later epoch recovers; finite weights under a loss
            # undefined on some examples: nothing it logs can be trusted until that is fixed). A
            # finite blow-up (a loss above its threshold, a dead network, a val_loss far above the
            # prior's entropy) is confirmed first: it has lasted live_patience epochs and the loss is not
            # coming back down beyond noise (a spike that recovers is not divergence).
            non_finite = "first_non_finite_epoch" in finding.evidence
            lasted = size - (finding.onset_epoch or 1) >= cfg.live_patience
            if non_finite or (
                lasted
                and not _loss_still_falling(
                    history, max(1, size - 2 * cfg.live_patience + 1), cfg, epoch_budget
                )
            ):
                chosen = finding
                break
        if finding.code == Code.SPLIT_MISMATCH and finding.severity == Severity.CRITICAL:
            # The validation set does not measure the task (drawn otherwise from epoch 1 on): no
            # plateau of it means anything, and more epochs fix nothing. Confirmed over
            # 2 x live_patience epochs, as a dead network is.
            if size - (finding.onset_epoch or 1) + 1 >= 2 * cfg.live_patience:
                chosen = finding
                break
        if finding.code == Code.NOT_LEARNING:
            since = finding.onset_epoch or 1
            recent = max(since, size - 2 * cfg.live_patience + 1)
            entropy = finding.evidence.get("prior_entropy")
            below = BELOW_PRIOR_SHARE * entropy if entropy else None
            if size - since + 1 >= 2 * cfg.live_patience and not _loss_still_falling(
                history, recent, cfg, epoch_budget, with_training_loss=True, below=below
            ):
                chosen = finding
                break
    if chosen is None:
        onset = diagnosis.plateau_onset_epoch
        best = diagnosis.best_epoch
        stall = next((f for f in diagnosis.findings if f.code == Code.PLATEAU), None)
        # "underfit" alone is read off a training accuracy no better than validation's, which
        # dropout or augmentation keep down while the run still climbs: no reason to stop sooner.
        confident = stall is not None and bool(
            set(stall.evidence.get("stall_reasons", ())) - {"premature", "underfit"}
        )
        # An oscillating run reaches its new bests in swings: it waits as long as a convergence.
        swinging = diagnosis.has(Code.OSCILLATION)
        patience = cfg.live_patience if confident and not swinging else 2 * cfg.live_patience
        if onset is None or best is None:
            return _NO
        if diagnosis.has(Code.TOO_SLOW):
            # The same history's diagnosis says the run is still improving steadily: no plateau
            # stop, whatever the last epochs of accuracy look like.
            return _NO
        monitored = history.get(diagnosis.monitor or "", ())
        min_delta, higher = _min_delta(monitored, diagnosis), diagnosis.monitor != "val_loss"
        improved = last_improvement_epoch(monitored, min_delta, higher_is_better=higher)
        if size - (improved or best) < patience:
            return _NO
        if _lr_cut_working(history, monitored, higher, min_delta, patience):
            return _NO
        if lr_new_high_within(history, patience):
            # A schedule is still raising the learning rate to new highs (a warm-up, the first
            # half of a one-cycle schedule): accuracy is held down by the rising rate by design
            # and recovers as it comes down, as Keras' EarlyStopping(start_from_epoch=...) waits
            # out a warm-up. A rate that only ever rises and blows the loss up is stopped as
            # divergence, above.
            return _NO
        recent = max(onset, size - 3 * cfg.live_patience + 1)
        # A stall at a low level may be a slow start: the training loss has its say, as for
        # not_learning above.
        near_chance = stall is not None and "low_level" in set(stall.evidence.get("stall_reasons", ()))
        if diagnosis.monitor == "val_accuracy" and _loss_still_falling(
            history, recent, cfg, epoch_budget, with_training_loss=near_chance
        ):
            return _NO
        # A stall read only as premature or underfit (training accuracy no better than validation's,
        # as under dropout or augmentation) waits its full patience after a new val_loss best;
        # anything else no longer than EarlyStopping(monitor="val_loss", patience=5) does.
        regularised = stall is not None and not confident
        vl_patience = patience if regularised else min(patience, cfg.live_val_loss_patience)
        if diagnosis.monitor == "val_accuracy" and _val_loss_best_within(history, vl_patience):
            # val_loss reached a new best in the last epochs, however small: the weights that
            # restore_best_weights would keep are still getting better, whatever accuracy shows.
            return _NO
        chosen = stall if stall is not None else _converged_finding(diagnosis)
    return StopDecision(
        True, chosen, _reason(history, diagnosis, chosen, size, epoch_budget, forecast, weights_kept)
    )


def _reason(
    history: Mapping[str, Sequence[float]],
    diagnosis: Diagnosis,
    finding: Finding,
    epoch: int,
    epoch_budget: int | None,
    forecast: bool,
    weights_kept: bool = True,
) -> str:
    line = f"stopped at epoch {epoch}: {finding.message}"
    monitor = diagnosis.monitor
    if monitor and diagnosis.best_epoch is not None:
        values = history[monitor]
        best = values[diagnosis.best_epoch - 1]
        kept = " (weights kept)" if weights_kept else ""
        line += f"; best {monitor} {fmt(float(best))} at epoch {diagnosis.best_epoch}{kept}"
        if forecast and epoch_budget and epoch_budget > epoch and finding.code != Code.DIVERGENCE:
            from pipelines.curves.extrapolate import extrapolate

            y = np.asarray([math.nan if v is None else float(v) for v in values])
            x = np.arange(1, y.size + 1)
            ok = np.isfinite(y)
            if ok.sum() >= 5:
                fit = extrapolate(x[ok], y[ok], epoch_budget, higher_is_better=monitor != "val_loss")
                if math.isfinite(fit.value_at_budget):
                    half = 1.96 * fit.value_std
                    # An accuracy lies in [0, 1], a loss at or above 0: so does its interval.
                    top = 1.0 if monitor != "val_loss" else math.inf
                    lo = min(max(fit.value_at_budget - half, 0.0), top)
                    hi = min(max(fit.value_at_budget + half, 0.0), top)
                    line += (
                        f"; training on to epoch {epoch_budget} would likely have reached "
                        f"{fmt(fit.value_at_budget)} (95% interval {fmt(lo)} to {fmt(hi)})"
                    )
    return line


def _converged_finding(diagnosis: Diagnosis) -> Finding:
    assert diagnosis.plateau_onset_epoch is not None and diagnosis.plateau_level is not None
    plateau = Plateau(
        metric=diagnosis.monitor or "",
        onset_epoch=diagnosis.plateau_onset_epoch,
        level=diagnosis.plateau_level,
        spread=diagnosis.plateau_spread or 0.0,
        flat_epochs=0,
        noise=diagnosis.noise or 0.0,
        trend_z=0.0,
        onset_index=0,
    )
    return make_finding(
        Code.PLATEAU,
        Severity.INFO,
        diagnosis.plateau_onset_epoch,
        {
            "metric": diagnosis.monitor,
            "level": diagnosis.plateau_level,
            "spread": diagnosis.plateau_spread,
            "noise": diagnosis.noise,
            "converged": True,
        },
        plateau_message(plateau),
        (CONVERGED,),
    )


def _build_callback_class() -> type:
    import keras

    class DiagnosisCallback(keras.callbacks.Callback):
        """Diagnose the history after every epoch, log findings, optionally stop on a plateau.

        After each epoch it runs :func:`diagnose_history` on the history so far and logs each new
        finding once (WARNING / CRITICAL findings at WARNING level, others at INFO). With
        ``stop_on_plateau=True`` it stops training when :func:`should_stop` says so and sets
        ``stop_reason``, e.g. "stopped at epoch 9: val_accuracy flat at 0.883 ± 0.002 since epoch 6".

        Attributes:
            diagnosis: the latest :class:`Diagnosis` (None before the first epoch / without
                validation data).
            stop_reason: why training was stopped, or None.
            stop_finding: the finding behind ``stop_reason``, or None.
            stopped_epoch: 1-based epoch training stopped after (0 when it did not stop).
            history: ``{metric: [value per epoch]}`` seen so far, every list one value per
                epoch (NaN where the epoch's logs lacked the metric, e.g. the epochs that
                ``fit(..., validation_freq=k)`` does not validate); ``learning_rate`` is read off
                the optimizer when the logs lack it.
        """

        def __init__(
            self,
            epoch_budget: int | None = None,
            *,
            stop_on_plateau: bool = False,
            stop_on_divergence: bool = True,
            min_plateau_epochs: int | None = None,
            num_classes: int | None = None,
            class_prior: Sequence[float] | None = None,
            baseline_accuracy: float | None = None,
            restore_best_weights: bool = True,
            config: DiagnoseConfig | None = None,
            forecast: bool = True,
            run: str = "live",
            logger: logging.Logger | None = None,
        ) -> None:
            """See the class docstring.

            Args:
                epoch_budget: the run's epochs (default: ``epochs`` passed to ``fit``).
                stop_on_plateau: stop once a plateau (stall or convergence) is confirmed.
                stop_on_divergence: with ``stop_on_plateau``, also stop on NaN / exploding loss.
                min_plateau_epochs: epochs without improvement that confirm a plateau (default:
                    ``config.min_plateau_epochs``).
                num_classes: classes of the task, if known (enables not-learning / low-level checks).
                class_prior: the training labels' class shares, if known (chance = majority share).
                baseline_accuracy: a simple baseline's validation accuracy, if known.
                restore_best_weights: with ``stop_on_plateau``, end training with the weights of
                    the best monitored epoch, whether this callback stopped the run or not (the
                    budget reached, another callback's stop), as
                    ``keras.callbacks.EarlyStopping(restore_best_weights=True)`` does in Keras 3.
                config: thresholds (default: ``params.yaml``'s ``diagnose`` defaults).
                forecast: on stopping, say what the run would likely have reached by its budget.
                run: name used in log messages.
                logger: where findings go (default: this module's logger).
            """
            super().__init__()
            self.epoch_budget = epoch_budget
            self.stop_on_plateau = stop_on_plateau
            self.stop_on_divergence = stop_on_divergence
            cfg = config or DEFAULT
            if min_plateau_epochs is not None:
                cfg = DiagnoseConfig(
                    **(cfg.model_dump() | {"min_plateau_epochs": min_plateau_epochs})
                    | {"live_patience": max(cfg.live_patience, min_plateau_epochs)}
                )
            self.config = cfg
            self.forecast = forecast
            self.class_prior = class_prior
            self.num_classes = num_classes
            self.baseline_accuracy = baseline_accuracy
            self.restore_best_weights = restore_best_weights
            self.run = run
            self.logger = logger or LOGGER
            self._reset()

        def _reset(self) -> None:
            self.history: dict[str, list[float]] = {}
            self.diagnosis: Diagnosis | None = None
            self.stop_reason: str | None = None
            self.stop_finding: Finding | None = None
            self.stopped_epoch = 0
            self._logged: set[tuple[str, int | None]] = set()
            self._best: float | None = None
            self._best_weights: list[Any] | None = None
            self._epochs = 0

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            # As Keras 3's EarlyStopping: the best weights, however the run ended. Only when this
            # callback decides stops: logging alone (run_train) leaves the weights to train()'s own
            # EarlyStopping(monitor="val_loss").
            if self.stop_on_plateau and self.restore_best_weights and self._best_weights is not None:
                self.model.set_weights(self._best_weights)

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self._reset()
            if self.epoch_budget is None and self.params:
                self.epoch_budget = self.params.get("epochs")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            # One value per epoch for every metric, NaN where an epoch's logs lack it: with
            # fit(..., validation_freq=k) Keras logs val_* only after every k-th epoch, and a
            # History-style list per metric would fall out of step with the epochs. A fit resumed
            # with initial_epoch=k starts at epoch k: the epochs before it are NaN, so that epoch
            # numbers in findings are the run's own.
            seen = max(self._epochs, int(epoch))
            for values in self.history.values():
                values.extend([math.nan] * (seen - len(values)))
            logged = canonical_names(dict(logs or {}))
            for name, value in logged.items():
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    continue
                self.history.setdefault(name, [math.nan] * seen).append(number)
            if "learning_rate" not in logged:
                # Keras logs the rate only when LearningRateScheduler or ReduceLROnPlateau puts it
                # in the logs (and only for callbacks after them in the list); a LearningRateSchedule
                # given to the optimizer never shows. The live stop reads the rate's cuts and rises.
                rate = self._current_learning_rate()
                if rate is not None:
                    self.history.setdefault("learning_rate", [math.nan] * seen).append(rate)
            self._epochs = seen + 1
            for values in self.history.values():
                if len(values) < self._epochs:
                    values.append(math.nan)
            if not any(name in self.history for name in VALIDATION_METRICS):
                return
            self._track_best()
            try:
                self.diagnosis = diagnose_history(
                    self.history,
                    self.epoch_budget,
                    num_classes=self.num_classes,
                    class_prior=self.class_prior,
                    run=self.run,
                    config=self.config,
                    baseline_accuracy=self.baseline_accuracy,
                )
            except ValueError as error:
                self.logger.debug("%s: no diagnosis at epoch %d: %s", self.run, epoch + 1, error)
                return
            for finding in self.diagnosis.findings:
                key = (finding.code, finding.onset_epoch)
                if key in self._logged:
                    continue
                self._logged.add(key)
                level = logging.INFO if finding.severity == Severity.INFO else logging.WARNING
                self.logger.log(
                    level, "%s epoch %d: %s: %s", self.run, epoch + 1, finding.code, finding.message
                )
            if not self.stop_on_plateau:
                return
            decision = should_stop(
                self.history,
                self.epoch_budget,
                num_classes=self.num_classes,
                class_prior=self.class_prior,
                config=self.config,
                stop_on_divergence=self.stop_on_divergence,
                baseline_accuracy=self.baseline_accuracy,
                forecast=self.forecast,
                weights_kept=self.restore_best_weights,
            )
            if decision.stop and decision.finding is not None:
                self.model.stop_training = True
                self.stopped_epoch = epoch + 1
                self.stop_finding = decision.finding
                self.stop_reason = decision.reason
                self.logger.warning("%s: %s", self.run, self.stop_reason)
                if self.restore_best_weights and self._best_weights is not None:
                    self.model.set_weights(self._best_weights)

        def _current_learning_rate(self) -> float | None:
            """The optimizer's learning rate now, as ``ReduceLROnPlateau`` reads it into the logs:
            the rate the epoch just ended trained at (for a ``LearningRateSchedule``, its value at
            the current step). None without a model, an optimizer or a finite rate."""
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is None:
                return None
            try:
                rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            except (AttributeError, TypeError, ValueError):
                return None
            return rate if math.isfinite(rate) else None

        def _track_best(self) -> None:
            # The best weights serve only a callback that stops the run (restored at its stop and in
            # on_train_end): logging alone (run_train) copies no weights at its improving epochs.
            if not (self.stop_on_plateau and self.restore_best_weights):
                return
            if "val_accuracy" in self.history:
                value = self.history["val_accuracy"][-1]
            else:
                value = -self.history["val_loss"][-1]
            if math.isfinite(value) and (self._best is None or value > self._best):
                self._best = value
                self._best_weights = self.model.get_weights()

    return DiagnosisCallback


_CALLBACK_CLASS: type | None = None


def __getattr__(name: str) -> Any:
    global _CALLBACK_CLASS
    if name == "DiagnosisCallback":
        if _CALLBACK_CLASS is None:
            _CALLBACK_CLASS = _build_callback_class()
        return _CALLBACK_CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    DiagnosisCallback: type[keras.callbacks.Callback]
