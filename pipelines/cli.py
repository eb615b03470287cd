"""The ``curvewatch`` command line (Typer): one subcommand per stage, the flows, and ``diagnose``.

``dvc.yaml`` calls the stage subcommands; ``make run`` calls ``curvewatch flow retrain``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer


class _App(typer.Typer):
    """The program: a tracking store that does not answer ends any command with its one-line
    message and exit code 1, not a traceback (Typer would print every frame)."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            from pipelines.tracking import TrackingUnavailable

            if not isinstance(exc, TrackingUnavailable):
                raise
            typer.secho(str(exc), fg="red", err=True)
            sys.exit(1)


app = _App(help="curvewatch: retrain, diagnose validation curves, gate regressions.", no_args_is_help=True)
flow_app = typer.Typer(help="Run Prefect flows.", no_args_is_help=True)
app.add_typer(flow_app, name="flow")

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file")]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="quick | full (default: base.profile)")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-S", help="override a param: section.key=value (repeatable)")
]


def _params(params: Path, profile: str | None, overrides: list[str] | None):
    from pipelines.config import ConfigError, load_params

    try:
        return load_params(params, profile=profile, overrides=overrides)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from exc


@app.callback()
def _quiet_console() -> None:
    # Before any command imports TensorFlow or MLflow: their start-up noise is decided on load.
    from pipelines.console import quiet

    quiet(filter_native=_is_program())


def _is_program() -> bool:
    """True when running as the ``curvewatch`` program, not inside a host (pytest's CliRunner)."""
    return Path(sys.argv[0]).name == "curvewatch"


#: An MLflow run id: 32 lowercase hex characters (a uuid4 without dashes).
_RUN_ID = re.compile(r"[0-9a-f]{32}")


def _setup_logging() -> None:
    from pipelines.console import quiet

    quiet(filter_native=_is_program())  # idempotent; also for commands called directly


def _fail(exc: Exception, code: int = 1):
    typer.secho(str(exc), fg="red", err=True)
    raise typer.Exit(code) from exc


@contextmanager
def _input_errors(*errors: type[Exception]) -> Iterator[None]:
    """Exit 2 with the error's one line (it names the file) when a stage's input is missing or
    unreadable: the dataset, the image folder, the fetched or prepared data (``DataError``,
    ``FileNotFoundError``) or any of ``errors``."""
    from pipelines.fetch import DataError

    try:
        yield
    except (DataError, FileNotFoundError, *errors) as exc:
        _fail(exc, code=2)


@app.command()
def fetch(params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None) -> None:
    """Fetch the dataset (Fashion-MNIST IDX files or a user's image folder) into paths.raw_dir."""
    from pipelines.steps import run_fetch

    _setup_logging()
    with _input_errors():
        result = run_fetch(_params(params, profile, set_))
    typer.echo(f"fetched {result.num_examples} images from {result.source}")


@app.command()
def prepare(params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None) -> None:
    """Split train/validation (stratified, seeded), keep the test set apart, write the manifest."""
    from pipelines.steps import run_prepare

    _setup_logging()
    with _input_errors():
        result = run_prepare(_params(params, profile, set_))
    typer.echo(f"prepared {result.counts} into {result.prepared_dir}")


@app.command()
def validate(
    params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None
) -> None:
    """Run the Great Expectations suites and cross-split checks; exit 1 when any fails."""
    from pipelines.steps import ValidationFailed, run_validate
    from pipelines.validate import ValidationInputError

    _setup_logging()
    try:
        with _input_errors(ValidationInputError):
            result = run_validate(_params(params, profile, set_))
    except ValidationFailed as exc:
        _fail(exc)
    typer.echo(f"data validation passed; Data Docs: {result.data_docs_index}")


@app.command()
def baseline(
    params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None
) -> None:
    """Logistic-regression validation accuracy on the same split (the diagnosis' "low plateau" yardstick)."""
    from pipelines.steps import run_baseline

    _setup_logging()
    with _input_errors():
        accuracy = run_baseline(_params(params, profile, set_))
    typer.echo(f"baseline (logistic regression) val_accuracy {accuracy:.4f}")


