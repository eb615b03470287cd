"""Shared parts of the curve benchmarks: the labelled corpus, its curves, and the live-stop adapter.

Used by :mod:`benchmarks.diagnosis_quality` and :mod:`benchmarks.early_stop`. A corpus is a folder
of Keras ``CSVLogger`` files (0-based ``epoch`` column, https://keras.io/api/callbacks/csv_logger/)
plus a ``labels.json`` mapping each file name to its labels (``benchmarks/corpus/README.md``; read
with :func:`benchmarks.corpus.load_corpus`):

- ``expected``: finding codes a correct tool must report (``["healthy"]`` for a sound run);
- ``acceptable``: codes that are not false alarms on this run (optional, default none);
- ``split``: ``"tune"`` (rules may be fitted on it) or ``"test"`` (never looked at by whoever fits
  rules); absent in the older fixtures of ``tests/fixtures/curves``, which count as ``"tune"``;
- ``dataset``, ``num_classes``, ``class_prior``, ``n_val``, ``epoch_budget``, ``early_stopped``, ``complete``,
  ``baseline_accuracy``, ``stall``, ``still_improving``: optional facts about the run (the older fixtures keep the
  dataset under ``config.dataset``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "fixtures" / "corpus"
LEGACY_FIXTURES = REPO / "tests" / "fixtures" / "curves"
SPLITS = ("tune", "test")
HEALTHY = "healthy"


@dataclass(frozen=True)
class LabelledRun:
    """One labelled training run of a corpus.

    Attributes:
        name: the CSV's file name (the key in ``labels.json``).
        path: the CSV file.
        split: ``"tune"`` or ``"test"``.
        dataset: the dataset it was trained on ("" when unknown).
        expected: codes a correct tool must report.
        acceptable: codes that are not false alarms (besides ``expected``).
        num_classes: classes of the task, or None.
        epoch_budget: epochs the run was configured for, or None.
        n_val: validation examples, or None.
        early_stopped: the run stopped itself before its budget (Keras ``EarlyStopping`` etc.).
        complete: False for a run killed mid-way.
        baseline_accuracy: a simple baseline's validation accuracy (fraction) on the run's split.
        stall: the corpus marks the run as a stall (True/False), or None when it does not say.
        still_improving: the corpus marks the run as still improving at its end, or None.
        class_prior: (K,) class shares of the training labels, or None.
    """

    name: str
    path: Path
    split: str
    dataset: str
    expected: frozenset[str]
    acceptable: frozenset[str]
    num_classes: int | None = None
    epoch_budget: int | None = None
    n_val: int | None = None
    early_stopped: bool = False
    complete: bool = True
    baseline_accuracy: float | None = None
    stall: bool | None = None
    still_improving: bool | None = None
    class_prior: tuple[float, ...] | None = None


def _codes(value: Any, labels_path: Path, name: str, key: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise ValueError(
            f"{labels_path}: run {name!r}: {key!r} must be a list of finding codes, got {value!r}"
        )
    return frozenset(value)


def _prior(value: Any, labels_path: Path, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, dict):  # {class: share}
        value = [value[key] for key in sorted(value, key=str)]
    try:
        return tuple(float(share) for share in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{labels_path}: run {name!r}: 'class_prior' must be a list of class shares, got {value!r}"
        ) from None


def _older_fixtures(labels_path: Path) -> list[tuple[str, str, Any, Any, dict[str, Any]]]:
    """(name, split, expected, acceptable, label) of the older fixtures' ``labels.json`` (no split:
    all ``tune``; no acceptable codes)."""
    raw = json.loads(labels_path.read_text())
    entries = []
    for name, meta in sorted(raw.items()):
        if not isinstance(meta, dict) or "expected" not in meta:
            raise ValueError(f"{labels_path}: run {name!r}: no 'expected' list")
        entries.append((name, meta.get("split", "tune"), meta["expected"], meta.get("acceptable", []), meta))
    return entries


def load_runs(corpus: Path, splits: Iterable[str] = SPLITS) -> list[LabelledRun]:
    """The labelled runs of a corpus (see the module docstring), sorted by file name.

    Reads the corpus with :func:`benchmarks.corpus.load_corpus`; a ``labels.json`` without
    ``split`` / ``acceptable`` keys (the older fixtures of ``tests/fixtures/curves``) is read as
    all ``tune``, with no acceptable codes.

    Args:
        corpus: the folder holding ``labels.json`` and the CSV files it names.
        splits: keep only runs of these splits.

    Returns:
        The labelled runs of the requested splits.

    Raises:
        FileNotFoundError: ``labels.json`` or a CSV it names is missing.
        ValueError: (naming the file and run) no ``expected`` list, codes that are not a list of
            strings, a ``split`` other than ``"tune"`` / ``"test"``, or a malformed ``class_prior``.
    """
    from benchmarks.corpus import load_corpus

    corpus = Path(corpus)
    labels_path = corpus / "labels.json"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path}: no labels.json in the corpus folder")
    try:
        entries = [
            (r.name, r.split, list(r.expected), list(r.acceptable), r.label)
            for r in load_corpus(None, corpus)
        ]
    except KeyError:
        entries = _older_fixtures(labels_path)
    wanted = set(splits)
    runs = []
    for name, split, expected, acceptable, meta in entries:
        if split not in SPLITS:
            raise ValueError(f"{labels_path}: run {name!r}: 'split' must be one of {SPLITS}, got {split!r}")
        if split not in wanted:
            continue
        path = corpus / name
        if not path.is_file():
            raise FileNotFoundError(f"{labels_path}: run {name!r}: no such file {path}")
        baseline = meta.get("baseline_accuracy")
        runs.append(
            LabelledRun(
                name=name,
                path=path,
                split=split,
                dataset=str(meta.get("dataset") or (meta.get("config") or {}).get("dataset") or ""),
                expected=_codes(expected, labels_path, name, "expected"),
                acceptable=_codes(acceptable, labels_path, name, "acceptable"),
                num_classes=meta.get("num_classes"),
                epoch_budget=meta.get("epoch_budget"),
                n_val=meta.get("n_val"),
                early_stopped=bool(meta.get("early_stopped", False)),
                complete=bool(meta.get("complete", True)),
                baseline_accuracy=None if baseline is None else float(baseline),
                stall=meta.get("stall"),
                still_improving=meta.get("still_improving"),
                class_prior=_prior(meta.get("class_prior"), labels_path, name),
            )
        )
    return runs


def default_corpus() -> Path:
    """The new corpus (``tests/fixtures/corpus``) when it exists, else the 65 older fixtures."""
    return CORPUS if (CORPUS / "labels.json").is_file() else LEGACY_FIXTURES


def read_curve(run: LabelledRun, *, blind: bool = False) -> Any:
    """The run's :class:`pipelines.curves.types.Curve`, read by the engine's own CSV reader.

    Args:
        run: the labelled run.
        blind: pass neither the epoch budget nor the class count and prior (a user who knows only
            the file).

    Raises:
        ValueError: malformed CSV (the reader's message names the file and column).
    """
    from pipelines.curves.io import load_curve

    if blind:
        return load_curve(run.path)
    curve = load_curve(run.path, epoch_budget=run.epoch_budget, num_classes=run.num_classes)
    if run.class_prior is not None:
        curve = dataclasses.replace(curve, class_prior=run.class_prior)
    return curve


def keras_history(curve: Any, epochs: int | None = None) -> dict[str, list[float]]:
    """The first ``epochs`` epochs of a curve as Keras' ``History.history`` (metric -> values)."""
    stop = None if epochs is None else epochs
    return {name: [float(v) for v in values[:stop]] for name, values in curve.metrics.items()}


def code_name(code: Any) -> str:
    """A finding code as a plain string (the engine's codes may be a ``str`` Enum)."""
    return str(getattr(code, "value", code))


def curvewatch_should_stop(
    history: Mapping[str, Sequence[float]],
    *,
    epoch_budget: int | None,
    num_classes: int | None,
    class_prior: Sequence[float] | None = None,
) -> tuple[bool, str]:
    """Ask :func:`pipelines.curves.callback.should_stop` whether to stop now, and why.

    The one place that knows ``should_stop``'s signature and its ``StopDecision``, so a change
    there is a one-line change here.

    Args:
        history: Keras-style ``{metric: [value per epoch so far]}``.
        epoch_budget: epochs the run is configured for (``fit(epochs=...)``).
        num_classes: classes of the task, if known.
        class_prior: the training labels' class shares, if known.

    Returns:
        (stop, reason): the reason is the stopping finding's code ("" when not stopping).
    """
    from pipelines.curves.callback import should_stop

    try:
        decision = should_stop(history, epoch_budget, num_classes=num_classes, class_prior=class_prior)
    except ValueError:  # no validation value yet: nothing to decide on
        return False, ""
    return decision.stop, code_name(decision.finding.code) if decision.finding is not None else ""


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is 0."""
    return numerator / denominator if denominator else math.nan


def fmt(value: float, digits: int = 3) -> str:
    """A number for a table cell: "-" for NaN."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def best_so_far(values: np.ndarray, epochs: int) -> float:
    """Highest finite value among the first ``epochs`` entries (0.0 when there is none)."""
    head = np.asarray(values[:epochs], dtype=float)
    head = head[np.isfinite(head)]
    return float(head.max()) if head.size else 0.0
