"""Human- and machine-readable report of one run's diagnosis and its regression gate.

``render_report`` writes four files into one folder, each atomically (temporary sibling, then
:func:`os.replace`, via :mod:`pipelines.io_utils`):

- ``report.md``: verdict, the epoch convention, findings table, each finding's plain sentence with
  causes and remedies, the gate decision with its numbers, and the curve image;
- ``report.html``: the same content as one standalone HTML page (no external assets but the PNG);
- ``val_curves.png``: validation accuracy of the challenger, champion and recent runs, with the
  flat tail (stall or convergence), the overfitting region and the extrapolation drawn in;
- ``report.json``: all of the above as JSON (numpy types converted, NaN -> null).

Markdown and HTML are both rendered from one structured ``content`` dict (the same one dumped to
JSON), so the three never disagree and no markdown library is needed.

Inputs are the engine's own types: :class:`pipelines.curves.diagnose.Diagnosis`,
:class:`pipelines.curves.types.Curve` / :class:`~pipelines.curves.types.Finding`,
:class:`pipelines.curves.gate.GateResult` (read in :func:`_gate_content` only) and the diagnosis'
:class:`pipelines.curves.extrapolate.Extrapolation`.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.curves.batch import EPOCH_CONVENTION
from pipelines.curves.detectors import validation_frequency
from pipelines.curves.diagnose import Diagnosis
from pipelines.curves.findings import Code
from pipelines.curves.io import loss_source
from pipelines.curves.types import Curve, Finding, Severity
from pipelines.io_utils import atomic_write_bytes, atomic_write_text, to_jsonable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipelines.curves.extrapolate import Extrapolation
    from pipelines.curves.gate import GateResult

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
PNG_NAME = "val_curves.png"
JSON_NAME = "report.json"

_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}

# How the report names a flat tail: a stall (``plateau`` finding), a convergence (``healthy``
# finding), or a flat tail under another verdict (e.g. an oscillating or dead run), named neutrally.
_PLATEAU_TEXT = {
    "stalled": "stalled on a plateau",
    "converged": "converged",
    "flat": "flat (no improvement beyond noise)",
}
# (fill, band) colours of the flat tail in the plot.
_PLATEAU_COLOURS = {
    "stalled": ("gold", "goldenrod"),
    "converged": ("palegreen", "green"),
    "flat": ("0.85", "0.5"),
}
# Margins of the 8 x 4.5 in curve plot (figure fractions): what tight_layout() gives it, rounded out.
_CURVE_MARGINS = {"left": 0.095, "right": 0.98, "bottom": 0.13, "top": 0.92}


@dataclass(frozen=True)
class ReportPaths:
    """Where ``render_report`` wrote its files (all inside one ``out_dir``)."""

    markdown: Path
    html: Path
    png: Path
    json: Path


def render_report(
    out_dir: Path,
    *,
    challenger: Curve,
    diagnosis: Diagnosis,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    gate_result: GateResult | None = None,
    findings: Sequence[Finding] = (),
    title: str = "curvewatch report",
) -> ReportPaths:
    """Write ``report.md``, ``report.html``, ``val_curves.png`` and ``report.json`` into ``out_dir``.

    Findings shown are the diagnosis' own, then ``findings`` (e.g. from ``compare_curves``), then
    the gate's ``regression`` finding, with exact duplicates (same code and message) dropped, and
    sorted critical -> warning -> info (stable within a severity).

    Args:
        out_dir: output folder; created if missing. Existing report files are replaced.
        challenger: the run being reported on (its ``val_accuracy`` is drawn bold).
        diagnosis: the challenger's diagnosis (:func:`pipelines.curves.diagnose.diagnose`).
        champion: the production model's curve, drawn dashed black, or None.
        recent: other recent runs' curves, drawn thin and light.
        gate_result: the regression gate's result (:func:`pipelines.curves.gate.gate`), or None
            when the gate was not run.
        findings: extra findings (e.g. curve regression, series stall, tuning optimism).
        title: the report's heading.

    Returns:
        The four paths written.

    Raises:
        OSError: ``out_dir`` cannot be created or written; files already written by this call
            stay, any file not yet replaced keeps its previous content.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ReportPaths(
        markdown=out_dir / MARKDOWN_NAME,
        html=out_dir / HTML_NAME,
        png=out_dir / PNG_NAME,
        json=out_dir / JSON_NAME,
    )
    all_findings = _collect_findings(diagnosis, findings, gate_result)
    content = build_report_content(
        challenger=challenger,
        diagnosis=diagnosis,
        champion=champion,
        recent=recent,
        gate_result=gate_result,
        findings=findings,
        title=title,
    )
    fig = plot_val_curves(
        challenger, diagnosis=diagnosis, champion=champion, recent=recent, findings=all_findings
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    # The image first: the markdown and HTML link to it, so it should exist when they appear.
    atomic_write_bytes(paths.png, buf.getvalue())
    atomic_write_text(paths.json, json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False))
    atomic_write_text(paths.markdown, render_markdown(content))
    atomic_write_text(paths.html, render_html(content))
    return paths


