"""One explicit Runge-Kutta step for a batch of series with per-series step sizes."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .tableau import DOPRI5_C_MID, ButcherTableau

System = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# (coefficients, dtype) -> the same coefficients as 0-dim CPU tensors of that dtype
_FACTORS: dict[tuple[tuple[float, ...], torch.dtype], tuple[torch.Tensor, ...]] = {}


def factors(coeffs: tuple[float, ...], like: torch.Tensor) -> tuple[float | torch.Tensor, ...]:
    """``coeffs`` as the multipliers of tensors like ``like``: on the CPU, 0-dim tensors of its
    dtype (made once per dtype), elsewhere the floats themselves.

    The products are the same numbers either way (a Python float is rounded to the tensor's
    dtype before the product), but on the CPU a float costs a conversion of the scalar per
    product, forwards and again backwards, about as much as the product itself at the solver's
    sizes.
    """
    if like.device.type != "cpu" or not like.is_floating_point():
        return coeffs
    key = (coeffs, like.dtype)
    out = _FACTORS.get(key)
    if out is None:
        # plain tensors even when first asked for under inference mode (autograd saves them)
        with torch.inference_mode(False):
            out = tuple(torch.tensor(c, dtype=like.dtype, device="cpu") for c in coeffs)
        _FACTORS[key] = out
    return out


def _combine(coeffs: tuple[float, ...], ks: list[torch.Tensor]) -> torch.Tensor | None:
    acc = None
    for c, f, k in zip(coeffs, factors(coeffs, ks[0]), ks):
        if c == 0.0:
            continue
        acc = f * k if acc is None else acc + f * k
    return acc


def rk_step(
    system: System,
    tab: ButcherTableau,
    s: torch.Tensor,
    y: torch.Tensor,
    h: torch.Tensor,
    k1: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
    """Take one step of ``tab`` from ``(s, y)`` with per-series step ``h``.

    Parameters
    ----------
    system : callable
        ``system(s, y) -> dy/ds`` with ``s`` of shape ``(B,)`` and ``y`` of shape ``(B, D)``.
    tab : ButcherTableau
        The method.
    s, y, h : torch.Tensor
        Current times ``(B,)``, states ``(B, D)`` and step sizes ``(B,)`` (0 freezes a series).
    k1 : torch.Tensor, optional
        ``system(s, y)`` if already known (first-same-as-last).

    Returns
    -------
    y_new : torch.Tensor
        Proposed state at ``s + h``.
    err : torch.Tensor or None
        Embedded local error estimate (adaptive methods).
    ks : list of torch.Tensor
        The stage derivatives (the last is ``system(s + h, y_new)`` for FSAL methods).
    """
    hc = h.unsqueeze(-1)
    c = factors(tab.c, h)
    ks = [system(s, y) if k1 is None else k1]
    y_new = None
    for i in range(1, tab.n_stages):
        incr = _combine(tab.a[i], ks)
        yi = y if incr is None else y + hc * incr
        if tab.fsal and i == tab.n_stages - 1:
            y_new = yi
        ks.append(system(s + c[i] * h, yi))
    if y_new is None:
        y_new = y + hc * _combine(tab.b, ks)
    err = None
    if tab.b_err is not None:
        err = hc * _combine(tab.b_err, ks)
    return y_new, err, ks


# the integers of the dense output's coefficients (as :func:`factors`)
_DENSE_FACTORS = (2.0, 3.0, 4.0, 5.0, 8.0, 11.0, 14.0, 16.0, 18.0, 32.0)


class DenseOutput:
    """4th-order continuous extension of a dopri5 step, or cubic Hermite for other methods.

    Built from the step's end points, their derivatives and (dopri5) the midpoint; the solver
    stacks every step's coefficients and evaluates them for all requested times at once
    (:meth:`evaluate_at`, Horner's scheme).
    """

    def __init__(
        self,
        tab: ButcherTableau,
        y0: torch.Tensor,
        y1: torch.Tensor,
        ks: list[torch.Tensor],
        f1: torch.Tensor,
        h: torch.Tensor,
    ) -> None:
        hc = h.unsqueeze(-1)
        f0 = ks[0]
        n2, n3, n4, n5, n8, n11, n14, n16, n18, n32 = factors(_DENSE_FACTORS, y0)
        if tab.name == "dopri5":
            y_mid = y0 + hc * _combine(DOPRI5_C_MID, ks)
            self.coeffs = (
                n2 * hc * (f1 - f0) - n8 * (y1 + y0) + n16 * y_mid,
                hc * (n5 * f0 - n3 * f1) + n18 * y0 + n14 * y1 - n32 * y_mid,
                hc * (f1 - n4 * f0) - n11 * y0 - n5 * y1 + n16 * y_mid,
                hc * f0,
                y0,
            )
        else:  # cubic Hermite (leading zero: same Horner scheme as the quartic)
            self.coeffs = (
                torch.zeros_like(y0),
                n2 * (y0 - y1) + hc * (f0 + f1),
                n3 * (y1 - y0) - hc * (n2 * f0 + f1),
                hc * f0,
                y0,
            )

    def stacked(self) -> torch.Tensor:
        """The five polynomial coefficients (highest power first) as one ``(5, B, D)`` tensor."""
        return torch.stack(self.coeffs)

    @staticmethod
    def evaluate_at(steps: torch.Tensor, step_of: torch.Tensor,
                    theta: torch.Tensor) -> torch.Tensor:
        """Evaluate, for every requested time, the polynomial of the step that covers it.

        Parameters
        ----------
        steps : torch.Tensor
            ``(S, 5, B, D)`` the coefficients of every step (:meth:`stacked`, stacked).
        step_of : torch.Tensor
            ``(B, N)`` long, the step of each requested time.
        theta : torch.Tensor
            ``(B, N)`` its fraction of that step.

        Returns
        -------
        torch.Tensor
            ``(B, N, D)``.

        Horner's scheme; each coefficient is gathered on its own from its ``(B, S, D)``
        slice, so neither the forward nor the backward pass forms a ``(B, N, 5, D)`` tensor
        (the backward of a slice of one would zero-fill all of it, once per coefficient).
        Without a gradient to track (prediction, the adjoint's forward solve) the coefficients
        are copied row by row (``index_select``) and the scheme runs in place in the first:
        the same values and operations in the same order, without a new ``(B, N, D)`` tensor
        per coefficient (about 2.5x faster at ``B = 5000``).
        """
        batch, n_out = step_of.shape
        n_steps, dim = steps.shape[0], steps.shape[-1]
        x = theta.unsqueeze(-1)
        if torch.is_grad_enabled() and (steps.requires_grad or theta.requires_grad):
            idx = step_of.unsqueeze(-1).expand(batch, n_out, dim)
            out = None
            for k in range(steps.shape[1]):
                c_k = steps[:, k].transpose(0, 1).gather(1, idx)  # (B, N, D)
                out = c_k if out is None else out * x + c_k
            return out
        # no gradient: whole rows copied by index_select (the values gather reads) from each
        # coefficient's (B * S, D) layout, and Horner's scheme in place in the first one
        rows = (step_of + torch.arange(batch, device=step_of.device).unsqueeze(1)
                * n_steps).reshape(-1)
        out = None
        for k in range(steps.shape[1]):
            c_k = steps[:, k].transpose(0, 1).reshape(batch * n_steps, dim).index_select(
                0, rows).view(batch, n_out, dim)  # a new tensor, never a view of steps
            if out is None:
                out = c_k
            else:
                out.mul_(x).add_(c_k)
        return out

