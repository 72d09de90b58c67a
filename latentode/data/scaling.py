"""Per-channel standardisation that ignores (and preserves) missing values."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ChannelScaler", "channel_fences", "channel_moments"]


class ChannelScaler:
    """Standardise each channel with the mean and standard deviation of its observed values.

    NaN marks an unobserved value: it is ignored by :meth:`fit` and kept as NaN by
    :meth:`transform` / :meth:`inverse_transform`. Channels with a zero or undefined standard
    deviation (constant, a single observation, or none) get ``scale_ = 1``; channels with no
    observation get ``mean_ = 0``.

    Attributes
    ----------
    mean_ : numpy.ndarray
        ``(C,)`` float64 mean of the observed values of each channel.
    scale_ : numpy.ndarray
        ``(C,)`` float64 population standard deviation (``ddof=0``) of each channel, > 0.
    n_observed_ : numpy.ndarray
        ``(C,)`` int64 number of observed values per channel at fit.

    Examples
    --------
    >>> s = ChannelScaler().fit([[1.0, np.nan], [3.0, 5.0]])
    >>> s.mean_.tolist(), s.scale_.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    >>> s.transform([[np.nan, 7.0]]).tolist()
    [[nan, 2.0]]
    """

    def fit(self, X: Any) -> ChannelScaler:
        """Learn per-channel mean and standard deviation from the non-NaN values.

        Parameters
        ----------
        X : array-like of shape (..., C)
            Values (a DataFrame, ndarray, ...); NaN where unobserved. Leading dimensions are
            flattened.

        Returns
        -------
        self : ChannelScaler

        Raises
        ------
        ValueError
            For infinite values, or a channel whose mean or variance overflows float64 (values
            too large to standardise; :func:`~latentode.data.validate_frame` names their column
            and row).
        """
        x = _as_2d(X)
        if np.isinf(x).any():
            raise ValueError("ChannelScaler.fit got infinite values; use NaN for missing ones.")
        count, mean, var = channel_moments(x)
        overflow = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(var)))
        if len(overflow):
            raise ValueError(
                f"ChannelScaler.fit: the mean or variance of channel(s) {overflow.tolist()} "
                "overflows float64; their values are too large to standardise."
            )
        std = _channel_std(x, mean, var)
        self.mean_ = np.where(count > 0, mean, 0.0)
        self.scale_ = np.where((count > 0) & np.isfinite(std) & (std > 0), std, 1.0)
        self.n_observed_ = count.astype(np.int64)
        return self

    def fit_transform(self, X: Any) -> np.ndarray:
        """:meth:`fit` then :meth:`transform`."""
        return self.fit(X).transform(X)

    @property
    def n_channels(self) -> int:
        """Number of channels ``C`` seen in :meth:`fit`."""
        self._check_fitted()
        return len(self.mean_)

    def transform(self, X: Any) -> np.ndarray:
        """``(X - mean_) / scale_`` along the last axis; NaN stays NaN.

        Parameters
        ----------
        X : array-like of shape (..., C)
            Values in the original units, channels on the last axis.

        Returns
        -------
        numpy.ndarray
            float64, same shape as ``X``.
        """
        x = self._check(X)
        return (x - self.mean_) / self.scale_

    def inverse_transform(self, X: Any) -> np.ndarray:
        """``X * scale_ + mean_`` along the last axis; NaN stays NaN.

        Parameters
        ----------
        X : array-like of shape (..., C)
            Standardised values, channels on the last axis.

        Returns
        -------
        numpy.ndarray
            float64, same shape as ``X``.
        """
        x = self._check(X)
        return x * self.scale_ + self.mean_

    def inverse_std(self, std: Any) -> np.ndarray:
        """Standard deviations in standardised units back to original units (``std * scale_``).

        Parameters
        ----------
        std : array-like of shape (..., C)
            Standard deviations in standardised units, channels on the last axis.

        Returns
        -------
        numpy.ndarray
            float64, same shape as ``std``.
        """
        return self._check(std) * self.scale_

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fitted state."""
        if not hasattr(self, "mean_"):
            return {}
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                "n_observed": self.n_observed_.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ChannelScaler:
        """Rebuild a scaler from :meth:`to_dict` output."""
        out = cls()
        if state:
            out.mean_ = np.asarray(state["mean"], dtype=np.float64)
            out.scale_ = np.asarray(state["scale"], dtype=np.float64)
            n_obs = state.get("n_observed", [0] * len(out.mean_))
            out.n_observed_ = np.asarray(n_obs, dtype=np.int64)
        return out

    def __repr__(self) -> str:
        return "ChannelScaler()"

    # ------------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise ValueError("This ChannelScaler is not fitted yet; call fit first.")

    def _check(self, X: Any) -> np.ndarray:
        self._check_fitted()
        x = np.asarray(X, dtype=np.float64)
        if x.ndim == 0 or x.shape[-1] != len(self.mean_):
            raise ValueError(
                f"Expected arrays with {len(self.mean_)} channels on the last axis, got shape "
                f"{x.shape}."
            )
        return x