@app.command()
def train(params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None) -> None:
    """Train the configured model and log the run to MLflow."""
    from pipelines import heap
    from pipelines.steps import StageError, run_train
    from pipelines.train import TrainingInterrupted

    _setup_logging()
    heap.freeze_imported(preload=("mlflow", "keras"))  # imported with collection off, then frozen
    try:
        with _input_errors():
            outcome = run_train(_params(params, profile, set_))
    except StageError as exc:
        _fail(exc)
    except TrainingInterrupted as exc:
        typer.secho(str(exc), fg="red", err=True)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit skips atexit: hand what the stderr filter still holds to the real stderr first.
        from pipelines.console import stop_filter

        stop_filter()
        # The backup and the KILLED run are written. Python's teardown of TensorFlow then took
        # 8-9 s here, longer than a scheduler's grace period may allow: leave now, with the shell's
        # code for "ended by signal N".
        os._exit(128 + exc.signum)
    typer.echo(
        f"trained {outcome.epochs_run} epochs in {outcome.train_seconds:.0f} s; MLflow run {outcome.run_id} "
        "(the compare stage registers the model once its curves are diagnosed)"
    )


@app.command()
def evaluate(
    params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None
) -> None:
    """Evaluate the trained model on the test split (metrics, confusion matrix, predictions)."""
    from pipelines import heap
    from pipelines.steps import StageError, run_evaluate

    _setup_logging()
    heap.freeze_imported(preload=("mlflow", "keras"))  # imported with collection off, then frozen
    try:
        with _input_errors():
            result = run_evaluate(_params(params, profile, set_))
    except StageError as exc:
        _fail(exc)
    typer.echo(f"test accuracy {result.test_accuracy:.4f}, test loss {result.test_loss:.4f}")


@app.command()
def compare(params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None) -> None:
    """Diagnose the curves, compare with the champion and recent runs, gate and report."""
    from pipelines import heap
    from pipelines.steps import StageError, run_compare

    _setup_logging()
    heap.freeze_imported(preload=("mlflow",))  # imported with collection off, then frozen
    try:
        with _input_errors():  # an evaluation folder emptied by hand: one line, exit 2
            outcome = run_compare(_params(params, profile, set_))
    except StageError as exc:
        _fail(exc)
    typer.echo(f"verdict: {outcome.verdict}: {outcome.diagnosis_message}")
    typer.echo(f"gate: {outcome.gate_message}; promoted: {outcome.promoted}")
    typer.echo(f"report: {outcome.report_markdown}")


def _class_prior(text: str, num_classes: int | None) -> tuple[float, ...]:
    """``--class-prior`` "0.9,0.1" as shares summing to 1.

    Raises:
        ValueError: (naming the option) a share that is not a number, negative or not finite, fewer
            than two classes with a positive share, or a count that differs from ``--num-classes``.
    """
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--class-prior {text!r}: give comma-separated numbers, e.g. 0.9,0.1") from None
    if any(not math.isfinite(v) or v < 0 for v in shares) or sum(v > 0 for v in shares) < 2:
        raise ValueError(
            f"--class-prior {text!r}: shares must be finite and non-negative, two or more of them positive"
        )
    if num_classes is not None and len(shares) != num_classes:
        raise ValueError(
            f"--class-prior {text!r} has {len(shares)} classes but --num-classes is {num_classes}"
        )
    total = sum(shares)
    return tuple(v / total for v in shares)


def _with_context(curve: Any, prior: tuple[float, ...] | None, val_examples: int | None) -> Any:
    """A file run's curve with the ``--class-prior`` and ``--val-examples`` the user gave."""
    import dataclasses

    changes: dict[str, Any] = {}
    if prior is not None:
        changes.update(class_prior=prior, num_classes=curve.num_classes or len(prior))
    if val_examples is not None:
        changes["num_val_examples"] = val_examples
    return dataclasses.replace(curve, **changes) if changes else curve


