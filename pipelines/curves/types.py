"""Data types shared by the curve-diagnosis engine: curves in, findings out.

Metric names are Keras' own (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
``learning_rate``); epochs are 1-based, as Keras prints them (its ``CSVLogger`` writes 0-based
epochs: the readers in :mod:`pipelines.curves.io` add 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Curve:
    """One run's per-epoch training curves.

    Attributes:
        run: a display name or MLflow run id.
        metrics: metric name -> (E,) float64 array, one value per epoch (NaN where missing).
        epochs: (E,) int64 array of 1-based epoch numbers, strictly increasing.
        epoch_budget: epochs the run was configured for (None when unknown); a run that stopped
            before it without early stopping is ``complete=False``.
        complete: False for a run that was killed, is still running, or has missing epochs.
        num_classes: classes of the task (None when unknown); chance level is 1 / num_classes.
        class_prior: (K,) class shares of the training labels when known (fractions summing to
            1); chance level is then the majority share and the loss of a constant guess the
            prior's entropy.
        num_val_examples: validation examples behind ``val_accuracy`` when known (else the engine
            reads n off the accuracy grid).
        params: the run's config (flat ``{"train.learning_rate": ...}``) when known.
        tags: free-form tags (e.g. MLflow run tags).
        read_notes: what the reader changed in, or left out of, the logged file, one sentence
            each (fit() calls renumbered as one run, rows logged twice, a cut-short last row, a
            text column dropped); the reports repeat them beside the epoch numbers.
    """

    run: str
    metrics: dict[str, np.ndarray]
    epochs: np.ndarray
    epoch_budget: int | None = None
    complete: bool = True
    num_classes: int | None = None
    class_prior: tuple[float, ...] | None = None
    num_val_examples: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    read_notes: tuple[str, ...] = ()

    def get(self, name: str) -> np.ndarray | None:
        return self.metrics.get(name)


@dataclass(frozen=True)
class Finding:
    """One thing the engine found wrong (or right) with a run.

    Attributes:
        code: stable machine name, e.g. ``plateau``, ``overfitting``, ``regression``.
        severity: how much the user should care.
        onset_epoch: 1-based epoch where it began (None when not tied to an epoch).
        evidence: the numbers behind it (JSON-serialisable scalars / short lists).
        message: one plain sentence, e.g. "val_accuracy flat at 0.472 ± 0.006 since epoch 6".
        causes: likely causes, plain words.
        remedies: what to try, plain words.
    """

    code: str
    severity: Severity
    onset_epoch: int | None
    evidence: dict[str, Any]
    message: str
    causes: tuple[str, ...] = ()
    remedies: tuple[str, ...] = ()
