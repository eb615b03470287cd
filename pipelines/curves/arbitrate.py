"""Every precedence rule between findings, in one function.

Detectors (:mod:`pipelines.curves.detectors`) each report what they see; :func:`arbitrate` decides
which of those findings the user is shown and in what order. The rules:

1. ``divergence`` explains everything downstream of the blow-up: of the other problems only
   ``not_learning`` (the network died after it) and ``incomplete`` stay.
2. ``not_learning`` explains a low plateau, underfitting, slowness, swings and a split gap; a
   memorising ``overfitting`` stays when the training set is fitted (random labels).
3. A run whose validation loss still falls steadily (``too_slow`` read on val_loss) is not
   stalled on a plateau of its coarse accuracy, nor underfitting: its plateau and underfitting
   findings go unless the plateau has a reason of its own beyond level (memorising, a widening
   gap, an overconfident loss).
4. A stall whose validation loss sits above the prior's entropy names the inputs as the cause;
   ``underfitting`` (the capacity) is not reported beside it.
5. ``too_slow`` is not reported next to a plateau on the monitored metric or an oscillation.
6. Secondary findings never suppress primary ones: ``oscillation``, ``split_mismatch`` and
   ``incomplete`` are reported beside ``overfitting``, ``plateau`` and ``underfitting``, never
   instead of them.
7. ``healthy`` only when nothing is WARNING or CRITICAL (``too_slow`` included).
8. Order: severity (CRITICAL, WARNING, INFO), then :data:`ORDER`.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.curves.findings import Code
from pipelines.curves.types import Finding, Severity

ORDER: tuple[Code, ...] = (
    Code.DIVERGENCE,
    Code.NOT_LEARNING,
    Code.INCOMPLETE,
    Code.OVERFITTING,
    Code.PLATEAU,
    Code.UNDERFITTING,
    Code.OSCILLATION,
    Code.TOO_SLOW,
    Code.SPLIT_MISMATCH,
    Code.HEALTHY,
    Code.NOISY_VALIDATION,
)
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_LEVEL_ONLY_REASONS = {"low_level", "below_baseline", "premature"}


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Findings by severity, then by :data:`ORDER` (unknown codes last)."""
    rank = {code.value: i for i, code in enumerate(ORDER)}
    return sorted(findings, key=lambda f: (_SEVERITY_RANK[Severity(f.severity)], rank.get(f.code, 99)))


def arbitrate(
    candidates: Mapping[Code, Finding | None],
    *,
    fits_training_set: bool = True,
    healthy: Finding | None = None,
) -> list[Finding]:
    """Apply the module's precedence rules to what the detectors found.

    Args:
        candidates: each detector's finding (None when it saw nothing), keyed by code.
        fits_training_set: training accuracy is well above chance (rule 2's memorising exception).
        healthy: the healthy finding to show when no problem remains (rule 6).

    Returns:
        The findings to report, most important first.
    """
    found = {code: f for code, f in candidates.items() if f is not None}
    if Code.DIVERGENCE in found:
        found = {c: f for c, f in found.items() if c in {Code.DIVERGENCE, Code.NOT_LEARNING, Code.INCOMPLETE}}
    if Code.NOT_LEARNING in found:
        drop = {Code.PLATEAU, Code.UNDERFITTING, Code.TOO_SLOW, Code.OSCILLATION, Code.SPLIT_MISMATCH}
        if not fits_training_set:
            drop.add(Code.OVERFITTING)
        found = {c: f for c, f in found.items() if c not in drop}
    slow = found.get(Code.TOO_SLOW)
    if slow is not None and slow.evidence.get("metric") == "val_loss":
        plateau = found.get(Code.PLATEAU)
        if plateau is not None and set(plateau.evidence.get("stall_reasons", ())) <= _LEVEL_ONLY_REASONS:
            found.pop(Code.PLATEAU)
        found.pop(Code.UNDERFITTING, None)
    plateau = found.get(Code.PLATEAU)
    if plateau is not None and "loss_above_uniform" in plateau.evidence.get("stall_reasons", ()):
        found.pop(Code.UNDERFITTING, None)
    if Code.TOO_SLOW in found and (Code.PLATEAU in found or Code.OSCILLATION in found):
        if found[Code.TOO_SLOW].evidence.get("metric") != "val_loss" or Code.OSCILLATION in found:
            found.pop(Code.TOO_SLOW)
    findings = list(found.values())
    if healthy is not None and not any(Severity(f.severity) != Severity.INFO for f in findings):
        findings.append(healthy)
    return sort_findings(findings)
