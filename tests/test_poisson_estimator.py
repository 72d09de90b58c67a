"""``poisson_process=True``: :meth:`LatentODERegressor.predict_intensity`.

Fast tests check the contract (shape, positivity, unit conversion, errors). The ``slow`` tests
fit on synthetic data whose observation times are drawn from a known Poisson process:

* state-dependent: ``lambda(t) = rate0 * exp(beta * x(t))`` where ``x(t)`` is the series'
  (latent) sinusoid, so the rate rises and falls with the signal;
* state-independent: a constant rate ``rate0``.

Tolerances (stated in each test) leave room for a small model trained for a few dozen epochs.
The sinusoids run 0.5 to 1 period over the window: with 2 or more periods the small model does
not learn the values within this budget (value MSE stays at the signal's variance), so the rate
could not be tracked either. Measured (1 CPU thread, about 3.5 min per test):
state-dependent r = 0.921, fitted mean rate 4.53 vs true 4.67, value MSE 0.061 (plain 0.063);
state-independent mean 5.38 vs 5, CV 0.038, value MSE 0.090 (plain 0.115).
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from _settings import TINY

from latentode import LatentODERegressor

SMALL = dict(latent_dim=6, rec_dim=16, units=32, n_layers=1, gru_units=32, encoder="gru",
             solver="rk4", step_size=0.05, gradient="backprop", max_epochs=60, batch_size=10,
             lr=1e-2, kl_warmup=5, patience=20, verbose=0, random_state=0, device="cpu")
SPAN = 10.0  # time range of every series, in user units


def poisson_series(n_series: int, *, rate0: float, beta: float, noise: float = 0.05,
                   seed: int = 0) -> tuple[pd.DataFrame, list[tuple[float, float, float]]]:
    """Sinusoids ``x = a sin(2 pi f t + p)`` observed at the events of a Poisson process.

    The intensity is ``rate0 * exp(beta * x(t))`` events per time unit (``beta = 0``: constant
    rate), simulated by thinning on ``[0, SPAN]``. Returns the noisy long frame and each
    series' ``(a, f, p)``.
    """
    rng = np.random.default_rng(seed)
    frames, params = [], []
    for i in range(n_series):
        a, f, p = rng.uniform(0.6, 1.4), rng.uniform(0.05, 0.1), rng.uniform(0, 2 * np.pi)
        lmax = rate0 * np.exp(abs(beta) * a)
        t = np.sort(rng.uniform(0.0, SPAN, rng.poisson(lmax * SPAN)))
        x = a * np.sin(2 * np.pi * f * t + p)
        keep = rng.random(len(t)) < rate0 * np.exp(beta * x) / lmax
        t, x = t[keep], x[keep]
        frames.append(pd.DataFrame({"id": i, "t": t,
                                    "x": x + noise * rng.standard_normal(len(t))}))
        params.append((a, f, p))
    return pd.concat(frames, ignore_index=True), params


def true_signal(params: tuple[float, float, float], t: np.ndarray) -> np.ndarray:
    a, f, p = params
    return a * np.sin(2 * np.pi * f * t + p)


def inner_grid(df: pd.DataFrame, n: int = 25) -> pd.DataFrame:
    """Per series, ``n`` times inside its observed window (where the rate is identified)."""
    parts = []
    for i, g in df.groupby("id", sort=True):
        lo, hi = g["t"].min(), g["t"].max()
        parts.append(pd.DataFrame({"id": i, "t": np.linspace(lo, hi, n + 2)[1:-1]}))
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------- fast
@pytest.fixture(scope="module")
def small_df() -> pd.DataFrame:
    return poisson_series(10, rate0=2.0, beta=0.8, seed=1)[0]


@pytest.fixture(scope="module")
def poisson_fitted(small_df) -> LatentODERegressor:
    return LatentODERegressor(**TINY, poisson_process=True).fit(small_df)


def test_intensity_smoke(poisson_fitted, small_df):
    shuffled = small_df.sample(frac=1.0, random_state=0)
    rate = poisson_fitted.predict_intensity(shuffled)
    assert list(rate.columns) == ["id", "t", "x"]
    assert rate.index.equals(shuffled.index)
    assert (rate["t"].to_numpy() == shuffled["t"].to_numpy()).all()
    assert np.isfinite(rate["x"]).all() and (rate["x"] > 0).all()
    # explicit times: aligned like extrapolate(times=...)
    at = poisson_fitted.predict_intensity(small_df, times=[1.0, 2.0, 3.0])
    assert at.shape == (3 * small_df["id"].nunique(), 3) and (at["x"] > 0).all()
    ref = poisson_fitted.extrapolate(small_df, times=[1.0, 2.0, 3.0])
    assert at[["id", "t"]].equals(ref[["id", "t"]])


def test_intensity_is_per_user_time_unit(poisson_fitted, small_df):
    """Stretching the time axis 10x (same model times) divides the rate by 10."""
    slow_clock = copy.deepcopy(poisson_fitted)
    slow_clock.time_encoder_.scale_ *= 10.0
    slow_clock.time_encoder_.origin_ *= 10.0
    stretched = small_df.assign(t=small_df["t"] * 10.0)
    a = poisson_fitted.predict_intensity(small_df)["x"].to_numpy()
    b = slow_clock.predict_intensity(stretched)["x"].to_numpy()
    np.testing.assert_allclose(b, a / 10.0, rtol=1e-5)


def test_intensity_datetime_times(small_df):
    dt = small_df.assign(t=pd.Timestamp("2024-01-01") + pd.to_timedelta(small_df["t"], unit="h"))
    est = LatentODERegressor(**TINY, poisson_process=True).fit(dt)
    rate = est.predict_intensity(dt)
    assert rate["t"].equals(dt["t"]) and (rate["x"] > 0).all()


def test_predict_intensity_requires_option(small_df):
    est = LatentODERegressor(**TINY).fit(small_df)
    with pytest.raises(ValueError, match="poisson_process=True"):
        est.predict_intensity(small_df)


def test_poisson_model_keeps_predict_and_quantiles(poisson_fitted, small_df):
    pred = poisson_fitted.predict(small_df, quantiles=(0.05, 0.95), n_samples=10)
    assert list(pred.columns) == ["id", "t", "x", "x_q0.05", "x_q0.95"]
    assert (pred["x_q0.05"] < pred["x_q0.95"]).all()


# ---------------------------------------------------------------------------- slow
def _fit_pair(df: pd.DataFrame) -> tuple[LatentODERegressor, LatentODERegressor]:
    return (LatentODERegressor(**SMALL, poisson_process=True).fit(df),
            LatentODERegressor(**SMALL).fit(df))


def _value_mse(est: LatentODERegressor, df: pd.DataFrame, params: list) -> float:
    """Reconstruction MSE against the noise-free signal at the observed times."""
    pred = est.predict(df)
    truth = np.concatenate([true_signal(params[i], g["t"].to_numpy())
                            for i, g in df.groupby("id", sort=True)])
    order = df.sort_values(["id", "t"]).index
    return float(np.mean((pred.loc[order, "x"].to_numpy() - truth) ** 2))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_state_dependent_rate_is_tracked():
    """Fitted rate correlates with the true rate (r > 0.7), means agree within 25 %."""
    rate0, beta = 4.0, 0.8
    train, _ = poisson_series(120, rate0=rate0, beta=beta, seed=0)
    test, params = poisson_series(40, rate0=rate0, beta=beta, seed=1)
    est, plain = _fit_pair(train)
    grid = inner_grid(test)
    fitted = est.predict_intensity(test, times=grid)["x"].to_numpy()
    true = np.concatenate([rate0 * np.exp(beta * true_signal(params[i], g["t"].to_numpy()))
                           for i, g in grid.groupby("id", sort=True)])
    r = np.corrcoef(fitted, true)[0, 1]
    mse_p, mse_0 = _value_mse(est, test, params), _value_mse(plain, test, params)
    print(f"state-dependent: r={r:.3f} fitted mean {fitted.mean():.3f} true mean "
          f"{true.mean():.3f}; value MSE poisson {mse_p:.5f} plain {mse_0:.5f}")
    assert r > 0.7, r
    assert fitted.mean() == pytest.approx(true.mean(), rel=0.25)
    # the extra likelihood term must not hurt the values: MSE within 1.5x (+ 1e-3) of plain
    assert mse_p <= 1.5 * mse_0 + 1e-3, (mse_p, mse_0)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_state_independent_rate_is_constant():
    """Constant true rate 5 / time unit: fitted mean within 15 %, spread (CV) below 0.15."""
    rate0 = 5.0
    train, _ = poisson_series(120, rate0=rate0, beta=0.0, seed=2)
    test, params = poisson_series(40, rate0=rate0, beta=0.0, seed=3)
    est, plain = _fit_pair(train)
    fitted = est.predict_intensity(test, times=inner_grid(test))["x"].to_numpy()
    mse_p, mse_0 = _value_mse(est, test, params), _value_mse(plain, test, params)
    print(f"state-independent: fitted mean {fitted.mean():.3f} (true {rate0}), CV "
          f"{fitted.std() / fitted.mean():.3f}; value MSE poisson {mse_p:.5f} plain {mse_0:.5f}")
    assert fitted.mean() == pytest.approx(rate0, rel=0.15)
    assert fitted.std() / fitted.mean() < 0.15, fitted.std() / fitted.mean()
    assert mse_p <= 1.5 * mse_0 + 1e-3, (mse_p, mse_0)
