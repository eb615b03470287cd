"""The tracking server restarted during a real training: per-epoch metrics are buffered, nothing lost.

The train stage (``steps.run_train``: a small MLP on 3 classes of scikit-learn's digits) logs to the
session's PostgreSQL-backed ``mlflow server`` (``infra/mlflow-server.sh``, tests/services/plugin.py).
After the second epoch, ``infra/mlflow-server.sh stop`` takes the server away for 60 s, then
``start`` brings it back on the same port and database. Epochs are paced so that several of them
end while it is away. MLflow's HTTP client settings are left at their defaults, as a user has them.
"""

from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from pipelines import steps, tracking
from pipelines.config import load_params

OUTAGE_S = 60.0
EPOCHS = 14
PACE_S = 6.0  # seconds added to each epoch, so that about 10 epochs end while the server is away


@pytest.fixture
def digits_params(params_file, tmp_path, mlflow_server, monkeypatch):
    """Params for a tiny MLP run on 3 digit classes, tracked on the session's MLflow server."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "images"
    for label, name in enumerate(["zero", "one", "two"]):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(digits.images[digits.target == label][:90]):
            Image.fromarray((img * 15.9375).astype(np.uint8), mode="L").save(root / name / f"{i:03d}.png")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    path = params_file(
        {
            "base": {"dataset": "folder"},
            "fetch": {"image_folder": str(root), "image_size": [8, 8]},
            "prepare": {"val_size": 0.25, "test_size": 0.3},
            "validate": {
                "class_share_min_ratio": 0.6,
                "class_share_max_ratio": 1.5,
                "max_intensity_kl": 1.0,
                "max_label_kl": 0.05,
                "max_leakage_fraction": 0.05,
            },
            # No early stop: every epoch runs, so every epoch's values must reach the server.
            "train": {"model": "mlp", "epochs": EPOCHS, "batch_size": 32, "early_stopping_patience": 100},
            "tracking": {"experiment": "server-restart-test", "registered_model": "server-restart-model"},
        }
    )
    params = load_params(path)
    steps.run_fetch(params)
    steps.run_prepare(params)
    steps.run_validate(params)
    return params


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_server_stopped_60s_mid_training_loses_no_epoch(digits_params, mlflow_server):
    import keras

    url, services = mlflow_server.url, mlflow_server.services
    outage: dict[str, float | bool] = {}
    epoch_ends: list[float] = []

    def take_server_away() -> None:
        services.run("mlflow-server.sh", "stop")
        outage["down"] = time.monotonic()
        outage["refused"] = not _answers(url)
        time.sleep(OUTAGE_S)
        outage["restarting"] = time.monotonic()
        services.run("mlflow-server.sh", "start")
        outage["up"] = time.monotonic()

    outage_thread = threading.Thread(target=take_server_away, daemon=True)

    class Outage(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epoch_ends.append(time.monotonic())
            if epoch + 1 == 2:
                outage_thread.start()
            time.sleep(PACE_S)

        def on_train_end(self, logs=None):
            outage["flushed"] = time.monotonic()  # after the epoch logger's on_train_end drained it

    try:
        outcome = steps.run_train(digits_params, extra_callbacks=(Outage(),))
    finally:
        if outage_thread.is_alive() or "up" not in outage:
            outage_thread.join(timeout=OUTAGE_S + 400)
        if not _answers(url):
            services.run("mlflow-server.sh", "start")  # leave the session's server up for the others

    # The stop fell mid-run: the server refused requests, and epochs ended before and during it.
    assert outage["refused"], "the server still answered after infra/mlflow-server.sh stop"
    assert services.run("mlflow-server.sh", "url").stdout.strip() == url  # same port, same store
    during = [t for t in epoch_ends if outage["down"] <= t < outage["up"]]
    assert len(during) >= 5 and epoch_ends[0] < outage["down"], (len(during), len(epoch_ends))
    assert outcome.completed and outcome.epochs_run == EPOCHS

    mc = tracking.client(url)
    run = mc.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    epochs = list(range(1, EPOCHS + 1))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        history = sorted(mc.get_metric_history(outcome.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == epochs, key  # each epoch once, none missing
        assert [m.value for m in history] == pytest.approx(outcome.history[key], rel=1e-6), key
    # A training run's metrics are its curves and the data-validation statistics; its summary
    # numbers are tags (tracking.log_summary), so the Model metrics tab opens on the curves.
    others = set(run.data.metrics) - set(tracking.HEADLINE_METRICS)
    assert others and all(k.startswith("validation.") for k in others), sorted(others)
    assert run.data.tags["curvewatch.train.epochs_run"] == str(EPOCHS)
    # What the buffer held went out soon after the server was back (and training over), not
    # minutes later in MLflow's own retries: the epoch logger retries at most 10 s apart
    # (tracking.epoch_logger's max_backoff_s); 20 s leaves room for the send itself and for the
    # restart script returning after the server already answered.
    lag = outage["flushed"] - max(outage["up"], epoch_ends[-1])
    assert lag < 20, lag
    print(
        f"\noutage: {outage['up'] - outage['down']:.0f} s away ({OUTAGE_S:.0f} s stopped, "
        f"{outage['up'] - outage['restarting']:.0f} s restart), {len(during)} of {EPOCHS} epochs ended "
        f"meanwhile, all sent {max(lag, 0):.1f} s after the server was back"
    )
