"""Validate stage: run the expectation suites and the cross-split checks on the prepared manifest.

Inputs (the prepare stage's contract):

* ``prepared_dir/manifest.parquet``: one row per image across all splits, columns ``id`` (str),
  ``split`` (str: train/val/test), ``label`` (int64), ``content_hash`` (str, sha256 hex of the image
  bytes), ``height``, ``width``, ``channels`` (int64), ``pixel_mean``, ``pixel_std`` (float64, 0-255
  units), ``pixel_min``, ``pixel_max`` (int64).
* ``prepared_dir/classes.json``: ``{"class_names": [...], "num_classes": K, "image_shape": [H, W, C]}``.

Checks:

* Great Expectations 1.x suites, kept as reviewed JSON in ``expectations/``:
  ``manifest.json`` (schema, dtypes, nulls, label range, pixel range, image shape, per row) and
  ``class_balance.json`` (each class's share of each split, on the table from :func:`class_shares`).
  Values that depend on the data or on ``params.yaml`` are written in the JSON as GX suite parameters,
  ``{"$PARAMETER": "name"}``, and filled at run time from :func:`suite_parameters`:
  ``label_max`` (K - 1), ``image_height``/``image_width``/``image_channels`` (classes.json
  ``image_shape``), ``class_share_min``/``class_share_max`` (``ValidateConfig`` ratios over K).
  A suite that names a parameter not in that list is rejected before anything runs.
* Cross-split checks in pandas/scipy: leakage (identical ``content_hash`` in two splits) and
  train-vs-validation skew (KL divergence of the label distribution and of the per-image mean
  intensity histogram, failing only when above its max *and* unlikely under sampling noise at the
  validation set's size, by a permutation test: :func:`skew_p_value`). Fewer than 2 classes is
  refused (:class:`ValidationInputError`).

Outputs (written to a temporary sibling of ``out_dir``, then renamed over it):
``results.json`` (every GX result and cross-split check), ``metrics.json`` (the flat metrics),
``summary.md`` (plain-language report) and ``data_docs/index.html`` (GX Data Docs).

Run as a stage with ``curvewatch validate [--params params.yaml]`` (via
``pipelines.steps.run_validate``; exit status 1 when a check failed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.stats import entropy

from pipelines.config import ValidateConfig
from pipelines.io_utils import to_jsonable as _jsonable

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuite

logger = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.parquet"
CLASSES_FILE = "classes.json"
# Suite name -> JSON file in ``suites_dir``; each suite runs on the frame of the same name.
SUITE_FILES: dict[str, str] = {"manifest": "manifest.json", "class_balance": "class_balance.json"}
SPLITS: tuple[str, ...] = ("train", "val", "test")
ID_CAP = 20
"""Most ids listed per split and pair in the leakage report."""
KL_EPSILON = 1e-6
"""Probability added to every bin before the KL divergence, so an empty bin gives a finite value."""


class ValidationInputError(ValueError):
    """A manifest, classes.json or suite JSON is missing, unreadable or malformed (message names the file)."""


@dataclass(frozen=True)
class FailedCheck:
    """One failed expectation or cross-split check.

    Attributes:
        suite: the GX suite name (``manifest``, ``class_balance``) or ``cross_split``.
        check: the expectation type (e.g. ``expect_column_values_to_be_between``) or the cross-split
            check name (``leakage``, ``label_kl``, ``intensity_kl``).
        column: the column(s) concerned, or a split pair such as ``train-test``; None for table checks.
        observed: the observed value in a few words (a count, a value, a sample of bad values).
        reason: one plain line combining the above, for logs and reports.
    """

    suite: str
    check: str
    column: str | None
    observed: str
    reason: str


@dataclass
class ValidationResult:
    """What :func:`validate` returns.

    Attributes:
        success: True when every expectation and cross-split check passed.
        failed: each failed expectation or check, in suite order then cross-split order.
        metrics: flat, MLflow-friendly floats, e.g. ``validation.success`` (1.0/0.0),
            ``validation.leakage_count``, ``validation.leakage_fraction``, ``validation.label_kl``
            (nats), ``validation.intensity_kl`` (nats), ``validation.expectations_evaluated``,
            ``validation.expectations_failed``, ``validation.checks_evaluated``, ``validation.checks_failed``,
            ``validation.rows``, ``validation.rows_<split>``,
            ``validation.leakage_count_<a>_<b>``, ``validation.leakage_fraction_<a>_<b>``. No name is a
            dotted prefix of another, so they nest cleanly into ``{"validation": {...}}``.
        leakage: split pair (``train-test``) -> ``{"count", "fraction", "smaller_split_rows",
            "ids": {split: [ids, at most ID_CAP]}}``.
        data_docs_index: ``out_dir/data_docs/index.html``, or None when Data Docs could not be built.
        results_path: ``out_dir/results.json``.
        summary_path: ``out_dir/summary.md``.
    """

    success: bool
    failed: list[FailedCheck]
    metrics: dict[str, float]
    leakage: dict[str, dict[str, Any]]
    data_docs_index: Path | None
    results_path: Path
    summary_path: Path | None = None


# --------------------------------------------------------------------------------------------------
# Inputs


def load_manifest(prepared_dir: Path) -> pd.DataFrame:
    """Read ``prepared_dir/manifest.parquet`` with :func:`pipelines.prepare.load_manifest`, leaving
    its columns unchecked: a schema problem is the manifest suite's to report.

    Raises:
        ValidationInputError: the file is missing or not a readable parquet file.
    """
    from pipelines.prepare import PreparedDataError
    from pipelines.prepare import load_manifest as read

    try:
        return read(prepared_dir, check_columns=False)
    except (FileNotFoundError, PreparedDataError) as exc:
        raise ValidationInputError(str(exc)) from exc


def load_classes(prepared_dir: Path) -> dict[str, Any]:
    """Read ``prepared_dir/classes.json`` with :func:`pipelines.prepare.load_classes`.

    Returns:
        ``{"class_names": list[str], "num_classes": int, "image_shape": [H, W, C]}``.

    Raises:
        ValidationInputError: the file is missing or malformed (as ``load_classes``), or it lists
            fewer than 2 classes (a classifier needs two; the message names the file and classes).
    """
    from pipelines.prepare import PreparedDataError
    from pipelines.prepare import load_classes as read

    try:
        classes = read(prepared_dir)
    except (FileNotFoundError, PreparedDataError) as exc:
        raise ValidationInputError(str(exc)) from exc
    if classes["num_classes"] < 2:
        raise ValidationInputError(
            f"{Path(prepared_dir) / CLASSES_FILE}: {classes['num_classes']} class "
            f"({', '.join(classes['class_names'])}); a classifier needs at least 2: add a subfolder of "
            "images per class to the image folder"
        )
    return classes


def load_suite_dict(path: Path) -> dict[str, Any]:
    """Read one expectation suite JSON (``{"name", "expectations": [{"type", "kwargs", "meta"}]}``).

    Raises:
        ValidationInputError: the file is missing, not JSON, or not shaped like a suite.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationInputError(f"{path}: expectation suite not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationInputError(f"{path}: cannot read expectation suite JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        raise ValidationInputError(f"{path}: a suite must be a JSON object with a non-empty 'name'")
    exps = data.get("expectations")
    if not isinstance(exps, list) or not exps:
        raise ValidationInputError(f"{path}: 'expectations' must be a non-empty list")
    for i, exp in enumerate(exps):
        if not isinstance(exp, dict) or not isinstance(exp.get("type"), str):
            raise ValidationInputError(f"{path}: expectations[{i}] must be an object with a 'type'")
    return data


def _parameter_names(obj: Any) -> set[str]:
    """Names used as ``{"$PARAMETER": name}`` anywhere inside ``obj``."""
    if isinstance(obj, dict):
        if set(obj) == {"$PARAMETER"}:
            return {str(obj["$PARAMETER"])}
        return set().union(*(_parameter_names(v) for v in obj.values())) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_parameter_names(v) for v in obj)) if obj else set()
    return set()


