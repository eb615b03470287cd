from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.config import ConfigError, Params, load_diagnose_config, load_params
from pipelines.curves.settings import DiagnoseConfig

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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("base.seed=-1", r"base\.seed: Input should be greater than or equal to 0"),
        ("base.seed=4294967296", r"base\.seed: Input should be less than or equal to 4294967295"),
        ("paths.model_file=models/model.h5", r"paths\.model_file: must end in \.keras"),
        ("tracking.experiment=' '", r"tracking\.experiment: must not be empty"),
        ("tracking.registered_model=team/model", r"tracking\.registered_model: MLflow model names cannot"),
        ("train.batch_size=true", r"train\.batch_size: must be a number, not a boolean"),
        ("prepare.val_size=true", r"prepare\.val_size: must be a number, not a boolean"),
        ("tune.batch_sizes=[true, 64]", r"tune\.batch_sizes: must be a number, not a boolean"),
    ],
)
def test_values_that_fail_only_later_are_refused_at_load_naming_the_key(params_file, override, message):
    # Each had loaded: a seed scikit-learn refused under prepare.val_size's name, an .h5 path refused
    # after the whole fit, names MLflow refused at its first call, and true read as 1.
    with pytest.raises(ConfigError, match=rf"params\.yaml: {message}"):
        load_params(params_file(), overrides=[override])
    # Booleans stay booleans where the key is one.
    assert load_params(params_file(), overrides=["tune.augment=[true, false]"]).tune.augment == (True, False)


def test_profiles_are_all_checked_and_named(params_file):
    # A typo in a profile not chosen: found now, under the profile's name (it was found only with
    # --profile full, and then named train.epohcs).
    path = params_file({"profiles": {"full": {"train": {"epohcs": 3}}}})
    for profile in (None, "full"):
        with pytest.raises(ConfigError, match=r"params\.yaml: profiles\.full\.train\.epohcs: Extra inputs"):
            load_params(path, profile=profile)
    with pytest.raises(ConfigError, match=r"^--profile: unknown profile 'nope'"):
        load_params(params_file(), profile="nope")
    # --profile and -S base.profile= must agree (the run was tagged quick with full's settings).
    with pytest.raises(ConfigError, match="name different profiles"):
        load_params(params_file(), profile="full", overrides=["base.profile=quick"])
    same = load_params(params_file(), profile="full", overrides=["base.profile=full"])
    assert same.base.profile == "full" and same.train.epochs == 20


def test_a_section_with_every_key_commented_out_is_empty(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("tune:\n  # n_trials: 8\ntrain:\n  epochs: 2\n")
    params = load_params(path, overrides=["tune.n_trials=3"])
    assert params.tune.n_trials == 3 and params.train.epochs == 2


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


def test_the_diagnose_section_alone_is_read_and_validated(tmp_path):
    path = tmp_path / "params.yaml"
    assert load_diagnose_config(REPO / "params.yaml") == load_params(REPO / "params.yaml").diagnose
    assert load_diagnose_config(path, required=False) == DiagnoseConfig()
    with pytest.raises(ConfigError, match=r"params.yaml: params file not found"):
        load_diagnose_config(path)
    for text in ("train: {lr: 0.01}\n", "diagnose:\n"):  # another project's sections; an empty one
        path.write_text(text)
        assert load_diagnose_config(path) == DiagnoseConfig()
    path.write_text("train: {lr: 0.01}\ndiagnose: {alpha: 0.2}\n")
    assert load_diagnose_config(path).alpha == 0.2
    path.write_text("train: {lr: 0.01}\ndiagnose: {alpha: 0.7}\n")
    with pytest.raises(ConfigError, match=r"^\S*params.yaml: diagnose.alpha: Input should be less than 0.5$"):
        load_diagnose_config(path)
