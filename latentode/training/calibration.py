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

One factor per channel fixes the width, not how it should change with the distance to the
observations: a value between two close observations and a forecast far past the last one need
different factors, and a deterministic latent trajectory does not widen with the horizon. So the
model's :class:`~latentode.nn.spread.GapSpread` then gets a factor per channel, kind of query
(inside the conditioning window, or a forecast beyond it) and bucket of the gap to the nearest
observation of the channel, fitted the same way on values held out both ways: hidden inside the
series, and after a split of each series (forecasts at several horizons).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch import nn

from latentode.batch import Batch
from latentode.nn.observation import GaussianObservation, ObservationModel
from latentode.nn.spread import GAP_KINDS, N_GAP_BUCKETS, GapSpread, observation_gaps

from .objective import drop_observations, split_forecast

__all__ = ["calibrate_spread", "SCALE_GRID", "CRITERIA", "COVERAGE_LEVELS",
           "FORECAST_FRACTIONS"]

#: candidate factors: geometric grid from 1/4 to 8 (ratio about 1.036 between neighbours)
SCALE_GRID = torch.logspace(math.log10(0.25), math.log10(8.0), 97, dtype=torch.float64)
#: central-interval levels whose coverage the ``"coverage"`` criterion matches
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: what :func:`calibrate_spread` matches: interval coverage, or the held-out likelihood
CRITERIA = ("coverage", "likelihood")
#: where each series is split for the forecast rounds of the gap factors (one per round, in
#: turn), as fractions of its window; ``forecast_split`` replaces them when given
FORECAST_FRACTIONS = (0.5, 0.3, 0.7)


class _HeldOut(NamedTuple):
    """Held-out values of one batch and round, and the uncalibrated predictive at them."""

    resid: torch.Tensor  # (n,) value minus the average of the decoded samples
    dev: torch.Tensor  # (S, n) decoded samples minus their average
    sigma: torch.Tensor  # (n,) observation scale
    channel: torch.Tensor  # (n,) long
    gap: torch.Tensor  # (n,) model time to the nearest conditioning observation of the channel
    beyond: torch.Tensor  # (n,) bool: before / after the conditioning window (a forecast)


def _held_out(model: nn.Module, cond: Batch, query: Batch, hidden: torch.Tensor,
              n_samples: int, generator: torch.Generator | None) -> _HeldOut | None:
    """Predict ``query``'s times from ``cond``; keep the entries ``hidden`` (B, N, C)."""
    valid = torch.arange(query.times.shape[1], device=hidden.device) < (
        query.lengths.to(hidden.device).unsqueeze(1))
    hidden = hidden & valid.unsqueeze(-1)
    if not bool(hidden.any()):
        return None
    pred = model.predict(cond, query.times, query.lengths, n_samples=n_samples,
                         generator=generator, use_mean=False, calibrated=False)
    mean = pred.mean.double()  # (S, B, N, C)
    center = mean.mean(0)
    gap, beyond = observation_gaps(cond, query.times)
    return _HeldOut(
        resid=(query.values.double() - center)[hidden],
        dev=(mean - center)[:, hidden].to(pred.mean.dtype),
        sigma=pred.obs_std.double().expand_as(hidden)[hidden],
        channel=torch.nonzero(hidden)[:, 2],
        gap=gap.double()[hidden],
        beyond=beyond.unsqueeze(-1).expand_as(hidden)[hidden],
    )


