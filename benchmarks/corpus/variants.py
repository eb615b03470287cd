"""The corpus's training configurations: one :class:`Variant` per configuration, seeds make runs.

Each variant names the finding(s) its design is meant to produce (``intended``). The label a run
finally carries is set by :mod:`benchmarks.corpus.rubric`, which checks the intended findings
against the curve itself (see README.md, "Rubric").

Variants are built per data family from a small table of sound settings (:data:`FAMILIES`), so
that every family gets every finding; a few special cases follow (imbalanced dead networks, large
validation sets, short runs, long runs, early-stopped and killed runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One training configuration; each seed of it is one run (``<name>-s<seed>.csv``).

    Attributes:
        name: unique id, used in file names.
        scenario: the cause simulated (``healthy``, ``lr_too_low``, ``dead_net``, ...).
        view: key of :data:`benchmarks.corpus.data.VIEWS`.
        model: key of :data:`benchmarks.corpus.models.MODELS`; ``model_kwargs`` go to it.
        optimizer: ``sgd``, ``sgd-momentum`` or ``adam``.
        learning_rate: initial rate.
        epochs: the epoch budget.
        intended: finding codes the design aims at (checked by the rubric before labelling).
        seeds: seeds to run (init and batch order; the data split is fixed).
        batch_size: examples per step.
        schedule: ``None``, ``"plateau"``, ``"step"``, ``"cosine"`` or ``"exp-up"``
            (:func:`benchmarks.corpus.models.schedule_callbacks`).
        early_stop_patience: add ``EarlyStopping(val_loss, patience, restore_best_weights=True)``.
        kill_at: stop after this many epochs as if the process were killed (``complete: false``).
        generation: 1 to 9; the first batch covers every finding in both splits; the third adds
            the textures and diabetes families and mirrors of the test split's special runs; the
            fourth, runs at chance that the file alone must read right (shuffled labels, slow
            starts on 5 and 6 classes); the fifth, validation sets of 13 to 16 examples; the
            sixth, budgets of 150 to 400 epochs; the seventh, rates too low in every family;
            the eighth, rates too high in every family; the ninth, heavy dropout in every family.
        notes: what the design does, in words.
    """

    name: str
    scenario: str
    view: str
    model: str
    optimizer: str
    learning_rate: float
    epochs: int
    intended: tuple[str, ...]
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 32
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    early_stop_patience: int | None = None
    kill_at: int | None = None
    generation: int = 1
    notes: str = ""


#: Sound settings per family: the view, the hidden widths, Adam's rate, the batch and the budget
#: that converge; the other entries name the views and settings of that family's pathologies.
FAMILIES: dict[str, dict[str, Any]] = {
    "digits": dict(
        view="digits",
        hidden=(64,),
        lr=1e-3,
        batch=32,
        epochs=30,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (3,)}, 1e-2),
        plateau=("bottleneck", {"width": 2}, 1e-2),
        overfit_view="digits-200",
        imbalanced="digits-zero",
        shuffled="digits-shuffled",
        bad_scaling=None,
    ),
    "wine": dict(
        view="wine",
        hidden=(16,),
        lr=3e-3,
        batch=16,
        epochs=80,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (16,), "l2": 1.0}, 3e-3),
        plateau=("frozen_features", {"width": 2}, 1e-2),
        overfit_view="wine",
        imbalanced=None,
        shuffled=None,
        bad_scaling="wine-raw",
    ),
    "iris": dict(
        view="iris",
        hidden=(16,),
        lr=1e-2,
        batch=16,
        epochs=80,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (16,), "l2": 1.0}, 1e-2),
        plateau=("frozen_features", {"width": 2}, 1e-2),
        overfit_view="iris",
        imbalanced=None,
        shuffled="iris-shuffled",
        bad_scaling=None,
    ),
    "synth_tabular": dict(
        view="synth-bin",
        hidden=(64, 64),
        lr=1e-3,
        batch=64,
        epochs=40,
        slow_lr=1e-3,
        underfit=("linear", {}, 1e-2),
        plateau=("bottleneck", {"width": 1}, 1e-2),
        plateau_view="synth-5",
        underfit_view="synth-5",
        overfit_view="synth-noisy-small",
        imbalanced="synth-bin-0.95",
        shuffled="synth-bin-0.8-shuffled",
        bad_scaling=None,
    ),
    "moons": dict(
        view="moons",
        hidden=(32, 32),
        lr=1e-2,
        batch=32,
        epochs=40,
        slow_lr=1e-3,
        underfit=("linear", {}, 1e-2),
        plateau=("frozen_features", {"width": 2}, 1e-2),
        overfit_view="moons-small-train",
        imbalanced=None,
        shuffled=None,
        bad_scaling=None,
    ),
    "textures": dict(
        view="textures",
        hidden=(128,),
        lr=1e-3,
        batch=64,
        epochs=30,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (128,), "l2": 0.05}, 1e-3),
        plateau=("bottleneck", {"width": 1}, 1e-2),
        overfit_view="textures-small-train",
        imbalanced="textures-bin-0.9",
        shuffled="textures-shuffled",
        bad_scaling="textures-raw",
    ),
    "diabetes": dict(
        view="diabetes",
        hidden=(32,),
        lr=1e-3,
        batch=32,
        epochs=40,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (32,), "l2": 0.3}, 1e-3),
        plateau=("frozen_features", {"width": 1}, 1e-2),
        overfit_view="diabetes-small",
        imbalanced="diabetes",
        shuffled="diabetes-shuffled",
        bad_scaling="diabetes-raw",
    ),
    "fashion_mnist": dict(
        view="fmnist",
        hidden=(128,),
        dropout=0.3,
        lr=1e-3,
        batch=64,
        epochs=20,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (128,), "l2": 0.05}, 1e-3),
        plateau=("bottleneck", {"width": 2}, 1e-2),
        overfit_view="fmnist-300",
        imbalanced="fmnist-shirt",
        shuffled="fmnist-shuffled",
        bad_scaling="fmnist-raw",
    ),
    "breast_cancer": dict(
        view="bc",
        hidden=(32,),
        lr=1e-3,
        batch=32,
        epochs=40,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (32,), "l2": 0.3}, 1e-3),
        plateau=("frozen_features", {"width": 1}, 1e-2),
        overfit_view="bc-small",
        imbalanced="bc",
        shuffled="bc-shuffled",
        bad_scaling="bc-raw",
    ),
    "shapes": dict(
        view="shapes",
        hidden=(128,),
        lr=1e-3,
        batch=64,
        epochs=40,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (128,), "l2": 0.05}, 1e-3),
        plateau=("bottleneck", {"width": 1}, 1e-2),
        overfit_view="shapes-small-train",
        imbalanced="shapes-bin-0.9",
        shuffled="shapes-shuffled",
        bad_scaling=None,
    ),
    "blobs": dict(
        view="blobs",
        hidden=(32,),
        lr=3e-3,
        batch=64,
        epochs=40,
        slow_lr=1e-3,
        underfit=("mlp", {"hidden": (32,), "l2": 0.5}, 3e-3),
        plateau=("bottleneck", {"width": 1}, 1e-2),
        overfit_view="blobs-small-train",
        imbalanced="blobs-0.7",
        shuffled="blobs-shuffled",
        bad_scaling=None,
    ),
}

