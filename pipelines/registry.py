"""Model registry policy: which runs become a registered model version, which version becomes the
champion, and the texts that say why (run description, version description and tags).

The decisions are pure functions of the diagnosis, the regression gate's result and the promotion
rule in ``params.yaml`` (``compare.promotion``, ``compare.margin``); :func:`register_version` and
:func:`apply_policy` (which registers, describes and promotes) are the ones that talk to MLflow;
``pipelines.steps.run_compare`` calls :func:`apply_policy`.

Rules (MLflow docs, "Model Registry": versions, tags, descriptions, aliases):

- a model version is registered only for a run that completed its epochs and whose curves are not
  diagnosed ``divergence`` or ``not_learning`` (:func:`registration_decision`); otherwise the run
  carries the reason and no version exists to be promoted by mistake;
- the ``champion`` alias moves by :func:`promotion_decision` under one of two rules:
  ``significantly_better`` (superiority: the challenger is more accurate on the same test images
  and McNemar's one-sided p for "the challenger is better" is below ``compare.alpha``; a tie,
  p = 1, keeps the champion) or ``not_worse`` (non-inferiority within ``compare.margin``: the
  lower bound of the gate's paired-bootstrap confidence interval of the accuracy difference is at
  least ``-margin``; Piaggio et al., "Reporting of noninferiority and equivalence randomized
  trials", JAMA 2012). Under both rules a gate ``regression`` never promotes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipelines.tracking import GATE_TAG

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient

    from pipelines.curves.gate import GateResult

PROMOTION_RULES = ("significantly_better", "not_worse")
#: Run-relative path of the curvewatch report the run description links to (compare stage).
REPORT_ARTIFACT = "curvewatch/report.html"
#: Verdicts whose model is not worth a registry entry: it learned nothing or blew up.
UNREGISTERED_VERDICTS = frozenset({"divergence", "not_learning"})


@dataclass(frozen=True)
class RegistrationDecision:
    """Whether the run's model gets a registered version, and why (a sentence for the run)."""

    register: bool
    reason: str


def registration_decision(*, completed: bool, verdict: str) -> RegistrationDecision:
    """Register a run's model only when the run completed and did not diverge or fail to learn.

    Args:
        completed: the run trained to the end (early stopping counts as complete; a crash, a
            NaN loss or a kill does not).
        verdict: the curve diagnosis' verdict (``pipelines.curves.diagnose.ORDER``).

    Returns:
        RegistrationDecision; ``reason`` reads ``"not registered: ..."`` when ``register`` is False.
    """
    if not completed:
        return RegistrationDecision(False, "not registered: the run did not complete its training")
    if verdict in UNREGISTERED_VERDICTS:
        what = "diverged" if verdict == "divergence" else "did not learn"
        return RegistrationDecision(
            False, f"not registered: the curves were diagnosed {verdict} (the model {what})"
        )
    return RegistrationDecision(True, f"registered: completed, diagnosed {verdict}")


@dataclass(frozen=True)
class PromotionDecision:
    """What happens to the ``champion`` alias.

    Attributes:
        promote: move the alias to this run's model version.
        code: ``first_champion``, ``promote``, ``keep_champion``, ``regression`` or ``not_registered``.
        rule: the promotion rule applied (``compare.promotion``).
        text: one sentence saying what was decided, on which numbers, under which rule.
    """

    promote: bool
    code: str
    rule: str
    text: str


def _pts(x: float) -> str:
    """Accuracy difference in points, signed: 0.0123 -> '+1.23'."""
    return f"{x * 100:+.2f}"


