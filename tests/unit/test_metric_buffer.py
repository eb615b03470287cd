"""Per-epoch metrics survive a tracking server that goes away: buffered, re-sent, nothing lost."""

from __future__ import annotations

import time

import pytest
from mlflow.entities import Metric

from pipelines import tracking
from tests.mlflow_process import MlflowServer


def _epoch(step: int) -> list[Metric]:
    return [
        Metric("val_accuracy", 0.5 + step / 100, 1_000 + step, step),
        Metric("loss", 1.0 / step, 1_000 + step, step),
    ]


def test_buffer_retries_until_the_server_takes_everything_in_order():
    received: list[Metric] = []
    failures = iter([True, True, True, False] + [False] * 100)

    def send(batch):
        if next(failures):
            raise ConnectionError("connection refused")
        received.extend(batch)

    buf = tracking.MetricBuffer(send, target="http://x run r", first_backoff_s=0.01, max_backoff_s=0.02)
    for step in range(1, 6):
        buf.put(_epoch(step))
    buf.close(timeout_s=10)
    assert [(m.key, m.step) for m in received] == [(m.key, m.step) for s in range(1, 6) for m in _epoch(s)]
    assert buf.pending == 0 and isinstance(buf.last_error, ConnectionError)


def test_buffer_sends_at_most_1000_values_per_request():
    sizes = []
    buf = tracking.MetricBuffer(lambda b: sizes.append(len(b)), target="t", first_backoff_s=0.01)
    buf.put([Metric("m", 0.0, 0, i) for i in range(2500)])
    buf.close(timeout_s=10)
    assert sum(sizes) == 2500 and max(sizes) <= 1000


def test_buffer_says_what_it_could_not_send():
    def down(batch):
        raise ConnectionError("connection refused")

    buf = tracking.MetricBuffer(
        down, target="http://127.0.0.1:9 run abc", first_backoff_s=0.01, max_backoff_s=0.01
    )
    buf.put(_epoch(1))
    with pytest.raises(
        tracking.TrackingUnavailable, match=r"http://127.0.0.1:9 run abc: 2 per-epoch metric values"
    ):
        buf.close(timeout_s=0.5)


def test_metrics_logged_while_a_real_server_restarts_all_arrive(tmp_path):
    # MLflow's HTTP client settings as a user has them: the sender makes one attempt per call
    # (tracking.metric_sender) and the buffer does the waiting.
    server = MlflowServer(tmp_path / "server")
    url = server.start()
    try:
        mc = tracking.client(url)
        run_id = mc.create_run(mc.create_experiment("restart")).info.run_id
        buf = tracking.MetricBuffer(
            tracking.metric_sender(mc, run_id), target=f"{url} run {run_id}", max_backoff_s=2
        )
        buf.put(_epoch(1))
        deadline = time.monotonic() + 30
        while buf.pending and time.monotonic() < deadline:
            time.sleep(0.2)
        assert buf.pending == 0
        server.stop()
        for step in (2, 3, 4):  # epochs that end while the server is away
            buf.put(_epoch(step))
        time.sleep(3)
        assert buf.pending == 6 and buf.last_error is not None
        server.start()
        buf.put(_epoch(5))
        # A deadline, not a speed check: the buffer retries every 2 s at most and sends at once,
        # while a send left to MLflow's own retries would hold it for minutes (close raises).
        buf.close(timeout_s=30)
        for key in ("val_accuracy", "loss"):
            assert [m.step for m in mc.get_metric_history(run_id, key)] == [1, 2, 3, 4, 5]
    finally:
        server.stop()


def test_epoch_logger_sends_every_epoch_by_the_end_of_training(mlflow_uri):
    import keras
    import numpy as np

    mc = tracking.client()
    run_id = mc.create_run(tracking.ensure_experiment(mc, "t")).info.run_id
    logger = tracking.epoch_logger(mc, run_id)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.zeros((16, 2), np.float32)
    model.fit(x, x[:, 0], validation_data=(x, x[:, 0]), epochs=3, verbose=0, callbacks=[logger])
    assert logger.buffer.pending == 0  # on_train_end waited for the buffer to drain
    for key in ("loss", "val_loss"):
        assert [m.step for m in mc.get_metric_history(run_id, key)] == [1, 2, 3]


