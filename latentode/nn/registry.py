"""Registries of the interchangeable components of :class:`~latentode.nn.LatentODE`, by name.

One place maps each name the estimator accepts to the class that implements it:
``LatentODE(encoder=...)`` builds ``ENCODER_CLASSES[encoder].from_config(...)`` and
``LatentODE(likelihood=...)`` builds ``OBSERVATION_MODELS[likelihood].from_config(...)`` and
``LatentODE(readout=...)`` builds ``READOUT_CLASSES[readout](latent_dim, n_channels)`` (None: the
decoder alone); the estimator's parameter constraints and the checks of saved files read the
names from here (:data:`ENCODERS`, :data:`LIKELIHOODS`, :data:`READOUTS`). Adding a component
is one new module with its class (see :class:`~latentode.nn.observation.ObservationModel` for a
likelihood; an encoder has ``from_config``, a ``forward`` returning the mean and standard
deviation of ``q(z_t0)`` and, with ``return_states=True``, the states a pooling head reads and
their mask, and ``state_dim``, their width), one entry below and its tests.
"""

from __future__ import annotations

from torch import nn

from .encoder import GRUEncoder, ODERNNEncoder
from .mtan import MTANEncoder
from .observation import GaussianObservation, ObservationModel, StudentTObservation
from .readout import NeighbourReadout

__all__ = ["ENCODER_CLASSES", "ENCODERS", "OBSERVATION_MODELS", "LIKELIHOODS",
           "READOUT_CLASSES", "READOUTS"]

#: recognition networks ``q(z_t0 | x)`` by name (classes with a ``from_config`` classmethod)
ENCODER_CLASSES: dict[str, type[nn.Module]] = {
    "odernn": ODERNNEncoder,
    "gru": GRUEncoder,
    "mtan": MTANEncoder,
}
#: likelihoods of the observed values by name
OBSERVATION_MODELS: dict[str, type[ObservationModel]] = {
    GaussianObservation.name: GaussianObservation,
    StudentTObservation.name: StudentTObservation,
}
#: the accepted ``encoder`` names
ENCODERS: tuple[str, ...] = tuple(ENCODER_CLASSES)
#: the accepted ``likelihood`` names
LIKELIHOODS: tuple[str, ...] = tuple(OBSERVATION_MODELS)
#: readouts from the decoded latent state to the means by name (None: the decoder alone)
READOUT_CLASSES: dict[str, type[nn.Module] | None] = {
    "latent": None,
    "neighbours": NeighbourReadout,
}
#: the accepted ``readout`` names
READOUTS: tuple[str, ...] = tuple(READOUT_CLASSES)
