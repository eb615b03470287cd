"""Offline data views for the corpus: each is a fixed train/validation split of one dataset.

A *family* is the source dataset (it decides the tune/test split of the corpus); a *view* is one
way of cutting it (training size, validation size, class imbalance, label shuffle, bad scaling).
Every loader is deterministic (``DATA_SEED``), cached per process, and returns
``(x_train, y_train, x_val, y_val)`` with x float32 and y int64 in ``0..K-1``.

Sources, all on the machine (no downloads):

- scikit-learn's bundled sets: ``load_digits``, ``load_wine``, ``load_iris``,
  ``load_breast_cancer`` (https://scikit-learn.org/stable/datasets/toy_dataset.html);
- scikit-learn's generators ``make_classification`` (``weights`` sets the class imbalance),
  ``make_moons`` and ``make_blobs`` (https://scikit-learn.org/stable/datasets/sample_generators.html);
- Fashion-MNIST IDX files in ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``),
  read with the fixture generator's reader (``benchmarks.curve_fixtures.generate``);
- ``shapes``: 16x16 images drawn here with numpy (bars, squares, diagonals, crosses plus noise);
- ``textures``: 16x16 images drawn here with numpy (gratings at four orientations, checkerboards and
  rings, random frequency and phase, plus noise);
- ``diabetes``: scikit-learn's ``load_diabetes`` (442 patients, 10 features), its disease-progression
  score cut at the 60th percentile into a binary task (majority 0.6).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.curve_fixtures.generate import DATA_SEED, FMNIST_DIR, _read_idx, digits

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

#: Which split each family belongs to. Rules may be fitted on ``tune`` only; ``test`` is held out.
#: Test holds Fashion-MNIST (real images), breast_cancer (real binary, imbalanced tabular),
#: shapes (synthetic images) and blobs (synthetic tabular): one real and one synthetic source of
#: each kind, so that no kind of data is seen only in tuning. Tune mirrors each kind: digits (real
#: images), diabetes (real binary, imbalanced tabular), textures (synthetic images, validation sets
#: up to 10,000) and synth_tabular / moons (synthetic tabular).
SPLITS: dict[str, str] = {
    "digits": "tune",
    "wine": "tune",
    "iris": "tune",
    "synth_tabular": "tune",
    "moons": "tune",
    "textures": "tune",
    "diabetes": "tune",
    "fashion_mnist": "test",
    "breast_cancer": "test",
    "shapes": "test",
    "blobs": "test",
}


def _split(
    x: np.ndarray, y: np.ndarray, n_val: int, n_train: int | None = None, seed: int = DATA_SEED
) -> Arrays:
    """Shuffle with a fixed seed, take ``n_val`` for validation and ``n_train`` of the rest."""
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype("float32"), y[order].astype("int64")
    rest = slice(n_val, None if n_train is None else n_val + n_train)
    return x[rest], y[rest], x[:n_val], y[:n_val]


def _standardize(arrays: Arrays) -> Arrays:
    """Scale features to zero mean, unit variance using training statistics only."""
    x_tr, y_tr, x_va, y_va = arrays
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-6
    return ((x_tr - mean) / std).astype("float32"), y_tr, ((x_va - mean) / std).astype("float32"), y_va


def _subsample_to_share(
    x: np.ndarray, y: np.ndarray, majority: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop minority (label != 0) examples of a binary task until label 0 holds ``majority``."""
    rng = np.random.default_rng(seed)
    maj, mino = np.flatnonzero(y == 0), np.flatnonzero(y != 0)
    keep_min = int(round(len(maj) * (1 - majority) / majority))
    if keep_min < len(mino):
        mino = rng.choice(mino, size=keep_min, replace=False)
    else:
        maj = rng.choice(maj, size=int(round(len(mino) * majority / (1 - majority))), replace=False)
    idx = rng.permutation(np.concatenate([maj, mino]))
    return x[idx], y[idx]


