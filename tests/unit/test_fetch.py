"""Tests for pipelines.fetch and pipelines.idx, on tiny synthetic IDX files and image folders."""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.config import BaseConfig, FetchConfig
from pipelines.fetch import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DataError,
    DownloadError,
    fetch,
    load_raw,
)
from pipelines.idx import IdxError, encode_idx, parse_images, parse_labels

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FOLDER = BaseConfig(dataset="folder")
FMNIST = BaseConfig()


def idx_contents(n_train: int = 30, n_test: int = 20, shape: tuple[int, int] = (4, 5), seed: int = 0) -> dict:
    """Valid decompressed IDX bytes for the four files, with every class present."""
    rng = np.random.default_rng(seed)
    out = {}
    for images, labels, n in ((TRAIN_IMAGES, TRAIN_LABELS, n_train), (TEST_IMAGES, TEST_LABELS, n_test)):
        out[images] = encode_idx(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))
        out[labels] = encode_idx(rng.permutation(np.arange(n) % 10).astype(np.uint8))
    return out


def write_idx_dir(directory: Path, contents: dict, gz: bool = True) -> dict[str, str]:
    """Write ``contents`` (name -> decompressed bytes) and return name -> SHA-256 of those bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}


def refusing_downloader(url: str, dest: Path) -> None:
    raise AssertionError(f"downloader must not be called, got {url}")


def tree(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture
def good_raw(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A raw_dir from a previous successful fetch, and its contents."""
    contents = idx_contents(seed=99)
    hashes = write_idx_dir(tmp_path / "previous", contents)
    raw_dir = tmp_path / "raw"
    cfg = FetchConfig(source_dir=tmp_path / "previous", system_dir=tmp_path / "none")
    fetch(cfg, FMNIST, raw_dir, downloader=refusing_downloader, expected_sha256=hashes)
    return raw_dir, tree(raw_dir)


# --- IDX parsing -------------------------------------------------------------------------------


def test_idx_roundtrip() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_images(encode_idx(images)), images)
    labels = np.array([3, 1], dtype=np.uint8)
    np.testing.assert_array_equal(parse_labels(encode_idx(labels)), labels)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "too short"),
        (struct.pack(">I", 0x00000801) + struct.pack(">I", 2) + b"\x00\x00", "magic number 0x00000801"),
        (struct.pack(">I", 0x00000D03) + struct.pack(">3I", 1, 1, 1) + b"\x00", "magic number 0x00000d03"),
        (struct.pack(">I", 0x00000803) + struct.pack(">3I", 2, 2, 2) + b"\x00" * 7, "file has 23 bytes"),
        (struct.pack(">I", 0x00000803) + struct.pack(">3I", 1, 1, 1) + b"\x00\x00", "file has 18 bytes"),
    ],
)
def test_parse_images_rejects_bad_files(data: bytes, match: str) -> None:
    with pytest.raises(IdxError, match=match):
        parse_images(data, "imgs")


# --- search order ------------------------------------------------------------------------------


def test_source_dir_beats_system_dir(tmp_path: Path) -> None:
    source, system = idx_contents(seed=1), idx_contents(seed=2)
    hashes = write_idx_dir(tmp_path / "src", source)
    write_idx_dir(tmp_path / "sys", system)
    cfg = FetchConfig(source_dir=tmp_path / "src", system_dir=tmp_path / "sys")
    result = fetch(cfg, FMNIST, tmp_path / "raw", downloader=refusing_downloader, expected_sha256=hashes)
    assert result.source == "source_dir"
    assert result.sha256s == hashes
    for name in FASHION_MNIST_FILES:
        assert (tmp_path / "raw" / name).read_bytes() == source[name]


def test_system_dir_used_when_source_dir_unset(tmp_path: Path) -> None:
    contents = idx_contents(seed=3)
    hashes = write_idx_dir(tmp_path / "sys", contents)
    cfg = FetchConfig(source_dir=None, system_dir=tmp_path / "sys")
    result = fetch(cfg, FMNIST, tmp_path / "raw", downloader=refusing_downloader, expected_sha256=hashes)
    assert result.source == "system_dir"
    assert result.num_examples == {"train": 30, "test": 20}
    assert result.class_names == list(FASHION_MNIST_CLASSES)
    assert sorted(result.files) == sorted([*FASHION_MNIST_FILES, "source.json"])
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(result.files)


