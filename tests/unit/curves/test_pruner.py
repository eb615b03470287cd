"""CurvePruner on synthetic intermediate values in real Optuna studies (in memory and SQLite)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from pipelines.curves.pruner import CurvePruner, ratio_forecast

BUDGET = 30


def curve(
    top: float, start: float = 0.3, tau: float = 4.0, noise: float = 0.003, seed: int = 0
) -> list[float]:
    """A saturating val_accuracy curve: epochs 1..BUDGET, ``start`` -> ``top`` with time constant ``tau``."""
    rng = np.random.default_rng(seed)
    e = np.arange(1, BUDGET + 1)
    return list(top - (top - start) * np.exp(-(e - 1) / tau) + rng.normal(0, noise, e.size))


def run(study: optuna.Study, values: list[float], first_step: int = 1) -> optuna.trial.FrozenTrial:
    """Report ``values`` epoch by epoch until pruned; complete with the best value otherwise."""
    trial = study.ask()
    for i, v in enumerate(values):
        trial.report(v, step=first_step + i)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return study.trials[trial.number]
    finite = [v for v in values if math.isfinite(v)]
    study.tell(trial, max(finite) if study.direction.name == "MAXIMIZE" else min(finite))
    return study.trials[trial.number]


def study_with(pruner: CurvePruner, tops=(0.86, 0.88, 0.90), direction="maximize", **kwargs):
    study = optuna.create_study(direction=direction, pruner=pruner)
    for i, top in enumerate(tops):
        t = run(study, kwargs.get("make", curve)(top, seed=100 + i))
        assert t.state == optuna.trial.TrialState.COMPLETE  # the startup trials themselves run to the end
    return study


@pytest.mark.parametrize(
    ("tops", "earliest", "latest"),
    [
        # 3 completed trials: the early forecast's prior (factor exp(0.5) either way) still
        # dominates their spread, and the family forecast may prune only when it agrees.
        ((0.86, 0.88, 0.90), 6, 20),
        # 8 completed trials: their own spread decides, long before the 30-epoch budget.
        ((0.86, 0.865, 0.87, 0.875, 0.88, 0.885, 0.89, 0.90), 4, 12),
    ],
)
def test_hopeless_trial_is_pruned_by_the_forecast_sooner_the_more_trials_completed(tops, earliest, latest):
    study = study_with(CurvePruner(BUDGET, num_classes=10), tops=tops)
    t = run(study, curve(0.75, seed=1))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "forecast"
    epoch = t.user_attrs["pruned_epoch"]
    assert earliest <= epoch <= latest, epoch
    reason = t.user_attrs["pruned_because"]
    assert reason.startswith(f"stopped at epoch {epoch}:")
    assert "P(beating the best completed trial, 0.9" in reason and "< 0.05" in reason


def test_a_trial_that_will_beat_the_best_runs_to_the_end():
    study = study_with(CurvePruner(BUDGET, num_classes=10))
    # Starts lower and climbs slower than the incumbents, but ends above them.
    t = run(study, curve(0.93, start=0.2, tau=6.0, seed=2))
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert study.best_trial.number == t.number
    assert "pruned_because" not in t.user_attrs


def test_close_competitor_is_not_pruned():
    # Within the noise of the best: some remaining epoch may well beat it.
    study = study_with(CurvePruner(BUDGET, num_classes=10))
    t = run(study, curve(0.899, seed=3))
    assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("pruned_because")


def test_no_forecast_prune_before_startup_trials_or_warmup():
    pruner = CurvePruner(BUDGET, num_classes=10, n_startup_trials=4, use_diagnosis=False)
    study = study_with(pruner)  # only 3 completed: no target yet
    t = run(study, curve(0.75, seed=1))
    assert t.state == optuna.trial.TrialState.COMPLETE

    pruner = CurvePruner(BUDGET, num_classes=10, n_warmup_steps=12, use_diagnosis=False)
    study = study_with(pruner)
    t = run(study, curve(0.75, seed=1))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_epoch"] == 12


def test_interval_steps_checks_only_every_nth_epoch_after_warmup():
    pruner = CurvePruner(BUDGET, num_classes=10, n_warmup_steps=5, interval_steps=4, use_diagnosis=False)
    study = study_with(pruner)
    t = run(study, curve(0.75, seed=1))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert (t.user_attrs["pruned_epoch"] - 5) % 4 == 0


def test_trial_already_at_the_target_is_never_pruned():
    study = study_with(CurvePruner(BUDGET, num_classes=10, use_diagnosis=False))
    # Jumps above the best at once, then sags: its forecast at the budget is below the target,
    # but it has already beaten it (its value is the best epoch).
    values = [0.5, 0.7, 0.85, 0.95] + [0.80] * (BUDGET - 4)
    t = run(study, values)
    assert t.state == optuna.trial.TrialState.COMPLETE
    assert t.value == pytest.approx(0.95)


def test_target_quantile_lowers_the_bar():
    tops = (0.80, 0.82, 0.84, 0.86, 0.90)
    # A narrower early-forecast prior than the default, so that 5 completed trials can call it.
    best_bar = study_with(CurvePruner(BUDGET, num_classes=10, ratio_prior_sd=0.3), tops=tops)
    assert run(best_bar, curve(0.855, seed=4)).state == optuna.trial.TrialState.PRUNED
    median_bar = study_with(
        CurvePruner(BUDGET, num_classes=10, ratio_prior_sd=0.3, target_quantile=0.5), tops=tops
    )
    t = run(median_bar, curve(0.855, seed=4))
    assert t.state == optuna.trial.TrialState.COMPLETE


def test_nan_value_prunes_at_once_as_divergence():
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(BUDGET))
    t = run(study, [0.3, 0.4, float("nan"), 0.5])
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "divergence"
    assert t.user_attrs["pruned_epoch"] == 3
    assert "NaN/inf" in t.user_attrs["pruned_because"]


def test_nan_prunes_even_the_study_best_and_every_decision_names_the_target():
    pruner = CurvePruner(BUDGET, num_classes=10)
    study = study_with(pruner, tops=(0.7,))
    trial = study.ask()
    for step, value in enumerate([0.6, 0.75, float("nan")], start=1):
        trial.report(value, step=step)
    decision = pruner.decide(study, study.trials[trial.number])
    # Its best (0.75) beats the target, yet its weights are gone: pruned, and the target is given.
    assert (decision.prune, decision.rule, decision.target) == (
        True,
        "divergence",
        pytest.approx(0.7, abs=0.01),
    )
    last = study.ask()
    for step, value in enumerate(curve(0.5, seed=9), start=1):
        last.report(value, step=step)
    at_budget = pruner.decide(study, study.trials[last.number])
    assert not at_budget.prune and at_budget.target == decision.target  # the last epoch: never pruned


def test_not_learning_is_pruned_without_any_completed_trial():
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(BUDGET, num_classes=10))
    rng = np.random.default_rng(5)
    t = run(study, list(0.1 + rng.normal(0, 0.002, BUDGET).clip(-0.002, 0.0)))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "not_learning"
    assert t.user_attrs["pruned_epoch"] < 12
    assert "not learning" in t.user_attrs["pruned_because"]


def test_low_stall_is_pruned_without_a_target_but_a_sound_convergence_completes():
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(BUDGET, num_classes=10))
    rng = np.random.default_rng(6)
    stalled = [0.2 + 0.05 * e for e in range(5)] + list(0.42 + rng.normal(0, 0.003, BUDGET - 5))
    t = run(study, stalled)
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "plateau"
    # A healthy run that converges high is the study's first result: it must complete.
    t = run(study, curve(0.9, tau=3.0, seed=7))
    assert t.state == optuna.trial.TrialState.COMPLETE


def test_converged_below_the_target_is_pruned_by_plateau_or_forecast():
    study = study_with(CurvePruner(BUDGET, num_classes=10, n_warmup_steps=25))  # forecast held back
    t = run(study, curve(0.80, tau=2.0, seed=8))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "plateau"
    assert "flat at" in t.user_attrs["pruned_because"]
    assert "P(beating the best completed trial, 0.9" in t.user_attrs["pruned_because"]
    assert t.user_attrs["pruned_epoch"] < 25


def test_minimisation_prunes_the_high_loss_trial():
    def loss_curve(bottom: float, seed: int) -> list[float]:
        return [2.3 - v for v in curve(2.3 - bottom, start=0.0, seed=seed)]

    study = optuna.create_study(direction="minimize", pruner=CurvePruner(BUDGET, num_classes=10))
    for i, bottom in enumerate((0.35, 0.32, 0.30)):
        assert run(study, loss_curve(bottom, 10 + i)).state == optuna.trial.TrialState.COMPLETE
    t = run(study, loss_curve(0.6, 14))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert "val_loss forecast" in t.user_attrs["pruned_because"]
    assert run(study, loss_curve(0.27, 15)).state == optuna.trial.TrialState.COMPLETE


def test_zero_based_steps_are_read_as_epochs():
    study = study_with(CurvePruner(BUDGET, num_classes=10, n_warmup_steps=8, use_diagnosis=False))
    t = run(study, curve(0.75, seed=1), first_step=0)
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_epoch"] == max(t.intermediate_values) + 1 >= 8


def test_decide_has_no_side_effects_and_reports_the_probability():
    pruner = CurvePruner(BUDGET, num_classes=10)
    study = study_with(pruner)
    trial = study.ask()
    for e, v in enumerate(curve(0.75, seed=1)[:20], start=1):
        trial.report(v, step=e)
    frozen = study.trials[trial.number]
    decision = pruner.decide(study, frozen)
    assert decision.prune and decision.rule == "forecast" and decision.epoch == 20
    assert decision.probability is not None and decision.probability < 0.05
    assert decision.target == pytest.approx(max(t.value for t in study.trials if t.value is not None))
    assert study.trials[trial.number].user_attrs == {}


def test_reason_persists_in_an_rdb_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(
        direction="maximize", pruner=CurvePruner(BUDGET, num_classes=10), storage=storage, study_name="s"
    )
    for i, top in enumerate((0.86, 0.88, 0.90)):
        run(study, curve(top, seed=100 + i))
    run(study, curve(0.75, seed=1))
    loaded = optuna.load_study(study_name="s", storage=storage)
    pruned = [t for t in loaded.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == 1 and pruned[0].user_attrs["pruned_because"].startswith("stopped at epoch")


def test_the_last_epoch_is_never_pruned():
    pruner = CurvePruner(BUDGET, num_classes=10)
    study = study_with(pruner)
    trial = study.ask()
    for e, v in enumerate(curve(0.75, seed=1), start=1):
        trial.report(v, step=e)
    assert not pruner.decide(study, study.trials[trial.number]).prune


def test_a_far_slower_trial_is_pruned_by_the_early_forecast_before_the_families_can_fit():
    study = study_with(CurvePruner(BUDGET, num_classes=10))
    t = run(study, curve(0.5, start=0.1, tau=4.0, seed=9))
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_rule"] == "forecast"
    epoch = t.user_attrs["pruned_epoch"]
    assert 3 <= epoch < 8, epoch  # before the family forecast has its 8 values
    reason = t.user_attrs["pruned_because"]
    assert f"from 3 completed trials' curves after epoch {epoch}" in reason
    assert "P(beating the best completed trial, 0.9" in reason


def test_early_forecast_waits_for_the_warmup_and_for_the_families_without_a_bound():
    # The same slow trial with 2 warm-up epochs more: not before them.
    study = study_with(CurvePruner(BUDGET, num_classes=10, n_warmup_steps=4))
    t = run(study, curve(0.5, start=0.1, tau=4.0, seed=9))
    assert t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["pruned_epoch"] >= 4
    # A maximised metric outside [0, 1] has no known bound: no early forecast, the families from
    # their sixth value on.
    study = optuna.create_study(direction="maximize", pruner=CurvePruner(BUDGET, use_diagnosis=False))
    for i, top in enumerate((0.86, 0.88, 0.90)):
        run(study, [100 * v for v in curve(top, seed=100 + i)])
    t = run(study, [100 * v for v in curve(0.5, start=0.1, tau=4.0, seed=9)])
    assert t.state == optuna.trial.TrialState.PRUNED
    assert t.user_attrs["pruned_epoch"] >= 6
    assert "(95%) at epoch 30" in t.user_attrs["pruned_because"]


def test_a_trial_that_only_ties_the_best_is_not_protected():
    pruner = CurvePruner(BUDGET, num_classes=10, use_diagnosis=False)
    study = study_with(pruner)
    target = study.best_value

    def decision_at_epoch_20(top: float):
        # Reaches ``top`` at epoch 10, then settles 5 points below the best.
        trial = study.ask()
        values = list(np.linspace(0.5, top, 10)) + [target - 0.05] * 10
        for e, v in enumerate(values, start=1):
            trial.report(float(v), step=e)
        return pruner.decide(study, study.trials[trial.number])

    # A tie cannot change Optuna's best trial: its forecast is checked like any other trial's
    # (a strict `>=` protection skipped it).
    tie = decision_at_epoch_20(target)
    assert tie.probability is not None and tie.target == target
    # One just above it is the study's best: protected, no forecast made.
    above = decision_at_epoch_20(target + 0.001)
    assert not above.prune and above.probability is None and above.target == target


def test_ratio_forecast_matches_the_student_t_by_hand():
    from scipy.stats import t as student_t

    # Two completed accuracy curves; at epoch 2 their best distances to 1.0 are 0.4 and 0.5, and
    # their final best distances 0.2 and 0.3: log ratios log(0.5) and log(0.6).
    completed = [
        (np.array([1, 2, 3, 4]), np.array([0.5, 0.6, 0.7, 0.8])),
        (np.array([1, 2, 3, 4]), np.array([0.4, 0.5, 0.65, 0.7])),
    ]
    r = np.log([0.5, 0.6])
    nu = 3.0 + 2 - 1
    scale = math.sqrt((3.0 * 0.3**2 + np.sum((r - r.mean()) ** 2)) / nu * 1.5)
    # A trial at 0.55 by epoch 2 (distance 0.45) beating 0.8 (distance 0.2):
    expected = student_t.cdf((math.log(0.2) - math.log(0.45) - r.mean()) / scale, nu)
    f = ratio_forecast(completed, 2, 0.55, 0.8, True, 0.3, 3.0)
    assert f is not None and f.n == 2 and f.dof == nu
    assert f.probability == pytest.approx(expected, rel=1e-9)
    assert f.value == pytest.approx(1 - 0.45 * math.exp(r.mean()))
    # The same in loss orientation: distances are the losses themselves.
    losses = [(e, 1.0 - v) for e, v in completed]
    g = ratio_forecast(losses, 2, 0.45, 0.2, False, 0.3, 3.0)
    assert g is not None and g.probability == pytest.approx(expected, rel=1e-9)
    # A wider prior: less sure, so a higher chance for the laggard.
    assert ratio_forecast(completed, 2, 0.55, 0.8, True, 0.6, 3.0).probability > f.probability
    # No completed curve past the epoch, or a value without a known bound: no forecast.
    assert ratio_forecast(completed, 4, 0.55, 0.8, True, 0.3, 3.0) is None
    assert ratio_forecast(completed, 2, 55.0, 0.8, True, 0.3, 3.0) is None
    assert (
        ratio_forecast([(np.array([1, 2, 3]), np.array([0.5, 1.5, 2.0]))], 2, 0.5, 0.8, True, 0.3, 3.0)
        is None
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"epoch_budget": 1}, "epoch_budget"),
        ({"epoch_budget": float("inf")}, "epoch_budget"),
        ({"epoch_budget": float("nan")}, "epoch_budget"),
        ({"epoch_budget": "30"}, "epoch_budget"),
        ({"epoch_budget": 10, "threshold": 0.0}, "threshold"),
        ({"epoch_budget": 10, "threshold": 1.0}, "threshold"),
        ({"epoch_budget": 10, "target_quantile": 0.0}, "target_quantile"),
        ({"epoch_budget": 10, "n_startup_trials": 0}, "n_startup_trials"),
        ({"epoch_budget": 10, "n_warmup_steps": 0}, "n_warmup_steps"),
        ({"epoch_budget": 10, "interval_steps": 1.5}, "interval_steps"),
        ({"epoch_budget": 10, "family_warmup_steps": 5}, "family_warmup_steps"),
        ({"epoch_budget": 10, "ratio_prior_sd": 0.0}, "ratio_prior_sd"),
        ({"epoch_budget": 10, "ratio_prior_dof": -1.0}, "ratio_prior_dof"),
        ({"epoch_budget": 10, "metric": "accuracy"}, "metric"),
        ({"epoch_budget": 10, "num_classes": 1}, "num_classes"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CurvePruner(**kwargs)


@pytest.mark.parametrize(
    ("prior_sd", "prior_dof", "field"), [(0.0, 3.0, "prior_sd"), (0.5, 0.0, "prior_dof")]
)
def test_ratio_forecast_refuses_a_prior_that_is_not_positive(prior_sd, prior_dof, field):
    completed = [(np.arange(1, 11), np.linspace(0.5, 0.9, 10))]
    with pytest.raises(ValueError, match=field):
        ratio_forecast(completed, 3, 0.6, 0.9, True, prior_sd, prior_dof)


def test_multi_objective_is_refused():
    # Called directly: Optuna's Trial.should_prune() refuses a multi-objective study itself, before
    # any pruner is asked, so going through it would pass whatever CurvePruner does.
    pruner = CurvePruner(BUDGET)
    study = optuna.create_study(directions=["maximize", "minimize"], pruner=pruner)
    trial = study.ask()
    with pytest.raises(NotImplementedError, match="single-objective"):
        pruner.prune(study, study.trials[trial.number])


def test_from_the_family_warmup_the_probability_is_the_mean_of_both_forecasts():
    # What is under test is the mixing only: from which epoch the two forecasts are averaged, and
    # with equal weights. Each forecast is rebuilt from the pruner's own helpers, so their values
    # are tested elsewhere (ratio_forecast and the family forecast above), not here.
    from pipelines.curves.pruner import _forecast

    pruner = CurvePruner(BUDGET, num_classes=10, use_diagnosis=False)
    study = study_with(pruner)
    target = study.best_value
    for epochs, mixed in ((7, False), (8, True), (12, True)):
        trial = study.ask()
        values = curve(0.8, seed=5)[:epochs]
        for e, v in enumerate(values, start=1):
            trial.report(v, step=e)
        decision = pruner.decide(study, study.trials[trial.number])
        prior_sd = 0.5 * math.sqrt((BUDGET - epochs) / (BUDGET - 1))  # shrinks with the epochs left
        early = ratio_forecast(
            pruner._completed_curves(study), epochs, max(values), target, True, prior_sd, 3.0
        ).probability
        fit = _forecast(tuple(range(1, epochs + 1)), tuple(values), BUDGET, True)
        family = pruner._probability(fit, epochs, target, True)
        expected = 0.5 * (early + family) if mixed else early
        assert decision.probability == pytest.approx(expected), epochs
        assert early != pytest.approx(family)  # the two forecasts differ: the mixture is seen
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
