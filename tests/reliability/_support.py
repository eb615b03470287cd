"""Helpers of the reliability tests: a generated image folder, the stages before training, and the
real ``curvewatch`` command in a child process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CURVEWATCH = str(Path(sys.executable).parent / "curvewatch")


def make_image_folder(
    root: Path, *, classes: int = 3, per_class: int = 34, size: int = 12, seed: int = 0
) -> Path:
    """``classes`` subfolders of ``per_class`` grayscale PNGs, each class a distinct pattern plus noise."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.normal(60 + 60 * label, 25, (size, size))
            img[label * size // classes : (label + 1) * size // classes] += 80
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
    return root


def prepared(params) -> object:
    """Run fetch, prepare, validate and baseline in this process; return ``params``."""
    from pipelines import steps

    steps.run_fetch(params)
    steps.run_prepare(params)
    steps.run_validate(params, log_failure_to_mlflow=False)
    return params


def curvewatch(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    """Start the real ``curvewatch`` command in a child process (own process group)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [CURVEWATCH, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def idx_source(directory: Path, *, n_train: int = 60, n_test: int = 20, gz: bool = False) -> dict[str, str]:
    """Write four valid Fashion-MNIST-shaped IDX files (4x4 images, every class) into ``directory``.

    Returns:
        File name (without ``.gz``) -> SHA-256 of its decompressed bytes, for ``fetch``'s
        ``expected_sha256``.
    """
    from pipelines.idx import encode_idx
    from tests.unit.test_fetch import write_idx_dir

    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": encode_idx(rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8)),
        "train-labels-idx1-ubyte": encode_idx((np.arange(n_train) % 10).astype(np.uint8)),
        "t10k-images-idx3-ubyte": encode_idx(rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": encode_idx((np.arange(n_test) % 10).astype(np.uint8)),
    }
    return write_idx_dir(directory, files, gz=gz)
