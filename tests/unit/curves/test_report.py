"""Tests for the report writer (markdown, HTML, PNG, JSON) on the engine's real objects.

Diagnoses come from :func:`pipelines.curves.diagnose.diagnose` on the real-curve fixtures
(``tests/fixtures/curves``) or on small synthetic curves, gate results from
:func:`pipelines.curves.gate.gate` on synthetic prediction frames, forecasts from
:func:`pipelines.curves.extrapolate.extrapolate`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from pipelines.curves import report as report_module
from pipelines.curves.batch import EPOCH_CONVENTION, report_dir_name
from pipelines.curves.diagnose import Diagnosis, diagnose
from pipelines.curves.extrapolate import extrapolate
from pipelines.curves.gate import gate
from pipelines.curves.io import load_curve
from pipelines.curves.report import ReportPaths, build_report_content, plot_val_curves, render_report
from pipelines.curves.types import Curve, Finding, Severity

FIXTURES = Path(__file__).parents[2] / "fixtures" / "curves"
# 40 epochs of a bottlenecked MLP: val_loss rises from epoch 20 (overfitting) and val_accuracy has
# stalled since epoch 16 (plateau): both shadings at once.
STALLED = "plateau-bottleneck-2-s0.csv"
CONVERGED = "healthy-digits-cnn-s0.csv"  # 25 epochs, converged since epoch 15
OSCILLATING = "lr-high-adam-0.02-s0.csv"  # 40 epochs, a flat tail under an oscillation verdict


def _fixture(name: str) -> Curve:
    label = json.loads((FIXTURES / "labels.json").read_text())[name]
    return load_curve(FIXTURES / name, epoch_budget=label["epoch_budget"], num_classes=label["num_classes"])


def _synthetic(run: str, shift: float = 0.0, epochs: int = 20, seed: int = 0) -> Curve:
    """A smooth rising curve with noise and one missing epoch (epoch 4)."""
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    val = 0.9 - 0.5 * np.exp(-e / 4) + shift + rng.normal(0, 0.003, epochs)
    val[3] = np.nan  # a missing epoch must not break the plot or the JSON
    return Curve(
        run=run,
        metrics={"val_accuracy": val, "accuracy": val + 0.02, "val_loss": 1.0 - val, "loss": 0.98 - val},
        epochs=e.astype(np.int64),
        epoch_budget=epochs,
        num_classes=10,
    )


def _regression_gate():
    """Champion 0.889 on 10,000 examples; the challenger loses 300 of them and wins 120."""
    rng = np.random.default_rng(0)
    n = 10_000
    champ = np.zeros(n, dtype=bool)
    champ[rng.choice(n, 8_890, replace=False)] = True
    chall = champ.copy()
    chall[rng.choice(np.flatnonzero(champ), 300, replace=False)] = False
    chall[rng.choice(np.flatnonzero(~champ), 120, replace=False)] = True
    ids = np.arange(n)
    return gate(pd.DataFrame({"id": ids, "correct": chall}), pd.DataFrame({"id": ids, "correct": champ}))


def _finding(diagnosis: Diagnosis, code: str) -> Finding:
    return next(f for f in diagnosis.findings if f.code == code)


def _legend(fig) -> dict[str, object]:
    """Legend label -> its handle, for the figure's only axes."""
    handles, labels = fig.axes[0].get_legend_handles_labels()
    return dict(zip(labels, handles, strict=True))


