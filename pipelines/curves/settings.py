"""The diagnosis engine's thresholds, in one frozen config (``params.yaml`` section ``diagnose``).

Most thresholds are a significance level or a multiple of a noise SD that the engine measures on
the curve itself (:func:`pipelines.curves.noise.estimate_noise`) or derives from the validation
set's size (binomial SD of an accuracy on n examples; n read off the accuracy grid when unknown);
the others are shares of the curve's own level or gain (``val_swing_step``, ``overfit_rise``,
``live_loss_fall``, ``slow_late_share``, ...), epoch counts (``min_plateau_epochs``,
``live_patience``, ...), and one error level (``underfit_error``: a training error that no fit
leaves). None is an absolute ``min_delta`` on the monitored metric. The detectors receive this
object, never long argument lists.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DiagnoseConfig(BaseModel):
    """Thresholds of :func:`pipelines.curves.diagnose.diagnose` and the live stop.

    Attributes:
        min_plateau_epochs: epochs without improvement beyond noise that make a plateau (>= 1).
        alpha: one-sided significance level of the trend / plateau tests, in (0, 0.5).
        low_level_fraction: a plateau less than this share of the way from chance to 1.0 is "low".
        stall_onset_fraction: a plateau that began in this first share of the horizon can be a
            premature stall.
        stall_k: noise SDs the projected continuation of the climb must exceed the plateau by for
            it to be a premature stall.
        blowup_factor: a training loss above this multiple of its minimum at the end is divergence
            (``UNLEARN_LOSS_FACTOR``, 2.0, instead when the training accuracy fell too).
        swing_z: a swinging val_loss counts as oscillation only when val_accuracy's epoch-to-epoch
            scatter exceeds this many binomial SDs of an accuracy on the validation set (on a
            fixed set, sound runs scatter by 0.3-0.5 binomial SDs: measured on the fixtures).
        gap_widening_sd: binomial SDs of an accuracy on the validation set (and at least 3 noise
            SDs) the train-validation accuracy gap must grow by over a plateau to make it a stall.
        oscillation_ratio: noise SD / trend extent of val_loss above which it swings (the
            training loss swings at half of it, with its sampling scatter as a further bar).
        val_swing_step: after the first fifth of the run, val_loss's median epoch-to-epoch step
            as a share of its median level below which its swings are too small to be an
            optimiser overshooting, however large against a flat trend (a converged SGD CNN moving
            2% of its val_loss an epoch; a warm-restart cycle's 2%).
        late_swing_step: after the first fifth of the run, a training loss whose median
            epoch-to-epoch step is at least this share of its median level (and beyond its
            sampling scatter) swings, when its steps also change direction often enough
            (``late_swing_changes``): a converged mean over the training set does not move by a
            tenth of itself each epoch.
        late_swing_changes: share of those steps that must change direction (fitted on the tune
            split: 0.3, 0.35 and 0.4 tried).
        overfit_rise: share of its own level val_loss must rise above its minimum, sustained over
            the last ``min_plateau_epochs`` epochs, to be overfitting (smaller rises leave the best
            epoch's choice to noise).
        slow_late_share: a run still improving beyond noise at its end whose last third made at
            least this share of its total improvement is too slow (an exponential approach with a
            time constant of a third of the run makes 9% there: it has not converged).
        slow_down_share: share of the second half's epochs that must lower val_loss for a run to
            be too slow (the loss still falling most of the time).
        slow_short_fall: share of its level val_loss must have lost over the last half of a run
            too short for thirds (5 to 8 epochs) for it to be too slow: between 2.8%, the largest
            fall among the corpus's short runs at chance or barely learning that fell at their
            first half's pace, and 8.7%, the smallest among its too-slow short runs (both splits
            were inspected).
        improving_z: OLS slope z over the last third above which a curve is "still improving".
        underfit_error: error (1 - the better of training and validation accuracy) at or above
            which a model that fits its training set no better than its validation set underfits,
            when its levels are not low against chance or a baseline.
        loss_sd_ratio: standard deviation of a per-example cross-entropy as a multiple of its mean
            (heavy-tailed: most examples near 0, a few wrong ones large): a mean loss over n
            training examples scatters by about ``loss_sd_ratio`` x level / sqrt(n), the scale
            below which a training loss's swings (oscillation) are sampling.
        overfit_sd_ratio: a val_loss rise (overfitting) must exceed ``overfit_sd_ratio`` x its
            level / sqrt(n_val). Smaller than ``loss_sd_ratio``: every epoch scores the same
            validation examples, so their draw shifts all epochs alike and what moves between
            epochs is the model (fitted on the tune split: 1.0 and 1.5 alike, 2.0 missed a
            val_loss rising 16% over 10 epochs on 142 examples). Also the least median step of a
            swinging val_loss, as a share of its level, times sqrt(n_val) (oscillation).
        live_loss_fall: share of its level the validation loss must be on course to lose by the
            budget (at its recent pace, falling beyond noise) for the live stop to wait; also the
            least share of its level val_loss must have lost over the run for ``too_slow``.
        live_patience: epochs without improvement beyond noise (on val_accuracy AND val_loss)
            before the live stop may fire (twice that for a convergence, a stall read only as
            premature or underfit, or an oscillating run); the plateau test decides earlier when it can.
        live_val_loss_patience: the most epochs the live stop waits after a new val_loss best
            (of any size); default 5, the patience of ``EarlyStopping(monitor="val_loss",
            patience=5)``, the stop it is measured against (``benchmarks/early_stop.py``). A stall
            read only as premature or underfit (dropout, augmentation) waits its 2 x
            ``live_patience`` regardless. Uncapped, a convergence's 2 x ``live_patience`` (6)
            stopped the tune split's stalls later than that EarlyStopping on 84 of 194 runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_plateau_epochs: int = Field(3, ge=1)
    alpha: float = Field(0.01, gt=0.0, lt=0.5)
    low_level_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    stall_onset_fraction: float = Field(0.5, gt=0.0, le=1.0)
    stall_k: float = Field(5.0, gt=0.0)
    blowup_factor: float = Field(3.0, gt=1.0)
    swing_z: float = Field(1.0, gt=0.0)
    gap_widening_sd: float = Field(4.0, gt=0.0)
    oscillation_ratio: float = Field(0.065, gt=0.0)
    val_swing_step: float = Field(0.025, ge=0.0)
    late_swing_step: float = Field(0.1, gt=0.0)
    late_swing_changes: float = Field(0.3, gt=0.0, le=1.0)
    overfit_rise: float = Field(0.1, gt=0.0)
    loss_sd_ratio: float = Field(2.0, gt=0.0)
    overfit_sd_ratio: float = Field(1.5, gt=0.0)
    slow_late_share: float = Field(0.1, gt=0.0, lt=1.0)
    slow_down_share: float = Field(0.7, gt=0.0, le=1.0)
    slow_short_fall: float = Field(0.05, gt=0.0, lt=1.0)
    improving_z: float = Field(2.0, gt=0.0)
    underfit_error: float = Field(0.15, gt=0.0, lt=1.0)
    live_patience: int = Field(3, ge=1)
    live_loss_fall: float = Field(0.03, gt=0.0)
    live_val_loss_patience: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> DiagnoseConfig:
        if self.live_patience < self.min_plateau_epochs:
            raise ValueError(
                f"live_patience ({self.live_patience}) must be >= min_plateau_epochs "
                f"({self.min_plateau_epochs}): the live stop cannot fire before a plateau is confirmed"
            )
        return self


DEFAULT = DiagnoseConfig()
