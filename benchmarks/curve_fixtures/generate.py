"""Generate labelled fixtures of real Keras training curves for the curve-diagnosis benchmark.

Every run is a real ``model.fit`` on small offline data (scikit-learn's bundled digits, a
Fashion-MNIST subset read from ``/usr/share/datasets/fashion-mnist``, or numpy-made spirals),
logged with :class:`keras.callbacks.CSVLogger` (epoch 0-based, as CSVLogger writes it; columns
sorted: ``epoch,accuracy,learning_rate,loss,val_accuracy,val_loss``). The expected finding codes
in ``labels.json`` were set by looking at the curves each scenario produces (see README.md), not
derived from the configuration alone.

Usage (from the repository root; about 10 CPU-minutes on one thread)::

    python -m benchmarks.curve_fixtures.generate --out tests/fixtures/curves --seeds 3

Seeds change weight initialisation and batch shuffling only: data subsets, train/validation
splits and label shuffles use the fixed ``DATA_SEED``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_SEED = 1234
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Data: pure loaders, cached per process because several scenarios share a dataset.
# ---------------------------------------------------------------------------------------------


@functools.cache
def digits(n_train: int = 1197, image: bool = False) -> Arrays:
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1], a fixed 600-example validation split.

    Args:
        n_train: training examples taken (at most 1197) from the non-validation part.
        image: return ``(N, 8, 8, 1)`` instead of ``(N, 64)``.

    Returns:
        ``(x_train, y_train, x_val, y_val)``; x float32 in [0, 1], y int64 in 0..9.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    x = (x[order] / 16.0).astype("float32")
    y = y[order].astype("int64")
    if image:
        x = x.reshape(-1, 8, 8, 1)
    x_val, y_val = x[:600], y[:600]
    return x[600 : 600 + n_train], y[600 : 600 + n_train], x_val, y_val


@functools.cache
def digits_shuffled_labels() -> Arrays:
    """Digits with every label (train and validation) replaced by a random permutation of itself.

    Returns:
        As :func:`digits`; the labels carry no information about the pixels.
    """
    x_tr, y_tr, x_va, y_va = digits()
    rng = np.random.default_rng(DATA_SEED + 1)
    return x_tr, rng.permutation(y_tr), x_va, rng.permutation(y_va)


@functools.cache
def digits_bad_scaling() -> Arrays:
    """Digits with half of the 64 pixels multiplied by 1e3..1e5 and no normalisation.

    Returns:
        As :func:`digits` with shape ``(N, 64)``; the scaled columns span [0, 1e5].
    """
    x_tr, y_tr, x_va, y_va = digits()
    rng = np.random.default_rng(DATA_SEED + 2)
    scale = np.ones(64, dtype="float32")
    cols = rng.choice(64, size=32, replace=False)
    scale[cols] = 10.0 ** rng.uniform(3.0, 5.0, size=32)
    return x_tr * scale, y_tr, x_va * scale, y_va


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


@functools.cache
def fmnist(n_train: int = 3000, n_val: int = 1000, flat: bool = False) -> Arrays:
    """A fixed random subset of the Fashion-MNIST training file, pixels scaled to [0, 1].

    Args:
        n_train: training examples.
        n_val: validation examples (disjoint from the training ones).
        flat: return ``(N, 784)`` instead of ``(N, 28, 28, 1)``.

    Returns:
        ``(x_train, y_train, x_val, y_val)``; x float32 in [0, 1], y int64 in 0..9.

    Raises:
        FileNotFoundError: when ``/usr/share/datasets/fashion-mnist`` lacks the training files.
    """
    images = _read_idx(FMNIST_DIR / "train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx(FMNIST_DIR / "train-labels-idx1-ubyte.gz", 8).astype("int64")
    idx = np.random.default_rng(DATA_SEED).permutation(len(labels))[: n_train + n_val]
    x = (images[idx] / 255.0).astype("float32")
    if flat:
        x = x.reshape(len(x), -1)
    y = labels[idx]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@functools.cache
def spirals(n_per_class: int = 400, classes: int = 3, noise: float = 0.15) -> Arrays:
    """Interleaved 2-D spirals, one arm per class: no linear model can separate them.

    Returns:
        ``(x_train, y_train, x_val, y_val)`` with x ``(N, 2)`` float32 in about [-1, 1]; 75 % train.
    """
    rng = np.random.default_rng(DATA_SEED)
    xs, ys = [], []
    for k in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(0, 3.5 * np.pi, n_per_class) + 2 * np.pi * k / classes
        theta = theta + rng.normal(0, noise, n_per_class)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n_per_class, k))
    x = np.concatenate(xs).astype("float32")
    y = np.concatenate(ys).astype("int64")
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    n_tr = int(0.75 * len(x))
    return x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:]


DATASETS: dict[str, Callable[[], Arrays]] = {
    "digits": lambda: digits(),
    "digits-image": lambda: digits(image=True),
    "digits-200": lambda: digits(n_train=200),
    "digits-shuffled-labels": digits_shuffled_labels,
    "digits-bad-scaling": digits_bad_scaling,
    "fmnist-3000": lambda: fmnist(),
    "fmnist-3000-flat": lambda: fmnist(flat=True),
    "fmnist-300-flat": lambda: fmnist(n_train=300, flat=True),
    "spirals": lambda: spirals(),
}


# ---------------------------------------------------------------------------------------------
# Models and optimisers.
# ---------------------------------------------------------------------------------------------


def mlp(
    input_shape: tuple[int, ...],
    classes: int,
    hidden: Sequence[int],
    dropout: float = 0.0,
    l2: float = 0.0,
    activation: str = "relu",
) -> Any:
    """Flatten -> Dense hidden layers (optional dropout after each, optional L2 on kernels) -> softmax."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 else None
    layers: list[Any] = [keras.Input(input_shape), keras.layers.Flatten()]
    for width in hidden:
        layers.append(keras.layers.Dense(width, activation=activation, kernel_regularizer=reg))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    return keras.Sequential(layers)


