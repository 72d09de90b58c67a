"""Validation of long-format frames: one row per observation, NaN where a channel is unobserved.

:func:`validate_frame` checks a caller's :class:`pandas.DataFrame` (never modifying it), sorts its
rows by ``(series id, time)``, merges duplicate ``(id, time)`` rows and returns a
:class:`ValidatedFrame`: numpy arrays with one *slot* per distinct ``(series, time)`` pair plus the
mapping from every original row to its slot, so that outputs can be aligned back with the caller's
index and row order. No row is ever dropped silently: ``empty_series="drop"`` (used to fit) leaves
out the series without any observed target value and reports their ids in
``ValidatedFrame.dropped_series``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._sort import lex_order
from .scaling import channel_moments

__all__ = ["ValidatedFrame", "validate_frame"]

_SHOW = 5  # how many offending labels / ids an error message lists
_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # nanoseconds per datetime64 unit


@dataclass(frozen=True, eq=False)
class ValidatedFrame:
    """A validated long frame, sorted by ``(series, time)`` with duplicate rows merged.

    A *slot* is one distinct ``(series, time)`` pair. Slots are ordered by series code, then
    time, so the slots of series ``s`` are contiguous and ascending in time.

    Attributes
    ----------
    series_ids : numpy.ndarray
        ``(S,)`` the distinct series ids, sorted as by ``pandas.factorize(ids, sort=True)``
        (order of first appearance if they cannot be ordered). ``[0]`` when ``id_col`` is
        None.
    series_codes : numpy.ndarray
        ``(R,)`` int64, the series of each slot: an index into ``series_ids``; non-decreasing.
    times : pandas.Index
        ``(R,)`` the time of each slot in the caller's units: a float64 :class:`pandas.Index`
        for a numeric time column, a :class:`pandas.DatetimeIndex` (with the column's timezone,
        if any) for a datetime one. Feed it to :class:`~latentode.data.TimeEncoder`.
    values : numpy.ndarray
        ``(R, C)`` float64 target values, NaN where unobserved. Duplicate rows are merged by
        averaging each channel over its non-NaN values.
    row_slot : numpy.ndarray
        ``(n_rows,)`` int64, the slot of each original row, in the caller's (positional) row
        order: the value of original row ``i`` for channel ``c`` is ``values[row_slot[i], c]``.
    row_index : pandas.Index
        The caller's index (its labels, in the caller's order).
    target_cols : list
        The target column names, in channel order.
    time_col : Hashable
        Name of the time column.
    id_col : Hashable or None
        Name of the id column (None: the frame is a single series).
    time_kind : {"numeric", "datetime"}
        Whether the time column is numeric or datetime64.
    n_duplicates : int
        Number of rows merged into another row with the same ``(id, time)``
        (``n_rows - n_slots``).
    dropped_series : numpy.ndarray
        Ids of the series left out because none of their target values is observed
        (``empty_series="drop"``); their rows are not part of the frame (``n_rows`` and
        ``row_index`` count the kept rows only). Empty otherwise.
    """

    series_ids: np.ndarray
    series_codes: np.ndarray
    times: pd.Index
    values: np.ndarray
    row_slot: np.ndarray
    row_index: pd.Index
    target_cols: list[Hashable]
    time_col: Hashable
    id_col: Hashable | None
    time_kind: Literal["numeric", "datetime"]
    n_duplicates: int
    dropped_series: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    @property
    def n_series(self) -> int:
        """Number of distinct series ``S``."""
        return len(self.series_ids)

    @property
    def n_slots(self) -> int:
        """Number of distinct ``(series, time)`` pairs ``R``."""
        return len(self.series_codes)

    @property
    def n_rows(self) -> int:
        """Number of rows of the original frame."""
        return len(self.row_slot)

    @property
    def n_channels(self) -> int:
        """Number of target channels ``C``."""
        return int(self.values.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """``(S,)`` int64, number of slots (distinct times) of each series."""
        return np.bincount(self.series_codes, minlength=self.n_series).astype(np.int64)

    @property
    def n_observed_points(self) -> np.ndarray:
        """``(S,)`` int64, number of time points of each series with an observed value."""
        slot_observed = self.observed.any(axis=1)
        return np.bincount(self.series_codes, weights=slot_observed,
                           minlength=self.n_series).astype(np.int64)

    @property
    def observed(self) -> np.ndarray:
        """``(R, C)`` bool, True where a value is observed (not NaN)."""
        return ~np.isnan(self.values)

    @property
    def row_series_codes(self) -> np.ndarray:
        """``(n_rows,)`` int64, the series code of each original row."""
        return self.series_codes[self.row_slot]

    def lookup_series(self, ids: Any) -> np.ndarray:
        """Series codes of ``ids`` (e.g. the id column of a query frame); -1 for unknown ids.

        Parameters
        ----------
        ids : array-like
            Series ids.

        Returns
        -------
        numpy.ndarray
            int64 codes, indices into ``series_ids``.
        """
        ids = ids if isinstance(ids, (pd.Series, pd.Index)) else pd.Index(np.ravel(ids))
        return pd.Index(self.series_ids).get_indexer(ids).astype(np.int64)

    @property
    def tz(self) -> Any:
        """Timezone of a datetime time column, else None."""
        return getattr(self.times, "tz", None)


def validate_frame(
    df: pd.DataFrame,
    *,
    time_col: Hashable,
    id_col: Hashable | None,
    target_cols: Sequence[Hashable] | None = None,
    expected_targets: Sequence[Hashable] | None = None,
    empty_series: Literal["raise", "keep", "drop"] = "raise",
    empty_channels: Literal["raise", "keep"] = "keep",
    min_points: int = 1,
    exclude: Sequence[Hashable] = (),
) -> ValidatedFrame:
    """Check a long-format frame and convert it to sorted, de-duplicated arrays.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observation time: an id column (optional), a time column and target
        columns with NaN where a channel was not measured. Never modified. Rows may come in any
        order; extra columns are ignored.
    time_col : Hashable
        Time column: numeric (int / float, including nullable dtypes) or datetime64
        (timezone-aware allowed). Strings are not parsed: convert them with
        :func:`pandas.to_datetime` first.
    id_col : Hashable or None
        Series id column (any hashable values, no missing ones). None: the frame holds one
        series, whose id is ``0``.
    target_cols : sequence of Hashable, optional
        Channels to model. Default: every numeric column but the id and time columns (bool
        columns count as numeric and become 0.0 / 1.0; object / string / categorical /
        datetime columns are never targets). When the targets are chosen this way, one
        warning names the columns left out (pointing out numbers stored as strings) and the
        columns taken although they look like bookkeeping (bool flags, integer columns with a
        distinct value on every row, such as a row id).
    expected_targets : sequence of Hashable, optional
        The channels a fitted model expects (at predict time). They must all be present;
        missing ones raise. If ``target_cols`` is None, ``expected_targets`` is used as
        ``target_cols``; if both are given they must be equal.
    empty_series : {"raise", "keep", "drop"}, default="raise"
        What to do with a series none of whose target values is observed: raise a ValueError
        naming it, keep it (exempt from ``min_points``), or leave its rows out of the result
        (their ids are in ``ValidatedFrame.dropped_series``; a frame whose series are all
        empty still raises).
    empty_channels : {"raise", "keep"}, default="keep"
        ``"raise"``: a target column without any observed value is a ValueError naming it
        (a model cannot learn a channel it never sees).
    min_points : int, default=1
        Minimum number of distinct time points with at least one observed value per series
        (empty series excepted, see ``empty_series``).
    exclude : sequence of Hashable, default=()
        Columns never taken as targets when ``target_cols`` is None (e.g. static covariates).

    Returns
    -------
    ValidatedFrame
        Sorted arrays plus the mapping from each original row to its ``(series, time)`` slot.

    Raises
    ------
    TypeError
        If ``df`` is not a DataFrame.
    ValueError
        With a message naming the offending column, series ids or row labels, for: an empty
        frame; a ``time_col`` or ``id_col`` that is not one column name (e.g. a list); unknown
        or duplicated columns; no (or non-numeric) target columns; a time column that is
        neither numeric nor datetime64, or holds NaN / NaT / inf, or datetimes outside the
        nanosecond range (years 1677 to 2262); missing or unhashable ids; inf target values;
        values so large that their column's mean or variance overflows (they could not be
        standardised; the row of the largest one is named); series without observations
        (``empty_series="raise"``) or with fewer than ``min_points`` observed time points;
        target columns without observations (``empty_channels="raise"``).

    Warns
    -----
    UserWarning
        Once, if rows with the same ``(id, time)`` were merged (the message gives the count).
        Once, if the targets were chosen automatically and some columns were left out or look
        like bookkeeping rather than measurements (see ``target_cols``).

    Notes
    -----
    Rows are sorted by ``(series id, time)`` with a stable sort. Duplicate ``(id, time)`` rows
    are merged into one slot whose value in each channel is the mean of the rows' non-NaN
    values (NaN if none); every original row still maps to the merged slot through
    ``row_slot``.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    if len(df) == 0 or df.shape[1] == 0:
        raise ValueError("The DataFrame is empty: it needs at least one row and some columns.")
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) or (
            min_points < 0):
        raise ValueError(f"min_points must be an integer >= 0, got {min_points!r}.")
    if empty_series not in ("raise", "keep", "drop"):
        raise ValueError(
            f"empty_series must be 'raise', 'keep' or 'drop', got {empty_series!r}.")
    if empty_channels not in ("raise", "keep"):
        raise ValueError(f"empty_channels must be 'raise' or 'keep', got {empty_channels!r}.")

    for name, value in (("time_col", time_col), ("id_col", id_col)):
        if not isinstance(value, Hashable):
            hint = (" To identify series by several columns, combine them into one, e.g. "
                    "df['key'] = list(zip(df['a'], df['b']))." if name == "id_col" else "")
            raise ValueError(f"{name} must be one column name, got {value!r}.{hint}")
    columns = df.columns
    levels = [n for n in (time_col, id_col) if n is not None and n not in columns
              and n in df.index.names]
    one = len(levels) == 1
    index_hint = (f" {_fmt(levels)} {'is an index level' if one else 'are index levels'} of "
                  f"the frame: move {'it' if one else 'them'} to the columns with "
                  "df.reset_index()." if levels else "")
    _check_present(columns, [time_col], "time column", hint=index_hint)
    if id_col is not None:
        _check_present(columns, [id_col], "id column",
                       hint=index_hint or " If the frame holds a single series, pass "
                                          "id_col=None.")
        if id_col == time_col:
            raise ValueError(f"id_col and time_col are the same column {time_col!r}.")
    targets = _resolve_targets(df, time_col, id_col, target_cols, expected_targets, exclude)
    used = [time_col] + ([id_col] if id_col is not None else []) + targets
    dup_cols = [c for c in used if int((columns == c).sum()) > 1]
    if dup_cols:
        raise ValueError(f"The DataFrame has several columns named {_fmt(dup_cols)}.")

    index = df.index
    time_kind, times, key = _read_times(df[time_col], time_col, index)
    big_ints = _big_integer_times(df[time_col]) if time_kind == "numeric" else None
    codes, series_ids = _read_ids(df, id_col, index)
    values = _read_targets(df, targets, index)
    if empty_channels == "raise":
        _check_channels_observed(values, targets)

    dropped = np.array([], dtype=object)
    row_observed = ~np.isnan(values).all(axis=1)
    has_obs = np.bincount(codes, weights=row_observed, minlength=len(series_ids)) > 0
    if empty_series == "drop" and not has_obs.all():
        if not has_obs.any():
            raise ValueError(
                f"No series has an observed value of the target columns {_fmt(targets, 20)}: "
                f"all {len(series_ids)} series are empty."
            )
        dropped = series_ids[~has_obs]
        keep = has_obs[codes]
        new_code = np.cumsum(has_obs) - 1
        codes, series_ids = new_code[codes[keep]], series_ids[has_obs]
        times, key, values, index = times[keep], key[keep], values[keep], index[keep]
        big_ints = None if big_ints is None else big_ints[keep]

    # stable sort by (series, time); `key` is an exact sort key (float64 or int64 nanoseconds)
    order = lex_order(codes, key)
    k_sorted, c_sorted = key[order], codes[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (c_sorted[1:] != c_sorted[:-1]) | (k_sorted[1:] != k_sorted[:-1])
    starts = np.flatnonzero(new)
    slot_of_sorted = np.cumsum(new) - 1
    row_slot = np.empty(len(order), dtype=np.int64)
    row_slot[order] = slot_of_sorted
    v_sorted = values[order]
    n_duplicates = len(order) - len(starts)
    if n_duplicates and big_ints is not None:
        _check_merged_integer_times(big_ints, order, new, time_col, index)
    if n_duplicates:
        observed = ~np.isnan(v_sorted)
        sums = np.add.reduceat(np.where(observed, v_sorted, 0.0), starts, axis=0)
        counts = np.add.reduceat(observed.astype(np.int64), starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            slot_values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        warnings.warn(
            f"{n_duplicates} duplicate ({'id, ' if id_col is not None else ''}time) rows were "
            f"merged into {int((np.diff(np.append(starts, len(order))) > 1).sum())} time points "
            "by averaging each column over its non-missing values (first duplicate: row "
            f"{_fmt([index[order[np.argmin(new)]]])}).",
            UserWarning,
            stacklevel=external_stacklevel(),
        )
    else:
        slot_values = v_sorted
    slot_codes = c_sorted[starts].astype(np.int64)
    slot_times = times[order[starts]]

    _check_observed(slot_values, slot_codes, series_ids, id_col, empty_series == "raise",
                    min_points)
    return ValidatedFrame(
        series_ids=series_ids,
        series_codes=slot_codes,
        times=slot_times,
        values=np.ascontiguousarray(slot_values, dtype=np.float64),
        row_slot=row_slot,
        row_index=index.copy(),
        target_cols=list(targets),
        time_col=time_col,
        id_col=id_col,
        time_kind=time_kind,
        n_duplicates=int(n_duplicates),
        dropped_series=dropped,
    )


# ---------------------------------------------------------------------------- helpers
def _fmt(items: Sequence[Any], limit: int = _SHOW) -> str:
    """``'a', 'b', ... (N in total)`` for error messages."""
    items = list(items)
    shown = ", ".join(repr(_plain(i)) for i in items[:limit])
    if len(items) > limit:
        shown += f", ... ({len(items)} in total)"
    return shown


def fmt_ids(ids: Sequence[Any], limit: int = _SHOW) -> str:
    """``'a', 'b', ...``: the first ``limit`` ids of a message (warnings and query errors);
    numpy scalars are shown as Python ones (``0``, not ``np.int64(0)``)."""
    ids = list(ids)
    shown = ", ".join(repr(_plain(i)) for i in ids[:limit])
    return shown + (", ..." if len(ids) > limit else "")


def dropped_series_message(vf: ValidatedFrame, left_out_of: str) -> str:
    """``'N series have no observed value of the target columns ... and were left out of
    LEFT_OUT_OF: ids (column 'id')'``: the warning (without its end) about the series of
    ``vf`` without an observed target value (``vf.dropped_series``, not empty)."""
    n = len(vf.dropped_series)
    where = "" if vf.id_col is None else f" (column {vf.id_col!r})"
    return (f"{n} series {'has' if n == 1 else 'have'} no observed value of the target columns "
            f"{fmt_ids(list(vf.target_cols))} and {'was' if n == 1 else 'were'} left out of "
            f"{left_out_of}: {fmt_ids(list(vf.dropped_series))}{where}")


def external_stacklevel() -> int:
    """``stacklevel`` that points a warning at the first frame outside the latentode package.

    Called by the function that calls :func:`warnings.warn`, so warnings raised deep inside
    the library (through decorators and helpers) name the user's line.
    """
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _plain(x: Any) -> Any:
    """numpy scalars as Python scalars, for readable reprs."""
    return x.item() if isinstance(x, np.generic) else x


def _check_present(columns: pd.Index, names: Sequence[Hashable], what: str,
                   hint: str = "") -> None:
    missing = [c for c in names if c not in columns]
    if missing:
        available = list(columns)
        raise ValueError(
            f"Unknown {what}{'s' if len(missing) > 1 else ''} {_fmt(missing, 20)}; "
            f"available columns: {_fmt(available, 30)}.{hint}"
        )


def _resolve_targets(
    df: pd.DataFrame,
    time_col: Hashable,
    id_col: Hashable | None,
    target_cols: Sequence[Hashable] | None,
    expected_targets: Sequence[Hashable] | None,
    exclude: Sequence[Hashable] = (),
) -> list[Hashable]:
    keys = {time_col} if id_col is None else {time_col, id_col}
    if expected_targets is not None:
        expected = _as_list(expected_targets, "expected_targets")
        if target_cols is not None and _as_list(target_cols, "target_cols") != expected:
            raise ValueError(
                f"target_cols {_fmt(list(target_cols), 20)} differ from the expected targets "
                f"{_fmt(expected, 20)}."
            )
        missing = [c for c in expected if c not in df.columns]
        if missing:
            raise ValueError(
                f"Missing target column{'s' if len(missing) > 1 else ''} {_fmt(missing, 20)} "
                f"that the model was fitted with; available columns: "
                f"{_fmt(list(df.columns), 30)}."
            )
        targets = expected
    elif target_cols is not None:
        targets = _as_list(target_cols, "target_cols")
        if not targets:
            raise ValueError("target_cols is empty: give at least one target column.")
        _check_present(df.columns, targets, "target column")
    else:
        keys = keys | set(exclude)
        targets = [
            c for c in df.columns
            if c not in keys and _is_numeric_target(df[c])
        ]
        if not targets:
            raise ValueError(
                "No numeric target column found besides the id and time columns "
                f"{_fmt([k for k in (id_col, time_col) if k is not None])}; available columns: "
                f"{_fmt(list(df.columns), 30)}. Pass target_cols explicitly."
            )
        _warn_inferred_targets(df, keys, targets)
        return targets
    clash = [c for c in targets if c in keys]
    if clash:
        raise ValueError(f"Target column(s) {_fmt(clash)} are also the id or time column.")
    dup = sorted({repr(c) for c in targets if targets.count(c) > 1})
    if dup:
        raise ValueError(f"Target column(s) listed more than once: {', '.join(dup)}.")
    return targets


def _warn_inferred_targets(df: pd.DataFrame, keys: set[Hashable],
                           targets: list[Hashable]) -> None:
    """One warning naming the columns left out of inferred targets and suspicious targets."""
    left_out = []
    for c in df.columns:
        if c in keys or c in targets:
            continue
        col = df[c]
        if isinstance(col, pd.DataFrame):  # duplicated name: reported if used, else ignored
            continue
        left_out.append(f"{_plain(c)!r} ({col.dtype}{_leftout_reason(col)})")
    suspicious = []
    for c in targets:
        col = df[c]
        if isinstance(col, pd.DataFrame):
            continue
        if pd.api.types.is_bool_dtype(col.dtype):
            suspicious.append(f"{_plain(c)!r} (bool: a flag, modelled as 0.0 / 1.0)")
        elif pd.api.types.is_integer_dtype(col.dtype):
            values = col.dropna()
            if len(values) >= 3 and values.is_unique:
                kind = ("increasing by one on every row, like a row number"
                        if bool((np.diff(values.to_numpy(dtype=np.int64)) == 1).all())
                        else "a distinct value on every row, like a row id")
                suspicious.append(f"{_plain(c)!r} ({col.dtype}: {kind})")
    if not left_out and not suspicious:
        return
    message = (f"Target columns chosen automatically (target_cols=None): "
               f"{_fmt(targets, 20)}.")
    if left_out:
        message += f" Left out (not numeric): {'; '.join(left_out)}."
    if suspicious:
        message += (" Taken as targets although they look like bookkeeping rather than "
                    f"measurements: {'; '.join(suspicious)}.")
    warnings.warn(message + " Pass target_cols=[...] to choose the targets and silence this "
                  "warning.", UserWarning, stacklevel=external_stacklevel())


def _leftout_reason(col: pd.Series) -> str:
    """Why a column is not a target, with a fix when it holds numbers in disguise."""
    if pd.api.types.is_complex_dtype(col.dtype):
        return ": complex numbers"
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        sample = col.dropna()
        if len(sample) and pd.to_numeric(sample.head(1000), errors="coerce").notna().all():
            return ": numbers stored as strings; convert with pandas.to_numeric"
    return ""


def _as_list(cols: Sequence[Hashable], name: str) -> list[Hashable]:
    if isinstance(cols, (str, bytes)) or not isinstance(cols, (Sequence, pd.Index, np.ndarray)):
        raise ValueError(f"{name} must be a list of column names, got {cols!r}.")
    return list(cols)


def _is_numeric_target(col: pd.Series | pd.DataFrame) -> bool:
    if isinstance(col, pd.DataFrame):  # duplicated column name; reported later
        return True
    dtype = col.dtype
    return bool(
        pd.api.types.is_bool_dtype(dtype)
        or (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype))
    )


def _read_times(
    col: pd.Series, time_col: Hashable, index: pd.Index
) -> tuple[Literal["numeric", "datetime"], pd.Index, np.ndarray]:
    """The time column as an Index, its kind, and an exact float64 / int64 sort key."""
    dtype = col.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        times = pd.DatetimeIndex(col.array)
        bad = np.asarray(times.isna())
        if bad.any():
            raise ValueError(
                f"Time column {time_col!r} has missing (NaT) times at row(s) "
                f"{_fmt(index[bad])}."
            )
        # pandas keeps e.g. datetime64[us] beyond the nanosecond range; model time needs ns
        limit = np.iinfo(np.int64).max // _UNIT_NS[times.unit]
        out = np.abs(times.asi8) > limit
        if out.any():
            raise ValueError(
                f"Time column {time_col!r} has datetimes outside the range of nanosecond "
                f"timestamps ({pd.Timestamp.min} to {pd.Timestamp.max}) at row(s) "
                f"{_fmt(index[out])}, e.g. {times[int(np.argmax(out))]}. Shift or drop them "
                "(a sentinel date such as 9999-12-31?)."
            )
        return "datetime", times, times.asi8.copy()
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype) or (
            pd.api.types.is_complex_dtype(dtype)):
        raise ValueError(_time_dtype_message(col, time_col))
    t = col.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(t)
    if bad.any():
        raise ValueError(
            f"Time column {time_col!r} has missing or infinite times at row(s) "
            f"{_fmt(index[bad])}."
        )
    return "numeric", pd.Index(t, dtype=np.float64), t


