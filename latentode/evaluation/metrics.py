"""Scores of predictions of long DataFrames: MSE, the Latent ODE paper's MSE, CRPS, coverage.

Every frame-level function takes the truth ``y_true`` (a long frame), the predictions for
the same rows in the same order (a frame with the evaluated columns, e.g. the output of
:meth:`~latentode.LatentODERegressor.predict`, or an ``(n_rows, n_columns)`` array) and an
optional boolean ``mask`` of the scored entries (default: every observed entry of
``y_true``). A scored entry must be observed in ``y_true`` and predicted (finite): metrics
never invent values, so a baseline that cannot predict a series needs a ``fallback``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from latentode.uncertainty import (
    central_interval,
    crps_samples,
    interval_coverage,
    quantile_label,
)

from ._frames import (
    check_frame,
    check_scored_predictions,
    float_values,
    per_column,
    prediction_values,
    require_column,
    scored_mask,
    target_columns,
)

__all__ = [
    "mse",
    "per_feature_mse",
    "paper_mse",
    "paper_mse_frame",
    "paper_mse_shares",
    "long_to_dense",
    "sample_crps",
    "coverage",
]


def _scored(
    y_true: pd.DataFrame, y_pred: Any, mask: Any, columns: Sequence[str] | None,
    id_col: str, time_col: str | None,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Checked columns, truth, predictions and scored mask, as ``(n_rows, n_cols)`` arrays."""
    check_frame(y_true, "y_true")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    cols = target_columns(y_true, columns, "y_true", exclude)
    truth = float_values(y_true, cols, "y_true")
    pred = prediction_values(y_pred, cols, len(y_true), "y_pred")
    m = scored_mask(mask, truth, cols, y_true.index)
    check_scored_predictions(pred, m, cols, y_true.index, "y_pred")
    return cols, truth, pred, m


def _squared_errors(truth: np.ndarray, pred: np.ndarray, cols: Sequence[str], loc: Any,
                    scale: Any) -> np.ndarray:
    """``(pred - truth) ** 2`` after standardising both as ``(x - loc) / scale``."""
    lo = per_column(loc, cols, "loc")
    sc = per_column(scale, cols, "scale")
    if sc is not None:
        bad = np.flatnonzero(~(np.isfinite(sc) & (sc > 0)))
        if len(bad):
            raise ValueError(f"scale must be finite and > 0; column {cols[bad[0]]!r} has "
                             f"{sc[bad[0]]}.")
    if lo is not None:
        truth, pred = truth - lo, pred - lo
    if sc is not None:
        truth, pred = truth / sc, pred / sc
    return (pred - truth) ** 2


def mse(
    y_true: pd.DataFrame,
    y_pred: Any,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    loc: Any = None,
    scale: Any = None,
    id_col: str = "id",
    time_col: str | None = "t",
) -> float:
    """Mean squared error over the scored entries, all columns pooled.

    With ``loc`` and ``scale`` both truth and prediction are standardised as
    ``(x - loc) / scale`` first (e.g. the training mean and standard deviation of each
    column, so that columns in different units weigh alike).

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed).
    y_pred : pandas.DataFrame or array-like of shape (n_rows, n_columns)
        Predictions for the rows of ``y_true``, in the same order.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries (e.g. the ``hidden`` mask of :func:`hide_values`); default: every
        observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and
        ``time_col``.
    loc, scale : float or mapping of column to float, optional
        Standardisation (``scale > 0``).
    id_col, time_col : str
        Columns left out of the default ``columns``.

    Returns
    -------
    float
        The mean of the squared errors of the scored entries (NaN when nothing is scored).

    Raises
    ------
    ValueError
        If a column is absent, the shapes disagree, or a scored entry is not observed in
        ``y_true`` or not finite in ``y_pred``.

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1, 1], "t": [0.0, 1.0], "a": [1.0, 3.0],
    ...                       "b": [np.nan, 2.0]})
    >>> pred = pd.DataFrame({"a": [2.0, 3.0], "b": [0.0, 0.0]})
    >>> mse(truth, pred)  # (1 + 0 + 4) / 3 observed entries
    1.6666666666666667
    >>> mse(truth, pred, scale={"a": 1.0, "b": 2.0})  # (1 + 0 + 1) / 3
    0.6666666666666666
    """
    cols, truth, pred, m = _scored(y_true, y_pred, mask, columns, id_col, time_col)
    if not m.any():
        return float("nan")
    sq = _squared_errors(truth, pred, cols, loc, scale)
    return float(np.mean(sq[m]))


