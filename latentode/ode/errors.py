"""Errors raised by the ODE solvers."""

from __future__ import annotations


class ODESolveError(RuntimeError):
    """The solver could not reach the requested times.

    Raised when the step budget ``max_steps`` is exhausted, the step size underflows, or the state
    or its derivative becomes NaN/inf. The message names the first failing series (its index in
    the batch) and the time it had reached.

    Attributes
    ----------
    series : int
        Index in the batch of the first series that failed.
    time : float
        Time that series had reached.
    reason : str
        ``"max_steps"``, ``"step_underflow"`` or ``"non_finite"``.
    """

    def __init__(self, message: str, *, series: int, time: float, reason: str) -> None:
        super().__init__(message)
        self.series = series
        self.time = time
        self.reason = reason
