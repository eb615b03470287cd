"""Session fixtures for tests that need real servers, started with the project's own scripts.

Registered in ``tests/conftest.py`` (``pytest_plugins``), so any test can ask for them:
- ``services``: a :class:`Services` handle on a private state folder (its own PostgreSQL cluster,
  MLflow server and Prefect server, each on a free port of 127.0.0.1); nothing is started until a
  fixture below asks, and everything started is stopped at the end of the session;
- ``mlflow_server``: a PostgreSQL-backed ``mlflow server`` (``infra/mlflow-server.sh``), once per
  session; ``mlflow_server.url`` is its tracking URI;
- ``prefect_server``: one Prefect server with its UI (``infra/prefect-server.sh``); ``.url`` is
  the API URL (``.../api``).
Tests share these servers, so each test uses experiment / flow names of its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"


@dataclass
class Services:
    """The project's service scripts, pointed at one private state folder."""

    dir: Path
    env: dict[str, str]
    started: list[str] = field(default_factory=list)

    def run(self, script: str, *args: str, check: bool = True, timeout: float = 400, **env: str):
        """Run ``infra/<script> args`` with this state folder; returns the CompletedProcess."""
        proc = subprocess.run(
            ["bash", str(INFRA / script), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"infra/{script} {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, script: str, **env: str) -> str:
        """Start a service, remember to stop it, and return its URL."""
        self.run(script, "start", **env)
        if script not in self.started:
            self.started.append(script)
        return self.run(script, "url", **env).stdout.strip()

    def stop_all(self) -> None:
        for script in reversed(self.started):
            self.run(script, "stop", check=False)
        if "mlflow-server.sh" in self.started or "postgres.sh" in self.started:
            self.run("postgres.sh", "stop", check=False)


def make_services(prefix: str) -> Services:
    """A fresh state folder under /tmp that the ``postgres`` user can reach (pytest's own tmp
    folders are private to root, and PostgreSQL refuses to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "CURVEWATCH_"))}
    env.update(
        CURVEWATCH_SERVICES_DIR=str(path),
        CURVEWATCH_POSTGRES_PORT="0",
        CURVEWATCH_MLFLOW_PORT="0",
        CURVEWATCH_PREFECT_PORT="0",
        CURVEWATCH_MLFLOW_WORKERS="1",
        VENV=str(Path(sys.executable).parent.parent),
    )
    return Services(path, env)


def remove_services(services: Services) -> None:
    services.stop_all()
    shutil.rmtree(services.dir, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    url: str
    services: Services


@pytest.fixture(scope="session")
def services():
    svc = make_services("curvewatch-test-services-")
    yield svc
    remove_services(svc)


@pytest.fixture(scope="session")
def mlflow_server(services: Services) -> Server:
    """A real ``mlflow server`` on the session's PostgreSQL, artifacts proxied to a local folder."""
    return Server(services.start("mlflow-server.sh"), services)


@pytest.fixture(scope="session")
def prefect_server(services: Services) -> Server:
    """A real Prefect server (API and UI) of the session."""
    return Server(services.start("prefect-server.sh"), services)
