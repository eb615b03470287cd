"""Benchmark: how well curvewatch, and the peer sk-autod, name what is wrong with real training curves.

Reads a labelled corpus (:mod:`benchmarks.replay`: Keras ``CSVLogger`` files plus ``labels.json``
with each run's ``expected`` and ``acceptable`` finding codes and its ``split``), diagnoses every
run with :func:`pipelines.curves.diagnose.diagnose`, and prints per split (tune and test apart):

- per finding code: support (runs expecting it), recall (found among them), precision (a reported
  finding is correct when the run lists it in ``expected`` or ``acceptable``); ``healthy`` counts
  as found when no problem code outside ``acceptable`` was reported;
- must-find recall and precision over all problem codes (micro-averaged);
- runs fully right: every expected code found, nothing outside ``expected`` and ``acceptable``;
- false alarms on healthy runs (``expected == ["healthy"]``): a problem finding that the run's
  ``acceptable`` does not list (in brackets: any problem finding at all);
- the confusion between findings: for each expected code, what was reported on those runs, and
  on the runs where it was missed;
- the same for the peer ``sk-autod`` (a dev dependency; skipped when absent) on the same curves.

Which findings count: every finding of ``Diagnosis.findings`` whose severity is WARNING or CRITICAL,
plus any finding whose code some run expects; INFO notes such as ``noisy_validation`` and the
``healthy`` finding itself do not. A run with no problem finding is "called healthy": the code
``healthy`` is then its one reported code, so ``healthy`` gets a recall (healthy runs left alone)
and a precision (runs left alone that are healthy) like any other code. A run the tool refuses (a
``ValueError``: e.g. sk-autod needs 5 finite epochs of ``loss`` and ``val_loss``) reports nothing:
its expected codes count as missed, it is not a false alarm, and it is never fully right.

What the engine is told: each run's epoch budget, class count and class prior (``--blind``: the
file alone), and no baseline accuracy, as for a file run (``curvewatch diagnose FILE``) and as the
held-out sets of issue 6 are scored. ``--baseline`` also passes the run's ``baseline_accuracy``
label, as the pipeline does for its own runs (for the older fixtures of ``tests/fixtures/curves``:
the per-dataset baselines of ``benchmarks/curve_fixtures/baselines.json``, validation accuracy of
:func:`pipelines.baseline.baseline_accuracy`, logistic regression, seed 0, on the run's own split;
rewrite it with ``--write-baselines``).

Targets (issue 6, on the test split): every finding with at least 10 test examples recall >= 0.90
and precision >= 0.95; false alarms on healthy runs <= 3%. Misses are listed for the tune split only:
whoever fits rules must not look at the test split (``--show-test-misses`` overrides).

Run: ``python -m benchmarks.diagnosis_quality [--corpus DIR] [--split tune|test|both]
[--extrapolate] [--baseline] [--blind] [--show-test-misses] [--write-baselines]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.replay import (
    HEALTHY,
    LEGACY_FIXTURES,
    SPLITS,
    LabelledRun,
    code_name,
    default_corpus,
    fmt,
    load_runs,
    ratio,
    read_curve,
)

BASELINES = Path(__file__).resolve().parent / "curve_fixtures" / "baselines.json"
BASELINE_SEED = 0
MIN_SUPPORT = 10
TARGET_RECALL = 0.90
TARGET_PRECISION = 0.95
TARGET_FALSE_ALARMS = 0.03

# sk-autod 0.1.1 (sk_autod/detectors/*.py) reads only ``loss`` and ``val_loss``. Each detector's rule,
# and the curvewatch code that says the same thing:
SK_AUTOD_CODES = {
    # val_loss (EMA 0.3) rising over the last 3 epochs while training loss falls.
    "Classic overfitting": "overfitting",
    # val_loss ends > 5% above a minimum reached before the last 10% of epochs ("restore the best
    # epoch"): val_loss rising from its minimum is curvewatch's overfitting evidence.
    "Missed early stopping": "overfitting",
    # training loss x3 in one epoch.
    "Exploding gradient": "divergence",
    # training loss changes direction twice or more and ends above half its start: "LR too high".
    "LR too high": "oscillation",
    # smoothed training loss flips direction in >= 40% of epochs: "reduce the learning rate".
    "Noisy training": "oscillation",
    # smoothed training loss falls < 0.001 per epoch, < 0.4 overall, ends > 0.5: "LR too low".
    "LR too low": "too_slow",
    # train and val loss both end > 0.8 after falling < 0.5.
    "Underfitting": "underfitting",
    # training loss flat (< 0.15) over the first third and ending > 0.7: a network that does not learn.
    "Dying ReLU proxy": "not_learning",
    # loss flattened (last 40%) above 0.7 with train and val close: a stall at a high floor.
    "Label noise floor": "plateau",
    # validation loss consistently below training loss: the splits differ.
    "Data leakage": "split_mismatch",
}


@dataclass(frozen=True)
class RunResult:
    """One tool's answer on one labelled run.

    Attributes:
        name: the run's file name.
        expected: codes a correct tool must report.
        acceptable: further codes that are not false alarms.
        reported: problem codes reported, or ``{"healthy"}`` when none; None when the tool refused.
        detail: the tool's own words (verdict / messages), for the list of misses.
    """

    name: str
    expected: frozenset[str]
    acceptable: frozenset[str]
    reported: frozenset[str] | None
    detail: str = ""

    @property
    def allowed(self) -> frozenset[str]:
        return self.expected | self.acceptable

    def found(self, code: str) -> bool:
        """Whether an expected ``code`` was found: ``healthy`` is found when no problem code
        outside ``acceptable`` was reported (a run left alone, or given only accepted notes)."""
        if self.reported is None:
            return False
        if code == HEALTHY:
            return self.problems <= self.allowed
        return code in self.reported

    @property
    def fully_right(self) -> bool:
        return (
            self.reported is not None
            and all(self.found(code) for code in self.expected)
            and self.reported - {HEALTHY} <= self.allowed
        )

    @property
    def healthy_run(self) -> bool:
        return self.expected == {HEALTHY}

    @property
    def false_alarm(self) -> bool:
        """A healthy run given a problem code that its labels do not accept."""
        return self.healthy_run and bool(self.problems - self.allowed)

    @property
    def problems(self) -> frozenset[str]:
        return (self.reported or frozenset()) - {HEALTHY}


@dataclass
class CodeScore:
    """Counts for one finding code over a set of runs."""

    support: int = 0  # runs expecting the code
    found: int = 0  # ... that reported it
    reported: int = 0  # runs reporting the code
    correct: int = 0  # ... where expected or acceptable

    @property
    def recall(self) -> float:
        return ratio(self.found, self.support)

    @property
    def precision(self) -> float:
        return ratio(self.correct, self.reported)

    def target(self) -> str:
        """Whether the issue-6 target holds for this code (applies with >= 10 examples)."""
        if self.support < MIN_SUPPORT:
            return f"n<{MIN_SUPPORT}"
        met = self.recall >= TARGET_RECALL and self.precision >= TARGET_PRECISION
        return "met" if met else "NOT met"


@dataclass
class Quality:
    """Scores of one tool on one split (see the module docstring for the definitions)."""

    results: list[RunResult]
    codes: dict[str, CodeScore] = field(default_factory=dict)
    confusion: dict[str, Counter] = field(default_factory=dict)  # expected -> reported, all its runs
    missed: dict[str, Counter] = field(default_factory=dict)  # ... on the runs where it was missed

    @property
    def runs(self) -> int:
        return len(self.results)

    @property
    def fully_right(self) -> int:
        return sum(r.fully_right for r in self.results)

    @property
    def healthy_runs(self) -> int:
        return sum(r.healthy_run for r in self.results)

    @property
    def false_alarms(self) -> int:
        return sum(r.false_alarm for r in self.results)

    @property
    def any_problem_on_healthy(self) -> int:
        return sum(r.healthy_run and bool(r.problems) for r in self.results)

    @property
    def refused(self) -> int:
        return sum(r.reported is None for r in self.results)

    def micro(self) -> tuple[float, float]:
        """(must-find recall, precision) over all problem codes."""
        scores = [s for code, s in self.codes.items() if code != HEALTHY]
        return (
            ratio(sum(s.found for s in scores), sum(s.support for s in scores)),
            ratio(sum(s.correct for s in scores), sum(s.reported for s in scores)),
        )


def score(results: Sequence[RunResult]) -> Quality:
    """Count recall, precision, confusion, false alarms and fully-right runs over ``results``."""
    quality = Quality(results=list(results))
    for result in results:
        reported = result.reported or frozenset()
        for code in result.expected:
            entry = quality.codes.setdefault(code, CodeScore())
            entry.support += 1
            entry.found += result.found(code)
            quality.confusion.setdefault(code, Counter()).update(reported or {"(refused)"})
            if not result.found(code):
                quality.missed.setdefault(code, Counter()).update(reported or {"(refused)"})
        for code in reported:
            entry = quality.codes.setdefault(code, CodeScore())
            entry.reported += 1
            entry.correct += code in result.allowed
    return quality


def _by_count(counts: Counter) -> list[tuple[str, int]]:
    """Most common first, ties by name: the same order on every run (a Counter fed from sets
    orders its ties by string hashes, which change from one interpreter to the next)."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def called(problems: set[str] | frozenset[str]) -> frozenset[str]:
    """The reported codes: the problem codes, or ``{"healthy"}`` when there are none."""
    return frozenset(problems) if problems else frozenset({HEALTHY})


