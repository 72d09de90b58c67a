"""Ragged series <-> padded numpy arrays (vectorised, no Python loop over series)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ._sort import lex_order

if TYPE_CHECKING:  # pragma: no cover
    from .scaling import ChannelScaler
    from .time import TimeEncoder
    from .validation import ValidatedFrame

__all__ = ["PaddedSeries", "PaddedQuery", "to_padded", "pad_frame", "subset", "pad_query_times"]


@dataclass(frozen=True, eq=False)
class PaddedSeries:
    """``B`` ragged series padded to a common length ``N`` (numpy; see :class:`Batch` for torch).

    Attributes
    ----------
    times : numpy.ndarray
        ``(B, N)`` float64 model times, ascending per series; positions past a series' length
        repeat its last valid time (0.0 for a series with no point).
    values : numpy.ndarray
        ``(B, N, C)`` floating values, 0 where unobserved or padded.
    mask : numpy.ndarray
        ``(B, N, C)`` bool, True where a value is observed.
    lengths : numpy.ndarray
        ``(B,)`` int64 number of valid time points per series.
    series_ids : numpy.ndarray
        ``(B,)`` the id of each series.
    slot_series : numpy.ndarray
        ``(R,)`` int64, for each entry given to :func:`to_padded` (a slot of a
        :class:`~latentode.data.ValidatedFrame`), the row ``b`` holding it; -1 if the entry was
        dropped (``drop_unobserved``) or its series is not in this (sub)set.
    slot_position : numpy.ndarray
        ``(R,)`` int64, the column ``n`` of each entry (-1 where ``slot_series`` is -1).
    static : numpy.ndarray or None
        ``(B, S)`` encoded static covariates of each series (see :meth:`with_series`).
    labels : numpy.ndarray or None
        ``(B,)`` int64 class index of each series (classification training).
    weights : numpy.ndarray or None
        ``(B,)`` float64 weight of each series in the classification loss.
    """

    times: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    series_ids: np.ndarray
    slot_series: np.ndarray
    slot_position: np.ndarray
    static: np.ndarray | None = None
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None

    def with_series(self, *, static: Any = None, labels: Any = None,
                    weights: Any = None) -> PaddedSeries:
        """A copy carrying per-series arrays (one row per series, in ``series_ids`` order).

        They travel with the series through :func:`subset` and into each
        :class:`~latentode.batch.Batch` of :func:`~latentode.data.iterate_batches` (``static``,
        ``labels``, ``weights``). None leaves a field as it is.
        """
        b = self.n_series
        new: dict[str, np.ndarray] = {}
        for name, value, ndim, dtype in (("static", static, 2, np.float64),
                                         ("labels", labels, 1, np.int64),
                                         ("weights", weights, 1, np.float64)):
            if value is None:
                continue
            arr = np.asarray(value, dtype=dtype)
            if arr.ndim != ndim or arr.shape[0] != b:
                raise ValueError(f"{name} must have {b} rows (one per series) and {ndim} "
                                 f"dimension(s), got shape {arr.shape}.")
            new[name] = arr
        return replace(self, **new)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    @property
    def n_series(self) -> int:
        """Number of series ``B``."""
        return int(self.times.shape[0])

    @property
    def max_length(self) -> int:
        """Padded length ``N``."""
        return int(self.times.shape[1])

    @property
    def n_channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.values.shape[2])

    def gather_slots(self, array: np.ndarray, fill_value: float = np.nan) -> np.ndarray:
        """Read a per-position array back in the order of the entries given to :func:`to_padded`.

        Parameters
        ----------
        array : numpy.ndarray
            ``(B, N, ...)`` (e.g. ``values`` or predictions at ``times``).
        fill_value : float, default=NaN
            Value for entries without a position (``slot_series == -1``).

        Returns
        -------
        numpy.ndarray
            ``(R, ...)``; combine with ``ValidatedFrame.row_slot`` to get one value per row.
        """
        array = np.asarray(array)
        if array.shape[:2] != self.times.shape:
            raise ValueError(f"Expected an array of shape {self.times.shape + ('...',)}, got "
                             f"{array.shape}.")
        ok = self.slot_series >= 0
        dtype = np.result_type(array.dtype, np.asarray(fill_value).dtype)
        out = np.full((len(ok),) + array.shape[2:], fill_value, dtype=dtype)
        out[ok] = array[self.slot_series[ok], self.slot_position[ok]]
        return out


class PaddedQuery(NamedTuple):
    """Padded query times, from :func:`pad_query_times`.

    Attributes
    ----------
    times : numpy.ndarray
        ``(B, M)`` float64 distinct query times, ascending per series, padded with the last
        valid one (0.0 for a series with no query); ``M >= 1``.
    lengths : numpy.ndarray
        ``(B,)`` int64 number of distinct query times of each series (may be 0).
    row_position : numpy.ndarray
        ``(Q,)`` int64 column of each query row: the prediction for query row ``q`` is at
        ``[series_codes[q], row_position[q]]``.
    """

    times: np.ndarray
    lengths: np.ndarray
    row_position: np.ndarray


def _check_codes(series_codes: Any, n_series: int, n: int) -> np.ndarray:
    codes = np.asarray(series_codes)
    if codes.ndim != 1 or codes.shape[0] != n:
        raise ValueError(f"series_codes must have shape ({n},), got {codes.shape}.")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"series_codes must be integers, got dtype {codes.dtype}.")
    codes = codes.astype(np.int64, copy=False)
    if codes.size and (codes.min() < 0 or codes.max() >= n_series):
        raise ValueError(f"series_codes must lie in [0, {n_series}) for n_series={n_series}.")
    return codes


def _positions(codes_sorted: np.ndarray, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    """Lengths per series and the position of each element within its series (cumcount)."""
    lengths = np.bincount(codes_sorted, minlength=n_series).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    position = np.arange(len(codes_sorted), dtype=np.int64) - starts[codes_sorted]
    return lengths, position


def _pad_times(codes: np.ndarray, position: np.ndarray, t: np.ndarray, lengths: np.ndarray,
               width: int) -> np.ndarray:
    """``(B, width)`` times, each row padded with its last valid time (0.0 if empty)."""
    last = np.zeros(len(lengths))
    nonempty = lengths > 0
    ends = np.cumsum(lengths) - 1
    last[nonempty] = t[ends[nonempty]]
    out = np.repeat(last[:, None], width, axis=1)
    out[codes, position] = t
    return out


def to_padded(
    series_codes: Any,
    times: Any,
    values: Any,
    n_series: int,
    *,
    series_ids: Any = None,
    drop_unobserved: bool = False,
    dtype: Any = np.float32,
) -> PaddedSeries:
    """Pad ragged observations into ``(B, N, ...)`` arrays, one row per series.

    Parameters
    ----------
    series_codes : array-like of int, shape (R,)
        Series of each entry, in ``[0, n_series)``. Any order.
    times : array-like of float, shape (R,)
        Model time of each entry (finite). Entries are sorted by time within each series
        (stable: equal times keep their order).
    values : array-like of float, shape (R, C)
        Values, NaN where unobserved.
    n_series : int
        Number of series ``B`` (rows of the output, including series without entries).
    series_ids : array-like, shape (n_series,), optional
        Ids to carry along; default ``arange(n_series)``.
    drop_unobserved : bool, default=False
        Leave out entries with no observed channel (their ``slot_series`` is -1).
    dtype : numpy dtype, default=numpy.float32
        Floating dtype of ``values`` (times are always float64).

    Returns
    -------
    PaddedSeries
        With ``N = max(lengths)`` (at least 1) and the position of every entry.

    Examples
    --------
    >>> p = to_padded([1, 0, 1], [0.5, 0.0, 0.2], [[1.0], [2.0], [np.nan]], 2)
    >>> p.times.tolist(), p.lengths.tolist()
    ([[0.0, 0.0], [0.2, 0.5]], [1, 2])
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}.")
    if v.ndim != 2 or v.shape[0] != t.shape[0]:
        raise ValueError(f"values must have shape ({t.shape[0]}, C), got {v.shape}.")
    codes = _check_codes(series_codes, n_series, t.shape[0])
    if not np.isfinite(t).all():
        raise ValueError("times must be finite (no NaN / inf).")
    if np.isinf(v).any():
        raise ValueError("values must not be infinite (use NaN for unobserved values).")
    ids = np.arange(n_series) if series_ids is None else np.asarray(series_ids)
    if ids.shape != (n_series,):
        raise ValueError(f"series_ids must have shape ({n_series},), got {ids.shape}.")

    observed = ~np.isnan(v)
    keep = np.flatnonzero(observed.any(axis=1)) if drop_unobserved else np.arange(len(t))
    order = keep[lex_order(codes[keep], t[keep])]
    sc = codes[order]
    lengths, position = _positions(sc, n_series)
    width = max(int(lengths.max(initial=0)), 1)
    n_channels = v.shape[1]

    padded_t = _pad_times(sc, position, t[order], lengths, width)
    padded_v = np.zeros((n_series, width, n_channels), dtype=dtype)
    padded_m = np.zeros((n_series, width, n_channels), dtype=bool)
    padded_v[sc, position] = np.where(observed[order], v[order], 0.0)
    padded_m[sc, position] = observed[order]

    slot_series = np.full(len(t), -1, dtype=np.int64)
    slot_position = np.full(len(t), -1, dtype=np.int64)
    slot_series[order] = sc
    slot_position[order] = position
    return PaddedSeries(padded_t, padded_v, padded_m, lengths, ids, slot_series, slot_position)


