"""Predictive-uncertainty helpers (numpy / scipy only; no torch, no pandas).

The Latent ODE's predictive distribution of an observation at one (row, channel) is an equal
weight mixture over ``S`` posterior samples of ``z_t0`` of Gaussians
``N(m_s, obs_std**2)``, where ``m_s`` is the decoded mean of trajectory sample ``s`` and
``obs_std`` the (per-channel) observation noise. This module computes quantiles of such
mixtures, draws from them, and scores predictions (CRPS, interval coverage).

These are the Gaussian case, for arrays. A fitted estimator's predictive distribution is its
observation model's (:mod:`latentode.nn.observation`: Gaussian or Student-t), whose quantiles use
the same root finder (:mod:`latentode._mixture`); the estimator calls that object.

Functions
---------
check_quantiles
    Validate a sequence of quantile levels (sorted, unique, in ``(0, 1)``).
quantile_label
    Column suffix of a level: ``quantile_label(0.05) == "q0.05"``.
central_interval
    Quantile levels ``(lower, upper)`` of a central interval: ``central_interval(0.9)``.
mixture_quantiles
    Quantiles of equal-weight Gaussian mixtures with a common standard deviation.
sample_mixture
    Draws of observations ``m_s + obs_std * N(0, 1)``.
crps_gaussian, crps_gaussian_mixture, crps_samples
    Continuous ranked probability score (lower is better).
interval_coverage
    Fraction of finite targets inside ``[lower, upper]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from ._mixture import location_scale_mixture_quantiles

__all__ = [
    "check_quantiles",
    "quantile_label",
    "central_interval",
    "mixture_quantiles",
    "sample_mixture",
    "crps_gaussian",
    "crps_gaussian_mixture",
    "crps_samples",
    "interval_coverage",
]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _normal_pdf(u: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    return np.exp(-0.5 * u**2) * _INV_SQRT_2PI


def check_quantiles(quantiles: Any) -> np.ndarray:
    """Validate quantile levels.

    Parameters
    ----------
    quantiles : sequence of float
        Levels strictly inside ``(0, 1)``, sorted ascending, without duplicates.

    Returns
    -------
    numpy.ndarray
        The levels as a 1-d float64 array.

    Raises
    ------
    ValueError
        If ``quantiles`` is empty, not a 1-d sequence of real numbers, has a level outside
        ``(0, 1)``, is unsorted or has duplicates, or two levels share a column suffix
        (:func:`quantile_label`).

    Examples
    --------
    >>> check_quantiles([0.05, 0.5, 0.95]).tolist()
    [0.05, 0.5, 0.95]
    """
    if isinstance(quantiles, (str, bytes)) or isinstance(quantiles, numbers.Number):
        raise ValueError(
            f"quantiles must be a sequence of levels in (0, 1), e.g. (0.05, 0.5, 0.95); got "
            f"{quantiles!r}."
        )
    try:
        q = np.asarray(list(quantiles), dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"quantiles must be a sequence of numbers in (0, 1), got {quantiles!r}."
        ) from exc
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"quantiles must be a non-empty 1-d sequence, got {quantiles!r}.")
    if not (np.isfinite(q).all() and (q > 0).all() and (q < 1).all()):
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {q.tolist()}.")
    if (np.diff(q) <= 0).any():
        raise ValueError(
            f"quantiles must be sorted ascending without duplicates, got {q.tolist()}."
        )
    labels = [quantile_label(level) for level in q]
    same = [k for k in range(1, len(q)) if labels[k] == labels[k - 1]]
    if same:
        k = same[0]
        raise ValueError(
            f"quantiles {float(q[k - 1])!r} and {float(q[k])!r} would share the column suffix "
            f"{labels[k]!r} (levels are labelled with 6 significant digits); give levels "
            "that differ within 6 significant digits."
        )
    return q


def quantile_label(q: float) -> str:
    """Column suffix of a quantile level, ``f"q{q:g}"``.

    Parameters
    ----------
    q : float
        Quantile level.

    Returns
    -------
    str
        E.g. ``"q0.05"``, ``"q0.5"``, ``"q0.975"``.
    """
    return f"q{float(q):g}"


def central_interval(level: float) -> tuple[float, float]:
    """Quantile levels bounding the central ``level`` interval.

    Parameters
    ----------
    level : float
        Nominal coverage in ``(0, 1)``, e.g. ``0.9``.

    Returns
    -------
    (float, float)
        ``((1 - level) / 2, (1 + level) / 2)``, rounded to 12 decimals, e.g. ``(0.05, 0.95)``.
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}.")
    return round((1.0 - level) / 2.0, 12), round((1.0 + level) / 2.0, 12)