_EXACT_FLOAT = 2.0**53  # float64 holds every integer up to this magnitude exactly


def _big_integer_times(col: pd.Series) -> np.ndarray | None:
    """The integer times of ``col`` when some lie beyond 2**53 (where float64 model time may
    merge distinct ones), else None."""
    if not pd.api.types.is_integer_dtype(col.dtype):
        return None
    ints = col.to_numpy()
    return ints if (np.abs(ints.astype(np.float64)) > _EXACT_FLOAT).any() else None


def _check_merged_integer_times(ints: np.ndarray, order: np.ndarray, new: np.ndarray,
                                time_col: Hashable, index: pd.Index) -> None:
    """Refuse rows of one series merged as duplicates although their integer times differ
    (integers beyond 2**53 that float64 model time cannot tell apart, e.g. epoch nanoseconds
    a few ns apart): they are not duplicates, and averaging them would be wrong.

    ``order`` sorts the rows by (series, time) and ``new[i]`` is False where sorted row ``i``
    merges with the one before."""
    s = ints[order]
    merged = np.flatnonzero(~new[1:] & (s[1:] != s[:-1])) + 1
    if len(merged):
        a, b = order[merged[0] - 1], order[merged[0]]
        raise ValueError(
            f"Time column {time_col!r} holds integers beyond 2**53 that float64 time cannot "
            f"tell apart: rows {_fmt([index[a], index[b]])} of one series ({ints[a]} and "
            f"{ints[b]}) would become the same time"
            f"{f' ({len(merged)} such rows)' if len(merged) > 1 else ''}. Subtract an origin "
            "first, or convert epoch integers to datetimes (pandas.to_datetime(..., "
            "unit='ns'))."
        )


