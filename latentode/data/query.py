"""Query rows: where to predict, in the caller's units, and how predictions come back to rows.

Prediction asks a model for values at *query rows* ``[id, time]``: the rows of the caller's
frame (reconstruction, imputation), a forecast grid after each series' last observation, or
times the caller gives. This module builds those rows (pandas / numpy only, no torch):

* :func:`horizon_delta` / :func:`horizon_step` read a forecast horizon (a number in the time
  column's unit, or for datetimes a Timedelta or a number in the time encoder's unit);
* :func:`forecast_origins` finds each series' last observed time;
* :func:`query_frame` builds the ``[id, time]`` rows of a forecast grid or of explicit times;
* :func:`rows_query`, :func:`encode_query` and :func:`build_query` turn rows into a
  :class:`Query` (series codes and model times);
* :func:`plan_query` pads the distinct query times of the series that can be conditioned
  (:func:`~latentode.data.pad_query_times`) into a :class:`QueryPlan`, whose
  :meth:`QueryPlan.gather_rows` reads *packed* predictions (one per distinct query point, series
  by series, times ascending) back in the query rows' order.
"""

from __future__ import annotations

import datetime
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .padding import pad_query_times
from .validation import _plain, fmt_ids

if TYPE_CHECKING:  # pragma: no cover
    from .time import TimeEncoder
    from .validation import ValidatedFrame

#: largest magnitude of a model time (float32, the networks' dtype, as ``pad_frame`` checks)
_MODEL_TIME_MAX = float(np.finfo(np.float32).max)

__all__ = [
    "Query",
    "QueryPlan",
    "build_query",
    "encode_query",
    "forecast_origins",
    "horizon_delta",
    "horizon_step",
    "plan_query",
    "query_frame",
    "rows_query",
]


# ---------------------------------------------------------------------------- horizons
def horizon_delta(horizon: Any, time_kind: str, unit: str | None = None) -> float | pd.Timedelta:
    """A forecast horizon, checked, as a float (numeric times) or a Timedelta (datetimes).

    Parameters
    ----------
    horizon : float, pandas.Timedelta or str
        For a numeric time column: a positive finite number in the column's unit. For a datetime
        one: anything :func:`pandas.to_timedelta` reads (``pd.Timedelta(hours=2)``,
        ``numpy.timedelta64(2, "h")``, ``datetime.timedelta``, ``"90min"``) or a number in
        ``unit``.
    time_kind : {"numeric", "datetime"}
        The kind of the time column (``ValidatedFrame.time_kind``, ``TimeEncoder.kind_``).
    unit : str, optional
        The unit of a number given for a datetime column (``TimeEncoder.unit``, e.g. ``"h"``).

    Returns
    -------
    float or pandas.Timedelta
        The horizon, ``> 0``.

    Raises
    ------
    ValueError
        If the horizon is not positive, not finite, of the wrong kind for the time column, or
        a number for a datetime column without ``unit``.

    Examples
    --------
    >>> horizon_delta(2, "numeric"), horizon_delta(1.5, "datetime", "h")
    (2.0, Timedelta('0 days 01:30:00'))
    """
    # numpy.timedelta64 subclasses numpy.signedinteger, hence numbers.Real: a duration first
    is_duration = isinstance(horizon, (np.timedelta64, pd.Timedelta, datetime.timedelta))
    if time_kind == "datetime":
        if isinstance(horizon, numbers.Real) and not isinstance(horizon, bool) and (
                not is_duration):
            if unit is None:
                raise ValueError("A float horizon needs the time encoder's unit; pass a Timedelta.")
            try:
                td = pd.to_timedelta(float(horizon), unit=unit)
            except (OverflowError, ValueError) as exc:  # OutOfBoundsTimedelta, NaN
                raise ValueError(
                    f"horizon must be a positive finite duration of at most "
                    f"{pd.Timedelta.max}, got {horizon!r} {unit}."
                ) from exc
        else:
            try:
                td = pd.to_timedelta(horizon)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"horizon must be a positive Timedelta (or a float in unit {unit!r}) for a "
                    f"datetime time column, got {horizon!r}."
                ) from exc
        if not td > pd.Timedelta(0):
            raise ValueError(f"horizon must be positive, got {horizon!r}.")
        return td
    if isinstance(horizon, bool) or is_duration or not isinstance(horizon, numbers.Real) or not (
            math.isfinite(horizon) and horizon > 0):
        raise ValueError(
            f"horizon must be a positive finite number (in the time column's unit), got "
            f"{horizon!r}."
        )
    return float(horizon)


