"""Models, optimisers and learning-rate schedules for the corpus runs.

The plain MLP, softmax regression, bottleneck and CNN are the fixture generator's own
(``benchmarks.curve_fixtures.generate``); the ones added here make the failure modes the corpus
needs: a dead network, a frozen one, frozen random features, and a deep linear-activation MLP.
Keras is imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.curve_fixtures.generate import bottleneck, cnn, linear, mlp


def dead_mlp(
    input_shape: tuple[int, ...], classes: int, hidden: Sequence[int] = (64,), dropout: float = 0.0
) -> Any:
    """An MLP whose ReLU units start dead (bias -20): no gradient reaches them, ever.

    Only the output layer's bias can learn, so the network converges to predicting the class
    prior: accuracy at the majority share, loss at the prior's entropy (the "dead net" of
    Lu et al., *Dying ReLU and Initialization*, 2019, https://arxiv.org/abs/1903.06733).
    """
    import keras

    layers: list[Any] = [keras.Input(input_shape), keras.layers.Flatten()]
    for width in hidden:
        layers.append(
            keras.layers.Dense(width, activation="relu", bias_initializer=keras.initializers.Constant(-20.0))
        )
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    return keras.Sequential(layers)


def frozen_mlp(
    input_shape: tuple[int, ...], classes: int, hidden: Sequence[int] = (64,), dropout: float = 0.0
) -> Any:
    """An MLP with every layer ``trainable=False`` (a forgotten unfreeze): the loss never moves."""
    model = mlp(input_shape, classes, hidden=hidden, dropout=dropout)
    for layer in model.layers:
        layer.trainable = False
    return model


def frozen_features(input_shape: tuple[int, ...], classes: int, width: int = 8) -> Any:
    """Frozen random ReLU features of ``width`` units, then a trainable softmax head.

    The frozen layer is a random projection, so accuracy stalls at what ``width`` random features
    allow, below what the same data reaches with trained features.
    """
    import keras

    frozen = keras.layers.Dense(width, activation="relu", trainable=False)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            frozen,
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def deep_linear(input_shape: tuple[int, ...], classes: int, depth: int = 3, width: int = 64) -> Any:
    """``depth`` linear-activation Dense layers: products of weights blow up under a large step.

    The fixture generator found this the one architecture where a large SGD step gives real
    ``nan`` rows instead of a dead ReLU network (benchmarks/curve_fixtures/README.md).
    """
    return mlp(input_shape, classes, hidden=(width,) * depth, activation="linear")


def dropout_mlp(
    input_shape: tuple[int, ...],
    classes: int,
    hidden: Sequence[int] = (64,),
    dropout: float = 0.5,
    input_dropout: float = 0.2,
) -> Any:
    """An MLP regularised as in Srivastava et al., "Dropout: A Simple Way to Prevent Neural
    Networks from Overfitting", JMLR 15 (2014): dropout on the inputs (``input_dropout``) and after
    every hidden layer (``dropout``); :func:`mlp` with those defaults. Keras scores the training
    accuracy with dropout on, so it sits below what the same weights score on validation data.
    """
    return mlp(input_shape, classes, hidden=hidden, dropout=dropout, input_dropout=input_dropout)


MODELS: dict[str, Callable[..., Any]] = {
    "mlp": mlp,
    "linear": linear,
    "bottleneck": bottleneck,
    "cnn": cnn,
    "dead_mlp": dead_mlp,
    "frozen_mlp": frozen_mlp,
    "frozen_features": frozen_features,
    "deep_linear": deep_linear,
    "dropout_mlp": dropout_mlp,
}


def make_optimizer(name: str, learning_rate: float, schedule: str | None, epochs: int, steps: int) -> Any:
    """Build a Keras optimiser.

    Args:
        name: ``sgd``, ``sgd-momentum`` (0.9) or ``adam``.
        learning_rate: initial rate.
        schedule: ``"cosine"`` puts :class:`keras.optimizers.schedules.CosineDecay` over the whole
            budget into the optimiser; other schedules are callbacks (:func:`schedule_callbacks`).
        epochs: the epoch budget (the cosine decays to 0 at its end).
        steps: optimiser steps per epoch.

    Raises:
        ValueError: unknown ``name``.
    """
    import keras

    lr: Any = learning_rate
    if schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    if name == "sgd":
        return keras.optimizers.SGD(lr)
    if name == "sgd-momentum":
        return keras.optimizers.SGD(lr, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(lr)
    raise ValueError(f"unknown optimizer {name!r}")


def schedule_callbacks(schedule: str | None, learning_rate: float) -> list[Any]:
    """Callbacks that change the rate between epochs.

    - ``"plateau"``: :class:`keras.callbacks.ReduceLROnPlateau` (val_loss, factor 0.5, patience 3).
    - ``"step"``: halve the rate every 10 epochs (:class:`keras.callbacks.LearningRateScheduler`).
    - ``"exp-up"``: multiply the rate by 1.5 every epoch (an LR range test left running), the way a
      run that starts sound diverges mid-way.
    - ``"cosine"``/``None``: nothing here.

    Raises:
        ValueError: unknown ``schedule``.
    """
    import keras

    if schedule in (None, "cosine"):
        return []
    if schedule == "plateau":
        return [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=3, min_lr=1e-6)]
    if schedule == "step":
        return [keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * 0.5 ** (epoch // 10))]
    if schedule == "exp-up":
        return [keras.callbacks.LearningRateScheduler(lambda epoch: learning_rate * 1.5**epoch)]
    raise ValueError(f"unknown schedule {schedule!r}")
