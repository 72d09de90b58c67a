"""The Latent ODE model (Rubanova, Chen & Duvenaud, 2019) as one :class:`torch.nn.Module`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from latentode.batch import Batch
from latentode.ode import ODESolveError, odeint
from latentode.ode.padded import flip_valid, last_time

from .classifier import HEAD_INPUTS, ClassifierHead, labelled_mean, weighted_cross_entropy
from .decoder import Decoder
from .dynamics import LatentDynamics
from .fences import InputFences
from .likelihoods import (
    kl_normal_standard,
    logmeanexp,
    masked_squared_error,
    normal_log_prob,
    observation_weights,
)
from .observation import ObservationModel, PoissonProcess
from .pooling import StatePooling
from .readout import READOUT_REACHES, READOUT_SIDES, READOUT_SPLITS, NeighbourReadout
from .registry import (
    ENCODER_CLASSES,
    ENCODERS,
    LIKELIHOODS,
    OBSERVATION_MODELS,
    READOUT_CLASSES,
    READOUTS,
)
from .spread import GapSpread
from .summary import SeriesSummary

__all__ = ["LatentODE", "LossOutput", "POINT_NOISE_SEED", "POINT_PREDICTIONS", "POINT_SAMPLES",
           "PredictOutput", "POSTERIOR_TIMES", "point_noise", "time_reversed"]

KL_ESTIMATORS = ("auto", "analytic", "sampled")
#: where the posterior ``q(z)`` (and the prior ``N(0, I)``) sits: at each series' start
#: (``"first"``, the paper's model) or at its last conditioning time (``"last"``)
POSTERIOR_TIMES = ("first", "last")
#: how :meth:`LatentODE.predict_point` reads one point prediction from the posterior of
#: ``z_t0``: the decoded trajectory of its mean (``"posterior_mean"``, the paper's), or the
#: average of the decoded trajectories of posterior samples (``"predictive_mean"``, the
#: predictive distribution's mean, which minimises the expected squared error)
POINT_PREDICTIONS = ("posterior_mean", "predictive_mean")
#: posterior samples of ``z_t0`` averaged by ``point="predictive_mean"`` (8 antithetic pairs;
#: ``benchmarks/point_samples.py``)
POINT_SAMPLES = 16
#: seed of the fixed standard-normal points behind ``point="predictive_mean"``
#: (:func:`point_noise`): never the caller's random state, so the prediction is deterministic
POINT_NOISE_SEED = 20181126


def point_noise(n_samples: int, latent_dim: int, *, device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """The fixed standard-normal points ``eps_s`` that ``point="predictive_mean"`` averages over.

    Common random numbers with antithetic pairs: ``n_samples // 2`` points drawn (in float64, on
    the CPU) from a generator seeded with :data:`POINT_NOISE_SEED`, followed by their negatives,
    and for an odd ``n_samples`` one further point of the same stream (unpaired). The same points
    serve every series (shape ``(S, 1, D)``, broadcast over the batch), so a series' predictive
    mean depends on its own posterior only, and is the same in any batch and at every call. A
    pair ``mu + sigma * eps``, ``mu - sigma * eps`` averages to ``mu`` exactly, so the odd-order
    terms of the Monte Carlo error cancel (a decoded mean linear in ``z`` is exact).

    Parameters
    ----------
    n_samples : int
        Number ``S >= 1`` of points.
    latent_dim : int
        Dimension ``D`` of ``z_t0``.
    device, dtype : optional
        Where and in which dtype to return them (default: CPU, float64).

    Returns
    -------
    torch.Tensor
        ``(S, 1, D)``; the first ``S // 2`` rows are the negatives of the next ``S // 2``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
    half, odd = divmod(int(n_samples), 2)
    gen = torch.Generator().manual_seed(POINT_NOISE_SEED)
    draws = torch.randn((half + odd, 1, int(latent_dim)), generator=gen, dtype=torch.float64)
    eps = torch.cat([draws[:half], -draws[:half], draws[half:]], dim=0)
    return eps.to(device=device, dtype=torch.float64 if dtype is None else dtype)


class LossOutput(NamedTuple):
    """Result of :meth:`LatentODE.loss`.

    Attributes
    ----------
    loss : torch.Tensor
        Scalar to minimise: minus the (KL-weighted) IWAE bound summed over series, divided by
        the number of observed values. The only field that carries gradients.
    nll : torch.Tensor
        Detached negative log-likelihood of the observations (the observation model's, plus the
        Poisson term if enabled), averaged over trajectory samples, per observed value.
    kl : torch.Tensor
        Detached analytic ``KL(q(z_t0) || N(0, I))`` summed over series, per observed value (so
        ``loss ~= nll + kl_weight * kl`` for one trajectory sample).
    mse : torch.Tensor
        Detached mean squared error of the decoded means over observed values.
    n_obs : torch.Tensor
        Detached number of observed values scored (float scalar tensor).
    """

    loss: torch.Tensor
    nll: torch.Tensor
    kl: torch.Tensor
    mse: torch.Tensor
    n_obs: torch.Tensor


class PredictOutput(NamedTuple):
    """Result of :meth:`LatentODE.predict`.

    Attributes
    ----------
    mean : torch.Tensor
        ``(S, B, M, C)`` decoded observation means per trajectory sample (with ``S > 1`` and
        ``calibrated=True``, their spread around the sample average is multiplied by the
        calibration factor: :attr:`LatentODE.spread_scale`, times ``gap_factor``).
    obs_std : torch.Tensor
        ``(C,)`` scale of the observation model (the Gaussian's standard deviation; times
        ``spread_scale`` when calibrated). Its other parameters (e.g. a Student-t's degrees of
        freedom) are those of :attr:`LatentODE.observation`.
    intensity : torch.Tensor or None
        ``(S, B, M, C)`` Poisson observation intensities (``poisson_process=True``), else None.
    gap_factor : torch.Tensor or None
        ``(B, M, C)`` factor of :attr:`LatentODE.gap_spread` at each query (kind and distance
        to the observations) when calibrated with fitted gap factors, else None: the scale of
        the observation model at a query is then ``obs_std * gap_factor``.
    tail_df : torch.Tensor or None
        ``(B, M, C)`` calibrated tails of :attr:`LatentODE.gap_spread` at each query when
        calibrated with fitted tails, else None: where finite, a Student-t of these degrees of
        freedom replaces the observation model's standard family
        (:mod:`latentode.nn.observation.tails`).
    """

    mean: torch.Tensor
    obs_std: torch.Tensor
    intensity: torch.Tensor | None
    gap_factor: torch.Tensor | None = None
    tail_df: torch.Tensor | None = None


