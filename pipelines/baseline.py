"""A simple baseline's validation accuracy: what a model must beat to have learnt anything useful.

The curve engine (:func:`pipelines.curves.diagnose.diagnose`, ``baseline_accuracy=``) calls a
validation plateau below this level a stall, and an underfit when training accuracy is that low
too. The baseline is multinomial logistic regression on standardised, flattened pixels: the
classic linear reference for (Fashion-)MNIST (about 0.84 on Fashion-MNIST with all 60,000 training
images; Xiao, Rasul & Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
Learning Algorithms", 2017, benchmark table), cheap enough to compute for every retrain.
"""

from __future__ import annotations

import warnings

import numpy as np

# L2 strength per training example. scikit-learn minimises C * sum(loss) + ||w||^2 / 2, i.e. the mean
# loss plus ||w||^2 / (2 C N): a fixed C regularises small training sets harder than large ones, so
# C = 1 / (WEIGHT_DECAY * N) keeps the penalty per example fixed instead. 0.01 on standardised
# pixels: within a point of the best C on digits (1,197 images) and Fashion-MNIST (3,000 and
# 10,000 images), and well-conditioned enough for lbfgs to settle in a few dozen iterations.
WEIGHT_DECAY = 0.01
# lbfgs reaches its validation accuracy to within 0.1 point by ~30 iterations at this penalty on
# 10,000 Fashion-MNIST images; the cap only bounds the time on harder data.
MAX_ITER = 100
# One BLAS thread: lbfgs's matrix products here are small, and on a shared 2-core machine a
# multi-threaded BLAS spends most of its time waiting for cores (measured under load: 0.9 s with one
# thread vs 11 s with two for 3,000 Fashion-MNIST images).
BLAS_THREADS = 1


def baseline_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int,
    max_train: int = 10_000,
) -> float:
    """Validation accuracy of a logistic regression trained on (a subsample of) the training split.

    Steps: a stratified subsample of at most ``max_train`` training examples
    (``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``; all of
    them when there are fewer), images flattened to vectors, ``StandardScaler`` fitted on that
    subsample, then ``LogisticRegression(C=1 / (0.01 n), solver="lbfgs", max_iter=100)`` with n the
    training examples used (a fixed L2 penalty of 0.01 per example on the mean loss; multinomial
    cross-entropy; https://scikit-learn.org/stable/modules/linear_model.html#logistic-regression),
    scored by accuracy on the whole validation split. A ``ConvergenceWarning`` at the iteration
    cap is silenced: the baseline is a reference level, and the last iterations move it by less
    than the validation set's sampling noise. BLAS runs on one thread (see ``BLAS_THREADS``).
    Measured: 3.4 s for a 10,000-image subsample of 50,000 Fashion-MNIST training images scored
    on 10,000 validation images (0.840), on a shared 2-core machine under load.

    Args:
        x_train: (N, ...) training inputs, e.g. (N, 28, 28, 1) float32 in [0, 1] or uint8 pixels;
            flattened to (N, D).
        y_train: (N,) integer class labels.
        x_val: (M, ...) validation inputs with the same trailing shape as ``x_train``.
        y_val: (M,) integer class labels.
        seed: seeds the subsample (the solver is deterministic).
        max_train: most training examples used (examples); caps the cost on large splits.

    Returns:
        Validation accuracy, a fraction in [0, 1].

    Raises:
        ValueError: empty splits, inputs and labels of different lengths, train and validation
            inputs of different trailing shapes, fewer than two classes in the training labels,
            or ``max_train`` smaller than the number of classes.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    x_train, x_val = np.asarray(x_train), np.asarray(x_val)
    y_train, y_val = np.asarray(y_train).ravel(), np.asarray(y_val).ravel()
    if len(x_train) == 0 or len(x_val) == 0:
        raise ValueError("baseline_accuracy needs non-empty training and validation splits")
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError(
            f"inputs and labels differ in length: train {len(x_train)} vs {len(y_train)}, "
            f"val {len(x_val)} vs {len(y_val)}"
        )
    if x_train.shape[1:] != x_val.shape[1:]:
        raise ValueError(f"train inputs {x_train.shape[1:]} and val inputs {x_val.shape[1:]} differ in shape")
    classes = np.unique(y_train)
    if classes.size < 2:
        raise ValueError(f"need at least two classes in y_train, got {classes.tolist()}")
    if max_train < classes.size:
        raise ValueError(f"max_train ({max_train}) must be at least the number of classes ({classes.size})")
    if len(x_train) > max_train:
        # Stratified, so every class keeps its share even in a small subsample.
        idx, _ = train_test_split(
            np.arange(len(y_train)), train_size=max_train, stratify=y_train, random_state=seed
        )
        x_train, y_train = x_train[idx], y_train[idx]
    x_tr = x_train.reshape(len(x_train), -1).astype(np.float32)
    x_va = x_val.reshape(len(x_val), -1).astype(np.float32)
    c = 1.0 / (WEIGHT_DECAY * len(x_tr))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))
    with warnings.catch_warnings(), threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_tr, y_train)
        return float(model.score(x_va, y_val))