def build_report_content(
    *,
    challenger: Curve,
    diagnosis: Diagnosis,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    gate_result: GateResult | None = None,
    findings: Sequence[Finding] = (),
    title: str = "curvewatch report",
) -> dict[str, Any]:
    """The report as one JSON-serialisable dict (what ``report.json`` holds).

    Keys: ``title``, ``run``, ``champion_run``, ``recent_runs``, ``verdict``,
    ``epoch_convention`` (how epochs are numbered, :data:`pipelines.curves.batch.EPOCH_CONVENTION`),
    ``loss_note`` (where ``loss`` / ``val_loss`` come from when not the logged losses,
    :func:`pipelines.curves.io.penalty_free_losses`; else None), ``read_notes`` (what the reader
    changed in or left out of the run's file: :attr:`pipelines.curves.types.Curve.read_notes`),
    ``diagnosis`` (monitor, flat tail: onset epoch, level, spread, kind ``stalled`` / ``converged``
    / ``flat`` and ``plateau_epochs`` it lasted before the end; best epoch; extrapolation),
    ``findings`` (list of dicts with ``code``, ``severity``, ``onset_epoch``, ``evidence``,
    ``message``, ``causes``, ``remedies``), ``gate`` (the gate's numbers, or None), ``images``
    (file names) and ``curves`` (per run: epochs and metrics, NaN as null).

    Args: as :func:`render_report`.

    Returns:
        Plain Python data: str, int, float (finite), bool, None, lists and dicts only.
    """
    all_findings = _collect_findings(diagnosis, findings, gate_result)
    curves = [_curve_dict(challenger, "challenger")]
    if champion is not None:
        curves.append(_curve_dict(champion, "champion"))
    curves += [_curve_dict(c, "recent") for c in recent]
    return {
        "title": title,
        "run": challenger.run,
        "champion_run": None if champion is None else champion.run,
        "recent_runs": [c.run for c in recent],
        "verdict": diagnosis.verdict,
        "epoch_convention": EPOCH_CONVENTION,
        "loss_note": _loss_note(challenger),
        "read_notes": list(challenger.read_notes),
        "diagnosis": _diagnosis_content(diagnosis, challenger),
        "findings": [_finding_dict(f) for f in all_findings],
        "gate": None if gate_result is None else _gate_content(gate_result),
        "images": {"val_curves": PNG_NAME},
        "curves": curves,
    }


def _loss_note(curve: Curve) -> str | None:
    kind = loss_source(curve.metrics)
    if kind is None:
        return None
    return (
        f"`loss` / `val_loss` are the logged `{kind}` / `val_{kind}`: the logged losses include a "
        "regularisation penalty (kept as `loss_regularised` / `val_loss_regularised`)."
    )


