"""One Prefect test server per session for the flow tests (Prefect's ``prefect_test_harness``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.browser_support import screenshot_dir  # noqa: F401 - a pytest fixture (test_deployments.py)
from tests.conftest import dvc


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    # The temporary server takes 23-30 s to start on these machines, more under load.
    with prefect_test_harness(server_startup_timeout=240):
        # The harness sets the URL in Prefect's settings context only; the CLI
        # (`pipelines.cli.ensure_prefect_server`) reads $PREFECT_API_URL and would otherwise start
        # the project's own server in the checkout and leave it running after the session.
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
            yield


@pytest.fixture
def digits_folder(tmp_path):
    """A user's image folder: 3 classes of scikit-learn's digits as 8x8 grayscale PNGs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "images"
    for label, name in enumerate(["zero", "one", "two"]):
        folder = root / name
        folder.mkdir(parents=True)
        images = digits.images[digits.target == label][:90]
        for i, img in enumerate(images):
            Image.fromarray((img * 15.9375).astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def folder_params(params_file, digits_folder, mlflow_uri):
    """Params for a tiny, fast run on ``digits_folder``; ``updates`` are merged on top."""

    def make(updates: dict | None = None, name: str = "params.yaml"):
        base = {
            "base": {"dataset": "folder"},
            "fetch": {"image_folder": str(digits_folder), "image_size": [8, 8]},
            "prepare": {"val_size": 0.25, "test_size": 0.3},
            "validate": {
                "class_share_min_ratio": 0.6,  # of 1/K: shares within [0.2, 0.5] for 3 classes
                "class_share_max_ratio": 1.5,
                "max_intensity_kl": 1.0,
                "max_label_kl": 0.05,
                "max_leakage_fraction": 0.05,
            },
            "train": {"model": "mlp", "epochs": 4, "batch_size": 32, "learning_rate": 0.01},
            "compare": {"recent_runs": 3},
            "tracking": {"experiment": "flow-test", "registered_model": "flow-test-model"},
        }
        merged = base
        for section, values in (updates or {}).items():
            merged.setdefault(section, {}).update(values)
        return params_file(merged, name=name)

    return make


TINY = {
    "base": {"dataset": "folder"},
    "prepare": {"val_size": 0.25, "test_size": 0.3},
    "validate": {
        "class_share_min_ratio": 0.6,  # 3 classes: shares within [0.2, 0.5]
        "class_share_max_ratio": 1.5,
        "max_intensity_kl": 1.0,
        "max_label_kl": 0.05,
        "max_leakage_fraction": 0.05,
    },
    "train": {"model": "mlp", "epochs": 2, "batch_size": 32, "learning_rate": 0.01},
    "tracking": {"experiment": "flow-test", "registered_model": "flow-test-model"},
}


@pytest.fixture
def dvc_folder_project(tmp_path, digits_folder, mlflow_uri, monkeypatch):
    """A scratch DVC project (git + ``dvc init``, this repository's dvc.yaml and code) whose
    params.yaml is the real one shrunk to ``digits_folder`` and 2 epochs of the MLP, with the
    working directory moved into it. ``updates`` are merged over the sections."""
    import yaml

    from pipelines.versioning import scratch_project
    from tests.conftest import REPO

    def make(updates: dict | None = None):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        for section, values in {
            **TINY,
            "fetch": {"image_folder": str(digits_folder), "image_size": [8, 8]},
        }.items():
            raw.setdefault(section, {}).update(values)
        for section, values in (updates or {}).items():
            raw.setdefault(section, {}).update(values)
        project = scratch_project(tmp_path / "project", raw, source=REPO)
        monkeypatch.chdir(project.root)
        return project

    return make


# What `dvc status` prints when every stage matches dvc.lock. The fetch stage depends on the image
# folder itself (`${fetch.image_folder}`, outside the project here), so nothing is "always changed".
DVC_CLEAN = "Data and pipelines are up to date."


def dvc_status(root) -> str:
    """``dvc status`` in ``root``, as a user would run it."""
    return dvc(root, "status")
