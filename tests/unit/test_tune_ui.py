"""`curvewatch tune-ui` / pipelines.tune.serve_dashboard: optuna-dashboard on the tuning store."""

from __future__ import annotations

import socket
import sqlite3

import optuna
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.tune import serve_dashboard


def test_a_store_no_tuning_wrote_yet_gets_optunas_tables_and_the_server_binds_loopback(tmp_path, monkeypatch):
    import optuna_dashboard

    seen = {}
    monkeypatch.setattr(
        optuna_dashboard, "run_server", lambda storage, **kw: seen.update(storage=storage, **kw)
    )
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    serve_dashboard(url, port=18080)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 18080
    assert isinstance(seen["storage"], optuna.storages.RDBStorage)
    # Optuna's schema is there (optuna-dashboard reads, never creates it), with no study in it.
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"version_info", "studies", "trials"} <= tables
    assert optuna.get_all_study_names(url) == []


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(tmp_path, port):
    with pytest.raises(ValueError, match="port"):
        serve_dashboard(f"sqlite:///{tmp_path / 'optuna.db'}", port=port)


def test_a_busy_port_is_never_reused_and_the_error_names_it(params_file, monkeypatch):
    monkeypatch.delenv("CURVEWATCH_OPTUNA_STORAGE", raising=False)
    params = params_file()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["tune-ui", "--params", str(params), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"127.0.0.1:{port}" in result.output and "could not serve" in result.output
