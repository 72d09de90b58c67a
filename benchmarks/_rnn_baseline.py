"""The RNN baseline of the Neural ODE paper's Table 2: a GRU that reads the time gaps.

Chen et al. (2018), section 5.1, compare the latent ODE with "an RNN ... that takes the time
gaps as input". This module is that baseline, for ``benchmarks/spirals.py``:

* :class:`GapGRU` (torch only): a GRU reads each observation with the time gap to the previous
  one, ``[x_i, dt_i]``; a small head reads its state ``h_i`` and the gap to the next
  observation, ``dt_{i+1}``, and predicts the next value (as an increment over ``x_i``).
* :func:`train_gap_gru` (torch only): next-observation regression with teacher forcing (mean
  squared error on the standardised values of every observation after the first), Adam, a fixed
  budget of epochs, float32, deterministic for a given seed.
* :meth:`GapGRU.extrapolate`: condition on each series' observations, then feed the model's
  own predictions back at the requested future times (after the first one, gaps of one grid
  step on the spirals).
* :class:`GapRNNForecaster`: the small long-frame adapter (``id, t, value...`` rows in,
  predictions at query rows out) that the benchmark calls; the only part that touches pandas
  (imported inside its methods).

Series may have different numbers of observations (padded at the end and masked); times must
increase strictly within a series, and query times must lie after the series' last observation
(this is an extrapolator, not an interpolator).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

__all__ = ["GapGRU", "GapRNNForecaster", "TrainResult", "gaps_from_times", "train_gap_gru"]


def gaps_from_times(times: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """Gaps to the previous and to the next observation of padded series.

    Parameters
    ----------
    times : torch.Tensor
        ``(n_series, n_max)`` observation times, padded at the end (padding is ignored).
    lengths : torch.Tensor
        ``(n_series,)`` number of observations of each series (``>= 1``).

    Returns
    -------
    gap_in : torch.Tensor
        ``(n_series, n_max)``: ``t_i - t_{i-1}``, 0 for the first observation and the padding.
    gap_out : torch.Tensor
        ``(n_series, n_max)``: ``t_{i+1} - t_i``, 0 for the last observation and the padding.
    """
    valid = torch.arange(times.shape[1], device=times.device)[None, :] < lengths[:, None]
    diff = torch.diff(times, dim=1)
    both = valid[:, 1:] & valid[:, :-1]
    diff = torch.where(both, diff, torch.zeros_like(diff))
    zero = torch.zeros_like(times[:, :1])
    return torch.cat([zero, diff], dim=1), torch.cat([diff, zero], dim=1)


class GapGRU(nn.Module):
    """A GRU over irregular observations that takes the time gaps as input (Chen et al., 2018).

    Step ``i`` reads ``[x_i, dt_i]`` (standardised value, gap to the previous observation in
    units of ``gap_scale``); the head maps ``[h_i, dt_{i+1}]`` to the predicted increment
    ``x_{i+1} - x_i``. The standardisation (``loc``, ``scale``, ``gap_scale``) is part of the
    module, so :meth:`forward` and :meth:`extrapolate` take and return values in the caller's
    units.

    Parameters
    ----------
    n_channels : int
        Number of value channels.
    hidden : int
        Units of the GRU state.
    head_units : int
        Units of the head's hidden layer (tanh); 0 for a linear head.
    residual : bool
        Predict the increment over the current value (True) or the next value itself.
    """

    def __init__(self, n_channels: int, hidden: int = 32, head_units: int = 32,
                 residual: bool = True) -> None:
        super().__init__()
        if n_channels < 1 or hidden < 1 or head_units < 0:
            raise ValueError(f"n_channels and hidden must be >= 1 and head_units >= 0, got "
                             f"{n_channels}, {hidden}, {head_units}.")
        self.n_channels, self.hidden, self.residual = int(n_channels), int(hidden), bool(residual)
        self.gru = nn.GRU(n_channels + 1, hidden, batch_first=True)
        if head_units:
            self.head: nn.Module = nn.Sequential(nn.Linear(hidden + 1, head_units), nn.Tanh(),
                                                 nn.Linear(head_units, n_channels))
        else:
            self.head = nn.Linear(hidden + 1, n_channels)
        self.register_buffer("loc", torch.zeros(n_channels))
        self.register_buffer("scale", torch.ones(n_channels))
        self.register_buffer("gap_scale", torch.ones(()))

    def set_scaling(self, loc: torch.Tensor, scale: torch.Tensor, gap_scale: float) -> None:
        """Set the value standardisation (per channel) and the unit of the time gaps."""
        if not (torch.all(scale > 0) and gap_scale > 0):
            raise ValueError("scale and gap_scale must be positive.")
        self.loc.copy_(loc)
        self.scale.copy_(scale)
        self.gap_scale.fill_(float(gap_scale))

    def _next(self, out: torch.Tensor, x: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """Standardised next value from GRU outputs, standardised values and scaled gaps."""
        step = self.head(torch.cat([out, gap.unsqueeze(-1)], dim=-1))
        return x + step if self.residual else step

    def forward(self, values: torch.Tensor, times: torch.Tensor,
                lengths: torch.Tensor) -> torch.Tensor:
        """One-step-ahead predictions with teacher forcing.

        Parameters
        ----------
        values : torch.Tensor
            ``(n_series, n_max, n_channels)`` observations, padded at the end.
        times : torch.Tensor
            ``(n_series, n_max)`` their times.
        lengths : torch.Tensor
            ``(n_series,)`` observations per series.

        Returns
        -------
        torch.Tensor
            ``(n_series, n_max - 1, n_channels)``: entry ``i`` predicts observation ``i + 1``
            from observations ``0..i`` and the gap to it (standardised units; entries beyond a
            series' last observation are meaningless).
        """
        z = (values - self.loc) / self.scale
        gap_in, gap_out = gaps_from_times(times, lengths)
        out, _ = self.gru(torch.cat([z, (gap_in / self.gap_scale).unsqueeze(-1)], dim=-1))
        return self._next(out[:, :-1], z[:, :-1], gap_out[:, :-1] / self.gap_scale)

    def extrapolate(self, values: torch.Tensor, times: torch.Tensor, lengths: torch.Tensor,
                    future: torch.Tensor) -> torch.Tensor:
        """Condition on the observations, then predict at ``future`` times autoregressively.

        Each prediction is fed back to the GRU with its gap to the previous point (the last
        observation for the first future time).

        Parameters
        ----------
        values, times, lengths : torch.Tensor
            The conditioning observations, as in :meth:`forward`.
        future : torch.Tensor
            ``(n_series, n_future)`` increasing times after each series' last observation
            (pad a shorter series by repeating its last time; those entries are meaningless).

        Returns
        -------
        torch.Tensor
            ``(n_series, n_future, n_channels)`` predictions in the caller's units.
        """
        z = (values - self.loc) / self.scale
        gap_in, _ = gaps_from_times(times, lengths)
        out, _ = self.gru(torch.cat([z, (gap_in / self.gap_scale).unsqueeze(-1)], dim=-1))
        rows = torch.arange(values.shape[0], device=values.device)
        last = (lengths - 1).long()
        h, x = out[rows, last], z[rows, last]  # state after each series' last observation
        t_prev = times[rows, last]
        preds = []
        for k in range(future.shape[1]):
            gap = (future[:, k] - t_prev) / self.gap_scale
            x = self._next(h, x, gap)
            preds.append(x)
            h = self.gru(torch.cat([x, gap.unsqueeze(-1)], dim=-1).unsqueeze(1),
                         h.unsqueeze(0))[1].squeeze(0)
            t_prev = future[:, k]
        if not preds:
            return values.new_zeros((values.shape[0], 0, self.n_channels))
        return torch.stack(preds, dim=1) * self.scale + self.loc


@dataclass
class TrainResult:
    """What :func:`train_gap_gru` returns: per-epoch mean training loss and the wall time."""

    losses: list[float]
    fit_s: float


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries of observations ``1..length-1`` of each series."""
    mask = (torch.arange(pred.shape[1], device=pred.device)[None, :] < (lengths - 1)[:, None])
    err = ((pred - target) ** 2).sum(-1) * mask
    return err.sum() / (mask.sum().clamp_min(1) * pred.shape[-1])


def train_gap_gru(model: GapGRU, values: torch.Tensor, times: torch.Tensor,
                  lengths: torch.Tensor, *, epochs: int = 100, lr: float = 1e-2,
                  batch_size: int = 50, lr_decay: float = 1.0, grad_clip: float | None = 1.0,
                  seed: int = 0) -> TrainResult:
    """Fit ``model`` to predict each next observation (teacher forcing, Adam, fixed epochs).

    The model's standardisation is set from the data first (per-channel mean and standard
    deviation of the observed values, the mean positive gap). Mini-batches are drawn in a
    random order from a generator seeded with ``seed``, so a seed and a fresh model built under
    the same seed give identical weights.

    Parameters
    ----------
    model : GapGRU
        Trained in place.
    values, times, lengths : torch.Tensor
        Training series, padded at the end (see :meth:`GapGRU.forward`).
    epochs : int
        Passes over the training series.
    lr : float
        Adam's learning rate.
    batch_size : int
        Series per step.
    lr_decay : float
        Multiplies the learning rate after each epoch.
    grad_clip : float or None
        Maximum gradient norm per step (None: no clipping).
    seed : int
        Seed of the batch order.

    Returns
    -------
    TrainResult
        Mean loss of each epoch (standardised units) and the training time in seconds.
    """
    import time

    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, "
                         f"{batch_size}, {lr}.")
    if int(lengths.max()) < 2:
        raise ValueError("train_gap_gru needs a series with at least two observations.")
    start = time.perf_counter()
    valid = torch.arange(values.shape[1])[None, :] < lengths[:, None]
    obs = values[valid]
    gap_in, _ = gaps_from_times(times, lengths)
    gaps = gap_in[:, 1:][valid[:, 1:]]
    if torch.any(gaps <= 0):
        raise ValueError("times must increase strictly within each series.")
    model.set_scaling(obs.mean(0), obs.std(0).clamp_min(1e-6), float(gaps.mean()))
    target = (values[:, 1:] - model.loc) / model.scale
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
    gen = torch.Generator().manual_seed(int(seed))
    losses = []
    n = values.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = _masked_mse(model(values[idx], times[idx], lengths[idx]), target[idx],
                               lengths[idx])
            opt.zero_grad()
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        losses.append(total / n)
    model.eval()
    return TrainResult(losses, time.perf_counter() - start)


