"""Where prediction errors come from: squared errors by channel and by gap to the observations.

A value that a model did not condition on is easy or hard to predict depending on how far it
lies from what the model saw: between two close observations of the same channel linear
interpolation is nearly exact, far from any observation (or before the first / after the last
one, where it carries a value flat) it is not. :func:`gap_breakdown` splits the squared errors
of several predictions of the same scored entries by channel, by the entry's position relative
to the conditioning observations of its channel and by bucket of its gap to the nearest one, so
that a model is compared with the baselines where they differ.

This is the frame-level, per-channel counterpart of :func:`latentode.nn.spread.observation_gaps`
(which calibration uses on padded tensors and whose "beyond" is the series' conditioning window,
not the channel's); numpy / pandas only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._frames import (
    check_frame,
    check_scored_predictions,
    float_values,
    joint_times,
    prediction_values,
    require_column,
    scored_mask,
    target_columns,
    time_kind,
)
from .metrics import _squared_errors

__all__ = ["gap_breakdown", "GAP_POSITIONS"]

#: position of a scored value relative to the conditioning observations of its channel in its
#: series: between the first and the last of them (at one of their times included), before the
#: first, after the last, or in a series without any (the gap is then infinite)
GAP_POSITIONS = ("inside", "before", "after", "none")
_GROUPS = ("channel", "position", "gap")


def _entry_gaps(
    conditioned: pd.DataFrame,
    y_true: pd.DataFrame,
    mask: np.ndarray,
    cols: Sequence[str],
    id_col: str,
    time_col: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row, column, gap and position code of every scored entry (column-major order).

    Per column, one ``searchsorted`` of integer keys ``series code * R + time rank`` (times
    ranked over both frames, so the keys are exact) finds each entry's last conditioning time
    at or before it and first at or after it within its series; no loop over rows.
    """
    t_cond, t_true = joint_times(conditioned, y_true, time_col, ("conditioned", "y_true"))
    ids_c = require_column(conditioned, id_col, "conditioned", "id")
    ids_t = require_column(y_true, id_col, "y_true", "id")
    codes, _ = pd.factorize(pd.concat([ids_c, ids_t], ignore_index=True), sort=False)
    codes = codes.astype(np.int64)
    _, rank = np.unique(np.concatenate([t_cond, t_true]), return_inverse=True)
    n_rank = int(rank.max()) + 1 if len(rank) else 1
    keys = codes * n_rank + rank.astype(np.int64)
    n_c = len(conditioned)
    key_c, key_t, code_c, code_t = keys[:n_c], keys[n_c:], codes[:n_c], codes[n_c:]
    visible = ~np.isnan(float_values(conditioned, cols, "conditioned"))
    rows, chans, gaps, pos = [], [], [], []
    for j in range(len(cols)):
        r = np.flatnonzero(mask[:, j])
        seen = np.flatnonzero(visible[:, j])
        order = seen[np.argsort(key_c[seen], kind="stable")]
        kc, tc, gc = key_c[order], t_cond[order], code_c[order]
        q, qt, qg = key_t[r], t_true[r], code_t[r]
        nxt = np.searchsorted(kc, q, side="left")  # first conditioning key >= q
        prv = np.searchsorted(kc, q, side="right") - 1  # last conditioning key <= q
        if len(kc):
            has_next = (nxt < len(kc)) & (gc[np.minimum(nxt, len(kc) - 1)] == qg)
            has_prev = (prv >= 0) & (gc[np.maximum(prv, 0)] == qg)
            t_next = np.where(has_next, tc[np.minimum(nxt, len(kc) - 1)], np.inf)
            t_prev = np.where(has_prev, tc[np.maximum(prv, 0)], -np.inf)
        else:
            has_next = has_prev = np.zeros(len(r), dtype=bool)
            t_next, t_prev = np.full(len(r), np.inf), np.full(len(r), -np.inf)
        gap = np.minimum(qt - t_prev, t_next - qt)
        code = np.select([has_prev & has_next, has_next, has_prev], [0, 1, 2], default=3)
        rows.append(r)
        chans.append(np.full(len(r), j))
        gaps.append(gap)
        pos.append(code)
    return (np.concatenate(rows), np.concatenate(chans), np.concatenate(gaps),
            np.concatenate(pos))


