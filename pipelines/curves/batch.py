"""Diagnose many runs at once and summarise them (``curvewatch diagnose``).

Sources: curve files (Keras ``CSVLogger`` files, ``History`` JSON or JSON lines, via
:mod:`pipelines.curves.io`) and MLflow runs (by id, by experiment, or by search filter, fetched in
bulk through :func:`pipelines.tracking.fetch_curves`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.curves.diagnose import Diagnosis, NoValidationValue, diagnose
from pipelines.curves.types import Curve
from pipelines.io_utils import to_jsonable as _jsonable

#: Verdicts that do not flag a run (exit code 0 of ``curvewatch diagnose``).
UNFLAGGED = frozenset({"healthy"})


@dataclass(frozen=True)
class RunDiagnosis:
    """One row of the batch result: the curve's source and its diagnosis."""

    source: str
    curve: Curve
    diagnosis: Diagnosis

    @property
    def flagged(self) -> bool:
        return self.diagnosis.verdict not in UNFLAGGED

    def evidence(self) -> str:
        """The most important finding's plain sentence."""
        top = self.diagnosis.findings[0] if self.diagnosis.findings else None
        return top.message if top else ""


def diagnose_all(
    curves: Sequence[tuple[str, Curve]], **kwargs: Any
) -> tuple[list[RunDiagnosis], list[tuple[str, NoValidationValue]]]:
    """Apply :func:`pipelines.curves.diagnose.diagnose` to each ``(source, curve)``; kwargs pass through.

    Returns:
        The diagnosed runs, and the ``(source, error)`` of each run with nothing to diagnose (no
        finite validation value, :class:`~pipelines.curves.diagnose.NoValidationValue`), both in
        the order given: such a run does not stop the others. Any other error is raised.
    """
    results: list[RunDiagnosis] = []
    skipped: list[tuple[str, NoValidationValue]] = []
    for source, curve in curves:
        try:
            results.append(RunDiagnosis(source, curve, diagnose(curve, **kwargs)))
        except NoValidationValue as exc:
            skipped.append((source, exc))
    return results, skipped


def to_json(results: Sequence[RunDiagnosis]) -> list[dict[str, Any]]:
    """Machine-readable form: one object per run with its verdict, plateau and findings, and
    ``epoch_convention`` (:data:`EPOCH_CONVENTION`: every epoch number in it counts from 1) and
    ``read_notes`` (what the reader changed in the file), as in the per-run ``report.json``."""
    rows = []
    for r in results:
        d = r.diagnosis
        rows.append(
            _jsonable(
                {
                    "source": r.source,
                    "run": r.curve.run,
                    "verdict": d.verdict,
                    "flagged": r.flagged,
                    "epoch_convention": EPOCH_CONVENTION,
                    "read_notes": list(r.curve.read_notes),
                    "epochs": int(len(r.curve.epochs)),
                    "epoch_budget": r.curve.epoch_budget,
                    "plateau_onset_epoch": d.plateau_onset_epoch,
                    "plateau_level": d.plateau_level,
                    "plateau_spread": d.plateau_spread,
                    "best_epoch": d.best_epoch,
                    "findings": [
                        {
                            "code": f.code,
                            "severity": f.severity,
                            "onset_epoch": f.onset_epoch,
                            "message": f.message,
                            "evidence": f.evidence,
                            "causes": list(f.causes),
                            "remedies": list(f.remedies),
                        }
                        for f in d.findings
                    ],
                }
            )
        )
    return rows


