"""Objective helpers: KL warm-up schedules and loss evaluation over a loader."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from latentode.batch import UNLABELLED, Batch
from latentode.ode.padded import hold_last

from . import distributed as _dist

__all__ = [
    "KLSchedule",
    "linear_kl_schedule",
    "exponential_kl_schedule",
    "kl_weight_schedule",
    "evaluate_loss",
    "drop_observations",
    "split_forecast",
    "mix_forecast",
    "validation_tasks",
    "FORECAST_RANGE",
    "FORECAST_MODES",
]

#: default range of :func:`mix_forecast`'s split points, as fractions of each series' window
FORECAST_RANGE: tuple[float, float] = (0.2, 0.8)

#: how :func:`mix_forecast` gives its picked series to forecasting: ``"swap"``, a picked series
#: conditions on its past instead of all of its values (its reconstruction gives way);
#: ``"add"``, every series is reconstructed and a past-only copy of each picked one is appended
FORECAST_MODES: tuple[str, ...] = ("swap", "add")

# the golden ratio's fractional part: validation_tasks spreads its split points with it
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

KLSchedule = Callable[[int, int], float]
"""``schedule(epoch, step) -> kl_weight``; ``epoch`` and ``step`` (optimiser steps) are 0-based."""

KLWarmup = None | int | float | str | KLSchedule


def linear_kl_schedule(warmup_epochs: float) -> KLSchedule:
    """KL weight ``min(1, epoch / warmup_epochs)``: 0 in the first epoch, 1 from ``warmup_epochs``.

    The weight is constant within an epoch, so every batch of an epoch optimises the same
    objective and the epoch's training loss is well defined.
    """
    warmup_epochs = float(warmup_epochs)
    if warmup_epochs <= 0:
        return lambda epoch, step: 1.0
    return lambda epoch, step: min(1.0, epoch / warmup_epochs)


def exponential_kl_schedule(wait: int = 10, rate: float = 0.99) -> KLSchedule:
    """The reference implementation's schedule: ``1 - rate ** (step - wait)`` after ``wait`` steps.

    It is 0 for the first ``wait`` optimiser steps and approaches 1 per step (not per epoch).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must lie in [0, 1), got {rate!r}.")
    return lambda epoch, step: 0.0 if step < wait else 1.0 - rate ** (step - wait)


def kl_weight_schedule(kl_warmup: KLWarmup) -> KLSchedule:
    """Turn the ``kl_warmup`` argument of :func:`~latentode.training.fit_model` into a schedule.

    Parameters
    ----------
    kl_warmup : None, int, float, "exponential" or callable
        None or 0: constant weight 1. A positive number: :func:`linear_kl_schedule` over that
        many epochs. ``"exponential"``: :func:`exponential_kl_schedule` with the reference's
        defaults. A callable ``(epoch, step) -> float`` is used as is.

    Returns
    -------
    KLSchedule
    """
    if kl_warmup is None:
        return linear_kl_schedule(0)
    if callable(kl_warmup):
        return kl_warmup
    if isinstance(kl_warmup, str):
        if kl_warmup == "exponential":
            return exponential_kl_schedule()
        raise ValueError(f"Unknown kl_warmup {kl_warmup!r}.")
    if isinstance(kl_warmup, (int, float)) and not isinstance(kl_warmup, bool):
        if kl_warmup < 0 or not math.isfinite(kl_warmup):
            raise ValueError(f"kl_warmup must be a non-negative number, got {kl_warmup!r}.")
        return linear_kl_schedule(kl_warmup)
    raise TypeError(
        f"kl_warmup must be None, a number, 'exponential' or a callable; got {kl_warmup!r}."
    )


