"""Noise estimation: recovers a known SD on trending curves, robust to a bend, floored."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.curves.noise import estimate_noise, mad


@pytest.mark.parametrize("sigma", [0.002, 0.01])
def test_recovers_noise_of_saturating_curve(sigma: float) -> None:
    epochs = np.arange(1, 41)
    trend = 0.9 - 0.5 * np.exp(-epochs / 5)
    estimates = [
        estimate_noise(trend + np.random.default_rng(seed).normal(0, sigma, epochs.size))
        for seed in range(40)
    ]
    assert np.median(estimates) == pytest.approx(sigma, rel=0.15)


def test_trend_alone_is_not_noise() -> None:
    epochs = np.arange(1, 31)
    assert estimate_noise(0.9 - 0.5 * np.exp(-epochs / 5)) < 1e-3


def test_robust_to_a_single_jump() -> None:
    rng = np.random.default_rng(0)
    values = 0.8 + rng.normal(0, 0.003, 40)
    values[20:] += 0.1  # a learning-rate drop: trend, not noise
    assert estimate_noise(values) == pytest.approx(0.003, rel=0.4)


def test_constant_curve_hits_floor_and_nan_is_skipped() -> None:
    assert estimate_noise(np.full(10, 0.5), floor=1e-6) == 1e-6
    rng = np.random.default_rng(1)
    values = 0.5 + rng.normal(0, 0.01, 30)
    with_nan = values.copy()
    with_nan[[3, 17]] = np.nan
    assert estimate_noise(with_nan) == pytest.approx(estimate_noise(values[np.isfinite(with_nan)]))
    assert estimate_noise(np.array([0.1])) > 0


def test_mad_matches_scipy() -> None:
    from scipy.stats import median_abs_deviation

    values = np.random.default_rng(2).normal(size=51)
    assert mad(values) == pytest.approx(median_abs_deviation(values, scale="normal"))
