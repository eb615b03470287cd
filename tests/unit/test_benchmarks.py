"""Scoring of the curve benchmarks (benchmarks/diagnosis_quality.py, benchmarks/early_stop.py).

Tiny labelled corpora written to tmp_path; every expected figure below is computed by hand.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import diagnosis_quality as dq
from benchmarks import early_stop as es
from benchmarks.replay import load_runs
from pipelines.curves.callback import should_stop
from pipelines.curves.diagnose import Diagnosis
from pipelines.curves.types import Finding, Severity


def write_corpus(folder: Path, runs: dict[str, tuple[dict[str, list[float]], dict]]) -> Path:
    """CSVLogger files (0-based epoch column) plus labels.json."""
    labels = {}
    for name, (columns, meta) in runs.items():
        size = len(next(iter(columns.values())))
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", *columns])
            for epoch in range(size):
                writer.writerow([epoch, *(columns[c][epoch] for c in columns)])
        labels[name] = meta
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder


def test_load_runs_filters_splits_and_names_bad_labels(tmp_path: Path) -> None:
    curve = {"val_accuracy": [0.1, 0.2], "val_loss": [2.0, 1.9]}
    write_corpus(
        tmp_path,
        {
            "a.csv": (curve, {"expected": ["healthy"], "acceptable": [], "split": "tune", "dataset": "d1"}),
            "b.csv": (curve, {"expected": ["plateau"], "acceptable": ["overfitting"], "split": "test"}),
        },
    )
    assert [r.name for r in load_runs(tmp_path, ["test"])] == ["b.csv"]
    (b,) = load_runs(tmp_path, ["test"])
    assert b.acceptable == {"overfitting"} and b.complete and not b.early_stopped
    assert [r.dataset for r in load_runs(tmp_path, ["tune"])] == ["d1"]
    labels = json.loads((tmp_path / "labels.json").read_text())
    labels["a.csv"]["split"] = "train"
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(ValueError, match=r"labels.json: run 'a.csv': 'split'"):
        load_runs(tmp_path)


def test_load_runs_reads_the_older_fixtures_as_tune(tmp_path: Path) -> None:
    write_corpus(
        tmp_path, {"a.csv": ({"val_loss": [2.0, 1.9]}, {"expected": ["plateau"], "config": {"dataset": "x"}})}
    )
    (run,) = load_runs(tmp_path)
    assert (run.split, run.dataset, run.expected, run.acceptable) == ("tune", "x", {"plateau"}, frozenset())
    assert load_runs(tmp_path, ["test"]) == []


def result(expected: set[str], reported: set[str] | None, acceptable: set[str] = frozenset()) -> dq.RunResult:
    return dq.RunResult(
        "run", frozenset(expected), frozenset(acceptable), None if reported is None else frozenset(reported)
    )


def test_quality_scores_match_hand_counts() -> None:
    results = [
        result({"plateau"}, {"plateau", "overfitting"}),  # plateau found; overfitting a wrong report
        result({"overfitting", "plateau"}, {"overfitting"}),  # plateau missed
        result({"healthy"}, {"too_slow"}, acceptable={"too_slow"}),  # accepted: not a false alarm
        result({"healthy"}, {"oscillation"}),  # a false alarm
        result({"healthy"}, None),  # refused: missed, not a false alarm
        result({"healthy"}, {"healthy"}),
    ]
    q = dq.score(results)
    plateau, overfitting, healthy = q.codes["plateau"], q.codes["overfitting"], q.codes["healthy"]
    assert (plateau.support, plateau.found, plateau.reported, plateau.correct) == (2, 1, 1, 1)
    assert plateau.recall == 0.5 and plateau.precision == 1.0
    assert (overfitting.support, overfitting.found, overfitting.reported, overfitting.correct) == (1, 1, 2, 1)
    assert overfitting.precision == 0.5
    # Healthy found on the accepted and the clean run; reported (called healthy) once, correctly.
    assert (healthy.support, healthy.found, healthy.reported, healthy.correct) == (4, 2, 1, 1)
    assert q.codes["oscillation"].precision == 0.0 and q.codes["too_slow"].precision == 1.0
    assert (q.healthy_runs, q.false_alarms, q.any_problem_on_healthy, q.refused) == (4, 1, 2, 1)
    assert q.fully_right == 2  # the accepted healthy run and the clean one
    assert q.micro() == (2 / 3, 3 / 5)  # must-find recall over plateau+overfitting; precision over problems
    assert q.confusion["plateau"] == {"plateau": 1, "overfitting": 2}
    assert q.confusion["healthy"]["(refused)"] == 1
    assert plateau.target() == "n<10"


def test_code_target_needs_ten_examples() -> None:
    assert dq.CodeScore(support=10, found=9, reported=9, correct=9).target() == "met"
    assert dq.CodeScore(support=10, found=9, reported=10, correct=9).target() == "NOT met"  # precision 0.9
    assert dq.CodeScore(support=10, found=8, reported=8, correct=8).target() == "NOT met"  # recall 0.8


def test_curvewatch_codes_skip_info_notes_unless_labelled() -> None:
    def finding(code: str, severity: Severity) -> Finding:
        return Finding(code, severity, None, {}, "")

    findings = [
        finding("plateau", Severity.WARNING),
        finding("noisy_validation", Severity.INFO),
        finding("too_slow", Severity.INFO),
        finding("healthy", Severity.INFO),
    ]
    diagnosis = Diagnosis(run="r", verdict="plateau", findings=findings)
    assert dq.curvewatch_codes(diagnosis, frozenset({"too_slow"})) == {"plateau", "too_slow"}
    assert dq.curvewatch_codes(diagnosis, frozenset()) == {"plateau"}
    notes_only = Diagnosis(run="r", verdict="healthy", findings=findings[1:2])
    assert dq.curvewatch_codes(notes_only, frozenset()) == {"healthy"}


def test_sk_autod_mapping_on_an_overfitting_curve() -> None:
    sk_autod = pytest.importorskip("sk_autod")
    report = sk_autod.diagnose([2.3, 1.9, 1.4, 0.9, 0.5, 0.3, 0.15], [2.4, 2.0, 1.8, 1.9, 2.3, 2.8, 3.4])
    assert {f.detector_name for f in report.findings} <= set(dq.SK_AUTOD_CODES)
    assert "overfitting" in dq.sk_autod_codes(report)


def test_regret_flat_tail_and_groups() -> None:
    va = np.array([0.5, 0.7, 0.6, 0.9])
    assert es.regret(va, 2) == pytest.approx(0.2) and es.regret(va, 4) == 0.0
    assert es.regret(np.array([math.nan, 0.4, 0.3]), 1) == pytest.approx(0.4)
    assert es.flat_tail(np.array([0.1, 0.5, 0.8, 0.797, 0.8, 0.79])) == 3


STALL = [0.5, 0.6, 0.7, 0.8] + [0.79] * 16  # peak at epoch 4, then 16 flat epochs
RISING = [round(0.1 + 0.04 * i, 2) for i in range(20)]


def test_early_stop_replay_matches_hand_computed_stops(tmp_path: Path) -> None:
    curves = {
        "stall.csv": {
            "val_accuracy": STALL,
            "val_loss": [1.0, 0.8, 0.6, 0.5] + [0.5] * 16,
            "loss": [1.0] * 20,
        },
        "rising.csv": {
            "val_accuracy": RISING,
            "val_loss": [2.0 - 0.05 * i for i in range(20)],
            "loss": [1.0] * 20,
        },
        # val_loss stalls from epoch 3 while val_accuracy keeps rising: val_loss patience stops too early.
        "late.csv": {"val_accuracy": RISING, "val_loss": [2.0, 1.5, 1.0] + [1.0] * 17, "loss": [1.0] * 20},
    }
    expected = {"stall.csv": ["plateau"], "rising.csv": ["healthy"], "late.csv": ["healthy"]}
    corpus = write_corpus(
        tmp_path,
        {
            name: (metrics, {"expected": expected[name], "epoch_budget": 20, "num_classes": 10})
            for name, metrics in curves.items()
        },
    )
    replayed = {r.run.name: r for r in es.replay(load_runs(corpus))}
    stall, rising, late = replayed["stall.csv"], replayed["rising.csv"], replayed["late.csv"]
    # EarlyStopping: best at epoch 4, `patience` non-improving epochs after it (ties are not improvements).
    assert stall.stops[es.REFERENCE] == 9
    assert stall.stops["ES(val_loss, p=10)"] == 14
    assert stall.stops["ES(val_accuracy, p=5)"] == 9
    # PatientPruner: the max before the last 6 steps (0.8) beats the max of the last 6 from step 9 (0-based).
    assert stall.stops[es.OPTUNA] == 10 and stall.fired[es.OPTUNA]
    assert late.stops[es.REFERENCE] == 8 and late.regret(es.REFERENCE) == pytest.approx(0.86 - 0.38)
    assert not rising.fired[es.REFERENCE] and rising.stops[es.REFERENCE] == 20
    assert not late.fired["ES(val_accuracy, p=5)"]
    # should_stop, asked epoch by epoch as a training loop would (the replay must stop where it does).
    for name, metrics in curves.items():
        stop, reason = 20, ""
        for epoch in range(1, 21):
            decision = should_stop({k: v[:epoch] for k, v in metrics.items()}, 20, num_classes=10)
            if decision.stop:
                stop, reason = epoch, str(decision.finding.code)
                break
        r = replayed[name]
        assert (r.stops[es.CURVEWATCH], r.reasons[es.CURVEWATCH], r.fired[es.CURVEWATCH]) == (
            stop,
            reason,
            bool(reason),
        )
    assert stall.fired[es.CURVEWATCH] and not rising.fired[es.CURVEWATCH]
    assert [es.group(r.run, r.val_accuracy) for r in (stall, rising, late)] == [
        "stall",
        "improving",
        "improving",
    ]

    reference = es.summarise(list(replayed.values()), es.REFERENCE)
    assert (reference.stall_runs, reference.saved_median, reference.earlier_median) == (1, 11, 0)
    assert (reference.improving_runs, reference.false_stops) == (2, 1)
    assert reference.saved_share == pytest.approx((11 + 0 + 12) / 60)
    pruner = es.summarise(list(replayed.values()), es.OPTUNA)
    assert (pruner.saved_median, pruner.earlier_median, pruner.false_stops) == (10, -1, 0)
    assert (pruner.earlier_runs, pruner.later_runs) == (0, 1)
    assert (pruner.earlier_by_target, pruner.never_fired, pruner.reference_never_fired) == (0, 0, 0)
    # Against a patience of 10 (epoch 14), patience 5 (epoch 9) is 5 epochs earlier on the one stall.
    patient = es.summarise(list(replayed.values()), es.REFERENCE, reference="ES(val_loss, p=10)")
    assert (patient.earlier_median, patient.earlier_by_target, patient.reference_never_fired) == (5, 1, 0)
    assert pruner.stall_regret == 0.0
    lines = es.targets(pruner, reference)
    assert (
        "-> NOT met (earlier on 0, later on 1 of 1 stall runs; 3 or more epochs earlier on 0" in lines[0]
        and "never fires on 0 of them" in lines[0]
        and lines[1].endswith("-> met")
        and lines[2].endswith("-> met")
    )