def render_markdown(content: Mapping[str, Any]) -> str:
    """Markdown text of a report built by :func:`build_report_content`."""
    out: list[str] = [f"# {content['title']}", ""]
    out.append(f"Run: `{content['run']}`")
    if content["champion_run"]:
        out.append(f"  \nChampion: `{content['champion_run']}`")
    if content["recent_runs"]:
        out.append(f"  \nRecent runs compared: {len(content['recent_runs'])}")
    out += ["", f"_{content['epoch_convention']}_"]
    if content.get("loss_note"):
        out += ["", f"_{content['loss_note']}_"]
    for note in content.get("read_notes") or ():
        out += ["", f"_Read from the file: {note}_"]
    out += ["", "## Verdict", ""]
    out.append(f"**{_verdict_text(content)}**")
    lines = _diagnosis_lines(content["diagnosis"])
    if lines:
        out.append("")
        out += [f"- {line}" for line in lines]
    out += ["", "## Findings", ""]
    fnds = content["findings"]
    if not fnds:
        out.append("No findings.")
    else:
        out.append("| code | severity | onset epoch | finding | evidence |")
        out.append("| --- | --- | --- | --- | --- |")
        for f in fnds:
            cells = [
                f"`{f['code']}`",
                f["severity"],
                "" if f["onset_epoch"] is None else str(f["onset_epoch"]),
                f["message"],
                _evidence_text(f["evidence"]),
            ]
            out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
        for f in fnds:
            out += ["", f"### {f['code']} ({f['severity']})", "", f["message"]]
            if f["causes"]:
                out += ["", "Likely causes:", ""] + [f"- {c}" for c in f["causes"]]
            if f["remedies"]:
                out += ["", "What to try:", ""] + [f"- {r}" for r in f["remedies"]]
    out += ["", "## Regression gate", ""]
    g = content["gate"]
    if g is None:
        out.append("The gate was not run.")
    else:
        out.append(f"**{_gate_headline(g)}**")
        out += ["", "| quantity | value |", "| --- | --- |"]
        out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in _gate_rows(g)]
    img = content["images"]["val_curves"]
    out += ["", "## Curves", "", f"![validation accuracy]({img})", ""]
    out.append(f"Files: [{img}]({img}), [{JSON_NAME}]({JSON_NAME}), [{HTML_NAME}]({HTML_NAME})")
    out.append("")
    return "\n".join(out)


def render_html(content: Mapping[str, Any]) -> str:
    """Standalone HTML page with the same content as :func:`render_markdown`."""
    e = html.escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(str(content['title']))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}.critical{color:#b00020}.warning{color:#a15c00}"
        ".note{color:#555;font-size:90%}img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{e(str(content['title']))}</h1>",
        f"<p>Run: <code>{e(str(content['run']))}</code>",
    ]
    if content["champion_run"]:
        out.append(f"<br>Champion: <code>{e(str(content['champion_run']))}</code>")
    if content["recent_runs"]:
        out.append(f"<br>Recent runs compared: {len(content['recent_runs'])}")
    out.append("</p>")
    out.append(f'<p class="note">{_html_inline_code(content["epoch_convention"])}</p>')
    if content.get("loss_note"):
        out.append(f'<p class="note">{_html_inline_code(content["loss_note"])}</p>')
    for note in content.get("read_notes") or ():
        out.append(f'<p class="note">Read from the file: {e(note)}</p>')
    out += ["<h2>Verdict</h2>", f"<p><strong>{e(_verdict_text(content))}</strong></p>"]
    lines = _diagnosis_lines(content["diagnosis"])
    if lines:
        out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in lines) + "</ul>")
    out.append("<h2>Findings</h2>")
    fnds = content["findings"]
    if not fnds:
        out.append("<p>No findings.</p>")
    else:
        out.append(
            "<table><tr><th>code</th><th>severity</th><th>onset epoch</th><th>finding</th>"
            "<th>evidence</th></tr>"
        )
        for f in fnds:
            onset = "" if f["onset_epoch"] is None else str(f["onset_epoch"])
            out.append(
                f"<tr><td><code>{e(f['code'])}</code></td>"
                f'<td class="{e(f["severity"])}">{e(f["severity"])}</td><td>{e(onset)}</td>'
                f"<td>{e(f['message'])}</td><td>{e(_evidence_text(f['evidence']))}</td></tr>"
            )
        out.append("</table>")
        for f in fnds:
            out.append(f"<h3>{e(f['code'])} ({e(f['severity'])})</h3><p>{e(f['message'])}</p>")
            if f["causes"]:
                out.append(
                    "<p>Likely causes:</p><ul>" + "".join(f"<li>{e(c)}</li>" for c in f["causes"]) + "</ul>"
                )
            if f["remedies"]:
                out.append(
                    "<p>What to try:</p><ul>" + "".join(f"<li>{e(r)}</li>" for r in f["remedies"]) + "</ul>"
                )
    out.append("<h2>Regression gate</h2>")
    g = content["gate"]
    if g is None:
        out.append("<p>The gate was not run.</p>")
    else:
        out.append(f"<p><strong>{e(_gate_headline(g))}</strong></p>")
        out.append("<table><tr><th>quantity</th><th>value</th></tr>")
        out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _gate_rows(g)]
        out.append("</table>")
    img = e(content["images"]["val_curves"])
    out += [
        "<h2>Curves</h2>",
        f'<p><img src="{img}" alt="validation accuracy"></p>',
        f'<p>Files: <a href="{img}">{img}</a>, <a href="{JSON_NAME}">{JSON_NAME}</a>, '
        f'<a href="{MARKDOWN_NAME}">{MARKDOWN_NAME}</a></p>',
        "</body></html>",
        "",
    ]
    return "\n".join(out)


