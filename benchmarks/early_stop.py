"""Benchmark: curvewatch's live stop against Keras EarlyStopping and Optuna's PatientPruner.

Every corpus run trained to its full budget (labels ``early_stopped`` false and ``complete`` true;
:mod:`benchmarks.replay`) is replayed epoch by epoch, as if it were training now, through:

- ``curvewatch should_stop``: :func:`pipelines.curves.callback.should_stop` on the history so far
  (``History.history`` style, every logged metric), with the run's epoch budget, class count and
  class prior;
- ``ES(val_loss, p=5)``, ``ES(val_loss, p=10)``, ``ES(val_accuracy, p=5)``: the real
  ``keras.callbacks.EarlyStopping`` (https://keras.io/api/callbacks/early_stopping/), set on a
  one-layer dummy model, fed ``on_epoch_end(epoch, logs)`` with the logged values, stopping when it
  sets ``model.stop_training`` (``mode="max"`` for val_accuracy, which Keras would otherwise infer
  from the compiled metrics; everything else at Keras' defaults: ``min_delta=0``);
- ``PatientPruner(p=5)``: Optuna's ``PatientPruner(wrapped_pruner=None, patience=5)``
  (https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.PatientPruner.html)
  in a real maximising in-memory study: one trial per run reports val_accuracy at each epoch
  (``trial.report(value, step=epoch)``) and stops when ``trial.should_prune()``.

A method "stops at epoch s" when it fires after s epochs (1-based; the run's full length when it
never fires). Per method it prints:

- on **stall** runs: median epochs saved against the full run, median epochs earlier than
  ``ES(val_loss, p=5)`` (the stop-epoch difference, positive = earlier), and mean regret;
- on **healthy / still improving** runs: false stops (regret > 0.005) and mean regret;
- over all runs: the share of epochs saved and mean regret.

Regret: best val_accuracy of the whole run minus the best up to the stop, i.e. what is lost when
the best weights so far are kept (``restore_best_weights=True`` semantics).

Groups, from the labels and the curve. A run is a **stall** when the corpus marks it so (its
``stall`` label: the best val_accuracy reached, within the binomial noise of the validation set,
at least max(5, a quarter of the run) epochs before the end). Where the corpus has no ``stall``
label (the older fixtures), a run is a stall when it expects ``plateau``, ``overfitting`` or
``not_learning``, or when its val_accuracy came within 0.005 of its best at least max(5, a quarter
of the run) epochs before the end. A converged healthy run can be a stall: more epochs bring it
nothing. A run is **healthy / still improving** when it is not a stall and the corpus marks it
``still_improving`` or it expects ``healthy`` or ``too_slow``: stopping it early costs accuracy.
Other runs (e.g. at chance, diverging) count only in the all-runs figures.

Targets (issue 6, on the test split), against ``ES(val_loss, p=5)``: stalls stopped a median of at
least 3 epochs earlier; mean regret on stalls no higher; no more false stops. The first target's
line also counts the stall runs should_stop stops 3 or more epochs earlier (a median of 3 needs
about half of them) and those on which each of the two never fires. Also printed: the histogram of
should_stop's stop epochs and the findings it stopped on.

Run: ``python -m benchmarks.early_stop [--corpus DIR] [--split tune|test|both]`` (imports Keras:
about 20 s before the first figure).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median
from typing import Any

import numpy as np

from benchmarks.replay import (
    SPLITS,
    LabelledRun,
    best_so_far,
    curvewatch_should_stop,
    default_corpus,
    fmt,
    keras_history,
    load_runs,
    read_curve,
)

REGRET_TOLERANCE = 0.005
STALL_CODES = frozenset({"plateau", "overfitting", "not_learning"})
IMPROVING_CODES = frozenset({"healthy", "too_slow"})
FLAT_TAIL_MIN_EPOCHS = 5
FLAT_TAIL_FRACTION = 0.25
TARGET_EARLIER_EPOCHS = 3
CURVEWATCH = "curvewatch should_stop"
REFERENCE = "ES(val_loss, p=5)"
# (name, monitor, patience, mode) of the Keras EarlyStopping replays.
KERAS_METHODS = (
    (REFERENCE, "val_loss", 5, "auto"),
    ("ES(val_loss, p=10)", "val_loss", 10, "auto"),
    ("ES(val_accuracy, p=5)", "val_accuracy", 5, "max"),
)
OPTUNA = "PatientPruner(p=5)"
METHODS = (CURVEWATCH, *(m[0] for m in KERAS_METHODS), OPTUNA)


@dataclass(frozen=True)
class Replayed:
    """One run replayed through every method.

    Attributes:
        run: the labelled run.
        val_accuracy: (E,) float64, the run's val_accuracy per epoch.
        stops: method -> epochs run before it stopped (1..E; E when it never fired).
        fired: method -> whether it fired at all.
        reasons: method -> why it stopped (curvewatch's finding code; "" otherwise).
    """

    run: LabelledRun
    val_accuracy: np.ndarray
    stops: dict[str, int]
    fired: dict[str, bool]
    reasons: dict[str, str]

    @property
    def epochs(self) -> int:
        return int(self.val_accuracy.size)

    def regret(self, method: str) -> float:
        return regret(self.val_accuracy, self.stops[method])


def regret(val_accuracy: np.ndarray, stop: int) -> float:
    """Best val_accuracy of the whole run minus the best of its first ``stop`` epochs.

    Args:
        val_accuracy: (E,) val_accuracy per epoch (NaN ignored).
        stop: epochs run before stopping, 1..E.

    Returns:
        The accuracy lost by stopping (fraction, >= 0), keeping the best weights so far.
    """
    return best_so_far(val_accuracy, val_accuracy.size) - best_so_far(val_accuracy, stop)


def flat_tail(val_accuracy: np.ndarray, tolerance: float = REGRET_TOLERANCE) -> int:
    """Epochs after the first one within ``tolerance`` of the run's best val_accuracy."""
    best = best_so_far(val_accuracy, val_accuracy.size)
    finite = np.where(np.isfinite(val_accuracy), val_accuracy, -np.inf)
    first = int(np.argmax(finite >= best - tolerance))
    return int(val_accuracy.size - 1 - first)


def group(run: LabelledRun, val_accuracy: np.ndarray) -> str:
    """``"stall"``, ``"improving"`` (healthy / still improving) or ``"other"``; see module docstring."""
    if run.stall is not None:
        stall = run.stall
    else:
        flat = flat_tail(val_accuracy) >= max(
            FLAT_TAIL_MIN_EPOCHS, math.ceil(FLAT_TAIL_FRACTION * val_accuracy.size)
        )
        stall = bool(run.expected & STALL_CODES) or flat
    if stall:
        return "stall"
    if run.still_improving or run.expected & IMPROVING_CODES:
        return "improving"
    return "other"


def stop_curvewatch(curve: Any, run: LabelledRun) -> tuple[int | None, str]:
    """First epoch (1-based) after which ``should_stop`` says stop, and its reason; None if never."""
    for epoch in range(1, curve.epochs.size + 1):
        stop, reason = curvewatch_should_stop(
            keras_history(curve, epoch),
            epoch_budget=run.epoch_budget,
            num_classes=run.num_classes,
            class_prior=run.class_prior,
        )
        if stop:
            return epoch, reason
    return None, ""


def stop_keras(curve: Any, model: Any, monitor: str, patience: int, mode: str) -> int | None:
    """First epoch (1-based) after which a real ``keras.callbacks.EarlyStopping`` stops training."""
    import keras

    callback = keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, mode=mode)
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    names = list(curve.metrics)
    for index in range(curve.epochs.size):
        callback.on_epoch_end(index, {name: float(curve.metrics[name][index]) for name in names})
        if model.stop_training:
            return index + 1
    return None


