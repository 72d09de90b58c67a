"""Numerical helpers of :mod:`latentode.uncertainty` against closed forms and scipy, and the
estimator's uncertainty API (``quantiles=``, ``n_samples``, :meth:`sample`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _settings import TINY
from scipy.stats import norm

from latentode.uncertainty import (
    central_interval,
    check_quantiles,
    crps_gaussian,
    crps_gaussian_mixture,
    crps_samples,
    interval_coverage,
    mixture_quantiles,
    quantile_label,
    sample_mixture,
)


def test_check_quantiles_accepts_sorted_levels():
    assert check_quantiles((0.05, 0.5, 0.95)).tolist() == [0.05, 0.5, 0.95]
    assert check_quantiles(np.array([0.25])).tolist() == [0.25]


@pytest.mark.parametrize("bad", [[0.0, 0.5], [0.5, 1.0], [-0.1], [1.5], [0.9, 0.1],
                                 [0.5, 0.5], [], [np.nan], 0.5, "0.5", [[0.1, 0.9]]])
def test_check_quantiles_rejects(bad):
    with pytest.raises(ValueError, match="quantiles"):
        check_quantiles(bad)


def test_check_quantiles_rejects_levels_that_share_a_column_label():
    # f"q{q:g}" keeps 6 significant digits: two such levels would write one column twice
    assert check_quantiles([0.123456, 0.123457]).tolist() == [0.123456, 0.123457]
    with pytest.raises(ValueError, match=r"quantiles 0.1234567 and 0.1234568 would share the "
                                         r"column suffix 'q0.123457'"):
        check_quantiles([0.1, 0.1234567, 0.1234568, 0.9])


def test_labels_and_central_interval():
    assert [quantile_label(q) for q in (0.05, 0.5, 0.95, 0.975)] == [
        "q0.05", "q0.5", "q0.95", "q0.975"]
    assert central_interval(0.9) == (0.05, 0.95)
    assert central_interval(0.5) == (0.25, 0.75)
    with pytest.raises(ValueError):
        central_interval(1.0)


def test_mixture_quantiles_single_component_is_gaussian():
    mu = np.array([[0.0, 1.0, -3.0]])
    sd = np.array([1.0, 0.5, 2.0])
    q = [0.05, 0.5, 0.95]
    got = mixture_quantiles(mu, sd, q)
    want = norm.ppf(np.array(q))[:, None] * sd + mu
    np.testing.assert_allclose(got, want, atol=1e-7)


def test_mixture_quantiles_invert_the_mixture_cdf():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(40, 30, 2)) * np.array([1.0, 10.0])  # wide and bimodal-ish
    means[:20] += 5.0
    sd = np.array([0.05, 3.0])
    levels = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
    got = mixture_quantiles(means, sd, levels)
    assert got.shape == (5, 30, 2)
    cdf = norm.cdf((got[:, None] - means[None]) / sd).mean(axis=1)
    np.testing.assert_allclose(cdf, np.broadcast_to(levels[:, None, None], cdf.shape), atol=1e-7)
    assert (np.diff(got, axis=0) > 0).all()


def test_mixture_quantiles_zero_std_falls_back_to_empirical():
    means = np.arange(10.0).reshape(10, 1)
    got = mixture_quantiles(means, 0.0, [0.05, 0.5, 0.95])
    assert got.ravel().tolist() == [0.0, 4.0, 9.0]


def test_sample_mixture_moments_and_seed():
    means = np.full((20000, 1), 2.0)
    a = sample_mixture(means, 0.5, 1)
    assert a.mean() == pytest.approx(2.0, abs=0.02)
    assert a.std() == pytest.approx(0.5, abs=0.02)
    np.testing.assert_array_equal(a, sample_mixture(means, 0.5, np.random.default_rng(1)))


def test_crps_gaussian_known_values():
    # CRPS(N(0,1), 0) = 2 phi(0) - 1/sqrt(pi) = (sqrt(2) - 1) / sqrt(pi)
    assert crps_gaussian(0.0, 0.0, 1.0) == pytest.approx((np.sqrt(2) - 1) / np.sqrt(np.pi))
    # scale equivariance
    assert crps_gaussian(3.0, 1.0, 2.0) == pytest.approx(2.0 * crps_gaussian(1.0, 0.0, 1.0))


def test_crps_mixture_matches_gaussian_and_samples():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(25, 2))
    one = rng.normal(size=(1, 25, 2))
    sd = np.array([0.3, 1.2])
    np.testing.assert_allclose(crps_gaussian_mixture(y, one, sd), crps_gaussian(y, one[0], sd),
                               atol=1e-12)
    means = rng.normal(size=(8, 25, 2))
    exact = crps_gaussian_mixture(y, means, sd)
    draws = sample_mixture(np.repeat(means, 4000, axis=0), sd, rng)
    np.testing.assert_allclose(crps_samples(y, draws), exact, atol=0.02)


def test_crps_samples_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 4))
    y = rng.normal(size=4)
    brute = np.abs(x - y).mean(0) - 0.5 * np.abs(x[:, None] - x[None]).mean((0, 1))
    np.testing.assert_allclose(crps_samples(y, x), brute, atol=1e-12)
    assert np.isnan(crps_samples(np.array([np.nan]), x[:, :1])).all()


def test_interval_coverage():
    y = np.array([0.0, 1.0, 2.0, 3.0, np.nan])
    assert interval_coverage(y, 0.5, 2.5) == pytest.approx(0.5)
    assert interval_coverage(y, np.full(5, -1.0), np.full(5, 10.0)) == 1.0
    assert np.isnan(interval_coverage([np.nan], 0.0, 1.0))


# ---------------------------------------------------------------------------- estimator


@pytest.fixture(scope="module")
def series(make_oscillators):
    return make_oscillators(n_series=8, n_points=15, missing=0.3, noise=0.1)


@pytest.fixture(scope="module")
def est(series):
    from latentode import LatentODERegressor

    return LatentODERegressor(**TINY).fit(series)


def test_predict_quantile_columns_beside_unchanged_means(est, series):
    shuffled = series.sample(frac=1.0, random_state=2)
    plain = est.predict(shuffled)
    out = est.predict(shuffled, quantiles=[0.05, 0.5, 0.95], n_samples=30)
    assert list(out.columns) == ["id", "t", "x", "x_q0.05", "x_q0.5", "x_q0.95",
                                 "v", "v_q0.05", "v_q0.5", "v_q0.95"]
    assert out.index.equals(shuffled.index)
    np.testing.assert_array_equal(out[plain.columns].to_numpy(), plain.to_numpy())
    for c in ("x", "v"):
        assert (out[f"{c}_q0.05"] < out[f"{c}_q0.5"]).all()
        assert (out[f"{c}_q0.5"] < out[f"{c}_q0.95"]).all()
    again = est.predict(shuffled, quantiles=[0.05, 0.5, 0.95], n_samples=30)
    np.testing.assert_array_equal(again.to_numpy(), out.to_numpy())  # seeded


def test_quantiles_are_in_original_units(est, series):
    """Rescaling a channel's data by 100 (refit) gives quantiles 100x as wide."""
    from latentode import LatentODERegressor

    big = series.assign(x=series["x"] * 100.0)
    est_big = LatentODERegressor(**TINY).fit(big)
    a = est.predict(series, quantiles=[0.05, 0.95], n_samples=20)
    b = est_big.predict(big, quantiles=[0.05, 0.95], n_samples=20)
    np.testing.assert_allclose(b["x_q0.95"] - b["x_q0.05"],
                               100.0 * (a["x_q0.95"] - a["x_q0.05"]), rtol=1e-3)


