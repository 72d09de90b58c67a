"""Run a fitted :class:`~latentode.nn.LatentODE` over conditioning batches at padded query times.

Torch and numpy only (no pandas, no :mod:`latentode.data`): the estimator builds the batches and
the query plan in the data layer (:func:`latentode.data.plan_query`) and reads the packed result
back per row (:meth:`latentode.data.QueryPlan.gather_rows`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from .batch import Batch
from .ode import ODESolveError

if TYPE_CHECKING:  # pragma: no cover
    from .nn import LatentODE

__all__ = ["PackedPrediction", "predict_packed"]


class PackedPrediction(NamedTuple):
    """Predictions at the distinct query points, packed series by series.

    Attributes
    ----------
    mean : numpy.ndarray
        ``(S, P, C)`` decoded means per trajectory sample, standardised, in the model's dtype;
        point ``p`` runs over the series in batch order, each over its valid query times.
    obs_std : numpy.ndarray
        ``(C,)`` observation noise standard deviation (standardised units), widened by the
        model's ``spread_scale`` when ``S > 1``.
    intensity : numpy.ndarray or None
        ``(S, P, C)`` Poisson observation rates per model time unit (models with
        ``poisson_process=True``), else None.
    gap_factor : numpy.ndarray or None
        ``(P, C)`` further factor of the noise at each point (a fitted ``model.gap_spread``,
        ``S > 1``; already applied to ``mean``'s spread), else None.
    tail_df : numpy.ndarray or None
        ``(P, C)`` calibrated tails at each point (``model.gap_spread`` with fitted tails,
        ``S > 1``; ``inf``: the observation model's family), else None.
    """

    mean: np.ndarray
    obs_std: np.ndarray
    intensity: np.ndarray | None
    gap_factor: np.ndarray | None = None
    tail_df: np.ndarray | None = None


def predict_packed(
    model: LatentODE,
    batches: Iterable[Batch],
    query_times: np.ndarray,
    query_lengths: np.ndarray,
    *,
    n_samples: int = 1,
    use_mean: bool = True,
    point: str | None = None,
    generator: torch.Generator | None = None,
    max_steps: int | None = None,
) -> PackedPrediction:
    """Decode each series' latent trajectory at its query times, batch by batch, in eval mode.

    Parameters
    ----------
    model : LatentODE
        The fitted network (put in eval mode; gradients are not tracked).
    batches : iterable of Batch
        Conditioning data of the ``B`` series, in order, on the model's device and in its dtype
        (e.g. ``latentode.data.iterate_batches(padded, batch_size, device=..., dtype=...)``).
    query_times : numpy.ndarray
        ``(B, M)`` model query times, ascending over each series' valid prefix.
    query_lengths : numpy.ndarray
        ``(B,)`` number of valid query times of each series (``>= 1``).
    n_samples : int, default=1
        Trajectory samples ``S`` (posterior samples of ``z_t0``).
    use_mean : bool, default=True
        With ``n_samples == 1``, decode the posterior mean of ``z_t0`` (deterministic).
    point : {"posterior_mean", "predictive_mean"}, optional
        Return one point prediction per query instead of samples
        (:meth:`~latentode.nn.LatentODE.predict_point` with this rule; ``n_samples`` is then
        the number of fixed points ``"predictive_mean"`` averages, and ``use_mean`` and
        ``generator`` are ignored): ``mean`` is ``(1, P, C)``, ``obs_std`` uncalibrated, no
        ``gap_factor`` or ``tail_df``; deterministic, each series independent of its batch.
    generator : torch.Generator, optional
        Source of the sampling noise, drawn from batch after batch (samples, ``point=None``).
    max_steps : int, optional
        The solver's step budget for this call (``model.max_steps``, restored afterwards);
        default the model's own.

    Returns
    -------
    PackedPrediction
        ``P = query_lengths.sum()`` points.

    Raises
    ------
    ODESolveError
        Raised again from a failed solve with ``series`` the index of the failing series among
        the ``B`` series of ``batches`` (the solver counts within its batch and sample).
    """
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    lengths_all = np.asarray(query_lengths, dtype=np.int64)
    means: list[np.ndarray] = []
    rates: list[np.ndarray] = []
    gaps: list[np.ndarray] = []  # per point, when the calibration depends on the point
    tails: list[np.ndarray] = []
    before = model.max_steps
    if max_steps is not None:
        model.max_steps = int(max_steps)
    model.eval()
    try:
        with torch.no_grad():
            obs_std = model.obs_std  # overwritten by the predictions' (calibrated) one
            if n_samples > 1 and point is None:
                obs_std = obs_std * model.spread_scale
            lo = 0
            for cond in batches:
                b = cond.batch_size
                lengths = lengths_all[lo:lo + b]
                width = max(int(lengths.max()), 1)
                times = torch.as_tensor(query_times[lo:lo + b, :width], dtype=dtype,
                                        device=device)
                n_valid = torch.as_tensor(lengths, device=device)
                try:
                    if point is None:
                        pred = model.predict(cond, times, n_valid, n_samples=n_samples,
                                             generator=generator, use_mean=use_mean)
                    else:
                        pred = model.predict_point(cond, times, n_valid, point=point,
                                                   n_samples=n_samples)
                except ODESolveError as err:  # the solve flattens (samples, series)
                    raise ODESolveError(str(err), series=lo + err.series % b, time=err.time,
                                        reason=err.reason) from err
                valid = np.arange(width)[None, :] < lengths[:, None]  # (b, width)
                means.append(pred.mean.cpu().numpy()[:, valid])
                if pred.intensity is not None:
                    rates.append(pred.intensity.cpu().numpy()[:, valid])
                obs_std = pred.obs_std
                if pred.gap_factor is not None:  # (b, width, C)
                    gaps.append(pred.gap_factor.cpu().numpy()[valid])
                if pred.tail_df is not None:
                    tails.append(pred.tail_df.cpu().numpy()[valid])
                lo += b
    finally:
        model.max_steps = before
    n_channels = int(model.n_channels)
    empty = np.zeros((1 if point is not None else int(n_samples), 0, n_channels),
                     dtype=torch.empty((), dtype=dtype).numpy().dtype)
    mean = np.concatenate(means, axis=1) if means else empty
    intensity = None
    if model.poisson_process:
        intensity = np.concatenate(rates, axis=1) if rates else empty.copy()
    gap_factor = np.concatenate(gaps, axis=0) if gaps else None
    tail_df = np.concatenate(tails, axis=0) if tails else None
    return PackedPrediction(mean=mean, obs_std=obs_std.cpu().numpy(), intensity=intensity,
                            gap_factor=gap_factor, tail_df=tail_df)