def drop_observations(
    batch: Batch, fraction: float, generator: torch.Generator | None = None, *,
    keep_first: bool = False,
) -> Batch:
    """Hide a random ``fraction`` of the observed values of ``batch`` (training augmentation).

    Each observed entry is hidden independently with probability ``fraction``; a series that
    would lose all its observed values keeps them all. Times and lengths are unchanged, so the
    result can condition the encoder while the full ``batch`` is scored as the target.

    Parameters
    ----------
    batch : Batch
        The mini-batch.
    fraction : float
        Probability in ``[0, 1)`` of hiding each observed value.
    generator : torch.Generator, optional
        Source of the random mask (on the CPU or on the batch's device).
    keep_first : bool
        Never hide a value of a series' first time point with an observed value (the protocol
        of :func:`latentode.evaluation.hide_values`): the hidden values are then all inside the
        series' observed window, as the values a user asks to fill in are, instead of some
        turning into forecasts backwards in time that also leave the initial state unobserved.
        The random draws are the same either way.

    Returns
    -------
    Batch
        A new batch with the hidden values zeroed and unmasked (``batch`` itself when
        ``fraction == 0``).

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> b = Batch(torch.zeros(1, 4), torch.ones(1, 4, 1), torch.ones(1, 4, 1), torch.tensor([4]))
    >>> g = torch.Generator().manual_seed(0)
    >>> int(drop_observations(b, 0.5, g).mask.sum()) <= 4
    True
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}.")
    if fraction == 0.0:
        return batch
    mask = batch.mask
    dev = generator.device if generator is not None else mask.device
    u = torch.rand(mask.shape, generator=generator, device=dev, dtype=mask.dtype).to(mask.device)
    keep = mask * (u >= fraction).to(mask.dtype)
    if keep_first:  # the first time point with an observed value keeps all its values
        seen = mask.sum(-1) > 0  # (B, N)
        first = (seen.cumsum(1) == 1) & seen
        keep = torch.where(first.unsqueeze(-1), mask, keep)
    empty = keep.flatten(1).sum(1) == 0
    keep = torch.where(empty.view(-1, 1, 1), mask, keep)
    return Batch(batch.times, batch.values * keep, keep, batch.lengths, **batch.per_series())


def split_forecast(batch: Batch, fraction: float) -> tuple[Batch, Batch]:
    """Split every series of ``batch`` in time into a conditioning past and a future to predict.

    Series ``b`` with valid times ``t_0 <= ... <= t_{n-1}`` is split at ``t_0 + fraction *
    (t_{n-1} - t_0)``: its time points before the split (at least the first one) condition the
    encoder, the others form the target, re-padded from position 0 so that the target's window
    (and its Poisson term) starts at its first future time. A series without a future time point
    gets a one-point target with nothing observed. This is the forecasting objective of the
    Latent ODE paper's extrapolation experiments (``fraction=0.5``).

    Parameters
    ----------
    batch : Batch
        The mini-batch.
    fraction : float
        Where to split each series' window, in ``(0, 1)``.

    Returns
    -------
    cond, target : Batch
        ``cond`` has the same tensors as ``batch`` with shorter ``lengths``; ``target`` holds the
        future time points (padded positions repeat its last valid time, masks are 0 there).

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> t = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    >>> b = Batch(t, torch.ones(1, 4, 1), torch.ones(1, 4, 1), torch.tensor([4]))
    >>> cond, target = split_forecast(b, 0.5)
    >>> cond.lengths.tolist(), target.times.tolist(), target.lengths.tolist()
    ([2], [[0.5, 1.0, 1.0, 1.0]], [2])
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}.")
    n_past = _n_past(batch, fraction)
    cond = Batch(batch.times, batch.values, batch.mask, n_past.to(batch.lengths.dtype),
                 **batch.per_series())
    return cond, _future(batch, n_past)