def _time_dtype_message(col: pd.Series, time_col: Hashable) -> str:
    dtype = col.dtype
    head = f"Time column {time_col!r} has dtype {dtype}; it must be numeric or datetime64."
    if pd.api.types.is_timedelta64_dtype(dtype):
        return head + (" Convert durations to numbers, e.g. "
                       "df[col].dt.total_seconds() / 3600 for hours.")
    if pd.api.types.is_bool_dtype(dtype):
        return head
    kind = pd.api.types.infer_dtype(col, skipna=True)
    if kind in ("string", "bytes"):
        return head + (" It holds strings, which are not parsed implicitly: convert it with "
                       "pandas.to_datetime (or pandas.to_numeric) first.")
    if kind == "date":
        return head + (" It holds dates (datetime.date objects): convert it with "
                       "pandas.to_datetime first.")
    if kind in ("datetime", "datetime64"):
        return head + (" It is an object column of datetimes (e.g. with mixed timezones): "
                       "convert it with pandas.to_datetime(..., utc=True) first.")
    if kind in ("integer", "floating", "mixed-integer-float", "decimal"):
        return head + " It is an object column of numbers: convert it with pandas.to_numeric."
    if kind.startswith("mixed"):
        return head + (" It mixes values of different types (e.g. datetimes and numbers); "
                       "make them all datetimes (pandas.to_datetime) or all numbers.")
    return head + f" It holds values of type {kind!r}."


