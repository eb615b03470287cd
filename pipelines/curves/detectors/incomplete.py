"""``incomplete``: :func:`detect_incomplete`, an interrupted run, missing epochs, or one that ended
before its budget without having early-stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.curves.detectors.context import Context, validation_frequency
from pipelines.curves.findings import INTERRUPTED, Code, make_finding
from pipelines.curves.plateau import finite_series
from pipelines.curves.types import Finding, Severity


def _early_stopped(ctx: Context) -> bool:
    curve = ctx.curve
    if curve.tags.get("stop_reason") or curve.tags.get("early_stopped") in {"1", "true", "True"}:
        return True
    # EarlyStopping stops `patience` (>= 1) epochs after its monitor's best: a run whose last epoch
    # is val_loss's lowest (Keras' default monitor) while val_accuracy is still at or near its best
    # was stopped by something else (killed, or a budget the file does not show).
    val_loss = finite_series(curve, "val_loss")
    if val_loss is not None and val_loss[1].size >= 2 and val_loss[1][-1] <= float(np.min(val_loss[1])):
        if (
            ctx.monitor != "val_accuracy"
            or int(curve.epochs[-1]) - ctx.best_epoch < ctx.cfg.min_plateau_epochs
        ):
            return False
    if ctx.plateau is not None:
        # Ended on a confirmed plateau: what EarlyStopping with a min_delta, or DiagnosisCallback,
        # stops on. A run killed there instead must say so with complete=False.
        return True
    patience = curve.params.get("train.early_stopping_patience")
    patience = (
        int(patience) if isinstance(patience, int | float) and patience > 0 else ctx.cfg.min_plateau_epochs
    )
    # EarlyStopping stops `patience` epochs after the best one.
    return int(curve.epochs[-1]) - ctx.best_epoch >= patience


def detect_incomplete(ctx: Context) -> Finding | None:
    """``complete=False``, missing epochs (gaps, or NaN in the monitored metric, unless it was
    validated every k-th epoch: :func:`validation_frequency`), or a run that ended before its budget
    without having early-stopped. Never for a live run.

    A log whose first epoch is not 1 is told apart from a log with holes: it starts at epoch k, as
    a ``fit(initial_epoch=k - 1)`` resumed into a new ``CSVLogger`` file (``append=False``
    overwrites) or a logger counting from 1 leave it. A log read from a file is "marked incomplete"
    exactly when its numbering has gaps (:func:`pipelines.curves.io.load_csv_logger`), so the killed /
    still-running reason is given only when the numbering has none (the caller said so).
    """
    if ctx.live:
        return None
    curve = ctx.curve
    epochs = np.asarray(curve.epochs)
    reasons: list[str] = []
    evidence: dict[str, Any] = {"epochs_run": int(epochs.size), "epoch_budget": curve.epoch_budget}
    missing = sorted(set(range(1, int(epochs[-1]) + 1)) - set(epochs.tolist())) if epochs.size else []
    if not curve.complete and not missing:  # gaps say it then (see the docstring)
        reasons.append("the run is marked incomplete (killed or still running)")
    leading = list(range(1, int(epochs[0]))) if epochs.size else []
    if leading:
        # The first epochs absent: a fit(initial_epoch=k) resumed into a new CSVLogger file
        # (append=False overwrites), or a logger that counts from 1 where CSVLogger counts from 0.
        evidence["first_epoch"] = int(epochs[0])
        reasons.append(
            f"the log starts at epoch {int(epochs[0])} (its first row has epoch = {int(epochs[0]) - 1}; "
            "CSVLogger counts from 0): a fit resumed with initial_epoch into a new log file, or a "
            "logger counting from 1"
        )
    values = np.asarray(curve.metrics[ctx.monitor], dtype=np.float64)
    every = validation_frequency(curve, ctx.monitor)
    if every is not None:
        evidence["validation_freq"] = every
    else:
        missing = sorted(set(missing) | set(epochs[~np.isfinite(values)].tolist()))
    if missing:
        evidence["missing_epochs"] = missing[:20]
        gaps = [e for e in missing if e not in leading]
        if gaps:
            reasons.append(f"{len(gaps)} epoch(s) missing ({', '.join(map(str, gaps[:5]))})")
    if curve.epoch_budget is not None and int(epochs[-1]) < curve.epoch_budget and not _early_stopped(ctx):
        reasons.append(f"stopped at epoch {int(epochs[-1])} of {curve.epoch_budget} without early stopping")
    if not reasons:
        return None
    return make_finding(
        Code.INCOMPLETE,
        Severity.WARNING,
        int(epochs[-1]) if epochs.size else None,
        evidence,
        "incomplete run: " + "; ".join(reasons),
        (INTERRUPTED,),
    )