def pad_frame(
    frame: ValidatedFrame,
    time_encoder: TimeEncoder,
    scaler: ChannelScaler,
    *,
    drop_unobserved: bool = True,
    dtype: Any = np.float32,
) -> PaddedSeries:
    """Encode a :class:`~latentode.data.ValidatedFrame` into model-ready padded arrays.

    Shorthand for ``to_padded(frame.series_codes, time_encoder.transform(frame.times),
    scaler.transform(frame.values), frame.n_series, series_ids=frame.series_ids, ...)``.

    Parameters
    ----------
    frame : ValidatedFrame
        The validated rows to pad (:func:`~latentode.data.validate_frame`).
    time_encoder : TimeEncoder
        Fitted encoder (model time).
    scaler : ChannelScaler
        Fitted scaler (standardised values).
    drop_unobserved : bool, default=True
        Leave out time points where no channel is observed (conditioning data only needs
        observations).
    dtype : numpy dtype, default=numpy.float32
        Floating dtype of ``values`` (times are always float64).

    Returns
    -------
    PaddedSeries

    Raises
    ------
    ValueError
        If a scaled value or an encoded time does not fit ``dtype`` (e.g. float32 overflow of a
        value far outside the range the scaler was fitted on), naming the column and the row.
    """
    times = time_encoder.transform(frame.times)
    values = scaler.transform(frame.values)
    _check_representable(frame, times[:, None], [frame.time_col], "time", dtype)
    _check_representable(frame, values, frame.target_cols, "value", dtype)
    return to_padded(
        frame.series_codes,
        times,
        values,
        frame.n_series,
        series_ids=frame.series_ids,
        drop_unobserved=drop_unobserved,
        dtype=dtype,
    )


