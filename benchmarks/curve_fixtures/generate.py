"""Generate labelled fixtures of real Keras training curves for the curve-diagnosis benchmark.

Every run is a real ``model.fit`` on small offline data (scikit-learn's bundled digits, a
Fashion-MNIST subset read from ``/usr/share/datasets/fashion-mnist``, or numpy-made spirals),
logged with :class:`keras.callbacks.CSVLogger` (epoch 0-based, as CSVLogger writes it; columns
sorted: ``epoch,accuracy,learning_rate,loss,val_accuracy,val_loss``). The expected finding codes
in ``labels.json`` were set by looking at the curves each scenario produces (see README.md), not
derived from the configuration alone.

Usage (from the repository root; 65 runs, about 9 CPU-minutes on one thread)::

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
    input_dropout: float = 0.0,
) -> Any:
    """Flatten -> optional dropout on the inputs -> Dense hidden layers (optional dropout after each,
    optional L2 on kernels) -> softmax."""
    import keras

    reg = keras.regularizers.L2(l2) if l2 else None
    layers: list[Any] = [keras.Input(input_shape), keras.layers.Flatten()]
    if input_dropout:
        layers.append(keras.layers.Dropout(input_dropout))
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
        scenario="healthy",
        name="healthy-digits-mlp",
        dataset="digits",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=30,
        expected=("healthy",),
        notes=(
            "MLP 64 on digits: val_accuracy 0.44-0.63 at epoch 0, ~0.92 by epoch 7, 0.963-0.973 at the "
            "budget; val_loss still easing down at the last epoch (smooth, monotone)."
        ),
        model_kwargs={"hidden": (64,)},
        group="healthy-digits-mlp",
        seeds=(0, 1, 2, 3, 4),
    ),
    Variant(
        scenario="healthy",
        name="healthy-digits-cnn",
        dataset="digits-image",
        model="cnn",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=25,
        expected=("healthy",),
        notes=(
            "Small CNN on 8x8 digits: val_accuracy ~0.96 by epoch 6, then a flat tail at 0.97-0.98 (the "
            "ceiling); val_loss at or within 4 % of its minimum at the end."
        ),
        model_kwargs={"pool": False},
    ),
    Variant(
        scenario="healthy",
        name="healthy-fmnist-cnn",
        dataset="fmnist-3000",
        model="cnn",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=20,
        expected=("healthy",),
        notes=(
            "Small CNN with dropout on 3,000 Fashion-MNIST images: val_accuracy ~0.83 by epoch ~8, then a "
            "flat tail at 0.83-0.85 (converged, the ceiling for this data size); val_loss noisy within ~10 "
            "% of its minimum; train-val accuracy gap grows to ~0.07 by the end."
        ),
        model_kwargs={"dropout": 0.3},
    ),
    Variant(
        scenario="healthy",
        name="healthy-fmnist-mlp-cosine",
        dataset="fmnist-3000-flat",
        model="mlp",
        optimizer="adam-cosine",
        learning_rate=1e-3,
        epochs=25,
        expected=("healthy",),
        notes=(
            "MLP 128 with dropout, Adam 1e-3 cosine-decayed to 0 (learning_rate column falls from 1e-3 to "
            "~0): val_accuracy ~0.80 by epoch 6, ends 0.83-0.84; val_loss minimum in the last 4 epochs."
        ),
        model_kwargs={"hidden": (128,), "dropout": 0.2},
    ),
    # --- lr_too_high ------------------------------------------------------------------------------
    Variant(
        scenario="lr_too_high",
        name="lr-high-adam-0.02",
        dataset="digits",
        model="mlp",
        optimizer="adam",
        learning_rate=2e-2,
        epochs=40,
        expected=("oscillation",),
        notes=(
            "Adam 2e-2 (constant): fast start (val_accuracy ~0.9 at epoch 0), then val_loss jumps 0.07 <-> "
            "0.24 from epoch to epoch. Seed 0 keeps oscillating to the end; seeds 1 and 2 oscillate between"
            " epochs ~5 and ~30 and then settle at 0.99 val_accuracy for the last 8-10 epochs."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        scenario="lr_too_high",
        name="lr-high-adam-0.1",
        dataset="digits",
        model="mlp",
        optimizer="adam",
        learning_rate=0.1,
        epochs=30,
        expected=("oscillation",),
        notes=(
            "Adam 0.1: val_loss swings 0.15 <-> 0.8 (up to 1.2) epoch to epoch, val_accuracy 0.86-0.96; the"
            " val_loss envelope drifts upward (last epoch 0.67-0.84) while training accuracy stays ~0.96, "
            "so overfitting was not labelled."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        scenario="lr_too_high",
        name="lr-high-adam-1.0",
        dataset="digits",
        model="mlp",
        optimizer="adam",
        learning_rate=1.0,
        epochs=30,
        expected=("not_learning",),
        notes=(
            "Adam 1.0: the blow-up happens inside epoch 0 (epoch-0 loss 22-64), after which the ReLU layer "
            "is dead and the net predicts one (seed 0: val_accuracy 0.105, chance) or two classes (seeds 1,"
            " 2: val_accuracy frozen at 0.18-0.21 after a few noisy epochs). Finite loss, no NaN: labelled "
            "not_learning, not divergence."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        scenario="lr_too_high",
        name="lr-high-linear-deep-sgdm-0.1",
        dataset="digits",
        model="mlp",
        optimizer="sgd-momentum",
        learning_rate=0.1,
        epochs=20,
        expected=("divergence",),
        notes=(
            "3 linear-activation hidden layers, SGD momentum 0.9 lr 0.1: loss ~1e11 or NaN in epoch 0 (seed"
            " 2: finite epoch 0, val_loss 6.4), NaN loss and val_loss from epoch 1 on, accuracy frozen at "
            "chance. Training is not stopped, so NaN rows fill the budget."
        ),
        model_kwargs={"hidden": (64, 64, 64), "activation": "linear"},
    ),
    Variant(
        scenario="lr_too_high",
        name="lr-high-linear-deep-sgdm-0.05",
        dataset="digits",
        model="mlp",
        optimizer="sgd-momentum",
        learning_rate=0.05,
        epochs=20,
        expected=("oscillation",),
        notes=(
            "Same model, lr 0.05: reaches 0.93-0.95 val_accuracy by epoch 3-8, then val_loss jumps between "
            "0.25 and 0.9 and the training loss itself climbs back (e.g. 0.11 -> 0.79), without exploding "
            "or NaN."
        ),
        model_kwargs={"hidden": (64, 64, 64), "activation": "linear"},
    ),
    # --- lr_too_low ---------------------------------------------------------------------------------
    Variant(
        scenario="lr_too_low",
        name="lr-low-sgd-1e-3",
        dataset="digits",
        model="mlp",
        optimizer="sgd",
        learning_rate=1e-3,
        epochs=30,
        expected=("too_slow",),
        notes=(
            "Plain SGD lr 1e-3: val_accuracy climbs steadily from ~0.1 to 0.39-0.51 and loss falls every "
            "epoch (2.3 -> ~2.05): clearly improving, far from converged when the budget ends."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        scenario="lr_too_low",
        name="lr-low-sgd-1e-5",
        dataset="digits",
        model="mlp",
        optimizer="sgd",
        learning_rate=1e-5,
        epochs=30,
        expected=("not_learning",),
        notes=(
            "Plain SGD lr 1e-5: loss moves in the 3rd decimal; val_accuracy frozen at its initial value "
            "(0.08-0.10; seed 2 starts and stays at 0.16)."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    # --- underfitting --------------------------------------------------------------------------------
    Variant(
        scenario="underfitting",
        name="underfit-mlp-l2-fmnist",
        dataset="fmnist-3000-flat",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=30,
        expected=("underfitting", "plateau"),
        notes=(
            "MLP 128 with L2 0.05 on the kernels: training accuracy stuck at 0.76-0.79, val_accuracy flat "
            "at 0.72-0.76 from epoch ~3 (the CNN reaches 0.85 on the same split); val_loss flat ~0.8-0.9."
        ),
        model_kwargs={"hidden": (128,), "l2": 0.05},
    ),
    Variant(
        scenario="underfitting",
        name="underfit-linear-fmnist",
        dataset="fmnist-3000-flat",
        model="linear",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=40,
        expected=("plateau",),
        notes=(
            "Softmax regression on 3,000 Fashion-MNIST images: val_accuracy flat at 0.81-0.82 for the "
            "second half while training accuracy reaches 0.90 and val_loss still edges down; not a clean "
            "underfit (train is not low), so labelled plateau only."
        ),
    ),
    Variant(
        scenario="underfitting",
        name="underfit-tiny-mlp-digits",
        dataset="digits",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-2,
        epochs=40,
        expected=("underfitting", "plateau"),
        notes=(
            "MLP with 3 hidden ReLU units on digits, Adam 1e-2: training and val_accuracy rise together to "
            "~0.63 by epoch ~12, then creep up only ~0.03 over the last 25 epochs (ending 0.65-0.71, train "
            "within 0.01-0.02 of val) while val_loss eases down slowly; digits reach 0.97 with 64 units."
        ),
        model_kwargs={"hidden": (3,)},
    ),
    # --- overfitting ---------------------------------------------------------------------------------
    Variant(
        scenario="overfitting",
        name="overfit-wide-mlp-digits-200",
        dataset="digits-200",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=100,
        expected=("overfitting", "plateau"),
        notes=(
            "MLP 512-512, no regularisation, 200 digits examples: training accuracy 1.0 by epoch ~10, "
            "val_accuracy flat at 0.94, val_loss bottoms at epoch 16-22 and then rises slowly and "
            "monotonically (+10-18 % by epoch 100): mild but clean overfitting."
        ),
        model_kwargs={"hidden": (512, 512)},
    ),
    Variant(
        scenario="overfitting",
        name="overfit-wide-mlp-fmnist-300",
        dataset="fmnist-300-flat",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=80,
        expected=("overfitting", "plateau"),
        notes=(
            "MLP 512-512, no regularisation, 300 Fashion-MNIST examples: val_loss bottoms at epoch 5-12 "
            "(~0.7) and nearly doubles by the end (~1.25); training accuracy 1.0, val_accuracy flat "
            "0.76-0.78."
        ),
        model_kwargs={"hidden": (512, 512)},
    ),
    # --- not_learning ---------------------------------------------------------------------------------
    Variant(
        scenario="not_learning",
        name="shuffled-labels-linear",
        dataset="digits-shuffled-labels",
        model="linear",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=30,
        expected=("not_learning",),
        notes=(
            "Random labels, softmax regression: val_accuracy at chance (0.09-0.10) throughout; training "
            "accuracy creeps to 0.15-0.18 and val_loss edges up by <1 % (too little to call overfitting)."
        ),
    ),
    Variant(
        scenario="not_learning",
        name="shuffled-labels-wide-mlp",
        dataset="digits-shuffled-labels",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=40,
        expected=("not_learning", "overfitting"),
        notes=(
            "Random labels, MLP 512-512: memorises the training set (accuracy 0.1 -> 0.94-0.95) while "
            "val_accuracy stays at chance and val_loss climbs from its epoch-0 minimum 2.3 to ~5."
        ),
        model_kwargs={"hidden": (512, 512)},
    ),
    # --- bad_scaling -----------------------------------------------------------------------------------
    Variant(
        scenario="bad_scaling",
        name="bad-scaling-adam",
        dataset="digits-bad-scaling",
        model="mlp",
        optimizer="adam",
        learning_rate=1e-3,
        epochs=40,
        expected=("divergence",),
        notes=(
            "Half the pixels scaled by 1e3..1e5, Adam 1e-3: losses in the hundreds to thousands, "
            "val_accuracy reaches ~0.83 by epoch 13 and then stalls at 0.82-0.88 (0.97 with scaled inputs) "
            "with noisy val_loss ~100-200; training accuracy ~0.95. Seed 2 still creeps up ~0.01 per 10 "
            "epochs. Relabelled divergence (was plateau) by the corpus rubric (benchmarks/corpus): a "
            "val_loss never below 10x the prior's entropy."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    Variant(
        scenario="bad_scaling",
        name="bad-scaling-sgd",
        dataset="digits-bad-scaling",
        model="mlp",
        optimizer="sgd",
        learning_rate=1e-2,
        epochs=30,
        expected=("divergence",),
        notes=(
            "Half the pixels scaled by 1e3..1e5, SGD 1e-2: epoch-0 loss ~1e9, then a dead network "
            "predicting one class (val_accuracy 0.077, train 0.11) with val_loss frozen (seeds 0, 2: 3.9e5 "
            "and 2.2e6; seed 1: 2.3). Finite throughout. Relabelled divergence (was not_learning): the "
            "blow-up then death of issue 6's failure class 6; the network is dead because it diverged."
        ),
        model_kwargs={"hidden": (64,)},
    ),
    # --- plateau ----------------------------------------------------------------------------------------
    Variant(
        scenario="plateau",
        name="plateau-bottleneck-2",
        dataset="digits",
        model="bottleneck",
        optimizer="adam",
        learning_rate=1e-2,
        epochs=40,
        expected=("plateau", "overfitting"),
        notes=(
            "Width-2 linear bottleneck, Adam 1e-2: val_accuracy stops at 0.93-0.94 (seed 0, from epoch ~18)"
            " or 0.89-0.92 (seeds 1, 2, from epoch ~12) against 0.97 without the bottleneck, while training"
            " accuracy reaches 0.99-1.0. Seeds 0 and 2: val_loss rises from its minimum near epoch 19 (+43 "
            "% / +18 %); seed 1: val_loss flat, so plateau only."
        ),
        model_kwargs={"width": 2},
        expected_by_seed={1: ("plateau",)},
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


def make_label(variant: Variant, seed: int) -> dict[str, Any]:
    """The ``labels.json`` entry of one seed of a variant (loads the data set to count it)."""
    x_tr, y_tr, x_va, y_va = DATASETS[variant.dataset]()
    label: dict[str, Any] = {
        "scenario": variant.scenario,
        "variant": variant.name,
        "seed": seed,
        "expected": list(variant.expected_by_seed.get(seed, variant.expected)),
        "epoch_budget": variant.epochs,
        "num_classes": int(max(y_tr.max(), y_va.max()) + 1),
        "notes": variant.notes,
        "config": {
            "dataset": variant.dataset,
            "n_train": len(x_tr),
            "n_val": len(x_va),
            "model": variant.model,
            "model_kwargs": {
                k: list(v) if isinstance(v, tuple) else v for k, v in variant.model_kwargs.items()
            },
            "optimizer": variant.optimizer,
            "learning_rate": variant.learning_rate,
            "batch_size": variant.batch_size,
        },
    }
    if variant.group:
        label["group"] = variant.group
    return label


def run_variant(variant: Variant, seed: int, out_dir: Path) -> Path:
    """Train one seed of a variant and write its CSVLogger file.

    Args:
        variant: the configuration.
        seed: passed to :func:`keras.utils.set_random_seed` (init and shuffling).
        out_dir: existing folder for ``<variant.name>-s<seed>.csv``.

    Returns:
        The CSV path (the run has ``variant.epochs`` rows; NaN losses are kept, not stopped on).
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
    from pipelines.io_utils import atomic_write_via

    def fit(log: str) -> None:
        model.fit(
            x_tr,
            y_tr,
            validation_data=(x_va, y_va),
            epochs=variant.epochs,
            batch_size=variant.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=[_lr_logger(), keras.callbacks.CSVLogger(log)],
        )

    # The log goes to a temporary file renamed at the end: a run cut short leaves no partial fixture
    # that --relabel would take for a finished one.
    return atomic_write_via(out_dir / f"{variant.name}-s{seed}.csv", fit)


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