def _pad(groups: Sequence[np.ndarray], fill_last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Stack 1-D or 2-D arrays of different lengths, padded at the end; return ``(arr, lens)``."""
    lens = np.array([len(g) for g in groups], dtype=np.int64)
    shape = (len(groups), int(lens.max(initial=0)), *groups[0].shape[1:])
    out = np.zeros(shape, dtype=np.float32)
    for i, g in enumerate(groups):
        out[i, :len(g)] = g
        if fill_last and 0 < len(g) < shape[1]:
            out[i, len(g):] = g[-1]
    return out, lens


class GapRNNForecaster:
    """Long-frame adapter for :class:`GapGRU`: fit on observations, extrapolate to query rows.

    Parameters
    ----------
    hidden, head_units, residual
        Sizes of :class:`GapGRU`.
    epochs, lr, batch_size, lr_decay, grad_clip
        Training settings of :func:`train_gap_gru`.
    seed : int
        Seed of the initial weights and of the batch order.
    n_threads : int
        torch intra-op threads while fitting and predicting (the caller's setting is restored).
    """

    def __init__(self, hidden: int = 32, head_units: int = 32, residual: bool = True,
                 epochs: int = 100, lr: float = 1e-2, batch_size: int = 50,
                 lr_decay: float = 1.0, grad_clip: float | None = 1.0, seed: int = 0,
                 n_threads: int = 1) -> None:
        self.hidden, self.head_units, self.residual = hidden, head_units, residual
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.lr_decay, self.grad_clip, self.seed, self.n_threads = (lr_decay, grad_clip, seed,
                                                                    n_threads)

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (as stored)."""
        return {k: getattr(self, k) for k in ("hidden", "head_units", "residual", "epochs", "lr",
                                              "batch_size", "lr_decay", "grad_clip", "seed",
                                              "n_threads")}

    def _series(self, frame: pd.DataFrame) -> tuple[list[Any], list[np.ndarray],
                                                     list[np.ndarray]]:
        """Per-series times and values of ``frame`` (order of first appearance), checked."""
        missing = [c for c in (self.time_col_, self.id_col_, *self.value_cols_)
                   if c not in frame.columns]
        if missing:
            raise ValueError(f"columns {missing} are missing from the frame.")
        ids, times, values = [], [], []
        for sid, g in frame.groupby(self.id_col_, sort=False):
            g = g.sort_values(self.time_col_, kind="stable")
            t = g[self.time_col_].to_numpy(np.float64)
            v = g[list(self.value_cols_)].to_numpy(np.float64)
            if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
                raise ValueError(f"series {sid!r} has a missing or non-finite time or value "
                                 "(this baseline reads complete rows).")
            if np.any(np.diff(t) <= 0):
                raise ValueError(f"series {sid!r} has two rows at the same time.")
            ids.append(sid)
            times.append(t)
            values.append(v)
        if not ids:
            raise ValueError("the frame has no rows.")
        return ids, times, values

    def fit(self, frame: pd.DataFrame, *, time_col: str = "t", id_col: str = "id",
            value_cols: Sequence[str] | None = None) -> GapRNNForecaster:
        """Train on the observations of ``frame`` (one row per observation, no missing values).

        Parameters
        ----------
        frame : pandas.DataFrame
            Long frame; not modified.
        time_col, id_col : str
            Names of the time and series-id columns.
        value_cols : sequence of str or None
            Value columns (None: every other column).

        Returns
        -------
        GapRNNForecaster
            ``self``, with ``model_``, ``losses_`` and ``fit_s_`` set.
        """
        from latentode.utils import torch_seeded, torch_threads

        self.time_col_, self.id_col_ = time_col, id_col
        self.value_cols_ = tuple(value_cols if value_cols is not None else
                                 [c for c in frame.columns if c not in (time_col, id_col)])
        _, times, values = self._series(frame)
        t, lens = _pad(times)
        v, _ = _pad(values)
        with torch_threads(self.n_threads):
            with torch_seeded(self.seed):
                self.model_ = GapGRU(len(self.value_cols_), self.hidden, self.head_units,
                                     self.residual)
            res = train_gap_gru(self.model_, torch.from_numpy(v), torch.from_numpy(t),
                                torch.from_numpy(lens), epochs=self.epochs, lr=self.lr,
                                batch_size=self.batch_size, lr_decay=self.lr_decay,
                                grad_clip=self.grad_clip, seed=self.seed)
        self.losses_, self.fit_s_ = res.losses, res.fit_s
        return self

    def predict(self, observed: pd.DataFrame, query: pd.DataFrame) -> pd.DataFrame:
        """Predict the value columns at ``query``'s rows from each series' ``observed`` rows.

        Parameters
        ----------
        observed : pandas.DataFrame
            Conditioning observations (same columns as in ``fit``).
        query : pandas.DataFrame
            Rows ``id, t`` to predict; every time must lie after its series' last observation,
            and every id must have observations.

        Returns
        -------
        pandas.DataFrame
            A copy of ``query`` (same index and row order) with the value columns predicted.
        """
        from latentode.utils import torch_threads

        if not hasattr(self, "model_"):
            raise ValueError("this GapRNNForecaster is not fitted yet; call fit first.")
        ids, times, values = self._series(observed)
        pos = {sid: i for i, sid in enumerate(ids)}
        q_id = query[self.id_col_].to_numpy()
        q_t = query[self.time_col_].to_numpy(np.float64)
        unknown = [sid for sid in dict.fromkeys(q_id.tolist()) if sid not in pos]
        if unknown:
            raise ValueError(f"query series {unknown[:3]} have no observations.")
        series = np.array([pos[sid] for sid in q_id], dtype=np.int64)
        order = np.lexsort((q_t, series))
        futures, rows = [], []
        for i in range(len(ids)):
            sel = order[series[order] == i]
            if len(sel) and q_t[sel[0]] <= times[i][-1]:
                raise ValueError(f"query time {q_t[sel[0]]} of series {ids[i]!r} is not after "
                                 f"its last observation ({times[i][-1]}): this baseline only "
                                 "extrapolates.")
            if len(sel) and np.any(np.diff(q_t[sel]) <= 0):
                raise ValueError(f"series {ids[i]!r} has two query rows at the same time.")
            futures.append(q_t[sel] if len(sel) else times[i][-1:] + 1.0)
            rows.append(sel)
        t, lens = _pad(times)
        v, _ = _pad(values)
        f, _ = _pad(futures, fill_last=True)
        with torch_threads(self.n_threads), torch.no_grad():
            pred = self.model_.extrapolate(torch.from_numpy(v), torch.from_numpy(t),
                                           torch.from_numpy(lens), torch.from_numpy(f)).numpy()
        out = np.full((len(query), len(self.value_cols_)), math.nan)
        for i, sel in enumerate(rows):
            out[sel] = pred[i, :len(sel)]
        result = query.copy()
        for j, col in enumerate(self.value_cols_):
            result[col] = out[:, j]
        return result