def stop_optuna(values: np.ndarray, patience: int = 5) -> int | None:
    """First epoch (1-based) after which Optuna's ``PatientPruner`` prunes a trial reporting ``values``."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.PatientPruner(None, patience=patience)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    for index, value in enumerate(values):
        trial.report(float(value), step=index)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return index + 1
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return None


def dummy_model() -> Any:
    """A one-layer Keras model for callbacks that need ``set_model`` (never trained)."""
    import keras

    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def replay(runs: Sequence[LabelledRun], progress: Callable[[str], None] | None = None) -> list[Replayed]:
    """Replay every run (those with val_accuracy) through every method of :data:`METHODS`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    model = dummy_model()
    replayed = []
    for number, run in enumerate(runs, start=1):
        curve = read_curve(run)
        val_accuracy = curve.get("val_accuracy")
        if val_accuracy is None:
            continue
        epochs = int(curve.epochs.size)
        stops: dict[str, int | None] = {}
        reasons = dict.fromkeys(METHODS, "")
        stops[CURVEWATCH], reasons[CURVEWATCH] = stop_curvewatch(curve, run)
        for name, monitor, patience, mode in KERAS_METHODS:
            stops[name] = (
                stop_keras(curve, model, monitor, patience, mode) if monitor in curve.metrics else None
            )
        stops[OPTUNA] = stop_optuna(val_accuracy)
        replayed.append(
            Replayed(
                run=run,
                val_accuracy=val_accuracy,
                stops={m: epochs if s is None else s for m, s in stops.items()},
                fired={m: s is not None for m, s in stops.items()},
                reasons=reasons,
            )
        )
        if progress is not None and number % 50 == 0:
            progress(f"  replayed {number}/{len(runs)} runs")
    return replayed