def plot_val_curves(
    challenger: Curve,
    *,
    diagnosis: Diagnosis,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    findings: Sequence[Finding] = (),
) -> Figure:
    """Matplotlib ``Figure`` of ``val_accuracy`` per epoch (x: 1-based epochs, y: accuracy), or of
    the monitored metric (``val_loss``) for a run that logged no ``val_accuracy``.

    Challenger bold (its best epoch marked; labelled "run" when there is no champion, as for a
    file diagnosed alone), champion dashed black, recent runs thin and light.
    Shaded: the flat tail from ``diagnosis.plateau_onset_epoch`` to the challenger's last epoch,
    gold when it is a stall (``diagnosis.stalled``), green when it is a convergence (a ``healthy``
    finding), grey otherwise, with the band ``plateau_level ± plateau_spread``; hatched red from the
    ``overfitting`` finding's onset epoch (in ``findings``) to the end; a dash-dotted dark red line
    at the onset of a ``divergence`` or ``not_learning`` finding. The extrapolation
    (``diagnosis.extrapolation``) is drawn dashed (:func:`_extrapolation_xy`), with its long-run
    limit dotted. Level, band and extrapolation are drawn only when the diagnosis monitored the
    plotted metric (a ``val_loss`` level does not belong on an accuracy axis).

    Uses ``matplotlib.figure.Figure`` directly (no pyplot), so no global backend or figure
    registry is touched and nothing leaks between calls.

    Args:
        challenger: the run reported on.
        diagnosis: its diagnosis.
        champion: the production model's curve, or None.
        recent: other recent runs' curves.
        findings: all findings shown in the report (the diagnosis' and the cross-run ones).

    Returns:
        The figure, 800 x 450 pixels at its 100 dpi.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5), dpi=100)
    # Fixed margins instead of tight_layout(), which draws the whole figure once more to measure it
    # (about 0.03 s of every flow run): the labels here are fixed text and accuracies, so these fit.
    fig.subplots_adjust(**_CURVE_MARGINS)
    ax = fig.add_subplot(1, 1, 1)
    # val_accuracy, the metric the product reads; a run without it (a loss-only CSVLogger file)
    # shows the curve its diagnosis read instead of an empty accuracy axis under its plateau.
    metric = (
        "val_accuracy" if _xy(challenger, "val_accuracy") is not None else diagnosis.monitor or "val_accuracy"
    )
    for i, run in enumerate(recent):
        xy = _xy(run, metric)
        if xy is not None:
            ax.plot(*xy, color="0.6", lw=0.8, alpha=0.6, label="recent runs" if i == 0 else None)
    if champion is not None:
        xy = _xy(champion, metric)
        if xy is not None:
            ax.plot(*xy, color="black", ls="--", lw=1.5, label=f"champion ({champion.run})")
    xy_ch = _xy(challenger, metric)
    last_epoch = _last_epoch(challenger)
    if xy_ch is not None:
        # "challenger" only beside a champion: a file diagnosed alone is just the run.
        role = "challenger" if champion is not None else "run"
        ax.plot(*xy_ch, color="C0", lw=2.5, label=f"{role} ({challenger.run})")
    else:
        ax.text(0.5, 0.5, f"no {metric} logged", transform=ax.transAxes, ha="center")
    same_units = diagnosis.monitor == metric
    best = diagnosis.best_epoch
    if same_units and best is not None and xy_ch is not None:
        at = np.flatnonzero(xy_ch[0] == best)
        if at.size:
            ax.plot([best], [xy_ch[1][at[0]]], "*", color="C0", ms=11, label=f"best epoch {best}")

    onset = diagnosis.plateau_onset_epoch
    kind = _plateau_kind(diagnosis)
    if onset is not None and kind is not None and last_epoch is not None and last_epoch >= onset:
        fill, band = _PLATEAU_COLOURS[kind]
        length = _plateau_epochs(diagnosis, challenger)
        label = f"{kind} since epoch {onset} ({length} epochs before the end)"
        ax.axvspan(onset, last_epoch, color=fill, alpha=0.2, label=label)
        if same_units and diagnosis.plateau_level is not None:
            level, spread = diagnosis.plateau_level, diagnosis.plateau_spread or 0.0
            if math.isfinite(level) and math.isfinite(spread):
                ax.fill_between(
                    [onset, last_epoch], level - spread, level + spread, color=band, alpha=0.3, lw=0
                )
    overfit = next((f for f in findings if f.code == Code.OVERFITTING), None)
    if overfit is not None and overfit.onset_epoch is not None and last_epoch is not None:
        start = overfit.onset_epoch
        ax.axvspan(
            start, last_epoch, color="red", alpha=0.08, hatch="//", label=f"overfitting since epoch {start}"
        )
        ax.axvline(start, color="red", lw=0.8, alpha=0.6)
    for broken in (f for f in findings if f.code in (Code.DIVERGENCE, Code.NOT_LEARNING)):
        if broken.onset_epoch is not None:
            ax.axvline(
                broken.onset_epoch,
                color="darkred",
                ls="-.",
                lw=1.2,
                label=f"{broken.code} from epoch {broken.onset_epoch}",
            )
    ex = diagnosis.extrapolation
    if same_units and ex is not None and last_epoch is not None:
        x_ex, y_ex, lo, hi = _extrapolation_xy(ex, last_epoch)
        ax.plot(x_ex, y_ex, color="C0", ls="--", lw=1.5, label=f"extrapolation to epoch {int(x_ex[-1])}")
        if lo is not None and hi is not None:
            ax.fill_between(x_ex, lo, hi, color="C0", alpha=0.12, lw=0)
        if math.isfinite(ex.asymptote):
            ax.axhline(
                ex.asymptote,
                color="C0",
                ls=":",
                lw=1.0,
                alpha=0.7,
                label=f"extrapolated limit {ex.asymptote:.3f}",
            )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch (counted from 1)")
    ax.set_ylabel(metric)
    ax.set_title(f"{'validation accuracy' if metric == 'val_accuracy' else metric}: {challenger.run}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return fig


# ---------------------------------------------------------------------------------------------
# helpers


def _collect_findings(
    diagnosis: Diagnosis, extra: Sequence[Finding], gate_result: GateResult | None
) -> list[Finding]:
    found = [*diagnosis.findings, *extra]
    if gate_result is not None and gate_result.finding is not None:
        found.append(gate_result.finding)
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in found:
        key = (f.code, f.message)
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return sorted(unique, key=lambda f: _SEVERITY_ORDER[f.severity])


def _finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "code": str(f.code),
        "severity": f.severity.value,
        "onset_epoch": _jsonable(f.onset_epoch),
        "evidence": _jsonable(f.evidence),
        "message": f.message,
        "causes": list(f.causes),
        "remedies": list(f.remedies),
    }


def _curve_dict(c: Curve, role: str) -> dict[str, Any]:
    return {
        "role": role,
        "run": c.run,
        "epochs": _jsonable(c.epochs),
        "metrics": {k: _jsonable(v) for k, v in c.metrics.items()},
        "complete": bool(c.complete),
        "epoch_budget": _jsonable(c.epoch_budget),
    }


def _diagnosis_content(d: Diagnosis, challenger: Curve) -> dict[str, Any]:
    return {
        "verdict": d.verdict,
        "monitor": d.monitor,
        "plateau_onset_epoch": _jsonable(d.plateau_onset_epoch),
        "plateau_level": _jsonable(d.plateau_level),
        "plateau_spread": _jsonable(d.plateau_spread),
        "plateau_kind": _plateau_kind(d),
        "plateau_epochs": _plateau_epochs(d, challenger),
        "last_epoch": _last_epoch(challenger),
        "stalled": bool(d.stalled),
        "best_epoch": _jsonable(d.best_epoch),
        "extrapolation": _jsonable(d.extrapolation),
    }


def _gate_content(g: GateResult) -> dict[str, Any]:
    """The gate's numbers the report shows: the one place that reads :class:`GateResult`."""
    s = g.seed_spread
    return _jsonable(
        {
            "decision": g.decision,
            "passed": g.passed,
            "n_examples": g.n_examples,
            "challenger_accuracy": g.challenger_accuracy,
            "champion_accuracy": g.champion_accuracy,
            "delta": g.delta,
            "delta_ci": g.delta_ci,
            "confidence": g.confidence,
            "test": g.test,
            "p_value": g.p_value,
            "p_value_two_sided": g.p_value_two_sided,
            "discordant": g.discordant,
            "seed_spread": None
            if s is None
            else {
                "n_seeds": s.n_seeds,
                "mean": s.mean,
                "sd": s.sd,
                "lower_bound": s.lower_bound,
                "below": s.below,
            },
            "finding": None if g.finding is None else _finding_dict(g.finding),
        }
    )


