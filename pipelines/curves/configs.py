"""What "the same config as the champion" means, defined once.

Two runs are *seed runs of one config* when (:func:`same_config`):

- their **training config** is equal: every resolved param (the flat ``section.key`` params
  :meth:`pipelines.config.Params.to_flat_dict` logs) except the seed and ``paths.*``
  (:func:`training_config`). The seed is what varies between seed runs; paths say where outputs
  are written and change nothing that is learnt. Every other section counts, including ones that
  do not touch training (``compare.*``, ``tracking.*``): a spread estimated only from runs the
  user launched with an identical ``params.yaml`` is the conservative reading, and a key that
  exists in one run but not the other makes the configs differ;
- and they ran on the **same data**: the data version (the DVC content hash that the train stage
  records in the ``curvewatch.data_version`` tag) is not config, but seed runs on other data mix
  data variation into the seed spread and score a different test set, so they are no fair yardstick
  for the regression gate. The ``data.*`` params (``data.num_classes``, ``data.train_examples``,
  ``data.val_examples``) are facts measured from that data, not settings, so they follow the data
  version and are left out of the config. When either run lacks the tag (curves read from a
  CSVLogger file, runs logged by older versions) the data cannot be compared and the params alone
  decide.

Params are compared as the strings MLflow stores and returns, written by one function,
:func:`param_text` (``str(value)``; JSON for a list or a mapping), which
:func:`pipelines.tracking.log_params` logs with: so a run's params read back from MLflow equal the
same config's params built in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Run tag holding the DVC content hash of the data a run was trained on.
DATA_VERSION_TAG = "curvewatch.data_version"
#: Param prefixes that are not part of the training config.
NOT_CONFIG_PREFIXES: tuple[str, ...] = ("paths.", "data.")


def param_text(value: Any) -> str:
    """A param value as it is logged to MLflow: JSON for a list, tuple or mapping (``[false]``,
    ``["small_cnn"]``), else ``str(value)``; MLflow returns it unchanged."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


def is_seed_key(key: str) -> bool:
    """True for a param naming a seed: its last dotted part ends in ``seed`` (``base.seed``, ``seed``,
    ``train.random_seed``); case-insensitive."""
    return key.rsplit(".", 1)[-1].lower().endswith("seed")


def training_config(params: Mapping[str, Any]) -> dict[str, str]:
    """The params that define a training config: all but seed keys, ``paths.*`` and ``data.*``.

    Args:
        params: flat params, e.g. ``{"train.learning_rate": "0.001", "base.seed": "42"}`` (an
            MLflow run's ``data.params`` or a ``Curve.params``).

    Returns:
        ``{key: param_text(value)}`` for the config keys, so in-memory and MLflow-read params compare
        equal (a string read from MLflow is returned as it is).
    """
    return {
        str(k): v if isinstance(v, str) else param_text(v)
        for k, v in params.items()
        if not is_seed_key(str(k)) and not str(k).startswith(NOT_CONFIG_PREFIXES)
    }


def run_seed(params: Mapping[str, Any]) -> str | None:
    """The run's seed as a string (the value of its seed keys), or None when it is unknown.

    Unknown means no seed key, or several seed keys with different values: then no single seed
    identifies the run, and callers counting distinct seeds must leave it out.
    """
    values = {str(v) for k, v in params.items() if is_seed_key(str(k))}
    return values.pop() if len(values) == 1 else None


def same_config(
    params_a: Mapping[str, Any],
    params_b: Mapping[str, Any],
    tags_a: Mapping[str, str] | None = None,
    tags_b: Mapping[str, str] | None = None,
) -> bool:
    """True when two runs are the same training config on the same data (seeds may differ).

    See the module docstring for the choice of keys. Runs without params never match: with nothing
    recorded there is no evidence that they share a config.

    Args:
        params_a: flat params of the first run.
        params_b: flat params of the second run.
        tags_a: run tags of the first run (``DATA_VERSION_TAG`` is read), or None.
        tags_b: run tags of the second run, or None.

    Returns:
        Whether ``training_config`` is equal and, when both runs record a data version, it is equal.
    """
    if not params_a or not params_b:
        return False
    if training_config(params_a) != training_config(params_b):
        return False
    version_a = (tags_a or {}).get(DATA_VERSION_TAG)
    version_b = (tags_b or {}).get(DATA_VERSION_TAG)
    return version_a is None or version_b is None or version_a == version_b
