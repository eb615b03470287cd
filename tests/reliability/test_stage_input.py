"""Reliability rows: a stage run before the one it needs exits non-zero with one line naming the missing
file (2 for missing or unreadable input, 1 for a stage not run yet), never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("stage", "code"),
    # train and evaluate stop on an output of a stage before them (a stage not run yet:
    # StageError, 1); the others on the prepared data they read (missing input: 2).
    [("validate", 2), ("baseline", 2), ("train", 1), ("evaluate", 1), ("tune", 2)],
)
def test_a_stage_without_prepared_data_fails_in_one_line_naming_the_file(
    params_file, mlflow_uri, tmp_path, stage, code
):
    # Each had ended in a traceback (ValidationInputError, FileNotFoundError) although its message
    # named the file.
    path = params_file()
    result = runner.invoke(app, [stage, "--params", str(path)])
    assert isinstance(result.exception, SystemExit), result.exception  # typer.Exit, not an error
    assert result.exit_code == code, result.output
    assert str(tmp_path) in result.output and "Traceback" not in result.output


def test_fetch_and_prepare_refuse_missing_input_with_exit_2_naming_it(params_file, tmp_path):
    # Both had exited 1 on the same kind of error that the later stages exit 2 on.
    missing = tmp_path / "no-such-folder"
    path = params_file({"base": {"dataset": "folder"}, "fetch": {"image_folder": str(missing)}})
    fetched = runner.invoke(app, ["fetch", "--params", str(path)])
    assert fetched.exit_code == 2 and str(missing) in fetched.output, fetched.output
    prepared = runner.invoke(app, ["prepare", "--params", str(path)])  # nothing fetched
    assert prepared.exit_code == 2 and str(tmp_path) in prepared.output, prepared.output
    assert "Traceback" not in fetched.output + prepared.output
