"""The project's service scripts against real servers: ownership, auth, and faults at the start."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.services.plugin import INFRA, Server, Services, make_services, remove_services

INFRA_SERVICES = INFRA / "services.py"

# Looks like an MLflow server from outside: same command-line words as ours, answers /health and the
# experiment API with 200, and accepts any POST; only the token it reports is not ours.
FAKE_MLFLOW = r"""
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def _ok(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._ok({"experiment": {"experiment_id": "0", "tags": [
            {"key": "curvewatch.server_token", "value": "someone-elses"}]}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0))); self._ok({})
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[-1])), H).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_mlflow(tmp_path: Path):
    """A foreign MLflow look-alike on a free port; yields (port, pid)."""
    port = free_port()
    script = tmp_path / "mlflow_fake.py"
    script.write_text(FAKE_MLFLOW)
    proc = subprocess.Popen([sys.executable, str(script), "mlflow", "server", "--port", str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield port, proc.pid
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def scratch_services():
    svc = make_services("curvewatch-test-scratch-")
    yield svc
    remove_services(svc)


def test_status_does_not_trust_a_look_alike_on_the_recorded_port(
    fake_mlflow, scratch_services: Services, monkeypatch: pytest.MonkeyPatch
):
    port, pid = fake_mlflow
    state = scratch_services.dir / "mlflow"
    state.mkdir(parents=True)
    # the start time as pid_start files record it: /proc/<pid>/stat field 22, read here independently
    start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    for key, value in {"port": port, "pid": pid, "pid_start": start, "token": "ours"}.items():
        (state / key).write_text(f"{value}\n")
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).ok  # it answers like MLflow
    status = scratch_services.run("mlflow-server.sh", "status", check=False)
    assert status.returncode == 1
    assert "not running" in status.stdout
    # What refused it is the token: the recorded pid, start time, command words and port all match
    # the look-alike, and the token it reports is the only difference. (status alone would also fail
    # on the PostgreSQL backend, which this scratch folder never started.)
    monkeypatch.setenv("CURVEWATCH_SERVICES_DIR", str(scratch_services.dir))
    server = _services_module().MlflowServer()
    assert server.process_ok()
    assert not server.token_ok()
    (state / "token").write_text("someone-elses\n")  # the token the look-alike reports
    assert server.token_ok()
    (state / "token").write_text("ours\n")
    # and stop leaves a process that is not ours alone
    (state / "pid_start").write_text("0\n")
    stop = scratch_services.run("mlflow-server.sh", "stop")
    assert "not our server; left alone" in stop.stdout
    assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).ok


def test_postgres_never_takes_a_held_port(scratch_services: Services):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    held = holder.getsockname()[1]
    try:
        explicit = scratch_services.run(
            "postgres.sh", "start", check=False, CURVEWATCH_POSTGRES_PORT=str(held)
        )
        assert explicit.returncode == 1
        # named: the holder's pid (this test process) and command line, read with psutil
        assert f"127.0.0.1:{held} is held by pid {os.getpid()} (" in explicit.stderr
        # a recorded port that something else took meanwhile: a free port, recorded, and ours
        (scratch_services.dir / "postgres" / "port").write_text(f"{held}\n")
        url = scratch_services.start("postgres.sh")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert port != held
        assert (scratch_services.dir / "postgres" / "port").read_text().strip() == str(port)
        assert scratch_services.run("postgres.sh", "status").returncode == 0
    finally:
        holder.close()


