"""Naive per-series baselines: last observation carried forward, linear interpolation, mean.

Each baseline predicts, for every series and column separately, from the *visible*
(non-NaN) values of that series in ``observed``:

* with ``query=None`` the missing entries of ``observed`` itself are filled (the
  interpolation setting: a frame whose hidden values are NaN); observed entries are returned
  unchanged;
* with a ``query`` frame (``id`` and time columns, e.g. the future rows of the test series)
  every query row gets a prediction (the extrapolation setting).

A series with no visible value of a column gets NaN there, or ``fallback`` (typically the
training mean of the column).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._frames import (
    check_frame,
    float_values,
    joint_times,
    per_column,
    require_column,
    target_columns,
)

__all__ = ["locf", "linear_interpolation", "channel_mean"]


def _groups(codes: np.ndarray, n: int) -> list[np.ndarray]:
    """Row positions of each code ``0 .. n - 1``, in row order."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    return [order[bounds[k]:bounds[k + 1]] for k in range(n)]


def _output(base: pd.DataFrame, keys: Sequence[str | None], cols: Sequence[str],
            values: np.ndarray, fallback: Any) -> pd.DataFrame:
    """``base[keys]`` followed by the predicted ``cols``, NaN replaced by ``fallback``."""
    fb = per_column(fallback, cols, "fallback")
    if fb is not None:
        values = np.where(np.isnan(values), fb[None, :], values)
    out = base[[k for k in keys if k is not None and k in base.columns]].copy()
    for j, c in enumerate(cols):
        out[c] = values[:, j]
    return out


def _prepare(observed: pd.DataFrame, query: pd.DataFrame | None, columns: Any, id_col: str,
             time_col: str | None) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """Checked columns, joint id codes of ``observed`` and ``query`` and their number."""
    check_frame(observed, "observed")
    if query is not None:
        check_frame(query, "query")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    cols = target_columns(observed, columns, "observed", exclude)
    ids_obs = require_column(observed, id_col, "observed", "id")
    ids_q = ids_obs if query is None else require_column(query, id_col, "query", "id")
    codes, uniq = pd.factorize(pd.concat([ids_obs, ids_q], ignore_index=True), sort=False)
    return cols, codes[:len(observed)], codes[len(observed):], len(uniq)


