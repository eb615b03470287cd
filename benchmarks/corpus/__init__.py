"""A labelled corpus of real Keras training curves for the curve-diagnosis benchmarks.

The runs are made by :mod:`benchmarks.corpus.generate` (real ``model.fit`` on offline data) and
labelled by :mod:`benchmarks.corpus.rubric`; the files live in ``tests/fixtures/corpus``. Read
them with :func:`load_corpus`. Importing this package loads nothing (no TensorFlow, no files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "corpus"
SPLIT_NAMES = ("tune", "test")


@dataclass(frozen=True)
class CorpusRun:
    """One labelled run of the corpus.

    Attributes:
        path: the CSVLogger file (0-based ``epoch``; columns
            ``epoch,accuracy,learning_rate,loss,val_accuracy,val_loss``).
        split: ``"tune"`` (rules may be fitted on it) or ``"test"`` (never fitted on).
        expected: finding codes a correct tool must report.
        acceptable: further codes that are not false alarms on this run.
        label: the full ``labels.json`` entry (dataset, n_val, class_prior, epoch_budget,
            complete, early_stopped, stall, trajectory, config, notes, rubric facts, ...).
    """

    path: Path
    split: str
    expected: tuple[str, ...]
    acceptable: tuple[str, ...]
    label: dict[str, Any]

    @property
    def name(self) -> str:
        """The CSV file name, which is also the run's key in ``labels.json``."""
        return self.path.name


def load_corpus(split: str | None = None, root: Path = CORPUS_DIR) -> list[CorpusRun]:
    """Read the corpus's labels and return its runs, sorted by file name.

    Args:
        split: ``"tune"``, ``"test"`` or ``None`` for both.
        root: the folder holding ``labels.json`` and the CSVs (default ``tests/fixtures/corpus``).

    Returns:
        One :class:`CorpusRun` per labelled run (dropped runs, listed in ``dropped.json``, are
        not included). The CSVs are not read; ``pandas.read_csv(run.path)`` reads one.

    Raises:
        ValueError: ``split`` is not ``"tune"``, ``"test"`` or ``None``.
        FileNotFoundError: ``root/labels.json`` does not exist (generate the corpus with
            ``python -m benchmarks.corpus.generate --out tests/fixtures/corpus``).
    """
    if split not in (None, *SPLIT_NAMES):
        raise ValueError(f"split must be one of {SPLIT_NAMES} or None, got {split!r}")
    labels_path = root / "labels.json"
    if not labels_path.exists():
        raise FileNotFoundError(
            f"{labels_path}: no corpus labels; run python -m benchmarks.corpus.generate --out {root}"
        )
    labels = json.loads(labels_path.read_text())
    return [
        CorpusRun(root / name, label["split"], tuple(label["expected"]), tuple(label["acceptable"]), label)
        for name, label in sorted(labels.items())
        if split is None or label["split"] == split
    ]
