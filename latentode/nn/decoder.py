"""Decoder from latent states to the locations of the observations.

The noise around them is an observation model (:mod:`latentode.nn.observation`).
"""

from __future__ import annotations

import torch
from torch import nn

from .dynamics import mlp

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """Map latent states ``z(t)`` to the mean of the observations ``x(t)``.

    Parameters
    ----------
    latent_dim : int
        Latent state size.
    n_channels : int
        Number of observed channels ``C``.
    n_layers : int
        Hidden layers (0, the default, is the linear decoder of the reference implementation).
    units : int
        Hidden width when ``n_layers > 0``.
    """

    def __init__(self, latent_dim: int, n_channels: int, n_layers: int = 0, units: int = 50):
        super().__init__()
        self.net = mlp(latent_dim, n_channels, n_layers, units)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., latent_dim)`` -> ``(..., C)`` means."""
        return self.net(z)


def __getattr__(name: str) -> object:
    # the Gaussian noise moved to latentode.nn.observation; its old name and path still work
    if name == "ObservationNoise":
        from .observation.gaussian import GaussianObservation

        return GaussianObservation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