def linear(input_shape: tuple[int, ...], classes: int) -> Any:
    """Multinomial logistic regression: a single softmax Dense layer."""
    return mlp(input_shape, classes, hidden=())


def bottleneck(input_shape: tuple[int, ...], classes: int, width: int = 2) -> Any:
    """Dense(64, relu) -> Dense(width, linear) -> softmax: the narrow layer caps accuracy."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(width),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def cnn(input_shape: tuple[int, ...], classes: int, pool: bool = True, dropout: float = 0.0) -> Any:
    """Two 3x3 ReLU conv layers (16, 32 filters) -> Dense(64) -> softmax.

    Args:
        pool: 2x2 max-pool after each conv (off for 8x8 digits, which are too small for two).
        dropout: dropout rate before the dense head.
    """
    import keras

    layers: list[Any] = [keras.Input(input_shape)]
    for filters in (16, 32):
        layers.append(keras.layers.Conv2D(filters, 3, activation="relu", padding="same"))
        if pool:
            layers.append(keras.layers.MaxPooling2D())
    if not pool:
        layers.append(keras.layers.MaxPooling2D())
    layers.append(keras.layers.Flatten())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(classes, activation="softmax")]
    return keras.Sequential(layers)


def make_optimizer(name: str, learning_rate: float, epochs: int, steps_per_epoch: int) -> Any:
    """Build a Keras optimiser; ``"adam-cosine"`` decays Adam's rate to 0 over the whole budget."""
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "sgd-momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adam-cosine":
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch)
        return keras.optimizers.Adam(schedule)
    raise ValueError(f"unknown optimizer {name!r}")


MODELS: dict[str, Callable[..., Any]] = {
    "mlp": mlp,
    "linear": linear,
    "bottleneck": bottleneck,
    "cnn": cnn,
}


