"""Fixtures for the data-validation tests: small synthetic manifests written under each test's tmp_path."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pipelines.config import ValidateConfig, load_params
from pipelines.prepare import MANIFEST_COLUMNS

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 10
IMAGE_SHAPE = [28, 28, 1]
# Rows per class in each split: 300 / 100 / 100 rows in all, every class at a 10% share.
PER_CLASS = {"train": 30, "val": 10, "test": 10}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_manifest(per_class: dict[str, int] | None = None, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """A valid manifest: balanced labels, unique images, and identical intensity histograms per split.

    Per-image means cycle through 10 fixed values independently of the label, so every split has the
    same mean-intensity histogram and label distribution (both KL divergences are ~0).
    """
    rows = []
    for split, n in (per_class or PER_CLASS).items():
        for i in range(n * num_classes):
            label = i % num_classes
            mean = 20.0 + 20.0 * ((i // num_classes) % 10) + 0.5
            rows.append(
                {
                    "id": f"{split}-{i:05d}",
                    "split": split,
                    "label": label,
                    "content_hash": _hash(f"{split}-{i}"),
                    "height": IMAGE_SHAPE[0],
                    "width": IMAGE_SHAPE[1],
                    "channels": IMAGE_SHAPE[2],
                    "pixel_mean": mean,
                    "pixel_std": 40.0,
                    "pixel_min": 0,
                    "pixel_max": 255,
                }
            )
    # The dtypes the prepare stage writes (one declaration: pipelines.prepare.MANIFEST_COLUMNS).
    return pd.DataFrame(rows).astype(MANIFEST_COLUMNS)


def write_prepared(directory: Path, manifest: pd.DataFrame, num_classes: int = NUM_CLASSES) -> Path:
    """Write ``manifest.parquet`` and ``classes.json`` (the prepare stage's contract) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(directory / "manifest.parquet", index=False)
    classes = {
        "class_names": [f"class_{k}" for k in range(num_classes)],
        "num_classes": num_classes,
        "image_shape": IMAGE_SHAPE,
    }
    (directory / "classes.json").write_text(json.dumps(classes))
    return directory


@pytest.fixture(scope="session")
def cfg() -> ValidateConfig:
    """The real ``validate`` section of the repository's params.yaml (its bounds fit 10 balanced classes)."""
    return load_params(REPO / "params.yaml").validate_


@pytest.fixture(scope="session")
def suites_dir() -> Path:
    return REPO / "expectations"


@pytest.fixture
def good_manifest() -> pd.DataFrame:
    return make_manifest()


@pytest.fixture
def prepared(tmp_path: Path) -> Callable[[pd.DataFrame], Path]:
    """Write a manifest under this test's tmp_path and return the prepared directory."""

    def _write(manifest: pd.DataFrame, num_classes: int = NUM_CLASSES) -> Path:
        return write_prepared(tmp_path / "prepared", manifest, num_classes)

    return _write


@pytest.fixture
def hash_of() -> Callable[[str], str]:
    return _hash