def per_feature_mse(
    y_true: pd.DataFrame,
    y_pred: Any,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    loc: Any = None,
    scale: Any = None,
    id_col: str = "id",
    time_col: str | None = "t",
) -> pd.Series:
    """Mean squared error of each column over its scored entries.

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed).
    y_pred : pandas.DataFrame or array-like of shape (n_rows, n_columns)
        Predictions for the rows of ``y_true``, in the same order.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries; default: every observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and
        ``time_col``.
    loc, scale : float or mapping of column to float, optional
        Standardisation ``(x - loc) / scale`` of truth and prediction (``scale > 0``).
    id_col, time_col : str
        Columns left out of the default ``columns``.

    Returns
    -------
    pandas.Series
        Indexed by column; NaN for a column without a scored entry.

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1, 1], "t": [0.0, 1.0], "a": [1.0, 3.0],
    ...                       "b": [np.nan, 2.0]})
    >>> pred = pd.DataFrame({"a": [2.0, 3.0], "b": [0.0, 0.0]})
    >>> per_feature_mse(truth, pred).to_dict()
    {'a': 0.5, 'b': 4.0}
    """
    cols, truth, pred, m = _scored(y_true, y_pred, mask, columns, id_col, time_col)
    sq = _squared_errors(truth, pred, cols, loc, scale)
    out = [float(np.mean(sq[m[:, j], j])) if m[:, j].any() else float("nan")
           for j in range(len(cols))]
    return pd.Series(out, index=pd.Index(cols), dtype=np.float64)


def paper_mse(
    y_true_scaled: np.ndarray,
    y_pred_scaled: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    empty: Literal["zero", "skip"] = "zero",
) -> float:
    """Mean squared error as computed in the Latent ODE paper (``lib/likelihood_eval.py``).

    For every series and feature the squared error is averaged over the *observed* entries
    (``mask``); these per-(series, feature) errors are averaged over the features, then over
    the series. In the paper's code a feature with no observed entry in a series contributes
    0 to the mean over features (``empty="zero"``, the default, reproduces that; PhysioNet
    stays lack many of the 41 features, so this lowers the number). ``empty="skip"`` averages
    over observed features only. The paper reports this on values scaled with
    ``scaling="paper"`` (:func:`latentode.datasets.scale_physionet`). For long frames see
    :func:`paper_mse_frame`. (Also importable from :mod:`latentode.datasets`, its former home.)

    Parameters
    ----------
    y_true_scaled : ndarray, shape (n_series, n_times, n_features)
        Targets (a 2-D array is one series); NaN allowed where not observed.
    y_pred_scaled : ndarray, shape (n_series, n_times, n_features) or (n_samples, ...)
        Predictions. With a leading axis of trajectory samples, the MSE of each sample is
        computed and averaged, as the paper does for its ``n_traj_samples``.
    mask : ndarray of bool or {0, 1}, optional
        Observed entries, same shape as ``y_true_scaled``; default: not NaN in
        ``y_true_scaled``.
    empty : {"zero", "skip"}
        How a (series, feature) with no observed entry counts (see above).

    Returns
    -------
    float
        The MSE (NaN if nothing is observed).

    Examples
    --------
    >>> y = np.array([[[0.0, 1.0], [1.0, np.nan]]])  # 1 series, 2 times, 2 features
    >>> p = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    >>> paper_mse(y, p)  # feature 0: (1 + 0) / 2, feature 1: 1 / 1 -> mean 0.75
    0.75
    """
    y = np.asarray(y_true_scaled, dtype=np.float64)
    p = np.asarray(y_pred_scaled, dtype=np.float64)
    if y.ndim == 2:
        y = y[None]
        p = p[None] if p.ndim == 2 else p[:, None]
        mask = None if mask is None else np.asarray(mask)[None]
    if y.ndim != 3:
        raise ValueError(f"y_true_scaled must be 2-D or 3-D, got shape {y.shape}")
    if p.shape == y.shape:
        p = p[None]
    if p.ndim != 4 or p.shape[1:] != y.shape:
        raise ValueError(f"y_pred_scaled shape {p.shape} does not match y_true {y.shape}")
    m = ~np.isnan(y) if mask is None else np.asarray(mask).astype(bool)
    if m.shape != y.shape:
        raise ValueError(f"mask shape {m.shape} does not match y_true {y.shape}")
    if empty not in ("zero", "skip"):
        raise ValueError(f"empty must be 'zero' or 'skip', got {empty!r}")
    sq = np.where(m, (np.nan_to_num(y) - p) ** 2, 0.0)  # (S, B, T, F)
    count = m.sum(axis=1)  # (B, F)
    per_feature = sq.sum(axis=2) / np.maximum(count, 1)  # (S, B, F)
    if empty == "zero":
        if not count.any():
            return float("nan")
        per_series = per_feature.mean(axis=-1)  # (S, B)
        return float(per_series.mean())
    has = count > 0
    n_feat = has.sum(axis=-1)  # (B,)
    valid = n_feat > 0
    if not valid.any():
        return float("nan")
    per_series = per_feature.sum(axis=-1)[:, valid] / n_feat[valid]
    return float(per_series.mean())


