"""GPU check for issue 7: training and tuning run on a GPU under ``KERAS_BACKEND=jax`` with memory growth.

In one process, on Fashion-MNIST read and split by the pipeline's own fetch and prepare stages:

1. the project's :func:`pipelines.train.enable_memory_growth`, then ``jax.devices()``; exits with
   status 2 and a loud message when no GPU is seen (unless ``--allow-cpu``);
2. :func:`pipelines.train.train` on the ``train`` section of ``params.yaml`` (quick profile:
   ``small_cnn``, batch 128, mixed precision ``auto``), printing seconds per epoch (epoch 1
   includes XLA's compilation), ``val_accuracy`` per epoch and the test accuracy of the saved model;
3. :func:`pipelines.tune.tune`: a small Optuna study (``--trials``) in one process, trials one after
   another on the one GPU, SQLite storage under the work folder, the pruner ``tune.pruner`` names
   (``CurvePruner`` by default); prints each trial's state, value, epochs, device and wall-clock span;
4. GPU memory (``nvidia-smi`` per process and for the card, and JAX's ``Device.memory_stats()``)
   after training and after tuning, against a control process that lets JAX preallocate
   (``XLA_PYTHON_CLIENT_PREALLOCATE=true``, JAX's default: 75% of the card,
   https://docs.jax.dev/en/latest/gpu_memory_allocation.html).

Nothing here needs TensorFlow, MLflow or Prefect: the training path is backend-agnostic (Keras 3,
https://keras.io/getting_started/). Results are printed and, when ``--out`` or the environment
variable ``OUT`` names a folder, written to ``gpu_check.json`` there after every step (a run cut
short still leaves what it measured).

Run (GPU): ``KERAS_BACKEND=jax python benchmarks/gpu_check.py`` (``--source-dir`` where
``fetch.system_dir`` does not hold the IDX files); about 95 s on one H200.
Run (CPU side-by-side, small): ``KERAS_BACKEND=jax JAX_PLATFORMS=cpu python benchmarks/gpu_check.py
--allow-cpu --epochs 2 --trials 0``.

Measured 2026-11-26 on one NVIDIA H200 (jax 0.11.2, keras 3.15.1, no TensorFlow installed):
small_cnn, mixed precision on, 0.88 s per epoch after a 12.7 s first epoch, test accuracy 0.905
after 6 epochs; 4 trials complete one after another (best val_accuracy 0.915, test 0.904); this
process held 1,164 MiB of the card (JAX pool 518 MiB) against 107,918 MiB for the preallocating
control. On the 2 shared CPU cores here: 117 s per epoch for the same model (float32).
Re-run on one H200 at commit ea35bfe: 0.92 s per epoch after a 13.6 s first epoch, test accuracy
0.902; 3 trials complete and the 4th pruned at epoch 5 of 6 by its forecast (P = 0.042), best
trial val 0.916 / test 0.908; again 1,164 MiB held against 107,918 MiB preallocated.
Re-run on one H200 at commit 1a4f59d (session 30; keras, optuna, pydantic, sqlalchemy, alembic and
cronsim carried as wheels): 1.09 s per epoch after a 16.9 s first epoch, test accuracy 0.908; 4
trials complete one after another, none pruned, best trial val 0.912 / test 0.901; 1,164 MiB held
against 107,918 MiB preallocated; TensorFlow not imported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Keras picks its backend once, at import: the default here is the backend issue 7 asks to prove.
os.environ.setdefault("KERAS_BACKEND", "jax")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_CONTROL = """
import json, os, subprocess, jax, jax.numpy as jnp
jnp.ones(1).block_until_ready()
stats = jax.devices()[0].memory_stats() or {}
print(json.dumps({"jax_stats": {k: stats.get(k) for k in ("bytes_limit", "pool_bytes", "bytes_reserved")},
                  "pid": os.getpid()}))
