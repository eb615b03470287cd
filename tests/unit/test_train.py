"""Tests for pipelines.train on sklearn's bundled 8x8 digits (no download, a few seconds per fit)."""

from __future__ import annotations

import csv
import gc
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines.config import TrainConfig
from pipelines.train import (
    HISTORY_KEYS,
    TrainData,
    TrainResult,
    release_traced_gradients,
    resolve_mixed_precision,
    save_history_csv,
    save_model,
    stratified_subsample,
    train,
)

keras = pytest.importorskip("keras")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def digits() -> TrainData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]  # (1797, 8, 8, 1) uint8
    y = bunch.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va = idx[:1400], idx[1400:]
    return TrainData(x[tr], y[tr], x[va], y[va], num_classes=10)


def _cfg(**kw: Any) -> TrainConfig:
    base = dict(model="mlp", batch_size=64, epochs=2, learning_rate=3e-3, mixed_precision="off")
    base.update(kw)
    return TrainConfig(**base)


class Recorder(keras.callbacks.Callback):
    """Keeps what a caller's callback (MLflow logging, curve diagnosis) would see."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: list[dict[str, float]] = []
        self.epochs: list[int] = []
        self.steps: int | None = None
        self.backup_dir: Path | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.steps = self.params.get("steps")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs.append(epoch)
        self.logs.append(dict(logs or {}))


@pytest.fixture(scope="module")
def basic_run(digits: TrainData, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Recorder]:
    rec = Recorder()
    rec.backup_dir = tmp_path_factory.mktemp("basic") / "backup"
    result = train(
        _cfg(model="small_cnn", epochs=2),
        digits,
        seed=1,
        backup_dir=rec.backup_dir,
        callbacks=[rec],
        verbose=0,
    )
    return result, rec


def test_history_has_keras_keys_one_value_per_epoch(basic_run: tuple[TrainResult, Recorder]) -> None:
    result, _ = basic_run
    assert set(result.history) == set(HISTORY_KEYS)
    assert all(len(v) == 2 for v in result.history.values())
    assert result.epochs_run == 2
    assert all(math.isfinite(v) for values in result.history.values() for v in values)
    assert result.completed and not result.stopped_early
    assert 1 <= result.best_epoch <= 2
    assert result.device == "cpu" and result.mixed_precision is False
    assert result.train_seconds > 0
    assert result.resumed_from_epoch == 0


def test_caller_callbacks_see_every_metric_including_learning_rate(
    basic_run: tuple[TrainResult, Recorder],
) -> None:
    result, rec = basic_run
    assert rec.epochs == [0, 1]
    for logs in rec.logs:
        assert set(HISTORY_KEYS) <= set(logs)
    assert [logs["learning_rate"] for logs in rec.logs] == pytest.approx(result.history["learning_rate"])
    assert result.history["learning_rate"][0] == pytest.approx(3e-3)


def test_backup_dir_removed_after_a_finished_run(basic_run: tuple[TrainResult, Recorder]) -> None:
    assert basic_run[1].backup_dir is not None and basic_run[1].backup_dir.parent.is_dir()
    assert not basic_run[1].backup_dir.exists()


@pytest.fixture(scope="module")
def plateau_run(digits: TrainData, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    # Validation labels shuffled: as the model learns the training digits its validation loss can
    # only rise, so both plateau callbacks must fire.
    rng = np.random.default_rng(3)
    noisy = TrainData(digits.x_train, digits.y_train, digits.x_val, rng.permutation(digits.y_val), 10)
    cfg = _cfg(epochs=12, learning_rate=1e-2, early_stopping_patience=3, reduce_lr_patience=1)
    return train(cfg, noisy, seed=0, backup_dir=tmp_path_factory.mktemp("plateau") / "b", verbose=0)


def test_early_stopping_stops_and_restores_best_weights(plateau_run: TrainResult, digits: TrainData) -> None:
    r = plateau_run
    assert r.stopped_early
    assert r.epochs_run < 12
    assert r.best_epoch == int(np.argmin(r.history["val_loss"])) + 1
    assert r.epochs_run >= r.best_epoch + 3  # patience 3
    rng = np.random.default_rng(3)
    y_val = rng.permutation(digits.y_val)
    loss = r.model.evaluate(digits.x_val, y_val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(r.history["val_loss"][r.best_epoch - 1], rel=1e-3)


def test_reduce_lr_on_plateau_lowers_logged_learning_rate(plateau_run: TrainResult) -> None:
    lrs = plateau_run.history["learning_rate"]
    assert lrs[0] == pytest.approx(1e-2)
    assert all(b <= a + 1e-12 for a, b in zip(lrs[:-1], lrs[1:], strict=True))
    assert min(lrs) == pytest.approx(1e-2 * 0.5 ** (len(set(lrs)) - 1))
    assert min(lrs) < 1e-2


class _InterruptAfter(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt(f"simulated interruption after epoch {self.epoch}")


def test_interrupted_run_resumes_from_backup_with_complete_history(tmp_path: Path, digits: TrainData) -> None:
    cfg = _cfg(epochs=4, early_stopping_patience=10)
    backup = tmp_path / "backup"
    first = Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(cfg, digits, seed=0, backup_dir=backup, callbacks=[first, _InterruptAfter(2)], verbose=0)
    assert backup.is_dir() and any(backup.iterdir())
    assert first.epochs == [0, 1]

    second = Recorder()
    result = train(cfg, digits, seed=0, backup_dir=backup, callbacks=[second], verbose=0)
    assert second.epochs == [2, 3]  # only the missing epochs ran
    assert result.resumed_from_epoch == 2
    assert result.epochs_run == 4
    assert all(len(v) == 4 for v in result.history.values())
    assert result.history["loss"][:2] == pytest.approx([logs["loss"] for logs in first.logs])
    assert result.history["val_accuracy"][2:] == pytest.approx([logs["val_accuracy"] for logs in second.logs])
    # The restored weights carried on training: resumed epochs beat the first epoch.
    assert result.history["loss"][2] < result.history["loss"][0]
    assert not backup.exists()


def _noisy(digits: TrainData) -> TrainData:
    """Validation labels shuffled: val_loss is lowest in the first epochs, then only rises."""
    rng = np.random.default_rng(3)
    return TrainData(digits.x_train, digits.y_train, digits.x_val, rng.permutation(digits.y_val), 10)


@pytest.mark.parametrize("interrupted_after", [3, 6], ids=["mid-run", "after-the-last-epoch"])
def test_a_resumed_run_keeps_the_best_weights_of_the_epochs_before_the_resume(
    tmp_path: Path, digits: TrainData, interrupted_after: int
) -> None:
    # Keras' EarlyStopping starts afresh at every fit: resumed, it knew only the epochs after the
    # resume point (none after the last epoch), so the model kept was not the best_epoch reported.
    noisy = _noisy(digits)
    cfg = _cfg(epochs=6, learning_rate=1e-2, early_stopping_patience=10, reduce_lr_patience=10)
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(
            cfg, noisy, seed=0, backup_dir=backup, callbacks=[_InterruptAfter(interrupted_after)], verbose=0
        )
    assert (backup / "best.weights.npz").is_file()

    rec = Recorder()
    result = train(cfg, noisy, seed=0, backup_dir=backup, callbacks=[rec], verbose=0)
    assert rec.epochs == list(range(interrupted_after, 6)) and result.epochs_run == 6
    val_loss = result.history["val_loss"]
    assert result.best_epoch == int(np.argmin(val_loss)) + 1
    assert result.best_epoch <= interrupted_after  # the best epoch ran before the resume
    loss = result.model.evaluate(noisy.x_val, noisy.y_val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(val_loss[result.best_epoch - 1], rel=1e-3)
    assert not backup.exists()


class _InterruptWhenStopped(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.model.stop_training:
            raise KeyboardInterrupt(
                f"simulated interruption after EarlyStopping stopped at epoch {epoch + 1}"
            )


def test_a_run_early_stopping_had_stopped_trains_no_further_epoch_when_resumed(
    tmp_path: Path, digits: TrainData
) -> None:
    noisy = _noisy(digits)
    cfg = _cfg(epochs=12, learning_rate=1e-2, early_stopping_patience=2, reduce_lr_patience=10)
    backup = tmp_path / "backup"
    first = Recorder()
    with pytest.raises(KeyboardInterrupt, match="EarlyStopping stopped"):
        train(cfg, noisy, seed=0, backup_dir=backup, callbacks=[first, _InterruptWhenStopped()], verbose=0)
    assert len(first.epochs) < 12

    rec = Recorder()
    result = train(cfg, noisy, seed=0, backup_dir=backup, callbacks=[rec], verbose=0)
    assert rec.epochs == [] and result.epochs_run == len(first.epochs)
    assert result.stopped_early
    assert result.best_epoch == int(np.argmin(result.history["val_loss"])) + 1
    loss = result.model.evaluate(noisy.x_val, noisy.y_val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(result.history["val_loss"][result.best_epoch - 1], rel=1e-3)


def test_a_backup_cut_short_by_a_kill_falls_back_to_the_previous_epoch(
    tmp_path: Path, digits: TrainData
) -> None:
    # kill -9 while Keras rewrites latest.weights.h5 leaves a truncated file: resume from the
    # previous epoch's copy (one epoch re-run) and, with no copy, start over with a warning.
    cfg = _cfg(epochs=3, early_stopping_patience=10)
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, digits, seed=0, backup_dir=backup, callbacks=[_InterruptAfter(2)], verbose=0)
    assert (backup / "latest.weights.h5.bkp").is_file()
    (backup / "latest.weights.h5").write_bytes((backup / "latest.weights.h5").read_bytes()[:96])
    rec = Recorder()
    with pytest.warns(RuntimeWarning, match="EarlyStopping state .* not restored"):
        result = train(cfg, digits, seed=0, backup_dir=backup, callbacks=[rec], verbose=0)
    assert rec.epochs == [1, 2] and result.resumed_from_epoch == 1 and result.epochs_run == 3

    with pytest.raises(KeyboardInterrupt):
        train(cfg, digits, seed=0, backup_dir=backup, callbacks=[_InterruptAfter(1)], verbose=0)
    assert not (backup / "latest.weights.h5.bkp").exists()
    (backup / "latest.weights.h5").write_bytes(b"")
    rec = Recorder()
    with pytest.warns(RuntimeWarning, match="unreadable"):
        result = train(cfg, digits, seed=0, backup_dir=backup, callbacks=[rec], verbose=0)
    assert rec.epochs == [0, 1, 2] and result.epochs_run == 3


def test_backup_of_a_different_configuration_is_discarded(tmp_path: Path, digits: TrainData) -> None:
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(epochs=3), digits, seed=0, backup_dir=backup, callbacks=[_InterruptAfter(1)], verbose=0)
    assert (backup / "latest.weights.h5").is_file()
    rec = Recorder()
    with pytest.warns(RuntimeWarning, match="training config changed"):
        result = train(
            _cfg(model="small_cnn", epochs=1), digits, seed=0, backup_dir=backup, callbacks=[rec], verbose=0
        )
    assert rec.epochs == [0] and result.resumed_from_epoch == 0 and result.epochs_run == 1


class _PoisonWeights(keras.callbacks.Callback):
    """Sets a kernel to NaN before the 3rd batch, as a diverging run would."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if batch == 2:
            var = self.model.get_layer("probs").kernel
            var.assign(np.full(var.shape, np.nan, dtype="float32"))