def _edges(bins: Any, finite_gaps: np.ndarray, timelike: bool) -> np.ndarray:
    """Ascending, distinct, finite bucket edges ``>= 0`` (in seconds for datetime times)."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"bins must be a positive number of buckets or a sequence of "
                             f"edges, got {bins!r}.")
        if not len(finite_gaps):
            return np.array([])
        qs = np.quantile(finite_gaps, np.arange(1, bins) / bins)
        return np.unique(qs)
    if isinstance(bins, (str, bytes)) or not isinstance(bins, Sequence | np.ndarray | pd.Index):
        raise TypeError(f"bins must be an int or a sequence of edges, got {type(bins).__name__}.")
    vals = list(bins)
    is_delta = [isinstance(v, (pd.Timedelta, np.timedelta64)) for v in vals]
    if any(is_delta):
        if not timelike or not all(is_delta):
            raise ValueError("timedelta edges need a datetime or timedelta time column, and "
                             "then every edge must be a timedelta.")
        edges = np.array([pd.Timedelta(v).total_seconds() for v in vals], dtype=np.float64)
    else:
        try:
            edges = np.asarray(vals, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("bins must hold numbers (or timedeltas for datetime times).") from None
    if edges.ndim != 1 or not np.isfinite(edges).all() or (edges < 0).any() or (
            np.diff(edges) <= 0).any():
        raise ValueError(f"bucket edges must be finite, >= 0 and strictly increasing, got "
                         f"{list(vals)!r}.")
    return edges


def _labels(edges: np.ndarray, timelike: bool) -> list[str]:
    """``[0, e1]``, ``(e1, e2]``, ..., ``> em`` (one bucket ``>= 0`` without edges)."""
    def fmt(x: float) -> str:
        return str(pd.Timedelta(seconds=float(x))) if timelike else f"{x:g}"

    if not len(edges):
        return [">= 0"]
    out = [f"[0, {fmt(edges[0])}]"]
    out += [f"({fmt(a)}, {fmt(b)}]" for a, b in zip(edges[:-1], edges[1:])]
    return out + [f"> {fmt(edges[-1])}"]


def gap_breakdown(
    conditioned: pd.DataFrame,
    y_true: pd.DataFrame,
    predictions: Mapping[str, Any],
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    bins: int | Sequence[Any] = 4,
    by: Sequence[str] = ("channel", "position", "gap"),
    loc: Any = None,
    scale: Any = None,
    id_col: str = "id",
    time_col: str = "t",
) -> pd.DataFrame:
    """Mean squared error of several predictions by channel and gap to the observations.

    Every scored entry ``(row, column)`` of ``y_true`` gets the time to the nearest
    *conditioning* observation of the same column in its series (a visible value of
    ``conditioned``: its *gap*) and its *position* relative to them (:data:`GAP_POSITIONS`):
    ``"inside"`` (between the column's first and last conditioning times, or at one of its
    observed times), ``"before"`` the first, ``"after"`` the last (where linear interpolation
    carries the nearest value flat), or ``"none"`` (the series has no conditioning value of
    the column: every per-series baseline falls back, the gap is infinite). Finite gaps are cut
    into buckets ``[0, e1], (e1, e2], ..., > em``; infinite ones form the bucket ``"none"``.
    The squared errors of each prediction are then averaged over the entries of each group
    (pooled, every entry weighs the same; :func:`paper_mse_frame` averages per series and
    column instead).

    Parameters
    ----------
    conditioned : pandas.DataFrame
        Long frame of the values the predictions conditioned on (NaN = not visible), e.g. the
        first output of :func:`hide_values`; its rows need not be those of ``y_true`` (e.g. the
        past of a forecast). Not modified.
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed).
    predictions : mapping of str to DataFrame or array-like of shape (n_rows, n_columns)
        Named predictions for the rows of ``y_true``, in the same order (e.g. ``{"model":
        est.predict(cond), "linear": linear_interpolation(cond, fallback=...)}``); one output
        column each, named by its key.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries (e.g. the ``hidden`` mask of :func:`hide_values`); default: every
        observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and ``time_col``.
        Each must be in ``conditioned`` too.
    bins : int or sequence, default 4
        Number of gap buckets, with edges at the quantiles ``j / bins`` of the finite gaps of
        the scored entries (repeated edges merged); or the inner edges ``e1 < ... < em``
        (``>= 0``, in the time column's unit; timedeltas for a datetime or timedelta time
        column, whose gaps are otherwise in seconds).
    by : sequence of {"channel", "position", "gap"}, default all three
        Grouping of the entries; ``()`` gives one row over every scored entry.
    loc, scale : float or mapping of column to float, optional
        Standardisation ``(x - loc) / scale`` of truth and predictions (``scale > 0``).
    id_col, time_col : str
        Series identifier and time columns (times: numbers, datetimes or timedeltas) of both
        frames.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty group, sorted by the ``by`` columns (ordered categoricals:
        ``channel`` in ``columns`` order, ``position`` in :data:`GAP_POSITIONS` order, ``gap``
        from near to far, then ``"none"``), then ``n`` (the number of scored entries) and one
        column of mean squared errors per prediction.

    Raises
    ------
    ValueError
        If a column is absent from either frame, ``predictions`` is empty or a name clashes
        with an output column, a scored entry is not observed in ``y_true`` or not finite in a
        prediction, ``by`` names something else, or the bucket edges are not increasing.
    TypeError
        If ``predictions`` is not a mapping or ``bins`` is neither an int nor a sequence.

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1] * 4, "t": [0.0, 1.0, 2.0, 5.0],
    ...                       "x": [0.0, 1.0, 2.0, 5.0]})
    >>> cond = truth.assign(x=[0.0, np.nan, 2.0, np.nan])  # x(1) and x(5) hidden
    >>> hidden = cond["x"].isna().to_numpy()[:, None]
    >>> gap_breakdown(cond, truth, {"linear": [0.0, 1.0, 2.0, 2.0], "zero": np.zeros(4)},
    ...               hidden, bins=[2.0])  # doctest: +NORMALIZE_WHITESPACE
      channel position    gap  n  linear  zero
    0       x   inside [0, 2]  1     0.0   1.0
    1       x    after    > 2  1     9.0  25.0
    """
    check_frame(conditioned, "conditioned")
    check_frame(y_true, "y_true")
    if not isinstance(predictions, Mapping):
        raise TypeError("predictions must be a mapping from a name to predictions (e.g. "
                        f"{{'model': pred}}), got {type(predictions).__name__}.")
    if not predictions:
        raise ValueError("predictions is empty; give at least one named prediction.")
    by = [by] if isinstance(by, str) else list(by)
    for g in by:
        if g not in _GROUPS:
            raise ValueError(f"by may only name {list(_GROUPS)}, got {g!r}.")
    if len(set(by)) != len(by):
        raise ValueError(f"by names a grouping twice: {by!r}.")
    names = list(predictions)
    for name in names:
        if not isinstance(name, str) or name in (*_GROUPS, "n"):
            raise ValueError(f"prediction name {name!r} must be a string other than "
                             f"{[*_GROUPS, 'n']}.")
    cols = target_columns(y_true, columns, "y_true", [id_col, time_col])
    target_columns(conditioned, cols, "conditioned", [id_col, time_col])
    truth = float_values(y_true, cols, "y_true")
    m = scored_mask(mask, truth, cols, y_true.index)
    sq = []
    for name in names:
        label = f"predictions[{name!r}]"
        pred = prediction_values(predictions[name], cols, len(y_true), label)
        check_scored_predictions(pred, m, cols, y_true.index, label)
        sq.append(_squared_errors(truth, pred, cols, loc, scale))

    rows, chans, gaps, pos = _entry_gaps(conditioned, y_true, m, cols, id_col, time_col)
    timelike = time_kind(y_true[time_col]) != "number"
    finite = np.isfinite(gaps)
    edges = _edges(bins, gaps[finite], timelike)
    labels = _labels(edges, timelike)
    bucket = np.where(finite, np.searchsorted(edges, gaps, side="left"), len(labels))
    entries = pd.DataFrame({
        "channel": pd.Categorical.from_codes(chans, categories=list(cols), ordered=True),
        "position": pd.Categorical.from_codes(pos, categories=list(GAP_POSITIONS),
                                              ordered=True),
        "gap": pd.Categorical.from_codes(bucket, categories=[*labels, "none"], ordered=True),
        "n": np.ones(len(rows), dtype=np.int64),
    })
    for name, s in zip(names, sq):
        entries[name] = s[rows, chans]
    if by:
        sums = entries.groupby(by, observed=True, sort=True)[["n", *names]].sum()
        out = sums.reset_index()
    else:
        out = entries[["n", *names]].sum().to_frame().T.astype({"n": np.int64})
    out[names] = out[names].to_numpy(np.float64) / out["n"].to_numpy()[:, None]
    return out.reset_index(drop=True)