def _read_ids(
    df: pd.DataFrame, id_col: Hashable | None, index: pd.Index
) -> tuple[np.ndarray, np.ndarray]:
    """Integer series codes ``(n_rows,)`` and the distinct ids ``(S,)``."""
    if id_col is None:
        return np.zeros(len(df), dtype=np.int64), np.array([0])
    ids = df[id_col]
    bad = np.asarray(ids.isna())
    if bad.any():
        raise ValueError(
            f"Id column {id_col!r} has missing ids at row(s) {_fmt(index[bad])}."
        )
    try:
        codes, uniques = pd.factorize(ids, sort=True)
    except TypeError:  # ids of mutually incomparable types: order of first appearance
        try:
            codes, uniques = pd.factorize(ids, sort=False)
        except TypeError:  # unhashable ids (lists, dicts, arrays)
            bad = np.asarray([not isinstance(i, Hashable) for i in ids], dtype=bool)
            if not bad.any():
                raise
            raise ValueError(
                f"Id column {id_col!r} has unhashable ids "
                f"({type(ids.iloc[int(np.argmax(bad))]).__name__}) at row(s) "
                f"{_fmt(index[bad])}; ids must be hashable (e.g. tuples instead of lists)."
            ) from None
    return codes.astype(np.int64), np.asarray(uniques)


