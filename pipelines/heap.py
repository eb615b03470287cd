"""Keep Python's full garbage collections off the modules a run has imported.

Python's cyclic garbage collector scans every tracked object of the oldest generation in a full
(generation 2) collection, and CPython starts one when that generation has grown by a quarter since
the last (https://docs.python.org/3/library/gc.html, and ``Modules/gcmodule.c``: ``long_lived_pending
> long_lived_total / 4``). Once TensorFlow, Keras, MLflow, DVC and Prefect are imported the process
tracks about a million objects, almost all of them module-level and alive until exit, and one full
collection over them takes 0.35-0.8 s on this project's 2-core machines. The objects a run creates
after training (MLflow entities, pandas frames, matplotlib figures) make the heap grow enough to start
one in about half the runs, at a random point after ``model.fit`` (measured: in 3 of 5 flow runs of the quick
profile, 0.56-0.79 s each).

:func:`freeze_imported` moves the objects alive at that point into the permanent generation
(:func:`gc.freeze`), which collections skip: later full collections scan only what was created since
(measured in a process running flow after flow: 2-3 a run, 0.03-0.07 s each). It is the pattern of
"Dismissing Python Garbage Collection at Instagram" (Instagram Engineering, 2017) and of
``gc.freeze``'s own documentation (freeze once the long-lived state is built). It imports the modules
named first with automatic collection off, which shortens the import itself (Keras with TensorFlow,
bytecode compiled: 1.8 s against 2.9-3.4 s, which held 5 full collections).

A freeze is never undone: :func:`gc.unfreeze` would put the million objects back into the oldest
generation with CPython's growth count already reset by the cheap collections, so the next full
collection would come at once and cost the full price. Freezes happen only while modules are being
imported for the first time (the first call, and a later call that imports a new module), so a
process that runs flow after flow freezes in its first run only. What a freeze can keep alive is
bounded: reference cycles that were already garbage at that moment, and that the young-generation
collection just before it did not free.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterable

#: What :func:`freeze_imported` has done in this process: None (nothing yet), "frozen" (it froze),
#: or "host" (the host application had frozen objects first: this module then never freezes). A
#: flag, not ``gc.get_freeze_count()``: that walks the whole permanent generation (about 0.1 s over
#: a million frozen objects).
_state: str | None = None


def freeze_imported(preload: Iterable[str] = ()) -> bool:
    """Import ``preload`` with automatic collection off, then collect the young generations and
    freeze every object the garbage collector tracks: on the first call in the process, and again
    on a later call only when it imported a module that was not imported yet.

    A flow calls it where its work needs a heavy module (the retrain flow: MLflow at its start,
    Keras and its backend once it knows it will train), so that a run that needs neither (a skipped
    retrain) does not import them, and a process that has run the flow before does nothing.

    Args:
        preload: module names to import first, so that their module-level objects are among the
            frozen ones (e.g. ``("keras",)``, which imports the backend: about 370,000 objects
            for TensorFlow). Modules already imported cost nothing.

    Returns:
        True when this call froze the heap. False when it had nothing new to freeze, or when the
        host application had frozen objects before the first call (:func:`gc.get_freeze_count`
        > 0): its freeze is left as it is, and the modules are only imported.

    Raises:
        ModuleNotFoundError: a ``preload`` module is not installed (nothing is frozen).
    """
    global _state
    new = [name for name in preload if name not in sys.modules]
    # Automatic collections off while importing: imports make few cycles, but their growth starts
    # full collections over the heap as it builds (measured: 5 while Keras imports TensorFlow,
    # 2.9-3.4 s against 1.8 s with collection off; 4 while MLflow imports, 1.45 s against 0.84 s).
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in new:
            importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()
    if _state is None and gc.get_freeze_count():  # cheap here: nothing of ours is frozen yet
        _state = "host"
    if _state == "host" or (_state == "frozen" and not new):
        return False
    gc.collect(1)  # the young generations only (milliseconds): their garbage is freed, not frozen
    gc.freeze()
    _state = "frozen"
    return True