def _plateau_kind(d: Diagnosis) -> str | None:
    """``stalled``, ``converged`` or ``flat`` for the diagnosis' flat tail; None without one."""
    if d.plateau_onset_epoch is None:
        return None
    if d.stalled:
        return "stalled"
    if d.has(Code.HEALTHY):
        return "converged"
    return "flat"


def _plateau_epochs(d: Diagnosis, challenger: Curve) -> int | None:
    """Epochs the flat tail lasted before the end of the run, or None without a flat tail.

    The engine's own count (``flat_epochs`` in the evidence of the finding that describes the tail,
    ``plateau`` or ``healthy``) when there is one, so that the report says what the finding's
    message says; else the challenger's last epoch minus the onset.
    """
    onset = d.plateau_onset_epoch
    if onset is None:
        return None
    for f in d.findings:
        if f.onset_epoch == onset and "flat_epochs" in f.evidence:
            return int(f.evidence["flat_epochs"])
    last = _last_epoch(challenger)
    return None if last is None else last - onset


def _last_epoch(c: Curve) -> int | None:
    return int(c.epochs[-1]) if len(c.epochs) else None


def _jsonable(obj: Any) -> Any:
    """JSON-safe Python (:func:`pipelines.io_utils.to_jsonable`), with the report's own shapes for a
    top-level :class:`Finding` and :class:`Curve`."""
    if isinstance(obj, Finding):
        return _finding_dict(obj)
    if isinstance(obj, Curve):
        return _curve_dict(obj, "curve")
    return to_jsonable(obj)


