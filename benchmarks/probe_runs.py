"""Probe runs for the curve diagnosis: real Keras fits of setups common in public repositories.

Not the labelled corpus (``benchmarks/corpus``): each probe is one run of a setup a Keras user
writes (a CNN validated on 13 images, a relu output layer, AdamW with a large weight decay, an
LSTM on a long-range dependency, a linear model on circles, ...), trained once so that the engine's
reading of it can be checked by eye; those it got wrong are kept in ``tests/fixtures/probes/`` with
a regression test each (see that folder's README, which names the file and the design).

Each run writes ``<name>.csv`` (``keras.callbacks.CSVLogger``) and ``<name>.json`` (the design in
words, training and validation sizes, class count, seconds) to the output folder. Fashion-MNIST is
read from the IDX files in ``$PROBE_DATA`` (default Debian's ``/usr/share/datasets/fashion-mnist``);
the sequence tasks are synthetic; ``make_moons`` / ``make_circles`` come from scikit-learn.
Seeds: ``keras.utils.set_random_seed(0)`` for every run, fixed numpy seeds for the data.

Run (session 30: on one NVIDIA H200, five batches of 7-14 runs took 38-124 s each with 5-10
workers)::

    KERAS_BACKEND=jax python benchmarks/probe_runs.py OUT [--workers N] [name ...]

``PROBE_SMOKE=1`` trains every run for one epoch (a check that each one builds and fits).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("PROBE_DATA", "/usr/share/datasets/fashion-mnist"))


def idx(name):
    """The uint8 array of one gzipped IDX file in :data:`DATA` (images (N, 28, 28), labels (N,))."""
    with gzip.open(DATA / name, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fmnist():
    """Fashion-MNIST as (x_train (60000, 28, 28, 1) float32 in [0, 1], y_train (60000,) int64,
    x_test (10000, 28, 28, 1), y_test (10000,))."""
    xtr = idx("train-images-idx3-ubyte.gz").astype("float32") / 255.0
    ytr = idx("train-labels-idx1-ubyte.gz").astype("int64")
    xte = idx("t10k-images-idx3-ubyte.gz").astype("float32") / 255.0
    yte = idx("t10k-labels-idx1-ubyte.gz").astype("int64")
    return xtr[..., None], ytr, xte[..., None], yte


def cnn(keras, out=10, act="softmax", bn=False, dropout=0.0):
    """The plain CNN of the probes: Conv2D(32, 3) -> MaxPool -> Conv2D(64, 3) -> MaxPool -> Dense(128)
    -> Dense(out, act), optionally with BatchNormalization and dropout."""
    L = keras.layers
    layers = [keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation=None if bn else "relu")]
    if bn:
        layers += [L.BatchNormalization(), L.Activation("relu")]
    layers += [L.MaxPooling2D(), L.Conv2D(64, 3, activation=None if bn else "relu")]
    if bn:
        layers += [L.BatchNormalization(), L.Activation("relu")]
    layers += [L.MaxPooling2D(), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers += [L.Dense(128, activation="relu")]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(out, activation=act))
    return keras.Sequential(layers)


def mlp(keras, units=256, out=10, act="softmax"):
    """Flatten -> Dense(units, relu) -> Dense(out, act) on 28 x 28 x 1 inputs."""
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Flatten(),
            L.Dense(units, activation="relu"),
            L.Dense(out, activation=act),
        ]
    )


def seq_task(rng, n, length, vocab=20):
    """Class = parity of the first token; the rest is noise (a long-range dependency)."""
    x = rng.integers(2, vocab, size=(n, length))
    y = (x[:, 0] % 2).astype("int64")
    return x, y


RUNS = {}


def run(name):
    """Register a probe: the decorated function builds (model, fit kwargs, design) from keras and data."""

    def deco(fn):
        RUNS[name] = fn
        return fn

    return deco


def _fm(
    keras,
    d,
    model,
    opt,
    ntr,
    nval,
    epochs,
    batch,
    desc,
    loss="sparse_categorical_crossentropy",
    x=None,
    y=None,
    xv=None,
    yv=None,
    callbacks=(),
):
    """A Fashion-MNIST probe: ``model`` compiled with ``opt`` and ``loss`` (accuracy metric), fitted on
    the first ``ntr`` training and validated on the first ``nval`` test images (or on ``x``, ``y``,
    ``xv``, ``yv`` when given) for ``epochs`` epochs of batches of ``batch``."""
    xtr, ytr, xte, yte = d
    x = xtr[:ntr] if x is None else x
    y = ytr[:ntr] if y is None else y
    xv = xte[:nval] if xv is None else xv
    yv = yte[:nval] if yv is None else yv
    model.compile(opt, loss, metrics=["accuracy"])
    fit = dict(x=x, y=y, validation_data=(xv, yv), epochs=epochs, batch_size=batch)
    if callbacks:
        fit["callbacks"] = list(callbacks)
    classes = int(np.max(yv)) + 1 if np.ndim(yv) == 1 else int(np.shape(yv)[1])
    return model, fit, dict(desc=desc, n_train=int(len(x)), n_val=int(len(xv)), classes=max(classes, 2))


def _seq(keras, seed, length, units, opt, epochs, desc, activation="tanh"):
    """A sequence probe: Embedding(20, 16) -> LSTM(units) -> Dense(1, sigmoid) on :func:`seq_task`
    (4,000 training and 1,000 validation sequences of ``length`` tokens), batch 64."""
    rng = np.random.default_rng(seed)
    xtr, ytr = seq_task(rng, 4000, length)
    xva, yva = seq_task(rng, 1000, length)
    L = keras.layers
    m = keras.Sequential(
        [
            keras.Input((length,)),
            L.Embedding(20, 16),
            L.LSTM(units, activation=activation),
            L.Dense(1, activation="sigmoid"),
        ]
    )
    m.compile(opt, "binary_crossentropy", metrics=["accuracy"])
    fit = dict(x=xtr, y=ytr, validation_data=(xva, yva), epochs=epochs, batch_size=64)
    return m, fit, dict(desc=desc, n_train=4000, n_val=1000, classes=2)


def _one_hot(y):
    return np.eye(10, dtype="float32")[y]


@run("seq-lstm-first-token-parity-len100")
def _(keras, d):
    return _seq(
        keras,
        3,
        100,
        32,
        keras.optimizers.Adam(1e-3),
        60,
        "Embedding(20,16) -> LSTM(32) -> Dense(1, sigmoid); class = parity of the first of 100 tokens; Adam 1e-3, batch 64",
    )


@run("fmnist-mlp-full-batch-adam")
def _(keras, d):
    return _fm(
        keras,
        d,
        mlp(keras),
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        150,
        20000,
        "MLP 256, batch = the whole training set (20,000): one step an epoch, Adam 1e-3",
    )


@run("fmnist-cnn-val-13")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        10000,
        13,
        40,
        128,
        "plain CNN, 10,000 training images, validated on 13 test images, Adam 1e-3",
    )


@run("fmnist-cnn-label-smoothing-0.2-2000")
def _(keras, d):
    xtr, ytr, xte, yte = d
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        2000,
        2000,
        60,
        64,
        "plain CNN, 2,000 training images, one-hot labels, CategoricalCrossentropy(label_smoothing=0.2), Adam 1e-3",
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.2),
        y=_one_hot(ytr[:2000]),
        yv=_one_hot(yte[:2000]),
    )


@run("fmnist-mlp-adamw-weight-decay-1.0")
def _(keras, d):
    return _fm(
        keras,
        d,
        mlp(keras),
        keras.optimizers.AdamW(1e-3, weight_decay=1.0),
        20000,
        2000,
        40,
        128,
        "MLP 256, AdamW(1e-3, weight_decay=1.0)",
    )


@run("fmnist-cnn-sgd-momentum-0.99-lr-0.05")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.SGD(0.05, momentum=0.99),
        10000,
        2000,
        30,
        128,
        "plain CNN, SGD(0.05, momentum=0.99)",
    )


@run("fmnist-cnn-1000-train-200-epochs")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        1000,
        1000,
        200,
        32,
        "plain CNN, 1,000 training images, 200 epochs, Adam 1e-3, batch 32",
    )


@run("fmnist-mlp-sgd-1e-4-300-epochs")
def _(keras, d):
    return _fm(
        keras,
        d,
        mlp(keras),
        keras.optimizers.SGD(1e-4),
        5000,
        2000,
        300,
        128,
        "MLP 256, plain SGD(1e-4), 300 epochs",
    )


@run("fmnist-cnn-label-noise-40pct")
def _(keras, d):
    xtr, ytr, xte, yte = d
    rng = np.random.default_rng(11)
    y = ytr[:10000].copy()
    flip = rng.random(y.size) < 0.4
    y[flip] = rng.integers(0, 10, flip.sum())
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        10000,
        2000,
        60,
        128,
        "plain CNN, 10,000 training images with 40% of labels replaced at random (clean validation), Adam 1e-3",
        y=y,
    )


@run("fmnist-mlp-val-labels-shuffled-separately")
def _(keras, d):
    xtr, ytr, xte, yte = d
    rng = np.random.default_rng(5)
    yv = yte[:2000].copy()
    rng.shuffle(yv)
    return _fm(
        keras,
        d,
        mlp(keras),
        keras.optimizers.Adam(1e-3),
        10000,
        2000,
        30,
        128,
        "MLP 256, Adam 1e-3; the validation labels were shuffled apart from their images (a pipeline bug)",
        yv=yv,
    )


@run("fmnist-cnn-50-train-images")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        50,
        1000,
        100,
        16,
        "plain CNN, 50 training images, 100 epochs, Adam 1e-3, batch 16",
    )


@run("seq-lstm-adam-0.1")
def _(keras, d):
    return _seq(
        keras,
        4,
        30,
        64,
        keras.optimizers.Adam(0.1),
        40,
        "Embedding -> LSTM(64) -> Dense(1, sigmoid), parity of the first of 30 tokens, Adam 0.1",
    )


@run("fmnist-cnn-dropout-rlrop-val-accuracy-kaggle")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras, dropout=0.3),
        keras.optimizers.Adam(3e-3),
        20000,
        500,
        50,
        86,
        "CNN with dropout 0.3, Adam 3e-3, ReduceLROnPlateau(val_accuracy, patience=2, factor=0.5, "
        "min_lr=1e-5), validated on 500 images, batch 86",
        callbacks=[
            keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", patience=2, factor=0.5, min_lr=1e-5)
        ],
    )


@run("fmnist-cnn-bn-sgd-batch-8")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras, bn=True),
        keras.optimizers.SGD(0.05),
        4000,
        2000,
        25,
        8,
        "CNN with BatchNormalization, SGD(0.05), batch 8, 4,000 training images",
    )


@run("fmnist-noisy-inputs-sd1-mlp-adam")
def _(keras, d):
    rng = np.random.default_rng(21)
    xtr, ytr, xte, yte = d
    x = xtr[:20000] + rng.normal(0, 1.0, xtr[:20000].shape).astype("float32")
    xv = xte[:2000] + rng.normal(0, 1.0, xte[:2000].shape).astype("float32")
    return _fm(
        keras,
        d,
        mlp(keras, 512),
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        60,
        128,
        "MLP 512 on Fashion-MNIST with Gaussian pixel noise (SD 1.0, inputs in 0..1), Adam 1e-3",
        x=x,
        xv=xv,
    )


@run("fmnist-noisy-inputs-sd1-cnn-dropout-adam")
def _(keras, d):
    rng = np.random.default_rng(22)
    xtr, ytr, xte, yte = d
    x = xtr[:20000] + rng.normal(0, 1.0, xtr[:20000].shape).astype("float32")
    xv = xte[:2000] + rng.normal(0, 1.0, xte[:2000].shape).astype("float32")
    return _fm(
        keras,
        d,
        cnn(keras, dropout=0.3),
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        40,
        128,
        "CNN with dropout 0.3 on Fashion-MNIST with Gaussian pixel noise (SD 1.0), Adam 1e-3",
        x=x,
        xv=xv,
    )


@run("fmnist-logistic-regression-adam")
def _(keras, d):
    L = keras.layers
    m = keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(10, activation="softmax")])
    return _fm(
        keras,
        d,
        m,
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        50,
        128,
        "Flatten -> Dense(10, softmax) (a linear model), Adam 1e-3",
    )


@run("fmnist-mlp-4-units-adam")
def _(keras, d):
    return _fm(
        keras,
        d,
        mlp(keras, 4),
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        50,
        128,
        "MLP with 4 hidden units, Adam 1e-3",
    )


@run("fmnist-cnn-adagrad-1e-3")
def _(keras, d):
    return _fm(
        keras, d, cnn(keras), keras.optimizers.Adagrad(1e-3), 10000, 2000, 30, 128, "plain CNN, Adagrad(1e-3)"
    )


@run("fmnist-cnn-sgd-1e-3-batch-512")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.SGD(1e-3),
        20000,
        2000,
        40,
        512,
        "plain CNN, plain SGD(1e-3), batch 512",
    )


@run("fmnist-cnn-val-40")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.Adam(1e-3),
        10000,
        40,
        30,
        128,
        "plain CNN, validated on 40 test images, Adam 1e-3",
    )


@run("fmnist-cnn-val-100-sgd-momentum")
def _(keras, d):
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.SGD(0.01, momentum=0.9),
        10000,
        100,
        30,
        64,
        "plain CNN, validated on 100 test images, SGD(0.01, momentum=0.9), batch 64",
    )


@run("fmnist-mlp-relu-output-layer")
def _(keras, d):
    return _fm(
        keras,
        d,
        mlp(keras, 256, act="relu"),
        keras.optimizers.Adam(1e-3),
        10000,
        2000,
        30,
        128,
        "MLP 256 with a Dense(10, relu) output read by sparse_categorical_crossentropy, Adam 1e-3",
    )


@run("fmnist-mlp-sgd-lr-3.0")
def _(keras, d):
    return _fm(
        keras, d, mlp(keras, 256), keras.optimizers.SGD(3.0), 10000, 2000, 20, 128, "MLP 256, plain SGD(3.0)"
    )


@run("seq-lstm-first-token-parity-len60-adam-3e-3")
def _(keras, d):
    return _seq(
        keras,
        6,
        60,
        32,
        keras.optimizers.Adam(3e-3),
        60,
        "Embedding(20,16) -> LSTM(32) -> Dense(1, sigmoid); class = parity of the first of 60 tokens; Adam 3e-3, batch 64",
    )


@run("fmnist-binary-sneaker-0.03-mlp-adam")
def _(keras, d):
    xtr, ytr, xte, yte = d
    rng = np.random.default_rng(9)
    pos, neg = np.flatnonzero(ytr == 7), np.flatnonzero(ytr != 7)
    idx = np.concatenate([rng.choice(pos, 300, replace=False), rng.choice(neg, 9700, replace=False)])
    rng.shuffle(idx)
    vpos, vneg = np.flatnonzero(yte == 7), np.flatnonzero(yte != 7)
    vidx = np.concatenate([vpos[:60], vneg[:1940]])
    return _fm(
        keras,
        d,
        mlp(keras, 64, out=1, act="sigmoid"),
        keras.optimizers.Adam(1e-3),
        0,
        0,
        30,
        128,
        "sneaker (7) against the rest at 3% positives (300 of 10,000; validation 60 of 2,000), MLP 64, "
        "Dense(1, sigmoid), Adam 1e-3",
        loss="binary_crossentropy",
        x=xtr[idx],
        y=(ytr[idx] == 7).astype("float32"),
        xv=xte[vidx],
        yv=(yte[vidx] == 7).astype("float32"),
    )


@run("fmnist-cnn-unscaled-inputs-sgd-0.01")
def _(keras, d):
    xtr, ytr, xte, yte = d
    return _fm(
        keras,
        d,
        cnn(keras),
        keras.optimizers.SGD(0.01),
        10000,
        2000,
        25,
        128,
        "plain CNN, inputs left in 0..255, plain SGD(0.01)",
        x=xtr[:10000] * 255.0,
        xv=xte[:2000] * 255.0,
    )


@run("fmnist-cnn-l2-0.1")
def _(keras, d):
    L = keras.layers
    r = keras.regularizers.l2(0.1)
    m = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(32, 3, activation="relu", kernel_regularizer=r),
            L.MaxPooling2D(),
            L.Conv2D(64, 3, activation="relu", kernel_regularizer=r),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(128, activation="relu", kernel_regularizer=r),
            L.Dense(10, activation="softmax", kernel_regularizer=r),
        ]
    )
    return _fm(
        keras,
        d,
        m,
        keras.optimizers.Adam(1e-3),
        10000,
        2000,
        30,
        128,
        "plain CNN with L2(0.1) on every kernel, Adam 1e-3",
    )


@run("fmnist-cnn-2-filters")
def _(keras, d):
    L = keras.layers
    m = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(2, 3, activation="relu"),
            L.MaxPooling2D(4),
            L.Flatten(),
            L.Dense(10, activation="softmax"),
        ]
    )
    return _fm(
        keras,
        d,
        m,
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        40,
        128,
        "Conv2D(2, 3) -> MaxPool(4) -> Dense(10, softmax), Adam 1e-3",
    )


@run("fmnist-simplernn-tanh-sgd-0.01")
def _(keras, d):
    L = keras.layers
    m = keras.Sequential(
        [keras.Input((28, 28, 1)), L.Reshape((28, 28)), L.SimpleRNN(32), L.Dense(10, activation="softmax")]
    )
    return _fm(
        keras,
        d,
        m,
        keras.optimizers.SGD(0.01),
        10000,
        2000,
        40,
        64,
        "rows as a sequence: SimpleRNN(32, tanh) -> Dense(10, softmax), plain SGD(0.01), batch 64",
    )


@run("seq-lstm-relu-sgd-0.5")
def _(keras, d):
    return _seq(
        keras,
        8,
        30,
        32,
        keras.optimizers.SGD(0.5, momentum=0.9),
        40,
        "Embedding -> LSTM(32, activation='relu') -> Dense(1, sigmoid), parity of the first of 30 tokens, "
        "SGD(0.5, momentum=0.9), no clipping",
        activation="relu",
    )


@run("fmnist-mlp-input-dropout-0.8")
def _(keras, d):
    L = keras.layers
    m = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Flatten(),
            L.Dropout(0.8),
            L.Dense(256, activation="relu"),
            L.Dropout(0.5),
            L.Dense(10, activation="softmax"),
        ]
    )
    return _fm(
        keras,
        d,
        m,
        keras.optimizers.Adam(1e-3),
        20000,
        2000,
        40,
        128,
        "Flatten -> Dropout(0.8) -> Dense(256) -> Dropout(0.5) -> Dense(10), Adam 1e-3",
    )


@run("fmnist-mlp-softmax-mse-sgd-0.1")
def _(keras, d):
    oh = lambda y: np.eye(10, dtype="float32")[y]  # noqa: E731
    xtr, ytr, xte, yte = d
    return _fm(
        keras,
        d,
        mlp(keras, 128),
        keras.optimizers.SGD(0.1),
        10000,
        2000,
        40,
        128,
        "MLP 128, softmax output, mean_squared_error on one-hot labels, plain SGD(0.1)",
        loss="mean_squared_error",
        y=oh(ytr[:10000]),
        yv=oh(yte[:2000]),
    )


@run("fmnist-binary-tshirt-shirt-mlp-2-units")
def _(keras, d):
    xtr, ytr, xte, yte = d
    tr = np.flatnonzero((ytr == 0) | (ytr == 6))[:6000]
    va = np.flatnonzero((yte == 0) | (yte == 6))[:1000]
    return _fm(
        keras,
        d,
        mlp(keras, 2, out=1, act="sigmoid"),
        keras.optimizers.Adam(1e-3),
        0,
        0,
        40,
        64,
        "T-shirt (0) against shirt (6), MLP with 2 hidden units, Dense(1, sigmoid), Adam 1e-3",
        loss="binary_crossentropy",
        x=xtr[tr],
        y=(ytr[tr] == 6).astype("float32"),
        xv=xte[va],
        yv=(yte[va] == 6).astype("float32"),
    )


def _table(keras, model, opt, x, y, epochs, batch, desc, *, split, loss="binary_crossentropy"):
    """A tabular probe: ``model`` compiled with ``opt`` and ``loss`` (accuracy metric) on float32
    rows ``x`` and labels ``y`` for ``epochs`` epochs of batches of ``batch``. ``split``: the first
    ``split`` rows train and the rest validate (an int), or Keras' ``validation_split`` (a float: the
    last share of the rows)."""
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y, dtype="float32" if loss == "binary_crossentropy" else "int64")
    model.compile(opt, loss, metrics=["accuracy"])
    fit = dict(epochs=epochs, batch_size=batch)
    if isinstance(split, float):
        n_train = int(len(x) * (1.0 - split))  # as keras' fit(validation_split=...) cuts
        fit.update(x=x, y=y, validation_split=split)
    else:
        n_train = split
        fit.update(x=x[:split], y=y[:split], validation_data=(x[split:], y[split:]))
    classes = max(int(np.max(y)) + 1, 2)
    return model, fit, dict(desc=desc, n_train=n_train, n_val=len(x) - n_train, classes=classes)


def _tabular_mlp(keras, d_in, units, out=1, act="sigmoid", hidden="relu", init="glorot_uniform"):
    """Dense(u, ``hidden``) for each u of ``units`` -> Dense(out, act) on ``d_in`` features."""
    L = keras.layers
    layers = [keras.Input((d_in,))] + [L.Dense(u, activation=hidden, kernel_initializer=init) for u in units]
    return keras.Sequential([*layers, L.Dense(out, activation=act)])


@run("moons-noise-0.3-linear-model")
def _(keras, d):
    from sklearn.datasets import make_moons

    x, y = make_moons(1500, noise=0.3, random_state=1)
    return _table(
        keras,
        _tabular_mlp(keras, 2, ()),
        keras.optimizers.Adam(1e-2),
        x,
        y,
        100,
        32,
        "make_moons(1500, noise=0.3), a logistic regression Dense(1, sigmoid), Adam 1e-2, 100 epochs",
        split=1000,
    )


@run("circles-linear-model")
def _(keras, d):
    from sklearn.datasets import make_circles

    x, y = make_circles(1000, noise=0.1, factor=0.5, random_state=1)
    return _table(
        keras,
        _tabular_mlp(keras, 2, ()),
        keras.optimizers.SGD(0.01, momentum=0.9),
        x,
        y,
        200,
        32,
        "make_circles(1000, noise=0.1, factor=0.5), a logistic regression Dense(1, sigmoid), "
        "SGD(0.01, momentum=0.9), 200 epochs",
        split=500,
    )


@run("circles-mlp-tanh-5-layers-sgd")
def _(keras, d):
    from sklearn.datasets import make_circles

    x, y = make_circles(1000, noise=0.1, random_state=1)
    model = _tabular_mlp(keras, 2, (5,) * 5, hidden="tanh", init="random_uniform")
    return _table(
        keras,
        model,
        keras.optimizers.SGD(0.01, momentum=0.9),
        x,
        y,
        300,
        32,
        "make_circles(1000, noise=0.1), 5 hidden tanh layers of 5 units with random_uniform init (the "
        "vanishing-gradients article), SGD(0.01, momentum=0.9), 300 epochs",
        split=500,
    )


def _sk(name):
    """A scikit-learn toy table (``load_<name>``) in raw units, rows shuffled with seed 2."""
    import sklearn.datasets

    x, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    order = np.random.default_rng(2).permutation(len(y))
    return x[order], y[order]


def _pima_like(seed=3):
    """A Pima-diabetes-like table: 768 rows, 8 features in their raw units (tens to hundreds),
    majority class 0.65, 10% of labels flipped."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        768, 8, n_informative=4, n_redundant=2, flip_y=0.1, weights=[0.65], class_sep=0.8, random_state=seed
    )
    scale = np.array([3.0, 30.0, 19.0, 16.0, 115.0, 8.0, 0.33, 12.0])
    offset = np.array([4.0, 120.0, 69.0, 20.0, 80.0, 32.0, 0.47, 33.0])
    return (x * scale + offset).astype("float32"), y.astype("float32")


