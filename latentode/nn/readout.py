"""Readouts: from the decoded latent trajectory to the predicted mean of each channel.

The Latent ODE's decoder maps a latent state ``z(t)``, smooth and shared by every channel, to
the channel means. Near an observation of a channel, the observation itself says more about
the channel's value than a trajectory that must fit every channel at once: per-series linear
interpolation beats the plain decoder there. A readout combines the two:

* ``"latent"`` (the names are :data:`latentode.nn.registry.READOUTS`): the decoder alone, as
  in the paper (no module).
* ``"neighbours"``: :class:`NeighbourReadout` conditions each prediction of channel ``d`` at
  time ``t`` on the series' nearest *conditioning* observations of ``d`` strictly before and
  strictly after ``t`` (:func:`channel_neighbours`): their values, their distances to ``t``
  and the linear interpolation between them, through a gate learned per channel and distance
  that hands the prediction back to the latent trajectory far from the observations.

Neighbours are strictly before and after the query, never at it: the value a prediction is
scored against is never part of its own context (a leave-one-out readout), so training on
reconstruction cannot teach it to copy its target, and a prediction at an observed time is an
honest interpolation from the other observations of the channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from latentode.batch import Batch
from latentode.ode.padded import hold_last

__all__ = ["Neighbours", "channel_neighbours", "NeighbourReadout", "READOUT_REACHES",
           "READOUT_SIDES", "READOUT_SPLITS"]

#: how the estimator starts the reach of the readout's correction (``readout_reach``):
#: ``"window"`` 1 model time (a typical series' span), ``"spacing"`` each channel's typical
#: spacing of observations (:func:`latentode.data.observation_spacing`)
READOUT_REACHES: tuple[str, ...] = ("window", "spacing")
#: whether the readout's queries with neighbours on both sides and those with one side only
#: share their parameters (``"shared"``) or each kind has its own (``"split"``)
READOUT_SIDES: tuple[str, ...] = ("shared", "split")
#: how a ``"split"`` readout holds and uses the one-sided queries' parameters: ``"bounded"``,
#: the two-sided ones plus an offset that starts at 0, with a pull toward the carried
#: observation never stronger than the two-sided parameters' at the same gap and a residual
#: that fades over the channel's typical spacing; ``"offset"``, the same parameters with the
#: unbounded correction (the layout before ``"bounded"``); ``"copy"``, a set of their own
#: drawn at random (the layout before ``"offset"``). Networks saved with one keep it.
READOUT_SPLITS: tuple[str, ...] = ("bounded", "offset", "copy")


class Neighbours(NamedTuple):
    """Nearest conditioning observations of each channel around each query time.

    All fields are ``(B, M, C)``: series, query, channel.

    Attributes
    ----------
    prev_value, next_value : torch.Tensor
        Value of the channel at its last observation before / first observation after the
        query (the conditioning batch's units); 0 where there is none.
    prev_gap, next_gap : torch.Tensor
        Time from that observation to the query (``>= 0``, model time); ``inf`` where there
        is none.
    """

    prev_value: torch.Tensor
    prev_gap: torch.Tensor
    next_value: torch.Tensor
    next_gap: torch.Tensor

    @property
    def has_prev(self) -> torch.Tensor:
        """``(B, M, C)`` bool: the channel was observed before the query."""
        return torch.isfinite(self.prev_gap)

    @property
    def has_next(self) -> torch.Tensor:
        """``(B, M, C)`` bool: the channel was observed after the query."""
        return torch.isfinite(self.next_gap)

    def nearest_gap(self) -> torch.Tensor:
        """``(B, M, C)`` time to the nearer neighbour, 0 where there is none (finite)."""
        gap = torch.minimum(self.prev_gap, self.next_gap)
        return torch.where(self.has_prev | self.has_next, gap, torch.zeros_like(gap))

    def interpolate(self) -> torch.Tensor:
        """``(B, M, C)`` per-series linear interpolation of the channel at the query.

        Between two observations, the line through them; with one side only, its value (last
        observation carried forward, or the first carried backward); 0 with neither.
        """
        has_p, has_n = self.has_prev, self.has_next
        both = has_p & has_n
        gp = torch.where(both, self.prev_gap, torch.zeros_like(self.prev_gap))
        gn = torch.where(both, self.next_gap, torch.ones_like(self.next_gap))
        w = gp / (gp + gn).clamp(min=torch.finfo(gp.dtype).tiny)  # weight of the next value
        line = self.prev_value + w * (self.next_value - self.prev_value)
        one = torch.where(has_p, self.prev_value, self.next_value)
        return torch.where(both, line, one)


@torch.no_grad()
def channel_neighbours(cond: Batch, query_times: torch.Tensor, *,
                       strict: bool = True) -> Neighbours:
    """The last observation before and first after each query time, per series and channel.

    Linear in the number of times (cumulative extrema of observed positions and two
    ``searchsorted``; no pairwise distance matrix and no loop over series or times).

    Parameters
    ----------
    cond : Batch
        Conditioning observations: ``B`` series, times ascending over each valid prefix
        (``cond.lengths``; positions beyond it are ignored even if they hold later times), a
        value observed where ``cond.mask`` is 1.
    query_times : torch.Tensor
        ``(B, M)`` query times, model time (any order).
    strict : bool
        True: observations strictly before and strictly after the query, so an observation at
        the query time itself is never its own neighbour. False: at or before, at or after
        (gap 0 at an observed time).

    Returns
    -------
    Neighbours
        ``(B, M, C)`` values and gaps of both neighbours (no gradient: the values are data).

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> t = torch.tensor([[0.0, 1.0, 2.0]])
    >>> x = torch.tensor([[[1.0], [0.0], [3.0]]])
    >>> m = torch.tensor([[[1.0], [0.0], [1.0]]])
    >>> nb = channel_neighbours(Batch(t, x, m, torch.tensor([3])), torch.tensor([[0.5, 2.0]]))
    >>> nb.prev_value[0, :, 0].tolist(), nb.next_gap[0, :, 0].tolist()
    ([1.0, 1.0], [1.5, inf])
    >>> nb.interpolate()[0, :, 0].tolist()
    [1.5, 1.0]
    """
    times = cond.times
    q = query_times.to(device=times.device, dtype=times.dtype).contiguous()
    b, n = times.shape
    c = cond.mask.shape[-1]
    lengths = cond.lengths.to(device=times.device, dtype=torch.long).clamp(min=1, max=n)
    pos = torch.arange(n, device=times.device)
    # searchsorted needs rows sorted over the whole width: times past the prefix are clamped
    sorted_t, valid, _ = hold_last(times, lengths)  # valid: (B, N)
    sorted_t = sorted_t.contiguous()
    seen = (cond.mask > 0) & valid.unsqueeze(-1)  # (B, N, C)
    pos3 = pos.view(1, n, 1).expand_as(seen)
    last_seen = torch.where(seen, pos3, -1).cummax(dim=1).values  # last observed at <= n
    first_seen = torch.where(seen, pos3, n).flip(1).cummin(dim=1).values.flip(1)  # at >= n
    below = torch.searchsorted(sorted_t, q)  # number of times < q
    upto = torch.searchsorted(sorted_t, q, right=True)  # number of times <= q
    below = torch.minimum(below, lengths.unsqueeze(1))
    upto = torch.minimum(upto, lengths.unsqueeze(1))
    prev_end, next_start = (below, upto) if strict else (upto, below)

    def at(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return table.gather(1, index.unsqueeze(-1).expand(-1, -1, c))

    prev_idx = at(last_seen, (prev_end - 1).clamp(min=0))
    prev_idx = torch.where((prev_end > 0).unsqueeze(-1), prev_idx, -1)
    next_idx = at(first_seen, next_start.clamp(max=n - 1))
    next_idx = torch.where((next_start < lengths.unsqueeze(1)).unsqueeze(-1), next_idx, n)
    has_prev, has_next = prev_idx >= 0, next_idx < n
    t3 = times.unsqueeze(-1).expand(b, n, c)
    values = cond.values
    q3 = q.unsqueeze(-1)
    inf = torch.full((), math.inf, dtype=times.dtype, device=times.device)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    p, nx = prev_idx.clamp(min=0), next_idx.clamp(max=n - 1)
    return Neighbours(
        prev_value=torch.where(has_prev, values.gather(1, p), zero),
        prev_gap=torch.where(has_prev, (q3 - t3.gather(1, p)).clamp(min=0), inf),
        next_value=torch.where(has_next, values.gather(1, nx), zero),
        next_gap=torch.where(has_next, (t3.gather(1, nx) - q3).clamp(min=0), inf),
    )


class NeighbourReadout(nn.Module):
    """Correct the decoded means with each channel's neighbouring observations.

    For series ``b``, query time ``t`` and channel ``d``, with ``base`` the decoder's mean,
    ``z`` the latent state at ``t`` and the neighbours of :func:`channel_neighbours`
    (``strict=True``)::

        mean = base + envelope * (sigmoid(g) * (interp - base) + r)
        envelope = exp(-gap / reach_d)   (0 without a neighbour)

    where ``interp`` is the per-series linear interpolation of ``d`` from its neighbours
    (carried forward / backward beyond them), ``gap`` the distance to the nearer neighbour and
    ``reach_d`` a learned time scale per channel (initially 1 model time, a typical series'
    span; :meth:`set_reach` sets it before training, e.g. to the channel's typical spacing as
    the estimator does): the correction fades with the distance to the observations, so that
    far from them (long forecasts, long gaps) the prediction is the latent trajectory's, and
    it is 0 for a channel the series never observed. ``(g, r)`` come from a one-hidden-layer
    tanh network of ``z``, a learned bias of channel ``d``, ``base``, both neighbours' values
    and presence and the decays ``exp(-gap / tau_dj)`` of both gaps at ``n_scales`` time
    scales ``tau_dj`` learned per channel (initialised log-spaced from 0.01 to 1 model time,
    i.e. from 1 % of a typical series to all of it): near the observations the gate can
    follow them, or not, per channel and distance. The output layer starts at 0: the initial
    readout moves the decoder half-way to the interpolation, times the envelope.

    Parameters
    ----------
    latent_dim : int
        Latent state size.
    n_channels : int
        Number of channels ``C``.
    units : int
        Hidden width of the gate network (it runs once per query, channel and trajectory
        sample, so it is kept small).
    n_scales : int
        Number of learned time scales of the gap decays per channel.
    sides : {"shared", "split"}
        ``"shared"``: one set of parameters (time scales, reach, gate network) for every
        query. ``"split"``: queries with a neighbour on one side only (before the channel's
        first or after its last conditioning observation: forecasts, backcasts) have their
        own set (:meth:`effective_parameters` with ``one_sided=True``, held by
        :attr:`one_sided` as ``split`` says), and the parameters of this module serve the
        queries between two observations (with ``split="bounded"`` or ``"offset"``, as the
        base of the one-sided ones too). Trained on forecasts too (``forecast_share``), the
        one-sided queries' long gaps and large errors are then fitted by the one-sided
        offsets or copy, which leaves the correction of interpolation between observations
        close to what reconstruction trains.
    split : {"bounded", "offset", "copy"}
        With ``sides="split"``, how the one-sided parameters are held and used
        (:data:`READOUT_SPLITS`). ``"offset"``: they are this module's parameters plus
        :attr:`one_sided`'s offsets, which start at 0 (a hierarchical parameterisation):
        the two-sided queries train this module's parameters, the one-sided queries both
        these and the offsets. A side that training shows few queries (reconstruction's
        one-sided queries are only those before a channel's first or after its last
        observation) so follows what the readout learns from every query instead of
        staying near a random start, and specialises through its offsets where it has data.
        ``"bounded"``: the same parameters, and a one-sided query's correction is::

            mean = base + min(envelope_one * sigmoid(g_one), envelope_two * sigmoid(g_two))
                          * (interp - base)
                        + envelope_one * exp(-gap / residual_reach_d) * r_one

        (``_one``: the one-sided parameters, ``_two``: this module's, at the same query;
        ``residual_reach_d`` the channel's typical spacing, :meth:`set_spacing`): it holds
        on to the carried observation at most as much as a query between two observations at
        the same gap would, and its residual, learned where reconstruction shows one-sided
        queries (a channel's first and last observation, about one spacing from their
        neighbour), fades beyond those gaps. Unbounded (``"offset"``), what the one-sided
        parameters learn at those short gaps carried the last value too far into the long
        forecasts of sparse channels (PhysioNet's, docs/results/across-datasets.md, "The split
        readout, bounded"), while the two-sided parameters have seen the long gaps between
        sparse observations.
        ``"copy"``: :attr:`one_sided`'s own parameters, drawn at random like this module's
        and trained by the one-sided queries alone, with the full correction (networks saved
        before ``"offset"`` existed have this layout). Unused with ``sides="shared"``.

    Attributes
    ----------
    one_sided : NeighbourReadout or None
        With ``sides="split"``, a ``"shared"`` readout of the same sizes holding the
        one-sided queries' offsets (``split="bounded"`` or ``"offset"``) or parameters
        (``"copy"``); None otherwise.
    residual_reach : torch.Tensor
        ``(C,)`` buffer, with ``sides="split", split="bounded"`` only: the time scale over
        which a one-sided query's residual fades (1 model time until :meth:`set_spacing`).
    """

    def __init__(self, latent_dim: int, n_channels: int, units: int = 16,
                 n_scales: int = 4, sides: str = "shared", split: str = "bounded") -> None:
        super().__init__()
        if n_channels < 1 or units < 1 or n_scales < 1:
            raise ValueError(f"n_channels, units and n_scales must be positive, got "
                             f"{n_channels}, {units} and {n_scales}.")
        if sides not in READOUT_SIDES:
            raise ValueError(f"sides must be one of {READOUT_SIDES}, got {sides!r}.")
        if split not in READOUT_SPLITS:
            raise ValueError(f"split must be one of {READOUT_SPLITS}, got {split!r}.")
        self.sides = sides
        self.split = split
        self.n_channels = int(n_channels)
        init = torch.logspace(-2, 0, n_scales) if n_scales > 1 else torch.ones(1)
        self.log_scale = nn.Parameter(init.log().repeat(n_channels, 1))  # (C, J)
        # the envelope exp(-gap / reach_d) of the correction, gap to the nearer neighbour
        self.log_reach = nn.Parameter(torch.zeros(n_channels))
        # both sides' (value, present, decays), then the interpolation
        self.context = nn.Linear(2 * (2 + n_scales) + 1, units)
        bound = 1.0 / math.sqrt(units)
        self.channel = nn.Parameter(torch.empty(n_channels, units).uniform_(-bound, bound))
        self.base = nn.Parameter(torch.empty(units).uniform_(-bound, bound))
        self.latent = nn.Linear(latent_dim, units, bias=False)
        self.out = nn.Linear(units, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # built last, so that a "shared" readout draws its initial weights as before (offsets
        # are drawn too, then zeroed: what is drawn after them is unchanged)
        self.one_sided: NeighbourReadout | None = (
            NeighbourReadout(latent_dim, n_channels, units, n_scales) if sides == "split"
            else None)
        if self.one_sided is not None and split != "copy":
            with torch.no_grad():
                for offset in self.one_sided.parameters():
                    offset.zero_()
        self.residual_reach: torch.Tensor
        if self.one_sided is not None and split == "bounded":
            # the scale over which a one-sided query's residual fades (set_spacing)
            self.register_buffer("residual_reach", torch.ones(n_channels))

    @torch.no_grad()
    def set_reach(self, reach: torch.Tensor) -> None:
        """Set the reach ``(C,)`` of the envelope per channel (model time, ``> 0``).

        Before training, the typical spacing of each channel's observations
        (:func:`latentode.data.observation_spacing`): the gaps that reconstruction shows the
        readout are about that long, so the correction starts to fade there and extends
        further only where training finds it useful; beyond (forecasts, long gaps) the
        prediction is the latent trajectory's.
        """
        reach = torch.as_tensor(reach, dtype=self.log_reach.dtype, device=self.log_reach.device)
        if reach.shape != self.log_reach.shape or not bool(
                (torch.isfinite(reach) & (reach > 0)).all()):
            raise ValueError(f"reach must be {tuple(self.log_reach.shape)} positive finite "
                             f"values.")
        self.log_reach.copy_(reach.log())
        if self.one_sided is not None and self.split == "copy":  # an offset follows
            self.one_sided.set_reach(reach)

    @torch.no_grad()
    def set_spacing(self, spacing: torch.Tensor) -> None:
        """Set the typical spacing ``(C,)`` of each channel's observations (model time,
        ``> 0``; :func:`latentode.data.observation_spacing` of the training series).

        With ``split="bounded"`` it is :attr:`residual_reach`, the scale over which a
        one-sided query's residual fades: reconstruction trains the one-sided parameters at
        a channel's first and last observations, about one spacing from their neighbour, and
        the residual is not carried to the longer gaps of forecasts. No effect otherwise.
        """
        if self.one_sided is None or self.split != "bounded":
            return
        spacing = torch.as_tensor(spacing, dtype=self.residual_reach.dtype,
                                  device=self.residual_reach.device)
        if spacing.shape != self.residual_reach.shape or not bool(
                (torch.isfinite(spacing) & (spacing > 0)).all()):
            raise ValueError(f"spacing must be {tuple(self.residual_reach.shape)} positive "
                             f"finite values.")
        self.residual_reach.copy_(spacing)

    def effective_parameters(self, one_sided: bool = False) -> dict[str, torch.Tensor]:
        """The parameters the readout computes with, by name (``"log_scale"``,
        ``"log_reach"``, ``"context.weight"``, ``"context.bias"``, ``"channel"``, ``"base"``,
        ``"latent.weight"``, ``"out.weight"``, ``"out.bias"``).

        Parameters
        ----------
        one_sided : bool
            False: those of the queries between two observations of the channel (of every
            query with ``sides="shared"``): this module's own. True: those of the queries with
            a neighbour on one side only: with ``sides="shared"`` the same, with
            ``split="bounded"`` or ``"offset"`` this module's plus :attr:`one_sided`'s
            offsets, with ``split="copy"`` :attr:`one_sided`'s own.

        Returns
        -------
        dict of str to torch.Tensor
            The tensors, differentiable with respect to the parameters that they train.
        """
        own = {name: p for name, p in self.named_parameters()
               if not name.startswith("one_sided.")}
        one = self.one_sided
        if not one_sided or one is None:
            return own
        offsets = dict(one.named_parameters())
        if self.split == "copy":
            return offsets
        return {name: p + offsets[name] for name, p in own.items()}

    def forward(self, base: torch.Tensor, z: torch.Tensor, cond: Batch,
                query_times: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Corrected means.

        Parameters
        ----------
        base : torch.Tensor
            ``(K, B, M, C)`` decoded means per trajectory sample.
        z : torch.Tensor
            ``(K, B, M, latent_dim)`` latent states they were decoded from.
        cond : Batch
            The conditioning observations (those the encoder saw).
        query_times : torch.Tensor
            ``(B, M)`` the times of ``base`` (model time).
        where : torch.Tensor, optional
            ``(B, M, C)`` bool, the entries needed (e.g. the observed values a loss scores):
            others may be returned uncorrected. Off CUDA, only these entries (and only those
            with a neighbour) go through the gate network, which makes training cost what the
            observed values cost rather than the full ``B * M * C`` grid (one host sync per
            call); on CUDA every entry does, without a sync.

        Returns
        -------
        torch.Tensor
            ``(K, B, M, C)``.
        """
        nb = channel_neighbours(cond, query_times)
        if base.device.type == "cuda":  # dense: no host sync, the device has the throughput
            return self.dense(nb, base, z)
        active = nb.has_prev | nb.has_next
        if where is not None:
            active &= where.to(device=active.device, dtype=torch.bool)
        if self.one_sided is None:
            parts = [(False, active)]
        else:
            two = nb.has_prev & nb.has_next
            parts = [(False, active & two), (True, active & ~two)]
        mean = base
        k, n_b, n_m, n_c = base.shape
        flat_base = base.reshape(k, -1)  # (K, B * M * C)
        for one_sided, entries in parts:
            flat = entries.reshape(-1).nonzero().squeeze(1)  # (P,) entries (b, m, c), in order
            if flat.numel() == 0:
                continue
            c = flat % n_c
            picked = Neighbours(*(field.reshape(-1).index_select(0, flat) for field in nb))

            def latent(w: dict[str, torch.Tensor], rows: torch.Tensor = flat // n_c
                       ) -> torch.Tensor:
                # index_select on flattened views: the copies that advanced indexing makes
                return F.linear(z, w["latent.weight"]).reshape(k, n_b * n_m, -1).index_select(
                    1, rows)

            new = self._combine(picked, c, flat_base.index_select(1, flat), latent, one_sided)
            if mean is base:
                mean = base.clone(memory_format=torch.contiguous_format)
            mean.view(k, -1).index_copy_(1, flat, new)
        return mean

    def dense(self, nb: Neighbours, base: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The corrected means at every entry of the grid (the path of :meth:`forward` on
        CUDA; off CUDA it computes the entries with a neighbour only, to the same values).

        Parameters
        ----------
        nb : Neighbours
            ``(B, M, C)`` neighbours of the queries (:func:`channel_neighbours`).
        base : torch.Tensor
            ``(K, B, M, C)`` decoded means.
        z : torch.Tensor
            ``(K, B, M, latent_dim)`` latent states.

        Returns
        -------
        torch.Tensor
            ``(K, B, M, C)``.
        """
        channel = torch.arange(base.shape[-1], device=base.device).expand(nb.prev_gap.shape)

        def latent(w: dict[str, torch.Tensor]) -> torch.Tensor:
            return F.linear(z, w["latent.weight"]).unsqueeze(-2)

        mean = self._combine(nb, channel, base, latent, False)
        if self.one_sided is None:
            return mean
        return torch.where(nb.has_prev & nb.has_next, mean,
                           self._combine(nb, channel, base, latent, True))

    def _combine(self, nb: Neighbours, channel: torch.Tensor, base: torch.Tensor,
                 latent: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                 one_sided: bool) -> torch.Tensor:
        """The readout of queries of one kind (:meth:`_correct`'s shapes; ``latent`` projects
        the latent states with a parameter set): with ``split="bounded"``, a one-sided query's
        correction has no residual and its weight is at most the two-sided set's there."""
        w = self.effective_parameters(one_sided)
        if not (one_sided and self.one_sided is not None and self.split == "bounded"):
            return self._correct(nb, channel, base, latent(w), w)
        interp, envelope, gate, resid = self._terms(nb, channel, base, latent(w), w)
        two = self.effective_parameters()
        _, envelope2, gate2, _ = self._terms(nb, channel, base, latent(two), two)
        weight = torch.minimum(envelope * torch.sigmoid(gate), envelope2 * torch.sigmoid(gate2))
        gap = nb.nearest_gap().to(base.dtype)
        fade = torch.exp(-gap / self.residual_reach.to(base.dtype)[channel])
        return base + weight * (interp - base) + envelope * fade * resid

    def _correct(self, nb: Neighbours, channel: torch.Tensor, base: torch.Tensor,
                 latent: torch.Tensor, w: dict[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        """The readout at entries of any shape ``E``: neighbours and ``channel`` (long indices)
        ``E``, ``base`` ``(K, *E)``, the projected latent states ``latent`` broadcastable to
        ``(K, *E, units)``, with the parameters ``w`` (:meth:`effective_parameters`; default
        this module's own); returns ``(K, *E)``."""
        interp, envelope, gate, resid = self._terms(nb, channel, base, latent, w)
        return base + envelope * (torch.sigmoid(gate) * (interp - base) + resid)

    def _terms(self, nb: Neighbours, channel: torch.Tensor, base: torch.Tensor,
               latent: torch.Tensor, w: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The parts of :meth:`_correct`, each ``(K, *E)`` (``interp`` and ``envelope``
        ``E``): the interpolation, the envelope, the gate's logit ``g`` and the residual
        ``r``."""
        w = self.effective_parameters() if w is None else w
        dtype = base.dtype
        has_p, has_n = nb.has_prev, nb.has_next
        scale = w["log_scale"].exp().to(dtype)[channel]  # (*E, J)

        def decay(gap: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
            finite = torch.where(has, gap, torch.zeros_like(gap)).to(dtype)
            return has.unsqueeze(-1).to(dtype) * torch.exp(-finite.unsqueeze(-1) / scale)

        interp = nb.interpolate().to(dtype)
        ctx = torch.cat([
            nb.prev_value.to(dtype).unsqueeze(-1), has_p.to(dtype).unsqueeze(-1),
            decay(nb.prev_gap, has_p),
            nb.next_value.to(dtype).unsqueeze(-1), has_n.to(dtype).unsqueeze(-1),
            decay(nb.next_gap, has_n),
            interp.unsqueeze(-1),
        ], dim=-1)  # (*E, F): shared by the trajectory samples
        hidden = (F.linear(ctx, w["context.weight"], w["context.bias"])
                  + w["channel"].to(dtype)[channel])  # (*E, H)
        # (K, *E, H), the largest tensors of the readout: one buffer, updated in place, for
        # hidden + base * w + latent and its tanh (the same operations in the same order;
        # autograd keeps what the backward needs: neither add reads its inputs back)
        act = base.unsqueeze(-1) * w["base"].to(dtype)
        act = torch.tanh_(act.add_(hidden).add_(latent))
        gate, resid = F.linear(act, w["out.weight"], w["out.bias"]).unbind(-1)
        near = nb.nearest_gap().to(dtype)
        reach = w["log_reach"].exp().to(dtype)[channel]
        envelope = (has_p | has_n).to(dtype) * torch.exp(-near / reach)
        return interp, envelope, gate, resid