def horizon_step(horizon: Any, n_points: Any, time_kind: str,
                 unit: str | None = None) -> float | pd.Timedelta:
    """Spacing of a forecast grid of ``n_points`` times: ``horizon / n_points``.

    Parameters
    ----------
    horizon : float, pandas.Timedelta or str
        As in :func:`horizon_delta`.
    n_points : int
        Number of grid times, ``>= 1``.
    time_kind : {"numeric", "datetime"}
    unit : str, optional
        As in :func:`horizon_delta`.

    Returns
    -------
    float or pandas.Timedelta
        The step (for datetimes a Timedelta, rounded at the horizon's resolution).

    Raises
    ------
    ValueError
        For a bad ``n_points`` (checked first) or horizon.
    """
    _check_n_points(n_points)
    return horizon_delta(horizon, time_kind, unit) / int(n_points)


def _check_n_points(n_points: Any) -> None:
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 1:
        raise ValueError(f"n_points must be an integer >= 1, got {n_points!r}.")


# ---------------------------------------------------------------------------- query rows
def forecast_origins(vf: ValidatedFrame) -> tuple[np.ndarray, pd.Index]:
    """Each series' last observed time, series in the order of their first row in the frame.

    Parameters
    ----------
    vf : ValidatedFrame
        The validated frame whose series are forecast.

    Returns
    -------
    codes : numpy.ndarray
        int64 series codes (into ``vf.series_ids``): the order of first appearance in the
        caller's rows (``[0]`` for a frame without an id column).
    last : pandas.Index
        The time of each series' last slot with an observed value, in the caller's units (a
        float Index or a DatetimeIndex); for a series with nothing observed, its last row's time.
    """
    slot = np.arange(vf.n_slots)
    rank = np.where(vf.observed.any(axis=1), slot + vf.n_slots, slot)
    last_slot = pd.Series(rank).groupby(vf.series_codes).max().to_numpy() % vf.n_slots
    if vf.id_col is None:
        codes = np.array([0], dtype=np.int64)
    else:
        codes = pd.unique(vf.row_series_codes).astype(np.int64)
    return codes, vf.times[last_slot[codes]]


