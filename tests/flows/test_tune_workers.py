"""Parallel tuning workers on a real PostgreSQL (infra/postgres.sh): a SIGKILLed worker's trial is
failed by its heartbeat and retried, no MLflow run is left RUNNING, and two studies sharing one
store lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from flows.tune import worker_command
from pipelines import steps, tracking
from pipelines.config import load_params
from pipelines.tune import make_storage

# In the default run (about 2.5 minutes past the session's servers on 2 cores: PostgreSQL and 3
# TensorFlow workers); `make test` runs it beside the other tests' process, in the `servers` group.
pytestmark = pytest.mark.flow


@pytest.fixture(scope="module")
def optuna_postgres(services) -> str:
    services.start("postgres.sh")
    return services.run("postgres.sh", "url", "optuna").stdout.strip()


def test_killed_worker_trial_is_retried_and_no_run_left_running(
    folder_params, optuna_postgres, mlflow_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("CURVEWATCH_OPTUNA_STORAGE", optuna_postgres)
    # Three processes log at once: the PostgreSQL-backed MLflow server, as a team would run it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    path = folder_params(
        {
            "train": {"model": "mlp", "epochs": 10, "batch_size": 16, "learning_rate": 0.003},
            "tune": {
                "n_trials": 8,
                "workers": 3,
                "models": ["mlp"],
                "augment": [False],
                "batch_sizes": [16],
                "heartbeat_grace_s": 30,  # a heartbeat thread starved on 2 cores shared by 2 test processes
                "study_name": "kill",
            },
        }
    )
    params = load_params(path)
    steps.run_fetch(params)
    steps.run_prepare(params)
    steps.run_validate(params)
    study = steps.start_tune(params)
    storage = optuna.storages.RDBStorage(optuna_postgres)
    assert optuna.load_study(study_name=study.study_name, storage=storage).trials == []  # made before workers
    logs = [tmp_path / f"worker-{i}.log" for i in range(3)]
    procs = [
        subprocess.Popen(
            worker_command(study, str(path), None, [], worker=i),
            env=os.environ.copy(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        for i, log in enumerate(logs)
    ]

    def tail(i: int) -> str:
        return logs[i].read_text()[-3000:]

    deadline = time.monotonic() + 300
    # Kill worker 0 once every worker holds a running trial that has reported an epoch.
    while time.monotonic() < deadline:
        trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        if len(running) == 3:
            break
        ended = [i for i, p in enumerate(procs) if p.poll() is not None]
        assert not ended, f"worker {ended} ended before all three were training:\n{tail(ended[0])}"
        time.sleep(0.5)
    else:
        pytest.fail("the three workers never ran trials at the same time")
    procs[0].send_signal(signal.SIGKILL)
    try:
        for i, p in enumerate(procs[1:], start=1):
            assert p.wait(timeout=600) == 0, f"worker {i} failed:\n{tail(i)}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].wait() == -signal.SIGKILL
    outcome = steps.finish_tune(params, study)

    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    states = [t.state for t in trials]
    finished = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) >= 8  # every requested trial complete or pruned
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the killed worker's trial
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    failed = next(t for t in trials if t.state == optuna.trial.TrialState.FAIL)
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == failed.number]
    assert len(retries) == 1 and retries[0].state in (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    )
    assert retries[0].params == failed.params
    # Each worker's sampler has its own seed: workers seeded alike drew the same configurations.
    drawn = [tuple(sorted(t.params.items())) for t in trials if "failed_trial" not in t.system_attrs]
    assert len(set(drawn)) == len(drawn)

    mc = tracking.client()
    children = mc.search_runs(
        [study.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{study.parent_run_id}'"
    )
    assert len(children) == len(trials)
    data = steps.load_train_data(params)[0]
    for child in children:  # what the gate and the engine read of a run, as a retrain's run logs it
        assert child.data.params["data.val_examples"] == str(len(data.y_val))
        assert child.data.params["data.num_classes"] == str(data.num_classes)
        assert child.data.tags["curvewatch.data_version"] == study.data_version
    assert not [c for c in children if c.info.status == "RUNNING"]
    assert sum(c.info.status == "FAILED" for c in children) == 1
    assert mc.get_run(study.parent_run_id).info.status == "FINISHED"
    assert outcome.states.get("FAIL") == 1


STUDY_SCRIPT = textwrap.dedent(
    """
    import sys
    import optuna
    from pipelines.curves.pruner import CurvePruner
    from pipelines.tune import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, url = sys.argv[1], sys.argv[2]
    study = optuna.create_study(
        study_name=name, storage=make_storage(url), direction="maximize",
        pruner=CurvePruner(12), load_if_exists=True,
    )

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for e in range(1, 13):
            trial.report(x * (1 - 0.5 ** e), e)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=25)
    """
)


def test_two_studies_writing_to_one_store_lose_nothing(optuna_postgres, tmp_path):
    names = [f"a-{tmp_path.name[-12:]}", f"b-{tmp_path.name[-12:]}"]
    # The store's tables are created once before the writers start, as `tune` does before its workers:
    # RDBStorage creates them when missing, and processes doing that at once on an empty database
    # collide ("relation studies already exists"; Optuna's advice: optuna/optuna#1092).
    make_storage(optuna_postgres)
    procs = [
        subprocess.Popen([sys.executable, "-c", STUDY_SCRIPT, name, optuna_postgres])
        for name in names
        for _ in (0, 1)
    ]  # two writers per study, four at once
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    storage = optuna.storages.RDBStorage(optuna_postgres)
    for name in names:
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert len(trials) == 50
        assert {t.number for t in trials} == set(range(50))
        for t in trials:
            assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            steps_seen = sorted(t.intermediate_values)
            assert steps_seen == list(range(1, len(steps_seen) + 1))  # no report lost
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert len(steps_seen) == 12 and t.value == t.params["x"]