"""


def _mib(n: Any) -> float | None:
    return None if n is None else round(float(n) / 2**20, 1)


def _number(text: str) -> float | None:
    """A number nvidia-smi printed, or None for ``[N/A]`` and the like (e.g. inside a VM)."""
    try:
        return float(text)
    except ValueError:
        return None


def gpu_memory(pid: int | None = None) -> dict[str, Any]:
    """GPU memory as ``nvidia-smi`` and JAX report it, in MiB.

    Args:
        pid: the process whose own use ``nvidia-smi --query-compute-apps`` is read for (default:
            this one); None entries where a tool does not answer.

    Returns:
        ``{"card_used_mib", "card_total_mib", "process_used_mib", "jax": {...}}``: the card's whole
        use, this process's use, and JAX's allocator statistics for the first GPU (``bytes_in_use``,
        ``peak_bytes_in_use``, ``pool_bytes``, ``peak_pool_bytes``, ``bytes_limit``, in MiB).
    """
    pid = os.getpid() if pid is None else pid
    out: dict[str, Any] = {"card_used_mib": None, "card_total_mib": None, "process_used_mib": None, "jax": {}}
    if shutil.which("nvidia-smi"):
        card = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            .stdout.split("\n")[0]
            .split(",")
        )
        if len(card) == 2:
            out["card_used_mib"], out["card_total_mib"] = _number(card[0]), _number(card[1])
        apps = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for line in apps.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0] == str(pid):
                out["process_used_mib"] = _number(parts[1])
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    stats = (gpus[0].memory_stats() or {}) if gpus else {}
    keys = ("bytes_in_use", "peak_bytes_in_use", "pool_bytes", "peak_pool_bytes", "bytes_limit")
    out["jax"] = {k.replace("bytes", "mib"): _mib(stats.get(k)) for k in keys if k in stats}
    return out


def preallocation_control() -> dict[str, Any]:
    """Memory of a separate process that lets JAX preallocate (its default), for comparison.

    Returns:
        ``{"process_used_mib", "jax": {"bytes_limit", "pool_bytes", ...} in MiB}``, or ``{"error": ...}``.
    """
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "true"}
    env.pop("JAX_PLATFORMS", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", _CONTROL + "\nimport sys; sys.stdout.flush(); sys.stdin.read()"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # the child holds its memory until its stdin closes
        if not line:
            return {"error": proc.stderr.read()[-2000:]}
        child = json.loads(line)
        mem = gpu_memory(child["pid"])
        return {
            "process_used_mib": mem["process_used_mib"],
            "card_used_mib": mem["card_used_mib"],
            "jax": {k: _mib(v) for k, v in child["jax_stats"].items()},
        }
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def load_fashion_mnist(source_dir: Path | None, work: Path) -> tuple[Any, Any, list[str]]:
    """Fashion-MNIST through the pipeline's own fetch and prepare stages, into ``work``.

    Returns:
        ``(TrainData, (x_test (10000, 28, 28, 1) uint8, y_test (10000,) int64), class_names)``.
    """
    from pipelines.config import load_params
    from pipelines.fetch import fetch
    from pipelines.prepare import load_split, prepare
    from pipelines.train import TrainData

    params = load_params(REPO / "params.yaml")
    fetch_cfg = params.fetch.model_copy(update={"source_dir": str(source_dir) if source_dir else None})
    fetch(fetch_cfg, params.base, work / "raw")
    result = prepare(params.prepare, params.base, work / "raw", work / "prepared")
    train, val, test = (load_split(work / "prepared", s) for s in ("train", "val", "test"))
    data = TrainData(train.x, train.y, val.x, val.y, num_classes=len(result.class_names))
    return data, (test.x, test.y), result.class_names


def _epoch_timer(label: str | None = None):
    """A Keras callback timing each epoch; prints ``label``, the epoch's seconds and val_accuracy
    as each epoch ends when ``label`` is given."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock seconds of each epoch (training and validation), in order."""

        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            if label is not None:
                val = (logs or {}).get("val_accuracy", float("nan"))
                print(
                    f"    {label} epoch {epoch + 1}: {self.seconds[-1]:.2f} s, val_accuracy {val:.4f}",
                    flush=True,
                )

    return EpochTimer()


