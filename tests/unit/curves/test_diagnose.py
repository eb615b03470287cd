"""diagnose(): every finding on synthetic curves over several noise seeds, and no false stalls."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from pipelines.curves.detectors import validation_frequency
from pipelines.curves.diagnose import NoValidationValue, diagnose, find_plateau
from pipelines.curves.io import load_curve
from pipelines.curves.types import Curve, Severity

SEEDS = range(20)


def _curve(
    *,
    val_accuracy: np.ndarray | None = None,
    accuracy: np.ndarray | None = None,
    val_loss: np.ndarray | None = None,
    loss: np.ndarray | None = None,
    budget: int | None = None,
    num_classes: int | None = 10,
    complete: bool = True,
    run: str = "run",
    **kw: object,
) -> Curve:
    metrics = {
        name: np.asarray(values, dtype=np.float64)
        for name, values in (
            ("val_accuracy", val_accuracy),
            ("accuracy", accuracy),
            ("val_loss", val_loss),
            ("loss", loss),
        )
        if values is not None
    }
    size = len(next(iter(metrics.values())))
    return Curve(
        run,
        metrics,
        np.arange(1, size + 1, dtype=np.int64),
        epoch_budget=budget if budget is not None else size,
        complete=complete,
        num_classes=num_classes,
        **kw,  # type: ignore[arg-type]
    )


def healthy(seed: int, epochs: int = 30, tau: float = 5.0, top: float = 0.91, noise: float = 0.003) -> Curve:
    """Saturating exponential approach to `top`, train a little above val, losses falling."""
    rng = np.random.default_rng(seed)
    t = np.arange(epochs)
    decay = np.exp(-t / tau)
    return _curve(
        val_accuracy=top - (top - 0.5) * decay + rng.normal(0, noise, epochs),
        accuracy=top + 0.03 - (top + 0.03 - 0.45) * decay + rng.normal(0, noise / 3, epochs),
        val_loss=0.25 + 0.9 * decay + rng.normal(0, 3 * noise, epochs),
        loss=0.18 + 1.0 * decay + rng.normal(0, noise, epochs),
    )


def power_law(seed: int, epochs: int = 30, alpha: float = 0.8, noise: float = 0.003) -> Curve:
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1, dtype=np.float64)
    return _curve(
        val_accuracy=0.93 - 0.5 * t**-alpha + rng.normal(0, noise, epochs),
        accuracy=0.97 - 0.5 * t**-alpha + rng.normal(0, noise / 3, epochs),
    )


def stall(
    seed: int,
    onset: int = 6,
    level: float = 0.47,
    noise: float = 0.005,
    epochs: int = 30,
    train_gap: float = 0.02,
) -> Curve:
    """Linear climb from chance that stops dead at epoch `onset`."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1)
    climb = np.clip((t - 1) / (onset - 1), 0, 1)
    return _curve(
        val_accuracy=0.1 + (level - 0.1) * climb + rng.normal(0, noise, epochs),
        accuracy=0.1 + (level + train_gap - 0.1) * climb + rng.normal(0, noise / 2, epochs),
    )


# ---------------------------------------------------------------------------------------------- plateau


def test_plateau_onset_and_level_recovered() -> None:
    onsets, levels = [], []
    for seed in SEEDS:
        diagnosis = diagnose(stall(seed))
        assert diagnosis.verdict == "plateau", (seed, diagnosis.codes)
        finding = diagnosis.findings[0]
        onsets.append(finding.onset_epoch)
        levels.append(diagnosis.plateau_level)
        assert finding.severity == Severity.WARNING
        assert finding.message.startswith("val_accuracy flat at 0.4")
        assert f"since epoch {finding.onset_epoch}" in finding.message
        assert abs(diagnosis.plateau_level - 0.47) < 0.01
        assert 0 < diagnosis.plateau_spread < 0.01
    within = np.mean([abs(o - 6) <= 1 for o in onsets])
    assert within >= 0.9, onsets


def test_plateau_message_format() -> None:
    finding = diagnose(stall(3)).findings[0]
    level, spread = finding.evidence["level"], finding.evidence["spread"]
    assert (
        finding.message
        == f"val_accuracy flat at {level:.3f} ± {spread:.3f} since epoch {finding.onset_epoch}, "
        f"{finding.evidence['flat_epochs']} epochs on the plateau before the end"
    )
    assert finding.causes and finding.remedies


@pytest.mark.parametrize(
    "make",
    [
        lambda s: healthy(s),
        lambda s: healthy(s, tau=2.0),
        lambda s: healthy(s, tau=1.0),
        lambda s: healthy(s, tau=8.0),
        lambda s: healthy(s, epochs=100, tau=3.0),
        lambda s: healthy(s, noise=0.01),
        lambda s: power_law(s),
        lambda s: power_law(s, epochs=100, alpha=0.5),
    ],
    ids=["tau5", "tau2", "tau1", "tau8", "tau3-100ep", "noisy", "pow", "pow-100ep"],
)
def test_no_stall_or_overfitting_on_healthy_runs(make) -> None:  # noqa: ANN001
    flagged = []
    for seed in SEEDS:
        diagnosis = diagnose(make(seed))
        if diagnosis.has("plateau") or diagnosis.has("overfitting") or diagnosis.verdict != "healthy":
            flagged.append((seed, diagnosis.codes))
    assert len(flagged) <= 1, flagged  # precision target >= 0.95 over 20 seeds


def test_converged_run_is_healthy_with_its_plateau() -> None:
    diagnosis = diagnose(healthy(0, tau=2.0))
    assert diagnosis.verdict == "healthy"
    assert diagnosis.plateau_onset_epoch is not None and not diagnosis.stalled
    assert diagnosis.findings[0].message.startswith("converged: val_accuracy at 0.9")
    assert abs(diagnosis.plateau_level - 0.91) < 0.005


def test_still_improving_run_has_no_plateau() -> None:
    diagnosis = diagnose(healthy(0, tau=30.0))
    assert diagnosis.plateau_onset_epoch is None
    assert diagnosis.verdict in {"healthy", "too_slow"}


