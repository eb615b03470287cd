"""The labelling rubric: which findings a curve shows, checked with numbers, not by eye.

This module reads only the CSV and the run's design (``runs.json``); it never imports
``pipelines.curves``, so the corpus's labels stay independent of the engine they benchmark.
README.md ("Rubric") states every rule in words; the thresholds are here, named.

Noise scale. On ``n`` validation examples an accuracy near ``p`` has binomial standard deviation
``sqrt(p (1 - p) / n)`` (the normal approximation; e.g. Agresti & Coull, *The American
Statistician* 52(2), 1998); accuracy also moves in steps of ``1 / n``. Every accuracy margin below
is the larger of a fixed floor and a multiple of that deviation, so a 40-example validation set
needs a larger gap than a 10,000-example one.

Chance. A model that has learned nothing but the class prior predicts the training majority class:
its validation accuracy is that class's validation share (``chance``) and its cross-entropy is
``-sum(q_k log p_k)`` with ``p`` the training prior and ``q`` the validation prior (``prior_loss``;
the prior's entropy when both match).

Reference level. What a sound configuration reaches on the same task (``ceiling``): the median of
the best val_accuracy of the runs designed as healthy on the task (complete, not early-stopped),
or the logistic-regression baseline (baselines.py) when that is higher. ``ref_loss`` is the median of
their lowest val_loss.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.baselines import load_baselines

CODES = (
    "healthy",
    "plateau",
    "overfitting",
    "underfitting",
    "not_learning",
    "divergence",
    "oscillation",
    "too_slow",
    "incomplete",
)

#: Views whose task (and so ceiling) is another view's: same labels, another input form or val set.
TASK_OF: dict[str, str] = {
    "digits-img": "digits",
    "fmnist-img": "fmnist",
    "fmnist-raw": "fmnist",
    "shapes-img": "shapes",
    "wine-raw": "wine",
    "bc-raw": "bc",
    "shapes-small-val": "shapes",
    "synth-5-small-val": "synth-5",
    "moons-big-val": "moons",
    "blobs-big-val": "blobs",
    "textures-img": "textures",
    "textures-10k": "textures",
    "textures-small-val": "textures",
    "textures-raw": "textures",
    "diabetes-raw": "diabetes",
}

# Thresholds (see README.md, "Rubric").
Z = 2.0  # binomial standard deviations for "beyond chance" and accuracy gaps
PRIOR_LOSS_SHARE = 0.9  # not_learning: val_loss never below 90 % of the prior's loss
FROZEN_LOSS_RANGE = 0.001  # not_learning: training loss within 0.1 % of its level all run
DIVERGENCE_FACTOR = 10.0  # divergence: training loss above 10x the prior's loss
BLOWUP_FACTOR = 100.0  # divergence: training loss rose above 100x its lowest value, and stays up
OVERFIT_MIN_BEFORE_END = 3  # epochs between val_loss's minimum and the end
OVERFIT_RISE = 0.10  # relative rise of val_loss above its minimum (and 3x its epoch-to-epoch noise)
PLATEAU_GAP = 0.03  # plateau/underfitting/healthy: accuracy gap to the ceiling (floor)
STALL_EPOCHS = 5  # a stall lasts at least this many epochs (and a quarter of the run)
SLOW_LOSS_FACTOR = 1.5  # too_slow: lowest val_loss above 1.5x the healthy runs' lowest
TRAIN_OSC_SWING = 0.10  # oscillation (acceptable only): the training loss's median change over its median
OSC_SWING = 0.05  # oscillation: floor of val_loss's median epoch-to-epoch change over its median
STEADY_LATE_SHARE = 0.10  # too_slow: the last third brings >= 10 % of val_loss's total fall


def binomial_sd(p: float, n: int) -> float:
    """Standard deviation of an accuracy ``p`` measured on ``n`` examples (normal approximation)."""
    p = min(max(p, 0.0), 1.0)
    return math.sqrt(max(p * (1 - p), 1e-4) / max(n, 1))


def read_curve(path: Path) -> dict[str, np.ndarray]:
    """Read a CSVLogger file into float arrays by column (``nan``/``inf`` kept).

    Raises:
        ValueError: a required column is missing (the message names the file and the column).
    """
    import pandas as pd

    df = pd.read_csv(path)
    for col in ("epoch", "accuracy", "loss", "val_accuracy", "val_loss"):
        if col not in df.columns:
            raise ValueError(f"{path}: missing column {col!r}")
    return {col: pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float) for col in df.columns}


@dataclass
class Context:
    """What the rubric knows about a run besides its curve."""

    n_val: int
    train_prior: list[float]
    val_prior: list[float]
    ceiling: float | None
    ref_loss: float | None
    complete: bool

    @property
    def chance(self) -> float:
        """The best accuracy of a constant prediction on the validation set (its largest class)."""
        return float(max(self.val_prior))

    @property
    def prior_loss(self) -> float:
        p = np.clip(np.asarray(self.train_prior), 1e-7, 1)
        return float(-(np.asarray(self.val_prior) * np.log(p)).sum())

    def chance_band(self) -> float:
        """The highest val_accuracy still compatible with predicting the majority class."""
        return self.chance + max(Z * binomial_sd(self.chance, self.n_val), 1.0 / self.n_val) + 1e-9


@dataclass
class Verdict:
    """The rubric's findings on one curve, with the numbers that decided them."""

    findings: set[str] = field(default_factory=set)
    borderline: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)