def to_markdown(results: Sequence[RunDiagnosis]) -> str:
    """A markdown report: a table (run, verdict, onset epoch, evidence), then each run's remedies."""
    lines = [
        "# curvewatch diagnosis",
        "",
        f"{sum(r.flagged for r in results)} of {len(results)} runs flagged.",
        "",
        EPOCH_CONVENTION,
        "",
        "| run | verdict | onset epoch | evidence |",
        "| --- | --- | --- | --- |",
    ]
    for r in results:
        onset = r.diagnosis.findings[0].onset_epoch if r.diagnosis.findings else None
        evidence = r.evidence().replace("|", "\\|")
        lines.append(
            f"| {r.source} | {r.diagnosis.verdict} | {onset if onset is not None else ''} | {evidence} |"
        )
    for r in results:
        lines += ["", f"## {r.source}", ""]
        for f in r.diagnosis.findings:
            lines.append(f"- **{f.code}** ({f.severity.value}): {f.message}")
            for cause in f.causes:
                lines.append(f"  - likely cause: {cause}")
            for remedy in f.remedies:
                lines.append(f"  - try: {remedy}")
    return "\n".join(lines) + "\n"


EPOCH_CONVENTION = (
    "Epochs are counted from 1, as Keras prints them: epoch N is the row `epoch = N - 1` of a "
    "Keras `CSVLogger` file (which counts from 0)."
)


def report_dir_name(source: str) -> str:
    """A folder name for one run's report: the file's stem or the run id, made filesystem-safe.

    The name is one path component, never ``.`` or ``..``: path separators and other characters
    but letters, digits, ``-``, ``_`` and ``.`` become ``_``, and a name of dots only (or none) is
    ``run``; a report folder always lies inside the output folder.
    """
    stem = Path(source).stem if Path(source).suffix else source
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return name if name.strip(".") else "run"


def write_run_reports(results: Sequence[RunDiagnosis], out_dir: Path) -> list[Path]:
    """Write each run's HTML / PNG / markdown / JSON report (:func:`pipelines.curves.report.
    render_report`) into ``out_dir/<run>/``.

    Args:
        results: diagnosed runs.
        out_dir: parent folder; one subfolder per run (names from :func:`report_dir_name`, with
            ``-2``, ``-3`` ... appended when two runs share one).

    Returns:
        The HTML report paths, in the order of ``results``.
    """
    from pipelines.curves.report import render_report

    used: set[str] = set()
    pages = []
    for r in results:
        name = base = report_dir_name(r.source)
        k = 1
        while name in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name)
        paths = render_report(
            Path(out_dir) / name, challenger=r.curve, diagnosis=r.diagnosis, title=f"curvewatch: {r.source}"
        )
        pages.append(paths.html)
    return pages


def write_report(results: Sequence[RunDiagnosis], out_dir: Path) -> tuple[Path, Path]:
    """Write ``diagnosis.md`` and ``diagnosis.json`` into ``out_dir`` atomically; return both paths."""
    from pipelines.io_utils import atomic_write_text

    out_dir = Path(out_dir)
    md, js = out_dir / "diagnosis.md", out_dir / "diagnosis.json"
    atomic_write_text(md, to_markdown(results))
    atomic_write_text(js, json.dumps(to_json(results), indent=2))
    return md, js


def mlflow_tags(d: Diagnosis) -> dict[str, str | None]:
    """The tags written on an MLflow run (columns in the MLflow UI's run table)."""
    return {
        "curvewatch.verdict": d.verdict,
        "curvewatch.plateau_onset_epoch": str(d.plateau_onset_epoch) if d.plateau_onset_epoch else None,
        "curvewatch.plateau_level": f"{d.plateau_level:.4f}" if d.plateau_level is not None else None,
        "curvewatch.findings": ",".join(d.codes) or "none",
    }


def summary_values(d: Diagnosis) -> dict[str, float]:
    """The diagnosis numbers of an MLflow run (``diagnosis.*``), written as its summary tags
    ``curvewatch.diagnosis.*`` by ``tracking.log_summary``. The plateau's onset and level are
    :func:`mlflow_tags`' ``curvewatch.plateau_*`` already and are not repeated here."""
    out: dict[str, float] = {"diagnosis.findings": float(len(d.findings))}
    values = {
        "plateau_spread": d.plateau_spread,
        "best_epoch": d.best_epoch,
        "noise": d.noise,
    }
    for name, value in values.items():
        if value is not None and math.isfinite(float(value)):
            out[f"diagnosis.{name}"] = float(value)
    out["diagnosis.stalled"] = float(d.stalled)
    return out
