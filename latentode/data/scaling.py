"""Per-channel standardisation that ignores (and preserves) missing values."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ChannelScaler", "channel_moments"]


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


def _as_2d(X: Any) -> np.ndarray:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(
            f"ChannelScaler needs an array of shape (..., C), got shape {x.shape}; reshape a "
            "single channel to (n, 1)."
        )
    return x.reshape(-1, x.shape[-1])
