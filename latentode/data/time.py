"""Conversion between the caller's time axis (numbers or datetimes) and model time."""

from __future__ import annotations

import datetime as _dt
import numbers
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["TimeEncoder"]

#: nanoseconds per supported datetime unit
_UNIT_NS = {"s": 1_000_000_000, "min": 60_000_000_000, "h": 3_600_000_000_000,
            "D": 86_400_000_000_000}


class TimeEncoder:
    """Affine map from the caller's times to model time, ``(t - origin) / scale``.

    Numeric times are used as they are (the *user unit* is the unit of the time column).
    Datetimes (naive or timezone-aware; aware ones are converted to UTC) become floats in
    ``unit`` counted from the earliest fitted time. The model time is then
    ``(t - origin_) / scale_``, where ``origin_`` is the earliest fitted time and ``scale_`` the
    median span ``last - first`` over the series with more than one distinct time, so a
    typical series covers about ``[0, 1]``. Per-series offsets are *not* subtracted: model
    times stay absolute.

    Parameters
    ----------
    unit : {"s", "min", "h", "D"}, default="h"
        User unit of datetime times (seconds, minutes, hours, days): the unit of
        :meth:`to_user_units`, of float horizons given for a datetime axis, and of ``scale_``.
        Ignored for numeric times.
    scale : float, optional
        Fix the time scale (in user units) instead of estimating it.

    Attributes
    ----------
    kind_ : {"numeric", "datetime"}
        Kind of times seen in :meth:`fit`.
    tz_ : tzinfo or None
        Timezone of fitted datetimes (None if naive or numeric); :meth:`inverse_transform`
        returns datetimes in it.
    epoch_ : pandas.Timestamp or None
        For datetimes, the (UTC, naive) instant that user-unit time 0 refers to.
    origin_ : float
        Model time 0, in user units.
    scale_ : float
        User units per model time unit (> 0).

    Examples
    --------
    >>> enc = TimeEncoder().fit([0.0, 2.0, 1.0, 5.0], groups=[0, 0, 1, 1])
    >>> enc.scale_, enc.transform([0.0, 3.0]).tolist()
    (3.0, [0.0, 1.0])
    """

    def __init__(self, unit: str = "h", scale: float | None = None) -> None:
        self.unit = unit
        self.scale = scale

    # ------------------------------------------------------------------ fitting
    def fit(self, times: Any, groups: Any = None) -> TimeEncoder:
        """Learn the origin and scale.

        Parameters
        ----------
        times : array-like
            Numeric or datetime64 times (Series, Index, ndarray or list), no missing values.
        groups : array-like, optional
            Series id of each time; the scale is the median span over series. Default: all
            times form one series.

        Returns
        -------
        self : TimeEncoder
        """
        if self.unit not in _UNIT_NS:
            raise ValueError(f"unit must be one of {sorted(_UNIT_NS)}, got {self.unit!r}.")
        if self.scale is not None and not (
                isinstance(self.scale, numbers.Real) and np.isfinite(self.scale)
                and self.scale > 0):
            raise ValueError(f"scale must be a positive finite number or None, got {self.scale!r}.")
        kind, arr = _as_times(times)
        if len(arr) == 0:
            raise ValueError("Cannot fit a TimeEncoder on an empty set of times.")
        if kind == "datetime":
            self.tz_ = arr.tz
            ns = _utc_ns(arr)
            if (ns == _NAT).any():
                raise ValueError("Cannot fit a TimeEncoder on missing (NaT) times.")
            self.epoch_ = pd.Timestamp(int(ns.min()), unit="ns")
            raw = (ns - ns.min()) / _UNIT_NS[self.unit]
        else:
            self.tz_ = None
            self.epoch_ = None
            raw = arr
            if not np.isfinite(raw).all():
                raise ValueError("Cannot fit a TimeEncoder on missing or infinite times.")
        self.kind_ = kind
        self.origin_ = float(raw.min())
        self.scale_ = float(self.scale) if self.scale is not None else _typical_span(raw, groups)
        return self

    def fit_transform(self, times: Any, groups: Any = None) -> np.ndarray:
        """:meth:`fit` then :meth:`transform`."""
        return self.fit(times, groups).transform(times)

    # ------------------------------------------------------------------ conversions
    def to_user_units(self, times: Any) -> np.ndarray:
        """Times as float64 user units: numbers as they are, datetimes in ``unit`` since
        ``epoch_``. Missing times become NaN.

        Parameters
        ----------
        times : array-like
            Times of the fitted kind.

        Returns
        -------
        numpy.ndarray
            float64, same length as ``times``.
        """
        self._check_fitted()
        kind, arr = _as_times(times)
        if kind != self.kind_:
            raise ValueError(self._kind_message(kind))
        if kind == "numeric":
            return arr
        if (arr.tz is None) != (self.tz_ is None):
            raise ValueError(
                "The model was fitted with "
                f"{'timezone-aware (' + str(self.tz_) + ')' if self.tz_ else 'naive'} datetimes "
                f"but got {'timezone-aware' if arr.tz is not None else 'naive'} ones; "
                "use the same kind (tz_localize / tz_convert)."
            )
        ns = _utc_ns(arr)
        out = (ns - self.epoch_.value) / _UNIT_NS[self.unit]
        out[ns == _NAT] = np.nan
        return out

    def transform(self, times: Any) -> np.ndarray:
        """Model times ``(t - origin_) / scale_``.

        Parameters
        ----------
        times : array-like
            Times of the kind seen in :meth:`fit` (numeric, or datetime64 with the same
            naive / aware-ness; any timezone is accepted for aware ones).

        Returns
        -------
        numpy.ndarray
            float64 model times (NaN where a time is missing).

        Raises
        ------
        ValueError
            If the kind of times differs from the fitted one.
        """
        return (self.to_user_units(times) - self.origin_) / self.scale_

    def inverse_transform(self, model_times: Any) -> np.ndarray | pd.DatetimeIndex:
        """Times in the caller's units from model times.

        Parameters
        ----------
        model_times : array-like of float
            Times on the model's scale (as returned by :meth:`transform`).

        Returns
        -------
        numpy.ndarray or pandas.DatetimeIndex
            float64 times (same shape) for a numeric fit; for a datetime fit a flat
            ``DatetimeIndex`` (ns resolution, rounded to the nearest nanosecond) in the fitted
            timezone ``tz_``.
            NaN model times become NaN / NaT.
        """
        self._check_fitted()
        m = np.asarray(model_times, dtype=np.float64)
        raw = m * self.scale_ + self.origin_
        if self.kind_ == "numeric":
            return raw
        flat = raw.ravel()
        ns = np.full(flat.shape, _NAT, dtype=np.int64)
        ok = np.isfinite(flat)
        ns[ok] = np.rint(flat[ok] * _UNIT_NS[self.unit]).astype(np.int64) + self.epoch_.value
        out = pd.DatetimeIndex(ns.view("datetime64[ns]"))
        if self.tz_ is not None:
            out = out.tz_localize("UTC").tz_convert(self.tz_)
        return out

    def to_model_delta(self, horizon: Any) -> float | np.ndarray:
        """A duration in model time units.

        Parameters
        ----------
        horizon : float, pandas.Timedelta or array-like of them
            A number in user units (the time column's unit; ``unit`` for datetimes), or for a
            datetime fit also a ``pandas.Timedelta`` / ``numpy.timedelta64`` /
            ``datetime.timedelta`` / string read by :func:`pandas.to_timedelta`.

        Returns
        -------
        float or numpy.ndarray
            ``horizon / scale_`` (an array for array input).
        """
        self._check_fitted()
        scalar = np.ndim(horizon) == 0
        if _is_timedelta_like(horizon):
            if self.kind_ != "datetime":
                raise ValueError(
                    "The model was fitted with numeric times: give the horizon as a number in "
                    f"the time column's unit, not {type(horizon).__name__}."
                )
            td = pd.to_timedelta(horizon) if scalar else pd.to_timedelta(np.asarray(horizon))
            raw = np.asarray(td / pd.Timedelta(1, unit=self.unit), dtype=np.float64)
        else:
            if isinstance(horizon, (bool, np.bool_)):
                raise ValueError(f"horizon must be a number or a Timedelta, got {horizon!r}.")
            try:
                raw = np.asarray(horizon, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"horizon must be a number or a Timedelta, got {horizon!r}."
                ) from exc
        out = raw / self.scale_
        return float(out) if scalar else out

    def from_model_delta(self, delta: Any) -> float | np.ndarray | pd.Timedelta | pd.TimedeltaIndex:
        """Inverse of :meth:`to_model_delta`: a model-time duration in user units.

        Returns
        -------
        float, numpy.ndarray, pandas.Timedelta or pandas.TimedeltaIndex
            A float (array) for a numeric fit, a ``Timedelta`` (index) for a datetime fit.
        """
        self._check_fitted()
        scalar = np.ndim(delta) == 0
        raw = np.asarray(delta, dtype=np.float64) * self.scale_
        if self.kind_ == "numeric":
            return float(raw) if scalar else raw
        ns = np.rint(raw * _UNIT_NS[self.unit]).astype(np.int64)
        return pd.Timedelta(int(ns), unit="ns") if scalar else pd.to_timedelta(ns.ravel(),
                                                                                unit="ns")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (parameters and fitted attributes)."""
        out: dict[str, Any] = {"unit": self.unit, "scale": self.scale}
        if hasattr(self, "kind_"):
            out.update(
                kind=self.kind_,
                tz=None if self.tz_ is None else str(self.tz_),
                epoch=None if self.epoch_ is None else int(self.epoch_.value),
                origin=self.origin_,
                scale_=self.scale_,
            )
        return out

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TimeEncoder:
        """Rebuild an encoder from :meth:`to_dict` output."""
        enc = cls(unit=state["unit"], scale=state.get("scale"))
        if "kind" in state:
            enc.kind_ = state["kind"]
            tz = state.get("tz")
            enc.tz_ = None if tz is None else pd.DatetimeIndex([0]).tz_localize(tz).tz
            epoch = state.get("epoch")
            enc.epoch_ = None if epoch is None else pd.Timestamp(int(epoch), unit="ns")
            enc.origin_ = float(state["origin"])
            enc.scale_ = float(state["scale_"])
        return enc

    def __repr__(self) -> str:
        args = f"unit={self.unit!r}" + (f", scale={self.scale!r}" if self.scale is not None
                                         else "")
        return f"TimeEncoder({args})"

    # ------------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        if not hasattr(self, "kind_"):
            raise ValueError("This TimeEncoder is not fitted yet; call fit first.")

    def _kind_message(self, got: str) -> str:
        if self.kind_ == "datetime":
            return ("The model was fitted with datetime times, but got numeric times; "
                    "pass datetime64 times (pandas.to_datetime).")
        return ("The model was fitted with numeric times, but got datetime times; "
                "pass numeric times.")


_NAT = np.iinfo(np.int64).min


def _as_times(times: Any) -> tuple[str, Any]:
    """``("datetime", DatetimeIndex)`` or ``("numeric", float64 ndarray)``; else ValueError."""
    if isinstance(times, (pd.Series, pd.Index)):
        dtype = times.dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
            return "datetime", pd.DatetimeIndex(times.array)
        arr: Any = times
    elif isinstance(times, (pd.Timestamp, _dt.datetime, np.datetime64)):
        return "datetime", pd.DatetimeIndex([times])
    else:
        arr = np.asarray(times)
        if arr.dtype.kind == "M":
            return "datetime", pd.DatetimeIndex(arr.ravel())
    dtype = arr.dtype
    if dtype.kind == "O":
        kind = pd.api.types.infer_dtype(arr, skipna=True)
        if kind in ("datetime", "datetime64"):
            try:
                return "datetime", pd.DatetimeIndex(list(np.asarray(arr).ravel()))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"Could not read the datetimes ({exc}); convert them with "
                    "pandas.to_datetime(..., utc=True)."
                ) from exc
        if kind not in ("integer", "floating", "mixed-integer-float", "empty"):
            raise ValueError(
                f"Times must be numeric or datetime64, got values of type {kind!r}"
                + (" (strings are not parsed: use pandas.to_datetime)" if kind == "string"
                   else "") + "."
            )
    elif pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype) or (
            pd.api.types.is_complex_dtype(dtype)):
        raise ValueError(f"Times must be numeric or datetime64, got dtype {dtype}.")
    if isinstance(arr, (pd.Series, pd.Index)):
        out = arr.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        out = np.asarray(arr, dtype=np.float64)
    return "numeric", np.array(out, dtype=np.float64).ravel()


def _utc_ns(dti: pd.DatetimeIndex) -> np.ndarray:
    """int64 nanoseconds since the Unix epoch (UTC for aware times); NaT -> ``_NAT``.

    Raises a ValueError for datetimes that pandas holds in a coarser unit (e.g.
    ``datetime64[us]``) beyond the nanosecond range.
    """
    try:
        return np.array(dti.as_unit("ns").asi8, dtype=np.int64)
    except pd.errors.OutOfBoundsDatetime as exc:
        raise ValueError(
            f"Datetimes must lie between {pd.Timestamp.min} and {pd.Timestamp.max} (nanosecond "
            f"timestamps); got {dti.min()} to {dti.max()}."
        ) from exc


def _is_timedelta_like(x: Any) -> bool:
    if isinstance(x, (pd.Timedelta, _dt.timedelta, np.timedelta64, str, pd.TimedeltaIndex)):
        return True
    if isinstance(x, (pd.Series, np.ndarray)):
        return pd.api.types.is_timedelta64_dtype(x.dtype)
    return False


def _typical_span(raw: np.ndarray, groups: Any) -> float:
    """Median over groups of ``max - min`` among groups with a positive span; 1.0 if none."""
    if groups is None:
        spans = np.array([raw.max() - raw.min()])
    else:
        g = np.asarray(groups)
        if g.shape[0] != raw.shape[0]:
            raise ValueError(f"groups has {g.shape[0]} entries for {raw.shape[0]} times.")
        codes, _ = pd.factorize(g)
        n = int(codes.max()) + 1
        lo = np.full(n, np.inf)
        hi = np.full(n, -np.inf)
        np.minimum.at(lo, codes, raw)
        np.maximum.at(hi, codes, raw)
        spans = hi - lo
    spans = spans[spans > 0]
    if len(spans) == 0:
        return 1.0
    span = float(np.median(spans))
    return span if np.isfinite(span) and span > 0 else 1.0
