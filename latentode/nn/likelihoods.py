"""Helpers of the Latent ODE objective: weights of observed values, KL terms, log-mean-exp.

The log-densities of the observations have their homes in :mod:`latentode.nn.observation`
(``gaussian_log_likelihood`` in ``gaussian.py``, ``poisson_log_likelihood`` in ``poisson.py``);
their old import path from this module still works. Nothing here synchronises with the host.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
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


def kl_normal_standard(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Analytic ``KL(N(mu, sigma^2) || N(0, 1))`` summed over the last dimension."""
    return (0.5 * (mu.square() + sigma.square() - 1.0) - torch.log(sigma)).sum(-1)


def normal_log_prob(z: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the last dimension."""
    return (-0.5 * ((z - mu) / sigma).square() - torch.log(sigma) - 0.5 * _LOG_2PI).sum(-1)


def logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Numerically stable ``log(mean(exp(x), dim))``."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def __getattr__(name: str) -> object:
    # the observation log-densities moved to latentode.nn.observation; old imports still work
    if name == "gaussian_log_likelihood":
        from .observation.gaussian import gaussian_log_likelihood

        return gaussian_log_likelihood
    if name == "poisson_log_likelihood":
        from .observation.poisson import poisson_log_likelihood

        return poisson_log_likelihood
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
