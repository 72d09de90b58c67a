"""Generators of the held-out family of data sets (``UNSEEN`` in ``benchmarks/calibration.py``).

The calibration suite (``calibration.SUITE``) has been the development set of the project: every
default and the intervals' calibration were chosen on it. This family is a second set of data
sets, fixed before any model figure existed on them and never tuned on, whose generating
processes differ in kind from the suite's (damped *linear* oscillators, Ornstein-Uhlenbeck paths,
a random walk, fixed-frequency sinusoids, PhysioNet vitals):

* :func:`van_der_pol`: a nonlinear limit cycle (relaxation oscillations), ``mu`` drawn per
  series, random initial states inside and outside the cycle (its transient is in the data);
* :func:`lotka_volterra`: predator and prey, positive, nonlinear, conserved orbits (the period
  grows with the orbit), channels on scales 25 times apart, multiplicative noise;
* :func:`trend_seasonal`: non-stationary, a per-series linear trend plus a seasonal term: the
  training mean is the wrong place to revert to, and the series' own past mean too;
* :func:`regimes`: piecewise-constant levels that jump at Poisson times, shared by the channels
  (linear interpolation and the last value carried forward are strong);
* :func:`double_well`: a bistable stochastic process ``dx = (x - x**3) dt + sigma dW`` (hops
  between wells at -1 and 1), observed in bursts: clusters of observations with long gaps, a
  different number of clusters per series (very uneven sampling rates).

Each generator returns the long frame of :mod:`latentode.datasets` (``id``, ``t``, ``x0, x1,
...``; NaN where a channel is not observed; sorted by ``id`` then ``t``; every series keeps at
least one value), or with ``return_truth=True`` also the noise-free values at the same rows;
the same ``random_state`` gives an identical frame. :func:`make_unseen` dispatches on the
``Case.make`` kind. This module is for the benchmarks only: it adds nothing to the library's
public API (it uses the library's private ``_to_long`` for the frame, one home for it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from latentode.datasets.synthetic import _to_long

Frame = pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]

#: the ``Case.make`` kinds of this module
KINDS = ("vanderpol", "lotka", "trend", "regimes", "doublewell")


def _uniform_times(gen: np.random.Generator, n_series: int, n_points: int,
                   time_range: tuple[float, float]) -> np.ndarray:
    lo, hi = time_range
    return np.sort(gen.uniform(lo, hi, size=(n_series, n_points)), axis=1)


def _missing(gen: np.random.Generator, shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """Boolean ``observed``: each entry missing independently with probability ``fraction``."""
    return gen.uniform(size=shape) >= fraction


def van_der_pol(n_series: int, n_points: int, *, time_range: tuple[float, float],
                mu_range: tuple[float, float], initial_range: float, noise_std: float,
                missing_fraction: float, random_state: int, return_truth: bool = False
                ) -> Frame:
    """Van der Pol oscillators ``x' = y, y' = mu (1 - x**2) y - x``: channels ``x0 = x``,
    ``x1 = y``.

    Per series ``mu ~ U(mu_range)`` and the initial state ``(x, y) ~ U(-initial_range,
    initial_range)**2`` at ``time_range[0]``; every trajectory approaches the limit cycle, whose
    amplitude in ``x`` is about 2 for any ``mu``. ``n_points`` sorted uniform times per series,
    each channel missing independently with probability ``missing_fraction``, Gaussian noise
    ``noise_std``.
    """
    gen = np.random.default_rng(random_state)
    times = _uniform_times(gen, n_series, n_points, time_range)
    mus = gen.uniform(*mu_range, size=n_series)
    init = gen.uniform(-initial_range, initial_range, size=(n_series, 2))
    truth = np.empty((n_series, n_points, 2))
    for i in range(n_series):
        mu = mus[i]
        sol = solve_ivp(lambda _t, s, mu=mu: [s[1], mu * (1 - s[0] ** 2) * s[1] - s[0]],
                        time_range, init[i], t_eval=times[i], rtol=1e-8, atol=1e-8)
        truth[i] = sol.y.T
    observed = _missing(gen, truth.shape, missing_fraction)
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, observed, noise, return_truth)


def lotka_volterra(n_series: int, n_points: int, *, time_range: tuple[float, float],
                   alpha: float, beta: float, gamma: float, delta: float, log_spread: float,
                   noise_std: float, missing_fraction: float, random_state: int,
                   return_truth: bool = False) -> Frame:
    """Lotka-Volterra predator and prey: prey ``x0`` with ``x0' = alpha x0 - beta x0 x1``,
    predators ``x1`` with ``x1' = delta x0 x1 - gamma x1``.

    The equilibrium is ``(gamma / delta, alpha / beta)``; each series starts at the equilibrium
    times ``exp(U(-log_spread, log_spread))`` per channel and stays on its closed orbit (solved
    in log coordinates: positive by construction). Observed values carry multiplicative noise
    ``exp(N(0, noise_std**2))`` (positive); each channel missing independently with
    probability ``missing_fraction``.
    """
    gen = np.random.default_rng(random_state)
    times = _uniform_times(gen, n_series, n_points, time_range)
    eq = np.log([gamma / delta, alpha / beta])
    init = eq + gen.uniform(-log_spread, log_spread, size=(n_series, 2))

    def rhs(_t: float, s: np.ndarray) -> list[float]:
        return [alpha - beta * np.exp(s[1]), delta * np.exp(s[0]) - gamma]

    truth = np.empty((n_series, n_points, 2))
    for i in range(n_series):
        sol = solve_ivp(rhs, time_range, init[i], t_eval=times[i], rtol=1e-8, atol=1e-10)
        truth[i] = np.exp(sol.y.T)
    observed = _missing(gen, truth.shape, missing_fraction)
    noise = truth * np.expm1(gen.normal(0.0, noise_std, size=truth.shape))
    return _to_long(times, truth, observed, noise, return_truth)


def trend_seasonal(n_series: int, n_points: int, *, time_range: tuple[float, float],
                   level_std: float, slope_std: float, period: float,
                   amplitude_range: tuple[float, float], noise_std: float, random_state: int,
                   return_truth: bool = False) -> Frame:
    """One channel ``x0 = a + b (t - t0) + A sin(2 pi (t - t0) / period + phi)``: per series
    level ``a ~ N(0, level_std**2)``, slope ``b ~ N(0, slope_std**2)``, amplitude ``A ~
    U(amplitude_range)``, phase ``phi ~ U(0, 2 pi)``; the period is the same for every series
    (a season). ``n_points`` sorted uniform times, Gaussian noise ``noise_std``."""
    gen = np.random.default_rng(random_state)
    times = _uniform_times(gen, n_series, n_points, time_range)
    s = times - time_range[0]
    level = gen.normal(0.0, level_std, size=(n_series, 1))
    slope = gen.normal(0.0, slope_std, size=(n_series, 1))
    amp = gen.uniform(*amplitude_range, size=(n_series, 1))
    phase = gen.uniform(0.0, 2 * np.pi, size=(n_series, 1))
    truth = (level + slope * s + amp * np.sin(2 * np.pi * s / period + phase))[..., None]
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, np.ones(truth.shape, dtype=bool), noise, return_truth)


def trend_form(t: np.ndarray, period: float) -> np.ndarray:
    """The design of :func:`trend_seasonal`'s known form at times ``t`` (``(len(t), 4)``: level,
    slope, the season's sine and cosine): a least-squares fit of it to a series' values gives the
    series' slope and an oracle-like reference for its forecasts."""
    w = 2 * np.pi / period
    return np.stack([np.ones_like(t), t, np.sin(w * t), np.cos(w * t)], 1)


