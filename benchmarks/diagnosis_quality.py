"""Benchmark: how well the engine names what is wrong with real training curves.

Reads the labelled fixtures in ``tests/fixtures/curves`` (Keras CSVLogger files from real training
runs, made by ``benchmarks/curve_fixtures/generate.py``; ``labels.json`` gives each run's expected
finding codes) and prints, per finding code, precision and recall of the engine's findings, then
overall (micro-averaged over the labelled codes). Targets: precision >= 0.95, recall >= 0.9 overall;
no stall on healthy runs; no curve regression between runs of one config that differ only in seed.

Run: ``uv run python benchmarks/diagnosis_quality.py [--fixtures DIR] [--extrapolate]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FIXTURES = REPO / "tests" / "fixtures" / "curves"


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


def score(fixtures: Path = FIXTURES, *, extrapolate: bool = False) -> Scores:
    """Diagnose every labelled fixture and count hits per finding code (see module docstring).

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
    for name, meta in sorted(labels.items()):
        curve = load_curve(fixtures / name, epoch_budget=meta.get("epoch_budget"), num_classes=meta.get("num_classes"))
        curves[name] = curve
        predicted = set(diagnose(curve, extrapolate=extrapolate).codes)
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
    args = parser.parse_args()
    s = score(args.fixtures, extrapolate=args.extrapolate)
    print(f"{'finding':<16} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
    for code, (tp, fp, fn) in s.per_code.items():
        print(f"{code:<16} {tp:>4} {fp:>4} {fn:>4} {s.ratio(tp, tp + fp):>10.3f} {s.ratio(tp, tp + fn):>8.3f}")
    precision, recall = s.overall()
    print(f"{'overall':<16} {'':>14} {precision:>10.3f} {recall:>8.3f}   (targets: precision >= 0.95, recall >= 0.9)")
    print(f"stalls flagged on healthy runs          : {s.healthy_stalls} of {s.healthy_runs} (target 0)")
    print(f"curve regressions between seed-only runs: {s.seed_pair_flags} of {s.seed_pairs} ordered pairs (target 0)")
    if s.unlabelled:
        print(f"findings outside the labelled vocabulary: {dict(s.unlabelled)}")
    for miss in s.misses:
        print(f"  miss: {miss}")


if __name__ == "__main__":
    main()