@dataclass(frozen=True)
class MethodSummary:
    """One method's figures on one set of replayed runs (NaN where a group is empty)."""

    stall_runs: int
    saved_median: float  # epochs, stall runs, against the full run
    earlier_median: float  # epochs earlier than the reference method, stall runs
    earlier_runs: int  # stall runs stopped earlier than by the reference method
    later_runs: int  # ... later
    earlier_by_target: int  # stall runs stopped at least TARGET_EARLIER_EPOCHS earlier than the reference
    never_fired: int  # stall runs on which this method never fired
    reference_never_fired: int  # stall runs on which the reference method never fired
    stall_regret: float  # mean regret, stall runs
    improving_runs: int
    false_stops: int  # improving runs with regret > REGRET_TOLERANCE
    improving_regret: float
    saved_share: float  # epochs saved / epochs run, all runs
    all_regret: float  # mean regret, all runs


def _mean(values: list[float]) -> float:
    return mean(values) if values else math.nan


def _median(values: list[float]) -> float:
    return float(median(values)) if values else math.nan


def summarise(replayed: Sequence[Replayed], method: str, reference: str = REFERENCE) -> MethodSummary:
    """Figures of ``method`` over ``replayed`` (see the module docstring for the definitions)."""
    groups = [group(r.run, r.val_accuracy) for r in replayed]
    stalls = [r for r, g in zip(replayed, groups, strict=True) if g == "stall"]
    improving = [r for r, g in zip(replayed, groups, strict=True) if g == "improving"]
    total = sum(r.epochs for r in replayed)
    return MethodSummary(
        stall_runs=len(stalls),
        saved_median=_median([r.epochs - r.stops[method] for r in stalls]),
        earlier_median=_median([r.stops[reference] - r.stops[method] for r in stalls]),
        earlier_runs=sum(r.stops[method] < r.stops[reference] for r in stalls),
        later_runs=sum(r.stops[method] > r.stops[reference] for r in stalls),
        earlier_by_target=sum(r.stops[reference] - r.stops[method] >= TARGET_EARLIER_EPOCHS for r in stalls),
        never_fired=sum(not r.fired[method] for r in stalls),
        reference_never_fired=sum(not r.fired[reference] for r in stalls),
        stall_regret=_mean([r.regret(method) for r in stalls]),
        improving_runs=len(improving),
        false_stops=sum(r.regret(method) > REGRET_TOLERANCE for r in improving),
        improving_regret=_mean([r.regret(method) for r in improving]),
        saved_share=sum(r.epochs - r.stops[method] for r in replayed) / total if total else math.nan,
        all_regret=_mean([r.regret(method) for r in replayed]),
    )