def curvewatch_codes(diagnosis: Any, problem_codes: frozenset[str]) -> frozenset[str]:
    """Problem codes of a :class:`pipelines.curves.diagnose.Diagnosis` (see module docstring)."""
    problems = {
        code_name(f.code)
        for f in diagnosis.findings
        if code_name(f.severity) != "info" or code_name(f.code) in problem_codes
    }
    return called(problems - {HEALTHY})


def sk_autod_codes(report: Any) -> frozenset[str]:
    """curvewatch codes for an ``sk_autod.DiagnosisReport``, through :data:`SK_AUTOD_CODES`.

    Raises:
        KeyError: a detector this mapping does not know (a newer sk-autod).
    """
    return called({SK_AUTOD_CODES[f.detector_name] for f in report.findings})


def load_baselines(path: Path = BASELINES) -> dict[str, float]:
    """Dataset name -> baseline validation accuracy (fraction), from ``baselines.json``; {} if absent."""
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {name: float(entry["baseline_accuracy"]) for name, entry in raw.get("datasets", {}).items()}


def write_baselines(fixtures: Path = LEGACY_FIXTURES, path: Path = BASELINES) -> dict[str, Any]:
    """Compute the logistic-regression baseline of every dataset of the older fixtures and save it.

    Uses the fixture generator's own loaders (``benchmarks.curve_fixtures.generate.DATASETS``), so
    the split is exactly the runs' split.

    Raises:
        FileNotFoundError: ``labels.json`` is missing, or the generator's data is (Fashion-MNIST).
        KeyError: a label names a dataset the generator does not know.
    """
    from benchmarks.curve_fixtures.generate import DATASETS
    from pipelines.baseline import baseline_accuracy

    datasets: dict[str, Any] = {}
    for name in sorted({run.dataset for run in load_runs(fixtures) if run.dataset}):
        x_tr, y_tr, x_va, y_va = DATASETS[name]()
        acc = baseline_accuracy(x_tr, y_tr, x_va, y_va, seed=BASELINE_SEED)
        datasets[name] = {"baseline_accuracy": round(acc, 6), "n_train": len(y_tr), "n_val": len(y_va)}
    out = {
        "about": (
            "Validation accuracy of pipelines.baseline.baseline_accuracy (seed 0) on each fixture "
            "dataset's own train/validation split (benchmarks/curve_fixtures/generate.py DATASETS); "
            "written by python -m benchmarks.diagnosis_quality --write-baselines."
        ),
        "datasets": datasets,
    }
    from pipelines.io_utils import atomic_write_text

    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    return out


