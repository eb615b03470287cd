"""Register curvewatch's Prefect deployments on a work pool (``process`` by default).

* ``retrain/scheduled``: the flow ``retrain`` on the cron schedule of ``params.yaml: schedule``
  (``retrain_cron``, ``timezone``; nightly at 03:00 UTC by default);
* ``tune/on-demand``: the flow ``tune``, no schedule (run it from the UI or with
  ``prefect deployment run tune/on-demand``).

Both run on the work pool ``$CURVEWATCH_WORK_POOL`` (default ``curvewatch``), created when absent
with type ``$CURVEWATCH_WORK_POOL_TYPE`` (default ``process``, served by the worker of
``infra/prefect-worker.sh``; ``docker`` or ``kubernetes`` for workers of that type, which need
Prefect's ``prefect-docker`` or ``prefect-kubernetes`` package); any worker polling the same server and pool
picks runs up (Prefect docs, "Deploy flows to work pools and workers",
https://docs.prefect.io/v3/deploy/infrastructure-concepts/work-pools). The flow code is read from
``$CURVEWATCH_FLOW_SOURCE``: by default this checkout (a local directory, so every worker must see it
at the same path); a git URL lets workers on other machines clone it.

Run: ``make serve`` (starts the services first) or ``uv run python -m flows.deployments``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from uuid import UUID

from pipelines.config import load_params

REPO = Path(__file__).resolve().parent.parent
RETRAIN_DEPLOYMENT = "scheduled"
TUNE_DEPLOYMENT = "on-demand"
DEFAULT_WORK_POOL = "curvewatch"


def work_pool_name() -> str:
    """``$CURVEWATCH_WORK_POOL`` or ``curvewatch`` (the pool ``infra/prefect-worker.sh`` polls)."""
    return os.environ.get("CURVEWATCH_WORK_POOL") or DEFAULT_WORK_POOL


def work_pool_type() -> str:
    """``$CURVEWATCH_WORK_POOL_TYPE`` or ``process``: the type a missing work pool is created with."""
    return os.environ.get("CURVEWATCH_WORK_POOL_TYPE") or "process"


def ensure_work_pool(name: str, pool_type: str) -> None:
    """Create work pool ``name`` of type ``pool_type`` on the Prefect server unless it exists.

    Raises:
        ValueError: a pool of that name exists with another type.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return
    if pool.type != pool_type:
        raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, not {pool_type!r}")


def register(
    params_path: str | Path = "params.yaml",
    *,
    source: str | Path | None = None,
    work_pool: str | None = None,
    paused: bool = False,
) -> dict[str, UUID]:
    """Create or update the deployments ``retrain/scheduled`` and ``tune/on-demand``.

    Args:
        params_path: the params file: ``schedule`` gives the cron and time zone; the deployments pass
            its path relative to ``source`` to the flows.
        source: where workers read the flow code: a directory or a git URL (default
            ``$CURVEWATCH_FLOW_SOURCE``, else the directory of ``params_path``).
        work_pool: the work pool (default :func:`work_pool_name`); created with type
            :func:`work_pool_type` if missing.
        paused: register the schedule paused.

    Returns:
        ``{"retrain/scheduled": id, "tune/on-demand": id}``.

    Raises:
        pipelines.config.ConfigError: ``params_path`` is invalid (a bad ``schedule.retrain_cron``
            names the key).
        ValueError: the work pool exists with another type than :func:`work_pool_type`, or the
            flow source is a folder that does not hold ``params_path``.
    """
    from prefect.schedules import Cron

    from flows.retrain import retrain
    from flows.tune import tune

    params_path = Path(params_path).resolve()
    params = load_params(params_path)
    source = str(source or os.environ.get("CURVEWATCH_FLOW_SOURCE") or params_path.parent)
    local = Path(source).is_dir()
    params_arg = params_path.name
    if local:
        try:
            params_arg = str(params_path.relative_to(Path(source).resolve()))
        except ValueError:
            raise ValueError(
                f"{params_path}: not inside the flow source {source} (CURVEWATCH_FLOW_SOURCE): workers "
                "read the params file from the flow source; put it there, or point the source at its "
                "checkout"
            ) from None
    pool = work_pool or work_pool_name()
    ensure_work_pool(pool, work_pool_type())
    common = dict(work_pool_name=pool, build=False, push=False, print_next_steps=False, tags=["curvewatch"])
    ids = {}
    flow = retrain.from_source(source=source, entrypoint="flows/retrain.py:retrain")
    ids[f"retrain/{RETRAIN_DEPLOYMENT}"] = flow.deploy(
        name=RETRAIN_DEPLOYMENT,
        schedule=Cron(params.schedule.retrain_cron, timezone=params.schedule.timezone),
        paused=paused,
        concurrency_limit=1,  # two retrains at once would race on the same outputs and dvc.lock
        parameters={"params_path": params_arg},
        description=(
            f"Scheduled retrain ({params.schedule.retrain_cron}, {params.schedule.timezone}; params.yaml: "
            "schedule). Skips training when the data version and params are unchanged."
        ),
        **common,
    )
    flow = tune.from_source(source=source, entrypoint="flows/tune.py:tune")
    ids[f"tune/{TUNE_DEPLOYMENT}"] = flow.deploy(
        name=TUNE_DEPLOYMENT,
        parameters={"params_path": params_arg},
        description="Optuna search around train (params.yaml: tune), on demand.",
        **common,
    )
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Register curvewatch's Prefect deployments.")
    parser.add_argument("--params", default=str(REPO / "params.yaml"), help="params file")
    parser.add_argument("--paused", action="store_true", help="register the retrain schedule paused")
    args = parser.parse_args(argv)
    from pipelines.config import ConfigError

    try:
        ids = register(args.params, paused=args.paused)
    except (ConfigError, ValueError) as exc:  # ConfigError is a ValueError; both name what is wrong
        raise SystemExit(f"{exc}") from exc
    from prefect.settings import PREFECT_API_URL

    params = load_params(args.params)
    for name in ids:
        print(f"registered {name} on work pool {work_pool_name()!r}")
    print(
        f"retrain runs on cron {params.schedule.retrain_cron!r} ({params.schedule.timezone}); "
        f"trigger now: PREFECT_API_URL={PREFECT_API_URL.value()} uv run prefect deployment run "
        f"retrain/{RETRAIN_DEPLOYMENT}"
    )


if __name__ == "__main__":
    main()
