"""The interval calibration's former (slow) path, kept as a reference for
``tests/test_calibration_speed.py``: the functions of ``latentode/training/calibration.py``
that its faster path replaced, as they were before it (commit f1b50eb), calling the module's
other functions through it. :func:`use` puts them in place of the module's."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from latentode.nn.observation import ObservationModel
from latentode.nn.spread import DENSITY_SHRINKAGES, GAP_KINDS, N_GAP_BUCKETS, GapSpread
from latentode.training import calibration as C
from latentode.training.calibration import (
    COVERAGE_LEVELS,
    LEVEL_GRID,
    LEVEL_STRIDES,
    SCALE_GRID,
    Grouping,
    _HeldOut,
)


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
    serves every grouping.
    Returns, per grouping, the ``(len(grid), G)`` losses (lower is better: the summed squared
    gaps of the coverage of :data:`COVERAGE_LEVELS`, or minus the summed log density) and the
    ``(G,)`` counts of values.
    """
    device = records[0].resid.device if records else torch.device("cpu")
    grid = (SCALE_GRID if grid is None else grid).to(device)
    levels = torch.tensor(COVERAGE_LEVELS, dtype=torch.float64, device=device)
    width = 1 if criterion == "likelihood" else len(levels)
    totals = [torch.zeros(len(grid), width, n, dtype=torch.float64, device=device)
              for _, n in groupings]
    counts = [torch.zeros(n, dtype=torch.float64, device=device) for _, n in groupings]
    for i, rec in enumerate(records):
        for (groups, n), count in zip(groupings, counts):
            count += torch.bincount(groups[i], minlength=n).double()
        dev = rec.dev.double()[:max_samples]
        df = None if tails is None else tails[i]
        for g, rel in enumerate(grid):
            a = rel if base is None else rel * base[i]
            z = (rec.resid / a - dev) / rec.sigma  # (S, n)
            if criterion == "likelihood":
                score = (torch.logsumexp(obs.calibrated_log_pdf(z, rec.channel, df), dim=0)
                         - math.log(dev.shape[0]) - torch.log(a * rec.sigma))
                score = score.unsqueeze(0)  # (1, n)
            else:  # inside each central interval: |PIT - 1/2| <= level / 2
                pit = obs.calibrated_cdf(z, rec.channel, df).mean(0)  # (n,)
                score = ((pit - 0.5).abs().unsqueeze(0)
                         <= levels.unsqueeze(1) / 2).double()  # (L, n)
            for (groups, _), total in zip(groupings, totals):
                total[g].index_add_(1, groups[i], score)
    out = []
    for total, count in zip(totals, counts):
        if criterion == "likelihood":
            out.append((-total[:, 0], count))
        else:
            coverage = total / count.clamp(min=1.0)  # (G, L, groups)
            out.append((((coverage - levels.view(1, -1, 1)) ** 2).sum(1), count))
    return out


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
    density = C._densities(spread, records)
    [(best_cell, count_cell, _), (best_kind, count_kind, _)] = C._best_factors(
        records, [cells, kinds], criterion, obs, tails, base=density, strides=strides)
    scale = channel_scale.to(best_cell.dtype)
    kind_rel = torch.where((count_kind >= min_values).view(n_kinds, n_ch),
                           best_kind.view(n_kinds, n_ch) / scale,
                           torch.ones_like(scale)).view(n_kinds, 1, n_ch)
    cell_rel = (best_cell / scale.repeat(n_cells)).view(n_kinds, k, n_ch)
    enough = (count_cell >= min_values).view(n_kinds, k, n_ch)
    spread.factors.copy_(torch.where(enough, cell_rel, kind_rel).to(spread.factors.dtype))


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
    """
    slope = spread.density_slope.clone()
    start = model.spread_scale.clone()
    losses, fits = [], []
    for shrink in DENSITY_SHRINKAGES:
        model.spread_scale.copy_(start)
        spread.density_slope.copy_(slope * shrink)
        C._fit_cell_factors(spread, structure, channel_scale, criterion, obs, min_values, strides)
        C._fit_level(model, spread, records, forecast_split, criterion, obs, min_values)
        losses.append(C._density_loss(model, spread, records, criterion, obs, min_values))
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
    else:
        model.spread_scale.copy_(start)
        C._fit_cell_factors(spread, structure, channel_scale, criterion, obs, min_values, strides)
        C._fit_level(model, spread, records, forecast_split, criterion, obs, min_values)
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
    base, tails = C._calibrated(scale, spread, records)
    by_kind = ([r.beyond.long() for r in records], kinds)
    pooled = ([torch.zeros_like(r.channel) for r in records], 1)
    # multipliers of ``grid`` on top of ``base``, searched coarse to fine
    [(per_kind, count_kind, _), (overall, count, _)] = C._best_factors(
        records, [by_kind, pooled], criterion, obs, tails, grid, base=base,
        strides=LEVEL_STRIDES)
    one = torch.where(count >= min_values, overall, torch.ones_like(overall))
    level = (torch.where(count_kind >= min_values, per_kind, one) if spread is not None
             else one.expand(kinds))
    primary = level[0 if forecast_split is None else 1]
    scale_buf.copy_((scale * primary).to(scale_buf.dtype))
    if spread is not None:
        ratio = (level / primary).view(kinds, 1, 1)
        spread.factors.copy_((spread.factors.double() * ratio).to(spread.factors.dtype))
    return level


def use(monkeypatch) -> None:
    """Put the former functions in place of the calibration module's (``monkeypatch``:
    pytest's fixture, which restores them)."""
    for name in ("_losses", "_fit_cell_factors", "_gate_density", "_fit_level"):
        monkeypatch.setattr(C, name, globals()[name])
