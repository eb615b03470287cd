"""Fixtures for the reliability matrix (RELIABILITY.md): a tiny 3-class image folder and a project
around it (params.yaml under tmp_path, its own MLflow store), and helpers that run the real
``curvewatch`` command in a child process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability._support import make_image_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes x 34 images, 12x12 grayscale: 102 images."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def folder_project(params_file, image_folder, mlflow_uri, tmp_path, monkeypatch):
    """A project on ``image_folder`` with only the folder keys set plus a tiny MLP training.

    Returns ``make(updates) -> Params`` that writes params.yaml (``updates`` deep-merged) in
    tmp_path, which is also the working directory.
    """
    from pipelines.config import load_params

    monkeypatch.chdir(tmp_path)

    def make(updates: dict | None = None) -> object:
        base = {
            "base": {"dataset": "folder"},
            "fetch": {"image_folder": str(image_folder), "image_size": [12, 12]},
            "train": {"model": "mlp", "epochs": 3, "batch_size": 16, "mixed_precision": "off"},
        }
        for key, value in (updates or {}).items():
            base.setdefault(key, {}).update(value)
        return load_params(params_file(base))

    return make
