"""Learning-curve extrapolation: recovers known curves, reports uncertainty, survives bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.curves.extrapolate import FAMILIES, extrapolate

EPOCHS = np.arange(1, 31, dtype=np.float64)


@pytest.mark.parametrize("seed", range(3))
def test_pow3_asymptote_and_forecast_recovered(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = 0.9 - 0.5 * EPOCHS**-0.8 + rng.normal(0, 0.003, EPOCHS.size)
    result = extrapolate(EPOCHS, values, 100)
    assert result.asymptote == pytest.approx(0.9, abs=0.01)
    truth = 0.9 - 0.5 * 100**-0.8
    assert result.value_at_budget == pytest.approx(truth, abs=0.006)
    assert 0 < result.value_std < 0.02
    assert result.higher_is_better
    assert sum(fit.weight for fit in result.families.values()) == pytest.approx(1.0)
    assert result.predict(np.array([100.0]))[0] == pytest.approx(result.value_at_budget)
    assert np.abs(result.predict(EPOCHS) - values).max() < 5 * 0.003  # fits the observed part
    assert len(result.families) >= 4  # at least four families fitted


def test_exponential_forecast_from_half_the_curve() -> None:
    rng = np.random.default_rng(0)
    values = 0.9 - 0.4 * np.exp(-(EPOCHS - 1) / 8) + rng.normal(0, 0.003, EPOCHS.size)
    result = extrapolate(EPOCHS[:15], values[:15], 30)
    truth = 0.9 - 0.4 * np.exp(-29 / 8)
    # The forecast is within its own two standard deviations (plus the noise) of the truth, and
    # those are narrow enough to mean something (0.009 today; a wide interval would excuse anything).
    assert result.value_std < 0.02
    assert abs(result.value_at_budget - truth) < 2 * result.value_std + 0.006
    assert result.plateau_epoch is not None and 20 <= result.plateau_epoch <= 400


def test_loss_curve_is_fitted_downwards() -> None:
    rng = np.random.default_rng(1)
    loss = 0.2 + 1.5 * EPOCHS**-0.7 + rng.normal(0, 0.005, EPOCHS.size)
    result = extrapolate(EPOCHS, loss, 60)
    assert not result.higher_is_better
    assert result.predict(np.array([60]))[0] == pytest.approx(result.value_at_budget)
    assert result.value_at_budget == pytest.approx(0.2 + 1.5 * 60**-0.7, abs=0.01)
    assert result.asymptote < float(np.min(loss))


def test_accuracy_ceiling_respected() -> None:
    values = np.minimum(0.5 + 0.02 * EPOCHS, 0.99)  # linear: an unbounded fit would pass 1.0
    result = extrapolate(EPOCHS, values, 200)
    assert result.asymptote <= 1.0 + 1e-9
    assert result.value_at_budget <= 1.0 + 1e-9


def test_flat_or_short_curves_do_not_fit() -> None:
    flat = extrapolate(EPOCHS, np.full(EPOCHS.size, 0.7), 50)
    assert flat.value_at_budget == 0.7 and flat.families == {}
    assert flat.predict(np.array([40, 50])).tolist() == [0.7, 0.7]
    short = extrapolate(EPOCHS[:3], np.array([0.1, 0.5, 0.6]), 50)
    assert short.value_at_budget == 0.6 and short.plateau_epoch is None


def test_nan_values_are_dropped() -> None:
    rng = np.random.default_rng(2)
    values = 0.9 - 0.5 * EPOCHS**-0.8 + rng.normal(0, 0.003, EPOCHS.size)
    values[[4, 9]] = np.nan
    assert np.isfinite(extrapolate(EPOCHS, values, 50).value_at_budget)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="shape"):
        extrapolate(EPOCHS, np.ones(3), 10)
    with pytest.raises(ValueError, match="budget"):
        extrapolate(EPOCHS, np.ones(EPOCHS.size), 0)
    with pytest.raises(ValueError, match="unknown families"):
        extrapolate(EPOCHS, np.ones(EPOCHS.size), 10, families=("nope",))
    assert set(FAMILIES) >= {"pow3", "exp3", "log_power", "janoschek", "mmf", "weibull"}


def test_single_family() -> None:
    rng = np.random.default_rng(3)
    values = 0.9 - 0.5 * EPOCHS**-0.8 + rng.normal(0, 0.003, EPOCHS.size)
    result = extrapolate(EPOCHS, values, 100, families=("pow3",))
    assert list(result.families) == ["pow3"] and result.families["pow3"].weight == 1.0
    assert result.as_dict()["weights"] == {"pow3": 1.0}
