"""Tests for pipelines.models: every builder builds, trains a step and outputs float32 probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import TrainConfig
from pipelines.models import MODEL_NAMES, build_model, make_optimizer

keras = pytest.importorskip("keras")


def _images(shape: tuple[int, int, int], n: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, 3, size=n).astype(np.int64)


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1)])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builder_builds_and_trains_a_step(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(TrainConfig(model=name), shape, num_classes=3)
    x, y = _images(shape)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert {"loss", "accuracy"} <= set(logs)
    assert np.isfinite(logs["loss"])
    probs = keras.ops.convert_to_numpy(model(x, training=False))  # eager: no second trace
    assert probs.shape == (16, 3)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_compiled_with_config_optimizer_loss_and_metric() -> None:
    cfg = TrainConfig(model="mlp", optimizer="rmsprop", learning_rate=0.0123)
    model = build_model(cfg, (8, 8, 1), 4)
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0123)
    assert model.loss == "sparse_categorical_crossentropy"
    assert isinstance(make_optimizer(TrainConfig(optimizer="sgd")), keras.optimizers.SGD)
    assert isinstance(make_optimizer(TrainConfig(optimizer="adam")), keras.optimizers.Adam)


def test_rescales_uint8_inside_the_model() -> None:
    model = build_model(TrainConfig(model="mlp"), (8, 8, 1), 3)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_dropout_and_l2_come_from_config() -> None:
    cfg = TrainConfig(model="small_cnn", dropout=0.4, l2=1e-3)
    model = build_model(cfg, (28, 28, 1), 10)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates and all(r == pytest.approx(0.4) for r in rates)
    x, _ = _images((28, 28, 1), n=2)
    model(x, training=False)
    assert len(model.losses) > 0  # one L2 penalty per regularised kernel
    kernels = [layer.kernel for layer in model.layers if getattr(layer, "kernel_regularizer", None)]
    assert kernels
    expected = sum(1e-3 * float(keras.ops.sum(keras.ops.square(k))) for k in kernels)
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    assert penalty == pytest.approx(expected, rel=1e-4)
    plain = build_model(TrainConfig(model="small_cnn", l2=0.0), (28, 28, 1), 10)
    plain(x, training=False)
    assert len(plain.losses) == 0


def test_augmentation_is_inside_the_model_and_only_acts_in_training() -> None:
    model = build_model(TrainConfig(model="small_cnn", augment=True), (28, 28, 1), 10)
    names = {layer.name for layer in model.layers}
    assert {"aug_flip", "aug_translate", "aug_zoom"} <= names
    x, _ = _images((28, 28, 1), n=4)
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_array_equal(a, b)
    # In training the random flips, shifts and zooms change what the network sees.
    augment = keras.Sequential([model.get_layer(n) for n in ("aug_flip", "aug_translate", "aug_zoom")])
    seen = [keras.ops.convert_to_numpy(augment(x, training=True)) for _ in range(3)]
    assert any(not np.array_equal(s, np.asarray(x, dtype=s.dtype)) for s in seen)
    assert not {"aug_flip"} & {layer.name for layer in build_model(TrainConfig(), (28, 28, 1), 10).layers}


def test_large_cnn_is_bigger_than_small_cnn() -> None:
    small = build_model(TrainConfig(model="small_cnn"), (28, 28, 1), 10)
    large = build_model(TrainConfig(model="large_cnn"), (28, 28, 1), 10)

    def convs(m):
        return sum(isinstance(layer, keras.layers.Conv2D) for layer in m.layers)

    assert (convs(small), convs(large)) == (2, 4)
    assert large.count_params() > 2 * small.count_params()


def test_softmax_stays_float32_under_mixed_precision() -> None:
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_model(TrainConfig(model="mlp"), (8, 8, 1), 3)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("dense1").compute_dtype == "float16"
    assert model.get_layer("probs").compute_dtype == "float32"


@pytest.mark.parametrize(("shape", "classes"), [((8, 8), 3), ((8, 8, 0), 3), ((8, 8, 1), 1)])
def test_rejects_bad_shapes(shape: tuple[int, ...], classes: int) -> None:
    with pytest.raises(ValueError):
        build_model(TrainConfig(), shape, classes)  # type: ignore[arg-type]