def run_curvewatch(
    runs: Sequence[LabelledRun],
    *,
    extrapolate: bool = False,
    baselines: dict[str, float] | None = None,
    blind: bool = False,
) -> list[RunResult]:
    """Diagnose every run with :func:`pipelines.curves.diagnose.diagnose`.

    Args:
        runs: the labelled runs.
        extrapolate: let ``diagnose`` fit learning-curve families (slower).
        baselines: dataset -> baseline accuracy, used when a run has no ``baseline_accuracy``
            label; None passes no baseline at all.
        blind: pass no epoch budget, class count or baseline (the file alone).
    """
    from pipelines.curves.diagnose import diagnose

    problem_codes = frozenset(code for run in runs for code in run.expected) - {HEALTHY}
    results = []
    for run in runs:
        curve = read_curve(run, blind=blind)
        baseline = None
        if baselines is not None and not blind:
            baseline = (
                run.baseline_accuracy if run.baseline_accuracy is not None else baselines.get(run.dataset)
            )
        try:
            diagnosis = diagnose(curve, baseline_accuracy=baseline, extrapolate=extrapolate)
        except ValueError as error:
            results.append(RunResult(run.name, run.expected, run.acceptable, None, str(error)))
            continue
        detail = "; ".join(f"{code_name(f.code)}: {f.message}" for f in diagnosis.findings)
        results.append(
            RunResult(
                run.name, run.expected, run.acceptable, curvewatch_codes(diagnosis, problem_codes), detail
            )
        )
    return results


