"""fetch_curves over a real PostgreSQL-backed MLflow server: the bulk endpoint reads what the
per-run public API reads, across chunks of 100 runs and the server's value cap."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest


@pytest.fixture(scope="module")
def server_runs(mlflow_server):
    """101 finished training runs (two bulk chunks), 4 epochs each; run 0 has a NaN and a step
    logged twice (the later value wins)."""
    from mlflow.entities import Metric, Param

    from pipelines import tracking

    mc = tracking.client(mlflow_server.url)
    exp = mc.create_experiment(f"fetch-{uuid.uuid4().hex[:8]}")
    for i in range(101):
        rid = mc.create_run(exp, tags={tracking.RUN_KIND_TAG: "train"}).info.run_id
        metrics = [
            Metric(key, base + i / 1000 + e / 100, 1_000 + e, e)
            for key, base in (("val_accuracy", 0.5), ("loss", 1.0))
            for e in (1, 2, 3, 4)
        ]
        if i == 0:
            metrics += [Metric("val_accuracy", 0.99, 5_000, 2), Metric("loss", math.nan, 5_000, 3)]
        mc.log_batch(rid, metrics=metrics, params=[Param("train.epochs", "4")])
        mc.set_terminated(rid)
    return mc, tracking.search_training_runs(mc, [exp])


def _same(a, b) -> None:
    assert a.run == b.run and a.complete == b.complete and a.epoch_budget == b.epoch_budget
    assert a.epochs.tolist() == b.epochs.tolist()
    assert set(a.metrics) == set(b.metrics)
    for key in a.metrics:
        np.testing.assert_array_equal(a.metrics[key], b.metrics[key])


def test_bulk_over_http_equals_the_per_run_api(server_runs):
    from pipelines import tracking

    mc, runs = server_runs
    assert len(runs) == 101
    bulk = tracking.fetch_curves(mc, runs, metrics=("val_accuracy", "loss"))
    naive = tracking.fetch_curves(mc, runs, metrics=("val_accuracy", "loss"), bulk=False)
    for a, b in zip(bulk, naive, strict=True):
        _same(a, b)
    first = next(c for c in bulk if c.metrics["val_accuracy"][1] == pytest.approx(0.99))
    assert math.isnan(first.metrics["loss"][2])
    assert first.complete and first.epoch_budget == 4


def test_bulk_splits_a_response_at_the_server_cap(server_runs, monkeypatch):
    from pipelines import tracking

    mc, runs = server_runs
    monkeypatch.setattr(tracking, "_BULK_MAX_RESULTS", 50)  # 100 runs x 4 values > 50: halve until under
    bulk = tracking.fetch_curves(mc, runs, metrics=("val_accuracy",))
    naive = tracking.fetch_curves(mc, runs, metrics=("val_accuracy",), bulk=False)
    for a, b in zip(bulk, naive, strict=True):
        _same(a, b)
