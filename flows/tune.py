"""The Prefect flow ``tune``: the Optuna search of ``curvewatch tune``, on demand.

Orchestration only: fetch and prepare (the same tasks as ``retrain``), then
:func:`pipelines.steps.run_tune`, the function the CLI command calls.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.retrain import fetch_task, prepare_task
from pipelines import steps
from pipelines.config import Params, load_params


@task(name="tune", cache_policy=NO_CACHE)
def tune_task(params: Params, trials: int | None, storage: str | None):
    return steps.run_tune(params, trials=trials, storage=storage)


@flow(name="tune", log_prints=True)
def tune(
    params_path: str = "params.yaml",
    profile: str | None = None,
    overrides: list[str] | None = None,
    trials: int | None = None,
    storage: str | None = None,
) -> dict:
    """Search learning rate, dropout, L2 and batch size around ``train`` (``params.yaml: tune``).

    Args:
        params_path: the params file.
        profile: ``quick`` or ``full`` (default: ``base.profile``).
        overrides: ``section.key=value`` strings.
        trials: trials to run (default ``tune.n_trials``).
        storage: an Optuna storage URL to keep the study (in memory when None).

    Returns:
        ``{"best_params", "best_val_accuracy", "test_accuracy", "optimism"}``.
    """
    logger = get_run_logger()
    params = load_params(params_path, profile=profile, overrides=overrides)
    fetch_task(params)
    prepare_task(params)
    result = tune_task(params, trials, storage)
    for t in result.trials:
        why = f"  pruned: {t['pruned_because']}" if t["pruned_because"] else ""
        logger.info("trial %s: %s value=%s %s%s", t["number"], t["state"], t["value"], t["params"], why)
    return {
        "best_params": result.best_params,
        "best_val_accuracy": result.best_val_accuracy,
        "test_accuracy": result.test_accuracy,
        "optimism": result.optimism.message if result.optimism else None,
    }
