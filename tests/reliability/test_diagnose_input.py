"""Reliability rows of ``curvewatch diagnose``'s input handling (exit 2 and one clear line on bad input)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()
HEADER = "epoch,accuracy,loss,val_accuracy,val_loss"


def _rows(epochs: int = 12) -> list[str]:
    e = np.arange(epochs)
    acc = 0.9 - 0.5 * np.exp(-e / 3)
    return [
        f"{i},{a + 0.01:.4f},{2.3 * (1 - a):.4f},{a:.4f},{2.3 * (1 - a) + 0.05:.4f}"
        for i, a in enumerate(acc)
    ]


def test_binary_file_named_csv_names_the_file(tmp_path):
    bad = tmp_path / "weights.csv"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n\x00\x00\xff\xfe" * 20)
    result = runner.invoke(app, ["diagnose", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"{bad}: not a UTF-8 text file" in result.output
    assert "Traceback" not in result.output


def test_mistyped_path_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["diagnose", "runs/histroy.csv", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "runs/histroy.csv: no such file" in result.output
    assert not (tmp_path / "mlflow.db").exists()


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    from pipelines.curves.io import load_curve

    # Epochs 5..16 in the file, so that a header read as "\ufeffepoch" (rows numbered instead of
    # the epoch column read) shows.
    rows = [f"{int(row.split(',', 1)[0]) + 5},{row.split(',', 1)[1]}" for row in _rows()]
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + "\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8"))
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join([HEADER, *rows]) + "\n")
    with_bom, without = load_curve(path), load_curve(plain)
    assert with_bom.epochs.tolist() == without.epochs.tolist()
    assert with_bom.epochs.tolist() != list(range(1, len(rows) + 1))
    assert set(with_bom.metrics) == set(without.metrics)
    result = runner.invoke(
        app, ["diagnose", str(path), "--epoch-budget", "17", "--no-extrapolate", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code in (0, 1), result.output  # diagnosed, not refused
    assert "excel.csv" in (tmp_path / "r" / "diagnosis.json").read_text()


def test_run_id_without_a_store_creates_no_mlflow_db(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(
        app, ["diagnose", "0123456789abcdef0123456789abcdef", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "no MLflow store" in result.output and "MLFLOW_TRACKING_URI" in result.output
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("big.csv", "epoch,val_loss\n0," + "1" * 140_000 + "\n", "big.csv: not a readable CSV file"),
        (
            "huge.json",
            '{"val_loss": [1, 1' + "0" * 400 + "]}",
            "huge.json: metric 'val_loss' holds a number beyond float64's range",
        ),
        ("none.json", '{"loss": [], "val_loss": []}', "none.json: no epochs in history"),
        (
            "deep.json",
            "[" * 100_000 + "]" * 100_000,
            "deep.json: not a training history (JSON nested too deeply",
        ),
        (
            "far.csv",
            "epoch,val_loss\n0,1\n1e20,0.5\n",
            "far.csv: column 'epoch': 1e+20 is not an epoch number",
        ),
        (
            "zero.json",
            '{"history": {"val_loss": [1, 0.5]}, "params": {"epochs": 0}}',
            "zero.json: params.epochs: must be a positive number of epochs, got 0",
        ),
    ],
    ids=[
        "cell-over-the-csv-limit",
        "integer-beyond-float64",
        "no-epochs",
        "json-nested-too-deep",
        "epoch-1e20",
        "budget-zero",
    ],
)
def test_unreadable_logs_are_refused_naming_the_file_and_a_folder_skips_them(
    tmp_path, name, content, message
):
    # Each had escaped as csv.Error, OverflowError or RecursionError (or been taken as a budget of
    # 0), which `curvewatch diagnose <folder>` does not catch: one such file aborted the whole folder.
    from pipelines.curves.io import load_curve

    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / name).write_text(content)
    (folder / "good.csv").write_text("\n".join([HEADER, *_rows()]) + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        load_curve(folder / name)
    result = runner.invoke(app, ["diagnose", str(folder), "--no-extrapolate", "--out", str(tmp_path / "r")])
    assert result.exit_code in (0, 1), result.output  # the good file diagnosed, the bad one skipped
    assert "skipped, not a training curve" in result.output