@run("pima-like-mlp-12-8-unscaled-adam-batch-10")
def _(keras, d):
    x, y = _pima_like()
    return _table(
        keras,
        _tabular_mlp(keras, 8, (12, 8)),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        150,
        10,
        "Pima-like table (768 rows, raw units), Dense(12, relu) -> Dense(8, relu) -> Dense(1, sigmoid), "
        "Adam 1e-3, batch 10, validation_split=0.33, 150 epochs (the usual first-Keras-project tutorial)",
        split=0.33,
    )


@run("pima-like-mlp-12-8-scaled-adam-batch-10")
def _(keras, d):
    x, y = _pima_like()
    x = (x - x[:514].mean(0)) / x[:514].std(0)
    return _table(
        keras,
        _tabular_mlp(keras, 8, (12, 8)),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        150,
        10,
        "the same, features standardised on the training rows",
        split=0.33,
    )


@run("pima-like-mlp-12-8-unscaled-sgd-0.01")
def _(keras, d):
    x, y = _pima_like()
    return _table(
        keras,
        _tabular_mlp(keras, 8, (12, 8)),
        keras.optimizers.SGD(0.01),
        x,
        y,
        150,
        10,
        "the same unscaled table, plain SGD(0.01)",
        split=0.33,
    )


@run("titanic-like-mlp-16-8-adam")
def _(keras, d):
    from sklearn.datasets import make_classification

    x, y = make_classification(
        891, 8, n_informative=3, n_redundant=1, flip_y=0.15, weights=[0.62], random_state=5
    )
    x[:, 0] = np.round(np.abs(x[:, 0]) * 15 + 5)  # an age-like column
    x[:, 1] = np.abs(x[:, 1]) * 30  # a fare-like column
    return _table(
        keras,
        _tabular_mlp(keras, 8, (16, 8)),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        100,
        32,
        "Titanic-like table (891 rows, two columns in raw units), Dense(16) -> Dense(8) -> Dense(1, sigmoid), Adam 1e-3",
        split=0.2,
    )