def _best_factors(
    records: list[tuple[_HeldOut, torch.Tensor]], n_groups: int, criterion: str,
    obs: ObservationModel, n_samples: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the factor of :data:`SCALE_GRID` that best fits the held-out values.

    ``records`` pairs held-out values with their group index ``(n,)``; returns the ``(G,)``
    best factors and the ``(G,)`` counts of values.
    """
    device = records[0][0].resid.device if records else torch.device("cpu")
    grid = SCALE_GRID.to(device)
    levels = torch.tensor(COVERAGE_LEVELS, dtype=torch.float64, device=device)
    width = 1 if criterion == "likelihood" else len(levels)
    total = torch.zeros(len(grid), width, n_groups, dtype=torch.float64, device=device)
    count = torch.zeros(n_groups, dtype=torch.float64, device=device)
    for rec, group in records:
        count += torch.bincount(group, minlength=n_groups).double()
        dev = rec.dev.double()
        for g, a in enumerate(grid):
            z = (rec.resid / a - dev) / rec.sigma  # (S, n)
            if criterion == "likelihood":
                score = (torch.logsumexp(obs.standard_log_pdf(z, rec.channel), dim=0)
                         - math.log(n_samples) - torch.log(a * rec.sigma))
                score = score.unsqueeze(0)  # (1, n)
            else:  # inside each central interval: |PIT - 1/2| <= level / 2
                pit = obs.standard_cdf(z, rec.channel).mean(0)  # (n,)
                score = ((pit - 0.5).abs().unsqueeze(0)
                         <= levels.unsqueeze(1) / 2).double()  # (L, n)
            total[g].index_add_(1, group, score)
    if criterion == "likelihood":
        return grid[total[:, 0].argmax(0)], count
    coverage = total / count.clamp(min=1.0)  # (G, L, groups)
    gap = ((coverage - levels.view(1, -1, 1)) ** 2).sum(1)  # (G, groups)
    return grid[gap.argmin(0)], count


def _fit_gap_spread(
    spread: GapSpread, records: list[_HeldOut], channel_scale: torch.Tensor, criterion: str,
    obs: ObservationModel, n_samples: int, min_values: int,
) -> None:
    """Fit ``spread``'s edges and factors (relative to ``channel_scale``) on ``records``.

    Edges: per kind, the quantiles of the finite gaps at ``j / N_GAP_BUCKETS``. A (kind,
    bucket, channel) cell with fewer than ``min_values`` values takes the factor of its kind and
    channel, and that the channel's (relative factor 1) when it has too few as well.
    """
    n_ch = channel_scale.shape[0]
    n_kinds, k = len(GAP_KINDS), N_GAP_BUCKETS
    edges = torch.zeros(n_kinds, k - 1, dtype=torch.float64, device=channel_scale.device)
    if records:
        gaps = torch.cat([r.gap for r in records])
        kinds = torch.cat([r.beyond for r in records]).long()
        probs = torch.arange(1, k, dtype=torch.float64, device=gaps.device) / k
        for kind in range(n_kinds):
            g = gaps[(kinds == kind) & torch.isfinite(gaps)]
            if len(g):
                edges[kind] = torch.quantile(g, probs)
    spread.edges.copy_(edges.to(spread.edges.dtype))
    n_cells = spread.n_cells
    cells = [(r, spread.cells(r.gap, r.beyond) * n_ch + r.channel) for r in records]
    best_cell, count_cell = _best_factors(cells, n_cells * n_ch, criterion, obs, n_samples)
    kinds = [(r, r.beyond.long() * n_ch + r.channel) for r in records]
    best_kind, count_kind = _best_factors(kinds, n_kinds * n_ch, criterion, obs, n_samples)
    scale = channel_scale.to(best_cell.dtype)
    kind_rel = torch.where((count_kind >= min_values).view(n_kinds, n_ch),
                           best_kind.view(n_kinds, n_ch) / scale,
                           torch.ones_like(scale)).view(n_kinds, 1, n_ch)
    cell_rel = (best_cell / scale.repeat(n_cells)).view(n_kinds, k, n_ch)
    enough = (count_cell >= min_values).view(n_kinds, k, n_ch)
    spread.factors.copy_(torch.where(enough, cell_rel, kind_rel).to(spread.factors.dtype))




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
    by_gap: bool = True,
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

    With ``by_gap`` and a model that has a :class:`~latentode.nn.spread.GapSpread`
    (``model.gap_spread``), the same criterion then fits its factors, relative to the channel's:
    on the hidden values above and, in ``rounds`` more passes, on forecasts (each series split
    by :func:`~latentode.training.objective.split_forecast` at the fractions of
    :data:`FORECAST_FRACTIONS` in turn, or at ``forecast_split``; the values after the split are
    held out), one factor per channel, kind of query (inside the conditioning window or beyond
    it) and bucket of the gap to the channel's nearest conditioning observation (edges at the
    quartiles of the held-out gaps of the kind). A cell with fewer than ``min_values`` values
    takes the factor of its kind and channel (or the channel's, when that has too few as well).

    Parameters
    ----------
    model : LatentODE
        Trained model (any module with ``predict`` and a ``spread_scale`` buffer; its
        ``observation`` model if it has one, else Gaussian noise is assumed; its
        ``gap_spread`` if it has one).
    batches : iterable of Batch
        Held-out series, re-iterable (a list), on the model's device and dtype.
    fraction : float
        Fraction of observed values hidden per round.
    rounds : int
        Independent hiding rounds (more held-out values, the same series), and forecast rounds
        of the gap factors.
    n_samples : int
        Posterior trajectory samples per series.
    min_values : int
        Minimum number of held-out values a channel (or a cell of the gap factors) needs to be
        calibrated.
    criterion : {"coverage", "likelihood"}
        What the factor optimises (see above).
    generator : torch.Generator, optional
        Source of the hiding masks and the sampling noise.
    forecast_split : float, optional
        Calibrate forecasts instead: each series is split by
        :func:`~latentode.training.objective.split_forecast` at this fraction of its window, the
        model conditions on the past and the future values are the held-out ones (``fraction``
        is then unused for ``spread_scale``).
    by_gap : bool
        Also fit ``model.gap_spread`` (when the model has one); False leaves it at 1 (the
        factor of a channel is then the same everywhere, as before it existed).

    Returns
    -------
    torch.Tensor
        ``(C,)`` factors, also stored in ``model.spread_scale``.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    batches = list(batches)
    scale_buf = model.spread_scale
    n_ch = scale_buf.shape[0]
    obs: ObservationModel | None = getattr(model, "observation", None)
    if obs is None:
        obs = GaussianObservation(n_ch, obs_std=1.0)
    spread: GapSpread | None = getattr(model, "gap_spread", None) if by_gap else None
    hidden_rec: list[_HeldOut] = []
    forecast_rec: list[_HeldOut] = []
    was_training = model.training
    model.eval()
    try:
        # the rounds of spread_scale first, so that it draws what it drew before gap_spread
        kinds = ["hidden", "forecast"] if forecast_split is None else ["forecast", "hidden"]
        for kind in kinds if spread is not None else kinds[:1]:
            for r in range(int(rounds)):
                split = (forecast_split if forecast_split is not None
                         else FORECAST_FRACTIONS[r % len(FORECAST_FRACTIONS)])
                for batch in batches:
                    if kind == "hidden":
                        cond = drop_observations(batch, fraction, generator)
                        rec = _held_out(model, cond, batch, (batch.mask - cond.mask) > 0,
                                        n_samples, generator)
                    else:
                        cond, query = split_forecast(batch, split)
                        rec = _held_out(model, cond, query, query.mask > 0, n_samples,
                                        generator)
                    if rec is not None:
                        (hidden_rec if kind == "hidden" else forecast_rec).append(rec)
    finally:
        model.train(was_training)
    primary = hidden_rec if forecast_split is None else forecast_rec
    best, count = _best_factors([(r, r.channel) for r in primary], n_ch, criterion, obs,
                                n_samples)
    scale = torch.where(count >= min_values, best, torch.ones_like(best))
    scale_buf.copy_(scale.to(scale_buf.dtype))
    if spread is not None:
        _fit_gap_spread(spread, hidden_rec + forecast_rec, scale, criterion, obs, n_samples,
                        min_values)
    elif hasattr(model, "gap_spread"):
        model.gap_spread.reset()
    return scale_buf.clone()
