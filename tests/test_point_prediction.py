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
from latentode.nn.model import POINT_SAMPLES, point_noise


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
        pm = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=4000).mean
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


def test_antithetic_pairs_make_a_model_linear_in_z_exact_with_two_points():
    # readout="latent", a linear decoder and linear dynamics (the MLP zeroed, a linear term):
    # RK4 is linear in z0, so the decoded mean is linear in z0 and one antithetic pair
    # (mu + sigma * eps, mu - sigma * eps) averages to the posterior-mean path exactly
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
        for n in (2, 8, POINT_SAMPLES):
            pm = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=n).mean
            np.testing.assert_allclose(pm, path, rtol=0, atol=1e-10)
        # an odd count adds one unpaired point: no longer exact (0.0x)
        odd = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=3).mean
        # independent draws (the former rule) are not either
        iid = model.predict(cond, qt, ql, n_samples=2, use_mean=False, calibrated=False,
                            generator=torch.Generator().manual_seed(3)).mean.mean(0)
    assert (odd - path).abs().max() > 1e-3
    assert (iid - path).abs().max() > 1e-2


def test_point_noise_is_fixed_antithetic_and_shared():
    eps = point_noise(8, 3)
    assert eps.shape == (8, 1, 3) and eps.dtype == torch.float64
    np.testing.assert_array_equal(eps[:4], -eps[4:8])
    np.testing.assert_array_equal(eps, point_noise(8, 3))  # the documented seed, every call
    torch.manual_seed(123)  # not the global generator's
    np.testing.assert_array_equal(eps, point_noise(8, 3))
    odd = point_noise(5, 3)
    np.testing.assert_array_equal(odd[:2], -odd[2:4])
    assert point_noise(5, 3, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="n_samples must be"):
        point_noise(0, 3)


