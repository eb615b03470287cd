"""A real ``mlflow server`` process for tests: SQLite store and artifact proxy under a folder of the
test's own, bound to 127.0.0.1, and provably ours (the store carries a random token that whatever
answers on the port must return). Stoppable and restartable on the same port and store, to test
what clients do while the server is away.

The services helper's session fixture (``tests/services/plugin.py``: PostgreSQL-backed server
started by ``infra/mlflow-server.sh``) is the one for flow and CLI tests; this one exists for tests
that must stop and restart a server without disturbing the others.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TOKEN_TAG = "curvewatch.test_server_token"


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on ``root/mlflow.db`` (artifacts in ``root/artifacts``), one worker."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        from mlflow import MlflowClient

        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = f"sqlite:///{self.root / 'mlflow.db'}"
        self.token = secrets.token_hex(8)
        MlflowClient(self.store).create_experiment(f"ownership-{self.token}", tags={TOKEN_TAG: self.token})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 300) -> str:
        """Start the server and wait until it answers with our token; returns its URL."""
        log = (self.root / "server.log").open("a")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", self.store]
            + ["--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1"]
            + ["--port", str(self.port), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MLFLOW_TRACKING_URI": self.store},
            start_new_session=True,  # its own process group: `mlflow server` runs uvicorn as a child
        )
        log.close()
        deadline = time.monotonic() + timeout_s  # 30-100 s on 2 busy cores
        query = f"{self.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ownership-{self.token}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited ({self.proc.returncode}); see {self.root / 'server.log'}"
                )
            try:
                with urllib.request.urlopen(query, timeout=5) as resp:
                    exp = json.load(resp)["experiment"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"mlflow server on {self.url} did not answer in {timeout_s:.0f} s"
                    ) from None
                time.sleep(1)
        tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        if tags.get(TOKEN_TAG) != self.token:
            self.stop()
            raise RuntimeError(f"something else answers on {self.url}")
        return self.url

    def stop(self) -> None:
        """Stop the server and its worker (SIGTERM to its process group, SIGKILL after 30 s)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None