def query_frame(
    vf: ValidatedFrame,
    *,
    times: Any = None,
    horizon: Any = None,
    n_points: Any = None,
    unit: str | None = None,
    id_dtype: Any = None,
) -> pd.DataFrame:
    """Rows ``[id, time]`` (caller's units) of a forecast grid or of explicit times.

    Parameters
    ----------
    vf : ValidatedFrame
        The conditioning frame (its series, time column and time kind).
    times : array-like or pandas.DataFrame, optional
        A DataFrame with the id (if any) and time columns: its rows, index and order kept.
        An array of times (numbers, or datetimes for a datetime column; naive datetimes take
        the column's timezone): the same times for every series. When given, ``horizon`` and
        ``n_points`` are ignored.
    horizon, n_points : optional
        Without ``times``: ``n_points`` equally spaced times in ``(last, last + horizon]``
        after each series' last observed time (:func:`forecast_origins`,
        :func:`horizon_step`).
    unit : str, optional
        Unit of a numeric horizon for a datetime column (``TimeEncoder.unit``).
    id_dtype : dtype, optional
        Dtype of the id column of the result (the caller's id column's); default that of
        ``vf.series_ids``.

    Returns
    -------
    pandas.DataFrame
        For the grid or an array: series in the order of their first row in the frame, each
        with its times in the given order, and a RangeIndex.

    Raises
    ------
    ValueError
        If the times DataFrame lacks a column, the array is empty or of the wrong kind (numbers
        for a datetime column, datetimes for a numeric one), the horizon / ``n_points`` are
        invalid, or the grid passes the last datetime pandas can hold
        (:attr:`pandas.Timestamp.max`).
    """
    time_col, id_col = vf.time_col, vf.id_col
    key_cols = ([id_col] if id_col is not None else []) + [time_col]
    if isinstance(times, pd.DataFrame):
        missing = [c for c in key_cols if c not in times.columns]
        if missing:
            raise ValueError(f"The times DataFrame lacks the column(s) {missing}.")
        return times[key_cols].copy()
    order, last = forecast_origins(vf)
    is_datetime = vf.time_kind == "datetime"
    if times is not None:
        grid = np.asarray(times).ravel()
        if len(grid) == 0:
            raise ValueError("times is empty.")
        if is_datetime:
            # numbers would be read as nanoseconds since 1970: never a time the caller meant
            if grid.dtype.kind in "biufc" or (grid.dtype == object and pd.api.types.infer_dtype(
                    grid, skipna=True) in ("integer", "floating", "mixed-integer-float",
                                           "boolean", "decimal")):
                raise ValueError(
                    f"times must be datetimes like the time column {time_col!r}, got numbers "
                    f"({grid[:3].tolist()}); give datetimes (pandas.to_datetime) or use "
                    "horizon= for times after each series' last observation."
                )
            grid = pd.DatetimeIndex(grid)
            if grid.tz is None and vf.tz is not None:
                grid = grid.tz_localize(vf.tz)
            steps: Any = grid[np.tile(np.arange(len(grid)), len(order))]
        else:
            if grid.dtype.kind not in "iuf":
                raise ValueError(
                    f"times must be numbers like the time column {time_col!r}, got dtype "
                    f"{grid.dtype}."
                )
            steps = np.tile(grid, len(order))
    else:
        step = horizon_step(horizon, n_points, vf.time_kind, unit)
        grid = np.arange(1, int(n_points) + 1)
        offsets = np.tile(grid, len(order))
        base = last.repeat(len(grid))
        if is_datetime:
            try:
                steps = base + pd.to_timedelta(offsets * step.value, unit="ns")
            except (OverflowError, pd.errors.OutOfBoundsDatetime,
                    pd.errors.OutOfBoundsTimedelta) as exc:
                raise ValueError(
                    f"The forecast grid of horizon {horizon!r} after the last observations "
                    f"(latest {last.max()}) passes the last datetime pandas can hold "
                    f"({pd.Timestamp.max}); use a smaller horizon."
                ) from exc
        else:
            steps = np.asarray(base, dtype=float) + offsets * step
    out = pd.DataFrame({time_col: steps})
    if id_col is not None:
        ids = pd.Series(np.repeat(vf.series_ids[order], len(grid)))
        out.insert(0, id_col, ids if id_dtype is None else ids.astype(id_dtype))
    return out


@dataclass(frozen=True, eq=False)
class Query:
    """Query rows with their series and model times.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows ``[id, time]`` (no id column for a single series) in the caller's units and
        in output order, with the index the output carries.
    series_codes : numpy.ndarray
        ``(Q,)`` int64, the series of each row (into ``ValidatedFrame.series_ids``).
    times : numpy.ndarray
        ``(Q,)`` float64 model time of each row (finite).
    """

    frame: pd.DataFrame
    series_codes: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.series_codes)


def rows_query(df: pd.DataFrame, vf: ValidatedFrame, encoder: TimeEncoder) -> Query:
    """The rows of the frame ``vf`` was validated from, as a :class:`Query`.

    Parameters
    ----------
    df : pandas.DataFrame
        The caller's frame (not modified; its id and time columns are copied).
    vf : ValidatedFrame
        ``df`` validated.
    encoder : TimeEncoder
        Fitted time encoder.

    Returns
    -------
    Query
        One row per row of ``df``, same index and order.
    """
    cols = ([vf.id_col] if vf.id_col is not None else []) + [vf.time_col]
    return Query(df[cols].copy(), vf.row_series_codes,
                 encoder.transform(vf.times)[vf.row_slot])