# ---------------------------------------------------------------------------------------------
# Scenarios.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One training configuration; each seed of it becomes one CSV fixture.

    Attributes:
        scenario: the cause being simulated (``healthy``, ``lr_too_high``, ...).
        name: unique variant id, used in file names (``<name>-s<seed>.csv``).
        dataset: key of :data:`DATASETS`.
        model: key of :data:`MODELS`; ``model_kwargs`` are passed to it.
        optimizer: ``sgd``, ``sgd-momentum``, ``adam`` or ``adam-cosine``.
        learning_rate: initial learning rate.
        epochs: the epoch budget (no early stopping, so every run uses all of it).
        batch_size: examples per step.
        expected: finding codes the curves show, set after looking at them.
        notes: what the curves look like, plain words.
        group: cross-run group name for variants whose runs differ only in seed.
        seeds: seeds to run; None means ``range(--seeds)``.
        expected_by_seed: per-seed override of ``expected`` where one seed behaves differently.
    """

    scenario: str
    name: str
    dataset: str
    model: str
    optimizer: str
    learning_rate: float
    epochs: int
    expected: tuple[str, ...]
    notes: str
    batch_size: int = 32
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    seeds: tuple[int, ...] | None = None
    expected_by_seed: dict[int, tuple[str, ...]] = field(default_factory=dict)


VARIANTS: tuple[Variant, ...] = (
    # --- healthy: sound models, Adam 1e-3, converging within the budget -------------------------
    Variant(
        "healthy", "healthy-digits-mlp", "digits", "mlp", "adam", 1e-3, 30, ("healthy",),
        "MLP 64 on digits; val_accuracy climbs to ~0.97 and levels off at its ceiling.",
        model_kwargs={"hidden": (64,)}, group="healthy-digits-mlp", seeds=(0, 1, 2, 3, 4),
    ),
    Variant(
        "healthy", "healthy-digits-cnn", "digits-image", "cnn", "adam", 1e-3, 25, ("healthy",),
        "Small CNN on 8x8 digits; converges to ~0.98 val_accuracy.",
        model_kwargs={"pool": False},
    ),
    Variant(
        "healthy", "healthy-fmnist-cnn", "fmnist-3000", "cnn", "adam", 1e-3, 20, ("healthy",),
        "Small CNN with dropout on 3,000 Fashion-MNIST images; val_accuracy rises to ~0.85.",
        model_kwargs={"dropout": 0.3},
    ),
    Variant(
        "healthy", "healthy-fmnist-mlp-cosine", "fmnist-3000-flat", "mlp", "adam-cosine", 1e-3, 25,
        ("healthy",),
        "MLP 128 with dropout, Adam 1e-3 cosine-decayed to 0 (learning_rate column varies).",
        model_kwargs={"hidden": (128,), "dropout": 0.2},
    ),
    # --- lr_too_high ------------------------------------------------------------------------------
    Variant(
        "lr_too_high", "lr-high-sgd-1.0", "digits", "mlp", "sgd", 1.0, 30, ("oscillation",),
        "SGD lr 1.0 on the healthy digits MLP.",
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        "lr_too_high", "lr-high-adam-0.3", "digits", "mlp", "adam", 0.3, 30, ("oscillation",),
        "Adam lr 0.3 on the healthy digits MLP.",
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        "lr_too_high", "lr-high-adam-1.0", "digits", "mlp", "adam", 1.0, 30, ("divergence",),
        "Adam lr 1.0 on the healthy digits MLP.",
        model_kwargs={"hidden": (64,)},
    ),
    # --- lr_too_low ---------------------------------------------------------------------------------
    Variant(
        "lr_too_low", "lr-low-sgd-1e-3", "digits", "mlp", "sgd", 1e-3, 30, ("too_slow",),
        "Plain SGD lr 1e-3: steady improvement, far from converged at the budget.",
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        "lr_too_low", "lr-low-sgd-1e-5", "digits", "mlp", "sgd", 1e-5, 30, ("not_learning",),
        "Plain SGD lr 1e-5: loss barely moves.",
        model_kwargs={"hidden": (64,)},
    ),
    # --- underfitting --------------------------------------------------------------------------------
    Variant(
        "underfitting", "underfit-linear-spirals", "spirals", "linear", "adam", 1e-2, 40,
        ("underfitting", "plateau"),
        "Softmax regression on 3 interleaved spirals.",
    ),
    Variant(
        "underfitting", "underfit-linear-fmnist", "fmnist-3000-flat", "linear", "adam", 1e-3, 40,
        ("underfitting",),
        "Softmax regression on 3,000 Fashion-MNIST images.",
    ),
    # --- overfitting ---------------------------------------------------------------------------------
    Variant(
        "overfitting", "overfit-wide-mlp-digits-200", "digits-200", "mlp", "adam", 1e-3, 100,
        ("overfitting", "plateau"),
        "MLP 512-512, no regularisation, 200 digits examples.",
        model_kwargs={"hidden": (512, 512)},
    ),
    Variant(
        "overfitting", "overfit-wide-mlp-fmnist-300", "fmnist-300-flat", "mlp", "adam", 1e-3, 80,
        ("overfitting", "plateau"),
        "MLP 512-512, no regularisation, 300 Fashion-MNIST examples.",
        model_kwargs={"hidden": (512, 512)},
    ),
    # --- not_learning ---------------------------------------------------------------------------------
    Variant(
        "not_learning", "shuffled-labels-mlp", "digits-shuffled-labels", "mlp", "adam", 1e-3, 40,
        ("not_learning",),
        "Random labels, MLP 64.",
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        "not_learning", "shuffled-labels-wide-mlp", "digits-shuffled-labels", "mlp", "adam", 1e-3, 60,
        ("not_learning", "overfitting"),
        "Random labels, MLP 512-512: memorises the training set.",
        model_kwargs={"hidden": (512, 512)},
    ),
    # --- bad_scaling -----------------------------------------------------------------------------------
    Variant(
        "bad_scaling", "bad-scaling-adam", "digits-bad-scaling", "mlp", "adam", 1e-3, 40, ("plateau",),
        "Half the pixels scaled by 1e3..1e5, Adam 1e-3.",
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        "bad_scaling", "bad-scaling-sgd", "digits-bad-scaling", "mlp", "sgd", 1e-2, 40, ("divergence",),
        "Half the pixels scaled by 1e3..1e5, SGD 1e-2.",
        model_kwargs={"hidden": (64,)},
    ),
    # --- plateau ----------------------------------------------------------------------------------------
    Variant(
        "plateau", "plateau-bottleneck-2", "digits", "bottleneck", "adam", 1e-3, 60, ("plateau",),
        "Width-2 bottleneck layer caps accuracy on digits.",
        model_kwargs={"width": 2},
    ),
    Variant(
        "plateau", "plateau-adam-constant-0.02", "digits", "mlp", "adam", 2e-2, 40, ("plateau",),
        "Adam at a constant 2e-2: fast start, then stalls below the 1e-3 ceiling.",
        model_kwargs={"hidden": (64,)},
    ),
)


# ---------------------------------------------------------------------------------------------
# Running.
# ---------------------------------------------------------------------------------------------


def _lr_logger() -> Any:
    """A callback writing the optimiser's current rate into ``logs['learning_rate']``.

    Keras 3's ``fit`` does not log the rate itself; listed before CSVLogger, this fills the column.
    """
    import keras

    class LearningRateLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if logs is not None:
                lr = self.model.optimizer.learning_rate
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))

    return LearningRateLogger()


def run_variant(variant: Variant, seed: int, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Train one seed of a variant and write its CSVLogger file.

    Args:
        variant: the configuration.
        seed: passed to :func:`keras.utils.set_random_seed` (init and shuffling).
        out_dir: existing folder for ``<variant.name>-s<seed>.csv``.

    Returns:
        The CSV path and its ``labels.json`` entry.
    """
    import keras

    x_tr, y_tr, x_va, y_va = DATASETS[variant.dataset]()
    classes = int(max(y_tr.max(), y_va.max()) + 1)
    keras.utils.set_random_seed(seed)
    model = MODELS[variant.model](x_tr.shape[1:], classes, **variant.model_kwargs)
    steps = int(np.ceil(len(x_tr) / variant.batch_size))
    model.compile(
        optimizer=make_optimizer(variant.optimizer, variant.learning_rate, variant.epochs, steps),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    path = out_dir / f"{variant.name}-s{seed}.csv"
    model.fit(
        x_tr,
        y_tr,
        validation_data=(x_va, y_va),
        epochs=variant.epochs,
        batch_size=variant.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_lr_logger(), keras.callbacks.CSVLogger(str(path))],
    )
    label: dict[str, Any] = {
        "scenario": variant.scenario,
        "variant": variant.name,
        "seed": seed,
        "expected": list(variant.expected_by_seed.get(seed, variant.expected)),
        "epoch_budget": variant.epochs,
        "num_classes": classes,
        "notes": variant.notes,
        "config": {
            "dataset": variant.dataset,
            "n_train": len(x_tr),
            "n_val": len(x_va),
            "model": variant.model,
            "model_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in variant.model_kwargs.items()},
            "optimizer": variant.optimizer,
            "learning_rate": variant.learning_rate,
            "batch_size": variant.batch_size,
        },
    }
    if variant.group:
        label["group"] = variant.group
    return path, label


