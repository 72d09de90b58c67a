"""`LatentODERegressor(scoring=...)`: what early stopping and the restored weights watch."""

from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from _settings import TINY
from sklearn.base import clone

from latentode import LatentODEClassifier, LatentODERegressor
from latentode.batch import Batch
from latentode.data import split_series, validate_frame
from latentode.evaluation import mse
from latentode.nn import LatentODE
from latentode.training import evaluate_loss, fit_model, split_forecast
from latentode.training.history import MONITORS, monitor_mode
from latentode.utils import draw_seed


def _validation_frame(est, df):
    """The rows of the series ``fit`` held out for validation (its split, reproduced)."""
    vf = validate_frame(df, time_col="t", id_col="id", empty_series="drop")
    seeds = np.random.SeedSequence(draw_seed(est.random_state)).generate_state(3)
    _, val_idx = split_series(vf.n_series, float(est.validation_fraction),
                              np.random.default_rng(seeds[0]))
    return df[df["id"].isin(vf.series_ids[val_idx])].reset_index(drop=True)


def _standardised_mse(est, truth, pred):
    cols = est.target_cols_
    loc = dict(zip(cols, est.scaler_.mean_.tolist()))
    scale = dict(zip(cols, est.scaler_.scale_.tolist()))
    return mse(truth, pred[cols], columns=cols, loc=loc, scale=scale)


def test_monitor_direction_and_default():
    assert MONITORS["val_mse"] == "min" == monitor_mode("val_mse")
    assert LatentODERegressor().scoring == "loss"
    assert LatentODEClassifier().scoring == "log_loss"


@pytest.mark.parametrize("readout", ["neighbours", "latent"])
def test_mse_restores_the_epoch_of_least_validation_mse(make_oscillators, readout):
    """The restored epoch is the argmin of ``val_mse``, and ``val_mse`` is the MSE of what
    ``predict`` gives the validation series (standardised units) with the restored weights."""
    df = make_oscillators(16, 20, seed=4)
    params = {**TINY, "max_epochs": 6, "early_stopping": False, "lr": 0.03,
              "validation_fraction": 0.25, "readout": readout, "calibrate": False,
              "point_prediction": "posterior_mean"}  # the path val_mse scores
    est = LatentODERegressor(**params, scoring="mse").fit(df)
    hist = est.history_
    assert hist.monitor == "val_mse"
    curve = np.array(hist["val_mse"], dtype=float)
    assert len(curve) == 6 and np.isfinite(curve).all() and np.ptp(curve) > 1e-3
    best = int(np.argmin(curve))
    assert hist.best_epoch == best and hist.best_loss == pytest.approx(curve[best], abs=1e-12)
    assert hist.best_val_loss == pytest.approx(hist["val_loss"][best], abs=1e-12)
    val = _validation_frame(est, df)
    assert 0 < val["id"].nunique() < 16
    value = _standardised_mse(est, val, est.predict(val))
    assert value == pytest.approx(curve[best], rel=1e-4)
    # the same training (val_mse draws no noise) watched by the loss picks its own epoch
    by_loss = LatentODERegressor(**params).fit(df).history_
    assert by_loss.monitor == "val_loss"
    np.testing.assert_allclose(by_loss["val_mse"], curve, rtol=1e-6)
    assert by_loss.best_epoch == int(np.argmin(by_loss["val_loss"]))


def test_early_stopping_on_mse_and_no_validation(make_oscillators):
    df = make_oscillators(16, 20, seed=4)
    est = LatentODERegressor(**{**TINY, "max_epochs": 30, "lr": 0.1, "patience": 2,
                                "validation_fraction": 0.25, "scoring": "mse"}).fit(df)
    hist = est.history_
    curve = np.array(hist["val_mse"], dtype=float)
    assert hist.stopped_reason == "early_stopping"
    assert hist.best_epoch == int(np.argmin(curve)) == hist.n_epochs - 3  # patience 2
    alone = LatentODERegressor(**{**TINY, "scoring": "mse", "validation_fraction": 0.0}).fit(df)
    assert alone.history_.monitor == "train_loss" and alone.history_["val_mse"] == [None] * 2


def test_val_mse_is_the_point_prediction_error_of_the_forecasts(make_oscillators):
    """With ``forecast_split``, ``val_mse`` scores the forecasts of each series' later part
    from its earlier part: ``extrapolate`` at those times gives the same error."""
    df = make_oscillators(16, 20, seed=5)
    est = LatentODERegressor(**{**TINY, "max_epochs": 3, "forecast_split": 0.5,
                                "validation_fraction": 0.25, "scoring": "mse",
                                "calibrate": False,  # the path val_mse scores
                                "point_prediction": "posterior_mean"}).fit(df)
    hist = est.history_
    val = _validation_frame(est, df)
    t0 = val.groupby("id")["t"].transform("min")
    t1 = val.groupby("id")["t"].transform("max")
    future = val["t"] >= t0 + 0.5 * (t1 - t0)
    past, ahead = val[~future], val[future].reset_index(drop=True)
    pred = est.extrapolate(past, times=ahead[["id", "t"]])
    assert _standardised_mse(est, ahead, pred) == pytest.approx(
        hist["val_mse"][hist.best_epoch], rel=1e-4)