def past_line(t_past: np.ndarray, x_past: np.ndarray, t_query: np.ndarray,
              fallback: float) -> np.ndarray:
    """A straight line fitted by least squares to one series' past values ``x_past`` at
    ``t_past``, evaluated at ``t_query``: the naive trend-following forecast (the value itself
    for a single past value, ``fallback`` for none)."""
    if len(t_past) >= 2:
        return np.polyval(np.polyfit(t_past, x_past, 1), t_query)
    return np.full(len(t_query), x_past[-1] if len(t_past) else fallback, dtype=np.float64)


def regimes(n_series: int, n_points: int, *, time_range: tuple[float, float], rate: float,
            n_channels: int, level_std: float, noise_std: float, missing_fraction: float,
            random_state: int, return_truth: bool = False) -> Frame:
    """Regime switching: per series, switch times of a Poisson process of ``rate`` on
    ``time_range``; in each regime every channel sits at its own level ``N(0, level_std**2)``
    (new draws at every switch, the switches shared by the channels). ``n_points`` sorted
    uniform times, each channel missing independently with probability ``missing_fraction``,
    Gaussian noise ``noise_std``."""
    gen = np.random.default_rng(random_state)
    times = _uniform_times(gen, n_series, n_points, time_range)
    lo, hi = time_range
    truth = np.empty((n_series, n_points, n_channels))
    for i in range(n_series):
        switches = np.sort(gen.uniform(lo, hi, size=gen.poisson(rate * (hi - lo))))
        levels = gen.normal(0.0, level_std, size=(len(switches) + 1, n_channels))
        truth[i] = levels[np.searchsorted(switches, times[i], side="right")]
    observed = _missing(gen, truth.shape, missing_fraction)
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, observed, noise, return_truth)