def summarize(path: Path) -> str:
    """One line per run: val_accuracy at a few epochs, best/last val_loss, NaN count."""
    import pandas as pd

    df = pd.read_csv(path)
    va, vl, ta = df["val_accuracy"].to_numpy(), df["val_loss"].to_numpy(), df["accuracy"].to_numpy()
    n = len(df)
    marks = sorted({0, n // 4, n // 2, 3 * n // 4, n - 1})
    acc = " ".join(f"{va[i]:.3f}" for i in marks)
    best = int(np.nanargmin(vl)) if np.isfinite(vl).any() else -1
    return (
        f"{path.name:42s} val_acc[{acc}] train_acc_last={ta[-1]:.3f} "
        f"val_loss min={np.nanmin(vl) if best >= 0 else float('nan'):.3g}@{best} last={vl[-1]:.3g} "
        f"nan={int(np.isnan(df['loss']).sum())}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSVs and labels.json")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per variant (group variants keep their own)")
    parser.add_argument("--only", default="", help="run only variants whose name contains this text")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    # Same seed, same curve: CPU kernels otherwise may reduce in a thread-dependent order.
    tf.config.experimental.enable_op_determinism()

    args.out.mkdir(parents=True, exist_ok=True)
    labels_path = args.out / "labels.json"
    labels: dict[str, Any] = json.loads(labels_path.read_text()) if labels_path.exists() else {}
    start = time.perf_counter()
    for variant in VARIANTS:
        if args.only and args.only not in variant.name:
            continue
        for seed in variant.seeds or tuple(range(args.seeds)):
            t0 = time.perf_counter()
            path, label = run_variant(variant, seed, args.out)
            labels[path.name] = label
            print(f"{summarize(path)} {time.perf_counter() - t0:.1f}s {label['expected']}", flush=True)
    labels_path.write_text(json.dumps(dict(sorted(labels.items())), indent=1) + "\n")
    print(f"{len(labels)} runs in {labels_path}; this call took {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