def _last(x: np.ndarray, k: int) -> np.ndarray:
    return x[-min(k, len(x)) :]


def _flips_and_swing(seg: np.ndarray) -> tuple[float, float]:
    """(share of epoch-to-epoch changes that reverse direction, median change / median level) of
    a loss segment (oscillation)."""
    d = np.diff(seg)
    flips = float((np.sign(d[1:]) * np.sign(d[:-1]) < 0).mean()) if len(d) > 1 else 0.0
    return flips, float(np.median(np.abs(d)) / max(float(np.median(seg)), 1e-12))


def check(curve: Mapping[str, np.ndarray], ctx: Context) -> Verdict:
    """Apply every rule of the rubric to one curve.

    Args:
        curve: columns of the CSV (``accuracy``, ``loss``, ``val_accuracy``, ``val_loss``), one
            value per logged epoch.
        ctx: validation size, priors, reference level and loss, completeness.

    Returns:
        The findings (subset of :data:`CODES`) and the facts behind them.
    """
    va, vl, ta, tl = (
        np.asarray(curve[c], dtype=float) for c in ("val_accuracy", "val_loss", "accuracy", "loss")
    )
    n = len(va)
    v = Verdict()
    f = v.facts
    nonfinite = bool((~np.isfinite(vl)).any() or (~np.isfinite(tl)).any())
    fin = np.isfinite(vl) & np.isfinite(tl)
    band = ctx.chance_band()
    f.update(
        epochs=n, chance=round(ctx.chance, 4), chance_band=round(band, 4), prior_loss=round(ctx.prior_loss, 4)
    )
    f.update(best_val_accuracy=round(float(np.nanmax(va)), 4), last_val_accuracy=round(float(va[-1]), 4))
    if ctx.ceiling is not None:
        f["ceiling"] = round(ctx.ceiling, 4)

    # --- divergence: non-finite losses, or a training loss blown up to 10x the prior's loss that
    # the run does not recover from (it ends at chance or still far above the prior's loss).
    max_tl = float(np.nanmax(np.where(np.isfinite(tl), tl, np.nan))) if np.isfinite(tl).any() else math.inf
    blown = max_tl > DIVERGENCE_FACTOR * ctx.prior_loss
    # (Keras adds L2 penalties to loss and val_loss: a large loss alone is not divergence, so a
    # blown-up loss counts only when the run ends at chance.)
    ends_dead = va[-1] <= band or not np.isfinite(tl[-1])
    # Collapse: the run learned (beyond chance), then its training loss rose > 10x above its
    # lowest value and it ends at chance (a learning rate ramped past the stable range).
    collapse = blowup = False
    if np.isfinite(tl).sum() >= 3:
        i_low = int(np.nanargmin(np.where(np.isfinite(tl), tl, np.nan)))
        after = tl[i_low:][np.isfinite(tl[i_low:])]
        collapse = bool(
            np.nanmax(va) > ctx.chance_band()
            and va[-1] <= band
            and after.max() > DIVERGENCE_FACTOR * tl[i_low]
        )
        # Blow-up: after its lowest value the training loss rose more than 100-fold and ends above
        # 10x the prior's loss. An L2 penalty makes a loss large from the start, never 100x its own
        # minimum later, so an accuracy that holds meanwhile (logits blown up) does not excuse it.
        blowup = bool(
            np.isfinite(tl[-1])
            and tl[-1] > DIVERGENCE_FACTOR * ctx.prior_loss
            and after.max() > BLOWUP_FACTOR * tl[i_low]
        )
    # Never back: the lowest val_loss of the whole run is 10x the prior's loss (weights blown up,
    # logits huge), whatever the accuracy.
    vl_fin = vl[np.isfinite(vl)]
    never_back = bool(len(vl_fin) and vl_fin.min() > DIVERGENCE_FACTOR * ctx.prior_loss)
    f.update(
        nonfinite=nonfinite,
        max_train_loss=round(max_tl, 4) if math.isfinite(max_tl) else "inf",
        collapse=collapse,
        blowup=blowup,
        val_loss_never_below_10x_prior=never_back,
    )
    if nonfinite or (blown and ends_dead) or collapse or blowup or never_back:
        v.findings.add("divergence")
    # --- not_learning: val_accuracy never beyond the chance band and val_loss never below 90 %
    # of the prior's loss (nothing learned beyond the prior), unless val_loss falls steadily.
    min_vl = float(np.nanmin(vl[fin])) if fin.any() else math.inf
    vl_f = vl[fin]
    steady = False
    if len(vl_f) >= 4:
        # Steady fall: most epochs of the second half lower val_loss, the run ends at its lowest,
        # it fell >= 5 % overall, and the last third still brings >= 10 % of the total fall (a
        # converging run's last third brings little).
        d = np.diff(vl_f[len(vl_f) // 2 - 1 :]) if len(vl_f) >= 6 else np.diff(vl_f)
        total = vl_f[0] - vl_f[-1]
        drop = total / max(abs(vl_f[0]), 1e-12)
        third = len(vl_f) - max(2, len(vl_f) // 3)
        late_share = (vl_f[third] - vl_f[-1]) / total if total > 0 else 0.0
        steady = bool(
            (d < 0).mean() >= 0.7
            and drop >= 0.05
            and vl_f[-1] <= min_vl * 1.02
            and late_share >= STEADY_LATE_SHARE
        )
        f.update(
            val_loss_down_share=round(float((d < 0).mean()), 3),
            val_loss_drop=round(float(drop), 4),
            val_loss_late_share=round(float(late_share), 4),
        )
    f["val_loss_falls_steadily"] = steady
    never_beyond_chance = float(np.nanmax(va)) <= band
    no_loss_gain = min_vl >= PRIOR_LOSS_SHARE * ctx.prior_loss
    # Weights that do not move (frozen layers, a rate of 1e-6): the training loss stays within
    # FROZEN_LOSS_RANGE of its level all run. Whatever the accuracy, it is the fixed output of a
    # random network, not something learned.
    tl_f = tl[np.isfinite(tl)]
    frozen = bool(tl_f.size >= 2 and np.ptp(tl_f) < FROZEN_LOSS_RANGE * max(abs(float(np.mean(tl_f))), 1e-12))
    f.update(
        min_val_loss=round(min_vl, 4) if math.isfinite(min_vl) else "inf",
        never_beyond_chance=never_beyond_chance,
        weights_frozen=frozen,
    )
    if (never_beyond_chance and no_loss_gain) or frozen:
        v.findings.add("not_learning")
    learned_nothing = never_beyond_chance or frozen  # the rules below judge no random network

    # --- too_slow: val_loss falls steadily to the end while far from what the task reaches.
    gap_floor = lambda p: max(PLATEAU_GAP, Z * binomial_sd(p, ctx.n_val))  # noqa: E731
    far_acc = ctx.ceiling is not None and float(np.nanmax(va)) < ctx.ceiling - max(
        0.05, gap_floor(ctx.ceiling)
    )
    far_loss = ctx.ref_loss is not None and min_vl > SLOW_LOSS_FACTOR * ctx.ref_loss
    f.update(far_from_ceiling=bool(far_acc), far_from_ref_loss=bool(far_loss))
    if ctx.ref_loss is not None:
        f["ref_loss"] = round(ctx.ref_loss, 4)
    if steady and (far_acc or far_loss) and not v.findings & {"divergence", "not_learning"}:
        v.findings.add("too_slow")

    # --- stall statistics (used by plateau and by the trajectory field).
    best = float(np.nanmax(va))
    tol = max(1.0 / ctx.n_val, binomial_sd(best, ctx.n_val))
    reached = int(np.flatnonzero(va >= best - tol)[0])
    stall_len = n - 1 - reached
    f.update(plateau_from_epoch=reached, plateau_epochs=stall_len)
    stalled = stall_len >= max(STALL_EPOCHS, n // 4)

    # --- underfitting: train and val accuracy both low and close, flat over the last third.
    k = max(3, n // 3)
    ta_end, va_end = float(np.nanmean(_last(ta, k))), float(np.nanmean(_last(va, k)))
    flat_end = float(np.nanmax(_last(ta, k)) - np.nanmin(_last(ta, k))) <= max(
        0.03, 2 * binomial_sd(ta_end, 500)
    )
    f.update(
        train_accuracy_end=round(ta_end, 4), val_accuracy_end=round(va_end, 4), train_flat_end=bool(flat_end)
    )
    if (
        ctx.ceiling is not None
        and not learned_nothing
        and ta_end < ctx.ceiling - max(0.05, gap_floor(ctx.ceiling))
        and abs(ta_end - va_end) <= max(0.05, Z * binomial_sd(va_end, ctx.n_val))
        and flat_end
        and not steady
        and "divergence" not in v.findings
    ):
        v.findings.add("underfitting")

    # --- plateau: val_accuracy within noise of its best for the last quarter (>= 5 epochs), the
    # best clearly below the ceiling and beyond chance.
    if (
        ctx.ceiling is not None
        and stalled
        and not learned_nothing
        and not steady
        and "divergence" not in v.findings
    ):
        if best < ctx.ceiling - max(gap_floor(ctx.ceiling), gap_floor(best)):
            v.findings.add("plateau")
        elif best < ctx.ceiling - max(gap_floor(ctx.ceiling), gap_floor(best)) / 2:
            v.borderline.add("plateau")

    # --- overfitting: val_loss's minimum >= 3 epochs before the end, the last epochs above it by
    # > 10 % and > 3x the typical epoch-to-epoch change, while the training loss keeps falling.
    if fin.sum() >= 5:
        idx = np.flatnonzero(fin)
        i_min = int(idx[np.argmin(vl[fin])])
        tail = float(np.mean(_last(vl_f, 3)))
        noise = float(np.median(np.abs(np.diff(vl_f))))
        rise = (tail - min_vl) / max(min_vl, 1e-12)
        train_falls = bool(np.isfinite(tl[-1]) and tl[-1] < 0.9 * tl[i_min])
        f.update(
            val_loss_min_epoch=i_min,
            val_loss_rise=round(float(rise), 4),
            train_loss_falls_after_min=train_falls,
        )
        if n - 1 - i_min >= OVERFIT_MIN_BEFORE_END and train_falls and "divergence" not in v.findings:
            # On few validation examples one confidently wrong example moves the mean loss:
            # the rise must also exceed 1.5 / sqrt(n_val) (see the oscillation rule's scatter).
            need = max(OVERFIT_RISE, 1.5 / math.sqrt(ctx.n_val))
            f["overfit_rise_needed"] = round(need, 4)
            if rise > need and tail - min_vl > 3 * noise:
                v.findings.add("overfitting")
            elif rise > need / 2:
                v.borderline.add("overfitting")

    # --- oscillation: after the first fifth, val_loss changes direction often, by a large share
    # of its level, and val_accuracy's swings exceed the binomial noise of the validation set.
    start = max(1, n // 5)
    if fin.sum() - start >= 4 and "divergence" not in v.findings:
        seg, aseg = vl[fin][start:], va[fin][start:]
        flips, swing = _flips_and_swing(seg)
        acc_swing = float(np.median(np.abs(np.diff(aseg))))
        acc_noise = math.sqrt(2) * binomial_sd(float(np.mean(aseg)), ctx.n_val)
        f.update(
            val_loss_flips=round(flips, 3),
            val_loss_swing=round(swing, 4),
            val_acc_swing=round(acc_swing, 4),
            val_acc_noise=round(acc_noise, 4),
        )
        # The mean cross-entropy of n examples scatters by about sd(per-example loss) / sqrt(n),
        # and per-example cross-entropy has sd of the order of its mean: swings below
        # 3 / sqrt(n_val) of the level are within what resampling the validation set would give.
        loss_noise = 3.0 / math.sqrt(ctx.n_val)
        f["val_loss_noise"] = round(loss_noise, 4)
        loss_swings = swing >= max(OSC_SWING, loss_noise)
        # or val_accuracy itself jumps by more than twice the noise of the difference of two
        # binomial estimates, epoch after epoch, with val_loss moving too
        acc_swings = acc_swing > 2 * acc_noise and swing >= OSC_SWING
        if flips >= 0.4 and (loss_swings or acc_swings):
            v.findings.add("oscillation")
        elif flips >= 0.3 and swing >= max(OSC_SWING, loss_noise) / 2:
            v.borderline.add("oscillation")
        # The training loss swinging up and down: the mean over the whole training set does not
        # scatter by sampling as val_loss does, so a median epoch-to-epoch change of 10 % of its
        # level, changing direction on 40 % of the epochs, is the optimiser overshooting (a rate
        # too high). Acceptable beside what the validation curves show, never required.
        tseg = tl_f[start:] if len(tl_f) > start else tl_f[:0]
        if tseg.size >= 4:
            t_flips, t_swing = _flips_and_swing(tseg)
            f.update(train_loss_flips=round(t_flips, 3), train_loss_swing=round(t_swing, 4))
            if t_flips >= 0.4 and t_swing >= TRAIN_OSC_SWING:
                v.borderline.add("oscillation")

    # --- healthy: no problem found, beyond chance and close to the ceiling.
    problems = v.findings - {"incomplete"}
    near = ctx.ceiling is None or best >= ctx.ceiling - max(0.05, gap_floor(ctx.ceiling))
    if not problems and not learned_nothing and near:
        v.findings.add("healthy")

    # --- trajectory: stall (best reached long before the end, nothing after it better) or
    # still improving (best val_accuracy or lowest val_loss in the last fifth).
    late = max(2, n // 5)
    if "divergence" in v.findings or learned_nothing:
        f["trajectory"] = "no_progress"
    elif reached >= n - late or (
        fin.any() and int(np.flatnonzero(fin)[np.argmin(vl[fin])]) >= n - late and steady
    ):
        f["trajectory"] = "still_improving"
    elif stalled:
        f["trajectory"] = "stall"
    else:
        f["trajectory"] = "converging"
    if not ctx.complete:
        v.findings.add("incomplete")
    return v


# ---------------------------------------------------------------------------------------------
# From verdicts to labels.
# ---------------------------------------------------------------------------------------------

#: Codes that are not false alarms next to an expected code (they describe the same run from
#: another side): a stall below the ceiling is often also under- or overfitting; a run that
#: diverged is also not learning afterwards; a net memorising shuffled labels overfits.
RELATED: dict[str, set[str]] = {
    "plateau": {"underfitting", "overfitting"},
    "underfitting": {"plateau"},
    "overfitting": {"plateau"},
    "not_learning": {"divergence", "overfitting", "too_slow"},
    "divergence": {"not_learning", "oscillation"},
    "oscillation": {"overfitting", "plateau"},
    "too_slow": {"underfitting", "not_learning"},
    "healthy": set(),
    "incomplete": set(),
}

#: Decisions taken by reading the numbers where the design and the rubric disagree and the
#: rubric's automatic outcome (below) would be wrong: file -> (expected, acceptable, reason).
OVERRIDES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {}

LABELS_FILE = "labels.json"
DROPPED_FILE = "dropped.json"


#: The generation of long budgets (:func:`benchmarks.corpus.variants._long_budget_extras`).
LONG_BUDGET_GENERATION = 6
#: The generation of heavy-dropout runs (:func:`benchmarks.corpus.variants._dropout_extras`).
DROPOUT_GENERATION = 9
#: Generations whose healthy runs do not set the reference levels: configurations added to test a
#: reading, not the family's sound setting; counting them would move every other run's label.
NOT_REFERENCE_GENERATIONS = (LONG_BUDGET_GENERATION, DROPOUT_GENERATION)


def _task(view: str) -> str:
    return TASK_OF.get(view, view)


def references(
    runs: Mapping[str, Mapping[str, Any]], out_dir: Path
) -> tuple[dict[str, float], dict[str, float]]:
    """Per task, the ceiling (median best val_accuracy of healthy-design runs) and per view the
    reference loss (median lowest val_loss of those runs on exactly that validation set).

    Only complete, not early-stopped runs of budget >= 10 epochs count, and not the long budgets
    of generation 6 (150-400 epochs): the best of hundreds of noisy epochs sits above what the
    family's usual budget reaches, and would move every other run's reference; nor the heavy
    dropout of generation 9, another configuration than the family's sound one.
    """
    accs: dict[str, list[float]] = defaultdict(list)
    losses: dict[str, list[float]] = defaultdict(list)
    for name, run in runs.items():
        if (
            run["scenario"] != "healthy"
            or run.get("kill_at")
            or run.get("early_stop_patience")
            or run["epochs"] < 10
            or run.get("generation") in NOT_REFERENCE_GENERATIONS
        ):
            continue
        curve = read_curve(out_dir / name)
        accs[_task(run["view"])].append(float(np.nanmax(curve["val_accuracy"])))
        losses[run["view"]].append(float(np.nanmin(curve["val_loss"])))
    return (
        {k: float(np.median(v)) for k, v in accs.items()},
        {k: float(np.median(v)) for k, v in losses.items()},
    )


def label_run(
    run: Mapping[str, Any],
    curve: Mapping[str, np.ndarray],
    ceiling: float | None,
    ref_loss: float | None,
    baseline: float | None,
) -> tuple[dict[str, Any] | None, str]:
    """Turn one run's design and curve into its label, or ``None`` (dropped) with the reason.

    Policy: ``expected`` = the intended findings the rubric confirms; when it confirms none, the
    rubric's own findings replace them (the run is relabelled, and the notes say so); when the
    rubric finds nothing either, the run is dropped. Other rubric findings, and codes related to
    the expected ones (:data:`RELATED`), go to ``acceptable``. ``incomplete`` is expected on every
    killed run.
    """
    complete = not run.get("kill_at")
    early = bool(run.get("early_stop_patience")) and len(curve["val_accuracy"]) < run["epochs"]
    ceil = max(c for c in (ceiling, baseline) if c is not None) if (ceiling or baseline) else None
    ctx = Context(run["n_val"], run["class_prior"], run["val_class_prior"], ceil, ref_loss, complete)
    verdict = check(curve, ctx)
    found = verdict.findings - {"incomplete"}
    intended = set(run["intended"]) - {"incomplete"}
    confirmed = intended & found
    notes = run["notes"]
    if run["file"] in OVERRIDES:
        exp, acc, why = OVERRIDES[run["file"]]
        expected, acceptable = set(exp), set(acc)
        notes += f". Override: {why}"
    elif not intended:
        # A sound run killed early: whatever the rubric sees on its prefix, beside incomplete.
        expected = found - {"healthy"}
        acceptable = found & {"healthy"}
        notes += f". Killed after {len(curve['val_accuracy'])} of {run['epochs']} epochs"
    elif confirmed:
        expected = set(confirmed)
        acceptable = found - confirmed
        if intended - confirmed:
            notes += f". Rubric did not confirm {sorted(intended - confirmed)}"
    elif found == {"healthy"} and not _clearly_healthy(verdict, ctx):
        return None, (
            f"designed as {sorted(intended)}; the rubric finds no problem but the best val_accuracy "
            f"{verdict.facts['best_val_accuracy']} is within one gap of the reference {verdict.facts.get('ceiling')}: "
            "ambiguous"
        )
    elif found:
        expected = set(found)
        acceptable = set()
        notes += (
            f". Designed as {sorted(intended)}; the curve shows {sorted(found)} (relabelled by the rubric)"
        )
    else:
        return None, f"designed as {sorted(intended)}; rubric found nothing conclusive: {verdict.facts}"
    if "healthy" in expected and len(expected) > 1:
        expected.discard("healthy")
    for code in list(expected):
        acceptable |= RELATED[code]
    if not complete:
        expected.add("incomplete")
    acceptable |= verdict.borderline
    acceptable -= expected
    if complete:
        acceptable.discard("healthy")  # healthy is never an acceptable extra: it would excuse a miss
    traj = verdict.facts["trajectory"]
    label = {
        "file": run["file"],
        "dataset": run["dataset"],
        "view": run["view"],
        "split": run["split"],
        "scenario": run["scenario"],
        "variant": run["name"],
        "seed": run["seed"],
        "expected": sorted(expected, key=CODES.index),
        "acceptable": sorted(acceptable, key=CODES.index),
        "intended": list(run["intended"]),
        "epoch_budget": run["epochs"],
        "epochs_logged": len(curve["val_accuracy"]),
        "num_classes": run["num_classes"],
        "class_prior": run["class_prior"],
        "val_class_prior": run["val_class_prior"],
        "majority_share": round(max(run["class_prior"]), 4),
        "n_train": run["n_train"],
        "n_val": run["n_val"],
        "optimizer": run["optimizer"],
        "learning_rate": run["learning_rate"],
        "schedule": run["schedule"],
        "config": {
            "model": run["model"],
            "model_kwargs": run["model_kwargs"],
            "batch_size": run["batch_size"],
            "early_stop_patience": run["early_stop_patience"],
            "kill_at": run["kill_at"],
            "view_note": run["view_note"],
        },
        "early_stopped": early,
        "complete": complete,
        "stall": traj == "stall",
        "still_improving": traj == "still_improving",
        "trajectory": traj,
        "baseline_accuracy": baseline,
        "reference_accuracy": round(ceil, 4) if ceil is not None else None,
        "rubric": verdict.facts,
        "rubric_borderline": sorted(verdict.borderline),
        "notes": notes,
    }
    return label, ""


def _clearly_healthy(verdict: Verdict, ctx: Context) -> bool:
    """A run designed to fail may be relabelled healthy only when it is close to the reference:
    within half the plateau gap (so an in-between level is dropped, not called either way)."""
    if ctx.ceiling is None:
        return True
    gap = max(PLATEAU_GAP, Z * binomial_sd(ctx.ceiling, ctx.n_val))
    return verdict.facts["best_val_accuracy"] >= ctx.ceiling - gap / 2


def relabel(out_dir: Path) -> dict[str, Any]:
    """Label every run of ``out_dir/runs.json`` and write ``labels.json`` and ``dropped.json``.

    Returns:
        The labels, keyed by CSV file name.

    Raises:
        FileNotFoundError: ``runs.json`` or a CSV it names is missing.
    """
    from pipelines.io_utils import atomic_write_text

    runs = json.loads((out_dir / "runs.json").read_text())
    ceilings, ref_losses = references(runs, out_dir)
    baselines = load_baselines()
    labels: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for name, run in sorted(runs.items()):
        curve = read_curve(out_dir / name)
        label, why = label_run(
            run,
            curve,
            ceilings.get(_task(run["view"])),
            ref_losses.get(run["view"]),
            baselines.get(run["view"]),
        )
        if label is None:
            dropped[name] = why
        else:
            labels[name] = label
    atomic_write_text(out_dir / LABELS_FILE, json.dumps(labels, indent=1) + "\n")
    atomic_write_text(out_dir / DROPPED_FILE, json.dumps(dropped, indent=1) + "\n")
    return labels


def table(out_dir: Path) -> str:
    """Counts of runs per split x expected finding (and totals), as a markdown table."""
    labels = json.loads((out_dir / LABELS_FILE).read_text())
    counts: Counter[tuple[str, str]] = Counter()
    runs: Counter[str] = Counter()
    for label in labels.values():
        runs[label["split"]] += 1
        for code in label["expected"]:
            counts[(label["split"], code)] += 1
    lines = ["| finding | tune | test |", "| --- | --- | --- |"]
    for code in CODES:
        lines.append(f"| {code} | {counts[('tune', code)]} | {counts[('test', code)]} |")
    lines.append(f"| runs | {runs['tune']} | {runs['test']} |")
    return "\n".join(lines)
