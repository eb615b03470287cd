"""Keras model builders chosen by ``TrainConfig.model``.

Every model takes raw ``uint8`` images of shape ``(N, H, W, C)`` and rescales them to ``[0, 1]``
inside the graph (a ``Rescaling(1/255)`` layer), so callers never normalise by hand and a saved
``.keras`` file scores raw pixels. Augmentation (``TrainConfig.augment``) also lives inside the
model as Keras preprocessing layers, which are identity at inference and only act in training
(https://keras.io/guides/preprocessing_layers/). The output layer is a float32 softmax so that
mixed precision (float16 compute) never yields float16 probabilities or losses.

Only ``keras`` is used, so the builders run under any Keras 3 backend (tensorflow, jax, torch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.config import TrainConfig

MODEL_NAMES: tuple[str, ...] = ("small_cnn", "large_cnn", "mlp")

# Images smaller than this (e.g. sklearn's 8x8 digits in tests) use "same" padding so that two
# conv/pool stages cannot shrink a side to zero; Fashion-MNIST (28x28) uses "valid" padding, which
# is ~30 % cheaper per epoch on CPU for the same accuracy.
_MIN_SIDE_FOR_VALID_PADDING = 16


def _regularizer(cfg: TrainConfig) -> Any:
    import keras

    return keras.regularizers.L2(cfg.l2) if cfg.l2 > 0 else None


def _stem(cfg: TrainConfig, input_shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """Input, rescaling to [0, 1] and (optionally) augmentation; returns ``(inputs, x)``."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    if cfg.augment:
        # Fashion-MNIST items are left/right symmetric in meaning (a shoe pointing left is still a
        # shoe) but not up/down, hence horizontal flips only; shifts and zooms are kept small
        # (~10 %) because the items are centred and fill the frame.
        augment = [
            layers.RandomFlip("horizontal", name="aug_flip"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", name="aug_translate"),
            layers.RandomZoom((-0.1, 0.1), fill_mode="constant", name="aug_zoom"),
        ]
        for layer in augment:
            if keras.backend.backend() == "jax":
                # Keras marks RandomTranslation/RandomZoom `supports_jit = False` because TensorFlow's
                # ImageProjectiveTransformV3 has no XLA kernel; one such layer makes
                # jit_compile="auto" fall back to eager for the whole model. Under JAX the layers are
                # jax.numpy ops that jit. Measured on an H200 (benchmarks/gpu_check.py, mlp, batch 64):
                # eager, a trial finished 1 epoch in 343 s (> 170 s an epoch); jitted, 1.5 s an epoch
                # (keras-team/keras#23229).
                layer.supports_jit = True
            x = layer(x)
    return inputs, x


def _conv_bn_relu(x: Any, filters: int, padding: str, reg: Any, name: str) -> Any:
    from keras import layers

    # No bias: BatchNormalization's beta plays that role.
    x = layers.Conv2D(filters, 3, padding=padding, use_bias=False, kernel_regularizer=reg, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _head(x: Any, num_classes: int, reg: Any) -> Any:
    from keras import layers

    return layers.Dense(
        num_classes, activation="softmax", dtype="float32", kernel_regularizer=reg, name="probs"
    )(x)


def build_small_cnn(cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Two conv stages (32 and 64 filters, each Conv3x3+BN+ReLU+MaxPool) and a 128-unit dense layer.

    About 0.32 M parameters on 28x28x1. On Fashion-MNIST it reaches ~0.90-0.91 test accuracy in
    6 epochs at ~38 s/epoch on 2 idle CPU cores (the ``quick`` profile; measured 0.904).

    Args:
        cfg: ``dropout`` is applied after the conv stack and after the dense layer; ``l2`` to every
            kernel; ``augment`` adds the preprocessing layers.
        input_shape: ``(H, W, C)`` of the uint8 images.
        num_classes: width of the softmax.

    Returns:
        The uncompiled ``keras.Model`` mapping ``(N, H, W, C)`` uint8 to ``(N, num_classes)`` float32.
    """
    import keras
    from keras import layers

    reg = _regularizer(cfg)
    padding = "valid" if min(input_shape[:2]) >= _MIN_SIDE_FOR_VALID_PADDING else "same"
    inputs, x = _stem(cfg, input_shape)
    x = _conv_bn_relu(x, 32, padding, reg, "conv1")
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)
    x = _conv_bn_relu(x, 64, padding, reg, "conv2")
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(cfg.dropout, name="drop1")(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=reg, name="dense")(x)
    x = layers.Dropout(cfg.dropout, name="drop2")(x)
    return keras.Model(inputs, _head(x, num_classes, reg), name="small_cnn")


def build_large_cnn(cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """VGG-style: two blocks of 2x(Conv3x3+BN+ReLU) + MaxPool + Dropout (32, 64 filters), dense 256.

    About 0.87 M parameters on 28x28x1 ("same" padding throughout). With augmentation it is meant
    for longer runs on a GPU (165-195 s per epoch on 2 CPU cores; not measured to convergence). It costs
    ~18 M multiply-adds per image, ~7x :func:`build_small_cnn`; 64/128 filters would cost ~4x more
    again (~75 M) for a few tenths of a point, which on CPU turns hours into most of a day.

    Args:
        cfg: ``dropout`` after each block and the dense layer; ``l2`` on every kernel; ``augment``.
        input_shape: ``(H, W, C)`` of the uint8 images.
        num_classes: width of the softmax.

    Returns:
        The uncompiled ``keras.Model`` mapping ``(N, H, W, C)`` uint8 to ``(N, num_classes)`` float32.
    """
    import keras
    from keras import layers

    reg = _regularizer(cfg)
    inputs, x = _stem(cfg, input_shape)
    for block, filters in enumerate((32, 64), start=1):
        x = _conv_bn_relu(x, filters, "same", reg, f"block{block}_conv1")
        x = _conv_bn_relu(x, filters, "same", reg, f"block{block}_conv2")
        x = layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
        x = layers.Dropout(cfg.dropout, name=f"block{block}_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, use_bias=False, kernel_regularizer=reg, name="dense")(x)
    x = layers.BatchNormalization(name="dense_bn")(x)
    x = layers.Activation("relu", name="dense_relu")(x)
    x = layers.Dropout(cfg.dropout, name="dense_drop")(x)
    return keras.Model(inputs, _head(x, num_classes, reg), name="large_cnn")


def build_mlp(cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """A baseline multilayer perceptron: Flatten, Dense 256 and 128 (ReLU, dropout), softmax.

    Args:
        cfg: ``dropout`` after each hidden layer; ``l2`` on every kernel; ``augment``.
        input_shape: ``(H, W, C)`` of the uint8 images.
        num_classes: width of the softmax.

    Returns:
        The uncompiled ``keras.Model`` mapping ``(N, H, W, C)`` uint8 to ``(N, num_classes)`` float32.
    """
    import keras
    from keras import layers

    reg = _regularizer(cfg)
    inputs, x = _stem(cfg, input_shape)
    x = layers.Flatten(name="flatten")(x)
    for i, units in enumerate((256, 128), start=1):
        x = layers.Dense(units, activation="relu", kernel_regularizer=reg, name=f"dense{i}")(x)
        x = layers.Dropout(cfg.dropout, name=f"drop{i}")(x)
    return keras.Model(inputs, _head(x, num_classes, reg), name="mlp")


_BUILDERS: dict[str, Callable[[TrainConfig, tuple[int, int, int], int], Any]] = {
    "small_cnn": build_small_cnn,
    "large_cnn": build_large_cnn,
    "mlp": build_mlp,
}


def make_optimizer(cfg: TrainConfig) -> Any:
    """Return a fresh Keras optimizer named by ``cfg.optimizer`` at ``cfg.learning_rate``.

    ``sgd`` uses Nesterov momentum 0.9 (plain SGD is too slow to be a useful choice here).

    Raises:
        ValueError: unknown optimizer name (cannot happen with a validated ``TrainConfig``).
    """
    import keras

    if cfg.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=cfg.learning_rate)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=cfg.learning_rate, momentum=0.9, nesterov=True)
    if cfg.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=cfg.learning_rate)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected adam, sgd or rmsprop")


def build_model(cfg: TrainConfig, input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """Build and compile the model named by ``cfg.model``.

    The model is compiled with :func:`make_optimizer`, loss ``sparse_categorical_crossentropy``
    (integer labels ``(N,)`` in ``[0, num_classes)``) and the metric ``accuracy``, so Keras logs
    ``loss``, ``accuracy``, ``val_loss`` and ``val_accuracy``. Mixed precision follows whatever
    global Keras dtype policy is set when this is called (see ``pipelines.train``).

    Args:
        cfg: the train section of ``params.yaml``.
        input_shape: ``(H, W, C)``, e.g. ``(28, 28, 1)``; inputs are uint8 pixels in ``[0, 255]``.
        num_classes: number of classes, >= 2.

    Returns:
        A compiled ``keras.Model`` with outputs ``(N, num_classes)`` float32 probabilities.

    Raises:
        ValueError: unknown ``cfg.model``, an ``input_shape`` that is not ``(H, W, C)`` with positive
            sides, or ``num_classes < 2``.
    """
    if cfg.model not in _BUILDERS:
        raise ValueError(f"unknown model {cfg.model!r}; expected one of {MODEL_NAMES}")
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sides, got {input_shape!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    model = _BUILDERS[cfg.model](cfg, tuple(int(s) for s in input_shape), int(num_classes))
    model.compile(
        optimizer=make_optimizer(cfg),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
