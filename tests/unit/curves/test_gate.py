"""Tests for the regression gate (McNemar + paired bootstrap + seed spread)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.curves.gate import (
    FIRST_CHAMPION,
    KEEP_CHAMPION,
    PROMOTE,
    REGRESSION,
    GateResult,
    gate,
)

N = 10_000


def _frame(correct: np.ndarray, ids: np.ndarray | None = None) -> pd.DataFrame:
    """A predictions.parquet-like frame: id, label, predicted, correct, confidence."""
    n = correct.size
    ids = np.arange(n) if ids is None else ids
    label = np.zeros(n, dtype=np.int64)
    return pd.DataFrame(
        {
            "id": ids,
            "label": label,
            "predicted": np.where(correct, label, 1),
            "correct": correct.astype(bool),
            "confidence": np.full(n, 0.9),
        }
    )


def _pair(n: int, acc_champion: float, b: int, c: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Champion with ``acc_champion``; challenger equal to it except for b losses and c wins.

    Errors are strongly correlated (the usual case for two versions of one model): the two models
    agree on all but b + c examples.
    """
    rng = np.random.default_rng(seed)
    champ = np.zeros(n, dtype=bool)
    champ[rng.choice(n, size=round(acc_champion * n), replace=False)] = True
    chall = champ.copy()
    right = np.flatnonzero(champ)
    wrong = np.flatnonzero(~champ)
    chall[rng.choice(right, size=b, replace=False)] = False
    chall[rng.choice(wrong, size=c, replace=False)] = True
    # Shuffle the challenger's row order: the gate must align by id, not by position.
    ch = _frame(chall).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return ch, _frame(champ)


def test_two_points_worse_on_10k_is_a_regression():
    ch, cp = _pair(N, 0.889, b=300, c=120)
    res = gate(ch, cp)
    assert res.decision == REGRESSION
    assert not res.passed
    assert res.test == "mcnemar_chi2_cc"
    assert res.discordant == (300, 120)
    assert res.n_examples == N
    assert res.challenger_accuracy == pytest.approx(0.871)
    assert res.champion_accuracy == pytest.approx(0.889)
    assert res.delta == pytest.approx(-0.018)
    assert res.p_value < 1e-12
    lo, hi = res.delta_ci
    assert lo < -0.018 < hi < 0
    assert res.finding is not None and res.finding.code == "regression"
    msg = res.finding.message
    assert "10,000" in msg and "0.871 vs 0.889" in msg and "\u22121.8 points" in msg and "McNemar p" in msg


def test_identical_models_pass_without_finding():
    ch, cp = _pair(N, 0.9, b=0, c=0)
    res = gate(ch, cp)
    assert res.decision == PROMOTE and res.passed
    assert res.finding is None
    assert res.delta == 0.0
    assert res.p_value == pytest.approx(1.0)
    assert res.test == "mcnemar_exact"


def test_tenth_of_a_point_is_not_significant_and_keeps_champion():
    ch, cp = _pair(N, 0.889, b=60, c=50)
    res = gate(ch, cp)
    assert res.delta == pytest.approx(-0.001)
    assert res.p_value > 0.05
    assert res.decision == KEEP_CHAMPION and not res.passed
    assert res.finding is None
    assert res.delta_ci[0] < 0 < res.delta_ci[1]


def test_better_challenger_is_promoted():
    ch, cp = _pair(N, 0.889, b=100, c=300)
    res = gate(ch, cp)
    assert res.decision == PROMOTE and res.passed and res.finding is None
    assert res.p_value > 0.99  # one-sided "worse" p for a clearly better model


