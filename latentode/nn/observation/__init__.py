"""Observation models: the distribution of the observed values, and of their times.

* :class:`ObservationModel` (:mod:`.base`): the interface of a likelihood of the values
  (log-density, calibration hook, predictive quantiles and draws, rescaling to user units);
* :class:`GaussianObservation` (``likelihood="gaussian"``, the default) and
  :class:`StudentTObservation` (``likelihood="student_t"``), registered by name in
  :data:`latentode.nn.registry.OBSERVATION_MODELS`;
* :class:`PoissonProcess` (``poisson_process=True``): the observation model of the times.
"""

from .base import Noise, ObservationModel
from .gaussian import GaussianObservation, gaussian_log_likelihood
from .poisson import PoissonDynamics, PoissonProcess, poisson_log_likelihood
from .student_t import StudentTObservation

__all__ = [
    "ObservationModel",
    "Noise",
    "GaussianObservation",
    "StudentTObservation",
    "PoissonProcess",
    "PoissonDynamics",
    "gaussian_log_likelihood",
    "poisson_log_likelihood",
]
