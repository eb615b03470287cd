"""Reliability rows that already held when issue 10 was filed, kept so that they keep holding:
damaged IDX files, bad images, parallel writers to one SQLite MLflow store, a malicious model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines import steps
from pipelines.config import BaseConfig, FetchConfig
from pipelines.fetch import FASHION_MNIST_FILES, DataError, fetch
from tests.reliability._support import idx_source, make_image_folder

FOLDER = BaseConfig(dataset="folder")


@pytest.mark.parametrize("damage", ["truncated", "bit-flip"])
def test_damaged_idx_file_is_refused_naming_the_file(tmp_path, damage):
    source = tmp_path / "source"
    sha = idx_source(source, n_train=30, n_test=10, gz=True)
    target = source / f"{FASHION_MNIST_FILES[0]}.gz"
    blob = bytearray(target.read_bytes())
    if damage == "truncated":
        blob = blob[: len(blob) // 2]
    else:
        blob[-12] ^= 0xFF  # inside the deflate stream / CRC
    target.write_bytes(bytes(blob))
    cfg = FetchConfig(source_dir=source, system_dir=tmp_path / "none")
    with pytest.raises(DataError, match=rf"{target}: (truncated or corrupt gzip|SHA-256)"):
        fetch(cfg, BaseConfig(), tmp_path / "raw", expected_sha256=sha)
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("kind", ["truncated-png", "text-named-png"])
def test_bad_image_is_refused_naming_the_file(tmp_path, kind):
    root = make_image_folder(tmp_path / "images", per_class=4)
    bad = root / "class1" / "bad.png"
    if kind == "truncated-png":
        good = (root / "class1" / "000.png").read_bytes()
        bad.write_bytes(good[: len(good) // 2])
    else:
        bad.write_text("this is not an image")
    with pytest.raises(DataError, match=rf"{bad}: unreadable image"):
        fetch(FetchConfig(image_folder=root), FOLDER, tmp_path / "raw")


_WRITER = """
import sys
from mlflow import MlflowClient
from mlflow.entities import Metric
uri, run_id, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
mc = MlflowClient(tracking_uri=uri)
for step in range(1, 51):
    mc.log_batch(run_id, metrics=[Metric(f"w{worker}", float(step), 0, step)])
"""


@pytest.mark.slow
def test_parallel_writers_to_one_sqlite_store_lose_nothing(mlflow_uri):
    from mlflow import MlflowClient

    mc = MlflowClient(tracking_uri=mlflow_uri)
    run_id = mc.create_run(mc.create_experiment("parallel")).info.run_id
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, mlflow_uri, run_id, str(w)], stderr=subprocess.PIPE)
        for w in range(4)
    ]
    for p in procs:
        assert p.wait(300) == 0, p.stderr.read().decode()
    for w in range(4):
        assert [m.step for m in sorted(mc.get_metric_history(run_id, f"w{w}"), key=lambda m: m.step)] == list(
            range(1, 51)
        )


def _malicious_model(path: Path, marker: Path) -> None:
    """A .keras file whose Lambda layer runs a shell command when deserialised without safe mode."""
    import keras

    inputs = keras.Input((2,))
    # Built from source so that the command is a constant of the code, not a closure variable.
    payload = eval(f"lambda x: (__import__('os').system('touch {marker}'), x)[1]")  # noqa: S307
    outputs = keras.layers.Lambda(payload)(inputs)
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once


def test_malicious_model_is_refused_in_one_line(folder_project, tmp_path):
    params = folder_project()
    marker = tmp_path / "pwned"
    params.paths.model_file.parent.mkdir(parents=True)
    _malicious_model(params.paths.model_file, marker)
    params.paths.run_file.write_text(json.dumps({"run_id": "0" * 32}))

    result = CliRunner().invoke(
        __import__("pipelines.cli", fromlist=["app"]).app,
        ["evaluate", "--params", str(tmp_path / "params.yaml")],
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "model.keras: model load refused" in lines[0] and "Lambda" in lines[0]
    assert not marker.exists()
    with pytest.raises(steps.StageError, match="model load refused"):
        steps.load_model_safely(params.paths.model_file)
