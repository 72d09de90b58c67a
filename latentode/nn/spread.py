"""Calibration factors that depend on where a predicted value lies relative to the observations.

A Latent ODE conditioned on some observations of a series is more or less wrong about a value
depending on how far that value is from what it saw: a value between two close observations is
nearly pinned down, a forecast far past the last one is not, and a deterministic latent
trajectory does not widen its predictive distribution with the distance by itself. One factor per
channel (``LatentODE.spread_scale``) cannot fix both, so :class:`GapSpread` multiplies it, per
channel, by a factor of the query's *kind* and *gap*:

* kind ``"inside"``: the query time lies within the series' conditioning window (between its
  first and last conditioning time); ``"beyond"``: before the first or after the last one (a
  forecast);
* gap: the time from the query to the nearest conditioning observation of that channel (model
  time; infinite when the series never observed the channel). The gaps of each kind are cut into
  :data:`N_GAP_BUCKETS` buckets at fitted edges.

A query at a time where the channel was observed (gap 0: the values the model conditioned on)
keeps the channel's factor alone. The factors are fitted after training by
:func:`latentode.training.calibrate_spread` on values held out from validation series; until
then they are 1 and the model predicts as if the module were absent.

A factor fixes the width of the predictive distribution, not its shape: when the errors of the
values the model did not condition on are heavier-tailed than the observation model (a mix of
well and badly predicted series, say), no factor gets both the 50 % and the 90 % intervals
right. So the module also holds *calibrated tails*: per kind and channel, the degrees of freedom
of a Student-t that replaces the observation model's standard family at those values
(:mod:`latentode.nn.observation.tails`; ``inf``, the default, keeps the family), fitted together
with the factors.
"""

from __future__ import annotations

import torch
from torch import nn

from latentode.batch import Batch

from .readout import channel_neighbours

__all__ = ["GapSpread", "observation_gaps", "observation_counts", "N_GAP_BUCKETS", "GAP_KINDS",
           "DENSITY_SHRINKAGES"]

#: buckets of the gap to the nearest observation, per kind
N_GAP_BUCKETS = 4
#: the kinds of query: within the conditioning window, or before / after it (forecasts)
GAP_KINDS = ("inside", "beyond")
#: the shrinkages of the density slope among which the validation series choose, per kind
#: (``calibrate_spread(..., by_density="validated")``): none of it, half of it, all of it
DENSITY_SHRINKAGES = (0.0, 0.5, 1.0)


