"""Typed, frozen configuration loaded from ``params.yaml``.

Every stage takes one of these section models; unknown keys and wrong types are rejected with an
error that names the file and the offending field. Profiles (``base.profile``) are deep-merged over
the stage sections at load time, so ``dvc.yaml`` and the Prefect flow see the same resolved values.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipelines.curves.settings import DiagnoseConfig

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(ValueError):
    """Raised when ``params.yaml`` (or an override) is missing, malformed or invalid."""


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type takes ``bool`` (itself, or inside a union, tuple or list)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation))


class _Frozen(BaseModel):
    # allow_inf_nan=False: a learning rate of .inf or a threshold of .nan is a typo, never a setting.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``true`` where a number (or a list of numbers) belongs is refused: pydantic's lax mode
        would read it as 1 (``train.batch_size: true`` trained with batches of one)."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None or _admits_bool(field.annotation):
            return value
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, bool) for v in values):
            raise ValueError(f"must be a number, not a boolean; got {value!r}")
        return value


# ---------------------------------------------------------------------------------- shared rules
def _count_or_fraction(value: int | float, info: ValidationInfo) -> int | float:
    """A size given as a count (int >= 1) or as a fraction (float strictly between 0 and 1); a
    boolean never gets here (:meth:`_Frozen._no_booleans_for_numbers`)."""
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"a count must be >= 1, got {value}")
    elif not 0 < value < 1:
        raise ValueError(
            f"a fraction must lie strictly between 0 and 1, got {value!r} (use an int for a count)"
        )
    return value


class BaseConfig(_Frozen):
    seed: int = Field(42, ge=0, le=2**32 - 1)  # NumPy's and scikit-learn's seed range
    dataset: Literal["fashion-mnist", "folder"] = "fashion-mnist"
    profile: str = "quick"


class PathsConfig(_Frozen):
    raw_dir: Path = Path("data/raw")
    prepared_dir: Path = Path("data/prepared")
    validation_dir: Path = Path("reports/validation")
    evaluation_dir: Path = Path("reports/evaluation")
    compare_dir: Path = Path("reports/compare")
    # Every output file is named once, here; dvc.yaml interpolates the same keys (${paths.*}).
    model_file: Path = Path("models/model.keras")
    run_file: Path = Path("models/run.json")
    validation_metrics: Path = Path("metrics/validation.json")
    baseline_metrics: Path = Path("metrics/baseline.json")
    train_metrics: Path = Path("metrics/train.json")
    evaluate_metrics: Path = Path("metrics/evaluate.json")
    compare_metrics: Path = Path("metrics/compare.json")
    history_plot: Path = Path("plots/history.csv")
    confusion_plot: Path = Path("plots/confusion.csv")
    backup_dir: Path = Path(".curvewatch/backup")
    tune_dir: Path = Path(".curvewatch/tune")
    expectations_dir: Path = Path("expectations")

    @field_validator("model_file")
    @classmethod
    def _keras_file(cls, v: Path) -> Path:
        # Checked here, not after the fit: keras.saving.save_model writes only the .keras format.
        if v.suffix != ".keras":
            raise ValueError(f"must end in .keras (Keras 3's model format), got {str(v)!r}")
        return v


class FetchConfig(_Frozen):
    source_dir: Path | None = None
    system_dir: Path = Path("/usr/share/datasets/fashion-mnist")
    url: str = "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    image_folder: Path | None = None
    image_size: tuple[int, int] = (28, 28)
    color_mode: Literal["grayscale", "rgb"] = "grayscale"

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError("image_size must be two positive integers (height, width)")
        return v


class PrepareConfig(_Frozen):
    val_size: int | float = 0.16666  # Fashion-MNIST: 10000 of 60000, as its usual split
    test_size: int | float = 0.2

    _sizes = field_validator("val_size", "test_size")(_count_or_fraction)


class ValidateConfig(_Frozen):
    max_leakage_fraction: float = Field(0.001, ge=0, le=1)
    max_label_kl: float = Field(0.01, ge=0)
    max_intensity_kl: float = Field(0.02, ge=0)
    intensity_bins: int = Field(32, ge=2)
    # Each class's share of a split must lie in [min_ratio / K, max_ratio / K] for K classes.
    class_share_min_ratio: float = Field(0.5, ge=0)
    class_share_max_ratio: float = Field(1.5, gt=0)
    # A skew check fails only when its KL also exceeds what sampling noise gives at this size
    # (permutation test p-value below skew_alpha), see pipelines.validate.skew_p_value.
    skew_alpha: float = Field(0.001, gt=0, lt=1)

    @field_validator("class_share_max_ratio")
    @classmethod
    def _max_above_min(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("class_share_min_ratio")
        if low is not None and not low < v:
            raise ValueError(f"must be above class_share_min_ratio ({low:g}), got {v:g}")
        return v


class TrainConfig(_Frozen):
    model: Literal["small_cnn", "large_cnn", "mlp"] = "small_cnn"
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(6, ge=1)
    dropout: float = Field(0.25, ge=0, lt=1)
    l2: float = Field(0.0, ge=0)
    augment: bool = False
    early_stopping_patience: int = Field(4, ge=1)
    reduce_lr_patience: int = Field(2, ge=1)
    reduce_lr_factor: float = Field(0.5, gt=0, lt=1)
    max_train_examples: int | None = Field(None, ge=1)
    mixed_precision: Literal["auto", "on", "off"] = "auto"


class EvaluateConfig(_Frozen):
    batch_size: int = Field(256, ge=1)


class CompareConfig(_Frozen):
    recent_runs: int = Field(5, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    fail_on_regression: bool = False
    # Promotion rule of the `champion` alias (pipelines/registry.py): significantly_better or
    # not_worse (within `margin`, accuracy units).
    promotion: Literal["significantly_better", "not_worse"] = "significantly_better"
    margin: float = Field(0.005, ge=0, lt=1)


class TuneConfig(_Frozen):
    """The ``tune`` section: the search space around ``train`` and how the search runs.

    Ranges are ``[low, high]`` with ``low < high`` (log-uniform for ``learning_rate`` and ``l2``,
    which must then be > 0); choice lists are non-empty without repeats. ``reduce_lr_factor`` tunes
    the learning-rate schedule (Keras' ReduceLROnPlateau factor that ``train`` always installs); its
    range may also be one value, ``low == high`` (a fixed factor; 0.5 when the key is absent).
    """

    n_trials: int = Field(8, ge=1)
    learning_rate: tuple[float, float] = (1e-4, 1e-2)
    dropout: tuple[float, float] = (0.0, 0.5)
    l2: tuple[float, float] = (1e-6, 1e-3)
    batch_sizes: tuple[int, ...] = (64, 128, 256)
    augment: tuple[bool, ...] = (False,)
    models: tuple[Literal["small_cnn", "large_cnn", "mlp"], ...] = ("small_cnn",)
    reduce_lr_factor: tuple[float, float] = (0.5, 0.5)
    pruner: Literal["curve", "median", "none"] = "curve"
    prune_threshold: float = Field(0.05, gt=0, lt=1)
    workers: int = Field(1, ge=1)
    heartbeat_grace_s: int = Field(20, ge=2)
    study_name: str = Field("curvewatch-tune", min_length=1)

    @field_validator("learning_rate", "l2")
    @classmethod
    def _log_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError(f"[low, high] is sampled log-uniformly, so low must be > 0; got {list(v)}")
        return cls._range(v)

    @field_validator("dropout")
    @classmethod
    def _dropout_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0 or v[1] >= 1:
            raise ValueError(f"dropout must lie in [0, 1); got {list(v)}")
        return cls._range(v)

    @field_validator("reduce_lr_factor")
    @classmethod
    def _factor_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] <= 0 or v[1] >= 1:
            raise ValueError(f"reduce_lr_factor must lie in (0, 1); got {list(v)}")
        if v[0] > v[1]:
            raise ValueError(f"inverted range: low {v[0]} > high {v[1]}")
        return v

    @field_validator("batch_sizes", "augment", "models")
    @classmethod
    def _choices(cls, v: tuple[Any, ...]) -> tuple[Any, ...]:
        if not v:
            raise ValueError("empty list: give at least one choice")
        if len(set(v)) != len(v):
            raise ValueError(f"repeated choices in {list(v)}")
        if any(isinstance(x, int) and not isinstance(x, bool) and x < 1 for x in v):
            raise ValueError(f"batch sizes must be >= 1, got {list(v)}")
        return v

    @staticmethod
    def _range(v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"inverted range: low {v[0]} > high {v[1]}")
        if v[0] == v[1]:
            raise ValueError(f"empty range: low = high = {v[0]}")
        return v


class TrackingConfig(_Frozen):
    experiment: str = "curvewatch-fashion-mnist"
    registered_model: str = "curvewatch-fashion-mnist-classifier"

    # MLflow's own rules (mlflow/utils/validation.py: _validate_experiment_name,
    # _validate_model_name), checked at load instead of at the first MLflow call (the compare stage,
    # after a whole training, for the model name).
    @field_validator("experiment", "registered_model")
    @classmethod
    def _mlflow_name(cls, v: str, info: ValidationInfo) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        if info.field_name == "registered_model" and ("/" in v or ":" in v):
            raise ValueError(f"MLflow model names cannot contain '/' or ':', got {v!r}")
        return v


class ScheduleConfig(_Frozen):
    """When the ``retrain`` deployment runs (``flows/deployments.py``).

    ``retrain_cron`` is a standard 5-field cron string (minute hour day-of-month month
    day-of-week), as Prefect's ``CronSchedule`` takes it; ``timezone`` is an IANA name.
    """

    retrain_cron: str = "0 3 * * *"
    timezone: str = "UTC"

    @field_validator("retrain_cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        if len(v.split()) != 5:
            raise ValueError(f"{v!r} is not a 5-field cron string (minute hour day month weekday)")
        try:
            CronSim(v, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"{v!r} is not a valid cron string: {exc}") from exc
        return v

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an IANA time zone name (e.g. UTC, Europe/Berlin)") from exc
        return v


class Params(_Frozen):
    """The whole resolved ``params.yaml``; ``profiles`` is already applied and kept for reference."""

    base: BaseConfig = BaseConfig()
    paths: PathsConfig = PathsConfig()
    fetch: FetchConfig = FetchConfig()
    prepare: PrepareConfig = PrepareConfig()
    validate_: ValidateConfig = Field(ValidateConfig(), alias="validate")
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    compare: CompareConfig = CompareConfig()
    tune: TuneConfig = TuneConfig()
    diagnose: DiagnoseConfig = DiagnoseConfig()
    tracking: TrackingConfig = TrackingConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _cross_field(self) -> Params:
        # Raised as (key, message) so load_params names the key, not the whole file.
        if self.base.dataset == "folder" and self.fetch.image_folder is None:
            raise ValueError("fetch.image_folder: must be set when base.dataset is 'folder'")
        return self

    def to_flat_dict(self) -> dict[str, Any]:
        """Return the resolved config as ``{"train.epochs": 6, ...}`` for logging (``profiles`` omitted)."""
        flat: dict[str, Any] = {}
        data = self.model_dump(mode="json", by_alias=True, exclude={"profiles"})
        for section, values in data.items():
            for key, value in values.items():
                flat[f"{section}.{key}"] = value
        return flat


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``section.key=value`` override (value parsed as YAML) in place."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted, value_text = override.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {override!r} must name a section and a key, e.g. train.epochs=3")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: the value is not valid YAML: {exc}") from exc


def load_params(
    path: str | Path = DEFAULT_PARAMS,
    profile: str | None = None,
    overrides: list[str] | None = None,
) -> Params:
    """Load, resolve and validate ``params.yaml``.

    Args:
        path: the YAML file; every section is optional and falls back to the defaults above.
        profile: a key of ``profiles`` to apply; defaults to ``base.profile`` in the file.
        overrides: ``section.key=value`` strings applied last (values parsed as YAML), e.g.
            ``["train.epochs=1"]``; the same syntax as ``dvc exp run -S``.

    Returns:
        The frozen, validated :class:`Params`.

    Raises:
        ConfigError: the file is missing, not UTF-8 or not a YAML mapping; ``base`` or a profile
            is not a mapping, the profile name is not a string or is unknown (``--profile`` named
            as such when it came from ``profile``), or ``profile`` and a ``base.profile=``
            override disagree; an override is malformed or its value is not YAML; or a field is
            unknown or of the wrong type, a boolean included where a number belongs (the message
            names the file and the field, e.g. ``params.yaml: train.epochs: Input should be a
            valid integer``; under ``profiles.<name>.`` when a profile sets it: every profile is
            checked, not only the chosen one). A section left empty (``tune:`` with its keys
            commented out) is read as empty.
    """
    path = Path(path)
    raw = _read_sections(path)
    profile_overrides_given = [o for o in overrides or [] if o.split("=", 1)[0].strip() == "base.profile"]
    for override in profile_overrides_given:
        _apply_override(raw, override)
    given_base = raw.get("base") if isinstance(raw.get("base"), dict) else {}
    if profile is not None and profile_overrides_given and given_base.get("profile") != profile:
        raise ConfigError(
            f"--profile {profile!r} and {profile_overrides_given[-1]!r} name different profiles: give one"
        )
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: base: must be a mapping of keys to values, got {base!r}")
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles must be a mapping of profile name to overrides")
    chosen = profile or base.get("profile", "quick")
    if not isinstance(chosen, str):
        raise ConfigError(f"{path}: base.profile: must be a profile name, got {chosen!r}")
    if chosen not in profiles and chosen != "quick":
        where = "--profile" if profile is not None else f"{path}: base.profile"
        raise ConfigError(f"{where}: unknown profile {chosen!r}; known: {sorted(profiles)}")
    # Every profile is checked, not only the chosen one: a typo in profiles.full must not wait
    # for the day someone runs --profile full, and it is named under profiles.full.
    for name, overrides_of in profiles.items():
        overrides_of = {} if overrides_of is None else overrides_of
        if not isinstance(overrides_of, dict):
            raise ConfigError(f"{path}: profiles.{name}: must be a mapping of sections to overrides")
        merged = _deep_merge(raw, overrides_of)
        merged.setdefault("base", {})["profile"] = name
        try:
            Params.model_validate(merged)
        except ValidationError as exc:
            described = [_describe(path, err) for err in exc.errors()]
            bad = [line for line in described if _names_a_profile_key(line, path, overrides_of)]
            if bad:
                raise ConfigError(
                    "\n".join(line.replace(f"{path}: ", f"{path}: profiles.{name}.", 1) for line in bad)
                ) from exc
    profile_overrides = profiles.get(chosen) or {}
    resolved = _deep_merge(raw, profile_overrides)
    resolved.setdefault("base", {})["profile"] = chosen
    for override in overrides or []:
        if override in profile_overrides_given:
            continue  # applied above, before the profile was chosen
        _apply_override(resolved, override)
    try:
        return Params.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(path, err) for err in exc.errors())) from exc


def load_diagnose_config(path: str | Path = DEFAULT_PARAMS, *, required: bool = True) -> DiagnoseConfig:
    """The diagnosis thresholds of a params file's ``diagnose`` section alone (``curvewatch
    diagnose``): its other sections are not read, so another project's ``params.yaml`` (a DVC
    project's, with its own ``train:``) serves as well as curvewatch's. ``profiles`` are not
    applied.

    Args:
        path: the YAML file.
        required: whether a missing file is an error; when False it means the defaults.

    Returns:
        The validated :class:`DiagnoseConfig`; the defaults when the file has no ``diagnose``
        section (or an empty one), or is missing and not ``required``.

    Raises:
        ConfigError: the file is missing (when ``required``), not UTF-8, not YAML or not a mapping
            of sections; or its ``diagnose`` section is not a mapping, or has an unknown key or an
            invalid value, as :func:`load_params` says it (``params.yaml: diagnose.alpha: Input
            should be less than 0.5``).
    """
    path = Path(path)
    if not required and not path.is_file():
        return DiagnoseConfig()
    section = _read_sections(path).get("diagnose", {})
    try:
        return Params.model_validate({"diagnose": section}).diagnose
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(path, err) for err in exc.errors())) from exc


def _read_sections(path: Path) -> dict[str, Any]:
    """A params file's top-level mapping, a section left empty (``tune:`` with its keys commented
    out) read as ``{}``.

    Raises:
        ConfigError: the file is missing, not UTF-8, not valid YAML or not a mapping (naming it).
    """
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    # A section header whose keys are all commented out ("tune:") is an empty section, not null.
    return {key: {} if value is None else value for key, value in raw.items()}


def _names_a_profile_key(line: str, path: Path, overrides: dict[str, Any]) -> bool:
    """Whether a :func:`_describe` line (``params.yaml: train.epohcs: ...``) is about a key the
    profile sets (its section, and the key when the profile names it)."""
    loc = line.removeprefix(f"{path}: ").split(": ", 1)[0].split(".")
    section = overrides.get(loc[0])
    if not isinstance(section, dict):
        return False
    return len(loc) < 2 or loc[1] in section


def _describe(path: Path, err: Any) -> str:
    """One line per pydantic error: ``params.yaml: train.learning_rate: must be finite, got inf``."""
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "finite_number":
        message = f"must be finite, got {err.get('input')!r}"
    else:
        message = err["msg"].removeprefix("Value error, ")
    # A cross-field rule names its key itself ("fetch.image_folder: ...").
    if not loc and ": " in message:
        return f"{path}: {message}"
    # Union types (int | float) repeat the key with the member type: keep the key only.
    loc = [p for p in loc if p not in ("int", "float")]
    return f"{path}: {'.'.join(loc)}: {message}"
