"""Benchmark: the ``retrain`` flow against a bare Keras ``fit`` of the same model, data and epochs.

Both are measured side by side in one process, after the data has been fetched and prepared once
(untimed), so the ratio reflects what orchestration, validation, tracking, evaluation and the curve
diagnosis add around training. Target for the quick profile: ratio <= 1.10.

Run: ``make bench`` or ``uv run python benchmarks/overhead.py [--profile quick] [-S train.epochs=2]``.
Outputs go to a temporary directory with its own MLflow store; the Prefect server is the local one
(``infra/prefect-server.sh``), started if needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params.yaml"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("-S", "--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()

    from pipelines.cli import ensure_prefect_server

    ensure_prefect_server()
    with tempfile.TemporaryDirectory(prefix="curvewatch-bench-") as tmp:
        tmp_path = Path(tmp)
        raw = yaml.safe_load(Path(args.params).read_text())
        raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
        raw["paths"]["expectations_dir"] = str(REPO / "expectations")  # an input, not an output
        params_path = tmp_path / "params.yaml"
        params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
        os.environ["MLFLOW_ARTIFACT_ROOT"] = (tmp_path / "mlartifacts").as_uri()

        import keras

        from flows.retrain import retrain
        from pipelines import steps
        from pipelines.config import load_params
        from pipelines.models import build_model

        params = load_params(params_path, profile=args.profile, overrides=args.overrides)
        steps.run_fetch(params)  # untimed set-up: both sides train on the same prepared arrays
        steps.run_prepare(params)
        data, _ = steps.load_train_data(params)
        cfg = params.train

        # Warm-up outside the clock: the first fit in a process pays one-time backend start-up
        # (thread pools, kernel selection) that would otherwise be charged to whichever side ran first.
        warm = build_model(cfg, data.x_train.shape[1:], data.num_classes)
        warm.fit(data.x_train[:512], data.y_train[:512], batch_size=cfg.batch_size, epochs=1, verbose=0)
        del warm

        keras.utils.set_random_seed(params.base.seed)
        model = build_model(cfg, data.x_train.shape[1:], data.num_classes)
        start = time.perf_counter()
        history = model.fit(
            data.x_train,
            data.y_train,
            validation_data=(data.x_val, data.y_val),
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            verbose=0,
        )
        bare_s = time.perf_counter() - start
        bare_epochs = len(history.history["loss"])
        del model

        start = time.perf_counter()
        summary = retrain(params_path=str(params_path), profile=args.profile, overrides=args.overrides)
        flow_s = time.perf_counter() - start
        train_json = Path(params.paths.metrics_dir) / "train.json"
        flow_epochs = json.loads(train_json.read_text())["train"]["epochs_run"]
        print()
        print(
            f"profile            : {params.base.profile} ({cfg.model}, {cfg.epochs} epochs, batch {cfg.batch_size},"
            f" {len(data.y_train)} train / {len(data.y_val)} val images)"
        )
        print(
            f"bare keras fit     : {bare_s:8.1f} s  ({bare_epochs} epochs, {bare_s / bare_epochs:.1f} s/epoch)"
        )
        print(
            f"retrain flow       : {flow_s:8.1f} s  ({flow_epochs} epochs; fetch, prepare, validate, train,"
            f" evaluate, compare, MLflow, Prefect)"
        )
        print(f"ratio flow / bare  : {flow_s / bare_s:8.3f}   (target <= 1.10 for the quick profile)")
        if flow_epochs != bare_epochs:
            per_epoch = (flow_s / flow_epochs) / (bare_s / bare_epochs)
            print(
                f"ratio per epoch    : {per_epoch:8.3f}   (early stopping ran a different number of epochs)"
            )
        print(f"test accuracy      : {summary.test_accuracy:.4f}")


if __name__ == "__main__":
    main()
