"""Reliability rows of the data stages: what enters training is what the user's folder holds, verified."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipelines import steps
from pipelines.config import BaseConfig, FetchConfig, PrepareConfig
from pipelines.fetch import DataError, fetch, load_raw
from pipelines.idx import encode_idx
from pipelines.prepare import prepare
from pipelines.validate import ValidationInputError
from tests.reliability._support import idx_source, make_image_folder

REPO = Path(__file__).resolve().parents[2]
FOLDER = BaseConfig(dataset="folder")
BIN = str(Path(sys.executable).parent)


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    return subprocess.run(
        [f"{BIN}/dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )


def _dvc_repo(tmp_path: Path, images: Path) -> Path:
    """A git + DVC checkout of this project's stages (code, dvc.yaml, params.yaml) on ``images``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("pipelines", "expectations"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["dataset"] = "folder"
    params["fetch"]["image_folder"] = str(images)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert _dvc(repo, "init", "-q").returncode == 0
    return repo


@pytest.mark.slow
def test_images_added_to_the_folder_make_dvc_repro_rerun_prepare(tmp_path):
    images = make_image_folder(tmp_path / "images")
    repo = _dvc_repo(tmp_path, images)
    first = _dvc(repo, "repro", "prepare")
    assert first.returncode == 0, first.stdout + first.stderr
    counts = json.loads((repo / "data/raw/source.json").read_text())["num_examples"]
    assert counts == {"train": 102}

    unchanged = _dvc(repo, "repro", "prepare")
    assert unchanged.returncode == 0 and "Stage 'prepare' didn't change, skipping" in unchanged.stdout

    for label in range(3):  # 6 more images per class
        for i in range(6):
            src = images / f"class{label}" / f"{i:03d}.png"
            shutil.copy(src, images / f"class{label}" / f"new-{i}.png")
    again = _dvc(repo, "repro", "prepare")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Running stage 'prepare'" in again.stdout
    assert json.loads((repo / "data/raw/source.json").read_text())["num_examples"] == {"train": 120}


def test_prepare_refuses_raw_images_changed_after_fetch(tmp_path, image_folder):
    raw = tmp_path / "raw"
    fetch(FetchConfig(image_folder=image_folder, image_size=(12, 12)), FOLDER, raw)
    with np.load(raw / "images.npz") as archive:
        x, y, paths = archive["x"], archive["y"], archive["paths"]
    x[:20] = 255 - x[:20]  # 20 images inverted
    np.savez(raw / "images.npz", x=x, y=y, paths=paths)
    with pytest.raises(
        DataError, match=r"images.npz: SHA-256 is .* but fetch recorded .*changed after fetch"
    ):
        prepare(PrepareConfig(val_size=0.2), FOLDER, raw, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_prepare_refuses_idx_labels_shifted_after_fetch(tmp_path):
    source = tmp_path / "source"
    sha = idx_source(source)
    raw = tmp_path / "raw"
    fetch(
        FetchConfig(source_dir=source, system_dir=tmp_path / "none"), BaseConfig(), raw, expected_sha256=sha
    )
    shifted = encode_idx(((np.arange(60) + 1) % 10).astype(np.uint8))  # every label shifted by one
    (raw / "train-labels-idx1-ubyte").write_bytes(shifted)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: SHA-256 is .* changed after fetch"):
        load_raw(raw)


def _folder_with(tmp_path: Path, image: Image.Image) -> Path:
    root = make_image_folder(tmp_path / "mixed", per_class=6)
    image.save(root / "class0" / "odd.png")
    return root


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.tile(np.arange(0, 256, 16, dtype=np.uint16), (16, 1))  # 0..240 in 8-bit terms
    image = Image.fromarray(values * 257)  # the same picture, 16 bits per pixel (mode I;16)
    root = _folder_with(tmp_path, image)
    fetch(FetchConfig(image_folder=root, image_size=(16, 16)), FOLDER, tmp_path / "raw")
    raw = load_raw(tmp_path / "raw")
    pixels = raw.x_train[list(raw.ids_train).index("class0/odd.png"), ..., 0]
    np.testing.assert_array_equal(pixels, values.astype(np.uint8))  # not 255 everywhere


def test_palette_image_gets_its_palette_colours(tmp_path):
    image = Image.new("P", (12, 12))
    image.putpalette([0, 0, 0, 200, 200, 200] + [0] * 762)
    image.paste(1, (0, 0, 12, 6))  # top half: palette entry 1, light grey
    root = _folder_with(tmp_path, image)
    fetch(FetchConfig(image_folder=root, image_size=(12, 12)), FOLDER, tmp_path / "raw")
    raw = load_raw(tmp_path / "raw")
    pixels = raw.x_train[list(raw.ids_train).index("class0/odd.png"), ..., 0]
    assert (pixels[:6] == 200).all() and (pixels[6:] == 0).all()


def test_a_single_class_folder_is_refused_at_fetch_naming_the_folder(tmp_path):
    root = make_image_folder(tmp_path / "one", classes=1)
    with pytest.raises(DataError, match=rf"{root}: a classifier needs at least 2 class subfolders.*'class0'"):
        fetch(FetchConfig(image_folder=root), FOLDER, tmp_path / "raw")


def test_a_single_class_dataset_is_refused_at_validate(folder_project):
    params = folder_project()
    steps.run_fetch(params)
    steps.run_prepare(params)
    classes = params.paths.prepared_dir / "classes.json"
    data = json.loads(classes.read_text())
    classes.write_text(json.dumps({**data, "class_names": ["cat"], "num_classes": 1}))
    with pytest.raises(
        ValidationInputError, match=r"classes.json: 1 class \(cat\); a classifier needs at least 2"
    ):
        steps.run_validate(params, log_failure_to_mlflow=False)


def test_corrupted_dvc_cache_is_refused_by_dvc_and_never_reaches_prepare(tmp_path, image_folder):
    """Holds: a DVC cache object altered on disk is reported by ``dvc status`` as not in the cache
    and ``dvc checkout`` refuses it, so prepare finds no raw data rather than damaged data."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert _dvc(repo, "init", "-q").returncode == 0
    fetch(FetchConfig(image_folder=image_folder, image_size=(12, 12)), FOLDER, repo / "data" / "raw")
    assert _dvc(repo, "add", "-q", "data/raw").returncode == 0
    digest = __import__("hashlib").md5((repo / "data/raw/images.npz").read_bytes()).hexdigest()
    cached = repo / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    cached.chmod(0o644)
    blob = bytearray(cached.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    cached.write_bytes(bytes(blob))
    shutil.rmtree(repo / "data/raw")

    status = _dvc(repo, "status")
    assert "not in cache:       data/raw" in status.stdout  # DVC re-hashed the object and disowned it
    checkout = _dvc(repo, "checkout")
    assert checkout.returncode != 0 and "Checkout failed" in checkout.stderr
    assert not (repo / "data/raw/images.npz").exists()  # the damaged bytes never reach the workspace
    with pytest.raises(DataError, match=r"data/raw/source.json: not found; run the fetch stage first"):
        prepare(PrepareConfig(val_size=0.2), FOLDER, repo / "data/raw", tmp_path / "prepared")
