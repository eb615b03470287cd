"""Run the pipeline's own training and tuning in this process with TensorFlow made unimportable.

Used by ``test_backend_jax.py`` as
``python -m tests.unit.jax_probe PARAMS STORAGE_URL OUT_JSON AUGMENT`` (``AUGMENT``: ``0`` or ``1``)
with ``KERAS_BACKEND=jax`` (Keras reads it once, at import). ``import tensorflow`` raises
``ModuleNotFoundError`` here, so Keras' optional uses of TensorFlow (``tf.random.set_seed`` in
``keras.utils.set_random_seed``, ``tf.TensorShape`` checks when saving) are skipped the way they are
on a machine without TensorFlow, and any ``tensorflow`` import in the training path fails the run.
The outcome is written as JSON to ``OUT_JSON``; the test asserts on it.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
import tempfile
import time
from pathlib import Path


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the backend test)", name=name)
        return None


def digits(n_train: int = 400, n_val: int = 150, n_test: int = 150):
    """sklearn's bundled 8x8 digits (no download): ``(TrainData, (x_test, y_test))``, uint8 images."""
    import numpy as np
    from sklearn.datasets import load_digits

    from pipelines.train import TrainData

    bunch = load_digits()
    x = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]  # (1797, 8, 8, 1) uint8
    y = bunch.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va, te = np.split(idx[: n_train + n_val + n_test], [n_train, n_train + n_val])
    return TrainData(x[tr], y[tr], x[va], y[va], num_classes=10), (x[te], y[te])


def main(params_path: str, storage: str, out_path: str, augment: str) -> None:
    sys.meta_path.insert(0, _NoTensorFlow())
    start = time.perf_counter()
    import keras

    from pipelines.config import load_params
    from pipelines.train import train
    from pipelines.tune import tune

    params = load_params(Path(params_path))
    data, test = digits()
    out: dict = {"backend": keras.backend.backend(), "import_seconds": time.perf_counter() - start}

    # One epoch of the training stage's own function (with the augmentation layers when asked).
    cfg = params.train.model_copy(update={"epochs": 1, "augment": augment == "1"})
    with tempfile.TemporaryDirectory() as backup:
        result = train(cfg, data, seed=params.base.seed, backup_dir=Path(backup) / "backup", verbose=0)
    out["train"] = {
        "backend": result.backend,
        "epochs_run": result.epochs_run,
        "history": result.history,
        "model_backend_arrays": type(result.model.trainable_variables[0].value).__module__,
    }
    del result
    # Keras falls back to eager execution (jit_compile=False) for a model with a layer marked
    # supports_jit=False, as its augmentation layers are for TensorFlow's sake; eager JAX on a GPU
    # is two orders of magnitude slower, so the augmented model must compile with XLA too.
    from pipelines.models import build_model

    out["jit_compile"] = {
        str(aug): bool(build_model(cfg.model_copy(update={"augment": aug}), (8, 8, 1), 10).jit_compile)
        for aug in (False, True)
    }
    out["train_seconds"] = time.perf_counter() - start

    # A tuning of n_trials through the tuning stage's own entry point, on an SQLite Optuna store.
    tuned = tune(params, data, test=test, storage=storage, trial_dir=Path(out_path).parent / "trials")
    out["tune"] = {
        "trials": [
            {"number": r.number, "state": r.state, "value": r.value, "epochs_run": r.epochs_run}
            for r in tuned.trials
        ],
        "best_val_accuracy": tuned.best_val_accuracy,
        "test_accuracy": tuned.test_accuracy,
        "best_model_path": str(tuned.best_model_path),
    }
    out["seconds"] = time.perf_counter() - start
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:5])
