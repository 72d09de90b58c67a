"""Log-densities used by the Latent ODE objective.

All functions work on masked, padded tensors and reduce over time and channels, returning one
value per (trajectory sample, series). Nothing here synchronises with the host.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_log_likelihood",
    "poisson_log_likelihood",
    "kl_normal_standard",
    "normal_log_prob",
    "log_softplus",
    "logmeanexp",
    "masked_squared_error",
    "observation_weights",
    "OBS_WEIGHTINGS",
]

OBS_WEIGHTINGS = ("value", "channel")
"""Weightings of observed values in the log-likelihood (see :func:`observation_weights`)."""

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_likelihood(
    values: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Gaussian log-likelihood of the observed entries, summed per series.

    Parameters
    ----------
    values : torch.Tensor
        ``(B, M, C)`` observations (any value where unobserved).
    mask : torch.Tensor
        ``(B, M, C)`` float mask, 1 where observed.
    mean : torch.Tensor
        ``(K, B, M, C)`` predicted means, one set per trajectory sample.
    std : torch.Tensor
        ``(C,)`` observation noise standard deviation per channel (broadcastable to ``mean``).

    Returns
    -------
    torch.Tensor
        ``(K, B)``: ``sum_{m,c} mask * log N(values; mean, std)``.
    """
    z = (values - mean) / std
    log_prob = -0.5 * z.square() - torch.log(std) - 0.5 * _LOG_2PI
    return (log_prob * mask).sum(dim=(-2, -1))


def observation_weights(mask: torch.Tensor, weighting: str = "value") -> torch.Tensor:
    """Weight of every observed entry in the training log-likelihood.

    ``"value"`` weighs every observed value 1: the plain log-likelihood, in which a channel
    measured 60 times in a series counts 60 times as much as one measured once. ``"channel"``
    gives every channel that a series observes the same total weight, shared equally by its
    observations, as the reference code does (it averages the log-likelihood per series and
    channel); each series keeps its total weight (its number of observed values), so the balance
    between the likelihood and the KL term, and between series, is unchanged.

    Parameters
    ----------
    mask : torch.Tensor
        ``(B, M, C)`` float mask of observed entries (0 beyond each series' valid prefix).
    weighting : {"value", "channel"}
        The scheme.

    Returns
    -------
    torch.Tensor
        ``(B, M, C)`` weights, 0 where unobserved (``mask`` itself for ``"value"``).

    Examples
    --------
    >>> m = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])  # channel 0 twice, 1 once
    >>> observation_weights(m, "channel")[0].tolist()  # 3 values: 1.5 per channel
    [[0.75, 1.5], [0.75, 0.0], [0.0, 0.0]]
    """
    if weighting == "value":
        return mask
    if weighting != "channel":
        raise ValueError(f"weighting must be one of {OBS_WEIGHTINGS}, got {weighting!r}.")
    per_channel = mask.sum(dim=1, keepdim=True)  # (B, 1, C)
    n_obs = per_channel.sum(dim=-1, keepdim=True)  # (B, 1, 1)
    n_channels = (per_channel > 0).to(mask.dtype).sum(dim=-1, keepdim=True)
    scale = n_obs / (n_channels.clamp(min=1.0) * per_channel.clamp(min=1.0))
    return mask * scale


def masked_squared_error(
    values: torch.Tensor, mask: torch.Tensor, mean: torch.Tensor
) -> torch.Tensor:
    """Sum of squared errors over observed entries: ``(K, B, M, C)`` means -> ``(K, B)``."""
    return ((values - mean).square() * mask).sum(dim=(-2, -1))


def log_softplus(logits: torch.Tensor, threshold: float = -20.0) -> torch.Tensor:
    """``log(softplus(logits))`` without underflow (``~= logits`` for very negative logits).

    The unselected branch is evaluated at a clamped input so that its gradient stays finite.
    """
    safe = F.softplus(logits.clamp(min=threshold)).log()
    return torch.where(logits < threshold, logits, safe)


def poisson_log_likelihood(
    log_intensity: torch.Tensor,
    cum_intensity: torch.Tensor,
    mask: torch.Tensor,
    lengths: torch.Tensor,
) -> torch.Tensor:
    """Log-likelihood of the observation times under an inhomogeneous Poisson process per channel.

    Each observed entry ``(t_m, c)`` is an event of channel ``c``'s process with intensity
    ``lambda_c(t)``. Over the window ``[t_first, t_last]`` of each series
    the log-likelihood is ``sum_{observed (m,c)} log lambda_c(t_m) - sum_c (Lambda_c(t_last) -
    Lambda_c(t_first))`` with ``Lambda`` the integrated intensity.

    Parameters
    ----------
    log_intensity : torch.Tensor
        ``(K, B, M, C)`` ``log lambda`` at the observation times.
    cum_intensity : torch.Tensor
        ``(K, B, M, C)`` integrated intensity ``Lambda(t_m)`` (any common offset).
    mask : torch.Tensor
        ``(B, M, C)`` float mask of observed entries.
    lengths : torch.Tensor
        ``(B,)`` number of valid time points per series (``>= 1``).

    Returns
    -------
    torch.Tensor
        ``(K, B)`` log-likelihood per trajectory sample and series.
    """
    events = (log_intensity * mask).sum(dim=(-2, -1))
    k, b, _, c = cum_intensity.shape
    last = (lengths - 1).to(torch.long).view(1, b, 1, 1).expand(k, b, 1, c)
    lam_last = cum_intensity.gather(2, last).squeeze(2)
    compensator = (lam_last - cum_intensity[:, :, 0]).sum(-1)
    return events - compensator


def kl_normal_standard(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Analytic ``KL(N(mu, sigma^2) || N(0, 1))`` summed over the last dimension."""
    return (0.5 * (mu.square() + sigma.square() - 1.0) - torch.log(sigma)).sum(-1)


def normal_log_prob(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last dimension."""
    return (-0.5 * ((z - mu) / sigma).square() - torch.log(sigma) - 0.5 * _LOG_2PI).sum(-1)


def logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Numerically stable ``log(mean(exp(x), dim))``."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])