def _future(batch: Batch, n_past: torch.Tensor) -> Batch:
    """The time points of each series of ``batch`` from position ``n_past`` (``(B,)`` long) on,
    re-padded from position 0 (same width; padded positions repeat the last valid time, masks
    are 0 there); a series without one gets a one-point target with nothing observed."""
    times, lengths = batch.times, batch.lengths.to(device=batch.times.device, dtype=torch.long)
    pos = torch.arange(times.shape[1], device=times.device)
    last_pos = (lengths - 1).clamp(min=0).unsqueeze(1)
    n_past = n_past.to(device=times.device, dtype=torch.long)
    n_future = lengths - n_past
    # positions n_past .. lengths-1 moved to the front, padding repeats the last one
    idx = torch.minimum(n_past.unsqueeze(1) + pos.unsqueeze(0), last_pos)
    keep = (pos.unsqueeze(0) < n_future.unsqueeze(1)).to(batch.mask.dtype).unsqueeze(-1)
    gather3 = idx.unsqueeze(-1).expand(-1, -1, batch.values.shape[-1])
    mask = batch.mask.gather(1, gather3) * keep
    return Batch(times.gather(1, idx), batch.values.gather(1, gather3) * mask, mask,
                 n_future.clamp(min=1).to(batch.lengths.dtype), **batch.per_series())


def _n_past(batch: Batch, fraction: float | torch.Tensor) -> torch.Tensor:
    """``(B,)`` long: the time points of each series strictly before ``t_0 + fraction *
    (t_{n-1} - t_0)`` (at least 1); ``fraction`` a float or a ``(B,)`` tensor."""
    times = batch.times
    _, valid, last = hold_last(times, batch.lengths)
    first = times[:, :1]
    if isinstance(fraction, torch.Tensor):
        fraction = fraction.to(device=times.device, dtype=times.dtype).unsqueeze(1)
    split = first + fraction * (last - first)
    return ((times < split) & valid).sum(1).clamp(min=1)


def mix_forecast(
    batch: Batch,
    share: float,
    fractions: tuple[float, float] = FORECAST_RANGE,
    generator: torch.Generator | None = None,
    mode: str = "swap",
) -> tuple[Batch, Batch | None]:
    """The mixed training task: a random ``share`` of the series also learn to forecast.

    Each series of ``batch`` is picked with probability ``share``; a picked series is split at
    ``t_0 + f * (t_{n-1} - t_0)``, ``f`` drawn uniformly from ``fractions`` for each series, and
    its past, its time points strictly before the split (at least the first one), conditions
    the encoder (and the readout's neighbours) to forecast the rest, up to ``1 - f`` of its
    window beyond its last conditioning observation. ``mode`` says what the picked series give
    up for it (:data:`FORECAST_MODES`):

    * ``"swap"``: a picked series conditions on its past *instead of* all of its values and is
      scored on all of them: its values before the split are reconstructed as in plain
      training, those after it forecast; the other series condition on all of theirs. So only
      ``1 - share`` of the series (on average) train reconstruction from all of their values.
    * ``"add"``: every series is reconstructed from all of its values, as in plain training,
      and a *copy* of each picked series is appended to the batch (one batched solve), which
      conditions on its past and is scored on its values after the split only (re-padded from
      position 0, as :func:`split_forecast`'s target), so that no value is reconstructed twice.
      The copies carry the series' static covariates and no label
      (:data:`~latentode.batch.UNLABELLED`: the classification term scores each series once).
      About ``(1 + share)`` times the series per step.

    One draw of ``(B, 2)`` uniforms from ``generator`` per call (the same draws, so the same
    picks and splits, in either mode), none when ``share == 0``.

    Parameters
    ----------
    batch : Batch
        The mini-batch.
    share : float
        Probability in ``[0, 1]`` that a series is picked.
    fractions : (float, float)
        ``(low, high)`` with ``0 < low <= high < 1``: the range of the split points, as
        fractions of each series' window.
    generator : torch.Generator, optional
        Source of the draws (on the CPU or on the batch's device).
    mode : {"swap", "add"}
        What a picked series gives up to forecast (above).

    Returns
    -------
    cond, target : Batch, Batch or None
        ``"swap"``: ``cond`` has ``batch``'s tensors with each picked series' ``lengths`` cut
        to its past; ``target`` is ``batch`` itself (every value scored). ``"add"``: ``batch``'s
        series followed by the picked series' copies, the pasts in ``cond`` and the futures in
        ``target`` (``batch`` itself above them). ``(batch, None)`` when ``share == 0`` (plain
        reconstruction, nothing drawn).

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> t = torch.linspace(0, 1, 5).repeat(2, 1)
    >>> b = Batch(t, torch.ones(2, 5, 1), torch.ones(2, 5, 1), torch.tensor([5, 5]))
    >>> cond, target = mix_forecast(b, 1.0, (0.5, 0.5))
    >>> cond.lengths.tolist(), target is b
    ([2, 2], True)
    >>> cond, target = mix_forecast(b, 1.0, (0.5, 0.5), mode="add")
    >>> cond.lengths.tolist(), target.lengths.tolist()
    ([5, 5, 2, 2], [5, 5, 3, 3])
    """
    low, high = check_forecast_mix(share, fractions, mode)
    if share == 0.0:
        return batch, None
    lengths, times = batch.lengths, batch.times
    dev = generator.device if generator is not None else times.device
    u = torch.rand((batch.batch_size, 2), generator=generator, device=dev,
                   dtype=times.dtype).to(times.device)
    fraction = low + (high - low) * u[:, 1]
    picked = (u[:, 0] < share).to(lengths.device)
    if mode == "swap":
        return _past_only(batch, fraction, picked), batch
    rows = picked.nonzero().squeeze(1)
    copies = _copies(batch, rows)
    n_past = _n_past(copies, fraction[rows.to(fraction.device)])
    past = Batch(copies.times, copies.values, copies.mask, n_past.to(lengths.dtype),
                 **copies.per_series())
    return _stack(batch, past), _stack(batch, _future(copies, n_past))