def test_terminate_on_nan_marks_run_incomplete(tmp_path: Path, digits: TrainData) -> None:
    result = train(
        _cfg(epochs=3), digits, seed=0, backup_dir=tmp_path / "b", callbacks=[_PoisonWeights()], verbose=0
    )
    assert result.completed is False
    assert result.epochs_run == 1
    assert math.isnan(result.history["loss"][0])


def test_max_train_examples_caps_training_set(tmp_path: Path, digits: TrainData) -> None:
    rec = Recorder()
    train(
        _cfg(epochs=1, batch_size=32, max_train_examples=200),
        digits,
        seed=0,
        backup_dir=tmp_path / "b",
        callbacks=[rec],
        verbose=0,
    )
    assert rec.steps == math.ceil(200 / 32)


def test_stratified_subsample_keeps_proportions_and_is_seeded() -> None:
    y = np.repeat(np.arange(4), [100, 200, 300, 400])
    idx = stratified_subsample(y, 100, seed=5)
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [10, 20, 30, 40])
    np.testing.assert_array_equal(idx, stratified_subsample(y, 100, seed=5))
    assert not np.array_equal(idx, stratified_subsample(y, 100, seed=6))
    odd = stratified_subsample(y, 7, seed=0)
    assert len(odd) == 7
    np.testing.assert_array_equal(stratified_subsample(y, 5000, seed=0), np.arange(1000))
    with pytest.raises(ValueError):
        stratified_subsample(y, 0, seed=0)


