"""Train the corpus runs and write their Keras CSVLogger files, then label them with the rubric.

Every run is a real ``model.fit`` on offline data (:mod:`benchmarks.corpus.data`), logged by
:class:`keras.callbacks.CSVLogger` (0-based ``epoch``; columns
``epoch,accuracy,learning_rate,loss,val_accuracy,val_loss``), with the fixture generator's
learning-rate logger (``benchmarks.curve_fixtures.generate``) filling ``learning_rate``. One
TensorFlow thread, op determinism and ``keras.utils.set_random_seed`` make a run reproducible on
one machine, as in the fixture generator.

The design of each run goes to ``runs.json`` (merged, so batches and ``--only`` add to it); the
labels in ``labels.json`` are then derived by :mod:`benchmarks.corpus.rubric` from the design
and the curve.

Usage (from the repository root)::

    nice -n 10 python -m benchmarks.corpus.generate --out tests/fixtures/corpus [--generation 1]
    python -m benchmarks.corpus.generate --out tests/fixtures/corpus --only moons-healthy
    python -m benchmarks.corpus.generate --out tests/fixtures/corpus --relabel   # no training
    python -m benchmarks.corpus.generate --out tests/fixtures/corpus --table
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.corpus.data import VIEWS, load_view
from benchmarks.corpus.variants import Variant, all_variants
from pipelines.io_utils import atomic_write_text

RUNS_FILE = "runs.json"


def _setup_tf(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    # Same seed, same curve: CPU kernels may otherwise reduce in a thread-dependent order.
    tf.config.experimental.enable_op_determinism()


def design_record(variant: Variant, seed: int) -> dict[str, Any]:
    """The design facts of one run, as stored in ``runs.json`` (loads the view to count it).

    Returns:
        A JSON-ready dict: data view, family, split, sizes, class prior (shares of the training
        labels, index = class), model, optimiser, schedule, budget, and the intended findings.
    """
    x_tr, y_tr, x_va, y_va = load_view(variant.view)
    classes = int(max(y_tr.max(), y_va.max()) + 1)
    prior = np.bincount(y_tr, minlength=classes) / len(y_tr)
    val_prior = np.bincount(y_va, minlength=classes) / len(y_va)
    view = VIEWS[variant.view]
    record = asdict(variant)
    record.pop("seeds")
    record["model_kwargs"] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in variant.model_kwargs.items()
    }
    record["intended"] = list(variant.intended)
    record.update(
        seed=seed,
        dataset=view.family,
        split=view.split,
        view_note=view.note,
        num_classes=classes,
        class_prior=[round(float(p), 4) for p in prior],
        val_class_prior=[round(float(p), 4) for p in val_prior],
        n_train=int(len(x_tr)),
        n_val=int(len(x_va)),
    )
    return record


def run_one(variant: Variant, seed: int, out_dir: Path) -> dict[str, Any]:
    """Train one run and write ``<name>-s<seed>.csv``.

    A killed run trains ``kill_at`` epochs of a schedule built for the full budget; an
    early-stopped run ends when :class:`keras.callbacks.EarlyStopping` says so.

    Returns:
        ``design_record`` plus ``file``, ``rows`` (epochs logged), ``seconds`` (wall) and
        ``cpu_seconds`` (this process).
    """
    import keras

    from benchmarks.corpus.models import MODELS, make_optimizer, schedule_callbacks
    from benchmarks.curve_fixtures.generate import _lr_logger
    from pipelines.train import release_traced_gradients

    x_tr, y_tr, x_va, y_va = load_view(variant.view)
    classes = int(max(y_tr.max(), y_va.max()) + 1)
    t0, c0 = time.perf_counter(), time.process_time()
    keras.utils.set_random_seed(seed)
    model = MODELS[variant.model](x_tr.shape[1:], classes, **variant.model_kwargs)
    steps = int(np.ceil(len(x_tr) / variant.batch_size))
    model.compile(
        optimizer=make_optimizer(
            variant.optimizer, variant.learning_rate, variant.schedule, variant.epochs, steps
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    path = out_dir / f"{variant.name}-s{seed}.csv"
    # The LR logger goes first: it records the rate used during the epoch, before
    # ReduceLROnPlateau lowers it at the epoch's end; CSVLogger goes last to write the filled logs.
    callbacks = [_lr_logger(), *schedule_callbacks(variant.schedule, variant.learning_rate)]
    if variant.early_stop_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=variant.early_stop_patience, restore_best_weights=True
            )
        )
    callbacks.append(keras.callbacks.CSVLogger(str(path)))
    with release_traced_gradients():  # hundreds of models in one process: no graph outlives its model
        model.fit(
            x_tr,
            y_tr,
            validation_data=(x_va, y_va),
            epochs=variant.kill_at or variant.epochs,
            batch_size=variant.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    record = design_record(variant, seed)
    rows = sum(1 for _ in path.open()) - 1
    record.update(
        file=path.name,
        rows=rows,
        seconds=round(time.perf_counter() - t0, 2),
        cpu_seconds=round(time.process_time() - c0, 2),
    )
    return record


def _claim(out_dir: Path, file_name: str) -> bool:
    """Reserve a run for this process (several generator processes may share one folder).

    Returns:
        False when the run is already in ``runs.json`` or another process claimed it.
    """
    runs_path = out_dir / RUNS_FILE
    if runs_path.exists() and file_name in json.loads(runs_path.read_text()):
        return False
    claims = out_dir / ".claims"
    claims.mkdir(exist_ok=True)
    try:
        os.close(os.open(claims / file_name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _worker(
    jobs: list[tuple[Variant, int]], out_dir: Path, threads: int, log: bool = True
) -> list[dict[str, Any]]:
    _setup_tf(threads)
    from benchmarks.curve_fixtures.generate import summarize

    done = []
    for variant, seed in jobs:
        if not _claim(out_dir, f"{variant.name}-s{seed}.csv"):
            continue
        record = run_one(variant, seed, out_dir)
        _merge_runs(out_dir, [record])
        done.append(record)
        if log:
            print(f"{summarize(out_dir / record['file'])} {record['cpu_seconds']:.1f}cpu-s", flush=True)
    return done


def _merge_runs(out_dir: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Add records to ``runs.json`` under an exclusive lock (workers merge after every run)."""
    import fcntl

    path = out_dir / RUNS_FILE
    with (out_dir / ".runs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for record in records:
            runs[record["file"]] = record
        atomic_write_text(path, json.dumps(dict(sorted(runs.items())), indent=1) + "\n")
    return runs


def select(only: str = "", generation: int | None = None) -> list[tuple[Variant, int]]:
    """The (variant, seed) pairs to train: names containing ``only``, of one generation if given.

    Generation 1 comes first; within a generation the families take turns, so that any prefix of
    the queue (a batch stopped early) covers every family and so both splits.
    """
    jobs = [
        (v, seed)
        for v in all_variants()
        if only in v.name and (generation is None or v.generation == generation)
        for seed in v.seeds
    ]
    ordered: list[tuple[Variant, int]] = []
    for gen in sorted({v.generation for v, _ in jobs}):
        by_family: dict[str, list[tuple[Variant, int]]] = {}
        for v, seed in jobs:
            if v.generation == gen:
                by_family.setdefault(VIEWS[v.view].family, []).append((v, seed))
        queues = list(by_family.values())
        while any(queues):
            for queue in queues:
                if queue:
                    ordered.append(queue.pop(0))
    return ordered


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the CSVs, runs.json and labels.json"
    )
    parser.add_argument("--only", default="", help="train only variants whose name contains this text")
    parser.add_argument(
        "--generation", type=int, choices=tuple(range(1, 10)), help="train only this batch of variants"
    )
    parser.add_argument("--workers", type=int, default=1, help="training processes (each one TF thread)")
    parser.add_argument(
        "--threads", type=int, default=1, help="TensorFlow intra/inter-op threads per process"
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="take the queue from its end (a second process on the same folder)",
    )
    parser.add_argument(
        "--relabel", action="store_true", help="only rewrite labels.json from runs.json + CSVs"
    )
    parser.add_argument("--table", action="store_true", help="print counts per split x finding and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the selected runs, merge their designs into runs.json, relabel; returns the exit code."""
    args = parse_args(argv)
    if args.table:
        from benchmarks.corpus import rubric

        print(rubric.table(args.out))
        return 0
    if not args.relabel:
        args.out.mkdir(parents=True, exist_ok=True)
        # Runs already in runs.json, or claimed by another process, are skipped (see _claim);
        # delete the folder's .claims/ after a stopped batch to retrain what it had claimed.
        jobs = select(args.only, args.generation)
        if args.reverse:
            jobs.reverse()
        start = time.perf_counter()
        # Round-robin so that each worker gets a mix of cheap and costly runs; each worker
        # writes runs.json after every run so a stopped batch keeps what it finished.
        chunks = [jobs[i :: args.workers] for i in range(args.workers)]
        records: list[dict[str, Any]] = []
        if args.workers == 1:
            _setup_tf(args.threads)
            from benchmarks.curve_fixtures.generate import summarize

            for variant, seed in jobs:
                if not _claim(args.out, f"{variant.name}-s{seed}.csv"):
                    continue
                record = run_one(variant, seed, args.out)
                _merge_runs(args.out, [record])
                records.append(record)
                print(f"{summarize(args.out / record['file'])} {record['cpu_seconds']:.1f}cpu-s", flush=True)
        else:
            with ProcessPoolExecutor(args.workers) as pool:
                for chunk_records in pool.map(
                    _worker, chunks, [args.out] * len(chunks), [args.threads] * len(chunks)
                ):
                    records += chunk_records
        cpu = sum(r["cpu_seconds"] for r in records)
        print(
            f"trained {len(records)} runs in {time.perf_counter() - start:.0f}s wall, {cpu / 60:.1f} CPU-minutes"
        )
    from benchmarks.corpus import rubric  # imported late: a long batch picks up rubric edits

    labels = rubric.relabel(args.out)
    print(f"{len(labels)} runs labelled in {args.out / 'labels.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
