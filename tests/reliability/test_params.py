"""Reliability rows: params that make no sense are refused when params.yaml is loaded, naming the key."""

from __future__ import annotations

import re

import pytest

from pipelines.config import ConfigError, load_params


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        (
            {"train": {"learning_rate": float("inf")}},
            "params.yaml: train.learning_rate: must be finite, got inf",
        ),
        (
            {"validate": {"max_label_kl": float("nan")}},
            "params.yaml: validate.max_label_kl: must be finite, got nan",
        ),
        (
            {"validate": {"class_share_min_ratio": 2.0, "class_share_max_ratio": 1.5}},
            "params.yaml: validate.class_share_max_ratio: must be above class_share_min_ratio (2), got 1.5",
        ),
        (
            {"tune": {"learning_rate": [0.01, 0.0001]}},
            "params.yaml: tune.learning_rate: inverted range: low 0.01 > high 0.0001",
        ),
        (
            {"tune": {"l2": [-0.001, 0.001]}},
            "params.yaml: tune.l2: [low, high] is sampled log-uniformly, so low must be > 0",
        ),
        ({"tune": {"dropout": [0.2, 1.5]}}, "params.yaml: tune.dropout: dropout must lie in [0, 1)"),
        ({"tune": {"batch_sizes": [64, 0]}}, "params.yaml: tune.batch_sizes: batch sizes must be >= 1"),
        (
            {"prepare": {"val_size": 1.5}},
            "params.yaml: prepare.val_size: a fraction must lie strictly between 0 and 1, got 1.5",
        ),
        ({"prepare": {"val_size": 0}}, "params.yaml: prepare.val_size: a count must be >= 1, got 0"),
        ({"prepare": {"test_size": 1.0}}, "params.yaml: prepare.test_size: a fraction must lie strictly"),
        ({"compare": {"alpha": 1.5}}, "params.yaml: compare.alpha: Input should be less than 1"),
        ({"validate": {"skew_alpha": 0}}, "params.yaml: validate.skew_alpha: Input should be greater than 0"),
        (
            {"base": {"dataset": "folder"}, "fetch": {"image_folder": None}},
            "params.yaml: fetch.image_folder: must be set when base.dataset is 'folder'",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_params_are_refused_at_load_naming_the_key(params_file, updates, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(params_file(updates))


def test_the_repository_params_pass_the_same_rules():
    from pathlib import Path

    load_params(Path(__file__).resolve().parents[2] / "params.yaml")


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("base: 5\n", None, "p.yaml: base: must be a mapping of keys to values, got 5"),
        ("base: {profile: [a]}\n", None, "p.yaml: base.profile: must be a profile name, got ['a']"),
        ("base: {profile: full}\nprofiles: {full: 5}\n", None, "p.yaml: profiles.full: must be a mapping"),
        (
            "train: {epochs: 3}\n",
            ["train.epochs=[1"],
            "override 'train.epochs=[1': the value is not valid YAML",
        ),
    ],
    ids=["base-not-a-mapping", "profile-not-a-name", "profile-not-a-mapping", "override-not-yaml"],
)
def test_malformed_params_files_and_overrides_name_the_key(tmp_path, text, overrides, message):
    # Each had escaped as a raw AttributeError, TypeError or yaml ParserError naming nothing.
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(path, overrides=overrides)


def test_a_params_file_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"train:\n  epochs: 3\n# \xff\xfe\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not UTF-8 text")):
        load_params(path)
