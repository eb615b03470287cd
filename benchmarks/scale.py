"""Benchmark: diagnose and compare 1,000 runs of 100 epochs from an MLflow store.

Side by side in one process, on the same store:
- naive: one ``MlflowClient.get_run`` and one ``get_metric_history`` call per run and metric, then
  the same diagnosis and comparison as below;
- curvewatch: ``search_training_runs`` (pages of 1,000) and ``fetch_curves`` (SQLite: one bulk
  query per 500 runs; server: MLflow's bulk metric-history endpoint, one request per metric per
  100 runs, 8 in flight), then the same diagnosis and the cross-run comparison against a champion.
Prints both times and their ratio (target: curvewatch <= 0.2 x naive).

Modes:
- default: an MLflow SQLite store in a temporary directory;
- ``--server``: over HTTP, on a PostgreSQL-backed ``mlflow server`` started with the project's own
  scripts (``infra/mlflow-server.sh``) in a temporary state folder and stopped at the end; or
  ``--server http://host:port`` for a server already running (the runs go to a new experiment).

Run: ``uv run python benchmarks/scale.py [--runs 1000] [--epochs 100] [--server [URL]]``.
Populating the store is not timed (a minute or two for SQLite, a few minutes over HTTP).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def populate(mc, experiment_id: str, runs: int, epochs: int, seed: int = 0, threads: int = 1) -> None:
    """Log ``runs`` synthetic training runs: saturating curves with noise, some stalled early
    (``threads`` > 1 logs runs concurrently, for a server)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.entities import Metric, Param, RunTag

    from pipelines.tracking import RUN_KIND_TAG

    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    draws = [
        (
            rng.uniform(0.85, 0.93),
            rng.uniform(0.05, 0.3),
            rng.normal(0, 0.003, epochs),
            int(rng.integers(5, 15)),
            rng.normal(0, 0.003, epochs),
        )
        for _ in range(runs)
    ]

    def one(i: int) -> None:
        ceiling, rate, noise, onset, plateau_noise = draws[i]
        val_acc = ceiling - (ceiling - 0.1) * np.exp(-rate * e) + noise
        if i % 5 == 0:  # every fifth run stalls on a low plateau
            val_acc[onset:] = val_acc[onset] + plateau_noise[: epochs - onset]
        acc = val_acc + 0.02
        values = {
            "val_accuracy": val_acc,
            "accuracy": acc,
            "val_loss": 2.3 * (1 - val_acc),
            "loss": 2.3 * (1 - acc),
            "learning_rate": np.full(epochs, 1e-3),
        }
        run = mc.create_run(experiment_id, tags={RUN_KIND_TAG: "train"})
        rid = run.info.run_id
        now = 1_700_000_000_000
        batch = [Metric(k, float(v[j]), now + j, int(e[j])) for k, v in values.items() for j in range(epochs)]
        for start in range(0, len(batch), 1000):
            mc.log_batch(rid, metrics=batch[start : start + 1000])
        mc.log_batch(
            rid,
            params=[Param("train.epochs", str(epochs)), Param("data.num_classes", "10")],
            tags=[RunTag("curvewatch.completed", "true")],
        )
        mc.set_terminated(rid)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(runs)))