def _read_targets(df: pd.DataFrame, targets: list[Hashable], index: pd.Index) -> np.ndarray:
    bad_dtype = [c for c in targets if not _is_numeric_target(df[c])]
    if bad_dtype:
        detail = ", ".join(f"{c!r} ({df[c].dtype})" for c in bad_dtype[:_SHOW])
        raise ValueError(
            f"Target columns must be numeric (or bool); non-numeric: {detail}. Convert them "
            "with pandas.to_numeric or leave them out of target_cols."
        )
    values = df[targets].to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(values)
    if inf.any():
        rows, cols = np.nonzero(inf)
        col = targets[int(cols[0])]
        at = rows[cols == cols[0]]
        raise ValueError(
            f"Target column {col!r} has infinite values at row(s) {_fmt(index[at])}; use NaN "
            "for unobserved values."
        )
    _, mean, var = channel_moments(values)
    bad = ~(np.isfinite(mean) & np.isfinite(var))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        row = int(np.nanargmax(np.abs(values[:, j])))
        raise ValueError(
            f"Target column {targets[j]!r} has values too large to standardise (their mean or "
            f"variance overflows float64), e.g. {values[row, j]:.6g} at row "
            f"{_fmt([index[row]])}. Rescale the column (e.g. change its unit) or set invalid "
            "values to NaN."
        )
    return values