def long_to_dense(
    frame: pd.DataFrame,
    values: Any = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
) -> np.ndarray:
    """Rows of a long frame as a padded ``(n_series, n_times, n_columns)`` array.

    Series are in the order of their first row, and the rows of a series in ``frame``'s order
    (sort ``frame`` by id and time first for time-ordered arrays); padding is NaN.

    Parameters
    ----------
    frame : pandas.DataFrame
        Long frame (its ``id_col`` groups the rows).
    values : pandas.DataFrame or array-like of shape (n_rows, n_columns), optional
        One row per row of ``frame``, same order (e.g. predictions); default:
        ``frame[columns]``.
    columns : sequence of str, optional
        Columns; default: every column of ``frame`` but ``id_col`` and ``time_col``.
    id_col, time_col : str
        Series identifier column; time column left out of the default ``columns``.

    Returns
    -------
    numpy.ndarray of float64

    Examples
    --------
    >>> df = pd.DataFrame({"id": [7, 7, 3], "t": [0.0, 1.0, 0.0], "x": [1.0, 2.0, 3.0]})
    >>> long_to_dense(df)[..., 0].tolist()
    [[1.0, 2.0], [3.0, nan]]
    """
    check_frame(frame, "frame")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    if columns is None or values is None:
        cols = target_columns(frame, columns, "frame", exclude)
    else:  # columns of ``values``, not necessarily of ``frame``
        cols = [columns] if isinstance(columns, str) else list(columns)
    if values is None:
        vals = float_values(frame, cols, "frame")
    else:
        vals = prediction_values(values, cols, len(frame), "values")
    ids = require_column(frame, id_col, "frame", "id")
    codes, uniq = pd.factorize(ids, sort=False)
    pos = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    width = int(pos.max()) + 1 if len(pos) else 0
    out = np.full((len(uniq), width, len(cols)), np.nan)
    out[codes, pos] = vals
    return out


