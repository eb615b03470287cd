"""Tests for the one definition of "the same config as the champion"."""

from __future__ import annotations

from pipelines.config import Params
from pipelines.curves.configs import DATA_VERSION_TAG, is_seed_key, run_seed, same_config, training_config


class _Logged:
    """Stands in for an MlflowClient: keeps the params ``tracking.log_params`` logs."""

    def __init__(self) -> None:
        self.params: dict[str, str] = {}

    def log_batch(self, run_id, params=()):
        self.params |= {p.key: p.value for p in params}

    def log_dict(self, run_id, data, path):
        pass


def _flat(params: Params) -> dict[str, str]:
    """Params as MLflow returns them: what ``tracking.log_params`` logs, as it logs them."""
    from pipelines import tracking

    client = _Logged()
    tracking.log_params(client, "run", params)
    return client.params


def _params(**train) -> dict[str, str]:
    return _flat(Params(train=train))


def test_seed_keys():
    assert is_seed_key("base.seed") and is_seed_key("seed") and is_seed_key("train.random_seed")
    assert is_seed_key("BASE.SEED")
    assert not is_seed_key("train.epochs") and not is_seed_key("seeding.method")


def test_training_config_drops_seed_paths_and_data_facts_only():
    p = _params() | {"data.num_classes": "10", "data.train_examples": "50000"}
    cfg = training_config(p)
    assert "base.seed" not in cfg
    assert not any(k.startswith(("paths.", "data.")) for k in cfg)
    # Everything else stays, values as strings.
    assert cfg["train.learning_rate"] == "0.001" and cfg["base.dataset"] == "fashion-mnist"
    assert set(cfg) == {k for k in p if k != "base.seed" and not k.startswith(("paths.", "data."))}
    assert training_config({"train.epochs": 6}) == {"train.epochs": "6"}


def test_same_config_ignores_seed_paths_and_data_facts():
    a = _params() | {"data.train_examples": "50000"}
    b = _flat(Params(base={"seed": 7}, paths={"raw_dir": "elsewhere"})) | {"data.train_examples": "49999"}
    assert same_config(a, b)
    assert same_config(b, a)


def test_same_config_sees_every_other_param():
    a = _params()
    assert not same_config(a, _params(learning_rate=0.01))
    assert not same_config(a, _params(model="mlp"))
    assert not same_config(a, _flat(Params(compare={"alpha": 0.01})))  # conservative: whole params.yaml
    assert not same_config(a, a | {"train.new_key": "1"})  # a key one run lacks
    b = dict(a)
    del b["train.epochs"]
    assert not same_config(a, b)


def test_in_memory_and_mlflow_string_params_compare_equal():
    # Lists are logged as JSON ([false], ["small_cnn"]): compared as str() they read [False] and
    # ['small_cnn'] in memory, and the same config did not match itself.
    p = Params().to_flat_dict()  # ints / floats / None / lists
    assert isinstance(p["tune.augment"], list)
    assert same_config(p, _flat(Params()))


def test_runs_without_params_never_match_and_seed_only_params_are_one_empty_config():
    assert not same_config({}, {})
    assert not same_config({}, _params())
    # Params holding nothing but a seed are an empty config: equal, by the definition.
    assert same_config({"base.seed": "1"}, {"base.seed": "2"})


def test_same_config_requires_the_same_data_version_when_both_record_one():
    a, b = _params(), _flat(Params(base={"seed": 1}))
    assert same_config(a, b, {DATA_VERSION_TAG: "abc"}, {DATA_VERSION_TAG: "abc"})
    assert not same_config(a, b, {DATA_VERSION_TAG: "abc"}, {DATA_VERSION_TAG: "def"})
    # One side unknown (a CSVLogger file, an older run): the params alone decide.
    assert same_config(a, b, {DATA_VERSION_TAG: "abc"}, {})
    assert same_config(a, b, None, {DATA_VERSION_TAG: "def"})
    # Other tags never matter.
    assert same_config(a, b, {"mlflow.runName": "x"}, {"mlflow.runName": "y"})


def test_run_seed():
    assert run_seed({"base.seed": 42, "train.epochs": 6}) == "42"
    assert run_seed({"base.seed": "42", "seed": "42"}) == "42"
    assert run_seed({"train.epochs": 6}) is None
    assert run_seed({"base.seed": "1", "train.random_seed": "2"}) is None  # ambiguous
