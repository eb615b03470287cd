"""MLflow glue: where runs go, what each run records, and reading curves back.

Everything here talks to MLflow through ``MlflowClient`` with an explicit tracking URI, so nothing
depends on process-global MLflow state and nothing happens at import time. The default store is
MLflow's SQLite backend ``mlflow.db`` in the working directory (the repository root) with artifacts
under ``mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides it (a tracking server, for example).

Conventions (MLflow docs, "Tracking" and "Model Registry"):
- per-epoch metrics use Keras' names (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
  ``learning_rate``) with ``step`` = the 1-based epoch;
- the champion is the registered model version holding the alias ``champion``;
- curvewatch's own tags are namespaced ``curvewatch.*`` so they show as columns in the run table.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.config import Params
from pipelines.curves.io import engine_metrics, metrics_read
from pipelines.curves.types import Curve

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

CHAMPION_ALIAS = "champion"
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
RUN_KIND_TAG = "curvewatch.run_kind"
#: The gate's decision, on a run and on its model version (``pipelines/registry.py``). On a run,
#: written last by the compare stage: a run carrying it went through the gate
#: (``pipelines.schedule.last_fingerprint``).
GATE_TAG = "curvewatch.gate"
#: On a run gone through compare: the run of the champion it was gated against (absent: it became
#: the first champion). A compare run again on the champion gates against that one.
CHAMPION_RUN_TAG = "curvewatch.champion_run_id"
#: On a training run of a ``retrain`` flow in a DVC project: the MD5 of the ``dvc.lock`` that records
#: it (``pipelines/versioning.py``), once its outputs are committed and pushed; :data:`LOCK_PENDING`
#: from before the flow's compare task until then, and left so when anything in between fails, so
#: that such a run is not taken for a recorded one (``pipelines.schedule.last_fingerprint``). On a
#: training run of a ``retrain`` flow outside the DVC project (``-S`` overrides, another profile or
#: params file): :data:`LOCK_OUTSIDE`, set before its compare task; ``dvc.lock`` never records it.
LOCK_TAG = "curvewatch.dvc_lock_md5"
LOCK_PENDING = "pending"
LOCK_OUTSIDE = "outside-project"
#: MLflow search filter for finished training runs (not validation-only runs).
FINISHED_TRAINING = f"tags.`{RUN_KIND_TAG}` = 'train' and attributes.status = 'FINISHED'"


def tracking_uri(root: Path | None = None) -> str:
    """Return ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<root>/mlflow.db`` (root: the working dir)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = (root or Path.cwd()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root(root: Path | None = None) -> str:
    """Artifact location for new experiments on the embedded store: ``<root>/mlartifacts`` as a URI."""
    env = os.environ.get("MLFLOW_ARTIFACT_ROOT")
    if env:
        return env
    return (root or Path.cwd()).resolve().joinpath("mlartifacts").as_uri()


def client(uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` on ``uri`` (default :func:`tracking_uri`); the model registry uses it too.

    The first client on a server or database URI checks the store answers
    (:func:`check_tracking_store`), so a run fails at its start, not minutes later in MLflow's retries.

    Raises:
        TrackingUnavailable: the tracking server or database does not answer.
    """
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    if uri not in _STORES_CHECKED:
        check_tracking_store(uri)
        _STORES_CHECKED.add(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class TrackingUnavailable(RuntimeError):
    """The MLflow tracking server or its database does not answer (at the start, or for longer
    than a :class:`MetricBuffer` waits to send what it holds); the message names the URI."""


_STORES_CHECKED: set[str] = set()


def _redact(uri: str) -> str:
    """``uri`` without its password (``postgresql+psycopg://user:***@host:port/db``)."""
    import re

    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", uri)


def check_tracking_store(uri: str, *, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when the tracking store at ``uri`` cannot be used.

    - ``http(s)://`` server: one experiment search (it reads the server's database) with a
      ``timeout``-second limit and no retries; MLflow's client would retry for minutes.
    - ``postgresql``/``mysql`` database: one connection with a ``timeout``-second connect limit.
    - other stores (SQLite, file): nothing to check.

    Raises:
        TrackingUnavailable: nothing answers, credentials are refused (401/403), or the server
            answers with an error because its database is down; the message names ``uri``
            (password hidden) and says what to do.
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    shown = _redact(uri)
    if scheme in ("http", "https"):
        import requests

        creds = _host_creds(uri)
        auth = (creds.username, creds.password) if creds.username and creds.password else None
        headers = {"Authorization": f"Bearer {creds.token}"} if creds.token else None
        try:
            resp = requests.get(
                f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                auth=auth,
                headers=headers,
                timeout=timeout,
                verify=not creds.ignore_tls_verification,
            )
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout):
                reason = f"no answer within {timeout:.0f} s"
            elif isinstance(exc, requests.ConnectionError):
                reason = "connection refused"
            else:
                reason = type(exc).__name__
            raise TrackingUnavailable(
                f"MLflow tracking server {shown} is not reachable ({reason}); start it with "
                "`make services-up` or unset MLFLOW_TRACKING_URI to use the local SQLite store"
            ) from None
        if resp.status_code in (401, 403):
            raise TrackingUnavailable(
                f"MLflow tracking server {shown} refused our credentials (HTTP {resp.status_code}); "
                "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        if resp.status_code != 200:
            try:
                detail = str(resp.json().get("message", ""))
            except ValueError:
                detail = resp.text
            first = next((line for line in detail.splitlines() if line.strip()), "")[:300]
            raise TrackingUnavailable(
                f"MLflow tracking server {shown} answered HTTP {resp.status_code}: {first or 'no detail'}"
                " (is its database up? infra/postgres.sh status)"
            )
    elif scheme in ("postgresql", "mysql"):
        import sqlalchemy as sa

        engine = sa.create_engine(
            uri, connect_args={"connect_timeout": int(timeout)}, poolclass=sa.pool.NullPool
        )
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            first = next((line for line in str(orig).splitlines() if line.strip()), type(orig).__name__)
            raise TrackingUnavailable(
                f"MLflow database {shown} refused the connection: {first.strip()[:300]} "
                "(start it with infra/postgres.sh start)"
            ) from None
        finally:
            engine.dispose()


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts under :func:`artifact_root`).

    Also makes the experiment open the way a curvewatch user needs it in the MLflow UI, on new and
    existing experiments alike (tags are only written when missing or different):

    - ``mlflow.experimentKind = custom_model_development``: the experiment's kind as MLflow's API
      records it (MLflow 3.x UIs without the GenAI / "Model training" switch open such an
      experiment on its runs table; 3.17.2's switch is set by :func:`run_table_url`);
    - the saved view :data:`DIAGNOSIS_VIEW_NAME` (:func:`diagnosis_view_tag`), listed under
      "Views" on the runs page and opened by :func:`run_table_url`.
    """
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is None:
        uri = mlflow_client.tracking_uri
        location = artifact_root() if uri.startswith("sqlite:") or uri.startswith("file:") else None
        exp_id = mlflow_client.create_experiment(name, artifact_location=location)
        tags: dict[str, str] = {}
    else:
        exp_id, tags = exp.experiment_id, dict(exp.tags)
    if tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
        mlflow_client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    key, value = diagnosis_view_tag()
    if _view_state(tags.get(key)) != diagnosis_view_state():
        mlflow_client.set_experiment_tag(exp_id, key, value)
    return exp_id


#: Experiment tag MLflow 3.x reads to choose the experiment's landing page (and its value for
#: model training: the runs table instead of the GenAI traces overview).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
#: MLflow 3.17's saved views of the runs table are experiment tags ``mlflow.sharedViewState.<id>``
#: (the "Views" menu and the ``viewStateShareKey`` URL parameter of the runs page read them).
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
DIAGNOSIS_VIEW_ID = "curvewatch-diagnosis"
DIAGNOSIS_VIEW_NAME = "curvewatch diagnosis"
#: Run-table columns of the diagnosis view (MLflow's canonical column ids) with their widths in
#: pixels, in display order: wide enough to read on a 1440-pixel screen without scrolling.
DIAGNOSIS_VIEW_COLUMNS: dict[str, int] = {
    "attributes.`Run Name`": 300,
    "tags.`curvewatch.verdict`": 150,
    "tags.`curvewatch.plateau_onset_epoch`": 230,
    "tags.`curvewatch.gate`": 150,
    "metrics.`test_accuracy`": 120,
    "tags.`curvewatch.decision`": 560,
}
_VIEW_CREATED_MS = 1_764_000_000_000  # fixed, so that re-writing the view is idempotent


def diagnosis_view_state() -> dict[str, Any]:
    """The runs-table state of the saved view :data:`DIAGNOSIS_VIEW_NAME` (pure).

    Keys are those MLflow 3.17's runs page restores from a saved view: its search facets
    (``searchFilter``, ``orderByKey``, ``orderByAsc``, ``startTime``, ``lifecycleFilter``,
    ``modelVersionFilter``, ``datasetsFilter``) and its UI state (``selectedColumns``,
    ``columnWidths``, ...). Newest runs first; the verdict, plateau onset, gate and registry
    decision columns shown, wide enough to read.
    """
    return {
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": [c for c in DIAGNOSIS_VIEW_COLUMNS if not c.startswith("attributes.")],
        "columnOrder": list(DIAGNOSIS_VIEW_COLUMNS),
        "columnWidths": dict(DIAGNOSIS_VIEW_COLUMNS),
        "runsHiddenMode": "FIRST_10_RUNS",
    }


def diagnosis_view_tag() -> tuple[str, str]:
    """``(key, value)`` of the experiment tag holding the saved view (pure).

    The value is the envelope MLflow 3.17's UI writes for a saved view (``name``, ``createdAt``,
    ``updatedAt`` in ms, and ``state``: the JSON text of :func:`diagnosis_view_state`).
    """
    value = json.dumps(
        {
            "name": DIAGNOSIS_VIEW_NAME,
            "createdAt": _VIEW_CREATED_MS,
            "updatedAt": _VIEW_CREATED_MS,
            "state": json.dumps(diagnosis_view_state(), sort_keys=True),
        }
    )
    return SAVED_VIEW_PREFIX + DIAGNOSIS_VIEW_ID, value


def _view_state(tag_value: str | None) -> dict[str, Any] | None:
    try:
        return json.loads(json.loads(tag_value)["state"]) if tag_value else None
    except (ValueError, KeyError, TypeError):
        return None


def ui_base_url(uri: str | None = None) -> str:
    """Address of the MLflow UI for tracking URI ``uri``: the server itself for ``http(s)://``,
    else ``http://127.0.0.1:5000`` (where ``make ui`` serves a local store)."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return "http://127.0.0.1:5000"


def run_table_url(base_url: str, experiment_id: str) -> str:
    """Link to the experiment's runs table in the diagnosis view (pure), e.g.
    ``http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=curvewatch-diagnosis``.

    ``workflowType=machine_learning`` is needed because MLflow 3.17.2's UI takes an experiment's
    kind from its GenAI / "Model training" switch (``workflowType`` in the URL, else the browser's
    last choice, GenAI on a first visit), not from the ``mlflow.experimentKind`` tag: in its
    built ``main.*.js`` the kind hook reads the tag only when a feature flag is off, and that flag
    is the constant ``()=>!0``; the switch's state is the URL parameter or the browser's
    ``localStorage`` key ``mlflow.workflowType`` (initial value ``genai``). No tag value, experiment
    setting or server option changes a first visit (checked in chromium with a fresh profile).
    """
    query = f"workflowType=machine_learning&viewStateShareKey={DIAGNOSIS_VIEW_ID}"
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def report_url(experiment_id: str, run_id: str, artifact_path: str) -> str:
    """Relative UI link (``#/experiments/...``) to a run artifact, opened in MLflow's artifact
    viewer in the model-training mode (see :func:`run_table_url`)."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}/artifactPath/{artifact_path}"
    return f"{path}?workflowType=machine_learning"


def _short_number(x: float) -> str:
    """``0.001 -> '1e-3'``, ``0.00032 -> '3.2e-4'``, ``0.1 -> '1e-1'`` (learning rates in run names)."""
    mantissa, exponent = f"{x:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def run_name(
    model: str,
    learning_rate: float,
    data_version: str | None,
    started: datetime,
    *,
    trial: int | None = None,
) -> str:
    """A run name built from what differs between curvewatch runs (pure).

    ``small_cnn lr=1e-3 d=ab12cd 2026-11-25T21:06`` for a training run: the model, the learning
    rate, the first 6 hex digits of the data version (DVC content hash) and the start time (UTC, to
    the minute); ``trial 7 small_cnn lr=3.2e-4 ...`` for Optuna trial 7.

    Args:
        model: ``train.model``.
        learning_rate: ``train.learning_rate`` (> 0).
        data_version: DVC content hash (``<md5>`` or ``<md5>.dir``), or None when unknown.
        started: the run's start time; naive values are taken as UTC.
        trial: Optuna trial number, for tuning runs.
    """
    if started.tzinfo is not None:
        started = started.astimezone(UTC)
    parts = [f"trial {trial}"] if trial is not None else []
    parts += [model, f"lr={_short_number(learning_rate)}"]
    if data_version:
        parts.append(f"d={data_version[:6]}")
    parts.append(started.strftime("%Y-%m-%dT%H:%M"))
    return " ".join(parts)


def git_commit(cwd: Path | None = None) -> str | None:
    """The checked-out git commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def dvc_content_hash(path: Path) -> str:
    """DVC's content hash of a file or directory, as ``dvc add``/``dvc.lock`` would record it.

    Computed with DVC's own ``dvc_data`` hashing (md5; directories get DVC's ``<md5>.dir`` form),
    in memory, without touching the repository's cache. Inside a DVC project the project's state
    database is used, as ``dvc status`` uses it: a file whose inode, mtime and size match an entry
    is not read again (https://dvc.org/doc/user-guide/project-structure/internal-files, "state").
    The retrain flow hashes ``data/raw`` and ``data/prepared`` right after ``dvc status`` has, so
    this saves re-reading about 90 MB per hash (measured: 0.08-0.17 s down to 0.05 s each).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: cannot hash, it does not exist")
    path = path.resolve()
    with _dvc_state(path) as state:
        odb = HashFileDB(MemoryFileSystem(), "/odb", state=state)
        _, _, obj = build(odb, str(path), LocalFileSystem(), "md5")
    return obj.hash_info.value


@contextlib.contextmanager
def _dvc_state(path: Path):
    """The state database of the DVC project holding ``path``, else DVC's no-op state."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.state import StateNoop

    try:
        root = Repo.find_root(str(path if path.is_dir() else path.parent))
    except NotDvcRepoError:
        yield StateNoop()
        return
    with Repo(root) as repo:
        yield repo.state


def _flatten(prefix: str, metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = key if key.startswith(prefix) else f"{prefix}{key}"
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
            out[name] = float(value)
    return out


def log_metrics(mlflow_client: MlflowClient, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    """Log finite numeric ``metrics`` (bools as 0/1) in one batch; other values are skipped."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, step) for k, v in _flatten("", metrics).items()]
    for start in range(0, len(batch), 900):
        mlflow_client.log_batch(run_id, metrics=batch[start : start + 900])


#: What a run's "Model metrics" tab shows first: the per-epoch Keras curves and the test scores.
#: Only these (and the data-validation statistics ``validation.*``, which sort after them) are
#: MLflow metrics of a training run; its single-value summaries are tags (:func:`log_summary`).
HEADLINE_METRICS = (*EPOCH_METRICS, "test_accuracy", "test_loss")
SUMMARY_TAG_PREFIX = "curvewatch."


def summary_tags(values: Mapping[str, Any]) -> dict[str, str]:
    """``{"gate.p_value": 0.031}`` -> ``{"curvewatch.gate.p_value": "0.031"}`` (pure).

    Numbers are written with at most 6 significant digits (``6.0`` -> ``"6"``), bools as
    ``"true"``/``"false"``; ``None``, NaN, infinities and non-numbers are skipped.
    """
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, bool | np.bool_):
            text = str(bool(value)).lower()
        elif isinstance(value, int | float | np.integer | np.floating) and np.isfinite(value):
            text = f"{float(value):.6g}"
        else:
            continue
        out[f"{SUMMARY_TAG_PREFIX}{key}"] = text
    return out


def log_summary(mlflow_client: MlflowClient, run_id: str, values: Mapping[str, Any]) -> None:
    """Record a run's single-value summaries (training summary, baseline, diagnosis and gate
    numbers) as tags ``curvewatch.<key>`` (:func:`summary_tags`), in one batch.

    Why tags and not metrics: MLflow 3.17's run page draws one chart per metric on its "Model
    metrics" tab, in sections named by the prefix before the last ``/`` and placed *ahead* of the
    unprefixed "Model metrics" section, each sorted by name (``getBaseChartAndSectionConfigs`` of
    ``RunsChartsCardConfig`` in ``mlflow/server/js``). As metrics, ``baseline.*``, ``diagnosis.*``,
    ``gate.*`` and ``train.*`` came before ``val_accuracy`` (a ``/`` would put them in sections
    before it too); as tags, the tab opens on :data:`HEADLINE_METRICS`, and the numbers stay on
    the run's Overview (Tags), in the run table's tag columns and in the DVC metrics files.
    """
    set_tags(mlflow_client, run_id, summary_tags(values))


def set_tags(mlflow_client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set string tags in one batch (None values skipped)."""
    from mlflow.entities import RunTag

    batch = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
    if batch:
        mlflow_client.log_batch(run_id, tags=batch)


def log_params(mlflow_client: MlflowClient, run_id: str, params: Params) -> None:
    """Log the full resolved config as params (``train.epochs`` ...) and as ``config/params.json``."""
    from mlflow.entities import Param

    from pipelines.curves.configs import param_text

    flat = params.to_flat_dict()
    batch = [Param(k, param_text(v)) for k, v in flat.items()]
    for start in range(0, len(batch), 90):
        mlflow_client.log_batch(run_id, params=batch[start : start + 90])
    mlflow_client.log_dict(run_id, params.model_dump(mode="json", by_alias=True), "config/params.json")


class MetricBuffer:
    """Per-epoch metrics on their way to the tracking server, kept until the server took them.

    A sender thread sends the oldest pending metrics with ``send`` (one ``log_batch`` call of at
    most 1,000 values, MLflow's batch limit) and, while the server is down (a restart, a network
    blip), keeps them and tries again with exponential backoff (``first_backoff_s`` doubling up to
    ``max_backoff_s``), so training never waits for the server and nothing is dropped. MLflow's own
    asynchronous logging (``log_batch(synchronous=False)``) drops a batch whose request failed,
    hence this buffer. A value sent twice (the server stored it but the answer was lost) is one
    row: MLflow keys metric values by run, key, step, timestamp and value.

    Args:
        send: sends one list of ``mlflow.entities.Metric``; raises on failure.
        target: what to name in errors (the tracking URI and run id).
        first_backoff_s, max_backoff_s: retry delays, seconds.
    """

    def __init__(
        self, send, *, target: str, first_backoff_s: float = 1.0, max_backoff_s: float = 30.0
    ) -> None:
        import threading

        self._send = send
        self._target = target
        self._first = first_backoff_s
        self._max = max_backoff_s
        self._pending: list = []
        self._cond = threading.Condition()
        self._closing = False
        self._failures = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="curvewatch-metrics", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Metric values not yet accepted by the server."""
        with self._cond:
            return len(self._pending)

    def put(self, metrics) -> None:
        """Queue metrics (returns at once)."""
        with self._cond:
            self._pending.extend(metrics)
            self._cond.notify()

    def _run(self) -> None:
        import logging
        import time

        log = logging.getLogger(__name__)
        delay = self._first
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = self._pending[:1000]
            try:
                self._send(batch)
            except Exception as exc:  # any transport or server error: keep the batch, retry
                self.last_error = exc
                self._failures += 1
                if self._failures == 1:
                    log.warning(
                        "%s: tracking server unreachable (%s); buffering per-epoch metrics", self._target, exc
                    )
                time.sleep(delay)
                delay = min(delay * 2, self._max)
                continue
            if self._failures:
                log.warning("%s: tracking server back; buffered metrics sent", self._target)
            self._failures, delay = 0, self._first
            with self._cond:
                del self._pending[: len(batch)]
                self._cond.notify_all()

    def close(self, timeout_s: float = 600.0) -> None:
        """Wait until every queued value was sent, at most ``timeout_s`` seconds.

        Raises:
            TrackingUnavailable: values are still unsent after ``timeout_s``; the message names
                the target, the count and the last error.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive() or self.pending:
            raise TrackingUnavailable(
                f"{self._target}: {self.pending} per-epoch metric values could not be sent in "
                f"{timeout_s:.0f} s (last error: {self.last_error})"
            )


LOG_BATCH_ENDPOINT = "/api/2.0/mlflow/runs/log-batch"


def metric_sender(mlflow_client: MlflowClient, run_id: str, *, timeout_s: float = 30.0):
    """A function sending a list of ``mlflow.entities.Metric`` to ``run_id`` in one attempt.

    On a tracking server (``http(s)://``) it posts MLflow's ``LogBatch`` message to
    :data:`LOG_BATCH_ENDPOINT` once, with a ``timeout_s``-second limit (``http_request`` with
    ``max_retries=0``), and raises when the server does not take it: :class:`MetricBuffer` does the
    retrying. ``MlflowClient.log_batch`` would first retry inside the call for up to about 4
    minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` = 7, backoff doubling from 2 s to 120 s), so
    metrics held during a restart reached the server up to 2 minutes after it was back. On other
    stores it is ``MlflowClient.log_batch``.
    """
    uri = mlflow_client.tracking_uri
    if not uri.startswith(("http://", "https://")):
        return lambda batch: mlflow_client.log_batch(run_id, metrics=batch)
    from mlflow.protos.service_pb2 import LogBatch

    creds = _host_creds(uri)

    def send(batch) -> None:
        message = LogBatch(run_id=run_id, metrics=[m.to_proto() for m in batch])
        _post_once(creds, LOG_BATCH_ENDPOINT, message, timeout_s)

    return send


def _post_once(creds, endpoint: str, message, timeout_s: float) -> None:
    """POST one MLflow REST ``message`` (a protobuf) to ``endpoint`` in a single attempt of at most
    ``timeout_s`` seconds (``http_request`` with ``max_retries=0``).

    Raises:
        mlflow.exceptions.MlflowException, OSError: the server refused it or did not answer.
    """
    from mlflow.utils.proto_json_utils import message_to_json
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    body = json.loads(message_to_json(message))
    response = http_request(creds, endpoint, "POST", max_retries=0, timeout=timeout_s, json=body)
    verify_rest_response(response, endpoint)


def end_run_on_failure(
    mlflow_client: MlflowClient,
    run_id: str,
    status: str,
    tags: Mapping[str, Any],
    *,
    timeout_s: float = 10.0,
) -> bool:
    """Tag and end a run whose stage is failing, without ever raising (best effort).

    The exception in flight (a signal's, a stage's) is the one to report, and it must not wait on
    the tracking server: on a server (``http(s)://``) the tags (one ``LogBatch``) and the end are
    one attempt each of at most ``timeout_s`` seconds (:func:`_post_once`; ``MlflowClient`` would
    retry for minutes, past a scheduler's kill grace period); on other stores, ``MlflowClient``.
    Each failure is logged as a warning.

    Args:
        mlflow_client: the client of the run's store.
        run_id: the run.
        status: ``FAILED`` or ``KILLED``.
        tags: set first (e.g. ``curvewatch.failure_reason``); None values are skipped.

    Returns:
        True when the run was ended.
    """
    import logging

    log = logging.getLogger(__name__)
    values = {k: str(v) for k, v in tags.items() if v is not None}
    uri = mlflow_client.tracking_uri
    if uri.startswith(("http://", "https://")):
        from mlflow.entities import RunTag
        from mlflow.protos.service_pb2 import LogBatch, UpdateRun

        creds = _host_creds(uri)

        def write_tags() -> None:
            if values:
                tags_ = [RunTag(k, v).to_proto() for k, v in values.items()]
                _post_once(creds, LOG_BATCH_ENDPOINT, LogBatch(run_id=run_id, tags=tags_), timeout_s)

        def end() -> None:
            end_time = int(datetime.now(UTC).timestamp() * 1000)
            message = UpdateRun(run_id=run_id, status=status, end_time=end_time)
            _post_once(creds, "/api/2.0/mlflow/runs/update", message, timeout_s)
    else:

        def write_tags() -> None:
            set_tags(mlflow_client, run_id, values)

        def end() -> None:
            mlflow_client.set_terminated(run_id, status=status)

    ended = False
    for step, action in (("tag", write_tags), ("end", end)):
        try:
            action()
            ended = step == "end"
        except Exception as exc:  # noqa: BLE001 - best effort, see above
            log.warning("%s run %s: could not %s it (%s: %s)", uri, run_id, step, type(exc).__name__, exc)
    return ended


def epoch_logger(
    mlflow_client: MlflowClient,
    run_id: str,
    *,
    flush_timeout_s: float = 600.0,
    close_on_train_end: bool = True,
):
    """A Keras callback that logs each epoch's ``logs`` to ``run_id`` with ``step`` = 1-based epoch.

    Values go through a :class:`MetricBuffer` (:func:`metric_sender`, retries every 10 s at most):
    one request per epoch while the tracking server answers, buffered and re-sent at the first
    retry after its return from a restart; training never blocks on the server. At the end of
    training (``on_train_end``, or the caller's ``close()`` when ``close_on_train_end`` is False,
    e.g. to first keep the finished training) the callback waits up to ``flush_timeout_s`` seconds
    for the buffer to drain and raises :class:`TrackingUnavailable` if it cannot. Keras does not
    call ``on_train_end`` when ``fit``
    raises (a signal, a failing callback): the callback's ``drain(timeout_s)`` then sends what it
    holds, waiting at most ``timeout_s`` seconds, and only logs a warning if it cannot (the
    exception in flight is the one to report). Built in a function so that importing this module
    does not import Keras.
    """
    import time

    import keras
    from mlflow.entities import Metric

    target = f"{mlflow_client.tracking_uri} run {run_id}"

    class MlflowEpochLogger(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.buffer: MetricBuffer | None = None

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.buffer = MetricBuffer(
                metric_sender(mlflow_client, run_id), target=target, max_backoff_s=10.0
            )

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = int(time.time() * 1000)
            metrics = [
                Metric(k, float(v), now, epoch + 1)
                for k, v in (logs or {}).items()
                if isinstance(v, int | float | np.floating | np.integer) or np.ndim(v) == 0
            ]
            if metrics and self.buffer is not None:
                self.buffer.put(metrics)

        def on_train_end(self, logs: dict | None = None) -> None:
            if close_on_train_end:
                self.close()

        def close(self) -> None:
            if self.buffer is not None:
                self.buffer.close(flush_timeout_s)

        def drain(self, timeout_s: float) -> None:
            if self.buffer is None:
                return
            try:
                self.buffer.close(timeout_s)
            except TrackingUnavailable as exc:
                import logging

                logging.getLogger(__name__).warning("%s", exc)

    return MlflowEpochLogger()


def log_dataset(
    mlflow_client: MlflowClient,
    run_id: str,
    manifest,
    *,
    name: str,
    source: Path,
    digest: str,
    context: str = "training",
) -> None:
    """Record the dataset (the prepared manifest, digest = DVC content hash of the raw data).

    The schema is inferred from the manifest's first rows (MLflow checks every value of every
    column: 0.6 s for Fashion-MNIST's 70,000 rows; each column has one type); the profile counts
    the whole manifest.
    """
    import mlflow.data
    from mlflow.entities import Dataset, DatasetInput, InputTag

    sample = mlflow.data.from_pandas(manifest.head(1000), source=str(source), name=name, digest=digest[:36])
    entity = sample._to_mlflow_entity()
    entity = Dataset(
        name=entity.name,
        digest=entity.digest,
        source_type=entity.source_type,
        source=entity.source,
        schema=entity.schema,
        profile=json.dumps({"num_rows": len(manifest), "num_elements": int(manifest.size)}),
    )
    tags = [InputTag(key="mlflow.data.context", value=context), InputTag(key="dvc_md5", value=digest)]
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(dataset=entity, tags=tags)])


@dataclass(frozen=True)
class Champion:
    """The registered model version holding the ``champion`` alias."""

    version: str
    run_id: str


def get_champion(mlflow_client: MlflowClient, model_name: str) -> Champion | None:
    """Return the current champion of registered model ``model_name``, or None when there is none.

    None only when the registry says so: no such registered model (``RESOURCE_DOES_NOT_EXIST``) or
    no ``champion`` alias on it (``INVALID_PARAMETER_VALUE`` "... alias champion not found").

    Raises:
        mlflow.exceptions.MlflowException: any other registry error (a server error, a store that
            does not answer): read as "no champion", it would let any challenger be promoted.
    """
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow_client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
            exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message
        ):
            return None
        raise
    return Champion(version=str(mv.version), run_id=mv.run_id)


def promote(mlflow_client: MlflowClient, model_name: str, version: str) -> None:
    """Move the ``champion`` alias to ``version`` of ``model_name``."""
    mlflow_client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))


def run_curve(mlflow_client: MlflowClient, run_id: str, *, metrics: Iterable[str] | None = None) -> Curve:
    """Read one run's per-epoch curves into a :class:`Curve` (see :func:`fetch_curves`).

    Steps are epochs: 1-based as curvewatch logs them, or 0-based as MLflow's Keras autologging
    logs them (``mlflow.keras.autolog()``: ``step=epoch``), read as 1-based.
    ``epoch_budget`` comes from the ``train.epochs`` param (else autolog's ``epochs``),
    ``num_classes`` from the ``data.num_classes`` param, ``num_val_examples`` from
    ``data.val_examples``, completeness from the run status and the ``curvewatch.completed`` tag.
    """
    return fetch_curves(mlflow_client, [mlflow_client.get_run(run_id)], metrics=metrics)[0]


def _curve_from_series(run, series: Mapping[str, Mapping[int, float]]) -> Curve:
    steps = sorted({s for values in series.values() for s in values})
    epochs = np.asarray(steps, dtype=np.int64)
    if epochs.size and epochs[0] == 0:
        # MLflow's Keras / TensorFlow autologging logs step = Keras' 0-based epoch
        # (mlflow/keras/callback.py: log_metrics(logs, step=epoch)); curvewatch logs 1-based.
        epochs = epochs + 1
    arrays = engine_metrics(
        {
            key: np.asarray([values.get(s, np.nan) for s in steps], dtype=np.float64)
            for key, values in series.items()
        },
        run.info.run_id,
        announce=False,  # the report says so (its loss note); a bulk read covers many runs
    )
    params = dict(run.data.params)
    tags = dict(run.data.tags)

    def count(key: str) -> int | None:  # an integer param as MLflow stores it (a string), or None
        value = params.get(key)
        return int(value) if value and value.isdigit() else None

    finished = run.info.status == "FINISHED"
    completed = tags.get("curvewatch.completed", "true").lower() == "true"
    return Curve(
        run=run.info.run_id,
        metrics=arrays,
        epochs=epochs,
        epoch_budget=count("train.epochs") or count("epochs"),  # ours, else fit()'s as autolog logs it
        complete=finished and completed,
        num_classes=count("data.num_classes"),
        num_val_examples=count("data.val_examples"),
        params=params,
        tags=tags,
    )


def recent_training_runs(
    mlflow_client: MlflowClient, experiment_id: str, *, exclude: Sequence[str] = (), limit: int = 5
) -> list:
    """The last ``limit`` finished training runs of the experiment, newest first, minus ``exclude``."""
    if limit <= 0:
        return []
    runs = search_training_runs(
        mlflow_client, [experiment_id], filter_string=FINISHED_TRAINING, max_runs=limit + len(exclude)
    )
    return [r for r in runs if r.info.run_id not in set(exclude)][:limit]


def download_predictions(mlflow_client: MlflowClient, run_id: str, dst: Path):
    """Download a run's ``evaluation/predictions.parquet`` and return it as a DataFrame.

    Returns:
        The DataFrame, or None when the run has no such artifact (``RESOURCE_DOES_NOT_EXIST`` from
        the store, HTTP 404 from an artifact server, no local file).

    Raises:
        mlflow.exceptions.MlflowException, OSError: any other failure to read it (a server error,
            a network failure), which must not read as "the champion has no predictions".
    """
    import pandas as pd
    import requests
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow_client.download_artifacts(run_id, "evaluation/predictions.parquet", str(dst))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    except requests.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return None
        raise
    except FileNotFoundError:
        return None
    return pd.read_parquet(local)


def search_training_runs(
    mlflow_client: MlflowClient,
    experiment_ids: Sequence[str],
    *,
    filter_string: str = "",
    max_runs: int = 100_000,
) -> list:
    """All runs of ``experiment_ids`` matching ``filter_string`` (MLflow search syntax), newest
    first, fetched in pages of 1,000 (``MlflowClient.search_runs``)."""
    runs: list = []
    token = None
    while len(runs) < max_runs:
        page = mlflow_client.search_runs(
            list(experiment_ids),
            filter_string=filter_string,
            order_by=["attributes.start_time DESC"],
            max_results=min(1000, max_runs - len(runs)),
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


#: MLflow server endpoint that the UI's charts use: one metric's full history for up to 100 runs in one
#: request (one SQL query on a database-backed server), at most 25,000 values per response.
BULK_HISTORY_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
_BULK_MAX_RUNS = 100
_BULK_MAX_RESULTS = 25_000


def _host_creds(uri: str):
    """Credentials for ``uri`` from the same environment variables MLflow's own client reads
    (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, ``_TOKEN``, ``_INSECURE_TLS``, ``_SERVER_CERT_PATH``,
    ``_CLIENT_CERT_PATH``)."""
    from mlflow import environment_variables as env
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(
        host=uri.rstrip("/"),
        username=env.MLFLOW_TRACKING_USERNAME.get(),
        password=env.MLFLOW_TRACKING_PASSWORD.get(),
        token=env.MLFLOW_TRACKING_TOKEN.get(),
        ignore_tls_verification=env.MLFLOW_TRACKING_INSECURE_TLS.get(),
        client_cert_path=env.MLFLOW_TRACKING_CLIENT_CERT_PATH.get(),
        server_cert_path=env.MLFLOW_TRACKING_SERVER_CERT_PATH.get(),
    )


def _http_bulk_history(creds, run_ids: list[str], key: str) -> list[dict]:
    """All values of metric ``key`` for ``run_ids`` (<= 100) from the server's bulk endpoint; a
    response that hits the server's 25,000-value cap is split in halves and fetched again."""
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    params = [("run_id", r) for r in run_ids] + [("metric_key", key), ("max_results", _BULK_MAX_RESULTS)]
    response = http_request(creds, BULK_HISTORY_ENDPOINT, "GET", params=params)
    values = verify_rest_response(response, BULK_HISTORY_ENDPOINT).json().get("metrics", [])
    if len(values) >= _BULK_MAX_RESULTS and len(run_ids) > 1:
        half = len(run_ids) // 2
        return _http_bulk_history(creds, run_ids[:half], key) + _http_bulk_history(creds, run_ids[half:], key)
    if len(values) >= _BULK_MAX_RESULTS:
        raise ValueError(f"run {run_ids[0]}: metric {key!r} has more than {_BULK_MAX_RESULTS} values")
    return values


@functools.lru_cache(maxsize=8)
def _sql_engine(uri: str):
    import sqlalchemy as sa

    return sa.create_engine(uri)


def fetch_curves(
    mlflow_client: MlflowClient,
    runs: Sequence,
    *,
    metrics: Iterable[str] | None = None,
    chunk: int = 500,
    bulk: bool = True,
    workers: int = 8,
) -> list[Curve]:
    """Curves of many runs at once (``runs``: ``mlflow.entities.Run`` objects, e.g. from
    :func:`search_training_runs`).

    How the values are read depends on ``mlflow_client.tracking_uri`` (public API only):
    - an ``http(s)://`` tracking server: the server's bulk metric-history endpoint
      (:data:`BULK_HISTORY_ENDPOINT`, the one the MLflow UI's charts call), one request per metric
      per 100 runs, ``workers`` requests in flight at once, with the credentials MLflow's client
      reads from the environment;
    - a SQL store (``sqlite:``, ``postgresql...:``, ``mysql...:``): one query per ``chunk`` runs for
      all metrics on MLflow's ``metrics`` table (columns ``run_uuid, key, step, value, timestamp,
      is_nan``, MLflow's documented database schema) through an engine made from the URI;
    - anything else, or ``bulk=False``: ``get_metric_history`` per run and metric.
    Where a step was logged twice the latest timestamp wins, as in the MLflow UI.

    ``metrics=None`` reads, of what each run logged (``Run.data.metrics``' keys), what the engine
    reads (:func:`pipelines.curves.io.metrics_read`): an autologged run's ``val_binary_accuracy``
    or ``val_acc`` too, and a cross-entropy metric logged beside a penalised loss. Each curve's
    metrics are then named and chosen as for a file (:func:`pipelines.curves.io.engine_metrics`:
    ``val_accuracy``, ``loss`` / ``val_loss`` without the regularisation penalty).

    Returns:
        One :class:`Curve` per run, in the order given.

    Raises:
        mlflow.exceptions.MlflowException: the server refused a request (after MLflow's retries).
        ValueError: one run's metric has more than 25,000 values (the server's bulk cap).
    """
    wanted = {
        r.info.run_id: tuple(metrics) if metrics is not None else metrics_read(r.data.metrics) for r in runs
    }
    metrics = tuple(dict.fromkeys(name for names in wanted.values() for name in names))
    series: dict[str, dict[str, dict[int, float]]] = {r.info.run_id: {} for r in runs}
    ids = list(series)
    uri = mlflow_client.tracking_uri
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if bulk and ids and scheme in ("http", "https"):
        from concurrent.futures import ThreadPoolExecutor

        creds = _host_creds(uri)
        jobs = [
            (ids[i : i + _BULK_MAX_RUNS], key) for i in range(0, len(ids), _BULK_MAX_RUNS) for key in metrics
        ]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for values in pool.map(lambda job: _http_bulk_history(creds, *job), jobs):
                for m in sorted(values, key=lambda m: int(m.get("timestamp", 0))):
                    series[m["run_id"]].setdefault(m["key"], {})[int(m.get("step", 0))] = float(m["value"])
    elif bulk and ids and scheme in ("sqlite", "postgresql", "mysql", "mssql"):
        import sqlalchemy as sa

        query = sa.text(
            "SELECT run_uuid, key, step, value, is_nan FROM metrics "
            "WHERE run_uuid IN :ids AND key IN :keys ORDER BY timestamp"
        ).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("keys", expanding=True))
        with _sql_engine(uri).connect() as conn:
            for start in range(0, len(ids), chunk):
                rows = conn.execute(query, {"ids": ids[start : start + chunk], "keys": list(metrics)})
                for run_id, key, step, value, is_nan in rows:
                    series[run_id].setdefault(key, {})[int(step)] = float("nan") if is_nan else float(value)
    else:
        for run_id in series:
            for key in wanted[run_id]:
                hist = mlflow_client.get_metric_history(run_id, key)
                if hist:
                    series[run_id][key] = {m.step: m.value for m in hist}
    return [_curve_from_series(r, series[r.info.run_id]) for r in runs]


def same_config_test_accuracies(
    mlflow_client: MlflowClient,
    experiment_id: str,
    reference_run_id: str,
    *,
    exclude: Sequence[str] = (),
    max_runs: int = 500,
) -> dict[str, float]:
    """``test_accuracy`` per distinct seed of the finished training runs with the reference run's
    config on its data (:func:`pipelines.curves.configs.same_config`), the reference run included.

    One value per seed: a seed run twice is one draw of the seed spread, not two (the reference
    run's value is kept for its own seed, else the newest run's). Runs that logged no seed are
    left out, since they cannot be told apart from a repeat. Feeds the regression gate's seed
    rule: a challenger is judged against the spread of the champion's config over seeds, not
    against one lucky or unlucky run. Pass the challenger's run id in ``exclude``: the seed bound
    predicts one *more* seed, so the run being judged must not widen its own yardstick.

    Returns:
        ``{seed: test_accuracy}`` (seed as logged, a string), in [0, 1].
    """
    from pipelines.curves.configs import run_seed, same_config

    ref = mlflow_client.get_run(reference_run_id)
    runs = search_training_runs(
        mlflow_client, [experiment_id], filter_string=FINISHED_TRAINING, max_runs=max_runs
    )
    out: dict[str, float] = {}
    for run in [ref, *runs]:  # newest first, after the reference: the first value per seed wins
        acc = run.data.metrics.get("test_accuracy")
        seed = run_seed(run.data.params)
        if acc is None or seed is None or seed in out or run.info.run_id in exclude:
            continue
        if same_config(run.data.params, ref.data.params, run.data.tags, ref.data.tags):
            out[seed] = float(acc)
    return out
