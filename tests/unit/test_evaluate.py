"""Tests for pipelines.evaluate against sklearn computed directly, with a stub model of known outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

from pipelines.evaluate import EVALUATION_FILES, EvaluationResult, evaluate, predict_batches, save_evaluation

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress"]


def indexed_images(n: int, shape: tuple[int, ...] = (8, 8, 1), seed: int = 0) -> np.ndarray:
    """(n, *shape) random uint8 images whose first two pixels spell the row index (for StubModel)."""
    x = np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256
    return x


class StubModel:
    """Returns fixed probabilities per input row (read off the row's first two pixels, as
    :func:`indexed_images` writes them), so every metric has a known answer; records the size of
    every ``predict_on_batch`` call."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs
        self.batch_sizes: list[int] = []

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(x))
        return self.probs[x[:, 0, 0, 0].astype(np.int64) * 256 + x[:, 0, 1, 0]]


@pytest.fixture()
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n, k = 200, len(CLASSES)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 2.0 * np.eye(k)[y]  # mostly right, some wrong
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    x = indexed_images(n)
    ids = np.array([f"test-{i:05d}" for i in rng.permutation(n)])  # not sorted: order must be kept
    return x, y, probs, ids


@pytest.fixture()
def result(case: tuple) -> EvaluationResult:
    x, y, probs, ids = case
    return evaluate(StubModel(probs), x, y, ids, CLASSES, batch_size=64)


def test_scalars_match_sklearn(case: tuple, result: EvaluationResult) -> None:
    _, y, probs, _ = case
    pred = probs.argmax(1)
    assert result.accuracy == pytest.approx(accuracy_score(y, pred))
    assert result.loss == pytest.approx(log_loss(y, probs, labels=range(4)), rel=1e-5)
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert result.summary["macro_f1"] == pytest.approx(f)
    assert result.summary["macro_precision"] == pytest.approx(p)
    assert result.summary["accuracy"] == result.accuracy == result.test_accuracy
    assert result.test_loss == result.loss
    assert result.summary["num_examples"] == 200 and result.summary["num_classes"] == 4


def test_per_class_and_confusion_match_sklearn(case: tuple, result: EvaluationResult) -> None:
    _, y, probs, _ = case
    pred = probs.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    assert list(result.per_class["class_name"]) == CLASSES
    np.testing.assert_allclose(result.per_class["precision"], p)
    np.testing.assert_allclose(result.per_class["recall"], r)
    np.testing.assert_allclose(result.per_class["f1"], f)
    np.testing.assert_array_equal(result.per_class["support"], s)
    np.testing.assert_array_equal(result.confusion, confusion_matrix(y, pred, labels=range(4)))
    assert result.confusion.sum() == 200


def test_predictions_are_aligned_with_ids(case: tuple, result: EvaluationResult) -> None:
    _, y, probs, ids = case
    df = result.predictions
    assert list(df.columns[:5]) == ["id", "label", "predicted", "correct", "confidence"]
    np.testing.assert_array_equal(df["id"], ids)
    np.testing.assert_array_equal(df["label"], y)
    np.testing.assert_array_equal(df["predicted"], probs.argmax(1))
    assert df["correct"].dtype == bool
    np.testing.assert_array_equal(df["correct"], df["label"] == df["predicted"])
    np.testing.assert_allclose(df["confidence"], probs.max(1))
    np.testing.assert_allclose(df[f"prob_{CLASSES[2]}"], probs[:, 2])
    assert df["correct"].mean() == pytest.approx(result.accuracy)


def test_uses_batch_size(case: tuple) -> None:
    x, y, probs, ids = case
    model = StubModel(probs)
    evaluate(model, x, y, ids, CLASSES, batch_size=17)
    # 200 = 11 x 17 + 13: the short last chunk is padded, so every call has one input shape.
    assert model.batch_sizes == [17] * 12


@pytest.mark.parametrize(("n", "batch_size", "calls"), [(200, 17, 12), (34, 17, 2), (5, 17, 1), (1, 1, 1)])
def test_predict_batches_keeps_rows_in_order_and_one_shape(n: int, batch_size: int, calls: int) -> None:
    probs = np.random.default_rng(1).random((n, 3)).astype(np.float32)
    model = StubModel(probs)
    out = predict_batches(model, indexed_images(n), batch_size=batch_size)
    np.testing.assert_array_equal(out, probs)
    assert len(model.batch_sizes) == calls and set(model.batch_sizes) == {min(n, batch_size)}


