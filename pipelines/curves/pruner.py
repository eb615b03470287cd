"""An Optuna pruner that reads each trial's learning curve: ``CurvePruner``.

Two rules, checked at every step a trial reports:

1. **Predictive termination** (Domhan, Springenberg & Hutter, "Speeding up Automatic
   Hyperparameter Optimization of Deep Neural Networks by Extrapolation of Learning Curves",
   IJCAI 2015, sec. 3.2): the trial's value at the epoch budget is forecast with an uncertainty,
   and the trial is pruned when the probability that it ends better than a target falls below
   ``threshold`` (Domhan et al. use 5%). The target is the best completed trial's value
   (``target_quantile=1.0``) or a top quantile of the completed values; a tie does not beat it.
   Two forecasts, by how much of the curve there is:

   - **early** (from ``n_warmup_steps``, default epoch 3): from the completed trials' curves, after
     Chandrashekaran & Lane, "Speeding up Hyper-parameter Optimization by Extrapolation of Learning
     Curves Using Previous Builds" (ECML-PKDD 2017), who predict a new curve from the trajectories of
     earlier ones. Here each completed trial ``j`` gives the log-ratio ``r_j`` of its final distance to
     the metric's bound (``1 - val_accuracy``, or the loss itself; at its best epoch) over its distance
     at the running trial's epoch (best so far), and the running trial is assumed to shrink its own
     distance by a ratio drawn from the same law: normal, with unknown mean and variance, whose posterior
     predictive given ``r_1..r_n`` is a Student t (a flat prior on the mean and a scaled-inverse-chi^2
     prior on the variance, ``ratio_prior_dof`` pseudo-observations of SD ``ratio_prior_sd`` x
     sqrt(epochs left / (budget - 1)), the spread of a random walk over the epochs still to run; Gelman
     et al., "Bayesian Data Analysis", 3rd ed., sec. 3.2-3.3). With few completed trials the prior keeps
     the forecast wide, so the evidence, not a fixed count, decides how early a trial can be called; the
     spread is the completed trials' own, so it is calibrated on this study. Only for metrics with a
     known bound (values in [0, 1] when maximised, >= 0 when minimised); otherwise the family forecast
     alone, from epoch 6.
   - **late** (from ``family_warmup_steps``, default 8 values, on): the probability is the mean
     of the early forecast's and this one's (an equal mixture of the two predictive laws; this
     one alone where the early forecast does not apply): the trial's own curve extrapolated with
     the engine's parametric learning-curve families (:func:`pipelines.curves.extrapolate.extrapolate`,
     an Akaike-weighted ensemble with an uncertainty). Domhan et al. use an MCMC posterior; here
     the forecast is Gaussian: the ensemble's uncertainty of the mean curve (shared by all epochs)
     plus the curve's own epoch-to-epoch noise (independent per epoch), and a trial's value is its
     best epoch's (the probability that *some* remaining epoch beats the target; see
     :meth:`CurvePruner._probability`), since the completed trials' values are maxima of noisy
     curves too. Alone, it pruned the best configuration of ``benchmarks/tuning.py``'s table in
     3 of the 3 tuning seeds that sampled it, at epochs 10-16: curves that still gain 2-3 points
     after a ReduceLROnPlateau step were called saturated at 0.88 ± 0.02. The families see one
     curve; the completed trials show what curves of this study do after that epoch, and the
     curve shows what the completed trials' ratios cannot: a trial flat far below the target.
2. **The diagnosis engine** (:func:`pipelines.curves.callback.should_stop` on the intermediate
   values): divergence and not-learning prune as soon as ``should_stop`` calls them (a NaN/inf
   intermediate value at once; a finite blow-up once confirmed); a stall
   prunes while there is no target yet (fewer than ``n_startup_trials`` trials completed); once
   there is a target, a confirmed plateau (stall or convergence) has its forecast checked at once,
   warm-up and interval aside.

A trial whose best value so far already beats the target is never pruned by a forecast, a
stall or a finite finding: it is the study's best, and Optuna counts only completed trials (a
NaN/inf value still prunes it: its weights are gone, and no later epoch recovers). One that only
ties it is not protected: a tie does not change Optuna's best trial, so completing it gains the
study nothing (with a categorical search space a sampler draws the incumbent's configuration
again; whether such a repeat is pruned is still up to its forecast).

Every prune records why, in the trial's user attributes: ``pruned_because`` (one line, starting
``stopped at epoch N:``), ``pruned_epoch`` (int) and ``pruned_rule`` (``forecast``,
``divergence``, ``not_learning`` or ``plateau``).

Usage, like any Optuna pruner (https://optuna.readthedocs.io/en/stable/reference/pruners.html)::

    study = optuna.create_study(direction="maximize", pruner=CurvePruner(epoch_budget=30))

    def objective(trial):
        ...
        for epoch in range(1, 31):
            val_accuracy = train_one_epoch(...)
            trial.report(val_accuracy, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(trial.user_attrs.get("pruned_because"))
        return best_val_accuracy

Steps are epochs, 1-based; a trial whose first reported step is 0 is read as 0-based.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import optuna
from scipy.stats import norm
from scipy.stats import t as student_t

from pipelines.curves.findings import Code, fmt
from pipelines.curves.settings import DEFAULT, DiagnoseConfig

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = ["CurvePruner", "PruneDecision", "RatioForecast", "ratio_forecast"]

#: Values the extrapolation families need before any can be fitted (a family with k parameters
#: needs more than k + 1; six fit all of them): the family forecast's earliest epoch.
_FAMILY_MIN_VALUES = 6


@dataclass(frozen=True)
class PruneDecision:
    """What :meth:`CurvePruner.decide` concluded for one trial at its latest step.

    Attributes:
        prune: prune the trial now.
        rule: ``forecast``, ``divergence``, ``not_learning`` or ``plateau`` when ``prune``; else None.
        reason: one line starting ``stopped at epoch N:`` when ``prune``; else None.
        epoch: the 1-based epoch the decision is for (0 when nothing was reported).
        probability: the probability of beating the target (None when no forecast was made).
        target: the value to beat (None before ``n_startup_trials`` trials completed, or when
            nothing was reported).
    """

    prune: bool
    rule: str | None = None
    reason: str | None = None
    epoch: int = 0
    probability: float | None = None
    target: float | None = None


@functools.lru_cache(maxsize=8192)
def _forecast(epochs: tuple[int, ...], values: tuple[float, ...], budget: int, higher: bool):
    # Cached: a replayed or resumed trial re-asks the same question, and a fit costs ~0.1 s.
    from pipelines.curves.extrapolate import extrapolate

    return extrapolate(np.asarray(epochs), np.asarray(values), budget, higher_is_better=higher)


@functools.lru_cache(maxsize=8192)
def _engine(
    metric: str, values: tuple[float, ...], budget: int, num_classes: int | None, config: DiagnoseConfig
):
    from pipelines.curves.callback import should_stop

    # A pruned trial's weights are not kept: its reason does not say they are.
    return should_stop(
        {metric: list(values)},
        budget,
        num_classes=num_classes,
        config=config,
        forecast=False,
        weights_kept=False,
    )


@dataclass(frozen=True)
class RatioForecast:
    """The early forecast (see the module docstring): the trial's best value at the budget from the
    completed trials' curves.

    Attributes:
        probability: P(the trial's final best beats the target), in [0, 1].
        value: the forecast's median of the trial's final best, in the metric's units.
        n: completed trials it was made from (>= 1).
        mean: mean of their log distance ratios ``r_j`` (<= 0: the distance shrinks).
        scale: the Student t's scale for a new ratio (its SD is ``scale * sqrt(dof / (dof - 2))``
            when ``dof`` > 2).
        dof: the Student t's degrees of freedom.
    """

    probability: float
    value: float
    n: int
    mean: float
    scale: float
    dof: float


def _epochs_and_values(values_by_step: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of a trial's intermediate values in step order: (E,) int64 1-based epochs
    (a trial whose first step is 0 is read as 0-based) and (E,) float64 values, NaN kept."""
    if not values_by_step:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    steps = np.asarray(sorted(values_by_step), dtype=np.int64)
    values = np.asarray([values_by_step[s] for s in steps], dtype=np.float64)
    return (steps + 1 if steps[0] == 0 else steps), values


