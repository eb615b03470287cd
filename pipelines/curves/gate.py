"""Regression gate: is the challenger worse than the champion on the same test examples?

Both models are scored on the *same* test set, so the comparison is paired: per example, each
model is right or wrong, and only the examples where they disagree (the discordant pairs) carry
information about which model is better. The paired test is McNemar's; the effect size is the
accuracy difference with a paired bootstrap confidence interval. McNemar treats the two *trained
models* as fixed, so it cannot tell a worse config from an unlucky seed: the challenger must also
fall below what one more seed of the champion's config could score (the seed rule), bounded both
by the spread of the champion config's own seed runs and by the largest seed-to-seed spread a
test set of this size allows when errors are independent per example.

Inputs are the evaluate stage's ``predictions.parquet`` frames (columns ``id, label, predicted,
correct, confidence``); only ``id`` and ``correct`` are used.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from pipelines.curves.types import Finding, Severity

# Decisions. Only the first two promote the challenger (``passed=True``).
FIRST_CHAMPION = "first_champion"  # no champion yet: the challenger becomes the first one
PROMOTE = "promote"  # not a regression and at least as accurate as the champion
KEEP_CHAMPION = "keep_champion"  # less accurate, but not a regression beyond the noise
REGRESSION = "regression"  # worse beyond test-set noise (and seed noise, when known)
PROMOTING_DECISIONS = frozenset({FIRST_CHAMPION, PROMOTE})

# Below this many discordant pairs the chi-square approximation is poor; use the exact binomial
# test instead (the usual rule of thumb, e.g. statsmodels' and Fagerland et al. 2013).
EXACT_BELOW_DISCORDANT = 25


@dataclass(frozen=True)
class SeedSpread:
    """How the challenger sits in the distribution of the champion config's seed accuracies.

    Attributes:
        n_seeds: number of distinct seeds of the champion's config behind ``mean`` (1 when only
            the champion itself is known).
        mean: mean of their test accuracies, in [0, 1].
        sd: sample standard deviation (ddof=1) of their test accuracies; None for one seed.
        binomial_sd: ``sqrt(mean (1 - mean) / n)``, the largest seed-to-seed SD of an accuracy
            on n test examples when errors are independent per example.
        lower_bound_binomial: ``mean - z_{1-alpha} * binomial_sd * sqrt(1 + 1/k)``.
        lower_bound_t: ``mean - t_{1-alpha, k-1} * sd * sqrt(1 + 1/k)``; None for k < 3.
        lower_bound: the lower of the two: one more seed of this config scores below it with
            probability at most alpha under either model; a challenger below it is worse than
            that config's seed-to-seed noise explains.
        below: whether the challenger's accuracy is below ``lower_bound``.
    """

    n_seeds: int
    mean: float
    sd: float | None
    binomial_sd: float
    lower_bound_binomial: float
    lower_bound_t: float | None
    lower_bound: float
    below: bool


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the numbers behind it.

    Attributes:
        passed: True when the challenger is promoted (``decision`` in ``PROMOTING_DECISIONS``).
        decision: one of ``first_champion``, ``promote``, ``keep_champion``, ``regression``.
        challenger_accuracy: fraction of test examples the challenger got right, in [0, 1].
        champion_accuracy: same for the champion (None when there is no champion).
        delta: ``challenger_accuracy - champion_accuracy`` in accuracy units (0.01 = 1 point).
        delta_ci: (low, high) paired-bootstrap confidence interval of ``delta``.
        p_value: one-sided p-value for "the challenger is worse" (the one the decision uses).
        p_value_two_sided: McNemar's two-sided p-value as statsmodels returns it.
        n_examples: number of test examples (ids) both models were scored on.
        discordant: (b, c): b = examples only the champion got right, c = only the challenger.
        test: name of the paired test used (``mcnemar_exact`` or ``mcnemar_chi2_cc``).
        seed_spread: the seed rule's numbers (None only when there is no champion).
        confidence: level of ``delta_ci`` (0.95 for a 95% interval).
        finding: a ``regression`` finding when ``decision == "regression"``, else None.
    """

    passed: bool
    decision: str
    challenger_accuracy: float
    champion_accuracy: float | None
    delta: float | None
    delta_ci: tuple[float, float] | None
    p_value: float | None
    p_value_two_sided: float | None
    n_examples: int
    discordant: tuple[int, int] | None
    test: str | None
    seed_spread: SeedSpread | None = None
    confidence: float = 0.95
    finding: Finding | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (plain floats / ints / lists / str; Finding flattened)."""
        out: dict[str, Any] = {
            "passed": bool(self.passed),
            "decision": self.decision,
            "challenger_accuracy": float(self.challenger_accuracy),
            "champion_accuracy": _opt_float(self.champion_accuracy),
            "delta": _opt_float(self.delta),
            "delta_ci": None if self.delta_ci is None else [float(v) for v in self.delta_ci],
            "p_value": _opt_float(self.p_value),
            "p_value_two_sided": _opt_float(self.p_value_two_sided),
            "n_examples": int(self.n_examples),
            "discordant": None if self.discordant is None else [int(v) for v in self.discordant],
            "test": self.test,
            "seed_spread": None,
            "confidence": float(self.confidence),
            "finding": None,
        }
        if self.seed_spread is not None:
            s = self.seed_spread
            out["seed_spread"] = {
                "n_seeds": int(s.n_seeds),
                "mean": float(s.mean),
                "sd": _opt_float(s.sd),
                "binomial_sd": float(s.binomial_sd),
                "lower_bound_binomial": float(s.lower_bound_binomial),
                "lower_bound_t": _opt_float(s.lower_bound_t),
                "lower_bound": float(s.lower_bound),
                "below": bool(s.below),
            }
        if self.finding is not None:
            f = self.finding
            out["finding"] = {
                "code": f.code,
                "severity": f.severity.value,
                "onset_epoch": f.onset_epoch,
                "evidence": dict(f.evidence),
                "message": f.message,
                "causes": list(f.causes),
                "remedies": list(f.remedies),
            }
        return out


def gate(
    challenger: pd.DataFrame | pd.Series,
    champion: pd.DataFrame | pd.Series | None,
    *,
    alpha: float = 0.05,
    champion_seed_accuracies: Mapping[Hashable, float] | None = None,
    min_effect: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> GateResult:
    """Decide whether the challenger replaces the champion, from per-example correctness.

    Paired test (McNemar 1947; statsmodels ``mcnemar``). Let b = examples only the champion got
    right and c = examples only the challenger got right. Under "equally accurate", b ~
    Binomial(b + c, 1/2). When b + c < 25 the exact binomial test is used, otherwise the
    chi-square statistic with continuity correction (Edwards 1948). The decision needs a
    *one-sided* p-value for "the challenger is worse" (b > c), computed explicitly:

    - exact branch: ``scipy.stats.binomtest(b, b + c, 0.5, alternative="greater")``;
    - chi-square branch: McNemar's two-sided p halved when b > c, ``1 - p/2`` otherwise (the 1-df
      chi-square is the square of a normal z, so halving gives the one-sided normal tail).

    Effect size: ``delta = acc(challenger) - acc(champion)`` with a percentile paired-bootstrap CI
    (Efron & Tibshirani 1993, ch. 13). Resampling examples with replacement only changes how many
    of the n examples fall in each of the three classes {only champion right, agree, only
    challenger right}, so the resampled counts are drawn as Multinomial(n, (b, n-b-c, c)/n) --
    the same distribution as index resampling, at O(B) instead of O(B * n) memory.

    Seed rule: is the challenger below what one more seed of the champion's config could score?
    The k seed accuracies are ``champion_seed_accuracies`` (test accuracies of the champion's
    config trained with k distinct seeds, on the same test set; a seed trained twice is one
    draw, which is why they come keyed by seed), or the champion's own accuracy alone (k = 1)
    when none are given. Two one-sided lower (1 - alpha) prediction bounds for one more seed's
    accuracy (normal prediction interval, Hahn & Meeker, *Statistical Intervals*, 1991, sec. 4.6):

    - from the seeds' own spread, ``mean - t_{1-alpha, k-1} * sd * sqrt(1 + 1/k)``
      (``scipy.stats.t``), when k >= 3 (two runs give an sd too unstable to judge by, as in
      :mod:`pipelines.curves.compare`);
    - with a known SD, ``mean - z_{1-alpha} * s_b * sqrt(1 + 1/k)``, where
      ``s_b = sqrt(mean (1 - mean) / n)``. A seed's accuracy on a fixed test set varies as if each
      example were an independent coin with its own probability p_i of being right (the
      "independent errors" result of K. Jordan, "On the Variance of Neural Network Training with
      respect to Test Sets and Distributions", ICLR 2024), so its variance is
      ``sum_i p_i (1 - p_i) / n^2``, which is at most ``s_b^2`` (p (1 - p) is concave). ``s_b``
      is thus an upper bound that needs no seed runs and cannot be fooled by a small, tight
      sample of them (in benchmarks/gate_seeds.py, 5 of the 10 seeds of one MLP have sd 0.0011,
      all 10 have 0.0021). Errors are not fully independent in practice: there the seeds' sd
      (0.0021) is 1.5 times the per-example independent-errors estimate (0.0014), but still
      below ``s_b`` (0.0031). When even ``s_b`` is exceeded (unstable training), only the
      t bound covers it, so give the gate at least 3 seeds of the champion's config.

    The rule uses the lower of the bounds (below both): under H0 "the challenger is one more
    seed of the champion's config" each bound is exceeded with probability <= alpha under its
    model, so the lower one is too, whichever model holds. On Fashion-MNIST's 10,000 test
    images (s_b ~ 0.003) one more seed is flagged when about 0.6 point below the seeds' mean
    (k = 5), or 0.7 point below the champion alone (k = 1). The price is power on small drops
    with few seeds: the benchmark caught a 1-point drop 94-99% of the time with 9 seeds, 84-88%
    with 3 and 72-82% with the champion alone.

    Policy:

    - no champion -> ``first_champion`` (passed);
    - ``regression`` (not passed, ``regression`` finding) when all hold: the challenger is less
      accurate, by more than ``min_effect``; the one-sided paired p < ``alpha``; and the
      challenger is below the seed rule's lower bound. The seed rule is an extra *requirement*,
      not an alternative: McNemar conditions on the two trained models, so a seed that is
      unlucky on this test set differs "significantly" from the champion on 10k examples
      (benchmarks/gate_seeds.py: McNemar alone flagged 3 of 10 seeds of one MLP, 0.1 to 0.4
      point below their mean, in 14% of the seed-only pairs; the full gate flagged none); a
      regression finding should mean the config or data got worse, not that a seed was unlucky;
    - otherwise ``promote`` (passed) when ``challenger_accuracy >= champion_accuracy``, else
      ``keep_champion`` (not passed, no finding): a challenger that is not significantly worse
      but is not better either does not replace a model already serving.

    Args:
        challenger: the challenger's predictions: a DataFrame with columns ``id`` and ``correct``
            (bool; other columns ignored), or a bool Series indexed by id. (N,) rows, ids unique.
        champion: the champion's predictions on the same ids, same format, or None.
        alpha: significance level for the one-sided paired test and the seed prediction bound.
        champion_seed_accuracies: seed -> test accuracy in [0, 1] of the champion's config
            trained with that seed, one entry per distinct seed (may include the champion's own
            seed; should not include the challenger's run); None or empty: the champion's own
            accuracy is the only seed (k = 1).
        min_effect: smallest accuracy drop (accuracy units, 0.005 = half a point) that counts as
            a regression; smaller significant drops give ``keep_champion``.
        confidence: level of the bootstrap interval ``delta_ci`` (0.95 -> 2.5 / 97.5 percentiles).
        n_resamples: bootstrap resamples.
        seed: seed of the bootstrap's ``numpy.random.Generator`` (results are reproducible).

    Returns:
        The ``GateResult``.

    Raises:
        ValueError: a frame lacks ``id`` / ``correct``, has duplicate ids, missing (NaN)
            correctness or no rows; the two sides' ids differ (the message says which side
            lacks how many ids, with examples); ``alpha`` / ``confidence`` outside (0, 1);
            ``min_effect`` < 0; ``n_resamples`` not a whole number >= 1; a seed accuracy outside
            [0, 1]; a ``correct`` column that is not bool (or 0/1).
        TypeError: ``champion_seed_accuracies`` is not a mapping keyed by seed; predictions that
            are not a pandas DataFrame or Series.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a whole number >= 1, got {n_resamples!r}")
    if min_effect < 0:
        raise ValueError(f"min_effect must be >= 0 (an accuracy drop), got {min_effect}")
    if champion_seed_accuracies is None:
        champion_seed_accuracies = {}
    if not isinstance(champion_seed_accuracies, Mapping):
        # A bare list cannot say whether two values are one seed run twice (sd 0, a spread of
        # nothing) or two seeds; keyed by seed, duplicates cannot arise.
        raise TypeError(
            "champion_seed_accuracies must map seed -> test accuracy (one entry per distinct seed), "
            f"got {type(champion_seed_accuracies).__name__}"
        )
    seeds = np.asarray(list(champion_seed_accuracies.values()), dtype=np.float64)
    if seeds.size and (not np.all(np.isfinite(seeds)) or seeds.min() < 0 or seeds.max() > 1):
        raise ValueError(f"champion_seed_accuracies must be in [0, 1], got {seeds.tolist()}")

    ch = _correct_by_id(challenger, "challenger")
    acc_ch = float(ch.mean())
    if champion is None:
        return GateResult(
            passed=True,
            decision=FIRST_CHAMPION,
            challenger_accuracy=acc_ch,
            champion_accuracy=None,
            delta=None,
            delta_ci=None,
            p_value=None,
            p_value_two_sided=None,
            n_examples=int(ch.size),
            discordant=None,
            test=None,
            confidence=confidence,
        )

    cp = _correct_by_id(champion, "champion")
    _check_same_ids(ch, cp)
    cp = cp.reindex(ch.index)
    x_ch = ch.to_numpy(dtype=bool)
    x_cp = cp.to_numpy(dtype=bool)
    n = int(x_ch.size)
    acc_cp = float(x_cp.mean())
    delta = acc_ch - acc_cp

    b = int(np.sum(x_cp & ~x_ch))  # only the champion right: challenger loses these
    c = int(np.sum(x_ch & ~x_cp))  # only the challenger right
    both = int(np.sum(x_ch & x_cp))
    neither = n - b - c - both
    # Rows: champion right / wrong; columns: challenger right / wrong.
    table = np.array([[both, b], [c, neither]])
    exact = (b + c) < EXACT_BELOW_DISCORDANT
    res = mcnemar(table, exact=exact, correction=True)
    p_two = float(min(1.0, res.pvalue))
    if exact:
        test_name = "mcnemar_exact"
        p_one = float(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    else:
        test_name = "mcnemar_chi2_cc"
        p_one = p_two / 2.0 if b > c else 1.0 - p_two / 2.0

    delta_ci = _paired_bootstrap_ci(n, b, c, confidence=confidence, n_resamples=n_resamples, seed=seed)
    spread = _seed_spread(seeds if seeds.size else np.array([acc_cp]), acc_ch, alpha, n)

    significant = p_one < alpha
    big_enough = delta < 0 and -delta > min_effect
    beyond_seeds = spread.below
    if significant and big_enough and beyond_seeds:
        decision = REGRESSION
    elif acc_ch >= acc_cp:
        decision = PROMOTE
    else:
        decision = KEEP_CHAMPION

    finding = None
    if decision == REGRESSION:
        finding = _regression_finding(
            acc_ch, acc_cp, delta, delta_ci, confidence, p_one, p_two, n, b, c, test_name, spread, alpha
        )
    return GateResult(
        passed=decision in PROMOTING_DECISIONS,
        decision=decision,
        challenger_accuracy=acc_ch,
        champion_accuracy=acc_cp,
        delta=delta,
        delta_ci=delta_ci,
        p_value=p_one,
        p_value_two_sided=p_two,
        n_examples=n,
        discordant=(b, c),
        test=test_name,
        seed_spread=spread,
        confidence=confidence,
        finding=finding,
    )


def _correct_by_id(pred: pd.DataFrame | pd.Series, side: str) -> pd.Series:
    """Bool Series of correctness indexed by example id, validated."""
    if isinstance(pred, pd.Series):
        s = pred.copy()
    elif isinstance(pred, pd.DataFrame):
        missing = [col for col in ("id", "correct") if col not in pred.columns]
        if missing:
            raise ValueError(
                f"{side} predictions lack column(s) {missing}; expected 'id' and 'correct' "
                f"(got {list(pred.columns)})"
            )
        s = pd.Series(pred["correct"].to_numpy(), index=pd.Index(pred["id"].to_numpy(), name="id"))
    else:
        raise TypeError(f"{side} predictions must be a pandas DataFrame or Series, got {type(pred)}")
    if s.size == 0:
        raise ValueError(f"{side} predictions have no rows")
    if s.index.has_duplicates:
        dup = s.index[s.index.duplicated()].unique()
        raise ValueError(f"{side} predictions have {dup.size} duplicated id(s), e.g. {dup[:5].tolist()}")
    if s.isna().any():
        raise ValueError(f"{side} predictions have {int(s.isna().sum())} missing 'correct' value(s)")
    # Accept 0/1 ints as well as bools (True == 1 in Python), but nothing else: 0.7 is not "correct".
    vals = pd.unique(s.to_numpy())
    if not set(vals.tolist()) <= {False, True}:
        raise ValueError(f"{side} 'correct' must be bool (or 0/1), got values like {vals[:5].tolist()}")
    return s.astype(bool)


def _check_same_ids(ch: pd.Series, cp: pd.Series) -> None:
    only_ch = ch.index.difference(cp.index)
    only_cp = cp.index.difference(ch.index)
    if only_ch.size or only_cp.size:
        parts = []
        if only_cp.size:
            parts.append(
                f"the challenger lacks {only_cp.size} id(s) the champion has (e.g. {only_cp[:5].tolist()})"
            )
        if only_ch.size:
            parts.append(
                f"the champion lacks {only_ch.size} id(s) the challenger has (e.g. {only_ch[:5].tolist()})"
            )
        raise ValueError(
            "challenger and champion were not scored on the same test examples: "
            + "; ".join(parts)
            + f" ({ch.size} challenger ids, {cp.size} champion ids)"
        )


def _paired_bootstrap_ci(
    n: int, b: int, c: int, *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [b / n, (n - b - c) / n, c / n], size=n_resamples)
    deltas = (counts[:, 2] - counts[:, 0]) / n
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(deltas, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _seed_spread(seeds: np.ndarray, acc_ch: float, alpha: float, n: int) -> SeedSpread:
    """The seed rule (see :func:`gate`): k >= 1 seed accuracies, n test examples."""
    k = int(seeds.size)
    mean = float(seeds.mean())
    widen = math.sqrt(1.0 + 1.0 / k)
    binomial_sd = math.sqrt(mean * (1.0 - mean) / n)
    lower_binomial = mean - float(stats.norm.ppf(1.0 - alpha)) * binomial_sd * widen
    sd = float(seeds.std(ddof=1)) if k >= 2 else None
    lower_t = None
    if sd is not None and k >= 3:
        lower_t = mean - float(stats.t.ppf(1.0 - alpha, df=k - 1)) * sd * widen
    lower = lower_binomial if lower_t is None else min(lower_binomial, lower_t)
    return SeedSpread(
        n_seeds=k,
        mean=mean,
        sd=sd,
        binomial_sd=binomial_sd,
        lower_bound_binomial=lower_binomial,
        lower_bound_t=lower_t,
        lower_bound=lower,
        below=acc_ch < lower,
    )


def _fmt_points(x: float) -> str:
    """Accuracy difference in points with a real minus sign, e.g. -0.018 -> '−1.8'."""
    s = f"{x * 100:+.1f}"
    return s.replace("-", "\u2212")


def _regression_finding(
    acc_ch: float,
    acc_cp: float,
    delta: float,
    ci: tuple[float, float],
    confidence: float,
    p_one: float,
    p_two: float,
    n: int,
    b: int,
    c: int,
    test_name: str,
    spread: SeedSpread,
    alpha: float,
) -> Finding:
    pct = f"{confidence * 100:.0f}%"
    msg = (
        f"challenger is worse than the champion on the same {n:,} test examples: "
        f"{acc_ch:.3f} vs {acc_cp:.3f} ({_fmt_points(delta)} points, {pct} CI "
        f"{_fmt_points(ci[0])} to {_fmt_points(ci[1])}), one-sided McNemar p = {p_one:.2g}"
    )
    seeds = f"{spread.n_seeds} seeds" if spread.n_seeds > 1 else "the champion alone"
    msg += (
        f"; also below what one more seed of the champion's config scores "
        f"(lower bound {spread.lower_bound:.3f} from {seeds})"
    )
    evidence: dict[str, Any] = {
        "challenger_accuracy": acc_ch,
        "champion_accuracy": acc_cp,
        "delta": delta,
        "delta_ci": [ci[0], ci[1]],
        "confidence": confidence,
        "p_value_one_sided": p_one,
        "p_value_two_sided": p_two,
        "alpha": alpha,
        "test": test_name,
        "n_examples": n,
        "only_champion_correct": b,
        "only_challenger_correct": c,
    }
    evidence.update(
        seed_n=spread.n_seeds,
        seed_mean=spread.mean,
        seed_sd=spread.sd,
        seed_binomial_sd=spread.binomial_sd,
        seed_lower_bound=spread.lower_bound,
    )
    return Finding(
        code="regression",
        severity=Severity.CRITICAL,
        onset_epoch=None,
        evidence=evidence,
        message=msg,
        causes=(
            "a change in the training config, code or data made the model worse",
            "the training data changed (new labels, a shifted distribution, fewer examples)",
            "training stopped early or diverged (check the challenger's curves)",
        ),
        remedies=(
            "keep the champion in production",
            "diff the challenger's config, code commit and data version against the champion's",
            "look at the examples only the champion gets right for a pattern (class, source, date)",
        ),
    )


def _opt_float(x: float | None) -> float | None:
    return None if x is None else float(x)
