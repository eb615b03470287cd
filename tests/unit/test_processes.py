"""pipelines.processes: one check of whether a process still runs, for training and the services."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from pipelines.processes import pid_alive


def test_a_running_process_is_alive_and_an_exited_one_is_not_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert pid_alive(child.pid)
        child.stdin.close()  # it exits; until wait() reaps it, it is a zombie
        deadline = time.monotonic() + 30
        while pid_alive(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(child.pid)
        # os.kill(pid, 0) alone still finds the zombie: its zombie state (psutil) is what says "gone"
        os.kill(child.pid, 0)
    finally:
        child.wait(timeout=30)
    assert not pid_alive(child.pid)
    assert pid_alive(os.getpid())
