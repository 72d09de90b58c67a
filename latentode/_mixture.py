"""Quantiles of equal-weight mixtures of a location-scale family (numpy only).

The predictive distribution of a Latent ODE at one (row, channel) is ``(1/S) sum_s
F((x - m_s) / scale)``: one component per posterior sample ``s`` of ``z_t0``, each a member of
the observation model's location-scale family centred on the decoded value ``m_s``. This module
inverts such mixture CDFs for any family given by its standard ``cdf``, ``pdf`` and ``ppf``; it
is the one root finder behind :meth:`latentode.nn.observation.ObservationModel.quantiles` and
:func:`latentode.uncertainty.mixture_quantiles`. It imports nothing of latentode and no torch,
so both the torch-only ``nn`` layer and the torch-free ``uncertainty`` module use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["location_scale_mixture_quantiles"]

StandardFunction = Callable[..., np.ndarray]


def location_scale_mixture_quantiles(
    means: Any,
    scale: Any,
    quantiles: np.ndarray,
    *,
    cdf: StandardFunction,
    pdf: StandardFunction,
    ppf: StandardFunction,
    params: Sequence[Any] = (),
    tol: float = 1e-8,
    max_iter: int = 100,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Quantiles of ``(1/S) sum_s F((x - means[s, i]) / scale_i; params_i)`` per position ``i``.

    The CDF is inverted by safeguarded Newton iterations (bisection whenever a Newton step leaves
    the current bracket). The bracket ``[min_s m_s + scale * ppf(q), max_s m_s + scale *
    ppf(q)]`` holds the root for any family, and the start is the moment-matched point
    ``mean_s m_s + ppf(q) * sqrt(var_s m_s + scale**2)`` clipped into it.

    Parameters
    ----------
    means : array-like of shape (S, ...)
        Component locations.
    scale : array-like broadcastable to ``means.shape[1:]``
        Common component scale (``>= 0``). Where it is 0 the mixture is discrete and the (lower)
        empirical quantile of the means is returned.
    quantiles : numpy.ndarray
        1-d levels in ``(0, 1)``, already validated (e.g. by
        :func:`latentode.uncertainty.check_quantiles`).
    cdf, pdf : callable
        ``cdf(u, *p)``, ``pdf(u, *p)``: the standard family's CDF and density, elementwise, with
        ``u`` of shape ``(S, n)`` and each shape parameter ``p`` of shape ``(1, n)``.
    ppf : callable
        ``ppf(q, *p)``: the standard family's quantile function, ``q`` of shape ``(Q, 1)`` and
        each ``p`` of shape ``(1, n)``.
    params : sequence of array-like
        Shape parameters of the family, each broadcastable to ``means.shape[1:]`` (e.g. the
        degrees of freedom of a Student-t per channel); none for the normal family.
    tol : float
        Absolute tolerance on the quantile, relative to ``scale``.
    max_iter : int
        Iteration cap of the root finder.
    chunk_size : int
        Positions solved at once (bounds memory to ``O(S * chunk_size * len(quantiles))``).

    Returns
    -------
    numpy.ndarray of shape (len(quantiles), ...)
        The quantiles.

    Raises
    ------
    ValueError
        If ``means`` has no leading sample axis, or ``scale`` is negative or not finite.
    """
    q = np.asarray(quantiles, dtype=np.float64)
    m = np.asarray(means, dtype=np.float64)
    if m.ndim < 1 or m.shape[0] < 1:
        raise ValueError("means must have a leading sample axis of length >= 1.")
    rest = m.shape[1:]
    sd = np.broadcast_to(np.asarray(scale, dtype=np.float64), rest)
    if (sd < 0).any() or not np.isfinite(sd).all():
        raise ValueError("std must be finite and >= 0.")
    s = m.shape[0]
    flat_m = m.reshape(s, -1)
    flat_sd = sd.reshape(-1).copy()
    flat_p = [np.broadcast_to(np.asarray(p, dtype=np.float64), rest).reshape(-1) for p in params]
    n = flat_m.shape[1]
    out = np.empty((len(q), n))
    zero = flat_sd == 0
    if zero.any():
        out[:, zero] = np.quantile(flat_m[:, zero], q, axis=0, method="inverted_cdf")
    live = np.flatnonzero(~zero)
    for lo_i in range(0, len(live), chunk_size):
        idx = live[lo_i:lo_i + chunk_size]
        mc = flat_m[:, idx]  # (S, n)
        sc = flat_sd[idx]  # (n,)
        pc = [p[idx] for p in flat_p]  # (n,) each
        z = ppf(q[:, None], *(p[None] for p in pc))  # (Q, 1), or (Q, n) with shape parameters
        # start from the moment-matched point; bracket by the extreme components
        mu = mc.mean(axis=0)
        total_sd = np.sqrt(mc.var(axis=0) + sc**2)
        x = mu[None] + z * total_sd[None]  # (Q, n)
        lo = mc.min(axis=0)[None] + z * sc[None]
        hi = mc.max(axis=0)[None] + z * sc[None]
        lo, hi = np.broadcast_to(lo, x.shape).copy(), np.broadcast_to(hi, x.shape).copy()
        x = np.clip(x, lo, hi).ravel()  # (Q * n,) pairs (level, position), level-major
        lo, hi = lo.ravel(), hi.ravel()
        col = np.tile(np.arange(len(idx)), len(q))
        target = np.repeat(q, len(idx))
        sd_pair = sc[col]
        active = np.arange(len(x))  # pairs not converged yet: only these are iterated
        for _ in range(max_iter):
            xa, sa = x[active], sd_pair[active]
            cols = col[active]
            pa = [p[cols][None] for p in pc]
            u = (xa[None] - mc[:, cols]) / sa[None]  # (S, active)
            cdf_a = cdf(u, *pa).mean(axis=0)
            pdf_a = pdf(u, *pa).mean(axis=0) / sa
            f = cdf_a - target[active]
            la = np.where(f < 0, xa, lo[active])
            ha = np.where(f > 0, xa, hi[active])
            with np.errstate(divide="ignore", invalid="ignore"):
                step = xa - f / pdf_a
            bad = ~np.isfinite(step) | (step <= la) | (step >= ha)
            new = np.where(bad, 0.5 * (la + ha), step)
            done = np.abs(new - xa) <= tol * sa
            x[active], lo[active], hi[active] = new, la, ha
            active = active[~done]
            if len(active) == 0:
                break
        out[:, idx] = x.reshape(len(q), len(idx))
    return out.reshape((len(q),) + rest)