def test_resolve_mixed_precision() -> None:
    assert resolve_mixed_precision("auto", "cpu") is False
    assert resolve_mixed_precision("auto", "gpu:NVIDIA H100") is True
    assert resolve_mixed_precision("on", "cpu") is True
    assert resolve_mixed_precision("off", "gpu:x") is False
    with pytest.raises(ValueError):
        resolve_mixed_precision("maybe", "cpu")


def test_train_data_rejects_malformed_inputs() -> None:
    x = np.zeros((4, 8, 8, 1), np.uint8)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="x_train"):
        TrainData(x[..., 0], y, x, y, 2)
    with pytest.raises(ValueError, match="y_val"):
        TrainData(x, y, x, y[:3], 2)
    with pytest.raises(ValueError, match="outside"):
        TrainData(x, y + 1, x, y, 2)
    with pytest.raises(ValueError, match="uint8"):
        TrainData(x.astype(np.float32) / 255, y, x, y, 2)
    with pytest.raises(ValueError, match="differ"):
        TrainData(x, y, np.zeros((4, 9, 9, 1), np.uint8), y, 2)


def test_save_history_csv_writes_keras_columns(tmp_path: Path) -> None:
    history = {k: [0.5, 0.25] for k in HISTORY_KEYS}
    path = save_history_csv(history, tmp_path / "sub" / "history.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", *HISTORY_KEYS]
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[1]["val_accuracy"]) == 0.25
    assert sorted(p.name for p in path.parent.iterdir()) == ["history.csv"]
    with pytest.raises(ValueError):
        save_history_csv({"loss": [1.0], "accuracy": [1.0, 2.0]}, tmp_path / "bad.csv")