def _dense_scored(y_true: pd.DataFrame, y_pred: Any, mask: Any, columns: Sequence[str] | None,
                  id_col: str, time_col: str | None
                  ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Truth, prediction and scored mask as padded ``(n_series, n_times, F)`` arrays."""
    cols, truth, pred, m = _scored(y_true, y_pred, mask, columns, id_col, time_col)
    dense_kw = dict(columns=cols, id_col=id_col, time_col=time_col)
    y = np.nan_to_num(long_to_dense(y_true, np.where(m, truth, np.nan), **dense_kw))
    p = np.nan_to_num(long_to_dense(y_true, pred, **dense_kw))
    dm = np.nan_to_num(long_to_dense(y_true, m.astype(np.float64), **dense_kw), nan=0.0) > 0
    return cols, y, p, dm


def paper_mse_frame(
    y_true: pd.DataFrame,
    y_pred: Any,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
    empty: Literal["zero", "skip"] = "zero",
) -> float:
    """:func:`paper_mse` of predictions of a long frame over the scored entries.

    Per series and column the squared errors of the scored entries are averaged, then over
    the columns (a column without a scored entry counts 0 with ``empty="zero"``), then over
    the series.

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed); ``id_col`` groups its rows into
        series.
    y_pred : pandas.DataFrame or array-like of shape (n_rows, n_columns)
        Predictions for the rows of ``y_true``, in the same order.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries; default: every observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns (the paper's features); default: every column of ``y_true`` but
        ``id_col`` and ``time_col``.
    id_col, time_col : str
        Series identifier column; time column left out of the default ``columns``.
    empty : {"zero", "skip"}
        How a (series, column) without a scored entry counts (see :func:`paper_mse`).

    Returns
    -------
    float

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 1.0, 0.0], "a": [1.0, 3.0, 2.0],
    ...                       "b": [np.nan, 2.0, np.nan]})
    >>> pred = np.zeros((3, 2))
    >>> paper_mse_frame(truth, pred)  # series 1: (5 + 4) / 2, series 2: (4 + 0) / 2
    3.25
    """
    _, y, p, m = _dense_scored(y_true, y_pred, mask, columns, id_col, time_col)
    return float(paper_mse(y, p, m, empty=empty))


def paper_mse_shares(
    y_true: pd.DataFrame,
    y_pred: Any,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
) -> pd.Series:
    """Each column's share of :func:`paper_mse_frame` (``empty="zero"``); they add up to it.

    The share of a column is its per-series MSE over the scored entries, averaged over the
    series (a series without a scored entry of the column counts 0), divided by the number
    of columns.

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed); ``id_col`` groups its rows into
        series.
    y_pred : pandas.DataFrame or array-like of shape (n_rows, n_columns)
        Predictions for the rows of ``y_true``, in the same order.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries; default: every observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and
        ``time_col``.
    id_col, time_col : str
        Series identifier column; time column left out of the default ``columns``.

    Returns
    -------
    pandas.Series
        Indexed by column.

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 1.0, 0.0], "a": [1.0, 3.0, 2.0],
    ...                       "b": [np.nan, 2.0, np.nan]})
    >>> paper_mse_shares(truth, np.zeros((3, 2))).to_dict()
    {'a': 2.25, 'b': 1.0}
    """
    cols, y, p, m = _dense_scored(y_true, y_pred, mask, columns, id_col, time_col)
    sq = np.where(m, (y - p) ** 2, 0.0).sum(axis=1)
    n = m.sum(axis=1)
    per_series = np.divide(sq, n, out=np.zeros_like(sq), where=n > 0)
    return pd.Series(per_series.mean(axis=0) / len(cols), index=pd.Index(cols))


def sample_crps(
    y_true: pd.DataFrame,
    samples: Any,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
    sample_col: str = "sample",
) -> float:
    """Mean continuous ranked probability score of predictive samples (lower is better).

    For each scored entry the CRPS of the empirical distribution of its samples is
    estimated by :func:`latentode.uncertainty.crps_samples`
    (``mean|X_i - y| - mean_{i,j}|X_i - X_j| / 2``); the scores are averaged over the scored
    entries.

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed).
    samples : pandas.DataFrame or array-like of shape (n_samples, n_rows, n_columns)
        Draws for the rows of ``y_true``: the frame returned by
        :meth:`~latentode.LatentODERegressor.sample` (``n_samples * n_rows`` rows ordered by
        ``sample_col``, then in ``y_true``'s row order), or the array.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries; default: every observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and
        ``time_col``.
    id_col, time_col : str
        Columns left out of the default ``columns``; ``id_col`` of a ``samples`` frame must
        repeat ``y_true``'s.
    sample_col : str, default "sample"
        Sample index column of a ``samples`` frame (checked when present).

    Returns
    -------
    float
        The mean CRPS, in the units of the columns (NaN when nothing is scored).

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1], "t": [0.0], "x": [0.0]})
    >>> sample_crps(truth, np.array([-1.0, 1.0]).reshape(2, 1, 1))  # 1 - 1 / 2
    0.5
    """
    check_frame(y_true, "y_true")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    cols = target_columns(y_true, columns, "y_true", exclude)
    truth = float_values(y_true, cols, "y_true")
    m = scored_mask(mask, truth, cols, y_true.index)
    n = len(y_true)
    if isinstance(samples, pd.DataFrame):
        if n == 0 or len(samples) % n:
            raise ValueError(f"samples must hold n_samples * {n} rows (one block per sample, "
                             f"in y_true's row order), got {len(samples)} rows.")
        s = len(samples) // n
        if sample_col in samples.columns and not np.array_equal(
                samples[sample_col].to_numpy(), np.repeat(np.arange(s), n)):
            raise ValueError(f"samples must be ordered by {sample_col!r} (0 .. {s - 1}), then "
                             "in y_true's row order, as LatentODERegressor.sample returns them.")
        if id_col in samples.columns and id_col in y_true.columns:
            same = samples[id_col].to_numpy()[:n] == y_true[id_col].to_numpy()
            if not np.all(same):
                row = y_true.index[int(np.flatnonzero(~np.asarray(same, dtype=bool))[0])]
                raise ValueError(f"the rows of samples do not follow y_true's rows: "
                                 f"{id_col!r} differs at row {row!r}.")
        draws = prediction_values(samples, cols, len(samples), "samples").reshape(s, n, len(cols))
    else:
        draws = np.asarray(samples, dtype=np.float64)
        if draws.ndim != 3 or draws.shape[1:] != truth.shape or draws.shape[0] < 1:
            raise ValueError(f"samples must have shape (n_samples, {n}, {len(cols)}), got "
                             f"{draws.shape}.")
    finite = np.isfinite(draws).all(axis=0)
    check_scored_predictions(np.where(finite, 0.0, np.nan), m, cols, y_true.index, "samples")
    if not m.any():
        return float("nan")
    return float(np.nanmean(crps_samples(np.where(m, truth, np.nan), draws)))


def coverage(
    y_true: pd.DataFrame,
    y_pred: pd.DataFrame,
    level: float,
    mask: Any = None,
    *,
    columns: Sequence[str] | None = None,
    id_col: str = "id",
    time_col: str | None = "t",
) -> float:
    """Fraction of the scored values inside their central predictive interval.

    The interval of column ``c`` at level ``level`` is read from the quantile columns
    ``f"{c}_q{lo:g}"`` and ``f"{c}_q{hi:g}"`` of ``y_pred`` with
    ``(lo, hi) = central_interval(level)``, as returned by
    :meth:`~latentode.LatentODERegressor.predict` and
    :meth:`~latentode.LatentODERegressor.extrapolate` with
    ``quantiles=central_interval(level)``; the fraction is
    :func:`latentode.uncertainty.interval_coverage` (bounds included).

    Parameters
    ----------
    y_true : pandas.DataFrame
        Long frame of the true values (NaN = not observed).
    y_pred : pandas.DataFrame
        Predictions for the rows of ``y_true``, same order, with the quantile columns.
    level : float
        Nominal coverage in ``(0, 1)``, e.g. ``0.9``.
    mask : array-like of bool, shape (n_rows, n_columns), optional
        Scored entries; default: every observed entry of ``y_true``.
    columns : sequence of str, optional
        Evaluated columns; default: every column of ``y_true`` but ``id_col`` and
        ``time_col``.
    id_col, time_col : str
        Columns left out of the default ``columns``.

    Returns
    -------
    float
        Empirical coverage in ``[0, 1]`` (NaN when nothing is scored).

    Examples
    --------
    >>> truth = pd.DataFrame({"id": [1, 1], "t": [0.0, 1.0], "x": [0.0, 5.0]})
    >>> pred = pd.DataFrame({"x_q0.05": [-1.0, -1.0], "x_q0.95": [1.0, 1.0]})
    >>> coverage(truth, pred, 0.9)
    0.5
    """
    check_frame(y_true, "y_true")
    check_frame(y_pred, "y_pred")
    exclude = [id_col] if time_col is None else [id_col, time_col]
    cols = target_columns(y_true, columns, "y_true", exclude)
    truth = float_values(y_true, cols, "y_true")
    m = scored_mask(mask, truth, cols, y_true.index)
    lo, hi = central_interval(level)
    bounds = []
    for q in (lo, hi):
        names = [f"{c}_{quantile_label(q)}" for c in cols]
        missing = [c for c in names if c not in y_pred.columns]
        if missing:
            raise ValueError(f"y_pred has no column {missing[0]!r}; predict with "
                             f"quantiles=central_interval({level!r}) = {(lo, hi)}.")
        vals = float_values(y_pred, names, "y_pred")
        if vals.shape[0] != len(y_true):
            raise ValueError(f"y_pred must hold one row per row of y_true ({len(y_true)}), got "
                             f"{vals.shape[0]}.")
        check_scored_predictions(vals, m, cols, y_true.index, "y_pred's interval bound")
        bounds.append(vals)
    if not m.any():
        return float("nan")
    return interval_coverage(np.where(m, truth, np.nan), bounds[0], bounds[1])
