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

import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.config import Params
from pipelines.curves.types import Curve

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

CHAMPION_ALIAS = "champion"
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
RUN_KIND_TAG = "curvewatch.run_kind"
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
    """An ``MlflowClient`` on ``uri`` (default :func:`tracking_uri`); the model registry uses it too."""
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Return the id of experiment ``name``, creating it (artifacts under :func:`artifact_root`)."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = mlflow_client.tracking_uri
    location = artifact_root() if uri.startswith("sqlite:") or uri.startswith("file:") else None
    return mlflow_client.create_experiment(name, artifact_location=location)


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
    in memory, without touching the repository's cache.

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
    odb = HashFileDB(MemoryFileSystem(), "/odb")
    _, _, obj = build(odb, str(path.resolve()), LocalFileSystem(), "md5")
    return obj.hash_info.value


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


def set_tags(mlflow_client: MlflowClient, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set string tags in one batch (None values skipped)."""
    from mlflow.entities import RunTag

    batch = [RunTag(k, str(v)) for k, v in tags.items() if v is not None]
    if batch:
        mlflow_client.log_batch(run_id, tags=batch)


def log_params(mlflow_client: MlflowClient, run_id: str, params: Params) -> None:
    """Log the full resolved config as params (``train.epochs`` ...) and as ``config/params.json``."""
    from mlflow.entities import Param

    flat = params.to_flat_dict()
    batch = [Param(k, json.dumps(v) if isinstance(v, list | dict) else str(v)) for k, v in flat.items()]
    for start in range(0, len(batch), 90):
        mlflow_client.log_batch(run_id, params=batch[start : start + 90])
    mlflow_client.log_dict(run_id, params.model_dump(mode="json", by_alias=True), "config/params.json")


def epoch_logger(mlflow_client: MlflowClient, run_id: str):
    """A Keras callback that logs each epoch's ``logs`` to ``run_id`` with ``step`` = 1-based epoch.

    One ``log_batch`` call per epoch, so a long run costs one round trip per epoch. Built in a
    function so that importing this module does not import Keras.
    """
    import time

    import keras
    from mlflow.entities import Metric

    class MlflowEpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = int(time.time() * 1000)
            metrics = [
                Metric(k, float(v), now, epoch + 1)
                for k, v in (logs or {}).items()
                if isinstance(v, int | float | np.floating | np.integer) or np.ndim(v) == 0
            ]
            if metrics:
                mlflow_client.log_batch(run_id, metrics=metrics)

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
    """Record the dataset (the prepared manifest, digest = DVC content hash of the raw data)."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag

    dataset = mlflow.data.from_pandas(manifest, source=str(source), name=name, digest=digest[:36])
    tags = [InputTag(key="mlflow.data.context", value=context), InputTag(key="dvc_md5", value=digest)]
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags)])


@dataclass(frozen=True)
class Champion:
    """The registered model version holding the ``champion`` alias."""

    version: str
    run_id: str


def get_champion(mlflow_client: MlflowClient, model_name: str) -> Champion | None:
    """Return the current champion of registered model ``model_name``, or None when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        mv = mlflow_client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return Champion(version=str(mv.version), run_id=mv.run_id)


def promote(mlflow_client: MlflowClient, model_name: str, version: str) -> None:
    """Move the ``champion`` alias to ``version`` of ``model_name``."""
    mlflow_client.set_registered_model_alias(model_name, CHAMPION_ALIAS, str(version))


def run_curve(mlflow_client: MlflowClient, run_id: str, *, metrics: Iterable[str] = EPOCH_METRICS) -> Curve:
    """Read one run's per-epoch curves into a :class:`Curve` (see :func:`fetch_curves`).

    ``epoch_budget`` comes from the ``train.epochs`` param, ``num_classes`` from the
    ``data.num_classes`` param, completeness from the run status and the ``curvewatch.completed`` tag.
    """
    return fetch_curves(mlflow_client, [mlflow_client.get_run(run_id)], metrics=metrics)[0]


def _curve_from_series(run, series: Mapping[str, Mapping[int, float]]) -> Curve:
    steps = sorted({s for values in series.values() for s in values})
    epochs = np.asarray(steps, dtype=np.int64)
    arrays = {
        key: np.asarray([values.get(s, np.nan) for s in steps], dtype=np.float64)
        for key, values in series.items()
    }
    params = dict(run.data.params)
    tags = dict(run.data.tags)
    budget = params.get("train.epochs")
    num_classes = params.get("data.num_classes")
    finished = run.info.status == "FINISHED"
    completed = tags.get("curvewatch.completed", "true").lower() == "true"
    return Curve(
        run=run.info.run_id,
        metrics=arrays,
        epochs=epochs,
        epoch_budget=int(budget) if budget and budget.isdigit() else None,
        complete=finished and completed,
        num_classes=int(num_classes) if num_classes and num_classes.isdigit() else None,
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
    """Download a run's ``evaluation/predictions.parquet`` and return it as a DataFrame (None if absent)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow_client.download_artifacts(run_id, "evaluation/predictions.parquet", str(dst))
    except (MlflowException, OSError):
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


def fetch_curves(
    mlflow_client: MlflowClient,
    runs: Sequence,
    *,
    metrics: Iterable[str] = EPOCH_METRICS,
    chunk: int = 500,
    bulk: bool = True,
) -> list[Curve]:
    """Curves of many runs at once (``runs``: ``mlflow.entities.Run`` objects, e.g. from
    :func:`search_training_runs`).

    On a SQL store (SQLite, PostgreSQL...) this issues one query per ``chunk`` runs for all
    metrics, straight on MLflow's ``metrics`` table (columns ``run_uuid, key, step, value,
    timestamp, is_nan``) with SQLAlchemy Core, instead of one ``get_metric_history`` call (and one
    ORM object per value) per run and metric; where a step was logged twice the latest timestamp
    wins, as in the MLflow UI. Other stores (an HTTP tracking server) fall back to the per-run
    calls, and so does ``bulk=False``. Returns one :class:`Curve` per run, in the order given.
    """
    metrics = tuple(metrics)
    store = getattr(getattr(mlflow_client, "_tracking_client", None), "store", None)
    series: dict[str, dict[str, dict[int, float]]] = {r.info.run_id: {} for r in runs}
    engine = getattr(store, "engine", None) if bulk else None
    if engine is not None:
        import sqlalchemy as sa

        query = sa.text(
            "SELECT run_uuid, key, step, value, is_nan FROM metrics "
            "WHERE run_uuid IN :ids AND key IN :keys ORDER BY timestamp"
        ).bindparams(sa.bindparam("ids", expanding=True), sa.bindparam("keys", expanding=True))
        ids = list(series)
        with engine.connect() as conn:
            for start in range(0, len(ids), chunk):
                rows = conn.execute(query, {"ids": ids[start : start + chunk], "keys": list(metrics)})
                for run_id, key, step, value, is_nan in rows:
                    series[run_id].setdefault(key, {})[int(step)] = float("nan") if is_nan else float(value)
    else:
        for run_id in series:
            for key in metrics:
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