def bursty_times(gen: np.random.Generator, n_series: int, time_range: tuple[float, float],
                 mean_clusters: float, mean_size: float, spread: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Clustered observation times: per series ``1 + Poisson(mean_clusters - 1)`` clusters at
    uniform centres in ``time_range``, each of ``2 + Poisson(mean_size - 2)`` times spread
    ``N(0, spread**2)`` around its centre (reflected at the ends of the range, so no two times
    tie there). Returns the times padded to
    a common length with ``time_range[1]`` (shape ``(n_series, n_max)``, sorted per series)
    and the boolean mask of the real ones."""
    lo, hi = time_range
    rows = []
    for _ in range(n_series):
        k = 1 + gen.poisson(mean_clusters - 1)
        centres = gen.uniform(lo, hi, size=k)
        sizes = 2 + gen.poisson(mean_size - 2, size=k)
        t = np.repeat(centres, sizes) + gen.normal(0.0, spread, size=int(sizes.sum()))
        t = hi - np.abs(hi - (lo + np.abs(t - lo)))  # reflected into the range (no ties)
        rows.append(np.sort(t))
    n_max = max(len(r) for r in rows)
    times = np.full((n_series, n_max), float(hi))
    real = np.zeros((n_series, n_max), dtype=bool)
    for i, r in enumerate(rows):
        times[i, :len(r)], real[i, :len(r)] = r, True
    return times, real


def double_well(n_series: int, *, time_range: tuple[float, float], sigma: float,
                initial_range: float, mean_clusters: float, mean_size: float, spread: float,
                noise_std: float, random_state: int, dt: float = 0.005,
                return_truth: bool = False) -> Frame:
    """A bistable diffusion ``dx = (x - x**3) dt + sigma dW`` (wells at -1 and 1), one channel,
    observed in bursts (:func:`bursty_times`).

    ``x(t0) ~ U(-initial_range, initial_range)``; the path is simulated by Euler-Maruyama with
    step ``dt`` and read at the observation times by linear interpolation of the grid; Gaussian
    noise ``noise_std``.
    """
    gen = np.random.default_rng(random_state)
    times, real = bursty_times(gen, n_series, time_range, mean_clusters, mean_size, spread)
    lo, hi = time_range
    grid = np.linspace(lo, hi, int(round((hi - lo) / dt)) + 1)
    h = grid[1] - grid[0]
    path = np.empty((n_series, len(grid)))
    path[:, 0] = gen.uniform(-initial_range, initial_range, size=n_series)
    kicks = gen.normal(0.0, sigma * np.sqrt(h), size=(n_series, len(grid) - 1))
    for j in range(len(grid) - 1):
        x = path[:, j]
        path[:, j + 1] = x + (x - x**3) * h + kicks[:, j]
    truth = np.stack([np.interp(times[i], grid, path[i]) for i in range(n_series)])[..., None]
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, real[..., None].copy(), noise, return_truth)


def make_unseen(kind: str, n_series: int, time_range: tuple[float, float], seed: int,
                options: dict[str, Any], return_truth: bool = False) -> Frame:
    """The frame of one data set of the family: the generator of ``kind`` (:data:`KINDS`) with
    the case's ``options`` (``n_points`` included where the generator takes it)."""
    makers = {"vanderpol": van_der_pol, "lotka": lotka_volterra, "trend": trend_seasonal,
              "regimes": regimes, "doublewell": double_well}
    if kind not in makers:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    opts = dict(options)
    args = (n_series,) if kind == "doublewell" else (n_series, opts.pop("n_points"))
    return makers[kind](*args, time_range=time_range, random_state=seed,
                        return_truth=return_truth, **opts)