def measure(mc, exp: str, args, label: str) -> None:
    """Time the naive per-run loop and curvewatch's bulk path on the same store; print both."""
    from pipelines import tracking
    from pipelines.curves.compare import compare_curves
    from pipelines.curves.diagnose import diagnose

    # naive: what a user writes with the public per-run API
    start = time.perf_counter()
    ids = [r.info.run_id for r in mc.search_runs([exp], max_results=args.runs)]
    naive = []
    for rid in ids:
        run = mc.get_run(rid)
        series = {k: {m.step: m.value for m in mc.get_metric_history(rid, k)} for k in METRICS}
        naive.append(tracking._curve_from_series(run, series))
    naive_fetch_s = time.perf_counter() - start
    naive_verdicts = [diagnose(c).verdict for c in naive]
    for c in naive[1:]:
        compare_curves(c, naive[0], [])
    naive_s = time.perf_counter() - start

    start = time.perf_counter()
    runs = tracking.search_training_runs(mc, [exp])
    fetch_start = time.perf_counter()
    curves = tracking.fetch_curves(mc, runs)
    fetch_s = time.perf_counter() - fetch_start
    diag_start = time.perf_counter()
    verdicts = [diagnose(c).verdict for c in curves]
    diag_s = time.perf_counter() - diag_start
    cmp_start = time.perf_counter()
    champion = curves[0]
    for c in curves[1:]:
        compare_curves(c, champion, [])
    cmp_s = time.perf_counter() - cmp_start
    ours_s = time.perf_counter() - start

    by_id = dict(zip(ids, naive_verdicts, strict=True))
    agree = sum(by_id[c.run] == v for c, v in zip(curves, verdicts, strict=True))
    flagged = sum(v != "healthy" for v in verdicts)
    print(f"store              : {label}")
    print(
        f"naive per-run loop : {naive_s:8.2f} s  (get_run + get_metric_history x {len(METRICS)} per run:"
        f" {naive_fetch_s:.2f} s, then the same diagnose and compare)"
    )
    print(
        f"curvewatch bulk    : {ours_s:8.2f} s  (search {fetch_start - start:.2f} s, fetch {fetch_s:.2f} s,"
        f" diagnose {diag_s:.2f} s, compare with a champion {cmp_s:.2f} s)"
    )
    print(f"ratio bulk / naive : {ours_s / naive_s:8.3f}   (target <= 0.2)")
    print(
        f"fetch only         : {fetch_s + fetch_start - start:.2f} s vs {naive_fetch_s:.2f} s "
        f"(ratio {(fetch_s + fetch_start - start) / naive_fetch_s:.3f})"
    )
    print(
        f"verdicts agree     : {agree}/{len(curves)}; flagged {flagged} (every fifth run was built to stall)"
    )


@contextlib.contextmanager
def project_server():
    """A PostgreSQL-backed MLflow server from infra/mlflow-server.sh in a temporary state folder
    (under /tmp, reachable by the ``postgres`` user), stopped and removed at the end."""
    state = Path(tempfile.mkdtemp(prefix="curvewatch-scale-services-", dir="/tmp"))
    state.chmod(0o711)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CURVEWATCH_"))}
    env.update(
        CURVEWATCH_SERVICES_DIR=str(state),
        CURVEWATCH_POSTGRES_PORT="0",
        CURVEWATCH_MLFLOW_PORT="0",
        VENV=str(Path(sys.executable).parent.parent),
    )

    def infra(script: str, *cmd: str) -> str:
        proc = subprocess.run(
            ["bash", str(REPO / "infra" / script), *cmd], env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise SystemExit(f"infra/{script} {' '.join(cmd)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    try:
        t0 = time.perf_counter()
        infra("mlflow-server.sh", "start")
        url = infra("mlflow-server.sh", "url")
        print(f"started PostgreSQL and mlflow server at {url} in {time.perf_counter() - t0:.0f} s")
        yield url
    finally:
        subprocess.run(
            ["bash", str(REPO / "infra" / "mlflow-server.sh"), "stop"], env=env, capture_output=True
        )
        subprocess.run(["bash", str(REPO / "infra" / "postgres.sh"), "stop"], env=env, capture_output=True)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--server",
        nargs="?",
        const="start",
        default=None,
        help="measure over HTTP: a tracking server URL, or no value to start the project's own",
    )
    args = parser.parse_args()

    from mlflow import MlflowClient

    from pipelines import tracking

    if args.server is None:
        with tempfile.TemporaryDirectory(prefix="curvewatch-scale-") as tmp:
            uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
            mc = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp = mc.create_experiment("scale", artifact_location=(Path(tmp) / "a").as_uri())
            t0 = time.perf_counter()
            populate(mc, exp, args.runs, args.epochs)
            print(
                f"populated {args.runs} runs x {args.epochs} epochs x {len(METRICS)} metrics "
                f"in {time.perf_counter() - t0:.0f} s"
            )
            measure(mc, exp, args, "MLflow SQLite store (embedded)")
        return

    with contextlib.ExitStack() as stack:
        url = args.server if args.server != "start" else stack.enter_context(project_server())
        mc = tracking.client(url)
        exp = mc.create_experiment(f"scale-{int(time.time())}")
        t0 = time.perf_counter()
        populate(mc, exp, args.runs, args.epochs, threads=8)
        print(
            f"populated {args.runs} runs x {args.epochs} epochs x {len(METRICS)} metrics over HTTP "
            f"in {time.perf_counter() - t0:.0f} s"
        )
        measure(mc, exp, args, f"mlflow server {url} (PostgreSQL backend), over HTTP")


if __name__ == "__main__":
    main()