def targets(ours: MethodSummary, reference: MethodSummary) -> list[str]:
    """The three issue-6 targets of should_stop against ``ES(val_loss, p=5)``, each "met" / "NOT met"."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    return [
        f"stalls stopped a median >= {TARGET_EARLIER_EPOCHS} epochs earlier than {REFERENCE}: "
        f"{fmt(ours.earlier_median, 1)} -> {verdict(ours.earlier_median >= TARGET_EARLIER_EPOCHS)} "
        f"(earlier on {ours.earlier_runs}, later on {ours.later_runs} of {ours.stall_runs} stall runs; "
        f"{TARGET_EARLIER_EPOCHS} or more epochs earlier on {ours.earlier_by_target}, where a median of "
        f"{TARGET_EARLIER_EPOCHS} needs about half; {REFERENCE} never fires on {ours.reference_never_fired} "
        f"of them, {CURVEWATCH} on {ours.never_fired})",
        f"mean regret on stalls no higher: {fmt(ours.stall_regret, 4)} vs {fmt(reference.stall_regret, 4)} -> "
        f"{verdict(ours.stall_regret <= reference.stall_regret)}",
        f"no more false stops: {ours.false_stops} vs {reference.false_stops} -> "
        f"{verdict(ours.false_stops <= reference.false_stops)}",
    ]


def report(title: str, replayed: Sequence[Replayed], out: Callable[[str], None] = print) -> None:
    """Print the per-method table, the targets and should_stop's stop-epoch histogram."""
    out(f"\n== {title}: {len(replayed)} full-budget runs ==")
    if not replayed:
        out("no runs in this split")
        return
    summaries = {m: summarise(replayed, m) for m in METHODS}
    first = summaries[CURVEWATCH]
    out(
        f"stall runs: {first.stall_runs}; healthy / still improving runs: {first.improving_runs}; "
        f"other: {len(replayed) - first.stall_runs - first.improving_runs}"
    )
    out(
        f"{'method':<24}{'stall: saved':>13}{'earlier':>9}{'regret':>8}"
        f"{'improving: false stops':>24}{'regret':>8}{'all: saved':>12}{'regret':>8}"
    )
    for method, s in summaries.items():
        out(
            f"{method:<24}{fmt(s.saved_median, 1):>13}{fmt(s.earlier_median, 1):>9}{fmt(s.stall_regret, 4):>8}"
            f"{f'{s.false_stops}/{s.improving_runs}':>24}{fmt(s.improving_regret, 4):>8}"
            f"{fmt(100 * s.saved_share, 0) + '%':>12}{fmt(s.all_regret, 4):>8}"
        )
    out(
        f"(stall: median epochs saved vs the full run, median epochs earlier than {REFERENCE}, mean regret; "
        f"improving: runs with regret > {REGRET_TOLERANCE}; all: share of epochs saved, mean regret)"
    )
    out(f"targets for {CURVEWATCH} against {REFERENCE}:")
    for line in targets(first, summaries[REFERENCE]):
        out(f"  {line}")
    fired = [r.stops[CURVEWATCH] for r in replayed if r.fired[CURVEWATCH]]
    histogram = Counter(fired)
    out(f"{CURVEWATCH} stop epochs ({len(fired)} stops, {len(replayed) - len(fired)} runs never stopped):")
    out("  " + ", ".join(f"{epoch}: {n}" for epoch, n in sorted(histogram.items())))
    if histogram:
        epoch, n = histogram.most_common(1)[0]
        out(f"  most common: epoch {epoch}, {n} of {len(fired)} stops ({100 * n / len(fired):.0f}%)")
        reasons = Counter(r.reasons[CURVEWATCH] for r in replayed if r.fired[CURVEWATCH])
        out("  stopped on: " + ", ".join(f"{code or '?'} {n}" for code, n in reasons.most_common()))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="default: tests/fixtures/corpus if present")
    parser.add_argument("--split", choices=(*SPLITS, "both"), default="both")
    args = parser.parse_args(argv)
    corpus = args.corpus or default_corpus()
    splits = SPLITS if args.split == "both" else (args.split,)
    runs = load_runs(corpus, splits)
    full = [r for r in runs if r.complete and not r.early_stopped]
    print(f"corpus {corpus}: {len(runs)} runs, {len(full)} trained to their full budget")
    started = time.perf_counter()
    import keras  # noqa: F401  (TensorFlow's start-up, timed apart from the replay)

    print(f"imported Keras in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    replayed = replay(full, progress=print)
    print(f"replayed {len(replayed)} runs with val_accuracy in {time.perf_counter() - started:.1f} s")
    for split in splits:
        report(f"{split} split", [r for r in replayed if r.run.split == split])


if __name__ == "__main__":
    main()