def encode_query(frame: pd.DataFrame, vf: ValidatedFrame, encoder: TimeEncoder) -> Query:
    """Series codes and model times of query rows ``[id, time]``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Query rows with the id (if any) and time columns of ``vf``; kept as the query's frame.
    vf : ValidatedFrame
        The conditioning frame: every query id must be one of its series.
    encoder : TimeEncoder
        Fitted time encoder.

    Returns
    -------
    Query

    Raises
    ------
    ValueError
        If a column is missing, there are no rows, an id is missing (naming the row) or has no
        series in ``vf`` (naming it), or a time is missing, infinite or so far from the fitted
        times that it overflows float32 once encoded (naming the row).
    """
    time_col, id_col = vf.time_col, vf.id_col
    cols = ([id_col] if id_col is not None else []) + [time_col]
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"The query times lack the column(s) {missing}.")
    if len(frame) == 0:
        raise ValueError("There are no query times to predict at.")
    if id_col is None:
        codes = np.zeros(len(frame), dtype=np.int64)
    else:
        no_id = np.asarray(frame[id_col].isna())
        if no_id.any():
            raise ValueError(
                f"Column {id_col!r} has missing query ids at row "
                f"{_plain(frame.index[int(np.argmax(no_id))])!r}."
            )
        codes = vf.lookup_series(frame[id_col])
        if (codes < 0).any():
            unknown = pd.unique(frame[id_col].to_numpy()[codes < 0])
            raise ValueError(
                f"No observations to condition on for series {fmt_ids(unknown)} "
                f"(column {id_col!r}); add their observed history to df."
            )
    times = encoder.transform(frame[time_col])
    bad = ~np.isfinite(times)
    if bad.any():
        raise ValueError(
            f"Column {time_col!r} has missing or infinite query times at row "
            f"{_plain(frame.index[int(np.argmax(bad))])!r}."
        )
    too_far = np.abs(times) > _MODEL_TIME_MAX
    if too_far.any():
        i = int(np.argmax(too_far))
        value = _plain(frame[time_col].iloc[i])
        raise ValueError(
            f"Column {time_col!r} has a query time at row {_plain(frame.index[i])!r} "
            f"({value}) that lies {abs(times[i]):.3g} typical series spans "
            "from the earliest fitted time: it overflows float32 once scaled. Ask for times "
            "nearer the data (a smaller horizon)."
        )
    return Query(frame, codes.astype(np.int64), times)


def build_query(
    df: pd.DataFrame,
    vf: ValidatedFrame,
    encoder: TimeEncoder,
    *,
    times: Any = None,
    grid: tuple[Any, Any] | None = None,
) -> Query:
    """The query of a prediction: explicit times, a forecast grid, or the rows of ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
        The conditioning frame (its id column's dtype is kept in grid rows).
    vf : ValidatedFrame
        ``df`` validated.
    encoder : TimeEncoder
        Fitted time encoder (its ``unit`` reads numeric horizons of datetime columns).
    times : array-like or pandas.DataFrame, optional
        Explicit query times (see :func:`query_frame`); take precedence over ``grid``.
    grid : (horizon, n_points), optional
        A forecast grid after each series' last observation (see :func:`query_frame`).

    Returns
    -------
    Query
        With neither ``times`` nor ``grid``: the rows of ``df`` (:func:`rows_query`).
    """
    if times is None and grid is None:
        return rows_query(df, vf, encoder)
    horizon, n_points = (None, None) if grid is None else grid
    id_dtype = None if vf.id_col is None else df[vf.id_col].dtype
    frame = query_frame(vf, times=times, horizon=horizon, n_points=n_points,
                        unit=getattr(encoder, "unit", None), id_dtype=id_dtype)
    return encode_query(frame, vf, encoder)


