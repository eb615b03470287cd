"""Process checks shared by the training step and the local services' script (standard library only,
so ``infra/services.py`` can import it without the rest of the package)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and has not exited.

    ``os.kill(pid, 0)`` (POSIX: no signal is sent, only the existence and permission checks are
    made); a process owned by another user counts as alive. A zombie (exited, not yet reaped by its
    parent, state ``Z`` in ``/proc/<pid>/stat``, see proc(5)) counts as dead: it will never close
    what it held.

    Args:
        pid: a process id (> 0).

    Returns:
        True when the process runs (or sleeps, or is stopped), False when it is gone or a zombie.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