def test_extrapolate_quantiles(est, series):
    plain = est.extrapolate(series, horizon=2.0, n_points=5)
    out = est.extrapolate(series, horizon=2.0, n_points=5, quantiles=(0.1, 0.9), n_samples=20)
    assert list(out.columns) == ["id", "t", "x", "x_q0.1", "x_q0.9", "v", "v_q0.1", "v_q0.9"]
    np.testing.assert_array_equal(out[plain.columns].to_numpy(), plain.to_numpy())
    assert (out["x_q0.1"] < out["x_q0.9"]).all()


def test_sample_frame_and_seeding(est, series):
    s = est.sample(series, 4)
    assert list(s.columns) == ["sample", "id", "t", "x", "v"]
    assert len(s) == 4 * len(series) and s.index.equals(pd.RangeIndex(len(s)))
    assert s["sample"].tolist() == np.repeat(np.arange(4), len(series)).tolist()
    np.testing.assert_array_equal(s.loc[s["sample"] == 3, "t"].to_numpy(), series["t"].to_numpy())
    np.testing.assert_array_equal(est.sample(series, 4).to_numpy(), s.to_numpy())
    other = est.sample(series, 4, random_state=123)
    assert not np.allclose(other["x"], s["x"])
    np.testing.assert_array_equal(est.sample(series, 4, random_state=123).to_numpy(),
                                  other.to_numpy())
    at = est.sample(series, 3, times=[7.0, 8.0])
    assert len(at) == 3 * 2 * series["id"].nunique()
    assert np.isfinite(at[["x", "v"]].to_numpy()).all()


def test_sample_spread_matches_quantiles(est, series):
    """~90 % of predictive draws fall inside the predicted 5 %-95 % band (pooled rows)."""
    q = est.predict(series, quantiles=[0.05, 0.95], n_samples=200)
    draws = est.sample(series, 200, random_state=7)[["x", "v"]].to_numpy()
    draws = draws.reshape(200, len(series), 2)
    for j, c in enumerate(("x", "v")):
        cov = interval_coverage(draws[:, :, j], q[f"{c}_q0.05"].to_numpy(),
                                q[f"{c}_q0.95"].to_numpy())
        assert cov == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("bad", [[0.0, 0.5], [0.5, 1.0], [1.2], [0.9, 0.1], [0.5, 0.5], 0.5])
def test_bad_quantiles(est, series, bad):
    with pytest.raises(ValueError, match="quantiles"):
        est.predict(series, quantiles=bad)
    with pytest.raises(ValueError, match="quantiles"):
        est.extrapolate(series, quantiles=bad)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n_samples(est, series, n):
    with pytest.raises(ValueError, match="n_samples"):
        est.predict(series, quantiles=[0.5], n_samples=n)
    with pytest.raises(ValueError, match="n_samples"):
        est.extrapolate(series, quantiles=[0.5], n_samples=n)
    with pytest.raises(ValueError, match="n_samples"):
        est.sample(series, n)