def build_suite(suite_dict: Mapping[str, Any], path: Path, parameters: Mapping[str, Any]) -> ExpectationSuite:
    """Turn a suite dict (from :func:`load_suite_dict`) into a GX ``ExpectationSuite``.

    Every expectation is built explicitly, because ``ExpectationSuite(**dict)`` only logs and drops an
    invalid one.

    Args:
        suite_dict: the parsed JSON.
        path: the file it came from, for error messages.
        parameters: the run-time suite parameters; every ``$PARAMETER`` in the suite must be one.

    Raises:
        ValidationInputError: an unknown expectation type, invalid kwargs, or an unknown parameter.
    """
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    unknown = _parameter_names(suite_dict.get("expectations")) - set(parameters)
    if unknown:
        raise ValidationInputError(
            f"{path}: unknown $PARAMETER {sorted(unknown)}; known: {sorted(parameters)}"
        )
    expectations = []
    for i, exp in enumerate(suite_dict["expectations"]):
        try:
            config = ExpectationConfiguration(
                type=exp["type"], kwargs=dict(exp.get("kwargs") or {}), meta=exp.get("meta")
            )
            expectations.append(config.to_domain_obj())
        except Exception as exc:  # GX raises its own and pydantic errors for bad configurations
            raise ValidationInputError(f"{path}: expectations[{i}] ({exp['type']}): {exc}") from exc
    return ExpectationSuite(
        name=suite_dict["name"], expectations=expectations, meta=dict(suite_dict.get("meta") or {})
    )