def test_plateau_on_val_loss_when_no_accuracy() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(1, 31)
    val_loss = np.where(t < 8, 2.3 - 0.2 * (t - 1), 2.3 - 0.2 * 7) + rng.normal(0, 0.005, 30)
    diagnosis = diagnose(_curve(val_loss=val_loss, loss=val_loss - 0.01, num_classes=None))
    assert diagnosis.monitor == "val_loss"
    assert abs(diagnosis.plateau_onset_epoch - 8) <= 1
    # Nothing but an abrupt stop says "stall" here, and prematurity alone is no stall.
    assert diagnosis.verdict == "healthy" and diagnosis.findings[0].evidence["converged"]


def test_low_plateau_is_a_stall_even_when_smooth() -> None:
    # A smooth exponential approach, but to 0.3 on a 10-class task: less than half-way from chance.
    for seed in range(5):
        diagnosis = diagnose(healthy(seed, tau=2.0, top=0.3))
        assert diagnosis.has("plateau"), diagnosis.codes
        finding = next(f for f in diagnosis.findings if f.code == "plateau")
        assert "low_level" in finding.evidence["stall_reasons"]
        assert any("normalisation" in r for r in finding.remedies)


def test_below_baseline_is_a_stall() -> None:
    # At 0.86 (training 0.89: an error under underfit_error) nothing else makes it a stall.
    curve = healthy(0, tau=2.0, top=0.86)
    assert not diagnose(curve).has("plateau")
    diagnosis = diagnose(curve, baseline_accuracy=0.90)
    assert diagnosis.has("plateau")
    finding = next(f for f in diagnosis.findings if f.code == "plateau")
    assert "below_baseline" in finding.evidence["stall_reasons"]


def test_stall_causes_follow_the_training_curve() -> None:
    memorising = next(f for f in diagnose(stall(0, train_gap=0.3)).findings if f.code == "plateau")
    assert any("augmentation" in r for r in memorising.remedies)
    capacity = next(f for f in diagnose(stall(0, train_gap=0.0)).findings if f.code == "plateau")
    assert any("deeper or wider" in r for r in capacity.remedies)


def test_min_plateau_epochs_is_respected() -> None:
    found_short, found_long = 0, 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        climb = 0.1 + 0.08 * np.arange(10)  # reaches 0.82 at epoch 10
        short = np.concatenate([climb, np.full(2, climb[-1])]) + rng.normal(0, 0.003, 12)
        long = np.concatenate([climb, np.full(8, climb[-1])]) + rng.normal(0, 0.003, 18)
        # Two flat epochs after the onset are not enough for min_plateau_epochs=3 ...
        found_short += find_plateau(short, min_plateau_epochs=3) is not None
        plateau = find_plateau(long, min_plateau_epochs=3)
        found_long += plateau is not None and abs(plateau.onset_epoch - 10) <= 1
    assert found_short == 0
    # ... eight are.
    assert found_long >= 18


def test_find_plateau_validates_input() -> None:
    with pytest.raises(ValueError, match="min_plateau_epochs"):
        find_plateau(np.ones(10), min_plateau_epochs=0)
    with pytest.raises(ValueError, match="shape"):
        find_plateau(np.ones(10), np.arange(9))
    assert find_plateau(np.ones(3)) is None


# ---------------------------------------------------------------------------------------------- speed


def test_diagnose_fits_no_curve_family_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The learning-curve fit is the costly part (about 0.2 s a run); the default diagnosis, which
    # the live stop runs after every epoch, must not pay it. (Speed itself is a benchmark figure:
    # benchmarks/diagnosis_quality.py prints the time per run; a timed test fails on a busy machine.)
    import pipelines.curves.extrapolate as extrapolate_module

    calls = []
    real = extrapolate_module.extrapolate

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(extrapolate_module, "extrapolate", counting)
    curves = [healthy(seed, epochs=100) for seed in range(3)]
    for curve in curves:
        assert diagnose(curve).extrapolation is None
    assert calls == []
    diagnose(curves[0], extrapolate=True)
    assert calls, "the counter sees the fit when it is asked for"


# ------------------------------------------------------------------------------------------ other findings

E = 40
T = np.arange(E)