def test_render_report_writes_all_files(tmp_path):
    curve = _fixture(STALLED)
    d = diagnose(curve, extrapolate=True)
    assert d.codes == ["overfitting", "plateau"] and d.stalled and d.extrapolation is not None
    overfitting, plateau = _finding(d, "overfitting"), _finding(d, "plateau")
    g = _regression_gate()
    extra = Finding(
        "series_stall", Severity.INFO, None, {"n": 3}, "the last 3 retrains did not improve | champion kept"
    )
    paths = render_report(
        tmp_path / "report",
        challenger=curve,
        diagnosis=d,
        champion=_synthetic("champion", seed=1),
        recent=[_synthetic(f"r{i}", seed=10 + i) for i in range(3)],
        gate_result=g,
        findings=[extra, g.finding],  # as steps.run_compare passes it: the gate's finding too
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
    assert md.startswith("# MNIST retrain\n")
    assert EPOCH_CONVENTION in md
    assert "verdict: overfitting; gate: regression (not promoted)" in md
    assert "0.8710" in md and "0.8890" in md and "-1.80" in md  # accuracies and delta in points
    assert "mcnemar_chi2_cc" in md and "300 / 120" in md
    assert g.finding is not None and g.finding.message in md
    assert f"| `overfitting` | warning | {overfitting.onset_epoch} |" in md
    assert "retrains did not improve \\| champion kept" in md  # a pipe is escaped inside the table
    assert overfitting.remedies[0] in md and overfitting.causes[0] in md
    assert f"best epoch: {d.best_epoch} (by val_accuracy)" in md
    # The plateau says how long it lasted: the finding's own count, up to the run's last epoch.
    flat = plateau.evidence["flat_epochs"]
    assert flat == 40 - d.plateau_onset_epoch
    assert (
        f"stalled on a plateau since epoch {d.plateau_onset_epoch}: val_accuracy {d.plateau_level:.3f}" in md
    )
    assert f"{flat} epochs on the plateau before the end (epoch 40)" in md
    assert f"extrapolated val_accuracy at epoch 40: {d.extrapolation.value_at_budget:.3f}" in md
    assert "![validation accuracy](val_curves.png)" in md
    # Most severe first: the gate's critical regression, the warnings, then the info; the gate's
    # finding, given twice, is shown once.
    assert md.count("### regression") == 1
    assert md.index("### regression") < md.index("### overfitting") < md.index("### plateau")
    assert md.index("### plateau") < md.index("### series_stall")

    page = paths.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert '<img src="val_curves.png"' in page
    assert "Epochs are counted from 1" in page and "<code>epoch = N - 1</code>" in page
    assert "regression" in page and "0.8710" in page
    assert f"{flat} epochs on the plateau before the end" in page

    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data == build_report_content(
        challenger=curve,
        diagnosis=d,
        champion=_synthetic("champion", seed=1),
        recent=[_synthetic(f"r{i}", seed=10 + i) for i in range(3)],
        gate_result=g,
        findings=[extra, g.finding],
        title="MNIST retrain",
    )
    assert data["verdict"] == "overfitting" and data["epoch_convention"] == EPOCH_CONVENTION
    assert data["gate"]["decision"] == "regression" and data["gate"]["passed"] is False
    assert data["gate"]["discordant"] == [300, 120]
    assert data["gate"]["challenger_accuracy"] == pytest.approx(0.871)
    assert [f["code"] for f in data["findings"]] == ["regression", "overfitting", "plateau", "series_stall"]
    assert data["findings"][1]["evidence"] == json.loads(json.dumps(overfitting.evidence))
    assert data["findings"][1]["severity"] == "warning"
    diag = data["diagnosis"]
    assert diag["plateau_level"] == pytest.approx(d.plateau_level)
    assert diag["plateau_kind"] == "stalled" and diag["plateau_epochs"] == flat and diag["last_epoch"] == 40
    assert diag["extrapolation"]["budget"] == 40
    assert diag["extrapolation"]["value_at_budget"] == pytest.approx(d.extrapolation.value_at_budget)
    assert data["curves"][1]["metrics"]["val_accuracy"][3] is None  # the champion's NaN -> null
    assert [c["role"] for c in data["curves"]] == ["challenger", "champion", "recent", "recent", "recent"]


def test_plot_shades_the_stall_and_the_overfitting_and_dashes_the_extrapolation():
    curve = _fixture(STALLED)
    d = diagnose(curve, extrapolate=True)
    onset, flat = d.plateau_onset_epoch, _finding(d, "plateau").evidence["flat_epochs"]
    overfit_onset = _finding(d, "overfitting").onset_epoch
    fig = plot_val_curves(curve, diagnosis=d, champion=_synthetic("champion"), findings=d.findings)
    legend = _legend(fig)
    assert f"challenger ({curve.run})" in legend and "champion (champion)" in legend
    stall = legend[f"stalled since epoch {onset} ({flat} epochs before the end)"]
    assert to_rgb(stall.get_facecolor()) == to_rgb("gold")
    # The overfitting region starts where the finding says (val_loss's best epoch), not at the
    # best val_accuracy epoch.
    assert overfit_onset != d.best_epoch
    overfit = legend[f"overfitting since epoch {overfit_onset}"]
    assert to_rgb(overfit.get_facecolor()) == to_rgb("red") and overfit.get_hatch() == "//"
    assert f"best epoch {d.best_epoch}" in legend
    # A completed run is extrapolated as far again: dashed, from the last epoch to twice it.
    ex_line = legend["extrapolation to epoch 80"]
    assert ex_line.get_linestyle() == "--"
    x = ex_line.get_xdata()
    assert x[0] == 40 and x[-1] == 80
    np.testing.assert_allclose(ex_line.get_ydata(), d.extrapolation.predict(x))
    assert f"extrapolated limit {d.extrapolation.asymptote:.3f}" in legend
    assert legend["champion (champion)"].get_linestyle() == "--"
    # Without an overfitting finding, no overfitting region.
    without = [f for f in d.findings if f.code != "overfitting"]
    assert not any(
        k.startswith("overfitting") for k in _legend(plot_val_curves(curve, diagnosis=d, findings=without))
    )


@pytest.mark.parametrize(
    ("name", "kind", "text", "colour"),
    [
        (CONVERGED, "converged", "converged", "palegreen"),
        (OSCILLATING, "flat", "flat (no improvement beyond noise)", "0.85"),
    ],
)
def test_a_flat_tail_that_is_not_a_stall_is_not_called_one(tmp_path, name, kind, text, colour):
    curve = _fixture(name)
    d = diagnose(curve)
    assert not d.stalled and d.plateau_onset_epoch is not None
    last = int(curve.epochs[-1])
    length = last - d.plateau_onset_epoch
    if kind == "converged":  # the healthy finding's own count agrees with the curve
        assert _finding(d, "healthy").evidence["flat_epochs"] == length
    paths = render_report(tmp_path, challenger=curve, diagnosis=d)
    md = paths.markdown.read_text(encoding="utf-8")
    assert f"- {text} since epoch {d.plateau_onset_epoch}: val_accuracy" in md
    assert f"{length} epochs on the plateau before the end (epoch {last})" in md
    assert "stalled" not in md
    legend = _legend(plot_val_curves(curve, diagnosis=d, findings=d.findings))
    span = legend[f"{kind} since epoch {d.plateau_onset_epoch} ({length} epochs before the end)"]
    assert to_rgb(span.get_facecolor()) == to_rgb(colour)
    assert not any(k.startswith("stalled") for k in legend)
    assert json.loads(paths.json.read_text())["diagnosis"]["plateau_kind"] == kind


def test_report_without_champion_gate_or_findings(tmp_path):
    curve = _synthetic("only")
    d = Diagnosis(run="only", verdict="healthy", findings=[])  # what diagnose returns with nothing found
    paths = render_report(tmp_path, challenger=curve, diagnosis=d)
    md = paths.markdown.read_text(encoding="utf-8")
    assert "verdict: healthy" in md and "No findings." in md and "The gate was not run." in md
    assert "gate:" not in md and "since epoch" not in md
    with Image.open(paths.png) as im:
        im.verify()
    data = json.loads(paths.json.read_text(encoding="utf-8"))
    assert data["gate"] is None and data["champion_run"] is None and data["findings"] == []
    assert data["diagnosis"]["plateau_kind"] is None and data["diagnosis"]["plateau_epochs"] is None


def test_first_champion_gate_and_rerender_replaces_files(tmp_path):
    curve = _synthetic("a")
    d = diagnose(curve)
    ids = np.arange(100)
    g = gate(pd.DataFrame({"id": ids, "correct": ids % 10 != 0}), None)
    render_report(tmp_path, challenger=curve, diagnosis=d, title="first")
    paths = render_report(tmp_path, challenger=curve, diagnosis=d, gate_result=g, title="second")
    md = paths.markdown.read_text(encoding="utf-8")
    assert md.startswith("# second")
    assert "decision: first_champion (challenger promoted)" in md and "0.9000" in md
    assert "| champion accuracy | n/a |" in md and "| test examples | 100 |" in md
    assert len(list(tmp_path.iterdir())) == 4


def test_gate_seed_rule_row_with_the_champion_alone_and_with_seeds(tmp_path):
    curve = _synthetic("c")
    d = diagnose(curve)
    alone = _regression_gate()
    assert alone.seed_spread is not None and alone.seed_spread.sd is None
    md = render_report(tmp_path / "a", challenger=curve, diagnosis=d, gate_result=alone).markdown
    row = (
        f"| champion config (the champion's seed only) | mean {alone.seed_spread.mean:.4f}, "
        f"lower bound {alone.seed_spread.lower_bound:.4f} |"
    )
    assert row in md.read_text(encoding="utf-8")
    ids = np.arange(1000)
    champion = pd.DataFrame({"id": ids, "correct": ids % 10 != 0})  # 0.900
    challenger = pd.DataFrame({"id": ids, "correct": ids % 10 > 1})  # 0.800
    seeds = gate(challenger, champion, champion_seed_accuracies={1: 0.900, 2: 0.905, 3: 0.895})
    s = seeds.seed_spread
    assert s is not None and s.n_seeds == 3 and s.sd is not None
    md = render_report(tmp_path / "b", challenger=curve, diagnosis=d, gate_result=seeds).markdown
    spread = f"mean {s.mean:.4f}, sd {s.sd:.4f}, lower bound {s.lower_bound:.4f}"
    row = f"| champion config over 3 seeds | {spread} |"
    assert row in md.read_text(encoding="utf-8")


def test_a_failed_write_keeps_the_files_not_yet_replaced(tmp_path, monkeypatch):
    curve = _synthetic("c")
    d = diagnose(curve)
    render_report(tmp_path, challenger=curve, diagnosis=d, title="first")
    real = report_module.atomic_write_text

    def fail_on_markdown(path, text, *args, **kwargs):
        if Path(path).name == "report.md":
            raise OSError("disk full")
        return real(path, text, *args, **kwargs)

    monkeypatch.setattr(report_module, "atomic_write_text", fail_on_markdown)
    with pytest.raises(OSError, match="disk full"):
        render_report(tmp_path, challenger=curve, diagnosis=d, title="second")
    assert json.loads((tmp_path / "report.json").read_text())["title"] == "second"  # written before
    assert (tmp_path / "report.md").read_text().startswith("# first")
    assert "<h1>first</h1>" in (tmp_path / "report.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.json",
        "report.md",
        "val_curves.png",
    ]


def test_content_is_json_serialisable_with_numpy_and_nan():
    curve = _fixture(STALLED)
    d = dataclasses.replace(diagnose(curve), plateau_spread=float("nan"))
    content = build_report_content(challenger=curve, diagnosis=d)
    text = json.dumps(content, allow_nan=False)
    assert json.loads(text)["diagnosis"]["plateau_spread"] is None
    assert isinstance(content["curves"][0]["epochs"][0], int)


def test_extrapolation_to_the_budget_of_a_stopped_run_has_a_band(tmp_path):
    curve = _fixture("lr-low-sgd-1e-3-s0.csv")  # 30 epochs, still climbing
    d = diagnose(curve)
    x, y = curve.epochs, curve.metrics["val_accuracy"]
    forecast = extrapolate(x, y, 60, higher_is_better=True)
    d = dataclasses.replace(d, extrapolation=forecast)
    fig = plot_val_curves(curve, diagnosis=d, findings=d.findings)
    line = _legend(fig)["extrapolation to epoch 60"]
    assert line.get_linestyle() == "--" and line.get_xdata()[0] == 30 and line.get_xdata()[-1] == 60
    # The band: zero width at the last epoch, ± value_std at the budget.
    (band,) = fig.axes[0].collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.max() - ys.min() >= 2 * forecast.value_std > 0
    paths = render_report(tmp_path, challenger=curve, diagnosis=d)
    md = paths.markdown.read_text(encoding="utf-8")
    assert (
        f"extrapolated val_accuracy at epoch 60: {forecast.value_at_budget:.3f} ± {forecast.value_std:.3f}"
        f"; long-run limit {forecast.asymptote:.3f}" in md
    )
    assert json.loads(paths.json.read_text())["diagnosis"]["extrapolation"]["budget"] == 60


def test_a_loss_only_run_is_drawn_in_val_loss_with_what_its_diagnosis_read(tmp_path):
    # A CSVLogger file without accuracy columns drew its plateau and overfitting bands on an empty
    # 0-1 accuracy axis ("no val_accuracy logged"): the PNG showed no curve at all.
    rng = np.random.default_rng(0)
    e = np.arange(1, 31)
    val_loss = np.where(e < 10, 2.3 - 0.18 * e, 0.68) + rng.normal(0, 0.004, e.size)
    curve = Curve(
        "loss-only",
        {"loss": val_loss - 0.3 * (e / 30), "val_loss": val_loss},
        e.astype(np.int64),
        epoch_budget=30,
    )
    d = diagnose(curve, extrapolate=True)
    assert d.monitor == "val_loss" and d.plateau_onset_epoch is not None and d.extrapolation is not None
    fig = plot_val_curves(curve, diagnosis=d, findings=d.findings)
    ax = fig.axes[0]
    assert not ax.texts and ax.get_ylabel() == "val_loss"
    run_line = next(line for line in ax.lines if line.get_label() == "run (loss-only)")
    np.testing.assert_allclose(run_line.get_ydata(), val_loss)
    labels = _legend(fig)
    assert f"best epoch {d.best_epoch}" in labels and any(k.startswith("extrapolation") for k in labels)
    assert ax.collections  # the plateau's level band, in the loss's own units
    paths = render_report(tmp_path, challenger=curve, diagnosis=d)
    md = paths.markdown.read_text(encoding="utf-8")
    assert f"best epoch: {d.best_epoch} (by val_loss)" in md and ": val_loss 0.6" in md
    with Image.open(paths.png) as im:
        im.verify()


def test_plateau_length_is_the_findings_own_count_when_an_epoch_is_missing(tmp_path):
    curve = _fixture(STALLED)
    val = curve.metrics["val_accuracy"].copy()
    val[34] = np.nan  # epoch 35 not logged: 23 logged values after the onset, 24 epochs of run
    curve = dataclasses.replace(curve, metrics=curve.metrics | {"val_accuracy": val})
    d = diagnose(curve)
    plateau = _finding(d, "plateau")
    flat = plateau.evidence["flat_epochs"]
    assert flat == 40 - d.plateau_onset_epoch  # epochs of the run, not values logged
    md = render_report(tmp_path, challenger=curve, diagnosis=d).markdown.read_text(encoding="utf-8")
    # The diagnosis line says what the finding's message says, not a second count.
    assert f"{flat} epochs on the plateau before the end" in plateau.message
    assert f"{flat} epochs on the plateau before the end (epoch 40)" in md
    assert f"{flat + 1} epochs on the plateau" not in md


def test_a_curve_validated_every_third_epoch_is_drawn_as_one_line() -> None:
    # fit(..., validation_freq=3): val_accuracy only after epochs 3, 6, ...; NaN between would
    # leave a line with no segment at all.
    curve = _fixture(STALLED)
    val = curve.metrics["val_accuracy"].copy()
    val[curve.epochs % 3 != 0] = np.nan
    curve = dataclasses.replace(curve, metrics=curve.metrics | {"val_accuracy": val})
    fig = plot_val_curves(curve, diagnosis=diagnose(curve))
    # Without a champion the run is not a challenger: its legend says "run".
    line = next(ln for ln in fig.axes[0].get_lines() if str(ln.get_label()).startswith("run ("))
    xs, ys = line.get_data()
    assert list(xs) == [float(e) for e in curve.epochs if e % 3 == 0]
    assert np.all(np.isfinite(ys))


def test_a_diverged_run_is_drawn_with_its_onset_and_without_a_flat_tail_or_forecast() -> None:
    t = np.arange(30)
    curve = Curve(
        "diverged",
        {
            "loss": np.where(t < 20, 0.5 - 0.01 * t, np.nan),
            "val_loss": np.where(t < 20, 0.6 - 0.01 * t, np.nan),
            "val_accuracy": np.where(t < 20, 0.8 + 0.003 * np.sin(t), 0.1),
        },
        t + 1,
        60,
    )
    d = diagnose(curve, extrapolate=True)
    legend = _legend(plot_val_curves(curve, diagnosis=d, findings=d.findings))
    assert "divergence from epoch 21" in legend, sorted(legend)
    assert not any(k.startswith(("flat", "stalled", "converged", "extrapolat")) for k in legend), sorted(
        legend
    )


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("logs/...csv", "run"),
        ("..csv", "run"),
        ("..", "run"),
        ("", "run"),
        ("../logs/run-1.csv", "run-1"),
        ("a/../b", "a_.._b"),
        ("a\\b", "a_b"),
        ("3f2a9c", "3f2a9c"),
    ],
)
def test_a_report_folder_name_is_one_path_component_never_dots(source, name):
    assert report_dir_name(source) == name


def test_the_reports_say_what_the_reader_changed_in_the_file(tmp_path):
    # fit() called three times on one model, appending to one CSVLogger file: read as one run, its
    # epochs renumbered. That was said on stderr only; the report's epoch 20 was no row "epoch = 19".
    from pipelines.curves import batch
    from pipelines.curves.io import load_curve

    path = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-mlp-fit-called-three-times-append.csv"
    curve = load_curve(path)
    assert len(curve.read_notes) == 1 and "3 fit() calls" in curve.read_notes[0]
    d = diagnose(curve)
    paths = render_report(tmp_path / "run", challenger=curve, diagnosis=d)
    assert f"_Read from the file: {curve.read_notes[0]}_" in paths.markdown.read_text(encoding="utf-8")
    assert "Read from the file: " in paths.html.read_text(encoding="utf-8")
    assert json.loads(paths.json.read_text())["read_notes"] == list(curve.read_notes)
    rows = batch.to_json([batch.RunDiagnosis(str(path), curve, d)])
    assert rows[0]["read_notes"] == list(curve.read_notes)
    assert (
        load_curve(Path(__file__).parents[2] / "fixtures" / "curves" / "bad-scaling-adam-s0.csv").read_notes
        == ()
    )