def _check_representable(frame: ValidatedFrame, encoded: np.ndarray, cols: list[Any],
                         what: str, dtype: Any) -> None:
    """Raise if an encoded (finite float64) entry overflows ``dtype``; name column and row."""
    limit = float(np.finfo(dtype).max) if np.issubdtype(np.dtype(dtype), np.floating) else np.inf
    with np.errstate(invalid="ignore"):
        too_big = np.abs(encoded) > limit  # NaN (unobserved) compares False
    if not too_big.any():
        return
    slot, j = (int(i[0]) for i in np.nonzero(too_big))
    row = frame.row_index[int(np.flatnonzero(frame.row_slot == slot)[0])]
    row = row.item() if isinstance(row, np.generic) else row
    scale = ("standard deviations from the mean the model was fitted on" if what == "value"
             else "typical series spans from the earliest fitted time")
    raise ValueError(
        f"Column {cols[j]!r} has a {what} at row {row!r} that lies {abs(encoded[slot, j]):.3g} "
        f"{scale}: it overflows {np.dtype(dtype).name} once scaled. Check the row (a wrong unit "
        "or a sentinel value?) or set it to NaN."
    )


def subset(padded: PaddedSeries, idx: Any) -> PaddedSeries:
    """Select series (rows) of a :class:`PaddedSeries`, trimmed to their own maximum length.

    Parameters
    ----------
    padded : PaddedSeries
        The series to select from.
    idx : array-like of int or bool mask
        Rows to keep, in this order.

    Returns
    -------
    PaddedSeries
        ``slot_series`` / ``slot_position`` refer to the new rows (-1 for entries of series
        not selected; if a row is selected twice, entries point to its last copy).
    """
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (padded.n_series,):
            raise ValueError(f"Boolean idx must have shape ({padded.n_series},), got {idx.shape}.")
        idx = np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).ravel()
    lengths = padded.lengths[idx]
    width = max(int(lengths.max(initial=0)), 1)
    new_row = np.full(padded.n_series, -1, dtype=np.int64)
    new_row[idx] = np.arange(len(idx))
    has = padded.slot_series >= 0
    slot_series = np.full_like(padded.slot_series, -1)
    slot_series[has] = new_row[padded.slot_series[has]]
    slot_position = np.where(slot_series >= 0, padded.slot_position, -1)
    return PaddedSeries(
        times=padded.times[idx, :width],
        values=padded.values[idx, :width],
        mask=padded.mask[idx, :width],
        lengths=lengths,
        series_ids=padded.series_ids[idx],
        slot_series=slot_series,
        slot_position=slot_position,
        static=None if padded.static is None else padded.static[idx],
        labels=None if padded.labels is None else padded.labels[idx],
        weights=None if padded.weights is None else padded.weights[idx],
    )


