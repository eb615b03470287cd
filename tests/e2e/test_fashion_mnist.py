"""End to end on a Fashion-MNIST subset: the CLI stages as dvc.yaml calls them, one after another (the
Prefect flow that runs the same steps is tested in tests/flows/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import tracking
from pipelines.config import load_params

pytestmark = pytest.mark.slow

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_stages_on_fashion_mnist_subset(params_file, mlflow_uri, tmp_path):
    # The MLP: with ~25 steps per epoch the CNN's BatchNorm moving averages lag (0.37 after 2 epochs).
    path = params_file({"train": {"model": "mlp", "epochs": 3, "max_train_examples": 3000}})
    cli = Path(sys.executable).parent / "curvewatch"
    for stage in ["fetch", "prepare", "validate", "train", "evaluate", "compare"]:
        done = subprocess.run(
            [cli, stage, "--params", str(path)], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0, f"{stage} failed:\n{done.stdout}\n{done.stderr}"
    params = load_params(path)
    assert (params.paths.compare_dir / "report.md").is_file()
    mc = tracking.client()
    champion = tracking.get_champion(mc, params.tracking.registered_model)
    assert champion is not None
    assert mc.get_run(champion.run_id).data.metrics["test_accuracy"] > 0.7
