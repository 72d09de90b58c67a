"""Butcher tableaus of the explicit Runge-Kutta methods (one concept: the coefficients)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge-Kutta method.

    Attributes
    ----------
    name : str
        Method name as accepted by :func:`latentode.ode.odeint`.
    c : tuple of float
        Stage times as fractions of the step.
    a : tuple of tuple of float
        Row ``i`` holds the ``i`` coefficients combining the previous stages.
    b : tuple of float
        Weights of the propagated solution.
    b_err : tuple of float or None
        ``b - b_hat``: weights of the embedded error estimate (adaptive methods only).
    order : int
        Order of the propagated solution.
    fsal : bool
        Whether the last stage is evaluated at the new state (first same as last).
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_err: tuple[float, ...] | None
    order: int
    fsal: bool = False

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    @property
    def n_stages(self) -> int:
        return len(self.c)


_DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DOPRI5_B_HAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)

#: Dormand-Prince 5(4): adaptive, FSAL, with a 4th-order dense output (``method="dopri5"``)
DOPRI5 = ButcherTableau(
    name="dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DOPRI5_B[:6],
    ),
    b=_DOPRI5_B,
    b_err=tuple(b - bh for b, bh in zip(_DOPRI5_B, _DOPRI5_B_HAT)),
    order=5,
    fsal=True,
)

# Weights giving the solution at the middle of a dopri5 step (Shampine 1986); with the end
# points and their derivatives they define the 4th-order dense output (Hairer's DOPRI5).
DOPRI5_C_MID = (
    6025192743 / 30085553152 / 2,
    0.0,
    51252292925 / 65400821598 / 2,
    -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2,
    -1776094331 / 19743644256 / 2,
    11237099 / 235043384 / 2,
)

#: the classical 4th-order Runge-Kutta method, fixed step (``method="rk4"``)
RK4 = ButcherTableau(
    name="rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    b_err=None,
    order=4,
)

#: Bogacki-Shampine 3(2): adaptive, FSAL (``method="bosh3"``)
BOSH3 = ButcherTableau(
    name="bosh3",
    c=(0.0, 0.5, 0.75, 1.0),
    a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    b_err=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    order=3,
    fsal=True,
)

#: the explicit Euler method, fixed step (``method="euler"``)
EULER = ButcherTableau(name="euler", c=(0.0,), a=((),), b=(1.0,), b_err=None, order=1)

TABLEAUS: dict[str, ButcherTableau] = {t.name: t for t in (DOPRI5, BOSH3, RK4, EULER)}
