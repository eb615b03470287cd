"""Property-based tests: the curve engine on arbitrary logs (Hypothesis, https://hypothesis.works).

Whatever a log holds (1 to 60 epochs, any subset of the Keras metrics, NaN and inf, losses from 0
to 1e12, accuracies on a grid or not, any class count, prior, budget or completeness), the
diagnosis either answers or raises ``ValueError`` naming the run, and its answer is well formed:
a known verdict first, every finding with a message and an onset inside the log, JSON-safe
evidence, and no finding advising two contradictory remedies. The live decision answers too.
A loss stuck at 1e12 once raised ``OverflowError`` from the dead-network rule.

Derandomised (the same examples on every run, so CI does not flake on a new draw) and without an
example database; Hypothesis' home is a temporary folder (``tests/conftest.py``): nothing is
written to the checkout.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from pipelines.curves.arbitrate import ORDER
from pipelines.curves.callback import should_stop
from pipelines.curves.diagnose import diagnose
from pipelines.curves.findings import CONTRADICTORY
from pipelines.curves.types import Curve

PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ACCURACIES = ("accuracy", "val_accuracy")
LOSSES = ("loss", "val_loss")


@st.composite
def logs(draw: st.DrawFn) -> tuple[Curve, dict[str, list[float]]]:
    """A curve as a Keras log could hold it, and the same values as a ``History.history``."""
    epochs = draw(st.integers(1, 60))
    names = draw(st.sets(st.sampled_from((*ACCURACIES, *LOSSES, "learning_rate")), min_size=1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    t = np.arange(epochs, dtype=np.float64)
    metrics: dict[str, np.ndarray] = {}
    for name in sorted(names):
        shape = draw(st.sampled_from(("rise", "rise", "rise", "flat", "walk", "constant", "explode")))
        if name in ACCURACIES:
            start, end = draw(st.floats(0, 1)), draw(st.floats(0, 1))
            noise = draw(st.sampled_from((0.0, 0.005, 0.05)))
            values = start + (end - start) * (1 - np.exp(-t / max(1.0, epochs / 4)))
            if shape == "walk":
                values = start + np.cumsum(rng.normal(0, 0.05, epochs))
            elif shape in ("flat", "constant", "explode"):
                values = np.full(epochs, start)
            values = np.clip(values + noise * rng.standard_normal(epochs), 0, 1)
            n = draw(st.sampled_from((None, 13, 30, 500, 10_000)))
            if n:
                values = np.round(values * n) / n
        elif name in LOSSES:
            scale = draw(st.sampled_from((0.7, 0.7, 2.3, 2.3, 0.05, 0.0, 1e-9, 50.0, 1e12)))
            values = scale * np.exp(-t / max(1.0, epochs / 3)) + draw(st.sampled_from((0.0, 0.01, 0.3)))
            if shape == "walk":
                values = np.abs(scale + np.cumsum(rng.normal(0, 0.2, epochs)))
            elif shape == "constant":
                values = np.full(epochs, scale)
            elif shape == "explode":
                values = values * np.where(t >= epochs // 2, 10.0 ** (t - epochs // 2), 1.0)
        else:
            values = (
                draw(st.sampled_from((1e-3, 0.1))) * np.where(rng.random(epochs) < 0.1, 0.1, 1.0).cumprod()
            )
        holes = draw(st.sampled_from((0.0, 0.0, 0.2)))
        values = np.where(rng.random(epochs) < holes, np.nan, values)
        if draw(st.sampled_from((False, False, False, False, True))) and epochs > 2 and name in LOSSES:
            values[draw(st.integers(0, epochs - 1))] = draw(st.sampled_from((np.inf, np.nan)))
        metrics[name] = values.astype(np.float64)
    prior = None
    if draw(st.booleans()):
        k = draw(st.integers(2, 12))
        prior = tuple(float(p) for p in rng.dirichlet(np.full(k, draw(st.sampled_from((0.3, 5.0))))))
    num_classes = draw(st.one_of(st.none(), st.integers(2, 20))) if prior is None else len(prior)
    curve = Curve(
        "fuzz",
        metrics,
        np.arange(1, epochs + 1),
        draw(st.one_of(st.none(), st.integers(epochs, 3 * epochs))),
        complete=draw(st.booleans()),
        num_classes=num_classes,
        class_prior=prior,
        num_val_examples=draw(st.sampled_from((None, 13, 500))),
    )
    return curve, {name: [float(v) for v in values] for name, values in metrics.items()}


def _stuck_at_1e12() -> tuple[Curve, dict[str, list[float]]]:
    """Both losses stuck at 1e12 with val_accuracy frozen at 0: the dead-network rule once took
    exp() of that loss (OverflowError)."""
    metrics = {"loss": np.full(100, 1e12), "val_loss": np.full(100, 1e12), "val_accuracy": np.zeros(100)}
    return Curve("fuzz", metrics, np.arange(1, 101), 100), {k: list(v) for k, v in metrics.items()}


@PROPERTIES
@given(logs())
@example(_stuck_at_1e12())
def test_every_log_gets_a_well_formed_diagnosis_or_a_value_error(log: tuple[Curve, dict]) -> None:
    curve, _ = log
    try:
        diagnosis = diagnose(curve)
    except ValueError as error:
        assert "fuzz" in str(error)  # names the run
        event("ValueError")
        return
    event(f"verdict {diagnosis.verdict}")
    assert diagnosis.findings, "no finding, not even healthy"
    assert diagnosis.verdict == diagnosis.findings[0].code
    assert diagnosis.verdict in {code.value for code in ORDER}
    for finding in diagnosis.findings:
        assert finding.message.strip()
        assert finding.onset_epoch is None or 1 <= finding.onset_epoch <= int(curve.epochs[-1])
        json.dumps(finding.evidence, allow_nan=True)
        for a, b in CONTRADICTORY:
            assert not (a in finding.remedies and b in finding.remedies), finding.remedies


@PROPERTIES
@given(logs())
@example(_stuck_at_1e12())
def test_the_live_decision_answers_every_history(log: tuple[Curve, dict]) -> None:
    curve, history = log
    if not any(name in history for name in ("val_accuracy", "val_loss")):
        return  # should_stop raises ValueError: nothing to decide on (tested in test_callback.py)
    decision = should_stop(
        history, epoch_budget=curve.epoch_budget, num_classes=curve.num_classes, class_prior=curve.class_prior
    )
    stop, finding = decision
    assert stop == (finding is not None)
    if stop:
        assert decision.reason and decision.reason.startswith(f"stopped at epoch {curve.epochs.size}:")
