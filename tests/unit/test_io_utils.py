"""Tests for pipelines.io_utils: atomic files, atomic directories, reproducible .npz."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pipelines import io_utils
from pipelines.io_utils import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, write_npz


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_atomic_write_bytes_creates_parent_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _siblings(target) == ["a.bin"]
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_write_bytes_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(io_utils.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _siblings(target) == ["a.bin"]


def test_atomic_write_text_and_json(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2]})
    text = (tmp_path / "j.json").read_text()
    assert json.loads(text) == {"a": [1, 2], "b": 1}
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")


def test_atomic_write_json_unserialisable_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "j.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_publishes_on_success_and_replaces_old(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "stale.txt").write_text("stale")
    with atomic_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        assert not (tmp / "stale.txt").exists()
        (tmp / "new.txt").write_text("new")
        assert (final / "stale.txt").exists()  # nothing published before the block ends
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert _siblings(final) == ["out"]
    assert final.stat().st_mode & 0o777 == 0o755


def test_atomic_dir_failure_leaves_existing_untouched(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "good.txt").write_text("good")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in final.iterdir()) == ["good.txt"]
    assert (final / "good.txt").read_text() == "good"
    assert _siblings(final) == ["out"]


def test_atomic_dir_failure_without_existing_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "nested" / "out"
    with pytest.raises(ValueError):
        with atomic_dir(final) as tmp:
            (tmp / "x").write_text("x")
            raise ValueError
    assert not final.exists()
    assert list(final.parent.iterdir()) == []


def test_atomic_dir_failed_swap_restores_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "good.txt").write_text("good")
    real_replace = os.replace
    calls = []

    def flaky_replace(src: str | Path, dst: str | Path) -> None:
        calls.append((Path(src).name, Path(dst).name))
        if Path(dst) == final and ".tmp-" in Path(src).name:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(io_utils.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_dir(final) as tmp:
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["good.txt"]
    assert _siblings(final) == ["out"]
    assert len(calls) >= 2


def test_atomic_dir_rejects_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        with atomic_dir(tmp_path / "f"):
            pass


def test_write_npz_roundtrip_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {
        "x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4, 1),
        "y": np.array([0, 1], dtype=np.int64),
        "ids": np.array(["a", "bb"]),
    }
    write_npz(tmp_path / "a.npz", arrays)
    # A writer that stamped members with the current time would give different bytes now.
    monkeypatch.setattr(time, "localtime", lambda *args: time.struct_time((2001, 2, 3, 4, 5, 6, 0, 0, 0)))
    write_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as loaded:
        assert sorted(loaded.files) == ["ids", "x", "y"]
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype


def test_write_npz_rejects_object_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="object"):
        write_npz(tmp_path / "a.npz", {"o": np.array([{"a": 1}], dtype=object)})
    assert not (tmp_path / "a.npz").exists()
