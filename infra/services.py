"""curvewatch's local services: PostgreSQL, the MLflow tracking server, the Prefect server and worker.

One design for every service (infra/README.md has the table):
- bound to 127.0.0.1 only, on the port from the environment (``CURVEWATCH_<NAME>_PORT``; ``0`` picks
  a free one) or a default; a default port held by anything else moves to a free port (recorded), an
  explicitly requested one that is held is an error;
- state under ``$CURVEWATCH_SERVICES_DIR`` (default ``<repo>/.curvewatch/services``), one folder per
  service holding ``pid``, ``port``, ``token`` and ``server.log``, plus the service's home;
- provably the project's own: ``start`` writes a random token into the server it started (a
  PostgreSQL database comment, an MLflow experiment tag, a Prefect variable) and every later
  ``start``/``status``/``url`` checks the recorded pid's command line *and* reads the token back
  from whatever answers on the recorded port. Anything else answering there is never reused.

Run through the shell wrappers: ``infra/postgres.sh start|stop|status|url [db]``,
``infra/mlflow-server.sh start|stop|status|url``, ``infra/prefect-server.sh start|stop|status|url``,
``infra/prefect-worker.sh start|stop|status``, ``infra/mlflow-ui.sh [port]``. The standard library
and psutil only (processes and sockets; ``pipelines/processes.py`` likewise), so a status check
costs no MLflow or Prefect import. Exit codes: 0 ok, 1 failure or not running,
2 usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the package beside this folder (pipelines/processes.py)
    sys.path.insert(0, str(ROOT))
from pipelines.processes import pid_alive  # noqa: E402

HOST = "127.0.0.1"


def _pg_bin() -> Path:
    """PostgreSQL server binaries: ``$CURVEWATCH_PG_BIN``, Debian's 15, else the newest Debian version."""
    if os.environ.get("CURVEWATCH_PG_BIN"):
        return Path(os.environ["CURVEWATCH_PG_BIN"])
    preferred = Path("/usr/lib/postgresql/15/bin")
    if preferred.exists():
        return preferred
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else preferred


PG_BIN = _pg_bin()
PG_USER = "curvewatch"  # the cluster's superuser role
DATABASES = ("mlflow", "optuna")
TOKEN_TAG = "curvewatch.server_token"
PREFECT_TOKEN_VARIABLE = "curvewatch_server_token"


class ServiceError(RuntimeError):
    """A service could not be started, checked or stopped; the message says why, in one line."""


def say(msg: str) -> None:
    print(msg, flush=True)


def venv_bin(name: str) -> str:
    venv = Path(os.environ.get("VENV", ROOT / ".venv"))
    return str(venv / "bin" / name)


