"""fetch stage: gather the raw dataset into ``paths.raw_dir``, verified.

Two kinds of dataset (``base.dataset``):

* ``fashion-mnist``: the four IDX files of Fashion-MNIST (Xiao, Rasul and Vollgraf 2017,
  https://github.com/zalandoresearch/fashion-mnist), searched for in this order: ``fetch.source_dir``
  (if set), ``fetch.system_dir`` (Debian's ``dataset-fashion-mnist`` package installs them gzipped
  in ``/usr/share/datasets/fashion-mnist``), then downloaded from ``fetch.url``. Each file is
  decompressed, checked against a pinned SHA-256 of its *decompressed* bytes (Debian recompressed
  the ``.gz`` files, so their hashes differ from upstream's) and parsed. ``raw_dir`` receives the
  four decompressed files, so its content does not depend on the ``.gz`` they came from.
* ``folder``: a user's own images in ``fetch.image_folder``, one subfolder per class (the layout
  of ``keras.utils.image_dataset_from_directory``), read with Pillow, converted to
  ``fetch.color_mode`` and resized to ``fetch.image_size``; ``raw_dir`` receives ``images.npz``.

Either way ``raw_dir/source.json`` records where the data came from, the SHA-256 of every file,
the class names and the example counts. ``raw_dir`` is built in a temporary sibling and renamed
into place only once everything is validated, so a failed fetch leaves a previous ``raw_dir``
untouched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipelines.config import BaseConfig, FetchConfig
from pipelines.idx import IdxError, parse_images, parse_labels
from pipelines.io_utils import atomic_dir, atomic_write_json, write_npz

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FASHION_MNIST_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

#: SHA-256 of the *decompressed* upstream files (identical for the upstream and Debian ``.gz``).
FASHION_MNIST_SHA256: Mapping[str, str] = {
    TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

#: Label index to name, from the Fashion-MNIST README.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

SOURCE_FILE = "source.json"
IMAGES_FILE = "images.npz"
#: Suffixes read from an image folder (case-insensitive): those of Keras'
#: ``image_dataset_from_directory`` (``ALLOWLIST_FORMATS``; a GIF gives its first frame); other
#: files are ignored, as Keras does.
IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png"})

#: ``downloader(url, dest)`` writes the resource at ``url`` to the file ``dest``, raising on failure.
Downloader = Callable[[str, Path], None]


class DataError(ValueError):
    """Raised when the input data is missing, corrupt or inconsistent; the message names the file."""


class DownloadError(DataError):
    """A download failed, or what it brought is not the dataset (a checksum or format error of a
    downloaded file): unlike data on disk, a second try may succeed."""


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` wrote.

    Attributes:
        source: ``"source_dir"``, ``"system_dir"``, ``"download"`` or ``"image_folder"``.
        files: names of the files written in ``raw_dir`` (``source.json`` included).
        sha256s: file name to SHA-256 hex digest of the file as written in ``raw_dir``.
        num_examples: split name (``"train"``, ``"test"``) to number of images; a folder dataset
            has only ``"train"`` (``prepare`` splits off its test set).
        class_names: label index to class name.
    """

    source: str
    files: list[str]
    sha256s: dict[str, str]
    num_examples: dict[str, int]
    class_names: list[str]


@dataclass(frozen=True)
class RawDataset:
    """The raw dataset as read back from ``raw_dir`` by :func:`load_raw`.

    Attributes:
        x_train: ``(N, H, W, C)`` uint8 in [0, 255]; ``C`` is 1 for Fashion-MNIST.
        y_train: ``(N,)`` int64 in ``[0, len(class_names))``.
        x_test: ``(M, H, W, C)`` uint8, the official test set; ``None`` for a folder dataset.
        y_test: ``(M,)`` int64, or ``None``.
        class_names: label index to class name.
        ids_train: ``(N,)`` str, stable ids: ``train-00042`` (index in the IDX file) or a file
            path relative to the image folder.
        ids_test: ``(M,)`` str such as ``test-00007``, or ``None``.
        source: the parsed ``source.json``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    ids_train: np.ndarray
    ids_test: np.ndarray | None
    source: dict = field(repr=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def urllib_download(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    """Download ``url`` to ``dest`` with :mod:`urllib` (the default downloader).

    Raises:
        urllib.error.URLError: the server cannot be reached or answers with an error.
        TimeoutError: no data for ``timeout_s`` seconds.
    """
    with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def _find_in_dir(directory: Path, names: Sequence[str]) -> dict[str, Path] | None:
    """Map each IDX name to ``directory/name`` or ``directory/name.gz``; ``None`` if any is missing."""
    found: dict[str, Path] = {}
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _read_maybe_gz(path: Path) -> bytes:
    """Read ``path``, gunzipping it when it ends in ``.gz``.

    Raises:
        DataError: the file cannot be read, or the gzip stream is truncated or corrupt.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    if path.suffix != ".gz":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip file: {exc}") from exc