def test_predictive_mean_of_a_nonlinear_toy_is_within_the_measured_monte_carlo_error():
    # the tanh decoder of the first test: the POINT_SAMPLES (16) fixed antithetic points
    # against a 20000-point reference, beside 16 independent draws
    model = _model(decoder_layers=1)
    with torch.no_grad():
        for layer in model.decoder.net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(3.0)
    cond, (qt, ql) = ragged_batch(4, 6, 2, seed=1), _query()
    with torch.no_grad():
        ref = model.predict_point(cond, qt, ql, point="predictive_mean", n_samples=20000).mean
        path = model.predict_point(cond, qt, ql).mean
        fixed = model.predict_point(cond, qt, ql, point="predictive_mean").mean
        iid = [model.predict(cond, qt, ql, n_samples=POINT_SAMPLES, use_mean=False,
                             calibrated=False, generator=torch.Generator().manual_seed(s)
                             ).mean.mean(0, keepdim=True) for s in range(8)]
    rms = lambda a: float((a - ref).pow(2).mean().sqrt())  # noqa: E731
    rms_iid = float(np.sqrt(np.mean([rms(a) ** 2 for a in iid])))
    # RMS error 0.039 (the fixed points; 0.074 on average over 16 other seeds of the points)
    # against 0.43 for 16 independent draws, where the rules are 0.22 apart: the tanh
    # decoder's odd-order terms, which the antithetic pairs cancel, carry most of the error
    assert rms(fixed) < 0.05 and rms(path) > 0.2
    assert rms(fixed) < 0.25 * rms_iid


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
    assert pm.mean.shape == pm.intensity.shape == (1, 14, 2)
    # the average over the 8 fixed points, each batch on its own; the generator is not read
    means, rates, lo = [], [], 0
    with torch.no_grad():
        for cond in batches:
            b = cond.batch_size
            n = ql[lo:lo + b]
            out = model.predict(cond, torch.as_tensor(qt[lo:lo + b, :n.max()]),
                                torch.as_tensor(n), n_samples=8, calibrated=False,
                                noise=point_noise(8, 3))
            valid = np.arange(n.max())[None, :] < n[:, None]
            means.append(out.mean.mean(0).numpy()[valid])
            rates.append(out.intensity.mean(0).numpy()[valid])
            lo += b
    np.testing.assert_allclose(pm.mean[0], np.concatenate(means), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pm.intensity[0], np.concatenate(rates), rtol=0, atol=1e-12)
    again = predict_packed(model, batches[::-1], np.concatenate([qt[3:], qt[:3]]),
                           np.concatenate([ql[3:], ql[:3]]), point="predictive_mean",
                           n_samples=8, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(again.mean[0], np.concatenate([means[1], means[0]]), rtol=0,
                               atol=1e-12)
    np.testing.assert_array_equal(pm.obs_std, model.obs_std.detach().numpy())
    # an untrained, nearly linear model: the curvature moves the mean by 4e-4 (the
    # antithetic pairs cancel the first-order noise)
    assert np.abs(pm.mean - plain.mean).max() > 1e-4


# ---------------------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def fitted(oscillators) -> LatentODERegressor:
    return LatentODERegressor(**TINY).fit(oscillators)


def _rule(est: LatentODERegressor, rule: str) -> LatentODERegressor:
    return est.set_params(point_prediction=rule)


def test_default_is_the_predictive_mean_and_the_rule_switches_without_refit(
        fitted, oscillators):
    assert LatentODERegressor().point_prediction == "predictive_mean"
    path = _rule(fitted, "posterior_mean").predict(oscillators)
    packed = fitted._predict_samples(oscillators, n_samples=1, use_mean=True)
    np.testing.assert_array_equal(path[["x", "v"]].to_numpy(), packed.mean[0])
    pm = _rule(fitted, "predictive_mean").predict(oscillators)
    assert pm.index.equals(path.index) and list(pm.columns) == list(path.columns)
    # a two-epoch model, nearly linear in z: the curvature moves the mean by 1.5e-4
    gap = np.abs(pm[["x", "v"]].to_numpy() - path[["x", "v"]].to_numpy())
    assert gap.max() > 1e-5
    # the fixed points, not random_state: identical at every call and any random_state
    for rs in (None, None, 7):
        fitted.set_params(random_state=rs)
        pd.testing.assert_frame_equal(fitted.predict(oscillators), pm, check_exact=True)
    fitted.set_params(random_state=0)
    _rule(fitted, "posterior_mean")


def test_extrapolate_and_intensity_follow_the_rule(oscillators):
    est = LatentODERegressor(**TINY, poisson_process=True,
                             point_prediction="posterior_mean").fit(oscillators)
    path = est.extrapolate(oscillators, horizon=3.0, n_points=5)
    rate = est.predict_intensity(oscillators)
    est.set_params(point_prediction="predictive_mean")
    pm = est.extrapolate(oscillators, horizon=3.0, n_points=5)
    pm_rate = est.predict_intensity(oscillators)
    assert pm[["id", "t"]].equals(path[["id", "t"]])
    assert np.abs(pm["x"] - path["x"]).max() > 1e-3
    assert np.abs(pm_rate["x"] - rate["x"]).max() > 0 and (pm_rate[["x", "v"]] > 0).all().all()
    pd.testing.assert_frame_equal(pm, est.extrapolate(oscillators, horizon=3.0, n_points=5))


def test_with_quantiles_the_mean_columns_are_the_point_prediction_of_the_rule(
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
    # the fixed points, then the quantiles' own samples
    assert calls == [POINT_SAMPLES] * n_batches + [20] * n_batches
    pm = fitted.predict(oscillators)
    _rule(fitted, "posterior_mean")
    quantile_cols = [c for c in pm_q.columns if "_q" in c]
    pd.testing.assert_frame_equal(pm_q[quantile_cols], path_q[quantile_cols], check_exact=True)
    # the mean columns do not depend on quantiles or n_samples
    pd.testing.assert_frame_equal(pm_q[list(pm.columns)], pm, check_exact=True)


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


def test_point_samples_sets_the_points_averaged(fitted, oscillators):
    assert LatentODERegressor().point_samples == POINT_SAMPLES == 16
    _rule(fitted, "predictive_mean")
    try:
        cols = ["x", "v"]
        model = {n: fitted.set_params(point_samples=n).predict(oscillators)[cols].to_numpy()
                 for n in (2, 32, 1024, 2048)}
        # quasi-Monte Carlo error shrinks with the points: 1024 and 2048 points agree far
        # better than 2 points agree with either
        assert np.abs(model[1024] - model[2048]).max() < 0.2 * np.abs(
            model[2] - model[2048]).max()
        assert np.abs(model[32] - model[2048]).max() < np.abs(model[2] - model[2048]).max()
        fitted.set_params(point_samples=0)
        with pytest.raises(ValueError, match="point_samples must be"):
            fitted.predict(oscillators)
        # the posterior-mean path does not read it
        _rule(fitted, "posterior_mean").set_params(point_samples=1, random_state=0)
        pd.testing.assert_frame_equal(fitted.predict(oscillators),
                                      clone(fitted).set_params(point_samples=32)
                                      .fit(oscillators).predict(oscillators), check_exact=True)
    finally:
        fitted.set_params(point_prediction="posterior_mean", point_samples=POINT_SAMPLES,
                          random_state=0)


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


def test_the_classifier_forecasts_under_the_rule(oscillators, monkeypatch):
    y = (oscillators.groupby("id")["x"].first() > 0).astype(int)
    clf = LatentODEClassifier(**TINY).fit(oscillators, y)
    assert clf.get_params()["point_prediction"] == "predictive_mean"
    clf.set_params(point_prediction="posterior_mean")
    rules = []
    predict_point = clf.model_.predict_point

    def spy(*args, **kwargs):
        rules.append((kwargs["point"], kwargs["n_samples"]))
        return predict_point(*args, **kwargs)

    monkeypatch.setattr(clf.model_, "predict_point", spy)
    path = clf.extrapolate(oscillators, horizon=2.0, n_points=4)
    pm = clf.set_params(point_prediction="predictive_mean", point_samples=6).extrapolate(
        oscillators, horizon=2.0, n_points=4)
    assert {r for r in rules} == {("posterior_mean", POINT_SAMPLES), ("predictive_mean", 6)}
    assert np.abs(pm["x"] - path["x"]).max() < 1e-3  # a two-epoch model: 3e-8
    with pytest.raises(ValueError, match="point_prediction must be"):
        LatentODEClassifier(**TINY, point_prediction="median").fit(oscillators, y)


def test_a_series_is_predicted_the_same_alone_in_any_frame_order_or_batch_size(
        fitted, oscillators):
    """The fixed points are shared by every series: under ``"predictive_mean"`` a series'
    prediction depends on its own data only, as under the posterior-mean path."""
    ids = oscillators["id"].unique()
    one = oscillators[oscillators["id"] == ids[0]]
    shuffled = pd.concat([oscillators[oscillators["id"] == i] for i in ids[::-1]])
    gaps = {}
    try:
        for rule in ("posterior_mean", "predictive_mean"):
            _rule(fitted, rule)
            full = fitted.predict(oscillators)[["x", "v"]]
            alone = fitted.predict(one)[["x", "v"]].to_numpy()
            gap = np.abs(full.loc[one.index].to_numpy() - alone).max()
            for frame, bs in ((shuffled, 8), (oscillators, 3), (oscillators, 64)):
                fitted.set_params(batch_size=bs, random_state=None)
                other = fitted.predict(frame)[["x", "v"]].loc[full.index].to_numpy()
                gap = max(gap, np.abs(other - full.to_numpy()).max())
            fitted.set_params(batch_size=TINY["batch_size"], random_state=0)
            gaps[rule] = gap
    finally:
        fitted.set_params(point_prediction="posterior_mean", batch_size=TINY["batch_size"],
                          random_state=0)
    # the solver's batch-dependent steps only (largest 6e-7 and 1e-7; the former per-batch
    # draws moved a series by 0.026)
    assert gaps["posterior_mean"] < 1e-5
    assert gaps["predictive_mean"] < 1e-5
