"""Reliability rows: the defaults of params.yaml work on a user's own small image folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines import steps
from pipelines.config import ValidateConfig
from pipelines.fetch import DataError
from pipelines.validate import cross_split_checks, suite_parameters
from tests.reliability._support import prepared


def test_default_stages_run_end_to_end_on_a_3_class_folder_of_102_images(
    params_file, image_folder, mlflow_uri
):
    """Only base.dataset, fetch.image_folder (and 2 epochs, for time) differ from params.yaml."""
    from pipelines.config import load_params

    params = load_params(
        params_file(
            {
                "base": {"dataset": "folder"},
                "fetch": {"image_folder": str(image_folder)},
                "train": {"epochs": 2},
            }
        )
    )
    prepared(params)  # fetch, prepare, validate: validation passes with the default thresholds
    steps.run_baseline(params)
    outcome = steps.run_train(params)
    steps.run_evaluate(params)
    compare = steps.run_compare(params)
    assert outcome.epochs_run == 2 and compare.run_id == outcome.run_id
    rows = json.loads(params.paths.validation_metrics.read_text())["validation"]
    assert rows["success"] == 1.0 and rows["rows_val"] < 29


def _manifest(n_train: int, n_val: int, seed: int, val_shift: float = 0.0) -> pd.DataFrame:
    """3 balanced classes; per-image mean intensity ~ N(110, 35) in both splits (+ val_shift in val)."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, n, shift in (("train", n_train, 0.0), ("val", n_val, val_shift)):
        for i in range(n):
            rows.append(
                {
                    "id": f"{split}-{i}",
                    "split": split,
                    "label": i % 3,
                    "content_hash": f"{split}-{seed}-{i}",
                    "pixel_mean": float(np.clip(rng.normal(110 + shift, 35), 0, 255)),
                }
            )
    return pd.DataFrame(rows)


def test_skew_checks_do_not_fail_on_noise_at_29_validation_images():
    cfg = ValidateConfig()
    over_threshold = 0
    for seed in range(20):
        report, failed = cross_split_checks(_manifest(120, 29, seed), cfg, num_classes=3)
        assert not failed, [f.reason for f in failed]
        over_threshold += report["intensity_kl"]["value"] > cfg.max_intensity_kl
    # The fixed threshold alone would have failed every one of these same-distribution splits.
    assert over_threshold == 20


def test_real_skew_still_fails_at_29_validation_images():
    report, failed = cross_split_checks(
        _manifest(120, 29, 0, val_shift=90.0), ValidateConfig(), num_classes=3
    )
    assert [f.check for f in failed] == ["intensity_kl"]
    assert report["intensity_kl"]["p_value"] < 0.001
    assert "more than sampling noise on 29 validation images explains" in failed[0].reason


@pytest.mark.parametrize("k", [2, 3, 10, 20])
def test_class_share_bounds_are_relative_to_one_over_k(k):
    bounds = suite_parameters(ValidateConfig(), {"num_classes": k, "image_shape": [8, 8, 1]})
    assert bounds["class_share_min"] == pytest.approx(0.5 / k)
    assert bounds["class_share_max"] == pytest.approx(1.5 / k)
    assert bounds["class_share_min"] < 1 / k < bounds["class_share_max"]  # a balanced split passes


def test_val_size_larger_than_the_folder_names_the_key(folder_project):
    params = folder_project({"prepare": {"val_size": 10000}})
    steps.run_fetch(params)
    with pytest.raises(DataError, match=r"params.yaml: prepare.val_size: 10000 is impossible"):
        steps.run_prepare(params)
