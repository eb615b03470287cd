"""The registry policy: which runs are registered, when the champion alias moves, and the texts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import registry, tracking
from pipelines.curves.gate import gate


def _preds(correct) -> pd.DataFrame:
    correct = np.asarray(correct, dtype=bool)
    return pd.DataFrame({"id": np.arange(correct.size), "correct": correct})


def _pair(n: int, challenger_only: int, champion_only: int, both: int):
    """Challenger/champion predictions on n images with the given discordant and concordant counts."""
    ch = np.zeros(n, bool)
    cp = np.zeros(n, bool)
    ch[:both] = cp[:both] = True
    ch[both : both + challenger_only] = True
    cp[both + challenger_only : both + challenger_only + champion_only] = True
    return _preds(ch), _preds(cp)


def _decide(ch, cp, rule, *, margin=0.005, alpha=0.05):
    g = gate(ch, cp, alpha=alpha, n_resamples=2000)
    p_better = gate(cp, ch, alpha=alpha, n_resamples=2000).p_value if cp is not None else None
    return g, registry.promotion_decision(g, rule=rule, alpha=alpha, margin=margin, p_better=p_better)


@pytest.mark.parametrize(
    ("completed", "verdict", "register"),
    [
        (True, "healthy", True),
        (True, "plateau", True),
        (True, "overfitting", True),
        (True, "divergence", False),
        (True, "not_learning", False),
        (False, "healthy", False),
    ],
)
def test_registration_only_for_completed_sound_runs(completed, verdict, register):
    d = registry.registration_decision(completed=completed, verdict=verdict)
    assert d.register is register
    assert d.reason.startswith("registered" if register else "not registered")
    if not register and completed:
        assert verdict in d.reason


def test_a_tie_does_not_move_the_champion_under_significantly_better():
    # 0.4253 against 0.4253: the same images right, p(better) = 1.
    ch, cp = _pair(10_000, challenger_only=0, champion_only=0, both=4253)
    g, d = _decide(ch, cp, "significantly_better")
    assert g.challenger_accuracy == g.champion_accuracy == 0.4253
    assert not d.promote and d.code == "keep_champion"
    assert "tie" in d.text and "significantly_better" in d.text and "p(better) = 1" in d.text


def test_a_tie_is_promoted_under_not_worse():
    ch, cp = _pair(10_000, challenger_only=0, champion_only=0, both=4253)
    _, d = _decide(ch, cp, "not_worse", margin=0.005)
    assert d.promote and d.code == "promote" and "not_worse" in d.text


def test_significantly_better_promotes_a_clear_improvement_only():
    ch, cp = _pair(10_000, challenger_only=300, champion_only=100, both=8000)
    _, d = _decide(ch, cp, "significantly_better")
    assert d.promote and "significantly better" in d.text
    # One more right of 10,000: better, but not significantly.
    ch, cp = _pair(10_000, challenger_only=101, champion_only=100, both=8000)
    _, d = _decide(ch, cp, "significantly_better")
    assert not d.promote and d.code == "keep_champion"


def test_not_worse_respects_the_margin():
    # Challenger 1.5 points worse: significant regression, never promoted.
    ch, cp = _pair(10_000, challenger_only=100, champion_only=250, both=8000)
    g, d = _decide(ch, cp, "not_worse", margin=0.05)
    assert g.decision == "regression" and not d.promote and d.code == "regression"
    # 0.2 points worse, not significant: inside a 1-point margin, outside a 0.1-point one.
    ch, cp = _pair(10_000, challenger_only=200, champion_only=220, both=8000)
    g, wide = _decide(ch, cp, "not_worse", margin=0.01)
    assert g.decision != "regression" and wide.promote
    _, narrow = _decide(ch, cp, "not_worse", margin=0.001)
    assert not narrow.promote and "may be worse" in narrow.text


def test_first_champion_and_unregistered_runs():
    ch, _ = _pair(100, 0, 0, 80)
    g = gate(ch, None)
    assert registry.promotion_decision(g, rule="significantly_better", alpha=0.05).promote
    d = registry.promotion_decision(g, rule="not_worse", alpha=0.05, registered=False)
    assert not d.promote and d.code == "not_registered"


def test_bad_rule_margin_or_missing_p_are_errors():
    ch, cp = _pair(100, 5, 5, 80)
    g = gate(ch, cp)
    with pytest.raises(ValueError, match="compare.promotion"):
        registry.promotion_decision(g, rule="always", alpha=0.05)
    with pytest.raises(ValueError, match="compare.margin"):
        registry.promotion_decision(g, rule="not_worse", alpha=0.05, margin=-0.1)
    with pytest.raises(ValueError, match="p_better"):
        registry.promotion_decision(g, rule="significantly_better", alpha=0.05)


def test_texts_carry_verdict_gate_p_value_and_data_version():
    ch, cp = _pair(1000, 10, 30, 800)
    g, d = _decide(ch, cp, "significantly_better")
    tags = registry.version_tags(
        verdict="plateau", gate_result=g, decision=d, data_version="ab12cd34.dir", run_name="x"
    )
    assert tags["curvewatch.verdict"] == "plateau" and tags["curvewatch.gate"] == d.code
    assert tags["curvewatch.promotion_rule"] == "significantly_better"
    assert float(tags["curvewatch.gate.p_value"]) == pytest.approx(g.p_value, rel=1e-3)
    assert tags["curvewatch.data_version"] == "ab12cd34.dir"
    text = registry.version_description(
        verdict="plateau", diagnosis="stalled at 0.81", gate_result=g, decision=d, data_version="ab12cd34.dir"
    )
    assert "plateau" in text and f"p = {g.p_value:.3g}" in text and "ab12cd34.dir" in text
    assert "significantly_better" in text
    reg = registry.registration_decision(completed=True, verdict="plateau")
    note = registry.run_description(
        verdict="plateau",
        plateau_onset_epoch=4,
        diagnosis="val_accuracy stalled at 0.81 from epoch 4.",
        gate_result=g,
        registration=reg,
        decision=d,
        model_version="3",
        report_link="#/experiments/1/runs/r/artifactPath/curvewatch/report.html?workflowType=machine_learning",
        best_val_accuracy=0.8123,
        best_epoch=4,
    )
    headline, diagnosis = note.split("\n\n")[:2]
    assert (
        headline == f"test_accuracy **{g.challenger_accuracy:.4f}**, best val_accuracy **0.8123** (epoch 4)"
    )
    assert diagnosis.startswith("**curvewatch: plateau from epoch 4.**")
    assert "version 3" in note and "(#/experiments/1/runs/r/artifactPath/curvewatch/report.html?" in note


def test_register_version_creates_model_and_describes_version(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")
    rid = mc.create_run(exp).info.run_id
    mc.log_text(rid, "artifact_path: model\n", "model/MLmodel")
    for expected in ("1", "2"):
        v = registry.register_version(
            mc,
            "m",
            model_uri=f"runs:/{rid}/model",
            run_id=rid,
            description="**plateau**: ...",
            tags={"curvewatch.verdict": "plateau"},
        )
        assert v == expected
    mv = mc.get_model_version("m", "2")
    assert mv.description == "**plateau**: ..." and mv.tags["curvewatch.verdict"] == "plateau"


def test_apply_policy_registers_describes_and_keeps_champion_on_a_tie(mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "t")

    def run(name):
        rid = mc.create_run(exp, run_name=name).info.run_id
        mc.log_text(rid, "artifact_path: model\n", "model/MLmodel")
        return {
            "run_id": rid,
            "experiment_id": exp,
            "model_uri": f"runs:/{rid}/model",
            "data_version": "ab12.dir",
        }

    def apply(info, g, *, verdict="healthy", p_better=None):
        return registry.apply_policy(
            mc,
            "m",
            run_info=info,
            verdict=verdict,
            plateau_onset_epoch=4,
            diagnosis="converged at 0.43",
            completed=True,
            gate_result=g,
            p_better=p_better,
            rule="significantly_better",
            alpha=0.05,
            margin=0.005,
        )

    ch, cp = _pair(10_000, 0, 0, 4253)
    first = apply(run("a"), gate(cp, None))
    assert first.version == "1" and first.promoted
    assert tracking.get_champion(mc, "m").version == "1"

    tie_info = run("b")
    tie = apply(tie_info, gate(ch, cp), p_better=gate(cp, ch).p_value)
    assert tie.version == "2" and not tie.promoted
    assert tracking.get_champion(mc, "m").version == "1"
    mv = mc.get_model_version("m", "2")
    assert mv.tags["curvewatch.verdict"] == "healthy" and mv.tags["curvewatch.data_version"] == "ab12.dir"
    assert "tie" in mv.description and "significantly_better" in mv.description
    assert "champion kept" in tie.run_tags["curvewatch.decision"]
    assert (
        tie.run_tags["curvewatch.gate"] == "keep_champion"
        and first.run_tags["curvewatch.gate"] == "first_champion"
    )
    assert "[Full curvewatch report](#/experiments/" in tie.run_tags["mlflow.note.content"]
    # Re-running the compare stage reuses the version instead of registering the model again.
    assert apply(tie_info, gate(ch, cp), p_better=1.0).version == "2"

    dead = apply(run("c"), gate(ch, cp), verdict="not_learning", p_better=1.0)
    assert dead.version is None and not dead.promoted
    assert dead.run_tags["curvewatch.registered"].startswith(
        "not registered: the curves were diagnosed not_learning"
    )
    assert "not registered" in dead.run_tags["mlflow.note.content"]
    assert len(mc.search_model_versions("name = 'm'")) == 2
