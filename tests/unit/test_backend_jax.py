"""The training module is backend-agnostic: train() and tune() run under KERAS_BACKEND=jax.

Keras picks its backend once, at import, so the run happens in a subprocess
(``tests/unit/jax_probe.py``) where ``import tensorflow`` is made to fail: the training path must
not need TensorFlow at all (Keras 3's multi-backend design, https://keras.io/getting_started/).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("jax")


@pytest.mark.backend
@pytest.mark.parametrize(
    "augment",
    [
        False,
        # XLA compiles Keras' RandomTranslation/RandomZoom (an affine resampling) for ~20 s on 2
        # loaded cores: the same run with augmentation is the slow variant.
        pytest.param(True, marks=pytest.mark.slow, id="augment"),
    ],
    ids=lambda augment: "augment" if augment else "plain",
)
def test_train_and_tune_run_under_jax_without_tensorflow(params_file, tmp_path: Path, augment: bool) -> None:
    params = params_file(
        {
            "train": {"model": "small_cnn", "epochs": 2, "batch_size": 64},
            "tune": {
                "n_trials": 2,
                "models": ["mlp"],  # small_cnn is the 1-epoch training above
                "augment": [False],
                "batch_sizes": [64],
                "learning_rate": [0.001, 0.01],
            },
        }
    )
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    out = tmp_path / "probe.json"
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "KERAS_HOME": str(tmp_path / "keras-home"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.unit.jax_probe", str(params), storage, str(out), str(int(augment))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(out.read_text())

    assert got["backend"] == "jax"
    assert got["train"]["backend"] == "jax"
    assert got["train"]["model_backend_arrays"].startswith("jax")
    assert got["train"]["epochs_run"] == 1
    assert got["jit_compile"] == {"False": True, "True": True}
    assert all(math.isfinite(got["train"]["history"][k][0]) for k in ("loss", "val_loss", "val_accuracy"))

    trials = got["tune"]["trials"]
    assert [t["number"] for t in trials] == [0, 1]
    states = {t["state"] for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    assert all(1 <= t["epochs_run"] <= 2 for t in trials)
    # Two epochs on 400 digits learn well past chance (0.1); the best model, saved under jax as
    # .keras, reloads and scores the test split.
    assert got["tune"]["best_val_accuracy"] > 0.3
    assert got["tune"]["test_accuracy"] is not None and got["tune"]["test_accuracy"] > 0.3
    assert Path(got["tune"]["best_model_path"]).is_file()

    import optuna

    from pipelines.config import load_params

    study = optuna.load_study(study_name=load_params(params).tune.study_name, storage=storage)
    assert len(study.trials) == 2
    print(
        f"jax probe: {got['seconds']:.1f} s in the subprocess (imports {got['import_seconds']:.1f} s, "
        f"1-epoch train done at {got['train_seconds']:.1f} s)"
    )