def _copies(batch: Batch, rows: torch.Tensor) -> Batch:
    """The series ``rows`` (``(P,)`` long) of ``batch``, same width, without their labels
    (:data:`~latentode.batch.UNLABELLED`)."""
    extra = {name: None if x is None else x[rows] for name, x in batch.per_series().items()}
    if extra["labels"] is not None:
        extra["labels"] = torch.full_like(extra["labels"], UNLABELLED)
    return Batch(batch.times[rows], batch.values[rows], batch.mask[rows], batch.lengths[rows],
                 **extra)


def _stack(first: Batch, second: Batch) -> Batch:
    """The series of ``first`` followed by those of ``second`` (the same width and fields)."""
    extra = {name: None if x is None else torch.cat([x, getattr(second, name)])
             for name, x in first.per_series().items()}
    return Batch(torch.cat([first.times, second.times]), torch.cat([first.values, second.values]),
                 torch.cat([first.mask, second.mask]), torch.cat([first.lengths, second.lengths]),
                 **extra)


def _past_only(batch: Batch, fraction: torch.Tensor, picked: torch.Tensor | None = None) -> Batch:
    """``batch`` with the ``lengths`` of each series (each ``picked`` one, ``(B,)`` bool) cut to
    its time points before ``t_0 + fraction * (t_{n-1} - t_0)`` (``fraction``: ``(B,)``), at
    least the first one; the same tensors otherwise."""
    lengths = batch.lengths
    cut = _n_past(batch, fraction).to(lengths.dtype)
    if picked is not None:
        cut = torch.where(picked, cut, lengths)
    return Batch(batch.times, batch.values, batch.mask, cut, **batch.per_series())