@run("heart-like-mlp-64-32-adam-200")
def _(keras, d):
    from sklearn.datasets import make_classification

    x, y = make_classification(303, 13, n_informative=5, flip_y=0.08, weights=[0.54], random_state=7)
    return _table(
        keras,
        _tabular_mlp(keras, 13, (64, 32)),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        200,
        16,
        "heart-disease-like table (303 rows, 13 standardised features), Dense(64) -> Dense(32) -> "
        "Dense(1, sigmoid), Adam 1e-3, 200 epochs",
        split=0.2,
    )


@run("iris-val-15-sgd-0.01-700-epochs")
def _(keras, d):
    x, y = _sk("iris")
    return _table(
        keras,
        _tabular_mlp(keras, 4, (8,), out=3, act="softmax"),
        keras.optimizers.SGD(0.01),
        x,
        y,
        700,
        16,
        "iris (raw units), Dense(8, relu) -> Dense(3, softmax), plain SGD(0.01), validation_split=0.1 "
        "(15 examples), 700 epochs",
        split=0.1,
        loss="sparse_categorical_crossentropy",
    )


@run("tabular-7-classes-imbalanced-mlp-adam")
def _(keras, d):
    from sklearn.datasets import make_classification

    w = [0.36, 0.49, 0.06, 0.005, 0.016, 0.03]
    x, y = make_classification(
        6000, 20, n_informative=10, n_classes=7, n_clusters_per_class=1, weights=w, random_state=4
    )
    return _table(
        keras,
        _tabular_mlp(keras, 20, (64, 64), out=7, act="softmax"),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        50,
        64,
        "7-class table (6,000 rows, shares 0.36 / 0.49 / 0.06 / ... like forest cover), Dense(64) -> "
        "Dense(64) -> Dense(7, softmax), Adam 1e-3",
        split=5000,
        loss="sparse_categorical_crossentropy",
    )