def _curve(values_by_step: dict[int, float], budget: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_epochs_and_values`, finite values up to epoch ``budget`` only."""
    epochs, values = _epochs_and_values(values_by_step)
    keep = np.isfinite(values) & (epochs <= budget)
    return epochs[keep], values[keep]


def _distance(value: float, higher: bool) -> float | None:
    """How far ``value`` is from the metric's bound: ``1 - value`` for a maximised metric in [0, 1]
    (accuracy), the value itself for a minimised one >= 0 (a loss); None without a known bound."""
    if higher:
        return 1.0 - value if 0.0 <= value <= 1.0 else None
    return value if value >= 0.0 else None


def ratio_forecast(
    completed: list[tuple[np.ndarray, np.ndarray]],
    epoch: int,
    best_so_far: float,
    target: float,
    higher: bool,
    prior_sd: float,
    prior_dof: float,
) -> RatioForecast | None:
    """The early forecast: P(a trial at ``best_so_far`` after ``epoch`` epochs ends beyond ``target``).

    Each completed curve that ran past ``epoch`` gives ``r_j = log(D(final best) / D(best by
    epoch))``, ``D`` the distance to the metric's bound (:func:`_distance`). The running trial's
    final distance is ``D(best_so_far) * exp(r)`` with ``r`` from the posterior predictive of a
    normal law with a flat prior on its mean and a scaled-inverse-chi^2(``prior_dof``,
    ``prior_sd``^2) prior on its variance: Student t with ``nu = prior_dof + n - 1`` degrees of
    freedom, location ``mean(r)`` and scale ``s * sqrt(1 + 1/n)``, ``s^2 = (prior_dof * prior_sd^2
    + sum (r_j - mean r)^2) / nu`` (Gelman et al., "Bayesian Data Analysis", 3rd ed., sec. 3.2-3.3).
    The idea of forecasting from earlier trials' curves: Chandrashekaran & Lane, ECML-PKDD 2017.

    Args:
        completed: the completed trials' curves, (epochs, values) as :func:`_curve` returns.
        epoch: the running trial's latest epoch (1-based).
        best_so_far: its best value up to ``epoch``.
        target: the value to beat.
        higher: True when the study maximises.
        prior_sd: prior SD of a log distance ratio, > 0.
        prior_dof: prior pseudo-observations, > 0.

    Returns:
        The :class:`RatioForecast`, or None when no completed curve ran past ``epoch``, a value
        has no known bound, or ``best_so_far`` or ``target`` sits at the bound (no distance left
        to shrink; then this forecast does not apply).

    Raises:
        ValueError: ``prior_sd`` or ``prior_dof`` not a finite number > 0 (the message names it).
    """
    for name, prior in (("prior_sd", prior_sd), ("prior_dof", prior_dof)):
        if not (math.isfinite(prior) and prior > 0):
            raise ValueError(f"ratio_forecast: {name} must be a finite number > 0, got {prior!r}")
    now, goal = _distance(best_so_far, higher), _distance(target, higher)
    if now is None or goal is None or now <= 0 or goal <= 0:
        return None
    ratios = []
    for epochs, values in completed:
        seen = epochs <= epoch
        if not seen.any() or seen.all():
            continue
        best = np.max if higher else np.min
        start, end = _distance(float(best(values[seen])), higher), _distance(float(best(values)), higher)
        if start is None or end is None:
            return None
        if start > 0 and end > 0:
            ratios.append(math.log(end / start))
    if not ratios:
        return None
    r = np.asarray(ratios)
    n, mean = r.size, float(r.mean())
    dof = prior_dof + n - 1
    scale = math.sqrt((prior_dof * prior_sd**2 + float(np.sum((r - mean) ** 2))) / dof * (1.0 + 1.0 / n))
    probability = float(student_t.cdf((math.log(goal) - math.log(now) - mean) / scale, dof))
    final = now * math.exp(mean)
    return RatioForecast(probability, 1.0 - final if higher else final, n, mean, scale, dof)


def _model_sd(fit) -> float:
    """SD of the forecast at the budget: the ensemble's own (Akaike-weighted, delta method) combined
    with the unweighted spread of the families' forecasts.

    With the few epochs a pruner sees, AICc weights pile onto one family and the delta method
    understates a nonlinear fit's uncertainty (Burnham & Anderson 2002, sec. 4.3: weights from
    small samples are unreliable); on synthetic curves 5-8 epochs in, the weighted SD alone missed
    the true value by 3-4 SDs (tests/unit/curves/test_pruner.py), the families' plain spread
    covers it.
    """
    spread = np.std([f.value_at_budget for f in fit.families.values()]) if len(fit.families) > 1 else 0.0
    return float(math.hypot(fit.value_std, spread))


def _completed_curves(n: int) -> str:
    """``"1 completed trial's curve"`` / ``"3 completed trials' curves"``, for prune reasons."""
    return "1 completed trial's curve" if n == 1 else f"{n} completed trials' curves"


class CurvePruner(optuna.pruners.BasePruner):
    """Prune trials whose learning curve will not beat the best, or that the engine says are stuck.

    See the module docstring for the two rules and their sources.

    Args:
        epoch_budget: epochs a trial runs when not pruned (>= 2); forecasts are for this epoch.
        threshold: prune when the probability of beating the target is below this, in (0, 1)
            (Domhan et al. 2015 use 0.05).
        target_quantile: 1.0 = beat the best completed trial; e.g. 0.9 = beat the 90th percentile
            of completed trials' values (for minimisation, the 10th), in (0, 1].
        n_startup_trials: completed trials needed before there is a target (>= 1): before, the
            forecast rule does not prune, and a stall the engine confirms prunes at once. The
            default 1 is safe because the rule only prunes a trial unlikely to beat the best
            completed one: with one completed trial the target is lower, so it prunes less, not
            wrongly, and the early forecast's prior keeps it wide (``benchmarks/tuning.py``: 1
            startup trial reached the best configuration sooner than 3).
        n_warmup_steps: epochs a trial runs before the forecast rule may prune it (>= 1). Default
            (None): 3; how early a trial is called then rests on the early forecast's evidence
            (the completed trials' spread and its prior), not on this count. Chosen with
            ``ratio_prior_sd`` on ``benchmarks/tuning.py`` seeds 0-9 (192 configurations of the
            search space, budgets 30, 12 and 6): epoch 2's accuracy is uncorrelated with the final
            one there (r = 0.00; 0.11 at epoch 3), and warm-up 2 pruned the best configuration
            at epoch 2 or 4 in seeds that sampled it, against none with 3 (and prior SD 0.5).
        family_warmup_steps: values a trial needs before the family forecast joins the early
            one (>= 6, the families' minimum). Default 8: with fewer, the four-parameter families
            are all but excluded by their small-sample AICc penalty and the three-parameter ones
            call a curve saturated too soon (``benchmarks/tuning.py --budget 12``, seeds 0-9:
            switching at 6 pruned the 12-epoch budget's best configuration, a curve that rises
            3 points after epoch 7, in 9 of 9 seeds; at 8, in none, for 1 epoch more to the best
            at a 30-epoch budget and 4 more at 12).
        ratio_prior_sd: the early forecast's prior SD of a log distance ratio (> 0), one epoch
            in; at epoch e it is scaled by sqrt((budget - e) / (budget - 1)), so that a trial a few
            epochs from the budget is not kept alive by the prior alone. Default 0.5: a trial's
            remaining error may differ by about a factor exp(0.5) = 1.65 either way from what the
            completed trials' curves say, before their own spread is known. Chosen on
            ``benchmarks/tuning.py`` seeds 0-9 with warm-up 3: 0.3 pruned the 12- and 6-epoch
            budgets' best configuration in 2 and 3 of 10 seeds (lost it in 2 and 1), 0.5 in none.
            Checked on seeds 10-29: it lost the best in none of 20 seeds at budgets 30, 12 and 6,
            against 2, 5 and 15 with the former defaults (warm-up 2, prior SD 0.3, the families
            alone from 8 values), for a speed-up to the best of 1.21x / 1.26x / 1.10x; the former
            defaults did not reach it at all in 12 and 15 of the 20 seeds at budgets 30 and 6.
            The sqrt scaling came after (seeds 0-9: speed-up 1.25x / 1.13x / 1.21x -> 1.34x /
            1.17x / 1.31x, the best pruned in none; a linear scaling lost it once at budget 6);
            on seeds 10-29 with it: 1.25x / 1.25x / 1.15x, the best lost in none (pruned, then
            completed on a later sampling, in 2 of 20 at budget 6), and 12-trial searches prune
            6.0 trials instead of 3.5 at a 15-epoch budget, 4.8 instead of 2.5 at 6.
        ratio_prior_dof: that prior's weight in pseudo-observations (> 0; default 3): with n
            completed trials the forecast is a Student t with ``3 + n - 1`` degrees of freedom.
        interval_steps: check the forecast rule every this many epochs after the warm-up (>= 1).
        objective: what a completed trial's value is: ``best`` = its best epoch's value, or
            ``last`` = the value at the budget. :func:`pipelines.tune.tune` uses ``best``; its
            value is the ``val_accuracy`` of the weights it keeps (the epoch of lowest
            ``val_loss``, as Keras' ``restore_best_weights``), at most the best epoch's, so the
            forecast errs on the side of not pruning.
        use_diagnosis: also prune on the engine's divergence / not-learning / plateau findings.
        metric: name the engine reads the values as: ``val_accuracy`` or ``val_loss``; default
            ``val_accuracy`` for a maximised study and ``val_loss`` for a minimised one.
        num_classes: classes of the task, if known (enables the engine's not-learning check).
        config: the engine's thresholds (default: ``params.yaml``'s ``diagnose`` defaults).

    Raises:
        ValueError: an argument outside the ranges above (the message names it).
    """

    def __init__(
        self,
        epoch_budget: int,
        *,
        threshold: float = 0.05,
        target_quantile: float = 1.0,
        n_startup_trials: int = 1,
        n_warmup_steps: int | None = None,
        family_warmup_steps: int = 8,
        ratio_prior_sd: float = 0.5,
        ratio_prior_dof: float = 3.0,
        interval_steps: int = 1,
        objective: str = "best",
        use_diagnosis: bool = True,
        metric: str | None = None,
        num_classes: int | None = None,
        config: DiagnoseConfig | None = None,
    ) -> None:
        if (
            isinstance(epoch_budget, bool)
            or not isinstance(epoch_budget, (int, float, np.integer, np.floating))
            or not math.isfinite(epoch_budget)
            or int(epoch_budget) != epoch_budget
            or epoch_budget < 2
        ):
            raise ValueError(f"CurvePruner: epoch_budget must be an integer >= 2, got {epoch_budget!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"CurvePruner: threshold must lie in (0, 1), got {threshold!r}")
        if not 0.0 < target_quantile <= 1.0:
            raise ValueError(f"CurvePruner: target_quantile must lie in (0, 1], got {target_quantile!r}")
        for name, value in (
            ("n_startup_trials", n_startup_trials),
            ("n_warmup_steps", 1 if n_warmup_steps is None else n_warmup_steps),
            ("interval_steps", interval_steps),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"CurvePruner: {name} must be an integer >= 1, got {value!r}")
        if int(family_warmup_steps) != family_warmup_steps or family_warmup_steps < _FAMILY_MIN_VALUES:
            raise ValueError(
                f"CurvePruner: family_warmup_steps must be an integer >= {_FAMILY_MIN_VALUES}, "
                f"got {family_warmup_steps!r}"
            )
        for name, value in (("ratio_prior_sd", ratio_prior_sd), ("ratio_prior_dof", ratio_prior_dof)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"CurvePruner: {name} must be > 0, got {value!r}")
        if objective not in ("best", "last"):
            raise ValueError(f"CurvePruner: objective must be 'best' or 'last', got {objective!r}")
        if metric is not None and metric not in ("val_accuracy", "val_loss"):
            raise ValueError(f"CurvePruner: metric must be 'val_accuracy' or 'val_loss', got {metric!r}")
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"CurvePruner: num_classes must be >= 2, got {num_classes!r}")
        self.epoch_budget = int(epoch_budget)
        self.threshold = float(threshold)
        self.target_quantile = float(target_quantile)
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = int(n_warmup_steps) if n_warmup_steps is not None else 3
        self.family_warmup_steps = int(family_warmup_steps)
        self.ratio_prior_sd = float(ratio_prior_sd)
        self.ratio_prior_dof = float(ratio_prior_dof)
        self.interval_steps = int(interval_steps)
        self.objective = objective
        self.use_diagnosis = use_diagnosis
        self.metric = metric
        self.num_classes = num_classes
        self.config = config or DEFAULT

    # -- Optuna's interface -------------------------------------------------------------------
    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        """Optuna's hook (called by ``Trial.should_prune``): decide, and record the reason.

        Raises:
            NotImplementedError: a multi-objective study (Optuna's pruners support one objective).
        """
        if len(study.directions) > 1:
            raise NotImplementedError("CurvePruner supports single-objective studies only")
        decision = self.decide(study, trial)
        if decision.prune:
            # Optuna hands pruners a FrozenTrial; its own pruners write through the study's storage
            # the same way (SuccessiveHalvingPruner's rung attributes), so the reason persists in
            # any storage and is visible to every worker.
            storage, trial_id = study._storage, trial._trial_id
            storage.set_trial_user_attr(trial_id, "pruned_because", decision.reason)
            storage.set_trial_user_attr(trial_id, "pruned_epoch", decision.epoch)
            storage.set_trial_user_attr(trial_id, "pruned_rule", decision.rule)
        return decision.prune

    # -- The decision, pure -------------------------------------------------------------------
    def decide(self, study: Study, trial: FrozenTrial) -> PruneDecision:
        """The pruning decision for ``trial`` at its latest reported step, without side effects.

        Args:
            study: the study (its direction and completed trials define the target).
            trial: the running trial; its ``intermediate_values`` are the curve so far.

        Returns:
            A :class:`PruneDecision`.
        """
        higher = study.direction == optuna.study.StudyDirection.MAXIMIZE
        epochs, values = _epochs_and_values(trial.intermediate_values)
        if epochs.size == 0:
            return PruneDecision(False)
        epoch = int(epochs[-1])
        metric = self.metric or ("val_accuracy" if higher else "val_loss")
        target = self._target(study, higher)
        if epoch >= self.epoch_budget:
            return PruneDecision(False, epoch=epoch, target=target)
        if not math.isfinite(values[-1]):
            return PruneDecision(
                True,
                Code.DIVERGENCE.value,
                f"stopped at epoch {epoch}: {metric} became NaN/inf at epoch {epoch}: training diverged",
                epoch,
                target=target,
            )
        finite = np.isfinite(values)
        best_so_far = float(np.max(values[finite]) if higher else np.min(values[finite]))
        if target is not None and (best_so_far > target if higher else best_so_far < target):
            # Already the study's best: it must complete, or Optuna would never count its value.
            return PruneDecision(False, epoch=epoch, target=target)

        plateau = None
        if self.use_diagnosis:
            engine = self._engine(metric, values)
            if engine is not None and engine.finding is not None:
                code = Code(engine.finding.code)
                if code in (Code.DIVERGENCE, Code.NOT_LEARNING):
                    return PruneDecision(True, code.value, engine.reason, epoch, target=target)
                plateau = engine
                converged = bool(engine.finding.evidence.get("converged"))
                if target is None and not converged:
                    return PruneDecision(True, Code.PLATEAU.value, engine.reason, epoch)

        if target is None:
            return PruneDecision(False, epoch=epoch)
        if plateau is None and (
            epoch < self.n_warmup_steps or (epoch - self.n_warmup_steps) % self.interval_steps
        ):
            return PruneDecision(False, epoch=epoch, target=target)
        n_values = int(finite.sum())
        # The early forecast at every epoch; from family_warmup_steps on, an equal mixture of it
        # and the family forecast (see the module docstring).
        # The prior is for the change over the epochs still to run: its SD shrinks like the square
        # root of their number (the spread of a random walk's remaining steps), from
        # ratio_prior_sd one epoch in to ~0 at the budget.
        remaining = (self.epoch_budget - epoch) / (self.epoch_budget - 1)
        early = ratio_forecast(
            self._completed_curves(study),
            epoch,
            best_so_far,
            target,
            higher,
            self.ratio_prior_sd * math.sqrt(remaining),
            self.ratio_prior_dof,
        )
        fit = None
        probability: float | None = None if early is None else early.probability
        if n_values >= self.family_warmup_steps or (early is None and n_values >= _FAMILY_MIN_VALUES):
            fit = _forecast(
                tuple(int(e) for e in epochs[finite]),
                tuple(float(v) for v in values[finite]),
                self.epoch_budget,
                higher,
            )
            family = self._probability(fit, epoch, target, higher)
            if family is None:
                fit = None
            else:
                probability = family if early is None else 0.5 * (family + early.probability)
        if probability is None or probability >= self.threshold:
            return PruneDecision(False, epoch=epoch, probability=probability, target=target)
        what = (
            "the best completed trial"
            if self.target_quantile == 1.0
            else (f"the top {100 * (1 - self.target_quantile):.0f}% of completed trials")
        )
        if fit is not None:
            sd = math.hypot(_model_sd(fit), fit.noise)
            forecast = (
                f"{metric} forecast {fmt(fit.value_at_budget)} ± {fmt(1.96 * sd)} (95%) "
                f"at epoch {self.epoch_budget}"
            )
            if early is not None:
                forecast += f" (from {_completed_curves(early.n)}: {fmt(early.value)})"
        else:
            assert early is not None
            forecast = (
                f"{metric} forecast {fmt(early.value)} at epoch {self.epoch_budget} from "
                f"{_completed_curves(early.n)} after epoch {epoch}"
            )
        forecast += f"; P(beating {what}, {fmt(target)}) = {probability:.3f} < {self.threshold:g}"
        if plateau is not None:
            return PruneDecision(
                True, Code.PLATEAU.value, f"{plateau.reason}; {forecast}", epoch, probability, target
            )
        reason = f"stopped at epoch {epoch}: {forecast}; best so far {fmt(best_so_far)}"
        return PruneDecision(True, "forecast", reason, epoch, probability, target)

    def _completed_curves(self, study: Study) -> list[tuple[np.ndarray, np.ndarray]]:
        states = (optuna.trial.TrialState.COMPLETE,)
        curves = (
            _curve(t.intermediate_values, self.epoch_budget)
            for t in study.get_trials(deepcopy=False, states=states)
        )
        return [c for c in curves if c[0].size]

    def _probability(self, fit, epoch: int, target: float, higher: bool) -> float | None:
        """P(the trial's value beats ``target``), or None when the forecast is not finite.

        ``objective="best"``: the value is the best epoch's, so this is the probability that at
        least one remaining epoch beats the target: with the ensemble's uncertainty ``s`` shared by
        all epochs (an offset ``d ~ N(0, s^2)`` of the whole curve) and the curve's noise ``sigma``
        independent per epoch, ``P = E_d[1 - prod_e Phi((target - f(e) - d) / sigma)]``, by
        Gauss-Hermite quadrature. ``objective="last"``: ``P(y_budget beats target)`` with the
        variance ``s^2 + sigma^2``.
        """
        sign = 1.0 if higher else -1.0
        s, sigma = _model_sd(fit), float(fit.noise)
        if self.objective == "last":
            mean = float(fit.value_at_budget)
            if not math.isfinite(mean):
                return None
            sd = math.hypot(s, sigma)
            gap = sign * (mean - target)
            return float(norm.cdf(gap / sd)) if sd > 0 else float(gap > 0)
        remaining = np.arange(epoch + 1, self.epoch_budget + 1, dtype=np.float64)
        f = sign * (fit.predict(remaining) - target)  # > 0: that epoch's forecast beats the target
        if not np.all(np.isfinite(f)):
            return None
        nodes, weights = np.polynomial.hermite_e.hermegauss(24)
        offsets = s * nodes if s > 0 else np.zeros(1)
        weights = weights / weights.sum() if s > 0 else np.ones(1)
        if sigma > 0:
            # log P(every remaining epoch misses), per offset, summed in logs for stability.
            log_miss = norm.logcdf(-(f[None, :] + offsets[:, None]) / sigma).sum(axis=1)
            miss = np.exp(log_miss)
        else:
            miss = np.all(f[None, :] + offsets[:, None] <= 0, axis=1).astype(np.float64)
        return float(np.clip(1.0 - weights @ miss, 0.0, 1.0))

    def _target(self, study: Study, higher: bool) -> float | None:
        states = (optuna.trial.TrialState.COMPLETE,)
        done = [t.value for t in study.get_trials(deepcopy=False, states=states)]
        done = [float(v) for v in done if v is not None and math.isfinite(v)]
        if len(done) < self.n_startup_trials:
            return None
        q = self.target_quantile if higher else 1.0 - self.target_quantile
        return float(np.quantile(done, q))

    def _engine(self, metric: str, values: np.ndarray):
        try:
            decision = _engine(
                metric, tuple(float(v) for v in values), self.epoch_budget, self.num_classes, self.config
            )
        except ValueError:
            return None
        return decision if decision.stop else None