def promotion_decision(
    gate_result: GateResult,
    *,
    rule: str,
    alpha: float,
    margin: float = 0.0,
    p_better: float | None = None,
    registered: bool = True,
) -> PromotionDecision:
    """Decide whether the challenger's version becomes the champion.

    Args:
        gate_result: the regression gate's result for challenger vs champion
            (:func:`pipelines.curves.gate.gate`); fields used: ``decision``,
            ``challenger_accuracy``, ``champion_accuracy``, ``delta``, ``delta_ci``, ``confidence``,
            ``p_value`` (one-sided, "the challenger is worse").
        rule: ``significantly_better`` or ``not_worse`` (``compare.promotion``).
        alpha: significance level (``compare.alpha``).
        margin: non-inferiority margin in accuracy units (``compare.margin``; 0.005 = half a
            point), used by ``not_worse``.
        p_better: one-sided p-value for "the challenger is better" (the gate run with the roles
            swapped); required by ``significantly_better`` when there is a champion.
        registered: whether the challenger has a registered version at all.

    Returns:
        PromotionDecision.

    Raises:
        ValueError: unknown ``rule``, ``margin`` < 0, or ``p_better`` missing under
            ``significantly_better`` with a champion.
    """
    if rule not in PROMOTION_RULES:
        raise ValueError(f"compare.promotion must be one of {PROMOTION_RULES}, got {rule!r}")
    if margin < 0:
        raise ValueError(f"compare.margin must be >= 0, got {margin}")
    g = gate_result
    ch = g.challenger_accuracy
    if g.decision == "regression" and g.champion_accuracy is not None:
        return PromotionDecision(
            False,
            "regression",
            rule,
            f"champion kept: regression, {ch:.4f} vs champion {g.champion_accuracy:.4f}, one-sided "
            f"p(worse) = {g.p_value:.3g} < {alpha:g} (rule {rule}: a regression is never promoted)",
        )
    if not registered:
        return PromotionDecision(
            False, "not_registered", rule, "champion unchanged: this run has no registered model version"
        )
    if g.champion_accuracy is None:
        return PromotionDecision(
            True,
            "first_champion",
            rule,
            f"first champion: no champion yet, this run ({ch:.4f}) becomes it (rule {rule})",
        )
    cp = g.champion_accuracy
    versus = f"{ch:.4f} vs champion {cp:.4f}"
    if g.decision == "regression":
        return PromotionDecision(
            False,
            "regression",
            rule,
            f"champion kept: regression, {versus}, one-sided p(worse) = {g.p_value:.3g} < {alpha:g} "
            f"(rule {rule}: a regression is never promoted)",
        )
    if rule == "significantly_better":
        if p_better is None:
            raise ValueError("significantly_better needs p_better (the gate with the roles swapped)")
        if ch > cp and p_better < alpha:
            return PromotionDecision(
                True,
                "promote",
                rule,
                f"promoted: significantly better, {versus}, one-sided p(better) = {p_better:.3g} "
                f"< {alpha:g} (rule significantly_better)",
            )
        tie = " (a tie)" if ch == cp else ""
        return PromotionDecision(
            False,
            "keep_champion",
            rule,
            f"champion kept: not significantly better{tie}, {versus}, one-sided p(better) = "
            f"{p_better:.3g} >= {alpha:g} (rule significantly_better)",
        )
    low = g.delta_ci[0] if g.delta_ci is not None else g.delta
    level = f"{g.confidence * 100:.0f}% CI"
    if low is not None and low >= -margin:
        return PromotionDecision(
            True,
            "promote",
            rule,
            f"promoted: not worse within {margin * 100:.2f} points, {versus}, difference "
            f"{_pts(g.delta)} points ({level} from {_pts(low)}) (rule not_worse)",
        )
    return PromotionDecision(
        False,
        "keep_champion",
        rule,
        f"champion kept: may be worse by more than {margin * 100:.2f} points, {versus}, difference "
        f"{_pts(g.delta)} points ({level} from {_pts(low)}) (rule not_worse)",
    )


def gate_summary(gate_result: GateResult) -> str:
    """The gate's own decision with its one-sided p-value ("the challenger is worse"), e.g.
    ``keep_champion (p = 0.41)``; no p without a champion."""
    if gate_result.p_value is None:
        return gate_result.decision
    return f"{gate_result.decision} (p = {gate_result.p_value:.3g})"


