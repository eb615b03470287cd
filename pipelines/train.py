"""Training stage: fit a model from :mod:`pipelines.models` on in-memory uint8 images.

:func:`train` is the one training entry point; tuning calls it too. It always installs
EarlyStopping (restoring the best weights), ReduceLROnPlateau, TerminateOnNaN and BackupAndRestore,
so an interrupted run resumes from its last finished epoch with a complete history, and it
guarantees that every epoch's ``logs`` (what callers' callbacks receive) carry Keras' own metric
names ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and ``learning_rate``.

This module uses only ``keras``, ``keras.ops`` and numpy (plus the active backend's own device
query, imported lazily), so it runs under any Keras 3 backend; it imports no Prefect, MLflow or
Great Expectations.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import TrainConfig
from pipelines.io_utils import atomic_write_text, atomic_write_via, write_npz

#: Keras metric names, in the order of the history CSV (after ``epoch``).
HISTORY_KEYS: tuple[str, ...] = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
#: The quantity EarlyStopping and ReduceLROnPlateau watch, and that defines ``best_epoch``.
MONITOR = "val_loss"
# Written next to BackupAndRestore's checkpoint: which MLflow run, data version and config the
# backup belongs to, and every finished epoch's logs, so a resumed run rebuilds the epochs it skips.
# BackupAndRestore deletes the whole folder when training ends normally.
_HISTORY_BACKUP_NAME = "curvewatch_state.json"
# A training that ended normally, kept by its caller (keep_finished) until everything after the fit
# is done: the final model (best weights restored) beside the state file, which then says finished.
_FINISHED_MODEL_NAME = "finished.keras"
# EarlyStopping's best weights so far (``model.get_weights()`` as ``w0``, ``w1``, ... plus the 0-based
# ``epoch`` they are from), rewritten atomically whenever val_loss improves, before the state file
# that records EarlyStopping's counters: a resumed run restores the best weights of every epoch.
_BEST_WEIGHTS_NAME = "best.weights.npz"


class TrainingInterrupted(Exception):
    """SIGTERM (or SIGINT) arrived during :func:`train`; the epoch in progress was abandoned.

    The backup folder holds every finished epoch, so the same call resumes from there; unless the
    signal came once every epoch had run, while Keras' end-of-training callbacks (which delete the
    backup) were running: then ``backup_kept`` is False and the message says a rerun trains again.

    Attributes:
        signum: the signal number (``signal.SIGTERM`` = 15).
        epochs_done: epochs finished (and backed up) before the signal, including resumed ones.
        backup_kept: whether the backup folder still holds them.
    """

    def __init__(self, signum: int, epochs_done: int, *, backup_kept: bool = True) -> None:
        name = signal.Signals(signum).name
        where = (
            "backup kept"
            if backup_kept
            else "at the end of training, after the backup was removed: a rerun trains again"
        )
        super().__init__(f"training stopped by {name} after {epochs_done} finished epoch(s); {where}")
        self.signum = signum
        self.epochs_done = epochs_done
        self.backup_kept = backup_kept


def _interrupted(flag: dict[str, Any], signum: int) -> TrainingInterrupted:
    """The :class:`TrainingInterrupted` for ``signum``, saying whether ``flag["backup_dir"]``
    still holds the backup."""
    backup = flag.get("backup_dir")
    kept = backup is None or (Path(backup).is_dir() and any(Path(backup).iterdir()))
    return TrainingInterrupted(signum, flag.get("epochs_done") or 0, backup_kept=kept)


class TrainingLocked(RuntimeError):
    """Another process holds this checkout's training lock (see :func:`training_lock`)."""


