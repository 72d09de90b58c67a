"""Argument checks shared by :mod:`latentode.evaluation` (long frames, columns, masks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__: list[str] = []


def check_frame(frame: Any, name: str) -> pd.DataFrame:
    """``frame`` itself if it is a DataFrame, else a ``TypeError`` naming the argument."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}.")
    return frame


def target_columns(
    frame: pd.DataFrame,
    columns: Sequence[str] | str | None,
    name: str,
    exclude: Sequence[str] = (),
) -> list[str]:
    """The scored columns: ``columns``, or every column of ``frame`` not in ``exclude``.

    Raises a ``ValueError`` naming the column when one is absent, excluded or repeated.
    """
    if columns is None:
        cols = [c for c in frame.columns if c not in set(exclude)]
    else:
        cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols:
        raise ValueError(f"no columns to evaluate in {name}; pass columns=[...].")
    seen: set[Any] = set()
    for c in cols:
        if c in exclude:
            raise ValueError(f"column {c!r} is the id or time column and cannot be evaluated.")
        if c in seen:
            raise ValueError(f"column {c!r} is listed twice in columns.")
        seen.add(c)
        if c not in frame.columns:
            raise ValueError(f"column {c!r} is not in {name} (columns: {list(frame.columns)}).")
    return cols


def require_column(frame: pd.DataFrame, col: str, name: str, what: str) -> pd.Series:
    """``frame[col]`` with no missing value; ``ValueError`` naming the column and row otherwise."""
    if col not in frame.columns:
        raise ValueError(f"{what} column {col!r} is not in {name} "
                         f"(columns: {list(frame.columns)}).")
    s = frame[col]
    na = s.isna().to_numpy()
    if na.any():
        raise ValueError(f"{what} column {col!r} of {name} is missing at row "
                         f"{frame.index[int(np.flatnonzero(na)[0])]!r}.")
    return s


def float_values(frame: pd.DataFrame, cols: Sequence[str], name: str) -> np.ndarray:
    """``frame[cols]`` as a float64 ``(n_rows, n_cols)`` array; non-numeric columns are an error."""
    for c in cols:
        s = frame[c]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            raise ValueError(f"column {c!r} of {name} must be numeric, got dtype {s.dtype}.")
    return frame[list(cols)].to_numpy(np.float64)


def prediction_values(pred: Any, cols: Sequence[str], n_rows: int, name: str) -> np.ndarray:
    """Predictions as a float64 ``(n_rows, n_cols)`` array, from a DataFrame or an array."""
    if isinstance(pred, pd.DataFrame):
        missing = [c for c in cols if c not in pred.columns]
        if missing:
            raise ValueError(f"{name} has no column {missing[0]!r} "
                             f"(columns: {list(pred.columns)}).")
        vals = float_values(pred, cols, name)
    else:
        vals = np.asarray(pred, dtype=np.float64)
        if vals.ndim == 1 and len(cols) == 1:
            vals = vals[:, None]
    if vals.shape != (n_rows, len(cols)):
        raise ValueError(f"{name} must hold one row per row of y_true and one column per "
                         f"evaluated column, shape {(n_rows, len(cols))}; got {vals.shape}.")
    return vals


def scored_mask(mask: Any, truth: np.ndarray, cols: Sequence[str], index: pd.Index
                ) -> np.ndarray:
    """The boolean ``(n_rows, n_cols)`` mask of scored entries (default: observed truth).

    A scored entry whose truth is NaN is a ``ValueError`` naming the column and the row.
    """
    if mask is None:
        return ~np.isnan(truth)
    m = mask.to_numpy() if isinstance(mask, (pd.DataFrame, pd.Series)) else np.asarray(mask)
    if m.ndim == 1 and len(cols) == 1:
        m = m[:, None]
    if m.shape != truth.shape:
        raise ValueError(f"mask must have shape (n_rows, n_columns) = {truth.shape}, "
                         f"got {m.shape}.")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask must hold booleans (or 0 / 1).")
        m = m.astype(bool)
    bad = m & np.isnan(truth)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"mask selects an entry that y_true does not observe: column "
                         f"{cols[c]!r}, row {index[r]!r}.")
    return m


def check_scored_predictions(pred: np.ndarray, mask: np.ndarray, cols: Sequence[str],
                             index: pd.Index, name: str) -> None:
    """A NaN prediction at a scored entry is a ``ValueError`` (metrics never invent values)."""
    bad = mask & ~np.isfinite(pred)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{name} is not finite at a scored entry: column {cols[c]!r}, row {index[r]!r}. "
            "Give the baseline a fallback (e.g. the training mean of each column) or leave "
            "such entries out of the mask."
        )


def per_column(value: Any, cols: Sequence[str], name: str) -> np.ndarray | None:
    """``None``, a scalar or a per-column mapping / Series as a float64 ``(n_cols,)`` array."""
    if value is None:
        return None
    if isinstance(value, (Mapping, pd.Series)):
        ser = pd.Series(value)
        missing = [c for c in cols if c not in ser.index]
        if missing:
            raise ValueError(f"{name} has no value for column {missing[0]!r}.")
        out = ser.reindex(list(cols)).to_numpy(np.float64)
    else:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 0:
            raise ValueError(f"{name} must be a number or a mapping from column to number, "
                             f"got an array of shape {arr.shape}.")
        out = np.full(len(cols), float(arr))
    return out


def time_kind(s: pd.Series) -> str:
    """``"datetime"``, ``"datetime-tz"``, ``"timedelta"`` or ``"number"``; else an error."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return "datetime-tz"
    if pd.api.types.is_datetime64_dtype(s):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(s):
        return "timedelta"
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return "number"
    raise ValueError(f"time column {s.name!r} must hold numbers, datetimes or timedeltas, "
                     f"got dtype {s.dtype}.")


def time_ns(s: pd.Series, kind: str) -> np.ndarray:
    """int64 nanoseconds of a datetime (UTC for time-zone aware ones) or timedelta column."""
    if kind == "datetime-tz":
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    unit = "timedelta64[ns]" if kind == "timedelta" else "datetime64[ns]"
    return s.to_numpy(unit).astype(np.int64)


def joint_times(
    observed: pd.DataFrame,
    query: pd.DataFrame | None,
    time_col: str,
    names: tuple[str, str] = ("observed", "query"),
) -> tuple[np.ndarray, np.ndarray]:
    """Times of both frames as float64 on one axis (datetimes: seconds from the earliest).

    ``names`` are the frames' names in error messages; ``query=None`` reads ``observed`` twice.
    """
    t_obs = require_column(observed, time_col, names[0], "time")
    t_q = t_obs if query is None else require_column(query, time_col, names[1], "time")
    kind_obs, kind_q = time_kind(t_obs), time_kind(t_q)
    if kind_obs != kind_q:
        raise ValueError(f"time column {time_col!r} has dtype {t_obs.dtype} in {names[0]} and "
                         f"{t_q.dtype} in {names[1]}; both must be numbers, naive datetimes, "
                         "time-zone aware datetimes or timedeltas alike.")
    if kind_obs == "number":
        return t_obs.to_numpy(np.float64), t_q.to_numpy(np.float64)
    ns_obs, ns_q = time_ns(t_obs, kind_obs), time_ns(t_q, kind_q)
    ref = min(int(a.min()) for a in (ns_obs, ns_q) if len(a)) if len(ns_obs) + len(ns_q) else 0
    return (ns_obs - ref) / 1e9, (ns_q - ref) / 1e9