def test_exact_branch_with_few_discordant_pairs():
    ch, cp = _pair(2_000, 0.9, b=10, c=1)
    res = gate(ch, cp)
    assert res.test == "mcnemar_exact"
    # One-sided binomial: P(X >= 10 | 11, 1/2) = 12 / 2048.
    assert res.p_value == pytest.approx(12 / 2048)
    assert res.p_value_two_sided == pytest.approx(24 / 2048)
    # Significant for McNemar, but 0.45 point on 2,000 images is within what a seed alone moves.
    assert res.decision == KEEP_CHAMPION and not res.seed_spread.below

    ch, cp = _pair(200, 0.9, b=20, c=1)  # 9.5 points on 200 images: beyond seed noise too
    res = gate(ch, cp)
    assert res.test == "mcnemar_exact"
    assert res.p_value == pytest.approx(22 / 2**21)
    assert res.decision == REGRESSION

    ch, cp = _pair(2_000, 0.9, b=3, c=1)
    res = gate(ch, cp)
    assert res.test == "mcnemar_exact"
    assert res.p_value == pytest.approx(5 / 16)
    assert res.decision == KEEP_CHAMPION and res.finding is None


def test_min_effect_ignores_significant_but_tiny_drops():
    ch, cp = _pair(N, 0.889, b=300, c=120)
    assert gate(ch, cp, min_effect=0.01).decision == REGRESSION
    res = gate(ch, cp, min_effect=0.02)
    assert res.decision == KEEP_CHAMPION and res.finding is None


def test_no_champion_is_first_champion():
    ch, _ = _pair(N, 0.9, b=0, c=0)
    res = gate(ch, None)
    assert res.decision == FIRST_CHAMPION and res.passed
    assert res.champion_accuracy is None and res.finding is None
    assert res.challenger_accuracy == pytest.approx(0.9)


def test_series_input_accepted():
    ch, cp = _pair(N, 0.889, b=300, c=120)
    res = gate(ch.set_index("id")["correct"], cp.set_index("id")["correct"])
    assert res.decision == REGRESSION


def test_id_mismatch_names_the_side_and_count():
    ch, cp = _pair(1_000, 0.9, b=5, c=5)
    with pytest.raises(ValueError, match=r"challenger lacks 3 id"):
        gate(ch.iloc[3:], cp)
    with pytest.raises(ValueError, match=r"champion lacks 2 id"):
        gate(ch, cp.iloc[:-2])
    shifted = cp.assign(id=cp["id"] + 7)
    with pytest.raises(ValueError, match=r"challenger lacks 7 id.*champion lacks 7 id"):
        gate(ch, shifted)


def test_bad_inputs_raise():
    ch, cp = _pair(100, 0.9, b=1, c=1)
    with pytest.raises(ValueError, match="duplicated id"):
        gate(pd.concat([ch, ch.iloc[:2]]), cp)
    with pytest.raises(ValueError, match="lack column"):
        gate(ch.drop(columns="correct"), cp)
    with pytest.raises(ValueError, match="missing 'correct'"):
        gate(ch.assign(correct=ch["correct"].astype(object).where(ch["id"] != 0, None)), cp)
    with pytest.raises(ValueError, match="no rows"):
        gate(ch.iloc[:0], cp)
    with pytest.raises(ValueError, match="alpha"):
        gate(ch, cp, alpha=1.5)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n_resamples"):
            gate(ch, cp, n_resamples=bad)
    with pytest.raises(ValueError, match="champion_seed_accuracies"):
        gate(ch, cp, champion_seed_accuracies={1: 0.9, 2: 1.2})


def test_seed_spread_rule():
    # Champion config over 5 seeds: mean 0.8812, sd ~0.0089; lower 95% prediction bound ~0.860.
    seeds = dict(enumerate([0.875, 0.889, 0.880, 0.892, 0.870]))
    # 0.871 vs 0.889 is "significant" for McNemar, but inside the config's seed-to-seed range:
    ch, cp = _pair(N, 0.889, b=300, c=120)
    res = gate(ch, cp, champion_seed_accuracies=seeds)
    assert res.p_value < 1e-6
    assert res.seed_spread is not None and not res.seed_spread.below
    assert 0.855 < res.seed_spread.lower_bound < 0.865
    assert res.decision == KEEP_CHAMPION and res.finding is None and not res.passed

    # 0.839 is below anything the seeds explain -> regression, with the spread in the evidence.
    ch, cp = _pair(N, 0.889, b=600, c=100)
    res = gate(ch, cp, champion_seed_accuracies=seeds)
    assert res.seed_spread.below
    assert res.decision == REGRESSION
    assert res.finding.evidence["seed_n"] == 5
    assert "from 5 seeds" in res.finding.message

    # One seed has no sd: only the binomial bound applies, 0.889 - 1.645 s_b sqrt(2) = 0.8817.
    res = gate(*_pair(N, 0.889, b=300, c=120), champion_seed_accuracies={7: 0.889})
    s = res.seed_spread
    assert s.n_seeds == 1 and s.sd is None and s.lower_bound_t is None
    assert s.lower_bound == pytest.approx(0.889 - 1.6449 * np.sqrt(0.889 * 0.111 / N) * np.sqrt(2), abs=1e-5)
    assert res.decision == REGRESSION and "champion alone" in res.finding.message


