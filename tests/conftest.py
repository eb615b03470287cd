"""Shared fixtures: the real params.yaml, shrunk for tests, and an isolated MLflow store per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def dvc(root: Path | str, *args: str) -> str:
    """The output of ``dvc <args>`` run in ``root`` as a user would run it, stripped; a failure fails
    the test with DVC's own output."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, f"dvc {' '.join(args)}: {out.stdout}{out.stderr}"
    return out.stdout.strip()


# Real PostgreSQL / MLflow / Prefect servers, once per session (fixtures `mlflow_server`, `prefect_server`).
pytest_plugins = ["tests.services.plugin"]

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Tests run offline: DVC's usage analytics (on by default in a repository that `dvc init` makes in
# a test's tmp_path; the project's own .dvc/config turns them off) would spawn a daemon that posts to
# analytics.dvc.org (https://dvc.org/doc/user-guide/analytics). Inherited by every `dvc` subprocess.
os.environ["DVC_NO_ANALYTICS"] = "1"

# Prefect's client-side home (`import prefect` creates it; profiles, local state) is a temporary folder
# removed at the end, not ~/.prefect or the repository's .prefect that the Makefile exports for the
# user's own runs. Set before anything imports prefect; the servers the tests start have their own
# homes (infra/services.py), and subprocesses inherit this one.
_PREFECT_HOME = tempfile.mkdtemp(prefix="curvewatch-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME

_HYPOTHESIS_HOME: tempfile.TemporaryDirectory | None = None
_SCRATCH: tempfile.TemporaryDirectory | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis' own files (its cache of the constants in the code under test, written when
    ``@given`` decorates a test at collection) go to a temporary folder removed at the end, not
    ``.hypothesis`` in the working directory (tests/unit/curves/test_properties.py); so do DVC's
    per-repository state (its site cache, ``DVC_SITE_CACHE_DIR``: ``/var/tmp/dvc/repo/<hash>``
    otherwise, one folder per tmp_path repository, never removed) and Keras' config
    (``KERAS_HOME``: ``~/.keras/keras.json`` otherwise). DVC's log handlers are created on
    pytest's session-wide output capture."""
    from hypothesis.configuration import set_hypothesis_home_dir

    global _HYPOTHESIS_HOME, _SCRATCH
    _HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="hypothesis-")
    set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)
    _SCRATCH = tempfile.TemporaryDirectory(prefix="curvewatch-tests-")
    os.environ.setdefault("DVC_SITE_CACHE_DIR", os.path.join(_SCRATCH.name, "dvc-site-cache"))
    os.environ.setdefault("KERAS_HOME", os.path.join(_SCRATCH.name, "keras"))
    # `import dvc` gives DVC's logger console handlers bound to the sys.stdout / sys.stderr of that
    # moment (dvc.logger.setup). Imported first inside a test using capsys, they would keep that
    # test's capture stream, closed when it ends, and every later DVC log line would raise
    # "I/O operation on closed file" (seen when a CLI test ran before tests/unit/test_versioning.py).
    # Here they get pytest's session-wide capture instead.
    import dvc  # noqa: F401


# Fixtures that start one server per pytest process: tests/services/plugin.py's, and the flow tests'
# Prefect test harness (tests/flows/conftest.py, which reuses the name ``prefect_server``).
SHARED_SERVER_FIXTURES = frozenset({"services", "mlflow_server", "prefect_server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests for pytest-xdist's ``--dist loadgroup`` (``make test`` runs two processes).

    Each module is one group, so its module-scoped fixtures (a trained model, a loaded MLflow
    store) are built once, as in a serial run; every module with a test that uses a session server
    joins one group, ``servers``, so PostgreSQL, MLflow and Prefect start in one process only.
    Without xdist (``pytest -p no:xdist``) nothing is marked: its ``xdist_group`` marker is then
    not registered, and ``--strict-markers`` would refuse it.
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return

    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::", 1)[0]

    with_servers = {
        module(item)
        for item in items
        if SHARED_SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    }
    for item in items:
        group = "servers" if module(item) in with_servers else module(item)
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in (_HYPOTHESIS_HOME, _SCRATCH):
        if folder is not None:
            folder.cleanup()
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def _mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite store, made once per session: creating one runs
    MLflow's schema migrations (seconds each), so each test copies this file instead."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    uri = f"sqlite:///{path}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()
    return path


@pytest.fixture(autouse=True)
def _no_mlflow_global_uri_leaks():
    """Each test starts without a process-wide MLflow tracking / registry URI left by another.

    The stages call ``mlflow.set_tracking_uri`` (model logging and loading go through the fluent
    API); inside one pytest process that global would outlive the test and point the next test's
    clients at a deleted tmp_path store.
    """
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _mlflow_template_db: Path) -> str:
    """A fresh SQLite MLflow store of this test's own under tmp_path (artifacts beside it)."""
    import shutil

    shutil.copyfile(_mlflow_template_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    return uri


@pytest.fixture
def params_file(tmp_path: Path):
    """Write the repository's real params.yaml, with paths moved under tmp_path and ``updates``
    deep-merged over it, and return its path. Usage: ``params_file({"train": {"epochs": 1}})``."""

    def make(updates: dict | None = None, name: str = "params.yaml") -> Path:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["paths"] = {key: str(tmp_path / value) for key, value in raw["paths"].items()}
        raw["paths"]["expectations_dir"] = str(REPO / "expectations")  # an input kept in the repo

        def merge(dst: dict, src: dict) -> None:
            for key, value in src.items():
                if isinstance(value, dict) and isinstance(dst.get(key), dict):
                    merge(dst[key], value)
                else:
                    dst[key] = value

        merge(raw, updates or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make
