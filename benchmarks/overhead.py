"""Benchmark: the ``retrain`` flow against a bare Keras ``fit`` of the same model, data and epochs.

The two alternate (bare, flow, bare, flow, ...; ``--pairs``, at least 3) so that a busy spell of
the machine hits both sides, and the median of the pairwise ratios flow / bare is printed, and of
the train task's ``model.fit`` (with curvewatch's callbacks, MLflow logging beside it) / bare. From the
flow's own Prefect task runs it also prints, per task, the seconds spent outside ``model.fit``
(the train task's ``fit`` time is ``metrics/train.json: train.train_seconds``), and the flow's
non-training time as a share of its training time. Target for the quick profile: <= 3 %. For
scale, it also times flow runs that do nothing: Prefect's own floor on this server, for an async
flow (as ``retrain`` is) and a sync one (whose engine waits for the heartbeat thread's 1 s tick).
Each pair's line also gives the seconds the flow run spent in Python's full (generation 2) garbage
collections (``gc.callbacks``): with TensorFlow, Keras, MLflow and DVC imported, one full collection
scans about a million objects (0.65 s here) and comes when the heap has grown by a quarter, so it
falls on whichever pair and task is running then.

The flow runs as a scheduled retrain does, with ``force=True`` (otherwise every run after the
first would be skipped as unchanged) in a scratch DVC project whose data was fetched, prepared,
validated and baselined once beforehand (untimed, recorded in ``dvc.lock``, with the MLflow store
created): unchanged stages are skipped, every run is committed to ``dvc.lock`` and pushed to the
project's local remote.

Last, one flow run in a fresh process (``curvewatch flow retrain --force``, as ``make run`` runs it
and as a deployment's worker runs each flow run) prints its own seconds outside ``model.fit``: the
first imports of TensorFlow, MLflow and DVC, which the warm pairs no longer pay, are in it.

Run: ``make bench`` or ``uv run python benchmarks/overhead.py [--profile quick] [--pairs 3]
[-S train.epochs=2]`` (``-S`` values are written into the scratch project's params.yaml, as
``dvc exp run -S`` does). Everything goes to a temporary directory with its own MLflow store; the
Prefect server is the local one (``infra/prefect-server.sh``), started if needed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _task_seconds(flow_run_id) -> dict[str, float]:
    """Wall seconds of each task run of the flow run (Prefect's own start and end times)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
        flow_run = client.read_flow_run(flow_run_id)
    out = {r.name.rsplit("-", 1)[0]: (r.end_time - r.start_time).total_seconds() for r in runs if r.end_time}
    out["(flow total)"] = (flow_run.end_time - flow_run.start_time).total_seconds()
    return out


def _outside_fit(tasks: dict[str, float], fit_s: float, total_s: float) -> dict[str, float]:
    """Seconds outside ``model.fit`` in one flow run, per task (:func:`_task_seconds`; the train
    task's less ``fit_s``), and ``(outside tasks)``: ``total_s`` less the time in all the tasks."""
    in_tasks = {n: v for n, v in tasks.items() if n != "(flow total)"}
    out = {n: (v - fit_s if n == "train" else v) for n, v in in_tasks.items()}
    out["(outside tasks)"] = total_s - sum(in_tasks.values())
    return out


def _fresh_process_run(root: Path, train_metrics: Path) -> dict:
    """One ``curvewatch flow retrain --force`` in a new process (as ``make run`` runs it, and as a
    deployment's worker runs each flow run): wall seconds of the process, the flow run's task
    seconds and its ``model.fit`` seconds.

    Raises:
        RuntimeError: the command failed (its exit code and the end of its stderr).
    """
    import re
    import subprocess

    command = [str(Path(sys.executable).with_name("curvewatch")), "flow", "retrain", "--force"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=root, capture_output=True, text=True)
    process_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    match = re.search(r"flow-run/([0-9a-f-]{36})", proc.stdout + proc.stderr)
    if match is None:
        raise RuntimeError(f"{' '.join(command)}: no flow-run link in its output\n{proc.stderr[-3000:]}")
    flow_run_id = match.group(1)
    fit_s = json.loads(train_metrics.read_text())["train"]["train_seconds"]
    return {"process_s": process_s, "tasks": _task_seconds(flow_run_id), "fit_s": fit_s}


class _FullCollections:
    """Seconds spent in full (generation 2) garbage collections while active (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None

    def _callback(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        elif self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def __enter__(self) -> _FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--pairs", type=int, default=3, help="bare/flow pairs (>= 3)")
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if args.pairs < 3:
        parser.error("--pairs must be at least 3")

    from pipelines.cli import ensure_prefect_server

    ensure_prefect_server()
    with tempfile.TemporaryDirectory(prefix="curvewatch-bench-") as tmp:
        tmp_path = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
        os.environ["MLFLOW_ARTIFACT_ROOT"] = (tmp_path / "mlartifacts").as_uri()

        from pipelines import steps, versioning
        from pipelines.config import _apply_override, load_params

        raw = yaml.safe_load(Path(args.params).read_text())
        if args.profile:
            raw.setdefault("base", {})["profile"] = args.profile
        for override in args.overrides:
            _apply_override(raw, override)
        project = versioning.scratch_project(tmp_path / "project", raw, source=REPO)
        os.chdir(project.root)
        params_path = project.root / "params.yaml"
        params = load_params(params_path)

        import keras

        from flows.retrain import run_retrain
        from pipelines.models import build_model
        from pipelines.train import release_traced_gradients, stratified_subsample

        # Untimed set-up, as left by an earlier scheduled run: data fetched, prepared, validated and
        # baselined, and recorded in dvc.lock.
        steps.run_fetch(params)
        steps.run_prepare(params)
        steps.run_validate(params, log_failure_to_mlflow=False)
        steps.run_baseline(params)
        versioning.commit_and_push(project, ["fetch", "prepare", "validate", "baseline"], push=False)
        from pipelines import tracking

        # ... and an MLflow store with the experiment (its creation is a one-time cost, not the flow's).
        tracking.ensure_experiment(tracking.client(), params.tracking.experiment)
        data, _ = steps.load_train_data(params)
        cfg = params.train
        x_train, y_train = data.x_train, data.y_train
        if cfg.max_train_examples is not None and cfg.max_train_examples < len(y_train):
            # The same stratified, seeded subsample that train() takes.
            keep = stratified_subsample(y_train, cfg.max_train_examples, params.base.seed)
            x_train, y_train = x_train[keep], y_train[keep]

        # Warm-up outside the clock: the first fit in a process pays one-time backend start-up
        # (thread pools, kernel selection) that would otherwise be charged to whichever side ran first.
        warm = build_model(cfg, data.x_train.shape[1:], data.num_classes)
        with release_traced_gradients():  # as train() does: no traced graph outlives its model
            warm.fit(data.x_train[:512], data.y_train[:512], batch_size=cfg.batch_size, epochs=1, verbose=0)
        del warm

        import asyncio

        from prefect import flow

        @flow(name="empty")
        async def empty() -> None:
            """Prefect's own floor: a flow run that does nothing (creation, states), async as retrain."""

        @flow(name="empty-sync")
        def empty_sync() -> None:
            """The same as a sync flow: its engine also waits for the heartbeat thread's next tick."""

        pairs = []
        for i in range(args.pairs):
            keras.utils.set_random_seed(params.base.seed)
            model = build_model(cfg, data.x_train.shape[1:], data.num_classes)
            with release_traced_gradients():  # after the timed fit: its graphs go with the model
                start = time.perf_counter()
                history = model.fit(
                    x_train,
                    y_train,
                    validation_data=(data.x_val, data.y_val),
                    batch_size=cfg.batch_size,
                    epochs=cfg.epochs,
                    verbose=0,
                )
                bare_s = time.perf_counter() - start
            bare_epochs = len(history.history["loss"])
            del model

            start = time.perf_counter()
            with _FullCollections() as collections:
                state = run_retrain(params_path=str(params_path), force=True, return_state=True)
            flow_s = time.perf_counter() - start
            summary = state.result()
            train = json.loads(params.paths.train_metrics.read_text())["train"]
            tasks = _task_seconds(state.state_details.flow_run_id)
            start = time.perf_counter()
            asyncio.run(empty())
            floor_s = time.perf_counter() - start
            start = time.perf_counter()
            empty_sync()
            floor_sync_s = time.perf_counter() - start
            pairs.append(
                {
                    "bare_s": bare_s,
                    "bare_epochs": bare_epochs,
                    "flow_s": flow_s,
                    "flow_epochs": train["epochs_run"],
                    "fit_s": train["train_seconds"],
                    "tasks": tasks,
                    "floor_s": floor_s,
                    "floor_sync_s": floor_sync_s,
                    "full_gc_s": collections.seconds,
                    "test_accuracy": summary.test_accuracy,
                }
            )
            print(
                f"pair {i + 1}: bare fit {bare_s:7.1f} s ({bare_epochs} epochs) | flow {flow_s:7.1f} s"
                f" ({train['epochs_run']} epochs, fit {train['train_seconds']:.1f} s) | ratio {flow_s / bare_s:.3f}"
                f" | outside fit {flow_s - train['train_seconds']:.1f} s"
                f" ({100 * (flow_s - train['train_seconds']) / train['train_seconds']:.1f} %)"
                f" | full garbage collections {collections.seconds:.2f} s",
                flush=True,
            )

        print()
        print(
            f"profile            : {params.base.profile} ({cfg.model}, {cfg.epochs} epochs, batch {cfg.batch_size},"
            f" {len(y_train)} train / {len(data.y_val)} val images; overrides: {args.overrides or 'none'})"
        )
        ratios = [p["flow_s"] / p["bare_s"] for p in pairs]
        print(
            f"flow / bare        : median {statistics.median(ratios):.3f} over {len(pairs)} pairs ({', '.join(f'{r:.3f}' for r in ratios)})"
        )
        # Per epoch: the flow's EarlyStopping may stop before the bare fit's fixed epoch count.
        fit_ratios = [(p["fit_s"] / p["flow_epochs"]) / (p["bare_s"] / p["bare_epochs"]) for p in pairs]
        print(
            f"fit in flow / bare : median {statistics.median(fit_ratios):.3f} per epoch"
            f" ({', '.join(f'{r:.3f}' for r in fit_ratios)}; model.fit inside the train task, with"
            " curvewatch's callbacks and MLflow logging beside it)"
        )
        per_epoch = [(p["flow_s"] / p["flow_epochs"]) / (p["bare_s"] / p["bare_epochs"]) for p in pairs]
        if any(p["flow_epochs"] != p["bare_epochs"] for p in pairs):
            print(
                f"per epoch          : median {statistics.median(per_epoch):.3f} (early stopping ran other epoch counts)"
            )

        print("\nseconds outside model.fit, per flow task (median over pairs; Prefect task-run times):")
        names = sorted(
            {n for p in pairs for n in p["tasks"]},
            key=lambda n: -statistics.median(p["tasks"].get(n, 0.0) for p in pairs),
        )
        outside_total = [p["flow_s"] - p["fit_s"] for p in pairs]
        outside = [_outside_fit(p["tasks"], p["fit_s"], p["flow_s"]) for p in pairs]
        for name in names:
            if name != "(flow total)":
                print(f"  {name:<14} {statistics.median(o.get(name, 0.0) for o in outside):7.2f} s")
        glue = statistics.median(o["(outside tasks)"] for o in outside)
        print(f"  {'(outside tasks)':<14} {glue:7.2f} s  (flow start, params, Prefect)")
        print(
            f"  of which Prefect's floor: an empty async flow run (as retrain) takes"
            f" {statistics.median(p['floor_s'] for p in pairs):.2f} s (flow-run creation and states);"
            f" a sync one {statistics.median(p['floor_sync_s'] for p in pairs):.2f} s (its engine waits"
            " for the heartbeat thread's next 1 s tick)"
        )
        collected = ", ".join(f"{p['full_gc_s']:.2f}" for p in pairs)
        print(f"  full garbage collections during each flow run (in fit or out): {collected} s")
        share = [(p["flow_s"] - p["fit_s"]) / p["fit_s"] for p in pairs]
        print(
            f"\nnon-training time  : median {statistics.median(outside_total):.1f} s around {statistics.median(p['fit_s'] for p in pairs):.1f} s"
            f" of model.fit = {100 * statistics.median(share):.1f} % (target <= 3 % in the quick profile)"
        )
        accuracies = ", ".join(f"{p['test_accuracy']:.4f}" for p in pairs)
        print(f"test accuracy      : {accuracies}")

        # The pairs above run in one warm process: from the second on, TensorFlow, MLflow and DVC
        # are imported and initialised. `make run` and a deployment's worker start a new process
        # for each flow run, which pays that too.
        fresh = _fresh_process_run(project.root, params.paths.train_metrics)
        flow_total = fresh["tasks"]["(flow total)"]
        outside = flow_total - fresh["fit_s"]
        per_task = _outside_fit(fresh["tasks"], fresh["fit_s"], flow_total)
        listed = ", ".join(
            f"{n} {v:.2f}" for n, v in sorted(per_task.items(), key=lambda kv: -kv[1]) if v >= 0.005
        )
        print(
            f"\nfresh process      : `curvewatch flow retrain --force` in a new process (as `make run`; a"
            f" deployment's worker also starts one per flow run): flow run {flow_total:.1f} s, model.fit"
            f" {fresh['fit_s']:.1f} s, outside fit {outside:.1f} s ({100 * outside / fresh['fit_s']:.1f} %;"
            f" the process {fresh['process_s']:.1f} s in all, with its start-up imports and exit)"
        )
        print(f"  outside fit, s   : {listed}")


if __name__ == "__main__":
    main()