def test_seed_accuracies_are_keyed_by_seed_so_reruns_count_once():
    # Two runs of one seed are one draw: a bare list could not tell them from two seeds (the old
    # "2-seed range with sd 0", whose lower bound equals the mean and flags any small drop).
    ch, cp = _pair(N, 0.889, b=300, c=120)
    with pytest.raises(TypeError, match="seed -> test accuracy"):
        gate(ch, cp, champion_seed_accuracies=[0.889, 0.889])
    res = gate(ch, cp, champion_seed_accuracies={"42": 0.889, "43": 0.875, "44": 0.881})
    assert res.seed_spread.n_seeds == 3
    assert res.to_dict()["seed_spread"]["n_seeds"] == 3


def test_false_regression_rate_is_near_alpha():
    # Two independent models with the same true accuracy: the gate should cry "regression" in
    # about alpha / 1 of the cases where the challenger happens to be lower (one-sided, so ~5%).
    rng = np.random.default_rng(123)
    n, sims, flagged = 2_000, 300, 0
    ids = np.arange(n)
    for _ in range(sims):
        a = rng.random(n) < 0.85
        b = rng.random(n) < 0.85
        res = gate(_frame(a, ids), _frame(b, ids), n_resamples=200)
        flagged += res.decision == REGRESSION
    assert 0.02 <= flagged / sims < 0.09, flagged  # near alpha: neither blind nor trigger-happy


def test_bootstrap_is_seeded_and_result_serialises():
    ch, cp = _pair(N, 0.889, b=300, c=120)
    r1, r2 = gate(ch, cp, seed=7), gate(ch, cp, seed=7)
    assert r1.delta_ci == r2.delta_ci
    # the seed is the bootstrap's, not ignored (percentiles of a discrete law: some seeds agree)
    assert len({gate(ch, cp, seed=s).delta_ci for s in range(7, 12)}) > 1
    assert isinstance(r1, GateResult)
    d = json.loads(json.dumps(r1.to_dict()))
    assert d["decision"] == REGRESSION and d["finding"]["code"] == "regression"
    assert d["discordant"] == [300, 120]


# --- the seed rule -----------------------------------------------------------------------------


def test_seed_rule_bounds_by_number_of_seeds():
    ch, cp = _pair(N, 0.889, b=300, c=120)
    z, widen = 1.6448536, lambda k: np.sqrt(1 + 1 / k)
    # No seed runs: the champion is the one seed.
    s = gate(ch, cp).seed_spread
    assert s.n_seeds == 1 and s.mean == pytest.approx(0.889)
    assert s.binomial_sd == pytest.approx(np.sqrt(0.889 * 0.111 / N))
    # Two seeds: an sd, but too unstable for the t bound; the binomial bound alone.
    s = gate(ch, cp, champion_seed_accuracies={1: 0.889, 2: 0.885}).seed_spread
    assert s.sd == pytest.approx(np.std([0.889, 0.885], ddof=1)) and s.lower_bound_t is None
    assert s.lower_bound == pytest.approx(0.887 - z * np.sqrt(0.887 * 0.113 / N) * widen(2))
    # Three or more: the lower of the two bounds.
    seeds = {1: 0.889, 2: 0.885, 3: 0.887}
    s = gate(ch, cp, champion_seed_accuracies=seeds).seed_spread
    t_bound = 0.887 - 2.919986 * 0.002 * widen(3)
    assert s.lower_bound_t == pytest.approx(t_bound, abs=1e-6)
    assert s.lower_bound == pytest.approx(min(t_bound, s.lower_bound_binomial))


