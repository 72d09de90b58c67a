"""The point prediction rule (``point_prediction``, :meth:`LatentODE.predict_point`): the
decoded trajectory of the posterior mean of ``z_t0`` or the predictive mean, the average of the
decoded trajectories of posterior samples (issues #15 / #18)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from _settings import TINY, as_saved_before, ragged_batch
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode._predict import predict_packed
from latentode.nn import LatentODE
from latentode.nn.model import POINT_SAMPLES


def _model(**kwargs) -> LatentODE:
    torch.manual_seed(0)
    return LatentODE(2, latent_dim=3, rec_dim=6, encoder="gru", units=12, n_layers=1,
                     gru_units=12, **kwargs).double().eval()


def _query(n: int = 4, m: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.linspace(0, 2, m, dtype=torch.float64).repeat(n, 1),
            torch.full((n,), m, dtype=torch.long))


# ---------------------------------------------------------------------------- the model
def test_predictive_mean_of_a_nonlinear_decoder_is_the_monte_carlo_mean_not_the_mean_path():
    model = _model(decoder_layers=1)
    with torch.no_grad():  # a strongly nonlinear tanh decoder
        for layer in model.decoder.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(3.0)
    cond, (qt, ql) = ragged_batch(4, 6, 2, seed=1), _query()
    with torch.no_grad():
        path = model.predict_point(cond, qt, ql).mean
        pm = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=4000,
                                 generator=torch.Generator().manual_seed(0)).mean
        big = model.predict(cond, qt, ql, n_samples=16000, use_mean=False, calibrated=False,
                            generator=torch.Generator().manual_seed(1)).mean
        np.testing.assert_array_equal(path, model.predict(cond, qt, ql).mean)  # use_mean=True
    assert path.shape == pm.shape == (1, 4, 7, 2)
    # the 4000-sample average agrees with an independent 16000-sample one within 4 standard
    # errors of the difference at every point (largest: 1.7), ...
    tol = 4 * big.std(0) * np.sqrt(1 / 4000 + 1 / 16000)
    assert ((pm - big.mean(0, keepdim=True)).abs() <= tol).all()
    # ... and is far from the decoded posterior-mean path (RMS 0.23, largest 0.35, against an
    # RMS of 0.026 from the 16000-sample mean): the decoder's curvature moves the mean
    rms_path = (pm - path).pow(2).mean().sqrt()
    assert (pm - path).abs().max() > 0.3
    assert rms_path > 0.2 and rms_path > 5 * (pm - big.mean(0)).pow(2).mean().sqrt()


def test_linear_flow_and_decoder_give_the_mean_path_of_the_averaged_noise():
    # readout="latent", a linear decoder and linear dynamics (the MLP zeroed, a linear term):
    # RK4 is linear in z0, so the average of the decoded paths is the decoded path of the
    # average z0, and it tends to the posterior-mean path as the samples grow
    model = _model(decoder_layers=0, linear_term=True, method="rk4", step_size=0.05)
    with torch.no_grad():
        last = [m for m in model.dynamics.net if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.zero_()
        model.dynamics.linear.weight.copy_(torch.tensor(
            [[0.0, 2.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 0.0, -0.5]], dtype=torch.float64))
    cond, (qt, ql) = ragged_batch(4, 6, 2, seed=1), _query()
    with torch.no_grad():
        path = model.predict_point(cond, qt, ql).mean
        pm = model.predict_point(cond, qt, ql, point="predictive_mean",
                                 generator=torch.Generator().manual_seed(3)).mean
        noise = model.draw_z0_noise(POINT_SAMPLES, 4, torch.Generator().manual_seed(3))
        t0 = model._posterior_at(cond, qt, ql)
        mu, sigma = model.encode(cond, t0)
        z, _ = model.solve((mu + sigma * noise.mean(0)).unsqueeze(0), t0, qt, ql)
        np.testing.assert_allclose(pm, model.decode(z, cond, qt), rtol=0, atol=1e-12)
        many = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=40000,
                                   generator=torch.Generator().manual_seed(4)).mean
    assert (pm - path).abs().max() > 0.05  # 32 samples: Monte Carlo noise (0.17)
    assert (many - path).abs().max() < 0.01  # 40000: 0.004


def test_predictive_mean_is_one_batched_solve():
    model = _model()
    shapes = []
    solve = model.solve

    def spy(z0, *args, **kwargs):
        shapes.append(tuple(z0.shape))
        return solve(z0, *args, **kwargs)

    model.solve = spy
    cond, (qt, ql) = ragged_batch(5, 6, 2, seed=2), _query(5)
    with torch.no_grad():
        out = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=16)
    assert shapes == [(16, 5, 3)] and out.mean.shape == (1, 5, 7, 2)
    assert out.gap_factor is None and out.tail_df is None
    with pytest.raises(ValueError, match="point must be one of"):
        model.predict_point(cond, qt, ql, point="median")


def test_predict_packed_point_rules():
    model = _model(poisson_process=True)
    batches = [ragged_batch(3, 5, 2, seed=1), ragged_batch(2, 5, 2, seed=2)]
    qt = np.tile(np.linspace(0.0, 1.5, 4), (5, 1))
    ql = np.array([4, 2, 3, 4, 1])
    plain = predict_packed(model, batches, qt, ql)
    path = predict_packed(model, batches, qt, ql, point="posterior_mean")
    np.testing.assert_array_equal(path.mean, plain.mean)
    np.testing.assert_array_equal(path.intensity, plain.intensity)
    model.spread_scale.fill_(3.0)  # calibration widens samples, never the point's noise
    pm = predict_packed(model, batches, qt, ql, point="predictive_mean", n_samples=8,
                        generator=torch.Generator().manual_seed(0))
    samples = predict_packed(model, batches, qt, ql, n_samples=8,
                             generator=torch.Generator().manual_seed(0))
    assert pm.mean.shape == pm.intensity.shape == (1, 14, 2)
    np.testing.assert_allclose(pm.mean[0], samples.mean.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pm.intensity[0], samples.intensity.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pm.obs_std, model.obs_std.detach().numpy())
    assert np.abs(pm.mean - plain.mean).max() > 1e-3


# ---------------------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def fitted(oscillators) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(oscillators)


def _rule(est: LatentODERegressor, rule: str) -> LatentODERegressor:
    return est.set_params(point_prediction=rule)


def test_default_is_the_posterior_mean_path_and_the_rule_switches_without_refit(
        fitted, oscillators):
    assert LatentODERegressor().point_prediction == "posterior_mean"
    path = _rule(fitted, "posterior_mean").predict(oscillators)
    packed = fitted._predict_samples(oscillators, n_samples=1, use_mean=True)
    np.testing.assert_array_equal(path[["x", "v"]].to_numpy(), packed.mean[0])
    pm = _rule(fitted, "predictive_mean").predict(oscillators)
    again = fitted.predict(oscillators)
    pd.testing.assert_frame_equal(pm, again, check_exact=True)  # seeded by random_state
    assert pm.index.equals(path.index) and list(pm.columns) == list(path.columns)
    gap = np.abs(pm[["x", "v"]].to_numpy() - path[["x", "v"]].to_numpy())
    assert gap.max() > 1e-3
    # the average of POINT_SAMPLES posterior samples (the same seed's draws)
    samples = fitted._predict_samples(oscillators, n_samples=POINT_SAMPLES, use_mean=False)
    np.testing.assert_allclose(pm[["x", "v"]].to_numpy(), samples.mean.mean(0), rtol=1e-5,
                               atol=1e-6)
    other = clone(fitted).set_params(random_state=1).fit(oscillators)
    _rule(other, "predictive_mean")
    assert not other.predict(oscillators).equals(pm)
    _rule(fitted, "posterior_mean")


def test_extrapolate_and_intensity_follow_the_rule(oscillators):
    est = LatentODERegressor(**TINY, poisson_process=True).fit(oscillators)
    path = est.extrapolate(oscillators, horizon=3.0, n_points=5)
    rate = est.predict_intensity(oscillators)
    est.set_params(point_prediction="predictive_mean")
    pm = est.extrapolate(oscillators, horizon=3.0, n_points=5)
    pm_rate = est.predict_intensity(oscillators)
    assert pm[["id", "t"]].equals(path[["id", "t"]])
    assert np.abs(pm["x"] - path["x"]).max() > 1e-3
    assert np.abs(pm_rate["x"] - rate["x"]).max() > 0 and (pm_rate[["x", "v"]] > 0).all().all()
    pd.testing.assert_frame_equal(pm, est.extrapolate(oscillators, horizon=3.0, n_points=5))


def test_with_quantiles_the_mean_columns_are_the_mixtures_mean_from_the_same_solves(
        fitted, oscillators, monkeypatch):
    calls = []
    predict = fitted.model_.predict

    def spy(cond, *args, **kwargs):
        calls.append(kwargs.get("n_samples", 1))
        return predict(cond, *args, **kwargs)

    monkeypatch.setattr(fitted.model_, "predict", spy)
    levels = (0.1, 0.5, 0.9)
    n_batches = -(-oscillators["id"].nunique() // TINY["batch_size"])
    path_q = _rule(fitted, "posterior_mean").predict(oscillators, quantiles=levels,
                                                     n_samples=20)
    assert calls == [1] * n_batches + [20] * n_batches  # the path, then the samples
    calls.clear()
    pm_q = _rule(fitted, "predictive_mean").predict(oscillators, quantiles=levels,
                                                    n_samples=20)
    assert calls == [20] * n_batches  # no second set of solves
    _rule(fitted, "posterior_mean")
    quantile_cols = [c for c in pm_q.columns if "_q" in c]
    pd.testing.assert_frame_equal(pm_q[quantile_cols], path_q[quantile_cols], check_exact=True)
    samples = fitted._predict_samples(oscillators, n_samples=20, use_mean=False)
    np.testing.assert_array_equal(pm_q[["x", "v"]].to_numpy(), samples.mean.mean(0))
    # the mixture's mean lies inside its central 80 % interval
    for col in ("x", "v"):
        assert (pm_q[f"{col}_q0.1"] <= pm_q[col]).all() and (pm_q[col] <= pm_q[f"{col}_q0.9"]).all()


def test_save_load_pickle_and_former_files(fitted, oscillators, tmp_path):
    pm = _rule(fitted, "predictive_mean").predict(oscillators)
    fitted.save(tmp_path / "m.latentode")
    loaded = LatentODERegressor.load(tmp_path / "m.latentode")
    assert loaded.point_prediction == "predictive_mean"
    pd.testing.assert_frame_equal(loaded.predict(oscillators), pm, check_exact=True)
    unpickled = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(unpickled.predict(oscillators), pm, check_exact=True)
    # saved before the parameter existed: the posterior-mean path, as then
    for old in as_saved_before(fitted, "point_prediction", tmp_path):
        assert old.point_prediction == "posterior_mean"
        pd.testing.assert_frame_equal(
            old.predict(oscillators), _rule(fitted, "posterior_mean").predict(oscillators),
            check_exact=True)
        _rule(fitted, "predictive_mean")
    _rule(fitted, "posterior_mean")


def test_point_samples_sets_the_paths_averaged(fitted, oscillators):
    assert LatentODERegressor().point_samples == POINT_SAMPLES == 32
    _rule(fitted, "predictive_mean").set_params(point_samples=5)
    try:
        five = fitted.predict(oscillators)
        samples = fitted._predict_samples(oscillators, n_samples=5, use_mean=False)
        np.testing.assert_allclose(five[["x", "v"]].to_numpy(), samples.mean.mean(0),
                                   rtol=1e-5, atol=1e-6)
        fitted.set_params(point_samples=2000)
        many = fitted.predict(oscillators)[["x", "v"]].to_numpy()
        fitted.set_params(point_samples=2000, random_state=7)
        other = fitted.predict(oscillators)[["x", "v"]].to_numpy()
        # Monte Carlo error shrinks like 1 / sqrt(samples): two 2000-sample means agree far
        # better than a 5-sample mean agrees with either
        assert np.abs(many - other).max() < 0.2 * np.abs(five[["x", "v"]].to_numpy() - many).max()
        fitted.set_params(point_samples=0)
        with pytest.raises(ValueError, match="point_samples must be"):
            fitted.predict(oscillators)
        # the posterior-mean path does not read it
        _rule(fitted, "posterior_mean").set_params(point_samples=1, random_state=0)
        pd.testing.assert_frame_equal(fitted.predict(oscillators),
                                      clone(fitted).set_params(point_samples=32)
                                      .fit(oscillators).predict(oscillators), check_exact=True)
    finally:
        fitted.set_params(point_prediction="posterior_mean", point_samples=32, random_state=0)


def test_point_prediction_is_validated(fitted, oscillators):
    with pytest.raises(ValueError, match="point_prediction must be"):
        LatentODERegressor(**TINY, point_prediction="median").fit(oscillators)
    fitted.set_params(point_prediction="mean")
    try:
        with pytest.raises(ValueError, match="point_prediction must be"):
            fitted.predict(oscillators)
        with pytest.raises(ValueError, match="point_prediction must be"):
            fitted.extrapolate(oscillators)
    finally:
        fitted.set_params(point_prediction="posterior_mean")


def test_the_classifier_forecasts_under_the_rule(oscillators):
    y = (oscillators.groupby("id")["x"].first() > 0).astype(int)
    clf = LatentODEClassifier(**TINY).fit(oscillators, y)
    assert clf.get_params()["point_prediction"] == "posterior_mean"
    path = clf.extrapolate(oscillators, horizon=2.0, n_points=4)
    pm = clf.set_params(point_prediction="predictive_mean").extrapolate(
        oscillators, horizon=2.0, n_points=4)
    assert np.abs(pm["x"] - path["x"]).max() > 1e-3
    with pytest.raises(ValueError, match="point_prediction must be"):
        LatentODEClassifier(**TINY, point_prediction="median").fit(oscillators, y)


def test_the_draws_run_over_the_batch(fitted, oscillators):
    """Documented: a series predicted alone gets other draws than beside other series under
    ``"predictive_mean"`` (Monte Carlo noise); the posterior-mean path does not move."""
    one = oscillators[oscillators["id"] == oscillators["id"].iloc[0]]
    gaps = {}
    for rule in ("posterior_mean", "predictive_mean"):
        _rule(fitted, rule)
        full = fitted.predict(oscillators).loc[one.index, ["x", "v"]].to_numpy()
        gaps[rule] = np.abs(full - fitted.predict(one)[["x", "v"]].to_numpy()).max()
    _rule(fitted, "posterior_mean")
    assert gaps["posterior_mean"] < 1e-5  # 5e-8: the solver's batch-dependent steps
    assert gaps["predictive_mean"] > 1e-3  # 0.026 for this two-epoch model
