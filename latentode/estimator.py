"""scikit-learn style estimator: :class:`LatentODERegressor`.

The estimator only orchestrates. Frame validation, time encoding, channel scaling, padding,
mini-batching and prediction queries (forecast grids, horizons, the way back to rows) live in
:mod:`latentode.data`; running the network at query times in :mod:`latentode._predict`; the
network in :mod:`latentode.nn`; the training loop in :mod:`latentode.training`.
"""

from __future__ import annotations

import copy
import functools
import numbers
import os
import warnings
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, ClassVar, Literal, TypeVar, cast

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import metadata_routing
from sklearn.utils.validation import check_is_fitted

from . import data as _data
from . import io as _io
from ._param_validation import (
    Boolean,
    CheckedBy,
    InstanceOf,
    Interval,
    IsCallable,
    Options,
    Pair,
    validate_params,
)
from ._predict import predict_packed
from ._state import FITTED_ATTRIBUTES, FittedState
from .batch import UNLABELLED
from .data.validation import dropped_series_message, external_stacklevel
from .data.validation import fmt_ids as _fmt_ids
from .nn import OBS_WEIGHTINGS, LatentODE
from .nn.dynamics import DYNAMICS_ACTIVATIONS
from .nn.model import POINT_PREDICTIONS, POINT_SAMPLES, POSTERIOR_TIMES
from .nn.readout import READOUT_REACHES, READOUT_SIDES
from .nn.registry import ENCODERS, LIKELIHOODS, READOUTS
from .ode import GRADIENTS, METHODS, ODESolveError
from .training import (
    FORECAST_MODES,
    FORECAST_RANGE,
    History,
    TrainingFailedError,
    calibrate_level,
    calibrate_spread,
    check_callbacks,
    fit_model,
)
from .training import distributed as _distd
from .training.calibration import CALIBRATION_STRUCTURES, DENSITY_OPTIONS
from .training.metrics import REGRESSOR_SCORINGS
from .training.schedule import LR_SCHEDULES, check_lr_schedule
from .uncertainty import check_quantiles, quantile_label
from .utils import (
    draw_seed,
    make_generator,
    resolve_device,
    resolve_n_jobs,
    torch_seeded,
    torch_threads,
)

__all__ = ["LatentODERegressor"]

_SCORE_SAMPLES = 10  # trajectory samples of the IWAE estimate used by ``score``
_DEFAULT_STEP = 0.02  # fixed-step solvers: model-time step when ``step_size=None``
_QUANTILE_SAMPLES = 100  # default posterior samples behind predictive quantiles
# parameters added after the first release, with their defaults (for older pickles)
_ADDED_PARAMS: dict[str, Any] = {"scoring": "loss", "callbacks": None,
                                  "max_steps": 10_000, "n_jobs": None, "decoder_layers": 0,
                                  "likelihood": "gaussian", "obs_df": "learned",
                                  "linear_term": False, "time_scale": None,
                                  "readout": "latent", "readout_aux": 1.0,
                                  "readout_reach": "window", "forecast_share": 0.0,
                                  "forecast_range": FORECAST_RANGE, "weight_decay": 0.0,
                                  "readout_sides": "shared", "mtan_ref_points": 64,
                                  "mtan_embed_dim": None, "dynamics_activation": "tanh",
                                  "forecast_noise": False, "posterior_time": "first",
                                  "input_fences": None,
                                  "calibration_structure": "validation",
                                  "point_prediction": "posterior_mean",
                                  "point_samples": POINT_SAMPLES, "forecast_mode": "swap",
                                  "calibration_density": False, "lr_schedule": None,
                                  "min_lr": None, "weight_averaging": 0.0}

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _with_n_jobs(method: _Method) -> _Method:
    """Run an estimator method with ``n_jobs`` torch threads, restoring the caller's setting."""

    @functools.wraps(method)
    def wrapper(self: LatentODERegressor, *args: Any, **kwargs: Any) -> Any:
        with torch_threads(resolve_n_jobs(getattr(self, "n_jobs", None))):
            return method(self, *args, **kwargs)

    return cast(_Method, wrapper)


def _fit_model(*args: Any, **kwargs: Any) -> History:
    """:func:`latentode.training.fit_model`, its failure worded for the estimator's user.

    ``fit_model`` raises :class:`TrainingFailedError` when every batch of an epoch failed; its
    hints name arguments of ``fit_model`` and say that the model holds the best weights, while the
    estimator exposes other parameters and discards the model of a failed fit.
    """
    try:
        return fit_model(*args, **kwargs)
    except TrainingFailedError as err:
        raise RuntimeError(
            f"Training failed in epoch {err.epoch + 1}: every batch had a non-finite "
            "loss or gradient or a failed ODE solve (the warnings above say which). The "
            "estimator was left as it was (unfitted, or its previous fit). Try a lower lr, a "
            "longer kl_warmup, a larger max_steps if the solver's step budget was exhausted, "
            "or check the data for extreme values."
        ) from err