def suite_parameters(cfg: ValidateConfig, classes: Mapping[str, Any]) -> dict[str, float | int]:
    """The ``$PARAMETER`` values the suites may use.

    Returns:
        ``label_max`` (num_classes - 1), ``image_height``, ``image_width``, ``image_channels`` (pixels,
        channels; from classes.json ``image_shape``), ``class_share_min``, ``class_share_max``
        (fractions of a split: ``cfg.class_share_min_ratio / K`` and ``cfg.class_share_max_ratio / K``,
        so the bounds follow the number of classes K).
    """
    height, width, channels = classes["image_shape"]
    return {
        "label_max": int(classes["num_classes"]) - 1,
        "image_height": int(height),
        "image_width": int(width),
        "image_channels": int(channels),
        "class_share_min": float(cfg.class_share_min_ratio) / int(classes["num_classes"]),
        "class_share_max": float(cfg.class_share_max_ratio) / int(classes["num_classes"]),
    }


# --------------------------------------------------------------------------------------------------
# Derived tables and cross-split checks (pure pandas / scipy)


def _splits_present(manifest: pd.DataFrame) -> list[str]:
    """Known splits first in train/val/test order, then any others (sorted), as they appear in data."""
    present = [str(s) for s in manifest["split"].dropna().unique()]
    return [s for s in SPLITS if s in present] + sorted(s for s in present if s not in SPLITS)