def validation_tasks(
    batch: Batch,
    forecast_split: float | None = None,
    forecast_share: float = 0.0,
    forecast_range: tuple[float, float] = FORECAST_RANGE,
    forecast_mode: str = "swap",
) -> list[tuple[Batch, Batch | None, float]]:
    """What validation scores on one batch: ``(cond, target, weight)`` triples.

    Validation scores the task that training optimises, without its random draws:

    * reconstruction (the defaults): ``[(batch, None, 1.0)]``;
    * ``forecast_split``: each series' future from its past, :func:`split_forecast`,
      ``[(past, future, 1.0)]``;
    * ``forecast_share > 0`` (:func:`mix_forecast`'s mixed task): every series twice, whole,
      ``[(batch, None, 1 - share), (past, batch, share)]``: reconstructed from all of its
      values with weight ``1 - share``, and conditioned on its past only with weight
      ``share`` (the first term left out when ``share == 1``). Series ``b`` of the batch is split
      at ``low + (high - low) * u_b`` of its window, ``u_b`` the fractional part of
      ``0.5 + b * 0.618...`` (the golden ratio's: 0.5 for the first series, then points spread
      evenly over ``[0, 1)`` however many series the batch holds), so the split points cover
      ``forecast_range`` as training's uniform draws do, and the same batch gets the same ones
      at every epoch. Both terms score the same values, so a weighted sum of their per-value
      figures is the mix's figure per value;
    * ``forecast_share > 0`` with ``forecast_mode="add"``: every series reconstructed from all
      of its values with weight ``1 / (1 + share)`` and, split at the same fixed points, its
      values after the split forecast from its past with weight ``share / (1 + share)``
      ``[(batch, None, 1 / (1 + share)), (past, future, share / (1 + share))]``: per value,
      the figure that training's batches with their appended copies have on average.

    Parameters
    ----------
    batch : Batch
        The validation batch.
    forecast_split : float, optional
        The forecasting task's split (not with ``forecast_share``).
    forecast_share : float
        The mixed task's share in ``[0, 1]``; 0: no mix.
    forecast_range : (float, float)
        The mixed task's range of split points (:func:`mix_forecast`'s ``fractions``).
    forecast_mode : {"swap", "add"}
        The mixed task's mode (:func:`mix_forecast`'s ``mode``).

    Returns
    -------
    list of (Batch, Batch or None, float)
        Conditioning data, the data scored (None: the conditioning data) and the weight of
        that term; the weights sum to 1.

    Examples
    --------
    >>> import torch
    >>> from latentode.batch import Batch
    >>> t = torch.linspace(0, 1, 11).repeat(2, 1)
    >>> b = Batch(t, torch.ones(2, 11, 1), torch.ones(2, 11, 1), torch.tensor([11, 11]))
    >>> [(c.lengths.tolist(), w) for c, _, w in validation_tasks(b, forecast_share=0.25)]
    [([11, 11], 0.75), ([5, 3], 0.25)]
    >>> [(c.lengths.tolist(), t if t is None else t.lengths.tolist(), w) for c, t, w
    ...  in validation_tasks(b, forecast_share=0.25, forecast_mode="add")]
    [([11, 11], None, 0.8), ([5, 3], [6, 8], 0.2)]
    """
    low, high = check_forecast_mix(forecast_share, forecast_range, forecast_mode,
                                   ("forecast_share", "forecast_range", "forecast_mode"))
    if forecast_split is not None:
        if forecast_share > 0.0:
            raise ValueError("forecast_share and forecast_split are two tasks; give one.")
        cond, target = split_forecast(batch, forecast_split)
        return [(cond, target, 1.0)]
    if forecast_share == 0.0:
        return [(batch, None, 1.0)]
    b = torch.arange(batch.batch_size, dtype=torch.float64)
    u = torch.remainder(0.5 + b * _GOLDEN, 1.0)
    past = _past_only(batch, low + (high - low) * u)
    if forecast_mode == "add":
        return [(batch, None, 1.0 / (1.0 + forecast_share)),
                (past, _future(batch, past.lengths), forecast_share / (1.0 + forecast_share))]
    tasks: list[tuple[Batch, Batch | None, float]] = []
    if forecast_share < 1.0:
        tasks.append((batch, None, 1.0 - forecast_share))
    tasks.append((past, batch, forecast_share))
    return tasks