def version_tags(
    *,
    verdict: str,
    gate_result: GateResult,
    decision: PromotionDecision,
    data_version: str | None,
    run_name: str | None,
) -> dict[str, str]:
    """Tags of a registered model version: verdict, gate decision (after the promotion rule) and the
    gate's p-value, test accuracy, data version, promotion rule and the run's name."""
    tags = {
        "curvewatch.verdict": verdict,
        GATE_TAG: decision.code,
        "curvewatch.gate.p_value": "" if gate_result.p_value is None else f"{gate_result.p_value:.4g}",
        "curvewatch.test_accuracy": f"{gate_result.challenger_accuracy:.4f}",
        "curvewatch.data_version": data_version or "unknown",
        "curvewatch.promotion_rule": decision.rule,
    }
    if run_name:
        tags["curvewatch.run_name"] = run_name
    return tags


def version_description(
    *,
    verdict: str,
    diagnosis: str,
    gate_result: GateResult,
    decision: PromotionDecision,
    data_version: str | None,
) -> str:
    """Markdown description of a registered model version (shown on its page in the MLflow UI)."""
    return (
        f"**{verdict}**: {diagnosis}\n\n"
        f"Gate: **{decision.code}**, {decision.text}; regression test {gate_summary(gate_result)}.\n\n"
        f"Test accuracy {gate_result.challenger_accuracy:.4f}.\n\n"
        f"Data version: `{data_version or 'unknown'}`."
    )


def run_description(
    *,
    verdict: str,
    plateau_onset_epoch: int | None,
    diagnosis: str,
    gate_result: GateResult,
    registration: RegistrationDecision,
    decision: PromotionDecision,
    model_version: str | None,
    report_link: str,
    best_val_accuracy: float | None = None,
    best_epoch: int | None = None,
) -> str:
    """The run's description (``mlflow.note.content``, shown on its Overview page), markdown.

    The headline metrics (test accuracy, best validation accuracy and its epoch), one paragraph of
    diagnosis, then the gate, the registry decision and a link to the report.
    """
    onset = f" from epoch {plateau_onset_epoch}" if plateau_onset_epoch else ""
    version = f" as version {model_version}" if model_version else ""
    registry = registration.reason + (version if registration.register else "")
    headline = f"test_accuracy **{gate_result.challenger_accuracy:.4f}**"
    if best_val_accuracy is not None:
        at = f" (epoch {best_epoch})" if best_epoch else ""
        headline += f", best val_accuracy **{best_val_accuracy:.4f}**{at}"
    return (
        f"{headline}\n\n"
        f"**curvewatch: {verdict}{onset}.** {diagnosis}\n\n"
        f"**Gate: {decision.code}.** {decision.text}.\n\n"
        f"**Registry:** {registry}.\n\n"
        f"[Full curvewatch report]({report_link})"
    )


def newest_version(mlflow_client: MlflowClient, model_name: str, run_id: str) -> str | None:
    """The newest version of ``model_name`` registered from run ``run_id``, or None when there is none.

    Raises:
        mlflow.exceptions.MlflowException: the registry could not be searched.
    """
    versions = mlflow_client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def existing_version(mlflow_client: MlflowClient, model_name: str, run_id: str) -> str | None:
    """:func:`newest_version`, or None also when the registry could not be searched."""
    from mlflow.exceptions import MlflowException

    try:
        return newest_version(mlflow_client, model_name, run_id)
    except MlflowException:
        return None