def pad_query_times(series_codes: Any, times: Any, n_series: int) -> PaddedQuery:
    """Distinct query times per series, sorted and padded, and where each query row reads.

    Parameters
    ----------
    series_codes : array-like of int, shape (Q,)
        Series of each query row, in ``[0, n_series)``. Any order.
    times : array-like of float, shape (Q,)
        Model time of each query row (finite); repeated ``(series, time)`` pairs are predicted
        once.
    n_series : int
        Number of series ``B``.

    Returns
    -------
    PaddedQuery
        ``times (B, M)``, ``lengths (B,)``, ``row_position (Q,)``.

    Examples
    --------
    >>> q = pad_query_times([0, 0, 1, 0], [2.0, 1.0, 5.0, 2.0], 2)
    >>> q.times.tolist(), q.lengths.tolist(), q.row_position.tolist()
    ([[1.0, 2.0], [5.0, 5.0]], [2, 1], [1, 0, 0, 1])
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D, got shape {t.shape}.")
    codes = _check_codes(series_codes, n_series, t.shape[0])
    if not np.isfinite(t).all():
        raise ValueError("Query times must be finite (no NaN / inf).")
    order = lex_order(codes, t)
    sc, st = codes[order], t[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sc[1:] != sc[:-1]) | (st[1:] != st[:-1])
    unique_of_sorted = np.cumsum(new) - 1
    u_codes, u_times = sc[new], st[new]
    lengths, position = _positions(u_codes, n_series)
    width = max(int(lengths.max(initial=0)), 1)
    padded_t = _pad_times(u_codes, position, u_times, lengths, width)
    row_position = np.empty(len(order), dtype=np.int64)
    row_position[order] = position[unique_of_sorted]
    return PaddedQuery(padded_t, lengths, row_position)


def _spans(padded: PaddedSeries) -> np.ndarray:
    """``(B,)`` each series' window: its last valid time minus its first."""
    lengths = np.maximum(padded.lengths, 1)
    return padded.times[np.arange(padded.n_series), lengths - 1] - padded.times[:, 0]


def observation_rates(padded: PaddedSeries) -> np.ndarray:
    """Observed values per channel per unit of model time, pooled over the series.

    ``rate_c = (number of observed values of channel c) / sum_b (last_b - first_b)`` over the
    series' windows (a count of at least 1 per channel; a total span of 0 counts as 1). Used
    to set the typical Poisson intensity before training.

    Parameters
    ----------
    padded : PaddedSeries
        Training series.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64 positive rates.
    """
    span = float(np.sum(_spans(padded)))
    counts = np.maximum(padded.mask.sum(axis=(0, 1)).astype(np.float64), 1.0)
    return counts / (span if span > 0 else 1.0)


def observation_spacing(padded: PaddedSeries) -> np.ndarray:
    """Typical time between a channel's observations within a series, per channel.

    ``spacing_c = sum_b span_b / sum_b n_bc`` over the series ``b`` that observe channel ``c``
    (``n_bc`` its observed values in series ``b``, ``span_b`` the series' window, last minus
    first time): the mean spacing of the channel where it is measured, in model time. A
    channel that no series observes, or whose series all have a window of 0, gets 1 (a
    typical series' span). Sets the initial reach of the ``"neighbours"`` readout.

    Parameters
    ----------
    padded : PaddedSeries
        Training series.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float64 positive spacings.

    Examples
    --------
    >>> import numpy as np
    >>> from latentode.data import PaddedSeries
    >>> t = np.array([[0.0, 0.5, 1.0], [0.0, 2.0, 2.0]])
    >>> m = np.array([[[1, 0], [1, 0], [1, 1]], [[1, 0], [1, 0], [0, 0]]], dtype=float)
    >>> ids, none = np.array(["a", "b"]), np.zeros(0, np.int64)
    >>> ps = PaddedSeries(t, np.zeros_like(m), m, np.array([3, 2]), ids, none, none)
    >>> observation_spacing(ps).tolist()  # channel 0: (1 + 2) / 5; channel 1: 1 / 1
    [0.6, 1.0]
    """
    span = _spans(padded)  # (B,)
    counts = padded.mask.sum(axis=1).astype(np.float64)  # (B, C)
    total_span = ((counts > 0) * span[:, None]).sum(axis=0)
    total = counts.sum(axis=0)
    ok = (total > 0) & (total_span > 0)
    return np.where(ok, total_span / np.where(ok, total, 1.0), 1.0)