def markdown_table(out_dir: Path) -> str:
    """The README's per-variant table, built from ``labels.json`` and the CSVs in ``out_dir``.

    Returns:
        A markdown table: one row per variant with its seeds, labels, epochs and the range over
        seeds of the best and the last ``val_accuracy``.

    Raises:
        FileNotFoundError: when ``out_dir/labels.json`` is missing.
    """
    import pandas as pd

    labels = json.loads((out_dir / "labels.json").read_text())
    rows: dict[str, dict[str, Any]] = {}
    for file_name, label in labels.items():
        va = pd.read_csv(out_dir / file_name)["val_accuracy"].to_numpy()
        row = rows.setdefault(
            label["variant"],
            {"label": label, "seeds": [], "expected": set(), "best": [], "last": []},
        )
        row["seeds"].append(label["seed"])
        row["expected"].add(", ".join(label["expected"]))
        row["best"].append(float(np.nanmax(va)))
        row["last"].append(float(va[-1]))
    lines = [
        "| scenario | variant | runs | expected | epochs | best val_accuracy | last val_accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    order = {variant.name: i for i, variant in enumerate(VARIANTS)}
    for name, row in sorted(rows.items(), key=lambda item: order.get(item[0], len(order))):
        label = row["label"]
        best, last = row["best"], row["last"]
        lines.append(
            f"| {label['scenario']} | {name} | {len(row['seeds'])} | {' / '.join(sorted(row['expected']))} "
            f"| {label['epoch_budget']} | {min(best):.3f}-{max(best):.3f} | {min(last):.3f}-{max(last):.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSVs and labels.json")
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds per variant (group variants keep their own)"
    )
    parser.add_argument("--only", default="", help="run only variants whose name contains this text")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra/inter-op threads")
    parser.add_argument(
        "--relabel", action="store_true", help="rewrite labels.json for the CSVs in --out; no training"
    )
    parser.add_argument("--table", action="store_true", help="print the README table for --out and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train every selected variant and seed, then write ``labels.json``; returns the exit code."""
    args = parse_args(argv)
    if args.table:
        print(markdown_table(args.out))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    labels_path = args.out / "labels.json"
    selected = [
        (variant, seed)
        for variant in VARIANTS
        if args.only in variant.name
        for seed in (variant.seeds or tuple(range(args.seeds)))
    ]
    # A partial run (--only) keeps the other variants' entries; a full run starts afresh.
    keep_old = bool(args.only) and labels_path.exists()
    labels: dict[str, Any] = json.loads(labels_path.read_text()) if keep_old else {}

    if args.relabel:
        for variant, seed in selected:
            path = args.out / f"{variant.name}-s{seed}.csv"
            if path.exists():
                labels[path.name] = make_label(variant, seed)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        # Same seed, same curve: CPU kernels may otherwise reduce in a thread-dependent order.
        tf.config.experimental.enable_op_determinism()
        start = time.perf_counter()
        for variant, seed in selected:
            t0 = time.perf_counter()
            path = run_variant(variant, seed, args.out)
            labels[path.name] = make_label(variant, seed)
            took = time.perf_counter() - t0
            print(f"{summarize(path)} {took:.1f}s {labels[path.name]['expected']}", flush=True)
        print(f"trained {len(selected)} runs in {time.perf_counter() - start:.0f}s")
    from pipelines.io_utils import atomic_write_text

    atomic_write_text(labels_path, json.dumps(dict(sorted(labels.items())), indent=1) + "\n")
    print(f"{len(labels)} runs labelled in {labels_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