def _shuffle_labels(arrays: Arrays, seed: int = DATA_SEED + 1) -> Arrays:
    """Permute training and validation labels: the inputs carry no information about them."""
    x_tr, y_tr, x_va, y_va = arrays
    rng = np.random.default_rng(seed)
    return x_tr, rng.permutation(y_tr), x_va, rng.permutation(y_va)


# --- scikit-learn bundled sets -------------------------------------------------------------------


@functools.cache
def digits_view(
    n_train: int = 1197, binary: bool = False, image: bool = False, shuffled: bool = False
) -> Arrays:
    """Digits (1,797 8x8 images, pixels / 16) with the fixture generator's 600-example validation split.

    Args:
        n_train: training examples (at most 1,197).
        binary: label 0 = "not a zero", 1 = "a zero" (majority share about 0.9).
        image: ``(N, 8, 8, 1)`` instead of ``(N, 64)``.
        shuffled: permute the labels (no signal).
    """
    x_tr, y_tr, x_va, y_va = digits(n_train=n_train, image=image)
    if binary:
        y_tr, y_va = (y_tr == 0).astype("int64"), (y_va == 0).astype("int64")
    arrays = (x_tr, y_tr, x_va, y_va)
    return _shuffle_labels(arrays) if shuffled else arrays


@functools.cache
def wine_view(scaled: bool = True, n_val: int = 60) -> Arrays:
    """Wine (178 examples, 13 chemical features, 3 classes, majority share 0.40).

    Args:
        scaled: standardise features; ``False`` keeps raw units (proline ~1,000, hue ~1).
        n_val: validation examples; the rest train.
    """
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    arrays = _split(x, y, n_val)
    return _standardize(arrays) if scaled else arrays


@functools.cache
def iris_view(n_val: int = 30, shuffled: bool = False) -> Arrays:
    """Iris (150 examples, 4 features, 3 balanced classes), standardised; 30 validation examples."""
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    arrays = _standardize(_split(x, y, n_val))
    return _shuffle_labels(arrays) if shuffled else arrays


@functools.cache
def breast_cancer_view(
    scaled: bool = True, n_train: int | None = None, n_val: int = 170, shuffled: bool = False
) -> Arrays:
    """Breast cancer Wisconsin (569 examples, 30 features, binary; benign share 0.63).

    Label 0 = benign (the majority), 1 = malignant, so that label 0 is the majority as elsewhere.

    Args:
        scaled: standardise; ``False`` keeps raw units (areas ~1,000, smoothness ~0.1).
        n_train: training examples (default: all 399 not in validation).
        n_val: validation examples.
        shuffled: permute the labels.
    """
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    arrays = _split(x, 1 - y, n_val, n_train)  # sklearn: 1 = benign; flip so 0 = majority
    arrays = _standardize(arrays) if scaled else arrays
    return _shuffle_labels(arrays) if shuffled else arrays


# --- scikit-learn generators ------------------------------------------------------------------------


@functools.cache
def synth_tabular_view(
    n_train: int = 1000,
    n_val: int = 1000,
    classes: int = 2,
    majority: float = 0.5,
    flip_y: float = 0.02,
    n_features: int = 20,
    shuffled: bool = False,
) -> Arrays:
    """``make_classification``: 20 features (8 informative), ``weights`` set for the majority share.

    Args:
        majority: share of class 0; the others split the rest equally (0.5..0.95).
        flip_y: fraction of labels assigned at random (label noise).
    """
    from sklearn.datasets import make_classification

    rest = (1 - majority) / (classes - 1)
    weights = [majority] + [rest] * (classes - 1)
    x, y = make_classification(
        n_samples=n_train + n_val,
        n_features=n_features,
        n_informative=8,
        n_redundant=4,
        n_classes=classes,
        n_clusters_per_class=2,
        weights=weights,
        flip_y=flip_y,
        class_sep=1.0,
        random_state=DATA_SEED,
    )
    arrays = _standardize(_split(x, y, n_val))
    return _shuffle_labels(arrays) if shuffled else arrays


