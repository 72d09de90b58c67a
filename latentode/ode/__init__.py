"""The ODE core: batched solves at per-series times, with adjoint or backprop gradients.

This is the only place in latentode that integrates an ODE. It depends on torch alone.
"""

from .api import GRADIENTS, METHODS, odeint
from .errors import ODESolveError
from .evolve import evolve
from .tableau import BOSH3, DOPRI5, EULER, RK4, ButcherTableau

__all__ = [
    "odeint",
    "evolve",
    "ODESolveError",
    "METHODS",
    "GRADIENTS",
    "ButcherTableau",
    "DOPRI5",
    "BOSH3",
    "RK4",
    "EULER",
]