@dataclass(frozen=True)
class BackupState:
    """What a training backup belongs to, read from ``<backup_dir>/curvewatch_state.json``.

    Attributes:
        run_id: the MLflow run the interrupted training logged to (None when trained without one).
        data_version: content hash of the training data (see :func:`train`).
        config_hash: :func:`config_hash` of the interrupted training.
        epochs: 0-based epoch -> that epoch's logs (Keras metric names), finished epochs only.
        pid: the process that wrote the backup.
    """

    run_id: str | None
    data_version: str
    config_hash: str
    epochs: dict[int, dict[str, float]]
    pid: int | None = None
    #: Set when the training had ended normally (:func:`keep_finished`): the :class:`TrainResult`
    #: fields other than ``model`` and ``history``.
    finished: dict[str, Any] | None = None
    #: EarlyStopping's ``best``, ``wait``, ``best_epoch`` (0-based) and ``stopped_epoch`` after the
    #: last epoch in ``epochs``; its best weights are in ``best.weights.npz``. None: not recorded.
    early_stopping: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainData:
    """In-memory training and validation splits.

    Attributes:
        x_train: ``(N, H, W, C)`` uint8 pixels in ``[0, 255]`` (models rescale internally).
        y_train: ``(N,)`` int64 class indices in ``[0, num_classes)``.
        x_val: ``(M, H, W, C)`` uint8, same ``(H, W, C)`` as ``x_train``.
        y_val: ``(M,)`` int64 class indices.
        num_classes: number of classes, >= 2.

    Raises:
        ValueError: (on construction) images not 4-D uint8 or of different ``(H, W, C)``, labels
            not 1-D integers aligned with the images, empty, or outside ``[0, num_classes)``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        for name in ("x_train", "x_val"):
            x = getattr(self, name)
            if x.ndim != 4:
                raise ValueError(f"{name} must be (N, H, W, C), got shape {x.shape}")
            if x.dtype != np.uint8:
                # The models rescale by 1/255 themselves; float images in [0, 1] would train silently
                # on near-black inputs.
                raise ValueError(f"{name} must be uint8 pixels in [0, 255], got dtype {x.dtype}")
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise ValueError(
                f"x_train and x_val image shapes differ: {self.x_train.shape[1:]} vs {self.x_val.shape[1:]}"
            )
        for xs, ys in (("x_train", "y_train"), ("x_val", "y_val")):
            x, y = getattr(self, xs), getattr(self, ys)
            if y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"{ys} must be (N,) with N = len({xs}) = {len(x)}, got shape {y.shape}")
            if len(y) == 0:
                raise ValueError(f"{ys} is empty")
            if not np.issubdtype(y.dtype, np.integer):
                raise ValueError(f"{ys} must hold integer class indices, got dtype {y.dtype}")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(f"{ys} has labels outside [0, {self.num_classes})")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the compiled ``keras.Model`` holding the best weights (by ``val_loss``) of this run,
            those of epochs run before an interruption included when it resumed from a backup.
        history: Keras metric name -> one float per epoch run (``HISTORY_KEYS``), including epochs
            run before an interruption when the run resumed from a backup.
        epochs_run: number of epochs in ``history``.
        stopped_early: EarlyStopping ended the run before ``cfg.epochs``.
        best_epoch: 1-based epoch whose weights ``model`` holds: EarlyStopping's best, the lowest
            finite ``val_loss`` (of the epochs since the resume only when its state could not be
            restored, see :func:`train`); 0 when it kept no epoch with a finite ``val_loss``.
        train_seconds: wall-clock seconds spent in ``fit`` by this call (not earlier, interrupted calls).
        device: ``"cpu"`` or ``"gpu:<device name>"`` as seen by the active Keras backend.
        mixed_precision: the model computed in float16 (``mixed_float16`` policy).
        completed: False when TerminateOnNaN stopped the run on a NaN or infinite loss.
        resumed_from_epoch: 0 for a fresh run, else the number of epochs restored from the backup.
        backend: the Keras backend name (``tensorflow``, ``jax`` or ``torch``).
    """

    model: Any
    history: dict[str, list[float]]
    epochs_run: int
    stopped_early: bool
    best_epoch: int
    train_seconds: float
    device: str
    mixed_precision: bool
    completed: bool = True
    resumed_from_epoch: int = 0
    backend: str = field(default="tensorflow")


def enable_memory_growth() -> list[str]:
    """Let GPU memory grow as needed instead of being taken whole at start-up.

    Tuning trials run one after another on one GPU in one process; a backend that preallocates
    the whole card leaves nothing to anything else on it. Per backend:

    - ``tensorflow``: ``tf.config.experimental.set_memory_growth(gpu, True)`` for every visible GPU
      (https://www.tensorflow.org/guide/gpu#limiting_gpu_memory_growth). It must come before
      TensorFlow initialises the GPUs; afterwards TensorFlow raises ``RuntimeError``, which is
      logged as a warning and leaves the setting as it was.
    - ``jax``: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` unless already set
      (https://docs.jax.dev/en/latest/gpu_memory_allocation.html), read when JAX starts its GPU
      backend.
    - ``torch``: nothing to do; its caching allocator grows on demand.

    Returns:
        The GPUs set to grow (device names; empty on a CPU-only machine or for jax / torch).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return []
    if backend != "tensorflow":
        return []
    import tensorflow as tf

    grown = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
            grown.append(gpu.name)
        except RuntimeError as error:  # GPUs already initialised in this process
            warnings.warn(f"memory growth not set on {gpu.name}: {error}", RuntimeWarning, stacklevel=2)
    return grown


def detect_device() -> str:
    """Return ``"gpu:<name>"`` if the active Keras backend sees a GPU, else ``"cpu"``.

    The backend's own device query is imported here, never at module import (``tensorflow``:
    ``tf.config.list_physical_devices``; ``jax``: ``jax.devices``; ``torch``: ``torch.cuda``).
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"gpu:{details.get('device_name', gpus[0].name)}"
    elif backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            return f"gpu:{gpus[0].device_kind}"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"gpu:{torch.cuda.get_device_name(0)}"
    return "cpu"


def resolve_mixed_precision(setting: str, device: str) -> bool:
    """``auto`` -> on exactly when ``device`` is a GPU; ``on``/``off`` are forced.

    Raises:
        ValueError: ``setting`` is not ``auto``, ``on`` or ``off``.
    """
    if setting == "auto":
        return device.startswith("gpu")
    if setting in ("on", "off"):
        return setting == "on"
    raise ValueError(f"mixed_precision must be auto, on or off, got {setting!r}")