def mixture_quantiles(
    means: Any,
    std: Any,
    quantiles: Sequence[float],
    *,
    tol: float = 1e-8,
    max_iter: int = 100,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Quantiles of equal-weight Gaussian mixtures with a common standard deviation.

    For each position ``i`` (any trailing shape) the distribution is
    ``(1/S) sum_s N(means[s, i], std_i**2)``; its CDF is inverted by safeguarded Newton
    iterations (bisection whenever a Newton step leaves the current bracket).

    Parameters
    ----------
    means : array-like of shape (S, ...)
        Component means.
    std : array-like broadcastable to ``means.shape[1:]``
        Common component standard deviation (``>= 0``). Where it is 0 the mixture is discrete
        and the (lower) empirical quantile of the means is returned.
    quantiles : sequence of float
        Levels in ``(0, 1)`` (see :func:`check_quantiles`).
    tol : float
        Absolute tolerance on the quantile, relative to ``std``.
    max_iter : int
        Iteration cap of the root finder.
    chunk_size : int
        Positions solved at once (bounds memory to ``O(S * chunk_size * len(quantiles))``).

    Returns
    -------
    numpy.ndarray of shape (len(quantiles), ...)
        The quantiles.

    Examples
    --------
    >>> mixture_quantiles(np.zeros((3, 1)), 1.0, [0.5, 0.975]).round(3).ravel().tolist()
    [0.0, 1.96]
    """
    return location_scale_mixture_quantiles(
        means, std, check_quantiles(quantiles), cdf=ndtr, pdf=_normal_pdf, ppf=ndtri, tol=tol,
        max_iter=max_iter, chunk_size=chunk_size,
    )


def sample_mixture(
    means: Any, std: Any, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Draw one observation per component: ``means + std * N(0, 1)``.

    Parameters
    ----------
    means : array-like of shape (S, ...)
        Decoded means per trajectory sample.
    std : array-like broadcastable to ``means``
        Observation noise standard deviation.
    rng : numpy.random.Generator, int or None
        Source of the noise.

    Returns
    -------
    numpy.ndarray
        Same shape as ``means``.
    """
    m = np.asarray(means, dtype=np.float64)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return m + np.asarray(std, dtype=np.float64) * gen.standard_normal(m.shape)


def _abs_moment(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``E|X|`` for ``X ~ N(mu, sigma**2)``, ``sigma > 0``."""
    r = mu / sigma
    return mu * (2.0 * ndtr(r) - 1.0) + 2.0 * sigma * _INV_SQRT_2PI * np.exp(-0.5 * r**2)


def crps_gaussian(y: Any, mu: Any, sigma: Any) -> np.ndarray:
    """CRPS of a Gaussian forecast ``N(mu, sigma**2)`` for observations ``y`` (closed form).

    Parameters
    ----------
    y, mu, sigma : array-like (broadcastable)
        Observations, predictive means and standard deviations (``> 0``).

    Returns
    -------
    numpy.ndarray
        ``sigma * (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))`` with ``z = (y - mu) / sigma``,
        elementwise; NaN where ``y`` is NaN.
    """
    y, mu, sigma = (np.asarray(a, dtype=np.float64) for a in (y, mu, sigma))
    z = (y - mu) / sigma
    return sigma * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * _INV_SQRT_2PI * np.exp(-0.5 * z**2)
                    - 1.0 / np.sqrt(np.pi))


def crps_gaussian_mixture(y: Any, means: Any, std: Any, *, chunk_size: int = 2048) -> np.ndarray:
    """CRPS of equal-weight Gaussian mixtures with a common standard deviation (exact).

    ``CRPS(F, y) = E|X - y| - E|X - X'| / 2`` with ``X, X' ~ F`` independent; for the mixture
    ``(1/S) sum_s N(m_s, std**2)`` both expectations are closed-form sums over components
    (``O(S**2)`` per position).

    Parameters
    ----------
    y : array-like of shape (...)
        Observations (NaN gives NaN).
    means : array-like of shape (S, ...)
        Component means.
    std : array-like broadcastable to ``y``
        Common component standard deviation (``> 0``).
    chunk_size : int
        Positions processed at once.

    Returns
    -------
    numpy.ndarray
        Same shape as ``y``.
    """
    m = np.asarray(means, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    if m.shape[1:] != yy.shape:
        raise ValueError(f"means must have shape (S, *y.shape); got {m.shape} and {yy.shape}.")
    sd = np.broadcast_to(np.asarray(std, dtype=np.float64), yy.shape).reshape(-1)
    if not (sd > 0).all():
        raise ValueError("std must be > 0.")
    s = m.shape[0]
    fm, fy = m.reshape(s, -1), yy.reshape(-1)
    out = np.empty(fy.shape)
    for lo in range(0, fy.size, chunk_size):
        sl = slice(lo, lo + chunk_size)
        mc, sc = fm[:, sl], sd[sl]
        e_xy = _abs_moment(mc - fy[sl][None], sc[None]).mean(axis=0)
        diff = mc[:, None] - mc[None]  # (S, S, n)
        e_xx = _abs_moment(diff, np.sqrt(2.0) * sc[None, None]).mean(axis=(0, 1))
        out[sl] = e_xy - 0.5 * e_xx
    return out.reshape(yy.shape)


def crps_samples(y: Any, samples: Any) -> np.ndarray:
    """Sample-based CRPS estimate ``mean|X_i - y| - mean_{i,j}|X_i - X_j| / 2``.

    Parameters
    ----------
    y : array-like of shape (...)
        Observations (NaN gives NaN).
    samples : array-like of shape (S, ...)
        Draws from the predictive distribution of each position.

    Returns
    -------
    numpy.ndarray
        Same shape as ``y``. Computed in ``O(S log S)`` per position from the sorted samples.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    yy = np.asarray(y, dtype=np.float64)
    if x.shape[1:] != yy.shape:
        raise ValueError(
            f"samples must have shape (S, *y.shape); got {x.shape} and {yy.shape}."
        )
    s = x.shape[0]
    e_xy = np.abs(x - yy[None]).mean(axis=0)
    # sum_{i,j} |x_i - x_j| = 2 sum_i (2 i - S + 1) x_(i) for sorted x (0-based i)
    w = (2.0 * np.arange(s) - s + 1.0).reshape((s,) + (1,) * yy.ndim)
    e_xx = 2.0 * (w * x).sum(axis=0) / s**2
    return e_xy - 0.5 * e_xx


def interval_coverage(y: Any, lower: Any, upper: Any) -> float:
    """Fraction of the finite observations that fall inside ``[lower, upper]``.

    Parameters
    ----------
    y, lower, upper : array-like (broadcastable)
        Observations and interval bounds; positions where ``y`` is NaN are ignored.

    Returns
    -------
    float
        Empirical coverage in ``[0, 1]`` (NaN when no observation is finite).

    Examples
    --------
    >>> interval_coverage([0.0, 1.0, 5.0, np.nan], -1.0, 2.0)
    0.6666666666666666
    """
    y, lo, hi = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (y, lower, upper)))
    keep = np.isfinite(y)
    if not keep.any():
        return float("nan")
    inside = (y[keep] >= lo[keep]) & (y[keep] <= hi[keep])
    return float(inside.mean())