@dataclass
class _Samples:
    """Internal result of :meth:`LatentODERegressor._predict_samples`.

    Attributes
    ----------
    query : pandas.DataFrame
        The query rows ``[id, time]`` (original units), in output order, with the caller's
        index.
    mean : numpy.ndarray
        ``(S, n_rows, C)`` decoded means per trajectory sample, in original units.
    noise : dict of str to numpy.ndarray
        The observation model's per-channel parameters (``"scale"`` ``(C,)``, the Gaussian's
        standard deviation, and any shape parameter), in original units; the model's
        ``observation.quantiles`` / ``observation.sample`` take them (:meth:`noise_at`, with
        ``gap_factor`` applied) with ``mean``.
    intensity : numpy.ndarray or None
        ``(S, n_rows, C)`` Poisson observation rates per *user* time unit (the time column's
        unit, ``time_encoder_.unit`` for datetimes) when ``poisson_process=True``, else None.
    gap_factor : numpy.ndarray or None
        ``(n_rows, C)`` calibration factor of the noise scale at each row (the model's fitted
        ``gap_spread``; already applied to the spread of ``mean``), else None.
    tail_df : numpy.ndarray or None
        ``(n_rows, C)`` calibrated tails at each row (the fitted ``gap_spread``'s), else None.
    """

    query: pd.DataFrame
    mean: np.ndarray
    noise: dict[str, np.ndarray]
    intensity: np.ndarray | None = None
    gap_factor: np.ndarray | None = None
    tail_df: np.ndarray | None = None

    @property
    def obs_std(self) -> np.ndarray:
        """``(C,)`` scale of the observation noise (the Gaussian's standard deviation)."""
        return self.noise["scale"]

    def noise_at(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The noise parameters of the rows selected by the boolean ``rows`` (default all), the
        scale ``(n, C)`` per row when there is a ``gap_factor``, and ``"tail_df"`` ``(n, C)``
        when there are calibrated tails."""
        noise = self.noise
        if self.gap_factor is not None:
            factor = self.gap_factor if rows is None else self.gap_factor[rows]
            noise = {**noise, "scale": noise["scale"] * factor}
        if self.tail_df is not None:
            noise = {**noise, "tail_df": self.tail_df if rows is None else self.tail_df[rows]}
        return noise


class LatentODERegressor(BaseEstimator):
    """Latent ODE (Rubanova et al., 2019) for irregularly sampled multivariate time series.

    Fits a variational Latent ODE to a long-format :class:`pandas.DataFrame` (one row per
    series and observation time, one column per channel, ``NaN`` where a channel was not
    observed) and then

    * :meth:`predict` reconstructs / imputes every channel at each row's time, conditioned on the
      observed values of that row's series;
    * :meth:`extrapolate` forecasts each series after its last observation;
    * both optionally add predictive quantiles (``quantiles=``), and :meth:`sample` draws
      whole predictive trajectories;
    * :meth:`predict_intensity` returns the expected observation rate per channel (models
      fitted with ``poisson_process=True``);
    * :meth:`score` returns the mean IWAE log-likelihood per observed value.

    Parameters
    ----------
    latent_dim : int, default=20
        Size of the latent state ``z``.
    encoder : {"odernn", "gru", "mtan"}, default="odernn"
        Recognition network: ODE-RNN (hidden state evolved by an ODE between observations), a
        GRU fed with time gaps (faster), or multi-time attention (``"mtan"``, after Shukla &
        Marlin, 2021: each channel's observations attended onto ``mtan_ref_points`` reference
        times over the series' window through a learned time embedding of ``mtan_embed_dim``
        (default ``units``) features, read by a bidirectional GRU of ``rec_dim`` units per
        direction over ``gru_units`` features;
        :class:`~latentode.nn.mtan.MTANEncoder`).
    rec_dim : int, default=40
        Hidden state size of the recognition network.
    units : int, default=50
        Hidden width of the latent dynamics MLP, of the ODE-RNN encoder's recurrent dynamics
        MLP, of the encoder's output head and of the Poisson intensity network.
    n_layers : int, default=3
        Hidden layers of the latent dynamics MLP and of the ODE-RNN encoder's recurrent
        dynamics MLP.
    gru_units : int, default=50
        Hidden width of the encoder's GRU gates.
    decoder_layers : int, default=0
        Hidden layers (of ``units``, tanh) of the decoder from the latent state to the channel
        means; 0 is the reference's linear decoder. A hidden layer lets the latent dynamics stay
        simple when the observed curves are not linear images of them (on the Neural ODE paper's
        spirals, ``benchmarks/spirals.py``: extrapolation RMSE 2.03 -> 1.06 after 30 epochs).
    gradient : {"adjoint", "backprop"}, default="adjoint"
        Gradients of the latent ODE solve: continuous adjoint (constant memory) or automatic
        differentiation through the solver (faster for small models, more memory).
    solver : {"dopri5", "bosh3", "rk4", "euler"}, default="dopri5"
        ODE solver of the latent trajectory (:func:`latentode.ode.odeint`): adaptive
        Dormand-Prince 5(4) or Bogacki-Shampine 3(2), or fixed-step RK4 or Euler (see
        ``step_size``).
    rtol, atol : float, default=1e-3, 1e-4
        Tolerances of the adaptive solvers (``"dopri5"``, ``"bosh3"``), also used by the
        adjoint's backward solve.
    step_size : float or None, default=None
        Step of the fixed-step solvers (``"rk4"``, ``"euler"``) in model time, where the median
        series spans 1 (see :class:`~latentode.data.TimeEncoder`); steps are also shortened to
        land on each requested time. None means 0.02 (50 steps per typical series, the ODE-RNN
        encoder's step). Ignored by the adaptive ``"dopri5"`` and ``"bosh3"``.
    n_traj_samples : int, default=3
        Trajectory samples of the IWAE training bound.
    max_epochs : int, default=100
        Maximum number of training epochs (0 builds an untrained model).
    batch_size : int, default=50
        Series per mini-batch (also used to chunk prediction).
    lr : float, default=1e-2
        Learning rate (Adamax).
    lr_decay : float or None, default=None
        Multiply the learning rate by this factor after every epoch, down to ``min_lr``
        (default ``lr / 10``; the reference decays by 0.999 per mini-batch, about 0.88 per epoch
        on PhysioNet). None keeps it constant (or follows ``lr_schedule``). Must lie in (0, 1];
        not with ``lr_schedule``.
    kl_warmup : float, "exponential", callable or None, default=10
        KL warm-up: the KL weight ramps linearly to 1 over this many epochs; ``"exponential"``
        uses the reference schedule; a callable ``(epoch, step) -> weight`` gives the weight
        itself (:func:`latentode.training.objective.kl_weight_schedule`); 0 or None disables
        warm-up.
    obs_dropout : float, default=0.0
        At every training step, hide this fraction of each series' observed values from the
        encoder while still scoring them, so the model learns to predict values it was not
        conditioned on (as :meth:`predict` does for missing entries) and the learned noise
        covers that error. 0 trains plain reconstruction, as in the paper. Must lie in [0, 1).
    obs_weighting : {"value", "channel"}, default="value"
        Weight of each observed value in the training likelihood. ``"value"``: the plain
        likelihood, every value counts once, so densely measured channels dominate.
        ``"channel"``: within each series every observed channel gets the same total weight,
        however often it was measured (the reference code averages per series and channel),
        which matters when rarely measured channels (e.g. static descriptors observed once)
        must be reconstructed as well as frequent ones; each series keeps its total weight.
        :meth:`score` always uses the plain likelihood.
    forecast_split : float or None, default=None
        Train for forecasting (:meth:`extrapolate`) instead of reconstruction: every training
        and validation series is split at this fraction of its time window, the encoder sees
        the earlier observations and only the later ones are scored (the paper's extrapolation
        experiments use 0.5); calibration then uses the same split. None trains reconstruction,
        which suits :meth:`predict`. Must lie in (0, 1).
    validation_fraction : float, default=0.1
        Fraction of the *series* held out to monitor validation loss (early stopping and best
        weights). 0 monitors the training loss instead. Any positive fraction holds out at
        least one series and keeps at least one for training; with a single series there is no
        validation. Not used when :meth:`fit` is given ``validation_data`` (the validation
        series given apart).
    early_stopping : bool, default=True
        Stop when the monitored loss has not improved for ``patience`` epochs. The best weights
        are always restored at the end of training (also after Ctrl-C). The validation loss
        scores each window's reconstruction (with ``forecast_split`` or ``forecast_share``, the
        task trained, see ``scoring``), which can level off long before the dynamics
        that carry forecasts far past the data are learnt: for such forecasts train a few
        hundred epochs with ``early_stopping=False`` (README, "Spirals").
    patience : int, default=20
        Early-stopping patience in epochs: training stops after this many epochs without a
        better validation value. 20 since 2026-12-02 (10 before): a latent ODE's validation
        loss can sit on a plateau for 10 epochs or more before its dynamics are learnt; with 20,
        12 of 68 cells of the quality benchmarks improved by more than 3 % (up to 59 %), one
        worsened (3.9 %), the others moved by less than 3 % (docs/results/across-datasets.md).
    scoring : {"loss", "mse"}, default="loss"
        What early stopping (``early_stopping``, ``patience``) and the choice of the best
        weights watch on the validation series (``validation_fraction``), smaller being
        better: ``"loss"``, the training objective (the negative IWAE bound per observed
        value, ``history_["val_loss"]``); ``"mse"``, the mean squared error of the point
        predictions (``history_["val_mse"]``, standardised units, every observed value
        weighing the same): the trajectory of the posterior mean that :meth:`predict` returns,
        without sampling noise, corrected by ``readout="neighbours"`` from the neighbouring
        observations (never from the value scored); with ``forecast_split``, the error of the
        forecasts of each series' later part; with ``forecast_share``, the mix of
        reconstruction and forecasts that training optimises (see ``forecast_share``). The
        validation series are scored whole, whatever ``obs_dropout`` hides in training. With
        a learned ``obs_std`` the loss also rewards a narrower noise (the spread is
        recalibrated after training anyway, ``calibrate``) and need not follow the point error:
        trained to forecast, it kept falling while the validation MSE rose
        (docs/results/physionet.md, "What early stopping watches"), and ``"mse"`` gave the
        better forecasts (PhysioNet, first 24 h -> the rest: 5.35e-3 against 5.76e-3); use it
        with ``forecast_split``. Without it the two tied or ``"loss"`` did slightly better (the
        spirals), so ``"loss"`` stays the default.
        ``val_mse`` is recorded whatever is watched and draws no noise, so both choices train
        alike and differ in where they stop and which epoch they restore.
        ``history_.monitor`` names the value watched. Without validation series the training
        loss is watched, whatever ``scoring`` says.
    poisson_process : bool, default=False
        Also model the observation times as a per-channel Poisson process.
    obs_std : "learned" or float, default="learned"
        Observation noise standard deviation (the scale of a ``"student_t"`` likelihood) in
        standardised units: learned per channel (the default; the reference code fixes 0.01,
        which makes intervals meaningless and the ELBO a near-deterministic autoencoder), or
        fixed.
    calibrate : bool, default=True
        After training, rescale the predictive spread per channel on the validation series
        so that ``quantiles`` and :meth:`sample` intervals reach their nominal coverage
        (:func:`latentode.training.calibrate_spread` with ``criterion="coverage"``: in six
        rounds, 10 %, 30 % and 50 % of their observed values are hidden from the encoder in
        turn (never those of a series' first observed time point), or with
        ``forecast_split`` their future values are held out, and each channel takes the factor
        whose central 10 % to 95 % intervals of the held-out values come closest to their
        nominal coverage; a channel with fewer than 20 held-out values keeps 1). The factors
        are in ``model_.spread_scale``. Values the model did not condition on then get a
        further factor by their kind (inside the conditioning window, or a forecast beyond
        it) and their distance to the channel's nearest observation (four buckets per kind),
        fitted the same way on the hidden values and on forecasts of the validation series
        split at 50 %, 30 % and 70 % of their windows (``model_.gap_spread``), so that
        intervals widen with the horizon as the errors do; where the held-out errors have
        heavier tails than the observation model, a Student-t of fitted degrees of freedom
        replaces its family at those values (per kind and channel, with 100 held-out values or
        more: ``model_.gap_spread.tail_df``). This is the calibration of
        ``calibration_structure="validation"``; with ``"training"`` (the default) the same
        factors are fitted on training series and the validation series fit only their level
        (see there). Point predictions are unchanged.
        Needs validation series (``validation_fraction > 0`` and two or more series, or
        ``fit(..., validation_data=)``); otherwise the factors stay 1.
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, default="auto"
        Where to train and predict; ``"auto"`` uses CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, the validation split, batch shuffling and the sampling
        noise (locally; global random states are left untouched). A fixed int gives repeatable
        results on the CPU.
    verbose : int, default=1
        0: silent; 1: a progress bar over the epochs (its text shows the batches done in the
        current epoch); 2: also one line per epoch. Printed epochs count from 1, like the bar.
    warm_start : bool, default=False
        When fitted already, continue training the existing network (same columns required)
        instead of starting afresh; the time encoder and scaler are kept. The parameters that
        shape the network (``latent_dim``, ``rec_dim``, ``encoder``, ``units``, ``n_layers``,
        ``gru_units``, ``decoder_layers``, ``poisson_process``, ``obs_std``, ``likelihood``,
        ``obs_df``, ``linear_term``, ``readout``, ``readout_sides``, ``readout_reach``,
        ``mtan_*``, ``dynamics_activation``, ``forecast_noise``, ``posterior_time``) must be
        the fitted ones (a ValueError names a changed one; ``readout_reach`` is not checked
        for a network saved before it was recorded); the solver's settings (``solver``, ``rtol``,
        ``atol``, ``step_size``, ``gradient``, ``max_steps``) and the training options apply.
    callbacks : list or None, default=None
        Called by the training loop: objects with ``on_epoch_end(epoch, record, model)`` (and
        optionally ``on_train_begin(model)``, ``on_train_end(history, model)``; subclass
        :class:`latentode.training.Callback`) or plain callables ``fn(epoch, record, model)``.
        ``epoch`` counts from 0, ``record`` is the epoch's entry of ``history_`` (losses, the
        KL weight, the learning rate, seconds), ``model`` the network being trained (in
        training mode; put it in ``eval()`` and back to predict with it). Returning True
        stops training (``history_.stopped_reason == "callback"``; the best weights are still
        restored); raising :class:`KeyboardInterrupt` stops it like Ctrl-C. They run on every
        process of a distributed fit, and a stop asked for on any rank holds for all. They are
        not saved by :meth:`save` (the loaded estimator has ``callbacks=None``, with a
        warning when saving) but are pickled with the estimator.
    max_steps : int, default=10_000
        Step budget per series of each latent ODE solve, on top of two steps per requested
        time (observation or query time), so that long series need no tuning: the adjoint's
        backward solve stops at every observation time (see
        :meth:`latentode.nn.LatentODE.step_budget`). A series that needs more raises
        :class:`~latentode.ode.ODESolveError` naming it and this parameter (in :meth:`fit`,
        the batch is skipped with a warning). Read (and checked) at every call, so
        ``set_params(max_steps=...)`` also applies to a fitted estimator.
    n_jobs : int or None, default=None
        CPU threads torch uses inside each operation (``torch.set_num_threads``) while
        :meth:`fit`, :meth:`predict`, :meth:`extrapolate`, :meth:`sample`, :meth:`score` or
        :meth:`predict_intensity` runs; the caller's setting is restored afterwards, also when
        they raise. None means 1 (the scikit-learn convention), ``-1`` every available core,
        ``-2`` all but one. One thread is the default because the networks are small: a step
        runs many tiny operations, which more threads slow down, badly when the cores are
        shared (see "CPU threads" in the README). The setting is process-wide while a call
        runs.
    likelihood : {"gaussian", "student_t"}, default="gaussian"
        Observation model of the values (:data:`latentode.nn.registry.OBSERVATION_MODELS`):
        ``x_c = decoded_c + obs_std_c * e`` with ``e`` standard normal, or Student-t with
        ``obs_df`` degrees of freedom, whose heavy tails make the fit robust to a few outlying
        values (artefacts, unit errors). It is the likelihood trained and scored
        (:meth:`score`), and the distribution behind ``quantiles`` and :meth:`sample`; with
        ``"student_t"``, ``obs_std`` is its scale (its standard deviation is
        ``obs_std * sqrt(df / (df - 2))`` for ``df > 2``). The heavy tails also treat real
        jumps as outliers: on PhysioNet's subset with a fixed scale (README, "Spirals") the
        held-out values of channels that jump between levels (FiO2, GCS) get worse, 11 to 18 %
        overall, and a 0/1 channel's minority value is left unfitted.
    obs_df : "learned" or float, default="learned"
        Degrees of freedom of the ``"student_t"`` likelihood: learned per channel (from 4,
        bounded below by 1), or fixed. Not used by ``"gaussian"``.
    linear_term : bool, default=False
        Add a learned linear map to the latent dynamics: ``f(z) = A z + MLP(z)``, ``A``
        starting at 0. A tanh MLP is bounded, so far from the states it was trained on its
        flow slows down; the linear term carries rotation and growth that scale with the
        state, which matters when forecasting beyond the training windows (see the README's
        spirals section for what it does to each benchmark).
    time_scale : float or None, default=None
        Length of one unit of model time, in the time column's unit (hours for datetimes).
        None: the median span of the training series (``time_encoder_.scale_``), so a
        typical series covers about ``[0, 1]``. The latent field must move the state across
        a series within one model time unit; for series that oscillate many times per window
        a smaller value (a fraction of the span) makes the needed velocities smaller and the
        dynamics easier to learn (the periodic toy: see the README), at the cost of more
        encoder steps (the ODE-RNN's Euler step is fixed in model time).
    readout : {"latent", "neighbours"}, default="neighbours"
        How the mean of each channel is read from the latent trajectory. ``"latent"``: the
        decoder of the latent state alone, as in the paper. ``"neighbours"`` (the default;
        models saved before the option existed load as ``"latent"``): the decoded mean is
        corrected by the series' nearest conditioning observations of the same channel
        before and after the query time (their values, their distances, the linear
        interpolation between them) through a gate learned per channel and distance, which
        hands the prediction back to the latent trajectory far from the observations
        (:class:`~latentode.nn.readout.NeighbourReadout`). An observation is never the
        neighbour of a query at its own time, so the value a prediction is scored against is
        never in its context; train it with ``obs_dropout`` near the fraction of values the
        model will have to fill in, so that the gaps it learns from are those it will meet.
        It helps filling in values between observations (:meth:`predict` of missing entries)
        most; forecasts see the last observation only. The likelihood, quantiles, samples and
        calibration are those of the corrected means. Measured against ``"latent"`` (README,
        held-out interpolation section): far better at filling in values and at forecasts near
        the observations (PhysioNet, the periodic toy, the demo), about 1.1x the training time,
        and worse at forecasts far beyond the last observation of smooth dynamics (the spirals:
        0.94 against 0.69 at 150 epochs); use ``"latent"`` for the paper's model.
    readout_aux : float, default=1.0
        Weight of the auxiliary training term of ``readout="neighbours"`` (ignored with
        ``"latent"``): the negative log-likelihood of the decoder's *uncorrected* means, per
        observed value and with the same ``obs_weighting``, is added to the loss, under their
        own observation model (``model_.decoder_noise``: its scale learned by this term, or the
        same fixed ``obs_std``), so the noise of the corrected means, and their intervals, are
        fitted by the model's bound alone. At 1 the latent trajectory must explain the data
        by itself and the readout refines it near the observations; at 0 the readout may fit
        the training windows from the neighbours alone and leave the trajectory, which alone
        forecasts far from the observations, untrained (docs/results/physionet.md, the neighbour
        readout). Part of the training and validation losses; the likelihood that :meth:`score`
        reports and the predictions are those of the corrected means.
    readout_reach : {"window", "spacing"}, default="window"
        Where the reach of ``readout="neighbours"``'s correction (``exp(-gap / reach)``, per
        channel, learned) starts: ``"window"``, 1 model time (a typical series' span), so the
        correction persists long after the last observation (forecasts stay close to the last
        value, which suits series that hold their level); ``"spacing"``, each channel's
        typical spacing of observations in the training series
        (:func:`latentode.data.observation_spacing`), the gaps reconstruction shows the readout,
        so it extends further only where training finds it useful and forecasts beyond are the
        latent trajectory's (series that keep moving, e.g. rotating). Reconstruction cannot
        tell the two apart (it never shows a long gap after the last value); the README's
        readout section measures both.
    forecast_share : float, default=0.0
        Train on a mix of reconstruction and forecasting: at every training step each series
        is, with this probability, conditioned only on its observations before a random split
        point (drawn uniformly from ``forecast_range``, as fractions of its window; a new draw
        at every step) and scored on all of its values, so that the values after the split are
        forecast from the past alone, up to ``1 - forecast_range[0]`` of a window ahead, while
        those before are reconstructed as usual; the other series train plain reconstruction.
        It shows the model (the latent dynamics and ``readout="neighbours"``'s gate and reach)
        the long one-sided gaps that :meth:`extrapolate` meets and reconstruction never does.
        0 trains reconstruction alone (bit for bit as before the option). Validation (early
        stopping, the best weights) scores the same mix without its draws: every validation
        series is reconstructed (weight ``1 - forecast_share``) and scored whole from its past
        before a fixed split point in ``forecast_range`` (weight ``forecast_share``), under
        noise that is the same at every epoch, so the watched value follows the task trained
        and changes with the weights alone (:func:`latentode.training.objective.validation_tasks`;
        before 2026-11-29 it scored reconstruction alone, which stopped the mix early on
        plateaus of the reconstruction: docs/results/across-datasets.md, "Early stopping under the
        mix"); calibration
        is that of reconstruction. Must lie in [0, 1]; not with
        ``forecast_split``, which trains forecasting alone at one split. Measured (README,
        readout section): 0.5 improves forecasts far past the data (the spirals, the demo's
        24-hour forecasts) and costs interpolation where the readout is strongest (the
        periodic toy's held-out values: 0.0099 / 0.0098 with ``readout_sides="split"``
        against the defaults' 0.0080 / 0.0090), because one learned noise scores both tasks
        and the forecasts' errors inflate it; ``forecast_noise=True`` gives them their own
        (0.0081 / 0.0078). It is off by default: README, "Across data sets".
    forecast_range : (float, float), default=(0.2, 0.8)
        ``(low, high)``, ``0 < low <= high < 1``: the range of the split points of
        ``forecast_share``, as fractions of each series' window. Unused when
        ``forecast_share=0``.
    weight_decay : float, default=0.0
        L2 penalty on every weight of the network (encoder, dynamics, decoder), the
        ``weight_decay`` of the Adamax optimiser (added to each gradient as ``weight_decay *
        w``). 0: none.
    readout_sides : {"shared", "split"}, default="shared"
        Whether ``readout="neighbours"``'s queries between two conditioning observations of
        the channel and those with a neighbour on one side only (after the channel's last
        observation: forecasts; before its first) share the readout's parameters (time
        scales, reach and gate network: ``"shared"``) or each kind has its own
        (``"split"``: the one-sided ones are the two-sided ones plus offsets that start at 0,
        and a one-sided query's pull toward the carried observation is at most what the
        two-sided ones give at the same gap, its residual fading over the channel's typical
        spacing: ``NeighbourReadout(split="bounded")``; files saved before hold the former
        layouts and load as such). Ignored with
        ``readout="latent"``. It matters with ``forecast_share > 0``: the forecasts' long
        one-sided gaps and large errors then pull the shared gate network and its time scales
        away from the correction of interpolation between observations. Measured with
        ``forecast_share=0.5`` (README, "Across data sets"): the periodic toy's held-out error
        0.0144 / 0.0118 (seeds 0 / 1) with ``"shared"``, 0.0098 / 0.0098 with ``"split"`` (the
        default training: 0.0080 / 0.0090; linear interpolation 0.0100 / 0.0114; measured
        with the former one-sided layout). Alone (``forecast_share=0``), ``"split"`` improves
        most forecasts, PhysioNet's included since the bound (README, "The split readout,
        bounded"), but ``"shared"`` (the former readout) stays the default until the rest of
        the measurements that a default needs are made, as does ``forecast_share=0``.
    mtan_ref_points : int, default=64
        With ``encoder="mtan"``: the number of reference times, spread evenly over each
        series' window, onto which the observations are attended (mTAN's ``num_ref_points``;
        its PhysioNet classifier was published with 128). Ignored by the other encoders.
    mtan_embed_dim : int or None, default=None
        With ``encoder="mtan"``: the size of its learned time embedding and of the attention's
        query and key projections (mTAN's ``embed_time``, published with 128); None: ``units``
        (what files and pickles saved before the parameter existed load with). Ignored by the
        other encoders.
    dynamics_activation : {"tanh", "elu", "softplus"}, default="tanh"
        Hidden non-linearity of the latent dynamics ``f(z)``
        (:data:`latentode.nn.dynamics.DYNAMICS_ACTIVATIONS`; the ODE-RNN encoder's flow stays
        tanh). A tanh field is bounded, so where a forecast carries the state beyond the
        states the training windows reached, its speed levels off; ``"elu"`` (the Neural ODE
        paper's published spiral example) and ``"softplus"`` are unbounded above and let the
        field keep growing with the state. Measured (README, "Spirals"): ELU lowers the
        spirals' forecast RMSE by 0.17 to 0.31 (30 and 100 observed points, two seeds each)
        and the damped oscillators' forecast error of the quality suite from 1.12x to 0.15x
        the best baseline, is level on PhysioNet's subset and the periodic toy, but loses on
        the bundled PhysioNet sample's held-out values at two seeds of four (0.96x -> 1.19x
        linear interpolation at seed 0), through two stays with impossible temperatures that
        the unbounded field follows further (level with ``likelihood="student_t"``), so tanh
        stays the default. ELU with ``likelihood="student_t"`` (quality suite at three seeds,
        the PhysioNet subset, the periodic benchmark, the demo) keeps the oscillators' gains
        but loses the PhysioNet subset's held-out values (+11 / +18 %) and the periodic toy's
        forecasts (+9 to +17 %), so it is not the default either.
    forecast_noise : bool, default=False
        With ``forecast_share`` (or ``forecast_split``): score the values that training
        forecasts (after the series' last conditioning time) under an observation noise of
        their own, learned from them alone, instead of the one learned for reconstruction
        (``LatentODE(forecast_noise=True)``). One shared scale is pulled up by the forecasts'
        larger errors, which weakens the reconstruction term: this is where
        ``forecast_share``'s cost on held-out values came from (README, "Across data sets").
        Prediction, intervals (their calibration), validation and :meth:`score` use the
        reconstruction noise as before. No effect without a forecasting task in training or
        with a fixed ``obs_std``.
    posterior_time : {"first", "last"}, default="first"
        Which latent state the posterior (and the standard normal prior) is over
        (``LatentODE(posterior_time=...)``): the state at each series' start (``"first"``,
        the paper's model, where a forecast carries that state's error across the whole
        conditioning window before the horizon), or the state at its *last* observation
        (``"last"``): the encoder reads the series reversed in time, so it ends there, and
        the ODE is integrated forwards to later times and backwards in time to earlier ones
        (one batched solve), as an RNN forecasts from its last state. Not available with
        ``poisson_process=True`` (a ValueError in :meth:`fit`), nor for
        :class:`~latentode.LatentODEClassifier` (the same), whose head reads the state at the
        start.
        Measured (CHANGELOG, issue #18): with forecast training (``forecast_share``) it
        improves the spirals' covered futures and most of the quality suite's forecasts but
        loses the damped oscillators' held-out values (up to 2.5x on sparse ones); with
        reconstruction alone the forecasts lose their reversion toward the mean. So
        ``"first"`` stays the default.
    input_fences : float or None, default=None
        Bound the influence of gross outliers (recording artefacts, unit errors) on what the
        model *conditions on*: :meth:`fit` sets per-channel fences from the values of ``df``,
        the 5th and 95th percentiles widened by ``input_fences`` times their range on each
        side (:func:`latentode.data.channel_fences`; 2.0 puts the fences of normal values 8.2
        standard deviations from the mean, and no value of the quality suite's six synthetic
        data sets lies beyond them), and every observed value beyond its channel's fence is
        read as the fence by the encoder, the ``readout="neighbours"`` correction and the
        classifier's summaries, in training and prediction alike
        (:class:`latentode.nn.fences.InputFences`, ``model_.input_fences``, in standardised
        units: ``scaler_.inverse_transform`` gives them in the data's). Nothing else changes:
        the likelihood (training, :meth:`score`) scores the real values, ``df`` is not
        modified, and a prediction at an observed time is still the model's prediction, never
        the value. A channel most of whose values sit at one level (5th and 95th percentiles
        equal) has no fences. Data inside the fences give, bit for bit, the model and
        predictions of ``input_fences=None`` (no fences, the former behaviour); a value beyond
        them moves its series' predictions exactly as a value at the fence does, however far
        beyond it lies. With ``warm_start``, the fences are refitted on the new ``df``.
        Motivated by the bundled PhysioNet sample, whose two test stays open with temperatures
        of -17.8 and 2.2 degC that an unbounded ``dynamics_activation="elu"`` field follows
        far (README, "Spirals"). Measured there (the quality suite, seeds 0 to 3, held-out
        MSE; docs/results/spirals.md): with ``"elu"`` and ``input_fences=2.0``, 0.219 / 0.245 /
        0.203 / 0.298 against ELU alone's 0.258 / 0.252 / 0.198 / 0.459 and the defaults'
        0.208 / 0.249 / 0.199 / 0.391 (the rest of seed 0's loss is the same stay, followed
        from the fence at 29.8 degC), forecasts within 2 %; so it stays off by default.
    calibration_structure : {"validation", "training"}, default="training"
        Which series fit the structure of the interval calibration (``calibrate``). With
        ``"training"`` (the default since 2026-11-30; files and pickles saved before the
        parameter existed load with ``"validation"``), the factors of the channels, the gap
        cells and the calibrated tails are fitted the same way on the held-out values of the
        *training* series (values hidden from the encoder and forecasts, of at most 256 of
        them, a random subset; 3 to 6 rounds of each kind, until every channel has 4000
        held-out values of it; at most 4000 per channel and kind, a random subset, fit the
        factors), which are many, so that these relative factors are precise; since the model
        has seen those series, their errors are too small, and the validation series then fit
        only the level: one multiplier per kind of query (inside the conditioning window, or a
        forecast), pooled over the channels and gap cells, on top of those factors, on 24
        hiding rounds of them (:func:`latentode.training.calibrate_spread` with ``structure=``
        and ``level_rounds``). With ``"validation"`` every factor is fitted on the validation
        series, as described there: the former default, to the bit. Measured on the
        calibration suite (seeds 0 to 3, docs/results/calibration.md): 52 of 56 interval targets
        against 47 with ``"validation"``, at least as many at every seed; the same point
        predictions. It costs time: 4 to 14 s of calibration per 60-epoch suite fit against
        1.5 to 6 s with 6 level rounds (a median 5 % of the fit); on the demo 19 s against
        6 s with 24, the fit 24 % longer. With only 15 to 20 validation series the level
        still moves with which series they are (2 to 5 points of a 50 % interval's
        coverage); more validation series (``validation_fraction``) make it more precise.
    point_prediction : {"posterior_mean", "predictive_mean"}, default="predictive_mean"
        The point prediction that :meth:`predict`, :meth:`extrapolate` and
        :meth:`predict_intensity` return (their mean columns): ``"posterior_mean"``, the
        decoded trajectory of the posterior mean of ``z_t0`` (the paper's; deterministic);
        ``"predictive_mean"``, the mean of the predictive distribution, the average of the
        decoded trajectories of ``point_samples`` posterior samples of ``z_t0`` (solved in one
        batch), which minimises the expected squared error where the flow, the decoder or the
        readout is nonlinear in ``z``, at the cost of a ``point_samples`` times larger batch.
        The samples are ``mu + sigma * eps_s`` over fixed antithetic standard-normal points
        ``eps_s`` (:func:`latentode.nn.model.point_noise`, a documented seed, never
        ``random_state``) shared by every series: deterministic, and a series' prediction is
        the same alone or in any frame, order or ``batch_size``, as with ``"posterior_mean"``.
        With ``quantiles`` the mean columns are the same (the quantiles keep their own
        ``n_samples`` draws). Read at every call (``set_params`` applies to a fitted
        estimator). The default since 2026-11-30 (files saved before the parameter existed
        load with ``"posterior_mean"``): on the quality suite's 42 cells (seeds 0 to 2) it is
        worse than ``"posterior_mean"`` by at most 0.43 % and better by up to 11.6 % (the
        oscillator family), for predictions 2.5 to 3 times as long
        (docs/results/across-datasets.md). Early stopping's ``"mse"`` (``val_mse``) and the
        calibration score the posterior-mean trajectory whatever this says.
    point_samples : int, default=16
        Posterior samples of ``z_t0`` that ``point_prediction="predictive_mean"`` averages
        (:data:`latentode.nn.model.POINT_SAMPLES`): ``point_samples // 2`` antithetic pairs
        (plus one unpaired point when odd), whose error cancels the odd-order terms of the
        decoded mean in ``z``. On the quality suite's oscillators (seed 0) 16 points are
        0.016 to 0.037 (RMS, standardised) from a 1024-point reference, where the two rules
        are 0.04 to 0.11 apart, as close as or closer than 32 independent draws on three
        of four tasks (``benchmarks/point_samples.py``). Read at every call; not used by
        ``"posterior_mean"``.
    forecast_mode : {"swap", "add"}, default="swap"
        What the series that ``forecast_share`` picks at a training step give up to forecast
        (:func:`latentode.training.objective.mix_forecast`'s ``mode``): ``"swap"``, a picked
        series conditions on its past *instead of* all of its values (scored on all of them),
        so only ``1 - forecast_share`` of the series train reconstruction from all of their
        values; ``"add"``, every series trains reconstruction as with ``forecast_share=0``,
        and a copy of each picked series is appended to the batch (the same solve),
        conditioned on its past and scored on its values after the split only, at about
        ``1 + forecast_share`` times the training compute. Validation then scores every
        validation series' reconstruction with weight ``1 / (1 + forecast_share)`` and its
        values after a fixed split, forecast from its past, with weight ``forecast_share /
        (1 + forecast_share)`` (:func:`latentode.training.objective.validation_tasks`).
        Unused when ``forecast_share=0``.
    calibration_density : {False, True, "validated"}, default="validated"
        Whether the interval calibration (``calibrate``) also fits a *density factor*: the
        factor of a value the model did not condition on is multiplied by ``(n / n_ref) **
        -b``, ``n`` the number of observations of its channel that its series conditions on
        (``n_ref`` that channel's typical number in the calibration's rounds), one slope ``b``
        per kind of query (inside the window, forecasts) chosen with the gap factors on the
        structure's held-out values (:func:`latentode.training.calibrate_spread` with
        ``by_density``; ``model_.gap_spread.density_slope``), so that the intervals hold
        whether 10 % or 70 % of a series' values are missing, not only on the calibration's
        mix. Without it the factors fitted on a mix of 10 %, 30 % and 50 % hidden values are
        too wide when few values are missing and too narrow when many are (the calibration
        suite's fits, docs/results/calibration.md: the 50 % interval of hidden values covers 57.9 /
        55.8 / 51.9 / 46.6 % at 10 / 30 / 50 / 70 % hidden on the oscillators at seed 3; 53.1 /
        54.0 / 53.9 / 54.1 with it). An option: with ``calibration_structure="training"``
        the slope comes from the training series, whose errors the model may fit better when
        few values are hidden than an unseen series' (osc-fast at seed 1: 50.2 / 48.1 / 45.4 /
        39.8 becomes 44.0 / 45.4 / 47.4 / 48.4), and it does not fix the level error of few
        validation series. ``"validated"``: the validation series then choose, per kind of
        query, whether to keep the training series' slope, half of it or none of it (each with
        its own gap factors and level; the choice of least loss on their held-out values split
        by the count's terciles, the smaller slope on ties; ``model_.gap_spread.density_shrink``
        and ``density_losses``), so a count dependence that the unseen series do not share is
        dropped; with ``calibration_structure="validation"`` it is True (the validation series
        fit the slope themselves). ``"validated"`` is the default since 2026-11-30: on the
        calibration suite (seeds 0 to 3, docs/results/calibration.md) it meets 14 / 14 / 12 /
        14 of 14 interval targets against the former default's 14 / 14 / 12 / 12 and loses
        none, with the same point predictions, for a few seconds more of calibration. False
        (files and pickles saved before the parameter existed load with it): no density
        factor, the former calibration to the bit.
    lr_schedule : {None, "cosine", "linear"} or callable, default=None
        The learning rate of every epoch, set at the epoch's start (per epoch, as ``lr_decay``;
        :func:`latentode.training.lr_at`; ``history_.records[e]["lr"]``): ``"cosine"`` anneals
        from ``lr`` at the first epoch to ``min_lr`` at the last, ``lr_e = min_lr + (lr -
        min_lr) * (1 + cos(pi * e / (max_epochs - 1))) / 2`` (PyTorch's ``CosineAnnealingLR``
        with ``T_max = max_epochs - 1``, so that the last epoch trains at ``min_lr``);
        ``"linear"`` goes from ``lr`` to ``min_lr`` along a line (``LinearLR``); a callable
        ``(epoch, max_epochs) -> factor`` (``epoch`` from 0) trains each epoch at ``lr *
        factor``, floored at ``min_lr`` when given (e.g. a constant rate, then a decay: not
        saved by :meth:`save`, which needs JSON; pickle the estimator). None (files and
        pickles saved before the parameter existed load with it): a constant rate, or
        ``lr_decay``'s. The schedule spans ``max_epochs``, so early stopping may end the fit
        before it reaches ``min_lr`` (set ``early_stopping=False`` to anneal fully). With
        ``warm_start`` every call to :meth:`fit` runs the schedule afresh over its
        ``max_epochs``, from ``lr`` (a warm restart, as in SGDR; the optimiser is new too). An
        option, not the default (spirals, docs/results/spirals.md).
    min_lr : float or None, default=None
        The lowest learning rate: with ``"cosine"`` or ``"linear"`` the last epoch's (None:
        ``lr / 100``, a 100-fold anneal whose last epoch still trains; 0 is allowed, as
        PyTorch's ``eta_min``), with a callable its floor (None: none), with ``lr_decay`` its
        floor (None: ``lr / 10``, the reference's). Unused with a constant learning rate. Must
        lie in [0, ``lr``].
    weight_averaging : float, default=0.0
        Horizon, in epochs, of an exponential moving average of the network's weights over the
        optimiser's steps (Polyak averaging;
        :class:`~latentode.training.averaging.WeightAverage`): ``h > 0`` makes the averaged
        weights, not the last step's, what every epoch validates (``scoring``), what the best
        weights keep and what the fitted model holds, while the optimiser steps on its own
        weights. The first epoch's steps are averaged equally, later ones with the weight
        ``1 - 1 / (h * steps_per_epoch)`` per step, so the average spans about ``h`` epochs
        whatever the size of the data. 0 (files and pickles saved before the parameter
        existed load with it): no averaging, the weights of the best epoch. Not supported in
        distributed training (``torch.distributed``; :meth:`fit` raises before training).

    Attributes
    ----------
    model_ : latentode.nn.LatentODE
        The trained network (best weights), in eval mode, on ``device_``.
    history_ : latentode.training.History
        Per-epoch ``train_loss`` / ``val_loss`` records (accumulated over warm starts), best
        epoch and stop reason; ``history_["val_loss"]`` gives a column. ``best_epoch`` and each
        record's ``epoch`` are 0-based indices into ``history_.records``: ``best_epoch == 25``
        is the 26th epoch, the one the progress bar and printed messages call epoch 26.
    time_encoder_ : latentode.data.TimeEncoder
        Maps the time column (float or datetime) to model time and back.
    scaler_ : latentode.data.ChannelScaler
        Per-channel standardisation of the targets.
    time_col_, id_col_ : str, str or None
        Column names given to :meth:`fit`.
    target_cols_ : list of str
        Modelled channels, in order.
    static_cols_ : list of str
        Static covariate columns given to :meth:`fit` (empty: none).
    static_encoder_ : latentode.data.StaticEncoder or None
        Encodes them (standardised numbers, one-hot categories, missing-value indicators);
        None without static columns.
    feature_names_in_ : ndarray of object
        The columns the estimator reads: ``[id_col_, time_col_, *target_cols_,
        *static_cols_]`` (without the id when ``id_col_`` is None). Other columns are ignored.
    n_features_in_ : int
        ``len(feature_names_in_)``.
    device_ : torch.device
        Device holding ``model_``.

    Notes
    -----
    **Input format.** ``df`` has one row per (series, time); ``id_col=None`` means a single
    series. Rows need not be sorted (they are sorted internally; outputs follow the caller's
    row order). Duplicate (id, time) rows are merged with one warning: each channel takes the
    mean of the rows' non-missing values. Series whose ids were not seen in :meth:`fit` are
    fine at prediction time: the model conditions on each series' own observations.

    **Real data.** Nothing is invented and nothing is dropped without a word:

    * a series with no observed value of the target columns (common when a few channels are
      chosen) is left out of :meth:`fit` with one warning giving their number and a few ids;
      :meth:`predict`, :meth:`extrapolate`, :meth:`sample` and :meth:`predict_intensity` return
      NaN for such a series (with one warning), since there is nothing to condition on; its
      forecast grid starts at its last row's time. :meth:`score` counts it as zero observed
      values. A series with a single observation is fitted and predicted like any other;
    * a target column with no observed value in :meth:`fit` is a ValueError naming it;
    * when ``target_cols`` is not given, one warning names the columns left out (e.g. numbers
      stored as strings) and the targets that look like bookkeeping (bool flags, integer
      columns with a distinct value on every row such as a row id);
    * values too large to standardise (their column's mean or variance overflows), or whose
      standardised value or model time overflows float32 (e.g. a value far outside the
      training range at predict time), are a ValueError naming the column and a row, raised
      before any training or prediction.

    **Score.** :meth:`score` is the IWAE estimate (``10`` trajectory samples) of
    ``log p(x)`` of each series' observed values, summed over series and divided by the number
    of observed values, in the *original* units (the log-determinant of the per-channel
    scaling is subtracted), so it is comparable across models whose scalers were fitted on
    different data (e.g. cross-validation folds). Higher is better.

    **scikit-learn compatibility.** ``__init__`` only stores parameters, which are validated in
    :meth:`fit`; ``clone``, ``get_params`` / ``set_params``, :class:`~sklearn.pipeline.Pipeline`
    (route fit parameters as ``est__time_col=...``), :class:`~sklearn.model_selection.
    GridSearchCV` and ``cross_val_score`` with :class:`~sklearn.model_selection.GroupKFold`
    (``groups=df[id_col]``; :meth:`score` uses the column names stored at fit) and pickling
    (the network travels as a CPU ``state_dict``) work. Of
    :mod:`sklearn.utils.estimator_checks`, the checks that need only a constructed estimator
    run in the test suite (``check_no_attributes_set_in_init``, ``check_get_params_invariance``,
    ``check_set_params``, ``check_parameters_default_constructible``, ``check_estimator_repr``,
    ``check_estimator_cloneable``, ``check_estimators_unfitted``, tag checks...). The generic
    checks that fit on numpy arrays cannot apply: ``X`` must be a long DataFrame with named id
    and time columns, there is no ``y``, outputs are DataFrames aligned with rows, and a
    series' predictions depend on all its rows (so subset invariance does not hold by design).
    Their intent (pickling, parameters not overwritten by fit, idempotent fit, bad input,
    caller data unchanged) is covered by DataFrame-based tests.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from latentode import LatentODERegressor
    >>> t = np.linspace(0, 5, 30)
    >>> df = pd.DataFrame({"id": np.repeat([0, 1], 30), "t": np.tile(t, 2),
    ...                    "x": np.r_[np.sin(t), np.cos(t)]})
    >>> est = LatentODERegressor(latent_dim=4, rec_dim=8, units=16, n_layers=1, gru_units=16,
    ...                          encoder="gru", max_epochs=2, verbose=0, random_state=0)
    >>> est.fit(df).predict(df).shape
    (60, 3)
    """

    #: the methods that return NaN for a series left out of the fit (named in its warning)
    _empty_series_methods: ClassVar[str] = "predict and extrapolate"

    #: What each parameter may be, declared once (scikit-learn's ``_parameter_constraints``
    #: convention, with latentode's own constraint objects and error wording, see
    #: :mod:`latentode._param_validation`). :meth:`fit` checks it before touching the data and
    #: ``load`` re-checks a file's parameters with it. The option tuples are those of the layer
    #: that owns the choice (``nn`` encoders and observation weightings, ``ode`` solvers and
    #: gradients); the layers below still check the arguments of their own public functions.
    _parameter_constraints: ClassVar[dict[str, Any]] = {
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "encoder": [Options(ENCODERS)],
        "rec_dim": [Interval(Integral, 1, None, closed="left")],
        "units": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "gru_units": [Interval(Integral, 1, None, closed="left")],
        "decoder_layers": [Interval(Integral, 0, None, closed="left")],
        "gradient": [Options(GRADIENTS)],
        "solver": [Options(METHODS)],
        "rtol": [Interval(Real, 0, None, closed="neither")],
        "atol": [Interval(Real, 0, None, closed="neither")],
        "step_size": [None, Interval(Real, 0, None, closed="neither")],
        "n_traj_samples": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "lr_decay": [None, Interval(Real, 0, 1, closed="right")],
        "kl_warmup": [None, Interval(Real, 0, None, closed="left",
                                     description="be a non-negative number of epochs"),
                      Options(("exponential",)), IsCallable()],
        "obs_dropout": [Interval(Real, 0, 1, closed="left")],
        "obs_weighting": [Options(OBS_WEIGHTINGS)],
        "forecast_split": [None, Interval(Real, 0, 1, closed="neither")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "early_stopping": [Boolean()],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "scoring": [Options(REGRESSOR_SCORINGS)],
        "poisson_process": [Boolean()],
        "obs_std": [Options(("learned",)),
                    Interval(Real, 0, None, closed="neither", description="be a positive float")],
        "calibrate": [Boolean()],
        # resolved, and checked, by utils.resolve_device when fit runs: whether CUDA exists is a
        # property of the machine, not of the parameter (load checks the stored string itself)
        "device": "no_validation",
        "random_state": [None, Interval(Integral), InstanceOf(np.random.RandomState,
                                                              "a numpy RandomState")],
        "verbose": [Interval(Integral, 0, None, closed="left")],
        "warm_start": [Boolean()],
        "callbacks": [CheckedBy(check_callbacks)],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [CheckedBy(resolve_n_jobs)],  # also run by every public method
        "likelihood": [Options(LIKELIHOODS)],
        "obs_df": [Options(("learned",)),
                   Interval(Real, 0, None, closed="neither", description="be a positive float")],
        "linear_term": [Boolean()],
        "time_scale": [None, Interval(Real, 0, None, closed="neither",
                                      description="be a positive finite number")],
        "readout": [Options(READOUTS)],
        "readout_aux": [Interval(Real, 0, None, closed="left")],
        "readout_reach": [Options(READOUT_REACHES)],
        "forecast_share": [Interval(Real, 0, 1, closed="both")],
        "forecast_range": [Pair(Interval(Real, 0, 1, closed="neither"))],
        "weight_decay": [Interval(Real, 0, None, closed="left",
                                  description="be a non-negative finite number")],
        "readout_sides": [Options(READOUT_SIDES)],
        "mtan_ref_points": [Interval(Integral, 2, None, closed="left")],
        "mtan_embed_dim": [None, Interval(Integral, 2, None, closed="left")],
        "dynamics_activation": [Options(tuple(DYNAMICS_ACTIVATIONS))],
        "forecast_noise": [Boolean()],
        "posterior_time": [Options(POSTERIOR_TIMES)],
        "input_fences": [None, Interval(Real, 0, None, closed="neither",
                                        description="be a positive finite number")],
        "calibration_structure": [Options(CALIBRATION_STRUCTURES)],
        "point_prediction": [Options(POINT_PREDICTIONS)],
        "point_samples": [Interval(Integral, 1, None, closed="left")],
        "forecast_mode": [Options(FORECAST_MODES)],
        "calibration_density": [Boolean(),
                                Options(tuple(o for o in DENSITY_OPTIONS if isinstance(o, str)))],
        "lr_schedule": [None, Options(LR_SCHEDULES), IsCallable()],
        "min_lr": [None, Interval(Real, 0, None, closed="left",
                                  description="be a non-negative finite number")],
        "weight_averaging": [Interval(Real, 0, None, closed="left",
                                      description="be a non-negative finite number")],
    }

    #: Parameters read again by every prediction and :meth:`score` (so ``set_params`` on a
    #: fitted estimator applies), checked there against :attr:`_parameter_constraints`.
    _CALL_PARAMS: ClassVar[tuple[str, ...]] = ("batch_size", "random_state", "max_steps",
                                               "point_prediction", "point_samples")

    def __init__(
        self,
        latent_dim: int = 20,
        encoder: str = "odernn",
        rec_dim: int = 40,
        units: int = 50,
        n_layers: int = 3,
        gru_units: int = 50,
        decoder_layers: int = 0,
        gradient: str = "adjoint",
        solver: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        n_traj_samples: int = 3,
        max_epochs: int = 100,
        batch_size: int = 50,
        lr: float = 1e-2,
        lr_decay: float | None = None,
        kl_warmup: float | str | None = 10,
        obs_dropout: float = 0.0,
        obs_weighting: str = "value",
        forecast_split: float | None = None,
        validation_fraction: float = 0.1,
        early_stopping: bool = True,
        patience: int = 20,
        scoring: str = "loss",
        poisson_process: bool = False,
        obs_std: str | float = "learned",
        calibrate: bool = True,
        device: str | torch.device = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
        warm_start: bool = False,
        callbacks: Sequence[Any] | None = None,
        max_steps: int = 10_000,
        n_jobs: int | None = None,
        likelihood: str = "gaussian",
        obs_df: str | float = "learned",
        linear_term: bool = False,
        time_scale: float | None = None,
        readout: str = "neighbours",
        readout_aux: float = 1.0,
        readout_reach: str = "window",
        forecast_share: float = 0.0,
        forecast_range: tuple[float, float] = FORECAST_RANGE,
        weight_decay: float = 0.0,
        readout_sides: str = "shared",
        mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
        dynamics_activation: str = "tanh",
        forecast_noise: bool = False,
        posterior_time: str = "first",
        input_fences: float | None = None,
        calibration_structure: str = "training",
        point_prediction: str = "predictive_mean",
        point_samples: int = POINT_SAMPLES,
        forecast_mode: str = "swap",
        calibration_density: bool | str = "validated",
        lr_schedule: str | Callable[[int, int], float] | None = None,
        min_lr: float | None = None,
        weight_averaging: float = 0.0,
    ) -> None:
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.rec_dim = rec_dim
        self.units = units
        self.n_layers = n_layers
        self.gru_units = gru_units
        self.decoder_layers = decoder_layers
        self.gradient = gradient
        self.solver = solver
        self.rtol = rtol
        self.atol = atol
        self.step_size = step_size
        self.n_traj_samples = n_traj_samples
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.kl_warmup = kl_warmup
        self.obs_dropout = obs_dropout
        self.obs_weighting = obs_weighting
        self.forecast_split = forecast_split
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.scoring = scoring
        self.poisson_process = poisson_process
        self.obs_std = obs_std
        self.calibrate = calibrate
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.max_steps = max_steps
        self.n_jobs = n_jobs
        self.likelihood = likelihood
        self.obs_df = obs_df
        self.linear_term = linear_term
        self.time_scale = time_scale
        self.readout = readout
        self.readout_aux = readout_aux
        self.readout_reach = readout_reach
        self.forecast_share = forecast_share
        self.forecast_range = forecast_range
        self.weight_decay = weight_decay
        self.readout_sides = readout_sides
        self.mtan_ref_points = mtan_ref_points
        self.mtan_embed_dim = mtan_embed_dim
        self.dynamics_activation = dynamics_activation
        self.forecast_noise = forecast_noise
        self.posterior_time = posterior_time
        self.input_fences = input_fences
        self.calibration_structure = calibration_structure
        self.point_prediction = point_prediction
        self.point_samples = point_samples
        self.forecast_mode = forecast_mode
        self.calibration_density = calibration_density
        self.lr_schedule = lr_schedule
        self.min_lr = min_lr
        self.weight_averaging = weight_averaging

    # ------------------------------------------------------------------ sklearn plumbing
    # metadata routing: ``df`` is the data (scikit-learn's ``X``), never metadata to request
    # (only arguments named ``X`` / ``y`` are exempted by name)
    __metadata_request__fit = {"df": metadata_routing.UNUSED}
    __metadata_request__predict = {"df": metadata_routing.UNUSED}
    __metadata_request__score = {"df": metadata_routing.UNUSED}

    def __sklearn_tags__(self):
        """Long DataFrames with NaN and string ids; no ``y``."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks unobserved values
        tags.input_tags.string = True  # ids may be strings
        tags.input_tags.categorical = True
        tags.target_tags.required = False
        tags.non_deterministic = self.random_state is None
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support: the fitted state's pickle layout (the network as a CPU
        ``state_dict`` plus its hyper-parameters, see :class:`latentode._state.FittedState`)."""
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        if "model_" in state:
            state.update(FittedState.of(self).to_pickle())
        return state

    @classmethod
    def _added_params(cls) -> dict[str, Any]:
        """Parameters added after the first release, with the defaults that give an older
        pickle its former behaviour (:meth:`__setstate__`)."""
        return _ADDED_PARAMS

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name, default in self._added_params().items():  # pickled before it existed
            state.setdefault(name, default)
        fitted = None
        if "model_" in state:
            fitted = FittedState.from_pickle(state, stacklevel=3)
            for name in FITTED_ATTRIBUTES:
                state.pop(name, None)
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:  # pragma: no cover
            self.__dict__.update(state)
        if fitted is not None:
            fitted.attach(self)

    def _validate_params(self) -> None:
        """Check the parameters against :attr:`_parameter_constraints` (called by :meth:`fit`
        and by :func:`latentode.io.load_state`); raise a ValueError naming the first bad one.
        """
        validate_params(self._parameter_constraints, self.get_params(deep=False))

    # ------------------------------------------------------------------ fit
    @_with_n_jobs
    def fit(
        self,
        df: pd.DataFrame,
        y: None = None,
        *,
        time_col: str = "t",
        id_col: str | None = "id",
        target_cols: Sequence[str] | None = None,
        static_cols: Sequence[str] | None = None,
        group_col: str | None = None,
        validation_data: pd.DataFrame | None = None,
    ) -> LatentODERegressor:
        """Fit the Latent ODE to the series of a long DataFrame.

        Parameters
        ----------
        df : pandas.DataFrame
            Long format: one row per (series, time); ``NaN`` marks unobserved values. Not
            modified.
        y : None
            Ignored (present for scikit-learn API consistency).
        time_col : str, default="t"
            Time column: numbers or datetimes.
        id_col : str or None, default="id"
            Series identifier column; None means the whole frame is one series.
        target_cols : sequence of str, optional
            Channels to model; default every numeric column but the id, time and static
            columns.
        static_cols : sequence of str, optional
            Static covariates: columns with one value per series (age, sex, treatment arm...),
            numeric (standardised) or categorical (object, string, category or bool dtype;
            one-hot encoded). A value may be given on every row of its series or on some rows
            only (missing rows are ignored); two different values within a series are a
            ValueError naming the series. They condition the posterior of ``z_t0`` (the
            encoder's output head) and are never reconstructed by the likelihood; a series
            without a value is encoded as 0 with a missing-value indicator (see
            :class:`latentode.data.StaticEncoder`). :meth:`predict` and the other methods read
            them from their ``df``.
        group_col : str, optional
            Column marking related series (several stays of one patient, augmented or
            truncated copies of a series): series that share its value are kept on the same
            side of the validation split (``validation_fraction``), so that no validation
            series has a relative among the training series. One value per series, given on
            every row or on some rows (missing rows are ignored); a value varying within a
            series, or a series without a value, is a ValueError naming the series. The split
            then draws ``round(validation_fraction * n_groups)`` groups (see
            :func:`latentode.data.split_series`, ``groups``); with every series its own
            group, it is the split without ``group_col``. It may be the id column or a static
            column; it is never a target (left out of the automatic ``target_cols``). Only
            ``fit`` reads it. Not with ``validation_data`` (there is no split to group).
        validation_data : pandas.DataFrame, optional
            The validation series, given apart (as Keras's ``validation_data`` or LightGBM's
            ``eval_set``): a long frame with ``df``'s time, id, target and static columns
            (its ids are its own). Checked with the rules of ``df`` (see
            :func:`latentode.data.validate_holdout`; series without an observed target value
            are left out with a warning) and encoded with the time encoder, scaler and static
            encoder fitted on ``df`` alone; then no validation split of ``df`` is drawn
            (``validation_fraction`` is not used) and every series of ``df`` trains. These
            series serve where the drawn ones would: early stopping and the choice of the best
            weights (``scoring``), and the interval calibration (``calibrate``). Use it when
            ``df`` holds related series (augmented or truncated copies) or when validation
            should look like the test series. Not modified. Only ``fit`` reads it.

        Returns
        -------
        self : LatentODERegressor
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters or input (missing columns, non-numeric targets, NaN / inf
            times, an empty frame, a target column or every series without an observed value,
            values too large to standardise, a ``group_col`` varying within a series or missing
            for one, ``group_col`` with ``validation_data``, a ``validation_data`` frame that
            cannot be used: its message starts with ``"validation_data:"``); the message
            names the column, series or row. Raised before any training.
            A failed fit leaves the estimator as it was (unfitted, or its previous fit).

        Warns
        -----
        UserWarning
            Once if series without any observed target value were left out (their number and
            a few ids); once if the targets were chosen automatically and columns were left
            out or look like bookkeeping; once if duplicate (id, time) rows were averaged.

        Notes
        -----
        Training runs for at most ``max_epochs`` epochs and ends with the best weights (lowest
        validation loss, else training loss) restored. Ctrl-C stops training cleanly: the
        estimator is then fitted with the best weights so far (``history_.stopped_reason ==
        "interrupted"``). With ``warm_start=True`` and a previous fit, training continues from
        the fitted network, encoder and scaler; ``time_col``, ``id_col``, the targets, the static
        columns and the parameters that shape the network (see ``warm_start``) must match the
        previous fit.

        **Distributed training.** When a :mod:`torch.distributed` process group with more than
        one process is initialised (a script launched with ``torchrun`` that called
        :func:`latentode.training.distributed.init_from_env`), ``fit`` trains one model across
        the processes: every rank must call it with the same ``df`` and parameters (checked),
        forms the same global batches of ``batch_size`` series and trains on its share of each;
        the result equals a single-process fit up to floating-point summation order. Rank 0's
        seed is used when ``random_state`` is None; ``device="auto"`` / ``"cuda"`` mean
        ``cuda:LOCAL_RANK``; only rank 0 shows progress and computes the calibration (shared
        with the others); every rank ends with the same fitted estimator. Ctrl-C on one rank
        (or a callback's stop on one rank) stops every rank cleanly after the same batch
        (epoch). See the README's "Distributed training".
        """
        return self._fit(df, None, time_col=time_col, id_col=id_col, target_cols=target_cols,
                         static_cols=static_cols, group_col=group_col,
                         validation_data=validation_data)

    # ------------------------------------------------------------ fit, shared with the classifier
    def _fit(self, df: pd.DataFrame, y: Any, *, time_col: Hashable, id_col: Hashable | None,
             target_cols: Sequence[Hashable] | None,
             static_cols: Sequence[Hashable] | None,
             group_col: Hashable | None = None,
             validation_data: pd.DataFrame | None = None,
             validation_y: Any = None) -> LatentODERegressor:
        """The body of :meth:`fit`; ``y`` goes to :meth:`_series_labels`, ``validation_y``
        (the labels of ``validation_data``) to :meth:`_held_labels` (subclass hooks:
        :meth:`_series_labels`, :meth:`_held_labels`, :meth:`_build_model`, :meth:`_init_model`,
        :meth:`_refresh_model`, :meth:`_loss_options`, :meth:`_calibrates`,
        :meth:`_check_distributed`)."""
        self._validate_params()
        # lr_schedule with lr_decay, min_lr above lr (the training layer's check, before the data)
        check_lr_schedule(self.lr_schedule, self.lr_decay, float(self.lr),
                          None if self.min_lr is None else float(self.min_lr))
        distributed = _distd.is_distributed()
        if distributed:
            self._check_distributed()
        # under torchrun, "auto" / "cuda" mean this rank's GPU (cuda:LOCAL_RANK)
        device = _distd.rank_device(resolve_device(self.device))
        if not distributed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            warnings.warn(
                f"fit runs under a launcher with WORLD_SIZE={os.environ['WORLD_SIZE']} but no "
                "torch.distributed process group is initialised, so every process trains its "
                "own model; call latentode.training.distributed.init_from_env() first to train "
                "one model across the processes.", RuntimeWarning, stacklevel=2,
            )
        reuse = bool(self.warm_start) and self.__sklearn_is_fitted__()
        if reuse:
            self._check_warm_start_columns(time_col, id_col, target_cols, static_cols)
            self._check_warm_start_network()
        statics = _data.check_static_cols(static_cols, df, time_col=time_col, id_col=id_col,
                                          target_cols=[] if target_cols is None else target_cols)
        vf = _data.validate_frame(
            df, time_col=time_col, id_col=id_col,
            target_cols=None if reuse else target_cols,
            expected_targets=self.target_cols_ if reuse else None,
            empty_series="drop", empty_channels="raise",
            exclude=statics if group_col is None else [*statics, group_col],
        )
        if statics:  # (a static column named like a target column is refused above)
            _data.check_static_cols(statics, df, time_col=time_col, id_col=id_col,
                                    target_cols=vf.target_cols)
        static_values = _data.series_static(df, vf, statics) if statics else None
        labels, classes, weights = self._series_labels(df, vf, y)
        held = held_static = held_labels = held_weights = None
        if validation_data is not None:
            if group_col is not None:
                raise ValueError(
                    f"group_col={group_col!r} keeps related series on one side of the "
                    "validation split drawn from df; with validation_data no split is drawn. "
                    "Give one of them (keep the relatives of the validation series out of df)."
                )
            held, held_static = _data.validate_holdout(validation_data, vf, static_cols=statics)
            held_labels, held_weights = self._held_labels(validation_data, held, validation_y,
                                                          classes, labels)
        strata = None if labels is None else labels == UNLABELLED
        groups = None if group_col is None else _data.series_groups(
            df, vf, group_col, target_cols=vf.target_cols, strata=strata)
        if len(vf.dropped_series):
            warnings.warn(
                f"{dropped_series_message(vf, 'the fit')}; "
                f"{self._empty_series_methods} return NaN for such series.",
                UserWarning, stacklevel=external_stacklevel(),
            )
        if self.forecast_split is not None and (vf.n_observed_points < 2).all():
            raise ValueError(
                "forecast_split needs series with at least two observed time points (one to "
                "condition on, one to forecast); every series of df has a single one."
            )
        self._check_posterior_time()
        if self.forecast_share > 0 and self.forecast_split is not None:
            raise ValueError(
                f"forecast_share={self.forecast_share!r} and forecast_split="
                f"{self.forecast_split!r} are two training tasks (a mix of reconstruction and "
                "forecasts at random splits, or forecasts alone at one split); set "
                "forecast_share=0 or forecast_split=None."
            )
        if reuse:
            encoder, scaler = self.time_encoder_, self.scaler_
            static_encoder = self.static_encoder_
        else:
            encoder = _data.TimeEncoder(
                scale=None if self.time_scale is None else float(self.time_scale),
            ).fit(vf.times, groups=vf.series_codes)
            scaler = _data.ChannelScaler().fit(vf.values)
            static_encoder = (None if static_values is None
                              else _data.StaticEncoder().fit(static_values))
        padded = _data.pad_frame(vf, encoder, scaler)  # raises if the time kind changed
        padded = padded.with_series(
            static=None if static_encoder is None else static_encoder.transform(
                static_values, vf.series_ids, id_col),
            labels=labels, weights=weights)
        given = None
        if held is not None:  # the validation series given apart, encoded as df's
            try:
                given = _data.pad_frame(held, encoder, scaler).with_series(
                    static=None if static_encoder is None else static_encoder.transform(
                        held_static, held.series_ids, id_col),
                    labels=held_labels, weights=held_weights)
            except ValueError as err:
                raise ValueError(f"validation_data: {err}") from err
        n_static = 0 if static_encoder is None else static_encoder.width

        seed = draw_seed(self.random_state)
        if distributed:  # every rank must split, shuffle and draw noise alike: rank 0's seed
            _distd.check_same(_fingerprint(padded, self.get_params())
                              + ([] if given is None else _fingerprint(given, {})),
                              "the data or the estimator's parameters", device)
            seed = _distd.broadcast_int(seed, device)
        seeds = _fit_seeds(seed)
        if given is None:
            train_idx, val_idx = _data.split_series(  # labelled and unlabelled series apart
                vf.n_series, float(self.validation_fraction), np.random.default_rng(seeds[0]),
                strata=strata, groups=groups,
            )
            train = _data.subset(padded, train_idx)
            val = _data.subset(padded, val_idx) if len(val_idx) else None
            val_labels = None if val is None or labels is None else labels[val_idx]
        else:  # every series of df trains; seeds[0] (the split's) goes unused
            train, val, val_labels = padded, given, held_labels
        shuffle_rng = np.random.default_rng(seeds[1])
        batch_size = int(self.batch_size)

        def train_loader() -> Iterator[_data.Batch]:
            return _data.iterate_batches(train, batch_size, shuffle=True, generator=shuffle_rng,
                                         device=device)

        def val_loader() -> Iterator[_data.Batch]:
            return _data.iterate_batches(val, batch_size, device=device)

        if reuse:
            model = copy.deepcopy(self.model_)  # a failed fit must not touch the fitted model
            self._refresh_model(model)
        else:
            with torch_seeded(int(seeds[2]), device):
                model = self._build_model(vf.n_channels, n_static,
                                          n_classes=0 if classes is None else len(classes))
            model.set_intensity_base(torch.as_tensor(_data.observation_rates(train)))
            # each channel's typical spacing: the reach's start, and a split readout's
            # one-sided residual fades over it (computed only for a readout that reads it)
            if model.readout is not None and (self.readout_reach == "spacing"
                                              or self.readout_sides == "split"):
                spacing = torch.as_tensor(_data.observation_spacing(train))
                if self.readout_reach == "spacing":
                    model.set_readout_reach(spacing)
                model.set_readout_spacing(spacing)
        # the fences of the conditioning values, from the values of df in the scaler's units
        # (infinite: none); refitted on a warm start, so that they follow input_fences
        low, high = (np.full(vf.n_channels, -np.inf), np.full(vf.n_channels, np.inf))
        if self.input_fences is not None:
            low, high = _data.channel_fences(scaler.transform(vf.values),
                                             width=float(self.input_fences))
        model.set_input_fences(torch.as_tensor(low), torch.as_tensor(high))
        model.to(device)
        if not reuse:
            self._init_model(model, train)
        split = None if self.forecast_split is None else float(self.forecast_split)
        history = _fit_model(
            model, train_loader, val_loader if val is not None else None,
            max_epochs=int(self.max_epochs), lr=float(self.lr), kl_warmup=self.kl_warmup,
            n_traj_samples=int(self.n_traj_samples), early_stopping=bool(self.early_stopping),
            patience=int(self.patience), verbose=int(self.verbose), device=device,
            generator=make_generator(int(seeds[2]), device), obs_dropout=float(self.obs_dropout),
            obs_weighting=self.obs_weighting, forecast_split=split,
            lr_decay=None if self.lr_decay is None else float(self.lr_decay),
            lr_schedule=self.lr_schedule,
            min_lr=None if self.min_lr is None else float(self.min_lr),
            distributed=distributed, loss_options=self._loss_options(),
            callbacks=check_callbacks(self.callbacks),
            forecast_share=float(self.forecast_share),
            forecast_range=(float(self.forecast_range[0]), float(self.forecast_range[1])),
            forecast_mode=self.forecast_mode, weight_decay=float(self.weight_decay),
            weight_averaging=float(self.weight_averaging),
            **self._fit_options(classes, val_labels),
        )
        model.eval()
        model.spread_scale.fill_(1.0)
        model.gap_spread.reset()
        if self.calibrate and val is not None and self._calibrates():
            # "training": the factors' structure from the training series (on the CPU; the
            # calibration moves the subset it draws), their level from the validation series
            structure = (_data.iterate_batches(train, batch_size)
                         if self.calibration_structure == "training" else None)

            def calibrate() -> None:
                calibrate_spread(model, list(val_loader()), forecast_split=split,
                                 generator=_calibration_generator(seed, device),
                                 structure=structure,
                                 by_density=self.calibration_density,
                                 verbose=int(self.verbose))

            if distributed:  # rank 0 calibrates, every rank receives its factors
                _distd.from_rank0(calibrate, model.spread_scale, model.gap_spread.edges,
                                  model.gap_spread.factors, model.gap_spread.tail_df,
                                  model.gap_spread.density_slope,
                                  model.gap_spread.density_ref,
                                  model.gap_spread.density_shrink,
                                  model.gap_spread.density_losses)
            else:
                calibrate()
        if reuse:
            history = _concat_histories(self.history_, history)

        # commit: only now does the estimator change (a failure above leaves it untouched)
        FittedState.from_fit(model, history, encoder, scaler, time_col, id_col,
                             list(vf.target_cols), device, statics, static_encoder,
                             classes).attach(self)
        return self

    def _series_labels(
        self, df: pd.DataFrame, vf: Any, y: Any
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Per-series class indices, the classes and per-series loss weights (``vf.series_ids``
        order); the regressor has none (``y`` is ignored)."""
        return None, None, None

    def _held_labels(
        self, df: pd.DataFrame, held: Any, y: Any, classes: np.ndarray | None,
        labels: np.ndarray | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Class indices and loss weights of the validation series given apart (``held``,
        ``df`` validated; ``y`` their labels), in the classes and with the class weights of the
        training series (``labels``); the regressor has none."""
        return None, None

    def _loss_options(self) -> dict[str, Any]:
        """Extra keyword arguments of :meth:`LatentODE.loss` for training: the readout's
        auxiliary weight (ignored by a model without a readout)."""
        return {"readout_aux": float(self.readout_aux)}

    def _fit_options(self, classes: np.ndarray | None,
                     val_labels: np.ndarray | None) -> dict[str, Any]:
        """Extra keyword arguments of :func:`fit_model` (here ``scoring``'s ``val_metric``,
        which watches the training loss when there are no validation series), given the
        classes and the class indices of the validation series (None without labels or
        validation); may raise a ValueError (before training)."""
        return {"val_metric": self.scoring}

    def _init_model(self, model: LatentODE, train: Any) -> None:
        """Set what a new network learns from the training series before training (``train``,
        the padded training series; the model is on its device); the regressor has nothing."""

    def _refresh_model(self, model: LatentODE) -> None:
        """Bring a copy of the fitted network up to this fit's parameters (warm start): the
        solver's settings and step budget (the parameters that shape the network must match,
        :meth:`_check_warm_start_network`)."""
        for name, value in self._solver_settings().items():
            setattr(model, name, value)
            model.hparams[name] = value

    def _solver_settings(self) -> dict[str, Any]:
        """The network's solver settings from this estimator's parameters (``LatentODE``'s
        keyword arguments and attributes of the same names): a new network is built with them
        and a warm start applies them."""
        return {"method": self.solver, "rtol": float(self.rtol), "atol": float(self.atol),
                "step_size": _DEFAULT_STEP if self.step_size is None else float(self.step_size),
                "gradient": self.gradient, "max_steps": int(self.max_steps)}

    def _calibrates(self) -> bool:
        """Whether ``calibrate=True`` fits the predictive spread (it needs a trained decoder)."""
        return True

    def _check_distributed(self) -> None:
        """Raise if this estimator cannot train distributed with its parameters (the regressor
        can, without ``weight_averaging``)."""
        if float(self.weight_averaging) > 0.0:
            raise ValueError(f"weight_averaging={self.weight_averaging!r} is not supported in "
                             "distributed training; use weight_averaging=0.")

    def _check_posterior_time(self) -> None:
        """Raise if ``posterior_time`` cannot apply to this fit (``"last"`` with the Poisson
        process, which integrates the intensity from each series' start)."""
        if self.posterior_time == "last" and self.poisson_process:
            raise ValueError(
                "posterior_time='last' cannot be combined with poisson_process=True: the "
                "Poisson term integrates the intensity from each series' start; use "
                "posterior_time='first'."
            )

    def _build_model(self, n_channels: int, n_static: int = 0, **kwargs: Any) -> LatentODE:
        return LatentODE(
            n_channels, latent_dim=int(self.latent_dim), rec_dim=int(self.rec_dim),
            encoder=self.encoder, units=int(self.units), n_layers=int(self.n_layers),
            gru_units=int(self.gru_units), decoder_layers=int(self.decoder_layers),
            poisson_process=bool(self.poisson_process), **self._solver_settings(),
            obs_std=self.obs_std if self.obs_std == "learned" else float(self.obs_std),
            likelihood=self.likelihood,
            obs_df=self.obs_df if self.obs_df == "learned" else float(self.obs_df),
            linear_term=bool(self.linear_term), readout=self.readout,
            readout_sides=self.readout_sides, n_static=int(n_static),
            mtan_ref_points=int(self.mtan_ref_points),
            mtan_embed_dim=None if self.mtan_embed_dim is None else int(self.mtan_embed_dim),
            dynamics_activation=self.dynamics_activation,
            forecast_noise=bool(self.forecast_noise), posterior_time=self.posterior_time,
            readout_reach=self.readout_reach, **kwargs,
        )

    def _check_warm_start_columns(
        self, time_col: Hashable, id_col: Hashable | None, target_cols: Sequence[Hashable] | None,
        static_cols: Sequence[Hashable] | None = None,
    ) -> None:
        if time_col != self.time_col_ or id_col != self.id_col_:
            raise ValueError(
                "warm_start=True continues the previous fit, which used "
                f"time_col={self.time_col_!r}, id_col={self.id_col_!r}; got "
                f"time_col={time_col!r}, id_col={id_col!r}. Use warm_start=False to refit."
            )
        if target_cols is not None and list(target_cols) != list(self.target_cols_):
            raise ValueError(
                f"warm_start=True needs the same target columns as the previous fit "
                f"({self.target_cols_}), got {list(target_cols)}."
            )
        statics = [] if static_cols is None else list(static_cols)
        if statics != list(self.static_cols_):
            raise ValueError(
                f"warm_start=True needs the same static columns as the previous fit "
                f"({self.static_cols_}), got {statics}."
            )

    def _check_warm_start_network(self) -> None:
        """Raise if a parameter that shapes the fitted network (:data:`_NETWORK_PARAMS`)
        differs from the one it was built with: a warm start continues that network."""
        built = self.model_.hparams
        for name in _NETWORK_PARAMS:
            if built.get(name) is None and name == "readout_reach":
                continue  # a network saved before its reach's start was recorded
            if name not in built:  # a network saved before the parameter existed
                continue
            if ((name.startswith("mtan_") and built.get("encoder") != "mtan")
                    or (name == "obs_df" and built.get("likelihood") != "student_t")
                    or (name in ("readout_sides", "readout_reach")
                        and built.get("readout") == "latent")):
                continue  # not used by the fitted network
            fitted, given = built[name], getattr(self, name)
            numeric = all(isinstance(v, Real) and not isinstance(v, str) for v in (fitted, given))
            if (float(fitted) != float(given)) if numeric else (fitted != given):
                raise ValueError(
                    f"warm_start=True continues the fitted network, which was built with "
                    f"{name}={_plain(fitted)!r}; got {name}={given!r}. Set it back, or use "
                    "warm_start=False to fit a new network."
                )

    # ------------------------------------------------------------------ predict
    @_with_n_jobs
    def predict(
        self,
        df: pd.DataFrame,
        quantiles: Sequence[float] | None = None,
        n_samples: int = _QUANTILE_SAMPLES,
    ) -> pd.DataFrame:
        """Reconstruct / impute every target channel at each row's time.

        Each series is conditioned on its own observed (non-NaN) target values in ``df``;
        rows where some or all targets are NaN are predicted too (imputation).

        Parameters
        ----------
        df : pandas.DataFrame
            Long frame with the fitted id, time and target columns (extra columns are
            ignored). Series may be new (ids not seen in fit). Not modified.
        quantiles : sequence of float, optional
            Levels in ``(0, 1)``, sorted ascending and unique (e.g. ``(0.05, 0.5, 0.95)``).
            Adds, after each target column ``col``, the columns ``f"{col}_q{q:g}"`` holding
            quantiles of the predictive distribution of an observation (see Notes).
        n_samples : int, default=100
            Posterior samples of ``z_t0`` behind the quantiles (ignored without
            ``quantiles``).

        Returns
        -------
        pandas.DataFrame
            Exactly one row per row of ``df``, same index and order, with the id (if any) and
            time columns copied from ``df`` followed by the predicted target columns (the
            point prediction of ``point_prediction``, in original units) and, with
            ``quantiles``, the
            quantile columns. The rows of a series with no observed target value are NaN
            (nothing to condition on; one warning names such series).

        Raises
        ------
        ValueError
            If a target column is missing, times are NaN / inf, a value overflows float32 once
            standardised, ``quantiles`` are not sorted unique levels in ``(0, 1)``, a quantile
            column (``f"{col}_q{q:g}"``) would overwrite a fitted column,
            ``n_samples < 1``, or ``max_steps``, ``batch_size``, ``random_state``,
            ``point_prediction`` or ``point_samples`` was set (``set_params`` after ``fit``) to
            a value ``fit`` would refuse.

        Notes
        -----
        The predictive distribution is the mixture, over ``n_samples`` posterior samples of
        ``z_t0`` (each decoded along its own ODE trajectory), of the observation model
        (``likelihood``: Gaussians by default) with the learned per-channel scale; its
        quantiles are found by inverting the mixture CDF numerically, in original units. They
        are deterministic for a fixed ``random_state``.
        The mean columns do not depend on ``quantiles`` or ``n_samples``: they are the point
        prediction of ``point_prediction``, as without quantiles.
        """
        return self._predict_frame(df, quantiles=quantiles, n_samples=n_samples)

    @_with_n_jobs
    def extrapolate(
        self,
        df: pd.DataFrame,
        horizon: float | pd.Timedelta = 2.0,
        n_points: int = 20,
        *,
        times: Any = None,
        quantiles: Sequence[float] | None = None,
        n_samples: int = _QUANTILE_SAMPLES,
    ) -> pd.DataFrame:
        """Forecast each series after its last observation.

        Parameters
        ----------
        df : pandas.DataFrame
            Observed history of each series (fitted id, time and target columns).
        horizon : float or pandas.Timedelta, default=2.0
            Forecast window after each series' last observed time. For a datetime time column
            it may be a :class:`pandas.Timedelta` (or anything :func:`pandas.to_timedelta`
            reads) or a float in the time encoder's unit (``time_encoder_.unit``).
        n_points : int, default=20
            Number of equally spaced forecast times in ``(last, last + horizon]``.
        times : array-like or pandas.DataFrame, optional
            Explicit forecast times instead of ``horizon`` / ``n_points``: an array of absolute
            times (same type as the time column) used for every series, or a DataFrame with the
            id and time columns giving each series' own times (its row order and index are
            kept). Times may also precede the last observation (then it is interpolation).
        quantiles : sequence of float, optional
            Levels in ``(0, 1)``, sorted ascending and unique: adds ``f"{col}_q{q:g}"``
            columns of predictive quantiles after each target column, as in :meth:`predict`.
        n_samples : int, default=100
            Posterior samples of ``z_t0`` behind the quantiles (ignored without
            ``quantiles``).

        Returns
        -------
        pandas.DataFrame
            Long frame ``[id, time, *target_cols]`` (no id column when fitted with
            ``id_col=None``) of forecasts (``point_prediction``), in original units; series in the
            order of their first appearance in ``df``, times ascending (with ``times``: in the
            order given, or the rows and index of a ``times`` DataFrame). With ``quantiles``,
            each target column is followed by its quantile columns. A series with no observed
            target value gets NaN forecasts (one warning names such series), on a grid that
            starts at its last row's time.
        """
        return self._predict_frame(df, times=times, grid=(horizon, n_points),
                                   quantiles=quantiles, n_samples=n_samples)

    @_with_n_jobs
    def sample(
        self,
        df: pd.DataFrame,
        n_samples: int,
        *,
        times: Any = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> pd.DataFrame:
        """Draw predictive samples: posterior ``z_t0`` samples through the ODE plus noise.

        Each draw ``s`` takes its own posterior sample of every series' initial latent state,
        decodes the latent trajectory at the query times and adds observation noise of the
        fitted ``likelihood`` (Gaussian by default) with the learned per-channel scale
        (independent per row and channel), in original units.

        Parameters
        ----------
        df : pandas.DataFrame
            Conditioning data (fitted id, time and target columns).
        n_samples : int
            Number of draws, ``>= 1``.
        times : array-like or pandas.DataFrame, optional
            Query times as in :meth:`extrapolate` (one array for every series, or a DataFrame
            with the id and time columns). Default: the rows of ``df``.
        random_state : int, RandomState instance or None, optional
            Seeds the draws; default the estimator's ``random_state``.

        Returns
        -------
        pandas.DataFrame
            ``n_samples * n_rows`` rows with a RangeIndex: a ``sample`` column (``0 ..
            n_samples - 1``) followed by the query columns (id, time) and the sampled target
            columns. Rows are ordered by sample, then in the query order (the rows of ``df``,
            or of :meth:`extrapolate`'s output for ``times``), so
            ``out[targets].to_numpy().reshape(n_samples, n_rows, n_targets)`` works.

        Raises
        ------
        ValueError
            If ``n_samples < 1`` or the input is invalid (as in :meth:`predict`).
        """
        return self._predict_frame(df, times=times, output="samples", n_samples=n_samples,
                                   random_state=random_state)

    @_with_n_jobs
    def predict_intensity(self, df: pd.DataFrame, times: Any = None) -> pd.DataFrame:
        """Expected observation rate of each channel (models with ``poisson_process=True``).

        The model treats each channel's observation times as an inhomogeneous Poisson process
        whose intensity is a function of the latent state; this returns that intensity along
        each series' posterior-mean trajectory, as the expected number of observations per
        unit of the user's time (the time column's unit, or ``time_encoder_.unit`` for
        datetimes).

        Parameters
        ----------
        df : pandas.DataFrame
            Conditioning data (fitted id, time and target columns).
        times : array-like or pandas.DataFrame, optional
            Query times as in :meth:`extrapolate`. Default: the rows of ``df``.

        Returns
        -------
        pandas.DataFrame
            Aligned like :meth:`predict` (``times=None``: the index and order of ``df``) or
            :meth:`extrapolate` (``times`` given): id (if any) and time columns followed by
            one rate column per target channel (non-negative).

        Raises
        ------
        ValueError
            If the model was not fitted with ``poisson_process=True``, or for invalid input.
        """
        return self._predict_frame(df, times=times, output="intensity")

    @_with_n_jobs
    def score(self, df: pd.DataFrame, y: None = None) -> float:
        """Mean IWAE log-likelihood per observed value (higher is better).

        Parameters
        ----------
        df : pandas.DataFrame
            Long frame with the fitted columns (names stored at fit).
        y : None
            Ignored.

        Returns
        -------
        float
            ``(sum_series log p_hat(x_series) - sum_obs log scale_c) / n_observed``, where
            ``p_hat`` is the importance-weighted estimate with 10 trajectory samples and
            ``scale_c`` the per-channel standardisation scale (so the value is a log-density
            in the original units). Deterministic for a fixed ``random_state``.
        """
        check_is_fitted(self)
        vf, padded = self._prepare(df)
        counts = vf.observed.sum(axis=0)
        if int(counts.sum()) == 0:
            raise ValueError("df has no observed target value to score.")
        if (padded.lengths == 0).any():  # nothing to score: log p(no values) = 0
            padded = _data.subset(padded, np.flatnonzero(padded.lengths > 0))
        gen = make_generator(draw_seed(self.random_state), self.device_)
        dtype = next(self.model_.parameters()).dtype
        total = 0.0
        self.model_.eval()
        with torch.no_grad():
            for k, batch in enumerate(_data.iterate_batches(
                    padded, int(self.batch_size), device=self.device_, dtype=dtype)):
                ids = padded.series_ids[k * int(self.batch_size):][:batch.batch_size]
                ll = self._solve(ids, self.model_.log_likelihood, batch, _SCORE_SAMPLES,
                                 generator=gen)
                total += float(ll.sum())
        total -= float((counts * np.log(self.scaler_.scale_)).sum())
        return total / int(counts.sum())

    @_with_n_jobs
    def recalibrate(self, df: pd.DataFrame) -> LatentODERegressor:
        """Calibrate the fitted model's intervals on held-out series, without refitting.

        As scikit-learn's ``CalibratedClassifierCV(cv="prefit")``: the network, hence every
        point prediction, is unchanged; only the calibration of the predictive spread
        (``model_.spread_scale`` and ``model_.gap_spread``) is fitted again, on ``df``'s
        series, as :meth:`fit` fits it on the validation series (``calibrate``): values hidden
        inside each series (10 %, 30 % and 50 % of them in turn) and the values after a split of
        each series (forecasts). With ``calibration_structure="training"`` (the default) the
        relative structure is kept (the channels' ratios, the gap cells' edges and factors,
        the calibrated tails) and only its level is refitted: one multiplier per kind of query
        (hidden values, forecasts), pooled over channels and cells
        (:func:`latentode.training.calibrate_level`). The level fitted on the few validation
        series of a fit is the calibration's main error (docs/results/calibration.md): more
        held-out series measure it better. With ``"validation"`` every factor is refitted on
        ``df`` (:func:`latentode.training.calibrate_spread`, the calibration of a fit with
        ``"validation"``; it needs a few hundred series to fit the gap cells and tails).

        The series of ``df`` must not have been used to fit the estimator (neither training
        nor validation series): the calibration measures the model's errors on series it has
        not seen, which this method cannot check. A model fitted with ``calibrate=False`` (or
        without validation series) has no fitted structure: with ``"training"`` it then gets
        one multiplier per kind on uniform factors, with ``"validation"`` a full calibration.

        Parameters
        ----------
        df : pandas.DataFrame
            Held-out series, in the long format of :meth:`predict` (the fitted id, time,
            target and static columns; other columns are ignored). Series without an observed
            target value are left out with a warning. Not modified.

        Returns
        -------
        self
            The estimator, recalibrated.

        Raises
        ------
        ValueError
            As :meth:`predict` for an unusable ``df`` (a missing column, NaN / inf times, an
            empty frame, every series without an observed value), for a
            ``calibration_structure`` or ``forecast_split`` set (``set_params``) to a value
            ``fit`` would refuse, or for an estimator without a predictive spread to calibrate
            (:class:`~latentode.LatentODEClassifier` with ``classifier="encoder"``). Raised
            before any change: a failed call leaves the estimator as it was.

        Warns
        -----
        UserWarning
            Once if series without an observed target value were left out (a few of their
            ids).

        Notes
        -----
        Deterministic for a fixed ``random_state`` (the generator of the fit's calibration).
        A kind of query with fewer than 20 held-out values keeps its level (``"training"``),
        a channel or cell with fewer than 20 its factor 1 (``"validation"``), as in
        :meth:`fit`. The forecasts split each series at ``forecast_split`` when it is set (as
        in :meth:`fit`). Saved files and pickles keep the new calibration.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from latentode import LatentODERegressor
        >>> rng = np.random.default_rng(0)
        >>> t = np.linspace(0, 5, 20)
        >>> def frame(ids):
        ...     return pd.DataFrame({"id": np.repeat(ids, 20), "t": np.tile(t, len(ids)),
        ...                          "x": np.sin(t + rng.uniform(0, 6, (len(ids), 1))).ravel()})
        >>> est = LatentODERegressor(latent_dim=4, rec_dim=8, units=16, n_layers=1,
        ...                          gru_units=16, encoder="gru", max_epochs=2, verbose=0,
        ...                          random_state=0).fit(frame(range(20)))
        >>> test = frame([200, 201])
        >>> before = est.predict(test)
        >>> est.recalibrate(frame(range(100, 140))) is est  # 40 series not seen in fit
        True
        >>> est.predict(test).equals(before)  # the point predictions are unchanged
        True
        """
        check_is_fitted(self)
        names = ("calibration_structure", "forecast_split", "calibration_density")
        validate_params({name: self._parameter_constraints[name] for name in names},
                        {name: getattr(self, name) for name in names})
        if not self._calibrates():
            raise ValueError(f"This {type(self).__name__} has no predictive spread to calibrate "
                             "(a LatentODEClassifier's is that of classifier='latent').")
        vf, padded = self._prepare(df, empty_series="drop")
        if len(vf.dropped_series):
            warnings.warn(
                f"{dropped_series_message(vf, 'the recalibration')}.",
                UserWarning, stacklevel=external_stacklevel(),
            )
        dtype = next(self.model_.parameters()).dtype
        batches = list(_data.iterate_batches(padded, int(self.batch_size),
                                             device=self.device_, dtype=dtype))
        generator = _calibration_generator(draw_seed(self.random_state), self.device_)
        split = None if self.forecast_split is None else float(self.forecast_split)
        model = copy.deepcopy(self.model_)  # a failure must leave the fitted model untouched
        if self.calibration_structure == "training":
            calibrate_level(model, batches, forecast_split=split, generator=generator)
        else:
            calibrate_spread(model, batches, forecast_split=split, generator=generator,
                             by_density=self.calibration_density)
        self.model_.load_state_dict(model.state_dict())  # commit
        return self

    # ------------------------------------------------------------------ internals
    def _prepare(self, df: pd.DataFrame, empty_series: str = "keep") -> tuple[Any, Any]:
        """Validate ``df`` against the fitted columns; return it validated and padded.

        Also checks the parameters that every prediction reads again
        (:attr:`_CALL_PARAMS`), which ``set_params`` may have changed since ``fit``.
        ``empty_series`` (``"keep"`` or ``"drop"``): what becomes of the series without an
        observed target value (:func:`latentode.data.validate_frame`).
        """
        check_is_fitted(self)
        validate_params({name: self._parameter_constraints[name] for name in self._CALL_PARAMS},
                        {name: getattr(self, name) for name in self._CALL_PARAMS})
        vf = _data.validate_frame(
            df, time_col=self.time_col_, id_col=self.id_col_, expected_targets=self.target_cols_,
            empty_series=empty_series,
        )
        padded = _data.pad_frame(vf, self.time_encoder_, self.scaler_)
        if self.static_encoder_ is not None:  # the static covariates of each series
            cols = _data.check_static_cols(self.static_cols_, df, time_col=self.time_col_,
                                           id_col=self.id_col_, fitted=True)
            padded = padded.with_series(static=self.static_encoder_.transform(
                _data.series_static(df, vf, cols), vf.series_ids, self.id_col_))
        return vf, padded

    def _predict_frame(
        self,
        df: pd.DataFrame,
        *,
        times: Any = None,
        grid: tuple[Any, Any] | None = None,
        output: Literal["mean", "samples", "intensity"] = "mean",
        quantiles: Sequence[float] | None = None,
        n_samples: int = 1,
        random_state: int | np.random.RandomState | None = None,
    ) -> pd.DataFrame:
        """The one path behind :meth:`predict`, :meth:`extrapolate`, :meth:`sample` and
        :meth:`predict_intensity`: check, build the query, predict, shape the frame.

        Parameters
        ----------
        df : pandas.DataFrame
            Conditioning data.
        times, grid
            The query (:func:`latentode.data.build_query`): explicit ``times``, else a forecast
            ``grid=(horizon, n_points)``, else the rows of ``df``.
        output : {"mean", "samples", "intensity"}
            The point prediction (plus ``quantiles``), ``n_samples`` predictive draws in
            long format with a ``sample`` column, or the Poisson intensity.
        quantiles : sequence of float, optional
            Predictive quantile levels added after each target column (``output="mean"``).
        n_samples : int
            Posterior samples behind the quantiles, or the number of draws.
        random_state : int, RandomState or None
            Seeds the draws of ``output="samples"``; default the estimator's.
        """
        if output not in ("mean", "samples", "intensity"):
            raise ValueError(f"Unknown prediction output {output!r}.")
        q = self._check_uncertainty_args(quantiles, n_samples)
        check_is_fitted(self)
        if output == "samples" and "sample" in {self.time_col_, self.id_col_,
                                                *self.target_cols_}:
            raise ValueError("A fitted column is named 'sample', which sample() adds.")
        if q is not None:  # a quantile column must not overwrite a fitted column
            fitted = {self.time_col_, self.id_col_, *self.target_cols_}
            for col in self.target_cols_:
                for level in q:
                    name = f"{col}_{quantile_label(level)}"
                    if name in fitted:
                        raise ValueError(
                            f"The quantile column {name!r} of target {col!r} would overwrite the "
                            f"fitted column {name!r}; ask for other quantiles or refit with "
                            "that column renamed."
                        )
        if output == "intensity" and not getattr(self.model_, "poisson_process", False):
            raise ValueError(
                "predict_intensity needs a model fitted with poisson_process=True; refit with "
                "LatentODERegressor(poisson_process=True, ...)."
            )
        prepared = self._prepare(df)
        query = _data.build_query(df, prepared[0], self.time_encoder_, times=times, grid=grid)
        if output == "samples":
            rs = self.random_state if random_state is None else random_state
            seeds = np.random.SeedSequence(draw_seed(rs)).generate_state(2)
            samples = self._predict_samples(df, query, prepared=prepared,
                                            n_samples=int(n_samples), use_mean=False,
                                            random_state=int(seeds[0]))
            values = self.model_.observation.sample(samples.mean, samples.noise_at(),
                                                    np.random.default_rng(int(seeds[1])))
            s, n = values.shape[:2]
            base = samples.query.reset_index(drop=True)
            out = base.iloc[np.tile(np.arange(n), s)].reset_index(drop=True)
            out.insert(0, "sample", np.repeat(np.arange(s, dtype=np.int64), n))
            for j, col in enumerate(self.target_cols_):
                out[col] = values[:, :, j].reshape(-1)
            return out
        point = str(self.point_prediction)
        samples = self._predict_samples(df, query, prepared=prepared,
                                        n_samples=int(self.point_samples), point=point)
        if output == "intensity":
            assert samples.intensity is not None
            return self._samples_frame(samples, samples.intensity[0])
        out = self._samples_frame(samples, samples.mean[0])
        if q is not None:
            quantile_samples = self._predict_samples(df, query, prepared=prepared,
                                                     n_samples=int(n_samples), use_mean=False,
                                                     warn=False)
            out = self._add_quantiles(out, quantile_samples, q)
        return out

    def _check_uncertainty_args(
        self, quantiles: Sequence[float] | None, n_samples: Any
    ) -> np.ndarray | None:
        """Validate ``quantiles`` (None allowed) and ``n_samples``; return the levels."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or (
                n_samples < 1):
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}.")
        return None if quantiles is None else check_quantiles(quantiles)

    def _add_quantiles(
        self, out: pd.DataFrame, samples: _Samples, quantiles: np.ndarray
    ) -> pd.DataFrame:
        """Insert ``<col>_q<level>`` predictive-quantile columns after each target column: the
        quantiles of the mixture over ``samples`` (posterior samples at the rows of ``out``)."""
        values = np.full((len(quantiles),) + samples.mean.shape[1:], np.nan)  # (Q, n, C)
        ok = np.isfinite(samples.mean).all(axis=(0, 2))  # rows of series with observations
        if ok.any():
            values[:, ok] = self.model_.observation.quantiles(samples.mean[:, ok],
                                                              samples.noise_at(ok), quantiles)
        result = out[[c for c in out.columns if c not in self.target_cols_]].copy()
        for j, col in enumerate(self.target_cols_):  # positional: the index may repeat labels
            result[col] = out[col].to_numpy()
            for k, q in enumerate(quantiles):
                result[f"{col}_{quantile_label(q)}"] = values[k, :, j]
        return result

    def _predict_samples(
        self,
        df: pd.DataFrame,
        query: _data.Query | None = None,
        *,
        prepared: tuple[Any, Any] | None = None,
        n_samples: int = 1,
        use_mean: bool = True,
        point: str | None = None,
        random_state: int | np.random.RandomState | None = None,
        warn: bool = True,
    ) -> _Samples:
        """Decoded trajectories at the query rows, per trajectory sample (uncertainty hook).

        Parameters
        ----------
        df : pandas.DataFrame
            Conditioning data (each series conditions on its own observed values).
        query : latentode.data.Query, optional
            Rows to predict at (:func:`latentode.data.build_query`); default: the rows of
            ``df``. Every query series must be a series of ``df``.
        prepared : tuple, optional
            ``self._prepare(df)`` when the caller has it already (``df`` is then not
            validated again).
        n_samples : int
            Trajectory samples ``S`` (posterior samples of ``z_t0``).
        use_mean : bool
            With ``n_samples == 1``, decode the posterior mean of ``z_t0`` (deterministic).
        point : {"posterior_mean", "predictive_mean"}, optional
            Return the one point prediction of this rule (``S = 1``; ``n_samples``: the
            posterior samples ``"predictive_mean"`` averages) instead of samples
            (:func:`latentode._predict.predict_packed`).
        random_state : int, RandomState or None
            Sampling noise; default: the estimator's ``random_state``.
        warn : bool
            Warn once when query rows belong to series with no observed value (their
            ``mean`` and ``intensity`` are NaN).

        Returns
        -------
        _Samples
            ``mean (S, n_rows, C)`` and the observation model's ``noise`` in original units,
            the query rows, and the Poisson ``intensity`` (or None). Predictive samples of
            observations are ``model_.observation.sample(mean, noise, rng)`` (``mean + std *
            N(0, 1)`` for the Gaussian). Rows of series without an observed value are NaN.
        """
        vf, padded = self._prepare(df) if prepared is None else prepared
        if query is None:
            query = _data.rows_query(df, vf, self.time_encoder_)
        plan = _data.plan_query(query.series_codes, query.times, padded.lengths)
        # series without an observed value have nothing to condition on: NaN, never invented
        if warn and len(plan.unconditioned):
            empty_ids = vf.series_ids[plan.unconditioned]
            n = len(empty_ids)
            warnings.warn(
                f"{n} series {'has' if n == 1 else 'have'} no observed value to condition "
                f"on: {_fmt_ids([_plain(i) for i in empty_ids])}"
                f"{'' if self.id_col_ is None else f' (column {self.id_col_!r})'}; "
                f"{'its' if n == 1 else 'their'} predictions are NaN.", UserWarning,
                stacklevel=external_stacklevel(),
            )
        if len(plan.series) < padded.n_series:  # condition only the series that are queried
            padded = _data.subset(padded, plan.series)
        seed = draw_seed(self.random_state if random_state is None else random_state)
        bs = int(self.batch_size)
        batches = _data.iterate_batches(padded, bs, device=self.device_,
                                        dtype=next(self.model_.parameters()).dtype)
        try:
            pred = predict_packed(self.model_, batches, plan.times, plan.lengths,
                                  n_samples=n_samples, use_mean=use_mean, point=point,
                                  generator=make_generator(seed, self.device_),
                                  max_steps=int(self.max_steps))
        except ODESolveError as err:  # err.series counts every series: name it in its batch
            lo = err.series - err.series % bs
            raise self._solve_error(err, padded.series_ids[lo:lo + bs], offset=lo) from err
        rate = None if pred.intensity is None else plan.gather_rows(pred.intensity)
        obs = self.model_.observation
        mean, noise = obs.to_user_units(plan.gather_rows(pred.mean),
                                        obs.predictive(torch.from_numpy(pred.obs_std)),
                                        self.scaler_.mean_, self.scaler_.scale_)
        return _Samples(
            query=query.frame, mean=mean, noise=noise,
            gap_factor=None if pred.gap_factor is None else plan.gather_rows(pred.gap_factor),
            tail_df=None if pred.tail_df is None else plan.gather_rows(pred.tail_df),
            intensity=None if rate is None else self.model_.intensity.to_user_units(
                rate, self.time_encoder_.scale_),
        )

    def _samples_frame(self, samples: _Samples, values: np.ndarray) -> pd.DataFrame:
        out = samples.query.copy()
        for j, col in enumerate(self.target_cols_):
            out[col] = values[:, j]
        return out

    def _solve(self, series_ids: np.ndarray, fn: Callable[..., Any], *args: Any,
               **kwargs: Any) -> Any:
        """Call ``fn``, a method of ``model_`` that solves the latent ODE, for one batch.

        The solve gets the current ``max_steps`` (a setting read at every call, like
        ``batch_size``), and an :class:`~latentode.ode.ODESolveError` is raised again naming
        the series (``series_ids``: the batch's series, in order), the time in the caller's
        units and, when the step budget ran out, the ``max_steps`` parameter.
        """
        model = self.model_
        before = model.max_steps
        model.max_steps = int(self.max_steps)
        try:
            return fn(*args, **kwargs)
        except ODESolveError as err:
            raise self._solve_error(err, series_ids) from err
        finally:
            model.max_steps = before

    def _solve_error(self, err: ODESolveError, series_ids: np.ndarray,
                     offset: int = 0) -> ODESolveError:
        """The message of a failed prediction solve, in the estimator's terms.

        ``series_ids`` are the ids of the failed batch's series; ``err.series`` counts from
        ``offset`` series before the batch (its index in the batch is what the error keeps).
        """
        b = max(len(series_ids), 1)
        where = (err.series - offset) % b  # the solve flattens (samples, series), sample-major
        sid = series_ids[where] if len(series_ids) else where
        sid = sid.item() if isinstance(sid, np.generic) else sid
        name = "the series" if self.id_col_ is None else f"series {sid!r} (column {self.id_col_!r})"
        when = self.time_encoder_.inverse_transform(np.array([err.time], dtype=np.float64))[0]
        when = f"{when:.6g}" if isinstance(when, float) else str(when)
        reason = {
            "max_steps": (
                f"it needed more than max_steps={self.max_steps} solver steps (plus 2 per "
                "requested time). Raise the estimator's max_steps (e.g. "
                f"est.set_params(max_steps={10 * int(self.max_steps)})) or loosen rtol / atol"
            ),
            "step_underflow": "the step size underflowed (the learnt dynamics are too stiff or "
                              "blow up there)",
            "non_finite": "the latent state became NaN/inf",
        }.get(err.reason, str(err))
        return ODESolveError(f"Solving the latent ODE for {name} failed at time {when} "
                             f"({self.time_col_!r}): {reason}.", series=int(where),
                             time=err.time, reason=err.reason)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the fitted estimator to one file: a zip of a JSON config and safetensors weights.

        No pickle is involved (see :mod:`latentode.io` for the format). The file is written to a
        temporary file beside ``path`` and renamed into place, so a failed save leaves nothing
        behind. Reload with :meth:`load`. Two parameters are not stored: ``callbacks`` (code;
        loaded as None, with a warning) and a ``random_state`` given as a
        :class:`numpy.random.RandomState` (loaded as None: a generator's state is not a
        setting); pickle the estimator to keep them.

        Under distributed training (an initialised :mod:`torch.distributed` process group with
        more than one process) only rank 0 writes: the other ranks return without touching
        ``path``, so a script run by every rank may simply call ``est.save(path)`` (every rank
        holds the same fitted estimator). Read the file on other ranks only after a barrier.

        Parameters
        ----------
        path : str or path-like
            Destination file, e.g. ``"model.latentode"`` (parent folders are created; an
            existing file is replaced).

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If the file could not be loaded back: a callable ``kl_warmup``, a parameter ``fit``
            would refuse (set after fitting), a column label that is not a string or a number.
        IsADirectoryError
            If ``path`` is a folder.
        """
        check_is_fitted(self)
        if _distd.is_distributed() and _distd.get_rank() != 0:
            return
        _io.save_state(path, FittedState.of(self), self.get_params(deep=False), type(self))

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device | None = None
    ) -> LatentODERegressor:
        """Load an estimator written by :meth:`save`; loading never executes code.

        The stored parameters go through the checks of :meth:`fit`, and every other field and
        the weights are checked against each other before anything is built.

        Parameters
        ----------
        path : str or path-like
            The saved file.
        device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device, optional
            Where to put the network; default the training device when available, else CPU.

        Returns
        -------
        LatentODERegressor
            A fitted estimator that predicts exactly like the saved one (on the same device).

        Raises
        ------
        ValueError
            ``"not a valid latentode file: ..."`` naming what is wrong, for any malformed,
            truncated or tampered file.
        OSError
            If ``path`` cannot be opened.
        """
        est, state = _io.load_state(path, cls, device=device)
        state.attach(est)
        return est


#: The parameters that shape the network (its ``hparams`` of the same names): a warm start
#: keeps the fitted network, so :meth:`LatentODERegressor.fit` refuses a change of one of them
#: (the solver's settings and ``max_steps`` are not among them: a warm start applies them).
_NETWORK_PARAMS = ("latent_dim", "rec_dim", "encoder", "units", "n_layers", "gru_units",
                   "decoder_layers", "poisson_process", "obs_std", "likelihood", "obs_df",
                   "linear_term", "readout", "readout_sides", "mtan_ref_points",
                   "mtan_embed_dim", "dynamics_activation", "forecast_noise", "posterior_time",
                   "readout_reach")


def _fit_seeds(seed: int) -> np.ndarray:
    """The three seeds of a fit drawn from its ``seed`` (``draw_seed(random_state)``): of the
    validation split, of the shuffling, and of the network's initialisation and training noise
    (the interval calibration's is :func:`_calibration_generator`'s)."""
    return np.random.SeedSequence(seed).generate_state(3)


def _calibration_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """The generator of the interval calibration of a fit (and of ``recalibrate``) whose seed
    is ``seed``: the third seed of :func:`_fit_seeds` plus one."""
    return make_generator(int(_fit_seeds(seed)[2]) + 1, device)


def _fingerprint(padded: Any, params: dict[str, Any]) -> list[float]:
    """Numbers that differ when two ranks were given different data or parameters."""
    mask = np.asarray(padded.mask, dtype=bool)
    shown = {k: getattr(v, "__qualname__", v) for k, v in sorted(params.items())
             if k not in ("random_state", "verbose", "device", "callbacks")}
    return [float(len(padded.lengths)), float(np.sum(padded.lengths)), float(mask.sum()),
            float(np.nansum(np.asarray(padded.values, dtype=np.float64)[mask])),
            float(np.nansum(np.asarray(padded.times, dtype=np.float64))),
            float(zlib.crc32(repr(shown).encode()))]


def _concat_histories(old: History, new: History) -> History:
    """Append the records of a warm-started fit to the previous history (epochs continue)."""
    offset = old.n_epochs
    out = History(monitor=new.monitor, stopped_reason=new.stopped_reason)
    for r in old.records:
        out.append(r)
    for r in new.records:
        out.append({**r, "epoch": r["epoch"] + offset})
    if new.best_epoch is not None:
        out.best_epoch = new.best_epoch + offset
    out.best_loss, out.best_val_loss = new.best_loss, new.best_val_loss
    return out


def _plain(x: Any) -> Any:
    """numpy scalars as Python scalars, for readable messages."""
    return x.item() if isinstance(x, np.generic) else x