def test_evaluate_loss_mse_is_deterministic_and_not_the_sampled_error():
    torch.manual_seed(0)
    model = LatentODE(2, latent_dim=3, rec_dim=6, units=8, n_layers=1, gru_units=6,
                      encoder="gru", method="rk4", step_size=0.1, gradient="backprop")
    g = torch.Generator().manual_seed(1)
    t = torch.sort(torch.rand(6, 8, generator=g), 1).values
    batch = Batch(t, torch.randn(6, 8, 2, generator=g),
                  (torch.rand(6, 8, 2, generator=g) < 0.7).float(), torch.tensor([8] * 5 + [5]))
    model.eval()
    valid = (torch.arange(8)[None, :] < batch.lengths[:, None]).unsqueeze(-1) * batch.mask
    with torch.no_grad():
        expect = model.point_squared_error(batch).sum() / valid.sum()
        # what predict(use_mean=True) gives at the observed times
        mean = model.predict(batch, batch.times, batch.lengths, use_mean=True).mean[0]
    assert float(expect) == pytest.approx(float(((mean - batch.values) ** 2 * valid).sum()
                                                / valid.sum()), rel=1e-6)
    runs = [evaluate_loss(model, [batch], 3, generator=torch.Generator().manual_seed(s))
            for s in (0, 1)]
    assert runs[0]["loss"] != runs[1]["loss"]  # sampled
    assert runs[0]["mse"] == runs[1]["mse"] == pytest.approx(float(expect), rel=1e-6)
    with torch.no_grad():
        sampled = model.loss(batch, 3, generator=torch.Generator().manual_seed(0)).mse
    assert float(sampled) > runs[0]["mse"]  # the sampled error adds the posterior's spread
    # forecasts: the later part from the earlier
    cond, target = split_forecast(batch, 0.5)
    fc = evaluate_loss(model, [batch], 1, forecast_split=0.5)
    with torch.no_grad():
        sq = model.point_squared_error(cond, target=target).sum()
        n = (torch.arange(8)[None, :] < target.lengths[:, None]).unsqueeze(-1) * target.mask
    assert fc["mse"] == pytest.approx(float(sq / n.sum()), rel=1e-6)


def test_fit_model_val_metric_mse():
    torch.manual_seed(0)
    model = LatentODE(1, latent_dim=2, rec_dim=4, units=8, n_layers=1, gru_units=4,
                      encoder="gru", method="rk4", step_size=0.25, gradient="backprop")
    g = torch.Generator().manual_seed(0)

    def batches(seed):
        g = torch.Generator().manual_seed(seed)
        t = torch.sort(torch.rand(8, 6, generator=g), 1).values
        x = torch.sin(3 * t + torch.rand(8, 1, generator=g) * 6).unsqueeze(-1)
        return [Batch(t, x, torch.ones(8, 6, 1), torch.full((8,), 6))]

    hist = fit_model(model, lambda: iter(batches(0)), lambda: iter(batches(1)), max_epochs=5,
                     lr=0.05, kl_warmup=0, verbose=0, early_stopping=False, val_metric="mse",
                     generator=g)
    assert hist.monitor == "val_mse"
    assert hist.best_epoch == int(np.argmin(hist["val_mse"]))
    # without validation data the training loss is watched, as with "loss"
    hist = fit_model(model, lambda: iter(batches(0)), None, max_epochs=1, verbose=0,
                     val_metric="mse")
    assert hist.monitor == "train_loss"


def test_scoring_survives_clone_pickle_save_load(make_oscillators, tmp_path):
    df = make_oscillators(10, 12, seed=6)
    est = LatentODERegressor(**{**TINY, "scoring": "mse", "validation_fraction": 0.3})
    assert clone(est).scoring == "mse" and clone(est).get_params()["scoring"] == "mse"
    est.fit(df)
    path = tmp_path / "mse.latentode"
    est.save(path)
    loaded = LatentODERegressor.load(path)
    assert loaded.scoring == "mse" and loaded.history_.monitor == "val_mse"
    assert loaded.history_["val_mse"] == est.history_["val_mse"]
    np.testing.assert_array_equal(loaded.predict(df).to_numpy(), est.predict(df).to_numpy())
    again = pickle.loads(pickle.dumps(est))
    assert again.scoring == "mse" and again.history_.monitor == "val_mse"
    # files and pickles from before the parameter: the loss, as they were trained
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    config = json.loads(members["config.json"])
    del config["params"]["scoring"]
    members["config.json"] = json.dumps(config)
    old_path = tmp_path / "old.latentode"
    with zipfile.ZipFile(old_path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert LatentODERegressor.load(old_path).scoring == "loss"
    state = est.__getstate__()
    del state["scoring"]
    old = LatentODERegressor.__new__(LatentODERegressor)
    old.__setstate__(state)
    assert old.scoring == "loss"


def test_invalid_scoring_is_refused_before_training(make_oscillators):
    df = make_oscillators(6, 8, seed=7)
    y = (df.groupby("id")["x"].first() > 0).astype(int)
    for bad in ("log_loss", "roc_auc", "rmse", None, 1):
        with pytest.raises(ValueError, match=r"scoring must be one of \('loss', 'mse'\), got"):
            LatentODERegressor(**{**TINY, "scoring": bad, "max_epochs": 0}).fit(df)
    # the classifier judges class probabilities: the reconstruction error is not among them
    with pytest.raises(ValueError, match=r"scoring must be one of \('loss', 'log_loss', "
                                         r"'roc_auc'\), got 'mse'"):
        LatentODEClassifier(**{**TINY, "scoring": "mse", "max_epochs": 0}).fit(df, y)