def register_version(
    mlflow_client: MlflowClient,
    model_name: str,
    *,
    model_uri: str,
    run_id: str,
    description: str,
    tags: Mapping[str, Any],
    model_id: str | None = None,
) -> str:
    """Create a version of ``model_name`` (creating the registered model first if needed) from the
    logged model ``model_uri``, with its description and tags; returns the version number."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    mv = mlflow_client.create_model_version(
        model_name,
        source=model_uri,
        run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
        description=description,
        model_id=model_id,
    )
    return str(mv.version)


@dataclass(frozen=True)
class RegistryOutcome:
    """What :func:`apply_policy` did.

    Attributes:
        registration: the registration decision.
        decision: the promotion decision.
        version: the run's registered model version (None when not registered).
        promoted: whether the ``champion`` alias now points at ``version`` (with
            ``move_alias=False``: whether it is to).
        run_tags: tags for the run: ``curvewatch.gate`` (the decision code after the promotion
            rule), ``curvewatch.decision`` (its sentence), ``curvewatch.registered``,
            ``curvewatch.promoted`` and the description ``mlflow.note.content``.
    """

    registration: RegistrationDecision
    decision: PromotionDecision
    version: str | None
    promoted: bool
    run_tags: dict[str, str]


def apply_policy(
    mlflow_client: MlflowClient,
    model_name: str,
    *,
    run_info: Mapping[str, Any],
    verdict: str,
    plateau_onset_epoch: int | None,
    diagnosis: str,
    completed: bool,
    gate_result: GateResult,
    p_better: float | None,
    rule: str,
    alpha: float,
    margin: float,
    best_val_accuracy: float | None = None,
    best_epoch: int | None = None,
    move_alias: bool = True,
) -> RegistryOutcome:
    """Register the run's model and move the ``champion`` alias as the policy decides.

    Args:
        mlflow_client: client on the tracking and registry store.
        model_name: the registered model (``tracking.registered_model``).
        run_info: the train stage's ``run.json``: ``run_id``, ``experiment_id``, ``model_uri``,
            ``model_id`` and ``data_version``. A version already registered from this run is
            reused, so re-running the compare stage does not register the same model twice.
        verdict, plateau_onset_epoch, diagnosis: from the curve diagnosis (``diagnosis`` is its
            one-paragraph text).
        completed: the run trained to the end.
        gate_result, p_better, rule, alpha, margin: see :func:`promotion_decision`.
        best_val_accuracy, best_epoch: headline numbers for the run description.
        move_alias: move the alias here; False leaves it to the caller (``RegistryOutcome.promoted``
            and ``version`` say where to), which then moves it after its own writes, last.

    Returns:
        RegistryOutcome; the caller writes ``run_tags`` on the run.
    """
    from pipelines import tracking

    run_id = run_info["run_id"]
    registration = registration_decision(completed=completed, verdict=verdict)
    has_model = bool(run_info.get("model_uri")) or run_info.get("model_version") is not None
    if registration.register and not has_model:
        registration = RegistrationDecision(False, "not registered: no logged model in this run")
    decision = promotion_decision(
        gate_result,
        rule=rule,
        alpha=alpha,
        margin=margin,
        p_better=p_better,
        registered=registration.register,
    )
    version = run_info.get("model_version") or existing_version(mlflow_client, model_name, run_id)
    if registration.register:
        description = version_description(
            verdict=verdict,
            diagnosis=diagnosis,
            gate_result=gate_result,
            decision=decision,
            data_version=run_info.get("data_version"),
        )
        tags = version_tags(
            verdict=verdict,
            gate_result=gate_result,
            data_version=run_info.get("data_version"),
            decision=decision,
            run_name=mlflow_client.get_run(run_id).info.run_name,
        )
        if version is None:
            version = register_version(
                mlflow_client,
                model_name,
                model_uri=run_info["model_uri"],
                model_id=run_info.get("model_id"),
                run_id=run_id,
                description=description,
                tags=tags,
            )
        else:
            # The run's version exists (compare run again: a retry, `dvc repro`, a stricter rule):
            # its tags and description say this gate's decision, not the first one's.
            mlflow_client.update_model_version(model_name, version, description=description)
            for key, value in tags.items():
                mlflow_client.set_model_version_tag(model_name, version, key, str(value))
    promoted = decision.promote and version is not None
    if promoted and move_alias:
        tracking.promote(mlflow_client, model_name, version)
    report_link = tracking.report_url(run_info["experiment_id"], run_id, REPORT_ARTIFACT)
    run_tags = {
        GATE_TAG: decision.code,
        "curvewatch.decision": decision.text if registration.register else registration.reason,
        "curvewatch.registered": f"version {version}" if version else registration.reason,
        "curvewatch.promoted": str(promoted).lower(),
        "mlflow.note.content": run_description(
            verdict=verdict,
            plateau_onset_epoch=plateau_onset_epoch,
            diagnosis=diagnosis,
            gate_result=gate_result,
            registration=registration,
            decision=decision,
            model_version=version,
            report_link=report_link,
            best_val_accuracy=best_val_accuracy,
            best_epoch=best_epoch,
        ),
    }
    return RegistryOutcome(registration, decision, version, promoted, run_tags)
