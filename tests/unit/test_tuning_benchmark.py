"""Scoring of the tuning benchmark (benchmarks/tuning.py) on synthetic tables; figures by hand."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from benchmarks import tuning as bench


def synthetic_table(budget: int = 6) -> bench.Table:
    """Every grid point (the replay samples the whole grid), each a straight climb to its own top:
    config i tops out at 0.5 + 0.0015 * i, so config 63 is the best, 62 is within 0.2 points (0.15)
    and 61 is not (0.3)."""
    configs = bench.grid_configs()
    curves = [np.linspace(0.2, 0.5 + 0.0015 * i, budget) for i in range(len(configs))]
    return bench.Table(configs, curves)


def test_summarise_counts_epochs_to_the_goal_and_the_best_pruned_by_hand() -> None:
    table = synthetic_table()
    # Seed A: config 1 completes (6 epochs), 63 is pruned at 2, 62 completes (within 0.2 points).
    a = bench.SearchTrace([1, 63, 62], [6, 2, 6], [0.5, 0.4, 0.593], [False, True, False])
    # Seed B: 63 completes at once; never pruned.
    b = bench.SearchTrace([63, 5], [6, 3], [0.5945, 0.3], [False, True])
    r = bench.summarise(table, [a, b], n_trials=3)
    assert r["to_goal_median"] == pytest.approx((14 + 6) / 2)
    assert r["total_epochs"] == pytest.approx((14 + 9) / 2)
    assert (r["best_sampled"], r["best_pruned"], r["best_lost"]) == (2, 1, 1)
    assert r["found_best_config"] == 1
    assert r["best_found_mean"] == pytest.approx((table.values[62] + table.values[63]) / 2)


def test_perfect_forecast_bound_prunes_exactly_the_trials_that_cannot_beat_the_best() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = synthetic_table()
    trace = bench.replay_search(table, "tpe", bench._perfect(table), seed=0, n_trials=20)
    best = -math.inf
    for i, (config, epochs, pruned) in enumerate(zip(trace.configs, trace.epochs, trace.pruned, strict=True)):
        value = table.values[config]
        if i == 0:
            assert not pruned  # nothing to beat before a trial completed
        assert pruned == (i > 0 and value <= best)
        assert epochs == (1 if pruned else 6)
        if not pruned:
            best = max(best, value)


def test_format_results_prints_the_bound_and_the_targets() -> None:
    row = {
        "total_epochs": 100.0,
        "to_goal_median": 60.0,
        "to_goal_mean": 60.0,
        "reached": 10,
        "seeds": 10,
        "best_found_mean": 0.84,
        "found_best_config": 5,
        "best_sampled": 8,
        "best_pruned": 0,
        "best_lost": 0,
    }
    results = {
        "TPE, no pruning": row | {"to_goal_median": 180.0},
        "TPE + MedianPruner": row | {"to_goal_median": 170.0},
        "TPE + HyperbandPruner": row | {"to_goal_median": 300.0},
        "TPE + CurvePruner": row,
        "TPE + perfect forecast (bound)": row | {"to_goal_median": 90.0},
    }
    text = bench.format_results(results)
    assert ">= 3x fewer epochs than no pruning to within 0.2 pts: 3.00x  met" in text
    assert "reaches it in 90 epochs (2.00x): 3x is out of reach" in text
