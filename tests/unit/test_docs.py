"""The documentation names what the code reads: every ``CURVEWATCH_*`` environment variable that
``pipelines/``, ``flows/`` or ``infra/`` names, and every ``MLFLOW_*`` / ``PREFECT_*`` one they read
(``environ.get("...")``, ``environ["..."]``, or the same on an ``env`` copy of it), is listed in
``.env.example``, as the README says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bCURVEWATCH_[A-Z][A-Z0-9_]*\b")
# MLflow's and Prefect's own variables, where our code reads one (it also sets some for subprocesses).
LIBRARY_READ = re.compile(r"\b(?:environ|env)(?:\.get\(|\[)\s*\"((?:MLFLOW|PREFECT)_[A-Z0-9_]+)\"")


def _read_in_code() -> set[str]:
    names: set[str] = set()
    for folder in ("pipelines", "flows", "infra"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".sh"} and path.is_file():
                text = path.read_text(encoding="utf-8")
                names |= set(NAME.findall(text)) | set(LIBRARY_READ.findall(text))
    return names


def test_every_environment_variable_the_code_reads_is_in_env_example() -> None:
    read = _read_in_code()
    assert {"CURVEWATCH_OPTUNA_STORAGE", "MLFLOW_ARTIFACT_ROOT", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= read
    listed = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    }
    assert read - listed == set(), f".env.example lacks {sorted(read - listed)}"
