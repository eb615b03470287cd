"""Scoring of the tuning benchmark (benchmarks/tuning.py) on synthetic tables; figures by hand."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from benchmarks import tuning as bench


def synthetic_table(budget: int = 6) -> bench.Table:
    """Every grid point (the replay samples the whole grid), each a straight climb to its own top:
    config i tops out at 0.5 + 0.0015 * i, so the last config (LAST) is the best, LAST - 1 is within
    0.2 points (0.15) and LAST - 2 is not (0.3)."""
    configs = bench.grid_configs()
    curves = [np.linspace(0.2, 0.5 + 0.0015 * i, budget) for i in range(len(configs))]
    return bench.Table(configs, curves)


LAST = len(bench.grid_configs()) - 1


def test_summarise_counts_epochs_to_the_goal_and_the_best_pruned_by_hand() -> None:
    table = synthetic_table()
    # Seed A: config 1 completes (6 epochs), the best is pruned at 2, LAST - 1 completes (within 0.2 points).
    a = bench.SearchTrace([1, LAST, LAST - 1], [6, 2, 6], [0.5, 0.4, 0.593], [False, True, False])
    # Seed B: the best completes at once; never pruned.
    b = bench.SearchTrace([LAST, 5], [6, 3], [0.5945, 0.3], [False, True])
    r = bench.summarise(table, [a, b], n_trials=3)
    assert r["to_goal_median"] == pytest.approx((14 + 6) / 2)
    assert r["total_epochs"] == pytest.approx((14 + 9) / 2)
    assert (r["best_sampled"], r["best_pruned"], r["best_lost"]) == (2, 1, 1)
    assert r["found_best_config"] == 1
    assert r["best_found_mean"] == pytest.approx((table.values[LAST - 1] + table.values[LAST]) / 2)
    # Before the goal: A pruned 2 epochs, B none (median 1); nothing ran to the end without a gain.
    assert (r["to_goal_pruned"], r["to_goal_no_gain"], r["to_goal_repeats"]) == (1, 0, 0)
    # Seed C: config 5 completes, a repeat of it and config 2 (below it) run to the end without a gain,
    # then LAST completes (the goal); a repeat after the goal does not count.
    c = bench.SearchTrace([5, 5, 2, LAST, 5], [6, 6, 6, 6, 6], [0.5] * 5, [False] * 5)
    r = bench.summarise(table, [c], n_trials=5)
    assert (r["to_goal_median"], r["to_goal_pruned"], r["to_goal_no_gain"], r["to_goal_repeats"]) == (
        24,
        0,
        12,
        6,
    )


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
        "TPE + perfect forecast @13": row | {"to_goal_median": 120.0},
    }
    results["TPE + CurvePruner"] = row | {
        "to_goal_pruned": 20.0,
        "to_goal_no_gain": 30.0,
        "to_goal_repeats": 24.0,
    }
    text = bench.format_results(results)
    assert "20 on trials it pruned, 30 on trials run to the end" in text and "(24 on repeats" in text
    assert ">= 3x fewer epochs than no pruning to within 0.2 pts: 3.00x  met" in text
    assert "reaches it in 90 epochs (2.00x): 3x is out of reach" in text
    assert "the same forecast made at epoch 13" in text and "reaches it in 120 epochs (1.50x)" in text


def _write_table(path, configs, epochs=3) -> None:
    rows = [
        {"config": i, **c, "epoch": e, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.0}
        | {"val_accuracy": 0.1 * e + 0.001 * i, "learning_rate_now": c["learning_rate"]}
        for i, c in enumerate(configs)
        for e in range(1, epochs + 1)
    ]
    from pipelines.io_utils import atomic_write_text

    bench._write(path, rows, atomic_write_text)


def test_load_table_reads_back_every_value_type_and_a_sub_grid(tmp_path) -> None:
    # A recording cut after the first block: the sub-grid of the outermost parameter's first value.
    configs = bench.grid_configs()
    block = [c for c in configs if c["reduce_lr_factor"] == bench.GRID["reduce_lr_factor"][0]]
    assert configs[: len(block)] == block  # grid order: whole sub-grids come first
    _write_table(tmp_path / "t.csv", block)
    table = bench.load_table(tmp_path / "t.csv")
    assert table.params == block  # bools ("False" is not True), ints, floats and strings
    assert table.grid["reduce_lr_factor"] == [bench.GRID["reduce_lr_factor"][0]]
    assert table.grid["augment"] == [False, True]
    trace = bench.replay_search(table, "random", optuna.pruners.NopPruner(), seed=0, n_trials=5)
    assert all(e == 3 for e in trace.epochs)


def test_load_table_names_the_file_for_a_value_off_the_grid_or_a_ragged_grid(tmp_path) -> None:
    configs = bench.grid_configs()[:3]  # augment False/True, then dropout's second value: not a product
    _write_table(tmp_path / "ragged.csv", configs)
    with pytest.raises(ValueError, match=r"ragged\.csv: its 3 configurations are not every combination"):
        bench.load_table(tmp_path / "ragged.csv")
    odd = [configs[0] | {"model": "resnet"}]
    _write_table(tmp_path / "odd.csv", odd)
    with pytest.raises(ValueError, match=r"odd\.csv: column 'model' holds 'resnet'"):
        bench.load_table(tmp_path / "odd.csv")


def test_record_resumes_from_its_partial_file_and_writes_the_table_atomically(tmp_path) -> None:
    # Every configuration asked for is already in the partial file: nothing is trained (no worker
    # process starts), the table is written and the partial file removed.
    table = tmp_path / "table.csv"
    _write_table(table.with_suffix(".partial.csv"), bench.grid_configs()[:2])
    assert bench.record(table, limit=2, workers=1, source_dir=tmp_path / "no-data")
    assert not table.with_suffix(".partial.csv").exists()
    assert [c for c in bench.load_table(table).params] == bench.grid_configs()[:2]


def test_record_stops_at_its_deadline_and_keeps_what_finished(tmp_path, monkeypatch) -> None:
    # Configuration 0 is done; configuration 1 (a CNN on 10,000 images, or no data at all) cannot
    # finish within the 2-second deadline: the recording ends there, its worker is terminated, the
    # partial file keeps configuration 0 and no table is written.
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the worker's scratch folders land here
    table = tmp_path / "table.csv"
    partial = table.with_suffix(".partial.csv")
    _write_table(partial, bench.grid_configs()[:1])
    before = partial.read_bytes()
    empty = tmp_path / "no-data"
    empty.mkdir()
    assert not bench.record(table, limit=2, workers=1, source_dir=empty, deadline_s=2.0)
    assert not table.exists()
    assert partial.read_bytes() == before


def test_lookup_repeats_returns_a_completed_configuration_untrained(tmp_path) -> None:
    _write_table(tmp_path / "t.csv", bench.grid_configs()[:2])  # two configurations: repeats certain
    table = bench.load_table(tmp_path / "t.csv")
    plain = bench.replay_search(table, "random", optuna.pruners.NopPruner(), seed=0, n_trials=6)
    looked = bench.replay_search(
        table, "random", optuna.pruners.NopPruner(), seed=0, n_trials=6, lookup_repeats=True
    )
    assert plain.epochs == [3] * 6
    assert looked.configs == plain.configs  # the same sampler draws (repeats are told the same value)
    first = {c: i for i, c in reversed(list(enumerate(looked.configs)))}
    assert looked.epochs == [3 if first[c] == i else 0 for i, c in enumerate(looked.configs)]
    assert looked.values == plain.values


def test_perfect_forecast_from_a_later_epoch_runs_every_trial_that_far() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = synthetic_table()
    trace = bench.replay_search(table, "tpe", bench._perfect(table, at_epoch=4), seed=0, n_trials=20)
    assert any(trace.pruned)
    assert all(e == (4 if p else 6) for e, p in zip(trace.epochs, trace.pruned, strict=True))
    with pytest.raises(ValueError, match="at_epoch must be >= 1"):
        bench.PerfectForecastPruner(table, at_epoch=0)


def test_informative_epoch_is_where_the_curves_first_rank_the_configurations_as_their_values() -> None:
    configs = bench.grid_configs()
    n = len(configs)
    order = np.arange(n)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(n)
    # Epochs 1-3 rank the configs in a random order, unrelated to their final values; from epoch 4
    # on every curve sits at (just under) its final value, so the ranking is the final one.
    curves = [
        np.concatenate([0.3 + 0.001 * shuffled[i] * np.ones(3), 0.5 + 0.001 * order[i] * np.ones(3)])
        for i in range(n)
    ]
    table = bench.Table(configs, curves)
    rhos = bench.rank_correlations(table)
    assert rhos.shape == (6,)
    assert abs(rhos[0]) < 0.3 and rhos[3] == pytest.approx(1.0)
    assert bench.informative_epoch(table) == 4
    flat = bench.Table(
        configs, [np.r_[0.3 + 0.001 * shuffled[i] * np.ones(5), 0.5 + 0.001 * i] for i in range(n)]
    )
    assert bench.informative_epoch(flat) == 6  # only the last epoch ranks them