def class_shares(manifest: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Each class's share of each split.

    Args:
        manifest: needs ``split`` and ``label``; rows with a null in either are ignored.
        num_classes: K; labels 0..K-1 are always listed (a missing class gets share 0), and any
            other label seen is listed too.

    Returns:
        Columns ``split`` (str), ``label`` (int64), ``count`` (int64), ``share`` (float64 in [0, 1]),
        one row per (split, label). Empty when the columns are missing.
    """
    columns = ["split", "label", "count", "share"]
    if not {"split", "label"} <= set(manifest.columns):
        return pd.DataFrame(columns=columns).astype(
            {"split": "str", "label": "int64", "count": "int64", "share": "float64"}
        )
    labels = pd.to_numeric(manifest["label"], errors="coerce")
    frame = pd.DataFrame({"split": manifest["split"], "label": labels}).dropna()
    frame["label"] = frame["label"].astype("int64")
    all_labels = sorted(set(range(num_classes)) | set(frame["label"].tolist()))
    rows = []
    for split in _splits_present(frame):
        counts = frame.loc[frame["split"] == split, "label"].value_counts()
        total = int(counts.sum())
        for label in all_labels:
            n = int(counts.get(label, 0))
            rows.append((split, label, n, n / total if total else 0.0))
    return pd.DataFrame(rows, columns=columns).astype(
        {"split": "str", "label": "int64", "count": "int64", "share": "float64"}
    )


def find_leakage(manifest: pd.DataFrame, id_cap: int = ID_CAP) -> dict[str, dict[str, Any]]:
    """Exact duplicate images (equal ``content_hash``) shared by two splits.

    Args:
        manifest: needs ``id``, ``split`` and ``content_hash``; rows with a null hash are ignored.
        id_cap: most ids listed per split.

    Returns:
        For each pair of splits present (``train-val``, ``train-test``, ``val-test``):
        ``count`` (distinct content hashes present in both splits), ``fraction`` (the larger of
        the two splits' shares of rows whose image is in the other split: one training image
        copied into 5 test rows contaminates 5 test rows, not 1), ``smaller_split_rows``, ``rows``
        (rows of the two splits whose hash is shared, per split) and ``ids`` (per split, sorted,
        at most ``id_cap``).
    """
    frame = manifest[["id", "split", "content_hash"]].dropna(subset=["split", "content_hash"])
    splits = _splits_present(frame)
    sizes = frame["split"].value_counts()
    hashes = {s: set(frame.loc[frame["split"] == s, "content_hash"]) for s in splits}
    out: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            shared = hashes[a] & hashes[b]
            smaller = int(min(sizes[a], sizes[b]))
            ids: dict[str, list[str]] = {}
            rows: dict[str, int] = {}
            for s in (a, b):
                hit = frame[(frame["split"] == s) & frame["content_hash"].isin(shared)]
                rows[s] = len(hit)
                ids[s] = sorted(str(x) for x in hit["id"])[:id_cap]
            out[f"{a}-{b}"] = {
                "count": len(shared),
                "fraction": max(rows[s] / int(sizes[s]) for s in (a, b)) if smaller else 0.0,
                "smaller_split_rows": smaller,
                "rows": rows,
                "ids": ids,
            }
    return out


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray, epsilon: float = KL_EPSILON) -> float:
    """KL(p || q) in nats between two histograms over the same bins.

    Each histogram is normalised, ``epsilon`` is added to every bin and the result renormalised
    (additive smoothing, so a bin empty in ``q`` gives a large but finite term); computed with
    ``scipy.stats.entropy(p, q)`` (https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.entropy.html).

    Args:
        p_counts, q_counts: ``(B,)`` non-negative counts, same length, each with a positive sum.

    Raises:
        ValueError: the shapes differ or a histogram is empty.
    """
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-D and the same length, got {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("cannot compare an empty histogram")
    p = p / p.sum() + epsilon
    q = q / q.sum() + epsilon
    return float(entropy(p, q))


def label_kl(train_labels: pd.Series, val_labels: pd.Series, num_classes: int) -> float:
    """KL(train || val) of the label distribution over labels 0..K-1 (plus any other label seen), nats."""
    a = pd.to_numeric(train_labels, errors="coerce").dropna().astype("int64")
    b = pd.to_numeric(val_labels, errors="coerce").dropna().astype("int64")
    labels = sorted(set(range(num_classes)) | set(a.tolist()) | set(b.tolist()))
    ca, cb = a.value_counts(), b.value_counts()
    return kl_divergence(np.array([ca.get(k, 0) for k in labels]), np.array([cb.get(k, 0) for k in labels]))


def intensity_kl(train_means: pd.Series, val_means: pd.Series, bins: int) -> float:
    """KL(train || val) of the per-image mean intensity histogram, nats.

    Args:
        train_means, val_means: per-image mean pixel values in 0-255 units; nulls are dropped and
            values outside [0, 255] are clipped into the edge bins (the range check is GX's job).
        bins: equal-width bins over [0, 255].
    """
    edges = np.linspace(0.0, 255.0, bins + 1)
    a = np.clip(pd.to_numeric(train_means, errors="coerce").dropna().to_numpy(np.float64), 0, 255)
    b = np.clip(pd.to_numeric(val_means, errors="coerce").dropna().to_numpy(np.float64), 0, 255)
    return kl_divergence(np.histogram(a, bins=edges)[0], np.histogram(b, bins=edges)[0])


def _label_codes(train: pd.Series, val: pd.Series, num_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels as bin indices over 0..K-1 plus any other label seen (the bins of :func:`label_kl`)."""
    a = pd.to_numeric(train, errors="coerce").dropna().astype("int64").to_numpy()
    b = pd.to_numeric(val, errors="coerce").dropna().astype("int64").to_numpy()
    labels = np.asarray(sorted(set(range(num_classes)) | set(a.tolist()) | set(b.tolist())), dtype=np.int64)
    return np.searchsorted(labels, a), np.searchsorted(labels, b), len(labels)


def _intensity_codes(train: pd.Series, val: pd.Series, bins: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-image means as indices of ``bins`` equal bins over [0, 255] (the bins of :func:`intensity_kl`)."""
    edges = np.linspace(0.0, 255.0, bins + 1)

    def codes(values: pd.Series) -> np.ndarray:
        x = np.clip(pd.to_numeric(values, errors="coerce").dropna().to_numpy(np.float64), 0, 255)
        return np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)

    return codes(train), codes(val), bins


def skew_p_value(
    train_codes: np.ndarray,
    val_codes: np.ndarray,
    n_bins: int,
    observed: float,
    *,
    alpha: float,
    seed: int = 0,
) -> float:
    """Permutation p-value of a train-vs-validation KL divergence: how often a random split of the
    pooled images, of the same sizes, gives a KL at least as large as ``observed``.

    A KL divergence between histograms grows as the validation set shrinks even when both splits
    come from one distribution (about ``(B - 1) / (2 n)`` nats for ``B`` bins and ``n`` images, more
    with smoothing of empty bins), so a fixed threshold fails small folders on noise alone. This
    test asks whether the observed KL is unusual for splits of this size. ``R = max(999, 2 / alpha)``
    random splits; p = (1 + #{KL_r >= observed}) / (R + 1) (Phipson and Smyth 2010, "Permutation
    p-values should never be zero", Stat. Appl. Genet. Mol. Biol. 9(1)).

    Args:
        train_codes, val_codes: ``(n_train,)`` and ``(n_val,)`` int bin indices in ``[0, n_bins)``.
        n_bins: number of bins.
        observed: the KL(train || val) of the actual split, nats (:func:`kl_divergence`).
        alpha: the significance level the caller will compare with; sets ``R``.
        seed: seeds ``numpy.random.default_rng``, so the same inputs give the same p-value.

    Returns:
        The p-value in ``(0, 1]``.
    """
    pooled = np.concatenate([train_codes, val_codes])
    total = np.bincount(pooled, minlength=n_bins)
    n_val = len(val_codes)
    rounds = max(999, int(np.ceil(2 / alpha)))
    rng = np.random.default_rng(seed)
    at_least = 0
    for _ in range(rounds):
        val_counts = np.bincount(pooled[rng.choice(len(pooled), n_val, replace=False)], minlength=n_bins)
        if kl_divergence(total - val_counts, val_counts) >= observed - 1e-12:
            at_least += 1
    return (1 + at_least) / (rounds + 1)


def cross_split_checks(
    manifest: pd.DataFrame, cfg: ValidateConfig, num_classes: int
) -> tuple[dict[str, Any], list[FailedCheck]]:
    """Leakage and train-vs-validation skew, each decided pass/fail against ``cfg``.

    Returns:
        ``(report, failed)``: ``report`` holds ``leakage`` (see :func:`find_leakage`),
        ``leakage_count`` (distinct hashes in more than one split), ``leakage_fraction`` (largest pair
        fraction), ``label_kl`` and ``intensity_kl`` (each ``{"value", "threshold", "success"}`` or
        ``{"error"}`` when it cannot be computed); ``failed`` one :class:`FailedCheck` per failure,
        including a check that cannot be computed (missing column or split).
    """
    report: dict[str, Any] = {}
    failed: list[FailedCheck] = []

    def fail(check: str, column: str | None, observed: str, reason: str) -> None:
        failed.append(FailedCheck("cross_split", check, column, observed, f"cross_split: {reason}"))

    missing = [c for c in ("id", "split", "content_hash") if c not in manifest.columns]
    if missing:
        report["leakage"] = {"error": f"missing columns {missing}"}
        fail(
            "leakage",
            None,
            f"missing columns {missing}",
            f"leakage cannot be computed: missing columns {missing}",
        )
    else:
        leakage = find_leakage(manifest)
        frame = manifest.dropna(subset=["split", "content_hash"])
        n_splits = frame.groupby("content_hash")["split"].nunique()
        report["leakage"] = leakage
        report["leakage_count"] = int((n_splits > 1).sum())
        report["leakage_fraction"] = max((v["fraction"] for v in leakage.values()), default=0.0)
        report["leakage_threshold"] = cfg.max_leakage_fraction
        for pair, info in leakage.items():
            if info["fraction"] > cfg.max_leakage_fraction:
                sample = ", ".join(f"{s}: {info['ids'][s][:5]}" for s in info["ids"])
                share = f"{info['fraction']:.4%} of a split's rows"
                observed = f"{info['count']} shared images in {info['rows']} rows ({share})"
                fail(
                    "leakage",
                    pair,
                    observed,
                    f"leakage {pair}: {observed} > max_leakage_fraction {cfg.max_leakage_fraction:g}; "
                    f"e.g. {sample}",
                )
        report["duplicates_within_split"] = {
            s: int(frame.loc[frame["split"] == s, "content_hash"].duplicated().sum())
            for s in _splits_present(frame)
        }

    for name, column, threshold, codes in (
        ("label_kl", "label", cfg.max_label_kl, lambda a, b: _label_codes(a, b, num_classes)),
        (
            "intensity_kl",
            "pixel_mean",
            cfg.max_intensity_kl,
            lambda a, b: _intensity_codes(a, b, cfg.intensity_bins),
        ),
    ):
        if column not in manifest.columns or "split" not in manifest.columns:
            error = f"missing column {column if column not in manifest.columns else 'split'!r}"
        else:
            train = manifest.loc[manifest["split"] == "train", column]
            val = manifest.loc[manifest["split"] == "val", column]
            error = ""
            try:
                train_codes, val_codes, n_bins = codes(train, val)
                value = kl_divergence(
                    np.bincount(train_codes, minlength=n_bins), np.bincount(val_codes, minlength=n_bins)
                )
            except ValueError as exc:
                error = f"train/val {column} cannot be compared: {exc}"
        if error:
            report[name] = {"error": error, "threshold": threshold, "success": False}
            fail(name, column, error, f"{name} cannot be computed: {error}")
            continue
        # Only a KL above the threshold pays for the permutation test.
        p_value = (
            skew_p_value(train_codes, val_codes, n_bins, value, alpha=cfg.skew_alpha)
            if value > threshold
            else 1.0
        )
        ok = value <= threshold or p_value >= cfg.skew_alpha
        report[name] = {
            "value": value,
            "threshold": threshold,
            "p_value": p_value,
            "alpha": cfg.skew_alpha,
            "val_rows": len(val_codes),
            "success": ok,
        }
        if not ok:
            fail(
                name,
                column,
                f"{value:.4f} nats (p = {p_value:.2g})",
                f"{name}: KL(train || val) of {column} = {value:.4f} nats > max {threshold:g}, more than "
                f"sampling noise on {len(val_codes)} validation images explains (permutation p = "
                f"{p_value:.2g} < skew_alpha {cfg.skew_alpha:g})",
            )
    return report, failed


# --------------------------------------------------------------------------------------------------
# Great Expectations


def _ephemeral_context(docs_dir: Path) -> Any:
    """An in-memory GX context whose only Data Docs site is ``docs_dir`` (nothing else is written)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def run_suites(
    suites: Mapping[str, ExpectationSuite],
    frames: Mapping[str, pd.DataFrame],
    parameters: Mapping[str, Any],
    docs_dir: Path,
) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """Validate each frame with the suite of the same name, then build Data Docs into ``docs_dir``.

    Uses a pandas datasource, one dataframe asset and whole-dataframe batch definition per frame and
    a ``ValidationDefinition`` per suite (GX 1.x, https://docs.greatexpectations.io/docs/core/run_validations/).
    Failing rows are identified by ``id`` (manifest) or ``split``/``label`` (class shares) in the
    ``SUMMARY`` result format (at most 20 examples per expectation).

    Returns:
        ``(results, index)``: suite name -> JSON-able ``ExpectationSuiteValidationResult``, and the
        Data Docs ``index.html`` (None if building it failed; the error is logged).
    """
    import great_expectations as gx

    context = _ephemeral_context(docs_dir)
    source = context.data_sources.add_pandas("curvewatch")
    results: dict[str, dict[str, Any]] = {}
    for name, suite in suites.items():
        frame = frames[name]
        batch_definition = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=context.suites.add(suite))
        )
        index_columns = [c for c in ("id", "split", "label") if c in frame.columns]
        index_columns = ["id"] if "id" in index_columns else index_columns
        result = definition.run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=dict(parameters),
            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": index_columns},
        )
        results[name] = result.to_json_dict()
    try:
        context.build_data_docs()
        index: Path | None = docs_dir / "index.html"
        if not index.is_file():
            index = None
    except Exception:  # Data Docs are a convenience; the results are written regardless
        logger.exception("building Data Docs into %s failed", docs_dir)
        index = None
    return results, index


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value(value: Any) -> str:
    """A value for a one-line message: floats to 4 significant digits, others as ``repr``."""
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def gx_failures(
    suite_name: str, suite_result: Mapping[str, Any], columns: Iterable[str]
) -> list[FailedCheck]:
    """One :class:`FailedCheck` per failed expectation in a JSON-able suite result.

    Args:
        suite_name: for the report.
        suite_result: ``ExpectationSuiteValidationResult.to_json_dict()``.
        columns: the validated frame's columns, to say "column missing" rather than GX's raw error.
    """
    columns = set(columns)
    out = []
    for res in suite_result.get("results", []):
        if res.get("success"):
            continue
        config = res.get("expectation_config") or {}
        kind = str(config.get("type"))
        kwargs = config.get("kwargs") or {}
        names = [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)]
        column = ",".join(map(str, names)) or None
        detail = res.get("result") or {}
        exc = res.get("exception_info") or {}
        if exc.get("raised_exception"):
            absent = [n for n in names if n not in columns]
            observed = (
                f"column {absent} missing" if absent else f"error: {_short(exc.get('exception_message'))}"
            )
        elif "unexpected_count" in detail and detail.get("unexpected_count"):
            observed = (
                f"{detail['unexpected_count']} of {detail.get('element_count')} rows unexpected "
                f"({detail.get('unexpected_percent', 0):.2f}%)"
            )
            index = detail.get("partial_unexpected_index_list") or []
            if index and all(isinstance(row, dict) for row in index):
                # index columns first, then the offending value(s)
                rows = "; ".join(
                    " ".join(
                        f"{k}={_value(v)}" for k, v in sorted(row.items(), key=lambda kv: kv[0] in names)
                    )
                    for row in index[:5]
                )
                observed += f", e.g. {rows}"
            else:
                values = ", ".join(_value(v) for v in detail.get("partial_unexpected_list", [])[:5])
                observed += f", e.g. [{values}]"
        elif "observed_value" in detail:
            observed = f"observed {_short(detail['observed_value'])}"
            if detail.get("details"):
                observed += f" ({_short(detail['details'], 120)})"
        else:
            observed = _short(detail) if detail else "no result"
        where = f"({column})" if column else ""
        out.append(
            FailedCheck(suite_name, kind, column, observed, f"{suite_name}: {kind}{where} failed: {observed}")
        )
    return out


