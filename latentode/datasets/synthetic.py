"""Synthetic irregularly sampled data sets with known ground truth, as long DataFrames.

* :func:`make_periodic`: the Latent ODE paper's toy "periodic" data (noisy sinusoids with random
  frequency, amplitude and phase), each series observed at its own random times.
* :func:`make_damped_oscillators`: a damped harmonic oscillator with known linear dynamics
  (position and velocity channels), random initial conditions, values missing at random.
* :func:`make_oscillator_classes`: a classification task, damped oscillators of a few
  frequencies labelled by their frequency (a frame and one label per series).
* :func:`make_ornstein_uhlenbeck`: a stochastic mean-reverting process (a random walk when the
  reversion rate is 0), simulated exactly at each series' irregular times: its future is
  uncertain however well a model learns it, and the uncertainty grows with the horizon.

Both return ``id`` (int), ``t`` (float) and channel columns ``x0, x1, ...`` (NaN where not
observed), sorted by ``id`` then ``t``; the same ``random_state`` gives an identical frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_periodic", "make_damped_oscillators", "make_oscillator_classes",
           "make_ornstein_uhlenbeck"]

RandomState = int | np.random.Generator | np.random.SeedSequence | None


def _rng(random_state: RandomState) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        raise TypeError("pass an int seed or a numpy.random.Generator, not a RandomState")
    return np.random.default_rng(random_state)


def _check_range(name: str, rng_: tuple[float, float], *, positive: bool = False) -> None:
    lo, hi = (float(v) for v in rng_)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) or (positive and lo < 0):
        raise ValueError(f"{name} must be a finite (low, high) pair with low <= high, got {rng_}")


def _check_count(name: str, n: int) -> None:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def _sample_times(
    gen: np.random.Generator, n_series: int, n_points: int, time_range: tuple[float, float]
) -> np.ndarray:
    """Sorted uniform times per series, shape (n_series, n_points)."""
    lo, hi = (float(v) for v in time_range)
    if not hi > lo:
        raise ValueError(f"time_range must satisfy low < high, got {time_range}")
    return np.sort(gen.uniform(lo, hi, size=(n_series, n_points)), axis=1)


def _to_long(
    times: np.ndarray,
    truth: np.ndarray,
    observed: np.ndarray,
    noise: np.ndarray,
    return_truth: bool,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Flatten (S, N) times and (S, N, C) values to the long frame, dropping empty rows."""
    n_series, n_points, n_channels = truth.shape
    # every series keeps at least one observation: its first time, channel 0
    empty = ~observed.any(axis=(1, 2))
    observed[empty, 0, 0] = True
    keep = observed.any(axis=2).reshape(-1)
    ids = np.repeat(np.arange(n_series, dtype=np.int64), n_points)[keep]
    t = times.reshape(-1)[keep]
    noisy = np.where(observed, truth + noise, np.nan).reshape(-1, n_channels)[keep]
    cols = [f"x{c}" for c in range(n_channels)]
    frame = pd.DataFrame(noisy, columns=cols)
    frame.insert(0, "t", t)
    frame.insert(0, "id", ids)
    if not return_truth:
        return frame
    clean = pd.DataFrame(truth.reshape(-1, n_channels)[keep], columns=cols)
    clean.insert(0, "t", t)
    clean.insert(0, "id", ids)
    return frame, clean