def channel_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel count, mean and population variance of the non-NaN values of ``x (n, C)``.

    Channels without observations get mean 0 and variance 0. Values too large for float64
    arithmetic give a non-finite mean or variance (no warning is emitted): callers check.
    """
    observed = ~np.isnan(x)
    count = observed.sum(axis=0)
    safe = np.maximum(count, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.where(observed, x, 0.0).sum(axis=0) / safe
        var = np.where(observed, (x - mean) ** 2, 0.0).sum(axis=0) / safe
    return count, mean, var


def _channel_std(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Per-channel population standard deviation of the non-NaN values of ``x (n, C)``.

    ``sqrt(var)``, except where the variance underflows float64 (values that differ but are
    all smaller than about ``1e-154`` in magnitude, whose squared deviations round to zero):
    there the deviations are divided by their largest magnitude before squaring, so such a
    channel is standardised like any other instead of being taken for a constant one.
    """
    std = np.sqrt(var)
    small = np.flatnonzero(var < np.finfo(np.float64).tiny)
    if len(small):
        observed = ~np.isnan(x[:, small])
        dev = np.where(observed, x[:, small] - mean[small], 0.0)
        top = np.abs(dev).max(axis=0)
        safe = np.where(top > 0, top, 1.0)
        ratio = ((dev / safe) ** 2).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        std[small] = np.where(top > 0, top * np.sqrt(ratio), 0.0)
    return std


def channel_fences(X: Any, width: float = 2.0, quantile: float = 0.05
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Far-out fences of each channel: its central quantiles widened by their own range.

    With ``lo`` and ``hi`` the ``quantile`` and ``1 - quantile`` quantiles of the channel's
    observed (non-NaN) values (:func:`numpy.nanquantile`, linear interpolation) and ``r = hi -
    lo``, the fences are ``lo - width * r`` and ``hi + width * r``: Tukey's fences
    (``quantile=0.25``, ``width=3``: his "far out" values, *Exploratory Data Analysis*, 1977)
    taken from the outer quantiles. The defaults (the 5th and 95th percentiles, twice their
    range beyond each) put the fences of normal values 8.2 standard deviations from the mean,
    and those of a uniform channel 1.75 times its range beyond its ends, so that no value of a
    well-behaved channel lies beyond them, while a value there is a gross error (a temperature
    of 2 degC recorded among 37s). Quantiles are robust: up to ``quantile`` of a channel's
    values on each side may be such errors without moving the fences far, unlike a mean and
    standard deviation, which one of them can inflate. The quartiles themselves would not do:
    a damped oscillation's values crowd near 0 with long tails, and Tukey's far-out fences
    (2.8 standard deviations there) cut 2.5 % of such values (the quality suite's
    ``osc-fast``); with the defaults no value of the suite's six synthetic data sets lies
    beyond the fences of its training series. A channel with no observed value, or whose two
    quantiles coincide (most of its values at one level, e.g. a 0/1 flag with a rare 1), gets
    no fences (``-inf``, ``+inf``): its quantiles cannot tell a gross error from its other
    levels.

    Quantiles commute with increasing affine maps, so the fences of standardised values are
    the standardised fences (compute them in either unit).

    Parameters
    ----------
    X : array-like of shape (..., C)
        Values; NaN where unobserved. Leading dimensions are flattened.
    width : float, default=2.0
        Multiple of the central range ``r`` beyond each of its quantiles; positive.
    quantile : float, default=0.05
        The lower quantile ``lo`` (the upper is ``1 - quantile``); in (0, 0.5).

    Returns
    -------
    low, high : numpy.ndarray
        ``(C,)`` float64 fences, ``low < high``; infinite where a channel has none.

    Raises
    ------
    ValueError
        For a ``width`` that is not a positive finite number, a ``quantile`` outside (0, 0.5),
        or infinite values.

    Examples
    --------
    >>> low, high = channel_fences([[1.0, 0.0], [2.0, 0.0], [3.0, np.nan], [4.0, 0.0],
    ...                             [5.0, 1.0], [np.nan, 0.0]], width=3.0, quantile=0.25)
    >>> low.tolist(), high.tolist()
    ([-4.0, -inf], [10.0, inf])
    """
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"channel_fences: width must be a positive finite number, got "
                         f"{width!r}.")
    if not 0 < quantile < 0.5:
        raise ValueError(f"channel_fences: quantile must lie in (0, 0.5), got {quantile!r}.")
    x = _as_2d(X)
    if np.isinf(x).any():
        raise ValueError("channel_fences got infinite values; use NaN for missing ones.")
    low = np.full(x.shape[1], -np.inf)
    high = np.full(x.shape[1], np.inf)
    seen = np.flatnonzero((~np.isnan(x)).any(axis=0))
    if len(seen):
        lo, hi = np.nanquantile(x[:, seen], [quantile, 1 - quantile], axis=0)
        spread = hi - lo
        fenced = spread > 0
        low[seen[fenced]] = (lo - width * spread)[fenced]
        high[seen[fenced]] = (hi + width * spread)[fenced]
    return low, high


def _as_2d(X: Any) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(
            f"ChannelScaler needs an array of shape (..., C), got shape {x.shape}; reshape a "
            "single channel to (n, 1)."
        )
    return x.reshape(-1, x.shape[-1])