# --------------------------------------------------------------------------------------------------
# Reports


def format_failures(result: ValidationResult) -> str:
    """A short plain-text report: one line per failed expectation or check, or a one-line pass."""
    m = result.metrics
    head = (
        f"{int(m.get('validation.expectations_evaluated', 0))} expectations, "
        f"{int(m.get('validation.checks_evaluated', 0))} cross-split checks"
    )
    if result.success:
        return f"validation passed: {head}"
    lines = [f"validation FAILED: {len(result.failed)} failed ({head}):"]
    lines += [f"  - {f.reason}" for f in result.failed]
    return "\n".join(lines)


def _summary_markdown(result: ValidationResult, report: Mapping[str, Any], cfg: ValidateConfig) -> str:
    m = result.metrics
    verdict = "PASSED" if result.success else "FAILED"
    lines = [
        f"# Data validation {verdict}",
        "",
        f"- Rows: {int(m.get('validation.rows', 0))} "
        + "("
        + ", ".join(
            f"{k.removeprefix('validation.rows_')} {int(v)}"
            for k, v in m.items()
            if k.startswith("validation.rows_")
        )
        + ")",
        f"- Expectations: {int(m['validation.expectations_evaluated'])} evaluated, "
        f"{int(m['validation.expectations_failed'])} failed (suites: {', '.join(SUITE_FILES)})",
        f"- Cross-split checks: {int(m['validation.checks_evaluated'])} evaluated, "
        f"{int(m['validation.checks_failed'])} failed",
        "- Data Docs: "
        + ("[data_docs/index.html](data_docs/index.html)" if result.data_docs_index else "not built"),
        "",
    ]
    if result.failed:
        lines += ["## What failed", ""] + [f"- {f.reason}" for f in result.failed] + [""]
    lines += [
        "## Leakage between splits",
        "",
        "Images whose bytes are identical (same sha256) in two splits; the gate is the count as a "
        f"fraction of the smaller split, at most {cfg.max_leakage_fraction:g}.",
        "",
        "| pair | shared images | fraction of smaller split | example ids |",
        "| --- | --- | --- | --- |",
    ]
    for pair, info in result.leakage.items():
        sample = "; ".join(f"{s}: {', '.join(ids[:3])}" for s, ids in info["ids"].items() if ids)
        lines.append(f"| {pair} | {info['count']} | {info['fraction']:.4%} | {sample or '-'} |")
    lines += [
        "",
        "## Train vs validation skew",
        "",
        "| check | KL(train ‖ val), nats | max | ok |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("label_kl", "intensity_kl"):
        item = report.get(name, {})
        value = f"{item['value']:.5f}" if "value" in item else item.get("error", "-")
        lines.append(
            f"| {name} | {value} | {item.get('threshold', '-')} | {'yes' if item.get('success') else 'no'} |"
        )
    lines += [
        "",
        f"Intensity histogram: {cfg.intensity_bins} equal bins of the per-image mean over 0-255. "
        f"Class shares must lie within [{cfg.class_share_min_ratio:g}/K, {cfg.class_share_max_ratio:g}/K] "
        "in every split (K classes). A KL check fails only when it exceeds its max and a permutation "
        f"test says sampling noise explains it with p < {cfg.skew_alpha:g}.",
        "",
    ]
    return "\n".join(lines)


def _replace_dir(src: Path, dst: Path) -> None:
    """Put ``src`` at ``dst``, replacing any existing ``dst`` with two renames (same filesystem)."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Stage


def validate(
    cfg: ValidateConfig,
    prepared_dir: Path,
    out_dir: Path,
    *,
    suites_dir: Path = Path("expectations"),
) -> ValidationResult:
    """Run the expectation suites and cross-split checks on ``prepared_dir`` and report into ``out_dir``.

    Failed expectations do not raise: read ``success`` / ``failed`` and decide. ``out_dir`` is built
    in a temporary sibling directory and renamed into place, replacing a previous report.

    Args:
        cfg: thresholds (``validate`` section of ``params.yaml``).
        prepared_dir: holds ``manifest.parquet`` and ``classes.json`` (see the module docstring).
        out_dir: the report directory (``paths.validation_dir``); gets ``results.json``,
            ``metrics.json``, ``summary.md`` and ``data_docs/index.html``.
        suites_dir: holds the suite JSON files named in ``SUITE_FILES``.

    Returns:
        The :class:`ValidationResult` (paths point into the final ``out_dir``).

    Raises:
        ValidationInputError: the manifest, classes.json or a suite JSON is missing, unreadable or
            malformed (the message names the file).
    """
    started = time.perf_counter()
    prepared_dir, out_dir, suites_dir = Path(prepared_dir), Path(out_dir), Path(suites_dir)
    manifest = load_manifest(prepared_dir)
    classes = load_classes(prepared_dir)
    num_classes = int(classes["num_classes"])
    parameters = suite_parameters(cfg, classes)
    suite_dicts = {
        name: (suites_dir / file, load_suite_dict(suites_dir / file)) for name, file in SUITE_FILES.items()
    }
    suites = {name: build_suite(d, path, parameters) for name, (path, d) in suite_dicts.items()}

    shares = class_shares(manifest, num_classes)
    frames = {"manifest": manifest, "class_balance": shares}
    cross, cross_failed = cross_split_checks(manifest, cfg, num_classes)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        build.chmod(0o755)
        gx_results, index = run_suites(suites, frames, parameters, build / "data_docs")
        failed: list[FailedCheck] = []
        for name, res in gx_results.items():
            failed += gx_failures(name, res, frames[name].columns)
        failed += cross_failed

        evaluated = sum(int(r["statistics"]["evaluated_expectations"]) for r in gx_results.values())
        gx_failed = sum(int(r["statistics"]["unsuccessful_expectations"]) for r in gx_results.values())
        leakage = cross["leakage"] if "error" not in cross["leakage"] else {}
        metrics: dict[str, float] = {
            "validation.success": float(not failed),
            "validation.expectations_evaluated": float(evaluated),
            "validation.expectations_failed": float(gx_failed),
            "validation.checks_evaluated": float(max(len(leakage), 1) + 2),  # leakage pairs + 2 KL checks
            "validation.checks_failed": float(len(cross_failed)),
            "validation.rows": float(len(manifest)),
        }
        if "split" in manifest.columns:
            for split, n in manifest["split"].value_counts().items():
                metrics[f"validation.rows_{split}"] = float(n)
        if "leakage_count" in cross:
            metrics["validation.leakage_count"] = float(cross["leakage_count"])
            metrics["validation.leakage_fraction"] = float(cross["leakage_fraction"])
            for pair, info in leakage.items():
                key = pair.replace("-", "_")
                metrics[f"validation.leakage_count_{key}"] = float(info["count"])
                metrics[f"validation.leakage_fraction_{key}"] = float(info["fraction"])
        for name in ("label_kl", "intensity_kl"):
            if "value" in cross[name]:
                metrics[f"validation.{name}"] = float(cross[name]["value"])

        final_index = out_dir / "data_docs" / "index.html" if index is not None else None
        result = ValidationResult(
            success=not failed,
            failed=failed,
            metrics=metrics,
            leakage=leakage,
            data_docs_index=final_index,
            results_path=out_dir / "results.json",
            summary_path=out_dir / "summary.md",
        )
        document = {
            "success": result.success,
            "validated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "runtime_s": round(time.perf_counter() - started, 3),
            "inputs": {
                "manifest": str(prepared_dir / MANIFEST_FILE),
                "classes": str(prepared_dir / CLASSES_FILE),
                "classes_json": classes,
                "suites": {name: str(path) for name, (path, _) in suite_dicts.items()},
            },
            "config": cfg.model_dump(mode="json"),
            "suite_parameters": parameters,
            "metrics": metrics,
            "failed": [asdict(f) for f in failed],
            "gx": gx_results,
            "cross_split": {**cross, "class_shares": shares.to_dict(orient="records")},
        }
        (build / "results.json").write_text(json.dumps(_jsonable(document), indent=2, allow_nan=False) + "\n")
        (build / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")
        (build / "summary.md").write_text(_summary_markdown(result, cross, cfg))
        _replace_dir(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    logger.info(
        "validation %s in %.1f s", "passed" if result.success else "failed", time.perf_counter() - started
    )
    return result
