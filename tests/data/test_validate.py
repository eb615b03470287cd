"""The validate stage on good and deliberately broken manifests (expectation suites + cross-split checks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.config import ValidateConfig
from pipelines.validate import (
    ValidationInputError,
    ValidationResult,
    _parameter_names,
    class_shares,
    find_leakage,
    format_failures,
    kl_divergence,
    suite_parameters,
    validate,
)

from .conftest import NUM_CLASSES, make_manifest

Prepared = Callable[..., Path]


def run(cfg: ValidateConfig, prepared_dir: Path, suites_dir: Path) -> ValidationResult:
    return validate(cfg, prepared_dir, prepared_dir.parent / "report", suites_dir=suites_dir)


def failed_keys(result: ValidationResult) -> set[tuple[str, str, str | None]]:
    return {(f.suite, f.check, f.column) for f in result.failed}


# -- good data ---------------------------------------------------------------------------------------


def test_good_data_passes_and_writes_reports(cfg, suites_dir, prepared, good_manifest, tmp_path):
    result = run(cfg, prepared(good_manifest), suites_dir)

    assert result.success, format_failures(result)
    assert result.failed == []
    m = result.metrics
    assert m["validation.success"] == 1.0
    assert m["validation.expectations_evaluated"] >= 30
    assert m["validation.expectations_failed"] == 0
    assert m["validation.leakage_count"] == 0 and m["validation.leakage_fraction"] == 0
    assert m["validation.label_kl"] == pytest.approx(0, abs=1e-9)
    assert m["validation.intensity_kl"] == pytest.approx(0, abs=1e-9)
    assert m["validation.rows_train"] == 300 and m["validation.rows"] == 500
    assert m["validation.leakage_count_train_test"] == 0
    assert all(isinstance(v, float) for v in m.values())
    # no name is a dotted prefix of another, so the metrics nest into {"validation": {...}} for DVC
    assert not [(a, b) for a in m for b in m if b.startswith(a + ".")]
    assert set(result.leakage) == {"train-val", "train-test", "val-test"}

    out = tmp_path / "report"
    assert result.results_path == out / "results.json"
    doc = json.loads(result.results_path.read_text())
    assert doc["success"] is True
    assert set(doc["gx"]) == {"manifest", "class_balance"}
    assert doc["gx"]["manifest"]["statistics"]["unsuccessful_expectations"] == 0
    assert doc["suite_parameters"]["label_max"] == NUM_CLASSES - 1
    assert json.loads((out / "metrics.json").read_text()) == m
    assert result.data_docs_index == out / "data_docs" / "index.html"
    assert result.data_docs_index.is_file()
    assert "manifest" in result.data_docs_index.read_text()
    assert "PASSED" in (out / "summary.md").read_text()
    assert "validation passed" in format_failures(result)
    # the report was built next to out_dir and renamed: no temporary directories are left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "report"]


def test_rerun_replaces_previous_report(cfg, suites_dir, prepared, good_manifest, tmp_path):
    prepared_dir = prepared(good_manifest)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "stale.txt").write_text("old")
    first = run(cfg, prepared_dir, suites_dir)
    assert first.success
    assert not (tmp_path / "report" / "stale.txt").exists()
    bad = good_manifest.copy()
    bad.loc[0, "pixel_max"] = 300
    prepared(bad)
    second = run(cfg, prepared_dir, suites_dir)
    assert not second.success
    assert json.loads(second.results_path.read_text())["success"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "report"]


# -- broken rows -------------------------------------------------------------------------------------


# (row, column, bad value, expectation that must fail); one fault per row, all in one manifest so the
# suite runs once. Row i of the good manifest has id "train-0000i".
FAULTS = [
    (3, "pixel_mean", np.nan, "expect_column_values_to_not_be_null"),
    (5, "id", None, "expect_column_values_to_not_be_null"),
    (7, "label", NUM_CLASSES, "expect_column_values_to_be_between"),
    (11, "pixel_max", 300, "expect_column_values_to_be_between"),
    (13, "pixel_min", -2, "expect_column_values_to_be_between"),
    (17, "height", 27, "expect_column_values_to_be_between"),
    (19, "channels", 3, "expect_column_values_to_be_between"),
    (23, "split", "holdout", "expect_column_values_to_be_in_set"),
    (29, "content_hash", "not-a-hash", "expect_column_values_to_match_regex"),
    (31, "pixel_std", 200.0, "expect_column_values_to_be_between"),
]


def test_broken_rows_fail_the_named_expectations(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.copy()
    for row, column, value, _ in FAULTS:
        bad.loc[row, column] = value
    result = run(cfg, prepared(bad), suites_dir)

    assert not result.success
    report = format_failures(result)
    manifest_failures = {(f.check, f.column): f for f in result.failed if f.suite == "manifest"}
    for row, column, _, check in FAULTS:
        failure = manifest_failures.get((check, column))
        assert failure is not None, f"{check}({column}) did not fail:\n{report}"
        assert "1 of 500 rows" in failure.observed
        if column != "id":
            assert f"id='train-{row:05d}'" in failure.observed  # the failing row is named by its id
        assert f"{check}({column})" in report
    assert len(manifest_failures) == len(FAULTS)
    assert result.metrics["validation.success"] == 0.0
    # the "holdout" split also unbalances the class-share table
    assert result.metrics["validation.expectations_failed"] == len(FAULTS) + 1


def test_single_out_of_range_pixel_fails(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.copy()
    bad.loc[42, "pixel_max"] = 300
    result = run(cfg, prepared(bad), suites_dir)

    assert failed_keys(result) == {("manifest", "expect_column_values_to_be_between", "pixel_max")}
    assert "300" in result.failed[0].observed and "train-00042" in result.failed[0].observed


def test_wrong_dtype_fails_type_expectation(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.astype({"label": "float64"})
    result = run(cfg, prepared(bad), suites_dir)

    assert ("manifest", "expect_column_values_to_be_of_type", "label") in failed_keys(result)
    failure = next(f for f in result.failed if f.column == "label")
    assert "float64" in failure.observed


def test_missing_column_fails_schema(cfg, suites_dir, prepared, good_manifest):
    result = run(cfg, prepared(good_manifest.drop(columns=["pixel_std"])), suites_dir)

    keys = failed_keys(result)
    assert ("manifest", "expect_table_columns_to_match_set", None) in keys
    assert ("manifest", "expect_column_values_to_be_of_type", "pixel_std") in keys
    schema = next(f for f in result.failed if f.check == "expect_table_columns_to_match_set")
    assert "pixel_std" in schema.observed
    typed = next(f for f in result.failed if f.check == "expect_column_values_to_be_of_type")
    assert "missing" in typed.observed


def test_missing_content_hash_column_still_reports(cfg, suites_dir, prepared, good_manifest):
    result = run(cfg, prepared(good_manifest.drop(columns=["content_hash"])), suites_dir)

    assert ("cross_split", "leakage", None) in failed_keys(result)
    assert "validation.leakage_count" not in result.metrics
    assert result.results_path.is_file()


def test_class_imbalance_fails_class_balance(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.copy()
    # relabel 20 of the train rows of class 1 as class 0: class 0 holds 50/300 of train, class 1 10/300
    idx = bad.index[(bad["split"] == "train") & (bad["label"] == 1)][:20]
    bad.loc[idx, "label"] = 0
    result = run(cfg.model_copy(update={"max_label_kl": 10.0}), prepared(bad), suites_dir)

    assert not result.success
    assert ("class_balance", "expect_column_values_to_be_between", "share") in failed_keys(result)
    failure = next(f for f in result.failed if f.suite == "class_balance")
    assert "2 of 30 rows" in failure.observed  # 3 splits x 10 classes
    assert "split='train' label=0 share=0.1667" in failure.observed
    assert all(f.suite == "class_balance" for f in result.failed)


def test_missing_class_fails_class_balance(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest[~((good_manifest["split"] == "test") & (good_manifest["label"] == 3))]
    result = run(cfg, prepared(bad), suites_dir)
    assert ("class_balance", "expect_column_values_to_be_between", "share") in failed_keys(result)


# -- leakage -----------------------------------------------------------------------------------------


def _leak(manifest: pd.DataFrame, n: int) -> pd.DataFrame:
    """Give the first ``n`` test rows the content hash of a train row (exact duplicate images)."""
    bad = manifest.copy()
    train = bad.index[bad["split"] == "train"][:n]
    test = bad.index[bad["split"] == "test"][:n]
    bad.loc[test, "content_hash"] = bad.loc[train, "content_hash"].to_numpy()
    return bad


def test_leakage_above_threshold_fails_and_names_ids(cfg, suites_dir, prepared, good_manifest):
    result = run(
        cfg.model_copy(update={"max_leakage_fraction": 0.02}), prepared(_leak(good_manifest, 5)), suites_dir
    )

    assert not result.success
    assert failed_keys(result) == {("cross_split", "leakage", "train-test")}
    pair = result.leakage["train-test"]
    assert pair["count"] == 5 and pair["fraction"] == pytest.approx(0.05)
    assert pair["ids"]["test"] == [f"test-{i:05d}" for i in range(5)]
    assert pair["ids"]["train"] == [f"train-{i:05d}" for i in range(5)]
    assert result.leakage["train-val"]["count"] == 0
    assert result.metrics["validation.leakage_count"] == 5
    assert result.metrics["validation.leakage_fraction"] == pytest.approx(0.05)
    assert "test-00000" in format_failures(result)
    assert json.loads(result.results_path.read_text())["cross_split"]["leakage"]["train-test"]["count"] == 5


def test_leakage_below_threshold_passes_but_is_reported(cfg, suites_dir, prepared, good_manifest):
    result = run(
        cfg.model_copy(update={"max_leakage_fraction": 0.02}), prepared(_leak(good_manifest, 1)), suites_dir
    )

    assert result.success, format_failures(result)
    assert result.leakage["train-test"]["count"] == 1
    assert result.metrics["validation.leakage_count"] == 1
    assert result.metrics["validation.leakage_fraction"] == pytest.approx(0.01)


def test_leakage_counts_the_rows_a_duplicated_image_contaminates(cfg, suites_dir, prepared, good_manifest):
    # One training image copied into 5 test rows counted once: 0.1% of 1,000 test rows "leaked"
    # while 0.5% were, and the default max_leakage_fraction (0.001) passed it.
    bad = good_manifest.copy()
    train = bad.index[bad["split"] == "train"][0]
    bad.loc[bad.index[bad["split"] == "test"][:5], "content_hash"] = bad.loc[train, "content_hash"]
    pair = find_leakage(bad)["train-test"]
    test_rows = int((bad["split"] == "test").sum())
    assert pair["count"] == 1 and pair["rows"] == {"train": 1, "test": 5}
    assert pair["fraction"] == pytest.approx(5 / test_rows)
    result = run(cfg.model_copy(update={"max_leakage_fraction": 4.5 / test_rows}), prepared(bad), suites_dir)
    assert failed_keys(result) == {("cross_split", "leakage", "train-test")}


def test_find_leakage_caps_ids_and_ignores_within_split_duplicates(good_manifest):
    bad = _leak(good_manifest, 60)
    bad.loc[bad.index[bad["split"] == "val"][:2], "content_hash"] = "f" * 64  # duplicate inside val only
    leakage = find_leakage(bad, id_cap=20)
    assert leakage["train-test"]["count"] == 60
    assert len(leakage["train-test"]["ids"]["test"]) == 20
    assert leakage["train-val"]["count"] == 0 and leakage["val-test"]["count"] == 0


# -- train vs validation skew ------------------------------------------------------------------------


def test_label_skew_fails_label_kl_only(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.copy()
    val = bad.index[bad["split"] == "val"]
    bad.loc[val, "label"] = np.where(np.arange(len(val)) % 2 == 0, 0, bad.loc[val, "label"])
    result = run(
        cfg.model_copy(update={"class_share_max_ratio": 10.0, "class_share_min_ratio": 0.0}),
        prepared(bad),
        suites_dir,
    )

    assert failed_keys(result) == {("cross_split", "label_kl", "label")}, format_failures(result)
    assert result.metrics["validation.label_kl"] > cfg.max_label_kl
    assert result.metrics["validation.intensity_kl"] <= cfg.max_intensity_kl


def test_intensity_skew_fails_intensity_kl_only(cfg, suites_dir, prepared, good_manifest):
    bad = good_manifest.copy()
    val = bad["split"] == "val"
    bad.loc[val, "pixel_mean"] = bad.loc[val, "pixel_mean"] + 40.0
    result = run(cfg, prepared(bad), suites_dir)

    assert failed_keys(result) == {("cross_split", "intensity_kl", "pixel_mean")}, format_failures(result)
    assert result.metrics["validation.intensity_kl"] > cfg.max_intensity_kl
    assert result.metrics["validation.label_kl"] == pytest.approx(0, abs=1e-9)


def test_missing_val_split_fails_skew_checks(cfg, suites_dir, prepared, good_manifest):
    result = run(cfg, prepared(good_manifest[good_manifest["split"] != "val"]), suites_dir)
    keys = failed_keys(result)
    assert ("cross_split", "label_kl", "label") in keys
    assert ("cross_split", "intensity_kl", "pixel_mean") in keys


def test_kl_divergence_is_zero_for_proportional_histograms_and_finite_for_empty_bins():
    assert kl_divergence(np.array([30, 30, 0]), np.array([10, 10, 0])) == pytest.approx(0, abs=1e-12)
    value = kl_divergence(np.array([1, 1, 1]), np.array([1, 1, 0]))
    assert np.isfinite(value) and value > 1
    with pytest.raises(ValueError):
        kl_divergence(np.array([0, 0]), np.array([1, 1]))


def test_class_shares_lists_absent_classes():
    manifest = make_manifest({"train": 2}, num_classes=3)
    shares = class_shares(manifest[manifest["label"] != 2], num_classes=3)
    assert shares["share"].tolist() == [0.5, 0.5, 0.0]
    assert shares["count"].tolist() == [2, 2, 0]


# -- inputs ------------------------------------------------------------------------------------------


def test_missing_manifest_raises_naming_the_file(cfg, suites_dir, tmp_path):
    with pytest.raises(ValidationInputError, match="manifest.parquet"):
        validate(cfg, tmp_path / "nothing", tmp_path / "report", suites_dir=suites_dir)
    assert not (tmp_path / "report").exists()


def test_unreadable_manifest_raises_naming_the_file(cfg, suites_dir, prepared, good_manifest, tmp_path):
    prepared_dir = prepared(good_manifest)
    (prepared_dir / "manifest.parquet").write_text("not parquet")
    with pytest.raises(ValidationInputError, match="manifest.parquet"):
        validate(cfg, prepared_dir, tmp_path / "report", suites_dir=suites_dir)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "not found"),
        ("{not json", "cannot read"),
        (
            '{"name": "manifest", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]}',
            "expect_no_such",
        ),
        (
            '{"name": "manifest", "expectations": [{"type": "expect_column_values_to_be_between",'
            ' "kwargs": {"column": "label", "max_value": {"$PARAMETER": "nope"}}}]}',
            "nope",
        ),
    ],
)
def test_bad_suite_raises_naming_the_file(cfg, suites_dir, prepared, good_manifest, tmp_path, content, match):
    local = tmp_path / "expectations"
    local.mkdir()
    (local / "class_balance.json").write_text((suites_dir / "class_balance.json").read_text())
    if content is not None:
        (local / "manifest.json").write_text(content)
    with pytest.raises(ValidationInputError, match=match) as info:
        validate(cfg, prepared(good_manifest), tmp_path / "report", suites_dir=local)
    assert str(local / "manifest.json") in str(info.value)


def test_repository_suites_load_as_json_with_known_parameters(suites_dir):
    for name in ("manifest", "class_balance"):
        suite = json.loads((suites_dir / f"{name}.json").read_text())
        assert suite["name"] == name
        assert all("type" in e and "kwargs" in e for e in suite["expectations"])
        # every $PARAMETER the suite names is one the validation step supplies
        used = _parameter_names(suite["expectations"])
        known = suite_parameters(ValidateConfig(), {"num_classes": 10, "image_shape": [28, 28, 1]})
        assert used <= set(known), (name, used - set(known))
