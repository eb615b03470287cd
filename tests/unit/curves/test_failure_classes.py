"""The failure classes seen on held-out curves (issue 6), one test each, on curves built to show them.

Each curve is synthetic but shaped like the real case described in the issue; the thresholds they
exercise come from the curve's noise and the validation set's size, not from these numbers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from pipelines.curves.callback import should_stop
from pipelines.curves.diagnose import diagnose
from pipelines.curves.types import Curve


def _curve(metrics: dict[str, np.ndarray], budget: int | None = None, **kwargs: object) -> Curve:
    size = len(next(iter(metrics.values())))
    return Curve(
        "run",
        {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()},
        np.arange(1, size + 1),
        budget if budget is not None else size,
        **kwargs,  # type: ignore[arg-type]
    )


def _grid(values: np.ndarray, n: int) -> np.ndarray:
    """Accuracies as Keras logs them on n examples: k / n in float32."""
    return (np.round(np.clip(values, 0, 1) * n) / n).astype(np.float32).astype(np.float64)


def _entropy(prior: list[float]) -> float:
    p = np.asarray(prior)
    return float(-(p * np.log(p)).sum())


# 1. Chance is not always 1 / K ------------------------------------------------------------------


@pytest.mark.parametrize("majority", [0.55, 0.67, 0.94])
def test_imbalanced_task_at_the_majority_share_is_not_learning(majority: float) -> None:
    rng = np.random.default_rng(0)
    prior = [majority, 1 - majority]
    h = _entropy(prior)
    epochs = 30
    loss = h + rng.normal(0, 0.002, epochs)
    metrics = {
        "accuracy": np.full(epochs, majority) + rng.normal(0, 0.001, epochs),
        "loss": loss,
        "val_accuracy": _grid(np.full(epochs, majority), 400),
        "val_loss": h + rng.normal(0, 0.002, epochs),
    }
    # With the class prior known ...
    known = diagnose(_curve(metrics, num_classes=2, class_prior=tuple(prior)))
    assert known.verdict == "not_learning", known.codes
    finding = known.findings[0]
    assert finding.evidence["chance"] == pytest.approx(majority)
    assert "majority" in " ".join(finding.causes)
    # ... and from the curve alone: accuracy frozen at one value with a flat loss (at 0.55 the
    # prior's entropy, 0.688, is also within 6% of ln 2: read as uniform outputs over 2 classes).
    alone = diagnose(_curve(metrics))
    assert alone.verdict == "not_learning", alone.codes
    evidence = alone.findings[0].evidence
    if evidence["chance_source"] == "uniform_loss":
        assert majority == 0.55 and evidence["chance"] == pytest.approx(0.5)
    else:
        assert evidence["frozen_level"] == pytest.approx(majority, abs=1e-3)


@pytest.mark.parametrize("num_classes", [None, 2])
def test_a_dead_network_learning_the_prior_through_its_bias_is_not_learning(num_classes: int | None) -> None:
    # Born dead (ReLU units off), only the output bias learns: accuracy frozen at the majority
    # share 0.606 of 142 examples while the loss falls from ln 2 (0.693) towards the prior's
    # entropy (0.670). Without the prior, ln 2 is no floor: the fall is calibration, not learning.
    epochs = 20
    loss = 0.6925 - 0.0125 * (1 - np.exp(-np.arange(epochs) / 8)) / (1 - np.exp(-19 / 8))
    metrics = {
        "accuracy": np.full(epochs, 181 / 300),
        "loss": loss,
        "val_accuracy": np.full(epochs, 86 / 142),
        "val_loss": loss - 0.0005,
    }
    diagnosis = diagnose(_curve(metrics, num_classes=num_classes))
    assert diagnosis.verdict == "not_learning", diagnosis.codes


def test_frozen_above_the_training_prior_chance_is_not_learning() -> None:
    # The validation split's majority share (0.57) is above the training prior's (0.35): the
    # known-chance rule cannot see it, the frozen curve can. A learning rate orders of magnitude too
    # small moves the loss by 1e-5 an epoch: significant, but nothing.
    t = np.arange(40)
    metrics = {
        "accuracy": np.full(40, 14 / 30, dtype=np.float32).astype(float),
        "val_accuracy": np.full(40, 17 / 30, dtype=np.float32).astype(float),
        "loss": 1.2734 - 1e-5 * t,
        "val_loss": 1.1897 - 1e-5 * t,
    }
    prior = (0.3, 0.35, 0.35)
    diagnosis = diagnose(_curve(metrics, 40, num_classes=3, class_prior=prior))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    # The same frozen accuracy with a loss well below the prior's entropy learned something.
    learned = dict(metrics, loss=np.full(40, 0.4), val_loss=np.full(40, 0.5))
    assert not diagnose(_curve(learned, 40, num_classes=3, class_prior=prior)).has("not_learning")


def test_a_dead_network_is_not_learning_from_the_file_alone() -> None:
    # Uniform outputs over 3 classes: the loss sits at ln 3 whatever the labels; no class count given.
    rng = np.random.default_rng(4)
    metrics = {
        "accuracy": _grid(np.full(30, 0.34), 120),
        "loss": math.log(3) + rng.normal(0, 0.002, 30),
        "val_accuracy": _grid(np.full(30, 0.383), 60),
        "val_loss": math.log(3) + 0.004 + rng.normal(0, 0.002, 30),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    # A binary dead network fitting the prior through its output bias: predictions frozen from
    # epoch 1 at the majority share while the loss falls towards, never below, H2(0.888) = 0.35.
    t = np.arange(15)
    biased = {
        "accuracy": _grid(np.full(15, 0.85), 1000),
        "loss": 0.42 + 0.26 * np.exp(-t / 2),
        "val_accuracy": _grid(np.full(15, 0.888), 600),
        "val_loss": 0.43 + 0.2 * np.exp(-t / 2),
    }
    assert diagnose(_curve(biased)).verdict == "not_learning"
    # The same frozen accuracy reached after learning (not from epoch 1) with such a loss is not.
    learned = {k: v.copy() for k, v in biased.items()}
    learned["val_accuracy"][:4] = [0.6, 0.7, 0.8, 0.85]
    learned["accuracy"][:4] = [0.6, 0.7, 0.8, 0.84]
    assert not diagnose(_curve(learned)).has("not_learning")


def test_training_accuracy_frozen_above_validation_is_still_not_learning() -> None:
    # Every layer frozen (trainable=False): each epoch logs the same four numbers. The training set
    # scores the fixed prediction higher (0.386) than the validation set (0.363), which once read
    # as "training is better, it learns"; a training accuracy that never moves learns nothing.
    frozen = {
        "accuracy": np.full(13, 0.38625),
        "loss": np.full(13, 1.406663),
        "val_accuracy": np.full(13, 109 / 300, dtype=np.float32).astype(float),
        "val_loss": np.full(13, 1.40552),
    }
    diagnosis = diagnose(_curve(frozen))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    # Dead ReLUs on an imbalanced task: predictions fixed on the majority class (0.71 of the
    # training set, 0.673 of the validation set) while the output bias calibrates the loss.
    t = np.arange(20)
    dead = {
        "accuracy": np.full(20, 0.71),
        "loss": 0.82 + 0.27 * np.exp(-t / 7),
        "val_accuracy": np.full(20, 202 / 300, dtype=np.float32).astype(float),
        "val_loss": 0.86 + 0.21 * np.exp(-t / 7),
    }
    assert diagnose(_curve(dead)).verdict == "not_learning"
    # The same validation accuracy with a training accuracy that climbs above it is not frozen.
    climbing = dict(frozen, accuracy=np.linspace(0.40, 0.60, 13), loss=np.linspace(1.40, 1.0, 13))
    assert not diagnose(_curve(climbing)).has("not_learning")


def test_a_healthy_imbalanced_run_is_not_called_not_learning() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(30)
    val = 0.94 + 0.04 * (1 - np.exp(-t / 5))
    metrics = {
        "accuracy": val + 0.005 + rng.normal(0, 0.001, 30),
        "loss": 0.25 * np.exp(-t / 8) + 0.05,
        "val_accuracy": _grid(val + rng.normal(0, 0.003, 30), 1000),
        "val_loss": 0.24 * np.exp(-t / 8) + 0.07 + rng.normal(0, 0.002, 30),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=2, class_prior=(0.94, 0.06)))
    assert not diagnosis.has("not_learning"), diagnosis.codes


def test_a_loss_falling_past_ln_k_does_not_name_the_class_count() -> None:
    # A corpus run of the tune split (digits, 10 classes, an MLP of one hidden unit), read as a
    # file: val_loss falls 1.64 -> 1.55 over the second half, through ln 5 = 1.609, while
    # val_accuracy reaches 0.31. A loss passing ln 5 is no network stuck at 5 uniform outputs.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "uf3-digits-1-unit-s0.csv"
    diagnosis = diagnose(load_curve(csv))
    assert not diagnosis.has("not_learning"), diagnosis.codes
    assert diagnosis.has("underfitting"), diagnosis.codes


def test_an_accuracy_frozen_where_it_climbed_to_is_a_convergence_not_a_dead_network() -> None:
    # A corpus run of the tune split (a linear model on 5 classes, 1,000 validation examples),
    # read as a file: val_accuracy climbs 0.50 -> 0.63, then sits at exactly 0.620 for the last
    # 21 epochs while the training loss, 1.72 at epoch 1, stays at 0.953. It learned and converged.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "synth-tabular-underfit-s0.csv"
    diagnosis = diagnose(load_curve(csv))
    assert not diagnosis.has("not_learning"), diagnosis.codes
    assert diagnosis.has("underfitting"), diagnosis.codes
    # Frozen from the first epoch, the same level is a network that never learned.
    curve = load_curve(csv)
    curve.metrics["val_accuracy"] = np.full(curve.epochs.size, 0.62)
    curve.metrics["accuracy"] = np.full(curve.epochs.size, 0.61)
    curve.metrics["loss"] = np.full(curve.epochs.size, 1.4)
    assert diagnose(curve).has("not_learning")


def test_predictions_that_never_change_while_the_loss_learns_are_not_learning() -> None:
    # A real run (Fashion-MNIST T-shirt vs shirt, 1,000 validation images): Dense(1,
    # activation="softmax") is 1.0 for every input, so both accuracies repeat one value to float
    # precision on every epoch, while Keras 3's cross-entropy, read from the logits beneath the
    # softmax, falls from 0.50 to 0.19 (val_loss 0.39 to 0.33). Before: plateau and underfitting,
    # with capacity remedies that cannot help.
    t = np.arange(20)
    metrics = {
        "accuracy": np.full(20, 0.4811111092567444),
        "loss": 0.19 + 0.31 * np.exp(-t / 6),
        "val_accuracy": np.full(20, 0.5080000162124634),
        "val_loss": 0.334 + 0.052 * np.exp(-t / 3),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    assert not diagnosis.has("plateau") and not diagnosis.has("underfitting"), diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.evidence["constant_output"] is True
    assert finding.evidence["frozen_epochs"] == 20
    assert "never changes" in finding.message and "val_loss went from 0.386" in finding.message
    assert any("sigmoid" in remedy for remedy in finding.remedies)
    # A training accuracy that moves is a model whose predictions change: not this finding.
    moving = dict(metrics, accuracy=np.linspace(0.48, 0.60, 20))
    assert not diagnose(_curve(moving)).has("not_learning")
    # Nor are 4 epochs enough to call it.
    short = {k: v[:4] for k, v in metrics.items()}
    assert not diagnose(_curve(short)).has("not_learning")


def test_memorising_shuffled_labels_is_not_learning_from_the_file_alone() -> None:
    # Shuffled labels on a 6-class task, 1,000 validation examples: training accuracy climbs to
    # 0.40 by memorising while val_accuracy stays at 1 / 6 and val_loss climbs above ln 6 (1.79).
    # The loss never sits at ln K, yet accuracy at 1 / K with the loss no lower than ln K names K.
    rng = np.random.default_rng(4)
    t = np.arange(15)
    metrics = {
        "accuracy": 0.17 + 0.016 * t + rng.normal(0, 0.003, 15),
        "loss": 2.35 - 0.055 * t,
        "val_accuracy": _grid(1 / 6 + rng.normal(0, 0.008, 15), 1000),
        "val_loss": 2.38 - 0.25 * (1 - np.exp(-t / 3)) + rng.normal(0, 0.005, 15),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    evidence = diagnosis.findings[0].evidence
    assert evidence["chance_source"] == "chance_accuracy"
    assert evidence["chance"] == pytest.approx(1 / 6, abs=1e-6)
    assert "1 / 6" in diagnosis.findings[0].message


def test_shuffled_labels_on_a_balanced_binary_task_is_not_learning_from_the_file_alone() -> None:
    # 142 validation examples: val_accuracy wanders 0.48-0.52 while val_loss falls from 0.88
    # towards ln 2 (0.693) from above: a network calibrating its output bias, learning nothing.
    rng = np.random.default_rng(6)
    t = np.arange(20)
    metrics = {
        "accuracy": 0.51 + 0.0015 * t + rng.normal(0, 0.003, 20),
        "loss": 0.86 - 0.0055 * t,
        "val_accuracy": _grid(0.5 + rng.normal(0, 0.012, 20), 142),
        "val_loss": 0.88 - 0.005 * t,
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    assert diagnosis.findings[0].evidence["chance_source"] == "chance_accuracy"
    assert diagnosis.findings[0].evidence["chance"] == pytest.approx(0.5)


def test_a_sound_binary_model_near_one_half_early_on_names_no_class_count() -> None:
    # A binary model starting at 0.5 and climbing to 0.8: at 1 / 2 for its first epochs only.
    t = np.arange(20)
    val = 0.5 + 0.3 * (1 - np.exp(-t / 4))
    metrics = {
        "accuracy": val + 0.01,
        "loss": 0.69 - 0.25 * (1 - np.exp(-t / 4)),
        "val_accuracy": _grid(val, 400),
        "val_loss": 0.70 - 0.24 * (1 - np.exp(-t / 4)),
    }
    curve = _curve(metrics)
    from pipelines.curves.detectors import chance_accuracy_classes

    assert chance_accuracy_classes(curve) is None
    assert not diagnose(curve).has("not_learning")


def test_a_model_that_climbed_to_one_third_then_overfitted_names_no_class_count() -> None:
    # A 6-class model climbing from 0.17 to 0.34, then overfitting (val_loss above ln 3 = 1.10):
    # its accuracy sits near 1 / 3 at the end, but it climbed there from below: it learned.
    rng = np.random.default_rng(5)
    t = np.arange(30)
    val = 0.17 + 0.17 * (1 - np.exp(-t / 3))
    metrics = {
        "accuracy": np.minimum(0.2 + 0.03 * t, 0.99),
        "loss": np.maximum(1.8 - 0.06 * t, 0.05),
        "val_accuracy": _grid(val + rng.normal(0, 0.005, 30), 1000),
        "val_loss": 1.75 - 0.3 * np.minimum(t, 6) / 6 + 0.05 * np.maximum(t - 6, 0),
    }
    diagnosis = diagnose(_curve(metrics))
    assert not diagnosis.has("not_learning"), diagnosis.codes
    assert diagnosis.has("overfitting"), diagnosis.codes


@pytest.mark.parametrize("prior", [(1.0,), (1.0, 0.0), (0.5, -0.1, 0.6), (0.5, float("nan"))])
def test_a_class_prior_with_nothing_to_classify_is_a_clear_error(prior: tuple[float, ...]) -> None:
    t = np.arange(10)
    metrics = {"accuracy": np.full(10, 1.0), "loss": 0.1 * np.exp(-t / 3), "val_loss": 0.1 * np.exp(-t / 3)}
    with pytest.raises(ValueError, match="run: class_prior .* at least two classes"):
        diagnose(_curve({**metrics, "val_accuracy": np.full(10, 1.0)}, class_prior=prior))


# 2. Underfitting without a baseline ------------------------------------------------------------------


def test_train_and_validation_low_and_flat_together_is_underfitting_without_a_baseline() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(40)
    level = 0.62 - 0.3 * np.exp(-t / 3)
    metrics = {
        "accuracy": level + rng.normal(0, 0.003, 40),
        "loss": 1.1 + 0.8 * np.exp(-t / 3) + rng.normal(0, 0.003, 40),
        "val_accuracy": _grid(level - 0.005 + rng.normal(0, 0.006, 40), 2000),
        "val_loss": 1.12 + 0.8 * np.exp(-t / 3) + rng.normal(0, 0.006, 40),
    }
    diagnosis = diagnose(_curve(metrics))  # no num_classes, no baseline: a file run
    assert diagnosis.has("underfitting"), diagnosis.codes
    finding = next(f for f in diagnosis.findings if f.code == "underfitting")
    assert finding.evidence["basis"] == "fit"
    # The same run with a model that fits its training set far better is not underfitting.
    metrics["accuracy"] = np.minimum(level + 0.3 * (1 - np.exp(-t / 10)), 0.99)
    assert not diagnose(_curve(metrics)).has("underfitting")


def test_training_a_few_points_above_validation_at_a_low_level_is_still_underfitting() -> None:
    # A 10-class MLP too small for its task: training flat at 0.80, validation at 0.77 on 2,000
    # examples. A gap of 0.03 is no model fitting its training set (its error stays at 0.20): both
    # sit low together. A gap of 0.08 at the same training level is a model that does fit better.
    rng = np.random.default_rng(5)
    t = np.arange(20)
    rise = 1 - np.exp(-t / 2)
    metrics = {
        "accuracy": 0.58 + 0.22 * rise + rng.normal(0, 0.002, 20),
        "loss": 0.78 + 8 * np.exp(-t / 1.2) + rng.normal(0, 0.002, 20),
        "val_accuracy": _grid(0.66 + 0.11 * rise + rng.normal(0, 0.003, 20), 2000),
        "val_loss": 0.83 + 4 * np.exp(-t / 1.5) + rng.normal(0, 0.003, 20),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("underfitting"), diagnosis.codes
    assert next(f for f in diagnosis.findings if f.code == "underfitting").evidence["basis"] == "fit"
    apart = dict(metrics, val_accuracy=_grid(0.64 + 0.08 * rise + rng.normal(0, 0.003, 20), 2000))
    assert not diagnose(_curve(apart)).has("underfitting")


def test_a_creep_at_a_low_level_on_a_large_validation_set_is_underfitting() -> None:
    # A corpus run of the tune split (5 classes, an MLP held down by L2 0.1, 1,000 validation
    # examples): validation creeps 0.58 -> 0.595 over the last third, a significant trend on so
    # many examples, while training sits beside it at 0.60: converged at a low level.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "uf3-synth-5-l2-s0.csv"
    diagnosis = diagnose(load_curve(csv))
    assert diagnosis.has("underfitting"), diagnosis.codes
    # The same creep on a model that fits its training set (train far above validation) is not.
    curve = load_curve(csv)
    curve.metrics["accuracy"] = np.minimum(curve.metrics["accuracy"] + 0.3, 0.99)
    assert not diagnose(curve).has("underfitting")


# 3. Oscillation judged against the validation set's size; never hides the primary finding -----------


def test_a_training_accuracy_creeping_by_thousandths_is_flat_for_underfitting() -> None:
    # A real corpus run (a 10-class CNN, file only): training accuracy 0.375 -> 0.383 over 20
    # epochs (a significant but negligible creep) while validation sits at 0.37.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "digits-cnn-plateau-s0.csv"
    diagnosis = diagnose(load_curve(csv))
    assert diagnosis.has("underfitting"), diagnosis.codes
    assert diagnosis.verdict != "healthy"


def _overfit_small_val(seed: int, n_val: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(60)
    val_loss = 0.6 + 0.9 * np.exp(-t / 4) + 0.012 * np.maximum(t - 15, 0)
    # A small validation set: each example moves val_loss a lot, accuracy in steps of 1 / n.
    val_loss = val_loss + rng.normal(0, 0.08, 60)
    return {
        "accuracy": np.minimum(0.6 + 0.4 * (1 - np.exp(-t / 10)), 1.0),
        "loss": 1.0 * np.exp(-t / 10) + 0.01,
        "val_accuracy": _grid(0.8 - 0.2 * np.exp(-t / 4) + rng.normal(0, 0.3 / n_val**0.5 * 0.4, 60), n_val),
        "val_loss": val_loss,
    }


def test_jittery_val_loss_on_a_small_validation_set_is_not_oscillation() -> None:
    for seed in range(5):
        diagnosis = diagnose(_curve(_overfit_small_val(seed, 40), num_classes=3))
        assert not diagnosis.has("oscillation"), (seed, diagnosis.codes)
        assert diagnosis.has("overfitting"), (seed, diagnosis.codes)


def test_jittery_val_loss_with_an_accuracy_that_barely_moves_is_not_oscillation() -> None:
    # A corpus run of the tune split (moons, 16 validation examples, Adam 0.01): val_accuracy sits
    # at 14/16 for 39 of 40 epochs, so the file alone cannot say n; val_loss jitters while it
    # rises (overfitting). The one other value bounds n from below (the grid of 16), and the
    # accuracy's scatter is far inside that set's binomial SD (0.08).
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "moons-tiny-val-healthy-s0.csv"
    diagnosis = diagnose(load_curve(csv))
    assert diagnosis.has("overfitting") and not diagnosis.has("oscillation"), diagnosis.codes
    # The same val_loss with an accuracy that never moves at all is no swing either.
    curve = load_curve(csv)
    curve.metrics["val_accuracy"] = np.full_like(curve.metrics["val_accuracy"], 0.875)
    assert not diagnose(curve).has("oscillation")
    # With the val_accuracy swinging by whole examples from epoch to epoch (3 SDs), it is.
    curve.metrics["val_accuracy"] = np.where(np.arange(40) % 2 == 0, 0.5625, 1.0)
    assert diagnose(curve).has("oscillation")


def test_val_loss_steps_within_its_scatter_on_the_validation_set_are_not_oscillation() -> None:
    # A corpus run of the tune split (textures, 1,000 validation images, Adam 1e-3, early-stopped):
    # val_loss changes direction on 64% of its epochs, but by a median 4.5% of its level, under
    # 1.5 / sqrt(1,000) = 4.7%, the scale by which the mean cross-entropy of 1,000 examples moves
    # as the model's answers on a few of them change (``overfit_sd_ratio``, as for overfitting).
    # It read as oscillation beside its plateau.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "textures-plateau-earlystop-s2.csv"
    diagnosis = diagnose(load_curve(csv))
    assert not diagnosis.has("oscillation"), [f.message for f in diagnosis.findings]
    assert diagnosis.has("plateau"), diagnosis.codes
    # The same swings three times as large are an optimiser overshooting.
    curve = load_curve(csv)
    val_loss = curve.metrics["val_loss"]
    trend = np.convolve(np.r_[val_loss[0], val_loss, val_loss[-1]], np.ones(3) / 3, mode="valid")
    curve.metrics["val_loss"] = trend + 3 * (val_loss - trend)
    assert diagnose(curve).has("oscillation")


def test_a_swinging_val_loss_that_keeps_rising_is_overfitting() -> None:
    # val_loss doubles from its minimum at epoch 9 while swinging +-0.08 from epoch to epoch; one
    # of the last epochs dips back. The level has risen far beyond the swings: overfitting.
    rng = np.random.default_rng(3)
    t = np.arange(1, 31)
    trend = np.where(t <= 8, 0.9 - 0.5 * (t - 1) / 7, 0.4 + 0.4 * (t - 8) / 22)
    val_loss = trend + 0.08 * np.where(t % 2 == 0, 1, -1) * (t > 8) + rng.normal(0, 0.01, 30)
    val_loss[-2] = trend[-2] - 0.1
    metrics = {
        "loss": 0.9 * np.exp(-t / 8),
        "val_loss": val_loss,
        "accuracy": 1 - 0.5 * np.exp(-t / 5),
        "val_accuracy": _grid(0.85 - 0.001 * np.maximum(t - 8, 0) + rng.normal(0, 0.005, 30), 500),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("overfitting"), diagnosis.codes
    # The same swings around a flat level are not.
    metrics["val_loss"] = np.where(t <= 8, trend, 0.4) + 0.08 * np.where(t % 2 == 0, 1, -1) * (t > 8)
    assert not diagnose(_curve(metrics)).has("overfitting")


def test_training_loss_jitter_within_the_training_sets_sampling_is_not_oscillation() -> None:
    # A corpus run of the tune split (moons, 400 training examples, Adam 0.05): the training loss
    # jitters by about 0.012 around 0.14, what a mean over 400 examples scatters by anyway.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "moons-oscillate-s0.csv"
    assert not diagnose(load_curve(csv)).has("oscillation")
    # The same jitter, tripled, is beyond it.
    curve = load_curve(csv)
    loss = curve.metrics["loss"]
    smooth = np.convolve(np.pad(loss, 2, mode="edge"), np.full(5, 0.2), mode="valid")
    curve.metrics["loss"] = smooth + 3 * (loss - smooth)
    assert diagnose(curve).has("oscillation")


def test_a_training_loss_swinging_after_its_first_fall_is_oscillation() -> None:
    # A corpus run of the tune split (synthetic tabular task, Adam at 0.05): the training loss falls
    # from 0.43 to 0.09 in six epochs, then swings between 0.04 and 0.12 for the rest of the run.
    # Against the whole run's trend the first fall hides the swings; against the loss's own level
    # each step is a fifth of it.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "synth-tabular-oscillate-s0.csv"
    assert diagnose(load_curve(csv)).has("oscillation")
    # The same run with its training loss settling smoothly after epoch 8 does not swing.
    curve = load_curve(csv)
    loss = curve.metrics["loss"]
    curve.metrics["loss"] = np.where(np.arange(loss.size) < 8, loss, np.linspace(loss[8], 0.04, loss.size))
    assert not diagnose(curve).has("oscillation")


def test_a_training_loss_memorised_to_about_zero_does_not_swing() -> None:
    # A 512 x 512 MLP memorising 200 examples with Adam (a real run, session 25): the training loss
    # falls from 0.5 to about 1e-6 and then moves by its own size from epoch to epoch (5.8e-07,
    # 7.2e-07, 1.3e-06, 4.3e-06...), float round-off against its level; it read as oscillation.
    t = np.arange(60)
    rng = np.random.default_rng(0)
    floor = 1e-6 * np.exp(rng.normal(0.0, 0.8, t.size))
    loss = np.maximum(0.5 * np.exp(-0.6 * t), floor)
    metrics = {
        "accuracy": _grid(1.0 - 0.4 * np.exp(-0.3 * t), 5000),
        "loss": loss,
        "val_accuracy": _grid(np.minimum(0.6 + 0.05 * t, 0.85), 500),
        "val_loss": np.maximum(0.9 * np.exp(-0.4 * t), 0.42),
    }
    assert not diagnose(_curve(metrics, num_classes=10)).has("oscillation")
    # The same swings of a loss that stays at 0.05 (its level, not 0) are an optimiser overshooting.
    metrics["loss"] = np.maximum(0.5 * np.exp(-0.6 * t), 0.05 * np.exp(rng.normal(0.0, 0.8, t.size)))
    assert diagnose(_curve(metrics, num_classes=10)).has("oscillation")


# 4. Too slow on coarse accuracy ------------------------------------------------------------------


def test_too_slow_says_how_the_pace_held_up() -> None:
    # A flat first third, then a steady climb: the pace ratio is infinite and was printed as
    # "inf x its pace over the first third". A climb that slowed to a quarter of its first pace,
    # kept by its last third's share of the gain, was told "no deceleration".
    t = np.arange(30)
    late = np.where(t < 10, 0.30, 0.30 + 0.012 * (t - 9))
    metrics = {
        "accuracy": late + 0.01,
        "loss": 2.0 - 0.03 * t,
        "val_accuracy": _grid(late, 1000),
        "val_loss": 2.05 - 0.03 * t,
    }
    slow = next(f for f in diagnose(_curve(metrics)).findings if str(f.code) == "too_slow")
    assert "after a first third without gain: no deceleration" in slow.message and "inf" not in slow.message
    from pipelines.curves.detectors import steady_improvement

    x = np.arange(30, dtype=float)
    decel = -(0.70 - 0.2 * (1 - np.exp(-x / 12)))  # val_loss falling ever more slowly, oriented
    found = steady_improvement(x, decel, 1e-4, 3.0)
    assert found is not None and found["steadiness"] < 0.5 and found["late_share"] >= 0.1
    curve = _curve({"loss": -decel - 0.05, "val_loss": -decel}, 30)
    slowing = next(f for f in diagnose(curve).findings if str(f.code) == "too_slow")
    assert "no deceleration" not in slowing.message and "of the run's gain" in slowing.message


def test_val_loss_falling_steadily_on_a_coarse_accuracy_is_too_slow() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(100)
    val_loss = 1.09 - 0.004 * t + rng.normal(0, 0.004, 100)  # ln 3 falling steadily all run
    acc = 0.5 + 0.0015 * t
    metrics = {
        "accuracy": acc + rng.normal(0, 0.004, 100),
        "loss": val_loss - 0.01,
        "val_accuracy": _grid(acc + rng.normal(0, 0.01, 100), 40),
        "val_loss": val_loss,
    }
    diagnosis = diagnose(_curve(metrics, num_classes=3))
    assert diagnosis.verdict == "too_slow", diagnosis.codes
    assert not diagnosis.has("not_learning") and not diagnosis.has("plateau"), diagnosis.codes
    # And the live stop never fires on it.
    history = {k: v.tolist() for k, v in metrics.items()}
    for epochs in range(5, 101, 5):
        assert not should_stop({k: v[:epochs] for k, v in history.items()}, 100, num_classes=3).stop, epochs


# 5. Short runs: chance, exploding loss and collapse need no trend ---------------------------------


def test_two_epochs_at_chance_with_an_exploded_loss_is_not_healthy() -> None:
    metrics = {
        "accuracy": np.array([0.10, 0.10]),
        "loss": np.array([5e5, 3e5]),
        "val_accuracy": np.array([0.1, 0.1]),
        "val_loss": np.array([2.1e5, 194124.0]),
    }
    diagnosis = diagnose(_curve(metrics, budget=2, num_classes=10))
    assert diagnosis.verdict == "divergence", diagnosis.codes  # a loss 1e5 x ln 10, ending at chance
    assert not diagnosis.has("healthy")


def test_two_epochs_of_an_exploded_loss_that_has_not_recovered_is_divergence_from_the_file_alone() -> None:
    # Adam at 5.0 for 2 epochs, no class count: the training loss 14,564 then 19.8, still above
    # 2 x ln 1000 (13.8), beyond any classifier's cross-entropy once recovered.
    metrics = {
        "accuracy": np.array([0.1295, 0.097]),
        "loss": np.array([14564.2, 19.79]),
        "val_accuracy": np.array([0.101, 0.108]),
        "val_loss": np.array([4.81, 2.53]),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert "has not recovered" in diagnosis.findings[0].message
    # The same blow-up with a training loss back under the bound is not called from two epochs.
    recovered = dict(metrics, loss=np.array([14564.2, 2.1]))
    assert not diagnose(_curve(recovered)).has("divergence")


def test_an_exploded_loss_that_has_not_recovered_is_divergence_with_the_class_prior_known() -> None:
    # Adam at 5.0 on a balanced binary task (40 validation examples): training loss 2,645 then 73,
    # far above 10 x ln 2, while val_loss sits at ln 2 and val_accuracy is not (yet) at chance.
    metrics = {
        "accuracy": np.array([0.6275, 0.61]),
        "loss": np.array([2645.3, 73.29]),
        "val_accuracy": np.array([0.9, 0.625]),
        "val_loss": np.array([0.6444, 0.6426]),
    }
    diagnosis = diagnose(_curve(metrics, class_prior=(0.5, 0.5)))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert "over 10 x the prior's entropy 0.693" in diagnosis.findings[0].message
    # Back under 10 x ln 2 at the end: not called from two epochs.
    recovered = dict(metrics, loss=np.array([2645.3, 1.2]))
    assert not diagnose(_curve(recovered, class_prior=(0.5, 0.5))).has("divergence")


def test_a_short_run_collapsing_to_chance_is_flagged() -> None:
    metrics = {
        "accuracy": np.array([0.55, 0.70, 0.76, 0.80, 0.82, 0.83]),
        "loss": np.array([1.3, 0.85, 0.68, 0.58, 0.52, 0.49]),
        "val_accuracy": np.array([0.42, 0.33, 0.26, 0.22, 0.21, 0.21]),
        "val_loss": np.array([2.0, 2.6, 3.4, 4.2, 4.9, 5.3]),
    }
    diagnosis = diagnose(_curve(metrics, budget=6, num_classes=10))
    assert not diagnosis.has("healthy"), diagnosis.codes
    assert diagnosis.has("not_learning"), diagnosis.codes


def _short(val_loss: list[float], val_acc: list[float]) -> dict[str, np.ndarray]:
    va = np.asarray(val_acc)
    vl = np.asarray(val_loss)
    return {"accuracy": va + 0.01, "loss": vl * 0.98, "val_accuracy": _grid(va, 1000), "val_loss": vl}


# A finished 6-epoch run whose val_loss falls as fast at its end as at its start (rate too low).
STEADY = _short([2.10, 1.93, 1.76, 1.62, 1.49, 1.37], [0.18, 0.24, 0.30, 0.34, 0.37, 0.42])


def test_a_short_finished_run_still_falling_at_its_first_pace_is_too_slow() -> None:
    diagnosis = diagnose(_curve(STEADY, budget=6, num_classes=10))
    assert diagnosis.codes == ["too_slow"], diagnosis.codes
    assert "val_loss still falling steadily when the run ended at epoch 6" in diagnosis.findings[0].message
    # From the file alone too (no budget, no class count: a complete file ran its course).
    assert diagnose(_curve(STEADY, budget=None)).has("too_slow")


def test_a_short_run_that_slows_down_is_healthy_not_too_slow() -> None:
    # Most of the gain in the first epochs, then slower: a sound short run (digits at 0.82 .. 0.93).
    slowing = _short([0.62, 0.40, 0.31, 0.27, 0.25], [0.823, 0.882, 0.907, 0.922, 0.928])
    diagnosis = diagnose(_curve(slowing, budget=5, num_classes=10))
    assert not diagnosis.has("too_slow") and diagnosis.verdict == "healthy", diagnosis.codes


@pytest.mark.parametrize("case", ["budget left", "live", "accuracy falling", "barely falling"])
def test_a_short_steady_fall_is_not_too_slow_when_the_run_had_more_to_go_or_barely_moved(case: str) -> None:
    metrics, budget, live = dict(STEADY), 6, False
    if case == "budget left":
        budget = 30  # killed or still training at epoch 6 of 30: not a finished run
    elif case == "live":
        live = True
    elif case == "accuracy falling":
        metrics["val_accuracy"] = _grid(np.array([0.18, 0.24, 0.30, 0.40, 0.37, 0.35]), 1000)
    else:  # a loss creeping down by 1% over the last half: learning next to nothing
        metrics["val_loss"] = np.array([2.310, 2.306, 2.302, 2.299, 2.296, 2.293])
    diagnosis = diagnose(_curve(metrics, budget=budget, num_classes=10), live=live)
    assert not diagnosis.has("too_slow"), diagnosis.codes


# 6. Divergence then death; a single spike is not divergence ----------------------------------


def test_divergence_then_death() -> None:
    epochs = 20
    metrics = {
        "accuracy": np.r_[0.12, np.full(epochs - 1, 0.10)],
        "loss": np.r_[552030.0, np.full(epochs - 1, math.log(10))],
        "val_accuracy": np.full(epochs, 0.10),
        "val_loss": np.full(epochs, math.log(10)),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=10))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert diagnosis.findings[0].onset_epoch == 1
    assert "died" in diagnosis.findings[0].message
    # ... and what the run is now: a dead network at chance (the blow-up does not hide it).
    assert diagnosis.codes[:2] == ["divergence", "not_learning"], diagnosis.codes
    # The live stop says so once the network has stayed dead for live_patience (3) epochs.
    assert not should_stop({k: v[:3].tolist() for k, v in metrics.items()}, 20, num_classes=10).stop
    decision = should_stop({k: v[:4].tolist() for k, v in metrics.items()}, 20, num_classes=10)
    assert decision.stop and decision.finding is not None and decision.finding.code == "divergence"


def test_a_collapse_is_divergence_from_the_file_alone() -> None:
    # Learns to 0.93, then the learning rate ramps past the stable range: the training loss blows
    # up 60x and val_accuracy drops to one class's share, flickering by an example (n = 1000).
    t = np.arange(25)
    rng = np.random.default_rng(5)
    loss = np.where(t < 12, 0.7 * np.exp(-t / 3) + 0.1, 0.7 + 5 * rng.random(25))
    val = np.where(t < 12, 0.93 - 0.2 * np.exp(-t / 3), 0.482)
    val[t >= 14] = 0.482 - 0.001 * (t[t >= 14] % 2)
    metrics = {
        "loss": loss,
        "accuracy": val + 0.01,
        "val_loss": loss * 0.9,
        "val_accuracy": _grid(val, 1000),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert "collapsed" in diagnosis.findings[0].message
    # A run that settles on a lower level without any blow-up of its loss is not a collapse.
    calm = dict(metrics, loss=np.where(t < 12, 0.7 * np.exp(-t / 3) + 0.1, 0.25), val_loss=np.full(25, 0.3))
    assert not diagnose(_curve(calm)).has("divergence")


def test_a_single_val_loss_spike_that_recovers_is_not_divergence() -> None:
    t = np.arange(30)
    val_loss = 0.3 + 1.5 * np.exp(-t / 4)
    val_loss[12] = 789.0
    metrics = {
        "accuracy": 0.95 - 0.5 * np.exp(-t / 4),
        "loss": 0.25 + 1.5 * np.exp(-t / 4),
        "val_accuracy": _grid(0.93 - 0.5 * np.exp(-t / 4), 1000),
        "val_loss": val_loss,
    }
    assert not diagnose(_curve(metrics, num_classes=10)).has("divergence")


#: Adam at 5.0 on a 6-class task, 2 epochs: val_accuracy climbs, val_loss stays in the thousands.
_BLOWN_UP_IN_2_EPOCHS = {
    "loss": np.array([19321.0, 12237.0]),
    "accuracy": np.array([0.34, 0.67]),
    "val_accuracy": np.array([0.515, 0.726]),
    "val_loss": np.array([15737.7, 14152.7]),
}


def test_two_epochs_of_val_loss_far_above_the_prior_are_divergence_even_while_accuracy_climbs() -> None:
    # Adam at 5.0 on a 6-class task: val_accuracy 0.51 -> 0.73, but val_loss 15,738 -> 14,153
    # (ln 6 = 1.79): the weights blew up from the first step; no trend is needed to say so.
    metrics = dict(_BLOWN_UP_IN_2_EPOCHS)
    diagnosis = diagnose(_curve(metrics, budget=2, class_prior=[1 / 6] * 6))
    assert diagnosis.verdict == "divergence", diagnosis.codes


def test_a_val_loss_in_the_thousands_is_divergence_even_from_the_file_alone() -> None:
    # No class count, no prior: 14,153 is over 2 x ln 1000 (13.8), twice any prior's entropy.
    metrics = dict(_BLOWN_UP_IN_2_EPOCHS)
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert "1,000 classes" in diagnosis.findings[0].message
    # So is a val_loss that never came below 15 (wine, 3 classes: the informed bound is 11) ...
    assert diagnose(_curve({**metrics, "val_loss": np.array([16.0, 15.0])})).has("divergence")
    # ... but 12 is not: under 2 x ln 1000 only the class count could tell.
    modest = {**metrics, "loss": np.array([14.0, 11.0]), "val_loss": np.array([13.0, 12.0])}
    assert not diagnose(_curve(modest)).has("divergence")


def test_a_regression_log_in_the_thousands_is_not_a_blow_up() -> None:
    # No accuracy metric: a squared error, not a cross-entropy; ln 1000 bounds nothing here.
    t = np.arange(20)
    metrics = {"loss": 5e4 * np.exp(-t / 5) + 3e3, "val_loss": 5.2e4 * np.exp(-t / 5) + 3.4e3}
    assert not diagnose(_curve(metrics)).has("divergence")


def test_an_overfitting_regression_log_is_not_also_a_plateau_of_the_same_val_loss() -> None:
    # A real run (sklearn's diabetes regression, MSE, 350 / 92 examples, 200 epochs, no accuracy):
    # val_loss is lowest at epoch 4 (0.56) and rises to about 0.80 while the training loss falls to
    # 0.02. Overfitting; the same val_loss was also reported as "flat at 0.805 since epoch 1".
    rng = np.random.default_rng(3)
    t = np.arange(200)
    metrics = {
        "loss": 0.02 + 0.6 * np.exp(-t / 8) + np.abs(rng.normal(0, 0.004, 200)),
        "val_loss": 0.80 - 0.24 * np.exp(-((t - 3) ** 2) / 8) + rng.normal(0, 0.025, 200),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("overfitting"), diagnosis.codes
    assert not diagnosis.has("plateau"), diagnosis.codes


def test_one_first_epoch_far_above_the_prior_that_recovers_is_not_divergence() -> None:
    metrics = {
        "loss": np.array([3.0, 0.9]),
        "accuracy": np.array([0.4, 0.7]),
        "val_accuracy": np.array([0.5, 0.74]),
        "val_loss": np.array([40.0, 0.8]),
    }
    assert not diagnose(_curve(metrics, budget=2, class_prior=[1 / 6] * 6)).has("divergence")


def test_death_after_a_blow_up_on_a_small_validation_set_is_divergence() -> None:
    # 2 classes, 40 validation examples: a dead network predicting the prior scores 0.35-0.65
    # (binomial SD 0.079), so 0.625 after a first-epoch loss of 2,645 is still at chance.
    metrics = {
        "loss": np.array([2645.0, 73.0, 0.70, 0.69, 0.69, 0.69]),
        "accuracy": np.array([0.62, 0.61, 0.5, 0.51, 0.5, 0.5]),
        "val_accuracy": np.array([36, 25, 24, 23, 25, 25]) / 40,
        "val_loss": np.array([0.64, 0.643, 0.69, 0.69, 0.69, 0.69]),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=2, class_prior=(0.495, 0.505)))
    assert diagnosis.has("divergence"), diagnosis.codes


# 7. A stall with a widening gap is not "healthy: converged" -----------------------------------


def test_flat_validation_while_training_climbs_is_a_stall_with_its_length_and_gap() -> None:
    rng = np.random.default_rng(7)
    t = np.arange(30)
    val = np.where(t < 9, 0.45 + 0.29 * t / 9, 0.742) + rng.normal(0, 0.004, 30)
    train = np.where(t < 9, 0.45 + 0.29 * t / 9, 0.74 + 0.14 * (t - 9) / 20) + rng.normal(0, 0.002, 30)
    metrics = {
        "accuracy": train,
        "loss": 1.6 - train,
        "val_accuracy": _grid(val, 2000),
        "val_loss": 1.0 - 0.3 * np.minimum(t, 9) / 9 + 0.004 * np.maximum(t - 9, 0),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("plateau"), diagnosis.codes
    finding = next(f for f in diagnosis.findings if f.code == "plateau")
    assert "gap_widening" in finding.evidence["stall_reasons"]
    assert f"{finding.evidence['flat_epochs']} epochs on the plateau before the end" in finding.message
    assert "gap widened" in finding.message
    assert any("augmentation" in r for r in finding.remedies)
    assert not any("deeper or wider" in r for r in finding.remedies)  # no contradicting remedies


def test_a_stall_whose_validation_accuracy_keeps_falling_is_not_called_flat() -> None:
    # A real run (Fashion-MNIST MLP, 60% of the training labels shuffled, 2,000 validation images):
    # val_accuracy peaks at 0.371 at epoch 4 and falls to 0.262 by epoch 30 while training
    # accuracy climbs to 0.67 by memorising. It was "val_accuracy flat at 0.322 ± 0.036".
    rng = np.random.default_rng(5)
    t = np.arange(30)
    val = np.where(t < 4, 0.346 + 0.008 * t, 0.371 - 0.0042 * (t - 3)) + rng.normal(0, 0.006, 30)
    metrics = {
        "accuracy": 0.318 + 0.0119 * t,
        "loss": 2.117 - 0.037 * t,
        "val_accuracy": _grid(val, 2000),
        "val_loss": 2.05 + 0.0015 * t**2,
    }
    stall = next(f for f in diagnose(_curve(metrics)).findings if str(f.code) == "plateau")
    assert "val_accuracy falling since epoch" in stall.message and "flat at" not in stall.message
    # The same stall without the fall is still flat.
    flat = dict(metrics, val_accuracy=_grid(0.36 + rng.normal(0, 0.006, 30), 2000))
    stall = next(f for f in diagnose(_curve(flat)).findings if str(f.code) == "plateau")
    assert "val_accuracy flat at" in stall.message


def test_a_widening_gap_is_a_stall_when_training_levels_off_short_of_fitting_its_set() -> None:
    # val_accuracy flat at 0.60 from epoch 9 while training climbs from 0.70 to 0.82 and then
    # levels off there (an early stop, a swinging optimiser): far from a fitted training set, so
    # the widening gap is a stall, not a convergence.
    rng = np.random.default_rng(11)
    t = np.arange(24)
    val = np.where(t < 8, 0.40 + 0.2 * t / 8, 0.60) + rng.normal(0, 0.004, 24)
    train = np.where(t < 8, 0.40 + 0.3 * t / 8, np.minimum(0.70 + 0.12 * (t - 8) / 10, 0.82))
    train = train + rng.normal(0, 0.002, 24)
    metrics = {
        "accuracy": train,
        "loss": 1.8 - 1.5 * train,
        "val_accuracy": _grid(val, 1000),
        "val_loss": 1.2 - 0.2 * np.minimum(t, 8) / 8 + 0.002 * np.maximum(t - 8, 0),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=6))
    assert diagnosis.has("plateau"), diagnosis.codes
    plateau = next(f for f in diagnosis.findings if f.code == "plateau")
    assert "gap_widening" in plateau.evidence["stall_reasons"]
    # The same run with training levelling off at a fitted 0.99: a convergence, not that stall.
    fitted = dict(metrics, accuracy=np.minimum(train + 0.17 * np.clip((t - 8) / 10, 0, 1), 0.99))
    plateau = next((f for f in diagnose(_curve(fitted, num_classes=6)).findings if f.code == "plateau"), None)
    assert plateau is None or "gap_widening" not in plateau.evidence["stall_reasons"]


def test_a_plateau_below_one_half_is_a_stall_from_the_file_alone() -> None:
    # val_accuracy flat at 0.47 (the stall of the product's brief, 46-49%) and training flat
    # beside it, classes unknown: (0.47 - c) / (1 - c) <= 0.47 for every chance level c >= 0, so
    # the plateau is less than half-way from chance to 1.0 whatever the class count.
    rng = np.random.default_rng(11)
    t = np.arange(30)
    val = np.where(t < 6, 0.2 + 0.27 * t / 6, 0.47) + rng.normal(0, 0.004, 30)
    metrics = {
        "accuracy": np.where(t < 6, 0.2 + 0.28 * t / 6, 0.48) + rng.normal(0, 0.002, 30),
        "loss": 1.6 - 0.3 * np.minimum(t, 6) / 6,
        "val_accuracy": _grid(val, 2000),
        "val_loss": 1.65 - 0.3 * np.minimum(t, 6) / 6 + rng.normal(0, 0.003, 30),
    }
    diagnosis = diagnose(_curve(metrics))
    plateau = next((f for f in diagnosis.findings if f.code == "plateau"), None)
    assert plateau is not None, diagnosis.codes
    assert "low_level" in plateau.evidence["stall_reasons"]
    assert plateau.evidence["stall_low_level"] == pytest.approx(0.47, abs=0.01)
    # Training sits beside it: underfitting, and its message says against what the level is low.
    underfitting = next(f for f in diagnosis.findings if f.code == "underfitting")
    assert "less than 50% of the way from any chance level to 1.0" in underfitting.message
    assert "; )" not in underfitting.message


def test_training_climbing_up_to_a_higher_validation_accuracy_is_no_widening_gap() -> None:
    # Heavy dropout: training accuracy (measured with dropout on) climbs 0.74 -> 0.88 towards a
    # validation accuracy flat at 0.95 above it; the gap closes, it does not widen.
    rng = np.random.default_rng(9)
    t = np.arange(30)
    val = np.where(t < 9, 0.6 + 0.35 * t / 9, 0.95) + rng.normal(0, 0.003, 30)
    train = np.where(t < 9, 0.45 + 0.29 * t / 9, 0.74 + 0.14 * (t - 9) / 20) + rng.normal(0, 0.002, 30)
    metrics = {
        "accuracy": train,
        "loss": 1.6 - train,
        "val_accuracy": _grid(val, 2000),
        "val_loss": 0.9 - 0.7 * np.minimum(t, 9) / 9,
    }
    diagnosis = diagnose(_curve(metrics))
    plateau = next((f for f in diagnosis.findings if f.code == "plateau"), None)
    assert plateau is None or "gap_widening" not in plateau.evidence.get("stall_reasons", ()), diagnosis.codes


def test_a_converged_run_at_full_training_accuracy_is_not_a_stall() -> None:
    rng = np.random.default_rng(8)
    t = np.arange(60)
    val = 0.973 - 0.3 * np.exp(-t / 3) + rng.normal(0, 0.001, 60)
    metrics = {
        "accuracy": np.minimum(1.0, 0.999 - 0.4 * np.exp(-t / 4)),
        "loss": 0.002 + np.exp(-t / 4),
        "val_accuracy": _grid(val, 600),
        "val_loss": 0.08 + 0.8 * np.exp(-t / 4),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=10))
    assert diagnosis.verdict == "healthy", diagnosis.codes


def test_a_val_loss_minimum_right_after_a_steep_fall_is_judged_at_its_own_level() -> None:
    # 10,000 validation examples: val_loss falls steeply to 0.349 at epoch 2, then settles near
    # 0.41 (18% above) while the training set is memorised (accuracy 1.0) and val_accuracy creeps
    # up by thousandths. The mean of epochs 1-3 (0.416) is the fall, not the minimum's level.
    epochs = 25
    t = np.arange(epochs)
    val_loss = np.concatenate(
        [[0.483, 0.349, 0.417, 0.429, 0.452, 0.549, 0.471], 0.440 - 0.03 * (1 - np.exp(-(t[7:] - 7) / 8))]
    )
    metrics = {
        "accuracy": np.minimum(
            1.0, np.concatenate([[0.57, 0.951, 0.985, 0.997, 0.992, 0.995, 0.998], np.ones(18)])
        ),
        "loss": np.concatenate([[1.26, 0.145, 0.050, 0.016, 0.021, 0.016, 0.005], np.full(18, 0.0002)]),
        "val_accuracy": _grid(
            np.concatenate([[0.826, 0.875, 0.868, 0.878, 0.882, 0.868, 0.886], 0.891 + 0.0005 * (t[7:] - 7)]),
            10000,
        ),
        "val_loss": val_loss,
    }
    diagnosis = diagnose(_curve(metrics, num_classes=6))
    assert diagnosis.has("overfitting"), diagnosis.codes
    finding = next(f for f in diagnosis.findings if f.code == "overfitting")
    assert finding.evidence["best_epoch"] == 2


# 8. The live stop: stalls early, never a run still improving ---------------------------------


def _early_stopping_epoch(val_loss: list[float], patience: int = 5) -> int:
    """Epoch (1-based) at which keras.callbacks.EarlyStopping(monitor="val_loss", patience) stops."""
    best, wait = math.inf, 0
    for epoch, value in enumerate(val_loss, start=1):
        if value < best:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return len(val_loss)


def test_live_stop_on_a_stall_comes_before_early_stopping_and_keeps_the_best() -> None:
    earlier = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        t = np.arange(40)
        val = np.where(t < 8, 0.3 + 0.17 * t / 8, 0.47) + rng.normal(0, 0.004, 40)
        # val_loss keeps creeping down by less than its noise: EarlyStopping's min_delta=0 waits.
        val_loss = 1.6 - 0.3 * np.minimum(t, 8) / 8 - 0.0008 * np.maximum(t - 8, 0) + rng.normal(0, 0.002, 40)
        history = {"val_accuracy": _grid(val, 5000).tolist(), "val_loss": val_loss.tolist()}
        stop_at = next(
            e
            for e in range(1, 41)
            if should_stop({k: v[:e] for k, v in history.items()}, 40, num_classes=10).stop
        )
        regret = max(history["val_accuracy"]) - max(history["val_accuracy"][:stop_at])
        assert regret < 0.01, (seed, regret)
        earlier.append(_early_stopping_epoch(history["val_loss"]) - stop_at)
    assert np.median(earlier) >= 3, earlier


def test_live_stop_never_fires_on_a_run_still_improving_beyond_its_noise() -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        t = np.arange(50)
        val = 0.9 - 0.5 * np.exp(-t / 20) + rng.normal(0, 0.002, 50)
        history = {
            "val_accuracy": _grid(val, 10000).tolist(),
            "val_loss": (0.3 + 1.2 * np.exp(-t / 20) + rng.normal(0, 0.003, 50)).tolist(),
        }
        for epochs in range(3, 51):
            decision = should_stop({k: v[:epochs] for k, v in history.items()}, 50, num_classes=10)
            assert not decision.stop, (seed, epochs, decision.reason)


def test_live_stop_never_contradicts_a_too_slow_diagnosis() -> None:
    # 40 validation examples: val_accuracy sits on one grid step (0.85) for the last 30 epochs of
    # 72 (budget 80) while val_loss keeps falling steadily, 0.0015 an epoch: the diagnosis of
    # the same history says too_slow, so no plateau stop, though 0.0015 x 8 epochs left is
    # under live_loss_fall's 3% of the loss.
    t = np.arange(1, 73)
    val_loss = 0.9 - 0.25 * (1 - np.exp(-t / 10)) - 0.0015 * t
    val_accuracy = np.round(np.minimum(0.70 + 0.15 * (1 - np.exp(-t / 10)), 0.85) * 40) / 40
    history = {
        "loss": list(val_loss - 0.02),
        "accuracy": list(val_accuracy + 0.01),
        "val_loss": list(val_loss),
        "val_accuracy": list(val_accuracy),
    }
    assert diagnose(_curve({k: np.asarray(v) for k, v in history.items()}, 80, num_classes=2)).has("too_slow")
    assert not should_stop(history, 80, num_classes=2).stop


def test_a_stall_whose_training_loss_repeats_itself_blames_weights_that_no_longer_change() -> None:
    # A real run (Fashion-MNIST CNN, 2,000 / 1,000 images, SGD 0.02 decayed x0.2 an epoch by a
    # LearningRateScheduler): from epoch 6 the training loss repeats itself to 1e-7 (0.87377...) and
    # both accuracies sit at 0.696 / 0.670. Before: the plateau blamed memorising (a trend of 0.696
    # over zero noise) and the underfitting capacity ("train longer", a bigger model).
    from pipelines.curves.findings import CAPACITY, MEMORISING, WEIGHTS_STILL

    t = np.arange(30)
    decay = 0.2**t
    metrics = {
        "accuracy": 0.696 - 0.344 * np.minimum(decay, 1) ** 0.7,
        "loss": 0.8737738 + 1.04 * decay,
        "val_accuracy": _grid(0.670 - 0.15 * decay, 1000),
        "val_loss": 0.8831373 + 0.38 * decay,
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("plateau") and diagnosis.has("underfitting"), diagnosis.codes
    for finding in diagnosis.findings:
        if str(finding.code) in ("plateau", "underfitting"):
            assert WEIGHTS_STILL[0][0] in finding.causes, finding.code
            assert MEMORISING[0][0] not in finding.causes and CAPACITY[0][0] not in finding.causes
    underfitting = next(f for f in diagnosis.findings if str(f.code) == "underfitting")
    assert underfitting.evidence["weights_still_epochs"] >= 5
    # The same stall on weights that still move (a loss that keeps changing by 1e-3): capacity.
    rng = np.random.default_rng(2)
    moving = dict(metrics, loss=metrics["loss"] + rng.normal(0, 1e-3, 30))
    underfit = next(f for f in diagnose(_curve(moving)).findings if str(f.code) == "underfitting")
    assert CAPACITY[0][0] in underfit.causes and "weights_still_epochs" not in underfit.evidence


def test_no_finding_carries_contradictory_remedies() -> None:
    from pipelines.curves.findings import CONTRADICTORY, LR_HIGH, LR_LOW, Code, make_finding
    from pipelines.curves.types import Severity

    with pytest.raises(ValueError, match="contradictory remedies"):
        make_finding(Code.OSCILLATION, Severity.WARNING, None, {}, "x", (LR_HIGH, LR_LOW))
    # Every finding the engine makes on the labelled real curves passes the same check.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    fixtures = Path(__file__).parents[2] / "fixtures" / "curves"
    for path in sorted(fixtures.glob("*.csv")):
        for finding in diagnose(load_curve(path, num_classes=10), extrapolate=False).findings:
            for a, b in CONTRADICTORY:
                assert not (a in finding.remedies and b in finding.remedies), (path.name, finding.code)


def test_a_one_epoch_run_is_diagnosed_not_refused() -> None:
    # The compare stage diagnoses whatever trained, even a single epoch.
    metrics = {"loss": [0.5], "accuracy": [0.8], "val_loss": [0.6], "val_accuracy": [0.78]}
    diagnosis = diagnose(_curve({k: np.asarray(v) for k, v in metrics.items()}, budget=1, num_classes=10))
    assert diagnosis.verdict == "healthy" and diagnosis.findings[0].evidence["too_short"]


@pytest.mark.parametrize("n_val", [1000, 20])
def test_a_perfect_score_ends_too_slow_only_on_a_validation_set_too_small_to_vouch_for_it(n_val: int) -> None:
    # An LSTM that sat at chance for 20 epochs, then got every one of 1,000 validation examples
    # right while val_loss kept falling (0.004 -> 0.0003): reported as too slow, "far from its
    # ceiling". A perfect score on 20 examples still allows a 15% error: there it stays too slow.
    t = np.arange(40)
    late = np.clip(t - 20, 0, None)
    val_loss = np.where(t < 20, 0.6935 - 0.00005 * t, 0.004 * np.exp(-0.13 * late))
    val_acc = np.where(t < 20, 0.5, 1.0)
    metrics = {
        "accuracy": np.where(t < 20, 0.51, 1.0),
        "loss": val_loss * 0.9,
        "val_accuracy": _grid(val_acc + np.where(t < 20, 0.01 * np.sin(t), 0.0), n_val),
        "val_loss": val_loss,
    }
    diagnosis = diagnose(_curve(metrics))
    if n_val >= 300:
        assert diagnosis.verdict == "healthy" and not diagnosis.has("too_slow"), diagnosis.codes
    else:
        assert diagnosis.has("too_slow"), diagnosis.codes


def test_a_tiny_slope_is_printed_with_its_digits() -> None:
    from pipelines.curves.findings import fmt

    assert (
        fmt(-3.2e-5) == "-3.2e-05"
        and fmt(0.0) == "0.000"
        and fmt(0.1234) == "0.123"
        and fmt(1234.5) == "1234"
    )


def _skewed(val_acc: float, val_loss0: float, n_val: int, first_epoch: int = 1) -> Curve:
    """A sound 10-class training curve (0.74 at epoch 1 -> 0.95) whose validation set is not drawn
    like its training set: val_accuracy near ``val_acc`` on ``n_val`` examples, and val_loss rising
    from ``val_loss0`` (real probe runs: Fashion-MNIST with inverted validation images, and
    ``fit(validation_split=0.2)`` on data sorted by label)."""
    rng = np.random.default_rng(0)
    t = np.arange(25)
    return Curve(
        "run",
        {
            "accuracy": 0.95 - 0.21 * np.exp(-t / 5),
            "loss": 0.14 + 0.63 * np.exp(-t / 6),
            "val_accuracy": _grid(val_acc + rng.normal(0, 0.003, 25), n_val),
            "val_loss": val_loss0 + 0.9 * t + rng.normal(0, 0.3, 25),
        },
        np.arange(first_epoch, first_epoch + 25),
        None,
    )


def test_a_validation_set_drawn_otherwise_is_a_split_problem_not_divergence_or_a_dead_network() -> None:
    # Inverted validation images: val_accuracy 0.09 and val_loss 18 -> 40 from epoch 1, the training
    # curve sound. It read "divergence" (lower the learning rate). Validation sorted into classes
    # the model never saw: val_accuracy 0.0045 read as "not learning ... chance over 225 classes".
    # In its first epoch the model scored 0.74 on training examples it had not seen yet.
    for val_acc, val_loss0 in ((0.09, 18.0), (0.0045, 14.0)):
        diagnosis = diagnose(_skewed(val_acc, val_loss0, 2000))
        assert diagnosis.verdict == "split_mismatch", diagnosis.codes
        assert not diagnosis.has("divergence") and not diagnosis.has("not_learning"), diagnosis.codes
        finding = diagnosis.findings[0]
        assert finding.severity == "critical" and "first epoch" in finding.message
        assert finding.evidence["below_first_epoch_training"] == pytest.approx(0.74)
        assert any("preprocessing" in r for r in finding.remedies)
    # A log that starts later (a resumed fit) has seen its training set by its first row: no such
    # evidence.
    resumed = diagnose(_skewed(0.09, 18.0, 2000, first_epoch=11))
    assert all("below_first_epoch_training" not in f.evidence for f in resumed.findings), resumed.codes
    assert resumed.verdict != "split_mismatch", resumed.codes


def test_a_convergence_on_accuracy_says_when_val_loss_kept_falling() -> None:
    # A real imbalanced binary run (SGD): both accuracies frozen near the majority share for 47
    # epochs while val_loss fell 0.345 -> 0.281 on every epoch. "converged" alone hid a model still
    # learning; the message now says so. A val_loss flat over the plateau adds nothing (the training
    # loss still drifts down: one repeating itself for 48 epochs would be weights left still).
    t = np.arange(60)
    acc = np.where(t < 12, 0.80 + 0.0085 * t, 0.902)
    falling = 0.28 + 0.08 * np.exp(-np.clip(t - 12, 0, None) / 12) + 0.1 * np.exp(-t / 3)  # slowing down
    for val_loss, said in ((falling, True), (np.where(t < 12, falling, falling[12]), False)):
        metrics = {
            "accuracy": acc + 0.004,
            "loss": val_loss - 0.01 - 0.0002 * t,
            "val_accuracy": _grid(acc + 0.0005 * np.sin(t), 1000),
            "val_loss": val_loss,
        }
        diagnosis = diagnose(_curve(metrics))
        assert diagnosis.verdict == "healthy", diagnosis.codes
        message = diagnosis.findings[0].message
        assert message.startswith("converged") and ("val_loss still fell from" in message) is said, message


def test_a_loss_exploding_epoch_after_epoch_is_divergence_from_its_first_jump() -> None:
    # A real run (digits, SGD 0.3 with momentum 0.9): loss 1.26 -> 10.8 -> 85.9 -> 920 -> 7172. The
    # explosion's own jumps, taken as the loss's noise, raised the blow-up threshold with the loss:
    # "healthy" at epoch 4, and the onset crept forward every epoch.
    loss = [1.26, 10.8, 85.9, 920.4, 7172.2]
    val_loss = [3.26, 44.1, 186.4, 4169.3, 15139.5]
    acc = [0.77, 0.81, 0.81, 0.79, 0.80]
    val_acc = [0.772, 0.650, 0.831, 0.725, 0.849]
    for epochs in (4, 5):
        metrics = {"accuracy": acc[:epochs], "loss": loss[:epochs], "val_accuracy": val_acc[:epochs]}
        metrics["val_loss"] = val_loss[:epochs]
        diagnosis = diagnose(_curve({k: np.asarray(v) for k, v in metrics.items()}))
        assert diagnosis.verdict == "divergence", (epochs, diagnosis.codes)
        assert diagnosis.findings[0].onset_epoch == 2, diagnosis.findings[0]
    history = {"accuracy": acc, "loss": loss, "val_accuracy": val_acc, "val_loss": val_loss}
    assert should_stop(history, 50).stop


def test_a_nan_after_a_blow_up_dates_the_divergence_from_the_blow_up() -> None:
    # The same real run went on swinging between 1 and 1e7 until val_loss became inf at epoch 36:
    # "became NaN/inf at epoch 36" hid that the divergence began at epoch 2.
    loss = [1.26, 10.8, 85.9, 920.4, 7172.2, 3.1, 2.5, 9.6, 1.2, np.nan]
    t = np.arange(len(loss))
    metrics = {
        "loss": np.asarray(loss),
        "val_loss": np.where(t < 9, 2.0, np.inf),
        "val_accuracy": np.full(len(loss), 0.8),
    }
    finding = diagnose(_curve(metrics)).findings[0]
    assert finding.code == "divergence" and finding.onset_epoch == 2, finding
    assert "from epoch 2" in finding.message and "NaN/inf at epoch 10" in finding.message, finding.message
    # A NaN out of a sound run is dated by the NaN.
    metrics["loss"] = np.asarray([1.2, 0.8, 0.6, 0.5, 0.45, 0.4, 0.38, 0.36, 0.35, np.nan])
    finding = diagnose(_curve(metrics)).findings[0]
    assert finding.onset_epoch == 10 and finding.message.startswith("loss became NaN/inf at epoch 10"), (
        finding
    )


@pytest.mark.parametrize("name", ["fmnist-bn-cnn-adam-1e-2.csv", "fmnist-bn-cnn-adam-1e-3-batch-16.csv"])
def test_batchnorm_lag_at_epoch_1_and_fast_memorising_are_no_split_mismatch(name: str) -> None:
    # Real BatchNorm CNNs (tests/fixtures/probes/README.md): validation at 0.17 / 0.32 after epoch 1
    # (moving averages lag), 0.68 / 0.77 after epoch 2; then training pulls to 0.99 while validation
    # stays near 0.86. Both were told "validation accuracy is 0.6 below training from epoch 1 on".
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    curve = load_csv_logger(Path(__file__).parents[2] / "fixtures" / "probes" / name)
    assert curve.metrics["val_accuracy"][0] < 0.35 and max(curve.metrics["val_accuracy"]) > 0.85
    diagnosis = diagnose(curve)
    assert not diagnosis.has("split_mismatch"), [f.message for f in diagnosis.findings]


def test_a_gpu_logged_small_validation_set_is_read_and_its_loss_jitter_is_no_oscillation() -> None:
    # A real Keras 3 / JAX run on a GPU (tests/fixtures/probes/README.md): val_accuracy at 46 / 50
    # for 40 epochs, logged one float32 ulp off the grid. The 50 examples went unread, and val_loss
    # scattering by a tenth on 50 examples was called oscillation on an otherwise converged run.
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    curve = load_csv_logger(
        Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-cnn-dropout-val-50-jax-gpu.csv"
    )
    diagnosis = diagnose(curve)
    assert diagnosis.n_val == 50
    assert diagnosis.verdict == "healthy", [f.message for f in diagnosis.findings]


def test_a_13_example_validation_set_logged_on_a_gpu_is_read_and_its_jitter_is_no_oscillation() -> None:
    # A real Keras 3 / JAX CNN on a GPU validated on 13 images (tests/fixtures/probes/README.md):
    # in 40 epochs val_accuracy takes three values below 1.0 (8, 11 and 12 of 13), 12 / 13 logged
    # one float32 ulp off, too few values for the tolerant grid reading over every n. The 13 went
    # unread, and val_loss stepping by 0.1 on 13 examples was called oscillation (a learning rate
    # too high) on a run whose training accuracy climbed smoothly from 0.66 to 0.98.
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    curve = load_csv_logger(
        Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-cnn-val-13-jax-gpu.csv"
    )
    diagnosis = diagnose(curve)
    assert diagnosis.n_val == 13
    assert not diagnosis.has("oscillation"), [f.message for f in diagnosis.findings]
    assert diagnosis.verdict == "healthy", [f.message for f in diagnosis.findings]
    (noisy,) = (f for f in diagnosis.findings if f.code == "noisy_validation")
    assert "13 validation examples" in noisy.message


def test_a_nan_loss_whose_weights_stay_finite_is_called_an_undefined_loss_not_a_divergence() -> None:
    # A real Keras 3 / JAX MLP with a Dense(10, relu) output read by sparse_categorical_crossentropy
    # (tests/fixtures/probes/README.md): the training loss is NaN on most epochs from the second on
    # (an example whose ten outputs are all 0 is read as 0 / 0), yet val_loss is finite beside it
    # and val_accuracy reaches 0.79. It read "training diverged" with a learning rate too high.
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    curve = load_csv_logger(
        Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-mlp-relu-output-layer-jax-gpu.csv"
    )
    (finding,) = (f for f in diagnose(curve).findings if f.code == "divergence")
    assert "weights stayed finite" in finding.message and "undefined" in finding.message, finding.message
    assert "training diverged" not in finding.message
    assert "not a probability" in finding.causes[0] and "from_logits=True" in finding.remedies[0]
    assert finding.evidence["non_finite_epochs"] >= 20
    # The same loss NaN from one epoch on with val_loss NaN beside it (NaN weights) still diverged.
    metrics = {name: np.array(values, dtype=float) for name, values in curve.metrics.items()}
    for name in ("loss", "val_loss"):
        metrics[name][1:] = np.nan
    dead = Curve(curve.run, metrics, curve.epochs)
    (finding,) = (f for f in diagnose(dead).findings if f.code == "divergence")
    assert "training diverged" in finding.message and "finite" not in finding.message


def test_a_frozen_accuracy_that_fits_two_class_counts_says_the_count_is_only_bounded() -> None:
    # A real MLP blown up by SGD(3.0) in its first epoch (benchmarks/probe_runs.py,
    # fmnist-mlp-sgd-lr-3.0): val_accuracy frozen at 190 of 2,000 (0.095, one class's share of that
    # validation set) and both losses at 0.905 x the clip's charge. It read "no better than a guess
    # over 11 classes" on a 10-class task: 0.095 is as close to 1 / 10 as to 1 / 11.
    epochs = np.arange(1, 21)
    frozen = {
        "accuracy": np.full(20, 0.1019),
        "loss": np.full(20, 14.4757),
        "val_accuracy": np.full(20, np.float32(190 / 2000), dtype=float),
        "val_loss": np.full(20, 14.5869),
    }
    (finding,) = (f for f in diagnose(Curve("sgd-3", frozen, epochs)).findings if f.code == "not_learning")
    assert "1 / 10 to 1 / 11 fit as well" in finding.message, finding.message
    # A frozen accuracy that only one class count fits keeps its plain reading.
    exact = dict(frozen, val_accuracy=np.full(20, np.float32(0.25), dtype=float), val_loss=np.full(20, 3.0))
    (finding,) = (f for f in diagnose(Curve("k4", exact, epochs)).findings if f.code == "not_learning")
    assert "1 / 4" in finding.message and "read off the accuracy" in finding.message, finding.message
    assert "fit as well" not in finding.message, finding.message


def test_a_slow_sgd_run_still_gaining_over_its_last_third_is_not_called_converged() -> None:
    # A real CNN with plain SGD at 1e-3 (tests/fixtures/probes/README.md): 0.769 -> 0.792 over the
    # last 12 of 35 epochs, val_loss lower on 94% of them, but flat within noise over the last 6.
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    curve = load_csv_logger(
        Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-cnn-sgd-1e-3-jax-gpu.csv"
    )
    diagnosis = diagnose(curve)
    message = diagnosis.findings[0].message
    assert diagnosis.verdict == "healthy" and "converged" not in message, message
    assert "still improving at epoch 35" in message and "train longer" in message, message


def test_a_loss_that_is_zero_on_every_epoch_while_accuracy_is_low_is_not_learning() -> None:
    # A real run (one sigmoid unit trained with categorical_crossentropy): both losses 1.19e-08 on
    # all 20 epochs (-log(1) after Keras' clipping) while val_accuracy drifted from 0.62 to 0.42. It
    # read "plateau" and "underfitting".
    t = np.arange(20)
    zero = np.full(20, 1.1920930020892229e-08)
    metrics = {
        "accuracy": 0.626 - 0.0005 * t**2,
        "loss": zero,
        "val_accuracy": _grid(0.624 - 0.0005 * t**2, 10_000),
        "val_loss": zero,
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.codes == ["not_learning"], diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.severity.name == "CRITICAL" and "at most 1.2e-08 on every epoch" in finding.message
    assert any("binary_crossentropy" in r for r in finding.remedies), finding.remedies
    assert "val_accuracy went from 0.624 to" in finding.message
    # An accuracy that never moved says so once ("stayed at 0.615", not "went from 0.615 to 0.615").
    still = {**metrics, "accuracy": np.full(20, 0.614), "val_accuracy": np.full(20, 0.615)}
    assert "val_accuracy stayed at 0.615:" in diagnose(_curve(still)).findings[0].message
    # A solved task has a loss near zero too: not flagged.
    solved = {**metrics, "accuracy": np.full(20, 1.0), "val_accuracy": np.full(20, 0.995)}
    assert not diagnose(_curve(solved)).has("not_learning")


def _probe(name: str) -> Curve:
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    return load_csv_logger(Path(__file__).parents[2] / "fixtures" / "probes" / name)


@pytest.mark.parametrize("epochs", [31, 41, 51])
def test_a_warm_restart_raising_the_loss_is_no_divergence(epochs: int) -> None:
    # A real SGDR run (tests/fixtures/probes/README.md) read just after a restart: the learning rate
    # went from 0.0012 to 0.05 and the training loss from its minimum to 5-25 x it, by design.
    full = _probe("fmnist-cnn-sgdr-restarts-jax-gpu.csv")
    curve = Curve(full.run, {k: v[:epochs] for k, v in full.metrics.items()}, full.epochs[:epochs])
    loss = curve.metrics["loss"]
    assert loss[-1] > 3 * loss.min()  # what the blow-up rule alone would call divergence
    assert not diagnose(curve).has("divergence"), diagnose(curve).codes
    # A rate that only ever rises (a range test) is still read as the cause of a blow-up.
    ramp = dict(curve.metrics, learning_rate=0.001 * 1.5 ** np.arange(epochs))
    assert diagnose(Curve(full.run, ramp, curve.epochs)).has("divergence")


def test_a_run_unlearning_its_training_set_is_divergence() -> None:
    # A real GRU at Adam 1e-2: training accuracy 0.902 -> 0.737 while its loss rose 2.7 x from its
    # minimum. It read "healthy: converged at 0.855 +- 0.039 since epoch 1".
    diagnosis = diagnose(_probe("fmnist-gru-adam-1e-2-jax-gpu.csv"))
    assert diagnosis.verdict == "divergence", diagnosis.codes
    assert "training accuracy fell from its best 0.902 to 0.737" in diagnosis.findings[0].message


def test_a_training_loss_swinging_across_the_priors_entropy_is_no_blow_up() -> None:
    # A real 5-class MLP at Adam 0.2 (500 validation examples): training accuracy climbs to 0.98
    # while the loss swings between 0.8 and 7.7 (the few examples it gets wrong, at full
    # confidence). Its last epoch, 2.64 after its low of 0.80, crosses ln 5 = 1.61 as earlier swings
    # did and came back from. It read "divergence: loss blew up from its minimum 0.800".
    loss = [9.31, 4.35, 1.87, 1.72, 2.27, 3.55, 4.41, 5.16, 6.11, 7.68, 6.02, 6.87, 5.30, 3.60, 5.02,
            3.90, 3.04, 2.96, 3.17, 2.74, 1.53, 1.15, 1.26, 1.40, 2.47, 1.93, 2.01, 2.92, 3.39, 3.50,
            4.16, 3.67, 5.82, 5.34, 4.03, 1.83, 0.80, 1.18, 1.88, 2.64]  # fmt: skip
    accuracy = np.r_[np.linspace(0.32, 0.95, 17), np.full(23, 0.96)]
    accuracy[-5:] = [0.977, 0.982, 0.980, 0.983, 0.973]
    metrics = {
        "accuracy": accuracy,
        "loss": np.asarray(loss),
        "val_accuracy": _grid(np.r_[np.linspace(0.43, 0.62, 17), np.full(23, 0.61)], 500),
        "val_loss": np.linspace(5.7, 335.0, 40),
    }
    diagnosis = diagnose(_curve(metrics, num_classes=5))
    assert not diagnosis.has("divergence"), [f.message for f in diagnosis.findings]
    # The same rise from a loss that never swung (a fall from 50, then 0.80 to 2.64 and staying):
    # above the prior's entropy after having been well below it is worse than knowing nothing.
    smooth = np.r_[np.geomspace(50.0, 0.8, 30), [1.0, 1.5, 2.0, 2.3, 2.5, 2.6, 2.6, 2.62, 2.63, 2.64]]
    diagnosis = diagnose(_curve(metrics | {"loss": smooth}, num_classes=5))
    assert diagnosis.has("divergence"), diagnosis.codes
    assert "loss blew up from its minimum 0.800" in diagnosis.findings[0].message


def test_a_training_loss_rising_while_training_accuracy_climbs_is_no_blow_up() -> None:
    # The same real run's first 12 epochs: the training loss rose from 1.72 (epoch 4) to 6.87,
    # above 3 x its minimum for 4 epochs, while training accuracy climbed from 0.78 to 0.87: the
    # model gets more of its training set right, ever more confident on the rest. The live stop
    # stopped it as divergence at epoch 12; it went on to its best val_accuracy at epoch 17.
    history = {
        "accuracy": [0.325, 0.536, 0.716, 0.778, 0.783, 0.785, 0.793, 0.833, 0.841, 0.860, 0.874, 0.887],
        "loss": [9.31, 4.35, 1.87, 1.72, 2.27, 3.55, 4.41, 5.16, 6.11, 7.68, 6.02, 6.87],
        "val_accuracy": [0.426, 0.466, 0.512, 0.502, 0.516, 0.532, 0.55, 0.55, 0.552, 0.554, 0.58, 0.584],
        "val_loss": [5.70, 7.79, 11.18, 15.43, 20.41, 26.92, 45.68, 47.89, 58.59, 68.80, 80.02, 84.73],
    }
    metrics = {k: np.asarray(v) for k, v in history.items()}
    diagnosis = diagnose(_curve(metrics, 40, num_classes=5))
    assert not diagnosis.has("divergence"), [f.message for f in diagnosis.findings]
    decision = should_stop(history, 40, num_classes=5)
    assert decision.finding is None or decision.finding.code != "divergence", decision.reason
    # A training accuracy that fell back while its loss rose is still divergence (the optimiser
    # undoes what the model learned), as is one that only held its level.
    for accuracy in (
        [*history["accuracy"][:4], *np.linspace(0.77, 0.70, 8)],
        [*history["accuracy"][:4], *[0.78] * 8],
    ):
        diagnosis = diagnose(_curve(metrics | {"accuracy": np.asarray(accuracy)}, 40, num_classes=5))
        assert diagnosis.has("divergence"), diagnosis.codes


def test_a_slow_start_whose_loss_falls_faster_and_faster_is_too_slow_not_dead() -> None:
    # A real embedding model with SGD at 0.05 (tests/fixtures/probes/README.md): at chance for 28 of
    # 40 epochs, with both losses at ln 2 but lower on every epoch, faster each time, and training
    # accuracy up from 0.50 to 0.575. It read "not learning".
    diagnosis = diagnose(_probe("synthetic-text-embedding-sgd-0.05.csv"), extrapolate=True)
    assert diagnosis.codes == ["too_slow"], diagnosis.codes
    assert "faster and faster" in diagnosis.findings[0].message
    # Its flat start is no limit to extrapolate (a family fitted to it said 0.509).
    assert diagnosis.extrapolation is None


def test_a_rate_far_too_low_is_too_slow_though_accuracy_sits_on_two_values() -> None:
    # A real blobs run at SGD 1e-6 (tests/fixtures/probes/README.md): val_accuracy on 203 and 204 of
    # 500 all run, so the set's size is not read from three values; both losses fall steadily from
    # 3.0. A gap growing by 0.004 was read as widening (a stall reason) and hid the too_slow.
    diagnosis = diagnose(_probe("blobs-sgd-1e-6.csv"))
    assert diagnosis.verdict == "too_slow", diagnosis.codes
    assert not diagnosis.has("plateau"), [f.message for f in diagnosis.findings]


def test_a_network_that_died_late_in_the_run_is_not_learning() -> None:
    # A real run with a ReLU output layer: 0.22 at epoch 1 falling to 0.12, then from epoch 14 of
    # 20 both losses at exactly ln 10 and val_accuracy frozen at 0.093: dead. It read "plateau" and
    # "underfitting": the not-learning rules ask for half the run, and the K read off the loss
    # for half the run too.
    t = np.arange(20)
    dead = t >= 13
    val_loss = np.where(dead, math.log(10), 2.10 + 0.01 * t)
    loss = np.where(dead, math.log(10) + 1e-7, 2.13 + 0.01 * t)
    metrics = {
        "accuracy": np.where(dead, 0.09333, 0.19 - 0.005 * t),
        "loss": loss,
        "val_accuracy": _grid(np.where(dead, 0.093, 0.22 - 0.008 * t), 1000),
        "val_loss": val_loss,
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.onset_epoch == 14 and "died at epoch 14" in finding.message and "ln 10" in finding.message
    # A sound model whose weights stopped (a learning rate decayed to 0) is not dead: its loss is
    # no ln K.
    metrics = {
        "accuracy": np.where(dead, 0.91, 0.6 + 0.02 * t),
        "loss": np.where(dead, 0.30, 1.2 - 0.05 * t),
        "val_accuracy": _grid(np.where(dead, 0.90, 0.6 + 0.02 * t), 1000),
        "val_loss": np.where(dead, 0.32, 1.2 - 0.05 * t),
    }
    assert not diagnose(_curve(metrics)).has("not_learning")


def test_a_dead_network_whose_outputs_are_not_uniform_names_no_class_count_off_its_val_loss() -> None:
    # A real run (Adam at 1.0): dead from epoch 7, val_loss 2.484 (= ln 12) but training loss 2.382:
    # uniform outputs would score ln K on both. It was told "outputs uniform over 12 classes" on a
    # 10-class task.
    t = np.arange(20)
    metrics = {
        "accuracy": np.where(t < 6, 0.16, 0.09417),
        "loss": np.where(t < 6, 2.3, 2.382),
        "val_accuracy": _grid(np.where(t < 6, 0.15 + 0.005 * np.sin(t), 0.104), 1000),
        "val_loss": np.where(t < 6, 2.3, 2.4843),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.has("not_learning"), diagnosis.codes
    assert "12 classes" not in " ".join(f.message for f in diagnosis.findings), diagnosis.findings


def test_a_diverged_or_dead_run_has_no_flat_tail_or_forecast_to_draw() -> None:
    # The report of a real diverged run shaded "flat since epoch 1" across the crash and drew an
    # extrapolation to 0.587 for a network whose weights were NaN.
    t = np.arange(30)
    diverged = {
        "loss": np.where(t < 20, 0.5 - 0.01 * t, np.nan),
        "val_loss": np.where(t < 20, 0.6 - 0.01 * t, np.nan),
        "val_accuracy": np.where(t < 20, 0.8 + 0.003 * np.sin(t), 0.1),
    }
    noise = np.random.default_rng(0).normal(0, 0.003, 30)
    sound = {"loss": 0.5 * np.exp(-t / 3) + 0.1, "val_accuracy": 0.9 - 0.3 * np.exp(-t / 3) + noise}
    for metrics, broken in ((diverged, True), (sound, False)):
        diagnosis = diagnose(_curve(metrics), extrapolate=True)
        assert (diagnosis.extrapolation is None) is broken, diagnosis.codes
        assert (diagnosis.plateau_onset_epoch is None) is broken, diagnosis.codes


def test_overfitting_says_when_val_accuracy_still_rose_after_the_val_loss_minimum() -> None:
    # val_loss bottoms out at epoch 7 and climbs, while val_accuracy goes on from 0.80 to 0.89 (seen
    # on real probe runs: a bag-of-words model, small CNNs). "best epoch 7" alone, with
    # EarlyStopping(restore_best_weights=True) on its default val_loss, keeps the less accurate
    # epoch.
    rng = np.random.default_rng(0)
    t = np.arange(30)
    metrics = {
        "accuracy": 0.75 + 0.25 * (1 - np.exp(-t / 6)),
        "loss": 0.6 * np.exp(-t / 5) + 0.01,
        "val_accuracy": _grid(0.70 + 0.2 * (1 - np.exp(-t / 10)) + rng.normal(0, 0.004, 30), 2000),
        "val_loss": 0.55
        - 0.25 * (1 - np.exp(-t / 3))
        + 0.012 * np.clip(t - 6, 0, None)
        + rng.normal(0, 0.005, 30),
    }
    finding = next(f for f in diagnose(_curve(metrics)).findings if f.code == "overfitting")
    assert finding.onset_epoch == 7 and "val_accuracy still rose after it" in finding.message, finding.message
    assert finding.evidence["val_accuracy_peak"] - finding.evidence["val_accuracy_at_best"] > 0.05
    assert any("monitor='val_accuracy'" in r for r in finding.remedies)
    assert not any("EarlyStopping(restore_best_weights=True)" in r for r in finding.remedies), (
        finding.remedies
    )
    # Accuracy that peaked with the val_loss minimum: no such note, the usual remedies.
    metrics["val_accuracy"] = _grid(np.where(t < 7, 0.70 + 0.03 * t, 0.91 - 0.004 * (t - 6)), 2000)
    finding = next(f for f in diagnose(_curve(metrics)).findings if f.code == "overfitting")
    assert "still rose" not in finding.message and "val_accuracy_peak" not in finding.evidence
    assert any("EarlyStopping(restore_best_weights=True)" in r for r in finding.remedies)


def test_a_blow_up_then_a_late_death_is_divergence_from_the_file_alone() -> None:
    # A real 100-class run at Adam 3.0: loss 809 at epoch 1, then 5-6.5 for 15 epochs, then fixed at
    # 5.048 (weights still) with val_accuracy 0.021, down from 0.421. It read "plateau" +
    # "underfitting": rule 3 asked the whole rest of the run to be fixed.
    t = np.arange(25)
    wander = 5.7 + 0.7 * np.sin(t)
    loss = np.where(t == 0, 809.2, np.where(t < 15, wander, 5.048))
    val_acc = np.where(t == 0, 0.421, np.where(t < 15, 0.03 + 0.01 * np.sin(t), 0.021))
    metrics = {"loss": loss, "accuracy": np.where(t == 0, 0.42, 0.02), "val_accuracy": _grid(val_acc, 4000)}
    metrics["val_loss"] = np.where(t == 0, 715.9, 5.915)
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "divergence" and diagnosis.findings[0].evidence.get("died"), diagnosis.codes
    # A blow-up that recovered into a sound model whose weights then stopped (a learning rate decayed
    # to 0) is no death: its accuracy ends at its best.
    metrics["val_accuracy"] = _grid(np.where(t == 0, 0.421, np.minimum(0.5 + 0.03 * t, 0.9)), 4000)
    metrics["accuracy"] = np.where(t == 0, 0.42, np.minimum(0.5 + 0.03 * t, 0.92))
    metrics["loss"] = np.where(t == 0, 809.2, np.where(t < 15, 1.5 - 0.08 * t, 0.3))
    metrics["val_loss"] = np.where(t == 0, 715.9, np.where(t < 15, 1.5 - 0.08 * t, 0.32))
    diagnosis = diagnose(_curve(metrics))
    assert not any(f.evidence.get("died") for f in diagnosis.findings), diagnosis.codes


def test_predictions_frozen_while_the_loss_still_falls_is_too_slow() -> None:
    # A real imbalanced binary run (2% positives, SGD 1e-3, 16,000 training examples): from epoch 17
    # both accuracies repeat the majority share exactly while val_loss falls from 0.21 to 0.13. It
    # read as a healthy convergence; with Adam the same task went on to 0.983.
    t = np.arange(40)
    frozen = t >= 16
    metrics = {
        "accuracy": _grid(np.where(frozen, 0.9784, 0.48 + 0.031 * t), 16000),
        "loss": 0.12 + 0.67 * np.exp(-t / 14),
        "val_accuracy": _grid(np.where(frozen, 0.9787, 0.55 + 0.027 * t), 4000),
        "val_loss": 0.12 + 0.6 * np.exp(-t / 14),
    }
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict == "too_slow", diagnosis.codes
    finding = diagnosis.findings[0]
    assert "frozen at 0.979" in finding.message and finding.evidence["frozen_epochs"] >= 20, finding.message
    assert any("learning rate" in r for r in finding.remedies)
    # The same curves with a training set fitted to 1.000: a converged model, not frozen predictions.
    metrics["accuracy"] = _grid(np.where(frozen, 1.0, 0.48 + 0.031 * t), 16000)
    assert not diagnose(_curve(metrics)).has("too_slow")


def test_a_network_that_never_left_its_initialisation_is_not_learning() -> None:
    # A real imbalanced binary run at SGD 1e-5 with class weights (tests/fixtures/probes/README.md):
    # val_accuracy flickers between 0.253 and 0.256 on 4,000 examples (not frozen to the example)
    # while the training loss goes from 0.768 to 0.764 in 30 epochs. It read "plateau".
    diagnosis = diagnose(_probe("imbalanced-class-weight-sgd-1e-5.csv"))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.evidence["still_from_start"] is True
    assert "has not moved from its initialisation" in finding.message
    assert (
        "raise the learning rate or restart the schedule (warm restarts), then a wider or deeper model"
        in (finding.remedies)
    )


def test_a_log_that_starts_converged_is_not_a_network_still_at_its_initialisation() -> None:
    # A second fit() on a converged model, logged to a new file from epoch 0: its loss no longer
    # falls and its accuracy flickers within a sampling SD, but its loss (0.47) is below what
    # near-uniform outputs score (ln 2): it learned before the log began.
    rng = np.random.default_rng(0)
    t = np.arange(30)
    metrics = {
        "accuracy": 0.79 + 0.002 * rng.standard_normal(30),
        "loss": 0.470 - 0.0001 * t,
        "val_accuracy": _grid(0.78 + 0.004 * rng.standard_normal(30), 500),
        "val_loss": 0.475 + 0.001 * rng.standard_normal(30),
    }
    diagnosis = diagnose(_curve(metrics))
    assert not diagnosis.has("not_learning"), [f.message for f in diagnosis.findings]


def test_adam_bouncing_a_memorised_loss_off_zero_is_not_divergence() -> None:
    # A real CNN memorising 1,000 images (tests/fixtures/probes/README.md): its training loss fell
    # from 0.526 to 0.017, then Adam bounced it to 0.053, three times the minimum but a fraction of
    # what was learned. It read "divergence: loss blew up", which hid the overfitting.
    diagnosis = diagnose(_probe("fmnist-tshirt-shirt-cnn-adam-1000.csv"))
    assert not diagnosis.has("divergence"), [f.message for f in diagnosis.findings]
    assert diagnosis.verdict == "overfitting", diagnosis.codes
    # The same bounce, carried up to a real share of the fall (a quarter of it), is a blow-up.
    curve = _probe("fmnist-tshirt-shirt-cnn-adam-1000.csv")
    loss = np.asarray(curve.metrics["loss"], dtype=np.float64).copy()
    loss[-3:] = 0.017 + 0.25 * (0.526 - 0.017)
    assert diagnose(Curve(curve.run, dict(curve.metrics, loss=loss), curve.epochs)).has("divergence")


def test_an_accuracy_only_log_is_never_read_as_a_network_still_at_its_initialisation() -> None:
    # No loss column: nothing says the network never learned, however flat its accuracy.
    rng = np.random.default_rng(1)
    metrics = {
        "accuracy": 0.26 + 0.001 * rng.standard_normal(30),
        "val_accuracy": _grid(0.255 + 0.001 * rng.standard_normal(30), 4000),
    }
    diagnosis = diagnose(_curve(metrics))
    assert not any(f.evidence.get("still_from_start") for f in diagnosis.findings), diagnosis.codes


def test_a_loss_stuck_at_an_astronomical_value_is_diagnosed_without_overflow() -> None:
    # A network whose loss blew up to 1e12 and stays there, its weights still: the dead-network
    # rule read K = exp(loss) and raised OverflowError instead of a diagnosis.
    metrics = {"loss": np.full(100, 1e12), "val_loss": np.full(100, 1e12), "val_accuracy": np.zeros(100)}
    diagnosis = diagnose(_curve(metrics))
    assert diagnosis.verdict in ("divergence", "not_learning"), diagnosis.codes


def test_a_class_weighted_run_learning_below_the_majority_share_is_not_dead() -> None:
    # A real class-weighted run on 5% positives (tests/fixtures/probes/README.md): val_accuracy
    # climbs from 0.664 to 0.890, below the majority share, and val_loss stays above the prior's
    # entropy, as a network learning only the prior does; but its training loss ends at 0.121,
    # below anything predicting the prior scores (0.199). Given the prior it read "not learning".
    curve = dataclasses.replace(_probe("imbalanced-class-weight-adam.csv"), class_prior=(0.95, 0.05))
    diagnosis = diagnose(curve)
    assert not diagnosis.has("not_learning"), [f.message for f in diagnosis.findings]
    # The same weights at SGD 1e-5 never learn: still not learning with the prior.
    still = dataclasses.replace(_probe("imbalanced-class-weight-sgd-1e-5.csv"), class_prior=(0.95, 0.05))
    assert diagnose(still).verdict == "not_learning"


@pytest.mark.parametrize(
    ("name", "evidence_only"),
    [
        ("fmnist-cnn-val-unscaled-jax-gpu.csv", True),
        ("fmnist-cnn-sorted-validation-split-jax-gpu.csv", False),
    ],
)
def test_a_validation_loss_never_near_the_first_epochs_training_loss_is_a_split_mismatch(
    name: str, evidence_only: bool
) -> None:
    # Real runs (tests/fixtures/probes/README.md). Validation images left in 0-255: the accuracy
    # agrees with training's (no accuracy gap), the loss is 4.3 x the first epoch's training loss at
    # its lowest; it read "plateau". Validation of a class never trained on, accuracy 0.0 on every
    # epoch (no grid gives the set's size): it read "divergence".
    curve = _probe(name)
    diagnosis = diagnose(curve)
    assert diagnosis.verdict == "split_mismatch", diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.severity == "critical" and "first epoch" in finding.message, finding
    assert finding.evidence["above_first_epoch_training_loss"] == pytest.approx(curve.metrics["loss"][0])
    assert ("gap_start" not in finding.evidence) is evidence_only, finding.evidence
    assert not diagnosis.has("divergence") and not diagnosis.has("plateau"), diagnosis.codes
    assert any("preprocessing" in r for r in finding.remedies)


def test_a_first_epoch_loss_not_fallen_from_or_a_resumed_log_gives_no_loss_evidence() -> None:
    # A validation loss twice the first epoch's training loss says nothing when the training loss
    # did not fall to half of it (no sound fit to compare with), or when the log starts later.
    t = np.arange(20)
    metrics = {
        "accuracy": 0.80 + 0.005 * t,
        "loss": 0.55 - 0.005 * t,
        "val_accuracy": _grid(0.82 + 0.004 * np.sin(t), 10000),
        "val_loss": 2.4 + 0.2 * np.sin(t),
    }
    assert not diagnose(_curve(metrics)).has("split_mismatch")
    # A sound fit: the training loss halves, and stays above what its accuracy's errors cost.
    metrics["loss"], metrics["accuracy"] = 0.55 * np.exp(-t / 8), 1.0 - 0.2 * np.exp(-t / 8)
    assert diagnose(_curve(metrics)).verdict == "split_mismatch"
    resumed = Curve("run", metrics, np.arange(11, 31), None)
    assert not diagnose(resumed).has("split_mismatch")


def test_weights_left_still_by_a_decayed_rate_for_much_of_the_run_are_a_stall_not_a_convergence() -> None:
    # A real run (tests/fixtures/probes/README.md): an exponential decay halving the rate every
    # epoch froze a CNN at 0.850 (training accuracy 0.862) from epoch 6 of 40, its training loss
    # repeating itself to five digits. It read "healthy: converged".
    name = "fmnist-cnn-exponential-decay-too-fast-jax-gpu.csv"
    curve = _probe(name)
    diagnosis = diagnose(curve)
    assert diagnosis.verdict == "plateau", diagnosis.codes
    finding = diagnosis.findings[0]
    assert "weights_still" in finding.evidence["stall_reasons"], finding.evidence
    assert "the weights no longer change" in finding.message, finding.message
    assert any("schedule" in r for r in finding.remedies), finding.remedies
    # ReduceLROnPlateau cuts the rate because the run stopped improving: a real MLP that converged
    # at 0.867 and then stood still for 21 of 60 epochs is a convergence.
    name = "fmnist-mlp-reduce-lr-on-plateau-converged.csv"
    rlrop = _probe(name)
    assert diagnose(rlrop).verdict == "healthy", diagnose(rlrop).codes
    # A schedule that settles only the last epochs (the same loss still for 5 of 40) stays a
    # convergence: the weights moved for most of the run.
    loss = np.concatenate([0.9 * np.exp(-np.arange(35) / 4) + 0.39, np.full(5, 0.39)])
    metrics = {
        "accuracy": 0.86 - 0.3 * np.exp(-np.arange(40) / 4),
        "loss": loss,
        "val_accuracy": _grid(0.85 - 0.3 * np.exp(-np.arange(40) / 3), 10000),
        "val_loss": loss + 0.03,
    }
    assert diagnose(_curve(metrics)).verdict == "healthy", diagnose(_curve(metrics)).codes


def test_a_short_flat_end_that_the_climb_into_it_predicts_is_still_improving_not_a_plateau() -> None:
    # A real run (tests/fixtures/probes/README.md): Adam 1e-5 still climbing 0.001 an epoch on
    # 10,000 validation examples; its last 3 epochs sat within noise and it read "plateau ... 3
    # epochs on the plateau" with underfitting.
    name = "fmnist-cnn-adam-1e-5-batch-512-jax-gpu.csv"
    diagnosis = diagnose(_probe(name))
    assert diagnosis.verdict == "healthy", diagnosis.codes
    assert "still improving" in diagnosis.findings[0].message, diagnosis.findings[0].message
    assert diagnosis.plateau_onset_epoch is None
    # The same climb stopping dead 4 epochs before the end, 0.01 below its line: a plateau.
    t = np.arange(1, 41)
    climb = 0.6 + 0.005 * t
    stopped = np.where(t <= 36, climb, climb[35] - 0.01)
    metrics = {
        "accuracy": stopped - 0.01,
        "loss": 1.2 - stopped,
        "val_accuracy": _grid(stopped, 10000),
        "val_loss": 1.25 - stopped,
    }
    assert diagnose(_curve(metrics)).plateau_onset_epoch is not None


def test_val_loss_steps_of_two_percent_of_its_level_are_no_oscillation() -> None:
    # A real run (tests/fixtures/probes/README.md): SGD with Nesterov momentum, val_loss near 0.32
    # moving 0.007 an epoch (2.2% of itself, changing direction on 60% of the epochs) after its
    # first fall: large against a flat trend, but no optimiser overshooting. It read "oscillation".
    name = "fmnist-cnn-dropout-sgd-nesterov-jax-gpu.csv"
    curve = _probe(name)
    assert not diagnose(curve).has("oscillation"), diagnose(curve).codes
    assert diagnose(curve, val_swing_step=0.0).has("oscillation")  # the level floor alone decides


def test_a_slow_start_after_sixty_epochs_at_ln_k_is_too_slow_without_a_class_count() -> None:
    # A real run (tests/fixtures/probes/README.md): 5 sigmoid layers at SGD 0.01 sit at ln 10 for 60
    # epochs, then start learning. The class count is read off the first half's loss at ln K; the
    # training loss, falling on every epoch, stands in for a val_loss that jitters by 1e-4.
    from pipelines.curves.detectors import uniform_output_classes

    name = "fmnist-mlp-5-sigmoid-sgd-slow-start-jax-gpu.csv"
    curve = _probe(name)
    assert curve.num_classes is None and uniform_output_classes(curve) == 10
    diagnosis = diagnose(curve)
    assert diagnosis.verdict == "too_slow", diagnosis.codes
    finding = diagnosis.findings[0]
    assert finding.evidence["slow_start"] and "starting point" in finding.message, finding
    assert not diagnosis.has("plateau") and not diagnosis.has("not_learning"), diagnosis.codes
    # The same first half followed by a training loss that speeds up while val_loss stays at
    # ln 10 (memorising): the training loss does not stand in, and the run is no slow start.
    memorising = dataclasses.replace(
        curve, metrics={**curve.metrics, "val_loss": np.full(curve.epochs.size, math.log(10))}
    )
    assert not any(f.evidence.get("slow_start") for f in diagnose(memorising).findings)


def test_a_second_fit_logged_to_a_new_file_is_no_fresh_start_for_the_split_tests() -> None:
    # A real run (tests/fixtures/probes/README.md): fit called again at a tenth of the rate with a
    # new CSVLogger. Its first row is epoch 1 of a model that already knows its training set, so
    # neither the first-epoch accuracy nor the first-epoch loss estimates unseen data: the 0.12
    # gap is the overfitting it carries over, not a validation set drawn otherwise.
    from pipelines.curves.detectors import _fresh_start

    name = "fmnist-mlp-second-fit-new-log.csv"
    curve = _probe(name)
    assert not _fresh_start(curve)
    diagnosis = diagnose(curve)
    assert not diagnosis.has("split_mismatch") and diagnosis.verdict == "overfitting", diagnosis.codes
    # A fast learner's fresh start: 0.96 after one epoch, but its loss still falls 10 x after it.
    t = np.arange(20)
    fast = {"accuracy": np.minimum(0.963 + 0.002 * t, 1.0), "loss": 0.45 * np.exp(-2.3 * t) + 1e-4}
    assert _fresh_start(_curve(fast))


def test_a_weighted_training_loss_is_not_compared_with_the_validation_loss() -> None:
    # A real run (tests/fixtures/probes/README.md): the majority class weighted 1/9 scales the
    # training loss down (0.052 at a training accuracy of 0.887, below the 0.078 any unweighted
    # cross-entropy costs there); the unweighted val_loss sits 2 x above it. It read as a critical
    # split mismatch. The same run with the minority weighted up (mean weight above 1) never did.
    from pipelines.curves.detectors import _unweighted_loss

    name = "fmnist-binary-majority-weighted-down.csv"
    curve = _probe(name)
    assert not _unweighted_loss(curve)
    assert not diagnose(curve).has("split_mismatch"), diagnose(curve).codes
    unscaled = "fmnist-cnn-val-unscaled-jax-gpu.csv"
    assert _unweighted_loss(_probe(unscaled))


def test_live_stop_waits_while_a_schedule_raises_the_rate_to_new_highs() -> None:
    # Real runs (tests/fixtures/probes/README.md). A one-cycle rate held val_accuracy down on its
    # way up to the peak, by design, and the run reached its best at epoch 29 of 30: a stop at the
    # peak (epoch 13, before the wait) lost 4 points. A triangular cyclical rate that returns to
    # the same peak every 8 epochs is no warm-up: that run never beats its epoch-10 best and must
    # still be stopped.
    def first_stop(name: str, budget: int) -> tuple[int | None, float]:
        curve = _probe(name)
        history = {k: v.tolist() for k, v in curve.metrics.items()}
        va = curve.metrics["val_accuracy"]
        for epoch in range(1, va.size + 1):
            if should_stop({k: v[:epoch] for k, v in history.items()}, budget, num_classes=10).stop:
                return epoch, float(va.max() - va[:epoch].max())
        return None, 0.0

    stop, regret = first_stop("fmnist-mlp-sgd-one-cycle.csv", 30)
    assert regret <= 0.005, (stop, regret)
    stop, regret = first_stop("fmnist-mlp-sgd-triangular-cyclic.csv", 40)
    assert stop is not None and stop < 40 and regret == 0.0, (stop, regret)


def test_lr_new_high_within_tells_a_warm_up_from_a_cycle() -> None:
    from pipelines.curves.detectors import lr_new_high_within

    warm_up = [1e-4, 2e-4, 4e-4, 8e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]
    assert lr_new_high_within({"learning_rate": warm_up[:5]}, 3)
    assert not lr_new_high_within({"learning_rate": warm_up}, 3)  # constant since epoch 5
    assert lr_new_high_within({"learning_rate": warm_up}, 5)
    triangle = [0.01, 0.1, 0.2, 0.1, 0.01, 0.1, 0.2, 0.1, 0.01]
    assert lr_new_high_within({"learning_rate": triangle[:3]}, 1)
    assert not lr_new_high_within({"learning_rate": triangle}, 6)  # back to the same peak
    decay = [1e-3, 5e-4, 2.5e-4, 1.25e-4]
    assert not lr_new_high_within({"learning_rate": decay}, 3)
    # float32 round-off of a constant rate is no rise; NaN epochs (validation_freq) are skipped
    assert not lr_new_high_within({"learning_rate": [1e-3, 1e-3 * (1 + 1e-7), 1e-3]}, 2)
    assert lr_new_high_within({"learning_rate": [1e-3, math.nan, 2e-3]}, 1)
    assert not lr_new_high_within({"loss": [1.0, 0.5]}, 2)
    assert not lr_new_high_within({"learning_rate": [1e-3]}, 2)


def test_an_output_activation_applied_twice_is_named_beside_the_plateau() -> None:
    # A real run (tests/fixtures/probes/README.md): from_logits=True on a softmax output. The loss
    # cannot go below ln(e + 9) - 1 = 1.461 with 10 classes; it sat at 1.514 with training accuracy
    # at 0.948, where a calibrated model scores 0.32. The stall it causes is still reported.
    import dataclasses

    from pipelines.curves.detectors import (
        calibrated_cross_entropy,
        double_sigmoid_floor,
        double_softmax_floor,
    )

    curve = _probe("fmnist-cnn-softmax-from-logits-jax-gpu.csv")
    diagnosis = diagnose(dataclasses.replace(curve, num_classes=10))
    assert diagnosis.has("from_logits_mismatch") and diagnosis.verdict == "plateau", diagnosis.codes
    found = next(f for f in diagnosis.findings if str(f.code) == "from_logits_mismatch")
    assert "ln(e + 9) - 1 = 1.461" in found.message and found.severity == "warning"
    # From the first epoch on: a fixed onset, so the live callback logs it once, not every epoch.
    assert found.onset_epoch == 1
    # Without the class count there is no floor to hold the loss against.
    assert not diagnose(curve).has("from_logits_mismatch")
    # A slower run (an MLP with SGD) that reached only 0.848: its loss, 1.618, sits as far above the
    # floor as its errors put it, and twice what a calibrated model scores there.
    slow = _probe("fmnist-mlp-sgd-softmax-from-logits.csv")
    assert diagnose(dataclasses.replace(slow, num_classes=10)).has("from_logits_mismatch")
    # A sigmoid read as a logit by BinaryCrossentropy(from_logits=True), on a balanced binary task
    # (the class prior gives the floor: 0.5 x 0.313 + 0.5 x ln 2 = 0.503); not a sound binary run.
    binary = _probe("fmnist-binary-sigmoid-from-logits.csv")
    assert diagnose(dataclasses.replace(binary, class_prior=(0.5, 0.5))).has("from_logits_mismatch")
    assert not diagnose(dataclasses.replace(binary, num_classes=2)).has("from_logits_mismatch")
    sound = _probe("fmnist-binary-tshirt-shirt-sound.csv")
    assert not diagnose(dataclasses.replace(sound, class_prior=(0.5, 0.5))).has("from_logits_mismatch")
    # The floor: softmax of a one-hot probability vector, as Keras' loss computes it.
    for k in (3, 10, 100):
        p = np.eye(k)[0]
        assert double_softmax_floor(k) == pytest.approx(-np.log(np.exp(p[0]) / np.exp(p).sum()))
    assert double_sigmoid_floor(0.5)[0] == pytest.approx(
        0.5 * -np.log(1 / (1 + np.exp(-1.0))) + 0.5 * -np.log(1 - 1 / (1 + np.exp(-0.0)))
    )
    assert calibrated_cross_entropy(1.0, 10) == 0.0
    assert calibrated_cross_entropy(0.1, 10) == pytest.approx(math.log(10))


def test_a_sound_run_at_the_floors_level_is_no_from_logits_mismatch() -> None:
    # Three classes at 0.85 training accuracy: a calibrated model's loss there (0.53) is the floor's
    # level (0.552), so a loss near the floor proves nothing; at 0.97 it would (0.15 typical).
    t = np.arange(30)
    accuracy = 0.85 - 0.5 * np.exp(-0.3 * t)
    metrics = {
        "accuracy": _grid(accuracy, 3000),
        "loss": 0.56 + 0.5 * np.exp(-0.3 * t),
        "val_accuracy": _grid(accuracy - 0.01, 600),
        "val_loss": 0.58 + 0.5 * np.exp(-0.3 * t),
    }
    assert not diagnose(_curve(metrics, num_classes=3)).has("from_logits_mismatch")
    metrics["accuracy"] = _grid(0.97 - 0.6 * np.exp(-0.3 * t), 3000)
    assert diagnose(_curve(metrics, num_classes=3)).has("from_logits_mismatch")
    # Two classes: the floor (0.313) is where sound binary runs sit; never judged.
    assert not diagnose(_curve(metrics, num_classes=2)).has("from_logits_mismatch")


def test_oscillation_under_a_schedule_names_its_peak_rate() -> None:
    # A real one-cycle run (tests/fixtures/probes/README.md): val_loss swings hardest while the rate
    # is near its 0.2 peak. "Lower the learning rate" alone misreads a schedule; its peak is the fix.
    from pathlib import Path

    from pipelines.curves.io import load_curve

    swings = next(
        f for f in diagnose(_probe("fmnist-mlp-sgd-one-cycle.csv")).findings if str(f.code) == "oscillation"
    )
    assert "the schedule's highest learning rates" in swings.message, swings.message
    assert swings.evidence["swing_learning_rate"] >= 1.5 * swings.evidence["calm_learning_rate"]
    # A constant rate (a corpus run, Adam at 0.05): no schedule to name.
    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "synth-tabular-oscillate-s0.csv"
    constant = next(f for f in diagnose(load_curve(csv)).findings if str(f.code) == "oscillation")
    assert "schedule" not in constant.message and "swing_learning_rate" not in constant.evidence


def test_a_not_learning_loss_at_keras_probability_clip_says_so() -> None:
    # A real run (tests/fixtures/probes/README.md): a linear Dense(10) output read as probabilities
    # by the default from_logits=False. Both losses sit at 8.064 = 0.5 x -ln(1e-7), what Keras'
    # cross-entropy charges a probability at its clip: outputs that are not probabilities come first.
    import dataclasses

    curve = dataclasses.replace(
        _probe("fmnist-cnn-linear-output-probability-loss-jax-gpu.csv"), num_classes=10
    )
    found = next(f for f in diagnose(curve).findings if str(f.code) == "not_learning")
    assert "0.500 x -ln(1e-7) = 16.118" in found.message and "about 50% of the examples" in found.message
    assert found.causes[0].startswith("the loss reads outputs that are not probabilities")
    # A softmax saturated on one class: 90% of a balanced 10-class set at the clip, exactly the 90%
    # it gets wrong (real dead networks after a too-high rate sit at 14.506, their first epoch a
    # little lower: it holds the steps before the blow-up).
    t = np.arange(20)
    dead = {
        "accuracy": np.full(t.size, 0.1),
        "loss": np.concatenate([[14.48], np.full(t.size - 1, 14.506)]),
        "val_accuracy": np.full(t.size, 0.1),
        "val_loss": np.full(t.size, 14.506),
    }
    saturated = next(
        f for f in diagnose(_curve(dead, num_classes=10)).findings if str(f.code) == "not_learning"
    )
    assert "saturated on the classes it predicts" in saturated.message
    # The NOT_PROBABILITIES group comes last: its two causes.
    assert saturated.causes[-2].startswith("the loss reads outputs that are not probabilities")
    assert "unscaled inputs" in saturated.causes[-1]
    # A dead network at ln 10 (uniform outputs): nothing at the clip.
    dead.update(loss=np.full(t.size, math.log(10)), val_loss=np.full(t.size, math.log(10)))
    uniform = next(
        f for f in diagnose(_curve(dead, num_classes=10)).findings if str(f.code) == "not_learning"
    )
    assert "-ln(1e-7)" not in uniform.message and "clipped_share" not in uniform.evidence


def test_a_stall_read_as_underfit_gives_capacity_causes_not_memorising() -> None:
    # A real run (tests/fixtures/probes/README.md): plain SGD at 1e-3 on T-shirt against shirt, both
    # accuracies crawling up together (0.828 / 0.818). The plateau's first cause said the model
    # memorises its training set, beside the underfitting finding's "training accuracy is as low
    # as validation": one report contradicting itself.
    diagnosis = diagnose(_probe("fmnist-tshirt-shirt-cnn-sgd-1e-3-jax-gpu.csv"))
    assert diagnosis.codes[:2] == ["plateau", "underfitting"], diagnosis.codes
    plateau = diagnosis.findings[0]
    assert plateau.evidence["train_val_gap"] < 0.02
    assert not any("memorises" in cause for cause in plateau.causes), plateau.causes
    assert plateau.causes[0] == diagnosis.findings[1].causes[0]
    assert not any("augmentation" in r or "dropout" in r for r in plateau.remedies), plateau.remedies


def test_a_loss_that_never_moved_from_epoch_1_is_no_blow_up() -> None:
    # A real Dense(1, softmax) run (tests/fixtures/probes/README.md): the loss is 7.936 on every
    # epoch from the first, since the weights get no gradient. With two classes known it read as
    # "loss exploded to 7.936 at epoch 7 and the network died", and the live stop said so.
    curve = dataclasses.replace(_probe("fmnist-binary-dense1-softmax.csv"), num_classes=2)
    assert diagnose(curve).codes == ["not_learning"], diagnose(curve).codes
    decision = should_stop({k: list(v) for k, v in curve.metrics.items()}, 25, num_classes=2)
    assert decision.stop and str(decision.finding.code) == "not_learning", decision.reason
    # It says why, from the file alone too: every example it gets wrong sits at Keras' clip and the
    # loss never moved, so outputs that are not probabilities come first (a softmax over one unit).
    for run in (curve, _probe("fmnist-binary-dense1-softmax.csv")):
        found = diagnose(run).findings[0]
        assert "has not moved since the first epoch" in found.message, found.message
        assert found.causes[0].startswith("the loss reads outputs that are not probabilities")
        assert "softmax over a single unit" in found.causes[0]
    # Its first epoch alone has not shown that the loss does not move (a real linear-output run
    # under TensorFlow read so live at epoch 1).
    first = dataclasses.replace(
        curve, metrics={k: v[:1] for k, v in curve.metrics.items()}, epochs=curve.epochs[:1]
    )
    assert all("has not moved" not in f.message for f in diagnose(first).findings)
    # The same run with a first epoch that held the steps before a blow-up (its mean 0.2% lower)
    # died of it.
    loss = curve.metrics["loss"].copy()
    loss[0] *= 0.998
    blown = dataclasses.replace(curve, metrics={**curve.metrics, "loss": loss})
    assert diagnose(blown).verdict == "divergence", diagnose(blown).codes


@pytest.mark.parametrize(
    "name", ["fmnist-binary-dense1-linear-bce.csv", "fmnist-binary-sigmoid-unscaled-inputs.csv"]
)
def test_outputs_pinned_at_keras_clip_are_saturated_outputs(name: str) -> None:
    # Real runs (tests/fixtures/probes/README.md): a linear Dense(1) read by binary_crossentropy
    # (from_logits=False), and a sigmoid output on inputs in 0-255. Every epoch's training loss is
    # what Keras charges the misclassified examples at its clip, -ln(1e-7) each: both read as
    # oscillation alone, with "lower the learning rate".
    diagnosis = diagnose(dataclasses.replace(_probe(name), num_classes=2))
    assert diagnosis.verdict == "saturated_outputs", diagnosis.codes
    found = diagnosis.findings[0]
    assert 0.85 <= found.evidence["clip_charge_min"] <= found.evidence["clip_charge_max"] <= 1.15
    assert "from_logits=False" in found.causes[0] and "unscaled" in found.causes[1]
    assert "the outputs sit at 0 or 1" in found.message and "so does val_loss" in found.message
    # Under TensorFlow a linear output's first epoch charged 0.848 (its early steps inside (0, 1)).
    curve = dataclasses.replace(_probe(name), num_classes=2)
    loss = curve.metrics["loss"].copy()
    loss[0] *= 0.848 / found.evidence["clip_charge_first"]
    assert diagnose(dataclasses.replace(curve, metrics={**curve.metrics, "loss": loss})).has(
        "saturated_outputs"
    )
    # Sound sigmoid and softmax runs charge a fraction of that, from their first epoch.
    for sound in ("fmnist-binary-tshirt-shirt-sound.csv", "fmnist-cnn-sgd-1e-3-jax-gpu.csv"):
        assert not diagnose(_probe(sound)).has("saturated_outputs")


def test_a_network_dead_after_its_first_epoch_is_not_learning_from_the_file_alone() -> None:
    # A real CNN on unscaled inputs (tests/fixtures/probes/README.md): training accuracy 0.509 in
    # its first epoch, then 0.503 on every epoch, validation frozen at 0.479, the loss at Keras'
    # clip. The first epoch counted as training accuracy still moving: a plateau and underfitting.
    diagnosis = diagnose(_probe("fmnist-coat-shirt-cnn-unscaled-inputs.csv"))
    assert diagnosis.codes == ["not_learning"], diagnosis.codes
    assert "frozen at 0.479" in diagnosis.findings[0].message
    assert any("badly scaled inputs" in cause for cause in diagnosis.findings[0].causes)


def test_a_negative_loss_at_a_frozen_accuracy_is_labels_out_of_range() -> None:
    # A real run (tests/fixtures/probes/README.md): binary_crossentropy on class indices 0-9. Both
    # losses below 0 on every epoch, accuracy at 0.10: read as a plateau and underfitting.
    for curve in (
        _probe("fmnist-mlp-bce-on-class-indices.csv"),
        dataclasses.replace(_probe("fmnist-mlp-bce-on-class-indices.csv"), num_classes=10),
    ):
        diagnosis = diagnose(curve)
        assert diagnosis.codes == ["not_learning"], diagnosis.codes
        found = diagnosis.findings[0]
        assert "below 0 on every epoch" in found.message and "outside [0, 1]" in found.causes[0]
    # Labels -1 / +1 (a real run): the losses fall below -1, which no negated score in [0, 1] does,
    # while the accuracy creeps from 0.375 to 0.428; read as a plateau and underfitting.
    labels = diagnose(_probe("fmnist-binary-labels-minus-1-plus-1-bce.csv"))
    assert labels.verdict == "not_learning", labels.codes
    assert "reaches only 0.428" in labels.findings[0].message
    assert "-1 and +1" in labels.findings[0].causes[0]
    # A negative custom loss on a run that learns (a negated score) is not this.
    t = np.arange(1, 21, dtype=float)
    learning = {
        "accuracy": 0.5 + 0.4 * (1 - np.exp(-t / 5)),
        "loss": -(0.5 + 0.4 * (1 - np.exp(-t / 5))),
        "val_accuracy": 0.5 + 0.38 * (1 - np.exp(-t / 5)),
        "val_loss": -(0.5 + 0.38 * (1 - np.exp(-t / 5))),
    }
    assert not any("below 0 on every epoch" in f.message for f in diagnose(_curve(learning)).findings)


def test_a_class_count_read_off_the_accuracy_says_so() -> None:
    # A real run (tests/fixtures/probes/README.md): Adam(0.05) kills a 10-class MLP in its first
    # epoch; it then predicts 2 of the 10 classes, val_accuracy 0.194, and the file alone reads
    # 1 / 5 as chance. "A guess over 5 classes" was said as fact: the 5 came from the accuracy.
    diagnosis = diagnose(_probe("fmnist-mlp-adam-5e-2-dead.csv"))
    assert diagnosis.verdict == "not_learning"
    message = diagnosis.findings[0].message
    assert "no better than a guess over 5 classes" in message
    assert "or a network that predicts only 1 / 5 of the classes" in message
    assert "the class count is read off the accuracy" in message
    # With the class count known the 10 classes are said, and no inferred count.
    known = diagnose(dataclasses.replace(_probe("fmnist-mlp-adam-5e-2-dead.csv"), num_classes=10))
    assert known.verdict == "not_learning"
    assert "read off the accuracy" not in known.findings[0].message


def test_val_loss_that_rose_with_the_training_loss_is_not_overfitting() -> None:
    # A real run (tests/fixtures/probes/README.md): a tanh output read by binary_crossentropy.
    # The training loss jumped from 0.480 to 2.435 at epoch 4 and ended at 1.173, above its 0.552
    # at val_loss's minimum (epoch 2); val_loss rose with it. It read as overfitting "while loss
    # kept improving (1.069 -> 1.173)": the loss had not improved, and nothing was memorised.
    diagnosis = diagnose(_probe("fmnist-binary-tanh-output-bce.csv"))
    assert not diagnosis.has("overfitting"), [f.message for f in diagnosis.findings]
    assert diagnosis.verdict != "healthy"
    # Overfitting proper, the training loss still falling below its level at val_loss's minimum,
    # is still found.
    t = np.arange(1, 31, dtype=float)
    memorising = {
        "loss": 1.0 * np.exp(-t / 6) + 0.01,
        "accuracy": 1 - 0.5 * np.exp(-t / 6),
        "val_loss": 0.5 + 0.002 * (t - 8) ** 2,
        "val_accuracy": np.full(t.size, 0.8),
    }
    assert diagnose(_curve(memorising)).has("overfitting")


def test_saturated_outputs_from_oversized_initial_weights_name_the_initialiser() -> None:
    # A real run (tests/fixtures/probes/README.md): kernel_initializer=RandomNormal(stddev=3) on a
    # softmax MLP with scaled inputs and from_logits=False. Its loss sits at Keras' clip charge
    # (0.997-0.999 x) although neither the last layer nor the inputs are at fault: the causes named
    # only those two.
    diagnosis = diagnose(_probe("fmnist-mlp-init-normal-sd-3.csv"))
    assert diagnosis.verdict == "saturated_outputs", diagnosis.codes
    found = diagnosis.findings[0]
    assert any("kernel_initializer" in cause for cause in found.causes)
    assert any("default initialisers" in remedy for remedy in found.remedies)


def test_training_accuracy_held_below_validation_names_regularisation_and_shuffling() -> None:
    # Real runs (tests/fixtures/probes/README.md). Dropout 0.9: training accuracy 0.586 against
    # validation's 0.769; data sorted by label with fit(shuffle=False): 0.644 against 0.721. Both
    # read as plateau and underfitting with "too little capacity" as the only cause besides inputs.
    for name in ("fmnist-mlp-dropout-0.9-sgd.csv", "fmnist-mlp-sorted-by-label-shuffle-false-adam.csv"):
        diagnosis = diagnose(_probe(name))
        for code in ("plateau", "underfitting"):
            found = next(f for f in diagnosis.findings if f.code == code)
            assert "sits below validation's" in found.causes[0], (name, code, found.causes)
            assert any("not shuffled" in cause for cause in found.causes)
            assert any("model.evaluate(x_train, y_train)" in remedy for remedy in found.remedies)
    # Sorted data under SGD scores training accuracy far above validation's from epoch 1 (0.854
    # against 0.094): the split mismatch now names unshuffled batches beside a skewed split.
    sgd = diagnose(_probe("fmnist-mlp-sorted-by-label-shuffle-false-sgd.csv"))
    mismatch = next(f for f in sgd.findings if f.code == "split_mismatch")
    assert any("not shuffled" in cause for cause in mismatch.causes)
    # A run whose training accuracy sits within noise of validation's keeps capacity first.
    digits = diagnose(_probe("fmnist-mlp-sgd-20-steps-per-epoch.csv"))
    assert all("sits below validation's" not in f.causes[0] for f in digits.findings if f.causes)


def test_a_class_count_read_off_the_loss_says_so() -> None:
    # A real run (tests/fixtures/probes/README.md): SGD with clipnorm=1e-3 barely moves a 10-class
    # MLP. Seven epochs in, both losses sit near their random-initialisation level, 2.47 to 2.48,
    # which is ln 12: the live reading said "outputs uniform over 12 classes" as if that were known.
    curve = _probe("fmnist-mlp-sgd-clipnorm-1e-3.csv")
    first7 = dataclasses.replace(
        curve, metrics={k: v[:7] for k, v in curve.metrics.items()}, epochs=curve.epochs[:7]
    )
    found = next(f for f in diagnose(first7).findings if f.code == "not_learning")
    assert "outputs uniform over 12 classes; the class count is read off the loss" in found.message
    known = dataclasses.replace(first7, num_classes=10)
    assert all("read off" not in f.message for f in diagnose(known).findings)


def test_a_short_plateau_after_a_creep_within_the_noise_says_how_long_it_has_been_stuck() -> None:
    # A real run (tests/fixtures/probes/README.md): ReduceLROnPlateau(patience=1, factor=0.1) cut
    # SGD's rate within a few epochs; val_accuracy then crept from 0.792 to 0.803 over 36 epochs on
    # 2,000 examples (2 binomial SDs: 0.018). The creep is significant against its tiny scatter, so
    # the plateau dates from epoch 37: "3 epochs on the plateau", for a run stuck since epoch 4.
    diagnosis = diagnose(_probe("fmnist-mlp-sgd-rlrop-patience-1-factor-0.1.csv"))
    stall = next(f for f in diagnosis.findings if f.code == "plateau")
    assert "3 epochs on the plateau before the end" in stall.message
    assert "within its noise since epoch 4 (36 epochs" in stall.message
    assert stall.evidence["practically_flat_since"] == 4
    # A short plateau after a climb beyond the noise gets no such note (a corpus run of the tune
    # split: 5 epochs on the plateau, its climb before them beyond 2 binomial SDs).
    from pathlib import Path

    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "hi2-diabetes-third-budget-s1.csv"
    short = next(f for f in diagnose(load_csv_logger(csv)).findings if f.code == "plateau")
    assert "5 epochs on the plateau before the end" in short.message
    assert "within its noise since" not in short.message and "practically_flat_since" not in short.evidence


def test_a_sigmoid_dead_on_unscaled_features_names_the_scaling() -> None:
    # A real run (tests/fixtures/probes/README.md): breast cancer's raw features (up to about 4,000)
    # into Dense(32, relu) -> Dense(1, sigmoid). The output saturates at its first step: accuracy
    # frozen at the positive share, the loss at 0.364 x the clip charge, unmoved for 200 epochs.
    # The causes named a missing sigmoid or a one-unit softmax; the scaling came third, generically.
    diagnosis = diagnose(_probe("breast-cancer-unscaled-inputs-sigmoid.csv"))
    assert diagnosis.verdict == "not_learning", diagnosis.codes
    found = diagnosis.findings[0]
    assert "a sigmoid or softmax fed unscaled inputs saturates at its first step" in found.message
    assert "unscaled inputs (raw features" in found.causes[1]
    assert any("StandardScaler" in remedy for remedy in found.remedies)


def test_underfitting_read_off_the_fit_says_how_far_training_sits_above_validation() -> None:
    # A real CNN (tests/fixtures/probes/README.md): SGD 0.01 without momentum on 5,000 images,
    # validation swinging by 0.06. Training at 0.779 against validation's 0.672 sits within the
    # fit tolerance (3 noise SDs), and the message said "training no better than validation".
    diagnosis = diagnose(_probe("fmnist-cnn-sgd-0.01-no-momentum-5000.csv"))
    found = next(f for f in diagnosis.findings if f.code == "underfitting")
    assert "training only 0.107 above validation" in found.message
    assert "no better than validation" not in found.message
    # Training below validation keeps the old words (dropout 0.9: 0.586 against 0.769).
    dropout = diagnose(_probe("fmnist-mlp-dropout-0.9-sgd.csv"))
    below = next(f for f in dropout.findings if f.code == "underfitting")
    assert "training no better than validation" in below.message


def test_validation_only_swings_name_their_own_causes() -> None:
    # A real CNN (tests/fixtures/probes/README.md) trained under strong augmentation (rotation 0.3,
    # zoom 0.3, translation 0.2): the training loss falls smoothly, val_loss swings by 0.3-0.5.
    # The only cause given was a learning rate too high.
    diagnosis = diagnose(_probe("fmnist-cnn-heavy-augmentation-adam-5000.csv"))
    swings = next(f for f in diagnosis.findings if f.code == "oscillation")
    assert swings.message.startswith("val_loss swings")
    assert swings.causes[0].startswith("learning rate too high")
    assert "only the validation loss swings" in swings.causes[1]
    assert any("BatchNormalization" in remedy for remedy in swings.remedies)
    # A training loss that swings keeps the learning rate alone (the tanh-output run).
    both = diagnose(_probe("fmnist-binary-tanh-output-bce.csv"))
    training = next(f for f in both.findings if f.code == "oscillation")
    assert training.message.startswith("loss swings") and len(training.causes) == 1


def test_a_short_flat_stretch_of_a_run_still_improving_beyond_its_noise_is_no_stall() -> None:
    # A real run (tests/fixtures/probes/README.md): a head on a frozen pretrained base, then
    # fine-tuned at 1e-5. Over its last 20 of 60 epochs val_accuracy rose 0.773 -> 0.802 (beyond 2
    # binomial SDs on 974 examples) and val_loss fell on every epoch; the last 4 sat at 0.800.
    # It read as a plateau and underfitting.
    diagnosis = diagnose(_probe("fmnist-mlp-frozen-base-head-500-then-finetune-1e-5.csv"))
    assert diagnosis.verdict == "healthy", diagnosis.codes
    assert {"plateau", "underfitting"}.isdisjoint(diagnosis.codes)
    assert "still improving at epoch 60" in diagnosis.findings[0].message
    assert "train longer" in diagnosis.findings[0].message
    # The same run cut at epoch 56, before its last 4 flat epochs, is still improving too.
    from dataclasses import replace

    curve = _probe("fmnist-mlp-frozen-base-head-500-then-finetune-1e-5.csv")
    keep = curve.epochs <= 56
    cut = replace(curve, epochs=curve.epochs[keep], metrics={k: v[keep] for k, v in curve.metrics.items()})
    assert {"plateau", "underfitting"}.isdisjoint(diagnose(cut).codes)
