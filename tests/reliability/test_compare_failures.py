"""Reliability rows: the compare stage never moves the champion on what it could not read or finish.

G1: a champion whose predictions artifact is gone is scored again, not taken for "no champion"
(which promoted any challenger). G2: a registry error is an error, not "no champion". G3: a
compare that fails part-way leaves the champion alias where it was and the run without its
``curvewatch.gate`` tag (so a scheduled retrain does not skip as if the run had gone through).
G4: compare run again on the champion itself (a retry after the alias moved, ``dvc repro`` after
compare changed) gates against the champion it replaced, not against "no champion".
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines import schedule, steps, tracking
from tests.reliability._support import prepared


def _retrain(params) -> str:
    outcome = steps.run_train(params)
    steps.run_evaluate(params)
    return outcome.run_id


@pytest.fixture
def with_champion(folder_project):
    """A project whose first run went through compare and became champion (version 1)."""
    params = prepared(folder_project())
    first = _retrain(params)
    assert steps.run_compare(params).promoted
    return params, first


def test_a_champion_without_its_predictions_is_scored_again_not_skipped(with_champion):
    params, first = with_champion
    mc = tracking.client()
    artifacts = Path(unquote(urlparse(mc.get_run(first).info.artifact_uri).path))
    (artifacts / "evaluation" / "predictions.parquet").unlink()  # e.g. migrated without artifacts
    assert tracking.download_predictions(mc, first, artifacts.parent) is None

    second = _retrain(params)
    outcome = steps.run_compare(params)
    assert outcome.champion_run_id == first
    assert outcome.gate_decision != "first_champion"  # gated against the champion, scored again
    tags = mc.get_run(second).data.tags
    # The paired test ran against the champion's predictions on this split: it has a p-value.
    assert tags[tracking.CHAMPION_RUN_TAG] == first and 0 <= float(tags["curvewatch.gate.p_value"]) <= 1


def test_compare_refuses_the_predictions_of_another_run(with_champion):
    # curvewatch train, then curvewatch compare without evaluate: the folder still scores the
    # champion's run. Gating the new run on them would compare the champion with itself.
    params, first = with_champion
    second = steps.run_train(params).run_id
    with pytest.raises(
        steps.StageError, match=rf"evaluation is of run {first}, not of the trained run {second}"
    ):
        steps.run_compare(params)
    assert tracking.CHAMPION_RUN_TAG not in tracking.client().get_run(second).data.tags  # nothing written
    steps.run_evaluate(params)
    assert steps.run_compare(params).champion_run_id == first
    # An evaluation cut short (its marker is removed first, written last) is refused too.
    (params.paths.evaluation_dir / steps.EVALUATED_RUN).unlink()
    with pytest.raises(steps.StageError, match=r"run\.json: missing; run the evaluate stage first"):
        steps.run_compare(params)


def test_a_registry_error_is_not_read_as_no_champion(with_champion, monkeypatch):
    params, first = with_champion
    _retrain(params)

    def unavailable(self, name, alias):
        raise MlflowException("503 Service Unavailable", error_code="TEMPORARILY_UNAVAILABLE")

    with monkeypatch.context() as patch, pytest.raises(MlflowException, match="Service Unavailable"):
        patch.setattr(MlflowClient, "get_model_version_by_alias", unavailable)
        steps.run_compare(params)
    assert tracking.get_champion(tracking.client(), params.tracking.registered_model).run_id == first


def test_a_compare_that_fails_part_way_leaves_the_champion_and_no_gate_tag(folder_project, monkeypatch):
    params = prepared(folder_project())
    run_id = _retrain(params)

    def broken(self, run_id, local_path, artifact_path=None):
        raise OSError("artifact store full")

    with monkeypatch.context() as patch, pytest.raises(OSError, match="artifact store full"):
        patch.setattr(MlflowClient, "log_artifact", broken)
        steps.run_compare(params)  # a first run: it would have been promoted
    mc = tracking.client()
    assert tracking.get_champion(mc, params.tracking.registered_model) is None
    run = mc.get_run(run_id)
    assert tracking.GATE_TAG not in run.data.tags
    assert schedule.last_fingerprint([run]) is None  # not a successful run: the next one retrains
    # Run again (as the flow's retry does), it completes: promoted, gate tag written.
    outcome = steps.run_compare(params)
    assert outcome.promoted and outcome.gate_decision == "first_champion"
    assert tracking.get_champion(mc, params.tracking.registered_model).run_id == run_id
    assert mc.get_run(run_id).data.tags[tracking.GATE_TAG] == "first_champion"


def test_compare_again_on_the_champion_gates_against_the_champion_it_replaced(folder_project):
    params = prepared(folder_project({"compare": {"promotion": "not_worse", "margin": 0.5}}))
    first = _retrain(params)
    assert steps.run_compare(params).gate_decision == "first_champion"
    second = _retrain(params)
    outcome = steps.run_compare(params)
    assert outcome.promoted and outcome.champion_run_id == first

    again = steps.run_compare(params)  # a retried compare, or dvc repro after compare's code changed
    assert again.champion_run_id == first, "gated against no champion"
    assert (again.gate_decision, again.promoted) == (outcome.gate_decision, True)
    mc = tracking.client()
    assert mc.get_run(second).data.tags[tracking.CHAMPION_RUN_TAG] == first
    assert tracking.get_champion(mc, params.tracking.registered_model).run_id == second

    # Under a stricter rule the same run does not pass (the two seeded runs score alike): the
    # champion it replaced gets the alias back.
    strict = folder_project({"compare": {"promotion": "significantly_better"}})
    again = steps.run_compare(strict)
    assert not again.promoted and again.champion_run_id == first
    assert tracking.get_champion(mc, params.tracking.registered_model).run_id == first
    # The run's registered version says the new decision, not "promote" from the first compare.
    (version,) = mc.search_model_versions(
        f"name = '{params.tracking.registered_model}' and run_id = '{second}'"
    )
    assert version.tags["curvewatch.gate"] == again.gate_decision != "promote"
    assert version.tags["curvewatch.promotion_rule"] == "significantly_better"
    assert f"Gate: **{again.gate_decision}**" in version.description


def test_fail_on_regression_fails_on_a_regression_only_and_never_after_moving_the_alias(folder_project):
    # compare.fail_on_regression raised whenever the gate's own decision was not "promote": a
    # challenger slightly below the champion (keep_champion, no regression) failed the stage, and
    # under not_worse the stage had first moved the champion alias to it, then failed.
    import pandas as pd

    params = prepared(
        folder_project({"compare": {"promotion": "not_worse", "margin": 0.5, "fail_on_regression": True}})
    )
    first = _retrain(params)
    assert steps.run_compare(params).gate_decision == "first_champion"
    second = _retrain(params)
    # The challenger: the champion's own predictions with one right answer made wrong (less
    # accurate, far from significant: the gate keeps the champion; not_worse within 50 points promotes).
    mc = tracking.client()
    champion = tracking.download_predictions(mc, first, params.paths.evaluation_dir.parent / "champion")
    worse = champion.copy()
    worse.loc[worse.index[worse["correct"]][0], "correct"] = False
    worse.to_parquet(params.paths.evaluation_dir / "predictions.parquet")
    assert len(pd.read_parquet(params.paths.evaluation_dir / "predictions.parquet")) == len(champion)

    outcome = steps.run_compare(params)  # raised GateFailed("regression gate failed: promoted: ...")
    assert outcome.promoted and outcome.gate_decision == "promote"
    assert tracking.get_champion(mc, params.tracking.registered_model).run_id == second
    metrics = steps._read_json(params.paths.compare_metrics, "compare")["compare"]
    assert metrics["promoted"] is True and metrics["gate.passed"] == 1.0  # one flag, the decision's


def test_after_the_test_split_changed_the_gate_judges_by_the_champion_alone(folder_project, image_folder):
    # The champion config's seed runs scored the old test split; on the new one (images added) their
    # test accuracies are no yardstick: the seed rule had judged the re-scored champion against them.
    import json

    import numpy as np
    from PIL import Image

    params = prepared(folder_project())
    _retrain(params)
    assert steps.run_compare(params).promoted  # champion, seed 42
    seeded = prepared(folder_project({"base": {"seed": 7}}))
    _retrain(seeded)
    steps.run_compare(seeded)  # a second seed of the champion's config, on the same test split

    rng = np.random.default_rng(3)
    for folder in sorted(image_folder.iterdir()):  # new images: a new data version, a larger test split
        for i in range(12):
            pixels = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"new-{i:02d}.png")
    params = prepared(folder_project())
    _retrain(params)
    steps.run_compare(params)
    spread = json.loads((params.paths.compare_dir / "report.json").read_text())["gate"]["seed_spread"]
    assert spread["n_seeds"] == 1