# ---------------------------------------------------------------------------- plan, scatter
@dataclass(frozen=True, eq=False)
class QueryPlan:
    """Which series to predict at which padded times, and the way back to the query rows.

    Built by :func:`plan_query`. A prediction is *packed* when it holds one entry per distinct
    query point: series ``0 .. B-1`` of the plan in turn, each with its ``lengths[b]`` times
    ascending (the valid prefix of ``times[b]``), ``P = lengths.sum()`` in all.

    Attributes
    ----------
    series : numpy.ndarray
        ``(B,)`` int64 ascending codes of the conditioning series to predict (queried, with an
        observation to condition on).
    times : numpy.ndarray
        ``(B, M)`` float64 distinct model query times, ascending per series, padded with the
        last valid one; ``M >= 1``.
    lengths : numpy.ndarray
        ``(B,)`` int64 number of distinct query times of each series (``>= 1``).
    row_point : numpy.ndarray
        ``(Q,)`` int64, for each query row the index of its point in the packed order; -1 for
        rows of series without an observation (predicted as ``fill_value``).
    unconditioned : numpy.ndarray
        int64 ascending codes of the queried series with nothing to condition on.
    """

    series: np.ndarray
    times: np.ndarray
    lengths: np.ndarray
    row_point: np.ndarray
    unconditioned: np.ndarray

    @property
    def n_points(self) -> int:
        """Number ``P`` of distinct query points (the length of a packed prediction)."""
        return int(self.lengths.sum())

    def gather_rows(self, packed: Any, fill_value: float = np.nan, axis: int = -2) -> np.ndarray:
        """Read a packed prediction back in the order of the query rows.

        Parameters
        ----------
        packed : array-like
            Predictions with the ``P`` packed query points along ``axis`` (e.g. ``(S, P, C)``).
        fill_value : float, default=NaN
            Value of the rows that were not predicted (``row_point == -1``).
        axis : int, default=-2
            The points' axis of ``packed``; in the result it holds the ``Q`` query rows.

        Returns
        -------
        numpy.ndarray
            ``packed`` with axis ``axis`` replaced by the query rows; its dtype can hold both
            ``packed`` and ``fill_value``.
        """
        arr = np.moveaxis(np.asarray(packed), axis, 0)
        if arr.shape[0] != self.n_points:
            raise ValueError(f"Expected {self.n_points} packed points along axis {axis}, got "
                             f"{arr.shape[0]}.")
        ok = self.row_point >= 0
        dtype = np.result_type(arr.dtype, np.asarray(fill_value).dtype)
        out = np.full((len(ok),) + arr.shape[1:], fill_value, dtype=dtype)
        out[ok] = arr[self.row_point[ok]]
        return np.moveaxis(out, 0, axis)


def plan_query(series_codes: Any, times: Any, cond_lengths: Any) -> QueryPlan:
    """Plan the prediction of query rows from conditioning series.

    Parameters
    ----------
    series_codes : array-like of int, shape (Q,)
        Conditioning series of each query row, in ``[0, len(cond_lengths))``.
    times : array-like of float, shape (Q,)
        Model time of each query row (finite); repeated ``(series, time)`` pairs share a point.
    cond_lengths : array-like of int, shape (n_series,)
        Observed time points of each conditioning series (``PaddedSeries.lengths``); rows of a
        series with none are not predicted.

    Returns
    -------
    QueryPlan

    Examples
    --------
    >>> plan = plan_query([1, 0, 1, 2], [0.5, 0.2, 0.1, 0.3], [2, 3, 0])
    >>> plan.series.tolist(), plan.lengths.tolist(), plan.row_point.tolist()
    ([0, 1], [1, 2], [2, 0, 1, -1])
    >>> plan.gather_rows(np.array([[10.0], [11.0], [12.0]]))[:, 0].tolist()
    [12.0, 10.0, 11.0, nan]
    """
    t = np.asarray(times, dtype=np.float64)
    lengths = np.asarray(cond_lengths)
    codes = np.asarray(series_codes)
    if codes.shape != t.shape or t.ndim != 1:
        raise ValueError(f"series_codes and times must have the same 1-D shape, got "
                         f"{codes.shape} and {t.shape}.")
    codes = codes.astype(np.int64, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= len(lengths)):
        raise ValueError(f"series_codes must lie in [0, {len(lengths)}).")
    live = lengths[codes] > 0
    live_rows = np.flatnonzero(live)
    needed = np.unique(codes[live_rows])
    local = np.searchsorted(needed, codes[live_rows])
    padded = pad_query_times(local, t[live_rows], len(needed))
    starts = np.cumsum(padded.lengths) - padded.lengths
    row_point = np.full(len(codes), -1, dtype=np.int64)
    row_point[live_rows] = starts[local] + padded.row_position
    return QueryPlan(series=needed.astype(np.int64), times=padded.times,
                     lengths=padded.lengths, row_point=row_point,
                     unconditioned=np.unique(codes[~live]).astype(np.int64))
