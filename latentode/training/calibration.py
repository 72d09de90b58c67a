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

Factors fix the width, not the shape: errors that are a mix of small and large ones have heavier
tails than the observation model, and no factor then gets the 50 % and the 90 % intervals right
at once. So, per kind and channel, the standard family may be replaced by a Student-t whose
degrees of freedom are chosen with the factor (calibrated tails, ``GapSpread.tail_df``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import nn

from latentode.batch import Batch, rebatch
from latentode.nn.observation import GaussianObservation, ObservationModel
from latentode.nn.spread import (
    DENSITY_SHRINKAGES,
    GAP_KINDS,
    N_GAP_BUCKETS,
    GapSpread,
    observation_counts,
    observation_gaps,
)

from .loop import progress_bar
from .objective import drop_observations, split_forecast

__all__ = ["calibrate_spread", "calibrate_level", "SCALE_GRID", "CRITERIA", "COVERAGE_LEVELS",
           "FORECAST_FRACTIONS", "HIDE_FRACTIONS", "TAIL_GRID", "LEVEL_GRID", "LEVEL_STRIDES",
           "STRUCTURE_STRIDES", "MAX_STRUCTURE_SERIES", "MAX_LEVEL_SERIES", "STRUCTURE_ROUNDS",
           "STRUCTURE_MIN_ROUNDS", "STRUCTURE_VALUES", "STRUCTURE_SAMPLES",
           "CALIBRATION_STRUCTURES", "LEVEL_ROUNDS", "RELEVEL_GRID", "DENSITY_GRID",
           "DENSITY_OPTIONS"]

#: candidate factors: geometric grid from 1/4 to 8 (ratio about 1.036 between neighbours)
SCALE_GRID = torch.logspace(math.log10(0.25), math.log10(8.0), 97, dtype=torch.float64)
#: central-interval levels whose coverage the ``"coverage"`` criterion matches
COVERAGE_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: what :func:`calibrate_spread` matches: interval coverage, or the held-out likelihood
CRITERIA = ("coverage", "likelihood")
#: where each series is split for the forecast rounds of the gap factors (one per round, in
#: turn), as fractions of its window; ``forecast_split`` replaces them when given
FORECAST_FRACTIONS = (0.5, 0.3, 0.7)
#: the share of each series' observed values hidden in each round (one per round, in turn): from
#: dense to sparse conditioning, since a user may ask to fill in any share of a series
HIDE_FRACTIONS = (0.1, 0.3, 0.5)
#: candidate calibrated tails: degrees of freedom of the Student-t that replaces the observation
#: model's standard family (``inf``: the family itself, always tried first and kept on ties)
TAIL_GRID = (math.inf, 30.0, 12.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0)
#: posterior samples per held-out value behind the choice of the tails (the first ones)
TAIL_SEARCH_SAMPLES = 4
#: a Student-t's factors tried in a cell, relative to the best of the observation model's family:
#: the steps of SCALE_GRID from about 0.4 to 1.2 times it (heavier tails need a smaller scale)
TAIL_RATIOS = (SCALE_GRID[1] / SCALE_GRID[0]) ** torch.arange(-26, 6, dtype=torch.float64)
#: candidate level multipliers of ``calibrate_spread(..., structure=)``: the range of
#: :data:`SCALE_GRID` four times finer (ratio about 1.009), since a multiplier pooled over the
#: channels and cells is precise enough to tell its neighbours apart
LEVEL_GRID = torch.logspace(math.log10(0.25), math.log10(8.0), 385, dtype=torch.float64)
#: candidate multipliers of :func:`calibrate_level`, on top of the fitted level:
#: :data:`LEVEL_GRID` shifted by less than half a step so that 1 lies on it, so that held-out
#: series whose best level is the fitted one leave it unchanged (no drift of a factor off the
#: grid when a model is recalibrated again)
RELEVEL_GRID = LEVEL_GRID / LEVEL_GRID[LEVEL_GRID.log().abs().argmin()]
#: the level multipliers are searched coarse to fine: every 16th point of :data:`LEVEL_GRID`
#: (25 points, ratio 1.155), then every 4th (the points of :data:`SCALE_GRID`) and every point
#: between the best one's neighbours (7 each; a pooled coverage loss is smooth in the
#: multiplier): 39 evaluations instead of the whole grid's 385
LEVEL_STRIDES = (16, 4)
#: the structure series' factors (``calibrate_spread(..., structure=)``: the channels', the
#: gap cells' and the tails' ratios) are searched coarse to fine too: every 4th point of
#: :data:`SCALE_GRID` (or of :data:`TAIL_RATIOS`), then every point between the best one's
#: neighbours; their level is fitted afterwards anyway
STRUCTURE_STRIDES = (4,)
#: at most this many series of ``calibrate_spread(..., structure=)`` (a random subset) fit the
#: structure of the factors, so that the calibration time stays bounded on large data
MAX_STRUCTURE_SERIES = 256
#: at most this many of the validation series (a random subset) fit the level of
#: ``calibrate_spread(..., structure=)`` (and choose its density shrinkage) and the level of
#: :func:`calibrate_level`: the level is a few pooled multipliers, whose noise from the choice
#: of the series is small with hundreds of them, while the cost (:data:`LEVEL_ROUNDS` hiding
#: rounds, every posterior sample, the density gate's fits) grows with every series: 640
#: validation series of the PhysioNet 2012 archive took about 45 minutes (docs/results/speed.md)
MAX_LEVEL_SERIES = 256
#: at most this many hiding rounds, and forecast rounds, of the series of
#: ``calibrate_spread(..., structure=)``: each kind of round stops earlier, after
#: :data:`STRUCTURE_MIN_ROUNDS`, once every channel has :data:`STRUCTURE_VALUES` held-out
#: values of it (sparse series need all six, dense ones stop at three)
STRUCTURE_ROUNDS = 6
#: at least this many hiding rounds, and forecast rounds, of the structure series: each hiding
#: fraction of :data:`HIDE_FRACTIONS` and each split of :data:`FORECAST_FRACTIONS` once
STRUCTURE_MIN_ROUNDS = 3
#: the budget of held-out values per channel and kind of round (hidden, forecast) of the
#: structure series: the rounds run until every channel has this many (within
#: :data:`STRUCTURE_MIN_ROUNDS` to :data:`STRUCTURE_ROUNDS`), and a random subset of at most
#: this many per channel and kind then fits the factors, so that the fit's cost, which grows
#: with the number of values, stays bounded on dense data. 4000 values are 1000 per gap
#: bucket of a channel and kind (:data:`~latentode.nn.spread.N_GAP_BUCKETS` = 4): the binomial
#: standard error of a cell's 50 % coverage is then 1.6 points
STRUCTURE_VALUES = 4000
#: posterior samples per structure series (the validation series keep ``n_samples``): the
#: factors' cost grows with the samples, and with hundreds of series the sampling noise of a
#: few trajectories per value averages out (the tail search uses the first
#: :data:`TAIL_SEARCH_SAMPLES` anyway); the level on the validation series, fitted with all of
#: their samples, absorbs what fewer samples shift in common
STRUCTURE_SAMPLES = 16
#: which series fit the structure of the factors in the estimators' calibration
#: (``calibration_structure``): the validation series (everything on them), or the training
#: series (``calibrate_spread(..., structure=)``, the level on the validation series)
CALIBRATION_STRUCTURES = ("validation", "training")
#: hiding rounds of the validation series that fit the level of ``calibrate_spread(...,
#: structure=)`` (``level_rounds``; their forecast rounds stay ``rounds``): with the structure
#: fixed, the random choice of the hidden values alone moved the level of 15 validation series
#: by 2 to 5 % in six rounds (standard deviation over draws, osc-sparse and the oscillators of
#: the calibration suite), against 6 to 14 % for the choice of the series (a bootstrap over
#: them); 24 rounds halve the first for a few seconds of predictions of a few dozen series. The
#: forecasts' splits are fixed (:data:`FORECAST_FRACTIONS`): more rounds of them only redraw the
#: posterior samples
LEVEL_ROUNDS = 24
#: candidate slopes ``b`` of the density factor ``(n / n_ref) ** -b`` (``by_density``): -0.5 to
#: 1.5 in steps of 0.05, searched coarse to fine (every 4th, then the steps between the best
#: one's neighbours); 0 (no density factor) is kept unless another fits better than chance
DENSITY_GRID = torch.arange(-10, 31, dtype=torch.float64) * 0.05
#: the coarse step of the search of :data:`DENSITY_GRID` (every 4th slope, 0.2 apart)
DENSITY_STRIDE = 4
#: the splits of each gap cell by the number of conditioning observations (its quantiles per
#: channel) on which the density factors' slope is scored
DENSITY_BUCKETS = 3
#: what :func:`calibrate_spread`'s ``by_density`` accepts: no density factor, the slope the
#: structure fits, or that slope shrunk by the validation series' choice of
#: :data:`~latentode.nn.spread.DENSITY_SHRINKAGES`
DENSITY_OPTIONS = (False, True, "validated")


class _HeldOut(NamedTuple):
    """Held-out values of one batch and round, and the uncalibrated predictive at them."""

    resid: torch.Tensor  # (n,) value minus the average of the decoded samples
    dev: torch.Tensor  # (S, n) decoded samples minus their average
    sigma: torch.Tensor  # (n,) observation scale
    channel: torch.Tensor  # (n,) long
    gap: torch.Tensor  # (n,) model time to the nearest conditioning observation of the channel
    beyond: torch.Tensor  # (n,) bool: before / after the conditioning window (a forecast)
    count: torch.Tensor  # (n,) conditioning observations of the value's series and channel


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
    gap, beyond = observation_gaps(cond, query.times, observed_window=True)
    count = observation_counts(cond).to(hidden.device).double().unsqueeze(1)  # (B, 1, C)
    return _HeldOut(
        resid=(query.values.double() - center)[hidden],
        dev=(mean - center)[:, hidden].to(pred.mean.dtype),
        sigma=pred.obs_std.double().expand_as(hidden)[hidden],
        channel=torch.nonzero(hidden)[:, 2],
        gap=gap.double()[hidden],
        beyond=beyond.unsqueeze(-1).expand_as(hidden)[hidden],
        count=count.expand(hidden.shape)[hidden],
    )


Grouping = tuple[list[torch.Tensor], int]
"""A grouping of held-out values: one ``(n,)`` long tensor of group indices per record, and
the number of groups."""


#: at most about this many elements (candidates x samples x values) per call of the CDF in
#: :func:`_losses`: the candidates of a record are evaluated in chunks that fit
_CHUNK_ELEMENTS = 1 << 21


class _Part(NamedTuple):
    """The held-out values of one record that share their calibrated tails: what
    :func:`_losses` evaluates in one call of the observation model's CDF (or log-density)."""

    index: torch.Tensor | None  # (m,) their positions in the record (None: all of them)
    resid: torch.Tensor  # (m,)
    dev: torch.Tensor  # (S, m) float64
    sigma: torch.Tensor  # (m,)
    channel: torch.Tensor  # (m,)
    df: torch.Tensor | None  # (m,) their common degrees of freedom (None: the family's)
    base: torch.Tensor | None  # (m,) their base factors (None: none)


def _tail_parts(rec: _HeldOut, tails: torch.Tensor | None, max_samples: int | None,
                base: torch.Tensor | None) -> list[_Part]:
    """``rec``'s values grouped by their calibrated tails ``tails`` (``(n,)``, None: the
    observation model's family everywhere), with the first ``max_samples`` posterior samples.

    :func:`_losses` calls the CDF once per group (and chunk of candidates): over a record of
    mixed tails, one call would evaluate the family everywhere and then each Student-t on
    masked copies of its columns. Every function is elementwise per value (the mean over the
    samples per value), so the values are those of the whole record."""
    dev = rec.dev.double()[:max_samples]
    if tails is None:
        return [_Part(None, rec.resid, dev, rec.sigma, rec.channel, None, base)]
    values = tails.unique()
    if len(values) <= 1:  # one kind of tails (or no value)
        df = tails if len(values) and not math.isinf(float(values[0])) else None
        return [_Part(None, rec.resid, dev, rec.sigma, rec.channel, df, base)]
    parts = []
    for value in values.tolist():
        index = torch.nonzero(tails == value).squeeze(1)
        parts.append(_Part(index, rec.resid[index], dev[:, index], rec.sigma[index],
                           rec.channel[index], None if math.isinf(value) else tails[index],
                           None if base is None else base[index]))
    return parts


def _value_slices(
    records: list[_HeldOut], groupings: list[Grouping], tails: list[torch.Tensor] | None,
    base: list[torch.Tensor] | None, max_samples: int | None,
) -> Iterator[tuple[_HeldOut, torch.Tensor | None, torch.Tensor | None, list[torch.Tensor]]]:
    """Each record of ``records`` (with its tails, base factors and group indices of each
    grouping, as :func:`_losses` takes them), in consecutive slices of its values of at most
    about :data:`_CHUNK_ELEMENTS` elements (values times the samples used; a record of no more
    is one slice). :func:`_losses` then holds no temporaries larger than that: on the merged
    records of hundreds of validation series (millions of values), one candidate over a whole
    record made float64 temporaries of hundreds of megabytes, 2.5 times slower per value than
    slices (docs/results/speed.md); every function is elementwise per value and the sums add
    in the same order, so the losses are the same."""
    for i, rec in enumerate(records):
        n_samples = rec.dev.shape[0] if max_samples is None else min(max_samples,
                                                                     rec.dev.shape[0])
        n_values = len(rec.resid)
        span = max(1, _CHUNK_ELEMENTS // max(1, n_samples))
        rec_tails = None if tails is None else tails[i]
        rec_base = None if base is None else base[i]
        ids = [groups[i] for groups, _ in groupings]
        if n_values <= span:
            yield rec, rec_tails, rec_base, ids
            continue
        for v0 in range(0, n_values, span):
            cut = slice(v0, v0 + span)
            yield (_HeldOut(*(field[..., cut] for field in rec)),
                   None if rec_tails is None else rec_tails[cut],
                   None if rec_base is None else rec_base[cut], [g[cut] for g in ids])


def _losses(
    records: list[_HeldOut], groupings: list[Grouping], criterion: str, obs: ObservationModel,
    tails: list[torch.Tensor] | None = None, grid: torch.Tensor | None = None,
    max_samples: int | None = None, base: list[torch.Tensor] | None = None,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per group of each grouping, how badly each factor of ``grid`` (default
    :data:`SCALE_GRID`) fits the held-out ``records``.

    ``tails``, one ``(n,)`` tensor per record, gives the calibrated tails of each value (None:
    the observation model's family); ``max_samples`` keeps only the first posterior samples of
    each value (a cheaper, noisier predictive); ``base``, one ``(n,)`` tensor per record, makes
    the factors relative: value ``j`` is scored at ``base[j] * grid``. One pass over the records
    serves every grouping; each record's values are evaluated in groups of equal tails
    (:func:`_tail_parts`) and the candidates in chunks of about :data:`_CHUNK_ELEMENTS`
    elements, one call of the CDF (or log-density) each; coverage is counted by the band of
    levels each value's PIT falls in (whole numbers, the same sums in any order).
    Returns, per grouping, the ``(len(grid), G)`` losses (lower is better: the summed squared
    gaps of the coverage of :data:`COVERAGE_LEVELS`, or minus the summed log density) and the
    ``(G,)`` counts of values.
    """
    device = records[0].resid.device if records else torch.device("cpu")
    grid = (SCALE_GRID if grid is None else grid).to(device)
    levels = torch.tensor(COVERAGE_LEVELS, dtype=torch.float64, device=device)
    half = levels / 2
    n_levels = len(levels)
    width = 1 if criterion == "likelihood" else n_levels
    totals = [torch.zeros(len(grid), width, n, dtype=torch.float64, device=device)
              for _, n in groupings]
    counts = [_counts(grouping, device) for grouping in groupings]
    for rec, rec_tails, rec_base, ids in _value_slices(records, groupings, tails, base,
                                                       max_samples):
        parts = _tail_parts(rec, rec_tails, max_samples, rec_base)
        n_values = len(rec.resid)
        # candidates in chunks: one call of the CDF per chunk and group of tails
        n_samples = parts[0].dev.shape[0]
        step = max(1, _CHUNK_ELEMENTS // max(1, n_samples * n_values))
        for g0 in range(0, len(grid), step):
            rel = grid[g0:g0 + step].unsqueeze(1)  # (P, 1)
            scores = []
            for part in parts:
                a = rel if part.base is None else rel * part.base  # (P, 1) or (P, n)
                z = ((part.resid / a).unsqueeze(1) - part.dev) / part.sigma  # (P, S, n)
                if criterion == "likelihood":
                    score = (torch.logsumexp(obs.calibrated_log_pdf(z, part.channel, part.df),
                                             dim=1)
                             - math.log(n_samples) - torch.log(a * part.sigma))  # (P, n)
                else:  # inside the central interval of level L: |PIT - 1/2| <= L / 2, i.e.
                    # for the levels from the first whose half is >= |PIT - 1/2| (the band)
                    pit = obs.calibrated_cdf(z, part.channel, part.df).mean(1)  # (P, n)
                    score = torch.searchsorted(half, (pit - 0.5).abs())
                scores.append(score)
            if len(parts) == 1:
                score = scores[0]
            else:  # back to the record's order, so that the sums add in the same order
                score = scores[0].new_empty(len(rel), n_values)
                for part, part_score in zip(parts, scores):
                    score.index_copy_(1, part.index, part_score)
            for groups, (_, n), total in zip(ids, groupings, totals):
                if criterion == "likelihood":
                    for p in range(len(rel)):
                        total[g0 + p].index_add_(1, groups, score[p].unsqueeze(0))
                else:  # values inside per candidate, level and group: counts of the bands,
                    # cumulated (whole numbers: the same sums in any order)
                    at = (torch.arange(len(rel), device=device).unsqueeze(1) * n
                          + groups) * (n_levels + 1) + score
                    band = torch.bincount(at.reshape(-1), minlength=len(rel) * n * (n_levels + 1))
                    inside = band.view(len(rel), n, n_levels + 1).cumsum(2)[..., :n_levels]
                    total[g0:g0 + len(rel)] += inside.transpose(1, 2).double()
    out = []
    for total, count in zip(totals, counts):
        if criterion == "likelihood":
            out.append((-total[:, 0], count))
        else:
            coverage = total / count.clamp(min=1.0)  # (G, L, groups)
            out.append((((coverage - levels.view(1, -1, 1)) ** 2).sum(1), count))
    return out


def _counts(grouping: Grouping, device: torch.device | None = None) -> torch.Tensor:
    """The ``(G,)`` numbers of values per group of ``grouping`` (float64; on ``device``, by
    default the groups', the CPU without records): what :func:`_losses` returns beside its
    losses."""
    groups, n = grouping
    if device is None:
        device = groups[0].device if groups else torch.device("cpu")
    count = torch.zeros(n, dtype=torch.float64, device=device)
    for g in groups:
        count += torch.bincount(g, minlength=n).double()
    return count


def _best_factors(
    records: list[_HeldOut], groupings: list[Grouping], criterion: str, obs: ObservationModel,
    tails: list[torch.Tensor] | None = None, grid: torch.Tensor | None = None,
    max_samples: int | None = None, base: list[torch.Tensor] | None = None,
    strides: Sequence[int] = (),
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per group of each grouping, the factor of ``grid`` (default :data:`SCALE_GRID`) that best
    fits the held-out values (arguments as :func:`_losses`): per grouping, the ``(G,)`` best
    factors, counts of values and losses of the best factors.

    ``strides`` (decreasing; empty: every point of ``grid``) searches a geometric ``grid``
    coarse to fine: every ``strides[0]``-th point, then around the best one the points of the
    next stride (and finally every point) between its neighbours of the stride before, within
    the grid; the first of equal losses is kept, as over the whole grid. A loss with one
    minimum between coarse neighbours gives the whole grid's answer, at a fraction of the cost.
    """
    grid = SCALE_GRID if grid is None else grid
    if not strides:
        out = []
        for loss, count in _losses(records, groupings, criterion, obs, tails, grid, max_samples,
                                   base):
            best = loss.argmin(0)
            out.append((grid.to(loss.device)[best], count, loss.gather(0, best.unsqueeze(0))[0]))
        return out
    coarse_at = torch.arange(0, len(grid), strides[0])
    coarse = _losses(records, groupings, criterion, obs, tails, grid[coarse_at], max_samples,
                     base)
    step = float(grid[1] / grid[0])
    out = []
    for (groups, n), (loss, count) in zip(groupings, coarse):
        device = loss.device
        pick = coarse_at.to(device)[loss.argmin(0)]  # (G,) index into grid
        best = loss.min(0).values
        for wide, fine in zip(strides, (*strides[1:], 1)):
            # offsets of the finer points between the coarse neighbours of the best one
            offsets = torch.arange(1 - wide // fine, wide // fine, device=device) * fine
            at_best = grid.to(device)[pick]
            rel_base = [at_best[g] if base is None else b * at_best[g]
                        for b, g in zip(base or groups, groups)]
            ratios = step ** offsets.double()
            [(loss, _)] = _losses(records, [(groups, n)], criterion, obs, tails, ratios,
                                  max_samples, rel_base)  # (len(offsets), G)
            index = pick.unsqueeze(0) + offsets.unsqueeze(1)
            loss = torch.where((index >= 0) & (index < len(grid)), loss,
                               torch.full_like(loss, math.inf))
            # the first of equal losses (the lowest index), as argmin over the whole grid
            pick = index.gather(0, loss.argmin(0, keepdim=True))[0]
            best = loss.min(0).values
        out.append((grid.to(device)[pick], count, best))
    return out


def _fit_tails(
    records: list[_HeldOut], cells: Grouping, n_kinds: int, n_ch: int, criterion: str,
    obs: ObservationModel, min_values: int, min_tail_values: int, strides: Sequence[int] = (),
) -> torch.Tensor:
    """The ``(n_kinds * C,)`` calibrated tails of :func:`_fit_gap_spread` (``inf``: none).

    ``cells`` groups the held-out values by (kind, bucket, channel) cell. For each candidate of
    :data:`TAIL_GRID`, every cell with ``min_values`` values or more takes its best factor (the
    observation model's family: of :data:`SCALE_GRID`; a Student-t: that factor times one of
    :data:`TAIL_RATIOS`, on the same grid), with the first :data:`TAIL_SEARCH_SAMPLES`
    posterior samples of each value (a cheaper predictive, good enough to rank the tails; the
    factors are fitted afterwards with all of them); the loss of a kind and channel is the sum
    of its cells' losses, weighted by their counts for the coverage criterion: a Student-t must
    fit the values *given* their cells' widths (errors of different widths pooled look
    heavy-tailed, which the cells already account for). A kind and channel with at least
    ``min_tail_values`` values takes the candidate of least loss: ``inf`` (the observation
    model's family) unless a Student-t beats it by more than chance gives a perfectly calibrated
    predictive (coverage: the sum over its cells of ``sum_L L (1 - L)``, the expected count-
    weighted squared coverage gap of uniform probability integral transforms; likelihood: 2
    nats per cell). ``strides``: the factors are searched coarse to fine (:func:`_best_factors`).
    """
    n_cells = n_kinds * N_GAP_BUCKETS
    idx = torch.arange(n_cells * n_ch)  # cell index * C + channel -> kind * C + channel
    to_group = idx // (N_GAP_BUCKETS * n_ch) * n_ch + idx % n_ch

    def per_group(values: torch.Tensor) -> torch.Tensor:
        """Sum the ``(n_cells * C,)`` per-cell ``values`` over each kind and channel."""
        out = torch.zeros(n_kinds * n_ch, dtype=values.dtype, device=values.device)
        return out.index_add_(0, to_group.to(values.device), values)

    def group_loss(count: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """The loss of each kind and channel: its cells' with ``min_values`` values or more."""
        used = count >= min_values
        weight = torch.where(used, count if criterion == "coverage" else torch.ones_like(count),
                             torch.zeros_like(count))
        return per_group(weight * loss)

    # the observation model's family (TAIL_GRID[0], inf), on the whole grid
    [(factor, count, loss)] = _best_factors(records, [cells], criterion, obs,
                                            max_samples=TAIL_SEARCH_SAMPLES, strides=strides)
    family_loss = group_loss(count, loss)
    best = torch.full_like(family_loss, math.inf)
    eligible = per_group(count) >= min_tail_values
    if not bool(eligible.any()):
        return best
    # the margin a tail must win by: the loss a perfectly calibrated predictive has by chance
    # (its expected squared coverage gap at level L is L (1 - L) / n per cell, times n), or 2
    # nats per cell for the likelihood
    floor = sum(lv * (1.0 - lv) for lv in COVERAGE_LEVELS) if criterion == "coverage" else 2.0
    margin = per_group((count >= min_values).to(loss.dtype)) * floor
    base = [factor[group] for group in cells[0]]
    best_loss = family_loss
    for df in TAIL_GRID[1:]:  # a Student-t: factors from TAIL_RATIOS times the family's best
        tails = [torch.full_like(r.resid, df) for r in records]
        [(_, count, loss)] = _best_factors(records, [cells], criterion, obs, tails,
                                           TAIL_RATIOS, TAIL_SEARCH_SAMPLES, base, strides)
        df_loss = group_loss(count, loss)
        better = eligible & (df_loss < best_loss) & (df_loss < family_loss - margin)
        best = torch.where(better, torch.full_like(best, df), best)
        best_loss = torch.where(better, df_loss, best_loss)
    return best


def _fit_gap_spread(
    spread: GapSpread, records: list[_HeldOut], channel_scale: torch.Tensor, criterion: str,
    obs: ObservationModel, min_values: int, min_tail_values: int | None,
    strides: Sequence[int] = (), by_density: bool = False,
) -> None:
    """Fit ``spread``'s edges, tails and factors (relative to ``channel_scale``) on ``records``.

    Edges: per kind, the quantiles of the finite gaps at ``j / N_GAP_BUCKETS``. Tails (unless
    ``min_tail_values`` is None): :func:`_fit_tails`. With ``by_density``, the density factors
    (:func:`_fit_density`; else none). Factors: a (kind, bucket, channel) cell
    with fewer than ``min_values`` values takes the factor of its kind and channel, and that
    the channel's (relative factor 1) when it has too few as well; each under the tails of its
    kind and channel and on top of the density factor of each value. ``strides``: the factors
    are searched coarse to fine (:func:`_best_factors`).
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
    cells = ([spread.cells(r.gap, r.beyond) * n_ch + r.channel for r in records],
             spread.n_cells * n_ch)
    tail = torch.full((n_kinds * n_ch,), math.inf, dtype=torch.float64,
                      device=channel_scale.device)
    if min_tail_values is not None and records:
        tail = _fit_tails(records, cells, n_kinds, n_ch, criterion, obs, min_values,
                          min_tail_values, strides)
    spread.tail_df.copy_(tail.view(n_kinds, n_ch).to(spread.tail_df.dtype))
    tails = ([spread.tails(r.gap, r.beyond, r.channel).double() for r in records]
             if spread.has_tails() else None)
    spread.density_slope.zero_()
    spread.density_ref.fill_(1.0)
    spread.density_shrink.fill_(1.0)
    spread.density_losses.zero_()
    if by_density and records:
        _fit_density(spread, records, cells, criterion, obs, min_values, tails, strides)
    _fit_cell_factors(spread, records, channel_scale, criterion, obs, min_values, strides)


def _fit_cell_factors(
    spread: GapSpread, records: list[_HeldOut], channel_scale: torch.Tensor, criterion: str,
    obs: ObservationModel, min_values: int, strides: Sequence[int] = (),
) -> None:
    """Fit ``spread``'s factors (relative to ``channel_scale``) on ``records`` under its edges,
    tails and density factors, as :func:`_fit_gap_spread` describes."""
    n_ch = channel_scale.shape[0]
    n_kinds, k = len(GAP_KINDS), N_GAP_BUCKETS
    n_cells = spread.n_cells
    kinds = ([r.beyond.long() * n_ch + r.channel for r in records], n_kinds * n_ch)
    cells = ([spread.cells(r.gap, r.beyond) * n_ch + r.channel for r in records],
             n_cells * n_ch)
    tails = ([spread.tails(r.gap, r.beyond, r.channel).double() for r in records]
             if spread.has_tails() else None)
    density = _densities(spread, records)
    # the factors of the kinds and channels serve only the cells with too few values
    count_cell = _counts(cells)
    if bool((count_cell >= min_values).all()):
        [(best_cell, count_cell, _)] = _best_factors(records, [cells], criterion, obs, tails,
                                                     base=density, strides=strides)
        best_kind = torch.ones(n_kinds * n_ch, dtype=best_cell.dtype, device=best_cell.device)
        count_kind = torch.zeros_like(best_kind)  # unused: every cell has enough values
    else:
        [(best_cell, count_cell, _), (best_kind, count_kind, _)] = _best_factors(
            records, [cells, kinds], criterion, obs, tails, base=density, strides=strides)
    scale = channel_scale.to(best_cell.dtype)
    kind_rel = torch.where((count_kind >= min_values).view(n_kinds, n_ch),
                           best_kind.view(n_kinds, n_ch) / scale,
                           torch.ones_like(scale)).view(n_kinds, 1, n_ch)
    cell_rel = (best_cell / scale.repeat(n_cells)).view(n_kinds, k, n_ch)
    enough = (count_cell >= min_values).view(n_kinds, k, n_ch)
    spread.factors.copy_(torch.where(enough, cell_rel, kind_rel).to(spread.factors.dtype))


def _channel_edges(x: torch.Tensor, channel: torch.Tensor, n_ch: int, k: int) -> torch.Tensor:
    """``(C, k - 1)`` inner quantiles at ``j / k`` of the values ``x`` of each channel (the
    ``(n,)`` long ``channel``; 0 for a channel without values)."""
    probs = torch.arange(1, k, dtype=torch.float64, device=x.device) / k
    return torch.stack([torch.quantile(x[channel == c], probs) if bool((channel == c).any())
                        else torch.zeros(k - 1, dtype=torch.float64, device=x.device)
                        for c in range(n_ch)])


def _densities(spread: GapSpread | None, records: list[_HeldOut]) -> list[torch.Tensor] | None:
    """The density factor of each held-out value of ``records`` (one ``(n,)`` tensor per
    record), or None when ``spread`` has none."""
    if spread is None or not spread.has_density():
        return None
    return [spread.density(r.count, r.beyond, r.channel).double() for r in records]


def _fit_density(
    spread: GapSpread, records: list[_HeldOut], cells: Grouping, criterion: str,
    obs: ObservationModel, min_values: int, tails: list[torch.Tensor] | None,
    strides: Sequence[int] = (),
) -> None:
    """Fit ``spread``'s density factors (``density_ref``, ``density_slope``) on ``records``.

    The errors of a value the model did not condition on grow with the sparsity of what it
    conditioned on, beyond its gap to the nearest observation (a posterior pinned by fewer
    observations): the same gap between 90 % of a series' values and between 30 % of them is
    not the same query. So each value's factor is multiplied by ``(n / n_ref) ** -b``, ``n`` the
    number of observations of its channel in its conditioning series (``_HeldOut.count``),
    ``n_ref`` the channel's geometric mean of ``n`` over ``records`` and ``b`` one slope per
    kind of query from :data:`DENSITY_GRID`.

    A cell's pooled coverage cannot see the slope (intervals too wide where ``n`` is large and
    too narrow where it is small pool to nominal), so each slope is scored on the values of
    each (kind, bucket, channel) cell of ``cells`` split by :data:`DENSITY_BUCKETS` quantiles
    of ``n / n_ref`` of the channel: every cell takes its best factor on top of the density
    factors (with the first :data:`TAIL_SEARCH_SAMPLES` posterior samples, as
    :func:`_fit_tails`), and the loss of a kind is that of its cells' splits with
    ``min_values`` values or more, at their cell's factor (count-weighted for the coverage
    criterion). A kind keeps slope 0 unless another beats it by more than twice the loss a
    perfectly calibrated predictive has by chance on one split (the price of one free
    parameter; the likelihood: 2 nats).
    """
    n_ch = spread.density_ref.shape[0]
    n_kinds = len(GAP_KINDS)
    channel = torch.cat([r.channel for r in records])
    log_count = torch.cat([r.count for r in records]).clamp(min=1.0).log()
    device = log_count.device
    total = torch.zeros(n_ch, dtype=torch.float64, device=device)
    total.index_add_(0, channel, log_count)
    seen = torch.bincount(channel, minlength=n_ch).double()
    ref = torch.where(seen > 0, (total / seen.clamp(min=1.0)).exp(), torch.ones_like(total))
    spread.density_ref.copy_(ref.to(spread.density_ref.dtype))
    log_rel = [r.count.clamp(min=1.0).log() - ref.log()[r.channel] for r in records]
    # the splits of the cells: quantiles of log(n / n_ref) per channel
    k = DENSITY_BUCKETS
    edges = _channel_edges(torch.cat(log_rel), channel, n_ch, k)
    splits = ([g * k + (x.unsqueeze(-1) > edges[r.channel]).sum(-1)
               for g, x, r in zip(cells[0], log_rel, records)], cells[1] * k)
    split_kind = torch.arange(splits[1], device=device) // (k * N_GAP_BUCKETS * n_ch)
    kinds = [r.beyond.long() for r in records]
    one = torch.ones(1, dtype=torch.float64, device=device)

    def kind_losses(slope: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n_kinds,)`` losses of the per-kind ``slope``, and numbers of splits used."""
        slope = slope.to(device)
        base = [torch.exp(-slope[kd] * x) for kd, x in zip(kinds, log_rel)]
        [(factor, _, _)] = _best_factors(records, [cells], criterion, obs, tails,
                                         max_samples=TAIL_SEARCH_SAMPLES, base=base,
                                         strides=strides)
        at_factor = [b * factor[g] for b, g in zip(base, cells[0])]
        [(loss, count)] = _losses(records, [splits], criterion, obs, tails, one,
                                  TAIL_SEARCH_SAMPLES, at_factor)
        used = count >= min_values
        weight = torch.where(used, count if criterion == "coverage" else torch.ones_like(count),
                             torch.zeros_like(count))
        out = torch.zeros(n_kinds, dtype=torch.float64, device=device)
        n_used = torch.zeros(n_kinds, dtype=torch.float64, device=device)
        return (out.index_add_(0, split_kind, weight * loss[0]),
                n_used.index_add_(0, split_kind, used.double()))

    zero_loss, n_used = kind_losses(torch.zeros(n_kinds, dtype=torch.float64))
    # one free parameter per kind: the margin is twice the loss one split of a perfectly
    # calibrated predictive has by chance (2 nats for the likelihood)
    floor = sum(lv * (1.0 - lv) for lv in COVERAGE_LEVELS) if criterion == "coverage" else 1.0
    margin = torch.where(n_used > 0, 2.0 * floor, math.inf)
    best_loss = zero_loss.clone()
    best = torch.zeros(n_kinds, dtype=torch.float64, device=device)
    tried: set[float] = set()

    def consider(candidates: torch.Tensor) -> None:
        """Score each slope of ``candidates`` for every kind; keep the better ones."""
        nonlocal best_loss, best
        for b in candidates.tolist():
            if b == 0.0 or b in tried:
                continue
            tried.add(b)
            loss = kind_losses(torch.full((n_kinds,), b, dtype=torch.float64))[0]
            better = (loss < best_loss) & (loss < zero_loss - margin)
            best = torch.where(better, torch.full_like(best, b), best)
            best_loss = torch.where(better, loss, best_loss)

    stride = DENSITY_STRIDE
    consider(DENSITY_GRID[::stride])
    for kind_best in best.unique().tolist():  # the steps between the best one's neighbours
        at = int(torch.argmin((DENSITY_GRID - kind_best).abs()))
        consider(DENSITY_GRID[max(at - stride + 1, 0):at + stride])
    spread.density_slope.copy_(best.to(spread.density_slope.dtype))


def _held_out_rounds(
    model: nn.Module, batches: list[Batch], kinds: Sequence[str], fractions: tuple[float, ...],
    rounds: int, n_samples: int, forecast_split: float | None,
    generator: torch.Generator | None, budget: int | None = None, min_rounds: int = 1,
    hidden_rounds: int | None = None, tick: Callable[[int], None] | None = None,
) -> tuple[list[_HeldOut], list[_HeldOut]]:
    """The held-out values of ``batches`` in ``rounds`` passes of each of ``kinds`` in turn
    (``"hidden"``: the fractions of :func:`calibrate_spread`, in ``hidden_rounds`` passes when
    given; ``"forecast"``: its splits), and the uncalibrated predictive at them: the hidden and
    the forecast rounds' records.

    With a ``budget``, the passes of a kind stop after ``min_rounds`` or more once every
    channel with an observed value in ``batches`` has ``budget`` held-out values of that kind.
    ``tick(n)`` (optional) is told of every ``n`` batches predicted, or skipped by that stop.
    """
    hidden_rec: list[_HeldOut] = []
    forecast_rec: list[_HeldOut] = []
    observed = None
    if budget is not None and batches:
        observed = sum(b.mask.sum((0, 1)) for b in batches) > 0  # (C,)
    for kind in kinds:
        have = None if observed is None else torch.zeros(observed.shape, dtype=torch.long,
                                                          device=observed.device)
        n_rounds = rounds if kind != "hidden" or hidden_rounds is None else hidden_rounds
        for r in range(int(n_rounds)):
            if (have is not None and r >= min_rounds
                    and bool((have[observed] >= budget).all())):
                if tick is not None:
                    tick((int(n_rounds) - r) * len(batches))
                break
            split = (forecast_split if forecast_split is not None
                     else FORECAST_FRACTIONS[r % len(FORECAST_FRACTIONS)])
            for batch in batches:
                if kind == "hidden":
                    cond = drop_observations(batch, fractions[r % len(fractions)], generator,
                                             keep_first=True)
                    rec = _held_out(model, cond, batch, (batch.mask - cond.mask) > 0,
                                    n_samples, generator)
                else:
                    cond, query = split_forecast(batch, split)
                    rec = _held_out(model, cond, query, query.mask > 0, n_samples, generator)
                if rec is not None:
                    (hidden_rec if kind == "hidden" else forecast_rec).append(rec)
                    if have is not None:
                        have += torch.bincount(rec.channel, minlength=len(have)).to(have.device)
                if tick is not None:
                    tick(1)
    return hidden_rec, forecast_rec


def _cap_values(records: list[_HeldOut], n_ch: int, cap: int,
                generator: torch.Generator | None) -> list[_HeldOut]:
    """At most ``cap`` held-out values per channel of ``records``: a uniformly random subset
    (drawn from ``generator``) of the channels that have more, the others whole."""
    if not records:
        return records
    channel = torch.cat([r.channel for r in records])
    counts = torch.bincount(channel, minlength=n_ch)
    if not bool((counts > cap).any()):
        return records
    where = generator.device if generator is not None else "cpu"
    key = torch.rand(len(channel), generator=generator, device=where,
                     dtype=torch.float64).to(channel.device)
    # rank of each value within its channel, in the order of its random key
    order = torch.argsort(key)
    order = order[torch.argsort(channel[order], stable=True)]
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - start[channel[order]]
    keep = (rank < cap).split([len(r.channel) for r in records])
    return [_HeldOut(r.resid[k], r.dev[:, k], r.sigma[k], r.channel[k], r.gap[k], r.beyond[k],
                     r.count[k])
            for r, k in zip(records, keep) if bool(k.any())]


def _fit_factors(
    model: nn.Module, spread: GapSpread | None, hidden_rec: list[_HeldOut],
    forecast_rec: list[_HeldOut], forecast_split: float | None, criterion: str,
    obs: ObservationModel, min_values: int, min_tail_values: int | None,
    strides: Sequence[int] = (), by_density: bool = False,
) -> torch.Tensor:
    """Fit ``model.spread_scale`` on the records of the primary kind (the hidden values, or
    with ``forecast_split`` the forecasts), then ``spread`` (when given; else the model's gap
    spread is reset) on all of them (:func:`_fit_gap_spread`, with its density factors when
    ``by_density``); ``strides``: every factor is searched coarse to fine
    (:func:`_best_factors`). Returns the channels' factors at full precision (the gap
    factors are relative to them)."""
    n_ch = model.spread_scale.shape[0]
    primary = hidden_rec if forecast_split is None else forecast_rec
    [(best, count, _)] = _best_factors(primary, [([r.channel for r in primary], n_ch)],
                                       criterion, obs, strides=strides)
    scale = torch.where(count >= min_values, best, torch.ones_like(best))
    model.spread_scale.copy_(scale.to(model.spread_scale.dtype))
    if spread is not None:
        _fit_gap_spread(spread, hidden_rec + forecast_rec, scale, criterion, obs, min_values,
                        min_tail_values, strides, by_density)
    elif hasattr(model, "gap_spread"):
        model.gap_spread.reset()
    return scale


def _merged(records: list[_HeldOut]) -> list[_HeldOut]:
    """``records`` (of equal numbers of samples) as one record: the fits loop over the records
    and the candidate factors, so that their cost on many small records is the number of calls,
    not of values."""
    if len(records) < 2:
        return records
    return [_HeldOut(*(torch.cat([getattr(r, f) for r in records], dim=-1)
                       for f in _HeldOut._fields))]


def _structure_series(batches: Iterable[Batch], max_series: int,
                      generator: torch.Generator | None, device: torch.device) -> list[Batch]:
    """At most ``max_series`` series of ``batches`` (all of them when there are no more; else a
    uniformly random subset drawn from ``generator``, in their order), moved to ``device``, in
    full batches of the largest batch size of ``batches`` (the picked rows of many batches
    would otherwise make as many small batches)."""
    batches = list(batches)
    n = sum(b.batch_size for b in batches)
    keep = torch.ones(n, dtype=torch.bool)
    if n > max_series:
        where = generator.device if generator is not None else "cpu"
        keep.zero_()
        keep[torch.randperm(n, generator=generator, device=where)[:max_series].cpu()] = True
    out, start = [], 0
    for b in batches:
        rows = torch.nonzero(keep[start:start + b.batch_size]).squeeze(1).to(b.times.device)
        start += b.batch_size
        if len(rows):
            out.append(Batch(b.times[rows], b.values[rows], b.mask[rows], b.lengths[rows],
                             **b.per_series(rows)).to(device))
    return rebatch(out, max(b.batch_size for b in batches)) if n > max_series else out


def _level_series(batches: Iterable[Batch], max_series: int,
                  generator: torch.Generator | None, device: torch.device) -> list[Batch]:
    """The series that fit the level: ``batches`` as they are when they hold at most
    ``max_series`` series (nothing drawn, nothing copied: the numbers without a bound); else
    :func:`_structure_series`' random subset of ``max_series`` of them."""
    batches = list(batches)
    if sum(b.batch_size for b in batches) <= max_series:
        return batches
    return _structure_series(batches, max_series, generator, device)


def _calibrated(
    scale: torch.Tensor, spread: GapSpread | None, records: list[_HeldOut],
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """The calibrated factor of each held-out value of ``records`` (one ``(n,)`` tensor per
    record: the ``(C,)`` channel ``scale`` times, with ``spread``, the factor of the value's
    gap cell and its density factor) and its calibrated tails (None: the observation model's
    family)."""
    if spread is None:
        return [scale[r.channel] for r in records], None
    table = spread.factors.double().reshape(spread.n_cells, -1)  # (cells, C)
    base = [scale[r.channel] * table[spread.cells(r.gap, r.beyond), r.channel]
            for r in records]
    tails = ([spread.tails(r.gap, r.beyond, r.channel).double() for r in records]
             if spread.has_tails() else None)
    density = _densities(spread, records)
    if density is not None:
        base = [b * d for b, d in zip(base, density)]
    return base, tails


def _density_loss(
    model: nn.Module, spread: GapSpread, records: list[_HeldOut], criterion: str,
    obs: ObservationModel, min_values: int,
) -> torch.Tensor:
    """``(len(GAP_KINDS),)`` loss of the model's calibration on ``records`` per kind of
    query, as :func:`_fit_density` scores a slope: the values of each kind split by the
    :data:`DENSITY_BUCKETS` quantiles of their count ``n`` per channel (over ``records``),
    each split with ``min_values`` values or more scored by ``criterion`` at the values'
    calibrated factors (count-weighted for the coverage criterion), the splits' losses
    summed. A calibration whose intervals are too wide where ``n`` is large and too narrow
    where it is small loses, even where the kind's pooled coverage is nominal (0 without
    records)."""
    n_kinds, k = len(GAP_KINDS), DENSITY_BUCKETS
    if not records:
        return torch.zeros(n_kinds, dtype=torch.float64, device=spread.density_slope.device)
    n_ch = int(spread.density_ref.shape[0])
    log_counts = [r.count.clamp(min=1.0).log() for r in records]
    edges = _channel_edges(torch.cat(log_counts), torch.cat([r.channel for r in records]),
                           n_ch, k)
    splits = ([r.beyond.long() * k + (x.unsqueeze(-1) > edges[r.channel]).sum(-1)
               for r, x in zip(records, log_counts)], n_kinds * k)
    base, tails = _calibrated(model.spread_scale.double(), spread, records)
    one = torch.ones(1, dtype=torch.float64, device=edges.device)
    [(loss, count)] = _losses(records, [splits], criterion, obs, tails, one, None, base)
    weight = torch.where(count >= min_values,
                         count if criterion == "coverage" else torch.ones_like(count),
                         torch.zeros_like(count))
    return (weight * loss[0]).view(n_kinds, k).sum(1)


def _gate_density(
    model: nn.Module, spread: GapSpread, structure: list[_HeldOut], channel_scale: torch.Tensor,
    records: list[_HeldOut], forecast_split: float | None, criterion: str,
    obs: ObservationModel, min_values: int, strides: Sequence[int] = (),
) -> None:
    """Let the validation series' ``records`` choose, per kind of query, how much of the
    density slope fitted on the ``structure`` records to keep; fit the level with it.

    The structure series (the model's training series) propose the slope, but the model may
    fit its training series better when few of their values are hidden than it predicts an
    unseen series, so their count dependence need not be that of new series. For each
    shrinkage ``s`` of :data:`~latentode.nn.spread.DENSITY_SHRINKAGES`, the slope times ``s``
    gets its own gap factors (:func:`_fit_cell_factors` on ``structure``, relative to
    ``channel_scale``) and level (:func:`_fit_level` on ``records``), and ``records`` score
    it (:func:`_density_loss`); each kind keeps the shrinkage of least loss, the smallest of
    equal ones (the kinds' factors and levels are fitted apart, so the choices are
    independent), and the calibration is that of the chosen slopes. The choice and the losses
    are stored in ``spread.density_shrink`` and ``spread.density_losses``.

    ``spread.factors`` on entry are the gap factors of the whole slope (as
    :func:`_fit_gap_spread` leaves them): shrinkage 1 reuses them, and a mixed choice takes
    each kind's factors from its shrinkage's fit (a kind's factors depend only on its own
    values), so that only the level is fitted again.
    """
    slope = spread.density_slope.clone()
    start = model.spread_scale.clone()
    whole = spread.factors.clone()  # the gap factors of the whole slope
    losses, fits, gap_factors = [], [], []
    for shrink in DENSITY_SHRINKAGES:
        model.spread_scale.copy_(start)
        spread.density_slope.copy_(slope * shrink)
        if shrink == 1.0:
            spread.factors.copy_(whole)
        else:
            _fit_cell_factors(spread, structure, channel_scale, criterion, obs, min_values,
                              strides)
        gap_factors.append(spread.factors.clone())
        _fit_level(model, spread, records, forecast_split, criterion, obs, min_values)
        losses.append(_density_loss(model, spread, records, criterion, obs, min_values))
        fits.append((model.spread_scale.clone(), spread.factors.clone()))
    table = torch.stack(losses)  # (shrinkages, kinds)
    pick = table.argmin(0)  # the first of equal losses: the smaller shrinkage
    choice = torch.tensor(DENSITY_SHRINKAGES, dtype=slope.dtype, device=slope.device)[
        pick.to(slope.device)]
    spread.density_slope.copy_(slope * choice)
    if bool((pick == pick[0]).all()):  # one shrinkage for every kind: fitted above
        scale, factors = fits[int(pick[0])]
        model.spread_scale.copy_(scale)
        spread.factors.copy_(factors)
    else:  # each kind's gap factors of its shrinkage, and their level
        model.spread_scale.copy_(start)
        spread.factors.copy_(torch.stack([gap_factors[int(p)][kind]
                                          for kind, p in enumerate(pick.tolist())]))
        _fit_level(model, spread, records, forecast_split, criterion, obs, min_values)
    spread.density_shrink.copy_(choice)
    spread.density_losses.copy_(table.to(spread.density_losses.dtype))


def _fit_level(
    model: nn.Module, spread: GapSpread | None, records: list[_HeldOut],
    forecast_split: float | None, criterion: str, obs: ObservationModel, min_values: int,
    grid: torch.Tensor = LEVEL_GRID,
) -> torch.Tensor:
    """Multiply the fitted factors by pooled level multipliers fitted on ``records``; return
    them, ``(2,)``: of the values inside the conditioning window and of the forecasts.

    Each value is scored at its calibrated factor (``model.spread_scale`` of its channel times,
    with ``spread``, the gap factor of its cell and its density factor, under its calibrated
    tails) times a multiplier
    of ``grid`` (:data:`LEVEL_GRID`, or :data:`RELEVEL_GRID`), chosen by ``criterion`` over
    all the values of a kind (with ``spread``; a kind with fewer than ``min_values`` values
    takes the multiplier of all the values together) or over all the values (without; the
    model then has one factor per channel for every query); 1 with fewer than ``min_values``
    values in all. The channel's factor takes the multiplier of the primary kind (the values
    inside the window, or with ``forecast_split`` the forecasts), and the gap factors of each
    kind the ratio of theirs to it, so that every value the model did not condition on gets
    its kind's multiplier.
    """
    scale_buf = model.spread_scale
    scale = scale_buf.double()
    kinds = len(GAP_KINDS)
    base, tails = _calibrated(scale, spread, records)
    by_kind = ([r.beyond.long() for r in records], kinds)
    pooled = ([torch.zeros_like(r.channel) for r in records], 1)
    # multipliers of ``grid`` on top of ``base``, searched coarse to fine; the pooled one
    # serves only without the gap spread or for a kind with too few values
    count_kind = _counts(by_kind)
    use_pooled = spread is None or bool((count_kind < min_values).any())
    groupings = ([by_kind] if spread is not None else []) + ([pooled] if use_pooled else [])
    fitted = _best_factors(records, groupings, criterion, obs, tails, grid, base=base,
                           strides=LEVEL_STRIDES)
    if spread is not None:
        per_kind, count_kind, _ = fitted[0]
    if use_pooled:
        overall, count, _ = fitted[-1]
    else:
        overall, count = torch.ones_like(count_kind[:1]), count_kind.sum(0, keepdim=True)
    one = torch.where(count >= min_values, overall, torch.ones_like(overall))
    level = (torch.where(count_kind >= min_values, per_kind, one) if spread is not None
             else one.expand(kinds))
    primary = level[0 if forecast_split is None else 1]
    scale_buf.copy_((scale * primary).to(scale_buf.dtype))
    if spread is not None:
        ratio = (level / primary).view(kinds, 1, 1)
        spread.factors.copy_((spread.factors.double() * ratio).to(spread.factors.dtype))
    return level



@torch.no_grad()
def calibrate_spread(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    fraction: float | Sequence[float] = HIDE_FRACTIONS,
    rounds: int = 6,
    n_samples: int = 32,
    min_values: int = 20,
    criterion: str = "coverage",
    generator: torch.Generator | None = None,
    forecast_split: float | None = None,
    by_gap: bool = True,
    by_tail: bool = True,
    min_tail_values: int = 100,
    structure: Iterable[Batch] | None = None,
    max_structure_series: int = MAX_STRUCTURE_SERIES,
    structure_rounds: int = STRUCTURE_ROUNDS,
    structure_samples: int = STRUCTURE_SAMPLES,
    structure_values: int | None = STRUCTURE_VALUES,
    level_rounds: int | None = LEVEL_ROUNDS,
    by_density: bool | str = False,
    max_level_series: int = MAX_LEVEL_SERIES,
    verbose: int = 0,
) -> torch.Tensor:
    """Fit ``model.spread_scale`` per channel on held-out values of ``batches``; return it.

    In each of ``rounds`` passes over ``batches``, a random ``fraction`` of every series'
    observed values is hidden (by default 10 %, 30 % and 50 % in turn, :data:`HIDE_FRACTIONS`:
    the errors of a value depend on how sparse the rest is, beyond its distance to the nearest
    observation, and a user may hide any share), by
    :func:`~latentode.training.objective.drop_observations` with ``keep_first=True`` (the
    first time point with an observed value keeps its values, as in
    :func:`latentode.evaluation.hide_values`, so that the hidden values are values to fill in
    and not backward forecasts that also leave the initial state unobserved); the model
    conditions on the rest and draws ``n_samples`` trajectories at the series' times. The
    default six rounds hide each fraction twice: with a few dozen validation series, the
    random choice of the hidden values alone moved the coverage the factors give by 1.5 to 2.5
    points (standard deviation over draws, 50 % intervals), six rounds about half as much.
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
    The kind of a held-out value is that of the window of the conditioning time points with an
    observed value (:func:`~latentode.nn.spread.observation_gaps` with ``observed_window``): a
    value hidden at the end of a series is a forecast, as it is when a user asks for it.

    With ``by_tail`` too, the factors fix the shape as well as the width: per kind and channel
    with at least ``min_tail_values`` held-out values, the observation model's standard family
    may be replaced by a Student-t of degrees of freedom from :data:`TAIL_GRID`
    (``model.gap_spread.tail_df``, :mod:`latentode.nn.observation.tails`), chosen with the
    factor by the same criterion (the family is kept unless a Student-t fits strictly better;
    the factors of the cells are then fitted under the chosen tails). Errors that are a mix of
    small and large ones (well and badly predicted series) have heavier tails than any
    rescaled Gaussian: one factor then gets the 50 % interval right and the 90 % one too narrow
    or the other way round; a tail gets both. The channel's own factor (``spread_scale``, which
    alone calibrates the values the model conditioned on) keeps the family.

    Parameters
    ----------
    model : LatentODE
        Trained model (any module with ``predict`` and a ``spread_scale`` buffer; its
        ``observation`` model if it has one, else Gaussian noise is assumed; its
        ``gap_spread`` if it has one).
    batches : iterable of Batch
        Held-out series, re-iterable (a list), on the model's device and dtype.
    fraction : float or sequence of float
        Fraction of observed values hidden per round, or one per round in turn (each in
        ``[0, 1)``).
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
    by_tail : bool
        Also fit the calibrated tails of ``model.gap_spread`` (with ``by_gap``, and a model
        with an ``observation`` model, which evaluates them when it predicts); False keeps the
        observation model's family everywhere (as before they existed).
    min_tail_values : int
        Minimum number of held-out values of a kind and channel for its tails to be fitted.
    structure : iterable of Batch, optional
        Series that fit the structure of the factors instead (the model's training series;
        on any device, moved to the model's): everything above (``spread_scale``, the gap
        factors, their edges and tails) is fitted on the held-out values of at most
        ``max_structure_series`` of them (a random subset, drawn first from ``generator``),
        and ``batches`` then fit only the level: per kind of query (inside the conditioning
        window, or a forecast; one for all without the gap factors), one multiplier of
        :data:`LEVEL_GRID` on top of the fitted factors, by the same criterion over all its
        channels and cells (a kind with fewer than ``min_values`` values takes the multiplier
        of all of them). Many training series make the relative factors (channel to channel,
        gap cells, tails) precise; but the model has seen them, so their errors are too small
        by some ratio, which a few pooled multipliers fitted on the validation series measure
        far less noisily than one factor per channel. None (default): ``batches`` fit
        everything.
    max_structure_series : int
        At most this many series of ``structure`` are used (:data:`MAX_STRUCTURE_SERIES`), so
        that the calibration time stays bounded on large data.
    structure_rounds : int
        At most this many hiding rounds, and forecast rounds, of the ``structure`` series
        (:data:`STRUCTURE_ROUNDS`; ``rounds`` stays that of ``batches``).
    structure_samples : int
        Posterior trajectory samples per ``structure`` series (:data:`STRUCTURE_SAMPLES`;
        ``n_samples`` stays that of ``batches``).
    structure_values : int or None
        The budget of held-out values per channel and kind of round (hidden, forecast) of the
        ``structure`` series (:data:`STRUCTURE_VALUES`): the rounds of a kind stop, after
        :data:`STRUCTURE_MIN_ROUNDS` (or ``structure_rounds`` if fewer), once every observed
        channel has this many, and a random subset (from ``generator``) of at most this many
        per channel and kind fits the factors. None: ``structure_rounds`` rounds of each kind,
        every value.
    level_rounds : int or None
        Hiding rounds of ``batches`` when they fit only the level (with ``structure``;
        :data:`LEVEL_ROUNDS`): the level of few validation series moves with the random choice
        of their hidden values, which more rounds average out (their forecast rounds stay
        ``rounds``: fixed splits). None: ``rounds``. Unused without ``structure``.
    by_density : {False, True, "validated"}
        With ``by_gap``, also fit the gap spread's density factors
        (``model.gap_spread.density_slope``): per kind of query, a factor
        ``(n / n_ref) ** -b`` of the number ``n`` of observations of the channel the series
        conditions on, chosen jointly with the gap factors (on ``structure`` when given), so
        that the intervals hold whether a few or most of a series' values are missing (the
        hiding rounds' fractions differ in ``n``). False (default): no density factor (as
        before it existed). ``"validated"``: with ``structure``, ``batches`` then choose per
        kind how much of the structure's slope to keep, none, half or all of it
        (:data:`~latentode.nn.spread.DENSITY_SHRINKAGES`; each with its own gap factors on
        ``structure`` and level on ``batches``), by the loss the slope was fitted with (the
        held-out values of ``batches`` of the kind split by the terciles of ``n`` per
        channel, coverage count-weighted, :func:`_density_loss`), the smaller shrinkage on
        equal losses: the model may fit its training series better when few of their values
        are hidden than it predicts new series, so the training series' count dependence need
        not hold on the validation series; the choice and the losses are in
        ``model.gap_spread.density_shrink`` and ``density_losses``. Without ``structure``,
        ``batches`` fit the slope themselves and ``"validated"`` is True.
    max_level_series : int
        With ``structure``, at most this many series of ``batches`` fit the level (and choose
        the density shrinkage): a random subset drawn from ``generator`` (after the structure
        series' held-out values) only when there are more (:data:`MAX_LEVEL_SERIES`), so that
        the calibration time stays bounded with many validation series; with no more, every
        series, and the numbers are those without a bound. Unused without ``structure``
        (``batches`` then fit everything).
    verbose : int
        0 (default): silent; 1 or more: a progress bar ("calibrating intervals", as the fit's)
        over the series' predicted batches and the fits.

    Returns
    -------
    torch.Tensor
        ``(C,)`` factors, also stored in ``model.spread_scale``.
    """
    fractions = _checked_rounds(fraction, n_samples, criterion, level_rounds)
    if max_structure_series < 1:
        raise ValueError(f"max_structure_series must be >= 1, got {max_structure_series}.")
    if max_level_series < 1:
        raise ValueError(f"max_level_series must be >= 1, got {max_level_series}.")
    if structure_rounds < 1:
        raise ValueError(f"structure_rounds must be >= 1, got {structure_rounds}.")
    if structure_samples < 2:
        raise ValueError(f"structure_samples must be >= 2, got {structure_samples}.")
    if structure_values is not None and structure_values < 1:
        raise ValueError(f"structure_values must be >= 1 or None, got {structure_values}.")
    if isinstance(by_density, str) and by_density != "validated":
        raise ValueError(f"by_density must be one of {DENSITY_OPTIONS}, got {by_density!r}.")
    gate = isinstance(by_density, str)  # "validated"
    density = gate or bool(by_density)
    batches = list(batches)
    scale_buf = model.spread_scale
    n_ch = scale_buf.shape[0]
    by_tail = by_tail and getattr(model, "observation", None) is not None  # it evaluates them
    obs, spread, kinds = _calibration_parts(model, by_gap, forecast_split)
    rounds_of = (kinds, fractions, int(rounds), n_samples, forecast_split, generator)
    structure_rec: tuple[list[_HeldOut], list[_HeldOut]] | None = None
    hidden_rounds = (int(level_rounds) if structure is not None and level_rounds is not None
                     else None)

    def passes(n_batches: int, n_rounds: int, n_hidden: int | None = None) -> int:
        """Batches predicted by ``n_rounds`` rounds of each kind (``n_hidden`` hiding ones)."""
        return sum(n_batches * (n_rounds if kind != "hidden" or n_hidden is None else n_hidden)
                   for kind in kinds)

    fits = 1 if structure is None else 2  # the factors, then (with structure) the level
    bar = progress_bar(fits, "calibrating intervals", "step", int(verbose))
    was_training = model.training
    model.eval()
    try:
        if structure is not None:
            series = _structure_series(structure, int(max_structure_series), generator,
                                       scale_buf.device)
            budget = None if structure_values is None else int(structure_values)
            bar.total += passes(len(series), int(structure_rounds))
            bar.set_description("calibrating intervals (training series)")
            structure_rec = _held_out_rounds(
                model, series, kinds, fractions, int(structure_rounds), int(structure_samples),
                forecast_split, generator, budget, min(STRUCTURE_MIN_ROUNDS,
                                                       int(structure_rounds)), tick=bar.update)
            if budget is not None:
                structure_rec = (_cap_values(structure_rec[0], n_ch, budget, generator),
                                 _cap_values(structure_rec[1], n_ch, budget, generator))
            structure_rec = (_merged(structure_rec[0]), _merged(structure_rec[1]))
            batches = _level_series(batches, int(max_level_series), generator,
                                    scale_buf.device)
        bar.total += passes(len(batches), int(rounds), hidden_rounds)
        bar.set_description("calibrating intervals (validation series)")
        hidden_rec, forecast_rec = _held_out_rounds(
            model, batches, *rounds_of, hidden_rounds=hidden_rounds, tick=bar.update)
    finally:
        model.train(was_training)
    tail_values = int(min_tail_values) if by_tail else None
    bar.set_description("calibrating intervals (fitting the factors)")
    if structure_rec is None:
        _fit_factors(model, spread, hidden_rec, forecast_rec, forecast_split, criterion, obs,
                     min_values, tail_values, by_density=density)
        bar.update(1)
    else:
        scale = _fit_factors(model, spread, *structure_rec, forecast_split, criterion, obs,
                             min_values, tail_values, STRUCTURE_STRIDES, density)
        bar.update(1)
        level_rec = _merged(hidden_rec + forecast_rec)
        bar.set_description("calibrating intervals (fitting the level)")
        if gate and spread is not None and spread.has_density():
            _gate_density(model, spread, structure_rec[0] + structure_rec[1], scale, level_rec,
                          forecast_split, criterion, obs, min_values, STRUCTURE_STRIDES)
        else:
            _fit_level(model, spread, level_rec, forecast_split, criterion, obs, min_values)
        bar.update(1)
    bar.set_description("calibrating intervals")
    bar.close()
    return scale_buf.clone()


def _checked_rounds(fraction: float | Sequence[float], n_samples: int, criterion: str,
                    level_rounds: int | None) -> tuple[float, ...]:
    """Check the arguments of the held-out rounds shared by :func:`calibrate_spread` and
    :func:`calibrate_level`; return the hiding fractions as a tuple."""
    if level_rounds is not None and level_rounds < 1:
        raise ValueError(f"level_rounds must be >= 1 or None, got {level_rounds}.")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2, got {n_samples}.")
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    fractions = ((float(fraction),) if isinstance(fraction, (int, float))
                 else tuple(float(f) for f in fraction))
    if not fractions or not all(0.0 <= f < 1.0 for f in fractions):
        raise ValueError(f"fraction must lie in [0, 1) (or be a non-empty sequence of such), "
                         f"got {fraction!r}.")
    return fractions


def _calibration_parts(
    model: nn.Module, by_gap: bool, forecast_split: float | None,
) -> tuple[ObservationModel, GapSpread | None, list[str]]:
    """The model's observation model (Gaussian noise of scale 1 when it has none), its gap
    spread (with ``by_gap``, when it has one) and the kinds of held-out rounds, the primary
    kind first (the hidden values, or with ``forecast_split`` the forecasts; only it without a
    gap spread)."""
    obs: ObservationModel | None = getattr(model, "observation", None)
    if obs is None:
        obs = GaussianObservation(model.spread_scale.shape[0], obs_std=1.0)
    spread: GapSpread | None = getattr(model, "gap_spread", None) if by_gap else None
    # the rounds of spread_scale first, so that it draws what it drew before gap_spread
    kinds = ["hidden", "forecast"] if forecast_split is None else ["forecast", "hidden"]
    return obs, spread, kinds if spread is not None else kinds[:1]


@torch.no_grad()
def calibrate_level(
    model: nn.Module,
    batches: Iterable[Batch],
    *,
    fraction: float | Sequence[float] = HIDE_FRACTIONS,
    rounds: int = 6,
    n_samples: int = 32,
    min_values: int = 20,
    criterion: str = "coverage",
    generator: torch.Generator | None = None,
    forecast_split: float | None = None,
    by_gap: bool = True,
    level_rounds: int | None = LEVEL_ROUNDS,
    max_level_series: int = MAX_LEVEL_SERIES,
) -> torch.Tensor:
    """Refit only the level of a calibrated model's spread on held-out ``batches``; return the
    multipliers it applied, ``(2,)``: of the values inside the conditioning window and of the
    forecasts.

    The relative structure the model has (``model.spread_scale``'s ratios between channels,
    ``model.gap_spread``'s edges, its factors relative to their kind, its density factors and
    its calibrated tails)
    is kept; as the level step of :func:`calibrate_spread` with ``structure=``, one multiplier
    per kind of query (with the gap spread; one for all without it) is fitted by ``criterion``
    on the held-out values of ``batches`` (``level_rounds`` hiding rounds, ``rounds`` forecast
    rounds, as there), pooled over the channels and cells, and multiplies the factors in place.
    The multipliers are chosen on :data:`RELEVEL_GRID`, relative to the current factors: the
    fitted level is replaced by the one of ``batches`` (series whose best level is the current
    one keep it to the bit). A kind with fewer than ``min_values`` held-out values takes the
    multiplier of all of them, and 1 (the current level) when they are too few as well.

    Use it to calibrate a fitted model's intervals on more series than its validation series,
    or on recent ones, without refitting; the series must not have been seen in training (the
    level measures the model's errors on series it has not seen). A model never calibrated
    (factors 1, no tails) gets two multipliers, one per kind.

    Parameters
    ----------
    model : LatentODE
        Trained model, calibrated or not (any module with ``predict`` and a ``spread_scale``
        buffer; its ``observation`` model if it has one, else Gaussian noise is assumed; its
        ``gap_spread`` if it has one).
    batches : iterable of Batch
        Held-out series, re-iterable (a list), on the model's device and dtype.
    fraction : float or sequence of float
        Fraction of observed values hidden per hiding round, or one per round in turn, as for
        :func:`calibrate_spread`.
    rounds : int
        Forecast rounds (the splits of :data:`FORECAST_FRACTIONS` in turn).
    n_samples : int
        Posterior trajectory samples per series.
    min_values : int
        Minimum number of held-out values of a kind (or of all) for its multiplier.
    criterion : {"coverage", "likelihood"}
        What the multipliers optimise, as for :func:`calibrate_spread`.
    generator : torch.Generator, optional
        Source of the hiding masks and the sampling noise.
    forecast_split : float, optional
        Forecasts split each series at this fraction of its window, and they are the primary
        kind (the channel's factor takes their multiplier), as for :func:`calibrate_spread`.
    by_gap : bool
        Fit one multiplier per kind of query (with a model that has a ``gap_spread``); False:
        one for all, the gap spread left as it is.
    level_rounds : int or None
        Hiding rounds (:data:`LEVEL_ROUNDS`, as ``calibrate_spread(..., structure=)``); None:
        ``rounds``.
    max_level_series : int
        At most this many series of ``batches`` are used (:data:`MAX_LEVEL_SERIES`, as
        ``calibrate_spread(..., structure=)``): a random subset drawn first from
        ``generator``, only when there are more.

    Returns
    -------
    torch.Tensor
        ``(2,)`` multipliers applied (1: unchanged), of the hidden values and the forecasts.

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> from latentode.nn import LatentODE
    >>> from latentode.training import calibrate_level
    >>> _ = torch.manual_seed(0)
    >>> model = LatentODE(1, latent_dim=2, rec_dim=4, units=8, gru_units=8, encoder="gru")
    >>> t = torch.linspace(0, 1, 10).repeat(20, 1)
    >>> x = torch.sin(6 * t).unsqueeze(-1) + 0.1 * torch.randn(20, 10, 1)
    >>> series = [Batch(t, x, torch.ones_like(x), torch.full((20,), 10))]
    >>> level = calibrate_level(model, series, generator=torch.Generator().manual_seed(0))
    >>> level.shape
    torch.Size([2])
    """
    fractions = _checked_rounds(fraction, n_samples, criterion, level_rounds)
    if max_level_series < 1:
        raise ValueError(f"max_level_series must be >= 1, got {max_level_series}.")
    batches = _level_series(batches, int(max_level_series), generator,
                            model.spread_scale.device)
    obs, spread, kinds = _calibration_parts(model, by_gap, forecast_split)
    was_training = model.training
    model.eval()
    try:
        hidden_rec, forecast_rec = _held_out_rounds(
            model, batches, kinds, fractions, int(rounds), n_samples, forecast_split, generator,
            hidden_rounds=None if level_rounds is None else int(level_rounds))
    finally:
        model.train(was_training)
    return _fit_level(model, spread, _merged(hidden_rec + forecast_rec), forecast_split,
                      criterion, obs, min_values, RELEVEL_GRID)