@functools.cache
def moons_view(n_train: int = 400, n_val: int = 40, noise: float = 0.25) -> Arrays:
    """``make_moons``: two interleaved half-circles in 2-D (balanced binary, not linearly separable)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_train + n_val, noise=noise, random_state=DATA_SEED)
    return _split(x, y, n_val)


@functools.cache
def blobs_view(
    n_train: int = 800,
    n_val: int = 300,
    classes: int = 4,
    majority: float | None = None,
    std: float = 3.0,
    shuffled: bool = False,
) -> Arrays:
    """``make_blobs``: ``classes`` Gaussian clusters in 8-D with overlap (``std``), standardised.

    Args:
        majority: share of class 0 (others equal); ``None`` = balanced.
    """
    from sklearn.datasets import make_blobs

    total = n_train + n_val
    if majority is None:
        sizes = [total // classes] * classes
    else:
        rest = int(round(total * (1 - majority) / (classes - 1)))
        sizes = [total - rest * (classes - 1)] + [rest] * (classes - 1)
    x, y = make_blobs(
        n_samples=sizes, n_features=8, cluster_std=std, center_box=(-6, 6), random_state=DATA_SEED
    )
    arrays = _standardize(_split(x, y, n_val))
    return _shuffle_labels(arrays) if shuffled else arrays


# --- Fashion-MNIST -----------------------------------------------------------------------------------


@functools.cache
def _fmnist_raw(test_file: bool) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if test_file else "train"
    images = _read_idx(FMNIST_DIR / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx(FMNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8).astype("int64")
    return images, labels


@functools.cache
def fmnist_view(
    n_train: int = 2000,
    n_val: int = 1000,
    flat: bool = True,
    binary_class: int | None = None,
    majority: float | None = None,
    shuffled: bool = False,
    raw_pixels: bool = False,
) -> Arrays:
    """A fixed subset of Fashion-MNIST, pixels / 255.

    Training images come from the training file; validation images from the training file too
    (disjoint) when ``n_val <= 5000``, otherwise the first ``n_val`` images of the t10k file.

    Args:
        flat: ``(N, 784)`` instead of ``(N, 28, 28, 1)``.
        binary_class: label 1 = this class, 0 = every other class (majority share 0.9).
        majority: for binary views, subsample the training and validation sets to this share of 0.
        shuffled: permute the labels.
        raw_pixels: keep pixels in 0..255 (no scaling).

    Raises:
        FileNotFoundError: when ``/usr/share/datasets/fashion-mnist`` lacks the IDX files.
    """
    images, labels = _fmnist_raw(test_file=False)
    idx = np.random.default_rng(DATA_SEED).permutation(len(labels))
    pool = 4 * n_train if majority is not None else n_train
    tr = idx[:pool]
    if n_val <= 5000:
        va_idx = idx[30000 : 30000 + (4 * n_val if majority is not None else n_val)]
        va_x, va_y = images[va_idx], labels[va_idx]
    else:
        t_images, t_labels = _fmnist_raw(test_file=True)
        va_x, va_y = t_images[:n_val], t_labels[:n_val]
    x_tr, y_tr = images[tr], labels[tr]
    if binary_class is not None:
        y_tr, va_y = (y_tr == binary_class).astype("int64"), (va_y == binary_class).astype("int64")
        if majority is not None:
            x_tr, y_tr = _subsample_to_share(x_tr, y_tr, majority, DATA_SEED)
            va_x, va_y = _subsample_to_share(va_x, va_y, majority, DATA_SEED + 1)
            x_tr, y_tr, va_x, va_y = x_tr[:n_train], y_tr[:n_train], va_x[:n_val], va_y[:n_val]
    scale = 1.0 if raw_pixels else 255.0
    x_tr, va_x = (x_tr / scale).astype("float32"), (va_x / scale).astype("float32")
    if flat:
        x_tr, va_x = x_tr.reshape(len(x_tr), -1), va_x.reshape(len(va_x), -1)
    arrays = (x_tr, y_tr.astype("int64"), va_x, va_y.astype("int64"))
    return _shuffle_labels(arrays) if shuffled else arrays


# --- shapes: synthetic images --------------------------------------------------------------------------

SHAPES = ("horizontal bar", "vertical bar", "square outline", "diagonal", "cross")


def _draw(kind: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    # Shapes sit near the centre with a few pixels of jitter in position and size: an MLP can
    # learn them from ~1,000 examples (anywhere in the frame, it could not: 0.55 with noise 0.25).
    img = np.zeros((size, size), dtype="float32")
    a = int(rng.integers(2, 6))
    b = int(rng.integers(size - 6, size - 2))
    c = int(rng.integers(size // 2 - 3, size // 2 + 2))
    w = int(rng.integers(1, 3))
    if kind == 0:
        img[c : c + w, a:b] = 1.0
    elif kind == 1:
        img[a:b, c : c + w] = 1.0
    elif kind == 2:
        img[a:b, a] = img[a:b, b - 1] = img[a, a:b] = img[b - 1, a:b] = 1.0
    elif kind == 3:
        for i in range(a, b):
            img[i, min(size - 1, i + c - a)] = 1.0
    else:
        mid = (a + b) // 2
        img[mid, a:b] = img[a:b, mid] = 1.0
    return img


@functools.cache
def shapes_view(
    n_train: int = 1000,
    n_val: int = 500,
    classes: int = 5,
    majority: float | None = None,
    noise: float = 0.6,
    flat: bool = True,
    shuffled: bool = False,
) -> Arrays:
    """16x16 images of one drawn shape each (see :data:`SHAPES`) plus Gaussian pixel noise.

    Args:
        classes: the first ``classes`` shapes (2..5).
        majority: share of class 0; ``None`` = balanced.
        noise: standard deviation of the additive Gaussian noise (the shapes have intensity 1).
        flat: ``(N, 256)`` instead of ``(N, 16, 16, 1)``.
        shuffled: permute the labels.
    """
    return _drawn_images(_draw, DATA_SEED, n_train, n_val, classes, majority, noise, flat, shuffled)


def _drawn_images(
    draw: Callable[[int, np.random.Generator], np.ndarray],
    seed: int,
    n_train: int,
    n_val: int,
    classes: int,
    majority: float | None,
    noise: float,
    flat: bool,
    shuffled: bool,
    raw_pixels: bool = False,
) -> Arrays:
    """Labels drawn with the class shares asked for, one 16x16 image per label from ``draw``,
    Gaussian pixel noise, then the fixed split (the views of :func:`shapes_view`, :func:`textures_view`)."""
    rng = np.random.default_rng(seed)
    total = n_train + n_val
    if majority is None:
        probs = np.full(classes, 1.0 / classes)
    else:
        probs = np.array([majority] + [(1 - majority) / (classes - 1)] * (classes - 1))
    y = rng.choice(classes, size=total, p=probs)
    x = np.stack([draw(int(k), rng) for k in y]) + rng.normal(0, noise, size=(total, 16, 16)).astype(
        "float32"
    )
    if raw_pixels:
        x = np.clip(np.round(128 + 60 * x), 0, 255).astype("float32")
    x = x[..., None] if not flat else x.reshape(total, -1)
    arrays = _split(x, y, n_val)
    return _shuffle_labels(arrays) if shuffled else arrays


# --- textures: synthetic images (tune split) ----------------------------------------------------------

TEXTURES = (
    "horizontal grating",
    "vertical grating",
    "diagonal grating",
    "anti-diagonal grating",
    "checkerboard",
    "rings",
)


def _texture(kind: int, rng: np.random.Generator, size: int = 16) -> np.ndarray:
    # A whole-frame pattern with random period (3-6 pixels), phase and contrast (0.6-1): unlike
    # shapes, the class is in the texture's orientation, not in a located stroke.
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    period = float(rng.uniform(3.0, 6.0))
    phase = float(rng.uniform(0, 2 * np.pi))
    k = 2 * np.pi / period
    if kind == 0:
        img = np.sin(k * yy + phase)
    elif kind == 1:
        img = np.sin(k * xx + phase)
    elif kind == 2:
        img = np.sin(k * (xx + yy) / np.sqrt(2) + phase)
    elif kind == 3:
        img = np.sin(k * (xx - yy) / np.sqrt(2) + phase)
    elif kind == 4:
        img = np.sin(k * xx + phase) * np.sin(k * yy + phase)
    else:
        cy, cx = rng.uniform(5, size - 5, size=2)
        img = np.sin(k * np.hypot(yy - cy, xx - cx) + phase)
    return (float(rng.uniform(0.6, 1.0)) * img).astype("float32")


@functools.cache
def textures_view(
    n_train: int = 1500,
    n_val: int = 1000,
    classes: int = 6,
    majority: float | None = None,
    noise: float = 0.8,
    flat: bool = True,
    shuffled: bool = False,
    raw_pixels: bool = False,
) -> Arrays:
    """16x16 images of one texture each (see :data:`TEXTURES`) plus Gaussian pixel noise.

    Args:
        n_train, n_val: examples.
        classes: the first ``classes`` textures (2..6).
        majority: share of class 0; ``None`` = balanced.
        noise: standard deviation of the additive Gaussian noise (the textures have amplitude <= 1).
        flat: ``(N, 256)`` instead of ``(N, 16, 16, 1)``.
        shuffled: permute the labels.
        raw_pixels: 8-bit intensities (``128 + 60 x`` clipped to 0..255) instead of values near 0.
    """
    return _drawn_images(
        _texture, DATA_SEED + 7, n_train, n_val, classes, majority, noise, flat, shuffled, raw_pixels
    )


@functools.cache
def diabetes_view(
    scaled: bool = True, n_train: int | None = None, n_val: int = 142, shuffled: bool = False
) -> Arrays:
    """Diabetes (442 patients, 10 features; scikit-learn's ``load_diabetes``) as a binary task.

    Label 1 = disease progression one year after baseline above its 60th percentile (so label 0,
    the majority, holds 0.6).

    Args:
        scaled: standardise; ``False`` keeps raw units (``scaled=False`` in scikit-learn: age in
            years, blood pressure ~90, serum measurements ~100-200, sex 1/2).
        n_train: training examples (default: all 300 not in validation).
        n_val: validation examples.
        shuffled: permute the labels.
    """
    from sklearn.datasets import load_diabetes

    x, target = load_diabetes(return_X_y=True, scaled=False)
    y = (target > np.percentile(target, 60)).astype("int64")
    arrays = _split(x, y, n_val, n_train)
    arrays = _standardize(arrays) if scaled else arrays
    return _shuffle_labels(arrays) if shuffled else arrays


# --- registry ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One named data view: its family (which decides the split) and its loader."""

    family: str
    load: Callable[[], Arrays]
    note: str

    @property
    def split(self) -> str:
        return SPLITS[self.family]


def _v(family: str, note: str, fn: Callable[..., Arrays], **kwargs: object) -> View:
    return View(family, functools.partial(fn, **kwargs), note)


VIEWS: dict[str, View] = {
    # tune ------------------------------------------------------------------------------------------
    "digits": _v("digits", "digits 10-class, 1,197 train / 600 val", digits_view),
    "digits-200": _v("digits", "digits 10-class, 200 train / 600 val", digits_view, n_train=200),
    "digits-img": _v("digits", "digits as (8, 8, 1) images", digits_view, image=True),
    "digits-zero": _v("digits", "digits binary 'is it a zero' (majority 0.9)", digits_view, binary=True),
    "digits-shuffled": _v("digits", "digits with permuted labels", digits_view, shuffled=True),
    "wine": _v("wine", "wine 3-class standardised, 118 train / 60 val", wine_view),
    "wine-raw": _v("wine", "wine in raw units (proline ~1e3)", wine_view, scaled=False),
    "iris": _v("iris", "iris 3-class standardised, 120 train / 30 val", iris_view),
    "iris-shuffled": _v("iris", "iris with permuted labels", iris_view, shuffled=True),
    "synth-bin": _v("synth_tabular", "make_classification binary 0.5, 1,000/1,000", synth_tabular_view),
    "synth-bin-0.8": _v(
        "synth_tabular", "binary, majority 0.8, 1,000/2,000", synth_tabular_view, majority=0.8, n_val=2000
    ),
    "synth-bin-0.95": _v(
        "synth_tabular",
        "binary, majority 0.95, 2,000/5,000",
        synth_tabular_view,
        majority=0.95,
        n_train=2000,
        n_val=5000,
    ),
    "synth-5": _v(
        "synth_tabular", "5-class, majority 0.5, 1,500/1,000", synth_tabular_view, classes=5, n_train=1500
    ),
    "synth-5-shuffled": _v(
        "synth_tabular",
        "5-class, majority 0.5, permuted labels, 1,500/1,000",
        synth_tabular_view,
        classes=5,
        n_train=1500,
        shuffled=True,
    ),
    "synth-5-small-val-shuffled": _v(
        "synth_tabular",
        "5-class with permuted labels, 1,000 train / 40 val",
        synth_tabular_view,
        classes=5,
        n_val=40,
        shuffled=True,
    ),
    "synth-5-small-val": _v(
        "synth_tabular", "5-class, 1,000 train / 40 val", synth_tabular_view, classes=5, n_val=40
    ),
    "synth-noisy-small": _v(
        "synth_tabular",
        "binary, flip_y 0.4 (~20 % wrong labels), 150 train / 1,000 val",
        synth_tabular_view,
        n_train=150,
        flip_y=0.4,
    ),
    "synth-bin-0.8-shuffled": _v(
        "synth_tabular", "binary 0.8 with permuted labels", synth_tabular_view, majority=0.8, shuffled=True
    ),
    "moons": _v("moons", "make_moons noise 0.25, 400 train / 40 val", moons_view),
    "moons-big-val": _v("moons", "make_moons, 400 train / 2,000 val", moons_view, n_val=2000),
    "moons-tiny-val": _v("moons", "make_moons noise 0.25, 400 train / 16 val", moons_view, n_val=16),
    "wine-tiny-val": _v("wine", "wine 3-class standardised, 165 train / 13 val", wine_view, n_val=13),
    "moons-small-train": _v(
        "moons", "make_moons noise 0.35, 60 train / 500 val", moons_view, n_train=60, n_val=500, noise=0.35
    ),
    "textures": _v("textures", "textures 6-class flat, 1,500 train / 1,000 val", textures_view),
    "textures-img": _v("textures", "textures 6-class (16, 16, 1)", textures_view, flat=False),
    "textures-10k": _v(
        "textures", "textures 6-class flat, 1,500 train / 10,000 val", textures_view, n_val=10000
    ),
    "textures-small-val": _v("textures", "textures 6-class, 1,500 train / 40 val", textures_view, n_val=40),
    "textures-small-val-shuffled": _v(
        "textures",
        "textures 6-class with permuted labels, 1,500 train / 40 val",
        textures_view,
        n_val=40,
        shuffled=True,
    ),
    "textures-small-train": _v(
        "textures",
        "textures 6-class, 200 train / 1,000 val, noise 1.0",
        textures_view,
        n_train=200,
        noise=1.0,
    ),
    "textures-bin-0.9": _v(
        "textures",
        "textures binary (horizontal vs vertical grating), majority 0.9",
        textures_view,
        classes=2,
        majority=0.9,
    ),
    "textures-raw": _v("textures", "textures flat, raw 0..255 intensities", textures_view, raw_pixels=True),
    "textures-shuffled": _v("textures", "textures with permuted labels", textures_view, shuffled=True),
    "diabetes": _v(
        "diabetes", "diabetes binary (progression > 60th pct), 300 train / 142 val", diabetes_view
    ),
    "diabetes-raw": _v("diabetes", "diabetes in raw units (blood pressure ~90)", diabetes_view, scaled=False),
    "diabetes-small": _v("diabetes", "diabetes, 40 train / 142 val", diabetes_view, n_train=40),
    "diabetes-shuffled": _v("diabetes", "diabetes with permuted labels", diabetes_view, shuffled=True),
    # test ------------------------------------------------------------------------------------------
    "fmnist": _v("fashion_mnist", "Fashion-MNIST 10-class flat, 2,000 train / 1,000 val", fmnist_view),
    "fmnist-img": _v("fashion_mnist", "Fashion-MNIST (28, 28, 1), 2,000 / 1,000", fmnist_view, flat=False),
    "fmnist-10k": _v(
        "fashion_mnist", "Fashion-MNIST flat, 2,000 train / 10,000 val (t10k)", fmnist_view, n_val=10000
    ),
    "fmnist-300": _v("fashion_mnist", "Fashion-MNIST flat, 300 train / 1,000 val", fmnist_view, n_train=300),
    "fmnist-raw": _v("fashion_mnist", "Fashion-MNIST flat, raw 0..255 pixels", fmnist_view, raw_pixels=True),
    "fmnist-shirt": _v("fashion_mnist", "binary 'shirt vs rest' (majority 0.9)", fmnist_view, binary_class=6),
    "fmnist-bag-0.95": _v(
        "fashion_mnist",
        "binary 'bag vs rest' subsampled to majority 0.95, 2,000 / 2,000",
        fmnist_view,
        binary_class=8,
        majority=0.95,
        n_val=2000,
    ),
    "fmnist-shuffled": _v("fashion_mnist", "Fashion-MNIST with permuted labels", fmnist_view, shuffled=True),
    "bc": _v(
        "breast_cancer", "breast cancer standardised, 399 train / 170 val (majority 0.63)", breast_cancer_view
    ),
    "bc-raw": _v("breast_cancer", "breast cancer in raw units", breast_cancer_view, scaled=False),
    "bc-small": _v("breast_cancer", "breast cancer, 40 train / 170 val", breast_cancer_view, n_train=40),
    "bc-tiny-val": _v("breast_cancer", "breast cancer, 556 train / 13 val", breast_cancer_view, n_val=13),
    "bc-shuffled": _v(
        "breast_cancer", "breast cancer with permuted labels", breast_cancer_view, shuffled=True
    ),
    "shapes": _v("shapes", "shapes 5-class flat, 1,000 train / 500 val", shapes_view),
    "shapes-img": _v("shapes", "shapes 5-class (16, 16, 1)", shapes_view, flat=False),
    "shapes-small-val": _v("shapes", "shapes 5-class, 1,000 train / 40 val", shapes_view, n_val=40),
    "shapes-small-train": _v(
        "shapes", "shapes 5-class, 150 train / 500 val, noise 0.9", shapes_view, n_train=150, noise=0.9
    ),
    "shapes-bin-0.9": _v(
        "shapes", "shapes binary (bar vs square), majority 0.9", shapes_view, classes=2, majority=0.9
    ),
    "shapes-shuffled": _v("shapes", "shapes with permuted labels", shapes_view, shuffled=True),
    "blobs": _v("blobs", "make_blobs 4 clusters in 8-D (std 3), 800 / 300", blobs_view),
    "blobs-big-val": _v("blobs", "make_blobs 4 clusters, 800 train / 5,000 val", blobs_view, n_val=5000),
    "blobs-0.7": _v(
        "blobs", "make_blobs 3 clusters, majority 0.7, 800 / 300", blobs_view, classes=3, majority=0.7
    ),
    "blobs-small-train": _v(
        "blobs",
        "make_blobs 4 clusters (std 4), 80 train / 1,000 val",
        blobs_view,
        n_train=80,
        n_val=1000,
        std=4.0,
    ),
    "blobs-tiny-val": _v("blobs", "make_blobs 4 clusters in 8-D (std 3), 800 / 16", blobs_view, n_val=16),
    "blobs-shuffled": _v("blobs", "make_blobs with permuted labels", blobs_view, shuffled=True),
}


def load_view(name: str) -> Arrays:
    """Load a data view by name.

    Raises:
        KeyError: ``name`` is not in :data:`VIEWS` (the message lists the known views).
    """
    if name not in VIEWS:
        raise KeyError(f"unknown data view {name!r}; known: {', '.join(sorted(VIEWS))}")
    return VIEWS[name].load()