def stratified_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` indices of ``y`` keeping the class proportions (largest-remainder rounding).

    Args:
        y: ``(N,)`` integer labels.
        n: how many to keep; ``n >= N`` keeps everything.
        seed: seeds ``numpy.random.default_rng``; the same ``(y, n, seed)`` gives the same indices.

    Returns:
        ``(min(n, N),)`` int64 indices into ``y``, sorted ascending.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total = len(y)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / total
    quota = np.floor(exact).astype(np.int64)
    # Hand the remaining slots to the classes with the largest fractional parts (ties broken at
    # random) so the total is exactly n.
    short = n - int(quota.sum())
    order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
    quota[order[:short]] += 1
    picked = [
        rng.choice(np.flatnonzero(y == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _make_callbacks(
    cfg: TrainConfig,
    backup_dir: Path,
    prior: dict[int, dict[str, float]],
    identity: dict[str, Any],
    prior_early: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the always-on callbacks; classes are defined here so importing keras stays lazy.
    ``prior_early`` is the resumed backup's EarlyStopping state (:attr:`BackupState.early_stopping`)."""
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        """Adds ``learning_rate`` to ``logs`` and keeps every epoch's logs, also on disk."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs: dict[int, dict[str, float]] = dict(prior)
            self.first_epoch: int | None = None
            # EarlyStopping's state after the last epoch in ``epochs``.
            self.early_state: dict[str, Any] | None = dict(prior_early) if prior_early else None

        def write(self) -> None:
            _write_state(backup_dir, identity, self.epochs, early_stopping=self.early_state)

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            # Recorded before the first epoch ends, so a run killed in its first epoch still
            # resumes into the same MLflow run.
            self.write()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is None:
                return
            # Keras 3's ReduceLROnPlateau adds this too, but only from its own position in the
            # callback list; setting it first means every later callback sees it. It is the rate
            # used during this epoch (reductions happen after).
            logs.setdefault(
                "learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            )
            if self.first_epoch is None:
                self.first_epoch = epoch
                # Epochs at or after the resume point are being re-run; drop stale copies.
                self.epochs = {e: v for e, v in self.epochs.items() if e < epoch}
            self.epochs[epoch] = {k: float(logs[k]) for k in HISTORY_KEYS if k in logs}

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        """EarlyStopping whose state can be carried across a resume: :meth:`snapshot` gives its
        counters, :meth:`resume` puts them back with the best weights kept in ``best.weights.npz``
        (Keras' own starts afresh at every ``fit``, knowing only the epochs after the resume)."""

        def snapshot(self) -> dict[str, Any]:
            best = None if self.best is None else float(self.best)
            return {
                "best": best,
                "wait": int(self.wait),
                "best_epoch": int(self.best_epoch),
                "stopped_epoch": int(self.stopped_epoch),
            }

        def resume(self, state: Mapping[str, Any]) -> None:
            """Restore a :meth:`snapshot` (call after ``on_train_begin``).

            Raises:
                ValueError, KeyError, OSError: ``best.weights.npz`` is missing, unreadable, from
                another epoch than ``state["best_epoch"]`` or does not fit the model.
            """
            weights = None
            if state["best"] is not None:
                with np.load(backup_dir / _BEST_WEIGHTS_NAME, allow_pickle=False) as saved:
                    if int(saved["epoch"]) != int(state["best_epoch"]):
                        raise ValueError(
                            f"{_BEST_WEIGHTS_NAME} holds epoch {int(saved['epoch']) + 1}, "
                            f"not {int(state['best_epoch']) + 1}"
                        )
                    weights = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
                shapes = [tuple(w.shape) for w in self.model.get_weights()]
                if [w.shape for w in weights] != shapes:
                    raise ValueError(f"{_BEST_WEIGHTS_NAME} does not fit the model")
            self.best = state["best"]
            self.wait = int(state["wait"])
            self.best_epoch = int(state["best_epoch"])
            self.stopped_epoch = int(state["stopped_epoch"])
            self.best_weights = weights

    early = ResumableEarlyStopping(
        monitor=MONITOR, patience=cfg.early_stopping_patience, restore_best_weights=True
    )

    class StateWriter(keras.callbacks.Callback):
        """Writes the recorder's state file after BackupAndRestore has saved the epoch (it comes
        after it in the list): the state never claims an epoch whose weights are not on disk.
        Before it, when val_loss improved, EarlyStopping's best weights (``best.weights.npz``), so
        the state's EarlyStopping counters never name best weights that are not on disk either.

        On resume (``on_train_begin``, after BackupAndRestore's, once Keras' resume point is known),
        puts the backup's EarlyStopping state back into ``early``, and when EarlyStopping had stopped
        the run, moves Keras' start epoch (``_initial_epoch``, which BackupAndRestore sets, read by
        every backend's ``fit`` after ``on_train_begin``) to the end so that no further epoch runs.
        When Keras resumes from another epoch than the state's last (a backup cut short by a kill)
        or the best weights cannot be read, EarlyStopping starts afresh, with a ``RuntimeWarning``.
        """

        def __init__(self, recorder: EpochRecorder) -> None:
            super().__init__()
            self.recorder = recorder
            self.saved_best: int | None = None  # the epoch in best.weights.npz, written by this run

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            resumed_at = getattr(self.model, "_initial_epoch", None) or 0
            if prior_early is None or not resumed_at:
                return
            try:
                if resumed_at != len(prior):
                    raise ValueError(
                        f"Keras resumes after epoch {resumed_at}, its state after epoch {len(prior)}"
                    )
                early.resume(prior_early)
            except (OSError, ValueError, KeyError) as error:
                warnings.warn(
                    f"EarlyStopping state in {backup_dir} not restored ({error}); it starts afresh",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return
            self.saved_best = early.best_epoch if early.best_weights is not None else None
            if early.stopped_epoch > 0:
                self.model._initial_epoch = max(resumed_at, int(self.params["epochs"]))

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is None:
                return
            if early.best_weights is not None and early.best_epoch != self.saved_best:
                arrays = {f"w{i}": w for i, w in enumerate(early.best_weights)}
                write_npz(
                    backup_dir / _BEST_WEIGHTS_NAME,
                    {"epoch": np.int64(early.best_epoch), **arrays},
                    compress=False,
                )
                self.saved_best = early.best_epoch
            self.recorder.early_state = early.snapshot()
            self.recorder.write()

    class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
        """BackupAndRestore keeping the previous epoch's copy (``double_checkpoint``), which Keras
        loads when the latest was cut short by a kill mid-write; a cut-short file with no copy
        (killed while saving the first epoch) is dropped and training starts over, one epoch lost.
        Keras writes its weights and metadata in place (keras/src/callbacks/backup_and_restore.py).
        """

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            try:
                super().on_train_begin(logs)
            except (OSError, ValueError) as error:
                warnings.warn(
                    f"training backup in {self.backup_dir} unreadable ({error}); starting over",
                    RuntimeWarning,
                    stacklevel=2,
                )
                # Keras' files only: the recorder has already written this run's state file.
                discard_backup(Path(self.backup_dir), _KERAS_BACKUP_FILES)
                self.model._initial_epoch = None

    recorder = EpochRecorder()

    class RecordingTerminateOnNaN(keras.callbacks.TerminateOnNaN):
        """TerminateOnNaN that remembers whether it fired."""

        fired = False

        def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.fired = True
            super().on_batch_end(batch, logs)

    return {
        "recorder": recorder,
        "nan": RecordingTerminateOnNaN(),
        "early": early,
        "reduce_lr": keras.callbacks.ReduceLROnPlateau(
            monitor=MONITOR, factor=cfg.reduce_lr_factor, patience=cfg.reduce_lr_patience
        ),
        "backup": SafeBackupAndRestore(backup_dir=str(backup_dir), double_checkpoint=True),
        "state": StateWriter(recorder),
    }


# Files BackupAndRestore writes (keras/src/callbacks/backup_and_restore.py), then with ours.
_KERAS_BACKUP_FILES = (
    "latest.weights.h5",
    "latest.weights.h5.bkp",
    "training_metadata.json",
    "training_metadata.json.bkp",
)
_BACKUP_FILES = (*_KERAS_BACKUP_FILES, _HISTORY_BACKUP_NAME, _BEST_WEIGHTS_NAME, _FINISHED_MODEL_NAME)


def config_hash(cfg: TrainConfig, seed: int, input_shape: Sequence[int], num_classes: int) -> str:
    """SHA-256 of everything that defines a training apart from the data: the whole ``train``
    section (``epochs`` included), the seed and the model's input and output sizes.

    A backup is resumed only under the same hash, so a changed ``train.epochs`` starts afresh
    rather than mixing two budgets in one run.
    """
    doc = {
        "train": cfg.model_dump(mode="json"),
        "seed": int(seed),
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def data_fingerprint(data: TrainData) -> str:
    """SHA-256 of the training and validation arrays (pixels, labels, shapes, dtypes).

    The data version a backup records when the caller gives none (the train stage passes the DVC
    content hash of the prepared data instead).
    """
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def read_backup_state(backup_dir: Path) -> BackupState | None:
    """The state of an interrupted training in ``backup_dir``, or None when there is none (or it
    is unreadable: a backup without a readable state is never resumed)."""
    path = Path(backup_dir) / _HISTORY_BACKUP_NAME
    try:
        raw = json.loads(path.read_text())
        return BackupState(
            run_id=raw.get("run_id"),
            data_version=str(raw["data_version"]),
            config_hash=str(raw["config_hash"]),
            epochs={int(e): {k: float(v) for k, v in logs.items()} for e, logs in raw["epochs"].items()},
            pid=raw.get("pid"),
            finished=dict(raw["finished"]) if raw.get("finished") is not None else None,
            early_stopping=dict(raw["early_stopping"]) if raw.get("early_stopping") is not None else None,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


#: The :class:`TrainResult` fields a finished backup records (``model`` is its own file, ``history``
#: is the state's epochs).
_FINISHED_FIELDS = (
    "epochs_run",
    "stopped_early",
    "best_epoch",
    "train_seconds",
    "device",
    "mixed_precision",
    "completed",
    "resumed_from_epoch",
    "backend",
)


def keep_finished(backup_dir: Path, result: TrainResult, identity: Mapping[str, Any]) -> None:
    """Keep a training that ended normally in ``backup_dir`` until its caller has done everything
    after the fit, so that a failure there (an MLflow write, a full disk) or a killed process is
    followed by :func:`finished_result` instead of training again. Keras' ``BackupAndRestore``
    deletes its own checkpoint when ``fit`` ends; resuming it would run no epoch and keep the last
    epoch's weights, not the best ones EarlyStopping restored.

    Writes the model (``finished.keras``, atomically), then the state file with every epoch and a
    ``finished`` record, so the state never says finished without the model on disk. The caller
    removes both with :func:`discard_backup` once done.

    Args:
        backup_dir: the training's backup folder (created when needed).
        result: what :func:`train` returned.
        identity: ``run_id``, ``data_version`` and ``config_hash`` (:func:`config_hash`) of the
            training, as :func:`train` records them.
    """
    backup_dir = Path(backup_dir)
    save_model(result.model, backup_dir / _FINISHED_MODEL_NAME)
    epochs = {e: {k: v[e] for k, v in result.history.items()} for e in range(result.epochs_run)}
    _write_state(backup_dir, identity, epochs, finished={n: getattr(result, n) for n in _FINISHED_FIELDS})


def _write_state(
    backup_dir: Path,
    identity: Mapping[str, Any],
    epochs: Mapping[int, Mapping[str, float]],
    finished: Mapping[str, Any] | None = None,
    early_stopping: Mapping[str, Any] | None = None,
) -> None:
    """Write the backup's state file (what :func:`read_backup_state` reads) atomically: the
    training's ``run_id``, ``data_version`` and ``config_hash``, this pid, every finished epoch's
    logs, EarlyStopping's state after the last of them and, for a finished training, its
    ``finished`` record."""
    state = {
        "run_id": identity["run_id"],
        "data_version": identity["data_version"],
        "config_hash": identity["config_hash"],
        "pid": os.getpid(),
        "epochs": {str(e): dict(v) for e, v in sorted(epochs.items())},
        **({"finished": dict(finished)} if finished is not None else {}),
        **({"early_stopping": dict(early_stopping)} if early_stopping is not None else {}),
    }
    atomic_write_text(Path(backup_dir) / _HISTORY_BACKUP_NAME, json.dumps(state))


def finished_result(backup_dir: Path, state: BackupState) -> TrainResult:
    """The :class:`TrainResult` of a finished training kept by :func:`keep_finished`, without
    training: its model loaded from ``finished.keras``, its history from ``state``, and the other
    fields as recorded (``train_seconds`` is that training's).

    Args:
        backup_dir: the backup folder.
        state: its :func:`read_backup_state`, with ``finished`` set.

    Raises:
        ValueError: ``state`` is not a finished training, or ``finished.keras`` is missing or
            unreadable (the message names it).
    """
    import keras

    if state.finished is None:
        raise ValueError(f"{backup_dir}: the backup is not a finished training")
    path = Path(backup_dir) / _FINISHED_MODEL_NAME
    try:
        fields = {k: state.finished[k] for k in _FINISHED_FIELDS}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{backup_dir}: the finished training's record lacks {exc}") from exc
    enable_memory_growth()  # as train() does, before anything touches the GPU
    try:
        # Compiled, with its optimizer state (not restored for a mixed-precision model's loss-scale
        # optimizer, which Keras skips with a warning; see steps.load_model_safely).
        model = keras.saving.load_model(path)
    except Exception as exc:  # Keras raises OSError, ValueError, zipfile.BadZipFile ...
        raise ValueError(f"{path}: the finished training's model cannot be read: {exc}") from exc
    return TrainResult(model=model, history=_history(state.epochs), **fields)


def _history(epochs: Mapping[int, Mapping[str, float]]) -> dict[str, list[float]]:
    """``HISTORY_KEYS`` -> one float per epoch (in epoch order; NaN where an epoch lacks the key)."""
    return {key: [float(epochs[e].get(key, math.nan)) for e in sorted(epochs)] for key in HISTORY_KEYS}


def resume_mismatch(
    state: BackupState, *, run_id: str | None, data_version: str, config_hash: str
) -> str | None:
    """Why the backup ``state`` cannot be resumed by a training with these identifiers.

    Returns:
        None when the MLflow run id, the data version and the config hash all match; otherwise a
        sentence naming each difference, e.g. ``"the data changed (data version 3f2a9c1b0d4e ->
        77aa01b2c3d4)"``.
    """
    reasons = []
    if state.run_id != run_id:
        reasons.append(f"it belongs to MLflow run {state.run_id}, not {run_id}")
    if state.data_version != data_version:
        reasons.append(f"the data changed (data version {state.data_version[:12]} -> {data_version[:12]})")
    if state.config_hash != config_hash:
        reasons.append(
            f"the training config changed (config hash {state.config_hash[:12]} -> {config_hash[:12]})"
        )
    return "; ".join(reasons) or None


def discard_backup(backup_dir: Path, names: Sequence[str] = _BACKUP_FILES) -> None:
    """Delete the files of a training backup (BackupAndRestore's and ours), file by file.

    Args:
        backup_dir: the backup folder.
        names: the files to delete (default: all of them).
    """
    for name in names:
        (Path(backup_dir) / name).unlink(missing_ok=True)


def _prior_history(
    backup_dir: Path, identity: dict[str, Any]
) -> tuple[dict[int, dict[str, float]], dict[str, Any] | None]:
    """The epochs and EarlyStopping state of an interrupted run with the same identity; any other
    backup is discarded with a ``RuntimeWarning`` saying why, so BackupAndRestore neither resumes
    the wrong run nor fails to load mismatched weights."""
    state = read_backup_state(backup_dir)
    if state is not None:
        reason = resume_mismatch(
            state,
            run_id=identity["run_id"],
            data_version=identity["data_version"],
            config_hash=identity["config_hash"],
        )
        if reason is None:
            return state.epochs, state.early_stopping
    elif not (backup_dir.is_dir() and any((backup_dir / name).exists() for name in _BACKUP_FILES)):
        return {}, None
    else:
        reason = "it has no readable curvewatch state"
    warnings.warn(f"{backup_dir}: discarding the training backup: {reason}", RuntimeWarning, stacklevel=3)
    discard_backup(backup_dir)
    return {}, None


@contextlib.contextmanager
def training_lock(backup_dir: Path) -> Iterator[Path]:
    """Hold this checkout's training lock while the body runs.

    The lock is ``flock(2)`` on ``<backup_dir>.lock`` (beside the backup folder, which
    BackupAndRestore deletes when a training ends), holding the owner's pid. The kernel releases
    it when the process dies, however it dies, so a killed training never leaves a stale lock.

    Yields:
        The lock file's path.

    Raises:
        TrainingLocked: another process holds the lock; the message names its pid.
    """
    backup_dir = Path(backup_dir)
    lock_path = backup_dir.parent / f"{backup_dir.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise TrainingLocked(
                f"{lock_path}: another training (pid {holder}) is running in this checkout; "
                "wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield lock_path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _signal_handler(handler: Any) -> Iterator[None]:
    """Install ``handler`` for SIGTERM and SIGINT while the body runs, then put the previous ones
    back. Python lets only the main thread install handlers; elsewhere (a Prefect task thread) the
    process keeps the default behaviour and a killed run is closed by the next training's check."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_on_signals(flag: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """Record SIGTERM/SIGINT in ``flag["signum"]`` instead of dying; a second one raises at once
    (main thread only, see :func:`_signal_handler`)."""

    def handler(signum: int, frame: Any) -> None:
        if flag["signum"] is not None:
            raise _interrupted(flag, signum)
        flag["signum"] = signum

    return _signal_handler(handler)


def raise_on_signals(epochs_done: int) -> contextlib.AbstractContextManager[None]:
    """Turn SIGTERM/SIGINT into :class:`TrainingInterrupted` (``backup_kept``) at once while the body
    runs: for a wait after :func:`train` returned whose training is kept on disk
    (:func:`keep_finished`), e.g. the MLflow epoch logger's last send. Main thread only (see
    :func:`_signal_handler`); elsewhere the process keeps the default behaviour."""

    def handler(signum: int, frame: Any) -> None:
        raise TrainingInterrupted(signum, epochs_done, backup_kept=True)

    return _signal_handler(handler)


def _stop_callback(flag: dict[str, Any], recorder: Any) -> Any:
    """A callback that raises :class:`TrainingInterrupted` at the first batch boundary (training
    or validation) after a signal, abandoning the epoch in progress, or at the end of the epoch
    after every other callback has logged it."""
    import keras

    class StopOnSignal(keras.callbacks.Callback):
        def _check(self) -> None:
            flag["epochs_done"] = len(recorder.epochs)
            if flag["signum"] is not None:
                raise TrainingInterrupted(int(flag["signum"]), len(recorder.epochs))

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self._check()

        def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self._check()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._check()

    return StopOnSignal()


#: Prefix of the names ``tf.custom_gradient`` registers its gradient functions under, in graph
#: mode (tensorflow/python/ops/custom_gradient.py: ``"CustomGradient-%s" % ops.uid()``).
_CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's gradient registry (name -> entry), or None when TensorFlow is not imported (other
    Keras backends) or keeps it elsewhere."""
    import sys

    ops = sys.modules.get("tensorflow.python.framework.ops")
    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


@contextlib.contextmanager
def release_traced_gradients() -> Iterator[None]:
    """Around a ``model.fit`` (TensorFlow backend): afterwards, drop the gradient functions that
    ``tf.custom_gradient`` registered while it traced, so that the traced training graphs can be
    freed with the model.

    Tracing ``fit``'s training and test steps goes through ``tf.custom_gradient`` (the default
    distribution strategy's ``ReplicaContext.all_reduce``), which in graph mode registers its
    gradient function in TensorFlow's global gradient registry under a new name,
    ``CustomGradient-<uid>``, and never removes it (tensorflow/python/ops/custom_gradient.py,
    ``_graph_mode_decorator``). The function's closure holds tensors of the traced ``FuncGraph``,
    so every ``fit`` of a new model leaves its training graphs alive for the life of the process
    (measured, Keras 3.15.1 on TensorFlow 2.21, a small CNN: about 17,000-20,000 objects and 46
    ``FuncGraph``s a fit, 16.9 MiB of resident memory a fit over 10 fits against 2.2 MiB with this;
    found by a reference search from ``sys.modules``); ``keras.backend.clear_session()`` does not
    free them. The symptom matches public reports (tensorflow/tensorflow#61791,
    keras-team/tf-keras#286: memory growing fit after fit, untouched by ``clear_session``). In a
    process that trains model after model (the tune flow's in-process worker, the corpus generator,
    a warm benchmark) they pile up, and each full garbage collection scans them again.

    The entries are looked up only while a graph that calls the function is being differentiated,
    which happens while the step is traced, inside ``fit``: a later ``fit`` of the same model runs the
    traced step, and a retrace registers new names. Only names added during the block are dropped,
    so the block must not overlap another thread's tracing (the project trains one model per
    process at a time). Does nothing on other backends.
    """
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        registry = _gradient_registry()
        if registry is not None:
            for name in [n for n in registry if n.startswith(_CUSTOM_GRADIENT_PREFIX) and n not in before]:
                registry.pop(name, None)


def _best_epoch(values: list[float]) -> int:
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        return 0
    return min(finite)[1] + 1


def train(
    cfg: TrainConfig,
    data: TrainData,
    *,
    seed: int,
    backup_dir: Path,
    callbacks: Sequence[Any] = (),
    verbose: int | str = 2,
    run_id: str | None = None,
    data_version: str | None = None,
) -> TrainResult:
    """Build the model named by ``cfg.model`` and fit it on ``data``.

    Seeds Python, numpy and the backend with ``keras.utils.set_random_seed(seed)``; caps the training
    set at ``cfg.max_train_examples`` by a stratified, seeded subsample; sets the Keras dtype policy to
    ``mixed_float16`` when mixed precision is on (``cfg.mixed_precision``: ``auto`` = on a GPU) and
    restores the previous policy afterwards. Callbacks, in order: an epoch recorder (adds
    ``learning_rate`` to ``logs``), TerminateOnNaN, EarlyStopping (``val_loss``,
    ``cfg.early_stopping_patience``, best weights restored), ReduceLROnPlateau (``val_loss``,
    ``cfg.reduce_lr_factor``, ``cfg.reduce_lr_patience``), BackupAndRestore(``backup_dir``, keeping the
    previous epoch's copy for a backup cut short by a kill), the writer of the recorder's state file
    (after the backup, so the state never claims an epoch whose weights are not on disk; it also keeps
    EarlyStopping's counters and, in ``best.weights.npz``, its best weights), then ``callbacks``. The
    fit runs inside :func:`release_traced_gradients`, so that on TensorFlow its traced training graphs
    are freed with the model (about 17 MiB a fit otherwise stays allocated in a process that trains
    model after model). If ``backup_dir`` holds the state of an interrupted run with the same
    ``run_id``, ``data_version`` and :func:`config_hash` (the whole train section, seed and data
    shape), the weights, optimizer state and epoch counter are restored, the returned history also
    holds the epochs run before the interruption, and EarlyStopping carries on with its best value,
    best weights and patience counter from before the interruption: the returned model and
    ``best_epoch`` are the best of all epochs, and a run it had stopped trains no further epoch (it
    starts afresh, with a ``RuntimeWarning``, when Keras resumes from another epoch than the state's
    last, after a kill cut the backup short; ReduceLROnPlateau's counters restart). A backup of any
    other run is discarded with a ``RuntimeWarning`` that says which of the three differs.
    ``backup_dir`` is deleted when fitting ends without an exception. SIGTERM or SIGINT (in the main
    thread) abandons the epoch in progress at the next batch and raises :class:`TrainingInterrupted`;
    every finished epoch is already in the backup. After a NaN loss,
    EarlyStopping still restores the best finite epoch's weights, if any.

    Args:
        cfg: the train section of ``params.yaml``.
        data: uint8 images and int labels (see :class:`TrainData`).
        seed: the run seed (``base.seed``).
        backup_dir: folder for BackupAndRestore's checkpoint; created when needed.
        callbacks: extra ``keras.callbacks.Callback`` objects (e.g. MLflow logging); they receive
            ``logs`` with ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``.
        verbose: passed to ``Model.fit`` (0 silent, 1 progress bar, 2 one line per epoch).
        run_id: the MLflow run this training logs to, recorded in the backup (None: untracked).
        data_version: the data's content hash, recorded in the backup; default
            :func:`data_fingerprint` of ``data``.

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: an unknown model/optimizer name (see :func:`pipelines.models.build_model`).
        TrainingInterrupted: SIGTERM/SIGINT arrived; ``backup_dir`` is kept for a resume.
        Any exception raised by a callback propagates, leaving ``backup_dir`` in place for a resume.
    """
    import keras

    from pipelines.models import build_model

    backup_dir = Path(backup_dir)
    enable_memory_growth()  # before anything touches the GPU (seeding included)
    keras.utils.set_random_seed(seed)
    x_train, y_train = data.x_train, data.y_train.astype(np.int64, copy=False)
    if cfg.max_train_examples is not None and cfg.max_train_examples < len(y_train):
        keep = stratified_subsample(y_train, cfg.max_train_examples, seed)
        x_train, y_train = x_train[keep], y_train[keep]
    y_val = data.y_val.astype(np.int64, copy=False)

    device = detect_device()
    mixed = resolve_mixed_precision(cfg.mixed_precision, device)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        model = build_model(cfg, data.input_shape, data.num_classes)
    finally:
        keras.config.set_dtype_policy(previous_policy)

    identity = {
        "run_id": run_id,
        "data_version": data_version or data_fingerprint(data),
        "config_hash": config_hash(cfg, seed, data.input_shape, data.num_classes),
    }
    prior, prior_early = _prior_history(backup_dir, identity)
    own = _make_callbacks(cfg, backup_dir, prior, identity, prior_early)
    flag: dict[str, Any] = {"signum": None, "epochs_done": len(prior), "backup_dir": backup_dir}
    stop = _stop_callback(flag, own["recorder"])
    start = time.perf_counter()
    with _stop_on_signals(flag), release_traced_gradients():
        model.fit(
            x_train,
            y_train,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            validation_data=(data.x_val, y_val),
            callbacks=[*own.values(), *callbacks, stop],
            shuffle=True,
            verbose=verbose,
        )
        if flag["signum"] is not None:
            # It came after the last epoch's check, during the end-of-training callbacks (e.g. the
            # MLflow logger waiting for its buffer): stop now, not after the stage's remaining work.
            flag["epochs_done"] = len(own["recorder"].epochs)
            raise _interrupted(flag, int(flag["signum"]))
    seconds = time.perf_counter() - start

    recorder = own["recorder"]
    epochs = recorder.epochs
    resumed_from = recorder.first_epoch if recorder.first_epoch is not None else len(epochs)
    history = _history(epochs)
    early = own["early"]
    # EarlyStopping put the weights of its best epoch back at the end of fit (Keras 3 does so even
    # when it did not stop the run), those of an epoch before the resume included.
    kept = early.best_weights is not None and early.best is not None and math.isfinite(early.best)
    best_epoch = sorted(epochs).index(early.best_epoch) + 1 if kept and early.best_epoch in epochs else 0
    return TrainResult(
        model=model,
        history=history,
        epochs_run=len(epochs),
        stopped_early=early.stopped_epoch > 0,
        best_epoch=best_epoch,
        train_seconds=seconds,
        device=device,
        mixed_precision=mixed,
        completed=not own["nan"].fired,
        resumed_from_epoch=int(resumed_from),
        backend=keras.backend.backend(),
    )


def save_history_csv(history: Mapping[str, Sequence[float]], path: Path) -> Path:
    """Write ``epoch,loss,accuracy,val_loss,val_accuracy,learning_rate`` rows atomically.

    The columns are Keras CSVLogger's plus ``learning_rate``; ``epoch`` is 1-based. A key missing
    from ``history`` gives an empty column; extra keys are ignored.

    Args:
        history: metric name -> one value per epoch (e.g. ``TrainResult.history``).
        path: the CSV file; parent folders are created.

    Returns:
        ``path``.

    Raises:
        ValueError: the metric lists have different lengths.
    """
    path = Path(path)
    lengths = {len(history[k]) for k in HISTORY_KEYS if k in history}
    if len(lengths) > 1:
        raise ValueError(f"history lists have different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for i in range(n):
        writer.writerow([i + 1, *(repr(float(history[k][i])) if k in history else "" for k in HISTORY_KEYS)])
    atomic_write_text(path, buf.getvalue())
    return path


def save_model(model: Any, path: Path) -> Path:
    """Save ``model`` in the Keras v3 ``.keras`` format atomically (temp file + ``os.replace``).

    Args:
        model: a ``keras.Model``.
        path: target file; must end in ``.keras``; parent folders are created.

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras, got {path}")
    return atomic_write_via(path, lambda tmp: model.save(tmp, overwrite=True))