def test_save_model_round_trip(
    tmp_path: Path, basic_run: tuple[TrainResult, Recorder], digits: TrainData
) -> None:
    model = basic_run[0].model
    path = save_model(model, tmp_path / "models" / "model.keras")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        loaded.predict(digits.x_val, verbose=0), model.predict(digits.x_val, verbose=0), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError):
        save_model(model, tmp_path / "model.h5")


def test_importing_train_pulls_in_no_tracking_orchestration_or_keras() -> None:
    code = (
        "import sys, pipelines.train, pipelines.models, pipelines.evaluate\n"
        "banned = ('mlflow', 'prefect', 'great_expectations', 'keras', 'tensorflow')\n"
        "bad = [m for m in banned if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_forced_mixed_precision_trains_and_restores_global_policy(tmp_path: Path, digits: TrainData) -> None:
    before = keras.config.dtype_policy().name
    result = train(_cfg(epochs=1, mixed_precision="on"), digits, seed=0, backup_dir=tmp_path / "b", verbose=0)
    assert result.mixed_precision is True
    assert result.model.get_layer("dense1").compute_dtype == "float16"
    assert result.model.get_layer("probs").compute_dtype == "float32"
    assert np.isfinite(result.history["loss"][0])
    assert keras.config.dtype_policy().name == before


class _SignalSelf(keras.callbacks.Callback):
    """Sends this process ``signum`` during the 3rd batch of the given epoch, as a scheduler would."""

    def __init__(self, signum: int, epoch: int) -> None:
        super().__init__()
        self.signum, self.epoch, self.current = signum, epoch, -1
        self.batches_after: int = 0
        self.sent = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.current = epoch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.sent:
            self.batches_after += 1
        if self.current == self.epoch and batch == 2 and not self.sent:
            import os

            self.sent = True
            os.kill(os.getpid(), self.signum)


def test_sigterm_abandons_the_epoch_keeps_the_backup_and_resumes(tmp_path: Path, digits: TrainData) -> None:
    import signal

    from pipelines.train import TrainingInterrupted, read_backup_state

    backup = tmp_path / "backup"
    before = signal.getsignal(signal.SIGTERM)
    sender = _SignalSelf(signal.SIGTERM, epoch=1)
    with pytest.raises(TrainingInterrupted, match="SIGTERM after 1 finished epoch") as info:
        train(_cfg(epochs=3), digits, seed=0, backup_dir=backup, callbacks=[sender], verbose=0, run_id="r1")
    assert info.value.signum == signal.SIGTERM and info.value.epochs_done == 1
    assert sender.batches_after == 0  # the batch in progress finished; no other batch started
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    state = read_backup_state(backup)
    assert state is not None and state.run_id == "r1" and sorted(state.epochs) == [0]

    rec = Recorder()
    result = train(_cfg(epochs=3), digits, seed=0, backup_dir=backup, callbacks=[rec], verbose=0, run_id="r1")
    assert rec.epochs == [1, 2] and result.epochs_run == 3 and result.resumed_from_epoch == 1


def test_resume_mismatch_names_each_difference() -> None:
    from pipelines.train import BackupState, resume_mismatch

    state = BackupState(run_id="a", data_version="d" * 40, config_hash="c" * 64, epochs={})
    assert resume_mismatch(state, run_id="a", data_version="d" * 40, config_hash="c" * 64) is None
    reason = resume_mismatch(state, run_id="b", data_version="e" * 40, config_hash="f" * 64)
    assert reason is not None
    assert "belongs to MLflow run a, not b" in reason
    assert "the data changed (data version dddddddddddd -> eeeeeeeeeeee)" in reason
    assert "the training config changed" in reason


def test_enable_memory_growth_sets_every_gpu_and_survives_late_calls(monkeypatch) -> None:
    import tensorflow as tf

    from pipelines.train import enable_memory_growth

    class FakeGPU:
        def __init__(self, name: str) -> None:
            self.name = name

    set_calls: list[tuple[str, bool]] = []

    def set_memory_growth(gpu: FakeGPU, enable: bool) -> None:
        if gpu.name.endswith(":1"):
            raise RuntimeError("Physical devices cannot be modified after being initialized")
        set_calls.append((gpu.name, enable))

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [FakeGPU("GPU:0"), FakeGPU("GPU:1")])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", set_memory_growth)
    with pytest.warns(RuntimeWarning, match="memory growth not set on GPU:1"):
        assert enable_memory_growth() == ["GPU:0"]
    assert set_calls == [("GPU:0", True)]


