"""matplotlib helpers (optional extra: ``pip install latentode[plot]``).

matplotlib is imported inside the functions, so ``import latentode`` never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .data.query import horizon_delta
from .uncertainty import check_quantiles, quantile_label

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .estimator import LatentODERegressor

__all__ = ["plot_forecast"]

_N_GRID = 200  # prediction times of the mean line and band


def _import_pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "latentode.plot_forecast needs matplotlib; install it with "
            "`pip install latentode[plot]` (or `pip install matplotlib`)."
        ) from exc
    return plt


def plot_forecast(
    est: LatentODERegressor,
    df: pd.DataFrame,
    id: Any = None,
    *,
    horizon: float | pd.Timedelta | None = None,
    channels: Sequence[str] | None = None,
    quantiles: Sequence[float] | None = (0.05, 0.95),
    ax: Axes | Sequence[Axes] | None = None,
    time_unit: str | None = None,
    truth: pd.DataFrame | None = None,
) -> Figure:
    """Plot one series' observations, its reconstruction and its forecast with a band.

    The series is conditioned on all its observed values in ``df``; the predictive mean and
    the quantile band are drawn from its first time to ``horizon`` after its last observation.
    The conditioning window (first time to last observation) is shaded grey, the forecast
    region light orange, and a dashed vertical line marks the last observation.

    Parameters
    ----------
    est : LatentODERegressor
        A fitted estimator.
    df : pandas.DataFrame
        Long frame with the fitted id, time and target columns (may hold other series).
    id : hashable, optional
        The series to plot (value of ``est.id_col_``). Ignored when the estimator was fitted
        with ``id_col=None``; otherwise required unless ``df`` holds a single series.
    horizon : float or pandas.Timedelta, optional
        Forecast length after the last observation, in the time column's unit (a Timedelta,
        or a float in ``est.time_encoder_.unit``, for datetime times). Default: a quarter of
        the series' observed span.
    channels : sequence of str, optional
        Channels to plot (one panel each), default all of ``est.target_cols_``.
    quantiles : (float, float) or None, default=(0.05, 0.95)
        Predictive quantile levels bounding the band (the first and last levels are used);
        None draws no band.
    ax : matplotlib Axes or sequence of Axes, optional
        Axes to draw on, one per channel (a single Axes for a single channel). Default: a new
        figure with one row of panels per channel, sharing the time axis.
    time_unit : str, optional
        Unit of a numeric time column, shown in the x label (``"t (h)"``). The library cannot
        know it: numeric times are used as they are. Default: the column name alone (datetime
        axes show dates).
    truth : pandas.DataFrame, optional
        Known true values to draw beside the prediction (e.g. a simulation's noise-free path,
        or held-out values): a long frame with the id, time and plotted channel columns; its
        rows of the plotted series are drawn as a dashed line labelled ``"truth"``. Not used
        by the model.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the panels. Each panel has one line labelled ``"observed"`` whose
        points are the channel's observed values. The title names the series
        (``"id = 136599"``), the x label the time column and ``time_unit``.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        For an unknown channel or id, bad quantiles, or a mismatched number of axes.

    Examples
    --------
    >>> fig = plot_forecast(est, df, id=3, horizon=2.0)  # doctest: +SKIP
    >>> fig.savefig("forecast.png")  # doctest: +SKIP
    """
    plt = _import_pyplot()
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est)
    time_col, id_col = est.time_col_, est.id_col_
    targets = list(est.target_cols_)
    chans = targets if channels is None else list(channels)
    unknown = [c for c in chans if c not in targets]
    if unknown or not chans:
        raise ValueError(f"channels must be a non-empty subset of {targets}, got {channels!r}.")
    q = None if quantiles is None else check_quantiles(quantiles)
    if q is not None and len(q) < 2:
        raise ValueError(f"quantiles needs a lower and an upper level, got {quantiles!r}.")

    series = _select_series(df, id, id_col, time_col)
    observed = series[targets].notna().any(axis=1).to_numpy()
    if not observed.any():
        raise ValueError(f"Series {id!r} has no observed value to condition on.")
    times = series[time_col]
    first, last = times.min(), times[observed].max()
    is_datetime = pd.api.types.is_datetime64_any_dtype(times)
    end = last + _horizon(horizon, first, last, is_datetime, est)
    if is_datetime:
        grid: Any = pd.date_range(first, end, periods=_N_GRID)
    else:
        grid = np.linspace(float(first), float(end), _N_GRID)
    query = pd.DataFrame({time_col: grid})
    if id_col is not None:
        query.insert(0, id_col, pd.Series([series[id_col].iloc[0]] * len(query),
                                          dtype=series[id_col].dtype))
    pred = est.extrapolate(series, times=query, quantiles=None if q is None else q.tolist())
    true_rows = None
    if truth is not None:
        missing = [c for c in [time_col, *chans] if c not in getattr(truth, "columns", [])]
        if missing:
            raise ValueError(f"truth lacks the columns {missing}.")
        sid_value = series[id_col].iloc[0] if id_col is not None else None
        true_rows = _select_series(truth, sid_value, id_col, time_col) if (
            id_col is None or (truth[id_col] == sid_value).any()) else truth.iloc[:0]

    axes = _resolve_axes(plt, ax, len(chans))
    fig = axes[0].figure
    for a, ch in zip(axes, chans):
        a.axvspan(first, last, color="0.6", alpha=0.15, lw=0, label="conditioning window")
        a.axvspan(last, end, color="C1", alpha=0.1, lw=0, label="forecast")
        a.axvline(last, color="0.3", ls="--", lw=0.8)
        if q is not None:
            lo, hi = q[0], q[-1]
            a.fill_between(pred[time_col], pred[f"{ch}_{quantile_label(lo)}"],
                           pred[f"{ch}_{quantile_label(hi)}"], color="C0", alpha=0.25,
                           lw=0, label=f"{(hi - lo) * 100:g}% predictive band")
        a.plot(pred[time_col], pred[ch], color="C0", lw=1.5, label="predictive mean")
        if true_rows is not None and len(true_rows):
            known = true_rows[ch].notna().to_numpy()
            a.plot(true_rows[time_col][known], true_rows[ch][known], color="k", ls="--",
                   lw=1.0, label="truth")
        seen = series[ch].notna().to_numpy()
        a.plot(times[seen], series[ch][seen], "k.", ms=4, label="observed")
        a.set_ylabel(str(ch))
    axes[0].legend(loc="best", fontsize=7, ncol=2)
    sid = series[id_col].iloc[0] if id_col is not None else None
    sid = sid.item() if isinstance(sid, np.generic) else sid  # 136599, not np.int64(136599)
    axes[0].set_title("forecast" if id_col is None else f"{id_col} = {sid}")
    axes[-1].set_xlabel(str(time_col) if time_unit is None else f"{time_col} ({time_unit})")
    return fig


def _select_series(df: pd.DataFrame, id: Any, id_col: Any, time_col: Any) -> pd.DataFrame:
    """Rows of the requested series, sorted by time."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}.")
    if id_col is None:
        rows = df
    else:
        if id_col not in df.columns:
            raise ValueError(f"df lacks the id column {id_col!r}.")
        if id is None:
            ids = pd.unique(df[id_col])
            if len(ids) != 1:
                raise ValueError(
                    f"df holds {len(ids)} series; pass id= (a value of column {id_col!r})."
                )
            id = ids[0]
        rows = df[df[id_col] == id]
        if len(rows) == 0:
            raise ValueError(f"No rows with {id_col} == {id!r} in df.")
    return rows.sort_values(time_col, kind="stable")


def _horizon(horizon: Any, first: Any, last: Any, is_datetime: bool, est: Any) -> Any:
    """Forecast length as a float (numeric times) or a Timedelta (datetimes).

    A given horizon is read by :func:`latentode.data.horizon_delta`, as ``extrapolate`` reads
    it; None means a quarter of the series' span (one time unit if it spans none).
    """
    unit = est.time_encoder_.unit
    if horizon is None:
        span = last - first
        if is_datetime:
            return span / 4 if span > pd.Timedelta(0) else pd.to_timedelta(1.0, unit=unit)
        return float(span) / 4 if span > 0 else 1.0
    return horizon_delta(horizon, "datetime" if is_datetime else "numeric", unit)


def _resolve_axes(plt: Any, ax: Any, n: int) -> list[Any]:
    if ax is None:
        fig, axes = plt.subplots(n, 1, figsize=(8.0, 2.2 * n + 0.6), sharex=True,
                                 squeeze=False)
        return list(axes[:, 0])
    if hasattr(ax, "plot"):  # a single Axes
        axes = [ax]
    else:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != n:
        raise ValueError(f"ax must provide one Axes per channel ({n}), got {len(axes)}.")
    return axes
