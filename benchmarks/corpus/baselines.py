"""Logistic-regression baselines per data view: what a linear model reaches on the same split.

The diagnosis engine can take a ``baseline_accuracy`` (benchmarks/diagnosis_quality.py passes
one per dataset); the corpus records one per view so the benchmark can run with and without it.
scikit-learn's :class:`~sklearn.linear_model.LogisticRegression` (lbfgs, L2, C=1) is fitted on the
view's training split and scored on its validation split
(https://scikit-learn.org/stable/modules/linear_model.html#logistic-regression).

Usage::

    python -m benchmarks.corpus.baselines   # writes benchmarks/corpus/baselines.json
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from benchmarks.corpus.data import VIEWS, load_view
from pipelines.io_utils import atomic_write_text

BASELINES = Path(__file__).with_name("baselines.json")


def baseline_accuracy(view: str, max_iter: int = 200) -> float:
    """Validation accuracy of logistic regression on one view.

    Returns:
        The share of validation examples classified correctly, in [0, 1].

    Raises:
        KeyError: unknown view.
    """
    from sklearn.linear_model import LogisticRegression

    x_tr, y_tr, x_va, y_va = load_view(view)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs may stop at max_iter on raw-unit views
        model = LogisticRegression(max_iter=max_iter).fit(x_tr.reshape(len(x_tr), -1), y_tr)
    return float(model.score(x_va.reshape(len(x_va), -1), y_va))


def load_baselines(path: Path = BASELINES) -> dict[str, float]:
    """The stored baselines, ``{view: accuracy}``; empty when the file was never written."""
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> int:
    """Compute every view's baseline and write :data:`BASELINES`."""
    out = {}
    for view in VIEWS:
        out[view] = round(baseline_accuracy(view), 4)
        print(f"{view:24s} {out[view]:.4f}", flush=True)
    atomic_write_text(BASELINES, json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
