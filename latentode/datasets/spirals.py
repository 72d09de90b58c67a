"""The 2-D spirals of Chen et al., "Neural Ordinary Differential Equations" (2018), section 5.1.

The paper fits a latent ODE to irregularly sampled noisy spirals and judges it by how well it
extrapolates (its Table 2). The construction follows the published example
(``examples/latent_ode.py`` of the torchdiffeq repository): two spirals on a grid of ``n_total``
equally spaced times over ``[0, 6 pi]``, one clockwise, ``r = b * 50 / (6 pi + 1 - t)`` around
``(-5, 0)``, one counter-clockwise, ``r = b * t`` around ``(5, 0)``, with ``b = 0.3``; each series
picks one of them at random and a random start index, and its window is the next ``n_points``
grid points (times restart at 0: the window spans about 1.9 time units), observed with Gaussian
noise of std ``noise``. Of these ``n_points``, ``n_observed`` are observed (a random subset:
irregular sampling), and the noise-free path at the following ``n_future`` grid points is the
extrapolation target.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .synthetic import RandomState, _check_count, _rng

__all__ = ["make_spirals", "Spirals"]

_STOP = 6.0 * np.pi
_B = 0.3


class Spirals(NamedTuple):
    """Result of :func:`make_spirals`.

    Attributes
    ----------
    observed : pandas.DataFrame
        ``id, t, x, y``: the ``n_observed`` noisy observations of each series' window, sorted by
        ``id`` and ``t``.
    future : pandas.DataFrame
        ``id, t, x, y``: the noise-free path at the ``n_future`` grid points after the window.
    clockwise : pandas.Series
        Bool per series id: which of the two spirals the series follows.
    start : pandas.Series
        Grid index of each series' first window point (its future starts ``n_points`` later).
    """

    observed: pd.DataFrame
    future: pd.DataFrame
    clockwise: pd.Series
    start: pd.Series


def spiral_paths(n_total: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The time grid and the two noise-free spirals, ``(t (n,), clockwise (n, 2), ccw (n, 2))``."""
    ts = np.linspace(0.0, _STOP, n_total)
    zs_cw = _STOP + 1.0 - ts
    rs_cw = _B * 50.0 / zs_cw
    cw = np.stack([rs_cw * np.cos(zs_cw) - 5.0, rs_cw * np.sin(zs_cw)], axis=1)
    rs_cc = _B * ts
    cc = np.stack([rs_cc * np.cos(ts) + 5.0, rs_cc * np.sin(ts)], axis=1)
    return ts, cw, cc


def make_spirals(
    n_spirals: int = 1000,
    n_points: int = 100,
    n_observed: int = 30,
    noise: float = 0.3,
    random_state: RandomState = None,
    *,
    n_future: int = 100,
    n_total: int = 1000,
) -> Spirals:
    """Noisy, irregularly observed 2-D spirals and their noise-free future (Chen et al., 2018).

    Parameters
    ----------
    n_spirals : int
        Number of series (half clockwise, half counter-clockwise on average).
    n_points : int
        Grid points in each series' observation window (the paper: 100).
    n_observed : int
        How many of them are observed, chosen at random per series (the paper: 30, 50, 100).
    noise : float
        Standard deviation of the Gaussian observation noise (the published example: 0.3).
    random_state : int, numpy.random.Generator or None
        Seed; the same seed gives identical frames.
    n_future : int
        Grid points after the window whose noise-free values are the extrapolation target.
    n_total : int
        Points of the grid over ``[0, 6 pi]`` (the published example: 1000).

    Returns
    -------
    Spirals
        ``observed`` (noisy observations), ``future`` (noise-free targets), ``clockwise``,
        ``start``.

    Examples
    --------
    >>> from latentode.datasets import make_spirals
    >>> data = make_spirals(4, n_observed=30, random_state=0)
    >>> data.observed.shape, data.future.shape
    ((120, 4), (400, 4))
    >>> round(float(data.observed["t"].max()), 3) <= 1.868  # window: 100 steps of 6 pi / 999
    True
    """
    for name, n in (("n_spirals", n_spirals), ("n_points", n_points),
                    ("n_observed", n_observed), ("n_total", n_total)):
        _check_count(name, n)
    if int(n_future) < 0:
        raise ValueError(f"n_future must be >= 0, got {n_future!r}.")
    if n_observed > n_points:
        raise ValueError(f"n_observed ({n_observed}) cannot exceed n_points ({n_points}).")
    if n_total - n_points - n_future < n_points:
        raise ValueError(
            f"n_total={n_total} leaves no room for start indices: it must be at least "
            f"2 * n_points + n_future = {2 * n_points + n_future}."
        )
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    gen = _rng(random_state)
    ts, cw, cc = spiral_paths(n_total)
    # as the published example: start indices away from the beginning of the grid
    starts = gen.integers(n_points, n_total - n_points - n_future + 1, size=n_spirals)
    clockwise = gen.random(n_spirals) <= 0.5
    obs_rows, fut_rows = [], []
    k_obs = np.arange(n_points)
    kf = np.arange(n_points, n_points + n_future)  # the future's grid steps after a start
    for i, (s0, is_cw) in enumerate(zip(starts, clockwise)):
        path = cw if is_cw else cc
        pick = np.sort(gen.choice(k_obs, size=n_observed, replace=False))
        vals = path[s0 + pick] + gen.normal(0.0, noise, size=(n_observed, 2))
        obs_rows.append(np.column_stack([np.full(n_observed, i), ts[pick], vals]))
        fut_rows.append(np.column_stack([np.full(n_future, i), ts[kf], path[s0 + kf]]))

    def frame(rows: list[np.ndarray]) -> pd.DataFrame:
        arr = np.concatenate(rows) if rows else np.empty((0, 4))
        df = pd.DataFrame(arr[:, 1:], columns=["t", "x", "y"])
        df.insert(0, "id", arr[:, 0].astype(np.int64))
        return df

    index = pd.RangeIndex(n_spirals, name="id")
    return Spirals(frame(obs_rows), frame(fut_rows),
                   pd.Series(clockwise, index=index, name="clockwise"),
                   pd.Series(starts, index=index, name="start"))