@app.command()
def diagnose(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Keras CSVLogger files (.csv, .tsv, .log, .txt: any separator), History JSON (.json) "
            "/ JSON-lines (.jsonl) files, folders of them (their files with those endings), or MLflow "
            "run ids"
        ),
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="diagnose the runs of this MLflow experiment")
    ] = None,
    filter_string: Annotated[
        str,
        typer.Option(
            "--filter", help="MLflow search filter for --experiment, e.g. \"params.train.model = 'mlp'\""
        ),
    ] = "",
    epoch_budget: Annotated[int | None, typer.Option(min=1, help="epoch budget of file runs")] = None,
    num_classes: Annotated[int | None, typer.Option(min=2, help="number of classes of file runs")] = None,
    class_prior: Annotated[
        str | None,
        typer.Option(
            help="class shares of file runs' training labels, e.g. 0.9,0.1 (chance = the largest; "
            "gives the number of classes)"
        ),
    ] = None,
    val_examples: Annotated[
        int | None, typer.Option(min=1, help="validation examples behind file runs' val_accuracy")
    ] = None,
    baseline_accuracy: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="a simple baseline's validation accuracy on file runs' split (0-1)"
        ),
    ] = None,
    extrapolate: Annotated[bool, typer.Option(help="fit learning-curve families (slower)")] = True,
    out: Annotated[
        Path, typer.Option(help="where diagnosis.md / .json and each run's HTML / PNG report go")
    ] = Path("reports/diagnose"),
    html: Annotated[
        bool, typer.Option(help="also write each run's HTML and PNG report (out/<run>/report.html)")
    ] = True,
    write_tags: Annotated[
        bool, typer.Option(help="write the verdict and the diagnosis numbers back to MLflow runs, as tags")
    ] = True,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            "-p",
            help="the thresholds: this YAML file's `diagnose:` section alone (its other sections are not "
            "read; without that section, the defaults); the file must exist. Default: ./params.yaml "
            "when it exists, else the defaults",
        ),
    ] = None,
) -> None:
    """Diagnose training curves; exit 1 when any run is flagged, 0 when all are healthy, 2 on bad input."""
    from rich.console import Console
    from rich.table import Table

    from pipelines.curves import batch
    from pipelines.curves.io import CURVE_SUFFIXES, load_curve

    sources = list(sources or [])
    prior = None
    if class_prior is not None:
        try:
            prior = _class_prior(class_prior, num_classes)
        except ValueError as exc:
            _fail(exc, code=2)
    if not sources and not experiment:
        typer.secho("give curve files or MLflow run ids, or --experiment", fg="red", err=True)
        raise typer.Exit(2)
    from pipelines.config import DEFAULT_PARAMS, ConfigError, load_diagnose_config

    try:
        config = load_diagnose_config(params or DEFAULT_PARAMS, required=params is not None)
    except ConfigError as exc:
        _fail(exc, code=2)
    curves = []  # (source, curve) of the files; the MLflow runs' go in run_curves
    run_curves = []
    run_ids = []
    expanded: list[str] = []
    # A folder's files are those that read as curves: a project folder also holds other CSV, JSON,
    # text and log files (data, predictions, configs, notes), which are skipped with a warning. A
    # file named on the command line must read, or the command fails.
    from_folder: dict[str, str] = {}
    kinds = " / ".join(CURVE_SUFFIXES)
    for src in sources:
        folder = Path(src)
        if not folder.is_dir():
            expanded.append(src)
            continue
        files = sorted(str(f) for f in folder.iterdir() if f.is_file() and f.suffix.lower() in CURVE_SUFFIXES)
        if not files:
            _fail(ValueError(f"{src}: a folder with no curve file ({kinds}) in it"), code=2)
        expanded += files
        from_folder.update(dict.fromkeys(files, src))
    skipped = 0
    for src in expanded:
        if Path(src).exists():
            try:
                curve = load_curve(src, epoch_budget=epoch_budget, num_classes=num_classes)
                curves.append((src, _with_context(curve, prior, val_examples)))
            except (ValueError, OSError) as exc:
                if src not in from_folder:
                    _fail(exc, code=2)
                skipped += 1
                typer.secho(f"skipped, not a training curve: {exc}", fg="yellow", err=True)
        elif _RUN_ID.fullmatch(src):
            run_ids.append(src)
        else:
            _fail(ValueError(f"{src}: no such file (and not an MLflow run id: 32 hex characters)"), code=2)
    if skipped and not curves and not run_ids and not experiment:
        folders = ", ".join(sorted(set(from_folder.values())))
        _fail(
            ValueError(f"{folders}: none of its {skipped} {kinds} files reads as a curve"),
            code=2,
        )
    mc = None
    if run_ids or experiment:
        from mlflow.exceptions import MlflowException

        from pipelines import tracking
        from pipelines.curves.io import VALIDATION_METRICS, canonical_names

        uri = tracking.tracking_uri()
        store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if store is not None and not store.is_file():
            # MLflow would create an empty store here and then report the run as missing.
            _fail(
                ValueError(
                    f"no MLflow store: {store} does not exist; run from the project folder or set "
                    "MLFLOW_TRACKING_URI"
                ),
                code=2,
            )
        mc = tracking.client(uri)
        try:
            runs = [mc.get_run(rid) for rid in run_ids]
            if experiment:
                exp = mc.get_experiment_by_name(experiment)
                if exp is None:
                    _fail(ValueError(f"--experiment: no MLflow experiment named {experiment!r}"), code=2)
                kind = f"tags.`{tracking.RUN_KIND_TAG}` = 'train'"
                found = tracking.search_training_runs(
                    mc,
                    [exp.experiment_id],
                    filter_string=f"{kind} and {filter_string}" if filter_string else kind,
                )
                if not found and not tracking.search_training_runs(
                    mc, [exp.experiment_id], filter_string=f"tags.`{tracking.RUN_KIND_TAG}` != ''", max_runs=1
                ):
                    # Not a curvewatch experiment (e.g. mlflow.keras.autolog()'s runs): every run
                    # that logged a validation metric, under any name the engine reads (val_acc,
                    # val_binary_accuracy, ...: io.canonical_names).
                    found = [
                        r
                        for r in tracking.search_training_runs(
                            mc, [exp.experiment_id], filter_string=filter_string
                        )
                        if any(m in canonical_names(dict(r.data.metrics)) for m in VALIDATION_METRICS)
                    ]
                if not found:
                    _fail(
                        ValueError(
                            f"--experiment {experiment!r}: no training run with val_accuracy / val_loss"
                            + (f" matching --filter {filter_string!r}" if filter_string else "")
                        ),
                        code=2,
                    )
                runs += found
        except MlflowException as exc:
            _fail(ValueError(f"not a curve file nor an MLflow run: {exc.message}"), code=2)
        run_curves = [(c.run, c) for c in tracking.fetch_curves(mc, runs)]
    # The options describe file runs; an MLflow run carries its own context.
    file_results, file_empty = batch.diagnose_all(
        curves, extrapolate=extrapolate, config=config, baseline_accuracy=baseline_accuracy
    )
    run_results, run_empty = batch.diagnose_all(run_curves, extrapolate=extrapolate, config=config)
    results = file_results + run_results
    # A run with no validation value (fit(validation_freq=5) stopped before epoch 5) is skipped
    # with a warning, as a folder's file that is no curve is; with nothing else to report, it is
    # the command's error.
    empty = [f"{source}: {exc.reason}" for source, exc in file_empty + run_empty]
    if empty and not results:
        _fail(ValueError("\n".join(empty)), code=2)
    for line in empty:
        typer.secho(f"skipped, nothing to diagnose: {line}", fg="yellow", err=True)
    table = Table(title="curvewatch diagnosis", caption=batch.EPOCH_CONVENTION.replace("`", ""))
    for column in ("run", "verdict", "onset epoch", "evidence"):
        table.add_column(column, overflow="fold")
    for r in results:
        onset = r.diagnosis.findings[0].onset_epoch if r.diagnosis.findings else None
        style = "red" if r.flagged else "green"
        table.add_row(r.source, f"[{style}]{r.diagnosis.verdict}[/{style}]", str(onset or ""), r.evidence())
    Console().print(table)
    md, js = batch.write_report(results, out)
    typer.echo(f"report: {md} ({js})")
    if html:
        pages = batch.write_run_reports(results, out)
        typer.echo(
            f"per-run HTML / PNG reports: {len(pages)} under {out}/ (e.g. {pages[0]})" if pages else ""
        )
    if mc is not None and write_tags:
        from pipelines import tracking

        for r in run_results:
            tracking.set_tags(mc, r.curve.run, batch.mlflow_tags(r.diagnosis))
            tracking.log_summary(mc, r.curve.run, batch.summary_values(r.diagnosis))
    raise typer.Exit(1 if any(r.flagged for r in results) else 0)


