"""diagnose(): every finding on synthetic curves over several noise seeds, and no false stalls."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipelines.curves.diagnose import diagnose, find_plateau
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
        == f"val_accuracy flat at {level:.3f} ± {spread:.3f} since epoch {finding.onset_epoch}"
    )
    assert finding.causes and finding.remedies


@pytest.mark.parametrize(
    "make",
    [
        lambda s: healthy(s),
        lambda s: healthy(s, tau=2.0),
        lambda s: healthy(s, tau=1.0),
        lambda s: healthy(s, tau=12.0),
        lambda s: healthy(s, epochs=100, tau=3.0),
        lambda s: healthy(s, noise=0.01),
        lambda s: power_law(s),
        lambda s: power_law(s, epochs=100, alpha=0.5),
    ],
    ids=["tau5", "tau2", "tau1", "tau12", "tau3-100ep", "noisy", "pow", "pow-100ep"],
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
    assert diagnosis.verdict == "plateau"


def test_low_plateau_is_a_stall_even_when_smooth() -> None:
    # A smooth exponential approach, but to 0.3 on a 10-class task: less than half-way from chance.
    for seed in range(5):
        diagnosis = diagnose(healthy(seed, tau=2.0, top=0.3))
        assert diagnosis.has("plateau"), diagnosis.codes
        finding = next(f for f in diagnosis.findings if f.code == "plateau")
        assert "low_level" in finding.evidence["stall_reasons"]
        assert any("normalisation" in r for r in finding.remedies)


def test_below_baseline_is_a_stall() -> None:
    curve = healthy(0, tau=2.0, top=0.8)
    assert not diagnose(curve).has("plateau")
    diagnosis = diagnose(curve, baseline_accuracy=0.84)
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


def test_diagnose_is_fast_without_extrapolation() -> None:
    curves = [healthy(seed, epochs=100) for seed in range(50)]
    start = time.perf_counter()
    for curve in curves:
        diagnose(curve)
    per_run = (time.perf_counter() - start) / len(curves)
    assert per_run < 0.01, f"{per_run * 1e3:.1f} ms per 100-epoch run"
