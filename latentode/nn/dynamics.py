"""Latent dynamics ``dz/dt = f(z)`` and the MLPs of the networks.

The Poisson-process augmented system lives with the Poisson process
(:mod:`latentode.nn.observation.poisson`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mlp", "init_ode_weights", "LatentDynamics"]


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


def __getattr__(name: str) -> object:
    # the Poisson intensity and its augmented ODE moved to latentode.nn.observation.poisson
    if name in ("Intensity", "PoissonDynamics"):
        from .observation import poisson

        return poisson.PoissonProcess if name == "Intensity" else poisson.PoissonDynamics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
