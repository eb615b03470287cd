"""Tests for pipelines.baseline on scikit-learn's bundled digits (offline, ~1 s in all)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipelines.baseline import baseline_accuracy


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(1197, 8, 8, 1) float32 images in [0, 1] and int labels for training, 600 for validation."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    return x[:1197], y[:1197], x[1197:], y[1197:]


def test_logistic_regression_reaches_its_known_level_on_digits(digits):
    acc = baseline_accuracy(*digits, seed=0)
    # Linear models score ~0.95-0.97 on 8x8 digits; chance is 0.1.
    assert 0.93 <= acc <= 0.99
    assert baseline_accuracy(*digits, seed=0) == acc  # deterministic for a seed


def test_subsample_is_capped_stratified_and_seeded(digits, monkeypatch):
    from sklearn.pipeline import Pipeline

    x_tr, y_tr, x_va, y_va = digits
    fitted: list[tuple[np.ndarray, np.ndarray]] = []  # (x, y) of each logistic-regression fit
    fit = Pipeline.fit

    def spy(self, x, y=None, **kwargs):
        fitted.append((np.asarray(x), np.asarray(y)))
        return fit(self, x, y, **kwargs)

    monkeypatch.setattr(Pipeline, "fit", spy)
    small = [baseline_accuracy(x_tr, y_tr, x_va, y_va, seed=s, max_train=100) for s in (0, 1, 0)]
    assert [len(y) for _, y in fitted] == [100, 100, 100]  # capped
    # Stratified: the subsample keeps the training labels' class shares (to one example).
    shares = np.bincount(y_tr, minlength=10) / len(y_tr)
    for _, y in fitted:
        assert np.all(np.abs(np.bincount(y, minlength=10) - 100 * shares) <= 1)
    # The seed picks the subsample: the same seed the same images, another seed others.
    assert np.array_equal(fitted[0][0], fitted[2][0]) and not np.array_equal(fitted[0][0], fitted[1][0])
    assert small[0] == small[2]
    full = baseline_accuracy(x_tr, y_tr, x_va, y_va, seed=0)
    # 100 images (10 a class: stratified, so every class is learnt) do worse than 1,197 but far
    # better than chance.
    assert 0.6 < small[0] < full
    assert 0.6 < small[1] < full


def test_uint8_pixels_and_flat_inputs_give_the_same_baseline(digits):
    x_tr, y_tr, x_va, y_va = digits
    flat = baseline_accuracy(x_tr.reshape(len(x_tr), -1), y_tr, x_va.reshape(len(x_va), -1), y_va, seed=0)
    assert flat == pytest.approx(baseline_accuracy(*digits, seed=0), abs=1e-9)
    # Standardisation makes the pixel scale irrelevant.
    raw = baseline_accuracy((x_tr * 16).astype(np.uint8), y_tr, (x_va * 16).astype(np.uint8), y_va, seed=0)
    assert raw == pytest.approx(flat, abs=0.01)


def test_shuffled_labels_give_a_chance_level_baseline(digits):
    x_tr, y_tr, x_va, y_va = digits
    shuffled = np.random.default_rng(1).permutation(y_tr)
    assert baseline_accuracy(x_tr, shuffled, x_va, y_va, seed=0) < 0.2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d[0][:0], d[1][:0], d[2], d[3]), "non-empty"),
        (lambda d: (d[0], d[1][:-1], d[2], d[3]), "differ in length"),
        (lambda d: (d[0], d[1], d[2][:, :4], d[3]), "differ in shape"),
        (lambda d: (d[0], np.zeros_like(d[1]), d[2], d[3]), "two classes"),
    ],
)
def test_bad_inputs_are_rejected(digits, change, message):
    with pytest.raises(ValueError, match=message):
        baseline_accuracy(*change(digits), seed=0)
    with pytest.raises(ValueError, match="max_train"):
        baseline_accuracy(*digits, seed=0, max_train=5)
