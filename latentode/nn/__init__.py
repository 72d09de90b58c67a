"""Neural network layer: encoders, latent dynamics, decoder, observation models, :class:`LatentODE`.

Depends on torch, :mod:`latentode.ode`, :mod:`latentode.batch` and the numpy root finder
:mod:`latentode._mixture` only (numpy and scipy.special for the predictive distributions).
"""

from latentode.ode import ODESolveError

from .decoder import Decoder
from .dynamics import LatentDynamics, init_ode_weights, mlp
from .encoder import GRUEncoder, GRUUpdate, ODERNNEncoder
from .likelihoods import (
    OBS_WEIGHTINGS,
    kl_normal_standard,
    log_softplus,
    logmeanexp,
    masked_squared_error,
    normal_log_prob,
    observation_weights,
)
from .model import LatentODE, LossOutput, PredictOutput
from .mtan import MTANEncoder
from .observation import (
    GaussianObservation,
    ObservationModel,
    PoissonDynamics,
    PoissonProcess,
    StudentTObservation,
    gaussian_log_likelihood,
    poisson_log_likelihood,
)
from .readout import (
    READOUT_REACHES,
    READOUT_SIDES,
    READOUT_SPLITS,
    NeighbourReadout,
    Neighbours,
    channel_neighbours,
)
from .registry import ENCODERS, LIKELIHOODS, OBSERVATION_MODELS, READOUTS

# former names, kept importable
ObservationNoise = GaussianObservation
Intensity = PoissonProcess

__all__ = [
    "LatentODE",
    "LossOutput",
    "PredictOutput",
    "ODERNNEncoder",
    "GRUEncoder",
    "MTANEncoder",
    "GRUUpdate",
    "LatentDynamics",
    "PoissonDynamics",
    "PoissonProcess",
    "Intensity",
    "Decoder",
    "NeighbourReadout",
    "Neighbours",
    "channel_neighbours",
    "READOUTS",
    "READOUT_REACHES",
    "READOUT_SIDES",
    "READOUT_SPLITS",
    "ObservationModel",
    "GaussianObservation",
    "StudentTObservation",
    "ObservationNoise",
    "OBSERVATION_MODELS",
    "LIKELIHOODS",
    "ENCODERS",
    "mlp",
    "init_ode_weights",
    "gaussian_log_likelihood",
    "poisson_log_likelihood",
    "kl_normal_standard",
    "normal_log_prob",
    "log_softplus",
    "logmeanexp",
    "masked_squared_error",
    "observation_weights",
    "OBS_WEIGHTINGS",
    "ODESolveError",
]