@run("wine-val-13-sgd-1e-3-500-epochs")
def _(keras, d):
    x, y = _sk("wine")
    return _table(
        keras,
        _tabular_mlp(keras, 13, (16,), out=3, act="softmax"),
        keras.optimizers.SGD(1e-3),
        x,
        y,
        500,
        16,
        "wine (raw units), Dense(16, relu) -> Dense(3, softmax), plain SGD(1e-3), the last 13 rows validate, 500 epochs",
        split=165,
        loss="sparse_categorical_crossentropy",
    )


@run("breast-cancer-raw-adam-val-57-300-epochs")
def _(keras, d):
    x, y = _sk("breast_cancer")
    return _table(
        keras,
        _tabular_mlp(keras, 30, (32, 16)),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        300,
        32,
        "breast cancer (raw units), Dense(32) -> Dense(16) -> Dense(1, sigmoid), Adam 1e-3, validation_split=0.1, 300 epochs",
        split=0.1,
    )


@run("digits-mlp-sgd-1e-3-val-30-300-epochs")
def _(keras, d):
    x, y = _sk("digits")
    return _table(
        keras,
        _tabular_mlp(keras, 64, (32,), out=10, act="softmax"),
        keras.optimizers.SGD(1e-3),
        x / 16.0,
        y,
        300,
        32,
        "scikit-learn digits (/ 16), Dense(32) -> Dense(10, softmax), plain SGD(1e-3), the last 30 rows validate, 300 epochs",
        split=1767,
        loss="sparse_categorical_crossentropy",
    )