def _validate_idx_set(arrays: Mapping[str, np.ndarray], origins: Mapping[str, str], num_classes: int) -> None:
    """Check image/label counts agree and labels lie in ``[0, num_classes)``.

    Raises:
        DataError: naming the offending file.
    """
    for images_name, labels_name in ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)):
        n_images, n_labels = len(arrays[images_name]), len(arrays[labels_name])
        if n_images != n_labels:
            raise DataError(
                f"{origins[labels_name]}: {n_labels} labels but {origins[images_name]} has {n_images} images"
            )
        labels = arrays[labels_name]
        if labels.size and int(labels.max()) >= num_classes:
            bad = int(np.argmax(labels >= num_classes))
            raise DataError(
                f"{origins[labels_name]}: label {int(labels[bad])} at index {bad} is outside "
                f"[0, {num_classes})"
            )
    if arrays[TRAIN_IMAGES].shape[1:] != arrays[TEST_IMAGES].shape[1:]:
        raise DataError(
            f"{origins[TEST_IMAGES]}: image size {arrays[TEST_IMAGES].shape[1:]} differs from "
            f"{origins[TRAIN_IMAGES]}'s {arrays[TRAIN_IMAGES].shape[1:]}"
        )


def _fetch_idx(
    cfg: FetchConfig,
    tmp: Path,
    downloader: Downloader,
    expected_sha256: Mapping[str, str],
    class_names: Sequence[str],
) -> FetchResult:
    """Locate, verify and write the four Fashion-MNIST IDX files into ``tmp``."""
    missing_hashes = [name for name in FASHION_MNIST_FILES if name not in expected_sha256]
    if missing_hashes:
        raise ValueError(f"expected_sha256 has no entry for {missing_hashes}")

    found: dict[str, Path] | None = None
    source, location = "", ""
    for kind, directory in (("source_dir", cfg.source_dir), ("system_dir", cfg.system_dir)):
        if directory is None:
            continue
        found = _find_in_dir(Path(directory), FASHION_MNIST_FILES)
        if found is not None:
            source, location = kind, str(directory)
            break
        # An explicit source_dir that is unusable is worth a warning; a missing system package is not.
        (log.warning if kind == "source_dir" else log.info)(
            "fetch: %s %s does not hold all four IDX files; trying the next source", kind, directory
        )
    if found is None:
        download_dir = tmp / ".download"
        download_dir.mkdir()
        found = {}
        for name in FASHION_MNIST_FILES:
            url = f"{cfg.url.rstrip('/')}/{name}.gz"
            dest = download_dir / f"{name}.gz"
            log.info("fetch: downloading %s", url)
            try:
                downloader(url, dest)
            except Exception as exc:
                raise DownloadError(f"{url}: download failed: {exc}") from exc
            found[name] = dest
        source, location = "download", cfg.url

    arrays: dict[str, np.ndarray] = {}
    sha256s: dict[str, str] = {}
    origins = {name: str(path) for name, path in found.items()}
    if source == "download":
        origins = {name: f"{cfg.url.rstrip('/')}/{name}.gz" for name in FASHION_MNIST_FILES}
    bad = DownloadError if source == "download" else DataError  # a truncated transfer may pass next time
    for name in FASHION_MNIST_FILES:
        try:
            data = _read_maybe_gz(found[name])
        except DataError as exc:
            raise bad(str(exc)) from exc
        digest = _sha256(data)
        if digest != expected_sha256[name].lower():
            raise bad(
                f"{origins[name]}: SHA-256 of the decompressed contents is {digest}, "
                f"expected {expected_sha256[name]}"
            )
        try:
            arrays[name] = (
                parse_images(data, origins[name]) if "images" in name else parse_labels(data, origins[name])
            )
        except IdxError as exc:
            raise bad(str(exc)) from exc
        (tmp / name).write_bytes(data)
        sha256s[name] = digest
    _validate_idx_set(arrays, origins, len(class_names))
    if source == "download":
        for path in found.values():
            path.unlink()
        (tmp / ".download").rmdir()

    num_examples = {"train": len(arrays[TRAIN_LABELS]), "test": len(arrays[TEST_LABELS])}
    rows, cols = arrays[TRAIN_IMAGES].shape[1:]
    atomic_write_json(
        tmp / SOURCE_FILE,
        {
            "dataset": "fashion-mnist",
            "source": source,
            "location": location,
            "files": {name: {"sha256": sha256s[name], "origin": origins[name]} for name in sha256s},
            "class_names": list(class_names),
            "num_examples": num_examples,
            "image_shape": [int(rows), int(cols), 1],
        },
    )
    return FetchResult(
        source=source,
        files=[*FASHION_MNIST_FILES, SOURCE_FILE],
        sha256s=sha256s,
        num_examples=num_examples,
        class_names=list(class_names),
    )


