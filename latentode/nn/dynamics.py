"""Latent dynamics ``dz/dt = f(z)`` and the MLPs of the networks.

The Poisson-process augmented system lives with the Poisson process
(:mod:`latentode.nn.observation.poisson`).
"""

from __future__ import annotations

import torch
from torch import nn

from latentode.ode.hooks import hooked

__all__ = ["mlp", "init_ode_weights", "LatentDynamics", "DYNAMICS_ACTIVATIONS"]

#: the hidden non-linearities of the latent field, by name (``LatentODE(dynamics_activation=)``):
#: ``"tanh"`` (bounded: the reference implementation's), ``"elu"`` (``x`` for ``x > 0``,
#: ``exp(x) - 1`` below; the Neural ODE paper's published spiral example) and ``"softplus"``
#: (``log(1 + exp(x))``). The last two are unbounded above, so the field can keep growing with
#: the state beyond the states it was trained on. Each one's derivative is a function of its
#: output, which lets the ODE core's adjoint use its hand-written vector-Jacobian product
#: (:meth:`LatentDynamics.mlp_activation`).
DYNAMICS_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus}


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


def _hooked(seq: nn.Sequential) -> bool:
    """Whether calling ``seq`` or one of its layers would run a hook (a module's own or a
    global one), i.e. whether its layers must be called as modules
    (:func:`latentode.ode.hooks.hooked`)."""
    return hooked((seq, *seq))


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
    """Time-invariant vector field ``f(z)``: an MLP (tanh hidden layers by default), plus an
    optional linear term.

    With ``linear=True``, ``f(z) = A z + MLP(z)`` with a learned ``A`` (``latent_dim x
    latent_dim``, initialised at 0, so the field starts as the plain MLP). A tanh MLP is
    bounded: far from where it was trained its output saturates, so a flow that must keep
    rotating or growing beyond the training windows (a forecast) slows down. The linear term
    carries rotation and growth that scale with the state, and extrapolates them; so do hidden
    units that are unbounded above (``activation="elu"`` or ``"softplus"``), whose output grows
    linearly along directions where they are active.

    Parameters
    ----------
    dim : int
        State dimension.
    n_layers : int
        Number of hidden layers.
    units : int
        Hidden width.
    linear : bool
        Add the learned linear term ``A z``.
    activation : {"tanh", "elu", "softplus"}
        Hidden non-linearity (:data:`DYNAMICS_ACTIVATIONS`). Every choice starts from the same
        ``N(0, 0.1^2)`` weights and zero biases (:func:`init_ode_weights`).
    """

    def __init__(self, dim: int, n_layers: int = 3, units: int = 50,
                 linear: bool = False, activation: str = "tanh") -> None:
        super().__init__()
        if activation not in DYNAMICS_ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(DYNAMICS_ACTIVATIONS)}, got "
                             f"{activation!r}.")
        self.dim = dim
        self.activation = activation
        self.net = mlp(dim, dim, n_layers, units, DYNAMICS_ACTIVATIONS[activation])
        init_ode_weights(self.net)
        self.linear: nn.Linear | None = None
        if linear:
            # built without drawing from the global generator: nn.Linear's own (discarded)
            # initialisation would shift every module built after this one (decoder, readout),
            # so with the same seed the model would start from other weights than without the
            # term; this way it starts as exactly the model without it (A = 0)
            with torch.random.fork_rng(devices=[]):
                self.linear = nn.Linear(dim, dim, bias=False)
            nn.init.zeros_(self.linear.weight)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``dz/dt`` for a ``(B, dim)`` state; ``t`` is ignored (autonomous system).

        The solvers call this thousands of times per batch: without hooks on the layers it runs
        each layer's ``forward`` directly (the same operations, without the module call's
        Python layers, which cost about as much as the small products themselves).
        """
        if _hooked(self.net):
            out = self.net(z)
        else:
            out = z
            for layer in self.net:
                out = layer.forward(out)
        if self.linear is not None:
            out = out + self.linear(z)
        return out

    def mlp_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(weight, bias)`` of each linear layer, :meth:`mlp_activation` between them, ``t``
        ignored.

        Declares the field an autonomous MLP (plus :meth:`linear_term`), which lets the ODE
        core's adjoint use its hand-written vector-Jacobian product instead of autograd.
        """
        return [(m.weight, m.bias) for m in self.net if isinstance(m, nn.Linear)]

    def mlp_activation(self) -> str:
        """The name of the hidden non-linearity of :meth:`mlp_layers` (``"tanh"``, ``"elu"``
        or ``"softplus"``, as :data:`latentode.ode.MLP_ACTIVATIONS` spells them)."""
        return self.activation

    def tanh_mlp_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`mlp_layers` of a tanh field (the ODE-RNN scan's flow, whose fused loops are
        written for tanh).

        Raises
        ------
        ValueError
            If the hidden non-linearity is not tanh.
        """
        if self.activation != "tanh":
            raise ValueError(f"tanh_mlp_layers: this field's activation is "
                             f"{self.activation!r}, not 'tanh'.")
        return self.mlp_layers()

    def linear_term(self) -> torch.Tensor | None:
        """The matrix ``A`` of the linear term (its parameter follows the MLP's), or None."""
        return None if self.linear is None else self.linear.weight


def __getattr__(name: str) -> object:
    # the Poisson intensity and its augmented ODE moved to latentode.nn.observation.poisson
    if name in ("Intensity", "PoissonDynamics"):
        from .observation import poisson

        return poisson.PoissonProcess if name == "Intensity" else poisson.PoissonDynamics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