_SHORT = {"digits", "fashion_mnist", "breast_cancer", "blobs", "moons", "shapes", "textures", "diabetes"}


def _family_variants(family: str, f: dict[str, Any]) -> list[Variant]:
    view, hidden, lr, batch, ep = f["view"], f["hidden"], f["lr"], f["batch"], f["epochs"]
    p = family.replace("_", "-")
    mk: dict[str, Any] = {"hidden": hidden, **({"dropout": f["dropout"]} if "dropout" in f else {})}
    out = [
        Variant(
            f"{p}-healthy",
            "healthy",
            view,
            "mlp",
            "adam",
            lr,
            ep,
            ("healthy",),
            (0, 1),
            batch,
            mk,
            notes="sound MLP, Adam at its usual rate, budget long enough to converge",
        ),
        Variant(
            f"{p}-healthy-improving",
            "healthy",
            view,
            "mlp",
            "adam",
            lr / 4,
            max(10, ep // 2),
            ("healthy",),
            (0,),
            batch,
            mk,
            generation=1,
            notes="sound MLP, Adam at a quarter of the rate and half the budget: still improving at the end",
        ),
        Variant(
            f"{p}-healthy-improving",
            "healthy",
            view,
            "mlp",
            "adam",
            lr / 4,
            max(10, ep // 2),
            ("healthy",),
            (1,),
            batch,
            mk,
            generation=2,
            notes="sound MLP, Adam at a quarter of the rate and half the budget: still improving at the end",
        ),
        Variant(
            f"{p}-healthy-rlrop",
            "healthy",
            view,
            "mlp",
            "adam",
            lr * 3,
            ep,
            ("healthy",),
            (0,),
            batch,
            mk,
            schedule="plateau",
            notes="Adam at 3x the rate with ReduceLROnPlateau(val_loss, 0.5, patience 3)",
        ),
        Variant(
            f"{p}-healthy-cosine",
            "healthy",
            view,
            "mlp",
            "adam",
            lr * 2,
            ep,
            ("healthy",),
            (0,),
            batch,
            mk,
            schedule="cosine",
            generation=2,
            notes="Adam at 2x the rate, cosine decay to 0 over the budget",
        ),
        Variant(
            f"{p}-healthy-sgdm-step",
            "healthy",
            view,
            "mlp",
            "sgd-momentum",
            0.01,
            ep,
            ("healthy",),
            (0,),
            batch,
            mk,
            schedule="step",
            generation=2,
            notes="SGD momentum 0.9, rate 0.01 halved every 10 epochs",
        ),
        Variant(
            f"{p}-healthy-earlystop",
            "healthy",
            view,
            "mlp",
            "adam",
            lr,
            ep * 2,
            ("healthy",),
            (2,),
            batch,
            mk,
            early_stop_patience=5,
            generation=2,
            notes="sound config with EarlyStopping(val_loss, patience 5, restore_best_weights)",
        ),
        Variant(
            f"{p}-too-slow",
            "lr_too_low",
            view,
            "mlp",
            "sgd",
            f["slow_lr"],
            ep * 2,
            ("too_slow",),
            (0,),
            batch,
            mk,
            notes="plain SGD at a rate far too low: loss falls steadily all run",
        ),
        Variant(
            f"{p}-too-slow",
            "lr_too_low",
            view,
            "mlp",
            "sgd",
            f["slow_lr"],
            ep * 2,
            ("too_slow",),
            (1,),
            batch,
            mk,
            generation=2,
            notes="plain SGD at a rate far too low: loss falls steadily all run",
        ),
        Variant(
            f"{p}-underfit",
            "underfitting",
            f.get("underfit_view", view),
            f["underfit"][0],
            "adam",
            f["underfit"][2],
            ep,
            ("underfitting",),
            (0,),
            batch,
            f["underfit"][1],
            notes="capacity too small or regularisation too strong: train and val low together",
        ),
        Variant(
            f"{p}-underfit",
            "underfitting",
            f.get("underfit_view", view),
            f["underfit"][0],
            "adam",
            f["underfit"][2],
            ep,
            ("underfitting",),
            (1,),
            batch,
            f["underfit"][1],
            generation=2,
            notes="capacity too small or regularisation too strong: train and val low together",
        ),
        Variant(
            f"{p}-dead-net",
            "dead_net",
            view,
            "dead_mlp",
            "adam",
            lr,
            max(10, ep // 2),
            ("not_learning",),
            (0,),
            batch,
            mk,
            notes="ReLU units born dead (bias -20): only the output bias learns the prior",
        ),
        Variant(
            f"{p}-frozen",
            "frozen_net",
            view,
            "frozen_mlp",
            "adam",
            lr,
            max(10, ep // 3),
            ("not_learning",),
            (0,),
            batch,
            mk,
            generation=2,
            notes="every layer trainable=False: nothing moves",
        ),
        Variant(
            f"{p}-lr-tiny",
            "lr_too_low",
            view,
            "mlp",
            "sgd",
            1e-6,
            max(10, ep // 2),
            ("not_learning",),
            (0,),
            batch,
            mk,
            generation=2,
            notes="SGD at 1e-6: the weights barely move",
        ),
        Variant(
            f"{p}-nan",
            "lr_too_high",
            view,
            "deep_linear",
            "sgd-momentum",
            0.5,
            max(10, ep // 2),
            ("divergence",),
            (0,),
            batch,
            {},
            notes="3 linear-activation layers, SGD momentum, rate 0.5: NaN",
        ),
        Variant(
            f"{p}-death",
            "lr_too_high",
            view,
            "mlp",
            "adam",
            3.0,
            max(10, ep // 2),
            ("divergence",),
            (0,),
            batch,
            mk,
            notes="Adam at 3.0: the loss explodes in epoch 0, then the ReLUs are dead",
        ),
        Variant(
            f"{p}-lr-ramp",
            "lr_too_high",
            view,
            "mlp",
            "adam",
            lr,
            25,
            ("divergence",),
            (0,),
            batch,
            mk,
            schedule="exp-up",
            generation=2,
            notes="Adam with the rate x1.5 every epoch from the sound rate: sound start, blow-up mid-run",
        ),
        Variant(
            f"{p}-oscillate",
            "lr_too_high",
            view,
            "mlp",
            "adam",
            0.05,
            ep,
            ("oscillation",),
            (0,),
            batch,
            mk,
            notes="Adam at 0.05 (constant): swinging losses",
        ),
        Variant(
            f"{p}-oscillate-hi",
            "lr_too_high",
            view,
            "mlp",
            "adam",
            0.2,
            ep,
            ("oscillation",),
            (0,),
            batch,
            mk,
            generation=2,
            notes="Adam at 0.2 (constant): swinging losses",
        ),
        Variant(
            f"{p}-plateau",
            "plateau",
            f.get("plateau_view", view),
            f["plateau"][0],
            "adam",
            f["plateau"][2],
            ep,
            ("plateau",),
            (0,),
            batch,
            f["plateau"][1],
            notes="an architectural cap (narrow bottleneck or frozen random features) stalls val_accuracy",
        ),
        Variant(
            f"{p}-plateau",
            "plateau",
            f.get("plateau_view", view),
            f["plateau"][0],
            "adam",
            f["plateau"][2],
            ep,
            ("plateau",),
            (1,),
            batch,
            f["plateau"][1],
            generation=2,
            notes="an architectural cap (narrow bottleneck or frozen random features) stalls val_accuracy",
        ),
        Variant(
            f"{p}-overfit",
            "overfitting",
            f["overfit_view"],
            "mlp",
            "adam",
            1e-3,
            max(60, ep * 2),
            ("overfitting",),
            (0,),
            batch,
            {"hidden": (256, 256)},
            notes="wide MLP, no regularisation, small or noisy training set",
        ),
        Variant(
            f"{p}-overfit",
            "overfitting",
            f["overfit_view"],
            "mlp",
            "adam",
            1e-3,
            max(60, ep * 2),
            ("overfitting",),
            (1,),
            batch,
            {"hidden": (256, 256)},
            generation=2,
            notes="wide MLP, no regularisation, small or noisy training set",
        ),
        Variant(
            f"{p}-killed",
            "killed",
            view,
            "mlp",
            "adam",
            lr / 4,
            ep,
            ("incomplete",),
            (3,),
            batch,
            mk,
            kill_at=max(4, ep // 3),
            generation=2,
            notes="sound but slow config whose process was killed at a third of the budget",
        ),
    ]
    if f["imbalanced"]:
        out.append(
            Variant(
                f"{p}-dead-net-imbalanced",
                "dead_net",
                f["imbalanced"],
                "dead_mlp",
                "adam",
                lr,
                max(10, ep // 2),
                ("not_learning",),
                (0,),
                batch,
                mk,
                notes="dead ReLUs on an imbalanced task: stuck at the majority share",
            )
        )
        out.append(
            Variant(
                f"{p}-healthy-imbalanced",
                "healthy",
                f["imbalanced"],
                "mlp",
                "adam",
                lr,
                ep,
                ("healthy",),
                (0,),
                batch,
                mk,
                generation=2,
                notes="sound config on the imbalanced view",
            )
        )
    if f["shuffled"]:
        out.append(
            Variant(
                f"{p}-shuffled-labels",
                "shuffled_labels",
                f["shuffled"],
                "linear",
                "adam",
                lr,
                max(10, ep // 2),
                ("not_learning",),
                (0,),
                batch,
                {},
                notes="labels permuted: nothing to learn",
            )
        )
    if f["bad_scaling"]:
        out.append(
            Variant(
                f"{p}-bad-scaling",
                "bad_scaling",
                f["bad_scaling"],
                "mlp",
                "adam",
                lr,
                ep,
                ("plateau",),
                (0,),
                batch,
                mk,
                notes="unscaled inputs: Adam stalls below the ceiling",
            )
        )
        out.append(
            Variant(
                f"{p}-bad-scaling-sgd",
                "bad_scaling",
                f["bad_scaling"],
                "mlp",
                "sgd",
                1e-2,
                ep // 2,
                ("not_learning",),
                (0,),
                batch,
                mk,
                generation=2,
                notes="unscaled inputs with SGD: the first steps kill the network",
            )
        )
    if family in _SHORT:
        out += [
            Variant(
                f"{p}-short-healthy",
                "healthy",
                view,
                "mlp",
                "adam",
                lr * 3,
                5,
                ("healthy",),
                (0,),
                batch,
                mk,
                generation=2,
                notes="5 epochs of a fast sound config",
            ),
            Variant(
                f"{p}-short-death",
                "lr_too_high",
                view,
                "mlp",
                "adam",
                5.0,
                2,
                ("divergence",),
                (1,),
                batch,
                mk,
                generation=2,
                notes="2 epochs of Adam at 5.0: huge loss, chance accuracy",
            ),
            Variant(
                f"{p}-short-dead",
                "dead_net",
                view,
                "dead_mlp",
                "adam",
                lr,
                4,
                ("not_learning",),
                (1,),
                batch,
                mk,
                generation=2,
                notes="4 epochs of a dead network",
            ),
            Variant(
                f"{p}-short-slow",
                "lr_too_low",
                view,
                "mlp",
                "sgd",
                f["slow_lr"],
                6,
                ("too_slow",),
                (2,),
                batch,
                mk,
                generation=2,
                notes="6 epochs of plain SGD at a rate far too low",
            ),
            Variant(
                f"{p}-short-oscillate",
                "lr_too_high",
                view,
                "mlp",
                "adam",
                0.1,
                6,
                ("oscillation",),
                (1,),
                batch,
                mk,
                generation=2,
                notes="6 epochs of Adam at 0.1",
            ),
            Variant(
                f"{p}-short-underfit",
                "underfitting",
                f.get("underfit_view", view),
                f["underfit"][0],
                "adam",
                f["underfit"][2],
                6,
                ("underfitting",),
                (2,),
                batch,
                f["underfit"][1],
                generation=2,
                notes="6 epochs of the underfitting config",
            ),
        ]
    return out


def _specials() -> list[Variant]:
    mk: dict[str, Any] = {"hidden": (128,)}
    mkd: dict[str, Any] = {"hidden": (128,), "dropout": 0.3}
    return [
        # oscillation measured on large validation sets (small binomial noise)
        Variant(
            "fmnist-10k-oscillate",
            "lr_too_high",
            "fmnist-10k",
            "mlp",
            "adam",
            0.02,
            25,
            ("oscillation",),
            (0, 1, 2),
            64,
            mk,
            notes="Adam 0.02 on Fashion-MNIST, 10,000 validation images",
        ),
        Variant(
            "fmnist-10k-healthy",
            "healthy",
            "fmnist-10k",
            "mlp",
            "adam",
            1e-3,
            20,
            ("healthy",),
            (0, 1),
            64,
            mkd,
            notes="sound MLP with dropout 0.3, 10,000 validation images",
        ),
        Variant(
            "fmnist-10k-too-slow",
            "lr_too_low",
            "fmnist-10k",
            "mlp",
            "sgd",
            3e-3,
            30,
            ("too_slow",),
            (0,),
            64,
            mk,
            generation=2,
            notes="plain SGD 3e-3, 10,000 validation images",
        ),
        Variant(
            "blobs-big-val-oscillate",
            "lr_too_high",
            "blobs-big-val",
            "mlp",
            "adam",
            0.1,
            40,
            ("oscillation",),
            (0, 1, 2),
            64,
            {"hidden": (32,)},
            notes="Adam 0.1, 5,000 validation examples",
        ),
        Variant(
            "blobs-big-val-healthy",
            "healthy",
            "blobs-big-val",
            "mlp",
            "adam",
            3e-3,
            40,
            ("healthy",),
            (0,),
            64,
            {"hidden": (32,)},
            generation=2,
            notes="sound MLP, 5,000 validation examples",
        ),
        Variant(
            "synth-0.95-oscillate",
            "lr_too_high",
            "synth-bin-0.95",
            "mlp",
            "adam",
            0.05,
            40,
            ("oscillation",),
            (0,),
            64,
            {"hidden": (64, 64)},
            notes="Adam 0.05, 5,000 validation examples, majority 0.95",
        ),
        Variant(
            "moons-big-val-oscillate",
            "lr_too_high",
            "moons-big-val",
            "mlp",
            "sgd-momentum",
            0.5,
            60,
            ("oscillation",),
            (0,),
            32,
            {"hidden": (32, 32)},
            notes="SGD momentum at 0.5, 2,000 validation",
        ),
        Variant(
            "synth-5-healthy",
            "healthy",
            "synth-5",
            "mlp",
            "adam",
            1e-3,
            40,
            ("healthy",),
            (0, 1),
            64,
            {"hidden": (64, 64)},
            generation=2,
            notes="sound MLP on the 5-class synthetic task (its reference)",
        ),
        # imbalanced not_learning
        Variant(
            "synth-0.8-dead-net",
            "dead_net",
            "synth-bin-0.8",
            "dead_mlp",
            "adam",
            1e-3,
            20,
            ("not_learning",),
            (0,),
            64,
            {"hidden": (64, 64)},
            notes="dead ReLUs, majority 0.8",
        ),
        Variant(
            "fmnist-bag-0.95-dead-net",
            "dead_net",
            "fmnist-bag-0.95",
            "dead_mlp",
            "adam",
            1e-3,
            15,
            ("not_learning",),
            (0,),
            64,
            mk,
            notes="dead ReLUs, majority 0.95",
        ),
        Variant(
            "fmnist-bag-0.95-healthy",
            "healthy",
            "fmnist-bag-0.95",
            "mlp",
            "adam",
            1e-3,
            20,
            ("healthy",),
            (0,),
            64,
            mk,
            generation=2,
            notes="sound MLP, majority 0.95",
        ),
        # coarse accuracy with a slow learning rate (40 and 30 validation examples), long runs
        Variant(
            "moons-too-slow-long",
            "lr_too_low",
            "moons",
            "mlp",
            "sgd",
            3e-3,
            150,
            ("too_slow",),
            (0,),
            32,
            {"hidden": (32, 32)},
            notes="plain SGD 3e-3, 40 validation examples, 150 epochs",
        ),
        Variant(
            "iris-too-slow-long",
            "lr_too_low",
            "iris",
            "mlp",
            "sgd",
            1e-3,
            300,
            ("too_slow",),
            (0,),
            16,
            {"hidden": (16,)},
            notes="plain SGD 1e-3, 30 validation examples, 300 epochs",
        ),
        Variant(
            "synth-5-small-val-too-slow",
            "lr_too_low",
            "synth-5-small-val",
            "mlp",
            "sgd",
            1e-3,
            100,
            ("too_slow",),
            (0,),
            64,
            {"hidden": (64, 64)},
            generation=2,
            notes="plain SGD 1e-3, 40 validation examples",
        ),
        Variant(
            "shapes-small-val-too-slow",
            "lr_too_low",
            "shapes-small-val",
            "mlp",
            "sgd",
            3e-3,
            80,
            ("too_slow",),
            (0,),
            64,
            mk,
            notes="plain SGD 3e-3, 40 validation examples",
        ),
        Variant(
            "shapes-small-val-healthy",
            "healthy",
            "shapes-small-val",
            "mlp",
            "adam",
            1e-3,
            30,
            ("healthy",),
            (0,),
            64,
            mk,
            generation=2,
            notes="sound MLP, 40 validation examples",
        ),
        Variant(
            "shapes-small-val-oscillate",
            "lr_too_high",
            "shapes-small-val",
            "mlp",
            "adam",
            0.03,
            30,
            ("oscillation",),
            (0,),
            64,
            mk,
            generation=2,
            notes="Adam 0.03, 40 validation examples",
        ),
        Variant(
            "iris-overfit-long",
            "overfitting",
            "iris",
            "mlp",
            "adam",
            1e-2,
            300,
            ("overfitting",),
            (0,),
            16,
            {"hidden": (256, 256)},
            notes="wide MLP on 120 iris examples, 300 epochs",
        ),
        Variant(
            "wine-healthy-long",
            "healthy",
            "wine",
            "mlp",
            "adam",
            3e-4,
            200,
            ("healthy",),
            (0,),
            16,
            {"hidden": (16,)},
            generation=2,
            notes="slow-and-steady Adam 3e-4 for 200 epochs",
        ),
        # CNNs on images
        Variant(
            "shapes-cnn-healthy",
            "healthy",
            "shapes-img",
            "cnn",
            "adam",
            1e-3,
            15,
            ("healthy",),
            (0,),
            64,
            {"pool": True},
            notes="small CNN on 16x16 shapes",
        ),
        Variant(
            "fmnist-cnn-healthy",
            "healthy",
            "fmnist-img",
            "cnn",
            "adam",
            1e-3,
            12,
            ("healthy",),
            (0,),
            64,
            {"dropout": 0.3},
            notes="small CNN on 2,000 Fashion-MNIST images",
        ),
        Variant(
            "digits-cnn-plateau",
            "plateau",
            "digits-img",
            "frozen_features",
            "adam",
            1e-2,
            30,
            ("plateau",),
            (0,),
            32,
            {"width": 6},
            generation=2,
            notes="6 frozen random features of the 8x8 images",
        ),
        Variant(
            "fmnist-frozen-features",
            "plateau",
            "fmnist",
            "frozen_features",
            "adam",
            1e-2,
            30,
            ("plateau",),
            (0,),
            64,
            {"width": 8},
            notes="8 frozen random features of the Fashion-MNIST pixels",
        ),
        Variant(
            "shapes-frozen-features",
            "plateau",
            "shapes",
            "frozen_features",
            "adam",
            1e-2,
            30,
            ("plateau",),
            (0, 1),
            64,
            {"width": 4},
            notes="4 frozen random features of the shape images",
        ),
        Variant(
            "blobs-frozen-features",
            "plateau",
            "blobs",
            "frozen_features",
            "adam",
            1e-2,
            40,
            ("plateau",),
            (0,),
            64,
            {"width": 2},
            generation=2,
            notes="2 frozen random features of the blobs",
        ),
        # early-stopped pathologies, and killed pathologies
        Variant(
            "fmnist-300-overfit-earlystop",
            "overfitting",
            "fmnist-300",
            "mlp",
            "adam",
            1e-3,
            80,
            ("overfitting",),
            (2,),
            32,
            {"hidden": (256, 256)},
            early_stop_patience=10,
            generation=2,
            notes="overfitting config stopped by EarlyStopping(val_loss, patience 10)",
        ),
        Variant(
            "bc-small-overfit-earlystop",
            "overfitting",
            "bc-small",
            "mlp",
            "adam",
            1e-3,
            100,
            ("overfitting",),
            (2,),
            32,
            {"hidden": (256, 256)},
            early_stop_patience=10,
            generation=2,
            notes="overfitting config stopped by EarlyStopping(val_loss, patience 10)",
        ),
        Variant(
            "digits-200-overfit-earlystop",
            "overfitting",
            "digits-200",
            "mlp",
            "adam",
            1e-3,
            100,
            ("overfitting",),
            (2,),
            32,
            {"hidden": (256, 256)},
            early_stop_patience=10,
            generation=2,
            notes="overfitting config stopped by EarlyStopping(val_loss, patience 10)",
        ),
        Variant(
            "shapes-plateau-earlystop",
            "plateau",
            "shapes",
            "bottleneck",
            "adam",
            1e-2,
            80,
            ("plateau",),
            (2,),
            64,
            {"width": 1},
            early_stop_patience=8,
            generation=2,
            notes="bottleneck config stopped by EarlyStopping(val_loss, patience 8)",
        ),
        Variant(
            "digits-overfit-killed",
            "killed",
            "digits-200",
            "mlp",
            "adam",
            1e-3,
            100,
            ("overfitting", "incomplete"),
            (3,),
            32,
            {"hidden": (256, 256)},
            kill_at=45,
            generation=2,
            notes="overfitting config killed at epoch 45 of 100",
        ),
        Variant(
            "blobs-overfit-killed",
            "killed",
            "blobs-small-train",
            "mlp",
            "adam",
            1e-3,
            100,
            ("overfitting", "incomplete"),
            (3,),
            32,
            {"hidden": (256, 256)},
            kill_at=50,
            generation=2,
            notes="overfitting config killed at epoch 50 of 100",
        ),
        Variant(
            "shapes-oscillate-killed",
            "killed",
            "shapes",
            "mlp",
            "adam",
            0.05,
            60,
            ("oscillation", "incomplete"),
            (3,),
            64,
            mk,
            kill_at=25,
            generation=2,
            notes="oscillating config killed at epoch 25 of 60",
        ),
        Variant(
            "bc-too-slow-killed",
            "killed",
            "bc",
            "mlp",
            "sgd",
            1e-3,
            120,
            ("too_slow", "incomplete"),
            (3,),
            32,
            {"hidden": (32,)},
            kill_at=40,
            generation=2,
            notes="too-slow config killed at epoch 40 of 120",
        ),
        Variant(
            "moons-too-slow-killed",
            "killed",
            "moons",
            "mlp",
            "sgd",
            1e-3,
            120,
            ("too_slow", "incomplete"),
            (3,),
            32,
            {"hidden": (32, 32)},
            kill_at=40,
            generation=2,
            notes="too-slow config killed at epoch 40 of 120",
        ),
        # a short overfitting run: a wide net on a tiny noisy set at a fast rate
        Variant(
            "synth-short-overfit",
            "overfitting",
            "synth-noisy-small",
            "mlp",
            "adam",
            1e-2,
            6,
            ("overfitting",),
            (0,),
            16,
            {"hidden": (512, 512)},
            generation=2,
            notes="6 epochs, wide net, noisy tiny set",
        ),
        Variant(
            "blobs-short-overfit",
            "overfitting",
            "blobs-small-train",
            "mlp",
            "adam",
            1e-2,
            6,
            ("overfitting",),
            (0,),
            8,
            {"hidden": (512, 512)},
            generation=2,
            notes="6 epochs, wide net, 80 examples",
        ),
    ]


def _oscillation_extras() -> list[Variant]:
    """More lr-too-high runs where the first batch showed oscillation beyond the rubric's noise
    (low healthy val_loss, enough validation examples): Adam 0.05-0.1 on digits, breast_cancer,
    the 0.95-majority Fashion-MNIST bag task and the 0.95 synthetic task."""
    rows = [
        ("osc2-digits-adam-0.05", "digits", {"hidden": (64,)}, 0.05, 30, (1, 2), 32),
        ("osc2-bc-adam-0.1", "bc", {"hidden": (32,)}, 0.1, 30, (0, 1, 2), 32),
        ("osc2-fmnist-bag-adam-0.05", "fmnist-bag-0.95", {"hidden": (128,)}, 0.05, 20, (0, 1), 64),
        ("osc2-synth-0.95-adam-0.1", "synth-bin-0.95", {"hidden": (64, 64)}, 0.1, 30, (0,), 64),
        ("osc2-blobs-adam-0.1", "blobs", {"hidden": (32,)}, 0.1, 40, (0, 1), 64),
    ]
    return [
        Variant(
            name,
            "lr_too_high",
            view,
            "mlp",
            "adam",
            lr,
            epochs,
            ("oscillation",),
            seeds,
            batch,
            kwargs,
            generation=2,
            notes=f"Adam at {lr} (constant): swinging losses",
        )
        for name, view, kwargs, lr, epochs, seeds, batch in rows
    ]


def _underfitting_variants(rows: list[tuple[str, str, dict[str, Any], float, int, int]]) -> list[Variant]:
    """Adam-trained MLPs that underfit: rows of (name, view, model kwargs, learning rate, epochs,
    batch), three seeds each; L2 in the kwargs makes the cause "regularisation", else capacity."""

    def notes(kwargs: dict[str, Any], lr: float) -> str:
        if "l2" in kwargs:
            return f"MLP {kwargs['hidden']} with L2 {kwargs['l2']}: regularisation too strong"
        rate = "1e-2" if lr == 1e-2 else str(lr)
        return f"MLP with {kwargs['hidden'][0]} hidden unit(s), Adam {rate}: too little capacity"

    return [
        Variant(
            name,
            "underfitting",
            view,
            "mlp",
            "adam",
            lr,
            epochs,
            ("underfitting",),
            (0, 1, 2),
            batch,
            kwargs,
            generation=2,
            notes=notes(kwargs, lr),
        )
        for name, view, kwargs, lr, epochs, batch in rows
    ]


def _underfitting_extras() -> list[Variant]:
    """Capacity-starved MLPs (1-2 hidden units) on the test families, where heavy L2 alone left
    the first batch near the reference (breast_cancer, blobs and shapes are easy to fit a little)."""
    return _underfitting_variants(
        [
            ("uf2-fmnist-2-units", "fmnist", {"hidden": (2,)}, 1e-2, 20, 64),
            ("uf2-blobs-1-unit", "blobs", {"hidden": (1,)}, 1e-2, 40, 64),
            ("uf2-shapes-2-units", "shapes", {"hidden": (2,)}, 1e-2, 30, 64),
        ]
    )


def _underfitting_tune_extras() -> list[Variant]:
    """The same two causes of underfitting on the tune families: heavy L2 on a sound MLP, and 1-2
    hidden units. The first batch's tune split had only small-capacity underfitting (digits with 3
    units, a linear model on synth-5), so rules fitted on it never saw a regularised one."""
    return _underfitting_variants(
        [
            ("uf3-digits-l2", "digits", {"hidden": (64,), "l2": 0.05}, 1e-3, 30, 32),
            ("uf3-digits-1-unit", "digits", {"hidden": (1,)}, 1e-2, 30, 32),
            ("uf3-synth-5-l2", "synth-5", {"hidden": (64, 64), "l2": 0.1}, 1e-3, 40, 64),
            ("uf3-synth-5-1-unit", "synth-5", {"hidden": (1,)}, 1e-2, 40, 64),
            ("uf3-wine-1-unit", "wine", {"hidden": (1,)}, 1e-2, 80, 16),
            ("uf3-moons-1-unit", "moons", {"hidden": (1,)}, 1e-2, 40, 32),
        ]
    )


def _still_improving_extras() -> list[Variant]:
    """Each family's sound configuration with a third of its budget: near the reference and still
    improving when the budget ends (the healthy runs an early stop must not cut)."""
    out = []
    for family, f in FAMILIES.items():
        mk: dict[str, Any] = {"hidden": f["hidden"], **({"dropout": f["dropout"]} if "dropout" in f else {})}
        out.append(
            Variant(
                f"hi2-{family.replace('_', '-')}-third-budget",
                "healthy",
                f["view"],
                "mlp",
                "adam",
                f["lr"],
                max(6, f["epochs"] // 3),
                ("healthy",),
                (0, 1),
                f["batch"],
                mk,
                generation=2,
                notes="the sound configuration with a third of its budget: still improving at the end",
            )
        )
    return out


def _tune_mirror_extras() -> list[Variant]:
    """The test split's special runs (large and tiny validation sets, CNNs, frozen features,
    early-stopped and killed runs, 1-2-unit MLPs, constant high rates) on the tune split's own
    kinds of data: textures mirrors shapes and Fashion-MNIST, diabetes mirrors breast_cancer.
    Without them those conditions would be met only at test time."""
    mk: dict[str, Any] = {"hidden": (128,)}
    rows: list[
        tuple[
            str,
            str,
            str,
            str,
            str,
            float,
            int,
            tuple[str, ...],
            tuple[int, ...],
            int,
            dict[str, Any],
            dict[str, Any],
            str,
        ]
    ] = [
        # name, scenario, view, model, optimizer, lr, epochs, intended, seeds, batch, model kwargs, extra, notes
        (
            "textures-10k-oscillate",
            "lr_too_high",
            "textures-10k",
            "mlp",
            "adam",
            0.02,
            25,
            ("oscillation",),
            (0, 1, 2),
            64,
            mk,
            {},
            "Adam 0.02, 10,000 validation images",
        ),
        (
            "textures-10k-healthy",
            "healthy",
            "textures-10k",
            "mlp",
            "adam",
            1e-3,
            20,
            ("healthy",),
            (0, 1),
            64,
            {"hidden": (128,), "dropout": 0.3},
            {},
            "sound MLP with dropout 0.3, 10,000 validation images",
        ),
        (
            "textures-10k-too-slow",
            "lr_too_low",
            "textures-10k",
            "mlp",
            "sgd",
            3e-3,
            30,
            ("too_slow",),
            (0,),
            64,
            mk,
            {},
            "plain SGD 3e-3, 10,000 validation images",
        ),
        (
            "textures-small-val-too-slow",
            "lr_too_low",
            "textures-small-val",
            "mlp",
            "sgd",
            3e-3,
            80,
            ("too_slow",),
            (0,),
            64,
            mk,
            {},
            "plain SGD 3e-3 on 40 validation images",
        ),
        (
            "textures-small-val-healthy",
            "healthy",
            "textures-small-val",
            "mlp",
            "adam",
            1e-3,
            30,
            ("healthy",),
            (0,),
            64,
            mk,
            {},
            "sound MLP, 40 validation images",
        ),
        (
            "textures-small-val-oscillate",
            "lr_too_high",
            "textures-small-val",
            "mlp",
            "adam",
            0.03,
            30,
            ("oscillation",),
            (0,),
            64,
            mk,
            {},
            "Adam 0.03 on 40 validation images",
        ),
        (
            "textures-cnn-healthy",
            "healthy",
            "textures-img",
            "cnn",
            "adam",
            1e-3,
            15,
            ("healthy",),
            (0, 1),
            64,
            {"pool": True},
            {},
            "small CNN on 16x16 textures",
        ),
        (
            "textures-frozen-features",
            "plateau",
            "textures",
            "frozen_features",
            "adam",
            1e-2,
            30,
            ("plateau",),
            (0, 1),
            64,
            {"width": 4},
            {},
            "4 frozen random ReLU features of the textures",
        ),
        (
            "textures-plateau-earlystop",
            "plateau",
            "textures",
            "bottleneck",
            "adam",
            1e-2,
            80,
            ("plateau",),
            (2,),
            64,
            {"width": 1},
            {"early_stop_patience": 8},
            "bottleneck config stopped by EarlyStopping(val_loss, patience 8)",
        ),
        (
            "textures-oscillate-killed",
            "killed",
            "textures",
            "mlp",
            "adam",
            0.05,
            60,
            ("oscillation", "incomplete"),
            (3,),
            64,
            mk,
            {"kill_at": 25},
            "oscillating config killed at epoch 25 of 60",
        ),
        (
            "textures-small-train-overfit-earlystop",
            "overfitting",
            "textures-small-train",
            "mlp",
            "adam",
            1e-3,
            80,
            ("overfitting",),
            (2,),
            32,
            {"hidden": (256, 256)},
            {"early_stop_patience": 10},
            "overfitting config stopped by EarlyStopping(val_loss, patience 10)",
        ),
        (
            "uf4-textures-2-units",
            "underfitting",
            "textures",
            "mlp",
            "adam",
            0.01,
            30,
            ("underfitting",),
            (0, 1, 2),
            64,
            {"hidden": (2,)},
            {},
            "a 2-unit hidden layer: too little capacity",
        ),
        (
            "osc4-textures-adam-0.05",
            "lr_too_high",
            "textures",
            "mlp",
            "adam",
            0.05,
            20,
            ("oscillation",),
            (0, 1),
            64,
            mk,
            {},
            "Adam at 0.05 (constant): swinging losses",
        ),
        (
            "diabetes-small-overfit-earlystop",
            "overfitting",
            "diabetes-small",
            "mlp",
            "adam",
            1e-3,
            100,
            ("overfitting",),
            (2,),
            32,
            {"hidden": (256, 256)},
            {"early_stop_patience": 10},
            "overfitting config stopped by EarlyStopping(val_loss, patience 10)",
        ),
        (
            "diabetes-too-slow-killed",
            "killed",
            "diabetes",
            "mlp",
            "sgd",
            1e-3,
            120,
            ("too_slow", "incomplete"),
            (3,),
            32,
            {"hidden": (32,)},
            {"kill_at": 40},
            "too-slow config killed at epoch 40 of 120",
        ),
        (
            "osc4-diabetes-adam-0.1",
            "lr_too_high",
            "diabetes",
            "mlp",
            "adam",
            0.1,
            30,
            ("oscillation",),
            (0, 1, 2),
            32,
            {"hidden": (32,)},
            {},
            "Adam at 0.1 (constant): swinging losses",
        ),
    ]
    return [
        Variant(
            name,
            scenario,
            view,
            model,
            opt,
            lr,
            epochs,
            intended,
            seeds,
            batch,
            kwargs,
            generation=3,
            notes=notes,
            **extra,
        )
        for name, scenario, view, model, opt, lr, epochs, intended, seeds, batch, kwargs, extra, notes in rows
    ]


#: One configuration of a family: name suffix, scenario, model, its kwargs, optimizer, rate,
#: budget, intended findings, seeds.
Row = tuple[str, str, str, dict[str, Any], str, float, int, tuple[str, ...], tuple[int, ...]]


def _row_variants(
    prefix: str, view: str, batch: int, rows: list[Row], generation: int, note: str
) -> list[Variant]:
    """The variants ``<prefix>-<suffix>`` of one family's ``rows`` on ``view``, notes ending in ``note``."""
    return [
        Variant(
            f"{prefix}-{suffix}",
            scenario,
            view,
            model,
            opt,
            rate,
            budget,
            intended,
            seeds,
            batch,
            kwargs,
            generation=generation,
            notes=f"{scenario.replace('_', ' ')}, {opt} {rate:g}, {budget} epochs, {note}",
        )
        for suffix, scenario, model, kwargs, opt, rate, budget, intended, seeds in rows
    ]


def _tiny_val_extras() -> list[Variant]:
    """Validation sets of 13 to 16 examples (generation 5), as in small public projects: accuracy
    moves in steps of 1/13 to 1/16, its binomial SD near 0.8 is about 0.1. Each family's sound
    setting, then too slow, overfitting, oscillating, a plateau, an underfit and a dead network.
    """
    # view, hidden, Adam's rate, batch, budget, plateau model (name, kwargs)
    families: list[tuple[str, tuple[int, ...], float, int, int, tuple[str, dict[str, Any]]]] = [
        ("moons-tiny-val", (32, 32), 0.01, 32, 40, ("frozen_features", {"width": 2})),
        ("wine-tiny-val", (16,), 0.003, 16, 80, ("frozen_features", {"width": 2})),
        ("bc-tiny-val", (32,), 1e-3, 32, 40, ("frozen_features", {"width": 1})),
        ("blobs-tiny-val", (32,), 0.003, 64, 40, ("bottleneck", {"width": 1})),
    ]
    out: list[Variant] = []
    for view, hidden, lr, batch, epochs, plateau in families:
        mk: dict[str, Any] = {"hidden": hidden}
        note = "validation set of " + view.split("-")[0]
        rows: list[Row] = [
            ("healthy", "healthy", "mlp", mk, "adam", lr, epochs, ("healthy",), (0, 1)),
            ("too-slow", "lr_too_low", "mlp", mk, "sgd", 1e-3, 2 * epochs, ("too_slow",), (0,)),
            (
                "overfit",
                "overfitting",
                "mlp",
                {"hidden": (256, 256)},
                "adam",
                1e-3,
                2 * epochs,
                ("overfitting",),
                (0, 1),
            ),
            ("oscillate", "lr_too_high", "mlp", mk, "adam", 0.05, epochs, ("oscillation",), (0,)),
            ("plateau", "plateau", plateau[0], plateau[1], "adam", 0.01, epochs, ("plateau",), (0,)),
            (
                "underfit",
                "underfitting",
                "mlp",
                {"hidden": (1,)},
                "adam",
                0.01,
                epochs,
                ("underfitting",),
                (0,),
            ),
            ("dead-net", "dead_net", "dead_mlp", mk, "adam", lr, 20, ("not_learning",), (0,)),
        ]
        out += _row_variants(view, view, batch, rows, 5, f"tiny {note}")
    return out


def _long_budget_extras() -> list[Variant]:
    """Budgets of 150 to 400 epochs on small tabular sets (generation 6), as public training logs
    often have them: each family's sound setting run far past its convergence, then an overfitting
    MLP, a rate too low, a rate too high, a plateau and an underfit, each trained that long."""
    # view, hidden, Adam's rate, batch, plateau model (name, kwargs)
    families: list[tuple[str, tuple[int, ...], float, int, tuple[str, dict[str, Any]]]] = [
        ("wine", (16,), 3e-3, 16, ("frozen_features", {"width": 2})),
        ("iris", (16,), 1e-2, 16, ("frozen_features", {"width": 2})),
        ("moons", (32, 32), 1e-2, 32, ("frozen_features", {"width": 2})),
        ("diabetes", (32,), 1e-3, 32, ("frozen_features", {"width": 1})),
        ("bc", (32,), 1e-3, 32, ("frozen_features", {"width": 1})),
        ("blobs", (32,), 3e-3, 64, ("bottleneck", {"width": 1})),
    ]
    out: list[Variant] = []
    for view, hidden, lr, batch, plateau in families:
        mk: dict[str, Any] = {"hidden": hidden}
        rows: list[Row] = [
            ("healthy", "healthy", "mlp", mk, "adam", lr, 300, ("healthy",), (0,)),
            (
                "overfit",
                "overfitting",
                "mlp",
                {"hidden": (256, 256)},
                "adam",
                1e-3,
                300,
                ("overfitting",),
                (0,),
            ),
            ("too-slow", "lr_too_low", "mlp", mk, "sgd", 1e-3, 400, ("too_slow",), (0,)),
            ("oscillate", "lr_too_high", "mlp", mk, "adam", 0.05, 200, ("oscillation",), (0,)),
            ("plateau", "plateau", plateau[0], plateau[1], "adam", 0.01, 200, ("plateau",), (0,)),
            ("underfit", "underfitting", "mlp", {"hidden": (1,)}, "adam", 0.01, 150, ("underfitting",), (0,)),
        ]
        out += _row_variants(f"long-{view}", view, batch, rows, 6, "a long budget")
    return out


def _slow_extras() -> list[Variant]:
    """Rates too low in every family (generation 7), so that slow runs stand beside the healthy
    ones in equal measure: plain SGD at 1e-3 and 3e-3 and Adam at a thirtieth of the family's
    rate, each for the family's usual budget, two seeds: losses still falling when the budget ends."""
    out: list[Variant] = []
    for family, f in FAMILIES.items():
        mk: dict[str, Any] = {"hidden": f["hidden"], **({"dropout": f["dropout"]} if "dropout" in f else {})}
        ep = f["epochs"]
        rows: list[Row] = [
            ("sgd-1e-3", "lr_too_low", "mlp", mk, "sgd", 1e-3, ep, ("too_slow",), (0, 1)),
            ("sgd-3e-3", "lr_too_low", "mlp", mk, "sgd", 3e-3, ep, ("too_slow",), (0, 1)),
            ("adam-small", "lr_too_low", "mlp", mk, "adam", f["lr"] / 30, ep, ("too_slow",), (0, 1)),
        ]
        out += _row_variants(
            f"slow-{family.replace('_', '-')}", f["view"], f["batch"], rows, 7, "a rate too low"
        )
    return out


def _fast_extras() -> list[Variant]:
    """Rates too high in every family (generation 8), the thinnest finding of both splits: Adam at
    0.02, SGD with momentum at 0.2 and plain SGD at 0.5, each for the family's usual budget."""
    out: list[Variant] = []
    for family, f in FAMILIES.items():
        mk: dict[str, Any] = {"hidden": f["hidden"], **({"dropout": f["dropout"]} if "dropout" in f else {})}
        ep = f["epochs"]
        rows: list[Row] = [
            ("adam-0.02", "lr_too_high", "mlp", mk, "adam", 0.02, ep, ("oscillation",), (0,)),
            ("sgdm-0.2", "lr_too_high", "mlp", mk, "sgd-momentum", 0.2, ep, ("oscillation",), (0,)),
            ("sgd-0.5", "lr_too_high", "mlp", mk, "sgd", 0.5, ep, ("oscillation",), (0,)),
        ]
        out += _row_variants(
            f"fast-{family.replace('_', '-')}", f["view"], f["batch"], rows, 8, "a rate too high"
        )
    return out


def _dropout_extras() -> list[Variant]:
    """Heavy dropout in every family (generation 9): input dropout 0.2 and 0.5 after each hidden
    layer of the family's MLP (Srivastava et al. 2014), at the family's rate and budget, two seeds.
    Keras scores training accuracy with dropout on, so training sits below validation: a sound
    run must not read as underfitting for that alone (found on a real probe run outside the corpus)."""
    out: list[Variant] = []
    for family, f in FAMILIES.items():
        mk: dict[str, Any] = {"hidden": f["hidden"], "dropout": 0.5, "input_dropout": 0.2}
        rows: list[Row] = [
            ("dropout", "healthy", "dropout_mlp", mk, "adam", f["lr"], f["epochs"], ("healthy",), (0, 1)),
        ]
        out += _row_variants(
            f"drop-{family.replace('_', '-')}",
            f["view"],
            f["batch"],
            rows,
            9,
            "input dropout 0.2, dropout 0.5",
        )
    return out


def _blind_chance_probes() -> list[Variant]:
    """Runs at chance on the tune split that the file alone must read right (generation 4):
    shuffled labels on 5 and 6 classes with 1,000 and 40 validation examples (a model memorising
    noise: val_accuracy at 1 / K, val_loss above ln K), and rates far too small on the same tasks,
    whose accuracy leaves 1 / K slowly or not at all while the loss falls."""
    mk: dict[str, Any] = {"hidden": (128,)}
    rows: list[tuple[str, str, str, str, float, int, tuple[str, ...], tuple[int, ...], str]] = [
        # name, scenario, view, optimizer, lr, epochs, intended, seeds, notes
        (
            "synth-5-shuffled-labels",
            "shuffled_labels",
            "synth-5-shuffled",
            "adam",
            1e-3,
            40,
            ("not_learning",),
            (0, 1),
            "5 classes, labels permuted: memorises, learns nothing",
        ),
        (
            "synth-5-small-val-shuffled-labels",
            "shuffled_labels",
            "synth-5-small-val-shuffled",
            "adam",
            1e-3,
            40,
            ("not_learning",),
            (0, 1),
            "5 classes, labels permuted, 40 validation examples",
        ),
        (
            "textures-small-val-shuffled-labels",
            "shuffled_labels",
            "textures-small-val-shuffled",
            "adam",
            1e-3,
            30,
            ("not_learning",),
            (0, 1),
            "6 textures, labels permuted, 40 validation examples",
        ),
        (
            "synth-5-lr-small",
            "lr_too_low",
            "synth-5",
            "sgd",
            3e-4,
            60,
            ("too_slow",),
            (0, 1),
            "SGD at 3e-4 on 5 classes: a slow start",
        ),
        (
            "synth-5-small-val-lr-small",
            "lr_too_low",
            "synth-5-small-val",
            "sgd",
            3e-4,
            60,
            ("too_slow",),
            (0, 1),
            "SGD at 3e-4, 40 validation examples",
        ),
        (
            "textures-lr-small",
            "lr_too_low",
            "textures",
            "sgd",
            3e-4,
            40,
            ("too_slow",),
            (0, 1),
            "SGD at 3e-4 on 6 textures: a slow start",
        ),
    ]
    return [
        Variant(
            name, scenario, view, "mlp", opt, lr, epochs, intended, seeds, 64, mk, generation=4, notes=notes
        )
        for name, scenario, view, opt, lr, epochs, intended, seeds, notes in rows
    ]


def all_variants() -> list[Variant]:
    """Every variant of the corpus, families first, in a fixed order.

    Raises:
        ValueError: two variants would write the same file.
    """
    out: list[Variant] = []
    for family, settings in FAMILIES.items():
        out += _family_variants(family, settings)
    out += _specials()
    out += _oscillation_extras()
    out += _underfitting_extras()
    out += _underfitting_tune_extras()
    out += _still_improving_extras()
    out += _tune_mirror_extras()
    out += _blind_chance_probes()
    out += _tiny_val_extras()
    out += _long_budget_extras()
    out += _slow_extras()
    out += _fast_extras()
    out += _dropout_extras()
    seen: set[str] = set()
    for v in out:
        for seed in v.seeds:
            key = f"{v.name}-s{seed}"
            if key in seen:
                raise ValueError(f"duplicate run {key}")
            seen.add(key)
    return out