@app.command()
def tune(
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    trials: Annotated[int | None, typer.Option(min=1, help="trials (default: tune.n_trials)")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL, e.g. sqlite:///optuna.db")] = None,
) -> None:
    """Optuna search around ``train`` on the prepared data; trials are pruned by CurvePruner (forecast,
    divergence, not learning, stall) with the reason."""
    from pipelines.prepare import load_split
    from pipelines.steps import load_train_data
    from pipelines.tune import tune as run_tune

    _setup_logging()
    p = _params(params, profile, set_)
    with _input_errors():
        data, _ = load_train_data(p)
        test = load_split(p.paths.prepared_dir, "test")
    try:
        result = run_tune(p, data, n_trials=trials, test=(test.x, test.y), storage=storage)
    except ValueError as exc:
        _fail(exc)
    for t in result.trials:
        why = f"  pruned: {t.pruned_because}" if t.pruned_because else ""
        typer.echo(f"trial {t.number}: {t.state:<8} value={t.value} epochs={t.epochs_run} {t.params}{why}")
    test_text = f"{result.test_accuracy:.4f}" if result.test_accuracy is not None else "n/a"
    typer.echo(
        f"best: trial {result.best_number}, val_accuracy {result.best_val_accuracy:.4f} with "
        f"{result.best_params}; test accuracy {test_text}; epochs {result.epochs_spent} "
        f"(without pruning: {result.epochs_without_pruning})"
    )
    if result.optimism is not None:
        typer.secho(result.optimism.message, fg="yellow")


@app.command("tune-ui")
def tune_ui(
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 8080,
) -> None:
    """Serve optuna-dashboard on the tuning studies (for ``make tune-ui``), bound to 127.0.0.1.

    The storage is the ``tune`` flow's: ``CURVEWATCH_OPTUNA_STORAGE``, else the SQLite file under
    ``paths.tune_dir``."""
    from pipelines.steps import optuna_storage_url
    from pipelines.tune import serve_dashboard

    p = _params(params, profile, set_)
    storage = optuna_storage_url(p)
    sqlite_file = Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None
    where = sqlite_file or "CURVEWATCH_OPTUNA_STORAGE"  # a server URL may hold a password: not printed
    typer.echo(f"optuna-dashboard on {where}: http://127.0.0.1:{port}/dashboard (Ctrl-C stops it)")
    if sqlite_file is not None and (not sqlite_file.is_file() or sqlite_file.stat().st_size == 0):
        typer.echo("no tuning study there yet: `make tune` (curvewatch flow tune) makes one")
    try:
        serve_dashboard(storage, port=port)
    except (OSError, ValueError) as exc:
        _fail(ValueError(f"optuna-dashboard could not serve on 127.0.0.1:{port}: {exc}"), code=2)


@app.command("ui-url")
def ui_url(
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    base: Annotated[
        str | None, typer.Option(help="the MLflow UI's address (default: the tracking server, else :5000)")
    ] = None,
) -> None:
    """Print the link to the experiment's runs table in the "curvewatch diagnosis" view (for ``make ui``)."""
    from pipelines import tracking

    p = _params(params, profile, set_)
    mc = tracking.client()
    exp_id = tracking.ensure_experiment(mc, p.tracking.experiment)
    typer.echo(tracking.run_table_url(base or tracking.ui_base_url(mc.tracking_uri), exp_id))


def ensure_prefect_server() -> str:
    """Point Prefect at ``$PREFECT_API_URL``, or start/reuse the local server (``infra/prefect-server.sh``).

    Must run before Prefect is imported, since Prefect reads its settings from the environment.

    Raises:
        typer.Exit: the local server could not be started (its log is printed by the script).
    """
    import os
    import subprocess

    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    root = Path(__file__).resolve().parent.parent
    script = root / "infra" / "prefect-server.sh"
    os.environ.setdefault("PREFECT_HOME", str(root / ".prefect"))
    env = dict(os.environ, VENV=str(Path(sys.executable).parent.parent))
    if subprocess.run(["bash", str(script), "start"], env=env).returncode != 0:
        typer.secho(f"could not start the local Prefect server with {script}", fg="red", err=True)
        raise typer.Exit(1)
    url = subprocess.run(["bash", str(script), "url"], env=env, capture_output=True, text=True).stdout.strip()
    os.environ["PREFECT_API_URL"] = url
    return url


@app.command("tune-worker", hidden=True)
def tune_worker(
    study_name: Annotated[str, typer.Option(help="the shared Optuna study")],
    parent_run_id: Annotated[str, typer.Option(help="the MLflow parent run of the study")],
    experiment_id: Annotated[str, typer.Option(help="the MLflow experiment id")],
    data_version: Annotated[str, typer.Option(help="DVC content hash of the data")] = "unknown",
    worker: Annotated[int, typer.Option(min=0, help="this worker's index (seeds its sampler)")] = 0,
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
) -> None:
    """One parallel tuning worker (started by the ``tune`` flow): trials until ``tune.n_trials``
    of the study are complete or pruned; workers of one study are given different ``--worker``
    indices, so that their samplers draw different configurations. The storage URL comes from
    ``CURVEWATCH_OPTUNA_STORAGE`` (never the command line: it may hold a password), else the SQLite
    file under ``paths.tune_dir``."""
    from pipelines import heap
    from pipelines.steps import TuneStudy, optuna_storage_url, run_tune_worker

    _setup_logging()
    heap.freeze_imported(preload=("mlflow", "keras"))  # imported with collection off, then frozen
    p = _params(params, profile, set_)
    study = TuneStudy(parent_run_id, experiment_id, study_name, optuna_storage_url(p), data_version)
    run_tune_worker(p, study, worker=worker)


@flow_app.command("tune")
def flow_tune(
    params: ParamsOpt = Path("params.yaml"), profile: ProfileOpt = None, set_: SetOpt = None
) -> None:
    """Run the Prefect flow ``tune`` (Optuna trials in MLflow, best trial gated); print its summary."""
    _params(params, profile, set_)  # a bad search space fails here, before Prefect or any trial starts
    ensure_prefect_server()
    from flows.tune import tune as tune_flow
    from pipelines.fetch import DataError
    from pipelines.steps import GateFailed, StageError

    # As flow retrain: missing or unreadable data exits 2, a failed gate 3, any other stage
    # refusal (a failed validation, a held lock) or bad value 1, each in one line.
    with _input_errors():
        try:
            summary = tune_flow(params_path=str(params), profile=profile, overrides=list(set_ or []))
        except DataError:
            raise  # exit 2, above
        except GateFailed as exc:
            _fail(exc, code=3)
        except (StageError, ValueError) as exc:
            _fail(exc)
    typer.echo(summary.render())


@flow_app.command("retrain")
def flow_retrain(
    params: ParamsOpt = Path("params.yaml"),
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="retrain even when data version and params are unchanged")
    ] = False,
) -> None:
    """Run the Prefect flow ``retrain`` end to end and print its summary (training is skipped when
    the data version and params equal the last successful run's, unless --force)."""
    _params(params, profile, set_)  # fail fast on a bad params file, before Prefect starts
    ensure_prefect_server()
    from flows.retrain import RetrainSummary, run_retrain
    from pipelines.steps import GateFailed, StageError, ValidationFailed
    from pipelines.versioning import VersioningError

    # Missing or unreadable data (the image folder, a SHA-256 mismatch) exits 2, as the stage
    # commands do; a failed gate 3; a failed validation 1 with the summary; any other stage
    # refusal (a held training lock) or a DVC failure (a dvc push that failed) 1, in one line.
    with _input_errors():
        try:
            summary = run_retrain(
                params_path=str(params), profile=profile, overrides=list(set_ or []), force=force
            )
        except ValidationFailed as exc:
            failed = RetrainSummary(validation_passed=False, validation_message=str(exc))
            typer.echo(failed.render())
            raise typer.Exit(1) from exc
        except GateFailed as exc:
            _fail(exc, code=3)
        except (StageError, VersioningError) as exc:
            _fail(exc)
    typer.echo(summary.render())