@run("moons-200-val-20-mlp-adam-1e-2-700-epochs")
def _(keras, d):
    from sklearn.datasets import make_moons

    x, y = make_moons(200, noise=0.25, random_state=3)
    return _table(
        keras,
        _tabular_mlp(keras, 2, (16, 16)),
        keras.optimizers.Adam(1e-2),
        x,
        y,
        700,
        16,
        "make_moons(200, noise=0.25), Dense(16) -> Dense(16) -> Dense(1, sigmoid), Adam 1e-2, the last 20 rows validate, 700 epochs",
        split=180,
    )


@run("iris-scaled-adam-1e-3-val-15-300-epochs")
def _(keras, d):
    x, y = _sk("iris")
    x = (x - x[:135].mean(0)) / x[:135].std(0)
    return _table(
        keras,
        _tabular_mlp(keras, 4, (8,), out=3, act="softmax"),
        keras.optimizers.Adam(1e-3),
        x,
        y,
        300,
        16,
        "iris (standardised), Dense(8, relu) -> Dense(3, softmax), Adam 1e-3, validation_split=0.1 (15), 300 epochs",
        split=0.1,
        loss="sparse_categorical_crossentropy",
    )


@run("circles-mlp-relu-32-32-sgd-0.01-val-50-500-epochs")
def _(keras, d):
    from sklearn.datasets import make_circles

    x, y = make_circles(500, noise=0.1, factor=0.5, random_state=4)
    return _table(
        keras,
        _tabular_mlp(keras, 2, (32, 32)),
        keras.optimizers.SGD(0.01),
        x,
        y,
        500,
        32,
        "make_circles(500, noise=0.1), Dense(32) -> Dense(32) -> Dense(1, sigmoid), plain SGD(0.01), the last 50 rows validate, 500 epochs",
        split=450,
    )


