"""Every precedence rule between findings, in one function.

Detectors (one module per finding in :mod:`pipelines.curves.detectors`) each report what they see;
:func:`arbitrate` decides which of those findings the user is shown and in what order. The rules:

0. A CRITICAL ``split_mismatch`` (validation below what any guess scores, evidence
   ``below_any_guess``, or below the first epoch's training accuracy on examples not yet seen,
   ``below_first_epoch_training``) explains a validation loss that never came down: the
   ``divergence`` read from the validation loss alone (evidence ``val_loss_min``, rule 4 of
   :func:`pipelines.curves.detectors.detect_divergence`) goes, since the training loss is sound;
   so do ``plateau``, ``underfitting`` and ``too_slow``, which read the level and pace of a
   validation curve that does not measure the task.
1. ``divergence`` explains everything downstream of the blow-up: of the other problems only
   ``incomplete`` stays, and ``not_learning`` when the blow-up killed the network (evidence
   ``died``: it now sits at chance), which is what the run is now beside how it got there.
2. ``not_learning`` explains a low plateau, underfitting, slowness, swings, a split gap and
   ``saturated_outputs`` (its own message says when its loss sits at Keras' clip); a
   memorising ``overfitting`` stays when the training set is fitted (random labels). Except a
   CRITICAL ``split_mismatch`` (rule 0): the network learns its training set and the validation
   set is drawn otherwise, so that finding stays and ``not_learning`` goes.
3. ``overfitting`` and a plateau of the same metric (a log without accuracy monitors val_loss,
   the curve overfitting reads): the rising tail is the overfitting, not a plateau "flat at" the
   level it rose to, so the plateau goes. A stall whose validation loss sits above the prior's
   entropy names the inputs as the cause;
   ``underfitting`` (the capacity) is not reported beside it.
4. A run still improving steadily at its end (``too_slow``: the last third's slope z >= 3 on the
   monitored metric or, for coarse accuracy, on val_loss) is not stalled on a short flat stretch of
   a noisy curve, nor underfitting: a plateau whose only reasons are its level, an underfit or
   prematurity goes, with the underfitting finding. A plateau with a reason of its own
   (memorising, a widening gap, an overconfident loss) stays, and then ``too_slow`` goes. With no
   plateau at all (the climb goes on to the end), an ``underfitting`` read off a last third flat
   for practical purposes goes too.
5. ``too_slow`` is not reported next to an oscillation (the learning rate is too high, not low).
6. Secondary findings never suppress primary ones: ``oscillation``, ``split_mismatch`` and
   ``incomplete`` are reported beside ``overfitting``, ``plateau`` and ``underfitting``, never
   instead of them. A WARNING ``split_mismatch`` (a gap from the first epochs, nothing more) is
   not reported beside ``overfitting``: a network that memorises fast opens the same gap (a real
   BatchNorm CNN on 4,000 images was 0.13 below training from epoch 2).
7. ``healthy`` only when nothing is WARNING or CRITICAL (``too_slow`` included).
8. Order: severity (CRITICAL, WARNING, INFO), then :data:`ORDER`: among warnings
   ``incomplete`` first (a run cut short qualifies everything read off it), then
   ``saturated_outputs``, the cause of the stall, swings or slowness reported beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.curves.findings import Code
from pipelines.curves.types import Finding, Severity

ORDER: tuple[Code, ...] = (
    Code.DIVERGENCE,
    Code.NOT_LEARNING,
    Code.INCOMPLETE,
    Code.SATURATED_OUTPUTS,
    Code.OVERFITTING,
    Code.PLATEAU,
    Code.UNDERFITTING,
    Code.OSCILLATION,
    Code.TOO_SLOW,
    Code.SPLIT_MISMATCH,
    Code.FROM_LOGITS_MISMATCH,
    Code.HEALTHY,
    Code.NOISY_VALIDATION,
)
_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_LEVEL_ONLY_REASONS = {"low_level", "below_baseline", "premature", "underfit"}


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
        healthy: the healthy finding to show when no problem remains (rule 7).

    Returns:
        The findings to report, most important first.
    """
    found = {code: f for code, f in candidates.items() if f is not None}
    split = found.get(Code.SPLIT_MISMATCH)
    skewed = split is not None and Severity(split.severity) == Severity.CRITICAL
    divergence = found.get(Code.DIVERGENCE)
    if skewed:
        # The validation curve does not measure the task: its level says nothing of a stall, a
        # capacity or a pace, and a validation loss that never came down is the skew, not the optimiser.
        for code in (Code.PLATEAU, Code.UNDERFITTING, Code.TOO_SLOW):
            found.pop(code, None)
        if divergence is not None and "val_loss_min" in divergence.evidence:
            found.pop(Code.DIVERGENCE)
    if Code.DIVERGENCE in found:
        keep = {Code.DIVERGENCE, Code.INCOMPLETE}
        if found[Code.DIVERGENCE].evidence.get("died"):
            keep.add(Code.NOT_LEARNING)  # dead after the blow-up: what it is now, beside how it got there
        found = {c: f for c, f in found.items() if c in keep}
    if skewed and Code.SPLIT_MISMATCH in found:
        found.pop(Code.NOT_LEARNING, None)
    if Code.NOT_LEARNING in found:
        drop = {
            Code.PLATEAU,
            Code.UNDERFITTING,
            Code.TOO_SLOW,
            Code.OSCILLATION,
            Code.SPLIT_MISMATCH,
            Code.SATURATED_OUTPUTS,
        }
        if not fits_training_set:
            drop.add(Code.OVERFITTING)
        found = {c: f for c, f in found.items() if c not in drop}
    split = found.get(Code.SPLIT_MISMATCH)
    if split is not None and not skewed and Code.OVERFITTING in found:
        found.pop(Code.SPLIT_MISMATCH)  # a gap opened by memorising is the overfitting
    plateau, overfitting = found.get(Code.PLATEAU), found.get(Code.OVERFITTING)
    same_metric = overfitting is not None and plateau is not None
    if same_metric and overfitting.evidence.get("metric") == plateau.evidence.get("metric"):
        found.pop(Code.PLATEAU)
        plateau = None
    if plateau is not None and "loss_above_uniform" in plateau.evidence.get("stall_reasons", ()):
        found.pop(Code.UNDERFITTING, None)
    if Code.TOO_SLOW in found:
        if plateau is not None and set(plateau.evidence.get("stall_reasons", ())) <= _LEVEL_ONLY_REASONS:
            found.pop(Code.PLATEAU)
            found.pop(Code.UNDERFITTING, None)
        elif plateau is not None or Code.OSCILLATION in found:
            found.pop(Code.TOO_SLOW)
        else:
            found.pop(Code.UNDERFITTING, None)
    findings = list(found.values())
    if healthy is not None and not any(Severity(f.severity) != Severity.INFO for f in findings):
        findings.append(healthy)
    return sort_findings(findings)