@app.command("migrate-store")
def migrate_store_cmd(
    to: Annotated[
        str | None, typer.Option("--to", help="destination tracking URI (default: $MLFLOW_TRACKING_URI)")
    ] = None,
    from_: Annotated[
        str | None, typer.Option("--from", help="source tracking URI (default: sqlite:///./mlflow.db)")
    ] = None,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="copy only this experiment (repeatable)")
    ] = None,
) -> None:
    """Copy runs, logged models and registered models from the local SQLite store to a tracking server.

    Run it again to copy only what is new (copies are tagged ``curvewatch.migrated_from``).
    """
    import os

    from pipelines.migrate_store import migrate_store
    from pipelines.tracking import TrackingUnavailable

    src = from_ or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
    dst = to or os.environ.get("MLFLOW_TRACKING_URI")
    if not dst:
        _fail(ValueError("migrate-store: give --to URI or set MLFLOW_TRACKING_URI to the tracking server"), 2)
    if src.startswith("sqlite:///") and not Path(src.removeprefix("sqlite:///")).exists():
        _fail(FileNotFoundError(f"migrate-store: no SQLite store at {src.removeprefix('sqlite:///')}"), 2)
    try:
        result = migrate_store(src, dst, experiments=experiment, echo=typer.echo)
    except (ValueError, TrackingUnavailable) as exc:
        _fail(exc, 2)
    typer.echo(
        f"copied {result.runs} runs ({result.runs_skipped} already there), {result.logged_models} logged "
        f"models and {result.model_versions} model versions from {src} to {dst}"
    )