#: Pillow modes holding more than 8 bits per sample: scaled to 8 bits, never clipped.
_WIDE_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


def _to_8bit(image: Image.Image, path: Path) -> Image.Image:
    """Bring a 16-bit (or 32-bit integer) grayscale image to 8 bits by scaling, not clipping.

    Pillow's ``convert("L")`` clips such pixels at 255, so a 16-bit PNG comes out almost white.
    Values are divided by 257 (65535 -> 255, the exact inverse of the 8-to-16-bit expansion
    ``v * 257`` of the PNG specification, section 12.5). A 32-bit ``I`` image whose values fit in
    8 bits is kept as is.

    Raises:
        DataError: a floating-point (``F``) image, or an ``I`` image with values outside
            ``[0, 65535]``: no faithful 8-bit form, so the file is refused.
    """
    if image.mode == "F":
        raise DataError(f"{path}: floating-point image (mode F) is not supported; save it as 8- or 16-bit")
    if image.mode not in _WIDE_MODES:
        return image
    values = np.asarray(image, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(
            f"{path}: {image.mode} image with values in [{values.min()}, {values.max()}], outside 16 bits"
        )
    if image.mode == "I" and (not values.size or values.max() <= 255):
        scaled = values
    else:
        scaled = (values + 128) // 257  # rounded v / 257
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def _read_image(data: bytes, path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Decode an image file's bytes to ``(H, W, C)`` uint8 in ``mode`` (``"L"``/``"RGB"``) at ``size``.

    16-bit grayscale is scaled to 8 bits (:func:`_to_8bit`); palette images go through RGBA so
    their colours (and transparency) are looked up before the conversion. Resizing is bilinear,
    Keras' default for ``image_dataset_from_directory``.

    Raises:
        DataError: Pillow cannot open or decode the file (unreadable, truncated, not an image), or
            its pixel format has no faithful 8-bit form.
    """
    height, width = size
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = _to_8bit(image, path)
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            converted = image.convert(mode)
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(converted, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # SyntaxError: Pillow's PNG decoder on a broken chunk ("broken PNG file (chunk ...)").
        raise DataError(f"{path}: unreadable image: {exc}") from exc
    return array[..., np.newaxis] if array.ndim == 2 else array


def _fetch_folder(cfg: FetchConfig, tmp: Path) -> FetchResult:
    """Read an image folder (one subfolder per class) into ``tmp/images.npz``."""
    if cfg.image_folder is None:
        raise DataError("fetch.image_folder must be set when base.dataset is 'folder'")
    root = Path(cfg.image_folder)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        found = f"only {class_dirs[0].name!r}" if class_dirs else "none"
        raise DataError(
            f"{root}: a classifier needs at least 2 class subfolders (one subfolder of images per "
            f"class), found {found}"
        )
    mode = "L" if cfg.color_mode == "grayscale" else "RGB"
    images: list[np.ndarray] = []
    labels: list[int] = []
    paths: list[str] = []
    file_hashes: dict[str, str] = {}
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise DataError(f"{class_dir}: empty class folder (no {'/'.join(sorted(IMAGE_SUFFIXES))} images)")
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"{path}: cannot read: {exc}") from exc
            relative = path.relative_to(root).as_posix()
            images.append(_read_image(data, path, mode, cfg.image_size))
            labels.append(label)
            paths.append(relative)
            file_hashes[relative] = _sha256(data)
    x = np.stack(images)
    y = np.asarray(labels, dtype=np.int64)
    file_paths = np.asarray(paths, dtype=str)
    write_npz(tmp / IMAGES_FILE, {"x": x, "y": y, "paths": file_paths})
    digest = _sha256((tmp / IMAGES_FILE).read_bytes())
    class_names = [p.name for p in class_dirs]
    num_examples = {"train": int(len(y))}
    atomic_write_json(
        tmp / SOURCE_FILE,
        {
            "dataset": "folder",
            "source": "image_folder",
            "location": str(root),
            "files": {IMAGES_FILE: {"sha256": digest, "origin": str(root)}},
            "class_names": class_names,
            "num_examples": num_examples,
            "image_shape": [int(d) for d in x.shape[1:]],
            "color_mode": cfg.color_mode,
            # The content hash of every source image, so raw_dir (a DVC output) changes with any
            # added, removed or edited image even when decoding gives the same pixels.
            "images": file_hashes,
        },
    )
    return FetchResult(
        source="image_folder",
        files=[IMAGES_FILE, SOURCE_FILE],
        sha256s={IMAGES_FILE: digest},
        num_examples=num_examples,
        class_names=class_names,
    )


def fetch(
    cfg: FetchConfig,
    base: BaseConfig,
    raw_dir: Path,
    *,
    downloader: Downloader | None = None,
    expected_sha256: Mapping[str, str] | None = None,
) -> FetchResult:
    """Gather, verify and publish the raw dataset in ``raw_dir``.

    Everything is written into a temporary sibling of ``raw_dir`` and validated before it replaces
    ``raw_dir`` (:func:`pipelines.io_utils.atomic_dir`: the old folder is renamed aside, then the new
    one into place, so for an instant there is none; never a half-written one); on any error the
    temporary directory is removed and a previous ``raw_dir`` is left as it was.

    Args:
        cfg: the ``fetch`` section of ``params.yaml``.
        base: the ``base`` section; ``base.dataset`` picks Fashion-MNIST or an image folder.
        raw_dir: the output directory (``paths.raw_dir``); replaced as a whole.
        downloader: called as ``downloader(url, dest)`` for each ``<cfg.url><name>.gz`` when
            neither ``cfg.source_dir`` nor ``cfg.system_dir`` holds all four IDX files; defaults
            to :func:`urllib_download`.
        expected_sha256: IDX file name (without ``.gz``) to SHA-256 hex digest of its decompressed
            bytes; defaults to :data:`FASHION_MNIST_SHA256`.

    Returns:
        A :class:`FetchResult`.

    Raises:
        DataError: (message names the file or folder) a gzip file is truncated or corrupt, a
            SHA-256 does not match, an IDX magic number, size or length is wrong, image and label
            counts differ, a label is outside ``[0, 10)``, a download fails, or for a folder: it is
            missing, has fewer than 2 class subfolders, a class subfolder has no images, or an
            image cannot be decoded or has no faithful 8-bit form (16-bit grayscale is scaled,
            palette images are looked up; floating-point images are refused).
        ValueError: ``expected_sha256`` lacks one of the four file names.
        OSError: ``raw_dir`` cannot be written.
    """
    raw_dir = Path(raw_dir)
    with atomic_dir(raw_dir) as tmp:
        if base.dataset == "folder":
            result = _fetch_folder(cfg, tmp)
        else:
            result = _fetch_idx(
                cfg,
                tmp,
                downloader or urllib_download,
                FASHION_MNIST_SHA256 if expected_sha256 is None else expected_sha256,
                FASHION_MNIST_CLASSES,
            )
    log.info("fetch: %s -> %s (%s)", result.source, raw_dir, result.num_examples)
    return result


def _read_source(raw_dir: Path) -> dict:
    path = raw_dir / SOURCE_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found; run the fetch stage first")
    try:
        source = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(source, dict) or source.get("dataset") not in ("fashion-mnist", "folder"):
        raise DataError(f"{path}: missing or unknown 'dataset' (expected 'fashion-mnist' or 'folder')")
    if not isinstance(source.get("class_names"), list) or not source["class_names"]:
        raise DataError(f"{path}: 'class_names' must be a non-empty list")
    return source


def verify_raw(raw_dir: Path, source: Mapping) -> None:
    """Re-check every data file of ``raw_dir`` against the SHA-256 that fetch recorded in ``source.json``.

    A raw file edited after fetch (images inverted, labels shifted, a file swapped) would otherwise
    flow into training unnoticed: fetch verified the bytes it wrote, not the bytes read later.

    Raises:
        DataError: ``source.json`` lists no file hashes, or a file is missing or its SHA-256
            differs (names the file and both hashes).
    """
    files = source.get("files")
    if not isinstance(files, dict) or not files:
        raise DataError(f"{raw_dir / SOURCE_FILE}: no 'files' with SHA-256 values; run the fetch stage again")
    for name, info in files.items():
        path = raw_dir / name
        expected = info.get("sha256") if isinstance(info, dict) else None
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        if digest != expected:
            raise DataError(
                f"{path}: SHA-256 is {digest} but fetch recorded {expected} in {raw_dir / SOURCE_FILE}: "
                "the raw data changed after fetch; run the fetch stage again (dvc repro) or restore it "
                "(dvc checkout)"
            )


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.asarray([f"{prefix}-{i:05d}" for i in range(n)], dtype=str)


def load_raw(raw_dir: Path) -> RawDataset:
    """Read back what :func:`fetch` wrote in ``raw_dir``, re-checking it.

    Args:
        raw_dir: a directory written by :func:`fetch`.

    Returns:
        A :class:`RawDataset`: for Fashion-MNIST, images ``(60000, 28, 28, 1)`` and
        ``(10000, 28, 28, 1)`` uint8 with ids ``train-NNNNN`` / ``test-NNNNN``; for a folder,
        ``x_train`` holds every image and the test fields are ``None``.

    Raises:
        DataError: ``source.json`` or a data file is missing or malformed (the message names it),
            a file's SHA-256 differs from the one fetch recorded (:func:`verify_raw`), or
            counts/labels are inconsistent.
    """
    raw_dir = Path(raw_dir)
    source = _read_source(raw_dir)
    verify_raw(raw_dir, source)
    class_names = [str(c) for c in source["class_names"]]
    if source["dataset"] == "folder":
        path = raw_dir / IMAGES_FILE
        try:
            with np.load(path, allow_pickle=False) as archive:
                x, y, paths = archive["x"], archive["y"].astype(np.int64), archive["paths"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: missing or malformed: {exc}") from exc
        if x.dtype != np.uint8 or x.ndim != 4 or not (len(x) == len(y) == len(paths)):
            raise DataError(f"{path}: expected x (N, H, W, C) uint8 with y and paths of length N")
        if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise DataError(f"{path}: labels outside [0, {len(class_names)})")
        return RawDataset(x, y, None, None, class_names, paths.astype(str), None, source)

    arrays: dict[str, np.ndarray] = {}
    for name in FASHION_MNIST_FILES:
        path = raw_dir / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc}") from exc
        try:
            arrays[name] = (
                parse_images(data, str(path)) if "images" in name else parse_labels(data, str(path))
            )
        except IdxError as exc:
            raise DataError(str(exc)) from exc
    _validate_idx_set(arrays, {name: str(raw_dir / name) for name in arrays}, len(class_names))
    return RawDataset(
        x_train=arrays[TRAIN_IMAGES][..., np.newaxis],
        y_train=arrays[TRAIN_LABELS].astype(np.int64),
        x_test=arrays[TEST_IMAGES][..., np.newaxis],
        y_test=arrays[TEST_LABELS].astype(np.int64),
        class_names=class_names,
        ids_train=_ids("train", len(arrays[TRAIN_LABELS])),
        ids_test=_ids("test", len(arrays[TEST_LABELS])),
        source=source,
    )