def run_sk_autod(runs: Sequence[LabelledRun]) -> list[RunResult] | None:
    """Diagnose every run with ``sk_autod.diagnose(loss, val_loss)``; None when not installed."""
    try:
        import sk_autod
    except ImportError:
        return None
    results = []
    for run in runs:
        curve = read_curve(run)
        loss, val_loss = curve.get("loss"), curve.get("val_loss")
        try:
            if loss is None or val_loss is None:
                raise ValueError("needs both 'loss' and 'val_loss'")
            report = sk_autod.diagnose(loss.tolist(), val_loss.tolist())
        except ValueError as error:
            results.append(RunResult(run.name, run.expected, run.acceptable, None, f"refused: {error}"))
            continue
        detail = "; ".join(f.detector_name for f in report.findings)
        results.append(RunResult(run.name, run.expected, run.acceptable, sk_autod_codes(report), detail))
    return results


def report(title: str, quality: Quality, *, show_misses: bool, out: Callable[[str], None] = print) -> None:
    """Print one tool's table on one split."""
    out(f"\n== {title}: {quality.runs} runs ==")
    if not quality.runs:
        out("no runs in this split")
        return
    out(
        f"{'finding':<16}{'support':>8}{'found':>7}{'recall':>8}{'reported':>10}{'correct':>9}"
        f"{'precision':>11}   target (>= {MIN_SUPPORT} ex.: recall >= {TARGET_RECALL:.2f}, "
        f"precision >= {TARGET_PRECISION:.2f})"
    )
    order = sorted(quality.codes, key=lambda c: (c == HEALTHY, -quality.codes[c].support, c))
    for code in order:
        s = quality.codes[code]
        out(
            f"{code:<16}{s.support:>8}{s.found:>7}{fmt(s.recall):>8}{s.reported:>10}{s.correct:>9}"
            f"{fmt(s.precision):>11}   {s.target()}"
        )
    recall, precision = quality.micro()
    out(f"must-find recall {fmt(recall)}, precision {fmt(precision)} (all problem codes, micro-averaged)")
    out(
        f"runs fully right: {quality.fully_right}/{quality.runs} ({fmt(ratio(quality.fully_right, quality.runs))})"
    )
    rate = ratio(quality.false_alarms, quality.healthy_runs)
    verdict = "-" if quality.healthy_runs == 0 else ("met" if rate <= TARGET_FALSE_ALARMS else "NOT met")
    out(
        f"false alarms on healthy runs: {quality.false_alarms}/{quality.healthy_runs} ({fmt(rate)}; target "
        f"<= {TARGET_FALSE_ALARMS:.2f}: {verdict}) [any problem finding: {quality.any_problem_on_healthy}]"
    )
    if quality.refused:
        out(f"refused (no diagnosis): {quality.refused}")
    out("confusion (expected code -> codes reported on those runs):")
    for code in order:
        if code in quality.confusion:
            cells = ", ".join(f"{c} {n}" for c, n in _by_count(quality.confusion[code]))
            line = f"  {code} ({quality.codes[code].support}) -> {cells}"
            if code in quality.missed:
                missed = quality.codes[code].support - quality.codes[code].found
                line += f" | missed {missed} -> " + ", ".join(
                    f"{c} {n}" for c, n in _by_count(quality.missed[code])
                )
            out(line)
    if show_misses:
        misses = [r for r in quality.results if not r.fully_right]
        out(f"misses ({len(misses)}):")
        for r in misses:
            extra = f" (acceptable {sorted(r.acceptable)})" if r.acceptable else ""
            got = sorted(r.reported) if r.reported is not None else "nothing"
            out(f"  {r.name}: expected {sorted(r.expected)}{extra}, got {got} | {r.detail}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=None, help="default: tests/fixtures/corpus if present")
    parser.add_argument("--split", choices=(*SPLITS, "both"), default="both")
    parser.add_argument("--extrapolate", action="store_true", help="fit learning-curve families too")
    parser.add_argument("--baseline", action="store_true", help="pass each run's baseline accuracy")
    parser.add_argument("--blind", action="store_true", help="withhold epoch budget, class count, baseline")
    parser.add_argument("--show-test-misses", action="store_true", help="also list the test split's misses")
    parser.add_argument("--no-peer", action="store_true", help="skip sk-autod")
    parser.add_argument("--write-baselines", action="store_true", help=f"recompute {BASELINES.name} and exit")
    args = parser.parse_args(argv)
    if args.write_baselines:
        for name, entry in write_baselines()["datasets"].items():
            print(
                f"{name:<24} {entry['baseline_accuracy']:.4f}  ({entry['n_train']} train / {entry['n_val']} val)"
            )
        return
    corpus = args.corpus or default_corpus()
    splits = SPLITS if args.split == "both" else (args.split,)
    runs = load_runs(corpus, splits)
    baselines = None
    if args.baseline:
        baselines = load_baselines() if corpus.resolve() == LEGACY_FIXTURES.resolve() else {}
    print(
        f"corpus {corpus}: {len(runs)} runs; extrapolate={args.extrapolate}, baseline={args.baseline}, "
        f"blind={args.blind}"
    )
    started = time.perf_counter()
    ours = run_curvewatch(runs, extrapolate=args.extrapolate, baselines=baselines, blind=args.blind)
    seconds = time.perf_counter() - started
    with_baseline = sum(
        baselines is not None
        and not args.blind
        and (r.baseline_accuracy is not None or r.dataset in baselines)
        for r in runs
    )
    print(
        f"curvewatch diagnosed {len(runs)} runs in {seconds:.1f} s ({with_baseline} with a baseline accuracy)"
    )
    peer = None if args.no_peer else run_sk_autod(runs)
    if peer is None and not args.no_peer:
        print("sk-autod not installed: uv pip install sk-autod")
    by_name = {run.name: run for run in runs}
    for split in splits:
        in_split = [r for r in ours if by_name[r.name].split == split]
        datasets = len({by_name[r.name].dataset for r in in_split})
        show = split == "tune" or args.show_test_misses
        report(f"curvewatch, {split} split ({datasets} datasets)", score(in_split), show_misses=show)
        if peer is not None:
            peer_split = [r for r in peer if by_name[r.name].split == split]
            report(f"sk-autod (peer), {split} split", score(peer_split), show_misses=False)
    print("\nsummary (runs fully right; must-find recall; false alarms on healthy runs):")
    for split in splits:
        for tool, results in (("curvewatch", ours), ("sk-autod", peer)):
            if results is None:
                continue
            q = score([r for r in results if by_name[r.name].split == split])
            recall = q.micro()[0]
            print(
                f"  {split:<5} {tool:<11} {q.fully_right}/{q.runs} fully right; recall {fmt(recall)}; "
                f"false alarms {q.false_alarms}/{q.healthy_runs}"
            )


if __name__ == "__main__":
    main()
