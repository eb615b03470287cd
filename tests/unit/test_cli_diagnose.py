"""``curvewatch diagnose`` on CSVLogger files and MLflow runs: table, report, exit code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipelines import tracking
from pipelines.cli import app

runner = CliRunner()
CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"


def _write_csv(path, val_acc, acc=None):
    acc = val_acc + 0.01 if acc is None else acc
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for i, (a, v) in enumerate(zip(acc, val_acc, strict=True)):
        lines.append(f"{i},{a:.5f},{2.3 * (1 - a):.5f},{v:.5f},{2.3 * (1 - v):.5f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _stalled(seed=0, epochs=20):
    rng = np.random.default_rng(seed)
    e = np.arange(epochs)
    return np.where(e < 6, 0.30 + 0.03 * e, 0.472) + rng.normal(0, 0.004, epochs)


def _healthy(seed=0, epochs=20):
    rng = np.random.default_rng(seed)
    e = np.arange(epochs)
    return 0.90 - 0.5 * np.exp(-e / 4) + rng.normal(0, 0.003, epochs)


def test_flags_a_stall_and_writes_the_report(tmp_path):
    stall = _write_csv(tmp_path / "stall.csv", _stalled(), acc=_stalled(1) + 0.02)
    healthy = _write_csv(tmp_path / "healthy.csv", _healthy())
    out = tmp_path / "report"
    result = runner.invoke(
        app,
        [
            "diagnose",
            str(stall),
            str(healthy),
            "--epoch-budget",
            "20",
            "--num-classes",
            "10",
            "--out",
            str(out),
            "--no-extrapolate",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "plateau" in result.output and "healthy" in result.output
    rows = {Path_(r["source"]): r for r in json.loads((out / "diagnosis.json").read_text())}
    # Which epoch numbering it uses, as the per-run report.json says: CSVLogger files count from 0.
    assert all(r["epoch_convention"].startswith("Epochs are counted from 1") for r in rows.values())
    assert rows["stall.csv"]["verdict"] == "plateau" and rows["stall.csv"]["flagged"]
    assert abs(rows["stall.csv"]["plateau_level"] - 0.472) < 0.01
    assert rows["healthy.csv"]["verdict"] == "healthy" and not rows["healthy.csv"]["flagged"]
    assert "| run | verdict | onset epoch | evidence |" in (out / "diagnosis.md").read_text()


def Path_(source: str) -> str:
    return source.rsplit("/", 1)[-1]


def test_exit_zero_when_all_healthy(tmp_path):
    files = [str(_write_csv(tmp_path / f"h{s}.csv", _healthy(s))) for s in range(3)]
    result = runner.invoke(app, ["diagnose", *files, "--epoch-budget", "20", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output


def test_bad_file_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,accuracy,loss\n0,0.5,1.0\n")
    result = runner.invoke(app, ["diagnose", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "bad.csv" in result.output


def test_a_folder_stands_for_its_curve_files(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _write_csv(logs / "stall.csv", _stalled(), acc=_stalled(1) + 0.02)
    _write_csv(logs / "healthy.csv", _healthy())
    (logs / "training.log").write_text((logs / "healthy.csv").read_text().replace(",", "\t"))
    (logs / "notes.txt").write_text("not a curve\n")
    (logs / "notes.md").write_text("not read\n")
    (logs / "predictions.csv").write_text("id,label,predicted\n0,1,1\n")  # another CSV of the project
    out = tmp_path / "r"
    result = runner.invoke(app, ["diagnose", str(logs), "--out", str(out), "--no-extrapolate", "--no-html"])
    assert result.exit_code == 1, result.output
    rows = {Path_(r["source"]): r["verdict"] for r in json.loads((out / "diagnosis.json").read_text())}
    assert rows == {"healthy.csv": "healthy", "stall.csv": "plateau", "training.log": "healthy"}
    assert "skipped, not a training curve" in result.output and "predictions.csv" in result.output
    assert "notes.txt" in result.output and "notes.md" not in result.output
    # Named on the command line, the same file fails the command.
    result = runner.invoke(app, ["diagnose", str(logs / "predictions.csv"), "--out", str(out)])
    assert result.exit_code == 2 and "predictions.csv" in result.output
    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "data.csv").write_text("x,y\n1,2\n")
    result = runner.invoke(app, ["diagnose", str(only_other), "--out", str(out)])
    assert (
        result.exit_code == 2
        and "none of its 1 .csv / .tsv / .log / .txt / .json / .jsonl files reads as a curve" in result.output
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["diagnose", str(empty), "--out", str(out)])
    assert result.exit_code == 2 and "a folder with no curve file (.csv / .tsv / .log" in result.output


def _unvalidated(path):
    """A 3-epoch run of fit(validation_freq=5): CSVLogger writes NA for every val_loss."""
    path.write_text("epoch,loss,val_loss\n0,1.0,NA\n1,0.9,NA\n2,0.8,NA\n")
    return path


def test_a_run_without_a_validation_value_exits_2_alone_and_is_skipped_among_others(tmp_path):
    out = tmp_path / "r"
    lone = _unvalidated(tmp_path / "vf5.csv")
    result = runner.invoke(app, ["diagnose", str(lone), "--out", str(out), "--no-extrapolate"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"{lone}: no finite val_accuracy / val_loss value to diagnose"
    assert not out.exists()
    # In a folder, or beside other sources, it is skipped with a warning; the others are reported.
    logs = tmp_path / "logs"
    logs.mkdir()
    _unvalidated(logs / "vf5.csv")
    _write_csv(logs / "healthy.csv", _healthy())
    other = _write_csv(tmp_path / "stall.csv", _stalled(), acc=_stalled(1) + 0.02)
    for sources in ([logs], [lone, other]):
        result = runner.invoke(
            app, ["diagnose", *map(str, sources), "--out", str(out), "--no-extrapolate", "--no-html"]
        )
        assert result.exit_code in (0, 1), result.output
        assert "skipped, nothing to diagnose: " in result.output and "vf5.csv: no finite" in result.output
        rows = [Path_(r["source"]) for r in json.loads((out / "diagnosis.json").read_text())]
        assert rows == ["healthy.csv"] if sources == [logs] else ["stall.csv"]


def test_every_report_lies_under_out_whatever_the_runs_are_called(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("...csv", "..csv", "run.csv"):  # stems "..", "." and "run"
        _write_csv(logs / name, _healthy())
    out = tmp_path / "a" / "out"
    result = runner.invoke(app, ["diagnose", str(logs), "--out", str(out), "--no-extrapolate"])
    assert result.exit_code == 0, result.output
    written = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(out) for p in written), written
    assert sorted(p.parent.name for p in out.glob("*/report.html")) == ["run", "run-2", "run-3"]


def test_only_the_params_files_diagnose_section_is_read(tmp_path, monkeypatch):
    stall = str(_write_csv(tmp_path / "stall.csv", _stalled(), acc=_stalled(1) + 0.02))
    out = str(tmp_path / "r")
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)

    def verdict(*options):
        result = runner.invoke(
            app, ["diagnose", stall, *options, "--out", out, "--no-extrapolate", "--no-html"]
        )
        return result.exit_code, result.output.strip()

    assert verdict()[0] == 1  # no params.yaml here: the defaults
    # Another (DVC) project's params.yaml: its sections are not curvewatch's, and are not read.
    params = project / "params.yaml"
    params.write_text("train:\n  lr: 0.01\nstages: [a, b]\n")
    assert verdict()[0] == 1
    params.write_text("train:\n  lr: 0.01\ndiagnose:\n  min_plateau_epochs: 15\n  live_patience: 15\n")
    assert verdict()[0] == 0  # a 14-epoch stall is no plateau of 15 epochs
    params.write_text("train:\n  lr: 0.01\ndiagnose:\n  min_plateau_epochs: 0\n  nope: 1\n")
    code, output = verdict()
    assert code == 2 and "params.yaml: diagnose.min_plateau_epochs: " in output, output
    assert "params.yaml: diagnose.nope: Extra inputs are not permitted" in output
    own = tmp_path / "own.yaml"
    own.write_text("diagnose:\n  min_plateau_epochs: 15\n  live_patience: 15\n")
    assert verdict("--params", str(own))[0] == 0
    assert verdict("--params", str(tmp_path / "nosuch.yaml")) == (
        2,
        f"{tmp_path / 'nosuch.yaml'}: params file not found",
    )


def test_a_class_count_below_two_or_a_budget_below_one_exits_2_naming_the_option(tmp_path):
    run = str(_write_csv(tmp_path / "h.csv", _healthy()))
    for option, value in (("--num-classes", "1"), ("--epoch-budget", "0")):
        result = runner.invoke(app, ["diagnose", run, option, value, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, result.output
        assert option in result.output
    assert not (tmp_path / "r").exists()


def _diagnosis_json(tmp_path, run, *options):
    out = tmp_path / f"report{len(list(tmp_path.iterdir()))}"
    result = runner.invoke(
        app, ["diagnose", str(run), *options, "--out", str(out), "--no-extrapolate", "--no-html"]
    )
    assert result.exit_code in (0, 1), result.output
    return json.loads((out / "diagnosis.json").read_text())[0]


def test_a_known_class_prior_names_a_run_at_the_majority_share_not_learning(tmp_path):
    # A real Keras run on an imbalanced binary task (majority share 0.603 of its training labels,
    # 142 validation examples) that never got clear of the majority share.
    run = tmp_path / "imbalanced.csv"
    run.write_bytes((CORPUS / "diabetes-plateau-s0.csv").read_bytes())
    blind = _diagnosis_json(tmp_path, run)
    assert blind["verdict"] != "not_learning"
    told = _diagnosis_json(tmp_path, run, "--class-prior", "0.6033,0.3967", "--val-examples", "142")
    assert told["verdict"] == "not_learning", told
    assert "chance 0.603" in told["findings"][0]["message"]


def test_a_baseline_accuracy_is_the_bar_for_file_runs(tmp_path):
    run = _write_csv(tmp_path / "stall.csv", _stalled(), acc=_stalled(1) + 0.02)
    without = _diagnosis_json(tmp_path, run, "--num-classes", "10")
    assert "below the baseline" not in json.dumps(without["findings"])
    told = _diagnosis_json(tmp_path, run, "--num-classes", "10", "--baseline-accuracy", "0.8")
    plateau = next(f for f in told["findings"] if f["code"] == "plateau")
    assert "below the baseline's 0.800" in plateau["message"]


def test_bad_class_prior_or_baseline_exits_2_naming_the_option(tmp_path):
    run = str(_write_csv(tmp_path / "h.csv", _healthy()))
    cases = (
        (["--class-prior", "0.4,x"], "--class-prior"),
        (["--class-prior", "1,0"], "--class-prior"),
        (["--class-prior", "0.5,0.3,0.2", "--num-classes", "2"], "--num-classes is 2"),
        (["--baseline-accuracy", "1.5"], "--baseline-accuracy"),
        (["--val-examples", "0"], "--val-examples"),
    )
    for options, needle in cases:
        result = runner.invoke(app, ["diagnose", run, *options, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, (options, result.output)
        assert needle in result.output, (options, result.output)
    assert not (tmp_path / "r").exists()


def test_mlflow_runs_by_id_and_experiment_get_tags(tmp_path, mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "diag")
    ids = []
    for values in [_stalled(), _healthy()]:
        run = mc.create_run(exp, tags={tracking.RUN_KIND_TAG: "train"})
        for epoch, v in enumerate(values, start=1):
            mc.log_metric(run.info.run_id, "val_accuracy", float(v), step=epoch)
            mc.log_metric(run.info.run_id, "accuracy", float(v) + 0.02, step=epoch)
        mc.log_param(run.info.run_id, "train.epochs", 20)
        mc.log_param(run.info.run_id, "data.num_classes", 10)  # as the train stage logs it
        mc.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    result = runner.invoke(app, ["diagnose", ids[0], "--out", str(tmp_path / "r1"), "--no-extrapolate"])
    assert result.exit_code == 1, result.output
    assert mc.get_run(ids[0]).data.tags["curvewatch.verdict"] == "plateau"
    assert "curvewatch.diagnosis.plateau_spread" in mc.get_run(ids[0]).data.tags
    result = runner.invoke(app, ["diagnose", "--experiment", "diag", "--out", str(tmp_path / "r2")])
    assert result.exit_code == 1
    assert mc.get_run(ids[1]).data.tags["curvewatch.verdict"] == "healthy"
    result = runner.invoke(app, ["diagnose", "--experiment", "nope", "--out", str(tmp_path / "r3")])
    assert result.exit_code == 2 and "nope" in result.output
    # A filter that matches none of a curvewatch experiment's training runs says so (exit 2).
    out = str(tmp_path / "r4")
    result = runner.invoke(
        app, ["diagnose", "--experiment", "diag", "--filter", "params.x = 'y'", "--out", out]
    )
    assert result.exit_code == 2 and "no training run with val_accuracy / val_loss matching" in result.output


def test_an_experiment_of_autologged_runs_is_diagnosed(tmp_path, mlflow_uri):
    # mlflow.keras.autolog() runs carry no curvewatch tag: every run with a validation metric counts.
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "autolog")
    stalled = mc.create_run(exp).info.run_id
    for epoch, v in enumerate(_stalled()):  # step = Keras' 0-based epoch, as autolog logs it
        mc.log_metric(stalled, "val_accuracy", float(v), step=epoch)
    mc.set_terminated(stalled)
    mc.set_terminated(mc.create_run(exp).info.run_id)  # a run without curves (e.g. an evaluation)
    result = runner.invoke(app, ["diagnose", "--experiment", "autolog", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output
    rows = json.loads((tmp_path / "r" / "diagnosis.json").read_text())
    assert [r["source"] for r in rows] == [stalled] and rows[0]["verdict"] == "plateau"


def test_an_autologged_binary_run_is_found_by_its_accuracy_kind(tmp_path, mlflow_uri):
    # compile(metrics=["binary_accuracy"]) logs val_binary_accuracy, no val_accuracy: the run is
    # found and read as val_accuracy, as a CSVLogger file with that column is.
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "autolog-binary")
    stalled = mc.create_run(exp).info.run_id
    for epoch, v in enumerate(_stalled()):
        mc.log_metric(stalled, "val_binary_accuracy", float(v), step=epoch)
        mc.log_metric(stalled, "binary_accuracy", float(v) + 0.02, step=epoch)
    mc.set_terminated(stalled)
    result = runner.invoke(app, ["diagnose", "--experiment", "autolog-binary", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1, result.output
    rows = json.loads((tmp_path / "r" / "diagnosis.json").read_text())
    assert [r["source"] for r in rows] == [stalled] and rows[0]["verdict"] == "plateau"


def test_an_mlflow_run_without_curves_exits_2_alone_and_is_skipped_beside_a_file(tmp_path, mlflow_uri):
    mc = tracking.client()
    exp = tracking.ensure_experiment(mc, "no-curves")
    bare = mc.create_run(exp).info.run_id
    mc.log_metric(bare, "test_accuracy", 0.9)  # an evaluation run: no curve
    mc.set_terminated(bare)
    out = tmp_path / "r"
    result = runner.invoke(app, ["diagnose", bare, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"{bare}: no finite val_accuracy / val_loss value to diagnose"
    healthy = _write_csv(tmp_path / "healthy.csv", _healthy())
    result = runner.invoke(app, ["diagnose", bare, str(healthy), "--out", str(out), "--no-extrapolate"])
    assert result.exit_code == 0, result.output
    assert f"skipped, nothing to diagnose: {bare}" in result.output
    assert [Path_(r["source"]) for r in json.loads((out / "diagnosis.json").read_text())] == ["healthy.csv"]