def test_ui_fails_loudly_when_its_port_is_held(tmp_path: Path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        # Its own store and state folder: were the port check to fail, the UI it started would
        # touch neither the repository's mlflow.db nor the developer's services.
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
            CURVEWATCH_SERVICES_DIR=str(tmp_path / "services"),
        )
        proc = subprocess.run(
            ["bash", str(INFRA / "mlflow-ui.sh"), str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        holder.close()
    assert proc.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}, it is held by pid {os.getpid()} (" in proc.stderr


def test_worker_without_a_server_says_so_and_fails(scratch_services: Services):
    proc = scratch_services.run("prefect-worker.sh", "start", check=False)
    assert proc.returncode == 1
    assert "no Prefect server is up" in proc.stderr
    dead = f"http://127.0.0.1:{free_port()}/api"
    proc = scratch_services.run("prefect-worker.sh", "start", check=False, PREFECT_API_URL=dead)
    assert proc.returncode == 1
    assert f"no Prefect server answers at {dead}" in proc.stderr


def _spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[dict]:
    """The keyword arguments of every call of ``owner.name`` from now on (the call still goes through)."""
    calls: list[dict] = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def _one_limited_attempt(limits: list) -> bool:
    """Exactly one attempt, with a time limit of at most 30 s."""
    return len(limits) == 1 and limits[0] is not None and limits[0] <= 30


def test_tracking_server_down_at_the_start_fails_fast_naming_the_uri(monkeypatch):
    from pipelines import tracking

    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # Fast by construction, not by the clock: one plain request with a time limit (requests retries
    # nothing by default), where MLflow's own client would retry for minutes.
    gets = _spy(monkeypatch, requests, "get")
    with pytest.raises(tracking.TrackingUnavailable, match=uri.replace(".", r"\.")) as info:
        tracking.client()
    assert _one_limited_attempt([call.get("timeout") for call in gets]), gets
    assert "\n" not in str(info.value)


def test_prefect_server_is_reused_only_as_ours(prefect_server):
    svc = prefect_server.services
    again = svc.run("prefect-server.sh", "start")
    assert "already running" in again.stdout
    health = requests.get(f"{prefect_server.url}/health", timeout=10)
    assert health.status_code == 200
    # The same server, with a token on record that is not the one it holds, is not ours: status
    # says so (start would restart it rather than reuse it; the session's server is left running).
    token = svc.dir / "prefect" / "token"
    ours = token.read_text()
    try:
        token.write_text("someone-elses\n")
        assert svc.run("prefect-server.sh", "status", check=False).returncode == 1
    finally:
        token.write_text(ours)
    assert svc.run("prefect-server.sh", "status").returncode == 0


# ------------------------------------------------------------------ MLflow server with basic auth


@pytest.fixture(scope="module")
def auth_server():
    """A second MLflow server, basic auth on, whose recorded port a foreign look-alike now holds."""
    svc = make_services("curvewatch-test-auth-")
    password = secrets.token_urlsafe(12)
    svc.env.update(
        CURVEWATCH_MLFLOW_AUTH="basic", MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password
    )
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    held = holder.getsockname()[1]
    (svc.dir / "mlflow").mkdir()
    (svc.dir / "mlflow" / "port").write_text(f"{held}\n")
    try:
        url = svc.start("mlflow-server.sh")
        yield url, held, ("admin", password), svc
    finally:
        holder.close()
        remove_services(svc)


def test_server_moves_off_a_port_held_by_another_process(auth_server):
    url, held, _, _ = auth_server
    assert not url.endswith(f":{held}")


def test_auth_refuses_anonymous_and_serves_the_admin(auth_server):
    url, _, creds, _ = auth_server
    endpoint = f"{url}/api/2.0/mlflow/experiments/search"
    assert requests.get(endpoint, params={"max_results": 1}, timeout=30).status_code == 401
    assert (
        requests.get(endpoint, params={"max_results": 1}, auth=("admin", "wrong"), timeout=30).status_code
        == 401
    )
    ok = requests.get(endpoint, params={"max_results": 1}, auth=creds, timeout=30)
    assert ok.status_code == 200


def test_fetch_curves_bulk_over_an_authenticated_server(auth_server, monkeypatch):
    from mlflow.entities import Metric

    from pipelines import tracking

    url, _, (user, password), _ = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mc = tracking.client(url)
    exp = mc.create_experiment(f"auth-{uuid.uuid4().hex[:8]}")
    run = mc.create_run(exp, tags={tracking.RUN_KIND_TAG: "train"})
    mc.log_batch(
        run.info.run_id, metrics=[Metric("val_accuracy", 0.5 + e / 10, 1000 + e, e) for e in (1, 2, 3)]
    )
    mc.set_terminated(run.info.run_id)
    (curve,) = tracking.fetch_curves(mc, [mc.get_run(run.info.run_id)])
    assert curve.metrics["val_accuracy"].tolist() == pytest.approx([0.6, 0.7, 0.8])


def test_postgres_refusing_connections_is_one_clear_line(auth_server, monkeypatch):
    from pipelines import tracking

    url, _, (user, password), svc = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    db_url = svc.run("postgres.sh", "url").stdout.strip()
    tracking.check_tracking_store(db_url)
    tracking.check_tracking_store(url)
    svc.run("postgres.sh", "stop")
    # One attempt each, with a time limit, rather than a clock: a database connection with
    # connect_timeout, and one plain HTTP request to the tracking server (no retries).
    import sqlalchemy

    engines = _spy(monkeypatch, sqlalchemy, "create_engine")
    gets = _spy(monkeypatch, requests, "get")
    try:
        with pytest.raises(tracking.TrackingUnavailable) as direct:
            tracking.check_tracking_store(db_url)
        message = str(direct.value)
        assert "refused the connection" in message and "\n" not in message
        assert password not in message and "***" in message  # the database password stays hidden
        with pytest.raises(tracking.TrackingUnavailable) as via_server:
            tracking.check_tracking_store(url)
        assert url in str(via_server.value) and "\n" not in str(via_server.value)
        assert "Traceback" not in str(via_server.value)
        connect = [call.get("connect_args", {}).get("connect_timeout") for call in engines]
        assert _one_limited_attempt(connect), engines
        assert _one_limited_attempt([call.get("timeout") for call in gets]), gets
        # What a user of the program sees: that one line and exit code 1, no frames.
        cli = Path(sys.executable).parent / "curvewatch"
        for uri in (db_url, url):
            env = {**svc.env, "MLFLOW_TRACKING_URI": uri}
            env.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
            done = subprocess.run(
                [cli, "diagnose", "--experiment", "any"], capture_output=True, text=True, env=env, timeout=120
            )
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 1 and len(lines) == 1, done.stderr
            assert "refused the connection" in lines[0] or "is its database up?" in lines[0], lines
            assert password not in done.stderr and "sqlalchemy" not in done.stderr.lower()
    finally:
        svc.run("postgres.sh", "start")


def test_prefect_api_auth_string_refuses_anonymous_requests(scratch_services: Services):
    auth = f"curvewatch:{secrets.token_urlsafe(12)}"
    url = scratch_services.start("prefect-server.sh", PREFECT_SERVER_API_AUTH_STRING=auth)
    # ownership was checked through the authenticated API; anonymous requests are refused
    assert (
        scratch_services.run("prefect-server.sh", "status", PREFECT_SERVER_API_AUTH_STRING=auth).returncode
        == 0
    )
    assert requests.post(f"{url}/flows/filter", json={}, timeout=30).status_code == 401
    user, password = auth.split(":", 1)
    assert requests.post(f"{url}/flows/filter", json={}, auth=(user, password), timeout=30).status_code == 200
    # without the auth string the script cannot read its token back: not provably ours
    assert scratch_services.run("prefect-server.sh", "status", check=False).returncode == 1
    scratch_services.run("prefect-server.sh", "stop", PREFECT_SERVER_API_AUTH_STRING=auth)


def _services_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("curvewatch_infra_services", INFRA_SERVICES)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_a_stopped_servers_port_is_free_again_but_a_listener_holds_it():
    """A restarted service gets its recorded port back (its clients keep their URL): connections
    the stopped server closed linger in TIME_WAIT for a minute, and only a listener holds a port."""
    services = _services_module()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and PostgreSQL do
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not services.port_free(port)
    accepted.close()  # the server closes first: its side of the connection enters TIME_WAIT
    server.close()
    client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old bind test saw: "held"
    assert services.port_free(port)


def test_a_503_while_the_server_settles_is_retried_and_a_lasting_one_returned() -> None:
    # A Prefect server that answers /api/health may answer 503 for a few seconds more while its
    # SQLite database is busy: the start must not fail on it (seen once as "could not store our
    # token (HTTP 503)"). Two 503s then 200: retried; 503 for good: returned after the waits.
    import http.server
    import threading

    answers = iter([503, 503, 200, 503, 503, 503])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(next(answers))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        services = _services_module()
        url = f"http://127.0.0.1:{server.server_address[1]}/api/variables/name/x"
        assert services.http(url, backoff=(0.01, 0.01, 0.01)) == (200, "{}")
        assert services.http(url, backoff=(0.01, 0.01)) == (503, "{}")
    finally:
        server.shutdown()
        server.server_close()


def test_the_worker_runs_flows_against_the_projects_mlflow_server(
    mlflow_server: Server, prefect_server: Server
):
    # `make serve` starts the MLflow server, then the worker, with MLFLOW_TRACKING_URI unset (the
    # Makefile only tells the user to export it afterwards): the scheduled runs went to ./mlflow.db
    # while the user's went to the server, so the skip decision and the champion differed.
    services = mlflow_server.services
    env = {"CURVEWATCH_WORK_POOL": "curvewatch-tracking-test"}  # not a pool other tests' runs go to
    assert "MLFLOW_TRACKING_URI" not in services.env
    proc = services.run("prefect-worker.sh", "start", **env)
    try:
        assert f"its runs logging to {mlflow_server.url} " in proc.stdout, proc.stdout
        pid = (services.dir / "prefect-worker" / "pid").read_text().strip()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"MLFLOW_TRACKING_URI={mlflow_server.url}".encode() in environ
    finally:
        services.run("prefect-worker.sh", "stop", check=False, **env)