class _Hooks:
    """:class:`pipelines.tune.TrialHooks` that records each trial's device, span and epoch times."""

    def __init__(self, t0: float) -> None:
        self.t0, self.spans, self.timers, self.devices = t0, {}, {}, {}

    def start(self, number: int, params: dict, cfg: Any) -> tuple[Any, ...]:
        from pipelines.train import detect_device

        self.devices[number] = detect_device()
        self.spans[number] = [time.perf_counter() - self.t0, None]
        self.timers[number] = _epoch_timer(f"trial {number}")
        print(f"  trial {number} starts: {params}", flush=True)
        return (self.timers[number],)

    def finish(self, record: Any) -> None:
        self.spans[record.number][1] = time.perf_counter() - self.t0
        value = "-" if record.value is None else f"{record.value:.4f}"
        print(
            f"  trial {record.number} {record.state} value {value} epochs {record.epochs_run}"
            + (f" ({record.pruned_because})" if record.pruned_because else ""),
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: params.yaml train.epochs)"
    )
    ap.add_argument(
        "--max-train-examples", type=int, default=None, help="cap on training images (default: all)"
    )
    ap.add_argument("--trials", type=int, default=4, help="tuning trials (0 skips tuning)")
    ap.add_argument(
        "--trial-epochs", type=int, default=None, help="epoch budget per trial (default: train.epochs)"
    )
    ap.add_argument(
        "--source-dir", type=Path, default=None, help="folder with the four Fashion-MNIST IDX .gz files"
    )
    ap.add_argument("--allow-cpu", action="store_true", help="run without a GPU (CPU side-by-side figures)")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    args = ap.parse_args(argv)

    report: dict[str, Any] = {"argv": sys.argv[1:], "keras_backend": os.environ["KERAS_BACKEND"]}

    def save() -> None:
        from pipelines.io_utils import atomic_write_text

        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            # Written whole each time (temporary file, rename): a run cut short keeps what it measured.
            atomic_write_text(args.out / "gpu_check.json", json.dumps(report, indent=1, default=str))

    # The project's enable_memory_growth must be what turns preallocation off: drop an inherited value.
    inherited = os.environ.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    t0 = time.perf_counter()
    import keras

    from pipelines.config import load_params
    from pipelines.train import detect_device, enable_memory_growth, save_model, train
    from pipelines.tune import score, tune

    enable_memory_growth()
    import jax

    devices = jax.devices()
    report["step1"] = {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "keras": keras.__version__,
        "keras_backend_active": keras.backend.backend(),
        "jax_devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind,
        "detect_device": detect_device(),
        "XLA_PYTHON_CLIENT_PREALLOCATE": {
            "inherited": inherited,
            "after_enable_memory_growth": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        },
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    print(
        f"[1] python {report['step1']['python']} jax {jax.__version__} keras {keras.__version__} "
        f"backend {keras.backend.backend()}",
        flush=True,
    )
    print(f"[1] jax.devices(): {devices}  ({devices[0].device_kind})", flush=True)
    print(
        f"[1] XLA_PYTHON_CLIENT_PREALLOCATE inherited={inherited!r} "
        f"after enable_memory_growth={os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE')!r}",
        flush=True,
    )
    save()
    if not any(d.platform == "gpu" for d in devices) and not args.allow_cpu:
        print("!!! NO GPU SEEN BY JAX: jax.devices() lists no 'gpu' platform. FAILING. !!!", file=sys.stderr)
        return 2
    report["memory_at_start"] = gpu_memory()
    print(f"[1] memory at start: {report['memory_at_start']}", flush=True)

    params = load_params(REPO / "params.yaml")
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    t = time.perf_counter()
    data, test, _ = load_fashion_mnist(args.source_dir, work)
    report["data"] = {
        "train": len(data.y_train),
        "val": len(data.y_val),
        "test": len(test[1]),
        "seconds": round(time.perf_counter() - t, 1),
    }
    print(f"[2] Fashion-MNIST via fetch+prepare: {report['data']}", flush=True)

    update: dict[str, Any] = {}
    if args.epochs is not None:
        update["epochs"] = args.epochs
    if args.max_train_examples is not None:
        update["max_train_examples"] = args.max_train_examples
    cfg = params.train.model_copy(update=update)
    timer = _epoch_timer()
    result = train(
        cfg, data, seed=params.base.seed, backup_dir=work / "backup", callbacks=(timer,), verbose=0
    )
    model_path = save_model(result.model, work / "model.keras")
    result.model = None  # the model lives on disk from here on
    test_acc = score(model_path, *test)
    steady = sorted(timer.seconds[1:])
    report["step2"] = {
        "config": cfg.model_dump(mode="json"),
        "device": result.device,
        "backend": result.backend,
        "mixed_precision": result.mixed_precision,
        "epochs_run": result.epochs_run,
        "seconds_per_epoch": [round(s, 2) for s in timer.seconds],
        "median_seconds_per_epoch_after_first": round(steady[len(steady) // 2], 2) if steady else None,
        "train_examples": cfg.max_train_examples or len(data.y_train),
        "val_accuracy": [round(v, 4) for v in result.history["val_accuracy"]],
        "best_epoch": result.best_epoch,
        "test_accuracy": round(test_acc, 4),
        "memory_after_train": gpu_memory(),
    }
    s2 = report["step2"]
    print(
        f"[2] train {cfg.model} on {result.device} (backend {result.backend}, mixed precision "
        f"{result.mixed_precision}): {result.epochs_run} epochs",
        flush=True,
    )
    print(
        f"[2] seconds per epoch {s2['seconds_per_epoch']} (median after the first: "
        f"{s2['median_seconds_per_epoch_after_first']})",
        flush=True,
    )
    print(f"[2] val_accuracy {s2['val_accuracy']}; test accuracy {test_acc:.4f}", flush=True)
    print(f"[2] memory after training: {s2['memory_after_train']}", flush=True)
    save()

    if args.trials > 0:
        overrides = [f"tune.n_trials={args.trials}", "tune.workers=1"]
        if args.trial_epochs is not None:
            overrides.append(f"train.epochs={args.trial_epochs}")
        if args.max_train_examples is not None:
            overrides.append(f"train.max_train_examples={args.max_train_examples}")
        tparams = load_params(REPO / "params.yaml", overrides=overrides)
        storage = f"sqlite:///{work / 'optuna.db'}"
        hooks = _Hooks(time.perf_counter())
        print(
            f"[3] tuning: {args.trials} trials x {tparams.train.epochs} epochs, pruner {tparams.tune.pruner}, "
            f"{storage}",
            flush=True,
        )
        t = time.perf_counter()
        tuned = tune(tparams, data, test=test, storage=storage, trial_dir=work / "trials", hooks=hooks)
        spans = [hooks.spans[r.number] for r in tuned.trials]
        report["step3"] = {
            "pruner": tparams.tune.pruner,
            "storage": storage,
            "seconds": round(time.perf_counter() - t, 1),
            "sequential": all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)),
            "trials": [
                {
                    "number": r.number,
                    "state": r.state,
                    "value": r.value,
                    "epochs_run": r.epochs_run,
                    "pruned_because": r.pruned_because,
                    "params": r.params,
                    "device": hooks.devices[r.number],
                    "span_s": [round(x, 1) for x in hooks.spans[r.number]],
                    "seconds_per_epoch": [round(s, 2) for s in hooks.timers[r.number].seconds],
                }
                for r in tuned.trials
            ],
            "best_number": tuned.best_number,
            "best_val_accuracy": tuned.best_val_accuracy,
            "test_accuracy": tuned.test_accuracy,
            "epochs_spent": tuned.epochs_spent,
            "epochs_without_pruning": tuned.epochs_without_pruning,
            "memory_after_tune": gpu_memory(),
        }
        s3 = report["step3"]
        for trial in s3["trials"]:
            print(
                f"[3] trial {trial['number']}: {trial['state']} value {trial['value']} epochs "
                f"{trial['epochs_run']} on {trial['device']} span {trial['span_s']} s",
                flush=True,
            )
        print(
            f"[3] best trial {tuned.best_number}: val {tuned.best_val_accuracy:.4f} test {tuned.test_accuracy}; "
            f"epochs {tuned.epochs_spent}/{tuned.epochs_without_pruning}; sequential {s3['sequential']}",
            flush=True,
        )
        print(f"[3] memory after tuning: {s3['memory_after_tune']}", flush=True)
        save()

    if any(d.platform == "gpu" for d in devices):
        report["step4_preallocating_control"] = preallocation_control()
        mine = (
            report["step3"]["memory_after_tune"]
            if "step3" in report
            else report["step2"]["memory_after_train"]
        )
        print(
            f"[4] this process (memory growth): {mine['process_used_mib']} MiB of "
            f"{mine['card_total_mib']} MiB; JAX pool {mine['jax'].get('pool_mib')} MiB, peak in use "
            f"{mine['jax'].get('peak_mib_in_use')} MiB",
            flush=True,
        )
        print(
            f"[4] control process (XLA_PYTHON_CLIENT_PREALLOCATE=true): "
            f"{report['step4_preallocating_control']}",
            flush=True,
        )
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(
        f"[done] {report['total_seconds']} s; tensorflow imported: {report['tensorflow_imported']}",
        flush=True,
    )
    save()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