@run("iris-raw-sgd-1e-3-val-15-700-epochs")
def _(keras, d):
    x, y = _sk("iris")
    return _table(
        keras,
        _tabular_mlp(keras, 4, (8,), out=3, act="softmax"),
        keras.optimizers.SGD(1e-3),
        x,
        y,
        700,
        16,
        "iris (raw units), Dense(8, relu) -> Dense(3, softmax), plain SGD(1e-3), validation_split=0.1 (15), 700 epochs",
        split=0.1,
        loss="sparse_categorical_crossentropy",
    )


@run("blobs-3-sgd-momentum-val-100-200-epochs")
def _(keras, d):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(1000, centers=3, n_features=2, cluster_std=2.0, random_state=2)
    return _table(
        keras,
        _tabular_mlp(keras, 2, (50,), out=3, act="softmax"),
        keras.optimizers.SGD(0.01, momentum=0.9),
        x,
        y,
        200,
        32,
        "make_blobs(1000, 3 centres, cluster_std=2), Dense(50) -> Dense(3, softmax), SGD(0.01, momentum=0.9), the last 100 rows validate, 200 epochs",
        split=900,
        loss="sparse_categorical_crossentropy",
    )


def one(name, out):
    """Train probe ``name`` and write its CSVLogger file and design JSON to folder ``out``."""
    import keras

    keras.utils.set_random_seed(0)
    d = fmnist() if name.startswith("fmnist") else None
    m, fit, meta = RUNS[name](keras, d)
    cbs = list(fit.pop("callbacks", []))
    if os.environ.get("PROBE_SMOKE"):
        fit["epochs"] = 1
    from pipelines.io_utils import atomic_write_text, atomic_write_via

    t = time.time()
    # The log goes to a temporary file renamed at the end: a run cut short leaves no partial probe.
    atomic_write_via(
        out / f"{name}.csv",
        lambda log: m.fit(**fit, callbacks=[*cbs, keras.callbacks.CSVLogger(log)], verbose=0),
    )
    meta.update(
        seconds=round(time.time() - t, 1),
        epochs=fit["epochs"],
        batch_size=fit["batch_size"],
        keras=keras.__version__,
        backend=keras.backend.backend(),
    )
    atomic_write_text(out / f"{name}.json", json.dumps(meta, indent=1))
    print(f"{name}: {meta['seconds']} s", flush=True)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    args = sys.argv[2:]
    workers = 1
    if args[:1] == ["--workers"]:
        workers, args = int(args[1]), args[2:]
    names = args or list(RUNS)
    if workers > 1:
        import subprocess

        queue = list(names)
        procs = []
        while queue or procs:
            while queue and len(procs) < workers:
                n = queue.pop(0)
                procs.append(subprocess.Popen([sys.executable, __file__, str(out), n]))
            time.sleep(0.5)
            procs = [p for p in procs if p.poll() is None]
    else:
        for n in names:
            try:
                one(n, out)
            except Exception as exc:  # noqa: BLE001
                print(f"{n}: FAILED {exc!r}", flush=True)