def _xy(c: Curve, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, values) as float arrays for plotting, or None when none is finite.

    NaN is kept as a gap (a missing epoch breaks the line), except for a metric measured every
    k-th epoch (``fit(..., validation_freq=k)``, :func:`pipelines.curves.detectors.
    validation_frequency`): its unmeasured epochs are left out so that the measured ones join up,
    or the line would have no segment at all.
    """
    y = c.get(metric)
    if y is None or len(y) == 0 or not np.any(np.isfinite(np.asarray(y, dtype=float))):
        return None
    x, y = np.asarray(c.epochs, dtype=float), np.asarray(y, dtype=float)
    if validation_frequency(c, metric) is not None:
        kept = np.isfinite(y)
        return x[kept], y[kept]
    return x, y


def _extrapolation_xy(
    ex: Extrapolation, last_epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(epochs, forecast, lower, upper) of the dashed extrapolation, from the last epoch on.

    The forecast is :meth:`Extrapolation.predict` from ``last_epoch`` to ``ex.budget`` when the
    budget lies beyond the last epoch (a run stopped early), else to twice the last epoch (how the
    curve would go on if trained as long again). Its SD ``value_std`` is known at the budget
    only: the band (lower, upper) widens linearly from 0 at the last epoch to ± ``value_std`` at
    the budget, and is None when the forecast runs past the budget.
    """
    end = ex.budget if ex.budget > last_epoch else 2 * last_epoch
    x = np.arange(last_epoch, end + 1, dtype=float)
    y = np.asarray(ex.predict(x), dtype=float)
    if end != ex.budget or not math.isfinite(ex.value_std):
        return x, y, None, None
    half = ex.value_std * (x - last_epoch) / (end - last_epoch)
    return x, y, y - half, y + half


