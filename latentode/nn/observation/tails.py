"""The standard Student-t family, and calibrated tails for any observation model.

The Student-t functions (numpy for the predictive distribution, torch for training and
calibration) are shared by :class:`~latentode.nn.observation.StudentTObservation` and by the
*calibrated tails* of :class:`~latentode.nn.observation.ObservationModel`: after training,
:func:`latentode.training.calibrate_spread` may find that the errors of the values a model did
not condition on have heavier tails than its observation model (errors that are a mix of well
and badly predicted series). It then replaces, at those values only, the standard family of the
observation model by a Student-t of fitted degrees of freedom ``tail_df`` (per channel and kind
of query, :attr:`latentode.nn.spread.GapSpread.tail_df`); ``tail_df = inf`` keeps the model's
own family. The functions here evaluate such a per-position choice: own family where the degrees
of freedom are infinite, Student-t elsewhere (only there is the slower Student-t evaluated).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import gammaln, stdtr, stdtrit

__all__ = ["t_cdf", "t_pdf", "t_ppf", "t_draw", "t_log_pdf", "t_cdf_torch", "with_tails",
           "with_tails_torch", "draw_with_tails", "CLOSED_FORM_DF", "CLOSED_FORM_FLOOR"]

_LOG_PI = math.log(math.pi)

Standard = Callable[..., np.ndarray]


def t_cdf(u: np.ndarray, df: np.ndarray) -> np.ndarray:
    """CDF of the standard Student-t of ``df`` degrees of freedom (numpy, elementwise, float64).

    :func:`t_cdf_torch` on the host: the closed form for the integer degrees of freedom of
    :data:`CLOSED_FORM_DF`, scipy's ``stdtr`` elsewhere (they agree to a few 1e-16 absolute and
    1e-12 relative).
    """
    u64 = torch.tensor(np.asarray(u, dtype=np.float64))
    df64 = torch.tensor(np.asarray(df, dtype=np.float64))
    return t_cdf_torch(u64, df64).numpy()


def t_pdf(u: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Density of the standard Student-t (numpy, elementwise)."""
    return np.exp(gammaln(0.5 * (df + 1.0)) - gammaln(0.5 * df) - 0.5 * np.log(df * np.pi)
                  - 0.5 * (df + 1.0) * np.log1p(u * u / df))


