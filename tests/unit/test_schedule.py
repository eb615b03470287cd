"""The retrain-or-skip decision, the series-watch events and the ``schedule`` params section."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipelines.config import ConfigError, load_params
from pipelines.schedule import (
    DATA_TAG,
    MODEL_RESOURCE_PREFIX,
    PARAMS_TAG,
    REGRESSION_EVENT,
    SERIES_STALL_EVENT,
    Fingerprint,
    decide_retrain,
    last_fingerprint,
    params_md5,
    stages_to_run,
    watch_events,
)


def test_unchanged_data_and_params_skip_in_one_line():
    last = Fingerprint("abc.dir", "p1", run_id="r1")
    decision = decide_retrain(Fingerprint("abc.dir", "p1"), last)
    assert decision.retrain is False
    assert "\n" not in decision.reason and "r1" in decision.reason and "skipped" in decision.reason


@pytest.mark.parametrize(
    ("current", "changed"),
    [
        (Fingerprint("new.dir", "p1"), "data version"),
        (Fingerprint("abc.dir", "p2"), "params"),
        (Fingerprint("new.dir", "p2"), "data version and params"),
    ],
)
def test_a_change_retrains_and_names_it(current, changed):
    decision = decide_retrain(current, Fingerprint("abc.dir", "p1", run_id="r1"))
    assert decision.retrain is True
    assert decision.reason.startswith(f"retraining: {changed} changed")


def test_first_run_and_force_retrain():
    assert decide_retrain(Fingerprint("a", "p"), None).retrain is True
    assert decide_retrain(Fingerprint("a", "p"), Fingerprint("a", "p"), force=True).retrain is True


def _run(run_id, status="FINISHED", **tags):
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, status=status), data=SimpleNamespace(tags=tags)
    )


def test_last_fingerprint_takes_the_newest_run_that_went_through_the_gate():
    full = {DATA_TAG: "d", PARAMS_TAG: "p", "curvewatch.gate": "promote"}
    runs = [
        _run("crashed-in-evaluate", **{DATA_TAG: "d2", PARAMS_TAG: "p2"}),  # no gate tag
        _run("failed", status="FAILED", **full),
        _run("good", **full),
        _run("older", **full),
    ]
    assert last_fingerprint(runs) == Fingerprint("d", "p", "good")
    assert last_fingerprint(runs[:2]) is None


def test_a_run_never_recorded_in_dvc_lock_is_not_skipped_after():
    """A flow run whose DVC commit or push failed after the gate keeps its pending lock tag: the
    next run retrains (and records), instead of skipping after a run dvc.lock does not describe."""
    from pipelines.tracking import LOCK_PENDING, LOCK_TAG

    full = {DATA_TAG: "d", PARAMS_TAG: "p", "curvewatch.gate": "promote"}
    pending = _run("unrecorded", **full, **{LOCK_TAG: LOCK_PENDING})
    recorded = _run("recorded", **full, **{LOCK_TAG: "0123abcd"})
    by_dvc_repro = _run("repro", **full)  # no lock tag: dvc repro writes dvc.lock itself
    last = last_fingerprint([pending, recorded])
    assert last == Fingerprint("d", "p", "unrecorded", recorded=False)
    decision = decide_retrain(Fingerprint("d", "p"), last)
    assert decision.retrain is True and "unrecorded" in decision.reason and "dvc.lock" in decision.reason
    for run in (recorded, by_dvc_repro):
        assert decide_retrain(Fingerprint("d", "p"), last_fingerprint([run])).retrain is False
    # Changed data still names the change, recorded or not.
    assert decide_retrain(Fingerprint("d2", "p"), last).reason.startswith("retraining: data version changed")


def test_in_a_dvc_project_a_changed_stage_or_a_run_outside_it_is_not_skipped_after():
    """Inside a DVC project (``changed_stages`` given) an unchanged data version and params skip only
    when ``dvc status`` shows no stage changed and the last run was made in the project: a flow run
    outside it (tag ``LOCK_OUTSIDE``) is not in dvc.lock. Outside a project the rule is unchanged."""
    from pipelines.tracking import LOCK_OUTSIDE, LOCK_TAG

    full = {DATA_TAG: "d", PARAMS_TAG: "p", "curvewatch.gate": "promote"}
    inside = last_fingerprint([_run("inside", **full, **{LOCK_TAG: "0123abcd"})])
    outside = last_fingerprint([_run("outside", **full, **{LOCK_TAG: LOCK_OUTSIDE})])
    assert outside == Fingerprint("d", "p", "outside", in_project=False)
    current = Fingerprint("d", "p")

    decision = decide_retrain(current, inside, changed_stages=["validate", "train"])
    assert decision.retrain is True and "validate, train" in decision.reason and "\n" not in decision.reason
    decision = decide_retrain(current, outside, changed_stages=[])
    assert decision.retrain is True and "outside" in decision.reason and "dvc.lock" in decision.reason
    skipped = decide_retrain(current, inside, changed_stages=[])
    assert skipped.retrain is False and "inside" in skipped.reason
    # Outside a DVC project (no `dvc status`): unchanged data and params skip, after either run.
    assert decide_retrain(current, outside).retrain is False
    assert decide_retrain(current, inside).retrain is False
    assert decide_retrain(Fingerprint("d2", "p"), inside, changed_stages=["train"]).reason.startswith(
        "retraining: data version changed"
    )


def test_pipeline_stages_are_the_stages_of_dvc_yaml_in_order():
    """The flow asks ``dvc status`` about ``PIPELINE_STAGES``: all of dvc.yaml's, so any changed
    stage keeps a run from skipping."""
    import yaml

    from pipelines.schedule import PIPELINE_STAGES
    from tests.conftest import REPO

    assert list(PIPELINE_STAGES) == list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def test_params_md5_ignores_schedule_tune_and_where_the_data_comes_from(params_file):
    base = load_params(params_file())
    assert params_md5(base) == params_md5(
        load_params(params_file({"schedule": {"retrain_cron": "5 1 * * 1"}}))
    )
    assert params_md5(base) == params_md5(load_params(params_file({"tune": {"n_trials": 2}})))
    assert params_md5(base) != params_md5(load_params(params_file({"train": {"epochs": 2}})))
    assert len(params_md5(base)) == 32
    # Where the dataset comes from (checksummed files; the data version tells a change) and the
    # scratch folders define nothing: moving the dataset's folder retrained byte-identical data.
    moved = {"fetch": {"source_dir": "/elsewhere", "url": "https://mirror.example/"}}
    assert params_md5(base) == params_md5(load_params(params_file(moved)))
    assert params_md5(base) == params_md5(load_params(params_file({"paths": {"tune_dir": "/tmp/x"}})))
    assert params_md5(base) != params_md5(load_params(params_file({"paths": {"model_file": "m/x.keras"}})))


def test_watch_events_for_gate_failure_and_series_stall():
    regression = {"code": "regression", "message": "challenger worse (p = 0.01)"}
    stall = {"code": "series_stall", "message": "last 3 retrains did not beat the champion"}
    assert watch_events("promote", []) == []
    events = watch_events("regression", [regression, stall])
    assert [e.event for e in events] == [REGRESSION_EVENT, SERIES_STALL_EVENT]
    assert events[0].message == regression["message"] and events[1].message == stall["message"]
    assert [e.event for e in watch_events("keep_champion", [stall])] == [SERIES_STALL_EVENT]


def test_schedule_section_defaults_to_nightly(params_file):
    params = load_params(params_file())
    assert params.schedule.retrain_cron == "0 3 * * *" and params.schedule.timezone == "UTC"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"retrain_cron": "61 3 * * *"}, "schedule.retrain_cron"),
        ({"retrain_cron": "0 3 * *"}, "schedule.retrain_cron"),
        ({"retrain_cron": "@daily"}, "schedule.retrain_cron"),
        ({"timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"retrain_crn": "0 3 * * *"}, "schedule.retrain_crn"),
    ],
)
def test_bad_schedule_names_the_key(params_file, section, key):
    path = params_file({"schedule": section})
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert f"{path}: {key}:" in str(info.value)


def test_documented_automation_is_valid_and_triggers_on_the_emitted_events():
    from fnmatch import fnmatch

    import yaml
    from prefect.events.schemas.automations import AutomationCore

    from tests.conftest import REPO

    automation = AutomationCore.model_validate(
        yaml.safe_load((REPO / "flows" / "automations" / "notify.yaml").read_text())
    )
    assert automation.trigger.expect == {REGRESSION_EVENT, SERIES_STALL_EVENT}
    pattern = automation.trigger.match.root["prefect.resource.id"]
    assert fnmatch(MODEL_RESOURCE_PREFIX + "curvewatch-fashion-mnist-classifier", pattern)
    assert automation.actions[0].type == "send-notification"


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (set(), []),
        ({"prepare"}, ["prepare", "validate", "baseline"]),  # a new split: everything reading it
        ({"validate"}, ["validate"]),  # e.g. an expectation suite edited
        ({"baseline"}, ["baseline"]),
        ({"validate", "baseline"}, ["validate", "baseline"]),
    ],
)
def test_stages_to_run_follow_changes_downstream(changed, expected):
    assert stages_to_run(changed) == expected