def _per_series(
    observed: pd.DataFrame,
    query: pd.DataFrame | None,
    columns: Any,
    id_col: str,
    time_col: str,
    fallback: Any,
    kernel: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> pd.DataFrame:
    """Apply ``kernel(t_seen, v_seen, t_query)`` per series and column (times sorted)."""
    cols, c_obs, c_q, n = _prepare(observed, query, columns, id_col, time_col)
    t_obs, t_q = joint_times(observed, query, time_col)
    vals = float_values(observed, cols, "observed")
    fill_only = query is None
    out = vals.copy() if fill_only else np.full((len(query), len(cols)), np.nan)
    for rows_o, rows_q in zip(_groups(c_obs, n), _groups(c_q, n)):
        if len(rows_o) == 0 or len(rows_q) == 0:
            continue
        rows_o = rows_o[np.argsort(t_obs[rows_o], kind="stable")]  # ties keep the row order
        ts = t_obs[rows_o]
        for j in range(len(cols)):
            v = vals[rows_o, j]
            seen = ~np.isnan(v)
            if not seen.any():
                continue
            target = rows_q[np.isnan(vals[rows_q, j])] if fill_only else rows_q
            if len(target):
                out[target, j] = kernel(ts[seen], v[seen], t_q[target])
    return _output(observed if fill_only else query, (id_col, time_col), cols, out, fallback)


def _locf_kernel(ts: np.ndarray, vs: np.ndarray, tq: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(ts, tq, side="right") - 1
    return vs[np.maximum(idx, 0)]


def _linear_kernel(ts: np.ndarray, vs: np.ndarray, tq: np.ndarray) -> np.ndarray:
    return np.interp(tq, ts, vs)


def locf(
    observed: pd.DataFrame,
    query: pd.DataFrame | None = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str = "t",
    fallback: Any = None,
) -> pd.DataFrame:
    """Last observation carried forward, per series and column.

    At time ``t`` the prediction is the series' last visible value at a time ``<= t`` (of
    tied times, the last row); before its first visible value, that first value (carried
    backward). With ``query=None`` this is ``ffill().bfill()`` within each series sorted by
    time.

    Parameters
    ----------
    observed : pandas.DataFrame
        Long frame of the visible values (NaN = not visible). Not modified.
    query : pandas.DataFrame, optional
        Rows ``(id_col, time_col)`` to predict at; default: fill the NaN entries of
        ``observed``.
    columns : sequence of str, optional
        Columns to predict; default: every column of ``observed`` but the id and time.
    id_col, time_col : str
        Series identifier and time columns (times: numbers, datetimes or timedeltas).
    fallback : float or mapping of column to float, optional
        Value for a series without any visible value of a column (default: NaN).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``query`` (or ``observed``): the id and time columns, then ``columns``.

    Examples
    --------
    >>> obs = pd.DataFrame({"id": [1, 1, 1, 2], "t": [0.0, 1.0, 3.0, 0.0],
    ...                     "x": [np.nan, 2.0, np.nan, np.nan]})
    >>> locf(obs, fallback=0.0)["x"].tolist()
    [2.0, 2.0, 2.0, 0.0]
    >>> locf(obs, pd.DataFrame({"id": [1, 2], "t": [5.0, 5.0]}))["x"].tolist()
    [2.0, nan]
    """
    return _per_series(observed, query, columns, id_col, time_col, fallback, _locf_kernel)


def linear_interpolation(
    observed: pd.DataFrame,
    query: pd.DataFrame | None = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str = "t",
    fallback: Any = None,
) -> pd.DataFrame:
    """Linear interpolation in time, per series and column; constant beyond the ends.

    Between two visible values of a series the prediction is linear in time
    (:func:`numpy.interp`); before the first and after the last visible value it is that
    value; a single visible value is carried everywhere.

    Parameters
    ----------
    observed : pandas.DataFrame
        Long frame of the visible values (NaN = not visible). Not modified.
    query : pandas.DataFrame, optional
        Rows ``(id_col, time_col)`` to predict at; default: fill the NaN entries of
        ``observed``.
    columns : sequence of str, optional
        Columns to predict; default: every column of ``observed`` but the id and time.
    id_col, time_col : str
        Series identifier and time columns (times: numbers, datetimes or timedeltas).
    fallback : float or mapping of column to float, optional
        Value for a series without any visible value of a column (default: NaN).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``query`` (or ``observed``): the id and time columns, then ``columns``.

    Examples
    --------
    >>> obs = pd.DataFrame({"id": [1, 1, 1, 1], "t": [0.0, 1.0, 3.0, 4.0],
    ...                     "x": [1.0, np.nan, 5.0, np.nan]})
    >>> linear_interpolation(obs)["x"].tolist()
    [1.0, 2.333333333333333, 5.0, 5.0]
    """
    return _per_series(observed, query, columns, id_col, time_col, fallback, _linear_kernel)


def channel_mean(
    observed: pd.DataFrame,
    query: pd.DataFrame | None = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
    fallback: Any = None,
) -> pd.DataFrame:
    """The mean of each series' visible values, per column, at every query row.

    Parameters
    ----------
    observed : pandas.DataFrame
        Long frame of the visible values (NaN = not visible). Not modified.
    query : pandas.DataFrame, optional
        Rows to predict at (only ``id_col`` is needed); default: fill the NaN entries of
        ``observed``.
    columns : sequence of str, optional
        Columns to predict; default: every column of ``observed`` but the id and time.
    id_col : str
        Series identifier column.
    time_col : str or None
        Time column, copied to the output when present and excluded from the default
        ``columns``.
    fallback : float or mapping of column to float, optional
        Value for a series without any visible value of a column (default: NaN).

    Returns
    -------
    pandas.DataFrame
        Indexed like ``query`` (or ``observed``): the id and time columns, then ``columns``.

    Examples
    --------
    >>> obs = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 1.0, 0.0], "x": [1.0, 2.0, np.nan]})
    >>> channel_mean(obs, pd.DataFrame({"id": [1, 2], "t": [9.0, 9.0]}), fallback=7.0)
    ... # doctest: +NORMALIZE_WHITESPACE
       id    t    x
    0   1  9.0  1.5
    1   2  9.0  7.0
    """
    cols, _, _, _ = _prepare(observed, query, columns, id_col, time_col)
    float_values(observed, cols, "observed")
    means = observed.groupby(id_col, sort=False)[cols].mean()
    base = observed if query is None else query
    at = means.reindex(base[id_col]).to_numpy(np.float64)
    if query is None:
        vals = observed[cols].to_numpy(np.float64)
        at = np.where(np.isnan(vals), at, vals)
    return _output(base, (id_col, time_col), cols, at, fallback)