@pytest.mark.gpu
def test_enable_memory_growth_names_the_real_gpus() -> None:
    import tensorflow as tf

    from pipelines.train import enable_memory_growth

    gpus = [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
    if not gpus:  # on a CPU-only machine both sides are [] (the faked-GPU test above covers the logic)
        pytest.skip("no GPU visible to TensorFlow")
    assert enable_memory_growth() == gpus


def _traced_graphs() -> int:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(isinstance(o, FuncGraph) for o in gc.get_objects())


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's gradient registry")
def test_a_finished_training_leaves_no_traced_graph_alive(tmp_path: Path, digits: TrainData) -> None:
    # Without release_traced_gradients each fit of a new model leaves its traced training graphs
    # alive through TensorFlow's gradient registry (about 46 FuncGraphs a fit here).
    def once(i: int) -> None:
        cfg = _cfg(model="small_cnn", epochs=1)
        result = train(cfg, digits, seed=i, backup_dir=tmp_path / f"b{i}", verbose=0)
        assert result.completed

    once(0)  # anything a first fit in the process builds once
    before = _traced_graphs()
    once(1)
    once(2)
    assert _traced_graphs() == before


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's gradient registry")
def test_a_model_trains_on_and_retraces_the_same_after_its_gradients_are_released(digits: TrainData) -> None:
    import contextlib
    import functools

    from pipelines.models import build_model

    # Nothing random between the two sequences: the same starting weights, no dropout, no
    # shuffling (a seed alone left the first losses 0.2 apart once, after the whole suite had run).
    cfg = _cfg(model="small_cnn", dropout=0.0)
    keras.utils.set_random_seed(0)
    start = build_model(cfg, digits.input_shape, digits.num_classes).get_weights()

    def sequence(release: bool) -> list[float]:
        model = build_model(cfg, digits.input_shape, digits.num_classes)
        model.set_weights(start)
        fit = functools.partial(model.fit, shuffle=False, verbose=0)
        with release_traced_gradients() if release else contextlib.nullcontext():
            first = fit(digits.x_train, digits.y_train, batch_size=64, epochs=1)
        # The traced step runs again; a new batch size retraces it (new registrations).
        again = fit(digits.x_train, digits.y_train, batch_size=64, epochs=2)
        retraced = fit(digits.x_train[:130], digits.y_train[:130], batch_size=130, epochs=1)
        scores = model.evaluate(digits.x_val, digits.y_val, verbose=0)
        return [*first.history["loss"], *again.history["loss"], *retraced.history["loss"], *scores]

    released, kept = sequence(True), sequence(False)
    assert all(math.isfinite(v) for v in released)
    assert released[2] < released[0]  # it went on learning
    assert released == pytest.approx(kept, rel=1e-4)


class _SignalAtTrainEnd(keras.callbacks.Callback):
    """Sends this process ``signum`` from ``on_train_end``: after every epoch's check, while the
    end-of-training callbacks run (BackupAndRestore's, before it, has removed the backup)."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum

    def on_train_end(self, logs: dict | None = None) -> None:
        import os

        os.kill(os.getpid(), self.signum)


def test_a_signal_during_the_end_of_training_is_not_lost_and_says_no_backup(
    tmp_path: Path, digits: TrainData
) -> None:
    # The signal was recorded, the handler put back, and train() returned as if nothing happened:
    # the stage went on for minutes (a model log, an MLflow logger waiting on a slow server).
    import signal

    from pipelines.train import TrainingInterrupted

    backup = tmp_path / "backup"
    with pytest.raises(TrainingInterrupted, match="after 2 finished epoch.*a rerun trains again") as info:
        train(
            _cfg(epochs=2), digits, seed=0, backup_dir=backup, callbacks=[_SignalAtTrainEnd(signal.SIGTERM)]
        )
    assert info.value.epochs_done == 2 and not info.value.backup_kept
    assert not backup.exists() or not any(backup.iterdir())


def test_raise_on_signals_ends_a_wait_at_once_with_the_training_kept() -> None:
    # The train stage waits for the MLflow epoch logger's last epochs after fit, outside train()'s
    # signal handling: a SIGTERM there ended the process (or, under Prefect, failed the run).
    import os
    import signal
    import time

    from pipelines.train import TrainingInterrupted, raise_on_signals

    before = signal.getsignal(signal.SIGTERM)
    start = time.monotonic()
    with pytest.raises(TrainingInterrupted, match="SIGTERM after 4 finished epoch.*backup kept") as info:
        with raise_on_signals(4):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # a wait such as the logger's; the signal ends it
    assert time.monotonic() - start < 10
    assert info.value.backup_kept and info.value.epochs_done == 4
    assert signal.getsignal(signal.SIGTERM) is before