def check_forecast_mix(share: float, fractions: tuple[float, float], mode: str = "swap",
                       names: tuple[str, str, str] = ("share", "fractions", "mode"),
                       ) -> tuple[float, float]:
    """Check :func:`mix_forecast`'s ``share``, ``fractions`` and ``mode`` (named ``names`` in
    the errors); return ``fractions`` as ``(low, high)``."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{names[0]} must lie in [0, 1], got {share!r}.")
    low, high = fractions
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"{names[1]} must be (low, high) with 0 < low <= high < 1, got "
                         f"{fractions!r}.")
    if mode not in FORECAST_MODES:
        raise ValueError(f"{names[2]} must be one of {FORECAST_MODES}, got {mode!r}.")
    return low, high


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """dtype of on-device sums of losses and counts: float64, float32 on MPS (no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def evaluation_setup(model: nn.Module, device: torch.device | str | None,
                     dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype, torch.dtype]:
    """``(device, dtype, accumulator dtype)`` of an evaluation: the model's unless given."""
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    dtype = param.dtype if dtype is None else dtype
    return device, dtype, accumulator_dtype(device)


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    batches: Iterable[Batch],
    n_traj_samples: int = 3,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
    weighting: str = "value",
    forecast_split: float | None = None,
    distributed: bool = False,
    loss_options: Mapping[str, Any] | None = None,
    forecast_share: float = 0.0,
    forecast_range: tuple[float, float] = FORECAST_RANGE,
    forecast_mode: str = "swap",
) -> dict[str, float]:
    """Loss of ``model`` over ``batches`` with KL weight 1, weighted by observed values.

    Parameters
    ----------
    model : LatentODE
        Any module with ``loss(batch, n_traj_samples, kl_weight, generator=...)``.
    batches : iterable of Batch
        The data.
    n_traj_samples : int
        Trajectory samples of the IWAE bound.
    device, dtype : optional
        Where and in which floating dtype to evaluate (default: the model's).
    generator : torch.Generator, optional
        Sampling noise.
    weighting : {"value", "channel"}
        Weight of each observed value in the log-likelihood (see
        :func:`~latentode.nn.observation_weights`).
    forecast_split : float, optional
        Score forecasts instead of reconstructions: each series is split by
        :func:`split_forecast` at this fraction of its window.
    distributed : bool
        Split the work across the ranks of the initialised :mod:`torch.distributed` process
        group: every rank passes the same ``batches`` and a ``generator`` in the same state,
        draws each batch's noise for the whole batch, scores its contiguous block of series,
        and one all-reduce per batch sums the results, so every rank returns the
        single-process figures (up to summation order).
    loss_options : mapping, optional
        Further keyword arguments of ``model.loss`` (e.g. ``ce_weight`` for a classifier).
    forecast_share : float
        Score the mixed task of :func:`mix_forecast` with this share, without its draws
        (:func:`validation_tasks`): every figure is ``1 - forecast_share`` times that of the
        reconstruction plus ``forecast_share`` times that of each series scored whole from its
        past before a fixed split point in ``forecast_range``. 0: reconstruction. Not with
        ``forecast_split``.
    forecast_range : (float, float)
        The mixed task's range of split points.
    forecast_mode : {"swap", "add"}
        The mixed task's mode (:func:`validation_tasks`): ``"add"`` scores every series'
        reconstruction with weight ``1 / (1 + forecast_share)`` and its values after the fixed
        split, forecast from its past, with weight ``forecast_share / (1 + forecast_share)``.

    Returns
    -------
    dict
        ``{"loss", "nll", "mse", "n_obs"}`` as Python floats (one host sync in all, one per
        batch when distributed); NaN when there were no observed values. ``"mse"`` is the mean
        squared error of the point predictions (:meth:`LatentODE.point_squared_error
        <latentode.nn.LatentODE.point_squared_error>`: the posterior mean's trajectory, what
        :meth:`~latentode.LatentODERegressor.predict` returns, deterministic) over the observed
        values scored (with ``forecast_split``, the futures; with ``forecast_share``, the
        mix's weighted sum); a model without that method (or ``loss_options`` with
        ``elbo=False``, which decodes nothing) reports its loss's ``mse``. With
        ``forecast_share`` the mix's second term draws its own noise after the first's.
    """
    was_training = model.training
    model.eval()
    try:
        device, dtype, acc_dtype = evaluation_setup(model, device, dtype)
        acc = torch.zeros(4, device=device, dtype=acc_dtype)
        tasks = functools.partial(validation_tasks, forecast_split=forecast_split,
                                  forecast_share=forecast_share, forecast_range=forecast_range,
                                  forecast_mode=forecast_mode)
        if distributed:
            _evaluate_distributed(model, iter(batches), acc, n_traj_samples, device=device,
                                  dtype=dtype, generator=generator, weighting=weighting,
                                  tasks=tasks, loss_options=loss_options)
        else:
            for batch in batches:
                for cond, target, weight in tasks(batch.to(device, dtype)):
                    out = model.loss(cond, n_traj_samples, 1.0, target=target,
                                     generator=generator, weighting=weighting,
                                     **(loss_options or {}))
                    n = out.n_obs.double()
                    sq_err = _point_error(model, cond, target, loss_options)
                    stats = torch.stack([out.loss.double() * n, out.nll.double() * n,
                                         out.mse.double() * n if sq_err is None
                                         else sq_err.double(), n])
                    acc += weight * stats
        loss, nll, mse, n_obs = acc.tolist()
    finally:
        model.train(was_training)
    if n_obs <= 0:
        return {"loss": math.nan, "nll": math.nan, "mse": math.nan, "n_obs": 0.0}
    return {"loss": loss / n_obs, "nll": nll / n_obs, "mse": mse / n_obs, "n_obs": n_obs}


