"""Neural network layer: encoders, latent dynamics, decoder, likelihoods and :class:`LatentODE`.

Depends on torch and :mod:`latentode.ode` only.
"""

from latentode.ode import ODESolveError

from .decoder import Decoder, ObservationNoise
from .dynamics import Intensity, LatentDynamics, PoissonDynamics, init_ode_weights, mlp
from .encoder import GRUEncoder, GRUUpdate, ODERNNEncoder
from .likelihoods import (
    OBS_WEIGHTINGS,
    gaussian_log_likelihood,
    kl_normal_standard,
    log_softplus,
    logmeanexp,
    masked_squared_error,
    normal_log_prob,
    observation_weights,
    poisson_log_likelihood,
)
from .model import LatentODE, LossOutput, PredictOutput

__all__ = [
    "LatentODE",
    "LossOutput",
    "PredictOutput",
    "ODERNNEncoder",
    "GRUEncoder",
    "GRUUpdate",
    "LatentDynamics",
    "PoissonDynamics",
    "Intensity",
    "Decoder",
    "ObservationNoise",
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