def _verdict_text(content: Mapping[str, Any]) -> str:
    text = f"verdict: {content['verdict']}"
    g = content["gate"]
    if g is not None:
        text += f"; gate: {g['decision']} ({'promoted' if g['passed'] else 'not promoted'})"
    return text


def _diagnosis_lines(d: Mapping[str, Any]) -> list[str]:
    lines = []
    monitor = d["monitor"]
    if d["best_epoch"] is not None:
        lines.append(f"best epoch: {d['best_epoch']} (by {monitor})")
    if d["plateau_kind"] is not None:
        line = f"{_PLATEAU_TEXT[d['plateau_kind']]} since epoch {d['plateau_onset_epoch']}"
        if d["plateau_level"] is not None:
            line += f": {monitor} {d['plateau_level']:.3f}"
            if d["plateau_spread"] is not None:
                line += f" ± {d['plateau_spread']:.3f}"
        if d["plateau_epochs"] is not None:
            line += f", {d['plateau_epochs']} epochs on the plateau before the end (epoch {d['last_epoch']})"
        lines.append(line)
    ex = d["extrapolation"]
    if ex is not None and ex["value_at_budget"] is not None:
        line = f"extrapolated {monitor} at epoch {ex['budget']}: {ex['value_at_budget']:.3f}"
        if ex["value_std"] is not None:
            line += f" ± {ex['value_std']:.3f}"
        if ex["asymptote"] is not None:
            line += f"; long-run limit {ex['asymptote']:.3f}"
        lines.append(line)
    return lines


def _gate_headline(g: Mapping[str, Any]) -> str:
    promoted = "promoted" if g["passed"] else "not promoted"
    text = f"decision: {g['decision']} (challenger {promoted})"
    if g["finding"] is not None:
        text += f": {g['finding']['message']}"
    return text


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _gate_rows(g: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("test examples", f"{g['n_examples']:,}"),
        ("challenger accuracy", _fmt(g["challenger_accuracy"], ".4f")),
        ("champion accuracy", _fmt(g["champion_accuracy"], ".4f")),
    ]
    d = g["delta"]
    rows.append(("difference (points)", "n/a" if d is None else f"{d * 100:+.2f}"))
    ci = g["delta_ci"]
    if ci is not None:
        level = f"{g['confidence'] * 100:.0f}%"
        rows.append((f"{level} CI of difference (points)", f"{ci[0] * 100:+.2f} to {ci[1] * 100:+.2f}"))
    if g["test"] is not None:
        rows.append(("test", g["test"]))
    rows.append(("p-value (one-sided, challenger worse)", _fmt(g["p_value"], ".3g")))
    if g["p_value_two_sided"] is not None:
        rows.append(("p-value (two-sided McNemar)", _fmt(g["p_value_two_sided"], ".3g")))
    disc = g["discordant"]
    if disc is not None:
        rows.append(("only champion right / only challenger right", f"{disc[0]:,} / {disc[1]:,}"))
    s = g["seed_spread"]
    if s is not None:
        k = s["n_seeds"]
        label = f"champion config over {k} seeds" if k > 1 else "champion config (the champion's seed only)"
        sd = "" if s["sd"] is None else f", sd {s['sd']:.4f}"
        rows.append((label, f"mean {s['mean']:.4f}{sd}, lower bound {s['lower_bound']:.4f}"))
    return rows


def _evidence_text(ev: Mapping[str, Any], limit: int = 6) -> str:
    parts = []
    for i, (k, v) in enumerate(ev.items()):
        if i == limit:
            parts.append("…")
            break
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        elif isinstance(v, list) and len(v) > 4:
            parts.append(f"{k}=[{len(v)} values]")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def _md_cell(s: str) -> str:
    # A pipe would end the table cell, a newline the row.
    return str(s).replace("|", "\\|").replace("\n", " ")


def _html_inline_code(text: str) -> str:
    """Escaped HTML of a sentence whose markdown `code` spans become <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
