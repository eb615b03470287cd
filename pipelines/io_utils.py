"""Atomic file and directory writes shared by the pipeline stages.

A reader (another stage, DVC, a crashed-and-restarted flow) must never see a half-written output:
files are written to a temporary sibling in the same directory and moved into place with
:func:`os.replace`, which is atomic on POSIX when source and target share a file system
(https://docs.python.org/3/library/os.html#os.replace). Directories are built in a temporary
sibling and renamed into place only once everything in them has been written and checked.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# A fixed timestamp makes .npz bytes depend only on the arrays, so DVC's content hash of an
# output does not change when a stage re-runs on the same inputs (zip's epoch is 1980).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry so a rename survives a crash; a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    then renamed over ``path``; readers see either the old file or the complete new one. The
    parent directory is created if missing.

    Args:
        path: the destination file.
        data: the full contents.

    Raises:
        OSError: the directory cannot be created or written; the temporary file is removed and
            any previous ``path`` is left untouched.
    """

    def write(tmp_name: str) -> None:
        with open(tmp_name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write_via(path, write)


def atomic_write_via(path: str | Path, write: Callable[[str], None]) -> Path:
    """Let ``write(tmp_path)`` create the file, then move it onto ``path`` atomically.

    For writers that want a file name rather than bytes (``DataFrame.to_parquet``,
    ``Figure.savefig``, ``keras.Model.save``). The temporary file is a sibling of ``path`` that
    keeps its suffix (``.tmp.keras``, ``.tmp.png``), since some writers choose the format from it.

    Args:
        path: the destination file; the parent directory is created if missing.
        write: called once with the temporary file's path (a ``str``); it must write the file there.

    Returns:
        ``path``.

    Raises:
        Whatever ``write`` raises, and OSError as :func:`atomic_write_bytes`; the temporary file is
        removed and any previous ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp_name)
        # mkstemp makes the file private (0o600); outputs should be readable like open()'s.
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Raises:
        OSError: as :func:`atomic_write_bytes`.
        UnicodeEncodeError: ``text`` cannot be encoded with ``encoding``.
    """
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> None:
    """Write ``obj`` as JSON (sorted keys, trailing newline) to ``path`` atomically.

    Keys are sorted so equal objects give identical bytes (stable DVC hashes).

    Raises:
        TypeError: ``obj`` is not JSON-serialisable (nothing is written).
        OSError: as :func:`atomic_write_bytes`.
    """
    text = json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_text(path, text)


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` recursively to strict-JSON-safe Python (``json.dumps(..., allow_nan=False)``).

    numpy scalars and arrays become Python numbers and lists; NaN and infinities become ``None``;
    enums their ``value``; paths ``str``; mappings dicts with ``str`` keys; lists, tuples and sets
    lists; an object's own ``to_dict()``/``as_dict()`` is used when it has one, then dataclass
    fields, then public attributes; anything else becomes ``str(obj)``.
    """
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    for name in ("to_dict", "as_dict"):
        method = getattr(obj, name, None)
        if callable(method) and not isinstance(obj, type):
            return to_jsonable(method())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "__dict__"):
        return {k: to_jsonable(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return str(obj)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], *, compress: bool = True) -> None:
    """Save arrays as an ``.npz`` archive with reproducible bytes, atomically.

    The archive is what :func:`numpy.savez_compressed` writes (one ``.npy`` member per array,
    readable with ``np.load(path, allow_pickle=False)``), except that every member has a fixed
    timestamp, so the same arrays always give the same file bytes.

    Args:
        path: the destination file (conventionally ending in ``.npz``).
        arrays: name to array; arrays of dtype ``object`` are rejected because they need pickle.
        compress: deflate the members (as ``savez_compressed``) or store them (as ``savez``).

    Raises:
        ValueError: an array has dtype ``object``.
        OSError: as :func:`atomic_write_bytes`.
    """
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", compression=method, allowZip64=True) as archive:
        for name, array in arrays.items():
            array = np.asanyarray(array)
            if array.dtype.hasobject:
                raise ValueError(f"{path}: array {name!r} has dtype object, which .npz can only pickle")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


@contextmanager
def atomic_dir(final_dir: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling and publish it as ``final_dir`` only on success.

    Usage::

        with atomic_dir(raw_dir) as tmp:
            (tmp / "a.bin").write_bytes(data)   # write everything into ``tmp``
        # here ``raw_dir`` holds exactly what was written into ``tmp``

    On normal exit the temporary directory replaces ``final_dir`` (an existing ``final_dir`` is
    moved aside first, then deleted once the new one is in place; if the swap fails the old one
    is put back). If the body raises, the temporary directory is deleted, ``final_dir`` is left
    exactly as it was, and the exception propagates.

    Args:
        final_dir: the directory to publish; its parent is created if missing.

    Yields:
        The empty temporary directory, on the same file system as ``final_dir``.

    Raises:
        NotADirectoryError: ``final_dir`` exists and is not a directory.
        OSError: the parent cannot be created or the rename fails.
    """
    final_dir = Path(final_dir)
    if final_dir.exists() and not final_dir.is_dir():
        raise NotADirectoryError(f"{final_dir}: exists and is not a directory")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    # mkdtemp makes the directory private (0o700); the published one should look like mkdir's.
    os.chmod(tmp, 0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        if final_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-", dir=final_dir.parent))
            os.replace(final_dir, old)
        os.replace(tmp, final_dir)
    except BaseException:
        if old is not None and not final_dir.exists():
            os.replace(old, final_dir)
            old = None
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(final_dir.parent)
