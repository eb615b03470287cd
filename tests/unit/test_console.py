"""The quiet console: TensorFlow / absl start-up lines dropped, warnings and errors kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from pipelines import console

ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = (
    "I0000 00:00:1795648046.744796   13182 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors."
)


def test_native_noise_is_absl_info_only():
    assert console.is_native_noise(ABSL_NOTICE)
    assert console.is_native_noise(ONEDNN)
    assert console.is_native_noise("I1125 21:06:07.123456    42 cpu_feature_guard.cc:227] optimized")
    assert not console.is_native_noise("W0000 00:00:1795648046.744796   13182 port.cc:153] a warning")
    assert not console.is_native_noise("E0000 00:00:1795648046.744796   13182 op.cc:1] an error")
    assert not console.is_native_noise("Traceback (most recent call last):")
    assert not console.is_native_noise("ValueError: I0000 is not a number")


def test_quiet_environment_keeps_what_the_user_set():
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}
    applied = console.quiet_environment(env)
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0" and "TF_CPP_MIN_LOG_LEVEL" not in applied
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    assert env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


def test_filter_drops_native_noise_and_keeps_errors_and_tracebacks():
    # A child process writes like a C++ library (straight to descriptor 2), then fails.
    script = textwrap.dedent(
        f"""
        import os, warnings
        from pipelines import console
        console.quiet()
        os.write(2, {(ABSL_NOTICE + chr(10)).encode()!r})
        os.write(2, {(ONEDNN + chr(10)).encode()!r})
        os.write(2, b"E0000 00:00:1.0   1 op.cc:1] a real native error\\n")
        warnings.warn_explicit("schema hint", UserWarning, "signature.py", 1, module="mlflow.models")
        warnings.warn("user advice", UserWarning)  # module __main__: not silenced
        raise RuntimeError("loud failure")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    err = proc.stderr
    assert "absl::InitializeLog" not in err and "oneDNN" not in err
    assert "a real native error" in err
    assert "UserWarning: user advice" in err and "schema hint" not in err
    assert "Traceback" in err and "RuntimeError: loud failure" in err


def test_library_chatter_is_held_at_warning():
    # Prefect's HTTP client logs every request at INFO.
    import logging

    console.setup_logging()
    for name in ("httpx", "httpcore", "mlflow"):
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name


def test_dvc_lines_print_once():
    """DVC prints through its own handlers (set up by ``import dvc``): the root handler that
    ``setup_logging`` installs leaves them alone, in a fresh process as ``make run`` is."""
    script = textwrap.dedent(
        """
        import logging
        from pipelines import console
        console.setup_logging()
        import dvc  # noqa: F401  (sets up DVC's console handlers)
        logging.getLogger("dvc.stage.cache").info("Updating lock file 'dvc.lock'")
        logging.getLogger("dvcx").info("not dvc")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count("Updating lock file 'dvc.lock'") == 1, both
    assert "not dvc" in proc.stderr


def test_task_run_lines_name_their_task_run():
    import logging

    formatter = console.RunNameFormatter()
    record = logging.LogRecord(
        "prefect.task_runs", logging.INFO, __file__, 1, "Finished in state %s", ("Completed()",), None
    )
    record.task_run_name = "train-a1b"
    assert formatter.format(record).split(" ", 1)[1] == "train-a1b: Finished in state Completed()"
    plain = logging.LogRecord("pipelines.steps", logging.INFO, __file__, 1, "prepare: done", None, None)
    assert formatter.format(plain).split(" ", 1)[1] == "prepare: done"
