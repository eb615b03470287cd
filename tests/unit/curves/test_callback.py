"""should_stop (pure) and DiagnosisCallback (a tiny Keras fit that stops on a plateau and says why)."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.curves.callback import diagnose_history, last_improvement_epoch, should_stop
from pipelines.curves.types import Severity


def _stall_history(seed: int, epochs: int, onset: int = 6, level: float = 0.47) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1)
    climb = np.clip((t - 1) / (onset - 1), 0, 1)
    val = 0.1 + (level - 0.1) * climb + rng.normal(0, 0.005, epochs)
    return {"val_accuracy": val.tolist(), "accuracy": (val + 0.01).tolist(), "loss": (2.3 - val).tolist()}


def test_should_stop_waits_for_a_confirmed_plateau() -> None:
    # Flat since epoch 6: not enough epochs after the onset at epoch 7 ...
    assert not should_stop(_stall_history(0, 7), 30).stop
    # ... confirmed a few epochs later, with the reason in the finding.
    decisions = [should_stop(_stall_history(0, epochs), 30) for epochs in range(8, 16)]
    first = next(i for i, (stop, _) in enumerate(decisions) if stop) + 8
    assert 8 <= first <= 11
    stop, finding = decisions[first - 8]
    assert stop and finding is not None and finding.code == "plateau"
    assert re.fullmatch(
        r"val_accuracy flat at 0\.4\d\d ± 0\.0\d\d since epoch [5-8], "
        r"\d+ epochs on the plateau so far",
        finding.message,
    )


def test_should_stop_takes_numpy_arrays_as_it_takes_lists() -> None:
    # Every metric as an (E,) array (a history rebuilt with NumPy), with val_loss, which the stop
    # checks for a recent new low: the same decisions, epoch by epoch, as with lists.
    full = _stall_history(0, 16)
    full["val_loss"] = [2.4 - v for v in full["val_accuracy"]]
    for epochs in range(1, 17):
        lists = {k: v[:epochs] for k, v in full.items()}
        arrays = {k: np.asarray(v) for k, v in lists.items()}
        assert should_stop(arrays, 30).reason == should_stop(lists, 30).reason
    assert should_stop({k: np.asarray(v) for k, v in full.items()}, 30).stop


def test_should_stop_reads_older_keras_names() -> None:
    # A Keras 2 history logs val_acc: the same decision as under today's name.
    history = _stall_history(0, 14)
    old = {
        ("val_acc" if k == "val_accuracy" else "acc" if k == "accuracy" else k): v for k, v in history.items()
    }
    new_decision, old_decision = should_stop(history, 30), should_stop(old, 30)
    assert new_decision.stop and old_decision.stop
    assert old_decision.reason == new_decision.reason


def test_should_stop_never_on_a_climbing_curve() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        val = 0.92 - 0.5 * np.exp(-np.arange(20) / 15) + rng.normal(0, 0.003, 20)
        for epochs in range(3, 21):
            stop, _ = should_stop({"val_accuracy": val[:epochs].tolist()}, 60)
            assert not stop, (seed, epochs)


def test_should_stop_on_converged_run_is_info() -> None:
    rng = np.random.default_rng(0)
    val = 0.95 - 0.4 * np.exp(-np.arange(40) / 2) + rng.normal(0, 0.002, 40)
    history = {"val_accuracy": val.tolist(), "accuracy": (val + 0.01).tolist()}
    decisions = [should_stop({k: v[:e] for k, v in history.items()}, 100) for e in range(3, 41)]
    stop, finding = next(d for d in decisions if d.stop)
    assert finding is not None
    assert finding.severity == Severity.INFO and finding.evidence["converged"]
    assert finding.message.startswith("val_accuracy flat at 0.9")


def test_should_stop_on_nan_loss() -> None:
    history = {"val_loss": [2.0, 1.5, math.nan], "loss": [2.1, 1.6, math.nan]}
    stop, finding = should_stop(history, 30)
    assert stop and finding is not None and finding.code == "divergence"
    assert not should_stop(history, 30, stop_on_divergence=False).stop


def _spike_history(recover: bool) -> dict[str, list[float]]:
    """A 3-class run learning well, whose training loss jumps to 40x its level at epoch 6."""
    loss = [1.0, 0.7, 0.5, 0.4, 0.35, 14.0]
    val_loss = [0.95, 0.7, 0.55, 0.45, 0.4, 9.0]
    acc = [0.5, 0.7, 0.8, 0.85, 0.87, 0.4]
    if recover:  # back on course the next epoch, and improving again
        loss += [0.6, 0.45, 0.38, 0.33, 0.3, 0.28]
        val_loss += [0.6, 0.48, 0.42, 0.38, 0.36, 0.34]
        acc += [0.78, 0.84, 0.87, 0.88, 0.89, 0.9]
    else:  # stays blown up
        loss += [15.0, 16.0, 15.5, 17.0, 16.0, 18.0]
        val_loss += [9.5, 10.0, 9.8, 11.0, 10.5, 12.0]
        acc += [0.35, 0.34, 0.36, 0.33, 0.34, 0.33]
    return {"loss": loss, "val_loss": val_loss, "val_accuracy": acc, "accuracy": acc}


def test_should_stop_confirms_a_finite_blow_up_before_stopping() -> None:
    # A spike that recovers is never a divergence stop (issue 6, class 6) ...
    recovering = _spike_history(recover=True)
    for epochs in range(1, 13):
        stop, finding = should_stop({k: v[:epochs] for k, v in recovering.items()}, 30, num_classes=3)
        assert not (stop and finding.code == "divergence"), epochs
    # ... a loss that stays blown up stops once that has lasted live_patience (3) epochs.
    blown = _spike_history(recover=False)
    first = next(
        e for e in range(1, 13) if should_stop({k: v[:e] for k, v in blown.items()}, 30, num_classes=3).stop
    )
    assert first == 6 + 3
    assert (
        should_stop({k: v[:first] for k, v in blown.items()}, 30, num_classes=3).finding.code == "divergence"
    )


def test_last_improvement_epoch_ignores_gains_within_min_delta() -> None:
    values = [0.5, 0.7, 0.8, 0.801, 0.79, 0.802, None, 0.83, 0.829]
    assert last_improvement_epoch(values, 0.0) == 8
    assert last_improvement_epoch(values, 0.005) == 8  # 0.83 beats 0.802 by more than 0.005
    assert last_improvement_epoch(values[:7], 0.005) == 3  # 0.801 and 0.802 are within noise
    assert last_improvement_epoch([2.0, 1.0, 1.2, 0.999], 0.01, higher_is_better=False) == 2
    assert last_improvement_epoch([None, math.nan], 0.0) is None


def test_should_stop_counts_a_new_best_as_keras_does() -> None:
    # A real corpus run (1,000 validation examples): val_accuracy 0.924 at epoch 8, 0.925 at epoch
    # 11 (one example: within min_delta, not counted), 0.926 at epoch 16: two examples above the
    # last counted best, which counts, as in Keras' EarlyStopping (gains under min_delta add up;
    # the best had followed every uncounted gain, so a steady climb of under min_delta an epoch
    # never counted and was stopped while still rising). The stop confirmed at epoch 14 holds
    # there; after the new best it waits its patience again.
    import pandas as pd

    csv = Path(__file__).parents[2] / "fixtures" / "corpus" / "synth-tabular-healthy-rlrop-s0.csv"
    frame = pd.read_csv(csv)
    history = {c: frame[c].tolist() for c in ("loss", "accuracy", "val_loss", "val_accuracy")}
    assert int(np.argmax(frame["val_accuracy"])) + 1 == 16
    stops = [e for e in range(10, 30) if should_stop({k: v[:e] for k, v in history.items()}, 40).stop]
    assert stops[:2] == [14, 15]
    assert not set(stops) & set(range(16, 22)) and 22 in stops


def test_should_stop_waits_while_val_loss_sets_new_bests() -> None:
    # val_accuracy stalls at 0.47 from epoch 6 while val_loss still edges to a new best (by 1e-4,
    # far within its noise) every epoch until epoch 14, then stays above it: no stop before
    # val_loss has gone live_patience (3) epochs without a new best, as EarlyStopping counts it.
    history = _stall_history(0, 24)
    rng = np.random.default_rng(1)
    val_loss = (
        1.6 - 1e-4 * np.minimum(np.arange(24), 13) + np.abs(rng.normal(0, 0.01, 24)) * (np.arange(24) >= 14)
    )
    history["val_loss"] = val_loss.tolist()
    assert last_improvement_epoch(history["val_loss"], 0.0, higher_is_better=False) == 14
    stops = [e for e in range(3, 25) if should_stop({k: v[:e] for k, v in history.items()}, 30).stop]
    assert stops and stops[0] == 17  # epochs 15-17 without a new best
    # Without val_loss the same accuracy curve stops earlier (the rule above is what holds it).
    plain = {k: v for k, v in history.items() if k != "val_loss"}
    assert next(e for e in range(3, 25) if should_stop({k: v[:e] for k, v in plain.items()}, 30).stop) < 14


def test_should_stop_waits_longer_on_an_oscillating_stall() -> None:
    # The same stall, its losses swinging up and down every epoch (oscillation found): new bests
    # come in swings, so the stop waits 2 x live_patience, as for a convergence, and comes later.
    def first_stop(history: dict[str, list[float]]) -> int | None:
        return next(
            (e for e in range(3, 31) if should_stop({k: v[:e] for k, v in history.items()}, 30).stop), None
        )

    swing = np.where(np.arange(30) % 2 == 0, 1.0, -1.0)
    for seed in range(5):
        smooth = _stall_history(seed, 30)
        loss = np.asarray(smooth["loss"])
        smooth["val_loss"] = (loss + 0.1).tolist()
        swinging = {
            **smooth,
            "loss": (loss + 0.25 * swing).tolist(),
            "val_loss": (loss + 0.1 + 0.3 * swing).tolist(),
        }
        assert diagnose_history({k: v[:16] for k, v in swinging.items()}, 30).has("oscillation")
        calm, swung = first_stop(smooth), first_stop(swinging)
        assert calm is not None and swung is not None and swung > calm, (seed, calm, swung)


def test_should_stop_at_chance_says_not_learning() -> None:
    rng = np.random.default_rng(0)
    history = {"val_accuracy": (0.1 + rng.normal(0, 0.01, 12)).tolist(), "val_loss": [2.31] * 12}
    stop, finding = should_stop(history, 30, num_classes=10)
    assert stop and finding is not None and finding.code == "not_learning"


def test_should_stop_needs_a_validation_metric() -> None:
    with pytest.raises(ValueError, match="val_accuracy"):
        should_stop({"loss": [1.0, 0.9]}, 10)


def test_diagnose_history_is_live() -> None:
    diagnosis = diagnose_history(_stall_history(1, 12), 30, num_classes=10)
    assert not diagnosis.has("incomplete")  # still training is not incomplete
    assert diagnosis.verdict == "plateau"


def test_importing_should_stop_does_not_import_keras() -> None:
    # In a fresh interpreter: another test in this session may already have imported keras.
    code = "import sys, pipelines.curves.callback; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(features))
    features = (features[order] / 16.0).astype("float32")
    labels = labels[order]
    return features[:1200], labels[:1200], features[1200:], labels[1200:]


def test_callback_stops_tiny_fit_on_plateau_and_says_why(digits, caplog) -> None:  # noqa: ANN001
    keras = pytest.importorskip("keras")
    from pipelines.curves.callback import DiagnosisCallback

    x_train, y_train, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    callback = DiagnosisCallback(stop_on_plateau=True, num_classes=10, restore_best_weights=True)
    assert isinstance(callback, keras.callbacks.Callback)
    budget = 60
    with caplog.at_level(logging.INFO, logger="pipelines.curves.callback"):
        history = model.fit(
            x_train,
            y_train,
            validation_data=(x_val, y_val),
            epochs=budget,
            batch_size=64,
            verbose=0,
            callbacks=[callback],
        )
    epochs_run = len(history.history["loss"])
    assert epochs_run < budget
    assert callback.stopped_epoch == epochs_run
    assert callback.epoch_budget == budget  # taken from fit()'s params
    match = re.fullmatch(
        r"stopped at epoch (\d+): val_accuracy flat at (0\.\d{3}) ± (0\.\d{3}) since epoch (\d+).*"
        r"; best val_accuracy (0\.\d{3}) at epoch \d+ \(weights kept\)"
        r"; training on to epoch 60 would likely have reached 0\.\d{3} \(95% interval .*\)",
        callback.stop_reason,
    )
    assert match, callback.stop_reason
    assert int(match[1]) == epochs_run and int(match[4]) <= epochs_run - 3
    assert float(match[2]) > 0.9  # digits with a small MLP reaches > 0.9
    assert callback.stop_finding is not None and callback.stop_finding.code == "plateau"
    assert callback.diagnosis is not None and callback.diagnosis.plateau_onset_epoch is not None
    assert any(callback.stop_reason in record.getMessage() for record in caplog.records)
    # The same decision from the pure function on the callback's history.
    assert should_stop(callback.history, budget).stop
    # restore_best_weights: the model now scores the best validation accuracy seen.
    best = max(callback.history["val_accuracy"])
    restored = model.evaluate(x_val, y_val, verbose=0)[1]
    assert restored == pytest.approx(best, abs=1e-6)


def _fit_softmax_with_callback(digits, seed: int, optimizer="adam", after=(), **fit_kwargs):  # noqa: ANN001, ANN202
    """A one-layer softmax on digits, fit with a DiagnosisCallback(num_classes=10) (then the
    callbacks ``after``); the callback."""
    keras = pytest.importorskip("keras")
    from pipelines.curves.callback import DiagnosisCallback

    x_train, y_train, x_val, y_val = digits
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = DiagnosisCallback(num_classes=10)
    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        batch_size=128,
        verbose=0,
        callbacks=[callback, *after],
        **fit_kwargs,
    )
    return callback


def test_callback_without_stopping_only_logs(digits) -> None:  # noqa: ANN001
    callback = _fit_softmax_with_callback(digits, 1, epochs=4)
    assert callback.stop_reason is None and callback.stopped_epoch == 0
    assert len(callback.history["val_accuracy"]) == 4
    assert callback.diagnosis is not None


def test_callback_keeps_epochs_in_step_when_validating_every_other_epoch(digits) -> None:  # noqa: ANN001
    # Keras logs val_* after epochs 2, 4, 6 and 8 only.
    callback = _fit_softmax_with_callback(digits, 2, epochs=8, validation_freq=2)
    lengths = {name: len(values) for name, values in callback.history.items()}
    assert lengths == dict.fromkeys(callback.history, 8)
    val = np.asarray(callback.history["val_accuracy"])
    assert np.isnan(val[::2]).all() and np.isfinite(val[1::2]).all()
    assert callback.diagnosis is not None and not callback.diagnosis.has("incomplete")
    assert not should_stop(callback.history, 8).stop


def test_callback_numbers_epochs_of_a_fit_resumed_at_initial_epoch(digits) -> None:  # noqa: ANN001
    callback = _fit_softmax_with_callback(digits, 3, epochs=6, initial_epoch=3)
    val = np.asarray(callback.history["val_accuracy"])
    assert val.size == 6 and np.isnan(val[:3]).all() and np.isfinite(val[3:]).all()
    assert {len(values) for values in callback.history.values()} == {6}


def test_callback_reads_the_optimizers_learning_rate_when_the_logs_lack_it(digits) -> None:  # noqa: ANN001
    # A LearningRateSchedule given to the optimizer never reaches the logs, nor does a
    # LearningRateScheduler's rate for the callbacks listed before it: the live stop reads the
    # rate's cuts and new highs, so the callback reads it off the optimizer.
    keras = pytest.importorskip("keras")
    decay = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5)
    callback = _fit_softmax_with_callback(digits, 4, epochs=3, optimizer=keras.optimizers.SGD(decay))
    steps = math.ceil(1200 / 128)  # 10 steps an epoch: the rate at each epoch's end
    assert callback.history["learning_rate"] == pytest.approx(
        [0.01 * 0.5 ** (steps * epoch / 10) for epoch in (1, 2, 3)], rel=1e-5
    )
    warm_up = keras.callbacks.LearningRateScheduler(lambda epoch, _: 1e-3 * (epoch + 1))
    callback = _fit_softmax_with_callback(digits, 4, epochs=3, after=[warm_up])
    assert callback.history["learning_rate"] == pytest.approx([1e-3, 2e-3, 3e-3], rel=1e-5)


def test_a_convergence_waits_for_val_loss_as_long_as_for_accuracy() -> None:
    # A real dropout CNN validated on 1,000 images (tests/fixtures/probes/README.md): its accuracy
    # drifts up under the set's noise and val_loss sets a new low every 4-5 epochs. Called converged
    # at epoch 20 (3 epochs after a val_loss low) with 1.2 points to come; EarlyStopping(val_loss,
    # patience=5) stopped at 30.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-cnn-dropout-val-1000-jax-gpu.csv"
    history = {name: [float(v) for v in values] for name, values in load_csv_logger(csv).metrics.items()}
    val_acc = history["val_accuracy"]
    stops = [e for e in range(6, 41) if should_stop({k: v[:e] for k, v in history.items()}, 40).stop]
    assert stops, "a converged run is stopped at some point"
    assert max(val_acc) - max(val_acc[: stops[0]]) <= 0.005, stops[0]


def test_a_slow_learner_whose_loss_falls_beyond_noise_only_over_more_epochs_is_not_stopped() -> None:
    # A real run (tests/fixtures/probes/README.md): 20 SGD steps an epoch, so val_accuracy gains
    # 0.0005 an epoch under its 0.009 noise and val_loss falls beyond its noise only over ~9 epochs.
    # The live stop fired at epoch 52 of 150 with 4 points still to come.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-mlp-sgd-20-steps-per-epoch.csv"
    curve = load_csv_logger(csv)
    history = {name: [float(v) for v in values] for name, values in curve.metrics.items()}
    val_acc = history["val_accuracy"]
    assert max(val_acc) - max(val_acc[:52]) >= 0.03  # the file is what the test is about
    for epoch in (52, 60):
        decision = should_stop({k: v[:epoch] for k, v in history.items()}, 150)
        assert not decision.stop, (epoch, decision)


def test_a_slow_start_on_15_validation_examples_whose_losses_both_fall_is_not_stopped() -> None:
    # A real iris MLP with plain SGD at 0.01 validated on 15 examples (tests/fixtures/probes/README.md):
    # it sits at 3-6 of 15 for 18 epochs while the training loss falls on every one (1.88 -> 0.96)
    # and val_loss heads down under the scatter of 15 examples, then climbs to 13 of 15. The live
    # stop called it not learning at epoch 11 (val_loss's fall over 6 epochs within its noise), then,
    # once that was mended, a plateau at a low level at epoch 18; EarlyStopping(val_loss, patience=5)
    # stopped at 189.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "iris-val-15-sgd-0.01-slow-start-jax-gpu.csv"
    history = {name: [float(v) for v in values] for name, values in load_csv_logger(csv).metrics.items()}
    val_acc = history["val_accuracy"]
    assert max(val_acc[:18]) <= 0.41 and max(val_acc) >= 0.86  # the file is what the test is about
    stops = [e for e in range(2, 40) if should_stop({k: v[:e] for k, v in history.items()}, 700).stop]
    assert not stops, stops
    # Its first 11 epochs with the training loss flat: a dead network at chance is still stopped.
    dead = {k: list(v[:11]) for k, v in history.items()}
    dead["loss"] = [dead["loss"][0]] + [1.0986] * 10
    assert should_stop(dead, 700).stop


def test_a_regularised_run_whose_training_accuracy_trails_validation_is_not_stopped_short() -> None:
    # A real augmented, dropout CNN (tests/fixtures/probes/README.md): its training accuracy,
    # scored under augmentation and dropout, sits at or below validation's while both climb from
    # 0.72 to 0.86. The live stop read "training no better than validation" as an underfit stall,
    # confirmed it within live_patience, and stopped at epoch 12, 8 points short.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-pullover-coat-cnn-augment-adam.csv"
    history = {name: [float(v) for v in values] for name, values in load_csv_logger(csv).metrics.items()}
    val_acc = history["val_accuracy"]
    stops = [e for e in range(6, 61) if should_stop({k: v[:e] for k, v in history.items()}, 60).stop]
    first = stops[0] if stops else 60
    assert max(val_acc) - max(val_acc[:first]) <= 0.005, first


def test_a_learning_rate_cut_that_is_visibly_working_gets_its_patience() -> None:
    # A real SGD run with step decay (tests/fixtures/probes/README.md): cut from 0.1 to 0.01 at
    # epoch 16, val_accuracy rose from 0.757 to 0.822 in two epochs, still under the 0.825 it
    # reached at the high rate, and the live stop fired at epoch 17, 2.3 points short of its best.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-mlp-sgd-step-decay.csv"
    history = {name: [float(v) for v in values] for name, values in load_csv_logger(csv).metrics.items()}
    val_acc = history["val_accuracy"]
    assert history["learning_rate"][15] == pytest.approx(0.1 * history["learning_rate"][14])  # the cut
    assert not should_stop({k: v[:17] for k, v in history.items()}, 40).stop
    stops = [e for e in range(6, 41) if should_stop({k: v[:e] for k, v in history.items()}, 40).stop]
    first = stops[0] if stops else 40
    assert max(val_acc) - max(val_acc[:first]) <= 0.005, first
    # Without the logged rate, nothing says a cut was made: the stop at epoch 17 stands.
    no_rate = {k: v[:17] for k, v in history.items() if k != "learning_rate"}
    assert should_stop(no_rate, 40).stop


def test_a_critical_split_mismatch_stops_with_its_own_reason() -> None:
    # A real run (tests/fixtures/probes/README.md): validation images left unscaled. The live stop
    # waited for its accuracy's plateau and stopped at epoch 14 "flat at 0.833", saying nothing of
    # a validation set that does not measure the task; ES(val_loss, p=5) stopped at 7.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-cnn-val-unscaled-jax-gpu.csv"
    curve = load_csv_logger(csv)
    history = {name: [float(v) for v in values] for name, values in curve.metrics.items()}
    stops = [e for e in range(1, 21) if should_stop({k: v[:e] for k, v in history.items()}, 20).stop]
    decision = should_stop({k: v[: stops[0]] for k, v in history.items()}, 20)
    assert stops[0] == 6 and decision.finding.code == "split_mismatch", (stops[:1], decision.reason)
    assert "not drawn like the training set" in decision.reason, decision.reason


def test_a_convergence_waits_no_longer_than_early_stopping_after_a_val_loss_best() -> None:
    # A real CNN memorising 2,000 images (tests/fixtures/probes/README.md), read live as a
    # convergence: the stop waited 6 epochs after val_loss's best (epoch 9) and fired at 15, one
    # after EarlyStopping(val_loss, patience=5), for nothing more.
    from pipelines.curves.io import load_csv_logger

    csv = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-pullover-coat-cnn-adam-2000-jax-gpu.csv"
    history = {name: [float(v) for v in values] for name, values in load_csv_logger(csv).metrics.items()}
    val_loss = history["val_loss"]
    best, keras_stop = math.inf, None
    for epoch, value in enumerate(val_loss, start=1):  # Keras' rule: 5 epochs without a new low
        if value < best:
            best, since = value, epoch
        elif epoch - since >= 5:
            keras_stop = epoch
            break
    assert keras_stop == 14
    stops = [e for e in range(6, 61) if should_stop({k: v[:e] for k, v in history.items()}, 60).stop]
    assert stops and stops[0] <= keras_stop, stops[:1]
    # Its own patience still holds: nothing before 5 epochs after the best.
    assert stops[0] >= 9 + 5


def test_gains_below_min_delta_add_up_as_in_keras():
    # The best followed every gain smaller than min_delta, so a steady climb of 0.001 an epoch
    # (min_delta 0.0015) never counted: "last improved at epoch 1", and the live stop fired on runs
    # still rising. Keras moves its best only on an improvement that counts.
    climb = [0.800 + 0.001 * i for i in range(10)]
    assert last_improvement_epoch(climb, 0.0015) == 9
    assert last_improvement_epoch([-v for v in climb], 0.0015, higher_is_better=False) == 9
    assert last_improvement_epoch([0.8, 0.8005, 0.8009, 0.8012], 0.0015) == 1  # within noise: no


def _flat_run(n: int = 30) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    t = np.arange(1, n + 1)
    acc = np.minimum(0.97 - 0.5 * np.exp(-t / 1.5), 1) + rng.normal(0, 0.002, n)
    val_loss = 0.1 + 1.5 * np.exp(-t / 1.5) + rng.normal(0, 0.002, n)
    return {
        "loss": (val_loss * 0.9).tolist(),
        "accuracy": (acc + 0.005).tolist(),
        "val_accuracy": acc.tolist(),
        "val_loss": val_loss.tolist(),
    }


def test_a_history_validated_every_kth_epoch_is_refused_clearly():
    # History of fit(validation_freq=2): val_* hold every 2nd epoch. The patience and the stop line
    # indexed them as one value an epoch, then failed with IndexError.
    history = _flat_run()
    history["val_accuracy"] = history["val_accuracy"][1::2]
    with pytest.raises(ValueError, match=r"unequal length .*NaN where an epoch was not validated"):
        should_stop(history, 60)


def test_the_forecast_interval_of_an_accuracy_stays_within_0_and_1(monkeypatch):
    # value +- 1.96 SD was printed as it came: an upper bound of 1.0056 on an accuracy.
    import pipelines.curves.extrapolate as extrapolate_module

    real = extrapolate_module.extrapolate

    def wide(*args, **kwargs):
        fit = real(*args, **kwargs)
        return dataclasses.replace(fit, value_at_budget=0.995, value_std=0.01)

    monkeypatch.setattr(extrapolate_module, "extrapolate", wide)
    decision = should_stop(_flat_run(), 60, forecast=True)
    assert decision.stop
    assert decision.reason.endswith("would likely have reached 0.995 (95% interval 0.975 to 1.000)"), (
        decision.reason
    )


def test_the_callback_ends_with_the_best_weights_however_the_run_ended():
    # The best weights came back only when the callback itself stopped the run: a run that reached
    # its budget (or that another callback stopped) ended with its last weights, while Keras 3's
    # EarlyStopping(restore_best_weights=True) restores them in on_train_end whatever ended it.
    import keras

    from pipelines.curves.callback import DiagnosisCallback

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = DiagnosisCallback(stop_on_plateau=True, epoch_budget=3)
    callback.set_model(model)
    callback.on_train_begin()
    weights_at = {}
    for epoch, val_accuracy in enumerate([0.5, 0.9, 0.6]):
        model.set_weights([np.full_like(w, epoch + 1.0) for w in model.get_weights()])
        weights_at[epoch + 1] = model.get_weights()
        callback.on_epoch_end(
            epoch, {"loss": 1.0, "val_accuracy": val_accuracy, "val_loss": 1.0 - val_accuracy}
        )
    assert callback.stopped_epoch == 0  # the budget ended it, not the callback
    callback.on_train_end()
    for got, best in zip(model.get_weights(), weights_at[2], strict=True):
        np.testing.assert_array_equal(got, best)


def test_the_stop_line_says_weights_kept_only_when_they_are():
    history = _flat_run()
    assert "(weights kept)" in should_stop(history, 60).reason
    assert "(weights kept)" not in should_stop(history, 60, weights_kept=False).reason
