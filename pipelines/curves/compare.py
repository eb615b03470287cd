"""Findings that need more than one run: curve regression, series stall, tuning optimism.

- ``curve_regression`` (:func:`compare_curves`): the challenger's validation curve is worse than
  the champion's at the same epochs (plateaus lower) or gets to the champion's best level later.
- ``series_stall`` (:func:`series_stall`): the last N scheduled retrains have not beaten the
  champion.
- ``tuning_optimism`` (:func:`tuning_optimism`): the best tuning trial's validation score is
  higher than its test score by more than sampling noise explains (the search overfit the
  validation set).

Thresholds are multiples of the curves' own epoch-to-epoch noise (``pipelines.curves.noise``) and,
where the validation set's size is known or can be read off the accuracy grid, of the seed-to-seed
spread that size implies, so two runs of one config that differ only in their seed are not told
apart: seeds shift a whole curve by about the binomial SD of an accuracy on that set, which the
epoch-to-epoch noise (often ten times smaller on a fixed validation set) does not capture.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.proportion import proportions_ztest

from pipelines.curves.configs import run_seed, same_config
from pipelines.curves.noise import estimate_noise, infer_num_examples
from pipelines.curves.types import Curve, Finding, Severity

METRIC = "val_accuracy"
# Fewer paired epochs than this and the signed-rank test cannot reach p < 0.05 one-sided with any
# margin (its smallest p with 5 pairs is 1/32); too short a comparison to call anything.
MIN_COMMON_EPOCHS = 6


def compare_curves(
    challenger: Curve,
    champion: Curve | None,
    recent: Sequence[Curve] = (),
    *,
    noise: float | None = None,
    metric: str = METRIC,
    alpha: float = 0.05,
    min_effect: float = 0.002,
    noise_multiple: float = 2.0,
    tail_fraction: float = 0.5,
    num_val_examples: int | None = None,
) -> list[Finding]:
    """Compare the challenger's validation curve with the champion's, epoch by epoch.

    Two rules, each tested at level ``a = alpha / 2`` (Bonferroni: the finding fires when either
    does), both measured against the tolerance ``tol = max(min_effect, noise_multiple *
    noise)`` (accuracy units), where ``noise`` is the per-epoch noise SD of the metric:

    - **plateaus lower**: on the last ``tail_fraction`` of the epochs both runs logged (at least
      6 epochs), the per-epoch differences d = challenger - champion are tested with the
      one-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon(d, alternative="less")``;
      Wilcoxon 1945). Flagged when p < ``a`` AND the median deficit ``-median(d)`` > ``tol``:
      the signed-rank test alone would flag a tiny but consistent offset.
    - **reaches later**: both curves are smoothed with LOWESS (Cleveland 1979; statsmodels
      ``lowess``, frac = max(0.3, 5 / epochs)) and the target is the champion's smoothed best
      minus ``tol``. With ``E*`` the champion's first epoch at the target plus a slack of
      ``max(2, ceil(E/4))`` epochs (E = that first epoch), flagged when the challenger's
      smoothed curve first reaches the target after ``E*`` (or never does), AND at ``E*`` is
      still more than ``tol`` below the champion's smoothed curve, AND the raw per-epoch
      differences up to ``E*`` are negative by the one-sided signed-rank test (p < ``a``). The
      crossing epoch alone is unstable near a flat asymptote; the confirmations keep seed noise
      from moving it into a finding.

    Seed offsets: a run's accuracy on a fixed validation set of n examples varies from seed to
    seed with an SD close to (if anything below) the binomial ``s = sqrt(p (1 - p) / n)`` at its
    level p (the "independent errors" result of K. Jordan, "On the Variance of Neural Network
    Training with respect to Test Sets and Distributions", ICLR 2024), and that offset moves the
    whole curve, so the per-epoch noise and the signed-rank test (which treats the epochs of one
    pair as independent) do not see it. When n is known (``num_val_examples``, else
    :func:`pipelines.curves.noise.infer_num_examples` on the champion's curve, or the
    challenger's when the champion's lies on no grid) the tolerance is raised to
    ``z_{1-a} s sqrt(2)`` with p the champion's median over the last half of its epochs: the
    known-variance form of the prediction bound below with one reference run. The grid is read
    only when a rule would otherwise fire (it only ever withdraws a finding), so unflagged
    comparisons cost nothing extra. Values rounded before logging (e.g. to 3 decimals) read as
    a grid of 1,000 and widen the tolerance accordingly; pass ``num_val_examples`` to be exact.

    Seed runs: runs in ``recent`` with the champion's config on the champion's data
    (:func:`pipelines.curves.configs.same_config`: equal params except the seed, ``paths.*`` and
    ``data.*``, and the same data version; runs without params never match), one per distinct
    seed other than the champion's (runs without a known seed, and the challenger, left out),
    measure how far seeds alone move a whole curve, which per-epoch noise does not capture. With
    the champion and at least two such runs (k >= 3), each rule also requires the challenger to
    fall below the lower one-sided (1 - a) normal prediction bound of those runs,
    ``mean - t_{1-a, k-1} sd sqrt(1 + 1/k)`` (``scipy.stats.t``; Hahn & Meeker, *Statistical
    Intervals*, 1991): on the tail mean for "lower", on the smoothed value at ``E*`` for "later".

    Args:
        challenger: the new run; ``metric`` is an (E,) float array (NaN = not logged) and needs
            at least 6 finite epochs shared with the champion.
        champion: the production run's curve, or None (nothing to compare: returns []).
        recent: other recent runs; those with the champion's config (up to the seed) calibrate
            the seed-to-seed spread; the others are ignored here.
        noise: per-epoch noise SD of ``metric`` (e.g. ``Diagnosis.noise``); None estimates it
            with ``pipelines.curves.noise.estimate_noise`` on both curves and takes the larger.
        metric: higher-is-better metric to compare (``val_accuracy``).
        alpha: family-wise significance level (each rule and its seed bound use ``alpha / 2``).
        min_effect: smallest deficit (accuracy units) ever worth reporting, the tolerance's floor.
        noise_multiple: tolerance in units of ``noise``.
        tail_fraction: share of the common epochs (the latest ones) the "lower" rule looks at.
        num_val_examples: validation examples behind ``metric`` (both runs use the same split);
            None reads it off the values' k / n grid, and curves on no grid (continuous values)
            get no seed-offset term.

    Returns:
        [] or one ``curve_regression`` finding (severity warning) whose evidence says which rule
        fired (``lower`` / ``slower``) with its numbers.

    Raises:
        ValueError: ``alpha`` outside (0, 1) or ``tail_fraction`` outside (0, 1], a negative ``min_effect`` /
            ``noise`` / ``noise_multiple``, or ``num_val_examples`` < 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < tail_fraction <= 1.0:
        raise ValueError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    if min_effect < 0 or noise_multiple < 0 or (noise is not None and noise < 0):
        raise ValueError("min_effect, noise_multiple and noise must be >= 0")
    if num_val_examples is not None and num_val_examples < 1:
        raise ValueError(f"num_val_examples must be >= 1, got {num_val_examples}")
    if champion is None:
        return []
    ch = _finite(challenger, metric)
    cp = _finite(champion, metric)
    if ch is None or cp is None:
        return []
    if noise is None:
        noise = max(estimate_noise(ch[1]), estimate_noise(cp[1]))
    tol = max(min_effect, noise_multiple * float(noise))

    # The finding fires when either rule does: Bonferroni keeps the family-wise level at alpha.
    alpha_each = alpha / 2.0
    evidence: dict[str, Any] = {
        "metric": metric,
        "noise": float(noise),
        "tolerance": tol,
        "alpha_per_rule": alpha_each,
    }
    parts: list[str] = []
    kinds: list[str] = []
    onset: int | None = None

    seed_runs = _seed_runs(challenger, champion, recent, metric)
    lower = _plateaus_lower(ch, cp, seed_runs, tol=tol, alpha=alpha_each, tail_fraction=tail_fraction)
    slower = _reaches_later(ch, cp, seed_runs, tol=tol, alpha=alpha_each)
    if (lower is not None and lower["lower"]) or (slower is not None and slower["slower"]):
        # Only a finding about to fire needs the seed-offset term (it can only withdraw one).
        n_val = num_val_examples if num_val_examples is not None else _grid_size(cp[1], ch[1])
        if n_val is not None:
            level = float(np.median(cp[1][cp[1].size // 2 :]))
            seed_sd = math.sqrt(max(level * (1.0 - level), 0.0) / n_val)
            seed_tol = float(stats.norm.ppf(1.0 - alpha_each)) * seed_sd * math.sqrt(2.0)
            evidence.update(num_val_examples=int(n_val), seed_offset_sd=seed_sd, seed_tolerance=seed_tol)
            if seed_tol > tol:
                tol = seed_tol
                evidence["tolerance"] = tol
                lower = _plateaus_lower(
                    ch, cp, seed_runs, tol=tol, alpha=alpha_each, tail_fraction=tail_fraction
                )
                slower = _reaches_later(ch, cp, seed_runs, tol=tol, alpha=alpha_each)
    if lower is not None:
        evidence.update(lower)
        if lower["lower"]:
            kinds.append("lower")
            onset = lower["window_start_epoch"]
            parts.append(
                f"{metric} is lower than the champion's at the same epochs: median "
                f"{_pts(lower['median_difference'])} points over epochs {lower['window_start_epoch']}"
                f"\u2013{lower['window_end_epoch']} (Wilcoxon signed-rank p = {lower['wilcoxon_p']:.2g}, "
                f"noise \u00b1{noise * 100:.1f} points)"
            )
            if "seed_tolerance" in evidence and evidence["tolerance"] == evidence["seed_tolerance"]:
                parts[-1] += (
                    f", more than seeds alone move an accuracy on {evidence['num_val_examples']:,} "
                    f"validation examples (\u00b1{evidence['seed_offset_sd'] * 100:.1f} points)"
                )
            if lower.get("seed_lower_bound") is not None:
                parts[-1] += (
                    f", below the champion config's {lower['seed_n']}-run range "
                    f"(tail mean {lower['challenger_tail_mean']:.3f} < {lower['seed_lower_bound']:.3f})"
                )

    if slower is not None:
        evidence.update(slower)
        if slower["slower"]:
            kinds.append("slower")
            if onset is None:
                onset = slower["champion_reach_epoch"]
            target = slower["target"]
            if slower["challenger_reach_epoch"] is None:
                parts.append(
                    f"it never reaches the champion's level ({target:.3f}, best minus noise) in "
                    f"{slower['challenger_last_epoch']} epochs; the champion did by epoch "
                    f"{slower['champion_reach_epoch']}"
                )
            else:
                parts.append(
                    f"it reaches the champion's level ({target:.3f}, best minus noise) at epoch "
                    f"{slower['challenger_reach_epoch']} instead of {slower['champion_reach_epoch']}"
                )
    if not kinds:
        return []
    evidence["kinds"] = kinds
    message = f"challenger {challenger.run!s} vs champion {champion.run!s}: " + "; ".join(parts)
    return [
        Finding(
            code="curve_regression",
            severity=Severity.WARNING,
            onset_epoch=onset,
            evidence=evidence,
            message=message,
            causes=(
                "a config change (learning rate, batch size, augmentation, architecture) slowed or "
                "capped learning",
                "the training data changed (fewer or noisier examples, a shifted distribution)",
                "a code change in preprocessing or the model",
            ),
            remedies=(
                "diff the challenger's config, code commit and data version against the champion's",
                "rerun the champion's config on the new data to separate data from config effects",
                "if the challenger is only slower, give it more epochs or a warmer learning rate",
            ),
        )
    ]


def series_stall(
    history: Sequence[float | None],
    champion_accuracy: float,
    n: int = 3,
    *,
    min_improvement: float = 0.0,
) -> Finding | None:
    """Flag when the last ``n`` scheduled retrains have all failed to beat the champion.

    Rule: with at least ``n`` entries, every one of the last ``n`` is either missing (None / NaN:
    the retrain failed or was not evaluated) or ``<= champion_accuracy + min_improvement``. A
    plain count rather than a test: each retrain was already gated against the champion, and
    this finding only says that the recipe has stopped paying for its compute.

    Args:
        history: test accuracies in [0, 1] of recent scheduled retrains, oldest first.
        champion_accuracy: the production model's test accuracy, in [0, 1].
        n: how many of the latest retrains must have failed to improve.
        min_improvement: how much better (accuracy units) a retrain must be to count.

    Returns:
        A ``series_stall`` finding (severity warning), or None (no stall, or fewer than ``n``
        retrains).

    Raises:
        ValueError: ``n`` not a whole number >= 1, ``min_improvement`` < 0, or an accuracy outside
            [0, 1].
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    if min_improvement < 0:
        raise ValueError(f"min_improvement must be >= 0, got {min_improvement}")
    if not 0.0 <= champion_accuracy <= 1.0:
        raise ValueError(f"champion_accuracy must be in [0, 1], got {champion_accuracy}")
    values = [None if v is None or not math.isfinite(float(v)) else float(v) for v in history]
    bad = [v for v in values if v is not None and not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"history accuracies must be in [0, 1], got {bad[:5]}")
    if len(values) < n:
        return None
    last = values[-n:]
    bar = champion_accuracy + min_improvement
    scored = [v for v in last if v is not None]
    if any(v > bar for v in scored):
        return None
    failed = len(last) - len(scored)
    best = max(scored) if scored else None
    if best is None:
        detail = f"all {n} failed or were not evaluated"
    else:
        detail = f"best {best:.3f}"
        if failed:
            detail += f", {failed} failed or not evaluated"
    return Finding(
        code="series_stall",
        severity=Severity.WARNING,
        onset_epoch=None,
        evidence={
            "n": n,
            "last": last,
            "champion_accuracy": champion_accuracy,
            "min_improvement": min_improvement,
            "best_recent": best,
            "failed": failed,
        },
        message=(
            f"the last {n} scheduled retrains did not beat the champion's {champion_accuracy:.3f} "
            f"({detail}): retraining with the same recipe has stopped improving the model"
        ),
        causes=(
            "the new data adds little the model has not already learnt",
            "the model or recipe is at its capacity for this task",
            "retrains fail or are cut short before they converge",
        ),
        remedies=(
            "retrain less often, or only when the data has drifted",
            "change the recipe: architecture, augmentation, learning-rate schedule, tuning budget",
            "collect or label more (or harder) examples",
        ),
    )


def tuning_optimism(
    best_trial_val_score: float,
    test_score: float,
    *,
    n_val: int,
    n_test: int,
    alpha: float = 0.05,
) -> Finding | None:
    """Flag a best tuning trial whose validation accuracy overstates its test accuracy.

    Picking the best of many trials on one validation set selects for trials that were lucky on
    that set, so the winner's validation score is biased upwards (Cawley & Talbot, "On
    over-fitting in model selection and subsequent selection bias in performance evaluation",
    JMLR 11, 2010). The validation and test sets are disjoint, so the two accuracies are
    independent proportions: the one-sided two-proportion z-test
    (``statsmodels.stats.proportion.proportions_ztest``, ``alternative="larger"``) asks whether
    the validation accuracy is higher than sampling noise on these two set sizes allows.

    Args:
        best_trial_val_score: the best trial's validation accuracy, in [0, 1].
        test_score: the same trial's (retrained model's) test accuracy, in [0, 1].
        n_val: validation examples behind ``best_trial_val_score``.
        n_test: test examples behind ``test_score``.
        alpha: significance level.

    Returns:
        A ``tuning_optimism`` finding (severity warning) when the validation score is higher and
        p < ``alpha``, else None.

    Raises:
        ValueError: a score outside [0, 1], a set size < 1, ``alpha`` outside (0, 1).
    """
    for name, v in (("best_trial_val_score", best_trial_val_score), ("test_score", test_score)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {v}")
    if n_val < 1 or n_test < 1:
        raise ValueError(f"n_val and n_test must be >= 1, got {n_val}, {n_test}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    gap = best_trial_val_score - test_score
    if gap <= 0:
        return None
    counts = np.array([round(best_trial_val_score * n_val), round(test_score * n_test)])
    nobs = np.array([n_val, n_test])
    pooled = counts.sum() / nobs.sum()
    if pooled in (0.0, 1.0):  # both perfect or both zero: no variance, no evidence of a gap
        return None
    z, p = proportions_ztest(counts, nobs, alternative="larger")
    z, p = float(z), float(p)
    if not p < alpha:
        return None
    return Finding(
        code="tuning_optimism",
        severity=Severity.WARNING,
        onset_epoch=None,
        evidence={
            "val_score": best_trial_val_score,
            "test_score": test_score,
            "gap": gap,
            "n_val": n_val,
            "n_test": n_test,
            "z": z,
            "p_value": p,
            "alpha": alpha,
            "test": "proportions_ztest_one_sided",
        },
        message=(
            f"the best tuning trial scored {best_trial_val_score:.3f} on validation but "
            f"{test_score:.3f} on test ({_pts(-gap)} points; z = {z:.1f}, p = {p:.2g} with "
            f"{n_val:,} validation and {n_test:,} test examples): more than sampling noise "
            "explains, so the search overfit the validation set and its score is optimistic"
        ),
        causes=(
            "many trials compared on one validation set: the winner was partly lucky",
            "a small validation set",
            "the validation set differs from the test set (split by time or source)",
        ),
        remedies=(
            "report the test score of a held-out test set never used during tuning",
            "use nested cross-validation to estimate the tuned model's performance",
            "enlarge the validation set or cut the number of trials / search space",
        ),
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _finite(curve: Curve, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) where the metric is finite, or None when it is absent / too short."""
    y = curve.get(metric)
    if y is None:
        return None
    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(curve.epochs, dtype=np.int64)
    ok = np.isfinite(y)
    if ok.sum() < MIN_COMMON_EPOCHS:
        return None
    return x[ok], y[ok]


def _seed_runs(
    challenger: Curve, champion: Curve, recent: Sequence[Curve], metric: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Finite ``metric`` of the runs in ``recent`` that are other seeds of the champion's config.

    Same config on the same data (:func:`pipelines.curves.configs.same_config`), one run per
    distinct seed other than the champion's (a seed rerun is the same draw again; the first run
    of each seed in ``recent`` is kept), runs without a known seed left out, and never the
    challenger itself (the bound it is judged by must not include it).
    """
    seen = {run_seed(champion.params)}
    out = []
    for run in recent:
        if run is champion or run is challenger or run.run in (champion.run, challenger.run):
            continue
        seed = run_seed(run.params)
        if seed is None or seed in seen:
            continue
        if not same_config(run.params, champion.params, run.tags, champion.tags):
            continue
        r = _finite(run, metric)
        if r is not None:
            seen.add(seed)
            out.append(r)
    return out


def _plateaus_lower(
    ch: tuple[np.ndarray, np.ndarray],
    cp: tuple[np.ndarray, np.ndarray],
    seed_runs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    tol: float,
    alpha: float,
    tail_fraction: float,
) -> dict[str, Any] | None:
    common, i_ch, i_cp = np.intersect1d(ch[0], cp[0], return_indices=True)
    if common.size < MIN_COMMON_EPOCHS:
        return None
    m = max(MIN_COMMON_EPOCHS, math.ceil(tail_fraction * common.size))
    sel = slice(common.size - m, common.size)
    d = ch[1][i_ch][sel] - cp[1][i_cp][sel]
    median = float(np.median(d))
    # The test only matters when the effect is large enough to act on; skipping it otherwise keeps
    # comparing thousands of runs cheap and changes no decision (``lower`` needs both).
    p = _signed_rank_less(d) if -median > tol else None
    out: dict[str, Any] = {
        "window_start_epoch": int(common[sel][0]),
        "window_end_epoch": int(common[sel][-1]),
        "median_difference": median,
        "wilcoxon_p": p,
        "challenger_tail_mean": float(np.mean(ch[1][i_ch][sel])),
        "champion_tail_mean": float(np.mean(cp[1][i_cp][sel])),
    }
    lower = p is not None and p < alpha and -median > tol
    seed_means = [out["champion_tail_mean"]]
    for r in seed_runs:
        # Same epoch window as the comparison, so tail means are comparable across runs.
        in_window = (r[0] >= out["window_start_epoch"]) & (r[0] <= out["window_end_epoch"])
        if in_window.sum() >= max(3, m // 2):
            seed_means.append(float(np.mean(r[1][in_window])))
    bound = _prediction_lower_bound(seed_means, alpha)
    if bound is not None:
        out.update(seed_n=len(seed_means), seed_lower_bound=bound)
        lower = lower and out["challenger_tail_mean"] < bound
    out["lower"] = bool(lower)
    return out


def _reaches_later(
    ch: tuple[np.ndarray, np.ndarray],
    cp: tuple[np.ndarray, np.ndarray],
    seed_runs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    tol: float,
    alpha: float,
) -> dict[str, Any] | None:
    s_ch = _smooth(*ch)
    s_cp = _smooth(*cp)
    target = float(np.max(s_cp)) - tol
    cp_reach = _first_at_least(x=cp[0], y=s_cp, target=target)
    if cp_reach is None:  # cannot happen (the max is >= itself - tol) but keeps the types honest
        return None
    ch_reach = _first_at_least(x=ch[0], y=s_ch, target=target)
    slack = max(2, math.ceil(0.25 * cp_reach))
    last = int(ch[0][-1])
    check = cp_reach + slack
    # Near a flat asymptote the first-crossing epoch moves by many epochs with a little noise, so
    # "later" is confirmed vertically: at the epoch by which the champion had got there (plus
    # slack), the challenger's smoothed curve must still be more than ``tol`` below the champion's.
    gap = None
    if last >= check and int(cp[0][-1]) >= check:
        gap = float(np.interp(check, cp[0], s_cp) - np.interp(check, ch[0], s_ch))
    late = ch_reach is None or ch_reach > check
    # And by the raw values: up to that epoch the challenger is below the champion epoch by epoch
    # (one-sided Wilcoxon signed-rank on the paired differences), not just at one smoothed point.
    common, i_ch, i_cp = np.intersect1d(ch[0], cp[0], return_indices=True)
    early = common <= check
    p = None
    # As in _plateaus_lower: test only when the effect itself would already call it slower.
    if late and gap is not None and gap > tol and early.sum() >= MIN_COMMON_EPOCHS:
        p = _signed_rank_less(ch[1][i_ch][early] - cp[1][i_cp][early])
    slower = late and gap is not None and gap > tol and p is not None and p < alpha
    out: dict[str, Any] = {}
    if gap is not None:
        # Seeds shift whole curves: the challenger's smoothed value at the check epoch must also
        # be below what the champion config's other runs reach there.
        at_check = [float(np.interp(check, cp[0], s_cp))]
        at_check += [float(np.interp(check, r[0], _smooth(*r))) for r in seed_runs if r[0][-1] >= check]
        bound = _prediction_lower_bound(at_check, alpha)
        if bound is not None:
            value = float(np.interp(check, ch[0], s_ch))
            out.update(seed_n_at_check=len(at_check), seed_lower_bound_at_check=bound)
            slower = slower and value < bound
    return out | {
        "target": target,
        "champion_reach_epoch": int(cp_reach),
        "challenger_reach_epoch": None if ch_reach is None else int(ch_reach),
        "slack_epochs": int(slack),
        "challenger_last_epoch": last,
        "gap_at_check_epoch": gap,
        "rising_wilcoxon_p": p,
        "slower": bool(slower),
    }


def _prediction_lower_bound(values: Sequence[float], alpha: float) -> float | None:
    """Lower one-sided (1 - alpha) normal prediction bound for one more value; None for k < 3.

    ``mean - t_{1-alpha, k-1} * sd * sqrt(1 + 1/k)`` (Hahn & Meeker, *Statistical Intervals*,
    1991, sec. 4.6). k >= 3 because two runs give an sd too unstable to judge anything by.
    """
    k = len(values)
    if k < 3:
        return None
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    return mean - float(stats.t.ppf(1.0 - alpha, df=k - 1)) * sd * math.sqrt(1.0 + 1.0 / k)


def _signed_rank_less(d: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p for "the differences d are centred below 0"."""
    if np.all(d == 0):  # identical values: scipy raises, and there is no evidence either way
        return 1.0
    return float(stats.wilcoxon(d, alternative="less").pvalue)


def _smooth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # LOWESS keeps the curve's shape (a fast start, a flat tail) while averaging out per-epoch
    # noise, so "first epoch at the target" is not decided by one lucky epoch. Cached by content:
    # comparing many challengers against one champion smooths the champion once.
    return _smooth_cached(x.astype(np.float64).tobytes(), np.asarray(y, np.float64).tobytes()).copy()


@functools.lru_cache(maxsize=256)
def _smooth_cached(xb: bytes, yb: bytes) -> np.ndarray:
    x, y = np.frombuffer(xb), np.frombuffer(yb)
    frac = min(1.0, max(0.3, 5.0 / x.size))
    return lowess(y, x, frac=frac, it=1, is_sorted=True, return_sorted=False)


def _first_at_least(*, x: np.ndarray, y: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(y >= target)
    return None if hit.size == 0 else int(x[hit[0]])


def _grid_size(champion: np.ndarray, challenger: np.ndarray) -> int | None:
    """Validation examples behind the accuracies: the champion's grid, else the challenger's.

    Both runs are scored on the same split, so one grid is enough; the champion's is read once
    per champion (``infer_num_examples`` caches by content) however many challengers it meets.
    """
    n = infer_num_examples(champion)
    return n if n is not None else infer_num_examples(challenger)


def _pts(x: float) -> str:
    return f"{x * 100:+.1f}".replace("-", "\u2212")
