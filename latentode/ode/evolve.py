"""A lean fixed-step advance of every series over one interval (the ODE-RNN's inner loop)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .stepper import rk_step
from .tableau import TABLEAUS


def evolve(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    t_from: torch.Tensor,
    t_to: torch.Tensor,
    *,
    step_size: float,
    method: str = "euler",
    n_max: int | None = None,
) -> torch.Tensor:
    """Advance each series from ``t_from`` to ``t_to`` with equal fixed substeps.

    Series ``b`` takes ``n_b = ceil(|t_to - t_from| / step_size)`` equal steps of ``method``
    (at least one; none of length 0 changes the state). Gradients flow by autograd through the
    steps. Unlike :func:`odeint` this checks nothing that needs a value read back from the device
    (at most one read of the largest ``n_b`` when ``n_max`` is not given), which matters for a
    recurrent encoder calling it once per observation.

    Parameters
    ----------
    func : callable
        ``func(t, z) -> dz/dt`` with ``t`` of shape ``(B,)`` and ``z`` of shape ``(B, D)``.
    z : torch.Tensor
        ``(B, D)`` states at ``t_from``.
    t_from, t_to : torch.Tensor
        ``(B,)`` start and end times (either order, per series).
    step_size : float
        Largest substep.
    method : {"euler", "rk4"}
        Fixed-step method.
    n_max : int, optional
        Upper bound of the ``n_b`` if known (saves the read-back).

    Returns
    -------
    torch.Tensor
        ``(B, D)`` states at ``t_to``.
    """
    tab = TABLEAUS[method]
    if tab.adaptive:
        raise ValueError(f"evolve takes a fixed-step method, got {method!r}.")
    if not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}.")
    dt = t_to - t_from
    n = torch.ceil(dt.abs() / step_size).clamp(min=1.0)
    h = dt / n
    if n_max is None:
        n_max = int(n.max())
    t = t_from
    for k in range(n_max):
        h_k = torch.where(n > k, h, torch.zeros_like(h)) if k > 0 else h
        z, _, _ = rk_step(func, tab, t, z, h_k)
        t = t + h_k
    return z