def make_periodic(
    n_series: int = 1000,
    n_points: int = 100,
    *,
    time_range: tuple[float, float] = (0.0, 5.0),
    noise_std: float = 0.01,
    frequency_range: tuple[float, float] = (0.4, 0.8),
    amplitude_range: tuple[float, float] = (0.5, 1.5),
    offset_std: float = 0.1,
    chirp: bool = False,
    obs_fraction: float = 1.0,
    n_channels: int = 1,
    random_state: RandomState = None,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Irregularly sampled noisy sinusoids, like the Latent ODE paper's "periodic" toy data.

    Every series ``i`` and channel ``c`` is ``x(t) = c0 + A sin(phi + 2 pi f t')`` with
    ``t' = t - time_range[0]``, frequency ``f ~ U(frequency_range)`` (paper: U(0.4, 0.8)),
    amplitude ``A ~ U(amplitude_range)``, phase ``phi ~ U(0, 2 pi)`` and offset
    ``c0 ~ N(0, offset_std**2)``. With ``chirp=True`` the frequency moves linearly from ``f``
    to a second draw ``f1 ~ U(frequency_range)`` over ``time_range`` (the paper's generator
    samples a start and an end frequency; here the phase is integrated exactly). Each series
    has ``n_points`` sorted times drawn uniformly in ``time_range`` (the paper shares one
    grid between series), and observed values carry Gaussian noise ``N(0, noise_std**2)``
    (the paper adds ``noise_weight * U(0, 1)``).

    Parameters
    ----------
    n_series : int
        Number of series (ids ``0 .. n_series - 1``).
    n_points : int
        Candidate observation times per series.
    time_range : (float, float)
        Interval the times are drawn from (paper: ``(0, 5)``).
    noise_std : float
        Standard deviation of the observation noise.
    frequency_range, amplitude_range : (float, float)
        Ranges of the uniform draws of frequency (cycles per time unit) and amplitude.
    offset_std : float
        Standard deviation of the per-series vertical offset.
    chirp : bool
        Linearly varying frequency, as in the paper's generator.
    obs_fraction : float in (0, 1]
        Probability that a (time, channel) entry is observed. Rows with no observed channel
        are dropped; every series keeps at least one observation.
    n_channels : int
        Number of independent sinusoidal channels ``x0, x1, ...``.
    random_state : int, numpy.random.Generator or None
        Seed; the same seed gives an identical frame.
    return_truth : bool
        Also return the noise-free values of all channels at the same rows.

    Returns
    -------
    frame : pandas.DataFrame
        ``id`` (int64), ``t`` (float64), ``x0 ..`` (float64, NaN where not observed), sorted
        by ``id`` and ``t``; ``n_series * n_points`` rows when ``obs_fraction == 1``.
    truth : pandas.DataFrame
        Only with ``return_truth=True``: same ``id, t`` rows, noise-free and complete.

    Examples
    --------
    >>> df = make_periodic(n_series=3, n_points=5, random_state=0)
    >>> df.shape
    (15, 3)
    """
    _check_count("n_series", n_series)
    _check_count("n_points", n_points)
    _check_count("n_channels", n_channels)
    _check_range("frequency_range", frequency_range)
    _check_range("amplitude_range", amplitude_range)
    if not 0.0 < obs_fraction <= 1.0:
        raise ValueError(f"obs_fraction must be in (0, 1], got {obs_fraction!r}")
    if noise_std < 0 or offset_std < 0:
        raise ValueError("noise_std and offset_std must be >= 0")
    gen = _rng(random_state)
    shape = (n_series, 1, n_channels)
    times = _sample_times(gen, n_series, n_points, time_range)
    freq = gen.uniform(*frequency_range, size=shape)
    freq_end = gen.uniform(*frequency_range, size=shape) if chirp else freq
    amp = gen.uniform(*amplitude_range, size=shape)
    phase = gen.uniform(0.0, 2.0 * np.pi, size=shape)
    offset = gen.normal(0.0, offset_std, size=shape)
    tau = times[:, :, None] - float(time_range[0])
    span = float(time_range[1]) - float(time_range[0])
    cycles = freq * tau + (freq_end - freq) * tau**2 / (2.0 * span)
    truth = offset + amp * np.sin(phase + 2.0 * np.pi * cycles)
    observed = gen.random(truth.shape) < obs_fraction
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, observed, noise, return_truth)


def damped_oscillator_matrix(omega: float, damping: float) -> np.ndarray:
    """System matrix ``A`` of ``d/dt [x, v] = A [x, v]`` for :func:`make_damped_oscillators`.

    Parameters
    ----------
    omega : float
        Natural angular frequency (rad per time unit).
    damping : float
        Damping ratio ``zeta``.

    Returns
    -------
    ndarray, shape (2, 2)
        ``[[0, 1], [-omega**2, -2 * damping * omega]]``.
    """
    return np.array([[0.0, 1.0], [-(omega**2), -2.0 * damping * omega]])


def make_damped_oscillators(
    n_series: int = 500,
    n_points: int = 50,
    *,
    time_range: tuple[float, float] = (0.0, 10.0),
    omega: float = 1.5,
    damping: float = 0.1,
    amplitude_range: tuple[float, float] = (0.5, 1.5),
    missing_fraction: float = 0.2,
    noise_std: float = 0.01,
    random_state: RandomState = None,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Noisy, irregularly sampled trajectories of one damped harmonic oscillator.

    All series share the dynamics ``x'' + 2 zeta omega x' + omega**2 x = 0`` (first-order form
    ``d/dt [x, v] = A [x, v]``, :func:`damped_oscillator_matrix`); channel ``x0`` is the
    position ``x``, ``x1`` the velocity ``v``. The exact (underdamped) solution from
    ``t0 = time_range[0]`` with ``omega_d = omega sqrt(1 - zeta**2)``, ``s = t - t0`` is::

        x(t) = exp(-zeta omega s) (x0 cos(omega_d s)
                                   + (v0 + zeta omega x0) / omega_d sin(omega_d s))
        v(t) = exp(-zeta omega s) (v0 cos(omega_d s)
                                   - (omega**2 x0 + zeta omega v0) / omega_d sin(omega_d s))

    Initial states are ``x0 = r cos(theta)``, ``v0 = r omega sin(theta)`` with
    ``r ~ U(amplitude_range)``, ``theta ~ U(0, 2 pi)``. Each series has ``n_points`` sorted
    uniform times in ``time_range``; each (time, channel) entry is missing independently with
    probability ``missing_fraction`` (rows with both channels missing are dropped, every series
    keeps at least one observation); observed values carry ``N(0, noise_std**2)`` noise.

    Parameters
    ----------
    n_series, n_points : int
        Number of series and of candidate times per series.
    time_range : (float, float)
        Interval of the observation times; the initial state is at ``time_range[0]``.
    omega : float
        Natural angular frequency, > 0.
    damping : float
        Damping ratio ``zeta`` in ``[0, 1)`` (underdamped).
    amplitude_range : (float, float)
        Range of the initial energy radius ``r``.
    missing_fraction : float in [0, 1)
        Probability that an entry is unobserved.
    noise_std : float
        Observation noise standard deviation.
    random_state : int, numpy.random.Generator or None
        Seed; the same seed gives an identical frame.
    return_truth : bool
        Also return the noise-free position and velocity at the same rows.

    Returns
    -------
    frame : pandas.DataFrame
        ``id, t, x0, x1`` sorted by ``id`` and ``t``.
    truth : pandas.DataFrame
        Only with ``return_truth=True``: the same rows, noise-free and complete.
    """
    _check_count("n_series", n_series)
    _check_count("n_points", n_points)
    _check_range("amplitude_range", amplitude_range, positive=True)
    if not omega > 0:
        raise ValueError(f"omega must be > 0, got {omega!r}")
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"damping must be in [0, 1) (underdamped), got {damping!r}")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction!r}")
    if noise_std < 0:
        raise ValueError("noise_std must be >= 0")
    gen = _rng(random_state)
    times = _sample_times(gen, n_series, n_points, time_range)
    radius = gen.uniform(*amplitude_range, size=(n_series, 1))
    theta = gen.uniform(0.0, 2.0 * np.pi, size=(n_series, 1))
    x0, v0 = radius * np.cos(theta), radius * omega * np.sin(theta)
    s = times - float(time_range[0])
    zw = damping * omega
    wd = omega * np.sqrt(1.0 - damping**2)
    decay, cos, sin = np.exp(-zw * s), np.cos(wd * s), np.sin(wd * s)
    x = decay * (x0 * cos + (v0 + zw * x0) / wd * sin)
    v = decay * (v0 * cos - (omega**2 * x0 + zw * v0) / wd * sin)
    truth = np.stack([x, v], axis=-1)
    observed = gen.random(truth.shape) >= missing_fraction
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, observed, noise, return_truth)


