"""Tests for cross-run findings: curve regression, series stall, tuning optimism."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.curves.compare import compare_curves, series_stall, tuning_optimism
from pipelines.curves.noise import infer_num_examples
from pipelines.curves.types import Curve, Severity

PARAMS = {"train.learning_rate": 0.001, "train.batch_size": 64}


def _curve(
    run: str,
    seed: int,
    *,
    epochs: int = 30,
    level: float = 0.9,
    tau: float = 4.0,
    sigma: float = 0.004,
    offset_sd: float = 0.0,
    params: dict | None = None,
) -> Curve:
    """val_accuracy = level - 0.5 exp(-epoch / tau) + per-epoch N(0, sigma) + a per-run offset."""
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    y = level - 0.5 * np.exp(-e / tau) + rng.normal(0, sigma, epochs) + rng.normal(0, offset_sd)
    return Curve(run=run, metrics={"val_accuracy": y}, epochs=e.astype(np.int64), params=params or {})


# --- curve regression ------------------------------------------------------------------------


def test_runs_differing_only_in_seed_are_not_flagged():
    seeds = [_curve(f"seed{s}", s, params={**PARAMS, "base.seed": s}) for s in range(20)]
    champion = seeds[0]
    for i, challenger in enumerate(seeds[1:], start=1):
        others = [c for j, c in enumerate(seeds) if j not in (0, i)]
        assert compare_curves(challenger, champion, others) == [], challenger.run
        assert compare_curves(challenger, champion, []) == [], challenger.run
        # and the other way round: the champion is no regression of a seed either
        assert compare_curves(champion, challenger, []) == [], challenger.run


def test_lower_plateau_is_flagged():
    champion = _curve("champ", 0)
    challenger = _curve("chall", 1, level=0.88)  # 2 points lower at every epoch
    (f,) = compare_curves(challenger, champion, [])
    assert f.code == "curve_regression" and f.severity == Severity.WARNING
    assert "lower" in f.evidence["kinds"]
    assert f.evidence["wilcoxon_p"] < 0.001
    assert f.evidence["median_difference"] == pytest.approx(-0.02, abs=0.005)
    assert f.onset_epoch == f.evidence["window_start_epoch"] == 16
    assert "Wilcoxon signed-rank" in f.message and "lower than the champion" in f.message


def test_slower_learning_to_the_same_level_is_flagged():
    champion = _curve("champ", 0, epochs=70)
    challenger = _curve("chall", 1, epochs=70, tau=7.0)  # same ceiling, reached later
    (f,) = compare_curves(challenger, champion, [])
    assert "slower" in f.evidence["kinds"]
    assert "lower" not in f.evidence["kinds"]  # the tails agree within noise
    ev = f.evidence
    assert ev["challenger_reach_epoch"] > ev["champion_reach_epoch"] + ev["slack_epochs"]
    assert "reaches the champion's level" in f.message


def test_late_crossing_near_a_flat_asymptote_alone_is_not_slower():
    # A challenger 0.8 points below a slowly saturating champion (tolerance 2 x 0.5 = 1 point)
    # crosses "champion's best minus tolerance" many epochs later only because the curve is flat
    # there; it is within noise at every epoch and must not be called slower.
    champion = _curve("champ", 0, epochs=80, tau=10.0, sigma=0.0005)
    challenger = _curve("chall", 1, epochs=80, tau=10.0, level=0.892, sigma=0.0005)
    assert compare_curves(challenger, champion, [], noise=0.005) == []
    # ...whereas a real slow-down of the same size is.
    slow = _curve("slow", 1, epochs=80, tau=16.0, sigma=0.0005)
    (f,) = compare_curves(slow, champion, [], noise=0.005)
    assert "slower" in f.evidence["kinds"]


def test_seed_spread_of_same_config_runs_absorbs_a_seed_offset():
    # Low per-epoch noise but seeds shift whole curves by ~1 point: a challenger 1 point below
    # the champion is "significant" epoch by epoch, yet ordinary for this config.
    kw = dict(sigma=0.001)
    champion = _curve("champ", 0, **kw, params={**PARAMS, "base.seed": 0})
    challenger = _curve("chall", 1, level=0.89, **kw, params={**PARAMS, "base.seed": 1})
    spread = [0.885, 0.91, 0.895, 0.905, 0.89]
    seed_runs = [
        _curve(f"s{i}", 10 + i, level=lv, **kw, params={**PARAMS, "base.seed": 10 + i})
        for i, lv in enumerate(spread)
    ]
    flagged = compare_curves(challenger, champion, [])
    assert flagged and "lower" in flagged[0].evidence["kinds"]
    assert compare_curves(challenger, champion, seed_runs) == []
    # Runs of another config are not seed runs: they do not widen the band.
    other = [
        Curve(c.run, c.metrics, c.epochs, params={**c.params, "train.batch_size": 128}) for c in seed_runs
    ]
    assert compare_curves(challenger, champion, other) == flagged
    # A real regression is still caught with the seed runs present.
    worse = _curve("worse", 2, level=0.86, **kw, params={**PARAMS, "base.seed": 2})
    (f,) = compare_curves(worse, champion, seed_runs)
    assert f.evidence["seed_n"] == 6 and f.evidence["challenger_tail_mean"] < f.evidence["seed_lower_bound"]


def _on_grid(curve: Curve, n: int) -> Curve:
    """The curve as Keras logs an accuracy on n examples: float32(k / n)."""
    y = curve.metrics["val_accuracy"]
    k = np.clip(np.round(y * n), 0, n)
    return Curve(curve.run, {"val_accuracy": (k / n).astype(np.float32).astype(np.float64)}, curve.epochs)


def test_infer_num_examples_reads_the_accuracy_grid():
    rng = np.random.default_rng(0)
    for n in (600, 1000, 10_000):
        y = rng.integers(int(0.7 * n), int(0.95 * n), 30) / n
        assert infer_num_examples(y.astype(np.float32)) == n
        assert infer_num_examples(y) == n  # float64 logs too
    assert infer_num_examples(rng.uniform(0.8, 0.9, 30)) is None  # continuous values: no grid
    assert infer_num_examples(np.array([0.0, 1.0, 0.5, np.nan])) is None  # too few informative


def test_infer_num_examples_reads_values_one_ulp_off_the_grid():
    # Keras 3 under JAX on a GPU logs k / n one float32 ulp off (46 / 50 as 0.91999996 instead of
    # 0.92000002: the mean's division is a multiplication by a reciprocal there).
    rng = np.random.default_rng(1)
    for n in (50, 300, 6000, 10_000):
        exact = (rng.integers(int(0.7 * n), int(0.95 * n), 30) / n).astype(np.float32)
        off = np.where(rng.random(30) < 0.5, np.nextafter(exact, np.float32(0)), exact)
        assert infer_num_examples(off) == n, n
        assert infer_num_examples(off.astype(np.float64)) == n, n  # as read from a CSV
    two_ulps = np.nextafter(np.nextafter(np.float32([0.84, 0.86, 0.88, 0.9, 0.92]), 0), 0)
    assert infer_num_examples(two_ulps) != 50
    # Continuous values still lie on no grid. Three values one ulp off are read only on a grid of
    # at most TOLERANT_FEW_MAX_N examples (21, 22 and 23 of 25 here), where a chance fit is rare;
    # 5001, 5100 and 5500 of 6000 are too few to read with slack.
    assert infer_num_examples(rng.uniform(0.8, 0.9, 30).astype(np.float32)) is None
    assert infer_num_examples(np.nextafter(np.float32([0.84, 0.88, 0.92]), 0)) == 25
    assert infer_num_examples(np.nextafter(np.float32([5001, 5100, 5500]) / np.float32(6000), 0)) is None
    triples = rng.uniform(0.3, 0.99, (300, 3)).astype(np.float32)
    assert sum(infer_num_examples(np.nextafter(t, 0)) is not None for t in triples) <= 3


def test_infer_num_examples_from_fewer_values_is_a_lower_bound():
    # 28/32 and 30/32 also lie on the grid of 16: fewer than three values give at most the true n.
    two = np.float32([28 / 32, 30 / 32, 28 / 32])
    assert infer_num_examples(two) is None
    assert infer_num_examples(two, min_distinct=2) == 16
    assert infer_num_examples(np.float32([12 / 13, 1.0]), min_distinct=1) == 13
    assert infer_num_examples(np.float32([0.875]), min_distinct=1) == 8
    assert infer_num_examples(np.float32([1.0, 0.0]), min_distinct=1) is None  # on every grid
    with pytest.raises(ValueError, match="min_distinct"):
        infer_num_examples(two, min_distinct=0)


def test_seed_offsets_on_a_small_validation_set_are_not_flagged():
    # Real seeds on a fixed 600-example validation set shift the whole curve by about the binomial
    # SD (0.9 points at 0.95) while the epoch-to-epoch noise is ~0.1 points: per-epoch noise alone
    # calls such pairs regressions. The accuracy grid says n = 600 and the tolerance widens.
    n = 600
    sd = np.sqrt(0.95 * 0.05 / n)
    offsets = np.random.default_rng(7).normal(0.0, sd, 12)
    seeds = [_on_grid(_curve(f"s{i}", i, level=0.95 + o, sigma=0.001), n) for i, o in enumerate(offsets)]
    continuous = [_curve(f"s{i}", i, level=0.95 + o, sigma=0.001) for i, o in enumerate(offsets)]
    flagged_without_grid = 0
    for i in range(1, len(seeds)):
        assert compare_curves(seeds[i], seeds[0], []) == [], seeds[i].run
        assert compare_curves(seeds[0], seeds[i], []) == [], seeds[i].run
        flagged_without_grid += bool(compare_curves(continuous[i], continuous[0], []))
        flagged_without_grid += bool(compare_curves(continuous[0], continuous[i], []))
    assert flagged_without_grid >= 3  # the case the seed-offset term exists for
    # A real regression on the same grid is still caught, and the evidence says why it is real.
    worse = _on_grid(_curve("worse", 99, level=0.91, sigma=0.001), n)
    (f,) = compare_curves(worse, seeds[0], [])
    ev = f.evidence
    assert "lower" in ev["kinds"] and ev["num_val_examples"] == n
    assert ev["tolerance"] == pytest.approx(ev["seed_tolerance"]) and ev["seed_tolerance"] > 0.015
    assert "600 validation examples" in f.message
    # The size can be given instead of inferred; a larger set means a tighter tolerance.
    assert compare_curves(seeds[3], seeds[0], [], num_val_examples=n) == []
    (g,) = compare_curves(worse, seeds[0], [], num_val_examples=100_000)
    assert g.evidence["seed_tolerance"] < ev["seed_tolerance"]
    with pytest.raises(ValueError):
        compare_curves(worse, seeds[0], [], num_val_examples=0)


def test_noise_argument_sets_the_tolerance():
    champion = _curve("champ", 0)
    challenger = _curve("chall", 1, level=0.89)  # 1 point lower
    assert compare_curves(challenger, champion, [], noise=0.002)  # 1 point > 2 x 0.2
    assert compare_curves(challenger, champion, [], noise=0.01) == []  # 1 point < 2 x 1.0


def test_nothing_to_compare():
    c = _curve("c", 0)
    assert compare_curves(c, None, []) == []
    assert compare_curves(_curve("short", 1, epochs=4), c, []) == []
    no_val = Curve("x", {"accuracy": np.linspace(0.5, 0.9, 10)}, np.arange(1, 11))
    assert compare_curves(no_val, c, []) == []
    with pytest.raises(ValueError):
        compare_curves(c, c, [], alpha=0)


# --- series stall ----------------------------------------------------------------------------


def test_series_stall_on_and_off():
    f = series_stall([0.90, 0.880, 0.885, 0.887], champion_accuracy=0.889, n=3)
    assert f is not None and f.code == "series_stall"
    assert f.evidence["best_recent"] == pytest.approx(0.887)
    assert "last 3 scheduled retrains" in f.message and "0.889" in f.message
    assert f.remedies

    assert series_stall([0.880, 0.895, 0.887], champion_accuracy=0.889, n=3) is None
    assert series_stall([0.880, 0.885], champion_accuracy=0.889, n=3) is None  # too little history
    # A failed retrain (None) does not count as an improvement.
    f = series_stall([0.88, None, 0.887], champion_accuracy=0.889, n=3)
    assert f is not None and f.evidence["failed"] == 1
    assert series_stall([None, None], champion_accuracy=0.9, n=2).evidence["best_recent"] is None
    # min_improvement: beating the champion by less than it does not count.
    assert series_stall([0.890, 0.8905], champion_accuracy=0.889, n=2) is None
    assert series_stall([0.890, 0.8905], champion_accuracy=0.889, n=2, min_improvement=0.002) is not None


def test_series_stall_rejects_bad_input():
    with pytest.raises(ValueError):
        series_stall([0.9], 0.9, n=0)
    with pytest.raises(ValueError, match="n must be a whole number"):
        series_stall([0.9, 0.9], 0.9, n=1.5)
    with pytest.raises(ValueError):
        series_stall([89.0, 90.0], 0.9, n=2)  # percent, not fractions
    with pytest.raises(ValueError):
        series_stall([0.9], 1.5, n=1)


# --- tuning optimism -------------------------------------------------------------------------


def test_tuning_optimism_on_and_off():
    f = tuning_optimism(0.920, 0.889, n_val=5_000, n_test=10_000)
    assert f is not None and f.code == "tuning_optimism"
    assert f.evidence["p_value"] < 1e-6 and f.evidence["z"] > 4
    assert any("nested cross-validation" in r for r in f.remedies)
    assert any("held-out test set" in r for r in f.remedies)
    # The same gap on a 500-image validation set is within sampling noise.
    assert tuning_optimism(0.905, 0.889, n_val=500, n_test=10_000) is None
    # Test better than validation: nothing optimistic about that.
    assert tuning_optimism(0.88, 0.90, n_val=5_000, n_test=10_000) is None
    assert tuning_optimism(1.0, 1.0, n_val=100, n_test=100) is None


def test_tuning_optimism_rejects_bad_input():
    with pytest.raises(ValueError):
        tuning_optimism(92.0, 0.9, n_val=100, n_test=100)
    with pytest.raises(ValueError):
        tuning_optimism(0.92, 0.9, n_val=0, n_test=100)


def test_seed_runs_follow_the_one_same_config_definition():
    # Same config up to seed, paths and data facts -> seed runs; other data -> not seed runs.
    kw = dict(sigma=0.001)
    tags = {"curvewatch.data_version": "v1"}
    champion = _curve("champ", 0, **kw, params={**PARAMS, "base.seed": 0})
    champion.tags.update(tags)
    challenger = _curve("chall", 1, level=0.89, **kw, params={**PARAMS, "base.seed": 1})
    spread = [0.885, 0.91, 0.895, 0.905, 0.89]
    extra = {"paths.model_file": "elsewhere", "data.train_examples": "49000"}
    seed_runs = [
        _curve(f"s{i}", 10 + i, level=lv, **kw, params={**PARAMS, **extra, "base.seed": 10 + i})
        for i, lv in enumerate(spread)
    ]
    for r in seed_runs:
        r.tags.update(tags)
    flagged = compare_curves(challenger, champion, [])
    assert flagged
    assert compare_curves(challenger, champion, seed_runs) == []
    other_data = [
        Curve(c.run, c.metrics, c.epochs, params=c.params, tags={"curvewatch.data_version": "v2"})
        for c in seed_runs
    ]
    assert compare_curves(challenger, champion, other_data) == flagged


def test_reruns_of_one_seed_count_once_in_the_seed_spread():
    # Ten reruns of the champion's own seed are one draw, not ten: counted as seeds they would
    # shrink the spread's sd towards 0 (the "11-run range with sd ~0").
    kw = dict(sigma=0.001)
    champion = _curve("champ", 0, **kw, params={**PARAMS, "base.seed": 0})
    seed_runs = [
        _curve(f"s{i}", 10 + i, level=lv, **kw, params={**PARAMS, "base.seed": 10 + i})
        for i, lv in enumerate([0.885, 0.91, 0.895])
    ]
    reruns = [
        Curve(f"rerun{i}", champion.metrics, champion.epochs, params=champion.params) for i in range(10)
    ]
    # Runs without a seed cannot be told from a rerun: left out too.
    unseeded = [Curve(f"u{i}", champion.metrics, champion.epochs, params=dict(PARAMS)) for i in range(5)]
    worse = _curve("worse", 2, level=0.86, **kw, params={**PARAMS, "base.seed": 2})
    (f,) = compare_curves(worse, champion, seed_runs)
    (g,) = compare_curves(worse, champion, seed_runs + reruns + unseeded + [worse])
    assert f.evidence["seed_n"] == g.evidence["seed_n"] == 4  # the champion and 3 other seeds
    assert g.evidence["seed_lower_bound"] == f.evidence["seed_lower_bound"]
