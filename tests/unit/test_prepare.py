"""Tests for pipelines.prepare on tiny synthetic datasets written by fetch."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipelines.config import BaseConfig, FetchConfig, PrepareConfig
from pipelines.fetch import (
    FASHION_MNIST_CLASSES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    fetch,
    load_raw,
)
from pipelines.idx import encode_idx
from pipelines.prepare import (
    MANIFEST_COLUMNS,
    PreparedDataError,
    Split,
    load_classes,
    load_manifest,
    load_split,
    prepare,
)

# Imbalanced on purpose (class k has 10 * (k + 1) training images) so stratification is visible.
TRAIN_COUNTS = [10 * (k + 1) for k in range(10)]
N_TRAIN, N_TEST = sum(TRAIN_COUNTS), 30


def write_raw(tmp_path: Path, seed: int = 0) -> Path:
    """Fetch a synthetic Fashion-MNIST-shaped dataset (6x5 images) into ``tmp_path/raw``."""
    rng = np.random.default_rng(seed)
    y_train = rng.permutation(np.repeat(np.arange(10), TRAIN_COUNTS)).astype(np.uint8)
    y_test = (np.arange(N_TEST) % 10).astype(np.uint8)
    contents = {
        TRAIN_IMAGES: encode_idx(rng.integers(0, 256, size=(N_TRAIN, 6, 5), dtype=np.uint8)),
        TRAIN_LABELS: encode_idx(y_train),
        TEST_IMAGES: encode_idx(rng.integers(0, 256, size=(N_TEST, 6, 5), dtype=np.uint8)),
        TEST_LABELS: encode_idx(y_test),
    }
    src = tmp_path / "src"
    src.mkdir()
    for name, data in contents.items():
        (src / f"{name}.gz").write_bytes(gzip.compress(data))
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    fetch(
        FetchConfig(source_dir=src, system_dir=tmp_path / "none"),
        BaseConfig(),
        tmp_path / "raw",
        expected_sha256=hashes,
    )
    return tmp_path / "raw"


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    return write_raw(tmp_path)


def test_prepare_writes_all_outputs(tmp_path: Path, raw_dir: Path) -> None:
    result = prepare(PrepareConfig(val_size=110), BaseConfig(seed=1), raw_dir, tmp_path / "prep")
    assert result.counts == {"train": N_TRAIN - 110, "val": 110, "test": N_TEST}
    assert result.image_shape == (6, 5, 1)
    assert sorted(p.name for p in (tmp_path / "prep").iterdir()) == sorted(result.files)
    assert load_classes(tmp_path / "prep") == {
        "class_names": list(FASHION_MNIST_CLASSES),
        "num_classes": 10,
        "image_shape": [6, 5, 1],
    }


def test_splits_are_disjoint_and_match_the_raw_data(tmp_path: Path, raw_dir: Path) -> None:
    prepare(PrepareConfig(val_size=0.2), BaseConfig(), raw_dir, tmp_path / "prep")
    raw = load_raw(raw_dir)
    splits = {name: load_split(tmp_path / "prep", name) for name in ("train", "val", "test")}
    for split in splits.values():
        assert split.x.dtype == np.uint8 and split.x.ndim == 4
        assert split.y.dtype == np.int64 and split.ids.dtype.kind == "U"
    train_ids, val_ids = set(splits["train"].ids), set(splits["val"].ids)
    assert not train_ids & val_ids
    assert train_ids | val_ids == {f"train-{i:05d}" for i in range(N_TRAIN)}
    assert len(splits["val"]) == round(0.2 * N_TRAIN)
    # the official test set is kept whole and in order
    np.testing.assert_array_equal(splits["test"].x, raw.x_test)
    assert splits["test"].ids[7] == "test-00007"
    # every row is the raw image and label its id points at
    for split in (splits["train"], splits["val"]):
        index = np.array([int(i.split("-")[1]) for i in split.ids])
        assert np.all(np.diff(index) > 0)
        np.testing.assert_array_equal(split.x, raw.x_train[index])
        np.testing.assert_array_equal(split.y, raw.y_train[index])


def test_validation_split_is_stratified(tmp_path: Path, raw_dir: Path) -> None:
    prepare(PrepareConfig(val_size=110), BaseConfig(seed=3), raw_dir, tmp_path / "prep")
    val = load_split(tmp_path / "prep", "val")
    # 110 of 550 = 20% of each class: class k contributes exactly 2 * (k + 1)
    assert np.bincount(val.y, minlength=10).tolist() == [2 * (k + 1) for k in range(10)]
    train = load_split(tmp_path / "prep", "train")
    assert np.bincount(train.y, minlength=10).tolist() == [8 * (k + 1) for k in range(10)]


def test_split_is_deterministic_under_the_seed(tmp_path: Path, raw_dir: Path) -> None:
    cfg = PrepareConfig(val_size=100)
    prepare(cfg, BaseConfig(seed=7), raw_dir, tmp_path / "a")
    prepare(cfg, BaseConfig(seed=7), raw_dir, tmp_path / "b")
    prepare(cfg, BaseConfig(seed=8), raw_dir, tmp_path / "c")
    for name in ("train.npz", "val.npz", "test.npz", "classes.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    pd.testing.assert_frame_equal(load_manifest(tmp_path / "a"), load_manifest(tmp_path / "b"))
    assert set(load_split(tmp_path / "a", "val").ids) != set(load_split(tmp_path / "c", "val").ids)


def test_manifest_columns_dtypes_and_stats(tmp_path: Path, raw_dir: Path) -> None:
    prepare(PrepareConfig(val_size=50), BaseConfig(), raw_dir, tmp_path / "prep")
    manifest = load_manifest(tmp_path / "prep")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    for column in ("label", "height", "width", "channels", "pixel_min", "pixel_max"):
        assert manifest[column].dtype == np.int64, column
    for column in ("pixel_mean", "pixel_std"):
        assert manifest[column].dtype == np.float64, column
    for column in ("id", "split", "content_hash"):
        assert pd.api.types.is_string_dtype(manifest[column]), column
    assert len(manifest) == N_TRAIN + N_TEST
    assert manifest["id"].is_unique
    assert manifest["split"].value_counts().to_dict() == {"train": N_TRAIN - 50, "val": 50, "test": N_TEST}
    for name in ("train", "val", "test"):
        split = load_split(tmp_path / "prep", name)
        rows = manifest[manifest["split"] == name].set_index("id").loc[split.ids]
        np.testing.assert_array_equal(rows["label"].to_numpy(), split.y)
        for i in (0, len(split) // 2, len(split) - 1):
            image = split.x[i]
            row = rows.iloc[i]
            assert row["content_hash"] == hashlib.sha256(image.tobytes()).hexdigest()
            assert (row["height"], row["width"], row["channels"]) == (6, 5, 1)
            assert row["pixel_mean"] == pytest.approx(float(np.mean(image.astype(float))))
            assert row["pixel_std"] == pytest.approx(float(np.std(image.astype(float))))
            assert (row["pixel_min"], row["pixel_max"]) == (int(image.min()), int(image.max()))


def test_prepare_replaces_a_previous_prepared_dir(tmp_path: Path, raw_dir: Path) -> None:
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "stale.npz").write_bytes(b"old")
    prepare(PrepareConfig(val_size=50), BaseConfig(), raw_dir, tmp_path / "prep")
    assert not (tmp_path / "prep" / "stale.npz").exists()


def test_impossible_split_is_a_clear_error_and_writes_nothing(tmp_path: Path, raw_dir: Path) -> None:
    with pytest.raises(PreparedDataError, match=r"prepare.val_size: 5 is impossible.* 10 classes"):
        prepare(PrepareConfig(val_size=5), BaseConfig(), raw_dir, tmp_path / "prep")
    with pytest.raises(PreparedDataError, match="validation"):
        prepare(PrepareConfig(val_size=N_TRAIN + 1), BaseConfig(), raw_dir, tmp_path / "prep")
    assert not (tmp_path / "prep").exists()


def test_folder_dataset_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name, n in [("apple", 20), ("kiwi", 10), ("pear", 30)]:
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    fetch(
        FetchConfig(image_folder=root, image_size=(8, 8), color_mode="rgb"),
        BaseConfig(dataset="folder"),
        tmp_path / "raw",
    )
    cfg = PrepareConfig(val_size=0.25, test_size=0.2)
    result = prepare(cfg, BaseConfig(), tmp_path / "raw", tmp_path / "prep")
    # The test split stratified by a hash of each image's path; the validation split stratified and
    # seeded from the rest.
    assert result.counts == {"train": 36, "val": 12, "test": 12}
    assert result.class_names == ["apple", "kiwi", "pear"]
    assert result.image_shape == (8, 8, 3)
    test = load_split(tmp_path / "prep", "test")
    assert np.bincount(test.y, minlength=3).tolist() == [4, 2, 6]
    val = load_split(tmp_path / "prep", "val")
    assert np.bincount(val.y, minlength=3).tolist() == [4, 2, 6]
    all_ids = [i for s in ("train", "val", "test") for i in load_split(tmp_path / "prep", s).ids]
    assert len(set(all_ids)) == 60 and "kiwi/003.png" in all_ids
    manifest = load_manifest(tmp_path / "prep")
    assert set(manifest["channels"]) == {3} and len(manifest) == 60


# --- loaders: clear errors naming the file -------------------------------------------------------


@pytest.fixture
def prepared(tmp_path: Path, raw_dir: Path) -> Path:
    prepare(PrepareConfig(val_size=50), BaseConfig(), raw_dir, tmp_path / "prep")
    return tmp_path / "prep"


def test_loaders_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="val.npz"):
        load_split(tmp_path, "val")
    with pytest.raises(FileNotFoundError, match="classes.json"):
        load_classes(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest.parquet"):
        load_manifest(tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_split(tmp_path, "holdout")


def test_load_split_malformed(prepared: Path) -> None:
    (prepared / "val.npz").write_bytes(b"garbage")
    with pytest.raises(PreparedDataError, match="val.npz"):
        load_split(prepared, "val")
    # A real archive cut short (zipfile.BadZipFile, which had escaped without the path).
    whole = (prepared / "train.npz").read_bytes()
    (prepared / "val.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PreparedDataError, match="val.npz: not a readable .npz file"):
        load_split(prepared, "val")
    np.savez(prepared / "train.npz", x=np.zeros((2, 6, 5, 1), np.uint8), y=np.zeros(2, np.int64))
    with pytest.raises(PreparedDataError, match=r"train.npz: missing arrays \['ids'\]"):
        load_split(prepared, "train")
    np.savez(
        prepared / "test.npz",
        x=np.zeros((2, 6, 5, 1), np.uint8),
        y=np.zeros(3, np.int64),
        ids=np.array(["a", "b"]),
    )
    with pytest.raises(PreparedDataError, match="test.npz: x, y and ids have lengths 2, 3, 2"):
        load_split(prepared, "test")
    np.savez(
        prepared / "test.npz",
        x=np.zeros((2, 6, 5, 1), np.float32),
        y=np.zeros(2, np.int64),
        ids=np.array(["a", "b"]),
    )
    with pytest.raises(PreparedDataError, match="test.npz: x must be"):
        load_split(prepared, "test")


def test_load_split_returns_split(prepared: Path) -> None:
    split = load_split(prepared, "val")
    assert isinstance(split, Split) and len(split) == 50


def test_load_classes_malformed(prepared: Path) -> None:
    (prepared / "classes.json").write_text("{not json")
    with pytest.raises(PreparedDataError, match="classes.json: not valid JSON"):
        load_classes(prepared)
    (prepared / "classes.json").write_text(
        json.dumps({"class_names": ["a", "b"], "num_classes": 3, "image_shape": [1, 1, 1]})
    )
    with pytest.raises(PreparedDataError, match="classes.json: num_classes"):
        load_classes(prepared)


def test_load_manifest_malformed(prepared: Path) -> None:
    manifest = load_manifest(prepared)
    manifest.drop(columns=["pixel_std"]).to_parquet(prepared / "manifest.parquet")
    with pytest.raises(PreparedDataError, match="manifest.parquet: columns"):
        load_manifest(prepared)
    (prepared / "manifest.parquet").write_bytes(b"not parquet")
    with pytest.raises(PreparedDataError, match="manifest.parquet: not a readable parquet"):
        load_manifest(prepared)


def _folder_ids(split_of: Path) -> dict[str, set[str]]:
    return {name: set(load_split(split_of, name).ids) for name in ("train", "val", "test")}


def test_a_folders_test_split_never_takes_in_images_a_model_trained_on(tmp_path: Path) -> None:
    # The test split was a seeded shuffle of the whole folder: a new base.seed moved most of the
    # champion's training images into the test split, and adding images moved a few, so the gate
    # re-scored the champion on images it had trained on (inflated, biased against the challenger).
    rng = np.random.default_rng(1)
    root = tmp_path / "images"

    def add(names: list[str]) -> None:
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, size=(6, 6), dtype=np.uint8)).save(root / name)

    def split(seed: int, name: str) -> dict[str, set[str]]:
        raw = tmp_path / f"raw-{name}"
        fetch(FetchConfig(image_folder=root, image_size=(6, 6)), BaseConfig(dataset="folder"), raw)
        prepare(PrepareConfig(val_size=0.25, test_size=0.2), BaseConfig(seed=seed), raw, tmp_path / name)
        return _folder_ids(tmp_path / name)

    add([f"{label}/{i:04d}.png" for label in "abc" for i in range(40)])
    first = split(42, "first")
    other_seed = split(7, "seed7")
    assert other_seed["test"] == first["test"]  # the seed moves only the validation split
    assert other_seed["val"] != first["val"]
    # Images added, some sorting before the old ones (a seeded shuffle by position moved them all).
    add([f"{label}/{prefix}{i}.png" for label in "abc" for prefix in ("000-", "zz-") for i in range(8)])
    grown = split(42, "grown")
    # Each class's quota grew from 8 to 11 test images, filled by old test images and new ones: none
    # came from the old training or validation images (a seeded shuffle of the folder took 20 of 34
    # from there, measured with stratified_split on these names).
    assert len(grown["test"]) == 33
    assert not grown["test"] & (first["train"] | first["val"])


def test_hashed_test_split_gives_every_class_a_test_image_and_refuses_an_impossible_size() -> None:
    from pipelines.prepare import PreparedDataError, hashed_test_split

    y = np.array([0] * 50 + [1] * 3)
    ids = np.array([f"big/{i}.png" for i in range(50)] + [f"tiny/{i}.png" for i in range(3)])
    kept, test = hashed_test_split(y, ids, 0.01)
    assert np.bincount(y[test]).tolist() == [1, 1] and len(kept) + len(test) == 53
    again = hashed_test_split(y[::-1], ids[::-1], 0.01)[1]
    assert set(ids[::-1][again]) == set(ids[test])  # the file order does not matter
    assert np.bincount(y[hashed_test_split(y, ids, 0.9)[1]]).tolist() == [45, 1]  # 2 left for train and val
    with pytest.raises(PreparedDataError, match=r"prepare.test_size: 53 is impossible"):
        hashed_test_split(y, ids, 53)
    with pytest.raises(PreparedDataError, match=r"class 'tiny' has 2 image\(s\)"):
        hashed_test_split(y[:-1], ids[:-1], 0.2, class_names=["big", "tiny"])