def test_a_tight_sample_of_seeds_does_not_make_every_small_drop_a_regression():
    # Three seeds within 0.01 point (sd ~0.00006, as two reruns of one seed would be): the t
    # bound sits at the mean, but a 0.4-point drop is within what a seed moves on 10k images.
    seeds = {1: 0.8890, 2: 0.8891, 3: 0.8890}
    ch, cp = _pair(N, 0.889, b=80, c=40)
    res = gate(ch, cp, champion_seed_accuracies=seeds)
    assert res.p_value < 0.001 and res.seed_spread.lower_bound_t > 0.8885
    assert res.decision == KEEP_CHAMPION and not res.seed_spread.below


def test_a_wide_seed_spread_widens_the_bound_beyond_the_binomial_one():
    # Unstable training (seeds 2 points apart) is more than independent errors explain: the
    # seeds' own spread then decides, and a 1.8-point drop is within it.
    seeds = {1: 0.889, 2: 0.869, 3: 0.879, 4: 0.885}
    res = gate(*_pair(N, 0.889, b=300, c=120), champion_seed_accuracies=seeds)
    s = res.seed_spread
    assert s.lower_bound == s.lower_bound_t < s.lower_bound_binomial
    assert res.decision == KEEP_CHAMPION


def _seeds(p: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, n) bool: k seeds of one config, each example right with its own probability p_i."""
    return rng.random((k, p.size)) < p


def _difficulty(n: int, rng: np.random.Generator) -> np.ndarray:
    # Most examples always right or always wrong, a minority contested (as on Fashion-MNIST, where
    # 6 seeds of one MLP agree on ~96% of the test images).
    kind = rng.random(n)
    return np.where(kind < 0.85, 1.0, np.where(kind < 0.92, 0.0, rng.beta(2, 2, n)))


def test_seed_only_pairs_rarely_flagged_and_a_one_point_drop_is_caught():
    rng = np.random.default_rng(0)
    ids = np.arange(N)
    false, power, pairs = 0, 0, 0
    for _ in range(4):  # 4 configs x 6 seeds: 120 ordered seed-only pairs
        p = _difficulty(N, rng)
        runs = _seeds(p, 6, rng)
        accs = runs.mean(axis=1)
        for i in range(6):
            spread = {s: float(a) for s, a in enumerate(accs) if s != i}
            # One point worse: 100 of seed i's right answers turned wrong.
            worse = runs[i].copy()
            worse[rng.choice(np.flatnonzero(worse), 100, replace=False)] = False
            for j in range(6):
                if j == i:
                    continue
                pairs += 1
                cp = _frame(runs[j], ids)
                kw = dict(champion_seed_accuracies=spread, n_resamples=50)
                false += gate(_frame(runs[i], ids), cp, **kw).decision == REGRESSION
                power += gate(_frame(worse, ids), cp, **kw).decision == REGRESSION
    assert pairs == 120
    assert false / pairs <= 0.05
    assert power / pairs >= 0.8


def test_an_unlucky_seed_half_a_point_below_is_not_a_regression():
    # The benchmark's case: five seeds within 0.3 point, a sixth 0.5 point below them. McNemar
    # against any one of the five calls it significant; the seed rule does not.
    rng = np.random.default_rng(1)
    p = _difficulty(N, rng)
    runs = _seeds(p, 5, rng)
    accs = {s: float(a) for s, a in enumerate(runs.mean(axis=1))}
    unlucky = runs[0].copy()
    mean = np.mean(list(accs.values()))
    k = int(round((unlucky.mean() - (mean - 0.005)) * N))
    unlucky[rng.choice(np.flatnonzero(unlucky & (p < 1)), k, replace=False)] = False
    res = gate(_frame(unlucky), _frame(runs[1]), champion_seed_accuracies=accs)
    assert res.challenger_accuracy == pytest.approx(mean - 0.005, abs=1e-4)
    assert res.p_value < 0.05  # McNemar alone would call it a regression
    assert not res.seed_spread.below and res.decision == KEEP_CHAMPION
