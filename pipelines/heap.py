"""Keep Python's full garbage collections off the modules a run has imported.

Python's cyclic garbage collector scans every tracked object of the oldest generation in a full
(generation 2) collection, and CPython starts one when that generation has grown by a quarter since
the last (https://docs.python.org/3/library/gc.html, and ``Modules/gcmodule.c``: ``long_lived_pending
> long_lived_total / 4``). Once TensorFlow, Keras, MLflow, DVC and Prefect are imported the process
tracks about a million objects, almost all of them module-level and alive until exit, and one full
collection over them takes 0.35-0.8 s on this project's 2-core machines. The objects a run creates
after training (MLflow entities, pandas frames, matplotlib figures) make the heap grow enough to start
one in most runs, at a random point after ``model.fit`` (measured: in 3 of 5 flow runs of the quick
profile, 0.56-0.79 s each).

:func:`freeze_imported` moves the objects alive at that point into the permanent generation
(:func:`gc.freeze`), which collections skip: later full collections scan only what was created since
(measured in a process running flow after flow: 2-3 a run, 0.03-0.07 s each). It is the pattern of
"Dismissing Python Garbage Collection at Instagram" (Instagram Engineering, 2017) and of
``gc.freeze``'s own documentation (freeze once the long-lived state is built). It imports the modules
named first with automatic collection off, which shortens the import itself (Keras with TensorFlow,
bytecode compiled: 1.8 s against 2.9-3.4 s, which held 5 full collections).

It is done once per process and never undone: :func:`gc.unfreeze` would put the million objects
back into the oldest generation with CPython's growth count already reset by the cheap collections,
so the next full collection would come at once and cost the full price. What it can keep alive is
bounded: reference cycles that were already garbage at the freeze (none are made again afterwards,
since nothing after it is frozen).
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterable

#: Whether :func:`freeze_imported` has run in this process. A flag, not ``gc.get_freeze_count()``:
#: that walks the whole permanent generation (about 0.1 s over a million frozen objects).
_done = False


def freeze_imported(preload: Iterable[str] = ()) -> bool:
    """Import ``preload`` (automatic collection off meanwhile), collect the young generations, then
    freeze every object the garbage collector tracks, once per process.

    Args:
        preload: module names imported first, so that their module-level objects are among the
            frozen ones (e.g. ``("keras",)``, which imports the backend: about 370,000 objects
            for TensorFlow). Modules already imported cost nothing.

    Returns:
        True when this call froze the heap; False when the process already has frozen objects
        (:func:`gc.get_freeze_count` > 0: an earlier call, or the host application's own
        :func:`gc.freeze`), in which case nothing is imported or frozen.

    Raises:
        ModuleNotFoundError: a ``preload`` module is not installed.
    """
    global _done
    if _done:
        return False
    if gc.get_freeze_count():  # cheap here: nothing of ours is frozen yet
        _done = True
        return False
    # Automatic collections off while importing: imports make few cycles, but their growth starts
    # full collections over the heap as it builds (measured: 5 while Keras imports TensorFlow,
    # 2.9-3.4 s against 1.8 s with collection off).
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in preload:
            importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()
    gc.collect(1)  # the young generations only (milliseconds): their garbage is freed, not frozen
    gc.freeze()
    _done = True
    return True
