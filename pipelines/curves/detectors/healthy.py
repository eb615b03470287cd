"""``healthy``: :func:`healthy_finding`, the INFO finding for a run with no problem: converged, still
improving, or too short or unclear.
"""

from __future__ import annotations

import math
from typing import Any

from pipelines.curves.detectors.context import (
    MIN_JUDGE_EPOCHS,
    STILL_IMPROVING_Z,
    Context,
    _loss_falls_over,
    _recent_span,
    _recent_trend_z,
)
from pipelines.curves.detectors.plateau import _train_gap, widening_threshold
from pipelines.curves.findings import CONVERGED, Code, Group, fmt, make_finding
from pipelines.curves.plateau import plateau_message
from pipelines.curves.types import Finding, Severity

#: Accuracy points the train-validation gap must grow by over a converged plateau for the healthy
#: message to mention it (below that, a gap moving by a point says nothing a user can act on).
GAP_NOTE_MIN = 0.02


def healthy_finding(ctx: Context) -> Finding:
    """The INFO finding for a run with no problem: converged, still improving, or too short/unclear.

    A converged run whose training accuracy kept climbing beyond noise (OLS z >= 3) while the
    train-validation gap grew by more than max(3 noise SDs, :data:`GAP_NOTE_MIN`), yet by less than
    :func:`stall_reasons` asks of a widening gap, says so, with the growth a stall would need: the
    evidence without the verdict (``gap_growth``, ``train_trend_z`` in the evidence). One whose
    val_loss kept falling over the plateau (:func:`_loss_falls_over`) says that too: "converged" on
    accuracy alone would hide a model still learning (a real imbalanced binary run sat at 0.902 for
    47 epochs while val_loss fell from 0.345 to 0.281). But when, besides that falling loss, the
    last third's accuracy still rose beyond noise (OLS z > :data:`STILL_IMPROVING_Z`), the short flat
    stretch at its end is no convergence: the run is "still improving ... train longer" (a real CNN
    with SGD at 1e-3 gained 1.6 points, 4 binomial SDs, over its last 12 of 35 epochs and read
    "converged" from its last 6).
    """
    plateau, values, x = ctx.plateau, ctx.values, ctx.x
    recent_z = _recent_trend_z(ctx)
    sharpening = (
        _loss_falls_over(ctx, plateau.onset_epoch)
        if plateau is not None and ctx.monitor == "val_accuracy"
        else None
    )
    if (
        plateau is not None
        and not (sharpening is not None and recent_z > STILL_IMPROVING_Z)
        and not ctx.still_improving
    ):
        evidence_c: dict[str, Any] = {
            "metric": ctx.monitor,
            "level": plateau.level,
            "spread": plateau.spread,
            "flat_epochs": ctx.plateau_epochs,
            "converged": True,
        }
        message = (
            "converged: "
            + plateau_message(plateau).replace(" flat at ", " at ")
            + f" ({ctx.plateau_epochs} epochs on the plateau {ctx.until})"
        )
        gap = _train_gap(ctx, plateau) if ctx.higher and "acc" in plateau.metric else {}
        if (
            gap
            and gap["train_trend_z"] >= 3
            and gap["gap_growth"] > max(3 * plateau.noise, GAP_NOTE_MIN)
            and gap["train_val_gap_end"] > 0
        ):
            # Training pulls away from a flat validation curve, by less than stall_reasons asks of a
            # widening gap: not a stall (yet), but the user sees it.
            widening = widening_threshold(ctx, plateau)
            evidence_c.update(gap_growth=gap["gap_growth"], train_trend_z=gap["train_trend_z"])
            grew, needed = fmt(gap["gap_growth"]), fmt(widening)
            if grew == needed:  # "grew by 0.031, short of the 0.031": one more decimal tells them apart
                grew, needed = f"{gap['gap_growth']:.4f}", f"{widening:.4f}"
            message += (
                f"; training accuracy kept climbing meanwhile, to {fmt(gap['train_end_level'])}: the "
                f"train-validation gap grew by {grew}"
                + (
                    f", short of the {needed} that would make it a stall"
                    if widening > gap["gap_growth"]
                    else ""
                )
            )
        if sharpening is not None:
            start, end, share = sharpening
            evidence_c.update(val_loss_plateau_start=start, val_loss_end=end, val_loss_down_share=share)
            message += (
                f"; val_loss still fell from {fmt(start)} to {fmt(end)} meanwhile (lower on {share:.0%} "
                "of the epochs): the model is still learning, though its accuracy has not moved beyond noise"
            )
        return make_finding(
            Code.HEALTHY, Severity.INFO, plateau.onset_epoch, evidence_c, message, (CONVERGED,)
        )
    evidence: dict[str, Any] = {"metric": ctx.monitor, "last": float(values[-1]), "converged": False}
    if ctx.g.size < MIN_JUDGE_EPOCHS:
        evidence["too_short"] = True
        return make_finding(
            Code.HEALTHY,
            Severity.INFO,
            None,
            evidence,
            f"too short to judge a trend: {ctx.g.size} epoch(s) of {ctx.monitor} "
            f"(last {fmt(float(values[-1]))} at epoch {int(x[-1])}); no chance-level, exploding or "
            "collapsing curve seen",
        )
    evidence["recent_trend_z"] = round(recent_z, 3)
    if recent_z < ctx.cfg.improving_z:
        return make_finding(
            Code.HEALTHY,
            Severity.INFO,
            None,
            evidence,
            f"{ctx.monitor} shows no clear trend yet at epoch {int(x[-1])} ({fmt(float(values[-1]))}; "
            f"last {_recent_span(ctx)} epochs neither improving beyond noise nor flat long enough to "
            "call converged)",
        )
    message = f"{ctx.monitor} still improving at epoch {int(x[-1])} ({fmt(float(values[-1]))})"
    remedies: tuple[Group, ...] = ()
    forecast = ctx.extrapolation
    if forecast is not None and math.isfinite(forecast.asymptote):
        gain = (forecast.asymptote - float(values[-1])) * (1 if ctx.higher else -1)
        evidence.update(asymptote=forecast.asymptote, plateau_epoch=forecast.plateau_epoch)
        if gain > 3 * ctx.sigma:
            message += f"; extrapolated ceiling {fmt(forecast.asymptote)}: train longer"
            remedies = (((), ("train longer",)),)
    elif recent_z > STILL_IMPROVING_Z:
        message += ": train longer"
        remedies = (((), ("train longer",)),)
    return make_finding(Code.HEALTHY, Severity.INFO, None, evidence, message, remedies)