@pytest.mark.parametrize(
    ("n", "batch_size", "match"), [(0, 8, "x is empty"), (4, 0, "batch_size must be >= 1")]
)
def test_predict_batches_rejects_bad_input(n: int, batch_size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predict_batches(StubModel(np.zeros((4, 3))), indexed_images(n), batch_size=batch_size)


def test_class_missing_from_predictions_scores_zero_not_error() -> None:
    y = np.array([0, 1, 2, 3])
    probs = np.eye(4, dtype=np.float32)[[0, 1, 1, 1]]
    res = evaluate(StubModel(probs), indexed_images(4, (2, 2, 1)), y, np.arange(4), CLASSES, batch_size=8)
    assert res.per_class.loc[2, "precision"] == 0.0 and res.per_class.loc[3, "recall"] == 0.0
    assert np.isfinite(res.loss)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda x, y, p, ids: (x[:-1], y, p, ids),
        lambda x, y, p, ids: (x, y, p, np.r_[ids[:-1], ids[:1]]),
        lambda x, y, p, ids: (x, np.where(y == 0, 7, y), p, ids),
        lambda x, y, p, ids: (x, y, p[:, :3], ids),
    ],
    ids=["length", "duplicate-ids", "bad-label", "output-width"],
)
def test_rejects_inconsistent_inputs(case: tuple, mutate) -> None:
    x, y, probs, ids = mutate(*case)
    with pytest.raises(ValueError):
        evaluate(StubModel(probs), x, y, ids, CLASSES, batch_size=64)


def test_save_evaluation_writes_all_files(tmp_path: Path, result: EvaluationResult) -> None:
    out = tmp_path / "reports" / "evaluation"
    paths = save_evaluation(result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(EVALUATION_FILES)  # no temp files left
    assert set(paths) == {"metrics", "per_class", "confusion_matrix", "predictions"}
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["accuracy"] == pytest.approx(result.accuracy)
    assert metrics["loss"] == pytest.approx(result.loss)
    per_class = pd.read_csv(paths["per_class"])
    assert list(per_class["class_name"]) == CLASSES
    preds = pd.read_parquet(paths["predictions"])
    pd.testing.assert_frame_equal(preds, result.predictions)
    assert paths["confusion_matrix"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_keras_model_loss_matches_keras_evaluate() -> None:
    keras = pytest.importorskip("keras")
    from pipelines.config import TrainConfig
    from pipelines.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model(TrainConfig(model="mlp", dropout=0.0), (8, 8, 1), 4)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 4, 64)
    res = evaluate(model, x, y, np.arange(64), CLASSES, batch_size=16)
    keras_logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert res.loss == pytest.approx(keras_logs["loss"], rel=1e-4)
    assert res.accuracy == pytest.approx(keras_logs["accuracy"])


def test_per_class_table_is_one_row_per_class_plus_macro(result: EvaluationResult) -> None:
    from pipelines.evaluate import per_class_table

    table = per_class_table(result)
    assert list(table.columns) == ["class_name", "precision", "recall", "f1", "support"]
    assert list(table["class_name"]) == [*CLASSES, "macro avg"]
    np.testing.assert_allclose(table["recall"][:-1], result.per_class["recall"].round(4))
    assert table["precision"].iloc[-1] == pytest.approx(result.per_class["precision"].mean(), abs=1e-4)
    assert table["support"].iloc[-1] == result.per_class["support"].sum()
    assert table["support"].dtype == np.int64


@pytest.mark.parametrize(
    "names",
    [
        ["a", "b"],
        CLASSES,
        ["golden_retriever_from_the_north", "cat", "WWWWWWWWWWWWWW"],
        [f"class_{i}" for i in range(25)],
    ],
)
def test_confusion_matrix_plot_keeps_every_label_and_the_title_inside_the_figure(names: list[str]) -> None:
    from pipelines.evaluate import plot_confusion_matrix

    k = len(names)

    class Result:  # the three fields plot_confusion_matrix reads
        class_names = names
        confusion = np.arange(k * k, dtype=np.int64).reshape(k, k)
        accuracy = 0.9

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = plot_confusion_matrix(Result())  # type: ignore[arg-type]
    canvas = FigureCanvasAgg(fig)  # the canvas savefig(format="png") draws on
    canvas.draw()
    renderer = canvas.get_renderer()
    figure_box = fig.bbox
    ax = fig.axes[0]
    texts = [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.xaxis.label, ax.yaxis.label]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1, text.get_text()
        assert box.y0 >= figure_box.y0 - 1 and box.y1 <= figure_box.y1 + 1, text.get_text()


def test_the_per_class_table_is_replaced_not_appended_when_evaluate_runs_again(mlflow_uri, tmp_path) -> None:
    # MlflowClient.log_table appends rows to a table already in the run: a retried evaluate task
    # (or `dvc repro` re-running evaluate on the same run) had doubled it.
    import pandas as pd

    from pipelines import tracking
    from pipelines.evaluate import PER_CLASS_TABLE
    from pipelines.steps import _log_table_once

    mc = tracking.client()
    run_id = mc.create_run(tracking.ensure_experiment(mc, "t")).info.run_id
    first = pd.DataFrame({"class": ["a", "b", "c"], "recall": [0.1, 0.2, 0.3]})
    second = first.assign(recall=[0.4, 0.5, 0.6])
    _log_table_once(mc, run_id, first, PER_CLASS_TABLE)
    _log_table_once(mc, run_id, second, PER_CLASS_TABLE)
    local = mc.download_artifacts(run_id, PER_CLASS_TABLE, str(tmp_path))
    table = pd.read_json(local, orient="split")
    assert table["recall"].tolist() == pytest.approx([0.4, 0.5, 0.6])  # the second, alone
    assert PER_CLASS_TABLE in mc.get_run(run_id).data.tags["mlflow.loggedArtifacts"]  # still a table
