"""``curvewatch flow retrain`` / ``flow tune``: each failure a flow raises ends in one line and the
exit code the stage commands use (2 missing or unreadable data, 3 a failed gate, 1 otherwise), never
a traceback. The flows themselves are replaced here (their runs are tested in tests/flows)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import flows.retrain
import flows.tune
from pipelines import cli
from pipelines.fetch import DataError
from pipelines.steps import GateFailed, StageError
from pipelines.versioning import VersioningError

runner = CliRunner()


def _raising(error: Exception):
    def flow(*args, **kwargs):
        raise error

    return flow


FAILURES = [
    (DataError("data/images: image folder not found"), 2),
    (FileNotFoundError("data/raw/train.npz: not found"), 2),
    (GateFailed("regression gate failed: 0.86 < 0.89", None), 3),
    (StageError("another training holds the lock (pid 123)"), 1),
]


@pytest.mark.parametrize(
    ("command", "error", "code"),
    [(c, e, k) for c in ("retrain", "tune") for e, k in FAILURES]
    # Only the retrain flow commits to DVC (a dvc push that failed).
    + [("retrain", VersioningError("dvc push failed: no remote"), 1)],
)
def test_flow_failures_end_in_one_line_and_the_stage_exit_code(
    params_file, monkeypatch, command, error, code
):
    monkeypatch.setattr(cli, "ensure_prefect_server", lambda: "http://127.0.0.1:1/api")
    monkeypatch.setattr(flows.retrain, "run_retrain", _raising(error))
    monkeypatch.setattr(flows.tune, "tune", _raising(error))
    result = runner.invoke(cli.app, ["flow", command, "--params", str(params_file())])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    assert str(error).splitlines()[0] in result.output and "Traceback" not in result.output


def test_deployments_refuse_a_flow_source_folder_without_the_params_file(params_file, tmp_path, monkeypatch):
    from flows import deployments

    elsewhere = tmp_path / "checkout"
    elsewhere.mkdir()
    monkeypatch.setenv("CURVEWATCH_FLOW_SOURCE", str(elsewhere))
    # Refused before any call to the Prefect server (none runs here); it was a bare relative_to error.
    with pytest.raises(ValueError, match=r"params\.yaml: not inside the flow source .*checkout"):
        deployments.register(params_file())
    with pytest.raises(SystemExit, match="not inside the flow source"):
        deployments.main(["--params", str(params_file())])