@torch.no_grad()
def observation_gaps(
    cond: Batch, query_times: torch.Tensor, *, observed_window: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Time from each query to the nearest conditioning observation of each channel.

    The nearer of the channel's neighbours at or before and at or after the query
    (:func:`~latentode.nn.readout.channel_neighbours` with ``strict=False``): linear in the
    number of times, so long series cost what their length costs.

    Parameters
    ----------
    cond : Batch
        Conditioning observations: ``B`` series, times ascending over each valid prefix
        (``cond.lengths``; positions beyond it are ignored even if they hold later times).
    query_times : torch.Tensor
        ``(B, M)`` query times, model time.
    observed_window : bool
        Whether the conditioning window (``beyond``) spans the time points with an observed
        value only (True) or every valid time point (False). They differ only for a batch with
        time points whose values are all hidden, as after
        :func:`~latentode.training.objective.drop_observations`; the estimator's conditioning
        batches have none, so calibration (True) classifies a value hidden at the end of a
        series as the forecast it is when a user asks for it.

    Returns
    -------
    gap : torch.Tensor
        ``(B, M, C)`` distance to the nearest observed value of the channel, ``inf`` when the
        series has none; 0 at a time where the channel is observed.
    beyond : torch.Tensor
        ``(B, M)`` bool, True where the query lies before the first or after the last
        conditioning time of its series (see ``observed_window``; a series without an observed
        value: its valid times).
    """
    nb = channel_neighbours(cond, query_times, strict=False)
    gap = torch.minimum(nb.prev_gap, nb.next_gap)
    times = cond.times
    q = query_times.to(device=times.device, dtype=times.dtype)
    n = times.shape[1]
    lengths = cond.lengths.to(times.device).long().clamp(min=1)
    pos = torch.arange(n, device=times.device)
    seen = pos.unsqueeze(0) < lengths.unsqueeze(1)  # (B, N) valid time points
    if observed_window:
        seen = seen & (cond.mask > 0).any(-1)
    # first and last of those time points (a series without any: its valid times)
    first = torch.where(seen, pos, n).min(1).values
    last = torch.where(seen, pos, -1).max(1).values
    none = ~seen.any(1)
    first = torch.where(none, torch.zeros_like(first), first)
    last = torch.where(none, lengths - 1, last)
    beyond = (q < times.gather(1, first.unsqueeze(1))) | (q > times.gather(1, last.unsqueeze(1)))
    return gap, beyond


@torch.no_grad()
def observation_counts(cond: Batch) -> torch.Tensor:
    """``(B, C)`` number of conditioning observations of each series and channel (over each
    valid prefix, ``cond.lengths``), as a float tensor."""
    return (cond.valid_mask() > 0).sum(1).to(cond.times.dtype)


class GapSpread(nn.Module):
    """Per-channel factors of the predictive spread by kind of query and gap bucket.

    Parameters
    ----------
    n_channels : int
        Number of channels ``C``.

    Attributes
    ----------
    edges : torch.Tensor
        ``(len(GAP_KINDS), N_GAP_BUCKETS - 1)`` buffer: ascending bucket edges of the gap (model
        time) per kind; bucket ``j`` holds gaps in ``(edges[j-1], edges[j]]``.
    factors : torch.Tensor
        ``(len(GAP_KINDS), N_GAP_BUCKETS, C)`` buffer: the factor of each kind, bucket and
        channel, relative to the model's ``spread_scale`` (1: no change).
    tail_df : torch.Tensor
        ``(len(GAP_KINDS), C)`` buffer: per kind and channel, the degrees of freedom of the
        Student-t that replaces the observation model's standard family at the queries of the
        kind with a gap (``inf``: the family is kept). Files saved before it existed load with
        ``inf``.
    density_slope : torch.Tensor
        ``(len(GAP_KINDS),)`` buffer: per kind, the exponent ``b`` of the *density factor*
        ``(n / n_ref) ** -b`` that further multiplies the factor of a query with a gap, ``n``
        the number of observations of the channel its series conditions on
        (:func:`observation_counts`) and ``n_ref`` the channel's :attr:`density_ref`: the
        fewer observations the model conditions on, the wider (``b > 0``), beyond the gap to
        the nearest one. 0 (the default; files saved before it existed): no such factor.
    density_ref : torch.Tensor
        ``(C,)`` buffer: the reference number of observations of each channel (1 until
        fitted).
    density_shrink : torch.Tensor
        ``(len(GAP_KINDS),)`` buffer: per kind, the share of the slope that the structure
        series fitted which the validation series kept (one of :data:`DENSITY_SHRINKAGES`;
        :attr:`density_slope` is already shrunk). 1 where no such choice was made (files saved
        before it existed, a calibration without it).
    density_losses : torch.Tensor
        ``(len(DENSITY_SHRINKAGES), len(GAP_KINDS))`` buffer: the validation series' loss of
        each shrinkage per kind behind :attr:`density_shrink` (0 where no choice was made).
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        k = len(GAP_KINDS)
        self.register_buffer("edges", torch.zeros(k, N_GAP_BUCKETS - 1))
        self.register_buffer("factors", torch.ones(k, N_GAP_BUCKETS, n_channels))
        self.register_buffer("tail_df", torch.full((k, n_channels), float("inf")))
        self.register_buffer("density_slope", torch.zeros(k))
        self.register_buffer("density_ref", torch.ones(n_channels))
        self.register_buffer("density_shrink", torch.ones(k))
        self.register_buffer("density_losses", torch.zeros(len(DENSITY_SHRINKAGES), k))

    @property
    def n_cells(self) -> int:
        """Number of (kind, bucket) cells per channel."""
        return self.factors.shape[0] * self.factors.shape[1]

    def is_identity(self) -> bool:
        """Whether every factor is 1 and no tail or density factor is calibrated (the model
        ignores the module)."""
        return (bool((self.factors == 1).all()) and not self.has_tails()
                and not self.has_density())

    def has_tails(self) -> bool:
        """Whether some kind and channel has calibrated tails (a finite ``tail_df``)."""
        return bool(torch.isfinite(self.tail_df).any())

    def has_density(self) -> bool:
        """Whether some kind has a density factor (a nonzero ``density_slope``)."""
        return bool((self.density_slope != 0).any())

    def reset(self) -> None:
        """Set every factor to 1, the edges to 0, the tails to ``inf`` and the density
        factors' slopes to 0, their shrinkages to 1 (a new model)."""
        self.factors.fill_(1.0)
        self.edges.zero_()
        self.tail_df.fill_(float("inf"))
        self.density_slope.zero_()
        self.density_ref.fill_(1.0)
        self.density_shrink.fill_(1.0)
        self.density_losses.zero_()

    def density(self, count: torch.Tensor, beyond: torch.Tensor,
                channel: torch.Tensor | None = None) -> torch.Tensor:
        """The density factor ``(count / density_ref) ** -density_slope[kind]`` of each query.

        Parameters
        ----------
        count : torch.Tensor
            Number of conditioning observations of the query's series and channel
            (:func:`observation_counts`; any shape, at least 1 is used).
        beyond : torch.Tensor
            Bool kinds, broadcastable to ``count``, as :meth:`cells`.
        channel : torch.Tensor, optional
            Long channel of each entry, shaped like ``count``; default: ``count``'s last axis
            is the channel axis.

        Returns
        -------
        torch.Tensor
            Shaped like ``count`` (1 everywhere without a density factor).
        """
        kind = beyond.long().expand_as(count)
        if channel is None:
            channel = torch.arange(count.shape[-1], device=count.device).expand_as(count)
        ref = self.density_ref.to(count.dtype)[channel]
        slope = self.density_slope.to(count.dtype)[kind]
        return (count.clamp(min=1.0) / ref).pow(-slope)

    def cells(self, gap: torch.Tensor, beyond: torch.Tensor) -> torch.Tensor:
        """The (kind, bucket) cell ``kind * N_GAP_BUCKETS + bucket`` of each query and channel.

        Parameters
        ----------
        gap : torch.Tensor
            Gaps of :func:`observation_gaps` (any shape).
        beyond : torch.Tensor
            Bool kinds of :func:`observation_gaps`, broadcastable to ``gap`` (e.g. ``(B, M, 1)``
            for ``(B, M, C)`` gaps).

        Returns
        -------
        torch.Tensor
            Long cell indices in ``[0, n_cells)``, shaped like ``gap``.
        """
        kind = beyond.long().expand_as(gap)
        edges = self.edges.to(gap.dtype)[kind]  # (..., C, K-1)
        bucket = (gap.unsqueeze(-1) > edges).sum(-1)
        return kind * N_GAP_BUCKETS + bucket

    def tails(self, gap: torch.Tensor, beyond: torch.Tensor,
              channel: torch.Tensor | None = None) -> torch.Tensor:
        """Calibrated degrees of freedom of each query and channel (``inf`` at gap 0).

        Parameters
        ----------
        gap, beyond : torch.Tensor
            As :meth:`cells`.
        channel : torch.Tensor, optional
            Long channel of each entry, shaped like ``gap``; default: ``gap``'s last axis is
            the channel axis.

        Returns
        -------
        torch.Tensor
            Shaped like ``gap``.
        """
        kind = beyond.long().expand_as(gap)
        if channel is None:
            channel = torch.arange(gap.shape[-1], device=gap.device).expand_as(gap)
        df = self.tail_df.to(gap.dtype)[kind, channel]
        return torch.where(gap > 0, df, torch.full_like(df, float("inf")))

    def calibration(self, cond: Batch, query_times: torch.Tensor
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(B, M, C)`` factors and tails of the queries (each None when not calibrated).

        Queries at a time where the channel is observed (gap 0) get factor 1 and tail ``inf``.
        """
        if self.is_identity():
            return None, None
        gap, beyond = observation_gaps(cond, query_times)
        cell = self.cells(gap, beyond.unsqueeze(-1))
        table = self.factors.reshape(self.n_cells, -1).to(gap.dtype)  # (cells, C)
        factor = table.gather(0, cell.reshape(-1, cell.shape[-1])).reshape(cell.shape)
        if self.has_density():
            count = observation_counts(cond).to(gap.device, gap.dtype).unsqueeze(1)
            factor = factor * self.density(count.expand_as(gap), beyond.unsqueeze(-1))
        factor = torch.where(gap > 0, factor, torch.ones_like(factor))
        tails = self.tails(gap, beyond.unsqueeze(-1)) if self.has_tails() else None
        return factor, tails

    def forward(self, cond: Batch, query_times: torch.Tensor) -> torch.Tensor | None:
        """``(B, M, C)`` factors of the queries, or None when the module is the identity.

        Queries at a time where the channel is observed (gap 0) get 1 (:meth:`calibration`
        also gives the tails).
        """
        return self.calibration(cond, query_times)[0]
