"""Latent dynamics ``dz/dt = f(z)`` and the Poisson-process augmented system."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .likelihoods import log_softplus

__all__ = ["mlp", "init_ode_weights", "LatentDynamics", "Intensity", "PoissonDynamics"]

_LN2 = math.log(2.0)


def mlp(
    n_in: int, n_out: int, n_layers: int, units: int, activation: type[nn.Module] = nn.Tanh
) -> nn.Sequential:
    """Multi-layer perceptron with ``n_layers`` hidden layers of ``units`` (0: a linear map).

    Parameters
    ----------
    n_in, n_out : int
        Input and output sizes.
    n_layers : int
        Number of hidden layers.
    units : int
        Width of each hidden layer.
    activation : type of torch.nn.Module
        Hidden non-linearity (default :class:`torch.nn.Tanh`).

    Returns
    -------
    torch.nn.Sequential
    """
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}.")
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, units), activation()]
        width = units
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def init_ode_weights(module: nn.Module, std: float = 0.1) -> None:
    """Initialise every linear layer of ``module`` with ``N(0, std^2)`` weights and zero biases.

    Small weights keep freshly initialised vector fields slow and non-stiff, as in the reference
    implementation of Rubanova et al. (2019).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class LatentDynamics(nn.Module):
    """Time-invariant vector field ``f(z)``: an MLP with tanh hidden layers.

    Parameters
    ----------
    dim : int
        State dimension.
    n_layers : int
        Number of hidden layers.
    units : int
        Hidden width.
    """

    def __init__(self, dim: int, n_layers: int = 3, units: int = 50) -> None:
        super().__init__()
        self.dim = dim
        self.net = mlp(dim, dim, n_layers, units)
        init_ode_weights(self.net)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``dz/dt`` for a ``(B, dim)`` state; ``t`` is ignored (autonomous system)."""
        return self.net(z)

    def tanh_mlp_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(weight, bias)`` of each linear layer, tanh between them, ``t`` ignored.

        Declares the field an autonomous tanh MLP, which lets the ODE core's adjoint and the
        ODE-RNN scan use their hand-written vector-Jacobian products instead of autograd.
        """
        return [(m.weight, m.bias) for m in self.net if isinstance(m, nn.Linear)]


class Intensity(nn.Module):
    """Per-channel Poisson intensity ``lambda_c(z) = base_c * softplus(g_c(z)) / log 2``.

    ``g`` is an MLP with one hidden layer; ``base`` (a buffer, default 1) is the typical rate,
    set from the data before training (:meth:`LatentODE.set_intensity_base`), so that the
    network only learns relative changes: with model times normalised to a series span of
    about 1, rates are the number of observations per series (tens), which ``softplus(g)``
    alone would need thousands of optimiser steps to reach.

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
        Maps ``(..., latent_dim)`` to ``(..., C)`` positive rates (e.g. :class:`Intensity`).
    """

    def __init__(self, dynamics: LatentDynamics, intensity: nn.Module) -> None:
        super().__init__()
        self.dynamics = dynamics
        self.intensity = intensity

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``d[z, Lambda]/dt`` for a ``(B, latent_dim + C)`` state."""
        z = state[:, : self.dynamics.dim]
        return torch.cat([self.dynamics(t, z), self.intensity(z)], dim=-1)
