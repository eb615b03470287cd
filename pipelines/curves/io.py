"""Read training curves from plain files: Keras ``CSVLogger`` CSVs and ``History`` JSON.

Formats (Keras 3 documentation):
- ``keras.callbacks.CSVLogger`` (https://keras.io/api/callbacks/csv_logger/): a header
  ``epoch,accuracy,loss,val_accuracy,val_loss,...`` and one row per epoch, epochs 0-based; under
  any of :data:`CSV_SUFFIXES` (Keras' own example is ``CSVLogger('training.log')``).
- ``keras.callbacks.History`` (https://keras.io/api/models/model_training_apis/#fit-method):
  ``history.history`` is ``{"loss": [...], "val_loss": [...], ...}``, one value per epoch; saved as
  JSON either bare or as ``{"history": {...}, "params": {"epochs": N, ...}}``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.curves.types import Curve

VALIDATION_METRICS = ("val_accuracy", "val_loss")
#: File suffixes read as ``CSVLogger`` files: CSVLogger takes any file name (Keras' example is
#: ``training.log``), and a tab-separated log is often ``.tsv`` or ``.txt``; the separator is read
#: off the header whatever the suffix.
CSV_SUFFIXES = (".csv", ".tsv", ".log", ".txt")
#: File suffixes :func:`load_curve` reads: the CSVLogger ones, History JSON, and JSON lines (one
#: object per epoch, as Keras' ``LambdaCallback`` example writes them).
CURVE_SUFFIXES = (*CSV_SUFFIXES, ".json", ".jsonl")

log = logging.getLogger(__name__)


#: Older or explicit Keras metric names for the ones the engine reads: Keras before 2.3 logged
#: ``acc`` / ``val_acc`` for ``metrics=["acc"]`` or ``["accuracy"]``, and ``lr`` before Keras 3's
#: ``learning_rate`` (https://keras.io/api/callbacks/reduce_lr_on_plateau/).
RENAMES = {"acc": "accuracy", "val_acc": "val_accuracy", "lr": "learning_rate"}
#: Accuracy metrics named by their kind (``metrics=["sparse_categorical_accuracy"]``,
#: https://keras.io/api/metrics/accuracy_metrics/): read as ``accuracy`` when the log has no other.
ACCURACY_KINDS = ("sparse_categorical_accuracy", "categorical_accuracy", "binary_accuracy")


def output_heads(metrics: Iterable[str]) -> dict[str, str]:
    """The outputs of a multi-output model that log an accuracy with its ``val_`` twin.

    Keras names a multi-output model's metrics after its output layers
    (https://keras.io/guides/functional_api/#models-with-multiple-inputs-and-outputs):
    ``<output>_accuracy`` / ``val_<output>_accuracy`` (or an accuracy kind of
    :data:`ACCURACY_KINDS` after the output's name) and ``<output>_loss``, beside the total
    ``loss``. Top-k accuracies are not accuracies of the predicted class and are left out.

    Args:
        metrics: the logged metric names.

    Returns:
        Output name -> its (training) accuracy metric's name, in the log's order (the first
        accuracy of an output that logs several); empty for a single-output log.
    """
    names = list(metrics)
    present = set(names)
    heads: dict[str, str] = {}
    for name in names:
        if name.startswith("val_") or "top" in name or name in ACCURACY_KINDS or f"val_{name}" not in present:
            continue
        for suffix in (*(f"_{k}" for k in ACCURACY_KINDS), "_accuracy", "_acc"):
            if name.endswith(suffix) and len(name) > len(suffix):
                heads.setdefault(name[: -len(suffix)], name)
                break
    return heads


def canonical_names(metrics: dict[str, Any]) -> dict[str, Any]:
    """The same metrics under the names the engine reads (``accuracy``, ``val_accuracy``,
    ``learning_rate``).

    ``acc``/``val_acc``/``lr`` are renamed (:data:`RENAMES`); when the log has no ``accuracy``,
    exactly one of :data:`ACCURACY_KINDS` (with its ``val_`` twin) stands for it, or else the
    accuracy of a multi-output model's only output that logs one (:func:`output_heads`), with that
    output's own ``<output>_loss`` / ``val_<output>_loss`` as ``loss`` / ``val_loss`` when logged
    (the total losses are kept as ``loss_total`` / ``val_loss_total``: they add the other
    outputs'). A name already present is never overwritten, and every other metric keeps its name.

    Args:
        metrics: metric name -> values (any value type; the mapping's order is kept).

    Returns:
        A new dict; the input is not modified.
    """
    out = dict(metrics)
    for old, new in RENAMES.items():
        if old in out and new not in out:
            out = {new if k == old else k: v for k, v in out.items()}
    if "accuracy" not in out and "val_accuracy" not in out:
        kinds = [k for k in ACCURACY_KINDS if k in out or f"val_{k}" in out]
        if len(kinds) == 1:
            kind = kinds[0]
            names = {kind: "accuracy", f"val_{kind}": "val_accuracy"}
            out = {names.get(k, k): v for k, v in out.items()}
        elif not kinds and len(heads := output_heads(out)) == 1:
            ((head, accuracy),) = heads.items()
            names = {accuracy: "accuracy", f"val_{accuracy}": "val_accuracy"}
            if f"{head}_loss" in out and f"val_{head}_loss" in out and "loss_total" not in out:
                names.update(
                    {
                        "loss": "loss_total",
                        "val_loss": "val_loss_total",
                        f"{head}_loss": "loss",
                        f"val_{head}_loss": "val_loss",
                    }
                )
            out = {names.get(k, k): v for k, v in out.items()}
    return out


#: Cells read as "no value" (NaN): empty, NaN spelled out, and ``NA``, which Keras' CSVLogger
#: writes for a metric missing from an epoch's logs (``logs.get(key, "NA")`` in
#: keras/src/callbacks/csv_logger.py): the validation metrics of the epochs that ``fit(...,
#: validation_freq=k)`` does not validate.
MISSING_CELLS = frozenset({"", "nan", "na", "none", "null"})


def _to_float(text: str, path: Path | str, column: str, line: int) -> float:
    text = text.strip()
    if text.lower() in MISSING_CELLS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: column {column!r}, line {line}: {text!r} is not a number") from None


def _read_by_the_engine(name: str) -> bool:
    """The epoch, a loss or an accuracy column (any of its names, :data:`RENAMES`): text there is an
    error; in any other column (``lr`` / ``learning_rate`` among them) the column is dropped."""
    name = RENAMES.get(name, name)
    return name in ("epoch", "loss", "val_loss") or name.endswith("accuracy")


def _not_text(path: Path, error: UnicodeDecodeError) -> str:
    return f"{path}: not a UTF-8 text file (byte 0x{error.object[error.start]:02x} at offset {error.start})"


#: How far above 1 an accuracy column may peak and still be read as a fraction (rounding), not a
#: percentage: :func:`_accuracy_fractions`.
ACCURACY_ROUNDING = 1e-3


def _accuracy_fractions(metrics: dict[str, np.ndarray], source: Path | str) -> dict[str, np.ndarray]:
    """``accuracy`` / ``val_accuracy`` as fractions in [0, 1], as Keras logs them.

    A column whose finite values exceed 1 but not 100 was logged in percent (a custom metric or
    logger): it is divided by 100, with a warning, so the engine's binomial noise and chance levels
    apply. Values at most :data:`ACCURACY_ROUNDING` above 1 are a fraction at its ceiling (a
    float32 mean of per-batch accuracies can end at 1.0000001) and are clipped to 1; a percentage
    whose highest value is that close to 1 % would need a task of 100 or more classes at chance.
    Negative values, or values above 100, are refused.

    Raises:
        ValueError: an accuracy below 0 or above 100 (the message names the source and column).
    """
    out = dict(metrics)
    for name in ("accuracy", "val_accuracy"):
        values = out.get(name)
        if values is None or not np.isfinite(values).any():
            continue
        finite = values[np.isfinite(values)]
        low, high = float(finite.min()), float(finite.max())
        if low < 0 or high > 100:
            raise ValueError(
                f"{source}: column {name!r}: accuracy {low if low < 0 else high:g} is not a fraction"
            )
        if high <= 1 + ACCURACY_ROUNDING:
            out[name] = np.minimum(values, 1.0)  # NaN stays NaN
        else:
            log.warning("%s: column %r reads as a percentage (up to %g): divided by 100", source, name, high)
            out[name] = values / 100.0
    return out


#: Cross-entropy metrics (https://keras.io/api/metrics/probabilistic_metrics/) a log may carry
#: beside its loss: the same cross-entropy without the regularisation penalties (L2 and other
#: ``add_loss`` terms) that Keras adds to ``loss`` and ``val_loss``. TensorFlow's "Overfit and
#: underfit" tutorial logs ``binary_crossentropy`` for this reason.
CROSSENTROPY_KINDS = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
#: The penalty must reach this share of the cross-entropy at some epoch to be worth removing.
PENALTY_MIN_SHARE = 0.01


def penalty_free_losses(
    metrics: dict[str, np.ndarray], source: Path | str, *, announce: bool = True
) -> dict[str, np.ndarray]:
    """``loss`` / ``val_loss`` read from the log's cross-entropy metric when they are that metric
    plus a regularisation penalty.

    Keras adds L2 (and every ``add_loss``) penalty to ``loss`` and ``val_loss``, never to metrics:
    a weight penalty that shrinks while the cross-entropy rises can hide overfitting, and one that
    grows can look like divergence. When exactly one of :data:`CROSSENTROPY_KINDS` is logged with
    its ``val_`` twin, each loss sits at or above its metric at every epoch where both are finite
    (a penalty is never negative; relative tolerance 1e-6), and above it somewhere by more than
    ``PENALTY_MIN_SHARE`` of it, the metric pair becomes ``loss`` / ``val_loss`` and the logged
    losses are kept as ``loss_regularised`` / ``val_loss_regularised``, with a log line (unless
    ``announce`` is false: the live callback reads the same history every epoch). Otherwise
    (no such metric, equal values, or a metric above the loss: another output's, or computed with
    another ``from_logits``) the metrics are returned unchanged.

    Args:
        metrics: metric name -> (E,) float64 values, under the engine's names.
        source: the file or run, for the log line.
        announce: log the swap (INFO).

    Returns:
        A new dict when the losses are replaced; else ``metrics`` itself.
    """
    kinds = [k for k in CROSSENTROPY_KINDS if k in metrics and f"val_{k}" in metrics]
    if len(kinds) != 1 or "loss" not in metrics or "val_loss" not in metrics:
        return metrics
    kind = kinds[0]
    pairs = (("loss", kind), ("val_loss", f"val_{kind}"))
    removable = False
    for loss_name, metric_name in pairs:
        loss, metric = metrics[loss_name], metrics[metric_name]
        both = np.isfinite(loss) & np.isfinite(metric)
        if not both.any():
            return metrics
        penalty = loss[both] - metric[both]
        if np.any(penalty < -1e-6 * np.maximum(np.abs(metric[both]), 1e-12)):
            return metrics
        removable |= bool(np.any(penalty > PENALTY_MIN_SHARE * np.abs(metric[both])))
    if not removable:
        return metrics
    out = dict(metrics)
    for loss_name, metric_name in pairs:
        out[f"{loss_name}_regularised"] = metrics[loss_name]
        out[loss_name] = metrics[metric_name]
    if announce:
        log.info(
            "%s: loss and val_loss read from %r and %r: the logged losses include a regularisation "
            "penalty (kept as loss_regularised / val_loss_regularised)",
            source,
            kind,
            f"val_{kind}",
        )
    return out


def engine_metrics(
    metrics: dict[str, np.ndarray], source: Path | str, *, announce: bool = True
) -> dict[str, np.ndarray]:
    """A run's logged metrics as the engine reads them, whatever their source (file, live
    history, MLflow): :func:`canonical_names`, then :func:`penalty_free_losses`.

    Args:
        metrics: metric name as logged -> (E,) float64 values.
        source: the file or run, for the log line.
        announce: log a loss swap (INFO).

    Returns:
        A new dict (the input is not modified).
    """
    named = canonical_names(metrics)
    heads = output_heads(metrics)
    if announce and heads and "accuracy" not in metrics and "val_accuracy" not in metrics:
        if len(heads) == 1:
            ((head, accuracy),) = heads.items()
            losses = f", {head}_loss as loss" if "loss_total" in named or "val_loss_total" in named else ""
            log.info("%s: one output logs an accuracy: read %s as accuracy%s", source, accuracy, losses)
        elif "val_accuracy" not in named:
            log.warning(
                "%s: accuracies of %d outputs (%s) and no overall one: the diagnosis reads the total "
                "loss only",
                source,
                len(heads),
                ", ".join(heads.values()),
            )
    return penalty_free_losses(named, source, announce=announce)


#: The engine's names for what it reads of a log (:func:`engine_metrics`): the losses, the
#: accuracies and the learning rate.
ENGINE_NAMES = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate")


def metrics_read(names: Iterable[str]) -> tuple[str, ...]:
    """Which of a run's logged metric names :func:`engine_metrics` reads: those that become one of
    :data:`ENGINE_NAMES` under :func:`canonical_names` (``val_acc``, ``val_binary_accuracy``,
    ``lr``, ...), and the cross-entropy metrics of :data:`CROSSENTROPY_KINDS` with their ``val_``
    twins (:func:`penalty_free_losses`).

    For reading only what is needed from a store that holds many metrics per run (MLflow).

    Args:
        names: the metric names the run logged (e.g. ``Run.data.metrics``' keys).

    Returns:
        The names to read, in the order given.
    """
    names = list(dict.fromkeys(names))
    renamed = canonical_names({name: name for name in names})  # engine name -> logged name
    wanted = {logged for engine, logged in renamed.items() if engine in ENGINE_NAMES}
    wanted |= {n for k in CROSSENTROPY_KINDS for n in (k, f"val_{k}")}
    return tuple(name for name in names if name in wanted)


def loss_source(metrics: dict[str, np.ndarray]) -> str | None:
    """The cross-entropy metric that :func:`penalty_free_losses` read ``loss`` from, or None (the
    losses are the logged ones)."""
    if "loss_regularised" not in metrics or "loss" not in metrics:
        return None
    for kind in CROSSENTROPY_KINDS:
        if kind in metrics and np.array_equal(metrics[kind], metrics["loss"], equal_nan=True):
            return kind
    return None


def _check_validation(metrics: dict[str, np.ndarray], source: Path | str) -> None:
    if not any(name in metrics for name in VALIDATION_METRICS):
        raise ValueError(
            f"{source}: no validation metric: expected a column 'val_accuracy' or 'val_loss', "
            f"found {sorted(metrics)}"
        )


def _complete_from_epochs(epochs: np.ndarray) -> bool:
    # Missing epochs (a gap in the numbering, or not starting at 1) mean the log is partial.
    # A run shorter than its budget may have early-stopped; diagnose() decides that from the curve.
    if epochs.size == 0:
        return False
    expected = np.arange(1, epochs.size + 1)
    return bool(np.array_equal(epochs, expected))


#: Separators ``CSVLogger(separator=...)`` is commonly given, the default first.
SEPARATORS = ",;\t|"
#: The largest epoch number read (10**9): a logged "epoch" above it is no epoch count, and past
#: 2**63 it would wrap to a negative int64.
MAX_EPOCH = 10**9


def _separator(header: str) -> str:
    """The separator of a CSVLogger file, read off its header line (``csv.Sniffer`` over
    :data:`SEPARATORS`); ``,`` (Keras' default) when the header names one column only."""
    try:
        return csv.Sniffer().sniff(header, delimiters=SEPARATORS).delimiter
    except csv.Error:
        return ","


def _ends_with_newline(path: Path) -> bool:
    """Whether the file's last byte is a line end (an empty file counts as ended)."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        if handle.tell() == 0:
            return True
        handle.seek(-1, 2)
        return handle.read(1) in (b"\n", b"\r")


def load_csv_logger(
    path: str | Path,
    *,
    epoch_budget: int | None = None,
    num_classes: int | None = None,
    run: str | None = None,
) -> Curve:
    """Read a Keras ``CSVLogger`` file into a :class:`Curve`.

    Args:
        path: the CSV file; header ``epoch,<metric>,...``; epochs 0-based as CSVLogger writes them.
            The separator is read off the header (``CSVLogger(separator=";")``, tab or ``|``).
            A ``History.history`` table saved with pandas (``DataFrame(history.history).to_csv()``)
            is read too: its unnamed index column counts the epochs from 0, and without an index
            (``index=False``) the rows are the epochs in order.
            A repeated header line (``CSVLogger(append=True)`` after a resumed ``fit``) is skipped.
            A last row cut short with no line end (a file read while training still writes it)
            is dropped with a warning; a short row anywhere else is an error.
            A resumed ``fit(initial_epoch=k)`` appending to the same file continues the epoch
            numbers; when it re-runs epochs already logged (the last checkpoint was older than
            the last logged epoch: ``ModelCheckpoint`` every few epochs, a kill between
            CSVLogger's row and ``BackupAndRestore``'s backup), its rows replace the earlier rows
            from epoch ``k`` on, as the training itself did, and a warning says which epochs
            were logged twice (:func:`resumed_rows`). ``fit`` called again on the same model
            without ``initial_epoch`` numbers its epochs from 0 again while its loss goes on from
            where the call before left off: its rows are read as the run's next epochs, numbered
            on, with a warning (:func:`continued_fits`). Of a file holding several trainings (a
            ``fit`` from epoch 0 again whose loss starts back where the first one did), the last
            one is read, with a warning: trainings are never merged.
        epoch_budget: epochs the run was configured for, if known.
        num_classes: classes of the task, if known.
        run: display name (default: the file's stem).

    Returns:
        A Curve with 1-based ``epochs`` (E,) int64 and every other column as an (E,) float64 array
        (empty cells, ``nan`` and CSVLogger's ``NA`` as NaN, :data:`MISSING_CELLS`). ``complete`` is
        False when epochs are missing.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: (naming the file, and the column and the line where it applies: the file's
            own line number, blank lines and repeated headers counted, as an editor shows it; the
            warnings name lines so too) not UTF-8 text (a byte-order mark is accepted), no header,
            a row whose cells do not match the header (but for a last row still being written), a
            non-numeric cell in the epoch, a loss or an accuracy column (another column with text,
            e.g. a time stamp, is dropped with a warning), a cell over the csv module's field size
            limit, no rows, or neither ``val_accuracy`` nor ``val_loss``.
    """
    notes: list[str] = []  # what the reader changed or left out, for the reports (Curve.read_notes)
    path = Path(path)
    # utf-8-sig: Excel saves CSV with a byte-order mark, which would otherwise glue to "epoch".
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            separator = _separator(handle.readline())
            handle.seek(0)  # the utf-8-sig decoder skips the byte-order mark again
            reader = csv.reader(handle, delimiter=separator)
            try:
                header = [name.strip() for name in next(reader)]
            except StopIteration:
                raise ValueError(f"{path}: empty file, expected a CSVLogger header 'epoch,...'") from None
            # CSVLogger(append=True) writes its header again each time training resumes. Each row
            # keeps its line number in the file (the csv reader's, where the row ends) for messages.
            rows, lines = [], []
            for row in reader:
                if any(cell.strip() for cell in row) and [cell.strip() for cell in row] != header:
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise ValueError(_not_text(path, error)) from None
    except csv.Error as error:  # e.g. a cell over the csv module's field size limit (128 KiB)
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    numbered = False
    if "epoch" not in header:
        if header and header[0] == "":
            # pandas' DataFrame(history.history).to_csv(): its unnamed index counts epochs from 0.
            header = ["epoch", *header[1:]]
        else:
            numbered = True  # the same table saved with index=False: one row per epoch, in order
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: duplicate column names in header {header}")
    if rows and len(rows[-1]) < len(header) and not _ends_with_newline(path):
        # A CSVLogger file read while training still appends to it (or copied mid-write): its last
        # row is cut short. The epochs before it are whole.
        _note(
            notes,
            f"{path}: last row (line {lines[-1]}) has {len(rows[-1])} of {len(header)} cells and no line "
            "end: a row still being written; ignored",
        )
        rows, lines = rows[:-1], lines[:-1]
    if not rows:
        raise ValueError(f"{path}: no epochs (header only)")
    columns: dict[str, list[float]] = {name: [] for name in header}
    # A column the engine never reads (a wall-clock "time" stamp some loggers add) may hold text:
    # it is dropped with a warning. The epoch, the losses and the accuracies must be numbers.
    dropped: dict[str, tuple[int, str]] = {}
    for number, row in zip(lines, rows, strict=True):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {number} has {len(row)} cells, header has {len(header)}")
        for name, cell in zip(header, row, strict=True):
            if name in dropped:
                continue
            try:
                columns[name].append(_to_float(cell, path, name, number))
            except ValueError:
                if _read_by_the_engine(name):
                    raise
                dropped[name] = (number, cell.strip())
    for name, (number, cell) in dropped.items():
        del columns[name]
        _note(notes, f"{path}: column {name!r} is not numeric (line {number}: {cell!r}): ignored")
    raw_epochs = np.arange(len(rows), dtype=np.float64) if numbered else np.asarray(columns.pop("epoch"))
    loss = np.asarray(columns["loss"], dtype=np.float64) if "loss" in columns else None
    epochs, keep = _logged_epochs(raw_epochs, path, "column", loss, notes)
    metrics = engine_metrics(
        {name: np.asarray(values, dtype=np.float64)[keep] for name, values in columns.items()}, path
    )
    metrics = _accuracy_fractions(metrics, path)
    _check_validation(metrics, path)
    return Curve(
        run=run if run is not None else path.stem,
        metrics=metrics,
        epochs=epochs,
        epoch_budget=epoch_budget,
        complete=_complete_from_epochs(epochs),
        num_classes=num_classes,
        read_notes=tuple(notes),
    )


def _note(notes: list[str] | None, message: str) -> None:
    """Log ``message`` as a warning and, when the caller collects them, keep it for the reports."""
    log.warning("%s", message)
    if notes is not None:
        notes.append(message)


def resumed_rows(epochs: np.ndarray, source: Path | str, notes: list[str] | None = None) -> np.ndarray:
    """Which rows of a CSVLogger log make the run: resumed epochs re-run, and several trainings.

    Keras' ``CSVLogger(append=True)`` appends the rows of every ``fit`` call to one file
    (https://keras.io/api/callbacks/csv_logger/).

    - A ``fit(initial_epoch=k)`` resumed from a checkpoint older than the last logged epoch logs
      epochs ``k, k+1, ...`` again: the training went on from epoch ``k`` with the checkpoint's
      weights, so the earlier rows for epochs ``>= k`` describe weights that were thrown away and
      are dropped.
    - A ``fit`` run again from the start (the numbering steps back to the current training's first
      epoch or below) is another training: the rows of the trainings before it are dropped, so the
      file's last training is what is read.

    Each is said in one warning naming the file.

    Args:
        epochs: (R,) int64 epoch numbers of the rows as logged (CSVLogger's 0-based numbers).
        source: the file, for messages.

    Returns:
        (R,) bool: True for the rows of the last training as it went on, in file order, with
        strictly increasing epochs.
    """
    keep = np.ones(epochs.size, dtype=bool)
    first = int(epochs[0]) if epochs.size else 0
    repeated: list[int] = []
    trainings = 1
    for i in range(1, epochs.size):
        if epochs[i] > epochs[i - 1]:
            continue
        if epochs[i] <= first:
            trainings += 1
            first = int(epochs[i])
            repeated.clear()
            keep[:i] = False
            continue
        replaced = keep[:i] & (epochs[:i] >= epochs[i])
        repeated.extend(int(e) for e in epochs[:i][replaced])
        keep[:i] &= ~replaced
    if trainings > 1:
        _note(
            notes,
            f"{source}: holds {trainings} trainings (the epoch numbering starts again from {first}: fit() "
            "run again without initial_epoch, appending to the same CSVLogger file): the last one, "
            f"{int(keep.sum())} rows, is read; split the file to diagnose the others, or, if each fit went "
            "on training the same model, number its epochs on to read them as one run",
        )
    if repeated:
        _note(
            notes,
            f"{source}: epochs {sorted(set(repeated))} (0-based, as CSVLogger numbers them) were logged "
            "twice: a resumed fit re-ran them after the earlier rows were written; the later rows are used",
        )
    return keep


#: A ``fit`` whose epoch numbering starts again goes on training the same model when its first
#: training loss is nearer the row before it than the first row of the chain's first fit (the same
#: epoch number on a new model), by this factor at least (:func:`continued_fits`).
CONTINUED_FIT_RATIO = 0.5
#: ... and, for a file of one-epoch fits (every row numbered the same), when the loss falls on at
#: least this share of the rows and ends below :data:`CONTINUED_FIT_FALL` x its first value.
CONTINUED_FIT_DOWN_SHARE = 0.7
CONTINUED_FIT_FALL = 0.9


def continued_fits(
    epochs: np.ndarray, loss: np.ndarray | None, source: Path | str, notes: list[str] | None = None
) -> np.ndarray:
    """Epoch numbers with the fits that went on training the same model numbered on.

    ``fit`` called again on the same model without ``initial_epoch`` (a notebook cell re-run, a
    training loop of ``fit`` calls) numbers its epochs from 0 again in a ``CSVLogger(append=True)``
    file, while the model goes on from where it was. Such a call is told from a new training by its
    first training loss: at or beside the loss the previous call ended on, not back at the first
    call's first epoch (an untrained model's). Each restart back to the first epoch number of the
    chain of calls read so far is judged so: continued when ``|l_i - l_(i-1)|`` is below
    :data:`CONTINUED_FIT_RATIO` x ``|l_i - l_first|``, ``l_first`` the loss on the chain's first row
    (the same epoch number); it is then numbered on from the row before. A file of one-epoch calls
    (every row with the same number) is continued when its loss falls from row to row
    (:data:`CONTINUED_FIT_DOWN_SHARE`, and ending below :data:`CONTINUED_FIT_FALL` x its first
    value); fresh one-epoch trainings start at about the same loss each. Anything else (no loss, a
    NaN at the restart, a resume from a checkpoint, a new training) keeps its numbers for
    :func:`resumed_rows`. One warning naming the file says how many calls were read as one run.

    Args:
        epochs: (R,) int64 epoch numbers as logged (0-based).
        loss: (R,) float training loss per row, or None.
        source: the file, for the warning.

    Returns:
        (R,) int64 epoch numbers, continued fits numbered on.
    """
    out = np.asarray(epochs, dtype=np.int64).copy()
    if loss is None or out.size < 2:
        return out
    loss = np.asarray(loss, dtype=np.float64)
    calls = 1
    if out.size >= 3 and np.all(out == out[0]) and np.all(np.isfinite(loss)):
        falls = float(np.mean(np.diff(loss) < 0)) >= CONTINUED_FIT_DOWN_SHARE
        if falls and loss[-1] < CONTINUED_FIT_FALL * loss[0]:
            out = out[0] + np.arange(out.size, dtype=np.int64)
            calls = out.size
    else:
        base, offset = 0, 0
        for i in range(1, out.size):
            number = int(epochs[i])
            if number > int(epochs[i - 1]) or number > int(epochs[base]):
                out[i] = number + offset  # on, or a resume within the chain (resumed_rows decides)
                continue
            near, first = abs(loss[i] - loss[i - 1]), abs(loss[i] - loss[base])
            if number == int(epochs[base]) and base < i - 1 and near < CONTINUED_FIT_RATIO * first:
                offset = int(out[i - 1]) + 1 - number
                out[i] = number + offset
                calls += 1
            else:  # a new training (or undecided): its own numbers
                base, offset = i, 0
                out[i] = number
    if calls > 1:
        _note(
            notes,
            f"{source}: {calls} fit() calls number their epochs from {int(epochs[0])} again while the "
            "training loss goes on from where the call before left off (the same model trained again "
            "without initial_epoch, as when a notebook cell is re-run): read as one run, its epochs "
            "numbered on",
        )
    return out


def _logged_epochs(
    raw: np.ndarray,
    source: Path | str,
    kind: str,
    loss: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(1-based epochs (E,) int64, (R,) bool rows kept) from a log's 0-based ``epoch`` values.

    Fits that went on training the same model are numbered on first (:func:`continued_fits`, from
    the training ``loss`` per row when given); the rows kept are :func:`resumed_rows`'s, so the
    epochs are strictly increasing.

    Raises:
        ValueError: an epoch that is not a whole number, negative, or above :data:`MAX_EPOCH`
            (the message names the source and the ``kind`` of field: ``column`` or ``metric``).
    """
    if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
        raise ValueError(f"{source}: {kind} 'epoch' must hold whole numbers")
    too_far = np.abs(raw) > MAX_EPOCH  # beyond int64 the cast wraps (1e20 read as a negative epoch)
    if too_far.any():
        raise ValueError(f"{source}: {kind} 'epoch': {raw[too_far][0]:g} is not an epoch number")
    numbers = continued_fits(raw.astype(np.int64), loss, source, notes)
    keep = resumed_rows(numbers, source, notes)
    epochs = numbers[keep] + 1
    if epochs[0] < 1:
        raise ValueError(f"{source}: {kind} 'epoch': negative epoch {int(epochs[0]) - 1}")
    return epochs, keep


def curve_from_history(
    history: dict[str, list[float]],
    run: str,
    *,
    epoch_budget: int | None = None,
    num_classes: int | None = None,
    complete: bool = True,
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> Curve:
    """Build a :class:`Curve` from a Keras ``History.history`` dict.

    Args:
        history: metric name -> one value per epoch (epochs 1..E); all lists of equal length.
            An ``epoch`` key, if present, is read as 0-based epoch numbers (as CSVLogger writes),
            and epochs logged again by a resumed or repeated ``fit`` as in a CSVLogger file
            (:func:`resumed_rows`).
        run: display name or MLflow run id.
        epoch_budget: epochs the run was configured for (e.g. ``History.params["epochs"]``).
        num_classes: classes of the task, if known.
        complete: False for a run still training or killed.
        params: the run's flat config, if known.
        tags: free-form tags.

    Returns:
        A Curve with (E,) float64 metric arrays and 1-based (E,) int64 epochs.

    Raises:
        ValueError: (naming the run and the metric) lists of unequal length, non-numeric values,
            no epochs, or neither ``val_accuracy`` nor ``val_loss``.
    """
    notes: list[str] = []  # what the reader changed, for the reports (Curve.read_notes)
    if not history:
        raise ValueError(f"{run}: empty history")
    metrics: dict[str, np.ndarray] = {}
    for name, values in history.items():
        try:
            metrics[name] = np.asarray(
                [math.nan if v is None else float(v) for v in values], dtype=np.float64
            )
        except (TypeError, ValueError):
            raise ValueError(f"{run}: metric {name!r} holds a non-numeric value") from None
        except OverflowError:  # an integer such as 10**400: JSON has no size limit, float64 has
            raise ValueError(f"{run}: metric {name!r} holds a number beyond float64's range") from None
    lengths = {name: array.size for name, array in metrics.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{run}: metrics have different lengths {lengths}")
    size = next(iter(lengths.values()))
    if size == 0:
        raise ValueError(f"{run}: no epochs in history")
    if "epoch" in metrics:
        # Appended logs (JSON lines of resumed or repeated fits) as a CSVLogger file's rows.
        epochs, keep = _logged_epochs(metrics.pop("epoch"), run, "metric", metrics.get("loss"), notes)
        metrics = {name: values[keep] for name, values in metrics.items()}
    else:
        epochs = np.arange(1, size + 1, dtype=np.int64)
    metrics = _accuracy_fractions(engine_metrics(metrics, run), run)
    _check_validation(metrics, run)
    return Curve(
        run=run,
        metrics=metrics,
        epochs=epochs,
        epoch_budget=epoch_budget,
        complete=complete and _complete_from_epochs(epochs),
        num_classes=num_classes,
        params=dict(params or {}),
        tags=dict(tags or {}),
        read_notes=tuple(notes),
    )


def load_history_json(
    path: str | Path,
    *,
    epoch_budget: int | None = None,
    num_classes: int | None = None,
    run: str | None = None,
) -> Curve:
    """Read a Keras ``History`` saved as JSON into a :class:`Curve`.

    Accepts ``{"loss": [...], ...}`` or ``{"history": {...}, "params": {"epochs": N, ...}}``; in the
    second form ``params["epochs"]`` is the epoch budget unless ``epoch_budget`` is given. Also
    one object per epoch, ``{"epoch": 0, "loss": ..., "val_loss": ...}``: as a JSON array, or as
    JSON lines (one object a line; the ``LambdaCallback`` example of
    https://keras.io/api/callbacks/lambda_callback/ streams its logs so); a metric absent from an
    epoch's object is missing there (NaN), and ``epoch``, when given, is 0-based as Keras passes it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: (naming the file) not UTF-8 text (a byte-order mark is accepted), invalid
            JSON (the line, for JSON lines) or JSON nested too deeply to read, not an object of
            lists nor objects of numbers, ``params.epochs`` not a whole number >= 1 (30.0 is 30),
            or the errors of :func:`curve_from_history` (a number beyond float64's range among
            them).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(_not_text(path, error)) from None
    payload: Any
    if path.suffix.lower() == ".jsonl":  # JSON lines, however many (one line parses as one object)
        payload = _json_lines(text, path)
    else:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            if not error.msg.startswith("Extra data"):
                raise ValueError(f"{path}: not valid JSON ({error})") from None
            payload = _json_lines(text, path)
        except RecursionError:
            raise ValueError(f"{path}: not a training history (JSON nested too deeply to read)") from None
    if isinstance(payload, list):
        payload = _records_to_history(payload, path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a JSON object of metric lists")
    history = payload.get("history", payload)
    params = payload.get("params") if "history" in payload else None
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ValueError(f"{path}: expected metric name -> list of per-epoch values")
    if epoch_budget is None and isinstance(params, dict) and params.get("epochs") is not None:
        epochs = params["epochs"]
        # JSON writers may give 30 as 30.0; anything else that is not a whole number >= 1 is refused.
        whole = isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and math.isfinite(epochs)
        if not whole or epochs < 1 or int(epochs) != epochs:
            raise ValueError(f"{path}: params.epochs: must be a positive number of epochs, got {epochs!r}")
        epoch_budget = int(epochs)
    _check_history(history, path)
    name = run if run is not None else path.stem
    try:
        return curve_from_history(history, name, epoch_budget=epoch_budget, num_classes=num_classes)
    except ValueError as error:  # named by the run; the user opens the file
        raise ValueError(f"{path}: {str(error).removeprefix(f'{name}: ')}") from None


def _json_lines(text: str, path: Path) -> list[Any]:
    """The objects of a JSON-lines text, one per non-blank line (errors name the line)."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
            except RecursionError:
                raise ValueError(f"{path}: line {number}: JSON nested too deeply to read") from None
    return records


def _records_to_history(records: list[Any], path: Path) -> dict[str, list[Any]]:
    """One object per epoch -> ``{metric: [value per epoch]}`` (None where an epoch lacks it)."""
    if not records or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected one JSON object per epoch ({{'loss': ..., 'val_loss': ...}})")
    names = list(dict.fromkeys(name for record in records for name in record))
    return {name: [record.get(name) for record in records] for name in names}


def _check_history(history: dict[str, list[Any]], path: Path) -> None:
    # Checked here, not only in curve_from_history, so the message names the file the user can open.
    for name, values in history.items():
        for index, value in enumerate(values):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise ValueError(f"{path}: metric {name!r}, epoch {index + 1}: {value!r} is not a number")
    lengths = {name: len(values) for name, values in history.items()}
    if len(set(lengths.values())) > 1:
        shorter = {name for name, size in lengths.items() if size < max(lengths.values())}
        hint = (
            ": only validation metrics are short, as History keeps them after fit(..., "
            "validation_freq=k), without saying which epochs were validated; log the run with "
            "CSVLogger (it writes NA for the others) or pad the lists with null"
            if all(name.startswith("val_") for name in shorter)
            else ""
        )
        raise ValueError(f"{path}: metrics have different lengths {lengths}{hint}")
    if not any(name in canonical_names(history) for name in VALIDATION_METRICS):
        raise ValueError(
            f"{path}: no validation metric: expected 'val_accuracy' or 'val_loss', found {sorted(history)}"
        )


def load_curve(path: str | Path, *, epoch_budget: int | None = None, num_classes: int | None = None) -> Curve:
    """Read one run's curves from a CSVLogger file (``.csv``, ``.tsv``, ``.log`` or ``.txt``:
    :data:`CSV_SUFFIXES`), a History ``.json`` or a JSON-lines ``.jsonl`` file.

    Args:
        path: the file; the format is chosen by its suffix (case-insensitive).
        epoch_budget: epochs the run was configured for (a History JSON's ``params.epochs`` is
            used when this is None).
        num_classes: classes of the task, if known.

    Returns:
        The run's :class:`Curve`, named after the file's stem.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unknown suffix, or malformed content (the message names the file, and the
            column or line where it applies).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return load_csv_logger(path, epoch_budget=epoch_budget, num_classes=num_classes)
    if suffix in (".json", ".jsonl"):
        return load_history_json(path, epoch_budget=epoch_budget, num_classes=num_classes)
    raise ValueError(
        f"{path}: unknown curve format {suffix!r}; expected a CSVLogger file "
        f"({', '.join(CSV_SUFFIXES)}), .json (History) or .jsonl (JSON lines)"
    )
