"""The documentation names what the code reads: every ``CURVEWATCH_*`` environment variable that
``pipelines/``, ``flows/`` or ``infra/`` reads is listed in ``.env.example``, as the README says."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bCURVEWATCH_[A-Z][A-Z0-9_]*\b")


def _read_in_code() -> set[str]:
    names: set[str] = set()
    for folder in ("pipelines", "flows", "infra"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".sh"} and path.is_file():
                names |= set(NAME.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_environment_variable_the_code_reads_is_in_env_example() -> None:
    read = _read_in_code()
    assert "CURVEWATCH_OPTUNA_STORAGE" in read  # the scan finds what it should
    listed = {
        line.split("=", 1)[0].strip()
        for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "=" in line
    }
    assert read - listed == set(), f".env.example lacks {sorted(read - listed)}"
