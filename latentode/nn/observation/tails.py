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
           "with_tails_torch", "draw_with_tails"]

_LOG_PI = math.log(math.pi)

Standard = Callable[..., np.ndarray]


def t_cdf(u: np.ndarray, df: np.ndarray) -> np.ndarray:
    """CDF of the standard Student-t of ``df`` degrees of freedom (numpy, elementwise)."""
    return stdtr(df, u)


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


def t_cdf_torch(z: torch.Tensor, df: torch.Tensor) -> torch.Tensor:
    """Student-t CDF of torch tensors, evaluated on the host by scipy (no gradient)."""
    df_np = df.detach().to(torch.float64).cpu().numpy()
    cdf = stdtr(df_np, z.detach().to(torch.float64).cpu().numpy())
    return torch.as_tensor(cdf, dtype=z.dtype, device=z.device)


def with_tails(own: Standard, tail: Standard) -> Standard:
    """A standard function with calibrated tails: ``f(u, tail_df, *own_params)``.

    ``own(u, *own_params)`` where ``tail_df`` (broadcast against ``u``) is infinite, ``tail(u,
    tail_df)`` elsewhere, evaluated only where needed; the signature of the root finder of
    :mod:`latentode._mixture` with ``tail_df`` as the first shape parameter.
    """

    def f(u: np.ndarray, tail_df: np.ndarray, *own_params: np.ndarray) -> np.ndarray:
        df = np.asarray(tail_df, dtype=np.float64)
        shape = np.broadcast_shapes(np.shape(u), df.shape)
        out = np.array(np.broadcast_to(own(u, *own_params), shape), dtype=np.float64)
        df = np.broadcast_to(df, shape)
        finite = np.isfinite(df)
        if finite.any():
            out[finite] = tail(np.broadcast_to(u, shape)[finite], df[finite])
        return out

    return f


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
