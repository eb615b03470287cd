"""A quiet console for the ``curvewatch`` command line and the Prefect flow.

TensorFlow, absl, gRPC and MLflow print start-up banners, INFO lines and UserWarnings that bury
the few lines a user needs. The entry point, ``pipelines.cli``'s callback (``make run`` and
``make tune`` run the flows through it; a deployment's worker imports the flow module and does
not), calls :func:`quiet` once, before TensorFlow or MLflow is imported; library modules never do
(nothing happens at import time). What stays: warnings and errors of every library (Python ``WARNING`` and
above, TensorFlow's C++ ``ERROR``), tracebacks, the one line each ``curvewatch`` stage command
prints when it ends, and Keras' progress bar during training.

Sources: TensorFlow's ``TF_CPP_MIN_LOG_LEVEL`` (0 all, 1 no INFO, 2 no WARNING, 3 no ERROR) and
gRPC's ``GRPC_VERBOSITY`` (environment variables read when the C++ runtime loads); MLflow's
``MLFLOW_LOGGING_LEVEL``, ``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT`` and
``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR`` (``mlflow.environment_variables``); Python's
``warnings.filterwarnings``.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import MutableMapping

#: Environment defaults set by :func:`quiet` (a value the user already set is kept).
QUIET_ENV: dict[str, str] = {
    # TensorFlow's C++ INFO and WARNING lines (the oneDNN banner, CPU feature notices, cuda probes).
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GRPC_VERBOSITY": "ERROR",
    # MLflow's INFO lines ("Waiting up to 300 seconds for model version ..."), its
    # "View run ... at: URL" prints and its artifact download progress bars.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

#: Loggers that chatter at INFO; held at WARNING so that their problems still show. ``httpx``
#: logs every request the Prefect client makes ("HTTP Request: POST .../set_state", 21 lines in a
#: ``make run``, one of them Prefect's expected "422 Unprocessable Entity" CSRF probe).
NOISY_LOGGERS = (
    "mlflow",
    "alembic",
    "absl",
    "tensorflow",
    "h5py",
    "urllib3",
    "git",
    "great_expectations",
    "httpx",
    "httpcore",
)

#: Loggers that print to the console through handlers of their own: ``import dvc`` sets up DVC's
#: (``dvc.logger.setup``), so its lines ("Updating lock file 'dvc.lock'") would print a second time
#: through the root handler. The root handler leaves their records to them.
OWN_CONSOLE_LOGGERS = ("dvc",)


def quiet_environment(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :data:`QUIET_ENV` in ``env`` (default ``os.environ``) where not set; returns what was set.

    Must run before TensorFlow is imported: its C++ runtime reads the variables once, on load.
    """
    env = os.environ if env is None else env
    applied = {}
    for key, value in QUIET_ENV.items():
        if key not in env:
            env[key] = value
            applied[key] = value
    return applied


def quiet_warnings() -> None:
    """Hide MLflow's and Keras' UserWarnings (advice such as "Hint: Inferred schema contains integer
    column(s)", "Model logged without a signature") and MLflow's FutureWarnings (deprecation notices
    of its own API); other warnings and all errors still show."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\..*)?")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow(\..*)?")


def printed_by_its_own_handler(record: logging.LogRecord) -> bool:
    """True for a record of :data:`OWN_CONSOLE_LOGGERS` (or their children)."""
    return any(record.name == name or record.name.startswith(name + ".") for name in OWN_CONSOLE_LOGGERS)


class RunNameFormatter(logging.Formatter):
    """``HH:MM:SS message``, with the Prefect task run's name before the message when the record
    comes from a task run's logger (Prefect puts ``task_run_name`` in the record, e.g.
    ``train-a1b``): "Finished in state Completed()" then says which task finished."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        task_run = getattr(record, "task_run_name", None)
        return f"{record.asctime} {task_run}: {record.message}" if task_run else super().formatMessage(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Short log lines (:class:`RunNameFormatter`) on stderr, chatty libraries held at WARNING,
    :data:`OWN_CONSOLE_LOGGERS` left to their own handlers.

    Like ``logging.basicConfig``, does nothing to the root logger when it already has a handler
    (a host such as pytest or a notebook configured it); the library levels are set either way.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RunNameFormatter())
        handler.addFilter(lambda record: not printed_by_its_own_handler(record))
        root.addHandler(handler)
        root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


#: Lines TensorFlow 2.21's C++ runtime writes straight to file descriptor 2 before absl's logging
#: is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hold them back (measured here: the absl notice
#: and the oneDNN banner print at import and again at the first op, whatever the level): absl's
#: pre-initialisation notice and absl INFO lines (``I0000 00:00:1795648046.744796  4242 port.cc:153] ...``).
NATIVE_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^I\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] "),
)


def is_native_noise(line: str) -> bool:
    """Whether a stderr line is one of :data:`NATIVE_NOISE` (warnings and errors never are)."""
    return any(p.match(line) for p in NATIVE_NOISE)


class NativeStderrFilter:
    """Route file descriptor 2 through a pipe and drop :data:`NATIVE_NOISE` lines.

    C++ libraries write to the descriptor, not to ``sys.stderr``, so Python's logging cannot
    filter them. A daemon thread copies every other line, unchanged and at once, to the original
    stderr; :meth:`stop` (registered with ``atexit``, which runs after Python printed any
    uncaught traceback) restores the descriptor and copies what is left, so errors stay loud.
    Child processes inherit the filtered descriptor; long-lived ones (servers) must send their
    output to a log file, as ``infra/`` does.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._saved is not None:
            return
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        self._saved = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        out = os.fdopen(os.dup(self._saved), "wb", buffering=0)

        def pump() -> None:
            with os.fdopen(read_fd, "rb") as pipe:
                for raw in pipe:
                    if not is_native_noise(raw.decode("utf-8", "replace").rstrip("\n")):
                        out.write(raw)
            out.close()

        self._thread = threading.Thread(target=pump, name="curvewatch-stderr", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # the pipe's last writer goes: the pump reads to EOF and ends
        os.close(self._saved)
        self._saved = None
        if self._thread is not None:
            self._thread.join(timeout=5)


_native_filter = NativeStderrFilter()


def stop_filter() -> None:
    """Stop the stderr filter of :func:`quiet` now, delivering every line it holds (for a process
    about to leave with ``os._exit``, which skips the ``atexit`` hook that would do it)."""
    _native_filter.stop()


def quiet(level: int = logging.INFO, *, filter_native: bool = True) -> None:
    """All of the above: call once from an entry point, before importing TensorFlow or MLflow.

    ``filter_native=False`` leaves file descriptor 2 alone (a host process such as pytest or a
    notebook owns it).
    """
    quiet_environment()
    quiet_warnings()
    setup_logging(level)
    if filter_native:
        _native_filter.start()
