"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

Format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"): a big-endian
header of a 4-byte magic number ``0x00 0x00 <type> <ndim>`` followed by ``ndim`` uint32 sizes,
then the data in C order. Only type ``0x08`` (unsigned byte) is used by (Fashion-)MNIST, so image
files start with ``0x00000803`` (3 dimensions: count, rows, columns) and label files with
``0x00000801`` (1 dimension: count).
"""

from __future__ import annotations

import struct

import numpy as np

UBYTE_TYPE = 0x08
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


class IdxError(ValueError):
    """Raised when bytes are not a well-formed IDX file of the expected kind."""


def parse_idx(data: bytes, ndim: int, name: str = "<bytes>") -> np.ndarray:
    """Parse an unsigned-byte IDX file with ``ndim`` dimensions.

    Args:
        data: the whole decompressed file.
        ndim: the number of dimensions expected (3 for images, 1 for labels).
        name: a file name to put in error messages.

    Returns:
        A read-only uint8 array of the shape given in the header, e.g. ``(N, 28, 28)`` for
        images or ``(N,)`` for labels; it shares memory with ``data``.

    Raises:
        IdxError: the file is shorter than its header, the magic number is not
            ``0x000008<ndim>`` (wrong data type or number of dimensions), or the file length
            differs from what the header's sizes imply (truncated or trailing bytes).
    """
    expected_magic = (UBYTE_TYPE << 8) | ndim
    if len(data) < 4:
        raise IdxError(f"{name}: {len(data)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise IdxError(
            f"{name}: wrong IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim != 1 else ''})"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxError(f"{name}: {len(data)} bytes is too short for a {ndim}-dimensional IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    expected_len = header_len + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_len:
        raise IdxError(
            f"{name}: header says shape {tuple(shape)} ({expected_len} bytes in all) "
            f"but the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def parse_images(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX image file (magic ``0x00000803``).

    Returns:
        ``(N, rows, cols)`` uint8, read-only.

    Raises:
        IdxError: as :func:`parse_idx`.
    """
    return parse_idx(data, 3, name)


def parse_labels(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an IDX label file (magic ``0x00000801``).

    Returns:
        ``(N,)`` uint8, read-only.

    Raises:
        IdxError: as :func:`parse_idx`.
    """
    return parse_idx(data, 1, name)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (the inverse of :func:`parse_idx`).

    Used to build small synthetic datasets for tests and examples.

    Args:
        array: any uint8 array with 1 to 255 dimensions, e.g. ``(N, 28, 28)`` or ``(N,)``.

    Raises:
        ValueError: ``array`` is not uint8 or has no dimensions.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim == 0:
        raise ValueError(f"encode_idx needs a uint8 array with at least one dimension, got {array.dtype}")
    header = struct.pack(">I", (UBYTE_TYPE << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