def _point_error(model: nn.Module, batch: Batch, target: Batch | None,
                 loss_options: Mapping[str, Any] | None) -> torch.Tensor | None:
    """Summed squared error of the model's point predictions on ``target`` (None: ``batch``),
    or None for a model without them (or one whose loss decodes nothing, ``elbo=False``)."""
    if not hasattr(model, "point_squared_error") or (
            (loss_options or {}).get("elbo", True) is False):
        return None
    return model.point_squared_error(batch, target=target).sum()


def _evaluate_distributed(
    model: nn.Module,
    batches: Iterator[Batch],
    acc: torch.Tensor,
    n_traj_samples: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    generator: torch.Generator | None,
    weighting: str,
    tasks: Callable[[Batch], list[tuple[Batch, Batch | None, float]]],
    loss_options: Mapping[str, Any] | None = None,
) -> None:
    """Add each global batch's ``[loss, nll, mse] * n_obs, n_obs`` to ``acc`` (summed over
    its :func:`validation_tasks`, ``tasks``, by their weights), every rank scoring its block of
    series (lock-step: one all-reduce per batch and one at the end)."""
    rank, world = _dist.get_rank(), _dist.get_world_size()
    while True:
        batch: Batch | None = None
        error: BaseException | None = None
        buf = torch.zeros(4, device=device, dtype=acc.dtype)
        try:
            batch = next(batches, None)
            if batch is not None:
                batch = batch.to(device, dtype)
                rows = _dist.shard_slice(batch.batch_size, rank, world)
                for cond, target, weight in tasks(batch):
                    noise = model.draw_z0_noise(n_traj_samples, batch.batch_size, generator,
                                                device=device, dtype=dtype)
                    if rows.stop > rows.start:
                        part = _dist.take_rows(cond, rows)
                        part_target = None if target is None else _dist.take_rows(target, rows)
                        out = model.loss(part, n_traj_samples, 1.0, target=part_target,
                                         weighting=weighting, z0_noise=noise[:, rows],
                                         **(loss_options or {}))
                        denom = out.n_obs.clamp(min=1.0)
                        sq_err = _point_error(model, part, part_target, loss_options)
                        stats = torch.stack([out.loss * denom, out.nll * denom,
                                             out.mse * denom if sq_err is None
                                             else sq_err.to(denom), out.n_obs]).to(acc.dtype)
                        buf += weight * stats
        except Exception as err:  # noqa: BLE001 - re-raised on this rank, reported on the others
            error = err
        have = batch is not None
        n_rows = batch.batch_size if batch is not None else 0
        total, (n_have, rows_sum) = _dist.all_reduce_checked(buf, error,
                                                             header=(float(have), float(n_rows)))
        if n_have == 0:
            return
        if n_have != world or rows_sum != world * n_rows:
            raise _dist.DistributedError("the ranks hold different validation batches; every "
                                         "rank must iterate the same global batches.")
        n_obs = total[3]
        scale = n_obs / n_obs.clamp(min=1.0)  # single-process: (sum / max(n, 1)) * n
        acc += torch.cat([total[:3] * scale, n_obs.view(1)])
