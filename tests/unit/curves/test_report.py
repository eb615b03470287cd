"""Tests for the report writer (markdown, HTML, PNG, JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.curves.gate import gate
from pipelines.curves.report import ReportPaths, build_report_content, render_report
from pipelines.curves.types import Curve, Finding, Severity


@dataclass
class FakeExtrapolation:
    epochs: np.ndarray
    predictions: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class FakeDiagnosis:
    """The subset of ``pipelines.curves.diagnose.Diagnosis`` the report reads."""

    run: str
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    plateau_onset_epoch: int | None = None
    plateau_level: float | None = None
    plateau_spread: float | None = None
    best_epoch: int | None = None
    extrapolation: Any = None


def _curve(run: str, shift: float = 0.0, epochs: int = 20, seed: int = 0) -> Curve:
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    val = 0.9 - 0.5 * np.exp(-e / 4) + shift + rng.normal(0, 0.003, epochs)
    val[3] = np.nan  # a missing epoch must not break the plot or the JSON
    return Curve(
        run=run,
        metrics={"val_accuracy": val, "accuracy": val + 0.02, "val_loss": np.float32(1) - val},
        epochs=e.astype(np.int64),
        epoch_budget=epochs,
    )


def _gate_result():
    rng = np.random.default_rng(0)
    n = 10_000
    champ = np.zeros(n, dtype=bool)
    champ[rng.choice(n, 8_890, replace=False)] = True
    chall = champ.copy()
    chall[rng.choice(np.flatnonzero(champ), 300, replace=False)] = False
    chall[rng.choice(np.flatnonzero(~champ), 120, replace=False)] = True
    ids = np.arange(n)
    return gate(pd.DataFrame({"id": ids, "correct": chall}), pd.DataFrame({"id": ids, "correct": champ}))


def _diagnosis() -> FakeDiagnosis:
    return FakeDiagnosis(
        run="challenger",
        verdict="overfitting",
        findings=[
            Finding(
                code="overfitting",
                severity=Severity.WARNING,
                onset_epoch=12,
                evidence={"best_epoch": 12, "gap": np.float64(0.031), "n": np.int64(20)},
                message="val_loss has risen since epoch 12 | while loss kept falling",
                causes=("too many epochs for the data",),
                remedies=("early stopping on val_loss",),
            )
        ],
        plateau_onset_epoch=10,
        plateau_level=np.float64(0.88),
        plateau_spread=0.004,
        best_epoch=12,
        extrapolation=FakeExtrapolation(
            epochs=np.arange(21, 31),
            predictions=np.linspace(0.89, 0.895, 10),
            lower=np.linspace(0.88, 0.87, 10),
            upper=np.linspace(0.90, 0.92, 10),
        ),
    )


def test_render_report_writes_all_files(tmp_path):
    g = _gate_result()
    extra = Finding("series_stall", Severity.INFO, None, {"n": 3}, "the last 3 retrains did not improve")
    paths = render_report(
        tmp_path / "report",
        challenger=_curve("challenger", -0.01),
        diagnosis=_diagnosis(),
        champion=_curve("champion", seed=1),
        recent=[_curve(f"r{i}", seed=10 + i) for i in range(3)],
        gate_result=g,
        findings=[extra],
        title="MNIST retrain",
    )
    assert isinstance(paths, ReportPaths)
    for p in (paths.markdown, paths.html, paths.png, paths.json):
        assert p.exists() and p.stat().st_size > 0 and p.parent == tmp_path / "report"
    # No temporary files left behind.
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
        "val_curves.png",
    ]

    with Image.open(paths.png) as im:
        im.verify()
    with Image.open(paths.png) as im:
        assert im.format == "PNG" and im.size[0] > 300

    md = paths.markdown.read_text(encoding="utf-8")
    assert "# MNIST retrain" in md
    assert "verdict: overfitting" in md
    assert "gate: regression" in md
    assert "0.8710" in md and "0.8890" in md and "-1.80" in md  # accuracies and delta in points
    assert "mcnemar_chi2_cc" in md and "300 / 120" in md
    assert g.finding.message in md
    assert "| `overfitting` | warning | 12 |" in md
    assert "\\|" in md  # the pipe in a message is escaped inside the table
    assert "early stopping on val_loss" in md and "too many epochs for the data" in md
    assert "![validation accuracy](val_curves.png)" in md
    # Most severe first: the gate's critical regression before the warning and the info.
    assert md.index("### regression") < md.index("### overfitting") < md.index("### series_stall")

    page = paths.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert '<img src="val_curves.png"' in page
    assert "regression" in page and "0.8710" in page

    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["verdict"] == "overfitting"
    assert data["gate"]["decision"] == "regression"
    assert data["gate"]["discordant"] == [300, 120]
    assert [f["code"] for f in data["findings"]] == ["regression", "overfitting", "series_stall"]
    assert data["findings"][1]["evidence"] == {"best_epoch": 12, "gap": 0.031, "n": 20}
    assert data["diagnosis"]["plateau_level"] == pytest.approx(0.88)
    assert data["diagnosis"]["extrapolation"]["epochs"][0] == 21
    assert data["curves"][0]["metrics"]["val_accuracy"][3] is None  # NaN -> null
    assert [c["role"] for c in data["curves"]] == ["challenger", "champion", "recent", "recent", "recent"]
    # Round trip: what was written is exactly what build_report_content returns.
    assert json.loads(json.dumps(data)) == data


def test_report_without_champion_gate_or_diagnosis_fields(tmp_path):
    class Bare:  # a diagnosis with almost nothing in it
        verdict = "healthy"

    paths = render_report(tmp_path, challenger=_curve("only"), diagnosis=Bare())
    md = paths.markdown.read_text(encoding="utf-8")
    assert "verdict: healthy" in md and "No findings." in md and "The gate was not run." in md
    with Image.open(paths.png) as im:
        im.verify()
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["gate"] is None and data["champion_run"] is None and data["findings"] == []


def test_first_champion_gate_and_rerender_replaces_files(tmp_path):
    ids = np.arange(100)
    g = gate(pd.DataFrame({"id": ids, "correct": ids % 10 != 0}), None)
    render_report(tmp_path, challenger=_curve("a"), diagnosis=None, title="first")
    paths = render_report(tmp_path, challenger=_curve("a"), diagnosis=None, gate_result=g, title="second")
    md = paths.markdown.read_text(encoding="utf-8")
    assert md.startswith("# second")
    assert "first_champion" in md and "0.9000" in md
    assert len(list(tmp_path.iterdir())) == 4


def test_content_is_json_serialisable_with_numpy_everywhere():
    d = _diagnosis()
    d.plateau_spread = np.float32("nan")
    content = build_report_content(challenger=_curve("c"), diagnosis=d)
    text = json.dumps(content, allow_nan=False)
    assert json.loads(text)["diagnosis"]["plateau_spread"] is None


@dataclass(frozen=True)
class FakePointForecast:
    """Shape of ``pipelines.curves.extrapolate.Extrapolation``: one forecast at the budget."""

    budget: int
    value_at_budget: float
    value_std: float
    asymptote: float
    families: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "value_at_budget": self.value_at_budget, "asymptote": self.asymptote}


def test_point_forecast_extrapolation_and_loss_monitor(tmp_path):
    d = _diagnosis()
    d.extrapolation = FakePointForecast(60, np.float64(0.91), 0.004, 0.912, families={"exp3": object()})
    paths = render_report(tmp_path / "a", challenger=_curve("c"), diagnosis=d)
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    # The object's own summary is used, not its raw fields (which hold unserialisable fits).
    assert data["diagnosis"]["extrapolation"] == {"budget": 60, "value_at_budget": 0.91, "asymptote": 0.912}
    with Image.open(paths.png) as im:
        im.verify()
    # A diagnosis that monitored val_loss: its plateau level is in loss units; still renders.
    d.monitor = "val_loss"
    d.plateau_level = 0.35
    paths = render_report(tmp_path / "b", challenger=_curve("c"), diagnosis=d)
    with Image.open(paths.png) as im:
        im.verify()
