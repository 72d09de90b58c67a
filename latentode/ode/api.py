"""Public entry point :func:`odeint`: argument checks, time normalisation, gradient mode."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .adjoint import OdeintAdjoint, _ForwardSystem
from .fixed import solve_fixed
from .solve import SolverConfig, integrate
from .tableau import TABLEAUS

#: the ``method`` names :func:`odeint` accepts (adaptive ``dopri5`` and ``bosh3``, fixed-step
#: ``rk4`` and ``euler``)
METHODS = tuple(TABLEAUS)
#: the ``gradient`` modes of :func:`odeint`: continuous adjoint, or autograd through the solver
GRADIENTS = ("adjoint", "backprop")


def odeint(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    t: torch.Tensor,
    *,
    lengths: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    gradient: str = "adjoint",
    step_size: float | None = None,
    max_steps: int = 10_000,
    params: Sequence[torch.Tensor] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
) -> torch.Tensor:
    """Solve a batch of ODEs ``dz/dt = func(t, z)``, each series at its own times.

    Parameters
    ----------
    func : callable
        ``func(t, z) -> dz/dt`` where ``t`` is a ``(B,)`` tensor holding each series' current time
        and ``z`` is ``(B, D)``. Time-invariant dynamics ignore ``t``. With
        ``gradient="adjoint"``, ``func`` must be an :class:`torch.nn.Module` (its trainable
        parameters receive gradients) unless ``params`` lists the tensors to differentiate.
    z0 : torch.Tensor
        ``(B, D)`` states at the first time of each series, ``t[:, 0]``.
    t : torch.Tensor
        ``(N,)`` times shared by all series or ``(B, N)`` times per series. Each series' valid
        times must be monotone: increasing (forwards) or decreasing (backwards in time); equal
        neighbours are allowed. Series may run in different directions.
    lengths : torch.Tensor, optional
        ``(B,)`` number of valid times per series (a valid prefix, at least 1). Mutually exclusive
        with ``mask``.
    mask : torch.Tensor, optional
        ``(B, N)`` bool, ``True`` where a time is valid; ``mask[:, 0]`` must be ``True``.
    method : {"dopri5", "bosh3", "rk4", "euler"}
        ``"dopri5"``: adaptive Dormand-Prince 5(4) with per-series step sizes and error control;
        requested times are reached by 4th-order dense output, never by shortening steps.
        ``"bosh3"``: adaptive Bogacki-Shampine 3(2), cubic Hermite dense output.
        ``"rk4"``, ``"euler"``: fixed step ``step_size`` (default: one step per interval), each
        step clipped to land on the next requested time of its series.
    rtol, atol : float
        Relative and absolute tolerances of the adaptive methods (``"dopri5"``, ``"bosh3"``),
        also of the adjoint's backward solve unless ``adjoint_rtol`` / ``adjoint_atol`` are given.
    gradient : {"adjoint", "backprop"}
        ``"adjoint"``: gradients by the continuous adjoint method, solved backwards with adaptive
        per-series steps; memory does not grow with the number of solver steps.
        ``"backprop"``: automatic differentiation through the solver's operations. With a
        fixed-step method on the CPU and a field that declares itself an MLP
        (``mlp_layers()``, as :class:`latentode.nn.LatentDynamics` does) and has no hooks, the
        solve runs as one fused pass whose backward is the exact discrete adjoint of the steps,
        written by hand (``latentode/ode/fixed.py``): the same states to the bit, the same
        gradients up to rounding; a second derivative (``create_graph=True``) is autograd's.
    step_size : float, optional
        Step size of the fixed-step methods, in units of ``t``.
    max_steps : int
        Step budget per series (accepted and rejected steps); exceeding it raises
        :class:`ODESolveError`.
    params : sequence of torch.Tensor, optional
        Tensors to differentiate with the adjoint (default: ``func.parameters()`` that require
        grad).
    adjoint_rtol, adjoint_atol : float, optional
        Tolerances of the backward solve (default: ``rtol``, ``atol``).
    adjoint_method : str, optional
        Method of the backward solve. Default: ``"bosh3"`` when ``method`` is adaptive, else
        ``method``. The backward solve must stop at every requested time of a series (the
        adjoint jumps there), so its steps are bounded by the spacing of those times, where the
        lower-order Bogacki-Shampine 3(2) (4 evaluations a step instead of dopri5's 7) reaches
        the same tolerances with fewer evaluations.

    Returns
    -------
    torch.Tensor
        ``(B, N, D)``: ``out[:, j]`` is the state at ``t[:, j]`` (``out[:, 0] == z0``). At padded
        or masked positions it holds the state at the previous valid time, detached (those
        positions contribute no gradient).

    Raises
    ------
    ValueError
        Bad arguments: shapes, non-monotone or non-finite times, unknown method or gradient.
    ODESolveError
        Step budget exhausted, step size underflow, or NaN/inf in the state; the message names
        the series index and the time reached.

    Examples
    --------
    >>> import torch
    >>> from latentode.ode import odeint
    >>> f = lambda t, z: -z
    >>> t = torch.tensor([[0.0, 0.5, 1.0], [0.0, 2.0, 3.0]])
    >>> out = odeint(f, torch.ones(2, 1), t, gradient="backprop")
    >>> out.shape
    torch.Size([2, 3, 1])
    """
    if method not in TABLEAUS:
        raise ValueError(f"Unknown method {method!r}; expected one of {METHODS}.")
    if adjoint_method is not None and adjoint_method not in TABLEAUS:
        raise ValueError(f"Unknown adjoint_method {adjoint_method!r}; expected one of {METHODS}.")
    if gradient not in GRADIENTS:
        raise ValueError(f"Unknown gradient {gradient!r}; expected one of {GRADIENTS}.")
    if not isinstance(z0, torch.Tensor) or z0.ndim != 2 or not z0.is_floating_point():
        raise ValueError("z0 must be a floating-point tensor of shape (B, D).")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not tol > 0:
            raise ValueError(f"{name} must be positive, got {tol!r}.")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be positive, got {step_size!r}.")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps!r}.")
    batch = z0.shape[0]
    t = torch.as_tensor(t, device=z0.device).to(z0.dtype)
    if t.ndim == 1:
        t = t.unsqueeze(0).expand(batch, -1)
    if t.ndim != 2 or t.shape[0] != batch or t.shape[1] < 1:
        raise ValueError(
            f"t must have shape (N,) or (B, N) with B={batch} and N >= 1; got {tuple(t.shape)}."
        )
    n_out = t.shape[1]
    valid = _valid_mask(lengths, mask, batch, n_out, z0.device)
    if not torch.isfinite(z0).all():
        bad = int((~torch.isfinite(z0)).any(-1).nonzero()[0, 0])
        raise ValueError(f"z0 has NaN/inf values (series {bad}).")
    bad_t = valid & ~torch.isfinite(t)
    if bad_t.any():
        b, j = (int(v) for v in bad_t.nonzero()[0])
        raise ValueError(f"t has a NaN/inf value at series {b}, position {j}.")

    # forward-fill invalid positions with the previous valid time
    pos = torch.arange(n_out, device=t.device).expand(batch, -1)
    src = torch.where(valid, pos, torch.zeros_like(pos)).cummax(1).values
    t_ff = t.gather(1, src)
    direction = torch.sign(t_ff[:, -1] - t_ff[:, 0])
    direction = torch.where(direction == 0, torch.ones_like(direction), direction)
    s_out = direction.unsqueeze(1) * t_ff
    if n_out > 1:
        decreasing = s_out[:, 1:] < s_out[:, :-1]
        if decreasing.any():
            b, j = (int(v) for v in decreasing.nonzero()[0])
            raise ValueError(
                f"t is not monotone for series {b}: t[{b}, {j}]={float(t_ff[b, j]):.6g} then "
                f"t[{b}, {j + 1}]={float(t_ff[b, j + 1]):.6g}."
            )

    tab = TABLEAUS[method]
    check_every = 1 if z0.device.type == "cpu" else 4
    cfg = SolverConfig(tab, float(rtol), float(atol), step_size, int(max_steps), check_every)

    if gradient == "adjoint" and torch.is_grad_enabled():
        if params is None:
            if not isinstance(func, nn.Module):
                raise ValueError(
                    "gradient='adjoint' needs func to be a torch.nn.Module or the tensors to "
                    "differentiate passed as params=..."
                )
            params = [p for p in func.parameters() if p.requires_grad]
        params = tuple(params)
        if adjoint_method is None:
            adjoint_method = "bosh3" if tab.adaptive else method
        adj_tab = TABLEAUS[adjoint_method]
        if adj_tab.adaptive != tab.adaptive:
            raise ValueError("adjoint_method must be adaptive exactly when method is.")
        adj_cfg = SolverConfig(
            adj_tab,
            float(adjoint_rtol if adjoint_rtol is not None else rtol),
            float(adjoint_atol if adjoint_atol is not None else atol),
            step_size,
            int(max_steps),
            check_every,
        )
        out = OdeintAdjoint.apply(z0, s_out, direction, cfg, adj_cfg, func, *params)
    else:
        # fixed steps of an MLP field on the CPU: one fused pass, a hand-written backward
        out = None if tab.adaptive else solve_fixed(func, z0, s_out, direction, cfg)
        if out is None:
            system = _ForwardSystem(func, direction)
            out = integrate(system, z0, s_out, cfg, dense=tab.adaptive,
                            time_of=lambda b, s: float(direction[b]) * s)
    if not bool(valid.all()):
        out = torch.where(valid.unsqueeze(-1), out, out.detach())
    return out


def _valid_mask(lengths, mask, batch, n_out, device) -> torch.Tensor:
    if lengths is not None and mask is not None:
        raise ValueError("Pass either lengths or mask, not both.")
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=device)
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}.")
        if ((lengths < 1) | (lengths > n_out)).any():
            raise ValueError(f"lengths must lie in [1, {n_out}].")
        return torch.arange(n_out, device=device).unsqueeze(0) < lengths.unsqueeze(1)
    if mask is not None:
        mask = torch.as_tensor(mask, device=device).bool()
        if mask.shape != (batch, n_out):
            raise ValueError(f"mask must have shape ({batch}, {n_out}), got {tuple(mask.shape)}.")
        if not bool(mask[:, 0].all()):
            raise ValueError("mask[:, 0] must be True: z0 is the state at t[:, 0].")
        return mask
    return torch.ones(batch, n_out, dtype=torch.bool, device=device)