def services_dir() -> Path:
    return Path(os.environ.get("CURVEWATCH_SERVICES_DIR", ROOT / ".curvewatch" / "services")).resolve()


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (a bind test, as the server itself would do).

    With ``SO_REUSEADDR``, as uvicorn, gunicorn and PostgreSQL bind: on Linux a listener still
    makes the bind fail, but connections of a server stopped less than a minute ago (TIME_WAIT)
    do not, so a restarted service gets its recorded port, and its clients' URL, back.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_time(pid: int) -> str:
    """The process's start time, in clock ticks since boot ("" when it is gone): with the pid it
    names one process for good, so a recycled pid is never taken for our server.

    psutil's ``Process.create_time()`` less ``psutil.boot_time()``, in ``SC_CLK_TCK`` ticks
    (https://psutil.readthedocs.io/en/latest/#psutil.Process.create_time): on Linux both come from
    /proc (``/proc/<pid>/stat`` field 22 and ``/proc/stat``'s ``btime``), so this is that field
    exactly, as ``pid_start`` files have always recorded it.
    """
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return ""
    return str(round((created - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def cmdline(pid: int) -> str:
    """The process's command line, its arguments joined by spaces ("" when it cannot be read):
    psutil's ``Process.cmdline()``."""
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def port_holder(port: int) -> str:
    """Who listens on TCP ``port``, for an error message: "pid N (command line)", or "another
    process" when the system does not say (another user's process, where only root may know).

    psutil's ``net_connections(kind="tcp")`` (https://psutil.readthedocs.io/en/latest/#psutil.net_connections):
    the socket in state LISTEN on that local port, and its process, as ``ss -ltnp`` shows them.
    """
    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS lists sockets to root only
        sockets = []
    for sock in sockets:
        if sock.status == psutil.CONN_LISTEN and sock.laddr and sock.laddr.port == port and sock.pid:
            command = cmdline(sock.pid).strip()
            return f"pid {sock.pid}" + (f" ({command[:80]})" if command else "")
    return "another process"


#: Waits (seconds) before each retry of a request answered 503 Service Unavailable.
UNAVAILABLE_BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)


def http(
    url: str,
    *,
    method: str = "GET",
    body: dict | None = None,
    auth: str | None = None,
    timeout: float = 20,
    backoff: tuple[float, ...] = UNAVAILABLE_BACKOFF,
) -> tuple[int, str]:
    """(status, body) of one HTTP request; status 0 when nothing answered. ``auth``: ``user:password``.

    A 503 (Service Unavailable: the server did not process the request and says to try again) is
    retried after each wait in ``backoff`` (about 8 s in all by default): a Prefect server that
    answers /api/health can still answer 503 for a few seconds while its SQLite database is busy
    with start-up work. Prefect's own client does the same: ``prefect.client.base``'s HTTP client
    retries 429 and 503 answers with backoff, up to ``PREFECT_CLIENT_MAX_RETRIES`` times.
    """
    data = json.dumps(body).encode() if body is not None else None
    for wait in (*backoff, None):
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except (OSError, urllib.error.URLError):
            return 0, ""
        if status != 503 or wait is None:
            return status, text
        time.sleep(wait)
    raise AssertionError("unreachable")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, via a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


@dataclass
class State:
    """The files a service keeps in its own folder."""

    name: str

    @property
    def dir(self) -> Path:
        return services_dir() / self.name

    def read(self, key: str) -> str | None:
        try:
            return (self.dir / key).read_text().strip() or None
        except OSError:
            return None

    def write(self, key: str, value: str) -> None:
        write_private(self.dir / key, value + "\n")

    def remove(self, *keys: str) -> None:
        for key in keys:
            (self.dir / key).unlink(missing_ok=True)

    def token(self) -> str:
        token = self.read("token")
        if token is None:
            token = secrets.token_hex(16)
            self.write("token", token)
        return token

    @property
    def log(self) -> Path:
        return self.dir / "server.log"


def choose_port(state: State, env: str, default: int) -> int:
    """The port a service starts on: the recorded one if free (unless ``$env`` names another), else
    ``$env`` (0 = any free port; a held explicit port is an error), else ``default`` if free, else a
    free port."""
    recorded = state.read("port")
    wanted = os.environ.get(env)
    if recorded and port_free(int(recorded)) and wanted in (None, "0", recorded):
        return int(recorded)
    if wanted is not None:
        try:
            port = int(wanted)
        except ValueError:
            raise ServiceError(f"{env}={wanted!r} is not a port number") from None
        if port == 0:
            return free_port()
        if not port_free(port):
            raise ServiceError(
                f"{env}={port}: 127.0.0.1:{port} is held by {port_holder(port)}; "
                f"free it or set {env}=0 for any free port"
            )
        return port
    if port_free(default):
        return default
    port = free_port()
    say(
        f"{state.name}: 127.0.0.1:{default} is held by {port_holder(default)} (not ours); "
        f"using free port {port}"
    )
    return port


def wait_for(check, timeout: float, what: str, pid: int | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            tail = (
                "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log and log.exists() else ""
            )
            raise ServiceError(f"{what} exited during start-up; last lines of {log}:\n{tail}")
        time.sleep(0.5)
    raise ServiceError(f"{what} did not answer within {timeout:.0f} s; see {log}")


def spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> int:
    """Start ``args`` in its own session (so stop can end its whole process group); return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def stop_group(pid: int, what: str, timeout: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        say(f"{what}: did not stop within {timeout:.0f} s of SIGTERM; sending SIGKILL")
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------------------
# PostgreSQL


class Postgres:
    """A PostgreSQL 15 cluster of the project's own (Debian's ``postgresql`` server binaries).

    ``initdb`` refuses to run as root, so as root the cluster runs as the ``postgres`` user; its
    data folder then has to be reachable by that user: when the state folder is not (a checkout
    under /root, say), the data lives in ``/var/lib/postgresql/curvewatch/<hash of the state
    folder>`` and ``home`` in the state folder records where.
    """

    state = State("postgres")
    env_port = "CURVEWATCH_POSTGRES_PORT"

    def __init__(self) -> None:
        self.as_postgres = os.geteuid() == 0

    # -- paths and identities
    def _run_as(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.as_postgres:
            args = ["runuser", "-u", "postgres", "--", *args]
        return subprocess.run(args, capture_output=True, text=True, **kw)

    def _reachable_by_postgres(self, path: Path) -> bool:
        return self._run_as(["test", "-w", str(path)]).returncode == 0

    @property
    def data_dir(self) -> Path:
        recorded = self.state.read("home")
        if recorded:
            return Path(recorded)
        return self.state.dir / "data"

    def _pick_data_dir(self) -> Path:
        base = self.state.dir / "cluster"
        base.mkdir(parents=True, exist_ok=True)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
            if not self._reachable_by_postgres(base):
                digest = hashlib.sha256(str(self.state.dir).encode()).hexdigest()[:12]
                base = Path("/var/lib/postgresql/curvewatch") / digest
                r = self._run_as(["mkdir", "-p", str(base)])
                if r.returncode != 0:
                    raise ServiceError(f"postgres: cannot create {base} as user postgres: {r.stderr.strip()}")
        data = base / "data"
        self.state.write("home", str(data))
        return data

    def password(self) -> str:
        pw = self.state.read("password")
        if pw is None:
            pw = secrets.token_urlsafe(24)
            self.state.write("password", pw)
        return pw

    def port(self) -> int | None:
        p = self.state.read("port")
        return int(p) if p else None

    def url(self, db: str = "mlflow", with_password: bool = True) -> str:
        port = self.port()
        if port is None:
            raise ServiceError("postgres: never started here (no port recorded); run infra/postgres.sh start")
        cred = f"{PG_USER}:{self.password()}" if with_password else PG_USER
        return f"postgresql+psycopg://{cred}@{HOST}:{port}/{db}"

    def pgpass(self) -> Path:
        """A libpq password file for the cluster, so no password appears on a command line."""
        path = self.state.dir / "pgpass"
        write_private(path, f"{HOST}:{self.port()}:*:{PG_USER}:{self.password()}\n")
        return path

    # -- queries
    def psql(self, sql: str, db: str = "postgres", port: int | None = None) -> subprocess.CompletedProcess:
        port = port or self.port()
        env = dict(os.environ, PGPASSWORD=self.password(), PGCONNECT_TIMEOUT="3")
        return subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                HOST,
                "-p",
                str(port),
                "-U",
                PG_USER,
                "-d",
                db,
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
        )

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def owned(self) -> bool:
        """The postmaster recorded in our data folder is alive and runs on that folder, and the server
        on our port answers our password with our data folder and our token."""
        pid, port, token = self.postmaster_pid(), self.port(), self.state.read("token")
        if pid is None or port is None or token is None or not pid_alive(pid):
            return False
        if str(self.data_dir) not in cmdline(pid):
            return False
        r = self.psql(
            "SELECT current_setting('data_directory') || '|' || "
            "coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = 'mlflow'",
            port=port,
        )
        return r.returncode == 0 and r.stdout.strip() == f"{self.data_dir}|curvewatch:{token}"

    # -- commands
    def ensure_binaries(self) -> None:
        global PG_BIN
        if (PG_BIN / "pg_ctl").exists():
            return
        if shutil.which("apt-get") is None:
            raise ServiceError(f"postgres: no server binaries in {PG_BIN} and no apt-get to install them")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        say("postgres: installing Debian's postgresql package (apt-get)")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False)
        r = subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "postgresql"])
        PG_BIN = _pg_bin()
        if r.returncode != 0 or not (PG_BIN / "pg_ctl").exists():
            raise ServiceError(f"postgres: apt-get install postgresql failed, or put binaries in {PG_BIN}")

    def start(self) -> None:
        if self.owned():
            say(f"postgres: already running on {HOST}:{self.port()} (data {self.data_dir})")
            return
        self.ensure_binaries()
        pid = self.postmaster_pid()
        if pid is not None and pid_alive(pid) and str(self.data_dir) in cmdline(pid):
            raise ServiceError(
                f"postgres: our cluster (pid {pid}) runs but does not answer as ours on port {self.port()}; "
                "stop it with infra/postgres.sh stop"
            )
        data = self.data_dir if (self.data_dir / "PG_VERSION").exists() else self._pick_data_dir()
        if not (data / "PG_VERSION").exists():
            pwfile = data.parent / ".pwfile"  # beside the data folder: reachable by the postgres user
            write_private(pwfile, self.password() + "\n")
            if self.as_postgres:
                pw = pwd.getpwnam("postgres")
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            r = self._run_as(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    "--pwfile",
                    str(pwfile),
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            )
            pwfile.unlink(missing_ok=True)
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["no output"])[-1]
                raise ServiceError(f"postgres: initdb failed: {last}")
        port = choose_port(self.state, self.env_port, 5432)
        log = data.parent / "server.log"
        opts = f"-c listen_addresses={HOST} -c port={port} -c unix_socket_directories={data.parent}"
        r = self._run_as(
            [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"]
        )
        if r.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            raise ServiceError(f"postgres: pg_ctl start failed: {r.stdout.strip()} {' | '.join(tail)}")
        self.state.write("port", str(port))
        pid = self.postmaster_pid()
        if pid:
            self.state.write("pid", str(pid))
        existing = self.psql("SELECT datname FROM pg_database").stdout.split()
        for db in DATABASES:
            if db not in existing:
                r = self.psql(f'CREATE DATABASE "{db}"')
                if r.returncode != 0:
                    raise ServiceError(f"postgres: CREATE DATABASE {db} failed: {r.stderr.strip()}")
        self.psql(f"COMMENT ON DATABASE mlflow IS 'curvewatch:{self.state.token()}'")
        if not self.owned():
            raise ServiceError(f"postgres: started on port {port} but the ownership check failed; see {log}")
        say(f"postgres: running on {HOST}:{port} (data {data}; databases {', '.join(DATABASES)})")

    def stop(self) -> None:
        pid = self.postmaster_pid()
        if pid is None or not pid_alive(pid) or str(self.data_dir) not in cmdline(pid):
            say("postgres: not running")
            return
        r = self._run_as([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        if r.returncode != 0:
            raise ServiceError(f"postgres: pg_ctl stop failed: {r.stderr.strip()}")
        self.state.remove("pid")
        say("postgres: stopped")

    def status(self) -> bool:
        if self.owned():
            say(
                f"postgres: running on {HOST}:{self.port()} "
                f"(pid {self.postmaster_pid()}, data {self.data_dir})"
            )
            return True
        say("postgres: not running")
        return False


# --------------------------------------------------------------------------------------------------
# HTTP servers (MLflow, Prefect) share start/stop/status; each says how to prove it is ours.


class HttpService:
    name = ""
    env_port = ""
    default_port = 0
    startup_timeout = 120.0
    process_marker = ""  # a word the server's command line must hold

    def __init__(self) -> None:
        self.state = State(self.name)

    def port(self) -> int | None:
        p = self.state.read("port")
        return int(p) if p else None

    def base_url(self) -> str:
        port = self.port()
        if port is None:
            raise ServiceError(f"{self.name}: never started here (no port recorded); run its start command")
        return f"http://{HOST}:{port}"

    def url(self) -> str:
        return self.base_url()

    def pid(self) -> int | None:
        p = self.state.read("pid")
        return int(p) if p else None

    def process_ok(self) -> bool:
        pid, port = self.pid(), self.port()
        if pid is None or port is None or not pid_alive(pid):
            return False
        line = cmdline(pid)
        return (
            start_time(pid) == self.state.read("pid_start")
            and self.process_marker in line
            and f"--port {port}" in line
        )

    # subclasses
    def auth(self) -> str | None:
        return None

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def healthy(self, port: int) -> bool:
        raise NotImplementedError

    def write_token(self) -> None:
        raise NotImplementedError

    def token_ok(self) -> bool:
        raise NotImplementedError

    def before_start(self) -> None:
        pass

    def owned(self) -> bool:
        return self.process_ok() and self.token_ok()

    def start(self) -> None:
        if self.owned():
            say(f"{self.name}: already running at {self.url()} (pid {self.pid()})")
            return
        if self.process_ok():
            say(
                f"{self.name}: our server (pid {self.pid()}) fails the ownership check at {self.base_url()}; "
                "restarting it"
            )
            self.stop()
        self.before_start()
        port = choose_port(self.state, self.env_port, self.default_port)
        args, env = self.command(port)
        self.state.dir.mkdir(parents=True, exist_ok=True)
        pid = spawn(args, env, self.state.log, cwd=self.state.dir)
        self.state.write("pid", str(pid))
        self.state.write("pid_start", start_time(pid))
        self.state.write("port", str(port))
        try:
            wait_for(
                lambda: self.healthy(port), self.startup_timeout, f"{self.name} server", pid, self.state.log
            )
            self.write_token()
            if not self.owned():
                raise ServiceError(
                    f"{self.name}: started but the ownership check failed; see {self.state.log}"
                )
        except ServiceError:
            if pid_alive(pid):
                stop_group(pid, self.name)
            self.state.remove("pid")
            raise
        say(f"{self.name}: running at {self.url()} (pid {pid}, log {self.state.log})")

    def stop(self) -> None:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            say(f"{self.name}: not running")
        elif not self.process_ok():
            say(f"{self.name}: pid {pid} in {self.state.dir / 'pid'} is not our server; left alone")
        else:
            stop_group(pid, self.name)
            say(f"{self.name}: stopped")
        self.state.remove("pid")

    def status(self) -> bool:
        if self.owned():
            say(f"{self.name}: running at {self.url()} (pid {self.pid()}, home {self.state.dir})")
            return True
        say(f"{self.name}: not running")
        return False


class MlflowServer(HttpService):
    """``mlflow server`` on the project's PostgreSQL, with the artifact proxy and optional basic auth.

    Artifacts go to ``$CURVEWATCH_ARTIFACTS_DESTINATION`` (``s3://bucket/path`` works, with the
    usual AWS variables) or to ``<state>/artifacts``. ``CURVEWATCH_MLFLOW_AUTH=basic`` turns on
    MLflow's basic-auth app; its admin is ``$MLFLOW_TRACKING_USERNAME`` / ``$MLFLOW_TRACKING_PASSWORD``
    (the same variables MLflow's client sends), created on first start. The token is the tag
    ``curvewatch.server_token`` on experiment 0, which lives in our PostgreSQL database.
    """

    name = "mlflow"
    env_port = "CURVEWATCH_MLFLOW_PORT"
    default_port = 5000
    process_marker = "mlflow"

    def auth_enabled(self) -> bool:
        mode = os.environ.get("CURVEWATCH_MLFLOW_AUTH", "off").lower()
        if mode not in ("off", "basic", ""):
            raise ServiceError(f"CURVEWATCH_MLFLOW_AUTH={mode!r}: expected 'off' or 'basic'")
        return mode == "basic"

    def auth(self) -> str | None:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        return f"{user}:{password}" if user and password else None

    def before_start(self) -> None:
        pg = Postgres()
        if not pg.owned():
            pg.start()

    def owned(self) -> bool:
        """Our process and token, and still on our PostgreSQL's current port (a cluster restarted
        on another port leaves the server talking to whatever now holds the old one)."""
        if not super().owned():
            return False
        pg = Postgres()
        return self.state.read("backend_port") == str(pg.port()) and pg.owned()

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        pg = Postgres()
        self.state.write("backend_port", str(pg.port()))
        dest = os.environ.get("CURVEWATCH_ARTIFACTS_DESTINATION") or str(self.state.dir / "artifacts")
        env = dict(os.environ, PGPASSFILE=str(pg.pgpass()), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        args = [
            venv_bin("mlflow"),
            "server",
            "--backend-store-uri",
            pg.url("mlflow", with_password=False),
            "--serve-artifacts",
            "--artifacts-destination",
            dest,
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            os.environ.get("CURVEWATCH_MLFLOW_WORKERS", "2"),
        ]
        if self.auth_enabled():
            creds = self.auth()
            if creds is None:
                raise ServiceError(
                    "mlflow: CURVEWATCH_MLFLOW_AUTH=basic needs MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD (the admin account; see .env.example)"
                )
            user, password = creds.split(":", 1)
            ini = self.state.dir / "basic_auth.ini"
            write_private(
                ini,
                "\n".join(
                    [
                        "[mlflow]",
                        "default_permission = READ",
                        f"database_uri = sqlite:///{self.state.dir / 'basic_auth.db'}",
                        f"admin_username = {user}",
                        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
                        "",
                    ]
                ),
            )
            env.update(MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_AUTH_ADMIN_PASSWORD=password)
            # the auth app's CSRF protection needs a static key; keep one per state folder
            if not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
                key = self.state.read("flask_secret_key")
                if key is None:
                    key = secrets.token_hex(32)
                    self.state.write("flask_secret_key", key)
                env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = key
            args += ["--app-name", "basic-auth"]
        return args, env

    def healthy(self, port: int) -> bool:
        return http(f"http://{HOST}:{port}/health", timeout=5)[0] == 200

    def write_token(self) -> None:
        status, body = http(
            f"{self.base_url()}/api/2.0/mlflow/experiments/set-experiment-tag",
            method="POST",
            body={"experiment_id": "0", "key": TOKEN_TAG, "value": self.state.token()},
            auth=self.auth(),
        )
        if status != 200:
            raise ServiceError(
                f"mlflow: could not tag experiment 0 with our token (HTTP {status}: {body[:200]})"
            )

    def token_ok(self) -> bool:
        status, body = http(
            f"{self.base_url()}/api/2.0/mlflow/experiments/get?experiment_id=0", auth=self.auth()
        )
        if status != 200:
            return False
        tags = {t["key"]: t.get("value") for t in json.loads(body)["experiment"].get("tags", [])}
        return tags.get(TOKEN_TAG) == self.state.read("token")


class PrefectServer(HttpService):
    """``prefect server start`` with its UI, its home (SQLite database) in ``<state>/home``.

    ``PREFECT_SERVER_API_AUTH_STRING`` (``user:password``) turns on Prefect's API auth; clients then
    set ``PREFECT_API_AUTH_STRING`` to the same value. The token is the Prefect variable
    ``curvewatch_server_token`` in that server's database.
    """

    name = "prefect"
    env_port = "CURVEWATCH_PREFECT_PORT"
    default_port = 4200
    process_marker = "prefect"
    startup_timeout = float(os.environ.get("CURVEWATCH_PREFECT_STARTUP_TIMEOUT", "180"))

    def url(self) -> str:
        return f"{self.base_url()}/api"

    def auth(self) -> str | None:
        return os.environ.get("PREFECT_SERVER_API_AUTH_STRING") or os.environ.get("PREFECT_API_AUTH_STRING")

    def command(self, port: int) -> tuple[list[str], dict[str, str]]:
        home = self.state.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for key in ("PREFECT_API_URL", "PREFECT_PROFILE"):
            env.pop(key, None)
        env.update(
            PREFECT_HOME=str(home),
            PREFECT_SERVER_API_HOST=HOST,
            PREFECT_SERVER_API_PORT=str(port),
            PREFECT_UI_ENABLED="true",
            PREFECT_UI_API_URL=f"http://{HOST}:{port}/api",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return [venv_bin("prefect"), "server", "start", "--host", HOST, "--port", str(port)], env

    def healthy(self, port: int) -> bool:
        return http(f"http://{HOST}:{port}/api/health", timeout=5)[0] == 200

    def write_token(self) -> None:
        url = f"{self.url()}/variables/"
        name_url = f"{self.url()}/variables/name/{PREFECT_TOKEN_VARIABLE}"
        token = self.state.token()
        status, _ = http(name_url, auth=self.auth())
        if status == 200:
            status, body = http(name_url, method="PATCH", body={"value": token}, auth=self.auth())
        else:
            status, body = http(
                url, method="POST", body={"name": PREFECT_TOKEN_VARIABLE, "value": token}, auth=self.auth()
            )
        if status not in (200, 201, 204):
            raise ServiceError(f"prefect: could not store our token (HTTP {status}: {body[:200]})")

    def token_ok(self) -> bool:
        status, body = http(f"{self.url()}/variables/name/{PREFECT_TOKEN_VARIABLE}", auth=self.auth())
        return status == 200 and json.loads(body).get("value") == self.state.read("token")


class PrefectWorker:
    """One ``prefect worker`` on the ``process`` work pool ``$CURVEWATCH_WORK_POOL`` (default
    ``curvewatch``), polling ``$PREFECT_API_URL`` or the project's Prefect server. The flow runs it
    starts log to ``$MLFLOW_TRACKING_URI``, else to the project's MLflow server when it is up
    (:meth:`tracking_uri`): scheduled runs had gone to ``./mlflow.db`` while the user's went to the
    server, so the skip decision and the champion differed between two stores."""

    state = State("prefect-worker")

    def pool(self) -> str:
        return os.environ.get("CURVEWATCH_WORK_POOL", "curvewatch")

    def api_url(self) -> str:
        env = os.environ.get("PREFECT_API_URL")
        if env:
            return env
        server = PrefectServer()
        if not server.owned():
            raise ServiceError(
                "prefect-worker: no Prefect server is up (PREFECT_API_URL unset and the project's server "
                "is not running); start it with infra/prefect-server.sh start"
            )
        return server.url()

    def tracking_uri(self) -> str | None:
        """``$MLFLOW_TRACKING_URI``, else the project's MLflow server's URL when it is up (ours),
        else None (MLflow's default local store)."""
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        server = MlflowServer()
        return server.url() if server.owned() else None

    def pid(self) -> int | None:
        p = self.state.read("pid")
        return int(p) if p else None

    def owned(self) -> bool:
        pid = self.pid()
        return (
            pid is not None
            and pid_alive(pid)
            and start_time(pid) == self.state.read("pid_start")
            and f"--pool {self.state.read('pool')}" in cmdline(pid)
        )

    def start(self) -> None:
        if self.owned():
            say(f"prefect-worker: already running (pid {self.pid()}, pool {self.state.read('pool')})")
            return
        url = self.api_url()
        auth = os.environ.get("PREFECT_API_AUTH_STRING") or os.environ.get("PREFECT_SERVER_API_AUTH_STRING")
        if http(f"{url.rstrip('/')}/health", auth=auth)[0] != 200:
            raise ServiceError(f"prefect-worker: no Prefect server answers at {url}; start it first")
        home = self.state.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PREFECT_API_URL=url, PREFECT_HOME=str(home))
        if auth:
            env["PREFECT_API_AUTH_STRING"] = auth
        tracking = self.tracking_uri()
        if tracking:
            env["MLFLOW_TRACKING_URI"] = tracking
        pool = self.pool()
        args = [
            venv_bin("prefect"),
            "worker",
            "start",
            "--pool",
            pool,
            "--type",
            "process",
            "--name",
            f"curvewatch-{socket.gethostname()}",
        ]
        pid = spawn(args, env, self.state.log, cwd=ROOT)
        self.state.write("pid", str(pid))
        self.state.write("pid_start", start_time(pid))
        self.state.write("pool", pool)

        # the worker creates the pool and registers itself; wait until the server lists it
        def registered() -> bool:
            status, body = http(
                f"{url.rstrip('/')}/work_pools/{pool}/workers/filter", method="POST", body={}, auth=auth
            )
            return status == 200 and len(json.loads(body)) > 0

        try:
            wait_for(registered, 90, "prefect-worker", pid, self.state.log)
        except ServiceError:
            if pid_alive(pid):
                stop_group(pid, "prefect-worker")
            self.state.remove("pid")
            raise
        store = (
            tracking
            or "MLflow's default local store (./mlflow.db; no MLFLOW_TRACKING_URI, no server of ours)"
        )
        say(
            f"prefect-worker: polling work pool '{pool}' (type process) at {url}, its runs logging to "
            f"{store} (pid {pid}, log {self.state.log})"
        )

    def stop(self) -> None:
        pid = self.pid()
        if pid is None or not pid_alive(pid):
            say("prefect-worker: not running")
        elif not self.owned():
            say(f"prefect-worker: pid {pid} is not our worker; left alone")
        else:
            stop_group(pid, "prefect-worker")
            say("prefect-worker: stopped")
        self.state.remove("pid")

    def status(self) -> bool:
        if self.owned():
            say(f"prefect-worker: running (pid {self.pid()}, pool {self.state.read('pool')})")
            return True
        say("prefect-worker: not running")
        return False


# --------------------------------------------------------------------------------------------------
# make ui


def _say_view_link(base: str) -> None:
    """Print the link that opens the experiment's runs table in the saved "curvewatch diagnosis"
    view (verdict, plateau onset and gate as loaded; ``curvewatch ui-url``). Best effort: the UI
    still starts when the link cannot be made (e.g. no params.yaml here)."""
    r = subprocess.run(
        [venv_bin("curvewatch"), "ui-url", "--base", base], capture_output=True, text=True, cwd=ROOT
    )
    if r.returncode == 0 and r.stdout.strip():
        say(f"runs with their diagnosis (verdict, plateau onset, gate): {r.stdout.strip()}")


def ui(port_arg: str | None) -> int:
    """Open the MLflow UI on the configured store: print the server's address when
    ``MLFLOW_TRACKING_URI`` is an http(s) server (after checking it answers), else serve the
    SQLite store with ``mlflow ui`` on 127.0.0.1 in the foreground. Fails (exit 1) when the port
    cannot be bound, naming who holds it."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT / 'mlflow.db'}"
    if uri.startswith(("http://", "https://")):
        status, _ = http(f"{uri.rstrip('/')}/health")
        if status != 200:
            raise ServiceError(
                f"MLFLOW_TRACKING_URI={uri}: no MLflow server answers there (start it: make services-up)"
            )
        say(f"MLflow UI (tracking server): {uri}")
        _say_view_link(uri)
        return 0
    port = int(port_arg or os.environ.get("CURVEWATCH_UI_PORT", "5000"))
    if not port_free(port):
        server = MlflowServer()
        ours = server.port() == port and server.process_ok()
        hint = (
            f" (the project's tracking server: set MLFLOW_TRACKING_URI=http://{HOST}:{port} to use it)"
            if ours
            else f" by {port_holder(port)}"
        )
        raise ServiceError(
            f"make ui: cannot bind 127.0.0.1:{port}, it is held{hint}; pick another with "
            "CURVEWATCH_UI_PORT=<port>"
        )
    say(f"MLflow UI on http://{HOST}:{port} (store: {uri}); Ctrl-C stops it")
    _say_view_link(f"http://{HOST}:{port}")
    r = subprocess.run(
        [venv_bin("mlflow"), "ui", "--backend-store-uri", uri, "--host", HOST, "--port", str(port)]
    )
    return r.returncode


SERVICES = {
    "postgres": Postgres,
    "mlflow": MlflowServer,
    "prefect": PrefectServer,
    "prefect-worker": PrefectWorker,
}


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "ui":
        try:
            return ui(argv[1] if len(argv) > 1 else None)
        except ServiceError as exc:
            print(exc, file=sys.stderr)
            return 1
    if len(argv) < 2 or argv[0] not in SERVICES:
        print(
            f"usage: services.py {{{'|'.join(SERVICES)}}} start|stop|status|url [db]  |  "
            "services.py ui [port]",
            file=sys.stderr,
        )
        return 2
    name, cmd = argv[0], argv[1]
    svc = SERVICES[name]()
    try:
        if cmd == "start":
            svc.start()
        elif cmd == "stop":
            svc.stop()
        elif cmd == "status":
            return 0 if svc.status() else 1
        elif cmd == "url" and name == "postgres":
            print(svc.url(argv[2] if len(argv) > 2 else "mlflow"))
        elif cmd == "url" and name != "prefect-worker":
            print(svc.url())
        else:
            print(f"{name}: unknown command {cmd!r}", file=sys.stderr)
            return 2
    except ServiceError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