def make_oscillator_classes(
    n_per_class: int = 100,
    n_points: int = 15,
    *,
    omegas: tuple[float, ...] = (1.0, 2.5),
    time_range: tuple[float, float] = (0.0, 6.0),
    missing_fraction: float = 0.3,
    noise_std: float = 0.05,
    random_state: int = 0,
) -> tuple[pd.DataFrame, pd.Series]:
    """A classification task: damped oscillators labelled by their frequency.

    Class ``k`` holds ``n_per_class`` series of :func:`make_damped_oscillators` with
    ``omega=omegas[k]`` (damping 0.1, the other settings as given), drawn with the seed
    ``random_state + k``; its ids are ``k * n_per_class`` to ``(k + 1) * n_per_class - 1``.
    The tests and ``benchmarks/classifier_small.py`` use it to check that a classifier tells
    the dynamics apart from a few noisy, irregular points.

    Parameters
    ----------
    n_per_class : int
        Number of series per class.
    n_points : int
        Candidate observation times per series (see :func:`make_damped_oscillators`).
    omegas : tuple of float
        One natural angular frequency per class (at least two).
    time_range : (float, float)
        Interval of the observation times.
    missing_fraction : float in [0, 1)
        Probability that an entry is unobserved.
    noise_std : float
        Observation noise standard deviation.
    random_state : int
        Seed of the first class; class ``k`` uses ``random_state + k``, so the same seed gives
        the same frame and labels.

    Returns
    -------
    frame : pandas.DataFrame
        ``id, t, x0, x1`` sorted by ``id`` and ``t``.
    labels : pandas.Series
        The class ``k`` (int) of each series, indexed by id (every id of ``frame``, in order).
    """
    _check_count("n_per_class", n_per_class)
    if len(omegas) < 2:
        raise ValueError(f"omegas must give at least two classes, got {omegas!r}")
    if isinstance(random_state, bool) or int(random_state) != random_state:
        raise ValueError(f"random_state must be an int, got {random_state!r}")
    frames, labels = [], []
    for k, omega in enumerate(omegas):
        part = make_damped_oscillators(n_per_class, n_points, omega=omega, time_range=time_range,
                                       missing_fraction=missing_fraction, noise_std=noise_std,
                                       random_state=int(random_state) + k)
        part["id"] += k * n_per_class
        frames.append(part)
        labels.append(np.full(n_per_class, k))
    frame = pd.concat(frames, ignore_index=True)
    return frame, pd.Series(np.concatenate(labels), index=np.arange(len(omegas) * n_per_class))


