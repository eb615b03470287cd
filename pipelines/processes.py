"""Process checks shared by the training step and the local services' script (psutil and the
standard library only, so ``infra/services.py`` can import it without the rest of the package)."""

from __future__ import annotations

import psutil


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and has not exited.

    psutil's ``Process(pid).status()`` (https://psutil.readthedocs.io/en/latest/#psutil.Process.status;
    on Linux the state field of ``/proc/<pid>/stat``, proc(5)); a process owned by another user
    counts as alive where its status cannot be read. A zombie (exited, not yet reaped by its parent,
    ``psutil.STATUS_ZOMBIE``) counts as dead: it will never close what it held.

    Args:
        pid: a process id (> 0).

    Returns:
        True when the process runs (or sleeps, or is stopped), False when it is gone or a zombie.
    """
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
