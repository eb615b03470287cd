"""pipelines.heap: freeze the imported heap when modules are first imported (each case in a fresh
interpreter, since a freeze lasts for the life of the process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(script: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_freeze_imported_freezes_when_it_imports_something_new_and_full_collections_skip_it():
    out = _run(
        """
import gc, json, sys
from pipelines import heap
assert "fractions" not in sys.modules
before = gc.get_freeze_count()
first = heap.freeze_imported(preload=("fractions",))
frozen = gc.get_freeze_count()
import fractions
in_frozen = any(o is vars(fractions) for o in gc.get_objects()) is False  # frozen: not listed
second = heap.freeze_imported(preload=("fractions",))
frozen_after_second = gc.get_freeze_count()
young_before_third = [[i] for i in range(100)]
third = heap.freeze_imported(preload=("colorsys",))
third_froze_young = gc.get_freeze_count() >= frozen_after_second + 100
young = [[i] for i in range(1000)]  # new objects stay collectable
for cycle in range(100):
    a = []; a.append(a)
del a
unreachable = gc.collect()
print(json.dumps({"before": before, "first": first, "frozen": frozen, "second": second,
                  "unchanged": frozen_after_second == frozen, "third": third,
                  "third_froze_young": third_froze_young,
                  "colorsys_imported": "colorsys" in sys.modules, "fractions_frozen": in_frozen,
                  "unreachable": unreachable, "tracked": len(gc.get_objects())}))
"""
    )
    assert out["before"] == 0
    assert out["first"] is True
    assert out["frozen"] > 1000  # the interpreter's and the imported modules' objects
    assert out["fractions_frozen"] is True  # the preloaded module's namespace went into the freeze
    assert out["second"] is False  # nothing new imported: nothing frozen again
    assert out["unchanged"] is True
    assert out["third"] is True  # a module imported for the first time: a new freeze
    assert out["third_froze_young"] is True
    assert out["colorsys_imported"] is True
    assert out["unreachable"] >= 100  # cycles made after the freeze are still collected
    assert out["tracked"] < out["frozen"]  # a full collection sees only what came after the freeze


def test_freeze_imported_leaves_a_host_applications_freeze_alone():
    out = _run(
        """
import gc, json
gc.freeze()
count = gc.get_freeze_count()
from pipelines import heap
froze = heap.freeze_imported(preload=("fractions",))
print(json.dumps({"froze": froze, "same": gc.get_freeze_count() == count}))
"""
    )
    assert out == {"froze": False, "same": True}


def test_freeze_imported_names_a_missing_module():
    out = _run(
        """
import gc, json
from pipelines import heap
try:
    heap.freeze_imported(preload=("no_such_module_curvewatch",))
except ModuleNotFoundError as exc:
    print(json.dumps({"error": str(exc), "frozen": gc.get_freeze_count()}))
"""
    )
    assert "no_such_module_curvewatch" in out["error"]
    assert out["frozen"] == 0  # nothing frozen when the preload fails


def test_freeze_imported_imports_with_automatic_collection_off_and_restores_it(tmp_path):
    # A module whose import allocates enough container objects to start collections of every
    # generation if automatic collection were on.
    (tmp_path / "bulky_module_curvewatch.py").write_text("ITEMS = [[i] for i in range(300_000)]\n")
    out = _run(
        f"""
import gc, json, sys
sys.path.insert(0, {str(tmp_path)!r})
from pipelines import heap
seen = []
gc.callbacks.append(lambda phase, info: phase == "start" and seen.append(info["generation"]))
heap.freeze_imported(preload=("bulky_module_curvewatch",))
during = list(seen)
print(json.dumps({{"during_import": during, "enabled": gc.isenabled()}}))
"""
    )
    assert out["during_import"] == [1]  # only the explicit young-generation collection before the freeze
    assert out["enabled"] is True
