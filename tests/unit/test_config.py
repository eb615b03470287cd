from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.config import ConfigError, Params, load_params

REPO = Path(__file__).resolve().parents[2]


def test_repository_params_load_and_quick_is_default():
    params = load_params(REPO / "params.yaml")
    assert params.base.profile == "quick"
    assert params.train.model == "small_cnn"
    assert params.validate_.max_leakage_fraction > 0


def test_full_profile_overrides_train_section_only():
    quick = load_params(REPO / "params.yaml")
    full = load_params(REPO / "params.yaml", profile="full")
    assert full.train.epochs > quick.train.epochs and full.train.dropout > quick.train.dropout
    assert full.model_dump(exclude={"train", "base"}) == quick.model_dump(exclude={"train", "base"})


def test_overrides_apply_last_and_parse_yaml_values():
    params = load_params(REPO / "params.yaml", overrides=["train.epochs=2", "train.augment=true"])
    assert params.train.epochs == 2 and params.train.augment is True


def test_profile_chosen_by_override():
    params = load_params(REPO / "params.yaml", overrides=["base.profile=full"])
    assert params.base.profile == "full" and params.train.epochs == 20


def test_unknown_key_is_rejected_with_file_and_field(params_file):
    path = params_file({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match=r"params.yaml: train.epoch: Extra inputs"):
        load_params(path)


def test_wrong_type_is_rejected(params_file):
    path = params_file({"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match=r"train.epochs"):
        load_params(path)


def test_unknown_profile_and_missing_file(params_file, tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_params(params_file(), profile="huge")
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_params(REPO / "params.yaml", overrides=["epochs"])


def test_params_are_frozen():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        params.train.epochs = 99  # type: ignore[misc]


def test_flat_dict_names_every_section():
    flat = Params().to_flat_dict()
    assert flat["train.epochs"] == 6 and "validate.max_label_kl" in flat and "profiles" not in flat
