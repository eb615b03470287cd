"""The real-curve corpus (tests/fixtures/corpus) has the properties it declares; no training."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from benchmarks.corpus import CORPUS_DIR, load_corpus
from benchmarks.corpus.data import SPLITS, VIEWS
from benchmarks.corpus.rubric import CODES, Context, check

COLUMNS = ["epoch", "accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
FINDINGS = [c for c in CODES if c != "incomplete"]


@pytest.fixture(scope="module")
def runs():
    return load_corpus()


def test_size_and_datasets(runs):
    assert len(runs) >= 300
    datasets = {r.label["dataset"] for r in runs}
    assert len(datasets) >= 6
    assert {r.label["dataset"] for r in runs if r.split == "test"} >= {"fashion_mnist"}
    assert len({r.label["dataset"] for r in runs if r.split == "test"}) >= 3


def test_split_is_by_dataset(runs):
    for r in runs:
        assert r.split == SPLITS[r.label["dataset"]], r.name
        assert VIEWS[r.label["view"]].family == r.label["dataset"], r.name
    tune = {r.label["dataset"] for r in runs if r.split == "tune"}
    test = {r.label["dataset"] for r in runs if r.split == "test"}
    assert not tune & test


def test_every_finding_has_ten_test_and_some_tune_examples(runs):
    counts = Counter((r.split, code) for r in runs for code in r.expected)
    for code in FINDINGS:
        assert counts[("test", code)] >= 10, (code, counts[("test", code)])
        assert counts[("tune", code)] >= 3, (code, counts[("tune", code)])
    # Stalls and still-improving runs for the early-stopping replay, both splits.
    for split in ("tune", "test"):
        assert sum(r.label["stall"] for r in runs if r.split == split) >= 30
        assert sum(r.label["still_improving"] for r in runs if r.split == split) >= 15


def test_ranges_covered(runs):
    n_val = [r.label["n_val"] for r in runs]
    assert min(n_val) <= 30 and max(n_val) >= 10_000
    budgets = [r.label["epoch_budget"] for r in runs]
    assert min(budgets) <= 5 and max(budgets) >= 300
    shares = [r.label["majority_share"] for r in runs]
    assert min(shares) <= 0.55 and max(shares) >= 0.94
    assert {r.label["num_classes"] for r in runs} >= {2, 3, 10}
    assert {r.label["optimizer"] for r in runs} >= {"sgd", "sgd-momentum", "adam"}
    assert {r.label["schedule"] for r in runs} >= {None, "plateau", "step", "cosine"}
    assert sum(r.label["early_stopped"] for r in runs) >= 5
    assert sum(not r.label["complete"] for r in runs) >= 5
    assert sum(r.label["epoch_budget"] <= 6 for r in runs) >= 20


@pytest.mark.parametrize("split", ["tune", "test"])
def test_every_csv_parses_and_matches_its_label(split):
    for r in load_corpus(split):
        df = pd.read_csv(r.path)
        label = r.label
        assert list(df.columns) == COLUMNS, r.name
        assert df["epoch"].tolist() == list(range(len(df))), f"{r.name}: epoch column not 0-based"
        assert len(df) == label["epochs_logged"], r.name
        if label["complete"] and not label["early_stopped"]:
            assert len(df) == label["epoch_budget"], r.name
        else:
            assert len(df) < label["epoch_budget"], r.name
        assert ("incomplete" in r.expected) == (not label["complete"]), r.name
        assert r.expected and set(r.expected) <= set(CODES), r.name
        assert not set(r.expected) & set(r.acceptable), r.name
        assert not ("healthy" in r.expected and len(r.expected) > 1 + ("incomplete" in r.expected)), r.name
        assert math.isclose(sum(label["class_prior"]), 1.0, abs_tol=1e-3), r.name
        assert len(label["class_prior"]) == label["num_classes"], r.name
        assert label["split"] == split


def test_labels_and_dropped_cover_every_csv():
    labels = json.loads((CORPUS_DIR / "labels.json").read_text())
    dropped = json.loads((CORPUS_DIR / "dropped.json").read_text())
    csvs = {p.name for p in CORPUS_DIR.glob("*.csv")}
    assert set(labels) | set(dropped) == csvs
    assert not set(labels) & set(dropped)
    # A clone stays light: 602 labelled runs (generation 7) take 5.2 MB, labels.json 1.4 MB of it.
    assert sum(p.stat().st_size for p in CORPUS_DIR.iterdir()) < 6_000_000


def test_load_corpus_filters_and_rejects_bad_split(tmp_path):
    labels = json.loads((CORPUS_DIR / "labels.json").read_text())
    test_runs = load_corpus("test")
    assert {r.split for r in test_runs} == {"test"}
    assert len(test_runs) == sum(label["split"] == "test" for label in labels.values()) > 0
    with pytest.raises(ValueError, match="split"):
        load_corpus("train")
    with pytest.raises(FileNotFoundError, match="labels.json"):
        load_corpus(root=tmp_path)


def _ctx(**kw):
    base = dict(
        n_val=1000, train_prior=[0.5, 0.5], val_prior=[0.5, 0.5], ceiling=0.95, ref_loss=0.15, complete=True
    )
    base.update(kw)
    return Context(**base)


def _curve(va, vl, ta=None, tl=None):
    va, vl = np.asarray(va, float), np.asarray(vl, float)
    return {
        "val_accuracy": va,
        "val_loss": vl,
        "accuracy": va if ta is None else np.asarray(ta, float),
        "loss": vl if tl is None else np.asarray(tl, float),
    }


def test_rubric_not_learning_on_imbalanced_prior():
    # Stuck at the majority share 0.9 with the loss at the prior's entropy (0.325 nats).
    ctx = _ctx(train_prior=[0.9, 0.1], val_prior=[0.9, 0.1], ceiling=0.97)
    v = check(_curve([0.9] * 20, [0.326] * 20), ctx)
    assert v.findings == {"not_learning"}
    # The same accuracy with a falling loss is not "not learning".
    v = check(_curve([0.9] * 20, np.linspace(0.32, 0.2, 20)), ctx)
    assert "not_learning" not in v.findings


def test_rubric_divergence_overfitting_and_healthy():
    ctx = _ctx()
    dead = check(_curve([0.5] * 10, [0.6931] * 10, tl=[5e5] + [0.6931] * 9), ctx)
    assert "divergence" in dead.findings
    epochs = np.arange(40)
    vl = 0.2 + 0.002 * (epochs - 10) ** 2 / 10
    over = check(_curve(np.full(40, 0.9), vl, ta=np.linspace(0.9, 1, 40), tl=np.linspace(0.3, 0.01, 40)), ctx)
    assert "overfitting" in over.findings
    good = check(_curve(np.minimum(0.94, 0.6 + epochs / 40), 0.15 + 0.5 * np.exp(-epochs / 5)), ctx)
    assert good.findings == {"healthy"}