def _fit_raising_after_epoch(logger, epochs: int) -> None:
    """A 5-epoch fit whose last callback raises at the end of epoch ``epochs`` (as a signal does)."""
    import keras
    import numpy as np

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                raise RuntimeError("killed")

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.zeros((16, 2), np.float32)
    with pytest.raises(RuntimeError, match="killed"):
        model.fit(x, x[:, 0], validation_data=(x, x[:, 0]), epochs=5, verbose=0, callbacks=[logger, Boom()])


def test_epoch_logger_drain_sends_the_epochs_of_a_fit_that_raised(mlflow_uri, monkeypatch):
    # Keras skips on_train_end when fit raises; drain() is what sends the buffered epochs then.
    mc = tracking.client()
    run_id = mc.create_run(tracking.ensure_experiment(mc, "t")).info.run_id
    real_sender = tracking.metric_sender

    def slow_sender(client, rid, **kwargs):
        send = real_sender(client, rid, **kwargs)

        def slow(batch):
            time.sleep(0.5)  # a slow server: epochs are still queued when fit raises
            send(batch)

        return slow

    monkeypatch.setattr(tracking, "metric_sender", slow_sender)
    logger = tracking.epoch_logger(mc, run_id)
    _fit_raising_after_epoch(logger, 3)
    assert logger.buffer.pending > 0
    logger.drain(30)
    assert logger.buffer.pending == 0
    assert [m.step for m in mc.get_metric_history(run_id, "val_loss")] == [1, 2, 3]


def test_epoch_logger_drain_gives_up_with_a_warning_not_an_error(mlflow_uri, monkeypatch, caplog):
    def refused(batch):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(tracking, "metric_sender", lambda client, rid, **kwargs: refused)
    mc = tracking.client()
    logger = tracking.epoch_logger(mc, "no-such-run")
    _fit_raising_after_epoch(logger, 2)
    logger.drain(0.5)  # the exception in flight is the one to report
    assert logger.buffer.pending > 0
    assert "could not be sent in 0 s" in caplog.text and "connection refused" in caplog.text


def test_end_run_on_failure_ends_the_run_and_never_raises_or_retries(tmp_path, monkeypatch):
    # A failing stage ends its run through this: it had called set_tags then set_terminated, which
    # with the server down sat in MLflow's retries for minutes and then replaced the exception in
    # flight (a SIGTERM's) with an MlflowException, leaving the run RUNNING.
    from mlflow.utils import rest_utils

    attempts: list[int] = []
    real_request = rest_utils.http_request

    def spy(*args, **kwargs):
        attempts.append(kwargs.get("max_retries"))
        return real_request(*args, **kwargs)

    monkeypatch.setattr(rest_utils, "http_request", spy)
    server = MlflowServer(tmp_path / "server")
    url = server.start()
    try:
        mc = tracking.client(url)
        experiment = mc.create_experiment("fail")
        run_id, other = (mc.create_run(experiment).info.run_id for _ in range(2))
        reason = {"curvewatch.failure_reason": "TrainingInterrupted: SIGTERM"}
        attempts.clear()
        assert tracking.end_run_on_failure(mc, run_id, "KILLED", reason)
        assert attempts == [0, 0]  # one tag, one update: each a single attempt
        run = mc.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["curvewatch.failure_reason"] == "TrainingInterrupted: SIGTERM"
        server.stop()
        attempts.clear()
        assert not tracking.end_run_on_failure(mc, other, "FAILED", reason)  # no exception
        assert attempts == [0, 0]  # tag and end each tried once, not retried
    finally:
        server.stop()