class LatentODE(nn.Module):
    """Latent ODE with an ODE-RNN (or GRU) recognition network.

    Generative model: ``z_t0 ~ N(0, I)``, ``z(t) = z_t0 + int_t0^t f(z) ds``,
    ``x_c(t) = decoder(z(t))_c + obs_std_c * e`` with ``e`` standard normal (or Student-t:
    the :attr:`observation` model chosen by ``likelihood``); optionally the observation times
    of channel ``c`` form a Poisson process with intensity ``base_c softplus(g(z(t)))_c / log 2``
    (:class:`~latentode.nn.observation.PoissonProcess`, :attr:`intensity`). Inference:
    ``q(z_t0 | x)`` is a diagonal Gaussian produced by an encoder run backwards over the
    observations.

    Parameters
    ----------
    n_channels : int
        Number of observed channels ``C``.
    latent_dim : int
        Latent state size.
    rec_dim : int
        Encoder hidden state size.
    encoder : {"odernn", "gru", "mtan"}
        Recognition network, by its name in :data:`latentode.nn.registry.ENCODER_CLASSES`:
        :class:`~latentode.nn.encoder.ODERNNEncoder`,
        :class:`~latentode.nn.encoder.GRUEncoder` or
        :class:`~latentode.nn.mtan.MTANEncoder`.
    units : int
        Hidden width of the dynamics MLPs, encoder head and intensity network.
    n_layers : int
        Hidden layers of the latent dynamics MLP ``f``.
    gru_units : int
        Hidden width of the encoder's GRU gates.
    poisson_process : bool
        Model the observation times with a per-channel Poisson process.
    method : {"dopri5", "bosh3", "rk4", "euler"}
        Solver of the latent ODE (:data:`latentode.ode.METHODS`).
    rtol, atol : float
        Tolerances of the adaptive solvers (``"dopri5"``, ``"bosh3"``).
    gradient : {"adjoint", "backprop"}
        Gradient mode of the latent ODE solve.
    obs_std : "learned" or float
        Scale of the observation noise (see
        :class:`~latentode.nn.observation.GaussianObservation` for why learned is the default).
    decoder_layers : int
        Hidden layers of the decoder (0: linear, as in the reference).
    rec_layers : int, optional
        Hidden layers of the encoder's recurrent dynamics (default: ``n_layers``).
    enc_step_size : float
        Maximum Euler step of the ODE-RNN encoder, in model time.
    step_size : float, optional
        Step size of the latent solve for the fixed-step methods.
    max_steps : int
        Step budget per series of the latent solve, on top of two steps per requested time
        (:meth:`solve`): the adjoint's backward solve stops at every requested time, so a
        series of ``n`` times needs at least ``n`` steps however smooth its trajectory.
    obs_std_init, obs_std_floor : float
        Initial value and lower bound of the learned observation noise.
    likelihood : {"gaussian", "student_t"}
        Observation model of the values, by its name in
        :data:`latentode.nn.registry.OBSERVATION_MODELS` (:attr:`observation`).
    obs_df : "learned" or float
        Degrees of freedom of the ``"student_t"`` likelihood (unused by ``"gaussian"``).
    linear_term : bool
        Add a learned linear map to the latent dynamics, ``f(z) = A z + MLP(z)``
        (:class:`~latentode.nn.dynamics.LatentDynamics`).
    n_static : int
        Size of each series' encoded static covariates (``Batch.static``), appended to the
        input of the encoder's output head (so they shape ``q(z_t0)``) and of the classifier;
        never decoded nor scored by the likelihood. 0: none.
    n_classes : int
        With ``n_classes >= 2``, a :class:`~latentode.nn.classifier.ClassifierHead` (two ReLU
        layers of ``units``) maps ``[z_t0, static]`` to class logits (:meth:`classify`, and the
        cross-entropy term of :meth:`loss`). 0: no classifier.
    readout : {"latent", "neighbours"}
        From the decoded latent state to the means (:data:`latentode.nn.registry.READOUTS`):
        the decoder alone (``"latent"``, the paper's model), or corrected by each channel's
        nearest conditioning observations before and after the query through a learned gate
        (``"neighbours"``, :class:`~latentode.nn.readout.NeighbourReadout`, :attr:`readout`;
        the model then also holds :attr:`decoder_noise`, the observation model of the
        decoder's uncorrected means that :meth:`loss`'s ``readout_aux`` term trains).
    classifier_dropout : float
        Dropout probability in ``[0, 1)`` of the classifier's input and hidden layers in training
        mode (:class:`~latentode.nn.classifier.ClassifierHead`); unused without a classifier.
    head_inputs : {"latent", "latent+summary", "latent+wide", "latent+pooled", \
"latent+summary+pooled"}
        What the classifier reads beside the static covariates
        (:data:`~latentode.nn.classifier.HEAD_INPUTS`): ``z_t0`` alone, or also the
        standardised per-channel summaries of the conditioning observations
        (:attr:`summary`, a :class:`~latentode.nn.summary.SeriesSummary` whose statistics
        are set by ``model.summary.fit(training batches)``), as input of its MLP
        (``"latent+summary"``) or through a linear map added to its logits
        (``"latent+wide"``); the ``"+pooled"`` values add to the MLP's input the encoder's
        hidden states after each observation, pooled over the series (:attr:`pooling`, a
        :class:`~latentode.nn.pooling.StatePooling`: their mean and an attention-weighted
        average). Anything but ``"latent"`` needs a classifier.
    readout_sides : {"shared", "split"}
        With ``readout="neighbours"``: whether the readout's queries between two conditioning
        observations of the channel and those with a neighbour on one side only share their
        parameters (``"shared"``) or each kind has its own (``"split"``; the
        ``sides`` of :class:`~latentode.nn.readout.NeighbourReadout`). Unused without a
        readout.
    readout_split : {"bounded", "offset", "copy"}
        With ``readout_sides="split"``: how the one-sided queries' parameters are held and
        used (the ``split`` of :class:`~latentode.nn.readout.NeighbourReadout`): the two-sided
        ones plus offsets that start at 0, with a one-sided pull toward the carried
        observation at most the two-sided parameters' and a residual that fades over the
        channel's typical spacing (``"bounded"``; :meth:`set_readout_spacing`) or with the
        unbounded correction (``"offset"``, the layout of networks saved before
        ``"bounded"`` existed, which keep it), or a set of
        their own (``"copy"``, the layout of networks saved before ``"offset"`` existed, which
        load with it: :attr:`FORMER_HPARAMS`). Unused otherwise.
    mtan_ref_points : int
        With ``encoder="mtan"``: the number of reference times (``n_ref`` of
        :class:`~latentode.nn.mtan.MTANEncoder`). Unused otherwise.
    mtan_embed_dim : int or None
        With ``encoder="mtan"``: the size of its time embedding (None: ``units``). Unused
        otherwise.
    dynamics_activation : {"tanh", "elu", "softplus"}
        Hidden non-linearity of the latent dynamics :attr:`dynamics`
        (:data:`~latentode.nn.dynamics.DYNAMICS_ACTIVATIONS`; the ODE-RNN encoder's own flow
        stays tanh). ``"tanh"`` is bounded; ``"elu"`` and ``"softplus"`` grow linearly with
        the state along the directions where their units are active.
    forecast_noise : bool
        Whether the values a training target holds after its series' last conditioning time
        (the forecasts of ``forecast_share`` and ``forecast_split`` training) are scored under
        an observation model of their own, :attr:`forecast_noise` (with a readout also
        :attr:`forecast_decoder_noise` for the auxiliary term; same family and options as
        :attr:`observation`, its scale learned from those values alone, or the same fixed
        ``obs_std``), instead of the one that scores reconstruction. One learned scale for
        both is pulled up by the forecasts' larger errors and weakens the reconstruction
        term; with its own, the reconstruction scale stays that of reconstruction. Neither
        prediction nor calibration reads it. No effect when no target value lies after the
        conditioning (plain reconstruction, ``obs_dropout``) or with a fixed ``obs_std``.
    posterior_time : {"first", "last"}
        Which latent state the encoder's posterior (and the standard normal prior) is over
        (:data:`POSTERIOR_TIMES`): ``z(t0)`` at the start of each series (``"first"``, the
        paper's model: the encoder reads the series backwards to its start and the ODE is
        integrated forwards from there), or ``z(t_N)`` at each series' *last* conditioning
        time (``"last"``): the same encoder reads the time-reversed series
        (:meth:`encode`), so it ends at ``t_N``, and :meth:`solve` integrates forwards from
        there to the later query times and backwards in time to the earlier ones, in one
        batched solve. A forecast then starts from the state the encoder gives at the last
        observation rather than from one carried across the whole window. Refused with
        ``poisson_process`` (its integrated intensity starts at ``t0``) and with a classifier
        (which reads the state at the series' start).
    readout_reach : {"window", "spacing"} or None
        A record of where the reach of the readout's correction started
        (:data:`~latentode.nn.readout.READOUT_REACHES`: 1 model time, or each channel's
        typical spacing, set with :meth:`set_readout_reach`): the estimator's
        ``readout_reach``, kept in :attr:`hparams` so that a warm start can refuse another
        value. The network does not read it. None: not recorded (networks saved before it
        was, and networks built directly).

    Attributes
    ----------
    input_fences : InputFences
        Per-channel fences (standardised units) of the values the model conditions on: the
        observed values of a conditioning batch are clamped to them before the encoder, the
        neighbour readout and the classifier's summaries read them (:meth:`conditioning`);
        the likelihood scores the real values. No fences at first (``-inf``, ``+inf``: nothing
        changes); set from the training data by :meth:`set_input_fences`.

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> model = LatentODE(n_channels=2, latent_dim=4, rec_dim=8, units=16, n_layers=1)
    >>> times = torch.linspace(0, 1, 5).expand(3, 5)
    >>> values = torch.randn(3, 5, 2)
    >>> batch = Batch(times, values, torch.ones(3, 5, 2), torch.tensor([5, 4, 2]))
    >>> out = model.loss(batch, n_traj_samples=2)
    >>> out.loss.shape
    torch.Size([])
    """

    #: State-dict entries that files saved before they existed lack: loading such a file keeps
    #: their initial values (an uncalibrated ``gap_spread``, or one without calibrated tails,
    #: i.e. the former behaviour; an
    #: untrained ``decoder_noise``, which only training reads).
    OPTIONAL_STATE = ("gap_spread.edges", "gap_spread.factors", "gap_spread.tail_df",
                      "gap_spread.density_slope", "gap_spread.density_ref",
                      "gap_spread.density_shrink", "gap_spread.density_losses",
                      "decoder_noise.raw", "decoder_noise.fixed", "decoder_noise.raw_df",
                      "decoder_noise.fixed_df", "input_fences.low", "input_fences.high")
    #: State-dict entries whose values may be infinite (``input_fences``: ``-inf`` / ``+inf``
    #: where a channel has no fence), never NaN.
    UNBOUNDED_STATE = ("input_fences.low", "input_fences.high")
    #: State-dict entries that hold positive numbers, ``+inf`` included (the calibrated tails'
    #: degrees of freedom, ``inf`` where there are none); every other float entry is finite.
    POSITIVE_STATE = ("gap_spread.tail_df",)
    #: Hyper-parameters whose value for a network saved before they existed is not today's
    #: default: a saved ``"split"`` readout held its one-sided parameters as a copy of its own
    #: (:meth:`with_former_hparams` completes stored hyper-parameters with them).
    FORMER_HPARAMS: dict[str, Any] = {"readout_split": "copy"}

    def __init__(
        self,
        n_channels: int,
        latent_dim: int = 20,
        rec_dim: int = 40,
        encoder: str = "odernn",
        units: int = 50,
        n_layers: int = 3,
        gru_units: int = 50,
        poisson_process: bool = False,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        gradient: str = "adjoint",
        obs_std: str | float = "learned",
        *,
        decoder_layers: int = 0,
        rec_layers: int | None = None,
        enc_step_size: float = 0.02,
        step_size: float | None = None,
        max_steps: int = 10_000,
        obs_std_init: float = 0.2,
        obs_std_floor: float = 1e-3,
        likelihood: str = "gaussian",
        obs_df: str | float = "learned",
        linear_term: bool = False,
        n_static: int = 0,
        n_classes: int = 0,
        readout: str = "latent",
        classifier_dropout: float = 0.0,
        head_inputs: str = "latent",
        readout_sides: str = "shared",
        readout_split: str = "bounded",
        mtan_ref_points: int = 64,
        mtan_embed_dim: int | None = None,
        dynamics_activation: str = "tanh",
        forecast_noise: bool = False,
        posterior_time: str = "first",
        readout_reach: str | None = None,
    ) -> None:
        super().__init__()
        if readout_reach is not None and readout_reach not in READOUT_REACHES:
            raise ValueError(f"readout_reach must be None or one of {READOUT_REACHES}, got "
                             f"{readout_reach!r}.")
        if posterior_time not in POSTERIOR_TIMES:
            raise ValueError(f"posterior_time must be one of {POSTERIOR_TIMES}, got "
                             f"{posterior_time!r}.")
        if posterior_time == "last" and (poisson_process or n_classes):
            raise ValueError("posterior_time='last' cannot be combined with poisson_process=True "
                             "or a classifier (n_classes >= 2): both read the latent state at "
                             "the series' start.")
        if head_inputs not in HEAD_INPUTS:
            raise ValueError(f"head_inputs must be one of {HEAD_INPUTS}, got {head_inputs!r}.")
        if head_inputs != "latent" and n_classes == 0:
            raise ValueError(f"head_inputs={head_inputs!r} needs a classifier (n_classes >= 2).")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}.")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}.")
        if readout_sides not in READOUT_SIDES:
            raise ValueError(f"readout_sides must be one of {READOUT_SIDES}, got "
                             f"{readout_sides!r}.")
        if readout_split not in READOUT_SPLITS:
            raise ValueError(f"readout_split must be one of {READOUT_SPLITS}, got "
                             f"{readout_split!r}.")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}.")
        if n_channels < 1 or latent_dim < 1 or rec_dim < 1:
            raise ValueError("n_channels, latent_dim and rec_dim must be positive.")
        if n_static < 0 or n_classes < 0 or n_classes == 1:
            raise ValueError(f"n_static must be >= 0 and n_classes 0 or >= 2, got {n_static} and "
                             f"{n_classes}.")
        self.hparams: dict[str, Any] = dict(
            n_channels=n_channels, latent_dim=latent_dim, rec_dim=rec_dim, encoder=encoder,
            units=units, n_layers=n_layers, gru_units=gru_units,
            poisson_process=bool(poisson_process), method=method, rtol=rtol, atol=atol,
            gradient=gradient, obs_std=obs_std, decoder_layers=decoder_layers,
            rec_layers=rec_layers, enc_step_size=enc_step_size, step_size=step_size,
            max_steps=max_steps, obs_std_init=obs_std_init, obs_std_floor=obs_std_floor,
            likelihood=likelihood, obs_df=obs_df, n_static=n_static, n_classes=n_classes,
            linear_term=bool(linear_term), readout=readout,
            classifier_dropout=float(classifier_dropout), head_inputs=head_inputs,
            readout_sides=readout_sides, readout_split=readout_split,
            mtan_ref_points=int(mtan_ref_points),
            mtan_embed_dim=None if mtan_embed_dim is None else int(mtan_embed_dim),
            dynamics_activation=dynamics_activation, forecast_noise=bool(forecast_noise),
            posterior_time=posterior_time, readout_reach=readout_reach,
        )
        self.posterior_time = posterior_time
        self.n_channels = n_channels
        self.latent_dim = latent_dim
        self.poisson_process = bool(poisson_process)
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.gradient = gradient
        self.step_size = step_size
        self.max_steps = max_steps

        self.encoder: nn.Module = ENCODER_CLASSES[encoder].from_config(
            n_channels, latent_dim, rec_dim, units=units,
            rec_layers=n_layers if rec_layers is None else rec_layers, gru_units=gru_units,
            enc_step_size=enc_step_size, n_static=n_static,
            mtan_ref_points=int(mtan_ref_points),
            mtan_embed_dim=None if mtan_embed_dim is None else int(mtan_embed_dim),
        )
        self.dynamics = LatentDynamics(latent_dim, n_layers, units, linear=bool(linear_term),
                                       activation=dynamics_activation)
        self.decoder = Decoder(latent_dim, n_channels, decoder_layers, units)
        readout_class = READOUT_CLASSES[readout]
        self.readout: NeighbourReadout | None = (
            None if readout_class is None
            else readout_class(latent_dim, n_channels, sides=readout_sides,
                               split=readout_split))
        def observation_model() -> ObservationModel:
            return OBSERVATION_MODELS[likelihood].from_config(
                n_channels, obs_std=obs_std, obs_std_init=obs_std_init,
                obs_std_floor=obs_std_floor, obs_df=obs_df)

        # the observation model keeps the attribute name ``noise``: its state-dict keys
        # (``noise.raw`` / ``noise.fixed``) are those of saved files; ``observation`` names it
        self.noise: ObservationModel = observation_model()
        # with a readout: the observation model of the decoder's own, uncorrected means, trained
        # by the auxiliary term of ``loss(readout_aux=...)`` alone (never used to predict)
        self.decoder_noise: ObservationModel | None = (
            None if self.readout is None else observation_model())
        # with forecast_noise: the observation models of the values after the conditioning
        # (and of the decoder's own means there), trained by those values alone
        self.forecast_noise: ObservationModel | None = (
            observation_model() if forecast_noise else None)
        self.forecast_decoder_noise: ObservationModel | None = (
            observation_model() if forecast_noise and self.readout is not None else None)
        # per-channel factor widening the predictive distribution around its mean, set after
        # training by latentode.training.calibrate_spread (1: the raw model)
        self.register_buffer("spread_scale", torch.ones(n_channels))
        # its further factor by kind of query and distance to the observations (1 until fitted)
        self.gap_spread = GapSpread(n_channels)
        # fences of the conditioning values (none until set_input_fences)
        self.input_fences = InputFences(n_channels)
        self.intensity: PoissonProcess | None
        if self.poisson_process:
            self.intensity = PoissonProcess(latent_dim, n_channels, units)
            self.ode_func: nn.Module = self.intensity.augment(self.dynamics)
        else:
            self.intensity = None
            self.ode_func = self.dynamics
        self.n_static = int(n_static)
        self.n_classes = int(n_classes)
        # the per-series summaries the classifier reads beside z_t0 (head_inputs), if any
        self.summary: SeriesSummary | None = (
            SeriesSummary(n_channels) if head_inputs in ("latent+summary", "latent+wide",
                                                         "latent+summary+pooled") else None)
        # the encoder's hidden states pooled over each series' observations (head_inputs)
        self.pooling: StatePooling | None = (
            StatePooling(self.encoder.state_dim, units) if head_inputs.endswith("+pooled")
            else None)
        self.classifier = (ClassifierHead(
            latent_dim, n_classes, n_static, units, dropout=float(classifier_dropout),
            n_summary=0 if self.summary is None else self.summary.n_features,
            wide=head_inputs == "latent+wide",
            n_pooled=0 if self.pooling is None else self.pooling.n_features)
            if n_classes else None)

    # ------------------------------------------------------------------ building blocks
    def set_intensity_base(self, rate: torch.Tensor) -> None:
        """Set the typical Poisson rate per channel (events per model time unit).

        The intensity is ``base * softplus(g(z)) / log 2``, so a network output near 0 gives
        ``base``; set it from the training data (observed values per unit of window) before
        training. No effect without ``poisson_process``.
        """
        if self.intensity is None:
            return
        self.intensity.set_base(rate)

    @classmethod
    def with_former_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Stored hyper-parameters (``hparams`` of a saved or pickled network) completed with
        the former values of those added since (:attr:`FORMER_HPARAMS`), so that
        ``LatentODE(**LatentODE.with_former_hparams(stored))`` is the network that was saved.

        Examples
        --------
        >>> LatentODE.with_former_hparams({"n_channels": 2})["readout_split"]
        'copy'
        >>> LatentODE.with_former_hparams({"readout_split": "offset"})["readout_split"]
        'offset'
        """
        return {**cls.FORMER_HPARAMS, **hparams}

    def set_readout_reach(self, spacing: torch.Tensor) -> None:
        """Set the initial reach ``(C,)`` of the readout's correction, in model time.

        Set it from the training data before training (the typical spacing of each channel's
        observations, :func:`latentode.data.observation_spacing`; see
        :meth:`NeighbourReadout.set_reach <latentode.nn.readout.NeighbourReadout.set_reach>`).
        No effect without a readout.
        """
        if self.readout is None:
            return
        self.readout.set_reach(spacing)

    def set_readout_spacing(self, spacing: torch.Tensor) -> None:
        """Set the typical spacing ``(C,)`` of each channel's observations, in model time.

        Set it from the training data before training
        (:func:`latentode.data.observation_spacing`; see :meth:`NeighbourReadout.set_spacing
        <latentode.nn.readout.NeighbourReadout.set_spacing>`). No effect without a
        ``readout_split="bounded"`` split readout.
        """
        if self.readout is None:
            return
        self.readout.set_spacing(spacing)

    def set_input_fences(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Set the fences ``(C,)`` of the conditioning values, in standardised units
        (``-inf`` / ``+inf``: none on that side; :class:`~latentode.nn.fences.InputFences`).

        Set them from the training data before training
        (:func:`latentode.data.channel_fences`): training conditions on the clamped values
        too, so that the model learns from what it will be given.
        """
        self.input_fences.set(low, high)

    def conditioning(self, cond: Batch) -> Batch:
        """The conditioning batch as the model reads it: its observed values clamped to
        :attr:`input_fences` (``cond`` unchanged in value without fences or with every value
        inside them). The encoder, the neighbour readout and the classifier's summaries read
        it; the values a model is scored against are never clamped."""
        return self.input_fences(cond)

    @property
    def observation(self) -> ObservationModel:
        """The observation model of the values (:mod:`latentode.nn.observation`)."""
        return self.noise

    @property
    def obs_std(self) -> torch.Tensor:
        """``(C,)`` scale of the observation model (the Gaussian's standard deviation)."""
        return self.noise()

    def decode(self, z: torch.Tensor, cond: Batch, times: torch.Tensor,
               where: torch.Tensor | None = None) -> torch.Tensor:
        """Means ``(K, B, M, C)`` of the observations at ``times`` from the latent states there.

        Parameters
        ----------
        z : torch.Tensor
            ``(K, B, M, latent_dim)`` latent states at ``times``.
        cond : Batch
            The conditioning observations (read by the ``"neighbours"`` readout only, through
            :meth:`conditioning`).
        times : torch.Tensor
            ``(B, M)`` the times of ``z`` (model time).
        where : torch.Tensor, optional
            ``(B, M, C)`` bool, the entries needed (the readout may leave others uncorrected;
            see :meth:`NeighbourReadout.forward <latentode.nn.readout.NeighbourReadout.forward>`).
            None: all.

        Returns
        -------
        torch.Tensor
            The decoder's means, corrected by :attr:`readout` when the model has one.
        """
        return self._decode(z, cond, times, where)[1]

    def _decode(self, z: torch.Tensor, cond: Batch, times: torch.Tensor,
                where: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's means and those of :meth:`decode` (the same tensor without a
        readout), both ``(K, B, M, C)``."""
        base = self.decoder(z)
        if self.readout is None:
            return base, base
        return base, self.readout(base, z, self.conditioning(cond), times, where)

    def encode(
        self, cond: Batch, t0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(B, latent_dim)`` of ``q(z_t0 | cond)``; ``cond.static`` enters the
        encoder's output head when the model has ``n_static > 0``.

        With ``posterior_time="first"``, ``t0 <= `` each series' first time (default: the
        first time) and the encoder reads the series backwards, from its last observation to
        ``t0``. With ``"last"``, ``t0 >=`` each series' last time (default: the last time) and
        the encoder reads the series reversed in time about ``t0``
        (:func:`time_reversed`), i.e. forwards from its first observation to ``t0``.
        """
        cond, t0 = self._encoder_view(self.conditioning(cond), t0)
        return self.encoder(cond.times, cond.values, cond.mask, cond.lengths, t0,
                            static=cond.static if self.n_static else None)

    def _encoder_view(self, cond: Batch,
                      t0: torch.Tensor | None) -> tuple[Batch, torch.Tensor | None]:
        """The batch and start the encoder reads for ``q(z_t0)``: ``cond`` and ``t0`` as
        given (``posterior_time="first"``), or ``cond`` reversed about ``t0`` (default: each
        series' last time) and ``0`` (``"last"``)."""
        if self.posterior_time != "last":
            return cond, t0
        t0 = last_time(cond.times, cond.lengths)[:, 0] if t0 is None else t0
        return time_reversed(cond, t0), torch.zeros_like(t0)

    def _encode_pooled(
        self, cond: Batch, t0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:meth:`encode` and, for a model with :attr:`pooling`, the pooled hidden states
        ``(B, pooling.n_features)`` of the same encoder pass (None without)."""
        if self.pooling is None:
            mu, sigma = self.encode(cond, t0)
            return mu, sigma, None
        cond, t0 = self._encoder_view(self.conditioning(cond), t0)
        mu, sigma, states, observed = self.encoder(
            cond.times, cond.values, cond.mask, cond.lengths, t0,
            static=cond.static if self.n_static else None, return_states=True)
        return mu, sigma, self.pooling(states, observed)

    def classify(self, cond: Batch, z: torch.Tensor | None = None,
                 generator: torch.Generator | None = None,
                 pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(..., B, n_classes)`` of each series of ``cond``.

        The classifier reads ``z`` (default: the posterior mean of ``z_t0``, at each series'
        first conditioning time, giving ``(B, n_classes)``) with the series' static
        covariates and, when the model has :attr:`summary`, the summaries of ``cond``'s
        observed values and, when it has :attr:`pooling`, the encoder's hidden states pooled
        over ``cond``'s observations. Run under :func:`torch.no_grad` for inference.

        Parameters
        ----------
        cond : Batch
            The conditioning observations.
        z : torch.Tensor, optional
            ``(..., B, latent_dim)`` latent states to classify instead (e.g. posterior samples
            of ``z_t0``).
        generator : torch.Generator, optional
            Source of the classifier's dropout masks in training mode (default: torch's global
            generator).
        pooled : torch.Tensor, optional
            ``(B, pooling.n_features)`` pooled hidden states of ``cond`` already computed
            (e.g. by the encoder pass that gave ``z``); default: from an encoder pass here.
            Ignored by a model without :attr:`pooling`.

        Returns
        -------
        torch.Tensor
            Logits, one row per series (and leading dimension of ``z``).
        """
        if self.classifier is None:
            raise ValueError("This model has no classifier (built with n_classes=0).")
        if self.pooling is None:
            pooled = None
        if z is None or (self.pooling is not None and pooled is None):
            mu, _, fresh = self._encode_pooled(cond, cond.times[:, 0])
            z = mu if z is None else z
            pooled = fresh if pooled is None else pooled
        return self.classifier(z, cond.static,
                               None if self.summary is None
                               else self.summary(self.conditioning(cond)),
                               generator=generator, pooled=pooled)

    def _posterior_at(self, cond: Batch, times: torch.Tensor,
                      lengths: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the time of the posterior's state for solving at ``times``: the first
        conditioning or query time (``posterior_time="first"``), or the last conditioning
        time (``"last"``)."""
        if self.posterior_time == "last":
            return last_time(cond.times, cond.lengths)[:, 0]
        return _start_time(cond, times, lengths)

    def step_budget(self, n_times: int) -> int:
        """Step budget per series of a :meth:`solve` at ``n_times`` requested times.

        ``max_steps + 2 * (n_times + 1)``: the backward solve of the adjoint stops at each
        requested time (and at ``t0``), and the first step after a stop may be rejected, so the
        budget grows with the length of the series while ``max_steps`` bounds the steps the
        dynamics themselves need.
        """
        return int(self.max_steps) + 2 * (int(n_times) + 1)

    def solve(
        self,
        z0: torch.Tensor,
        t0: torch.Tensor,
        times: torch.Tensor,
        lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Integrate the latent ODE for every trajectory sample in one batched solve.

        Parameters
        ----------
        z0 : torch.Tensor
            ``(K, B, latent_dim)`` initial states at ``t0``.
        t0 : torch.Tensor
            ``(B,)`` initial times.
        times : torch.Tensor
            ``(B, M)`` query times, ascending over each series' valid prefix, ``>= t0``; with
            ``posterior_time="last"`` on either side of ``t0``: the solve runs forwards from
            ``t0`` to the later times and backwards in time (the same field ``f``, decreasing
            times) to the earlier ones, both in one batched solve of at most ``2 K B`` rows.
        lengths : torch.Tensor
            ``(B,)`` valid query times per series (padded outputs repeat the last valid state).

        Returns
        -------
        z : torch.Tensor
            ``(K, B, M, latent_dim)`` latent states at the query times.
        cum_intensity : torch.Tensor or None
            ``(K, B, M, C)`` integrated Poisson intensities since ``t0`` (Poisson model only).

        Raises
        ------
        latentode.ode.ODESolveError
            If a series needs more than :meth:`step_budget` ``(M)`` steps; its ``series`` is
            the index in the flattened ``K * B`` batch (sample-major: ``k * B + b``).
        """
        if self.posterior_time == "last":
            return self._solve_two_sided(z0, t0, times, lengths), None
        k, b, d = z0.shape
        m = times.shape[1]
        state0 = z0.reshape(k * b, d)
        if self.poisson_process:
            state0 = torch.cat([state0, state0.new_zeros(k * b, self.n_channels)], dim=-1)
        t = torch.cat([t0.unsqueeze(1), times], dim=1)
        lengths = lengths.to(device=times.device, dtype=torch.long)
        out = odeint(
            self.ode_func, state0, t.repeat(k, 1), lengths=(lengths + 1).repeat(k),
            method=self.method, rtol=self.rtol, atol=self.atol, gradient=self.gradient,
            step_size=self.step_size, max_steps=self.step_budget(m),
        )
        out = out.reshape(k, b, m + 1, -1)[:, :, 1:]
        if self.poisson_process:
            return out[..., :d], out[..., d:]
        return out, None

    def _solve_two_sided(self, z0: torch.Tensor, t0: torch.Tensor, times: torch.Tensor,
                         lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`solve` from ``t0`` to query times on both sides of it (no Poisson term).

        Each series becomes two rows of one :func:`~latentode.ode.odeint` call: ``[t0, later
        times]`` (forwards) and ``[t0, earlier times reversed]`` (backwards in time; times
        equal to ``t0`` go there), each of its own length, and only the rows with a time to
        reach are solved; the states are then gathered back into the queries' order.
        ``(K, B, M, latent_dim)``; padded queries repeat the last valid one.
        """
        k, b, d = z0.shape
        m = times.shape[1]
        lengths = lengths.to(device=times.device, dtype=torch.long)
        pos = torch.arange(m, device=times.device).unsqueeze(0)  # (1, M)
        valid = pos < lengths.unsqueeze(1)
        n_back = (valid & (times <= t0.unsqueeze(1))).sum(1, keepdim=True)  # (B, 1), a prefix
        # row position j + 1 holds query n_back - 1 - j (backwards), n_back + j (forwards)
        back_t = times.gather(1, (n_back - 1 - pos).clamp(min=0))
        fwd_t = times.gather(1, (n_back + pos).clamp(max=m - 1))
        start = t0.to(times.dtype).unsqueeze(1)
        t = torch.cat([torch.cat([start, back_t], 1), torch.cat([start, fwd_t], 1)])  # (2B, M+1)
        rows = torch.cat([n_back[:, 0] + 1, lengths - n_back[:, 0] + 1])  # (2B,)
        # only the rows with a time to reach are solved (e.g. no forward row for a
        # reconstruction); the others hold z0 at every position
        z2 = torch.cat([z0, z0], dim=1)  # (K, 2B, D)
        out = z2.unsqueeze(2).expand(k, 2 * b, m + 1, d)
        solve = (rows > 1).nonzero().squeeze(1)
        if solve.numel():
            n = solve.numel()
            try:
                solved = odeint(
                    self.ode_func, z2[:, solve].reshape(k * n, d), t[solve].repeat(k, 1),
                    lengths=rows[solve].repeat(k), method=self.method, rtol=self.rtol,
                    atol=self.atol, gradient=self.gradient, step_size=self.step_size,
                    max_steps=self.step_budget(m),
                ).reshape(k, n, m + 1, d)
            except ODESolveError as err:  # name the series as solve does: k * B + b
                row = int(solve[err.series % n]) % b
                raise ODESolveError(str(err), series=(err.series // n) * b + row,
                                    time=err.time, reason=err.reason) from err
            out = out.index_copy(1, solve, solved)
        out = out.reshape(k, 2, b, m + 1, d)
        # query i (padded ones read the last valid query) from its row's position
        i = torch.minimum(pos, (lengths.unsqueeze(1) - 1).clamp(min=0))  # (B, M)
        back = i < n_back
        idx = torch.where(back, n_back - i, i - n_back + 1)
        idx = idx.unsqueeze(0).unsqueeze(-1).expand(k, b, m, d)
        return torch.where(back.unsqueeze(0).unsqueeze(-1), out[:, 0].gather(2, idx),
                           out[:, 1].gather(2, idx))

    def draw_z0_noise(
        self,
        n_samples: int,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Standard normal noise ``(n_samples, batch_size, latent_dim)`` for :meth:`sample_z0`.

        These are exactly the numbers :meth:`sample_z0` draws from ``generator`` for a batch of
        ``batch_size`` series (drawn on the generator's device, then moved to ``device``), so a
        caller can draw the noise of a whole batch and hand each part of it to :meth:`loss` as
        ``z0_noise`` (distributed training: every rank draws the global batch's noise and keeps
        its rows).

        Parameters
        ----------
        n_samples, batch_size : int
            Trajectory samples ``K`` and series ``B``.
        generator : torch.Generator, optional
            Source of the noise (default: torch's global generator of ``device``).
        device, dtype : optional
            Where and in which dtype to return it (default: the model's parameters').

        Returns
        -------
        torch.Tensor
            ``(K, B, latent_dim)``.
        """
        param = next(self.parameters())
        device = param.device if device is None else torch.device(device)
        dtype = param.dtype if dtype is None else dtype
        shape = (n_samples, batch_size, self.latent_dim)
        if generator is not None and generator.device != device:
            return torch.randn(shape, generator=generator, device=generator.device,
                               dtype=dtype).to(device)
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def sample_z0(
        self,
        mu: torch.Tensor,
        sigma: torch.Tensor,
        n_samples: int,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reparametrised samples ``(n_samples, B, latent_dim)`` from ``N(mu, sigma^2)``.

        ``noise`` (``(n_samples, B, latent_dim)`` standard normal values, e.g. from
        :meth:`draw_z0_noise`, or ``(n_samples, 1, latent_dim)`` shared by every series, e.g.
        :func:`point_noise`) replaces the draw from ``generator``.
        """
        if noise is None:
            noise = self.draw_z0_noise(n_samples, mu.shape[0], generator, device=mu.device,
                                       dtype=mu.dtype)
        elif tuple(noise.shape) not in ((n_samples, *mu.shape),
                                        (n_samples, 1, *mu.shape[1:])):
            raise ValueError(f"noise must have shape {(n_samples, *mu.shape)} or "
                             f"{(n_samples, 1, *mu.shape[1:])}, got {tuple(noise.shape)}.")
        return mu + sigma * noise.to(device=mu.device, dtype=mu.dtype)

    # ------------------------------------------------------------------ objective
    def _log_weights(
        self,
        cond: Batch,
        target: Batch | None,
        n_traj_samples: int,
        kl_weight: float,
        generator: torch.Generator | None,
        kl_estimator: str,
        weighting: str = "value",
        z0_noise: torch.Tensor | None = None,
        readout_aux: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if n_traj_samples < 1:
            raise ValueError(f"n_traj_samples must be >= 1, got {n_traj_samples}.")
        if kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}.")
        tgt = cond if target is None else target
        t0 = self._posterior_at(cond, tgt.times, tgt.lengths)
        mu, sigma, pooled = self._encode_pooled(cond, t0)
        z0 = self.sample_z0(mu, sigma, n_traj_samples, generator, z0_noise)
        z, cum = self.solve(z0, t0, tgt.times, tgt.lengths)
        mask = tgt.valid_mask()
        base, mean = self._decode(z, cond, tgt.times, where=mask > 0)
        weights = observation_weights(mask, weighting)
        # forecast_noise: the values after the conditioning are scored under their own model
        after = (None if target is None or self.forecast_noise is None
                 else _after_conditioning(cond, tgt).unsqueeze(-1).to(weights.dtype))
        log_lik = _log_prob(self.noise, self.forecast_noise, after, tgt.values, weights,
                            mean)  # (K, B)
        # the decoder's own means scored alike by their own observation model (loss's
        # readout_aux): (K, B), with gradients into the decoder, dynamics and encoder
        aux_lik = (_log_prob(self.decoder_noise, self.forecast_decoder_noise, after,
                             tgt.values, weights, base)
                   if readout_aux and self.decoder_noise is not None else None)
        if self.intensity is not None:
            log_lik = log_lik + self.intensity.log_likelihood(z, cum, mask, tgt.lengths)
        kl = kl_normal_standard(mu, sigma)  # (B,)
        analytic = kl_estimator == "analytic" or (kl_estimator == "auto" and n_traj_samples == 1)
        if analytic:
            log_ratio = kl.unsqueeze(0)
        else:
            log_ratio = normal_log_prob(z0, mu, sigma) - normal_log_prob(
                z0, torch.zeros_like(mu), torch.ones_like(sigma)
            )
        log_w = log_lik - kl_weight * log_ratio
        diag = dict(
            z0=z0, log_lik=log_lik.detach(), kl=kl.detach(), mask=mask,
            sq_err=masked_squared_error(tgt.values, mask, mean.detach()),
        )
        if aux_lik is not None:
            diag["aux_lik"] = aux_lik
        if pooled is not None:
            diag["pooled"] = pooled
        return log_w, diag

    def loss(
        self,
        batch: Batch,
        n_traj_samples: int = 3,
        kl_weight: float = 1.0,
        *,
        target: Batch | None = None,
        generator: torch.Generator | None = None,
        kl_estimator: str = "auto",
        weighting: str = "value",
        z0_noise: torch.Tensor | None = None,
        ce_weight: float = 0.0,
        elbo: bool = True,
        readout_aux: float = 0.0,
    ) -> LossOutput:
        """Negative IWAE bound per observed value (the training objective).

        For each series ``b`` and trajectory sample ``k``, ``log w_kb = log p(x_b | z_k) -
        kl_weight * r_kb`` where ``r`` is the analytic KL (one sample, ``kl_estimator="auto"``)
        or the sampled log-ratio ``log q(z_k) - log p(z_k)`` (several samples, a proper IWAE
        bound when ``kl_weight = 1``). ``loss = -sum_b logmeanexp_k(log w_kb) / n_obs``.

        Parameters
        ----------
        batch : Batch
            Conditioning data; also the data scored when ``target`` is None (reconstruction).
        n_traj_samples : int
            Number ``K`` of samples of ``z_t0``, all solved in one batched ODE solve.
        kl_weight : float
            Weight of the KL term (KL warm-up), 1 for the true bound.
        target : Batch, optional
            Data to score instead of ``batch`` (e.g. the future of each series for forecasting
            training); ``t0 = min(first batch time, first target time)``. Its Poisson term uses
            the window from its first to its last time.
        generator : torch.Generator, optional
            Source of the reparametrisation noise (and of the classifier's dropout masks).
        kl_estimator : {"auto", "analytic", "sampled"}
            How the KL term enters ``log w`` (``"auto"``: analytic for ``K = 1``, else sampled).
        weighting : {"value", "channel"}
            Weight of each observed value in the observation log-likelihood
            (:func:`~latentode.nn.observation_weights`): ``"channel"`` gives each channel of a
            series the same total weight however often it was observed (``nll`` is then the
            weighted one; ``mse`` stays the plain mean over values).
        z0_noise : torch.Tensor, optional
            ``(n_traj_samples, B, latent_dim)`` standard normal noise of the reparametrisation
            (see :meth:`draw_z0_noise`), used instead of drawing it from ``generator``.
        ce_weight : float
            Weight of the classification term (models with a classifier, batches with
            ``labels``): ``loss += ce_weight * sum_b w_b CE_b / B_l``, the cross-entropy of the
            classifier on each trajectory sample of ``z_t0`` averaged over samples, ``w_b`` the
            series' ``Batch.weights`` (default 1), summed over the ``B_l`` labelled series of
            the batch (:func:`~latentode.nn.classifier.labelled_mean`: ``B_l = B`` when every
            series is labelled; series labelled :data:`~latentode.batch.UNLABELLED` add to the
            bound only; 0 when none is labelled). The paper's PhysioNet classifier uses 100.
        elbo : bool
            False trains the classifier alone (the paper's ODE-RNN classifier): ``loss =
            sum_b w_b CE_b / B_l`` of the classifier on the posterior mean of ``z_t0`` (the
            encoder's output); nothing is decoded, ``nll``, ``kl`` and ``mse`` are 0.
        readout_aux : float
            Weight ``lambda >= 0`` of the auxiliary term of a model with a :attr:`readout`:
            ``loss += lambda * (-sum_b mean_k log p(x_b | decoder(z_k)) / n_obs)``, the
            observation log-likelihood of the decoder's *uncorrected* means (same entries and
            ``weighting`` as the bound) under their own observation model,
            :attr:`decoder_noise` (same family and options as :attr:`observation`, its scale
            learned by this term alone, or the same fixed ``obs_std``), so that the noise of
            the corrected means, and their intervals, are fitted by the bound alone, and the
            decoder's errors weigh by its own noise level. It asks the latent trajectory to
            explain the data by itself, which the readout then refines near the observations:
            without it (0) the readout can fit the window from the neighbours while the
            trajectory, which alone forecasts far from them, learns little. Outside the IWAE
            bound (the bound and its one KL term are unchanged); ignored by a model without a
            readout. ``nll`` and ``mse`` stay those of the corrected means.

        Returns
        -------
        LossOutput
        """
        if not (math.isfinite(readout_aux) and readout_aux >= 0):
            raise ValueError(f"readout_aux must be a non-negative finite number, got "
                             f"{readout_aux!r}.")
        classify = ce_weight > 0 or not elbo
        if classify and (self.classifier is None or batch.labels is None):
            raise ValueError("A classification loss needs a model with n_classes >= 2 and a "
                             "batch with labels.")
        if not elbo:
            mask = batch.valid_mask()
            n_obs = mask.sum().detach()
            ce = weighted_cross_entropy(self.classify(batch, generator=generator), batch.labels,
                                        batch.weights)
            zero = ce.new_zeros(())
            return LossOutput(loss=labelled_mean(ce, batch.labels), nll=zero, kl=zero,
                              mse=zero, n_obs=n_obs)
        log_w, diag = self._log_weights(
            batch, target, n_traj_samples, kl_weight, generator, kl_estimator, weighting,
            z0_noise, readout_aux=readout_aux > 0,
        )
        n_obs = diag["mask"].sum()
        denom = n_obs.clamp(min=1.0)
        loss = -logmeanexp(log_w, dim=0).sum() / denom
        if "aux_lik" in diag:
            loss = loss - readout_aux * diag["aux_lik"].mean(0).sum() / denom
        if classify:
            logits = self.classify(batch, diag["z0"], generator,
                                   diag.get("pooled"))  # (K, B, n_classes)
            ce = weighted_cross_entropy(logits, batch.labels, batch.weights)
            loss = loss + ce_weight * labelled_mean(ce, batch.labels)
        return LossOutput(
            loss=loss,
            nll=(-diag["log_lik"].mean(0).sum() / denom).detach(),
            kl=(diag["kl"].sum() / denom).detach(),
            mse=(diag["sq_err"].mean(0).sum() / denom).detach(),
            n_obs=n_obs.detach(),
        )

    def forward(self, batch: Batch, n_traj_samples: int = 3, kl_weight: float = 1.0,
                **kwargs: Any) -> LossOutput:
        """Alias of :meth:`loss`."""
        return self.loss(batch, n_traj_samples, kl_weight, **kwargs)

    def log_likelihood(
        self,
        batch: Batch,
        n_traj_samples: int = 10,
        *,
        target: Batch | None = None,
        generator: torch.Generator | None = None,
        kl_estimator: str = "auto",
    ) -> torch.Tensor:
        """Per-series IWAE estimate of ``log p(x_b)`` (KL weight 1), for scoring.

        Includes the Poisson log-likelihood of the observation times when enabled. Call under
        :func:`torch.no_grad` for scoring.

        Returns
        -------
        torch.Tensor
            ``(B,)`` lower-bound estimates (they tighten as ``n_traj_samples`` grows).
        """
        log_w, _ = self._log_weights(batch, target, n_traj_samples, 1.0, generator, kl_estimator)
        return logmeanexp(log_w, dim=0)

    def point_squared_error(self, batch: Batch, *, target: Batch | None = None) -> torch.Tensor:
        """Squared errors of the point predictions on the observed values, summed per series.

        The point prediction is what :meth:`predict` gives with ``use_mean=True``: the
        trajectory of the posterior mean of ``z_t0`` (no sampling noise), decoded and corrected
        by the :attr:`readout` (whose neighbours are strictly before and after each scored
        time, so a reconstruction is never its own context). Deterministic; call under
        :func:`torch.no_grad` for scoring.

        Parameters
        ----------
        batch : Batch
            Conditioning data; also the data scored when ``target`` is None (reconstruction).
        target : Batch, optional
            Data to score instead (e.g. each series' future, as in :meth:`loss`).

        Returns
        -------
        torch.Tensor
            ``(B,)`` sums over each series' observed entries of ``(value - mean) ** 2``
            (divide by the number of observed values, ``mask.sum()`` over its valid prefix, for
            an MSE).
        """
        tgt = batch if target is None else target
        t0 = self._posterior_at(batch, tgt.times, tgt.lengths)
        mu, _ = self.encode(batch, t0)
        z, _ = self.solve(mu.unsqueeze(0), t0, tgt.times, tgt.lengths)
        mask = tgt.valid_mask()
        mean = self.decode(z, batch, tgt.times, where=mask > 0)
        return masked_squared_error(tgt.values, mask, mean)[0]

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        cond: Batch,
        query_times: torch.Tensor,
        query_lengths: torch.Tensor,
        n_samples: int = 1,
        generator: torch.Generator | None = None,
        use_mean: bool = True,
        calibrated: bool = True,
        noise: torch.Tensor | None = None,
    ) -> PredictOutput:
        """Decode the latent trajectory of each series at its query times.

        Parameters
        ----------
        cond : Batch
            Conditioning observations.
        query_times : torch.Tensor
            ``(B, M)`` query times, ascending over each series' valid prefix (model time).
        query_lengths : torch.Tensor
            ``(B,)`` number of valid query times per series (outputs at padded positions repeat
            the last valid one).
        n_samples : int
            Number ``S`` of trajectory samples.
        generator : torch.Generator, optional
            Source of the sampling noise (reproducible predictions).
        use_mean : bool
            With ``n_samples == 1``, start from the posterior mean of ``z_t0`` instead of a
            sample. Ignored when ``n_samples > 1``.
        calibrated : bool
            Widen the predictive distribution by :attr:`spread_scale` (per channel), times the
            factor of :attr:`gap_spread` at each query (its kind and distance to the
            conditioning observations; 1 until fitted): with ``S > 1`` samples, each sample's
            deviation from the sample average and the noise standard deviation are multiplied
            by it, so the average is unchanged; and give the calibrated tails of
            :attr:`gap_spread` (``tail_df``) when fitted.
        noise : torch.Tensor, optional
            ``(S, B, latent_dim)`` or ``(S, 1, latent_dim)`` standard-normal values of the
            samples of ``z_t0`` (:meth:`sample_z0`), used instead of drawing them from
            ``generator`` (``use_mean`` is then ignored).

        Returns
        -------
        PredictOutput
            ``mean (S, B, M, C)``, ``obs_std (C,)``, ``intensity (S, B, M, C)`` or None,
            ``gap_factor (B, M, C)`` or None, ``tail_df (B, M, C)`` or None.

        Notes
        -----
        Runs in the caller's grad mode; wrap in :func:`torch.no_grad` for inference.
        """
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        t0 = self._posterior_at(cond, query_times, query_lengths)
        mu, sigma = self.encode(cond, t0)
        if use_mean and n_samples == 1 and noise is None:
            z0 = mu.unsqueeze(0)
        else:
            z0 = self.sample_z0(mu, sigma, n_samples, generator, noise)
        z, _ = self.solve(z0, t0, query_times, query_lengths)
        mean = self.decode(z, cond, query_times)
        intensity = self.intensity(z) if self.poisson_process else None
        obs_std = self.obs_std
        by_gap = tails = None
        if calibrated and n_samples > 1:
            factor = self.spread_scale
            by_gap, tails = self.gap_spread.calibration(cond, query_times)
            if by_gap is not None:
                by_gap = by_gap.to(mean.dtype)
                factor = factor * by_gap  # (B, M, C)
            center = mean.mean(0, keepdim=True)
            mean = center + factor * (mean - center)
            obs_std = obs_std * self.spread_scale
        return PredictOutput(mean=mean, obs_std=obs_std, intensity=intensity,
                             gap_factor=by_gap, tail_df=tails)

    def predict_point(
        self,
        cond: Batch,
        query_times: torch.Tensor,
        query_lengths: torch.Tensor,
        point: str = "posterior_mean",
        n_samples: int = POINT_SAMPLES,
    ) -> PredictOutput:
        """One point prediction per query: the decoded mean under the rule ``point``.

        Parameters
        ----------
        cond : Batch
            Conditioning observations.
        query_times : torch.Tensor
            ``(B, M)`` query times, as for :meth:`predict`.
        query_lengths : torch.Tensor
            ``(B,)`` number of valid query times per series.
        point : {"posterior_mean", "predictive_mean"}
            ``"posterior_mean"``: the trajectory of the posterior mean of ``z_t0``, decoded
            (:meth:`predict` with ``use_mean=True``). ``"predictive_mean"``: the average of the
            decoded trajectories of ``z_t0 = mu + sigma * eps_s`` over the ``n_samples`` fixed
            antithetic points ``eps_s`` of :func:`point_noise`, the same for every series (one
            batched solve of ``n_samples * B`` rows), a quasi-Monte Carlo estimate of the
            predictive mean ``E_q[decode(z_t)]``; it differs from the former where the flow or
            the decoder (or the readout) is nonlinear in ``z``. Both are deterministic, and a
            series' prediction depends only on its own conditioning data (not on the batch).
        n_samples : int
            Points averaged by ``"predictive_mean"`` (ignored by ``"posterior_mean"``).

        Returns
        -------
        PredictOutput
            ``mean (1, B, M, C)``, the uncalibrated ``obs_std (C,)``, ``intensity (1, B, M, C)``
            (averaged like ``mean``) or None; no ``gap_factor`` or ``tail_df``.
        """
        if point not in POINT_PREDICTIONS:
            raise ValueError(f"point must be one of {POINT_PREDICTIONS}, got {point!r}.")
        if point == "posterior_mean":
            return self.predict(cond, query_times, query_lengths, n_samples=1, use_mean=True,
                                calibrated=False)
        param = next(self.parameters())
        noise = point_noise(n_samples, self.latent_dim, device=param.device, dtype=param.dtype)
        # the calibration's widening keeps the sample average: leave it out
        pred = self.predict(cond, query_times, query_lengths, n_samples=n_samples,
                            use_mean=False, calibrated=False, noise=noise)
        return PredictOutput(
            mean=pred.mean.mean(0, keepdim=True), obs_std=pred.obs_std,
            intensity=None if pred.intensity is None else pred.intensity.mean(0, keepdim=True))


def _start_time(cond: Batch, times: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``t0 = min(first conditioning time, first query time)`` (queries may be empty)."""
    first_cond = cond.times[:, 0]
    lengths = lengths.to(times.device)
    first_query = torch.where(lengths > 0, times[:, 0], first_cond)
    return torch.minimum(first_cond, first_query)


def time_reversed(cond: Batch, t0: torch.Tensor) -> Batch:
    """``cond`` reversed in time about ``t0``: each series' valid prefix in reverse order
    (:func:`~latentode.ode.padded.flip_valid`) at times ``s = t0 - t``, so that a series that
    ended at ``t_N <= t0`` starts at ``t0 - t_N >= 0``. Its own inverse (same ``t0``).

    Parameters
    ----------
    cond : Batch
        A padded batch.
    t0 : torch.Tensor
        ``(B,)`` each series' reflection time.

    Returns
    -------
    Batch
        Same lengths and per-series fields; times ascending over each valid prefix.
    """
    lengths = cond.lengths
    times = t0.to(cond.times.dtype).unsqueeze(1) - flip_valid(cond.times, lengths)
    return Batch(times, flip_valid(cond.values, lengths), flip_valid(cond.mask, lengths),
                 lengths, **cond.per_series())


def _after_conditioning(cond: Batch, target: Batch) -> torch.Tensor:
    """``(B, M)`` bool: the target's time points after their series' last conditioning time
    (the forecasts of a split; none where the conditioning covers the whole series)."""
    return target.times > last_time(cond.times, cond.lengths).to(target.times.device)


def _log_prob(model: ObservationModel, after_model: ObservationModel | None,
              after: torch.Tensor | None, values: torch.Tensor, weights: torch.Tensor,
              mean: torch.Tensor) -> torch.Tensor:
    """``model``'s weighted log-likelihood ``(K, B)`` of ``values`` around ``mean``, the entries
    marked by ``after`` (``(B, M, 1)`` 0/1; None: none) under ``after_model`` instead."""
    if after is None or after_model is None:
        return model.log_prob(values, weights, mean)
    return (model.log_prob(values, weights * (1 - after), mean)
            + after_model.log_prob(values, weights * after, mean))
