"""The observation model of the *times*: a Poisson process per channel (``poisson_process=True``).

Each observed entry ``(t_m, c)`` is an event of channel ``c``'s inhomogeneous Poisson process,
whose intensity ``lambda_c(z(t))`` is a function of the latent state. :class:`PoissonProcess`
owns, in one place, the intensity network, the augmentation of the latent ODE that integrates
it (:class:`PoissonDynamics`), the log-likelihood of the observation times
(:func:`poisson_log_likelihood`) and the conversion of rates to the user's time unit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..dynamics import LatentDynamics, mlp
from ..likelihoods import log_softplus

__all__ = ["PoissonProcess", "PoissonDynamics", "poisson_log_likelihood"]

_LN2 = math.log(2.0)


def poisson_log_likelihood(
    log_intensity: torch.Tensor,
    cum_intensity: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Log-likelihood of the observation times under an inhomogeneous Poisson process per channel.

    Each observed entry ``(t_m, c)`` is an event of channel ``c``'s process with intensity
    ``lambda_c(t)``. Over the window ``[t_first, t_last]`` of each series
    the log-likelihood is ``sum_{observed (m,c)} log lambda_c(t_m) - sum_c (Lambda_c(t_last) -
    Lambda_c(t_first))`` with ``Lambda`` the integrated intensity.

    Parameters
    ----------
    log_intensity : torch.Tensor
        ``(K, B, M, C)`` ``log lambda`` at the observation times.
    cum_intensity : torch.Tensor
        ``(K, B, M, C)`` integrated intensity ``Lambda(t_m)`` (any common offset).
    mask : torch.Tensor
        ``(B, M, C)`` float mask of observed entries.
    lengths : torch.Tensor
        ``(B,)`` number of valid time points per series (``>= 1``).

    Returns
    -------
    torch.Tensor
        ``(K, B)`` log-likelihood per trajectory sample and series.
    """
    events = (log_intensity * mask).sum(dim=(-2, -1))
    k, b, _, c = cum_intensity.shape
    last = (lengths - 1).to(torch.long).view(1, b, 1, 1).expand(k, b, 1, c)
    lam_last = cum_intensity.gather(2, last).squeeze(2)
    compensator = (lam_last - cum_intensity[:, :, 0]).sum(-1)
    return events - compensator


class PoissonProcess(nn.Module):
    """Per-channel Poisson process of the observation times, intensity ``lambda_c(z)``.

    ``lambda_c(z) = base_c * softplus(g_c(z)) / log 2``. ``g`` is an MLP with one hidden layer;
    ``base`` (a buffer, default 1) is the typical rate, set from the data before training
    (:meth:`set_base`, called by :meth:`LatentODE.set_intensity_base`), so that the network only
    learns relative changes: with model times normalised to a series span of about 1, rates are
    the number of observations per series (tens), which ``softplus(g)`` alone would need
    thousands of optimiser steps to reach.

    Parameters
    ----------
    latent_dim : int
        Size of ``z``.
    n_channels : int
        Number of channels ``C``.
    units : int
        Hidden width of ``g``.
    """

    def __init__(self, latent_dim: int, n_channels: int, units: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, n_channels, 1, units)
        self.register_buffer("base", torch.ones(n_channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Rates ``(..., C)`` (positive) at latent states ``(..., latent_dim)``."""
        return self.base * F.softplus(self.net(z)) / _LN2

    def log_rate(self, z: torch.Tensor) -> torch.Tensor:
        """``log lambda(z)`` without underflow."""
        return torch.log(self.base) + log_softplus(self.net(z)) - math.log(_LN2)

    def set_base(self, rate: torch.Tensor) -> None:
        """Set the typical rate ``(C,)`` per channel (events per model time unit, ``> 0``)."""
        rate = torch.as_tensor(rate, dtype=self.base.dtype, device=self.base.device)
        if rate.shape != self.base.shape or not bool((rate > 0).all()):
            raise ValueError(f"rate must be {tuple(self.base.shape)} positive values.")
        self.base.copy_(rate)

    def augment(self, dynamics: LatentDynamics) -> PoissonDynamics:
        """The ODE of ``[z, Lambda]``: ``dynamics`` plus this intensity, integrated alongside."""
        return PoissonDynamics(dynamics, self)

    def log_likelihood(
        self, z: torch.Tensor, cum_intensity: torch.Tensor, mask: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Log-likelihood ``(K, B)`` of the observation times (:func:`poisson_log_likelihood`).

        Parameters
        ----------
        z : torch.Tensor
            ``(K, B, M, latent_dim)`` latent states at the times.
        cum_intensity : torch.Tensor
            ``(K, B, M, C)`` integrated intensities, the extra state of :meth:`augment`'s ODE.
        mask : torch.Tensor
            ``(B, M, C)`` float mask of observed entries.
        lengths : torch.Tensor
            ``(B,)`` number of valid time points per series.
        """
        return poisson_log_likelihood(self.log_rate(z), cum_intensity, mask, lengths)

    @staticmethod
    def to_user_units(rate: np.ndarray, time_scale: float) -> np.ndarray:
        """Rates per model time unit -> per user time unit (model time is ``t / time_scale``)."""
        return rate / time_scale


class PoissonDynamics(nn.Module):
    """Latent dynamics augmented with the integrated Poisson intensities.

    The state is ``[z, Lambda]`` with ``dz/dt = f(z)`` and ``dLambda_c/dt = lambda_c(z)``, so
    one ODE solve yields both the latent trajectory and the compensators of the per-channel
    observation-time processes.

    Parameters
    ----------
    dynamics : LatentDynamics
        The latent vector field ``f``.
    intensity : torch.nn.Module
        Maps ``(..., latent_dim)`` to ``(..., C)`` positive rates (e.g. :class:`PoissonProcess`).
    """

    def __init__(self, dynamics: LatentDynamics, intensity: nn.Module) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.intensity = intensity

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``d[z, Lambda]/dt`` for a ``(B, latent_dim + C)`` state."""
        z = state[:, : self.dynamics.dim]
        return torch.cat([self.dynamics(t, z), self.intensity(z)], dim=-1)