def make_ornstein_uhlenbeck(
    n_series: int = 500,
    n_points: int = 50,
    *,
    time_range: tuple[float, float] = (0.0, 10.0),
    theta: float = 0.5,
    sigma: float = 0.5,
    mean: float = 0.0,
    initial_std: float | None = None,
    n_channels: int = 1,
    missing_fraction: float = 0.0,
    noise_std: float = 0.01,
    random_state: RandomState = None,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Noisy, irregularly sampled paths of Ornstein-Uhlenbeck processes (or random walks).

    Every series and channel is an independent path of ``dx = theta (mean - x) dt + sigma dW``,
    simulated exactly at the series' times (no discretisation error): between consecutive times
    ``dt`` apart, ``x <- mean + (x - mean) exp(-theta dt) + s(dt) e`` with ``e ~ N(0, 1)`` and
    ``s(dt)**2 = sigma**2 (1 - exp(-2 theta dt)) / (2 theta)`` (``sigma**2 dt`` when
    ``theta == 0``: a Gaussian random walk). The path starts at ``time_range[0]`` from
    ``N(mean, initial_std**2)``. Given the path up to time ``t``, the value at ``t + h`` is
    Gaussian with variance ``s(h)**2``: forecasts are uncertain however well the process is
    known, increasingly so with the horizon ``h``, up to the stationary variance
    ``sigma**2 / (2 theta)``. Each series has ``n_points`` sorted uniform times in
    ``time_range``; each (time, channel) entry is missing independently with probability
    ``missing_fraction`` (rows with every channel missing are dropped, every series keeps at
    least one observation); observed values carry ``N(0, noise_std**2)`` noise.

    Parameters
    ----------
    n_series, n_points : int
        Number of series and of candidate times per series.
    time_range : (float, float)
        Interval of the observation times; the path starts at ``time_range[0]``.
    theta : float
        Mean-reversion rate, ``>= 0`` (0: a random walk).
    sigma : float
        Diffusion coefficient, ``>= 0``.
    mean : float
        Long-run mean the process reverts to (and the centre of the initial state).
    initial_std : float, optional
        Standard deviation of the initial state; default the stationary one,
        ``sigma / sqrt(2 theta)`` (0 for a random walk, which then starts at ``mean``).
    n_channels : int
        Number of independent channels ``x0, x1, ...``.
    missing_fraction : float in [0, 1)
        Probability that an entry is unobserved.
    noise_std : float
        Observation noise standard deviation.
    random_state : int, numpy.random.Generator or None
        Seed; the same seed gives an identical frame.
    return_truth : bool
        Also return the noise-free path values at the same rows.

    Returns
    -------
    frame : pandas.DataFrame
        ``id, t, x0 ..`` sorted by ``id`` and ``t`` (NaN where not observed).
    truth : pandas.DataFrame
        Only with ``return_truth=True``: the same rows, noise-free and complete.

    Examples
    --------
    >>> df = make_ornstein_uhlenbeck(n_series=2, n_points=4, random_state=0)
    >>> df.shape
    (8, 3)
    """
    _check_count("n_series", n_series)
    _check_count("n_points", n_points)
    _check_count("n_channels", n_channels)
    for name, value in (("theta", theta), ("sigma", sigma), ("noise_std", noise_std)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not np.isfinite(mean):
        raise ValueError(f"mean must be finite, got {mean!r}")
    if initial_std is None:
        initial_std = sigma / np.sqrt(2.0 * theta) if theta > 0 else 0.0
    elif not (np.isfinite(initial_std) and initial_std >= 0):
        raise ValueError(f"initial_std must be a finite number >= 0, got {initial_std!r}")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1), got {missing_fraction!r}")
    gen = _rng(random_state)
    times = _sample_times(gen, n_series, n_points, time_range)
    dt = np.diff(times, axis=1, prepend=float(time_range[0]))[:, :, None]  # (S, N, 1)
    decay = np.exp(-theta * dt)
    if theta > 0:
        step_std = sigma * np.sqrt(-np.expm1(-2.0 * theta * dt) / (2.0 * theta))
    else:
        step_std = sigma * np.sqrt(dt)
    shocks = gen.standard_normal((n_series, n_points, n_channels))
    x = mean + initial_std * gen.standard_normal((n_series, n_channels))
    truth = np.empty((n_series, n_points, n_channels))
    for j in range(n_points):  # exact transition from the previous time (or the start)
        x = mean + (x - mean) * decay[:, j] + step_std[:, j] * shocks[:, j]
        truth[:, j] = x
    observed = gen.random(truth.shape) >= missing_fraction
    noise = gen.normal(0.0, noise_std, size=truth.shape)
    return _to_long(times, truth, observed, noise, return_truth)