def overfitting(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    return _curve(
        loss=0.1 + 1.5 * np.exp(-T / 5) + rng.normal(0, 0.003, E),
        val_loss=0.35 + 1.2 * np.exp(-T / 4) + 0.01 * np.maximum(T - 10, 0) + rng.normal(0, 0.01, E),
        accuracy=0.99 - 0.5 * np.exp(-T / 5) + rng.normal(0, 0.002, E),
        val_accuracy=0.88 - 0.4 * np.exp(-T / 4) - 0.001 * np.maximum(T - 10, 0) + rng.normal(0, 0.004, E),
    )


def underfitting(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    return _curve(
        accuracy=0.35 - 0.2 * np.exp(-T / 3) + rng.normal(0, 0.003, E),
        val_accuracy=0.34 - 0.2 * np.exp(-T / 3) + rng.normal(0, 0.005, E),
        loss=1.7 + 0.5 * np.exp(-T / 3) + rng.normal(0, 0.005, E),
        val_loss=1.72 + 0.5 * np.exp(-T / 3) + rng.normal(0, 0.01, E),
    )


def chance_level(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    return _curve(
        accuracy=0.1 + rng.normal(0, 0.005, E),
        val_accuracy=0.1 + rng.normal(0, 0.01, E),
        loss=np.log(10) + rng.normal(0, 0.005, E),
        val_loss=np.log(10) + rng.normal(0, 0.01, E),
    )


def blow_up(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    loss = np.where(T < 15, 0.3 + 1.5 * np.exp(-T / 3), 0.3 + 0.4 * (T - 14)) + rng.normal(0, 0.005, E)
    acc = np.where(T < 15, 0.9 - 0.5 * np.exp(-T / 3), np.maximum(0.9 - 0.1 * (T - 14), 0.1))
    return _curve(loss=loss, val_loss=loss + 0.05, accuracy=acc + 0.01, val_accuracy=acc)


def oscillating(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    swing = rng.choice([-1, 1], E)
    acc = 0.8 - 0.4 * np.exp(-T / 5) + 0.05 * swing + rng.normal(0, 0.01, E)
    loss = 0.6 + 1.0 * np.exp(-T / 5) + 0.15 * swing
    return _curve(
        accuracy=acc,
        val_accuracy=acc - 0.01 + 0.04 * rng.choice([-1, 1], E),
        loss=loss,
        val_loss=loss + 0.1 + 0.1 * rng.choice([-1, 1], E),
    )


def slow(seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    val = 0.3 + 0.012 * T + rng.normal(0, 0.004, E)
    loss = 2.0 - 0.03 * T + rng.normal(0, 0.003, E)
    return _curve(accuracy=val + 0.01, val_accuracy=val, loss=loss, val_loss=loss + 0.05)


def _hits(make, code: str, seeds=SEEDS) -> float:  # noqa: ANN001
    return float(np.mean([diagnose(make(seed)).has(code) for seed in seeds]))


def test_overfitting_found_with_best_epoch() -> None:
    assert _hits(overfitting, "overfitting") == 1.0
    diagnosis = diagnose(overfitting(0))
    assert diagnosis.verdict == "overfitting"
    finding = diagnosis.findings[0]
    # The noise-free val_loss bottoms out at epoch 14.6 in a shallow valley.
    assert 11 <= finding.evidence["best_epoch"] <= 19
    assert finding.evidence["gap_growth"] > 0
    assert "best epoch" in finding.message
    assert any("restore_best_weights" in r for r in finding.remedies)
    assert any("augmentation" in r for r in finding.remedies)


def test_underfitting_low_train_and_val() -> None:
    assert _hits(underfitting, "underfitting") == 1.0
    finding = next(f for f in diagnose(underfitting(0)).findings if f.code == "underfitting")
    assert any("deeper or wider" in r for r in finding.remedies)
    assert any("normalisation" in r for r in finding.remedies)
    # The same curves at a high level are a convergence, not underfitting.
    assert not diagnose(healthy(0, tau=2.0)).has("underfitting")


def regularised_training(seed: int, train_top: float, val_top: float) -> Curve:
    """Training accuracy measured under dropout / input noise, flat below a flat validation accuracy."""
    rng = np.random.default_rng(seed)
    return _curve(
        accuracy=train_top - 0.5 * np.exp(-T / 4) + rng.normal(0, 0.003, E),
        val_accuracy=val_top - 0.5 * np.exp(-T / 4) + rng.normal(0, 0.003, E),
        loss=0.3 + (1 - train_top) * 3 + 1.5 * np.exp(-T / 4) + rng.normal(0, 0.005, E),
        val_loss=0.1 + (1 - val_top) * 3 + 1.5 * np.exp(-T / 4) + rng.normal(0, 0.005, E),
    )


def test_training_accuracy_below_validation_is_no_underfit_when_validation_fits() -> None:
    # A real probe run (digits MLP with GaussianNoise and dropout 0.5) ends at 0.80 training /
    # 0.95 validation accuracy: training is scored under the noise, the model itself fits, so
    # neither underfitting nor a plateau it would explain.
    for seed in range(5):
        diagnosis = diagnose(regularised_training(seed, 0.80, 0.95))
        assert not diagnosis.has("underfitting") and not diagnosis.has("plateau"), (seed, diagnosis.codes)
    # Both far from fitting (0.60 / 0.70): underfitting, as the training set is not fitted either.
    assert _hits(lambda seed: regularised_training(seed, 0.60, 0.70), "underfitting", range(5)) == 1.0


def pulling_away(seed: int, climb: float) -> Curve:
    """val_accuracy converged at 0.90 on 180 examples; training climbs by ``climb`` from epoch 20."""
    rng = np.random.default_rng(seed)
    t = np.arange(60)
    return _curve(
        val_accuracy=0.90 - 0.3 * np.exp(-t / 5) + rng.normal(0, 0.004, 60),
        accuracy=0.91
        - 0.35 * np.exp(-t / 5)
        + climb * np.clip((t - 20) / 40, 0, None)
        + rng.normal(0, 0.002, 60),
        val_loss=0.28 + 0.5 * np.exp(-t / 5) + rng.normal(0, 0.005, 60),
        loss=0.27 + 0.5 * np.exp(-t / 5) - 0.1 * climb * t / 60 + rng.normal(0, 0.002, 60),
        num_classes=2,
        num_val_examples=180,
    )


def test_converged_run_says_when_training_pulls_away() -> None:
    # Failure class 7 of issue 6: a flat validation curve while training keeps climbing. Short of a
    # stall (a gap growth of 0.03 against 4 binomial SDs, 0.09, on 180 examples) the run stays
    # healthy, and its message says what training did and what a stall would need.
    for seed in range(5):
        finding = diagnose(pulling_away(seed, 0.05)).findings[0]
        assert finding.code == "healthy", (seed, finding.message)
        assert re.search(
            r"training accuracy kept climbing meanwhile, to 0\.95\d: the train-validation gap grew by "
            r"0\.0[2-4]\d, short of the 0\.0[89]\d that would make it a stall$",
            finding.message,
        ), finding.message
        assert 0.02 < finding.evidence["gap_growth"] < 0.05
        # Training as flat as validation: nothing to say.
        flat = diagnose(pulling_away(seed, 0.0)).findings[0]
        assert flat.code == "healthy" and "climbing" not in flat.message and "gap_growth" not in flat.evidence


def test_underfitting_against_baseline() -> None:
    # Training at 0.89 (an error under underfit_error): low only against a baseline of 0.95.
    curve = healthy(1, tau=2.0, top=0.86)
    assert not diagnose(curve).has("underfitting")
    assert diagnose(curve, baseline_accuracy=0.95).has("underfitting")


def test_not_learning_at_chance() -> None:
    assert _hits(chance_level, "not_learning") == 1.0
    diagnosis = diagnose(chance_level(0))
    assert diagnosis.verdict == "not_learning"
    assert diagnosis.findings[0].severity == Severity.CRITICAL
    assert not diagnosis.has("plateau")  # the stall is reported as not learning, not twice
    # Without num_classes, a loss sitting at ln K (uniform outputs over K classes) gives K ...
    unknown = diagnose(Curve("r", chance_level(0).metrics, np.arange(1, E + 1), E, True, None))
    assert unknown.verdict == "not_learning"
    assert unknown.findings[0].evidence["chance_source"] == "uniform_loss"
    assert unknown.findings[0].evidence["chance"] == pytest.approx(0.1)
    # ... unless the accuracy says the outputs are not uniform: then there is no chance level.
    off = {k: (v + 0.5 if "accuracy" in k else v) for k, v in chance_level(0).metrics.items()}
    assert not diagnose(Curve("r", off, np.arange(1, E + 1), E, True, None)).has("not_learning")


def test_memorising_random_labels_is_not_learning_and_overfitting() -> None:
    rng = np.random.default_rng(0)
    curve = _curve(
        accuracy=np.minimum(0.1 + 0.03 * T, 1.0) + rng.normal(0, 0.003, E),
        val_accuracy=0.1 + rng.normal(0, 0.012, E),
        loss=np.maximum(2.3 - 0.07 * T, 0.01) + rng.normal(0, 0.003, E),
        val_loss=2.31 + 0.05 * T + rng.normal(0, 0.01, E),
    )
    diagnosis = diagnose(curve)
    assert diagnosis.verdict == "not_learning"
    assert diagnosis.has("overfitting")
    assert diagnosis.findings[0].message.startswith("not learning: val_accuracy at most 0.1")


def test_noisy_validation_is_a_note_on_a_healthy_run() -> None:
    rng = np.random.default_rng(0)
    acc = 0.95 - 0.4 * np.exp(-T / 4) + rng.normal(0, 0.002, E)
    diagnosis = diagnose(
        _curve(accuracy=acc, val_accuracy=0.9 - 0.4 * np.exp(-T / 4) + rng.normal(0, 0.05, E))
    )
    assert diagnosis.codes == ["healthy", "noisy_validation"]
    assert diagnosis.findings[1].message == "validation accuracy is much noisier than training accuracy"
    # With the validation set's size known, the note says what it can resolve.
    val = np.round((0.75 + rng.normal(0, 0.07, E)) * 16) / 16
    small = diagnose(_curve(accuracy=acc, val_accuracy=val, num_val_examples=16))
    note = next(f for f in small.findings if str(f.code) == "noisy_validation")
    assert "16 validation examples move it in steps of 0.062" in note.message
    assert "2 binomial SDs at" in note.message


def test_divergence_nan_and_blow_up() -> None:
    curve = overfitting(0)
    metrics = {name: values.copy() for name, values in curve.metrics.items()}
    metrics["loss"][20:] = np.nan
    metrics["val_loss"][20:] = np.nan
    nan_run = Curve("nan", metrics, curve.epochs, epoch_budget=E, complete=False, num_classes=10)
    diagnosis = diagnose(nan_run)
    assert diagnosis.verdict == "divergence"  # beats incomplete
    assert diagnosis.findings[0].onset_epoch == 21
    assert "NaN" in diagnosis.findings[0].message
    assert _hits(blow_up, "divergence") == 1.0
    finding = diagnose(blow_up(0)).findings[0]
    assert finding.code == "divergence" and 15 <= finding.onset_epoch <= 18
    assert any("learning rate" in r for r in finding.remedies)


def test_no_divergence_on_healthy_or_overfitting_runs() -> None:
    assert _hits(healthy, "divergence") == 0.0
    assert _hits(overfitting, "divergence") == 0.0


def test_oscillation() -> None:
    assert _hits(oscillating, "oscillation") >= 0.85
    finding = next(f for f in diagnose(oscillating(0)).findings if f.code == "oscillation")
    assert "lower the learning rate" in finding.remedies
    assert _hits(healthy, "oscillation") == 0.0
    assert _hits(lambda s: healthy(s, noise=0.01), "oscillation") == 0.0


def test_oscillation_with_validation_every_few_epochs_is_read_off_the_training_loss() -> None:
    # fit(validation_freq=3): the swinging training loss, logged every epoch, still shows it.
    assert _hits(lambda s: _validated_every(oscillating(s), 3), "oscillation") >= 0.85


def test_too_slow() -> None:
    assert _hits(slow, "too_slow") == 1.0
    diagnosis = diagnose(slow(0))
    assert diagnosis.verdict == "too_slow"
    assert "raise the learning rate" in diagnosis.findings[0].remedies
    assert _hits(healthy, "too_slow") == 0.0


def test_incomplete_comes_first_and_hides_nothing() -> None:
    # A killed run says so first; what its curves already show (a stall) is still reported.
    for seed in range(5):
        base = stall(seed)
        short = Curve("r", {k: v[:15] for k, v in base.metrics.items()}, base.epochs[:15], 30, False, 10)
        diagnosis = diagnose(short)
        assert diagnosis.verdict == "incomplete"
        assert diagnosis.codes[:2] == ["incomplete", "plateau"]
        assert diagnosis.plateau_onset_epoch is not None


def test_short_run_without_early_stopping_is_incomplete() -> None:
    rng = np.random.default_rng(0)
    val = 0.9 - 0.4 * np.exp(-np.arange(15) / 5) + rng.normal(0, 0.003, 15)
    diagnosis = diagnose(_curve(val_accuracy=val, accuracy=val + 0.01, budget=40))
    assert diagnosis.verdict == "incomplete" and "without early stopping" in diagnosis.findings[0].message


def _stopped_at_13_of_40(val_accuracy: np.ndarray, val_loss: np.ndarray):
    return diagnose(
        _curve(
            val_accuracy=val_accuracy,
            accuracy=val_accuracy + 0.02,
            val_loss=val_loss,
            budget=40,
            num_classes=2,
        )
    )


def test_killed_while_val_loss_and_val_accuracy_still_improve_is_incomplete() -> None:
    # val_accuracy on 40 examples moves in coarse steps and reaches its best only at the end;
    # val_loss is at its lowest on the last epoch: EarlyStopping (on either) stops `patience`
    # epochs after its monitor's best, so this run was killed 27 epochs short of its budget.
    val_accuracy = np.array([24, 30, 33, 34, 34, 35, 35, 35, 35, 36, 36, 36, 37]) / 40
    diagnosis = _stopped_at_13_of_40(val_accuracy, 0.6 * np.exp(-np.arange(13) / 30) + 0.05)
    assert diagnosis.has("incomplete"), diagnosis.codes


def test_flat_accuracy_with_val_loss_lowest_long_before_the_end_may_be_early_stopped() -> None:
    val_accuracy = np.r_[[0.6, 0.8, 0.875], np.full(10, 0.9)]
    val_loss = np.r_[0.6 * np.exp(-np.arange(7) / 2) + 0.05, np.linspace(0.08, 0.12, 6)]
    diagnosis = _stopped_at_13_of_40(val_accuracy, val_loss)
    assert not diagnosis.has("incomplete"), diagnosis.codes


def test_early_stopped_run_is_complete() -> None:
    # A converged run that ended on a confirmed plateau 30 epochs short of its budget: stopped early.
    curve = healthy(0, tau=2.0, epochs=20)
    stopped = Curve(
        "r",
        curve.metrics,
        curve.epochs,
        epoch_budget=50,
        complete=True,
        num_classes=10,
        params={"train.early_stopping_patience": 3},
    )
    assert not diagnose(stopped).has("incomplete")


def test_missing_epochs_are_incomplete() -> None:
    curve = healthy(0)
    metrics = {k: v.copy() for k, v in curve.metrics.items()}
    metrics["val_accuracy"][[10, 11]] = np.nan
    diagnosis = diagnose(Curve("r", metrics, curve.epochs, 30, True, 10))
    assert diagnosis.verdict == "incomplete"
    assert diagnosis.findings[0].evidence["missing_epochs"] == [11, 12]


def _validated_every(curve: Curve, k: int) -> Curve:
    """The same run as ``fit(..., validation_freq=k)`` logs it: validation metrics only after the
    1-based epochs that are multiples of k (CSVLogger writes NA, read as NaN, for the others)."""
    metrics = {name: values.copy() for name, values in curve.metrics.items()}
    for name in ("val_accuracy", "val_loss"):
        metrics[name][curve.epochs % k != 0] = np.nan
    return dataclasses.replace(curve, metrics=metrics)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_validation_every_k_epochs_is_not_missing_epochs(k: int) -> None:
    sparse = _validated_every(healthy(0, epochs=40), k)
    assert validation_frequency(sparse, "val_accuracy") == k
    diagnosis = diagnose(sparse)
    assert not diagnosis.has("incomplete"), diagnosis.codes
    assert diagnosis.verdict == "healthy", diagnosis.codes
    # The plateau is counted in epochs, not in validated values.
    onset = diagnosis.plateau_onset_epoch
    assert onset is not None
    last = int(sparse.epochs[np.isfinite(sparse.metrics["val_accuracy"])][-1])
    assert diagnosis.findings[0].evidence["flat_epochs"] == last - onset
    assert f"({last - onset} epochs on the plateau before the end)" in diagnosis.findings[0].message


def test_validation_frequency_needs_the_keras_schedule_and_a_trained_epoch() -> None:
    curve = healthy(1, epochs=30)
    assert validation_frequency(curve, "val_accuracy") is None  # every epoch validated
    off = _validated_every(curve, 3)
    off.metrics["val_accuracy"][8] = np.nan  # epoch 9 should have been validated
    assert validation_frequency(off, "val_accuracy") is None
    assert diagnose(off).has("incomplete")
    dead = _validated_every(curve, 3)
    dead.metrics["loss"][3] = np.nan  # no finite training loss on an unvalidated epoch
    assert validation_frequency(dead, "val_accuracy") is None


def test_split_mismatch_and_noisy_validation() -> None:
    def shifted(seed: int) -> Curve:
        rng = np.random.default_rng(seed)
        acc = 0.95 - 0.4 * np.exp(-T / 4) + rng.normal(0, 0.002, E)
        return _curve(accuracy=acc, val_accuracy=acc - 0.25 + rng.normal(0, 0.004, E))

    def noisy(seed: int) -> Curve:
        rng = np.random.default_rng(seed)
        acc = 0.95 - 0.4 * np.exp(-T / 4) + rng.normal(0, 0.002, E)
        return _curve(accuracy=acc, val_accuracy=0.9 - 0.4 * np.exp(-T / 4) + rng.normal(0, 0.05, E))

    assert _hits(shifted, "split_mismatch") == 1.0
    finding = next(f for f in diagnose(shifted(0)).findings if f.code == "split_mismatch")
    assert any("leakage" in r for r in finding.remedies)
    assert _hits(noisy, "noisy_validation") >= 0.9
    assert _hits(healthy, "split_mismatch") == 0.0


def unseen_classes(seed: int, val_level: float = 0.017, train_top: float = 1.0) -> Curve:
    """10 classes; validation scored on 360 examples (accuracy on its grid) of classes the model
    barely predicts, as ``fit(validation_split=0.2)`` leaves on data ordered by class."""
    rng = np.random.default_rng(seed)
    val = np.round((val_level + rng.normal(0, 0.002, E)).clip(0, 1) * 360) / 360
    return _curve(
        accuracy=train_top - 0.5 * np.exp(-T / 3) + rng.normal(0, 0.002, E),
        val_accuracy=val,
        loss=0.01 + 1.6 * np.exp(-T / 3) + rng.normal(0, 0.002, E),
        val_loss=3.1 + 0.12 * T + rng.normal(0, 0.02, E),
    )


def test_validation_below_any_guess_is_a_split_problem_not_a_dead_network() -> None:
    # A real probe run (digits sorted by label, fit(validation_split=0.2)): training reaches 1.0,
    # validation never passes 0.019 on 10 classes. Labels drawn like the training labels can't score
    # below the smallest class share (0.1) but by chance; this network learns, so the verdict is a
    # critical split mismatch naming validation_split, and not_learning is not reported.
    for seed in range(5):
        diagnosis = diagnose(unseen_classes(seed))
        assert diagnosis.verdict == "split_mismatch", (seed, diagnosis.codes)
        finding = diagnosis.findings[0]
        assert finding.severity == "critical" and finding.evidence["below_any_guess"] == pytest.approx(0.1)
        assert "below the 0.100 that any guess scores" in finding.message
        assert any("validation_split" in r for r in finding.remedies)
        assert not diagnosis.has("not_learning")
    # At chance (0.1, as with shuffled labels) it is no split problem: not learning, as before. With
    # shuffled labels the first epoch scores chance on the training examples too (none seen yet);
    # the network then memorises them.
    shuffled = unseen_classes(0, val_level=0.1)
    shuffled.metrics["accuracy"] = 0.1 + 0.9 * (1 - np.exp(-T / 6))
    at_chance = diagnose(shuffled)
    assert at_chance.has("not_learning") and at_chance.verdict != "split_mismatch", at_chance.codes
    assert "below_any_guess" not in str(at_chance.findings)
    # The same validation curve after a first epoch at 0.5 on training examples not yet seen: that
    # network learned the task, and its validation set is not drawn like its training set.
    skewed = diagnose(unseen_classes(0, val_level=0.1))
    assert skewed.verdict == "split_mismatch" and not skewed.has("not_learning"), skewed.codes
    assert skewed.findings[0].evidence["below_first_epoch_training"] == pytest.approx(0.5, abs=0.01)
    # A network that fits nothing (training at chance too) is not this either.
    dead = diagnose(unseen_classes(0, train_top=0.11))
    assert all("below_any_guess" not in f.evidence for f in dead.findings), dead.codes


def test_time_constant_near_half_the_budget_is_too_slow() -> None:
    # An exponential approach with a time constant of 12 epochs in a 30-epoch budget makes 12% of
    # its gain in the last third and ends 4.5 points short of its asymptote: too slow (the corpus
    # rubric's "still improving, far from what the task reaches").
    flagged = [diagnose(healthy(seed, tau=12.0)).verdict for seed in SEEDS]
    assert sum(v == "too_slow" for v in flagged) >= 0.9 * len(SEEDS), flagged


def test_healthy_still_improving_says_train_longer() -> None:
    rng = np.random.default_rng(0)
    val = 0.92 - 0.5 * np.exp(-np.arange(30) / 8) + rng.normal(0, 0.002, 30)
    diagnosis = diagnose(_curve(val_accuracy=val, accuracy=val + 0.01))
    assert diagnosis.plateau_onset_epoch is None
    healthy_finding = next(f for f in diagnosis.findings if f.code == "healthy")
    assert "train longer" in healthy_finding.remedies


def test_findings_sorted_and_verdict_matches() -> None:
    # The verdict is the first finding by construction; what is tested is which finding comes first
    # (severity, then precedence: a stall's plateau before its underfit and its oscillation).
    verdicts = {
        overfitting: "overfitting",
        underfitting: "plateau",
        chance_level: "not_learning",
        blow_up: "divergence",
        oscillating: "plateau",
        slow: "too_slow",
        stall: "plateau",
        healthy: "healthy",
    }
    for make, verdict in verdicts.items():
        diagnosis = diagnose(make(0))
        ranks = [
            (0 if f.severity == Severity.CRITICAL else 1 if f.severity == Severity.WARNING else 2)
            for f in diagnosis.findings
        ]
        assert ranks == sorted(ranks)
        assert diagnosis.verdict == verdict, (make.__name__, diagnosis.codes)
        for finding in diagnosis.findings:
            assert finding.message and not math.isnan(finding.onset_epoch or 0)


def test_no_validation_metric_raises() -> None:
    with pytest.raises(NoValidationValue, match="^r: no finite val_accuracy / val_loss value"):
        diagnose(Curve("r", {"loss": np.linspace(2, 1, 10)}, np.arange(1, 11)))


def test_extrapolate_option_runs_and_is_attached() -> None:
    diagnosis = diagnose(slow(0), extrapolate=True)
    assert diagnosis.extrapolation is not None
    assert diagnosis.verdict == "too_slow"
    for curve, verdict in ((stall(0), "plateau"), (stall(0, level=0.85, noise=0.003), "healthy")):
        # The stall rule does not depend on the option (and a high plateau reached abruptly,
        # premature only, is a convergence).
        assert diagnose(curve, extrapolate=True).verdict == diagnose(curve).verdict == verdict
    assert diagnose(healthy(0), extrapolate=True).verdict == "healthy"


# ------------------------------------------------------------------------------------------ real curves

FIXTURES = Path(__file__).parents[2] / "fixtures" / "curves"


def test_real_keras_curves_from_the_benchmark_fixtures() -> None:
    """Real Keras runs (benchmarks/curve_fixtures/generate.py) with their hand-set labels.

    Healthy runs must come out healthy (no stall, no overfitting: precision first), and the
    clear-cut failure modes must be named.
    """
    labels_path = FIXTURES / "labels.json"
    if not labels_path.exists():
        pytest.skip("benchmark fixtures not generated (python -m benchmarks.curve_fixtures.generate)")
    labels = json.loads(labels_path.read_text())
    flagged_healthy, missed, checked = [], [], 0
    for name, label in labels.items():
        path = FIXTURES / name
        if not path.exists():
            continue
        curve = load_curve(path, epoch_budget=label["epoch_budget"], num_classes=label["num_classes"])
        diagnosis = diagnose(curve)
        expected = set(label["expected"])
        if expected == {"healthy"}:
            if diagnosis.verdict != "healthy":
                flagged_healthy.append((name, diagnosis.codes))
        elif expected & {"oscillation", "divergence", "not_learning", "too_slow", "overfitting"}:
            checked += 1
            # A network dead after a blow-up is the same run seen from two sides (the corpus
            # rubric, benchmarks/corpus/README.md, accepts either).
            if expected & {"not_learning", "divergence"}:
                expected |= {"not_learning", "divergence"}
            if not expected & set(diagnosis.codes):
                missed.append((name, sorted(expected), diagnosis.codes))
    assert not flagged_healthy
    # Smooth stalls at a mediocre level (labelled "plateau" only) need baseline_accuracy and are
    # not counted here; of the clear-cut failure modes at least 85% must be named (these labels
    # predate the corpus rubric: two overfitting labels sit below its 10% val_loss rise).
    assert checked and len(missed) <= 0.15 * checked, missed


# ------------------------------------------------------------------------------- short and unclear runs


def test_two_epoch_run_is_too_short_to_judge() -> None:
    # The reported bug: 0.555 -> 0.371 was called "still improving at epoch 2".
    curve = _curve(val_accuracy=[0.555, 0.371], accuracy=[0.4, 0.5], val_loss=[1.5, 1.9], loss=[1.8, 1.6])
    diagnosis = diagnose(curve)
    (finding,) = diagnosis.findings
    assert finding.code == "healthy" and finding.evidence["too_short"]
    assert "too short to judge" in finding.message and "still improving" not in finding.message
    assert "0.371" in finding.message and not finding.remedies


def test_still_improving_only_when_the_recent_trend_improves() -> None:
    # Too few epochs for the plateau test, and falling at the end: no "still improving".
    falling = _curve(
        val_accuracy=[0.50, 0.62, 0.70, 0.69, 0.66, 0.63], accuracy=[0.5, 0.6, 0.7, 0.72, 0.73, 0.74]
    )
    (finding,) = diagnose(falling).findings
    assert finding.code == "healthy" and not finding.evidence["converged"]
    assert "still improving" not in finding.message and "no clear trend" in finding.message
    assert finding.evidence["recent_trend_z"] < 2
    rising = _curve(
        val_accuracy=[0.50, 0.60, 0.66, 0.70, 0.73, 0.76], accuracy=[0.5, 0.6, 0.7, 0.72, 0.73, 0.74]
    )
    (finding,) = diagnose(rising).findings
    assert "still improving at epoch 6 (0.760)" in finding.message


# ------------------------------------------------------------------------------- baselines


def _on_grid(values: np.ndarray, n: int) -> np.ndarray:
    """Accuracies as Keras logs them on n examples: float32(k / n)."""
    return (np.round(np.asarray(values) * n) / n).astype(np.float32).astype(np.float64)


def test_below_baseline_margin_covers_seed_spread_on_the_validation_set() -> None:
    # A run 0.4 points under a 0.967 baseline on 600 validation examples (one SD of an accuracy
    # there is 0.7 points) is within what seeds alone do; 3.7 points under is not.
    for seed in range(5):
        close = healthy(seed, tau=2.0, top=0.963, noise=0.001)
        on_grid = Curve(
            close.run,
            {**close.metrics, "val_accuracy": _on_grid(close.metrics["val_accuracy"], 600)},
            close.epochs,
            epoch_budget=close.epoch_budget,
            num_classes=10,
        )
        assert not diagnose(on_grid, baseline_accuracy=0.967).has("plateau"), seed
        # Without the grid only the (tiny) per-epoch noise is known, and the same gap is a stall.
        assert diagnose(close, baseline_accuracy=0.967).has("plateau"), seed
        far = healthy(seed, tau=2.0, top=0.93, noise=0.001)
        far = Curve(
            far.run,
            {**far.metrics, "val_accuracy": _on_grid(far.metrics["val_accuracy"], 600)},
            far.epochs,
            epoch_budget=far.epoch_budget,
            num_classes=10,
        )
        diagnosis = diagnose(far, baseline_accuracy=0.967)
        assert diagnosis.has("plateau"), seed
        finding = next(f for f in diagnosis.findings if f.code == "plateau")
        assert "below_baseline" in finding.evidence["stall_reasons"]


def test_a_known_validation_size_widens_the_baseline_margin_without_a_grid() -> None:
    # 38 of 40 right on every epoch: one value gives no grid, but the size the caller knows does
    # (2 sqrt(2 p (1 - p) / 40) = 0.097), and float32's 0.94999999 is not below a 0.95 baseline.
    from pipelines.curves.plateau import baseline_margin

    flat = np.full(30, np.float32(38 / 40), dtype=np.float64)
    assert baseline_margin(0.95, 0.0, 30, flat) >= 1e-6
    assert baseline_margin(0.95, 0.0, 30, flat, n_examples=40) == pytest.approx(
        2 * np.sqrt(2 * 0.95 * 0.05 / 40)
    )
    curve = Curve("r", {"val_accuracy": flat, "accuracy": flat + 0.01}, np.arange(1, 31), 30, num_classes=2)
    assert not diagnose(curve, baseline_accuracy=0.95).has("plateau")
    sized = dataclasses.replace(curve, num_val_examples=40)
    assert not diagnose(sized, baseline_accuracy=0.96).has("plateau")  # 1 point on 40 examples: noise


def test_oscillation_never_hides_a_primary_finding() -> None:
    # A secondary finding (swings) is reported beside the level below the baseline, not instead.
    for seed in range(5):
        diagnosis = diagnose(oscillating(seed), baseline_accuracy=0.95)
        assert diagnosis.has("oscillation"), diagnosis.codes
        assert diagnosis.has("plateau") or diagnosis.has("underfitting"), diagnosis.codes
        assert diagnosis.codes.index("oscillation") > 0, diagnosis.codes
    # Without the oscillation the same baseline still makes a low run an underfit / stall.
    assert diagnose(underfitting(0), baseline_accuracy=0.9).has("underfitting")


def test_real_keras_curves_with_their_baselines() -> None:
    """With the logistic-regression baseline of each run's split: every healthy run is called healthy
    and nothing else; the L2-underfit MLP and the 2-unit bottleneck, far below the baseline, are
    plateaus; the unnormalised-input Adam runs (val_loss about 100-200) are divergence first, never
    underfitting."""
    labels_path = FIXTURES / "labels.json"
    baselines_path = Path(__file__).parents[3] / "benchmarks" / "curve_fixtures" / "baselines.json"
    if not labels_path.exists() or not baselines_path.exists():
        pytest.skip("benchmark fixtures or baselines not generated")
    labels = json.loads(labels_path.read_text())
    baselines = {
        k: v["baseline_accuracy"] for k, v in json.loads(baselines_path.read_text())["datasets"].items()
    }
    for name, label in labels.items():
        path = FIXTURES / name
        dataset = label.get("config", {}).get("dataset")
        if not path.exists() or dataset not in baselines:
            continue
        curve = load_curve(path, epoch_budget=label["epoch_budget"], num_classes=label["num_classes"])
        codes = diagnose(curve, baseline_accuracy=baselines[dataset]).codes
        if set(label["expected"]) == {"healthy"}:
            assert codes == ["healthy"], (name, codes)
        if name.startswith(("underfit-mlp-l2-fmnist", "plateau-bottleneck-2")):
            assert "plateau" in codes, (name, codes)
        if name.startswith("bad-scaling-adam"):
            # val_loss ~100-200, never below 10 x ln 10: the inputs' scale blew the logits up.
            assert codes[0] == "divergence" and "underfitting" not in codes, (name, codes)


def test_sound_six_epoch_quick_profile_run_is_healthy():
    """The quick profile's real curve (make run, Fashion-MNIST, small CNN): one bump in val_loss at
    epoch 4 is not an oscillation, and the run is still improving at its budget."""
    from pipelines.curves.io import curve_from_history

    history = {
        "loss": [0.5356, 0.3589, 0.3123, 0.2822, 0.2671, 0.2480],
        "accuracy": [0.8074, 0.8688, 0.8862, 0.8942, 0.9004, 0.9069],
        "val_loss": [0.7339, 0.3052, 0.2661, 0.2834, 0.2514, 0.2457],
        "val_accuracy": [0.7288, 0.8868, 0.9031, 0.8959, 0.9084, 0.9127],
    }
    d = diagnose(curve_from_history(history, "quick", epoch_budget=6, num_classes=10), baseline_accuracy=0.84)
    assert d.verdict == "healthy", [f.message for f in d.findings]
    assert not d.has("oscillation")


@pytest.mark.parametrize("first_row", [1, 5])
def test_a_log_starting_after_epoch_1_says_so_and_hides_nothing(tmp_path: Path, first_row: int) -> None:
    # A CSVLogger file whose first row is epoch 1 or 5 (a fit resumed with initial_epoch into a new
    # file, or a logger counting from 1): the first epochs are absent, nothing was killed, and the
    # curve's own finding is still reported.
    base = overfitting(0)
    names = ("accuracy", "loss", "val_accuracy", "val_loss")
    rows = [[first_row + i, *(float(base.metrics[k][i]) for k in names)] for i in range(base.epochs.size)]
    path = tmp_path / "log.csv"
    lines = [",".join(("epoch", *names)), *(",".join(map(str, r)) for r in rows)]
    path.write_text("\n".join(lines) + "\n")
    diagnosis = diagnose(load_curve(path))
    incomplete = next(f for f in diagnosis.findings if f.code == "incomplete")
    starts = f"the log starts at epoch {first_row + 1} (its first row has epoch = {first_row};"
    assert starts in incomplete.message
    assert "killed or still running" not in incomplete.message
    assert "missing" not in incomplete.message  # the leading epochs are said once
    assert incomplete.evidence["first_epoch"] == first_row + 1
    assert diagnosis.has("overfitting"), diagnosis.codes


def test_a_run_marked_incomplete_with_every_epoch_says_killed() -> None:
    curve = dataclasses.replace(healthy(0), complete=False)
    incomplete = next(f for f in diagnose(curve).findings if f.code == "incomplete")
    assert "killed or still running" in incomplete.message
    assert "starts at epoch" not in incomplete.message


def _memorising(top_correct: int, n_val: int = 20, epochs: int = 120, seed: int = 0) -> Curve:
    """val_accuracy on n_val examples reaching top_correct / n_val by epoch 4 and staying there,
    while the training loss falls to ~0 and val_loss climbs from its minimum (epoch 20)."""
    rng = np.random.default_rng(seed)
    e = np.arange(epochs)
    correct = np.minimum(top_correct, np.round(top_correct * (0.6 + 0.1 * e)))
    val_accuracy = correct / n_val
    loss = 0.7 * np.exp(-e / 10) + 0.001 + rng.normal(0, 0.0002, epochs).clip(-0.0009)
    val_loss = 0.3 * np.exp(-e / 5) + 0.02 + 0.004 * np.maximum(e - 20, 0)
    accuracy = np.minimum(1.0, 0.7 + 0.03 * e)
    return _curve(
        val_accuracy=val_accuracy,
        accuracy=accuracy,
        val_loss=val_loss,
        loss=loss,
        num_classes=2,
        num_val_examples=n_val,
    )


def test_no_plateau_at_perfect_validation_accuracy() -> None:
    # Within one validation example of 1.0 there is nothing to stall short of: overfitting is
    # reported, a plateau (a stall) is not. One example lower on a harder task, the same curve is a stall.
    for top in (20, 19):
        at_the_top = diagnose(_memorising(top))
        assert at_the_top.has("overfitting"), (top, at_the_top.codes)
        assert not at_the_top.has("plateau"), (top, at_the_top.codes)
    below = diagnose(_memorising(17))
    assert below.has("overfitting") and below.has("plateau"), below.codes


def test_arbitration_of_a_steady_climb_without_a_plateau() -> None:
    # too_slow with no plateau: an underfitting read off a practically flat last third goes (the
    # run is still improving); beside an oscillation, too_slow goes instead (the rate is too high)
    # and the underfitting stays, as before a plateau could be dropped for a climb.
    from pipelines.curves.arbitrate import arbitrate
    from pipelines.curves.findings import Code, make_finding
    from pipelines.curves.types import Severity

    def finding(code: Code) -> object:
        return make_finding(code, Severity.WARNING, None, {}, code.value)

    slow, under, osc = Code.TOO_SLOW, Code.UNDERFITTING, Code.OSCILLATION
    codes = [f.code for f in arbitrate({slow: finding(slow), under: finding(under)})]
    assert codes == ["too_slow"], codes
    codes = [f.code for f in arbitrate({slow: finding(slow), under: finding(under), osc: finding(osc)})]
    assert codes == ["underfitting", "oscillation"], codes