def test_system_dir_used_when_source_dir_incomplete(tmp_path: Path) -> None:
    contents = idx_contents(seed=4)
    hashes = write_idx_dir(tmp_path / "sys", contents)
    write_idx_dir(tmp_path / "src", {TRAIN_IMAGES: contents[TRAIN_IMAGES]})
    cfg = FetchConfig(source_dir=tmp_path / "src", system_dir=tmp_path / "sys")
    result = fetch(cfg, FMNIST, tmp_path / "raw", downloader=refusing_downloader, expected_sha256=hashes)
    assert result.source == "system_dir"


def test_downloader_called_only_when_both_dirs_missing(tmp_path: Path) -> None:
    contents = idx_contents(seed=5)
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    calls: list[str] = []

    def fake_downloader(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(gzip.compress(contents[url.rsplit("/", 1)[1].removesuffix(".gz")]))

    cfg = FetchConfig(
        source_dir=tmp_path / "nope", system_dir=tmp_path / "nope2", url="https://example.test/fm/"
    )
    result = fetch(cfg, FMNIST, tmp_path / "raw", downloader=fake_downloader, expected_sha256=hashes)
    assert result.source == "download"
    assert calls == [f"https://example.test/fm/{name}.gz" for name in FASHION_MNIST_FILES]
    assert tree(tmp_path / "raw").keys() == {*FASHION_MNIST_FILES, "source.json"}
    assert all((tmp_path / "raw" / name).read_bytes() == contents[name] for name in FASHION_MNIST_FILES)


def test_failed_download_is_a_data_error(tmp_path: Path) -> None:
    def offline(url: str, dest: Path) -> None:
        raise OSError("network unreachable")

    cfg = FetchConfig(system_dir=tmp_path / "nope", url="https://example.test/")
    with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz.*network unreachable"):
        fetch(cfg, FMNIST, tmp_path / "raw", downloader=offline, expected_sha256=idx_hashes_dummy())
    assert not (tmp_path / "raw").exists()


def test_the_flow_retries_a_download_not_data_wrong_where_it_lies() -> None:
    # A missing image folder or a bad file on disk reads the same on a second try (it was retried
    # twice, 5 s apart); a download may succeed (DownloadError is a DataError).
    from prefect.states import Failed

    from flows.retrain import _retry_fetch

    assert not _retry_fetch(None, None, Failed(data=DataError("data/images: image folder not found")))
    assert _retry_fetch(None, None, Failed(data=DownloadError("https://x/a.gz: download failed: timeout")))
    assert _retry_fetch(None, None, Failed(data=OSError("disk full")))


def idx_hashes_dummy() -> dict[str, str]:
    return dict.fromkeys(FASHION_MNIST_FILES, "0" * 64)


def test_raw_dir_is_the_same_from_gz_or_plain_files(tmp_path: Path) -> None:
    contents = idx_contents(seed=6)
    hashes = write_idx_dir(tmp_path / "gz", contents, gz=True)
    write_idx_dir(tmp_path / "plain", contents, gz=False)
    for kind in ("gz", "plain"):
        cfg = FetchConfig(source_dir=tmp_path / kind, system_dir=tmp_path / "none")
        fetch(cfg, FMNIST, tmp_path / f"raw_{kind}", downloader=refusing_downloader, expected_sha256=hashes)
    for name in FASHION_MNIST_FILES:
        assert (tmp_path / "raw_gz" / name).read_bytes() == (tmp_path / "raw_plain" / name).read_bytes()


def test_load_raw_roundtrip(tmp_path: Path) -> None:
    contents = idx_contents(n_train=30, n_test=20, shape=(4, 5), seed=7)
    hashes = write_idx_dir(tmp_path / "src", contents)
    fetch(FetchConfig(source_dir=tmp_path / "src"), FMNIST, tmp_path / "raw", expected_sha256=hashes)
    raw = load_raw(tmp_path / "raw")
    assert raw.x_train.shape == (30, 4, 5, 1) and raw.x_train.dtype == np.uint8
    assert raw.x_test is not None and raw.x_test.shape == (20, 4, 5, 1)
    assert raw.y_train.dtype == np.int64 and raw.y_test is not None and raw.y_test.dtype == np.int64
    np.testing.assert_array_equal(raw.x_train[..., 0], parse_images(contents[TRAIN_IMAGES]))
    np.testing.assert_array_equal(raw.y_test, parse_labels(contents[TEST_LABELS]))
    assert raw.ids_train[0] == "train-00000" and raw.ids_train[29] == "train-00029"
    assert raw.ids_test is not None and raw.ids_test[7] == "test-00007"
    assert raw.class_names == list(FASHION_MNIST_CLASSES)
    assert raw.source["source"] == "source_dir"
    assert raw.source["files"][TRAIN_LABELS]["sha256"] == hashes[TRAIN_LABELS]


def test_load_raw_without_source_json(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match="source.json"):
        load_raw(tmp_path / "raw")


# --- bad IDX input: clear error naming the file, raw_dir untouched --------------------------------


def _truncated_gz(contents: dict) -> tuple[dict, dict[str, bytes]]:
    data = gzip.compress(contents[TRAIN_IMAGES])
    return contents, {f"{TRAIN_IMAGES}.gz": data[: len(data) // 2]}


def _corrupt_gz(contents: dict) -> tuple[dict, dict[str, bytes]]:
    data = bytearray(gzip.compress(contents[TEST_IMAGES]))
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    data[-8:-4] = b"\x00\x00\x00\x00"  # wrong CRC even if the deflate stream still decodes
    return contents, {f"{TEST_IMAGES}.gz": bytes(data)}


def _not_gz(contents: dict) -> tuple[dict, dict[str, bytes]]:
    return contents, {f"{TRAIN_LABELS}.gz": b"this is not gzip at all"}


def _wrong_magic(contents: dict) -> tuple[dict, dict[str, bytes]]:
    bad = struct.pack(">I", 0x00000802) + contents[TEST_LABELS][4:]
    return {**contents, TEST_LABELS: bad}, {}


def _count_mismatch(contents: dict) -> tuple[dict, dict[str, bytes]]:
    labels = parse_labels(contents[TRAIN_LABELS])[:-1]
    return {**contents, TRAIN_LABELS: encode_idx(labels)}, {}


def _label_out_of_range(contents: dict) -> tuple[dict, dict[str, bytes]]:
    labels = parse_labels(contents[TEST_LABELS]).copy()
    labels[3] = 10
    return {**contents, TEST_LABELS: encode_idx(labels)}, {}


def _truncated_idx(contents: dict) -> tuple[dict, dict[str, bytes]]:
    return {**contents, TRAIN_IMAGES: contents[TRAIN_IMAGES][:-3]}, {}


BAD_IDX_CASES: dict[str, tuple[Callable, str, str]] = {
    "truncated_gz": (_truncated_gz, TRAIN_IMAGES, "gzip"),
    "corrupt_gz": (_corrupt_gz, TEST_IMAGES, "gzip"),
    "not_gz": (_not_gz, TRAIN_LABELS, "gzip"),
    "wrong_magic": (_wrong_magic, TEST_LABELS, "magic number 0x00000802"),
    "count_mismatch": (_count_mismatch, TRAIN_LABELS, "29 labels but .*30 images"),
    "label_out_of_range": (_label_out_of_range, TEST_LABELS, "label 10 at index 3 is outside"),
    "truncated_idx": (_truncated_idx, TRAIN_IMAGES, "file has"),
}


@pytest.mark.parametrize("with_previous", [False, True], ids=["no_previous", "previous_raw_dir"])
@pytest.mark.parametrize("case", sorted(BAD_IDX_CASES))
def test_bad_idx_input_raises_and_leaves_raw_dir(
    tmp_path: Path, good_raw: tuple[Path, dict[str, bytes]], case: str, with_previous: bool
) -> None:
    make, bad_file, match = BAD_IDX_CASES[case]
    contents, raw_overrides = make(idx_contents(seed=8))
    hashes = write_idx_dir(tmp_path / "src", contents)
    for name, data in raw_overrides.items():
        (tmp_path / "src" / name).write_bytes(data)
    raw_dir = good_raw[0] if with_previous else tmp_path / "fresh_raw"
    cfg = FetchConfig(source_dir=tmp_path / "src", system_dir=tmp_path / "none")
    with pytest.raises(DataError, match=match) as excinfo:
        fetch(cfg, FMNIST, raw_dir, downloader=refusing_downloader, expected_sha256=hashes)
    assert bad_file in str(excinfo.value)
    if with_previous:
        assert tree(raw_dir) == good_raw[1]
    else:
        assert not raw_dir.exists()
    assert sorted(p.name for p in raw_dir.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("with_previous", [False, True], ids=["no_previous", "previous_raw_dir"])
def test_hash_mismatch(tmp_path: Path, good_raw: tuple[Path, dict[str, bytes]], with_previous: bool) -> None:
    contents = idx_contents(seed=9)
    hashes = write_idx_dir(tmp_path / "src", contents)
    hashes[TRAIN_LABELS] = hashlib.sha256(b"something else").hexdigest()
    raw_dir = good_raw[0] if with_previous else tmp_path / "fresh_raw"
    cfg = FetchConfig(source_dir=tmp_path / "src", system_dir=tmp_path / "none")
    with pytest.raises(DataError, match=f"{TRAIN_LABELS}.gz: SHA-256") as excinfo:
        fetch(cfg, FMNIST, raw_dir, downloader=refusing_downloader, expected_sha256=hashes)
    assert not isinstance(excinfo.value, DownloadError)  # a file on disk: not retried
    if with_previous:
        assert tree(raw_dir) == good_raw[1]
    else:
        assert not raw_dir.exists()


def test_default_hashes_reject_synthetic_files(tmp_path: Path) -> None:
    write_idx_dir(tmp_path / "src", idx_contents(seed=10))
    cfg = FetchConfig(source_dir=tmp_path / "src", system_dir=tmp_path / "none")
    with pytest.raises(DataError, match="SHA-256"):
        fetch(cfg, FMNIST, tmp_path / "raw", downloader=refusing_downloader)
    assert not (tmp_path / "raw").exists()


# --- image folders -----------------------------------------------------------------------------


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_image(root / "cat" / "a.png", (10, 8), (255, 0, 0), "PNG")
    write_image(root / "cat" / "b.jpg", (6, 6), (0, 255, 0), "JPEG")
    write_image(root / "cat" / "sub" / "c.jpeg", (7, 5), (0, 0, 255), "JPEG")
    write_image(root / "ant" / "x.PNG", (3, 3), (255, 255, 255), "PNG")
    (root / "ant" / "notes.txt").write_text("not an image, ignored")
    write_image(root / "bee" / "y.png", (20, 20), (0, 0, 0), "PNG")
    return root


def test_folder_dataset_end_to_end(tmp_path: Path, image_folder: Path) -> None:
    cfg = FetchConfig(image_folder=image_folder, image_size=(4, 6), color_mode="grayscale")
    result = fetch(cfg, FOLDER, tmp_path / "raw", downloader=refusing_downloader)
    assert result.source == "image_folder"
    assert result.class_names == ["ant", "bee", "cat"]
    assert result.num_examples == {"train": 5}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["images.npz", "source.json"]
    raw = load_raw(tmp_path / "raw")
    assert raw.x_train.shape == (5, 4, 6, 1) and raw.x_train.dtype == np.uint8
    assert raw.x_test is None and raw.y_test is None and raw.ids_test is None
    assert list(raw.ids_train) == ["ant/x.PNG", "bee/y.png", "cat/a.png", "cat/b.jpg", "cat/sub/c.jpeg"]
    assert raw.y_train.tolist() == [0, 1, 2, 2, 2] and raw.y_train.dtype == np.int64
    assert raw.x_train[0].min() == 255 and raw.x_train[1].max() == 0  # white ant, black bee
    assert 70 < raw.x_train[2].mean() < 80  # red -> L = 0.299 * 255


def test_folder_rgb(tmp_path: Path, image_folder: Path) -> None:
    cfg = FetchConfig(image_folder=image_folder, image_size=(5, 5), color_mode="rgb")
    fetch(cfg, FOLDER, tmp_path / "raw")
    raw = load_raw(tmp_path / "raw")
    assert raw.x_train.shape == (5, 5, 5, 3)
    np.testing.assert_array_equal(raw.x_train[2, 2, 2], [255, 0, 0])


def _unreadable(root: Path) -> str:
    (root / "bee" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return "broken.png"


def _truncated_image(root: Path) -> str:
    data = (root / "cat" / "a.png").read_bytes()
    (root / "cat" / "a.png").write_bytes(data[: len(data) // 2])
    return "a.png"


def _broken_png_chunk(root: Path) -> str:
    # A PNG whose image data runs on into a chunk with an invalid type: Pillow's decoder raises
    # SyntaxError("broken PNG file"), which had escaped without the file's name.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"".join(b"\x00" + bytes(range(y, y + 8)) for y in range(8)))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", pixels[:10])
        + chunk(b"\x95\x1c\xde?", pixels[10:])
        + chunk(b"IEND", b"")
    )
    (root / "bee" / "chunk.png").write_bytes(png)
    return "chunk.png"


def _empty_class(root: Path) -> str:
    (root / "dog").mkdir()
    (root / "dog" / "readme.txt").write_text("no images here")
    return "dog"


def _no_class_folders(root: Path) -> str:
    flat = root.parent / "flat"
    flat.mkdir()
    write_image(flat / "a.png", (3, 3), (1, 2, 3), "PNG")
    return "flat"


BAD_FOLDER_CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "unreadable_image": (_unreadable, "unreadable image"),
    "truncated_image": (_truncated_image, "unreadable image"),
    "broken_png_chunk": (_broken_png_chunk, "unreadable image"),
    "empty_class": (_empty_class, "empty class folder"),
    "no_class_folders": (_no_class_folders, "at least 2 class subfolders"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDER_CASES))
def test_bad_folder_raises_and_keeps_previous_raw_dir(
    tmp_path: Path, image_folder: Path, good_raw: tuple[Path, dict[str, bytes]], case: str
) -> None:
    break_it, match = BAD_FOLDER_CASES[case]
    offending = break_it(image_folder)
    folder = image_folder.parent / "flat" if case == "no_class_folders" else image_folder
    cfg = FetchConfig(image_folder=folder)
    raw_dir, before = good_raw
    with pytest.raises(DataError, match=match) as excinfo:
        fetch(cfg, FOLDER, raw_dir, downloader=refusing_downloader)
    assert offending in str(excinfo.value)
    assert tree(raw_dir) == before
    with pytest.raises(DataError, match=match):
        fetch(cfg, FOLDER, tmp_path / "fresh_raw")
    assert not (tmp_path / "fresh_raw").exists()


def test_folder_dataset_needs_image_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="image_folder"):
        fetch(FetchConfig(), FOLDER, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


# --- the real dataset, when Debian's dataset-fashion-mnist is installed --------------------------


@pytest.mark.skipif(not SYSTEM_DIR.is_dir(), reason=f"{SYSTEM_DIR} not installed")
def test_real_fashion_mnist_from_system_dir(tmp_path: Path) -> None:
    result = fetch(FetchConfig(), FMNIST, tmp_path / "raw", downloader=refusing_downloader)
    assert result.source == "system_dir"
    assert result.num_examples == {"train": 60000, "test": 10000}
    raw = load_raw(tmp_path / "raw")
    assert raw.x_train.shape == (60000, 28, 28, 1) and raw.x_test is not None
    assert raw.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(raw.y_train).tolist() == [6000] * 10


def test_bmp_and_gif_images_are_read_as_keras_reads_them(tmp_path: Path) -> None:
    # Keras' image_dataset_from_directory reads .bmp and .gif too (ALLOWLIST_FORMATS); they were
    # silently skipped, a class folder mixing them losing those images without a word.
    root = tmp_path / "images"
    write_image(root / "cat" / "a.png", (4, 4), (255, 255, 255), "PNG")
    write_image(root / "cat" / "b.bmp", (4, 4), (0, 0, 0), "BMP")
    write_image(root / "dog" / "c.GIF", (4, 4), (255, 255, 255), "GIF")
    fetch(FetchConfig(image_folder=root, image_size=(4, 4)), FOLDER, tmp_path / "raw")
    raw = load_raw(tmp_path / "raw")
    assert list(raw.ids_train) == ["cat/a.png", "cat/b.bmp", "dog/c.GIF"]
    assert [int(x.mean()) for x in raw.x_train] == [255, 0, 255]