def t_ppf(q: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Quantile function of the standard Student-t (numpy, elementwise)."""
    return stdtrit(df, q)


def t_draw(rng: np.random.Generator, size: tuple[int, ...], df: np.ndarray) -> np.ndarray:
    """``size`` standard Student-t draws of ``df`` (broadcast to ``size``) degrees of freedom."""
    return rng.standard_t(np.broadcast_to(df, size))


def t_log_pdf(z: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Log-density of the standard Student-t in torch (differentiable in ``z`` and ``df``)."""
    return (torch.lgamma(0.5 * (df + 1.0)) - torch.lgamma(0.5 * df)
            - 0.5 * (torch.log(df) + _LOG_PI) - 0.5 * (df + 1.0) * torch.log1p(z * z / df))


#: integer degrees of freedom (inclusive range) whose Student-t CDF :func:`t_cdf_torch` sums
#: in closed form in torch; others (non-integer, 1, larger) go to scipy's ``stdtr``
CLOSED_FORM_DF = (2, 30)
#: :func:`t_cdf_torch` keeps the closed form where the CDF is at least this: its absolute error
#: (a few 1e-16, that of ``1/2 + ...``) is then below 1e-12 of the value; smaller values (the
#: far lower tail) go to scipy's ``stdtr``, accurate relative to the value there
CLOSED_FORM_FLOOR = 1e-3
#: beyond this ``|t|``, ``t^2`` would overflow float64: such values go to scipy's ``stdtr``
_CLOSED_FORM_MAX_T = 1e150


def _t_cdf_closed_form(t: torch.Tensor, nu: int) -> torch.Tensor:
    """Student-t CDF of integer ``nu >= 2`` degrees of freedom at finite float64 ``t``.

    The finite series of Abramowitz & Stegun 26.7.3 / 26.7.4 in ``x = cos^2(theta) = nu /
    (nu + t^2)``, ``theta = atan(t / sqrt(nu))`` (Horner's scheme, positive terms):

    * even ``nu``: ``1/2 + 1/2 sin(theta) sum_{k < nu/2} c_k x^k``, ``c_0 = 1``,
      ``c_k = c_{k-1} (2k - 1) / (2k)``;
    * odd ``nu``: ``1/2 + (theta + sin(theta) cos(theta) sum_{k <= (nu-3)/2} d_k x^k) / pi``,
      ``d_0 = 1``, ``d_k = d_{k-1} 2k / (2k + 1)``.

    In place, in a few new tensors (the calls are many and small: their number of operations
    is their cost).
    """
    denom = (t * t).add_(nu)  # nu + t^2
    x = denom.reciprocal().mul_(nu)  # what nu / denom computes
    if nu % 2 == 0:
        coef = [1.0]
        for k in range(1, nu // 2):
            coef.append(coef[-1] * (2 * k - 1) / (2 * k))
        scale = t.mul(0.5).div_(denom.sqrt_())  # sin(theta) / 2
        out = None
    else:
        coef = [1.0]
        for k in range(1, (nu - 3) // 2 + 1):
            coef.append(coef[-1] * (2 * k) / (2 * k + 1))
        scale = t.mul(math.sqrt(nu) / math.pi).div_(denom)  # sin(theta) cos(theta) / pi
        out = t.div(math.sqrt(nu)).atan_().div_(math.pi).add_(0.5)  # 1/2 + theta / pi
    poly = torch.full_like(x, coef[-1])
    for c in reversed(coef[:-1]):
        poly.mul_(x).add_(c)
    scale.mul_(poly)
    return scale.add_(0.5) if out is None else out.add_(scale)


def t_cdf_torch(z: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Student-t CDF of torch tensors (no gradient; broadcast, in ``z``'s dtype).

    Integer degrees of freedom in :data:`CLOSED_FORM_DF` (those of the calibrated tails,
    :data:`latentode.training.calibration.TAIL_GRID`) are summed in closed form in float64 on
    ``z``'s device (:func:`_t_cdf_closed_form`), 3 to 10 times faster than scipy; every other
    entry (other degrees of freedom, ``|z| > 1e150`` or not finite, and values below
    :data:`CLOSED_FORM_FLOOR`) is scipy's ``stdtr``, evaluated on the host in float64. Both
    agree to a few 1e-16 absolute and 1e-12 relative.
    """
    z64 = z.detach().to(torch.float64)
    df64 = df.detach().to(device=z64.device, dtype=torch.float64)
    zb, dfb = torch.broadcast_tensors(z64, df64)
    lo, hi = CLOSED_FORM_DF
    flat_df = df64.reshape(-1)
    # the integer degrees of freedom of the closed form present (a count, not a sort)
    is_closed = (flat_df >= lo) & (flat_df <= hi) & (flat_df == flat_df.floor())
    closed = (torch.bincount(flat_df[is_closed].long(), minlength=hi + 1).nonzero()
              .flatten().tolist() if flat_df.numel() else [])
    if not closed or zb.numel() == 0:
        cdf = stdtr(dfb.cpu().numpy(), zb.cpu().numpy())
        return torch.as_tensor(cdf, dtype=z.dtype, device=z.device)
    # the closed form needs t^2 finite: larger |t|, inf and NaN go to scipy
    finite = zb.abs() <= _CLOSED_FORM_MAX_T
    all_finite = bool(finite.all())
    zf = zb if all_finite else torch.where(finite, zb, torch.zeros((), dtype=zb.dtype,
                                                                   device=zb.device))
    if len(closed) == 1 and bool(is_closed.all()):  # one number everywhere
        out = _t_cdf_closed_form(zf, int(closed[0]))
    else:
        out = torch.full(zb.shape, math.nan, dtype=torch.float64, device=zb.device)
        for nu in closed:  # NaN left: other degrees of freedom
            sel = dfb == nu
            out[sel] = _t_cdf_closed_form(zf[sel], int(nu))
    todo = ~(out >= CLOSED_FORM_FLOOR)  # the far lower tail, and the NaN
    if not all_finite:
        todo |= ~finite
    if bool(todo.any()):
        rest = todo.nonzero(as_tuple=True)
        cdf = stdtr(dfb[rest].cpu().numpy(), zb[rest].cpu().numpy())
        out[rest] = torch.as_tensor(cdf, dtype=torch.float64, device=out.device)
    return out.to(z.dtype)


def with_tails(own: Standard, tail: Standard) -> Standard:
    """A standard function with calibrated tails: ``f(u, tail_df, *own_params)``.

    ``own(u, *own_params)`` where ``tail_df`` (broadcast against ``u``) is infinite, ``tail(u,
    tail_df)`` elsewhere, evaluated only where needed; the signature of the root finder of
    :mod:`latentode._mixture` with ``tail_df`` as the first shape parameter.
    """

    def f(u: np.ndarray, tail_df: np.ndarray, *own_params: np.ndarray) -> np.ndarray:
        df = np.asarray(tail_df, dtype=np.float64)
        shape = np.broadcast_shapes(np.shape(u), df.shape)
        if len(shape) >= 1 and df.ndim == len(shape) and all(s == 1 for s in df.shape[:-1]):
            return _by_columns(own, tail, u, df, own_params, shape)
        out = np.array(np.broadcast_to(own(u, *own_params), shape), dtype=np.float64)
        df = np.broadcast_to(df, shape)
        finite = np.isfinite(df)
        if finite.any():
            out[finite] = tail(np.broadcast_to(u, shape)[finite], df[finite])
        return out

    return f


def _by_columns(own: Standard, tail: Standard, u: np.ndarray, df: np.ndarray,
                own_params: tuple[np.ndarray, ...], shape: tuple[int, ...]) -> np.ndarray:
    """:func:`with_tails`' ``f`` when ``df`` varies along the last axis only (one tail per
    position against ``(S, n)`` samples, as :mod:`latentode._mixture` passes them): each family
    on its own columns, the tail's shape parameters once per column. The values agree with the
    elementwise evaluation to float rounding (a few 1e-16)."""
    finite = np.isfinite(df.reshape(-1))
    if not finite.any():
        return np.array(np.broadcast_to(own(u, *own_params), shape), dtype=np.float64)
    ub = np.broadcast_to(np.asarray(u, dtype=np.float64), shape)
    # the memory layout of u, as own(u) has it: a mean over the samples sums in that order
    out = (np.empty_like(ub) if np.shape(u) == shape else np.empty(shape, dtype=np.float64))
    if finite.all():
        out[...] = tail(ub, df)
        return out
    rest = ~finite
    params = [np.broadcast_to(np.asarray(p), shape)[..., rest] for p in own_params]
    out[..., rest] = own(ub[..., rest], *params)
    out[..., finite] = tail(ub[..., finite], df[..., finite])
    return out


def with_tails_torch(own: torch.Tensor, z: torch.Tensor, tail_df: torch.Tensor | None,
                     tail: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``own`` (the standard family's values at ``z``) with the entries of the last axis whose
    ``tail_df`` (``(n,)``) is finite replaced by ``tail(z[..., finite], tail_df[finite])``;
    ``own`` itself when ``tail_df`` is None or has no finite entry (the torch counterpart of
    :func:`with_tails`)."""
    if tail_df is None:
        return own
    finite = torch.isfinite(tail_df)
    if bool(finite.any()):
        own = own.clone()
        own[..., finite] = tail(z[..., finite], tail_df[finite])
    return own


def draw_with_tails(draws: np.ndarray, tail_df: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Replace the standard draws where ``tail_df`` (broadcast to ``draws``) is finite by
    Student-t draws of those degrees of freedom (from ``rng``, after the own draws)."""
    df = np.broadcast_to(np.asarray(tail_df, dtype=np.float64), draws.shape)
    finite = np.isfinite(df)
    if finite.any():
        draws = draws.copy()
        draws[finite] = rng.standard_t(df[finite])
    return draws
