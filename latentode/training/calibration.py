"""Post-hoc calibration of the predictive spread on held-out series.

A Latent ODE's predictive distribution for an unseen value is a mixture over posterior samples
of ``z_t0`` of its observation model (a Gaussian, or a Student-t, with the learned scale)
centred on the decoded values. Its width is only as honest as the
variational posterior: trained to reconstruct the values it conditions on, the posterior
ignores the model's own error on values it did not see, and the learned noise converges slowly,
so interval coverage drifts with training length (over-wide early, too narrow late). As in
temperature / variance scaling for regression (Kuleshov et al., ICML 2018; Levi et al., 2019),
one scalar per channel widens or narrows the whole predictive distribution around its mean; it
is chosen on values hidden from the encoder on validation series that training never scored, so
that their central intervals have their nominal coverage (or, optionally, their log-likelihood
is largest).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from latentode.batch import Batch
from latentode.nn.observation import GaussianObservation, ObservationModel

from .objective import drop_observations, split_forecast

__all__ = ["calibrate_spread", "SCALE_GRID", "CRITERIA", "COVERAGE_LEVELS"]

#: candidate factors: geometric grid from 1/4 to 8 (ratio about 1.036 between neighbours)
SCALE_GRID = torch.logspace(math.log10(0.25), math.log10(8.0), 97, dtype=torch.float64)
#: central-interval levels whose coverage the ``"coverage"`` criterion matches
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: what :func:`calibrate_spread` matches: interval coverage, or the held-out likelihood
CRITERIA = ("coverage", "likelihood")


@torch.no_grad()
def calibrate_spread(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    fraction: float = 0.2,
    rounds: int = 3,
    n_samples: int = 32,
    min_values: int = 20,
    criterion: str = "coverage",
    generator: torch.Generator | None = None,
    forecast_split: float | None = None,
) -> torch.Tensor:
    """Fit ``model.spread_scale`` per channel on held-out values of ``batches``; return it.

    In each of ``rounds`` passes over ``batches``, a random ``fraction`` of every series'
    observed values is hidden (:func:`~latentode.training.objective.drop_observations`); the
    model conditions on the rest and draws ``n_samples`` trajectories at the series' times.
    For each candidate factor ``a`` of :data:`SCALE_GRID` the predictive distribution of a
    hidden value ``y`` is ``mean_s p(y; c + a (m_s - c), a sigma)`` (``m_s`` the decoded
    samples, ``c`` their average, ``sigma`` the learned scale, ``p`` the density of the model's
    observation model: ``N(y; location, scale^2)`` for the Gaussian). The observation model's
    calibration hook gives the standard family's CDF and log-density
    (:meth:`~latentode.nn.observation.ObservationModel.standard_cdf`,
    :meth:`~latentode.nn.observation.ObservationModel.standard_log_pdf`). Per channel, the kept
    factor

    * ``criterion="coverage"`` (default): minimises the squared gaps between the empirical and
      nominal coverage of the central intervals at :data:`COVERAGE_LEVELS` (the probability
      integral transforms of the hidden values made as uniform as one factor can);
    * ``criterion="likelihood"``: maximises the summed log density of the hidden values (this
      follows the tails: a few large misses widen every interval).

    Channels with fewer than ``min_values`` hidden values keep 1.

    Parameters
    ----------
    model : LatentODE
        Trained model (any module with ``predict`` and a ``spread_scale`` buffer; its
        ``observation`` model if it has one, else Gaussian noise is assumed).
    batches : iterable of Batch
        Held-out series, re-iterable (a list), on the model's device and dtype.
    fraction : float
        Fraction of observed values hidden per round.
    rounds : int
        Independent hiding rounds (more held-out values, the same series).
    n_samples : int
        Posterior trajectory samples per series.
    min_values : int
        Minimum number of hidden values a channel needs to be calibrated.
    criterion : {"coverage", "likelihood"}
        What the factor optimises (see above).
    generator : torch.Generator, optional
        Source of the hiding masks and the sampling noise.
    forecast_split : float, optional
        Calibrate forecasts instead: each series is split by
        :func:`~latentode.training.objective.split_forecast` at this fraction of its window, the
        model conditions on the past and the future values are the held-out ones (``fraction``
        is then unused).

    Returns
    -------
    torch.Tensor
        ``(C,)`` factors, also stored in ``model.spread_scale``.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    levels = torch.tensor(COVERAGE_LEVELS, dtype=torch.float64,
                          device=model.spread_scale.device)
    batches = list(batches)
    scale_buf = model.spread_scale
    grid = SCALE_GRID.to(scale_buf.device)
    n_ch = scale_buf.shape[0]
    width = 1 if criterion == "likelihood" else len(levels)
    total = torch.zeros(len(grid), width, n_ch, dtype=torch.float64, device=scale_buf.device)
    count = torch.zeros(n_ch, dtype=torch.float64, device=scale_buf.device)
    obs: ObservationModel | None = getattr(model, "observation", None)
    if obs is None:
        obs = GaussianObservation(n_ch, obs_std=1.0)
    was_training = model.training
    model.eval()
    try:
        for _ in range(int(rounds)):
            for batch in batches:
                if forecast_split is None:
                    cond, query = drop_observations(batch, fraction, generator), batch
                    hidden = (batch.mask - cond.mask) > 0  # (B, N, C)
                else:
                    cond, query = split_forecast(batch, forecast_split)
                    hidden = query.mask > 0
                valid = torch.arange(query.times.shape[1], device=hidden.device) < (
                    query.lengths.to(hidden.device).unsqueeze(1))
                hidden = hidden & valid.unsqueeze(-1)
                if not bool(hidden.any()):
                    continue
                pred = model.predict(cond, query.times, query.lengths, n_samples=n_samples,
                                     generator=generator, use_mean=False, calibrated=False)
                mean = pred.mean.double()  # (S, B, N, C)
                center = mean.mean(0)
                dev = (mean - center)[:, hidden]  # (S, n)
                resid = (query.values.double() - center)[hidden]  # (n,)
                sigma = pred.obs_std.double().expand_as(hidden)[hidden]  # (n,)
                channel = torch.nonzero(hidden)[:, 2]
                count += torch.bincount(channel, minlength=n_ch).double()
                for g, a in enumerate(grid):
                    z = (resid / a - dev) / sigma  # (S, n)
                    if criterion == "likelihood":
                        score = (torch.logsumexp(obs.standard_log_pdf(z, channel), dim=0)
                                 - math.log(n_samples) - torch.log(a * sigma))
                        score = score.unsqueeze(0)  # (1, n)
                    else:  # inside each central interval: |PIT - 1/2| <= level / 2
                        pit = obs.standard_cdf(z, channel).mean(0)  # (n,)
                        score = ((pit - 0.5).abs().unsqueeze(0)
                                 <= levels.unsqueeze(1) / 2).double()  # (L, n)
                    total[g].index_add_(1, channel, score)
    finally:
        model.train(was_training)
    if criterion == "likelihood":
        best = grid[total[:, 0].argmax(0)]
    else:
        coverage = total / count.clamp(min=1.0)  # (G, L, C)
        gap = ((coverage - levels.view(1, -1, 1)) ** 2).sum(1)  # (G, C)
        best = grid[gap.argmin(0)]
    scale = torch.where(count >= min_values, best, torch.ones_like(best))
    scale_buf.copy_(scale.to(scale_buf.dtype))
    return scale_buf.clone()
