"""Benchmark: how well the engine names what is wrong with real training curves.

Reads the labelled fixtures in ``tests/fixtures/curves`` (Keras CSVLogger files from real training
runs, made by ``benchmarks/curve_fixtures/generate.py``; ``labels.json`` gives each run's expected
finding codes) and prints, per finding code, precision and recall of the engine's findings, then
overall (micro-averaged over the labelled codes). Targets: precision >= 0.95, recall >= 0.9 overall;
no stall on healthy runs; no curve regression between runs of one config that differ only in seed.

Baselines: each run is diagnosed with ``baseline_accuracy`` set to the validation accuracy of
:func:`pipelines.baseline.baseline_accuracy` (logistic regression, seed 0) on the same
train / validation split the run was trained on, i.e. the same baseline the pipeline computes and
passes to ``diagnose``. Per dataset in ``benchmarks/curve_fixtures/baselines.json`` (keyed by the
``config.dataset`` of ``labels.json``; a label's own ``baseline_accuracy`` wins). A dataset without
one is diagnosed without a baseline; ``--no-baseline`` drops them all (the engine's behaviour
when no baseline is known). Rewrite the file with ``--write-baselines`` (seconds; needs the data of
``benchmarks/curve_fixtures/generate.py``).

Run: ``uv run python benchmarks/diagnosis_quality.py [--fixtures DIR] [--extrapolate] [--no-baseline]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "curves"
BASELINES = REPO / "benchmarks" / "curve_fixtures" / "baselines.json"
BASELINE_SEED = 0


@dataclass
class Scores:
    per_code: dict[str, tuple[int, int, int]]  # code -> (tp, fp, fn)
    healthy_stalls: int
    healthy_runs: int
    seed_pairs: int
    seed_pair_flags: int
    unlabelled: Counter
    misses: list[str]

    @staticmethod
    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    def overall(self) -> tuple[float, float]:
        tp = sum(v[0] for v in self.per_code.values())
        fp = sum(v[1] for v in self.per_code.values())
        fn = sum(v[2] for v in self.per_code.values())
        return self.ratio(tp, tp + fp), self.ratio(tp, tp + fn)


def load_baselines(path: Path = BASELINES) -> dict[str, float]:
    """Dataset name -> baseline validation accuracy (fraction), from ``baselines.json``; {} if absent."""
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    return {name: float(entry["baseline_accuracy"]) for name, entry in raw.get("datasets", {}).items()}


def write_baselines(fixtures: Path = FIXTURES, path: Path = BASELINES) -> dict[str, Any]:
    """Compute the logistic-regression baseline of every dataset ``labels.json`` names and save it.

    Uses the fixture generator's own loaders (``benchmarks.curve_fixtures.generate.DATASETS``), so
    the split is exactly the runs' split.

    Raises:
        FileNotFoundError: ``labels.json`` is missing, or the generator's data is (Fashion-MNIST).
        KeyError: a label names a dataset the generator does not know.
    """
    from benchmarks.curve_fixtures.generate import DATASETS
    from pipelines.baseline import baseline_accuracy

    labels = json.loads((fixtures / "labels.json").read_text())
    datasets: dict[str, Any] = {}
    for name in sorted({meta["config"]["dataset"] for meta in labels.values() if meta.get("config")}):
        x_tr, y_tr, x_va, y_va = DATASETS[name]()
        acc = baseline_accuracy(x_tr, y_tr, x_va, y_va, seed=BASELINE_SEED)
        datasets[name] = {"baseline_accuracy": round(acc, 6), "n_train": len(y_tr), "n_val": len(y_va)}
    out = {
        "about": (
            "Validation accuracy of pipelines.baseline.baseline_accuracy (seed 0) on each fixture "
            "dataset's own train/validation split (benchmarks/curve_fixtures/generate.py DATASETS); "
            "written by benchmarks/diagnosis_quality.py --write-baselines."
        ),
        "datasets": datasets,
    }
    path.write_text(json.dumps(out, indent=1) + "\n")
    return out


def score(fixtures: Path = FIXTURES, *, extrapolate: bool = False, baselines: bool = True) -> Scores:
    """Diagnose every labelled fixture and count hits per finding code (see module docstring).

    Args:
        fixtures: folder with the CSVs and ``labels.json``.
        extrapolate: let ``diagnose`` fit learning-curve families.
        baselines: pass each run's dataset baseline (``baselines.json``) to ``diagnose``.

    Raises:
        FileNotFoundError: ``labels.json`` or a labelled CSV is missing.
    """
    from pipelines.curves.compare import compare_curves
    from pipelines.curves.diagnose import diagnose
    from pipelines.curves.io import load_curve

    labels_path = fixtures / "labels.json"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path}: no labels; run benchmarks/curve_fixtures/generate.py")
    labels = json.loads(labels_path.read_text())
    vocabulary = sorted({code for meta in labels.values() for code in meta["expected"]})
    counts = {code: [0, 0, 0] for code in vocabulary}
    unlabelled: Counter = Counter()
    misses = []
    healthy_runs = healthy_stalls = 0
    curves = {}
    known = load_baselines() if baselines else {}
    for name, meta in sorted(labels.items()):
        curve = load_curve(
            fixtures / name, epoch_budget=meta.get("epoch_budget"), num_classes=meta.get("num_classes")
        )
        curves[name] = curve
        baseline = meta.get("baseline_accuracy", known.get(meta.get("config", {}).get("dataset", "")))
        if not baselines:
            baseline = None
        predicted = set(diagnose(curve, extrapolate=extrapolate, baseline_accuracy=baseline).codes)
        expected = set(meta["expected"])
        for code in vocabulary:
            if code in predicted and code in expected:
                counts[code][0] += 1
            elif code in predicted:
                counts[code][1] += 1
            elif code in expected:
                counts[code][2] += 1
        unlabelled.update(predicted - set(vocabulary))
        if predicted & set(vocabulary) != expected:
            misses.append(f"{name}: expected {sorted(expected)}, got {sorted(predicted)}")
        if expected == {"healthy"}:
            healthy_runs += 1
            healthy_stalls += "plateau" in predicted
    groups: dict[str, list[str]] = {}
    for name, meta in labels.items():
        if meta.get("group"):
            groups.setdefault(meta["group"], []).append(name)
    pairs = flags = 0
    for names in groups.values():
        for a, b in itertools.permutations(sorted(names), 2):
            pairs += 1
            flags += any(f.code == "curve_regression" for f in compare_curves(curves[a], curves[b], []))
    return Scores(
        per_code={k: tuple(v) for k, v in counts.items()},
        healthy_stalls=healthy_stalls,
        healthy_runs=healthy_runs,
        seed_pairs=pairs,
        seed_pair_flags=flags,
        unlabelled=unlabelled,
        misses=misses,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--extrapolate", action="store_true", help="fit learning-curve families too")
    parser.add_argument("--no-baseline", action="store_true", help="diagnose without baseline accuracies")
    parser.add_argument("--write-baselines", action="store_true", help=f"recompute {BASELINES.name} and exit")
    args = parser.parse_args()
    if args.write_baselines:
        for name, entry in write_baselines(args.fixtures)["datasets"].items():
            print(
                f"{name:<24} {entry['baseline_accuracy']:.4f}  "
                f"({entry['n_train']} train / {entry['n_val']} val)"
            )
        return
    s = score(args.fixtures, extrapolate=args.extrapolate, baselines=not args.no_baseline)
    print(f"{'finding':<16} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
    for code, (tp, fp, fn) in s.per_code.items():
        print(
            f"{code:<16} {tp:>4} {fp:>4} {fn:>4} {s.ratio(tp, tp + fp):>10.3f} {s.ratio(tp, tp + fn):>8.3f}"
        )
    precision, recall = s.overall()
    print(
        f"{'overall':<16} {'':>14} {precision:>10.3f} {recall:>8.3f}   "
        "(targets: precision >= 0.95, recall >= 0.9)"
    )
    print(f"stalls flagged on healthy runs          : {s.healthy_stalls} of {s.healthy_runs} (target 0)")
    print(
        f"curve regressions between seed-only runs: {s.seed_pair_flags} of {s.seed_pairs} "
        "ordered pairs (target 0)"
    )
    if s.unlabelled:
        print(f"findings outside the labelled vocabulary: {dict(s.unlabelled)}")
    for miss in s.misses:
        print(f"  miss: {miss}")


if __name__ == "__main__":
    main()
