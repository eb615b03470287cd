"""Reading CSVLogger CSVs and History JSON into Curves, and the errors for bad files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.curves.io import continued_fits, curve_from_history, load_curve, metrics_read, resumed_rows

HISTORY = {
    "accuracy": [0.5, 0.7, 0.8],
    "loss": [1.2, 0.8, 0.6],
    "val_accuracy": [0.55, 0.72, 0.79],
    "val_loss": [1.1, 0.85, 0.7],
    "learning_rate": [1e-3, 1e-3, 5e-4],
}


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csvlogger_round_trip(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    path = tmp_path / "run1.csv"
    logger = keras.callbacks.CSVLogger(str(path))
    logger.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    logger.on_train_begin()
    for epoch in range(3):
        logger.on_epoch_end(epoch, {name: values[epoch] for name, values in HISTORY.items()})
    logger.on_train_end()
    curve = load_curve(path, epoch_budget=3, num_classes=10)
    assert curve.run == "run1"
    assert curve.epochs.tolist() == [1, 2, 3]  # CSVLogger is 0-based, Curve 1-based
    assert curve.epochs.dtype == np.int64
    for name, values in HISTORY.items():
        np.testing.assert_allclose(curve.metrics[name], values)
    assert curve.complete and curve.epoch_budget == 3 and curve.num_classes == 10


def test_csv_extra_columns_and_empty_cells(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "r.csv",
        ["epoch", "loss", "val_loss", "my_metric"],
        [[0, 1.0, 1.1, 3], [1, 0.9, "", 4], [2, 0.8, "nan", 5]],
    )
    curve = load_curve(path)
    assert curve.metrics["my_metric"].tolist() == [3, 4, 5]
    assert np.isnan(curve.metrics["val_loss"][1:]).all()


def test_csv_missing_epoch_marks_incomplete(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "r.csv", ["epoch", "val_accuracy"], [[0, 0.5], [1, 0.6], [3, 0.7]])
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2, 4]
    assert not curve.complete


@pytest.mark.parametrize(
    ("header", "rows", "needle"),
    [
        (["epoch", "accuracy", "loss"], [[0, 0.5, 1.0]], "val_accuracy"),
        (["epoch", "val_accuracy"], [[0, "abc"]], "'val_accuracy'"),
        (["", "loss", "val_loss"], [[0.5, 1.0, 1.0]], "'epoch'"),
        (["epoch", "val_loss"], [], "no epochs"),
    ],
)
def test_bad_csv_names_file_and_column(
    tmp_path: Path, header: list[str], rows: list[list[object]], needle: str
) -> None:
    path = _write_csv(tmp_path / "bad_run.csv", header, rows)
    with pytest.raises(ValueError) as error:
        load_curve(path)
    assert "bad_run.csv" in str(error.value)
    assert needle in str(error.value)


def test_history_json_both_forms(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(HISTORY))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"history": HISTORY, "params": {"epochs": 10, "steps": 5}}))
    a, b = load_curve(bare), load_curve(wrapped)
    assert a.epoch_budget is None and b.epoch_budget == 10
    np.testing.assert_allclose(a.metrics["val_loss"], HISTORY["val_loss"])
    np.testing.assert_allclose(b.metrics["val_loss"], HISTORY["val_loss"])
    assert a.epochs.tolist() == b.epochs.tolist() == [1, 2, 3]
    assert load_curve(wrapped, epoch_budget=7).epoch_budget == 7


@pytest.mark.parametrize(("epochs", "budget"), [(30.0, 30), (30, 30), (None, None)])
def test_history_json_reads_a_whole_float_epoch_budget(tmp_path: Path, epochs, budget) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"history": HISTORY, "params": {"epochs": epochs}}))
    assert load_curve(path).epoch_budget == budget


@pytest.mark.parametrize("epochs", [-5.0, 0, 2.5, "30", True])
def test_history_json_refuses_an_epoch_budget_that_is_not_a_whole_positive_number(
    tmp_path: Path, epochs
) -> None:
    path = tmp_path / "h.json"
    path.write_text(json.dumps({"history": HISTORY, "params": {"epochs": epochs}}))
    with pytest.raises(ValueError, match=r"h\.json: params\.epochs"):
        load_curve(path)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"loss": [1.0], "val_loss": ["x"]}), "'val_loss'"),
        (json.dumps({"loss": [1.0, 0.5]}), "val_accuracy"),
        (json.dumps({"loss": [1.0, 0.5], "val_loss": [1.0]}), "different lengths"),
        (json.dumps({"loss": [1.0, 0.5, 0.4, 0.3], "val_loss": [0.9, 0.8]}), "validation_freq=k"),
        (json.dumps([1, 2]), "one JSON object per epoch"),
        ('{"epoch": 0, "val_loss": 1.0}\n{"epoch": 1, "val_loss": oops}\n', "line 2: not valid JSON"),
        (json.dumps([{"val_loss": 1.0}, {"val_loss": "x"}]), "'val_loss', epoch 2"),
    ],
)
def test_bad_json_names_file(tmp_path: Path, payload: str, needle: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(payload)
    with pytest.raises(ValueError) as error:
        load_curve(path)
    assert "broken.json" in str(error.value) and needle in str(error.value)


@pytest.mark.parametrize("form", ["json lines", "array", "jsonl suffix"])
def test_one_object_per_epoch(tmp_path: Path, form: str) -> None:
    # keras.io's LambdaCallback example streams each epoch's logs as one JSON object a line; an
    # epoch without validation (validation_freq=2) has no val_loss key.
    records = [
        {"epoch": 0, "loss": 1.0, "accuracy": 0.5},
        {"epoch": 1, "loss": 0.8, "accuracy": 0.6, "val_loss": 0.9, "val_accuracy": 0.55},
        {"epoch": 2, "loss": 0.7, "accuracy": 0.65},
        {"epoch": 3, "loss": 0.6, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.6},
    ]
    path = tmp_path / ("run.jsonl" if form == "jsonl suffix" else "run.json")
    text = json.dumps(records) if form == "array" else "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text)
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2, 3, 4] and curve.complete
    assert curve.metrics["accuracy"].tolist() == [0.5, 0.6, 0.65, 0.7]
    np.testing.assert_array_equal(curve.metrics["val_loss"], [np.nan, 0.9, np.nan, 0.8])


def test_a_jsonl_file_of_one_epoch_is_one_epoch(tmp_path: Path) -> None:
    path = tmp_path / "first.jsonl"
    path.write_text(json.dumps({"epoch": 0, "loss": 1.0, "val_loss": 1.1}) + "\n")
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1] and curve.metrics["val_loss"].tolist() == [1.1]


def test_json_lines_appended_by_a_resumed_fit_read_as_a_csvlogger_file(tmp_path: Path) -> None:
    lines = [{"epoch": e, "loss": 1.0 - e / 10, "val_loss": 1.1 - e / 10} for e in (0, 1, 2, 1, 2, 3)]
    path = tmp_path / "resumed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2, 3, 4] and curve.complete


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"x\.dat: unknown curve format '\.dat'; expected a CSVLogger file \(\.csv"
    ):
        load_curve(tmp_path / "x.dat")
    with pytest.raises(FileNotFoundError):
        load_curve(tmp_path / "absent.csv")


def test_curve_from_history() -> None:
    curve = curve_from_history(HISTORY, "abc", epoch_budget=5, num_classes=10, complete=False)
    assert curve.run == "abc" and curve.epochs.tolist() == [1, 2, 3] and not curve.complete
    assert curve.metrics["val_accuracy"].dtype == np.float64
    with pytest.raises(ValueError, match="abc"):
        curve_from_history({"loss": [1.0]}, "abc")
    with pytest.raises(ValueError, match="different lengths"):
        curve_from_history({"val_loss": [1.0], "loss": [1.0, 2.0]}, "abc")


def test_older_and_explicit_keras_metric_names_are_read(tmp_path: Path) -> None:
    # Keras < 2.3 logged acc / val_acc / lr; metrics=["sparse_categorical_accuracy"] logs that name.
    old = _write_csv(
        tmp_path / "old.csv",
        ["epoch", "acc", "loss", "lr", "val_acc", "val_loss"],
        [[0, 0.5, 1.0, 0.01, 0.55, 1.1], [1, 0.6, 0.9, 0.01, 0.6, 1.0]],
    )
    curve = load_curve(old)
    assert sorted(curve.metrics) == ["accuracy", "learning_rate", "loss", "val_accuracy", "val_loss"]
    assert curve.metrics["val_accuracy"].tolist() == [0.55, 0.6]
    named = tmp_path / "kind.json"
    named.write_text(
        json.dumps(
            {"sparse_categorical_accuracy": [0.4, 0.5], "val_sparse_categorical_accuracy": [0.3, 0.45]}
        )
    )
    assert load_curve(named).metrics["val_accuracy"].tolist() == [0.3, 0.45]
    # Two accuracy kinds: neither is guessed; an existing name is never overwritten.
    both = {
        "binary_accuracy": [0.5],
        "val_binary_accuracy": [0.5],
        "categorical_accuracy": [0.4],
        "val_loss": [1.0],
    }
    assert "accuracy" not in curve_from_history(both, "r").metrics
    kept = curve_from_history({"accuracy": [0.9], "acc": [0.1], "val_loss": [1.0]}, "r").metrics
    assert kept["accuracy"].tolist() == [0.9] and kept["acc"].tolist() == [0.1]


def test_a_multi_output_log_is_read_through_its_only_output_with_an_accuracy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Keras model with outputs "cls" (softmax, metrics=["accuracy"]) and "upper" (a loss only)
    # logs per-output names beside the total loss: the engine reads the classifier's accuracy with
    # its own loss, not the total that adds the other output's.
    header = ["epoch", "cls_accuracy", "cls_loss", "loss", "upper_loss"]
    header += ["val_cls_accuracy", "val_cls_loss", "val_loss", "val_upper_loss"]
    rows = [
        [0, 0.67, 1.02, 1.26, 0.23, 0.77, 0.69, 0.81, 0.12],
        [1, 0.78, 0.63, 0.73, 0.10, 0.81, 0.58, 0.67, 0.09],
    ]
    curve = load_curve(_write_csv(tmp_path / "one.csv", header, rows))
    assert curve.metrics["val_accuracy"].tolist() == [0.77, 0.81]
    assert curve.metrics["val_loss"].tolist() == [0.69, 0.58]  # val_cls_loss
    assert curve.metrics["val_loss_total"].tolist() == [0.81, 0.67] and "cls_loss" not in curve.metrics
    # Two outputs with accuracies: neither is guessed; the total loss is read, and a warning says so.
    header2 = [*header, "upper_accuracy", "val_upper_accuracy"]
    rows2 = [[*r, 0.9, 0.95] for r in rows]
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        two = load_curve(_write_csv(tmp_path / "two.csv", header2, rows2))
    assert "accuracy" not in two.metrics and two.metrics["val_loss"].tolist() == [0.81, 0.67]
    assert "two.csv: accuracies of 2 outputs (cls_accuracy, upper_accuracy)" in caplog.text
    # A single-output log's accuracy kinds are no outputs.
    from pipelines.curves.io import output_heads

    assert output_heads(["binary_accuracy", "val_binary_accuracy", "sparse_categorical_accuracy"]) == {}
    assert output_heads(["cls_binary_accuracy", "val_cls_binary_accuracy"]) == {"cls": "cls_binary_accuracy"}
    # A top-k accuracy is not the predicted class's accuracy.
    topk = {"top_k_categorical_accuracy": [0.9], "val_top_k_categorical_accuracy": [0.9], "val_loss": [1.0]}
    assert "val_accuracy" not in curve_from_history(topk, "r").metrics


def test_a_history_table_saved_with_pandas_is_read(tmp_path: Path) -> None:
    # pandas.DataFrame(history.history).to_csv(path): an unnamed index column counts epochs from 0;
    # with index=False there is no epoch column and the rows are the epochs in order.
    import pandas as pd

    history = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.85], "val_accuracy": [0.5, 0.6, 0.62]}
    pd.DataFrame(history).to_csv(tmp_path / "indexed.csv")
    pd.DataFrame(history).to_csv(tmp_path / "plain.csv", index=False)
    for name in ("indexed.csv", "plain.csv"):
        curve = load_curve(tmp_path / name)
        assert curve.epochs.tolist() == [1, 2, 3] and curve.complete, name
        assert curve.metrics["val_accuracy"].tolist() == [0.5, 0.6, 0.62], name
        assert "" not in curve.metrics and "epoch" not in curve.metrics, name


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_a_csvlogger_file_with_another_separator_is_read(tmp_path: Path, separator: str) -> None:
    # keras.callbacks.CSVLogger(filename, separator=...): the separator is read off the header.
    path = tmp_path / "run.csv"
    rows = [
        ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"],
        [0, 0.5, 1.0, 0.5, 1.1],
        [1, 0.6, 0.9, 0.55, 1.0],
    ]
    path.write_text("".join(separator.join(str(v) for v in row) + "\r\n" for row in rows))
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2] and curve.complete
    assert curve.metrics["val_accuracy"].tolist() == [0.5, 0.55]
    assert curve.metrics["val_loss"].tolist() == [1.1, 1.0]


@pytest.mark.parametrize(
    ("name", "separator"), [("training.log", ","), ("run.tsv", "\t"), ("run.txt", ";"), ("RUN.LOG", "\t")]
)
def test_a_csvlogger_file_under_another_name_is_read(tmp_path: Path, name: str, separator: str) -> None:
    # keras.callbacks.CSVLogger takes any file name; Keras' own example is CSVLogger('training.log').
    path = tmp_path / name
    rows = [["epoch", "loss", "val_loss"], [0, 1.0, 1.1], [1, 0.9, 1.0]]
    path.write_text("".join(separator.join(str(v) for v in row) + "\n" for row in rows))
    curve = load_curve(path)
    assert curve.run == path.stem and curve.epochs.tolist() == [1, 2]
    assert curve.metrics["val_loss"].tolist() == [1.1, 1.0]


def test_a_resumed_csvlogger_file_with_a_repeated_header_is_read(tmp_path: Path) -> None:
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    path = _write_csv(
        tmp_path / "resumed.csv",
        header,
        [[0, 0.5, 1.0, 0.5, 1.1], [1, 0.6, 0.9, 0.55, 1.0], header, [2, 0.7, 0.8, 0.6, 0.95]],
    )
    curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2, 3] and curve.complete
    assert curve.metrics["val_accuracy"].tolist() == [0.5, 0.55, 0.6]


def test_a_last_row_still_being_written_is_dropped_but_a_short_row_elsewhere_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    rows = [[0, 0.5, 1.0, 0.5, 1.1], [1, 0.6, 0.9, 0.55, 1.0]]
    # Read while CSVLogger writes epoch 2: the row is cut short and has no line end yet.
    path = _write_csv(tmp_path / "live.csv", header, rows)
    with path.open("a") as handle:
        handle.write("2,0.7,0.8")
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2]
    assert curve.metrics["val_loss"].tolist() == [1.1, 1.0]
    assert "live.csv: last row (line 4) has 3 of 5 cells and no line end" in caplog.text
    # The same short row with its line end is a malformed file, not a row in progress.
    ended = _write_csv(tmp_path / "ended.csv", header, [*rows, [2, 0.7, 0.8]])
    with pytest.raises(ValueError, match=r"ended\.csv: line 4 has 3 cells, header has 5"):
        load_curve(ended)
    middle = _write_csv(tmp_path / "middle.csv", header, [rows[0], [1, 0.6], [2, 0.7, 0.8, 0.6, 0.95]])
    with pytest.raises(ValueError, match=r"middle\.csv: line 3 has 2 cells, header has 5"):
        load_curve(middle)


def test_a_file_of_several_trainings_reads_the_last_one_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The script was run twice with CSVLogger(append=True): two trainings from epoch 0, never merged.
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    first = [[e, 0.5, 1.0, 0.5, 1.1] for e in range(3)]
    second = [[e, 0.6 + e / 10, 0.9, 0.6 + e / 20, 1.0] for e in range(2)]
    path = _write_csv(tmp_path / "restarted.csv", header, [*first, header, *second])
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2] and curve.complete
    assert curve.metrics["val_accuracy"].tolist() == [0.6, 0.65]
    assert (
        "restarted.csv: holds 2 trainings" in caplog.text and "the last one, 2 rows, is read" in caplog.text
    )


def test_an_accuracy_logged_in_percent_is_read_as_a_fraction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    path = _write_csv(tmp_path / "pct.csv", header, [[0, 50.0, 1.0, 48.5, 1.1], [1, 62.0, 0.9, 60.0, 1.0]])
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(path)
    np.testing.assert_allclose(curve.metrics["val_accuracy"], [0.485, 0.6])
    np.testing.assert_allclose(curve.metrics["accuracy"], [0.5, 0.62])
    assert "pct.csv" in caplog.text and "'val_accuracy' reads as a percentage" in caplog.text


def test_an_accuracy_a_rounding_error_above_one_stays_a_fraction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # float32 sums of per-batch accuracies can end a hair above 1 (1.0000001): that is a fraction
    # at its ceiling, not a percentage of about 1 % (dividing by 100 read a perfect run as at 0.01).
    header = ["epoch", "accuracy", "val_accuracy"]
    rows = [[0, 0.9, 0.88], [1, 1.0000001, 0.97], [2, 1.0000002, 0.98]]
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(_write_csv(tmp_path / "ceiling.csv", header, rows))
    np.testing.assert_allclose(curve.metrics["accuracy"], [0.9, 1.0, 1.0])
    assert curve.metrics["accuracy"].max() <= 1.0
    np.testing.assert_allclose(curve.metrics["val_accuracy"], [0.88, 0.97, 0.98])
    assert "percentage" not in caplog.text


@pytest.mark.parametrize(("value", "shown"), [(250.0, "250"), (-0.2, "-0.2")])
def test_an_accuracy_that_is_no_fraction_nor_percentage_is_refused(
    tmp_path: Path, value: float, shown: str
) -> None:
    path = _write_csv(tmp_path / "odd.csv", ["epoch", "val_accuracy"], [[0, 0.5], [1, value]])
    with pytest.raises(
        ValueError, match=f"odd.csv: column 'val_accuracy': accuracy {shown} is not a fraction"
    ):
        load_curve(path)


def test_a_text_column_the_engine_does_not_read_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = ["epoch", "time", "loss", "val_loss", "val_accuracy"]
    rows = [[0, "2021-03-04 12:00:01", 1.0, 1.1, 0.5], [1, "2021-03-04 12:01:13", 0.9, 1.0, 0.55]]
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(_write_csv(tmp_path / "timed.csv", header, rows))
    assert "time" not in curve.metrics and curve.metrics["val_accuracy"].tolist() == [0.5, 0.55]
    assert "timed.csv: column 'time' is not numeric (line 2: '2021-03-04 12:00:01'): ignored" in caplog.text


@pytest.mark.parametrize("name", ["lr", "learning_rate"])
def test_a_text_learning_rate_column_is_dropped_under_either_name(tmp_path: Path, name: str) -> None:
    # A schedule's rate written as text ('<tf.Variable ...>' in some logs) is not the engine's to read.
    header = ["epoch", name, "loss", "val_loss", "val_accuracy"]
    rows = [[0, "<Variable 0.01>", 1.0, 1.1, 0.5], [1, "<Variable 0.01>", 0.9, 1.0, 0.55]]
    curve = load_curve(_write_csv(tmp_path / "rated.csv", header, rows))
    assert "learning_rate" not in curve.metrics and "lr" not in curve.metrics
    assert curve.metrics["val_accuracy"].tolist() == [0.5, 0.55]


@pytest.mark.parametrize("name", ["acc", "val_acc", "loss"])
def test_text_in_an_accuracy_or_loss_column_is_an_error_under_any_name(tmp_path: Path, name: str) -> None:
    header = ["epoch", name, "val_loss"] if name != "loss" else ["epoch", "loss", "val_loss"]
    rows = [[0, "oops", 1.1], [1, 0.5, 1.0]]
    with pytest.raises(ValueError, match=f"bad.csv: column {name!r}, line 2: 'oops' is not a number"):
        load_curve(_write_csv(tmp_path / "bad.csv", header, rows))


def test_a_bad_row_is_named_by_its_line_in_the_file_blank_lines_and_repeated_headers_counted(
    tmp_path: Path,
) -> None:
    # CSVLogger(append=True) resumed: its header again, after a blank line. The bad row is the
    # file's line 9 (the 7th row read, counting the header).
    header = "epoch,accuracy,loss,val_accuracy,val_loss\n"
    rows = [f"{e},0.{5 + e},1.{9 - e},0.{5 + e},1.{9 - e}\n" for e in range(5)]
    text = header + "".join(rows[:3]) + "\n" + header + "".join(rows[3:])
    bad = tmp_path / "bad.csv"
    bad.write_text(text + "5,0.9,0.2,abc,0.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv: column 'val_accuracy', line 9: 'abc' is not a number"):
        load_curve(bad)
    short = tmp_path / "short.csv"
    short.write_text(text + "5,0.9\n6,0.9,0.2,0.9,0.5\n")
    with pytest.raises(ValueError, match=r"short\.csv: line 9 has 2 cells, header has 5"):
        load_curve(short)


def test_csvlogger_na_cells_are_missing_values(tmp_path: Path) -> None:
    # fit(..., validation_freq=2): Keras' CSVLogger writes NA for the epochs not validated.
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    rows = [
        [0, 0.5, 1.0, "NA", "NA"],
        [1, 0.6, 0.9, 0.55, 1.0],
        [2, 0.7, 0.8, "NA", "NA"],
        [3, 0.75, 0.7, 0.6, 0.9],
    ]
    curve = load_curve(_write_csv(tmp_path / "every2.csv", header, rows))
    assert curve.epochs.tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(curve.metrics["val_accuracy"], [np.nan, 0.55, np.nan, 0.6])
    assert curve.metrics["accuracy"].tolist() == [0.5, 0.6, 0.7, 0.75]


def test_a_resume_that_reruns_logged_epochs_keeps_the_later_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Trained epochs 0-3, killed; resumed from a checkpoint of epoch 1: fit(initial_epoch=2)
    # appends epochs 2-4 again to the same CSVLogger(append=True) file.
    header = ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    first = [[e, 0.5 + e / 10, 1.0, 0.5 + e / 20, 1.1 - e / 10] for e in range(4)]
    again = [[e, 0.5 + e / 10, 1.0, 0.9, 0.5] for e in range(2, 5)]
    path = _write_csv(tmp_path / "overlap.csv", header, [*first, header, *again])
    with caplog.at_level("WARNING", logger="pipelines.curves.io"):
        curve = load_curve(path)
    assert curve.epochs.tolist() == [1, 2, 3, 4, 5] and curve.complete
    assert curve.metrics["val_accuracy"].tolist() == [0.5, 0.55, 0.9, 0.9, 0.9]
    assert "overlap.csv" in caplog.text and "epochs [2, 3]" in caplog.text


@pytest.mark.parametrize(
    ("epochs", "kept"),
    [
        ([0, 1, 2, 3], [0, 1, 2, 3]),
        ([0, 1, 2, 3, 2, 3, 4], [0, 1, 4, 5, 6]),
        ([0, 1, 2, 1, 2, 3, 2, 3, 4], [0, 3, 6, 7, 8]),  # resumed twice
        ([0, 1, 2, 5, 3, 4], [0, 1, 2, 4, 5]),  # gap, then resumed from 3
        ([3, 4, 5, 4, 5], [0, 3, 4]),  # a log that starts late (a kept-from-elsewhere resume)
    ],
)
def test_resumed_rows_keeps_the_training_that_went_on(epochs: list[int], kept: list[int]) -> None:
    keep = resumed_rows(np.asarray(epochs, dtype=np.int64), "run.csv")
    assert np.flatnonzero(keep).tolist() == kept
    assert np.all(np.diff(np.asarray(epochs)[keep]) > 0)


@pytest.mark.parametrize(
    ("epochs", "kept"),
    [
        ([0, 1, 0, 1], [2, 3]),
        ([2, 3, 2], [2]),
        ([0, 1, 2, 0], [3]),
        ([0, 1, 2, 1, 2, 0, 1, 2, 1, 2], [5, 8, 9]),  # a resumed training, then a new one, resumed
    ],
)
def test_resumed_rows_keeps_the_last_training(epochs: list[int], kept: list[int]) -> None:
    keep = resumed_rows(np.asarray(epochs, dtype=np.int64), "run.csv")
    assert np.flatnonzero(keep).tolist() == kept


def test_a_negative_epoch_is_refused_naming_the_field(tmp_path: Path) -> None:
    csv_file = tmp_path / "log.csv"
    csv_file.write_text("epoch,loss,val_loss\n-1,0.9,1.0\n0,0.8,0.9\n")
    with pytest.raises(ValueError, match=r"log\.csv: column 'epoch': negative epoch -1"):
        load_curve(csv_file)
    with pytest.raises(ValueError, match=r"run: metric 'epoch': negative epoch -1"):
        curve_from_history({"epoch": [-1, 0], "loss": [0.9, 0.8], "val_loss": [1.0, 0.9]}, run="run")


def test_losses_with_an_l2_penalty_are_read_from_the_logged_crossentropy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # TensorFlow's "Overfit and underfit" tutorial logs binary_crossentropy beside the loss: the
    # loss adds the L2 penalty, the metric does not. The penalty shrinks as weights decay while the
    # validation cross-entropy rises: the logged val_loss stays flat and hides the overfitting.
    e = 30
    t = np.arange(e)
    bce = 0.60 - 0.25 * (1 - np.exp(-t / 3))
    val_bce = 0.62 - 0.2 * (1 - np.exp(-t / 3)) + 0.006 * np.maximum(t - 8, 0)
    penalty = 0.30 - 0.006 * t
    header = ["epoch", "accuracy", "binary_crossentropy", "loss"]
    header += ["val_accuracy", "val_binary_crossentropy", "val_loss"]
    acc = 0.6 + 0.3 * (1 - np.exp(-t / 3))
    rows = [
        [i, acc[i], bce[i], bce[i] + penalty[i], 0.62, val_bce[i], val_bce[i] + penalty[i]] for i in range(e)
    ]
    path = _write_csv(tmp_path / "l2.csv", header, rows)
    with caplog.at_level("INFO", logger="pipelines.curves.io"):
        curve = load_curve(path)
    np.testing.assert_allclose(curve.metrics["val_loss"], val_bce)
    np.testing.assert_allclose(curve.metrics["val_loss_regularised"], val_bce + penalty)
    np.testing.assert_allclose(curve.metrics["loss"], bce)
    assert "l2.csv" in caplog.text and "'binary_crossentropy'" in caplog.text

    from pipelines.curves.diagnose import diagnose

    diagnosis = diagnose(curve)
    assert diagnosis.has("overfitting")
    from pipelines.curves.report import build_report_content, render_markdown

    content = build_report_content(challenger=curve, diagnosis=diagnosis)
    assert "`binary_crossentropy`" in content["loss_note"]
    assert content["loss_note"] in render_markdown(content)
    # A metric above the loss (another from_logits, another output) is not the loss's data term.
    above = [[*r[:2], r[2] + 1.0, *r[3:5], r[5] + 1.0, r[6]] for r in rows]
    curve = load_curve(_write_csv(tmp_path / "other.csv", header, above))
    np.testing.assert_allclose(curve.metrics["val_loss"], val_bce + penalty)
    assert "val_loss_regularised" not in curve.metrics
    # Without a penalty (metric == loss) nothing changes either.
    same = [[*r[:3], r[2], *r[4:6], r[5]] for r in rows]
    curve = load_curve(_write_csv(tmp_path / "same.csv", header, same))
    assert "loss_regularised" not in curve.metrics
    assert build_report_content(challenger=curve, diagnosis=diagnose(curve))["loss_note"] is None


def test_metrics_read_names_what_the_engine_reads_of_a_run() -> None:
    logged = ["auc", "val_binary_accuracy", "binary_accuracy", "loss", "val_loss", "lr", "precision"]
    logged += ["binary_crossentropy", "val_binary_crossentropy", "val_auc"]
    assert metrics_read(logged) == (
        "val_binary_accuracy",
        "binary_accuracy",
        "loss",
        "val_loss",
        "lr",
        "binary_crossentropy",
        "val_binary_crossentropy",
    )
    # Two accuracy kinds and no accuracy: neither stands for it (io.canonical_names).
    assert metrics_read(["val_binary_accuracy", "val_categorical_accuracy", "val_loss"]) == ("val_loss",)
    # acc beside accuracy stays acc, unread.
    assert metrics_read(["acc", "accuracy", "val_accuracy"]) == ("accuracy", "val_accuracy")
    assert metrics_read([]) == ()


def test_fit_called_again_on_the_same_model_is_read_as_one_run(caplog: pytest.LogCaptureFixture) -> None:
    # A real log (tests/fixtures/probes/README.md): fit(epochs=8) called three times on one model
    # with CSVLogger(append=True) and no initial_epoch. Only the last 8 rows were read.
    path = Path(__file__).parents[2] / "fixtures" / "probes" / "fmnist-mlp-fit-called-three-times-append.csv"
    with caplog.at_level("WARNING"):
        curve = load_curve(path)
    assert curve.epochs.tolist() == list(range(1, 25))
    assert curve.metrics["loss"][8] < curve.metrics["loss"][7] < curve.metrics["loss"][0]
    assert "3 fit() calls" in caplog.text and "read as one run" in caplog.text
    # Its diagnosis tells the gap's growth from what a stall needs, though both round to 0.031.
    from pipelines.curves.diagnose import diagnose

    message = diagnose(curve).findings[0].message
    assert "grew by 0.0307, short of the 0.0311" in message, message


@pytest.mark.parametrize(
    ("epochs", "loss", "numbers"),
    [
        # A second fit on the same model: its first loss beside the first fit's last.
        ([0, 1, 2, 0, 1], [0.9, 0.5, 0.4, 0.38, 0.36], [0, 1, 2, 3, 4]),
        # A new model: back at the first fit's first loss. Its own numbers (resumed_rows keeps it).
        ([0, 1, 2, 0, 1], [0.9, 0.5, 0.4, 0.88, 0.52], [0, 1, 2, 0, 1]),
        # One-epoch fits in a loop, the loss falling: one run.
        ([0, 0, 0, 0], [0.9, 0.6, 0.5, 0.45], [0, 1, 2, 3]),
        # One-epoch trainings of new models: each starts at about the same loss.
        ([0, 0, 0, 0], [0.9, 0.91, 0.89, 0.9], [0, 0, 0, 0]),
        # A resume from a checkpoint (initial_epoch=1) is resumed_rows' to read.
        ([0, 1, 2, 1, 2], [0.9, 0.5, 0.4, 0.5, 0.39], [0, 1, 2, 1, 2]),
        # No loss at the restart: undecided, own numbers.
        ([0, 1, 2, 0, 1], [0.9, 0.5, 0.4, float("nan"), 0.36], [0, 1, 2, 0, 1]),
    ],
)
def test_continued_fits_numbers_on_only_the_same_models_training(
    epochs: list[int], loss: list[float], numbers: list[int]
) -> None:
    out = continued_fits(np.asarray(epochs, dtype=np.int64), np.asarray(loss), "run.csv")
    assert out.tolist() == numbers
