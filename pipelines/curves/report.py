"""Human- and machine-readable report of one run's diagnosis and its regression gate.

``render_report`` writes four files into one folder, each atomically (temporary sibling, then
:func:`os.replace`, via :mod:`pipelines.io_utils`):

- ``report.md``: verdict, findings table, each finding's plain sentence with causes and remedies,
  the gate decision with its numbers, and the curve image;
- ``report.html``: the same content as one standalone HTML page (no external assets but the PNG);
- ``val_curves.png``: validation accuracy of the challenger, champion and recent runs, with the
  plateau, the overfitting region and the extrapolation drawn in;
- ``report.json``: all of the above as JSON (numpy types converted, NaN -> null).

Markdown and HTML are both rendered from one structured ``content`` dict (the same one dumped to
JSON), so the three never disagree and no markdown library is needed.

The diagnosis object comes from ``pipelines.curves.diagnose`` (fields ``run``, ``verdict``,
``findings``, ``plateau_onset_epoch``, ``plateau_level``, ``plateau_spread``, ``best_epoch``,
``extrapolation``); it is read with ``getattr`` so any object (or None) with a subset of those
fields works.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.curves.types import Curve, Finding
from pipelines.io_utils import atomic_write_bytes, atomic_write_text

MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
PNG_NAME = "val_curves.png"
JSON_NAME = "report.json"

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


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
    diagnosis: Any,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    gate_result: Any = None,
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
        diagnosis: the challenger's ``Diagnosis`` (see module docstring), or None.
        champion: the production model's curve, drawn dashed black, or None.
        recent: other recent runs' curves, drawn thin and light.
        gate_result: a ``pipelines.curves.gate.GateResult`` (or any object with its fields), or
            None when the gate was not run.
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
    content = build_report_content(
        challenger=challenger,
        diagnosis=diagnosis,
        champion=champion,
        recent=recent,
        gate_result=gate_result,
        findings=findings,
        title=title,
    )
    # The image first: the markdown and HTML link to it, so it should exist when they appear.
    atomic_write_bytes(paths.png, _png_bytes(challenger, diagnosis, champion, recent, content))
    atomic_write_text(paths.json, json.dumps(content, indent=2, ensure_ascii=False, allow_nan=False))
    atomic_write_text(paths.markdown, render_markdown(content))
    atomic_write_text(paths.html, render_html(content))
    return paths


def build_report_content(
    *,
    challenger: Curve,
    diagnosis: Any,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    gate_result: Any = None,
    findings: Sequence[Finding] = (),
    title: str = "curvewatch report",
) -> dict[str, Any]:
    """The report as one JSON-serialisable dict (what ``report.json`` holds).

    Keys: ``title``, ``run``, ``champion_run``, ``recent_runs``, ``verdict``, ``diagnosis``
    (plateau / best epoch / extrapolation), ``findings`` (list of dicts with ``code``,
    ``severity``, ``onset_epoch``, ``evidence``, ``message``, ``causes``, ``remedies``),
    ``gate`` (the gate result's fields, or None), ``images`` (file names) and ``curves`` (per
    run: epochs and metrics, NaN as null).

    Args: as :func:`render_report`.

    Returns:
        Plain Python data: str, int, float (finite), bool, None, lists and dicts only.
    """
    all_findings = _collect_findings(diagnosis, findings, gate_result)
    diag = {
        "verdict": _jsonable(getattr(diagnosis, "verdict", None)),
        "plateau_onset_epoch": _jsonable(getattr(diagnosis, "plateau_onset_epoch", None)),
        "plateau_level": _jsonable(getattr(diagnosis, "plateau_level", None)),
        "plateau_spread": _jsonable(getattr(diagnosis, "plateau_spread", None)),
        "stalled": bool(getattr(diagnosis, "stalled", True)),
        "best_epoch": _jsonable(getattr(diagnosis, "best_epoch", None)),
        "extrapolation": _jsonable(getattr(diagnosis, "extrapolation", None)),
    }
    gate_dict: dict[str, Any] | None = None
    if gate_result is not None:
        to_dict = getattr(gate_result, "to_dict", None)
        gate_dict = _jsonable(to_dict() if callable(to_dict) else gate_result)
    curves = [_curve_dict(challenger, "challenger")]
    if champion is not None:
        curves.append(_curve_dict(champion, "champion"))
    curves += [_curve_dict(c, "recent") for c in recent]
    return {
        "title": title,
        "run": challenger.run,
        "champion_run": None if champion is None else champion.run,
        "recent_runs": [c.run for c in recent],
        "verdict": diag["verdict"],
        "diagnosis": diag,
        "findings": [_finding_dict(f) for f in all_findings],
        "gate": gate_dict,
        "images": {"val_curves": PNG_NAME},
        "curves": curves,
    }


def render_markdown(content: Mapping[str, Any]) -> str:
    """Markdown text of a report built by :func:`build_report_content`."""
    out: list[str] = [f"# {content['title']}", ""]
    out.append(f"Run: `{content['run']}`")
    if content.get("champion_run"):
        out.append(f"  \nChampion: `{content['champion_run']}`")
    if content.get("recent_runs"):
        out.append(f"  \nRecent runs compared: {len(content['recent_runs'])}")
    out += ["", "## Verdict", ""]
    out.append(f"**{_verdict_text(content)}**")
    for line in _diagnosis_lines(content.get("diagnosis") or {}):
        out.append(f"- {line}")
    out += ["", "## Findings", ""]
    fnds = content.get("findings") or []
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
    g = content.get("gate")
    if g is None:
        out.append("The gate was not run.")
    else:
        out.append(f"**{_gate_headline(g)}**")
        rows = _gate_rows(g)
        if rows:
            out += ["", "| quantity | value |", "| --- | --- |"]
            out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in rows]
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
        "img{max-width:100%}</style>",
        "</head><body>",
        f"<h1>{e(str(content['title']))}</h1>",
        f"<p>Run: <code>{e(str(content['run']))}</code>",
    ]
    if content.get("champion_run"):
        out.append(f"<br>Champion: <code>{e(str(content['champion_run']))}</code>")
    if content.get("recent_runs"):
        out.append(f"<br>Recent runs compared: {len(content['recent_runs'])}")
    out.append("</p>")
    out += ["<h2>Verdict</h2>", f"<p><strong>{e(_verdict_text(content))}</strong></p>"]
    lines = _diagnosis_lines(content.get("diagnosis") or {})
    if lines:
        out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in lines) + "</ul>")
    out.append("<h2>Findings</h2>")
    fnds = content.get("findings") or []
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
    g = content.get("gate")
    if g is None:
        out.append("<p>The gate was not run.</p>")
    else:
        out.append(f"<p><strong>{e(_gate_headline(g))}</strong></p>")
        rows = _gate_rows(g)
        if rows:
            out.append("<table><tr><th>quantity</th><th>value</th></tr>")
            out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows]
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
    diagnosis: Any = None,
    champion: Curve | None = None,
    recent: Sequence[Curve] = (),
    findings: Sequence[Mapping[str, Any] | Finding] = (),
) -> Any:
    """Matplotlib ``Figure`` of ``val_accuracy`` per epoch (x: 1-based epochs, y: accuracy).

    Challenger bold, champion dashed black, recent runs thin and light. Shaded: the plateau from
    ``diagnosis.plateau_onset_epoch`` to the challenger's last epoch, with the band
    ``plateau_level ± plateau_spread``; the overfitting region from ``diagnosis.best_epoch``
    when an ``overfitting`` finding exists. The extrapolation (``diagnosis.extrapolation``) is
    drawn dashed when it holds predictions.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot), so no global backend or figure
    registry is touched and nothing leaks between calls.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for i, run in enumerate(recent):
        x, y = _xy(run, "val_accuracy")
        if x is not None:
            ax.plot(x, y, color="0.6", lw=0.8, alpha=0.6, label="recent runs" if i == 0 else None)
    if champion is not None:
        x, y = _xy(champion, "val_accuracy")
        if x is not None:
            ax.plot(x, y, color="black", ls="--", lw=1.5, label=f"champion ({champion.run})")
    x_ch, y_ch = _xy(challenger, "val_accuracy")
    if x_ch is not None:
        ax.plot(x_ch, y_ch, color="C0", lw=2.5, label=f"challenger ({challenger.run})")
        last_epoch = float(x_ch[-1])
    else:
        ax.text(0.5, 0.5, "no val_accuracy logged", transform=ax.transAxes, ha="center")
        last_epoch = None

    onset = _num(getattr(diagnosis, "plateau_onset_epoch", None))
    level = _num(getattr(diagnosis, "plateau_level", None))
    spread = _num(getattr(diagnosis, "plateau_spread", None))
    # The diagnosis falls back to val_loss when val_accuracy is missing; its level and its
    # extrapolation are then in loss units and do not belong on an accuracy axis.
    monitor = getattr(diagnosis, "monitor", None)
    same_units = monitor in (None, "val_accuracy")
    if onset is not None and last_epoch is not None and last_epoch >= onset:
        # A stall and a healthy convergence are both flat tails; colour and name say which.
        stalled = bool(getattr(diagnosis, "stalled", True))
        name, fill, band = (
            ("stalled", "gold", "goldenrod") if stalled else ("converged", "palegreen", "green")
        )
        ax.axvspan(onset, last_epoch, color=fill, alpha=0.15, label=f"{name} since epoch {onset:g}")
        if level is not None and same_units:
            s = spread or 0.0
            ax.fill_between([onset, last_epoch], level - s, level + s, color=band, alpha=0.3, lw=0)
    codes = {(f.get("code") if isinstance(f, Mapping) else getattr(f, "code", None)) for f in findings}
    best = _num(getattr(diagnosis, "best_epoch", None))
    if "overfitting" in codes and best is not None and last_epoch is not None and last_epoch >= best:
        label = f"overfitting after epoch {best:g}"
        ax.axvspan(best, last_epoch, color="red", alpha=0.08, hatch="//", label=label)
        ax.axvline(best, color="red", lw=0.8, alpha=0.6)
    ex = None
    if same_units and last_epoch is not None:
        last_value = float(y_ch[np.isfinite(y_ch)][-1])
        extrapolation = getattr(diagnosis, "extrapolation", None)
        ex = _extrapolation_xy(extrapolation, last_epoch, last_value, challenger.epoch_budget)
        ceiling = _num(_field(extrapolation, ("asymptote",))) if extrapolation is not None else None
        if ceiling is not None:
            ax.axhline(
                ceiling, color="C0", ls=":", lw=1.0, alpha=0.7, label=f"extrapolated ceiling {ceiling:.3f}"
            )
    if ex is not None:
        ex_x, ex_y, lo, hi = ex
        ax.plot(ex_x, ex_y, color="C0", ls="--", lw=1.5, marker="o", markevery=[-1], label="extrapolation")
        if lo is not None and hi is not None:
            ax.fill_between(ex_x, lo, hi, color="C0", alpha=0.12, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val_accuracy")
    ax.set_title(f"validation accuracy: {challenger.run}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# helpers


def _png_bytes(
    challenger: Curve, diagnosis: Any, champion: Curve | None, recent: Sequence[Curve], content: Mapping
) -> bytes:
    fig = plot_val_curves(
        challenger, diagnosis=diagnosis, champion=champion, recent=recent, findings=content["findings"]
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _collect_findings(diagnosis: Any, extra: Sequence[Finding], gate_result: Any) -> list[Any]:
    found: list[Any] = list(getattr(diagnosis, "findings", None) or [])
    found += list(extra)
    gate_finding = getattr(gate_result, "finding", None)
    if gate_finding is not None:
        found.append(gate_finding)
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in found:
        key = (str(getattr(f, "code", "")), str(getattr(f, "message", "")))
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return sorted(unique, key=lambda f: _SEVERITY_ORDER.get(_sev(f), 3))


def _sev(f: Any) -> str:
    s = getattr(f, "severity", "")
    return str(getattr(s, "value", s))


def _finding_dict(f: Any) -> dict[str, Any]:
    return {
        "code": str(getattr(f, "code", "")),
        "severity": _sev(f),
        "onset_epoch": _jsonable(getattr(f, "onset_epoch", None)),
        "evidence": _jsonable(dict(getattr(f, "evidence", {}) or {})),
        "message": str(getattr(f, "message", "")),
        "causes": [str(c) for c in getattr(f, "causes", ()) or ()],
        "remedies": [str(r) for r in getattr(f, "remedies", ()) or ()],
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


def _jsonable(obj: Any) -> Any:
    """Recursively convert to JSON-safe Python (numpy -> builtins, NaN/inf -> None, enums -> value)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Finding):
        return _finding_dict(obj)
    if isinstance(obj, Curve):
        return _curve_dict(obj, "curve")
    # An object's own summary wins over its raw fields (e.g. Extrapolation.as_dict drops fits).
    for name in ("to_dict", "as_dict"):
        method = getattr(obj, name, None)
        if callable(method) and not isinstance(obj, type):
            return _jsonable(method())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "__dict__"):
        return {k: _jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _xy(c: Curve, metric: str) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    y = c.get(metric)
    if y is None or len(y) == 0 or not np.any(np.isfinite(np.asarray(y, dtype=float))):
        return None, None
    return np.asarray(c.epochs, dtype=float), np.asarray(y, dtype=float)


def _field(obj: Any, names: Sequence[str]) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if not isinstance(obj, Mapping) and getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return None


def _extrapolation_xy(
    ex: Any, last_epoch: float, last_value: float, epoch_budget: int | None
) -> tuple[np.ndarray, np.ndarray, Any, Any] | None:
    """(epochs, predicted, lower, upper) from whatever the extrapolation object holds, or None.

    ``pipelines.curves.extrapolate.Extrapolation`` forecasts one point, ``value_at_budget`` ±
    ``value_std`` at epoch ``budget``: drawn as a dashed segment from the last observed value.
    Also accepted (the type may grow): per-epoch arrays under the likely spellings (attributes
    or mapping keys), a ``{epoch: value}`` mapping of predictions, or a ``predict(epochs)``
    method (evaluated from the last epoch to the epoch budget, or to twice the last epoch).
    Anything else gives None: a missing dashed line is better than a failed report.
    """
    if ex is None:
        return None
    budget = _num(_field(ex, ("budget",)))
    at_budget = _num(_field(ex, ("value_at_budget",)))
    if budget is not None and at_budget is not None and budget > last_epoch:
        std = _num(_field(ex, ("value_std",)))
        x = np.array([last_epoch, budget])
        y = np.array([last_value, at_budget])
        if std is None:
            return x, y, None, None
        return x, y, np.array([last_value, at_budget - std]), np.array([last_value, at_budget + std])
    preds = _field(ex, ("predictions", "predicted", "prediction", "values", "mean", "y"))
    xs = _field(ex, ("epochs", "future_epochs", "horizon_epochs", "x"))
    if isinstance(preds, Mapping):
        items = sorted((float(k), float(v)) for k, v in preds.items() if _num(k) is not None)
        if not items:
            return None
        xs = [k for k, _ in items]
        preds = [v for _, v in items]
    predict = getattr(ex, "predict", None)
    if (preds is None or xs is None) and callable(predict):
        end = float(epoch_budget) if epoch_budget and epoch_budget > last_epoch else 2.0 * last_epoch
        xs = np.arange(last_epoch, end + 1.0)
        try:
            preds = predict(xs)
        except Exception:  # a fit that cannot evaluate should not break the report
            return None
    if preds is None or xs is None:
        return None
    try:
        x = np.asarray(xs, dtype=float).ravel()
        y = np.asarray(preds, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if x.size == 0 or x.size != y.size or not np.any(np.isfinite(y)):
        return None
    lo = _field(ex, ("lower", "low", "lo"))
    hi = _field(ex, ("upper", "high", "hi"))
    try:
        lo_a = None if lo is None else np.asarray(lo, dtype=float).ravel()
        hi_a = None if hi is None else np.asarray(hi, dtype=float).ravel()
    except (TypeError, ValueError):
        lo_a = hi_a = None
    if lo_a is None or hi_a is None or lo_a.size != x.size or hi_a.size != x.size:
        lo_a = hi_a = None
    return x, y, lo_a, hi_a


def _verdict_text(content: Mapping[str, Any]) -> str:
    v = content.get("verdict")
    text = f"verdict: {v}" if v is not None else "verdict: (no diagnosis)"
    g = content.get("gate")
    if g is not None and g.get("decision") is not None:
        text += f"; gate: {g['decision']} ({'promoted' if g.get('passed') else 'not promoted'})"
    return text


def _diagnosis_lines(d: Mapping[str, Any]) -> list[str]:
    lines = []
    if d.get("best_epoch") is not None:
        lines.append(f"best epoch: {d['best_epoch']}")
    if d.get("plateau_onset_epoch") is not None:
        kind = "stalled on a plateau" if d.get("stalled", True) else "converged"
        line = f"{kind} since epoch {d['plateau_onset_epoch']}"
        if d.get("plateau_level") is not None:
            line += f" at {d['plateau_level']:.3f}"
            if d.get("plateau_spread") is not None:
                line += f" ± {d['plateau_spread']:.3f}"
        lines.append(line)
    return lines


def _gate_headline(g: Mapping[str, Any]) -> str:
    decision = g.get("decision")
    promoted = "promoted" if g.get("passed") else "not promoted"
    text = f"decision: {decision} (challenger {promoted})"
    f = g.get("finding")
    if isinstance(f, Mapping) and f.get("message"):
        text += f": {f['message']}"
    return text


def _fmt(x: Any, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _gate_rows(g: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    rows.append(("test examples", f"{g['n_examples']:,}" if g.get("n_examples") is not None else "n/a"))
    rows.append(("challenger accuracy", _fmt(g.get("challenger_accuracy"), ".4f")))
    rows.append(("champion accuracy", _fmt(g.get("champion_accuracy"), ".4f")))
    d = g.get("delta")
    rows.append(("difference (points)", "n/a" if d is None else f"{d * 100:+.2f}"))
    ci = g.get("delta_ci")
    if ci:
        level = f"{float(g.get('confidence') or 0.95) * 100:.0f}%"
        rows.append((f"{level} CI of difference (points)", f"{ci[0] * 100:+.2f} to {ci[1] * 100:+.2f}"))
    if g.get("test"):
        rows.append(("test", str(g["test"])))
    rows.append(("p-value (one-sided, challenger worse)", _fmt(g.get("p_value"), ".3g")))
    if g.get("p_value_two_sided") is not None:
        rows.append(("p-value (two-sided McNemar)", _fmt(g.get("p_value_two_sided"), ".3g")))
    disc = g.get("discordant")
    if disc:
        rows.append(("only champion right / only challenger right", f"{disc[0]:,} / {disc[1]:,}"))
    s = g.get("seed_spread")
    if isinstance(s, Mapping):
        k = int(s["n_seeds"])
        label = f"champion config over {k} seeds" if k > 1 else "champion config (the champion's seed only)"
        sd = "" if s.get("sd") is None else f", sd {s['sd']:.4f}"
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