def _check_channels_observed(values: np.ndarray, targets: list[Hashable]) -> None:
    empty = np.isnan(values).all(axis=0)
    if empty.any():
        names = [targets[j] for j in np.flatnonzero(empty)]
        raise ValueError(
            f"Target column{'s' if len(names) > 1 else ''} {_fmt(names, 20)} "
            f"{'have' if len(names) > 1 else 'has'} no observed value (all NaN): a model cannot "
            f"learn a channel it never sees. Leave {'them' if len(names) > 1 else 'it'} out of "
            "target_cols or add observations."
        )


def _check_observed(
    values: np.ndarray,
    codes: np.ndarray,
    series_ids: np.ndarray,
    id_col: Hashable | None,
    require_observed: bool,
    min_points: int,
) -> None:
    n_series = len(series_ids)
    slot_observed = (~np.isnan(values)).any(axis=1)
    n_obs = np.bincount(codes, weights=slot_observed, minlength=n_series).astype(np.int64)
    where = f" (column {id_col!r})" if id_col is not None else ""
    empty = n_obs == 0
    if require_observed and empty.any():
        raise ValueError(
            f"{int(empty.sum())} series have no observed target value: {_fmt(series_ids[empty])}"
            f"{where}. Every series needs at least one non-missing value."
        )
    short = (n_obs < min_points) & ~empty  # empty series: allowed when not require_observed
    if short.any():
        raise ValueError(
            f"{int(short.sum())} series have fewer than {min_points} observed time points: "
            f"{_fmt(series_ids[short])}{where}."
        )
